//! `sportello_rank()`: the FTS5 `bm25()` score, computed with less work per search.
//!
//! Under load, `bm25()` was half of the web app's time on a search page: it counts, on every
//! search, the tickets that contain each phrase of the query (a walk of the phrase's whole
//! posting list — every match in the archive, not only the ones ranked), and it reads each
//! ranked row's length from the index (one B-tree lookup per row). This function returns the
//! the same scores as `bm25(ticket_fts, w…)` with less work:
//! - each phrase's document count is remembered per database and phrase, and counted again
//!   only when the number of tickets has moved by more than 1/64 since (or after ten
//!   minutes): the IDF of a phrase barely moves with a few percent more tickets;
//! - each row's length (in tokens) is remembered per database and rowid, for as long as no
//!   row of the index has been rewritten: `generation` (an argument) is a counter the store
//!   bumps in the same transaction as any change to an existing row, so a search sees the
//!   counter of its own snapshot; new rows only add lengths;
//! - a row whose best possible score (as if it had no other words) cannot reach the best
//!   `keep` rows seen so far is not measured: it gets that bound as its score, which still
//!   sorts it after the `keep` best. This holds only while rows come in descending rowid order
//!   (the search's window is then a prefix of the rows seen); on any other order every row is
//!   scored exactly.
//!
//! Called as `sportello_rank(ticket_fts, phrases, keep, generation, w_col0, w_col1, …)`:
//! `phrases` is the query's phrases in order, one per line, as written in the MATCH expression
//! (the key of the remembered counts; when their number does not match the query's, nothing
//! is remembered); `keep` is how many of the best rows will be shown (offset + page);
//! `generation` is the store's `search_rows_rewritten` counter. Like `bm25()`, lower is better.

use rusqlite::ffi;
use rusqlite::Connection;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub const FUNCTION: &str = "sportello_rank";

const K1: f64 = 1.2;
const B: f64 = 0.75;
/// A remembered count is used while the ticket count is within 1/64 of when it was counted.
const DRIFT: i64 = 64;
const MAX_AGE: Duration = Duration::from_secs(600);
/// Remembered counts, beyond which all are forgotten (each is a few dozen bytes).
const MAX_REMEMBERED: usize = 20_000;

struct Counted {
    hits: i64,
    rows: i64,
    at: Instant,
}

/// (database file, phrase) → how many rows contain the phrase.
static PHRASE_HITS: LazyLock<Mutex<HashMap<(String, String), Counted>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Row lengths of one database as of one generation, by rowid (length + 1; 0: not known).
struct Lengths {
    generation: i64,
    by_rowid: Vec<AtomicU32>,
    /// A rowid beyond `by_rowid` was seen: make room at the next search.
    wanted: AtomicI64,
}

impl Lengths {
    fn new(generation: i64, capacity: usize, old: Option<&Lengths>) -> Lengths {
        let by_rowid: Vec<AtomicU32> = (0..capacity)
            .map(|i| {
                let known = old.and_then(|o| o.by_rowid.get(i));
                AtomicU32::new(known.map_or(0, |k| k.load(Ordering::Relaxed)))
            })
            .collect();
        Lengths {
            generation,
            by_rowid,
            wanted: AtomicI64::new(0),
        }
    }
}

/// Database file → row lengths.
static LENGTHS: LazyLock<Mutex<HashMap<String, Arc<Lengths>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The row lengths a search at `generation` may use and fill (`None`: its snapshot is older
/// than what is remembered, or the database is not a file).
fn lengths_for(file: &str, generation: i64, rows: i64) -> Option<Arc<Lengths>> {
    if file.is_empty() {
        return None;
    }
    let mut all = LENGTHS.lock().ok()?;
    let room = |at_least: i64| (at_least.max(rows).max(0) as usize) * 5 / 4 + 1024;
    let current = match all.get(file) {
        Some(l) if l.generation > generation => return None,
        Some(l) if l.generation == generation => {
            let wanted = l.wanted.load(Ordering::Relaxed);
            if wanted < l.by_rowid.len() as i64 {
                return Some(l.clone());
            }
            Lengths::new(generation, room(wanted), Some(l))
        }
        _ => Lengths::new(generation, room(0), None),
    };
    let current = Arc::new(current);
    all.insert(file.to_string(), current.clone());
    Some(current)
}

/// Rows given their bound instead of their score (the tests check it happens).
#[cfg(test)]
pub static PRUNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers `sportello_rank` on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    // SAFETY: the handle is valid for `conn`'s lifetime; the statement is finalized before
    // returning; the API pointer is written by SQLite during the step.
    unsafe {
        let db = conn.handle();
        let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            std::ptr::null_mut(),
        );
        check(rc, "preparing SELECT fts5()")?;
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        check(ffi::sqlite3_finalize(stmt), "SELECT fts5()")?;
        let create = match api.as_ref() {
            Some(a) if a.iVersion >= 2 => a.xCreateFunction,
            _ => None,
        };
        let Some(create) = create else {
            return Err(error(ffi::SQLITE_ERROR, "this SQLite has no FTS5 API"));
        };
        // In-memory and temporary databases ("" here) never share remembered counts.
        let file = ffi::sqlite3_db_filename(db, c"main".as_ptr());
        let file = if file.is_null() {
            String::new()
        } else {
            CStr::from_ptr(file).to_string_lossy().into_owned()
        };
        let user = Box::into_raw(Box::new(file));
        let name = CString::new(FUNCTION).expect("no NUL in the name");
        let rc = create(
            api,
            name.as_ptr(),
            user.cast(),
            Some(rank),
            Some(drop_boxed::<String>),
        );
        if rc != ffi::SQLITE_OK {
            drop(Box::from_raw(user));
        }
        check(rc, "registering sportello_rank")
    }
}

fn error(code: c_int, what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(what.to_string()))
}

fn check(rc: c_int, what: &str) -> rusqlite::Result<()> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(error(rc, what))
    }
}

unsafe extern "C" fn drop_boxed<T>(p: *mut c_void) {
    if !p.is_null() {
        drop(Box::from_raw(p.cast::<T>()));
    }
}

/// A score ordered so that the heap's top is the lowest of the best.
#[derive(PartialEq)]
struct Lowest(f64);
impl Eq for Lowest {}
impl PartialOrd for Lowest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Lowest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0)
    }
}

/// What one search computes once, kept as the query's auxiliary data.
struct Query {
    idf: Vec<f64>,
    avgdl: f64,
    weights: Vec<f64>,
    freq: Vec<f64>,
    keep: usize,
    /// The `keep` best exact scores so far.
    best: BinaryHeap<Lowest>,
    last_rowid: Option<i64>,
    in_rowid_order: bool,
    lengths: Option<Arc<Lengths>>,
}

type Api = ffi::Fts5ExtensionApi;

/// Calls an API entry SQLite always provides (FTS5 API version ≥ 3 is checked at setup).
macro_rules! call {
    ($api:expr, $f:ident, $($arg:expr),*) => {
        match $api.$f {
            Some(f) => f($($arg),*),
            None => ffi::SQLITE_MISUSE,
        }
    };
}

unsafe extern "C" fn rank(
    api: *const Api,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    n_args: c_int,
    args: *mut *mut ffi::sqlite3_value,
) {
    let outcome = std::panic::catch_unwind(|| {
        let api = &*api;
        let args: &[*mut ffi::sqlite3_value] = if args.is_null() || n_args <= 0 {
            &[]
        } else {
            std::slice::from_raw_parts(args, n_args as usize)
        };
        score(api, fts, args)
    });
    match outcome {
        Ok(Ok(score)) => ffi::sqlite3_result_double(ctx, -score),
        Ok(Err(rc)) => ffi::sqlite3_result_error_code(ctx, rc),
        Err(_) => ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_INTERNAL),
    }
}

unsafe fn score(
    api: &Api,
    fts: *mut ffi::Fts5Context,
    args: &[*mut ffi::sqlite3_value],
) -> Result<f64, c_int> {
    let mut q = match api.xGetAuxdata {
        Some(get) => get(fts, 0).cast::<Query>(),
        None => return Err(ffi::SQLITE_MISUSE),
    };
    if q.is_null() {
        let fresh = Box::into_raw(Box::new(prepare(api, fts, args)?));
        let rc = call!(
            api,
            xSetAuxdata,
            fts,
            fresh.cast(),
            Some(drop_boxed::<Query>)
        );
        if rc != ffi::SQLITE_OK {
            drop(Box::from_raw(fresh));
            return Err(rc);
        }
        q = fresh;
    }
    let q = &mut *q;

    let rowid = match api.xRowid {
        Some(f) => f(fts),
        None => return Err(ffi::SQLITE_MISUSE),
    };
    if q.last_rowid.is_some_and(|last| rowid >= last) {
        q.in_rowid_order = false;
    }
    q.last_rowid = Some(rowid);

    q.freq.iter_mut().for_each(|f| *f = 0.0);
    let mut n_inst: c_int = 0;
    let rc = call!(api, xInstCount, fts, &mut n_inst);
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    for i in 0..n_inst {
        let (mut phrase, mut col, mut off) = (0, 0, 0);
        let rc = call!(api, xInst, fts, i, &mut phrase, &mut col, &mut off);
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
        let w = q.weights.get(col as usize).copied().unwrap_or(1.0);
        if let Some(f) = q.freq.get_mut(phrase as usize) {
            *f += w;
        }
    }

    let bm25 = |length_norm: f64| -> f64 {
        q.idf
            .iter()
            .zip(&q.freq)
            .map(|(idf, f)| idf * (f * (K1 + 1.0)) / (f + K1 * length_norm))
            .sum()
    };
    let full = q.keep > 0 && q.best.len() >= q.keep;
    if full && q.in_rowid_order {
        // The score of this row if it had no other words: no row scores more.
        let bound = bm25(1.0 - B);
        if q.best.peek().is_some_and(|lowest| bound < lowest.0) {
            #[cfg(test)]
            PRUNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(bound);
        }
    }
    let slot = q.lengths.as_ref().and_then(|l| {
        let slot = usize::try_from(rowid).ok().and_then(|i| l.by_rowid.get(i));
        if slot.is_none() {
            l.wanted.fetch_max(rowid, Ordering::Relaxed);
        }
        slot
    });
    let tokens = match slot.map(|s| s.load(Ordering::Relaxed)) {
        Some(known) if known > 0 => known - 1,
        _ => {
            let mut tokens: c_int = 0;
            let rc = call!(api, xColumnSize, fts, -1, &mut tokens);
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            let tokens = tokens.max(0) as u32;
            if let Some(slot) = slot {
                slot.store(tokens.saturating_add(1), Ordering::Relaxed);
            }
            tokens
        }
    };
    let s = bm25(1.0 - B + B * f64::from(tokens) / q.avgdl);
    if q.keep == 0 {
        // Nothing to keep track of: every row is measured.
    } else if !full {
        q.best.push(Lowest(s));
    } else if q.best.peek().is_some_and(|lowest| s > lowest.0) {
        q.best.pop();
        q.best.push(Lowest(s));
    }
    Ok(s)
}

/// The query's constants: average row length, each phrase's IDF, the weights.
unsafe fn prepare(
    api: &Api,
    fts: *mut ffi::Fts5Context,
    args: &[*mut ffi::sqlite3_value],
) -> Result<Query, c_int> {
    if api.iVersion < 3 {
        return Err(ffi::SQLITE_MISUSE);
    }
    let text = |v: *mut ffi::sqlite3_value| -> String {
        let p = ffi::sqlite3_value_text(v);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p.cast()).to_string_lossy().into_owned()
        }
    };
    let phrases_arg = args.first().map(|v| text(*v)).unwrap_or_default();
    let keep = args
        .get(1)
        .map(|v| ffi::sqlite3_value_int64(*v).max(0) as usize)
        .unwrap_or(0);
    let generation = args.get(2).map(|v| ffi::sqlite3_value_int64(*v));
    let weights: Vec<f64> = args
        .iter()
        .skip(3)
        .map(|v| ffi::sqlite3_value_double(*v))
        .collect();

    let n_phrases = call!(api, xPhraseCount, fts).max(0) as usize;
    let mut rows: i64 = 0;
    let rc = call!(api, xRowCount, fts, &mut rows);
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    let mut tokens: i64 = 0;
    let rc = call!(api, xColumnTotalSize, fts, -1, &mut tokens);
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    let avgdl = if rows > 0 {
        tokens as f64 / rows as f64
    } else {
        1.0
    };

    let file: &String = match api.xUserData {
        Some(f) => &*f(fts).cast::<String>(),
        None => return Err(ffi::SQLITE_MISUSE),
    };
    let phrases: Vec<&str> = phrases_arg.lines().collect();
    let remember = !file.is_empty() && phrases.len() == n_phrases;
    let mut idf = Vec::with_capacity(n_phrases);
    for i in 0..n_phrases {
        let key = phrases
            .get(i)
            .filter(|_| remember)
            .map(|p| (file.clone(), p.to_string()));
        let known = key.as_ref().and_then(|key| {
            let known = PHRASE_HITS.lock().ok()?;
            let c = known.get(key)?;
            let fresh = (rows - c.rows).abs() * DRIFT <= c.rows && c.at.elapsed() < MAX_AGE;
            fresh.then_some(c.hits)
        });
        let hits = match known {
            Some(hits) => hits,
            None => {
                let mut hits: i64 = 0;
                let rc = call!(
                    api,
                    xQueryPhrase,
                    fts,
                    i as c_int,
                    (&mut hits as *mut i64).cast(),
                    Some(count_row)
                );
                if rc != ffi::SQLITE_OK {
                    return Err(rc);
                }
                if let (Some(key), Ok(mut known)) = (key, PHRASE_HITS.lock()) {
                    if known.len() >= MAX_REMEMBERED {
                        known.clear();
                    }
                    let at = Instant::now();
                    known.insert(key, Counted { hits, rows, at });
                }
                hits
            }
        };
        // As bm25(): a phrase in more than half the rows still counts a little.
        let x = ((rows - hits) as f64 + 0.5) / (hits as f64 + 0.5);
        idf.push(if x.ln() <= 0.0 { 1e-6 } else { x.ln() });
    }
    Ok(Query {
        idf,
        avgdl,
        weights,
        freq: vec![0.0; n_phrases],
        keep,
        best: BinaryHeap::with_capacity(keep.min(4096)),
        last_rowid: None,
        in_rowid_order: true,
        lengths: generation.and_then(|g| lengths_for(file, g, rows)),
    })
}

unsafe extern "C" fn count_row(
    _api: *const Api,
    _fts: *mut ffi::Fts5Context,
    hits: *mut c_void,
) -> c_int {
    *hits.cast::<i64>() += 1;
    ffi::SQLITE_OK
}
