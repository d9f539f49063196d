//! What happened to a ticket, as one typed value: its kind and its details together, so the
//! store writes only what a kind carries (serialised as `{"kind": …, "detail": {…}}`, the
//! shape `tickets show --json` and the export print).

use super::EventKind;
use crate::email::Pec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Happened {
    AckFailed {
        to: String,
        error: String,
        attempt: i64,
        next_attempt_at: String,
    },
    AckNotSent {
        reason: String,
    },
    AckQueued {
        to: String,
        message_id: String,
    },
    AckSent {
        to: String,
        message_id: String,
    },
    /// The registration is annulled (it stays, marked, with its number).
    Annulled {
        reason: String,
        act: String,
    },
    AckUncertain {
        to: String,
        reason: String,
    },
    Classified {
        topic: String,
        #[serde(serialize_with = "as_written")]
        confidence: Option<f32>,
        reason: Option<String>,
    },
    Created {
        protocol: String,
        channel: String,
        source: String,
        name: String,
    },
    DuplicateMerged {
        code: String,
    },
    /// The same bytes (`sha256`) or the same message (`message_id`) again.
    DuplicateReceived {
        source: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    Linked {
        with: String,
    },
    MarkedDuplicate {
        of: String,
    },
    MessageReceived {
        from: Option<String>,
        subject: String,
        message_id: Option<String>,
        channel: String,
        documents: Vec<String>,
        text: String,
    },
    NeedsAttention {
        reason: String,
    },
    Note {
        text: String,
    },
    /// An automatic message telling the citizen where their request is (`closed`), queued;
    /// its sending is recorded as an acknowledgement's is.
    NoticeQueued {
        to: String,
        notice: String,
        message_id: String,
    },
    PecCertified(Pec),
    PecReceipt(Pec),
    Reclassified {
        from: Option<String>,
        to: String,
        office: Option<String>,
    },
    ReplyFailed {
        to: String,
        error: String,
        attempt: i64,
        next_attempt_at: String,
    },
    ReplyQueued {
        to: String,
        subject: String,
        text: String,
        message_id: String,
    },
    ReplySent {
        to: String,
        message_id: String,
    },
    Routed {
        from: Option<String>,
        to: String,
    },
    StatusChanged {
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// A clerk's summary of what a recording says (voicemail); the latest is the ticket's.
    Summarized {
        text: String,
    },
    TopicConfirmed {
        from: Option<String>,
        to: String,
        office: Option<String>,
    },
    Unlinked {
        with: String,
    },
}

impl Happened {
    pub fn kind(&self) -> EventKind {
        match self {
            Happened::AckFailed { .. } => EventKind::AckFailed,
            Happened::AckNotSent { .. } => EventKind::AckNotSent,
            Happened::AckQueued { .. } => EventKind::AckQueued,
            Happened::AckSent { .. } => EventKind::AckSent,
            Happened::AckUncertain { .. } => EventKind::AckUncertain,
            Happened::Annulled { .. } => EventKind::Annulled,
            Happened::Classified { .. } => EventKind::Classified,
            Happened::Created { .. } => EventKind::Created,
            Happened::DuplicateMerged { .. } => EventKind::DuplicateMerged,
            Happened::DuplicateReceived { .. } => EventKind::DuplicateReceived,
            Happened::Linked { .. } => EventKind::Linked,
            Happened::MarkedDuplicate { .. } => EventKind::MarkedDuplicate,
            Happened::MessageReceived { .. } => EventKind::MessageReceived,
            Happened::NeedsAttention { .. } => EventKind::NeedsAttention,
            Happened::Note { .. } => EventKind::Note,
            Happened::NoticeQueued { .. } => EventKind::NoticeQueued,
            Happened::PecCertified(..) => EventKind::PecCertified,
            Happened::PecReceipt(..) => EventKind::PecReceipt,
            Happened::Reclassified { .. } => EventKind::Reclassified,
            Happened::ReplyFailed { .. } => EventKind::ReplyFailed,
            Happened::ReplyQueued { .. } => EventKind::ReplyQueued,
            Happened::ReplySent { .. } => EventKind::ReplySent,
            Happened::Routed { .. } => EventKind::Routed,
            Happened::StatusChanged { .. } => EventKind::StatusChanged,
            Happened::Summarized { .. } => EventKind::Summarized,
            Happened::TopicConfirmed { .. } => EventKind::TopicConfirmed,
            Happened::Unlinked { .. } => EventKind::Unlinked,
        }
    }

    /// The details as the store keeps them: a JSON object.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .map(|mut v| v["detail"].take())
            .unwrap_or_default()
    }
}

/// An `f32` as the decimal it prints as (0.99953103), not as its exact `f64` widening
/// (0.9995310306549072): an event written as JSON text and one turned into a JSON value
/// then read the same.
fn as_written<S: serde::Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_some(&x.to_string().parse::<f64>().unwrap_or(f64::from(*x))),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tickets show` turns stored events into JSON values; `ingest --json` prints them as
    /// text: a confidence must read the same both ways.
    #[test]
    fn a_confidence_reads_the_same_as_text_and_as_a_value() {
        let e = Happened::Classified {
            topic: "gas".into(),
            confidence: Some(0.999_531_03),
            reason: None,
        };
        let text = serde_json::to_string(&e).unwrap();
        let value = serde_json::to_value(&e).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
        assert!(text.contains("0.99953103"), "{text}");
        let back: Happened = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }

    fn one_of_each() -> Vec<Happened> {
        let s = || String::from("x");
        let (pec, n) = (Pec::default(), 1);
        vec![
            Happened::AckFailed {
                to: s(),
                error: s(),
                attempt: n,
                next_attempt_at: s(),
            },
            Happened::AckNotSent { reason: s() },
            Happened::AckQueued {
                to: s(),
                message_id: s(),
            },
            Happened::AckSent {
                to: s(),
                message_id: s(),
            },
            Happened::AckUncertain {
                to: s(),
                reason: s(),
            },
            Happened::Annulled {
                reason: s(),
                act: s(),
            },
            Happened::Classified {
                topic: s(),
                confidence: Some(0.5),
                reason: None,
            },
            Happened::Created {
                protocol: s(),
                channel: s(),
                source: s(),
                name: s(),
            },
            Happened::DuplicateMerged { code: s() },
            Happened::DuplicateReceived {
                source: s(),
                name: s(),
                sha256: Some(s()),
                message_id: None,
            },
            Happened::Linked { with: s() },
            Happened::MarkedDuplicate { of: s() },
            Happened::MessageReceived {
                from: None,
                subject: s(),
                message_id: None,
                channel: s(),
                documents: vec![],
                text: s(),
            },
            Happened::NeedsAttention { reason: s() },
            Happened::Note { text: s() },
            Happened::NoticeQueued {
                to: s(),
                notice: s(),
                message_id: s(),
            },
            Happened::PecCertified(pec.clone()),
            Happened::PecReceipt(pec),
            Happened::Reclassified {
                from: None,
                to: s(),
                office: None,
            },
            Happened::ReplyFailed {
                to: s(),
                error: s(),
                attempt: n,
                next_attempt_at: s(),
            },
            Happened::ReplyQueued {
                to: s(),
                subject: s(),
                text: s(),
                message_id: s(),
            },
            Happened::ReplySent {
                to: s(),
                message_id: s(),
            },
            Happened::Routed {
                from: None,
                to: s(),
            },
            Happened::StatusChanged {
                from: s(),
                to: s(),
                why: None,
            },
            Happened::Summarized { text: s() },
            Happened::TopicConfirmed {
                from: None,
                to: s(),
                office: None,
            },
            Happened::Unlinked { with: s() },
        ]
    }

    #[test]
    fn every_kind_of_event_has_its_typed_details_and_round_trips() {
        let all = one_of_each();
        let kinds: Vec<EventKind> = all.iter().map(Happened::kind).collect();
        assert_eq!(
            kinds,
            EventKind::ALL,
            "one Happened per EventKind, in order"
        );
        for h in &all {
            let back: Happened = serde_json::from_value(serde_json::to_value(h).unwrap()).unwrap();
            assert_eq!(&back, h);
        }
        // Details keep the keys the store always wrote: an absent optional key stays absent.
        let d = Happened::StatusChanged {
            from: "new".into(),
            to: "closed".into(),
            why: None,
        }
        .detail();
        assert_eq!(d, serde_json::json!({"from": "new", "to": "closed"}));
        let d = Happened::Routed {
            from: None,
            to: "URP".into(),
        }
        .detail();
        assert_eq!(d, serde_json::json!({"from": null, "to": "URP"}));
    }
}
