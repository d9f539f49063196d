//! `sportello rules test`: what an edit of the rules file would change, before it goes live.

use super::{data_dir, load_pipeline, rules_path, Out, RulesArgs};
use crate::classify::eval::{read_labels, rules_have_seen, SEEN_WARNING};
use crate::classify::model::Model;
use crate::classify::rules::Rules;
use crate::service::backtest::backtest;
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
        // --rules names the edited file to try; without it, the rules in force.
        #[command(flatten)]
        using: RulesArgs,
        #[arg(long)]
        json: bool,
    },
}

pub fn exec(command: RulesCommand, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let RulesCommand::Test {
        labels,
        using: RulesArgs { pipeline, rules },
        json,
    } = command;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let data = data_dir(cli_data, &pipeline);
    let in_force_path = rules_path(None, &pipeline);
    let candidate_path = rules.unwrap_or_else(|| in_force_path.clone());
    let candidate = Rules::load(&candidate_path)?;
    let in_force = if candidate_path != in_force_path {
        Some(Rules::load(&in_force_path)?)
    } else {
        None
    };
    let model = Model::load(&data)?;
    let records = read_labels(&labels).map_err(anyhow::Error::msg)?;
    // The same backtest as the rules editor's, without recent tickets.
    let bt = backtest(
        in_force.as_ref().unwrap_or(&candidate),
        &candidate,
        model.as_ref(),
        &records,
        &[],
    );
    let report = bt.after;
    let changes: Vec<serde_json::Value> = bt
        .changes
        .iter()
        .map(|c| {
            serde_json::json!({"id": c.id, "labelled": c.labelled, "before": c.before,
                "after": c.after, "fixed": c.after == c.labelled, "broken": c.before == c.labelled})
        })
        .collect();
    let seen = rules_have_seen(&candidate, &labels);
    let everyday = candidate.everyday_matches();
    if json {
        let everyday: Vec<serde_json::Value> = everyday
            .iter()
            .map(|(rule, term, word)| serde_json::json!({"rule": rule, "term": term, "also_matches": word}))
            .collect();
        out.json(&serde_json::json!({"report": report, "changes": changes,
            "rules_have_seen_these_records": seen, "everyday_matches": everyday}))?;
    } else {
        if seen {
            out.line(SEEN_WARNING)?;
        }
        for (rule, term, word) in &everyday {
            out.line(&format!(
                "warning: rule `{rule}`: term \"{term}\" also matches \"{word}\", a word of almost any letter (they share a stem): write a phrase instead"
            ))?;
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
