//! The admin's pages: the rules editor (edit, backtest against labelled tickets and recent
//! requests, see what changes, then save — refused while the file has problems) and the
//! office's statistics as server-rendered SVG charts and CSV; the accounts, with the logins
//! held back after wrong passwords and a way to release them.

use super::{i18n, page, query_string, App, Auth, WebError};
use crate::classify::eval::{read_labels, Labelled};
use crate::classify::model::Model;
use crate::classify::rules::Rules;
use crate::domain::login::Subject;
use crate::store::prelude::*;
use crate::store::web::{Role, Stats};
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::path::Path;

/// Recent tickets re-classified to show what an edit would move.
const PREVIEW_TICKETS: usize = 2000;

#[derive(Deserialize, Default)]
pub struct RulesQuery {
    saved: Option<String>,
}

pub async fn rules_form(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<RulesQuery>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    let path = rules_file(&app)?;
    let text = Rules::text_of(&path)
        .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
    let notice = q.saved.is_some().then(|| i18n::t(auth.lang, "rules_saved"));
    Ok(rules_page(&auth, &path, &text, notice, None))
}

fn rules_file(app: &App) -> Result<std::path::PathBuf, WebError> {
    app.rules_path.clone().ok_or_else(|| {
        WebError::NotFound("this pipeline has no classify stage, hence no rules file".into())
    })
}

fn rules_page(
    auth: &Auth,
    path: &Path,
    text: &str,
    notice: Option<&str>,
    result: Option<Markup>,
) -> Response {
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let content = html! {
        h1 { (t("rules")) }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        p class="muted" { (path.display()) }
        form method="post" action="/admin/rules" class="rules" {
            input type="hidden" name="csrf" value=(auth.session.csrf);
            label for="rules-text" { (t("rules_text")) }
            textarea id="rules-text" name="text" rows="24" spellcheck="false" { (text) }
            p {
                button type="submit" name="op" value="test" { (t("rules_test")) }
                " "
                button type="submit" name="op" value="save" { (t("rules_save")) }
            }
        }
        @if let Some(r) = result { (r) }
    };
    page(lang, Some(auth), t("rules"), content)
}

#[derive(Deserialize)]
pub struct RulesForm {
    csrf: String,
    text: String,
    op: String,
}

/// Before/after of one labelled record whose prediction the edit changes.
pub async fn rules_post(
    State(app): State<App>,
    auth: Auth,
    Form(f): Form<RulesForm>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    auth.check_csrf(&f.csrf)?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let path = rules_file(&app)?;
    if path == Path::new(crate::classify::rules::SHIPPED_NAME) {
        return Err(WebError::BadRequest(
            "these are the rules shipped with Sportello, which cannot be edited here: serve \
             with a pipeline (--pipeline FILE) whose classify stage names a rules file"
                .into(),
        ));
    }
    // Browsers send CRLF from a textarea; the file keeps the admin's lines as LF.
    let text = f.text.replace("\r\n", "\n");
    let candidate = match Rules::parse(&path, &text) {
        Ok(r) => r,
        Err(e) => {
            let problems = html! {
                section class="problems" role="alert" {
                    h2 { (t("rules_problems")) " (" (e.0.len()) ")" }
                    ul { @for p in &e.0 { li { @if let Some(l) = p.line { (t("line")) " " (l) ": " } (p.message) } } }
                    p { (t("rules_not_saved")) }
                }
            };
            let mut res = rules_page(&auth, &path, &text, None, Some(problems));
            *res.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(res);
        }
    };
    if f.op == "save" {
        let target = path.clone();
        let who = auth.actor();
        tokio::task::spawn_blocking(move || save_rules(&target, &text))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
            .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
        tracing::info!(user = %who, file = %path.display(), "rules saved from the web editor");
        return Ok(Redirect::to("/admin/rules?saved=1").into_response());
    }
    let worker = app.clone();
    let in_force_path = path.clone();
    let bt = app
        .with_store(move |s| {
            let in_force =
                Rules::load(&in_force_path).map_err(|e| WebError::Internal(e.to_string()))?;
            let model = Model::load(s.data_dir()).map_err(|e| WebError::Internal(e.to_string()))?;
            // Everything settled: the labelled history and the tickets people settled.
            let mut records: Vec<Labelled> = s
                .training_examples()?
                .into_iter()
                .map(|e| Labelled {
                    id: e.id,
                    subject: e.subject,
                    body: e.body,
                    topic: e.topic,
                    channel: e.channel,
                    sender_email: e.sender_email,
                })
                .collect();
            if let Some(labels) = &worker.labels {
                records.extend(read_labels(labels).map_err(WebError::Internal)?);
            }
            let recent = s.recent_requests(PREVIEW_TICKETS)?;
            Ok(crate::service::backtest::backtest(
                &in_force,
                &candidate,
                model.as_ref(),
                &records,
                &recent,
            ))
        })
        .await?;
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let result = html! {
        section class="backtest" aria-labelledby="bt-h" {
            h2 id="bt-h" { (t("rules_backtest")) }
            @if bt.labelled == 0 {
                p class="muted" { (t("rules_no_labels")) }
            } @else {
                table {
                    thead { tr { th scope="col" {} th scope="col" { (t("rules_in_force")) } th scope="col" { (t("rules_edited")) } } }
                    tbody {
                        tr { th scope="row" { (t("labelled_records")) } td { (bt.labelled) } td { (bt.labelled) } }
                        tr { th scope="row" { (t("accuracy")) } td { (pct(bt.before.accuracy)) } td { (pct(bt.after.accuracy)) } }
                        tr { th scope="row" { (t("accuracy_answered")) } td { (pct(bt.before.accuracy_answered)) } td { (pct(bt.after.accuracy_answered)) } }
                        tr { th scope="row" { (t("abstained")) } td { (bt.before.abstained) } td { (bt.after.abstained) } }
                    }
                }
                h3 { (bt.changes.len()) " " (t("records_change")) }
                @if !bt.changes.is_empty() {
                    table {
                        thead { tr { th scope="col" { "id" } th scope="col" { (t("labelled_as")) } th scope="col" { (t("before")) } th scope="col" { (t("after")) } th scope="col" {} } }
                        tbody {
                            @for c in &bt.changes {
                                @let verdict = if c.after == c.labelled { ("fixed", t("fixed")) } else if c.before == c.labelled { ("broken", t("broken")) } else { ("", t("still_wrong")) };
                                tr class=(verdict.0) {
                                    td { @if crate::code::parse(&c.id).is_ok() { a href=(format!("/tickets/{}", c.id)) { (c.id) } } @else { (c.id) } }
                                    td { (c.labelled) } td { (c.before) } td { (c.after) } td { strong { (verdict.1) } }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (t("recent_moves")) " (" (bt.recent) " " (t("tickets_found")) ")" }
            @if bt.moves.is_empty() { p { (t("no_moves")) } }
            @else {
                table {
                    thead { tr { th scope="col" { (t("before")) } th scope="col" { (t("after")) } th scope="col" { (t("how_many")) } } }
                    tbody { @for ((from, to), n) in &bt.moves { tr { td { (from) } td { (to) } td { (n) } } } }
                }
            }
        }
    };
    Ok(rules_page(&auth, &path, &text, None, Some(result)))
}

/// Replaces the rules file whole (write beside it, then rename), keeping the previous one as
/// `<name>.bak`; a running `sportello run` picks the new file up by itself.
fn save_rules(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if path.exists() {
        let mut bak = path.as_os_str().to_owned();
        bak.push(".bak");
        std::fs::copy(path, bak)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[derive(Deserialize, Default)]
pub struct StatsQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl StatsQuery {
    fn range(&self) -> Result<(Option<String>, Option<String>), WebError> {
        super::day_range(&self.from, &self.to).map_err(WebError::BadRequest)
    }
}

async fn load_stats(app: &App, q: &StatsQuery) -> Result<Stats, WebError> {
    let (since, until) = q.range()?;
    app.with_store(move |s| Ok(s.stats(since.as_deref(), until.as_deref())?))
        .await
}

pub async fn stats(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<StatsQuery>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    let st = load_stats(&app, &q).await?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let share = if st.closed == 0 {
        "—".to_string()
    } else {
        format!(
            "{:.0}%",
            st.closed_without_routing as f64 * 100.0 / st.closed as f64
        )
    };
    let hours = |h: Option<f64>| match h {
        None => "—".to_string(),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} {}", h / 24.0, t("days")),
    };
    let csv = format!(
        "/admin/stats.csv?{}",
        query_string(&[("from", &q.from), ("to", &q.to)])
    );
    let channels: Vec<(String, u64)> = st
        .by_channel
        .iter()
        .map(|(c, n)| (t(c).to_string(), *n))
        .collect();
    let labels = app.topic_labels(lang);
    let topics: Vec<(String, u64)> = st
        .by_topic
        .iter()
        .map(|(k, n)| (labels.of(k).to_string(), *n))
        .collect();
    let content = html! {
        h1 { (t("stats")) }
        form method="get" action="/admin/stats" class="range" {
            label for="s-from" { (t("from_date")) } input id="s-from" name="from" type="date" value=(q.from);
            label for="s-to" { (t("to_date")) } input id="s-to" name="to" type="date" value=(q.to);
            button type="submit" { (t("show")) }
            " " a href=(csv) download="sportello-stats.csv" { (t("download_csv")) }
        }
        dl class="figures" {
            div { dt { (t("requests")) } dd { (st.total) } }
            div { dt { (t("closed_n")) } dd { (st.closed) } }
            div { dt { (t("closed_front")) } dd { (share) } }
            div { dt { (t("median_close")) } dd { (hours(st.median_hours_to_close)) } }
            div { dt { (t("p90_close")) } dd { (hours(st.p90_hours_to_close)) } }
        }
        div class="charts" {
            figure { figcaption { (t("by_channel")) } (bar_chart(&channels, t("by_channel"))) }
            figure { figcaption { (t("by_topic")) } (bar_chart(&topics, t("by_topic"))) }
            figure class="wide" { figcaption { (t("by_week")) } (week_chart(&st.by_week, t("by_week"))) }
        }
    };
    Ok(page(lang, Some(&auth), t("stats"), content))
}

/// Horizontal bars with their labels and counts, readable without colour; the numbers are
/// also in the SVG's text for screen readers.
fn bar_chart(rows: &[(String, u64)], title: &str) -> Markup {
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let row_h = 26;
    let height = (rows.len().max(1) * row_h + 10) as u32;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label=(title)
            viewBox=(format!("0 0 520 {height}")) width="520" height=(height) {
            title { (title) }
            @for (i, (label, n)) in rows.iter().enumerate() {
                @let y = i * row_h + 5;
                @let w = (*n as f64 / max as f64 * 300.0).max(1.0);
                text x="150" y=(y + 17) text-anchor="end" class="label" { (label) }
                rect x="160" y=(y + 3) width=(format!("{w:.1}")) height="18" class="bar" {}
                text x=(format!("{:.1}", 166.0 + w)) y=(y + 17) class="value" { (n) }
            }
        }
    }
}

fn week_chart(weeks: &[(String, u64)], title: &str) -> Markup {
    let max = weeks.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let bar_w = 28;
    let width = (weeks.len().max(1) * bar_w + 40) as u32;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label=(title)
            viewBox=(format!("0 0 {width} 230")) width=(width) height="230" {
            title { (title) }
            @for (i, (week, n)) in weeks.iter().enumerate() {
                @let x = i * bar_w + 30;
                @let h = (*n as f64 / max as f64 * 160.0).max(1.0);
                rect x=(x) y=(format!("{:.1}", 180.0 - h)) width=(bar_w - 6) height=(format!("{h:.1}")) class="bar" {
                    title { (week) ": " (n) }
                }
                text x=(x + (bar_w - 6) / 2) y=(format!("{:.1}", 174.0 - h)) text-anchor="middle" class="value" { (n) }
                text x=(x + (bar_w - 6) / 2) y="196" text-anchor="end" class="label small"
                    transform=(format!("rotate(-45 {} 196)", x + (bar_w - 6) / 2)) { (week.split("-W").nth(1).map(|w| format!("W{w}")).unwrap_or_default()) }
            }
        }
    }
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; a leading `=`,
/// `+`, `-` or `@` is neutralised so a spreadsheet never runs it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub async fn stats_csv(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<StatsQuery>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    let st = load_stats(&app, &q).await?;
    let mut out = String::from("section,key,value\n");
    let mut row = |section: &str, key: &str, value: String| {
        out.push_str(&format!("{section},{},{value}\n", csv_field(key)));
    };
    row("total", "requests", st.total.to_string());
    row("total", "closed", st.closed.to_string());
    row(
        "total",
        "closed_without_routing",
        st.closed_without_routing.to_string(),
    );
    if let Some(h) = st.median_hours_to_close {
        row("time_to_close", "median_hours", format!("{h:.2}"));
    }
    if let Some(h) = st.p90_hours_to_close {
        row("time_to_close", "p90_hours", format!("{h:.2}"));
    }
    for (k, n) in &st.by_channel {
        row("channel", k, n.to_string());
    }
    let labels = app.topic_labels(auth.lang);
    for (k, n) in &st.by_topic {
        row("topic", labels.of(k), n.to_string());
    }
    for (k, n) in &st.by_week {
        row("week", k, n.to_string());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sportello-stats.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("gas"), "gas");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}

#[derive(Deserialize, Default)]
pub struct UsersQuery {
    unlocked: Option<String>,
}

/// The accounts, and every login held back after wrong passwords (by account or address),
/// each with an unlock button.
pub async fn users(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<UsersQuery>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    let (users, failures) = app
        .with_store(|s| Ok((s.users()?, s.login_failure_list()?)))
        .await?;
    let lang = auth.lang;
    let t = |k| i18n::t(lang, k);
    let now = chrono::Utc::now();
    let locked = |name: &str| {
        let key = Subject::Account(name).key();
        failures
            .iter()
            .any(|(s, n, _)| *s == key && *n >= crate::domain::login::LOCKED_AT)
    };
    let content = html! {
        h1 { (t("users")) }
        @if q.unlocked.is_some() { p class="notice" role="status" { (t("unlocked")) } }
        table {
            thead { tr { th scope="col" { (t("username")) } th scope="col" { (t("role")) } th scope="col" { "" } } }
            tbody {
                @for u in &users {
                    tr { td { (u.name) } td { (u.role.as_str()) } td { @if locked(&u.name) { strong { (t("locked")) } } } }
                }
            }
        }
        h2 { (t("locked_accounts")) }
        @if failures.is_empty() {
            p { (t("no_locked")) }
        } @else {
            table {
                thead { tr {
                    th scope="col" { (t("username")) " / IP" }
                    th scope="col" { (t("failures")) }
                    th scope="col" { (t("last_failure")) }
                    th scope="col" { (t("wait_left")) }
                    th scope="col" { "" }
                } }
                tbody {
                    @for (subject, n, at) in &failures {
                        @let since = chrono::DateTime::parse_from_rfc3339(at)
                            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
                            .unwrap_or(0);
                        @let wait = Subject::from_key(subject).map_or(0, |s| s.wait_secs(*n, since));
                        tr {
                            td { (subject) }
                            td { (n) }
                            td { (at) }
                            td { (wait) }
                            td {
                                form method="post" action="/admin/users/unlock" {
                                    input type="hidden" name="csrf" value=(auth.session.csrf);
                                    input type="hidden" name="subject" value=(subject);
                                    button type="submit" aria-label=(format!("{} {subject}", t("unlock"))) { (t("unlock")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(lang, Some(&auth), t("users"), content))
}

#[derive(Deserialize)]
pub struct UnlockForm {
    csrf: String,
    subject: String,
}

/// An admin releases an account or an address held back after wrong passwords.
pub async fn unlock(
    State(app): State<App>,
    auth: Auth,
    Form(f): Form<UnlockForm>,
) -> Result<Response, WebError> {
    auth.require(Role::Admin)?;
    auth.check_csrf(&f.csrf)?;
    if Subject::from_key(&f.subject).is_none() {
        return Err(WebError::BadRequest(format!(
            "not an account or an address: {}",
            f.subject
        )));
    }
    let admin = auth.session.user.name.clone();
    let subject = f.subject.clone();
    app.with_store(move |s| Ok(s.clear_login_failures(&subject)?))
        .await?;
    tracing::info!(admin = %admin, subject = %f.subject, "login unlocked");
    Ok(Redirect::to("/admin/users?unlocked=1").into_response())
}
