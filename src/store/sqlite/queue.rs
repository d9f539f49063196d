//! The work queue on SQLite: jobs claimed under a lease, each completed in the transaction
//! that files its ticket.

use super::*;

/// The worker still holds job `id` as a running job (its lease not taken over by another);
/// else a `Conflict`, and the caller changes nothing.
fn ensure_held(tx: &rusqlite::Connection, id: i64, worker: &str) -> Result<()> {
    let held = tx
        .query_row(
            "SELECT 1 FROM jobs WHERE id = ?1 AND state = 'running' AND worker = ?2",
            params![id, worker],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if held {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "job {id} is no longer {worker}'s (its lease ran out and another worker took it)"
        )))
    }
}

/// Runs `f` with commits that do not wait for the disk, for the queue's bookkeeping: a claim,
/// a renewal or a failure lost in a power cut only means a job is claimed again sooner (and
/// the next commit that waits carries them to disk anyway). Filing and queueing wait.
fn unsynced<T>(store: &mut Store, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
    let was: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    // 2 is FULL (intake's setting); OFF (a bulk load) and NORMAL are left alone.
    if was < 2 {
        return f(store);
    }
    store.conn.pragma_update(None, "synchronous", "NORMAL")?;
    let out = f(store);
    store.conn.pragma_update(None, "synchronous", was)?;
    out
}

impl WorkQueue for Store {
    fn enqueue(&mut self, description: &str, sha256: &str, now: i64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO jobs (description, sha256, not_before, enqueued_at) VALUES (?1, ?2, ?3, ?3)",
            params![description, sha256, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn claim(
        &mut self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        max_attempts: u32,
    ) -> Result<Option<QueuedJob>> {
        unsynced(self, |store| {
            // IMMEDIATE: the write lock is taken before the read, so two workers never pick the
            // same job.
            let tx = store
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = loop {
                let due: Option<(i64, String, String, u32)> = tx
                    .query_row(
                        "SELECT id, description, sha256, attempts FROM jobs
                         WHERE (state = 'queued' AND not_before <= ?1)
                            OR (state = 'running' AND lease_until < ?1)
                         ORDER BY id LIMIT 1",
                        [now],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                let Some((id, description, sha256, attempts)) = due else {
                    break None;
                };
                if attempts >= max_attempts {
                    // Claimed that often and never finished nor failed: it takes its worker down.
                    tx.execute(
                        "UPDATE jobs SET state = 'parked', worker = NULL, lease_until = NULL,
                            last_error = COALESCE(last_error || '; ', '') || ?2
                         WHERE id = ?1",
                        params![
                            id,
                            format!("its worker stopped without finishing it {attempts} times")
                        ],
                    )?;
                    continue;
                }
                tx.execute(
                    "UPDATE jobs SET state = 'running', worker = ?2, lease_until = ?3,
                        attempts = attempts + 1
                     WHERE id = ?1",
                    params![id, worker, now + lease_secs],
                )?;
                break Some(QueuedJob {
                    id,
                    description,
                    sha256,
                    attempts: attempts + 1,
                });
            };
            tx.commit()?;
            Ok(claimed)
        })
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now: i64, lease_secs: i64) -> Result<bool> {
        unsynced(self, |store| {
            let n = store.conn.execute(
                "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND state = 'running' AND worker = ?2",
                params![id, worker, now + lease_secs],
            )?;
            Ok(n == 1)
        })
    }

    fn complete(
        &mut self,
        id: i64,
        worker: &str,
        new: &NewTicket,
        code_prefix: &str,
    ) -> Result<Filed> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_held(&tx, id, worker)?;
        let mut owed = Vec::new();
        let filed = file_in(&tx, new, code_prefix, &mut owed)?;
        write_index(&tx, owed)?;
        tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(filed)
    }

    fn fail(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        now: i64,
        max_attempts: u32,
    ) -> Result<JobFate> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_held(&tx, id, worker)?;
        let attempts: u32 = tx.query_row("SELECT attempts FROM jobs WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
        let fate = if attempts >= max_attempts {
            tx.execute(
                "UPDATE jobs SET state = 'parked', worker = NULL, lease_until = NULL,
                    last_error = ?2 WHERE id = ?1",
                params![id, error],
            )?;
            JobFate::Parked
        } else {
            let not_before = now + job_backoff_secs(attempts);
            tx.execute(
                "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL,
                    not_before = ?2, last_error = ?3 WHERE id = ?1",
                params![id, not_before, error],
            )?;
            JobFate::Retry { not_before }
        };
        tx.commit()?;
        Ok(fate)
    }

    fn job_counts(&self) -> Result<JobCounts> {
        let mut counts = JobCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            let n = n as u64;
            match state.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                _ => counts.parked = n,
            }
        }
        Ok(counts)
    }

    fn parked_jobs(&self) -> Result<Vec<(i64, String, u32, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, description, attempts, COALESCE(last_error, '') FROM jobs
             WHERE state = 'parked' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn running_jobs(&self) -> Result<Vec<(i64, String, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, worker, lease_until FROM jobs WHERE state = 'running' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
