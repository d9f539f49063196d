//! A drop folder written by a fax server or a scanner.
//!
//! A file is taken only when complete: temporary and hidden names are ignored, and its size
//! and modification time must stay the same for `settle_secs`. After its ticket commits it
//! moves to `processed/`; a file that could not be read as a document moves to `failed/` with
//! a `.error.txt` beside it (its ticket is filed all the same, flagged, original attached).

use crate::config::FolderSourceConfig;
use crate::model::Sender;
use crate::pipeline::Item;
use regex::Regex;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
}

pub struct FolderSource {
    pub cfg: FolderSourceConfig,
    pattern: Option<Regex>,
    processed_dir: PathBuf,
    failed_dir: PathBuf,
    /// Files seen and not yet taken, with when they last changed.
    pending: HashMap<PathBuf, (Seen, Instant)>,
}

/// Names a writer uses while a file is not finished yet, and hidden files.
pub fn is_ignored_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || name.ends_with('~')
        || [
            ".tmp",
            ".part",
            ".partial",
            ".crdownload",
            ".filepart",
            ".swp",
            ".lock",
            ".error.txt",
            ".download",
        ]
        .iter()
        .any(|s| lower.ends_with(s))
}

impl FolderSource {
    pub fn new(cfg: FolderSourceConfig) -> Result<FolderSource, String> {
        if !cfg.path.is_dir() {
            fs::create_dir_all(&cfg.path).map_err(|e| {
                format!(
                    "source `{}`: cannot create drop folder {}: {e}",
                    cfg.name,
                    cfg.path.display()
                )
            })?;
            tracing::info!(source = %cfg.name, "created drop folder {}", cfg.path.display());
        }
        let processed_dir = cfg
            .processed_dir
            .clone()
            .unwrap_or_else(|| cfg.path.join("processed"));
        let failed_dir = cfg
            .failed_dir
            .clone()
            .unwrap_or_else(|| cfg.path.join("failed"));
        for dir in [&processed_dir, &failed_dir] {
            fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "source `{}`: cannot create {}: {e}",
                    cfg.name,
                    dir.display()
                )
            })?;
        }
        let pattern = match &cfg.sender_pattern {
            Some(p) => Some(
                Regex::new(p).map_err(|e| format!("source `{}`: sender_pattern: {e}", cfg.name))?,
            ),
            None => None,
        };
        Ok(FolderSource {
            cfg,
            pattern,
            processed_dir,
            failed_dir,
            pending: HashMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Looks at every file in the folder, noting new ones and changes.
    pub fn scan(&mut self) {
        let entries = match fs::read_dir(&self.cfg.path) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, "cannot read drop folder {}: {e}", self.cfg.path.display());
                return;
            }
        };
        let now = Instant::now();
        let mut present = std::collections::HashSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_ignored_name(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            let seen = Seen {
                size: meta.len(),
                mtime: meta.modified().ok(),
            };
            present.insert(path.clone());
            match self.pending.get_mut(&path) {
                Some((old, since)) if *old != seen => {
                    *old = seen;
                    *since = now;
                }
                Some(_) => {}
                None => {
                    self.pending.insert(path, (seen, now));
                }
            }
        }
        self.pending.retain(|p, _| present.contains(p));
    }

    /// Files unchanged for the settle time, removed from the pending set.
    pub fn take_ready(&mut self) -> Vec<PathBuf> {
        self.take_ready_groups(|p| p.to_path_buf())
            .into_iter()
            .flatten()
            .collect()
    }

    /// Settled files in groups (`group` names a file's group: the parts of one text
    /// message): a group is taken only when every file of it seen so far has settled, so a
    /// message is never split because its last part was still being written. Groups come
    /// in name order, each sorted.
    pub fn take_ready_groups<K: std::hash::Hash + Eq + Ord + Clone>(
        &mut self,
        group: impl Fn(&Path) -> K,
    ) -> Vec<Vec<PathBuf>> {
        let settle = Duration::from_secs_f64(self.cfg.settle_secs);
        let now = Instant::now();
        let mut ready: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= settle)
            .map(|(p, _)| p.clone())
            .collect();
        // Check once more against the disk: a writer may have appended since the last scan.
        ready.retain(|p| {
            let (seen, _) = self.pending[p];
            match fs::metadata(p) {
                Ok(m)
                    if (Seen {
                        size: m.len(),
                        mtime: m.modified().ok(),
                    }) == seen =>
                {
                    true
                }
                Ok(m) => {
                    self.pending.insert(
                        p.clone(),
                        (
                            Seen {
                                size: m.len(),
                                mtime: m.modified().ok(),
                            },
                            now,
                        ),
                    );
                    false
                }
                Err(_) => false,
            }
        });
        let ready_set: std::collections::HashSet<&PathBuf> = ready.iter().collect();
        let unsettled: std::collections::HashSet<K> = self
            .pending
            .keys()
            .filter(|p| !ready_set.contains(p))
            .map(|p| group(p))
            .collect();
        let mut groups: std::collections::BTreeMap<K, Vec<PathBuf>> = Default::default();
        for p in ready {
            let k = group(&p);
            if !unsettled.contains(&k) {
                groups.entry(k).or_default().push(p);
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (_, mut paths) in groups {
            paths.sort();
            for p in &paths {
                self.pending.remove(p);
            }
            out.push(paths);
        }
        out.sort();
        out
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Reads a ready file into an item.
    pub fn item(&self, path: &Path) -> std::io::Result<Item> {
        let bytes = fs::read(path)?;
        let meta = fs::metadata(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mtime = meta.modified().ok();
        Ok(Item {
            source: self.cfg.name.clone(),
            channel: Some(self.cfg.channel),
            origin: name.clone(),
            sender: self.sender_from_name(&name),
            name,
            bytes: Arc::new(bytes),
            mtime_ns: mtime.and_then(mtime_ns),
            received_at: mtime.map(rfc3339),
            attention: Vec::new(),
        })
    }

    fn sender_from_name(&self, name: &str) -> Sender {
        let mut sender = Sender::default();
        let Some(caps) = self.pattern.as_ref().and_then(|re| re.captures(name)) else {
            return sender;
        };
        let get = |group: &str| {
            caps.name(group)
                .map(|m| m.as_str().trim().to_string())
                .filter(|s| !s.is_empty())
        };
        sender.fax = get("fax");
        sender.phone = get("phone");
        sender.name = get("name").map(|n| n.replace('_', " "));
        sender.email = get("email");
        sender
    }

    /// Moves a filed file out of the drop folder.
    pub fn finish(&self, path: &Path) -> std::io::Result<PathBuf> {
        move_into(path, &self.processed_dir)
    }

    /// Moves a file that could not be read as a document to `failed/`, with the reason beside it.
    pub fn fail(&self, path: &Path, reason: &str) -> std::io::Result<PathBuf> {
        let target = move_into(path, &self.failed_dir)?;
        let mut note = target.clone().into_os_string();
        note.push(".error.txt");
        fs::write(&note, format!("{reason}\n"))?;
        Ok(target)
    }
}

/// A drop folder whose files come in groups (a text message's parts; a recording and its
/// description): a group is taken whole once all of it has settled, and leaves whole.
pub struct GroupedFolder {
    pub folder: FolderSource,
    /// Each group in flight by the path that names it → all its files.
    in_flight: std::cell::RefCell<HashMap<PathBuf, Vec<PathBuf>>>,
}

impl GroupedFolder {
    pub fn new(cfg: FolderSourceConfig) -> Result<GroupedFolder, String> {
        Ok(GroupedFolder {
            folder: FolderSource::new(cfg)?,
            in_flight: Default::default(),
        })
    }

    /// Settled groups, by `group` (see [`FolderSource::take_ready_groups`]).
    pub fn take_ready<K: std::hash::Hash + Eq + Ord + Clone>(
        &mut self,
        group: impl Fn(&Path) -> K,
    ) -> Vec<Vec<PathBuf>> {
        self.folder.take_ready_groups(group)
    }

    /// Remembers the files of the group named by `key`, for [`finish`](Self::finish) or
    /// [`fail`](Self::fail) once its ticket is filed.
    pub fn hold(&self, key: &Path, files: &[PathBuf]) {
        self.in_flight
            .borrow_mut()
            .insert(key.to_path_buf(), files.to_vec());
    }

    /// Moves every file of a filed group out of the folder; returns where its first went.
    pub fn finish(&self, key: &Path) -> std::io::Result<PathBuf> {
        self.each_file(key, |p| self.folder.finish(p))
    }

    /// Moves the files of a group that could not be read to `failed/`, the reason beside
    /// each.
    pub fn fail(&self, key: &Path, reason: &str) -> std::io::Result<PathBuf> {
        self.each_file(key, |p| self.folder.fail(p, reason))
    }

    fn each_file(
        &self,
        key: &Path,
        mut each: impl FnMut(&Path) -> std::io::Result<PathBuf>,
    ) -> std::io::Result<PathBuf> {
        let files = self
            .in_flight
            .borrow_mut()
            .remove(key)
            .unwrap_or_else(|| vec![key.to_path_buf()]);
        let mut first = None;
        let mut error = None;
        for p in &files {
            match each(p) {
                Ok(to) => {
                    first.get_or_insert(to);
                }
                Err(e) => error = Some(e),
            }
        }
        match (error, first) {
            (Some(e), _) => Err(e),
            (None, Some(to)) => Ok(to),
            (None, None) => Err(std::io::Error::other("a group with no files")),
        }
    }
}

pub fn mtime_ns(t: SystemTime) -> Option<i64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos() as i64)
}

pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Renames `path` into `dir`, choosing `name-1.ext`, `name-2.ext`… when the name is taken.
fn move_into(path: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let mut target = dir.join(name);
    let stem = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = Path::new(name)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{stem}-{n}{ext}"));
        n += 1;
    }
    fs::rename(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_partial_and_hidden_names() {
        for n in [
            ".hidden.pdf",
            "fax.pdf.part",
            "x.tmp",
            "~lock.pdf",
            "scan.pdf.crdownload",
            "a.pdf.error.txt",
        ] {
            assert!(is_ignored_name(n), "{n}");
        }
        for n in ["fax_0862.tif", "lettera.pdf", "scan 01.jpg"] {
            assert!(!is_ignored_name(n), "{n}");
        }
    }

    #[test]
    fn takes_only_settled_files_and_reads_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FolderSourceConfig {
            name: "fax".into(),
            path: dir.path().to_path_buf(),
            channel: crate::model::Channel::Fax,
            settle_secs: 0.3,
            rescan_secs: 1,
            poll: true,
            processed_dir: None,
            failed_dir: None,
            sender_pattern: Some(r"^fax_(?P<fax>\+?\d+)_".into()),
        };
        let mut src = FolderSource::new(cfg).unwrap();
        let file = dir.path().join("fax_0862505245_0001.tif");
        fs::write(&file, b"II*\0").unwrap();
        src.scan();
        assert!(src.take_ready().is_empty(), "taken before settling");
        std::thread::sleep(Duration::from_millis(350));
        src.scan();
        let ready = src.take_ready();
        assert_eq!(ready, vec![file.clone()]);
        let item = src.item(&file).unwrap();
        assert_eq!(item.sender.fax.as_deref(), Some("0862505245"));
        let moved = src.finish(&file).unwrap();
        assert!(moved.starts_with(dir.path().join("processed")));
        fs::write(&file, b"again").unwrap();
        let moved2 = src.finish(&file).unwrap();
        assert!(
            moved2.ends_with("fax_0862505245_0001-1.tif"),
            "{}",
            moved2.display()
        );
    }
}
