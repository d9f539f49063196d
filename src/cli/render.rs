//! What the commands print: the machine-output channel, outcome lines, a ticket as text,
//! masked personal data.

use super::*;

/// Machine output goes to the real stdout; file descriptor 1 is pointed at stderr, so text a
/// library prints can never corrupt `--json` output.
pub(super) struct Out {
    pub(super) file: std::fs::File,
}

impl Out {
    pub(super) fn take_stdout() -> Out {
        use std::os::fd::FromRawFd;
        // SAFETY: plain descriptor calls at start-up, before any other thread exists.
        unsafe {
            let saved = libc::dup(1);
            if saved >= 0 && libc::dup2(2, 1) >= 0 {
                return Out {
                    file: std::fs::File::from_raw_fd(saved),
                };
            }
            Out {
                file: std::fs::File::from_raw_fd(libc::dup(1)),
            }
        }
    }

    pub(super) fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.file, "{s}").context("cannot write output")
    }

    /// Bytes as they are (a document, not a line of output).
    pub(super) fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).context("cannot write output")
    }

    pub(super) fn json(&mut self, v: &impl serde::Serialize) -> Result<()> {
        let s = serde_json::to_string(v).context("cannot encode JSON")?;
        self.line(&s)
    }
}

pub(super) fn report_outcome(
    out: &mut Out,
    store: &Store,
    outcome: &Outcome,
    json: bool,
) -> Result<()> {
    let file = outcome.origin.display().to_string();
    match &outcome.result {
        Err(e) => {
            eprintln!("sportello: {file}: {e}");
            if json {
                out.json(
                    &serde_json::json!({"file": file, "outcome": "error", "error": e.to_string()}),
                )?;
            }
        }
        Ok((filed, attention)) => {
            let kind = match filed {
                Filed::Created { .. } => "created",
                Filed::Duplicate { .. } => "duplicate",
                Filed::AlreadyFiled { .. } => "already_filed",
                Filed::Appended { .. } => "appended",
            };
            if json {
                let ticket = store.ticket(filed.code())?;
                out.json(&serde_json::json!({"file": file, "outcome": kind, "ticket": ticket}))?;
            } else {
                let note = match (filed, attention) {
                    (Filed::Created { protocol, .. }, Some(a)) => {
                        format!("{protocol}  needs attention: {}", one_line(a, 120))
                    }
                    (Filed::Created { protocol, .. }, None) => protocol.clone(),
                    (Filed::Duplicate { .. }, _) => {
                        "duplicate of this ticket, recorded on it".into()
                    }
                    (Filed::AlreadyFiled { .. }, _) => "already filed".into(),
                    (Filed::Appended { what, .. }, _) => format!("{what} added to this ticket"),
                };
                out.line(&format!("{}  {kind:<13}  {file}  {note}", filed.code()))?;
            }
        }
    }
    Ok(())
}

pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

pub(super) fn render_ticket(t: &Ticket) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<17}{v}\n"));
    line("code", &t.code);
    line("protocol", &t.protocol);
    line("channel", t.channel.as_str());
    line("received", &t.received_at);
    line("registered", &t.registered_at);
    let sender = [
        &t.sender.name,
        &t.sender.email,
        &t.sender.fax,
        &t.sender.phone,
    ]
    .iter()
    .filter_map(|v| v.as_deref())
    .collect::<Vec<_>>()
    .join(", ");
    line("sender", if sender.is_empty() { "-" } else { &sender });
    line("subject", &t.subject);
    line("status", t.status.as_str());
    let topic = match (&t.topic, t.topic_confidence) {
        (Some(topic), Some(c)) => format!("{topic} ({:.0}%)", c * 100.0),
        (Some(topic), None) => topic.clone(),
        _ => "-".into(),
    };
    line("topic", &topic);
    if let Some(r) = &t.topic_reason {
        line("topic reason", r);
    }
    line("office", t.office.as_deref().unwrap_or("-"));
    if t.needs_attention {
        line(
            "NEEDS ATTENTION",
            t.attention_reason.as_deref().unwrap_or("yes"),
        );
    }
    if let Some(p) = &t.parent {
        line("follows up", p);
    }
    s.push_str("\ndocuments\n");
    for (i, d) in t.documents.iter().enumerate() {
        s.push_str(&format!(
            "  {}. {} ({}, {} bytes{}, {}) sha256 {}\n",
            i + 1,
            d.name,
            d.mime,
            d.size,
            d.pages
                .map(|p| format!(", {p} page(s)"))
                .or_else(|| d
                    .duration_secs
                    .map(|secs| format!(", {}", crate::extract::audio::shown_duration(secs))))
                .unwrap_or_default(),
            d.kind.as_str(),
            &d.sha256[..12.min(d.sha256.len())]
        ));
        if d.ocr {
            s.push_str(&format!(
                "     text by OCR, mean confidence {:.0}\n",
                d.ocr_confidence.unwrap_or(0.0)
            ));
        }
        if let Some(e) = &d.error {
            s.push_str(&format!("     ! {e}\n"));
        }
    }
    if !t.entities.is_empty() {
        s.push_str("\nidentifiers\n");
        for e in &t.entities {
            let validity = if e.valid { "" } else { " (invalid)" };
            s.push_str(&format!(
                "  {:<12} {}{validity}  [{}]\n",
                e.kind.as_str(),
                e.value,
                e.place
            ));
        }
    }
    if !t.dossier.is_empty() {
        s.push_str("\ndossier\n");
        for l in &t.dossier {
            let mark = if l.suggested { "?" } else { " " };
            s.push_str(&format!(
                "{mark} {}  {}  {}  {}\n",
                l.code,
                l.protocol,
                one_line(&l.subject, 50),
                l.reasons.join("; ")
            ));
        }
    }
    if let Some(a) = &t.annulled {
        s.push_str(&format!(
            "\nANNULLED {} by {}: {}{}\n",
            a.at,
            a.by,
            a.reason,
            if a.act.is_empty() {
                String::new()
            } else {
                format!(" (act: {})", a.act)
            }
        ));
    }
    if let Some(summary) = &t.summary {
        s.push_str("\nsummary\n");
        for l in summary.lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s.push_str("\nbody\n");
    for l in t.body.lines() {
        s.push_str(&format!("  {l}\n"));
    }
    s.push_str("\nhistory\n");
    for e in &t.events {
        s.push_str(&format!(
            "  {}  {:<10}  {:<20}  {}\n",
            e.at,
            e.actor,
            e.kind(),
            e.detail()
        ));
    }
    s
}

/// Replaces fiscal codes and phone numbers everywhere in a ticket with masked forms.
pub(super) fn mask_ticket(t: &mut Ticket) {
    use crate::entities::{mask, Kind};
    let personal: Vec<(String, String)> = t
        .entities
        .iter()
        .filter(|e| matches!(e.kind, Kind::FiscalCode | Kind::Phone))
        .flat_map(|e| {
            [
                (e.raw.clone(), mask(e.kind, &e.raw)),
                (e.value.clone(), mask(e.kind, &e.value)),
            ]
        })
        .filter(|(raw, _)| raw.len() >= 5)
        .collect();
    let scrub = |s: &mut String| {
        for (raw, masked) in &personal {
            if s.contains(raw.as_str()) {
                *s = s.replace(raw.as_str(), masked);
            }
        }
    };
    scrub(&mut t.subject);
    scrub(&mut t.body);
    for d in &mut t.documents {
        scrub(&mut d.text);
    }
    for e in &mut t.entities {
        if matches!(e.kind, Kind::FiscalCode | Kind::Phone) {
            e.value = mask(e.kind, &e.value);
            e.raw = mask(e.kind, &e.raw);
        }
    }
    for n in [&mut t.sender.fax, &mut t.sender.phone]
        .into_iter()
        .flatten()
    {
        *n = mask(Kind::Phone, n);
    }
    for l in &mut t.dossier {
        for r in &mut l.reasons {
            scrub(r);
        }
    }
}
