//! `sportello tickets`: list, show, and the clerk's actions from the command line. Settling
//! a topic goes through `service::topics`, as in the web app.

use super::{
    actor, data_dir, load_pipeline, one_line, open_store, render_ticket, retrain_if_due,
    rules_path, FilterArgs, Out,
};
use crate::classify::model::Model;
use crate::classify::rules::Rules;
use crate::model::Status;
use crate::progress::{Progress, Unit};
use crate::service::{tickets, topics};
use crate::store::prelude::*;
use anyhow::Result;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum TicketsCommand {
    /// Tickets, newest first
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Only tickets flagged for attention
        #[arg(long)]
        needs_attention: bool,
        #[arg(long)]
        json: bool,
    },
    /// One ticket with its documents and history
    Show {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a ticket to another status (new, in_progress, waiting, closed); closing a ticket
    /// with its topic tells the model the topic was right
    Status {
        code: String,
        status: Status,
        /// Who does it (recorded in the history); default: the login name
        #[arg(long)]
        by: Option<String>,
    },
    /// Set a ticket's topic (a correction the model learns from); or, with `--all`, read
    /// again every ticket nobody settled with the rules and model in force
    Reclassify {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        code: Option<String>,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        topic: Option<String>,
        /// Every ticket whose topic no person settled (after a rules or model change); shows
        /// what would move unless `--apply`
        #[arg(long)]
        all: bool,
        /// With `--all`: file the new topics (the model does not learn from them)
        #[arg(long, requires = "all")]
        apply: bool,
        #[arg(long)]
        by: Option<String>,
        /// With `--all`: one JSON object per ticket that moves, then a summary
        #[arg(long, requires = "all")]
        json: bool,
    },
    /// Add a note to a ticket's history
    Note {
        code: String,
        text: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Write the summary of a voice message (what the caller said), searchable
    Summary {
        code: String,
        text: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Annul a registration (it stays, marked, with its number): the way to correct one
    Annul {
        code: String,
        #[arg(long)]
        reason: String,
        /// Who annuls it
        #[arg(long)]
        by: Option<String>,
        /// The act that authorised it (a decree, a note's protocol number)
        #[arg(long)]
        act: Option<String>,
        /// The registration made again with the right values: linked to this one
        #[arg(long)]
        replaced_by: Option<String>,
    },
    /// Hand a ticket to an office
    Route {
        code: String,
        office: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Close a ticket as a duplicate of another; their dossiers are joined
    Duplicate {
        code: String,
        /// The ticket it repeats
        #[arg(long)]
        of: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Answer the ticket's sender by email (queued in the outbox; `run` sends it)
    Reply {
        code: String,
        #[arg(long)]
        subject: String,
        /// The answer's text
        #[arg(long)]
        text: String,
        #[arg(long)]
        by: Option<String>,
    },
}

pub fn exec(
    command: TicketsCommand,
    pipeline: Option<&Path>,
    cli_data: &Option<PathBuf>,
    out: &mut Out,
) -> Result<ExitCode> {
    // The pipeline names the store (unless --data says otherwise) and the rules the model
    // learns with.
    let pipeline = load_pipeline(pipeline)?;
    let data = data_dir(cli_data, &pipeline);
    let mut store = open_store(&data)?;
    match command {
        TicketsCommand::Status {
            code, status, by, ..
        } => {
            let rules = Rules::load(&rules_path(None, &pipeline))?;
            let settled = topics::set_status(&mut store, Some(&rules), &code, status, &actor(by))?;
            out.line(if settled.changed {
                "status changed"
            } else {
                "status unchanged"
            })?;
            retrain_if_due(&mut store, &rules, settled);
        }
        TicketsCommand::Reclassify {
            all: true,
            apply,
            by,
            json,
            ..
        } => {
            let rules = Rules::load(&rules_path(None, &pipeline))?;
            let model = Model::load(&data)?;
            reclassify_all(
                &mut store,
                &rules,
                model.as_ref(),
                apply,
                &actor(by),
                json,
                out,
            )?;
        }
        TicketsCommand::Reclassify {
            code: Some(code),
            topic: Some(topic),
            by,
            ..
        } => {
            let rules = Rules::load(&rules_path(None, &pipeline))?;
            let settled = topics::reclassify(&mut store, &rules, &code, &topic, &actor(by))?;
            out.line(&format!(
                "{} → {topic} ({})",
                code.to_uppercase(),
                rules.topics.get(&topic).map_or("", |d| d.office.as_str())
            ))?;
            retrain_if_due(&mut store, &rules, settled);
        }
        TicketsCommand::Reclassify { .. } => {
            anyhow::bail!("tickets reclassify needs a ticket code and a topic, or --all")
        }
        TicketsCommand::Note { code, text, by } => {
            tickets::note(&mut store, &code, &text, &actor(by))?;
            out.line("note added")?;
        }
        TicketsCommand::Summary { code, text, by } => {
            tickets::summarize(&mut store, &code, &text, &actor(by))?;
            out.line("summary saved")?;
        }
        TicketsCommand::Annul {
            code,
            reason,
            by,
            act,
            replaced_by,
        } => {
            tickets::annul(
                &mut store,
                &code,
                &reason,
                act.as_deref(),
                replaced_by.as_deref(),
                &actor(by),
            )?;
            out.line(&format!("{} annulled", code.to_uppercase()))?;
        }
        TicketsCommand::Route { code, office, by } => {
            let moved = tickets::route(&mut store, &code, &office, &actor(by))?;
            out.line(if moved {
                "routed"
            } else {
                "already with that office"
            })?;
        }
        TicketsCommand::Duplicate { code, of, by } => {
            tickets::mark_duplicate(&mut store, &code, &of, &actor(by))?;
            out.line("marked as duplicate and closed")?;
        }
        TicketsCommand::Reply {
            code,
            subject,
            text,
            by,
        } => {
            let domain = pipeline.reply_domain();
            let to = tickets::reply(&mut store, &code, &subject, &text, &actor(by), &domain)?;
            out.line(&format!("reply to {to} queued; `run` sends it"))?;
        }
        TicketsCommand::List {
            filter,
            needs_attention,
            json,
        } => {
            let mut f = filter.to_filter()?;
            if needs_attention {
                f.needs_attention = Some(true);
            }
            for t in store.list(&f)? {
                if json {
                    out.json(&t)?;
                } else {
                    out.line(&format!(
                        "{}  {}  {:<7}  {:<11}  {:<14}  {}{}",
                        t.code,
                        t.protocol,
                        t.channel,
                        t.status,
                        t.topic.as_deref().unwrap_or("-"),
                        if t.needs_attention { "[!] " } else { "" },
                        one_line(&t.subject, 70)
                    ))?;
                }
            }
        }
        TicketsCommand::Show { code, json } => {
            let t = store.ticket(&code)?;
            if json {
                out.json(&t)?;
            } else {
                out.line(&render_ticket(&t))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tickets reclassify --all`: every ticket nobody settled, read again; what moves is listed
/// (and filed with `--apply`), with a progress display on a terminal.
fn reclassify_all(
    store: &mut impl Register,
    rules: &Rules,
    model: Option<&Model>,
    apply: bool,
    actor: &str,
    json: bool,
    out: &mut Out,
) -> Result<()> {
    let tickets = store.unsettled_topics()?;
    let mut progress = Progress::new(tickets.len() as u64, Unit::Tickets, json);
    let moved =
        topics::reclassify_unsettled(store, &tickets, rules, model, apply, actor, |changed| {
            progress.item(0, changed)
        })?;
    progress.finish();
    for m in &moved {
        if json {
            out.json(&m)?;
        } else {
            out.line(&format!(
                "{}  {} → {}  {:.0}%",
                m.code,
                m.from.as_deref().map_or("—", |f| rules.label(f)),
                rules.label(&m.to),
                m.confidence * 100.0
            ))?;
        }
    }
    let read = tickets.len();
    if json {
        out.json(&serde_json::json!({"read": read, "moved": moved.len(), "applied": apply}))?;
    } else {
        out.line(&format!(
            "{} of {read} tickets nobody settled {}",
            moved.len(),
            if apply {
                "moved to another topic"
            } else {
                "would move to another topic (nothing written: --apply files them)"
            }
        ))?;
    }
    Ok(())
}
