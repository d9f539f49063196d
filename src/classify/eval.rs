//! Backtests: how a rules file (and model) would have classified labelled requests —
//! accuracy with abstentions counted as errors, accuracy on what it answered, per-topic
//! precision and recall, the confusion matrix — and k-fold cross-validation of the model.

use super::model::{Example, Model};
use super::rules::{Rules, UNSORTED};
use super::{classify, Classification};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct TopicScore {
    pub precision: f64,
    pub recall: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub records: usize,
    pub correct: usize,
    pub abstained: usize,
    /// Correct / all records (an abstention counts as an error).
    pub accuracy: f64,
    /// Correct / records it did not abstain on.
    pub accuracy_answered: f64,
    pub abstention_rate: f64,
    pub per_topic: BTreeMap<String, TopicScore>,
    /// gold topic → predicted topic → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Report {
    pub fn new(pairs: &[(String, String)]) -> Report {
        let records = pairs.len();
        let correct = pairs.iter().filter(|(g, p)| g == p).count();
        let abstained = pairs.iter().filter(|(_, p)| p == UNSORTED).count();
        let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (g, p) in pairs {
            *confusion
                .entry(g.clone())
                .or_default()
                .entry(p.clone())
                .or_default() += 1;
        }
        let mut topics: Vec<&String> = pairs.iter().map(|(g, _)| g).collect();
        topics.sort();
        topics.dedup();
        let per_topic = topics
            .into_iter()
            .map(|t| {
                let tp = pairs.iter().filter(|(g, p)| g == t && p == t).count();
                let predicted = pairs.iter().filter(|(_, p)| p == t).count();
                let support = pairs.iter().filter(|(g, _)| g == t).count();
                let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
                (
                    t.clone(),
                    TopicScore {
                        precision: ratio(tp, predicted),
                        recall: ratio(tp, support),
                        support,
                    },
                )
            })
            .collect();
        let answered = records - abstained;
        Report {
            records,
            correct,
            abstained,
            accuracy: if records == 0 {
                0.0
            } else {
                correct as f64 / records as f64
            },
            accuracy_answered: if answered == 0 {
                0.0
            } else {
                correct as f64 / answered as f64
            },
            abstention_rate: if records == 0 {
                0.0
            } else {
                abstained as f64 / records as f64
            },
            per_topic,
            confusion,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "records            {}", self.records)?;
        writeln!(
            f,
            "accuracy           {:.1}% (abstentions count as errors)",
            self.accuracy * 100.0
        )?;
        writeln!(
            f,
            "accuracy answered  {:.1}% ({} answered)",
            self.accuracy_answered * 100.0,
            self.records - self.abstained
        )?;
        writeln!(
            f,
            "abstentions        {} ({:.1}%)",
            self.abstained,
            self.abstention_rate * 100.0
        )?;
        writeln!(
            f,
            "\n{:<16} {:>9} {:>7} {:>7}",
            "topic", "precision", "recall", "n"
        )?;
        for (t, s) in &self.per_topic {
            writeln!(
                f,
                "{t:<16} {:>8.0}% {:>6.0}% {:>7}",
                s.precision * 100.0,
                s.recall * 100.0,
                s.support
            )?;
        }
        let mut predicted: Vec<&String> = self.confusion.values().flat_map(|m| m.keys()).collect();
        predicted.sort();
        predicted.dedup();
        writeln!(f, "\nconfusion (rows: labelled, columns: predicted)")?;
        write!(f, "{:<16}", "")?;
        for p in &predicted {
            write!(f, " {:>6}", short(p))?;
        }
        writeln!(f)?;
        for (g, row) in &self.confusion {
            write!(f, "{g:<16}")?;
            for p in &predicted {
                write!(f, " {:>6}", row.get(*p).copied().unwrap_or(0))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn short(topic: &str) -> String {
    topic.chars().take(6).collect()
}

/// A labelled request as read from a JSON Lines file: the same fields as a training example.
pub type Labelled = Example;

impl Example {
    /// How the rules and `model` classify this request.
    pub fn classify(&self, rules: &Rules, model: Option<&Model>) -> Classification {
        classify(rules, model, &self.request())
    }
}

/// K-fold cross-validation: for each fold, a model trained (and calibrated) on the other
/// folds, with `rules`, classifies the fold. Returns each record's prediction in input order.
pub fn cross_validate(
    records: &[Labelled],
    rules: &Rules,
    folds: usize,
) -> Result<Vec<Classification>, String> {
    let folds = folds.clamp(2, records.len().max(2));
    let mut out: Vec<Option<Classification>> = vec![None; records.len()];
    for k in 0..folds {
        let train: Vec<Example> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != k)
            .map(|(_, r)| r.clone())
            .collect();
        let model = Model::train(&train, rules).map_err(|e| e.to_string())?;
        for (i, r) in records.iter().enumerate().filter(|(i, _)| i % folds == k) {
            out[i] = Some(r.classify(rules, Some(&model)));
        }
    }
    Ok(out
        .into_iter()
        .map(|c| c.expect("every record is in one fold"))
        .collect())
}

pub fn read_labels(path: &std::path::Path) -> Result<Vec<Labelled>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Labelled>(line) {
            Ok(r) => out.push(r),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(out)
}

/// The best guess's confidence and whether it was right, for each prediction (abstentions
/// included: calibration is about the confidence, whatever is done with it).
pub fn confidence_points(records: &[Labelled], predicted: &[Classification]) -> Vec<(f32, bool)> {
    records
        .iter()
        .zip(predicted)
        .map(|(r, c)| match c.guesses.first() {
            Some((topic, p)) => (*p, *topic == r.topic),
            None => (c.confidence, c.topic == r.topic),
        })
        .collect()
}

/// Whether `path` is one of the labelled files the rules say they were written from, or
/// holds requests of the rules' own examples (which every model learns from).
pub fn rules_have_seen(rules: &Rules, path: &std::path::Path) -> bool {
    use sha2::{Digest, Sha256};
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    rules.seen_labels.contains(&sha)
        || read_labels(path).is_ok_and(|records| records.iter().any(|r| rules.examples.contain(r)))
}

/// The plain warning for scores on records the rules were written from.
pub const SEEN_WARNING: &str = "warning: the rules were written while reading these records \
(their `seen_labels` lists this file), or the model learns from them (they are among the rules' \
`examples`): the scores below measure what the rules remember, not how they do on requests \
they have not seen. Keep a labelled file nobody looked at while writing rules, and test on that.";
