//! Acknowledgements to citizens by SMTP (`lettre`), from the store's outbox.
//!
//! Filing a ticket queues its acknowledgement in the same transaction (see `store`); this
//! sink sends what is due and records each result as an event on the ticket. An SMTP outage
//! only delays: a failed message is tried again later with a growing pause. Messages follow
//! RFC 3834 (`Auto-Submitted: auto-replied`, `In-Reply-To`/`References` to the citizen's).

use crate::config::{SmtpAckConfig, TlsMode};
use crate::store::prelude::*;
use crate::store::{OutboxItem, Store};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};
use std::path::Path;
use std::time::Duration;

const BUILTIN_IT: &str = include_str!("../../pipelines/templates/ack.it.txt");
const BUILTIN_EN: &str = include_str!("../../pipelines/templates/ack.en.txt");

/// `Auto-Submitted: auto-replied` (RFC 3834): no robot answers this.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".into())
    }
}

/// Exchange's way of saying the same.
#[derive(Clone)]
struct SuppressAutoResponse;

impl Header for SuppressAutoResponse {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(SuppressAutoResponse)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

/// What a template may fill in.
const PLACEHOLDERS: [&str; 4] = ["code", "protocol", "subject", "office"];

/// A template: `Subject: …`, a blank line, the body; `{code}`, `{protocol}`, `{subject}`,
/// `{office}` are filled in.
#[derive(Debug, Clone)]
pub struct Template {
    subject: String,
    body: String,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let (head, body) = text
            .split_once("\n\n")
            .ok_or("a template starts with `Subject: …`, then a blank line, then the body")?;
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject:"))
            .ok_or("the template has no `Subject:` line")?
            .trim()
            .to_string();
        // A misspelt placeholder would reach the citizen as written.
        for part in [subject.as_str(), body] {
            for (at, _) in part.match_indices('{') {
                let name: String = part[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if part[at + 1 + name.len()..].starts_with('}')
                    && !PLACEHOLDERS.contains(&name.as_str())
                {
                    return Err(format!(
                        "unknown placeholder {{{name}}}; a template may use {}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
            }
        }
        Ok(Template {
            subject,
            body: body.to_string(),
        })
    }

    fn fill(text: &str, item: &OutboxItem, office: &str) -> String {
        // The citizen's subject is theirs: no template syntax is read inside it.
        text.replace("{code}", &item.ticket_code)
            .replace("{protocol}", &item.protocol)
            .replace("{office}", office)
            .replace("{subject}", &item.subject.replace(['\r', '\n'], " "))
    }
}

pub struct AckSender {
    transport: SmtpTransport,
    from: Mailbox,
    office: String,
    templates: std::collections::HashMap<String, Template>,
}

impl SmtpAckConfig {
    /// What sending needs from this machine, each problem with the key it is about: the
    /// password variable set, the templates readable and valid. (The file's own checks, the
    /// address and the TLS policy, are [`Pipeline::parse`](crate::config::Pipeline::parse)'s.)
    pub fn start_problems(&self, pipeline_dir: &Path) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = password(self) {
            problems.push(("password_env", e));
        }
        if let Err(problem) = templates(self, pipeline_dir) {
            problems.push(problem);
        }
        problems
    }
}

/// The `from` address, parsed as it will go on the wire.
pub fn from_address(cfg: &SmtpAckConfig) -> Result<Mailbox, String> {
    cfg.from
        .parse()
        .map_err(|e| format!("`from` {:?} is not an address: {e}", cfg.from))
}

/// The SMTP password, when a user is given.
fn password(cfg: &SmtpAckConfig) -> Result<Option<String>, String> {
    match (&cfg.username, &cfg.password_env) {
        (Some(_), Some(env)) => std::env::var(env).map(Some).map_err(|_| {
            format!("smtp_ack: the environment variable {env} (the SMTP password) is not set")
        }),
        _ => Ok(None),
    }
}

/// The templates (`ack.<language>.txt` in `templates`, else in the pipeline's folder's
/// `templates`; the shipped Italian and English ones where there is none), each parsed. A
/// problem comes with the key of the pipeline file it is about.
fn templates(
    cfg: &SmtpAckConfig,
    pipeline_dir: &Path,
) -> Result<std::collections::HashMap<String, Template>, (&'static str, String)> {
    let mut templates = std::collections::HashMap::new();
    // `templates` was made relative to the pipeline file when the file was read.
    let dir = match &cfg.templates {
        Some(t) if !t.is_dir() => {
            return Err((
                "templates",
                format!(
                    "smtp_ack: the templates folder {} does not exist",
                    t.display()
                ),
            ))
        }
        Some(t) => t.clone(),
        None => pipeline_dir.join("templates"),
    };
    let parse = |path: &Path, text: &str| {
        Template::parse(text).map_err(|e| ("templates", format!("{}: {e}", path.display())))
    };
    for (lang, builtin) in [("it", BUILTIN_IT), ("en", BUILTIN_EN)] {
        let path = dir.join(format!("ack.{lang}.txt"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| builtin.to_string());
        templates.insert(lang.to_string(), parse(&path, &text)?);
    }
    if let Some(lang) = &cfg.language {
        if !templates.contains_key(lang) {
            let path = dir.join(format!("ack.{lang}.txt"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                let message = format!(
                    "smtp_ack: no template for language `{lang}`: {}: {e}",
                    path.display()
                );
                ("language", message)
            })?;
            templates.insert(lang.clone(), parse(&path, &text)?);
        }
    }
    Ok(templates)
}

impl AckSender {
    /// Reads the templates (`ack.<language>.txt` in `templates`, relative to the pipeline's
    /// folder; the shipped Italian and English ones otherwise) and prepares the transport.
    pub fn new(
        cfg: &SmtpAckConfig,
        pipeline_dir: &Path,
        office: Option<&str>,
    ) -> Result<AckSender, String> {
        let from = from_address(cfg).map_err(|e| format!("smtp_ack: {e}"))?;
        if let Some(e) = crate::config::plain_tls_problem(cfg.tls, &cfg.host) {
            return Err(format!("smtp_ack: {e}"));
        }
        let port = cfg.port.unwrap_or(match cfg.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::Plain => 25,
        });
        let builder = match cfg.tls {
            TlsMode::Implicit => SmtpTransport::relay(&cfg.host),
            TlsMode::Starttls => SmtpTransport::starttls_relay(&cfg.host),
            TlsMode::Plain => Ok(SmtpTransport::builder_dangerous(&cfg.host)),
        }
        .map_err(|e| format!("smtp_ack: {e}"))?;
        let mut builder = builder.port(port).timeout(Some(Duration::from_secs(20)));
        if let (Some(user), Some(password)) = (&cfg.username, password(cfg)?) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(AckSender {
            transport: builder.build(),
            from,
            office: office.unwrap_or("URP").to_string(),
            templates: templates(cfg, pipeline_dir).map_err(|(_, e)| e)?,
        })
    }

    /// The acknowledgement (or a clerk's reply) of one outbox item, as it goes on the wire.
    pub fn message(&self, item: &OutboxItem) -> Result<Message, String> {
        let to: Mailbox = item
            .to
            .parse()
            .map_err(|e| format!("{} is not an address: {e}", item.to))?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(format!("<{}>", item.message_id)));
        if let Some(id) = &item.in_reply_to {
            b = b
                .in_reply_to(format!("<{id}>"))
                .references(format!("<{id}>"));
        }
        let (b, body) = match &item.reply {
            // Written by a person, so not marked as automatic.
            Some((subject, body)) => (b.subject(subject), body.clone()),
            None => {
                let t = self
                    .templates
                    .get(&item.language)
                    .or_else(|| self.templates.get("it"))
                    .ok_or("no template")?;
                (
                    b.subject(Template::fill(&t.subject, item, &self.office))
                        .header(AutoSubmitted)
                        .header(SuppressAutoResponse),
                    Template::fill(&t.body, item, &self.office),
                )
            }
        };
        b.body(body)
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// Sends what is due (everything pending when `all`); returns (sent, failed).
    pub fn deliver(&self, store: &mut Store, all: bool) -> (usize, usize) {
        match store.outbox_settle_orphans(&crate::crashes::alive) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                "{n} message(s) were being sent when a sender stopped: not sent again, flagged on their tickets"
            ),
            Err(e) => tracing::warn!("outbox: {e}"),
        }
        let due = match store.outbox_due(100, all) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("outbox: {e}");
                return (0, 0);
            }
        };
        let (mut sent, mut failed) = (0, 0);
        for item in due {
            // Claimed first (committed): a death between the SMTP server's "OK" and the
            // record of it must not send the message twice.
            match store.outbox_claim(&item) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!("outbox: {e}");
                    break;
                }
            }
            let result = self.message(&item).and_then(|m| {
                self.transport
                    .send(&m)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            // 30 s, 1 min, 2 min, … up to an hour between attempts.
            let retry_after = (30i64 << item.attempts.min(7)).min(3600);
            let recorded = match &result {
                Ok(()) => {
                    sent += 1;
                    store.outbox_result(&item, None, 0)
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(
                        "acknowledgement for {} not sent (will retry): {e}",
                        item.ticket_code
                    );
                    store.outbox_result(&item, Some(e), retry_after)
                }
            };
            if let Err(e) = recorded {
                tracing::warn!("outbox: {e}");
            }
            if failed > 0 {
                // The server is down: the rest waits for the next round.
                break;
            }
        }
        (sent, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_parse_and_fill() {
        for text in [BUILTIN_IT, BUILTIN_EN] {
            let t = Template::parse(text).unwrap();
            let item = OutboxItem {
                id: 1,
                ticket_code: "URP-7K3M-9QXD".into(),
                protocol: "2026/0000123".into(),
                subject: "Allaccio {code}\r\ngas".into(),
                to: "a@b.it".into(),
                message_id: "ack.1@x".into(),
                in_reply_to: None,
                language: "it".into(),
                attempts: 0,
                reply: None,
            };
            let s = Template::fill(&t.subject, &item, "URP");
            assert!(s.contains("URP-7K3M-9QXD") && !s.contains('\n'), "{s}");
            assert!(Template::fill(&t.body, &item, "URP").contains("2026/0000123"));
        }
        assert!(Template::parse("no subject here").is_err());
    }
}
