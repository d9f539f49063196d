//! Why two tickets belong to the same dossier, and how the evidence combines: strong
//! identifiers link, weak ones only suggest, and what a clerk linked or unlinked by hand wins.
//! A store backend finds the evidence; the rules of combining it live here once.

use crate::entities::{mask, Kind};
use std::collections::BTreeMap;
use std::fmt;

/// A ticket as the store knows it (its row id).
pub type TicketId = i64;

/// One reason two tickets are linked, as a clerk reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The same valid fiscal code (shown masked).
    SameFiscalCode(String),
    /// The same sender's email address.
    SameSenderAddress(String),
    /// The same sender's phone or fax number (shown masked).
    SameSenderNumber(String),
    /// The same case reference.
    SameCase(String),
    /// This ticket mentions the other's tracking code.
    RefersTo(String),
    /// The other ticket mentions this one's tracking code.
    ReferredToBy(String),
    /// The same sender name and postal address: weak, to be confirmed.
    SameNameAndAddress(String),
    LinkedByClerk,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SameFiscalCode(v) => {
                write!(f, "same fiscal code {}", mask(Kind::FiscalCode, v))
            }
            Reason::SameSenderAddress(v) => write!(f, "same sender address {v}"),
            Reason::SameSenderNumber(v) => write!(f, "same sender number {}", mask(Kind::Phone, v)),
            Reason::SameCase(v) => write!(f, "same case: {v}"),
            Reason::RefersTo(code) => write!(f, "refers to {code}"),
            Reason::ReferredToBy(code) => write!(f, "referred to by {code}"),
            Reason::SameNameAndAddress(a) => write!(f, "same name and address ({a}): to confirm"),
            Reason::LinkedByClerk => write!(f, "linked by a clerk"),
        }
    }
}

impl Reason {
    /// The reason a shared identifier gives, or None for a kind that links nothing.
    pub fn shared(kind: Kind, value: &str) -> Option<Reason> {
        let value = value.to_string();
        Some(match kind {
            Kind::FiscalCode => Reason::SameFiscalCode(value),
            Kind::Email => Reason::SameSenderAddress(value),
            Kind::Phone => Reason::SameSenderNumber(value),
            Kind::CaseRef => Reason::SameCase(value),
            _ => return None,
        })
    }

    /// Whether the reason is about the person (else about the case).
    fn is_person(&self) -> bool {
        matches!(
            self,
            Reason::SameFiscalCode(_)
                | Reason::SameSenderAddress(_)
                | Reason::SameSenderNumber(_)
                | Reason::LinkedByClerk
        )
    }
}

/// What is known of one other ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub reasons: Vec<Reason>,
    /// Only weak evidence: shown as a suggestion, not followed.
    pub suggested: bool,
    /// A link to the same person (else only to the same case).
    pub person: bool,
}

/// The evidence around one ticket, gathered in any order; manual links are applied last.
#[derive(Debug, Default)]
pub struct Links {
    found: BTreeMap<TicketId, Evidence>,
    manual: Vec<(TicketId, bool)>,
    with_cases: bool,
}

impl Links {
    /// `with_cases`: case references and tracking codes count too (the ticket's own page);
    /// without, only the person (following a dossier beyond its first ticket).
    pub fn new(with_cases: bool) -> Links {
        Links {
            with_cases,
            ..Links::default()
        }
    }

    /// Strong evidence: a shared identifier or a tracking code mentioned.
    pub fn strong(&mut self, other: TicketId, reason: Reason) {
        let person = reason.is_person();
        if !person && !self.with_cases {
            return;
        }
        let entry = self.found.entry(other).or_default();
        entry.person |= person;
        if !entry.reasons.contains(&reason) {
            entry.reasons.push(reason);
        }
    }

    /// Weak evidence: a suggestion unless something strong links the two.
    pub fn weak(&mut self, other: TicketId, reason: Reason) {
        let entry = self.found.entry(other).or_insert_with(|| Evidence {
            suggested: true,
            ..Evidence::default()
        });
        entry.reasons.push(reason);
    }

    /// A clerk linked (or unlinked) the two by hand: that wins over any evidence.
    pub fn by_hand(&mut self, other: TicketId, linked: bool) {
        self.manual.push((other, linked));
    }

    pub fn into_evidence(mut self) -> BTreeMap<TicketId, Evidence> {
        for (other, linked) in std::mem::take(&mut self.manual) {
            if linked {
                let entry = self.found.entry(other).or_default();
                entry.reasons.push(Reason::LinkedByClerk);
                entry.suggested = false;
                entry.person = true;
            } else {
                self.found.remove(&other);
            }
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_evidence_links_weak_suggests_and_a_clerk_decides() {
        let mut links = Links::new(true);
        links.strong(1, Reason::SameSenderAddress("a@b.it".into()));
        links.strong(1, Reason::SameSenderAddress("a@b.it".into()));
        links.strong(2, Reason::SameCase("pratica 7".into()));
        links.weak(3, Reason::SameNameAndAddress("via Roma 1".into()));
        links.weak(1, Reason::SameNameAndAddress("via Roma 1".into()));
        links.weak(4, Reason::SameNameAndAddress("via Roma 2".into()));
        links.by_hand(4, true);
        links.by_hand(2, false);
        let found = links.into_evidence();
        assert_eq!(found[&1].reasons.len(), 2, "the same reason once");
        assert!(found[&1].person && !found[&1].suggested);
        assert!(found[&3].suggested && !found[&3].person);
        assert!(!found[&4].suggested && found[&4].person);
        assert_eq!(found[&4].reasons.last(), Some(&Reason::LinkedByClerk));
        assert!(!found.contains_key(&2), "unlinked by hand");

        // Following a dossier: cases do not count.
        let mut person_only = Links::new(false);
        person_only.strong(5, Reason::SameCase("pratica 7".into()));
        assert!(person_only.into_evidence().is_empty());
        assert_eq!(
            Reason::shared(Kind::Email, "a@b.it").unwrap().to_string(),
            "same sender address a@b.it"
        );
        assert_eq!(Reason::shared(Kind::Address, "x"), None);
    }
}
