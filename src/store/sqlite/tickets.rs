//! Reading tickets (one, a list, a filter) and what a clerk changes on one: status, office,
//! notes, duplicates.

use super::*;
use crate::store::CLASSIFYING_EVENT;

/// The filter's WHERE clause with SQLite's numbered parameters.
pub(super) fn filter_sql(f: &TicketFilter) -> (String, Vec<String>) {
    crate::store::where_clause(f, '?')
}

impl Store {
    pub(super) fn ticket_id(&self, code_input: &str) -> Result<(i64, String)> {
        let code = code::parse(code_input)?;
        self.conn
            .query_row("SELECT id FROM tickets WHERE code = ?1", [&code], |r| {
                r.get(0)
            })
            .optional()?
            .map(|id| (id, code.clone()))
            .ok_or(StoreError::NotFound(code))
    }

    pub(super) fn ticket_by_id(&self, id: i64) -> Result<Ticket> {
        let mut ticket = self.conn.query_row(
            "SELECT code, protocol_year, protocol_number, channel, received_at, registered_at, sender_name,
                    sender_email, sender_fax, sender_phone, subject, body, topic, topic_confidence, topic_reason,
                    status, office, needs_attention, attention_reason, parent_code, secondary_topics,
                    topic_reviewed, topic_guesses, summary, annulled_at, annulled_by, annul_reason,
                    annul_act
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
                        summary: r.get(23)?,
                        annulled: annulment_at(r, 24)?,
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

    pub(super) fn documents_of(&self, ticket_id: i64) -> Result<Vec<Document>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by,
                    duration_ms
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
                    duration_secs: r.get::<_, Option<i64>>(12)?.map(|ms| ms as f64 / 1000.0),
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

    pub(super) fn events_of(&self, ticket_id: i64) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, actor, kind, detail FROM events WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([ticket_id], |r| {
            let (kind, detail): (String, String) = (r.get(2)?, r.get(3)?);
            let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
            Ok(Event {
                at: r.get(0)?,
                actor: r.get(1)?,
                what: crate::model::Recorded::read(&kind, detail),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Tickets matching `filter` in `order_by` order, as list lines (`limit` -1: all).
    pub(super) fn summaries(
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
}

/// A day's changes to registrations, for the daily register. Its condition on `kind` is the
/// partial index `events_register_changes`'s, the same comparisons in the same order: the
/// planner uses the index only so.
pub(super) const REGISTER_CHANGES: &str =
    "SELECT t.code, t.protocol_year, t.protocol_number, e.at, e.actor, e.kind, e.detail
     FROM events e JOIN tickets t ON t.id = e.ticket_id
     WHERE e.at >= ?1 AND e.at < ?2
       AND (e.kind = 'annulled' OR e.kind = 'reclassified' OR e.kind = 'routed' OR e.kind = 'marked_duplicate')
     ORDER BY e.at, e.id";

impl Tickets for Store {
    fn ticket(&self, code_input: &str) -> Result<Ticket> {
        let (id, _) = self.ticket_id(code_input)?;
        self.ticket_by_id(id)
    }

    fn page_texts(&self, code_input: &str, ord: usize) -> Result<Vec<PageText>> {
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

    fn list(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        self.summaries(
            filter,
            "t.received_at DESC, t.id DESC",
            filter.limit.map(|l| l as i64).unwrap_or(-1),
            filter.offset.unwrap_or(0),
        )
    }

    fn set_status(&mut self, code_input: &str, status: Status, actor: &str) -> Result<bool> {
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
        let changed = Happened::StatusChanged {
            from,
            to: status.as_str().into(),
            why: None,
        };
        insert_event(&tx, id, &now_rfc3339(), actor, &changed)?;
        if status == Status::Closed {
            Store::settled_by_closing(&tx, id)?;
            Store::queue_closed_notice(&tx, id)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn add_note(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let note = Happened::Note { text: text.into() };
        insert_event(&tx, id, &now_rfc3339(), actor, &note)?;
        tx.commit()?;
        Ok(())
    }

    fn set_summary(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE tickets SET summary = ?1 WHERE id = ?2",
            params![text, id],
        )?;
        // Listened to and summarised: what the voicemail flag asked for is done.
        tx.execute(
            "UPDATE tickets SET needs_attention = 0, attention_reason = NULL
             WHERE id = ?1 AND attention_reason = ?2",
            params![id, crate::domain::VOICEMAIL_ATTENTION],
        )?;
        let summarized = Happened::Summarized { text: text.into() };
        insert_event(&tx, id, &now_rfc3339(), actor, &summarized)?;
        index_ticket(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    fn for_each_ticket(
        &self,
        each: &mut dyn FnMut(Ticket) -> std::io::Result<()>,
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

    fn count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn route(&mut self, code_input: &str, office: &str, actor: &str) -> Result<bool> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from: Option<String> =
            tx.query_row("SELECT office FROM tickets WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        if from.as_deref() == Some(office) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE tickets SET office = ?1 WHERE id = ?2",
            params![office, id],
        )?;
        let routed = Happened::Routed {
            from,
            to: office.into(),
        };
        insert_event(&tx, id, &now_rfc3339(), actor, &routed)?;
        tx.commit()?;
        Ok(true)
    }

    fn annul(&mut self, code_input: &str, reason: &str, act: &str, actor: &str) -> Result<()> {
        let (id, code) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_rfc3339();
        let n = tx.execute(
            "UPDATE tickets SET annulled_at = ?1, annulled_by = ?2, annul_reason = ?3, annul_act = ?4
             WHERE id = ?5 AND annulled_at IS NULL",
            params![now, actor, reason, act, id],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("{code} is annulled already")));
        }
        let annulled = Happened::Annulled {
            reason: reason.into(),
            act: act.into(),
        };
        insert_event(&tx, id, &now, actor, &annulled)?;
        tx.commit()?;
        Ok(())
    }

    fn registrations_between(&self, from: &str, until: &str) -> Result<Vec<RegisterEntry>> {
        // The topic it was filed under: in its `created` event, or (stores written before)
        // the first `classified` event.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, code, protocol_year, protocol_number, registered_at, channel, sender_name,
                    sender_email, sender_fax, sender_phone, subject,
                    (SELECT json_extract(detail, '$.topic') FROM events
                      WHERE ticket_id = tickets.id AND {CLASSIFYING_EVENT}
                      ORDER BY id LIMIT 1),
                    annulled_at, annulled_by, annul_reason, annul_act,
                    (SELECT raw FROM entities WHERE ticket_id = tickets.id AND kind = 'case_ref'
                      AND value LIKE 'prot %' ORDER BY id LIMIT 1)
             FROM tickets WHERE registered_at >= ?1 AND registered_at < ?2
             ORDER BY protocol_year, protocol_number"
        ))?;
        let rows = stmt.query_map(params![from, until], |r| {
            let channel: String = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                channel,
                RegisterEntry {
                    code: r.get(1)?,
                    protocol: protocol_string(r.get(2)?, r.get(3)?),
                    registered_at: r.get(4)?,
                    channel: Channel::Email,
                    sender: Sender {
                        name: r.get(6)?,
                        email: r.get(7)?,
                        fax: r.get(8)?,
                        phone: r.get(9)?,
                    },
                    subject: r.get(10)?,
                    topic: r.get(11)?,
                    documents: Vec::new(),
                    sender_protocol: r.get(16)?,
                    annulled: annulment_at(r, 12)?,
                },
            ))
        })?;
        let mut docs = self.conn.prepare_cached(
            "SELECT name, mime, sha256 FROM documents WHERE ticket_id = ?1 AND kind = 'original'
             ORDER BY ord",
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, channel, mut entry) = row?;
            entry.channel = channel
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", entry.code)))?;
            entry.documents = docs
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<std::result::Result<_, _>>()?;
            out.push(entry);
        }
        Ok(out)
    }

    fn register_changes_between(&self, from: &str, until: &str) -> Result<Vec<RegisterChange>> {
        let mut stmt = self.conn.prepare_cached(REGISTER_CHANGES)?;
        let rows = stmt.query_map(params![from, until], |r| {
            let detail: String = r.get(6)?;
            Ok(RegisterChange {
                code: r.get(0)?,
                protocol: protocol_string(r.get(1)?, r.get(2)?),
                at: r.get(3)?,
                actor: r.get(4)?,
                kind: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn mark_duplicate(&mut self, code_input: &str, of_input: &str, actor: &str) -> Result<()> {
        let (id, code) = self.ticket_id(code_input)?;
        let (of_id, of) = self.ticket_id(of_input)?;
        if id == of_id {
            return Err(StoreError::Conflict(
                "a ticket cannot be a duplicate of itself".into(),
            ));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let status: String =
            tx.query_row("SELECT status FROM tickets WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        tx.execute(
            "UPDATE tickets SET parent_code = ?1, status = 'closed' WHERE id = ?2",
            params![of, id],
        )?;
        let now = now_rfc3339();
        let marked = Happened::MarkedDuplicate { of: of.clone() };
        insert_event(&tx, id, &now, actor, &marked)?;
        if status != "closed" {
            let closed = Happened::StatusChanged {
                from: status,
                to: "closed".into(),
                why: None,
            };
            insert_event(&tx, id, &now, actor, &closed)?;
        }
        let merged = Happened::DuplicateMerged { code };
        insert_event(&tx, of_id, &now, actor, &merged)?;
        let (lo, hi) = if id < of_id { (id, of_id) } else { (of_id, id) };
        tx.execute(
            "INSERT INTO manual_links (a, b, linked) VALUES (?1, ?2, 1) ON CONFLICT(a, b) DO UPDATE SET linked = 1",
            params![lo, hi],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// The annulment read from four columns from `first` on (`annulled_at`, `annulled_by`,
/// `annul_reason`, `annul_act`); None when the registration stands.
fn annulment_at(
    r: &rusqlite::Row,
    first: usize,
) -> rusqlite::Result<Option<crate::model::Annulment>> {
    Ok(match r.get::<_, Option<String>>(first)? {
        Some(at) => Some(crate::model::Annulment {
            at,
            by: r.get::<_, Option<String>>(first + 1)?.unwrap_or_default(),
            reason: r.get::<_, Option<String>>(first + 2)?.unwrap_or_default(),
            act: r.get::<_, Option<String>>(first + 3)?.unwrap_or_default(),
        }),
        None => None,
    })
}
