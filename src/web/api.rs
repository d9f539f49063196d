//! The JSON API (`/api/v1`) for the institution's website, apps and other systems: a citizen's
//! request filed as the web form files it, and its status as `/track` shows it. The contract
//! is `openapi.json` beside this file, served at `/api/v1/openapi.json`.
//!
//! Every error is an RFC 9457 problem (`application/problem+json`): a status, a title, what
//! went wrong, and for a request that does not validate, each field with its reason. The body
//! is read whole only up to [`MAX_BODY`]; a larger one is cut off and refused.

use super::{App, WebError};
use crate::code::{self, CodeError};
use crate::model::{Channel, Sender};
use crate::pipeline::Registration;
use crate::store::prelude::*;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

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
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
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
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    if !app.api_limiter.allow(peer.ip()) {
        return Err(WebError::TooMany.into());
    }
    let body = body.map_err(|e| {
        let status = e.status();
        let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request is larger than {MAX_BODY} bytes")
        } else {
            e.body_text()
        };
        Problem::new(status, "Request not read", detail)
    })?;
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
    let request: NewRequest = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Malformed JSON", e.to_string()))?;
    let rules = match &app.classifier {
        Some(c) => Some(c.rules().map_err(|e| WebError::Internal(e.to_string()))?),
        None => None,
    };
    let topics: Option<Vec<String>> = rules.as_ref().map(|r| r.topics.keys().cloned().collect());
    let checked = check(request, topics.as_deref()).map_err(|errors| Problem {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        title: "Invalid request",
        detail: "some fields are missing or wrong: see errors".into(),
        errors,
    })?;
    let mut body = checked.text.clone();
    if let Some(t) = &checked.topic {
        let label = rules
            .as_ref()
            .and_then(|r| r.topics.get(t))
            .map_or(t.as_str(), |d| d.label.as_str());
        body = format!("{body}\n\n[Argomento indicato dal cittadino: {label}]");
    }
    let reg = Registration {
        channel: Channel::Webform,
        sender: checked.sender,
        subject: checked.subject,
        body,
        clerk: "api".into(),
        files: Vec::new(),
    };
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(typed): Path<String>,
) -> Result<Response, Problem> {
    if !app.track_limiter.allow(peer.ip()) {
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
