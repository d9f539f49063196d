//! Entry points for the fuzzer (`fuzz/`, `make fuzz`): each reads outside bytes the way intake,
//! the web app or an admin's edit does. Not an API; they return nothing and must never panic
//! or hang, whatever the bytes.

use crate::extract::FileType;
use std::path::Path;
use std::sync::Arc;

/// A message as the email reader unpacks it.
pub fn email(data: &[u8]) {
    let _ = crate::email::unpack(data);
}

/// A `.p7m` signed container.
pub fn p7m(data: &[u8]) {
    let _ = crate::signed::unwrap(data);
}

/// A PDF through the text reader (structure check, lopdf, our reader, pdf-extract).
pub fn pdf_text(data: &[u8]) {
    let _ = crate::extract::extract_now(data, FileType::Pdf, 20);
}

/// A page's content stream through our lexer.
pub fn content_stream(data: &[u8]) {
    let _ = crate::extract::pdftext::count_operations(data);
}

/// Page images for OCR: planned from a PDF or an image, and (images) decoded by leptonica.
pub fn page_images(data: &[u8]) {
    let file_type = crate::extract::sniff(data, "");
    if !matches!(
        file_type,
        FileType::Pdf | FileType::Tiff | FileType::Jpeg | FileType::Png
    ) {
        return;
    }
    let _ = crate::extract::extract_now(data, file_type, 4);
    let Ok(planned) = crate::ocr::pages::plan(&Arc::new(data.to_vec()), file_type, &[1, 2]) else {
        return;
    };
    for (_, image) in planned.into_iter().take(1) {
        if let Ok(image) = image {
            if file_type != FileType::Pdf {
                let _ = crate::ocr::pages::decode(&image);
            }
        }
    }
}

/// A pipeline file as an admin writes it.
pub fn pipeline_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Pipeline::parse(Path::new("/nonexistent/pipeline.toml"), text);
    }
}

/// A rules file as an admin writes it.
pub fn rules_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::classify::rules::Rules::parse(Path::new("/nonexistent/rules.toml"), text);
    }
}

/// A search as a clerk types it.
pub fn search_query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = crate::search::SearchQuery::parse(text) {
            let _ = q.snippet("Richiesta di allaccio del gas per la casa di via Roma", 80);
        }
    }
}

/// A form or query string sent to the web app.
pub fn web_forms(data: &[u8]) {
    crate::web::parse_forms(data);
}
