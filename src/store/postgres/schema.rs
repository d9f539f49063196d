//! The schema: migrations applied in order when a store is opened, under an advisory lock so
//! that machines opening the same database at once migrate it once.

use super::*;

/// Held (per transaction) while migrating.
const MIGRATION_LOCK: i64 = 0x5370_6f72_7465_6c01;

/// Schema migrations, applied in order, each in its own transaction; `schema_version` records
/// how many ran. The first is the SQLite schema's end state: there was no earlier PostgreSQL
/// store to upgrade.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tickets (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    protocol_year BIGINT NOT NULL,
    protocol_number BIGINT NOT NULL,
    channel TEXT NOT NULL,
    received_at TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    sender_name TEXT, sender_email TEXT, sender_fax TEXT, sender_phone TEXT,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    topic TEXT, topic_confidence DOUBLE PRECISION, topic_reason TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    office TEXT,
    needs_attention BOOLEAN NOT NULL DEFAULT FALSE,
    attention_reason TEXT,
    parent_code TEXT,
    intake_sha256 TEXT UNIQUE,
    topic_reviewed BOOLEAN NOT NULL DEFAULT FALSE,
    secondary_topics TEXT NOT NULL DEFAULT '[]',
    topic_guesses TEXT NOT NULL DEFAULT '[]',
    summary TEXT,
    annulled_at TEXT, annulled_by TEXT, annul_reason TEXT, annul_act TEXT,
    UNIQUE (protocol_year, protocol_number)
);
CREATE INDEX tickets_received ON tickets(received_at);
CREATE INDEX tickets_status ON tickets(status, topic);
CREATE INDEX tickets_sender_email ON tickets(sender_email);
CREATE INDEX tickets_reviewed ON tickets(topic_reviewed);
CREATE INDEX tickets_sender_name ON tickets(sender_name);
CREATE INDEX tickets_office ON tickets(office);
CREATE INDEX tickets_registered ON tickets(registered_at);
CREATE TABLE documents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    ord BIGINT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    pages BIGINT,
    text TEXT NOT NULL DEFAULT '',
    ocr BOOLEAN NOT NULL DEFAULT FALSE,
    ocr_confidence DOUBLE PRECISION,
    kind TEXT NOT NULL,
    error TEXT,
    page_texts TEXT NOT NULL DEFAULT '[]',
    signed_by TEXT,
    duration_ms BIGINT
);
CREATE INDEX documents_ticket ON documents(ticket_id, ord);
CREATE INDEX documents_sha ON documents(sha256);
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_ticket ON events(ticket_id, id);
CREATE INDEX events_at ON events(at);
CREATE TABLE protocol_counters (year BIGINT PRIMARY KEY, last BIGINT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE intakes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT,
    at TEXT NOT NULL
);
CREATE INDEX intakes_sha ON intakes(sha256);
CREATE INDEX intakes_ticket ON intakes(ticket_id);
-- The search index: the folded, stemmed words (stemmed by sportello itself, so both backends
-- find the same tickets for the same query) as a tsvector, subject weighted A, body B,
-- documents C.
CREATE TABLE ticket_search (
    ticket_id BIGINT PRIMARY KEY REFERENCES tickets(id),
    words TSVECTOR NOT NULL
);
CREATE INDEX ticket_search_words ON ticket_search USING GIN (words);
CREATE TABLE entities (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    valid BOOLEAN NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    place TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE INDEX entities_lookup ON entities(kind, value);
CREATE INDEX entities_ticket ON entities(ticket_id);
CREATE TABLE manual_links (
    a BIGINT NOT NULL REFERENCES tickets(id),
    b BIGINT NOT NULL REFERENCES tickets(id),
    linked BOOLEAN NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE TABLE message_ids (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    message_id TEXT PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    direction TEXT NOT NULL
);
CREATE INDEX message_ids_ticket ON message_ids(ticket_id);
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    to_addr TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    in_reply_to TEXT,
    language TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at TEXT,
    reply_subject TEXT,
    reply_body TEXT,
    sent_by TEXT,
    sending_by BIGINT,
    uncertain TEXT,
    via TEXT NOT NULL DEFAULT 'email',
    notice TEXT
);
CREATE INDEX outbox_due ON outbox(sent_at, next_attempt_at);
CREATE INDEX outbox_to ON outbox(to_addr, created_at);
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE parse_crashes (
    sha256 TEXT PRIMARY KEY,
    crashes BIGINT NOT NULL,
    reason TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE labelled_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    topic TEXT NOT NULL,
    channel TEXT,
    sender_email TEXT,
    added_at TEXT NOT NULL,
    -- By hash: a long body would overflow a btree entry.
    fingerprint TEXT NOT NULL UNIQUE
);
CREATE TABLE login_failures (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE request_windows (
    subject TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
);
CREATE INDEX request_windows_start ON request_windows(window_start);
CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    description TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'parked')),
    attempts BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL,
    worker TEXT,
    lease_until BIGINT,
    last_error TEXT,
    enqueued_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, not_before);

-- Events are history: never changed, never removed. A registration is written once (DPR
-- 445/2000 art. 53-54): a wrong one is annulled, and an annulment is written once too.
CREATE FUNCTION sportello_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;
CREATE FUNCTION sportello_annulment_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.annulled_at IS NOT NULL AND (NEW.annulled_at IS DISTINCT FROM OLD.annulled_at
        OR NEW.annulled_by IS DISTINCT FROM OLD.annulled_by
        OR NEW.annul_reason IS DISTINCT FROM OLD.annul_reason
        OR NEW.annul_act IS DISTINCT FROM OLD.annul_act) THEN
        RAISE EXCEPTION 'an annulment is written once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION sportello_refuse('events are append-only');
CREATE TRIGGER tickets_registration_written_once
    BEFORE UPDATE OF code, protocol_year, protocol_number, channel, received_at, registered_at,
        sender_name, sender_email, sender_fax, sender_phone, subject, intake_sha256 ON tickets
    FOR EACH ROW EXECUTE FUNCTION sportello_refuse('a registration is written once: annul it and register again');
CREATE TRIGGER tickets_never_deleted BEFORE DELETE ON tickets
    FOR EACH ROW EXECUTE FUNCTION sportello_refuse('a registration is never deleted: annul it');
CREATE TRIGGER tickets_annulment_written_once
    BEFORE UPDATE OF annulled_at, annulled_by, annul_reason, annul_act ON tickets
    FOR EACH ROW EXECUTE FUNCTION sportello_annulment_once();
CREATE TRIGGER documents_fingerprint_written_once
    BEFORE UPDATE OF ticket_id, ord, name, mime, sha256, size ON documents
    FOR EACH ROW EXECUTE FUNCTION sportello_refuse('a registered document is written once');
CREATE TRIGGER documents_never_deleted BEFORE DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION sportello_refuse('a registered document is never deleted');
"#,
    // Several machines send from one outbox: a claim names the machine beside the process, so
    // a sender is judged dead only by a process of its own machine.
    r#"
ALTER TABLE outbox ADD COLUMN sending_host TEXT;
"#,
    // A machine that never comes back cannot judge its own senders: a claim records when it
    // was made, and another machine settles it once it is far older than any sending takes.
    r#"
ALTER TABLE outbox ADD COLUMN sending_since TEXT;
"#,
    // A claim in one statement, one round trip: it was five (begin, the setting, the select,
    // the update, commit), and workers claim once per item. See `WorkQueue::claim`.
    r#"
CREATE FUNCTION sportello_claim(p_worker TEXT, p_now BIGINT, p_lease BIGINT, p_max BIGINT)
RETURNS TABLE (job_id BIGINT, job_description TEXT, job_sha256 TEXT, job_attempts BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    j RECORD;
BEGIN
    -- Bookkeeping: lost in a crash of the server, a claim only means the job is claimed
    -- again sooner. Filing, and completing a job with it, wait for the disk.
    PERFORM set_config('synchronous_commit', 'off', true);
    LOOP
        SELECT jobs.id, jobs.description, jobs.sha256, jobs.attempts INTO j FROM jobs
         WHERE (jobs.state = 'queued' AND jobs.not_before <= p_now)
            OR (jobs.state = 'running' AND jobs.lease_until < p_now)
         ORDER BY jobs.id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF j.attempts >= p_max THEN
            -- Claimed that often and never finished nor failed: it takes its worker down.
            UPDATE jobs SET state = 'parked', worker = NULL, lease_until = NULL,
                last_error = COALESCE(last_error || '; ', '')
                    || 'its worker stopped without finishing it ' || j.attempts || ' times'
             WHERE jobs.id = j.id;
            CONTINUE;
        END IF;
        UPDATE jobs SET state = 'running', worker = p_worker, lease_until = p_now + p_lease,
            attempts = jobs.attempts + 1
         WHERE jobs.id = j.id;
        job_id := j.id;
        job_description := j.description;
        job_sha256 := j.sha256;
        job_attempts := j.attempts + 1;
        RETURN NEXT;
        RETURN;
    END LOOP;
END $$;
"#,
    // The daily register reads a day's changes to registrations (annulled, reclassified,
    // routed, marked duplicate) by their time: its index holds those only. Every event had
    // an entry, each ticket's `created` and `classified` among them, a write each at filing
    // for entries no query reads. The register's query names the same kinds, which lets the
    // planner use the partial index.
    r#"
DROP INDEX events_at;
CREATE INDEX events_register_changes ON events(at)
    WHERE kind IN ('annulled', 'reclassified', 'routed', 'marked_duplicate');
"#,
];

pub(super) fn migrate(client: &mut Client, url: &str) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let found: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(r) => r.try_get(0)?,
        None => {
            tx.execute("INSERT INTO schema_version VALUES (0)", &[])?;
            0
        }
    };
    if found > known {
        return Err(StoreError::TooNew {
            path: PathBuf::from(redacted(url)),
            found,
            known,
        });
    }
    // One transaction, under the lock: another machine opening now waits, then finds it done.
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)])?;
        tracing::debug!(version = i + 1, "store migrated");
    }
    tx.commit()?;
    Ok(())
}
