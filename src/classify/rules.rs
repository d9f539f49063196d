//! Admin rules (`pipelines/rules.toml`): the taxonomy (topic, Italian label, office) and
//! weighted rules — terms and phrases, regexes, negative terms, conditions on channel, sender
//! domain and subject. Terms are folded and stemmed like the request, so *allacci*,
//! *allaccio* and *allacciamento* meet. A file with problems is refused whole, with every
//! problem and its line.

use super::features::{ignored_words, stems, word_id, PhraseIndex, Words};
use super::model::Example;
use crate::config::{Checker, ConfigError, ConfigProblem};
use crate::model::Channel;
use serde::Deserialize;
use std::collections::HashMap;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    pub label: String,
    pub office: String,
    /// The topic's place in the administration's titolario (e.g. `6.3`): the *classifica*
    /// of its registrations in the segnatura and the daily register.
    #[serde(default)]
    pub classifica: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    topic: String,
    #[serde(default = "one")]
    weight: f32,
    /// Fires when any of these terms or phrases is present.
    #[serde(default)]
    any: Vec<String>,
    /// …and at least one of these too (e.g. a fault *and* a temporary dwelling).
    #[serde(default)]
    and_any: Vec<String>,
    /// …and all of these.
    #[serde(default)]
    all: Vec<String>,
    /// Does not fire when any of these is present.
    #[serde(default)]
    none: Vec<String>,
    #[serde(default)]
    regex: Vec<String>,
    #[serde(default)]
    channel: Vec<Channel>,
    #[serde(default)]
    sender_domain: Vec<String>,
    /// Terms must be in the subject rather than anywhere.
    #[serde(default)]
    in_subject: bool,
}

fn one() -> f32 {
    1.0
}

/// A term as the matcher sees it: the id of its pattern (its stems, space-joined with spaces
/// around) in the rules' automaton.
#[derive(Debug, Clone)]
struct Term {
    written: String,
    id: usize,
}

/// Every distinct term pattern of a rules file, matched all at once per request.
#[derive(Default)]
struct Patterns {
    ids: HashMap<String, usize>,
    list: Vec<String>,
}

impl Patterns {
    /// The term `written`, whose meaningful words stem to `s`.
    fn term(&mut self, written: &str, s: &[String]) -> Option<Term> {
        if s.is_empty() {
            return None;
        }
        let pattern = format!(" {} ", s.join(" "));
        let next = self.list.len();
        let id = *self.ids.entry(pattern.clone()).or_insert_with(|| {
            self.list.push(pattern);
            next
        });
        Some(Term {
            written: written.to_string(),
            id,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub topic: String,
    pub weight: f32,
    any: Vec<Term>,
    /// The patterns of `any` and `all`, each once.
    distinct: Vec<usize>,
    and_any: Vec<Term>,
    all: Vec<Term>,
    none: Vec<Term>,
    regex: Vec<regex_automata::meta::Regex>,
    channel: Vec<Channel>,
    sender_domain: Vec<String>,
    in_subject: bool,
}

/// What the rules see of a request.
pub struct Request<'a> {
    pub channel: Option<Channel>,
    pub sender_email: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Which term patterns a request holds, found once for all rules.
pub struct Prepared<'a> {
    request: &'a Request<'a>,
    /// The patterns found anywhere, each once: only rules holding one of them can fire.
    hits: Vec<usize>,
    /// Per pattern, where it was found: [`ANYWHERE`], [`IN_SUBJECT`], [`IN_ASK`],
    /// [`IN_FOCUS`] bits. One byte a pattern, where a list of flags for each place was four
    /// allocations zeroed for every request.
    found: Vec<u8>,
    /// Whether the request has a focus (a turn "quello che chiedo è…" in its body).
    has_focus: bool,
}

/// Where a pattern was found ([`Prepared::found`]).
const ANYWHERE: u8 = 1;
/// Within the subject.
const IN_SUBJECT: u8 = 2;
/// Within one asking sentence of the body.
const IN_ASK: u8 = 4;
/// After the body's turn to the point.
const IN_FOCUS: u8 = 8;

impl<'a> Prepared<'a> {
    pub fn new(request: &'a Request<'a>, words: &Words, rules: &Rules) -> Prepared<'a> {
        // Subject and body as one sequence of word ids, as the rules read them.
        let subject_len = words.subject_ids.len();
        let total = subject_len + words.body_ids.len();
        let id_at = |i: usize| {
            if i < subject_len {
                words.subject_ids[i]
            } else {
                words.body_ids[i - subject_len]
            }
        };
        // Where the focus starts (after a turn "quello che chiedo è…"), in the sequence.
        let focus_from = words.focus.as_ref().map(|f| total - f.len());
        let mut found = vec![0u8; rules.pattern_count];
        // Sized for the usual request: it grew two or three times for nearly every one.
        let mut hits = Vec::with_capacity(16);
        rules.patterns.find(total, id_at, |start, end, id| {
            if found[id] == 0 {
                hits.push(id);
            }
            let mut places = ANYWHERE;
            // Within the subject; else within one asking sentence of the body.
            if end <= subject_len {
                places |= IN_SUBJECT;
            } else if start >= subject_len
                && words.within_asking(start - subject_len..end - subject_len)
            {
                places |= IN_ASK;
            }
            if focus_from.is_some_and(|from| start >= from) {
                places |= IN_FOCUS;
            }
            found[id] |= places;
        });
        Prepared {
            request,
            hits,
            found,
            has_focus: focus_from.is_some(),
        }
    }

    /// Whether pattern `id` was found in any of `places`.
    fn found_in(&self, id: usize, places: u8) -> bool {
        self.found[id] & places != 0
    }

    /// For callers that have not stemmed the request yet.
    pub fn of(request: &'a Request<'a>, rules: &Rules) -> Prepared<'a> {
        Prepared::new(request, &Words::of(request.subject, request.body), rules)
    }
}

/// A rule that fired, and the terms that made it fire.
#[derive(Debug, Clone)]
pub struct Fired<'a> {
    pub rule: &'a str,
    pub topic: &'a str,
    pub weight: f32,
    /// The rule's terms that matched, and what its regexes found in the request. Kept in
    /// place for the usual few: a dozen rules fire on a request, and two or three lists
    /// allocated for each cost about 1,000 instructions a request.
    pub terms: FoundTerms<'a>,
}

/// What made a rule fire (see [`Fired::terms`]).
pub type FoundTerms<'a> = smallvec::SmallVec<[&'a str; 4]>;

impl Rule {
    pub fn eval<'a>(&'a self, p: &Prepared<'a>) -> Option<Fired<'a>> {
        let r = p.request;
        if !self.channel.is_empty() && !r.channel.is_some_and(|c| self.channel.contains(&c)) {
            return None;
        }
        if !self.sender_domain.is_empty() {
            let domain = r
                .sender_email
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase());
            let ok = domain.is_some_and(|d| {
                self.sender_domain
                    .iter()
                    .any(|want| d == *want || d.ends_with(&format!(".{want}")))
            });
            if !ok {
                return None;
            }
        }
        let hay = if self.in_subject {
            IN_SUBJECT
        } else {
            ANYWHERE
        };
        // Most rules do not fire on a request: find that out before collecting anything.
        let hit = |t: &Term| p.found_in(t.id, hay);
        if (!self.any.is_empty() && !self.any.iter().any(hit))
            || (!self.and_any.is_empty() && !self.and_any.iter().any(hit))
            || !self.all.iter().all(hit)
            || self.none.iter().any(|t| p.found_in(t.id, ANYWHERE))
        {
            return None;
        }
        // One written form per pattern found: "sopralluogo, sopralluoghi" are one finding.
        let mut found: smallvec::SmallVec<[usize; 8]> = smallvec::SmallVec::new();
        let mut terms = FoundTerms::new();
        for t in self.any.iter().chain(&self.and_any).chain(&self.all) {
            if hit(t) && !found.contains(&t.id) {
                found.push(t.id);
                terms.push(t.written.as_str());
            }
        }
        if !self.regex.is_empty() {
            let texts: &[&'a str] = if self.in_subject {
                &[r.subject]
            } else {
                &[r.subject, r.body]
            };
            let before = terms.len();
            terms.extend(self.regex.iter().filter_map(|re| {
                texts
                    .iter()
                    .find_map(|t| re.find(*t).map(|m| &t[m.range()]))
            }));
            if terms.len() == before {
                return None;
            }
        }
        // The subject is the writer's own summary, and the sentences that ask for something
        // say what the office must do: a rule whose terms are there counts more.
        let terms_where = |places: u8| {
            !self.in_subject
                && self
                    .any
                    .iter()
                    .chain(&self.all)
                    .any(|t| p.found_in(t.id, places))
        };
        let boost = match (terms_where(IN_SUBJECT), terms_where(IN_ASK)) {
            (true, true) => EMPHASIS * EMPHASIS,
            (true, false) => EMPHASIS,
            (false, true) => EMPHASIS,
            (false, false) => 1.0,
        };
        // After a turn ("quello che chiedo è…"), what came before is background: a rule
        // found only there counts less.
        let background = if p.has_focus
            && !self.in_subject
            && (!self.any.is_empty() || !self.all.is_empty())
            && !terms_where(IN_FOCUS)
        {
            BACKGROUND
        } else {
            1.0
        };
        // Evidence adds up: a letter naming three of a topic's things is surer than one
        // naming one, but a rule never counts more than three times its weight.
        let distinct = self
            .distinct
            .iter()
            .filter(|&&id| p.found_in(id, hay))
            .count()
            .max(1);
        let breadth = (1.0 + BREADTH * (distinct - 1) as f32).min(3.0);
        let weight = if self.weight > 0.0 {
            self.weight * boost * background * breadth
        } else {
            self.weight
        };
        Some(Fired {
            rule: &self.name,
            topic: &self.topic,
            weight,
            terms,
        })
    }
}

fn default_abstain() -> f32 {
    0.5
}
fn default_margin() -> f32 {
    0.0
}
fn default_secondary() -> f32 {
    0.2
}
fn default_decisive() -> f32 {
    10.0
}
fn default_retrain_after() -> u32 {
    10
}

/// A validated rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The patterns as word ids: a request's words are looked up once each.
    patterns: Arc<PhraseIndex>,
    pattern_count: usize,
    /// Per pattern, the rules that need it (in `any` or `all`), by position.
    by_pattern: Vec<Vec<usize>>,
    /// Rules that need no pattern (regexes, conditions alone): tried on every request.
    always: Vec<usize>,
    pub file: PathBuf,
    /// Below this confidence a ticket goes to `unsorted` for a clerk.
    pub abstain_below: f32,
    /// When the best topic leads the runner-up by less than this (in probability), the
    /// request is a toss-up between them: `unsorted` too.
    pub abstain_margin: f32,
    /// Other topics at least this likely are kept as secondary topics.
    pub secondary_above: f32,
    /// A rule at least this heavy decides alone.
    pub decisive_weight: f32,
    /// Retrain the model after this many tickets were settled (corrected, confirmed or
    /// closed with their topic) since the last training; 0: only by `sportello model train`.
    pub retrain_after: u32,
    /// With a calibrated model, answer only where the out-of-fold predictions were right at
    /// least this often; below that confidence a ticket is `unsorted`.
    pub target_precision: Option<f32>,
    /// SHA-256 of labelled files these rules were written while reading: scoring the rules on
    /// them measures the rules' memory, and `rules test` / `model eval` say so.
    pub seen_labels: Vec<String>,
    /// Labelled requests shipped with the rules (`examples = "FILE"`): every training learns
    /// from them beside the office's own history, and never calibrates on them.
    pub examples: Arc<Examples>,
    pub topics: BTreeMap<String, TopicDef>,
    pub rules: Vec<Rule>,
}

pub const UNSORTED: &str = "unsorted";

/// The name that stands for the rules shipped in the binary (`pipelines/rules.toml` as it
/// was when built): what `ingest`, `serve` and the CLI use when no pipeline names a rules
/// file, so a request is classified out of the box, as `make demo` does.
pub const SHIPPED_NAME: &str = "(shipped rules)";
const SHIPPED: &str = include_str!("../../pipelines/rules.toml");
/// The shipped rules' examples file, as named in them.
const SHIPPED_EXAMPLES_NAME: &str = "examples.jsonl";
const SHIPPED_EXAMPLES: &str = include_str!("../../pipelines/examples.jsonl");

/// The labelled requests a rules file ships with.
#[derive(Debug, Default)]
pub struct Examples {
    /// The file read (none for the shipped rules' embedded examples).
    pub file: Option<PathBuf>,
    pub records: Vec<Example>,
    /// SHA-256 of each record's subject and body: scoring records the model learned from
    /// measures its memory, and the commands that score say so.
    /// Made when first asked for: only the commands that score need them, and hashing every
    /// example was a sixth of loading the rules.
    fingerprints: std::sync::OnceLock<HashSet<[u8; 32]>>,
}

impl Examples {
    fn fingerprint(e: &Example) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(e.subject.trim().as_bytes());
        h.update([0]);
        h.update(e.body.trim().as_bytes());
        h.finalize().into()
    }

    /// Whether this request (by its subject and body) is one of the examples.
    pub fn contain(&self, e: &Example) -> bool {
        let fingerprints = self
            .fingerprints
            .get_or_init(|| self.records.iter().map(Examples::fingerprint).collect());
        !fingerprints.is_empty() && fingerprints.contains(&Examples::fingerprint(e))
    }

    /// Reads `name` (relative to the rules file), every bad line reported with its number.
    fn read(
        rules_file: &Path,
        name: &str,
        topics: &BTreeMap<String, TopicDef>,
        cx: &mut Checker,
    ) -> Examples {
        let (file, text) = if rules_file == Path::new(SHIPPED_NAME) && name == SHIPPED_EXAMPLES_NAME
        {
            (None, SHIPPED_EXAMPLES.to_string())
        } else {
            let file = rules_file.parent().unwrap_or(Path::new(".")).join(name);
            match std::fs::read_to_string(&file) {
                Ok(t) => (Some(file), t),
                Err(e) => {
                    cx.problems.push(ConfigProblem {
                        file: rules_file.to_path_buf(),
                        line: None,
                        message: format!("`examples`: cannot read {}: {e}", file.display()),
                    });
                    return Examples::default();
                }
            }
        };
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let problem = match serde_json::from_str::<Example>(line) {
                Ok(e) if topics.contains_key(&e.topic) => {
                    records.push(e);
                    continue;
                }
                Ok(e) => format!("topic `{}` is not one of these rules' topics", e.topic),
                Err(e) => e.to_string(),
            };
            cx.problems.push(ConfigProblem {
                file: file.clone().unwrap_or_else(|| PathBuf::from(name)),
                line: Some(i + 1),
                message: format!("example: {problem}"),
            });
        }
        Examples {
            file,
            records,
            fingerprints: Default::default(),
        }
    }
}

/// Weight multiplier for a rule whose terms appear in the subject or in a sentence that asks.
const EMPHASIS: f32 = 1.5;

/// Words of nearly every letter to the office, on any topic: a one-word term sharing a stem
/// with one of them is reported by `rules test` (see [`Rules::everyday_matches`]).
const EVERYDAY: &[&str] = &[
    "sindaco",
    "saluti",
    "saluto",
    "salute",
    "faccio",
    "facciamo",
    "presente",
    "cittadino",
    "cittadini",
    "cittadina",
    "ricevuto",
    "ricevere",
    "rifare",
    "vissuto",
    "misure",
    "corrente",
    "lucia",
    "fine",
    "visto",
    "chi",
    "anzi",
    "materia",
    "testo",
    "pubblico",
    "pubblica",
    "grazie",
    "attesa",
    "domanda",
    "richiesta",
    "ufficio",
    "comune",
    "casa",
    "famiglia",
    "mese",
    "giorno",
    "anni",
    "signora",
    "signore",
    "moglie",
    "marito",
    "via",
    "numero",
    "prego",
    "cordiali",
    "distinti",
    "gentile",
    "egregio",
    "spettabile",
    "sottoscritto",
    "sottoscritta",
    "allegato",
    "allego",
    "copia",
    "documento",
    "ancora",
    "sempre",
    "quando",
    "posso",
    "vorrei",
    "chiedo",
    "sapere",
    "avere",
    "fare",
    "dire",
    "tempo",
    "volta",
    "parte",
    "modo",
    "caso",
    "cosa",
    "nessuno",
    "niente",
    "tutto",
    "stato",
    "stata",
    "scrivo",
    "risposta",
    "informare",
    "persona",
    "problema",
    "possibile",
    "grave",
    "urgente",
    "settimana",
    "pericolo",
    "pericoloso",
    "pericolosa",
    "strada",
    "sera",
    "mattina",
    "notte",
    "buio",
    "madre",
    "padre",
    "anziano",
    "anziana",
    "lavoro",
    "lavorare",
    "paura",
    "chiamato",
    "telefonato",
    "scritto",
    "mandato",
    "detto",
    "dato",
    "aspetto",
    "aspettiamo",
    "capire",
    "trovare",
    "trovato",
    "vivo",
    "abito",
    "abitiamo",
    "rimasto",
    "rimasta",
    "nuovo",
    "vecchio",
    "piccolo",
    "grande",
    "bene",
    "male",
];

/// Weight added (as a share of the rule's) by each further distinct term of a rule found.
const BREADTH: f32 = 0.5;

/// Weight multiplier for a rule whose terms appear only before the letter turns to its point.
const BACKGROUND: f32 = 0.5;

impl Rules {
    /// What a person reads for topic `key`: its label, or the key itself when the rules do
    /// not have it (`unsorted`, a topic since removed).
    pub fn label<'a>(&'a self, key: &'a str) -> &'a str {
        self.topics.get(key).map_or(key, |d| d.label.as_str())
    }

    /// One-word terms that also match a word nearly every letter has, whatever its topic
    /// (a stem shared: "sindacato" and "Sindaco"): (rule, term, everyday word). Such a term
    /// fires on requests it has nothing to do with.
    pub fn everyday_matches(&self) -> Vec<(&str, &str, &'static str)> {
        let everyday: Vec<(&'static str, Vec<String>)> =
            EVERYDAY.iter().map(|w| (*w, stems(w))).collect();
        let mut found = Vec::new();
        // A rule with a regex fires only where the regex matches too: its terms only gate it.
        for r in self.rules.iter().filter(|r| r.regex.is_empty()) {
            for t in r.any.iter().chain(&r.and_any).chain(&r.all) {
                let term = stems(&t.written);
                let [stem] = term.as_slice() else { continue };
                let written = crate::textnorm::fold(&t.written);
                for (word, s) in &everyday {
                    if s.len() == 1 && s[0] == *stem && written != crate::textnorm::fold(word) {
                        found.push((r.name.as_str(), t.written.as_str(), *word));
                    }
                }
            }
        }
        found
    }

    /// The rules that fire on a request, with their positions, in file order. Only rules
    /// holding a pattern the request has (or needing none) are tried: a request names a
    /// handful of the file's hundreds of terms.
    pub fn fired<'a>(&'a self, p: &Prepared<'a>) -> Vec<(usize, Fired<'a>)> {
        // Sized for the usual request (a rule named by two patterns is listed twice until
        // the dedup): these grew a few times for every request.
        let mut tried: Vec<usize> = Vec::with_capacity(self.rules.len());
        tried.extend_from_slice(&self.always);
        for &id in &p.hits {
            tried.extend_from_slice(&self.by_pattern[id]);
        }
        tried.sort_unstable();
        tried.dedup();
        let mut fired = Vec::with_capacity(tried.len());
        fired.extend(
            tried
                .into_iter()
                .filter_map(|i| self.rules[i].eval(p).map(|f| (i, f))),
        );
        fired
    }

    /// The text of a rules file (the shipped rules' own for [`SHIPPED_NAME`]).
    pub fn text_of(path: &Path) -> std::io::Result<String> {
        if path == Path::new(SHIPPED_NAME) {
            return Ok(SHIPPED.to_string());
        }
        std::fs::read_to_string(path)
    }

    /// The rules in `path`. A command often loads the same file twice (to check whether the
    /// model needs retraining, then to classify); the last file parsed is remembered with
    /// its text, so the second load of an unchanged file is a copy (its matcher and regexes
    /// are shared, not rebuilt).
    ///
    /// The examples file counts too (by its modification time and size): an edit of the
    /// examples alone reaches the next training of a long-running `serve` or `run`.
    pub fn load(path: &Path) -> Result<Rules, ConfigError> {
        type Stamp = Option<(std::time::SystemTime, u64)>;
        static LAST: std::sync::Mutex<Option<(PathBuf, String, Stamp, Rules)>> =
            std::sync::Mutex::new(None);
        let stamp = |rules: &Rules| -> Stamp {
            let file = rules.examples.file.as_ref()?;
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        let text = if path == Path::new(SHIPPED_NAME) {
            SHIPPED.to_string()
        } else {
            crate::config::read_config_file(path)?
        };
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, t, examples, rules)) = last.as_ref() {
            if p == path && *t == text && *examples == stamp(rules) {
                return Ok(rules.clone());
            }
        }
        let rules = Rules::parse(path, &text)?;
        *last = Some((path.to_path_buf(), text, stamp(&rules), rules.clone()));
        Ok(rules)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Rules, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            #[serde(default = "default_abstain")]
            abstain_below: f32,
            #[serde(default = "default_margin")]
            abstain_margin: f32,
            #[serde(default = "default_secondary")]
            secondary_above: f32,
            #[serde(default = "default_decisive")]
            decisive_weight: f32,
            #[serde(default = "default_retrain_after")]
            retrain_after: u32,
            #[serde(default)]
            target_precision: Option<f32>,
            #[serde(default)]
            seen_labels: Vec<String>,
            #[serde(default)]
            examples: Option<String>,
            /// Accepted from older files; the model now learns how much each rule counts.
            #[serde(default)]
            #[allow(dead_code)]
            model_weight: Option<f32>,
            #[serde(default)]
            topics: BTreeMap<String, Spanned<toml::Value>>,
            #[serde(default)]
            rules: Vec<Spanned<toml::Value>>,
        }
        let mut cx = Checker {
            file: path.to_path_buf(),
            text,
            problems: Vec::new(),
        };
        let top: Top = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                cx.push_toml(&e, None);
                return Err(ConfigError(cx.problems));
            }
        };
        let mut topics = BTreeMap::new();
        for (name, value) in &top.topics {
            if name == UNSORTED {
                cx.at(
                    value.span(),
                    format!(
                        "`{UNSORTED}` is where abstentions go; it cannot be a topic of its own"
                    ),
                );
            }
            if let Some(t) = cx.element::<TopicDef>("topic", value) {
                topics.insert(name.clone(), t);
            }
        }
        if topics.is_empty() {
            cx.problems.push(ConfigProblem {
                file: path.to_path_buf(),
                line: None,
                message: "no [topics.…] defined".into(),
            });
        }
        for (name, value) in [
            ("abstain_below", top.abstain_below),
            ("abstain_margin", top.abstain_margin),
            ("target_precision", top.target_precision.unwrap_or(0.5)),
        ] {
            if !(0.0..=1.0).contains(&value) {
                cx.problems.push(ConfigProblem {
                    file: path.to_path_buf(),
                    line: None,
                    message: format!("`{name}` must be between 0 and 1"),
                });
            }
        }
        let examples = match &top.examples {
            Some(name) => Examples::read(path, name, &topics, &mut cx),
            None => Examples::default(),
        };
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        let mut patterns = Patterns::default();
        for element in &top.rules {
            let Some(raw) = cx.element::<RawRule>("rule", element) else {
                continue;
            };
            let span = element.span();
            if !names.insert(raw.name.clone()) {
                cx.at(
                    span.clone(),
                    format!("rule name `{}` is used twice", raw.name),
                );
            }
            rules.push(compile_rule(raw, span, &topics, &mut cx, &mut patterns));
        }
        if !cx.problems.is_empty() {
            return Err(ConfigError(cx.problems));
        }
        let index = PhraseIndex::new(
            patterns
                .list
                .iter()
                .map(|p| p.split_whitespace().map(word_id).collect()),
        );
        let mut by_pattern = vec![Vec::new(); patterns.list.len()];
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.distinct.is_empty() {
                always.push(i);
            }
            for &id in &r.distinct {
                by_pattern[id].push(i);
            }
        }
        Ok(Rules {
            patterns: Arc::new(index),
            pattern_count: patterns.list.len(),
            by_pattern,
            always,
            file: path.to_path_buf(),
            abstain_below: top.abstain_below,
            abstain_margin: top.abstain_margin,
            secondary_above: top.secondary_above,
            decisive_weight: top.decisive_weight,
            retrain_after: top.retrain_after,
            target_precision: top.target_precision,
            seen_labels: top
                .seen_labels
                .iter()
                .map(|s| s.trim_start_matches("sha256:").to_ascii_lowercase())
                .collect(),
            examples: Arc::new(examples),
            topics,
            rules,
        })
    }
}

/// A rule's regex, as `regex::Regex::new` reads it (the same syntax and matches), without
/// the full DFA it builds for a small pattern when this binary has `regex-automata`'s
/// `dfa-build` (which `tracing-subscriber`'s filter turns on): building those DFAs was about
/// half of compiling the shipped rules' regexes (7M of 15M instructions, at every command's
/// start), for searches of a request or two that the lazy DFA does as well.
fn rule_regex(pattern: &str) -> Result<regex_automata::meta::Regex, String> {
    regex_automata::meta::Regex::builder()
        .configure(regex_automata::meta::Regex::config().dfa(false))
        .build(pattern)
        // What `regex::Regex::new` says: the pattern with the place marked, or the limit.
        .map_err(|e| match (e.size_limit(), e.syntax_error()) {
            (Some(limit), _) => format!("Compiled regex exceeds size limit of {limit} bytes."),
            (None, Some(syntax)) => syntax.to_string(),
            (None, None) => e.to_string(),
        })
}

/// One rule's terms and regexes compiled, every problem reported with the rule's line.
fn compile_rule(
    raw: RawRule,
    span: std::ops::Range<usize>,
    topics: &BTreeMap<String, TopicDef>,
    cx: &mut Checker,
    patterns: &mut Patterns,
) -> Rule {
    if !topics.contains_key(&raw.topic) {
        let known: Vec<&str> = topics.keys().map(String::as_str).collect();
        cx.at(
            span.clone(),
            format!(
                "rule `{}`: unknown topic `{}` (topics: {})",
                raw.name,
                raw.topic,
                known.join(", ")
            ),
        );
    }
    if raw.any.is_empty()
        && raw.all.is_empty()
        && raw.regex.is_empty()
        && raw.sender_domain.is_empty()
    {
        cx.at(
            span.clone(),
            format!(
                "rule `{}` has nothing to match: give `any`, `all`, `regex` or `sender_domain`",
                raw.name
            ),
        );
    }
    let terms = |list: &[String], cx: &mut Checker, patterns: &mut Patterns| -> Vec<Term> {
        list.iter()
            .filter_map(|w| {
                let ignored = ignored_words(w);
                if !ignored.is_empty() {
                    cx.at(span.clone(), format!("rule `{}`: term {w:?}: {} ignored when matching (single letters and numbers are), so the term would match without it; write a `regex` instead", raw.name, ignored.iter().map(|i| format!("`{i}` is")).collect::<Vec<_>>().join(", ")));
                    return None;
                }
                // "stato civile" read as "civile", "la mia pensione" as "pensione": a phrase
                // that stop words reduce to one word matches far more than it says.
                let counted = stems(w);
                if counted.len() == 1 && w.split_whitespace().count() > 1 {
                    cx.at(span.clone(), format!("rule `{}`: term {w:?} matches {:?} alone: its other words are stop words, ignored when matching; write the one word, or a `regex` for the phrase", raw.name, counted[0]));
                    return None;
                }
                let t = patterns.term(w, &counted);
                if t.is_none() {
                    cx.at(span.clone(), format!("rule `{}`: term {w:?} has no word that counts (only stop words)", raw.name));
                }
                t
            })
            .collect()
    };
    let any = terms(&raw.any, cx, patterns);
    let and_any = terms(&raw.and_any, cx, patterns);
    let all = terms(&raw.all, cx, patterns);
    let none = terms(&raw.none, cx, patterns);
    let mut regex = Vec::new();
    for r in &raw.regex {
        match rule_regex(r) {
            Ok(re) => regex.push(re),
            Err(e) => cx.at(
                span.clone(),
                format!("rule `{}`: bad regex {r:?}: {e}", raw.name),
            ),
        }
    }
    // Written forms that share their stems are one pattern: counted once for breadth.
    let mut distinct: Vec<usize> = any.iter().chain(&all).map(|t| t.id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    Rule {
        name: raw.name,
        topic: raw.topic,
        weight: raw.weight,
        distinct,
        any,
        and_any,
        all,
        none,
        regex,
        channel: raw.channel,
        sender_domain: raw
            .sender_domain
            .iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        in_subject: raw.in_subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_with_its_line() {
        let text = "abstain_below = 0.5\n\n[topics.gas]\nlabel = \"Gas\"\noffice = \"Ufficio gas\"\n\n[[rules]]\nname = \"a\"\ntopic = \"gass\"\nany = [\"allaccio\"]\n\n[[rules]]\nname = \"b\"\ntopic = \"gas\"\nregex = [\"(\"]\n\n[[rules]]\nname = \"c\"\ntopic = \"gas\"\nany = [\"x\"]\nwieght = 2\n";
        let err = Rules::parse(Path::new("rules.toml"), text).unwrap_err();
        let all = err.to_string();
        assert!(
            all.contains("rules.toml:7: rule `a`: unknown topic `gass`"),
            "{all}"
        );
        assert!(all.contains("rules.toml:12: rule `b`: bad regex"), "{all}");
        assert!(
            all.contains("rules.toml:21: rule: unknown field `wieght`"),
            "{all}"
        );
        assert_eq!(err.0.len(), 3, "{all}");
    }

    /// A rule's regex reads and matches as `regex::Regex` would, and a bad one is told the
    /// same way: only the engine's start-up work differs.
    #[test]
    fn a_rules_regex_is_the_regex_crates() {
        let file: toml::Value = toml::from_str(SHIPPED).unwrap();
        let patterns: Vec<&str> = file["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.get("regex")?.as_array())
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        let texts = [
            "Vi trasmettiamo la fattura n. 12 del mese",
            "ALLEGHIAMO la nostra fattura numero 3",
            "allegò fattura nr.7",
            "esito «B» dopo il sisma del 2016; CASE di Bazzano, C.A.S.E. e case",
            "A che punto è la pratica? Edificio pericolante, lavori SAL, rifiuti",
            "Il terremoto in Centro Italia",
        ];
        let mut found = 0;
        for p in &patterns {
            let (ours, theirs) = (rule_regex(p).unwrap(), regex::Regex::new(p).unwrap());
            for t in texts {
                let m = ours.find(t).map(|m| &t[m.range()]);
                assert_eq!(m, theirs.find(t).map(|m| m.as_str()), "{p} on {t:?}");
                found += m.is_some() as usize;
            }
        }
        assert!(
            patterns.len() >= 5 && found >= 5,
            "{patterns:?}: {found} found"
        );
        for bad in ["(", "a{99999999}", "\\p{Foo}", "[z-a]"] {
            assert_eq!(
                rule_regex(bad).unwrap_err(),
                regex::Regex::new(bad).unwrap_err().to_string(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_term_that_would_lose_a_letter_or_number_is_refused() {
        let text = "abstain_margin = 1.5\n[topics.rec]\nlabel = \"R\"\noffice = \"U\"\n[[rules]]\nname = \"esito\"\ntopic = \"rec\"\nany = [\"esito B\", \"perdita d'acqua\", \"ordinanza 2009\"]\n";
        let all = Rules::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("`abstain_margin` must be between 0 and 1"),
            "{all}"
        );
        assert!(all.contains("term \"esito B\": `b` is ignored"), "{all}");
        assert!(
            all.contains("term \"ordinanza 2009\": `2009` is ignored"),
            "{all}"
        );
        // An elided article is an ordinary stop word.
        assert!(!all.contains("perdita"), "{all}");
    }

    #[test]
    fn a_phrase_that_stop_words_reduce_to_one_word_is_refused() {
        // "stato" is a form of "essere", a stop word: "stato civile" read as "civile" sent a
        // family moving into its flat with the help of the "protezione civile" out of scope.
        let text = "[topics.out]\nlabel = \"O\"\noffice = \"U\"\n[[rules]]\nname = \"other\"\ntopic = \"out\"\nany = [\"stato civile\", \"contributo di sistemazione\", \"passaporto\"]\n";
        let all = Rules::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("term \"stato civile\" matches \"civil\" alone"),
            "{all}"
        );
        // Two words still count after "di": a phrase, as written.
        assert!(!all.contains("contributo"), "{all}");
        assert!(!all.contains("passaporto"), "{all}");
    }

    #[test]
    fn terms_match_other_word_forms_and_respect_conditions() {
        let text = "[topics.gas]\nlabel = \"Gas\"\noffice = \"U\"\n[[rules]]\nname = \"allaccio\"\ntopic = \"gas\"\nweight = 3\nany = [\"allacciamento gas\"]\nnone = [\"offerta\"]\nchannel = [\"email\"]\n";
        let rules = Rules::parse(Path::new("r.toml"), text).unwrap();
        let req = |channel, body| Request {
            channel: Some(channel),
            sender_email: None,
            subject: "",
            body,
        };
        let r = req(Channel::Email, "Chiedo l'allaccio del gas al MAP");
        assert!(rules.rules[0].eval(&Prepared::of(&r, &rules)).is_some());
        let r = req(Channel::Email, "Vi facciamo un'offerta per l'allaccio gas");
        assert!(rules.rules[0].eval(&Prepared::of(&r, &rules)).is_none());
        let r = req(Channel::Fax, "Chiedo l'allaccio del gas");
        assert!(rules.rules[0].eval(&Prepared::of(&r, &rules)).is_none());
    }

    #[test]
    fn the_shipped_rules_are_valid() {
        let rules = Rules::load(Path::new(SHIPPED_NAME)).unwrap();
        assert!(rules.topics.len() > 3);
        assert!(!rules.rules.is_empty());
    }

    /// A one-word term matches every word with its stem: "sindacato" met "Signor Sindaco",
    /// "facciata" met "faccio", "luce" met "Lucia", "rifiuti" met "rifare". Words every letter
    /// has, on any topic, must fire no rule of the shipped file.
    #[test]
    fn the_shipped_rules_leave_the_words_of_any_letter_alone() {
        let rules = Rules::load(Path::new(SHIPPED_NAME)).unwrap();
        assert_eq!(rules.everyday_matches(), vec![]);
        // The check finds what it is for.
        let text = "[topics.out]\nlabel = \"O\"\noffice = \"U\"\n[[rules]]\nname = \"lavoro\"\ntopic = \"out\"\nany = [\"sindacato\", \"vertenza sindacale\"]\n";
        let bad = Rules::parse(Path::new("r.toml"), text).unwrap();
        assert_eq!(
            bad.everyday_matches(),
            vec![("lavoro", "sindacato", "sindaco")]
        );
        let everyday = [
            "Egregio Signor Sindaco",
            "Cordiali saluti, distinti saluti, la saluto",
            "Faccio presente che ho vissuto qui",
            "La signora Lucia Rossi, cittadina e cittadino",
            "Devo rifare la domanda, la prego di tenermi al corrente",
            "Ho ricevuto la vostra lettera e resto in attesa",
            "Il sottoscritto con la presente chiede, per la fine del mese",
            "Misure, testo, visto, chi, anzi, materia",
            "Grazie per l'attenzione. In fede",
            "Buongiorno, vorrei sapere, chiedo cortesemente",
            "In attesa di un vostro cortese riscontro, ringrazio",
            "Abito in via Roma da tre anni con la mia famiglia nella mia casa",
            "Purtroppo nessuno sa niente. Saluti e grazie",
            "Dear Sir or Madam, thank you, best regards, can you tell me",
            "È pericoloso, di notte la strada è buia. Ho perso il lavoro e ho paura",
        ];
        for text in everyday {
            let r = Request {
                channel: Some(Channel::Email),
                sender_email: None,
                subject: "",
                body: text,
            };
            let p = Prepared::of(&r, &rules);
            let fired: Vec<&str> = rules.fired(&p).iter().map(|(_, f)| f.rule).collect();
            assert!(fired.is_empty(), "{text:?} fired {fired:?}");
        }
    }

    /// A term counts more in a sentence that asks than in the story around it, found in the
    /// one pass over the body; a phrase that runs from a story into a question is not asked.
    #[test]
    fn a_term_weighs_more_where_the_writer_asks() {
        let text = "[topics.gas]\nlabel = \"Gas\"\noffice = \"G\"\n\n[[rules]]\nname = \"g\"\ntopic = \"gas\"\nweight = 2\nany = [\"allaccio gas\", \"contatore\"]\n";
        let rules = Rules::parse(Path::new("r.toml"), text).unwrap();
        let weight = |body: &str| {
            let r = Request {
                channel: None,
                sender_email: None,
                subject: "",
                body,
            };
            let p = Prepared::of(&r, &rules);
            let fired = rules.fired(&p);
            fired.iter().map(|(_, f)| f.weight).sum::<f32>()
        };
        let story = weight("Ieri il tecnico ha parlato dell'allaccio gas. Oggi piove.");
        let asked = weight("Ieri il tecnico è passato. Chiedo l'allaccio gas al più presto.");
        assert_eq!(story, 2.0);
        assert_eq!(asked, 2.0 * EMPHASIS);
        // The question begins after "allaccio": the phrase is found, but not asked.
        let across = weight("Parlavo dell'allaccio. Gas quando arriva?");
        assert_eq!(across, 2.0);
        let across = weight("Abbiamo fatto l'allaccio gas. Il contatore quando arriva?");
        assert_eq!(
            across,
            (2.0 + 2.0 * BREADTH) * EMPHASIS,
            "the contatore is asked"
        );
    }
}
