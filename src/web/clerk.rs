//! The clerk's pages: queues with counts, the ticket with its documents and history, the
//! actions on it (reclassify, route, status, note, reply, duplicate), a document beside its
//! text page by page, and requests registered by phone or at the desk.

use super::{i18n, page, query_string, when, App, Auth, TopicLabels, WebError};
use crate::extract;
use crate::model::{Channel, Document, Sender, Status, Ticket};
use crate::ocr::pages::PageImageError;
use crate::pipeline::Registration;
use crate::service::{tickets, topics};
use crate::store::prelude::*;
use crate::store::web::{QueueCounts, Role};
use crate::store::{TicketFilter, TicketSummary};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

const PAGE_SIZE: usize = 50;

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    status: Option<String>,
    topic: Option<String>,
    office: Option<String>,
    attention: Option<String>,
    page: Option<usize>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn queue(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<QueueQuery>,
) -> Result<Response, WebError> {
    if !auth.may_edit() {
        // Archivists start from the search page.
        return Ok(Redirect::to("/search").into_response());
    }
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let status = match nonempty(&q.status) {
        Some(s) => Some(
            s.parse::<Status>()
                .map_err(|e| WebError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    let filter = TicketFilter {
        status,
        topic: nonempty(&q.topic),
        office: nonempty(&q.office),
        needs_attention: q.attention.as_deref().map(|a| a == "1"),
        ..TicketFilter::default()
    };
    let page_no = q.page.unwrap_or(1).max(1);
    let (counts, rows, total) = app
        .with_store(move |s| {
            let rows = s.queue(&filter, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)?;
            Ok((s.queue_counts()?, rows, s.count_matching(&filter)?))
        })
        .await?;
    let labels = app.topic_labels(lang);
    let here = |extra: &[(&str, &str)]| -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("status", q.status.as_deref().unwrap_or("")),
            ("topic", q.topic.as_deref().unwrap_or("")),
            ("office", q.office.as_deref().unwrap_or("")),
            ("attention", q.attention.as_deref().unwrap_or("")),
        ];
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k, v));
        }
        format!("/?{}", query_string(&pairs))
    };
    let content = html! {
        h1 { (t("queue")) }
        div class="queue" {
            aside class="counts" aria-label=(t("counts")) {
                (counts_box(lang, &counts, &labels))
            }
            section class="list" {
                p class="summary" {
                    (total) " " (t("tickets_found"))
                    @if q.status.is_some() || q.topic.is_some() || q.office.is_some() || q.attention.is_some() {
                        " · " a href="/" { (t("all_open")) }
                    }
                }
                (ticket_table(&auth, &labels, &rows, &here(&[])))
                nav class="pager" aria-label=(t("pages")) {
                    @if page_no > 1 { a rel="prev" href=(here(&[("page", &(page_no - 1).to_string())])) { "← " (t("previous")) } }
                    @if page_no * PAGE_SIZE < total as usize { a rel="next" href=(here(&[("page", &(page_no + 1).to_string())])) { (t("next")) " →" } }
                }
            }
        }
    };
    Ok(page(lang, Some(&auth), t("queue"), content))
}

fn counts_box(lang: i18n::Lang, c: &QueueCounts, labels: &TopicLabels) -> Markup {
    let t = |k| i18n::t(lang, k);
    let link = |k: &str, v: &str| format!("/?{}", query_string(&[(k, v)]));
    html! {
        h2 { (t("to_do")) }
        ul {
            li { a href="/?attention=1" { (t("needs_attention")) } " " span class="count" { (c.needs_attention) } }
            @for (topic, n) in c.by_topic.iter().filter(|(t, _)| t == "unsorted") {
                li { a href=(link("topic", topic)) { (t("unsorted")) } " " span class="count" { (n) } }
            }
        }
        h2 { (t("by_status")) }
        ul { @for (s, n) in &c.by_status { li { a href=(link("status", s)) { (t(s)) } " " span class="count" { (n) } } } }
        h2 { (t("by_topic")) }
        ul { @for (s, n) in &c.by_topic { li { a href=(link("topic", s)) { (labels.of(s)) } " " span class="count" { (n) } } } }
        @if !c.by_office.is_empty() {
            h2 { (t("by_office")) }
            ul { @for (s, n) in &c.by_office { li { a href=(link("office", s)) { (s) } " " span class="count" { (n) } } } }
        }
    }
}

/// The queue's table. A ticket nobody has settled shows the classifier's two best guesses;
/// for an unsorted one each is a button that settles it (and teaches the model).
pub(super) fn ticket_table(
    auth: &Auth,
    labels: &TopicLabels,
    rows: &[TicketSummary],
    back: &str,
) -> Markup {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let edit = auth.may_edit();
    html! {
        table class="tickets" {
            thead { tr {
                th scope="col" { (t("code")) } th scope="col" { (t("received")) } th scope="col" { (t("channel")) }
                th scope="col" { (t("sender")) } th scope="col" { (t("subject")) } th scope="col" { (t("topic")) }
                th scope="col" { (t("status")) }
            } }
            tbody {
                @for r in rows {
                    tr class=[r.needs_attention.then_some("attention")] {
                        td { a href=(format!("/tickets/{}", r.code)) { (r.code) } }
                        td { (when(&r.received_at)) }
                        td { (t(&r.channel)) }
                        td { (r.sender.as_deref().unwrap_or("—")) }
                        td {
                            @if r.needs_attention { span class="flag" title=(t("needs_attention")) { "⚠ " } }
                            (r.subject)
                        }
                        td {
                            (r.topic.as_deref().map_or("—", |k| labels.of(k)))
                            @if r.topic.as_deref() == Some(crate::classify::rules::UNSORTED) && !r.topic_guesses.is_empty() {
                                @if edit && r.status != "closed" {
                                    (guess_buttons(auth, labels, &r.code, &r.topic_guesses, Some(back)))
                                } @else {
                                    br; span class="muted" { (t("best_guesses")) ": "
                                        (guess_text(labels, &r.topic_guesses)) }
                                }
                            }
                        }
                        td { span class=(format!("status {}", r.status)) { (t(&r.status)) } }
                    }
                }
            }
        }
    }
}

/// The classifier's best guesses as buttons: one click sets that topic (and teaches the
/// model), then goes `back` (the queue it came from) or to the ticket.
fn guess_buttons(
    auth: &Auth,
    labels: &TopicLabels,
    code: &str,
    guesses: &[(String, f32)],
    back: Option<&str>,
) -> Markup {
    let t = |k| i18n::t(auth.lang, k);
    html! {
        form method="post" action=(format!("/tickets/{code}/action")) class="guesses" {
            input type="hidden" name="csrf" value=(auth.session.csrf);
            input type="hidden" name="action" value="reclassify";
            @if let Some(b) = back { input type="hidden" name="back" value=(b); }
            span class="muted" { (t("best_guesses")) ": " }
            @for (k, p) in guesses {
                button type="submit" name="topic" value=(k) title=(t("settle_as")) {
                    (labels.of(k)) " " (format!("{:.0}%", p * 100.0))
                }
                " "
            }
        }
    }
}

fn guess_text(labels: &TopicLabels, guesses: &[(String, f32)]) -> String {
    guesses
        .iter()
        .map(|(k, p)| format!("{} {:.0}%", labels.of(k), p * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ticket(
    State(app): State<App>,
    auth: Auth,
    Path(code): Path<String>,
    Query(msg): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, WebError> {
    let (ticket, offices) = app
        .with_store(move |s| Ok((s.ticket(&code)?, s.offices()?)))
        .await?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let topics = app.topics();
    let mut all_offices: Vec<String> = topics
        .iter()
        .map(|(_, _, o)| o.clone())
        .filter(|o| !o.is_empty())
        .chain(offices)
        .chain(app.pipeline.office.clone())
        .collect();
    all_offices.sort();
    all_offices.dedup();
    let done = msg.get("done").map(String::as_str);
    let content = html! {
        @if let Some(d) = done { p class="notice" role="status" { (t(match d { "reply" => "done_reply", _ => "done" })) } }
        h1 { span class="code" { (ticket.code) } " " (if ticket.subject.is_empty() { "—" } else { &ticket.subject }) }
        @if let Some(a) = &ticket.annulled {
            p class="annulled" role="note" {
                strong { (t("annulled_banner")) } " " (when(&a.at)) " — " (a.by) ": " (a.reason)
                @if !a.act.is_empty() { " (" (t("annul_act")) ": " (a.act) ")" }
            }
        }
        @if ticket.needs_attention {
            p class="attention" role="note" { strong { (t("needs_attention")) ": " } (ticket.attention_reason.as_deref().unwrap_or("")) }
        }
        div class="ticket" {
            section class="facts" aria-labelledby="facts-h" {
                h2 id="facts-h" { (t("facts")) }
                (facts(&auth, &app.topic_labels(lang), &ticket, app.pipeline.register.is_some()))
                p { a href=(format!("/tickets/{}/dossier", ticket.code)) { (t("dossier")) " (" (ticket.dossier.len()) ")" } }
            }
            section class="body" aria-labelledby="body-h" {
                @if let Some(summary) = &ticket.summary {
                    h2 id="summary-h" { (t("summary")) }
                    p class="summary" { (summary) }
                }
                h2 id="body-h" { (t("body")) }
                pre class="text" { (ticket.body) }
            }
        }
        section aria-labelledby="docs-h" {
            h2 id="docs-h" { (t("documents")) " (" (ticket.documents.len()) ")" }
            (documents(lang, &ticket))
        }
        @if auth.may_edit() {
            section aria-labelledby="actions-h" class="actions" {
                h2 id="actions-h" { (t("actions")) }
                (actions(&auth, &ticket, &topics, &all_offices))
            }
        }
        section aria-labelledby="history-h" {
            h2 id="history-h" { (t("history")) }
            (history(lang, &ticket))
        }
    };
    Ok(page(lang, Some(&auth), &ticket.code, content))
}

fn facts(auth: &Auth, labels: &TopicLabels, tk: &Ticket, segnatura: bool) -> Markup {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let unsorted = tk.topic.as_deref() == Some(crate::classify::rules::UNSORTED);
    let s = &tk.sender;
    html! {
        dl class="facts" {
            dt { (t("protocol")) } dd { (tk.protocol)
                @if segnatura { " · " a href=(format!("/tickets/{}/segnatura.xml", tk.code)) { (t("segnatura")) } }
            }
            dt { (t("channel")) } dd { (t(tk.channel.as_str())) }
            dt { (t("received")) } dd { (when(&tk.received_at)) }
            dt { (t("sender")) } dd {
                @if let Some(n) = &s.name { (n) br; }
                @if let Some(e) = &s.email { (e) br; }
                @if let Some(p) = &s.phone { (t("phone")) ": " (p) br; }
                @if let Some(f) = &s.fax { "fax: " (f) }
                @if s.is_empty() { "—" }
            }
            dt { (t("status")) } dd { span class=(format!("status {}", tk.status.as_str())) { (t(tk.status.as_str())) } }
            dt { (t("topic")) } dd {
                (tk.topic.as_deref().map_or("—", |k| labels.of(k)))
                @if let (Some(c), false) = (tk.topic_confidence, unsorted) { " (" (format!("{:.0}%", c * 100.0)) ")" }
                @if tk.topic_reviewed { " ✓ " span class="muted" { (t("reviewed")) } }
                // A guess nobody looked at yet: one click confirms it (and teaches the model).
                @if let (Some(topic), false, false, true) = (&tk.topic, tk.topic_reviewed, unsorted, auth.may_edit()) {
                    form method="post" action=(format!("/tickets/{}/action", tk.code)) class="confirm" {
                        input type="hidden" name="csrf" value=(auth.session.csrf);
                        input type="hidden" name="action" value="reclassify";
                        input type="hidden" name="topic" value=(topic);
                        button type="submit" { (t("confirm_topic")) }
                    }
                }
                @if !tk.topic_reviewed && !tk.topic_guesses.is_empty() {
                    @if unsorted && auth.may_edit() && tk.status != Status::Closed {
                        (guess_buttons(auth, labels, &tk.code, &tk.topic_guesses, None))
                    } @else {
                        br; span class="muted" { (t("best_guesses")) ": " (guess_text(labels, &tk.topic_guesses)) }
                    }
                }
                @if !tk.secondary_topics.is_empty() {
                    br; span class="muted" { (t("also")) ": "
                        (tk.secondary_topics.iter().map(|k| labels.of(k)).collect::<Vec<_>>().join(", ")) }
                }
            }
            @if let Some(r) = &tk.topic_reason { dt { (t("reason")) } dd class="reason" { (r) } }
            dt { (t("office")) } dd { (tk.office.as_deref().unwrap_or("—")) }
            @if let Some(p) = &tk.parent { dt { (t("duplicate_of")) } dd { a href=(format!("/tickets/{p}")) { (p) } } }
        }
    }
}

fn is_viewable_image(mime: &str) -> bool {
    matches!(
        mime,
        "image/tiff" | "image/jpeg" | "image/png" | "application/pdf"
    )
}

fn documents(lang: i18n::Lang, tk: &Ticket) -> Markup {
    let t = |k| i18n::t(lang, k);
    html! {
        ul class="documents" {
            @for (i, d) in tk.documents.iter().enumerate() {
                li class="document" {
                    @if is_viewable_image(&d.mime) && d.error.is_none() {
                        a href=(format!("/tickets/{}/documents/{i}", tk.code)) {
                            img class="thumb" loading="lazy" width="120"
                                src=(format!("/tickets/{}/documents/{i}/pages/1?w=240", tk.code))
                                alt=(format!("{} {}, {} 1", t("preview_of"), d.name, t("page")));
                        }
                    }
                    div {
                        @if d.mime.starts_with("audio/") && d.error.is_none() {
                            audio controls preload="none" src=(format!("/tickets/{}/documents/{i}/file", tk.code))
                                aria-label=(format!("{} {}", t("listen"), d.name)) {
                                a href=(format!("/tickets/{}/documents/{i}/file?download=1", tk.code)) { (t("download")) }
                            }
                            br;
                        }
                        a href=(format!("/tickets/{}/documents/{i}", tk.code)) { strong { (d.name) } }
                        " " span class="muted" { (d.mime) " · " (human_size(d.size))
                            @if let Some(p) = d.pages { " · " (p) " " (t("pages_n")) }
                            @if let Some(secs) = d.duration_secs { " · " (crate::extract::audio::shown_duration(secs)) }
                            @if d.kind == crate::model::DocumentKind::Digitised { " · " (t("searchable_pdf")) }
                            @if d.ocr { " · OCR" @if let Some(c) = d.ocr_confidence { " " (format!("{c:.0}")) } }
                        }
                        @if let Some(by) = &d.signed_by { br; span class="signed" { (t("signed_by")) ": " (by) } }
                        @if let Some(e) = &d.error { br; span class="error" { (e) } }
                        br;
                        a href=(format!("/tickets/{}/documents/{i}", tk.code)) { (t("view")) }
                        " · "
                        a href=(format!("/tickets/{}/documents/{i}/file?download=1", tk.code)) { (t("download")) }
                    }
                }
            }
        }
    }
}

fn human_size(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.0} KB", n as f64 / 1024.0),
        _ => format!("{:.1} MB", n as f64 / 1_048_576.0),
    }
}

fn actions(
    auth: &Auth,
    tk: &Ticket,
    topics: &[(String, String, String)],
    offices: &[String],
) -> Markup {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let action = format!("/tickets/{}/action", tk.code);
    let csrf = &auth.session.csrf;
    let hidden = |what: &str| {
        html! { input type="hidden" name="csrf" value=(csrf); input type="hidden" name="action" value=(what); }
    };
    html! {
        div class="forms" {
            form method="post" action=(action) {
                (hidden("reclassify"))
                label for="topic" { (t("reclassify")) }
                select id="topic" name="topic" {
                    @for (name, label, _) in topics {
                        option value=(name) selected[tk.topic.as_deref() == Some(name.as_str())] {
                            (if name == crate::classify::rules::UNSORTED { t("unsorted") } else { label.as_str() })
                        }
                    }
                }
                button type="submit" { (t("save_topic")) }
            }
            form method="post" action=(action) {
                (hidden("route"))
                label for="office" { (t("route")) }
                input id="office" name="office" list="offices" value=(tk.office.as_deref().unwrap_or("")) required;
                datalist id="offices" { @for o in offices { option value=(o) {} } }
                button type="submit" { (t("route_button")) }
            }
            form method="post" action=(action) {
                (hidden("status"))
                label for="status" { (t("change_status")) }
                select id="status" name="status" {
                    @for s in Status::ALL { option value=(s.as_str()) selected[s == tk.status] { (t(s.as_str())) } }
                }
                button type="submit" { (t("save_status")) }
            }
            form method="post" action=(action) {
                (hidden("duplicate"))
                label for="of" { (t("duplicate_of")) }
                input id="of" name="of" placeholder="URP-7K3M-9QXD" required;
                button type="submit" { (t("mark_duplicate")) }
            }
            @if auth.session.user.role == Role::Admin && tk.annulled.is_none() {
                form method="post" action=(action) class="wide annul" {
                    (hidden("annul"))
                    h3 { (t("annul_title")) }
                    p class="hint" { (t("annul_hint")) }
                    label for="annul-reason" { (t("annul_reason")) }
                    textarea id="annul-reason" name="text" rows="2" required {}
                    label for="annul-act" { (t("annul_act")) }
                    input id="annul-act" name="act";
                    p { input id="annul-confirm" name="confirm" type="checkbox" value="yes" required; " " label for="annul-confirm" { (t("annul_confirm")) } }
                    button type="submit" { (t("annul_button")) }
                }
            }
            @if tk.channel == Channel::Phone || tk.summary.is_some() {
                form method="post" action=(action) class="wide" {
                    (hidden("summary"))
                    label for="summary" { (t("write_summary")) }
                    textarea id="summary" name="text" rows="3" maxlength=(tickets::MAX_SUMMARY_CHARS) required { (tk.summary.as_deref().unwrap_or("")) }
                    button type="submit" { (t("save_summary")) }
                }
            }
            form method="post" action=(action) class="wide" {
                (hidden("note"))
                label for="note" { (t("add_note")) }
                textarea id="note" name="text" rows="3" required {}
                button type="submit" { (t("save_note")) }
            }
            // Answered the way it came: by email, or by text message to an SMS's sender.
            @let reply_to = match (tk.sender.email.as_deref().filter(|e| e.contains('@')), tk.sender.phone.as_deref()) {
                (Some(email), _) => Some((email, false)),
                (None, Some(phone)) if tk.channel == Channel::Sms => Some((phone, true)),
                _ => None,
            };
            @if let Some((to, by_sms)) = reply_to {
                form method="post" action=(action) class="wide" {
                    (hidden("reply"))
                    h3 { (t(if by_sms { "reply_by_sms" } else { "reply_to" })) " " (to) }
                    @if by_sms {
                        input type="hidden" name="subject" value=(format!("SMS [{}]", tk.code));
                    } @else {
                        label for="reply-subject" { (t("subject")) }
                        input id="reply-subject" name="subject" value=(format!("Re: {} [{}]", tk.subject, tk.code)) required;
                    }
                    label for="reply-text" { (t("text")) }
                    textarea id="reply-text" name="text" rows="6" maxlength=[by_sms.then_some(crate::sinks::sms::MAX_CHARS)] required {}
                    button type="submit" { (t("send_reply")) }
                }
            }
        }
    }
}

fn history(lang: i18n::Lang, tk: &Ticket) -> Markup {
    let t = |k| i18n::t(lang, k);
    html! {
        ol class="history" reversed {
            @for e in tk.events.iter().rev() {
                @let detail = e.detail();
                li {
                    time datetime=(e.at) { (when(&e.at)) } " · "
                    strong { (e.actor) } " · "
                    span class="kind" { (t(e.kind())) }
                    @if let Some(obj) = detail.as_object() {
                        @if !obj.is_empty() {
                            dl class="detail" {
                                @for (k, v) in obj {
                                    @if !v.is_null() {
                                        dt { (k) }
                                        dd { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) }
                                    }
                                }
                            }
                        }
                    } @else if !detail.is_null() {
                        " " (detail.to_string())
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    action: String,
    topic: Option<String>,
    office: Option<String>,
    status: Option<String>,
    text: Option<String>,
    subject: Option<String>,
    of: Option<String>,
    /// Annulment: the authorising act, and the admin's explicit confirmation.
    act: Option<String>,
    confirm: Option<String>,
    /// Where to go back to (the queue, for one-click triage).
    back: Option<String>,
}

pub async fn action(
    State(app): State<App>,
    auth: Auth,
    Path(code): Path<String>,
    axum::extract::Form(f): axum::extract::Form<ActionForm>,
) -> Result<Response, WebError> {
    auth.check_csrf(&f.csrf)?;
    if !auth.may_edit() {
        return Err(WebError::Forbidden);
    }
    let actor = auth.actor();
    let need = |v: &Option<String>, what: &str| -> Result<String, WebError> {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| WebError::BadRequest(format!("{what}: missing")))
    };
    let mut done = "done";
    let target = code.clone();
    match f.action.as_str() {
        "reclassify" => {
            let topic = need(&f.topic, "topic")?;
            let rules = app.rules()?;
            let settled = app
                .with_store(move |s| {
                    topics::reclassify(s, &rules, &target, &topic, &actor).map_err(learn_error)
                })
                .await?;
            app.learn(settled);
        }
        "route" => {
            let office = f.office.unwrap_or_default();
            app.with_store(move |s| Ok(tickets::route(s, &target, &office, &actor).map(|_| ())?))
                .await?;
        }
        "status" => {
            let status: Status = need(&f.status, "status")?
                .parse()
                .map_err(|e: crate::model::UnknownName| WebError::BadRequest(e.to_string()))?;
            // A pipeline without a classify stage still has statuses.
            let rules = app.rules_if_classifying()?;
            let settled = app
                .with_store(move |s| {
                    topics::set_status(s, rules.as_deref(), &target, status, &actor)
                        .map_err(learn_error)
                })
                .await?;
            app.learn(settled);
        }
        "note" => {
            let text = f.text.unwrap_or_default();
            app.with_store(move |s| Ok(tickets::note(s, &target, &text, &actor)?))
                .await?;
        }
        "duplicate" => {
            let of = f.of.unwrap_or_default();
            app.with_store(move |s| Ok(tickets::mark_duplicate(s, &target, &of, &actor)?))
                .await?;
        }
        "annul" => {
            auth.require(Role::Admin)?;
            if f.confirm.as_deref() != Some("yes") {
                return Err(WebError::BadRequest(
                    "l'annullamento va confermato / the annulment must be confirmed".into(),
                ));
            }
            let (reason, act) = (f.text.unwrap_or_default(), f.act.unwrap_or_default());
            app.with_store(move |s| {
                Ok(tickets::annul(
                    s,
                    &target,
                    &reason,
                    Some(&act),
                    None,
                    &actor,
                )?)
            })
            .await?;
        }
        "summary" => {
            let text = f.text.unwrap_or_default();
            app.with_store(move |s| Ok(tickets::summarize(s, &target, &text, &actor)?))
                .await?;
        }
        "reply" => {
            let (subject, text) = (f.subject.unwrap_or_default(), f.text.unwrap_or_default());
            let domain = app.pipeline.reply_domain();
            app.with_store(move |s| {
                Ok(tickets::reply(s, &target, &subject, &text, &actor, &domain).map(|_| ())?)
            })
            .await?;
            done = "reply";
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other}"))),
    }
    let code = crate::code::parse(&code).map_err(|e| WebError::BadRequest(e.to_string()))?;
    // One-click triage from the queue goes back to the queue, where it was.
    if let Some(back) = f
        .back
        .as_deref()
        .filter(|b| b.starts_with("/?") || *b == "/")
    {
        return Ok(Redirect::to(back).into_response());
    }
    Ok(Redirect::to(&format!("/tickets/{code}?done={done}")).into_response())
}

pub(crate) fn learn_error(e: topics::LearnError) -> WebError {
    match e {
        topics::LearnError::Store(s) => s.into(),
        topics::LearnError::UnknownTopic { .. } => WebError::BadRequest(e.to_string()),
        other => WebError::Internal(other.to_string()),
    }
}

#[derive(Deserialize, Default)]
pub struct ViewQuery {
    from: Option<u32>,
}

const PAGES_PER_VIEW: u32 = 10;

/// A document: each page's image beside its text (OCR or text layer); other documents as text.
pub async fn document_view(
    State(app): State<App>,
    auth: Auth,
    Path((code, ord)): Path<(String, usize)>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, WebError> {
    let lookup = code.clone();
    let (doc, pages) = app
        .with_store(move |s| {
            let (doc, _) = s.document(&lookup, ord)?;
            Ok((doc, s.page_texts(&lookup, ord)?))
        })
        .await?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let code = crate::code::parse(&code).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let count = doc.pages.unwrap_or(1).max(1);
    let from = q.from.unwrap_or(1).clamp(1, count);
    let to = (from + PAGES_PER_VIEW - 1).min(count);
    let imaged = is_viewable_image(&doc.mime) && doc.error.is_none();
    let text_of = |p: u32| pages.iter().find(|pt| pt.page == p);
    let content = html! {
        p { a href=(format!("/tickets/{code}")) { "← " (code) } }
        h1 { (doc.name) }
        p class="muted" {
            (doc.mime) " · " (human_size(doc.size))
            @if let Some(c) = doc.ocr_confidence { " · OCR " (format!("{c:.0}")) }
            " · " a href=(format!("/tickets/{code}/documents/{ord}/file")) { (t("open_original")) }
            " · " a href=(format!("/tickets/{code}/documents/{ord}/file?download=1")) { (t("download")) }
        }
        @if let Some(e) = &doc.error { p class="error" { (e) } }
        @if let Some(by) = &doc.signed_by { p class="signed" { (t("signed_by")) ": " (by) } }
        @if imaged {
            @for p in from..=to {
                section class="page" aria-label=(format!("{} {p}", t("page"))) {
                    figure {
                        img src=(format!("/tickets/{code}/documents/{ord}/pages/{p}")) alt=(format!("{} {p} {} {}", t("page"), t("of_doc"), doc.name)) loading="lazy";
                        figcaption { (t("page")) " " (p) " / " (count) }
                    }
                    div class="page-text" {
                        h2 { (t("text_of_page")) " " (p)
                            @if let Some(pt) = text_of(p) { @if let Some(c) = pt.ocr_confidence { " " span class="muted" { "(OCR " (format!("{c:.0}")) ")" } } }
                        }
                        @match text_of(p) {
                            Some(pt) if !pt.text.trim().is_empty() => { pre class="text" { (pt.text) } }
                            _ => { p class="muted" { (t("no_text")) } }
                        }
                    }
                }
            }
            nav class="pager" aria-label=(t("pages")) {
                @if from > 1 { a href=(format!("?from={}", from.saturating_sub(PAGES_PER_VIEW).max(1))) { "← " (t("previous")) } }
                @if to < count { a href=(format!("?from={}", to + 1)) { (t("next")) " →" } }
            }
        } @else {
            pre class="text" { (doc.text) }
        }
    };
    Ok(page(lang, Some(&auth), &doc.name, content))
}

#[derive(Deserialize, Default)]
pub struct ImageQuery {
    /// Width in pixels (thumbnails); the page's own, at most 1400, otherwise.
    w: Option<u32>,
}

/// One page of a scanned or PDF document as a PNG (TIFF faxes cannot be shown by browsers).
pub async fn page_image(
    State(app): State<App>,
    _auth: Auth,
    Path((code, ord, page_no)): Path<(String, usize, u32)>,
    Query(q): Query<ImageQuery>,
) -> Result<Response, WebError> {
    let (doc, path) = app.with_store(move |s| Ok(s.document(&code, ord)?)).await?;
    if !is_viewable_image(&doc.mime) {
        return Err(WebError::NotFound(
            "no page images for this document".into(),
        ));
    }
    if page_no == 0 || page_no > doc.pages.unwrap_or(1) {
        return Err(WebError::NotFound(format!(
            "{}: no page {page_no}",
            doc.name
        )));
    }
    let width = q.w.unwrap_or(1400).clamp(64, 1400);
    let renderer = app.clone();
    let png =
        tokio::task::spawn_blocking(move || render_page(&renderer, &path, &doc, page_no, width))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            // The bytes behind a document never change (content-addressed).
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        png,
    )
        .into_response())
}

fn render_page(
    app: &App,
    path: &std::path::Path,
    doc: &Document,
    page_no: u32,
    width: u32,
) -> Result<Vec<u8>, WebError> {
    let bytes = Arc::new(
        std::fs::read(path).map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?,
    );
    let file_type = extract::sniff(&bytes, &doc.name);
    app.processor
        .page_png(&bytes, file_type, page_no, width)
        .map_err(|e| match e {
            PageImageError::NotFound(e) => WebError::NotFound(e),
            PageImageError::Failed(e) => WebError::Internal(e),
        })
}

pub async fn register_form(auth: Auth) -> Result<Response, WebError> {
    if !auth.may_edit() {
        return Err(WebError::Forbidden);
    }
    Ok(register_page(&auth, None))
}

fn register_page(auth: &Auth, error: Option<&str>) -> Response {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let content = html! {
        h1 { (t("register")) }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        form method="post" action="/register" enctype="multipart/form-data" class="register" {
            input type="hidden" name="csrf" value=(auth.session.csrf);
            fieldset {
                legend { (t("channel")) }
                label { input type="radio" name="channel" value="phone" checked; " " (t("phone_channel")) }
                label { input type="radio" name="channel" value="desk"; " " (t("desk")) }
            }
            p { label for="name" { (t("name")) } input id="name" name="name" autocomplete="off"; }
            p { label for="email" { "Email" } input id="email" name="email" type="email" autocomplete="off"; }
            p { label for="phone" { (t("phone")) } input id="phone" name="phone" type="tel" autocomplete="off"; }
            p { label for="subject" { (t("subject")) } input id="subject" name="subject" required; }
            p { label for="body" { (t("request_text")) } textarea id="body" name="body" rows="8" required {} }
            p { label for="files" { (t("documents")) } input id="files" name="files" type="file" multiple; }
            p { button type="submit" { (t("register_button")) } }
        }
    };
    page(lang, Some(auth), t("register"), content)
}

pub async fn register(
    State(app): State<App>,
    auth: Auth,
    mut form: Multipart,
) -> Result<Response, WebError> {
    if !auth.may_edit() {
        return Err(WebError::Forbidden);
    }
    let bad = |e: axum::extract::multipart::MultipartError| WebError::BadRequest(e.to_string());
    let (mut csrf, mut channel, mut files) = (String::new(), String::new(), Vec::new());
    let mut sender = Sender::default();
    let (mut subject, mut body) = (String::new(), String::new());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "files" {
            let file_name = field.file_name().unwrap_or("").to_string();
            let bytes = field.bytes().await.map_err(bad)?;
            if !file_name.is_empty() || !bytes.is_empty() {
                files.push((super::upload_name(&file_name), bytes.to_vec()));
            }
            continue;
        }
        let value = field.text().await.map_err(bad)?.trim().to_string();
        let opt = |v: String| (!v.is_empty()).then_some(v);
        match name.as_str() {
            "csrf" => csrf = value,
            "channel" => channel = value,
            "name" => sender.name = opt(value),
            "email" => sender.email = opt(value),
            "phone" => sender.phone = opt(value),
            "subject" => subject = value,
            "body" => body = value,
            _ => {}
        }
    }
    auth.check_csrf(&csrf)?;
    let channel = match channel.as_str() {
        "desk" => Channel::Desk,
        "phone" => Channel::Phone,
        other => {
            return Err(WebError::BadRequest(format!(
                "channel {other}: expected phone or desk"
            )))
        }
    };
    if subject.is_empty() || body.is_empty() {
        return Ok(register_page(
            &auth,
            Some(i18n::t(auth.lang, "register_missing")),
        ));
    }
    let reg = Registration {
        channel,
        sender,
        subject,
        body,
        clerk: auth.actor(),
        files,
    };
    let code = app.file_registration(reg, auth.actor()).await?;
    Ok(Redirect::to(&format!("/tickets/{code}?done=1")).into_response())
}
