//! The command line as clap reads it: the global options, the sub-commands and the
//! arguments several of them share. Each sub-command's own arguments live in its file under
//! `commands/`.

use super::*;

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
    /// The register: postgres://USER@HOST:PORT/DB, or sqlite (sportello.db in the data dir).
    /// Default: the pipeline's `database`, else sqlite. With PostgreSQL the data directory
    /// holds only the originals, and may be a shared mount
    #[arg(
        long,
        global = true,
        env = "SPORTELLO_DATABASE",
        hide_env_values = true
    )]
    pub database: Option<String>,
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
    /// Process the items `ingest --enqueue` queued (any number of workers, side by side)
    Worker(worker::WorkerArgs),
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
    /// Copy the SQLite store into an empty PostgreSQL register, and check the copy
    Migrate(migrate::MigrateArgs),
    /// The protocol register as AgID defines it: segnatura, daily register
    Register {
        #[command(subcommand)]
        command: RegisterCommand,
    },
}

/// How long a job claimed from the queue stays this process's (`worker`, `run`).
#[derive(Args, Debug, Clone, Copy)]
pub struct LeaseArgs {
    /// Seconds a claimed job stays this process's without renewal (renewed every third of
    /// it): after a crash, how long before another worker takes the job over
    #[arg(long, default_value_t = crate::queue::LEASE_SECS, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub lease_secs: i64,
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
    pub(super) fn to_filter(&self) -> Result<TicketFilter> {
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
