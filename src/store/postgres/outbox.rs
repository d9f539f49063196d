//! The outbox: acknowledgements, notices and clerks' replies waiting to be sent, claimed by
//! one sender at a time.

use super::filing::{protocol_string, remember_message};
use super::*;
use crate::domain::filing::Direction;

/// When a request is concluded, its citizen is told the way their acknowledgement went
/// (queued in the closing's own transaction); no acknowledgement, no notice.
pub(super) fn queue_closed_notice(tx: &mut dyn Sql, ticket_id: i64) -> Result<()> {
    let Some(r) = tx.query_opt(
        "SELECT to_addr, via, message_id, in_reply_to, language FROM outbox
         WHERE ticket_id = $1 AND reply_subject IS NULL AND notice IS NULL
         ORDER BY id LIMIT 1",
        &[&ticket_id],
    )?
    else {
        return Ok(());
    };
    let (to, via, ack_id, in_reply_to, language): (String, String, String, Option<String>, String) = (
        col(&r, 0)?,
        col(&r, 1)?,
        col(&r, 2)?,
        col(&r, 3)?,
        col(&r, 4)?,
    );
    let now = now_rfc3339();
    let token: u64 = rand::Rng::gen(&mut rand::thread_rng());
    let domain = ack_id.rsplit('@').next().unwrap_or("sportello.localhost");
    let message_id = format!("closed.{ticket_id}.{token:016x}@{domain}");
    tx.execute(
        "INSERT INTO outbox (ticket_id, to_addr, message_id, in_reply_to, language, created_at,
                             next_attempt_at, via, notice)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, 'closed')",
        &[
            &ticket_id,
            &to,
            &message_id,
            &in_reply_to,
            &language,
            &now,
            &via,
        ],
    )?;
    if via == Via::Email.as_str() {
        remember_message(tx, &message_id, ticket_id, Direction::Out)?;
    }
    let queued = Happened::NoticeQueued {
        to,
        notice: "closed".into(),
        message_id,
    };
    system_event(tx, ticket_id, &now, &queued)
}

/// How long another machine's claim on a message stands before this one settles it: sending
/// one message takes seconds (a mail server's answer, a modem's), so a claim this old is a
/// machine gone, not a slow one.
const SENDING_LEASE_SECS: i64 = 15 * 60;

/// This machine's name, as outbox claims record it.
fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (ok, std::str::from_utf8(&buf[..end])) {
        (true, Ok(name)) if !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

impl Outbox for PgStore {
    fn outbox_due(&self, via: Via, limit: usize, all: bool) -> Result<Vec<OutboxItem>> {
        let rows = self.read()?.query(
            "SELECT o.id, t.code, t.protocol_year, t.protocol_number, t.subject, o.to_addr, o.message_id,
                    o.in_reply_to, o.language, o.attempts, o.reply_subject, o.reply_body, o.notice
             FROM outbox o JOIN tickets t ON t.id = o.ticket_id
             WHERE o.sent_at IS NULL AND o.sending_by IS NULL AND o.uncertain IS NULL
               AND ($3 OR o.next_attempt_at <= $1) AND o.via = $4 ORDER BY o.id LIMIT $2",
            &[&now_rfc3339(), &(limit as i64), &all, &via.as_str()],
        )?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: col(r, 0)?,
                    via,
                    notice: match col::<Option<String>>(r, 12)?.as_deref() {
                        Some("closed") => Notice::Closed,
                        _ => Notice::Acknowledgement,
                    },
                    ticket_code: col(r, 1)?,
                    protocol: protocol_string(col(r, 2)?, col(r, 3)?),
                    subject: col(r, 4)?,
                    to: col(r, 5)?,
                    message_id: col(r, 6)?,
                    in_reply_to: col(r, 7)?,
                    language: col(r, 8)?,
                    attempts: col(r, 9)?,
                    reply: match (col::<Option<String>>(r, 10)?, col::<Option<String>>(r, 11)?) {
                        (Some(subject), Some(body)) => Some((subject, body)),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    fn outbox_claim(&mut self, item: &OutboxItem) -> Result<bool> {
        let n = self.read()?.execute(
            "UPDATE outbox SET sending_by = $1, sending_host = $3, sending_since = $4
             WHERE id = $2 AND sent_at IS NULL AND sending_by IS NULL AND uncertain IS NULL",
            &[
                &i64::from(std::process::id()),
                &item.id,
                &host(),
                &now_rfc3339(),
            ],
        )?;
        Ok(n == 1)
    }

    fn outbox_settle_orphans(&mut self, alive: &dyn Fn(u32) -> bool) -> Result<usize> {
        // A process id means something on its own machine only: this machine's claims are
        // judged by whether their process lives (a claim made before machines were named
        // counts as ours); another machine's only once it is far older than any sending
        // takes, as that machine may be gone for good.
        let me = host();
        let expired = chrono::Utc::now() - chrono::Duration::seconds(SENDING_LEASE_SECS);
        let expired = expired.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let claimed: Vec<(i64, i64, i64, String, Option<String>)> = self
            .read()?
            .query(
                "SELECT id, ticket_id, sending_by, to_addr, sending_host FROM outbox
                 WHERE sent_at IS NULL AND sending_by IS NOT NULL AND uncertain IS NULL
                   AND (sending_host = $1 OR sending_host IS NULL
                        OR sending_since IS NULL OR sending_since < $2)",
                &[&me, &expired],
            )?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?, col(r, 4)?)))
            .collect::<Result<_>>()?;
        let mut settled = 0;
        for (id, ticket_id, pid, to, machine) in claimed {
            let ours = machine.as_deref().is_none_or(|m| m == me);
            if ours && (pid == i64::from(std::process::id()) || alive(pid as u32)) {
                continue;
            }
            settled += self.write(|tx| {
                let reason = if ours {
                    "the office stopped while this message was being sent: it may not have arrived, and is not sent again; send it again from the ticket if the citizen did not get it".to_string()
                } else {
                    format!("the machine sending this message ({}) stopped before saying whether it was sent: it may not have arrived, and is not sent again; send it again from the ticket if the citizen did not get it", machine.as_deref().unwrap_or_default())
                };
                let reason = reason.as_str();
                let n = tx.execute(
                    "UPDATE outbox SET uncertain = $1 WHERE id = $2 AND sent_at IS NULL AND sending_by = $3",
                    &[&reason, &id, &pid],
                )?;
                if n == 1 {
                    let uncertain = Happened::AckUncertain {
                        to: to.clone(),
                        reason: reason.into(),
                    };
                    system_event(tx, ticket_id, &now_rfc3339(), &uncertain)?;
                }
                Ok(n as usize)
            })?;
        }
        Ok(settled)
    }

    fn outbox_pending(&self) -> Result<i64> {
        let r = self.read()?.query_one(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND uncertain IS NULL",
            &[],
        )?;
        col(&r, 0)
    }

    fn outbox_result(
        &mut self,
        item: &OutboxItem,
        error: Option<&str>,
        retry_after: i64,
    ) -> Result<()> {
        self.write(|tx| {
            let now = now_rfc3339();
            let ticket_id: i64 = col(
                &tx.query_one("SELECT ticket_id FROM outbox WHERE id = $1", &[&item.id])?,
                0,
            )?;
            let (to, message_id) = (item.to.clone(), item.message_id.clone());
            match error {
                None => {
                    tx.execute(
                        "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, last_error = NULL,
                            sending_by = NULL WHERE id = $2",
                        &[&now, &item.id],
                    )?;
                    let sent = if item.reply.is_some() {
                        Happened::ReplySent { to, message_id }
                    } else {
                        Happened::AckSent { to, message_id }
                    };
                    system_event(tx, ticket_id, &now, &sent)
                }
                Some(e) => {
                    let next = (chrono::Utc::now() + chrono::Duration::seconds(retry_after))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    tx.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
                            sending_by = NULL WHERE id = $3",
                        &[&e, &next, &item.id],
                    )?;
                    let (error, attempt) = (e.to_string(), item.attempts + 1);
                    let failed = if item.reply.is_some() {
                        Happened::ReplyFailed {
                            to,
                            error,
                            attempt,
                            next_attempt_at: next,
                        }
                    } else {
                        Happened::AckFailed {
                            to,
                            error,
                            attempt,
                            next_attempt_at: next,
                        }
                    };
                    system_event(tx, ticket_id, &now, &failed)
                }
            }
        })
    }

    fn queue_reply(
        &mut self,
        code_input: &str,
        subject: &str,
        body: &str,
        actor: &str,
        domain: &str,
    ) -> Result<String> {
        self.write(|tx| {
            let (id, code) = ticket_id(tx, code_input)?;
            let r = tx.query_one(
                "SELECT sender_email, sender_phone, channel FROM tickets WHERE id = $1",
                &[&id],
            )?;
            let (email, phone, channel): (Option<String>, Option<String>, String) =
                (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
            let (to, via) = match (email.filter(|t| t.contains('@')), phone) {
                (Some(to), _) => (to, Via::Email),
                // A text message is answered the way it came.
                (None, Some(phone)) if channel == Channel::Sms.as_str() => (phone, Via::Sms),
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "{code} has no email address to answer"
                    )))
                }
            };
            if via == Via::Sms && body.chars().count() > crate::sinks::sms::MAX_CHARS {
                return Err(StoreError::Conflict(format!(
                    "a text message holds at most {} characters; this answer has {}",
                    crate::sinks::sms::MAX_CHARS,
                    body.chars().count()
                )));
            }
            let in_reply_to: Option<String> = tx
                .query_opt(
                    "SELECT message_id FROM message_ids WHERE ticket_id = $1 AND direction = 'in'
                     ORDER BY id DESC LIMIT 1",
                    &[&id],
                )?
                .map(|r| col(&r, 0))
                .transpose()?;
            let now = now_rfc3339();
            let token: u64 = rand::Rng::gen(&mut rand::thread_rng());
            let message_id = format!("reply.{id}.{token:016x}@{domain}");
            tx.execute(
                "INSERT INTO outbox (ticket_id, to_addr, message_id, in_reply_to, language, created_at,
                                     next_attempt_at, reply_subject, reply_body, sent_by, via)
                 VALUES ($1, $2, $3, $4, 'it', $5, $5, $6, $7, $8, $9)",
                &[&id, &to, &message_id, &in_reply_to, &now, &subject, &body, &actor, &via.as_str()],
            )?;
            if via == Via::Email {
                remember_message(tx, &message_id, id, Direction::Out)?;
            }
            let queued = Happened::ReplyQueued {
                to: to.clone(),
                subject: subject.into(),
                text: body.into(),
                message_id,
            };
            insert_event(tx, id, &now, actor, &queued)?;
            Ok(to)
        })
    }
}
