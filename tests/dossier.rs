//! Identifiers and dossiers end to end: fiscal codes in the shared corpus, a fax and an email
//! about the same `pratica` in one case dossier, a person's tickets linked by address, links
//! by hand, search filters, masked exports.

mod common;
use common::*;
use sportello::entities::{extract, fiscal_code_is_valid, Kind};
use sportello::testdata::{email, letter_pdf};
use std::collections::HashSet;

/// Strictly well-formed fiscal codes (structure only, check letter not verified).
fn well_formed(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

fn every_well_formed_fiscal_code_in_the_dev_requests_is_found_and_no_invalid_one_passes() {
    let Some(corpus) = corpus() else { return };
    let text = std::fs::read_to_string(corpus.join("requests/labeled-dev.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let body = format!(
            "{}\n{}",
            r["subject"].as_str().unwrap(),
            r["body"].as_str().unwrap()
        );
        let found = extract(&body, "body");
        for cf in well_formed(&body) {
            let e = found
                .iter()
                .find(|e| e.kind == Kind::FiscalCode && e.value == cf);
            let e = e.unwrap_or_else(|| panic!("{}: {cf} not found", r["id"]));
            assert_eq!(e.valid, fiscal_code_is_valid(&cf), "{}: {cf}", r["id"]);
            checked += 1;
            // The same code with a wrong check letter is never accepted as valid.
            let last = cf.as_bytes()[15];
            let wrong = format!(
                "{}{}",
                &cf[..15],
                if last == b'Z' {
                    'A'
                } else {
                    (last + 1) as char
                }
            );
            let damaged = extract(&body.replace(&cf, &wrong), "body");
            assert!(
                damaged
                    .iter()
                    .all(|e| e.kind != Kind::FiscalCode || e.value != wrong || !e.valid),
                "{}: {wrong} accepted",
                r["id"]
            );
        }
        for e in found
            .iter()
            .filter(|e| e.kind == Kind::FiscalCode && e.valid)
        {
            assert!(
                fiscal_code_is_valid(&e.value),
                "{}: {} marked valid",
                r["id"],
                e.value
            );
        }
    }
    assert!(checked > 0, "no fiscal code in the dev requests");
}

fn fiscal_codes_inside_pec_envelopes_are_found() {
    let Some(corpus) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mail = corpus.join("mail-it");
    let mut found = 0;
    for entry in std::fs::read_dir(&mail).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let raw = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let wanted = well_formed(&raw);
        let run = ok(tmp.path(), &["entities", "--json", path.to_str().unwrap()]);
        let got: HashSet<String> = run
            .json_lines()
            .iter()
            .filter(|e| e["kind"] == "fiscal_code" && e["valid"] == true)
            .map(|e| e["value"].as_str().unwrap().to_string())
            .collect();
        for cf in wanted.into_iter().filter(|c| fiscal_code_is_valid(c)) {
            assert!(
                got.contains(&cf),
                "{}: {cf} not found in {got:?}",
                path.display()
            );
            found += 1;
        }
    }
    assert!(found > 0, "no fiscal code in mail-it");
}

fn a_fax_and_an_email_about_the_same_pratica_share_a_case_dossier() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, inbox) = (tmp.path().join("data"), tmp.path().join("in"));
    std::fs::create_dir_all(&inbox).unwrap();
    // The same citizen: a fax from her technician's office, and an email from her own address.
    std::fs::write(
        inbox.join("fax_0862505245_1.pdf"),
        letter_pdf(
            "Integrazione documentale pratica n. B/2010/0977",
            "Si trasmette la perizia per la pratica n. B/2010/0977 della sig.ra Anna Rossi, C.F. RSSMRA85T10A562S, immobile in Via Roma 12.",
        ),
    )
    .unwrap();
    std::fs::write(
        inbox.join("mail.eml"),
        email(
            "Anna Rossi <anna.rossi@example.it>",
            "Stato pratica B/2010/0977",
            "Buongiorno, vorrei sapere a che punto è la pratica B/2010/0977. Tel. 339 1748547",
            "a1@example.it",
        ),
    )
    .unwrap();
    std::fs::write(
        inbox.join("mail2.eml"),
        email(
            "Anna Rossi <anna.rossi@example.it>",
            "Contributo affitto",
            "Quando arriva il contributo di autonoma sistemazione?",
            "a2@example.it",
        ),
    )
    .unwrap();
    std::fs::write(
        inbox.join("other.eml"),
        email(
            "Paolo Bianchi <pb@example.it>",
            "Macerie",
            "Le macerie in Via Sallustio 8 sono ancora lì.",
            "b1@example.it",
        ),
    )
    .unwrap();
    let fax_path = inbox.join("fax_0862505245_1.pdf");
    let mut lines = ok(
        &data,
        &[
            "ingest",
            "--json",
            "--channel",
            "fax",
            fax_path.to_str().unwrap(),
        ],
    )
    .json_lines();
    assert_eq!(lines[0]["ticket"]["channel"], "fax");
    std::fs::rename(&fax_path, tmp.path().join("fax.pdf")).unwrap();
    lines.extend(ok(&data, &["ingest", "--json", inbox.to_str().unwrap()]).json_lines());
    let code_of = |name: &str| {
        lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(name))
            .unwrap()["ticket"]["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (fax, mail, mail2, other) = (
        code_of("fax_0862505245_1.pdf"),
        code_of("mail.eml"),
        code_of("mail2.eml"),
        code_of("other.eml"),
    );

    let codes = |run: Run| -> HashSet<String> {
        run.json_lines()
            .iter()
            .map(|l| l["code"].as_str().unwrap().to_string())
            .collect()
    };
    let case = codes(ok(&data, &["dossier", "--case", "B/2010/0977", "--json"]));
    assert_eq!(case, HashSet::from([fax.clone(), mail.clone()]));
    // The fax's dossier: the email through the case, and her other email through her address.
    let of_fax = codes(ok(&data, &["dossier", &fax, "--json"]));
    assert_eq!(of_fax, HashSet::from([mail.clone(), mail2.clone()]));
    // The ticket record lists the directly linked tickets with reasons.
    let t = &ok(&data, &["tickets", "show", &mail, "--json"]).json_lines()[0];
    let reasons: Vec<String> = t["dossier"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["reasons"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "same case: pratica B/2010/0977"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r == "same sender address anna.rossi@example.it"),
        "{reasons:?}"
    );
    assert!(t["entities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "phone" && e["value"] == "+393391748547"));
    // The fiscal code finds the fax; search filters by it and by the case.
    let by_cf = codes(ok(
        &data,
        &["dossier", "--cf", "rssmra85t10a562s", "--json"],
    ));
    assert!(by_cf.contains(&fax), "{by_cf:?}");
    let hits = ok(
        &data,
        &["search", "perizia", "--cf", "RSSMRA85T10A562S", "--json"],
    )
    .json_lines();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        ok(
            &data,
            &["tickets", "list", "--case", "B/2010/0977", "--json"]
        )
        .json_lines()
        .len(),
        2
    );
    let bad = sportello(&data, &["dossier", "--cf", "RSSMRA85T10A562Q"]);
    assert!(
        !bad.status.success() && bad.stderr.contains("not a valid fiscal code"),
        "{}",
        bad.stderr
    );

    // A clerk links an unrelated ticket by hand, then undoes it: both are events.
    ok(
        &data,
        &["dossier", &fax, "--link", &other, "--by", "clerk2"],
    );
    assert!(codes(ok(&data, &["dossier", &fax, "--json"])).contains(&other));
    ok(
        &data,
        &["dossier", &fax, "--unlink", &other, "--by", "clerk2"],
    );
    assert!(!codes(ok(&data, &["dossier", &fax, "--json"])).contains(&other));
    // Unlinking an automatic link holds too.
    ok(&data, &["dossier", &fax, "--unlink", &mail]);
    let case_after = codes(ok(&data, &["dossier", &fax, "--json"]));
    assert!(!case_after.contains(&mail), "{case_after:?}");
    let events: Vec<String> = ok(&data, &["tickets", "show", &other, "--json"]).json_lines()[0]
        ["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        events.contains(&"linked:clerk2".to_string())
            && events.contains(&"unlinked:clerk2".to_string()),
        "{events:?}"
    );

    // Exports can mask fiscal codes and phone numbers.
    let masked = ok(&data, &["export", "--jsonl", "--mask-personal"]).stdout;
    assert!(!masked.contains("RSSMRA85T10A562S") && masked.contains("RSS***********2S"));
    assert!(
        !masked.contains("1748547"),
        "phone left in the masked export"
    );
    let plain = ok(&data, &["export", "--jsonl"]).stdout;
    assert!(plain.contains("RSSMRA85T10A562S"));
}

fn tickets_from_the_same_sender_in_the_dev_mail_share_a_dossier() {
    let Some(corpus) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lines = ok(
        tmp.path(),
        &["ingest", "--json", corpus.join("mail-it").to_str().unwrap()],
    )
    .json_lines();
    let tickets: Vec<&serde_json::Value> = lines
        .iter()
        .map(|l| &l["ticket"])
        .filter(|t| t.is_object() && t["sender"]["email"].is_string())
        .collect();
    // The dev set has one message per citizen (PEC envelopes count under the citizen, not
    // the provider): each writes again, about something else, and the new ticket must
    // find the first in its dossier.
    let mut pairs = 0;
    for (i, first) in tickets.iter().enumerate().take(5) {
        let sender = first["sender"]["email"].as_str().unwrap();
        let again = tmp.path().join(format!("again-{i}.eml"));
        std::fs::write(
            &again,
            format!(
                "From: {sender}\r\nTo: urp@comune.laquila.it\r\nSubject: Altra richiesta\r\n\
                 Message-ID: <again-{i}@example.it>\r\n\r\nVorrei sapere gli orari dell'ufficio.\r\n"
            ),
        )
        .unwrap();
        let new = ok(tmp.path(), &["ingest", "--json", again.to_str().unwrap()]).json_lines();
        let code = new[0]["ticket"]["code"].as_str().unwrap();
        let dossier = ok(tmp.path(), &["dossier", code, "--json"]).json_lines();
        assert!(
            dossier.iter().any(|l| l["code"] == first["code"]),
            "{code} and {} share {sender} but not a dossier",
            first["code"]
        );
        pairs += 1;
    }
    assert!(pairs > 0, "no dev messages with a sender");
}

on_both_backends!(
    every_well_formed_fiscal_code_in_the_dev_requests_is_found_and_no_invalid_one_passes,
    fiscal_codes_inside_pec_envelopes_are_found,
    a_fax_and_an_email_about_the_same_pratica_share_a_case_dossier,
    tickets_from_the_same_sender_in_the_dev_mail_share_a_dossier,
);
