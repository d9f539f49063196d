//! Acknowledgements and clerks' replies by text message, through gammu-smsd: each message is
//! a file in its outbox folder (files backend, gammu-smsd-files(7)), which it sends through
//! the office's GSM modem and then moves to its `sent/` (or `error/`) folder.
//!
//! A file is named `OUTC<YYYYMMDD>_<HHMMSS>_<serial>_<number>_<ticket code>.txt` (priority
//! C, below anything an operator queues by hand with A or B) and holds the text in UTF-16
//! with a byte-order mark, so accents survive whatever the machine's locale. It is written
//! under a name gammu-smsd does not read, flushed, then renamed: gammu-smsd never sends half
//! a message. Which requests are answered (mobile numbers only, at most `max_per_hour` per
//! number) is decided when the ticket is filed, as for email.

use crate::config::SmsSinkConfig;
use crate::store::{OutboxItem, Via};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const BUILTIN_IT: &str = include_str!("../../pipelines/templates/ack.sms.it.txt");
const BUILTIN_EN: &str = include_str!("../../pipelines/templates/ack.sms.en.txt");
const CLOSED_IT: &str = include_str!("../../pipelines/templates/closed.sms.it.txt");
const CLOSED_EN: &str = include_str!("../../pipelines/templates/closed.sms.en.txt");

/// Longest text sent: 10 concatenated parts of 67 UCS-2 characters. A clerk's longer reply
/// is refused when queued, not cut.
pub const MAX_CHARS: usize = 670;

pub struct SmsSender {
    outbox: PathBuf,
    office: String,
    templates: Templates,
}

/// What sending needs from this machine: the outbox folder there and writable, the
/// templates readable and valid.
pub fn start_problems(cfg: &SmsSinkConfig, pipeline_dir: &Path) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if !cfg.outbox.is_dir() {
        problems.push((
            "outbox",
            format!(
                "sms: gammu-smsd's outbox folder {} does not exist",
                cfg.outbox.display()
            ),
        ));
    }
    if let Err(problem) = templates(cfg, pipeline_dir) {
        problems.push(problem);
    }
    problems
}

/// The acknowledgement's and the closing notice's texts by language.
type Templates = [HashMap<String, String>; 2];

fn templates(
    cfg: &SmsSinkConfig,
    pipeline_dir: &Path,
) -> Result<Templates, (&'static str, String)> {
    let set = |stem, builtin| {
        super::TemplateSet {
            sink: "sms",
            given: cfg.templates.as_deref(),
            stem,
            language: cfg.language.as_deref(),
            builtin,
        }
        .load(pipeline_dir, |text| {
            super::smtp::check_placeholders(text).map(|()| text.trim().to_string())
        })
    };
    Ok([
        set("ack.sms", [("it", BUILTIN_IT), ("en", BUILTIN_EN)])?,
        set("closed.sms", [("it", CLOSED_IT), ("en", CLOSED_EN)])?,
    ])
}

/// A number gammu-smsd can send to: E.164, `+` and 8 to 15 digits.
fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

impl SmsSender {
    pub fn new(
        cfg: &SmsSinkConfig,
        pipeline_dir: &Path,
        office: Option<&str>,
    ) -> Result<SmsSender, String> {
        if let Some((_, e)) = start_problems(cfg, pipeline_dir).into_iter().next() {
            return Err(e);
        }
        Ok(SmsSender {
            outbox: cfg.outbox.clone(),
            office: office.unwrap_or("URP").to_string(),
            templates: templates(cfg, pipeline_dir).map_err(|(_, e)| e)?,
        })
    }

    /// The text of one outbox item: a clerk's reply as written, else the acknowledgement.
    pub fn text(&self, item: &OutboxItem) -> Result<String, String> {
        let text = match &item.reply {
            Some((_, body)) => body.trim().to_string(),
            None => {
                let set = &self.templates[match item.notice {
                    crate::store::Notice::Acknowledgement => 0,
                    crate::store::Notice::Closed => 1,
                }];
                let t = set
                    .get(&item.language)
                    .or_else(|| set.get("it"))
                    .ok_or("no template")?;
                super::smtp::Template::fill(t, item, &self.office)
            }
        };
        if text.chars().count() > MAX_CHARS {
            return Err(format!(
                "the text has {} characters; a text message holds at most {MAX_CHARS}",
                text.chars().count()
            ));
        }
        Ok(text)
    }

    /// Writes one message into gammu-smsd's outbox; returns the file's path.
    pub fn write(&self, item: &OutboxItem, text: &str) -> Result<PathBuf, String> {
        if !is_e164(&item.to) {
            return Err(format!("{} is not a phone number in E.164", item.to));
        }
        let now = chrono::Local::now();
        let code: String = item
            .ticket_code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let name = format!(
            "OUTC{}_{:02}_{}_{code}.txt",
            now.format("%Y%m%d_%H%M%S"),
            item.id % 100,
            item.to
        );
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let tmp = self.outbox.join(format!(".sportello-{}.tmp", item.id));
        let target = self.outbox.join(&name);
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(&self.outbox)?.sync_all()
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write to {}: {e}", self.outbox.display())
        })?;
        Ok(target)
    }
}

impl super::Sink for SmsSender {
    fn via(&self) -> Via {
        Via::Sms
    }

    fn send(&self, item: &OutboxItem, _attached: &[super::Attached]) -> Result<(), String> {
        // A text message carries no files.
        let text = self.text(item)?;
        self.write(item, &text).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(to: &str, reply: Option<&str>) -> OutboxItem {
        OutboxItem {
            id: 7,
            via: Via::Sms,
            notice: crate::store::Notice::Acknowledgement,
            ticket_code: "URP-7K3M-9QXD".into(),
            protocol: "2026/0000123".into(),
            subject: "Allaccio gas".into(),
            to: to.into(),
            message_id: "ack.7.0@sms".into(),
            in_reply_to: None,
            language: "it".into(),
            attempts: 0,
            reply: reply.map(|r| ("".to_string(), r.to_string())),
        }
    }

    #[test]
    fn a_message_is_a_whole_utf16_file_named_as_gammu_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SmsSinkConfig {
            outbox: dir.path().to_path_buf(),
            templates: None,
            language: None,
            max_per_hour: None,
        };
        let sender = SmsSender::new(&cfg, dir.path(), Some("Comune di L'Aquila")).unwrap();
        let ack = item("+393331234567", None);
        let text = sender.text(&ack).unwrap();
        assert!(
            text.contains("URP-7K3M-9QXD") && text.contains("2026/0000123"),
            "{text}"
        );
        assert!(text.starts_with("Comune di L'Aquila:"), "{text}");
        let path = sender.write(&ack, "Perché sì: è così").unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("OUTC") && name.ends_with("_07_+393331234567_URP-7K3M-9QXD.txt"),
            "{name}"
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), "Perché sì: è così");
        // Nothing else is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        assert!(sender.write(&item("TIM", None), "x").is_err());
        assert!(sender.write(&item("+39 333", None), "x").is_err());
        let long = "x".repeat(MAX_CHARS + 1);
        assert!(sender.text(&item("+393331234567", Some(&long))).is_err());
        assert_eq!(
            sender
                .text(&item("+393331234567", Some(" Risposta. ")))
                .unwrap(),
            "Risposta."
        );
    }

    #[test]
    fn a_missing_outbox_or_a_bad_template_is_a_start_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SmsSinkConfig {
            outbox: dir.path().join("nowhere"),
            templates: None,
            language: Some("de".into()),
            max_per_hour: None,
        };
        let problems = start_problems(&cfg, dir.path());
        let keys: Vec<&str> = problems.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["outbox", "language"], "{problems:?}");
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/ack.sms.it.txt"), "{codice}").unwrap();
        let problems = start_problems(&cfg, dir.path());
        assert!(
            problems[1].1.contains("unknown placeholder {codice}"),
            "{problems:?}"
        );
    }
}
