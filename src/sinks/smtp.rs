//! Acknowledgements to citizens by SMTP (`lettre`), from the store's outbox.
//!
//! Filing a ticket queues its acknowledgement in the same transaction (see `store`); this
//! sink sends what is due and records each result as an event on the ticket. An SMTP outage
//! only delays: a failed message is tried again later with a growing pause. Messages follow
//! RFC 3834 (`Auto-Submitted: auto-replied`, `In-Reply-To`/`References` to the citizen's).

use crate::config::{SmtpAckConfig, TlsMode};
use crate::store::OutboxItem;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};
use std::path::Path;
use std::time::Duration;

const BUILTIN_IT: &str = include_str!("../../pipelines/templates/ack.it.txt");
const BUILTIN_EN: &str = include_str!("../../pipelines/templates/ack.en.txt");
const CLOSED_IT: &str = include_str!("../../pipelines/templates/closed.it.txt");
const CLOSED_EN: &str = include_str!("../../pipelines/templates/closed.en.txt");

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
        for part in [subject.as_str(), body] {
            check_placeholders(part)?;
        }
        Ok(Template {
            subject,
            body: body.to_string(),
        })
    }

    pub(crate) fn fill(text: &str, item: &OutboxItem, office: &str) -> String {
        // The citizen's subject is theirs: no template syntax is read inside it.
        text.replace("{code}", &item.ticket_code)
            .replace("{protocol}", &item.protocol)
            .replace("{office}", office)
            .replace("{subject}", &item.subject.replace(['\r', '\n'], " "))
    }
}

/// A misspelt placeholder would reach the citizen as written: refused.
pub(crate) fn check_placeholders(text: &str) -> Result<(), String> {
    for (at, _) in text.match_indices('{') {
        let name: String = text[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if text[at + 1 + name.len()..].starts_with('}') && !PLACEHOLDERS.contains(&name.as_str()) {
            return Err(format!(
                "unknown placeholder {{{name}}}; a template may use {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
    }
    Ok(())
}

pub struct AckSender {
    transport: SmtpTransport,
    from: Mailbox,
    office: String,
    templates: Templates,
    /// With a `[register]` and a seal, a clerk's reply carries its registration's segnatura.
    segnatura: Option<crate::config::Pipeline>,
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
) -> Result<Templates, (&'static str, String)> {
    let set = |stem, builtin| {
        super::TemplateSet {
            sink: "smtp_ack",
            given: cfg.templates.as_deref(),
            stem,
            language: cfg.language.as_deref(),
            builtin,
        }
        .load(pipeline_dir, Template::parse)
    };
    Ok(Templates {
        ack: set("ack", [("it", BUILTIN_IT), ("en", BUILTIN_EN)])?,
        closed: set("closed", [("it", CLOSED_IT), ("en", CLOSED_EN)])?,
    })
}

/// The automatic messages' templates by language: the acknowledgement and the notice that a
/// request is concluded.
struct Templates {
    ack: std::collections::HashMap<String, Template>,
    closed: std::collections::HashMap<String, Template>,
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
            segnatura: None,
        })
    }

    /// Replies carry the segnatura of their registration when `pipeline` names the register
    /// and the seal.
    pub fn with_segnatura(mut self, pipeline: &crate::config::Pipeline) -> AckSender {
        if pipeline.register.is_some() && crate::register::seal_files(pipeline).is_some() {
            self.segnatura = Some(pipeline.clone());
        }
        self
    }

    /// The acknowledgement (or a clerk's reply) of one outbox item, as it goes on the wire,
    /// with the files it carries.
    pub fn message(
        &self,
        item: &OutboxItem,
        attached: &[super::Attached],
    ) -> Result<Message, String> {
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
                let set = match item.notice {
                    crate::store::Notice::Acknowledgement => &self.templates.ack,
                    crate::store::Notice::Closed => &self.templates.closed,
                };
                let t = set
                    .get(&item.language)
                    .or_else(|| set.get("it"))
                    .ok_or("no template")?;
                (
                    b.subject(Template::fill(&t.subject, item, &self.office))
                        .header(AutoSubmitted)
                        .header(SuppressAutoResponse),
                    Template::fill(&t.body, item, &self.office),
                )
            }
        };
        if attached.is_empty() {
            return b
                .body(body)
                .map_err(|e| format!("cannot build the message: {e}"));
        }
        use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
        for a in attached {
            let mime = ContentType::parse(&a.mime)
                .map_err(|e| format!("{}: not a MIME type: {e}", a.mime))?;
            parts = parts.singlepart(Attachment::new(a.name.clone()).body(a.bytes.clone(), mime));
        }
        b.multipart(parts)
            .map_err(|e| format!("cannot build the message: {e}"))
    }
}

impl super::Sink for AckSender {
    fn via(&self) -> crate::store::Via {
        crate::store::Via::Email
    }

    fn attachments(&self, item: &OutboxItem, store: &crate::store::Store) -> Vec<super::Attached> {
        let Some(pipeline) = &self.segnatura else {
            return Vec::new();
        };
        if item.reply.is_none() {
            return Vec::new();
        }
        use crate::store::prelude::*;
        let made = store
            .ticket(&item.ticket_code)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                crate::register::segnatura_of(&t, pipeline, store.blobs())
                    .map_err(|e| e.to_string())
            });
        match made {
            Ok(xml) => vec![super::Attached {
                name: "segnatura.xml".into(),
                mime: "application/xml".into(),
                bytes: xml.into_bytes(),
            }],
            // The citizen's answer is not held back for want of it; a clerk sees why in the log.
            Err(e) => {
                tracing::warn!(
                    "the reply on {} goes without its segnatura: {e}",
                    item.ticket_code
                );
                Vec::new()
            }
        }
    }

    fn send(&self, item: &OutboxItem, attached: &[super::Attached]) -> Result<(), String> {
        let message = self.message(item, attached)?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| e.to_string())
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
                via: crate::store::Via::Email,
                notice: crate::store::Notice::Acknowledgement,
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
