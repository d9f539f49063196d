//! What the classifier reads of a request: the writer's own words (quoted replies and
//! signatures' boilerplate dropped), folded and stemmed, as unigrams and bigrams.

use crate::textnorm::{stem, tokens};
use std::collections::HashMap;

/// Italian (and a few English) words that say nothing about the topic.
const STOP_WORDS: &[&str] = &[
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

fn is_stop(word: &str) -> bool {
    static STOP: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    STOP.get_or_init(|| STOP_WORDS.iter().copied().collect())
        .contains(word)
}

/// The writer's own text: lines quoted with `>` and everything after an Outlook-style
/// "original message" separator are the office's earlier words, not the request.
pub fn own_words(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let t = line.trim_start();
        let lower = t.to_lowercase();
        if lower.starts_with("-----messaggio originale")
            || lower.starts_with("-----original message")
            || lower.starts_with("il giorno ") && lower.contains("ha scritto")
        {
            break;
        }
        if t.starts_with('>') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Dotted acronyms as one word: "C.A.S.E." → "CASE", "O.P.C.M." → "OPCM".
fn join_acronyms(text: &str) -> std::borrow::Cow<'_, str> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE
        .get_or_init(|| regex::Regex::new(r"\b(?:\p{L}\.){2,}(?:\p{L}\b)?").expect("valid regex"));
    re.replace_all(text, |c: &regex::Captures| c[0].replace('.', ""))
}

/// Stems of the meaningful words of `text`, in order.
pub fn stems(text: &str) -> Vec<String> {
    tokens(&join_acronyms(text))
        .into_iter()
        .filter(|t| {
            t.folded.chars().count() > 1
                && !t.folded.chars().all(|c| c.is_ascii_digit())
                && !is_stop(&t.folded)
        })
        .map(|t| stem(&t.folded))
        .collect()
}

/// Sparse feature vector of a request: unigram and bigram counts, subject words counted
/// twice (the subject is the writer's own summary), then log-scaled and L2-normalised.
pub fn vector(subject: &str, body: &str) -> HashMap<String, f32> {
    let mut counts: HashMap<String, f32> = HashMap::new();
    let mut add = |words: &[String], weight: f32| {
        for w in words {
            *counts.entry(w.clone()).or_default() += weight;
        }
        for pair in words.windows(2) {
            *counts
                .entry(format!("{} {}", pair[0], pair[1]))
                .or_default() += weight;
        }
    };
    add(&stems(subject), 2.0);
    add(&stems(&own_words(body)), 1.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_quoted_replies_and_stop_words() {
        let body = "Ancora niente per il gas.\n> Gentile utente, la pratica è in lavorazione\n-----Messaggio originale-----\nDa: urp";
        let own = own_words(body);
        assert!(
            own.contains("gas") && !own.contains("lavorazione") && !own.contains("urp"),
            "{own}"
        );
        assert_eq!(stems("Il contatore del gas"), ["contator", "gas"]);
        assert_eq!(
            stems("alloggio C.A.S.E. O.P.C.M. n. 3754"),
            ["allogg", "cas", "opcm"]
        );
        let v = vector("Allaccio gas", "contatore del gas");
        assert!(v.contains_key("allacc gas") && v.contains_key("contator gas"));
        let norm: f32 = v.values().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
