//! What the topic model learns from: the office's labelled history and the tickets a person
//! settled — corrected, confirmed, or closed with the topic it had. Never a guess nobody
//! looked at.

use super::{
    bump_counter, execute_cached, insert_event, now_rfc3339, query_row_cached, Result, Store,
    SETTLED_SINCE_TRAINING,
};
use crate::classify::model::Example;
use crate::classify::rules::UNSORTED;
use crate::classify::Classification;
use crate::domain::{EventKind, Happened};
use crate::store::prelude::*;
use crate::store::Unsettled;
use crate::store::CLASSIFYING_EVENT;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

/// A ticket a person settled (`?1` is `unsorted`): its topic set or confirmed by a clerk, or
/// closed with the topic it had. The one definition the training data and its checks share.
const SETTLED: &str =
    "topic IS NOT NULL AND topic != ?1 AND (topic_reviewed = 1 OR status = 'closed')";

impl Store {
    /// Called in the transaction that closes a ticket: a ticket closed with a topic nobody
    /// changed is the clerk's word that the topic was right.
    pub(super) fn settled_by_closing(tx: &rusqlite::Transaction, ticket_id: i64) -> Result<()> {
        let (topic, reviewed): (Option<String>, bool) = query_row_cached(
            tx,
            "SELECT topic, topic_reviewed FROM tickets WHERE id = ?1",
            [ticket_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if !reviewed && topic.is_some_and(|t| t != UNSORTED) {
            bump_counter(tx, SETTLED_SINCE_TRAINING)?;
        }
        Ok(())
    }

    /// Rows of (id, subject, body, topic, channel, sender_email) as examples.
    fn examples_of(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Example>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params, |r| {
            Ok(Example {
                id: r.get(0)?,
                subject: r.get(1)?,
                body: r.get(2)?,
                topic: r.get(3)?,
                channel: r.get(4)?,
                sender_email: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

impl Learning for Store {
    fn reclassify(
        &mut self,
        code_input: &str,
        topic: &str,
        office: Option<&str>,
        actor: &str,
    ) -> Result<u64> {
        let (id, _) = self.ticket_id(code_input)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (from, old_office): (Option<String>, Option<String>) = query_row_cached(
            &tx,
            "SELECT topic, office FROM tickets WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let office = office.map(str::to_string).or(old_office);
        execute_cached(
            &tx,
            "UPDATE tickets SET topic = ?1, topic_confidence = 1.0, topic_reason = ?2, topic_reviewed = 1, office = ?3 WHERE id = ?4",
            params![topic, format!("set by {actor}"), office, id],
        )?;
        let (confirmed, to) = (from.as_deref() == Some(topic), topic.to_string());
        let settled = if confirmed {
            Happened::TopicConfirmed { from, to, office }
        } else {
            Happened::Reclassified { from, to, office }
        };
        insert_event(&tx, id, &now_rfc3339(), actor, &settled)?;
        let count = bump_counter(&tx, SETTLED_SINCE_TRAINING)?;
        tx.commit()?;
        Ok(count as u64)
    }

    fn unsettled_topics(&self) -> Result<Vec<Unsettled>> {
        let mut tickets = self.conn.prepare(
            "SELECT id, code, channel, sender_email, subject, body, topic FROM tickets
             WHERE topic_reviewed = 0 AND status != 'closed' AND annulled_at IS NULL
             ORDER BY id",
        )?;
        let mut docs = self
            .conn
            .prepare("SELECT text FROM documents WHERE ticket_id = ?1 ORDER BY ord")?;
        let rows = tickets.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, code, channel, sender_email, subject, body, topic) = row?;
            let texts = docs
                .query_map([id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let text =
                crate::pipeline::classification_text(&body, texts.iter().map(String::as_str));
            out.push(Unsettled {
                id,
                code,
                channel,
                sender_email,
                subject,
                text,
                topic,
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (from, reviewed, status, annulled, old_office): (
            Option<String>,
            bool,
            String,
            Option<String>,
            Option<String>,
        ) = query_row_cached(
            &tx,
            "SELECT topic, topic_reviewed, status, annulled_at, office FROM tickets WHERE id = ?1",
            [ticket_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        // A person's word stands: a ticket settled since it was read is left alone.
        if reviewed || status == "closed" || annulled.is_some() {
            return Ok(false);
        }
        // A person's routing stands too: the office follows the topic only if nobody moved it.
        let routed: bool = query_row_cached(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM events WHERE ticket_id = ?1 AND kind = ?2)",
            params![ticket_id, EventKind::Routed.as_str()],
            |r| r.get(0),
        )?;
        let office = c
            .office
            .as_deref()
            .filter(|_| !routed)
            .map(str::to_string)
            .or(old_office);
        execute_cached(
            &tx,
            "UPDATE tickets SET topic = ?1, topic_confidence = ?2, topic_reason = ?3,
             secondary_topics = ?4, topic_guesses = ?5, office = ?6 WHERE id = ?7",
            params![
                c.topic,
                c.confidence,
                c.reason,
                serde_json::to_string(&c.secondary).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&c.guesses).unwrap_or_else(|_| "[]".into()),
                office,
                ticket_id
            ],
        )?;
        let changed = from.as_deref() != Some(c.topic.as_str());
        if changed {
            let moved = Happened::Reclassified {
                from,
                to: c.topic.clone(),
                office,
            };
            insert_event(&tx, ticket_id, &now_rfc3339(), actor, &moved)?;
        }
        tx.commit()?;
        Ok(changed)
    }

    fn settled_since_training(&self) -> Result<u64> {
        // No row yet: nothing settled. Any other failure is the store's, and said.
        let value: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [SETTLED_SINCE_TRAINING],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.unwrap_or(0).max(0) as u64)
    }

    fn import_labelled(&mut self, examples: &[Example]) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_rfc3339();
        let mut added = 0;
        for e in examples {
            added += execute_cached(
                &tx,
                "INSERT OR IGNORE INTO labelled_history (record_id, subject, body, topic, channel, sender_email, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![e.id, e.subject, e.body, e.topic, e.channel, e.sender_email, now],
            )?;
        }
        if added > 0 {
            bump_counter(&tx, SETTLED_SINCE_TRAINING)?;
        }
        tx.commit()?;
        Ok(added)
    }

    fn training_examples(&self) -> Result<Vec<Example>> {
        let mut out = self.examples_of(
            "SELECT record_id, subject, body, topic, channel, sender_email FROM labelled_history ORDER BY id",
            [],
        )?;
        out.extend(self.examples_of(
            &format!("SELECT code, subject, body, topic, channel, sender_email FROM tickets WHERE {SETTLED} ORDER BY id"),
            [UNSORTED],
        )?);
        Ok(out)
    }

    fn settled_answers(&self) -> Result<Vec<(f32, bool)>> {
        // The first classification of a ticket is the one it was filed with: in its
        // `created` event, or (stores written before) the `classified` event after it.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT t.topic, e.detail FROM tickets t JOIN events e ON e.id = \
             (SELECT min(id) FROM events WHERE ticket_id = t.id AND {CLASSIFYING_EVENT}) \
             WHERE {SETTLED} ORDER BY t.id"
        ))?;
        let rows = stmt.query_map(params![UNSORTED], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (settled, detail) = row?;
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
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
        Ok(self.conn.query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM labelled_history) OR EXISTS (SELECT 1 FROM tickets WHERE {SETTLED})"),
            [UNSORTED],
            |r| r.get(0),
        )?)
    }

    fn trained(&mut self, before: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE counters SET value = max(0, value - ?2) WHERE name = ?1",
            params![SETTLED_SINCE_TRAINING, before as i64],
        )?;
        Ok(())
    }
}
