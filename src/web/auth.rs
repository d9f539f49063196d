//! Logging in and out: argon2 password hashes, random session tokens kept by their hash,
//! cookies HttpOnly + SameSite (Secure behind TLS), a CSRF token per session for every form
//! and a per-browser one for the login form itself.

use super::{cookie, i18n, page, App, ClientAddr, Language, WebError};
use crate::domain::login::Subject;
use crate::store::prelude::*;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use rand::Rng;
use serde::Deserialize;

pub const SESSION_COOKIE: &str = "sportello_session";
const LOGIN_COOKIE: &str = "sportello_login";
const SESSION_HOURS: i64 = 12;

/// An argon2id hash in PHC form (salt and parameters inside).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Compares tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_header(app: &App, name: &str, value: &str, max_age: i64) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if app.secure_cookies { "; Secure" } else { "" }
    )
}

/// Only a path of this site: `next` must never send a user elsewhere after logging in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(
    State(app): State<App>,
    Language(lang): Language,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_page(&app, lang, q.next.as_deref(), None)
}

fn login_page(app: &App, lang: i18n::Lang, next: Option<&str>, error: Option<&str>) -> Response {
    let t = |k| i18n::t(lang, k);
    let token = random_token();
    let content = html! {
        h1 { (t("login_title")) }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        form method="post" action="/login" class="login" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(safe_next(next));
            p { label for="username" { (t("username")) } input id="username" name="username" autocomplete="username" required autofocus; }
            p { label for="password" { (t("password")) } input id="password" name="password" type="password" autocomplete="current-password" required; }
            p { button type="submit" { (t("login")) } }
        }
        p { a href="/track" { (t("track_link")) } }
    };
    let mut res = page(lang, None, t("login_title"), content);
    if let Ok(v) = cookie_header(app, LOGIN_COOKIE, &token, 3600).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// What a login attempt came to.
enum Attempt {
    In,
    Wrong,
    /// Too many wrong passwords lately (for the account or from the address): seconds to
    /// wait, the password not even checked.
    Wait(i64),
}

pub async fn login(
    State(app): State<App>,
    Language(lang): Language,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(&f.csrf, &expected) {
        return Ok(login_page(
            &app,
            lang,
            f.next.as_deref(),
            Some(i18n::t(lang, "login_stale")),
        ));
    }
    let name = f.username.trim().to_string();
    let password = f.password;
    let token = random_token();
    let token_hash = crate::store::blobs::sha256_hex(token.as_bytes());
    let address = client.to_string();
    let attempt = app
        .with_store(move |s| {
            let subjects = [Subject::Account(&name), Subject::Address(&address)];
            let mut wait = 0;
            for subject in subjects {
                let (failures, since) = s.login_failures(&subject.key())?;
                wait = wait.max(subject.wait_secs(failures, since));
            }
            if wait > 0 {
                return Ok(Attempt::Wait(wait));
            }
            let user = match s.user_credentials(&name)? {
                Some((user, hash)) => verify_password(&password, &hash).then_some(user),
                None => {
                    // The same work as a real check, so timing does not tell which names exist.
                    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                    let dummy = DUMMY.get_or_init(|| hash_password("-").unwrap_or_default());
                    let _ = verify_password(&password, dummy);
                    None
                }
            };
            let Some(user) = user else {
                // Counted for names that do not exist too: the answers must not differ.
                for subject in subjects {
                    s.record_login_failure(&subject.key())?;
                }
                tracing::warn!(account = %name, address = %address, "wrong password");
                return Ok(Attempt::Wrong);
            };
            s.clear_login_failures(&Subject::Account(&name).key())?;
            s.create_session(user.id, &token_hash, &random_token(), SESSION_HOURS)?;
            tracing::info!(user = %user.name, "logged in");
            Ok(Attempt::In)
        })
        .await?;
    match attempt {
        Attempt::In => {}
        Attempt::Wrong => {
            return Ok(login_page(
                &app,
                lang,
                f.next.as_deref(),
                Some(i18n::t(lang, "login_failed")),
            ))
        }
        Attempt::Wait(secs) => {
            let message = i18n::t(lang, "login_wait").replace("{n}", &secs.to_string());
            let mut res = login_page(&app, lang, f.next.as_deref(), Some(&message));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = secs.to_string().parse() {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(res);
        }
    }
    let mut res = Redirect::to(&safe_next(f.next.as_deref())).into_response();
    let h = res.headers_mut();
    for c in [
        cookie_header(&app, SESSION_COOKIE, &token, SESSION_HOURS * 3600),
        cookie_header(&app, LOGIN_COOKIE, "", 0),
    ] {
        if let Ok(v) = c.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(app): State<App>,
    auth: super::Auth,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    auth.check_csrf(&f.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let hash = crate::store::blobs::sha256_hex(token.as_bytes());
        app.with_store(move |s| Ok(s.end_session(&hash)?)).await?;
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = cookie_header(&app, SESSION_COOKIE, "", 0).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("corretto cavallo").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("corretto cavallo", &h));
        assert!(!verify_password("corretto cavallO", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/tickets/URP-1")), "/tickets/URP-1");
        for bad in ["//evil.example/x", "https://evil.example", "/\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("", ""));
    }
}
