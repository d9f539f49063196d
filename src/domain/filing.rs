//! The filing decision: what an arriving item becomes in the register. A new ticket, the
//! same bytes or the same message again, a PEC receipt about a message a ticket holds, or a
//! citizen's message joining their ticket's thread.
//!
//! The rules live here once, with no I/O. A store backend answers the few questions the
//! decision asks ([`Lookups`]) inside its filing transaction, then carries out the [`Plan`].

use crate::model::Status;
use crate::store::{Intake, NewTicket};

/// A ticket as the store knows it (its row id).
pub type TicketId = i64;

/// Which way a message went: one a citizen sent us, or one we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    /// How the register writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What filing an item will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// This very arrival was filed before (a restart after a crash between commit and
    /// clean-up): nothing to write.
    AlreadyFiled { ticket: TicketId, code: String },
    /// The same bytes came again from elsewhere: an event on the ticket that has them.
    SameBytes { ticket: TicketId, code: String },
    /// The same message came again (another copy, other transport headers).
    SameMessage {
        ticket: TicketId,
        message_id: String,
    },
    /// A PEC receipt about a message a ticket holds: an event, documents appended.
    PecReceipt { ticket: TicketId },
    /// A message answering one of a ticket's messages, or naming its code from the address
    /// that opened it: it joins that ticket.
    JoinsThread { ticket: TicketId },
    /// A new ticket with a new protocol number.
    New,
}

/// The questions the decision asks of the register.
pub trait Lookups {
    type Error;
    /// The ticket whose first document has these bytes.
    fn ticket_with_bytes(
        &mut self,
        sha256: &str,
    ) -> Result<Option<(TicketId, String)>, Self::Error>;
    /// Whether this very arrival (source, name, size, mtime) was recorded on the ticket.
    fn arrival_seen(&mut self, ticket: TicketId, intake: &Intake) -> Result<bool, Self::Error>;
    /// The ticket a Message-ID belongs to, and which way that message went.
    fn message(&mut self, message_id: &str) -> Result<Option<(TicketId, Direction)>, Self::Error>;
    /// The ticket with this code, when `sender_email` opened it (case ignored).
    fn ticket_of_sender(
        &mut self,
        code: &str,
        sender_email: &str,
    ) -> Result<Option<TicketId>, Self::Error>;
}

/// Decides what `new` becomes. Order matters: the same bytes win over everything; then a PEC
/// receipt about a known message; then the same message; then a thread. A receipt about a
/// message no ticket holds is filed anew (flagged by extraction): nothing is dropped.
pub fn decide<L: Lookups>(new: &NewTicket, register: &mut L) -> Result<Plan, L::Error> {
    if let Some((ticket, code)) = register.ticket_with_bytes(&new.intake.sha256)? {
        return Ok(if register.arrival_seen(ticket, &new.intake)? {
            Plan::AlreadyFiled { ticket, code }
        } else {
            Plan::SameBytes { ticket, code }
        });
    }
    let Some(mail) = &new.mail else {
        return Ok(Plan::New);
    };
    if let Some(pec) = mail.pec.as_ref().filter(|p| p.is_receipt()) {
        if let Some(id) = pec.msgid.as_deref() {
            if let Some((ticket, _)) = register.message(id)? {
                return Ok(Plan::PecReceipt { ticket });
            }
        }
        return Ok(Plan::New);
    }
    if let Some(id) = &mail.message_id {
        if let Some((ticket, Direction::In)) = register.message(id)? {
            return Ok(Plan::SameMessage {
                ticket,
                message_id: id.clone(),
            });
        }
    }
    for id in &mail.in_reply_to {
        if let Some((ticket, _)) = register.message(id)? {
            return Ok(Plan::JoinsThread { ticket });
        }
    }
    if let Some(sender) = new.sender.email.as_deref() {
        for code in codes_in(&new.subject) {
            if let Some(ticket) = register.ticket_of_sender(&code, sender)? {
                return Ok(Plan::JoinsThread { ticket });
            }
        }
    }
    Ok(Plan::New)
}

/// A ticket code in a subject (`Re: [URP-7K3M-9QXD] …`), check character verified.
pub fn codes_in(subject: &str) -> Vec<String> {
    subject
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() >= 11 && w.matches('-').count() == 2)
        .filter_map(|w| crate::code::parse(w).ok())
        .collect()
}

/// The status a ticket moves to when its citizen writes again: a ticket waiting for them, or
/// closed, is open again; one being worked on stays as it is.
pub fn reopened_by_message(status: Status) -> Option<Status> {
    matches!(status, Status::Waiting | Status::Closed).then_some(Status::InProgress)
}

/// Why no acknowledgement goes to an address that already had `recent` in the last hour, or
/// None when one may go.
pub fn ack_capped(recent: u64, max_per_hour: u32, to: &str) -> Option<String> {
    (recent >= u64::from(max_per_hour))
        .then(|| format!("{recent} acknowledgements to {to} in the last hour already"))
}

/// A registration number as shown: the year and the number, the number with at least seven
/// digits as AgID's segnatura schema wants (`2026/0000123`). Stores keep the number as an
/// integer, so a register filed when six digits were shown only changes how it is shown;
/// the history keeps what it recorded then.
pub fn protocol(year: i64, number: i64) -> String {
    format!("{year}/{number:07}")
}

/// The register's year for a registration at `registered_at` (RFC 3339): the office's local
/// year, the machine's zone, as the daily register cuts its days. A register is annual by
/// the local calendar: at 00:30 on 1 January in Rome (23:30 UTC) numbering has restarted.
pub fn protocol_year(registered_at: &str) -> Option<i64> {
    protocol_year_in(registered_at, &chrono::Local)
}

fn protocol_year_in<Tz: chrono::TimeZone>(registered_at: &str, zone: &Tz) -> Option<i64> {
    use chrono::Datelike;
    let at = chrono::DateTime::parse_from_rfc3339(registered_at).ok()?;
    Some(i64::from(at.with_timezone(zone).year()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailFacts;
    use std::collections::HashMap;

    #[test]
    fn the_register_year_turns_at_local_midnight() {
        let rome_winter = chrono::FixedOffset::east_opt(3600).unwrap();
        // 23:30 UTC on New Year's Eve is 00:30 on 1 January in Rome.
        assert_eq!(
            protocol_year_in("2026-12-31T23:30:00Z", &rome_winter),
            Some(2027)
        );
        assert_eq!(
            protocol_year_in("2026-12-31T22:59:59Z", &rome_winter),
            Some(2026)
        );
        assert_eq!(
            protocol_year_in("2027-01-01T00:30:00Z", &chrono::Utc),
            Some(2027)
        );
        assert_eq!(protocol_year_in("yesterday", &chrono::Utc), None);
    }

    /// A register in memory: the decision's questions answered from maps.
    #[derive(Default)]
    struct Known {
        bytes: HashMap<String, (TicketId, String)>,
        arrivals: Vec<(TicketId, String)>,
        messages: HashMap<String, (TicketId, Direction)>,
        codes: HashMap<String, (TicketId, String)>,
    }

    impl Lookups for Known {
        type Error = std::convert::Infallible;
        fn ticket_with_bytes(
            &mut self,
            sha: &str,
        ) -> Result<Option<(TicketId, String)>, Self::Error> {
            Ok(self.bytes.get(sha).cloned())
        }
        fn arrival_seen(&mut self, t: TicketId, i: &Intake) -> Result<bool, Self::Error> {
            Ok(self.arrivals.contains(&(t, i.name.clone())))
        }
        fn message(&mut self, id: &str) -> Result<Option<(TicketId, Direction)>, Self::Error> {
            Ok(self.messages.get(id).copied())
        }
        fn ticket_of_sender(
            &mut self,
            code: &str,
            from: &str,
        ) -> Result<Option<TicketId>, Self::Error> {
            Ok(self
                .codes
                .get(code)
                .filter(|(_, s)| s.eq_ignore_ascii_case(from))
                .map(|(t, _)| *t))
        }
    }

    fn item(sha: &str, subject: &str, mail: Option<MailFacts>) -> NewTicket {
        let intake = Intake {
            source: "imap".into(),
            name: "INBOX/7".into(),
            sha256: sha.into(),
            size: 10,
            mtime_ns: None,
        };
        let sender = crate::model::Sender {
            email: Some("maria@example.it".into()),
            ..Default::default()
        };
        let received = "2026-11-30T10:00:00Z".to_string();
        let mut t = NewTicket::arriving(crate::model::Channel::Email, received, sender, intake);
        t.subject = subject.into();
        t.mail = mail;
        t
    }

    fn mail(message_id: &str, in_reply_to: &[&str]) -> MailFacts {
        MailFacts {
            message_id: Some(message_id.into()),
            in_reply_to: in_reply_to.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn protocol_numbers_show_at_least_seven_digits() {
        assert_eq!(protocol(2026, 123), "2026/0000123");
        assert_eq!(protocol(2026, 12_345_678), "2026/12345678");
    }

    #[test]
    fn each_kind_of_arrival_gets_its_plan() {
        let code = crate::code::generate("URP", &mut rand::thread_rng());
        let mut known = Known::default();
        known.bytes.insert("aa".into(), (1, "URP-A".into()));
        known.arrivals.push((1, "INBOX/7".into()));
        known.messages.insert("<m1@x>".into(), (2, Direction::In));
        known
            .messages
            .insert("<ack2@us>".into(), (2, Direction::Out));
        known
            .codes
            .insert(code.clone(), (3, "Maria@Example.it".into()));
        let mut decide = |t: &NewTicket| decide(t, &mut known).unwrap();

        assert_eq!(
            decide(&item("aa", "x", None)),
            Plan::AlreadyFiled {
                ticket: 1,
                code: "URP-A".into()
            }
        );
        let mut elsewhere = item("aa", "x", None);
        elsewhere.intake.name = "INBOX/8".into();
        assert_eq!(
            decide(&elsewhere),
            Plan::SameBytes {
                ticket: 1,
                code: "URP-A".into()
            }
        );
        // The same bytes win over anything the message says.
        assert!(matches!(
            decide(&item("aa", "x", Some(mail("<m1@x>", &[])))),
            Plan::AlreadyFiled { .. }
        ));
        assert_eq!(
            decide(&item("bb", "x", Some(mail("<m1@x>", &[])))),
            Plan::SameMessage {
                ticket: 2,
                message_id: "<m1@x>".into()
            }
        );
        // Our own acknowledgement's id is not the citizen's message: answering it is a reply.
        assert_eq!(
            decide(&item(
                "bb",
                "Re: x",
                Some(mail("<new@x>", &["<nope@x>", "<ack2@us>"]))
            )),
            Plan::JoinsThread { ticket: 2 }
        );
        assert_eq!(
            decide(&item(
                "bb",
                &format!("Re: [{code}] sollecito"),
                Some(mail("<n2@x>", &[]))
            )),
            Plan::JoinsThread { ticket: 3 }
        );
        // A code from another address opens a ticket of its own.
        let mut stranger = item("bb", &format!("Re: [{code}]"), Some(mail("<n3@x>", &[])));
        stranger.sender.email = Some("eve@example.org".into());
        assert_eq!(decide(&stranger), Plan::New);
        assert_eq!(decide(&item("cc", "Allaccio gas", None)), Plan::New);
    }

    #[test]
    fn a_pec_receipt_joins_the_message_it_is_about_or_is_filed_anew() {
        let mut known = Known::default();
        known
            .messages
            .insert("<sent@us>".into(), (5, Direction::Out));
        let receipt = |about: &str| {
            let mut m = mail("<r@pec>", &[]);
            m.pec = Some(crate::email::Pec {
                kind: "avvenuta-consegna".into(),
                msgid: Some(about.into()),
                ..Default::default()
            });
            item("dd", "CONSEGNA: x", Some(m))
        };
        assert_eq!(
            decide(&receipt("<sent@us>"), &mut known).unwrap(),
            Plan::PecReceipt { ticket: 5 }
        );
        assert_eq!(
            decide(&receipt("<other@us>"), &mut known).unwrap(),
            Plan::New
        );
    }

    #[test]
    fn a_citizen_writing_again_reopens_only_what_waited_or_was_closed() {
        assert_eq!(
            reopened_by_message(Status::Waiting),
            Some(Status::InProgress)
        );
        assert_eq!(
            reopened_by_message(Status::Closed),
            Some(Status::InProgress)
        );
        assert_eq!(reopened_by_message(Status::New), None);
        assert_eq!(reopened_by_message(Status::InProgress), None);
        assert!(ack_capped(4, 5, "a@b.it").is_none());
        assert!(ack_capped(5, 5, "a@b.it")
            .unwrap()
            .contains("5 acknowledgements to a@b.it"));
    }
}
