//! The schema: migrations applied in order when a store is opened.

use super::*;

/// Schema migrations, applied in order, each in its own transaction; `PRAGMA user_version`
/// records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // A registration is written once (DPR 445/2000 art. 53): its number, dates, channel,
    // sender and subject, and each document's fingerprint, are never edited and nothing of
    // it is deleted; a wrong one is annulled and registered again, as events already are.
    r#"
CREATE TRIGGER tickets_registration_written_once
BEFORE UPDATE OF code, protocol_year, protocol_number, channel, received_at, registered_at,
    sender_name, sender_email, sender_fax, sender_phone, subject, intake_sha256 ON tickets
BEGIN SELECT RAISE(ABORT, 'a registration is written once: annul it and register again'); END;
CREATE TRIGGER tickets_never_deleted BEFORE DELETE ON tickets
BEGIN SELECT RAISE(ABORT, 'a registration is never deleted: annul it'); END;
CREATE TRIGGER documents_fingerprint_written_once
BEFORE UPDATE OF ticket_id, ord, name, mime, sha256, size ON documents
BEGIN SELECT RAISE(ABORT, 'a registered document is written once'); END;
CREATE TRIGGER documents_never_deleted BEFORE DELETE ON documents
BEGIN SELECT RAISE(ABORT, 'a registered document is never deleted'); END;
"#,
    // Acknowledgements and replies by text message beside those by email: each sink takes
    // its own.
    r#"
ALTER TABLE outbox ADD COLUMN via TEXT NOT NULL DEFAULT 'email';
"#,
    // Voicemail: how long a recording plays, and the summary a clerk writes of what was
    // said (searchable; not part of the registration, so it may be rewritten).
    r#"
ALTER TABLE documents ADD COLUMN duration_ms INTEGER;
ALTER TABLE tickets ADD COLUMN summary TEXT;
"#,
    // Wrong passwords by account and by address (login throttling), in the store so every
    // web server behind a proxy sees the same counts.
    r#"
CREATE TABLE login_failures (
    subject TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
);
"#,
    // Notices to the citizen beside acknowledgements and replies: `closed` when their
    // request is concluded.
    r#"
ALTER TABLE outbox ADD COLUMN notice TEXT;
"#,
    // API tokens for other systems: kept by their SHA-256 (a copy of the database gives no
    // usable token), each with a role; a revoked one stays listed, refused.
    r#"
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"#,
    // Annulment instead of editing (DPR 445/2000 art. 54): the registration stays, marked
    // annulled with when, by whom, why and under which act; once written, never changed.
    r#"
ALTER TABLE tickets ADD COLUMN annulled_at TEXT;
ALTER TABLE tickets ADD COLUMN annulled_by TEXT;
ALTER TABLE tickets ADD COLUMN annul_reason TEXT;
ALTER TABLE tickets ADD COLUMN annul_act TEXT;
CREATE TRIGGER tickets_annulment_written_once
BEFORE UPDATE OF annulled_at, annulled_by, annul_reason, annul_act ON tickets
WHEN OLD.annulled_at IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'an annulment is written once'); END;
"#,
    // The daily register reads a day's registrations and the day's changes to them.
    r#"
CREATE INDEX tickets_registered ON tickets(registered_at);
CREATE INDEX events_at ON events(at);
"#,
    // Per-address request limits (tracking lookups, the citizens' form and API), in the store
    // so every web server behind a proxy counts the same requests.
    r#"
CREATE TABLE request_windows (
    subject TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    hits INTEGER NOT NULL
);
CREATE INDEX request_windows_start ON request_windows(window_start);
"#,
    // The work queue: items queued by `ingest --enqueue` (originals already in the blob
    // store), claimed by `sportello worker` processes under a lease. A job leaves the table
    // in the transaction that files its ticket; a poison item stays, parked.
    r#"
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'parked')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    worker TEXT,
    lease_until INTEGER,
    last_error TEXT,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, not_before);
"#,
    // The daily register reads a day's changes to registrations (annulled, reclassified,
    // routed, marked duplicate) by their time: its index holds those only. Every event had
    // an entry, each ticket's `created` and `classified` among them, a write each at filing
    // for entries no query reads. The register's query repeats the condition, which lets the
    // planner use the partial index; comparisons, not `IN`, which SQLite
    // checks by building a table of the list at every row inserted (that cost filing more
    // than the entry it saved).
    r#"
DROP INDEX events_at;
CREATE INDEX events_register_changes ON events(at)
    WHERE (kind = 'annulled' OR kind = 'reclassified' OR kind = 'routed' OR kind = 'marked_duplicate');
"#,
];

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
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
