//! The toll-free line's voicemail, as Asterisk keeps a mailbox: in its `INBOX` folder each
//! message is a recording (`msg0000.wav`, or `.WAV`/`.gsm` by the box's formats) beside a
//! description (`msg0000.txt`: an INI `[message]` section with `callerid`, `origtime`,
//! `duration`…).
//!
//! A message becomes one ticket of channel `phone`: the caller's number (E.164) as sender,
//! which links their calls, messages and letters in one dossier; the recording as its
//! document, with how long it plays. Nobody transcribes speech here: the ticket is flagged for
//! a clerk to listen to it and write its summary. A description that cannot be read, a
//! withheld number or a missing recording flag the ticket too, and nothing is dropped.
//!
//! Asterisk numbers a box's messages from `msg0000` again once they have left it; filed
//! files move to `processed/` (by default inside the box, where Asterisk does not look),
//! renamed if the name is taken.

use crate::config::SpoolSourceConfig;
use crate::model::{Channel, Sender};
use crate::pipeline::Item;
use crate::sources::folder::{self, GroupedFolder};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a message's description says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Description {
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    /// When the call was taken (seconds since 1970).
    pub origtime: Option<i64>,
    pub duration_secs: Option<u32>,
}

/// Reads `msgNNNN.txt`: the `[message]` section's keys; other sections and comments are
/// skipped. An error says why there is no such section.
pub fn parse_description(text: &str) -> Result<Description, String> {
    let mut d = Description::default();
    let mut in_message = false;
    let mut seen = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with(';') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            in_message = line.eq_ignore_ascii_case("[message]");
            seen |= in_message;
            continue;
        }
        if !in_message {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "callerid" => {
                let (name, number) = split_callerid(value);
                d.caller_name = name;
                d.caller_number = number;
            }
            "origtime" => d.origtime = value.parse().ok(),
            "duration" => d.duration_secs = value.parse().ok(),
            _ => {}
        }
    }
    if !seen {
        return Err("no [message] section: not an Asterisk voicemail description".into());
    }
    Ok(d)
}

/// `"Mario Rossi" <0862123456>` → name and number; `<0862…>` or `0862…` → the number;
/// `Unknown`, `Anonymous`, empty → neither.
pub fn split_callerid(value: &str) -> (Option<String>, Option<String>) {
    let (name, number) = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (&value[..open], value[open + 1..close].trim())
        }
        _ if value.chars().any(|c| c.is_ascii_digit()) => ("", value),
        _ => (value, ""),
    };
    let name = name.trim().trim_matches('"').trim();
    let unknown = |s: &str| {
        s.is_empty()
            || ["unknown", "anonymous", "private", "restricted", "asterisk"]
                .contains(&s.to_ascii_lowercase().as_str())
    };
    (
        (!unknown(name)).then(|| name.to_string()),
        (!unknown(number) && number.chars().any(|c| c.is_ascii_digit()))
            .then(|| number.to_string()),
    )
}

/// The sender from a caller id's name and number, and what to flag about them.
pub fn caller(name: Option<String>, number: Option<&str>, attention: &mut Vec<String>) -> Sender {
    let mut sender = Sender {
        name,
        ..Sender::default()
    };
    match number {
        Some(raw) => match crate::entities::normalize_phone(raw) {
            Some(e164) => sender.phone = Some(e164),
            None => {
                // Kept as it came, for a clerk: an internal extension, a foreign format.
                sender.phone = Some(raw.to_string());
                attention.push(format!(
                    "voicemail: the caller's number `{raw}` is not a number we can call back"
                ));
            }
        },
        None => attention.push("voicemail: the caller's number was withheld".into()),
    }
    sender
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A message's files share their stem (`msg0000`).
fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Watches a voicemail box's `INBOX` folder.
pub struct VoicemailSource {
    pub files: GroupedFolder,
}

impl VoicemailSource {
    pub fn new(cfg: &SpoolSourceConfig) -> Result<VoicemailSource, String> {
        Ok(VoicemailSource {
            files: GroupedFolder::new(cfg.folder(Channel::Phone))?,
        })
    }

    /// Whole messages (recording and description) once both have settled.
    pub fn take_ready(&mut self) -> Vec<(PathBuf, Vec<PathBuf>)> {
        self.files
            .take_ready(stem_of)
            .into_iter()
            .filter_map(|paths| Some((paths.first()?.clone(), paths)))
            .collect()
    }

    /// Reads a message's files into one item: the recording is its document.
    pub fn item(&self, paths: &[PathBuf]) -> std::io::Result<Item> {
        let key = paths
            .first()
            .ok_or_else(|| std::io::Error::other("a message with no files"))?;
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            files.push((file_name(p), fs::read(p)?));
        }
        let mut item = message_item(&self.files.folder.cfg.name, &files);
        let recording = recording_of(&files).map_or(key.clone(), |i| paths[i].clone());
        let mtime = fs::metadata(&recording)?.modified().ok();
        item.mtime_ns = mtime.and_then(folder::mtime_ns);
        if item.received_at.is_none() {
            item.received_at = mtime.map(folder::rfc3339);
        }
        self.files.hold(key, paths);
        Ok(item)
    }
}

/// Which file is the recording: a WAV first (what the ticket page plays), else any other
/// format the box keeps.
fn recording_of(files: &[(String, Vec<u8>)]) -> Option<usize> {
    let ext = |n: &str| {
        Path::new(n)
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    files
        .iter()
        .position(|(n, _)| ext(n) == "wav")
        .or_else(|| files.iter().position(|(n, _)| ext(n) == "WAV"))
        .or_else(|| files.iter().position(|(n, _)| ext(n) != "txt"))
}

/// One ticket's item from a message's files (name, bytes).
pub fn message_item(source: &str, files: &[(String, Vec<u8>)]) -> Item {
    let mut attention = vec![crate::domain::VOICEMAIL_ATTENTION.to_string()];
    let description = files.iter().find(|(n, _)| n.ends_with(".txt"));
    let d = match description {
        Some((name, bytes)) => {
            parse_description(&String::from_utf8_lossy(bytes)).unwrap_or_else(|e| {
                attention.push(format!("voicemail: {name}: {e}"));
                Description::default()
            })
        }
        None => {
            attention.push("voicemail: no description (.txt) beside the recording".into());
            Description::default()
        }
    };
    let sender = caller(d.caller_name, d.caller_number.as_deref(), &mut attention);
    let (name, bytes) = match recording_of(files) {
        Some(i) => files[i].clone(),
        None => {
            attention.push("voicemail: no recording beside the description".into());
            files.first().cloned().unwrap_or_default()
        }
    };
    let received_at = d
        .origtime
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Item {
        source: source.to_string(),
        origin: name.clone(),
        channel: Some(Channel::Phone),
        name,
        bytes: Arc::new(bytes),
        mtime_ns: None,
        received_at,
        sender,
        attention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIPTION: &str = ";\n; Message Information file\n;\n[message]\norigmailbox=800\n\
        context=numero-verde\nmacrocontext=\nexten=s\nrdnis=unknown\npriority=2\n\
        callerchan=SIP/trunk-00000001\ncallerid=\"Mario Rossi\" <0862 123456>\n\
        origdate=Tue Dec  1 09:15:00 AM UTC 2026\norigtime=1796116500\ncategory=\n\
        msg_id=1796116500-00000001\nflag=\nduration=23\n";

    #[test]
    fn the_description_names_the_caller_and_the_time() {
        let d = parse_description(DESCRIPTION).unwrap();
        assert_eq!(d.caller_name.as_deref(), Some("Mario Rossi"));
        assert_eq!(d.caller_number.as_deref(), Some("0862 123456"));
        assert_eq!(d.origtime, Some(1796116500));
        assert_eq!(d.duration_secs, Some(23));
        assert_eq!(
            split_callerid("<3331234567>"),
            (None, Some("3331234567".into()))
        );
        assert_eq!(
            split_callerid("+393331234567"),
            (None, Some("+393331234567".into()))
        );
        assert_eq!(split_callerid("\"Anonymous\" <anonymous>"), (None, None));
        assert_eq!(split_callerid("Unknown"), (None, None));
        assert!(parse_description("garbage\x00\x01").is_err());
    }

    #[test]
    fn a_message_is_one_phone_ticket_flagged_for_listening() {
        let wav = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
        let files = vec![
            ("msg0000.WAV".to_string(), b"gsm".to_vec()),
            ("msg0000.txt".to_string(), DESCRIPTION.as_bytes().to_vec()),
            ("msg0000.wav".to_string(), wav.clone()),
        ];
        let item = message_item("numero-verde", &files);
        assert_eq!(item.channel, Some(Channel::Phone));
        assert_eq!(item.name, "msg0000.wav");
        assert_eq!(*item.bytes, wav);
        assert_eq!(item.sender.phone.as_deref(), Some("+390862123456"));
        assert_eq!(item.sender.name.as_deref(), Some("Mario Rossi"));
        assert_eq!(item.received_at.as_deref(), Some("2026-12-01T09:15:00Z"));
        assert_eq!(item.attention, [crate::domain::VOICEMAIL_ATTENTION]);

        // Withheld number, no description, no recording: each is said.
        let item = message_item("nv", &[("msg0001.wav".into(), wav.clone())]);
        assert!(item.attention.iter().any(|a| a.contains("no description")));
        assert!(item.attention.iter().any(|a| a.contains("withheld")));
        let item = message_item("nv", &[("msg0002.txt".into(), DESCRIPTION.into())]);
        assert!(item.attention.iter().any(|a| a.contains("no recording")));
        assert_eq!(item.name, "msg0002.txt");
    }
}
