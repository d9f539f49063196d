//! The command line: raw arguments validated once into settings, `anyhow` only here at the
//! edge, one clear line per error and a non-zero exit.

use crate::classify::eval::Labelled;
use crate::classify::rules::Rules;
use crate::classify::Classifier;
use crate::config::Pipeline;
use crate::model::{Channel, Status, Ticket};
use crate::pipeline::Processor;
use crate::progress::{Progress, Unit};
use crate::runner::{self, Outcome};
use crate::service::topics;
use crate::store::prelude::*;
use crate::store::{Database, Filed, Store, TicketFilter, DATABASE_ENV};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod args;
mod commands;
mod render;
mod settings;

pub use args::*;
use commands::*;
pub use commands::{ModelCommand, RulesCommand, TicketsCommand, UsersCommand};
use render::*;
use settings::*;

pub fn main() -> ExitCode {
    // A worker process (hidden sub-command) speaks frames on the real stdout: it must take
    // it before anything below points fd 1 at stderr.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == crate::worker::SUBCOMMAND)
    {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("SPORTELLO_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
        return crate::worker::main();
    }
    reexec_with_openmp_limit();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPORTELLO_LOG")
        .unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // A bug in a parser should cost one item, not the run: log panics (caught per item) briefly.
    std::panic::set_hook(Box::new(|info| {
        tracing::debug!("panic caught: {info}");
    }));
    let mut out = Out::take_stdout();
    match dispatch(cli, &mut out) {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not an error worth a message.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sportello: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Commands that may run OCR in this process (`ocr`, and `ingest`, `run` and `serve` when
/// isolation is off) start again with `OMP_THREAD_LIMIT=1`, unless the user set it: libgomp
/// reads it when it loads, before `main`, so setting it now would change nothing, and
/// Tesseract's OpenMP teams would fight the OCR threads (2.2× the CPU per page, measured).
fn reexec_with_openmp_limit() {
    use std::os::unix::process::CommandExt;
    const OCR_COMMANDS: [&str; 4] = ["ocr", "ingest", "run", "serve"];
    if std::env::var_os("OMP_THREAD_LIMIT").is_some() {
        return;
    }
    // The sub-command: the first word that is not an option or `--data`'s value.
    let mut args = std::env::args().skip(1);
    let mut command = None;
    while let Some(a) = args.next() {
        if a == "--data" {
            args.next();
        } else if !a.starts_with('-') {
            command = Some(a);
            break;
        }
    }
    let runs_ocr = command.is_some_and(|c| OCR_COMMANDS.contains(&c.as_str()));
    if !runs_ocr {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_THREAD_LIMIT", "1")
        .exec();
    // Only reached when exec failed: go on as before, with the OpenMP default.
    eprintln!("sportello: cannot restart with OMP_THREAD_LIMIT=1 ({err}); OCR may use more CPU");
}

fn dispatch(cli: Cli, out: &mut Out) -> Result<ExitCode> {
    settings::use_database(cli.database.as_deref(), None)?;
    match cli.command {
        Command::Ingest(args) => ingest::exec(args, &cli.data, out),
        Command::Run(args) => run::exec(args, &cli.data, out),
        Command::Worker(args) => worker::exec(args, &cli.data, out),
        Command::Extract(args) => extract::exec(args, out),
        Command::Classify(args) => classify::exec(args, &cli.data, out),
        Command::Entities(args) => entities::exec(args, &cli.data, out),
        Command::Users { command } => users::exec(command, &cli.data, out),
        Command::Export(args) => export::exec(args, &cli.data, out),
        Command::Migrate(args) => migrate::exec(args, &cli.data, out),
        Command::Register { command } => register::exec(command, &cli.data, out),
        Command::Ocr {
            file,
            json,
            languages,
            workers,
            pdf,
        } => ocr::exec(&file, json, languages, workers, pdf.as_deref(), out),
        Command::Check { pipeline } => {
            // Everything `run` would stop on at start, all at once.
            let p = Pipeline::load_for_start(&pipeline)?;
            out.line(&format!(
                "{}: ok ({} source(s), {} stage(s), {} sink(s))",
                pipeline.display(),
                p.sources.len(),
                p.stages.len(),
                p.sinks.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tickets { pipeline, command } => {
            tickets::exec(command, pipeline.as_deref(), &cli.data, out)
        }
        Command::Search(args) => search::exec(args, &cli.data, out),
        Command::Rules { command } => rules::exec(command, &cli.data, out),
        Command::Model { command } => model::exec(command, &cli.data, out),
        Command::Dossier(args) => dossier::exec(args, &cli.data, out),
        Command::Serve {
            pipeline,
            listen,
            labels,
            secure_cookies,
            track_per_minute,
        } => {
            let pipeline = load_pipeline(pipeline.as_deref())?;
            let data_dir = data_dir(&cli.data, &pipeline);
            let settings = crate::web::ServeSettings {
                listen,
                data_dir,
                pipeline,
                labels,
                secure_cookies,
                track_per_minute,
            };
            crate::web::serve(settings, |addr| {
                let _ = out.line(&format!("listening on http://{addr}"));
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The CLI learns as the web app does, but inline: the command ends with the model saved.
/// What the person asked for is already done when this runs: a training that fails is
/// reported, not the command's failure (the next settled ticket tries again).
fn retrain_if_due(store: &mut Store, rules: &Rules, settled: topics::Settled) {
    if settled.retrain_due {
        retrain_now(store, rules, "labelled history and settled tickets");
    }
}

/// Starts, on a thread of its own, start-up work the first request would otherwise wait
/// for after the rules are loaded: reading the store's model when the pipeline classifies
/// (kept by [`Model::load_shared`] for the loads that follow), then compiling the entity
/// regexes. On a machine of two cores this takes the classifier's loading off the path to
/// the first ticket (measured: 12 ms of a command's 40 ms start, one message ingested).
///
/// [`Model::load_shared`]: crate::classify::model::Model::load_shared
fn warm_up(pipeline: &Pipeline, data_dir: &Path) {
    let model_dir = pipeline.classify_rules().map(|_| data_dir.to_path_buf());
    let warm = move || {
        if let Some(dir) = model_dir {
            // Its errors are the later load's to report.
            let _ = crate::classify::model::Model::load_shared(&dir);
        }
        crate::entities::warm();
    };
    // A thread that cannot be started only means no head start.
    let _ = std::thread::Builder::new()
        .name("warm-up".into())
        .spawn(warm);
}

/// Tickets settled elsewhere since the last training (the web app was down, an older
/// model): the model is brought up to date before a batch is classified. Intake goes on with
/// the model there is when a training cannot be done.
fn retrain_if_wanted(store: &mut Store, pipeline: &Pipeline, why: &str) -> Result<()> {
    if let Some(rules) = pipeline.classify_rules() {
        let rules = Rules::load(rules)?;
        if topics::retrain_wanted(store, &rules).unwrap_or(false) {
            match topics::retrain_unless_busy(store, &rules) {
                Ok(Some(trained)) => say_trained(&trained, why),
                Ok(None) => eprintln!(
                    "sportello: another process is training the model; this one starts with \
                     the one there is and takes the new one when it is saved ({why})"
                ),
                Err(e) => eprintln!("sportello: the model was not retrained: {e}"),
            }
        }
    }
    Ok(())
}

/// One round of the acknowledgements waiting in the outbox, by every sink of `pipeline`;
/// what fails stays queued for `run`.
fn deliver_acks_once(store: &mut Store, pipeline: &Pipeline) -> Result<()> {
    for sink in runner::out_sinks(pipeline).map_err(anyhow::Error::msg)? {
        let (sent, not_sent) = crate::sinks::deliver(sink.as_ref(), store, true);
        if sent + not_sent > 0 {
            eprintln!(
                "sportello: {sent} acknowledgement(s) by {} sent, {not_sent} failed (kept in the outbox)",
                sink.via().as_str()
            );
        }
    }
    Ok(())
}

/// Trains the model now and says so on stderr, `why` in brackets; a failure is said too.
fn retrain_now(store: &mut Store, rules: &Rules, why: &str) {
    match topics::retrain(store, rules, &mut || {}) {
        Ok(trained) => say_trained(&trained, why),
        Err(e) => eprintln!("sportello: the model was not retrained: {e}"),
    }
}

fn say_trained(trained: &topics::Trained, why: &str) {
    eprintln!(
        "sportello: model retrained on {} examples{} ({why})",
        trained.examples,
        match trained.model.shipped_examples {
            0 => String::new(),
            n => format!(" and {n} of the rules' own"),
        }
    );
}

/// JSON Lines of {"id","subject","body"} (a topic, if present, is ignored).
fn read_unlabelled(path: &Path) -> Result<Vec<Labelled>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if v.get("topic").is_none() {
            v["topic"] = serde_json::Value::String(String::new());
        }
        out.push(
            serde_json::from_value(v).with_context(|| format!("{}:{}", path.display(), i + 1))?,
        );
    }
    Ok(out)
}
