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
}
