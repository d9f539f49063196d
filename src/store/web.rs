//! What the web app reads from the store besides tickets: accounts and sessions, queue
//! counts, the citizen's status lookup and the office's statistics.

use crate::model::Status;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What a web user may do. An admin can do everything; a clerk works tickets; an archivist
/// searches and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Archivist,
    Clerk,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Archivist => "archivist",
            Role::Clerk => "clerk",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Role, String> {
        match s {
            "archivist" => Ok(Role::Archivist),
            "clerk" => Ok(Role::Clerk),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected clerk, archivist, admin)"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// An API token as listed: never the token itself.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A logged-in user and the token every form of the session must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// What a citizen may see of a ticket: nothing of its content.
#[derive(Debug, Clone, Serialize)]
pub struct TrackInfo {
    pub code: String,
    pub status: Status,
    pub received_at: String,
    pub updated_at: String,
    pub office: Option<String>,
}

/// A ticket's text as classification reads it.
#[derive(Debug, Clone)]
pub struct RecentRequest {
    pub code: String,
    pub channel: String,
    pub sender_email: Option<String>,
    pub subject: String,
    pub body: String,
}

/// Counts for the clerk's queue page (open tickets only, except `by_status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueCounts {
    pub by_status: Vec<(String, u64)>,
    pub by_topic: Vec<(String, u64)>,
    pub by_office: Vec<(String, u64)>,
    pub needs_attention: u64,
}

/// The office's report: requests by channel, topic and week; closing figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub total: u64,
    pub by_channel: Vec<(String, u64)>,
    pub by_topic: Vec<(String, u64)>,
    /// ISO week ("2026-W48") → requests received.
    pub by_week: Vec<(String, u64)>,
    pub closed: u64,
    /// Closed without ever being routed to a back office.
    pub closed_without_routing: u64,
    /// Hours from receipt to (last) closing, over closed tickets.
    pub median_hours_to_close: Option<f64>,
    pub p90_hours_to_close: Option<f64>,
}

impl Stats {
    /// The figures from each closed ticket's (received at, last status change, was it routed),
    /// and the counts by channel, topic and week; every backend reads the same rows.
    pub(in crate::store) fn of(
        by_channel: Vec<(String, u64)>,
        by_topic: Vec<(String, u64)>,
        by_week: Vec<(String, u64)>,
        closed_tickets: impl IntoIterator<Item = (String, Option<String>, bool)>,
    ) -> Stats {
        let (mut closed, mut unrouted, mut hours) = (0u64, 0u64, Vec::new());
        for (received, closed_at, routed) in closed_tickets {
            closed += 1;
            if !routed {
                unrouted += 1;
            }
            let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            if let (Some(a), Some(b)) = (parse(&received), closed_at.as_deref().and_then(parse)) {
                hours.push(((b - a).num_seconds().max(0) as f64) / 3600.0);
            }
        }
        hours.sort_by(|a, b| a.total_cmp(b));
        let quantile = |q: f64| -> Option<f64> {
            (!hours.is_empty()).then(|| hours[((hours.len() - 1) as f64 * q).round() as usize])
        };
        Stats {
            total: by_channel.iter().map(|(_, n)| n).sum(),
            by_channel,
            by_topic,
            by_week,
            closed,
            closed_without_routing: unrouted,
            median_hours_to_close: quantile(0.5),
            p90_hours_to_close: quantile(0.9),
        }
    }
}

/// An address's wrong passwords are forgotten once the longest wait has passed; an account's
/// are kept until its next right password or an admin's unlock.
pub(in crate::store) fn forgotten(subject: &str, age_secs: i64) -> bool {
    subject.starts_with("address:") && age_secs > crate::domain::login::MAX_WAIT_SECS
}
