//! Images (faxes, scans, photos): how many pages, and whether the file is whole enough to try.
//! The pixels are OCR's business; here a TIFF's IFD chain is walked by hand, bounded, so a
//! looping or truncated file is an error, not a hang.

pub fn tiff_page_count(bytes: &[u8]) -> Result<u32, String> {
    tiff_pages_and_warning(bytes).map(|(pages, _)| pages)
}

/// Pages, and a warning when a directory is damaged but readable (tags repeated or out of
/// order, as fuzzers and broken writers leave them; libtiff reads on past it).
pub fn tiff_pages_and_warning(bytes: &[u8]) -> Result<(u32, Option<String>), String> {
    let mut warning = None;
    let bad = |why: &str| Err(format!("damaged TIFF: {why}"));
    if bytes.len() < 8 {
        return bad("file too short");
    }
    let le = match &bytes[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return bad("bad byte-order mark"),
    };
    let u16_at = |o: usize| -> Option<u64> {
        let b = bytes.get(o..o + 2)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        } as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b = bytes.get(o..o + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        } as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let big = match u16_at(2) {
        Some(42) => false,
        Some(43) => true,
        _ => return bad("not a TIFF version"),
    };
    let mut offset = if big { u64_at(8) } else { u32_at(4) }.unwrap_or(0);
    let mut pages = 0u32;
    let mut seen = std::collections::HashSet::new();
    while offset != 0 {
        if !seen.insert(offset) {
            return bad("page chain loops");
        }
        if pages >= 100_000 {
            return bad("too many pages");
        }
        let o = offset as usize;
        let (entries, entry_size, count_size) = if big {
            (u64_at(o), 20u64, 8u64)
        } else {
            (u16_at(o), 12u64, 2u64)
        };
        let Some(entries) = entries else {
            if pages > 0 {
                break; // a truncated tail: keep the pages that are there
            }
            return bad("page directory beyond the end of the file");
        };
        pages += 1;
        if !big {
            // Width and height, as SHORT or LONG values held in the entry itself.
            let mut dims = [0u64; 2];
            let mut last_tag = None;
            for i in 0..entries.min(1000) {
                let e = o + 2 + i as usize * 12;
                let (Some(tag), Some(typ)) = (u16_at(e), u16_at(e + 2)) else {
                    break;
                };
                if last_tag.is_some_and(|last| tag <= last) && warning.is_none() {
                    warning = Some(format!(
                        "damaged TIFF: page {pages}'s directory repeats tags or lists them out of order; check the text read against the original"
                    ));
                }
                last_tag = Some(tag);
                let value = match typ {
                    3 => u16_at(e + 8),
                    4 => u32_at(e + 8),
                    _ => None,
                };
                match (tag, value) {
                    (256, Some(v)) => dims[0] = v,
                    (257, Some(v)) => dims[1] = v,
                    _ => {}
                }
            }
            if dims[0].saturating_mul(dims[1]) > crate::ocr::pages::MAX_PIXELS {
                return Err(format!(
                    "page {pages} declares {}×{} pixels, over the limit of {} megapixels (damaged or made to break readers); not read",
                    dims[0],
                    dims[1],
                    crate::ocr::pages::MAX_PIXELS / 1_000_000
                ));
            }
        }
        let next_at = o as u64 + count_size + entries * entry_size;
        offset = if big {
            u64_at(next_at as usize)
        } else {
            u32_at(next_at as usize)
        }
        .unwrap_or(0);
    }
    if pages == 0 {
        return bad("no pages");
    }
    Ok((pages, warning))
}

/// ASCII values of the first page's ImageDescription (270) and Artist (315) tags, where fax
/// servers record the sender's number (TSI).
pub fn tiff_descriptions(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if bytes.len() < 8 || !(bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*")) {
        return out;
    }
    let le = bytes[0] == b'I';
    let u16_at = |o: usize| {
        bytes.get(o..o + 2).map(|b| {
            if le {
                u16::from_le_bytes([b[0], b[1]])
            } else {
                u16::from_be_bytes([b[0], b[1]])
            }
        })
    };
    let u32_at = |o: usize| {
        bytes.get(o..o + 4).map(|b| {
            let a = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        })
    };
    let Some(ifd) = u32_at(4).map(|v| v as usize) else {
        return out;
    };
    let Some(entries) = u16_at(ifd) else {
        return out;
    };
    for i in 0..entries.min(500) as usize {
        let e = ifd + 2 + i * 12;
        let (Some(tag), Some(typ), Some(count)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4)) else {
            break;
        };
        if !(tag == 270 || tag == 315) || typ != 2 {
            continue;
        }
        let count = count as usize;
        let start = if count <= 4 {
            e + 8
        } else {
            u32_at(e + 8).unwrap_or(0) as usize
        };
        if let Some(raw) = bytes.get(start..start.saturating_add(count.min(4096))) {
            let text = String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .trim()
                .to_string();
            if !text.is_empty() {
                out.push(text);
            }
        }
    }
    out
}

/// A warning when a JPEG was cut short (no end-of-image marker): OCR may still read the top.
pub fn jpeg_warning(bytes: &[u8]) -> Option<String> {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    (!tail.windows(2).any(|w| w == [0xFF, 0xD9]))
        .then(|| "truncated JPEG: the end of the image is missing".to_string())
}

/// A warning when a PNG lacks its closing IEND chunk.
pub fn png_warning(bytes: &[u8]) -> Option<String> {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    (!tail.windows(4).any(|w| w == b"IEND"))
        .then(|| "truncated PNG: the end of the image is missing".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_refuses_loops() {
        // Little-endian, one IFD at 8 with 0 entries, next = 0.
        let mut one = b"II*\0\x08\0\0\0".to_vec();
        one.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(tiff_page_count(&one), Ok(1));
        // Next IFD points back to itself.
        let mut looped = b"II*\0\x08\0\0\0".to_vec();
        looped.extend_from_slice(&[0, 0, 8, 0, 0, 0]);
        assert!(tiff_page_count(&looped).unwrap_err().contains("loops"));
        assert!(tiff_page_count(b"II*\0").is_err());
    }
}
