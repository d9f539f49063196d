//! `sportello serve`: the web app for clerks, archivists and admins, and the citizens' status
//! page. Server-rendered HTML (maud, checked at compile time, escaped by default); a small
//! stylesheet and script built into the binary; every page works with JavaScript off.
//!
//! The store is SQLite: handlers take a connection from a small pool and do their work on
//! tokio's blocking threads, so a slow query never stalls the event loop. Writes go through
//! the same `Store` methods the CLI uses, with the logged-in user as the actor.

/// Parses `body` as each form and query string the app accepts, as axum would (for the
/// fuzzer: what a browser sends is outside input).
#[doc(hidden)]
pub fn parse_forms(body: &[u8]) {
    fn try_as<T: serde::de::DeserializeOwned>(body: &[u8]) {
        let _ = serde_urlencoded::from_bytes::<T>(body);
    }
    try_as::<admin::RulesForm>(body);
    try_as::<admin::RulesQuery>(body);
    try_as::<admin::StatsQuery>(body);
    try_as::<archive::SearchForm>(body);
    try_as::<archive::FileQuery>(body);
    try_as::<auth::LoginForm>(body);
    try_as::<auth::LoginQuery>(body);
    try_as::<auth::CsrfOnly>(body);
    try_as::<clerk::ActionForm>(body);
    if let Ok(form) = serde_urlencoded::from_bytes::<archive::SearchForm>(body) {
        let _ = form.filter();
        let _ = crate::search::SearchQuery::parse(&form.q);
    }
}

mod admin;
mod api;
mod archive;
mod auth;
mod citizen;
mod clerk;
mod i18n;
mod track;

use crate::classify::Classifier;
use crate::config::Pipeline;
use crate::pipeline::Processor;
use crate::store::pool::{open_for_reads, spawn_store_threads, ReadPool, StoreJob};
use crate::store::prelude::*;
use crate::store::web::{Role, Session};
use crate::store::{Store, StoreError};
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use auth::{hash_password, random_token};
pub use i18n::Lang;

/// Validated settings of `sportello serve`.
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub pipeline: Pipeline,
    /// Labelled requests (JSON Lines) the rules editor backtests on, beside the store's
    /// clerk-reviewed tickets.
    pub labels: Option<PathBuf>,
    /// Mark cookies `Secure` (the app is reached over TLS through a proxy).
    pub secure_cookies: bool,
    /// Tracking-code lookups allowed per client address per minute.
    pub track_per_minute: u32,
}

pub(crate) struct Inner {
    pool: ReadPool,
    store_jobs: crossbeam_channel::Sender<StoreJob>,
    pub(crate) pipeline: Pipeline,
    rules_path: Option<PathBuf>,
    labels: Option<PathBuf>,
    /// Runs extraction, OCR and classification on requests registered at the desk.
    processor: Processor,
    classifier: Option<Classifier>,
    /// Retrains the topic model off the request path when clerks have settled enough.
    trainer: Option<Arc<crate::service::topics::Trainer>>,
    secure_cookies: bool,
    /// Per-address limits: tracking lookups, requests filed. Each holds its limit and this
    /// server's own count, in front of the store's (see [`track::Limiter`]).
    track_here: track::Limiter,
    post_here: track::Limiter,
    /// The store's folder (drafts of the citizens' form wait there).
    pub(crate) data_dir: PathBuf,
}

#[derive(Clone)]
pub(crate) struct App(Arc<Inner>);

/// Requests filed (the citizens' form, the API) per client address per minute.
const POSTS_PER_MINUTE: u32 = 10;

/// What a per-address limit counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Tracking-code lookups (page and API): codes must not be guessable by trying.
    Track,
    /// Requests filed by citizens (form and API).
    Post,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Track => "track",
            Limit::Post => "post",
        }
    }
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// Files a registered request (desk, phone, web form, API): its extraction, OCR and
    /// classification off the async threads (they can take seconds), then the filing in its
    /// store turn. Returns the code.
    async fn file_registration(
        &self,
        reg: crate::pipeline::Registration,
        actor: String,
    ) -> Result<String, WebError> {
        let worker = self.clone();
        let ticket = tokio::task::spawn_blocking(move || worker.processor.prepare_registered(reg))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
            .map_err(|e| WebError::Internal(e.to_string()))?;
        let prefix = self.pipeline.code_prefix.clone();
        self.with_store(move |s| {
            Ok(crate::service::tickets::register(
                s, &ticket, &prefix, &actor,
            )?)
        })
        .await
    }

    /// Runs `f` on a store thread, in turn (see [`spawn_store_threads`]).
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: StoreJob = Box::new(move |store| {
            // The client went away while the job waited: nothing to do.
            if answer.is_closed() {
                return;
            }
            let result = match store {
                Ok(s) => f(s),
                Err(e) => Err(WebError::Internal(format!("store unavailable: {e}"))),
            };
            let _ = answer.send(result);
        });
        self.store_jobs
            .send(job)
            .map_err(|_| WebError::Internal("the store threads have stopped".into()))?;
        answered
            .await
            .map_err(|_| WebError::Internal("the store job failed".into()))?
    }

    /// `with_store` on a pooled connection, without waiting for a store thread: for one quick
    /// indexed read done on every request (the session), which would otherwise make each page
    /// queue twice.
    async fn with_store_now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = app.pool.get()?;
            f(&mut store)
        })
        .await
        .map_err(|e| WebError::Internal(format!("worker failed: {e}")))?
    }

    /// Counts one request of `client` against `limit`; false when over it this minute. The
    /// counts are in the store, so several web servers behind a proxy share them.
    async fn allow(&self, limit: Limit, client: std::net::IpAddr) -> Result<bool, WebError> {
        let here = match limit {
            Limit::Track => &self.track_here,
            Limit::Post => &self.post_here,
        };
        if !here.allow(client) {
            return Ok(false);
        }
        let per_minute = here.per_minute();
        let subject = format!("{}:{client}", limit.name());
        self.with_store(move |s| {
            let now = chrono::Utc::now().timestamp();
            Ok(s.count_request(&subject, now, 60, per_minute)?)
        })
        .await
    }

    /// The rules in force (for settling a ticket's topic).
    fn rules(&self) -> Result<Arc<crate::classify::rules::Rules>, WebError> {
        self.rules_if_classifying()?.ok_or_else(|| {
            WebError::BadRequest("this pipeline has no classify stage, hence no topics".into())
        })
    }

    /// The rules in force, or `None` for a pipeline without a classify stage.
    fn rules_if_classifying(&self) -> Result<Option<Arc<crate::classify::rules::Rules>>, WebError> {
        self.classifier
            .as_ref()
            .map(|c| c.rules().map_err(|e| WebError::Internal(e.to_string())))
            .transpose()
    }

    /// After a clerk settled a ticket: retrain off the request path when enough were settled.
    fn learn(&self, settled: crate::service::topics::Settled) {
        if let (true, Some(t)) = (settled.retrain_due, &self.trainer) {
            t.kick();
        }
    }

    /// What people read for a topic: its label from the rules ("da smistare" for unsorted).
    fn topic_labels(&self, lang: i18n::Lang) -> TopicLabels {
        let mut map: std::collections::HashMap<String, String> = self
            .topics()
            .into_iter()
            .map(|(k, label, _)| (k, label))
            .collect();
        map.insert(
            crate::classify::rules::UNSORTED.to_string(),
            i18n::t(lang, "unsorted").to_string(),
        );
        TopicLabels(map)
    }

    /// Topics of the rules in force (name, label, office), for forms and filters.
    fn topics(&self) -> Vec<(String, String, String)> {
        let Some(rules) = self.classifier.as_ref().and_then(|c| c.rules().ok()) else {
            return Vec::new();
        };
        let mut out: Vec<_> = rules
            .topics
            .iter()
            .map(|(k, t)| (k.clone(), t.label.clone(), t.office.clone()))
            .collect();
        out.push((
            crate::classify::rules::UNSORTED.to_string(),
            "—".into(),
            String::new(),
        ));
        out
    }
}

/// Topic keys to their labels; a key the rules no longer have is shown as it is.
pub(crate) struct TopicLabels(std::collections::HashMap<String, String>);

impl TopicLabels {
    pub(crate) fn of<'a>(&'a self, key: &'a str) -> &'a str {
        self.0.get(key).map_or(key, String::as_str)
    }
}

/// What goes wrong in a handler, as the user sees it.
#[derive(Debug)]
pub(crate) enum WebError {
    NotFound(String),
    BadRequest(String),
    Forbidden,
    /// Not logged in: to the login page, then back here.
    Login(String),
    TooMany,
    Internal(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        match e {
            StoreError::NotFound(what) => WebError::NotFound(format!("{what}: not found")),
            StoreError::Code(e) => WebError::BadRequest(e.to_string()),
            StoreError::Query(e) => WebError::BadRequest(e.to_string()),
            StoreError::Conflict(e) => WebError::BadRequest(e),
            other => WebError::Internal(format!("{other:#}")),
        }
    }
}

impl From<crate::service::tickets::ActionError> for WebError {
    fn from(e: crate::service::tickets::ActionError) -> WebError {
        use crate::service::tickets::ActionError;
        match e {
            ActionError::Store(e) => e.into(),
            other => WebError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            WebError::Login(back) => {
                let to = format!("/login?next={}", urlencode(&back));
                return Redirect::to(&to).into_response();
            }
            WebError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Non autorizzato / Not allowed for your role".to_string(),
            ),
            WebError::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "Troppe richieste: riprovare tra un minuto / Too many requests: try again in a minute"
                    .to_string(),
            ),
            WebError::Internal(m) => {
                tracing::error!("web: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Errore interno / Internal error".to_string(),
                )
            }
        };
        let body = html! {
            (DOCTYPE)
            html lang="it" {
                head { meta charset="utf-8"; title { (status.as_u16()) } link rel="stylesheet" href="/static/app.css"; }
                body { main id="main" class="error" {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p role="alert" { (message) }
                    p { a href="/" { "Sportello" } }
                } }
            }
        };
        (status, html_response(body)).into_response()
    }
}

pub(crate) fn html_response(m: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string from pairs, leaving out empty values.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The logged-in user of a request (login page otherwise), with the interface language.
pub(crate) struct Auth {
    pub session: Session,
    pub lang: Lang,
}

impl Auth {
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.session.user.role == Role::Admin || self.session.user.role == role {
            Ok(())
        } else {
            Err(WebError::Forbidden)
        }
    }

    /// Clerks and admins change tickets; archivists read.
    pub fn may_edit(&self) -> bool {
        matches!(self.session.user.role, Role::Clerk | Role::Admin)
    }

    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if auth::same_token(token, &self.session.csrf) {
            Ok(())
        } else {
            Err(WebError::BadRequest(
                "modulo scaduto o non valido: ricaricare la pagina / stale or forged form: reload the page"
                    .into(),
            ))
        }
    }

    pub fn actor(&self) -> String {
        self.session.user.name.clone()
    }
}

impl FromRequestParts<App> for Auth {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Auth, WebError> {
        let lang = Lang::of(&parts.headers);
        let back = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let Some(token) = cookie(&parts.headers, auth::SESSION_COOKIE) else {
            return Err(WebError::Login(back));
        };
        let hash = crate::store::blobs::sha256_hex(token.as_bytes());
        match app.with_store_now(move |s| Ok(s.session(&hash)?)).await? {
            Some(session) => Ok(Auth { session, lang }),
            None => Err(WebError::Login(back)),
        }
    }
}

/// The interface language alone, for public pages.
pub(crate) struct Language(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for Language {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Language, Self::Rejection> {
        Ok(Language(Lang::of(&parts.headers)))
    }
}

/// The client's address, for the per-address limits and throttles. A request from this
/// machine that carries `X-Forwarded-For` came through a local reverse proxy (the way the
/// app is put behind TLS): the address the proxy appended is the client's. From anywhere
/// else the header is ignored, so a client cannot pick its own address.
pub(crate) struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        Ok(ClientAddr(client_addr(peer, &parts.headers)))
    }
}

pub(crate) fn client_addr(peer: std::net::IpAddr, headers: &HeaderMap) -> std::net::IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(peer)
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The frame of every page: skip link, header with navigation for the user's role, language
/// switch, main content.
pub(crate) fn page(lang: Lang, auth: Option<&Auth>, title: &str, content: Markup) -> Response {
    let t = |k| i18n::t(lang, k);
    let role = auth.map(|a| a.session.user.role);
    let body = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sportello" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { (t("skip")) }
                header class="top" {
                    a class="brand" href=(if role.is_some() { "/" } else { "/track" }) { "Sportello" }
                    @if let Some(a) = auth {
                        nav aria-label=(t("nav")) {
                            ul {
                                @if a.may_edit() {
                                    li { a href="/" { (t("queue")) } }
                                    li { a href="/register" { (t("register")) } }
                                }
                                li { a href="/search" { (t("search")) } }
                                @if a.session.user.role == Role::Admin {
                                    li { a href="/admin/rules" { (t("rules")) } }
                                    li { a href="/admin/stats" { (t("stats")) } }
                                    li { a href="/admin/users" { (t("users")) } }
                                }
                            }
                        }
                        form class="logout" method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(a.session.csrf);
                            span class="who" { (a.session.user.name) " (" (t(a.session.user.role.as_str())) ")" }
                            button type="submit" { (t("logout")) }
                        }
                    }
                    a class="lang" href=(format!("/lang?to={}", lang.other().code())) lang=(lang.other().code()) { (lang.other().name()) }
                }
                main id="main" tabindex="-1" { (content) }
                footer class="bottom" {
                    nav aria-label=(t("footer_nav")) {
                        a href="/richiesta" { (t("request_title")) }
                        " · " a href="/privacy" { (t("privacy_notice")) }
                        " · " a href="/accessibilita" { (t("accessibility")) }
                    }
                }
            }
        }
    };
    html_response(body)
}

/// Security headers on every response: no inline script can run even if escaping failed
/// somewhere, no sniffing, no framing by other sites.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const APP_CSS: &str = include_str!("app.css");
const APP_JS: &str = include_str!("app.js");

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn set_language(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::parse(q.get("to").map(String::as_str).unwrap_or("it"));
    // Back to the page the switch was clicked on, when it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            let host = headers.get(header::HOST)?.to_str().ok()?;
            let rest = r.split_once("://")?.1;
            let path = rest.strip_prefix(host)?;
            (path.starts_with('/') && !path.starts_with("//")).then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                i18n::LANG_COOKIE,
                lang.code()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", get(clerk::queue))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/lang", get(set_language))
        .route("/track", get(track::track))
        .route("/search", get(archive::search))
        .route("/register", get(clerk::register_form))
        .route(
            "/register",
            post(clerk::register).layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route("/tickets/{code}", get(clerk::ticket))
        .route("/tickets/{code}/action", post(clerk::action))
        .route("/tickets/{code}/dossier", get(archive::dossier))
        .route("/tickets/{code}/segnatura.xml", get(archive::segnatura))
        .route("/tickets/{code}/documents/{ord}", get(clerk::document_view))
        .route(
            "/tickets/{code}/documents/{ord}/file",
            get(archive::document_file),
        )
        .route(
            "/tickets/{code}/documents/{ord}/pages/{page}",
            get(clerk::page_image),
        )
        .route(
            "/admin/rules",
            get(admin::rules_form).post(admin::rules_post),
        )
        .route("/admin/stats", get(admin::stats))
        .route("/admin/users", get(admin::users))
        .route(
            "/api/v1/requests",
            // JSON is held to `api::MAX_BODY` by the handler; multipart carries attachments.
            post(api::create).layer(DefaultBodyLimit::max(citizen::MAX_FORM_BYTES)),
        )
        .route("/api/v1/requests/{code}", get(api::status))
        .route("/richiesta", get(citizen::form))
        .route(
            "/richiesta",
            post(citizen::submit).layer(DefaultBodyLimit::max(citizen::MAX_FORM_BYTES)),
        )
        .route("/richiesta/conferma", post(citizen::confirm))
        .route("/richiesta/modifica", post(citizen::edit))
        .route("/richiesta/ricevuta", get(citizen::receipt))
        .route("/privacy", get(citizen::privacy))
        .route("/accessibilita", get(citizen::accessibility))
        .route("/api/v1/tickets", get(api::list))
        .route("/api/v1/tickets/{code}", get(api::show))
        .route(
            "/api/v1/tickets/{code}/topic",
            post(api::set_topic).layer(DefaultBodyLimit::max(api::MAX_BODY)),
        )
        .route(
            "/api/v1/tickets/{code}/status",
            post(api::set_status).layer(DefaultBodyLimit::max(api::MAX_BODY)),
        )
        .route("/api/v1/search", get(api::search))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/admin/users/unlock", post(admin::unlock))
        .route("/admin/stats.csv", get(admin::stats_csv))
        .route(
            "/static/app.css",
            get(|| async { static_file("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { WebError::NotFound("pagina non trovata / page not found".into()) })
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

/// Why `serve` could not start or went down.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Classifier(#[from] crate::classify::ClassifierError),
    #[error(transparent)]
    Start(#[from] crate::pipeline::StartError),
    #[error("cannot listen or serve: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn build_app(settings: &ServeSettings) -> Result<App, ServeError> {
    // Opening once runs the migrations before any request.
    let store = open_for_reads(&settings.data_dir)?;
    let rules_path = settings
        .pipeline
        .classify_rules()
        .map(std::path::Path::to_path_buf);
    let classifier = match &rules_path {
        Some(p) => Some(Classifier::open(p, &settings.data_dir)?),
        None => None,
    };
    let processor = Processor::new(
        &settings.pipeline,
        store.blobs().clone(),
        &settings.data_dir,
    )?;
    let trainer = rules_path
        .as_ref()
        .map(|p| crate::service::topics::Trainer::new(&settings.data_dir, p));
    // Settled while nothing could retrain (by the CLI, or before a restart): train now.
    if let Some(t) = &trainer {
        t.kick_if_wanted();
    }
    Ok(App(Arc::new(Inner {
        pool: ReadPool::new(&settings.data_dir, store),
        store_jobs: spawn_store_threads(&settings.data_dir, crate::config::cores()),
        pipeline: settings.pipeline.clone(),
        rules_path,
        labels: settings.labels.clone(),
        processor,
        classifier,
        trainer,
        secure_cookies: settings.secure_cookies,
        track_here: track::Limiter::new(settings.track_per_minute),
        post_here: track::Limiter::new(POSTS_PER_MINUTE),
        data_dir: settings.data_dir.clone(),
    })))
}

/// Serves until SIGINT/SIGTERM; `listening` hears the address (port 0 picks a free one).
pub fn serve(
    settings: ServeSettings,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let app = build_app(&settings)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        listening(addr);
        tracing::info!("serving on http://{addr}");
        let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            })
            .await?;
        Ok(())
    })
}

/// The received-at bounds of a `from`–`to` day range as typed in a form (YYYY-MM-DD, either
/// may be empty): `from` at midnight, the day after `to` at midnight (`to` is included).
pub(crate) fn day_range(from: &str, to: &str) -> Result<(Option<String>, Option<String>), String> {
    let day = |s: &str, what: &str| -> Result<Option<chrono::NaiveDate>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("{what}: {s:?} is not a date (YYYY-MM-DD)"))
    };
    Ok((
        day(from, "from")?.map(|d| format!("{d}T00:00:00Z")),
        day(to, "to")?
            .and_then(|d| d.succ_opt())
            .map(|d| format!("{d}T00:00:00Z")),
    ))
}

/// Text with `**hit**` marks (search snippets) as HTML: the text escaped, hits in `<mark>`.
pub(crate) fn marked(snippet: &str) -> Markup {
    html! {
        @for (i, part) in snippet.split("**").enumerate() {
            @if i % 2 == 1 { mark { (part) } } @else { (part) }
        }
    }
}

/// A date-time as the office reads it (the stored RFC 3339 in local wall time, minutes).
/// An uploaded file's name: only its last path component, never a path the browser sent.
pub(crate) fn upload_name(file_name: &str) -> String {
    file_name
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("documento")
        .to_string()
}

pub(crate) fn when(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%d/%m/%Y %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string())
}
