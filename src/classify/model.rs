//! The learned part: multinomial logistic regression over the request's word, bigram and
//! rare-word 4-gram features *and the admin's rules*, trained only on topics a person
//! settled (an office's labelled history, clerks' corrections, tickets closed or confirmed
//! with their topic).
//!
//! A rule is a hint: each rule that fires adds its weight times a learned coefficient per
//! topic, pulled firmly towards the admin's intent (1 for the rule's own topic, 0 for the
//! others). The words of the office's settled tickets are learned freely, so where the
//! office keeps deciding against a rule its words outweigh the rule, and the rule's own
//! coefficient gives way slowly. Rules at the decisive weight are not learned: they decide
//! alone.
//!
//! Confidence is calibrated: the scores are divided by a temperature fitted on out-of-fold
//! predictions, and the same predictions give the precision/coverage curve from which the
//! abstention threshold follows the admin's `target_precision`. Saved as JSON in the data dir
//! with what it was trained on.

use super::features::{self, FeatureId, IdMap};
use super::rules::{Request, Rules};
pub use super::weights::Weights;
use crate::model::Channel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const MODEL_FILE: &str = "topic-model.json";
const FORMAT_VERSION: u32 = 4;
/// Format 3 differs only in how the weights are written ([`Weights`] reads both).
const OLDEST_READABLE: u32 = 3;

/// One labelled request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Example {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
    pub topic: String,
    /// Rules may depend on the channel and the sender's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_email: Option<String>,
}

impl Example {
    pub fn request(&self) -> Request<'_> {
        Request {
            channel: self
                .channel
                .as_deref()
                .and_then(|c| c.parse::<Channel>().ok()),
            sender_email: self.sender_email.as_deref(),
            subject: &self.subject,
            body: &self.body,
        }
    }
}

/// One point of the out-of-fold precision/coverage curve: answering every request at least
/// this confident covers `coverage` of them with `precision` right.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub confidence: f32,
    pub coverage: f32,
    pub precision: f32,
    /// The mean confidence of what is answered: the precision the calibrated confidences
    /// promise. Absent in models saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f32>,
}

/// How well the confidence means what it says, measured on out-of-fold predictions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calibration {
    /// Scores are divided by this before the softmax.
    pub temperature: f32,
    /// Expected calibration error (15 equal-width bins) after scaling.
    pub ece: f32,
    /// The same before scaling.
    pub ece_before: f32,
    /// Out-of-fold predictions it was fitted on.
    pub records: usize,
    /// Sorted by confidence, descending; at most a few hundred points.
    pub curve: Vec<CurvePoint>,
    /// The office's own record, as [`curve`] makes it: the confidence each ticket a clerk
    /// settled was answered with when filed, and whether its topic stayed. Requests the rules
    /// were never written from show here first when confidences promise too much.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<CurvePoint>,
    /// Answers in `live`.
    #[serde(default)]
    pub live_records: usize,
}

impl Calibration {
    /// The lowest confidence at which everything answered is right at least `target` of the
    /// time on the out-of-fold predictions, and the coverage that gives; `None` when no
    /// confidence reaches the target (answer nothing but decisive rules).
    ///
    /// The precision at each confidence is the count of right answers shrunk towards what the
    /// calibrated confidences promise, as if [`PROMISED_RECORDS`] more had been answered at
    /// their mean. With an office's first hundred records, one confident mistake in a fold
    /// otherwise moved the threshold from 0.72 to 0.99 and left six requests in ten unsorted
    /// (replays of the shared set, 70 records bootstrapped); with thousands of records the
    /// counts decide.
    ///
    /// The office's own record ([`Calibration::live`]) can only raise it: a confidence from
    /// which the settled answers were right less often than `target` beyond one standard
    /// error (the upper end of the Wilson interval is below it) is not answered from.
    pub fn threshold_for(&self, target: f32) -> Option<(f32, f32)> {
        let records = self.records as f32;
        self.curve
            .iter()
            .rev()
            .find(|p| {
                let answered = p.coverage * records;
                let precision = match p.expected {
                    Some(promised) => {
                        (p.precision * answered + PROMISED_RECORDS * promised)
                            / (answered + PROMISED_RECORDS)
                    }
                    None => p.precision,
                };
                precision >= target
                    && self.live_from(p.confidence).is_none_or(|(right, n)| {
                        n < MIN_LIVE_ANSWERS || wilson_upper(right, n) >= target
                    })
            })
            .map(|p| (p.confidence, p.coverage))
    }

    /// How many of the office's settled answers given at `from` or more were right, of how many.
    pub fn live_from(&self, from: f32) -> Option<(f32, f32)> {
        let p = self.live.iter().rev().find(|l| l.confidence >= from)?;
        let n = p.coverage * self.live_records as f32;
        Some((p.precision * n, n))
    }

    /// Keeps the office's own record of answers (confidence when filed, topic kept).
    pub fn observe_live(&mut self, answers: &[(f32, bool)]) {
        self.live = curve(answers);
        self.live_records = answers.len();
    }
}

/// Settled answers from a confidence before the office's record may close it. Fewer prove
/// little, and a confidence closed is never answered from again, so its record cannot
/// recover: two confident answers a clerk moved once silenced a new office's every ticket.
const MIN_LIVE_ANSWERS: f32 = 20.0;

/// The upper end of the Wilson score interval at one standard error for `right` of `n`.
fn wilson_upper(right: f32, n: f32) -> f32 {
    if n <= 0.0 {
        return 1.0;
    }
    let p = right / n;
    let z2 = 1.0;
    let centre = p + z2 / (2.0 * n);
    let spread = (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    (centre + spread) / (1.0 + z2 / n)
}

/// How many answers' worth of weight the calibrated confidences carry against the counted
/// out-of-fold precision when the abstention threshold is chosen ([`Calibration::threshold_for`]).
const PROMISED_RECORDS: f32 = 100.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    pub trained_at: String,
    /// How many of the office's examples, and a hash of them with the rules' own: which data
    /// this model was trained on.
    pub examples: usize,
    /// The rules' shipped examples it also learned from.
    #[serde(default)]
    pub shipped_examples: usize,
    pub data_sha256: String,
    /// The rules' topics when trained, in column order.
    pub topics: Vec<String>,
    pub bias: Vec<f32>,
    /// Feature id → one weight per topic.
    pub weights: Weights,
    /// Rule name and its learned coefficient per topic (multiplies the rule's weight), in
    /// the rules file's order when trained.
    pub rule_coefs: Vec<(String, Vec<f32>)>,
    /// `None` with too few examples to hold some out.
    pub calibration: Option<Calibration>,
    /// Words found in at least [`KNOWN_AFTER`] training requests; every other word is also
    /// read by its character 4-grams. `None` in models saved before 4-grams: words only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_words: Option<features::IdSet>,
}

/// A word in fewer training requests than this is rare, and read by its 4-grams as well.
const KNOWN_AFTER: usize = 2;

/// The words (subject and body) found in at least [`KNOWN_AFTER`] of the requests.
fn known_words<'w>(requests: impl Iterator<Item = &'w features::Words>) -> features::IdSet {
    let mut df: IdMap<usize> = IdMap::default();
    let mut seen = features::IdSet::default();
    for words in requests {
        seen.clear();
        for &id in words.subject_ids.iter().chain(&words.body_ids) {
            if seen.insert(id) {
                *df.entry(id).or_default() += 1;
            }
        }
    }
    df.into_iter()
        .filter(|&(_, n)| n >= KNOWN_AFTER)
        .map(|(id, _)| id)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no labelled examples to train on")]
    NoExamples,
    #[error("cannot read model {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model {path} is damaged: {message}")]
    Format { path: String, message: String },
    #[error("cannot save model: {0}")]
    Write(std::io::Error),
}

pub fn softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - max).exp();
        sum += *l;
    }
    for l in logits.iter_mut() {
        *l /= sum;
    }
}

/// Folds of the out-of-fold predictions that calibrate the confidence.
pub const CALIBRATION_FOLDS: usize = 5;
/// Fewer examples than this: no calibration (the rules' own abstention applies).
pub const MIN_CALIBRATION_EXAMPLES: usize = 30;
/// Trainings in one [`Model::train_observed`]: the folds, then the whole.
pub const TRAINING_ROUNDS: usize = CALIBRATION_FOLDS + 1;

/// A request as the model sees it: sparse text features and the rules that fired.
pub struct Encoded<'a> {
    /// The non-decisive rules that fired.
    pub rules: Vec<FiredRule<'a>>,
    /// The heaviest decisive rule that fired: its topic decides.
    pub decisive: Option<FiredRule<'a>>,
    pub words: features::Words,
}

pub struct FiredRule<'a> {
    /// Position in the rules file.
    pub index: usize,
    pub name: &'a str,
    /// The rule's weight where it fired (more in the subject or an asking sentence).
    pub weight: f32,
    pub topic: &'a str,
    pub terms: super::rules::FoundTerms<'a>,
}

impl FiredRule<'_> {
    /// "name (the terms found)", for reasons, written at the end of `out`.
    pub fn write_shown(&self, out: &mut String) {
        out.push_str(self.name);
        out.push_str(" (");
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(t);
        }
        out.push(')');
    }
}

pub fn encode<'a>(rules: &'a Rules, request: &'a Request<'a>) -> Encoded<'a> {
    let words = features::Words::of(request.subject, request.body);
    let prepared = super::rules::Prepared::new(request, &words, rules);
    let found = rules.fired(&prepared);
    let mut fired = Vec::with_capacity(found.len());
    let mut decisive: Option<FiredRule> = None;
    for (index, f) in found {
        let rule = FiredRule {
            index,
            name: f.rule,
            weight: f.weight,
            topic: f.topic,
            terms: f.terms,
        };
        // The admin's weight decides what is decisive, not the weight where it fired:
        // emphasis and breadth had made a weight-5 hint in a subject decide alone.
        if rules.rules[index].weight >= rules.decisive_weight {
            if decisive.as_ref().is_none_or(|d| rule.weight > d.weight) {
                decisive = Some(rule);
            }
        } else {
            fired.push(rule);
        }
    }
    Encoded {
        rules: fired,
        decisive,
        words,
    }
}

/// Hyper-parameters of the learner, chosen on replays of the shared labelled requests
/// (bootstrapped from one part, replayed on the other).
/// Text weights are pulled to 0 lightly; rule coefficients to the admin's intent firmly, so
/// a rule moves only when many settled tickets disagree with it. On replays of the shared
/// set (three splits) a firmer pull on rules (3e-3 → 0.1) and a lighter one on words
/// (1e-4 → 1e-5) took right answers from 70% to 78% at the same misrouting.
const L2_TEXT: f32 = 1e-5;
const L2_RULE: f32 = 0.1;
const RATE: f32 = 0.5;

/// Training data with dense feature ids.
struct Data {
    k: usize,
    n_features: usize,
    rule_names: Vec<String>,
    /// Per rule, per topic: the admin's intent (1 on the rule's topic).
    rule_prior: Vec<Vec<f32>>,
    rows: Vec<Row>,
}

struct Row {
    text: Vec<(usize, f32)>,
    rules: Vec<(usize, f32)>,
    label: usize,
}

struct Params {
    w: Vec<f32>,
    v: Vec<f32>,
    b: Vec<f32>,
}

impl Params {
    fn logits(&self, data: &Data, row: &Row, out: &mut [f32]) {
        let k = data.k;
        out.copy_from_slice(&self.b);
        for &(f, x) in &row.text {
            for (o, w) in out.iter_mut().zip(&self.w[f * k..f * k + k]) {
                *o += w * x;
            }
        }
        for &(r, x) in &row.rules {
            for (o, v) in out.iter_mut().zip(&self.v[r * k..r * k + k]) {
                *o += v * x;
            }
        }
    }
}

/// AdaGrad over shuffled examples, regularisation applied to what each example touches:
/// tens of thousands of settled tickets train in well under a second.
fn fit(data: &Data, rows: &[usize]) -> Params {
    let k = data.k;
    let mut p = Params {
        w: vec![0.0; data.n_features * k],
        v: data.rule_prior.iter().flatten().copied().collect(),
        b: vec![0.0; k],
    };
    let (mut gw, mut gv, mut gb) = (
        vec![1e-6f32; p.w.len()],
        vec![1e-6f32; p.v.len()],
        vec![1e-6f32; k],
    );
    let prior: Vec<f32> = p.v.clone();
    // Class weights soften imbalance without letting a rare topic swamp calibration.
    let mut count = vec![0usize; k];
    for &i in rows {
        count[data.rows[i].label] += 1;
    }
    let n = rows.len().max(1) as f32;
    let cw: Vec<f32> = count
        .iter()
        .map(|&c| (n / (k as f32 * c.max(1) as f32)).sqrt())
        .collect();
    let epochs = (100_000 / rows.len().max(1)).clamp(8, 120);
    let mut order = rows.to_vec();
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut z = vec![0.0f32; k];
    for _ in 0..epochs {
        // Fisher–Yates with xorshift: deterministic, so a retrain on the same data gives
        // the same model.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let row = &data.rows[i];
            p.logits(data, row, &mut z);
            softmax(&mut z);
            for c in 0..k {
                let g = cw[row.label] * (z[c] - if c == row.label { 1.0 } else { 0.0 });
                gb[c] += g * g;
                p.b[c] -= RATE * g / gb[c].sqrt();
                for &(f, x) in &row.text {
                    let j = f * k + c;
                    let g = g * x + L2_TEXT * p.w[j];
                    gw[j] += g * g;
                    p.w[j] -= RATE * g / gw[j].sqrt();
                }
                for &(r, x) in &row.rules {
                    let j = r * k + c;
                    let g = g * x + L2_RULE * (p.v[j] - prior[j]);
                    gv[j] += g * g;
                    p.v[j] -= RATE * g / gv[j].sqrt();
                }
            }
        }
    }
    p
}

/// Negative log-likelihood of the labels under softmax(logits / t).
fn nll(oof: &[(Vec<f32>, usize)], t: f32) -> f64 {
    let mut total = 0.0f64;
    let mut z = Vec::new();
    for (logits, y) in oof {
        z.clear();
        z.extend(logits.iter().map(|l| l / t));
        softmax(&mut z);
        total -= (z[*y].max(1e-9) as f64).ln();
    }
    total
}

/// Out-of-fold scores for calibration, the folds trained side by side: the temperature that
/// fits them, the calibration error before and after, the precision/coverage curve.
fn calibrate(
    data: &Data,
    scored: usize,
    decisive: &[Option<usize>],
    round: &mut dyn FnMut(),
) -> Calibration {
    // Folds over the first `scored` rows (the office's records); the rows after them (the
    // rules' examples) train every fold and are never scored.
    let n = scored;
    let folds: Vec<Vec<(usize, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALIBRATION_FOLDS)
            .map(|fold| {
                let data = &data;
                s.spawn(move || {
                    let train: Vec<usize> = (0..n)
                        .filter(|i| i % CALIBRATION_FOLDS != fold)
                        .chain(scored..data.rows.len())
                        .collect();
                    let p = fit(data, &train);
                    (0..n)
                        .filter(|i| i % CALIBRATION_FOLDS == fold)
                        .map(|i| {
                            let mut z = vec![0.0; data.k];
                            p.logits(data, &data.rows[i], &mut z);
                            (i, z)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for _ in 0..CALIBRATION_FOLDS {
        round();
    }
    let mut oof: Vec<(Vec<f32>, usize)> = Vec::with_capacity(n);
    let mut which: Vec<usize> = Vec::with_capacity(n);
    for (i, z) in folds.into_iter().flatten() {
        oof.push((z, data.rows[i].label));
        which.push(i);
    }
    let temperature = fit_temperature(&oof);
    let points = |t: f32| -> Vec<(f32, bool)> {
        oof.iter()
            .zip(&which)
            .map(|((z, y), &i)| {
                if let Some(d) = decisive[i] {
                    return (DECISIVE_CONFIDENCE, d == *y);
                }
                let mut p: Vec<f32> = z.iter().map(|l| l / t).collect();
                softmax(&mut p);
                let best = argmax(&p);
                (p[best], best == *y)
            })
            .collect()
    };
    let after = points(temperature);
    Calibration {
        temperature,
        ece: ece(&after),
        ece_before: ece(&points(1.0)),
        records: n,
        curve: curve(&after),
        ..Calibration::default()
    }
}

/// Temperature minimising the out-of-fold NLL (golden-section search on log t).
fn fit_temperature(oof: &[(Vec<f32>, usize)]) -> f32 {
    let (mut a, mut b) = ((0.05f64).ln(), (20.0f64).ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let f = |x: f64| nll(oof, x.exp() as f32);
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    (((a + b) / 2.0).exp()) as f32
}

/// Expected calibration error over 15 equal-width confidence bins.
pub fn ece(points: &[(f32, bool)]) -> f32 {
    const BINS: usize = 15;
    let mut sum_conf = [0.0f64; BINS];
    let mut sum_right = [0.0f64; BINS];
    let mut count = [0usize; BINS];
    for &(c, right) in points {
        let b = ((c * BINS as f32) as usize).min(BINS - 1);
        sum_conf[b] += c as f64;
        sum_right[b] += right as u8 as f64;
        count[b] += 1;
    }
    let n = points.len().max(1) as f64;
    (0..BINS)
        .filter(|&b| count[b] > 0)
        .map(|b| (sum_conf[b] - sum_right[b]).abs() / n)
        .sum::<f64>() as f32
}

/// Precision and coverage of answering at each confidence (sorted descending, thinned to at
/// most 400 points, keeping each distinct confidence's last point).
pub fn curve(points: &[(f32, bool)]) -> Vec<CurvePoint> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = sorted.len().max(1) as f32;
    let mut out = Vec::new();
    let mut right = 0usize;
    let mut sum_conf = 0f64;
    for (i, &(c, ok)) in sorted.iter().enumerate() {
        right += ok as usize;
        sum_conf += c as f64;
        let last_of_its_confidence = sorted.get(i + 1).is_none_or(|next| next.0 < c);
        if last_of_its_confidence {
            out.push(CurvePoint {
                confidence: c,
                coverage: (i + 1) as f32 / n,
                precision: right as f32 / (i + 1) as f32,
                expected: Some((sum_conf / (i + 1) as f64) as f32),
            });
        }
    }
    if out.len() > 400 {
        let step = out.len() as f32 / 400.0;
        let last = *out.last().expect("non-empty");
        out = (0..400).map(|i| out[(i as f32 * step) as usize]).collect();
        out.push(last);
    }
    out
}

impl Model {
    /// Trains on `examples` with `rules` (see the module's comment).
    pub fn train(examples: &[Example], rules: &Rules) -> Result<Model, ModelError> {
        Model::train_observed(examples, rules, &mut || {})
    }

    /// [`Model::train`], calling `round` after each of the [`TRAINING_ROUNDS`] (for progress).
    pub fn train_observed(
        examples: &[Example],
        rules: &Rules,
        round: &mut dyn FnMut(),
    ) -> Result<Model, ModelError> {
        let topics: Vec<String> = rules.topics.keys().cloned().collect();
        let k = topics.len();
        let index: HashMap<&str, usize> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let rule_prior: Vec<Vec<f32>> = rules
            .rules
            .iter()
            .map(|r| {
                topics
                    .iter()
                    .map(|t| if *t == r.topic { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let mut feature_ids: IdMap<usize> = IdMap::default();
        let mut decisive: Vec<Option<usize>> = Vec::new();
        let mut rows = Vec::new();
        // Topics the rules no longer have are left out. The office's records first, then the
        // rules' own examples: those only ever train, so calibration measures the office's.
        fn labelled<'e>(
            index: &HashMap<&str, usize>,
            e: &'e Example,
        ) -> Option<(usize, Request<'e>)> {
            Some((*index.get(e.topic.as_str())?, e.request()))
        }
        let mut requests: Vec<(usize, Request)> = examples
            .iter()
            .filter_map(|e| labelled(&index, e))
            .collect();
        let office = requests.len();
        requests.extend(
            rules
                .examples
                .records
                .iter()
                .filter_map(|e| labelled(&index, e)),
        );
        let encoded: Vec<(usize, Encoded)> = requests
            .iter()
            .map(|(label, request)| (*label, encode(rules, request)))
            .collect();
        let known = known_words(encoded.iter().map(|(_, enc)| &enc.words));
        for (label, enc) in encoded {
            let mut text: Vec<(usize, f32)> = features::vector_with(&enc.words, Some(&known))
                .into_iter()
                .map(|(f, x)| {
                    let next = feature_ids.len();
                    (*feature_ids.entry(f).or_insert(next), x)
                })
                .collect();
            text.sort_unstable_by_key(|(i, _)| *i);
            // Rules by their position in this same rules file.
            let rules_fired = enc.rules.iter().map(|f| (f.index, f.weight)).collect();
            decisive.push(enc.decisive.and_then(|d| index.get(d.topic).copied()));
            rows.push(Row {
                text,
                rules: rules_fired,
                label,
            });
        }
        if rows.is_empty() {
            return Err(ModelError::NoExamples);
        }
        let data = Data {
            k,
            n_features: feature_ids.len(),
            rule_names: rules.rules.iter().map(|r| r.name.clone()).collect(),
            rule_prior,
            rows,
        };
        let n = data.rows.len();
        // Calibrated on the office's records once it has enough of them; until then on the
        // rules' examples too (the rules were written reading those, so this promises more
        // than it will keep: the office's record of answers then raises the threshold).
        let scored = if office >= MIN_CALIBRATION_EXAMPLES {
            office
        } else {
            n
        };
        let calibration = (scored >= MIN_CALIBRATION_EXAMPLES)
            .then(|| calibrate(&data, scored, &decisive, round));
        let all: Vec<usize> = (0..n).collect();
        let p = fit(&data, &all);
        round();
        let weights = Weights::from_rows(
            k,
            feature_ids
                .into_iter()
                .map(|(f, id)| (f, p.w[id * k..(id + 1) * k].to_vec()))
                .filter(|(_, row)| row.iter().any(|x| x.abs() > 1e-4)),
        );
        let rule_coefs = data
            .rule_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), p.v[i * k..(i + 1) * k].to_vec()))
            .collect();
        Ok(Model {
            format: FORMAT_VERSION,
            trained_at: crate::store::now_rfc3339(),
            examples: office,
            shipped_examples: n - office,
            data_sha256: data_hash(examples.iter().chain(&rules.examples.records)),
            topics,
            bias: p.b,
            weights,
            rule_coefs,
            calibration,
            known_words: Some(known),
        })
    }

    /// Scores (in `self.topics` order) of the model's text part, and the features that
    /// pushed the best of them most.
    pub fn text_scores<'w>(
        &self,
        text: &IdMap<f32>,
        words: &'w features::Words,
    ) -> (Vec<f32>, Vec<features::Name<'w>>) {
        let mut known: Vec<(FeatureId, &[f32], f32)> = Vec::with_capacity(text.len());
        self.weights
            .rows_of(text.iter().map(|(f, v)| (*f, *v)), &mut known);
        let mut scores = self.bias.clone();
        for (_, row, v) in &known {
            for (p, w) in scores.iter_mut().zip(row.iter()) {
                *p += w * v;
            }
        }
        let best = argmax(&scores);
        let mut top: Vec<(FeatureId, f32)> = Vec::with_capacity(known.len());
        top.extend(
            known
                .iter()
                .map(|(f, row, v)| (*f, row[best] * v))
                .filter(|(_, s)| *s > 0.0),
        );
        // The five strongest only: selecting them costs less than sorting every feature.
        if top.len() > 5 {
            top.select_nth_unstable_by(4, |a, b| b.1.total_cmp(&a.1));
            top.truncate(5);
        }
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ids: Vec<FeatureId> = top.iter().map(|(f, _)| *f).collect();
        let names = features::names_of(words, &ids, self.known_words.as_ref());
        (scores, names.into_iter().flatten().collect())
    }

    /// What the model learned of a rule, by its name. `index` is the rule's position in the
    /// rules file: when the file has not changed since training, the rule is found there
    /// without a search.
    pub fn rule_coef(&self, index: usize, name: &str) -> Option<&[f32]> {
        match self.rule_coefs.get(index) {
            Some((n, c)) if n == name => Some(c),
            _ => self
                .rule_coefs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.as_slice()),
        }
    }

    pub fn temperature(&self) -> f32 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }

    pub fn load(dir: &Path) -> Result<Option<Model>, ModelError> {
        let path = dir.join(MODEL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ModelError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let damaged = |message: String| ModelError::Format {
            path: path.display().to_string(),
            message,
        };
        // A model of an older version is retrained from the store; until then the rules
        // work alone.
        let older = |format: u32| {
            tracing::warn!(
                "{} is of an older version ({format}): ignored until the model is retrained",
                path.display(),
            );
            Ok(None)
        };
        // One pass over the file (a model is about a megabyte, and reading it twice, once for
        // the version alone, was a third of `ingest`'s start when its weights were JSON
        // numbers); the version is read on its own only to explain a file that does not parse.
        let model: Model = match serde_json::from_str(&text) {
            Ok(model) => model,
            Err(e) => {
                return match serde_json::from_str::<Head>(&text) {
                    Ok(head) if head.format < OLDEST_READABLE => older(head.format),
                    _ => Err(damaged(e.to_string())),
                }
            }
        };
        if model.format < OLDEST_READABLE {
            return older(model.format);
        }
        let k = model.topics.len();
        if model.format > FORMAT_VERSION
            || model.bias.len() != k
            || (!model.weights.is_empty() && model.weights.width() != k)
            || model.rule_coefs.iter().any(|(_, r)| r.len() != k)
        {
            return Err(damaged(format!("format {}", model.format)));
        }
        Ok(Some(model))
    }

    /// [`Model::load`], shared: the model last loaded in this process is kept with its file's
    /// identity (inode, size, modification time), and asked for again while the file is
    /// unchanged it is not read again. A command asks whether a model exists (to decide on
    /// training) and then loads it to classify: the same megabyte of weights, parsed twice.
    pub fn load_shared(dir: &Path) -> Result<Option<Arc<Model>>, ModelError> {
        use std::os::unix::fs::MetadataExt;
        type Identity = (u64, u64, Option<std::time::SystemTime>);
        static LAST: std::sync::Mutex<Option<(PathBuf, Identity, Arc<Model>)>> =
            std::sync::Mutex::new(None);
        let path = dir.join(MODEL_FILE);
        let identity = |m: std::fs::Metadata| (m.ino(), m.len(), m.modified().ok());
        let Ok(before) = std::fs::metadata(&path).map(identity) else {
            // Missing or unreadable: `load` says which.
            return Ok(Model::load(dir)?.map(Arc::new));
        };
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, seen, model)) = last.as_ref() {
            if *p == path && *seen == before {
                return Ok(Some(model.clone()));
            }
        }
        let model = Model::load(dir)?.map(Arc::new);
        // Kept only if the file was not replaced while it was read.
        let after = std::fs::metadata(&path).map(identity).ok();
        *last = match (&model, after) {
            (Some(m), Some(after)) if after == before => Some((path, before, m.clone())),
            _ => None,
        };
        Ok(model)
    }

    /// Saves atomically (temp file + rename), so a running pipeline never reads half a model.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(ModelError::Write)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(ModelError::Write)?;
        serde_json::to_writer(&mut tmp, self).map_err(|e| ModelError::Write(e.into()))?;
        tmp.as_file().sync_all().map_err(ModelError::Write)?;
        tmp.persist(dir.join(MODEL_FILE))
            .map_err(|e| ModelError::Write(e.error))?;
        SAVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

static SAVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many models this process has saved: classifiers reload at once when it changes.
pub fn saved_here() -> u64 {
    SAVED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The confidence given when a decisive rule decides.
pub const DECISIVE_CONFIDENCE: f32 = 0.99;

pub fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

fn data_hash<'e>(examples: impl Iterator<Item = &'e Example>) -> String {
    let mut h = Sha256::new();
    for e in examples {
        for part in [&e.id, &e.subject, &e.body, &e.topic] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_model_loads_and_an_older_or_damaged_one_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Model::load(dir.path()).unwrap().is_none(),
            "no file: no model"
        );
        let model = Model {
            format: FORMAT_VERSION,
            trained_at: "2026-12-02T00:00:00Z".into(),
            examples: 0,
            shipped_examples: 0,
            data_sha256: String::new(),
            topics: vec!["gas".into(), "waste".into()],
            bias: vec![0.1, -0.1],
            weights: Weights::from_rows(2, [(5, vec![0.5, -0.25]), (9, vec![1e-3, 2.0])]),
            rule_coefs: Vec::new(),
            calibration: None,
            known_words: None,
        };
        model.save(dir.path()).unwrap();
        let loaded = Model::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.bias, model.bias);
        assert_eq!(loaded.weights, model.weights);
        let path = dir.path().join(MODEL_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        // Format 3 wrote the weights as an object of rows: still read, with the same weights.
        let weights = serde_json::to_string(&model.weights).unwrap();
        assert!(text.contains(&weights));
        let format3 = text
            .replace(&weights, r#"{"9":[0.001,2.0],"5":[0.5,-0.25]}"#)
            .replace(&format!("\"format\":{FORMAT_VERSION}"), "\"format\":3");
        std::fs::write(&path, &format3).unwrap();
        let loaded = Model::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.weights, model.weights);
        // Rows narrower than the topics (a file edited or cut together): damaged, not read.
        assert!(
            text.contains(r#""topics":["gas","waste"]"#) && text.contains(r#""bias":[0.1,-0.1]"#)
        );
        let widened = text
            .replace(
                r#""topics":["gas","waste"]"#,
                r#""topics":["gas","waste","water"]"#,
            )
            .replace(r#""bias":[0.1,-0.1]"#, r#""bias":[0.1,-0.1,0.0]"#);
        std::fs::write(&path, &widened).unwrap();
        let e = Model::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(MODEL_FILE), "{e}");
        // An older version, whether or not its fields still parse, waits for a retraining.
        let older = text.replace(
            &format!("\"format\":{FORMAT_VERSION}"),
            &format!("\"format\":{}", OLDEST_READABLE - 1),
        );
        assert_ne!(older, text);
        std::fs::write(&path, &older).unwrap();
        assert!(Model::load(dir.path()).unwrap().is_none());
        std::fs::write(&path, older.replace("\"bias\"", "\"old_bias\"")).unwrap();
        assert!(Model::load(dir.path()).unwrap().is_none());
        // The current version, damaged: an error naming the file.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = Model::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(MODEL_FILE), "{e}");
        // Shared: read once while the file is unchanged, read again once it is replaced.
        model.save(dir.path()).unwrap();
        let first = Model::load_shared(dir.path()).unwrap().unwrap();
        let again = Model::load_shared(dir.path()).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let newer = Model {
            bias: vec![0.3, -0.3],
            ..(*first).clone()
        };
        newer.save(dir.path()).unwrap();
        let reloaded = Model::load_shared(dir.path()).unwrap().unwrap();
        assert_eq!(reloaded.bias, newer.bias);
        std::fs::remove_file(&path).unwrap();
        assert!(Model::load_shared(dir.path()).unwrap().is_none());
    }

    fn calibration(points: &[(f32, bool)]) -> Calibration {
        Calibration {
            temperature: 1.0,
            ece: 0.0,
            ece_before: 0.0,
            records: points.len(),
            curve: curve(points),
            ..Calibration::default()
        }
    }

    /// `n` answers at `confidence`, every `wrong_every`-th one wrong (0: none wrong).
    fn answers(n: usize, confidence: f32, wrong_every: usize) -> Vec<(f32, bool)> {
        (0..n)
            .map(|i| (confidence, wrong_every == 0 || i % wrong_every != 0))
            .collect()
    }

    #[test]
    fn a_few_confident_mistakes_among_few_records_do_not_silence_the_model() {
        // 70 out-of-fold answers, as a bootstrap of 70 records gives: 20 at 0.97 of which 3
        // wrong, then 50 toss-ups at 0.5.
        let mut few: Vec<(f32, bool)> = (0..20).map(|i| (0.97, i >= 3)).collect();
        few.extend(answers(50, 0.5, 2));
        let cal = calibration(&few);
        // Counted alone, 17 right of 20 misses 0.9 and nothing would be answered; with the
        // promise of 0.97 beside them, the confident answers are given.
        let counted = few[..20].iter().filter(|p| p.1).count() as f32 / 20.0;
        assert!(counted < 0.9);
        let (at, coverage) = cal.threshold_for(0.9).expect("reachable");
        assert_eq!(at, 0.97);
        assert!((coverage - 20.0 / 70.0).abs() < 1e-6, "{coverage}");
        // The same share of mistakes over 2,000 answers is the truth: then it stays silent.
        let mut many: Vec<(f32, bool)> = (0..2000).map(|i| (0.97, i % 20 >= 3)).collect();
        many.extend(answers(5000, 0.5, 2));
        assert_eq!(calibration(&many).threshold_for(0.9), None);
    }

    #[test]
    fn with_many_records_the_counted_precision_decides() {
        // Confidences that promise 0.95 but are right only 80% of the time, 5,000 times: the
        // counts outweigh the promise, and the target is out of reach.
        let many = answers(5000, 0.95, 5);
        assert_eq!(calibration(&many).threshold_for(0.9), None);
        // The same promise kept is reachable.
        let kept = answers(5000, 0.95, 20);
        assert_eq!(calibration(&kept).threshold_for(0.9).unwrap().0, 0.95);
    }

    #[test]
    fn the_offices_own_record_raises_the_threshold_when_it_shows_too_many_mistakes() {
        // Out of fold: 100 answers at 0.97 all right, 100 at 0.6 of which 95% right.
        let mut oof = answers(100, 0.97, 0);
        oof.extend(answers(100, 0.6, 20));
        let mut cal = calibration(&oof);
        assert_eq!(cal.threshold_for(0.9).unwrap().0, 0.6);
        // A few settled answers with one mistake prove nothing.
        let few = [
            (0.6, true),
            (0.6, false),
            (0.97, true),
            (0.6, true),
            (0.6, true),
        ];
        cal.observe_live(&few);
        assert_eq!(cal.threshold_for(0.9).unwrap().0, 0.6);
        // Nor do two confident answers both moved by a clerk: the model keeps answering.
        cal.observe_live(&[(0.97, false), (0.99, false)]);
        assert_eq!(cal.threshold_for(0.9).unwrap().0, 0.6);
        // Sixty answers at 0.6 of which a quarter wrong do: only the confident ones are given.
        let mut live = answers(60, 0.6, 4);
        live.extend(answers(30, 0.97, 0));
        cal.observe_live(&live);
        assert_eq!(cal.live_from(0.6), Some((75.0, 90.0)));
        assert_eq!(cal.threshold_for(0.9).unwrap().0, 0.97);
        // It never lowers the threshold below what the out-of-fold answers allow.
        cal.observe_live(&answers(500, 0.3, 0));
        assert_eq!(cal.threshold_for(0.9).unwrap().0, 0.6);
        // Kept in the saved model.
        cal.observe_live(&live);
        let back: Calibration =
            serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
        assert_eq!(back.live_records, 90);
        assert_eq!(back.threshold_for(0.9).unwrap().0, 0.97);
    }

    #[test]
    fn a_curve_saved_before_the_promise_was_kept_counts_alone() {
        let mut cal = calibration(&answers(10, 0.9, 2));
        for p in &mut cal.curve {
            p.expected = None;
        }
        // Half right: counted alone, 0.9 is not reached.
        assert_eq!(cal.threshold_for(0.9), None);
        let json = r#"{"confidence":0.9,"coverage":1.0,"precision":0.5}"#;
        let p: CurvePoint = serde_json::from_str(json).unwrap();
        assert_eq!(p.expected, None);
    }
}
