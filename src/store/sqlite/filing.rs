//! Filing: a new ticket, a duplicate of one, or a reply or PEC receipt joining its thread;
//! protocol numbers and codes; the acknowledgement an item asks for.

use super::*;
use crate::domain::filing::{decide, reopened_by_message, Direction, Lookups, Plan, TicketId};

pub(super) use crate::domain::filing::protocol as protocol_string;

/// The filing decision's questions (see [`crate::domain::filing`]), answered inside the
/// filing transaction.
struct InTx<'a>(&'a rusqlite::Connection);

impl Lookups for InTx<'_> {
    type Error = StoreError;

    fn ticket_with_bytes(&mut self, sha256: &str) -> Result<Option<(TicketId, String)>> {
        Ok(query_row_cached(
            self.0,
            "SELECT id, code FROM tickets WHERE intake_sha256 = ?1",
            [sha256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
    }

    fn arrival_seen(&mut self, ticket: TicketId, i: &Intake) -> Result<bool> {
        Ok(query_row_cached(
            self.0,
            "SELECT EXISTS(SELECT 1 FROM intakes WHERE ticket_id = ?1 AND source = ?2 AND name = ?3
               AND size = ?4 AND mtime_ns IS ?5)",
            params![ticket, i.source, i.name, i.size as i64, i.mtime_ns],
            |r| r.get(0),
        )?)
    }

    fn message(&mut self, message_id: &str) -> Result<Option<(TicketId, Direction)>> {
        let found: Option<(TicketId, String)> = query_row_cached(
            self.0,
            "SELECT ticket_id, direction FROM message_ids WHERE message_id = ?1",
            [message_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
        let direction = |d: &str| {
            if d == Direction::In.as_str() {
                Direction::In
            } else {
                Direction::Out
            }
        };
        Ok(found.map(|(t, d)| (t, direction(&d))))
    }

    fn ticket_of_sender(&mut self, code: &str, sender_email: &str) -> Result<Option<TicketId>> {
        Ok(query_row_cached(
            self.0,
            "SELECT id FROM tickets WHERE code = ?1 AND lower(sender_email) = lower(?2)",
            params![code, sender_email],
            |r| r.get(0),
        )
        .optional()?)
    }
}

/// Files one item inside the caller's transaction (see [`Store::file`]): decides what it
/// becomes, then writes that.
pub(super) fn file_in<'a>(
    tx: &rusqlite::Connection,
    new: &'a NewTicket,
    code_prefix: &str,
    owed: &mut Vec<Indexing<'a>>,
) -> Result<Filed> {
    let now = now_rfc3339();
    match decide(new, &mut InTx(tx))? {
        Plan::AlreadyFiled { code, .. } => Ok(Filed::AlreadyFiled { code }),
        Plan::SameBytes { ticket, code } => {
            let i = &new.intake;
            insert_intake(tx, ticket, i, &now)?;
            let happened = Happened::DuplicateReceived {
                source: i.source.clone(),
                name: i.name.clone(),
                sha256: Some(i.sha256.clone()),
                message_id: None,
            };
            system_event(tx, ticket, &now, &happened)?;
            Ok(Filed::Duplicate { code })
        }
        Plan::SameMessage { ticket, message_id } => {
            let i = &new.intake;
            insert_intake(tx, ticket, i, &now)?;
            let happened = Happened::DuplicateReceived {
                source: i.source.clone(),
                name: i.name.clone(),
                sha256: None,
                message_id: Some(message_id),
            };
            system_event(tx, ticket, &now, &happened)?;
            Ok(Filed::Duplicate {
                code: code_of(tx, ticket)?,
            })
        }
        Plan::PecReceipt { ticket } => {
            let pec = new.mail.as_ref().and_then(|m| m.pec.as_ref());
            let happened = Happened::PecReceipt(pec.cloned().unwrap_or_default());
            system_event(tx, ticket, &now, &happened)?;
            let code = append_documents(tx, ticket, new, &now)?;
            Ok(Filed::Appended {
                code,
                what: format!("PEC receipt {}", pec.map_or("", |p| p.kind.as_str())),
            })
        }
        Plan::JoinsThread { ticket } => {
            owed.push(Indexing::Again(ticket));
            join_thread(tx, ticket, new, &now)
        }
        Plan::New => {
            let (filed, ticket) = create(tx, new, code_prefix, &now)?;
            owed.push(Indexing::New(ticket, new));
            Ok(filed)
        }
    }
}

fn code_of(tx: &rusqlite::Connection, ticket: TicketId) -> Result<String> {
    Ok(query_row_cached(
        tx,
        "SELECT code FROM tickets WHERE id = ?1",
        [ticket],
        |r| r.get(0),
    )?)
}

/// A search-index write that filing owes, done by [`write_index`] once every item of the
/// transaction is in. FTS5 writes the rows it holds as a new segment of the index whenever a
/// statement opens a savepoint, as the protocol counter's upsert does for every ticket:
/// indexed as each was filed, every ticket became a segment of its own, merged again later
/// (38% of the instructions of an `ingest` of plain messages). Nothing in filing reads the
/// index.
pub(super) enum Indexing<'a> {
    /// A new ticket, with its search text.
    New(i64, &'a NewTicket),
    /// A ticket whose row must be written again from the store (a message joined it).
    Again(i64),
}

/// The index writes `owed` by filings of this transaction, each ticket once: a ticket a
/// message joined is written from the store, after everything else (it may be new in this
/// same batch, its row then written once, with the message's words).
pub(super) fn write_index(tx: &rusqlite::Connection, owed: Vec<Indexing<'_>>) -> Result<()> {
    let mut again: Vec<i64> = owed
        .iter()
        .filter_map(|o| match o {
            Indexing::Again(ticket) => Some(*ticket),
            Indexing::New(..) => None,
        })
        .collect();
    again.sort_unstable();
    again.dedup();
    for o in owed {
        if let Indexing::New(ticket, new) = o {
            if again.contains(&ticket) {
                continue;
            }
            match &new.search_text {
                Some(t) => t.write(tx, ticket)?,
                None => SearchText::of(new).write(tx, ticket)?,
            }
        }
    }
    for ticket in again {
        index_ticket(tx, ticket)?;
    }
    Ok(())
}

/// A new ticket: protocol number, tracking code, documents, entities, history (its search
/// row is owed: [`Indexing`]).
fn create(
    tx: &rusqlite::Connection,
    new: &NewTicket,
    code_prefix: &str,
    now: &str,
) -> Result<(Filed, i64)> {
    let year = crate::domain::filing::protocol_year(now)
        .ok_or_else(|| StoreError::Corrupt(format!("clock gave {now}")))?;
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
    insert_intake(tx, ticket_id, &new.intake, now)?;
    let protocol = protocol_string(year, number);
    let created = crate::store::created_event(new, &protocol);
    system_event(tx, ticket_id, now, &created)?;
    if let Some(reason) = &attention {
        let flagged = Happened::NeedsAttention {
            reason: reason.clone(),
        };
        system_event(tx, ticket_id, now, &flagged)?;
    }
    insert_entities(tx, ticket_id, &new.entities)?;
    if let Some(mail) = &new.mail {
        record_mail(tx, ticket_id, mail, now)?;
    }
    Ok((Filed::Created { code, protocol }, ticket_id))
}

pub(super) fn insert_intake(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    i: &Intake,
    now: &str,
) -> Result<()> {
    execute_cached(
        tx,
        "INSERT INTO intakes (ticket_id, source, name, sha256, size, mtime_ns, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![ticket_id, i.source, i.name, i.sha256, i.size as i64, i.mtime_ns, now],
    )?;
    Ok(())
}

pub(super) fn insert_document(
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
        "INSERT INTO documents (ticket_id, ord, name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
        ticket_id, ord, doc.name, doc.mime, doc.sha256, doc.size as i64, doc.pages, doc.text, doc.ocr,
        doc.ocr_confidence, doc.kind.as_str(), doc.error, page_texts, doc.signed_by,
        doc.duration_secs.map(|s| (s * 1000.0).round() as i64)
    ])?;
    Ok(())
}

/// A Message-ID of the ticket's thread: answers to it join the ticket.
pub(super) fn remember_message(
    tx: &rusqlite::Connection,
    message_id: &str,
    ticket_id: TicketId,
    direction: Direction,
) -> Result<()> {
    execute_cached(
        tx,
        "INSERT OR IGNORE INTO message_ids (message_id, ticket_id, direction) VALUES (?1, ?2, ?3)",
        params![message_id, ticket_id, direction.as_str()],
    )?;
    Ok(())
}

fn insert_entities(
    tx: &rusqlite::Connection,
    ticket_id: TicketId,
    entities: &[Entity],
) -> Result<()> {
    for e in entities {
        execute_cached(
            tx,
            "INSERT INTO entities (ticket_id, kind, value, valid, confidence, place, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![ticket_id, e.kind.as_str(), e.value, e.valid, e.confidence, e.place, e.raw],
        )?;
    }
    Ok(())
}

/// A citizen's message joins their ticket: its history, documents, entities and index; a
/// ticket that waited for them, or was closed, is open again.
fn join_thread(
    tx: &rusqlite::Connection,
    ticket_id: TicketId,
    new: &NewTicket,
    now: &str,
) -> Result<Filed> {
    let received = Happened::MessageReceived {
        from: new.sender.email.clone(),
        subject: new.subject.clone(),
        message_id: new.mail.as_ref().and_then(|m| m.message_id.clone()),
        channel: new.channel.as_str().into(),
        documents: new.documents.iter().map(|d| d.doc.name.clone()).collect(),
        text: new.body.chars().take(2000).collect(),
    };
    system_event(tx, ticket_id, now, &received)?;
    let status: String = query_row_cached(
        tx,
        "SELECT status FROM tickets WHERE id = ?1",
        [ticket_id],
        |r| r.get(0),
    )?;
    let status: Status = status
        .parse()
        .map_err(|e: crate::model::UnknownName| StoreError::Corrupt(e.to_string()))?;
    if let Some(to) = reopened_by_message(status) {
        execute_cached(
            tx,
            "UPDATE tickets SET status = ?1 WHERE id = ?2",
            params![to.as_str(), ticket_id],
        )?;
        let reopened = Happened::StatusChanged {
            from: status.as_str().into(),
            to: to.as_str().into(),
            why: Some("the citizen wrote again".into()),
        };
        system_event(tx, ticket_id, now, &reopened)?;
    }
    if let Some(id) = new.mail.as_ref().and_then(|m| m.message_id.as_ref()) {
        remember_message(tx, id, ticket_id, Direction::In)?;
    }
    insert_entities(tx, ticket_id, &new.entities)?;
    let code = append_documents(tx, ticket_id, new, now)?;
    Ok(Filed::Appended {
        code,
        what: "message".into(),
    })
}

/// Adds the item's documents after the ticket's own, and its intake; returns the code.
pub(super) fn append_documents(
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
pub(super) fn record_mail(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    mail: &MailFacts,
    now: &str,
) -> Result<()> {
    if let Some(id) = &mail.message_id {
        remember_message(tx, id, ticket_id, Direction::In)?;
    }
    if let Some(pec) = &mail.pec {
        system_event(tx, ticket_id, now, &Happened::PecCertified(pec.clone()))?;
    }
    if let Some(reason) = &mail.no_auto_reply {
        let not_sent = Happened::AckNotSent {
            reason: reason.clone(),
        };
        system_event(tx, ticket_id, now, &not_sent)?;
        return Ok(());
    }
    for ack in mail.ack.iter().chain(&mail.also_by_sms) {
        queue_ack(tx, ticket_id, ack, mail.message_id.as_deref(), now)?;
    }
    Ok(())
}

/// Queues one acknowledgement in the outbox, unless its address had its hourly share.
fn queue_ack(
    tx: &rusqlite::Connection,
    ticket_id: i64,
    ack: &crate::store::AckRequest,
    in_reply_to: Option<&str>,
    now: &str,
) -> Result<()> {
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent: i64 = query_row_cached(
        tx,
        "SELECT COUNT(*) FROM outbox WHERE to_addr = ?1 AND created_at > ?2",
        params![ack.to, hour_ago],
        |r| r.get(0),
    )?;
    if let Some(reason) =
        crate::domain::filing::ack_capped(recent as u64, ack.max_per_hour, &ack.to)
    {
        system_event(tx, ticket_id, now, &Happened::AckNotSent { reason })?;
        return Ok(());
    }
    let token: u64 = rand::Rng::gen(&mut rand::thread_rng());
    let message_id = format!("ack.{ticket_id}.{token:016x}@{}", ack.domain);
    execute_cached(
        tx,
        "INSERT INTO outbox (ticket_id, to_addr, message_id, in_reply_to, language, created_at, next_attempt_at, via)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![ticket_id, ack.to, message_id, in_reply_to, ack.language, now, ack.via.as_str()],
    )?;
    if ack.via == crate::store::Via::Email {
        // Replies to the acknowledgement thread back to this ticket.
        remember_message(tx, &message_id, ticket_id, Direction::Out)?;
    }
    let queued = Happened::AckQueued {
        to: ack.to.clone(),
        message_id,
    };
    system_event(tx, ticket_id, now, &queued)?;
    Ok(())
}

impl Store {
    /// Every item or none, in one transaction.
    pub(super) fn file_together(
        &mut self,
        items: &[&NewTicket],
        code_prefix: &str,
    ) -> Result<Vec<Filed>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut owed = Vec::with_capacity(items.len());
        let filed = items
            .iter()
            .map(|new| file_in(&tx, new, code_prefix, &mut owed))
            .collect::<Result<Vec<_>>>()?;
        write_index(&tx, owed)?;
        tx.commit()?;
        Ok(filed)
    }
}

impl Filing for Store {
    fn file(&mut self, new: &NewTicket, code_prefix: &str) -> Result<Filed> {
        let mut filed = self.file_together(&[new], code_prefix)?;
        filed
            .pop()
            .ok_or_else(|| StoreError::Batch("no result".into()))
    }

    fn file_batch(&mut self, items: &[&NewTicket], code_prefix: &str) -> Vec<Result<Filed>> {
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
}
