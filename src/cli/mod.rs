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
use crate::store::{Filed, Store, TicketFilter};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod classify;
mod dossier;
mod entities;
mod export;
mod extract;
mod ingest;
mod model;
mod rules;
mod run;
mod search;
mod tickets;
mod users;
pub use model::ModelCommand;
pub use rules::RulesCommand;
pub use tickets::TicketsCommand;
pub use users::UsersCommand;

#[derive(Parser, Debug)]
#[command(
    name = "sportello",
    version,
    about = "Turns what citizens send a public office into tickets"
)]
pub struct Cli {
    /// Data directory (store and originals). Default: the pipeline's data_dir, else ./sportello-data
    #[arg(long, global = true, env = "SPORTELLO_DATA")]
    pub data: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// File tickets from files and folders, once
    Ingest(ingest::IngestArgs),
    /// Watch every source of a pipeline until SIGINT/SIGTERM
    Run(run::RunArgs),
    /// Print the text extracted from a file, page by page (no ticket is filed)
    Extract(extract::ExtractArgs),
    /// OCR a scan or fax and print each page's text, confidence and rotation (no ticket)
    Ocr {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// Tesseract languages
        #[arg(long, default_value = "ita+eng")]
        languages: String,
        /// OCR worker threads (default: one per core)
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Also write the searchable PDF (page images with an invisible text layer) here
        #[arg(long)]
        pdf: Option<PathBuf>,
    },
    /// Check a pipeline file and report every problem in it, with its line: the file's own,
    /// and what running it needs from this machine (password variables, templates)
    Check {
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// List and show tickets
    Tickets {
        /// Pipeline whose store (`data_dir`) and rules are used (default: the shipped rules)
        #[arg(long, global = true)]
        pipeline: Option<PathBuf>,
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Full-text search over subject, body and document text
    Search(search::SearchArgs),
    /// Classify requests: text on stdin, or JSON Lines of {"id","subject","body"}
    Classify(classify::ClassifyArgs),
    /// Admin rules: backtest an edit before it goes live
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The learned topic model
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Identifiers in a file, or in a ticket (fiscal codes, VAT, emails, phones, dates, cases, addresses)
    Entities(entities::EntitiesArgs),
    /// Every ticket of the same person or case, newest first, with why it is linked
    Dossier(dossier::DossierArgs),
    /// Serve the web app (clerks, archivists, admins) and the citizens' /track page
    Serve {
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Address and port (port 0: any free port, printed at start)
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Labelled requests (JSON Lines) the rules editor also backtests on
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Mark cookies Secure (when users reach the app over HTTPS through a proxy)
        #[arg(long)]
        secure_cookies: bool,
        /// Tracking-code lookups allowed per client address per minute
        #[arg(long, default_value_t = 20)]
        track_per_minute: u32,
    },
    /// Accounts of the web app
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Every ticket, whole, one JSON object per line
    Export(export::ExportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub channel: Option<Channel>,
    #[arg(long)]
    pub status: Option<Status>,
    #[arg(long)]
    pub office: Option<String>,
    /// Received on or after this date (YYYY-MM-DD)
    #[arg(long)]
    pub since: Option<String>,
    /// Received before the end of this date (YYYY-MM-DD)
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only tickets carrying this fiscal code
    #[arg(long)]
    pub cf: Option<String>,
    /// Only tickets referring to this case number (e.g. B/2010/0977, 5678/2011)
    #[arg(long = "case")]
    pub case_ref: Option<String>,
    /// Only tickets whose sender's name, address or number contains this
    #[arg(long)]
    pub sender: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> Result<TicketFilter> {
        let day = |s: &str, what: &str| -> Result<chrono::NaiveDate> {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .with_context(|| format!("--{what} {s:?}: expected a date as YYYY-MM-DD"))
        };
        let since = self.since.as_deref().map(|s| day(s, "since")).transpose()?;
        let until = self.until.as_deref().map(|s| day(s, "until")).transpose()?;
        Ok(TicketFilter {
            status: self.status,
            topic: self.topic.clone(),
            channel: self.channel,
            office: self.office.clone(),
            needs_attention: None,
            fiscal_code: self.cf.clone(),
            case_ref: self.case_ref.clone(),
            since: since.map(|d| format!("{d}T00:00:00Z")),
            until: until
                .and_then(|d| d.succ_opt())
                .map(|d| format!("{d}T00:00:00Z")),
            sender: self.sender.clone(),
            limit: self.limit,
            offset: None,
        })
    }
}

/// Machine output goes to the real stdout; file descriptor 1 is pointed at stderr, so text a
/// library prints can never corrupt `--json` output.
struct Out {
    file: std::fs::File,
}

impl Out {
    fn take_stdout() -> Out {
        use std::os::fd::FromRawFd;
        // SAFETY: plain descriptor calls at start-up, before any other thread exists.
        unsafe {
            let saved = libc::dup(1);
            if saved >= 0 && libc::dup2(2, 1) >= 0 {
                return Out {
                    file: std::fs::File::from_raw_fd(saved),
                };
            }
            Out {
                file: std::fs::File::from_raw_fd(libc::dup(1)),
            }
        }
    }

    fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.file, "{s}").context("cannot write output")
    }

    fn json(&mut self, v: &impl serde::Serialize) -> Result<()> {
        let s = serde_json::to_string(v).context("cannot encode JSON")?;
        self.line(&s)
    }
}

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
/// Which rules a command uses: a pipeline's (its classify stage, and its store), or a rules
/// file given directly.
#[derive(clap::Args, Debug)]
pub struct RulesArgs {
    /// Pipeline whose rules and store are used
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Rules file (default: the pipeline's, else the shipped rules)
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

/// Who does it (recorded in the history): `--by`, else the login name.
fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

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

fn load_pipeline(path: Option<&Path>) -> Result<Pipeline> {
    match path {
        Some(p) => Pipeline::load(p).map_err(anyhow::Error::from),
        None => Ok(Pipeline::default()),
    }
}

fn data_dir(cli_data: &Option<PathBuf>, pipeline: &Pipeline) -> PathBuf {
    cli_data
        .clone()
        .or_else(|| pipeline.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("sportello-data"))
}

fn open_store(dir: &Path) -> Result<Store> {
    Store::open(dir).with_context(|| format!("cannot open the store in {}", dir.display()))
}

fn ocr_command(
    file: &Path,
    json: bool,
    languages: String,
    workers: usize,
    pdf: Option<&Path>,
    out: &mut Out,
) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_type = crate::extract::sniff(&bytes, &name);
    let bytes = Arc::new(bytes);
    let cfg = Pipeline::default().extract_config();
    let pages: Vec<u32> = crate::extract::extract(bytes.clone(), file_type, &cfg)
        .page_texts
        .iter()
        .map(|p| p.page)
        .collect();
    if pages.is_empty() {
        bail!(
            "{}: no pages to OCR in this {} file",
            file.display(),
            file_type.mime()
        );
    }
    let opts = crate::ocr::OcrOptions {
        languages,
        workers,
        searchable_pdf: pdf.is_some(),
        ..Default::default()
    };
    let result = crate::ocr::ocr_document(&bytes, file_type, &pages, &opts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some(path) = pdf {
        match &result.pdf {
            Some(b) => std::fs::write(path, b)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => eprintln!(
                "sportello: no searchable PDF: {}",
                result
                    .pdf_error
                    .as_deref()
                    .unwrap_or("no page was recognised")
            ),
        }
    }
    if json {
        out.json(&serde_json::json!({ "pages": result.pages }))?;
    } else {
        for p in &result.pages {
            out.line(&format!(
                "--- page {} (confidence {:.1}, rotated {}°, skew {:.2}°)\n{}",
                p.page, p.confidence, p.rotation, p.skew, p.text
            ))?;
            if let Some(e) = &p.error {
                eprintln!("sportello: {} page {}: {e}", file.display(), p.page);
            }
        }
    }
    Ok(if result.pages.iter().any(|p| p.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn dispatch(cli: Cli, out: &mut Out) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest(args) => ingest::exec(args, &cli.data, out),
        Command::Run(args) => run::exec(args, &cli.data, out),
        Command::Extract(args) => extract::exec(args, out),
        Command::Classify(args) => classify::exec(args, &cli.data, out),
        Command::Entities(args) => entities::exec(args, &cli.data, out),
        Command::Users { command } => users::exec(command, &cli.data, out),
        Command::Export(args) => export::exec(args, &cli.data, out),
        Command::Ocr {
            file,
            json,
            languages,
            workers,
            pdf,
        } => ocr_command(&file, json, languages, workers, pdf.as_deref(), out),
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

/// Replaces fiscal codes and phone numbers everywhere in a ticket with masked forms.
fn mask_ticket(t: &mut Ticket) {
    use crate::entities::{mask, Kind};
    let personal: Vec<(String, String)> = t
        .entities
        .iter()
        .filter(|e| matches!(e.kind, Kind::FiscalCode | Kind::Phone))
        .flat_map(|e| {
            [
                (e.raw.clone(), mask(e.kind, &e.raw)),
                (e.value.clone(), mask(e.kind, &e.value)),
            ]
        })
        .filter(|(raw, _)| raw.len() >= 5)
        .collect();
    let scrub = |s: &mut String| {
        for (raw, masked) in &personal {
            if s.contains(raw.as_str()) {
                *s = s.replace(raw.as_str(), masked);
            }
        }
    };
    scrub(&mut t.subject);
    scrub(&mut t.body);
    for d in &mut t.documents {
        scrub(&mut d.text);
    }
    for e in &mut t.entities {
        if matches!(e.kind, Kind::FiscalCode | Kind::Phone) {
            e.value = mask(e.kind, &e.value);
            e.raw = mask(e.kind, &e.raw);
        }
    }
    for n in [&mut t.sender.fax, &mut t.sender.phone]
        .into_iter()
        .flatten()
    {
        *n = mask(Kind::Phone, n);
    }
    for l in &mut t.dossier {
        for r in &mut l.reasons {
            scrub(r);
        }
    }
}

/// The rules of the pipeline's classify stage, if it has one.
fn classify_rules(pipeline: &Pipeline) -> Option<PathBuf> {
    pipeline.stages.iter().find_map(|s| match s {
        crate::config::StageConfig::Classify(c) => Some(c.rules.clone()),
        _ => None,
    })
}

/// The rules file: given, else the pipeline's classify stage, else the shipped rules.
fn rules_path(given: Option<&Path>, pipeline: &Pipeline) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        pipeline
            .stages
            .iter()
            .find_map(|s| match s {
                crate::config::StageConfig::Classify(c) => Some(c.rules.clone()),
                _ => None,
            })
            .unwrap_or_else(|| PathBuf::from(crate::classify::rules::SHIPPED_NAME))
    })
}

/// The CLI learns as the web app does, but inline: the command ends with the model saved.
/// What the person asked for is already done when this runs: a training that fails is
/// reported, not the command's failure (the next settled ticket tries again).
fn retrain_if_due(store: &mut Store, rules: &Rules, settled: topics::Settled) {
    if settled.retrain_due {
        retrain_now(store, rules, "labelled history and settled tickets");
    }
}

/// Trains the model now and says so on stderr, `why` in brackets; a failure is said too.
fn retrain_now(store: &mut Store, rules: &Rules, why: &str) {
    match topics::retrain(store, rules, &mut || {}) {
        Ok(trained) => eprintln!(
            "sportello: model retrained on {} examples ({why})",
            trained.examples
        ),
        Err(e) => eprintln!("sportello: the model was not retrained: {e}"),
    }
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

fn report_outcome(out: &mut Out, store: &Store, outcome: &Outcome, json: bool) -> Result<()> {
    let file = outcome.origin.display().to_string();
    match &outcome.result {
        Err(e) => {
            eprintln!("sportello: {file}: {e}");
            if json {
                out.json(
                    &serde_json::json!({"file": file, "outcome": "error", "error": e.to_string()}),
                )?;
            }
        }
        Ok((filed, attention)) => {
            let kind = match filed {
                Filed::Created { .. } => "created",
                Filed::Duplicate { .. } => "duplicate",
                Filed::AlreadyFiled { .. } => "already_filed",
                Filed::Appended { .. } => "appended",
            };
            if json {
                let ticket = store.ticket(filed.code())?;
                out.json(&serde_json::json!({"file": file, "outcome": kind, "ticket": ticket}))?;
            } else {
                let note = match (filed, attention) {
                    (Filed::Created { protocol, .. }, Some(a)) => {
                        format!("{protocol}  needs attention: {}", one_line(a, 120))
                    }
                    (Filed::Created { protocol, .. }, None) => protocol.clone(),
                    (Filed::Duplicate { .. }, _) => {
                        "duplicate of this ticket, recorded on it".into()
                    }
                    (Filed::AlreadyFiled { .. }, _) => "already filed".into(),
                    (Filed::Appended { what, .. }, _) => format!("{what} added to this ticket"),
                };
                out.line(&format!("{}  {kind:<13}  {file}  {note}", filed.code()))?;
            }
        }
    }
    Ok(())
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

fn render_ticket(t: &Ticket) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<17}{v}\n"));
    line("code", &t.code);
    line("protocol", &t.protocol);
    line("channel", t.channel.as_str());
    line("received", &t.received_at);
    line("registered", &t.registered_at);
    let sender = [
        &t.sender.name,
        &t.sender.email,
        &t.sender.fax,
        &t.sender.phone,
    ]
    .iter()
    .filter_map(|v| v.as_deref())
    .collect::<Vec<_>>()
    .join(", ");
    line("sender", if sender.is_empty() { "-" } else { &sender });
    line("subject", &t.subject);
    line("status", t.status.as_str());
    let topic = match (&t.topic, t.topic_confidence) {
        (Some(topic), Some(c)) => format!("{topic} ({:.0}%)", c * 100.0),
        (Some(topic), None) => topic.clone(),
        _ => "-".into(),
    };
    line("topic", &topic);
    if let Some(r) = &t.topic_reason {
        line("topic reason", r);
    }
    line("office", t.office.as_deref().unwrap_or("-"));
    if t.needs_attention {
        line(
            "NEEDS ATTENTION",
            t.attention_reason.as_deref().unwrap_or("yes"),
        );
    }
    if let Some(p) = &t.parent {
        line("follows up", p);
    }
    s.push_str("\ndocuments\n");
    for (i, d) in t.documents.iter().enumerate() {
        s.push_str(&format!(
            "  {}. {} ({}, {} bytes{}, {}) sha256 {}\n",
            i + 1,
            d.name,
            d.mime,
            d.size,
            d.pages
                .map(|p| format!(", {p} page(s)"))
                .unwrap_or_default(),
            d.kind.as_str(),
            &d.sha256[..12.min(d.sha256.len())]
        ));
        if d.ocr {
            s.push_str(&format!(
                "     text by OCR, mean confidence {:.0}\n",
                d.ocr_confidence.unwrap_or(0.0)
            ));
        }
        if let Some(e) = &d.error {
            s.push_str(&format!("     ! {e}\n"));
        }
    }
    if !t.entities.is_empty() {
        s.push_str("\nidentifiers\n");
        for e in &t.entities {
            let validity = if e.valid { "" } else { " (invalid)" };
            s.push_str(&format!(
                "  {:<12} {}{validity}  [{}]\n",
                e.kind.as_str(),
                e.value,
                e.place
            ));
        }
    }
    if !t.dossier.is_empty() {
        s.push_str("\ndossier\n");
        for l in &t.dossier {
            let mark = if l.suggested { "?" } else { " " };
            s.push_str(&format!(
                "{mark} {}  {}  {}  {}\n",
                l.code,
                l.protocol,
                one_line(&l.subject, 50),
                l.reasons.join("; ")
            ));
        }
    }
    s.push_str("\nbody\n");
    for l in t.body.lines() {
        s.push_str(&format!("  {l}\n"));
    }
    s.push_str("\nhistory\n");
    for e in &t.events {
        s.push_str(&format!(
            "  {}  {:<10}  {:<20}  {}\n",
            e.at, e.actor, e.kind, e.detail
        ));
    }
    s
}
