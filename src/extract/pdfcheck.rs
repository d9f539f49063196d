//! A look at a PDF's raw bytes before any parser is given them.
//!
//! lopdf's object parser recurses once per nested array or dictionary, and lopdf and
//! pdf-extract inflate a stream whole, however large it becomes. So a PDF of 100,000 nested
//! arrays overflows the stack, and a few MB of deflated spaces become gigabytes in memory.
//! This pass walks the file once, without recursion and without keeping what it inflates,
//! and refuses a file nested deeper than any real document or holding a decompression bomb.
//! Worker processes are the safety net; this is the fix.

/// Deepest nesting of arrays and dictionaries accepted. Real documents stay under ten.
pub const MAX_NESTING: usize = 100;
/// Most bytes one Flate or LZW stream may inflate to (a 600 dpi A4 colour page is ~100 MB).
pub const MAX_INFLATED: u64 = 256 << 20;

/// `Err` with the reason a clerk reads when the file must not be parsed.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    // Where the dictionary that was closed last began and ended: a `stream` keyword right
    // after it belongs to it.
    let mut dict_starts: Vec<usize> = Vec::new();
    let mut last_dict: Option<(usize, usize)> = None;
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        match bytes[i] {
            b'%' => {
                while i < n && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => i = skip_literal(bytes, i),
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                dict_starts.push(i);
                i += 2;
                deepest = deepest.max(depth);
                if deepest > MAX_NESTING {
                    return Err(too_deep());
                }
                continue;
            }
            b'<' => {
                // A hex string.
                while i < n && bytes[i] != b'>' {
                    i += 1;
                }
            }
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                if let Some(start) = dict_starts.pop() {
                    last_dict = Some((start, i + 2));
                }
                i += 2;
                continue;
            }
            b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > MAX_NESTING {
                    return Err(too_deep());
                }
            }
            b']' => depth = depth.saturating_sub(1),
            b's' if bytes[i..].starts_with(b"stream")
                && (i == 0 || is_delimiter_or_space(bytes[i - 1]))
                && matches!(bytes.get(i + 6), Some(b'\r' | b'\n')) =>
            {
                let mut start = i + 6;
                if bytes.get(start) == Some(&b'\r') {
                    start += 1;
                }
                if bytes.get(start) == Some(&b'\n') {
                    start += 1;
                }
                let end = find(&bytes[start..], b"endstream").map_or(n, |e| start + e);
                if let Some((ds, de)) = last_dict.filter(|&(_, de)| de <= i) {
                    check_stream(&bytes[ds..de], &bytes[start..end])?;
                }
                // Nothing in a stream's data is structure.
                i = end + b"endstream".len();
                depth = 0;
                dict_starts.clear();
                last_dict = None;
                continue;
            }
            // A new object starts: unbalanced brackets in a damaged one do not carry over.
            b'o' if bytes[i..].starts_with(b"obj")
                && i > 0
                && is_delimiter_or_space(bytes[i - 1])
                && bytes.get(i + 3).is_none_or(|&b| is_delimiter_or_space(b)) =>
            {
                depth = 0;
                dict_starts.clear();
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn too_deep() -> String {
    format!(
        "the PDF nests its objects more than {MAX_NESTING} levels deep (damaged or made to break readers); it was not read"
    )
}

fn is_delimiter_or_space(b: u8) -> bool {
    b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Past a literal string starting at `i` (balanced parentheses, backslash escapes).
fn skip_literal(bytes: &[u8], mut i: usize) -> usize {
    let mut level = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => level += 1,
            b')' => {
                level -= 1;
                if level == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Inflates a Flate or LZW stream into a scratch buffer, counting, up to [`MAX_INFLATED`].
fn check_stream(dict: &[u8], data: &[u8]) -> Result<(), String> {
    let flate = find(dict, b"/FlateDecode").is_some() || find(dict, b"/Fl ").is_some();
    let lzw = find(dict, b"/LZWDecode").is_some() || find(dict, b"/LZW ").is_some();
    let inflated = if flate {
        inflated_size(data)
    } else if lzw {
        lzw_size(data)
    } else {
        return Ok(());
    };
    if inflated > MAX_INFLATED {
        return Err(format!(
            "a compressed stream in the PDF inflates to more than {} MB (a decompression bomb); it was not read",
            MAX_INFLATED >> 20
        ));
    }
    Ok(())
}

/// Bytes a zlib (or raw deflate) stream inflates to, counted up to just past the limit.
fn inflated_size(data: &[u8]) -> u64 {
    let zlib = data.len() >= 2 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
    let mut z = flate2::Decompress::new(zlib);
    let mut out = vec![0u8; 1 << 16];
    loop {
        let before_in = z.total_in();
        let before_out = z.total_out();
        let input = &data[(before_in as usize).min(data.len())..];
        let status = z.decompress(input, &mut out, flate2::FlushDecompress::None);
        let progressed = z.total_in() != before_in || z.total_out() != before_out;
        match status {
            Ok(flate2::Status::StreamEnd) => return z.total_out(),
            Ok(_) if progressed && z.total_out() <= MAX_INFLATED => {}
            // Damaged data, the end of the input, or past the limit: what was inflated counts.
            _ => return z.total_out(),
        }
    }
}

/// Bytes a PDF LZW stream (early change, as PDF's default) decodes to, up to the limit.
fn lzw_size(data: &[u8]) -> u64 {
    let mut d = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let mut out = vec![0u8; 1 << 16];
    let mut input = data;
    let mut total = 0u64;
    loop {
        let r = d.decode_bytes(input, &mut out);
        total += r.consumed_out as u64;
        input = &input[r.consumed_in..];
        match r.status {
            Ok(weezl::LzwStatus::Ok) if (r.consumed_in > 0 || r.consumed_out > 0) => {}
            _ => return total,
        }
        if total > MAX_INFLATED {
            return total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::hostile;

    #[test]
    fn ordinary_documents_pass() {
        let letter =
            crate::testdata::letter_pdf("Allaccio gas", "Chiedo l'allaccio [urgente] <<x>>");
        assert_eq!(check(&letter), Ok(()));
        assert_eq!(check(&hostile::cyclic_xobjects_pdf()), Ok(()));
        assert_eq!(check(&hostile::nested_arrays_pdf(20)), Ok(()));
        assert_eq!(check(&hostile::flate_bomb_pdf(1 << 20)), Ok(()));
        // Brackets inside strings, comments and stream data are not structure.
        let mut odd = b"%PDF-1.4\n% [[[[[[\n1 0 obj\n(".to_vec();
        odd.extend(std::iter::repeat_n(b'[', 500));
        odd.extend_from_slice(b")\nendobj\n2 0 obj\n<< /Length 600 >>\nstream\n");
        odd.extend(std::iter::repeat_n(b'[', 600));
        odd.extend_from_slice(b"\nendstream\nendobj\n");
        assert_eq!(check(&odd), Ok(()));
    }

    #[test]
    fn deep_nesting_and_bombs_are_refused() {
        let deep = check(&hostile::nested_arrays_pdf(100_000)).unwrap_err();
        assert!(deep.contains("levels deep"), "{deep}");
        let mut dicts = b"%PDF-1.4\n1 0 obj\n".to_vec();
        for _ in 0..5000 {
            dicts.extend_from_slice(b"<< /A ");
        }
        assert!(check(&dicts).is_err());
        let bomb = check(&hostile::flate_bomb_pdf(MAX_INFLATED + (1 << 20))).unwrap_err();
        assert!(bomb.contains("decompression bomb"), "{bomb}");
        // LZW: a run of one byte compresses very well too.
        let mut enc = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
        let data = enc
            .encode(&vec![b' '; (MAX_INFLATED + (1 << 20)) as usize])
            .unwrap();
        let mut pdf = b"%PDF-1.4\n1 0 obj\n<< /Filter /LZWDecode >>\nstream\n".to_vec();
        pdf.extend_from_slice(&data);
        pdf.extend_from_slice(b"\nendstream\nendobj\n");
        assert!(check(&pdf).unwrap_err().contains("decompression bomb"));
    }
}
