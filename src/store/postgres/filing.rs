//! Filing: a new ticket, a duplicate of one, or a reply or PEC receipt joining its thread;
//! protocol numbers and codes; the acknowledgement an item asks for. The same decisions as
//! the SQLite backend (`crate::domain::filing`), taken under the filing lock.

use super::search::{index_ticket, search_words};
use super::*;
use crate::domain::filing::{decide, reopened_by_message, Direction, Lookups, Plan, TicketId};

pub(super) use crate::domain::filing::protocol as protocol_string;

/// The filing decision's questions, answered inside the filing transaction.
struct InTx<'a, 'b>(&'a mut (dyn Sql + 'b));

impl Lookups for InTx<'_, '_> {
    type Error = StoreError;

    fn ticket_with_bytes(&mut self, sha256: &str) -> Result<Option<(TicketId, String)>> {
        let row = self.0.query_opt(
            "SELECT id, code FROM tickets WHERE intake_sha256 = $1",
            &[&sha256],
        )?;
        row.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
    }

    fn arrival_seen(&mut self, ticket: TicketId, i: &Intake) -> Result<bool> {
        let r = self.0.query_one(
            "SELECT EXISTS(SELECT 1 FROM intakes WHERE ticket_id = $1 AND source = $2 AND name = $3
               AND size = $4 AND mtime_ns IS NOT DISTINCT FROM $5)",
            &[&ticket, &i.source, &i.name, &(i.size as i64), &i.mtime_ns],
        )?;
        col(&r, 0)
    }

    fn message(&mut self, message_id: &str) -> Result<Option<(TicketId, Direction)>> {
        let row = self.0.query_opt(
            "SELECT ticket_id, direction FROM message_ids WHERE message_id = $1",
            &[&message_id],
        )?;
        let Some(r) = row else { return Ok(None) };
        let direction: String = col(&r, 1)?;
        let direction = if direction == Direction::In.as_str() {
            Direction::In
        } else {
            Direction::Out
        };
        Ok(Some((col(&r, 0)?, direction)))
    }

    fn ticket_of_sender(&mut self, code: &str, sender_email: &str) -> Result<Option<TicketId>> {
        let row = self.0.query_opt(
            "SELECT id FROM tickets WHERE code = $1 AND lower(sender_email) = lower($2)",
            &[&code, &sender_email],
        )?;
        row.map(|r| col(&r, 0)).transpose()
    }
}

/// Files one item inside the caller's transaction, which holds the filing lock.
pub(super) fn file_in(tx: &mut dyn Sql, new: &NewTicket, code_prefix: &str) -> Result<Filed> {
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
        Plan::JoinsThread { ticket } => join_thread(tx, ticket, new, &now),
        Plan::New => create(tx, new, code_prefix, &now),
    }
}

/// Takes the filing lock for the rest of the transaction.
pub(super) fn lock_filing(tx: &mut dyn Sql) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FILING_LOCK])?;
    Ok(())
}

fn code_of(c: &mut dyn Sql, ticket: TicketId) -> Result<String> {
    let r = c.query_one("SELECT code FROM tickets WHERE id = $1", &[&ticket])?;
    col(&r, 0)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A new ticket: protocol number, tracking code, documents, entities, history, index. Two
/// statements whatever the ticket holds (round trips were most of filing's time): the number
/// (for a code nobody has: under the filing lock, what is free now is free at insert), then
/// everything else at once.
fn create(tx: &mut dyn Sql, new: &NewTicket, code_prefix: &str, now: &str) -> Result<Filed> {
    let year = crate::domain::filing::protocol_year(now)
        .ok_or_else(|| StoreError::Corrupt(format!("clock gave {now}")))?;
    let mut rng = rand::thread_rng();
    let mut attempt = 0;
    // The counter's row stays locked until commit: another machine's ticket waits for this
    // one's number to be used or rolled back, so numbers have no gap and no duplicate. A code
    // already taken (one chance in millions) counts nothing, and another is drawn.
    let (code, number) = loop {
        let code = code::generate(code_prefix, &mut rng);
        let r = tx.query_opt(
            "INSERT INTO protocol_counters(year, last)
             SELECT $1, 1 WHERE NOT EXISTS (SELECT 1 FROM tickets WHERE code = $2)
             ON CONFLICT(year) DO UPDATE SET last = protocol_counters.last + 1 RETURNING last",
            &[&year, &code],
        )?;
        if let Some(r) = r {
            break (code, col::<i64>(&r, 0)?);
        }
        attempt += 1;
        if attempt > 100 {
            return Err(StoreError::Corrupt(
                "cannot find a free tracking code".into(),
            ));
        }
    };
    let attention = (!new.attention.is_empty()).then(|| new.attention.join("; "));
    let protocol = protocol_string(year, number);
    let mut events = vec![crate::store::created_event(new, &protocol)];
    if let Some(reason) = &attention {
        events.push(Happened::NeedsAttention {
            reason: reason.clone(),
        });
    }
    let event_kinds: Vec<&str> = events.iter().map(|e| e.kind().as_str()).collect();
    let event_details: Vec<String> = events.iter().map(Happened::detail_text).collect();
    let docs: Vec<&crate::model::Document> = new.documents.iter().map(|d| &d.doc).collect();
    let page_texts = new
        .documents
        .iter()
        .map(|d| serde_json::to_string(&d.page_texts))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let ords: Vec<i64> = (0..docs.len() as i64).collect();
    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
    let mimes: Vec<&str> = docs.iter().map(|d| d.mime.as_str()).collect();
    let shas: Vec<&str> = docs.iter().map(|d| d.sha256.as_str()).collect();
    let sizes: Vec<i64> = docs.iter().map(|d| d.size as i64).collect();
    let pages: Vec<Option<i64>> = docs.iter().map(|d| d.pages.map(i64::from)).collect();
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    let ocr: Vec<bool> = docs.iter().map(|d| d.ocr).collect();
    let ocr_conf: Vec<Option<f64>> = docs
        .iter()
        .map(|d| d.ocr_confidence.map(f64::from))
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d.kind.as_str()).collect();
    let errors: Vec<Option<&str>> = docs.iter().map(|d| d.error.as_deref()).collect();
    let signed: Vec<Option<&str>> = docs.iter().map(|d| d.signed_by.as_deref()).collect();
    let duration: Vec<Option<i64>> = docs
        .iter()
        .map(|d| d.duration_secs.map(|s| (s * 1000.0).round() as i64))
        .collect();
    let e = &new.entities;
    let e_kinds: Vec<&str> = e.iter().map(|e| e.kind.as_str()).collect();
    let e_values: Vec<&str> = e.iter().map(|e| e.value.as_str()).collect();
    let e_valid: Vec<bool> = e.iter().map(|e| e.valid).collect();
    let e_conf: Vec<f64> = e.iter().map(|e| f64::from(e.confidence)).collect();
    let e_places: Vec<&str> = e.iter().map(|e| e.place.as_str()).collect();
    let e_raw: Vec<&str> = e.iter().map(|e| e.raw.as_str()).collect();
    let made;
    let search = match &new.search_text {
        Some(t) => t,
        None => {
            made = SearchText::of(new);
            &made
        }
    };
    let s = &new.sender;
    let i = &new.intake;
    let confidence = new.topic_confidence.map(f64::from);
    let (secondary, guesses) = (json(&new.secondary_topics), json(&new.topic_guesses));
    // Built once: the statement's text is its cache key on each connection.
    static CREATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = CREATE.get_or_init(|| {
        format!(
            "WITH t AS (
            INSERT INTO tickets (code, protocol_year, protocol_number, channel, received_at,
                registered_at, sender_name, sender_email, sender_fax, sender_phone, subject, body,
                topic, topic_confidence, topic_reason, status, office, needs_attention,
                attention_reason, parent_code, intake_sha256, secondary_topics, topic_guesses)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'new', $16,
                $17, $18, $19, $20, $21, $22)
            RETURNING id),
         d AS (INSERT INTO documents (ticket_id, ord, name, mime, sha256, size, pages, text, ocr,
                ocr_confidence, kind, error, page_texts, signed_by, duration_ms)
            SELECT t.id, x.* FROM t, unnest($23::int8[], $24::text[], $25::text[], $26::text[],
                $27::int8[], $28::int8[], $29::text[], $30::bool[], $31::float8[], $32::text[],
                $33::text[], $34::text[], $35::text[], $36::int8[]) AS x),
         i AS (INSERT INTO intakes (ticket_id, source, name, sha256, size, mtime_ns, at)
            SELECT t.id, $37, $38, $20, $39, $40, $6 FROM t),
         e AS (INSERT INTO events (ticket_id, at, actor, kind, detail)
            SELECT t.id, $6, 'sportello', x.kind, x.detail
            FROM t, unnest($41::text[], $42::text[]) WITH ORDINALITY AS x(kind, detail, n)
            ORDER BY x.n),
         n AS (INSERT INTO entities (ticket_id, kind, value, valid, confidence, place, raw)
            SELECT t.id, x.* FROM t, unnest($43::text[], $44::text[], $45::bool[],
                $46::float8[], $47::text[], $48::text[]) AS x),
         s AS (INSERT INTO ticket_search (ticket_id, words) SELECT t.id, {} FROM t)
         SELECT id FROM t",
            search_words(49)
        )
    });
    let r = tx.query_one(
        sql,
        &[
            &code,
            &year,
            &number,
            &new.channel.as_str(),
            &new.received_at,
            &now,
            &s.name,
            &s.email,
            &s.fax,
            &s.phone,
            &new.subject,
            &new.body,
            &new.topic,
            &confidence,
            &new.topic_reason,
            &new.office,
            &attention.is_some(),
            &attention,
            &new.parent,
            &i.sha256,
            &secondary,
            &guesses,
            &ords,
            &names,
            &mimes,
            &shas,
            &sizes,
            &pages,
            &texts,
            &ocr,
            &ocr_conf,
            &kinds,
            &errors,
            &page_texts,
            &signed,
            &duration,
            &i.source,
            &i.name,
            &(i.size as i64),
            &i.mtime_ns,
            &event_kinds,
            &event_details,
            &e_kinds,
            &e_values,
            &e_valid,
            &e_conf,
            &e_places,
            &e_raw,
            &search.subject,
            &search.body,
            &search.documents,
        ],
    )?;
    let ticket_id: i64 = col(&r, 0)?;
    if let Some(mail) = &new.mail {
        record_mail(tx, ticket_id, mail, now)?;
    }
    Ok(Filed::Created { code, protocol })
}

fn insert_intake(c: &mut dyn Sql, ticket_id: i64, i: &Intake, now: &str) -> Result<()> {
    c.execute(
        "INSERT INTO intakes (ticket_id, source, name, sha256, size, mtime_ns, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &ticket_id,
            &i.source,
            &i.name,
            &i.sha256,
            &(i.size as i64),
            &i.mtime_ns,
            &now,
        ],
    )?;
    Ok(())
}

fn insert_document(c: &mut dyn Sql, ticket_id: i64, ord: i64, d: &NewDocument) -> Result<()> {
    let doc = &d.doc;
    let page_texts =
        serde_json::to_string(&d.page_texts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    c.execute(
        "INSERT INTO documents (ticket_id, ord, name, mime, sha256, size, pages, text, ocr, ocr_confidence,
            kind, error, page_texts, signed_by, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &ticket_id, &ord, &doc.name, &doc.mime, &doc.sha256, &(doc.size as i64),
            &doc.pages.map(i64::from), &doc.text, &doc.ocr, &doc.ocr_confidence.map(f64::from),
            &doc.kind.as_str(), &doc.error, &page_texts, &doc.signed_by,
            &doc.duration_secs.map(|s| (s * 1000.0).round() as i64),
        ],
    )?;
    Ok(())
}

/// A Message-ID of the ticket's thread: answers to it join the ticket.
pub(super) fn remember_message(
    c: &mut dyn Sql,
    message_id: &str,
    ticket_id: TicketId,
    direction: Direction,
) -> Result<()> {
    c.execute(
        "INSERT INTO message_ids (message_id, ticket_id, direction) VALUES ($1, $2, $3)
         ON CONFLICT (message_id) DO NOTHING",
        &[&message_id, &ticket_id, &direction.as_str()],
    )?;
    Ok(())
}

/// `VALUES ($1, …), (…)`: `rows` rows of `width` parameters each.
fn values(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn insert_entities(c: &mut dyn Sql, ticket_id: TicketId, entities: &[Entity]) -> Result<()> {
    // In one statement, a chunk at a time (statements are kept by their text).
    for chunk in entities.chunks(16) {
        let kinds: Vec<&str> = chunk.iter().map(|e| e.kind.as_str()).collect();
        let confidences: Vec<f64> = chunk.iter().map(|e| f64::from(e.confidence)).collect();
        let mut params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = Vec::new();
        for ((e, kind), confidence) in chunk.iter().zip(&kinds).zip(&confidences) {
            let row: [&(dyn ::postgres::types::ToSql + Sync); 7] = [
                &ticket_id, kind, &e.value, &e.valid, confidence, &e.place, &e.raw,
            ];
            params.extend(row);
        }
        c.execute(
            &format!(
                "INSERT INTO entities (ticket_id, kind, value, valid, confidence, place, raw) VALUES {}",
                values(chunk.len(), 7)
            ),
            &params,
        )?;
    }
    Ok(())
}

/// A citizen's message joins their ticket: its history, documents, entities and index; a
/// ticket that waited for them, or was closed, is open again.
fn join_thread(tx: &mut dyn Sql, ticket_id: TicketId, new: &NewTicket, now: &str) -> Result<Filed> {
    let received = Happened::MessageReceived {
        from: new.sender.email.clone(),
        subject: new.subject.clone(),
        message_id: new.mail.as_ref().and_then(|m| m.message_id.clone()),
        channel: new.channel.as_str().into(),
        documents: new.documents.iter().map(|d| d.doc.name.clone()).collect(),
        text: new.body.chars().take(2000).collect(),
    };
    system_event(tx, ticket_id, now, &received)?;
    let r = tx.query_one("SELECT status FROM tickets WHERE id = $1", &[&ticket_id])?;
    let status: Status = parse_or_corrupt(&col::<String>(&r, 0)?)?;
    if let Some(to) = reopened_by_message(status) {
        tx.execute(
            "UPDATE tickets SET status = $1 WHERE id = $2",
            &[&to.as_str(), &ticket_id],
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
    index_ticket(tx, ticket_id)?;
    Ok(Filed::Appended {
        code,
        what: "message".into(),
    })
}

/// Adds the item's documents after the ticket's own, and its intake; returns the code.
fn append_documents(
    tx: &mut dyn Sql,
    ticket_id: i64,
    new: &NewTicket,
    now: &str,
) -> Result<String> {
    let r = tx.query_one(
        "SELECT COALESCE(MAX(ord), -1) + 1 FROM documents WHERE ticket_id = $1",
        &[&ticket_id],
    )?;
    let next: i64 = col(&r, 0)?;
    for (i, d) in new.documents.iter().enumerate() {
        insert_document(tx, ticket_id, next + i as i64, d)?;
    }
    insert_intake(tx, ticket_id, &new.intake, now)?;
    code_of(tx, ticket_id)
}

/// For a new ticket from a message: its Message-ID, the PEC facts, the acknowledgement.
fn record_mail(tx: &mut dyn Sql, ticket_id: i64, mail: &MailFacts, now: &str) -> Result<()> {
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
    tx: &mut dyn Sql,
    ticket_id: i64,
    ack: &AckRequest,
    in_reply_to: Option<&str>,
    now: &str,
) -> Result<()> {
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = tx.query_one(
        "SELECT COUNT(*) FROM outbox WHERE to_addr = $1 AND created_at > $2",
        &[&ack.to, &hour_ago],
    )?;
    let recent: i64 = col(&r, 0)?;
    if let Some(reason) =
        crate::domain::filing::ack_capped(recent as u64, ack.max_per_hour, &ack.to)
    {
        system_event(tx, ticket_id, now, &Happened::AckNotSent { reason })?;
        return Ok(());
    }
    let token: u64 = rand::Rng::gen(&mut rand::thread_rng());
    let message_id = format!("ack.{ticket_id}.{token:016x}@{}", ack.domain);
    tx.execute(
        "INSERT INTO outbox (ticket_id, to_addr, message_id, in_reply_to, language, created_at,
            next_attempt_at, via)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        &[
            &ticket_id,
            &ack.to,
            &message_id,
            &in_reply_to,
            &ack.language,
            &now,
            &ack.via.as_str(),
        ],
    )?;
    if ack.via == Via::Email {
        // Replies to the acknowledgement thread back to this ticket.
        remember_message(tx, &message_id, ticket_id, Direction::Out)?;
    }
    let queued = Happened::AckQueued {
        to: ack.to.clone(),
        message_id,
    };
    system_event(tx, ticket_id, now, &queued)
}

impl PgStore {
    /// Every item or none, in one transaction.
    fn file_together(&mut self, items: &[&NewTicket], code_prefix: &str) -> Result<Vec<Filed>> {
        self.write(|tx| {
            lock_filing(tx)?;
            items
                .iter()
                .map(|new| file_in(tx, new, code_prefix))
                .collect()
        })
    }
}

impl Filing for PgStore {
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
