//! Identifiers in what citizens write (subject, body, document and OCR text): fiscal codes,
//! VAT numbers, email addresses, phone and fax numbers (E.164), dates, references to cases
//! and to other requests, addresses. Each comes with where it was found and a confidence;
//! ambiguous matches are kept as lower-confidence candidates, never silently dropped.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    FiscalCode,
    Vat,
    Email,
    Phone,
    Date,
    CaseRef,
    Address,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FiscalCode => "fiscal_code",
            Kind::Vat => "vat",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Date => "date",
            Kind::CaseRef => "case_ref",
            Kind::Address => "address",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::FiscalCode,
            Kind::Vat,
            Kind::Email,
            Kind::Phone,
            Kind::Date,
            Kind::CaseRef,
            Kind::Address,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub kind: Kind,
    /// Normalised value: upper-case fiscal code, E.164 phone, ISO date, …
    pub value: String,
    /// For kinds with a checksum (fiscal code, VAT): whether it holds.
    pub valid: bool,
    pub confidence: f32,
    /// Where it was found: "subject", "body", or a document's name.
    #[serde(rename = "where")]
    pub place: String,
    /// The text as written.
    pub raw: String,
}

// Word boundaries are ASCII (`(?-u:\b)`): what they delimit here (codes, numbers, dates,
// addresses) is ASCII at its edges, and a Unicode `\b` makes the regex engine fall back to its
// slowest matcher on any text with an accent — most Italian text.

/// A regex compiled at its first use, or ahead of it by [`warm`].
struct Lazy {
    cell: OnceLock<Regex>,
    pattern: &'static str,
}

impl Lazy {
    const fn new(pattern: &'static str) -> Lazy {
        Lazy {
            cell: OnceLock::new(),
            pattern,
        }
    }

    fn get(&self) -> &Regex {
        self.cell
            .get_or_init(|| Regex::new(self.pattern).expect("valid entity regex"))
    }
}

/// Every regex of this module, for [`warm`].
const ALL: [&Lazy; 13] = [
    &CANDIDATE,
    &VAT,
    &EMAIL,
    &PHONE,
    &CONTEXT,
    &NUMERIC,
    &WORDS,
    &PRATICA,
    &ESITO_FILE,
    &PROT,
    &TICKET,
    &AEDES,
    &ADDRESS,
];

/// Compiles every regex now. That takes about 70 million instructions, which a command's
/// first request otherwise waits for (and the other preparing threads with it, on the same
/// regexes): a command runs this on a thread of its own as it starts, beside its other
/// start-up work.
pub fn warm() {
    for lazy in ALL {
        lazy.get();
    }
}

// ------------------------------------------------------------------ fiscal codes

const ODD: [u32; 36] = [
    // 0-9
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, // A-Z
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

fn char_index(c: u8) -> Option<usize> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as usize),
        b'A'..=b'Z' => Some((c - b'A') as usize + 10),
        _ => None,
    }
}

/// The check letter of the first 15 characters of a fiscal code.
fn cf_check(first15: &[u8]) -> Option<u8> {
    let mut sum = 0;
    for (i, &c) in first15.iter().enumerate() {
        let idx = char_index(c)?;
        sum += if i % 2 == 0 {
            ODD[idx]
        } else if idx < 10 {
            idx as u32
        } else {
            (idx - 10) as u32
        };
    }
    Some(b'A' + (sum % 26) as u8)
}

/// Positions that hold digits (or, with omocodia, the letters LMNPQRSTUV standing for them).
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
const OMOCODIA: &[u8] = b"LMNPQRSTUV";
const MONTHS: &[u8] = b"ABCDEHLMPRST";

fn omocodia_digit(c: u8) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c);
    }
    OMOCODIA
        .iter()
        .position(|&o| o == c)
        .map(|p| b'0' + p as u8)
}

/// Whether `code` (16 upper-case characters) is a well-formed fiscal code with a right check
/// letter; omocodia (letters standing for digits) accepted.
pub fn fiscal_code_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() != 16
        || !b
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return false;
    }
    let letters_at = [0, 1, 2, 3, 4, 5, 8, 11, 15];
    if !letters_at.iter().all(|&i| b[i].is_ascii_uppercase()) {
        return false;
    }
    let mut digits = [0u8; 7];
    for (k, &i) in DIGIT_POSITIONS.iter().enumerate() {
        match omocodia_digit(b[i]) {
            Some(d) => digits[k] = d,
            None => return false,
        }
    }
    if !MONTHS.contains(&b[8]) {
        return false;
    }
    let day = (digits[2] - b'0') as u32 * 10 + (digits[3] - b'0') as u32;
    if !((1..=31).contains(&day) || (41..=71).contains(&day)) {
        return false;
    }
    cf_check(&b[..15]) == Some(b[15])
}

/// OCR confuses these; a candidate that fails is retried with them swapped where the code
/// expects the other kind of character.
fn to_letter(c: u8) -> u8 {
    match c {
        b'0' => b'O',
        b'1' => b'I',
        b'5' => b'S',
        b'8' => b'B',
        b'2' => b'Z',
        b'6' => b'G',
        other => other,
    }
}

fn to_digit(c: u8) -> u8 {
    match c {
        b'O' | b'D' | b'Q' => b'0',
        b'I' | b'L' => b'1',
        b'S' => b'5',
        b'B' => b'8',
        b'Z' => b'2',
        b'G' => b'6',
        other => other,
    }
}

/// Repairs OCR damage: letters where letters belong, digits where digits belong (keeping
/// omocodia letters), then checks. Returns the repaired code when it validates.
fn repair_fiscal_code(code: &[u8]) -> Option<String> {
    let mut fixed = code.to_vec();
    for (i, c) in fixed.iter_mut().enumerate() {
        let digit_slot = DIGIT_POSITIONS.contains(&i);
        if digit_slot {
            if !c.is_ascii_digit() && !OMOCODIA.contains(c) {
                *c = to_digit(*c);
            }
        } else {
            *c = to_letter(*c);
        }
    }
    // The check letter itself may have been read as a digit.
    fixed[15] = to_letter(fixed[15]);
    let s = String::from_utf8(fixed).ok()?;
    fiscal_code_is_valid(&s).then_some(s)
}

// 16 letters and digits, allowing the spaces some people type in groups (6-2-3-4-1).
static CANDIDATE: Lazy =
    Lazy::new(r"(?i)(?-u:\b)([A-Z0-9]{6})[ ]?([A-Z0-9]{5})[ ]?([A-Z0-9]{4})[ ]?([A-Z0-9])(?-u:\b)");

fn fiscal_codes(text: &str, place: &str, out: &mut Vec<Entity>) {
    let candidate = CANDIDATE.get();
    for caps in candidate.captures_iter(text) {
        let raw = caps.get(0).map_or("", |m| m.as_str());
        let joined: String = (1..=4)
            .filter_map(|i| caps.get(i))
            .map(|m| m.as_str())
            .collect::<String>()
            .to_ascii_uppercase();
        let b = joined.as_bytes();
        // Looks like a fiscal code at all: mostly letters in the name part, digits in the date part.
        let letters_in_name = b[..6].iter().filter(|c| c.is_ascii_alphabetic()).count();
        let digitish = DIGIT_POSITIONS
            .iter()
            .filter(|&&i| b[i].is_ascii_digit())
            .count();
        if letters_in_name < 5 || digitish < 4 {
            continue;
        }
        if fiscal_code_is_valid(&joined) {
            out.push(Entity {
                kind: Kind::FiscalCode,
                value: joined,
                valid: true,
                confidence: 0.99,
                place: place.into(),
                raw: raw.into(),
            });
        } else if let Some(fixed) = repair_fiscal_code(b) {
            out.push(Entity {
                kind: Kind::FiscalCode,
                value: fixed,
                valid: true,
                confidence: 0.8,
                place: place.into(),
                raw: raw.into(),
            });
        } else {
            // Shaped like a fiscal code but wrong: a candidate for a clerk, never valid.
            out.push(Entity {
                kind: Kind::FiscalCode,
                value: joined,
                valid: false,
                confidence: 0.3,
                place: place.into(),
                raw: raw.into(),
            });
        }
    }
}

// ------------------------------------------------------------------ VAT numbers

pub fn vat_is_valid(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() != 11 || !b.iter().all(u8::is_ascii_digit) || b.iter().all(|&c| c == b'0') {
        return false;
    }
    let mut sum = 0;
    for (i, &c) in b[..10].iter().enumerate() {
        let d = (c - b'0') as u32;
        sum += if i % 2 == 0 {
            d
        } else if d * 2 > 9 {
            d * 2 - 9
        } else {
            d * 2
        };
    }
    (10 - sum % 10) % 10 == (b[10] - b'0') as u32
}

static VAT: Lazy = Lazy::new(
    r"(?i)(p\.?\s?iva|partita\s+iva|vat(?:\s+(?:no|number))?)?[\s.:n°]*(?-u:\b)(?:IT)?(\d{11})(?-u:\b)",
);

fn vats(text: &str, place: &str, out: &mut Vec<Entity>) {
    let vat = VAT.get();
    for caps in vat.captures_iter(text) {
        let digits = &caps[2];
        let labelled = caps.get(1).is_some();
        let valid = vat_is_valid(digits);
        if !labelled && !valid {
            continue; // eleven random digits: a phone or a number, not a VAT candidate
        }
        let confidence = match (labelled, valid) {
            (true, true) => 0.99,
            (false, true) => 0.6,
            (true, false) => 0.4,
            (false, false) => 0.0,
        };
        out.push(Entity {
            kind: Kind::Vat,
            value: digits.into(),
            valid,
            confidence,
            place: place.into(),
            raw: caps[0].trim().into(),
        });
    }
}

// ------------------------------------------------------------------ emails and phones

static EMAIL: Lazy = Lazy::new(r"(?i)(?-u:\b)[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}(?-u:\b)");

fn emails(text: &str, place: &str, out: &mut Vec<Entity>) {
    let email = EMAIL.get();
    for m in email.find_iter(text) {
        let value = m.as_str().trim_end_matches('.').to_ascii_lowercase();
        out.push(Entity {
            kind: Kind::Email,
            value,
            valid: true,
            confidence: 0.99,
            place: place.into(),
            raw: m.as_str().into(),
        });
    }
}

/// An Italian phone or fax number in E.164 (+39…), or None when it cannot be one.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let international = trimmed.starts_with('+') || trimmed.starts_with("00");
    if trimmed.starts_with("00") {
        digits = digits[2..].to_string();
    }
    if international {
        if let Some(national) = digits.strip_prefix("39") {
            return italian(national).map(|n| format!("+39{n}"));
        }
        // Another country: keep it as E.164 if the length is plausible.
        return (8..=15)
            .contains(&digits.len())
            .then(|| format!("+{digits}"));
    }
    italian(&digits).map(|n| format!("+39{n}"))
}

fn italian(national: &str) -> Option<String> {
    let ok = match national.as_bytes().first() {
        // Landlines keep their leading 0: 6 to 11 digits.
        Some(b'0') => (6..=11).contains(&national.len()),
        // Mobiles: 3xx, 9 or 10 digits.
        Some(b'3') => (9..=10).contains(&national.len()),
        // Toll-free and shared-cost numbers.
        Some(b'8') => (6..=10).contains(&national.len()),
        _ => false,
    };
    ok.then(|| national.to_string())
}

static PHONE: Lazy = Lazy::new(r"(?:\+|00)?\d[\d \-./]{4,16}\d");
static CONTEXT: Lazy =
    Lazy::new(r"(?i)(tel|telefono|cell|cellulare|fax|phone|mobile|recapito|numero|n\.)\W{0,4}$");

fn phones(text: &str, place: &str, out: &mut Vec<Entity>) {
    let phone = PHONE.get();
    let context = CONTEXT.get();
    for m in phone.find_iter(text) {
        let raw = m.as_str();
        // Dates, protocol and case numbers have slashes; amounts have commas.
        if raw.contains('/') || raw.matches('.').count() > 3 {
            continue;
        }
        let Some(value) = normalize_phone(raw) else {
            continue;
        };
        let before = &text[..m.start()];
        let tail_start = before.char_indices().rev().nth(20).map_or(0, |(i, _)| i);
        let has_context = context.is_match(&before[tail_start..]);
        let confidence = if has_context || raw.starts_with('+') {
            0.95
        } else {
            0.6
        };
        out.push(Entity {
            kind: Kind::Phone,
            value,
            valid: true,
            confidence,
            place: place.into(),
            raw: raw.into(),
        });
    }
}

// ------------------------------------------------------------------ dates

const MONTH_NAMES: [&str; 12] = [
    "gennaio",
    "febbraio",
    "marzo",
    "aprile",
    "maggio",
    "giugno",
    "luglio",
    "agosto",
    "settembre",
    "ottobre",
    "novembre",
    "dicembre",
];

fn iso_date(day: u32, month: u32, year: i32) -> Option<String> {
    let year = if year < 100 {
        if year < 50 {
            2000 + year
        } else {
            1900 + year
        }
    } else {
        year
    };
    chrono::NaiveDate::from_ymd_opt(year, month, day).map(|d| d.to_string())
}

static NUMERIC: Lazy = Lazy::new(r"(?-u:\b)(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?-u:\b)");
static WORDS: Lazy = Lazy::new(
    r"(?i)(?-u:\b)(\d{1,2})(?:°|º)?\s+(gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|novembre|dicembre)\s+(\d{4})(?-u:\b)",
);

fn dates(text: &str, place: &str, out: &mut Vec<Entity>) {
    let numeric = NUMERIC.get();
    for c in numeric.captures_iter(text) {
        let (d, m, y) = (
            c[1].parse().unwrap_or(0),
            c[2].parse().unwrap_or(0),
            c[3].parse().unwrap_or(0),
        );
        if let Some(value) = iso_date(d, m, y) {
            let confidence = if c[3].len() == 4 { 0.95 } else { 0.7 };
            out.push(Entity {
                kind: Kind::Date,
                value,
                valid: true,
                confidence,
                place: place.into(),
                raw: c[0].into(),
            });
        }
    }
    let words = WORDS.get();
    for c in words.captures_iter(text) {
        let month = MONTH_NAMES
            .iter()
            .position(|m| m.eq_ignore_ascii_case(&c[2]))
            .map_or(0, |p| p as u32 + 1);
        if let Some(value) = iso_date(c[1].parse().unwrap_or(0), month, c[3].parse().unwrap_or(0)) {
            out.push(Entity {
                kind: Kind::Date,
                value,
                valid: true,
                confidence: 0.95,
                place: place.into(),
                raw: c[0].into(),
            });
        }
    }
}

// ------------------------------------------------------------------ case references

// "pratica n. 1234/2010", "pratica B/2010/0977", "pratica (E/2011/1209)"
static PRATICA: Lazy = Lazy::new(
    r"(?i)(?-u:\b)pratic[ah]e?\s*(?:n\.?|nr\.?|num\.?|numero|n°)?\s*[(\[]?\s*((?:[A-Z]/)?\d{1,6}/\d{2,4}(?:/\d{1,6})?|[A-Z]/\d{4}/\d{1,6})",
);
static ESITO_FILE: Lazy = Lazy::new(r"(?-u:\b)([ABCDEF]/(?:19|20)\d{2}/\d{2,6})(?-u:\b)");
static PROT: Lazy = Lazy::new(
    r"(?i)(?-u:\b)prot(?:ocollo|\.)?\s*(?:n\.?|nr\.?|num\.?|numero|n°)?\s*(\d{1,7})(?:\s*/\s*(\d{4}))?(?:\s+del\s+(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}))?",
);
static TICKET: Lazy =
    Lazy::new(r"(?-u:\b)([A-Z]{2,6}-(?:\d{4}-\d{6}|[0-9A-Z]{4}-[0-9A-Z]{4}))(?-u:\b)");
static AEDES: Lazy = Lazy::new(
    r"(?i)(?-u:\b)(?:id\s+)?(?:scheda\s+)?aedes\s*(?:n\.?|nr\.?|id|n°)?\s*[:#]?\s*(\d[\d/\-]{2,15}\d)",
);

fn case_refs(text: &str, place: &str, out: &mut Vec<Entity>) {
    let pratica = PRATICA.get();
    for c in pratica.captures_iter(text) {
        out.push(Entity {
            kind: Kind::CaseRef,
            value: format!("pratica {}", c[1].to_ascii_uppercase()),
            valid: true,
            confidence: 0.95,
            place: place.into(),
            raw: c[0].into(),
        });
    }
    // A bare "B/2010/0977" (esito letter / year / number) is a reconstruction file number.
    let esito_file = ESITO_FILE.get();
    for c in esito_file.captures_iter(text) {
        let value = format!("pratica {}", &c[1]);
        if !out
            .iter()
            .any(|e| e.kind == Kind::CaseRef && e.value == value)
        {
            out.push(Entity {
                kind: Kind::CaseRef,
                value,
                valid: true,
                confidence: 0.8,
                place: place.into(),
                raw: c[0].into(),
            });
        }
    }
    // "prot. n. 5678 del 12/03/2011", "Rif. nota prot. 7721/2010", "protocollo n. 0019982"
    let prot = PROT.get();
    for c in prot.captures_iter(text) {
        let number = c[1].trim_start_matches('0');
        let number = if number.is_empty() { "0" } else { number };
        let year = c.get(2).map(|y| y.as_str().to_string()).or_else(|| {
            c.get(3).and_then(|d| {
                d.as_str()
                    .rsplit(['/', '.', '-'])
                    .next()
                    .map(str::to_string)
            })
        });
        let value = match year {
            Some(y) if y.len() == 4 => format!("prot {number}/{y}"),
            _ => format!("prot {number}"),
        };
        out.push(Entity {
            kind: Kind::CaseRef,
            value,
            valid: true,
            confidence: 0.9,
            place: place.into(),
            raw: c[0].into(),
        });
    }
    // Our own tracking codes, and ticket numbers quoted in reply subjects: [URP-2011-000977].
    let ticket = TICKET.get();
    for c in ticket.captures_iter(text) {
        let raw = &c[1];
        let (value, valid) = if raw.as_bytes()[raw.len() - 7] == b'-' && raw.len() > 14 {
            (raw.to_string(), true)
        } else {
            match crate::code::parse(raw) {
                Ok(code) => (code, true),
                Err(_) => continue,
            }
        };
        out.push(Entity {
            kind: Kind::CaseRef,
            value: format!("ticket {value}"),
            valid,
            confidence: 0.99,
            place: place.into(),
            raw: raw.into(),
        });
    }
    // AeDES survey identifiers: "ID AeDES 12345", "scheda AeDES n. 0456/2009"
    let aedes = AEDES.get();
    for c in aedes.captures_iter(text) {
        out.push(Entity {
            kind: Kind::CaseRef,
            value: format!("aedes {}", &c[1]),
            valid: true,
            confidence: 0.9,
            place: place.into(),
            raw: c[0].into(),
        });
    }
}

// ------------------------------------------------------------------ addresses

static ADDRESS: Lazy = Lazy::new(
    r"(?-u:\b)((?:[Vv]ia|[Vv]iale|[Pp]iazza|[Pp]iazzale|[Cc]orso|[Vv]icolo|[Ll]argo|[Ss]trada|[Cc]ontrada|[Ll]ocalità|[Ll]oc\.)\s+(?:[A-ZÀ-Ý0-9][\w'’.àèéìòù]*\s?){1,5}?)(?:,?\s*(?:n\.?\s*|civico\s+)?(\d{1,4}(?:/?[A-Za-z])?))?(?:\s*[,-]?\s*(?:fraz(?:ione|\.)?\s+)([A-Z][\w'’]+(?:\s(?:di|del|della|San|Santa)?\s?[A-Z][\w'’]+)?))?",
);

fn addresses(text: &str, place: &str, out: &mut Vec<Entity>) {
    let address = ADDRESS.get();
    for c in address.captures_iter(text) {
        let street = c[1].trim().trim_end_matches(',').to_string();
        if street.split_whitespace().count() < 2 {
            continue;
        }
        let mut value = street.clone();
        if let Some(n) = c.get(2) {
            value.push_str(&format!(" {}", n.as_str()));
        }
        if let Some(f) = c.get(3) {
            value.push_str(&format!(", frazione {}", f.as_str()));
        }
        let confidence = if c.get(2).is_some() { 0.85 } else { 0.5 };
        out.push(Entity {
            kind: Kind::Address,
            value,
            valid: true,
            confidence,
            place: place.into(),
            raw: c[0].trim().into(),
        });
    }
}

/// Every identifier in `text`, found at `place`.
pub fn extract(text: &str, place: &str) -> Vec<Entity> {
    let mut out = Vec::new();
    fiscal_codes(text, place, &mut out);
    vats(text, place, &mut out);
    emails(text, place, &mut out);
    phones(text, place, &mut out);
    dates(text, place, &mut out);
    case_refs(text, place, &mut out);
    addresses(text, place, &mut out);
    // A VAT number and a phone can share digits: a labelled VAT wins over an unlabelled phone.
    let vat_digits: Vec<String> = out
        .iter()
        .filter(|e| e.kind == Kind::Vat && e.confidence > 0.5)
        .map(|e| e.value.clone())
        .collect();
    out.retain(|e| {
        !(e.kind == Kind::Phone && vat_digits.iter().any(|v| e.value.ends_with(v.as_str())))
    });
    dedup(out)
}

/// One entry per kind and value, keeping the most confident and the first place.
pub fn dedup(entities: Vec<Entity>) -> Vec<Entity> {
    let mut out: Vec<Entity> = Vec::new();
    for e in entities {
        match out
            .iter_mut()
            .find(|o| o.kind == e.kind && o.value == e.value)
        {
            Some(o) => {
                if e.confidence > o.confidence {
                    o.confidence = e.confidence;
                    o.valid |= e.valid;
                }
            }
            None => out.push(e),
        }
    }
    out
}

/// Masks personal identifiers for exports and logs: fiscal codes and phones keep only their
/// ends.
pub fn mask(kind: Kind, value: &str) -> String {
    match kind {
        Kind::FiscalCode | Kind::Phone | Kind::Vat => {
            let chars: Vec<char> = value.chars().collect();
            let n = chars.len();
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i < 3 || i + 2 >= n { *c } else { '*' })
                .collect()
        }
        _ => value.to_string(),
    }
}

/// `text` with its fiscal codes and phone numbers masked: for log lines, which may quote
/// file names (fax servers name files after the sender's number).
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for e in extract(text, "") {
        if matches!(e.kind, Kind::FiscalCode | Kind::Phone) && e.raw.len() >= 5 {
            out = out.replace(&e.raw, &mask(e.kind, &e.raw));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_compiles_every_regex_of_the_module() {
        // `ALL` is a list kept by hand: a regex added without it would be compiled by the
        // first request again.
        let source = include_str!("entities.rs");
        let declared = source.matches(concat!("Lazy::", "new(")).count();
        assert_eq!(
            declared,
            ALL.len(),
            "every `static …: Lazy` is listed in `ALL`"
        );
        warm();
        assert!(ALL.iter().all(|l| l.cell.get().is_some()));
    }

    fn values(text: &str, kind: Kind) -> Vec<(String, bool)> {
        extract(text, "body")
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.value, e.valid))
            .collect()
    }

    #[test]
    fn fiscal_codes_are_validated_and_repaired() {
        // RSSMRA85T10A562S is the textbook example of a valid code.
        assert!(fiscal_code_is_valid("RSSMRA85T10A562S"));
        assert!(!fiscal_code_is_valid("RSSMRA85T10A562T"));
        assert_eq!(
            values("C.F. rssmra85t10a562s.", Kind::FiscalCode),
            [("RSSMRA85T10A562S".into(), true)]
        );
        // Omocodia: digits replaced by letters (5 → R, 0 → L, ...) with the check recomputed.
        let omo = {
            let mut b = *b"RSSMRA8RT10A562?";
            b[15] = cf_check(&b[..15]).unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert!(fiscal_code_is_valid(&omo), "{omo}");
        // OCR read O for 0 and 1 for I: repaired, with lower confidence.
        let found = extract("codice fiscale RSSMRA85T1OA562S", "fax.tif");
        let cf = found.iter().find(|e| e.kind == Kind::FiscalCode).unwrap();
        assert_eq!((cf.value.as_str(), cf.valid), ("RSSMRA85T10A562S", true));
        assert!(cf.confidence < 0.9);
        assert_eq!(cf.place, "fax.tif");
        // A wrong check letter that no OCR repair explains: kept, never valid.
        assert_eq!(
            values("CF RSSMRA85T10A562Q", Kind::FiscalCode),
            [("RSSMRA85T10A562Q".into(), false)]
        );
        // Ordinary words of 16 letters are not candidates.
        assert!(values("precipitevolissimevolmente", Kind::FiscalCode).is_empty());
    }

    #[test]
    fn vat_numbers_need_their_checksum() {
        assert!(vat_is_valid("01114601006"));
        assert!(!vat_is_valid("01114601007"));
        assert_eq!(
            values("P.IVA 01114601006", Kind::Vat),
            [("01114601006".into(), true)]
        );
        assert_eq!(
            values("partita IVA 01114601007", Kind::Vat),
            [("01114601007".into(), false)]
        );
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalize_phone("0862 505245").as_deref(),
            Some("+390862505245")
        );
        assert_eq!(
            normalize_phone("+39 339 174 8547").as_deref(),
            Some("+393391748547")
        );
        assert_eq!(
            normalize_phone("0039-333-1068405").as_deref(),
            Some("+393331068405")
        );
        assert_eq!(normalize_phone("12345"), None);
        let found = values(
            "Tel. 339 1748547, fax 0862/412345 oppure 0862.41.23.45",
            Kind::Phone,
        );
        assert!(found.contains(&("+393391748547".into(), true)), "{found:?}");
        assert!(found.contains(&("+390862412345".into(), true)), "{found:?}");
    }

    #[test]
    fn dates_in_italian_formats() {
        let found = values(
            "nato il 04/02/1975, sgombero del 12 marzo 2011 e del 3-4-10",
            Kind::Date,
        );
        let v: Vec<&str> = found.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(v, ["1975-02-04", "2010-04-03", "2011-03-12"]);
        assert!(values("il 31/02/2011", Kind::Date).is_empty());
    }

    #[test]
    fn case_references_in_the_forms_offices_use() {
        let text =
            "Rif. pratica n. 1234/2010 e pratica B/2010/0977; prot. n. 5678 del 12/03/2011; \
                    Rif. nota prot. 7721/2010; Re: [URP-2011-000977]; ID AeDES 0456/2009";
        let v: Vec<String> = values(text, Kind::CaseRef)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        for want in [
            "pratica 1234/2010",
            "pratica B/2010/0977",
            "prot 5678/2011",
            "prot 7721/2010",
            "ticket URP-2011-000977",
            "aedes 0456/2009",
        ] {
            assert!(v.contains(&want.to_string()), "{want} not in {v:?}");
        }
    }

    #[test]
    fn addresses_with_frazione() {
        let v: Vec<String> = values(
            "abito in Via Roma 12, frazione Paganica e lavoro in piazza Duomo",
            Kind::Address,
        )
        .into_iter()
        .map(|(v, _)| v)
        .collect();
        assert!(
            v.iter().any(|a| a == "Via Roma 12, frazione Paganica"),
            "{v:?}"
        );
    }

    #[test]
    fn log_lines_are_redacted() {
        let line = redact("cannot read /var/spool/fax_0862505245_1.tif (RSSMRA85T10A562S)");
        assert!(
            !line.contains("0862505245") && !line.contains("RSSMRA85T10A562S"),
            "{line}"
        );
    }

    #[test]
    fn masking_keeps_only_the_ends() {
        assert_eq!(
            mask(Kind::FiscalCode, "RSSMRA85T10A562S"),
            "RSS***********2S"
        );
        assert_eq!(mask(Kind::Email, "a@b.it"), "a@b.it");
    }
}
