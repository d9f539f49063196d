//! Running items through the processor on worker threads while one thread files tickets:
//! `ingest` (a batch of paths, once) and `run` (watch every source until a signal).

use crate::config::{Pipeline, SourceConfig};
use crate::pipeline::{Item, PrepareError, Processor, ReadItem};
use crate::sinks::{self, sms::SmsSender, smtp::AckSender, Sink};
use crate::sources::folder::{self, FolderSource, GroupedFolder};
use crate::sources::imap::ImapSource;
use crate::sources::sms::SmsSource;
use crate::sources::voicemail::VoicemailSource;
use crate::store::prelude::*;
use crate::store::{Filed, NewTicket, Store, StoreError};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use notify::Watcher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an item was not filed (it stays in its source).
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    File(#[from] StoreError),
}

/// The result of one item.
#[derive(Debug)]
pub struct Outcome {
    pub origin: PathBuf,
    pub result: Result<(Filed, Option<String>), ItemError>,
    /// Pages of the item's documents (for progress displays).
    pub pages: u32,
}

impl Outcome {
    /// Filed with something for a clerk to look at, or not filed at all.
    pub fn flagged(&self) -> bool {
        !matches!(self.result, Ok((_, None)))
    }
}

fn pages_of(prepared: &Result<NewTicket, ItemError>) -> u32 {
    prepared.as_ref().map_or(0, pages_of_ticket)
}

/// Pages of a prepared ticket's documents as received (not their searchable copies).
pub fn pages_of_ticket(t: &NewTicket) -> u32 {
    t.documents
        .iter()
        .filter(|d| d.doc.kind == crate::model::DocumentKind::Original)
        .map(|d| d.doc.pages.unwrap_or(0))
        .sum()
}

/// Most items committed together: bounds how long a finished item waits for its batch.
const MAX_BATCH: usize = 32;

/// How long a finished item waits for others to share its commit. Workers finish one item
/// every few milliseconds each; without the wait nearly every item was a commit of its own
/// (a WAL fsync and a new full-text segment each).
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// Runs `jobs` through `prepare` on `workers` threads and hands the results to `file` on the
/// calling thread as they complete: what finishes within `BATCH_LINGER` of the first comes as
/// one batch (at most `MAX_BATCH`), so the store can commit them together. The queue is
/// bounded, so memory holds only what the workers are doing.
pub fn parallel<J, R>(
    jobs: impl IntoIterator<Item = J, IntoIter: Send>,
    workers: usize,
    prepare: impl Fn(J) -> R + Sync,
    mut file: impl FnMut(Vec<R>),
) where
    J: Send,
    R: Send,
{
    let workers = workers.max(1);
    let (job_tx, job_rx) = bounded::<J>(workers * 2);
    // Room for a whole batch, so workers go on while the previous one commits.
    let (res_tx, res_rx) = bounded::<R>(MAX_BATCH.max(workers * 2));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let prepare = &prepare;
            scope.spawn(move || {
                for job in job_rx {
                    if res_tx.send(prepare(job)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        drop(job_rx);
        // Feed from a thread of its own so the filing loop below never blocks on a full queue.
        let jobs_iter = jobs.into_iter();
        let feeder = scope.spawn(move || {
            for job in jobs_iter {
                if job_tx.send(job).is_err() {
                    break;
                }
            }
        });
        while let Ok(first) = res_rx.recv() {
            let mut batch = vec![first];
            let deadline = Instant::now() + BATCH_LINGER;
            while batch.len() < MAX_BATCH {
                match res_rx.recv_deadline(deadline) {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            file(batch);
        }
        let _ = feeder.join();
    });
}

/// Expands folders into the files under them (hidden and partial files skipped), sorted.
pub fn collect_paths(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>, depth: usize) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return errors.push(format!("{}: {e}", dir.display())),
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if folder::is_ignored_name(&name) {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                if depth < 32 {
                    walk(&path, files, errors, depth + 1);
                }
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut errors, 0);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            errors.push(format!("{}: no such file or folder", p.display()));
        }
    }
    (files, errors)
}

pub fn item_from_path(
    path: &Path,
    channel: Option<crate::model::Channel>,
) -> std::io::Result<Item> {
    let bytes = std::fs::read(path)?;
    let mtime = std::fs::metadata(path)?.modified().ok();
    let origin = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Item {
        source: "cli".into(),
        origin: origin.to_string_lossy().into_owned(),
        channel,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: Arc::new(bytes),
        mtime_ns: mtime.and_then(folder::mtime_ns),
        received_at: None,
        sender: Default::default(),
        attention: Vec::new(),
    })
}

/// `sportello ingest`: every file once, synchronously; `report` sees each outcome.
pub fn ingest(
    store: &mut Store,
    processor: &Processor,
    pipeline: &Pipeline,
    files: Vec<PathBuf>,
    channel: Option<crate::model::Channel>,
    mut report: impl FnMut(&Store, Outcome),
) {
    let prefix = pipeline.code_prefix.clone();
    parallel(
        files,
        pipeline.workers,
        |path: PathBuf| {
            let read = item_from_path(&path, channel)
                .map_err(ItemError::from)
                .and_then(|item| Ok(processor.read(item)?));
            (path, read)
        },
        |batch: Vec<(PathBuf, Result<ReadItem, ItemError>)>| {
            // Classified here, one after another (see `Processor::finish`).
            let batch: Vec<(PathBuf, Result<NewTicket, ItemError>)> = batch
                .into_iter()
                .map(|(path, read)| (path, read.map(|r| processor.finish(r))))
                .collect();
            let ready: Vec<&NewTicket> =
                batch.iter().filter_map(|(_, p)| p.as_ref().ok()).collect();
            let mut filed = store.file_batch(&ready, &prefix).into_iter();
            for (path, prepared) in batch {
                let pages = pages_of(&prepared);
                let result = prepared.and_then(|t| {
                    let attention = (!t.attention.is_empty()).then(|| t.attention.join("; "));
                    filed
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Batch("no result".into())))
                        .map(|f| (f, attention))
                        .map_err(ItemError::from)
                });
                report(
                    store,
                    Outcome {
                        origin: path,
                        result,
                        pages,
                    },
                );
            }
        },
    );
}

/// A source the run loop watches.
enum Source {
    Folder(FolderSource),
    Imap(ImapSource),
    Sms(SmsSource),
    Voicemail(VoicemailSource),
}

impl Source {
    fn has_pending(&self) -> bool {
        match self {
            Source::Folder(f) => f.has_pending(),
            Source::Imap(i) => i.has_pending(),
            Source::Sms(s) => s.files.folder.has_pending(),
            Source::Voicemail(v) => v.files.folder.has_pending(),
        }
    }
}

/// `sportello run`: watches every source until `stop` is set, finishing the items in hand.
/// With an `smtp_ack` sink, a thread of its own sends the acknowledgements in the outbox.
pub fn run(
    store: &mut Store,
    processor: &Processor,
    pipeline: &Pipeline,
    stop: Arc<AtomicBool>,
    once: bool,
    mut report: impl FnMut(&Store, Outcome),
) -> Result<(), String> {
    // File events and IMAP threads only wake the loop early; rescans guarantee coverage.
    let (wake_tx, wake_rx) = unbounded::<usize>();
    let mut sources = Vec::new();
    for s in &pipeline.sources {
        let idx = sources.len();
        match s {
            SourceConfig::Folder(f) => sources.push(Source::Folder(FolderSource::new(f.clone())?)),
            SourceConfig::Sms(s) => sources.push(Source::Sms(SmsSource::new(s)?)),
            SourceConfig::Voicemail(v) => sources.push(Source::Voicemail(VoicemailSource::new(v)?)),
            SourceConfig::Imap(i) => sources.push(Source::Imap(ImapSource::start(
                i.clone(),
                wake_tx.clone(),
                idx,
            )?)),
        }
    }
    if sources.is_empty() {
        return Err("the pipeline has no sources to watch".into());
    }
    let outs = out_sinks(pipeline)?;
    let watchers = watch_folders(&sources, &wake_tx);

    let workers = pipeline.workers.max(1);
    let (job_tx, job_rx) = bounded::<(usize, PathBuf, Item)>(workers);
    let (res_tx, res_rx) = unbounded::<(usize, PathBuf, Result<ReadItem, ItemError>)>();
    let prefix = pipeline.code_prefix.clone();
    let mut last_scan: Vec<Option<Instant>> = vec![None; sources.len()];
    let mut in_flight: std::collections::HashSet<PathBuf> = Default::default();
    // With `--once`, an item that could not be prepared (no worker, original not kept) is
    // left in its source and not tried again in this run.
    let mut given_up: std::collections::HashSet<PathBuf> = Default::default();
    let acks_done = AtomicBool::new(false);
    let data_dir = store.data_dir().to_path_buf();
    let mut register_due: Option<Instant> = None;
    let mut register_failed: Option<chrono::NaiveDate> = None;

    let result = std::thread::scope(|scope| -> Result<(), String> {
        for _ in 0..workers {
            let job_rx: Receiver<(usize, PathBuf, Item)> = job_rx.clone();
            let res_tx: Sender<_> = res_tx.clone();
            scope.spawn(move || {
                for (idx, path, item) in job_rx {
                    let read = processor.read(item).map_err(ItemError::from);
                    let _ = res_tx.send((idx, path, read));
                }
            });
        }
        drop(res_tx);
        for sink in &outs {
            let (stop, acks_done, data_dir) = (&stop, &acks_done, &data_dir);
            scope.spawn(move || deliver_acks(sink.as_ref(), data_dir, stop, acks_done, once));
        }
        tracing::info!(sources = sources.len(), workers, "watching");
        // Sources a file event woke since their last scan.
        let mut woken = vec![false; sources.len()];
        let mut finished = Vec::new();
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            // File what the workers read, classified first one after another (see
            // `Processor::finish`).
            finished.extend(res_rx.try_iter());
            for (idx, path, read) in finished.drain(..) {
                let prepared = read.map(|r| processor.finish(r));
                in_flight.remove(&path);
                if once && prepared.is_err() {
                    given_up.insert(path.clone());
                }
                let outcome = match &sources[idx] {
                    Source::Folder(src) => file_and_move(store, src, &path, prepared, &prefix),
                    Source::Sms(src) => file_and_move(store, &src.files, &path, prepared, &prefix),
                    Source::Voicemail(src) => {
                        file_and_move(store, &src.files, &path, prepared, &prefix)
                    }
                    Source::Imap(src) => file_message(store, src, &path, prepared, &prefix),
                };
                report(store, outcome);
            }
            if stopping {
                if in_flight.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // After midnight, the day before's register (once a minute it is looked for).
            if register_due.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60)) {
                register_due = Some(Instant::now());
                write_missing_registers(store, pipeline, &mut register_failed);
            }
            // Rescan what is due, or what an event woke.
            for idx in wake_rx.try_iter() {
                woken[idx] = true;
            }
            for (idx, src) in sources.iter_mut().enumerate() {
                let ready = src.ready(&mut woken[idx], &mut last_scan[idx], &in_flight);
                for (path, item) in ready {
                    if in_flight.contains(&path) || given_up.contains(&path) {
                        continue;
                    }
                    in_flight.insert(path.clone());
                    if job_tx.send((idx, path, item)).is_err() {
                        return Err("workers stopped".into());
                    }
                }
            }
            if once && in_flight.is_empty() && sources.iter().all(|s| !s.has_pending()) {
                break;
            }
            // Sleep until a file event, a finished item, or the next settle check.
            crossbeam_channel::select! {
                recv(wake_rx) -> msg => if let Ok(idx) = msg { woken[idx] = true },
                recv(res_rx) -> msg => if let Ok(done) = msg { finished.push(done) },
                default(Duration::from_millis(200)) => {}
            }
        }
        drop(job_tx);
        // With `--once`, the sender makes its last round and ends; otherwise it is stopped.
        if !once {
            stop.store(true, Ordering::SeqCst);
        }
        acks_done.store(true, Ordering::SeqCst);
        Ok(())
    });
    for src in sources {
        if let Source::Imap(src) = src {
            src.stop();
        }
    }
    drop(watchers);
    result
}

/// File events wake the loop early for the folders that do not poll; where events are not
/// available the folder is polled.
fn watch_folders(sources: &[Source], wake_tx: &Sender<usize>) -> Vec<notify::RecommendedWatcher> {
    let mut watchers = Vec::new();
    for (idx, src) in sources.iter().enumerate() {
        let src = match src {
            Source::Folder(f) => f,
            Source::Sms(s) => &s.files.folder,
            Source::Voicemail(v) => &v.files.folder,
            Source::Imap(_) => continue,
        };
        if src.cfg.poll {
            continue;
        }
        let tx = wake_tx.clone();
        let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.send(idx);
        });
        match watcher {
            Ok(mut w) => match w.watch(src.path(), notify::RecursiveMode::NonRecursive) {
                Ok(()) => watchers.push(w),
                Err(e) => {
                    tracing::warn!(source = %src.cfg.name, "file events unavailable ({e}); polling")
                }
            },
            Err(e) => {
                tracing::warn!(source = %src.cfg.name, "file events unavailable ({e}); polling")
            }
        }
    }
    watchers
}

impl Source {
    /// What the source has ready now: an IMAP thread's fetched messages; a folder's settled
    /// files, rescanned when due or woken by an event.
    fn ready(
        &mut self,
        woken: &mut bool,
        last_scan: &mut Option<Instant>,
        in_flight: &std::collections::HashSet<PathBuf>,
    ) -> Vec<(PathBuf, Item)> {
        match self {
            Source::Imap(src) => {
                *woken = false;
                src.take_ready()
                    .into_iter()
                    .map(|item| (PathBuf::from(&item.origin), item))
                    .collect()
            }
            Source::Folder(src) => {
                rescan(src, woken, last_scan);
                let mut ready = Vec::new();
                for path in src.take_ready() {
                    if in_flight.contains(&path) {
                        continue;
                    }
                    match src.item(&path) {
                        Ok(item) => ready.push((path, item)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!(source = %src.cfg.name, "cannot read {}: {e}", crate::entities::redact(&path.display().to_string()))
                        }
                    }
                }
                ready
            }
            Source::Sms(src) => {
                rescan(&mut src.files.folder, woken, last_scan);
                let groups = src.take_ready();
                read_groups(&src.files.folder.cfg.name, groups, in_flight, |g| {
                    src.item(g)
                })
            }
            Source::Voicemail(src) => {
                rescan(&mut src.files.folder, woken, last_scan);
                let groups = src.take_ready();
                read_groups(&src.files.folder.cfg.name, groups, in_flight, |g| {
                    src.item(g)
                })
            }
        }
    }
}

/// Items of settled groups not already in flight; a group that cannot be read now is left
/// for the next scan.
fn read_groups(
    source: &str,
    groups: Vec<(PathBuf, Vec<PathBuf>)>,
    in_flight: &std::collections::HashSet<PathBuf>,
    item: impl Fn(&[PathBuf]) -> std::io::Result<Item>,
) -> Vec<(PathBuf, Item)> {
    let mut ready = Vec::new();
    for (key, files) in groups {
        if in_flight.contains(&key) {
            continue;
        }
        match item(&files) {
            Ok(item) => ready.push((key, item)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(source = %source, "cannot read {}: {e}", crate::entities::redact(&key.display().to_string()))
            }
        }
    }
    ready
}

/// Rescans a folder when due, or woken by an event, or while files in it are settling.
fn rescan(src: &mut FolderSource, woken: &mut bool, last_scan: &mut Option<Instant>) {
    let due = last_scan.is_none_or(|t| t.elapsed() >= Duration::from_secs(src.cfg.rescan_secs));
    if due || *woken || src.has_pending() {
        *woken = false;
        src.scan();
        if due {
            *last_scan = Some(Instant::now());
        }
    }
}

/// A folder whose files leave it once their ticket is committed.
trait DropFolder {
    fn finish(&self, path: &Path) -> std::io::Result<PathBuf>;
    fn fail(&self, path: &Path, reason: &str) -> std::io::Result<PathBuf>;
}

impl DropFolder for FolderSource {
    fn finish(&self, path: &Path) -> std::io::Result<PathBuf> {
        FolderSource::finish(self, path)
    }
    fn fail(&self, path: &Path, reason: &str) -> std::io::Result<PathBuf> {
        FolderSource::fail(self, path, reason)
    }
}

impl DropFolder for GroupedFolder {
    fn finish(&self, path: &Path) -> std::io::Result<PathBuf> {
        GroupedFolder::finish(self, path)
    }
    fn fail(&self, path: &Path, reason: &str) -> std::io::Result<PathBuf> {
        GroupedFolder::fail(self, path, reason)
    }
}

/// The pipeline's ways out of the outbox: its `smtp_ack` and `sms` sinks.
pub fn out_sinks(pipeline: &Pipeline) -> Result<Vec<Box<dyn Sink + Send>>, String> {
    let dir = pipeline
        .file
        .as_ref()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let office = pipeline.office.as_deref();
    pipeline
        .sinks
        .iter()
        .map(|s| -> Result<Box<dyn Sink + Send>, String> {
            Ok(match s {
                crate::config::SinkConfig::SmtpAck(cfg) => {
                    Box::new(AckSender::new(cfg, &dir, office)?.with_segnatura(pipeline))
                }
                crate::config::SinkConfig::Sms(cfg) => Box::new(SmsSender::new(cfg, &dir, office)?),
            })
        })
        .collect()
}

/// Sends due acknowledgements every few seconds on a store connection of its own, until the
/// run ends; then one last round that tries everything still pending.
fn deliver_acks(
    sink: &dyn Sink,
    data_dir: &Path,
    stop: &AtomicBool,
    done: &AtomicBool,
    once: bool,
) {
    let mut store = match Store::open(data_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("acknowledgements: cannot open the store: {e}");
            return;
        }
    };
    loop {
        let finishing = done.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst);
        sinks::deliver(sink, &mut store, finishing && once);
        if finishing {
            return;
        }
        for _ in 0..20 {
            if done.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Files a message from a mailbox; the server-side action follows only a committed ticket.
fn file_message(
    store: &mut Store,
    src: &ImapSource,
    origin: &Path,
    prepared: Result<NewTicket, ItemError>,
    prefix: &str,
) -> Outcome {
    let origin_str = origin.to_string_lossy().into_owned();
    let pages = pages_of(&prepared);
    let result = prepared.and_then(|ticket| {
        let attention = (!ticket.attention.is_empty()).then(|| ticket.attention.join("; "));
        store
            .file(&ticket, prefix)
            .map(|f| (f, attention))
            .map_err(ItemError::from)
    });
    src.finish(&origin_str, result.is_ok());
    Outcome {
        origin: origin.to_path_buf(),
        result,
        pages,
    }
}

fn file_and_move(
    store: &mut Store,
    src: &dyn DropFolder,
    path: &Path,
    prepared: Result<NewTicket, ItemError>,
    prefix: &str,
) -> Outcome {
    let pages = pages_of(&prepared);
    let ticket = match prepared {
        Ok(t) => t,
        // The original could not be kept: leave the file where it is for the next scan.
        Err(e) => {
            return Outcome {
                origin: path.to_path_buf(),
                result: Err(e),
                pages,
            }
        }
    };
    let attention = (!ticket.attention.is_empty()).then(|| ticket.attention.join("; "));
    let filed = match store.file(&ticket, prefix) {
        Ok(f) => f,
        Err(e) => {
            return Outcome {
                origin: path.to_path_buf(),
                result: Err(e.into()),
                pages,
            }
        }
    };
    // Only now, with the ticket committed, does the file leave the drop folder.
    let unreadable = ticket.documents.first().and_then(|d| d.doc.error.clone());
    let moved = match &unreadable {
        Some(reason) => src.fail(path, &format!("{reason}\nticket: {}", filed.code())),
        None => src.finish(path),
    };
    if let Err(e) = moved {
        tracing::warn!(
            "filed {} as {} but cannot move it: {e}",
            crate::entities::redact(&path.display().to_string()),
            filed.code()
        );
    }
    Outcome {
        origin: path.to_path_buf(),
        result: Ok((filed, attention)),
        pages,
    }
}

/// Writes the registers of the days before today that `register_dir` lacks, oldest first,
/// looking back a week (a service down over a weekend catches up); a register already there
/// is left as it is. A failure is logged once a day and tried again each minute.
fn write_missing_registers(
    store: &Store,
    pipeline: &Pipeline,
    failed: &mut Option<chrono::NaiveDate>,
) {
    use crate::register::daily;
    let (Some(reg), Some(dir)) = (&pipeline.register, &pipeline.register_dir) else {
        return;
    };
    let today = chrono::Local::now().date_naive();
    let missing: Vec<chrono::NaiveDate> = (1..=CATCH_UP_DAYS)
        .rev()
        .filter_map(|back| today.checked_sub_days(chrono::Days::new(back)))
        .filter(|day| !dir.join(format!("{}.sha256", reg.file_stem(*day))).exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    let topics = crate::register::topics(pipeline);
    for day in missing {
        let result = daily::build(store, reg, &topics, day)
            .and_then(|f| daily::write(dir, &f).map(|_| f.count));
        match result {
            Ok(count) => {
                *failed = None;
                tracing::info!(%day, count, dir = %dir.display(), "daily register written");
            }
            Err(e) => {
                if *failed != Some(today) {
                    tracing::warn!(%day, "the daily register could not be written: {e}");
                }
                *failed = Some(today);
                return;
            }
        }
    }
}

/// How many days back `run` writes a missing daily register.
const CATCH_UP_DAYS: u64 = 7;
