//! Content-addressed originals: `<data>/originals/ab/<sha256>` (one level of 256 folders, as
//! git does: two levels made a new folder — a new inode and its fsync — for almost every
//! blob of a young store; stores written that way are still read).
//!
//! Written to a temp file in the same folder, fsynced, then renamed, so a crash leaves either
//! the whole file or nothing. Existing blobs are never rewritten: originals are never modified.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

    pub fn get(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        fs::read(self.path_of(sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
