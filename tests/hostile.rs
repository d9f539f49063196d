//! Files made to break readers, and readers that crash: one bad item costs one flagged ticket,
//! its original kept, and never the run. The real binary, its worker processes, real files.

mod common;
use common::*;
use sportello::store::prelude::*;
use sportello::testdata::{hostile, letter_pdf};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hostile files the acceptance names, plus the corpus's files marked broken.
fn bad_files() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = hostile::all()
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    if let Some(corpus) = corpus() {
        let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
        for line in manifest.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.get(1) == Some(&"broken") {
                let path = corpus.join(cols[0]);
                if let Ok(bytes) = std::fs::read(&path) {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    all.push((format!("corpus-{name}"), bytes));
                }
            }
        }
    }
    all
}

struct Measured {
    run: Run,
    wall: Duration,
    runner_mb: f64,
    worker_mb: f64,
}

/// Runs sportello, sampling the peak RSS of it and of its workers every few milliseconds.
fn measured(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Measured {
    let started = Instant::now();
    let mut child = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut runner, mut worker) = (0u64, 0u64);
    let reader = {
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut out, &mut s).unwrap();
            s
        })
    };
    let err_reader = {
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut err, &mut s).unwrap();
            s
        })
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        runner = runner.max(hwm_kb(pid).unwrap_or(0));
        for c in children(pid) {
            worker = worker.max(hwm_kb(c).unwrap_or(0));
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "sportello {args:?} did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    Measured {
        run: Run {
            status,
            stdout: reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        },
        wall: started.elapsed(),
        runner_mb: runner as f64 / 1024.0,
        worker_mb: worker as f64 / 1024.0,
    }
}

fn blob(data: &Path, sha: &str) -> PathBuf {
    data.join("originals").join(&sha[..2]).join(sha)
}

fn every_hostile_file_is_one_flagged_ticket_with_its_original_kept() {
    let files = bad_files();
    assert!(files.len() >= 7, "the hostile set is there");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (name, bytes) in &files {
        let dir = tmp.path().join(format!("case-{checked}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let data = dir.join("data");
        new_register();
        let m = measured(&data, &["ingest", "--json", path.to_str().unwrap()], &[]);
        assert!(
            m.run.status.success(),
            "{name}: ingest failed: {}\n{}",
            m.run.stderr,
            m.run.stdout
        );
        let lines = m.run.json_lines();
        assert_eq!(lines.len(), 1, "{name}: one outcome: {}", m.run.stdout);
        let all = ok(&data, &["export", "--jsonl"]).json_lines();
        assert_eq!(all.len(), 1, "{name}: exactly one ticket");
        let t = &all[0];
        assert_eq!(t["needs_attention"], true, "{name}: flagged: {t}");
        let first = &t["documents"][0];
        let sha = first["sha256"].as_str().unwrap();
        assert_eq!(
            std::fs::read(blob(&data, sha)).unwrap(),
            *bytes,
            "{name}: the original is kept as it came"
        );
        assert!(
            m.wall < Duration::from_secs(60),
            "{name}: took {:?}",
            m.wall
        );
        assert!(
            m.runner_mb < 300.0,
            "{name}: runner peak RSS {:.0} MB",
            m.runner_mb
        );
        assert!(
            m.worker_mb < 1024.0,
            "{name}: worker peak RSS {:.0} MB",
            m.worker_mb
        );
        eprintln!(
            "{name}: {:.2} s, runner {:.0} MB, worker {:.0} MB: {}",
            m.wall.as_secs_f64(),
            m.runner_mb,
            m.worker_mb,
            first["error"]
        );
        checked += 1;
    }
    assert_eq!(checked, files.len());
}

fn pipeline(dir: &Path, drop: &Path, extra: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[[sources]]\nkind = \"folder\"\nname = \"drop\"\npath = {:?}\nchannel = \"scanner\"\nsettle_secs = 0.1\nrescan_secs = 1\n\n[[stages]]\nkind = \"extract\"\ntimeout_secs = 1\n\n[[stages]]\nkind = \"ocr\"\npage_timeout_secs = 1\n",
            drop.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn good_letters(drop: &Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("buona-{i}.pdf");
            std::fs::write(
                drop.join(&name),
                letter_pdf(
                    &format!("Richiesta {i}"),
                    &format!("Chiedo l'allacciamento del gas, pratica {i}."),
                ),
            )
            .unwrap();
            name
        })
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".error.txt"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn a_run_files_every_good_file_and_moves_every_bad_one_to_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let mut good = good_letters(&drop, 3);
    let mut bad = Vec::new();
    for (name, bytes) in bad_files() {
        std::fs::write(drop.join(&name), bytes).unwrap();
        bad.push(name);
    }
    let p = pipeline(tmp.path(), &drop, "");
    let m = measured(
        &data,
        &["run", "--once", "--pipeline", p.to_str().unwrap()],
        &[],
    );
    assert!(m.run.status.success(), "{}", m.run.stderr);
    good.sort();
    bad.sort();
    assert_eq!(names_in(&drop.join("processed")), good);
    assert_eq!(names_in(&drop.join("failed")), bad);
    for name in &bad {
        let reason =
            std::fs::read_to_string(drop.join("failed").join(format!("{name}.error.txt"))).unwrap();
        assert!(reason.contains("ticket: "), "{name}: {reason}");
    }
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), good.len() + bad.len());
    assert!(m.runner_mb < 300.0, "runner peak RSS {:.0} MB", m.runner_mb);
}

/// Files the workers are told to crash on (see `SPORTELLO_WORKER_FAULT`), beside good ones.
fn a_worker_that_dies_costs_only_its_item_and_is_tried_once_more() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let mut good = good_letters(&drop, 3);
    let faults = [
        ("overflow", "stack-overflow", "crashed (stack overflow)"),
        ("abort", "abort", "crashed (aborted)"),
        ("segv", "segfault", "crashed (segmentation fault)"),
        ("garbage", "garbage", "crashed (it answered garbage"),
        ("hog", "oom", "crashed (it ran out of memory)"),
        ("slow", "hang", "gave up after 11 s"),
    ];
    for (i, (tag, _, _)) in faults.iter().enumerate() {
        std::fs::write(
            drop.join(format!("{tag}-letter.pdf")),
            letter_pdf("Lettera", &format!("Contenuto diverso numero {i}.")),
        )
        .unwrap();
    }
    let spec: Vec<String> = faults.iter().map(|(t, k, _)| format!("{k}:{t}-")).collect();
    let p = pipeline(tmp.path(), &drop, "[isolation]\nmemory_mb = 256");
    let m = measured(
        &data,
        &["run", "--once", "--pipeline", p.to_str().unwrap()],
        &[("SPORTELLO_WORKER_FAULT", &spec.join(","))],
    );
    assert!(m.run.status.success(), "{}", m.run.stderr);
    good.sort();
    assert_eq!(names_in(&drop.join("processed")), good);
    let store = open_store(&data).unwrap();
    let crashes = store.parse_crashes().unwrap();
    for (tag, _, expected) in faults {
        let name = format!("{tag}-letter.pdf");
        let reason = std::fs::read_to_string(drop.join("failed").join(format!("{name}.error.txt")))
            .unwrap_or_else(|_| panic!("{name} is not in failed/"));
        assert!(reason.contains(expected), "{name}: {reason}");
        assert!(reason.contains("the PDF reader"), "{name}: {reason}");
        let sha = sportello::store::blobs::sha256_hex(
            &std::fs::read(drop.join("failed").join(&name)).unwrap(),
        );
        // Crashes are remembered, twice (the second try); a time-out is not a crash.
        let remembered = crashes.get(&sha).map_or(0, |c| c.0);
        assert_eq!(remembered, if tag == "slow" { 0 } else { 2 }, "{name}");
    }
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), good.len() + faults.len());
    for t in &all {
        let name = t["documents"][0]["name"].as_str().unwrap();
        assert_eq!(t["needs_attention"], !name.starts_with("buona"), "{t}");
    }
}

/// An item that was being read each time a runner died (twice) is filed flagged, unread,
/// however readable it is: the next death must not come from it.
fn an_item_that_took_the_runner_down_twice_is_filed_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let bytes = letter_pdf("Lettera", "Una lettera che sembra innocua.");
    let sha = sportello::store::blobs::sha256_hex(&bytes);
    // The marks two dead runners left (pids beyond the kernel's default pid_max).
    let p = pipeline(tmp.path(), &drop, "");
    for dead in [4_194_305u32, 4_194_306] {
        let inflight = data.join("inflight");
        std::fs::create_dir_all(&inflight).unwrap();
        std::fs::write(inflight.join(format!("{dead}-0")), &sha).unwrap();
        // Each start counts the marks of runners no longer alive.
        ok(&data, &["run", "--once", "--pipeline", p.to_str().unwrap()]);
    }
    std::fs::write(drop.join("innocua.pdf"), &bytes).unwrap();
    ok(&data, &["run", "--once", "--pipeline", p.to_str().unwrap()]);
    let reason =
        std::fs::read_to_string(drop.join("failed").join("innocua.pdf.error.txt")).unwrap();
    assert!(reason.contains("no longer read"), "{reason}");
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["needs_attention"], true);
    assert_eq!(all[0]["documents"][0]["text"], "", "it was not read");
}

/// Ingests the file at `path` alone into `data`: the run, measured, and the one ticket filed.
fn ingest_one(data: &Path, path: &Path) -> (Measured, serde_json::Value) {
    let m = measured(data, &["ingest", "--json", path.to_str().unwrap()], &[]);
    assert!(m.run.status.success(), "{}", m.run.stderr);
    let mut all = ok(data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), 1);
    (m, all.remove(0))
}

/// A valid page of two million operators is read, quickly, and not flagged.
fn a_content_stream_of_millions_of_operators_is_read_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many-operators.pdf");
    std::fs::write(&path, hostile::many_operators_pdf(2_000_000)).unwrap();
    let (m, ticket) = ingest_one(&tmp.path().join("data"), &path);
    assert_eq!(ticket["needs_attention"], false, "{ticket}");
    assert_eq!(ticket["documents"][0]["text"], "fine");
    assert!(m.wall < Duration::from_secs(20), "took {:?}", m.wall);
    assert!(
        m.worker_mb < 1024.0,
        "worker peak RSS {:.0} MB",
        m.worker_mb
    );
}

/// A message written so that reading it for its topic would take time quadratic in its
/// length: a megabyte of "a.a.a.…" that is no acronym, of short sentences each turning to
/// its point, and of asking sentences apart, each naming a rule's term. It is classified in
/// one linear pass (these took minutes per message before), and not flagged.
fn a_request_written_to_slow_the_classifier_is_classified_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lenta.eml");
    let body = format!(
        "{}bc\r\n\r\n{}{}",
        "a.".repeat(300_000),
        "il punto e. ".repeat(25_000),
        "Chiedo l'allaccio del gas? Bene. ".repeat(10_000)
    );
    let message = format!(
        "From: Mario Rossi <mario.rossi@example.it>\r\nTo: urp@comune.example.it\r\nSubject: Allaccio gas\r\nMessage-ID: <lenta@example.it>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    );
    std::fs::write(&path, message).unwrap();
    let (m, ticket) = ingest_one(&tmp.path().join("data"), &path);
    assert_eq!(ticket["needs_attention"], false, "{ticket}");
    assert_eq!(ticket["topic"], "gas", "{}", ticket["topic"]);
    assert!(m.wall < Duration::from_secs(20), "took {:?}", m.wall);
}

/// The original is kept on a helper thread while the ticket is read, classified and
/// indexed: when it cannot be kept, nothing is filed, the file stays where it was with a
/// clear error, and the same file is filed once the disk takes it again.
fn an_item_whose_original_cannot_be_kept_is_not_filed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let message = |name: &str, place: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!("From: <{name}@example.it>\r\nSubject: Allaccio gas\r\nMessage-ID: <{name}@example.it>\r\n\r\nChiedo l'allaccio del gas a {place}.\r\n"),
        )
        .unwrap();
        path
    };
    let (first, second) = (
        message("primo.eml", "Paganica"),
        message("secondo.eml", "Onna"),
    );
    ok(&data, &["ingest", first.to_str().unwrap()]);
    // A file where the originals' folder should be: no original can be written.
    let originals = data.join("originals");
    std::fs::remove_dir_all(&originals).unwrap();
    std::fs::write(&originals, "not a folder").unwrap();
    let run = sportello(&data, &["ingest", "--json", second.to_str().unwrap()]);
    assert!(!run.status.success(), "{}", run.stdout);
    assert!(
        run.stderr.contains("cannot keep the original secondo.eml"),
        "{}",
        run.stderr
    );
    assert_eq!(ok(&data, &["export", "--jsonl"]).json_lines().len(), 1);
    assert!(second.exists(), "the file stays where it was");
    std::fs::remove_file(&originals).unwrap();
    std::fs::create_dir(&originals).unwrap();
    ok(&data, &["ingest", second.to_str().unwrap()]);
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["topic"], "gas", "{}", all[1]);
}

/// libgomp reads `OMP_THREAD_LIMIT` when it loads: workers must start with it set, and it
/// must be in force there (libgomp's own answer), whatever this environment says.
#[test]
fn workers_run_tesseract_with_one_openmp_thread() {
    std::env::set_var("SPORTELLO_WORKER_EXE", bin());
    std::env::remove_var("OMP_THREAD_LIMIT");
    let workers =
        sportello::worker::Workers::new(sportello::worker::Limits::new(&Default::default(), &[]))
            .unwrap();
    assert_eq!(workers.omp_thread_limit().unwrap(), Some(1));
    // A worker killed while idle is not handed the next item: a new one is started.
    let idle = workers.idle_pids();
    assert_eq!(idle.len(), 1);
    unsafe { libc::kill(idle[0] as i32, libc::SIGKILL) };
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/stat", idle[0]))
            .map_or(true, |s| s.contains(") Z"))
    }));
    assert_eq!(workers.omp_thread_limit().unwrap(), Some(1));
    assert_ne!(workers.idle_pids(), idle, "the dead worker was replaced");
    drop(workers);
    // An explicit setting is the user's: respected (and read back, so the probe is real).
    std::env::set_var("OMP_THREAD_LIMIT", "3");
    let workers =
        sportello::worker::Workers::new(sportello::worker::Limits::new(&Default::default(), &[]))
            .unwrap();
    assert_eq!(workers.omp_thread_limit().unwrap(), Some(3));
    std::env::remove_var("OMP_THREAD_LIMIT");
    // A command that OCRs in its own process restarts with the limit set.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(tmp.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("OMP_THREAD_LIMIT")
        .env("SPORTELLO_ISOLATION", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let set = wait_for(Duration::from_secs(10), || {
        environ(child.id())
            .split(|&b| b == 0)
            .any(|v| v == b"OMP_THREAD_LIMIT=1")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        set,
        "sportello serve did not restart with OMP_THREAD_LIMIT=1"
    );
}

/// Without a worker (this machine's fault, not the item's) nothing is filed: the file stays
/// in the drop folder for a later scan, and `ingest` says why.
fn an_item_no_worker_could_read_is_left_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let names = good_letters(&drop, 2);
    let p = pipeline(tmp.path(), &drop, "");
    let m = measured(
        &data,
        &["run", "--once", "--pipeline", p.to_str().unwrap()],
        &[("SPORTELLO_WORKER_EXE", "/nonexistent/sportello")],
    );
    let _ = m.run.status;
    assert_eq!(names_in(&drop.join("failed")), Vec::<String>::new());
    assert_eq!(names_in(&drop.join("processed")), Vec::<String>::new());
    for n in &names {
        assert!(drop.join(n).exists(), "{n} left in the drop folder");
    }
    let run = sportello(&data, &["export", "--jsonl"]);
    assert!(
        run.stdout.trim().is_empty(),
        "nothing filed: {}",
        run.stdout
    );
    let one = drop.join(&names[0]);
    let m = measured(
        &data,
        &["ingest", one.to_str().unwrap()],
        &[("SPORTELLO_WORKER_EXE", "/nonexistent/sportello")],
    );
    assert!(m.run.stderr.contains("cannot start"), "{}", m.run.stderr);
}

/// The email reader runs under the same guard as every reader of outside bytes: past its time
/// limit the message is filed flagged, its original kept. (In a worker process it reads on
/// the worker's thread, and the worker's own wall-clock limit ends a hang: see the `hang`
/// case of `a_worker_that_dies_costs_only_its_item_and_is_tried_once_more`.)
fn a_message_the_email_reader_cannot_finish_in_time_is_filed_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let message = sportello::testdata::email(
        "Maria Rossi <maria@example.it>",
        "Richiesta contributo",
        // ~8 MB, tens of milliseconds to read: the channel's receive first spins and yields
        // before it looks at the clock, and on a loaded machine a short read (it was 800 KB)
        // could finish during that yield and be taken as in time.
        &"Chiedo il contributo per la riparazione. ".repeat(200_000),
        "<slow@example.it>",
    );
    let path = tmp.path().join("lenta.eml");
    std::fs::write(&path, &message).unwrap();
    // One microsecond: no reader answers that fast, whatever the machine.
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[[stages]]\nkind = \"extract\"\ntimeout_secs = 0.000001\n",
    )
    .unwrap();
    {
        // Readers in the runner itself: only this guard stands between a hang and the run.
        let isolation = "off";
        let data = tmp.path().join(format!("data-{isolation}"));
        let run = sportello_env(
            &data,
            &[
                "ingest",
                "--json",
                "--pipeline",
                pipeline.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            &[("SPORTELLO_ISOLATION", isolation)],
        );
        assert!(run.status.success(), "{isolation}: {}", run.stderr);
        let t = &run.json_lines()[0]["ticket"];
        assert_eq!(t["needs_attention"], true, "{isolation}: {t}");
        let reason = t["attention_reason"].as_str().unwrap();
        assert!(
            reason.contains("the email reader gave up"),
            "{isolation}: {reason}"
        );
        let sha = t["documents"][0]["sha256"].as_str().unwrap();
        assert_eq!(std::fs::read(blob(&data, sha)).unwrap(), message);
    }
}

// The OpenMP test (above) sets this process's environment: it runs once, alone.
on_both_backends!(
    every_hostile_file_is_one_flagged_ticket_with_its_original_kept,
    a_run_files_every_good_file_and_moves_every_bad_one_to_failed,
    a_worker_that_dies_costs_only_its_item_and_is_tried_once_more,
    an_item_that_took_the_runner_down_twice_is_filed_without_being_read,
    a_content_stream_of_millions_of_operators_is_read_in_time,
    a_request_written_to_slow_the_classifier_is_classified_in_time,
    an_item_no_worker_could_read_is_left_where_it_is,
    an_item_whose_original_cannot_be_kept_is_not_filed,
    a_message_the_email_reader_cannot_finish_in_time_is_filed_flagged,
);
