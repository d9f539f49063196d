//! Poison-pill memory: items whose reading killed a worker, or the runner itself.
//!
//! A crash is remembered in the store (table `parse_crashes`, by the SHA-256 of the item's
//! bytes) before the item is tried again; after a second one the item is filed flagged
//! without being read again. The runner itself can die while an item is being read (the
//! kernel's out-of-memory killer, `isolation.processes = false`, a power cut): each item is
//! marked in `inflight/` while it is read, and a runner that starts and finds the mark of a
//! process that no longer lives counts a crash for that item. The mark is a small file,
//! written without fsync: it must survive the death of a process, not of the machine.

use crate::store::prelude::*;
use crate::store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Crashes after which an item is no longer read.
pub const MAX_CRASHES: u32 = 2;

pub struct CrashMemory {
    data_dir: PathBuf,
    inflight: PathBuf,
    known: Mutex<HashMap<String, (u32, String)>>,
    next_mark: AtomicU64,
    /// Mark files not in use (blank), reused: a file made and deleted per item costs the
    /// file system more than rewriting 64 bytes.
    free_marks: Mutex<Vec<(PathBuf, std::fs::File)>>,
}

/// An item being read; its mark is cleared when this is dropped.
pub struct Reading<'a> {
    memory: &'a CrashMemory,
    mark: Option<(PathBuf, std::fs::File)>,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some((path, file)) = self.mark.take() {
            use std::os::unix::fs::FileExt;
            // Blanked in place: no metadata changes, unlike truncating.
            if file.write_all_at(&[b' '; 64], 0).is_ok() {
                self.memory
                    .free_marks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((path, file));
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for CrashMemory {
    fn drop(&mut self) {
        for (path, _) in self
            .free_marks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Why the crash memory could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum CrashMemoryError {
    #[error("cannot create {}: {source}", path.display())]
    Inflight {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl CrashMemory {
    /// Loads what the store remembers, after counting the items that were being read by a
    /// process that has died since.
    pub fn open(data_dir: &Path) -> Result<CrashMemory, CrashMemoryError> {
        let inflight = data_dir.join("inflight");
        std::fs::create_dir_all(&inflight).map_err(|source| CrashMemoryError::Inflight {
            path: inflight.clone(),
            source,
        })?;
        let mut store = Store::open(data_dir)?;
        for (mark, sha) in orphaned_marks(&inflight) {
            let reason = "the intake stopped while reading this file";
            match store.record_parse_crash(&sha, reason) {
                Ok(n) => {
                    tracing::warn!("an item ({sha:.12}…) was being read when a runner died: crash {n} of {MAX_CRASHES}");
                    let _ = std::fs::remove_file(mark);
                }
                Err(e) => tracing::error!("cannot remember a crash: {e}"),
            }
        }
        let known = store.parse_crashes()?;
        Ok(CrashMemory {
            data_dir: data_dir.to_path_buf(),
            inflight,
            known: Mutex::new(known),
            next_mark: AtomicU64::new(0),
            free_marks: Mutex::new(Vec::new()),
        })
    }

    /// Why the item `sha256` must not be read again, if it crashed its readers too often.
    pub fn refused(&self, sha256: &str) -> Option<String> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(sha256)
            .filter(|(n, _)| *n >= MAX_CRASHES)
            .map(|(n, reason)| {
                format!(
                    "{reason}; after {n} crashes this file is no longer read (the original is kept)"
                )
            })
    }

    /// Marks the item as being read until the returned guard is dropped.
    pub fn reading(&self, sha256: &str) -> Reading<'_> {
        use std::os::unix::fs::FileExt;
        let free = self
            .free_marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let mark = match free {
            Some(m) => Ok(m),
            None => {
                let n = self.next_mark.fetch_add(1, Ordering::Relaxed);
                let path = self.inflight.join(format!("{}-{n}", std::process::id()));
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .map(|f| (path, f))
            }
        };
        match mark.and_then(|(path, file)| {
            file.write_all_at(sha256.as_bytes(), 0)
                .map(|()| (path, file))
        }) {
            Ok(m) => Reading {
                memory: self,
                mark: Some(m),
            },
            Err(e) => {
                tracing::warn!("cannot mark an item as being read: {e}");
                Reading {
                    memory: self,
                    mark: None,
                }
            }
        }
    }

    /// Remembers a crash on `sha256` (committed); returns the crashes so far.
    pub fn record(&self, sha256: &str, reason: &str) -> u32 {
        let counted = Store::open(&self.data_dir)
            .and_then(|mut s| s.record_parse_crash(sha256, reason))
            .map_err(|e| tracing::error!("cannot remember a crash in the store: {e}"));
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let entry = known
            .entry(sha256.to_string())
            .or_insert((0, String::new()));
        // Without the store, the count still holds for this run.
        entry.0 = counted.unwrap_or(entry.0 + 1).max(entry.0 + 1);
        entry.1 = reason.to_string();
        entry.0
    }
}

/// Marks left by processes that are no longer alive: (mark file, SHA-256 it names).
fn orphaned_marks(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // A mark with this process's id was left by an earlier process that had it.
        if pid != me && alive(pid) {
            continue;
        }
        let Ok(sha) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let sha = sha.trim().to_string();
        if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            found.push((e.path(), sha));
        } else {
            // Not in use when its process ended, or cut short by the death: nothing to count.
            let _ = std::fs::remove_file(e.path());
        }
    }
    found
}

/// Whether a process with this id exists on this machine.
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_crash_refuses_the_item_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "ab".repeat(32);
        let memory = CrashMemory::open(dir.path()).unwrap();
        assert_eq!(memory.refused(&sha), None);
        assert_eq!(
            memory.record(&sha, "the PDF reader crashed (stack overflow)"),
            1
        );
        assert_eq!(memory.refused(&sha), None);
        drop(memory);
        // A new runner: the first crash is remembered, the second refuses the item.
        let memory = CrashMemory::open(dir.path()).unwrap();
        assert_eq!(
            memory.record(&sha, "the PDF reader crashed (stack overflow)"),
            2
        );
        let reason = memory.refused(&sha).unwrap();
        assert!(reason.contains("stack overflow") && reason.contains("no longer read"));
        drop(memory);
        let memory = CrashMemory::open(dir.path()).unwrap();
        assert!(memory.refused(&sha).is_some());
        assert_eq!(memory.refused(&"cd".repeat(32)), None);
    }

    #[test]
    fn an_item_being_read_when_its_runner_died_counts_as_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "ef".repeat(32);
        let memory = CrashMemory::open(dir.path()).unwrap();
        {
            let _reading = memory.reading(&sha);
            let marks: Vec<_> = std::fs::read_dir(dir.path().join("inflight"))
                .unwrap()
                .collect();
            assert_eq!(marks.len(), 1);
            let mark = marks[0].as_ref().unwrap().path();
            assert_eq!(std::fs::read_to_string(mark).unwrap(), sha);
        }
        // Read to the end: the mark is cleared (kept for the next item), gone at the end.
        let marks: Vec<_> = std::fs::read_dir(dir.path().join("inflight"))
            .unwrap()
            .collect();
        let blank = std::fs::read_to_string(marks[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(blank.trim(), "");
        drop(memory);
        assert_eq!(
            std::fs::read_dir(dir.path().join("inflight"))
                .unwrap()
                .count(),
            0
        );
        // A mark left by a process that no longer lives (pid 2^22 + 1 is beyond pid_max's
        // default), twice: refused.
        for round in 1..=2 {
            std::fs::write(dir.path().join(format!("{}-0", (1 << 22) + 1)), &sha).unwrap();
            std::fs::rename(
                dir.path().join(format!("{}-0", (1 << 22) + 1)),
                dir.path()
                    .join("inflight")
                    .join(format!("{}-0", (1 << 22) + 1)),
            )
            .unwrap();
            let memory = CrashMemory::open(dir.path()).unwrap();
            assert_eq!(memory.refused(&sha).is_some(), round == 2, "round {round}");
            assert_eq!(
                std::fs::read_dir(dir.path().join("inflight"))
                    .unwrap()
                    .count(),
                0
            );
        }
        // A mark of a live process (this one's parent) is left alone.
        let parent = std::os::unix::process::parent_id();
        let live = dir.path().join("inflight").join(format!("{parent}-9"));
        std::fs::write(&live, "12".repeat(32)).unwrap();
        let memory = CrashMemory::open(dir.path()).unwrap();
        assert!(live.exists());
        assert_eq!(memory.refused(&"12".repeat(32)), None);
    }
}
