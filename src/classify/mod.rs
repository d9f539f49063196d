//! Topic classification: admin rules plus a model learned from clerks' corrections, with a
//! confidence, a reason a person can read, and abstention (`unsorted`, "da smistare") when
//! unsure rather than a guess.

pub mod eval;
pub mod features;
pub mod model;
pub mod rules;

use crate::model::Channel;
use model::Model;
use rules::{Prepared, Request, Rules, UNSORTED};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The verdict on one request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classification {
    pub topic: String,
    pub confidence: f32,
    pub reason: String,
    pub secondary: Vec<String>,
    pub office: Option<String>,
}

/// Rules and model combined: each topic's score is the model's log-probability plus the
/// weights of the rules that fired for it (rule weights are log-odds); a rule at least
/// `decisive_weight` heavy decides alone.
pub fn classify(rules: &Rules, model: Option<&Model>, request: &Request) -> Classification {
    let topics: Vec<&String> = rules.topics.keys().collect();
    let words = features::Words::of(request.subject, request.body);
    let prepared = Prepared::new(request, &words, rules);
    let fired: Vec<rules::Fired> = rules
        .rules
        .iter()
        .filter_map(|r| r.eval(&prepared))
        .collect();
    let mut scores: Vec<f32> = vec![0.0; topics.len()];
    let mut model_terms = Vec::new();
    if let Some(m) = model {
        let (probs, terms) = m.predict_words(&words);
        model_terms = terms;
        for (i, t) in topics.iter().enumerate() {
            let p = m
                .topics
                .iter()
                .position(|mt| mt == *t)
                .map_or(1e-3, |j| probs[j].max(1e-3));
            scores[i] = rules.model_weight * p.ln();
        }
    }
    for f in &fired {
        if let Some(i) = topics.iter().position(|t| **t == f.topic) {
            scores[i] += f.weight;
        }
    }
    // With no rule fired the model decides alone, on its own probabilities (`model_weight`
    // only scales it against rule weights).
    let alone = if fired.is_empty() {
        1.0 / rules.model_weight.max(1e-3)
    } else {
        1.0
    };
    let mut probs = scores.clone();
    let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = probs
        .iter_mut()
        .map(|s| {
            *s = ((*s - max) * alone).exp();
            *s
        })
        .sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    let best = (0..topics.len())
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap_or(0);
    let decisive = fired
        .iter()
        .filter(|f| f.weight >= rules.decisive_weight)
        .max_by(|a, b| a.weight.total_cmp(&b.weight));
    let (winner, mut confidence) = match decisive {
        Some(f) => (
            topics.iter().position(|t| **t == f.topic).unwrap_or(best),
            0.99f32,
        ),
        None => (best, probs[best]),
    };
    let runner_up = (0..topics.len())
        .filter(|&i| i != winner)
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]));
    let toss_up = decisive.is_none()
        && runner_up.is_some_and(|r| probs[winner] - probs[r] < rules.abstain_margin);
    if fired.is_empty() && model.is_none() {
        confidence = 0.0;
    }
    let mut reasons = Vec::new();
    let for_winner: Vec<String> = fired
        .iter()
        .filter(|f| f.topic == *topics[winner])
        .map(|f| format!("{} ({})", f.rule, f.terms.join(", ")))
        .collect();
    if !for_winner.is_empty() {
        reasons.push(format!("rules: {}", for_winner.join("; ")));
    }
    if !model_terms.is_empty() {
        reasons.push(format!("model: {}", model_terms.join(", ")));
    }
    let against: Vec<String> = fired
        .iter()
        .filter(|f| f.topic != *topics[winner])
        .map(|f| format!("{} ({})", f.rule, f.terms.join(", ")))
        .collect();
    if !against.is_empty() {
        reasons.push(format!("also: {}", against.join("; ")));
    }
    if reasons.is_empty() {
        reasons.push("no rule fired and no model".into());
    }
    let secondary: Vec<String> = (0..topics.len())
        .filter(|&i| i != winner && probs[i] >= rules.secondary_above)
        .map(|i| topics[i].clone())
        .collect();
    if confidence < rules.abstain_below || toss_up {
        let close = match runner_up {
            Some(r) if toss_up => format!(", {} at {:.0}%", topics[r], probs[r] * 100.0),
            _ => String::new(),
        };
        return Classification {
            topic: UNSORTED.to_string(),
            confidence,
            reason: format!(
                "unsure (best guess {} at {:.0}%{close}): {}",
                topics[winner],
                confidence * 100.0,
                reasons.join("; ")
            ),
            secondary: std::iter::once(topics[winner].clone())
                .chain(secondary)
                .collect(),
            office: None,
        };
    }
    Classification {
        topic: topics[winner].clone(),
        confidence,
        reason: reasons.join("; "),
        secondary,
        office: rules.topics.get(topics[winner]).map(|t| t.office.clone()),
    }
}

/// A file that reloads itself when it changes on disk; a bad new version is refused (and
/// logged with its problems) while the last good one stays in force.
struct Reloading<T> {
    path: PathBuf,
    loaded: Option<(Option<SystemTime>, Arc<T>)>,
    checked: Instant,
}

impl<T> Reloading<T> {
    fn get(&mut self, load: impl Fn(&Path) -> Result<T, String>) -> Result<Arc<T>, String> {
        let fresh = self.loaded.is_some() && self.checked.elapsed() < Duration::from_secs(1);
        if fresh {
            return Ok(self.loaded.as_ref().expect("checked").1.clone());
        }
        self.checked = Instant::now();
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if let Some((seen, value)) = &self.loaded {
            if *seen == mtime {
                return Ok(value.clone());
            }
        }
        match load(&self.path) {
            Ok(v) => {
                let v = Arc::new(v);
                if self.loaded.is_some() {
                    tracing::info!("reloaded {}", self.path.display());
                }
                self.loaded = Some((mtime, v.clone()));
                Ok(v)
            }
            Err(e) => match &mut self.loaded {
                Some((seen, value)) => {
                    tracing::error!("keeping the rules in force: {e}");
                    *seen = mtime; // do not re-report until it changes again
                    Ok(value.clone())
                }
                None => Err(e),
            },
        }
    }
}

/// Rules file plus the model in the data dir, both reloaded when they change.
pub struct Classifier {
    rules: Mutex<Reloading<Rules>>,
    model: Mutex<Reloading<Option<Model>>>,
}

impl Classifier {
    /// Loads both now, so a bad rules file stops the start with its problems.
    pub fn open(rules_file: &Path, data_dir: &Path) -> Result<Classifier, String> {
        let c = Classifier {
            rules: Mutex::new(Reloading {
                path: rules_file.to_path_buf(),
                loaded: None,
                checked: Instant::now(),
            }),
            model: Mutex::new(Reloading {
                path: data_dir.join(model::MODEL_FILE),
                loaded: None,
                checked: Instant::now(),
            }),
        };
        c.current()?;
        Ok(c)
    }

    fn current(&self) -> Result<(Arc<Rules>, Arc<Option<Model>>), String> {
        let rules = self
            .rules
            .lock()
            .map_err(|_| "rules lock poisoned")?
            .get(|p| Rules::load(p).map_err(|e| e.to_string()))?;
        let model = self
            .model
            .lock()
            .map_err(|_| "model lock poisoned")?
            .get(|p| {
                let dir = p.parent().unwrap_or(Path::new("."));
                Model::load(dir).map_err(|e| e.to_string())
            })?;
        Ok((rules, model))
    }

    pub fn rules(&self) -> Result<Arc<Rules>, String> {
        Ok(self.current()?.0)
    }

    pub fn classify(
        &self,
        channel: Option<Channel>,
        sender_email: Option<&str>,
        subject: &str,
        body: &str,
    ) -> Result<Classification, String> {
        let (rules, model) = self.current()?;
        let request = Request {
            channel,
            sender_email,
            subject,
            body,
        };
        Ok(classify(&rules, model.as_ref().as_ref(), &request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "abstain_below = 0.5\n[topics.gas]\nlabel = \"Gas\"\noffice = \"Servizio gas\"\n[topics.waste]\nlabel = \"Rifiuti\"\noffice = \"Igiene urbana\"\n[[rules]]\nname = \"gas\"\ntopic = \"gas\"\nweight = 3\nany = [\"allaccio gas\"]\n";

    #[test]
    fn unsure_requests_go_to_unsorted_with_the_best_guess_kept() {
        let rules = Rules::parse(Path::new("r.toml"), RULES).unwrap();
        let r = Request {
            channel: None,
            sender_email: None,
            subject: "Domanda",
            body: "Vorrei delle informazioni.",
        };
        let c = classify(&rules, None, &r);
        assert_eq!(c.topic, UNSORTED);
        assert_eq!(c.office, None);
        let r = Request {
            channel: None,
            sender_email: None,
            subject: "Allaccio del gas",
            body: "Chiedo l'allacciamento.",
        };
        let c = classify(&rules, None, &r);
        assert_eq!(c.topic, "gas");
        assert_eq!(c.office.as_deref(), Some("Servizio gas"));
        assert!(
            c.reason.contains("rules: gas (allaccio gas)"),
            "{}",
            c.reason
        );
    }

    const TWO_TOPICS: &str = "abstain_below = 0.1\nabstain_margin = 0.1\n[topics.gas]\nlabel = \"Gas\"\noffice = \"Servizio gas\"\n[topics.waste]\nlabel = \"Rifiuti\"\noffice = \"Igiene urbana\"\n[[rules]]\nname = \"gas\"\ntopic = \"gas\"\nweight = 2\nany = [\"allaccio gas\"]\n[[rules]]\nname = \"macerie\"\ntopic = \"waste\"\nweight = 2\nany = [\"macerie\"]\n";

    fn ask(rules: &Rules, body: &str) -> Classification {
        classify(
            rules,
            None,
            &Request {
                channel: None,
                sender_email: None,
                subject: "Richiesta",
                body,
            },
        )
    }

    #[test]
    fn a_toss_up_between_two_topics_goes_to_a_clerk_naming_both() {
        let rules = Rules::parse(Path::new("r.toml"), TWO_TOPICS).unwrap();
        let c = ask(
            &rules,
            "Ci sono macerie davanti casa e aspetto l'allaccio gas.",
        );
        assert_eq!(c.topic, UNSORTED);
        assert!(
            c.reason.contains("gas at 50%") && c.reason.contains("waste at 50%"),
            "{}",
            c.reason
        );
        assert_eq!(ask(&rules, "Aspetto l'allaccio gas.").topic, "gas");
    }

    #[test]
    fn what_comes_before_the_writer_turns_to_the_point_counts_less() {
        let rules = Rules::parse(Path::new("r.toml"), TWO_TOPICS).unwrap();
        let c = ask(
            &rules,
            "Le macerie le hanno portate via. Il punto è che aspetto l'allaccio gas.",
        );
        assert_eq!(c.topic, "gas", "{}", c.reason);
        // Without the turn, the same two mentions are a toss-up.
        let c = ask(
            &rules,
            "Le macerie le hanno portate via. Aspetto l'allaccio gas.",
        );
        assert_eq!(c.topic, UNSORTED, "{}", c.reason);
    }

    #[test]
    fn rules_reload_when_edited_and_a_bad_edit_keeps_the_last_good_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, RULES).unwrap();
        let classifier = Classifier::open(&path, dir.path()).unwrap();
        let ask = |c: &Classifier| {
            c.classify(None, None, "Macerie", "macerie in strada")
                .unwrap()
                .topic
        };
        assert_eq!(ask(&classifier), UNSORTED);
        let touch = |text: &str, secs: u64| {
            std::fs::write(&path, text).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        };
        // An admin adds a rule: it is in force without a restart.
        touch(&format!("{RULES}[[rules]]\nname = \"macerie\"\ntopic = \"waste\"\nweight = 3\nany = [\"macerie\"]\n"), 1_000_000);
        classifier.rules.lock().unwrap().checked -= Duration::from_secs(2);
        assert_eq!(ask(&classifier), "waste");
        // A broken edit is refused; the last good rules stay in force.
        touch("[[rules]\nbroken", 2_000_000);
        classifier.rules.lock().unwrap().checked -= Duration::from_secs(2);
        assert_eq!(ask(&classifier), "waste");
        // A bad file at start is an error with its line.
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[topics.gas]\nlabel = 1\n").unwrap();
        let err = Classifier::open(&bad, dir.path()).err().unwrap();
        assert!(err.contains("bad.toml:1"), "{err}");
    }

    #[test]
    fn the_model_learns_from_examples_and_says_why() {
        let ex = |s: &str, t: &str| model::Example {
            id: String::new(),
            subject: s.into(),
            body: String::new(),
            topic: t.into(),
        };
        let examples: Vec<model::Example> = (0..5)
            .flat_map(|_| {
                [
                    ex("contatore del gas chiuso", "gas"),
                    ex("macerie in via Roma", "waste"),
                ]
            })
            .collect();
        let m = Model::train(&examples).unwrap();
        let (probs, terms) = m.predict("il contatore del gas", "");
        let gas = m.topics.iter().position(|t| t == "gas").unwrap();
        assert!(probs[gas] > 0.8, "{probs:?}");
        assert!(
            terms
                .iter()
                .any(|t| t.contains("gas") || t.contains("contator")),
            "{terms:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        let loaded = Model::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.data_sha256, m.data_sha256);
        assert_eq!(loaded.examples, 10);
    }
}
