//! Drop folders with the real `sportello run`: files still being written, the same file twice,
//! and a runner killed with SIGKILL mid-batch and restarted.

mod common;
use common::*;
use sportello::testdata::{fax_tiff, letter_pdf};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

fn tickets(data: &std::path::Path) -> Vec<serde_json::Value> {
    ok(data, &["export", "--jsonl"]).json_lines()
}

fn a_file_still_being_written_is_taken_only_when_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 1.5);
    let runner = Runner::start(&data, &pipeline, &[]);
    let pdf = letter_pdf("Richiesta completa", "Questa lettera arriva a pezzi ma deve essere letta intera fino alla parola finale: ARRIVEDERCI.");
    let path = drop.join("lettera-lenta.pdf");
    let mut file = std::fs::File::create(&path).unwrap();
    // Written in pieces, 400 ms apart: each pause is shorter than the settle time.
    for chunk in pdf.chunks(pdf.len() / 5 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    file.sync_all().unwrap();
    std::mem::drop(file);
    assert!(
        wait_for(Duration::from_secs(20), || count_files(
            &drop.join("processed")
        ) == 1),
        "never processed"
    );
    assert!(runner.terminate().success());
    let all = tickets(&data);
    assert_eq!(all.len(), 1, "exactly one ticket");
    let t = &all[0];
    assert_eq!(t["needs_attention"], false, "{t}");
    assert!(t["body"].as_str().unwrap().contains("ARRIVEDERCI"), "{t}");
    assert_eq!(count_files(&drop), 0);
}

fn the_same_bytes_dropped_twice_make_one_ticket_and_a_duplicate_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let pipeline = folder_pipeline(tmp.path(), &drop, "fax", 0.2);
    let fax = fax_tiff(1728, 200, 1);
    std::fs::write(drop.join("fax_0862505245_1.tif"), &fax).unwrap();
    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    // The fax server delivers the same fax again under another name.
    std::fs::write(drop.join("fax_0862505245_2.tif"), &fax).unwrap();
    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    let all = tickets(&data);
    assert_eq!(all.len(), 1);
    let t = &all[0];
    assert_eq!(t["channel"], "fax");
    assert_eq!(t["sender"]["fax"], "0862505245");
    let kinds: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"duplicate_received"), "{kinds:?}");
    assert_eq!(
        count_files(&drop.join("processed")),
        2,
        "both copies leave the drop folder"
    );
}

fn sigkill_mid_batch_then_restart_loses_nothing_and_files_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.2);
    let n = 150;
    let mut names = HashSet::new();
    for i in 0..n {
        let name = format!("lettera-{i:03}.pdf");
        let body =
            format!("Richiesta numero {i} di prova per il riavvio dopo un arresto improvviso.");
        std::fs::write(
            drop.join(&name),
            letter_pdf(&format!("Richiesta {i}"), &body),
        )
        .unwrap();
        names.insert(name);
    }
    let processed = drop.join("processed");
    let mut runner = Runner::start(&data, &pipeline, &[]);
    let started = wait_for(Duration::from_secs(30), || count_files(&processed) >= 5);
    runner.child.kill().unwrap(); // SIGKILL, in the middle of the batch
    runner.child.wait().unwrap();
    assert!(started, "nothing processed before the kill");
    let before_restart = count_files(&processed);
    assert!(
        before_restart < n,
        "the whole batch finished before the kill; the test proves nothing"
    );

    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    assert_eq!(count_files(&drop), 0, "every file left the drop folder");
    assert_eq!(
        count_files(&processed),
        n,
        "every file is in processed/ exactly once"
    );
    let all = tickets(&data);
    assert_eq!(all.len(), n, "one ticket per file, none lost, none twice");
    let filed: HashSet<String> = all
        .iter()
        .map(|t| t["documents"][0]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(filed, names);
    for t in &all {
        assert_eq!(duplicate_events(t), 0, "a restart is not a duplicate: {t}");
    }
}

fn a_broken_file_goes_to_failed_with_a_reason_and_still_makes_a_flagged_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.1);
    let junk = b"\x00\x01\x02 this is not a document \xff\xfe".repeat(50);
    std::fs::write(drop.join("scansione.pdf"), &junk).unwrap();
    std::fs::write(drop.join(".nascosto.pdf"), b"hidden").unwrap();
    std::fs::write(drop.join("in-arrivo.pdf.part"), b"partial").unwrap();
    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    let failed = drop.join("failed");
    assert_eq!(count_files(&failed), 1);
    let reason = std::fs::read_to_string(failed.join("scansione.pdf.error.txt")).unwrap();
    assert!(reason.contains("unsupported file type"), "{reason}");
    let all = tickets(&data);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["needs_attention"], true);
    // The original is kept, byte for byte, in the store.
    let sha = all[0]["documents"][0]["sha256"].as_str().unwrap();
    let kept = data.join("originals").join(&sha[..2]).join(sha);
    assert_eq!(std::fs::read(kept).unwrap(), junk);
    // Hidden and partial files are left alone.
    assert!(drop.join(".nascosto.pdf").exists() && drop.join("in-arrivo.pdf.part").exists());
}

fn a_source_this_build_cannot_run_is_refused_at_start_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sportello(
        tmp.path(),
        &["run", "--once", "--pipeline", "pipelines/urp.example.toml"],
    );
    assert!(!run.status.success());
    // Every problem at once, each with its source and line, before anything starts.
    assert!(run.stderr.contains("3 problem(s)"), "{}", run.stderr);
    for (line, name) in [
        (19, "source `urp-mail`"),
        (32, "source `urp-pec`"),
        (98, "smtp_ack"),
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("urp.example.toml:{line}:")) && l.contains(name)),
            "{}",
            run.stderr
        );
    }
}

on_both_backends!(
    a_file_still_being_written_is_taken_only_when_complete,
    the_same_bytes_dropped_twice_make_one_ticket_and_a_duplicate_event,
    sigkill_mid_batch_then_restart_loses_nothing_and_files_nothing_twice,
    a_broken_file_goes_to_failed_with_a_reason_and_still_makes_a_flagged_ticket,
    a_source_this_build_cannot_run_is_refused_at_start_with_its_name,
);
