//! Text out of what citizens send: born-digital PDFs page by page, plain text in any common
//! encoding, and the page count of images (whose text OCR fills in).
//!
//! The type is sniffed from the bytes, never trusted from the name. Extraction of one document
//! runs on its own thread with a time limit, so a hostile or broken file costs a flag on its
//! ticket, never the run: a panic or a hang in a parser ends as an error string.

pub mod audio;
mod image;
pub(crate) mod pdf;
pub(crate) mod pdfcheck;
#[doc(hidden)]
pub mod pdftext;
mod poppler;

use crate::config::ExtractStageConfig;
use crate::model::PageText;
use std::sync::Arc;
use std::time::Duration;

pub use image::{tiff_descriptions, tiff_page_count};

/// What the bytes are, from their first bytes (and, for text, their content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileType {
    Pdf,
    Tiff,
    Jpeg,
    Png,
    Email,
    Text,
    /// A WAV recording (voicemail).
    Audio,
    Unknown,
}

impl FileType {
    pub fn mime(self) -> &'static str {
        match self {
            FileType::Pdf => "application/pdf",
            FileType::Tiff => "image/tiff",
            FileType::Jpeg => "image/jpeg",
            FileType::Png => "image/png",
            FileType::Email => "message/rfc822",
            FileType::Text => "text/plain",
            FileType::Audio => "audio/wav",
            FileType::Unknown => "application/octet-stream",
        }
    }

    pub fn is_image(self) -> bool {
        matches!(self, FileType::Tiff | FileType::Jpeg | FileType::Png)
    }
}

/// Sniffs the type of `bytes`; `name` only breaks ties between text-like types.
pub fn sniff(bytes: &[u8], name: &str) -> FileType {
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return FileType::Pdf;
    }
    if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        return FileType::Tiff;
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return FileType::Jpeg;
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return FileType::Png;
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WAVE" {
        return FileType::Audio;
    }
    let lower = name.to_ascii_lowercase();
    if looks_like_email(bytes) || (lower.ends_with(".eml") && !bytes.is_empty()) {
        return FileType::Email;
    }
    if looks_like_text(bytes) {
        return FileType::Text;
    }
    FileType::Unknown
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn looks_like_email(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    let Ok(text) =
        std::str::from_utf8(head).or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]))
    else {
        return false;
    };
    // The header block: `Name: value` lines (with folded continuations) before a blank line.
    let mut header_lines = 0;
    let mut known = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return false;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            // mbox "From " separator line is fine as a first line.
            if header_lines == 0 && line.starts_with("From ") {
                continue;
            }
            return false;
        }
        header_lines += 1;
        let lname = name.to_ascii_lowercase();
        if [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "received",
            "return-path",
            "mime-version",
            "content-type",
        ]
        .contains(&lname.as_str())
        {
            known += 1;
        }
    }
    header_lines >= 2 && known >= 2
}

fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    let controls = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    controls * 100 <= sample.len()
}

/// Decodes text bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else windows-1252
/// (a superset of ISO-8859-1 for printable text, what Italian offices' old PCs write).
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

/// A document's text from its pages: non-empty pages, separated by a form-feed line.
pub fn join_pages(pages: &[PageText]) -> String {
    let parts: Vec<&str> = pages
        .iter()
        .map(|p| p.text.trim_end())
        .filter(|t| !t.is_empty())
        .collect();
    parts.join("\n\u{c}\n")
}

/// The result of extracting one document.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub mime: String,
    pub pages: Option<u32>,
    pub page_texts: Vec<PageText>,
    /// Why extraction failed or is incomplete; the original is kept either way.
    pub error: Option<String>,
}

impl Extracted {
    pub fn text(&self) -> String {
        join_pages(&self.page_texts)
    }

    pub fn pages_needing_ocr(&self) -> Vec<u32> {
        self.page_texts
            .iter()
            .filter(|p| p.needs_ocr)
            .map(|p| p.page)
            .collect()
    }

    fn failed(file_type: FileType, error: String) -> Extracted {
        Extracted {
            mime: file_type.mime().to_string(),
            pages: None,
            page_texts: Vec::new(),
            error: Some(error),
        }
    }
}

/// Extracts text from one document of type `file_type` under the configured limits.
pub fn extract(bytes: Arc<Vec<u8>>, file_type: FileType, cfg: &ExtractStageConfig) -> Extracted {
    let max_pages = cfg.max_pages;
    let timeout = Duration::from_secs_f64(cfg.timeout_secs);
    let reader = crate::worker::reader_name(file_type);
    crate::parse::untrusted(reader, timeout, move || {
        extract_now(&bytes, file_type, max_pages)
    })
    .unwrap_or_else(|e| Extracted::failed(file_type, e.to_string()))
}

/// Extraction on the calling thread, without a time limit.
pub fn extract_now(bytes: &[u8], file_type: FileType, max_pages: u32) -> Extracted {
    let mime = file_type.mime().to_string();
    if bytes.is_empty() {
        return Extracted::failed(file_type, "empty file (0 bytes)".into());
    }
    match file_type {
        FileType::Pdf => pdf::extract(bytes, max_pages),
        FileType::Text => {
            let text = decode_text(bytes);
            let page = PageText {
                page: 1,
                text,
                ..PageText::default()
            };
            Extracted {
                mime,
                pages: Some(1),
                page_texts: vec![page],
                error: None,
            }
        }
        FileType::Tiff | FileType::Jpeg | FileType::Png => {
            let (pages, warning) = match file_type {
                FileType::Tiff => match image::tiff_pages_and_warning(bytes) {
                    Ok((n, warning)) => (Ok(n), warning),
                    Err(e) => (Err(e), None),
                },
                FileType::Jpeg => (Ok(1), image::jpeg_warning(bytes)),
                _ => (Ok(1), image::png_warning(bytes)),
            };
            match pages {
                Ok(n) if n > max_pages => Extracted::failed(
                    file_type,
                    format!("{n} pages, more than the limit of {max_pages}"),
                ),
                Ok(n) => Extracted {
                    mime,
                    pages: Some(n),
                    page_texts: (1..=n)
                        .map(|page| PageText {
                            page,
                            needs_ocr: true,
                            ..PageText::default()
                        })
                        .collect(),
                    error: warning,
                },
                Err(e) => Extracted::failed(file_type, e),
            }
        }
        FileType::Email => Extracted::failed(
            file_type,
            "email messages are unpacked, not extracted".into(),
        ),
        // A recording has no text to extract; its header must hold, so that it can play.
        FileType::Audio => match audio::wav_info(bytes) {
            Ok(_) => Extracted {
                mime,
                pages: None,
                page_texts: Vec::new(),
                error: None,
            },
            Err(e) => Extracted::failed(file_type, e),
        },
        FileType::Unknown => Extracted::failed(
            file_type,
            "unsupported file type (not PDF, TIFF, JPEG, PNG, WAV, email or text)".into(),
        ),
    }
}

/// A fax number found in a document's metadata (TIFF description tags, PDF Info), as fax
/// servers record the transmitting station there.
pub fn fax_number_in_metadata(bytes: &[u8], file_type: FileType) -> Option<String> {
    let candidates: Vec<String> = match file_type {
        FileType::Tiff => tiff_descriptions(bytes),
        FileType::Pdf => pdf::info_strings(bytes),
        _ => Vec::new(),
    };
    candidates.iter().find_map(|c| phone_number_in(c))
}

/// The first thing in `text` that looks like a phone or fax number (6 to 15 digits).
pub fn phone_number_in(text: &str) -> Option<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"\+?\d[\d .\-/]{4,18}\d").expect("valid regex"));
    re.find_iter(text).map(|m| m.as_str()).find_map(|m| {
        let digits = m.chars().filter(char::is_ascii_digit).count();
        (6..=15).contains(&digits).then(|| {
            let plus = if m.starts_with('+') { "+" } else { "" };
            format!(
                "{plus}{}",
                m.chars().filter(char::is_ascii_digit).collect::<String>()
            )
        })
    })
}

/// True when a text layer carries no usable text: empty, or mostly symbols a font without a
/// Unicode map turns into (private-use code points, replacement characters, control bytes).
pub fn is_unusable_text(text: &str) -> bool {
    let mut alnum = 0usize;
    let mut bad = 0usize;
    let mut visible = 0usize;
    for c in text.chars() {
        if c.is_whitespace() {
            continue;
        }
        visible += 1;
        if c.is_alphanumeric() {
            alnum += 1;
        }
        if c == '\u{FFFD}' || c.is_control() || ('\u{E000}'..='\u{F8FF}').contains(&c) {
            bad += 1;
        }
    }
    alnum < 3 || bad * 4 > visible || alnum * 2 < visible
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document whose extraction outlasts `timeout_secs` is given up and flagged, and the
    /// caller does not wait for it; with the usual limit the same document reads fine.
    #[test]
    fn an_extraction_that_takes_too_long_is_given_up_not_waited_for() {
        let line = "Richiesta di contributo per autonoma sistemazione, pratica B/2010/0977";
        let pages: Vec<Vec<String>> = (0..400).map(|_| vec![line.to_string(); 40]).collect();
        let bytes = Arc::new(crate::testdata::pdf(&pages));
        let cfg = ExtractStageConfig {
            max_pages: 1000,
            ..ExtractStageConfig::default()
        };
        let started = std::time::Instant::now();
        let normal = extract(bytes.clone(), FileType::Pdf, &cfg);
        let normal_took = started.elapsed();
        assert_eq!(normal.error, None);
        assert_eq!(normal.pages, Some(400));
        assert!(normal.text().contains("autonoma sistemazione"));

        let hurried = ExtractStageConfig {
            timeout_secs: 1e-6,
            ..cfg
        };
        let started = std::time::Instant::now();
        let given_up = extract(bytes, FileType::Pdf, &hurried);
        let took = started.elapsed();
        let error = given_up.error.unwrap_or_default();
        assert!(error.contains("gave up"), "{error:?}");
        assert_eq!(given_up.mime, "application/pdf");
        assert!(given_up.page_texts.is_empty());
        assert!(
            took < normal_took,
            "waited {took:?}, a whole extraction took {normal_took:?}"
        );
    }

    #[test]
    fn sniffs_by_content_not_name() {
        assert_eq!(sniff(b"%PDF-1.4\n...", "x.txt"), FileType::Pdf);
        assert_eq!(sniff(b"II*\0\x08\0\0\0", "fax.pdf"), FileType::Tiff);
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0], "a"), FileType::Jpeg);
        assert_eq!(
            sniff(b"From: a@b.it\r\nSubject: x\r\n\r\nbody", "msg"),
            FileType::Email
        );
        assert_eq!(
            sniff(b"Gentile ufficio,\nchiedo...", "lettera"),
            FileType::Text
        );
        assert_eq!(
            sniff(&[0u8, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 9], "x.pdf"),
            FileType::Unknown
        );
    }

    #[test]
    fn decodes_legacy_encodings() {
        assert_eq!(decode_text(b"citt\xe0 \x80"), "città €");
        assert_eq!(decode_text("città".as_bytes()), "città");
        assert_eq!(decode_text(b"\xEF\xBB\xBFok"), "ok");
        assert_eq!(decode_text(b"\xFF\xFEo\0k\0"), "ok");
    }

    #[test]
    fn finds_fax_numbers() {
        assert_eq!(
            phone_number_in("TSI: +39 0862 505245").as_deref(),
            Some("+390862505245")
        );
        assert_eq!(
            phone_number_in("fax 0862-41.23.45 ore 12").as_deref(),
            Some("0862412345")
        );
        assert_eq!(phone_number_in("pagina 1 di 2"), None);
        let tiff = crate::testdata::fax_tiff_with_description(64, 20, "+39 0862 505245");
        assert_eq!(
            fax_number_in_metadata(&tiff, FileType::Tiff).as_deref(),
            Some("+390862505245")
        );
    }

    #[test]
    fn garbage_text_layers_need_ocr() {
        assert!(is_unusable_text("   \n "));
        assert!(is_unusable_text("\u{E001}\u{E002}\u{E003}\u{E004} ab"));
        assert!(!is_unusable_text("Richiesta di allaccio del gas"));
        assert!(is_unusable_text("!!! ### ... ,,, ;;; a"));
    }
}
