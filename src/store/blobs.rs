//! Content-addressed originals: `<data>/originals/ab/cd/<sha256>`.
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

    pub fn path_of(&self, sha256: &str) -> PathBuf {
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
        let path = self.path_of(sha);
        if let Ok(meta) = fs::metadata(&path) {
            if meta.len() == bytes.len() as u64 {
                return Ok(());
            }
            // A wrong-sized blob can only be a leftover of a foreign write; replace it whole.
        }
        let dir = path.parent().expect("blob path has a parent");
        fs::create_dir_all(dir)?;
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
