//! Content-addressed originals: `<data>/originals/ab/<sha256>` (one level of 256 folders, as
//! git does: two levels made a new folder — a new inode and its fsync — for almost every
//! blob of a young store; stores written that way are still read).
//!
//! Written to a temp file in the same folder, fsynced, then renamed, so a crash leaves either
//! the whole file or nothing. Existing blobs are never rewritten: originals are never modified.

use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BlobStore {
    pub fn new(data_dir: &Path) -> BlobStore {
        BlobStore {
            root: data_dir.join("originals"),
        }
    }

    /// Where the blob lives: its own path, or the two-level path of stores written before.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let path = self.new_path(sha256);
        if !path.exists() {
            let legacy = self.legacy_path(sha256);
            if legacy.exists() {
                return legacy;
            }
        }
        path
    }

    fn new_path(&self, sha256: &str) -> PathBuf {
        let split = 2.min(sha256.len());
        self.root.join(&sha256[..split]).join(sha256)
    }

    fn legacy_path(&self, sha256: &str) -> PathBuf {
        let (a, b) = (
            &sha256[..2.min(sha256.len())],
            &sha256[2.min(sha256.len())..4.min(sha256.len())],
        );
        self.root.join(a).join(b).join(sha256)
    }

    /// Stores `bytes` under their SHA-256 and returns it. Idempotent.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = sha256_hex(bytes);
        self.put_with_sha(&sha, bytes)?;
        Ok(sha)
    }

    pub fn put_with_sha(&self, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.new_path(sha);
        if let Ok(meta) = fs::metadata(self.path_of(sha)) {
            if meta.len() == bytes.len() as u64 {
                return Ok(());
            }
            // A wrong-sized blob can only be a leftover of a foreign write; replace it whole.
        }
        let dir = path.parent().expect("blob path has a parent");
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            // The new folder's own entry must be durable too.
            fs::File::open(&self.root)?.sync_all()?;
        }
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        // The rename is durable only once the directory entry is.
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Starts [`put_with_sha`](Self::put_with_sha) on a helper thread kept for the calling
    /// thread, so the caller works while the disk syncs; [`Keeping::wait`] says how it went.
    /// A caller keeps one blob at a time: the next call waits for the one before.
    pub fn put_in_background(&self, sha: String, bytes: Arc<Vec<u8>>) -> Keeping {
        let job = KeepJob {
            blobs: self.clone(),
            sha,
            bytes,
        };
        let sent = KEEPER.with(|keeper| {
            let mut keeper = keeper.borrow_mut();
            let keeper = keeper.get_or_insert_with(Keeper::start);
            // A keeping not waited for (its caller gave up on the item) is collected first.
            while keeper.pending > 0 {
                if keeper.done.recv().is_err() {
                    break;
                }
                keeper.pending -= 1;
            }
            match &keeper.jobs {
                Some(jobs) => match jobs.send(job) {
                    Ok(()) => {
                        keeper.pending += 1;
                        None
                    }
                    Err(std::sync::mpsc::SendError(job)) => Some(job),
                },
                // No helper thread could be started: the caller keeps it.
                None => Some(job),
            }
        });
        match sent {
            None => Keeping::Started(std::marker::PhantomData),
            // No helper, or it is gone (it cannot panic, but if it did): keep it here.
            Some(job) => Keeping::Done(job.run()),
        }
    }

    pub fn get(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        fs::read(self.path_of(sha256))
    }
}

struct KeepJob {
    blobs: BlobStore,
    sha: String,
    bytes: Arc<Vec<u8>>,
}

impl KeepJob {
    fn run(self) -> std::io::Result<()> {
        self.blobs.put_with_sha(&self.sha, &self.bytes)
    }
}

/// A thread that keeps blobs for one calling thread; it ends when that thread does (its job
/// queue is dropped with the caller's thread-local).
struct Keeper {
    jobs: Option<mpsc::Sender<KeepJob>>,
    done: mpsc::Receiver<std::io::Result<()>>,
    /// Jobs sent whose result was not taken yet.
    pending: usize,
}

impl Keeper {
    fn start() -> Keeper {
        let (jobs, job_rx) = mpsc::channel::<KeepJob>();
        let (done_tx, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("keeper".into())
            .spawn(move || {
                for job in job_rx {
                    if done_tx.send(job.run()).is_err() {
                        break;
                    }
                }
            });
        Keeper {
            // Without a thread the queue is dropped at once: sends fail and keep in place.
            jobs: spawned.is_ok().then_some(jobs),
            done,
            pending: 0,
        }
    }
}

thread_local! {
    static KEEPER: RefCell<Option<Keeper>> = const { RefCell::new(None) };
}

/// A blob being kept by [`BlobStore::put_in_background`].
#[must_use = "a kept blob is durable only once waited for"]
pub enum Keeping {
    /// On this thread's keeper: waited for on this thread (hence not `Send`).
    Started(std::marker::PhantomData<*const ()>),
    Done(std::io::Result<()>),
}

impl Keeping {
    /// Waits until the blob is durable (or failed to be written).
    pub fn wait(self) -> std::io::Result<()> {
        match self {
            Keeping::Done(result) => result,
            Keeping::Started(_) => KEEPER.with(|keeper| {
                let mut keeper = keeper.borrow_mut();
                let keeper = keeper.as_mut().expect("a started keeping has its keeper");
                keeper.pending = keeper.pending.saturating_sub(1);
                keeper.done.recv().unwrap_or_else(|_| {
                    Err(std::io::Error::other(
                        "the thread keeping originals stopped",
                    ))
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_kept_in_the_background_is_there_once_waited_for_and_failures_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path());
        let bytes = Arc::new(b"lettera".to_vec());
        let sha = sha256_hex(&bytes);
        blobs
            .put_in_background(sha.clone(), bytes.clone())
            .wait()
            .unwrap();
        assert_eq!(blobs.get(&sha).unwrap(), b"lettera");
        // A keeping given up on is collected by the next one, whose result is its own.
        let other = Arc::new(b"fax".to_vec());
        drop(blobs.put_in_background(sha256_hex(&other), other.clone()));
        let third = Arc::new(b"scansione".to_vec());
        let third_sha = sha256_hex(&third);
        blobs
            .put_in_background(third_sha.clone(), third)
            .wait()
            .unwrap();
        assert_eq!(blobs.get(&third_sha).unwrap(), b"scansione");
        assert_eq!(blobs.get(&sha256_hex(&other)).unwrap(), b"fax");
        // A store whose originals folder cannot be made: the error comes back to the caller.
        let file = dir.path().join("not-a-folder");
        fs::write(&file, b"x").unwrap();
        let broken = BlobStore::new(&file);
        assert!(broken.put_in_background(sha, bytes).wait().is_err());
    }

    #[test]
    fn blobs_are_kept_once_under_one_folder_level_and_old_stores_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path());
        let sha = blobs.put(b"domanda").unwrap();
        let path = dir.path().join("originals").join(&sha[..2]).join(&sha);
        assert_eq!(fs::read(&path).unwrap(), b"domanda");
        assert_eq!(blobs.put(b"domanda").unwrap(), sha);
        // A store written with two folder levels.
        let old = sha256_hex(b"lettera");
        let legacy = dir
            .path()
            .join("originals")
            .join(&old[..2])
            .join(&old[2..4]);
        fs::create_dir_all(&legacy).unwrap();
        fs::write(legacy.join(&old), b"lettera").unwrap();
        assert_eq!(blobs.get(&old).unwrap(), b"lettera");
        // Putting the same bytes again finds them where they are, without a second copy.
        blobs.put(b"lettera").unwrap();
        assert!(!dir
            .path()
            .join("originals")
            .join(&old[..2])
            .join(&old)
            .exists());
    }
}
