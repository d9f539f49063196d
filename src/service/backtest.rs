//! What an edit of the rules would change, before it goes live: the same answer for the
//! rules editor in the web app and `sportello rules test`.

use crate::classify::classify;
use crate::classify::eval::{Labelled, Report};
use crate::classify::model::Model;
use crate::classify::rules::{Request, Rules};
use crate::store::web::RecentRequest;
use std::collections::BTreeMap;

/// A labelled record the edit classifies differently.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub id: String,
    pub labelled: String,
    pub before: String,
    pub after: String,
}

/// What an edit of the rules changes, before it goes live.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub labelled: usize,
    pub before: Report,
    pub after: Report,
    pub changes: Vec<Change>,
    /// Recent tickets: (from, to) → how many would move.
    pub moves: BTreeMap<(String, String), usize>,
    pub recent: usize,
}

/// `candidate` against `in_force` (with the model in force) on the labelled `records` and
/// the `recent` tickets; `in_force` and `candidate` may be the same rules (no changes then).
pub fn backtest(
    in_force: &Rules,
    candidate: &Rules,
    model: Option<&Model>,
    records: &[Labelled],
    recent: &[RecentRequest],
) -> Backtest {
    let mut before_pairs = Vec::new();
    let mut after_pairs = Vec::new();
    let mut changes = Vec::new();
    // The same rules twice (a test of the rules in force): one classification each.
    let same = std::ptr::eq(in_force, candidate);
    for r in records {
        let before = r.classify(in_force, model).topic;
        let after = if same {
            before.clone()
        } else {
            r.classify(candidate, model).topic
        };
        if before != after {
            changes.push(Change {
                id: r.id.clone(),
                labelled: r.topic.clone(),
                before: before.clone(),
                after: after.clone(),
            });
        }
        before_pairs.push((r.topic.clone(), before));
        after_pairs.push((r.topic.clone(), after));
    }
    let mut moves = BTreeMap::new();
    for r in recent {
        let request = Request {
            channel: r.channel.parse().ok(),
            sender_email: r.sender_email.as_deref(),
            subject: &r.subject,
            body: &r.body,
        };
        let before = classify(in_force, model, &request).topic;
        if same {
            continue;
        }
        let after = classify(candidate, model, &request).topic;
        if before != after {
            *moves.entry((before, after)).or_insert(0) += 1;
        }
    }
    Backtest {
        labelled: records.len(),
        before: Report::new(&before_pairs),
        after: Report::new(&after_pairs),
        changes,
        moves,
        recent: recent.len(),
    }
}
