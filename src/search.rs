//! Search queries as archivists type them, turned into FTS5 queries over the stemmed index,
//! and snippets cut from the original text with the hits marked.
//!
//! `allaccio gas` finds tickets with both words in any form (*allacciamento*, *Gas*);
//! `"contributo autonoma sistemazione"` is a phrase; `-macerie` excludes; `ricostr*` is a
//! prefix of the written (not stemmed) word. Accents and case never matter.

use crate::textnorm::{stem, tokens};
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

/// A parsed query: the FTS5 expression and what to highlight.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub fts: String,
    highlight: Vec<Term>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl SearchQuery {
    pub fn parse(input: &str) -> Result<SearchQuery, QueryError> {
        let mut include: Vec<String> = Vec::new();
        let mut exclude: Vec<String> = Vec::new();
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
            let expr = if !is_phrase && chunk.ends_with('*') && words.len() == 1 {
                let prefix = words[0].folded.clone();
                if !negated {
                    highlight.push(Term::Prefix(prefix.clone()));
                }
                format!("{}*", quote(&prefix))
            } else {
                let stems: Vec<String> = words.iter().map(|w| stem(&w.folded)).collect();
                if !negated {
                    highlight.extend(stems.iter().cloned().map(Term::Stem));
                }
                if words.len() == 1 || is_phrase {
                    quote(&stems.join(" "))
                } else {
                    // "gas-metano" typed without quotes: each part must be there.
                    stems
                        .iter()
                        .map(|s| quote(s))
                        .collect::<Vec<_>>()
                        .join(" AND ")
                }
            };
            if negated {
                exclude.push(expr);
            } else {
                include.push(expr);
            }
        }
        if include.is_empty() {
            return Err(if exclude.is_empty() {
                QueryError::Empty
            } else {
                QueryError::OnlyExclusions
            });
        }
        let mut fts = include.join(" AND ");
        if !exclude.is_empty() {
            fts = format!("({fts}) NOT ({})", exclude.join(" OR "));
        }
        Ok(SearchQuery { fts, highlight })
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
        let toks = tokens(text);
        let hit_idx: Vec<usize> = toks
            .iter()
            .enumerate()
            .filter(|(_, t)| self.hits(&t.folded))
            .map(|(i, _)| i)
            .collect();
        let &first = hit_idx.first()?;
        // Start a little before the first hit of the window holding the most hits.
        let best = hit_idx
            .iter()
            .copied()
            .max_by_key(|&start| {
                (
                    hit_idx
                        .iter()
                        .filter(|&&h| h >= start && h < start + width)
                        .count(),
                    usize::MAX - start,
                )
            })
            .unwrap_or(first);
        let from = best.saturating_sub(width / 4);
        let to = (from + width).min(toks.len());
        let start_byte = toks[from].start;
        // Up to the next word, so closing punctuation stays with the text.
        let end_byte = toks.get(to).map_or(text.len(), |t| t.start);
        let mut out = String::new();
        if from > 0 {
            out.push('…');
        }
        let mut cursor = start_byte;
        for t in &toks[from..to] {
            if self.hits(&t.folded) {
                out.push_str(&text[cursor..t.start]);
                out.push_str("**");
                out.push_str(&text[t.start..t.end]);
                out.push_str("**");
                cursor = t.end;
            }
        }
        out.push_str(&text[cursor..end_byte]);
        if to < toks.len() {
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
    fn builds_fts_expressions() {
        let q =
            SearchQuery::parse("Allacciamento  \"contributo autonoma\" -macerie ricostr*").unwrap();
        assert_eq!(
            q.fts,
            "(\"allacc\" AND \"contrib autonom\" AND \"ricostr\"*) NOT (\"macer\")"
        );
        assert_eq!(SearchQuery::parse("  ").unwrap_err(), QueryError::Empty);
        assert_eq!(
            SearchQuery::parse("-gas").unwrap_err(),
            QueryError::OnlyExclusions
        );
        // FTS syntax typed by a user is just text.
        let q = SearchQuery::parse("NEAR(a b) OR \"").unwrap();
        assert!(q.fts.starts_with("\"near\" AND"), "{}", q.fts);
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
