//! The register's behaviour, the same on every backend: each check takes any [`Register`],
//! and `on_every_backend!` runs it once per backend: SQLite, and PostgreSQL on a throwaway
//! cluster (`postgres::testing`; skipped with a message on a machine without PostgreSQL,
//! unless `SPORTELLO_REQUIRE_POSTGRES` is set, as `make test` does).

use super::prelude::*;
use super::{Filed, Intake, NewTicket, SearchText, TicketFilter, Via};
use crate::classify::model::Example;
use crate::classify::rules::UNSORTED;
use crate::entities::{Entity, Kind};
use crate::model::{Channel, Sender, Status};

/// A message from `email` about `case`; `n` makes its bytes, name and date its own.
pub fn ticket(n: usize, email: &str, case: &str) -> NewTicket {
    let e = |kind, value: &str, place: &str| Entity {
        kind,
        value: value.into(),
        valid: true,
        confidence: 1.0,
        place: place.into(),
        raw: value.into(),
    };
    let intake = Intake {
        source: "t".into(),
        name: format!("t{n}"),
        sha256: format!("{n:064}"),
        size: 0,
        mtime_ns: None,
    };
    let sender = Sender {
        email: Some(email.into()),
        ..Sender::default()
    };
    let mut t = NewTicket::arriving(
        Channel::Email,
        format!("2010-01-0{}T00:00:00Z", n + 1),
        sender,
        intake,
    );
    t.subject = format!("t{n}");
    t.entities = vec![
        e(Kind::Email, email, "sender"),
        e(Kind::CaseRef, case, "body"),
    ];
    t
}

fn example(id: &str, topic: &str) -> Example {
    Example {
        id: id.into(),
        subject: format!("subject {id}"),
        body: format!("body {id}"),
        topic: topic.into(),
        channel: Some("email".into()),
        sender_email: None,
    }
}

pub fn a_batch_files_in_order_in_one_transaction_and_sees_its_own_items(store: &mut impl Register) {
    let mut first = ticket(0, "a@x.it", "pratica X");
    first.subject = "Allacciamento gas".into();
    first.search_text = Some(SearchText::of(&first));
    let second = ticket(1, "b@x.it", "pratica Y");
    let mut again = ticket(0, "a@x.it", "pratica X");
    again.intake.name = "t0-copy".into();
    let results = store.file_batch(&[&first, &second, &again], "URP");
    assert!(matches!(results[0], Ok(Filed::Created { .. })));
    assert!(matches!(results[1], Ok(Filed::Created { .. })));
    // The same bytes again in the same batch: recognised, not a second ticket.
    match (&results[0], &results[2]) {
        (Ok(a), Ok(Filed::Duplicate { code })) => assert_eq!(a.code(), code),
        other => panic!("{other:?}"),
    }
    // Text indexed by a worker is searchable like text indexed when filed.
    assert_eq!(found(store, "allacciamenti").len(), 1);
}

/// A ticket filed classified and flagged records, in order, that it was created with its
/// classification (as its row says) and why it needs attention; one filed unclassified,
/// only its creation, with no classification in it.
pub fn a_filed_tickets_classification_and_flag_are_its_first_events(store: &mut impl Register) {
    let mut classified = ticket(0, "a@x.it", "pratica X");
    classified.topic = Some("gas".into());
    classified.topic_confidence = Some(0.999_531_03);
    classified.topic_reason = Some("rules: gas-words (\"gas\")".into());
    classified.attention = vec!["allegato illeggibile".into()];
    let plain = ticket(1, "b@x.it", "pratica Y");
    let results = store.file_batch(&[&classified, &plain], "URP");
    let events = |i: usize| {
        let code = results[i].as_ref().unwrap().code().to_string();
        store.ticket(&code).unwrap().events
    };
    let first = events(0);
    let kinds: Vec<&str> = first.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["created", "needs_attention"]);
    let detail = first[0].detail();
    assert_eq!(detail["topic"], "gas");
    assert_eq!(detail["confidence"], serde_json::json!(0.99953103));
    assert_eq!(detail["reason"], "rules: gas-words (\"gas\")");
    assert!(first.iter().all(|e| e.actor == "sportello"));
    let second = events(1);
    let kinds: Vec<&str> = second.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["created"]);
    let detail = second[0].detail();
    for unclassified in ["topic", "confidence", "reason"] {
        assert!(detail.get(unclassified).is_none(), "{detail}");
    }
}

/// A store written before a filing's classification went into its `created` event has it in
/// a `classified` event after a `created` one without it. The daily register still lists
/// such a ticket under the topic it was filed with, and the learning still judges that
/// answer, beside tickets filed since. `sql` runs statements on the backend: the old filing
/// is written as the old code wrote it, which the register's API no longer does. Its file's
/// name holds `"topic":`, as a sender may name a file: the `created` event must not pass for
/// a classification (`CLASSIFYING_EVENT` relies on JSON escaping the quotes).
pub fn a_filing_classified_as_before_is_read_as_its_filing<S: Register>(
    store: &mut S,
    sql: impl FnOnce(&mut S, &str),
) {
    let mut unclassified = ticket(0, "a@x.it", "pratica X");
    unclassified.intake.name = r#"scan "topic":"waste".pdf"#.into();
    let old = store.file(&unclassified, "URP").unwrap().code().to_string();
    let old_detail = r#"{"confidence":0.7,"reason":"rules: gas-words (gas)","topic":"gas"}"#;
    sql(
        store,
        &format!(
            "UPDATE tickets SET topic = 'gas', topic_confidence = 0.7, \
             topic_reason = 'rules: gas-words (gas)' WHERE code = '{old}';
             INSERT INTO events (ticket_id, at, actor, kind, detail) \
             SELECT id, registered_at, 'sportello', 'classified', '{old_detail}' \
             FROM tickets WHERE code = '{old}';"
        ),
    );
    let mut t = ticket(1, "b@x.it", "pratica Y");
    t.topic = Some("waste".into());
    t.topic_confidence = Some(0.9);
    let new = store.file(&t, "URP").unwrap().code().to_string();
    let kinds: Vec<String> = store
        .ticket(&old)
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind().to_string())
        .collect();
    assert_eq!(kinds, ["created", "classified"], "written as before");
    // A clerk corrects the old one and closes the new one as it was filed.
    store.reclassify(&old, "housing", None, "anna").unwrap();
    store.set_status(&new, Status::Closed, "anna").unwrap();
    assert_eq!(
        store.settled_answers().unwrap(),
        [(0.7, false), (0.9, true)]
    );
    let day = store
        .registrations_between("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
        .unwrap();
    let topics: Vec<(&str, Option<&str>)> = day
        .iter()
        .map(|e| (e.code.as_str(), e.topic.as_deref()))
        .collect();
    assert_eq!(
        topics,
        [(old.as_str(), Some("gas")), (new.as_str(), Some("waste"))],
        "each under the topic it was filed with"
    );
}

/// The codes of the tickets a search for `query` finds, with no filter.
fn found(store: &mut impl Register, query: &str) -> Vec<String> {
    store
        .search(
            &crate::search::SearchQuery::parse(query).unwrap(),
            &TicketFilter::default(),
        )
        .unwrap()
        .into_iter()
        .map(|hit| hit.code)
        .collect()
}

/// A ticket and a reply to it in one batch: the index rows of a batch are written once all
/// its items are in (see `Indexing`), and the reply's words still reach its ticket's row.
pub fn a_reply_filed_in_its_tickets_batch_is_searchable_with_it(store: &mut impl Register) {
    let mail = |id: &str, replies_to: &[&str]| super::MailFacts {
        message_id: Some(id.into()),
        in_reply_to: replies_to.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    let with_text = |t: &mut NewTicket, name: &str, text: &str| {
        let mut d =
            super::NewDocument::original(name.into(), "message/rfc822", t.intake.sha256.clone(), 0);
        d.doc.text = text.into();
        t.documents.push(d);
    };
    let mut first = ticket(0, "a@x.it", "pratica X");
    first.subject = "Allacciamento gas".into();
    first.mail = Some(mail("<m1@x.it>", &[]));
    with_text(&mut first, "m1.eml", "Chiedo l'allacciamento.");
    let other = ticket(1, "b@x.it", "pratica Y");
    let mut reply = ticket(2, "a@x.it", "pratica X");
    reply.subject = "Re: Allacciamento gas".into();
    reply.mail = Some(mail("<m2@x.it>", &["<m1@x.it>"]));
    with_text(&mut reply, "m2.eml", "Il contatore risulta guasto.");
    let results = store.file_batch(&[&first, &other, &reply], "URP");
    let code = match (&results[0], &results[1], &results[2]) {
        (
            Ok(a @ Filed::Created { .. }),
            Ok(Filed::Created { .. }),
            Ok(Filed::Appended { code, .. }),
        ) => {
            assert_eq!(a.code(), code);
            code.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(found(store, "contatori guasti"), vec![code.clone()]);
    assert_eq!(found(store, "allacciamenti"), vec![code]);
    assert_eq!(
        found(store, "t1").len(),
        1,
        "every new ticket of the batch is indexed"
    );
}

pub fn dossiers_follow_case_links_only_from_the_ticket_itself(store: &mut impl Register) {
    let mut codes = Vec::new();
    for (n, (email, case)) in [
        ("a@x.it", "pratica X"),
        ("b@x.it", "pratica X"),
        ("b@x.it", "pratica Y"),
        ("d@x.it", "pratica Y"),
    ]
    .iter()
    .enumerate()
    {
        codes.push(
            store
                .file(&ticket(n, email, case), "URP")
                .unwrap()
                .code()
                .to_string(),
        );
    }
    let got: Vec<String> = store
        .dossier(&codes[0])
        .unwrap()
        .into_iter()
        .map(|l| l.code)
        .collect();
    let mut want = vec![codes[2].clone(), codes[1].clone()];
    want.sort_by(|a, b| b.cmp(a));
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        got_sorted, want,
        "A reaches B by the case and C through B's address, not D"
    );
}

/// The model learns from the labelled history, corrections, confirmations and tickets
/// closed with their topic; never from guesses nobody looked at, nor from `unsorted`.
pub fn only_what_a_person_settled_is_learned_and_the_history_is_kept(store: &mut impl Register) {
    assert_eq!(
        store
            .import_labelled(&[example("h1", "gas"), example("h2", "waste")])
            .unwrap(),
        2
    );
    // Importing the same file again adds nothing.
    assert_eq!(store.import_labelled(&[example("h1", "gas")]).unwrap(), 0);
    let mut codes = Vec::new();
    for (n, topic) in [
        (1, "gas"),
        (2, "waste"),
        (3, UNSORTED),
        (4, "housing"),
        (5, "gas"),
    ] {
        let mut t = ticket(n, &format!("c{n}@example.it"), "B/1");
        t.topic = Some(topic.into());
        t.topic_confidence = Some(n as f32 / 10.0);
        codes.push(store.file(&t, "URP").unwrap().code().to_string());
    }
    let before = store.settled_since_training().unwrap();
    store
        .reclassify(&codes[0], "housing", None, "clerk")
        .unwrap(); // corrected
    store.reclassify(&codes[1], "waste", None, "clerk").unwrap(); // confirmed
    store
        .set_status(&codes[2], Status::Closed, "clerk")
        .unwrap(); // closed unsorted
    store
        .set_status(&codes[3], Status::Closed, "clerk")
        .unwrap(); // closed unchanged
    store
        .set_status(&codes[4], Status::InProgress, "clerk")
        .unwrap(); // not settled
    assert_eq!(store.settled_since_training().unwrap(), before + 3);
    let learned: Vec<(String, String)> = store
        .training_examples()
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.topic))
        .collect();
    let want = |id: &str, t: &str| (id.to_string(), t.to_string());
    assert_eq!(
        learned,
        [
            want("h1", "gas"),
            want("h2", "waste"),
            want(&codes[0], "housing"),
            want(&codes[1], "waste"),
            want(&codes[3], "housing"),
        ]
    );
    let t = store.ticket(&codes[1]).unwrap();
    assert_eq!(t.events.last().unwrap().kind(), "topic_confirmed");
    // The office's record of answers: what each settled ticket was filed with, and whether
    // it stood (the unsorted one answered nothing; the unsettled one is not judged yet).
    assert_eq!(
        store.settled_answers().unwrap(),
        [(0.1, false), (0.2, true), (0.4, true)]
    );
    // Training restarts the count, keeping what was settled meanwhile.
    let settled = store.settled_since_training().unwrap();
    store.reclassify(&codes[4], "gas", None, "clerk").unwrap();
    store.trained(settled).unwrap();
    assert_eq!(store.settled_since_training().unwrap(), 1);
    // The history survives any number of trainings.
    assert_eq!(store.training_examples().unwrap().len(), 6);
}

/// A bulk reclassification files new guesses for what nobody settled, and only that: a
/// clerk's topic, a closed ticket and a person's routing stand, and nothing is learned.
pub fn a_bulk_reclassification_moves_only_what_nobody_settled(store: &mut impl Register) {
    let mut codes = Vec::new();
    for n in 0..4 {
        let mut t = ticket(n, &format!("r{n}@example.it"), "R/1");
        t.topic = Some("gas".into());
        t.office = Some("Servizio gas".into());
        codes.push(store.file(&t, "URP").unwrap().code().to_string());
    }
    store.reclassify(&codes[1], "gas", None, "clerk").unwrap(); // confirmed
    store
        .set_status(&codes[2], Status::Closed, "clerk")
        .unwrap(); // closed
    store
        .route(&codes[3], "Protezione civile", "clerk")
        .unwrap(); // routed by a person
    let settled = store.settled_since_training().unwrap();
    let unsettled = store.unsettled_topics().unwrap();
    let open: Vec<&str> = unsettled.iter().map(|u| u.code.as_str()).collect();
    assert_eq!(open, [codes[0].as_str(), codes[3].as_str()]);
    // What the classifier reads: the body, as the classify stage reads it.
    assert_eq!(unsettled[0].text, store.ticket(&codes[0]).unwrap().body);
    let c = crate::classify::Classification {
        topic: "waste".into(),
        confidence: 0.9,
        reason: "rule".into(),
        secondary: vec![],
        office: Some("Igiene urbana".into()),
        guesses: vec![("waste".into(), 0.9), ("gas".into(), 0.1)],
    };
    for u in &unsettled {
        assert!(store.apply_classification(u.id, &c, "admin").unwrap());
    }
    let moved = store.ticket(&codes[0]).unwrap();
    assert_eq!(moved.topic.as_deref(), Some("waste"));
    assert_eq!(moved.office.as_deref(), Some("Igiene urbana"));
    assert!(!moved.topic_reviewed);
    assert_eq!(moved.events.last().unwrap().kind(), "reclassified");
    let routed = store.ticket(&codes[3]).unwrap();
    assert_eq!(routed.topic.as_deref(), Some("waste"));
    assert_eq!(
        routed.office.as_deref(),
        Some("Protezione civile"),
        "a person's routing stands"
    );
    // Settled meanwhile (here: closed before the new reading is filed): left alone.
    store
        .set_status(&codes[0], Status::Closed, "clerk")
        .unwrap();
    let settled_now = store.settled_since_training().unwrap();
    assert!(!store
        .apply_classification(unsettled[0].id, &c, "admin")
        .unwrap());
    for code in &codes[1..3] {
        assert_eq!(store.ticket(code).unwrap().topic.as_deref(), Some("gas"));
    }
    // Only the clerk's closing counted towards training, not the guesses.
    assert_eq!(settled_now, settled + 1);
    assert_eq!(store.settled_since_training().unwrap(), settled_now);
}

/// Protocol numbers run 1, 2, 3… within a year, one per new ticket, none for a duplicate;
/// codes are unique.
pub fn protocol_numbers_have_no_gap_and_no_duplicate(store: &mut impl Register) {
    let mut protocols = Vec::new();
    let mut codes = std::collections::HashSet::new();
    for n in 0..5 {
        let t = ticket(n, &format!("p{n}@x.it"), "pratica P");
        match store.file(&t, "URP").unwrap() {
            Filed::Created { code, protocol } => {
                assert!(codes.insert(code));
                protocols.push(protocol);
            }
            other => panic!("{other:?}"),
        }
        // The same bytes again: no number spent.
        let mut again = ticket(n, &format!("p{n}@x.it"), "pratica P");
        again.intake.name = format!("copy-{n}");
        assert!(matches!(
            store.file(&again, "URP").unwrap(),
            Filed::Duplicate { .. }
        ));
    }
    let numbers: Vec<u64> = protocols
        .iter()
        .map(|p| {
            let (year, number) = p.split_once('/').expect("year/number");
            // The year of registration, not of the message's date.
            let this_year = crate::domain::filing::protocol_year(&super::now_rfc3339());
            assert_eq!(year.parse().ok(), this_year, "{p}");
            number.parse().unwrap()
        })
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "{protocols:?}");
}

/// A clerk's changes land on the ticket and in its history, with who made them.
pub fn a_clerks_changes_are_recorded_with_their_author(store: &mut impl Register) {
    let code = store
        .file(&ticket(0, "a@x.it", "pratica A"), "URP")
        .unwrap()
        .code()
        .to_string();
    assert!(store.route(&code, "Servizio gas", "anna").unwrap());
    store
        .add_note(&code, "chiamato il cittadino", "anna")
        .unwrap();
    assert!(store.set_status(&code, Status::Closed, "bruno").unwrap());
    let t = store.ticket(&code).unwrap();
    assert_eq!(t.office.as_deref(), Some("Servizio gas"));
    let by: Vec<(&str, &str)> = t
        .events
        .iter()
        .filter(|e| e.actor != "sportello")
        .map(|e| (e.kind(), e.actor.as_str()))
        .collect();
    assert_eq!(by.len(), 3, "{by:?}");
    assert!(by
        .iter()
        .all(|(_, actor)| ["anna", "bruno"].contains(actor)));
    // What a citizen sees follows, without the content.
    let seen = store.track(&code).unwrap();
    assert_eq!(seen.status, Status::Closed);
    assert_eq!(seen.office.as_deref(), Some("Servizio gas"));
    assert!(store.ticket("URP-NOPE-0000").is_err());
}

/// Search forgives accents, case and word endings, and excludes what is excluded.
pub fn search_forgives_accents_and_word_endings(store: &mut impl Register) {
    for (n, subject) in [
        (0, "Agibilità dell'abitazione"),
        (1, "Allacciamenti del gas"),
    ] {
        let mut t = ticket(n, "a@x.it", "pratica S");
        t.subject = subject.into();
        t.search_text = Some(SearchText::of(&t));
        store.file(&t, "URP").unwrap();
    }
    let mut count = |q: &str| found(store, q).len();
    assert_eq!(count("AGIBILITA"), 1);
    assert_eq!(count("allacciamento"), 1);
    assert_eq!(count("gas -allacciamento"), 0);
}

/// A message from `email` whose acknowledgement is due by email.
pub fn acknowledged(n: usize, email: &str, message_id: &str) -> NewTicket {
    let mut t = ticket(n, email, "pratica O");
    t.mail = Some(super::MailFacts {
        message_id: Some(message_id.into()),
        ack: Some(super::AckRequest {
            to: email.into(),
            via: Via::Email,
            language: "it".into(),
            max_per_hour: 5,
            domain: "comune.example.it".into(),
        }),
        ..Default::default()
    });
    t
}

/// An acknowledgement is handed to one sender only.
pub fn an_outbox_message_is_claimed_once(store: &mut impl Register) {
    store
        .file(&acknowledged(0, "a@x.it", "<m0@x.it>"), "URP")
        .unwrap();
    // A text message's acknowledgement waits for the SMS sink, not the SMTP one.
    let mut sms = ticket(1, "", "pratica S");
    sms.channel = Channel::Sms;
    sms.sender = Sender {
        phone: Some("+393331234567".into()),
        ..Default::default()
    };
    sms.mail = Some(super::MailFacts {
        ack: Some(super::AckRequest {
            to: "+393331234567".into(),
            via: Via::Sms,
            language: "it".into(),
            max_per_hour: 5,
            domain: "sms".into(),
        }),
        ..Default::default()
    });
    store.file(&sms, "URP").unwrap();
    let texts = store.outbox_due(Via::Sms, 10, true).unwrap();
    assert_eq!(texts.len(), 1);
    assert_eq!(
        (texts[0].to.as_str(), texts[0].via),
        ("+393331234567", Via::Sms)
    );
    let due = store.outbox_due(Via::Email, 10, true).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].to, "a@x.it");
    assert!(store.outbox_claim(&due[0]).unwrap());
    assert!(!store.outbox_claim(&due[0]).unwrap(), "claimed twice");
    store.outbox_result(&due[0], None, 0).unwrap();
    assert!(store.outbox_claim(&texts[0]).unwrap());
    store.outbox_result(&texts[0], None, 0).unwrap();
    assert_eq!(store.outbox_pending().unwrap(), 0);
}

/// Closing a request tells its citizen once, the way their acknowledgement went; a ticket
/// the office never acknowledged gets no notice.
pub fn closing_tells_the_citizen_once(store: &mut impl Register) {
    use crate::store::Notice;
    let code = store
        .file(&acknowledged(0, "a@x.it", "m0@x.it"), "URP")
        .unwrap()
        .code()
        .to_string();
    let quiet = store
        .file(&ticket(1, "b@x.it", "pratica D"), "URP")
        .unwrap()
        .code()
        .to_string();
    let ack = store.outbox_due(Via::Email, 10, true).unwrap();
    assert_eq!(ack.len(), 1);
    assert!(store.outbox_claim(&ack[0]).unwrap());
    store.outbox_result(&ack[0], None, 0).unwrap();
    for c in [&code, &quiet] {
        assert!(store.set_status(c, Status::Closed, "anna").unwrap());
        // Closed again: nothing changes, nothing more is sent.
        assert!(!store.set_status(c, Status::Closed, "anna").unwrap());
    }
    let due = store.outbox_due(Via::Email, 10, true).unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].ticket_code.as_str(),
            due[0].notice,
            due[0].to.as_str()
        ),
        (code.as_str(), Notice::Closed, "a@x.it")
    );
    assert_eq!(due[0].in_reply_to.as_deref(), Some("m0@x.it"));
    let history = store.ticket(&code).unwrap().events;
    assert!(history.iter().any(|e| e.kind() == "notice_queued"));
}

/// An annulled registration stays, marked, with its number; the number is never given again,
/// and annulling twice is refused.
pub fn an_annulled_registration_keeps_its_number(store: &mut impl Register) {
    let first = store
        .file(&ticket(0, "a@x.it", "pratica A"), "URP")
        .unwrap();
    let code = first.code().to_string();
    store
        .annul(&code, "oggetto errato", "decreto 12/2026", "admin")
        .unwrap();
    let t = store.ticket(&code).unwrap();
    let a = t.annulled.expect("marked annulled");
    assert_eq!(
        (a.reason.as_str(), a.act.as_str(), a.by.as_str()),
        ("oggetto errato", "decreto 12/2026", "admin")
    );
    assert_eq!(t.subject, "t0", "its original values are kept");
    assert!(t.events.iter().any(|e| e.kind() == "annulled"));
    assert!(store.annul(&code, "di nuovo", "", "admin").is_err());
    let again = store
        .file(&ticket(1, "a@x.it", "pratica A"), "URP")
        .unwrap();
    let (Filed::Created { protocol: p1, .. }, Filed::Created { protocol: p2, .. }) = (first, again)
    else {
        panic!("both filed as new");
    };
    assert!(
        p2 > p1,
        "{p1} then {p2}: the annulled number is not given again"
    );
}

/// What the daily register asks: a day's registrations in protocol order, each with the topic
/// it was filed under and the sender's own protocol number, and the day's changes in order.
pub fn a_days_registrations_and_changes_are_listed(store: &mut impl Register) {
    let mut a = ticket(0, "a@x.it", "prot 5678/2011");
    a.topic = Some("gas".into());
    let a = store.file(&a, "URP").unwrap().code().to_string();
    let b = store
        .file(&ticket(1, "b@x.it", "pratica B"), "URP")
        .unwrap()
        .code()
        .to_string();
    let (from, until) = ("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z");
    assert!(store
        .registrations_between("2000-01-01T00:00:00Z", "2000-01-02T00:00:00Z")
        .unwrap()
        .is_empty());
    store.reclassify(&a, "housing", None, "anna").unwrap();
    store.annul(&b, "doppione", "", "admin").unwrap();
    let day = store.registrations_between(from, until).unwrap();
    assert_eq!(
        day.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(),
        [a.as_str(), b.as_str()]
    );
    assert!(day[0].protocol < day[1].protocol);
    assert_eq!(
        day[0].topic.as_deref(),
        Some("gas"),
        "the topic it was filed under"
    );
    assert_eq!(day[0].sender_protocol.as_deref(), Some("prot 5678/2011"));
    assert_eq!(day[1].sender_protocol, None);
    let changes = store.register_changes_between(from, until).unwrap();
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.code.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(a.as_str(), "reclassified"), (b.as_str(), "annulled")]
    );
    assert_eq!(changes[1].detail["reason"], "doppione");
}

/// Accounts keep their role; a session is found by its token until it ends.
pub fn sessions_live_until_they_end(store: &mut impl Register) {
    use super::web::Role;
    store.add_user("anna", Role::Clerk, "hash-a").unwrap();
    let (user, hash) = store.user_credentials("anna").unwrap().unwrap();
    assert_eq!((user.role, hash.as_str()), (Role::Clerk, "hash-a"));
    assert!(store.user_credentials("nobody").unwrap().is_none());
    store.create_session(user.id, "tok", "csrf", 8).unwrap();
    let session = store.session("tok").unwrap().unwrap();
    assert_eq!(
        (session.user.name.as_str(), session.csrf.as_str()),
        ("anna", "csrf")
    );
    store.end_session("tok").unwrap();
    assert!(store.session("tok").unwrap().is_none());
}

fn request_limits_count_per_subject_and_window(store: &mut impl Register) {
    let t = 1_000_000;
    for _ in 0..3 {
        assert!(store.count_request("track:192.0.2.1", t, 60, 3).unwrap());
    }
    assert!(!store
        .count_request("track:192.0.2.1", t + 59, 60, 3)
        .unwrap());
    // Another address, and another limit of the same address, count apart.
    assert!(store
        .count_request("track:192.0.2.2", t + 59, 60, 3)
        .unwrap());
    assert!(store
        .count_request("post:192.0.2.1", t + 59, 60, 3)
        .unwrap());
    // The window over, the address starts again.
    assert!(store
        .count_request("track:192.0.2.1", t + 60, 60, 3)
        .unwrap());
}

fn a_job_is_filed_once_whatever_its_workers_do(store: &mut impl Register) {
    use super::{JobCounts, StoreError};
    let t = 1_000_000;
    let a = store.enqueue(r#"{"n":1}"#, &"a".repeat(64), t).unwrap();
    let b = store.enqueue(r#"{"n":2}"#, &"b".repeat(64), t).unwrap();
    // In order, each to one worker; nothing left for a third.
    let ja = store.claim("w1", t, 30, 3).unwrap().unwrap();
    assert_eq!(
        (ja.id, ja.attempts, ja.description.as_str()),
        (a, 1, r#"{"n":1}"#)
    );
    let jb = store.claim("w2", t, 30, 3).unwrap().unwrap();
    assert_eq!(jb.id, b);
    assert_eq!(store.claim("w3", t + 10, 30, 3).unwrap(), None);
    // w1 renews its lease; w2 goes silent, and once its lease is over w3 takes its job.
    assert!(store.heartbeat(a, "w1", t + 20, 30).unwrap());
    let again = store.claim("w3", t + 31, 30, 3).unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (b, 2));
    // w2 comes back: it can neither renew nor file.
    assert!(!store.heartbeat(b, "w2", t + 32, 30).unwrap());
    let late = store.complete(b, "w2", &ticket(2, "q2@x.it", "pratica Q"), "URP");
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(store.count().unwrap(), 0);
    store
        .complete(b, "w3", &ticket(2, "q2@x.it", "pratica Q"), "URP")
        .unwrap();
    store
        .complete(a, "w1", &ticket(1, "q1@x.it", "pratica Q"), "URP")
        .unwrap();
    assert_eq!(store.count().unwrap(), 2);
    assert_eq!(store.job_counts().unwrap(), JobCounts::default());
}

fn a_failing_job_backs_off_and_a_poison_one_is_parked(store: &mut impl Register) {
    use super::{JobCounts, JobFate};
    let t = 1_000_000;
    let id = store.enqueue("{}", &"c".repeat(64), t).unwrap();
    store.claim("w", t, 30, 2).unwrap().unwrap();
    let fate = store.fail(id, "w", "disk full", t, 2).unwrap();
    assert_eq!(fate, JobFate::Retry { not_before: t + 5 });
    assert_eq!(store.claim("w", t + 4, 30, 2).unwrap(), None);
    assert_eq!(store.claim("w", t + 5, 30, 2).unwrap().unwrap().attempts, 2);
    assert_eq!(
        store.fail(id, "w", "disk still full", t + 6, 2).unwrap(),
        JobFate::Parked
    );
    assert_eq!(store.claim("w", t + 1_000, 30, 2).unwrap(), None);
    // An item whose worker dies each time it is read: claimed twice, then parked.
    let poison = store.enqueue("{}", &"d".repeat(64), t).unwrap();
    assert_eq!(store.claim("w", t, 30, 2).unwrap().unwrap().id, poison);
    assert_eq!(
        store.claim("w", t + 31, 30, 2).unwrap().unwrap().attempts,
        2
    );
    assert_eq!(store.claim("w", t + 62, 30, 2).unwrap(), None);
    let parked = store.parked_jobs().unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!((parked[0].0, parked[0].3.as_str()), (id, "disk still full"));
    assert!(
        parked[1].3.contains("stopped without finishing it 2 times"),
        "{parked:?}"
    );
    assert_eq!(
        store.job_counts().unwrap(),
        JobCounts {
            parked: 2,
            ..JobCounts::default()
        }
    );
}

/// Runs every check above once per backend, each on a fresh store.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let mut store = crate::store::sqlite::Store::open(dir.path()).unwrap();
                    super::$check(&mut store);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $check() {
                    let Some(url) = crate::store::postgres::testing::database() else {
                        return;
                    };
                    let dir = tempfile::tempdir().unwrap();
                    let mut store = crate::store::postgres::PgStore::open(&url, dir.path()).unwrap();
                    super::$check(&mut store);
                }
            )*
        }
    };
}

on_every_backend!(
    a_batch_files_in_order_in_one_transaction_and_sees_its_own_items,
    a_reply_filed_in_its_tickets_batch_is_searchable_with_it,
    dossiers_follow_case_links_only_from_the_ticket_itself,
    only_what_a_person_settled_is_learned_and_the_history_is_kept,
    protocol_numbers_have_no_gap_and_no_duplicate,
    a_clerks_changes_are_recorded_with_their_author,
    search_forgives_accents_and_word_endings,
    an_outbox_message_is_claimed_once,
    closing_tells_the_citizen_once,
    an_annulled_registration_keeps_its_number,
    a_days_registrations_and_changes_are_listed,
    sessions_live_until_they_end,
    request_limits_count_per_subject_and_window,
    a_job_is_filed_once_whatever_its_workers_do,
    a_failing_job_backs_off_and_a_poison_one_is_parked,
    a_bulk_reclassification_moves_only_what_nobody_settled,
    a_filed_tickets_classification_and_flag_are_its_first_events,
);
