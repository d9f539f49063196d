//! Born-digital PDFs: the text layer of each page, through our fast reader for simple pages
//! (`pdftext`) or else `pdf-extract`, both over `lopdf`.

use super::{is_unusable_text, Extracted};
use crate::model::PageText;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub fn extract(bytes: &[u8], max_pages: u32) -> Extracted {
    let mime = "application/pdf".to_string();
    let mut damaged = false;
    let mut problem = None;
    // Unless lopdf read the file, poppler is asked only about pages that may hold text: an
    // image-only page (every scan, every fax) would cost a process for nothing.
    let mut ask_poppler = true;
    let mut result = match extract_with_lopdf(bytes, max_pages) {
        Ok(LopdfPages {
            pages,
            damaged: was_damaged,
            unread_text,
            problem: found,
        }) => {
            damaged = was_damaged;
            problem = found;
            ask_poppler = unread_text || was_damaged;
            Extracted {
                mime: mime.clone(),
                pages: Some(pages.len() as u32),
                page_texts: pages,
                error: None,
            }
        }
        // Not handed to poppler either: it would inflate the bomb too.
        Err(LopdfFailure::Refused(reason)) => {
            return Extracted {
                mime,
                pages: None,
                page_texts: Vec::new(),
                error: Some(reason),
            }
        }
        Err(LopdfFailure::TooManyPages(n)) => {
            return Extracted {
                mime,
                pages: Some(n),
                page_texts: Vec::new(),
                error: Some(format!("{n} pages, more than the limit of {max_pages}")),
            }
        }
        Err(failure) => {
            // Poppler may still read it, but the clerk must know what was wrong.
            if let LopdfFailure::Looping(reason) = &failure {
                problem = Some(reason.clone());
            }
            Extracted {
                mime: mime.clone(),
                pages: None,
                page_texts: Vec::new(),
                error: Some(failure.to_string()),
            }
        }
    };
    // Pages our parser could not read (odd fonts, damaged streams, broken tables, encryption
    // it does not know) get a second reading by poppler, when installed, before they are
    // declared image-only.
    if ask_poppler
        && (result.page_texts.is_empty() || result.page_texts.iter().any(|p| p.needs_ocr))
    {
        if let Some(poppler_pages) = super::poppler::pdftotext_pages(bytes) {
            merge_fallback(&mut result, poppler_pages, max_pages);
        }
    }
    // A file made to break readers is flagged whatever text was recovered.
    if problem.is_some() {
        result.error = problem;
    }
    // A damaged file is flagged even when a tolerant reader recovered some text.
    if damaged && result.error.is_none() {
        result.error = Some(if result.page_texts.iter().any(|p| p.needs_ocr) {
            "damaged PDF (truncated or broken structure): some pages cannot be read".into()
        } else {
            "damaged PDF (broken structure or corrupt streams): text recovered, check it against the original".into()
        });
    }
    result
}

#[derive(Debug, thiserror::Error)]
enum LopdfFailure {
    #[error("not a readable PDF (damaged or truncated): {0}")]
    Unreadable(String),
    #[error("encrypted PDF: a password is needed to read it")]
    Encrypted,
    #[error("PDF has no pages")]
    NoPages,
    #[error("too many pages")]
    TooManyPages(u32),
    /// The page tree loops, and lopdf found no page in it.
    #[error("{0}")]
    Looping(String),
    /// Made to break readers (see `pdfcheck`): not parsed at all.
    #[error("{0}")]
    Refused(String),
}

struct LopdfPages {
    pages: Vec<PageText>,
    /// The file had to be repaired, or has corrupt streams.
    damaged: bool,
    /// Some page left without text has fonts, so a text layer we failed to read.
    unread_text: bool,
    /// A structure made to break readers (loops), told to the clerk.
    problem: Option<String>,
}

fn extract_with_lopdf(bytes: &[u8], max_pages: u32) -> Result<LopdfPages, LopdfFailure> {
    super::pdfcheck::check(bytes).map_err(LopdfFailure::Refused)?;
    let mut repaired = false;
    let mut doc = match parse(bytes) {
        Ok(doc) => doc,
        Err(first) => match repair_xref(bytes).map(|fixed| parse(&fixed)) {
            Some(Ok(doc)) => {
                repaired = true;
                doc
            }
            _ => return Err(LopdfFailure::Unreadable(first)),
        },
    };
    // lopdf opens documents whose user password is empty by itself (many "protected" PDFs);
    // an encrypted document it could not open needs the password.
    if doc.is_encrypted() && doc.encryption_state.is_none() {
        return Err(LopdfFailure::Encrypted);
    }
    doc.trailer.remove(b"Encrypt");
    let mut problem = page_tree_loops(&doc).then(|| {
        "the PDF's page tree loops back on itself (damaged or made to break readers); check the pages read against the original".to_string()
    });
    let pages = doc.get_pages();
    let page_count = pages.len() as u32;
    if let (0, Some(reason)) = (page_count, &problem) {
        return Err(LopdfFailure::Looping(reason.clone()));
    }
    if page_count == 0 {
        // An encryption lopdf does not support leaves the page tree unreadable.
        let encrypted = doc.trailer.has(b"Encrypt") || bytes.windows(8).any(|w| w == b"/Encrypt");
        return Err(if encrypted {
            LopdfFailure::Encrypted
        } else {
            LopdfFailure::NoPages
        });
    }
    if page_count > max_pages {
        return Err(LopdfFailure::TooManyPages(page_count));
    }
    let mut page_texts = Vec::with_capacity(pages.len());
    let mut unread_text = false;
    for (&number, &page_id) in &pages {
        // A compressed content stream that decodes to nothing is corrupt, whatever text a
        // tolerant reader still recovers from the rest.
        let corrupt = doc.get_page_contents(page_id).iter().any(|&id| {
            doc.get_object(id)
                .and_then(|o| o.as_stream())
                .is_ok_and(|s| {
                    s.content.len() > 16
                        && s.decompressed_content().map_or(true, |c| c.is_empty())
                        && s.dict.has(b"Filter")
                })
        });
        if corrupt {
            repaired = true;
        }
        let (text, ok) = match super::pdftext::page_text(&doc, page_id) {
            Some(text) => (text, true),
            // pdf-extract follows form XObjects without remembering where it has been: forms
            // that draw each other would recurse until the stack overflows. Poppler reads
            // such a page (it limits the depth).
            None if !forms_nest_safely(&doc, page_id) || !content_nests_safely(&doc, page_id) => {
                unread_text = true;
                problem.get_or_insert_with(|| format!(
                    "page {number}: the PDF's drawing instructions loop or nest too deep (made to break readers); check the text read against the original"
                ));
                (String::new(), false)
            }
            None => {
                let mut text = String::new();
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut out = pdf_extract::PlainTextOutput::new(&mut text);
                    pdf_extract::output_doc_page(&doc, &mut out, number)
                }));
                (text, matches!(result, Ok(Ok(()))))
            }
        };
        let text = tidy(&text);
        let needs_ocr = !ok || is_unusable_text(&text);
        if needs_ocr && may_hold_text(&doc, page_id) {
            unread_text = true;
        }
        page_texts.push(PageText {
            page: number,
            text: if needs_ocr { String::new() } else { text },
            needs_ocr,
            ..PageText::default()
        });
    }
    Ok(LopdfPages {
        pages: page_texts,
        damaged: repaired,
        unread_text,
        problem,
    })
}

/// Whether the page's content nests its arrays and dictionaries no deeper than a document
/// does: lopdf's content parser, under pdf-extract, recurses once per level.
fn content_nests_safely(doc: &lopdf::Document, page_id: lopdf::ObjectId) -> bool {
    doc.get_page_content(page_id)
        .map_or(true, |content| super::pdfcheck::check(&content).is_ok())
}

/// Whether the page tree, walked from the catalog, reaches a node it already went through.
fn page_tree_loops(doc: &lopdf::Document) -> bool {
    let Ok(root) = doc
        .catalog()
        .and_then(|c| c.get(b"Pages"))
        .and_then(|p| p.as_reference())
    else {
        return false;
    };
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            return true;
        }
        if seen.len() > 1_000_000 {
            return true;
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue;
        };
        if let Ok(kids) = node.get(b"Kids").and_then(|k| k.as_array()) {
            stack.extend(kids.iter().filter_map(|k| k.as_reference().ok()));
        }
    }
    false
}

/// Form XObjects nested at most this deep are read by pdf-extract.
const MAX_FORM_DEPTH: usize = 12;

/// Whether the page's form XObjects, followed through their resources, never lead back to
/// one another and stay within [`MAX_FORM_DEPTH`] levels. Iterative: the walk itself cannot
/// overflow the stack, whatever the file.
fn forms_nest_safely(doc: &lopdf::Document, page_id: lopdf::ObjectId) -> bool {
    use lopdf::Object;
    fn forms_of(doc: &lopdf::Document, resources: &lopdf::Dictionary) -> Vec<lopdf::ObjectId> {
        let xobjects = match resources.get(b"XObject") {
            Ok(Object::Reference(id)) => doc.get_dictionary(*id).ok(),
            Ok(other) => other.as_dict().ok(),
            Err(_) => None,
        };
        xobjects
            .map(|d| {
                d.iter()
                    .filter_map(|(_, o)| o.as_reference().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn resources_of(doc: &lopdf::Document, id: lopdf::ObjectId) -> Option<&lopdf::Dictionary> {
        let stream = doc.get_object(id).ok()?.as_stream().ok()?;
        match stream.dict.get(b"Resources").ok()? {
            Object::Reference(r) => doc.get_dictionary(*r).ok(),
            other => other.as_dict().ok(),
        }
    }
    let Ok((own, inherited)) = doc.get_page_resources(page_id) else {
        return true;
    };
    let mut roots = Vec::new();
    for r in own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|&id| doc.get_dictionary(id).ok()),
    ) {
        roots.extend(forms_of(doc, r));
    }
    // Depth-first with an explicit stack: (form, children still to visit).
    let mut visited = 0usize;
    for root in roots {
        let mut path: Vec<(lopdf::ObjectId, Vec<lopdf::ObjectId>)> = Vec::new();
        let kids = resources_of(doc, root)
            .map(|r| forms_of(doc, r))
            .unwrap_or_default();
        path.push((root, kids));
        while let Some((_, kids)) = path.last_mut() {
            visited += 1;
            if visited > 10_000 {
                return false;
            }
            let Some(next) = kids.pop() else {
                path.pop();
                continue;
            };
            if path.iter().any(|(id, _)| *id == next) || path.len() >= MAX_FORM_DEPTH {
                return false;
            }
            let kids = resources_of(doc, next)
                .map(|r| forms_of(doc, r))
                .unwrap_or_default();
            path.push((next, kids));
        }
    }
    true
}

/// Whether a page can carry a text layer: it has fonts, directly or in a form XObject.
/// Scans and faxes are a page-sized image and nothing else.
fn may_hold_text(doc: &lopdf::Document, page_id: lopdf::ObjectId) -> bool {
    if doc
        .get_page_fonts(page_id)
        .map_or(true, |fonts| !fonts.is_empty())
    {
        return true;
    }
    let Ok((own, inherited)) = doc.get_page_resources(page_id) else {
        return true;
    };
    let dicts = own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|&id| doc.get_dictionary(id).ok()),
    );
    dicts
        .filter_map(|r| r.get(b"XObject").ok())
        .any(|xobjects| {
            let xobjects = match xobjects {
                lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok(),
                other => other.as_dict().ok(),
            };
            xobjects.is_some_and(|d| {
                d.iter().any(|(_, o)| {
                    let stream = o
                        .as_reference()
                        .ok()
                        .and_then(|id| doc.get_object(id).ok())
                        .and_then(|o| o.as_stream().ok());
                    stream.is_some_and(|s| {
                        s.dict
                            .get(b"Subtype")
                            .and_then(|t| t.as_name())
                            .is_ok_and(|n| n == b"Form")
                    })
                })
            })
        })
}

fn merge_fallback(result: &mut Extracted, poppler_pages: Vec<String>, max_pages: u32) {
    if result.page_texts.is_empty() {
        let n = poppler_pages.len() as u32;
        if n == 0 || n > max_pages {
            return;
        }
        result.page_texts = (1..=n)
            .map(|page| PageText {
                page,
                needs_ocr: true,
                ..PageText::default()
            })
            .collect();
        result.pages = Some(n);
        // Poppler could read what lopdf could not: the file is usable after all.
        result.error = None;
    }
    for page in result.page_texts.iter_mut().filter(|p| p.needs_ocr) {
        let Some(text) = poppler_pages.get(page.page as usize - 1) else {
            continue;
        };
        let text = tidy(text);
        if !is_unusable_text(&text) {
            page.text = text;
            page.needs_ocr = false;
        }
    }
}

/// Author, Creator, Title, Subject and Producer of the document's Info dictionary.
pub fn info_strings(bytes: &[u8]) -> Vec<String> {
    let Ok(doc) = load(bytes) else {
        return Vec::new();
    };
    let Ok(info) = doc
        .trailer
        .get(b"Info")
        .and_then(|o| o.as_reference())
        .and_then(|id| doc.get_dictionary(id))
    else {
        return Vec::new();
    };
    [
        &b"Author"[..],
        b"Creator",
        b"Title",
        b"Subject",
        b"Producer",
    ]
    .iter()
    .filter_map(|k| info.get(k).ok())
    .filter_map(|o| o.as_str().ok())
    .map(|raw| String::from_utf8_lossy(raw).into_owned())
    .collect()
}

/// Opens a PDF as `extract` does (the cross-reference table rebuilt when it is broken), for
/// OCR, which needs the page images. Encrypted documents lopdf cannot open are an error.
pub(crate) fn open(bytes: &[u8]) -> Result<lopdf::Document, String> {
    super::pdfcheck::check(bytes)?;
    let mut doc = parse(bytes).or_else(|first| {
        repair_xref(bytes)
            .map(|fixed| parse(&fixed))
            .unwrap_or(Err(first))
    })?;
    if doc.is_encrypted() && doc.encryption_state.is_none() {
        return Err("encrypted PDF: a password is needed".into());
    }
    doc.trailer.remove(b"Encrypt");
    Ok(doc)
}

/// Checks the bytes (see `pdfcheck`), then parses them.
fn load(bytes: &[u8]) -> Result<lopdf::Document, String> {
    super::pdfcheck::check(bytes)?;
    parse(bytes)
}

/// Parses bytes that passed `pdfcheck::check`.
fn parse(bytes: &[u8]) -> Result<lopdf::Document, String> {
    match catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(bytes))) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the parser crashed on it".into()),
    }
}

/// Rebuilds the cross-reference table of a PDF whose table is missing or wrong, from the
/// `N G obj` markers in the file (what viewers do when they "repair" a file). None when
/// nothing usable is there.
fn repair_xref(bytes: &[u8]) -> Option<Vec<u8>> {
    let object =
        regex::bytes::Regex::new(r"(?-u)(?:^|[\r\n\s])(\d{1,10})\s+(\d{1,5})\s+obj\b").ok()?;
    let catalog = regex::bytes::Regex::new(r"(?-u)/Type\s*/Catalog\b").ok()?;
    let mut offsets: std::collections::BTreeMap<u32, (usize, u16)> = Default::default();
    let mut starts: Vec<(usize, u32, u16)> = Vec::new();
    for caps in object.captures_iter(bytes) {
        let number: u32 = std::str::from_utf8(&caps[1]).ok()?.parse().ok()?;
        let generation: u16 = std::str::from_utf8(&caps[2]).ok()?.parse().ok()?;
        if number == 0 || number > 10_000_000 {
            continue;
        }
        let at = caps.get(1)?.start();
        offsets.insert(number, (at, generation));
        starts.push((at, number, generation));
    }
    let root_at = catalog.find_iter(bytes).last()?.start();
    let &(_, root, root_gen) = starts.iter().rev().find(|(at, _, _)| *at < root_at)?;
    let size = offsets.keys().last()? + 1;
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"\n");
    let xref_at = out.len();
    out.extend_from_slice(format!("xref\n0 {size}\n").as_bytes());
    for n in 0..size {
        let entry = match offsets.get(&n) {
            Some(&(at, generation)) => format!("{at:010} {generation:05} n\r\n"),
            None => "0000000000 65535 f\r\n".to_string(),
        };
        out.extend_from_slice(entry.as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {size} /Root {root} {root_gen} R >>\nstartxref\n{xref_at}\n%%EOF\n"
        )
        .as_bytes(),
    );
    Some(out)
}

/// Trims trailing spaces and runs of blank lines the layout heuristics leave behind.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}
