//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` from Debian's package, in a
//! temp dir, on a free loopback port, started once per test process and stopped (its files
//! removed) by a watchdog when that process ends, however it ends. Each test gets a database
//! of its own. `SPORTELLO_TEST_POSTGRES=postgres://USER@HOST:PORT` uses a running server
//! instead; `SPORTELLO_REQUIRE_POSTGRES=1` (set by `make test`) makes a missing PostgreSQL a
//! failure instead of a skip. The cluster does not sync to disk (tests need no durability)
//! unless `SPORTELLO_PG_FSYNC=on` (the benchmarks, which compare it with a durable SQLite).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database, or None (with the reason printed) when this machine has
/// no PostgreSQL and none was required.
pub fn database() -> Option<String> {
    let server = SERVER.get_or_init(|| match std::env::var("SPORTELLO_TEST_POSTGRES") {
        Ok(url) => Ok(url.trim_end_matches('/').to_string()),
        Err(_) => start_cluster(),
    });
    let base = match server {
        Ok(base) => base,
        Err(why) if std::env::var_os("SPORTELLO_REQUIRE_POSTGRES").is_some() => {
            panic!("PostgreSQL is required (SPORTELLO_REQUIRE_POSTGRES) but {why}")
        }
        Err(why) => {
            eprintln!("skipping the PostgreSQL backend: {why}");
            return None;
        }
    };
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = ::postgres::Client::connect(&format!("{base}/postgres"), ::postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the test server {base}: {e:?}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    Some(format!("{base}/{name}"))
}

/// The newest installed server's binaries.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// As the `postgres` system user when we are root (`initdb` refuses to run as root).
fn as_server_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_cluster() -> Result<String, String> {
    let bin = binaries().ok_or("no PostgreSQL server is installed (apt-get install postgresql)")?;
    let dir = tempfile::Builder::new()
        .prefix("sportello-pg-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?
        .keep();
    let data = dir.join("data");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:").arg(&dir);
                c
            },
            "chown",
        )?;
    }
    let mut initdb = as_server_user(&bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]);
    run(initdb, "initdb")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let mut pg_ctl = as_server_user(&bin.join("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            dir.display(),
            if std::env::var("SPORTELLO_PG_FSYNC").as_deref() == Ok("on") {
                "on"
            } else {
                "off"
            }
        ))
        .args(["-w", "start"]);
    run(pg_ctl, "pg_ctl start")?;
    // Stops the server and removes its files once this process is gone.
    let watchdog = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; '{}' -D '{}' -m immediate stop; rm -rf '{}'",
        bin.join("pg_ctl").display(),
        data.display(),
        dir.display(),
        pid = std::process::id()
    );
    let mut sh = as_server_user(Path::new("/bin/sh"));
    sh.args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}
