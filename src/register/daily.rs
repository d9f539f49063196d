//! The daily register (*registro giornaliero di protocollo*): every registration of a day,
//! the day's annulments and changes, the first and last number and the count, as JSON and as
//! PDF, with a manifest of both files' SHA-256. Files are named
//! `<IPA>_<AOO>_<REGISTER>_<YYYYMMDD>` for the conservation system.
//!
//! A day is the machine's local calendar day (an office in Italy runs on Europe/Rome). What a
//! day's register holds never changes once the day is over: the registrations' written-once
//! fields, the topic each was filed under, and the changes recorded that day. So writing it
//! again gives the same bytes; when it would not, the register refuses rather than replace it.
//! The PDF is plain PDF 1.4 with the standard Courier font, not PDF/A.

use super::{segnatura::Classification, RegisterConfig, RegisterError};
use crate::classify::rules::TopicDef;
use crate::store::prelude::*;
use crate::store::{RegisterChange, RegisterEntry};
use base64::Engine as _;
use chrono::{NaiveDate, TimeZone};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The UTC instants `[from, until)` of `date`'s local day, as the store keeps times.
pub fn day_bounds(date: NaiveDate) -> (String, String) {
    let at_midnight = |d: NaiveDate| {
        let local = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        chrono::Local
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            // A zone without a local midnight that day (none in Europe): UTC's midnight.
            .unwrap_or_else(|| chrono::Utc.from_utc_datetime(&local))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let next = date.succ_opt().unwrap_or(date);
    (at_midnight(date), at_midnight(next))
}

#[derive(Serialize)]
struct Register<'a> {
    register: Identity<'a>,
    date: String,
    count: usize,
    first: Option<&'a str>,
    last: Option<&'a str>,
    registrations: Vec<Line<'a>>,
    changes: &'a [RegisterChange],
}

#[derive(Serialize)]
struct Identity<'a> {
    administration: &'a str,
    fiscal_code: &'a str,
    ipa: &'a str,
    aoo: &'a str,
    code: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    protocol: &'a str,
    registered_at: &'a str,
    channel: &'a str,
    sender: &'a crate::model::Sender,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_protocol: Option<&'a str>,
    subject: &'a str,
    classifica: Classifica<'a>,
    documents: Vec<Impronta<'a>>,
}

#[derive(Serialize)]
struct Classifica<'a> {
    code: &'a str,
    label: &'a str,
}

#[derive(Serialize)]
struct Impronta<'a> {
    name: &'a str,
    mime: &'a str,
    sha256: &'a str,
    /// SHA-256 in base64, as the segnatura gives it.
    impronta: String,
}

/// A day's register as files: their names and bytes, manifest last.
pub struct DailyFiles {
    pub files: Vec<(String, Vec<u8>)>,
    pub count: usize,
}

/// Builds the day's register from the store.
pub fn build(
    store: &impl Tickets,
    reg: &RegisterConfig,
    topics: &BTreeMap<String, TopicDef>,
    date: NaiveDate,
) -> Result<DailyFiles, RegisterError> {
    let (from, until) = day_bounds(date);
    let entries = store.registrations_between(&from, &until)?;
    let changes = store.register_changes_between(&from, &until)?;
    let lines: Vec<Line> = entries.iter().map(|e| line(e, topics)).collect();
    let register = Register {
        register: Identity {
            administration: &reg.administration,
            fiscal_code: &reg.fiscal_code,
            ipa: &reg.ipa,
            aoo: &reg.aoo,
            code: &reg.code,
        },
        date: date.format("%Y-%m-%d").to_string(),
        count: entries.len(),
        first: entries.first().map(|e| e.protocol.as_str()),
        last: entries.last().map(|e| e.protocol.as_str()),
        registrations: lines,
        changes: &changes,
    };
    let stem = reg.file_stem(date);
    let mut json = serde_json::to_vec_pretty(&register)
        .map_err(|e| RegisterError::Daily(format!("cannot encode the register: {e}")))?;
    json.push(b'\n');
    let pdf = pdf(&text_lines(&register));
    let json_name = format!("{stem}.json");
    let pdf_name = format!("{stem}.pdf");
    let manifest = format!(
        "{}  {json_name}\n{}  {pdf_name}\n",
        crate::store::blobs::sha256_hex(&json),
        crate::store::blobs::sha256_hex(&pdf)
    );
    Ok(DailyFiles {
        files: vec![
            (json_name, json),
            (pdf_name, pdf),
            (format!("{stem}.sha256"), manifest.into_bytes()),
        ],
        count: entries.len(),
    })
}

fn line<'a>(e: &'a RegisterEntry, topics: &'a BTreeMap<String, TopicDef>) -> Line<'a> {
    let class = Classification::of(e.topic.as_deref().and_then(|t| topics.get(t)));
    Line {
        protocol: &e.protocol,
        registered_at: &e.registered_at,
        channel: e.channel.as_str(),
        sender: &e.sender,
        sender_protocol: e.sender_protocol.as_deref(),
        subject: &e.subject,
        classifica: Classifica {
            code: class.code,
            label: class.label,
        },
        documents: e
            .documents
            .iter()
            .map(|(name, mime, sha)| Impronta {
                name,
                mime,
                sha256: sha,
                impronta: hex::decode(sha)
                    .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// How writing went.
#[derive(Debug, PartialEq)]
pub enum Written {
    /// The files were written now.
    New(Vec<PathBuf>),
    /// The day's register was there already, byte for byte what it would be now.
    Unchanged(Vec<PathBuf>),
}

/// Writes the day's register into `dir` once: each file under a temporary name, synced,
/// renamed, the manifest last. When the manifest is there already, the files must be exactly
/// what the store gives now; anything else is refused and nothing is replaced.
pub fn write(dir: &Path, files: &DailyFiles) -> Result<Written, RegisterError> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = files.files.iter().map(|(n, _)| dir.join(n)).collect();
    let manifest = paths.last().expect("a register has its manifest");
    if manifest.exists() {
        for ((name, bytes), path) in files.files.iter().zip(&paths) {
            let there = std::fs::read(path).map_err(|e| {
                RegisterError::Daily(format!(
                    "the register was written before, but {name} cannot be read: {e}"
                ))
            })?;
            if there != *bytes {
                return Err(RegisterError::Daily(format!(
                    "the register in {} was written before and {name} differs from what the store gives now: a registration of that day changed, which must not happen; nothing was replaced",
                    dir.display()
                )));
            }
        }
        return Ok(Written::Unchanged(paths));
    }
    for ((name, bytes), path) in files.files.iter().zip(&paths) {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Written::New(paths))
}

/// The register as lines of at most [`WIDTH`] characters for the PDF.
fn text_lines(r: &Register) -> Vec<String> {
    let mut out = vec![
        "REGISTRO GIORNALIERO DI PROTOCOLLO".to_string(),
        format!(
            "{} (C.F. {}) - IPA {} - AOO {} - Registro {}",
            r.register.administration,
            r.register.fiscal_code,
            r.register.ipa,
            r.register.aoo,
            r.register.code
        ),
        format!(
            "Giorno {} - registrazioni: {} - prima: {} - ultima: {}",
            r.date,
            r.count,
            r.first.unwrap_or("-"),
            r.last.unwrap_or("-")
        ),
        String::new(),
    ];
    for l in &r.registrations {
        let sender = [
            &l.sender.name,
            &l.sender.email,
            &l.sender.phone,
            &l.sender.fax,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
        out.push(format!(
            "{}  {}  {}  {}",
            l.protocol, l.registered_at, l.channel, sender
        ));
        out.push(format!("  Oggetto: {}", l.subject));
        if let Some(p) = l.sender_protocol {
            out.push(format!("  Protocollo del mittente: {p}"));
        }
        out.push(format!(
            "  Classifica: {} {}",
            l.classifica.code, l.classifica.label
        ));
        for d in &l.documents {
            out.push(format!("  {} ({})", d.name, d.mime));
            out.push(format!("    SHA-256 {}", d.sha256));
        }
    }
    out.push(String::new());
    out.push(format!(
        "Annullamenti e modifiche del giorno: {}",
        r.changes.len()
    ));
    for c in r.changes {
        out.push(format!("{}  {}  {}  {}", c.protocol, c.at, c.kind, c.actor));
        out.push(format!("  {}", c.detail));
    }
    out.iter().flat_map(|l| wrap(l)).collect()
}

const WIDTH: usize = 100;
const LINES_PER_PAGE: usize = 70;

fn wrap(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(WIDTH)
        .enumerate()
        .map(|(i, c)| {
            let s: String = c.iter().collect();
            if i == 0 {
                s
            } else {
                format!("    {s}")
            }
        })
        .collect()
}

/// A PDF of text lines in Courier 8 pt on A4 pages, numbered. The bytes depend only on the
/// lines (no dates, no random ids), so the same register gives the same file.
fn pdf(lines: &[String]) -> Vec<u8> {
    let pages: Vec<&[String]> = if lines.is_empty() {
        vec![&[]]
    } else {
        lines.chunks(LINES_PER_PAGE).collect()
    };
    let n = pages.len();
    // Objects: 1 catalog, 2 pages, 3 font, then per page: page, content.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Count {n} /Kids [{}] >>", kids.join(" ")).into_bytes());
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>".to_vec(),
    );
    for (i, page) in pages.iter().enumerate() {
        let mut content = Vec::new();
        content.extend_from_slice(b"BT /F1 8 Tf 10 TL 40 800 Td\n");
        for l in page.iter() {
            content.push(b'(');
            content.extend(pdf_string(l));
            content.extend_from_slice(b") Tj T*\n");
        }
        content.extend_from_slice(b"ET\nBT /F1 8 Tf 500 25 Td (");
        content.extend(pdf_string(&format!("Pagina {} di {n}", i + 1)));
        content.extend_from_slice(b") Tj ET\n");
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        out.extend(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").into_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .into_bytes(),
    );
    out
}

/// A line in the font's WinAnsi encoding, with the characters a PDF string escapes escaped;
/// what WinAnsi cannot show becomes `?`.
fn pdf_string(s: &str) -> Vec<u8> {
    let (encoded, _, _) = encoding_rs::WINDOWS_1252.encode(s);
    let mut out = Vec::with_capacity(encoded.len());
    for &b in encoded.iter() {
        match b {
            b'(' | b')' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0..=31 => out.push(b' '),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_day_is_cut_at_local_midnight_in_utc() {
        let (from, until) = day_bounds(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert!(from < until, "{from} {until}");
        assert!(from.ends_with('Z') && until.ends_with('Z'));
        let span = chrono::DateTime::parse_from_rfc3339(&until).unwrap()
            - chrono::DateTime::parse_from_rfc3339(&from).unwrap();
        assert_eq!(span.num_hours(), 24);
    }

    #[test]
    fn a_write_cut_off_before_its_manifest_is_written_again_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = DailyFiles {
            files: vec![
                ("r.json".into(), b"{}\n".to_vec()),
                ("r.pdf".into(), b"%PDF".to_vec()),
                ("r.sha256".into(), b"manifest\n".to_vec()),
            ],
            count: 0,
        };
        assert!(matches!(
            write(dir.path(), &files).unwrap(),
            Written::New(_)
        ));
        // A crash after the first files, before the manifest: a half-written JSON is left.
        std::fs::remove_file(dir.path().join("r.sha256")).unwrap();
        std::fs::write(dir.path().join("r.json"), b"{").unwrap();
        assert!(matches!(
            write(dir.path(), &files).unwrap(),
            Written::New(_)
        ));
        assert_eq!(std::fs::read(dir.path().join("r.json")).unwrap(), b"{}\n");
        assert!(matches!(
            write(dir.path(), &files).unwrap(),
            Written::Unchanged(_)
        ));
        // With the manifest there, a missing file is refused, not made again.
        std::fs::remove_file(dir.path().join("r.pdf")).unwrap();
        assert!(write(dir.path(), &files).is_err());
    }

    #[test]
    fn the_pdf_escapes_and_encodes_and_is_the_same_twice() {
        assert_eq!(pdf_string("a(b)\\ è"), b"a\\(b\\)\\\\ \xe8".to_vec());
        let lines: Vec<String> = (0..150).map(|i| format!("riga {i} città")).collect();
        let a = pdf(&lines);
        assert_eq!(a, pdf(&lines));
        assert!(a.starts_with(b"%PDF-1.4"));
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("/Count 3"), "150 lines are 3 pages of 70");
        // The cross-reference table points at each object.
        let xref: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(a[xref..].starts_with(b"xref"));
    }
}
