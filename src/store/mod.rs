//! The request register: tickets, documents, events and the search index in one SQLite
//! database under the data dir, originals beside it content-addressed.
//!
//! All SQL of the project lives in this module. Callers see plain Rust values, so a second
//! backend (PostgreSQL for offices that outgrow one machine) replaces this file, not its users.

pub mod blobs;
mod learning;
mod rank;
pub mod web;

use crate::code;
use crate::domain::EventKind;
use crate::entities::{Entity, Kind as EntityKind};
use crate::model::{
    Channel, Document, DocumentKind, DossierLink, Event, PageText, Sender, Status, Ticket,
};
use crate::search::{SearchHit, SearchQuery};
use crate::textnorm::stemmed_text;
use blobs::BlobStore;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the store at {path} has schema version {found}, newer than this sportello knows ({known}); upgrade sportello")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no ticket with code {0}")]
    NotFound(String),
    #[error(transparent)]
    Code(#[from] code::CodeError),
    #[error(transparent)]
    Query(#[from] crate::search::QueryError),
    #[error("corrupt value in the store: {0}")]
    Corrupt(String),
    #[error("filing a batch failed: {0}")]
    Batch(String),
    #[error("{0}")]
    Conflict(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// Schema migrations, applied in order, each in its own transaction; `PRAGMA user_version`
/// records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the register.
    r#"
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    protocol_year INTEGER NOT NULL,
    protocol_number INTEGER NOT NULL,
    channel TEXT NOT NULL,
    received_at TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    sender_name TEXT, sender_email TEXT, sender_fax TEXT, sender_phone TEXT,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    topic TEXT, topic_confidence REAL, topic_reason TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    office TEXT,
    needs_attention INTEGER NOT NULL DEFAULT 0,
    attention_reason TEXT,
    parent_code TEXT,
    intake_sha256 TEXT UNIQUE,
    UNIQUE (protocol_year, protocol_number)
);
CREATE INDEX tickets_received ON tickets(received_at);
CREATE INDEX tickets_status ON tickets(status, topic);
CREATE INDEX tickets_sender_email ON tickets(sender_email);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    ord INTEGER NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pages INTEGER,
    text TEXT NOT NULL DEFAULT '',
    ocr INTEGER NOT NULL DEFAULT 0,
    ocr_confidence REAL,
    kind TEXT NOT NULL,
    error TEXT,
    page_texts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX documents_ticket ON documents(ticket_id, ord);
CREATE INDEX documents_sha ON documents(sha256);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_ticket ON events(ticket_id, id);
-- Events are history: never changed, never removed.
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE protocol_counters (year INTEGER PRIMARY KEY, last INTEGER NOT NULL);
-- Every arrival of an item (file, message): which ticket it became or was recorded on.
CREATE TABLE intakes (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER,
    at TEXT NOT NULL
);
CREATE INDEX intakes_sha ON intakes(sha256);
CREATE VIRTUAL TABLE ticket_fts USING fts5(
    subject, body, documents,
    tokenize = 'unicode61 remove_diacritics 2'
);
"#,
    // 2: classification: clerk-reviewed topics (the model's training data), secondary topics,
    // and small counters (corrections since the model was last trained).
    r#"
ALTER TABLE tickets ADD COLUMN topic_reviewed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN secondary_topics TEXT NOT NULL DEFAULT '[]';
CREATE INDEX tickets_reviewed ON tickets(topic_reviewed);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"#,
    // 3: identifiers found in tickets, and links a clerk made or undid by hand.
    r#"
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    valid INTEGER NOT NULL,
    confidence REAL NOT NULL,
    place TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE INDEX entities_lookup ON entities(kind, value);
CREATE INDEX entities_ticket ON entities(ticket_id);
CREATE TABLE manual_links (
    a INTEGER NOT NULL REFERENCES tickets(id),
    b INTEGER NOT NULL REFERENCES tickets(id),
    linked INTEGER NOT NULL,
    PRIMARY KEY (a, b)
);
"#,
    // 4: the email channel: signed documents, the Message-IDs of a ticket's messages (threads,
    // PEC receipts), and the outbox of acknowledgements (sent by the `run` loop).
    r#"
ALTER TABLE documents ADD COLUMN signed_by TEXT;
CREATE TABLE message_ids (
    message_id TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    direction TEXT NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    to_addr TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    in_reply_to TEXT,
    language TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at TEXT
);
CREATE INDEX outbox_due ON outbox(sent_at, next_attempt_at);
CREATE INDEX outbox_to ON outbox(to_addr, created_at);
"#,
    // 5: the web app: accounts, sessions (by the hash of their cookie), clerks' replies in the
    // outbox beside the acknowledgements.
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
ALTER TABLE outbox ADD COLUMN reply_subject TEXT;
ALTER TABLE outbox ADD COLUMN reply_body TEXT;
ALTER TABLE outbox ADD COLUMN sent_by TEXT;
CREATE INDEX tickets_sender_name ON tickets(sender_name);
CREATE INDEX tickets_office ON tickets(office);
"#,
    // Items whose reading killed a worker (or the runner), by the SHA-256 of their bytes:
    // after a second crash they are filed flagged without being read again.
    r#"
CREATE TABLE parse_crashes (
    sha256 TEXT PRIMARY KEY,
    crashes INTEGER NOT NULL,
    reason TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"#,
    // An outbox message is claimed (committed) before it is handed to the SMTP server, so a
    // sender that dies mid-send leaves a trace: such a message is not sent again (it may
    // have arrived), and its ticket says so.
    r#"
ALTER TABLE outbox ADD COLUMN sending_by INTEGER;
ALTER TABLE outbox ADD COLUMN uncertain TEXT;
"#,
    // The office's labelled history (`model train --labels`), kept so that every retrain
    // learns from it as well as from the tickets clerks settled.
    r#"
CREATE TABLE labelled_history (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    topic TEXT NOT NULL,
    channel TEXT,
    sender_email TEXT,
    added_at TEXT NOT NULL,
    UNIQUE (record_id, subject, body)
);
ALTER TABLE tickets ADD COLUMN topic_guesses TEXT NOT NULL DEFAULT '[]';
"#,
];

/// Counters (table `counters`): tickets settled since the model was last trained (see
/// `learning`), and rewrites of existing rows of the search index (see `rank`).
const SETTLED_SINCE_TRAINING: &str = "corrections_since_training";
const SEARCH_ROWS_REWRITTEN: &str = "search_rows_rewritten";

/// How many of a query's newest matches are ranked (see `Store::search`).
pub const RANK_WINDOW: usize = 1000;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A document ready to be filed; its bytes are already in the blob store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewDocument {
    pub doc: Document,
    pub page_texts: Vec<PageText>,
}

impl NewDocument {
    /// An original as received, before any text is extracted.
    pub fn original(name: String, mime: &str, sha256: String, size: u64) -> NewDocument {
        NewDocument {
            doc: Document {
                name,
                mime: mime.to_string(),
                sha256,
                size,
                pages: None,
                text: String::new(),
                ocr: false,
                ocr_confidence: None,
                kind: DocumentKind::Original,
                error: None,
                pages_needing_ocr: Vec::new(),
                signed_by: None,
            },
            page_texts: Vec::new(),
        }
    }
}

/// Where an item came from, to tell a duplicate from the same item seen again after a crash.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Intake {
    pub source: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub mtime_ns: Option<i64>,
}

/// Everything needed to file a ticket; code and protocol number are assigned by the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewTicket {
    pub channel: Channel,
    pub received_at: String,
    pub sender: Sender,
    pub subject: String,
    pub body: String,
    pub topic: Option<String>,
    pub topic_confidence: Option<f32>,
    pub topic_reason: Option<String>,
    pub secondary_topics: Vec<String>,
    /// The classifier's two likeliest topics with their probabilities (for triage).
    #[serde(default)]
    pub topic_guesses: Vec<(String, f32)>,
    pub office: Option<String>,
    pub attention: Vec<String>,
    pub parent: Option<String>,
    pub entities: Vec<crate::entities::Entity>,
    pub documents: Vec<NewDocument>,
    pub intake: Intake,
    /// For messages: what threads, receipts and acknowledgements need.
    pub mail: Option<MailFacts>,
    /// The folded, stemmed text for the search index, made by a worker (see
    /// [`SearchText::of`]) so the one filing thread does not; `None`: made when filed.
    pub search_text: Option<SearchText>,
}

/// What a new ticket puts in the search index, as stored there (folded and stemmed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SearchText {
    subject: String,
    body: String,
    documents: String,
}

impl SearchText {
    pub fn of(t: &NewTicket) -> SearchText {
        SearchText::new(
            &t.subject,
            &t.body,
            t.documents
                .iter()
                .map(|d| (d.doc.name.as_str(), d.doc.text.as_str())),
        )
    }

    /// From a ticket's subject, body and documents' (name, text) in their order.
    fn new<'a>(
        subject: &str,
        body: &str,
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> SearchText {
        let mut stemmed = String::new();
        for (name, text) in documents {
            stemmed.push_str(&stemmed_text(name));
            stemmed.push(' ');
            stemmed.push_str(&stemmed_text(text));
            stemmed.push('\n');
        }
        SearchText {
            subject: stemmed_text(subject),
            body: stemmed_text(body),
            documents: stemmed,
        }
    }

    /// Replaces the ticket's row in the search index (a rowid freed by a deleted ticket may
    /// still have one).
    fn write(&self, tx: &rusqlite::Connection, ticket_id: i64) -> Result<()> {
        let replaced = execute_cached(tx, "DELETE FROM ticket_fts WHERE rowid = ?1", [ticket_id])?;
        if replaced > 0 {
            // Row lengths remembered by the ranking are now out of date (see `rank`).
            bump_counter(tx, SEARCH_ROWS_REWRITTEN)?;
        }
        execute_cached(
            tx,
            "INSERT INTO ticket_fts (rowid, subject, body, documents) VALUES (?1, ?2, ?3, ?4)",
            params![ticket_id, self.subject, self.body, self.documents],
        )?;
        Ok(())
    }
}

/// What the store needs to know of a message beyond the ticket itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MailFacts {
    pub message_id: Option<String>,
    /// Message-IDs it answers (In-Reply-To, References).
    pub in_reply_to: Vec<String>,
    /// The certified facts of a PEC message or receipt.
    pub pec: Option<crate::email::Pec>,
    /// Why it must not be acknowledged (RFC 3834), when an acknowledgement was otherwise due.
    pub no_auto_reply: Option<String>,
    /// The acknowledgement to queue if this becomes a new ticket.
    pub ack: Option<AckRequest>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AckRequest {
    pub to: String,
    pub language: String,
    /// At most this many acknowledgements to one address per hour.
    pub max_per_hour: u32,
    /// Domain for the acknowledgement's Message-ID.
    pub domain: String,
}

/// An acknowledgement waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub ticket_code: String,
    pub protocol: String,
    pub subject: String,
    pub to: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub language: String,
    pub attempts: i64,
    /// A clerk's answer (subject, text) instead of the acknowledgement template.
    pub reply: Option<(String, String)>,
}

/// What filing an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    /// A new ticket.
    Created { code: String, protocol: String },
    /// The same bytes arrived again: recorded as an event on the first ticket.
    Duplicate { code: String },
    /// This very item was filed before (a restart after a crash between commit and clean-up).
    AlreadyFiled { code: String },
    /// A reply, or a PEC receipt, added to the ticket it belongs to.
    Appended { code: String, what: String },
}

impl Filed {
    pub fn code(&self) -> &str {
        match self {
            Filed::Created { code, .. }
            | Filed::Duplicate { code }
            | Filed::AlreadyFiled { code }
            | Filed::Appended { code, .. } => code,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub topic: Option<String>,
    pub channel: Option<Channel>,
    pub office: Option<String>,
    pub needs_attention: Option<bool>,
    /// Tickets carrying this (valid) fiscal code.
    pub fiscal_code: Option<String>,
    /// Tickets referring to this case: "B/2010/0977" matches "pratica B/2010/0977".
    pub case_ref: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Part of the sender's name, address or number (any case).
    pub sender: Option<String>,
    pub limit: Option<usize>,
    /// Results to skip (paging).
    pub offset: Option<usize>,
}

/// A line of `tickets list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TicketSummary {
    pub code: String,
    pub protocol: String,
    pub channel: String,
    pub received_at: String,
    pub sender: Option<String>,
    pub subject: String,
    pub topic: Option<String>,
    /// The classifier's two likeliest topics, for a ticket nobody has settled yet.
    pub topic_guesses: Vec<(String, f32)>,
    pub status: String,
    pub needs_attention: bool,
    pub documents: u32,
}

pub struct Store {
    conn: Connection,
    blobs: BlobStore,
    data_dir: PathBuf,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

fn protocol_string(year: i64, number: i64) -> String {
    format!("{year}/{number:06}")
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, bringing its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(io_err(format!(
            "cannot create data dir {}",
            data_dir.display()
        )))?;
        let db_path = data_dir.join("sportello.db");
        let mut conn = Connection::open(&db_path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Filing one ticket runs some twenty statements; each is parsed once per connection.
        conn.set_prepared_statement_cache_capacity(64);
        // Switching to WAL takes a write lock; a store already in WAL (every store after its
        // first open) is only read, so opening beside a busy writer does not risk SQLITE_BUSY.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        // FULL: a committed ticket survives a power cut, so a file moved away after commit
        // is never a lost request.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        rank::register(&conn)?;
        migrate(&mut conn, &db_path)?;
        Ok(Store {
            conn,
            blobs: BlobStore::new(data_dir),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Every item remembered for killing a worker: SHA-256 → (crashes, last reason).
    pub fn parse_crashes(&self) -> Result<HashMap<String, (u32, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256, crashes, reason FROM parse_crashes")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, u32>(1)?, r.get(2)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remembers one more crash while reading the item `sha256`; returns how many there
    /// have been. Committed before the item is tried again.
    pub fn record_parse_crash(&mut self, sha256: &str, reason: &str) -> Result<u32> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO parse_crashes (sha256, crashes, reason, updated_at) VALUES (?1, 1, ?2, ?3)
             ON CONFLICT(sha256) DO UPDATE SET crashes = crashes + 1, reason = ?2, updated_at = ?3",
            params![sha256, reason, now_rfc3339()],
        )?;
        let n = tx.query_row(
            "SELECT crashes FROM parse_crashes WHERE sha256 = ?1",
            [sha256],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// For a connection that serves many concurrent reads (the web app): pages are read
    /// straight from a memory map, with no copy per page and (the bundled SQLite is built with
    /// a page cache shared by every connection behind one lock) no contention between readers
    /// for that cache. Not for intake: the mapped pages would count in its memory.
    pub fn map_for_reads(&self) -> Result<()> {
        self.conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
        Ok(())
    }

    /// For bulk loads into a fresh store (imports, benchmarks): commits no longer wait for the
    /// disk. A crash during the load can lose the last tickets, so never use it for intake.
    pub fn relax_durability_for_bulk_load(&self) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        Ok(())
    }

    /// The raw FTS5 query without ranking or snippets: the floor a search cannot beat, used by
    /// the benchmark to show what ranking and snippets cost.
    pub fn bare_fts_ids(&self, fts: &str, limit: usize) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH ?1 LIMIT ?2")?;
        let rows = stmt.query_map(params![fts, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Files one item in one transaction: a new ticket, or an event on the ticket that
    /// already holds the same bytes.
    pub fn file(&mut self, new: &NewTicket, code_prefix: &str) -> Result<Filed> {
        let mut filed = self.file_together(&[new], code_prefix)?;
        filed
            .pop()
            .ok_or_else(|| StoreError::Batch("no result".into()))
    }

    /// Files several items in one transaction (one wait for the disk instead of one each).
    /// Should any item fail, the whole transaction is rolled back and each item is filed in a
    /// transaction of its own, so a failure costs only its own item. (A savepoint per item did
    /// the same in one pass, but wrote every touched page to a statement journal first.)
    pub fn file_batch(&mut self, items: &[&NewTicket], code_prefix: &str) -> Vec<Result<Filed>> {
        match self.file_together(items, code_prefix) {
            Ok(filed) => filed.into_iter().map(Ok).collect(),
            Err(e) if items.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!("a batch of {} failed ({e}); filing one by one", items.len());
                items
                    .iter()
                    .map(|new| self.file(new, code_prefix))
                    .collect()
            }
        }
    }

    /// Every item or none, in one transaction.
    fn file_together(&mut self, items: &[&NewTicket], code_prefix: &str) -> Result<Vec<Filed>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let filed = items
            .iter()
            .map(|new| file_in(&tx, new, code_prefix))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(filed)
    }
}

/// `execute` through the connection's statement cache: filing runs the same statements for
/// every ticket, and parsing them each time was a visible share of a filing thread's time.
fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Adds one to a row of `counters` (created at 1) and returns its new value.
fn bump_counter(tx: &Connection, name: &str) -> rusqlite::Result<i64> {
    query_row_cached(
        tx,
        "INSERT INTO counters(name, value) VALUES (?1, 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
        [name],
        |r| r.get(0),
    )
}

/// `query_row` through the connection's statement cache (see [`execute_cached`]).
fn query_row_cached<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, row)
}

/// Files one item inside the caller's transaction (see [`Store::file`]).
fn file_in(tx: &rusqlite::Connection, new: &NewTicket, code_prefix: &str) -> Result<Filed> {
    {
        let now = now_rfc3339();
        let existing: Option<(i64, String)> = query_row_cached(
            tx,
            "SELECT id, code FROM tickets WHERE intake_sha256 = ?1",
            [&new.intake.sha256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
        if let Some((ticket_id, code)) = existing {
            let i = &new.intake;
            let seen_before: bool = query_row_cached(
                tx,
                "SELECT EXISTS(SELECT 1 FROM intakes WHERE ticket_id = ?1 AND source = ?2 AND name = ?3
                   AND size = ?4 AND mtime_ns IS ?5)",
                params![ticket_id, i.source, i.name, i.size as i64, i.mtime_ns],
                |r| r.get(0),
            )?;
            if seen_before {
                return Ok(Filed::AlreadyFiled { code });
            }
            insert_intake(tx, ticket_id, i, &now)?;
            let detail =
                serde_json::json!({"source": i.source, "name": i.name, "sha256": i.sha256});
            system_event(tx, ticket_id, &now, EventKind::DuplicateReceived, &detail)?;
            return Ok(Filed::Duplicate { code });
        }
        if let Some(mail) = &new.mail {
            if let Some(filed) = file_into_thread(tx, new, mail, &now)? {
                return Ok(filed);
            }
        }

        let year: i64 = now[..4]
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("clock gave {now}")))?;
        let number: i64 = query_row_cached(
            tx,
            "INSERT INTO protocol_counters(year, last) VALUES (?1, 1)
             ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last",
            [year],
            |r| r.get(0),
        )?;
        let attention = if new.attention.is_empty() {
            None
        } else {
            Some(new.attention.join("; "))
        };
        let mut rng = rand::thread_rng();
        let mut code = String::new();
        for attempt in 0.. {
            code = code::generate(code_prefix, &mut rng);
            let taken: bool = query_row_cached(
                tx,
                "SELECT EXISTS(SELECT 1 FROM tickets WHERE code = ?1)",
                [&code],
                |r| r.get(0),
            )?;
            if !taken {
                break;
            }
            if attempt > 100 {
                return Err(StoreError::Corrupt(
                    "cannot find a free tracking code".into(),
                ));
            }
        }
        let s = &new.sender;
        execute_cached(
            tx,
            "INSERT INTO tickets (code, protocol_year, protocol_number, channel, received_at, registered_at,
                sender_name, sender_email, sender_fax, sender_phone, subject, body, topic, topic_confidence,
                topic_reason, status, office, needs_attention, attention_reason, parent_code, intake_sha256,
                secondary_topics, topic_guesses)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'new', ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            params![
                code, year, number, new.channel.as_str(), new.received_at, now,
                s.name, s.email, s.fax, s.phone, new.subject, new.body, new.topic, new.topic_confidence,
                new.topic_reason, new.office, attention.is_some(), attention, new.parent, new.intake.sha256,
                serde_json::to_string(&new.secondary_topics).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&new.topic_guesses).unwrap_or_else(|_| "[]".into())
            ],
        )?;
        let ticket_id = tx.last_insert_rowid();
        for (ord, d) in new.documents.iter().enumerate() {
            insert_document(tx, ticket_id, ord as i64, d)?;
        }
        insert_intake(tx, ticket_id, &new.intake, &now)?;
        let protocol = protocol_string(year, number);
        let detail = serde_json::json!({
            "protocol": protocol, "channel": new.channel.as_str(),
            "source": new.intake.source, "name": new.intake.name,
        });
        system_event(tx, ticket_id, &now, EventKind::Created, &detail)?;
        if let Some(topic) = &new.topic {
            let detail = serde_json::json!({"topic": topic, "confidence": new.topic_confidence, "reason": new.topic_reason});
            system_event(tx, ticket_id, &now, EventKind::Classified, &detail)?;
        }
        if let Some(reason) = &attention {
            system_event(
                tx,
                ticket_id,
                &now,
                EventKind::NeedsAttention,
                &serde_json::json!({"reason": reason}),
            )?;
        }
        for e in &new.entities {
            execute_cached(
                tx,
                "INSERT INTO entities (ticket_id, kind, value, valid, confidence, place, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![ticket_id, e.kind.as_str(), e.value, e.valid, e.confidence, e.place, e.raw])?;
        }
        if let Some(mail) = &new.mail {
            record_mail(tx, ticket_id, mail, &now)?;
        }
        match &new.search_text {
            Some(t) => t.write(tx, ticket_id)?,
            None => SearchText::of(new).write(tx, ticket_id)?,
        }
        Ok(Filed::Created { code, protocol })
    }
}

impl Store {
    /// Acknowledgements due now (not sent, next attempt time reached; with `all`, every one
    /// not sent), oldest first.
    pub fn outbox_due(&self, limit: usize, all: bool) -> Result<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.id, t.code, t.protocol_year, t.protocol_number, t.subject, o.to_addr, o.message_id,
                    o.in_reply_to, o.language, o.attempts, o.reply_subject, o.reply_body
             FROM outbox o JOIN tickets t ON t.id = o.ticket_id
             WHERE o.sent_at IS NULL AND o.sending_by IS NULL AND o.uncertain IS NULL
               AND (?3 OR o.next_attempt_at <= ?1) ORDER BY o.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_rfc3339(), limit as i64, all], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                ticket_code: r.get(1)?,
                protocol: protocol_string(r.get(2)?, r.get(3)?),
                subject: r.get(4)?,
                to: r.get(5)?,
                message_id: r.get(6)?,
                in_reply_to: r.get(7)?,
                language: r.get(8)?,
                attempts: r.get(9)?,
                reply: match (
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                ) {
                    (Some(subject), Some(body)) => Some((subject, body)),
                    _ => None,
                },
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Claims an outbox message for this process before it goes to the SMTP server
    /// (committed); false when another sender claimed it first.
    pub fn outbox_claim(&mut self, item: &OutboxItem) -> Result<bool> {
        let n = execute_cached(
            &self.conn,
            "UPDATE outbox SET sending_by = ?1
             WHERE id = ?2 AND sent_at IS NULL AND sending_by IS NULL AND uncertain IS NULL",
            params![std::process::id(), item.id],
        )?;
        Ok(n == 1)
    }

    /// Messages claimed by a sender that died before it recorded the outcome: it cannot be
    /// known whether the SMTP server took them, so they are not sent again (a citizen must
    /// not get two); each gets an event a clerk sees. `alive` tells a live sender's pid.
    pub fn outbox_settle_orphans(&mut self, alive: impl Fn(u32) -> bool) -> Result<usize> {
        let claimed: Vec<(i64, i64, u32, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, ticket_id, sending_by, to_addr FROM outbox
                 WHERE sent_at IS NULL AND sending_by IS NOT NULL AND uncertain IS NULL",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut settled = 0;
        for (id, ticket_id, pid, to) in claimed {
            if pid == std::process::id() || alive(pid) {
                continue;
            }
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_rfc3339();
            let reason = "the office stopped while this message was being sent: it may not have arrived, and is not sent again; send it again from the ticket if the citizen did not get it";
            let n = tx.execute(
                "UPDATE outbox SET uncertain = ?1 WHERE id = ?2 AND sent_at IS NULL AND sending_by = ?3",
                params![reason, id, pid],
            )?;
            if n == 1 {
                let detail = serde_json::json!({"to": to, "reason": reason});
                system_event(&tx, ticket_id, &now, EventKind::AckUncertain, &detail)?;
                settled += 1;
            }
            tx.commit()?;
        }
        Ok(settled)
    }

    /// How many acknowledgements are not sent yet.
    pub fn outbox_pending(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND uncertain IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    /// Records an acknowledgement's delivery (`error` None) or a failed attempt, with an event
    /// on its ticket either way; a failed one is tried again after `retry_after` seconds.
    pub fn outbox_result(
        &mut self,
        item: &OutboxItem,
        error: Option<&str>,
        retry_after: i64,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_rfc3339();
        let ticket_id: i64 = query_row_cached(
            &tx,
            "SELECT ticket_id FROM outbox WHERE id = ?1",
            [item.id],
            |r| r.get(0),
        )?;
        match error {
            None => {
                execute_cached(
                    &tx,
                    "UPDATE outbox SET sent_at = ?1, attempts = attempts + 1, last_error = NULL, sending_by = NULL WHERE id = ?2",
                    params![now, item.id],
                )?;
                let detail = serde_json::json!({"to": item.to, "message_id": item.message_id});
                let kind = if item.reply.is_some() {
                    EventKind::ReplySent
                } else {
                    EventKind::AckSent
                };
                system_event(&tx, ticket_id, &now, kind, &detail)?;
            }
            Some(e) => {
                let next = (chrono::Utc::now() + chrono::Duration::seconds(retry_after))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                execute_cached(
                    &tx,
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?1, next_attempt_at = ?2, sending_by = NULL WHERE id = ?3",
                    params![e, next, item.id],
                )?;
                let detail = serde_json::json!({"to": item.to, "error": e, "attempt": item.attempts + 1, "next_attempt_at": next});
                let kind = if item.reply.is_some() {
                    EventKind::ReplyFailed
                } else {
                    EventKind::AckFailed
                };
                system_event(&tx, ticket_id, &now, kind, &detail)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn ticket_id(&self, code_input: &str) -> Result<(i64, String)> {
        let code = code::parse(code_input)?;
        self.conn
            .query_row("SELECT id FROM tickets WHERE code = ?1", [&code], |r| {
                r.get(0)
            })
            .optional()?
            .map(|id| (id, code.clone()))
            .ok_or(StoreError::NotFound(code))
    }

    /// The whole ticket, with documents and history.
    pub fn ticket(&self, code_input: &str) -> Result<Ticket> {
        let (id, _) = self.ticket_id(code_input)?;
        self.ticket_by_id(id)
    }

    fn ticket_by_id(&self, id: i64) -> Result<Ticket> {
        let mut ticket = self.conn.query_row(
            "SELECT code, protocol_year, protocol_number, channel, received_at, registered_at, sender_name,
                    sender_email, sender_fax, sender_phone, subject, body, topic, topic_confidence, topic_reason,
                    status, office, needs_attention, attention_reason, parent_code, secondary_topics,
                    topic_reviewed, topic_guesses
             FROM tickets WHERE id = ?1",
            [id],
            |r| {
                let channel: String = r.get(3)?;
                let status: String = r.get(15)?;
                Ok((
                    Ticket {
                        code: r.get(0)?,
                        protocol: protocol_string(r.get(1)?, r.get(2)?),
                        channel: Channel::Email,
                        received_at: r.get(4)?,
                        registered_at: r.get(5)?,
                        sender: Sender { name: r.get(6)?, email: r.get(7)?, fax: r.get(8)?, phone: r.get(9)? },
                        subject: r.get(10)?,
                        body: r.get(11)?,
                        topic: r.get(12)?,
                        topic_confidence: r.get::<_, Option<f64>>(13)?.map(|v| v as f32),
                        topic_reason: r.get(14)?,
                        secondary_topics: serde_json::from_str(&r.get::<_, String>(20)?).unwrap_or_default(),
                        topic_reviewed: r.get(21)?,
                        topic_guesses: serde_json::from_str(&r.get::<_, String>(22)?).unwrap_or_default(),
                        status: Status::New,
                        office: r.get(16)?,
                        needs_attention: r.get(17)?,
                        attention_reason: r.get(18)?,
                        parent: r.get(19)?,
                        documents: Vec::new(),
                        events: Vec::new(),
                        entities: Vec::new(),
                        dossier: Vec::new(),
                    },
                    channel,
                    status,
                ))
            },
        )?;
        let (ref mut t, channel, status) = ticket;
        t.channel = channel
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
        t.status = status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
        t.documents = self.documents_of(id)?;
        t.events = self.events_of(id)?;
        t.entities = self.entities_of(id)?;
        t.dossier = self.direct_links(id)?;
        Ok(ticket.0)
    }

    fn documents_of(&self, ticket_id: i64) -> Result<Vec<Document>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by
             FROM documents WHERE ticket_id = ?1 ORDER BY ord",
        )?;
        let rows = stmt.query_map([ticket_id], |r| {
            let kind: String = r.get(8)?;
            let page_texts: String = r.get(10)?;
            Ok((
                Document {
                    name: r.get(0)?,
                    mime: r.get(1)?,
                    sha256: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                    pages: r.get(4)?,
                    text: r.get(5)?,
                    ocr: r.get(6)?,
                    ocr_confidence: r.get::<_, Option<f64>>(7)?.map(|v| v as f32),
                    kind: DocumentKind::Original,
                    error: r.get(9)?,
                    pages_needing_ocr: Vec::new(),
                    signed_by: r.get(11)?,
                },
                kind,
                page_texts,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut doc, kind, page_texts) = row?;
            doc.kind = kind
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
            let pages: Vec<PageText> = serde_json::from_str(&page_texts)
                .map_err(|e| StoreError::Corrupt(format!("page texts: {e}")))?;
            doc.pages_needing_ocr = pages
                .iter()
                .filter(|p| p.needs_ocr)
                .map(|p| p.page)
                .collect();
            out.push(doc);
        }
        Ok(out)
    }

    /// Per-page text of a ticket's document, by its position among the ticket's documents.
    pub fn page_texts(&self, code_input: &str, ord: usize) -> Result<Vec<PageText>> {
        let (id, code) = self.ticket_id(code_input)?;
        let json: String = self
            .conn
            .query_row(
                "SELECT page_texts FROM documents WHERE ticket_id = ?1 AND ord = ?2",
                params![id, ord as i64],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound(format!("{code} document {ord}")))?;
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("page texts: {e}")))
    }

    fn events_of(&self, ticket_id: i64) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, actor, kind, detail FROM events WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([ticket_id], |r| {
            let detail: String = r.get(3)?;
            Ok(Event {
                at: r.get(0)?,
                actor: r.get(1)?,
                kind: r.get(2)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Tickets matching `filter`, newest first.
    pub fn list(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        self.summaries(
            filter,
            "t.received_at DESC, t.id DESC",
            filter.limit.map(|l| l as i64).unwrap_or(-1),
            filter.offset.unwrap_or(0),
        )
    }

    /// Tickets matching `filter` in `order_by` order, as list lines (`limit` -1: all).
    fn summaries(
        &self,
        filter: &TicketFilter,
        order_by: &str,
        limit: i64,
        offset: usize,
    ) -> Result<Vec<TicketSummary>> {
        let (where_sql, args) = filter_sql(filter);
        let sql = format!(
            "SELECT t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at,
                    COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone), t.subject, t.topic,
                    t.status, t.needs_attention, (SELECT COUNT(*) FROM documents d WHERE d.ticket_id = t.id),
                    CASE WHEN t.topic_reviewed THEN '[]' ELSE t.topic_guesses END
             FROM tickets t {where_sql} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok(TicketSummary {
                code: r.get(0)?,
                protocol: protocol_string(r.get(1)?, r.get(2)?),
                channel: r.get(3)?,
                received_at: r.get(4)?,
                sender: r.get(5)?,
                subject: r.get(6)?,
                topic: r.get(7)?,
                status: r.get(8)?,
                needs_attention: r.get(9)?,
                documents: r.get(10)?,
                topic_guesses: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Full-text search, best first.
    pub fn search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<Vec<SearchHit>> {
        let (where_sql, mut args) = filter_sql(filter);
        args.push(query.fts.clone());
        let match_idx = args.len();
        args.push(query.phrases.join("\n"));
        let phrases_idx = args.len();
        let offset = filter.offset.unwrap_or(0);
        let limit = filter.limit.unwrap_or(20);
        let rank = format!(
            "{}(ticket_fts, ?{phrases_idx}, {}, (SELECT value FROM counters WHERE name = '{SEARCH_ROWS_REWRITTEN}'), 4.0, 2.0, 1.0)",
            rank::FUNCTION,
            offset + limit
        );
        let sql = if where_sql.is_empty() {
            // No filter: rank inside the index alone and read only the page of tickets shown
            // (reading every candidate's row, as a filter needs, costs most of a search).
            format!(
                "SELECT t.id, t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at, t.subject, t.topic,
                        t.status, COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone), r.score
                 FROM (SELECT id, score FROM
                         (SELECT rowid AS id, {rank} AS score FROM ticket_fts
                          WHERE ticket_fts MATCH ?{match_idx} ORDER BY rowid DESC LIMIT {RANK_WINDOW})
                       ORDER BY score LIMIT {limit} OFFSET {offset}) r
                 JOIN tickets t ON t.id = r.id
                 ORDER BY r.score"
            )
        } else {
            format!(
                "SELECT id, code, protocol_year, protocol_number, channel, received_at, subject, topic, status, sender, rank
                 FROM (SELECT t.id, t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at, t.subject, t.topic,
                              t.status, COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone) AS sender,
                              {rank} AS rank
                       FROM ticket_fts JOIN tickets t ON t.id = ticket_fts.rowid
                       {where_sql} AND ticket_fts MATCH ?{match_idx}
                       ORDER BY ticket_fts.rowid DESC LIMIT {RANK_WINDOW})
                 ORDER BY rank LIMIT {limit} OFFSET {offset}"
            )
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                SearchHit {
                    code: r.get(1)?,
                    protocol: protocol_string(r.get(2)?, r.get(3)?),
                    channel: r.get(4)?,
                    received_at: r.get(5)?,
                    subject: r.get(6)?,
                    topic: r.get(7)?,
                    status: r.get(8)?,
                    sender: r.get(9)?,
                    score: -r.get::<_, f64>(10)?,
                    snippet: String::new(),
                },
            ))
        })?;
        let mut hits = Vec::new();
        for row in rows {
            let (id, mut hit) = row?;
            hit.snippet = self.snippet_for(id, query, &hit.subject)?;
            hits.push(hit);
        }
        Ok(hits)
    }

    fn snippet_for(&self, ticket_id: i64, query: &SearchQuery, subject: &str) -> Result<String> {
        const WIDTH: usize = 24;
        let body: String = self
            .conn
            .prepare_cached("SELECT body FROM tickets WHERE id = ?1")?
            .query_row([ticket_id], |r| r.get(0))?;
        if let Some(s) = query.snippet(&body, WIDTH) {
            return Ok(s);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, text FROM documents WHERE ticket_id = ?1 ORDER BY ord")?;
        let docs = stmt.query_map([ticket_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for doc in docs {
            let (name, text) = doc?;
            if let Some(s) = query.snippet(&text, WIDTH) {
                return Ok(format!("[{name}] {s}"));
            }
        }
        Ok(query
            .snippet(subject, WIDTH)
            .unwrap_or_else(|| subject.to_string()))
    }

    /// Moves a ticket to `status`, recording who did it; no event when nothing changes.
    pub fn set_status(&mut self, code_input: &str, status: Status, actor: &str) -> Result<bool> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from: String =
            query_row_cached(&tx, "SELECT status FROM tickets WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        if from == status.as_str() {
            return Ok(false);
        }
        execute_cached(
            &tx,
            "UPDATE tickets SET status = ?1 WHERE id = ?2",
            params![status.as_str(), id],
        )?;
        let detail = serde_json::json!({"from": from, "to": status.as_str()});
        insert_event(
            &tx,
            id,
            &now_rfc3339(),
            actor,
            EventKind::StatusChanged,
            &detail,
        )?;
        if status == Status::Closed {
            Store::settled_by_closing(&tx, id)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn entities_of(&self, ticket_id: i64) -> Result<Vec<Entity>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, value, valid, confidence, place, raw FROM entities WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([ticket_id], |r| {
            let kind: String = r.get(0)?;
            Ok((
                kind,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, value, valid, confidence, place, raw) = row?;
            let kind = EntityKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("entity kind {kind}")))?;
            out.push(Entity {
                kind,
                value,
                valid,
                confidence: confidence as f32,
                place,
                raw,
            });
        }
        Ok(out)
    }

    /// Identifiers of a ticket, by its code.
    pub fn entities(&self, code_input: &str) -> Result<Vec<Entity>> {
        let (id, _) = self.ticket_id(code_input)?;
        self.entities_of(id)
    }

    /// The tickets one ticket is linked to directly, with the reasons.
    fn direct_links(&self, ticket_id: i64) -> Result<Vec<DossierLink>> {
        Ok(self
            .links(ticket_id, true)?
            .into_iter()
            .map(|(_, link, _)| link)
            .collect())
    }

    /// Direct links as (other ticket, link, is it a person link); case links only when
    /// `with_cases`.
    fn links(&self, ticket_id: i64, with_cases: bool) -> Result<Vec<(i64, DossierLink, bool)>> {
        // other ticket → (reasons, suggested, person link)
        let mut found: BTreeMap<i64, (Vec<String>, bool, bool)> = BTreeMap::new();
        {
            // Strong identifiers: a valid fiscal code anywhere, the sender's own address or
            // number, a case number; the same value on another ticket links the two.
            let mut stmt = self.conn.prepare_cached(
                "SELECT o.ticket_id, e.kind, e.value FROM entities e
                 JOIN entities o ON o.kind = e.kind AND o.value = e.value AND o.ticket_id != e.ticket_id
                 WHERE e.ticket_id = ?1
                   AND ((e.kind = 'fiscal_code' AND e.valid = 1 AND o.valid = 1)
                     OR (e.kind IN ('email', 'phone') AND e.place = 'sender' AND o.place = 'sender')
                     OR e.kind = 'case_ref')",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (other, kind, value) = row?;
                let person = kind != "case_ref";
                if !person && !with_cases {
                    continue;
                }
                let reason = match kind.as_str() {
                    "fiscal_code" => format!(
                        "same fiscal code {}",
                        crate::entities::mask(EntityKind::FiscalCode, &value)
                    ),
                    "email" => format!("same sender address {value}"),
                    "phone" => format!(
                        "same sender number {}",
                        crate::entities::mask(EntityKind::Phone, &value)
                    ),
                    _ => format!("same case: {value}"),
                };
                let entry = found.entry(other).or_default();
                entry.2 |= person;
                if !entry.0.contains(&reason) {
                    entry.0.push(reason);
                }
            }
        }
        if with_cases {
            // A mention of one of our tracking codes links to that ticket, both ways.
            let code: String = self.conn.query_row(
                "SELECT code FROM tickets WHERE id = ?1",
                [ticket_id],
                |r| r.get(0),
            )?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT t.id, 'refers to ' || t.code FROM entities e JOIN tickets t ON t.code = substr(e.value, 8)
                 WHERE e.ticket_id = ?1 AND e.kind = 'case_ref' AND e.value LIKE 'ticket %' AND t.id != ?1
                 UNION ALL
                 SELECT e.ticket_id, 'referred to by ' || t.code FROM entities e JOIN tickets t ON t.id = e.ticket_id
                 WHERE e.kind = 'case_ref' AND e.value = 'ticket ' || ?2 AND e.ticket_id != ?1",
            )?;
            let rows = stmt.query_map(params![ticket_id, code], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (other, reason) = row?;
                found.entry(other).or_default().0.push(reason);
            }
        }
        {
            // Weak evidence, the same sender name and the same address: only a suggestion.
            let mut stmt = self.conn.prepare_cached(
                "SELECT o.ticket_id, e.value FROM entities e
                 JOIN entities o ON o.kind = 'address' AND o.value = e.value AND o.ticket_id != e.ticket_id
                 JOIN tickets t ON t.id = e.ticket_id JOIN tickets ot ON ot.id = o.ticket_id
                 WHERE e.ticket_id = ?1 AND e.kind = 'address'
                   AND t.sender_name IS NOT NULL AND lower(t.sender_name) = lower(ot.sender_name)",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (other, address) = row?;
                let entry = found
                    .entry(other)
                    .or_insert_with(|| (Vec::new(), true, false));
                entry
                    .0
                    .push(format!("same name and address ({address}): to confirm"));
            }
        }
        {
            // What clerks linked or unlinked by hand wins.
            let mut stmt = self.conn.prepare_cached(
                "SELECT CASE WHEN a = ?1 THEN b ELSE a END, linked FROM manual_links WHERE a = ?1 OR b = ?1",
            )?;
            let rows = stmt.query_map([ticket_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
            })?;
            for row in rows {
                let (other, linked) = row?;
                if linked {
                    let entry = found.entry(other).or_default();
                    entry.0.push("linked by a clerk".into());
                    entry.1 = false;
                    entry.2 = true;
                } else {
                    found.remove(&other);
                }
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for (other, (reasons, suggested, person)) in found {
            let Some(link) = self.link_to(other, reasons, suggested)? else {
                continue;
            };
            out.push((other, link, person));
        }
        out.sort_by(|a, b| b.1.received_at.cmp(&a.1.received_at));
        Ok(out)
    }

    /// The whole dossier around a ticket: every ticket reachable through confirmed links
    /// (the same person, the same case, by hand), newest first, each with why it is there.
    pub fn dossier(&self, code_input: &str) -> Result<Vec<DossierLink>> {
        let (id, _) = self.ticket_id(code_input)?;
        self.dossier_from(vec![id])
    }

    /// The dossier of every ticket carrying an identifier (a fiscal code, a case number).
    pub fn dossier_by(&self, kind: EntityKind, value: &str) -> Result<Vec<DossierLink>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT ticket_id FROM entities WHERE kind = ?1 AND value = ?2",
        )?;
        let ids: Vec<i64> = stmt
            .query_map(params![kind.as_str(), value], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        // A case dossier is the tickets about the case; a person's reaches all their tickets.
        let mut all = if kind == EntityKind::CaseRef {
            Vec::new()
        } else {
            self.dossier_from(ids.clone())?
        };
        // The starting tickets belong to it too.
        for id in ids {
            if let Some(l) = self.link_to(
                id,
                vec![format!("carries {} {value}", kind.as_str())],
                false,
            )? {
                if !all.iter().any(|a| a.code == l.code) {
                    all.push(l);
                }
            }
        }
        all.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        Ok(all)
    }

    /// A link to ticket `id` as shown in a dossier.
    fn link_to(
        &self,
        id: i64,
        reasons: Vec<String>,
        suggested: bool,
    ) -> Result<Option<DossierLink>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT code, protocol_year, protocol_number, received_at, channel, subject FROM tickets WHERE id = ?1",
        )?;
        Ok(stmt
            .query_row([id], |r| {
                Ok(DossierLink {
                    code: r.get(0)?,
                    protocol: protocol_string(r.get(1)?, r.get(2)?),
                    received_at: r.get(3)?,
                    channel: r.get(4)?,
                    subject: r.get(5)?,
                    reasons,
                    suggested,
                })
            })
            .optional()?)
    }

    /// The tickets reachable from `start`: the start tickets' own links of every kind, then
    /// person links onwards (the same person's other tickets). Case links are not followed
    /// further: a technician's many cases would otherwise join unrelated citizens.
    fn dossier_from(&self, start: Vec<i64>) -> Result<Vec<DossierLink>> {
        const MAX: usize = 500;
        let mut seen: std::collections::HashSet<String> = Default::default();
        let mut start_codes = Vec::new();
        for &id in &start {
            start_codes.push(self.conn.query_row(
                "SELECT code FROM tickets WHERE id = ?1",
                [id],
                |r| r.get::<_, String>(0),
            )?);
        }
        seen.extend(start_codes.iter().cloned());
        let starts: std::collections::HashSet<i64> = start.iter().copied().collect();
        let mut queue: std::collections::VecDeque<i64> = start.into();
        let mut out: Vec<DossierLink> = Vec::new();
        while let Some(id) = queue.pop_front() {
            // Case links only from where we started; person links onwards.
            for (other, link, _) in self.links(id, starts.contains(&id))? {
                if link.suggested || !seen.insert(link.code.clone()) {
                    continue;
                }
                out.push(link);
                if out.len() >= MAX {
                    return Ok(out);
                }
                queue.push_back(other);
            }
        }
        out.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        Ok(out)
    }

    /// A clerk links two tickets (same person or case) or undoes a link; both tickets get an
    /// event.
    pub fn set_link(&mut self, a: &str, b: &str, linked: bool, actor: &str) -> Result<()> {
        let (ia, ca) = self.ticket_id(a)?;
        let (ib, cb) = self.ticket_id(b)?;
        let (lo, hi) = if ia < ib { (ia, ib) } else { (ib, ia) };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        execute_cached(
            &tx,
            "INSERT INTO manual_links (a, b, linked) VALUES (?1, ?2, ?3) ON CONFLICT(a, b) DO UPDATE SET linked = ?3",
            params![lo, hi, linked],
        )?;
        let kind = if linked {
            EventKind::Linked
        } else {
            EventKind::Unlinked
        };
        let now = now_rfc3339();
        insert_event(&tx, ia, &now, actor, kind, &serde_json::json!({"with": cb}))?;
        insert_event(&tx, ib, &now, actor, kind, &serde_json::json!({"with": ca}))?;
        tx.commit()?;
        Ok(())
    }

    /// Appends a clerk's note to a ticket's history.
    pub fn add_note(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert_event(
            &tx,
            id,
            &now_rfc3339(),
            actor,
            EventKind::Note,
            &serde_json::json!({"text": text}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Calls `each` with every ticket, oldest first.
    pub fn for_each_ticket(
        &self,
        mut each: impl FnMut(Ticket) -> std::io::Result<()>,
    ) -> Result<usize> {
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT id FROM tickets ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        for &id in &ids {
            each(self.ticket_by_id(id)?).map_err(io_err("cannot write export"))?;
        }
        Ok(ids.len())
    }

    pub fn count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

fn filter_sql(f: &TicketFilter) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let mut add = |clause: &str, value: String| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(s) = f.status {
        add("t.status = ?", s.as_str().to_string());
    }
    if let Some(t) = &f.topic {
        add("t.topic = ?", t.clone());
    }
    if let Some(c) = f.channel {
        add("t.channel = ?", c.as_str().to_string());
    }
    if let Some(o) = &f.office {
        add("t.office = ?", o.clone());
    }
    if let Some(since) = &f.since {
        add("t.received_at >= ?", since.clone());
    }
    if let Some(until) = &f.until {
        add("t.received_at < ?", until.clone());
    }
    if let Some(cf) = &f.fiscal_code {
        add(
            "EXISTS (SELECT 1 FROM entities e WHERE e.ticket_id = t.id AND e.kind = 'fiscal_code' AND e.valid = 1 AND e.value = ?)",
            cf.trim().to_ascii_uppercase(),
        );
    }
    if let Some(case) = &f.case_ref {
        let case = case.trim().to_string();
        args.push(case.clone());
        let n = args.len();
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM entities e WHERE e.ticket_id = t.id AND e.kind = 'case_ref' AND (e.value = ?{n} OR e.value LIKE '% ' || ?{n}))"
        ));
    }
    if let Some(sender) = f.sender.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let like = format!(
            "%{}%",
            sender
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        args.push(like);
        let n = args.len();
        clauses.push(format!(
            "(lower(t.sender_name) LIKE ?{n} ESCAPE '\\' OR lower(t.sender_email) LIKE ?{n} ESCAPE '\\' OR t.sender_fax LIKE ?{n} ESCAPE '\\' OR t.sender_phone LIKE ?{n} ESCAPE '\\')"
        ));
    }
    if let Some(flag) = f.needs_attention {
        clauses.push(format!("t.needs_attention = {}", if flag { 1 } else { 0 }));
    }
    if clauses.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", clauses.join(" AND ")), args)
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = query_row_cached(&tx, "PRAGMA user_version", [], |r| r.get(0))?;
        if now > i as i64 {
            tx.commit()?;
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::debug!(version = i + 1, "store migrated");
    }
    Ok(())
}

fn insert_intake(tx: &rusqlite::Connection, ticket_id: i64, i: &Intake, now: &str) -> Result<()> {
    execute_cached(
        tx,
        "INSERT INTO intakes (ticket_id, source, name, sha256, size, mtime_ns, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![ticket_id, i.source, i.name, i.sha256, i.size as i64, i.mtime_ns, now],
    )?;
    Ok(())
}

/// An event the pipeline itself records (actor `sportello`).
fn system_event(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    at: &str,
    kind: EventKind,
    detail: &serde_json::Value,
) -> Result<()> {
    insert_event(tx, ticket_id, at, "sportello", kind, detail)
}

fn insert_event(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    at: &str,
    actor: &str,
    kind: EventKind,
    detail: &serde_json::Value,
) -> Result<()> {
    execute_cached(
        tx,
        "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ticket_id, at, actor, kind.as_str(), detail.to_string()],
    )?;
    Ok(())
}

fn insert_document(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    ord: i64,
    d: &NewDocument,
) -> Result<()> {
    let doc = &d.doc;
    let page_texts =
        serde_json::to_string(&d.page_texts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    execute_cached(
        tx,
        "INSERT INTO documents (ticket_id, ord, name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
        ticket_id, ord, doc.name, doc.mime, doc.sha256, doc.size as i64, doc.pages, doc.text, doc.ocr,
        doc.ocr_confidence, doc.kind.as_str(), doc.error, page_texts, doc.signed_by
    ])?;
    Ok(())
}

/// A ticket code in a subject (`Re: [URP-7K3M-9QXD] …`), check character verified.
fn codes_in(subject: &str) -> Vec<String> {
    subject
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() >= 11 && w.matches('-').count() == 2)
        .filter_map(|w| code::parse(w).ok())
        .collect()
}

/// A message that answers one of a ticket's messages (In-Reply-To/References), or whose
/// subject carries the code of a ticket opened by the same address, joins that ticket; a
/// PEC receipt becomes an event on the ticket of the message it is about. None: file anew.
fn file_into_thread(
    tx: &rusqlite::Connection,
    new: &NewTicket,
    mail: &MailFacts,
    now: &str,
) -> Result<Option<Filed>> {
    let lookup = |id: &str| -> Result<Option<(i64, String)>> {
        Ok(query_row_cached(
            tx,
            "SELECT ticket_id, direction FROM message_ids WHERE message_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
    };
    let by_message_id = |id: &str| -> Result<Option<i64>> { Ok(lookup(id)?.map(|(t, _)| t)) };
    if let Some(pec) = mail.pec.as_ref().filter(|p| p.is_receipt()) {
        // About a message no ticket holds: filed on its own, flagged (nothing is dropped).
        let Some(ticket_id) = pec
            .msgid
            .as_deref()
            .map(by_message_id)
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        let detail = serde_json::to_value(pec).unwrap_or_default();
        system_event(tx, ticket_id, now, EventKind::PecReceipt, &detail)?;
        let code = append_documents(tx, ticket_id, new, now)?;
        return Ok(Some(Filed::Appended {
            code,
            what: format!("PEC receipt {}", pec.kind),
        }));
    }
    // The same message again (another copy, other transport headers): a duplicate.
    if let Some(id) = &mail.message_id {
        if let Some((ticket_id, direction)) = lookup(id)? {
            if direction == "in" {
                insert_intake(tx, ticket_id, &new.intake, now)?;
                let detail = serde_json::json!({"source": new.intake.source, "name": new.intake.name, "message_id": id});
                system_event(tx, ticket_id, now, EventKind::DuplicateReceived, &detail)?;
                let code: String = query_row_cached(
                    tx,
                    "SELECT code FROM tickets WHERE id = ?1",
                    [ticket_id],
                    |r| r.get(0),
                )?;
                return Ok(Some(Filed::Duplicate { code }));
            }
        }
    }
    let mut target = None;
    for id in &mail.in_reply_to {
        if let Some(t) = by_message_id(id)? {
            target = Some(t);
            break;
        }
    }
    if target.is_none() {
        if let Some(sender) = new.sender.email.as_deref() {
            for code in codes_in(&new.subject) {
                let found: Option<i64> = query_row_cached(
                    tx,
                    "SELECT id FROM tickets WHERE code = ?1 AND lower(sender_email) = lower(?2)",
                    params![code, sender],
                    |r| r.get(0),
                )
                .optional()?;
                if found.is_some() {
                    target = found;
                    break;
                }
            }
        }
    }
    let Some(ticket_id) = target else {
        return Ok(None);
    };
    let detail = serde_json::json!({
        "from": new.sender.email, "subject": new.subject, "message_id": mail.message_id,
        "channel": new.channel.as_str(),
        "documents": new.documents.iter().map(|d| d.doc.name.clone()).collect::<Vec<_>>(),
        "text": new.body.chars().take(2000).collect::<String>(),
    });
    system_event(tx, ticket_id, now, EventKind::MessageReceived, &detail)?;
    let status: String = query_row_cached(
        tx,
        "SELECT status FROM tickets WHERE id = ?1",
        [ticket_id],
        |r| r.get(0),
    )?;
    if status == "waiting" || status == "closed" {
        execute_cached(
            tx,
            "UPDATE tickets SET status = 'in_progress' WHERE id = ?1",
            [ticket_id],
        )?;
        let detail = serde_json::json!({"from": status, "to": "in_progress", "why": "the citizen wrote again"});
        system_event(tx, ticket_id, now, EventKind::StatusChanged, &detail)?;
    }
    if let Some(id) = &mail.message_id {
        execute_cached(
            tx,
            "INSERT OR IGNORE INTO message_ids (message_id, ticket_id, direction) VALUES (?1, ?2, 'in')",
            params![id, ticket_id],
        )?;
    }
    for e in &new.entities {
        execute_cached(
            tx,
            "INSERT INTO entities (ticket_id, kind, value, valid, confidence, place, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![ticket_id, e.kind.as_str(), e.value, e.valid, e.confidence, e.place, e.raw])?;
    }
    let code = append_documents(tx, ticket_id, new, now)?;
    index_ticket(tx, ticket_id)?;
    Ok(Some(Filed::Appended {
        code,
        what: "message".into(),
    }))
}

/// Adds the item's documents after the ticket's own, and its intake; returns the code.
fn append_documents(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    new: &NewTicket,
    now: &str,
) -> Result<String> {
    let next: i64 = query_row_cached(
        tx,
        "SELECT COALESCE(MAX(ord), -1) + 1 FROM documents WHERE ticket_id = ?1",
        [ticket_id],
        |r| r.get(0),
    )?;
    for (i, d) in new.documents.iter().enumerate() {
        insert_document(tx, ticket_id, next + i as i64, d)?;
    }
    insert_intake(tx, ticket_id, &new.intake, now)?;
    Ok(query_row_cached(
        tx,
        "SELECT code FROM tickets WHERE id = ?1",
        [ticket_id],
        |r| r.get(0),
    )?)
}

/// For a new ticket from a message: its Message-ID, the PEC facts, the acknowledgement.
fn record_mail(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    mail: &MailFacts,
    now: &str,
) -> Result<()> {
    if let Some(id) = &mail.message_id {
        execute_cached(
            tx,
            "INSERT OR IGNORE INTO message_ids (message_id, ticket_id, direction) VALUES (?1, ?2, 'in')",
            params![id, ticket_id],
        )?;
    }
    if let Some(pec) = &mail.pec {
        let detail = serde_json::to_value(pec).unwrap_or_default();
        system_event(tx, ticket_id, now, EventKind::PecCertified, &detail)?;
    }
    if let Some(reason) = &mail.no_auto_reply {
        let detail = serde_json::json!({"reason": reason});
        system_event(tx, ticket_id, now, EventKind::AckNotSent, &detail)?;
        return Ok(());
    }
    let Some(ack) = &mail.ack else { return Ok(()) };
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent: i64 = query_row_cached(
        tx,
        "SELECT COUNT(*) FROM outbox WHERE to_addr = ?1 AND created_at > ?2",
        params![ack.to, hour_ago],
        |r| r.get(0),
    )?;
    if recent >= ack.max_per_hour as i64 {
        let detail = serde_json::json!({"reason": format!("{} acknowledgements to {} in the last hour already", recent, ack.to)});
        system_event(tx, ticket_id, now, EventKind::AckNotSent, &detail)?;
        return Ok(());
    }
    let token: u64 = rand::Rng::gen(&mut rand::thread_rng());
    let message_id = format!("ack.{ticket_id}.{token:016x}@{}", ack.domain);
    execute_cached(
        tx,
        "INSERT INTO outbox (ticket_id, to_addr, message_id, in_reply_to, language, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![ticket_id, ack.to, message_id, mail.message_id, ack.language, now],
    )?;
    // Replies to the acknowledgement thread back to this ticket.
    execute_cached(
        tx,
        "INSERT OR IGNORE INTO message_ids (message_id, ticket_id, direction) VALUES (?1, ?2, 'out')",
        params![message_id, ticket_id],
    )?;
    let detail = serde_json::json!({"to": ack.to, "message_id": message_id});
    system_event(tx, ticket_id, now, EventKind::AckQueued, &detail)?;
    Ok(())
}

/// (Re)writes the ticket's row of the search index from its current subject, body and documents.
fn index_ticket(tx: &rusqlite::Connection, ticket_id: i64) -> Result<()> {
    let (subject, body): (String, String) = query_row_cached(
        tx,
        "SELECT subject, body FROM tickets WHERE id = ?1",
        [ticket_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt =
        tx.prepare_cached("SELECT name, text FROM documents WHERE ticket_id = ?1 ORDER BY ord")?;
    let documents = stmt
        .query_map([ticket_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    SearchText::new(
        &subject,
        &body,
        documents.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    )
    .write(tx, ticket_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{Entity, Kind};

    pub(super) fn ticket(n: usize, email: &str, case: &str) -> NewTicket {
        let e = |kind, value: &str, place: &str| Entity {
            kind,
            value: value.into(),
            valid: true,
            confidence: 1.0,
            place: place.into(),
            raw: value.into(),
        };
        NewTicket {
            channel: Channel::Email,
            received_at: format!("2010-01-0{}T00:00:00Z", n + 1),
            sender: Sender {
                email: Some(email.into()),
                ..Sender::default()
            },
            subject: format!("t{n}"),
            body: String::new(),
            topic: None,
            topic_confidence: None,
            topic_reason: None,
            secondary_topics: Vec::new(),
            topic_guesses: Vec::new(),
            office: None,
            attention: Vec::new(),
            parent: None,
            entities: vec![
                e(Kind::Email, email, "sender"),
                e(Kind::CaseRef, case, "body"),
            ],
            documents: Vec::new(),
            intake: Intake {
                source: "t".into(),
                name: format!("t{n}"),
                sha256: format!("{n:064}"),
                size: 0,
                mtime_ns: None,
            },
            mail: None,
            search_text: None,
        }
    }

    /// A message claimed by a sender that died is not handed out again, and its ticket
    /// says so; one claimed by a live sender, or sent, is left alone.
    #[test]
    fn a_message_claimed_by_a_dead_sender_is_not_sent_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut codes = Vec::new();
        for n in 0..3 {
            let mut t = ticket(n, &format!("c{n}@example.it"), "B/1");
            t.mail = Some(MailFacts {
                message_id: Some(format!("m{n}@example.it")),
                ack: Some(AckRequest {
                    to: format!("c{n}@example.it"),
                    language: "it".into(),
                    max_per_hour: 5,
                    domain: "example.it".into(),
                }),
                ..MailFacts::default()
            });
            codes.push(store.file(&t, "URP").unwrap().code().to_string());
        }
        let due = store.outbox_due(10, true).unwrap();
        assert_eq!(due.len(), 3);
        assert!(store.outbox_claim(&due[0]).unwrap());
        assert!(!store.outbox_claim(&due[0]).unwrap(), "claimed once");
        store.outbox_result(&due[0], None, 0).unwrap();
        assert!(store.outbox_claim(&due[1]).unwrap());
        assert!(store.outbox_claim(&due[2]).unwrap());
        // Claimed by this process: not handed out again, not an orphan while it lives.
        assert!(store.outbox_due(10, true).unwrap().is_empty());
        assert_eq!(store.outbox_settle_orphans(|_| false).unwrap(), 0);
        // The same claims seen as another, dead process's.
        store
            .conn
            .execute(
                "UPDATE outbox SET sending_by = 4194307 WHERE sending_by IS NOT NULL",
                [],
            )
            .unwrap();
        assert_eq!(
            store.outbox_settle_orphans(|_| true).unwrap(),
            0,
            "a live sender's"
        );
        assert_eq!(store.outbox_settle_orphans(|_| false).unwrap(), 2);
        assert!(store.outbox_due(10, true).unwrap().is_empty());
        assert_eq!(store.outbox_pending().unwrap(), 0);
        let kinds = |code: &str| -> Vec<String> {
            store
                .ticket(code)
                .unwrap()
                .events
                .iter()
                .map(|e| e.kind.clone())
                .collect()
        };
        assert!(kinds(&codes[0]).contains(&"ack_sent".to_string()));
        assert!(!kinds(&codes[0]).contains(&"ack_uncertain".to_string()));
        assert!(kinds(&codes[2]).contains(&"ack_uncertain".to_string()));
    }

    /// `sportello_rank` against SQLite's own `bm25()` over the same window: the same rows on
    /// every page, with the same scores, on the first search and on later ones (remembered
    /// phrase counts), with and without a filter, and some rows were indeed left unmeasured.
    #[test]
    fn ranking_gives_the_rows_and_scores_of_bm25() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.relax_durability_for_bulk_load().unwrap();
        const WORDS: [&str; 12] = [
            "gas",
            "allaccio",
            "contatore",
            "macerie",
            "alloggio",
            "ricostruzione",
            "acqua",
            "bolletta",
            "pratica",
            "sopralluogo",
            "voltura",
            "rimborso",
        ];
        let mut x: u64 = 7;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let tickets: Vec<NewTicket> = (0..1500)
            .map(|i| {
                let mut t = ticket(i, &format!("c{i}@x.it"), "pratica Z");
                let mut text = |n: u64| -> String {
                    let words: Vec<&str> = (0..n)
                        .map(|_| WORDS[next(WORDS.len() as u64) as usize])
                        .collect();
                    words.join(" ")
                };
                t.subject = text(1 + i as u64 % 4);
                // "pratica" in every ticket: more matches than the ranking window.
                t.body = format!("pratica {}", text(3 + (i as u64 * 7) % 60));
                if i % 3 == 0 {
                    t.channel = Channel::Fax;
                }
                t.intake.sha256 = format!("{i:064}");
                t.search_text = Some(SearchText::of(&t));
                t
            })
            .collect();
        for chunk in tickets.chunks(100) {
            let refs: Vec<&NewTicket> = chunk.iter().collect();
            for r in store.file_batch(&refs, "URP") {
                r.unwrap();
            }
        }
        let pruned_before = rank::PRUNED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(same_as_bm25(&store) > 400);
        let pruned = rank::PRUNED.load(std::sync::atomic::Ordering::Relaxed) - pruned_before;
        assert!(pruned > 0, "no row was left unmeasured");

        // Rows rewritten (an answer appended; the same words, so each phrase is in as many
        // rows as before): remembered lengths must not be used, by this connection or another.
        let tx = store.conn.unchecked_transaction().unwrap();
        for id in (1..1500).step_by(5) {
            tx.execute(
                "UPDATE tickets SET body = body || ' ' || body WHERE id = ?1",
                [id],
            )
            .unwrap();
            index_ticket(&tx, id).unwrap();
        }
        tx.commit().unwrap();
        let rewritten: i64 = store
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = 'search_rows_rewritten'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rewritten, 300);
        assert!(same_as_bm25(&Store::open(dir.path()).unwrap()) > 400);
        assert!(same_as_bm25(&store) > 400);
    }

    /// Compares `search` with `bm25()` over the same window for a few queries, pages and
    /// filters, each twice; returns how many hits were compared.
    fn same_as_bm25(store: &Store) -> usize {
        let fax = TicketFilter {
            channel: Some(Channel::Fax),
            ..TicketFilter::default()
        };
        let mut compared = 0;
        for q in [
            "gas",
            "pratica",
            "allaccio contatore",
            "\"acqua bolletta\"",
            "ricostr*",
            "alloggio -macerie",
            "voltura rimborso sopralluogo",
        ] {
            let query = crate::search::SearchQuery::parse(q).unwrap();
            for filter in [TicketFilter::default(), fax.clone()] {
                let (where_sql, mut args) = filter_sql(&filter);
                let join = if where_sql.is_empty() { "WHERE" } else { "AND" };
                args.push(query.fts.clone());
                let sql = format!(
                    "SELECT t.code, -bm25(ticket_fts, 4.0, 2.0, 1.0) FROM ticket_fts
                     JOIN tickets t ON t.id = ticket_fts.rowid {where_sql}
                     {join} ticket_fts MATCH ?{} ORDER BY ticket_fts.rowid DESC LIMIT {RANK_WINDOW}",
                    args.len()
                );
                let mut stmt = store.conn.prepare(&sql).unwrap();
                let reference: std::collections::HashMap<String, f64> = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                let mut best: Vec<f64> = reference.values().copied().collect();
                best.sort_by(|a, b| b.total_cmp(a));
                for round in 0..2 {
                    for offset in [0, 20] {
                        let page = TicketFilter {
                            limit: Some(20),
                            offset: Some(offset),
                            ..filter.clone()
                        };
                        let hits = store.search(&query, &page).unwrap();
                        let expected = best.iter().skip(offset).take(20);
                        assert_eq!(hits.len(), expected.len(), "{q} round {round}");
                        for (hit, want) in hits.iter().zip(expected) {
                            let close =
                                |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
                            assert!(close(hit.score, *want), "{q}: {} != {want}", hit.score);
                            assert!(close(reference[&hit.code], hit.score), "{q}: {}", hit.code);
                            compared += 1;
                        }
                    }
                }
            }
        }
        compared
    }

    #[test]
    fn a_batch_files_in_order_in_one_transaction_and_sees_its_own_items() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut first = ticket(0, "a@x.it", "pratica X");
        first.subject = "Allacciamento gas".into();
        first.search_text = Some(SearchText::of(&first));
        let second = ticket(1, "b@x.it", "pratica Y");
        let mut again = ticket(0, "a@x.it", "pratica X");
        again.intake.name = "t0-copy".into();
        let results = store.file_batch(&[&first, &second, &again], "URP");
        assert!(matches!(results[0], Ok(Filed::Created { .. })));
        assert!(matches!(results[1], Ok(Filed::Created { .. })));
        // The same bytes again in the same batch: recognised, not a second ticket.
        match (&results[0], &results[2]) {
            (Ok(a), Ok(Filed::Duplicate { code })) => assert_eq!(a.code(), code),
            other => panic!("{other:?}"),
        }
        // Text indexed by a worker is searchable like text indexed when filed.
        let hits = store
            .search(
                &crate::search::SearchQuery::parse("allacciamenti").unwrap(),
                &TicketFilter::default(),
            )
            .unwrap();
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn an_item_that_fails_in_a_batch_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON tickets WHEN NEW.subject = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        let first = ticket(0, "a@x.it", "pratica X");
        let mut bad = ticket(1, "b@x.it", "pratica Y");
        bad.subject = "boom".into();
        let third = ticket(2, "c@x.it", "pratica Z");
        let results = store.file_batch(&[&first, &bad, &third], "URP");
        assert!(
            matches!(results[0], Ok(Filed::Created { .. })),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], Err(e) if e.to_string().contains("refused by the test")),
            "{results:?}"
        );
        assert!(
            matches!(results[2], Ok(Filed::Created { .. })),
            "{results:?}"
        );
        let filed = store.list(&TicketFilter::default()).unwrap();
        assert_eq!(filed.len(), 2);
    }

    #[test]
    fn dossiers_follow_case_links_only_from_the_ticket_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut codes = Vec::new();
        for (n, (email, case)) in [
            ("a@x.it", "pratica X"),
            ("b@x.it", "pratica X"),
            ("b@x.it", "pratica Y"),
            ("d@x.it", "pratica Y"),
        ]
        .iter()
        .enumerate()
        {
            codes.push(
                store
                    .file(&ticket(n, email, case), "URP")
                    .unwrap()
                    .code()
                    .to_string(),
            );
        }
        let got: Vec<String> = store
            .dossier(&codes[0])
            .unwrap()
            .into_iter()
            .map(|l| l.code)
            .collect();
        let mut want = vec![codes[2].clone(), codes[1].clone()];
        want.sort_by(|a, b| b.cmp(a));
        let mut got_sorted = got.clone();
        got_sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            got_sorted, want,
            "A reaches B by the case and C through B's address, not D"
        );
    }
}
