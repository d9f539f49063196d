//! Search queries as archivists type them, parsed into a [`SearchQuery`] that each store
//! backend compiles to its own index language, and snippets cut from the original text with
//! the hits marked.
//!
//! `allaccio gas` finds tickets with both words in any form (*allacciamento*, *Gas*);
//! `"contributo autonoma sistemazione"` is a phrase; `-macerie` excludes; `ricostr*` is a
//! prefix of the written (not stemmed) word. Accents and case never matter.

use crate::textnorm::{fold_into, stem, tokens, word_spans};
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("empty search: give at least one word")]
    Empty,
    #[error("a search cannot only exclude words; add a word to look for")]
    OnlyExclusions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Stem(String),
    Prefix(String),
}

/// What one phrase of a query asks for in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phrase {
    /// These stems, next to each other in this order (one word is a one-stem phrase).
    Stems(Vec<String>),
    /// A word starting with this folded (not stemmed) text.
    Prefix(String),
}

/// A parsed query, independent of any index: each backend compiles it to its own language
/// (FTS5 in `store::search`). A ticket matches when it has every phrase of every `include`
/// chunk and no excluded chunk in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// What was typed as one chunk (a word, a quoted phrase, `gas-metano`): all its phrases.
    pub include: Vec<Vec<Phrase>>,
    /// Chunks typed with `-`: a ticket with all the phrases of any of them is left out.
    pub exclude: Vec<Vec<Phrase>>,
    highlight: Vec<Term>,
}

impl SearchQuery {
    pub fn parse(input: &str) -> Result<SearchQuery, QueryError> {
        // The phrases of each searched (and each excluded) chunk of the input.
        let mut include: Vec<Vec<Phrase>> = Vec::new();
        let mut exclude: Vec<Vec<Phrase>> = Vec::new();
        let mut highlight = Vec::new();
        let mut rest = input.trim();
        while !rest.is_empty() {
            let negated = rest.starts_with('-');
            if negated {
                rest = &rest[1..];
            }
            let (chunk, is_phrase, after) = if let Some(body) = rest.strip_prefix('"') {
                match body.find('"') {
                    Some(end) => (&body[..end], true, &body[end + 1..]),
                    None => (body, true, ""),
                }
            } else {
                match rest.find(char::is_whitespace) {
                    Some(end) => (&rest[..end], false, &rest[end..]),
                    None => (rest, false, ""),
                }
            };
            rest = after.trim_start();
            let words = tokens(chunk);
            if words.is_empty() {
                continue;
            }
            let phrases = if !is_phrase && chunk.ends_with('*') && words.len() == 1 {
                let prefix = words[0].folded.clone();
                if !negated {
                    highlight.push(Term::Prefix(prefix.clone()));
                }
                vec![Phrase::Prefix(prefix)]
            } else {
                let stems: Vec<String> = words.iter().map(|w| stem(&w.folded)).collect();
                if !negated {
                    highlight.extend(stems.iter().cloned().map(Term::Stem));
                }
                if words.len() == 1 || is_phrase {
                    vec![Phrase::Stems(stems)]
                } else {
                    // "gas-metano" typed without quotes: each part must be there.
                    stems.into_iter().map(|s| Phrase::Stems(vec![s])).collect()
                }
            };
            if negated {
                exclude.push(phrases);
            } else {
                include.push(phrases);
            }
        }
        if include.is_empty() {
            return Err(if exclude.is_empty() {
                QueryError::Empty
            } else {
                QueryError::OnlyExclusions
            });
        }
        Ok(SearchQuery {
            include,
            exclude,
            highlight,
        })
    }

    fn hits(&self, folded_word: &str) -> bool {
        self.highlight.iter().any(|t| match t {
            Term::Prefix(p) => folded_word.starts_with(p.as_str()),
            // A stem shares its first letters with the word (Snowball only trims endings), so
            // most words are ruled out without running the stemmer.
            Term::Stem(s) => {
                let head = s.char_indices().nth(2).map_or(s.len(), |(i, _)| i);
                folded_word.starts_with(&s[..head]) && stem(folded_word) == *s
            }
        })
    }

    /// A window of about `width` words of `text` around its densest hits, hits wrapped in `**`.
    /// None when no word of `text` matches.
    pub fn snippet(&self, text: &str, width: usize) -> Option<String> {
        // Words are folded one at a time into one buffer: results pages cut 20 snippets from
        // long texts, and a String per word was most of a search's time.
        let spans = word_spans(text);
        let mut folded = String::new();
        let hit_idx: Vec<usize> = spans
            .iter()
            .enumerate()
            .filter(|(_, &(s, e))| {
                folded.clear();
                fold_into(&text[s..e], &mut folded);
                self.hits(&folded)
            })
            .map(|(i, _)| i)
            .collect();
        let &first = hit_idx.first()?;
        // Start a little before the first hit of the window holding the most hits (ties: the
        // earliest), counted with a sliding window over the sorted hits.
        let (mut best, mut best_count, mut end) = (first, 0, 0);
        for (i, &start) in hit_idx.iter().enumerate() {
            end = end.max(i);
            while end < hit_idx.len() && hit_idx[end] < start + width {
                end += 1;
            }
            if end - i > best_count {
                best_count = end - i;
                best = start;
            }
        }
        let from = best.saturating_sub(width / 4);
        let to = (from + width).min(spans.len());
        let start_byte = spans[from].0;
        // Up to the next word, so closing punctuation stays with the text.
        let end_byte = spans.get(to).map_or(text.len(), |t| t.0);
        let mut out = String::new();
        if from > 0 {
            out.push('…');
        }
        let mut cursor = start_byte;
        for &h in hit_idx.iter().filter(|&&h| h >= from && h < to) {
            let (s, e) = spans[h];
            out.push_str(&text[cursor..s]);
            out.push_str("**");
            out.push_str(&text[s..e]);
            out.push_str("**");
            cursor = e;
        }
        out.push_str(&text[cursor..end_byte]);
        if to < spans.len() {
            out.push('…');
        }
        Some(out.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// One search result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub code: String,
    pub protocol: String,
    pub channel: String,
    pub received_at: String,
    pub subject: String,
    pub topic: Option<String>,
    pub status: String,
    pub sender: Option<String>,
    pub score: f64,
    pub snippet: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_phrases_prefixes_and_exclusions() {
        let stems = |w: &[&str]| Phrase::Stems(w.iter().map(|s| s.to_string()).collect());
        let q = SearchQuery::parse(
            "Allacciamento  \"contributo autonoma\" -macerie ricostr* gas-metano",
        )
        .unwrap();
        assert_eq!(
            q.include,
            [
                vec![stems(&["allacc"])],
                vec![stems(&["contrib", "autonom"])],
                vec![Phrase::Prefix("ricostr".into())],
                vec![stems(&["gas"]), stems(&["met"])],
            ]
        );
        assert_eq!(q.exclude, [vec![stems(&["macer"])]]);
        assert_eq!(SearchQuery::parse("  ").unwrap_err(), QueryError::Empty);
        assert_eq!(
            SearchQuery::parse("-gas").unwrap_err(),
            QueryError::OnlyExclusions
        );
        // Index syntax typed by a user is just words.
        let q = SearchQuery::parse("NEAR(a b) OR \"").unwrap();
        assert_eq!(q.include[0], [stems(&["near"]), stems(&["a"])]);
    }

    #[test]
    fn snippet_marks_other_forms_and_accents() {
        let q = SearchQuery::parse("allaccio citta").unwrap();
        let s = q
            .snippet(
                "Chiedo l'allacciamento del gas nella città di L'Aquila.",
                30,
            )
            .unwrap();
        assert_eq!(
            s,
            "Chiedo l'**allacciamento** del gas nella **città** di L'Aquila."
        );
        assert!(q.snippet("nulla da vedere", 30).is_none());
    }
}
