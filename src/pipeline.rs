//! From an arrived item (a dropped file, a saved or fetched message) to a ticket ready to file.
//!
//! The original is stored first, content-addressed; then each configured [`Stage`] does its
//! CPU work on the [`Work`] in order (extract, then OCR and classification as configured). A
//! stage that fails adds an attention reason and the ticket is still filed: nothing is lost.

use crate::classify::Classifier;
use crate::config::{ExtractStageConfig, Pipeline, StageConfig};
use crate::email;
use crate::entities;
use crate::extract::{self, FileType};
use crate::model::{Channel, Sender};
use crate::parse::Unread;
use crate::store::blobs::{sha256_hex, BlobStore};
use crate::store::{now_rfc3339, Intake, NewDocument, NewTicket};
use std::sync::Arc;
use std::time::Duration;

/// Something that arrived and should become (or join) a ticket.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The source it came from (`cli` for `sportello ingest`).
    pub source: String,
    /// Where it was within the source (path, mailbox/UID): with size and mtime it tells a
    /// re-delivered duplicate from the very same item seen again after a crash.
    pub origin: String,
    /// Channel, or None to infer it from the content.
    pub channel: Option<Channel>,
    pub name: String,
    /// Travels to worker processes beside the item's description, not inside it.
    #[serde(skip)]
    pub bytes: Arc<Vec<u8>>,
    pub mtime_ns: Option<i64>,
    /// When the office received it (file time, message date); None: now.
    pub received_at: Option<String>,
    /// What the source knows of the sender (e.g. a fax number from the file name).
    pub sender: Sender,
    /// What the source already found wrong with it (an unreadable part of a text message):
    /// its ticket is flagged with these.
    #[serde(default)]
    pub attention: Vec<String>,
}

/// A ticket whose item has been kept and read, not yet classified nor given its search
/// text: [`Processor::finish`] makes it a ticket to file.
#[derive(Debug)]
pub struct ReadItem(NewTicket);

impl ReadItem {
    /// The identifiers found in what was read.
    pub fn entities(&self) -> &[crate::entities::Entity] {
        &self.0.entities
    }
}

/// A ticket being built by the stages.
#[derive(Debug)]
pub struct Work {
    pub item: Item,
    pub file_type: FileType,
    pub ticket: NewTicket,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifierError),
    #[error("cannot keep {name}: {source}")]
    KeepDocument {
        name: String,
        source: std::io::Error,
    },
}

/// Why a processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Classifier(#[from] crate::classify::ClassifierError),
    #[error("cannot start worker processes: cannot find this program: {0}")]
    Workers(std::io::Error),
    #[error("cannot open the crash memory: {0}")]
    Crashes(#[from] crate::crashes::CrashMemoryError),
}

/// One step of CPU work on a ticket being built. Stages do no network I/O.
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;
    fn process(&self, work: &mut Work, blobs: &BlobStore) -> Result<(), StageError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot keep the original {name}: {source}")]
    KeepOriginal {
        name: String,
        source: std::io::Error,
    },
    /// No worker process could be started: the item is left where it is, for later (a
    /// fault of this machine, not of the item).
    #[error("{0}")]
    NoWorker(String),
}

/// The configured stages, shared by all workers.
pub struct Processor {
    /// The stages that read the item's bytes (extract, OCR), each with its configuration:
    /// they run in a worker process when isolation is on.
    stages: Vec<(Box<dyn Stage>, StageConfig)>,
    /// The classify stage, always the last (the pipeline's checks say so): it runs in
    /// [`Processor::finish`], on the thread that files.
    classify: Option<ClassifyStage>,
    blobs: BlobStore,
    data_dir: std::path::PathBuf,
    pub office: Option<String>,
    /// Acknowledgements by email, when the pipeline sends them.
    ack: Option<crate::config::SmtpAckConfig>,
    /// Acknowledgements by text message, when the pipeline sends them.
    sms_ack: Option<crate::config::SmsSinkConfig>,
    /// Worker processes for the parsing stages; `None`: they run in this process.
    workers: Option<crate::worker::Workers>,
    crashes: crate::crashes::CrashMemory,
}

/// A stage that reads an item's bytes, from its configuration; `None` for the others.
pub fn parse_stage(cfg: &StageConfig) -> Option<Box<dyn Stage>> {
    match cfg {
        StageConfig::Extract(cfg) => Some(Box::new(ExtractStage { cfg: cfg.clone() })),
        StageConfig::Ocr(cfg) => Some(Box::new(OcrStage {
            opts: crate::ocr::OcrOptions {
                languages: cfg.languages.clone(),
                workers: cfg.workers.unwrap_or(0),
                page_timeout_secs: cfg.page_timeout_secs,
                searchable_pdf: true,
            },
            min_confidence: cfg.min_confidence,
        })),
        StageConfig::Classify(_) => None,
    }
}

/// Runs `stages` in order in this process; a stage that fails flags the ticket, the rest
/// run. In a worker process each stage is announced to the runner as it starts.
pub fn run_stages_here(stages: &[Box<dyn Stage>], work: &mut Work, blobs: &BlobStore) {
    for stage in stages {
        // Extraction names its reader as it starts each document.
        if stage.name() != "extract" {
            crate::worker::progress(stage.name());
        }
        run_stage(stage.as_ref(), work, blobs);
    }
}

/// Runs one stage; a stage that fails flags the ticket.
fn run_stage(stage: &dyn Stage, work: &mut Work, blobs: &BlobStore) {
    if let Err(e) = stage.process(work, blobs) {
        work.ticket
            .attention
            .push(format!("{} failed: {e}", stage.name()));
    }
}

/// Whether worker processes are used: the pipeline says so and the environment does not
/// say `SPORTELLO_ISOLATION=off` (benchmarks compare both).
fn isolation_wanted(pipeline: &Pipeline) -> bool {
    let env_off = std::env::var("SPORTELLO_ISOLATION")
        .is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "no" | "false"));
    pipeline.isolation.processes && !env_off
}

impl Processor {
    pub fn new(
        pipeline: &Pipeline,
        blobs: BlobStore,
        data_dir: &std::path::Path,
    ) -> Result<Processor, StartError> {
        let (mut stages, mut classify) = (Vec::new(), None);
        for stage in &pipeline.stages {
            match (parse_stage(stage), stage) {
                (Some(s), _) => stages.push((s, stage.clone())),
                (None, StageConfig::Classify(cfg)) => {
                    let classifier = Classifier::open(&cfg.rules, data_dir)?;
                    classify = Some(ClassifyStage { classifier });
                }
                (None, _) => {}
            }
        }
        let (mut ack, mut sms_ack) = (None, None);
        for sink in &pipeline.sinks {
            match sink {
                crate::config::SinkConfig::SmtpAck(a) => ack = Some(a.clone()),
                crate::config::SinkConfig::Sms(a) => sms_ack = Some(a.clone()),
            }
        }
        let workers = if isolation_wanted(pipeline) {
            Some(
                crate::worker::Workers::new(crate::worker::Limits::new(
                    &pipeline.isolation,
                    &pipeline.stages,
                ))
                .map_err(StartError::Workers)?,
            )
        } else {
            None
        };
        Ok(Processor {
            stages,
            classify,
            blobs,
            data_dir: data_dir.to_path_buf(),
            office: pipeline.office.clone(),
            ack,
            sms_ack,
            workers,
            crashes: crate::crashes::CrashMemory::open(data_dir).map_err(StartError::Crashes)?,
        })
    }

    /// Keeps the original, runs every stage, and returns the ticket to file: [`read`] and
    /// [`finish`] in one, for one item.
    ///
    /// [`read`]: Processor::read
    /// [`finish`]: Processor::finish
    pub fn prepare(&self, item: Item) -> Result<NewTicket, PrepareError> {
        Ok(self.finish(self.read(item)?))
    }

    /// Keeps the original and reads it: the stages that read its bytes, then what comes
    /// of the item alone (its identifiers, its acknowledgement). Preparing threads call
    /// this; the thread that files calls [`Processor::finish`] on what they read.
    pub fn read(&self, item: Item) -> Result<ReadItem, PrepareError> {
        self.run_stages(item, |ticket| {
            ticket.entities = ticket_entities(ticket);
            self.request_ack(ticket);
        })
        .map(ReadItem)
    }

    /// Classifies a ticket read by [`Processor::read`] and writes its search text: the
    /// ticket to file.
    ///
    /// The thread that files calls this for each ticket of a batch in turn, before filing
    /// them. Classified on the preparing threads, between the readings of other items, a
    /// request cost about twice what the same requests cost one after another: the reading
    /// pushed the model's and the rules' tables out of the caches, and each preparing
    /// thread warmed the rules' regexes for itself. Here the classify stage takes about 30%
    /// less CPU in `ingest`. The search text is written here too, first: the words it splits
    /// and stems (the body, each document whole) are still in this thread's memo when the
    /// classifier reads the body and the beginning of each document
    /// ([`crate::textnorm::words`]). Neither reads what the other writes.
    pub fn finish(&self, read: ReadItem) -> NewTicket {
        let mut ticket = read.0;
        ticket.search_text = Some(crate::store::SearchText::of(&ticket));
        if let Some(classify) = &self.classify {
            classify.apply(&mut ticket);
        }
        ticket
    }

    /// Keeps the original, runs the stages that read it, then `finish` on the ticket.
    fn run_stages(
        &self,
        item: Item,
        finish: impl FnOnce(&mut NewTicket),
    ) -> Result<NewTicket, PrepareError> {
        let sha = sha256_hex(&item.bytes);
        let file_type = extract::sniff(&item.bytes, &item.name);
        let channel = item.channel.unwrap_or(match file_type {
            FileType::Email => Channel::Email,
            _ => Channel::Scanner,
        });
        let intake = Intake {
            source: item.source.clone(),
            name: item.origin.clone(),
            sha256: sha.clone(),
            size: item.bytes.len() as u64,
            mtime_ns: item.mtime_ns,
        };
        let received_at = item.received_at.clone().unwrap_or_else(now_rfc3339);
        let mut ticket = NewTicket::arriving(channel, received_at, item.sender.clone(), intake);
        ticket.attention.extend(item.attention.iter().cloned());
        ticket.office = self.office.clone();
        ticket.documents = vec![NewDocument::original(
            item.name.clone(),
            file_type.mime(),
            sha,
            item.bytes.len() as u64,
        )];
        let mut work = Work {
            item,
            file_type,
            ticket,
        };
        // The original is kept on a helper thread while the stages and `finish` run: its
        // wait for the disk (two fsyncs; about 1.7 ms a plain message where measured, three
        // times its reading, classifying and indexing) overlaps them instead of adding to
        // them. It is waited for before the ticket is handed over, so no ticket is filed
        // before its original is durable.
        let kept = self
            .blobs
            .put_in_background(work.ticket.intake.sha256.clone(), work.item.bytes.clone());
        self.apply(&mut work)?;
        finish(&mut work.ticket);
        match kept.wait() {
            Err(source) => Err(PrepareError::KeepOriginal {
                name: work.item.name.clone(),
                source,
            }),
            Ok(()) => Ok(work.ticket),
        }
    }

    /// Runs the stages that read the item, in order; a stage that fails flags the ticket,
    /// the rest run. They run together, guarded by the crash memory, in a worker process
    /// when isolation is on.
    fn apply(&self, work: &mut Work) -> Result<(), PrepareError> {
        if self.stages.is_empty() {
            return Ok(());
        }
        self.parse(work)
    }

    /// Runs parsing stages on the item: not at all when it crashed its readers too often;
    /// in a worker when there are workers, tried once more after a crash (remembered first).
    fn parse(&self, work: &mut Work) -> Result<(), PrepareError> {
        let stages = &self.stages;
        let sha = work.ticket.intake.sha256.clone();
        if let Some(reason) = self.crashes.refused(&sha) {
            flag_unread(&mut work.ticket, reason);
            return Ok(());
        }
        let Some(workers) = &self.workers else {
            let _reading = self.crashes.reading(&sha);
            for (stage, _) in stages {
                run_stage(stage.as_ref(), work, &self.blobs);
            }
            return Ok(());
        };
        let job = crate::worker::ParseJob {
            item: work.item.clone(),
            file_type: work.file_type,
            ticket: work.ticket.clone(),
            stages: stages.iter().map(|(_, c)| c.clone()).collect(),
            data_dir: self.data_dir.clone(),
        };
        loop {
            let result = {
                let _reading = self.crashes.reading(&sha);
                workers.parse(&job, &work.item.bytes)
            };
            let error = match result {
                Ok(ticket) => {
                    work.ticket = ticket;
                    return Ok(());
                }
                Err(crate::worker::WorkerError::Unavailable(e)) => {
                    return Err(PrepareError::NoWorker(e))
                }
                Err(e) => e,
            };
            let reason = format!("{error} on this file");
            if let crate::worker::WorkerError::Crashed { .. } = error {
                let crashes = self.crashes.record(&sha, &reason);
                if crashes < crate::crashes::MAX_CRASHES {
                    tracing::warn!("{reason}: trying it once more in a new worker");
                    continue;
                }
            }
            flag_unread(&mut work.ticket, reason);
            return Ok(());
        }
    }
}

impl Processor {
    /// Page `page` of a stored document as a PNG for the web app's viewer: rendered in a
    /// worker when there are workers (a hostile TIFF must not take the web app down).
    pub fn page_png(
        &self,
        bytes: &Arc<Vec<u8>>,
        file_type: FileType,
        page: u32,
        width: u32,
    ) -> Result<Vec<u8>, crate::ocr::pages::PageImageError> {
        match &self.workers {
            None => crate::ocr::pages::page_png(bytes, file_type, page, width),
            Some(workers) => workers
                .page_png(bytes, file_type, page, width)
                .unwrap_or_else(|e| {
                    Err(crate::ocr::pages::PageImageError::Failed(format!(
                        "{e} on this page"
                    )))
                }),
        }
    }
}

/// Flags a ticket whose item could not be read: the reason on the ticket and on its first
/// document (so a drop folder moves the file to `failed/`); the original is kept as it is.
fn flag_unread(ticket: &mut NewTicket, reason: String) {
    if let Some(first) = ticket.documents.first_mut() {
        first.doc.error.get_or_insert_with(|| reason.clone());
    }
    ticket.attention.push(reason);
}

/// A request registered by a clerk (received by phone or at the desk), with the files the
/// citizen handed over.
#[derive(Debug, Clone)]
pub struct Registration {
    pub channel: Channel,
    pub sender: Sender,
    pub subject: String,
    pub body: String,
    /// Who registered it (recorded as the intake's origin).
    pub clerk: String,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Processor {
    /// A registered request as a ticket: what the clerk typed is kept as the first document
    /// (`richiesta.txt`, the original of the request), each uploaded file goes through the
    /// same extraction and OCR as a file dropped in a folder, then the whole is classified.
    pub fn prepare_registered(&self, reg: Registration) -> Result<NewTicket, PrepareError> {
        let now = now_rfc3339();
        let mut record = format!("Oggetto: {}\n", reg.subject);
        for (label, value) in [
            ("Nome", &reg.sender.name),
            ("Email", &reg.sender.email),
            ("Telefono", &reg.sender.phone),
        ] {
            if let Some(v) = value {
                record.push_str(&format!("{label}: {v}\n"));
            }
        }
        record.push_str(&format!(
            "Canale: {}\nRegistrata da: {} il {now}\n\n{}\n",
            reg.channel.as_str(),
            reg.clerk,
            reg.body
        ));
        let sha = sha256_hex(record.as_bytes());
        self.blobs
            .put_with_sha(&sha, record.as_bytes())
            .map_err(|source| PrepareError::KeepOriginal {
                name: "richiesta.txt".into(),
                source,
            })?;
        let mut first = NewDocument::original(
            "richiesta.txt".into(),
            "text/plain",
            sha.clone(),
            record.len() as u64,
        );
        first.doc.text = reg.body.clone();
        let intake = Intake {
            source: "web".into(),
            name: format!("{}/{}/{now}", reg.channel.as_str(), reg.clerk),
            sha256: sha,
            size: record.len() as u64,
            mtime_ns: None,
        };
        let mut ticket = NewTicket::arriving(reg.channel, now.clone(), reg.sender.clone(), intake);
        ticket.subject = reg.subject.clone();
        ticket.body = reg.body.clone();
        ticket.office = self.office.clone();
        ticket.documents = vec![first];
        for (name, bytes) in reg.files {
            let item = Item {
                source: "web".into(),
                origin: name.clone(),
                channel: Some(reg.channel),
                name,
                bytes: Arc::new(bytes),
                mtime_ns: None,
                received_at: Some(now.clone()),
                sender: reg.sender.clone(),
                attention: Vec::new(),
            };
            let part = self.run_stages(item, |_| {})?;
            ticket.attention.extend(part.attention);
            ticket.documents.extend(part.documents);
        }
        ticket.entities = ticket_entities(&ticket);
        if ticket.channel == Channel::Webform {
            // The citizen filled the form themselves: they get the receipt (a request taken
            // by a clerk at the desk or on the phone does not).
            self.request_web_ack(&mut ticket);
        }
        Ok(self.finish(ReadItem(ticket)))
    }
}

impl Processor {
    /// Asks for an acknowledgement of a message from a citizen, when the pipeline sends them
    /// and nothing says the message must not be answered.
    fn request_ack(&self, t: &mut NewTicket) {
        if t.channel == Channel::Sms {
            return self.request_sms_ack(t);
        }
        let Some(cfg) = &self.ack else { return };
        let to = t.sender.email.clone();
        let Some(mail) = t.mail.as_mut() else { return };
        if mail.no_auto_reply.is_some() {
            return;
        }
        match to {
            Some(to) if to.contains('@') && !email::is_no_reply(&to) => {
                mail.ack = Some(crate::store::AckRequest {
                    to,
                    via: crate::store::Via::Email,
                    language: cfg.language.clone().unwrap_or_else(|| "it".into()),
                    max_per_hour: cfg.max_per_hour.unwrap_or(5),
                    domain: cfg.domain(),
                });
            }
            _ => mail.no_auto_reply = Some("no address to answer".into()),
        }
    }
}

impl Processor {
    /// A request from the web form or the API gets its receipt by email when it gave an
    /// address, and by text message when it gave a mobile number.
    fn request_web_ack(&self, t: &mut NewTicket) {
        let by_sms = self.sms_ack_for(t);
        if t.sender.email.is_some() && self.ack.is_some() {
            t.mail = Some(crate::store::MailFacts::default());
            self.request_ack(t);
            if let (Some(mail), Some(Ok(sms))) = (t.mail.as_mut(), by_sms) {
                if mail.ack.is_some() {
                    mail.also_by_sms = Some(sms);
                } else {
                    // The address may not be answered (a no-reply one): the number may.
                    mail.ack = Some(sms);
                    mail.no_auto_reply = None;
                }
            }
        } else if by_sms.is_some() {
            self.request_sms_ack(t);
        }
    }

    /// A text message is acknowledged by text message, to a mobile number only: a landline,
    /// a short code or a service's name cannot read it, and an answering robot must not be
    /// drawn into a loop (the per-number hourly cap is the store's, as for email).
    fn request_sms_ack(&self, t: &mut NewTicket) {
        let Some(wanted) = self.sms_ack_for(t) else {
            return;
        };
        let mut facts = crate::store::MailFacts::default();
        match wanted {
            Ok(ack) => facts.ack = Some(ack),
            Err(why) => facts.no_auto_reply = Some(why),
        }
        t.mail = Some(facts);
    }

    /// The acknowledgement by text message a ticket's sender may get, or why not; `None`
    /// when the pipeline sends none.
    fn sms_ack_for(&self, t: &NewTicket) -> Option<Result<crate::store::AckRequest, String>> {
        let cfg = self.sms_ack.as_ref()?;
        Some(match t.sender.phone.clone() {
            Some(to) if to.starts_with("+39") && !to.starts_with("+393") => {
                Err(format!("{to} is not a mobile number"))
            }
            Some(to) => Ok(crate::store::AckRequest {
                to,
                via: crate::store::Via::Sms,
                language: cfg.language.clone().unwrap_or_else(|| "it".into()),
                max_per_hour: cfg.max_per_hour.unwrap_or(5),
                domain: "sms".into(),
            }),
            None => Err("no number to answer".into()),
        })
    }
}

/// The identifiers of a ticket: the sender's own address and number first (they link a
/// person's tickets), then what subject, body and documents mention.
pub fn ticket_entities(t: &NewTicket) -> Vec<entities::Entity> {
    use entities::{Entity, Kind};
    let mut all = Vec::new();
    let sender = |kind, value: String, raw: &str| Entity {
        kind,
        value,
        valid: true,
        confidence: 1.0,
        place: "sender".into(),
        raw: raw.to_string(),
    };
    if let Some(e) = &t.sender.email {
        all.push(sender(Kind::Email, e.to_lowercase(), e));
    }
    for n in [&t.sender.fax, &t.sender.phone].into_iter().flatten() {
        if let Some(v) = entities::normalize_phone(n) {
            all.push(sender(Kind::Phone, v, n));
        }
    }
    all.extend(entities::extract(&t.subject, "subject"));
    all.extend(entities::extract(&t.body, "body"));
    for d in &t.documents {
        if !d.doc.text.is_empty() && d.doc.text != t.body {
            all.extend(entities::extract(&d.doc.text, &d.doc.name));
        }
    }
    entities::dedup(all)
}

/// What the classifier reads of a ticket: the body, then the first 4,000 characters of each
/// other document (a letter sent as a PDF, a scanned form) while the text is under 8,000
/// bytes, so a long body leaves room for few of them. `documents` are all of the ticket's,
/// the item itself first (its text is the body).
pub fn classification_text<'a>(body: &str, documents: impl Iterator<Item = &'a str>) -> String {
    let mut text = body.to_string();
    for d in documents.skip(1) {
        if text.len() > 8000 {
            break;
        }
        text.push('\n');
        text.push_str(&d.chars().take(4000).collect::<String>());
    }
    text
}

/// Topic, confidence, reason and office from the rules and the learned model.
pub struct ClassifyStage {
    pub classifier: Classifier,
}

impl ClassifyStage {
    /// Classifies the ticket; a failure flags it, as any stage's does. It runs on the thread
    /// that files, where a panic would end `ingest` or `run` (and a folder watched by a
    /// restarted `run` would meet the same request again): a panic costs the request its
    /// topic only. The ticket is changed only once the classification is whole.
    fn apply(&self, t: &mut NewTicket) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.classify(t)));
        let failed = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the classifier stopped on this request".to_string(),
        };
        t.attention.push(format!("classify failed: {failed}"));
    }

    fn classify(&self, t: &mut NewTicket) -> Result<(), StageError> {
        // The unit tests' stand-in for a request the classifier cannot survive.
        #[cfg(test)]
        if t.subject == tests::PANICS {
            panic!("a request the classifier cannot survive");
        }
        let text = classification_text(&t.body, t.documents.iter().map(|d| d.doc.text.as_str()));
        let c = self.classifier.classify(
            Some(t.channel),
            t.sender.email.as_deref(),
            &t.subject,
            &text,
        )?;
        t.topic = Some(c.topic);
        t.topic_confidence = Some(c.confidence);
        t.topic_reason = Some(c.reason);
        t.secondary_topics = c.secondary;
        t.topic_guesses = c.guesses;
        if c.office.is_some() {
            t.office = c.office;
        }
        Ok(())
    }
}

/// Text extraction: fills the documents' text and the ticket's subject and body.
pub struct ExtractStage {
    pub cfg: ExtractStageConfig,
}

impl Stage for ExtractStage {
    fn name(&self) -> &'static str {
        "extract"
    }

    fn process(&self, work: &mut Work, blobs: &BlobStore) -> Result<(), StageError> {
        if work.file_type == FileType::Email {
            return self.unpack_email(work, blobs);
        }
        if work.ticket.channel == Channel::Fax && work.ticket.sender.fax.is_none() {
            let (bytes, file_type) = (Arc::clone(&work.item.bytes), work.file_type);
            work.ticket.sender.fax =
                crate::parse::untrusted_quick("the fax metadata reader", self.limit(), move || {
                    extract::fax_number_in_metadata(&bytes, file_type)
                })
                .unwrap_or_else(|e| {
                    // The number is a convenience; the document is still read below.
                    tracing::warn!("{}: {e}", work.item.name);
                    None
                });
        }
        let doc = &mut work.ticket.documents[0];
        fill_document(doc, work.item.bytes.clone(), work.file_type, &self.cfg);
        let named_wav = work.item.name.to_ascii_lowercase().ends_with(".wav");
        if named_wav && work.file_type != FileType::Audio && doc.doc.error.is_none() {
            // A recording that is something else: nothing to play, a clerk must look.
            doc.doc.error = Some(format!(
                "not a WAV audio file (the content is {})",
                work.file_type.mime()
            ));
        }
        let text = doc.doc.text.clone();
        let t = &mut work.ticket;
        t.subject = if t.channel == Channel::Sms && !text.trim().is_empty() {
            // A text message has no subject: its opening words stand for one.
            opening_words(&text, 60)
        } else if work.file_type == FileType::Audio {
            voicemail_subject(&t.sender, t.documents[0].doc.duration_secs)
        } else {
            subject_from_letter(&text).unwrap_or_else(|| work.item.name.clone())
        };
        t.body = text;
        attention_for_documents(t);
        Ok(())
    }
}

impl ExtractStage {
    /// The reading time allowed to one message or document.
    fn limit(&self) -> Duration {
        Duration::from_secs_f64(self.cfg.timeout_secs)
    }

    fn unpack_email(&self, work: &mut Work, blobs: &BlobStore) -> Result<(), StageError> {
        let u = match unpack_guarded(&work.item.bytes, self.limit()) {
            Ok(u) => u,
            Err(e) => {
                // Nothing of the message could be had: the original is kept, a clerk reads it.
                let t = &mut work.ticket;
                t.subject = work.item.name.clone();
                t.attention.push(format!("email: {e}"));
                t.documents[0].doc.error = Some(e.to_string());
                return Ok(());
            }
        };
        let t = &mut work.ticket;
        // A certified message is PEC whichever mailbox it reached.
        if u.pec.is_some() {
            t.channel = Channel::Pec;
        } else if t.channel == Channel::Email && is_web_form(&u) {
            t.channel = Channel::Webform;
        }
        t.mail = Some(crate::store::MailFacts {
            message_id: u.message_id.clone(),
            in_reply_to: u.in_reply_to.clone(),
            pec: u.pec.clone(),
            no_auto_reply: u.no_auto_reply.clone(),
            ack: None,
            also_by_sms: None,
        });
        let voicemail = u.voicemail.clone();
        t.subject = u.subject;
        t.body = u.body.clone();
        if voicemail.is_some() {
            // The exchange's address is not the caller's: it would link every call together.
        } else if t.sender.email.is_none() {
            t.sender.email = u
                .reply_to
                .clone()
                .filter(|_| u.from_address.as_deref().is_some_and(email::is_no_reply))
                .or(u.from_address);
        }
        if t.sender.name.is_none() && voicemail.is_none() {
            t.sender.name = u.from_name;
        }
        if work.item.received_at.is_none() {
            if let Some(date) = u.date {
                t.received_at = date;
            }
        }
        // The raw message is the first document; its text is the readable body.
        let raw = &mut t.documents[0];
        raw.doc.name = if work.item.name.to_ascii_lowercase().ends_with(".eml") {
            work.item.name.clone()
        } else {
            format!("{}.eml", work.item.name)
        };
        raw.doc.text = u.body;
        raw.doc.pages = Some(1);
        raw.doc.error = u.damaged.clone();
        raw.page_texts = vec![crate::model::PageText {
            page: 1,
            text: raw.doc.text.clone(),
            ..Default::default()
        }];
        for problem in u.problems.iter().filter(|p| Some(*p) != u.damaged.as_ref()) {
            t.attention.push(format!("email: {problem}"));
        }
        for a in u.attachments {
            let bytes = Arc::new(a.bytes);
            let sha = blobs.put(&bytes).map_err(|e| StageError::KeepDocument {
                name: format!("attachment {}", a.name),
                source: e,
            })?;
            if crate::signed::is_p7m_name(&a.name) || a.mime == "application/pkcs7-mime" {
                let p7m = NewDocument::original(
                    a.name.clone(),
                    "application/pkcs7-mime",
                    sha,
                    bytes.len() as u64,
                );
                self.unwrap_signed(t, p7m, bytes, blobs)?;
                continue;
            }
            let file_type = extract::sniff(&bytes, &a.name);
            let mime = if file_type == FileType::Unknown {
                a.mime
            } else {
                file_type.mime().to_string()
            };
            let mut doc = NewDocument::original(a.name, &mime, sha, bytes.len() as u64);
            match file_type {
                // Nested messages were unpacked by `email::unpack`; keep their body as text.
                FileType::Email => match unpack_guarded(&bytes, self.limit()) {
                    Ok(nested) => {
                        doc.doc.text = nested.body;
                        doc.doc.pages = Some(1);
                    }
                    Err(e) => doc.doc.error = Some(e.to_string()),
                },
                // Unknown binary attachments (office files, archives) are kept as they are.
                FileType::Unknown => {}
                _ => fill_document(&mut doc, bytes, file_type, &self.cfg),
            }
            t.documents.push(doc);
        }
        if let Some(pec) = u.pec.as_ref().filter(|p| p.is_receipt()) {
            // Joins the ticket of the message it is about; only when none holds that message
            // is it filed on its own, and then a clerk should look.
            t.attention.push(format!(
                "PEC receipt ({}) about a message no ticket holds: {}",
                pec.kind,
                pec.msgid.as_deref().unwrap_or("no message id")
            ));
        }
        if let Some(pec) = u.pec.as_ref().filter(|p| !p.is_receipt()) {
            // The certified sender is the address the office must answer.
            if let Some(sender) = &pec.sender {
                t.sender.email = Some(sender.clone());
            }
        }
        if let Some(vm) = voicemail {
            // Asterisk's voicemail-to-email: the same kind of ticket as from the box itself.
            t.channel = Channel::Phone;
            let mut attention = vec![crate::domain::VOICEMAIL_ATTENTION.to_string()];
            t.sender = crate::sources::voicemail::caller(
                vm.caller_name,
                vm.caller_number.as_deref(),
                &mut attention,
            );
            t.attention.extend(attention);
            let duration = t
                .documents
                .iter()
                .find_map(|d| d.doc.duration_secs)
                .or(vm.duration_secs.map(f64::from));
            t.subject = voicemail_subject(&t.sender, duration);
            if let Some(mail) = t.mail.as_mut() {
                mail.no_auto_reply = Some(
                    "a voicemail sent on by the telephone exchange: no address to answer".into(),
                );
            }
            if !t.documents.iter().any(|d| d.doc.mime == "audio/wav") {
                t.attention
                    .push("voicemail: no WAV recording attached".into());
            }
        } else if t.subject.is_empty() && t.body.is_empty() && t.documents.len() == 1 {
            t.attention.push("email: empty message".into());
        }
        attention_for_documents(t);
        Ok(())
    }
}

/// "Messaggio vocale di 23 s da Mario Rossi (+390862123456)": what a clerk sees in the queue
/// before listening.
fn voicemail_subject(sender: &Sender, duration: Option<f64>) -> String {
    let mut s = String::from("Messaggio vocale");
    if let Some(secs) = duration {
        s.push_str(&format!(" di {}", extract::audio::shown_duration(secs)));
    }
    match (&sender.name, &sender.phone) {
        (Some(name), Some(phone)) => s.push_str(&format!(" da {name} ({phone})")),
        (None, Some(phone)) => s.push_str(&format!(" da {phone}")),
        (Some(name), None) => s.push_str(&format!(" da {name}")),
        (None, None) => s.push_str(" da numero nascosto"),
    }
    s
}

/// A message read by the email reader under the guard (see `crate::parse`).
fn unpack_guarded(bytes: &Arc<Vec<u8>>, limit: Duration) -> Result<email::Unpacked, Unread> {
    let bytes = Arc::clone(bytes);
    crate::parse::untrusted_quick("the email reader", limit, move || email::unpack(&bytes))
}

/// A web form's notification: sent from a no-reply address for the citizen (in Reply-To),
/// the body a list of `Field: value` lines.
fn is_web_form(u: &email::Unpacked) -> bool {
    let fields = u
        .body
        .lines()
        .filter(|l| {
            let l = l.trim_start().to_lowercase();
            [
                "nome:",
                "cognome:",
                "e-mail:",
                "email:",
                "telefono:",
                "oggetto:",
                "messaggio:",
            ]
            .iter()
            .any(|f| l.starts_with(f))
        })
        .count();
    u.from_address.as_deref().is_some_and(email::is_no_reply) && u.reply_to.is_some() && fields >= 3
}

impl ExtractStage {
    /// Keeps a `.p7m` and adds the file signed inside it, text extracted, with the signers
    /// recorded on both; a container that cannot be opened flags the ticket, the file kept.
    fn unwrap_signed(
        &self,
        t: &mut NewTicket,
        mut p7m: NewDocument,
        bytes: Arc<Vec<u8>>,
        blobs: &BlobStore,
    ) -> Result<(), StageError> {
        let name = p7m.doc.name.clone();
        let opened =
            crate::parse::untrusted_quick("the signed-file (.p7m) reader", self.limit(), {
                move || crate::signed::unwrap(&bytes).map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| Err(e.to_string()));
        match opened {
            Ok(signed) => {
                let signers = if signed.signers.is_empty() {
                    "unknown signer (no certificate in the file)".to_string()
                } else {
                    signed.signers.join("; ")
                };
                p7m.doc.signed_by = Some(signers.clone());
                p7m.doc.pages = Some(0);
                t.documents.push(p7m);
                let inner_name = crate::signed::inner_name(&name);
                let inner = Arc::new(signed.content);
                let sha = blobs.put(&inner).map_err(|e| StageError::KeepDocument {
                    name: format!("the content of {name}"),
                    source: e,
                })?;
                let file_type = extract::sniff(&inner, &inner_name);
                let mut doc =
                    NewDocument::original(inner_name, file_type.mime(), sha, inner.len() as u64);
                doc.doc.signed_by = Some(signers);
                match file_type {
                    FileType::Unknown => {}
                    FileType::Email => match unpack_guarded(&inner, self.limit()) {
                        Ok(nested) => {
                            doc.doc.text = nested.body;
                            doc.doc.pages = Some(1);
                        }
                        Err(e) => doc.doc.error = Some(e.to_string()),
                    },
                    _ => fill_document(&mut doc, inner, file_type, &self.cfg),
                }
                t.documents.push(doc);
            }
            Err(e) => {
                t.attention
                    .push(format!("{name}: signed file cannot be opened: {e}"));
                p7m.doc.error = Some(format!("signed file cannot be opened: {e}"));
                t.documents.push(p7m);
            }
        }
        Ok(())
    }
}

fn fill_document(
    doc: &mut NewDocument,
    bytes: Arc<Vec<u8>>,
    file_type: FileType,
    cfg: &ExtractStageConfig,
) {
    if file_type == FileType::Audio {
        doc.doc.duration_secs = extract::audio::wav_info(&bytes)
            .ok()
            .map(|i| i.duration_secs);
    }
    let extracted = extract::extract(bytes, file_type, cfg);
    doc.doc.mime = extracted.mime.clone();
    doc.doc.pages = extracted.pages;
    doc.doc.text = extracted.text();
    doc.doc.error = extracted.error.clone();
    doc.doc.pages_needing_ocr = extracted.pages_needing_ocr();
    doc.page_texts = extracted.page_texts;
}

/// Flags the ticket for each document whose text could not be had.
fn attention_for_documents(t: &mut NewTicket) {
    let mut reasons = Vec::new();
    for d in &t.documents {
        if let Some(e) = &d.doc.error {
            reasons.push(format!("{}: {e}", d.doc.name));
        } else if let Some(r) = ocr_needed(d) {
            reasons.push(r);
        }
    }
    t.attention.extend(reasons);
}

fn ocr_needed(d: &NewDocument) -> Option<String> {
    (!d.doc.pages_needing_ocr.is_empty()).then(|| {
        format!(
            "{}: {} page(s) without text, OCR needed",
            d.doc.name,
            d.doc.pages_needing_ocr.len()
        )
    })
}

/// OCR of the pages extraction left without text (faxes, scans, image attachments): their
/// text, confidence and rotation go on the pages, and a searchable PDF of each such document
/// is attached to the ticket as a `digitised` document. The originals are not touched.
pub struct OcrStage {
    pub opts: crate::ocr::OcrOptions,
    /// Pages read with a lower mean word confidence flag the ticket for review.
    pub min_confidence: f32,
}

impl Stage for OcrStage {
    fn name(&self) -> &'static str {
        "ocr"
    }

    fn process(&self, work: &mut Work, blobs: &BlobStore) -> Result<(), StageError> {
        let mut documents = Vec::with_capacity(work.ticket.documents.len() + 1);
        let mut reasons = Vec::new();
        let mut body_changed = false;
        for (i, mut doc) in std::mem::take(&mut work.ticket.documents)
            .into_iter()
            .enumerate()
        {
            let pending = doc.doc.pages_needing_ocr.clone();
            if pending.is_empty() || doc.doc.kind != crate::model::DocumentKind::Original {
                documents.push(doc);
                continue;
            }
            let resolved = ocr_needed(&doc);
            let bytes = if i == 0 {
                Ok(work.item.bytes.clone())
            } else {
                blobs.get(&doc.doc.sha256).map(Arc::new)
            };
            let result = bytes.map_err(|e| e.to_string()).and_then(|bytes| {
                let ft = extract::sniff(&bytes, &doc.doc.name);
                crate::ocr::ocr_document(&bytes, ft, &pending, &self.opts)
            });
            let ocr = match result {
                Ok(ocr) => ocr,
                Err(e) => {
                    reasons.push(format!("{}: OCR failed: {e}", doc.doc.name));
                    if doc.doc.text.trim().is_empty() {
                        // Nothing of it could be read: an unreadable original.
                        doc.doc.error.get_or_insert(format!("OCR failed: {e}"));
                    }
                    documents.push(doc);
                    continue;
                }
            };
            if let Some(r) = resolved {
                work.ticket.attention.retain(|a| *a != r);
            }
            let digitised = self.apply(&mut doc, &ocr, &mut reasons, blobs);
            body_changed |= i == 0 && work.file_type != FileType::Email;
            documents.push(doc);
            documents.extend(digitised);
        }
        work.ticket.documents = documents;
        if body_changed {
            let t = &mut work.ticket;
            let text = t.documents[0].doc.text.clone();
            if let Some(subject) = subject_from_letter(&text) {
                t.subject = subject;
            }
            t.body = text;
        }
        work.ticket.attention.extend(reasons);
        Ok(())
    }
}

impl OcrStage {
    /// Puts the OCR'd pages on the document; returns the searchable PDF to attach.
    fn apply(
        &self,
        doc: &mut NewDocument,
        ocr: &crate::ocr::DocumentOcr,
        reasons: &mut Vec<String>,
        blobs: &BlobStore,
    ) -> Option<NewDocument> {
        let name = doc.doc.name.clone();
        let mut confidences = Vec::new();
        let mut first_error = None;
        for p in &ocr.pages {
            let Some(page) = doc.page_texts.iter_mut().find(|t| t.page == p.page) else {
                continue;
            };
            if let Some(e) = &p.error {
                reasons.push(format!("{name} page {}: OCR failed: {e}", p.page));
                first_error.get_or_insert_with(|| format!("page {}: {e}", p.page));
                continue;
            }
            if let Some(w) = &p.warning {
                reasons.push(format!("{name} page {}: {w}", p.page));
            }
            page.text = p.text.clone();
            page.needs_ocr = false;
            page.ocr_confidence = Some(p.confidence);
            page.rotation = Some(p.rotation);
            confidences.push(p.confidence);
            if p.text.trim().is_empty() {
                reasons.push(format!(
                    "{name} page {}: OCR found no text (blank page?)",
                    p.page
                ));
            } else if p.confidence < self.min_confidence {
                reasons.push(format!(
                    "{name} page {}: OCR confidence {:.0} below {:.0}, check the text",
                    p.page, p.confidence, self.min_confidence
                ));
            }
        }
        doc.doc.pages_needing_ocr = doc
            .page_texts
            .iter()
            .filter(|p| p.needs_ocr)
            .map(|p| p.page)
            .collect();
        if confidences.is_empty() && doc.doc.text.trim().is_empty() {
            // No page of it could be read (an image that cannot be decoded, or refused).
            if let Some(e) = first_error {
                doc.doc.error.get_or_insert(e);
            }
        }
        if !confidences.is_empty() {
            doc.doc.ocr = true;
            doc.doc.ocr_confidence =
                Some(confidences.iter().sum::<f32>() / confidences.len() as f32);
            doc.doc.text = extract::join_pages(&doc.page_texts);
        }
        if let Some(e) = &ocr.pdf_error {
            reasons.push(format!("{name}: searchable PDF not made: {e}"));
        }
        let pdf = ocr.pdf.as_ref()?;
        let sha = match blobs.put(pdf) {
            Ok(sha) => sha,
            Err(e) => {
                reasons.push(format!("{name}: cannot keep the searchable PDF: {e}"));
                return None;
            }
        };
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let mut digitised = NewDocument::original(
            format!("{stem}.ocr.pdf"),
            "application/pdf",
            sha,
            pdf.len() as u64,
        );
        digitised.doc.kind = crate::model::DocumentKind::Digitised;
        digitised.doc.pages = doc.doc.pages;
        Some(digitised)
    }
}

/// The first words of `text` up to about `max` characters, on one line, with "…" when cut.
pub fn opening_words(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    // End on a whole word when there is one to end on.
    let head = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", head.trim_end_matches([',', ';', ':', '.']))
}

/// The "Oggetto:" line of a letter or fax, the subject a clerk would write down.
pub fn subject_from_letter(text: &str) -> Option<String> {
    for line in text.lines().take(80) {
        let trimmed = line.trim();
        let lower = trimmed.to_lowercase();
        for label in ["oggetto", "ogg.", "subject", "re"] {
            if let Some(rest) = lower.strip_prefix(label) {
                let rest_trim = rest.trim_start();
                if let Some(after) = rest_trim.strip_prefix(':') {
                    let start = trimmed.len() - after.len();
                    let subject = trimmed[start..].trim();
                    if !subject.is_empty() {
                        return Some(subject.chars().take(200).collect());
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subject on which the classify stage panics (see `ClassifyStage::classify`).
    pub(super) const PANICS: &str = "\u{0}classify panics\u{0}";

    /// The default pipeline (shipped rules), reading in this process.
    fn in_process(dir: &std::path::Path) -> Processor {
        let mut pipeline = Pipeline::default();
        pipeline.isolation.processes = false;
        let blobs = crate::store::blobs::BlobStore::new(dir);
        Processor::new(&pipeline, blobs, dir).unwrap()
    }

    fn item(name: &str, bytes: &[u8]) -> Item {
        Item {
            source: "test".into(),
            origin: name.into(),
            channel: None,
            name: name.into(),
            bytes: Arc::new(bytes.to_vec()),
            mtime_ns: None,
            received_at: None,
            sender: Sender::default(),
            attention: Vec::new(),
        }
    }

    #[test]
    fn finds_the_oggetto_line() {
        let text =
            "Spett.le Comune\n\nOggetto: richiesta allaccio gas MAP Paganica\n\nIl sottoscritto...";
        assert_eq!(
            subject_from_letter(text).as_deref(),
            Some("richiesta allaccio gas MAP Paganica")
        );
        assert_eq!(subject_from_letter("nessun oggetto qui"), None);
    }

    #[test]
    fn a_read_item_is_classified_and_indexed_when_finished_as_prepare_does_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let processor = in_process(dir.path());
        let item = item(
            "gas.eml",
            b"From: Anna <anna@example.it>\r\nSubject: Allaccio del gas\r\n\r\n\
              Chiedo l'allaccio del gas al modulo abitativo MAP di Paganica, tel. 0862 123456.\r\n",
        );
        let read = processor.read(item.clone()).unwrap();
        // Read: the item's text and identifiers, no topic and no search text yet.
        assert!(
            read.0.body.contains("allaccio del gas"),
            "{:?}",
            read.0.body
        );
        assert!(!read.0.entities.is_empty());
        assert_eq!((&read.0.topic, read.0.search_text.is_none()), (&None, true));
        let finished = processor.finish(read);
        let whole = processor.prepare(item).unwrap();
        assert!(finished.topic.is_some(), "classified when finished");
        assert!(finished.attention.is_empty(), "{:?}", finished.attention);
        for t in [&finished, &whole] {
            assert!(t.search_text.is_some());
        }
        let view = |t: &NewTicket| {
            (
                t.topic.clone(),
                t.topic_confidence,
                t.topic_reason.clone(),
                t.office.clone(),
                serde_json::to_string(&t.search_text).unwrap(),
                t.entities.len(),
            )
        };
        assert_eq!(view(&finished), view(&whole));
    }

    #[test]
    fn a_request_the_classifier_panics_on_is_flagged_and_still_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let processor = in_process(dir.path());
        let mut read = processor
            .read(item("x.txt", b"Buongiorno, chiedo informazioni."))
            .unwrap();
        read.0.subject = PANICS.into();
        let t = processor.finish(read);
        assert_eq!(t.topic, None);
        assert_eq!(
            t.attention,
            vec!["classify failed: the classifier stopped on this request".to_string()]
        );
        assert!(
            t.search_text.is_some(),
            "the rest of the ticket is finished"
        );
    }

    #[test]
    fn recognises_no_reply_addresses() {
        assert!(email::is_no_reply("noreply@comune.laquila.it"));
        assert!(email::is_no_reply("no-reply@x.it"));
        assert!(!email::is_no_reply("mario@x.it"));
    }
}
