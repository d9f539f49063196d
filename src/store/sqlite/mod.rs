//! The SQLite backend: one database file under the data dir, in WAL mode, written by one
//! thread at a time. One file per concern: `schema` (migrations), `filing` (new tickets,
//! duplicates, threads, protocol numbers), `tickets` (reading tickets and a clerk's changes),
//! `search` (the FTS5 index and searching it; `rank` its ranking), `dossier`, `outbox`,
//! `learning` (what the model learns from), `web` (accounts, sessions, queue counts,
//! statistics). This file opens the store and writes
//! the history events every concern records.

mod dossier;
mod filing;
mod learning;
mod outbox;
mod queue;
mod rank;
mod schema;
mod search;
mod tickets;
mod web;

use super::*;
use crate::domain::Happened;
use crate::entities::{Entity, Kind as EntityKind};
use crate::model::{DossierLink, Event, Ticket};
use crate::search::{Phrase, SearchHit, SearchQuery};
use crate::textnorm::stemmed_text;
use blobs::BlobStore;
use filing::*;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use schema::*;
pub use search::SearchText;
use search::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tickets::*;

/// Counters (table `counters`): tickets settled since the model was last trained (see
/// `learning`), and rewrites of existing rows of the search index (see `rank`).
const SETTLED_SINCE_TRAINING: &str = "corrections_since_training";
const SEARCH_ROWS_REWRITTEN: &str = "search_rows_rewritten";

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

    /// For a connection that serves many concurrent reads (the web app): pages are read
    /// straight from a memory map, with no copy per page and (the bundled SQLite is built with
    /// a page cache shared by every connection behind one lock) no contention between readers
    /// for that cache. Not for intake: the mapped pages would count in its memory.
    pub fn map_for_reads(&self) -> Result<()> {
        self.conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
        Ok(())
    }

    /// Leadership of the sources for this store: one `run` at a time watches folders and
    /// mailboxes; another stands by (working the queue) and takes over when the leader's
    /// process ends, however it ends (the kernel drops the lock with it). None while another
    /// process leads.
    pub fn try_lead(&self) -> Result<Option<Leadership>> {
        let path = self.data_dir.join("leader.lock");
        let io = |source| StoreError::Io {
            context: format!("the leader lock {}", path.display()),
            source,
        };
        let file = crate::store::open_lock_file(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                // Who leads, for an admin who looks (the lock, not the text, decides).
                let _ = file.set_len(0);
                let _ = std::io::Write::write_all(
                    &mut &file,
                    format!("{}\n", std::process::id()).as_bytes(),
                );
                Ok(Some(Leadership { _lock: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The connection, for the migration's bulk copy.
    pub(in crate::store) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The process that leads the sources now, if one does.
    pub fn leader(&self) -> Result<Option<u32>> {
        let path = self.data_dir.join("leader.lock");
        let Ok(file) = std::fs::File::open(&path) else {
            return Ok(None);
        };
        match file.try_lock_shared() {
            // Nobody holds it (the text is a dead leader's).
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok())),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
                context: format!("the leader lock {}", path.display()),
                source,
            }),
        }
    }

    /// For bulk loads into a fresh store (imports, benchmarks): commits no longer wait for the
    /// disk. A crash during the load can lose the last tickets, so never use it for intake.
    pub fn relax_durability_for_bulk_load(&self) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        Ok(())
    }
}

/// Held by the `run` that leads the sources (see [`Store::try_lead`]); dropping it lets
/// another take over.
#[derive(Debug)]
pub struct Leadership {
    _lock: std::fs::File,
}

impl Crashes for Store {
    fn parse_crashes(&self) -> Result<HashMap<String, (u32, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256, crashes, reason FROM parse_crashes")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, u32>(1)?, r.get(2)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn record_parse_crash(&mut self, sha256: &str, reason: &str) -> Result<u32> {
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
}

impl Register for Store {
    fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn data_dir(&self) -> &Path {
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
            happened.detail_text()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::conformance::acknowledged;
    pub(in crate::store) use crate::store::conformance::ticket;

    /// The daily register's query of a day's changes reads them through their partial
    /// index, not a scan of every event (a mismatch of the two `kind` lists falls back to
    /// the scan, silently).
    #[test]
    fn the_registers_changes_are_read_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", tickets::REGISTER_CHANGES))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(["2026-01-01", "2026-01-02"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING INDEX events_register_changes")),
            "{plan:?}"
        );
        let indexed: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events_at'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 0, "every event's entry is gone");
    }

    /// See the check: SQLite runs the old filing's statements.
    #[test]
    fn a_filing_classified_as_before_is_read_as_its_filing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        crate::store::conformance::a_filing_classified_as_before_is_read_as_its_filing(
            &mut store,
            |s, sql| s.conn.execute_batch(sql).unwrap(),
        );
    }

    /// A message claimed by a sender that died is not handed out again, and its ticket
    /// says so; one claimed by a live sender, or sent, is left alone.
    #[test]
    fn a_message_claimed_by_a_dead_sender_is_not_sent_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut codes = Vec::new();
        for n in 0..3 {
            let t = acknowledged(n, &format!("c{n}@example.it"), &format!("m{n}@example.it"));
            codes.push(store.file(&t, "URP").unwrap().code().to_string());
        }
        let due = store.outbox_due(Via::Email, 10, true).unwrap();
        assert_eq!(due.len(), 3);
        assert!(store.outbox_claim(&due[0]).unwrap());
        assert!(!store.outbox_claim(&due[0]).unwrap(), "claimed once");
        store.outbox_result(&due[0], None, 0).unwrap();
        assert!(store.outbox_claim(&due[1]).unwrap());
        assert!(store.outbox_claim(&due[2]).unwrap());
        // Claimed by this process: not handed out again, not an orphan while it lives.
        assert!(store.outbox_due(Via::Email, 10, true).unwrap().is_empty());
        assert_eq!(store.outbox_settle_orphans(&|_| false).unwrap(), 0);
        // The same claims seen as another, dead process's.
        store
            .conn
            .execute(
                "UPDATE outbox SET sending_by = 4194307 WHERE sending_by IS NOT NULL",
                [],
            )
            .unwrap();
        assert_eq!(
            store.outbox_settle_orphans(&|_| true).unwrap(),
            0,
            "a live sender's"
        );
        assert_eq!(store.outbox_settle_orphans(&|_| false).unwrap(), 2);
        assert!(store.outbox_due(Via::Email, 10, true).unwrap().is_empty());
        assert_eq!(store.outbox_pending().unwrap(), 0);
        let kinds = |code: &str| -> Vec<String> {
            store
                .ticket(code)
                .unwrap()
                .events
                .iter()
                .map(|e| e.kind().to_string())
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

    /// Number, dates, sender, subject and the documents' fingerprints are written once, in
    /// the schema itself: no code path, and no hand-written SQL, can edit or delete them.
    #[test]
    fn registration_fields_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut t = ticket(0, "a@x.it", "pratica R");
        t.documents = vec![NewDocument::original(
            "lettera.pdf".into(),
            "application/pdf",
            "ab".repeat(32),
            10,
        )];
        let code = store.file(&t, "URP").unwrap().code().to_string();
        for sql in [
            "UPDATE tickets SET subject = 'altro'",
            "UPDATE tickets SET sender_email = 'b@x.it'",
            "UPDATE tickets SET protocol_number = 7",
            "UPDATE tickets SET registered_at = '2020-01-01T00:00:00Z'",
            "DELETE FROM tickets",
            "UPDATE documents SET sha256 = 'cd'",
            "DELETE FROM documents",
        ] {
            let err = store.conn.execute(sql, []).unwrap_err().to_string();
            assert!(
                err.contains("written once") || err.contains("never deleted"),
                "{sql}: {err}"
            );
        }
        // An annulment is written once too: it cannot be undone or rewritten.
        store.annul(&code, "oggetto errato", "", "admin").unwrap();
        for sql in [
            "UPDATE tickets SET annulled_at = NULL",
            "UPDATE tickets SET annul_reason = 'altro'",
        ] {
            let err = store.conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("annulment is written once"), "{sql}: {err}");
        }
        // What a clerk changes still changes.
        assert!(store.route(&code, "Servizio gas", "anna").unwrap());
        assert!(store.set_status(&code, Status::Closed, "anna").unwrap());
        let kept = store.ticket(&code).unwrap();
        assert_eq!((kept.subject.as_str(), kept.documents.len()), ("t0", 1));
    }
}
