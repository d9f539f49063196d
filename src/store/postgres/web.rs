//! What the web app needs from the store: accounts and sessions (in the database, so any
//! number of web servers behind a proxy share them), queue counts, the citizen's status lookup
//! and the office's statistics.

use super::tickets::{documents_of, filter_sql, params_of, summaries};
use super::*;
use crate::store::web::*;

fn user_of(r: &::postgres::Row) -> Result<User> {
    Ok(User {
        id: col(r, 0)?,
        name: col(r, 1)?,
        role: parse_or_corrupt(&col::<String>(r, 2)?)?,
    })
}

impl Accounts for PgStore {
    fn add_user(&mut self, name: &str, role: Role, password_hash: &str) -> Result<()> {
        let n = self.read()?.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &role.as_str(), &password_hash, &now_rfc3339()],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("user {name} exists already")));
        }
        Ok(())
    }

    fn user_credentials(&self, name: &str) -> Result<Option<(User, String)>> {
        let r = self.read()?.query_opt(
            "SELECT id, name, role, password_hash FROM users WHERE name = $1",
            &[&name],
        )?;
        r.map(|r| Ok((user_of(&r)?, col(&r, 3)?))).transpose()
    }

    fn users(&self) -> Result<Vec<User>> {
        let rows = self
            .read()?
            .query("SELECT id, name, role FROM users ORDER BY name", &[])?;
        rows.iter().map(user_of).collect()
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
        self.write(|tx| {
            tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])?;
            tx.execute(
                "INSERT INTO sessions (token_sha256, user_id, csrf, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&token_sha256, &user_id, &csrf, &now, &expires],
            )?;
            Ok(())
        })
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>> {
        let r = self.read()?.query_opt(
            "SELECT u.id, u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_sha256 = $1 AND s.expires_at > $2",
            &[&token_sha256, &now_rfc3339()],
        )?;
        r.map(|r| {
            Ok(Session {
                user: user_of(&r)?,
                csrf: col(&r, 3)?,
            })
        })
        .transpose()
    }

    fn end_session(&mut self, token_sha256: &str) -> Result<()> {
        self.read()?.execute(
            "DELETE FROM sessions WHERE token_sha256 = $1",
            &[&token_sha256],
        )?;
        Ok(())
    }

    fn login_failures(&self, subject: &str) -> Result<(u32, i64)> {
        let now = chrono::Utc::now().timestamp();
        let r = self.read()?.query_opt(
            "SELECT failures, last_failure_at FROM login_failures WHERE subject = $1",
            &[&subject],
        )?;
        let row: Option<(i64, i64)> = r
            .map(|r| -> Result<(i64, i64)> { Ok((col(&r, 0)?, col(&r, 1)?)) })
            .transpose()?;
        Ok(match row {
            Some((n, at)) if !forgotten(subject, now - at) => (n as u32, now - at),
            _ => (0, 0),
        })
    }

    fn record_login_failure(&mut self, subject: &str) -> Result<u32> {
        let now = chrono::Utc::now().timestamp();
        let (counted, _) = self.login_failures(subject)?;
        let n = i64::from(counted) + 1;
        self.read()?.execute(
            "INSERT INTO login_failures (subject, failures, last_failure_at) VALUES ($1, $2, $3)
             ON CONFLICT (subject) DO UPDATE SET failures = $2, last_failure_at = $3",
            &[&subject, &n, &now],
        )?;
        Ok(n as u32)
    }

    fn clear_login_failures(&mut self, subject: &str) -> Result<()> {
        self.read()?
            .execute("DELETE FROM login_failures WHERE subject = $1", &[&subject])?;
        Ok(())
    }

    fn login_failure_list(&self) -> Result<Vec<(String, u32, String)>> {
        let now = chrono::Utc::now().timestamp();
        let rows = self.read()?.query(
            "SELECT subject, failures, last_failure_at FROM login_failures
             ORDER BY failures DESC, subject",
            &[],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let (subject, n, at): (String, i64, i64) = (col(r, 0)?, col(r, 1)?, col(r, 2)?);
            if forgotten(&subject, now - at) {
                continue;
            }
            let at = chrono::DateTime::from_timestamp(at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            out.push((subject, n as u32, at));
        }
        Ok(out)
    }

    fn count_request(
        &mut self,
        subject: &str,
        now: i64,
        window_secs: i64,
        limit: u32,
    ) -> Result<bool> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM request_windows WHERE window_start <= $1",
                &[&(now - window_secs)],
            )?;
            // One statement: two web servers counting the same address cannot both read the
            // old count.
            let r = tx.query_one(
                "INSERT INTO request_windows (subject, window_start, hits) VALUES ($1, $2, 1)
                 ON CONFLICT (subject) DO UPDATE SET hits = request_windows.hits + 1
                 RETURNING hits",
                &[&subject, &now],
            )?;
            Ok(col::<i64>(&r, 0)? <= i64::from(limit))
        })
    }

    fn add_api_token(&mut self, name: &str, role: Role, token_sha256: &str) -> Result<()> {
        let n = self.read()?.execute(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &role.as_str(), &token_sha256, &now_rfc3339()],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "an API token named {name} exists already"
            )));
        }
        Ok(())
    }

    fn api_token(&self, token_sha256: &str) -> Result<Option<(String, Role)>> {
        let r = self.read()?.query_opt(
            "SELECT name, role FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
            &[&token_sha256],
        )?;
        r.map(|r| Ok((col(&r, 0)?, parse_or_corrupt(&col::<String>(&r, 1)?)?)))
            .transpose()
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = self.read()?.query(
            "SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY name",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    name: col(r, 0)?,
                    role: parse_or_corrupt(&col::<String>(r, 1)?)?,
                    created_at: col(r, 2)?,
                    revoked_at: col(r, 3)?,
                })
            })
            .collect()
    }

    fn revoke_api_token(&mut self, name: &str) -> Result<bool> {
        let n = self.read()?.execute(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
            &[&now_rfc3339(), &name],
        )?;
        Ok(n == 1)
    }
}

impl Overview for PgStore {
    fn track(&self, code_input: &str) -> Result<TrackInfo> {
        let mut c = self.read()?;
        let (id, code) = ticket_id(&mut *c, code_input)?;
        let r = c.query_one(
            "SELECT t.status, t.received_at, t.office,
                    COALESCE((SELECT MAX(at) FROM events e WHERE e.ticket_id = t.id), t.registered_at)
             FROM tickets t WHERE t.id = $1",
            &[&id],
        )?;
        Ok(TrackInfo {
            code,
            status: parse_or_corrupt(&col::<String>(&r, 0)?)?,
            received_at: col(&r, 1)?,
            updated_at: col(&r, 3)?,
            office: col(&r, 2)?,
        })
    }

    fn document(&self, code_input: &str, ord: usize) -> Result<(Document, std::path::PathBuf)> {
        let mut c = self.read()?;
        let (id, code) = ticket_id(&mut *c, code_input)?;
        let doc = documents_of(&mut *c, id)?
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
        summaries(
            &mut *self.read()?,
            filter,
            "t.needs_attention DESC, (t.topic = 'unsorted' OR t.topic IS NULL) DESC, t.received_at DESC, t.id DESC",
            Some(limit),
            offset,
        )
    }

    fn count_matching(&self, filter: &TicketFilter) -> Result<u64> {
        let (where_sql, args) = filter_sql(filter);
        let sql = format!("SELECT COUNT(*) FROM tickets t {where_sql}");
        let r = self.read()?.query_one(&sql, &params_of(&args))?;
        Ok(col::<i64>(&r, 0)? as u64)
    }

    fn queue_counts(&self) -> Result<QueueCounts> {
        let mut c = self.read()?;
        let mut group = |sql: &str| -> Result<Vec<(String, u64)>> {
            c.query(sql, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        col::<Option<String>>(r, 0)?.unwrap_or_default(),
                        col::<i64>(r, 1)? as u64,
                    ))
                })
                .collect()
        };
        let by_status =
            group("SELECT status, COUNT(*) FROM tickets GROUP BY status ORDER BY status")?;
        let by_topic = group(
            "SELECT COALESCE(topic, 'unsorted') AS name, COUNT(*) AS n FROM tickets WHERE status != 'closed'
             GROUP BY name ORDER BY (COALESCE(topic, 'unsorted') = 'unsorted') DESC, n DESC, name",
        )?;
        let by_office = group(
            "SELECT office, COUNT(*) FROM tickets WHERE status != 'closed' AND office IS NOT NULL
             GROUP BY office ORDER BY 2 DESC, 1",
        )?;
        let r = c.query_one(
            "SELECT COUNT(*) FROM tickets WHERE needs_attention AND status != 'closed'",
            &[],
        )?;
        Ok(QueueCounts {
            by_status,
            by_topic,
            by_office,
            needs_attention: col::<i64>(&r, 0)? as u64,
        })
    }

    fn offices(&self) -> Result<Vec<String>> {
        let rows = self.read()?.query(
            "SELECT DISTINCT office FROM tickets WHERE office IS NOT NULL ORDER BY office",
            &[],
        )?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    fn stats(&self, since: Option<&str>, until: Option<&str>) -> Result<Stats> {
        let filter = TicketFilter {
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            ..TicketFilter::default()
        };
        let (where_sql, args) = filter_sql(&filter);
        let params = params_of(&args);
        let mut c = self.read()?;
        let mut group = |expr: &str| -> Result<Vec<(String, u64)>> {
            let sql =
                format!("SELECT {expr}, COUNT(*) FROM tickets t {where_sql} GROUP BY 1 ORDER BY 1");
            c.query(&sql, &params)?
                .iter()
                .map(|r| {
                    Ok((
                        col::<Option<String>>(r, 0)?.unwrap_or_default(),
                        col::<i64>(r, 1)? as u64,
                    ))
                })
                .collect()
        };
        let by_channel = group("t.channel")?;
        let by_topic = group("COALESCE(t.topic, 'unsorted')")?;
        // ISO weeks, as the SQLite backend counts them (dates are the received text's).
        let by_week =
            group("to_char(to_date(substr(t.received_at, 1, 10), 'YYYY-MM-DD'), 'IYYY-\"W\"IW')")?;
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
        let closed = c
            .query(&closed_sql, &params)?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats::of(by_channel, by_topic, by_week, closed))
    }

    fn recent_requests(&self, limit: usize) -> Result<Vec<RecentRequest>> {
        let rows = self.read()?.query(
            "SELECT code, channel, sender_email, subject, body FROM tickets ORDER BY id DESC LIMIT $1",
            &[&(limit as i64)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(RecentRequest {
                    code: col(r, 0)?,
                    channel: col(r, 1)?,
                    sender_email: col(r, 2)?,
                    subject: col(r, 3)?,
                    body: col(r, 4)?,
                })
            })
            .collect()
    }
}
