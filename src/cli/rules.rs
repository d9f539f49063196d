//! `sportello rules test`: what an edit of the rules file would change, before it goes live.

use super::{data_dir, load_pipeline, rules_path, Out};
use crate::classify::eval::{read_labels, rules_have_seen, Report, SEEN_WARNING};
use crate::classify::model::Model;
use crate::classify::rules::Rules;
use crate::classify::Classification;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Accuracy, per-topic precision and recall, confusion matrix and abstentions of a rules
    /// file on labelled requests, and which records change against the rules in force
    Test {
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// The edited rules file to try (default: the rules in force)
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn exec(command: RulesCommand, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let RulesCommand::Test {
        labels,
        pipeline,
        rules,
        json,
    } = command;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let data = data_dir(cli_data, &pipeline);
    let in_force_path = rules_path(None, &pipeline);
    let candidate_path = rules.unwrap_or_else(|| in_force_path.clone());
    let candidate = Rules::load(&candidate_path)?;
    let model = Model::load(&data)?;
    let records = read_labels(&labels).map_err(anyhow::Error::msg)?;
    let predicted: Vec<Classification> = records
        .iter()
        .map(|r| r.classify(&candidate, model.as_ref()))
        .collect();
    let report = Report::new(
        &records
            .iter()
            .zip(&predicted)
            .map(|(r, c)| (r.topic.clone(), c.topic.clone()))
            .collect::<Vec<_>>(),
    );
    // What the edit changes against the rules in force.
    let mut changes = Vec::new();
    if candidate_path != in_force_path {
        let in_force = Rules::load(&in_force_path)?;
        for (r, new) in records.iter().zip(&predicted) {
            let old = r.classify(&in_force, model.as_ref());
            if old.topic != new.topic {
                changes.push(serde_json::json!({"id": r.id, "labelled": r.topic, "before": old.topic, "after": new.topic,
                    "fixed": new.topic == r.topic, "broken": old.topic == r.topic}));
            }
        }
    }
    let seen = rules_have_seen(&candidate, &labels);
    if json {
        out.json(&serde_json::json!({"report": report, "changes": changes,
            "rules_have_seen_these_records": seen}))?;
    } else {
        if seen {
            out.line(SEEN_WARNING)?;
        }
        out.line(&format!(
            "rules {} on {} ({})",
            candidate_path.display(),
            labels.display(),
            if model.is_some() {
                "with the model in the data dir"
            } else {
                "rules only, no model trained"
            }
        ))?;
        out.line(&report.to_string())?;
        if candidate_path != in_force_path {
            out.line(&format!(
                "{} record(s) change against the rules in force ({}):",
                changes.len(),
                in_force_path.display()
            ))?;
            for c in &changes {
                let verdict = if c["fixed"] == true {
                    "fixed"
                } else if c["broken"] == true {
                    "BROKEN"
                } else {
                    "still wrong"
                };
                out.line(&format!(
                    "  {}  labelled {}  {} → {}  {verdict}",
                    c["id"].as_str().unwrap_or(""),
                    c["labelled"].as_str().unwrap_or(""),
                    c["before"].as_str().unwrap_or(""),
                    c["after"].as_str().unwrap_or("")
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
