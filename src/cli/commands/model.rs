//! `sportello model`: train the topic model, evaluate it honestly, replay an office's stream.

use super::{data_dir, load_pipeline, open_store, rules_path, Out, RulesArgs};
use crate::classify::eval::{
    confidence_points, cross_validate, read_labels, rules_have_seen, Labelled, Report, SEEN_WARNING,
};
use crate::classify::model::{self, Example, TRAINING_ROUNDS};
use crate::classify::rules::{Rules, UNSORTED};
use crate::config::Pipeline;
use crate::model::{Channel, Sender, Status};
use crate::pipeline::{Processor, Registration};
use crate::progress::{Progress, Unit};
use crate::service::topics;
use crate::store::prelude::*;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Train on the office's labelled history and every settled ticket; with --labels, the
    /// file's records are first kept in the store's labelled history (never dropped by a
    /// retrain)
    Train {
        #[arg(long)]
        labels: Option<PathBuf>,
        #[command(flatten)]
        using: RulesArgs,
    },
    /// K-fold cross-validation on labelled requests: rules in force + a model trained and
    /// calibrated on the other folds; calibration error and the precision/coverage curve
    Eval {
        #[arg(long)]
        labels: PathBuf,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[command(flatten)]
        using: RulesArgs,
        #[arg(long)]
        json: bool,
    },
    /// Replay an office's day: each labelled request filed in order through the classify
    /// stage, a clerk correcting every wrong or unsorted ticket and closing every ticket,
    /// the model retraining as it would in the office. Runs in a temporary store.
    Replay {
        #[arg(long)]
        labels: PathBuf,
        /// Labelled history the office starts from
        #[arg(long)]
        bootstrap: Option<PathBuf>,
        /// Records per reported window
        #[arg(long, default_value_t = 50)]
        window: usize,
        #[command(flatten)]
        using: RulesArgs,
        #[arg(long)]
        json: bool,
    },
}

pub fn exec(command: ModelCommand, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    match command {
        ModelCommand::Train {
            labels,
            using: RulesArgs { pipeline, rules },
        } => train(cli_data, labels, pipeline, rules, out),
        ModelCommand::Eval {
            labels,
            folds,
            using: RulesArgs { pipeline, rules },
            json,
        } => eval(&labels, folds, pipeline, rules, json, out),
        ModelCommand::Replay {
            labels,
            bootstrap,
            window,
            using: RulesArgs { pipeline, rules },
            json,
        } => replay(
            &labels,
            bootstrap.as_deref(),
            window,
            pipeline,
            rules,
            json,
            out,
        ),
    }
}

fn load_rules(pipeline: &Pipeline, rules: Option<&Path>) -> Result<Rules> {
    Ok(Rules::load(&rules_path(rules, pipeline))?)
}

/// One line on what a model's calibration implies under `rules`.
fn calibration_line(m: &model::Model, rules: &Rules) -> String {
    match (&m.calibration, rules.target_precision) {
        (None, _) => format!(
            "too few examples to calibrate (fewer than {}): abstention by `abstain_below`",
            model::MIN_CALIBRATION_EXAMPLES
        ),
        (Some(c), target) => {
            let mut s = format!(
                "calibration error {:.3} (before scaling {:.3}, temperature {:.2}, {} out-of-fold predictions)",
                c.ece, c.ece_before, c.temperature, c.records
            );
            if let Some(t) = target {
                match c.threshold_for(t) {
                    Some((at, coverage)) => s.push_str(&format!(
                        "; target_precision {:.0}%: answers from {:.0}% confidence, about {:.0}% of requests",
                        t * 100.0,
                        at * 100.0,
                        coverage * 100.0
                    )),
                    None => s.push_str(&format!(
                        "; target_precision {:.0}% is reached at no confidence: only decisive rules answer",
                        t * 100.0
                    )),
                }
            }
            if let Some((right, n)) = c.live_from(0.0) {
                s.push_str(&format!(
                    "; the office's settled tickets: {right:.0} of {n:.0} automatic answers stood"
                ));
            }
            s
        }
    }
}

fn train(
    cli_data: &Option<PathBuf>,
    labels: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    rules: Option<PathBuf>,
    out: &mut Out,
) -> Result<ExitCode> {
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let rules = load_rules(&pipeline, rules.as_deref())?;
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
    if let Some(path) = &labels {
        let records = read_labels(path).map_err(anyhow::Error::msg)?;
        let examples: Vec<Example> = records.to_vec();
        let added = store.import_labelled(&examples)?;
        out.line(&format!(
            "{} labelled requests from {} kept in the store's history ({added} new)",
            examples.len(),
            path.display()
        ))?;
    }
    let progress = Progress::new(TRAINING_ROUNDS as u64, Unit::Rounds, false);
    let trained = topics::retrain(&mut store, &rules, &mut || progress.round())?;
    progress.finish();
    let shipped = match trained.model.shipped_examples {
        0 => String::new(),
        n => format!(" and {n} of the rules' own examples"),
    };
    out.line(&format!(
        "model trained on {} examples (labelled history and settled tickets){shipped}, {} topics",
        trained.examples,
        trained.model.topics.len()
    ))?;
    out.line(&calibration_line(&trained.model, &rules))?;
    Ok(ExitCode::SUCCESS)
}

/// Precision and coverage at a few confidence levels, for people.
fn curve_table(points: &[(f32, bool)]) -> Vec<model::CurvePoint> {
    let curve = model::curve(points);
    let mut shown = Vec::new();
    for at in [0.99f32, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0] {
        if let Some(p) = curve.iter().rev().find(|p| p.confidence >= at) {
            if shown.last() != Some(p) {
                shown.push(*p);
            }
        }
    }
    shown
}

#[derive(Serialize)]
struct EvalJson<'a> {
    report: &'a Report,
    calibration_error: f32,
    curve: Vec<model::CurvePoint>,
    target_precision: Option<f32>,
    /// At the target, on these held-out predictions.
    answered_share: f32,
    answered_precision: f32,
    rules_have_seen_these_records: bool,
}

fn eval(
    labels: &Path,
    folds: usize,
    pipeline: Option<PathBuf>,
    rules: Option<PathBuf>,
    json: bool,
    out: &mut Out,
) -> Result<ExitCode> {
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let rules = load_rules(&pipeline, rules.as_deref())?;
    let records = read_labels(labels).map_err(anyhow::Error::msg)?;
    let predicted = cross_validate(&records, &rules, folds).map_err(anyhow::Error::msg)?;
    let report = Report::new(
        &records
            .iter()
            .zip(&predicted)
            .map(|(r, c)| (r.topic.clone(), c.topic.clone()))
            .collect::<Vec<_>>(),
    );
    let points = confidence_points(&records, &predicted);
    let ece = model::ece(&points);
    let seen = rules_have_seen(&rules, labels);
    let answered: Vec<bool> = records
        .iter()
        .zip(&predicted)
        .filter(|(_, c)| c.topic != UNSORTED)
        .map(|(r, c)| r.topic == c.topic)
        .collect();
    let share = answered.len() as f32 / records.len().max(1) as f32;
    let precision = answered.iter().filter(|&&ok| ok).count() as f32 / answered.len().max(1) as f32;
    if json {
        out.json(&EvalJson {
            report: &report,
            calibration_error: ece,
            curve: model::curve(&points),
            target_precision: rules.target_precision,
            answered_share: share,
            answered_precision: precision,
            rules_have_seen_these_records: seen,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if seen {
        out.line(SEEN_WARNING)?;
    }
    out.line(&format!(
        "{folds}-fold cross-validation on {} (rules {} + a model trained and calibrated on the other folds)",
        labels.display(),
        rules.file.display()
    ))?;
    out.line(&report.to_string())?;
    out.line(&format!(
        "calibration error {ece:.3} on the held-out predictions (0: a request shown at 90% is right 90% of the time)"
    ))?;
    out.line("\nanswering from     covers  precision")?;
    for p in curve_table(&points) {
        out.line(&format!(
            "  {:>5.0}% confidence  {:>5.0}%  {:>8.1}%",
            p.confidence * 100.0,
            p.coverage * 100.0,
            p.precision * 100.0
        ))?;
    }
    match rules.target_precision {
        Some(t) => out.line(&format!(
            "\ntarget_precision {:.0}% in force: answered {:.0}% of these requests, {:.1}% of them right",
            t * 100.0,
            share * 100.0,
            precision * 100.0
        ))?,
        None => out.line("\nno target_precision in the rules: abstention by `abstain_below`")?,
    }
    out.line("misclassified:")?;
    for (r, c) in records
        .iter()
        .zip(&predicted)
        .filter(|(r, c)| r.topic != c.topic)
    {
        out.line(&format!(
            "  {}  labelled {}  → {} ({:.0}%)  {}",
            r.id,
            r.topic,
            c.topic,
            c.confidence * 100.0,
            super::one_line(&c.reason, 160)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub from: usize,
    pub records: usize,
    pub right: usize,
    pub misrouted: usize,
    pub unsorted: usize,
}

/// What became of one labelled request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Right,
    Misrouted,
    Unsorted,
}

impl Outcome {
    fn of(gold: &str, got: &str) -> Outcome {
        if got == gold {
            Outcome::Right
        } else if got == UNSORTED {
            Outcome::Unsorted
        } else {
            Outcome::Misrouted
        }
    }
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.records += 1;
        match outcome {
            Outcome::Right => self.right += 1,
            Outcome::Unsorted => self.unsorted += 1,
            Outcome::Misrouted => self.misrouted += 1,
        }
    }

    fn share(&self, n: usize) -> f64 {
        n as f64 / self.records.max(1) as f64
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<22} {:>5}  right {:>5.1}%  misrouted {:>5.1}%  unsorted {:>5.1}%",
            self.records,
            self.share(self.right) * 100.0,
            self.share(self.misrouted) * 100.0,
            self.share(self.unsorted) * 100.0
        )
    }
}

#[derive(Serialize)]
struct ReplayJson {
    records: usize,
    bootstrap: usize,
    retrains: usize,
    overall: Tally,
    first_half: Tally,
    second_half: Tally,
    windows: Vec<Tally>,
    /// Every request in order, with what it was filed as: the ones a clerk corrected are
    /// what to read before editing rules.
    requests: Vec<Filed>,
}

/// One request of the replay as the classify stage filed it.
#[derive(Serialize)]
struct Filed {
    /// 1-based position in the stream.
    position: usize,
    id: String,
    expected: String,
    got: String,
    outcome: Outcome,
    confidence: Option<f32>,
    reason: Option<String>,
}

fn channel_of(r: &Labelled) -> Channel {
    match r.channel.as_deref().and_then(|c| c.parse::<Channel>().ok()) {
        Some(c) => c,
        // The labelled files say `webform` for the online form.
        None if r.channel.as_deref() == Some("webform") => Channel::Webform,
        None => Channel::Email,
    }
}

fn replay(
    labels: &Path,
    bootstrap: Option<&Path>,
    window: usize,
    pipeline: Option<PathBuf>,
    rules: Option<PathBuf>,
    json: bool,
    out: &mut Out,
) -> Result<ExitCode> {
    let pipeline = load_pipeline(pipeline.as_deref())?;
    // The pipeline's own rules unless others are given.
    let rules_file = rules_path(rules.as_deref(), &pipeline);
    let mut pipeline = pipeline.without_classify();
    let rules = Rules::load(&rules_file)?;
    let records = read_labels(labels).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir().context("cannot make a temporary store")?;
    // The office's intake as configured, classifying with the rules given, in a store of
    // its own; no bytes to parse, so no worker processes.
    pipeline.stages.push(crate::config::StageConfig::Classify(
        crate::config::ClassifyStageConfig {
            rules: rules_file.clone(),
        },
    ));
    pipeline.isolation.processes = false;
    pipeline.sinks.clear();
    // Always a throwaway SQLite store in the temporary dir, whatever `SPORTELLO_DATABASE`
    // says: on PostgreSQL the register is the database, and a replay must not file its
    // requests there (nor take protocol numbers from the office's year).
    let mut store = crate::store::Store::open_at(&crate::store::Database::Sqlite, dir.path())
        .context("cannot make a temporary store")?;
    let processor = Processor::new(&pipeline, store.blobs().clone(), dir.path())?;
    let mut boot = 0;
    if let Some(b) = bootstrap {
        let history: Vec<Example> = read_labels(b).map_err(anyhow::Error::msg)?;
        boot = store.import_labelled(&history)?;
    }
    // As an office starts: from its history, else from the rules' own examples.
    if topics::retrain_wanted(&store, &rules)? {
        topics::retrain(&mut store, &rules, &mut || {})?;
    }
    let mut progress = Progress::new(records.len() as u64, Unit::Items, json);
    let mut retrains = 0;
    let mut filed = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let ticket = processor
            .prepare_registered(Registration {
                channel: channel_of(r),
                sender: Sender {
                    email: r.sender_email.clone(),
                    ..Sender::default()
                },
                subject: r.subject.clone(),
                body: r.body.clone(),
                clerk: "replay".into(),
                files: Vec::new(),
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", r.id))?;
        let code = store
            .file(&ticket, &pipeline.code_prefix)?
            .code()
            .to_string();
        let topic = ticket.topic.clone().unwrap_or_default();
        filed.push(Filed {
            position: i + 1,
            id: r.id.clone(),
            expected: r.topic.clone(),
            got: topic.clone(),
            outcome: Outcome::of(&r.topic, &topic),
            confidence: ticket.topic_confidence,
            reason: ticket.topic_reason.clone(),
        });
        let mut due = false;
        if topic != r.topic {
            due |= topics::reclassify(&mut store, &rules, &code, &r.topic, "clerk")?.retrain_due;
        }
        due |= topics::set_status(&mut store, Some(&rules), &code, Status::Closed, "clerk")?
            .retrain_due;
        if due {
            topics::retrain(&mut store, &rules, &mut || {})?;
            retrains += 1;
        }
        progress.item(1, false);
    }
    progress.finish();
    let tally = |range: std::ops::Range<usize>| {
        let mut t = Tally {
            from: range.start,
            ..Tally::default()
        };
        for i in range {
            t.add(filed[i].outcome);
        }
        t
    };
    let n = records.len();
    let window = window.max(1);
    let result = ReplayJson {
        records: n,
        bootstrap: boot,
        retrains,
        overall: tally(0..n),
        first_half: tally(0..n / 2),
        second_half: tally(n / 2..n),
        windows: (0..n)
            .step_by(window)
            .map(|s| tally(s..(s + window).min(n)))
            .collect(),
        requests: filed,
    };
    if json {
        out.json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    out.line(&format!(
        "replay of {} ({n} requests) with rules {}{}; {retrains} retrains",
        labels.display(),
        rules.file.display(),
        bootstrap
            .map(|b| format!(", bootstrapped from {} ({boot} records)", b.display()))
            .unwrap_or_default()
    ))?;
    if rules_have_seen(&rules, labels) {
        out.line(SEEN_WARNING)?;
    }
    for w in &result.windows {
        out.line(&w.line(&format!("requests {}–{}", w.from + 1, w.from + w.records)))?;
    }
    out.line(&result.first_half.line("first half"))?;
    out.line(&result.second_half.line("second half"))?;
    out.line(&result.overall.line("overall"))?;
    let corrected: Vec<&Filed> = result
        .requests
        .iter()
        .filter(|f| f.outcome != Outcome::Right)
        .collect();
    if !corrected.is_empty() {
        out.line("corrected by the clerk (filed as → labelled):")?;
    }
    for m in corrected {
        let sure = m
            .confidence
            .map(|c| format!(" ({:.0}%)", c * 100.0))
            .unwrap_or_default();
        out.line(&format!(
            "  #{:<4} {:<12} {} → {}{sure}",
            m.position,
            m.id,
            rules.label(&m.got),
            rules.label(&m.expected)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
