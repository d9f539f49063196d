//! The search index in PostgreSQL: the words sportello folded and stemmed itself (the same
//! `SearchText` as SQLite's index, so a query finds the same tickets on either backend, and
//! PostgreSQL's own Italian stemmer and `unaccent` never disagree with ours) as a weighted
//! `tsvector` under a GIN index; ranked with `ts_rank` over the newest matches.

use super::filing::protocol_string;
use super::tickets::{filter_sql, params_of};
use super::*;
use crate::search::{Phrase, SearchHit, SearchQuery};

/// Weights of documents, body and subject (tsvector weights C, B, A; D unused), as SQLite's
/// ranking gives them (1 : 2 : 4).
const WEIGHTS: &str = "'{0.05, 0.25, 0.5, 1.0}'";

/// The index's words from a [`SearchText`] given as parameters `$first` (subject, weight A),
/// `$first+1` (body, B) and `$first+2` (documents, C): one expression wherever a ticket is
/// indexed, so a ticket filed and one indexed again are found alike.
pub(super) fn search_words(first: usize) -> String {
    format!(
        "setweight(to_tsvector('simple', ${first}), 'A') || setweight(to_tsvector('simple', ${}), 'B')
            || setweight(to_tsvector('simple', ${}), 'C')",
        first + 1,
        first + 2
    )
}

/// Replaces the ticket's row of the search index.
pub(super) fn write_search_text(c: &mut dyn Sql, ticket_id: i64, t: &SearchText) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO ticket_search (ticket_id, words) VALUES ($1, {})
             ON CONFLICT (ticket_id) DO UPDATE SET words = EXCLUDED.words",
            search_words(2)
        ),
        &[&ticket_id, &t.subject, &t.body, &t.documents],
    )?;
    Ok(())
}

/// (Re)writes the ticket's row of the search index from its current subject, body, documents
/// and summary.
pub(in crate::store) fn index_ticket(c: &mut dyn Sql, ticket_id: i64) -> Result<()> {
    let r = c.query_one(
        "SELECT subject, body, summary FROM tickets WHERE id = $1",
        &[&ticket_id],
    )?;
    let (subject, body, summary): (String, String, Option<String>) =
        (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
    let mut documents = c
        .query(
            "SELECT name, text FROM documents WHERE ticket_id = $1 ORDER BY ord",
            &[&ticket_id],
        )?
        .iter()
        .map(|r| Ok((col::<String>(r, 0)?, col::<String>(r, 1)?)))
        .collect::<Result<Vec<_>>>()?;
    // A clerk's summary of a recording is found as the recording's words would be.
    if let Some(summary) = summary {
        documents.push(("riassunto".into(), summary));
    }
    let text = SearchText::new(
        &subject,
        &body,
        documents.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    );
    write_search_text(c, ticket_id, &text)
}

/// A query compiled to `tsquery` text (read with `to_tsquery('simple', …)`, which splits a
/// lexeme as `to_tsvector` split the indexed words).
pub(super) fn tsquery(query: &SearchQuery) -> String {
    let lexeme = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    let phrase = |p: &Phrase| match p {
        Phrase::Stems(stems) => {
            let words: Vec<String> = stems.iter().map(|s| lexeme(s)).collect();
            format!("({})", words.join(" <-> "))
        }
        Phrase::Prefix(prefix) => format!("{}:*", lexeme(prefix)),
    };
    let chunk = |c: &Vec<Phrase>| {
        let all: Vec<String> = c.iter().map(phrase).collect();
        format!("({})", all.join(" & "))
    };
    let include: Vec<String> = query.include.iter().map(chunk).collect();
    let mut expr = include.join(" & ");
    if !query.exclude.is_empty() {
        let exclude: Vec<String> = query.exclude.iter().map(chunk).collect();
        expr = format!("({expr}) & !({})", exclude.join(" | "));
    }
    expr
}

/// Snippets of a page of hits (ticket id, subject, body), from the body, else the first
/// document whose text has one, else the subject. Documents are read in one query for the
/// hits whose body had none: a round trip per hit was up to 40 per page.
fn snippets_for(
    c: &mut dyn Sql,
    hits: &[(i64, String, String)],
    query: &SearchQuery,
) -> Result<Vec<String>> {
    const WIDTH: usize = 24;
    let mut out: Vec<Option<String>> = hits
        .iter()
        .map(|(_, _, body)| query.snippet(body, WIDTH))
        .collect();
    let pending: Vec<i64> = hits
        .iter()
        .zip(&out)
        .filter(|(_, s)| s.is_none())
        .map(|((id, _, _), _)| *id)
        .collect();
    if !pending.is_empty() {
        let mut from_documents: std::collections::HashMap<i64, String> = Default::default();
        for r in c.query(
            "SELECT ticket_id, name, text FROM documents WHERE ticket_id = ANY($1)
             ORDER BY ticket_id, ord",
            &[&pending],
        )? {
            let id: i64 = col(&r, 0)?;
            if from_documents.contains_key(&id) {
                continue;
            }
            let (name, text): (String, String) = (col(&r, 1)?, col(&r, 2)?);
            if let Some(s) = query.snippet(&text, WIDTH) {
                from_documents.insert(id, format!("[{name}] {s}"));
            }
        }
        for ((id, _, _), s) in hits.iter().zip(out.iter_mut()) {
            if s.is_none() {
                *s = from_documents.remove(id);
            }
        }
    }
    Ok(hits
        .iter()
        .zip(out)
        .map(|((_, subject, _), s)| {
            s.unwrap_or_else(|| {
                query
                    .snippet(subject, WIDTH)
                    .unwrap_or_else(|| subject.to_string())
            })
        })
        .collect())
}

/// The ranked search's SQL and its arguments: the newest `RANK_WINDOW` matches ranked, then
/// the page of them asked for.
fn search_sql(query: &SearchQuery, filter: &TicketFilter) -> (String, Vec<String>) {
    let (where_sql, mut args) = filter_sql(filter);
    args.push(tsquery(query));
    let q = args.len();
    let offset = filter.offset.unwrap_or(0);
    let limit = filter.limit.unwrap_or(20);
    let filter_and = if where_sql.is_empty() {
        "WHERE".to_string()
    } else {
        format!("{where_sql} AND")
    };
    let sql = format!(
        "SELECT t.id, t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at, t.subject,
                t.topic, t.status, COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone),
                m.score, t.body
         FROM (SELECT s.ticket_id,
                      ts_rank({WEIGHTS}, s.words, to_tsquery('simple', ${q}), 1)::float8 AS score
               FROM ticket_search s JOIN tickets t ON t.id = s.ticket_id
               {filter_and} s.words @@ to_tsquery('simple', ${q})
               ORDER BY s.ticket_id DESC LIMIT {RANK_WINDOW}) m
         JOIN tickets t ON t.id = m.ticket_id
         ORDER BY m.score DESC, t.id DESC LIMIT {limit} OFFSET {offset}"
    );
    (sql, args)
}

impl PgStore {
    /// The plan PostgreSQL chose for a search and what running it cost (`EXPLAIN (ANALYZE,
    /// BUFFERS)`), for the benchmark that checks the plan at a million tickets.
    pub fn explain_search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<String> {
        let (sql, args) = search_sql(query, filter);
        let rows = self.read()?.query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
            &params_of(&args),
        )?;
        let lines: Vec<String> = rows.iter().map(|r| col(r, 0)).collect::<Result<_>>()?;
        Ok(lines.join("\n"))
    }
}

impl Search for PgStore {
    fn search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<Vec<SearchHit>> {
        let (sql, args) = search_sql(query, filter);
        let mut c = self.read()?;
        let rows = c.query(&sql, &params_of(&args))?;
        let texts: Vec<(i64, String, String)> = rows
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 6)?, col(r, 11)?)))
            .collect::<Result<_>>()?;
        let snippets = snippets_for(&mut *c, &texts, query)?;
        let mut hits = Vec::new();
        for ((r, (_, subject, _)), snippet) in rows.iter().zip(texts).zip(snippets) {
            hits.push(SearchHit {
                code: col(r, 1)?,
                protocol: protocol_string(col(r, 2)?, col(r, 3)?),
                channel: col(r, 4)?,
                received_at: col(r, 5)?,
                subject,
                topic: col(r, 7)?,
                status: col(r, 8)?,
                sender: col(r, 9)?,
                score: col(r, 10)?,
                snippet,
            });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_tsquery_expressions() {
        let q =
            SearchQuery::parse("Allacciamento  \"contributo autonoma\" -macerie ricostr*").unwrap();
        assert_eq!(
            tsquery(&q),
            "((('allacc')) & (('contrib' <-> 'autonom')) & ('ricostr':*)) & !((('macer')))"
        );
        // Quotes and backslashes typed by a user stay inside their lexeme.
        let q = SearchQuery::parse("a'b\\ & !c").unwrap();
        assert!(!tsquery(&q).contains("''b"), "{}", tsquery(&q));
    }
}
