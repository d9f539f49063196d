//! `sportello extract`: the text extracted from a file, page by page (no ticket).

use super::*;

#[derive(Args, Debug)]
pub struct ExtractArgs {
    file: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: ExtractArgs, out: &mut Out) -> Result<ExitCode> {
    let ExtractArgs { file, json } = args;
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_type = crate::extract::sniff(&bytes, &name);
    let cfg = Pipeline::default().extract_config();
    let x = crate::extract::extract(Arc::new(bytes), file_type, &cfg);
    if json {
        out.json(&serde_json::json!({"mime": x.mime, "pages": x.page_texts, "error": x.error}))?;
    } else {
        for p in &x.page_texts {
            let note = if p.needs_ocr {
                "  (no text layer: OCR needed)"
            } else {
                ""
            };
            out.line(&format!("--- page {}{note}\n{}", p.page, p.text))?;
        }
        if let Some(e) = &x.error {
            eprintln!("sportello: {}: {e}", file.display());
        }
    }
    Ok(if x.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
