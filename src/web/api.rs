//! The JSON API (`/api/v1`) for the institution's website, apps and other systems: a citizen's
//! request filed as the web form files it, and its status as `/track` shows it (no token);
//! and, for other offices' systems with an API token (`Authorization: Bearer`, created and
//! revoked by an admin with `sportello users add-token`/`revoke-token`, kept by its hash,
//! each with a role), the clerk's list, ticket, search, topic and status. The contract is
//! `openapi.json` beside this file, served at `/api/v1/openapi.json`.
//!
//! Every error is an RFC 9457 problem (`application/problem+json`): a status, a title, what
//! went wrong, and for a request that does not validate, each field with its reason. The body
//! is read whole only up to [`MAX_BODY`]; a larger one is cut off and refused.

use super::clerk::learn_error;
use super::{App, ClientAddr, WebError};
use crate::code::{self, CodeError};
use crate::domain::login::Subject;
use crate::model::{Channel, Sender, Status};
use crate::pipeline::Registration;
use crate::search::SearchQuery;
use crate::service::topics::{self, Settled};
use crate::store::prelude::*;
use crate::store::web::Role;
use crate::store::TicketFilter;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Largest request body: a request's text is at most [`MAX_TEXT`] characters.
pub const MAX_BODY: usize = 64 << 10;
/// Longest request text a citizen may send (stated in the contract).
pub const MAX_TEXT: usize = 5000;
/// Longest name, surname or subject.
const MAX_LINE: usize = 200;
/// Days the office has to conclude a request (L. 241/1990, art. 2).
pub const DEADLINE_DAYS: i64 = 30;

pub const OPENAPI: &str = include_str!("openapi.json");

/// One field that did not validate.
#[derive(Debug, Serialize, PartialEq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// Ask for a bearer token (`WWW-Authenticate`).
    bearer: bool,
    /// Seconds before trying again (`Retry-After`), when known.
    retry_after: Option<i64>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            bearer: false,
            retry_after: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = serde_json::json!(self.errors);
        }
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        let h = res.headers_mut();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let wait = self.retry_after.unwrap_or(60).to_string();
            if let Ok(v) = wait.parse() {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if self.bearer {
            h.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"sportello\""),
            );
        }
        res
    }
}

impl From<WebError> for Problem {
    fn from(e: WebError) -> Problem {
        match e {
            WebError::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, "Not found", m),
            WebError::BadRequest(m) => Problem::new(StatusCode::BAD_REQUEST, "Bad request", m),
            WebError::Forbidden => Problem::new(StatusCode::FORBIDDEN, "Forbidden", "not allowed"),
            WebError::Login(_) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "authentication required",
            ),
            WebError::TooMany => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "too many requests from this address; try again in a minute",
            ),
            WebError::Internal(m) => {
                tracing::error!("api: {m}");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "the request could not be handled; it was logged",
                )
            }
        }
    }
}

/// A citizen's request as the website sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub name: Option<String>,
    pub surname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// A topic key of the rules, or `non_so`; a hint recorded with the request (the
    /// classifier still decides).
    pub topic: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub privacy_accepted: Option<bool>,
}

impl NewRequest {
    /// The same fields sent as a form (the web form, the API's multipart): empty ones are
    /// missing; the privacy box is ticked by `true`, `yes` or `on`.
    pub(crate) fn from_form(fields: &std::collections::HashMap<String, String>) -> NewRequest {
        let get = |k: &str| {
            fields
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        NewRequest {
            name: get("name"),
            surname: get("surname"),
            email: get("email"),
            phone: get("phone"),
            topic: get("topic"),
            subject: get("subject"),
            text: get("text"),
            privacy_accepted: Some(matches!(
                get("privacy_accepted").as_deref(),
                Some("true" | "yes" | "on")
            )),
        }
    }
}

/// A checked request as the register takes it: channel `webform`, the citizen's topic (by
/// its label) kept with the text as a hint, `clerk` naming the way it came.
pub(crate) fn registration(
    checked: Checked,
    rules: Option<&crate::classify::rules::Rules>,
    clerk: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Registration {
    let mut body = checked.text;
    if let Some(t) = &checked.topic {
        let label = rules.map_or(t.as_str(), |r| r.label(t));
        body = format!("{body}\n\n[Argomento indicato dal cittadino: {label}]");
    }
    Registration {
        channel: Channel::Webform,
        sender: checked.sender,
        subject: checked.subject,
        body,
        clerk: clerk.into(),
        files,
    }
}

/// What a valid request becomes.
#[derive(Debug, PartialEq)]
pub struct Checked {
    pub sender: Sender,
    pub topic: Option<String>,
    pub subject: String,
    pub text: String,
}

/// Checks every field at once, so the caller can fix them all in one go.
pub fn check(r: NewRequest, topics: Option<&[String]>) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let need_line = |field: &'static str, v: Option<String>, errors: &mut Vec<FieldError>| {
        let v = v.unwrap_or_default().trim().to_string();
        let problem = if v.is_empty() {
            Some("missing".to_string())
        } else if v.chars().any(char::is_control) {
            Some("one line, without control characters".to_string())
        } else if v.chars().count() > MAX_LINE {
            Some(format!("at most {MAX_LINE} characters"))
        } else {
            None
        };
        if let Some(message) = problem {
            errors.push(FieldError { field, message });
        }
        v
    };
    let name = need_line("name", r.name, &mut errors);
    let surname = need_line("surname", r.surname, &mut errors);
    let subject = need_line("subject", r.subject, &mut errors);
    let text = r.text.unwrap_or_default().trim().to_string();
    if text.is_empty() {
        errors.push(FieldError {
            field: "text",
            message: "missing".into(),
        });
    } else if text.chars().count() > MAX_TEXT {
        errors.push(FieldError {
            field: "text",
            message: format!("at most {MAX_TEXT} characters"),
        });
    }
    let email = r
        .email
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &email {
        let ok = e.len() <= 254
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
        if !ok {
            errors.push(FieldError {
                field: "email",
                message: "not an email address".into(),
            });
        }
    }
    let phone = match r
        .phone
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
    {
        Some(p) => match crate::entities::normalize_phone(&p) {
            Some(e164) => Some(e164),
            None => {
                errors.push(FieldError {
                    field: "phone",
                    message: "not a phone number".into(),
                });
                None
            }
        },
        None => None,
    };
    if email.is_none() && phone.is_none() && !errors.iter().any(|e| e.field == "phone") {
        errors.push(FieldError {
            field: "email",
            message: "an email address or a mobile number is needed to answer".into(),
        });
    }
    let topic = r
        .topic
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t != "non_so");
    if let (Some(t), Some(known)) = (&topic, topics) {
        if !known.contains(t) {
            errors.push(FieldError {
                field: "topic",
                message: format!("not a topic; one of: {}, non_so", known.join(", ")),
            });
        }
    }
    if r.privacy_accepted != Some(true) {
        errors.push(FieldError {
            field: "privacy_accepted",
            message: "the privacy notice must be read and accepted".into(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Checked {
        sender: Sender {
            name: Some(format!("{name} {surname}")),
            email,
            phone,
            fax: None,
        },
        topic,
        subject,
        text,
    })
}

/// The receipt of a filed request.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub code: String,
    pub protocol: String,
    pub received_at: String,
    /// The date by which the office must conclude it.
    pub deadline: String,
}

fn deadline(received_at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(received_at)
        .map(|t| {
            (t + chrono::Duration::days(DEADLINE_DAYS))
                .date_naive()
                .to_string()
        })
        .unwrap_or_default()
}

/// `POST /api/v1/requests`: files a citizen's request; 201 with its receipt.
pub async fn create(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    if !app.allow(super::Limit::Post, client).await? {
        return Err(WebError::TooMany.into());
    }
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (request, files, problems) = match mime.as_str() {
        "application/json" => {
            let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
                .await
                .map_err(|_| {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request not read",
                        format!("the request is larger than {MAX_BODY} bytes"),
                    )
                })?;
            let request: NewRequest = serde_json::from_slice(&body).map_err(|e| {
                Problem::new(StatusCode::BAD_REQUEST, "Malformed JSON", e.to_string())
            })?;
            (request, Vec::new(), Vec::new())
        }
        // The same fields as form fields, with the attachments as `files`.
        "multipart/form-data" => {
            let form = axum::extract::Multipart::from_request(req, &app)
                .await
                .map_err(|e| Problem::new(e.status(), "Request not read", e.body_text()))?;
            let (fields, files, problems) = super::citizen::read_form(form).await?;
            (NewRequest::from_form(&fields), files, problems)
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "send the request as application/json, or multipart/form-data with attachments",
            ))
        }
    };
    let rules = match &app.classifier {
        Some(c) => Some(c.rules().map_err(|e| WebError::Internal(e.to_string()))?),
        None => None,
    };
    let topics: Option<Vec<String>> = rules.as_ref().map(|r| r.topics.keys().cloned().collect());
    let invalid = |errors| Problem {
        errors,
        ..Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "some fields are missing or wrong: see errors",
        )
    };
    let checked = match check(request, topics.as_deref()) {
        Ok(c) if problems.is_empty() => c,
        Ok(_) => return Err(invalid(problems)),
        Err(mut errors) => {
            errors.extend(problems);
            return Err(invalid(errors));
        }
    };
    let reg = registration(checked, rules.as_deref(), "api", files);
    let code = app.file_registration(reg, "api".into()).await?;
    let filed = code.clone();
    let (protocol, received_at) = app
        .with_store(move |s| {
            let t = s.ticket(&filed)?;
            Ok((t.protocol, t.received_at))
        })
        .await?;
    let receipt = Receipt {
        deadline: deadline(&received_at),
        code: code.clone(),
        protocol,
        received_at,
    };
    let location = format!("/api/v1/requests/{code}");
    let mut res = json(StatusCode::CREATED, &receipt)?;
    if let Ok(v) = location.parse() {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET /api/v1/requests/{code}`: status, dates and office, as `/track` shows them.
pub async fn status(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    Path(typed): Path<String>,
) -> Result<Response, Problem> {
    if !app.allow(super::Limit::Track, client).await? {
        return Err(WebError::TooMany.into());
    }
    let code = match code::parse(&typed) {
        Ok(c) => c,
        Err(e @ (CodeError::BadCheck(_) | CodeError::Malformed(_))) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Not a tracking code",
                e.to_string(),
            ))
        }
    };
    let info = app.with_store(move |s| Ok(s.track(&code)?)).await?;
    json(StatusCode::OK, &info)
}

fn json(status: StatusCode, value: &impl Serialize) -> Result<Response, Problem> {
    let body = serde_json::to_string(value).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Who an API call acts as: a live token's name and role.
pub struct Caller {
    name: String,
    role: Role,
}

impl Caller {
    /// As recorded in a ticket's history.
    fn actor(&self) -> String {
        format!("api:{}", self.name)
    }

    /// Archivists read; clerks and admins also change tickets.
    fn may_edit(&self) -> Result<(), Problem> {
        match self.role {
            Role::Clerk | Role::Admin => Ok(()),
            Role::Archivist => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "this token's role (archivist) reads, it does not change tickets",
            )),
        }
    }
}

/// The caller of a clerk endpoint, from `Authorization: Bearer <token>`. A wrong token counts
/// against the address as a wrong password does (see [`crate::domain::login`]), and while
/// the address must wait no token is even looked up.
async fn caller(app: &App, client: IpAddr, headers: &HeaderMap) -> Result<Caller, Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let unauthorized = |detail: &str| {
        let mut p = Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail);
        p.bearer = true;
        p
    };
    let Some(token) = token else {
        return Err(unauthorized("send Authorization: Bearer <token>"));
    };
    let sha = crate::store::blobs::sha256_hex(token.as_bytes());
    let ip = client.to_string();
    let found = app
        .with_store(move |s| {
            let address = Subject::Address(&ip);
            let (failures, since) = s.login_failures(&address.key())?;
            let wait = address.wait_secs(failures, since);
            if wait > 0 {
                return Ok(Err(wait));
            }
            let found = s.api_token(&sha)?;
            if found.is_none() {
                s.record_login_failure(&address.key())?;
            }
            Ok(Ok(found))
        })
        .await?;
    match found {
        Err(wait) => {
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!("too many wrong tokens from this address; try again in {wait} s"),
            );
            p.retry_after = Some(wait);
            Err(p)
        }
        Ok(None) => Err(unauthorized("unknown or revoked token")),
        Ok(Some((name, role))) => Ok(Caller { name, role }),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    topic: Option<String>,
    office: Option<String>,
    channel: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn query_problem(e: QueryRejection) -> Problem {
    Problem::new(e.status(), "Bad query parameters", e.body_text())
}

/// Most tickets one list call returns.
const MAX_LIST: usize = 500;

/// `GET /api/v1/tickets`: the queue, newest first, filtered.
pub async fn list(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    caller(&app, client, &headers).await?;
    let Query(q) = q.map_err(query_problem)?;
    let bad = |e: crate::model::UnknownName| {
        Problem::new(StatusCode::BAD_REQUEST, "Bad request", e.to_string())
    };
    let filter = TicketFilter {
        status: q
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?,
        channel: q
            .channel
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?,
        topic: q.topic,
        office: q.office,
        limit: Some(q.limit.unwrap_or(100).min(MAX_LIST)),
        offset: q.offset,
        ..TicketFilter::default()
    };
    let tickets = app.with_store(move |s| Ok(s.list(&filter)?)).await?;
    json(StatusCode::OK, &tickets)
}

/// `GET /api/v1/tickets/{code}`: the whole ticket, as `export` writes it.
pub async fn show(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, Problem> {
    caller(&app, client, &headers).await?;
    let ticket = app.with_store(move |s| Ok(s.ticket(&code)?)).await?;
    json(StatusCode::OK, &ticket)
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    q: String,
    limit: Option<usize>,
}

/// `GET /api/v1/search?q=`: full-text search, best first, in the search page's language.
pub async fn search(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    p: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, Problem> {
    caller(&app, client, &headers).await?;
    let Query(p) = p.map_err(query_problem)?;
    let query = SearchQuery::parse(&p.q)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Bad query", e.to_string()))?;
    let filter = TicketFilter {
        limit: Some(p.limit.unwrap_or(50).min(MAX_LIST)),
        ..TicketFilter::default()
    };
    let hits = app
        .with_store(move |s| Ok(s.search(&query, &filter)?))
        .await?;
    json(StatusCode::OK, &hits)
}

/// A JSON body of a clerk endpoint, with the same problems as a citizen's request.
fn body_of<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), "Request not read", e.body_text()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send the request as application/json",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Malformed JSON", e.to_string()))
}

/// A clerk endpoint's change to a ticket: the caller must be allowed to edit, the body is
/// read as `T`, `apply` runs in a store turn with the caller as actor, and the model learns
/// from what it settled; returns the ticket as it is after.
async fn change<T: serde::de::DeserializeOwned + Send + 'static>(
    app: &App,
    client: IpAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    code: String,
    apply: impl FnOnce(&mut crate::store::Store, &str, T, &str) -> Result<Settled, WebError>
        + Send
        + 'static,
) -> Result<crate::model::Ticket, Problem> {
    let who = caller(app, client, headers).await?;
    who.may_edit()?;
    let what: T = body_of(headers, body)?;
    let actor = who.actor();
    let target = code.clone();
    let settled = app
        .with_store(move |s| apply(s, &target, what, &actor))
        .await?;
    app.learn(settled);
    Ok(app.with_store(move |s| Ok(s.ticket(&code)?)).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicChange {
    topic: String,
}

/// `POST /api/v1/tickets/{code}/topic`: a person's topic for the ticket (the model learns
/// from it, as from a clerk's in the web app).
pub async fn set_topic(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let rules = app.rules()?;
    let t = change(
        &app,
        client,
        &headers,
        body,
        code,
        move |s, code, c: TopicChange, actor| {
            topics::reclassify(s, &rules, code, &c.topic, actor).map_err(learn_error)
        },
    )
    .await?;
    let now = serde_json::json!({"code": t.code, "topic": t.topic, "office": t.office});
    json(StatusCode::OK, &now)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: String,
}

/// `POST /api/v1/tickets/{code}/status`: moves the ticket (closing it tells the citizen).
pub async fn set_status(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let rules = app.rules_if_classifying()?;
    let t = change(
        &app,
        client,
        &headers,
        body,
        code,
        move |s, code, c: StatusChange, actor| {
            let status: Status = c
                .status
                .parse()
                .map_err(|e: crate::model::UnknownName| WebError::BadRequest(e.to_string()))?;
            topics::set_status(s, rules.as_deref(), code, status, actor).map_err(learn_error)
        },
    )
    .await?;
    json(
        StatusCode::OK,
        &serde_json::json!({"code": t.code, "status": t.status}),
    )
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> NewRequest {
        NewRequest {
            name: Some("Maria".into()),
            surname: Some("Rossi".into()),
            email: Some("maria.rossi@example.it".into()),
            phone: None,
            topic: Some("gas".into()),
            subject: Some("Allaccio gas".into()),
            text: Some("Chiedo l'allaccio del gas per il MAP.".into()),
            privacy_accepted: Some(true),
        }
    }

    #[test]
    fn a_valid_request_is_taken_and_every_problem_is_named() {
        let topics = vec!["gas".to_string(), "housing".to_string()];
        let ok = check(valid(), Some(&topics)).unwrap();
        assert_eq!(ok.sender.name.as_deref(), Some("Maria Rossi"));
        assert_eq!(ok.topic.as_deref(), Some("gas"));
        let errors = check(NewRequest::default(), Some(&topics)).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "surname",
                "subject",
                "text",
                "email",
                "privacy_accepted"
            ]
        );
        let mut bad = valid();
        bad.email = Some("maria at example".into());
        bad.phone = Some("12".into());
        bad.topic = Some("astrologia".into());
        bad.subject = Some("Riga\r\nBcc: x@y.it".into());
        bad.text = Some("x".repeat(MAX_TEXT + 1));
        let fields: Vec<&str> = check(bad, Some(&topics))
            .unwrap_err()
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["subject", "text", "email", "phone", "topic"]);
        let mut phone_only = valid();
        phone_only.email = None;
        phone_only.phone = Some("333 123 4567".into());
        phone_only.topic = Some("non_so".into());
        let ok = check(phone_only, Some(&topics)).unwrap();
        assert_eq!(ok.sender.phone.as_deref(), Some("+393331234567"));
        assert_eq!(ok.topic, None);
        assert_eq!(deadline("2026-12-01T10:00:00Z"), "2026-12-31");
    }

    #[test]
    fn the_contract_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for path in [
            "/api/v1/requests",
            "/api/v1/requests/{code}",
            "/api/v1/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        assert_eq!(
            doc["components"]["schemas"]["NewRequest"]["properties"]["text"]["maxLength"],
            MAX_TEXT
        );
    }
}
