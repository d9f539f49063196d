//! `sportello migrate --to postgres://…`: an office's SQLite store moved to PostgreSQL keeps
//! every ticket, number, history, account and original, and goes on where it stopped.

mod common;
use common::*;

#[test]
fn an_sqlite_store_moves_to_postgresql_and_goes_on_where_it_stopped() {
    let Some(url) = sportello::store::postgres::testing::database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, shared) = (tmp.path().join("data"), tmp.path().join("shared"));
    let fixtures = project_dir().join("fixtures");
    for folder in ["scanner", "fax", "mail"] {
        ok(&data, &["ingest", fixtures.join(folder).to_str().unwrap()]);
    }
    let before = ok(&data, &["tickets", "list", "--json"]).json_lines();
    assert!(before.len() >= 10, "{} tickets", before.len());
    let code = before[0]["code"].as_str().unwrap().to_string();
    ok(&data, &["tickets", "reclassify", &code, "gas"]);
    ok(&data, &["tickets", "status", &code, "closed"]);

    let moved = ok(
        &data,
        &[
            "migrate",
            "--to",
            &url,
            "--originals-to",
            shared.to_str().unwrap(),
            "--json",
        ],
    )
    .json_lines();
    let tables = moved[0]["tables"].as_array().unwrap();
    let rows = |name: &str| {
        tables
            .iter()
            .find(|t| t[0] == name)
            .map(|t| t[1].as_u64().unwrap())
    };
    assert_eq!(rows("tickets"), Some(before.len() as u64));
    assert!(rows("events").unwrap() > before.len() as u64);
    assert!(moved[0]["originals"].as_u64().unwrap() >= before.len() as u64);

    // The same register read from PostgreSQL, originals from the shared folder.
    let pg = [("SPORTELLO_DATABASE", url.as_str())];
    let run = |args: &[&str]| {
        let r = sportello_env(&shared, args, &pg);
        assert!(r.status.success(), "{args:?}: {}", r.stderr);
        r
    };
    let after = run(&["tickets", "list", "--json"]).json_lines();
    let key =
        |t: &serde_json::Value| (t["code"].clone(), t["protocol"].clone(), t["topic"].clone());
    assert_eq!(
        after.iter().map(key).collect::<Vec<_>>(),
        before
            .iter()
            .map(|t| if t["code"] == code.as_str() {
                (t["code"].clone(), t["protocol"].clone(), "gas".into())
            } else {
                key(t)
            })
            .collect::<Vec<_>>()
    );
    let shown = run(&["tickets", "show", &code, "--json"]).json_lines();
    let kinds: Vec<&str> = shown[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let settled = kinds.contains(&"reclassified") || kinds.contains(&"topic_confirmed");
    assert!(settled && kinds.contains(&"status_changed"), "{kinds:?}");
    // Search works on the rebuilt index; the originals are readable from the new folder.
    let hits = run(&["search", "allaccio", "--json"]).json_lines();
    assert!(!hits.is_empty());
    // The next request takes the next number; the same file again is a duplicate.
    let next = tmp.path().join("nuova.txt");
    std::fs::write(&next, "Oggetto: acqua\n\nChiedo l'allaccio dell'acqua.").unwrap();
    let filed = run(&["ingest", "--json", next.to_str().unwrap()]).json_lines();
    let numbers: Vec<u64> = after
        .iter()
        .map(|t| {
            t["protocol"]
                .as_str()
                .unwrap()
                .split_once('/')
                .unwrap()
                .1
                .parse()
                .unwrap()
        })
        .collect();
    let protocol = filed[0]["ticket"]["protocol"].as_str().unwrap().to_string();
    let n: u64 = protocol.split_once('/').unwrap().1.parse().unwrap();
    assert_eq!(n, numbers.iter().max().unwrap() + 1);
    let again = run(&[
        "ingest",
        "--json",
        fixtures.join("scanner").to_str().unwrap(),
    ])
    .json_lines();
    assert!(again.iter().all(|o| o["outcome"] != "created"), "{again:?}");

    // A register that has tickets is never overwritten.
    let twice = sportello(&data, &["migrate", "--to", &url]);
    assert!(!twice.status.success());
    assert!(twice.stderr.contains("empty database"), "{}", twice.stderr);
}
