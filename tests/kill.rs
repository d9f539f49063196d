//! `kill -9` of the runner at random moments while it files a drop folder, again and again:
//! no item lost, none filed twice, protocol numbers without a gap, and the runner's workers
//! die with it. `SPORTELLO_KILL_ITEMS` (default 200) and `SPORTELLO_KILL_ROUNDS` (default 2)
//! set the size; `make soak` runs 1,000 items over 20 rounds.

mod common;
use common::*;
use sportello::testdata::{email, letter_pdf};
use std::collections::HashSet;
use std::time::Duration;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fixed-seed generator: the same kill moments on every run.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn sigkill_at_random_moments_loses_nothing_and_files_nothing_twice() {
    let items = setting("SPORTELLO_KILL_ITEMS", 200);
    let rounds = setting("SPORTELLO_KILL_ROUNDS", 2);
    let mut rng = SplitMix(2009);
    let mut total_kills = 0;
    let mut kills_mid_batch = 0;
    for round in 0..rounds {
        new_register();
        let tmp = tempfile::tempdir().unwrap();
        let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
        std::fs::create_dir_all(&drop).unwrap();
        let pipeline = folder_pipeline(tmp.path(), &drop, "scanner", 0.1);
        let mut names = HashSet::new();
        for i in 0..items {
            // Letters and, one in five, messages: both kinds of reader are killed mid-way.
            let (name, bytes) = if i % 5 == 0 {
                (
                    format!("r{round}-messaggio-{i:04}.eml"),
                    email(
                        &format!("c{i}@example.it"),
                        &format!("Richiesta {i}"),
                        &format!("Richiesta numero {i} del giro {round}."),
                        &format!("<kill-{round}-{i}@example.it>"),
                    ),
                )
            } else {
                (
                    format!("r{round}-lettera-{i:04}.pdf"),
                    letter_pdf(
                        &format!("Richiesta {i}"),
                        &format!("Richiesta numero {i} del giro {round}, per la prova di arresto."),
                    ),
                )
            };
            std::fs::write(drop.join(&name), bytes).unwrap();
            names.insert(name);
        }
        let processed = drop.join("processed");
        let mut kills = 0;
        while count_files(&processed) < items && kills < 12 {
            // The moment: when a random number of the files left has been filed (a run
            // files hundreds a second, so a clock would mostly miss the intake).
            let done = count_files(&processed);
            let target = done + 1 + (rng.next() as usize) % (items - done);
            let mut runner = Runner::start(&data, &pipeline, &[]);
            let pid = runner.child.id();
            wait_for(Duration::from_secs(30), || {
                count_files(&processed) >= target
            });
            let workers = children(pid);
            let before = count_files(&processed);
            runner.child.kill().unwrap(); // SIGKILL
            runner.child.wait().unwrap();
            kills += 1;
            if before > 0 && before < items {
                kills_mid_batch += 1;
            }
            assert!(
                wait_for(Duration::from_secs(10), || workers
                    .iter()
                    .all(|&w| !alive(w))),
                "the runner's workers outlived it"
            );
        }
        total_kills += kills;
        ok(
            &data,
            &["run", "--once", "--pipeline", pipeline.to_str().unwrap()],
        );
        assert_eq!(
            count_files(&drop),
            0,
            "round {round}: every file left the drop folder"
        );
        assert_eq!(
            count_files(&processed),
            items,
            "round {round}: all in processed/"
        );
        let all = ok(&data, &["export", "--jsonl"]).json_lines();
        assert_eq!(all.len(), items, "round {round}: one ticket per file");
        let filed: HashSet<String> = all
            .iter()
            .map(|t| t["documents"][0]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(filed, names, "round {round}: each file filed once");
        let mut protocols: Vec<String> = all
            .iter()
            .map(|t| t["protocol"].as_str().unwrap().to_string())
            .collect();
        protocols.sort();
        protocols.dedup();
        assert_eq!(
            protocols.len(),
            items,
            "round {round}: no protocol number twice"
        );
        let highest: usize = protocols
            .iter()
            .filter_map(|p| p.rsplit('/').next()?.parse().ok())
            .max()
            .unwrap();
        assert_eq!(
            highest, items,
            "round {round}: no gap in the protocol numbers"
        );
        for t in &all {
            assert_eq!(t["needs_attention"], false, "round {round}: {t}");
            assert_eq!(duplicate_events(t), 0, "a restart is not a duplicate: {t}");
        }
    }
    eprintln!(
        "{rounds} rounds of {items} items: {total_kills} kills, {kills_mid_batch} in the middle of the intake"
    );
    assert!(
        kills_mid_batch > 0,
        "no kill landed mid-intake: the test proved nothing"
    );
}

on_both_backends!(sigkill_at_random_moments_loses_nothing_and_files_nothing_twice,);
