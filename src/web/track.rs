//! `/track`: a citizen types the tracking code of the acknowledgement and sees the status,
//! the dates and the office of the request — nothing of its content. A mistyped code is told
//! apart from an unknown one (the check character), and lookups are rate-limited per client
//! so codes cannot be guessed by trying.

use super::{i18n, page, when, App, ClientAddr, Language, Limit, WebError};
use crate::code::{self, CodeError};
use crate::store::prelude::*;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This server's own count of an address's requests in its minute (a fixed window per
/// address). The store's count is the one shared by every server; this one only spares the
/// store: an address over the limit here has made that many requests within a minute
/// anyway, so a flood from one address is refused without a write per request.
pub struct Limiter {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Limiter {
        Limiter {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn allow(&self, who: IpAddr) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let now = Instant::now();
        if seen.len() > 100_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = seen.entry(who).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }
}

#[derive(Deserialize)]
pub struct TrackQuery {
    code: Option<String>,
}

pub async fn track(
    State(app): State<App>,
    Language(lang): Language,
    ClientAddr(client): ClientAddr,
    Query(q): Query<TrackQuery>,
) -> Result<Response, WebError> {
    let t = |k| i18n::t(lang, k);
    let typed = q.code.unwrap_or_default().trim().to_string();
    let answer = if typed.is_empty() {
        None
    } else if !app.allow(Limit::Track, client).await? {
        return Err(WebError::TooMany);
    } else {
        Some(match code::parse(&typed) {
            Err(CodeError::BadCheck(_)) => Err(t("track_mistyped")),
            Err(CodeError::Malformed(_)) => Err(t("track_malformed")),
            Ok(code) => match app.with_store(move |s| Ok(s.track(&code).ok())).await? {
                Some(info) => Ok(info),
                None => Err(t("track_unknown")),
            },
        })
    };
    let content = html! {
        h1 { (t("track_title")) }
        p { (t("track_intro")) }
        form method="get" action="/track" class="track" {
            p {
                label for="code" { (t("track_code")) }
                input id="code" name="code" value=(typed) placeholder="URP-7K3M-9QXD" autocomplete="off" required
                    aria-describedby=[answer.as_ref().map(|_| "track-answer")];
                button type="submit" { (t("track_button")) }
            }
        }
        @match &answer {
            Some(Ok(info)) => {
                section id="track-answer" aria-live="polite" class="track-answer" {
                    h2 { (info.code) }
                    dl {
                        dt { (t("status")) } dd class=(format!("status {}", info.status.as_str())) { (t(info.status.as_str())) }
                        dt { (t("received")) } dd { (when(&info.received_at)) }
                        dt { (t("updated")) } dd { (when(&info.updated_at)) }
                        dt { (t("office")) } dd { (info.office.as_deref().unwrap_or("URP")) }
                    }
                }
            }
            Some(Err(message)) => { p id="track-answer" class="error" role="alert" { (message) } }
            None => {}
        }
    };
    Ok(page(lang, None, t("track_title"), content).into_response())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn only_a_local_proxy_names_the_client() {
        use axum::http::HeaderMap;
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let proxied: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(super::super::client_addr(local, &h), proxied);
        assert_eq!(
            super::super::client_addr(remote, &h),
            remote,
            "a client cannot pick its address"
        );
        assert_eq!(super::super::client_addr(local, &HeaderMap::new()), local);
    }

    #[test]
    fn a_client_gets_its_quota_per_minute_and_others_theirs() {
        let l = super::Limiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a)));
        assert!(!l.allow(a));
        assert!(l.allow(b));
    }
}
