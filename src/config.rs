//! Pipeline files (`pipelines/*.toml`): what to watch, what to do with it, where results go.
//!
//! Loading collects *every* problem before failing, each with file, line and what was
//! expected, so an admin fixes a file in one go. Secrets are never in the file: a source or
//! sink names the environment variable that holds its password (`password_env`).

use crate::model::Channel;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a pipeline file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in pipeline file", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS.
    Starttls,
    /// No encryption: only accepted towards loopback addresses (tests).
    Plain,
}

fn default_settle_secs() -> f64 {
    3.0
}
fn default_rescan_secs() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_folders() -> Vec<String> {
    vec!["INBOX".to_string()]
}
fn default_email_channel() -> Channel {
    Channel::Email
}

/// A drop folder written by a fax server or a scanner.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FolderSourceConfig {
    pub name: String,
    pub path: PathBuf,
    pub channel: Channel,
    /// A file is taken once its size and mtime have not changed for this long.
    #[serde(default = "default_settle_secs")]
    pub settle_secs: f64,
    /// Full rescan period, catching what file events missed.
    #[serde(default = "default_rescan_secs")]
    pub rescan_secs: u64,
    /// Poll instead of waiting for events (network shares, where events never come).
    #[serde(default)]
    pub poll: bool,
    /// Where finished files go; default `processed/` inside the drop folder.
    pub processed_dir: Option<PathBuf>,
    /// Where files that could not be processed go; default `failed/` inside the drop folder.
    pub failed_dir: Option<PathBuf>,
    /// Regex over the file name with named groups `fax`, `phone`, `name`, `email`
    /// (HylaFAX-style servers name received faxes after the sender).
    pub sender_pattern: Option<String>,
}

/// An IMAP mailbox (plain email or a PEC box).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImapSourceConfig {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: String,
    pub password_env: String,
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    #[serde(default = "default_email_channel")]
    pub channel: Channel,
    /// Folder a message moves to once its ticket is committed (else it is flagged).
    pub move_to: Option<String>,
    /// IMAP flag set once its ticket is committed, when `move_to` is not given.
    pub flag: Option<String>,
    #[serde(default = "default_true")]
    pub idle: bool,
    #[serde(default = "default_rescan_secs")]
    pub poll_secs: u64,
}

/// A folder another program spools into: gammu-smsd's inbox (text messages from the office's
/// GSM modem) or Asterisk's voicemail box of the toll-free line.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpoolSourceConfig {
    /// Default: the source's kind (`sms`, `voicemail`).
    #[serde(default)]
    pub name: String,
    /// gammu-smsd's `inboxpath`; the voicemail box's `INBOX` folder.
    pub path: PathBuf,
    /// A message is taken once its files have not changed for this long (gammu-smsd writes
    /// the parts of a long message one after another; Asterisk the recording, then its
    /// description).
    #[serde(default = "default_settle_secs")]
    pub settle_secs: f64,
    #[serde(default = "default_rescan_secs")]
    pub rescan_secs: u64,
    #[serde(default)]
    pub poll: bool,
    pub processed_dir: Option<PathBuf>,
    pub failed_dir: Option<PathBuf>,
}

impl SpoolSourceConfig {
    /// The drop folder underneath: settling, `processed/` and `failed/` as for any folder.
    pub fn folder(&self, channel: Channel) -> FolderSourceConfig {
        FolderSourceConfig {
            name: self.name.clone(),
            path: self.path.clone(),
            channel,
            settle_secs: self.settle_secs,
            rescan_secs: self.rescan_secs,
            poll: self.poll,
            processed_dir: self.processed_dir.clone(),
            failed_dir: self.failed_dir.clone(),
            sender_pattern: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Folder(FolderSourceConfig),
    Imap(ImapSourceConfig),
    Sms(SpoolSourceConfig),
    Voicemail(SpoolSourceConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Folder(f) => &f.name,
            SourceConfig::Imap(i) => &i.name,
            SourceConfig::Sms(s) | SourceConfig::Voicemail(s) => &s.name,
        }
    }
}

fn default_extract_timeout() -> f64 {
    60.0
}
fn default_max_pages() -> u32 {
    2000
}
fn default_languages() -> String {
    "ita+eng".to_string()
}
fn default_min_confidence() -> f32 {
    60.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractStageConfig {
    /// Seconds one document's text extraction may take before it is given up (flagged).
    #[serde(default = "default_extract_timeout")]
    pub timeout_secs: f64,
    /// Documents with more pages are kept but not extracted (flagged).
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

impl Default for ExtractStageConfig {
    fn default() -> Self {
        ExtractStageConfig {
            timeout_secs: default_extract_timeout(),
            max_pages: default_max_pages(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcrStageConfig {
    #[serde(default = "default_languages")]
    pub languages: String,
    /// OCR worker threads; default: one per core.
    pub workers: Option<usize>,
    #[serde(default = "default_extract_timeout")]
    pub page_timeout_secs: f64,
    /// Pages whose mean word confidence is below this flag the ticket for review.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
}

impl Default for OcrStageConfig {
    fn default() -> Self {
        OcrStageConfig {
            languages: default_languages(),
            workers: None,
            page_timeout_secs: default_extract_timeout(),
            min_confidence: default_min_confidence(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifyStageConfig {
    /// Rules file (TOML), relative to the pipeline file.
    pub rules: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageConfig {
    Extract(ExtractStageConfig),
    Ocr(OcrStageConfig),
    Classify(ClassifyStageConfig),
}

impl StageConfig {
    fn kind(&self) -> &'static str {
        match self {
            StageConfig::Extract(_) => "extract",
            StageConfig::Ocr(_) => "ocr",
            StageConfig::Classify(_) => "classify",
        }
    }
}

/// Acknowledgements to citizens by SMTP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpAckConfig {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub from: String,
    /// Folder of templates, relative to the pipeline file.
    pub templates: Option<PathBuf>,
    /// Template language, `it` by default.
    pub language: Option<String>,
    /// Acknowledgements at most per address per hour.
    pub max_per_hour: Option<u32>,
}

impl SmtpAckConfig {
    /// The domain of the sender address: our Message-IDs end in it.
    pub fn domain(&self) -> String {
        self.from
            .rsplit('@')
            .next()
            .unwrap_or("localhost")
            .trim_end_matches('>')
            .to_string()
    }
}

/// Acknowledgements and clerks' replies by text message: files in gammu-smsd's outbox
/// folder (files backend), which it sends through the office's GSM modem.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmsSinkConfig {
    /// gammu-smsd's `outboxpath`.
    pub outbox: PathBuf,
    /// Folder of templates (`ack.sms.<language>.txt`), relative to the pipeline file.
    pub templates: Option<PathBuf>,
    /// Template language, `it` by default.
    pub language: Option<String>,
    /// Acknowledgements at most per number per hour.
    pub max_per_hour: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkConfig {
    SmtpAck(SmtpAckConfig),
    Sms(SmsSinkConfig),
}

/// A validated pipeline, with relative paths resolved against the file's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// Where the register lives (`postgres://…`); None: SQLite in the data dir.
    /// `--database` and `SPORTELLO_DATABASE` win over it.
    pub database: Option<crate::store::Database>,
    pub office: Option<String>,
    pub code_prefix: String,
    pub workers: usize,
    /// How untrusted bytes are parsed: in worker processes (the default) or in this one.
    pub isolation: IsolationConfig,
    pub sources: Vec<SourceConfig>,
    pub stages: Vec<StageConfig>,
    pub sinks: Vec<SinkConfig>,
    /// `[register]`: the register's identity in AgID's terms (segnatura, daily register).
    pub register: Option<crate::register::RegisterConfig>,
    /// The AOO's seal (PEM key and certificate) for segnature; `SPORTELLO_SEAL_KEY` and
    /// `SPORTELLO_SEAL_CERT` win over these.
    pub seal_key: Option<PathBuf>,
    pub seal_cert: Option<PathBuf>,
    /// Where `run` writes each day's register after midnight.
    pub register_dir: Option<PathBuf>,
}

impl Default for Pipeline {
    /// What `ingest` and `serve` use without `--pipeline`: extract text, OCR what has none,
    /// classify with the shipped rules and the store's model, store.
    fn default() -> Self {
        Pipeline {
            file: None,
            data_dir: None,
            database: None,
            office: None,
            code_prefix: "URP".to_string(),
            workers: default_workers(),
            isolation: IsolationConfig::default(),
            sources: Vec::new(),
            stages: vec![
                StageConfig::Extract(ExtractStageConfig::default()),
                StageConfig::Ocr(OcrStageConfig::default()),
                StageConfig::Classify(ClassifyStageConfig {
                    rules: PathBuf::from(crate::classify::rules::SHIPPED_NAME),
                }),
            ],
            sinks: Vec::new(),
            register: None,
            seal_key: None,
            seal_cert: None,
            register_dir: None,
        }
    }
}

/// `[isolation]`: messages, signed files, PDFs and images are read in worker processes of
/// this same binary, so a parser that overflows its stack, aborts, segfaults in C code or is
/// killed for its memory costs one item, never the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IsolationConfig {
    /// `false` parses in the runner itself (faster by a few percent; a crash ends the run).
    /// The environment variable `SPORTELLO_ISOLATION=off` does the same.
    #[serde(default = "yes")]
    pub processes: bool,
    /// Data memory one worker may take (`RLIMIT_DATA`), MiB.
    #[serde(default = "default_worker_memory_mb")]
    pub memory_mb: u64,
    /// CPU seconds one item may take in a worker (`RLIMIT_CPU`, raised before each item).
    #[serde(default = "default_worker_cpu_secs")]
    pub cpu_secs: u64,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            processes: true,
            memory_mb: default_worker_memory_mb(),
            cpu_secs: default_worker_cpu_secs(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_worker_memory_mb() -> u64 {
    1024
}
fn default_worker_cpu_secs() -> u64 {
    600
}

/// Threads that prepare items: one per core, plus one. A worker waits for the disk for every
/// original it keeps (fsynced before its ticket may commit) and for every file it reads; the
/// extra one keeps the cores busy meanwhile (10,000 mails on 2 cores: 3 workers ingest ~20%
/// more per second than 2; twice the cores gained nothing more).
pub fn default_workers() -> usize {
    cores() + 1
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// The text of a configuration file (pipeline, rules); unreadable is a problem with its name.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![ConfigProblem {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        }])
    })
}

impl Pipeline {
    /// The rules file of the pipeline's classify stage, if it has one.
    pub fn classify_rules(&self) -> Option<&Path> {
        self.stages.iter().find_map(|s| match s {
            StageConfig::Classify(c) => Some(c.rules.as_path()),
            _ => None,
        })
    }

    /// The rules in force: the classify stage's, else the shipped ones (what topics a
    /// person reads, and what a clerk's settling teaches, even where intake does not
    /// classify).
    pub fn rules_in_force(&self) -> PathBuf {
        self.classify_rules().map_or_else(
            || PathBuf::from(crate::classify::rules::SHIPPED_NAME),
            Path::to_path_buf,
        )
    }

    /// The same pipeline without its classify stage (what reads a file without filing it,
    /// or a replay that classifies with rules of its own).
    pub fn without_classify(mut self) -> Pipeline {
        self.stages
            .retain(|s| !matches!(s, StageConfig::Classify(_)));
        self
    }

    /// The domain our Message-IDs end in: the acknowledgements' sender's, else a local name.
    pub fn reply_domain(&self) -> String {
        self.sinks
            .iter()
            .find_map(|s| match s {
                SinkConfig::SmtpAck(a) => Some(a.domain()),
                SinkConfig::Sms(_) => None,
            })
            .unwrap_or_else(|| "sportello.localhost".into())
    }

    pub fn extract_config(&self) -> ExtractStageConfig {
        self.stages
            .iter()
            .find_map(|s| match s {
                StageConfig::Extract(e) => Some(e.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        Pipeline::load_checking(path, Checks::File)
    }

    /// [`Pipeline::load`], and what running it needs from this machine (see [`Checks`]):
    /// for `check` and `run`, so every problem comes out at once, with its line.
    pub fn load_for_start(path: &Path) -> Result<Pipeline, ConfigError> {
        Pipeline::load_checking(path, Checks::Start)
    }

    fn load_checking(path: &Path, checks: Checks) -> Result<Pipeline, ConfigError> {
        Pipeline::parse_checking(path, &read_config_file(path)?, checks)
    }

    /// Parses and validates `text` as the pipeline file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse_checking(path, text, Checks::File)
    }

    fn parse_checking(path: &Path, text: &str, checks: Checks) -> Result<Pipeline, ConfigError> {
        let mut cx = Checker {
            file: path.to_path_buf(),
            text,
            problems: Vec::new(),
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: PathBuf| {
            if p.is_absolute() || base.as_os_str().is_empty() {
                p
            } else {
                base.join(p)
            }
        };

        // Two looks at the same text: the top-level keys, and the elements of the three arrays
        // each with its own span, so an error is pinned to the element it is in.
        let top: BTreeMap<String, Spanned<toml::Value>> = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                cx.push_toml(&e, None);
                return Err(ConfigError(cx.problems));
            }
        };
        #[derive(Deserialize)]
        struct Arrays {
            #[serde(default)]
            sources: Vec<Spanned<toml::Value>>,
            #[serde(default)]
            stages: Vec<Spanned<toml::Value>>,
            #[serde(default)]
            sinks: Vec<Spanned<toml::Value>>,
        }
        let arrays: Arrays = match toml::from_str(text) {
            Ok(a) => a,
            Err(e) => {
                cx.push_toml(&e, None);
                return Err(ConfigError(cx.problems));
            }
        };

        let mut pipeline = Pipeline {
            file: Some(path.to_path_buf()),
            stages: Vec::new(),
            ..Pipeline::default()
        };
        pipeline.settings_from(&mut cx, &top, &resolve);
        pipeline.sources_from(&mut cx, &arrays.sources, &resolve, checks);
        pipeline.stages_from(&mut cx, &arrays.stages, &resolve);
        pipeline.sinks_from(&mut cx, &arrays.sinks, &resolve, &base, checks);
        pipeline.register_problems(&mut cx, &top, checks);

        if cx.problems.is_empty() {
            Ok(pipeline)
        } else {
            Err(ConfigError(cx.problems))
        }
    }

    /// The register's keys taken together: a seal is a key and its certificate, readable
    /// when the pipeline starts; a `register_dir` needs a register.
    fn register_problems(
        &self,
        cx: &mut Checker,
        top: &BTreeMap<String, Spanned<toml::Value>>,
        checks: Checks,
    ) {
        let span = |key: &str| top.get(key).map(|v| v.span());
        if self.seal_key.is_some() != self.seal_cert.is_some() {
            let key = if self.seal_key.is_some() {
                "seal_key"
            } else {
                "seal_cert"
            };
            if let Some(at) = span(key) {
                cx.at(
                    at,
                    "`seal_key` and `seal_cert` go together: the AOO's PEM key and its certificate"
                        .into(),
                );
            }
        }
        if self.register_dir.is_some() && self.register.is_none() {
            if let Some(at) = span("register_dir") {
                cx.at(at, "`register_dir` needs a `[register]` table (ipa, aoo, code, administration, fiscal_code)".into());
            }
        }
        if checks == Checks::Start {
            for (key, path) in [("seal_key", &self.seal_key), ("seal_cert", &self.seal_cert)] {
                if let (Some(p), Some(at)) = (path, span(key)) {
                    if let Err(e) = std::fs::File::open(p) {
                        cx.at(at, format!("`{key}`: cannot read {}: {e}", p.display()));
                    }
                }
            }
        }
    }

    /// The top-level keys.
    fn settings_from(
        &mut self,
        cx: &mut Checker,
        top: &BTreeMap<String, Spanned<toml::Value>>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) {
        for (key, value) in top {
            match key.as_str() {
                "sources" | "stages" | "sinks" => {}
                "data_dir" => self.data_dir = cx.scalar::<PathBuf>(key, value).map(resolve),
                "database" => {
                    if let Some(d) = cx.scalar::<String>(key, value) {
                        match crate::store::Database::parse(&d) {
                            Ok(d) => self.database = Some(d),
                            Err(e) => cx.at(value.span(), format!("`database`: {e}")),
                        }
                    }
                }
                "office" => self.office = cx.scalar(key, value),
                "register" => {
                    if let Some(r) = cx.scalar::<crate::register::RegisterConfig>(key, value) {
                        for p in r.problems() {
                            cx.at(value.span(), format!("`register`: {p}"));
                        }
                        self.register = Some(r);
                    }
                }
                "seal_key" => self.seal_key = cx.scalar::<PathBuf>(key, value).map(resolve),
                "seal_cert" => self.seal_cert = cx.scalar::<PathBuf>(key, value).map(resolve),
                "register_dir" => {
                    self.register_dir = cx.scalar::<PathBuf>(key, value).map(resolve)
                }
                "code_prefix" => {
                    if let Some(p) = cx.scalar::<String>(key, value) {
                        if (2..=6).contains(&p.len()) && p.chars().all(|c| c.is_ascii_uppercase()) {
                            self.code_prefix = p;
                        } else {
                            cx.at(value.span(), format!("`code_prefix` must be 2 to 6 capital letters A-Z, got {p:?}"));
                        }
                    }
                }
                "workers" => {
                    if let Some(w) = cx.scalar::<usize>(key, value) {
                        if w == 0 {
                            cx.at(value.span(), "`workers` must be at least 1".into());
                        } else {
                            self.workers = w;
                        }
                    }
                }
                "isolation" => {
                    if let Some(i) = cx.scalar::<IsolationConfig>(key, value) {
                        if i.memory_mb < 64 || i.cpu_secs == 0 {
                            cx.at(value.span(), "`isolation`: `memory_mb` must be at least 64 and `cpu_secs` at least 1".into());
                        } else {
                            self.isolation = i;
                        }
                    }
                }
                other => cx.at(
                    value.span(),
                    format!("unknown key `{other}`, expected one of: data_dir, database, office, code_prefix, workers, isolation, sources, stages, sinks"),
                ),
            }
        }
    }

    /// `[[sources]]`, each checked on its own.
    fn sources_from(
        &mut self,
        cx: &mut Checker,
        elements: &[Spanned<toml::Value>],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
        checks: Checks,
    ) {
        let mut names = HashSet::new();
        for element in elements {
            let Some(mut source) = cx.element::<SourceConfig>("source", element) else {
                continue;
            };
            // A modem's or a voicemail box's source is usually the only one of its kind: its
            // kind names it unless the file does.
            match &mut source {
                SourceConfig::Sms(s) if s.name.is_empty() => s.name = "sms".into(),
                SourceConfig::Voicemail(s) if s.name.is_empty() => s.name = "voicemail".into(),
                _ => {}
            }
            if !names.insert(source.name().to_string()) {
                cx.at(
                    element.span(),
                    format!("source name `{}` is used twice", source.name()),
                );
            }
            match &mut source {
                SourceConfig::Folder(f) => {
                    f.path = resolve(f.path.clone());
                    f.processed_dir = f.processed_dir.take().map(&resolve);
                    f.failed_dir = f.failed_dir.take().map(&resolve);
                    timing_problems(cx, element.span(), f.settle_secs, f.rescan_secs);
                    if let Some(p) = &f.sender_pattern {
                        match regex::Regex::new(p) {
                            Err(e) => cx.at(
                                element.span(),
                                format!("`sender_pattern` is not a valid regex: {e}"),
                            ),
                            Ok(re) => {
                                let known = ["fax", "phone", "name", "email"];
                                if !re.capture_names().flatten().any(|n| known.contains(&n)) {
                                    cx.at(element.span(), "`sender_pattern` needs a named group: (?P<fax>…), (?P<phone>…), (?P<name>…) or (?P<email>…)".into());
                                }
                            }
                        }
                    }
                }
                SourceConfig::Sms(f) | SourceConfig::Voicemail(f) => {
                    f.path = resolve(f.path.clone());
                    f.processed_dir = f.processed_dir.take().map(&resolve);
                    f.failed_dir = f.failed_dir.take().map(&resolve);
                    timing_problems(cx, element.span(), f.settle_secs, f.rescan_secs);
                }
                SourceConfig::Imap(i) => {
                    cx.env_name(element.span(), &i.password_env);
                    if let Some(e) = plain_tls_problem(i.tls, &i.host) {
                        cx.at_key(element.span(), "tls", format!("source `{}`: {e}", i.name));
                    }
                    if checks == Checks::Start {
                        for (key, e) in i.start_problems() {
                            cx.at_key(element.span(), key, e);
                        }
                    }
                    if i.folders.is_empty() {
                        cx.at(
                            element.span(),
                            "`folders` must name at least one folder".into(),
                        );
                    }
                    if i.move_to.is_some() && i.flag.is_some() {
                        cx.at(
                            element.span(),
                            "give either `move_to` or `flag`, not both".into(),
                        );
                    }
                    if !matches!(i.channel, Channel::Email | Channel::Pec) {
                        cx.at(
                            element.span(),
                            format!("an imap source has channel email or pec, not {}", i.channel),
                        );
                    }
                }
            }
            self.sources.push(source);
        }
    }

    /// `[[stages]]`, in an order that works (extract first, OCR before classify).
    fn stages_from(
        &mut self,
        cx: &mut Checker,
        elements: &[Spanned<toml::Value>],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) {
        let mut seen_stages: Vec<&'static str> = Vec::new();
        for element in elements {
            let Some(mut stage) = cx.element::<StageConfig>("stage", element) else {
                continue;
            };
            let kind = stage.kind();
            if seen_stages.contains(&kind) {
                cx.at(element.span(), format!("stage `{kind}` is listed twice"));
            }
            if kind == "extract" && !seen_stages.is_empty() {
                cx.at(element.span(), "stage `extract` must come first".into());
            }
            if kind == "ocr" && seen_stages.contains(&"classify") {
                cx.at(
                    element.span(),
                    "stage `ocr` must come before `classify`, which reads its text".into(),
                );
            }
            seen_stages.push(kind);
            match &mut stage {
                StageConfig::Extract(e) if e.timeout_secs.is_nan() || e.timeout_secs <= 0.0 => {
                    cx.at(element.span(), "`timeout_secs` must be positive".into())
                }
                StageConfig::Ocr(o) if o.languages.trim().is_empty() => cx.at(
                    element.span(),
                    "`languages` must name at least one language, e.g. \"ita+eng\"".into(),
                ),
                StageConfig::Classify(c) => c.rules = resolve(c.rules.clone()),
                _ => {}
            }
            self.stages.push(stage);
        }
        if !self
            .stages
            .iter()
            .any(|s| matches!(s, StageConfig::Extract(_)))
        {
            // Extraction is what every later stage reads; it is implied when not listed.
            self.stages
                .insert(0, StageConfig::Extract(ExtractStageConfig::default()));
        }
    }

    /// `[[sinks]]`.
    fn sinks_from(
        &mut self,
        cx: &mut Checker,
        elements: &[Spanned<toml::Value>],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
        base: &Path,
        checks: Checks,
    ) {
        for element in elements {
            let Some(mut sink) = cx.element::<SinkConfig>("sink", element) else {
                continue;
            };
            match &mut sink {
                SinkConfig::SmtpAck(s) => {
                    if let Some(env) = &s.password_env {
                        cx.env_name(element.span(), env);
                    }
                    if let Err(e) = crate::sinks::smtp::from_address(s) {
                        cx.at_key(element.span(), "from", format!("smtp_ack: {e}"));
                    }
                    if let Some(e) = plain_tls_problem(s.tls, &s.host) {
                        cx.at_key(element.span(), "tls", format!("smtp_ack: {e}"));
                    }
                    s.templates = s.templates.take().map(&resolve);
                    if checks == Checks::Start {
                        for (key, e) in s.start_problems(base) {
                            cx.at_key(element.span(), key, e);
                        }
                    }
                }
                SinkConfig::Sms(s) => {
                    s.outbox = resolve(s.outbox.clone());
                    s.templates = s.templates.take().map(&resolve);
                    if checks == Checks::Start {
                        for (key, e) in crate::sinks::sms::start_problems(s, base) {
                            cx.at_key(element.span(), key, e);
                        }
                    }
                }
            }
            let kind = std::mem::discriminant(&sink);
            if self.sinks.iter().any(|k| std::mem::discriminant(k) == kind) {
                cx.at(element.span(), "this kind of sink is given twice".into());
            }
            self.sinks.push(sink);
        }
    }
}

/// How much [`Pipeline::parse`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// The file alone: every command that reads a pipeline.
    File,
    /// Also what running it needs from this machine: password variables set, templates
    /// readable and valid (`check`, `run`).
    Start,
}

/// `tls = "plain"` sends passwords and citizens' mail in clear: only towards this machine.
pub fn plain_tls_problem(tls: TlsMode, host: &str) -> Option<String> {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (tls == TlsMode::Plain && !loopback).then(|| {
        format!("tls = \"plain\" is only allowed towards this machine (tests), not {host}: use \"implicit\" or \"starttls\"")
    })
}

/// A folder source's settle and rescan times, within what makes sense.
fn timing_problems(cx: &mut Checker, span: std::ops::Range<usize>, settle: f64, rescan: u64) {
    if !(0.0..=3600.0).contains(&settle) {
        cx.at(
            span.clone(),
            "`settle_secs` must be between 0 and 3600".into(),
        );
    }
    if rescan == 0 {
        cx.at(span, "`rescan_secs` must be at least 1".into());
    }
}

/// Collects problems of one TOML file with their lines; shared by pipeline and rules files.
pub(crate) struct Checker<'a> {
    pub(crate) file: PathBuf,
    pub(crate) text: &'a str,
    pub(crate) problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
    }

    pub(crate) fn at(&mut self, span: std::ops::Range<usize>, message: String) {
        let line = Some(self.line_of(span.start));
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line,
            message,
        });
    }

    /// A problem with the key `key` of the element at `span`: on that key's line when the
    /// element writes it, else on the element's.
    pub(crate) fn at_key(&mut self, span: std::ops::Range<usize>, key: &str, message: String) {
        let line = self
            .find_key_line(span.clone(), key)
            .unwrap_or_else(|| self.line_of(span.start));
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line: Some(line),
            message,
        });
    }

    pub(crate) fn push_toml(
        &mut self,
        e: &toml::de::Error,
        within: Option<std::ops::Range<usize>>,
    ) {
        let line = e.span().or(within).map(|s| self.line_of(s.start));
        let message = e.message().trim().to_string();
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line,
            message,
        });
    }

    pub(crate) fn scalar<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: &Spanned<toml::Value>,
    ) -> Option<T> {
        match T::deserialize(value.get_ref().clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.at(value.span(), format!("`{key}`: {}", e.message().trim()));
                None
            }
        }
    }

    /// Deserializes one `[[sources]]`/`[[stages]]`/`[[sinks]]` element, pinning an error to the
    /// line of the key it names when it names one.
    pub(crate) fn element<T: DeserializeOwned>(
        &mut self,
        what: &str,
        value: &Spanned<toml::Value>,
    ) -> Option<T> {
        match T::deserialize(value.get_ref().clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let message = e.message().trim().to_string();
                let span = value.span();
                // The line of the key the message names, or of the bad value it quotes.
                let line = key_named_in(&message)
                    .and_then(|word| {
                        self.find_key_line(span.clone(), &word)
                            .or_else(|| self.find_value_line(span.clone(), &word))
                    })
                    .unwrap_or_else(|| self.line_of(span.start));
                let message = if message.contains("missing field `kind`") {
                    format!("{what} needs `kind`")
                } else {
                    format!("{what}: {message}")
                };
                self.problems.push(ConfigProblem {
                    file: self.file.clone(),
                    line: Some(line),
                    message,
                });
                None
            }
        }
    }

    fn find_key_line(&self, span: std::ops::Range<usize>, key: &str) -> Option<usize> {
        let end = span.end.min(self.text.len());
        let start = span.start.min(end);
        let mut offset = start;
        for line in self.text[start..end].split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(self.line_of(offset));
                }
            }
            offset += line.len();
        }
        None
    }

    fn find_value_line(&self, span: std::ops::Range<usize>, value: &str) -> Option<usize> {
        let end = span.end.min(self.text.len());
        let start = span.start.min(end);
        let within = &self.text[start..end];
        [format!("\"{value}\""), format!("'{value}'")]
            .iter()
            .filter_map(|quoted| within.find(quoted.as_str()))
            .min()
            .map(|at| self.line_of(start + at))
    }

    fn env_name(&mut self, span: std::ops::Range<usize>, name: &str) {
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            self.at(span, format!("`password_env` must be the name of an environment variable (A-Z, 0-9, _), got {name:?}; the password itself never goes in the file"));
        }
    }
}

/// The key a serde message is about: "unknown field `x`", "invalid type … for key `x`".
fn key_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(Path::new("/etc/sportello/p.toml"), text)
    }

    /// The rules a person reads topics by and a clerk's settling teaches are the classify
    /// stage's, else the shipped ones; intake classifies only with a stage.
    #[test]
    fn the_rules_in_force_are_the_classify_stages_else_the_shipped_ones() {
        let mut p = Pipeline::default().without_classify();
        p.stages.push(StageConfig::Classify(ClassifyStageConfig {
            rules: PathBuf::from("/etc/sportello/mine.toml"),
        }));
        assert_eq!(
            p.classify_rules(),
            Some(Path::new("/etc/sportello/mine.toml"))
        );
        assert_eq!(p.rules_in_force(), Path::new("/etc/sportello/mine.toml"));
        let p = p.without_classify();
        assert_eq!(p.classify_rules(), None);
        assert_eq!(
            p.rules_in_force(),
            Path::new(crate::classify::rules::SHIPPED_NAME)
        );
    }

    #[test]
    fn a_modem_and_a_voicemail_box_need_only_their_folder() {
        let p = parse(
            "[[sources]]\nkind = \"sms\"\npath = \"gammu/inbox\"\n\n\
             [[sources]]\nkind = \"voicemail\"\npath = \"/var/spool/asterisk/voicemail/default/800/INBOX\"\n\n\
             [[sinks]]\nkind = \"sms\"\noutbox = \"gammu/outbox\"\n",
        )
        .unwrap();
        let names: Vec<&str> = p.sources.iter().map(SourceConfig::name).collect();
        assert_eq!(names, ["sms", "voicemail"]);
        let SourceConfig::Sms(sms) = &p.sources[0] else {
            panic!("an sms source")
        };
        assert_eq!(sms.path, Path::new("/etc/sportello/gammu/inbox"));
        let SinkConfig::Sms(sink) = &p.sinks[0] else {
            panic!("an sms sink")
        };
        assert_eq!(sink.outbox, Path::new("/etc/sportello/gammu/outbox"));
    }

    #[test]
    fn a_register_with_its_seal_and_folder_resolves_and_half_a_seal_is_refused() {
        let register = "[register]\nipa = \"c_a345\"\naoo = \"AOO_URP\"\n\
                        administration = \"Comune\"\nfiscal_code = \"80002270660\"\n";
        let p = parse(&format!(
            "register_dir = \"registro\"\nseal_key = \"seal.key\"\nseal_cert = \"seal.crt\"\n{register}"
        ))
        .unwrap();
        let r = p.register.expect("the register");
        assert_eq!((r.ipa.as_str(), r.code.as_str()), ("c_a345", "PROTOCOLLO"));
        assert_eq!(
            p.register_dir.unwrap(),
            Path::new("/etc/sportello/registro")
        );
        assert_eq!(p.seal_key.unwrap(), Path::new("/etc/sportello/seal.key"));
        let half = parse(&format!("seal_key = \"seal.key\"\n{register}")).unwrap_err();
        assert!(half.to_string().contains("go together"), "{half}");
        let orphan = parse("register_dir = \"registro\"\n").unwrap_err();
        assert!(
            orphan.to_string().contains("needs a `[register]`"),
            "{orphan}"
        );
    }

    #[test]
    fn a_good_file_resolves_paths_and_defaults() {
        let p = parse(
            r#"
data_dir = "data"
[[sources]]
kind = "folder"
name = "fax"
path = "drop/fax"
channel = "fax"
sender_pattern = '^(?P<fax>\+?\d+)_'
"#,
        )
        .unwrap();
        assert_eq!(
            p.data_dir.as_deref(),
            Some(Path::new("/etc/sportello/data"))
        );
        let SourceConfig::Folder(f) = &p.sources[0] else {
            panic!()
        };
        assert_eq!(f.path, Path::new("/etc/sportello/drop/fax"));
        assert_eq!(f.settle_secs, 3.0);
        assert!(matches!(p.stages[0], StageConfig::Extract(_)));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let err = parse(
            r#"data_dir = "x"
colour = "blue"
workers = 0

[[sources]]
kind = "folder"
name = "fax"
path = "in"
channel = "fax"
setle_secs = 2

[[sources]]
kind = "imap"
name = "mail"
host = "imap.example.org"
username = "urp"
password_env = "secret value"

[[sources]]
kind = "carrier_pigeon"
name = "p"

[[stages]]
kind = "ocr"
languages = ""
"#,
        )
        .unwrap_err();
        let lines: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        let all = lines.join("\n");
        assert!(all.contains("p.toml:2: unknown key `colour`"), "{all}");
        assert!(
            all.contains("p.toml:3: `workers` must be at least 1"),
            "{all}"
        );
        assert!(
            all.contains("p.toml:10: source: unknown field `setle_secs`"),
            "{all}"
        );
        assert!(all.contains("password_env"), "{all}");
        assert!(all.contains("carrier_pigeon"), "{all}");
        assert!(all.contains("`languages` must name"), "{all}");
        assert_eq!(err.0.len(), 6, "{all}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("data_dir = \"x\"\n[[sources]\nkind = 1\n").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, Some(2), "{}", err);
    }
}
