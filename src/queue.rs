//! The work queue's two ends: `ingest --enqueue` puts items in the store's queue (originals in
//! the blob store first), and `sportello worker` processes claim them one at a time, prepare
//! each through the pipeline's stages and file its ticket in the transaction that completes
//! the job. Workers may run side by side, on this machine or, with a shared store, others;
//! one that dies leaves its job to be claimed again when its lease runs out.

use crate::config::Pipeline;
use crate::pipeline::{Item, Processor};
use crate::runner::{ItemError, Outcome};
use crate::store::prelude::*;
use crate::store::{JobFate, QueuedJob, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a claim holds by default before another worker may take the job; the worker
/// renews it every third of that while it works, so only a dead (or frozen) worker loses it.
pub const LEASE_SECS: i64 = 15;
/// Claims of one job, failures and dead workers together, before it is parked.
pub const MAX_ATTEMPTS: u32 = 3;
/// A worker with nothing to do looks again after this long.
const IDLE_POLL: Duration = Duration::from_millis(500);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Queues one item: its original goes to the blob store, its description (everything but
/// the bytes) to the queue. Returns the job's id.
pub fn enqueue(store: &mut Store, item: &Item) -> Result<i64, ItemError> {
    let sha256 = store.blobs().put(&item.bytes)?;
    let description = serde_json::to_string(item)
        .map_err(|e| ItemError::Read(std::io::Error::other(e.to_string())))?;
    Ok(store.enqueue(&description, &sha256, unix_now())?)
}

/// The item a job describes, with its original read back from the blob store.
fn item_of(store: &Store, job: &QueuedJob) -> Result<Item, ItemError> {
    let mut item: Item = serde_json::from_str(&job.description).map_err(|e| {
        ItemError::File(StoreError::Corrupt(format!(
            "job {}'s description: {e}",
            job.id
        )))
    })?;
    item.bytes = Arc::new(store.blobs().get(&job.sha256)?);
    Ok(item)
}

/// A name for this worker in the queue: host and process, so an admin can tell whose a
/// running job is.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Runs `work` while a thread renews `worker`'s lease on job `id` (through its own connection
/// to the store in `dir`).
fn with_lease<T>(
    dir: &Path,
    id: i64,
    worker: &str,
    lease_secs: i64,
    work: impl FnOnce() -> T,
) -> T {
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let every = Duration::from_millis((lease_secs * 1000 / 3).max(200) as u64);
            let mut store = None;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(every)
            {
                if store.is_none() {
                    store = Store::open(dir)
                        .map_err(|e| tracing::warn!("lease renewal cannot open the store: {e}"))
                        .ok();
                }
                let Some(store) = store.as_mut() else {
                    continue;
                };
                match store.heartbeat(id, worker, unix_now(), lease_secs) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("job {id} was taken over by another worker");
                        return;
                    }
                    Err(e) => tracing::warn!("renewing the lease of job {id}: {e}"),
                }
            }
        });
        let out = work();
        drop(done_tx);
        out
    })
}

/// How one worker process works.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Its name in the queue (see [`worker_name`]).
    pub name: String,
    /// Seconds a claim holds without renewal.
    pub lease_secs: i64,
    /// Stop when no job is due (else wait for more).
    pub once: bool,
}

impl WorkerSettings {
    /// This process's worker, by [`worker_name`].
    pub fn new(lease_secs: i64, once: bool) -> WorkerSettings {
        WorkerSettings {
            name: worker_name(),
            lease_secs,
            once,
        }
    }
}

/// A worker on a thread of its own, with its own connection to the store in `dir` and its own
/// processor (`run` works the queue beside its sources this way); outcomes go to the log.
pub fn spawn_worker(
    pipeline: &Pipeline,
    dir: &Path,
    settings: WorkerSettings,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let mut store = Store::open(dir).map_err(|e| format!("the queue's worker: {e}"))?;
    let processor = Processor::new(pipeline, store.blobs().clone(), dir)
        .map_err(|e| format!("the queue's worker: {e}"))?;
    let pipeline = pipeline.clone();
    std::thread::Builder::new()
        .name("queue".into())
        .spawn(move || {
            work(
                &mut store,
                &processor,
                &pipeline,
                &settings,
                &stop,
                |_, o| match &o.result {
                    Ok((filed, _)) => tracing::info!("{}: {}", o.origin.display(), filed.code()),
                    Err(e) => tracing::warn!("{}: {e}", o.origin.display()),
                },
            );
        })
        .map_err(|e| format!("cannot start the queue's worker thread: {e}"))
}

/// `sportello worker`: claims due jobs one at a time until `stop` is set (with `once`, until
/// none is due), reporting each outcome. A job whose item cannot be prepared is queued again
/// after a backoff and parked after [`MAX_ATTEMPTS`]; a ticket flagged for attention is a
/// success, as in `ingest`.
pub fn work(
    store: &mut Store,
    processor: &Processor,
    pipeline: &Pipeline,
    settings: &WorkerSettings,
    stop: &AtomicBool,
    mut report: impl FnMut(&Store, Outcome),
) {
    let WorkerSettings {
        name: worker,
        lease_secs,
        once,
    } = settings;
    let (worker, lease_secs, once) = (worker.as_str(), *lease_secs, *once);
    let dir = store.data_dir().to_path_buf();
    while !stop.load(Ordering::SeqCst) {
        let job = match store.claim(worker, unix_now(), lease_secs, MAX_ATTEMPTS) {
            Ok(job) => job,
            Err(e) => {
                // A store busy beyond its timeout, a full disk: try again, do not exit.
                tracing::warn!("claiming a job: {e}");
                std::thread::sleep(IDLE_POLL);
                continue;
            }
        };
        let Some(job) = job else {
            if once {
                return;
            }
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        let mut origin = PathBuf::from(format!("job {}", job.id));
        let result = with_lease(&dir, job.id, worker, lease_secs, || {
            let item = item_of(store, &job)?;
            origin = PathBuf::from(&item.origin);
            Ok::<_, ItemError>(processor.prepare(item)?)
        });
        let pages = result.as_ref().map_or(0, crate::runner::pages_of_ticket);
        let result = match result {
            Ok(ticket) => {
                let attention = (!ticket.attention.is_empty()).then(|| ticket.attention.join("; "));
                store
                    .complete(job.id, worker, &ticket, &pipeline.code_prefix)
                    .map(|filed| (filed, attention))
                    .map_err(ItemError::from)
            }
            Err(e) => {
                match store.fail(job.id, worker, &e.to_string(), unix_now(), MAX_ATTEMPTS) {
                    Ok(JobFate::Retry { not_before }) => tracing::warn!(
                        "job {} ({}): {e}; queued again, not before {not_before}",
                        job.id,
                        origin.display()
                    ),
                    Ok(JobFate::Parked) => tracing::error!(
                        "job {} ({}): {e}; parked after {} attempts",
                        job.id,
                        origin.display(),
                        job.attempts
                    ),
                    Err(f) => tracing::warn!("job {}: recording its failure: {f}", job.id),
                }
                Err(e)
            }
        };
        report(
            store,
            Outcome {
                origin,
                result,
                pages,
            },
        );
    }
}
