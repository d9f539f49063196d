//! OCR of faxes and scans, in-process through libtesseract.
//!
//! A process-wide pool of worker threads, each owning one Tesseract engine that it reuses for
//! every page. A document's pages are queued as compressed page images ([`pages::PageImage`]);
//! a worker decodes one, puts it upright (fax resolution made square, Tesseract's orientation
//! detection, leptonica's deskew), recognises it under a time limit, and renders it as a
//! one-page searchable PDF. The pages' PDFs are then joined in order ([`pdfjoin`]). So at most
//! one decoded page per worker is in memory, whatever the document's length.

pub(crate) mod engine;
pub mod pages;
mod pdfjoin;
mod resample;

use crate::extract::FileType;
use crossbeam_channel::{Receiver, Sender};
use engine::{Engine, Pix};
use pages::PageImage;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Orientation detection below this confidence is not acted on (a page of little text).
const MIN_ORIENTATION_CONFIDENCE: f32 = 1.5;
/// A page read with at least this mean confidence is upright; below it, orientation is
/// checked (sideways or upside-down text reads as low-confidence garbage).
const CHECK_ORIENTATION_BELOW: f32 = 80.0;
/// Above this, images are scaled down to 300 dpi: more pixels only cost time.
const MAX_OCR_DPI: u32 = 400;
/// Grey and colour scans are read at most at this resolution. Tesseract scales every text
/// line to its network's fixed height, so more pixels only feed the layout analysis (line
/// finding, thresholding), whose cost grows with them: on the ocr-it letters (300 dpi) it
/// took a fifth less CPU per page, with a lower CER. Bilevel pages (faxes) are not resampled:
/// scaling 1-bit glyphs costs accuracy.
const MAX_GREY_OCR_DPI: u32 = 250;

/// How to run OCR; from the pipeline's `ocr` stage.
#[derive(Debug, Clone)]
pub struct OcrOptions {
    /// Tesseract languages, e.g. `ita+eng`.
    pub languages: String,
    /// Worker threads (engines) of the process-wide pool; 0: one per core.
    pub workers: usize,
    pub page_timeout_secs: f64,
    /// Also produce a searchable PDF of the document.
    pub searchable_pdf: bool,
}

impl Default for OcrOptions {
    fn default() -> Self {
        OcrOptions {
            languages: "ita+eng".into(),
            workers: 0,
            page_timeout_secs: 60.0,
            searchable_pdf: true,
        }
    }
}

/// One page's OCR.
#[derive(Debug, Clone, Serialize)]
pub struct PageOcr {
    pub page: u32,
    pub text: String,
    /// Mean word confidence, 0–100.
    pub confidence: f32,
    /// Degrees the page was turned clockwise to read it (0, 90, 180, 270).
    pub rotation: u16,
    /// Skew straightened, degrees (positive: the content was turned anticlockwise).
    pub skew: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Read, but a clerk should look (e.g. from a reduced rendering of a huge image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[derive(Debug, Default)]
pub struct DocumentOcr {
    pub pages: Vec<PageOcr>,
    /// The searchable PDF (page images + invisible text), when asked for and made.
    pub pdf: Option<Vec<u8>>,
    pub pdf_error: Option<String>,
}

struct Job {
    index: usize,
    page: u32,
    image: PageImage,
    timeout_secs: f64,
    pdf_dir: Option<Arc<tempfile::TempDir>>,
    reply: Sender<(usize, PageOcr, Option<Vec<u8>>)>,
}

struct Pool {
    /// Pages of multi-page documents: any worker takes them.
    jobs: Sender<Job>,
    /// A one-page document when the first worker is free: only it takes these, so a process
    /// that reads one-page faxes and scans one at a time (each worker process of `ingest` and
    /// `run`) loads one engine (~50 MB), not one per core.
    first: Sender<Job>,
    /// Jobs the first worker holds or has queued.
    first_load: Arc<std::sync::atomic::AtomicUsize>,
}

/// The pool for `languages`, started on first use with `workers` threads. Each thread loads
/// its engine when it is first given a page.
fn pool(languages: &str, workers: usize) -> &'static Pool {
    static POOLS: OnceLock<Mutex<HashMap<String, &'static Pool>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    pools.entry(languages.to_string()).or_insert_with(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (first_tx, first_rx) = crossbeam_channel::unbounded::<Job>();
        let first_load = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        for i in 0..workers {
            let rx = rx.clone();
            // The others never see this channel: it stays open while the pool lives.
            let first = (i == 0).then(|| (first_rx.clone(), first_load.clone()));
            let languages = languages.to_string();
            std::thread::Builder::new()
                .name(format!("ocr-{i}"))
                .spawn(move || worker(&languages, rx, first))
                .expect("spawning an OCR worker thread");
        }
        Box::leak(Box::new(Pool {
            jobs: tx,
            first: first_tx,
            first_load,
        }))
    })
}

type FirstQueue = (Receiver<Job>, Arc<std::sync::atomic::AtomicUsize>);

fn worker(languages: &str, jobs: Receiver<Job>, first: Option<FirstQueue>) {
    use std::sync::atomic::Ordering;
    let mut engine: Option<Result<Engine, String>> = None;
    loop {
        let job = match &first {
            Some((first, load)) => crossbeam_channel::select! {
                recv(first) -> j => j,
                recv(jobs) -> j => {
                    load.fetch_add(1, Ordering::SeqCst);
                    j
                },
            },
            None => jobs.recv(),
        };
        let Ok(job) = job else { return };
        let engine =
            engine.get_or_insert_with(|| Engine::new(languages).map_err(|e| e.to_string()));
        let (ocr, pdf) = match engine {
            Ok(engine) => run_page(engine, &job),
            Err(e) => (failed_page(job.page, e.clone()), None),
        };
        let _ = job.reply.send((job.index, ocr, pdf));
        if let Some((_, load)) = &first {
            load.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// libgomp's own idea of its thread limit (`omp_get_thread_limit`), looked up at run time
/// in the libraries loaded (libtesseract brings libgomp); `None` when it is not loaded.
pub fn omp_thread_limit() -> Option<i32> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; the symbol, when found, is
    // libgomp's `int omp_get_thread_limit(void)`, which has no preconditions.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"omp_get_thread_limit".as_ptr());
        if f.is_null() {
            return None;
        }
        let f: extern "C" fn() -> libc::c_int = std::mem::transmute(f);
        Some(f())
    }
}

fn failed_page(page: u32, error: String) -> PageOcr {
    PageOcr {
        page,
        text: String::new(),
        confidence: 0.0,
        rotation: 0,
        skew: 0.0,
        error: Some(error),
        warning: None,
    }
}

/// Makes the page square-pixelled, upright and straight, then recognises it.
fn run_page(engine: &mut Engine, job: &Job) -> (PageOcr, Option<Vec<u8>>) {
    let fail = |e: String| (failed_page(job.page, e), None);
    let (pix, warning) = match pages::decode(&job.image) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let (pix, dpi) = match normalise(pix) {
        Some(p) => p,
        None => return fail("the page image could not be prepared".into()),
    };
    let pdf_base = job
        .pdf_dir
        .as_ref()
        .map(|d| d.path().join(format!("page-{:06}", job.page)));
    // Which way the page faces, from its letters' shapes (milliseconds): a page that came
    // turned is put upright before it is read, rather than read as garbage first.
    // The 1-bit copy it is measured on serves the deskew too, unless the page is turned.
    let binary = pix.binary();
    let (pix, turned, binary) = match binary.as_ref().and_then(|b| pix.text_orientation(b)) {
        Some((q, _, _)) if q != 0 => match pix.rotated_quarters(q) {
            Some(upright) => (upright, q, None),
            None => (pix, 0, binary),
        },
        _ => (pix, 0, binary),
    };
    let first = read_straightened(
        engine,
        pix,
        binary,
        dpi,
        turned as u16 * 90,
        job,
        pdf_base.as_deref(),
    );
    let Ok((upright, first_pix, first_lines_upright)) = first else {
        return fail(first.err().unwrap_or_default());
    };
    let mut best = upright;
    // Tesseract's own orientation detection (a fifth of a recognition) only when the reading
    // is poor or its lines run sideways: the guess was wrong, or there was none.
    if best.0.confidence < CHECK_ORIENTATION_BELOW || !first_lines_upright {
        if let Some((quarters, conf)) = engine.orientation(&first_pix, dpi) {
            if quarters != 0 && conf >= MIN_ORIENTATION_CONFIDENCE {
                if let Some(again_pix) = first_pix.rotated_quarters(quarters) {
                    let again = read_straightened(
                        engine,
                        again_pix,
                        None,
                        dpi,
                        ((turned + quarters) % 4) as u16 * 90,
                        job,
                        pdf_base.as_deref(),
                    );
                    if let Ok((r, _, _)) = again {
                        // A sideways page Tesseract read turned is put upright when the upright
                        // reading is as good: the page image and PDF then read upright too.
                        let as_good =
                            !first_lines_upright && r.0.confidence + 5.0 >= best.0.confidence;
                        if r.0.confidence > best.0.confidence || as_good {
                            best = r;
                        }
                    }
                }
            }
        }
    }
    let (mut page, pdf) = best;
    page.warning = warning;
    (page, pdf)
}

/// A page read: its OCR and searchable PDF, the image it was read from, and whether its
/// lines read upright.
type Reading = ((PageOcr, Option<Vec<u8>>), Pix, bool);

/// Deskews and recognises `pix` (already turned by `rotation`; `binary` its 1-bit copy when
/// one was made); returns the page and the image it was read from.
fn read_straightened(
    engine: &mut Engine,
    pix: Pix,
    binary: Option<Pix>,
    dpi: u32,
    rotation: u16,
    job: &Job,
    pdf_base: Option<&std::path::Path>,
) -> Result<Reading, String> {
    let straight = binary
        .or_else(|| pix.binary())
        .and_then(|b| pix.deskewed(&b));
    let (pix, skew) = match straight {
        Some((straight, angle)) => (straight, angle),
        None => (pix, 0.0),
    };
    if let Some(dir) = std::env::var_os("SPORTELLO_OCR_DUMP") {
        // For looking at what Tesseract was given: `SPORTELLO_OCR_DUMP=DIR sportello ocr F`.
        if let Some(png) = pix.to_png() {
            let name = format!("page-{}-{rotation}.png", job.page);
            let _ = std::fs::write(std::path::Path::new(&dir).join(name), png);
        }
    }
    let r = engine
        .recognise(&pix, dpi, job.timeout_secs, pdf_base)
        .map_err(|e| e.to_string())?;
    // Most lines read as upright: else the page came sideways and Tesseract read its lines
    // turned (well enough, but the page image and the searchable PDF would stay sideways).
    let turned = r.lines.iter().filter(|l| l.orientation != 0).count();
    let upright = turned * 2 <= r.lines.len();
    let page = PageOcr {
        page: job.page,
        text: page_text(&r.lines, &r.text),
        confidence: r.confidence,
        rotation,
        skew,
        error: None,
        warning: None,
    };
    Ok(((page, r.pdf), pix, upright))
}

/// Grey or 1-bit, white paper, square pixels, at most [`MAX_OCR_DPI`] ([`MAX_GREY_OCR_DPI`]
/// for grey); returns the dpi.
fn normalise(pix: Pix) -> Option<(Pix, u32)> {
    // A bilevel page that is mostly black came with its colours the wrong way round.
    let mut pix = if pix.black_share().is_some_and(|s| s > 0.6) {
        pix.inverted()?
    } else {
        pix
    };
    let (mut rx, mut ry) = pix.resolution();
    if rx == 0 || ry == 0 {
        (rx, ry) = guess_resolution(pix.width(), pix.height());
        pix.set_resolution(rx, ry);
    }
    // Fax "normal" resolution is 204×98: each line stands for two; stretch it back. Fine
    // resolution (204×196) is left alone: resampling 1-bit glyphs by 4% costs more accuracy
    // than the slight aspect error; the vertical resolution is used, so the searchable PDF
    // keeps the page's height.
    let dpi = if ry * 5 < rx * 4 {
        pix = pix.scaled(1.0, rx as f32 / ry as f32)?;
        rx
    } else if rx * 5 < ry * 4 {
        pix = pix.scaled(ry as f32 / rx as f32, 1.0)?;
        ry
    } else {
        ry
    };
    if pix.depth() > 1 && dpi > MAX_GREY_OCR_DPI {
        let f = MAX_GREY_OCR_DPI as f32 / dpi as f32;
        pix = pix.scaled(f, f)?;
        return Some((pix, MAX_GREY_OCR_DPI));
    }
    if dpi > MAX_OCR_DPI {
        let f = 300.0 / dpi as f32;
        pix = pix.scaled(f, f)?;
        return Some((pix, 300));
    }
    pix.set_resolution(dpi, dpi);
    Some((pix, dpi))
}

/// An image that does not say its resolution: a fax by its 1728-pel lines, else a 300 dpi scan.
fn guess_resolution(width: u32, height: u32) -> (u32, u32) {
    if (1700..=1760).contains(&width) {
        // A fine-resolution A4 fax has about 2200 lines, a normal one about 1100.
        (204, if height < 1600 { 98 } else { 196 })
    } else {
        (300, 300)
    }
}

/// Lines read with less confidence than this are marks, not words (signature scribbles,
/// stamp frames, specks); they are left out of the page's text (not out of the PDF layer).
const MIN_LINE_CONFIDENCE: f32 = 40.0;

/// A line that is a mark, not words: read with little confidence, or a handful of short
/// fragments read with not much more (what a signature or a stamp's frame reads as: "I Mr",
/// "Vy WA ne"; a line of real words read that badly is lost anyway).
fn is_mark(line: &engine::Line) -> bool {
    if line.confidence < MIN_LINE_CONFIDENCE {
        return true;
    }
    let words: Vec<&str> = line.text.split_whitespace().collect();
    let letters: usize = words.iter().map(|w| w.chars().count()).sum();
    line.confidence < SHORT_MARK_CONFIDENCE && letters <= words.len() * 3
}

/// Below this confidence, a line of fragments of three characters or fewer is a mark.
const SHORT_MARK_CONFIDENCE: f32 = 50.0;

/// The page's text from its recognised lines: marks dropped, blocks in reading order,
/// paragraphs separated by a blank line.
fn page_text(lines: &[engine::Line], tesseract_text: &str) -> String {
    let kept: Vec<&engine::Line> = lines
        .iter()
        .filter(|l| !l.text.trim().is_empty() && !is_mark(l))
        .collect();
    if kept.is_empty() {
        return if lines.is_empty() {
            tesseract_text.replace('\u{c}', "").trim_end().to_string()
        } else {
            String::new()
        };
    }
    // Blocks as Tesseract found them, each with the rows it spans.
    let mut blocks: Vec<(i32, i32, Vec<&engine::Line>)> = Vec::new();
    for line in kept {
        match blocks.last_mut() {
            Some((top, bottom, ls)) if ls[0].block == line.block => {
                *top = (*top).min(line.bbox.1);
                *bottom = (*bottom).max(line.bbox.3);
                ls.push(line);
            }
            _ => blocks.push((line.bbox.1, line.bbox.3, vec![line])),
        }
    }
    // A letter's blocks are stacked (sender, addressee on the right, date, body): read them
    // top to bottom. Blocks side by side (columns) keep Tesseract's column order.
    let side_by_side = blocks.iter().enumerate().any(|(i, a)| {
        blocks[i + 1..].iter().any(|b| {
            let overlap = a.1.min(b.1) - a.0.max(b.0);
            overlap > (a.1 - a.0).min(b.1 - b.0) / 2
        })
    });
    if !side_by_side {
        blocks.sort_by_key(|b| b.0);
    }
    let mut out = String::new();
    for (_, _, ls) in &blocks {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        for (i, line) in ls.iter().enumerate() {
            if i > 0 {
                out.push_str(if line.para_start { "\n\n" } else { "\n" });
            }
            out.push_str(&fix_salutation(line.text.trim_end()));
        }
    }
    out
}

/// Tesseract reads the "Al" that opens an Italian address line ("Al Comune…", "Al Sindaco")
/// as "AI" in sans-serif fonts, where l and I are one stroke.
fn fix_salutation(line: &str) -> std::borrow::Cow<'_, str> {
    match line.strip_prefix("AI ") {
        Some(rest) if rest.chars().next().is_some_and(char::is_uppercase) => {
            format!("Al {rest}").into()
        }
        _ => line.into(),
    }
}

/// OCRs pages `wanted` (1-based) of a document. Pages go to the process-wide pool; the call
/// blocks until all are done. A page that fails is reported in its `error`, the rest go on.
pub fn ocr_document(
    bytes: &Arc<Vec<u8>>,
    file_type: FileType,
    wanted: &[u32],
    opts: &OcrOptions,
) -> Result<DocumentOcr, String> {
    let planned = pages::plan(bytes, file_type, wanted)?;
    let pdf_dir = if opts.searchable_pdf {
        Some(Arc::new(
            tempfile::Builder::new()
                .prefix("sportello-ocr-")
                .tempdir()
                .map_err(|e| format!("cannot make a scratch folder: {e}"))?,
        ))
    } else {
        None
    };
    let pool = pool(&opts.languages, opts.workers);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut results: Vec<Option<(PageOcr, Option<Vec<u8>>)>> = vec![None; planned.len()];
    let mut queued = 0;
    // A one-page document goes to the first worker when it is free, else to whichever is.
    let first_free = planned.len() == 1
        && planned[0].1.is_ok()
        && pool
            .first_load
            .compare_exchange(
                0,
                1,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            )
            .is_ok();
    let queue = if first_free { &pool.first } else { &pool.jobs };
    for (index, (page, image)) in planned.into_iter().enumerate() {
        match image {
            Ok(image) => {
                let job = Job {
                    index,
                    page,
                    image,
                    timeout_secs: opts.page_timeout_secs,
                    pdf_dir: pdf_dir.clone(),
                    reply: tx.clone(),
                };
                if queue.send(job).is_ok() {
                    queued += 1;
                } else {
                    results[index] =
                        Some((failed_page(page, "the OCR workers stopped".into()), None));
                }
            }
            Err(e) => results[index] = Some((failed_page(page, e), None)),
        }
    }
    drop(tx);
    for _ in 0..queued {
        match rx.recv() {
            Ok((index, page, pdf)) => {
                crate::worker::progress("ocr");
                results[index] = Some((page, pdf))
            }
            Err(_) => break,
        }
    }
    let mut out = DocumentOcr::default();
    let mut page_pdfs = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (page, pdf) = r.unwrap_or_else(|| {
            (
                failed_page(
                    wanted.get(i).copied().unwrap_or(0),
                    "the OCR worker stopped".into(),
                ),
                None,
            )
        });
        if let Some(pdf) = pdf {
            page_pdfs.push((page.page, pdf));
        }
        out.pages.push(page);
    }
    if opts.searchable_pdf && !page_pdfs.is_empty() {
        let original = (file_type == FileType::Pdf).then_some(bytes.as_slice());
        match pdfjoin::join(&page_pdfs, original) {
            Ok(pdf) => out.pdf = Some(pdf),
            Err(e) => out.pdf_error = Some(e),
        }
    }
    Ok(out)
}

/// Character error rate of `hypothesis` against `truth`, whitespace runs counted as one space
/// (the measure the OCR acceptance uses).
pub fn character_error_rate(truth: &str, hypothesis: &str) -> f64 {
    let norm = |s: &str| -> Vec<char> {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .collect()
    };
    let (a, b) = (norm(truth), norm(hypothesis));
    if a.is_empty() {
        return if b.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j + 1] + 1)
                .min(cur[j] + 1)
                .min(prev[j] + usize::from(ca != cb));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cer_counts_edits_per_truth_character() {
        assert_eq!(character_error_rate("abc", "abc"), 0.0);
        assert!((character_error_rate("abcd", "abxd") - 0.25).abs() < 1e-9);
        assert_eq!(character_error_rate("a  b\n\nc", "a b c"), 0.0);
        assert_eq!(character_error_rate("", "x"), 1.0);
    }

    fn line(block: usize, para_start: bool, text: &str, confidence: f32, top: i32) -> engine::Line {
        engine::Line {
            block,
            para_start,
            text: text.into(),
            confidence,
            bbox: (0, top, 100, top + 10),
            orientation: 0,
        }
    }

    #[test]
    fn stacked_blocks_read_top_to_bottom_and_marks_are_dropped() {
        let lines = [
            line(0, true, "Oggetto: allaccio gas", 90.0, 200),
            line(1, true, "Mario Rossi", 92.0, 10),
            line(1, false, "AI Comune dell'Aquila", 88.0, 25),
            line(2, true, "MAMA NA", 20.0, 400),
        ];
        assert_eq!(
            page_text(&lines, ""),
            "Mario Rossi\nAl Comune dell'Aquila\n\nOggetto: allaccio gas"
        );
    }

    #[test]
    fn signature_scribbles_are_marks_and_short_words_read_well_are_not() {
        assert!(is_mark(&line(0, true, "I Mr", 44.3, 0)));
        assert!(is_mark(&line(0, true, "Vy WA ne", 44.5, 0)));
        assert!(is_mark(&line(0, true, "Giulianova, 22/07/2009", 35.0, 0)));
        assert!(!is_mark(&line(0, true, "In fede", 52.3, 0)));
        assert!(!is_mark(&line(0, true, "n. 9 del", 90.0, 0)));
        assert!(!is_mark(&line(0, true, "Oggetto: allaccio", 45.0, 0)));
    }

    #[test]
    fn columns_keep_tesseract_order() {
        let lines = [
            line(0, true, "left column", 90.0, 10),
            line(0, false, "left again", 90.0, 200),
            line(1, true, "right column", 90.0, 12),
        ];
        assert_eq!(
            page_text(&lines, ""),
            "left column\nleft again\n\nright column"
        );
    }

    #[test]
    fn missing_resolution_is_guessed_from_fax_line_width() {
        assert_eq!(guess_resolution(1728, 1100), (204, 98));
        assert_eq!(guess_resolution(1728, 2200), (204, 196));
        assert_eq!(guess_resolution(2480, 3508), (300, 300));
    }
}
