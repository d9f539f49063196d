//! Connections for many concurrent readers (the web app): store threads that take jobs in
//! arrival order, each with its own connection, and a small pool for quick reads. Reads go
//! through SQLite's memory map ([`Store::map_for_reads`]).

use super::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Connections for quick reads (a web request's session); one per concurrent reader at most,
/// kept for reuse.
pub struct ReadPool {
    dir: PathBuf,
    idle: Mutex<Vec<Store>>,
}

pub struct Pooled<'a> {
    pool: &'a ReadPool,
    store: Option<Store>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let (Some(store), Ok(mut idle)) = (self.store.take(), self.pool.idle.lock()) {
            if idle.len() < 32 {
                idle.push(store);
            }
        }
    }
}

/// A pooled connection: reads through the memory map (see [`Store::map_for_reads`]).
pub fn open_for_reads(dir: &Path) -> Result<Store, StoreError> {
    let store = Store::open(dir)?;
    store.map_for_reads()?;
    Ok(store)
}

impl ReadPool {
    /// A pool in `dir`, starting with `first` (opened already, which ran the migrations).
    pub fn new(dir: &Path, first: Store) -> ReadPool {
        ReadPool {
            dir: dir.to_path_buf(),
            idle: Mutex::new(vec![first]),
        }
    }

    pub fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let store = match reused {
            Some(s) => s,
            None => open_for_reads(&self.dir)?,
        };
        Ok(Pooled {
            pool: self,
            store: Some(store),
        })
    }
}

/// Work for a store thread; `Err` when the thread could not open its connection.
pub type StoreJob = Box<dyn FnOnce(Result<&mut Store, &str>) + Send>;

/// One thread per core, each with its own connection, taking store jobs in arrival order:
/// under load a request waits its turn instead of sharing the cores with every other one
/// (short pages are not slowed down by long searches, and the slowest responses stay close to
/// the typical), and a thread that finishes a job takes the next one at once (handing the
/// turn to another thread left the cores idle between jobs).
pub fn spawn_store_threads(dir: &Path, threads: usize) -> crossbeam_channel::Sender<StoreJob> {
    let (jobs, queue) = crossbeam_channel::unbounded::<StoreJob>();
    for n in 0..threads {
        let queue = queue.clone();
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name(format!("store-{n}"))
            .spawn(move || {
                let mut store: Option<Store> = None;
                for job in queue.iter() {
                    let s = match &mut store {
                        Some(s) => s,
                        None => match open_for_reads(&dir) {
                            Ok(s) => store.insert(s),
                            Err(e) => {
                                job(Err(&format!("{e:#}")));
                                continue;
                            }
                        },
                    };
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(s))));
                    if ran.is_err() {
                        // The request gets an error (its answer was dropped); a connection
                        // left mid-statement is not reused.
                        store = None;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start store thread {n}: {e}");
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::prelude::*;
    use crate::store::TicketFilter;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A job that panics gets no answer and the thread serves the next job (on a fresh
    /// connection); a store that cannot be opened is reported to each job, not waited for.
    #[test]
    fn a_store_thread_outlives_a_panicking_job_and_reports_a_store_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = spawn_store_threads(dir.path(), 1);
        let (panicked_tx, panicked) = mpsc::channel::<()>();
        jobs.send(Box::new(move |store| {
            let _answer = panicked_tx;
            store.expect("store opens");
            panic!("a page handler failed");
        }))
        .unwrap();
        let (listed_tx, listed) = mpsc::channel();
        jobs.send(Box::new(move |store| {
            let count = store.map(|s| s.list(&TicketFilter::default()).map(|l| l.len()).ok());
            listed_tx.send(count.map_err(str::to_string)).unwrap();
        }))
        .unwrap();
        let wait = Duration::from_secs(30);
        assert_eq!(
            panicked.recv_timeout(wait),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        assert_eq!(listed.recv_timeout(wait).unwrap(), Ok(Some(0)));

        let not_a_dir = dir.path().join("sportello.txt");
        std::fs::write(&not_a_dir, "x").unwrap();
        let jobs = spawn_store_threads(&not_a_dir, 1);
        let (tx, rx) = mpsc::channel();
        jobs.send(Box::new(move |store| {
            tx.send(store.map(|_| ()).map_err(str::to_string)).unwrap();
        }))
        .unwrap();
        let error = rx.recv_timeout(wait).unwrap().unwrap_err();
        assert!(error.contains("sportello.txt"), "{error}");
    }
}
