//! Filing: a new ticket, a duplicate of one, or a reply or PEC receipt joining its thread;
//! protocol numbers and codes; the acknowledgement an item asks for.

use super::*;

pub(super) fn protocol_string(year: i64, number: i64) -> String {
    format!("{year}/{number:06}")
}

/// Files one item inside the caller's transaction (see [`Store::file`]).
pub(super) fn file_in(
    tx: &rusqlite::Connection,
    new: &NewTicket,
    code_prefix: &str,
) -> Result<Filed> {
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
        "INSERT INTO documents (ticket_id, ord, name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
        ticket_id, ord, doc.name, doc.mime, doc.sha256, doc.size as i64, doc.pages, doc.text, doc.ocr,
        doc.ocr_confidence, doc.kind.as_str(), doc.error, page_texts, doc.signed_by
    ])?;
    Ok(())
}

/// A ticket code in a subject (`Re: [URP-7K3M-9QXD] …`), check character verified.
pub(super) fn codes_in(subject: &str) -> Vec<String> {
    subject
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() >= 11 && w.matches('-').count() == 2)
        .filter_map(|w| code::parse(w).ok())
        .collect()
}

/// A message that answers one of a ticket's messages (In-Reply-To/References), or whose
/// subject carries the code of a ticket opened by the same address, joins that ticket; a
/// PEC receipt becomes an event on the ticket of the message it is about. None: file anew.
pub(super) fn file_into_thread(
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

impl Store {
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
    pub(super) fn file_together(
        &mut self,
        items: &[&NewTicket],
        code_prefix: &str,
    ) -> Result<Vec<Filed>> {
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
