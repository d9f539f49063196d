//! The request register: tickets, documents, events and the search index, originals beside
//! them content-addressed (`blobs`).
//!
//! This file holds the types callers see and what every backend must do with them; a
//! backend's SQL lives in its own module. Today that is `sqlite` (one SQLite database under
//! the data dir: FTS5 search with its ranking, the web app's pool of connections), one file
//! per concern. Callers see plain Rust values, so a second backend (PostgreSQL, for offices
//! that outgrow one machine) is one more module, not a change to its users.

mod any;
pub mod blobs;
#[cfg(test)]
mod conformance;
pub mod migrate;
pub mod pool;
pub mod postgres;
pub mod sqlite;
pub mod web;

/// Every concern of the register, for callers that hold a concrete store.
pub mod prelude {
    pub use super::{
        Accounts, Crashes, Dossiers, Filing, Learning, Outbox, Overview, Register, Search, Tickets,
        WorkQueue,
    };
}
pub use any::{Database, Leadership, Store, DATABASE_ENV};
pub use sqlite::SearchText;

use crate::classify::model::Example;
use crate::code;
use crate::entities::{Entity, Kind as EntityKind};
use crate::model::{
    Channel, Document, DocumentKind, DossierLink, PageText, Sender, Status, Ticket,
};
use crate::search::{SearchHit, SearchQuery};
use blobs::BlobStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use web::{QueueCounts, RecentRequest, Role, Session, Stats, TrackInfo, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Database(String),
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

/// How many of a query's newest matches are ranked (see `Store::search`).
pub const RANK_WINDOW: usize = 1000;

/// SQL (for either backend) of an event that records a classification of its ticket: a
/// `classified` event, or a `created` event holding the classification it was filed with
/// ([`crate::domain::Happened::Created`]; stores written before have a `classified` event
/// after it instead). A ticket's first such event is the classification it was filed
/// with. `"topic":` cannot occur inside a JSON string of the detail, where quotes are
/// escaped.
pub(crate) const CLASSIFYING_EVENT: &str =
    r#"(kind = 'classified' OR (kind = 'created' AND detail LIKE '%"topic":%'))"#;

/// The `created` event of a ticket filed as `new` under `protocol`, with the
/// classification it is filed with, if any.
pub(crate) fn created_event(new: &NewTicket, protocol: &str) -> crate::domain::Happened {
    crate::domain::Happened::Created {
        protocol: protocol.to_string(),
        channel: new.channel.as_str().into(),
        source: new.intake.source.clone(),
        name: new.intake.name.clone(),
        topic: new.topic.clone(),
        confidence: new.topic.as_ref().and(new.topic_confidence),
        reason: new.topic.as_ref().and(new.topic_reason.clone()),
    }
}

/// The WHERE clause of a filter over `tickets t` and its text arguments, numbered from 1 after
/// `mark` (`?` for SQLite, `$` for PostgreSQL).
pub(in crate::store) fn where_clause(f: &TicketFilter, mark: char) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let mut add = |clause: &str, value: String| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("{mark}{}", args.len())));
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
            "EXISTS (SELECT 1 FROM entities e WHERE e.ticket_id = t.id AND e.kind = 'fiscal_code' AND e.valid AND e.value = ?)",
            cf.trim().to_ascii_uppercase(),
        );
    }
    if let Some(case) = &f.case_ref {
        let case = case.trim().to_string();
        args.push(case.clone());
        let n = args.len();
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM entities e WHERE e.ticket_id = t.id AND e.kind = 'case_ref' AND (e.value = {mark}{n} OR e.value LIKE '% ' || {mark}{n}))"
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
            "(lower(t.sender_name) LIKE {mark}{n} ESCAPE '\\' OR lower(t.sender_email) LIKE {mark}{n} ESCAPE '\\' OR t.sender_fax LIKE {mark}{n} ESCAPE '\\' OR t.sender_phone LIKE {mark}{n} ESCAPE '\\')"
        ));
    }
    if let Some(flag) = f.needs_attention {
        clauses.push(format!("t.needs_attention = {flag}"));
    }
    if clauses.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", clauses.join(" AND ")), args)
    }
}

/// A lock file of the data dir (`leader.lock`, `training.lock`), opened to be locked: the
/// lock, not the file, says who holds it, and the kernel drops it with the process.
pub fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

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
                duration_secs: None,
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
    /// The same receipt by text message as well (a web request that gave an address and a
    /// mobile number).
    #[serde(default)]
    pub also_by_sms: Option<AckRequest>,
}

/// How an outbox message reaches the citizen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// By the `smtp_ack` sink, to an email address.
    #[default]
    Email,
    /// By the `sms` sink (gammu-smsd's outbox), to a phone number in E.164.
    Sms,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Email => "email",
            Via::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Via> {
        match s {
            "email" => Some(Via::Email),
            "sms" => Some(Via::Sms),
            _ => None,
        }
    }
}

/// What an automatic message to the citizen tells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Notice {
    /// Taken in charge: the tracking code and the protocol number.
    #[default]
    Acknowledgement,
    /// Their request is concluded (the ticket closed).
    Closed,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AckRequest {
    /// An email address, or a phone number in E.164 when `via` is SMS.
    pub to: String,
    #[serde(default)]
    pub via: Via,
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
    pub via: Via,
    /// What the automatic message says (ignored for a clerk's `reply`).
    pub notice: Notice,
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

/// Filing what arrives: a new ticket, a duplicate, a reply joining its thread, a PEC receipt
/// (see [`crate::domain::filing`] for the decision); protocol numbers and codes are assigned here,
/// without gaps, in the same transaction as the ticket.
pub trait Filing {
    /// Files one item in one transaction: a new ticket, or an event on the ticket that
    /// already holds the same bytes.
    fn file(&mut self, new: &NewTicket, code_prefix: &str) -> Result<Filed>;

    /// Files several items in one transaction (one wait for the disk instead of one each).
    /// Should any item fail, the whole transaction is rolled back and each item is filed in a
    /// transaction of its own, so a failure costs only its own item. (A savepoint per item did
    /// the same in one pass, but wrote every touched page to a statement journal first.)
    fn file_batch(&mut self, items: &[&NewTicket], code_prefix: &str) -> Vec<Result<Filed>>;
}

/// The poison-pill memory: items that killed the worker reading them, by SHA-256.
pub trait Crashes {
    /// Every item remembered for killing a worker: SHA-256 → (crashes, last reason).
    fn parse_crashes(&self) -> Result<HashMap<String, (u32, String)>>;

    /// Remembers one more crash while reading the item `sha256`; returns how many there
    /// have been. Committed before the item is tried again.
    fn record_parse_crash(&mut self, sha256: &str, reason: &str) -> Result<u32>;
}

/// Reading tickets and a clerk's changes to them; every change is recorded as an event.
pub trait Tickets {
    /// The whole ticket, with documents and history.
    fn ticket(&self, code_input: &str) -> Result<Ticket>;

    /// Per-page text of a ticket's document, by its position among the ticket's documents.
    fn page_texts(&self, code_input: &str, ord: usize) -> Result<Vec<PageText>>;

    /// Tickets matching `filter`, newest first.
    fn list(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>>;

    /// Moves a ticket to `status`, recording who did it; no event when nothing changes.
    fn set_status(&mut self, code_input: &str, status: Status, actor: &str) -> Result<bool>;

    /// Appends a clerk's note to a ticket's history.
    fn add_note(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()>;

    /// A clerk's summary of what a recording says: kept on the ticket (the latest one),
    /// recorded in its history, searchable; it settles the voicemail flag.
    fn set_summary(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()>;

    /// Calls `each` with every ticket, oldest first.
    fn for_each_ticket(&self, each: &mut dyn FnMut(Ticket) -> std::io::Result<()>)
        -> Result<usize>;

    fn count(&self) -> Result<u64>;

    /// Hands a ticket to an office (a back office, or back to the front office); recorded as
    /// `routed`, which the statistics count.
    fn route(&mut self, code_input: &str, office: &str, actor: &str) -> Result<bool>;

    /// Annuls a registration (DPR 445/2000 art. 54): it stays, with its number, which is
    /// never given again, marked with when, by whom, why and under which act; its history
    /// says so. Annulling twice is refused.
    fn annul(&mut self, code_input: &str, reason: &str, act: &str, actor: &str) -> Result<()>;

    /// Marks `code` as a duplicate of `of`: it is closed, points to `of`, both histories say
    /// so, and a clerk-confirmed link joins their dossiers.
    fn mark_duplicate(&mut self, code_input: &str, of_input: &str, actor: &str) -> Result<()>;

    /// Every registration made in `[from, until)` (RFC 3339 UTC instants), in protocol order:
    /// what the daily register lists.
    fn registrations_between(&self, from: &str, until: &str) -> Result<Vec<RegisterEntry>>;

    /// The changes to registrations recorded in `[from, until)`: annulments, new
    /// classifications, assignments to an office, duplicates marked; in the order they
    /// happened.
    fn register_changes_between(&self, from: &str, until: &str) -> Result<Vec<RegisterChange>>;
}

/// One registration as the daily register lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegisterEntry {
    pub code: String,
    pub protocol: String,
    pub registered_at: String,
    pub channel: Channel,
    pub sender: Sender,
    pub subject: String,
    /// The topic the registration was classified under when it was filed (a later
    /// reclassification is a change of its own day).
    pub topic: Option<String>,
    /// The originals as received: name, MIME type, SHA-256 (hex).
    pub documents: Vec<(String, String, String)>,
    /// The sender's own protocol number and date, as the request quotes them
    /// ("prot. n. 5678 del 12/03/2011").
    pub sender_protocol: Option<String>,
    pub annulled: Option<crate::model::Annulment>,
}

/// A change to a registration, as the daily register lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegisterChange {
    pub code: String,
    pub protocol: String,
    pub at: String,
    pub actor: String,
    /// The event's kind (`annulled`, `reclassified`, `routed`, `marked_duplicate`).
    pub kind: String,
    pub detail: serde_json::Value,
}

/// What the web app shows: the queue and its counts, a citizen's status lookup, the office's
/// statistics.
pub trait Overview {
    /// Status, dates and office of a ticket: all a tracking code shows.
    fn track(&self, code_input: &str) -> Result<TrackInfo>;

    /// A ticket's document by its position, with where its bytes are.
    fn document(&self, code_input: &str, ord: usize) -> Result<(Document, std::path::PathBuf)>;

    /// Tickets of a queue: as `list`, flagged and unsorted first, with paging.
    fn queue(
        &self,
        filter: &TicketFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TicketSummary>>;

    /// How many tickets match `filter`.
    fn count_matching(&self, filter: &TicketFilter) -> Result<u64>;

    fn queue_counts(&self) -> Result<QueueCounts>;

    /// Offices tickets were sent to, for the routing form.
    fn offices(&self) -> Result<Vec<String>>;

    /// The office's report over tickets received in [since, until).
    fn stats(&self, since: Option<&str>, until: Option<&str>) -> Result<Stats>;

    /// The newest tickets as they were written: what the rules editor re-classifies to show
    /// what an edit would move.
    fn recent_requests(&self, limit: usize) -> Result<Vec<RecentRequest>>;
}

/// Full-text search over tickets and their documents: accents, case and word endings ignored,
/// ranked, with snippets. Each backend compiles [`SearchQuery`] to its own language.
pub trait Search {
    /// Full-text search, best first.
    fn search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<Vec<SearchHit>>;
}

/// A person's or a case's tickets, linked by what they share (see [`crate::domain::dossier`]).
pub trait Dossiers {
    /// Identifiers of a ticket, by its code.
    fn entities(&self, code_input: &str) -> Result<Vec<Entity>>;

    /// The whole dossier around a ticket: every ticket reachable through confirmed links
    /// (the same person, the same case, by hand), newest first, each with why it is there.
    fn dossier(&self, code_input: &str) -> Result<Vec<DossierLink>>;

    /// The dossier of every ticket carrying an identifier (a fiscal code, a case number).
    fn dossier_by(&self, kind: EntityKind, value: &str) -> Result<Vec<DossierLink>>;

    /// A clerk links two tickets (same person or case) or undoes a link; both tickets get an
    /// event.
    fn set_link(&mut self, a: &str, b: &str, linked: bool, actor: &str) -> Result<()>;
}

/// Acknowledgements and replies waiting to be sent, claimed by one sender at a time.
pub trait Outbox {
    /// Acknowledgements going `via` one way that are due now (not sent, next attempt time
    /// reached; with `all`, every one not sent), oldest first.
    fn outbox_due(&self, via: Via, limit: usize, all: bool) -> Result<Vec<OutboxItem>>;

    /// Claims an outbox message for this process before it goes to the SMTP server
    /// (committed); false when another sender claimed it first.
    fn outbox_claim(&mut self, item: &OutboxItem) -> Result<bool>;

    /// Messages claimed by a sender that died before it recorded the outcome: it cannot be
    /// known whether the SMTP server took them, so they are not sent again (a citizen must
    /// not get two); each gets an event a clerk sees. `alive` tells a live sender's pid.
    fn outbox_settle_orphans(&mut self, alive: &dyn Fn(u32) -> bool) -> Result<usize>;

    /// How many acknowledgements are not sent yet.
    fn outbox_pending(&self) -> Result<i64>;

    /// Records an acknowledgement's delivery (`error` None) or a failed attempt, with an event
    /// on its ticket either way; a failed one is tried again after `retry_after` seconds.
    fn outbox_result(
        &mut self,
        item: &OutboxItem,
        error: Option<&str>,
        retry_after: i64,
    ) -> Result<()>;

    /// Queues a clerk's answer to the ticket's sender in the outbox (sent by `run`, as
    /// acknowledgements are): by email, threaded under the citizen's last message; to a text
    /// message's sender without an address, by SMS. Returns the address or number.
    fn queue_reply(
        &mut self,
        code_input: &str,
        subject: &str,
        body: &str,
        actor: &str,
        domain: &str,
    ) -> Result<String>;
}

/// What the classifier learns from: settled tickets and the labelled history, never its own
/// unreviewed guesses.
pub trait Learning {
    /// A clerk's correction (or confirmation) of a ticket's topic: recorded as an event and
    /// marked reviewed, so the model learns from it. Returns how many tickets were settled
    /// since the model was last trained.
    fn reclassify(
        &mut self,
        code_input: &str,
        topic: &str,
        office: Option<&str>,
        actor: &str,
    ) -> Result<u64>;

    /// Tickets settled since the model was last trained.
    fn settled_since_training(&self) -> Result<u64>;

    /// Keeps an office's labelled history; records already kept are skipped. Returns how
    /// many were new.
    fn import_labelled(&mut self, examples: &[Example]) -> Result<usize>;

    /// Everything the model learns from, oldest first: the labelled history, then each
    /// settled ticket (its topic now). Unsorted and never-settled tickets are not in it.
    fn training_examples(&self) -> Result<Vec<Example>>;

    /// The office's record of automatic answers: for each settled ticket filed with a topic
    /// (not `unsorted`), the confidence it was filed with and whether its settled topic is
    /// that one. Oldest first.
    fn settled_answers(&self) -> Result<Vec<(f32, bool)>>;

    /// Whether there is anything to learn from (one indexed look, not a read of it all).
    fn has_training_examples(&self) -> Result<bool>;

    /// Records that the model was just trained on what had been settled `before`: tickets
    /// settled while it trained still count towards the next training.
    fn trained(&mut self, before: u64) -> Result<()>;

    /// Tickets whose topic nobody settled (not set or confirmed by a person, not closed, not
    /// annulled), oldest first, with what the classifier reads of each: what a bulk
    /// reclassification after a rules or model change may move.
    fn unsettled_topics(&self) -> Result<Vec<Unsettled>>;

    /// Files the classifier's new reading of a ticket nobody settled: topic, confidence,
    /// reason, secondary topics and guesses, and the new topic's office (`c.office`) when it
    /// has one and no person routed the ticket elsewhere. A changed topic is a
    /// `Reclassified` event by `actor`; the ticket stays unreviewed, so the model never
    /// learns from it. Returns whether the topic changed: false, and nothing written, when a
    /// person settled the ticket meanwhile.
    fn apply_classification(
        &mut self,
        ticket_id: i64,
        c: &crate::classify::Classification,
        actor: &str,
    ) -> Result<bool>;
}

/// A ticket whose topic nobody settled, as the classifier reads it.
#[derive(Debug, Clone)]
pub struct Unsettled {
    pub id: i64,
    pub code: String,
    pub channel: String,
    pub sender_email: Option<String>,
    pub subject: String,
    /// The body, then the text of the other documents, as the classify stage reads them.
    pub text: String,
    pub topic: Option<String>,
}

/// Web accounts and sessions.
pub trait Accounts {
    fn add_user(&mut self, name: &str, role: Role, password_hash: &str) -> Result<()>;

    /// The user and their password hash, for a login.
    fn user_credentials(&self, name: &str) -> Result<Option<(User, String)>>;

    fn users(&self) -> Result<Vec<User>>;

    /// Records a session by the SHA-256 of its cookie token (a copy of the database gives no
    /// usable cookie); expired sessions are dropped on the way.
    fn create_session(
        &mut self,
        user_id: i64,
        token_sha256: &str,
        csrf: &str,
        hours: i64,
    ) -> Result<()>;

    /// The live session with this token, if any.
    fn session(&self, token_sha256: &str) -> Result<Option<Session>>;

    fn end_session(&mut self, token_sha256: &str) -> Result<()>;

    /// Wrong passwords counted for a throttle subject (see [`crate::domain::login`]), and
    /// how many seconds ago the last was; (0, 0) when none are counted. An address's count is
    /// forgotten `MAX_WAIT_SECS` after its last wrong password.
    fn login_failures(&self, subject: &str) -> Result<(u32, i64)>;

    /// Counts one more wrong password for `subject`; returns the count.
    fn record_login_failure(&mut self, subject: &str) -> Result<u32>;

    /// Forgets `subject`'s wrong passwords (a right password, an admin's unlock).
    fn clear_login_failures(&mut self, subject: &str) -> Result<()>;

    /// Every subject with wrong passwords counted: (subject, count, last at), most first.
    fn login_failure_list(&self) -> Result<Vec<(String, u32, String)>>;

    /// Counts one request of `subject` (e.g. `track:<address>`) at `now` (Unix seconds) in
    /// its fixed window of `window_secs`; true while the window holds at most `limit`.
    /// Windows over are forgotten on the way.
    fn count_request(
        &mut self,
        subject: &str,
        now: i64,
        window_secs: i64,
        limit: u32,
    ) -> Result<bool>;

    /// Keeps a new API token by its SHA-256 under a unique name, with a role.
    fn add_api_token(&mut self, name: &str, role: Role, token_sha256: &str) -> Result<()>;

    /// The live (not revoked) token with this hash: its name and role.
    fn api_token(&self, token_sha256: &str) -> Result<Option<(String, Role)>>;

    /// Every token: name, role, created at, revoked at.
    fn api_tokens(&self) -> Result<Vec<web::ApiToken>>;

    /// Revokes a token by name; false when there is no live one by that name.
    fn revoke_api_token(&mut self, name: &str) -> Result<bool>;
}

/// A queued item: the source's description of it (JSON, made and read by the caller) and its
/// original's SHA-256 in the blob store.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: i64,
    pub description: String,
    pub sha256: String,
    /// Claims so far, this one included.
    pub attempts: u32,
}

/// What became of a job that failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobFate {
    /// Queued again, not before this time (Unix seconds).
    Retry { not_before: i64 },
    /// Out of attempts: kept aside with its error, not claimed again.
    Parked,
}

/// The work queue's jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub parked: u64,
}

/// The work queue between `ingest --enqueue` (or a source) and `sportello worker` processes.
/// A claim is a lease: a worker that dies stops renewing it, and its job is claimed again once
/// the lease runs out. Completing a job files its ticket in the same transaction, and only
/// while the lease is still the worker's, so an item is never filed twice.
pub trait WorkQueue {
    /// Queues an item whose original is already in the blob store under `sha256`.
    fn enqueue(&mut self, description: &str, sha256: &str, now: i64) -> Result<i64>;

    /// Claims the oldest job due at `now` (Unix seconds): queued, or running under a lease
    /// that ran out. A job claimed `max_attempts` times without finishing (an item that kills
    /// its worker) is parked on the way instead.
    fn claim(
        &mut self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        max_attempts: u32,
    ) -> Result<Option<QueuedJob>>;

    /// Renews `worker`'s lease on a job; false when the job is no longer the worker's.
    fn heartbeat(&mut self, id: i64, worker: &str, now: i64, lease_secs: i64) -> Result<bool>;

    /// Files the job's ticket and removes the job, in one transaction; a `Conflict` (nothing
    /// filed) when the job is no longer `worker`'s.
    fn complete(
        &mut self,
        id: i64,
        worker: &str,
        new: &NewTicket,
        code_prefix: &str,
    ) -> Result<Filed>;

    /// Records a failure: queued again after a backoff that doubles with each attempt, or
    /// parked once the attempts reach `max_attempts`.
    fn fail(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        now: i64,
        max_attempts: u32,
    ) -> Result<JobFate>;

    fn job_counts(&self) -> Result<JobCounts>;

    /// Parked jobs: id, description, attempts, last error.
    fn parked_jobs(&self) -> Result<Vec<(i64, String, u32, String)>>;

    /// Running jobs: id, worker, lease end (Unix seconds).
    fn running_jobs(&self) -> Result<Vec<(i64, String, i64)>>;
}

/// Seconds before the `attempts`-th retry of a failed job: 5 s, doubling, at most 10 minutes.
pub fn job_backoff_secs(attempts: u32) -> i64 {
    (5i64 << attempts.saturating_sub(1).min(10)).min(600)
}

/// Everything a backend of the register does. Callers hold one and see only Rust values; the
/// shared store tests run against each backend.
pub trait Register:
    Filing + Crashes + Tickets + Overview + Search + Dossiers + Outbox + Learning + Accounts + WorkQueue
{
    fn blobs(&self) -> &BlobStore;

    fn data_dir(&self) -> &Path;
}
