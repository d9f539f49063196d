//! Where tickets go besides the store. A small closed set: acknowledgements and clerks'
//! replies by SMTP, and by text message through gammu-smsd's outbox.
//!
//! Both take their messages from the store's outbox (queued in the ticket's own
//! transaction) in the same way: [`deliver`] claims each due message before it leaves, so a
//! sender that dies mid-send never sends it twice, and records every result on the ticket.

pub mod sms;
pub mod smtp;

use crate::store::prelude::*;
use crate::store::{OutboxItem, Store, Via};
use std::collections::HashMap;
use std::path::Path;

/// One way out of the outbox.
pub trait Sink: Sync {
    /// Which outbox messages are this sink's.
    fn via(&self) -> Via;

    /// Hands one message on (to the SMTP server, to gammu-smsd's outbox), with `attached`
    /// files when the way out can carry them.
    fn send(&self, item: &OutboxItem, attached: &[Attached]) -> Result<(), String>;

    /// Files that go with the message (a clerk's reply carries its registration's
    /// segnatura); none by default.
    fn attachments(&self, _item: &OutboxItem, _store: &Store) -> Vec<Attached> {
        Vec::new()
    }
}

/// A file a message carries: its name, MIME type and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    pub name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// Sends what is due for `sink` (everything pending when `all`); returns (sent, failed).
/// A failure stops the round: the server or the folder is unavailable, the rest waits.
pub fn deliver(sink: &dyn Sink, store: &mut Store, all: bool) -> (usize, usize) {
    match store.outbox_settle_orphans(&crate::crashes::alive) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "{n} message(s) were being sent when a sender stopped: not sent again, flagged on their tickets"
        ),
        Err(e) => tracing::warn!("outbox: {e}"),
    }
    let due = match store.outbox_due(sink.via(), 100, all) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("outbox: {e}");
            return (0, 0);
        }
    };
    let (mut sent, mut failed) = (0, 0);
    for item in due {
        // Claimed first (committed): a death between the hand-over and the record of it
        // must not send the message twice.
        match store.outbox_claim(&item) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("outbox: {e}");
                break;
            }
        }
        let attached = sink.attachments(&item, store);
        let result = sink.send(&item, &attached);
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
                    "{} message for {} not sent (will retry): {e}",
                    sink.via().as_str(),
                    item.ticket_code
                );
                store.outbox_result(&item, Some(e), retry_after)
            }
        };
        if let Err(e) = recorded {
            tracing::warn!("outbox: {e}");
        }
        if failed > 0 {
            break;
        }
    }
    (sent, failed)
}

/// Where a sink's templates are, and which it needs.
pub(crate) struct TemplateSet<'a> {
    /// The sink's kind, for messages (`smtp_ack`).
    pub sink: &'a str,
    /// The `templates` folder the pipeline gives (already relative to its file), if any.
    pub given: Option<&'a Path>,
    /// File names are `<stem>.<language>.txt`.
    pub stem: &'a str,
    /// The language the pipeline asks for, which must have a template.
    pub language: Option<&'a str>,
    /// The shipped Italian and English texts, used where the folder has none.
    pub builtin: [(&'a str, &'a str); 2],
}

impl TemplateSet<'_> {
    /// Each language's template, read by `parse`; a problem comes with the key of the
    /// pipeline file it is about.
    pub(crate) fn load<T>(
        &self,
        pipeline_dir: &Path,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<HashMap<String, T>, (&'static str, String)> {
        let dir = match self.given {
            Some(t) if !t.is_dir() => {
                let message = format!(
                    "{}: the templates folder {} does not exist",
                    self.sink,
                    t.display()
                );
                return Err(("templates", message));
            }
            Some(t) => t.to_path_buf(),
            None => pipeline_dir.join("templates"),
        };
        let path_of = |lang: &str| dir.join(format!("{}.{lang}.txt", self.stem));
        let parsed = |path: &Path, text: &str| {
            parse(text).map_err(|e| ("templates", format!("{}: {e}", path.display())))
        };
        let mut templates = HashMap::new();
        for (lang, builtin) in self.builtin {
            let path = path_of(lang);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|_| builtin.to_string());
            templates.insert(lang.to_string(), parsed(&path, &text)?);
        }
        if let Some(lang) = self.language.filter(|l| !templates.contains_key(*l)) {
            let path = path_of(lang);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                let message = format!(
                    "{}: no template for language `{lang}`: {}: {e}",
                    self.sink,
                    path.display()
                );
                ("language", message)
            })?;
            templates.insert(lang.to_string(), parsed(&path, &text)?);
        }
        Ok(templates)
    }
}
