//! The only unsafe code of the crate: a thin owner of leptonica images ([`Pix`]) and of a
//! Tesseract engine ([`Engine`]), through the C APIs (`leptonica-sys`, `tesseract-sys`).
//! Every pointer handed back by C is checked for null and freed exactly once in `Drop`.

use leptonica_sys as lept;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::Once;
use tesseract_sys as tess;

use super::resample::Grey;

/// Silences leptonica's and Tesseract's own messages on stderr: failures come back as values.
fn quiet_libraries() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| unsafe {
        lept::setMsgSeverity(lept::L_SEVERITY_NONE as i32);
    });
}

/// An owned leptonica image.
pub struct Pix(NonNull<lept::Pix>);

// A Pix is plain memory owned by this value; moving it to another thread is sound as long as
// it is not shared, which `&mut`/ownership guarantee.
unsafe impl Send for Pix {}

impl Drop for Pix {
    fn drop(&mut self) {
        let mut p = self.0.as_ptr();
        unsafe { lept::pixDestroy(&mut p) };
    }
}

/// Width, height, bits per sample and samples per pixel read from a header, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub bits: u32,
    pub samples: u32,
}

impl Header {
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

impl Pix {
    fn from_raw(p: *mut lept::Pix) -> Option<Pix> {
        NonNull::new(p).map(Pix)
    }

    fn ptr(&self) -> *mut lept::Pix {
        self.0.as_ptr()
    }

    /// Decodes an image file held in memory (JPEG, PNG, TIFF page 0, PNM, BMP, GIF, WebP…).
    pub fn read_mem(bytes: &[u8]) -> Option<Pix> {
        quiet_libraries();
        Pix::from_raw(unsafe { lept::pixReadMem(bytes.as_ptr(), bytes.len()) })
    }

    /// Decodes page `n` (0-based) of a TIFF held in memory (any compression libtiff knows,
    /// CCITT G3/G4 included).
    pub fn read_tiff_page(bytes: &[u8], n: u32) -> Option<Pix> {
        quiet_libraries();
        Pix::from_raw(unsafe { lept::pixReadMemTiff(bytes.as_ptr(), bytes.len(), n as i32) })
    }

    /// Decodes a JPEG at 1/`reduction` of its size (1, 2, 4 or 8): big scans cost less.
    pub fn read_jpeg(bytes: &[u8], reduction: u32) -> Option<Pix> {
        quiet_libraries();
        let mut warn = 0;
        Pix::from_raw(unsafe {
            lept::pixReadMemJpeg(
                bytes.as_ptr(),
                bytes.len(),
                0,
                reduction as i32,
                &mut warn,
                0,
            )
        })
    }

    /// The header of an image file (TIFF: of page `n`) without decoding its pixels.
    pub fn header(bytes: &[u8], tiff_page: Option<u32>) -> Option<Header> {
        quiet_libraries();
        let (mut w, mut h, mut bps, mut spp) = (0, 0, 0, 0);
        let ok = unsafe {
            match tiff_page {
                Some(n) => {
                    let (mut res, mut cmap, mut format) = (0, 0, 0);
                    lept::readHeaderMemTiff(
                        bytes.as_ptr(),
                        bytes.len(),
                        n as i32,
                        &mut w,
                        &mut h,
                        &mut bps,
                        &mut spp,
                        &mut res,
                        &mut cmap,
                        &mut format,
                    )
                }
                None => {
                    let (mut format, mut cmap) = (0, 0);
                    lept::pixReadHeaderMem(
                        bytes.as_ptr(),
                        bytes.len(),
                        &mut format,
                        &mut w,
                        &mut h,
                        &mut bps,
                        &mut spp,
                        &mut cmap,
                    )
                }
            }
        };
        (ok == 0 && w > 0 && h > 0).then_some(Header {
            width: w as u32,
            height: h as u32,
            bits: bps.max(0) as u32,
            samples: spp.max(0) as u32,
        })
    }

    pub fn width(&self) -> u32 {
        unsafe { lept::pixGetWidth(self.ptr()) as u32 }
    }

    pub fn height(&self) -> u32 {
        unsafe { lept::pixGetHeight(self.ptr()) as u32 }
    }

    pub fn depth(&self) -> u32 {
        unsafe { lept::pixGetDepth(self.ptr()) as u32 }
    }

    /// Resolution in pixels per inch, (x, y); 0 when the file did not say.
    pub fn resolution(&self) -> (u32, u32) {
        unsafe {
            (
                lept::pixGetXRes(self.ptr()).max(0) as u32,
                lept::pixGetYRes(self.ptr()).max(0) as u32,
            )
        }
    }

    pub fn set_resolution(&mut self, x: u32, y: u32) {
        unsafe { lept::pixSetResolution(self.ptr(), x as i32, y as i32) };
    }

    /// The pixels of an 8-bit grey image without a colour map, as plain bytes.
    pub fn to_grey(&self) -> Option<Grey> {
        let has_cmap = unsafe { !lept::pixGetColormap(self.ptr()).is_null() };
        if self.depth() != 8 || has_cmap {
            return None;
        }
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut px = vec![0u8; w * h];
        unsafe {
            let wpl = lept::pixGetWpl(self.ptr()) as usize;
            let data = lept::pixGetData(self.ptr()) as *const u32;
            if data.is_null() || wpl * 4 < w {
                return None;
            }
            for (i, row) in px.chunks_exact_mut(w).enumerate() {
                // SAFETY: leptonica allocates `wpl` words for each of the `h` lines.
                let line = std::slice::from_raw_parts(data.add(i * wpl), wpl);
                // leptonica keeps the first pixel of each word in its most significant byte.
                let mut chunks = row.chunks_exact_mut(4);
                for (chunk, word) in (&mut chunks).zip(line) {
                    chunk.copy_from_slice(&word.to_be_bytes());
                }
                let rest = chunks.into_remainder();
                if !rest.is_empty() {
                    let n = rest.len();
                    rest.copy_from_slice(&line[w / 4].to_be_bytes()[..n]);
                }
            }
        }
        Some(Grey {
            width: w,
            height: h,
            px,
        })
    }

    /// An 8-bit leptonica image of `grey`, at resolution `res`.
    pub fn from_grey(grey: &Grey, res: (u32, u32)) -> Option<Pix> {
        let (w, h) = (grey.width, grey.height);
        let pix = Pix::from_raw(unsafe { lept::pixCreate(w as i32, h as i32, 8) })?;
        unsafe {
            let wpl = lept::pixGetWpl(pix.ptr()) as usize;
            let data = lept::pixGetData(pix.ptr());
            if data.is_null() || wpl * 4 < w {
                return None;
            }
            for (i, row) in grey.px.chunks_exact(w).enumerate() {
                // SAFETY: as in `to_grey`; the new image is ours alone.
                let line = std::slice::from_raw_parts_mut(data.add(i * wpl), wpl);
                let chunks = row.chunks_exact(4);
                let rest = chunks.remainder();
                for (chunk, word) in chunks.zip(line.iter_mut()) {
                    *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                if !rest.is_empty() {
                    let mut b = [0u8; 4];
                    b[..rest.len()].copy_from_slice(rest);
                    line[w / 4] = u32::from_be_bytes(b);
                }
            }
        }
        let mut pix = pix;
        pix.set_resolution(res.0, res.1);
        Some(pix)
    }

    /// 8-bit grey (or 1-bit kept as is): colour and colour maps carry nothing for OCR.
    pub fn into_grey_or_binary(self) -> Option<Pix> {
        let has_cmap = unsafe { !lept::pixGetColormap(self.ptr()).is_null() };
        if (self.depth() == 1 || self.depth() == 8) && !has_cmap {
            return Some(self);
        }
        let res = self.resolution();
        let mut out = Pix::from_raw(unsafe { lept::pixConvertTo8(self.ptr(), 0) })?;
        out.set_resolution(res.0, res.1);
        Some(out)
    }

    /// Share of black pixels of a 1-bit image (None for other depths).
    pub fn black_share(&self) -> Option<f64> {
        if self.depth() != 1 {
            return None;
        }
        let mut count = 0;
        unsafe { lept::pixCountPixels(self.ptr(), &mut count, std::ptr::null_mut()) };
        Some(count as f64 / (self.width() as f64 * self.height() as f64).max(1.0))
    }

    pub fn inverted(self) -> Option<Pix> {
        Pix::from_raw(unsafe { lept::pixInvert(std::ptr::null_mut(), self.ptr()) })
    }

    /// Scaled by (sx, sy); resolution scaled with it. Grey and colour are sharpened with a
    /// narrower unsharp mask than leptonica's default (half its cost on a 300-dpi letter;
    /// without any, a signed name blurred into the signature and was lost).
    pub fn scaled(&self, sx: f32, sy: f32) -> Option<Pix> {
        let (rx, ry) = self.resolution();
        let res = (
            (rx as f32 * sx).round() as u32,
            (ry as f32 * sy).round() as u32,
        );
        // Between 0.7 and 1.4 leptonica interpolates linearly and sharpens; that is done
        // here in Rust, at a fifth of the cost (see `resample`). Other factors take
        // leptonica's area mapping.
        let most = sx.max(sy);
        if (0.7..1.4).contains(&most) {
            if let Some(grey) = self.to_grey() {
                return Pix::from_grey(&grey.scaled(sx, sy).sharpened(0.4), res);
            }
        }
        let mut out = Pix::from_raw(unsafe {
            if self.depth() == 1 {
                lept::pixScale(self.ptr(), sx, sy)
            } else {
                lept::pixScaleGeneral(self.ptr(), sx, sy, 0.4, 1)
            }
        })?;
        out.set_resolution(res.0, res.1);
        Some(out)
    }

    /// Turned clockwise by `quarters` quarter turns.
    pub fn rotated_quarters(&self, quarters: u32) -> Option<Pix> {
        let (rx, ry) = self.resolution();
        let mut out = Pix::from_raw(unsafe { lept::pixRotateOrth(self.ptr(), quarters as i32) })?;
        if quarters % 2 == 1 {
            out.set_resolution(ry, rx);
        } else {
            out.set_resolution(rx, ry);
        }
        Some(out)
    }

    /// The 1-bit copy the page is measured on (which way it faces, its skew): a grey page
    /// thresholded at leptonica's default level, a 1-bit page shared as it is.
    pub fn binary(&self) -> Option<Pix> {
        Pix::from_raw(unsafe {
            if self.depth() == 1 {
                lept::pixClone(self.ptr())
            } else {
                lept::pixConvertTo1(self.ptr(), BINARY_THRESHOLD)
            }
        })
    }

    /// Which way the text on the page faces, from the shapes of its letters (leptonica's
    /// ascender/descender count, on `binary`, the page's [`Pix::binary`]): the clockwise
    /// quarter turns that make it upright, or None when it cannot tell (little text,
    /// pictures, other scripts). Costs milliseconds, against a recognition's second.
    pub fn text_orientation(&self, binary: &Pix) -> Option<(u32, f32, f32)> {
        let (mut up, mut left, mut orient) = (0f32, 0f32, 0i32);
        // A grey scan (read at 250 dpi) counted at half size costs a quarter and, on the
        // ocr-it letters, still reads upright pages at 7.9 or more, turned ones at 1.6 or less.
        // A clear answer there is taken; anything else is counted again at full size. (Faxes
        // at half size lose their letters' shapes: 0.2 to 6.6 on upright pages.)
        if self.depth() != 1 && self.resolution().0 >= 200 {
            let half = Pix::from_raw(unsafe {
                lept::pixReduceRankBinaryCascade(binary.ptr(), 1, 0, 0, 0)
            });
            if let Some(half) = half {
                let mut up_half = 0f32;
                let counted = unsafe { lept::pixUpDownDetect(half.ptr(), &mut up_half, 0, 0, 0) };
                if counted == 0 && up_half >= CLEARLY_UPRIGHT_AT_HALF {
                    return Some((0, up_half, 0.0));
                }
            }
        }
        unsafe {
            // Most pages come upright and say so clearly (on the ocr-it pages: 8.7 to 23,
            // sideways ones within ±3): then the sideways count, as costly, is not needed.
            if lept::pixUpDownDetect(binary.ptr(), &mut up, 0, 0, 0) == 0 && up >= CLEARLY_UPRIGHT {
                return Some((0, up, 0.0));
            }
            // The same count on the page turned a quarter (what pixOrientDetect does, without
            // counting the up/down case a second time).
            let turned = Pix::from_raw(lept::pixRotateOrth(binary.ptr(), 1))?;
            if lept::pixUpDownDetect(turned.ptr(), &mut left, 0, 0, 0) != 0 {
                return None;
            }
            lept::makeOrientDecision(up, left, 0.0, 0.0, &mut orient, 0);
        }
        // leptonica names the way the text's tops point: up, left, down, right.
        let quarters = match orient as u32 {
            lept::L_TEXT_ORIENT_UP => 0,
            lept::L_TEXT_ORIENT_LEFT => 1,
            lept::L_TEXT_ORIENT_DOWN => 2,
            lept::L_TEXT_ORIENT_RIGHT => 3,
            _ => return None,
        };
        Some((quarters, up, left))
    }

    /// The image as a PNG file (for looking at what OCR was given).
    pub fn to_png(&self) -> Option<Vec<u8>> {
        self.encode(|data, size, pix| unsafe {
            lept::pixWriteMem(data, size, pix, lept::IFF_PNG as i32)
        })
    }

    /// The image as a CCITT G4 TIFF (1-bit images; others are thresholded), as fax servers
    /// store pages.
    pub fn to_tiff_g4(&self) -> Option<Vec<u8>> {
        self.encode(|data, size, pix| unsafe {
            lept::pixWriteMemTiff(data, size, pix, lept::IFF_TIFF_G4 as i32)
        })
    }

    pub fn to_jpeg(&self, quality: u32) -> Option<Vec<u8>> {
        self.encode(|data, size, pix| unsafe {
            lept::pixWriteMemJpeg(data, size, pix, quality as i32, 0)
        })
    }

    fn encode(
        &self,
        write: impl Fn(*mut *mut u8, *mut usize, *mut lept::Pix) -> i32,
    ) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size = 0usize;
        if write(&mut data, &mut size, self.ptr()) != 0 || data.is_null() {
            return None;
        }
        // SAFETY: leptonica allocated `size` bytes at `data` and hands them to us to free.
        unsafe {
            let out = std::slice::from_raw_parts(data, size).to_vec();
            lept::lept_free(data.cast());
            Some(out)
        }
    }

    /// Finds the skew of text lines (within ±7°) and straightens it; returns the straightened
    /// image and the angle found in degrees (0 when none or not confident).
    pub fn deskewed(&self, binary: &Pix) -> Option<(Pix, f32)> {
        let (mut angle, mut conf) = (0f32, 0f32);
        // leptonica's defaults (`pixDeskew`): a sweep of ±7° in 1° steps at 1/4 size, then a
        // binary search to 0.01° at 1/2 size.
        let found = unsafe {
            lept::pixFindSkewSweepAndSearch(
                binary.ptr(),
                &mut angle,
                &mut conf,
                4,
                2,
                7.0,
                1.0,
                0.01,
            )
        };
        // Under 0.1°, or a confidence under 3, leptonica would leave the page as it is.
        if found != 0 || angle.abs() < 0.1 || conf < 3.0 {
            return Some((Pix::from_raw(unsafe { lept::pixClone(self.ptr()) })?, 0.0));
        }
        let radians = angle.to_radians();
        if let Some(grey) = self.to_grey() {
            let straight = Pix::from_grey(&grey.rotated(radians), self.resolution())?;
            return Some((straight, angle));
        }
        // 1-bit pages: leptonica's rotation, as `pixDeskew` turns them.
        let out = Pix::from_raw(unsafe {
            lept::pixRotate(
                self.ptr(),
                radians,
                lept::L_ROTATE_AREA_MAP as i32,
                lept::L_BRING_IN_WHITE as i32,
                0,
                0,
            )
        })?;
        Some((out, angle))
    }
}

/// Grey pages are made 1-bit at this level to be measured (leptonica's default).
const BINARY_THRESHOLD: i32 = 130;

/// An up/down confidence this high is an upright page (leptonica's own threshold for a
/// decision is 8, with the sideways confidence 2.5 times weaker).
const CLEARLY_UPRIGHT: f32 = 12.0;
/// The same for a grey page counted at half size, where confidences come out about halved.
const CLEARLY_UPRIGHT_AT_HALF: f32 = 6.0;

/// A recognised text line, with where it sits.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Index of the layout block (column, address block…) it belongs to, in Tesseract's order.
    pub block: usize,
    /// The line starts a paragraph.
    pub para_start: bool,
    pub text: String,
    pub confidence: f32,
    /// left, top, right, bottom in pixels.
    pub bbox: (i32, i32, i32, i32),
    /// Tesseract's reading of its block's orientation: 0 upright, 1 turned right, 2 upside
    /// down, 3 turned left (a sideways page can read well without being upright).
    pub orientation: u32,
}

/// Result of recognising one page image.
pub struct Recognised {
    /// Tesseract's own text of the page, in its reading order.
    pub text: String,
    pub lines: Vec<Line>,
    /// Mean word confidence, 0–100.
    pub confidence: f32,
    /// A one-page searchable PDF (image + invisible text), when asked for.
    pub pdf: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Tesseract could not start with languages `{languages}` (are the tesseract-ocr-* language packages installed?)")]
    Init { languages: String },
    #[error("recognition stopped after the page time limit of {0:.0} s")]
    TimedOut(f64),
    #[error("Tesseract could not recognise the page")]
    Failed,
    #[error("searchable PDF: {0}")]
    Pdf(String),
}

/// One Tesseract instance for recognition. Not shared between threads: each OCR worker owns
/// one and reuses it for every page. Orientation detection uses the process's one [`Osd`].
pub struct Engine {
    api: NonNull<tess::TessBaseAPI>,
    datapath: Option<CString>,
}

unsafe impl Send for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        unsafe {
            tess::TessBaseAPIEnd(self.api.as_ptr());
            tess::TessBaseAPIDelete(self.api.as_ptr());
        }
    }
}

/// Tesseract with the `osd` model, for orientation detection. The model takes ~60 MB and is
/// needed only for the few pages that arrive turned: it is loaded on first use, once per
/// process, and shared by the OCR workers (a detection is short).
struct Osd(NonNull<tess::TessBaseAPI>);

// Used only behind the mutex of `osd()`.
unsafe impl Send for Osd {}

fn osd() -> &'static std::sync::Mutex<Option<Osd>> {
    static OSD: std::sync::OnceLock<std::sync::Mutex<Option<Osd>>> = std::sync::OnceLock::new();
    OSD.get_or_init(|| std::sync::Mutex::new(new_api("osd").map(Osd)))
}

fn new_api(languages: &str) -> Option<NonNull<tess::TessBaseAPI>> {
    let lang = CString::new(languages).ok()?;
    unsafe {
        let api = NonNull::new(tess::TessBaseAPICreate())?;
        if tess::TessBaseAPIInit3(api.as_ptr(), std::ptr::null(), lang.as_ptr()) != 0 {
            tess::TessBaseAPIDelete(api.as_ptr());
            return None;
        }
        // The library's default is one uniform block; pages have columns and headers.
        if languages != "osd" {
            tess::TessBaseAPISetPageSegMode(api.as_ptr(), tess::TessPageSegMode_PSM_AUTO);
        }
        // Tesseract's progress chatter ("Estimating resolution…") would go to stderr.
        let (k, v) = (c"debug_file", c"/dev/null");
        tess::TessBaseAPISetVariable(api.as_ptr(), k.as_ptr(), v.as_ptr());
        Some(api)
    }
}

impl Engine {
    /// Starts Tesseract with `languages` (e.g. `ita+eng`). Orientation detection needs the
    /// `osd` model; without it pages are read as they come.
    pub fn new(languages: &str) -> Result<Engine, EngineError> {
        quiet_libraries();
        let api = new_api(languages).ok_or_else(|| EngineError::Init {
            languages: languages.to_string(),
        })?;
        let datapath = unsafe {
            let p = tess::TessBaseAPIGetDatapath(api.as_ptr());
            (!p.is_null()).then(|| CStr::from_ptr(p).to_owned())
        };
        Ok(Engine { api, datapath })
    }

    /// The page's orientation as the clockwise quarter turns that make it upright, with
    /// Tesseract's confidence; None when it cannot tell (too little text, no `osd` model).
    pub fn orientation(&self, pix: &Pix, dpi: u32) -> Option<(u32, f32)> {
        let guard = osd().lock().unwrap_or_else(|e| e.into_inner());
        let osd = guard.as_ref()?.0.as_ptr();
        let (mut deg, mut conf) = (0, 0f32);
        let mut script: *const c_char = std::ptr::null();
        let mut script_conf = 0f32;
        let ok = unsafe {
            tess::TessBaseAPISetImage2(osd, pix.ptr());
            tess::TessBaseAPISetSourceResolution(osd, dpi as i32);
            let ok = tess::TessBaseAPIDetectOrientationScript(
                osd,
                &mut deg,
                &mut conf,
                &mut script,
                &mut script_conf,
            );
            tess::TessBaseAPIClear(osd);
            ok
        };
        // Tesseract reports how far the page is turned; undoing it takes the opposite turn.
        (ok != 0).then_some((((360 - deg.rem_euclid(360)) % 360 / 90) as u32, conf))
    }

    /// Recognises a page. `timeout_secs` bounds the work; `pdf` also renders the page as a
    /// one-page searchable PDF (written by Tesseract's PDF renderer in `scratch`).
    pub fn recognise(
        &mut self,
        pix: &Pix,
        dpi: u32,
        timeout_secs: f64,
        pdf: Option<&std::path::Path>,
    ) -> Result<Recognised, EngineError> {
        let api = self.api.as_ptr();
        unsafe {
            // Tesseract 5 reads again, inverted, every line it read with little confidence
            // (white on black headings). On a fax that is most noisy lines, and a fax has no
            // inverted text: up to a third of the page's time, for nothing (measured on the
            // ocr-it faxes: same CER without it). Scans in grey keep the retry.
            let invert = if pix.depth() == 1 { c"0" } else { c"1" };
            tess::TessBaseAPISetVariable(api, c"tessedit_do_invert".as_ptr(), invert.as_ptr());
            tess::TessBaseAPISetImage2(api, pix.ptr());
            tess::TessBaseAPISetSourceResolution(api, dpi as i32);
            let monitor = tess::TessMonitorCreate();
            if monitor.is_null() {
                return Err(EngineError::Failed);
            }
            let ms = (timeout_secs * 1000.0).clamp(1.0, i32::MAX as f64) as i32;
            tess::TessMonitorSetDeadlineMSecs(monitor, ms);
            let started = std::time::Instant::now();
            let rc = tess::TessBaseAPIRecognize(api, monitor);
            tess::TessMonitorDelete(monitor);
            if rc != 0 {
                tess::TessBaseAPIClear(api);
                return Err(if started.elapsed().as_secs_f64() >= timeout_secs {
                    EngineError::TimedOut(timeout_secs)
                } else {
                    EngineError::Failed
                });
            }
            let text_ptr = tess::TessBaseAPIGetUTF8Text(api);
            let text = if text_ptr.is_null() {
                String::new()
            } else {
                let t = CStr::from_ptr(text_ptr).to_string_lossy().into_owned();
                tess::TessDeleteText(text_ptr);
                t
            };
            let confidence = tess::TessBaseAPIMeanTextConf(api).max(0) as f32;
            let lines = self.lines();
            let pdf = match pdf {
                Some(base) => Some(self.render_pdf(base)?),
                None => None,
            };
            tess::TessBaseAPIClear(api);
            Ok(Recognised {
                text,
                lines,
                confidence,
                pdf,
            })
        }
    }

    /// The lines of the last recognition, with block, paragraph, confidence and position.
    unsafe fn lines(&mut self) -> Vec<Line> {
        let it = tess::TessBaseAPIGetIterator(self.api.as_ptr());
        if it.is_null() {
            return Vec::new();
        }
        // The page iterator is a view of the same object, not a new one.
        let page = tess::TessResultIteratorGetPageIterator(it);
        let mut out = Vec::new();
        let mut block = 0usize;
        let mut first = true;
        loop {
            if !first
                && tess::TessPageIteratorIsAtBeginningOf(
                    page,
                    tess::TessPageIteratorLevel_RIL_BLOCK,
                ) != 0
            {
                block += 1;
            }
            first = false;
            let para_start =
                tess::TessPageIteratorIsAtBeginningOf(page, tess::TessPageIteratorLevel_RIL_PARA)
                    != 0;
            let (mut l, mut t, mut r, mut b) = (0, 0, 0, 0);
            tess::TessPageIteratorBoundingBox(
                page,
                tess::TessPageIteratorLevel_RIL_TEXTLINE,
                &mut l,
                &mut t,
                &mut r,
                &mut b,
            );
            let (mut orientation, mut direction, mut order, mut angle) = (0, 0, 0, 0f32);
            tess::TessPageIteratorOrientation(
                page,
                &mut orientation,
                &mut direction,
                &mut order,
                &mut angle,
            );
            let p =
                tess::TessResultIteratorGetUTF8Text(it, tess::TessPageIteratorLevel_RIL_TEXTLINE);
            if !p.is_null() {
                let text = CStr::from_ptr(p).to_string_lossy().trim_end().to_string();
                tess::TessDeleteText(p);
                let confidence = tess::TessResultIteratorConfidence(
                    it,
                    tess::TessPageIteratorLevel_RIL_TEXTLINE,
                );
                out.push(Line {
                    block,
                    para_start,
                    text,
                    confidence,
                    bbox: (l, t, r, b),
                    orientation,
                });
            }
            if tess::TessResultIteratorNext(it, tess::TessPageIteratorLevel_RIL_TEXTLINE) == 0 {
                break;
            }
        }
        tess::TessResultIteratorDelete(it);
        out
    }

    /// Writes the recognised page as `<base>.pdf` with Tesseract's renderer and reads it back.
    unsafe fn render_pdf(&mut self, base: &std::path::Path) -> Result<Vec<u8>, EngineError> {
        let api = self.api.as_ptr();
        let fail = |what: &str| EngineError::Pdf(what.to_string());
        let base_c =
            CString::new(base.to_string_lossy().as_bytes()).map_err(|_| fail("bad path"))?;
        let datapath = self
            .datapath
            .clone()
            .ok_or_else(|| fail("no tessdata path"))?;
        let renderer = tess::TessPDFRendererCreate(base_c.as_ptr(), datapath.as_ptr(), 0);
        if renderer.is_null() {
            return Err(fail("renderer could not start"));
        }
        let title = c"";
        let ok = tess::TessResultRendererBeginDocument(renderer, title.as_ptr()) != 0
            && tess::TessResultRendererAddImage(renderer, api) != 0
            && tess::TessResultRendererEndDocument(renderer) != 0;
        tess::TessDeleteResultRenderer(renderer);
        let path = base.with_extension("pdf");
        let bytes = std::fs::read(&path);
        let _ = std::fs::remove_file(&path);
        if !ok {
            return Err(fail("renderer failed"));
        }
        bytes.map_err(|e| EngineError::Pdf(format!("cannot read it back: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey page-like image: a gradient with dark strokes, so interpolation is exercised.
    fn page(w: usize, h: usize) -> Grey {
        let mut px = vec![0u8; w * h];
        let mut seed = 12345u32;
        for (k, p) in px.iter_mut().enumerate() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let (x, y) = (k % w, k / w);
            let stroke =
                (y / 7).is_multiple_of(3) && !(x / 5 + (seed as usize >> 28)).is_multiple_of(4);
            *p = if stroke {
                20 + (seed >> 29) as u8
            } else {
                200 + ((x + y) % 50) as u8
            };
        }
        Grey {
            width: w,
            height: h,
            px,
        }
    }

    fn max_diff(a: &Grey, b: &Grey) -> u8 {
        assert_eq!((a.width, a.height), (b.width, b.height));
        a.px.iter()
            .zip(&b.px)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0)
    }

    fn lept(f: impl FnOnce(*mut lept::Pix) -> *mut lept::Pix, g: &Grey) -> Grey {
        let pix = Pix::from_grey(g, (300, 300)).unwrap();
        let out = Pix::from_raw(f(pix.ptr())).expect("leptonica result");
        out.to_grey().unwrap()
    }

    #[test]
    fn grey_round_trips_through_leptonica() {
        for w in [1, 3, 4, 5, 333] {
            let g = page(w, 17);
            assert_eq!(Pix::from_grey(&g, (1, 1)).unwrap().to_grey().unwrap(), g);
        }
    }

    #[test]
    fn scaling_matches_leptonica_linear_interpolation() {
        let g = page(611, 403);
        for (sx, sy) in [(250.0 / 300.0, 250.0 / 300.0), (0.75, 0.9), (1.3, 1.1)] {
            let ours = g.scaled(sx, sy);
            let theirs = lept(|p| unsafe { lept::pixScaleGrayLI(p, sx, sy) }, &g);
            assert!(max_diff(&ours, &theirs) <= 1, "scale {sx}×{sy}");
        }
    }

    #[test]
    fn rotation_matches_leptonica_area_mapping() {
        let g = page(611, 403);
        for deg in [0.3f32, -1.2, 35.0] {
            let r = deg.to_radians();
            let ours = g.rotated(r);
            let theirs = lept(|p| unsafe { lept::pixRotateAMGray(p, r, 255) }, &g);
            // Two shears land within a fraction of a pixel of the true rotation: the images
            // agree but at strokes' edges, where a fraction of a pixel is a grey level.
            let mean = ours
                .px
                .iter()
                .zip(&theirs.px)
                .map(|(a, b)| a.abs_diff(*b) as f64)
                .sum::<f64>()
                / ours.px.len() as f64;
            assert!(mean < 3.0, "rotation {deg}°: mean difference {mean:.2}");
        }
    }

    /// Rows holding dark pixels of the image.
    fn dark_rows(g: &Grey) -> Vec<usize> {
        (0..g.height)
            .filter(|&i| {
                g.px[i * g.width..(i + 1) * g.width]
                    .iter()
                    .any(|&v| v < 128)
            })
            .collect()
    }

    #[test]
    fn a_skewed_line_comes_out_level_as_leptonica_makes_it() {
        for deg in [0.8f32, -2.5, 4.0, -6.9] {
            let (w, h) = (900usize, 500usize);
            let mut px = vec![255u8; w * h];
            // A 3-pixel line through the centre, turned by -deg; leptonica turning it by deg
            // makes it level, and so must we.
            let t = (-deg).to_radians().tan();
            for x in 100..w - 100 {
                let y = (h / 2) as f32 + (x as f32 - (w / 2) as f32) * t;
                for dy in 0..3 {
                    px[(y as usize + dy) * w + x] = 0;
                }
            }
            let g = Grey {
                width: w,
                height: h,
                px,
            };
            let r = deg.to_radians();
            let theirs = lept(|p| unsafe { lept::pixRotateAMGray(p, r, 255) }, &g);
            assert!(dark_rows(&theirs).len() <= 6, "leptonica at {deg}°");
            let ours = dark_rows(&g.rotated(r));
            assert!(
                !ours.is_empty() && ours.len() <= 6,
                "at {deg}°: rows {ours:?}"
            );
        }
    }

    #[test]
    fn sharpening_matches_leptonica_unsharp_mask() {
        let g = page(211, 97);
        let ours = g.sharpened(0.4);
        let theirs = lept(|p| unsafe { lept::pixUnsharpMaskingGray(p, 1, 0.4) }, &g);
        assert!(max_diff(&ours, &theirs) <= 1);
        // It does sharpen: edges move away from their neighbours' mean.
        assert_ne!(ours, g);
    }
}
