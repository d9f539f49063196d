//! Italian text normalisation shared by search and classification: case and accents folded,
//! words cut at anything that is not a letter or digit, Snowball Italian stemming so that
//! *allaccio* and *allacciamento*, *alloggi* and *alloggio* meet.

use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::Italian))
}

/// Lower case without accents: "Città" → "citta", "PERCHÉ" → "perche".
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_into(text, &mut out);
    out
}

/// `fold`, appending to `out` (reuse one buffer over many words).
pub fn fold_into(text: &str, out: &mut String) {
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        // Latin letters ("à", "È", "ç") from a table made by the slow path below: Italian
        // text has one in most sentences, and decomposing each cost ~240 instructions.
        if let Some(folded) = latin_folded().get((c as usize).wrapping_sub(LATIN_FROM)) {
            out.push_str(folded);
            continue;
        }
        fold_slowly(c, out);
    }
}

/// The characters [`latin_folded`] holds: the Latin-1 Supplement and Latin Extended-A and -B.
const LATIN_FROM: usize = 0x80;
const LATIN_TO: usize = 0x250;

fn latin_folded() -> &'static [String] {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (LATIN_FROM..LATIN_TO)
            .map(|c| {
                let mut s = String::new();
                if let Some(c) = char::from_u32(c as u32) {
                    fold_slowly(c, &mut s);
                }
                s
            })
            .collect()
    })
}

/// One non-ASCII character folded: decomposed, its marks dropped, lowercased.
fn fold_slowly(c: char, out: &mut String) {
    for d in c.nfd() {
        if unicode_normalization::char::is_combining_mark(d) {
            continue;
        }
        match d {
            'ß' => out.push_str("ss"),
            'æ' | 'Æ' => out.push_str("ae"),
            'œ' | 'Œ' => out.push_str("oe"),
            'ø' | 'Ø' => out.push('o'),
            'ł' | 'Ł' => out.push('l'),
            // Typographic apostrophes split words like the ASCII one does.
            '\u{2019}' | '\u{2018}' | '\u{00B4}' => out.push('\''),
            _ => out.extend(d.to_lowercase()),
        }
    }
}

/// A word of the input: its byte range in the original text and its folded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub folded: String,
}

/// Splits `text` into words (letters and digits), keeping where each word stands.
/// The byte ranges of the words of `text` (the same words `tokens` finds), without folding.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push((s, i));
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

pub fn tokens(text: &str) -> Vec<Token> {
    word_spans(text)
        .into_iter()
        .map(|(start, end)| Token {
            start,
            end,
            folded: fold(&text[start..end]),
        })
        .collect()
}

/// The stem of one folded word. Digits and very short words are kept as they are.
pub fn stem(folded_word: &str) -> String {
    word_of_folded(folded_word).0.to_string()
}

/// What the stem cache holds of a folded word, worked out: its stem, whether it is
/// meaningful (two letters or more, not a number, not a stop word) and its id.
fn word_uncached(folded: &str) -> (String, bool, u64) {
    let meaningful = folded.chars().nth(1).is_some()
        && !folded.bytes().all(|b| b.is_ascii_digit())
        && !is_stop(folded);
    let stem = stem_uncached(folded);
    let id = word_id(&stem);
    (stem, meaningful, id)
}

fn stem_uncached(folded_word: &str) -> String {
    if folded_word.len() < 3 || folded_word.bytes().any(|b| b.is_ascii_digit()) {
        return folded_word.to_string();
    }
    stemmer().stem(folded_word).into_owned()
}

/// Italian (and a few English) words that say nothing about the topic.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "ad",
    "al",
    "alla",
    "alle",
    "allo",
    "ai",
    "agli",
    "anche",
    "ancora",
    "che",
    "chi",
    "ci",
    "come",
    "con",
    "da",
    "dal",
    "dalla",
    "dai",
    "dei",
    "del",
    "della",
    "delle",
    "dello",
    "degli",
    "di",
    "e",
    "ed",
    "gli",
    "ha",
    "hanno",
    "ho",
    "i",
    "il",
    "in",
    "io",
    "la",
    "le",
    "lo",
    "l",
    "ma",
    "mi",
    "mio",
    "mia",
    "miei",
    "mie",
    "ne",
    "nei",
    "nel",
    "nella",
    "nelle",
    "non",
    "o",
    "per",
    "piu",
    "poi",
    "quando",
    "questo",
    "questa",
    "se",
    "si",
    "sia",
    "sono",
    "su",
    "sul",
    "sulla",
    "tra",
    "fra",
    "un",
    "una",
    "uno",
    "vi",
    "voi",
    "noi",
    "siamo",
    "sua",
    "suo",
    "loro",
    "gia",
    "cosi",
    "essere",
    "stato",
    "stata",
    "the",
    "and",
    "of",
    "to",
    "is",
    "my",
    "for",
    "it",
    "on",
    "that",
    "this",
    "be",
    "buongiorno",
    "salve",
    "saluti",
    "distinti",
    "cordiali",
    "grazie",
    "gentile",
    "egregi",
    "spett",
    "le",
    "sig",
    "sottoscritto",
    "sottoscritta",
    "re",
    "r",
    "fw",
    "fwd",
    "tel",
    "cell",
    "n",
    "nr",
    "via",
    "dell",
    "all",
    "nell",
    "sull",
    "dall",
    "quell",
    "our",
    "we",
    "you",
    "your",
    "thank",
    "thanks",
    "me",
    "have",
    "has",
    "are",
    "was",
    "would",
    "please",
    "hello",
    "dear",
    "with",
    "from",
    "at",
    "in",
    "an",
    "a",
    "as",
    "by",
    "or",
    "not",
    "no",
];

/// Whether a folded word is a stop word.
pub fn is_stop(word: &str) -> bool {
    static STOP: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    STOP.get_or_init(|| STOP_WORDS.iter().copied().collect())
        .contains(word)
}

/// A stem shared by every occurrence of its word: cloning one is a reference-count bump.
pub type Stem = std::rc::Rc<str>;

/// A word of a text as the index and the classifier read it.
#[derive(Debug, Clone)]
pub struct Word {
    /// Byte offset in the text where the word starts.
    pub start: usize,
    /// [`stem`] of the folded word.
    pub stem: Stem,
    /// Whether the word says something about the text: not a stop word, a single letter or
    /// a number (the classifier reads only these; the index keeps every word).
    pub meaningful: bool,
    /// [`word_id`] of the stem: the classifier's feature id, hashed once per word of the
    /// vocabulary rather than at every occurrence.
    pub id: u64,
}

/// A stem's feature id for the classifier: FNV-1a of its bytes. Stable across runs, so
/// saved models keep working.
pub fn word_id(word: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in word.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Texts up to this size are remembered (the last [`RECENT_TEXTS`] of them, per thread):
/// a request's subject and body are read by the search index and then by the classifier, an
/// email's body is also its first document's text, and the classifier's text (the body and
/// the beginning of each attachment, see [`words`]) is made of texts the index read whole.
const RECENT_MAX_BYTES: usize = 32 * 1024;
/// A message's subject, body, and each document's name and text.
const RECENT_TEXTS: usize = 8;

/// A folded word as the stem cache holds it: words of up to 22 bytes (nearly all) in place,
/// so a lookup compares the word with bytes in the entry instead of following a pointer.
#[derive(Clone)]
enum WordKey {
    Inline(u8, [u8; 22]),
    Heap(Box<str>),
}

impl WordKey {
    fn of(word: &str) -> WordKey {
        let b = word.as_bytes();
        if b.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..b.len()].copy_from_slice(b);
            WordKey::Inline(b.len() as u8, bytes)
        } else {
            WordKey::Heap(word.into())
        }
    }

    /// Whether this is the key of `word`: compared in place, as nearly every lookup is a
    /// hit and building the padded key only to compare it cost as much as the lookup.
    fn is(&self, word: &str) -> bool {
        match self {
            WordKey::Inline(len, bytes) => bytes.get(..*len as usize) == Some(word.as_bytes()),
            WordKey::Heap(w) => **w == *word,
        }
    }
}

/// The stem cache's hash of a folded word: eight bytes at a time (a word is one or two
/// steps), mixed so both the low bits (the table's slot) and the high ones (its tag) vary.
fn key_hash(word: &str) -> u64 {
    let mix = |h: u64, x: u64| (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    let mut h = word.len() as u64;
    let mut chunks = word.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let mut x = [0u8; 8];
        x.copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(x));
    }
    // The last few bytes, as if zero-padded to eight, shifted in place: a copy of a length
    // known only at run time was a call to `memcpy` for every word.
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let x = rest
            .iter()
            .enumerate()
            .fold(0u64, |x, (i, &b)| x | (b as u64) << (8 * i));
        h = mix(h, x);
    }
    h ^ (h >> 29)
}

/// For keys that are hashes already (the stem cache's [`key_hash`], the classifier's
/// feature ids): hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub struct PassHasher(u64);

impl std::hash::Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// One word of the vocabulary: what [`words`] reads of it.
#[derive(Clone)]
struct Cached {
    key: WordKey,
    stem: Stem,
    meaningful: bool,
    id: u64,
}

thread_local! {
    /// Folded word (by its [`key_hash`]) → its stem and whether it is meaningful. An
    /// office's working vocabulary is small: stemming becomes a lookup. Two words of one
    /// hash take turns in the slot; the key is always checked.
    static WORD_STEMS: std::cell::RefCell<StemCache> = Default::default();
    static RECENT: std::cell::RefCell<std::collections::VecDeque<(String, std::rc::Rc<Vec<Word>>)>> =
        Default::default();
}

type StemCache = std::collections::HashMap<u64, Cached, std::hash::BuildHasherDefault<PassHasher>>;

fn word_of_folded(folded: &str) -> (Stem, bool, u64) {
    WORD_STEMS.with(|cache| cached_word(&mut cache.borrow_mut(), folded))
}

/// A folded word's stem, whether it is meaningful and its id, from `cache` (filled on a
/// miss). [`words`] borrows the cache once per text and calls this for each word.
fn cached_word(cache: &mut StemCache, folded: &str) -> (Stem, bool, u64) {
    let hash = key_hash(folded);
    if let Some(c) = cache.get(&hash) {
        if c.key.is(folded) {
            return (c.stem.clone(), c.meaningful, c.id);
        }
    }
    let key = WordKey::of(folded);
    let (stem, meaningful, id) = word_uncached(folded);
    let stem: Stem = stem.into();
    if cache.len() >= 200_000 {
        cache.clear();
    }
    cache.insert(
        hash,
        Cached {
            key,
            stem: stem.clone(),
            meaningful,
            id,
        },
    );
    (stem, meaningful, id)
}

/// ASCII bytes that make words, by a table (one load a byte, where testing three ranges
/// was ten instructions): [`UPPER`] for capitals, 1 for lower-case letters and digits.
const ASCII_WORD: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        if byte.is_ascii_uppercase() {
            table[b] = UPPER;
        } else if byte.is_ascii_alphanumeric() {
            table[b] = 1;
        }
        b += 1;
    }
    table
};
const UPPER: u8 = 2;

/// The words of `text` (letters and digits, cut at anything else), folded and stemmed, in
/// order. Words are folded into one reused buffer, so a known word costs no allocation; the
/// result for a text read moments ago on this thread is reused, and so are those of the
/// pieces of a text made of such texts (see [`from_recent`]).
pub fn words(text: &str) -> std::rc::Rc<Vec<Word>> {
    let remembered = text.len() <= RECENT_MAX_BYTES;
    if remembered {
        let hit = RECENT.with(|r| {
            r.borrow()
                .iter()
                .find(|(t, _)| t.as_str() == text)
                .map(|(_, w)| w.clone())
        });
        if let Some(w) = hit {
            return w;
        }
    }
    // The stem cache, borrowed once for the whole text rather than at every word.
    let words = WORD_STEMS.with(|cache| {
        let cache = &mut *cache.borrow_mut();
        RECENT
            .with(|r| from_recent(text, &r.borrow(), cache))
            .unwrap_or_else(|| read_words(text, cache))
    });
    let words: std::rc::Rc<Vec<Word>> = std::rc::Rc::new(words);
    if remembered {
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            if r.len() >= RECENT_TEXTS {
                r.pop_front();
            }
            r.push_back((text.to_string(), words.clone()));
        });
    }
    words
}

/// Whether `c` is part of a word as [`read_words`] cuts them.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        ASCII_WORD[c as usize] != 0
    } else {
        c.is_alphanumeric()
    }
}

/// Whether byte offset `at` of `text` (a character boundary) is between words: a word never
/// spans it.
fn cuts_words(text: &str, at: usize) -> bool {
    let before = text[..at].chars().next_back().is_some_and(is_word_char);
    let after = text[at..].chars().next().is_some_and(is_word_char);
    !(before && after)
}

/// The words of `text` from those of recently read texts, when `text` is made of them: a
/// run of whole remembered texts, each ending between words, then optionally the beginning
/// of one (the classifier reads a message's body, then the first few thousand characters
/// of each attachment, after the search index read each whole). Words are cut at anything
/// but letters and digits, so the words of such a piece are the remembered text's, moved;
/// a word cut by a beginning's end is read again. `None` when `text` is not so made.
fn from_recent(
    text: &str,
    recent: &std::collections::VecDeque<(String, std::rc::Rc<Vec<Word>>)>,
    cache: &mut StemCache,
) -> Option<Vec<Word>> {
    let moved = |w: &Word, by: usize| Word {
        start: w.start + by,
        ..w.clone()
    };
    let mut out = Vec::new();
    let mut at = 0;
    // Each piece compares the rest with every remembered text: a handful of pieces (a body
    // and its attachments) is what this is for, and bounds what a crafted text of many
    // near-copies could cost.
    let mut pieces = 0;
    while at < text.len() {
        let rest = &text[at..];
        // Between pieces: what is no word, stepped over.
        if let Some(c) = rest.chars().next().filter(|&c| !is_word_char(c)) {
            at += c.len_utf8();
            continue;
        }
        let whole = recent
            .iter()
            .filter(|(t, _)| !t.is_empty() && rest.starts_with(t.as_str()))
            .filter(|(t, _)| cuts_words(text, at + t.len()))
            .max_by_key(|(t, _)| t.len());
        if let Some((t, w)) = whole {
            pieces += 1;
            if pieces > 16 {
                return None;
            }
            out.extend(w.iter().map(|w| moved(w, at)));
            at += t.len();
            continue;
        }
        // The rest begins a remembered text: its words before the end, and the word the end
        // cuts (if it does) read from what the rest holds of it.
        let (t, w) = recent
            .iter()
            .find(|(t, _)| t.len() > rest.len() && t.starts_with(rest))?;
        let before = w.partition_point(|w| w.start < rest.len());
        let (kept, cut) = if cuts_words(t, rest.len()) {
            (before, None)
        } else {
            (before - 1, Some(w[before - 1].start))
        };
        out.extend(w[..kept].iter().map(|w| moved(w, at)));
        if let Some(from) = cut {
            out.extend(
                read_words(&rest[from..], cache)
                    .iter()
                    .map(|w| moved(w, at + from)),
            );
        }
        // The rest begins with a word: there is one at least.
        return Some(out);
    }
    // Pieces only if something was reused: a text of separators alone has no words anyway.
    (!out.is_empty()).then_some(out)
}

/// [`words`]' reading of a text, with the stem cache in hand. Nothing it calls may read the
/// cache again (stemming and the stop-word list do not): the cache is borrowed.
fn read_words(text: &str, cache: &mut StemCache) -> Vec<Word> {
    // About one word per six bytes of text: most texts need no regrowth.
    let mut out = Vec::with_capacity(text.len() / 6 + 1);
    let mut buf = String::new();
    let mut start: Option<usize> = None;
    let mut push = |start: usize, folded: &str| {
        let (stem, meaningful, id) = cached_word(cache, folded);
        out.push(Word {
            start,
            stem,
            meaningful,
            id,
        });
    };
    // A run of ASCII letters and digits is read whole. Most words are one run in lower
    // case: they are looked up where they stand in the text, with no copy. A run with
    // capitals, or one that a non-ASCII letter begins or continues, is lowercased into the
    // buffer. Anything else non-ASCII is decoded as a character.
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if ASCII_WORD[b as usize] != 0 {
            let run = i;
            let mut upper = false;
            while let Some(&b) = bytes.get(i) {
                match ASCII_WORD[b as usize] {
                    0 => break,
                    class => upper |= class == UPPER,
                }
                i += 1;
            }
            let word_ends = bytes.get(i).is_none_or(u8::is_ascii);
            if start.is_none() && word_ends && !upper {
                push(run, &text[run..i]);
                continue;
            }
            start.get_or_insert(run);
            let from = buf.len();
            buf.push_str(&text[run..i]);
            buf[from..].make_ascii_lowercase();
            continue;
        }
        if b.is_ascii() {
            if let Some(s) = start.take() {
                push(s, &buf);
                buf.clear();
            }
            i += 1;
            continue;
        }
        // `i` is a character's first byte: ASCII bytes and whole characters were stepped over.
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            fold_into(c.encode_utf8(&mut [0u8; 4]), &mut buf);
        } else if let Some(s) = start.take() {
            push(s, &buf);
            buf.clear();
        }
        i += c.len_utf8();
    }
    if let Some(s) = start {
        push(s, &buf);
    }
    out
}

/// Folded, stemmed words of `text`, space separated: what the search index stores.
pub fn stemmed_text(text: &str) -> String {
    let words = words(text);
    let mut out = String::with_capacity(text.len());
    for w in words.iter() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w.stem);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(fold("Città PERCHÉ più Übung"), "citta perche piu ubung");
        assert_eq!(fold("dell’abitazione"), "dell'abitazione");
    }

    #[test]
    fn the_latin_table_folds_as_decomposing_does() {
        for c in (0..0x300u32).filter_map(char::from_u32) {
            let mut slow = String::new();
            if c.is_ascii() {
                slow.push(c.to_ascii_lowercase());
            } else {
                fold_slowly(c, &mut slow);
            }
            assert_eq!(fold(c.encode_utf8(&mut [0; 4])), slow, "{c:?}");
        }
    }

    /// `words` reads ASCII runs whole and looks most words up where they stand: it must
    /// cut and fold exactly as reading a character at a time does.
    #[test]
    fn words_are_cut_and_folded_as_a_character_at_a_time() {
        let reference = |text: &str| -> Vec<(usize, String)> {
            let mut out = Vec::new();
            let mut buf = String::new();
            let mut start = None;
            for (i, c) in text.char_indices() {
                if c.is_alphanumeric() {
                    start.get_or_insert(i);
                    if c.is_ascii() {
                        buf.push(c.to_ascii_lowercase());
                    } else {
                        fold_slowly(c, &mut buf);
                    }
                } else if let Some(s) = start.take() {
                    out.push((s, std::mem::take(&mut buf)));
                }
            }
            if let Some(s) = start {
                out.push((s, buf));
            }
            out
        };
        let mut cases = 0;
        for text in [
            "",
            "a",
            "Città PERCHÉ più Übung, l’abitazione d'acqua: C.A.S.E. n. 3754!",
            "ÈRA èra citTÀ cittÀ ÀB àb aÀb a1b 1À2 ß straße ﬁne ＡＢＣ ① x²",
            "parolalunghissimaoltreventiduelettere PAROLALUNGHISSIMAOLTREVENTIDUELETTERE",
            "«virgolette» — trattino…puntini\ttab\r\nriga",
            "fine senza spazio finale",
            "  spazi   doppi  ",
        ] {
            let ours: Vec<(usize, String, bool, u64)> = words(text)
                .iter()
                .map(|w| (w.start, w.stem.to_string(), w.meaningful, w.id))
                .collect();
            let want: Vec<(usize, String, bool, u64)> = reference(text)
                .into_iter()
                .map(|(s, folded)| {
                    let (stem, meaningful, id) = word_uncached(&folded);
                    (s, stem, meaningful, id)
                })
                .collect();
            assert_eq!(ours, want, "{text}");
            cases += want.len();
        }
        assert!(cases > 40, "{cases}");
    }

    #[test]
    fn word_endings_meet() {
        let s = |w: &str| stem(&fold(w));
        assert_eq!(s("allaccio"), s("allacciamento"));
        assert_eq!(s("allacci"), s("allaccio"));
        assert_eq!(s("alloggi"), s("alloggio"));
        assert_eq!(s("agibilità"), s("agibilita"));
        assert_eq!(s("contributi"), s("contributo"));
    }

    #[test]
    fn words_are_stemmed_once_and_say_which_count() {
        let text = "L'allacciamento del gas in via Roma 12";
        let w = words(text);
        let shown: Vec<(&str, bool)> = w.iter().map(|w| (&*w.stem, w.meaningful)).collect();
        assert_eq!(
            shown,
            [
                ("l", false),
                (&*stem("allacciamento"), true),
                ("del", false),
                ("gas", true),
                ("in", false),
                ("via", false),
                ("rom", true),
                ("12", false),
            ]
        );
        assert_eq!(w[3].start, text.find("gas").unwrap());
        // The same text again is the list already made; another text of the same length is
        // its own.
        assert!(std::rc::Rc::ptr_eq(&w, &words(text)));
        let other = "L'allacciamento del gas in via Rome 12";
        assert_eq!(other.len(), text.len());
        assert_eq!(&*words(other)[6].stem, "rom");
        assert!(!std::rc::Rc::ptr_eq(&w, &words(other)));
        assert_eq!(stemmed_text(text), "l allacc del gas in via rom 12");
    }

    /// The classifier's text is the body, then the beginning of each attachment: read after
    /// the search index read each whole, its words come from theirs. Every cut (between
    /// words, inside one, inside a character's neighbours) gives the words a fresh reading
    /// gives.
    #[test]
    fn a_text_made_of_texts_just_read_has_the_words_a_fresh_reading_gives() {
        let seen = |w: &[Word]| -> Vec<(usize, String, bool, u64)> {
            w.iter()
                .map(|w| (w.start, w.stem.to_string(), w.meaningful, w.id))
                .collect()
        };
        let fresh = |text: &str| seen(&WORD_STEMS.with(|c| read_words(text, &mut c.borrow_mut())));
        let composed = |text: &str| {
            WORD_STEMS
                .with(|c| RECENT.with(|r| from_recent(text, &r.borrow(), &mut c.borrow_mut())))
        };
        let body = "Buongiorno, allego la domanda di contributo per l'abitazione in via Città.";
        let letter = "Oggetto: RICHIESTA ALLACCIAMENTO gas\u{a0}— MAP di Paganica n° 12.\n\n\
                      Il sottoscritto chiede l’allaccio più rapido possibile; grazie.";
        let mut tried = 0;
        for cut in (0..=letter.len()).filter(|&i| letter.is_char_boundary(i)) {
            for sep in ["\n", "\u{a0}", " — "] {
                RECENT.with(|r| r.borrow_mut().clear());
                // As the index reads a message: each text whole.
                let _ = (words(body), words(letter));
                let text = format!("{body}{sep}{}", &letter[..cut]);
                let made = composed(&text).expect("made of texts just read");
                assert_eq!(seen(&made), fresh(&text), "cut at {cut}, {sep:?}");
                assert_eq!(seen(&words(&text)), fresh(&text), "cut at {cut}, {sep:?}");
                tried += 1;
            }
        }
        assert!(tried > 300, "{tried} cuts");
        // A text only partly made of them is read afresh, correctly; so is one that goes
        // on where a text just read ends inside a word.
        RECENT.with(|r| r.borrow_mut().clear());
        let _ = (words(body), words("Abito in via Roma"));
        for text in [
            format!("{body}\nAltro testo mai letto."),
            "Abito in via Romano 3".to_string(),
            format!("Abito in via Roma{body}"),
            // Too many pieces to be a message: read afresh.
            format!("{body}\n").repeat(20),
        ] {
            assert_eq!(seen(&words(&text)), fresh(&text), "{text}");
        }
        let many = format!("{body}\n").repeat(20);
        let few = format!("{body}\n").repeat(3);
        RECENT.with(|r| r.borrow_mut().clear());
        let _ = words(body);
        assert!(composed(&many).is_none() && composed(&few).is_some());
    }

    #[test]
    fn tokens_keep_positions() {
        let text = "L'allaccio del gas, n. 12";
        let toks = tokens(text);
        let words: Vec<&str> = toks.iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(words, ["L", "allaccio", "del", "gas", "n", "12"]);
    }
}
