//! The work queue in PostgreSQL: workers on any machine claim jobs under a lease
//! (`FOR UPDATE SKIP LOCKED`: two claims never wait on, or take, the same row); a job is
//! completed in the transaction that files its ticket.

use super::filing::{file_in, lock_filing};
use super::*;

/// The worker still holds job `id` as a running job (its lease not taken over by another),
/// locking the row until the transaction ends; else a `Conflict`, and the caller changes
/// nothing.
fn ensure_held(tx: &mut dyn Sql, id: i64, worker: &str) -> Result<()> {
    let held = tx
        .query_opt(
            "SELECT 1 FROM jobs WHERE id = $1 AND state = 'running' AND worker = $2 FOR UPDATE",
            &[&id, &worker],
        )?
        .is_some();
    if held {
        Ok(())
    } else {
        Err(not_held(id, worker))
    }
}

fn not_held(id: i64, worker: &str) -> StoreError {
    StoreError::Conflict(format!(
        "job {id} is no longer {worker}'s (its lease ran out and another worker took it)"
    ))
}

/// The queue's bookkeeping (a claim, a renewal, a failure) commits without waiting for the
/// disk: lost in a crash of the server, it only means a job is claimed again sooner. Filing,
/// and completing a job with it, wait.
fn unsynced(tx: &mut dyn Sql) -> Result<()> {
    tx.batch_execute("SET LOCAL synchronous_commit = off")
}

impl WorkQueue for PgStore {
    fn enqueue(&mut self, description: &str, sha256: &str, now: i64) -> Result<i64> {
        let r = self.read()?.query_one(
            "INSERT INTO jobs (description, sha256, not_before, enqueued_at) VALUES ($1, $2, $3, $3)
             RETURNING id",
            &[&description, &sha256, &now],
        )?;
        col(&r, 0)
    }

    fn claim(
        &mut self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        max_attempts: u32,
    ) -> Result<Option<QueuedJob>> {
        // One statement (see the `sportello_claim` migration): the select `FOR UPDATE SKIP
        // LOCKED`, the parking of a job that took its workers down `max_attempts` times, and
        // the lease, committed without waiting for the disk.
        let r = self.read()?.query_opt(
            "SELECT job_id, job_description, job_sha256, job_attempts
             FROM sportello_claim($1, $2, $3, $4)",
            &[&worker, &now, &lease_secs, &i64::from(max_attempts)],
        )?;
        r.map(|r| {
            Ok(QueuedJob {
                id: col(&r, 0)?,
                description: col(&r, 1)?,
                sha256: col(&r, 2)?,
                attempts: col::<i64>(&r, 3)? as u32,
            })
        })
        .transpose()
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now: i64, lease_secs: i64) -> Result<bool> {
        self.write(|tx| {
            unsynced(tx)?;
            let n = tx.execute(
                "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND state = 'running' AND worker = $2",
                &[&id, &worker, &(now + lease_secs)],
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
        self.write(|tx| {
            // The filing lock first, as every filing transaction takes its locks in that order.
            lock_filing(tx)?;
            // Held still, and removed with this filing (one statement, not a check and a
            // delete): its row stays locked against another worker until the commit, and
            // comes back if the filing fails.
            let held = tx.execute(
                "DELETE FROM jobs WHERE id = $1 AND state = 'running' AND worker = $2",
                &[&id, &worker],
            )?;
            if held != 1 {
                return Err(not_held(id, worker));
            }
            let filed = file_in(tx, new, code_prefix)?;
            Ok(filed)
        })
    }

    fn fail(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        now: i64,
        max_attempts: u32,
    ) -> Result<JobFate> {
        self.write(|tx| {
            unsynced(tx)?;
            ensure_held(tx, id, worker)?;
            let attempts: i64 = col(
                &tx.query_one("SELECT attempts FROM jobs WHERE id = $1", &[&id])?,
                0,
            )?;
            if attempts >= i64::from(max_attempts) {
                tx.execute(
                    "UPDATE jobs SET state = 'parked', worker = NULL, lease_until = NULL,
                        last_error = $2 WHERE id = $1",
                    &[&id, &error],
                )?;
                Ok(JobFate::Parked)
            } else {
                let not_before = now + job_backoff_secs(attempts as u32);
                tx.execute(
                    "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL,
                        not_before = $2, last_error = $3 WHERE id = $1",
                    &[&id, &not_before, &error],
                )?;
                Ok(JobFate::Retry { not_before })
            }
        })
    }

    fn job_counts(&self) -> Result<JobCounts> {
        let mut counts = JobCounts::default();
        for r in self
            .read()?
            .query("SELECT state, COUNT(*) FROM jobs GROUP BY state", &[])?
        {
            let (state, n): (String, i64) = (col(&r, 0)?, col(&r, 1)?);
            match state.as_str() {
                "queued" => counts.queued = n as u64,
                "running" => counts.running = n as u64,
                _ => counts.parked = n as u64,
            }
        }
        Ok(counts)
    }

    fn parked_jobs(&self) -> Result<Vec<(i64, String, u32, String)>> {
        let rows = self.read()?.query(
            "SELECT id, description, attempts, COALESCE(last_error, '') FROM jobs
             WHERE state = 'parked' ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col::<i64>(r, 2)? as u32, col(r, 3)?)))
            .collect()
    }

    fn running_jobs(&self) -> Result<Vec<(i64, String, i64)>> {
        let rows = self.read()?.query(
            "SELECT id, worker, lease_until FROM jobs WHERE state = 'running' ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?)))
            .collect()
    }
}
