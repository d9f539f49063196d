//! The work queue: `ingest --enqueue` then `sportello worker` processes side by side, one of
//! them `kill -9`ed mid-way: every item one ticket, protocol numbers without a gap, nothing
//! filed twice, the dead worker's job taken over once its lease ran out. Every test runs on
//! SQLite and on PostgreSQL.

mod common;
use common::*;
use sportello::store::prelude::*;
use sportello::testdata::letter_pdf;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn worker(data: &std::path::Path) -> Child {
    with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(["worker", "--lease-secs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker")
}

/// The process that leads the sources, as text ("" when none does).
fn leader(data: &std::path::Path) -> String {
    open_store(data)
        .and_then(|s| s.leader())
        .ok()
        .flatten()
        .map(|pid| pid.to_string())
        .unwrap_or_default()
}

fn filed(data: &std::path::Path) -> u64 {
    open_store(data).and_then(|s| s.count()).unwrap_or(0)
}

/// `kill -9` of one of `workers` at a moment it holds a job (no chance to give it back: its
/// lease must run out before another worker takes the job); it is taken out of `workers`.
/// Whichever is seen first: on a new store one worker trains the first model while the others
/// take the jobs, and a fast queue can empty before it claims any. False if none was seen
/// holding one.
fn kill_one_holding_a_job(data: &std::path::Path, workers: &mut Vec<Child>) -> bool {
    // One connection for the whole watch: opening one per look (on PostgreSQL, a connection
    // and a schema check) let a fast queue empty before a worker was ever seen holding a job.
    let store = open_store(data).unwrap();
    let mut victim = None;
    wait_for(Duration::from_secs(60), || {
        let running = store.running_jobs().unwrap();
        victim = workers.iter().position(|w| {
            let mine = format!(":{}", w.id());
            running.iter().any(|(_, worker, _)| worker.ends_with(&mine))
        });
        if let Some(i) = victim {
            unsafe { libc::kill(workers[i].id() as i32, libc::SIGKILL) };
        }
        victim.is_some()
    });
    match victim {
        Some(i) => {
            let _ = workers.remove(i).wait();
            true
        }
        None => false,
    }
}

/// A temp dir with a store (`data`), a drop folder and a folder of files to queue.
fn folders() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop, queued) = (
        tmp.path().join("data"),
        tmp.path().join("drop"),
        tmp.path().join("queued"),
    );
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::create_dir_all(&queued).unwrap();
    (tmp, data, drop, queued)
}

/// Every one of `total` items one ticket: protocol numbers 1…total, no subject twice.
fn assert_each_item_filed_once(data: &std::path::Path, total: u64) {
    let tickets = ok(data, &["tickets", "list", "--json"]).json_lines();
    assert_eq!(tickets.len() as u64, total);
    let mut numbers: Vec<u64> = tickets
        .iter()
        .map(|t| {
            let p = t["protocol"].as_str().expect("protocol");
            p.split_once('/').unwrap().1.parse().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=total).collect::<Vec<_>>());
    let subjects: HashSet<&str> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(subjects.len() as u64, total, "an item was filed twice");
}

fn three_workers_one_killed_file_every_item_once() {
    let items = 300;
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    for i in 0..items {
        let pdf = letter_pdf(
            &format!("Richiesta {i}"),
            &format!("Chiedo un appuntamento per la pratica numero {i}."),
        );
        std::fs::write(drop.join(format!("lettera-{i:04}.pdf")), pdf).unwrap();
    }
    let queued = ok(
        &data,
        &["ingest", "--enqueue", "--json", drop.to_str().unwrap()],
    );
    assert_eq!(queued.json_lines().len(), items);
    // Queueing reads nothing: no ticket yet.
    assert_eq!(filed(&data), 0);

    let mut workers: Vec<Child> = (0..3).map(|_| worker(&data)).collect();
    // Mid-way: once the workers are filing (waiting for more let a fast queue run dry first).
    assert!(
        wait_for(Duration::from_secs(120), || filed(&data) >= 1),
        "the workers filed nothing"
    );
    let killed = kill_one_holding_a_job(&data, &mut workers);
    if !killed {
        // A worker without --once never ends by itself: the test must not leave them.
        for w in &mut workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
    assert!(killed, "no worker was seen holding a job");
    assert!(
        wait_for(Duration::from_secs(180), || {
            let store = open_store(&data).unwrap();
            store.count().unwrap() == items as u64 && store.job_counts().unwrap().queued == 0
        }),
        "not every item was filed: {} of {items}",
        filed(&data)
    );
    for mut w in workers {
        unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
        assert!(w.wait().unwrap().success(), "a worker did not stop cleanly");
    }

    let store = open_store(&data).unwrap();
    assert_eq!(store.job_counts().unwrap(), Default::default());
    let status = ok(&data, &["worker", "--status", "--json"]).json_lines();
    assert_eq!(status[0]["queued"], 0);
    assert_each_item_filed_once(&data, items as u64);
}

fn a_worker_once_stops_when_nothing_is_due_and_keeps_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::write(drop.join("rotto.pdf"), b"%PDF-1.4\n1 0 obj <<>> garbage").unwrap();
    std::fs::write(
        drop.join("buona.pdf"),
        letter_pdf("Allaccio gas", "Chiedo l'allaccio del gas."),
    )
    .unwrap();
    ok(&data, &["ingest", "--enqueue", drop.to_str().unwrap()]);
    // As the interface is written: the store from SPORTELLO_DATA, `worker` the first word
    // (the hidden sub-command of the item readers must not take it).
    let run = with_database(&mut Command::new(bin()))
        .args(["worker", "--once", "--json"])
        .env("SPORTELLO_DATA", &data)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let outcomes: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2);
    // The broken file is a ticket for a clerk, its original kept, not a job that fails.
    let flagged: Vec<_> = outcomes
        .iter()
        .filter(|o| o["ticket"]["needs_attention"].as_bool() == Some(true))
        .collect();
    assert_eq!(flagged.len(), 1, "{outcomes:?}");
    let store = open_store(&data).unwrap();
    assert_eq!(store.job_counts().unwrap(), Default::default());
    assert_eq!(store.count().unwrap(), 2);
}

fn run_works_off_the_queue_beside_its_sources() {
    let (tmp, data, drop, queued) = folders();
    std::fs::write(
        drop.join("dal-cassetto.pdf"),
        letter_pdf("Contributo affitto", "Chiedo il contributo per l'affitto."),
    )
    .unwrap();
    for i in 0..2 {
        std::fs::write(
            queued.join(format!("in-coda-{i}.pdf")),
            letter_pdf(&format!("Pratica {i}"), "Chiedo notizie della mia pratica."),
        )
        .unwrap();
    }
    ok(&data, &["ingest", "--enqueue", queued.to_str().unwrap()]);
    let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.1);
    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    let store = open_store(&data).unwrap();
    assert_eq!(store.job_counts().unwrap(), Default::default());
    assert_eq!(store.count().unwrap(), 3);
}

/// Two `run`s of one folder pipeline on one store: the first leads (waited for), the second
/// stands by.
struct TwoRuns {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    drop: std::path::PathBuf,
    leader: Runner,
    leader_pid: String,
    standby: Runner,
    standby_pid: String,
}

impl TwoRuns {
    fn start() -> TwoRuns {
        let tmp = tempfile::tempdir().unwrap();
        let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
        std::fs::create_dir_all(&drop).unwrap();
        let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.1);
        let first = Runner::start(&data, &pipeline, &[]);
        let leader_pid = first.child.id().to_string();
        assert!(wait_for(Duration::from_secs(30), || leader(&data).trim()
            == leader_pid));
        let standby = Runner::start(&data, &pipeline, &[]);
        let standby_pid = standby.child.id().to_string();
        TwoRuns {
            _tmp: tmp,
            data,
            drop,
            leader: first,
            leader_pid,
            standby,
            standby_pid,
        }
    }

    /// Who leads, as text ("" when none does).
    fn leads(&self) -> String {
        leader(&self.data).trim().to_string()
    }

    /// A letter dropped in the folder, then waited for until `total` tickets are filed.
    fn drop_letter(&self, name: &str, total: u64) -> bool {
        std::fs::write(
            self.drop.join(name),
            letter_pdf(&format!("Richiesta {name}"), "Chiedo un certificato."),
        )
        .unwrap();
        wait_for(Duration::from_secs(60), || filed(&self.data) == total)
    }
}

fn a_standby_run_takes_over_the_sources_when_the_leader_is_killed() {
    let mut runs = TwoRuns::start();
    assert!(runs.drop_letter("prima.pdf", 1));
    // Two runs, one leader: the standby has not taken the lock.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs.leads(), runs.leader_pid);
    runs.leader.child.kill().unwrap();
    runs.leader.child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || runs.leads() == runs.standby_pid),
        "the standby did not take over"
    );
    assert!(
        runs.drop_letter("seconda.pdf", 2),
        "the new leader did not take the folder"
    );
    assert!(runs.standby.terminate().success());
}

/// A leader that is there but silent (stopped: a stalled machine whose kernel still answers
/// keepalives) is replaced by the standby; when it wakes it finds its lead gone, stops its
/// sources and stands by, and takes over again when the new leader dies. PostgreSQL only: on
/// SQLite both runs share one machine, where a stopped process is the admin's to see.
fn a_silent_leader_is_replaced_and_stands_by_when_it_wakes() {
    let mut runs = TwoRuns::start();
    std::thread::sleep(Duration::from_millis(1500));
    let first = runs.leader.child.id() as i32;
    unsafe { libc::kill(first, libc::SIGSTOP) };
    assert!(
        wait_for(Duration::from_secs(60), || runs.leads() == runs.standby_pid),
        "the standby did not replace the silent leader"
    );
    assert!(
        runs.drop_letter("prima.pdf", 1),
        "the new leader did not take the folder"
    );
    // The old leader wakes: it does not lead, and it does not end either.
    unsafe { libc::kill(first, libc::SIGCONT) };
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        runs.leader.child.try_wait().unwrap().is_none(),
        "the woken leader exited"
    );
    assert_eq!(runs.leads(), runs.standby_pid);
    assert!(runs.drop_letter("seconda.pdf", 2));
    // It stood by: it leads again when the new leader dies.
    runs.standby.child.kill().unwrap();
    runs.standby.child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || runs.leads() == runs.leader_pid),
        "the woken leader did not stand by"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(filed(&runs.data), 2, "nothing was filed twice");
    assert!(runs.leader.terminate().success());
}

mod postgres_only {
    #[test]
    fn a_silent_leader_is_replaced_and_stands_by_when_it_wakes() {
        if crate::common::use_postgres() {
            super::a_silent_leader_is_replaced_and_stands_by_when_it_wakes()
        }
    }
}

/// A `sportello serve` on a free port of the same register, with its address; killed on drop.
struct Web(Child, std::net::SocketAddr);

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn web(data: &std::path::Path) -> Web {
    use std::io::BufRead;
    let mut child = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--track-per-minute",
            "100000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sportello serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    Web(child, addr)
}

/// The citizen's status page of `code` on `server`: its HTTP status and page.
fn track(server: &Web, code: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.1).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /track?code={code} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.1
    )
    .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    let status = http_status(&page);
    (status, page)
}

/// The scale-out case on one store: a leader `run` and a standby, three workers and
/// two web servers, 1,000 items arriving by the queue and by the drop folder; one worker and
/// the leader `kill -9`ed mid-way, citizens looking up their tickets on either web server
/// throughout. Every item one ticket, numbers 1…1000.
fn leader_standby_and_workers_killed_mid_way_file_a_thousand_items_once() {
    let (queued_items, dropped_items) = (600, 400);
    let (tmp, data, drop, queued) = folders();
    let letter = |i: usize| {
        letter_pdf(
            &format!("Richiesta {i}"),
            &format!("Chiedo notizie della pratica numero {i}."),
        )
    };
    for i in 0..queued_items {
        std::fs::write(queued.join(format!("coda-{i:04}.pdf")), letter(i)).unwrap();
    }
    ok(&data, &["ingest", "--enqueue", queued.to_str().unwrap()]);
    let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.1);
    let leads = || leader(&data);
    // The leader's own queue thread holds jobs too: a short lease, as the workers'.
    let mut leader = Runner::start(&data, &pipeline, &["--lease-secs", "2"]);
    let leader_pid = leader.child.id().to_string();
    assert!(wait_for(Duration::from_secs(30), || leads().trim() == leader_pid));
    let standby = Runner::start(&data, &pipeline, &["--lease-secs", "2"]);
    let mut workers: Vec<Child> = (0..3).map(|_| worker(&data)).collect();
    let webs = [web(&data), web(&data)];
    // Citizens look their tickets up on either server while the rest is filed.
    let lookups = |round: usize| {
        let filed = ok(&data, &["tickets", "list", "--json"]).json_lines();
        for (i, t) in filed.iter().rev().take(10).enumerate() {
            let code = t["code"].as_str().unwrap();
            let (status, page) = track(&webs[(round + i) % 2], code);
            assert_eq!(status, 200, "{code}: {page}");
            assert!(page.contains(code), "{code} not on its page");
        }
    };
    // Files arrive while the queue is worked off.
    for i in 0..dropped_items {
        let n = queued_items + i;
        std::fs::write(drop.join(format!("cassetta-{n:04}.pdf")), letter(n)).unwrap();
    }
    assert!(wait_for(Duration::from_secs(120), || filed(&data) >= 300));
    lookups(0);
    assert!(
        kill_one_holding_a_job(&data, &mut workers)
            || filed(&data) == (queued_items + dropped_items) as u64,
        "no worker was seen holding a job"
    );
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    lookups(1);
    let total = (queued_items + dropped_items) as u64;
    assert!(
        wait_for(Duration::from_secs(240), || {
            let store = open_store(&data).unwrap();
            store.count().unwrap() == total && store.job_counts().unwrap().queued == 0
        }),
        "{} of {total} filed",
        filed(&data)
    );
    // The standby polls for the lead each second: everything may be filed before it took it.
    let standby_pid = standby.child.id().to_string();
    wait_for(Duration::from_secs(10), || leads().trim() == standby_pid);
    assert_eq!(leads().trim(), standby_pid);
    for mut w in workers {
        unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
        assert!(w.wait().unwrap().success());
    }
    assert!(standby.terminate().success());
    assert_each_item_filed_once(&data, total);
}

fn a_job_that_cannot_be_read_is_retried_not_a_crash_and_the_rest_goes_on() {
    let (_tmp, data, _drop, queued) = folders();
    std::fs::write(
        queued.join("buona.pdf"),
        letter_pdf("Allaccio gas", "Chiedo l'allaccio del gas."),
    )
    .unwrap();
    ok(&data, &["ingest", "--enqueue", queued.to_str().unwrap()]);
    {
        let mut store = open_store(&data).unwrap();
        // A description this sportello cannot read…
        store.enqueue("{not json", &"e".repeat(64), 0).unwrap();
        // …and an item whose original is gone from the blob store.
        let item = sportello::pipeline::Item {
            source: "cli".into(),
            origin: "/scomparso.pdf".into(),
            channel: None,
            name: "scomparso.pdf".into(),
            bytes: Default::default(),
            mtime_ns: None,
            received_at: None,
            sender: Default::default(),
            attention: Vec::new(),
        };
        let description = serde_json::to_string(&item).unwrap();
        store.enqueue(&description, &"f".repeat(64), 0).unwrap();
    }
    let run = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(&data)
        .args(["worker", "--once", "--json"])
        .output()
        .unwrap();
    // Two items failed: the exit says so, and the good one was filed all the same.
    assert!(!run.status.success());
    let outcomes: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let errors = outcomes.iter().filter(|o| o["outcome"] == "error").count();
    assert_eq!((outcomes.len(), errors), (3, 2), "{outcomes:?}");
    let store = open_store(&data).unwrap();
    assert_eq!(store.count().unwrap(), 1);
    // Both wait for their retry; none is lost or left running.
    let counts = store.job_counts().unwrap();
    assert_eq!((counts.queued, counts.running, counts.parked), (2, 0, 0));
}

on_both_backends!(
    three_workers_one_killed_file_every_item_once,
    a_worker_once_stops_when_nothing_is_due_and_keeps_bad_input,
    run_works_off_the_queue_beside_its_sources,
    a_standby_run_takes_over_the_sources_when_the_leader_is_killed,
    leader_standby_and_workers_killed_mid_way_file_a_thousand_items_once,
    a_job_that_cannot_be_read_is_retried_not_a_crash_and_the_rest_goes_on,
);
