//! The learned part: multinomial logistic regression over the request's word and bigram
//! features, trained only on topics a clerk has confirmed or corrected (or an office's
//! labelled history). Saved as JSON in the data dir with what it was trained on.

use super::features::{self, FeatureId, IdMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

pub const MODEL_FILE: &str = "topic-model.json";
const FORMAT_VERSION: u32 = 2;

/// One labelled request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Example {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
    pub topic: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    pub trained_at: String,
    /// How many examples, and a hash of them: which data this model was trained on.
    pub examples: usize,
    pub data_sha256: String,
    pub topics: Vec<String>,
    pub bias: Vec<f32>,
    /// Feature id → one weight per topic.
    pub weights: IdMap<Vec<f32>>,
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
    #[error("model {path} is damaged or from another version: {message}")]
    Format { path: String, message: String },
    #[error("cannot save model: {0}")]
    Write(std::io::Error),
}

fn softmax(logits: &mut [f32]) {
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

/// Passes of gradient descent over the examples.
pub const TRAINING_ROUNDS: usize = 300;

impl Model {
    /// Trains on `examples` (full-batch gradient descent with L2, a few hundred epochs: small
    /// offices have hundreds to tens of thousands of labelled requests).
    pub fn train(examples: &[Example]) -> Result<Model, ModelError> {
        Model::train_observed(examples, &mut || {})
    }

    /// [`Model::train`], calling `round` after each of the [`TRAINING_ROUNDS`] (for progress).
    pub fn train_observed(
        examples: &[Example],
        round: &mut dyn FnMut(),
    ) -> Result<Model, ModelError> {
        if examples.is_empty() {
            return Err(ModelError::NoExamples);
        }
        let mut topics: Vec<String> = examples.iter().map(|e| e.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let k = topics.len();
        let index: HashMap<&str, usize> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        // Features as dense ids for speed.
        let mut feature_ids: IdMap<usize> = IdMap::default();
        let data: Vec<(Vec<(usize, f32)>, usize)> = examples
            .iter()
            .map(|e| {
                let v = features::vector(&features::Words::of(&e.subject, &e.body));
                let mut sparse: Vec<(usize, f32)> = v
                    .into_iter()
                    .map(|(f, x)| {
                        let next = feature_ids.len();
                        (*feature_ids.entry(f).or_insert(next), x)
                    })
                    .collect();
                sparse.sort_unstable_by_key(|(i, _)| *i);
                (sparse, index[e.topic.as_str()])
            })
            .collect();
        let n_features = feature_ids.len();
        let mut w = vec![0.0f32; n_features * k];
        let mut b = vec![0.0f32; k];
        // Class weights: rare topics count as much as common ones.
        let mut class_count = vec![0usize; k];
        for (_, y) in &data {
            class_count[*y] += 1;
        }
        let class_weight: Vec<f32> = class_count
            .iter()
            .map(|&c| data.len() as f32 / (k as f32 * c.max(1) as f32))
            .collect();
        let (epochs, rate, l2) = (TRAINING_ROUNDS, 2.0f32, 1e-4f32);
        let n = data.len() as f32;
        let mut grad_w = vec![0.0f32; n_features * k];
        let mut grad_b = vec![0.0f32; k];
        let mut p = vec![0.0f32; k];
        for _ in 0..epochs {
            grad_w.iter_mut().for_each(|g| *g = 0.0);
            grad_b.iter_mut().for_each(|g| *g = 0.0);
            for (x, y) in &data {
                for (c, pc) in p.iter_mut().enumerate() {
                    *pc = b[c] + x.iter().map(|&(f, v)| w[f * k + c] * v).sum::<f32>();
                }
                softmax(&mut p);
                let cw = class_weight[*y];
                for c in 0..k {
                    let err = cw * (p[c] - if c == *y { 1.0 } else { 0.0 });
                    grad_b[c] += err;
                    for &(f, v) in x {
                        grad_w[f * k + c] += err * v;
                    }
                }
            }
            for (wi, gi) in w.iter_mut().zip(&grad_w) {
                *wi -= rate * (gi / n + l2 * *wi);
            }
            for (bi, gi) in b.iter_mut().zip(&grad_b) {
                *bi -= rate * gi / n;
            }
            round();
        }
        let mut weights = IdMap::default();
        for (f, id) in feature_ids {
            let row = w[id * k..(id + 1) * k].to_vec();
            if row.iter().any(|x| x.abs() > 1e-4) {
                weights.insert(f, row);
            }
        }
        Ok(Model {
            format: FORMAT_VERSION,
            trained_at: crate::store::now_rfc3339(),
            examples: examples.len(),
            data_sha256: data_hash(examples),
            topics,
            bias: b,
            weights,
        })
    }

    /// Probability of each topic (in `self.topics` order) and the features that pushed the
    /// winner most.
    pub fn predict(&self, subject: &str, body: &str) -> (Vec<f32>, Vec<String>) {
        self.predict_words(&features::Words::of(subject, body))
    }

    pub fn predict_words(&self, words: &features::Words) -> (Vec<f32>, Vec<String>) {
        let x = features::vector(words);
        let known: Vec<(FeatureId, &Vec<f32>, f32)> = x
            .iter()
            .filter_map(|(f, v)| self.weights.get(f).map(|row| (*f, row, *v)))
            .collect();
        let mut probs = self.bias.clone();
        for (_, row, v) in &known {
            for (p, w) in probs.iter_mut().zip(row.iter()) {
                *p += w * v;
            }
        }
        softmax(&mut probs);
        let best = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(0);
        let mut top: Vec<(FeatureId, f32)> = known
            .iter()
            .map(|(f, row, v)| (*f, row[best] * v))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(5);
        let ids: Vec<FeatureId> = top.iter().map(|(f, _)| *f).collect();
        let names = features::names_of(words, &ids);
        (
            probs,
            ids.iter().filter_map(|f| names.get(f).cloned()).collect(),
        )
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
        let model: Model = serde_json::from_str(&text).map_err(|e| ModelError::Format {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if model.format != FORMAT_VERSION || model.bias.len() != model.topics.len() {
            return Err(ModelError::Format {
                path: path.display().to_string(),
                message: format!("format {}", model.format),
            });
        }
        Ok(Some(model))
    }

    /// Saves atomically (temp file + rename), so a running pipeline never reads half a model.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(ModelError::Write)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(ModelError::Write)?;
        serde_json::to_writer(&mut tmp, self).map_err(|e| ModelError::Write(e.into()))?;
        tmp.as_file().sync_all().map_err(ModelError::Write)?;
        tmp.persist(dir.join(MODEL_FILE))
            .map_err(|e| ModelError::Write(e.error))?;
        Ok(())
    }
}

fn data_hash(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        for part in [&e.id, &e.subject, &e.body, &e.topic] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}
