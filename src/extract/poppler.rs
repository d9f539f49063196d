//! A second reader for PDFs our own parser cannot read: poppler's `pdftotext`, run as a child
//! process with a time limit. Used only when installed, and only for documents that need it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TIME_LIMIT: Duration = Duration::from_secs(60);

fn available() -> bool {
    // Under the fuzzer a process per input would measure poppler's speed, not ours.
    if cfg!(fuzzing) {
        return false;
    }
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("pdftotext")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// The text of every page, or None when poppler is missing or cannot read the file either.
pub fn pdftotext_pages(bytes: &[u8]) -> Option<Vec<String>> {
    if !available() {
        return None;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix("sportello-")
        .suffix(".pdf")
        .tempfile()
        .ok()?;
    tmp.write_all(bytes).ok()?;
    tmp.flush().ok()?;
    let out_path = tmp.path().with_extension("txt");
    let mut child = Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8"])
        .arg(tmp.path())
        .arg(&out_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TIME_LIMIT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&out_path);
                return None;
            }
        }
    };
    let text = std::fs::read(&out_path);
    let _ = std::fs::remove_file(&out_path);
    if !status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&text.ok()?).into_owned();
    // pdftotext ends every page with a form feed.
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    Some(pages)
}
