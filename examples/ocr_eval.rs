//! OCR quality against ground truth: character error rate per group, ours beside the
//! `tesseract` CLI run on the same files with the same languages.
//!
//!     cargo run --release --example ocr_eval [-- CORPUS_DIR]
//!
//! CORPUS_DIR defaults to ../shared/corpus. Reads `ocr-it/index.jsonl` (group from format,
//! rotation and skew) and the scans of MANIFEST.tsv that have a `.gt.txt`. CLI outputs are
//! cached under target/ocr-cli-cache (delete it to run the CLI again).

use sportello::extract::{self, FileType};
use sportello::ocr::{character_error_rate, ocr_document, OcrOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Case {
    group: String,
    file: PathBuf,
    truth: PathBuf,
}

fn main() {
    let corpus = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "../shared/corpus".into()),
    );
    let cases = cases(&corpus);
    if cases.is_empty() {
        eprintln!(
            "no OCR ground truth under {}; nothing to measure",
            corpus.display()
        );
        return;
    }
    let cache = PathBuf::from("target/ocr-cli-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    // SPORTELLO_OCR_LANGUAGES compares another language set (ours only; the CLI keeps its own).
    let mut opts = OcrOptions {
        searchable_pdf: false,
        ..Default::default()
    };
    if let Ok(l) = std::env::var("SPORTELLO_OCR_LANGUAGES") {
        opts.languages = l;
    }
    // (group) -> (sum of CER ours, sum CLI, count)
    let mut groups: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    println!("{:<44} {:<22} {:>7} {:>7}", "file", "group", "ours", "cli");
    for case in &cases {
        let truth = std::fs::read_to_string(&case.truth).unwrap_or_default();
        let bytes = Arc::new(std::fs::read(&case.file).expect("read"));
        let name = case.file.file_name().unwrap().to_string_lossy().to_string();
        let ft = extract::sniff(&bytes, &name);
        let pages: Vec<u32> = extract::extract(bytes.clone(), ft, &Default::default())
            .page_texts
            .iter()
            .map(|p| p.page)
            .collect();
        let ours = match ocr_document(&bytes, ft, &pages, &opts) {
            Ok(d) => d
                .pages
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => {
                eprintln!("{name}: {e}");
                String::new()
            }
        };
        let cli = cli_text(&case.file, ft, &cache);
        let (a, b) = (
            character_error_rate(&truth, &ours),
            character_error_rate(&truth, &cli),
        );
        println!("{:<44} {:<22} {:>7.4} {:>7.4}", name, case.group, a, b);
        let g = groups.entry(case.group.clone()).or_default();
        g.0 += a;
        g.1 += b;
        g.2 += 1;
    }
    println!("\nmean CER by group (lower is better)");
    println!("{:<22} {:>5} {:>7} {:>7}", "group", "files", "ours", "cli");
    let (mut ta, mut tb, mut tn) = (0.0, 0.0, 0);
    for (g, (a, b, n)) in &groups {
        println!(
            "{:<22} {:>5} {:>7.4} {:>7.4}",
            g,
            n,
            a / *n as f64,
            b / *n as f64
        );
        ta += a;
        tb += b;
        tn += n;
    }
    println!(
        "{:<22} {:>5} {:>7.4} {:>7.4}",
        "all",
        tn,
        ta / tn as f64,
        tb / tn as f64
    );
}

fn cases(corpus: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let dir = corpus.join("ocr-it");
    if let Ok(index) = std::fs::read_to_string(dir.join("index.jsonl")) {
        for line in index.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let kind = s("kind");
            let format = s("format");
            let rotation = v["rotation"].as_i64().unwrap_or(0);
            let skew = v["skew_deg"].as_f64().unwrap_or(0.0).abs();
            let group = if kind == "fax" {
                match format.as_str() {
                    "tiff-g3" => "fax G3",
                    "tiff-g4" => "fax G4",
                    _ => "fax PDF",
                }
            } else if rotation != 0 {
                "letter rotated"
            } else if skew >= 1.0 {
                "letter skewed"
            } else {
                "letter upright"
            };
            out.push(Case {
                group: group.into(),
                file: dir.join(s("file")),
                truth: dir.join(s("gt")),
            });
        }
    }
    if let Ok(manifest) = std::fs::read_to_string(corpus.join("MANIFEST.tsv")) {
        for line in manifest.lines() {
            let name = line.split('\t').next().unwrap_or_default();
            let is_scan = ["pdf-scan", "pdf-fax", "img-scan", "img-fax"]
                .iter()
                .any(|p| name.starts_with(p));
            let gt = corpus
                .join(name.rsplit_once('.').map_or(name, |(s, _)| s))
                .with_extension("gt.txt");
            if is_scan && gt.exists() {
                out.push(Case {
                    group: "public scans (en)".into(),
                    file: corpus.join(name),
                    truth: gt,
                });
            }
        }
    }
    out
}

/// The `tesseract` CLI's text for a file (PDFs rendered by pdftoppm at 300 dpi first, as
/// the CLI does not read PDF), cached.
fn cli_text(file: &Path, ft: FileType, cache: &Path) -> String {
    let key = cache
        .join(file.file_name().unwrap())
        .with_extension("cli.txt");
    if let Ok(t) = std::fs::read_to_string(&key) {
        return t;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut inputs = Vec::new();
    if ft == FileType::Pdf {
        let root = tmp.path().join("p");
        let _ = std::process::Command::new("pdftoppm")
            .args(["-r", "300", "-gray", "-png"])
            .arg(file)
            .arg(&root)
            .status();
        let mut pngs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        pngs.sort();
        inputs.extend(pngs);
    } else {
        inputs.push(file.to_path_buf());
    }
    let mut text = String::new();
    for input in inputs {
        let out = std::process::Command::new("tesseract")
            .arg(&input)
            .arg("stdout")
            .args(["-l", "ita+eng"])
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(o) = out {
            text.push_str(&String::from_utf8_lossy(&o.stdout));
            text.push('\n');
        }
    }
    let _ = std::fs::write(&key, &text);
    text
}
