//! `sportello ocr`: reads a scan or fax and prints each page's text, confidence and turn;
//! no ticket is filed.

use super::*;

pub fn exec(
    file: &Path,
    json: bool,
    languages: String,
    workers: usize,
    pdf: Option<&Path>,
    out: &mut Out,
) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_type = crate::extract::sniff(&bytes, &name);
    let bytes = Arc::new(bytes);
    let cfg = Pipeline::default().extract_config();
    let pages: Vec<u32> = crate::extract::extract(bytes.clone(), file_type, &cfg)
        .page_texts
        .iter()
        .map(|p| p.page)
        .collect();
    if pages.is_empty() {
        bail!(
            "{}: no pages to OCR in this {} file",
            file.display(),
            file_type.mime()
        );
    }
    let opts = crate::ocr::OcrOptions {
        languages,
        workers,
        searchable_pdf: pdf.is_some(),
        ..Default::default()
    };
    let result = crate::ocr::ocr_document(&bytes, file_type, &pages, &opts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some(path) = pdf {
        match &result.pdf {
            Some(b) => std::fs::write(path, b)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => eprintln!(
                "sportello: no searchable PDF: {}",
                result
                    .pdf_error
                    .as_deref()
                    .unwrap_or("no page was recognised")
            ),
        }
    }
    if json {
        out.json(&serde_json::json!({ "pages": result.pages }))?;
    } else {
        for p in &result.pages {
            out.line(&format!(
                "--- page {} (confidence {:.1}, rotated {}°, skew {:.2}°)\n{}",
                p.page, p.confidence, p.rotation, p.skew, p.text
            ))?;
            if let Some(e) = &p.error {
                eprintln!("sportello: {} page {}: {e}", file.display(), p.page);
            }
        }
    }
    Ok(if result.pages.iter().any(|p| p.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
