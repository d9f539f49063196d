//! `sportello tickets`: list, show, and the clerk's actions from the command line. Settling
//! a topic goes through `service::topics`, as in the web app.

use super::{
    actor, data_dir, load_pipeline, one_line, open_store, render_ticket, retrain_if_due,
    rules_path, FilterArgs, Out,
};
use crate::classify::rules::Rules;
use crate::model::Status;
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
    /// Set a ticket's topic (a correction the model learns from)
    Reclassify {
        code: String,
        topic: String,
        #[arg(long)]
        by: Option<String>,
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
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
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
            code, topic, by, ..
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
