//! Every input the fuzzer found a crash with (`fuzz/regressions/TARGET/`), and the hostile
//! files, replayed through the fuzz entry points: each must return, without a panic that
//! escapes. In one loop that counts what it ran, so an empty folder cannot pass unnoticed.

use sportello::fuzzing;
use sportello::testdata::hostile;
use std::path::Path;

fn entry(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "email" => fuzzing::email,
        "p7m" => fuzzing::p7m,
        "pdf_text" => fuzzing::pdf_text,
        "content_stream" => fuzzing::content_stream,
        "page_images" => fuzzing::page_images,
        "pipeline_toml" => fuzzing::pipeline_toml,
        "rules_toml" => fuzzing::rules_toml,
        "search_query" => fuzzing::search_query,
        "web_forms" => fuzzing::web_forms,
        _ => return None,
    })
}

#[test]
fn every_input_that_once_crashed_a_reader_now_returns() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for target in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        let run = entry(&name).unwrap_or_else(|| panic!("fuzz/regressions/{name}: no such target"));
        for case in std::fs::read_dir(target.path()).unwrap().flatten() {
            let bytes = std::fs::read(case.path()).unwrap();
            run(&bytes);
            ran += 1;
        }
    }
    for (name, bytes) in hostile::all() {
        let run = if name.ends_with(".eml") {
            fuzzing::email
        } else if name.ends_with(".pdf") {
            fuzzing::pdf_text
        } else {
            fuzzing::page_images
        };
        run(&bytes);
        ran += 1;
    }
    assert!(ran > hostile::all().len(), "no regression case ran");
}
