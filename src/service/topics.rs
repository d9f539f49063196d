//! Settling tickets and learning from them: the one place the CLI, the web app and
//! `model replay` go through, so a correction teaches the model the same way wherever a
//! person makes it.
//!
//! A ticket is *settled* when a person corrects or confirms its topic, or closes it with the
//! topic it has. After `retrain_after` settled tickets the model is retrained on the office's
//! labelled history plus every settled ticket (never on guesses nobody looked at): inline
//! for the CLI, on a thread of its own for `serve` and `run`, so intake and pages never wait.

use crate::classify::model::{Model, ModelError};
use crate::classify::rules::{Rules, UNSORTED};
use crate::model::Status;
use crate::store::prelude::*;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("unknown topic `{topic}` (topics: {known})")]
    UnknownTopic { topic: String, known: String },
    #[error("{0}")]
    Rules(String),
}

/// What a settling action did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    /// Whether anything changed (a status already set changes nothing).
    pub changed: bool,
    /// Whether enough has been settled since the last training to retrain now.
    pub retrain_due: bool,
}

fn due(settled: u64, rules: &Rules) -> bool {
    rules.retrain_after > 0 && settled >= rules.retrain_after as u64
}

/// A person sets (or confirms) a ticket's topic; the ticket goes to the topic's office.
pub fn reclassify(
    store: &mut impl Register,
    rules: &Rules,
    code: &str,
    topic: &str,
    actor: &str,
) -> Result<Settled, LearnError> {
    // Back to `unsorted` ("da smistare") is allowed: it keeps the office and teaches nothing.
    let office = match rules.topics.get(topic) {
        Some(def) => Some(def.office.as_str()),
        None if topic == UNSORTED => None,
        None => {
            return Err(LearnError::UnknownTopic {
                topic: topic.to_string(),
                known: rules.topics.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        }
    };
    let settled = store.reclassify(code, topic, office, actor)?;
    Ok(Settled {
        changed: true,
        retrain_due: due(settled, rules),
    })
}

/// A ticket a bulk reclassification moved (or, in a dry run, would move).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub code: String,
    pub from: Option<String>,
    pub to: String,
    pub confidence: f32,
}

/// Reads again, with the rules and model in force, every ticket nobody settled (after an
/// admin changed the rules, or the model was retrained), as paperless-ngx's
/// `document_retagger` does. With `apply` the new readings are filed; a ticket's office
/// follows its new topic unless a person routed it (their routing stands). Nothing is
/// learned from these: they are guesses too.
/// `tickets` are the store's [`Learning::unsettled_topics`]; `done(moved)` is called after
/// each. Returns those moved: with `apply`, as the store filed them (a ticket a person
/// settled since it was read is not moved).
pub fn reclassify_unsettled(
    store: &mut impl Register,
    tickets: &[crate::store::Unsettled],
    rules: &Rules,
    model: Option<&Model>,
    apply: bool,
    actor: &str,
    mut done: impl FnMut(bool),
) -> Result<Vec<Moved>, LearnError> {
    let mut moved = Vec::new();
    for t in tickets {
        let request = crate::classify::rules::Request {
            channel: t.channel.parse().ok(),
            sender_email: t.sender_email.as_deref(),
            subject: &t.subject,
            body: &t.text,
        };
        let c = crate::classify::classify(rules, model, &request);
        let changed = if apply {
            store.apply_classification(t.id, &c, actor)?
        } else {
            t.topic.as_deref() != Some(c.topic.as_str())
        };
        if changed {
            moved.push(Moved {
                code: t.code.clone(),
                from: t.topic.clone(),
                to: c.topic,
                confidence: c.confidence,
            });
        }
        done(changed);
    }
    Ok(moved)
}

/// A person moves a ticket to `status`; closing it with its topic settles the topic. Without
/// rules (a pipeline with no classify stage) nothing is retrained, but the count still grows.
pub fn set_status(
    store: &mut impl Register,
    rules: Option<&Rules>,
    code: &str,
    status: Status,
    actor: &str,
) -> Result<Settled, LearnError> {
    let changed = store.set_status(code, status, actor)?;
    let retrain_due = match rules {
        Some(rules) if changed => due(store.settled_since_training()?, rules),
        _ => false,
    };
    Ok(Settled {
        changed,
        retrain_due,
    })
}

/// Whether a model should be trained now: enough settled since the last one, or examples
/// to learn from (the office's, or the rules' own) and no usable model (none yet, or one of
/// an older version).
pub fn retrain_wanted(store: &impl Register, rules: &Rules) -> Result<bool, LearnError> {
    if due(store.settled_since_training()?, rules) {
        return Ok(true);
    }
    // No model, or one of an older version (ignored when loaded): train on what there is.
    let missing = !matches!(Model::load_shared(store.data_dir()), Ok(Some(_)));
    Ok(missing && (!rules.examples.records.is_empty() || store.has_training_examples()?))
}

/// The result of a training.
#[derive(Debug, Clone)]
pub struct Trained {
    pub examples: usize,
    pub model: Model,
}

/// Held while a process trains. The model is a file of the data dir, which every process on
/// the register shares (a shared mount with PostgreSQL): two workers started on a new store
/// had each trained the same first model, both cores busy for it instead of their items.
pub struct TrainingLock(#[allow(dead_code)] std::fs::File);

/// The training lock of `data_dir`: waiting for it (`wait`), or `None` if another process
/// holds it.
pub fn training_lock(data_dir: &Path, wait: bool) -> Result<Option<TrainingLock>, LearnError> {
    let path = data_dir.join("training.lock");
    let io = |source| {
        LearnError::Store(StoreError::Io {
            context: format!("the training lock {}", path.display()),
            source,
        })
    };
    let file = crate::store::open_lock_file(&path).map_err(io)?;
    if wait {
        file.lock().map_err(io)?;
        return Ok(Some(TrainingLock(file)));
    }
    match file.try_lock() {
        Ok(()) => Ok(Some(TrainingLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Retrains if it is wanted and no other process is training: `None` if another was (its
/// model is reloaded by every classifier when saved; until then the one there is, or the
/// rules alone on a new store, classify), or if what was wanted was done meanwhile.
pub fn retrain_unless_busy(
    store: &mut impl Register,
    rules: &Rules,
) -> Result<Option<Trained>, LearnError> {
    let Some(_lock) = training_lock(store.data_dir(), false)? else {
        return Ok(None);
    };
    // Asked again under the lock: another process may have just saved the model wanted.
    if !retrain_wanted(store, rules)? {
        return Ok(None);
    }
    train_and_save(store, rules, &mut || {}).map(Some)
}

/// Trains on everything settled and the labelled history, saves the model where the
/// classifiers reload it, and restarts the settled count. Waits for a training another
/// process is doing to end first.
pub fn retrain(
    store: &mut impl Register,
    rules: &Rules,
    round: &mut dyn FnMut(),
) -> Result<Trained, LearnError> {
    let _lock = training_lock(store.data_dir(), true)?;
    train_and_save(store, rules, round)
}

fn train_and_save(
    store: &mut impl Register,
    rules: &Rules,
    round: &mut dyn FnMut(),
) -> Result<Trained, LearnError> {
    let before = store.settled_since_training()?;
    let examples = store.training_examples()?;
    let mut model = Model::train_observed(&examples, rules, round)?;
    // The office's own record of answers can only make the model more careful.
    if let Some(c) = model.calibration.as_mut() {
        c.observe_live(&store.settled_answers()?);
    }
    model.save(store.data_dir())?;
    store.trained(before)?;
    tracing::info!(
        examples = examples.len(),
        "topic model retrained{}",
        model
            .calibration
            .as_ref()
            .map(|c| format!(" (calibration error {:.3})", c.ece))
            .unwrap_or_default()
    );
    Ok(Trained {
        examples: examples.len(),
        model,
    })
}

/// Retrains on a thread of its own (for `serve` and `run`): one training at a time, and a
/// request while one runs makes it run once more after.
pub struct Trainer {
    data_dir: PathBuf,
    rules_path: PathBuf,
    running: AtomicBool,
    again: AtomicBool,
}

impl Trainer {
    pub fn new(data_dir: &Path, rules_path: &Path) -> Arc<Trainer> {
        Arc::new(Trainer {
            data_dir: data_dir.to_path_buf(),
            rules_path: rules_path.to_path_buf(),
            running: AtomicBool::new(false),
            again: AtomicBool::new(false),
        })
    }

    /// Starts a training unless one is running (then it runs again when done).
    pub fn kick(self: &Arc<Self>) {
        self.again.store(true, Ordering::SeqCst);
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("retrain".into())
            .spawn(move || {
                while me.again.swap(false, Ordering::SeqCst) {
                    if let Err(e) = me.train_once() {
                        tracing::error!("retraining the topic model failed: {e}");
                    }
                }
                me.running.store(false, Ordering::SeqCst);
                // A kick between the last check and the store above must not be lost.
                if me.again.load(Ordering::SeqCst) {
                    me.kick();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the retraining thread: {e}");
            self.running.store(false, Ordering::SeqCst);
        }
    }

    /// Kicks a training if one is wanted now (at start: settled while nothing was running).
    pub fn kick_if_wanted(self: &Arc<Self>) {
        let wanted = Store::open(&self.data_dir)
            .map_err(LearnError::from)
            .and_then(|store| {
                let rules =
                    Rules::load(&self.rules_path).map_err(|e| LearnError::Rules(e.to_string()))?;
                retrain_wanted(&store, &rules)
            });
        match wanted {
            Ok(true) => self.kick(),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot tell whether the topic model needs training: {e}"),
        }
    }

    fn train_once(&self) -> Result<(), LearnError> {
        let rules = Rules::load(&self.rules_path).map_err(|e| LearnError::Rules(e.to_string()))?;
        let mut store = Store::open(&self.data_dir)?;
        if retrain_unless_busy(&mut store, &rules)?.is_none() {
            tracing::info!(
                "not retrained: another process is training the model, or it is up to date"
            );
        }
        Ok(())
    }
}
