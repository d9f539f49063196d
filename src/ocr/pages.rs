//! Page images for OCR. A scanned or faxed PDF page is usually one image: it is taken out as
//! stored (JPEG, CCITT G3/G4 re-wrapped as a TIFF strip, Flate samples as PNM), at its native
//! resolution; anything else is rendered by poppler's `pdftoppm`. Images are checked against a
//! pixel limit from their headers before a byte is decoded.

use super::engine::Pix;
use crate::extract::FileType;
use lopdf::{Document, Object, ObjectId};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Images larger than this (e.g. 9000×9000) are not decoded as they are: a JPEG is decoded
/// at a fraction of its size, a PDF page rendered at a lower resolution (and flagged).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Images larger than this are refused outright (a decompression bomb: a few KB of CCITT or
/// JBIG2 that would decode to gigabytes).
const BOMB_PIXELS: u64 = 16 * MAX_PIXELS;
/// Resolution pages are rendered at, and the most OCR is given (higher only costs time).
const RENDER_DPI: f32 = 300.0;
const RENDER_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Where one page's pixels come from; cheap to hold (compressed), decoded by a worker.
#[derive(Clone)]
pub enum PageImage {
    /// An image file leptonica decodes: JPEG, PNG, JPEG 2000, PNM, or page `tiff_page` of a TIFF.
    File {
        bytes: Arc<Vec<u8>>,
        tiff_page: Option<u32>,
        /// Resolution known from outside the image (a PDF page's size).
        dpi: Option<(u32, u32)>,
        /// Rendered instead when the image cannot be decoded.
        fallback: Option<Render>,
    },
    Render(Render),
}

#[derive(Clone)]
pub struct Render {
    pub pdf: Arc<Vec<u8>>,
    pub page: u32,
    /// Page size in points.
    pub size_pt: (f32, f32),
}

/// Each wanted page with its image, or why it cannot be had.
pub type Planned = Vec<(u32, Result<PageImage, String>)>;

/// Lists the images of pages `wanted` (1-based); a page that cannot be had is an error string.
pub fn plan(bytes: &Arc<Vec<u8>>, file_type: FileType, wanted: &[u32]) -> Result<Planned, String> {
    match file_type {
        FileType::Tiff => Ok(wanted
            .iter()
            .map(|&p| {
                let img = PageImage::File {
                    bytes: bytes.clone(),
                    tiff_page: Some(p - 1),
                    dpi: None,
                    fallback: None,
                };
                (p, Ok(img))
            })
            .collect()),
        FileType::Jpeg | FileType::Png => Ok(wanted
            .iter()
            .filter(|&&p| p == 1)
            .map(|&p| {
                let img = PageImage::File {
                    bytes: bytes.clone(),
                    tiff_page: None,
                    dpi: None,
                    fallback: None,
                };
                (p, Ok(img))
            })
            .collect()),
        FileType::Pdf => plan_pdf(bytes, wanted),
        other => Err(format!("no page images in a {} file", other.mime())),
    }
}

fn plan_pdf(bytes: &Arc<Vec<u8>>, wanted: &[u32]) -> Result<Planned, String> {
    let doc = crate::extract::pdf::open(bytes)?;
    let pages = doc.get_pages();
    Ok(wanted
        .iter()
        .map(|&number| {
            let Some(&page_id) = pages.get(&number) else {
                return (number, Err(format!("page {number} is not in the document")));
            };
            let render = Render {
                pdf: bytes.clone(),
                page: number,
                size_pt: page_size(&doc, page_id),
            };
            let sole = sole_image(&doc, page_id);
            if let Some((w, h)) = sole.and_then(|id| image_size(&doc, id)) {
                if w as u64 * h as u64 > BOMB_PIXELS {
                    return (number, Err(bomb(w, h)));
                }
            }
            let img = match sole.and_then(|id| native_image(&doc, id)) {
                Some((image_bytes, (w, h))) => PageImage::File {
                    bytes: Arc::new(image_bytes),
                    tiff_page: None,
                    dpi: Some(dpi_for(w, h, render.size_pt)),
                    fallback: Some(render),
                },
                None => PageImage::Render(render),
            };
            (number, Ok(img))
        })
        .collect())
}

/// The resolution of an image that fills a page of `size_pt`: how scanners and fax servers
/// make PDFs. An image drawn turned by a quarter fills the page the other way round; of the
/// two readings the one with square pixels, or fax "normal" pixels (twice as tall), wins.
fn dpi_for(w: u32, h: u32, size_pt: (f32, f32)) -> (u32, u32) {
    let per_inch =
        |px: u32, pt: f32| ((px as f32 * 72.0 / pt.max(1.0)).round() as u32).clamp(50, 1200);
    let as_drawn = (per_inch(w, size_pt.0), per_inch(h, size_pt.1));
    let turned = (per_inch(w, size_pt.1), per_inch(h, size_pt.0));
    let oddness = |(x, y): (u32, u32)| {
        let r = (x.max(y) as f32 / x.min(y).max(1) as f32).ln();
        r.abs().min((r - 2.08f32.ln()).abs())
    };
    if oddness(turned) + 0.01 < oddness(as_drawn) {
        turned
    } else {
        as_drawn
    }
}

fn page_size(doc: &Document, page_id: ObjectId) -> (f32, f32) {
    let mut id = Some(page_id);
    for _ in 0..32 {
        let Some(dict) = id.and_then(|i| doc.get_dictionary(i).ok()) else {
            break;
        };
        if let Ok(b) = dict
            .get(b"MediaBox")
            .and_then(|o| doc.dereference(o))
            .and_then(|(_, o)| o.as_array())
        {
            let n: Vec<f32> = b.iter().filter_map(|o| o.as_float().ok()).collect();
            if n.len() == 4 {
                return ((n[2] - n[0]).abs(), (n[3] - n[1]).abs());
            }
        }
        id = dict.get(b"Parent").and_then(|o| o.as_reference()).ok();
    }
    (612.0, 792.0)
}

/// The image XObject a page draws, when it draws exactly one and no other XObject: a scan.
fn sole_image(doc: &Document, page_id: ObjectId) -> Option<ObjectId> {
    let content = doc.get_and_decode_page_content(page_id).ok()?;
    let mut drawn = Vec::new();
    for op in &content.operations {
        match op.operator.as_str() {
            "Do" => drawn.push(op.operands.first()?.as_name().ok()?.to_vec()),
            // Inline images, shading fills: render.
            "BI" | "ID" | "sh" => return None,
            _ => {}
        }
    }
    let [name] = drawn.as_slice() else {
        return None;
    };
    let (own, inherited) = doc.get_page_resources(page_id).ok()?;
    let dicts = own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|&id| doc.get_dictionary(id).ok()),
    );
    for resources in dicts {
        let Ok(xobjects) = resources
            .get(b"XObject")
            .and_then(|o| doc.dereference(o))
            .and_then(|(_, o)| o.as_dict())
        else {
            continue;
        };
        if let Ok(id) = xobjects.get(name).and_then(|o| o.as_reference()) {
            let stream = doc.get_object(id).ok()?.as_stream().ok()?;
            let subtype = stream.dict.get(b"Subtype").and_then(|o| o.as_name()).ok()?;
            return (subtype == b"Image").then_some(id);
        }
    }
    None
}

fn image_size(doc: &Document, id: ObjectId) -> Option<(u32, u32)> {
    let dict = &doc.get_object(id).ok()?.as_stream().ok()?.dict;
    let w = u32::try_from(int(doc, dict, b"Width")?).ok()?;
    let h = u32::try_from(int(doc, dict, b"Height")?).ok()?;
    Some((w, h))
}

fn bomb(w: u32, h: u32) -> String {
    format!(
        "page image of {w}×{h} pixels refused: over {} megapixels (a decompression bomb?)",
        BOMB_PIXELS / 1_000_000
    )
}

fn int(doc: &Document, dict: &lopdf::Dictionary, key: &[u8]) -> Option<i64> {
    let o = dict.get(key).ok()?;
    let (_, o) = doc.dereference(o).ok()?;
    o.as_i64().ok()
}

fn boolean(dict: &lopdf::Dictionary, key: &[u8]) -> bool {
    dict.get(key).and_then(|o| o.as_bool()).unwrap_or(false)
}

/// The image's bytes in a format leptonica reads, with its size in pixels; None when the
/// encoding is one we leave to the renderer (JBIG2, filter chains, unusual colour spaces).
fn native_image(doc: &Document, id: ObjectId) -> Option<(Vec<u8>, (u32, u32))> {
    let stream = doc.get_object(id).ok()?.as_stream().ok()?;
    let dict = &stream.dict;
    let w = u32::try_from(int(doc, dict, b"Width")?)
        .ok()
        .filter(|&w| w > 0)?;
    let h = u32::try_from(int(doc, dict, b"Height")?)
        .ok()
        .filter(|&h| h > 0)?;
    let filters: Vec<Vec<u8>> = match dict.get(b"Filter").ok() {
        None => Vec::new(),
        Some(Object::Name(n)) => vec![n.clone()],
        Some(Object::Array(a)) => a
            .iter()
            .filter_map(|o| o.as_name().ok().map(<[u8]>::to_vec))
            .collect(),
        Some(_) => return None,
    };
    let params = match dict.get(b"DecodeParms").ok() {
        Some(Object::Dictionary(d)) => Some(d.clone()),
        Some(Object::Array(a)) => a.first().and_then(|o| o.as_dict().ok()).cloned(),
        Some(Object::Reference(r)) => doc.get_dictionary(*r).ok().cloned(),
        _ => None,
    };
    let inverted_decode = dict
        .get(b"Decode")
        .and_then(|o| o.as_array())
        .ok()
        .and_then(|a| a.first())
        .and_then(|o| o.as_float().ok())
        .is_some_and(|v| v > 0.5);
    match filters
        .iter()
        .map(Vec::as_slice)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [b"DCTDecode"] | [b"JPXDecode"] => Some((stream.content.clone(), (w, h))),
        [b"CCITTFaxDecode"] => {
            let p = params.unwrap_or_default();
            let k = int(doc, &p, b"K").unwrap_or(0);
            if boolean(&p, b"EncodedByteAlign") && k < 0 {
                return None;
            }
            let columns = int(doc, &p, b"Columns").unwrap_or(1728).max(1) as u32;
            let rows = int(doc, &p, b"Rows")
                .filter(|&r| r > 0)
                .map_or(h, |r| r as u32);
            let white_is_zero = !(boolean(&p, b"BlackIs1") ^ inverted_decode);
            let tiff = ccitt_tiff(
                &stream.content,
                columns,
                rows,
                k,
                boolean(&p, b"EncodedByteAlign"),
                white_is_zero,
            );
            Some((tiff, (columns, rows)))
        }
        // Too many samples to hold decoded: the renderer draws it at a bounded resolution.
        [] | [b"FlateDecode"] if w as u64 * h as u64 > MAX_PIXELS => None,
        [] | [b"FlateDecode"] => {
            let samples = if filters.is_empty() {
                stream.content.clone()
            } else {
                stream.decompressed_content().ok()?
            };
            let mask = boolean(dict, b"ImageMask");
            let bpc = if mask {
                1
            } else {
                int(doc, dict, b"BitsPerComponent")?
            };
            let components = if mask {
                1
            } else {
                colour_components(doc, dict)?
            };
            pnm(&samples, w, h, bpc, components, inverted_decode).map(|p| (p, (w, h)))
        }
        _ => None,
    }
}

fn colour_components(doc: &Document, dict: &lopdf::Dictionary) -> Option<u32> {
    let (_, cs) = doc.dereference(dict.get(b"ColorSpace").ok()?).ok()?;
    match cs {
        Object::Name(n) if n == b"DeviceGray" || n == b"CalGray" => Some(1),
        Object::Name(n) if n == b"DeviceRGB" || n == b"CalRGB" => Some(3),
        Object::Array(a) if a.first().and_then(|o| o.as_name().ok()) == Some(b"ICCBased") => {
            let id = a.get(1)?.as_reference().ok()?;
            let n = int(doc, &doc.get_object(id).ok()?.as_stream().ok()?.dict, b"N")?;
            matches!(n, 1 | 3).then_some(n as u32)
        }
        _ => None,
    }
}

/// Raw samples as a PBM/PGM/PPM file.
fn pnm(
    samples: &[u8],
    w: u32,
    h: u32,
    bpc: i64,
    components: u32,
    inverted: bool,
) -> Option<Vec<u8>> {
    let (magic, stride) = match (bpc, components) {
        (1, 1) => ("P4", w.div_ceil(8) as usize),
        (8, 1) => ("P5", w as usize),
        (8, 3) => ("P6", w as usize * 3),
        _ => return None,
    };
    let len = stride.checked_mul(h as usize)?;
    if samples.len() < len || len as u64 > MAX_PIXELS * 3 {
        return None;
    }
    let header = if magic == "P4" {
        format!("{magic}\n{w} {h}\n")
    } else {
        format!("{magic}\n{w} {h}\n255\n")
    };
    let mut out = header.into_bytes();
    out.reserve(len);
    // PBM's 1 is black; a PDF grey sample of 0 is black, unless its Decode array turns it.
    let flip = (magic == "P4") != inverted;
    out.extend(samples[..len].iter().map(|&b| if flip { !b } else { b }));
    Some(out)
}

/// A CCITT stream from a PDF wrapped as a one-strip TIFF, which libtiff decodes.
fn ccitt_tiff(
    data: &[u8],
    columns: u32,
    rows: u32,
    k: i64,
    byte_align: bool,
    white_is_zero: bool,
) -> Vec<u8> {
    let (compression, options_tag, options) = if k < 0 {
        (4u16, 293u16, 0u32)
    } else {
        (3, 292, u32::from(k > 0) | if byte_align { 4 } else { 0 })
    };
    // (tag, type, value): type 3 = SHORT, 4 = LONG.
    let entries: [(u16, u16, u32); 10] = [
        (256, 4, columns),
        (257, 4, rows),
        (258, 3, 1),
        (259, 3, compression as u32),
        (262, 3, if white_is_zero { 0 } else { 1 }),
        (273, 4, 0), // strip offset, filled below
        (277, 3, 1),
        (278, 4, rows),
        (279, 4, data.len() as u32),
        (options_tag, 4, options),
    ];
    let ifd_len = 2 + entries.len() * 12 + 4;
    let data_offset = (8 + ifd_len) as u32;
    let mut out = Vec::with_capacity(data_offset as usize + data.len());
    out.extend_from_slice(b"II*\0");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, ty, value) in entries {
        let value = if tag == 273 { data_offset } else { value };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        if ty == 3 {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Why a page could not be shown.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum PageImageError {
    /// The document has no such page, or no page images at all.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// Page `page` of a PDF or image as a PNG at most `width` pixels wide (for the web app's
/// document viewer: browsers show no TIFF). Reads outside bytes: run it in a worker.
pub fn page_png(
    bytes: &Arc<Vec<u8>>,
    file_type: FileType,
    page: u32,
    width: u32,
) -> Result<Vec<u8>, PageImageError> {
    use PageImageError::*;
    if !matches!(
        file_type,
        FileType::Pdf | FileType::Tiff | FileType::Jpeg | FileType::Png
    ) {
        return Err(NotFound("no page images for this document".into()));
    }
    let planned = plan(bytes, file_type, &[page]).map_err(NotFound)?;
    let img = planned
        .into_iter()
        .next()
        .ok_or_else(|| NotFound(format!("no page {page}")))?
        .1
        .map_err(NotFound)?;
    let (pix, _) = decode(&img).map_err(Failed)?;
    let scale = (width as f32 / pix.width().max(1) as f32).min(1.0);
    let scaled = if scale < 0.99 {
        pix.scaled(scale, scale)
            .ok_or_else(|| Failed("cannot scale the page".into()))?
    } else {
        pix
    };
    scaled
        .to_png()
        .ok_or_else(|| Failed("cannot encode the page".into()))
}

/// Decodes a page image, within the pixel limit, as 8-bit grey or 1-bit, with its resolution;
/// with a note for the clerk when the page had to be read another way (a reduced rendering).
pub fn decode(img: &PageImage) -> Result<(Pix, Option<String>), String> {
    match img {
        PageImage::Render(r) => render(r).map(|p| (p, None)),
        PageImage::File {
            bytes,
            tiff_page,
            dpi,
            fallback,
        } => match decode_file(bytes, *tiff_page) {
            Ok(mut pix) => {
                if let Some((x, y)) = dpi {
                    pix.set_resolution(*x, *y);
                }
                Ok((pix, None))
            }
            Err(e) => match fallback {
                Some(r) => match render(r) {
                    Ok(pix) => {
                        let dpi = pix.resolution().0;
                        Ok((
                            pix,
                            Some(format!("{e}; read from a rendering at {dpi} dpi instead")),
                        ))
                    }
                    Err(r_err) => Err(format!("{e}; rendering it failed too: {r_err}")),
                },
                None => Err(e),
            },
        },
    }
}

fn too_big(w: u32, h: u32) -> String {
    format!(
        "page image of {w}×{h} pixels is over the limit of {} megapixels; not decoded",
        MAX_PIXELS / 1_000_000
    )
}

fn decode_file(bytes: &[u8], tiff_page: Option<u32>) -> Result<Pix, String> {
    let header =
        Pix::header(bytes, tiff_page).ok_or("unreadable image (damaged or unknown format)")?;
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8]);
    let mut reduction = 1;
    while header.pixels() / (reduction * reduction) as u64 > MAX_PIXELS {
        // A JPEG decodes at 1/2, 1/4 or 1/8 size for the cost of the smaller image.
        if !is_jpeg || reduction == 8 {
            return Err(too_big(header.width, header.height));
        }
        reduction *= 2;
    }
    let pix = match tiff_page {
        Some(n) => Pix::read_tiff_page(bytes, n),
        None if reduction > 1 => Pix::read_jpeg(bytes, reduction),
        None => Pix::read_mem(bytes),
    }
    .ok_or("the image data is damaged and could not be decoded")?;
    let (rx, ry) = pix.resolution();
    let mut pix = pix
        .into_grey_or_binary()
        .ok_or("cannot convert the image to grey")?;
    if reduction > 1 && rx > 0 {
        pix.set_resolution(rx / reduction, ry / reduction);
    }
    Ok(pix)
}

/// Renders one PDF page to grey with `pdftoppm` (PDF on stdin, PGM on stdout).
fn render(r: &Render) -> Result<Pix, String> {
    let (w_in, h_in) = (r.size_pt.0 / 72.0, r.size_pt.1 / 72.0);
    let most = ((MAX_PIXELS as f32) / (w_in * h_in).max(0.01)).sqrt();
    let dpi = RENDER_DPI.min(most).max(10.0).round() as u32;
    let mut child = Command::new("pdftoppm")
        .args(["-gray", "-r", &dpi.to_string(), "-f", &r.page.to_string()])
        .args(["-l", &r.page.to_string(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot run pdftoppm to render the page (poppler-utils installed?): {e}")
        })?;
    let mut stdin = child.stdin.take().ok_or("pdftoppm: no stdin")?;
    let pdf = r.pdf.clone();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&pdf);
    });
    let mut stdout = child.stdout.take().ok_or("pdftoppm: no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() < RENDER_TIME_LIMIT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = feeder.join();
    let out = reader.join().unwrap_or_default();
    match status {
        None => Err(format!(
            "rendering the page took over {} s",
            RENDER_TIME_LIMIT.as_secs()
        )),
        Some(s) if !s.success() || out.is_empty() => {
            Err("pdftoppm could not render the page".into())
        }
        Some(_) => {
            let mut pix = Pix::read_mem(&out).ok_or("pdftoppm's image could not be read")?;
            pix.set_resolution(dpi, dpi);
            Ok(pix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_of_a_fax_on_an_a4_page() {
        // 1728×1145 on A4 (595×842 pt): fax "normal" resolution, 204×98.
        assert_eq!(dpi_for(1728, 1145, (595.0, 842.0)), (209, 98));
        // A 300 dpi portrait scan drawn turned on a landscape page.
        assert_eq!(dpi_for(2480, 3508, (842.0, 595.0)), (300, 300));
        assert_eq!(dpi_for(2480, 3508, (595.0, 842.0)), (300, 300));
    }

    #[test]
    fn pbm_from_pdf_samples_puts_black_where_the_pdf_has_zero() {
        let p = pnm(&[0b0000_1111], 8, 1, 1, 1, false).unwrap();
        assert_eq!(p, b"P4\n8 1\n\xF0".to_vec());
        let p = pnm(&[0b0000_1111], 8, 1, 1, 1, true).unwrap();
        assert_eq!(*p.last().unwrap(), 0b0000_1111);
        assert!(
            pnm(&[1, 2], 8, 8, 8, 1, false).is_none(),
            "short data is refused"
        );
    }
}
