//! `sportello register`: the protocol register as AgID defines it — a registration's sealed
//! segnatura, and the daily register.

use super::{data_dir, load_pipeline, open_store, Out};
use crate::register::daily;
use crate::store::prelude::*;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum RegisterCommand {
    /// Print a registration's segnatura (AgID SegnaturaInformatica 3.0.0), sealed with the
    /// AOO's key (SPORTELLO_SEAL_KEY, SPORTELLO_SEAL_CERT)
    Segnatura {
        code: String,
        /// Pipeline with the `[register]` table (and the store's `data_dir`)
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Write a day's register (JSON, PDF and a manifest of their SHA-256) into DIR, once:
    /// asked again, it checks the files are still what the store gives
    Daily {
        /// The day (YYYY-MM-DD, local time)
        #[arg(long)]
        date: chrono::NaiveDate,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
}

pub fn exec(
    command: RegisterCommand,
    cli_data: &Option<PathBuf>,
    out: &mut Out,
) -> Result<ExitCode> {
    match command {
        RegisterCommand::Segnatura { code, pipeline } => {
            let pipeline = load_pipeline(pipeline.as_deref())?;
            let store = open_store(&data_dir(cli_data, &pipeline))?;
            let ticket = store.ticket(&code)?;
            let xml = crate::register::segnatura_of(&ticket, &pipeline, store.blobs())?;
            out.raw(xml.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        RegisterCommand::Daily {
            date,
            out: dir,
            pipeline,
        } => {
            let pipeline = load_pipeline(pipeline.as_deref())?;
            let reg = pipeline
                .register
                .as_ref()
                .ok_or(crate::register::RegisterError::NotConfigured)?;
            if date >= chrono::Local::now().date_naive() {
                eprintln!("sportello: {date} is not over: registrations made later that day will not be in this register, and asking again after them will be refused");
            }
            let store = open_store(&data_dir(cli_data, &pipeline))?;
            let topics = crate::register::topics(&pipeline);
            let files = daily::build(&store, reg, &topics, date)?;
            let (how, paths) = match daily::write(&dir, &files)? {
                daily::Written::New(p) => ("written", p),
                daily::Written::Unchanged(p) => ("already written, unchanged", p),
            };
            out.line(&format!(
                "register of {date}: {} registration(s), {how}",
                files.count
            ))?;
            for p in paths {
                out.line(&p.display().to_string())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
