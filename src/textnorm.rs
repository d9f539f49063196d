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

/// FNV-1a: a fast hasher for the short words the caches below are keyed by.
#[derive(Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf29ce484222325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

pub type FnvBuild = std::hash::BuildHasherDefault<FnvHasher>;

/// The stem of one folded word. Digits and very short words are kept as they are.
pub fn stem(folded_word: &str) -> String {
    if folded_word.len() < 3 || folded_word.bytes().any(|b| b.is_ascii_digit()) {
        return folded_word.to_string();
    }
    // A language's working vocabulary is small: remembering stems makes stemming a lookup.
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, String, FnvBuild>> = Default::default();
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(s) = cache.get(folded_word) {
            return s.clone();
        }
        if cache.len() >= 200_000 {
            cache.clear();
        }
        let s = stemmer().stem(folded_word).into_owned();
        cache.insert(folded_word.to_string(), s.clone());
        s
    })
}

/// Folded, stemmed words of `text`, space separated: what the search index stores.
pub fn stemmed_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for t in tokens(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&stem(&t.folded));
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
    fn word_endings_meet() {
        let s = |w: &str| stem(&fold(w));
        assert_eq!(s("allaccio"), s("allacciamento"));
        assert_eq!(s("allacci"), s("allaccio"));
        assert_eq!(s("alloggi"), s("alloggio"));
        assert_eq!(s("agibilità"), s("agibilita"));
        assert_eq!(s("contributi"), s("contributo"));
    }

    #[test]
    fn tokens_keep_positions() {
        let text = "L'allaccio del gas, n. 12";
        let toks = tokens(text);
        let words: Vec<&str> = toks.iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(words, ["L", "allaccio", "del", "gas", "n", "12"]);
    }
}
