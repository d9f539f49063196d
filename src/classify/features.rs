//! What the classifier reads of a request: the writer's own words (quoted replies and
//! signatures' boilerplate dropped), folded and stemmed, as unigrams and bigrams, and the
//! character 4-grams of words the model knows too little.

use std::collections::HashMap;

use crate::textnorm::is_stop;

/// The writer's own text: lines quoted with `>` and everything after an Outlook-style
/// "original message" separator are the office's earlier words, not the request.
pub fn own_words(body: &str) -> std::borrow::Cow<'_, str> {
    // The markers are ASCII: compared case-blind in place, as many lines begin with "I"
    // ("Il", "In") and lowercasing a copy of each cost two allocations.
    let starts = |t: &str, marker: &str| {
        t.as_bytes()
            .get(..marker.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(marker.as_bytes()))
    };
    let is_separator = |t: &str| {
        starts(t, "-----messaggio originale")
            || starts(t, "-----original message")
            || (starts(t, "il giorno ") && t.to_lowercase().contains("ha scritto"))
    };
    let quoted_or_separator = |line: &str| {
        let t = line.trim_start();
        t.starts_with('>') || ((t.starts_with('-') || t.starts_with(['I', 'i'])) && is_separator(t))
    };
    if !body.lines().any(quoted_or_separator) {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let t = line.trim_start();
        if !t.starts_with('>') && quoted_or_separator(line) {
            break;
        }
        if t.starts_with('>') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

/// Dotted acronyms as one word: "C.A.S.E." → "CASE", "O.P.C.M." → "OPCM" (two or more
/// single letters each followed by a dot).
fn join_acronyms(text: &str) -> std::borrow::Cow<'_, str> {
    // An acronym starts with a letter just before a dot, at the start of a word: only the
    // places before dots are tried, and the text between acronyms is copied whole. Most
    // texts have dots but no acronym: nothing is allocated until one is found.
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Where the last run of letter-dot pairs tried ended: a letter inside a run that was no
    // acronym starts the same run's tail, which ends at the same place and is no acronym
    // either. Skipping them keeps a hostile "a.a.a.…a.bc" linear (it was quadratic).
    let mut tried_to = 0;
    for dot in memchr::memchr_iter(b'.', text.as_bytes()) {
        let Some(letter) = text[..dot].chars().next_back() else {
            continue;
        };
        let start = dot - letter.len_utf8();
        if start < tried_to
            || !letter.is_alphabetic()
            || text[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        // Letter-dot pairs from here.
        let (mut pairs, mut end) = (0, start);
        let mut rest = text[start..].chars();
        while let (Some(c), Some('.')) = (rest.next(), rest.next()) {
            if !c.is_alphabetic() {
                break;
            }
            pairs += 1;
            end += c.len_utf8() + 1;
            rest = text[end..].chars();
        }
        tried_to = end;
        // The two characters after the run decide the rest.
        let mut after = text[end..].chars();
        let (next, then) = (after.next(), after.next());
        // Two pairs at least, and not followed by a word ("A.B.cd" is not an acronym).
        let followed_by_word =
            next.is_some_and(char::is_alphanumeric) && then.is_some_and(char::is_alphanumeric);
        if pairs < 2 || followed_by_word {
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[copied..start]);
        // The letters, without their dots.
        out.extend(text[start..end].chars().step_by(2));
        // A last letter without its dot ("C.A.S.E" typed carelessly).
        if let Some(last) = next.filter(|c| c.is_alphabetic()) {
            if then.is_none_or(|c| !c.is_alphanumeric()) {
                out.push(last);
                end += last.len_utf8();
                tried_to = end;
            }
        }
        copied = end;
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// Stems of the meaningful words of `text`, in order.
/// Words of `text` that matching ignores although they are not stop words: single letters
/// and numbers ("n" in "fattura n", "2009"). A rule term holding one matches without it.
pub fn ignored_words(text: &str) -> Vec<String> {
    // Elided articles and prepositions ("d'acqua", "l'alloggio") are stop words.
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '\u{2019}')
        .filter(|w| !w.is_empty() && !w.ends_with(['\'', '\u{2019}']))
        .map(|w| crate::textnorm::fold(w.trim_matches(['\'', '\u{2019}'])))
        .filter(|w| {
            let w = w.to_lowercase();
            (w.chars().count() == 1 || w.chars().all(|c| c.is_ascii_digit())) && !is_stop(&w)
        })
        .collect()
}

pub fn stems(text: &str) -> Vec<String> {
    stems_at(&join_acronyms(text))
        .into_iter()
        .map(|(_, s, _)| s.to_string())
        .collect()
}

pub use crate::textnorm::Stem;

/// Stems of the meaningful words of `text`, each with the byte offset where its word starts.
/// The words come from [`crate::textnorm::words`]: the search index reads the same text's
/// words, and a request's text is split and stemmed once for both.
fn stems_at(text: &str) -> Vec<(usize, Stem, FeatureId)> {
    meaningful(&crate::textnorm::words(text))
}

fn meaningful(words: &[crate::textnorm::Word]) -> Vec<(usize, Stem, FeatureId)> {
    // Sized once: a filtered iterator's collect grows the list a few times per request.
    let mut out = Vec::with_capacity(words.len());
    out.extend(
        words
            .iter()
            .filter(|w| w.meaningful)
            .map(|w| (w.start, w.stem.clone(), w.id)),
    );
    out
}

/// The request's meaningful words, stemmed once for rules and model alike.
#[derive(Debug, Clone, Default)]
pub struct Words {
    pub subject: Vec<Stem>,
    pub body: Vec<Stem>,
    /// [`word_id`] of each of `subject`'s and `body`'s stems, in the same order.
    pub subject_ids: Vec<FeatureId>,
    pub body_ids: Vec<FeatureId>,
    /// The sentences that ask for something ("chiedo…", "vorrei sapere…", questions), as
    /// ranges of `body`'s words in order, adjacent ones merged: what the office must do or
    /// answer now weighs more than the background story.
    pub ask_spans: Vec<std::ops::Range<usize>>,
    /// When the writer turns from background to the point ("quello che chiedo è…", "il punto
    /// è che…"): the words from there on. `None` without such a turn.
    pub focus: Option<Vec<Stem>>,
}

/// Folded phrases that turn a letter from its background to its point, anywhere in a sentence.
/// Written without accents or apostrophes; [`turns`] matches the written variants too.
const TURNS: &[&str] = &[
    "quello che chiedo",
    "cio che chiedo",
    "quello che vi chiedo",
    "il punto e",
    "la mia domanda",
    "la domanda e",
    "il problema e",
    "quello che mi serve",
    "chiedo invece",
    "vi scrivo invece",
    "vi scrivo per un altro",
    "per un altro motivo",
    "e un altro",
    "e una cosa diversa",
    "e diverso",
    "e un altra",
    "non e questo",
    // The background settled, the point still open: "il gas l'hanno riattivato; resta invece
    // la pratica…".
    "resta invece",
    "rimane invece",
    "invece resta",
    "invece rimane",
    "resta ancora",
    "rimane ancora",
    "adesso invece",
    "ora invece",
    "my question is",
    "what i need",
];

/// Phrases as sequences of word ids ([`crate::textnorm::word_id`] of each stem), listed by
/// their first word: each word of a text is looked up once, and a phrase is found where
/// its words follow one another. Ids rather than text: a text's words carry them already.
/// A 64-bit id shared by two stems (the model's features take the same chance) would at
/// worst find a phrase that is not there.
#[derive(Debug)]
pub struct PhraseIndex {
    by_first: IdMap<Vec<usize>>,
    words: Vec<Vec<FeatureId>>,
    /// One bit per first word (by the low bits of its id): most words of a text begin no
    /// phrase, and a bit tells that for less than a map lookup costs.
    first_bits: Box<[u64; FIRST_BITS / 64]>,
}

const FIRST_BITS: usize = 1 << 14;

fn first_bit(id: FeatureId) -> (usize, u64) {
    let bit = id as usize % FIRST_BITS;
    (bit / 64, 1 << (bit % 64))
}

impl PhraseIndex {
    /// Phrase `i` is the `i`th given; an empty one is never found.
    pub fn new(phrases: impl IntoIterator<Item = Vec<FeatureId>>) -> PhraseIndex {
        let mut index = PhraseIndex {
            by_first: IdMap::default(),
            words: Vec::new(),
            first_bits: Box::new([0; FIRST_BITS / 64]),
        };
        for (i, words) in phrases.into_iter().enumerate() {
            if let Some(&first) = words.first() {
                index.by_first.entry(first).or_default().push(i);
                let (word, bit) = first_bit(first);
                index.first_bits[word] |= bit;
            }
            index.words.push(words);
        }
        index
    }

    /// Calls `found(start, end, phrase)` for each phrase found in the `total` ids given by
    /// `id_at` (positions `start..end`), overlapping ones too, in order of their starts.
    pub fn find(
        &self,
        total: usize,
        id_at: impl Fn(usize) -> FeatureId,
        mut found: impl FnMut(usize, usize, usize),
    ) {
        for start in 0..total {
            let id = id_at(start);
            let (word, bit) = first_bit(id);
            if self.first_bits[word] & bit == 0 {
                continue;
            }
            let Some(candidates) = self.by_first.get(&id) else {
                continue;
            };
            for &phrase in candidates {
                let words = &self.words[phrase];
                let end = start + words.len();
                if end <= total && (1..words.len()).all(|k| id_at(start + k) == words[k]) {
                    found(start, end, phrase);
                }
            }
        }
    }
}

/// [`TURNS`] read as words (as [`crate::textnorm::words`] gives every word, stop words
/// included): the written variants need no listing, as "è" and "e", "ciò" and "cio",
/// "un'altra" and "un altra" are the same words, in any case, across a line break.
fn turns() -> &'static PhraseIndex {
    static TURN_WORDS: std::sync::OnceLock<PhraseIndex> = std::sync::OnceLock::new();
    TURN_WORDS.get_or_init(|| {
        PhraseIndex::new(
            TURNS
                .iter()
                .map(|t| crate::textnorm::words(t).iter().map(|w| w.id).collect()),
        )
    })
}

/// Byte offsets where a turn phrase starts among `words` (every word of the text, in order).
fn turn_starts(words: &[crate::textnorm::Word]) -> Vec<usize> {
    let mut at: Vec<usize> = Vec::new();
    turns().find(
        words.len(),
        |i| words[i].id,
        |start, _, _| {
            if at.last() != Some(&words[start].start) {
                at.push(words[start].start);
            }
        },
    );
    at
}

/// Stems that mark a sentence as the request itself.
const ASK_CUES: &[&str] = &[
    "chied", "chiediam", "richied", "vorre", "vorrem", "pregh", "preg", "sollecit", "invit",
    "domand", "sapere", "ask", "request", "pleas", "need", "want",
];

/// Whether a stem marks its sentence as the request itself: compared only with the cues
/// that begin with its letter, as this runs for every word of every request.
fn is_ask_cue(stem: &str) -> bool {
    let Some(&first) = stem.as_bytes().first() else {
        return false;
    };
    ASK_CUES
        .iter()
        .any(|cue| cue.as_bytes().first() == Some(&first) && stem.starts_with(cue))
}

/// Stems and their ids as two lists, each sized once.
fn split(words: Vec<(usize, Stem, FeatureId)>) -> (Vec<Stem>, Vec<FeatureId>) {
    let mut stems = Vec::with_capacity(words.len());
    let mut ids = Vec::with_capacity(words.len());
    for (_, stem, id) in words {
        stems.push(stem);
        ids.push(id);
    }
    (stems, ids)
}

impl Words {
    pub fn of(subject: &str, body: &str) -> Words {
        let own = own_words(body);
        let text = join_acronyms(&own);
        let every = crate::textnorm::words(&text);
        let words = meaningful(&every);
        // Sentences by their ends; a word belongs to the sentence it starts in.
        let mut ask_spans: Vec<std::ops::Range<usize>> = Vec::new();
        let mut next = 0;
        // Letters and mail wrap lines mid-sentence: a line break ends a sentence only when a
        // blank line (a new paragraph) follows.
        let paragraph_end = |i: usize| {
            text[i + 1..]
                .trim_start_matches([' ', '\t', '\r'])
                .starts_with('\n')
        };
        // Sentence ends are ASCII: scanning bytes finds them without decoding characters.
        let ends = text
            .bytes()
            .enumerate()
            .filter(|&(i, b)| {
                matches!(b, b'.' | b'?' | b'!' | b';') || (b == b'\n' && paragraph_end(i))
            })
            .map(|(i, b)| (i, b as char))
            .chain([(text.len(), '\n')]);
        // Where the text turns to its point.
        let turn_at = turn_starts(&every);
        let mut focus_from: Option<usize> = None;
        let mut sentence_start = 0usize;
        for (end, c) in ends {
            let from = next;
            while next < words.len() && words[next].0 < end {
                next += 1;
            }
            // Only explicit turns: a sentence opening with "Ma…" is as often one more
            // argument for the same request as a change of subject.
            // The turns are in order of their starts: the first one not before this
            // sentence, found by halving (a scan from the first turn at every sentence
            // was quadratic in a hostile text of many short sentences).
            let first = turn_at.partition_point(|&at| at < sentence_start);
            let turns = turn_at.get(first).is_some_and(|&at| at < end);
            if turns && from > 0 {
                focus_from = Some(from);
            }
            sentence_start = end + c.len_utf8();
            let sentence = &words[from..next];
            let asks = c == '?' || sentence.iter().any(|(_, w, _)| is_ask_cue(w));
            if asks && from < next {
                match ask_spans.last_mut() {
                    Some(last) if last.end == from => last.end = next,
                    _ => ask_spans.push(from..next),
                }
            }
        }
        let (subject, subject_ids) = split(stems_at(&join_acronyms(subject)));
        let focus = focus_from.map(|f| words[f..].iter().map(|(_, s, _)| s.clone()).collect());
        let (body, body_ids) = split(words);
        Words {
            subject,
            subject_ids,
            focus,
            body,
            body_ids,
            ask_spans,
        }
    }

    /// Whether the body's words `range` lie within one asking sentence. The spans are in
    /// order and apart: only the last one starting at or before the range can hold it,
    /// found by halving (a scan of every span at every pattern found was quadratic in a
    /// hostile text).
    pub fn within_asking(&self, range: std::ops::Range<usize>) -> bool {
        let holder = self.ask_spans.partition_point(|s| s.start <= range.start);
        holder > 0 && range.end <= self.ask_spans[holder - 1].end
    }

    /// The words of the asking sentences, in order, each with its id.
    pub fn asked(&self) -> impl Iterator<Item = (&Stem, FeatureId)> {
        self.ask_spans
            .iter()
            .flat_map(|s| Words::with_ids(&self.body[s.clone()], &self.body_ids[s.clone()]))
    }

    /// The subject's, the body's or the asking sentences' stems, each with its id.
    fn with_ids<'w>(
        stems: &'w [Stem],
        ids: &'w [FeatureId],
    ) -> impl Iterator<Item = (&'w Stem, FeatureId)> + 'w {
        stems.iter().zip(ids.iter().copied())
    }
}

/// A feature's id: FNV-1a of a stem, or of two stems for a bigram. Ids, not strings, so a
/// request's features cost no allocation; stable across runs, so saved models keep working.
pub type FeatureId = u64;

pub use crate::textnorm::word_id;

pub fn pair_id(a: FeatureId, b: FeatureId) -> FeatureId {
    (a.rotate_left(29) ^ b).wrapping_mul(0x9E3779B97F4A7C15)
}

/// Ids are already well mixed: hashing them again would only cost time.
pub use crate::textnorm::PassHasher as IdHasher;

pub type IdMap<V> = HashMap<FeatureId, V, std::hash::BuildHasherDefault<IdHasher>>;

pub type IdSet = std::collections::HashSet<FeatureId, std::hash::BuildHasherDefault<IdHasher>>;

/// Character 4-grams of a stem, with its start and end marked ("<pav", "pavi", …, "nto>"):
/// a word the OCR misread ("pavimerito", "terremoo") still shares most of them with the word
/// it was. Ids hashed apart from words' and pairs' ids.
pub fn gram_ids(stem: &str) -> impl ExactSizeIterator<Item = FeatureId> + '_ {
    // A window slid along the marked word, no copy of it made: most requests have dozens of
    // rare words, each read this way.
    let len = stem.chars().count() + 2;
    let width = GRAM.min(len);
    let mut chars = std::iter::once('<')
        .chain(stem.chars())
        .chain(std::iter::once('>'));
    let mut window = ['\0'; GRAM];
    for slot in window.iter_mut().take(width - 1) {
        *slot = chars.next().unwrap_or('>');
    }
    (0..len - width + 1).map(move |_| {
        window[width - 1] = chars.next().unwrap_or('>');
        let mut h: u64 = 0x84222325cbf29ce4;
        for c in &window[..width] {
            h ^= *c as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        window.copy_within(1..width, 0);
        h
    })
}

const GRAM: usize = 4;

/// Sparse feature vector of a request: unigram and bigram counts, subject words counted
/// twice (the subject is the writer's own summary), then log-scaled and L2-normalised.
pub fn vector(words: &Words) -> IdMap<f32> {
    vector_with(words, None)
}

/// [`vector`], and with `known` (the words common in the training data) every other word
/// also read by its character 4-grams, together worth one word: a word misread by the OCR,
/// or new, still counts by its pieces. Training gives rare words the same treatment, so
/// the 4-grams learn what a word never seen before is likely about.
pub fn vector_with(words: &Words, known: Option<&IdSet>) -> IdMap<f32> {
    // Words, their pairs and, for unknown words, a few pieces each: sized once, never rehashed.
    let asked: usize = words.ask_spans.iter().map(|s| s.len()).sum();
    let n = words.subject.len() + words.body.len() + asked;
    let mut counts: IdMap<f32> = IdMap::with_capacity_and_hasher(n * 4, Default::default());
    let mut add = |words: &mut dyn Iterator<Item = (&Stem, FeatureId)>, weight: f32| {
        let mut previous: Option<FeatureId> = None;
        for (w, id) in words {
            *counts.entry(id).or_default() += weight;
            if let Some(p) = previous {
                *counts.entry(pair_id(p, id)).or_default() += weight;
            }
            if known.is_some_and(|k| !k.contains(&id)) {
                let grams = gram_ids(w);
                let n = grams.len() as f32;
                for g in grams {
                    *counts.entry(g).or_default() += weight / n;
                }
            }
            previous = Some(id);
        }
    };
    add(
        &mut Words::with_ids(&words.subject, &words.subject_ids),
        2.0,
    );
    add(&mut Words::with_ids(&words.body, &words.body_ids), 1.0);
    add(&mut words.asked(), 1.0);
    let mut norm = 0.0f32;
    for v in counts.values_mut() {
        *v = (1.0 + *v).ln();
        norm += *v * *v;
    }
    let norm = norm.sqrt().max(1e-6);
    for v in counts.values_mut() {
        *v /= norm;
    }
    counts
}

/// How a feature reads in an explanation: a word, a pair of words, or a 4-gram's piece
/// ("pavi…"). Words and pairs are the request's own stems, borrowed, not copied.
#[derive(Debug, Clone, PartialEq)]
pub enum Name<'a> {
    Word(&'a Stem),
    Pair(&'a Stem, &'a Stem),
    Piece(String),
}

impl Name<'_> {
    /// Appends the name to `out`: an explanation is written into one string.
    pub fn write_to(&self, out: &mut String) {
        match self {
            Name::Word(w) => out.push_str(w),
            Name::Pair(a, b) => {
                out.push_str(a);
                out.push(' ');
                out.push_str(b);
            }
            Name::Piece(p) => {
                out.push_str(p);
                out.push('\u{2026}');
            }
        }
    }
}

/// The readable form of each of the given feature ids, in their order (`None` for one not
/// found), as they occur in `words` (for explanations). `known` is what [`vector_with`] was
/// given: only the other words were read by their 4-grams, so only theirs are named.
pub fn names_of<'a>(
    words: &'a Words,
    wanted: &[FeatureId],
    known: Option<&IdSet>,
) -> Vec<Option<Name<'a>>> {
    // A handful of ids (an explanation's): a list searched in place, not a map.
    let mut names: Vec<Option<Name<'a>>> = vec![None; wanted.len()];
    let mut left = wanted.len();
    let mut name = |id: FeatureId, it: Name<'a>| {
        if let Some(i) = wanted.iter().position(|w| *w == id) {
            if names[i].is_none() {
                names[i] = Some(it);
                left -= 1;
            }
        }
        left
    };
    // The walk ends once each id has its name.
    'walk: for (stems, ids) in [
        (&words.subject, &words.subject_ids),
        (&words.body, &words.body_ids),
    ] {
        let mut previous: Option<(FeatureId, &'a Stem)> = None;
        for (w, id) in Words::with_ids(stems, ids) {
            let mut left = name(id, Name::Word(w));
            if let Some((pid, pw)) = previous {
                left = name(pair_id(pid, id), Name::Pair(pw, w));
            }
            if left == 0 {
                break 'walk;
            }
            previous = Some((id, w));
        }
    }
    // 4-grams only when something is still unnamed: most explanations are words. A piece
    // is named by its four characters, whichever word it came from.
    if let Some(known) = known.filter(|_| names.iter().any(Option::is_none)) {
        let unknown = Words::with_ids(&words.subject, &words.subject_ids)
            .chain(Words::with_ids(&words.body, &words.body_ids))
            .filter(|(_, id)| !known.contains(id));
        for (w, _) in unknown {
            for (i, g) in gram_ids(w).enumerate() {
                let Some(at) = wanted.iter().position(|x| *x == g) else {
                    continue;
                };
                if names[at].is_none() {
                    let marked: Vec<char> = format!("<{w}>").chars().collect();
                    let piece: String = marked[i..(i + GRAM).min(marked.len())].iter().collect();
                    names[at] = Some(Name::Piece(piece.trim_matches(['<', '>']).to_string()));
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name as an explanation writes it.
    fn written(name: &Name) -> String {
        let mut out = String::new();
        name.write_to(&mut out);
        out
    }

    #[test]
    fn asking_sentences_span_wrapped_lines_but_not_paragraphs() {
        let w = Words::of("", "Casa inagibile da anni.\nChiedo il pagamento del contributo di autonoma\nsistemazione di maggio.\n\nGrazie");
        let ask: Vec<&str> = w.asked().map(|(s, _)| &**s).collect();
        assert!(
            ask.contains(&"autonom") && ask.contains(&"sistem"),
            "{ask:?}"
        );
        assert!(!ask.contains(&"inagibil"), "{ask:?}");
    }

    /// The acronym joiner as it was first written, a character at a time over the whole
    /// text: the reference the faster one (which tries only the letters before dots) must
    /// agree with, as the words it makes are features of trained models.
    fn join_acronyms_by_chars(text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
            let mut j = i;
            while starts_word
                && j + 1 < chars.len()
                && chars[j].is_alphabetic()
                && chars[j + 1] == '.'
                && (j == i || !chars[j - 1].is_alphanumeric() || chars[j - 1] == '.')
            {
                j += 2;
            }
            let pairs = (j - i) / 2;
            if pairs >= 2
                && !(j < chars.len()
                    && chars[j].is_alphanumeric()
                    && j + 1 < chars.len()
                    && chars[j + 1].is_alphanumeric())
            {
                for k in (i..j).step_by(2) {
                    out.push(chars[k]);
                }
                if j < chars.len()
                    && chars[j].is_alphabetic()
                    && (j + 1 == chars.len() || !chars[j + 1].is_alphanumeric())
                {
                    out.push(chars[j]);
                    j += 1;
                }
                i = j;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn acronyms_are_joined_as_the_reference_joins_them() {
        let mut cases = 0;
        // Every string of up to seven characters over letters (one accented), a digit, a
        // dot and a space: every way an acronym can start, stop, or be a word's end.
        let alphabet = ['a', 'B', 'è', '1', '.', ' '];
        let mut text = String::new();
        let mut stack = vec![0usize];
        while let Some(top) = stack.last_mut() {
            if *top == alphabet.len() {
                stack.pop();
                text.pop();
                if let Some(t) = stack.last_mut() {
                    *t += 1;
                }
                continue;
            }
            text.push(alphabet[*top]);
            assert_eq!(
                join_acronyms(&text),
                join_acronyms_by_chars(&text),
                "{text:?}"
            );
            cases += 1;
            if stack.len() < 7 {
                stack.push(0);
            } else {
                text.pop();
                *stack.last_mut().unwrap() += 1;
            }
        }
        for text in [
            "alloggio C.A.S.E. e M.A.P., O.P.C.M. n. 3754",
            "C.A.S.E",
            "la C.A.S.E.di Bazzano",
            "A.B.cd e.g. i.e. X.Y.Z.W.ab",
            "É.À. Ç.Ñ.ø",
        ] {
            assert_eq!(join_acronyms(text), join_acronyms_by_chars(text), "{text}");
            cases += 1;
        }
        assert!(cases > 300_000, "{cases}");
    }

    #[test]
    fn grams_are_the_windows_of_the_marked_word() {
        // What saved models were trained on: every 4-character window of "<stem>", or the
        // whole of a shorter one, FNV-hashed.
        let reference = |stem: &str| -> Vec<FeatureId> {
            let chars: Vec<char> = format!("<{stem}>").chars().collect();
            (0..chars.len().saturating_sub(GRAM) + 1)
                .map(|i| {
                    let mut h: u64 = 0x84222325cbf29ce4;
                    for c in &chars[i..(i + GRAM).min(chars.len())] {
                        h ^= *c as u64;
                        h = h.wrapping_mul(0x100000001b3);
                    }
                    h
                })
                .collect()
        };
        for stem in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "pavimerito",
            "città",
            "perché",
        ] {
            let grams = gram_ids(stem);
            assert_eq!(grams.len(), reference(stem).len(), "{stem}");
            assert_eq!(grams.collect::<Vec<_>>(), reference(stem), "{stem}");
        }
    }

    #[test]
    fn unknown_words_are_read_by_their_pieces_and_known_ones_are_not() {
        let grams = |w: &str| gram_ids(w).collect::<IdSet>();
        // A misread word keeps most of its 4-grams.
        let words = Words::of("", "Il pavimerito del bagno");
        let stem = words.body[0].to_string();
        let (right, misread) = (grams("paviment"), grams(&stem));
        assert!(right.intersection(&misread).count() >= 3, "{stem}");
        assert!(right.iter().all(|g| *g != word_id("paviment")));
        let known: IdSet = [word_id("bagn")].into_iter().collect();
        let plain = vector(&words);
        let with = vector_with(&words, Some(&known));
        assert!(plain.keys().all(|f| !misread.contains(f)));
        assert!(misread.iter().all(|g| with.contains_key(g)), "{with:?}");
        assert!(grams("bagn").iter().all(|g| !with.contains_key(g)));
        let norm: f32 = with.values().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let piece = gram_ids(&stem).nth(1).unwrap();
        assert_eq!(
            names_of(&words, &[piece], Some(&known))[0]
                .as_ref()
                .map(written),
            Some("pavi\u{2026}".to_string())
        );
        // A word the model knows was not read by its pieces: none of them is named for it.
        let all: IdSet = words.body_ids.iter().copied().collect();
        assert_eq!(names_of(&words, &[piece], Some(&all)), [None]);
    }

    #[test]
    fn a_turn_is_found_in_any_of_its_written_forms_and_only_as_whole_words() {
        let focus = |body: &str| Words::of("", body).focus.map(|f| f.len());
        let background = "Il MAP di Paganica ha le tubature rotte da mesi.";
        for turn in [
            "Il punto è che il contributo non arriva.",
            "IL PUNTO È che il contributo non arriva.",
            "il punto, e che il contributo non arriva.",
            "Ma vi scrivo per un\naltro motivo: il contributo non arriva.",
            "È un’altra cosa: il contributo non arriva.",
            "Ciò che chiedo: il contributo non arriva.",
        ] {
            assert!(focus(&format!("{background} {turn}")).is_some(), "{turn}");
        }
        for no_turn in [
            "Il puntone è crollato e il contributo non arriva.",
            "Il punto di raccolta è lontano.",
        ] {
            assert_eq!(focus(&format!("{background} {no_turn}")), None, "{no_turn}");
        }
    }

    #[test]
    fn drops_quoted_replies_and_stop_words() {
        let body = "Ancora niente per il gas.\n> Gentile utente, la pratica è in lavorazione\n-----Messaggio originale-----\nDa: urp";
        let own = own_words(body);
        assert!(
            own.contains("gas") && !own.contains("lavorazione") && !own.contains("urp"),
            "{own}"
        );
        // The separators in any case; a line beginning "Il" is no separator by that alone.
        for (body, kept) in [
            (
                "Il gas manca.\n-----ORIGINAL MESSAGE-----\nDa: urp",
                "Il gas manca.\n",
            ),
            (
                "Il gas manca.\nIl Giorno 3 marzo, URP HA SCRITTO:\nvecchio",
                "Il gas manca.\n",
            ),
            (
                "Il gas manca.\nIl giorno 3 marzo ho scritto.",
                "Il gas manca.\nIl giorno 3 marzo ho scritto.",
            ),
            ("-----messaggio originale", ""),
            ("-----messaggio", "-----messaggio"),
        ] {
            assert_eq!(own_words(body).trim_end(), kept.trim_end(), "{body}");
        }
        assert_eq!(stems("Il contatore del gas"), ["contator", "gas"]);
        assert_eq!(
            stems("alloggio C.A.S.E. O.P.C.M. n. 3754"),
            ["allogg", "cas", "opcm"]
        );
        let words = Words::of("Allaccio gas", "contatore del gas");
        let v = vector(&words);
        let (allaccio_gas, contatore_gas) = (
            pair_id(word_id("allacc"), word_id("gas")),
            pair_id(word_id("contator"), word_id("gas")),
        );
        assert!(v.contains_key(&allaccio_gas) && v.contains_key(&contatore_gas));
        // Named in the order asked for; an id that is not there has no name.
        let names = names_of(
            &words,
            &[word_id("nessun"), allaccio_gas, word_id("gas")],
            None,
        );
        let read: Vec<Option<String>> = names.iter().map(|n| n.as_ref().map(written)).collect();
        assert_eq!(
            read,
            [
                None,
                Some("allacc gas".to_string()),
                Some("gas".to_string())
            ]
        );
        let norm: f32 = v.values().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
