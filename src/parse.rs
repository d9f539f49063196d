//! The one guarded entry for the bytes citizens send. Every reader of outside bytes (the
//! email reader, the signed-file reader, text extraction, fax metadata) is called through
//! [`untrusted`], which contains a panic and puts a wall-clock limit on it: the reader's
//! failure becomes an error for that document, told in words a clerk understands, and the
//! item is filed with what could be read.
//!
//! This is the inner guard. A stack overflow, an `abort` or a segfault in C ends the process
//! whatever a thread does: worker processes (`worker.rs`) are the outer guard, and a worker
//! whose reader was abandoned on its time limit retires after the item, taking the stuck
//! thread with it. Without worker processes (`isolation.processes = false`) an abandoned
//! thread runs on until its reader returns.
//!
//! Readers run on a helper thread kept per calling thread, so a guarded call costs two
//! channel messages (about 10 µs), not a thread start; a helper whose reader overran its
//! limit is abandoned and a new one started. Quick readers called once per item use
//! [`untrusted_quick`], which in a worker process reads on the calling thread.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// Stack of a helper thread: parsers recurse (nested MIME parts, PDF objects).
const HELPER_STACK: usize = 8 << 20;

/// Why a reader gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unread {
    #[error("{reader} crashed on this file (it may be damaged): {detail}")]
    Crashed {
        reader: &'static str,
        detail: String,
    },
    #[error("{reader} gave up after {secs:.0} s (the file may be damaged or hostile)")]
    TimedOut { reader: &'static str, secs: f64 },
    #[error("cannot start {reader}: {detail}")]
    NoThread {
        reader: &'static str,
        detail: String,
    },
}

type Output = Box<dyn Any + Send>;
type Job = Box<dyn FnOnce() -> Output + Send>;

struct Helper {
    jobs: mpsc::Sender<Job>,
    results: mpsc::Receiver<std::thread::Result<Output>>,
}

impl Helper {
    fn start() -> std::io::Result<Helper> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (result_tx, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("reader".into())
            .stack_size(HELPER_STACK)
            .spawn(move || {
                // Ends when the caller drops its sender (it gave up on us, or it ended), or
                // when nobody waits for the result any more.
                while let Ok(job) = job_rx.recv() {
                    if result_tx.send(catch_unwind(AssertUnwindSafe(job))).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Helper { jobs, results })
    }
}

thread_local! {
    static HELPER: RefCell<Option<Helper>> = const { RefCell::new(None) };
}

/// Runs `read` (a reader of outside bytes, named as a clerk would name it) with a panic
/// contained and at most `limit` of wall-clock time. In a worker process the runner is told
/// the reader has started, so a worker that dies here is explained by it.
pub fn untrusted<T: Send + 'static>(
    reader: &'static str,
    limit: Duration,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Unread> {
    crate::worker::progress(reader);
    let job: Job = Box::new(move || Box::new(read()) as Output);
    HELPER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let helper = match slot.take() {
            Some(helper) => helper,
            None => Helper::start().map_err(|e| Unread::NoThread {
                reader,
                detail: e.to_string(),
            })?,
        };
        let helper = slot.insert(helper);
        let ended = || Unread::Crashed {
            reader,
            detail: "its thread ended".into(),
        };
        if helper.jobs.send(job).is_err() {
            *slot = None;
            return Err(ended());
        }
        match helper.results.recv_timeout(limit) {
            Ok(Ok(out)) => out
                .downcast::<T>()
                .map(|t| *t)
                .map_err(|_| Unread::Crashed {
                    reader,
                    detail: "it answered with the wrong type".into(),
                }),
            Ok(Err(panic)) => Err(Unread::Crashed {
                reader,
                detail: panic_text(&panic),
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Left to finish on its own; the next call starts a fresh helper.
                *slot = None;
                crate::worker::note_abandoned_thread();
                Err(Unread::TimedOut {
                    reader,
                    secs: limit.as_secs_f64(),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                *slot = None;
                Err(ended())
            }
        }
    })
}

/// [`untrusted`] for a quick reader (a message's MIME structure, a signed container, a fax's
/// metadata) called once per item. In a worker process it runs on the calling thread, its
/// panic contained: a thread hop per item cost more than such a read (10% of the CPU of a
/// plain-text message), and the worker's own wall-clock limit ends a reader that hangs,
/// flagging the item with this reader's name. Elsewhere it is [`untrusted`].
pub fn untrusted_quick<T: Send + 'static>(
    reader: &'static str,
    limit: Duration,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Unread> {
    if !crate::worker::in_worker() {
        return untrusted(reader, limit, read);
    }
    crate::worker::progress(reader);
    catch_unwind(AssertUnwindSafe(read)).map_err(|panic| Unread::Crashed {
        reader,
        detail: panic_text(&panic),
    })
}

/// A panic's message, when it has one.
pub fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_and_an_overrun_are_errors_and_the_next_read_still_works() {
        let second = Duration::from_secs(1);
        assert_eq!(untrusted("the test reader", second, || 2 + 2), Ok(4));
        let crashed = untrusted("the test reader", second, || -> u8 {
            panic!("bad offset 7")
        })
        .unwrap_err();
        assert!(
            crashed.to_string().contains("the test reader crashed")
                && crashed.to_string().contains("bad offset 7"),
            "{crashed}"
        );
        // The helper survives a panic.
        assert_eq!(untrusted("the test reader", second, || "ok"), Ok("ok"));
        let slow = untrusted("the test reader", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
            1
        })
        .unwrap_err();
        assert!(
            matches!(slow, Unread::TimedOut { .. }) && slow.to_string().contains("gave up"),
            "{slow}"
        );
        // A fresh helper answers at once, while the abandoned one still sleeps.
        let started = std::time::Instant::now();
        assert_eq!(untrusted("the test reader", second, || 5), Ok(5));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
