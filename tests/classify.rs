//! Classification through the real binary: the demo pipeline classifies what it files, a
//! clerk's correction is an event the model learns from, backtests show an edit's effect.

mod common;
use common::*;
use sportello::store::prelude::*;

fn filed_tickets_get_a_topic_office_and_reason_and_corrections_are_events() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let lines = ok(
        data,
        &[
            "ingest",
            "--json",
            "--pipeline",
            "pipelines/demo.toml",
            "fixtures/scanner",
            "fixtures/mail",
        ],
    )
    .json_lines();
    let by_file = |suffix: &str| {
        lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(suffix))
            .unwrap()["ticket"]
            .clone()
    };
    let gas = by_file("lettera-allacciamento-gas.pdf");
    assert_eq!(gas["topic"], "gas");
    assert_eq!(gas["office"], "Servizio gas");
    assert!(
        gas["topic_reason"].as_str().unwrap().contains("gas"),
        "{gas}"
    );
    assert!(gas["topic_confidence"].as_f64().unwrap() > 0.5);
    assert_eq!(by_file("lettera-macerie.pdf")["topic"], "waste");
    // The request (the allowance) decides, not the background (the house is unusable).
    assert_eq!(
        by_file("lettera-contributo-autonoma-sistemazione.pdf")["topic"],
        "housing"
    );
    assert_eq!(by_file("richiesta-tari.eml")["topic"], "taxes_benefits");
    assert_eq!(by_file("orari-ufficio.eml")["topic"], "general_info");
    // Nothing readable: unsorted, for a clerk.
    assert_eq!(by_file("lettera-troncata.pdf")["topic"], "unsorted");

    let code = gas["code"].as_str().unwrap();
    let run = sportello(data, &["tickets", "reclassify", code, "pasta"]);
    assert!(
        !run.status.success() && run.stderr.contains("unknown topic `pasta`"),
        "{}",
        run.stderr
    );
    ok(
        data,
        &["tickets", "reclassify", code, "utilities", "--by", "clerk7"],
    );
    let t = &ok(data, &["tickets", "show", code, "--json"]).json_lines()[0];
    assert_eq!(t["topic"], "utilities");
    assert_eq!(t["office"], "Servizi a rete");
    assert_eq!(t["topic_reviewed"], true);
    let last = t["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "reclassified");
    assert_eq!(last["actor"], "clerk7");
    assert_eq!(last["detail"]["from"], "gas");
    assert_eq!(last["detail"]["to"], "utilities");

    // The model trains on settled tickets only: the one corrected.
    let trained = ok(data, &["model", "train"]).stdout;
    assert!(trained.contains("trained on 1 examples"), "{trained}");
    assert!(data.join("topic-model.json").exists());
}

fn the_model_retrains_by_itself_after_enough_corrections() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let shipped = std::fs::read_to_string(project_dir().join("pipelines/rules.toml")).unwrap();
    let pipeline = classify_pipeline(
        tmp.path(),
        &shipped.replace("retrain_after = 10", "retrain_after = 2"),
    );
    let p = pipeline.to_str().unwrap();
    let lines = ok(
        &data,
        &["ingest", "--json", "--pipeline", p, "fixtures/mail"],
    )
    .json_lines();
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l["ticket"]["code"].as_str().unwrap())
        .collect();
    // A new office starts from the rules' own examples: nothing of its own yet.
    let model = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(data.join("topic-model.json")).unwrap()).unwrap()
    };
    assert_eq!(model()["examples"], 0);
    assert!(model()["shipped_examples"].as_u64().unwrap() >= 300);
    ok(
        &data,
        &[
            "tickets",
            "reclassify",
            codes[0],
            "taxes_benefits",
            "--pipeline",
            p,
        ],
    );
    assert_eq!(
        model()["examples"],
        0,
        "one settled ticket is not yet `retrain_after`"
    );
    let run = ok(
        &data,
        &[
            "tickets",
            "reclassify",
            codes[1],
            "general_info",
            "--pipeline",
            p,
        ],
    );
    assert!(
        run.stderr.contains("retrained on 2 examples"),
        "{}",
        run.stderr
    );
    assert_eq!(model()["examples"], 2);
    // Closing a ticket with the topic it was given is the clerk's word that it was right:
    // two such closings retrain again, now on four examples.
    let lines = ok(
        &data,
        &["ingest", "--json", "--pipeline", p, "fixtures/scanner"],
    )
    .json_lines();
    let sorted: Vec<&str> = lines
        .iter()
        .filter(|l| l["ticket"]["topic"] != "unsorted")
        .map(|l| l["ticket"]["code"].as_str().unwrap())
        .collect();
    assert!(sorted.len() >= 2, "{lines:?}");
    let close = |code: &str| {
        ok(
            &data,
            &["tickets", "status", code, "closed", "--pipeline", p],
        )
    };
    assert!(!close(sorted[0]).stderr.contains("retrained"));
    let run = close(sorted[1]);
    assert!(
        run.stderr.contains("retrained on 4 examples"),
        "{}",
        run.stderr
    );
}

fn classify_reads_stdin_or_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = with_database(&mut std::process::Command::new(bin()))
        .args(["--data", tmp.path().to_str().unwrap(), "classify", "--json"])
        .current_dir(project_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all("Oggetto: fuga di gas\nSentiamo odore di gas nel modulo.".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["topic"], "gas");
    for key in ["id", "confidence", "reason"] {
        assert!(v.get(key).is_some(), "{v}");
    }
    let run = ok(
        tmp.path(),
        &[
            "classify",
            "--json",
            "--jsonl",
            "fixtures/requests/labels.jsonl",
        ],
    );
    let results = run.json_lines();
    assert_eq!(results.len(), 16);
    assert!(results
        .iter()
        .all(|r| r["id"].as_str().unwrap().starts_with("fx-")));
}

fn rules_test_reports_accuracy_and_what_an_edit_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = ok(
        tmp.path(),
        &[
            "rules",
            "test",
            "--labels",
            "fixtures/requests/labels.jsonl",
            "--json",
        ],
    );
    let out = &run.json_lines()[0];
    let report = &out["report"];
    assert_eq!(report["records"], 16);
    assert!(report["accuracy"].as_f64().unwrap() >= 0.9, "{report}");
    assert!(report["per_topic"]["gas"]["recall"].is_number());
    assert!(report["confusion"]["gas"]["gas"].as_u64().unwrap() >= 1);
    assert_eq!(out["changes"].as_array().unwrap().len(), 0);
    assert_eq!(out["everyday_matches"], serde_json::json!([]));

    // An admin's edit that breaks the gas rules: the backtest shows which records it breaks.
    let shipped = std::fs::read_to_string(project_dir().join("pipelines/rules.toml")).unwrap();
    let edited = tmp.path().join("edited.toml");
    copy_examples(tmp.path());
    let edit_test = [
        "rules",
        "test",
        "--labels",
        "fixtures/requests/labels.jsonl",
        "--rules",
        edited.to_str().unwrap(),
    ];
    std::fs::write(
        &edited,
        shipped.replace(
            "name = \"gas-words\"\ntopic = \"gas\"",
            "name = \"gas-words\"\ntopic = \"waste\"",
        ),
    )
    .unwrap();
    let run = ok(tmp.path(), &edit_test);
    assert!(
        run.stdout.contains("change against the rules in force"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("fx-02") && run.stdout.contains("BROKEN"),
        "{}",
        run.stdout
    );

    // A one-word term that shares its stem with a word of almost any letter is pointed out.
    std::fs::write(
        &edited,
        shipped.replace("\"TFR\", ", "\"TFR\", \"sindacato\", "),
    )
    .unwrap();
    let run = ok(tmp.path(), &edit_test);
    assert!(
        run.stdout.contains(
            "warning: rule `out-work-disputes`: term \"sindacato\" also matches \"sindaco\""
        ),
        "{}",
        run.stdout
    );
    let json = &ok(tmp.path(), &[&edit_test[..], &["--json"]].concat()).json_lines()[0];
    assert_eq!(
        json["everyday_matches"],
        serde_json::json!([{"rule": "out-work-disputes", "term": "sindacato", "also_matches": "sindaco"}])
    );

    // A bad edit is refused with every problem and its line.
    std::fs::write(&edited, "[topics.gas]\nlabel = \"Gas\"\noffice = \"G\"\n[[rules]]\nname = \"x\"\ntopic = \"gass\"\nany = [\"gas\"]\n[[rules]]\nname = \"y\"\ntopic = \"gas\"\nregex = [\"(\"]\n").unwrap();
    let run = sportello(tmp.path(), &edit_test);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("edited.toml:4: rule `x`: unknown topic `gass`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("edited.toml:8: rule `y`: bad regex"),
        "{}",
        run.stderr
    );
}

fn cross_validation_on_the_labelled_dev_set() {
    let Some(corpus) = corpus() else { return };
    let labels = corpus.join("requests/labeled-dev.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let run = ok(
        tmp.path(),
        &[
            "model",
            "eval",
            "--labels",
            labels.to_str().unwrap(),
            "--folds",
            "5",
            "--json",
        ],
    );
    let out = &run.json_lines()[0];
    let report = &out["report"];
    eprintln!(
        "5-fold: accuracy {:.3}, answered {:.3}, abstained {}, calibration error {:.3}",
        report["accuracy"],
        report["accuracy_answered"],
        report["abstained"],
        out["calibration_error"]
    );
    // The shipped rules were written reading this file, and say so.
    assert_eq!(out["rules_have_seen_these_records"], true);
    let text = ok(
        tmp.path(),
        &["model", "eval", "--labels", labels.to_str().unwrap()],
    )
    .stdout;
    assert!(text.contains("measure what the rules remember"), "{text}");
    assert!(
        text.contains("answering from") && text.contains("target_precision 95%"),
        "{text}"
    );
    assert!(out["calibration_error"].as_f64().unwrap() < 0.1, "{out}");
    let curve = out["curve"].as_array().unwrap();
    assert!(curve.len() > 5, "{out}");
    // A floor against regressions (the goal is higher; see the issue notes). Since the
    // rules were rewritten by subject rather than from this file's phrases, they answered 87%
    // of it (target_precision 0.93) and were right on 93% of those.
    assert!(report["accuracy"].as_f64().unwrap() >= 0.75, "{report}");
    assert!(
        report["accuracy_answered"].as_f64().unwrap() >= 0.85,
        "{report}"
    );
}

/// An office's day replayed on the shared set: bootstrapped from every other record, the
/// rest filed in order, a clerk correcting and closing each ticket. The model must learn.
fn replay_of_an_office_learns_as_clerks_settle_tickets() {
    let Some(corpus) = corpus() else { return };
    let all = std::fs::read_to_string(corpus.join("requests/labeled-dev.jsonl")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut boot, mut stream) = (String::new(), String::new());
    for (i, line) in all.lines().enumerate() {
        let to = if i % 2 == 0 { &mut boot } else { &mut stream };
        to.push_str(line);
        to.push('\n');
    }
    let (b, s) = (
        tmp.path().join("boot.jsonl"),
        tmp.path().join("stream.jsonl"),
    );
    std::fs::write(&b, boot).unwrap();
    std::fs::write(&s, stream).unwrap();
    let run = ok(
        tmp.path(),
        &[
            "model",
            "replay",
            "--labels",
            s.to_str().unwrap(),
            "--bootstrap",
            b.to_str().unwrap(),
            "--window",
            "35",
            "--json",
        ],
    );
    let r = &run.json_lines()[0];
    eprintln!("replay: {r}");
    assert_eq!(r["records"], 70);
    assert_eq!(r["bootstrap"], 70);
    assert!(r["retrains"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["windows"].as_array().unwrap().len(), 2);
    let share =
        |t: &serde_json::Value, k: &str| t[k].as_f64().unwrap() / t["records"].as_f64().unwrap();
    // Floors against regressions, on records the rules were written from.
    assert!(share(&r["overall"], "right") >= 0.7, "{r}");
    assert!(share(&r["overall"], "misrouted") <= 0.12, "{r}");
    // It learns: the second half goes better than the first.
    assert!(
        r["second_half"]["right"].as_u64() > r["first_half"]["right"].as_u64(),
        "{r}"
    );
    let text = ok(
        tmp.path(),
        &[
            "model",
            "replay",
            "--labels",
            s.to_str().unwrap(),
            "--bootstrap",
            b.to_str().unwrap(),
        ],
    )
    .stdout;
    assert!(
        text.contains("second half") && text.contains("misrouted"),
        "{text}"
    );
    // A replay files into a throwaway store of its own: the office's register (on
    // PostgreSQL, the database `SPORTELLO_DATABASE` names) has no ticket and no label more.
    let store = open_store(tmp.path()).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    assert!(!store.has_training_examples().unwrap());
}

/// The shipped rules' examples (`pipelines/examples.jsonl`, requests the project wrote for
/// itself) train every model beside the office's history. Bootstrapped from the shared dev
/// set, the model then answers more of files that are not among the examples
/// (`fixtures/requests/own-heldout-*.jsonl`, which no rule was written from), and stays
/// precise; scoring the examples themselves is flagged as scoring memory.
fn the_rules_own_examples_carry_the_model_to_requests_nobody_wrote_rules_from() {
    let Some(corpus) = corpus() else { return };
    let dev = corpus.join("requests/labeled-dev.jsonl");
    let held: Vec<std::path::PathBuf> = ["own-heldout-7.jsonl", "own-heldout-16.jsonl"]
        .iter()
        .map(|f| project_dir().join("fixtures/requests").join(f))
        .collect();
    let shipped = std::fs::read_to_string(project_dir().join("pipelines/rules.toml")).unwrap();
    assert!(shipped.contains("\nexamples = \"examples.jsonl\"\n"));
    let static_rules = shipped.replace("retrain_after = 10", "retrain_after = 0");
    let score = |rules: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let p = classify_pipeline(tmp.path(), rules);
        let p = p.to_str().unwrap();
        let trained = train_on(tmp.path(), &dev, p);
        assert!(trained.contains("140 labelled requests"), "{trained}");
        let test = |labels: &str| {
            let args = [
                "rules",
                "test",
                "--labels",
                labels,
                "--pipeline",
                p,
                "--json",
            ];
            ok(tmp.path(), &args).json_lines().remove(0)
        };
        let outs: Vec<serde_json::Value> = held
            .iter()
            .map(|h| {
                let out = test(h.to_str().unwrap());
                assert_eq!(out["rules_have_seen_these_records"], false);
                out["report"].clone()
            })
            .collect();
        let mine = &test("pipelines/examples.jsonl");
        (trained, outs, mine["rules_have_seen_these_records"].clone())
    };
    let (trained, with, seen) = score(&static_rules);
    assert!(trained.contains("of the rules' own examples"), "{trained}");
    assert_eq!(seen, true, "the examples are flagged as memory");
    let (trained, without, _) =
        score(&static_rules.replace("\nexamples = \"examples.jsonl\"\n", "\n"));
    assert!(!trained.contains("own examples"), "{trained}");
    let answered = |r: &serde_json::Value| 1.0 - r["abstention_rate"].as_f64().unwrap();
    for (with, without) in with.iter().zip(&without) {
        eprintln!("with the examples: {with}\nwithout: {without}");
        assert!(with["records"].as_u64().unwrap() >= 30);
        assert!(
            answered(with) >= answered(without) + 0.05,
            "the examples answer more: {with} against {without}"
        );
        assert!(
            with["accuracy_answered"].as_f64().unwrap() >= 0.92,
            "{with}"
        );
        assert!(answered(with) >= 0.65, "{with}");
    }
}

/// Each settled ticket is also a record of how its automatic answer fared: a retraining keeps
/// that record beside the model and says it.
fn a_retraining_keeps_the_offices_record_of_automatic_answers() {
    let Some(corpus) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = classify_pipeline(
        tmp.path(),
        &std::fs::read_to_string(project_dir().join("pipelines/rules.toml")).unwrap(),
    );
    let p = p.to_str().unwrap();
    let dev = corpus.join("requests/labeled-dev.jsonl");
    let trained = train_on(&data, &dev, p);
    assert!(!trained.contains("automatic answers stood"), "{trained}");
    let mails = tmp.path().join("mails");
    std::fs::create_dir_all(&mails).unwrap();
    for (n, subject, body) in [
        (
            1,
            "Allaccio gas",
            "Chiedo l'allaccio del gas per la casa riparata di via Roma.",
        ),
        (
            2,
            "Macerie in strada",
            "Chiedo la rimozione delle macerie davanti casa.",
        ),
        (
            3,
            "Tributi sospesi",
            "Vorrei sapere se la sospensione dei tributi vale ancora.",
        ),
    ] {
        std::fs::write(
            mails.join(format!("{n}.eml")),
            format!("From: c{n}@example.it\r\nTo: urp@comune.example.it\r\nSubject: {subject}\r\nDate: Mon, 12 Apr 2010 09:30:00 +0200\r\nMessage-ID: <{n}@example.it>\r\n\r\n{body}\r\n"),
        )
        .unwrap();
    }
    let lines = ok(
        &data,
        &["ingest", "--json", "--pipeline", p, mails.to_str().unwrap()],
    )
    .json_lines();
    let answered: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["ticket"]["topic"] != "unsorted")
        .map(|l| {
            (
                l["ticket"]["code"].as_str().unwrap(),
                l["ticket"]["topic"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(answered.len() >= 3, "{lines:?}");
    // Two closed as answered, one corrected to another topic.
    for (code, _) in &answered[..2] {
        ok(
            &data,
            &["tickets", "status", code, "closed", "--pipeline", p],
        );
    }
    let (code, topic) = answered[2];
    let other = if topic == "general_info" {
        "waste"
    } else {
        "general_info"
    };
    ok(
        &data,
        &["tickets", "reclassify", code, other, "--pipeline", p],
    );
    let trained = ok(&data, &["model", "train", "--pipeline", p]).stdout;
    assert!(
        trained.contains("the office's settled tickets: 2 of 3 automatic answers stood"),
        "{trained}"
    );
}

/// Without --data, the tickets commands use the store of the pipeline they are given (as
/// ingest does), not a default one.
fn tickets_commands_use_the_pipelines_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("office-data");
    let pipeline = tmp.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "data_dir = {:?}\n[[stages]]\nkind = \"extract\"\n[[stages]]\nkind = \"classify\"\nrules = {:?}\n",
            data.display().to_string(),
            project_dir().join("pipelines/rules.toml").display().to_string()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = with_database(&mut std::process::Command::new(bin()))
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let p = pipeline.to_str().unwrap();
    let mail = project_dir().join("fixtures/mail/richiesta-tari.eml");
    let filed = run(&["ingest", "--json", "--pipeline", p, mail.to_str().unwrap()]);
    let line: serde_json::Value = serde_json::from_str(filed.lines().next().unwrap()).unwrap();
    let code = line["ticket"]["code"].as_str().unwrap();
    assert!(run(&["tickets", "status", code, "closed", "--pipeline", p]).contains("status changed"));
    assert!(run(&[
        "tickets",
        "reclassify",
        code,
        "general_info",
        "--pipeline",
        p
    ])
    .contains("URP"));
    // Reading commands too: the list, one ticket, search and the dossier.
    assert!(run(&["tickets", "--pipeline", p, "list"]).contains(code));
    assert!(run(&["tickets", "show", code, "--pipeline", p]).contains(code));
    assert!(run(&["tickets", "note", code, "richiamato", "--pipeline", p]).contains("note added"));
    assert!(run(&["search", "tari", "--pipeline", p]).contains(code));
    // A code the store does not hold is an error; this one has no linked tickets yet.
    run(&["dossier", code, "--pipeline", p]);
    assert!(
        !tmp.path().join("sportello-data").exists(),
        "no store made elsewhere"
    );
}

/// A training that cannot be done (here: the rules no longer have the settled ticket's topic)
/// does not turn a done status change into a failed command.
fn a_failed_retrain_is_reported_and_the_action_stands() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let lines = ok(
        &data,
        &["ingest", "--json", "fixtures/mail/richiesta-tari.eml"],
    )
    .json_lines();
    let code = lines[0]["ticket"]["code"].as_str().unwrap();
    let pipeline = classify_pipeline(
        tmp.path(),
        "retrain_after = 1\n[topics.gas]\nlabel = \"Gas\"\noffice = \"Servizio gas\"\n[[rules]]\nname = \"gas\"\ntopic = \"gas\"\nweight = 2\nany = [\"gas\"]\n",
    );
    let run = ok(
        &data,
        &[
            "tickets",
            "status",
            code,
            "closed",
            "--pipeline",
            pipeline.to_str().unwrap(),
        ],
    );
    assert!(run.stdout.contains("status changed"), "{}", run.stdout);
    assert!(
        run.stderr.contains("the model was not retrained"),
        "{}",
        run.stderr
    );
}

/// Processes on one register train a new store's first model once. One that finds another
/// training (here the test holds the lock) files with what there is, the rules alone on a new
/// store, and trains nothing; once the lock is free the next one trains.
fn a_process_that_finds_another_training_the_model_does_not_train_it_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let during = ingest_while_another_trains(&data);
    assert!(
        during
            .stderr
            .contains("another process is training the model"),
        "{}",
        during.stderr
    );
    assert!(
        !during.stderr.contains("model retrained"),
        "{}",
        during.stderr
    );
    assert!(!data.join("topic-model.json").exists());
    ingest_that_trains(&data);
}

/// The model file is damaged (a disk that filled, a hand edit) while another process trains:
/// intake goes on with the rules alone and says why; the next command trains it again.
fn a_damaged_model_costs_its_hints_not_intake() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let model_file = data.join("topic-model.json");
    std::fs::write(&model_file, "{\"format\": 4, \"weights\": [").unwrap();
    let during = ingest_while_another_trains(&data);
    assert!(
        during.stderr.contains("topic-model.json is damaged")
            && during.stderr.contains("rules alone"),
        "{}",
        during.stderr
    );
    let after = ingest_that_trains(&data);
    assert!(!after.stderr.contains("damaged"), "{}", after.stderr);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&model_file).unwrap()).unwrap();
    assert!(model["format"].is_number(), "{model}");
}

/// A gas letter ingested into `data` while the test holds the training lock: the rules
/// alone classify it.
fn ingest_while_another_trains(data: &std::path::Path) -> Run {
    let _lock = sportello::service::topics::training_lock(data, false)
        .unwrap()
        .expect("nobody else trains here");
    let run = ok(
        data,
        &[
            "ingest",
            "--json",
            "fixtures/scanner/lettera-allacciamento-gas.pdf",
        ],
    );
    let t = &run.json_lines()[0]["ticket"];
    assert_eq!(t["topic"], "gas", "the rules alone classify: {t}");
    run
}

/// A letter ingested into `data`, nobody else training: it trains the model.
fn ingest_that_trains(data: &std::path::Path) -> Run {
    let run = ok(
        data,
        &["ingest", "--json", "fixtures/scanner/lettera-macerie.pdf"],
    );
    assert!(run.stderr.contains("model retrained"), "{}", run.stderr);
    assert!(data.join("topic-model.json").exists());
    run
}

/// A pipeline in `dir` whose classify stage reads the rules file `rules` (written beside it).
fn classify_pipeline(dir: &std::path::Path, rules: &str) -> std::path::PathBuf {
    let rules_file = dir.join("rules.toml");
    std::fs::write(&rules_file, rules).unwrap();
    // The shipped rules name their examples beside them.
    copy_examples(dir);
    let rules = rules_file;
    let pipeline = dir.join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[stages]]\nkind = \"classify\"\nrules = {:?}\n",
            rules.display().to_string()
        ),
    )
    .unwrap();
    pipeline
}

/// After a rules change an admin reads again every ticket nobody settled: a dry run lists
/// what would move, `--apply` files it as events; a clerk's settled ticket is never touched,
/// and the model learns nothing from the new guesses.
fn reclassify_all_reads_again_what_nobody_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let lines = ok(&data, &["ingest", "--json", "fixtures/mail"]).json_lines();
    let code_of = |suffix: &str| {
        lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(suffix))
            .unwrap()["ticket"]["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (hours, tari) = (code_of("orari-ufficio.eml"), code_of("richiesta-tari.eml"));
    let show = |code: &str| ok(&data, &["tickets", "show", code, "--json"]).json_lines()[0].clone();
    assert_eq!(show(&hours)["topic"], "general_info");
    // A clerk settles the TARI request as it is.
    ok(&data, &["tickets", "reclassify", &tari, "taxes_benefits"]);

    // The admin's new rules send anything about opening hours to the gas office.
    let pipeline = classify_pipeline(
        tmp.path(),
        "[topics.gas]\nlabel = \"Gas e allacci\"\noffice = \"Servizio gas\"\n[topics.taxes_benefits]\nlabel = \"Tributi\"\noffice = \"Tributi\"\n[[rules]]\nname = \"orari\"\ntopic = \"gas\"\nweight = 4\nany = [\"orari\"]\n",
    );
    let p = pipeline.to_str().unwrap();
    let dry = ok(&data, &["tickets", "reclassify", "--all", "--pipeline", p]).stdout;
    assert!(
        dry.contains(&format!("{hours}  general_info → Gas e allacci")),
        "{dry}"
    );
    assert!(
        !dry.contains(&tari),
        "a settled ticket is not read again: {dry}"
    );
    assert!(
        dry.contains("1 of 1 tickets nobody settled would move"),
        "{dry}"
    );
    assert_eq!(
        show(&hours)["topic"],
        "general_info",
        "a dry run writes nothing"
    );

    let json = ok(
        &data,
        &[
            "tickets",
            "reclassify",
            "--all",
            "--apply",
            "--json",
            "--by",
            "admin",
            "--pipeline",
            p,
        ],
    )
    .json_lines();
    assert_eq!(json[0]["code"], hours.as_str());
    assert_eq!(json[0]["to"], "gas");
    assert_eq!(json[1]["read"], 1);
    assert_eq!(json[1]["moved"], 1);
    let t = show(&hours);
    assert_eq!(t["topic"], "gas");
    assert_eq!(
        t["office"], "Servizio gas",
        "the office follows the new topic"
    );
    assert_eq!(
        t["topic_reviewed"], false,
        "still a guess, not a clerk's word"
    );
    let last = t["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "reclassified");
    assert_eq!(last["actor"], "admin");
    assert_eq!(last["detail"]["from"], "general_info");
    assert_eq!(show(&tari)["topic"], "taxes_benefits");

    // Read again with nothing changed: nothing moves. And the model learns only from the
    // settled ticket, not from the guess just filed.
    let again = ok(&data, &["tickets", "reclassify", "--all", "--pipeline", p]).stdout;
    assert!(again.contains("0 of 1 tickets"), "{again}");
    let trained = ok(&data, &["model", "train", "--pipeline", p]).stdout;
    assert!(trained.contains("trained on 1 examples"), "{trained}");
    // Without --all a code and a topic are needed.
    let bad = sportello(&data, &["tickets", "reclassify", &hours]);
    assert!(!bad.status.success());
}

/// The shipped rules' examples file, beside a copy of the shipped rules in `dir`.
fn copy_examples(dir: &std::path::Path) {
    std::fs::copy(
        project_dir().join("pipelines/examples.jsonl"),
        dir.join("examples.jsonl"),
    )
    .unwrap();
}

/// `model train --labels LABELS --pipeline PIPELINE` on `data`: what it printed.
fn train_on(data: &std::path::Path, labels: &std::path::Path, pipeline: &str) -> String {
    let labels = labels.to_str().unwrap();
    ok(
        data,
        &["model", "train", "--labels", labels, "--pipeline", pipeline],
    )
    .stdout
}

on_both_backends!(
    filed_tickets_get_a_topic_office_and_reason_and_corrections_are_events,
    the_model_retrains_by_itself_after_enough_corrections,
    classify_reads_stdin_or_json_lines,
    rules_test_reports_accuracy_and_what_an_edit_changes,
    cross_validation_on_the_labelled_dev_set,
    replay_of_an_office_learns_as_clerks_settle_tickets,
    the_rules_own_examples_carry_the_model_to_requests_nobody_wrote_rules_from,
    a_retraining_keeps_the_offices_record_of_automatic_answers,
    tickets_commands_use_the_pipelines_store,
    a_failed_retrain_is_reported_and_the_action_stands,
    reclassify_all_reads_again_what_nobody_settled,
    a_process_that_finds_another_training_the_model_does_not_train_it_too,
    a_damaged_model_costs_its_hints_not_intake,
);
