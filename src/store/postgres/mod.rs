//! The PostgreSQL backend, for offices that outgrow one machine: the register, the work
//! queue and the search index in one PostgreSQL database shared by every machine, originals
//! in a (shared) data dir beside it. One file per concern, as the SQLite backend: `schema`,
//! `filing`, `tickets`, `search`, `dossier`, `outbox`, `learning`, `web`, `queue`.
//!
//! What SQLite gets from having one writer, this backend gets from locks: filing takes a
//! transaction-level advisory lock, so the filing decision (duplicate, thread, new ticket)
//! sees every earlier item filed by any machine, and protocol numbers are counted in a row
//! locked until commit (no gap, no duplicate). Work-queue claims skip rows other workers
//! hold (`FOR UPDATE SKIP LOCKED`).

mod dossier;
mod filing;
mod learning;
mod outbox;
mod queue;
mod schema;
mod search;
#[cfg(any(test, feature = "testdata"))]
pub mod testing;
mod tickets;
mod web;

use super::*;
use crate::domain::Happened;
use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, NoTls, Row, Statement};
pub(in crate::store) use learning::labelled_fingerprint;
pub(in crate::store) use search::index_ticket as reindex;
use std::cell::RefCell;

/// Counters (table `counters`): tickets settled since the model was last trained.
const SETTLED_SINCE_TRAINING: &str = "corrections_since_training";

/// Held (per transaction) while filing: one filing decision at a time across machines.
const FILING_LOCK: i64 = 0x5370_6f72_7465_6c02;

/// Held (per session) by the `run` that leads the sources.
const LEADER_LOCK: i64 = 0x5370_6f72_7465_6c03;

/// The leader's lock as `pg_locks l` shows it, joined to its session `a`: who leads, whether
/// this session still does, whose silence ends it. `$1` is [`LEADER_LOCK`].
const LEADER_HOLDER: &str = "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((l.classid::text::bigint << 32) | l.objid::text::bigint) = $1";

pub struct PgStore {
    url: String,
    /// Every method takes the connection for its own statements only, never across a call
    /// to another method, so the borrow is never held twice.
    conn: RefCell<Conn>,
    /// A standby's session for trying the leader's lock, kept between tries (a standby tries
    /// every second: a new session each time would be a new server process each time).
    lead_session: RefCell<Option<Client>>,
    blobs: BlobStore,
    data_dir: PathBuf,
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> StoreError {
        // The server's own message (a trigger's refusal, a constraint) is what a person needs.
        match e.as_db_error() {
            Some(db) => StoreError::Database(db.message().to_string()),
            None => StoreError::Database(e.to_string()),
        }
    }
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_pass = &url[scheme + 3..at];
            let user = user_pass.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`) and brings its
    /// schema up to date; originals go to `data_dir` (a shared mount when several machines
    /// file).
    pub fn open(url: &str, data_dir: &Path) -> Result<PgStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            context: format!("cannot create data dir {}", data_dir.display()),
            source,
        })?;
        let mut client = connect(url)?;
        schema::migrate(&mut client, url)?;
        Ok(PgStore {
            url: url.to_string(),
            conn: RefCell::new(Conn {
                client,
                statements: HashMap::new(),
            }),
            lead_session: RefCell::new(None),
            blobs: BlobStore::new(data_dir),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Leadership of the sources: a session-level advisory lock on a connection of its own,
    /// held as long as that connection lives. When the leader's process ends, however it
    /// ends, its connection closes and the server releases the lock. A machine that vanishes
    /// closes nothing: the server notices by TCP keepalives, which this session asks for
    /// every 5 s after 10 s of silence (the server's default waits two hours), so another
    /// leader follows within about half a minute. A leader that is there but silent (a
    /// stopped process, a stalled machine) is ended after [`LEADER_SILENCE_SECS`]. None while
    /// another process leads.
    pub fn try_lead(&self) -> Result<Option<PgLeadership>> {
        if let Some(kept) = self.lead_session.take().filter(|c| !c.is_closed()) {
            // A kept session the server dropped unnoticed fails here: a new one is tried.
            if let Ok(led) = self.try_lead_on(kept) {
                return Ok(led);
            }
        }
        let mut config: ::postgres::Config = self
            .url
            .parse()
            .map_err(|e| StoreError::Database(format!("{}: {e}", redacted(&self.url))))?;
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(10))
            .application_name(&format!("sportello leader {}", std::process::id()));
        let mut client = config.connect(NoTls)?;
        client.batch_execute(
            "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
        )?;
        self.try_lead_on(client)
    }

    /// One try for the leader's lock on `client`, which is kept for the next try if it fails.
    fn try_lead_on(&self, mut client: Client) -> Result<Option<PgLeadership>> {
        let r = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?;
        if col::<bool>(&r, 0)? {
            return Ok(Some(PgLeadership { client }));
        }
        // A leader whose session said nothing for LEADER_SILENCE_SECS is hung (stopped, or
        // its machine stalled while the kernel still answers keepalives): its session is
        // ended, which releases the lock for the next try. A leader that wakes finds its
        // session gone at its next heartbeat and stops its sources.
        let ended = client.query_opt(
            &format!(
                "SELECT pg_terminate_backend(l.pid) {LEADER_HOLDER} AND a.state = 'idle'
                   AND a.state_change < clock_timestamp() - make_interval(secs => $2)"
            ),
            &[&LEADER_LOCK, &(LEADER_SILENCE_SECS as f64)],
        )?;
        if let Some(r) = ended {
            if col::<bool>(&r, 0)? {
                tracing::warn!(
                    "the leader of the sources was silent for {LEADER_SILENCE_SECS} s: its session was ended"
                );
            }
        }
        self.lead_session.replace(Some(client));
        Ok(None)
    }

    /// The process that leads the sources now, if one does: the holder of the advisory lock,
    /// by the name its connection gave (`sportello leader PID`; a process id of the machine
    /// it runs on).
    pub fn leader(&self) -> Result<Option<u32>> {
        let r = self.read()?.query_opt(
            &format!("SELECT a.application_name {LEADER_HOLDER}"),
            &[&LEADER_LOCK],
        )?;
        Ok(r.map(|r| col::<String>(&r, 0))
            .transpose()?
            .and_then(|name| name.rsplit(' ').next()?.parse().ok()))
    }

    /// For bulk loads into a fresh store (imports, benchmarks): this session's commits no
    /// longer wait for the disk. Never for intake.
    pub fn relax_durability_for_bulk_load(&self) -> Result<()> {
        self.read()?.batch_execute("SET synchronous_commit = off")?;
        Ok(())
    }

    /// Refreshes the planner's statistics (after a bulk load or a migration: the words'
    /// frequencies decide between the search index and a walk of the newest tickets).
    pub fn analyze(&self) -> Result<()> {
        self.read()?.batch_execute("ANALYZE")?;
        Ok(())
    }

    /// Runs `f` in one transaction, committed when it returns Ok.
    fn write<T>(&mut self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        let mut conn = self.read()?;
        let Conn { client, statements } = &mut *conn;
        let mut tx = client.transaction()?;
        let out = f(&mut InTransaction {
            tx: &mut tx,
            statements,
        })?;
        tx.commit()?;
        Ok(out)
    }

    /// The connection, for the migration's bulk copy.
    pub(in crate::store) fn connection(&self) -> Result<std::cell::RefMut<'_, Client>> {
        Ok(std::cell::RefMut::map(self.read()?, |c| &mut c.client))
    }

    /// The connection, connected again first when the server dropped it (a restart, a
    /// failover, an idle timeout): the statement that met the drop failed and was reported;
    /// the store goes on with the next. Its prepared statements went with the old session.
    fn read(&self) -> Result<std::cell::RefMut<'_, Conn>> {
        let mut conn = self.conn.borrow_mut();
        if conn.client.is_closed() {
            tracing::warn!(
                "the connection to {} was lost; connecting again",
                redacted(&self.url)
            );
            conn.client = connect(&self.url)?;
            conn.statements.clear();
        }
        Ok(conn)
    }
}

/// Held by the `run` that leads the sources; dropping it closes its connection, and the
/// lock with it.
pub struct PgLeadership {
    client: Client,
}

/// How long a leader's session may say nothing before a standby ends it. The leader's
/// heartbeat ([`PgLeadership::check`]) speaks every [`LEADER_HEARTBEAT_SECS`].
pub const LEADER_SILENCE_SECS: u64 = 20;
pub const LEADER_HEARTBEAT_SECS: u64 = 2;

impl PgLeadership {
    /// The heartbeat: whether this session still holds the lock. An error (the session was
    /// ended by a standby that found this leader silent, or the server went away) means the
    /// lead is lost and the sources must stop.
    pub fn check(&mut self) -> Result<()> {
        let r = self.client.query_one(
            &format!("SELECT COUNT(*) {LEADER_HOLDER} AND l.pid = pg_backend_pid()"),
            &[&LEADER_LOCK],
        )?;
        match col::<i64>(&r, 0)? {
            0 => Err(StoreError::Database(
                "this session no longer holds the lead".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for PgLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgLeadership")
    }
}

/// A connection with the statements it prepared: each SQL text is parsed and planned by the
/// server once per connection, not once per use (which doubled the round trips of filing).
pub(super) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A transaction of a [`Conn`], using and filling its statements.
struct InTransaction<'a, 'b> {
    tx: &'a mut ::postgres::Transaction<'b>,
    statements: &'a mut HashMap<String, Statement>,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What the backend's SQL runs on: a connection or one of its transactions, statements
/// prepared once (see [`Conn`]).
pub(super) trait Sql {
    fn statement(&mut self, sql: &str) -> Result<Statement>;
    fn client(&mut self) -> &mut dyn ClientLike;

    fn query(&mut self, sql: &str, params: Params) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.client().query_stmt(&s, params)?)
    }

    fn query_one(&mut self, sql: &str, params: Params) -> Result<Row> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(StoreError::Database(format!(
                "expected one row, got {n}: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            ))),
        }
    }

    fn query_opt(&mut self, sql: &str, params: Params) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        Ok((!rows.is_empty()).then(|| rows.remove(0)))
    }

    fn execute(&mut self, sql: &str, params: Params) -> Result<u64> {
        let s = self.statement(sql)?;
        Ok(self.client().execute_stmt(&s, params)?)
    }

    fn batch_execute(&mut self, sql: &str) -> Result<()> {
        Ok(self.client().batch(sql)?)
    }
}

/// The calls of `postgres`'s `GenericClient` this backend uses, object-safe.
pub(super) trait ClientLike {
    fn query_stmt(
        &mut self,
        s: &Statement,
        params: Params,
    ) -> std::result::Result<Vec<Row>, ::postgres::Error>;
    fn execute_stmt(
        &mut self,
        s: &Statement,
        params: Params,
    ) -> std::result::Result<u64, ::postgres::Error>;
    fn prepare_sql(&mut self, sql: &str) -> std::result::Result<Statement, ::postgres::Error>;
    fn batch(&mut self, sql: &str) -> std::result::Result<(), ::postgres::Error>;
}

impl<C: GenericClient> ClientLike for C {
    fn query_stmt(
        &mut self,
        s: &Statement,
        params: Params,
    ) -> std::result::Result<Vec<Row>, ::postgres::Error> {
        GenericClient::query(self, s, params)
    }
    fn execute_stmt(
        &mut self,
        s: &Statement,
        params: Params,
    ) -> std::result::Result<u64, ::postgres::Error> {
        GenericClient::execute(self, s, params)
    }
    fn prepare_sql(&mut self, sql: &str) -> std::result::Result<Statement, ::postgres::Error> {
        GenericClient::prepare(self, sql)
    }
    fn batch(&mut self, sql: &str) -> std::result::Result<(), ::postgres::Error> {
        GenericClient::batch_execute(self, sql)
    }
}

/// Statements kept per connection, at most this many (texts built from filters vary).
const STATEMENTS_KEPT: usize = 256;

fn cached(
    statements: &mut HashMap<String, Statement>,
    client: &mut dyn ClientLike,
    sql: &str,
) -> Result<Statement> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare_sql(sql)?;
    if statements.len() >= STATEMENTS_KEPT {
        statements.clear();
    }
    statements.insert(sql.to_string(), s.clone());
    Ok(s)
}

impl Sql for Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        cached(&mut self.statements, &mut self.client, sql)
    }
    fn client(&mut self) -> &mut dyn ClientLike {
        &mut self.client
    }
}

/// A bare transaction (the migration's): statements prepared at each use.
impl Sql for ::postgres::Transaction<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        Ok(self.prepare_sql(sql)?)
    }
    fn client(&mut self) -> &mut dyn ClientLike {
        self
    }
}

impl Sql for InTransaction<'_, '_> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        cached(self.statements, self.tx, sql)
    }
    fn client(&mut self) -> &mut dyn ClientLike {
        self.tx
    }
}

fn connect(url: &str) -> Result<Client> {
    Client::connect(url, NoTls)
        .map_err(|e| StoreError::Database(format!("cannot connect to {}: {e}", redacted(url))))
}

/// A row's column, with the store's error (never a panic on a value of another type).
fn col<'a, T: ::postgres::types::FromSql<'a>>(r: &'a ::postgres::Row, i: usize) -> Result<T> {
    Ok(r.try_get(i)?)
}

fn parse_or_corrupt<T: std::str::FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(e.to_string()))
}

/// The ticket id and canonical code for what a person typed.
fn ticket_id(c: &mut dyn Sql, code_input: &str) -> Result<(i64, String)> {
    let code = code::parse(code_input)?;
    match c.query_opt("SELECT id FROM tickets WHERE code = $1", &[&code])? {
        Some(r) => Ok((col(&r, 0)?, code)),
        None => Err(StoreError::NotFound(code)),
    }
}

/// Adds one to a row of `counters` (created at 1) and returns its new value.
fn bump_counter(c: &mut dyn Sql, name: &str) -> Result<i64> {
    let r = c.query_one(
        "INSERT INTO counters(name, value) VALUES ($1, 1)
         ON CONFLICT(name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        &[&name],
    )?;
    col(&r, 0)
}

/// An event the pipeline itself records (actor `sportello`).
fn system_event(c: &mut dyn Sql, ticket_id: i64, at: &str, happened: &Happened) -> Result<()> {
    insert_event(c, ticket_id, at, "sportello", happened)
}

fn insert_event(
    c: &mut dyn Sql,
    ticket_id: i64,
    at: &str,
    actor: &str,
    happened: &Happened,
) -> Result<()> {
    c.execute(
        "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &ticket_id,
            &at,
            &actor,
            &happened.kind().as_str(),
            &happened.detail_text(),
        ],
    )?;
    Ok(())
}

impl Crashes for PgStore {
    fn parse_crashes(&self) -> Result<HashMap<String, (u32, String)>> {
        let rows = self
            .read()?
            .query("SELECT sha256, crashes, reason FROM parse_crashes", &[])?;
        rows.iter()
            .map(|r| Ok((col(r, 0)?, (col::<i64>(r, 1)? as u32, col(r, 2)?))))
            .collect()
    }

    fn record_parse_crash(&mut self, sha256: &str, reason: &str) -> Result<u32> {
        self.write(|tx| {
            let r = tx.query_one(
                "INSERT INTO parse_crashes (sha256, crashes, reason, updated_at) VALUES ($1, 1, $2, $3)
                 ON CONFLICT(sha256) DO UPDATE SET crashes = parse_crashes.crashes + 1, reason = $2,
                     updated_at = $3
                 RETURNING crashes",
                &[&sha256, &reason, &now_rfc3339()],
            )?;
            Ok(col::<i64>(&r, 0)? as u32)
        })
    }
}

impl Register for PgStore {
    fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{acknowledged, ticket};

    fn store() -> Option<(PgStore, String, tempfile::TempDir)> {
        let url = testing::database()?;
        let dir = tempfile::tempdir().unwrap();
        Some((PgStore::open(&url, dir.path()).unwrap(), url, dir))
    }

    /// Four connections (as four machines would) file 200 items at once, some of them the
    /// same bytes: every item one ticket or one duplicate, numbers 1…N with no gap and no
    /// duplicate.
    #[test]
    fn machines_filing_at_once_share_one_gapless_numbering() {
        let Some((first, url, dir)) = store() else {
            return;
        };
        drop(first);
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let (url, data) = (url.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || {
                    // A second opening migrates nothing and waits for nobody.
                    let mut store = PgStore::open(&url, &data).unwrap();
                    let mut filed = Vec::new();
                    for i in 0..50 {
                        // Items 0..10 of every worker are the same bytes: one ticket each.
                        let n = if i < 10 { i } else { 1000 + w * 100 + i };
                        let mut t = ticket(n, &format!("c{n}@x.it"), "pratica Q");
                        t.intake.source = format!("w{w}");
                        filed.push(store.file(&t, "URP").unwrap());
                    }
                    filed
                })
            })
            .collect();
        let filed: Vec<Filed> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let created = filed
            .iter()
            .filter(|f| matches!(f, Filed::Created { .. }))
            .count();
        assert_eq!(created, 10 + 4 * 40);
        let store = PgStore::open(&url, dir.path()).unwrap();
        let mut numbers: Vec<i64> = store
            .read()
            .unwrap()
            .query("SELECT protocol_number FROM tickets ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        numbers.dedup();
        assert_eq!(numbers, (1..=created as i64).collect::<Vec<_>>());
    }

    /// As on SQLite, the schema itself keeps a registration as written and its history.
    #[test]
    fn registration_fields_and_events_are_written_once() {
        let Some((mut store, _, _dir)) = store() else {
            return;
        };
        let code = store
            .file(&ticket(0, "a@x.it", "pratica R"), "URP")
            .unwrap()
            .code()
            .to_string();
        for sql in [
            "UPDATE tickets SET subject = 'altro'",
            "UPDATE tickets SET protocol_number = 7",
            "DELETE FROM tickets",
            "UPDATE events SET actor = 'x'",
            "DELETE FROM events",
        ] {
            let err = store.read().unwrap().execute(sql, &[]).unwrap_err();
            let err = err.to_string();
            assert!(
                err.contains("written once")
                    || err.contains("never deleted")
                    || err.contains("append-only"),
                "{sql}: {err}"
            );
        }
        store.annul(&code, "oggetto errato", "", "admin").unwrap();
        let err = store
            .read()
            .unwrap()
            .execute("UPDATE tickets SET annul_reason = 'altro'", &[])
            .unwrap_err();
        assert!(err.to_string().contains("annulment is written once"));
        assert!(store.route(&code, "Servizio gas", "anna").unwrap());
        assert!(store.set_status(&code, Status::Closed, "anna").unwrap());
    }

    /// See the check: PostgreSQL runs the old filing's statements.
    #[test]
    fn a_filing_classified_as_before_is_read_as_its_filing() {
        let Some((mut store, _, _dir)) = store() else {
            return;
        };
        crate::store::conformance::a_filing_classified_as_before_is_read_as_its_filing(
            &mut store,
            |s, sql| s.read().unwrap().batch_execute(sql).unwrap(),
        );
    }

    /// The daily register's query of a day's changes can read them through their partial
    /// index (scans are forbidden here: on a nearly empty table the planner prefers one).
    #[test]
    fn the_registers_changes_can_be_read_through_their_index() {
        let Some((store, _, _dir)) = store() else {
            return;
        };
        let mut conn = store.read().unwrap();
        // This throwaway store's connection only.
        conn.batch_execute("SET enable_seqscan = off").unwrap();
        let plan: Vec<String> = conn
            .query(
                &format!("EXPLAIN {}", tickets::REGISTER_CHANGES),
                &[&"2026-01-01", &"2026-01-02"],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            plan.iter().any(|p| p.contains("events_register_changes")),
            "{plan:#?}"
        );
    }

    /// A message another machine's sender claimed is left to that machine, whatever process
    /// ids say here; one claimed by a dead process of this machine is settled.
    #[test]
    fn only_this_machines_dead_senders_are_settled() {
        let Some((mut store, _, _dir)) = store() else {
            return;
        };
        for n in 0..2 {
            let t = acknowledged(n, &format!("c{n}@example.it"), &format!("m{n}@example.it"));
            store.file(&t, "URP").unwrap();
        }
        for item in store.outbox_due(Via::Email, 10, true).unwrap() {
            assert!(store.outbox_claim(&item).unwrap());
        }
        // Both claims as a dead process's: one on this machine, one on another.
        store
            .read()
            .unwrap()
            .execute("UPDATE outbox SET sending_by = 4194307", &[])
            .unwrap();
        store
            .read()
            .unwrap()
            .execute(
                "UPDATE outbox SET sending_host = 'altra-macchina'
                 WHERE id = (SELECT MIN(id) FROM outbox)",
                &[],
            )
            .unwrap();
        assert_eq!(store.outbox_settle_orphans(&|_| false).unwrap(), 1);
        assert_eq!(
            store.outbox_pending().unwrap(),
            1,
            "the other machine's claim stands"
        );
        // Until it is far older than any sending takes: that machine is gone, and this one
        // settles its claim, naming it.
        store
            .read()
            .unwrap()
            .execute(
                "UPDATE outbox SET sending_since = '2026-01-01T00:00:00Z'
                 WHERE sending_host = 'altra-macchina'",
                &[],
            )
            .unwrap();
        assert_eq!(store.outbox_settle_orphans(&|_| true).unwrap(), 1);
        assert_eq!(store.outbox_pending().unwrap(), 0);
        let r = store
            .read()
            .unwrap()
            .query_one(
                "SELECT uncertain FROM outbox WHERE sending_host = 'altra-macchina'",
                &[],
            )
            .unwrap();
        let reason: String = col(&r, 0).unwrap();
        assert!(reason.contains("(altra-macchina)"), "{reason}");
    }

    /// A standby keeps its session between tries for the lead; when the server dropped it
    /// (a restart), the next try opens another instead of failing.
    #[test]
    fn a_standby_whose_session_was_dropped_still_takes_the_lead() {
        let Some((first, url, dir)) = store() else {
            return;
        };
        let second = PgStore::open(&url, dir.path()).unwrap();
        let lead = first.try_lead().unwrap().expect("the first leads");
        assert!(second.try_lead().unwrap().is_none());
        let kept: i32 = second
            .lead_session
            .borrow_mut()
            .as_mut()
            .expect("the standby keeps its session")
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        end_session(&url, kept);
        drop(lead);
        assert!(wait_for_lead(&second), "the standby did not take the lead");
    }

    /// Ends the server session `pid` as a restart would, and waits until it is gone
    /// (termination is a signal).
    fn end_session(url: &str, pid: i32) {
        let mut admin = Client::connect(url, NoTls).unwrap();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        while admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .is_some()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Tries for the lead for up to ten seconds (the released lock is freed by the server
    /// when the old session's end reaches it).
    fn wait_for_lead(store: &PgStore) -> bool {
        for _ in 0..200 {
            match store.try_lead() {
                Ok(Some(_)) => return true,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
                Err(e) => panic!("a try for the lead failed: {e}"),
            }
        }
        false
    }

    /// The server drops the store's session (a restart, a failover): the call that meets the
    /// drop fails with a message, and the store connects again for the next one.
    #[test]
    fn a_dropped_connection_is_opened_again() {
        let Some((mut store, url, _dir)) = store() else {
            return;
        };
        store
            .file(&ticket(0, "a@x.it", "pratica D"), "URP")
            .unwrap();
        let pid: i32 = store
            .read()
            .unwrap()
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        end_session(&url, pid);
        let first = store.count();
        if let Err(e) = &first {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(store.count().unwrap(), 1);
        store
            .file(&ticket(1, "b@x.it", "pratica D"), "URP")
            .unwrap();
        assert_eq!(store.count().unwrap(), 2);
    }

    #[test]
    fn a_password_in_the_url_is_not_repeated() {
        assert_eq!(
            redacted("postgres://sportello:s3cret@db.example:5432/register"),
            "postgres://sportello@db.example:5432/register"
        );
        assert_eq!(redacted("postgres://db/register"), "postgres://db/register");
    }
}
