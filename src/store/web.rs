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
