//! The toll-free line's voicemail, from Asterisk's mailbox folder and from its
//! voicemail-to-email messages, beside text messages from the same caller: one dossier by
//! phone number; a clerk listens and writes the summary, which search finds.

mod common;
use common::*;
use std::path::Path;

fn wav(secs: u32) -> Vec<u8> {
    sportello::testdata::wav_silence(secs.into())
}

/// Base64 in lines of 76, as mail carries attachments.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn description(callerid: &str, origtime: i64, duration: u32) -> String {
    format!(
        ";\n; Message Information file\n;\n[message]\norigmailbox=800\ncontext=numero-verde\n\
         exten=s\npriority=2\ncallerchan=SIP/trunk-00000001\ncallerid={callerid}\n\
         origtime={origtime}\ncategory=\nmsg_id={origtime}-00000001\nflag=\nduration={duration}\n"
    )
}

fn pipeline(dir: &Path, vm: &Path, sms: &Path) -> std::path::PathBuf {
    let p = dir.join("phone.toml");
    std::fs::write(
        &p,
        format!(
            "[[sources]]\nkind = \"voicemail\"\nname = \"numero-verde\"\npath = \"{}\"\nsettle_secs = 0.2\n\n\
             [[sources]]\nkind = \"sms\"\nname = \"gsm\"\npath = \"{}\"\nsettle_secs = 0.2\n\n\
             [[stages]]\nkind = \"extract\"\n",
            vm.display(),
            sms.display()
        ),
    )
    .unwrap();
    p
}

fn voicemail_becomes_a_phone_ticket_in_the_callers_dossier_and_its_summary_is_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let (vm, sms, data) = (
        tmp.path().join("INBOX"),
        tmp.path().join("sms"),
        tmp.path().join("data"),
    );
    std::fs::create_dir_all(&vm).unwrap();
    std::fs::create_dir_all(&sms).unwrap();
    std::fs::write(vm.join("msg0000.wav"), wav(2)).unwrap();
    std::fs::write(
        vm.join("msg0000.txt"),
        description("\"Maria Rossi\" <3331234567>", 1796116500, 2),
    )
    .unwrap();
    // A withheld number.
    std::fs::write(vm.join("msg0001.wav"), wav(1)).unwrap();
    std::fs::write(
        vm.join("msg0001.txt"),
        description("\"Anonymous\" <anonymous>", 1796116600, 1),
    )
    .unwrap();
    // A recording that is not audio at all.
    std::fs::write(vm.join("msg0002.wav"), b"<html>not a recording</html>").unwrap();
    std::fs::write(
        vm.join("msg0002.txt"),
        description("<0862123456>", 1796116700, 9),
    )
    .unwrap();
    // The same caller wrote a text message too.
    std::fs::write(
        sms.join("IN20261201_091000_00_+393331234567_00.txt"),
        "Vi ho lasciato un messaggio in segreteria per il contatore del gas",
    )
    .unwrap();
    let pipeline = pipeline(tmp.path(), &vm, &sms);
    ok(
        &data,
        &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
    );
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), 4, "{all:#?}");
    let by_doc = |name: &str| {
        all.iter()
            .find(|t| t["documents"][0]["name"] == name)
            .unwrap_or_else(|| panic!("no ticket for {name}: {all:#?}"))
    };
    let call = by_doc("msg0000.wav");
    assert_eq!(call["channel"], "phone");
    assert_eq!(call["sender"]["phone"], "+393331234567");
    assert_eq!(call["sender"]["name"], "Maria Rossi");
    assert_eq!(call["received_at"], "2026-12-01T09:15:00Z");
    assert_eq!(call["documents"][0]["mime"], "audio/wav");
    assert_eq!(call["documents"][0]["duration_secs"], 2.0);
    assert_eq!(call["needs_attention"], true);
    assert!(call["attention_reason"]
        .as_str()
        .unwrap()
        .contains("listen to the message"));
    assert_eq!(
        call["subject"],
        "Messaggio vocale di 2 s da Maria Rossi (+393331234567)"
    );
    let code = call["code"].as_str().unwrap();
    // One dossier with the caller's text message, by the number.
    let text = all.iter().find(|t| t["channel"] == "sms").unwrap();
    let dossier = ok(&data, &["dossier", code, "--json"]);
    assert!(
        dossier.stdout.contains(text["code"].as_str().unwrap()),
        "{}",
        dossier.stdout
    );
    let withheld = by_doc("msg0001.wav");
    assert!(withheld["attention_reason"]
        .as_str()
        .unwrap()
        .contains("withheld"));
    assert_eq!(
        withheld["subject"],
        "Messaggio vocale di 1 s da numero nascosto"
    );
    let broken = by_doc("msg0002.wav");
    assert_eq!(broken["needs_attention"], true);
    assert!(
        broken["documents"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a WAV"),
        "{broken}"
    );
    assert!(vm.join("failed/msg0002.wav").exists() && vm.join("failed/msg0002.txt").exists());
    assert!(vm.join("processed/msg0000.wav").exists() && vm.join("processed/msg0000.txt").exists());

    // A clerk listens and writes what was said: found by search, the flag settled.
    assert_eq!(
        ok(&data, &["search", "tecnico"]).stdout.trim(),
        "",
        "nothing says it yet"
    );
    ok(
        &data,
        &[
            "tickets",
            "summary",
            code,
            "Chiede quando passa il tecnico per il contatore del gas al MAP",
            "--by",
            "anna",
        ],
    );
    let found = ok(&data, &["search", "tecnici"]);
    assert!(found.stdout.contains(code), "{}", found.stdout);
    let shown = ok(&data, &["export", "--jsonl"]).json_lines();
    let call = shown.iter().find(|t| t["code"] == code).unwrap();
    assert_eq!(call["needs_attention"], false, "{call}");
    assert_eq!(
        call["summary"],
        "Chiede quando passa il tecnico per il contatore del gas al MAP"
    );
    assert!(call["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "summarized" && e["actor"] == "anna"));
    // An empty summary is refused with a reason.
    let empty = sportello(&data, &["tickets", "summary", code, "  "]);
    assert!(!empty.status.success());
    assert!(
        empty.stderr.contains("summary: missing"),
        "{}",
        empty.stderr
    );
}

fn a_voicemail_sent_on_by_email_is_the_same_kind_of_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let audio = base64(&wav(3));
    let message = format!(
        "From: Centralino <asterisk@pbx.comune.example.it>\r\nTo: urp@comune.example.it\r\n\
         Subject: [PBX]: New message 3 in mailbox 800\r\nDate: Tue, 1 Dec 2026 10:00:00 +0100\r\n\
         Message-ID: <vm-3@pbx.comune.example.it>\r\nX-Asterisk-VM-Message-Num: 3\r\n\
         X-Asterisk-VM-Context: numero-verde\r\nX-Asterisk-VM-Extension: 800\r\n\
         X-Asterisk-VM-Caller-ID-Num: 3339876543\r\nX-Asterisk-VM-Caller-ID-Name: Luca Bianchi\r\n\
         X-Asterisk-VM-Duration: 3\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nDear user, you have a new message of 0:03 from Luca Bianchi.\r\n\
         --b1\r\nContent-Type: audio/x-wav; name=\"msg0003.wav\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"msg0003.wav\"\r\n\r\n{audio}\r\n--b1--\r\n"
    );
    let file = tmp.path().join("vm.eml");
    std::fs::write(&file, message).unwrap();
    ok(&data, &["ingest", file.to_str().unwrap()]);
    let all = ok(&data, &["export", "--jsonl"]).json_lines();
    assert_eq!(all.len(), 1);
    let t = &all[0];
    assert_eq!(t["channel"], "phone");
    assert_eq!(t["sender"]["phone"], "+393339876543");
    assert_eq!(t["sender"]["name"], "Luca Bianchi");
    // The exchange's address is nobody's: it must not join every call in one dossier.
    assert_eq!(t["sender"]["email"], serde_json::Value::Null);
    assert_eq!(
        t["subject"],
        "Messaggio vocale di 3 s da Luca Bianchi (+393339876543)"
    );
    let recording = t["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mime"] == "audio/wav")
        .expect("the recording is attached");
    assert_eq!(recording["duration_secs"], 3.0);
    assert!(t["attention_reason"]
        .as_str()
        .unwrap()
        .contains("listen to the message"));
}

on_both_backends!(
    voicemail_becomes_a_phone_ticket_in_the_callers_dossier_and_its_summary_is_searchable,
    a_voicemail_sent_on_by_email_is_the_same_kind_of_ticket,
);
