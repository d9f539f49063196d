//! The email channel against real servers: Dovecot and OpenSMTPD started by the tests
//! (`common::mail`). Messages go in the office's inbox by IMAP APPEND; `sportello run`
//! files them; the citizen's mailbox is read over IMAP for the acknowledgements.

mod common;
use common::mail::{MailServers, PASSWORD};
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// OpenSMTPD keeps one queue per machine: the tests take turns.
static SERVERS: Mutex<()> = Mutex::new(());

fn run_once(data: &Path, pipeline: &Path) -> Vec<serde_json::Value> {
    let out = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(["run", "--once", "--json", "--pipeline"])
        .arg(pipeline)
        .env("SPORTELLO_TEST_IMAP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect()
}

fn message(from: &str, subject: &str, body: &str, id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: urp@localhost\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Tue, 1 Jun 2010 10:00:00 +0200\r\nMIME-Version: 1.0\r\n{extra}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ");
    head.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim().to_string())
}

fn tickets(data: &Path) -> Vec<serde_json::Value> {
    ok(data, &["export", "--jsonl"]).json_lines()
}

fn inbox_to_tickets_acknowledgements_threads_and_no_loops() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(servers) = MailServers::start(&["urp", "mario", "robot"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = servers.pipeline(tmp.path(), "urp");

    let request = message(
        "Mario Rossi <mario@localhost>",
        "Allaccio gas modulo abitativo",
        "Chiedo l'allacciamento del gas per il MAP di Paganica.",
        "req-1@localhost",
        "",
    );
    servers.append("urp", "INBOX", &request);
    // The same message twice (a client's retry): one ticket.
    servers.append("urp", "INBOX", &request);
    // An out-of-office reply and a bounce: filed, never answered.
    servers.append(
        "urp",
        "INBOX",
        &message(
            "robot@localhost",
            "Fuori ufficio",
            "Sono in ferie.",
            "auto-1@localhost",
            "Auto-Submitted: auto-replied\r\n",
        ),
    );
    servers.append(
        "urp",
        "INBOX",
        &message(
            "MAILER-DAEMON@localhost",
            "Undelivered Mail",
            "Delivery failed.",
            "bounce-1@localhost",
            "Return-Path: <>\r\n",
        ),
    );
    // Not a message at all: a ticket flagged for a clerk, the raw bytes kept.
    servers.append(
        "urp",
        "INBOX",
        b"\x00\x01garbage that is not an email\xff\xfe",
    );

    let lines = run_once(&data, &pipeline);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "created").count(),
        4,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "duplicate").count(),
        1,
        "{outcomes:?}"
    );
    let all = tickets(&data);
    let mario = all
        .iter()
        .find(|t| t["subject"] == "Allaccio gas modulo abitativo")
        .unwrap();
    let code = mario["code"].as_str().unwrap().to_string();
    assert_eq!(mario["channel"], "email");
    assert_eq!(mario["documents"][0]["mime"], "message/rfc822");
    let garbage = all
        .iter()
        .find(|t| t["needs_attention"] == true && t["sender"]["email"].is_null())
        .expect("flagged ticket");
    assert_eq!(garbage["documents"].as_array().unwrap().len(), 1);

    // Filed messages left the inbox for the configured folder.
    assert!(servers.messages("urp", "INBOX").is_empty());
    assert_eq!(servers.messages("urp", "Protocollati").len(), 5);

    // Mario got exactly one acknowledgement, an RFC 3834 auto-reply in his thread.
    let acks = servers.wait_messages("mario", "INBOX", 1, Duration::from_secs(20));
    assert_eq!(acks.len(), 1, "{}", servers.log("smtpd.out"));
    let ack = &acks[0];
    assert!(header(ack, "Subject").unwrap().contains(&code));
    assert_eq!(
        header(ack, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(ack, "In-Reply-To").as_deref(),
        Some("<req-1@localhost>")
    );
    let text = String::from_utf8_lossy(ack);
    assert!(text.contains(mario["protocol"].as_str().unwrap()), "{text}");
    // The robot and the mailer daemon got nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert!(servers.messages("robot", "INBOX").is_empty());

    // Mario answers the acknowledgement: the reply joins his ticket.
    let ack_id = header(ack, "Message-ID").unwrap();
    let reply = message(
        "Mario Rossi <mario@localhost>",
        &format!("Re: [{code}] Richiesta ricevuta"),
        "Allego il contratto di fornitura.",
        "req-2@localhost",
        &format!("In-Reply-To: {ack_id}\r\nReferences: <req-1@localhost> {ack_id}\r\n"),
    );
    ok(&data, &["tickets", "status", &code, "waiting"]);
    servers.append("urp", "INBOX", &reply);
    // A stranger quoting Mario's code cannot write into his ticket.
    let stranger = message(
        "robot@localhost",
        &format!("[{code}] altro"),
        "Testo.",
        "req-3@localhost",
        "",
    );
    servers.append("urp", "INBOX", &stranger);
    let lines = run_once(&data, &pipeline);
    let mut outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["appended", "created"], "{lines:?}");
    let t = ok(&data, &["tickets", "show", &code, "--json"])
        .json_lines()
        .remove(0);
    assert_eq!(t["status"], "in_progress");
    let kinds: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"message_received") && kinds.contains(&"ack_sent"),
        "{kinds:?}"
    );
    // No second acknowledgement for a reply.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(servers.messages("mario", "INBOX").len(), 1);
}

fn smtp_outage_delays_acknowledgements_and_each_arrives_once() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut servers) = MailServers::start(&["urp", "anna"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = servers.pipeline(tmp.path(), "urp");
    servers.stop_smtp();
    for i in 0..2 {
        servers.append(
            "urp",
            "INBOX",
            &message(
                "anna@localhost",
                &format!("Richiesta {i}"),
                "Testo della richiesta.",
                &format!("anna-{i}@localhost"),
                "",
            ),
        );
    }
    let lines = run_once(&data, &pipeline);
    assert_eq!(lines.len(), 2);
    let failed = tickets(&data)
        .iter()
        .filter(|t| {
            t["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "ack_failed")
        })
        .count();
    assert!(failed >= 1, "the failure is on the ticket");
    assert!(servers.messages("anna", "INBOX").is_empty());
    servers.start_smtp();
    run_once(&data, &pipeline);
    run_once(&data, &pipeline);
    let acks = servers.wait_messages("anna", "INBOX", 2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        servers.messages("anna", "INBOX").len(),
        2,
        "each acknowledgement once: {acks:?}"
    );
}

fn a_dropped_imap_connection_loses_nothing_and_files_nothing_twice() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut servers) = MailServers::start(&["urp", "luca"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = servers.pipeline(tmp.path(), "urp");
    // Large enough that the server dies while messages are being fetched.
    let pdf = sportello::testdata::letter_pdf(
        "Domanda",
        &"Testo della domanda di contributo. ".repeat(2000),
    );
    let n = 20;
    for i in 0..n {
        let mut attached = format!(
            "From: luca@localhost\r\nTo: urp@localhost\r\nSubject: Domanda {i}\r\nMessage-ID: <luca-{i}@localhost>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nIn allegato.\r\n--b\r\nContent-Type: application/pdf; name=domanda.pdf\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        )
        .into_bytes();
        attached.extend(sportello::testdata::base64_mime(&pdf).into_bytes());
        attached.extend_from_slice(b"\r\n--b--\r\n");
        servers.append("urp", "INBOX", &attached);
    }
    let mut runner = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(&data)
        .args(["run", "--json", "--pipeline"])
        .arg(&pipeline)
        .env("SPORTELLO_TEST_IMAP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || !tickets(&data).is_empty()),
        "nothing filed"
    );
    servers.stop_dovecot();
    std::thread::sleep(Duration::from_millis(1500));
    servers.start_dovecot();
    let done = wait_for(Duration::from_secs(90), || {
        tickets(&data).len() >= n && servers.messages("urp", "INBOX").is_empty()
    });
    let _ = Command::new("kill").arg(runner.id().to_string()).status();
    let _ = runner.wait();
    assert!(done, "after the restart: {} tickets", tickets(&data).len());
    let all = tickets(&data);
    assert_eq!(all.len(), n, "every message once");
    let mut subjects: Vec<String> = all
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), n);
    assert_eq!(servers.messages("urp", "Protocollati").len(), n);
}

fn a_pec_message_with_a_signed_attachment_through_imap() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(corpus) = corpus() else { return };
    let Some(servers) = MailServers::start(&["urp"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = servers.pipeline(tmp.path(), "urp");
    let pec = std::fs::read(corpus.join("mail-it/mail_req-0003.eml")).unwrap();
    servers.append("urp", "INBOX", &pec);
    let lines = run_once(&data, &pipeline);
    let t = &lines[0]["ticket"];
    assert_eq!(t["channel"], "pec");
    assert_eq!(t["sender"]["email"], "rdinino@pec.it");
    let docs = t["documents"].as_array().unwrap();
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"domanda.pdf.p7m") && names.contains(&"domanda.pdf"),
        "{names:?}"
    );
    let signed = docs.iter().find(|d| d["name"] == "domanda.pdf").unwrap();
    assert!(
        signed["signed_by"]
            .as_str()
            .unwrap()
            .contains("DI NINO ROBERTO"),
        "{signed}"
    );
    let kinds: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"pec_certified"), "{kinds:?}");
}

fn a_pec_receipt_is_an_event_on_the_ticket_it_is_about() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let original = tmp.path().join("domanda.eml");
    std::fs::write(
        &original,
        message(
            "Anna <anna@pec.example.it>",
            "Domanda contributo",
            "Testo.",
            "orig-7@pec.example.it",
            "",
        ),
    )
    .unwrap();
    let receipt = tmp.path().join("ricevuta.eml");
    std::fs::write(
        &receipt,
        message(
            "posta-certificata@provider.example.it",
            "CONSEGNA: Domanda contributo",
            "Ricevuta di avvenuta consegna.",
            "rcpt-1@provider.example.it",
            "X-Ricevuta: avvenuta-consegna\r\nX-Riferimento-Message-ID: <orig-7@pec.example.it>\r\n",
        ),
    )
    .unwrap();
    let stray = tmp.path().join("ricevuta-sconosciuta.eml");
    std::fs::write(
        &stray,
        message(
            "posta-certificata@provider.example.it",
            "ACCETTAZIONE: altro",
            "Ricevuta di accettazione.",
            "rcpt-2@provider.example.it",
            "X-Ricevuta: accettazione\r\nX-Riferimento-Message-ID: <unknown@pec.example.it>\r\n",
        ),
    )
    .unwrap();
    let first = ok(&data, &["ingest", "--json", original.to_str().unwrap()]).json_lines();
    let code = first[0]["ticket"]["code"].as_str().unwrap().to_string();
    let lines = ok(&data, &["ingest", "--json", receipt.to_str().unwrap()]).json_lines();
    assert_eq!(lines[0]["outcome"], "appended");
    assert_eq!(lines[0]["ticket"]["code"], code.as_str());
    let events = lines[0]["ticket"]["events"].as_array().unwrap();
    let r = events
        .iter()
        .find(|e| e["kind"] == "pec_receipt")
        .expect("receipt event");
    assert_eq!(r["detail"]["kind"], "avvenuta-consegna");
    // A receipt about a message no ticket holds is kept, flagged, never lost.
    let lines = ok(&data, &["ingest", "--json", stray.to_str().unwrap()]).json_lines();
    assert_eq!(lines[0]["outcome"], "created");
    assert_eq!(lines[0]["ticket"]["needs_attention"], true);
    let kinds: Vec<&str> = lines[0]["ticket"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"ack_queued"));
}

/// `kill -9` of the runner at random moments while it files an IMAP inbox and sends the
/// acknowledgements: every message filed once, moved once, and no citizen acknowledged
/// twice (a message caught mid-send is not sent again, and its ticket says so).
/// `SPORTELLO_KILL_IMAP_ITEMS` (default 60); `make soak` runs 200.
fn sigkill_during_imap_intake_loses_nothing_and_acknowledges_each_once() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let n: usize = std::env::var("SPORTELLO_KILL_IMAP_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    // Ten citizens: at most 20 acknowledgements each per hour (the pipeline's cap).
    let citizens: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let mut users = vec!["urp"];
    users.extend(citizens.iter().map(String::as_str));
    let Some(servers) = MailServers::start(&users) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = servers.pipeline(tmp.path(), "urp");
    for i in 0..n {
        servers.append(
            "urp",
            "INBOX",
            &message(
                &format!("{}@localhost", citizens[i % citizens.len()]),
                &format!("Richiesta {i}"),
                &format!("Testo della richiesta numero {i}."),
                &format!("kill-{i}@localhost"),
                "",
            ),
        );
    }
    let start = || {
        with_database(&mut Command::new(bin()))
            .arg("--data")
            .arg(&data)
            .args(["run", "--pipeline"])
            .arg(&pipeline)
            .env("SPORTELLO_TEST_IMAP_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let acks = || -> usize {
        citizens
            .iter()
            .map(|c| servers.messages(c, "INBOX").len())
            .sum()
    };
    let uncertain = |all: &[serde_json::Value]| {
        all.iter()
            .filter(|t| {
                t["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "ack_uncertain")
            })
            .count()
    };
    // Progress through the three things a message goes through: filed, moved, acknowledged
    // (or flagged as caught mid-send).
    let progress = || {
        let all = tickets(&data);
        all.len() + uncertain(&all) + servers.messages("urp", "Protocollati").len() + acks()
    };
    let mut seed: u64 = 2009;
    let mut kills = 0;
    let mut mid_way = 0;
    while progress() < 3 * n && kills < 6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let done = progress();
        let target = done + 1 + (seed >> 33) as usize % (3 * n - done);
        let mut runner = start();
        wait_for(Duration::from_secs(60), || progress() >= target);
        let workers = children(runner.id());
        runner.kill().unwrap(); // SIGKILL
        runner.wait().unwrap();
        kills += 1;
        if progress() < 3 * n {
            mid_way += 1;
        }
        assert!(
            wait_for(Duration::from_secs(10), || workers
                .iter()
                .all(|&w| !alive(w))),
            "workers outlived the runner"
        );
    }
    assert!(
        mid_way > 0,
        "no kill landed mid-way: the test proved nothing"
    );
    let mut runner = start();
    let settled = wait_for(Duration::from_secs(120), || {
        let all = tickets(&data);
        all.len() >= n
            && servers.messages("urp", "INBOX").is_empty()
            && acks() + uncertain(&all) >= n
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").arg(runner.id().to_string()).status();
    let _ = runner.wait();
    let all = tickets(&data);
    assert!(settled, "{} tickets after {kills} kills", all.len());
    assert_eq!(all.len(), n, "every message filed once");
    let mut subjects: Vec<&str> = all.iter().map(|t| t["subject"].as_str().unwrap()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), n);
    assert_eq!(
        servers.messages("urp", "Protocollati").len(),
        n,
        "moved once"
    );
    // Each acknowledgement names its ticket: none twice.
    let mut acknowledged: Vec<String> = Vec::new();
    for c in &citizens {
        for ack in servers.messages(c, "INBOX") {
            let subject = header(&ack, "Subject").unwrap_or_default();
            let code = all
                .iter()
                .map(|t| t["code"].as_str().unwrap())
                .find(|code| subject.contains(code))
                .unwrap_or_else(|| panic!("an acknowledgement for no ticket: {subject}"));
            acknowledged.push(code.to_string());
        }
    }
    let delivered = acknowledged.len();
    acknowledged.sort();
    acknowledged.dedup();
    assert_eq!(
        acknowledged.len(),
        delivered,
        "an acknowledgement was sent twice"
    );
    // Every ticket acknowledged, or flagged as caught mid-send (it may have arrived).
    for t in &all {
        let code = t["code"].as_str().unwrap();
        let flagged = t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "ack_uncertain");
        assert!(
            flagged || acknowledged.iter().any(|a| a == code),
            "{code}: no acknowledgement and no flag"
        );
    }
    eprintln!(
        "{n} messages, {kills} kills ({mid_way} mid-way): {delivered} acknowledged, {} flagged uncertain",
        uncertain(&all)
    );
}

/// With a register and a seal, a clerk's reply reaches the citizen through the real SMTP
/// server carrying its registration's segnatura, whose seal verifies.
fn a_clerks_reply_carries_its_registrations_sealed_segnatura() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(servers) = MailServers::start(&["urp", "mario"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (key, cert) = seal_certificate(tmp.path());
    let pipeline = servers.pipeline(tmp.path(), "urp");
    // Top-level keys go before the file's tables; the register's table after them.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        format!(
            "seal_key = {:?}\nseal_cert = {:?}\n{text}\n[register]\nipa = \"c_a345\"\naoo = \"AOO_URP\"\n\
             administration = \"Comune dell'Aquila\"\nfiscal_code = \"80002270660\"\n",
            key.display().to_string(),
            cert.display().to_string()
        ),
    )
    .unwrap();
    servers.append(
        "urp",
        "INBOX",
        &message(
            "Mario Rossi <mario@localhost>",
            "Contributo autonoma sistemazione",
            "Chiedo a che punto è la mia domanda.",
            "cas-1@localhost",
            "",
        ),
    );
    let filed = run_once(&data, &pipeline);
    let code = filed
        .iter()
        .find_map(|l| l["ticket"]["code"].as_str().map(str::to_string))
        .expect("the message is filed");
    ok(
        &data,
        &[
            "tickets",
            "reply",
            &code,
            "--subject",
            "Re: Contributo",
            "--text",
            "La domanda è in istruttoria.",
            "--by",
            "anna",
        ],
    );
    run_once(&data, &pipeline);
    let inbox = servers.wait_messages("mario", "INBOX", 2, Duration::from_secs(20));
    let reply = inbox
        .iter()
        .find(|m| header(m, "Subject").is_some_and(|s| s.contains("Re: Contributo")))
        .expect("the reply arrived");
    let text = String::from_utf8_lossy(reply);
    assert!(text.contains("segnatura.xml"), "{text}");
    // The attachment, decoded, is the sealed segnatura of this registration.
    use mail_parser::MimeHeaders as _;
    let parsed = mail_parser::MessageParser::default()
        .parse(reply.as_slice())
        .expect("the reply parses");
    let attached = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("segnatura.xml"))
        .expect("an attached segnatura");
    let xml = String::from_utf8(attached.contents().to_vec()).unwrap();
    assert!(xml.contains("<prot:SegnaturaInformatica"), "{xml}");
    assert!(xml.contains("<prot:Nome>Mario</prot:Nome><prot:Cognome>Rossi</prot:Cognome>"));
    let sealed = tmp.path().join("received.xml");
    std::fs::write(&sealed, &xml).unwrap();
    let verified = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(&cert)
        .arg(&sealed)
        .output()
        .expect("xmlsec1 (installed by make) runs");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

on_both_backends!(
    inbox_to_tickets_acknowledgements_threads_and_no_loops,
    smtp_outage_delays_acknowledgements_and_each_arrives_once,
    a_dropped_imap_connection_loses_nothing_and_files_nothing_twice,
    a_pec_message_with_a_signed_attachment_through_imap,
    a_pec_receipt_is_an_event_on_the_ticket_it_is_about,
    sigkill_during_imap_intake_loses_nothing_and_acknowledges_each_once,
    a_clerks_reply_carries_its_registrations_sealed_segnatura,
);
