//! The CLI end to end on the project's fixtures: ingest, list, show, search, export, errors.

mod common;
use common::*;

fn ingest_fixtures(data: &std::path::Path) -> Vec<serde_json::Value> {
    let run = ok(
        data,
        &["ingest", "--json", "fixtures/scanner", "fixtures/mail"],
    );
    run.json_lines()
}

fn ingest_list_show_export() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let lines = ingest_fixtures(data);
    assert_eq!(lines.len(), 10, "6 letters + 2 scans + 2 emails");
    // Without a pipeline, requests are classified with the shipped rules.
    let topic = |name: &str| {
        lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(name))
            .map(|l| l["ticket"]["topic"].clone())
            .unwrap()
    };
    assert_eq!(topic("lettera-allacciamento-gas.pdf"), "gas");
    assert_eq!(topic("lettera-alloggi-case.pdf"), "housing");
    assert!(
        lines.iter().all(|l| l["ticket"]["topic"].is_string()),
        "every ticket has a topic (or `unsorted`)"
    );
    for l in &lines {
        assert_eq!(l["outcome"], "created", "{l}");
        let t = &l["ticket"];
        let code = t["code"].as_str().unwrap();
        assert!(sportello::code::parse(code).is_ok(), "{code}");
        assert!(t["protocol"].as_str().unwrap().contains('/'));
        assert_eq!(t["status"], "new");
        assert_eq!(t["events"][0]["kind"], "created");
        let doc = &t["documents"][0];
        assert_eq!(doc["kind"], "original");
        assert_eq!(doc["sha256"].as_str().unwrap().len(), 64);
    }
    // Protocol numbers are sequential and never reused.
    let mut protocols: Vec<String> = lines
        .iter()
        .map(|l| l["ticket"]["protocol"].as_str().unwrap().to_string())
        .collect();
    protocols.sort();
    protocols.dedup();
    assert_eq!(protocols.len(), 10);
    assert!(
        protocols[0].ends_with("/0000001") && protocols[9].ends_with("/0000010"),
        "{protocols:?}"
    );

    let gas = lines
        .iter()
        .find(|l| {
            l["file"]
                .as_str()
                .unwrap()
                .ends_with("lettera-allacciamento-gas.pdf")
        })
        .unwrap();
    let t = &gas["ticket"];
    assert_eq!(t["subject"], "Richiesta allacciamento gas modulo abitativo");
    assert!(t["body"].as_str().unwrap().contains("località Paganica"));
    assert_eq!(t["needs_attention"], false);
    assert_eq!(t["channel"], "scanner");

    let broken = lines
        .iter()
        .find(|l| {
            l["file"]
                .as_str()
                .unwrap()
                .ends_with("lettera-troncata.pdf")
        })
        .unwrap();
    assert_eq!(broken["ticket"]["needs_attention"], true);
    assert!(broken["ticket"]["attention_reason"]
        .as_str()
        .unwrap()
        .contains("damaged"));

    let mail = lines
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("richiesta-tari.eml"))
        .unwrap();
    assert_eq!(mail["ticket"]["channel"], "email");
    assert_eq!(
        mail["ticket"]["sender"]["email"],
        "franco.ludovici@example.it"
    );
    assert_eq!(mail["ticket"]["sender"]["name"], "Franco Ludovici");
    assert_eq!(mail["ticket"]["received_at"], "2010-04-12T07:30:00Z");

    let code = t["code"].as_str().unwrap();
    let shown = ok(data, &["tickets", "show", code, "--json"]).json_lines();
    assert_eq!(shown[0], *t);
    let text = ok(data, &["tickets", "show", &code.to_lowercase()]).stdout;
    assert!(text.contains("Richiesta allacciamento gas"), "{text}");

    // A clerk works on it: status changes and notes are events, with who did them.
    ok(
        data,
        &["tickets", "status", code, "in_progress", "--by", "clerk1"],
    );
    ok(
        data,
        &[
            "tickets",
            "note",
            code,
            "Chiamato il cittadino",
            "--by",
            "clerk1",
        ],
    );
    let unchanged = ok(data, &["tickets", "status", code, "in_progress"]).stdout;
    assert!(unchanged.contains("unchanged"));
    let after = &ok(data, &["tickets", "show", code, "--json"]).json_lines()[0];
    assert_eq!(after["status"], "in_progress");
    let events: Vec<(&str, &str)> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events[events.len() - 2..],
        [("status_changed", "clerk1"), ("note", "clerk1")]
    );
    // Routing, duplicates and replies from the CLI, as a clerk does them on the web.
    let routed = ok(
        data,
        &[
            "tickets",
            "route",
            code,
            "Ufficio tecnico",
            "--by",
            "clerk1",
        ],
    );
    assert!(routed.stdout.contains("routed"), "{}", routed.stdout);
    let again = ok(data, &["tickets", "route", code, " Ufficio tecnico "]).stdout;
    assert!(again.contains("already"), "{again}");
    let mail_code = mail["ticket"]["code"].as_str().unwrap();
    let other = lines
        .iter()
        .map(|l| l["ticket"]["code"].as_str().unwrap())
        .find(|c| *c != code && *c != mail_code)
        .unwrap();
    ok(
        data,
        &[
            "tickets",
            "duplicate",
            other,
            "--of",
            code,
            "--by",
            "clerk1",
        ],
    );
    let dup = &ok(data, &["tickets", "show", other, "--json"]).json_lines()[0];
    assert_eq!(dup["parent"], code);
    assert_eq!(dup["status"], "closed");
    let replied = ok(
        data,
        &[
            "tickets",
            "reply",
            mail_code,
            "--subject",
            "Re: TARI",
            "--text",
            "Gentile cittadino, ...",
            "--by",
            "clerk1",
        ],
    );
    assert!(
        replied.stdout.contains("franco.ludovici@example.it"),
        "{}",
        replied.stdout
    );
    let kinds = |c: &str| -> Vec<String> {
        ok(data, &["tickets", "show", c, "--json"]).json_lines()[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(code).contains(&"routed".to_string()));
    assert!(kinds(code).contains(&"duplicate_merged".to_string()));
    assert!(kinds(mail_code).contains(&"reply_queued".to_string()));
    // A ticket cannot repeat itself; a scan has no address to answer.
    let refused = sportello(data, &["tickets", "duplicate", code, "--of", code]);
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("itself"), "{}", refused.stderr);
    let refused = sportello(
        data,
        &["tickets", "reply", code, "--subject", "Re", "--text", "x"],
    );
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("no email address"),
        "{}",
        refused.stderr
    );

    let in_progress = ok(
        data,
        &["tickets", "list", "--status", "in_progress", "--json"],
    )
    .json_lines();
    assert_eq!(in_progress.len(), 1);

    let listed = ok(data, &["tickets", "list", "--json"]).json_lines();
    assert_eq!(listed.len(), 10);
    let flagged = ok(data, &["tickets", "list", "--needs-attention", "--json"]).json_lines();
    assert_eq!(flagged.len(), 1);
    let emails = ok(data, &["tickets", "list", "--channel", "email", "--json"]).json_lines();
    assert_eq!(emails.len(), 2);

    let export = ok(data, &["export", "--jsonl"]).json_lines();
    assert_eq!(export.len(), 10);
    assert!(export
        .iter()
        .all(|t| t["documents"].is_array() && t["events"].is_array()));

    // Ingesting the same files again files nothing new.
    let again = ingest_fixtures(data);
    assert!(
        again.iter().all(|l| l["outcome"] == "already_filed"),
        "{again:?}"
    );
    assert_eq!(
        ok(data, &["tickets", "list", "--json"]).json_lines().len(),
        10
    );
}

fn search_forgives_accents_and_word_endings() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    ingest_fixtures(data);
    let subject_of = |query: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["search", query, "--json"];
        args.extend_from_slice(extra);
        ok(data, &args)
            .json_lines()
            .iter()
            .map(|h| h["subject"].as_str().unwrap().to_string())
            .collect()
    };
    // An accented word typed without its accent.
    assert_eq!(
        subject_of("citta", &[]),
        ["Rimozione macerie via Sallustio"]
    );
    assert_eq!(
        subject_of("localita paganica", &[]),
        ["Richiesta allacciamento gas modulo abitativo"]
    );
    // Another form of the same Italian word; the upside-down scan is found by its OCR text.
    let mut found = subject_of("allaccio", &[]);
    found.sort();
    assert_eq!(
        found,
        [
            "Richiesta allacciamento gas modulo abitativo",
            "Richiesta allaccio luce modulo abitativo"
        ]
    );
    assert_eq!(
        subject_of("alloggio", &[]),
        ["Assegnazione alloggio progetto C.A.S.E."]
    );
    // Exact phrases still work, and word order matters in them.
    let mut found = subject_of("\"autonoma sistemazione\"", &[]);
    found.sort();
    assert_eq!(
        found,
        [
            "Contributo di autonoma sistemazione",
            "Contributo di autonoma sistemazione non ricevuto"
        ]
    );
    assert!(subject_of("\"sistemazione autonoma\"", &[]).is_empty());
    // Filters and exclusions.
    assert!(subject_of("allaccio", &["--channel", "email"]).is_empty());
    assert_eq!(
        subject_of("tributi", &["--channel", "email"]),
        ["Sospensione tributi e TARSU"]
    );
    assert!(subject_of("macerie -sallustio", &[]).is_empty());
    let hits = ok(data, &["search", "allaccio", "--json"]).json_lines();
    let gas = hits
        .iter()
        .find(|h| h["subject"] == "Richiesta allacciamento gas modulo abitativo")
        .unwrap();
    assert!(
        gas["snippet"]
            .as_str()
            .unwrap()
            .contains("**allacciamento**"),
        "{gas}"
    );
    // A word only in an attachment: its snippet comes from the document, by name.
    let pdf = sportello::testdata::letter_pdf(
        "Domanda di condono",
        "Chiedo la sanatoria del pergolato in legno costruito nel giardino del MAP.",
    );
    let eml = sportello::testdata::email_with_attachment(
        "Ada Rossi <ada@example.it>",
        "Domanda allegata",
        "att-1@example.it",
        "In allegato la domanda.",
        ("domanda.pdf", "application/pdf", &pdf),
    );
    let file = data.join("allegato.eml");
    std::fs::write(&file, eml).unwrap();
    ok(data, &["ingest", file.to_str().unwrap()]);
    let hits = ok(data, &["search", "pergolati", "--json"]).json_lines();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let snippet = hits[0]["snippet"].as_str().unwrap();
    assert!(
        snippet.starts_with("[domanda.pdf] ") && snippet.contains("**pergolato**"),
        "{snippet}"
    );
    let none = sportello(data, &["search", "  "]);
    assert!(!none.status.success());
    assert!(none.stderr.contains("empty search"), "{}", none.stderr);
}

fn mistyped_and_unknown_codes_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let lines = ingest_fixtures(data);
    let code = lines[0]["ticket"]["code"].as_str().unwrap().to_string();
    // Change one symbol: the check character catches it before any lookup.
    let last = code.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &code[..code.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let run = sportello(data, &["tickets", "show", &typo]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("mistyped"), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one clear line: {}",
        run.stderr
    );
    let run = sportello(data, &["tickets", "show", "not-a-code"]);
    assert!(
        !run.status.success() && run.stderr.contains("not a tracking code"),
        "{}",
        run.stderr
    );
}

fn a_bad_pipeline_is_refused_with_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    std::fs::write(
        &file,
        "office = 3\n[[sources]]\nkind = \"folder\"\nname = \"fax\"\npath = \"x\"\nchannel = \"pigeon\"\n\n[[sources]]\nkind = \"imap\"\nname = \"m\"\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\npassword_env = \"P\"\n",
    )
    .unwrap();
    let run = sportello(tmp.path(), &["check", "--pipeline", file.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("3 problem(s)"), "{}", run.stderr);
    assert!(
        run.stderr.contains("bad.toml:1: `office`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("bad.toml:6: source: unknown variant `pigeon`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("bad.toml:13: source: unknown field `password`"),
        "{}",
        run.stderr
    );
    // The shipped pipelines are valid (the example's passwords given, as `run` needs them).
    ok(tmp.path(), &["check", "--pipeline", "pipelines/demo.toml"]);
    let example = |with_passwords: bool| {
        let mut cmd = std::process::Command::new(bin());
        with_database(&mut cmd)
            .args(["check", "--pipeline", "pipelines/urp.example.toml"])
            .current_dir(project_dir());
        for var in [
            "SPORTELLO_URP_IMAP_PASSWORD",
            "SPORTELLO_URP_PEC_PASSWORD",
            "SPORTELLO_SMTP_PASSWORD",
        ] {
            if with_passwords {
                cmd.env(var, "x");
            } else {
                cmd.env_remove(var);
            }
        }
        cmd.output().unwrap()
    };
    assert!(example(true).status.success());
    let without = example(false);
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(!without.status.success());
    for (line, var) in [
        (19, "SPORTELLO_URP_IMAP_PASSWORD"),
        (32, "SPORTELLO_URP_PEC_PASSWORD"),
        (98, "SPORTELLO_SMTP_PASSWORD"),
    ] {
        assert!(
            stderr.contains(&format!("urp.example.toml:{line}:")) && stderr.contains(var),
            "{stderr}"
        );
    }
}

/// What would only stop `run` once it starts (a password variable not set, a broken
/// acknowledgement template, a `from` that is not an address, passwords in clear to another
/// machine) is found by `check`, every problem at once with its line.
fn check_finds_what_would_stop_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    // A pipeline named by a relative path: its templates are found beside it.
    std::fs::create_dir_all(tmp.path().join("conf/tpl")).unwrap();
    std::fs::write(
        tmp.path().join("conf/tpl/ack.it.txt"),
        "Subject: Presa in carico {code}\n\nGentile cittadino, la pratica {codice} è registrata.\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("conf/office.toml"),
        "[[sources]]\nkind = \"imap\"\nname = \"urp\"\nhost = \"imap.comune.example.it\"\n\
         tls = \"plain\"\nusername = \"urp\"\npassword_env = \"SPORTELLO_TEST_NOT_SET\"\n\n\
         [[sinks]]\nkind = \"smtp_ack\"\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"plain\"\n\
         from = \"URP <urp at comune>\"\ntemplates = \"tpl\"\n",
    )
    .unwrap();
    let out = with_database(&mut std::process::Command::new(bin()))
        .args(["check", "--pipeline", "conf/office.toml"])
        .current_dir(tmp.path())
        .env_remove("SPORTELLO_TEST_NOT_SET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    for (line, what) in [
        (5, "tls = \"plain\" is only allowed towards this machine"),
        (7, "SPORTELLO_TEST_NOT_SET"),
        (14, "`from`"),
        (15, "unknown placeholder {codice}"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("office.toml:{line}:")) && l.contains(what)),
            "line {line}, {what}: {stderr}"
        );
    }
    // A templates folder that is not there, and a language with no template, are said on
    // their own lines rather than replaced by the shipped templates.
    for (setting, line, what) in [
        ("templates = \"nowhere\"", 6, "templates folder"),
        ("language = \"de\"", 6, "no template for language `de`"),
    ] {
        std::fs::write(
            tmp.path().join("conf/acks.toml"),
            format!("[[sinks]]\nkind = \"smtp_ack\"\nhost = \"127.0.0.1\"\ntls = \"plain\"\nfrom = \"urp@comune.example.it\"\n{setting}\n"),
        )
        .unwrap();
        let out = with_database(&mut std::process::Command::new(bin()))
            .args(["check", "--pipeline", "conf/acks.toml"])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("acks.toml:{line}:")) && l.contains(what)),
            "{setting}: {stderr}"
        );
    }
}

fn one_unreadable_path_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sportello(
        tmp.path(),
        &[
            "ingest",
            "--json",
            "no/such/file.pdf",
            "fixtures/mail/orari-ufficio.eml",
        ],
    );
    assert!(!run.status.success(), "a missing path is an error");
    assert!(run.stderr.contains("no such file"), "{}", run.stderr);
    assert_eq!(run.json_lines().len(), 1);
}

fn hostile_and_truncated_inputs_never_crash_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let pdf = sportello::testdata::letter_pdf("Prova", "Testo di prova per documenti danneggiati.");
    let tiff = sportello::testdata::fax_tiff(256, 64, 2);
    let eml = sportello::testdata::email("a@b.it", "Oggetto", "Corpo", "x@y");
    let mut n = 0;
    for (i, base) in [pdf, tiff, eml].iter().enumerate() {
        for cut in [1, 7, base.len() / 3, base.len() / 2, base.len() - 3] {
            std::fs::write(inputs.join(format!("cut-{i}-{cut}.bin")), &base[..cut]).unwrap();
            n += 1;
        }
        for k in 0..6 {
            // The right magic bytes, then noise or a damaged copy.
            let mut bytes = base[..base.len().min(16)].to_vec();
            bytes.extend(noise(64 << k));
            std::fs::write(inputs.join(format!("noise-{i}-{k}.bin")), &bytes).unwrap();
            let mut flipped = base.clone();
            for b in flipped.iter_mut().skip(20).step_by(7 + k) {
                *b ^= 0x5A;
            }
            std::fs::write(inputs.join(format!("flip-{i}-{k}.bin")), &flipped).unwrap();
            n += 2;
        }
    }
    std::fs::write(inputs.join("empty.pdf"), b"").unwrap();
    n += 1;
    let run = ok(tmp.path(), &["ingest", "--json", inputs.to_str().unwrap()]);
    let lines = run.json_lines();
    assert_eq!(lines.len(), n, "every input gives a result: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for l in &lines {
        assert!(l["ticket"]["code"].is_string(), "{l}");
    }
    let empty = lines
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("empty.pdf"))
        .unwrap();
    assert_eq!(empty["ticket"]["needs_attention"], true);
    assert!(
        empty["ticket"]["attention_reason"]
            .as_str()
            .unwrap()
            .contains("empty file"),
        "{empty}"
    );
}

/// On a terminal `ingest` shows its progress (items out of the total, pages, pages per
/// second, flagged items, time left); piped, or with `--json`, it prints nothing extra.
fn ingest_shows_progress_on_a_terminal_and_nothing_extra_when_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = project_dir().join("fixtures");
    let dirs = [fixtures.join("scanner"), fixtures.join("mail")];
    // Piped: stderr holds no progress display.
    let run = ok(
        &tmp.path().join("piped"),
        &[
            "ingest",
            dirs[0].to_str().unwrap(),
            dirs[1].to_str().unwrap(),
        ],
    );
    assert!(!run.stderr.contains("items"), "{}", run.stderr);
    assert!(!run.stdout.contains("items ·"), "{}", run.stdout);
    // A terminal, through script(1) (util-linux): both streams are the pseudo-terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped the terminal half: no script(1)");
        return;
    }
    let command = format!(
        "{} --data {} ingest {} {}",
        bin().display(),
        tmp.path().join("tty").display(),
        dirs[0].display(),
        dirs[1].display()
    );
    let typescript = tmp.path().join("typescript");
    let status = std::process::Command::new("script")
        .args(["-qec", &command])
        .arg(&typescript)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let seen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    for part in ["/10 items", "pages/s", "flagged", "left"] {
        assert!(seen.contains(part), "no `{part}` in {seen}");
    }
    // The tickets' own lines are still there, whole.
    assert!(seen.contains("created"), "{seen}");
}

fn a_registration_is_annulled_not_edited_and_its_replacement_is_linked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pipeline = tmp.path().join("p.toml");
    std::fs::write(&pipeline, "[[stages]]\nkind = \"extract\"\n").unwrap();
    let p = pipeline.to_str().unwrap();
    let codes: Vec<String> = [
        "fixtures/mail/orari-ufficio.eml",
        "fixtures/mail/richiesta-tari.eml",
    ]
    .iter()
    .map(|f| {
        ok(&data, &["ingest", "--json", "--pipeline", p, f]).json_lines()[0]["ticket"]["code"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    let annul = |extra: &[&str]| {
        let mut args = vec![
            "tickets",
            "annul",
            &codes[0],
            "--reason",
            "oggetto errato",
            "--by",
            "anna",
        ];
        args.extend(extra);
        sportello(&data, &args)
    };
    // A replacement that does not exist: nothing is annulled.
    assert!(!annul(&["--replaced-by", "URP-0000-0000"]).status.success());
    assert!(!ok(&data, &["tickets", "show", &codes[0]])
        .stdout
        .contains("ANNULLED"));
    let done = annul(&["--act", "decreto 3/2026", "--replaced-by", &codes[1]]);
    assert!(done.status.success(), "{}", done.stderr);
    let shown = ok(&data, &["tickets", "show", &codes[0]]).stdout;
    assert!(
        shown.contains("ANNULLED") && shown.contains("decreto 3/2026"),
        "{shown}"
    );
    assert!(
        shown.contains(&codes[1]),
        "linked to its replacement: {shown}"
    );
    let twice = annul(&[]);
    assert!(!twice.status.success());
    assert!(
        twice.stderr.contains("annulled already"),
        "{}",
        twice.stderr
    );
}

on_both_backends!(
    ingest_list_show_export,
    search_forgives_accents_and_word_endings,
    mistyped_and_unknown_codes_are_clear_errors,
    a_bad_pipeline_is_refused_with_every_problem,
    check_finds_what_would_stop_the_start,
    one_unreadable_path_does_not_stop_the_others,
    hostile_and_truncated_inputs_never_crash_the_run,
    ingest_shows_progress_on_a_terminal_and_nothing_extra_when_piped,
    a_registration_is_annulled_not_edited_and_its_replacement_is_linked,
);
