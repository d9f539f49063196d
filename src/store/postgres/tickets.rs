//! Reading tickets (one, a list, a filter) and what a clerk changes on one: status, office,
//! notes, duplicates.

use super::dossier::{direct_links, entities_of};
use super::filing::protocol_string;
use super::search::index_ticket;
use super::*;
use crate::model::{Annulment, Event};
use crate::store::CLASSIFYING_EVENT;
use ::postgres::types::ToSql;

/// The filter's WHERE clause with PostgreSQL's numbered parameters.
pub(super) fn filter_sql(f: &TicketFilter) -> (String, Vec<String>) {
    crate::store::where_clause(f, '$')
}

/// Text arguments as statement parameters.
pub(super) fn params_of(args: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// The annulment read from four columns from `first` on; None when the registration stands.
fn annulment_at(r: &::postgres::Row, first: usize) -> Result<Option<Annulment>> {
    Ok(match col::<Option<String>>(r, first)? {
        Some(at) => Some(Annulment {
            at,
            by: col::<Option<String>>(r, first + 1)?.unwrap_or_default(),
            reason: col::<Option<String>>(r, first + 2)?.unwrap_or_default(),
            act: col::<Option<String>>(r, first + 3)?.unwrap_or_default(),
        }),
        None => None,
    })
}

pub(super) fn ticket_by_id(c: &mut dyn Sql, id: i64) -> Result<Ticket> {
    let r = c.query_one(
        "SELECT code, protocol_year, protocol_number, channel, received_at, registered_at, sender_name,
                sender_email, sender_fax, sender_phone, subject, body, topic, topic_confidence, topic_reason,
                status, office, needs_attention, attention_reason, parent_code, secondary_topics,
                topic_reviewed, topic_guesses, summary, annulled_at, annulled_by, annul_reason, annul_act
         FROM tickets WHERE id = $1",
        &[&id],
    )?;
    Ok(Ticket {
        code: col(&r, 0)?,
        protocol: protocol_string(col(&r, 1)?, col(&r, 2)?),
        channel: parse_or_corrupt(&col::<String>(&r, 3)?)?,
        received_at: col(&r, 4)?,
        registered_at: col(&r, 5)?,
        sender: Sender {
            name: col(&r, 6)?,
            email: col(&r, 7)?,
            fax: col(&r, 8)?,
            phone: col(&r, 9)?,
        },
        subject: col(&r, 10)?,
        body: col(&r, 11)?,
        topic: col(&r, 12)?,
        topic_confidence: col::<Option<f64>>(&r, 13)?.map(|v| v as f32),
        topic_reason: col(&r, 14)?,
        secondary_topics: serde_json::from_str(&col::<String>(&r, 20)?).unwrap_or_default(),
        topic_reviewed: col(&r, 21)?,
        topic_guesses: serde_json::from_str(&col::<String>(&r, 22)?).unwrap_or_default(),
        status: parse_or_corrupt(&col::<String>(&r, 15)?)?,
        office: col(&r, 16)?,
        needs_attention: col(&r, 17)?,
        attention_reason: col(&r, 18)?,
        parent: col(&r, 19)?,
        summary: col(&r, 23)?,
        annulled: annulment_at(&r, 24)?,
        documents: documents_of(c, id)?,
        events: events_of(c, id)?,
        entities: entities_of(c, id)?,
        dossier: direct_links(c, id)?,
    })
}

pub(super) fn documents_of(c: &mut dyn Sql, ticket_id: i64) -> Result<Vec<Document>> {
    let rows = c.query(
        "SELECT name, mime, sha256, size, pages, text, ocr, ocr_confidence, kind, error, page_texts, signed_by,
                duration_ms
         FROM documents WHERE ticket_id = $1 ORDER BY ord",
        &[&ticket_id],
    )?;
    let mut out = Vec::new();
    for r in &rows {
        let pages: Vec<PageText> = serde_json::from_str(&col::<String>(r, 10)?)
            .map_err(|e| StoreError::Corrupt(format!("page texts: {e}")))?;
        out.push(Document {
            name: col(r, 0)?,
            mime: col(r, 1)?,
            sha256: col(r, 2)?,
            size: col::<i64>(r, 3)? as u64,
            pages: col::<Option<i64>>(r, 4)?.map(|p| p as u32),
            text: col(r, 5)?,
            ocr: col(r, 6)?,
            ocr_confidence: col::<Option<f64>>(r, 7)?.map(|v| v as f32),
            kind: parse_or_corrupt(&col::<String>(r, 8)?)?,
            error: col(r, 9)?,
            pages_needing_ocr: pages
                .iter()
                .filter(|p| p.needs_ocr)
                .map(|p| p.page)
                .collect(),
            signed_by: col(r, 11)?,
            duration_secs: col::<Option<i64>>(r, 12)?.map(|ms| ms as f64 / 1000.0),
        });
    }
    Ok(out)
}

fn events_of(c: &mut dyn Sql, ticket_id: i64) -> Result<Vec<Event>> {
    let rows = c.query(
        "SELECT at, actor, kind, detail FROM events WHERE ticket_id = $1 ORDER BY id",
        &[&ticket_id],
    )?;
    rows.iter()
        .map(|r| {
            let (kind, detail): (String, String) = (col(r, 2)?, col(r, 3)?);
            let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
            Ok(Event {
                at: col(r, 0)?,
                actor: col(r, 1)?,
                what: crate::model::Recorded::read(&kind, detail),
            })
        })
        .collect()
}

/// Tickets matching `filter` in `order_by` order, as list lines (`limit` None: all).
pub(super) fn summaries(
    c: &mut dyn Sql,
    filter: &TicketFilter,
    order_by: &str,
    limit: Option<usize>,
    offset: usize,
) -> Result<Vec<TicketSummary>> {
    let (where_sql, args) = filter_sql(filter);
    let limit = limit.map_or("ALL".to_string(), |l| l.to_string());
    let sql = format!(
        "SELECT t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at,
                COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone), t.subject, t.topic,
                t.status, t.needs_attention, (SELECT COUNT(*) FROM documents d WHERE d.ticket_id = t.id),
                CASE WHEN t.topic_reviewed THEN '[]' ELSE t.topic_guesses END
         FROM tickets t {where_sql} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}"
    );
    let rows = c.query(&sql, &params_of(&args))?;
    rows.iter()
        .map(|r| {
            Ok(TicketSummary {
                code: col(r, 0)?,
                protocol: protocol_string(col(r, 1)?, col(r, 2)?),
                channel: col(r, 3)?,
                received_at: col(r, 4)?,
                sender: col(r, 5)?,
                subject: col(r, 6)?,
                topic: col(r, 7)?,
                status: col(r, 8)?,
                needs_attention: col(r, 9)?,
                documents: col::<i64>(r, 10)? as u32,
                topic_guesses: serde_json::from_str(&col::<String>(r, 11)?).unwrap_or_default(),
            })
        })
        .collect()
}

/// The ticket's row locked for this transaction: two clerks changing one ticket take turns.
fn lock_ticket(tx: &mut dyn Sql, id: i64, columns: &str) -> Result<::postgres::Row> {
    tx.query_one(
        &format!("SELECT {columns} FROM tickets WHERE id = $1 FOR UPDATE"),
        &[&id],
    )
}

/// A day's changes to registrations, for the daily register. Its `kind` list implies the
/// partial index `events_register_changes`'s condition: the planner uses the index only so.
pub(super) const REGISTER_CHANGES: &str =
    "SELECT t.code, t.protocol_year, t.protocol_number, e.at, e.actor, e.kind, e.detail
     FROM events e JOIN tickets t ON t.id = e.ticket_id
     WHERE e.at >= $1 AND e.at < $2
       AND e.kind IN ('annulled', 'reclassified', 'routed', 'marked_duplicate')
     ORDER BY e.at, e.id";

impl Tickets for PgStore {
    fn ticket(&self, code_input: &str) -> Result<Ticket> {
        let mut c = self.read()?;
        let (id, _) = ticket_id(&mut *c, code_input)?;
        ticket_by_id(&mut *c, id)
    }

    fn page_texts(&self, code_input: &str, ord: usize) -> Result<Vec<PageText>> {
        let mut c = self.read()?;
        let (id, code) = ticket_id(&mut *c, code_input)?;
        let r = c
            .query_opt(
                "SELECT page_texts FROM documents WHERE ticket_id = $1 AND ord = $2",
                &[&id, &(ord as i64)],
            )?
            .ok_or(StoreError::NotFound(format!("{code} document {ord}")))?;
        serde_json::from_str(&col::<String>(&r, 0)?)
            .map_err(|e| StoreError::Corrupt(format!("page texts: {e}")))
    }

    fn list(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        summaries(
            &mut *self.read()?,
            filter,
            "t.received_at DESC, t.id DESC",
            filter.limit,
            filter.offset.unwrap_or(0),
        )
    }

    fn set_status(&mut self, code_input: &str, status: Status, actor: &str) -> Result<bool> {
        self.write(|tx| {
            let (id, _) = ticket_id(tx, code_input)?;
            let from: String = col(&lock_ticket(tx, id, "status")?, 0)?;
            if from == status.as_str() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE tickets SET status = $1 WHERE id = $2",
                &[&status.as_str(), &id],
            )?;
            let changed = Happened::StatusChanged {
                from,
                to: status.as_str().into(),
                why: None,
            };
            insert_event(tx, id, &now_rfc3339(), actor, &changed)?;
            if status == Status::Closed {
                learning::settled_by_closing(tx, id)?;
                outbox::queue_closed_notice(tx, id)?;
            }
            Ok(true)
        })
    }

    fn add_note(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let (id, _) = ticket_id(tx, code_input)?;
            let note = Happened::Note { text: text.into() };
            insert_event(tx, id, &now_rfc3339(), actor, &note)
        })
    }

    fn set_summary(&mut self, code_input: &str, text: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let (id, _) = ticket_id(tx, code_input)?;
            tx.execute(
                "UPDATE tickets SET summary = $1 WHERE id = $2",
                &[&text, &id],
            )?;
            // Listened to and summarised: what the voicemail flag asked for is done.
            tx.execute(
                "UPDATE tickets SET needs_attention = FALSE, attention_reason = NULL
                 WHERE id = $1 AND attention_reason = $2",
                &[&id, &crate::domain::VOICEMAIL_ATTENTION],
            )?;
            let summarized = Happened::Summarized { text: text.into() };
            insert_event(tx, id, &now_rfc3339(), actor, &summarized)?;
            index_ticket(tx, id)
        })
    }

    fn for_each_ticket(
        &self,
        each: &mut dyn FnMut(Ticket) -> std::io::Result<()>,
    ) -> Result<usize> {
        let mut c = self.read()?;
        let ids: Vec<i64> = c
            .query("SELECT id FROM tickets ORDER BY id", &[])?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<_>>()?;
        for &id in &ids {
            each(ticket_by_id(&mut *c, id)?).map_err(|source| StoreError::Io {
                context: "cannot write export".into(),
                source,
            })?;
        }
        Ok(ids.len())
    }

    fn count(&self) -> Result<u64> {
        let r = self
            .read()?
            .query_one("SELECT COUNT(*) FROM tickets", &[])?;
        Ok(col::<i64>(&r, 0)? as u64)
    }

    fn route(&mut self, code_input: &str, office: &str, actor: &str) -> Result<bool> {
        self.write(|tx| {
            let (id, _) = ticket_id(tx, code_input)?;
            let from: Option<String> = col(&lock_ticket(tx, id, "office")?, 0)?;
            if from.as_deref() == Some(office) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE tickets SET office = $1 WHERE id = $2",
                &[&office, &id],
            )?;
            let routed = Happened::Routed {
                from,
                to: office.into(),
            };
            insert_event(tx, id, &now_rfc3339(), actor, &routed)?;
            Ok(true)
        })
    }

    fn annul(&mut self, code_input: &str, reason: &str, act: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let (id, code) = ticket_id(tx, code_input)?;
            let now = now_rfc3339();
            let n = tx.execute(
                "UPDATE tickets SET annulled_at = $1, annulled_by = $2, annul_reason = $3, annul_act = $4
                 WHERE id = $5 AND annulled_at IS NULL",
                &[&now, &actor, &reason, &act, &id],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("{code} is annulled already")));
            }
            let annulled = Happened::Annulled {
                reason: reason.into(),
                act: act.into(),
            };
            insert_event(tx, id, &now, actor, &annulled)
        })
    }

    fn registrations_between(&self, from: &str, until: &str) -> Result<Vec<RegisterEntry>> {
        let mut c = self.read()?;
        // The topic it was filed under: in its `created` event, or (stores written before)
        // the first `classified` event.
        let rows = c.query(
            &format!(
                "SELECT id, code, protocol_year, protocol_number, registered_at, channel, sender_name,
                    sender_email, sender_fax, sender_phone, subject,
                    (SELECT detail::json->>'topic' FROM events
                      WHERE ticket_id = tickets.id AND {CLASSIFYING_EVENT}
                      ORDER BY id LIMIT 1),
                    annulled_at, annulled_by, annul_reason, annul_act,
                    (SELECT raw FROM entities WHERE ticket_id = tickets.id AND kind = 'case_ref'
                      AND value LIKE 'prot %' ORDER BY id LIMIT 1)
             FROM tickets WHERE registered_at >= $1 AND registered_at < $2
             ORDER BY protocol_year, protocol_number"
            ),
            &[&from, &until],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = col(r, 0)?;
            let code: String = col(r, 1)?;
            let channel: Channel = col::<String>(r, 5)?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{code}: {e}")))?;
            let documents = c
                .query(
                    "SELECT name, mime, sha256 FROM documents WHERE ticket_id = $1 AND kind = 'original'
                     ORDER BY ord",
                    &[&id],
                )?
                .iter()
                .map(|d| Ok((col(d, 0)?, col(d, 1)?, col(d, 2)?)))
                .collect::<Result<_>>()?;
            out.push(RegisterEntry {
                code,
                protocol: protocol_string(col(r, 2)?, col(r, 3)?),
                registered_at: col(r, 4)?,
                channel,
                sender: Sender {
                    name: col(r, 6)?,
                    email: col(r, 7)?,
                    fax: col(r, 8)?,
                    phone: col(r, 9)?,
                },
                subject: col(r, 10)?,
                topic: col(r, 11)?,
                documents,
                sender_protocol: col(r, 16)?,
                annulled: annulment_at(r, 12)?,
            });
        }
        Ok(out)
    }

    fn register_changes_between(&self, from: &str, until: &str) -> Result<Vec<RegisterChange>> {
        let rows = self.read()?.query(REGISTER_CHANGES, &[&from, &until])?;
        rows.iter()
            .map(|r| {
                Ok(RegisterChange {
                    code: col(r, 0)?,
                    protocol: protocol_string(col(r, 1)?, col(r, 2)?),
                    at: col(r, 3)?,
                    actor: col(r, 4)?,
                    kind: col(r, 5)?,
                    detail: serde_json::from_str(&col::<String>(r, 6)?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    fn mark_duplicate(&mut self, code_input: &str, of_input: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let (id, code) = ticket_id(tx, code_input)?;
            let (of_id, of) = ticket_id(tx, of_input)?;
            if id == of_id {
                return Err(StoreError::Conflict(
                    "a ticket cannot be a duplicate of itself".into(),
                ));
            }
            let status: String = col(&lock_ticket(tx, id, "status")?, 0)?;
            tx.execute(
                "UPDATE tickets SET parent_code = $1, status = 'closed' WHERE id = $2",
                &[&of, &id],
            )?;
            let now = now_rfc3339();
            let marked = Happened::MarkedDuplicate { of: of.clone() };
            insert_event(tx, id, &now, actor, &marked)?;
            if status != "closed" {
                let closed = Happened::StatusChanged {
                    from: status,
                    to: "closed".into(),
                    why: None,
                };
                insert_event(tx, id, &now, actor, &closed)?;
            }
            let merged = Happened::DuplicateMerged { code };
            insert_event(tx, of_id, &now, actor, &merged)?;
            let (lo, hi) = if id < of_id { (id, of_id) } else { (of_id, id) };
            tx.execute(
                "INSERT INTO manual_links (a, b, linked) VALUES ($1, $2, TRUE)
                 ON CONFLICT(a, b) DO UPDATE SET linked = TRUE",
                &[&lo, &hi],
            )?;
            Ok(())
        })
    }
}
