//! Typed things of the register, with no I/O: what the store keeps and the use cases
//! reason about, so a second store backend stores the same things.

pub mod dossier;
mod event;
pub mod filing;
pub mod login;

pub use event::Happened;

use serde::{Deserialize, Serialize};

/// Why a voicemail's ticket is flagged: a person must listen (no speech is transcribed).
/// Writing its summary settles it.
pub const VOICEMAIL_ATTENTION: &str = "voicemail: listen to the message and write its summary";

/// What happened to a ticket, as its history (the append-only `events`) records it. The
/// store writes these names; the web app shows each by its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AckFailed,
    AckNotSent,
    AckQueued,
    AckSent,
    AckUncertain,
    Annulled,
    Classified,
    Created,
    DuplicateMerged,
    DuplicateReceived,
    Linked,
    MarkedDuplicate,
    MessageReceived,
    NeedsAttention,
    Note,
    NoticeQueued,
    PecCertified,
    PecReceipt,
    Reclassified,
    ReplyFailed,
    ReplyQueued,
    ReplySent,
    Routed,
    StatusChanged,
    Summarized,
    TopicConfirmed,
    Unlinked,
}

impl EventKind {
    pub const ALL: [EventKind; 27] = [
        EventKind::AckFailed,
        EventKind::AckNotSent,
        EventKind::AckQueued,
        EventKind::AckSent,
        EventKind::AckUncertain,
        EventKind::Annulled,
        EventKind::Classified,
        EventKind::Created,
        EventKind::DuplicateMerged,
        EventKind::DuplicateReceived,
        EventKind::Linked,
        EventKind::MarkedDuplicate,
        EventKind::MessageReceived,
        EventKind::NeedsAttention,
        EventKind::Note,
        EventKind::NoticeQueued,
        EventKind::PecCertified,
        EventKind::PecReceipt,
        EventKind::Reclassified,
        EventKind::ReplyFailed,
        EventKind::ReplyQueued,
        EventKind::ReplySent,
        EventKind::Routed,
        EventKind::StatusChanged,
        EventKind::Summarized,
        EventKind::TopicConfirmed,
        EventKind::Unlinked,
    ];

    /// The name stored in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AckFailed => "ack_failed",
            EventKind::AckNotSent => "ack_not_sent",
            EventKind::AckQueued => "ack_queued",
            EventKind::AckSent => "ack_sent",
            EventKind::AckUncertain => "ack_uncertain",
            EventKind::Annulled => "annulled",
            EventKind::Classified => "classified",
            EventKind::Created => "created",
            EventKind::DuplicateMerged => "duplicate_merged",
            EventKind::DuplicateReceived => "duplicate_received",
            EventKind::Linked => "linked",
            EventKind::MarkedDuplicate => "marked_duplicate",
            EventKind::MessageReceived => "message_received",
            EventKind::NeedsAttention => "needs_attention",
            EventKind::Note => "note",
            EventKind::NoticeQueued => "notice_queued",
            EventKind::PecCertified => "pec_certified",
            EventKind::PecReceipt => "pec_receipt",
            EventKind::Reclassified => "reclassified",
            EventKind::ReplyFailed => "reply_failed",
            EventKind::ReplyQueued => "reply_queued",
            EventKind::ReplySent => "reply_sent",
            EventKind::Routed => "routed",
            EventKind::StatusChanged => "status_changed",
            EventKind::Summarized => "summarized",
            EventKind::TopicConfirmed => "topic_confirmed",
            EventKind::Unlinked => "unlinked",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_stored_under_its_serde_name() {
        for k in EventKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
