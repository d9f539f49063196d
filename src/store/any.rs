//! The store every caller holds: SQLite (the embedded default) or PostgreSQL, chosen by
//! `SPORTELLO_DATABASE` when a store is opened. Each concern is passed to the backend
//! unchanged; what only one backend can do (SQLite's memory map, bulk-load durability) is a
//! no-op or an error on the other.
//!
//! The choice is the process's environment, not an argument, because stores are opened in
//! many places (the filing thread, worker processes, the web app's threads, retraining):
//! `--database` and a pipeline's `database =` set it once at start-up, and child processes
//! inherit it.

use super::postgres::PgStore;
use super::*;
use crate::model::Ticket;

/// Names the PostgreSQL database every command uses (`postgres://USER@HOST:PORT/DB`); unset
/// or empty: SQLite in the data dir.
pub const DATABASE_ENV: &str = "SPORTELLO_DATABASE";

pub enum Store {
    Sqlite(sqlite::Store),
    Postgres(Box<PgStore>),
}

/// Where the register lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `sportello.db` in the data dir.
    Sqlite,
    Postgres(String),
}

impl Database {
    /// Reads a `--database` value, `SPORTELLO_DATABASE` or a pipeline's `database`: a
    /// `postgres://` or `postgresql://` URL, or `sqlite` (empty: sqlite).
    pub fn parse(value: &str) -> std::result::Result<Database, String> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("sqlite") {
            Ok(Database::Sqlite)
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(Database::Postgres(value.to_string()))
        } else {
            Err(format!(
                "unsupported database `{}`: give a postgres://USER@HOST:PORT/DB URL, or sqlite",
                postgres::redacted(value)
            ))
        }
    }

    /// The one this process was told to use (see [`DATABASE_ENV`]).
    pub fn from_env() -> Result<Database> {
        match std::env::var(DATABASE_ENV) {
            Ok(v) => Database::parse(&v).map_err(StoreError::Conflict),
            Err(_) => Ok(Database::Sqlite),
        }
    }
}

/// Never the password of a URL: pipelines are printed in logs.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("Sqlite"),
            Database::Postgres(url) => write!(f, "Postgres({})", postgres::redacted(url)),
        }
    }
}

macro_rules! on_backend {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens the register this process uses (see [`Database::from_env`]), originals in
    /// `data_dir`; migrations run on open.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Store::open_at(&Database::from_env()?, data_dir)
    }

    pub fn open_at(database: &Database, data_dir: &Path) -> Result<Store> {
        Ok(match database {
            Database::Sqlite => Store::Sqlite(sqlite::Store::open(data_dir)?),
            Database::Postgres(url) => Store::Postgres(Box::new(PgStore::open(url, data_dir)?)),
        })
    }

    /// Which backend, for messages and reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }

    /// For a connection serving many concurrent reads (the web app); SQLite only.
    pub fn map_for_reads(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.map_for_reads(),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// For bulk loads into a fresh store (imports, benchmarks): commits no longer wait for
    /// the disk. Never for intake.
    pub fn relax_durability_for_bulk_load(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.relax_durability_for_bulk_load(),
            Store::Postgres(s) => s.relax_durability_for_bulk_load(),
        }
    }

    /// Leadership of the sources: one `run` at a time watches folders and mailboxes, another
    /// takes over when the leader's process (or, on PostgreSQL, its connection) ends.
    pub fn try_lead(&self) -> Result<Option<Leadership>> {
        Ok(match self {
            Store::Sqlite(s) => s.try_lead()?.map(Leadership::File),
            Store::Postgres(s) => s.try_lead()?.map(|l| Leadership::Postgres(Box::new(l))),
        })
    }

    /// The process that leads the sources now, if one does (for an admin, and the tests).
    pub fn leader(&self) -> Result<Option<u32>> {
        on_backend!(self, s => s.leader())
    }

    /// The bare index query, for the benchmark's floor; SQLite only.
    pub fn bare_fts_ids(
        &self,
        query: &crate::search::SearchQuery,
        limit: usize,
    ) -> Result<Vec<i64>> {
        match self {
            Store::Sqlite(s) => s.bare_fts_ids(query, limit),
            Store::Postgres(_) => Err(StoreError::Conflict(
                "the bare index query is measured on SQLite only".into(),
            )),
        }
    }
}

/// Held by the `run` that leads the sources; dropping it lets another take over.
#[derive(Debug)]
pub enum Leadership {
    /// A lock on `leader.lock` in the data dir.
    File(sqlite::Leadership),
    /// A session-level advisory lock on a connection of its own.
    Postgres(Box<postgres::PgLeadership>),
}

impl Leadership {
    /// The leader's heartbeat, every [`Leadership::HEARTBEAT`]: an error means the lead is
    /// lost (another process took it) and the sources must stop. A file lock lasts as long
    /// as the process.
    pub fn check(&mut self) -> Result<()> {
        match self {
            Leadership::File(_) => Ok(()),
            Leadership::Postgres(l) => l.check(),
        }
    }

    pub const HEARTBEAT: std::time::Duration =
        std::time::Duration::from_secs(postgres::LEADER_HEARTBEAT_SECS);
}

impl Register for Store {
    fn blobs(&self) -> &BlobStore {
        on_backend!(self, s => s.blobs())
    }

    fn data_dir(&self) -> &Path {
        on_backend!(self, s => s.data_dir())
    }
}

impl Filing for Store {
    fn file(&mut self, new: &NewTicket, code_prefix: &str) -> Result<Filed> {
        on_backend!(self, s => s.file(new, code_prefix))
    }

    fn file_batch(&mut self, items: &[&NewTicket], code_prefix: &str) -> Vec<Result<Filed>> {
        on_backend!(self, s => s.file_batch(items, code_prefix))
    }
}

impl Crashes for Store {
    fn parse_crashes(&self) -> Result<HashMap<String, (u32, String)>> {
        on_backend!(self, s => s.parse_crashes())
    }

    fn record_parse_crash(&mut self, sha256: &str, reason: &str) -> Result<u32> {
        on_backend!(self, s => s.record_parse_crash(sha256, reason))
    }
}

impl Tickets for Store {
    fn ticket(&self, code_input: &str) -> Result<Ticket> {
        on_backend!(self, s => s.ticket(code_input))
    }

    fn page_texts(&self, code_input: &str, ord: usize) -> Result<Vec<PageText>> {
        on_backend!(self, s => s.page_texts(code_input, ord))
    }

    fn list(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        on_backend!(self, s => s.list(filter))
    }

    fn set_status(&mut self, code_input: &str, status: Status, actor: &str) -> Result<bool> {
        on_backend!(self, s => s.set_status(code_input, status, actor))
    }

    fn add_note(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        on_backend!(self, s => s.add_note(code_input, text, actor))
    }

    fn set_summary(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        on_backend!(self, s => s.set_summary(code_input, text, actor))
    }

    fn for_each_ticket(
        &self,
        each: &mut dyn FnMut(Ticket) -> std::io::Result<()>,
    ) -> Result<usize> {
        on_backend!(self, s => s.for_each_ticket(each))
    }

    fn count(&self) -> Result<u64> {
        on_backend!(self, s => s.count())
    }

    fn route(&mut self, code_input: &str, office: &str, actor: &str) -> Result<bool> {
        on_backend!(self, s => s.route(code_input, office, actor))
    }

    fn annul(&mut self, code_input: &str, reason: &str, act: &str, actor: &str) -> Result<()> {
        on_backend!(self, s => s.annul(code_input, reason, act, actor))
    }

    fn mark_duplicate(&mut self, code_input: &str, of_input: &str, actor: &str) -> Result<()> {
        on_backend!(self, s => s.mark_duplicate(code_input, of_input, actor))
    }

    fn registrations_between(&self, from: &str, until: &str) -> Result<Vec<RegisterEntry>> {
        on_backend!(self, s => s.registrations_between(from, until))
    }

    fn register_changes_between(&self, from: &str, until: &str) -> Result<Vec<RegisterChange>> {
        on_backend!(self, s => s.register_changes_between(from, until))
    }
}

impl Overview for Store {
    fn track(&self, code_input: &str) -> Result<TrackInfo> {
        on_backend!(self, s => s.track(code_input))
    }

    fn document(&self, code_input: &str, ord: usize) -> Result<(Document, std::path::PathBuf)> {
        on_backend!(self, s => s.document(code_input, ord))
    }

    fn queue(
        &self,
        filter: &TicketFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TicketSummary>> {
        on_backend!(self, s => s.queue(filter, offset, limit))
    }

    fn count_matching(&self, filter: &TicketFilter) -> Result<u64> {
        on_backend!(self, s => s.count_matching(filter))
    }

    fn queue_counts(&self) -> Result<QueueCounts> {
        on_backend!(self, s => s.queue_counts())
    }

    fn offices(&self) -> Result<Vec<String>> {
        on_backend!(self, s => s.offices())
    }

    fn stats(&self, since: Option<&str>, until: Option<&str>) -> Result<Stats> {
        on_backend!(self, s => s.stats(since, until))
    }

    fn recent_requests(&self, limit: usize) -> Result<Vec<RecentRequest>> {
        on_backend!(self, s => s.recent_requests(limit))
    }
}

impl Search for Store {
    fn search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<Vec<SearchHit>> {
        on_backend!(self, s => s.search(query, filter))
    }
}

impl Dossiers for Store {
    fn entities(&self, code_input: &str) -> Result<Vec<Entity>> {
        on_backend!(self, s => s.entities(code_input))
    }

    fn dossier(&self, code_input: &str) -> Result<Vec<DossierLink>> {
        on_backend!(self, s => s.dossier(code_input))
    }

    fn dossier_by(&self, kind: EntityKind, value: &str) -> Result<Vec<DossierLink>> {
        on_backend!(self, s => s.dossier_by(kind, value))
    }

    fn set_link(&mut self, a: &str, b: &str, linked: bool, actor: &str) -> Result<()> {
        on_backend!(self, s => s.set_link(a, b, linked, actor))
    }
}

impl Outbox for Store {
    fn outbox_due(&self, via: Via, limit: usize, all: bool) -> Result<Vec<OutboxItem>> {
        on_backend!(self, s => s.outbox_due(via, limit, all))
    }

    fn outbox_claim(&mut self, item: &OutboxItem) -> Result<bool> {
        on_backend!(self, s => s.outbox_claim(item))
    }

    fn outbox_settle_orphans(&mut self, alive: &dyn Fn(u32) -> bool) -> Result<usize> {
        on_backend!(self, s => s.outbox_settle_orphans(alive))
    }

    fn outbox_pending(&self) -> Result<i64> {
        on_backend!(self, s => s.outbox_pending())
    }

    fn outbox_result(
        &mut self,
        item: &OutboxItem,
        error: Option<&str>,
        retry_after: i64,
    ) -> Result<()> {
        on_backend!(self, s => s.outbox_result(item, error, retry_after))
    }

    fn queue_reply(
        &mut self,
        code_input: &str,
        subject: &str,
        body: &str,
        actor: &str,
        domain: &str,
    ) -> Result<String> {
        on_backend!(self, s => s.queue_reply(code_input, subject, body, actor, domain))
    }
}

impl Learning for Store {
    fn reclassify(
        &mut self,
        code_input: &str,
        topic: &str,
        office: Option<&str>,
        actor: &str,
    ) -> Result<u64> {
        on_backend!(self, s => s.reclassify(code_input, topic, office, actor))
    }

    fn settled_since_training(&self) -> Result<u64> {
        on_backend!(self, s => s.settled_since_training())
    }

    fn import_labelled(&mut self, examples: &[Example]) -> Result<usize> {
        on_backend!(self, s => s.import_labelled(examples))
    }

    fn training_examples(&self) -> Result<Vec<Example>> {
        on_backend!(self, s => s.training_examples())
    }

    fn settled_answers(&self) -> Result<Vec<(f32, bool)>> {
        on_backend!(self, s => s.settled_answers())
    }

    fn has_training_examples(&self) -> Result<bool> {
        on_backend!(self, s => s.has_training_examples())
    }

    fn trained(&mut self, before: u64) -> Result<()> {
        on_backend!(self, s => s.trained(before))
    }

    fn unsettled_topics(&self) -> Result<Vec<Unsettled>> {
        on_backend!(self, s => s.unsettled_topics())
    }

    fn apply_classification(
        &mut self,
        ticket_id: i64,
        c: &crate::classify::Classification,
        actor: &str,
    ) -> Result<bool> {
        on_backend!(self, s => s.apply_classification(ticket_id, c, actor))
    }
}

impl Accounts for Store {
    fn add_user(&mut self, name: &str, role: Role, password_hash: &str) -> Result<()> {
        on_backend!(self, s => s.add_user(name, role, password_hash))
    }

    fn user_credentials(&self, name: &str) -> Result<Option<(User, String)>> {
        on_backend!(self, s => s.user_credentials(name))
    }

    fn users(&self) -> Result<Vec<User>> {
        on_backend!(self, s => s.users())
    }

    fn create_session(
        &mut self,
        user_id: i64,
        token_sha256: &str,
        csrf: &str,
        hours: i64,
    ) -> Result<()> {
        on_backend!(self, s => s.create_session(user_id, token_sha256, csrf, hours))
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>> {
        on_backend!(self, s => s.session(token_sha256))
    }

    fn end_session(&mut self, token_sha256: &str) -> Result<()> {
        on_backend!(self, s => s.end_session(token_sha256))
    }

    fn login_failures(&self, subject: &str) -> Result<(u32, i64)> {
        on_backend!(self, s => s.login_failures(subject))
    }

    fn record_login_failure(&mut self, subject: &str) -> Result<u32> {
        on_backend!(self, s => s.record_login_failure(subject))
    }

    fn clear_login_failures(&mut self, subject: &str) -> Result<()> {
        on_backend!(self, s => s.clear_login_failures(subject))
    }

    fn login_failure_list(&self) -> Result<Vec<(String, u32, String)>> {
        on_backend!(self, s => s.login_failure_list())
    }

    fn count_request(
        &mut self,
        subject: &str,
        now: i64,
        window_secs: i64,
        limit: u32,
    ) -> Result<bool> {
        on_backend!(self, s => s.count_request(subject, now, window_secs, limit))
    }

    fn add_api_token(&mut self, name: &str, role: Role, token_sha256: &str) -> Result<()> {
        on_backend!(self, s => s.add_api_token(name, role, token_sha256))
    }

    fn api_token(&self, token_sha256: &str) -> Result<Option<(String, Role)>> {
        on_backend!(self, s => s.api_token(token_sha256))
    }

    fn api_tokens(&self) -> Result<Vec<web::ApiToken>> {
        on_backend!(self, s => s.api_tokens())
    }

    fn revoke_api_token(&mut self, name: &str) -> Result<bool> {
        on_backend!(self, s => s.revoke_api_token(name))
    }
}

impl WorkQueue for Store {
    fn enqueue(&mut self, description: &str, sha256: &str, now: i64) -> Result<i64> {
        on_backend!(self, s => s.enqueue(description, sha256, now))
    }

    fn claim(
        &mut self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        max_attempts: u32,
    ) -> Result<Option<QueuedJob>> {
        on_backend!(self, s => s.claim(worker, now, lease_secs, max_attempts))
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now: i64, lease_secs: i64) -> Result<bool> {
        on_backend!(self, s => s.heartbeat(id, worker, now, lease_secs))
    }

    fn complete(
        &mut self,
        id: i64,
        worker: &str,
        new: &NewTicket,
        code_prefix: &str,
    ) -> Result<Filed> {
        on_backend!(self, s => s.complete(id, worker, new, code_prefix))
    }

    fn fail(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        now: i64,
        max_attempts: u32,
    ) -> Result<JobFate> {
        on_backend!(self, s => s.fail(id, worker, error, now, max_attempts))
    }

    fn job_counts(&self) -> Result<JobCounts> {
        on_backend!(self, s => s.job_counts())
    }

    fn parked_jobs(&self) -> Result<Vec<(i64, String, u32, String)>> {
        on_backend!(self, s => s.parked_jobs())
    }

    fn running_jobs(&self) -> Result<Vec<(i64, String, i64)>> {
        on_backend!(self, s => s.running_jobs())
    }
}
