//! Text messages through the real gammu-smsd (Debian's package) and its dummy phone driver,
//! which keeps the phone's messages in a folder: messages put on the "phone" with `gammu
//! savesms` are received by gammu-smsd, written to its files backend's inbox, and filed by
//! `sportello run` from there. Malformed inbox files are written by hand in the same folder.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `sportello run --once` over the inbox; every ticket in the store.
fn file_inbox(dir: &Path, inbox: &Path, data: &Path) -> Vec<serde_json::Value> {
    let pipeline = sms_pipeline(dir, inbox);
    ok(
        data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    ok(data, &["export", "--jsonl"]).json_lines()
}

fn sms_pipeline(dir: &Path, inbox: &Path) -> PathBuf {
    let p = dir.join("sms.toml");
    let mut text = format!(
        "[[sources]]\nkind = \"sms\"\nname = \"gsm\"\npath = \"{}\"\nsettle_secs = 0.2\n\n\
         [[stages]]\nkind = \"extract\"\n\n[[stages]]\nkind = \"classify\"\nrules = \"{}\"\n",
        inbox.display(),
        project_dir().join("pipelines/rules.toml").display()
    );
    // With gammu-smsd's outbox beside its inbox: acknowledgements, one per number per hour.
    let outbox = inbox.with_file_name("outbox");
    if outbox.is_dir() {
        text.push_str(&format!(
            "\n[[sinks]]\nkind = \"sms\"\noutbox = \"{}\"\nmax_per_hour = 1\n",
            outbox.display()
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// gammu's configuration for the dummy phone in `dir/phone` and the files backend.
fn gammu_config(dir: &Path) -> PathBuf {
    let phone = dir.join("phone");
    for f in 1..=5 {
        std::fs::create_dir_all(phone.join("sms").join(f.to_string())).unwrap();
    }
    for d in ["inbox", "outbox", "sent", "error"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let cfg = dir.join("smsdrc");
    std::fs::write(
        &cfg,
        format!(
            "[gammu]\nmodel = dummy\nconnection = none\nport = {phone}\ngammuloc = /dev/null\n\n\
             [smsd]\nservice = files\ninboxpath = {d}/inbox/\noutboxpath = {d}/outbox/\n\
             sentsmspath = {d}/sent/\nerrorsmspath = {d}/error/\ninboxformat = unicode\n\
             commtimeout = 1\nreceivefrequency = 1\nmultiparttimeout = 5\ncheckbattery = 0\n\
             checksignal = 0\nlogfile = {d}/smsd.log\n",
            phone = phone.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// A message arriving on the dummy phone.
fn receive(cfg: &Path, sender: &str, text: &str) {
    let len = text.chars().count().to_string();
    let out = Command::new("gammu")
        .arg("-c")
        .arg(cfg)
        .args([
            "savesms", "TEXT", "-folder", "1", "-unread", "-sender", sender,
        ])
        .args(["-len", &len, "-text", text])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gammu savesms: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn inbox_files(inbox: &Path) -> usize {
    std::fs::read_dir(inbox)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("IN"))
                .count()
        })
        .unwrap_or(0)
}

fn messages_from_the_modem_become_one_sms_ticket_each_with_the_sender_in_e164() {
    if !tool("gammu-smsd") || !tool("gammu") {
        eprintln!("skipped: gammu-smsd and gammu are not installed (make test installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = gammu_config(tmp.path());
    let inbox = tmp.path().join("inbox");
    let long = "Buongiorno, scrivo per la ricostruzione della mia casa in via Roma 12 a Paganica, \
        danneggiata dal sisma: la pratica per il contributo di ricostruzione privata è ferma da \
        mesi e il tecnico dice che manca il parere dell'ufficio. Vorrei sapere a che punto è la \
        pratica e quali documenti devo ancora presentare per l'agibilità. Grazie, Maria Rossi";
    assert!(long.chars().count() > 320, "three parts");
    receive(
        &cfg,
        "+393331234567",
        "Chiedo l'allaccio del gas per il MAP di Paganica. Grazie",
    );
    receive(&cfg, "3339876543", long);
    receive(
        &cfg,
        "+393331234567",
        "Il contatore del gas del MAP non funziona ancora",
    );
    receive(&cfg, "TIM", "Il tuo credito residuo è di 5 euro");

    receive(
        &cfg,
        "+390862123456",
        "Segnalo una perdita di acqua in via Roma",
    );

    let smsd = Smsd(
        Command::new("gammu-smsd")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gammu-smsd"),
    );
    // 1 + 3 parts + 1 + 1 + 1 files.
    let arrived = wait_for(Duration::from_secs(60), || inbox_files(&inbox) >= 7);
    assert!(
        arrived,
        "gammu-smsd wrote {} files: {}",
        inbox_files(&inbox),
        std::fs::read_to_string(tmp.path().join("smsd.log")).unwrap_or_default()
    );

    let data = tmp.path().join("data");
    let all = file_inbox(tmp.path(), &inbox, &data);
    assert_eq!(all.len(), 5, "one ticket per message: {all:#?}");
    assert!(all.iter().all(|t| t["channel"] == "sms"));
    let find = |needle: &str| {
        all.iter()
            .find(|t| t["body"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no ticket with {needle}"))
    };
    // The three parts joined, in order, to the very text the citizen wrote.
    let rebuilt = find("via Roma 12");
    assert_eq!(rebuilt["body"], long);
    assert_eq!(rebuilt["sender"]["phone"], "+393339876543");
    assert_eq!(rebuilt["needs_attention"], false, "{rebuilt}");
    assert_eq!(rebuilt["topic"], "reconstruction", "{rebuilt}");
    let gas = find("allaccio del gas");
    assert_eq!(gas["sender"]["phone"], "+393331234567");
    assert_eq!(gas["topic"], "gas");
    assert!(gas["subject"]
        .as_str()
        .unwrap()
        .starts_with("Chiedo l'allaccio"));
    // A service's message has nobody to answer: a clerk sees it.
    let operator = find("credito residuo");
    assert_eq!(operator["needs_attention"], true);
    assert_eq!(operator["sender"]["name"], "TIM");
    // The same number's two messages are one person's dossier.
    let meter = find("contatore");
    let dossier = ok(&data, &["dossier", gas["code"].as_str().unwrap(), "--json"]);
    assert!(
        dossier.stdout.contains(meter["code"].as_str().unwrap()),
        "{}",
        dossier.stdout
    );
    assert_eq!(inbox_files(&inbox), 0, "every part left the inbox");
    assert_eq!(count_files(&inbox.join("processed")), 7);

    // Acknowledgements went out through gammu-smsd: to each mobile number once in the hour
    // (the second message from +393331234567 is over the cap), none to the service's name
    // or to the landline.
    let sent = tmp.path().join("sent");
    let sent_texts = |n: usize| {
        wait_for(Duration::from_secs(60), || count_files(&sent) >= n);
        let mut texts: Vec<(String, String)> = std::fs::read_dir(&sent)
            .unwrap()
            .flatten()
            .map(|e| {
                let bytes = std::fs::read(e.path()).unwrap();
                let units: Vec<u16> = bytes[2..]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    String::from_utf16(&units).unwrap(),
                )
            })
            .collect();
        texts.sort();
        texts
    };
    let acks = sent_texts(2);
    assert_eq!(acks.len(), 2, "{acks:?}");
    let acked = |t: &serde_json::Value, number: &str| {
        let code = t["code"].as_str().unwrap();
        acks.iter()
            .any(|(name, text)| name.contains(number) && text.contains(code))
    };
    assert!(acked(rebuilt, "+393339876543"), "{acks:?}");
    // The two messages from one number are filed in whichever order their workers finish:
    // the first is acknowledged, the second is over the cap.
    let (first, second) = if acked(gas, "+393331234567") {
        (gas, meter)
    } else {
        (meter, gas)
    };
    assert!(acked(first, "+393331234567"), "{acks:?}");
    assert!(!acked(second, "+393331234567"), "{acks:?}");
    let smsd_log = std::fs::read_to_string(tmp.path().join("smsd.log")).unwrap();
    assert!(smsd_log.contains("Transmitted OUTC"), "{smsd_log}");
    let events = |t: &serde_json::Value| {
        let shown = ok(&data, &["tickets", "show", t["code"].as_str().unwrap()]);
        shown.stdout
    };
    assert!(events(operator).contains("ack_not_sent"));
    assert!(events(find("perdita")).contains("not a mobile number"));
    assert!(events(second).contains("ack_not_sent"));

    // A clerk answers a text message by text message.
    let code = meter["code"].as_str().unwrap();
    ok(
        &data,
        &[
            "tickets",
            "reply",
            code,
            "--subject",
            "Contatore",
            "--text",
            "Il tecnico passerà giovedì mattina per il contatore.",
        ],
    );
    // Closing a request tells its citizen, by the way the acknowledgement went.
    let first_code = first["code"].as_str().unwrap();
    ok(&data, &["tickets", "status", first_code, "closed"]);
    file_inbox(tmp.path(), &inbox, &data);
    let all_sent = sent_texts(4);
    assert!(
        all_sent
            .iter()
            .any(|(_, text)| text == "Il tecnico passerà giovedì mattina per il contatore."),
        "{all_sent:?}"
    );
    assert!(
        all_sent
            .iter()
            .any(|(name, text)| name.contains(first_code) && text.contains("è stata conclusa")),
        "{all_sent:?}"
    );
    drop(smsd);
}

/// gammu-smsd, stopped with the test.
struct Smsd(std::process::Child);

impl Drop for Smsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn malformed_inbox_files_make_flagged_tickets_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let files: [(&str, &[u8]); 5] = [
        // An 8-bit data message.
        (
            "IN20261201_101500_00_+393331234567_00.bin",
            b"\x05\x00\x03\x01\x02",
        ),
        // UTF-16 cut short.
        (
            "IN20261201_101501_00_+393331234567_00.txt",
            b"\xfe\xff\x00A\x00",
        ),
        // Not gammu's backup format.
        (
            "IN20261201_101502_00_+393331234567_00.smsbackup",
            b"garbage\x00\xff",
        ),
        // A name gammu-smsd never writes.
        ("appunti.docx", b"PK\x03\x04 not really"),
        // The first part of a message is fine, its second is data.
        (
            "IN20261201_101503_00_+393331234567_00.txt",
            b"Chiedo un incontro per la pratica ",
        ),
    ];
    for (name, bytes) in files {
        std::fs::write(inbox.join(name), bytes).unwrap();
    }
    std::fs::write(
        inbox.join("IN20261201_101503_00_+393331234567_01.bin"),
        b"\x00\x01",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let all = file_inbox(tmp.path(), &inbox, &data);
    assert_eq!(all.len(), 5, "{all:#?}");
    for t in &all {
        assert_eq!(t["needs_attention"], true, "{t}");
        assert!(
            t["attention_reason"].as_str().unwrap().contains("sms:"),
            "{t}"
        );
    }
    let joined = all
        .iter()
        .find(|t| t["body"].as_str().unwrap().contains("incontro"))
        .expect("the readable part is kept");
    assert!(joined["attention_reason"]
        .as_str()
        .unwrap()
        .contains("_01.bin"));
    // A file with nothing readable is the ticket's document, byte for byte.
    let docx = all
        .iter()
        .find(|t| t["documents"][0]["name"] == "appunti.docx")
        .expect("the stray file has its ticket");
    assert_eq!(docx["documents"][0]["size"], 15);
    assert_eq!(inbox_files(&inbox), 0);
    assert!(!inbox.join("appunti.docx").exists());
}

on_both_backends!(
    messages_from_the_modem_become_one_sms_ticket_each_with_the_sender_in_e164,
    malformed_inbox_files_make_flagged_tickets_and_lose_nothing,
);
