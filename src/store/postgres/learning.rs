//! What the topic model learns from: the office's labelled history and the tickets a person
//! settled — corrected, confirmed, or closed with the topic it had. Never a guess nobody
//! looked at.

use super::*;
use crate::classify::model::Example;
use crate::classify::rules::UNSORTED;
use crate::classify::Classification;
use crate::domain::EventKind;
use crate::store::CLASSIFYING_EVENT;
use sha2::{Digest, Sha256};

/// A ticket a person settled (`$1` is `unsorted`), as the SQLite backend defines it.
const SETTLED: &str = "topic IS NOT NULL AND topic != $1 AND (topic_reviewed OR status = 'closed')";

/// Called in the transaction that closes a ticket: a ticket closed with a topic nobody
/// changed is the clerk's word that the topic was right.
pub(super) fn settled_by_closing(tx: &mut dyn Sql, ticket_id: i64) -> Result<()> {
    let r = tx.query_one(
        "SELECT topic, topic_reviewed FROM tickets WHERE id = $1",
        &[&ticket_id],
    )?;
    let (topic, reviewed): (Option<String>, bool) = (col(&r, 0)?, col(&r, 1)?);
    if !reviewed && topic.is_some_and(|t| t != UNSORTED) {
        bump_counter(tx, SETTLED_SINCE_TRAINING)?;
    }
    Ok(())
}

/// What makes a labelled record the same record (SQLite's UNIQUE (record_id, subject, body)),
/// hashed: a long body would overflow a btree entry.
pub fn labelled_fingerprint(record_id: &str, subject: &str, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [record_id, subject, body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Rows of (id, subject, body, topic, channel, sender_email) as examples.
fn examples_of(rows: &[::postgres::Row]) -> Result<Vec<Example>> {
    rows.iter()
        .map(|r| {
            Ok(Example {
                id: col(r, 0)?,
                subject: col(r, 1)?,
                body: col(r, 2)?,
                topic: col(r, 3)?,
                channel: col(r, 4)?,
                sender_email: col(r, 5)?,
            })
        })
        .collect()
}

impl Learning for PgStore {
    fn reclassify(
        &mut self,
        code_input: &str,
        topic: &str,
        office: Option<&str>,
        actor: &str,
    ) -> Result<u64> {
        self.write(|tx| {
            let (id, _) = ticket_id(tx, code_input)?;
            let r = tx.query_one(
                "SELECT topic, office FROM tickets WHERE id = $1 FOR UPDATE",
                &[&id],
            )?;
            let (from, old_office): (Option<String>, Option<String>) = (col(&r, 0)?, col(&r, 1)?);
            let office = office.map(str::to_string).or(old_office);
            tx.execute(
                "UPDATE tickets SET topic = $1, topic_confidence = 1.0, topic_reason = $2,
                    topic_reviewed = TRUE, office = $3 WHERE id = $4",
                &[&topic, &format!("set by {actor}"), &office, &id],
            )?;
            let (confirmed, to) = (from.as_deref() == Some(topic), topic.to_string());
            let settled = if confirmed {
                Happened::TopicConfirmed { from, to, office }
            } else {
                Happened::Reclassified { from, to, office }
            };
            insert_event(tx, id, &now_rfc3339(), actor, &settled)?;
            Ok(bump_counter(tx, SETTLED_SINCE_TRAINING)? as u64)
        })
    }

    fn unsettled_topics(&self) -> Result<Vec<Unsettled>> {
        let mut c = self.read()?;
        let rows = c.query(
            "SELECT id, code, channel, sender_email, subject, body, topic FROM tickets
             WHERE NOT topic_reviewed AND status != 'closed' AND annulled_at IS NULL
             ORDER BY id",
            &[],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = col(r, 0)?;
            let texts: Vec<String> = c
                .query(
                    "SELECT text FROM documents WHERE ticket_id = $1 ORDER BY ord",
                    &[&id],
                )?
                .iter()
                .map(|d| col(d, 0))
                .collect::<Result<_>>()?;
            let body: String = col(r, 5)?;
            out.push(Unsettled {
                id,
                code: col(r, 1)?,
                channel: col(r, 2)?,
                sender_email: col(r, 3)?,
                subject: col(r, 4)?,
                text: crate::pipeline::classification_text(&body, texts.iter().map(String::as_str)),
                topic: col(r, 6)?,
            });
        }
        Ok(out)
    }

    fn apply_classification(
        &mut self,
        ticket_id: i64,
        c: &Classification,
        actor: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let r = tx.query_one(
                "SELECT topic, topic_reviewed, status, annulled_at, office FROM tickets
                 WHERE id = $1 FOR UPDATE",
                &[&ticket_id],
            )?;
            let (from, reviewed, status, annulled, old_office): (
                Option<String>,
                bool,
                String,
                Option<String>,
                Option<String>,
            ) = (
                col(&r, 0)?,
                col(&r, 1)?,
                col(&r, 2)?,
                col(&r, 3)?,
                col(&r, 4)?,
            );
            // A person's word stands: a ticket settled since it was read is left alone.
            if reviewed || status == "closed" || annulled.is_some() {
                return Ok(false);
            }
            // A person's routing stands too: the office follows the topic only if nobody moved it.
            let routed: bool = col(
                &tx.query_one(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE ticket_id = $1 AND kind = $2)",
                    &[&ticket_id, &EventKind::Routed.as_str()],
                )?,
                0,
            )?;
            let office = c
                .office
                .as_deref()
                .filter(|_| !routed)
                .map(str::to_string)
                .or(old_office);
            tx.execute(
                "UPDATE tickets SET topic = $1, topic_confidence = $2, topic_reason = $3,
                 secondary_topics = $4, topic_guesses = $5, office = $6 WHERE id = $7",
                &[
                    &c.topic,
                    &f64::from(c.confidence),
                    &c.reason,
                    &serde_json::to_string(&c.secondary).unwrap_or_else(|_| "[]".into()),
                    &serde_json::to_string(&c.guesses).unwrap_or_else(|_| "[]".into()),
                    &office,
                    &ticket_id,
                ],
            )?;
            let changed = from.as_deref() != Some(c.topic.as_str());
            if changed {
                let moved = Happened::Reclassified {
                    from,
                    to: c.topic.clone(),
                    office,
                };
                insert_event(tx, ticket_id, &now_rfc3339(), actor, &moved)?;
            }
            Ok(changed)
        })
    }

    fn settled_since_training(&self) -> Result<u64> {
        let r = self.read()?.query_opt(
            "SELECT value FROM counters WHERE name = $1",
            &[&SETTLED_SINCE_TRAINING],
        )?;
        let value: i64 = r.map(|r| col(&r, 0)).transpose()?.unwrap_or(0);
        Ok(value.max(0) as u64)
    }

    fn import_labelled(&mut self, examples: &[Example]) -> Result<usize> {
        self.write(|tx| {
            let now = now_rfc3339();
            let mut added = 0;
            for e in examples {
                let fingerprint = labelled_fingerprint(&e.id, &e.subject, &e.body);
                added += tx.execute(
                    "INSERT INTO labelled_history (record_id, subject, body, topic, channel, sender_email,
                        added_at, fingerprint)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (fingerprint) DO NOTHING",
                    &[&e.id, &e.subject, &e.body, &e.topic, &e.channel, &e.sender_email, &now, &fingerprint],
                )? as usize;
            }
            if added > 0 {
                bump_counter(tx, SETTLED_SINCE_TRAINING)?;
            }
            Ok(added)
        })
    }

    fn training_examples(&self) -> Result<Vec<Example>> {
        let mut c = self.read()?;
        let mut out = examples_of(&c.query(
            "SELECT record_id, subject, body, topic, channel, sender_email FROM labelled_history ORDER BY id",
            &[],
        )?)?;
        out.extend(examples_of(&c.query(
            &format!(
                "SELECT code, subject, body, topic, channel, sender_email FROM tickets WHERE {SETTLED} ORDER BY id"
            ),
            &[&UNSORTED],
        )?)?);
        Ok(out)
    }

    fn settled_answers(&self) -> Result<Vec<(f32, bool)>> {
        // The first classification of a ticket is the one it was filed with: in its
        // `created` event, or (stores written before) the `classified` event after it.
        let rows = self.read()?.query(
            &format!(
                "SELECT t.topic, e.detail FROM tickets t JOIN events e ON e.id =
                   (SELECT min(id) FROM events WHERE ticket_id = t.id AND {CLASSIFYING_EVENT})
                 WHERE {SETTLED} ORDER BY t.id"
            ),
            &[&UNSORTED],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let settled: String = col(r, 0)?;
            let detail: serde_json::Value =
                serde_json::from_str(&col::<String>(r, 1)?).unwrap_or_default();
            let (Some(topic), Some(confidence)) =
                (detail["topic"].as_str(), detail["confidence"].as_f64())
            else {
                continue;
            };
            if topic != UNSORTED {
                out.push((confidence as f32, topic == settled));
            }
        }
        Ok(out)
    }

    fn has_training_examples(&self) -> Result<bool> {
        let r = self.read()?.query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM labelled_history) OR EXISTS (SELECT 1 FROM tickets WHERE {SETTLED})"
            ),
            &[&UNSORTED],
        )?;
        col(&r, 0)
    }

    fn trained(&mut self, before: u64) -> Result<()> {
        self.read()?.execute(
            "UPDATE counters SET value = greatest(0, value - $2) WHERE name = $1",
            &[&SETTLED_SINCE_TRAINING, &(before as i64)],
        )?;
        Ok(())
    }
}
