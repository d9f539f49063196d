//! The archivist's pages: full-text search with filters, highlighted snippets, paging and
//! URLs that can be shared; the dossier of a ticket; originals and searchable PDFs to download.

use super::{i18n, marked, page, query_string, when, App, Auth, WebError};
use crate::domain::EventKind;
use crate::model::{Channel, Recorded, Status};
use crate::search::SearchQuery;
use crate::store::prelude::*;
use crate::store::TicketFilter;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

const PER_PAGE: usize = 20;

#[derive(Deserialize, Default, Clone)]
pub struct SearchForm {
    #[serde(default)]
    pub(crate) q: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    office: String,
    /// Received on or after (YYYY-MM-DD).
    #[serde(default)]
    from: String,
    /// Received on or before (YYYY-MM-DD).
    #[serde(default)]
    to: String,
    #[serde(default)]
    sender: String,
    page: Option<usize>,
}

impl SearchForm {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("q", self.q.clone()),
            ("topic", self.topic.clone()),
            ("channel", self.channel.clone()),
            ("status", self.status.clone()),
            ("office", self.office.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("sender", self.sender.clone()),
        ]
    }

    fn url(&self, page: usize) -> String {
        let mut pairs = self.pairs();
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("/search?{}", query_string(&borrowed))
    }

    pub(crate) fn filter(&self) -> Result<TicketFilter, String> {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let (since, until) = super::day_range(&self.from, &self.to)?;
        Ok(TicketFilter {
            status: opt(&self.status)
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| e.to_string())?,
            topic: opt(&self.topic),
            channel: opt(&self.channel)
                .map(|s| s.parse::<Channel>())
                .transpose()
                .map_err(|e| e.to_string())?,
            office: opt(&self.office),
            since,
            until,
            sender: opt(&self.sender),
            ..TicketFilter::default()
        })
    }
}

/// One row of the results, from a search hit or a filtered listing.
struct Row {
    code: String,
    received_at: String,
    channel: String,
    sender: Option<String>,
    subject: String,
    topic: Option<String>,
    status: String,
    snippet: String,
}

pub async fn search(
    State(app): State<App>,
    auth: Auth,
    Query(form): Query<SearchForm>,
) -> Result<Response, WebError> {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let page_no = form.page.unwrap_or(1).max(1);
    let asked = form.pairs().iter().any(|(_, v)| !v.trim().is_empty());
    let outcome: Result<Vec<Row>, String> = match (form.filter(), asked) {
        (Err(e), _) => Err(e),
        (Ok(_), false) => Ok(Vec::new()),
        (Ok(mut filter), true) => {
            filter.limit = Some(PER_PAGE + 1);
            filter.offset = Some((page_no - 1) * PER_PAGE);
            let q = form.q.trim().to_string();
            let parsed = if q.is_empty() {
                None
            } else {
                Some(SearchQuery::parse(&q).map_err(|e| e.to_string()))
            };
            match parsed {
                Some(Err(e)) => Err(e),
                Some(Ok(query)) => {
                    let hits = app
                        .with_store(move |s| Ok(s.search(&query, &filter)?))
                        .await?;
                    Ok(hits
                        .into_iter()
                        .map(|h| Row {
                            code: h.code,
                            received_at: h.received_at,
                            channel: h.channel,
                            sender: h.sender,
                            subject: h.subject,
                            topic: h.topic,
                            status: h.status,
                            snippet: h.snippet,
                        })
                        .collect())
                }
                None => {
                    let rows = app.with_store(move |s| Ok(s.list(&filter)?)).await?;
                    Ok(rows
                        .into_iter()
                        .map(|r| Row {
                            code: r.code,
                            received_at: r.received_at,
                            channel: r.channel,
                            sender: r.sender,
                            subject: r.subject,
                            topic: r.topic,
                            status: r.status,
                            snippet: String::new(),
                        })
                        .collect())
                }
            }
        }
    };
    let topics = app.topics();
    let select = |name: &str, id: &str, current: &str, options: Vec<(String, String)>| {
        html! {
            select id=(id) name=(name) {
                option value="" { (t("any")) }
                @for (v, label) in options { option value=(v) selected[v == current] { (label) } }
            }
        }
    };
    let content = html! {
        h1 { (t("search")) }
        form method="get" action="/search" class="search" role="search" {
            p class="q" {
                label for="q" { (t("search_words")) }
                input id="q" name="q" type="search" value=(form.q) autofocus[!asked]
                    aria-describedby="q-help";
                button type="submit" { (t("search_button")) }
            }
            p id="q-help" class="muted help" { (t("search_help")) }
            div class="filters" {
                p { label for="f-topic" { (t("topic")) }
                    (select("topic", "f-topic", &form.topic, topics.iter().map(|(n, l, _)| (n.clone(), format!("{n} — {l}"))).collect())) }
                p { label for="f-channel" { (t("channel")) }
                    (select("channel", "f-channel", &form.channel, Channel::ALL.iter().map(|c| (c.as_str().to_string(), t(c.as_str()).to_string())).collect())) }
                p { label for="f-status" { (t("status")) }
                    (select("status", "f-status", &form.status, Status::ALL.iter().map(|s| (s.as_str().to_string(), t(s.as_str()).to_string())).collect())) }
                p { label for="f-office" { (t("office")) } input id="f-office" name="office" value=(form.office); }
                p { label for="f-sender" { (t("sender")) } input id="f-sender" name="sender" value=(form.sender); }
                p { label for="f-from" { (t("from_date")) } input id="f-from" name="from" type="date" value=(form.from); }
                p { label for="f-to" { (t("to_date")) } input id="f-to" name="to" type="date" value=(form.to); }
            }
        }
        @match &outcome {
            Err(e) => { p class="error" role="alert" { (e) } }
            Ok(rows) if asked => {
                section aria-labelledby="results-h" {
                    h2 id="results-h" {
                        @if rows.is_empty() { (t("no_results")) }
                        @else { (t("results")) " " ((page_no - 1) * PER_PAGE + 1) "–" ((page_no - 1) * PER_PAGE + rows.len().min(PER_PAGE)) }
                    }
                    ol class="results" start=((page_no - 1) * PER_PAGE + 1) {
                        @for r in rows.iter().take(PER_PAGE) {
                            li {
                                h3 { a href=(format!("/tickets/{}", r.code)) { (r.code) " · " (if r.subject.is_empty() { "—" } else { &r.subject }) } }
                                p class="muted" {
                                    (when(&r.received_at)) " · " (t(&r.channel)) " · " (r.sender.as_deref().unwrap_or("—"))
                                    " · " (r.topic.as_deref().unwrap_or("—")) " · " (t(&r.status))
                                    " · " a href=(format!("/tickets/{}/dossier", r.code)) { (t("dossier")) }
                                }
                                @if !r.snippet.is_empty() { p class="snippet" { (marked(&r.snippet)) } }
                            }
                        }
                    }
                    nav class="pager" aria-label=(t("pages")) {
                        @if page_no > 1 { a rel="prev" href=(form.url(page_no - 1)) { "← " (t("previous")) } }
                        @if rows.len() > PER_PAGE { a rel="next" href=(form.url(page_no + 1)) { (t("next")) " →" } }
                    }
                }
            }
            Ok(_) => {}
        }
    };
    Ok(page(lang, Some(&auth), t("search"), content))
}

pub async fn dossier(
    State(app): State<App>,
    auth: Auth,
    Path(code): Path<String>,
) -> Result<Response, WebError> {
    let (ticket, links) = app
        .with_store(move |s| Ok((s.ticket(&code)?, s.dossier(&code)?)))
        .await?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let follow_ups: Vec<_> = ticket
        .events
        .iter()
        .filter(|e| match &e.what {
            Recorded::Known(h) => matches!(
                h.kind(),
                EventKind::MessageReceived
                    | EventKind::PecReceipt
                    | EventKind::DuplicateReceived
                    | EventKind::DuplicateMerged
                    | EventKind::ReplyQueued
                    | EventKind::ReplySent
            ),
            Recorded::Other { .. } => false,
        })
        .collect();
    let content = html! {
        p { a href=(format!("/tickets/{}", ticket.code)) { "← " (ticket.code) } }
        h1 { (t("dossier")) ": " (ticket.code) }
        p { (when(&ticket.received_at)) " · " (t(ticket.channel.as_str())) " · " (ticket.subject) }
        h2 { (t("follow_ups")) " (" (follow_ups.len()) ")" }
        @if follow_ups.is_empty() { p class="muted" { (t("none")) } }
        ul {
            @for e in &follow_ups {
                @let detail = e.detail();
                li { (when(&e.at)) " · " (t(e.kind())) " · " (e.actor)
                    @if let Some(s) = detail.get("subject").and_then(|v| v.as_str()) { " · " (s) }
                    @if let Some(c) = detail.get("code").and_then(|v| v.as_str()) { " · " a href=(format!("/tickets/{c}")) { (c) } }
                }
            }
        }
        h2 { (t("linked_tickets")) " (" (links.len()) ")" }
        @if links.is_empty() { p class="muted" { (t("none")) } }
        table class="tickets" {
            thead { tr { th scope="col" { (t("code")) } th scope="col" { (t("received")) } th scope="col" { (t("channel")) } th scope="col" { (t("subject")) } th scope="col" { (t("why")) } } }
            tbody {
                @for l in &links {
                    tr {
                        td { a href=(format!("/tickets/{}", l.code)) { (l.code) } }
                        td { (when(&l.received_at)) }
                        td { (t(&l.channel)) }
                        td { (l.subject) }
                        td { (l.reasons.join("; ")) @if l.suggested { " " span class="muted" { "(" (t("suggested")) ")" } } }
                    }
                }
            }
        }
    };
    Ok(page(lang, Some(&auth), t("dossier"), content))
}

#[derive(Deserialize, Default)]
pub struct FileQuery {
    download: Option<String>,
}

/// Content types a browser may show inline; everything else is downloaded as bytes.
fn inline_type(mime: &str) -> Option<&'static str> {
    match mime {
        "application/pdf" => Some("application/pdf"),
        "image/png" => Some("image/png"),
        "image/jpeg" => Some("image/jpeg"),
        "image/gif" => Some("image/gif"),
        "text/plain" => Some("text/plain; charset=utf-8"),
        // The ticket page's player (a voicemail).
        "audio/wav" => Some("audio/wav"),
        _ => None,
    }
}

/// `filename` for the header: ASCII fallback plus the UTF-8 name (RFC 6266), with nothing
/// that could end the header or name a path.
fn disposition(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii: String = clean
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        super::urlencode(&clean)
    )
}

pub async fn document_file(
    State(app): State<App>,
    _auth: Auth,
    Path((code, ord)): Path<(String, usize)>,
    Query(q): Query<FileQuery>,
) -> Result<Response, WebError> {
    let (doc, path) = app.with_store(move |s| Ok(s.document(&code, ord)?)).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
    let inline = inline_type(&doc.mime).filter(|_| q.download.is_none());
    let (content_type, kind) = match inline {
        Some(ct) => (ct, "inline"),
        None => ("application/octet-stream", "attachment"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition(kind, &doc.name)),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// The registration's segnatura (AgID `SegnaturaInformatica`), sealed with the AOO's key.
pub async fn segnatura(
    State(app): State<App>,
    _auth: Auth,
    Path(code): Path<String>,
) -> Result<Response, WebError> {
    let ticket = app.with_store(move |s| Ok(s.ticket(&code)?)).await?;
    let name = format!("segnatura-{}.xml", ticket.code);
    let app2 = app.clone();
    let xml = tokio::task::spawn_blocking(move || {
        let blobs = crate::store::blobs::BlobStore::new(&app2.data_dir);
        crate::register::segnatura_of(&ticket, &app2.pipeline, &blobs)
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
    .map_err(|e| match e {
        crate::register::RegisterError::NotConfigured | crate::register::RegisterError::NoSeal => {
            WebError::NotFound(e.to_string())
        }
        e => WebError::Internal(e.to_string()),
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                disposition("attachment", &name),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        xml,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_break_the_header() {
        let d = disposition("attachment", "a\"b\r\nSet-Cookie: x/../città.pdf");
        assert!(!d.contains('\r') && !d.contains('\n'), "{d}");
        assert!(
            d.starts_with("attachment; filename=\"a_b__Set-Cookie: x_.._citt_.pdf\""),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''a_b__Set-Cookie%3A%20x_.._citt%C3%A0.pdf"),
            "{d}"
        );
        assert_eq!(inline_type("text/html"), None);
        assert_eq!(inline_type("image/svg+xml"), None);
    }
}
