//! Small documents made on the spot, for the project's fixtures, tests and benchmarks:
//! born-digital PDFs (Helvetica, WinAnsi, so Italian accents come out right), uncompressed
//! bilevel TIFF "faxes", plain emails, and WAV recordings of silence (voicemail).

/// A one-or-more-page PDF whose pages carry `pages[i]` as lines of text.
pub fn pdf(pages: &[Vec<String>]) -> Vec<u8> {
    let n = pages.len().max(1);
    // Objects: 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    let mut objects: Vec<String> = Vec::new();
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {n} >>",
        kids.join(" ")
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    let mut streams: Vec<Vec<u8>> = Vec::new();
    for i in 0..n {
        let lines = pages.get(i).cloned().unwrap_or_default();
        let mut content = b"BT /F1 11 Tf 14 TL 72 770 Td\n".to_vec();
        for line in &lines {
            content.push(b'(');
            content.extend(pdf_string(line));
            content.extend_from_slice(b") Tj T*\n");
        }
        content.extend_from_slice(b"ET\n");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        streams.push(content);
        objects.push(String::new()); // placeholder: the content stream
    }
    let mut stream_iter = streams.into_iter();
    let objects: Vec<Vec<u8>> = objects
        .iter()
        .map(|obj| {
            if obj.is_empty() {
                let s = stream_iter.next().unwrap_or_default();
                let mut o = format!("<< /Length {} >>\nstream\n", s.len()).into_bytes();
                o.extend_from_slice(&s);
                o.extend_from_slice(b"endstream");
                o
            } else {
                obj.as_bytes().to_vec()
            }
        })
        .collect();
    pdf_of(&objects)
}

/// A PDF from raw objects (numbered from 1; object 1 is the catalog), with a correct
/// cross-reference table.
pub fn pdf_of(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(obj);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Text as a PDF literal string in WinAnsi: escapes, and accents as single bytes.
fn pdf_string(s: &str) -> Vec<u8> {
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(s);
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes.iter() {
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Wraps `text` into lines of at most `width` characters.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// A letter as a one-page PDF: subject line, then the wrapped body.
pub fn letter_pdf(subject: &str, body: &str) -> Vec<u8> {
    let mut lines = vec![
        "Spett.le Comune dell'Aquila - URP".to_string(),
        String::new(),
        format!("Oggetto: {subject}"),
        String::new(),
    ];
    lines.extend(wrap(body, 90));
    let pages: Vec<Vec<String>> = lines.chunks(50).map(|c| c.to_vec()).collect();
    pdf(&pages)
}

/// An uncompressed 1-bit TIFF of `width`×`height` at 204×196 dpi with a black bar: a fax page
/// with nothing to read, for the folder channel's tests.
pub fn fax_tiff(width: u32, height: u32, pages: u32) -> Vec<u8> {
    let row_bytes = width.div_ceil(8);
    let image_len = row_bytes * height;
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    for p in 0..pages {
        let ifd_start = out.len() as u32;
        let entries: u16 = 11;
        let ifd_len = 2 + entries as u32 * 12 + 4;
        let xres_at = ifd_start + ifd_len;
        let data_at = xres_at + 16;
        let next = if p + 1 < pages {
            data_at + image_len
        } else {
            0
        };
        let mut ifd = Vec::new();
        ifd.extend_from_slice(&entries.to_le_bytes());
        let mut entry = |tag: u16, typ: u16, count: u32, value: u32| {
            ifd.extend_from_slice(&tag.to_le_bytes());
            ifd.extend_from_slice(&typ.to_le_bytes());
            ifd.extend_from_slice(&count.to_le_bytes());
            ifd.extend_from_slice(&value.to_le_bytes());
        };
        entry(256, 4, 1, width); // ImageWidth
        entry(257, 4, 1, height); // ImageLength
        entry(258, 3, 1, 1); // BitsPerSample
        entry(259, 3, 1, 1); // Compression: none
        entry(262, 3, 1, 0); // Photometric: WhiteIsZero
        entry(273, 4, 1, data_at); // StripOffsets
        entry(278, 4, 1, height); // RowsPerStrip
        entry(279, 4, 1, image_len); // StripByteCounts
        entry(282, 5, 1, xres_at); // XResolution
        entry(283, 5, 1, xres_at + 8); // YResolution
        entry(296, 3, 1, 2); // ResolutionUnit: inch
        ifd.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&ifd);
        for v in [204u32, 1, 196, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut image = vec![0u8; image_len as usize];
        for row in height / 10..height / 10 + 8 {
            for b in 0..row_bytes / 2 {
                image[(row * row_bytes + b) as usize] = 0xFF;
            }
        }
        out.extend_from_slice(&image);
    }
    out
}

/// A one-page fax TIFF whose ImageDescription tag holds `description` (as HylaFAX records
/// the sender's TSI).
pub fn fax_tiff_with_description(width: u32, height: u32, description: &str) -> Vec<u8> {
    let mut tiff = fax_tiff(width, height, 1);
    // Append the string and a second IFD copy with one more entry pointing at it.
    let text_at = tiff.len() as u32;
    tiff.extend_from_slice(description.as_bytes());
    tiff.push(0);
    let ifd_at = tiff.len() as u32;
    let old_ifd = 8usize;
    let entries = u16::from_le_bytes([tiff[old_ifd], tiff[old_ifd + 1]]) as usize;
    let mut ifd = ((entries + 1) as u16).to_le_bytes().to_vec();
    let old_entries = tiff[old_ifd + 2..old_ifd + 2 + entries * 12].to_vec();
    let mut all: Vec<[u8; 12]> = old_entries
        .chunks(12)
        .map(|c| c.try_into().unwrap())
        .collect();
    let mut desc = [0u8; 12];
    desc[..2].copy_from_slice(&270u16.to_le_bytes());
    desc[2..4].copy_from_slice(&2u16.to_le_bytes());
    desc[4..8].copy_from_slice(&(description.len() as u32 + 1).to_le_bytes());
    desc[8..12].copy_from_slice(&text_at.to_le_bytes());
    all.push(desc);
    all.sort_by_key(|e| u16::from_le_bytes([e[0], e[1]]));
    for e in all {
        ifd.extend_from_slice(&e);
    }
    ifd.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&ifd);
    tiff[4..8].copy_from_slice(&ifd_at.to_le_bytes());
    tiff
}

/// A plain-text email.
pub fn email(from: &str, subject: &str, body: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: urp@comune.example.it\r\nSubject: {subject}\r\nDate: Mon, 12 Apr 2010 09:30:00 +0200\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        body.replace('\n', "\r\n")
    )
    .into_bytes()
}

/// An email with a text part and one attachment (`name`, of type `mime`), as a citizen's
/// mail program sends a scanned or signed request.
pub fn email_with_attachment(
    from: &str,
    subject: &str,
    message_id: &str,
    text: &str,
    (name, mime, bytes): (&str, &str, &[u8]),
) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: urp@comune.example.it\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b\r\n\
         Content-Type: {mime}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{}\r\n--b--\r\n",
        base64_mime(bytes)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{extract_now, tiff_page_count, FileType};

    #[test]
    fn generated_pdfs_read_back_with_accents() {
        let bytes = letter_pdf("Allacciamento gas", "Chiedo l'allacciamento del gas per la casetta MAP (n. 12) a Paganica, città dell'Aquila.");
        let x = extract_now(&bytes, FileType::Pdf, 10);
        assert_eq!(x.error, None);
        let text = x.text();
        assert!(text.contains("Oggetto: Allacciamento gas"), "{text}");
        assert!(text.contains("città"), "{text}");
        assert!(text.contains("(n. 12)"), "{text}");
    }

    #[test]
    fn generated_tiffs_have_their_pages() {
        assert_eq!(tiff_page_count(&fax_tiff(64, 40, 3)), Ok(3));
    }
}

/// How a test page is "scanned" by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scan {
    /// Fax, fine resolution (204×196 dpi), 1-bit, CCITT G4 TIFF.
    FaxFine,
    /// Fax, normal resolution (204×98 dpi: non-square pixels), 1-bit, CCITT G4 TIFF.
    FaxNormal,
    /// Scanned letter, 300 dpi grey JPEG.
    Letter,
}

/// Page 1 of `pdf` as a fax machine or scanner would deliver it, turned clockwise by
/// `quarters` quarter turns (a sheet fed sideways or upside down). Needs poppler's
/// `pdftoppm` (installed by `make`).
pub fn scan(pdf: &[u8], how: Scan, quarters: u32) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let (rx, ry) = match how {
        Scan::FaxFine => (204, 196),
        Scan::FaxNormal => (204, 98),
        Scan::Letter => (300, 300),
    };
    let colour = if how == Scan::Letter {
        "-gray"
    } else {
        "-mono"
    };
    let mut child = std::process::Command::new("pdftoppm")
        .args([
            colour,
            "-rx",
            &rx.to_string(),
            "-ry",
            &ry.to_string(),
            "-f",
            "1",
            "-l",
            "1",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("pdftoppm: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("pdftoppm: no stdin")?;
    let bytes = pdf.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("pdftoppm: {e}"))?;
    let _ = feeder.join();
    let mut pix = crate::ocr::engine::Pix::read_mem(&out.stdout).ok_or("pdftoppm gave no image")?;
    pix.set_resolution(rx, ry);
    if !quarters.is_multiple_of(4) {
        pix = pix
            .rotated_quarters(quarters % 4)
            .ok_or("cannot turn the page")?;
    }
    match how {
        Scan::Letter => pix.to_jpeg(80),
        _ => pix.to_tiff_g4(),
    }
    .ok_or_else(|| "cannot encode the page".to_string())
}

/// A greyscale JPEG that looks like a photo to a compressor (gradients plus noise), so it
/// keeps its size: letterheads, stamps, phone pictures in test documents.
pub fn photo_jpeg(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut pgm = format!("P5 {width} {height} 255\n").into_bytes();
    let mut x = seed.wrapping_add(1);
    for y in 0..height {
        for c in 0..width {
            // xorshift: cheap, deterministic noise.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = ((c * 255 / width.max(1) + y * 128 / height.max(1)) % 256) as i64;
            pgm.push((base + (x % 97) as i64 - 48).clamp(0, 255) as u8);
        }
    }
    crate::ocr::engine::Pix::read_mem(&pgm)
        .and_then(|p| p.to_jpeg(85))
        .unwrap_or_default()
}

/// A one-page PDF that is nothing but a JPEG scan (DCTDecode) filling an A4 page, as
/// scanner software makes them: no text layer.
pub fn jpeg_pdf(jpeg: &[u8]) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let (width, height) =
        crate::ocr::engine::Pix::header(jpeg, None).map_or((0, 0), |h| (h.width, h.height));
    let mut doc = Document::with_version("1.4");
    let pages_id = doc.new_object_id();
    let image = Stream::new(
        dictionary! {
            "Type" => "XObject", "Subtype" => "Image",
            "Width" => width as i64, "Height" => height as i64,
            "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            "Filter" => "DCTDecode",
        },
        jpeg.to_vec(),
    );
    let image_id = doc.add_object(image);
    let content = Stream::new(dictionary! {}, b"q 595 0 0 842 0 0 cm /Im0 Do Q".to_vec());
    let content_id = doc.add_object(content);
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("writing to memory");
    out
}

/// A fax server's PDF: one CCITT G4 image per page, taken as is from one-page G4 TIFFs (as
/// made by [`scan`]), each page sized from the image's resolution. No text layer.
pub fn fax_pdf(g4_tiffs: &[Vec<u8>]) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.4");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for tiff in g4_tiffs {
        let Some(t) = tiff_strip(tiff) else { continue };
        let (w_pt, h_pt) = (
            t.width as f32 * 72.0 / t.xres.max(1.0),
            t.height as f32 * 72.0 / t.yres.max(1.0),
        );
        let image = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image",
                "Width" => t.width as i64, "Height" => t.height as i64,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 1,
                "Filter" => "CCITTFaxDecode",
                "DecodeParms" => dictionary! {
                    "K" => -1, "Columns" => t.width as i64, "Rows" => t.height as i64,
                    "BlackIs1" => t.photometric == 1,
                },
            },
            t.data,
        );
        let image_id = doc.add_object(image);
        let content = format!("q {w_pt:.2} 0 0 {h_pt:.2} 0 0 cm /Im0 Do Q");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), Object::Real(w_pt), Object::Real(h_pt)],
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("writing to memory");
    out
}

struct TiffStrip {
    width: u32,
    height: u32,
    xres: f32,
    yres: f32,
    photometric: u32,
    data: Vec<u8>,
}

/// The one strip of a little-endian single-strip TIFF (what leptonica writes), with its size.
fn tiff_strip(t: &[u8]) -> Option<TiffStrip> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(t.get(o..o + 2)?.try_into().ok()?) as u32);
    let u32_at = |o: usize| Some(u32::from_le_bytes(t.get(o..o + 4)?.try_into().ok()?));
    if !t.starts_with(b"II") {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let mut tags = std::collections::HashMap::new();
    for i in 0..u16_at(ifd)? as usize {
        let e = ifd + 2 + i * 12;
        let (tag, ty) = (u16_at(e)?, u16_at(e + 2)?);
        let value = match ty {
            3 => u16_at(e + 8)?,
            4 => u32_at(e + 8)?,
            5 => {
                let at = u32_at(e + 8)? as usize;
                u32_at(at)? / u32_at(at + 4)?.max(1)
            }
            _ => continue,
        };
        tags.insert(tag, value);
    }
    let (offset, len) = (*tags.get(&273)? as usize, *tags.get(&279)? as usize);
    Some(TiffStrip {
        width: *tags.get(&256)?,
        height: *tags.get(&257)?,
        xres: *tags.get(&282).unwrap_or(&204) as f32,
        yres: *tags.get(&283).unwrap_or(&196) as f32,
        photometric: *tags.get(&262).unwrap_or(&0),
        data: t.get(offset..offset + len)?.to_vec(),
    })
}

/// Base64 as MIME bodies carry it: lines of 76 characters, CRLF-separated.
pub fn base64_mime(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 57 * 2 + 4);
    for (i, c) in bytes.chunks(3).enumerate() {
        let v = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= c.len() {
                A[(v >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

/// Files made to break readers, for the tests that prove they cannot stop the intake: each
/// must become one ticket flagged for a clerk, with its original kept.
pub mod hostile {
    use super::pdf_of;
    use std::io::Write;

    fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut s = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
        s.extend_from_slice(data);
        s.extend_from_slice(b"\nendstream");
        s
    }

    /// A one-page PDF in Helvetica whose content stream is `content` (`dict`: its filter).
    fn one_page(dict: &str, content: &[u8]) -> Vec<u8> {
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
            FONT.as_bytes().to_vec(),
            stream(dict, content),
        ])
    }

    const FONT: &str =
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";

    /// Two form XObjects that draw each other: a reader that follows `Do` without
    /// remembering where it has been recurses until its stack overflows.
    pub fn cyclic_xobjects_pdf() -> Vec<u8> {
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> /XObject << /X1 5 0 R >> >> /Contents 7 0 R >>".to_vec(),
            FONT.as_bytes().to_vec(),
            stream(
                "/Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> /XObject << /X2 6 0 R >> >>",
                b"BT /F1 11 Tf 72 700 Td (Forma uno) Tj ET /X2 Do",
            ),
            stream(
                "/Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> /XObject << /X1 5 0 R >> >>",
                b"BT /F1 11 Tf 72 680 Td (Forma due) Tj ET /X1 Do",
            ),
            stream("", b"BT /F1 11 Tf 72 770 Td (Richiesta di allaccio) Tj ET /X1 Do"),
        ])
    }

    /// An object that is `depth` arrays one inside the other.
    pub fn nested_arrays_pdf(depth: usize) -> Vec<u8> {
        let mut deep = vec![b'['; depth];
        deep.extend(std::iter::repeat_n(b']', depth));
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R /Extra 5 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 6 0 R >>".to_vec(),
            FONT.as_bytes().to_vec(),
            deep,
            stream("", b"BT /F1 11 Tf 72 770 Td (Richiesta) Tj ET"),
        ])
    }

    /// A page whose content stream opens `depth` arrays one inside the other.
    pub fn nested_content_pdf(depth: usize) -> Vec<u8> {
        let mut content = b"BT /F1 11 Tf 72 770 Td (Richiesta) Tj ET\n".to_vec();
        content.extend(std::iter::repeat_n(b'[', depth));
        content.extend(std::iter::repeat_n(b']', depth));
        content.extend_from_slice(b" TJ");
        one_page("", &content)
    }

    /// A page tree whose node lists its own parent among its kids.
    pub fn page_tree_loop_pdf() -> Vec<u8> {
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>".to_vec(),
            b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 3 0 R] /Count 1 >>".to_vec(),
            FONT.as_bytes().to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 6 0 R >>".to_vec(),
            stream("", b"BT /F1 11 Tf 72 770 Td (Richiesta) Tj ET"),
        ])
    }

    /// A page whose content stream is `size` bytes of spaces deflated (about a thousandth of
    /// that on disk).
    pub fn flate_bomb_pdf(size: u64) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b' '; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            z.write_all(&chunk[..n]).expect("writing to memory");
            left -= n as u64;
        }
        let data = z.finish().expect("writing to memory");
        one_page("/Filter /FlateDecode", &data)
    }

    /// A page whose content stream is `ops` text operators.
    pub fn many_operators_pdf(ops: usize) -> Vec<u8> {
        let mut content = b"BT /F1 11 Tf 72 770 Td\n".to_vec();
        for _ in 0..ops {
            content.extend_from_slice(b"0 0 Td\n");
        }
        content.extend_from_slice(b"(fine) Tj ET");
        one_page("", &content)
    }

    /// A message of `depth` multiparts one inside the other.
    pub fn nested_multipart_email(depth: usize) -> Vec<u8> {
        let mut out = String::from(
            "From: Mario Rossi <mario.rossi@example.it>\r\nTo: urp@comune.example.it\r\nSubject: Richiesta\r\nMessage-ID: <deep@example.it>\r\nMIME-Version: 1.0\r\n",
        );
        for i in 0..depth {
            out.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        out.push_str("Content-Type: text/plain\r\n\r\nin fondo\r\n");
        for i in (0..depth).rev() {
            out.push_str(&format!("--b{i}--\r\n"));
        }
        out.into_bytes()
    }

    /// Every kind above that must be flagged, at the size the acceptance names, with a file
    /// name. (Millions of operators are a valid page: read, in time, not flagged.)
    pub fn all() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("cyclic-xobjects.pdf", cyclic_xobjects_pdf()),
            ("nested-arrays.pdf", nested_arrays_pdf(100_000)),
            ("page-tree-loop.pdf", page_tree_loop_pdf()),
            ("nested-content.pdf", nested_content_pdf(100_000)),
            ("flate-bomb-2gb.pdf", flate_bomb_pdf(2 << 30)),
            ("nested-multipart.eml", nested_multipart_email(10_000)),
            ("huge-100000x100000.tif", huge_tiff(100_000, 100_000)),
        ]
    }

    /// A one-page TIFF that declares `width` × `height` pixels and holds a few bytes.
    pub fn huge_tiff(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"II*\0".to_vec();
        out.extend_from_slice(&8u32.to_le_bytes());
        let entries: u16 = 8;
        let data_at = 8 + 2 + entries as u32 * 12 + 4;
        out.extend_from_slice(&entries.to_le_bytes());
        for (tag, typ, value) in [
            (256u16, 4u16, width),
            (257, 4, height),
            (258, 3, 1),
            (259, 3, 1),
            (262, 3, 0),
            (273, 4, data_at),
            (278, 4, height),
            (279, 4, 16),
        ] {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&typ.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        out
    }
}

/// A PCM WAV of `secs` seconds of silence, 8 kHz mono 16-bit: Asterisk's `wav` format.
pub fn wav_silence(secs: f64) -> Vec<u8> {
    let rate = 8000u32;
    let data_len = (secs * rate as f64) as u32 * 2;
    let mut b = Vec::new();
    b.extend(b"RIFF");
    b.extend((36 + data_len).to_le_bytes());
    b.extend(b"WAVEfmt ");
    b.extend(16u32.to_le_bytes());
    b.extend(1u16.to_le_bytes()); // PCM
    b.extend(1u16.to_le_bytes()); // mono
    b.extend(rate.to_le_bytes());
    b.extend((rate * 2).to_le_bytes());
    b.extend(2u16.to_le_bytes());
    b.extend(16u16.to_le_bytes());
    b.extend(b"data");
    b.extend(data_len.to_le_bytes());
    b.resize(b.len() + data_len as usize, 0);
    b
}
