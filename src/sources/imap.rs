//! An IMAP mailbox as a source: one thread per account, its own connection.
//!
//! Every message is an [`Item`] whose origin is `account/folder/UIDVALIDITY/UID`; it is read
//! with `BODY.PEEK[]`, so nothing changes on the server until its ticket is committed. Then
//! the runner calls [`ImapSource::finish`] and the thread moves the message to `move_to` (or
//! sets `flag`). A crash between commit and that action leaves the message in place: seen
//! again, the store recognises it (same origin and hash) and files nothing twice. A message
//! whose filing failed is fetched again on a later pass, at most [`MAX_ATTEMPTS`] times.
//! IDLE where the server offers it, polling otherwise; a dropped connection is opened again
//! with a growing pause.

use crate::config::{ImapSourceConfig, TlsMode};
use crate::pipeline::Item;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A message whose filing failed this many times is left on the server and reported.
pub const MAX_ATTEMPTS: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest IDLE before the thread looks at finished items and the stop flag again.
const IDLE_SLICE: Duration = Duration::from_secs(2);

type Session = imap::Session<imap::Connection>;

struct Done {
    origin: String,
    ok: bool,
}

pub struct ImapSource {
    pub cfg: ImapSourceConfig,
    ready: Receiver<Item>,
    done: Sender<Done>,
    stop: Arc<AtomicBool>,
    /// Passes over every folder completed since start (for `run --once`).
    passes: Arc<AtomicUsize>,
    /// Server-side actions still to do.
    actions_pending: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImapSource {
    /// Starts the account's thread; `wake` is told when items are ready.
    pub fn start(
        cfg: ImapSourceConfig,
        wake: Sender<usize>,
        idx: usize,
    ) -> Result<ImapSource, String> {
        if let Some(e) = crate::config::plain_tls_problem(cfg.tls, &cfg.host) {
            return Err(format!("source `{}`: {e}", cfg.name));
        }
        let password = cfg.password()?;
        let (ready_tx, ready) = unbounded();
        let (done, done_rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicUsize::new(0));
        let actions_pending = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            cfg: cfg.clone(),
            password,
            ready: ready_tx,
            wake,
            idx,
            done: done_rx,
            stop: stop.clone(),
            passes: passes.clone(),
            actions_pending: actions_pending.clone(),
            in_flight: HashSet::new(),
            attempts: HashMap::new(),
            to_finish: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("imap-{}", cfg.name))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start the IMAP thread: {e}"))?;
        Ok(ImapSource {
            cfg,
            ready,
            done,
            stop,
            passes,
            actions_pending,
            thread: Some(thread),
        })
    }

    pub fn take_ready(&self) -> Vec<Item> {
        self.ready.try_iter().collect()
    }

    /// The item's ticket is committed (`ok`), or filing it failed (it will be tried again).
    pub fn finish(&self, origin: &str, ok: bool) {
        if ok {
            self.actions_pending.fetch_add(1, Ordering::SeqCst);
        }
        let _ = self.done.send(Done {
            origin: origin.to_string(),
            ok,
        });
    }

    /// True until one full pass over the folders is done and every action is carried out.
    pub fn has_pending(&self) -> bool {
        self.passes.load(Ordering::SeqCst) == 0
            || self.actions_pending.load(Ordering::SeqCst) > 0
            || !self.ready.is_empty()
    }

    /// Stops the thread after it carried out the actions it was given.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ImapSourceConfig {
    /// What reading the mailbox needs from this machine, each problem with its key.
    pub fn start_problems(&self) -> Vec<(&'static str, String)> {
        self.password()
            .err()
            .map(|e| ("password_env", e))
            .into_iter()
            .collect()
    }

    fn password(&self) -> Result<String, String> {
        std::env::var(&self.password_env).map_err(|_| {
            format!(
                "source `{}`: the environment variable {} (the IMAP password) is not set",
                self.name, self.password_env
            )
        })
    }
}

struct Worker {
    cfg: ImapSourceConfig,
    password: String,
    ready: Sender<Item>,
    wake: Sender<usize>,
    idx: usize,
    done: Receiver<Done>,
    stop: Arc<AtomicBool>,
    passes: Arc<AtomicUsize>,
    actions_pending: Arc<AtomicUsize>,
    /// Origins handed to the runner and not finished yet.
    in_flight: HashSet<String>,
    /// Failed filings per origin.
    attempts: HashMap<String, u32>,
    /// Committed items whose server-side action is still to do.
    to_finish: Vec<String>,
}

impl Worker {
    fn run(&mut self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.session() {
                Ok(()) => return,
                Err(e) => {
                    // Items handed out stay in flight: the runner still finishes them, and the
                    // actions wait for the next connection.
                    tracing::warn!(source = %self.cfg.name, "IMAP: {e:#}; connecting again in {}s", backoff.as_secs());
                }
            }
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until {
                self.collect_done();
                if self.stop.load(Ordering::SeqCst)
                    && self.in_flight.is_empty()
                    && self.to_finish.is_empty()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn connect(&self) -> Result<Session, String> {
        let port = self.cfg.port.unwrap_or(match self.cfg.tls {
            TlsMode::Implicit => 993,
            _ => 143,
        });
        let mode = match self.cfg.tls {
            TlsMode::Implicit => imap::ConnectionMode::Tls,
            TlsMode::Starttls => imap::ConnectionMode::StartTls,
            TlsMode::Plain => imap::ConnectionMode::Plaintext,
        };
        let client = imap::ClientBuilder::new(self.cfg.host.as_str(), port)
            .mode(mode)
            .tls_kind(imap::TlsKind::Rust)
            .connect()
            .map_err(|e| format!("cannot connect to {}:{port}: {e}", self.cfg.host))?;
        client
            .login(&self.cfg.username, &self.password)
            .map_err(|(e, _)| format!("login as {} refused: {e}", self.cfg.username))
    }

    /// One connection's life: passes over the folders until stopped or the link fails.
    fn session(&mut self) -> Result<(), String> {
        let mut session = self.connect()?;
        let idle = session
            .capabilities()
            .map(|c| c.has_str("IDLE"))
            .unwrap_or(false)
            && self.cfg.idle;
        let result = self.serve(&mut session, idle);
        let _ = session.logout();
        result
    }

    fn serve(&mut self, session: &mut Session, idle: bool) -> Result<(), String> {
        loop {
            self.collect_done();
            self.apply_actions(session)?;
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && self.in_flight.is_empty() && self.to_finish.is_empty() {
                return Ok(());
            }
            if !stopping {
                for folder in self.cfg.folders.clone() {
                    self.fetch_new(session, &folder)?;
                }
                self.passes.fetch_add(1, Ordering::SeqCst);
            }
            if idle && self.cfg.folders.len() == 1 && self.to_finish.is_empty() && !stopping {
                session
                    .select(&self.cfg.folders[0])
                    .map_err(|e| format!("select {}: {e}", self.cfg.folders[0]))?;
                let mut handle = session.idle();
                // Return after the slice (no keepalive re-IDLE): finished items and the stop
                // flag are looked at between slices.
                handle.timeout(IDLE_SLICE).keepalive(false);
                handle
                    .wait_while(imap::extensions::idle::stop_on_any)
                    .map_err(|e| format!("IDLE: {e}"))?;
            } else {
                let slice = if stopping || !self.to_finish.is_empty() || idle {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(self.cfg.poll_secs.max(1))
                };
                let until = std::time::Instant::now() + slice;
                while std::time::Instant::now() < until
                    && self.done.is_empty()
                    && !self.stop.load(Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn collect_done(&mut self) {
        for d in self.done.try_iter() {
            self.in_flight.remove(&d.origin);
            if d.ok {
                self.attempts.remove(&d.origin);
                self.to_finish.push(d.origin);
            } else {
                let n = self.attempts.entry(d.origin.clone()).or_default();
                *n += 1;
                if *n == MAX_ATTEMPTS {
                    tracing::error!(source = %self.cfg.name, "message {} could not be filed after {MAX_ATTEMPTS} attempts; left on the server", d.origin);
                }
            }
        }
    }

    /// Moves or flags the messages whose tickets are committed.
    fn apply_actions(&mut self, session: &mut Session) -> Result<(), String> {
        while let Some(origin) = self.to_finish.first().cloned() {
            let Some((folder, validity, uid)) = parse_origin(&self.cfg.name, &origin) else {
                self.to_finish.remove(0);
                self.actions_pending.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            let mailbox = session
                .select(&folder)
                .map_err(|e| format!("select {folder}: {e}"))?;
            // Another UIDVALIDITY: the UID names another message now; it will be seen (and
            // recognised as filed) again.
            if mailbox.uid_validity == Some(validity) {
                let r = match (&self.cfg.move_to, &self.cfg.flag) {
                    (Some(to), _) => move_message(session, uid, to),
                    (None, Some(flag)) => session
                        .uid_store(uid.to_string(), format!("+FLAGS ({flag})"))
                        .map(|_| ())
                        .map_err(|e| format!("flag: {e}")),
                    (None, None) => session
                        .uid_store(uid.to_string(), "+FLAGS (\\Seen)")
                        .map(|_| ())
                        .map_err(|e| format!("flag: {e}")),
                };
                r.map_err(|e| format!("message {origin}: {e}"))?;
            }
            self.to_finish.remove(0);
            self.actions_pending.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Hands the folder's unprocessed messages to the runner.
    fn fetch_new(&mut self, session: &mut Session, folder: &str) -> Result<(), String> {
        let mailbox = session
            .select(folder)
            .map_err(|e| format!("select {folder}: {e}"))?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        let query = match (&self.cfg.move_to, &self.cfg.flag) {
            (Some(_), _) => "ALL".to_string(),
            (None, Some(flag)) => unprocessed_query(flag),
            (None, None) => "UNSEEN".to_string(),
        };
        let mut uids: Vec<u32> = session
            .uid_search(&query)
            .map_err(|e| format!("search {folder}: {e}"))?
            .into_iter()
            .collect();
        uids.sort_unstable();
        for uid in uids {
            let origin = format!("{}/{folder}/{validity}/{uid}", self.cfg.name);
            if self.in_flight.contains(&origin)
                || self.to_finish.contains(&origin)
                || self
                    .attempts
                    .get(&origin)
                    .is_some_and(|&n| n >= MAX_ATTEMPTS)
            {
                continue;
            }
            let fetches = session
                .uid_fetch(uid.to_string(), "(UID INTERNALDATE BODY.PEEK[])")
                .map_err(|e| format!("fetch {origin}: {e}"))?;
            let Some(fetch) = fetches.iter().find(|f| f.uid == Some(uid)) else {
                continue; // expunged meanwhile
            };
            let bytes = fetch.body().unwrap_or_default().to_vec();
            let received_at = fetch.internal_date().map(|d| {
                d.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
            let item = Item {
                source: self.cfg.name.clone(),
                origin: origin.clone(),
                channel: Some(self.cfg.channel),
                name: format!("{}-{uid}.eml", self.cfg.name),
                bytes: Arc::new(bytes),
                mtime_ns: None,
                received_at,
                sender: Default::default(),
                attention: Vec::new(),
            };
            self.in_flight.insert(origin);
            if self.ready.send(item).is_err() {
                return Ok(());
            }
            let _ = self.wake.send(self.idx);
        }
        Ok(())
    }
}

/// The search for messages not yet done, by the flag that marks them done.
fn unprocessed_query(flag: &str) -> String {
    match flag.to_ascii_lowercase().as_str() {
        "\\seen" => "UNSEEN".into(),
        "\\flagged" => "UNFLAGGED".into(),
        "\\answered" => "UNANSWERED".into(),
        _ => format!("UNKEYWORD {flag}"),
    }
}

fn move_message(session: &mut Session, uid: u32, to: &str) -> Result<(), String> {
    match session.uid_mv(uid.to_string(), to) {
        Ok(()) => Ok(()),
        Err(imap::Error::No(_)) | Err(imap::Error::Bad(_)) => {
            // A server without MOVE (or a missing folder): create it, copy, delete.
            let _ = session.create(to);
            session
                .uid_copy(uid.to_string(), to)
                .map_err(|e| format!("copy to {to}: {e}"))?;
            session
                .uid_store(uid.to_string(), "+FLAGS (\\Deleted)")
                .map_err(|e| format!("delete: {e}"))?;
            session
                .uid_expunge(uid.to_string())
                .map(|_| ())
                .map_err(|e| format!("expunge: {e}"))
        }
        Err(e) => Err(format!("move to {to}: {e}")),
    }
}

fn parse_origin(account: &str, origin: &str) -> Option<(String, u32, u32)> {
    let rest = origin.strip_prefix(account)?.strip_prefix('/')?;
    let (rest, uid) = rest.rsplit_once('/')?;
    let (folder, validity) = rest.rsplit_once('/')?;
    Some((
        folder.to_string(),
        validity.parse().ok()?,
        uid.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_account_folder_validity_and_uid() {
        assert_eq!(
            parse_origin("urp", "urp/INBOX/Archivio/17/42"),
            Some(("INBOX/Archivio".into(), 17, 42))
        );
        assert_eq!(parse_origin("urp", "pec/INBOX/1/2"), None);
        assert_eq!(
            unprocessed_query("$Protocollato"),
            "UNKEYWORD $Protocollato"
        );
        assert_eq!(unprocessed_query("\\Seen"), "UNSEEN");
    }
}
