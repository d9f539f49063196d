//! The ticket and its parts, as stored, shown and exported.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a request reached the office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Pec,
    Fax,
    Scanner,
    Letter,
    Webform,
    Phone,
    /// Text messages, through the office's GSM modem (gammu-smsd).
    Sms,
    Desk,
}

impl Channel {
    pub const ALL: [Channel; 9] = [
        Channel::Email,
        Channel::Pec,
        Channel::Fax,
        Channel::Scanner,
        Channel::Letter,
        Channel::Webform,
        Channel::Phone,
        Channel::Sms,
        Channel::Desk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Pec => "pec",
            Channel::Fax => "fax",
            Channel::Scanner => "scanner",
            Channel::Letter => "letter",
            Channel::Webform => "webform",
            Channel::Phone => "phone",
            Channel::Sms => "sms",
            Channel::Desk => "desk",
        }
    }
}

/// Workflow state of a ticket: new → in_progress → waiting → closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    InProgress,
    Waiting,
    Closed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::New,
        Status::InProgress,
        Status::Waiting,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::InProgress => "in_progress",
            Status::Waiting => "waiting",
            Status::Closed => "closed",
        }
    }
}

/// An original as received, or a derived digitised version (e.g. searchable PDF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Original,
    Digitised,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Original => "original",
            DocumentKind::Digitised => "digitised",
        }
    }
}

/// Error for a word that is not one of an enum's names.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{got}` (expected one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub got: String,
    pub expected: String,
}

macro_rules! from_str_via_all {
    ($ty:ty, $what:literal) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim().to_ascii_lowercase();
                <$ty>::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == wanted)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: <$ty>::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
from_str_via_all!(Channel, "channel");
from_str_via_all!(Status, "status");

impl FromStr for DocumentKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "original" => Ok(DocumentKind::Original),
            "digitised" => Ok(DocumentKind::Digitised),
            _ => Err(UnknownName {
                what: "document kind",
                got: s.to_string(),
                expected: "original, digitised".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub name: Option<String>,
    pub email: Option<String>,
    pub fax: Option<String>,
    pub phone: Option<String>,
}

impl Sender {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.fax.is_none() && self.phone.is_none()
    }
}

/// Per-page result of text extraction (or OCR, once it ran).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageText {
    pub page: u32,
    pub text: String,
    /// True when the page has no usable text layer and OCR has not filled it in yet.
    pub needs_ocr: bool,
    /// Mean word confidence (0–100) when the text came from OCR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocr_confidence: Option<f32>,
    /// Rotation applied before OCR, in degrees clockwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<u16>,
}

/// A document attached to a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub name: String,
    pub mime: String,
    pub sha256: String,
    pub size: u64,
    pub pages: Option<u32>,
    pub text: String,
    /// True when (some of) the text came from OCR.
    pub ocr: bool,
    #[serde(serialize_with = "shortest_f32")]
    pub ocr_confidence: Option<f32>,
    pub kind: DocumentKind,
    /// Why the text could not be (fully) extracted; the original is kept regardless.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pages still without text (no text layer, OCR not yet run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages_needing_ocr: Vec<u32>,
    /// For a signed file (`.p7m`): the signers' certificate subjects, as the container says
    /// (the signature is not verified against the providers' trust list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// How long a recording plays (voicemail), from its header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
}

/// An annulled registration's record (DPR 445/2000 art. 54).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annulment {
    pub at: String,
    pub by: String,
    pub reason: String,
    /// The act that authorised it (a decree, a note's protocol number).
    pub act: String,
}

/// One entry of a ticket's append-only history: when, who, and what happened (printed as
/// `{at, actor, kind, detail}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub actor: String,
    #[serde(flatten)]
    pub what: Recorded,
}

/// What an event records: a kind this version knows, typed; or, for a record whose detail
/// this version would not read back exactly (another version wrote it), the stored kind and
/// detail as they are, so the history is never shown altered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recorded {
    Known(crate::domain::Happened),
    Other {
        kind: String,
        detail: serde_json::Value,
    },
}

impl Recorded {
    /// The stored kind and detail read back: typed when they round-trip exactly.
    pub fn read(kind: &str, detail: serde_json::Value) -> Recorded {
        let tagged = serde_json::json!({"kind": kind, "detail": detail});
        match serde_json::from_value::<crate::domain::Happened>(tagged) {
            Ok(h) if h.detail() == detail => Recorded::Known(h),
            _ => Recorded::Other {
                kind: kind.to_string(),
                detail,
            },
        }
    }
}

impl Event {
    /// created, classified, reclassified, status_changed, note, duplicate_received, …
    pub fn kind(&self) -> &str {
        match &self.what {
            Recorded::Known(h) => h.kind().as_str(),
            Recorded::Other { kind, .. } => kind,
        }
    }

    pub fn detail(&self) -> serde_json::Value {
        match &self.what {
            Recorded::Known(h) => h.detail(),
            Recorded::Other { detail, .. } => detail.clone(),
        }
    }
}

/// A request in the register, as `tickets show --json` and `export --jsonl` print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub code: String,
    pub protocol: String,
    pub channel: Channel,
    pub received_at: String,
    pub registered_at: String,
    pub sender: Sender,
    pub subject: String,
    pub body: String,
    pub topic: Option<String>,
    #[serde(serialize_with = "shortest_f32")]
    pub topic_confidence: Option<f32>,
    pub topic_reason: Option<String>,
    /// Other topics the request touches.
    #[serde(default)]
    pub secondary_topics: Vec<String>,
    /// True once a clerk set or confirmed the topic.
    #[serde(default)]
    pub topic_reviewed: bool,
    /// The classifier's two likeliest topics with their probabilities, best first.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "shortest_guesses"
    )]
    pub topic_guesses: Vec<(String, f32)>,
    pub status: Status,
    pub office: Option<String>,
    pub needs_attention: bool,
    pub attention_reason: Option<String>,
    pub parent: Option<String>,
    /// A clerk's summary of what a recording says (voicemail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Set when the registration was annulled: it stays, with its number, marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annulled: Option<Annulment>,
    pub documents: Vec<Document>,
    pub events: Vec<Event>,
    /// Identifiers found in the ticket.
    #[serde(default)]
    pub entities: Vec<crate::entities::Entity>,
    /// Other tickets of the same person or case, and why.
    #[serde(default)]
    pub dossier: Vec<DossierLink>,
}

/// A ticket linked to another: the same person (fiscal code, sender address or number), the
/// same case (case number), or linked by a clerk. `suggested` links (same name and address)
/// wait for a clerk to confirm them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DossierLink {
    pub code: String,
    pub protocol: String,
    pub received_at: String,
    pub channel: String,
    pub subject: String,
    pub reasons: Vec<String>,
    #[serde(default)]
    pub suggested: bool,
}

/// An `f32` written as the `f64` of its shortest decimal form, so a ticket reads the same
/// whether it is serialized directly (`tickets show`) or through a `serde_json::Value`
/// (`ingest --json`), which widens an `f32` bit for bit: 0.99949217 → 0.9994921684265136.
fn shortest_guesses<S: serde::Serializer>(g: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(g.len()))?;
    for (topic, p) in g {
        seq.serialize_element(&(topic, p.to_string().parse::<f64>().unwrap_or(f64::from(*p))))?;
    }
    seq.end()
}

fn shortest_f32<S: serde::Serializer>(x: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&x.to_string().parse::<f64>().unwrap_or(f64::from(*x))),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Happened;
    use serde_json::json;

    /// History reads back typed, prints as stored (`{at, actor, kind, detail}`), and a
    /// record this version would not read back exactly is kept as it is.
    #[test]
    fn events_read_back_typed_and_print_as_stored() {
        let known = Recorded::read("note", json!({"text": "chiamato"}));
        assert_eq!(
            known,
            Recorded::Known(Happened::Note {
                text: "chiamato".into()
            })
        );
        let event = Event {
            at: "2026-12-01T10:00:00Z".into(),
            actor: "anna".into(),
            what: known,
        };
        assert_eq!(
            (event.kind(), event.detail()),
            ("note", json!({"text": "chiamato"}))
        );
        let printed = serde_json::to_value(&event).unwrap();
        assert_eq!(
            printed,
            json!({"at": "2026-12-01T10:00:00Z", "actor": "anna", "kind": "note",
                   "detail": {"text": "chiamato"}})
        );
        assert_eq!(serde_json::from_value::<Event>(printed).unwrap(), event);
        // A key this version does not know, a kind it does not know: kept whole.
        for (kind, detail) in [
            ("note", json!({"text": "x", "from_a_later_version": 1})),
            ("annulled", json!({"reason": "errore"})),
        ] {
            let other = Recorded::read(kind, detail.clone());
            assert_eq!(
                other,
                Recorded::Other {
                    kind: kind.into(),
                    detail
                }
            );
        }
    }
}
