//! The SQL of what the web app needs from the store: accounts and sessions, queue counts, the citizen's
//! status lookup and the office's statistics.

use super::{filter_sql, now_rfc3339, Result, Store, StoreError, TicketFilter, TicketSummary};
use crate::model::Document;
use crate::store::prelude::*;
use crate::store::web::forgotten;
use crate::store::web::*;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

impl rusqlite::types::FromSql for Role {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Role> {
        v.as_str()?
            .parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

/// A user from columns id, name, role.
fn user_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
    })
}

impl Accounts for Store {
    fn add_user(&mut self, name: &str, role: Role, password_hash: &str) -> Result<()> {
        let taken: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::Conflict(format!("user {name} exists already")));
        }
        self.conn.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), password_hash, now_rfc3339()],
        )?;
        Ok(())
    }

    fn user_credentials(&self, name: &str) -> Result<Option<(User, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, name, role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((user_of(r)?, r.get(3)?)),
            )
            .optional()?)
    }

    fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, role FROM users ORDER BY name")?;
        let rows = stmt.query_map([], user_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn create_session(
        &mut self,
        user_id: i64,
        token_sha256: &str,
        csrf: &str,
        hours: i64,
    ) -> Result<()> {
        let now = chrono::Utc::now();
        let expires = (now + chrono::Duration::hours(hours))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let now = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [&now])?;
        tx.execute(
            "INSERT INTO sessions (token_sha256, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_sha256, user_id, csrf, now, expires],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT u.id, u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
            )?
            .query_row(params![token_sha256, now_rfc3339()], |r| {
                Ok(Session {
                    user: user_of(r)?,
                    csrf: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn end_session(&mut self, token_sha256: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            [token_sha256],
        )?;
        Ok(())
    }

    fn login_failures(&self, subject: &str) -> Result<(u32, i64)> {
        let now = chrono::Utc::now().timestamp();
        let row: Option<(u32, i64)> = self
            .conn
            .query_row(
                "SELECT failures, last_failure_at FROM login_failures WHERE subject = ?1",
                [subject],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((n, at)) if !forgotten(subject, now - at) => (n, now - at),
            _ => (0, 0),
        })
    }

    fn record_login_failure(&mut self, subject: &str) -> Result<u32> {
        let now = chrono::Utc::now().timestamp();
        let (counted, _) = self.login_failures(subject)?;
        let n = counted + 1;
        self.conn.execute(
            "INSERT INTO login_failures (subject, failures, last_failure_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (subject) DO UPDATE SET failures = ?2, last_failure_at = ?3",
            params![subject, n, now],
        )?;
        Ok(n)
    }

    fn clear_login_failures(&mut self, subject: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM login_failures WHERE subject = ?1", [subject])?;
        Ok(())
    }

    fn count_request(
        &mut self,
        subject: &str,
        now: i64,
        window_secs: i64,
        limit: u32,
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM request_windows WHERE window_start <= ?1",
            [now - window_secs],
        )?;
        // One statement: two web servers counting the same address cannot both read the old
        // count.
        let hits: u32 = tx.query_row(
            "INSERT INTO request_windows (subject, window_start, hits) VALUES (?1, ?2, 1)
             ON CONFLICT (subject) DO UPDATE SET hits = hits + 1
             RETURNING hits",
            params![subject, now],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(hits <= limit)
    }

    fn add_api_token(&mut self, name: &str, role: Role, token_sha256: &str) -> Result<()> {
        let taken: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM api_tokens WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::Conflict(format!(
                "an API token named {name} exists already"
            )));
        }
        self.conn.execute(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), token_sha256, now_rfc3339()],
        )?;
        Ok(())
    }

    fn api_token(&self, token_sha256: &str) -> Result<Option<(String, Role)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, role FROM api_tokens WHERE token_sha256 = ?1 AND revoked_at IS NULL",
                [token_sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(ApiToken {
                name: r.get(0)?,
                role: r.get(1)?,
                created_at: r.get(2)?,
                revoked_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_api_token(&mut self, name: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
            params![now_rfc3339(), name],
        )?;
        Ok(n == 1)
    }

    fn login_failure_list(&self) -> Result<Vec<(String, u32, String)>> {
        let now = chrono::Utc::now().timestamp();
        let mut stmt = self.conn.prepare(
            "SELECT subject, failures, last_failure_at FROM login_failures
             ORDER BY failures DESC, subject",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (subject, n, at) = row?;
            if forgotten(&subject, now - at) {
                continue;
            }
            let at = chrono::DateTime::from_timestamp(at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            out.push((subject, n, at));
        }
        Ok(out)
    }
}

impl Overview for Store {
    fn track(&self, code_input: &str) -> Result<TrackInfo> {
        let (id, code) = self.ticket_id(code_input)?;
        let (status, received_at, office, updated_at): (String, String, Option<String>, String) =
            self.conn.query_row(
                "SELECT t.status, t.received_at, t.office,
                        COALESCE((SELECT MAX(at) FROM events e WHERE e.ticket_id = t.id), t.registered_at)
                 FROM tickets t WHERE t.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        Ok(TrackInfo {
            code,
            status: status
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            received_at,
            updated_at,
            office,
        })
    }

    fn document(&self, code_input: &str, ord: usize) -> Result<(Document, std::path::PathBuf)> {
        let (id, code) = self.ticket_id(code_input)?;
        let doc = self
            .documents_of(id)?
            .into_iter()
            .nth(ord)
            .ok_or_else(|| StoreError::NotFound(format!("{code} document {ord}")))?;
        let path = self.blobs.path_of(&doc.sha256);
        Ok((doc, path))
    }

    fn queue(
        &self,
        filter: &TicketFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TicketSummary>> {
        self.summaries(
            filter,
            "t.needs_attention DESC, (t.topic = 'unsorted' OR t.topic IS NULL) DESC, t.received_at DESC, t.id DESC",
            limit as i64,
            offset,
        )
    }

    fn count_matching(&self, filter: &TicketFilter) -> Result<u64> {
        let (where_sql, args) = filter_sql(filter);
        let sql = format!("SELECT COUNT(*) FROM tickets t {where_sql}");
        Ok(self
            .conn
            .query_row(&sql, rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    fn queue_counts(&self) -> Result<QueueCounts> {
        let group = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, i64>(1)? as u64,
                ))
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        };
        Ok(QueueCounts {
            by_status: group("SELECT status, COUNT(*) FROM tickets GROUP BY status")?,
            by_topic: group(
                "SELECT COALESCE(topic, 'unsorted') AS name, COUNT(*) AS n FROM tickets WHERE status != 'closed'
                 GROUP BY name ORDER BY (name = 'unsorted') DESC, n DESC",
            )?,
            by_office: group(
                "SELECT office, COUNT(*) FROM tickets WHERE status != 'closed' AND office IS NOT NULL
                 GROUP BY office ORDER BY 2 DESC",
            )?,
            needs_attention: self.conn.query_row(
                "SELECT COUNT(*) FROM tickets WHERE needs_attention = 1 AND status != 'closed'",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64,
        })
    }

    fn offices(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT office FROM tickets WHERE office IS NOT NULL ORDER BY office",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn stats(&self, since: Option<&str>, until: Option<&str>) -> Result<Stats> {
        let filter = TicketFilter {
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            ..TicketFilter::default()
        };
        let (where_sql, args) = filter_sql(&filter);
        let group = |expr: &str| -> Result<Vec<(String, u64)>> {
            let sql =
                format!("SELECT {expr}, COUNT(*) FROM tickets t {where_sql} GROUP BY 1 ORDER BY 1");
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, i64>(1)? as u64,
                ))
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        };
        let by_channel = group("t.channel")?;
        let by_topic = group("COALESCE(t.topic, 'unsorted')")?;
        // ISO weeks: SQLite has no %V, so weeks are counted from their Monday.
        let by_monday = group("date(substr(t.received_at, 1, 10), '-' || ((strftime('%w', substr(t.received_at, 1, 10)) + 6) % 7) || ' days')")?;
        let by_week = by_monday
            .into_iter()
            .map(|(monday, n)| {
                let week = chrono::NaiveDate::parse_from_str(&monday, "%Y-%m-%d")
                    .map(|d| {
                        let w = chrono::Datelike::iso_week(&d);
                        format!("{}-W{:02}", w.year(), w.week())
                    })
                    .unwrap_or(monday);
                (week, n)
            })
            .collect();
        let closed_sql = format!(
            "SELECT t.received_at,
                    (SELECT MAX(e.at) FROM events e WHERE e.ticket_id = t.id AND e.kind = 'status_changed'),
                    EXISTS(SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.kind = 'routed')
             FROM tickets t {} t.status = 'closed'",
            if where_sql.is_empty() {
                "WHERE".to_string()
            } else {
                format!("{where_sql} AND")
            }
        );
        let mut stmt = self.conn.prepare(&closed_sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let closed = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Stats::of(by_channel, by_topic, by_week, closed))
    }

    fn recent_requests(&self, limit: usize) -> Result<Vec<RecentRequest>> {
        let mut stmt = self.conn.prepare(
            "SELECT code, channel, sender_email, subject, body FROM tickets ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(RecentRequest {
                code: r.get(0)?,
                channel: r.get(1)?,
                sender_email: r.get(2)?,
                subject: r.get(3)?,
                body: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
