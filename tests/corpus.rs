//! Every file of `../shared/corpus` (material the project did not write) through `ingest`:
//! one ticket each, no crash, text of born-digital PDFs as poppler reads it, broken files
//! flagged with their original kept. Skips with a message where the corpus is absent.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

fn words(text: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *m.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    m
}

/// Share of the reference's words (with multiplicity) that `ours` also has.
fn word_recall(ours: &str, reference: &str) -> f64 {
    let (a, b) = (words(ours), words(reference));
    let total: usize = b.values().sum();
    if total == 0 {
        return 1.0;
    }
    let common: usize = b
        .iter()
        .map(|(w, n)| (*n).min(*a.get(w).unwrap_or(&0)))
        .sum();
    common as f64 / total as f64
}

fn pdftotext(path: &Path) -> Option<String> {
    let out = std::process::Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn every_manifest_file_becomes_one_ticket() {
    let Some(corpus) = corpus() else { return };
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let rows: Vec<Vec<String>> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .filter(|r: &Vec<String>| r.len() >= 2)
        .collect();
    assert!(rows.len() > 50, "manifest rows: {}", rows.len());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut args = vec!["ingest".to_string(), "--json".to_string()];
    args.extend(
        rows.iter()
            .map(|r| corpus.join(&r[0]).to_string_lossy().into_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = ok(data, &args);
    let results = run.json_lines();
    assert_eq!(results.len(), rows.len(), "one result per file");
    let by_name: HashMap<String, &serde_json::Value> = results
        .iter()
        .map(|r| {
            (
                Path::new(r["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                r,
            )
        })
        .collect();
    let codes: HashSet<&str> = results
        .iter()
        .map(|r| r["ticket"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes.len(),
        rows.len(),
        "a ticket of its own for every (distinct) file"
    );

    let mut checked_text = 0;
    for row in &rows {
        let (name, kind) = (&row[0], row[1].as_str());
        let r = by_name[name.as_str()];
        assert_eq!(r["outcome"], "created", "{name}");
        let t = &r["ticket"];
        let doc = &t["documents"][0];
        // The original is kept byte for byte.
        let sha = doc["sha256"].as_str().unwrap();
        let kept = data.join("originals").join(&sha[..2]).join(sha);
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            std::fs::read(corpus.join(name)).unwrap(),
            "{name}"
        );
        if kind == "broken" {
            // A damaged image that libtiff still decodes without a complaint (a fuzzed G4
            // strip) is read by OCR like any scan: there is no error to flag. Every other
            // broken file must be flagged.
            let read_by_ocr = doc["ocr"] == true && !doc["text"].as_str().unwrap().is_empty();
            if read_by_ocr && t["needs_attention"] != true {
                eprintln!("{name}: damaged but decoded without error; read by OCR, not flagged");
            } else {
                assert_eq!(
                    t["needs_attention"], true,
                    "{name}: broken files are flagged"
                );
            }
        }
        if kind == "pdf-text" {
            let Some(reference) = pdftotext(&corpus.join(name)) else {
                continue;
            };
            let ours = doc["text"].as_str().unwrap();
            let recall = word_recall(ours, &reference);
            eprintln!("{name}: {:.3} of pdftotext's words", recall);
            assert!(
                recall >= 0.95,
                "{name}: only {recall:.3} of pdftotext's words"
            );
            checked_text += 1;
        }
        if kind == "email" {
            assert!(
                ["email", "pec"].contains(&t["channel"].as_str().unwrap()),
                "{name}"
            );
        }
    }
    assert!(
        checked_text > 0 || pdftotext(&corpus.join("pdf-text-letter-en.pdf")).is_none(),
        "no born-digital PDF compared"
    );
}

fn italian_mail_keeps_every_attachment_and_its_text() {
    let Some(corpus) = corpus() else { return };
    let mail = corpus.join("mail-it");
    let index = std::fs::read_to_string(mail.join("index.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!entries.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for e in &entries {
        let file = mail.join(e["file"].as_str().unwrap());
        let run = ok(tmp.path(), &["ingest", "--json", file.to_str().unwrap()]);
        let t = &run.json_lines()[0]["ticket"];
        let names: HashSet<&str> = t["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        // Before and after unwrapping signed files: the .p7m and what it holds are both kept.
        for field in ["wire_attachments", "attachments"] {
            for wanted in e[field].as_array().unwrap() {
                assert!(
                    names.contains(wanted.as_str().unwrap()),
                    "{}: {wanted} missing from {names:?}",
                    e["file"]
                );
            }
        }
        // Every attachment after unwrapping has its text (born-digital, or OCR of a scan).
        for wanted in e["attachments"].as_array().unwrap() {
            let doc = t["documents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == *wanted)
                .unwrap();
            assert!(
                !doc["text"].as_str().unwrap().trim().is_empty(),
                "{}: no text for {wanted}",
                e["file"]
            );
        }
        // PEC envelopes are `pec` tickets from the original sender; web forms are `webform`.
        assert_eq!(t["channel"], e["channel"], "{}", e["file"]);
        assert_eq!(t["sender"]["email"], e["sender"], "{}", e["file"]);
        for p7m in e["signed_p7m"].as_array().unwrap() {
            let doc = t["documents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == *p7m)
                .unwrap();
            assert!(
                doc["signed_by"].as_str().is_some_and(|s| s.contains("CN=")),
                "{}: {doc}",
                e["file"]
            );
        }
        assert!(
            !t["body"].as_str().unwrap().trim().is_empty(),
            "{}: empty body",
            e["file"]
        );
        assert!(
            !t["body"].as_str().unwrap().contains("</"),
            "{}: raw HTML in body",
            e["file"]
        );
        ran += 1;
    }
    assert!(ran > 0);
}

on_both_backends!(
    every_manifest_file_becomes_one_ticket,
    italian_mail_keeps_every_attachment_and_its_text,
);
