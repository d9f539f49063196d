//! Worker processes: the bytes citizens send (messages, signed containers, PDFs, images, and
//! their OCR) are read in child processes of this same binary (`sportello __item-reader`, a hidden
//! sub-command), never in the runner.
//!
//! A thread cannot contain a stack overflow, an `abort`, a segfault in leptonica or
//! libtesseract, or the kernel's out-of-memory kill; a process can. So the runner sends each
//! item to a worker, and a worker that dies or hangs costs its item only: the item is filed
//! flagged with a reason a clerk understands, the worker is replaced, and the run goes on.
//!
//! Workers are reused for many items (OCR engines stay loaded). Each runs under limits: data
//! memory (`RLIMIT_DATA`), CPU seconds per item (`RLIMIT_CPU`, raised before each item), no
//! core files, killed with the runner (`PR_SET_PDEATHSIG`), its own process group (a Ctrl-C
//! at the terminal stops the runner, which finishes what its workers are doing), and a
//! wall-clock limit measured from the worker's last sign of progress.
//!
//! The protocol is a sequence of frames on the worker's stdin and stdout: the 4 bytes
//! `SPW` + protocol version, a little-endian `u32` header length and `u64` payload length,
//! a JSON header, then the payload (the item's bytes, sent as they are). Anything else from
//! a worker is an error for its item, never a panic in the runner. Library chatter on a
//! worker's stdout cannot corrupt the frames: fd 1 is pointed at stderr before anything runs.

use crate::config::{IsolationConfig, StageConfig};
use crate::extract::FileType;
use crate::pipeline::Item;
use crate::store::NewTicket;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bumped whenever a frame or message changes meaning; runner and worker must agree.
pub const PROTOCOL_VERSION: u8 = 1;
const MAGIC: [u8; 3] = *b"SPW";
/// The hidden sub-command that makes this binary a worker.
pub const SUBCOMMAND: &str = "__item-reader";
/// A header larger than this is garbage, not a ticket (a ticket's text is a few MB at most).
const MAX_HEADER: u32 = 512 << 20;
/// Largest item sent to a worker.
const MAX_PAYLOAD: u64 = 4 << 30;
/// Lines of a worker's stderr kept to explain its death.
const STDERR_TAIL: usize = 40;
/// However steady its progress, one item may not hold a worker longer than this.
const MAX_ITEM_TIME: Duration = Duration::from_secs(3600);

/// What the runner asks of a worker.
#[derive(Debug, Deserialize)]
enum Request {
    /// Run the parsing stages on an item; its bytes are the frame's payload.
    Parse(Box<ParseJob>),
    /// One page of a document as a PNG (the web app's viewer); the document is the payload.
    PagePng(PagePngJob),
}

#[derive(Debug, Serialize, Deserialize)]
struct PagePngJob {
    file_type: FileType,
    page: u32,
    width: u32,
}

/// An item and the ticket built for it so far, with the stages to run on it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ParseJob {
    pub item: Item,
    pub file_type: FileType,
    pub ticket: NewTicket,
    /// Only extract and OCR stages: the ones that read the item's bytes.
    pub stages: Vec<StageConfig>,
    /// Where the blob store is: attachments, signed contents and searchable PDFs are kept
    /// by the worker, content-addressed, as the runner would.
    pub data_dir: PathBuf,
}

/// What a worker answers.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// First frame of every worker.
    Hello {
        protocol: u8,
        pid: u32,
        /// What libgomp says its thread limit is (Tesseract's OpenMP teams), if loaded.
        #[serde(default)]
        omp_thread_limit: Option<i32>,
    },
    /// A sign of life, with what it is doing now (`extract`, `ocr`): resets the time limit.
    Progress { step: String },
    Parsed {
        ticket: Box<NewTicket>,
        /// A parser thread was abandoned on a time limit and may still be running: the
        /// worker should be replaced rather than reused.
        retire: bool,
    },
    /// The page as a PNG (the payload), or why not.
    PagePng {
        result: Result<(), crate::ocr::pages::PageImageError>,
    },
    /// The request could not be carried out (a panic caught in the worker, a bad request).
    Failed { error: String },
}

/// Why a worker gave no ticket back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerError {
    /// It died: `why` says how ("stack overflow", "segmentation fault", …); `step` is what
    /// it was doing.
    #[error("{step} crashed ({why})")]
    Crashed { step: String, why: String },
    /// No progress for `secs` seconds: killed.
    #[error("{step} gave up after {secs:.0} s")]
    TimedOut { step: String, secs: f64 },
    /// It answered, but with an error (a caught panic).
    #[error("{step} failed: {error}")]
    Failed { step: String, error: String },
    /// No worker could be started or spoken to.
    #[error("no worker process: {0}")]
    Unavailable(String),
}

// ---------------------------------------------------------------------------------------
// Frames

fn write_frame(w: &mut impl Write, header: &impl Serialize, payload: &[u8]) -> io::Result<()> {
    let header = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut head = Vec::with_capacity(16 + header.len());
    head.extend_from_slice(&MAGIC);
    head.push(PROTOCOL_VERSION);
    head.extend_from_slice(&(header.len() as u32).to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    head.extend_from_slice(&header);
    if payload.len() <= 64 << 10 {
        // One write: the reader wakes once per frame.
        head.extend_from_slice(payload);
        w.write_all(&head)?;
    } else {
        w.write_all(&head)?;
        w.write_all(payload)?;
    }
    w.flush()
}

/// One frame, or `None` at a clean end of stream before a frame.
fn read_frame(r: &mut impl Read) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (header_len, payload_len) = frame_sizes(&head)?;
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)?;
    let mut payload = vec![0u8; payload_len];
    r.read_exact(&mut payload)?;
    Ok(Some((header, payload)))
}

/// The header and payload lengths a frame's first 16 bytes announce, checked.
fn frame_sizes(head: &[u8; 16]) -> io::Result<(usize, usize)> {
    if head[..3] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a worker frame",
        ));
    }
    if head[3] != PROTOCOL_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "protocol version {} (this binary speaks {PROTOCOL_VERSION})",
                head[3]
            ),
        ));
    }
    let header_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let payload_len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER || payload_len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame too large ({header_len} + {payload_len} bytes)"),
        ));
    }
    Ok((header_len as usize, payload_len as usize))
}

/// Frames from a worker's stdout, read by the thread waiting for them with `poll`, so a
/// frame costs that thread one wake-up and no other thread any.
struct FrameReader {
    out: std::process::ChildStdout,
    /// What was read and not yet handed out.
    buf: Vec<u8>,
    scratch: Box<[u8]>,
}

/// Why no frame came.
enum ReadError {
    TimedOut,
    Closed(Option<io::Error>),
}

impl FrameReader {
    /// The next frame's header and payload by `deadline`.
    fn next(&mut self, deadline: Instant) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
        use std::os::fd::AsRawFd;
        loop {
            if self.buf.len() >= 16 {
                let head: [u8; 16] = self.buf[..16].try_into().expect("16 bytes");
                let (h, p) = frame_sizes(&head).map_err(|e| ReadError::Closed(Some(e)))?;
                if self.buf.len() >= 16 + h + p {
                    let header = self.buf[16..16 + h].to_vec();
                    let payload = self.buf[16 + h..16 + h + p].to_vec();
                    self.buf.drain(..16 + h + p);
                    return Ok((header, payload));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::TimedOut);
            }
            let mut pfd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd on the stack, for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ReadError::Closed(Some(e)));
            }
            if ready == 0 {
                continue;
            }
            match self.out.read(&mut self.scratch[..]) {
                Ok(0) => return Err(ReadError::Closed(None)),
                Ok(n) => self.buf.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Closed(Some(e))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The runner's side

/// How workers are started and limited.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_mb: u64,
    pub cpu_secs: u64,
    /// Without a sign of progress for this long, a worker is killed.
    pub idle: Duration,
}

impl Limits {
    pub fn new(cfg: &IsolationConfig, stages: &[StageConfig]) -> Limits {
        // The stages' own limits fire first and say more; this one is for what hangs
        // outside them.
        let longest_stage_limit = stages
            .iter()
            .map(|s| match s {
                StageConfig::Extract(e) => e.timeout_secs,
                StageConfig::Ocr(o) => o.page_timeout_secs,
                StageConfig::Classify(_) => 0.0,
            })
            .fold(0.0, f64::max);
        Limits {
            memory_mb: cfg.memory_mb,
            cpu_secs: cfg.cpu_secs,
            idle: Duration::from_secs_f64(longest_stage_limit.max(1.0) + 10.0),
        }
    }
}

/// The runner's worker processes: started on demand, one per item in progress, reused.
pub struct Workers {
    exe: PathBuf,
    limits: Limits,
    idle: Mutex<Vec<Process>>,
}

impl Workers {
    /// Workers run this very binary: `/proc/self/exe`, which still runs it after an upgrade
    /// replaced the file (so runner and workers always speak the same protocol), unless
    /// `SPORTELLO_WORKER_EXE` names another (a library user's program, tests).
    pub fn new(limits: Limits) -> Result<Workers, std::io::Error> {
        let own = Path::new("/proc/self/exe");
        let exe = match std::env::var_os("SPORTELLO_WORKER_EXE") {
            Some(p) => PathBuf::from(p),
            None if own.exists() => own.to_path_buf(),
            None => std::env::current_exe()?,
        };
        Ok(Workers {
            exe,
            limits,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `job`'s stages on `bytes` in a worker; returns the ticket they built.
    pub fn parse(&self, job: &ParseJob, bytes: &[u8]) -> Result<NewTicket, WorkerError> {
        let mut process = self.take()?;
        let result = process.parse(job, bytes, &self.limits);
        match &result {
            Ok((_, false)) => self.give_back(process),
            // Crashed, killed, or asked to be replaced: it is not reused.
            _ => process.end(),
        }
        result.map(|(t, _)| t)
    }

    /// Page `page` of a document as a PNG, rendered in a worker.
    pub fn page_png(
        &self,
        bytes: &[u8],
        file_type: FileType,
        page: u32,
        width: u32,
    ) -> Result<Result<Vec<u8>, crate::ocr::pages::PageImageError>, WorkerError> {
        let mut process = self.take()?;
        let job = PagePngJob {
            file_type,
            page,
            width,
        };
        let result = process.page_png(&job, bytes, &self.limits);
        match &result {
            Ok(_) => self.give_back(process),
            Err(_) => process.end(),
        }
        result
    }

    /// An idle worker still alive, or a new one: a worker that died while idle (killed from
    /// outside) must not be handed the next item, whose reading would then be blamed.
    fn take(&self) -> Result<Process, WorkerError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut p) = idle else {
                return Process::start(&self.exe, &self.limits);
            };
            match p.child.try_wait() {
                Ok(None) => return Ok(p),
                _ => p.end(),
            }
        }
    }

    fn give_back(&self, p: Process) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// libgomp's thread limit in a worker, as the worker reports it (for tests: it proves
    /// the limit took effect, which setting the variable at run time does not).
    pub fn omp_thread_limit(&self) -> Result<Option<i32>, WorkerError> {
        let p = self.take()?;
        let limit = p.omp_thread_limit;
        self.give_back(p);
        Ok(limit)
    }

    /// Worker processes alive and idle (for tests).
    pub fn idle_pids(&self) -> Vec<u32> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| p.child.id())
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for p in self
            .idle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            p.end();
        }
    }
}

struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: FrameReader,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    omp_thread_limit: Option<i32>,
}

impl Process {
    fn start(exe: &Path, limits: &Limits) -> Result<Process, WorkerError> {
        let mut cmd = Command::new(exe);
        cmd.arg(SUBCOMMAND)
            .env("SPORTELLO_WORKER_PARENT", std::process::id().to_string())
            .env("SPORTELLO_WORKER_MEMORY_MB", limits.memory_mb.to_string())
            .env("SPORTELLO_WORKER_CPU_SECS", limits.cpu_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // libgomp reads its limit when it loads, before `main`: only the environment a
        // process starts with can keep Tesseract's OpenMP teams from fighting the workers.
        if std::env::var_os("OMP_THREAD_LIMIT").is_none() {
            cmd.env("OMP_THREAD_LIMIT", "1");
        }
        {
            use std::os::unix::process::CommandExt;
            // Not in the runner's process group: a Ctrl-C meant for the runner (which then
            // finishes the items in hand) must not kill the workers doing them.
            cmd.process_group(0).arg0("sportello");
        }
        let mut child = spawn(cmd).map_err(|e| {
            WorkerError::Unavailable(format!("cannot start {}: {e}", exe.display()))
        })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Unavailable("no pipes to the worker".into()));
        };
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr.clone();
        let stderr_thread = std::thread::Builder::new()
            .name("worker-err".into())
            .spawn(move || keep_tail(stderr_pipe, &tail));
        let Ok(stderr_thread) = stderr_thread else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Unavailable(
                "cannot start a reader thread".into(),
            ));
        };
        let mut p = Process {
            child,
            stdin,
            frames: FrameReader {
                out: stdout,
                buf: Vec::new(),
                scratch: vec![0u8; 64 << 10].into_boxed_slice(),
            },
            stderr,
            stderr_thread: Some(stderr_thread),
            omp_thread_limit: None,
        };
        match p.next_reply(Duration::from_secs(30), "the worker") {
            Ok(Reply::Hello {
                protocol,
                omp_thread_limit,
                ..
            }) if protocol == PROTOCOL_VERSION => {
                p.omp_thread_limit = omp_thread_limit;
                Ok(p)
            }
            Ok(other) => {
                p.end();
                Err(WorkerError::Unavailable(format!(
                    "the worker did not greet as expected: {other:?}"
                )))
            }
            Err(e) => {
                p.end();
                Err(WorkerError::Unavailable(e.to_string()))
            }
        }
    }

    fn parse(
        &mut self,
        job: &ParseJob,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<(NewTicket, bool), WorkerError> {
        let mut step = reader_name(job.file_type).to_string();
        let sent = match self.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &RequestRef::Parse(borrow_job(job)), bytes),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = sent {
            // A worker that died while idle (killed from outside) tells why on its way out.
            return Err(self.death(&step, Some(e)));
        }
        let started = Instant::now();
        loop {
            let budget = limits
                .idle
                .min(MAX_ITEM_TIME.saturating_sub(started.elapsed()));
            match self.next_reply(budget, &step)? {
                Reply::Progress { step: s } => step = step_name(&s, job.file_type),
                Reply::Parsed { ticket, retire } => return Ok((*ticket, retire)),
                Reply::Failed { error } => return Err(WorkerError::Failed { step, error }),
                Reply::Hello { .. } | Reply::PagePng { .. } => {
                    return Err(WorkerError::Crashed {
                        step,
                        why: "it answered out of turn".into(),
                    })
                }
            }
        }
    }

    fn page_png(
        &mut self,
        job: &PagePngJob,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<Result<Vec<u8>, crate::ocr::pages::PageImageError>, WorkerError> {
        let step = reader_name(job.file_type);
        let sent = match self.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &RequestRef::PagePng(job), bytes),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = sent {
            return Err(self.death(step, Some(e)));
        }
        loop {
            match self.next_reply_with_payload(limits.idle, step)? {
                (Reply::Progress { .. }, _) => {}
                (Reply::PagePng { result }, png) => return Ok(result.map(|()| png)),
                (Reply::Failed { error }, _) => {
                    return Err(WorkerError::Failed {
                        step: step.into(),
                        error,
                    })
                }
                (other, _) => {
                    return Err(WorkerError::Crashed {
                        step: step.into(),
                        why: format!("it answered out of turn ({other:?})"),
                    })
                }
            }
        }
    }

    /// The next reply within `wait`; a worker that says nothing in time is killed.
    fn next_reply(&mut self, wait: Duration, step: &str) -> Result<Reply, WorkerError> {
        self.next_reply_with_payload(wait, step).map(|(r, _)| r)
    }

    fn next_reply_with_payload(
        &mut self,
        wait: Duration,
        step: &str,
    ) -> Result<(Reply, Vec<u8>), WorkerError> {
        match self.frames.next(Instant::now() + wait) {
            Ok((header, payload)) => serde_json::from_slice::<Reply>(&header)
                .map(|r| (r, payload))
                .map_err(|e| {
                    // Whatever it is doing, it cannot be trusted to go on.
                    let _ = self.child.kill();
                    WorkerError::Crashed {
                        step: step.to_string(),
                        why: format!("it answered garbage: {e}"),
                    }
                }),
            Err(ReadError::Closed(e)) => Err(self.death(step, e)),
            Err(ReadError::TimedOut) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(WorkerError::TimedOut {
                    step: step.to_string(),
                    secs: wait.as_secs_f64(),
                })
            }
        }
    }

    /// How the worker died, from its exit status and its last words on stderr.
    fn death(&mut self, step: &str, io: Option<io::Error>) -> WorkerError {
        let status = wait_briefly(&mut self.child);
        if let Some(t) = self.stderr_thread.take() {
            // The pipe closes with the process; its last lines are then all read.
            let _ = t.join();
        }
        let tail: Vec<String> = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let why = describe_death(status, &tail, io);
        tracing::warn!("worker {} died: {why}", self.child.id());
        for line in &tail {
            tracing::debug!("worker said: {line}");
        }
        WorkerError::Crashed {
            step: step.to_string(),
            why,
        }
    }

    fn end(mut self) {
        self.stdin.take();
        // An idle worker exits at the end of its input; one still busy is killed.
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }
}

/// [`Request`] as the runner writes it, borrowing the job; serialized exactly like one.
#[derive(Serialize)]
enum RequestRef<'a> {
    Parse(ParseJobRef<'a>),
    PagePng(&'a PagePngJob),
}

/// Every field of a job but the bytes, which travel as the payload.
fn borrow_job(job: &ParseJob) -> ParseJobRef<'_> {
    ParseJobRef {
        item: &job.item,
        file_type: job.file_type,
        ticket: &job.ticket,
        stages: &job.stages,
        data_dir: &job.data_dir,
    }
}

/// A borrowed [`ParseJob`], serialized exactly like one.
#[derive(Serialize)]
struct ParseJobRef<'a> {
    item: &'a Item,
    file_type: FileType,
    ticket: &'a NewTicket,
    stages: &'a [StageConfig],
    data_dir: &'a Path,
}

fn keep_tail(pipe: impl Read, tail: &Mutex<VecDeque<String>>) {
    use std::io::BufRead;
    let mut reader = io::BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line[..line.len().min(2000)])
                    .trim_end()
                    .to_string();
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(text);
            }
        }
    }
}

fn wait_briefly(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            // Its output ended but it lives on: it is no use any more.
            Ok(None) => {
                let _ = child.kill();
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

/// "stack overflow", "segmentation fault", "ran out of memory", … for a clerk to read.
fn describe_death(
    status: Option<std::process::ExitStatus>,
    stderr: &[String],
    io: Option<io::Error>,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let said = |needle: &str| stderr.iter().any(|l| l.contains(needle));
    if said("has overflowed its stack") {
        return "stack overflow".into();
    }
    if said("memory allocation of") || said("out of memory") || said("bad_alloc") {
        return "it ran out of memory".into();
    }
    if let Some(e) = io
        .as_ref()
        .filter(|e| e.kind() == io::ErrorKind::InvalidData)
    {
        return format!("it answered garbage: {e}");
    }
    let Some(status) = status else {
        return io.map_or("it stopped answering".into(), |e| e.to_string());
    };
    if let Some(sig) = status.signal() {
        return match sig {
            libc::SIGSEGV => "segmentation fault".into(),
            libc::SIGBUS => "bus error".into(),
            libc::SIGFPE => "arithmetic fault".into(),
            libc::SIGILL => "illegal instruction".into(),
            libc::SIGABRT => "aborted".into(),
            libc::SIGXCPU => "it used up its CPU time".into(),
            // The kernel's out-of-memory killer, or someone with `kill -9`.
            libc::SIGKILL => "killed, perhaps for its memory".into(),
            other => format!("killed by signal {other}"),
        };
    }
    if said("panicked") {
        return "a bug in the reader (panic)".into();
    }
    match (status.code(), io) {
        (Some(code), Some(e)) => format!("exit status {code}; {e}"),
        (Some(code), None) => format!("exit status {code}"),
        (None, _) => "it stopped".into(),
    }
}

/// What reads a file of this type, as a clerk would name it.
pub fn reader_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Pdf => "the PDF reader",
        FileType::Email => "the email reader",
        FileType::Tiff | FileType::Jpeg | FileType::Png => "the image reader",
        FileType::Text => "the text reader",
        FileType::Audio => "the audio reader",
        FileType::Unknown => "the file reader",
    }
}

/// What a worker said it is doing, as a clerk would name it.
fn step_name(step: &str, file_type: FileType) -> String {
    match step {
        "ocr" => "the OCR engine".into(),
        "extract" => reader_name(file_type).into(),
        named if named.starts_with("the ") => named.into(),
        _ => reader_name(file_type).into(),
    }
}

/// Starts processes from one thread that lives as long as the program: a worker is told to
/// die with the thread that started it (`PR_SET_PDEATHSIG`), and the threads that ask for
/// workers (a web request's, an ingest's) come and go.
fn spawn(cmd: Command) -> io::Result<Child> {
    type Ask = (Command, mpsc::SyncSender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Ask>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Ask>();
        let started = std::thread::Builder::new()
            .name("worker-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            tracing::error!("cannot start the worker spawner: {e}");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the worker spawner stopped"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the worker spawner stopped"))?
}

// ---------------------------------------------------------------------------------------
// The worker's side

/// Where a worker writes its frames (the real stdout); `None` in the runner.
static OUT: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// The step the runner was last told of, and when.
static TOLD: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Tells the runner the worker is alive and now at `step`; nothing outside a worker. Only a
/// new step, or a second since the last word, is sent: each frame wakes the runner.
pub fn progress(step: &str) {
    let Some(out) = OUT.get() else {
        return;
    };
    let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
    if told
        .as_ref()
        .is_some_and(|(s, at)| s == step && at.elapsed() < Duration::from_secs(1))
    {
        return;
    }
    *told = Some((step.to_string(), Instant::now()));
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = write_frame(
        &mut *out,
        &Reply::Progress {
            step: step.to_string(),
        },
        &[],
    );
}

/// Set when a parser thread was abandoned on a time limit: the worker then retires.
static ABANDONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is an item reader (`sportello __item-reader`).
pub fn in_worker() -> bool {
    OUT.get().is_some()
}

/// Called where a thread is left running past its time limit.
pub fn note_abandoned_thread() {
    ABANDONED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `sportello __item-reader`: serves requests on stdin until it ends.
pub fn main() -> std::process::ExitCode {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on this process's own descriptors and limits, made before
    // any other thread exists. `dup` gives a new descriptor that only `File` owns.
    let out = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return std::process::ExitCode::FAILURE;
        }
        // Die with the runner, and check it did not die before this line.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let parent: Option<i32> = std::env::var("SPORTELLO_WORKER_PARENT")
            .ok()
            .and_then(|p| p.parse().ok());
        if parent.is_some_and(|p| libc::getppid() != p) {
            return std::process::ExitCode::FAILURE;
        }
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        if let Some(mb) = std::env::var("SPORTELLO_WORKER_MEMORY_MB")
            .ok()
            .and_then(|m| m.parse::<u64>().ok())
        {
            let bytes = mb.saturating_mul(1 << 20);
            let data = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_DATA, &data);
        }
        std::fs::File::from_raw_fd(fd)
    };
    let _ = OUT.set(Mutex::new(out));
    let send = |reply: &Reply| -> io::Result<()> {
        let out = OUT.get().expect("set above");
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *out, reply, &[])
    };
    if send(&Reply::Hello {
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        omp_thread_limit: crate::ocr::omp_thread_limit(),
    })
    .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    let cpu_per_item = std::env::var("SPORTELLO_WORKER_CPU_SECS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(600);
    let mut stdin = io::stdin().lock();
    loop {
        let (header, payload) = match read_frame(&mut stdin) {
            Ok(Some(f)) => f,
            Ok(None) => return std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sportello worker: bad request frame: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let reply = match serde_json::from_slice::<Request>(&header) {
            Ok(Request::Parse(job)) => {
                allow_cpu_seconds(cpu_per_item);
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_parse(*job, payload)
                })) {
                    Ok(ticket) => Reply::Parsed {
                        ticket: Box::new(ticket),
                        retire: ABANDONED.load(std::sync::atomic::Ordering::SeqCst),
                    },
                    Err(panic) => Reply::Failed {
                        error: format!(
                            "a bug in the reader (panic: {})",
                            crate::parse::panic_text(&panic)
                        ),
                    },
                }
            }
            Ok(Request::PagePng(job)) => {
                // Each page its own allowance, as each item: a viewer's worker renders page
                // after page, and would otherwise be killed once their sum passed one item's.
                allow_cpu_seconds(cpu_per_item);
                let bytes = Arc::new(payload);
                let rendered = std::panic::catch_unwind(|| {
                    crate::ocr::pages::page_png(&bytes, job.file_type, job.page, job.width)
                });
                let (result, png) = match rendered {
                    Ok(Ok(png)) => (Ok(()), png),
                    Ok(Err(e)) => (Err(e), Vec::new()),
                    Err(panic) => (
                        Err(crate::ocr::pages::PageImageError::Failed(format!(
                            "a bug in the reader (panic: {})",
                            crate::parse::panic_text(&panic)
                        ))),
                        Vec::new(),
                    ),
                };
                let out = OUT.get().expect("set above");
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                if write_frame(&mut *out, &Reply::PagePng { result }, &png).is_err() {
                    return std::process::ExitCode::FAILURE;
                }
                continue;
            }
            Err(e) => Reply::Failed {
                error: format!("request not understood: {e}"),
            },
        };
        if send(&reply).is_err() {
            return std::process::ExitCode::FAILURE;
        }
    }
}

/// Lets the coming item use `secs` more CPU seconds than the worker used so far; past it
/// the kernel sends SIGXCPU, which ends the worker.
fn allow_cpu_seconds(secs: u64) {
    // SAFETY: getrusage and setrlimit on this process, with valid pointers to locals.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return;
        }
        let used = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as u64 + 1;
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CPU, &mut lim) != 0 {
            return;
        }
        lim.rlim_cur = (used + secs).min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_CPU, &lim);
    }
}

/// Fault injection for the tests of crash handling: `SPORTELLO_WORKER_FAULT=KIND:TEXT,…`
/// makes a worker fail in the way KIND says on any item whose name contains TEXT. Real inputs that
/// crash a parser are bugs to fix, so the tests cannot rely on having one.
fn injected_fault(name: &str) {
    let Ok(specs) = std::env::var("SPORTELLO_WORKER_FAULT") else {
        return;
    };
    let kind = specs
        .split(',')
        .filter_map(|spec| spec.split_once(':'))
        .find(|(_, text)| !text.is_empty() && name.contains(text))
        .map(|(kind, _)| kind);
    match kind.unwrap_or_default() {
        "stack-overflow" => {
            // A real overflow, on a thread as extraction runs, caught by Rust's guard page.
            #[allow(unconditional_recursion)]
            fn deeper(n: u64, pad: &mut [u8; 4096]) -> u64 {
                pad[(n % 4096) as usize] = n as u8;
                let mut next = [0u8; 4096];
                deeper(n + 1, &mut next) + u64::from(pad[0])
            }
            let _ = std::thread::spawn(|| deeper(0, &mut [0u8; 4096])).join();
        }
        "abort" => std::process::abort(),
        // SAFETY: the default action (not Rust's stack-overflow handler, which would return
        // from a raised signal) and then the signal: the process ends as a segfault does.
        "segfault" => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        },
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "garbage" => {
            if let Some(out) = OUT.get() {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = out.write_all(b"SPW\x01\xff\xff\xff\x7f this is not a frame");
                let _ = out.flush();
            }
            std::process::exit(0);
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
            }
        }
        _ => {}
    }
}

fn run_parse(job: ParseJob, payload: Vec<u8>) -> NewTicket {
    // The runner starts each item at its reader's name (see `Process::parse`).
    *TOLD.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((reader_name(job.file_type).to_string(), Instant::now()));
    injected_fault(&job.item.name);
    let blobs = crate::store::blobs::BlobStore::new(&job.data_dir);
    let mut item = job.item;
    item.bytes = Arc::new(payload);
    let mut work = crate::pipeline::Work {
        item,
        file_type: job.file_type,
        ticket: job.ticket,
    };
    let stages: Vec<Box<dyn crate::pipeline::Stage>> = job
        .stages
        .iter()
        .filter_map(crate::pipeline::parse_stage)
        .collect();
    crate::pipeline::run_stages_here(&stages, &mut work, &blobs);
    work.ticket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &Reply::Progress { step: "ocr".into() },
            b"payload",
        )
        .unwrap();
        let (h, p) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        assert!(matches!(
            serde_json::from_slice::<Reply>(&h).unwrap(),
            Reply::Progress { step } if step == "ocr"
        ));
        assert_eq!(p, b"payload");
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
        // Cut short, wrong magic, wrong version, absurd sizes: errors, no panic.
        assert!(read_frame(&mut &buf[..buf.len() - 1]).is_err());
        let mut wrong = buf.clone();
        wrong[0] = b'X';
        assert!(read_frame(&mut wrong.as_slice()).is_err());
        let mut version = buf.clone();
        version[3] = PROTOCOL_VERSION + 1;
        let e = read_frame(&mut version.as_slice()).unwrap_err();
        assert!(e.to_string().contains("protocol version"), "{e}");
        let mut huge = buf.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_frame(&mut huge.as_slice()).is_err());
        // Random bytes never panic.
        let mut state = 7u64;
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let mut junk = Vec::with_capacity(len);
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                junk.push((state >> 33) as u8);
            }
            if junk.len() > 3 && state.is_multiple_of(2) {
                junk[..4].copy_from_slice(b"SPW\x01");
            }
            let _ = read_frame(&mut junk.as_slice());
        }
    }

    #[test]
    fn deaths_are_told_in_words() {
        use std::os::unix::process::ExitStatusExt;
        let overflow = vec!["thread 'extract' has overflowed its stack".to_string()];
        let abrt = std::process::ExitStatus::from_raw(libc::SIGABRT);
        assert_eq!(
            describe_death(Some(abrt), &overflow, None),
            "stack overflow"
        );
        let segv = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(describe_death(Some(segv), &[], None), "segmentation fault");
        let oom = vec!["memory allocation of 4294967296 bytes failed".to_string()];
        assert_eq!(
            describe_death(Some(abrt), &oom, None),
            "it ran out of memory"
        );
        let xcpu = std::process::ExitStatus::from_raw(libc::SIGXCPU);
        assert_eq!(
            describe_death(Some(xcpu), &[], None),
            "it used up its CPU time"
        );
    }
}
