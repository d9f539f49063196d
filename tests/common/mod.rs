//! Helpers shared by the integration tests: they drive the real `sportello` binary.
#![allow(dead_code)]

pub mod mail;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

thread_local! {
    /// The PostgreSQL database of the test running on this thread (libtest runs each test on
    /// a thread of its own); None: SQLite in the data dir.
    static DATABASE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Makes the calling test use a fresh PostgreSQL database (a throwaway cluster, see
/// `sportello::store::postgres::testing`) for every `sportello` it runs and every store it
/// opens here; false (the test should return) on a machine without PostgreSQL.
pub fn use_postgres() -> bool {
    match sportello::store::postgres::testing::database() {
        Some(url) => {
            DATABASE.with(|d| *d.borrow_mut() = Some(url));
            true
        }
        None => false,
    }
}

/// A new, empty register for what follows, where a new data dir alone would not give one (on
/// PostgreSQL the register is the database, not the folder).
pub fn new_register() {
    if DATABASE.with(|d| d.borrow().is_some()) {
        assert!(use_postgres());
    }
}

/// Points `command` at this test's register: its PostgreSQL database, or SQLite whatever the
/// environment the tests were started in says.
pub fn with_database(command: &mut Command) -> &mut Command {
    match DATABASE.with(|d| d.borrow().clone()) {
        Some(url) => command.env("SPORTELLO_DATABASE", url),
        None => command.env_remove("SPORTELLO_DATABASE"),
    }
}

/// This test's store for `data`.
pub fn open_store(data: &Path) -> Result<sportello::store::Store, sportello::store::StoreError> {
    let database = match DATABASE.with(|d| d.borrow().clone()) {
        Some(url) => sportello::store::Database::Postgres(url),
        None => sportello::store::Database::Sqlite,
    };
    sportello::store::Store::open_at(&database, data)
}

/// Runs each named test (a function of this file) once per backend: `sqlite::NAME` and
/// `postgres::NAME` (skipped with a message where PostgreSQL is missing).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::$test() })*
        }
        mod postgres {
            $(#[test] fn $test() { if $crate::common::use_postgres() { super::$test() } })*
        }
    };
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sportello"))
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus` beside the project, or None (with a message) in a user's clone.
pub fn corpus() -> Option<PathBuf> {
    let dir = project_dir().join("../shared/corpus");
    if dir.join("MANIFEST.tsv").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared/corpus is not present beside the project");
        None
    }
}

pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {}", self.stderr))
            })
            .collect()
    }
}

pub fn sportello(data: &Path, args: &[&str]) -> Run {
    sportello_env(data, args, &[])
}

/// [`sportello`] with these variables added to its environment.
pub fn sportello_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(project_dir())
        .output()
        .expect("run sportello");
    Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn ok(data: &Path, args: &[&str]) -> Run {
    let run = sportello(data, args);
    assert!(
        run.status.success(),
        "sportello {args:?} failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    run
}

/// A `sportello run` in the background, killed when dropped.
pub struct Runner {
    pub child: Child,
}

impl Runner {
    pub fn start(data: &Path, pipeline: &Path, extra: &[&str]) -> Runner {
        let child = with_database(&mut Command::new(bin()))
            .arg("--data")
            .arg(data)
            .arg("run")
            .arg("--pipeline")
            .arg(pipeline)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sportello run");
        Runner { child }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "runner did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cond()
}

pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.path().is_file() && !e.file_name().to_string_lossy().ends_with(".error.txt")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A pipeline with one folder source at `drop` and the given settle time.
pub fn folder_pipeline(dir: &Path, drop: &Path, channel: &str, settle: f64) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources]]\nkind = \"folder\"\nname = \"drop\"\npath = {:?}\nchannel = \"{channel}\"\nsettle_secs = {settle}\nrescan_secs = 1\nsender_pattern = '^fax_(?P<fax>\\+?\\d+)_'\n",
            drop.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Peak RSS (VmHWM, kB) of a process, while it lives.
pub fn hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether a process still exists (a zombie not yet reaped counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// How many times a ticket (from `export --jsonl`) recorded the same bytes arriving again.
pub fn duplicate_events(ticket: &serde_json::Value) -> usize {
    ticket["events"].as_array().map_or(0, |events| {
        events
            .iter()
            .filter(|e| e["kind"] == "duplicate_received")
            .count()
    })
}

/// A self-signed RSA key and certificate for the AOO's seal, made with OpenSSL in `dir`.
pub fn seal_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("seal.key"), dir.join("seal.crt"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=Comune dell'Aquila AOO_URP seal (test)"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by make) runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (key, cert)
}

/// The status code of an HTTP response's text (0 when it has none).
pub fn http_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
