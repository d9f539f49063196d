//! The search index: what a ticket puts in it, and searching it with ranking and snippets.

use super::*;

/// A query compiled for SQLite's FTS5.
pub(super) struct Fts5 {
    /// The MATCH expression.
    pub(super) expr: String,
    /// The expression's phrases in their order there: the ranking keeps statistics by phrase.
    pub(super) phrases: Vec<String>,
}

impl Fts5 {
    pub(super) fn of(query: &SearchQuery) -> Fts5 {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let phrase = |p: &Phrase| match p {
            Phrase::Stems(stems) => quote(&stems.join(" ")),
            Phrase::Prefix(prefix) => format!("{}*", quote(prefix)),
        };
        let chunk = |c: &Vec<Phrase>| c.iter().map(phrase).collect::<Vec<_>>();
        let include: Vec<Vec<String>> = query.include.iter().map(chunk).collect();
        let exclude: Vec<Vec<String>> = query.exclude.iter().map(chunk).collect();
        let mut expr = include.concat().join(" AND ");
        if !exclude.is_empty() {
            let each: Vec<String> = exclude.iter().map(|p| p.join(" AND ")).collect();
            expr = format!("({expr}) NOT ({})", each.join(" OR "));
        }
        Fts5 {
            expr,
            phrases: [include, exclude].concat().concat(),
        }
    }
}

/// What a new ticket puts in the search index, as stored there (folded and stemmed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SearchText {
    pub(in crate::store) subject: String,
    pub(in crate::store) body: String,
    pub(in crate::store) documents: String,
}

impl SearchText {
    pub fn of(t: &NewTicket) -> SearchText {
        SearchText::new(
            &t.subject,
            &t.body,
            t.documents
                .iter()
                .map(|d| (d.doc.name.as_str(), d.doc.text.as_str())),
        )
    }

    /// From a ticket's subject, body and documents' (name, text) in their order.
    pub(in crate::store) fn new<'a>(
        subject: &str,
        body: &str,
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> SearchText {
        let mut stemmed = String::new();
        for (name, text) in documents {
            stemmed.push_str(&stemmed_text(name));
            stemmed.push(' ');
            stemmed.push_str(&stemmed_text(text));
            stemmed.push('\n');
        }
        SearchText {
            subject: stemmed_text(subject),
            body: stemmed_text(body),
            documents: stemmed,
        }
    }

    /// Replaces the ticket's row in the search index (a rowid freed by a deleted ticket may
    /// still have one).
    pub(super) fn write(&self, tx: &rusqlite::Connection, ticket_id: i64) -> Result<()> {
        let replaced = execute_cached(tx, "DELETE FROM ticket_fts WHERE rowid = ?1", [ticket_id])?;
        if replaced > 0 {
            // Row lengths remembered by the ranking are now out of date (see `rank`).
            bump_counter(tx, SEARCH_ROWS_REWRITTEN)?;
        }
        execute_cached(
            tx,
            "INSERT INTO ticket_fts (rowid, subject, body, documents) VALUES (?1, ?2, ?3, ?4)",
            params![ticket_id, self.subject, self.body, self.documents],
        )?;
        Ok(())
    }
}

/// (Re)writes the ticket's row of the search index from its current subject, body, documents
/// and summary.
pub(super) fn index_ticket(tx: &rusqlite::Connection, ticket_id: i64) -> Result<()> {
    let (subject, body, summary): (String, String, Option<String>) = query_row_cached(
        tx,
        "SELECT subject, body, summary FROM tickets WHERE id = ?1",
        [ticket_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut stmt =
        tx.prepare_cached("SELECT name, text FROM documents WHERE ticket_id = ?1 ORDER BY ord")?;
    let mut documents = stmt
        .query_map([ticket_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // A clerk's summary of a recording is found as the recording's words would be.
    if let Some(summary) = summary {
        documents.push(("riassunto".into(), summary));
    }
    SearchText::new(
        &subject,
        &body,
        documents.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    )
    .write(tx, ticket_id)
}

impl Store {
    /// The raw FTS5 query without ranking or snippets: the floor a search cannot beat, used by
    /// the benchmark to show what ranking and snippets cost.
    pub fn bare_fts_ids(&self, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH ?1 LIMIT ?2")?;
        let rows = stmt.query_map(params![Fts5::of(query).expr, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub(super) fn snippet_for(
        &self,
        ticket_id: i64,
        query: &SearchQuery,
        subject: &str,
    ) -> Result<String> {
        const WIDTH: usize = 24;
        let body: String = self
            .conn
            .prepare_cached("SELECT body FROM tickets WHERE id = ?1")?
            .query_row([ticket_id], |r| r.get(0))?;
        if let Some(s) = query.snippet(&body, WIDTH) {
            return Ok(s);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, text FROM documents WHERE ticket_id = ?1 ORDER BY ord")?;
        let docs = stmt.query_map([ticket_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for doc in docs {
            let (name, text) = doc?;
            if let Some(s) = query.snippet(&text, WIDTH) {
                return Ok(format!("[{name}] {s}"));
            }
        }
        Ok(query
            .snippet(subject, WIDTH)
            .unwrap_or_else(|| subject.to_string()))
    }
}

impl Search for Store {
    fn search(&self, query: &SearchQuery, filter: &TicketFilter) -> Result<Vec<SearchHit>> {
        let (where_sql, mut args) = filter_sql(filter);
        let fts = Fts5::of(query);
        args.push(fts.expr);
        let match_idx = args.len();
        args.push(fts.phrases.join("\n"));
        let phrases_idx = args.len();
        let offset = filter.offset.unwrap_or(0);
        let limit = filter.limit.unwrap_or(20);
        let rank = format!(
            "{}(ticket_fts, ?{phrases_idx}, {}, (SELECT value FROM counters WHERE name = '{SEARCH_ROWS_REWRITTEN}'), 4.0, 2.0, 1.0)",
            rank::FUNCTION,
            offset + limit
        );
        let sql = if where_sql.is_empty() {
            // No filter: rank inside the index alone and read only the page of tickets shown
            // (reading every candidate's row, as a filter needs, costs most of a search).
            format!(
                "SELECT t.id, t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at, t.subject, t.topic,
                        t.status, COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone), r.score
                 FROM (SELECT id, score FROM
                         (SELECT rowid AS id, {rank} AS score FROM ticket_fts
                          WHERE ticket_fts MATCH ?{match_idx} ORDER BY rowid DESC LIMIT {RANK_WINDOW})
                       ORDER BY score LIMIT {limit} OFFSET {offset}) r
                 JOIN tickets t ON t.id = r.id
                 ORDER BY r.score"
            )
        } else {
            format!(
                "SELECT id, code, protocol_year, protocol_number, channel, received_at, subject, topic, status, sender, rank
                 FROM (SELECT t.id, t.code, t.protocol_year, t.protocol_number, t.channel, t.received_at, t.subject, t.topic,
                              t.status, COALESCE(t.sender_name, t.sender_email, t.sender_fax, t.sender_phone) AS sender,
                              {rank} AS rank
                       FROM ticket_fts JOIN tickets t ON t.id = ticket_fts.rowid
                       {where_sql} AND ticket_fts MATCH ?{match_idx}
                       ORDER BY ticket_fts.rowid DESC LIMIT {RANK_WINDOW})
                 ORDER BY rank LIMIT {limit} OFFSET {offset}"
            )
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                SearchHit {
                    code: r.get(1)?,
                    protocol: protocol_string(r.get(2)?, r.get(3)?),
                    channel: r.get(4)?,
                    received_at: r.get(5)?,
                    subject: r.get(6)?,
                    topic: r.get(7)?,
                    status: r.get(8)?,
                    sender: r.get(9)?,
                    score: -r.get::<_, f64>(10)?,
                    snippet: String::new(),
                },
            ))
        })?;
        let mut hits = Vec::new();
        for row in rows {
            let (id, mut hit) = row?;
            hit.snippet = self.snippet_for(id, query, &hit.subject)?;
            hits.push(hit);
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_fts5_expressions() {
        let q =
            SearchQuery::parse("Allacciamento  \"contributo autonoma\" -macerie ricostr*").unwrap();
        let fts = Fts5::of(&q);
        assert_eq!(
            fts.expr,
            "(\"allacc\" AND \"contrib autonom\" AND \"ricostr\"*) NOT (\"macer\")"
        );
        assert_eq!(
            fts.phrases,
            [
                "\"allacc\"",
                "\"contrib autonom\"",
                "\"ricostr\"*",
                "\"macer\""
            ]
        );
        // FTS syntax typed by a user is only words, quoted.
        let q = SearchQuery::parse("NEAR(a b) OR \"").unwrap();
        let fts = Fts5::of(&q);
        assert!(fts.expr.starts_with("\"near\" AND"), "{}", fts.expr);
    }
}
