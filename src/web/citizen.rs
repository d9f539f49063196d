//! `/richiesta`: the citizens' online form, in the service flow of Designers Italia: the
//! form, a summary of everything entered to confirm, then a receipt with the tracking code,
//! the protocol number, the date of *presa in carico* and the deadline. The same receipt goes
//! by email or SMS through the outbox. Every page works without JavaScript.
//!
//! What a citizen types is checked as the API checks it ([`api::check`]); problems are shown
//! beside their fields, with what was typed kept. Attachments are limited in count, size
//! (enforced while the upload streams in: a huge one is cut off, never held whole) and type
//! (by content, not name), and go through the same extraction and OCR as any document.
//! Between the form and the confirmation the request waits in a draft folder of the store,
//! under a random name, for an hour at most. Abuse: a per-address limit, a honeypot field
//! that people never see, and a double-submit CSRF token.

use super::{api, cookie, i18n, page, App, ClientAddr, Language, WebError};
use crate::extract::{self, FileType};
use crate::store::prelude::*;
use axum::extract::{Form, Multipart, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use i18n::Lang;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Attachments a request may carry, each at most [`MAX_FILE_BYTES`].
pub const MAX_FILES: usize = 5;
pub const MAX_FILE_BYTES: usize = 10 << 20;
/// The whole form: the attachments and a margin for the fields.
pub const MAX_FORM_BYTES: usize = MAX_FILES * MAX_FILE_BYTES + (1 << 20);
const FORM_COOKIE: &str = "sportello_form";
/// How long a request waits for its confirmation.
const DRAFT_LIFE: Duration = Duration::from_secs(3600);

/// What the citizen typed, kept between the form and the confirmation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Draft {
    name: String,
    surname: String,
    email: String,
    phone: String,
    topic: String,
    subject: String,
    text: String,
    /// Attachment names, in order; their bytes are `f0`, `f1`… beside the draft.
    files: Vec<String>,
}

impl Draft {
    /// Its fields as the form sent them.
    fn fields(&self) -> std::collections::HashMap<String, String> {
        [
            ("name", &self.name),
            ("surname", &self.surname),
            ("email", &self.email),
            ("phone", &self.phone),
            ("topic", &self.topic),
            ("subject", &self.subject),
            ("text", &self.text),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

/// A request checked against the rules' topics, as the API checks it.
fn checked(app: &App, request: api::NewRequest) -> Result<api::Checked, Vec<api::FieldError>> {
    let keys: Vec<String> = topic_choices(app).into_iter().map(|(k, _)| k).collect();
    api::check(request, (!keys.is_empty()).then_some(keys.as_slice()))
}

fn drafts_dir(app: &App) -> PathBuf {
    app.data_dir.join("drafts")
}

/// A draft's folder, from a name that must be ours (64 hex digits), never a path.
fn draft_dir(app: &App, id: &str) -> Result<PathBuf, WebError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebError::BadRequest("not a draft".into()));
    }
    Ok(drafts_dir(app).join(id))
}

/// Drafts older than [`DRAFT_LIFE`] are forgotten.
fn sweep_drafts(app: &App) {
    let Ok(entries) = std::fs::read_dir(drafts_dir(app)) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > DRAFT_LIFE);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The form's own token, in a cookie and in a hidden field (double submit).
fn form_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, FORM_COOKIE).filter(|t| !t.is_empty())
}

fn with_form_cookie(mut res: Response, app: &App, token: &str) -> Response {
    let value = format!(
        "{FORM_COOKIE}={token}; Path=/richiesta; Max-Age=3600; HttpOnly; SameSite=Strict{}",
        if app.secure_cookies { "; Secure" } else { "" }
    );
    if let Ok(v) = value.parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The topics a citizen may pick, by their labels.
fn topic_choices(app: &App) -> Vec<(String, String)> {
    app.rules_if_classifying()
        .ok()
        .flatten()
        .map(|r| {
            r.topics
                .iter()
                .map(|(k, d)| (k.clone(), d.label.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn form(
    State(app): State<App>,
    Language(lang): Language,
    headers: HeaderMap,
) -> Response {
    let token = form_token(&headers).unwrap_or_else(super::auth::random_token);
    let res = form_page(&app, lang, &token, &Draft::default(), &[], None);
    with_form_cookie(res, &app, &token)
}

/// A field's problem, shown beside it.
type Problems = [api::FieldError];

/// A problem in the page's language: the checks speak English (the API's problems do); a
/// file's problem keeps its name in front.
fn shown(lang: Lang, message: &str) -> String {
    match message.rsplit_once(": ") {
        Some((file, what)) => format!("{file}: {}", i18n::t(lang, what)),
        None => i18n::t(lang, message).to_string(),
    }
}

fn form_page(
    app: &App,
    lang: Lang,
    token: &str,
    d: &Draft,
    problems: &Problems,
    notice: Option<&str>,
) -> Response {
    let t = |k| i18n::t(lang, k);
    let problem = |field: &str| problems.iter().find(|p| p.field == field);
    let described = |field: &str| problem(field).map(|_| format!("err-{field}"));
    let err = |field: &str| -> Markup {
        html! { @if let Some(p) = problem(field) { p class="field-error" id=(format!("err-{field}")) { (t("error")) ": " (shown(lang, &p.message)) } } }
    };
    let topics = topic_choices(app);
    let content = html! {
        h1 { (t("request_title")) }
        p { (t("request_intro")) }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        @if !problems.is_empty() {
            div class="error-summary" role="alert" {
                h2 { (t("request_fix")) }
                ul { @for p in problems { li { a href=(format!("#{}", p.field)) { (i18n::t(lang, &format!("f_{}", p.field))) ": " (shown(lang, &p.message)) } } } }
            }
        }
        form method="post" action="/richiesta" enctype="multipart/form-data" class="citizen" novalidate {
            input type="hidden" name="csrf" value=(token);
            fieldset {
                legend { (t("request_who")) }
                p { label for="name" { (t("f_name")) " " span class="req" { "(" (t("required")) ")" } }
                    input id="name" name="name" value=(d.name) autocomplete="given-name" required aria-invalid=[problem("name").map(|_| "true")] aria-describedby=[described("name")];
                    (err("name")) }
                p { label for="surname" { (t("f_surname")) " " span class="req" { "(" (t("required")) ")" } }
                    input id="surname" name="surname" value=(d.surname) autocomplete="family-name" required aria-invalid=[problem("surname").map(|_| "true")] aria-describedby=[described("surname")];
                    (err("surname")) }
                p class="hint" id="contact-hint" { (t("request_contact_hint")) }
                p { label for="email" { (t("f_email")) }
                    input id="email" name="email" type="email" value=(d.email) autocomplete="email" aria-invalid=[problem("email").map(|_| "true")] aria-describedby=(described("email").map_or("contact-hint".to_string(), |e| format!("contact-hint {e}")));
                    (err("email")) }
                p { label for="phone" { (t("f_phone")) }
                    input id="phone" name="phone" type="tel" value=(d.phone) autocomplete="tel" aria-invalid=[problem("phone").map(|_| "true")] aria-describedby=(described("phone").map_or("contact-hint".to_string(), |e| format!("contact-hint {e}")));
                    (err("phone")) }
            }
            fieldset {
                legend { (t("request_what")) }
                p { label for="topic" { (t("f_topic")) }
                    select id="topic" name="topic" aria-invalid=[problem("topic").map(|_| "true")] aria-describedby=[described("topic")] {
                        option value="non_so" selected[d.topic.is_empty() || d.topic == "non_so"] { (t("dont_know")) }
                        @for (key, label) in &topics { option value=(key) selected[d.topic == *key] { (label) } }
                    }
                    (err("topic")) }
                p { label for="subject" { (t("f_subject")) " " span class="req" { "(" (t("required")) ")" } }
                    input id="subject" name="subject" value=(d.subject) maxlength="200" required aria-invalid=[problem("subject").map(|_| "true")] aria-describedby=[described("subject")];
                    (err("subject")) }
                p { label for="text" { (t("f_text")) " " span class="req" { "(" (t("required")) ")" } }
                    span class="hint" id="text-hint" { (t("request_text_hint").replace("{n}", &api::MAX_TEXT.to_string())) }
                    textarea id="text" name="text" rows="8" maxlength=(api::MAX_TEXT) required aria-invalid=[problem("text").map(|_| "true")] aria-describedby=(described("text").map_or("text-hint".to_string(), |e| format!("text-hint {e}"))) { (d.text) }
                    (err("text")) }
                p { label for="files" { (t("f_files")) }
                    span class="hint" id="files-hint" { (t("request_files_hint").replace("{n}", &MAX_FILES.to_string()).replace("{mb}", &(MAX_FILE_BYTES >> 20).to_string())) }
                    input id="files" name="files" type="file" multiple accept=".pdf,.jpg,.jpeg,.png,.tif,.tiff,application/pdf,image/jpeg,image/png,image/tiff" aria-invalid=[problem("files").map(|_| "true")] aria-describedby=(described("files").map_or("files-hint".to_string(), |e| format!("files-hint {e}")));
                    (err("files")) }
            }
            // People never see this field; form-filling robots do.
            div class="hp" aria-hidden="true" {
                label for="website" { "Website" }
                input id="website" name="website" tabindex="-1" autocomplete="off";
            }
            p class="privacy" {
                input id="privacy_accepted" name="privacy_accepted" type="checkbox" value="yes" required aria-invalid=[problem("privacy_accepted").map(|_| "true")] aria-describedby=[described("privacy_accepted")];
                " "
                label for="privacy_accepted" { (t("privacy_accept")) " " }
                a href="/privacy" { (t("privacy_notice")) }
                (err("privacy_accepted"))
            }
            p { button type="submit" { (t("request_continue")) } }
        }
    };
    let mut res = page(lang, None, t("request_title"), content);
    if !problems.is_empty() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

/// Reads a multipart form: its fields, and each attachment streamed up to its limit and
/// checked by content (the web form's and the API's).
pub(crate) async fn read_form(
    mut form: Multipart,
) -> Result<
    (
        std::collections::HashMap<String, String>,
        Vec<(String, Vec<u8>)>,
        Vec<api::FieldError>,
    ),
    WebError,
> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::BadRequest(format!(
                "the form is larger than {} MB: it was cut off",
                MAX_FORM_BYTES >> 20
            ))
        } else {
            WebError::BadRequest(e.body_text())
        }
    };
    let (mut fields, mut files, mut problems) =
        (std::collections::HashMap::new(), Vec::new(), Vec::new());
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "files" {
            let file_name = field.file_name().unwrap_or("").to_string();
            let mut bytes = Vec::new();
            let mut too_big = false;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if bytes.len() + chunk.len() > MAX_FILE_BYTES {
                    too_big = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            if file_name.is_empty() && bytes.is_empty() {
                continue;
            }
            let clean = super::upload_name(&file_name);
            if too_big {
                problems.push(api::FieldError {
                    field: "files",
                    message: format!("{clean}: more than {} MB", MAX_FILE_BYTES >> 20),
                });
                continue;
            }
            let kind = extract::sniff(&bytes, &clean);
            if !matches!(
                kind,
                FileType::Pdf | FileType::Jpeg | FileType::Png | FileType::Tiff
            ) {
                problems.push(api::FieldError {
                    field: "files",
                    message: format!("{clean}: not a PDF, JPEG, PNG or TIFF file"),
                });
                continue;
            }
            files.push((clean, bytes));
            continue;
        }
        let value = field.text().await.map_err(bad)?;
        fields.insert(name, value);
    }
    if files.len() > MAX_FILES {
        problems.push(api::FieldError {
            field: "files",
            message: format!("at most {MAX_FILES} attachments"),
        });
    }
    Ok((fields, files, problems))
}

pub async fn submit(
    State(app): State<App>,
    Language(lang): Language,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    form: Multipart,
) -> Result<Response, WebError> {
    if !app.allow(super::Limit::Post, client).await? {
        return Err(WebError::TooMany);
    }
    let (fields, files, mut problems) = read_form(form).await?;
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let token = form_token(&headers).unwrap_or_default();
    if !super::auth::same_token(&get("csrf"), &token) {
        let fresh = super::auth::random_token();
        let res = form_page(
            &app,
            lang,
            &fresh,
            &Draft::default(),
            &[],
            Some(i18n::t(lang, "request_stale")),
        );
        return Ok(with_form_cookie(res, &app, &fresh));
    }
    if !get("website").is_empty() {
        return Err(WebError::BadRequest("request refused".into()));
    }
    let d = Draft {
        name: get("name"),
        surname: get("surname"),
        email: get("email"),
        phone: get("phone"),
        topic: get("topic"),
        subject: get("subject"),
        text: get("text"),
        files: files.iter().map(|(n, _)| n.clone()).collect(),
    };
    if let Err(mut errors) = checked(&app, api::NewRequest::from_form(&fields)) {
        errors.append(&mut problems);
        problems = errors;
    }
    if !problems.is_empty() {
        let notice = (!files.is_empty()).then(|| i18n::t(lang, "request_reattach"));
        return Ok(form_page(&app, lang, &token, &d, &problems, notice));
    }
    sweep_drafts(&app);
    let id = super::auth::random_token();
    let dir = draft_dir(&app, &id)?;
    let io = |e: std::io::Error| WebError::Internal(format!("cannot keep the draft: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    for (i, (_, bytes)) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("f{i}")), bytes).map_err(io)?;
    }
    let json = serde_json::to_vec(&d).map_err(|e| WebError::Internal(e.to_string()))?;
    std::fs::write(dir.join("draft.json"), json).map_err(io)?;
    Ok(summary_page(&app, lang, &token, &id, &d))
}

fn summary_page(app: &App, lang: Lang, token: &str, id: &str, d: &Draft) -> Response {
    let t = |k| i18n::t(lang, k);
    let topic = topic_choices(app)
        .into_iter()
        .find(|(k, _)| *k == d.topic)
        .map_or_else(|| t("dont_know").to_string(), |(_, label)| label);
    let content = html! {
        h1 { (t("request_summary")) }
        p { (t("request_summary_intro")) }
        dl class="summary" {
            dt { (t("f_name")) " " (t("f_surname")) } dd { (d.name) " " (d.surname) }
            @if !d.email.is_empty() { dt { (t("f_email")) } dd { (d.email) } }
            @if !d.phone.is_empty() { dt { (t("f_phone")) } dd { (d.phone) } }
            dt { (t("f_topic")) } dd { (topic) }
            dt { (t("f_subject")) } dd { (d.subject) }
            dt { (t("f_text")) } dd { pre class="text" { (d.text) } }
            dt { (t("f_files")) } dd {
                @if d.files.is_empty() { (t("none")) } @else { ul { @for f in &d.files { li { (f) } } } }
            }
            dt { (t("privacy_notice")) } dd { (t("privacy_given")) }
        }
        div class="summary-actions" {
            form method="post" action="/richiesta/conferma" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="draft" value=(id);
                button type="submit" { (t("request_confirm")) }
            }
            form method="post" action="/richiesta/modifica" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="draft" value=(id);
                button type="submit" class="secondary" { (t("request_edit")) }
            }
        }
    };
    page(lang, None, t("request_summary"), content)
}

#[derive(Deserialize)]
pub struct DraftForm {
    csrf: String,
    draft: String,
}

fn load_draft(app: &App, headers: &HeaderMap, f: &DraftForm) -> Result<(PathBuf, Draft), WebError> {
    let token = form_token(headers).unwrap_or_default();
    if !super::auth::same_token(&f.csrf, &token) {
        return Err(WebError::BadRequest(
            "modulo scaduto o non valido: ricominciare da /richiesta / stale or forged form: start again at /richiesta".into(),
        ));
    }
    let dir = draft_dir(app, &f.draft)?;
    let json = std::fs::read(dir.join("draft.json")).map_err(|_| {
        WebError::NotFound(
            "this request was already sent, or waited more than an hour: start again at /richiesta"
                .into(),
        )
    })?;
    let d: Draft = serde_json::from_slice(&json).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((dir, d))
}

pub async fn confirm(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<DraftForm>,
) -> Result<Response, WebError> {
    let (dir, d) = load_draft(&app, &headers, &f)?;
    let mut files = Vec::with_capacity(d.files.len());
    for (i, name) in d.files.iter().enumerate() {
        let bytes = std::fs::read(dir.join(format!("f{i}")))
            .map_err(|e| WebError::Internal(format!("a kept attachment is gone: {e}")))?;
        files.push((name.clone(), bytes));
    }
    // Taken once: a second click on "confirm" finds no draft.
    std::fs::remove_dir_all(&dir).map_err(|e| WebError::Internal(e.to_string()))?;
    // Checked again as when it was sent, so the register takes what the check made of the
    // words (the name, the number in E.164); an admin may have dropped a topic meanwhile,
    // which only loses the hint.
    let request = api::NewRequest {
        privacy_accepted: Some(true),
        ..api::NewRequest::from_form(&d.fields())
    };
    let ok = api::check(request, None)
        .map_err(|_| WebError::BadRequest("the draft no longer checks: start again".into()))?;
    let rules = app.rules_if_classifying()?;
    let reg = api::registration(ok, rules.as_deref(), "modulo web", files);
    let code = app.file_registration(reg, "modulo web".into()).await?;
    Ok(Redirect::to(&format!("/richiesta/ricevuta?codice={code}")).into_response())
}

pub async fn edit(
    State(app): State<App>,
    Language(lang): Language,
    headers: HeaderMap,
    Form(f): Form<DraftForm>,
) -> Result<Response, WebError> {
    let (dir, mut d) = load_draft(&app, &headers, &f)?;
    let _ = std::fs::remove_dir_all(&dir);
    let notice = (!d.files.is_empty()).then(|| i18n::t(lang, "request_reattach"));
    d.files.clear();
    Ok(form_page(&app, lang, &f.csrf, &d, &[], notice))
}

#[derive(Deserialize)]
pub struct ReceiptQuery {
    codice: String,
}

pub async fn receipt(
    State(app): State<App>,
    Language(lang): Language,
    Query(q): Query<ReceiptQuery>,
) -> Result<Response, WebError> {
    let t = |k| i18n::t(lang, k);
    let code = crate::code::parse(&q.codice).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let (info, protocol, acked) = app
        .with_store(move |s| {
            let info = s.track(&code)?;
            let ticket = s.ticket(&code)?;
            let acked = ticket.events.iter().any(|e| e.kind() == "ack_queued");
            Ok((info, ticket.protocol, acked))
        })
        .await?;
    let deadline = chrono::DateTime::parse_from_rfc3339(&info.received_at)
        .map(|t| {
            (t + chrono::Duration::days(api::DEADLINE_DAYS))
                .date_naive()
                .to_string()
        })
        .unwrap_or_default();
    let content = html! {
        h1 { (t("receipt_title")) }
        div class="receipt" role="status" {
            p { (t("receipt_intro")) }
            dl {
                dt { (t("track_code")) } dd class="code" { (info.code) }
                dt { (t("protocol")) } dd { (protocol) }
                dt { (t("taken_in_charge")) } dd { (super::when(&info.received_at)) }
                dt { (t("deadline")) } dd { (deadline) " " span class="muted" { (t("deadline_law")) } }
            }
            @if acked { p { (t("receipt_sent")) } }
            p { a href=(format!("/track?code={}", info.code)) { (t("track_link")) } }
        }
    };
    Ok(page(lang, None, t("receipt_title"), content))
}

/// The privacy notice (GDPR art. 13) and the accessibility statement: texts the admin keeps
/// beside the pipeline file (`privacy.<lang>.txt`, `accessibilita.<lang>.txt`), else the
/// shipped ones. Paragraphs are separated by blank lines.
fn statement(app: &App, lang: Lang, stem: &str, builtin_it: &str, builtin_en: &str) -> String {
    let dir = app
        .pipeline
        .file
        .as_ref()
        .and_then(|f| f.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::read_to_string(dir.join(format!("{stem}.{}.txt", lang.code()))).unwrap_or_else(|_| {
        match lang {
            Lang::It => builtin_it,
            Lang::En => builtin_en,
        }
        .to_string()
    })
}

fn statement_page(lang: Lang, title: &str, text: &str) -> Response {
    let content = html! {
        h1 { (title) }
        @for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) { p { (para) } }
        p { a href="/richiesta" { (i18n::t(lang, "request_title")) } }
    };
    page(lang, None, title, content)
}

pub async fn privacy(State(app): State<App>, Language(lang): Language) -> Response {
    let text = statement(
        &app,
        lang,
        "privacy",
        include_str!("../../pipelines/privacy.it.txt"),
        include_str!("../../pipelines/privacy.en.txt"),
    );
    statement_page(lang, i18n::t(lang, "privacy_notice"), &text)
}

pub async fn accessibility(State(app): State<App>, Language(lang): Language) -> Response {
    let text = statement(
        &app,
        lang,
        "accessibilita",
        include_str!("../../pipelines/accessibilita.it.txt"),
        include_str!("../../pipelines/accessibilita.en.txt"),
    );
    statement_page(lang, i18n::t(lang, "accessibility"), &text)
}
