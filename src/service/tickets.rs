//! A clerk's other actions on a ticket (route, note, summary, duplicate, link, reply) and registering
//! a request taken at the desk: what the CLI and the web app each accept, checked here once,
//! so the same input is refused with the same words wherever it is typed.

use crate::store::prelude::*;
use crate::store::{Filed, NewTicket, StoreError};

/// Longest note or reply text accepted: a letter's worth, not an attachment pasted in.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Longest office name or reply subject.
pub const MAX_LINE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: missing")]
    Missing { what: &'static str },
    #[error("{what}: at most {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what}: one line, without control characters")]
    NotOneLine { what: &'static str },
}

/// A free text (note, reply body): trimmed, not empty, not longer than a letter.
fn text(value: &str, what: &'static str) -> Result<String, ActionError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ActionError::Missing { what });
    }
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(ActionError::TooLong {
            what,
            max: MAX_TEXT_CHARS,
        });
    }
    Ok(v.to_string())
}

/// A one-line value (office, subject): a line break in a mail subject would start a header.
fn line(value: &str, what: &'static str) -> Result<String, ActionError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ActionError::Missing { what });
    }
    if v.chars().any(char::is_control) {
        return Err(ActionError::NotOneLine { what });
    }
    if v.chars().count() > MAX_LINE_CHARS {
        return Err(ActionError::TooLong {
            what,
            max: MAX_LINE_CHARS,
        });
    }
    Ok(v.to_string())
}

/// Hands a ticket to an office; false when it was already there.
pub fn route(
    store: &mut impl Register,
    code: &str,
    office: &str,
    actor: &str,
) -> Result<bool, ActionError> {
    let office = line(office, "office")?;
    Ok(store.route(code, &office, actor)?)
}

/// Appends an internal note to the ticket's history.
pub fn note(
    store: &mut impl Register,
    code: &str,
    note: &str,
    actor: &str,
) -> Result<(), ActionError> {
    let note = text(note, "text")?;
    Ok(store.add_note(code, &note, actor)?)
}

/// Longest summary of a recording: a few sentences a clerk writes while listening.
pub const MAX_SUMMARY_CHARS: usize = 2_000;

/// A clerk's summary of what a recording (voicemail) says.
pub fn summarize(
    store: &mut impl Register,
    code: &str,
    summary: &str,
    actor: &str,
) -> Result<(), ActionError> {
    let summary = text(summary, "summary")?;
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(ActionError::TooLong {
            what: "summary",
            max: MAX_SUMMARY_CHARS,
        });
    }
    Ok(store.set_summary(code, &summary, actor)?)
}

/// Annuls a registration, with the reason and the act that authorised it; with
/// `replaced_by`, the registration made again with the right values is linked to it.
pub fn annul(
    store: &mut impl Register,
    code: &str,
    reason: &str,
    act: Option<&str>,
    replaced_by: Option<&str>,
    actor: &str,
) -> Result<(), ActionError> {
    let reason = text(reason, "reason")?;
    // The authorising act, when the office names one (a decree, a note's protocol number).
    let act = match act.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => line(a, "act")?,
        None => String::new(),
    };
    if let Some(other) = replaced_by {
        // Checked before anything is written: an annulment cannot be undone.
        store.ticket(other)?;
    }
    store.annul(code, &reason, &act, actor)?;
    if let Some(other) = replaced_by {
        store.set_link(code, other, true, actor)?;
        store.add_note(code, &format!("registrata di nuovo come {other}"), actor)?;
    }
    Ok(())
}

/// Closes `code` as a duplicate of `of`, joining their dossiers.
pub fn mark_duplicate(
    store: &mut impl Register,
    code: &str,
    of: &str,
    actor: &str,
) -> Result<(), ActionError> {
    let of = line(of, "of")?;
    Ok(store.mark_duplicate(code, &of, actor)?)
}

/// Links two tickets (same person or case) or undoes the link.
pub fn link(
    store: &mut impl Register,
    code: &str,
    other: &str,
    linked: bool,
    actor: &str,
) -> Result<(), ActionError> {
    let other = line(other, "other ticket")?;
    Ok(store.set_link(code, &other, linked, actor)?)
}

/// Queues an email answer to the ticket's sender (sent by `run` through the outbox); returns
/// the address it goes to. `domain` ends our Message-IDs.
pub fn reply(
    store: &mut impl Register,
    code: &str,
    subject: &str,
    body: &str,
    actor: &str,
    domain: &str,
) -> Result<String, ActionError> {
    let subject = line(subject, "subject")?;
    let body = text(body, "text")?;
    Ok(store.queue_reply(code, &subject, &body, actor, domain)?)
}

/// Files a request a clerk took at the desk or on the phone, with who registered it in its
/// history; returns its code.
pub fn register(
    store: &mut impl Register,
    ticket: &NewTicket,
    code_prefix: &str,
    actor: &str,
) -> Result<String, ActionError> {
    let filed: Filed = store.file(ticket, code_prefix)?;
    let code = filed.code().to_string();
    store.add_note(&code, &format!("registrata da {actor}"), actor)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_the_same_way_for_every_caller() {
        assert!(matches!(
            text("  \n ", "text"),
            Err(ActionError::Missing { what: "text" })
        ));
        assert_eq!(text("  una nota ", "text").unwrap(), "una nota");
        assert!(matches!(
            text(&"a".repeat(MAX_TEXT_CHARS + 1), "text"),
            Err(ActionError::TooLong { .. })
        ));
        assert!(matches!(
            line("Re: x\r\nBcc: a@b.it", "subject"),
            Err(ActionError::NotOneLine { .. })
        ));
        assert_eq!(
            line(" Ufficio tecnico ", "office").unwrap(),
            "Ufficio tecnico"
        );
        assert!(matches!(
            line(&"è".repeat(MAX_LINE_CHARS + 1), "office"),
            Err(ActionError::TooLong { .. })
        ));
    }
}
