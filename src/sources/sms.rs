//! Text messages from the office's GSM modem, as gammu-smsd's files backend leaves them in
//! its inbox folder: one file per part, named `IN<YYYYMMDD>_<HHMMSS>_<serial>_<sender>_<part>.<ext>`
//! (gammu-smsd-files(7)).
//!
//! The parts of a long message share everything but `<part>`; they are joined, in order,
//! into one ticket once every part has settled. The text is read in whichever `InboxFormat`
//! gammu-smsd was set to: `unicode` (UTF-16 with a byte-order mark), `standard` (the system's
//! charset: UTF-8, else Windows-1252) or `detail` (`.smsbackup`, gammu's backup format).
//! The ticket's document is the joined text in UTF-8; the part files themselves move to
//! `processed/` as any drop folder's files do. A part that cannot be read (8-bit data, a
//! malformed file) flags the ticket and is named in it; nothing is dropped.

use crate::config::SpoolSourceConfig;
use crate::model::{Channel, Sender};
use crate::pipeline::Item;
use crate::sources::folder::{self, GroupedFolder};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a gammu-smsd inbox file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InName {
    /// `YYYYMMDD_HHMMSS_serial`: with the sender, the message the part belongs to.
    pub stamp: String,
    pub sender: String,
    pub part: u32,
    pub ext: String,
}

impl InName {
    /// `IN20261201_030555_00_+393331234567_01.txt`; `None` for any other name.
    pub fn parse(name: &str) -> Option<InName> {
        let rest = name.strip_prefix("IN")?;
        let (stem, ext) = rest.rsplit_once('.')?;
        let (head, part) = stem.rsplit_once('_')?;
        let mut fields = head.splitn(4, '_');
        let (date, time, serial, sender) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !(digits(date, 8..=8)
            && digits(time, 6..=6)
            && digits(serial, 1..=6)
            && digits(part, 1..=6))
            || sender.is_empty()
        {
            return None;
        }
        Some(InName {
            stamp: format!("{date}_{time}_{serial}"),
            sender: sender.to_string(),
            part: part.parse().ok()?,
            ext: ext.to_ascii_lowercase(),
        })
    }

    /// The message a part belongs to.
    fn message(&self) -> (String, String) {
        (self.stamp.clone(), self.sender.clone())
    }
}

/// The group a file of the inbox belongs to: its message, or itself for a name gammu-smsd
/// does not write.
fn group_of(path: &Path) -> (String, String) {
    let name = file_name(path);
    match InName::parse(&name) {
        Some(n) => n.message(),
        None => (name, String::new()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The text of one part file, by its extension and content.
pub fn part_text(ext: &str, bytes: &[u8]) -> Result<String, String> {
    let text = match ext {
        "txt" => plain_text(bytes),
        "smsbackup" => backup_text(bytes),
        "bin" => Err("an 8-bit data message, not text".into()),
        other => Err(format!("`.{other}` is not a gammu-smsd message file")),
    }?;
    // gammu-smsd pads some parts with NUL characters; no message means them.
    Ok(if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    })
}

/// `unicode` (UTF-16, gammu writes a byte-order mark) or `standard` (the system charset).
fn plain_text(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |enc: &'static encoding_rs::Encoding, body: &[u8]| {
        if !body.len().is_multiple_of(2) {
            return Err("UTF-16 text with an odd number of bytes: the file is cut short".into());
        }
        enc.decode_without_bom_handling_and_without_replacement(body)
            .map(|t| t.into_owned())
            .ok_or_else(|| "malformed UTF-16 text".to_string())
    };
    match bytes {
        [0xFE, 0xFF, rest @ ..] => utf16(encoding_rs::UTF_16BE, rest),
        [0xFF, 0xFE, rest @ ..] => utf16(encoding_rs::UTF_16LE, rest),
        // UTF-16 without its mark: every other byte of Latin text is zero.
        [0, b, ..] if *b != 0 && looks_utf16(bytes, 0) => utf16(encoding_rs::UTF_16BE, bytes),
        [b, 0, ..] if *b != 0 && looks_utf16(bytes, 1) => utf16(encoding_rs::UTF_16LE, bytes),
        _ => match std::str::from_utf8(bytes) {
            Ok(t) => Ok(t.strip_prefix('\u{feff}').unwrap_or(t).to_string()),
            Err(_) if bytes.contains(&0) => Err("binary data, not text".into()),
            // A system charset other than UTF-8: gammu's Italian users have Latin ones.
            Err(_) => Ok(encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned()),
        },
    }
}

fn looks_utf16(bytes: &[u8], zero_at: usize) -> bool {
    let pairs = bytes.len() / 2;
    pairs > 0
        && bytes
            .chunks_exact(2)
            .filter(|pair| pair[zero_at] == 0)
            .count()
            * 10
            >= pairs * 9
}

/// gammu's backup format (gammu-smsbackup(5)): `TextNN` keys hold the text as hex UCS-2.
fn backup_text(bytes: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut hex: Vec<(u32, String)> = Vec::new();
    let mut coding = None;
    let mut in_sms = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // Each section is one physical part; an inbox file holds one.
            if in_sms {
                break;
            }
            in_sms = line.to_ascii_lowercase().starts_with("[smsbackup");
            continue;
        }
        if !in_sms || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if let Some(n) = key.strip_prefix("Text").and_then(|n| n.parse::<u32>().ok()) {
            hex.push((n, value.to_string()));
        } else if key.eq_ignore_ascii_case("Coding") {
            coding = Some(value.to_ascii_lowercase());
        }
    }
    if !in_sms {
        return Err("no [SMSBackup] section: not gammu's backup format".into());
    }
    if coding.as_deref().is_some_and(|c| c.contains("8bit")) {
        return Err("an 8-bit data message, not text".into());
    }
    if hex.is_empty() {
        return Err("no text in the backup file".into());
    }
    hex.sort_by_key(|(n, _)| *n);
    let joined: String = hex.into_iter().map(|(_, h)| h).collect();
    if !joined.len().is_multiple_of(4) {
        return Err("the backup's text is not whole UCS-2 characters".into());
    }
    let mut units = Vec::with_capacity(joined.len() / 4);
    for i in (0..joined.len()).step_by(4) {
        let unit = joined
            .get(i..i + 4)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .ok_or_else(|| "the backup's text is not hexadecimal".to_string())?;
        units.push(unit);
    }
    String::from_utf16(&units).map_err(|_| "malformed UCS-2 text in the backup".into())
}

/// Watches gammu-smsd's inbox folder.
pub struct SmsSource {
    pub files: GroupedFolder,
}

impl SmsSource {
    pub fn new(cfg: &SpoolSourceConfig) -> Result<SmsSource, String> {
        Ok(SmsSource {
            files: GroupedFolder::new(cfg.folder(Channel::Sms))?,
        })
    }

    /// Whole messages whose parts have all settled, each keyed by its first part's path.
    pub fn take_ready(&mut self) -> Vec<(PathBuf, Vec<PathBuf>)> {
        self.files
            .take_ready(group_of)
            .into_iter()
            .filter_map(|mut paths| {
                // Parts in their order (their names sort so too, up to 99 parts).
                paths.sort_by_key(|p| InName::parse(&file_name(p)).map(|n| n.part));
                Some((paths.first()?.clone(), paths))
            })
            .collect()
    }

    /// Reads a message's parts into one item.
    pub fn item(&self, paths: &[PathBuf]) -> std::io::Result<Item> {
        let first = paths
            .first()
            .ok_or_else(|| std::io::Error::other("a message with no parts"))?;
        let mut parts = Vec::with_capacity(paths.len());
        for p in paths {
            parts.push((file_name(p), fs::read(p)?));
        }
        let meta = fs::metadata(first)?;
        let last_written = paths
            .iter()
            .filter_map(|p| fs::metadata(p).ok()?.modified().ok())
            .max();
        let mut item = message_item(&self.files.folder.cfg.name, &parts);
        item.mtime_ns = meta.modified().ok().and_then(folder::mtime_ns);
        item.received_at = last_written.map(folder::rfc3339);
        self.files.hold(first, paths);
        Ok(item)
    }
}

/// One ticket's item from the files of one message: the parts' text joined, the sender's
/// number in E.164; a part that cannot be read is marked in the text and flags the ticket.
pub fn message_item(source: &str, parts: &[(String, Vec<u8>)]) -> Item {
    let mut attention = Vec::new();
    let first_name = parts.first().map(|(n, _)| n.clone()).unwrap_or_default();
    let name = InName::parse(&first_name);
    let mut texts = Vec::new();
    let mut unreadable = 0;
    for (file, bytes) in parts {
        let read = match InName::parse(file) {
            Some(n) => part_text(&n.ext, bytes),
            None => Err(
                "the name is not gammu-smsd's IN<date>_<time>_<serial>_<sender>_<part>.<ext>"
                    .to_string(),
            ),
        };
        match read {
            Ok(t) => texts.push(t),
            Err(e) => {
                unreadable += 1;
                attention.push(format!("sms: {file}: {e}"));
                texts.push(format!("[{file}: {e}]"));
            }
        }
    }
    let mut sender = Sender::default();
    if let Some(n) = &name {
        match crate::entities::normalize_phone(&n.sender) {
            Some(e164) => sender.phone = Some(e164),
            None => {
                // An operator's or a service's name, or a short code: nobody to answer.
                sender.name = Some(n.sender.clone());
                attention.push(format!(
                    "sms: the sender `{}` is not a phone number, so it cannot be answered",
                    n.sender
                ));
            }
        }
    }
    // Nothing readable in a single file: the file itself is the document, kept as it came.
    let bytes = if unreadable == parts.len() && parts.len() == 1 {
        parts[0].1.clone()
    } else {
        texts.concat().into_bytes()
    };
    let doc_name = match &name {
        Some(n) if unreadable < parts.len() => format!("sms-{}-{}.txt", n.stamp, n.sender),
        _ => first_name.clone(),
    };
    Item {
        source: source.to_string(),
        origin: first_name,
        channel: Some(Channel::Sms),
        name: doc_name,
        bytes: Arc::new(bytes),
        mtime_ns: None,
        received_at: None,
        sender,
        attention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16be(text: &str) -> Vec<u8> {
        let mut out = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            out.extend(u.to_be_bytes());
        }
        out
    }

    #[test]
    fn names_are_read_as_gammu_writes_them() {
        let n = InName::parse("IN20261201_030555_00_+393331234567_01.txt").unwrap();
        assert_eq!(n.stamp, "20261201_030555_00");
        assert_eq!(n.sender, "+393331234567");
        assert_eq!(n.part, 1);
        assert_eq!(n.ext, "txt");
        // A sender's name may hold underscores.
        let n = InName::parse("IN20261201_030555_01_Info_Gas_00.smsbackup").unwrap();
        assert_eq!(n.sender, "Info_Gas");
        for bad in [
            "OUT+393331234567.txt",
            "IN2026121_030555_00_+39333_00.txt",
            "IN20261201_030555_00__00.txt",
            "IN20261201_030555_00_+39333_xx.txt",
            "IN20261201_030555_00_+39333_00",
            "lettera.pdf",
        ] {
            assert_eq!(InName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_inbox_format_is_read() {
        let text = "Perché il contatore del gas è fermo? Grazie.";
        assert_eq!(part_text("txt", &utf16be(text)).unwrap(), text);
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(part_text("txt", &le).unwrap(), text);
        assert_eq!(part_text("txt", text.as_bytes()).unwrap(), text);
        let latin: Vec<u8> = encoding_rs::WINDOWS_1252.encode(text).0.into_owned();
        assert_eq!(part_text("txt", &latin).unwrap(), text);
        let hex: String = text.encode_utf16().map(|u| format!("{u:04X}")).collect();
        let backup = format!(
            "; comment\n[SMSBackup000]\n; {text}\nNumber = \"+393331234567\"\nText00 = {}\nText01 = {}\nCoding = Default_No_Compression\n",
            &hex[..40],
            &hex[40..]
        );
        assert_eq!(part_text("smsbackup", backup.as_bytes()).unwrap(), text);
    }

    #[test]
    fn what_is_not_text_is_refused_with_a_reason() {
        assert!(part_text("bin", b"\x01\x02").unwrap_err().contains("8-bit"));
        assert!(part_text("txt", &[0xFE, 0xFF, 0x00])
            .unwrap_err()
            .contains("odd"));
        assert!(part_text("txt", &[0xFE, 0xFF, 0xDC, 0x00])
            .unwrap_err()
            .contains("malformed"));
        assert!(part_text("txt", b"\x00\x00\x01\xff\x80").is_err());
        assert!(part_text("smsbackup", b"[Other]\nText00 = 0041\n").is_err());
        assert!(part_text("smsbackup", b"[SMSBackup000]\nText00 = 00Z1\n").is_err());
        assert!(part_text("smsbackup", b"[SMSBackup000]\nText00 = 004\n").is_err());
        assert!(part_text(
            "smsbackup",
            b"[SMSBackup000]\nCoding = 8bit\nText00 = 0041\n"
        )
        .unwrap_err()
        .contains("8-bit"));
        assert!(part_text("docx", b"x").is_err());
    }

    #[test]
    fn parts_are_joined_in_order_and_a_bad_part_flags_the_ticket() {
        let parts = vec![
            (
                "IN20261201_030555_00_3331234567_00.txt".to_string(),
                utf16be("Chiedo l'allaccio del gas per il MA"),
            ),
            (
                "IN20261201_030555_00_3331234567_01.txt".to_string(),
                utf16be("P di Paganica."),
            ),
        ];
        let item = message_item("sms", &parts);
        assert_eq!(
            std::str::from_utf8(&item.bytes).unwrap(),
            "Chiedo l'allaccio del gas per il MAP di Paganica."
        );
        assert_eq!(item.sender.phone.as_deref(), Some("+393331234567"));
        assert_eq!(item.channel, Some(Channel::Sms));
        assert!(item.attention.is_empty(), "{:?}", item.attention);
        assert_eq!(item.origin, parts[0].0);

        let mut broken = parts.clone();
        broken[1] = (
            "IN20261201_030555_00_3331234567_01.bin".into(),
            vec![1, 2, 3],
        );
        let item = message_item("sms", &broken);
        let text = std::str::from_utf8(&item.bytes).unwrap();
        assert!(
            text.starts_with("Chiedo") && text.contains("8-bit"),
            "{text}"
        );
        assert_eq!(item.attention.len(), 1);

        // A service's name as sender: kept as a name, flagged, never answered.
        let item = message_item(
            "sms",
            &[(
                "IN20261201_030555_00_TIM_00.txt".to_string(),
                b"Credito residuo 5 euro".to_vec(),
            )],
        );
        assert_eq!(item.sender.phone, None);
        assert_eq!(item.sender.name.as_deref(), Some("TIM"));
        assert!(item.attention[0].contains("not a phone number"));

        // One unreadable file: the file itself is kept as the document.
        let junk = vec![0u8, 0, 0, 1, 2, 3];
        let item = message_item("sms", &[("README".to_string(), junk.clone())]);
        assert_eq!(*item.bytes, junk);
        assert!(item.attention[0].contains("not gammu-smsd's"));
    }

    #[test]
    fn a_message_waits_for_all_its_parts_to_settle() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolSourceConfig {
            name: "sms".into(),
            path: dir.path().to_path_buf(),
            settle_secs: 0.3,
            rescan_secs: 1,
            poll: true,
            processed_dir: None,
            failed_dir: None,
        };
        let mut src = SmsSource::new(&cfg).unwrap();
        let scan = |src: &mut SmsSource| src.files.folder.scan();
        let p0 = dir.path().join("IN20261201_030555_00_+393331234567_00.txt");
        let p1 = dir.path().join("IN20261201_030555_00_+393331234567_01.txt");
        let other = dir.path().join("IN20261201_030556_00_+393339999999_00.txt");
        fs::write(&p0, utf16be("Prima parte, ")).unwrap();
        fs::write(&other, "Un altro messaggio").unwrap();
        scan(&mut src);
        std::thread::sleep(std::time::Duration::from_millis(350));
        // The second part arrives just before the scan: the message waits for it.
        fs::write(&p1, utf16be("seconda parte.")).unwrap();
        scan(&mut src);
        let ready = src.take_ready();
        assert_eq!(ready, vec![(other.clone(), vec![other.clone()])]);
        std::thread::sleep(std::time::Duration::from_millis(350));
        scan(&mut src);
        let ready = src.take_ready();
        assert_eq!(ready, vec![(p0.clone(), vec![p0.clone(), p1.clone()])]);
        let item = src.item(&ready[0].1).unwrap();
        assert_eq!(
            std::str::from_utf8(&item.bytes).unwrap(),
            "Prima parte, seconda parte."
        );
        src.files.finish(&p0).unwrap();
        assert!(!p0.exists() && !p1.exists());
        assert!(dir
            .path()
            .join("processed")
            .join(p1.file_name().unwrap())
            .exists());
    }
}
