//! What happened to a ticket, as one typed value: its kind and its details together, so the
//! store writes only what a kind carries (serialised as `{"kind": …, "detail": {…}}`, the
//! shape `tickets show --json` and the export print).

use super::EventKind;
use crate::email::Pec;
use serde::{Deserialize, Serialize};

/// What happened to a ticket. Each kind's fields are declared in alphabetical order (and a
/// PEC's, `Pec`): [`Happened::detail_text`] writes them as declared, and the text must read
/// as a `serde_json::Value`'s sorted keys do (the store's earlier rows, `detail`). A test
/// holds every kind to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Happened {
    AckFailed {
        attempt: i64,
        error: String,
        next_attempt_at: String,
        to: String,
    },
    AckNotSent {
        reason: String,
    },
    AckQueued {
        message_id: String,
        to: String,
    },
    AckSent {
        message_id: String,
        to: String,
    },
    /// The registration is annulled (it stays, marked, with its number).
    Annulled {
        act: String,
        reason: String,
    },
    AckUncertain {
        reason: String,
        to: String,
    },
    Classified {
        #[serde(serialize_with = "as_written")]
        confidence: Option<f32>,
        reason: Option<String>,
        topic: String,
    },
    /// Registered. A request classified as it is filed carries its classification here,
    /// in the same event: a `classified` event of its own was a second row for every ticket,
    /// 2-3% of the ingest rate. Later classifications are `classified` events of their own,
    /// and stores written before keep theirs.
    Created {
        channel: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "as_written"
        )]
        confidence: Option<f32>,
        name: String,
        protocol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    DuplicateMerged {
        code: String,
    },
    /// The same bytes (`sha256`) or the same message (`message_id`) again.
    DuplicateReceived {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        source: String,
    },
    Linked {
        with: String,
    },
    MarkedDuplicate {
        of: String,
    },
    MessageReceived {
        channel: String,
        documents: Vec<String>,
        from: Option<String>,
        message_id: Option<String>,
        subject: String,
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
        message_id: String,
        notice: String,
        to: String,
    },
    PecCertified(Pec),
    PecReceipt(Pec),
    Reclassified {
        from: Option<String>,
        office: Option<String>,
        to: String,
    },
    ReplyFailed {
        attempt: i64,
        error: String,
        next_attempt_at: String,
        to: String,
    },
    ReplyQueued {
        message_id: String,
        subject: String,
        text: String,
        to: String,
    },
    ReplySent {
        message_id: String,
        to: String,
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
        office: Option<String>,
        to: String,
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

    /// [`detail`](Self::detail) as the text the store writes, serialized straight from the
    /// value: through a `serde_json::Value` it cost about 11,000 instructions an event, on
    /// the one thread that files tickets (two events a ticket).
    pub fn detail_text(&self) -> String {
        let mut whole = serde_json::to_vec(self).unwrap_or_default();
        // `{"kind":"<kind>","detail":<detail>}`: kinds are plain snake_case names. The
        // detail is cut out in place, not copied out of a second string.
        let kind = self.kind().as_str().as_bytes();
        let (open, close) = (&b"{\"kind\":\""[..], &b"\",\"detail\":"[..]);
        let framed = whole.starts_with(open)
            && whole[open.len()..].starts_with(kind)
            && whole[open.len() + kind.len()..].starts_with(close)
            && whole.ends_with(b"}");
        if framed {
            whole.pop();
            whole.drain(..open.len() + kind.len() + close.len());
            if let Ok(detail) = String::from_utf8(whole) {
                return detail;
            }
        }
        self.detail().to_string()
    }
}

/// An `f32` as the decimal it prints as (0.99953103), not as its exact `f64` widening
/// (0.9995310306549072): an event written as JSON text and one turned into a JSON value
/// then read the same.
fn as_written<S: serde::Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        // The shortest digits that read back as `x` (ryu's, as `Display` gives them, without
        // a string allocated), read as an `f64`.
        Some(x) => s.serialize_some(
            &ryu::Buffer::new()
                .format(*x)
                .parse::<f64>()
                .unwrap_or(f64::from(*x)),
        ),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text the store writes is the sorted-keys text of the value, for every kind, with
    /// its optional fields empty and filled.
    #[test]
    fn every_kind_writes_its_detail_as_its_value_reads() {
        let mut cases = 0;
        for h in one_of_each() {
            let mut filled = h.clone();
            let text = || Some("\"è\"\n\\ <b>".to_string());
            match &mut filled {
                Happened::Classified { reason, .. } => *reason = text(),
                Happened::Created {
                    topic,
                    confidence,
                    reason,
                    ..
                } => (*topic, *confidence, *reason) = (text(), Some(0.25), text()),
                Happened::DuplicateReceived { message_id, .. } => *message_id = text(),
                Happened::MessageReceived {
                    from, message_id, ..
                } => (*from, *message_id) = (text(), text()),
                Happened::Reclassified { from, office, .. }
                | Happened::TopicConfirmed { from, office, .. } => {
                    (*from, *office) = (text(), text())
                }
                Happened::Routed { from, .. } => *from = text(),
                Happened::StatusChanged { why, .. } => *why = text(),
                Happened::PecCertified(pec) | Happened::PecReceipt(pec) => {
                    *pec = Pec {
                        kind: "avvenuta-consegna".into(),
                        sender: text(),
                        date: text(),
                        identifier: text(),
                        msgid: text(),
                        provider: text(),
                        error: text(),
                    }
                }
                _ => {}
            }
            for e in [h, filled] {
                assert_eq!(e.detail_text(), e.detail().to_string(), "{:?}", e.kind());
                cases += 1;
            }
        }
        assert_eq!(cases, 2 * EventKind::ALL.len());
    }

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
        // Every kind of confidence (whole, tiny, the last bits of a probability) is written
        // as the decimal `Display` gives it, read as an `f64`.
        let mut cases = 0;
        let mut bits = 0x3f7f_ff00_u32;
        for x in [0.0f32, 1.0, 0.5, 1e-7, 3.4e38, f32::MIN_POSITIVE]
            .into_iter()
            .chain((0..2000).map(|i| i as f32 / 1999.0))
            .chain(
                std::iter::from_fn(|| {
                    bits = bits.wrapping_mul(0x9E37_79B9).wrapping_add(12345) >> 2;
                    Some(f32::from_bits(bits))
                })
                .take(2000),
            )
        {
            let e = Happened::Classified {
                topic: "gas".into(),
                confidence: Some(x),
                reason: None,
            };
            let want = serde_json::json!({"confidence": x.to_string().parse::<f64>().unwrap(), "reason": null, "topic": "gas"});
            assert_eq!(e.detail_text(), want.to_string(), "{x}");
            assert_eq!(e.detail(), want, "{x}");
            cases += 1;
        }
        assert!(cases > 4000);
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
                topic: None,
                confidence: None,
                reason: None,
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
