//! The request register: tickets, documents, events and the search index in one SQLite
//! database under the data dir, originals beside it content-addressed.
//!
//! All SQL of the project lives in this module, one file per concern: `schema` (migrations),
//! `filing` (new tickets, duplicates, threads, protocol numbers), `tickets` (reading tickets
//! and a clerk's changes), `search` (the index and searching it; `rank` its ranking),
//! `dossier`, `outbox`, `learning` (what the model learns from), `web` (accounts, sessions,
//! queue counts, statistics). This file holds the types callers see, opening the store, and
//! the history events every concern writes. Callers see plain Rust values, so a second
//! backend (PostgreSQL for offices that outgrow one machine) replaces these files, not their
//! users.

pub mod blobs;
mod dossier;
mod filing;
mod learning;
mod outbox;
pub mod pool;
mod rank;
mod schema;
mod search;
mod tickets;
pub mod web;

use crate::code;
use crate::domain::Happened;
use crate::entities::{Entity, Kind as EntityKind};
use crate::model::{
    Channel, Document, DocumentKind, DossierLink, Event, PageText, Sender, Status, Ticket,
};
use crate::search::{Phrase, SearchHit, SearchQuery};
use crate::textnorm::stemmed_text;
use blobs::BlobStore;
use filing::*;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use schema::*;
pub use search::SearchText;
use search::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tickets::*;

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

impl NewTicket {
    /// An item that has just arrived: its channel, time, sender and intake; nothing read,
    /// classified or attached yet.
    pub fn arriving(
        channel: Channel,
        received_at: String,
        sender: Sender,
        intake: Intake,
    ) -> NewTicket {
        NewTicket {
            channel,
            received_at,
            sender,
            subject: String::new(),
            body: String::new(),
            topic: None,
            topic_confidence: None,
            topic_reason: None,
            secondary_topics: Vec::new(),
            topic_guesses: Vec::new(),
            office: None,
            attention: Vec::new(),
            parent: None,
            entities: Vec::new(),
            documents: Vec::new(),
            intake,
            mail: None,
            search_text: None,
        }
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

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
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

impl Store {}

/// An event the pipeline itself records (actor `sportello`).
fn system_event(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    at: &str,
    happened: &Happened,
) -> Result<()> {
    insert_event(tx, ticket_id, at, "sportello", happened)
}

fn insert_event(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    at: &str,
    actor: &str,
    happened: &Happened,
) -> Result<()> {
    execute_cached(
        tx,
        "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ticket_id,
            at,
            actor,
            happened.kind().as_str(),
            happened.detail().to_string()
        ],
    )?;
    Ok(())
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
        let intake = Intake {
            source: "t".into(),
            name: format!("t{n}"),
            sha256: format!("{n:064}"),
            size: 0,
            mtime_ns: None,
        };
        let sender = Sender {
            email: Some(email.into()),
            ..Sender::default()
        };
        let mut t = NewTicket::arriving(
            Channel::Email,
            format!("2010-01-0{}T00:00:00Z", n + 1),
            sender,
            intake,
        );
        t.subject = format!("t{n}");
        t.entities = vec![
            e(Kind::Email, email, "sender"),
            e(Kind::CaseRef, case, "body"),
        ];
        t
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
                args.push(search::Fts5::of(&query).expr);
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
