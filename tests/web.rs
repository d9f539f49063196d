//! The web app, end to end: the real `sportello serve` on a store filled by `sportello ingest`,
//! driven by Debian's Chromium through chromedriver (WebDriver, crate fantoccini), plus raw
//! HTTP checks of what a browser does not show (headers, CSRF, roles). Screenshots of the main
//! pages go to docs/screenshots/.

mod common;

use common::{bin, http_status, ok, project_dir, sportello, with_database};
use fantoccini::{Client, ClientBuilder, Locator};
use sportello::domain::login::Subject;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "admin-password-1";
const CLERK_PW: &str = "clerk-password-1";
const ARCHIVIST_PW: &str = "archivist-password-1";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sportello serve` on a free port; returns the process and its address.
fn serve(data: &Path, pipeline: &Path) -> (Process, SocketAddr) {
    let mut child = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--pipeline"])
        .arg(pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sportello serve");
    let stdout = child.stdout.take().expect("stdout");
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .expect("an address");
    (process, addr)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> (Process, u16) {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromedriver is missing: `make test` installs chromium and chromium-driver");
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (process, port)
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1366,1000", "--lang=it", "--hide-scrollbars"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// A raw HTTP/1.1 exchange: (status, headers lower-cased, body).
fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = http_status(head);
    (status, head.to_lowercase(), body.to_string())
}

fn get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String, String) {
    http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn post(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> (u16, String, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn header_value(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in form"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// One login attempt over raw HTTP, with the login form's own cookie and token.
fn try_login(addr: SocketAddr, user: &str, password: &str) -> (u16, String, String) {
    let (_, head, body) = get(addr, "/login", "");
    let login_cookie = header_value(&head, "set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = form_value(&body, "csrf");
    post(
        addr,
        "/login",
        &login_cookie,
        &format!("csrf={csrf}&username={user}&password={password}&next=%2F"),
    )
}

/// Logs in over raw HTTP; returns the session cookie and the session's CSRF token.
fn login_raw(addr: SocketAddr, user: &str, password: &str) -> (String, String) {
    let (status, head, _) = try_login(addr, user, password);
    assert_eq!(status, 303, "login of {user} failed");
    let cookies = header_value(&head, "set-cookie");
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sportello_session=") && !c.starts_with("sportello_session=;"))
        .expect("a session cookie");
    assert!(
        session.contains("httponly") && session.contains("samesite=lax"),
        "{session}"
    );
    let cookie = session.split(';').next().unwrap().to_string();
    let (_, _, page) = get(addr, "/search", &cookie);
    (cookie, form_value(&page, "csrf"))
}

const XSS_MAIL: &str = "From: \"Eve <b>\" <eve@example.org>\r\n\
To: urp@comune.example\r\n\
Subject: <script>window.pwned=1</script> richiesta allaccio gas\r\n\
Message-ID: <xss-1@example.org>\r\n\
Date: Tue, 13 Apr 2010 09:00:00 +0200\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p>Buongiorno, chiedo l'allacciamento del gas.</p>\
<script>window.pwned=2</script><img src=x onerror=\"window.pwned=3\">\
<p>&lt;script&gt;alert(1)&lt;/script&gt; scritto nel testo</p></body></html>\r\n";

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pipeline: PathBuf,
    fax_code: String,
    xss_code: String,
    gas_code: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A copy of the demo pipeline and its rules: the rules editor may write to it.
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    for f in ["demo.toml", "rules.toml", "examples.jsonl"] {
        std::fs::copy(project_dir().join("pipelines").join(f), pipelines.join(f)).unwrap();
    }
    let pipeline = pipelines.join("demo.toml");
    let p = pipeline.to_str().unwrap();
    let fax = ok(
        &data,
        &[
            "ingest",
            "--json",
            "--pipeline",
            p,
            "--channel",
            "fax",
            "fixtures/fax",
        ],
    );
    let fax_code = fax
        .json_lines()
        .into_iter()
        .find(|o| {
            let docs = o["ticket"]["documents"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            docs.first().is_some_and(|d| {
                d["mime"] == "image/tiff" && d["text"].as_str().unwrap_or("").len() > 40
            })
        })
        .map(|o| o["ticket"]["code"].as_str().unwrap().to_string())
        .expect("a fax TIFF with text");
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    std::fs::write(mail_dir.join("xss.eml"), XSS_MAIL).unwrap();
    let mail = ok(
        &data,
        &[
            "ingest",
            "--json",
            "--pipeline",
            p,
            mail_dir.to_str().unwrap(),
            "fixtures/mail",
            "fixtures/scanner",
        ],
    );
    let lines = mail.json_lines();
    let code_of = |needle: &str| {
        lines
            .iter()
            .find(|o| o["file"].as_str().unwrap_or("").contains(needle))
            .map(|o| o["ticket"]["code"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{needle} not filed"))
    };
    let xss_code = code_of("xss.eml");
    let gas_code = code_of("lettera-allacciamento-gas.pdf");
    for (user, role, pw) in [
        ("anna", "admin", ADMIN_PW),
        ("mario", "clerk", CLERK_PW),
        ("lucia", "archivist", ARCHIVIST_PW),
    ] {
        add_user(&data, user, role, pw);
    }
    Fixture {
        _dir: dir,
        data,
        pipeline,
        fax_code,
        xss_code,
        gas_code,
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = project_dir().join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn login(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click_and_wait(c, "form.login button").await;
}

/// Clicks what submits a form or follows a link, and returns once the next page has loaded
/// (WebDriver's click does not wait for the navigation it starts).
async fn click_and_wait(c: &Client, css: &str) {
    let old_page = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The old document's root goes stale when the new page replaces it.
    while old_page.tag_name().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "no new page after clicking {css}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let state = c.execute("return document.readyState", vec![]).await;
        if matches!(state, Ok(ref v) if v == "complete") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "page after {css} did not finish loading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_archivists_admins_and_citizens_in_a_real_browser() {
    let f = fixture();
    let (_server, addr) = serve(&f.data, &f.pipeline);
    let base = format!("http://{addr}");
    let (_driver, port) = chromedriver();
    let c = browser(port).await;

    // Not logged in: the login page, then back to where the clerk was going.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    shot(&c, "login").await;
    login(&c, &base, "mario", CLERK_PW).await;
    assert_eq!(text_of(&c, "main h1").await, "Code di lavoro");
    let queue = c.source().await.unwrap();
    assert!(queue.contains(&f.fax_code) && queue.contains(&f.xss_code));
    shot(&c, "queue").await;

    // Find a ticket by search: a word in another form, highlighted.
    c.goto(&format!("{base}/search")).await.unwrap();
    c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("allaccio")
        .await
        .unwrap();
    click_and_wait(&c, "form.search button").await;
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().contains("q=allaccio"), "shareable URL: {url}");
    let marks = c.find_all(Locator::Css("ol.results mark")).await.unwrap();
    assert!(!marks.is_empty(), "hits are highlighted");
    let found = c.source().await.unwrap();
    assert!(found.contains(&f.gas_code), "the gas letter is found");
    shot(&c, "search").await;
    click_and_wait(&c, &format!("a[href='/tickets/{}']", f.gas_code)).await;
    assert!(text_of(&c, "main h1").await.contains(&f.gas_code));

    // The fax: its page image beside the OCR text.
    c.goto(&format!("{base}/tickets/{}/documents/0", f.fax_code))
        .await
        .unwrap();
    let img = c.find(Locator::Css("section.page img")).await.unwrap();
    let width = c
        .execute(
            "return arguments[0].complete ? arguments[0].naturalWidth : -1",
            vec![serde_json::to_value(&img).unwrap()],
        )
        .await
        .unwrap();
    let mut width = width.as_i64().unwrap_or(0);
    for _ in 0..50 {
        if width > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        width = c
            .execute(
                "return document.querySelector('section.page img').naturalWidth",
                vec![],
            )
            .await
            .unwrap()
            .as_i64()
            .unwrap_or(0);
    }
    assert!(width > 100, "the page image is shown ({width} px wide)");
    let page_text = text_of(&c, "section.page pre.text").await;
    assert!(
        page_text.len() > 40,
        "OCR text beside the image: {page_text:?}"
    );
    shot(&c, "fax-page-and-text").await;

    // Reclassify it and see the history name the clerk.
    c.goto(&format!("{base}/tickets/{}", f.fax_code))
        .await
        .unwrap();
    c.find(Locator::Id("topic"))
        .await
        .unwrap()
        .select_by_value("gas")
        .await
        .unwrap();
    click_and_wait(&c, "form:has(#topic) button").await;
    let history = text_of(&c, "ol.history").await;
    assert!(
        (history.contains("riclassificata") || history.contains("argomento confermato"))
            && history.contains("mario")
            && history.contains("gas"),
        "{history}"
    );
    assert!(text_of(&c, "dl.facts").await.contains("verificato"));
    shot(&c, "ticket").await;

    // A clerk cannot open admin pages.
    c.goto(&format!("{base}/admin/rules")).await.unwrap();
    assert!(text_of(&c, "main h1").await.starts_with("403"));
    c.goto(&format!("{base}/admin/stats")).await.unwrap();
    assert!(text_of(&c, "main h1").await.starts_with("403"));

    // Script in a subject and an HTML body shows as text and never runs.
    c.goto(&format!("{base}/tickets/{}", f.xss_code))
        .await
        .unwrap();
    let h1 = text_of(&c, "main h1").await;
    assert!(h1.contains("<script>window.pwned=1</script>"), "{h1}");
    let pwned = c
        .execute("return typeof window.pwned", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, "undefined", "no script from the message ran");
    assert!(c
        .find_all(Locator::Css("main script, main img[onerror]"))
        .await
        .unwrap()
        .is_empty());
    assert!(text_of(&c, "pre.text")
        .await
        .contains("<script>alert(1)</script> scritto nel testo"));

    // The English interface.
    c.goto(&format!("{base}/lang?to=en")).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(text_of(&c, "main h1").await, "Work queues");
    c.goto(&format!("{base}/lang?to=it")).await.unwrap();

    // The admin: rules editor with a backtest, statistics.
    c.delete_all_cookies().await.unwrap();
    login(&c, &base, "anna", ADMIN_PW).await;
    c.goto(&format!("{base}/admin/rules")).await.unwrap();
    click_and_wait(&c, "button[value=test]").await;
    let backtest = text_of(&c, "section.backtest").await;
    assert!(backtest.contains("Richieste etichettate"), "{backtest}");
    shot(&c, "rules-editor").await;
    c.goto(&format!("{base}/admin/stats")).await.unwrap();
    assert!(!c
        .find_all(Locator::Css("svg.chart rect.bar"))
        .await
        .unwrap()
        .is_empty());
    shot(&c, "statistics").await;

    // The citizen: status, dates, office — nothing else of the ticket.
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}/track?code={}", f.gas_code))
        .await
        .unwrap();
    let answer = text_of(&c, "#track-answer").await;
    assert!(
        answer.contains("nuova") && answer.contains(&f.gas_code),
        "{answer}"
    );
    let public = c.source().await.unwrap();
    for private in [
        "allacciamento",
        "Protocollo",
        "lettera-allacciamento-gas",
        "Mittente",
    ] {
        assert!(!public.contains(private), "/track shows {private}");
    }
    shot(&c, "track").await;
    let mistyped = {
        let mut code = f.gas_code.clone();
        let last = code.pop().unwrap();
        code.push(if last == 'A' { 'B' } else { 'A' });
        code
    };
    c.goto(&format!("{base}/track?code={mistyped}"))
        .await
        .unwrap();
    assert!(text_of(&c, "#track-answer")
        .await
        .contains("errore di battitura"));
    c.close().await.unwrap();
}

fn sessions_csrf_roles_headers_and_downloads_over_http() {
    let f = fixture();
    let (_server, addr) = serve(&f.data, &f.pipeline);

    // Wrong password: no session.
    let (_, head, body) = get(addr, "/login", "");
    let login_cookie = header_value(&head, "set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = form_value(&body, "csrf");
    let (status, head, body) = post(
        addr,
        "/login",
        &login_cookie,
        &format!("csrf={csrf}&username=mario&password=nope&next=%2F"),
    );
    assert_eq!(status, 200);
    assert!(body.contains("non corretti") && !head.contains("sportello_session="));
    // A login form without its token is refused.
    let (_, head, _) = post(
        addr,
        "/login",
        "",
        &format!("csrf={csrf}&username=mario&password={CLERK_PW}&next=%2F"),
    );
    assert!(!head.contains("sportello_session="));

    let (clerk, clerk_csrf) = login_raw(addr, "mario", CLERK_PW);
    // Security headers on every page.
    let (status, head, _) = get(addr, "/", &clerk);
    assert_eq!(status, 200);
    assert!(head.contains("content-security-policy: default-src 'self'; script-src 'self'"));
    assert!(head.contains("x-content-type-options: nosniff"));

    // Every form needs the session's token: a forged post changes nothing.
    let action = format!("/tickets/{}/action", f.gas_code);
    let (status, _, _) = post(addr, &action, &clerk, "csrf=forged&action=note&text=hello");
    assert_eq!(status, 400);
    let (status, head, _) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=note&text=chiamato+il+cittadino"),
    );
    assert_eq!(status, 303, "{head}");
    let (status, _, _) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=route&office=Ufficio+tecnico"),
    );
    assert_eq!(status, 303);
    let (status, _, _) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=status&status=closed"),
    );
    assert_eq!(status, 303);
    let shown = ok(&f.data, &["tickets", "show", &f.gas_code, "--json"]);
    let t: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    for k in ["note", "routed", "status_changed"] {
        assert!(kinds.contains(&(k, "mario")), "{k} by mario in {kinds:?}");
    }
    assert!(!kinds.iter().any(|(_, a)| *a == "forged"));
    assert_eq!(t["office"], "Ufficio tecnico");
    assert_eq!(t["status"], "closed");

    // Duplicates: the second of two tickets closes and points to the first.
    let (status, _, _) = post(
        addr,
        &format!("/tickets/{}/action", f.xss_code),
        &clerk,
        &format!("csrf={clerk_csrf}&action=duplicate&of={}", f.gas_code),
    );
    assert_eq!(status, 303);
    let t: serde_json::Value =
        serde_json::from_str(&ok(&f.data, &["tickets", "show", &f.xss_code, "--json"]).stdout)
            .unwrap();
    assert_eq!(t["parent"], f.gas_code.as_str());
    assert_eq!(t["status"], "closed");

    // A reply to the citizen goes through the outbox, threaded and recorded.
    let (status, _, _) = post(
        addr,
        &format!("/tickets/{}/action", f.xss_code),
        &clerk,
        &format!(
            "csrf={clerk_csrf}&action=reply&subject=Re%3A+allaccio&text=Gentile+cittadina%2C+..."
        ),
    );
    assert_eq!(status, 303);
    let t: serde_json::Value =
        serde_json::from_str(&ok(&f.data, &["tickets", "show", &f.xss_code, "--json"]).stdout)
            .unwrap();
    let reply = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "reply_queued")
        .expect("reply queued");
    assert_eq!(reply["detail"]["to"], "eve@example.org");
    assert_eq!(reply["actor"], "mario");

    // A subject that would start a mail header, or an empty note, is refused with the same
    // words on the web and in the CLI: both go through service::tickets.
    let (status, _, web_says) = post(
        addr,
        &format!("/tickets/{}/action", f.xss_code),
        &clerk,
        &format!("csrf={clerk_csrf}&action=reply&subject=Re%0D%0ABcc%3A+x%40y.it&text=ciao"),
    );
    assert_eq!(status, 400);
    let cli = sportello(
        &f.data,
        &[
            "tickets",
            "reply",
            &f.xss_code,
            "--subject",
            "Re\r\nBcc: x@y.it",
            "--text",
            "ciao",
        ],
    );
    assert!(!cli.status.success());
    for says in [&web_says, &cli.stderr] {
        assert!(says.contains("subject: one line"), "{says}");
    }
    let (status, _, web_says) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=note&text=+++"),
    );
    assert_eq!(status, 400);
    let cli = sportello(&f.data, &["tickets", "note", &f.gas_code, "   "]);
    assert!(!cli.status.success());
    for says in [&web_says, &cli.stderr] {
        assert!(says.contains("text: missing"), "{says}");
    }

    // Statistics count it as closed without routing? No: it was routed. Admin only.
    let (status, _, _) = get(addr, "/admin/stats.csv", &clerk);
    assert_eq!(status, 403);
    let (admin, admin_csrf) = login_raw(addr, "anna", ADMIN_PW);
    let (status, head, csv) = get(addr, "/admin/stats.csv", &admin);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/csv"));
    assert!(csv.starts_with("section,key,value\n"));
    assert!(
        csv.contains("total,closed,2\n") && csv.contains("total,closed_without_routing,1\n"),
        "{csv}"
    );
    assert!(csv.contains("channel,fax,"), "{csv}");

    // The rules editor refuses a broken file and keeps the one in force.
    let rules_file = f.pipeline.with_file_name("rules.toml");
    let rules_before = std::fs::read_to_string(&rules_file).unwrap();
    let (status, _, body) = post(
        addr,
        "/admin/rules",
        &admin,
        &format!("csrf={admin_csrf}&op=save&text=abstain_below+%3D+7%0A%5Btopics"),
    );
    assert_eq!(status, 422);
    assert!(body.contains("Problemi nel file"));
    assert_eq!(std::fs::read_to_string(&rules_file).unwrap(), rules_before);

    // An archivist reads and downloads but changes nothing.
    let (archivist, archivist_csrf) = login_raw(addr, "lucia", ARCHIVIST_PW);
    let (status, _, _) = post(
        addr,
        &action,
        &archivist,
        &format!("csrf={archivist_csrf}&action=note&text=x"),
    );
    assert_eq!(status, 403);
    let (status, _, _) = get(addr, "/register", &archivist);
    assert_eq!(status, 403);
    let (status, head, body) = get(
        addr,
        &format!("/tickets/{}/documents/0/file?download=1", f.xss_code),
        &archivist,
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(
        head.contains("content-disposition: attachment; filename=\"xss.eml\""),
        "{head}"
    );
    assert!(body.contains("window.pwned=2"), "the original, unaltered");
    let (_, head, _) = get(
        addr,
        &format!("/tickets/{}/documents/0/file", f.xss_code),
        &archivist,
    );
    assert!(
        head.contains("content-type: application/octet-stream"),
        "a message is never served as HTML: {head}"
    );

    // Malformed requests get a clear answer, not a crash or someone else's data.
    let (status, _, body) = get(addr, "/search?q=gas&from=2026-13-01", &clerk);
    assert_eq!(status, 200);
    assert!(
        body.contains("is not a date"),
        "a bad date is reported on the page"
    );
    let (status, _, _) = get(
        addr,
        &format!("/tickets/{}/documents/0/pages/99", f.fax_code),
        &clerk,
    );
    assert_eq!(status, 404, "a page the fax does not have");
    let (status, _, _) = get(
        addr,
        &format!("/tickets/{}/documents/9", f.fax_code),
        &clerk,
    );
    assert_eq!(status, 404, "a document the ticket does not have");
    let mut mistyped = f.fax_code.clone();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _, body) = get(addr, &format!("/tickets/{mistyped}"), &clerk);
    assert_eq!(status, 400);
    assert!(body.contains("mistyped"), "{body}");
    let (status, _, _) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=reclassify&topic=no_such_topic"),
    );
    assert_eq!(status, 400, "an unknown topic is refused");
    // A correction on the web teaches the model as one in the CLI does: with the rules asking
    // for a retrain after each settled ticket, the model is retrained off the request path.
    let rules_file = f.pipeline.with_file_name("rules.toml");
    let rules = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(
        &rules_file,
        rules.replace("retrain_after = 10", "retrain_after = 1"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The office's first model, from the rules' own examples: nothing settled in it yet.
    let examples = || {
        // The trainer writes the file whole (rename); a read between its steps retries.
        let waited = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(f.data.join("topic-model.json")).unwrap();
            if let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) {
                return m["examples"].as_u64().unwrap();
            }
            assert!(waited.elapsed().as_secs() < 10);
        }
    };
    assert_eq!(examples(), 0);
    let (status, head, _) = post(
        addr,
        &action,
        &clerk,
        &format!("csrf={clerk_csrf}&action=reclassify&topic=gas&back=%2F%3Ftopic%3Dunsorted"),
    );
    assert_eq!(status, 303);
    // One-click triage goes back to the queue it came from.
    assert_eq!(header_value(&head, "location"), ["/?topic=unsorted"]);
    let waited = std::time::Instant::now();
    while examples() == 0 {
        assert!(
            waited.elapsed().as_secs() < 30,
            "no model trained after a web correction"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The same correction from the CLI, on the same store, teaches the model the same way:
    // one more settled example, and the same event in the ticket's history.
    let after_web = examples();
    let p = f.pipeline.to_str().unwrap();
    let filed = ok(
        &f.data,
        &[
            "ingest",
            "--json",
            "--pipeline",
            p,
            "fixtures/mail/richiesta-tari.eml",
        ],
    );
    let new_code = filed.json_lines()[0]["ticket"]["code"]
        .as_str()
        .unwrap()
        .to_string();
    let cli = ok(
        &f.data,
        &[
            "tickets",
            "reclassify",
            &new_code,
            "general_info",
            "--pipeline",
            p,
        ],
    );
    assert!(
        cli.stderr.contains("retrained") || cli.stdout.contains("retrained"),
        "{}{}",
        cli.stdout,
        cli.stderr
    );
    assert_eq!(
        examples(),
        after_web + 1,
        "the CLI correction is one more example"
    );
    let kinds = |code: &str| -> Vec<String> {
        let t: serde_json::Value =
            serde_json::from_str(&ok(&f.data, &["tickets", "show", code, "--json"]).stdout)
                .unwrap();
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    // Both settled through the same code: a correction or a confirmation (the web one set
    // the topic the ticket already had).
    for code in [&f.gas_code, &new_code] {
        let k = kinds(code);
        assert!(
            k.iter()
                .any(|k| k == "reclassified" || k == "topic_confirmed"),
            "{code}: {k:?}"
        );
    }
    std::fs::write(&rules_file, rules).unwrap();
    // Topics are shown by their labels.
    let (_, _, page) = get(addr, &format!("/tickets/{}", f.gas_code), &clerk);
    assert!(
        page.contains("Gas: allacci, contatori, forniture"),
        "topic label on the ticket"
    );
    assert!(
        !page.contains("Conferma argomento"),
        "a settled topic has nothing to confirm"
    );
    let (_, _, page) = get(addr, &format!("/tickets/{}", f.fax_code), &clerk);
    assert!(
        page.contains("Conferma argomento"),
        "a guess nobody looked at can be confirmed"
    );
    // The queue's topic counts start with what is still to sort.
    let (_, _, queue) = get(addr, "/", &clerk);
    let by_topic = queue
        .split("<h2>Per argomento</h2>")
        .nth(1)
        .expect("topic counts");
    assert!(
        by_topic.starts_with("<ul><li><a href=\"/?topic=unsorted\">"),
        "{}",
        &by_topic[..200.min(by_topic.len())]
    );

    // Logged out: the session is gone server-side.
    let (status, _, _) = post(addr, "/logout", &clerk, &format!("csrf={clerk_csrf}"));
    assert_eq!(status, 303);
    let (status, head, _) = get(addr, "/", &clerk);
    assert_eq!(status, 303);
    assert!(head.contains("location: /login"));

    // /track is rate-limited per client.
    let mut limited = false;
    for _ in 0..25 {
        let (status, _, _) = get(addr, &format!("/track?code={}", f.gas_code), "");
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "lookups are rate-limited");
}

fn two_web_servers_on_one_store_share_the_per_address_limits() {
    let f = fixture();
    let (_one, one) = serve(&f.data, &f.pipeline);
    let (_two, two) = serve(&f.data, &f.pipeline);
    // Lookups from one address, alternating between the servers as a proxy would send them:
    // the 21st of the minute is refused (`--track-per-minute` is 20), whichever server it
    // reaches, and from then on both refuse.
    let mut statuses = Vec::new();
    for i in 0..24 {
        let addr = if i % 2 == 0 { one } else { two };
        let (status, _, _) = get(addr, &format!("/track?code={}", f.gas_code), "");
        statuses.push(status);
    }
    assert!(statuses[..20].iter().all(|&s| s == 200), "{statuses:?}");
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
}

fn a_request_taken_at_the_desk_is_registered_with_its_documents() {
    let f = fixture();
    let (_server, addr) = serve(&f.data, &f.pipeline);
    let (clerk, csrf) = login_raw(addr, "mario", CLERK_PW);
    let pdf = std::fs::read(project_dir().join("fixtures/scanner/lettera-macerie.pdf")).unwrap();
    let boundary = "XyZsportello";
    let mut body = Vec::new();
    for (name, value) in [
        ("csrf", csrf.as_str()),
        ("channel", "desk"),
        ("name", "Giulia Neri"),
        ("phone", "0862 123456"),
        ("subject", "Macerie davanti casa"),
        (
            "body",
            "La signora chiede la rimozione delle macerie in via Roma 12.",
        ),
    ] {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"C:\\\\Users\\\\x\\\\foto macerie.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes());
    body.extend_from_slice(&pdf);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /register HTTP/1.1\r\nHost: {addr}\r\nCookie: {clerk}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 303"), "{out}");
    let location = out
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("redirect to the new ticket");
    let code = location
        .trim_start_matches("/tickets/")
        .split('?')
        .next()
        .unwrap();
    let t: serde_json::Value =
        serde_json::from_str(&ok(&f.data, &["tickets", "show", code, "--json"]).stdout).unwrap();
    assert_eq!(t["channel"], "desk");
    assert_eq!(t["sender"]["name"], "Giulia Neri");
    assert_eq!(t["topic"], "waste", "classified: {}", t["topic_reason"]);
    let docs = t["documents"].as_array().unwrap();
    assert_eq!(docs[0]["name"], "richiesta.txt");
    assert_eq!(
        docs[1]["name"], "foto macerie.pdf",
        "only the file's own name"
    );
    assert!(docs[1]["text"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("macerie"));
    let search = ok(&f.data, &["search", "macerie", "--json"]);
    assert!(search.stdout.contains(code));

    // A form cut off mid-upload: refused, nothing filed.
    let before = ok(&f.data, &["tickets", "list", "--json"])
        .stdout
        .lines()
        .count();
    let cut = &req[..req.len() - pdf.len() / 2];
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(cut).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let after = ok(&f.data, &["tickets", "list", "--json"])
        .stdout
        .lines()
        .count();
    assert_eq!(before, after, "a broken upload files nothing");
}

/// A pipeline without a classify stage has no topics, but its tickets still move through
/// their statuses from the web app.
/// A store with one ticket ingested from `file` (through a pipeline that only extracts),
/// the web app serving it and a clerk logged in: (server, address, cookie, csrf, code).
fn one_ticket_served(
    dir: &Path,
    file: &str,
    extra: &[&str],
) -> (Process, SocketAddr, String, String, String) {
    let data = dir.join("data");
    let pipeline = dir.join("p.toml");
    std::fs::write(&pipeline, "[[stages]]\nkind = \"extract\"\n").unwrap();
    let p = pipeline.to_str().unwrap();
    let mut args = vec!["ingest", "--json", "--pipeline", p];
    args.extend(extra);
    args.push(file);
    let lines = ok(&data, &args).json_lines();
    let code = lines[0]["ticket"]["code"].as_str().unwrap().to_string();
    add_user(&data, "mario", "clerk", CLERK_PW);
    let (server, addr) = serve(&data, &pipeline);
    let (cookie, csrf) = login_raw(addr, "mario", CLERK_PW);
    (server, addr, cookie, csrf, code)
}

fn statuses_change_in_a_pipeline_without_a_classify_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, cookie, csrf, code) =
        one_ticket_served(dir.path(), "fixtures/mail/orari-ufficio.eml", &[]);
    let data = dir.path().join("data");
    let (status, head, _) = post(
        addr,
        &format!("/tickets/{code}/action"),
        &cookie,
        &format!("csrf={csrf}&action=status&status=closed"),
    );
    assert_eq!(status, 303, "{head}");
    let shown = &ok(&data, &["tickets", "show", &code, "--json"]).json_lines()[0];
    assert_eq!(shown["status"], "closed");
}

fn a_voicemail_plays_on_its_ticket_and_a_clerk_writes_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("msg0000.wav");
    std::fs::write(&file, sportello::testdata::wav_silence(1.0)).unwrap();
    let (_server, addr, cookie, csrf, code) =
        one_ticket_served(dir.path(), file.to_str().unwrap(), &["--channel", "phone"]);
    let (_, _, page) = get(addr, &format!("/tickets/{code}"), &cookie);
    let player =
        format!("<audio controls preload=\"none\" src=\"/tickets/{code}/documents/0/file\"");
    assert!(page.contains(&player), "{page}");
    assert!(page.contains("1 s"), "the duration is shown: {page}");
    assert!(page.contains("name=\"action\" value=\"summary\""), "{page}");
    let (status, head, _) = get(addr, &format!("/tickets/{code}/documents/0/file"), &cookie);
    assert_eq!(status, 200);
    assert!(
        header_value(&head, "content-type").contains(&"audio/wav".to_string()),
        "{head}"
    );
    let (status, head, _) = post(
        addr,
        &format!("/tickets/{code}/action"),
        &cookie,
        &format!("csrf={csrf}&action=summary&text=Chiede+del+contatore+del+gas"),
    );
    assert_eq!(status, 303, "{head}");
    let (_, _, page) = get(addr, &format!("/tickets/{code}"), &cookie);
    assert!(page.contains("Chiede del contatore del gas"), "{page}");
}

/// Wrong passwords tried for "mario", each answer checked against the wait it was due.
struct Guesses {
    statuses: Vec<u16>,
    /// Guesses whose password was checked (answered 200), which the server counted.
    counted: u32,
    /// When the last counted guess started.
    last_counted: Instant,
}

impl Guesses {
    fn guess(&mut self, addr: SocketAddr, i: u32) {
        let start = Instant::now();
        let status = try_login(addr, "mario", &format!("guess{i}")).0;
        let statuses = &self.statuses;
        if status == 200 {
            let wait = Subject::Account("mario").wait_secs(self.counted, 0);
            let since = self.last_counted.elapsed();
            assert!(
                wait == 0 || since > Duration::from_secs(wait as u64),
                "guess {i} was checked {since:?} after the last counted one, within its wait \
                 of {wait} s: {statuses:?}"
            );
            self.counted += 1;
            self.last_counted = start;
        } else {
            assert_eq!(status, 429, "guess {i}: {statuses:?}");
        }
        self.statuses.push(status);
    }
}

fn guessing_a_password_is_slowed_and_an_admin_sees_and_releases_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, _, _, _) =
        one_ticket_served(dir.path(), "fixtures/mail/orari-ufficio.eml", &[]);
    add_user(&dir.path().join("data"), "anna", "admin", ADMIN_PW);
    // 25 wrong passwords in a row: after the first few, none is even checked until its
    // wait has passed. How many get through depends on this machine's speed, so each answer
    // is checked against the time it could have waited: an attempt let through must have
    // come (at its end) more than the wait after the start of the one that counted last.
    let mut guesses = Guesses {
        statuses: Vec::new(),
        counted: 0,
        last_counted: Instant::now(),
    };
    for i in 0..25 {
        guesses.guess(addr, i);
    }
    let statuses = &guesses.statuses;
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(
        statuses[3..].iter().filter(|&&s| s == 429).count() >= 11,
        "most guesses in a row are refused: {statuses:?}"
    );
    // Once the first wait is over, one more guess counts, and its wait is longer (2 s).
    let mut i = 25;
    while guesses.statuses.last() == Some(&429) || guesses.counted < 4 {
        std::thread::sleep(Duration::from_millis(200));
        guesses.guess(addr, i);
        i += 1;
        assert!(
            i < 100,
            "no guess let through after its wait: {:?}",
            guesses.statuses
        );
    }
    // And the right password right after it does not open the account.
    let (status, head, body) = try_login(addr, "mario", CLERK_PW);
    assert_eq!(status, 429, "{head}");
    assert!(!head.contains("sportello_session=") || head.contains("sportello_session=;"));
    assert!(!header_value(&head, "retry-after").is_empty(), "{head}");
    assert!(body.contains("Riprovi tra"), "{body}");
    // Another account from the same address is not held back by it.
    let (admin, csrf) = login_raw(addr, "anna", ADMIN_PW);
    let (status, _, page) = get(addr, "/admin/users", &admin);
    assert_eq!(status, 200);
    assert!(page.contains("account:mario"), "{page}");
    let (status, _, _) = post(
        addr,
        "/admin/users/unlock",
        &admin,
        &format!("csrf={csrf}&subject=account%3Amario"),
    );
    assert_eq!(status, 303);
    let (_, _, page) = get(addr, "/admin/users", &admin);
    assert!(!page.contains("account:mario"), "{page}");
    // A clerk may not unlock anyone.
    let (clerk, clerk_csrf) = login_raw(addr, "mario", CLERK_PW);
    let (status, _, _) = post(
        addr,
        "/admin/users/unlock",
        &clerk,
        &format!("csrf={clerk_csrf}&subject=address%3A127.0.0.1"),
    );
    assert_eq!(status, 403);
}

/// A JSON or other body posted to `path`: (status, headers, body).
fn post_body(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn the_json_api_files_a_request_answers_its_status_and_says_every_error_as_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = dir.path().join("p.toml");
    // Acknowledgements go to the outbox; this test only looks at what is queued there.
    std::fs::write(
        &pipeline,
        format!(
            "[[stages]]\nkind = \"extract\"\n\n[[stages]]\nkind = \"classify\"\nrules = \"{}\"\n\n\
             [[sinks]]\nkind = \"smtp_ack\"\nhost = \"127.0.0.1\"\nport = 9\ntls = \"plain\"\n\
             from = \"URP <urp@comune.example.it>\"\n\n[[sinks]]\nkind = \"sms\"\noutbox = \"{}\"\n",
            project_dir().join("pipelines/rules.toml").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (_server, addr) = serve(&data, &pipeline);
    let request = serde_json::json!({
        "name": "Maria", "surname": "Rossi", "email": "maria.rossi@example.it", "phone": "333 111 2222",
        "subject": "Allaccio del gas al MAP",
        "text": "Buongiorno, chiedo quando verrà fatto l'allaccio del gas al MAP di Paganica.",
        "topic": "gas", "privacy_accepted": true
    });
    let (status, head, body) = post_body(
        addr,
        "/api/v1/requests",
        "application/json",
        &request.to_string(),
    );
    assert_eq!(status, 201, "{head}\n{body}");
    let receipt: serde_json::Value = serde_json::from_str(&body).unwrap();
    let code = receipt["code"].as_str().unwrap().to_string();
    assert!(
        receipt["protocol"].as_str().unwrap().contains('/'),
        "{receipt}"
    );
    assert!(
        receipt["deadline"].as_str().unwrap().len() == 10,
        "{receipt}"
    );
    assert!(
        header_value(&head, "location")
            .contains(&format!("/api/v1/requests/{}", code.to_lowercase())),
        "{head}"
    );
    let (status, _, body) = get(addr, &format!("/api/v1/requests/{code}"), "");
    assert_eq!(status, 200, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["status"], "new");
    assert!(
        shown.get("subject").is_none(),
        "nothing of the content: {shown}"
    );
    // Filed as the web form files it: channel, topic, the receipt queued for the citizen.
    let t = &ok(&data, &["tickets", "show", &code, "--json"]).json_lines()[0];
    assert_eq!(t["channel"], "webform");
    assert_eq!(t["topic"], "gas", "{t}");
    assert_eq!(t["sender"]["email"], "maria.rossi@example.it");
    // The receipt goes both ways the citizen gave: email and text message.
    let receipts: Vec<&serde_json::Value> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ack_queued")
        .collect();
    assert_eq!(receipts.len(), 2, "{t}");
    assert!(
        receipts
            .iter()
            .any(|e| e["detail"]["to"] == "+393331112222"),
        "{t}"
    );

    let problem = |status: u16, head: &str, body: &str| -> serde_json::Value {
        assert!(
            header_value(head, "content-type").contains(&"application/problem+json".to_string()),
            "{head}"
        );
        let p: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(p["status"], status, "{p}");
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        p
    };
    let mut without = request.clone();
    without["privacy_accepted"] = false.into();
    without["email"] = "not an address".into();
    let (status, head, body) = post_body(
        addr,
        "/api/v1/requests",
        "application/json",
        &without.to_string(),
    );
    assert_eq!(status, 422);
    let p = problem(422, &head, &body);
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "privacy_accepted"], "{p}");
    let (status, head, body) =
        post_body(addr, "/api/v1/requests", "application/json", "{\"name\": ");
    assert_eq!(status, 400);
    problem(400, &head, &body);
    let (status, head, body) = post_body(addr, "/api/v1/requests", "text/plain", "ciao");
    assert_eq!(status, 415);
    problem(415, &head, &body);
    let huge = format!("{{\"text\": \"{}\"}}", "x".repeat(100_000));
    let (status, head, body) = post_body(addr, "/api/v1/requests", "application/json", &huge);
    assert_eq!(status, 413);
    problem(413, &head, &body);
    let mistyped = format!("{}X", &code[..code.len() - 1]);
    let mistyped = if mistyped == code {
        format!("{}Y", &code[..code.len() - 1])
    } else {
        mistyped
    };
    let (status, head, body) = get(addr, &format!("/api/v1/requests/{mistyped}"), "");
    assert_eq!(status, 400, "{body}");
    problem(400, &head, &body);
    // With attachments: the same fields as a multipart form.
    let letter =
        std::fs::read(project_dir().join("fixtures/scanner/lettera-allacciamento-gas.pdf"))
            .unwrap();
    let (ct, form) = multipart(
        &[
            ("name", "Luca"),
            ("surname", "Bianchi"),
            ("phone", "3339876543"),
            ("subject", "Allaccio gas"),
            ("text", "Allego la domanda di allaccio."),
            ("privacy_accepted", "true"),
        ],
        &[("domanda.pdf", &letter)],
    );
    let (status, answer) = post_bytes(addr, "/api/v1/requests", "", &ct, &form);
    assert!(status == 201, "{answer}");
    let with_file: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let t = &ok(
        &data,
        &[
            "tickets",
            "show",
            with_file["code"].as_str().unwrap(),
            "--json",
        ],
    )
    .json_lines()[0];
    assert!(
        t["documents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "domanda.pdf"),
        "{t}"
    );
    assert_eq!(t["sender"]["phone"], "+393339876543");
    // A well-formed code nobody was given.
    let unknown = sportello::code::generate("URP", &mut rand::thread_rng());
    let (status, head, body) = get(addr, &format!("/api/v1/requests/{unknown}"), "");
    assert_eq!(status, 404, "{body}");
    problem(404, &head, &body);
    // At most 10 requests a minute from one address.
    let statuses: Vec<u16> = (0..7)
        .map(|_| post_body(addr, "/api/v1/requests", "application/json", "{}").0)
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // Other systems, with a token an admin made: archivists read, clerks also change.
    let token_of = |name: &str, role: &str| {
        let made = ok(&data, &["users", "add-token", name, "--role", role]);
        made.stdout.trim().rsplit(' ').next().unwrap().to_string()
    };
    let clerk = token_of("protocollo", "clerk");
    let reader = token_of("archivio", "archivist");
    let with_token = |method: &str, path: &str, token: &str, body: &str| {
        http(
            addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let (status, _, body) = with_token("GET", "/api/v1/tickets?status=new", &reader, "");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        list.as_array().unwrap().iter().any(|t| t["code"] == code),
        "{list}"
    );
    let (status, _, body) = with_token("GET", &format!("/api/v1/tickets/{code}"), &reader, "");
    assert_eq!(status, 200);
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(full["subject"], "Allaccio del gas al MAP");
    let (status, _, body) = with_token("GET", "/api/v1/search?q=allacciamento", &reader, "");
    assert_eq!(status, 200);
    assert!(body.contains(&code), "search forgives word endings: {body}");
    let (status, head, body) = with_token(
        "POST",
        &format!("/api/v1/tickets/{code}/status"),
        &reader,
        "{\"status\": \"closed\"}",
    );
    assert_eq!(status, 403, "an archivist's token reads only");
    problem(403, &head, &body);
    let (status, _, body) = with_token(
        "POST",
        &format!("/api/v1/tickets/{code}/topic"),
        &clerk,
        "{\"topic\": \"housing\"}",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"topic\":\"housing\""), "{body}");
    let (status, _, body) = with_token(
        "POST",
        &format!("/api/v1/tickets/{code}/status"),
        &clerk,
        "{\"status\": \"closed\"}",
    );
    assert_eq!(status, 200, "{body}");
    let t = &ok(&data, &["tickets", "show", &code, "--json"]).json_lines()[0];
    assert_eq!(t["status"], "closed");
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "api:protocollo"),
        "changes are recorded under the token's name: {t}"
    );
    // A revoked token, and no token, are refused; wrong tokens are throttled by address.
    ok(&data, &["users", "revoke-token", "archivio"]);
    let (status, head, body) = with_token("GET", "/api/v1/tickets", &reader, "");
    assert_eq!(status, 401);
    problem(401, &head, &body);
    assert!(
        header_value(&head, "www-authenticate")[0].starts_with("bearer"),
        "{head}"
    );
    let (status, _, _) = get(addr, "/api/v1/tickets", "");
    assert_eq!(status, 401);
    let statuses: Vec<u16> = (0..12)
        .map(|i| with_token("GET", "/api/v1/tickets", &format!("spt_wrong{i}"), "").0)
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // The contract, checked by an OpenAPI validator from the npm registry.
    let (status, _, doc) = get(addr, "/api/v1/openapi.json", "");
    assert_eq!(status, 200);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    match Command::new("npx")
        .args(["--yes", "@apidevtools/swagger-cli@4.0.4", "validate"])
        .arg(&file)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped the OpenAPI validation: npx is not available ({e})"),
    }
}

/// axe-core's script, from the npm registry (kept under `target/` between runs).
fn axe_source() -> String {
    let prefix = project_dir().join("target/npm-axe");
    let script = prefix.join("node_modules/axe-core/axe.min.js");
    if !script.exists() {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg("axe-core@4.10.2")
            .output()
            .expect("npm (Node 20) runs the accessibility checks");
        assert!(
            out.status.success(),
            "npm install axe-core: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read_to_string(script).unwrap()
}

/// axe-core's WCAG 2.1 A/AA rules on the page shown: every violation, by rule and element.
async fn axe_violations(c: &Client, axe: &str) -> Vec<String> {
    c.execute(&format!("{axe}\n;return true;"), vec![])
        .await
        .expect("axe-core loads");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\
                .then(r => done(JSON.stringify(r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))))\
                .catch(e => done(JSON.stringify(['axe failed: ' + e])));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    serde_json::from_str(found.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_sends_a_request_with_a_scanned_letter_by_keyboard_and_every_page_is_accessible()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[stages]]\nkind = \"extract\"\n\n[[stages]]\nkind = \"ocr\"\n\n[[stages]]\nkind = \"classify\"\nrules = \"{}\"\n\n\
             [[sinks]]\nkind = \"smtp_ack\"\nhost = \"127.0.0.1\"\nport = 9\ntls = \"plain\"\n\
             from = \"URP <urp@comune.example.it>\"\n",
            project_dir().join("pipelines/rules.toml").display()
        ),
    )
    .unwrap();
    let axe = axe_source();
    let (_server, addr) = serve(&data, &pipeline);
    let base = format!("http://{addr}");
    let (_driver, port) = chromedriver();
    let c = browser(port).await;
    let mut checked = Vec::new();
    let mut check = |name: &'static str, violations: Vec<String>| {
        assert!(violations.is_empty(), "{name}: {violations:#?}");
        checked.push(name);
    };

    c.goto(&format!("{base}/richiesta")).await.unwrap();
    check("form", axe_violations(&c, &axe).await);
    // Sent empty: every problem beside its field, summarised at the top.
    click_and_wait(&c, "form.citizen button[type=submit]").await;
    let page = c.source().await.unwrap();
    assert!(
        page.contains("err-privacy_accepted") && page.contains("err-subject"),
        "{page}"
    );
    check("form with errors", axe_violations(&c, &axe).await);

    // By keyboard: Tab from the skip link reaches the first field; typing fills; Space ticks
    // the privacy box; Enter in a field sends the form.
    let typed = [
        ("name", "Carlo"),
        ("surname", "Iannini"),
        ("email", "carlo.iannini@example.it"),
        (
            "subject",
            "Contributo di autonoma sistemazione non ricevuto",
        ),
        (
            "text",
            "Allego la lettera: chiedo il pagamento del contributo di autonoma sistemazione.",
        ),
    ];
    for (id, value) in typed {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .clear()
            .await
            .unwrap();
        keys(&c, Locator::Id(id), value).await;
    }
    let letter = project_dir().join("fixtures/scanner/scansione-contributo.pdf");
    keys(&c, Locator::Id("files"), letter.to_str().unwrap()).await;
    keys(&c, Locator::Id("privacy_accepted"), " ").await;
    keys(&c, Locator::Id("subject"), ENTER).await;
    wait_loaded(&c).await;
    let page = c.source().await.unwrap();
    assert!(page.contains("Riepilogo della richiesta"), "{page}");
    assert!(
        page.contains("scansione-contributo.pdf") && page.contains("Carlo Iannini"),
        "{page}"
    );
    check("summary", axe_violations(&c, &axe).await);
    // Confirmed from the keyboard too: the button takes Enter.
    keys(
        &c,
        Locator::Css("form[action='/richiesta/conferma'] button"),
        ENTER,
    )
    .await;
    wait_loaded(&c).await;
    let page = c.source().await.unwrap();
    assert!(page.contains("Richiesta ricevuta"), "{page}");
    let code = text_of(&c, "dd.code").await;
    assert!(page.contains("/0000001"), "the protocol number: {page}");
    check("receipt", axe_violations(&c, &axe).await);
    for (name, path) in [("privacy", "/privacy"), ("accessibility", "/accessibilita")] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        check(name, axe_violations(&c, &axe).await);
    }
    c.goto(&format!("{base}/lang?to=en")).await.unwrap();
    c.goto(&format!("{base}/richiesta")).await.unwrap();
    assert_eq!(text_of(&c, "main h1").await, "Send a request");
    check("form in English", axe_violations(&c, &axe).await);
    // The check itself can fail: an image without a text alternative is caught.
    c.execute(
        "document.querySelector('main').appendChild(document.createElement('img')); return true;",
        vec![],
    )
    .await
    .unwrap();
    let caught = axe_violations(&c, &axe).await;
    assert!(
        caught.iter().any(|v| v.starts_with("image-alt")),
        "{caught:?}"
    );
    c.close().await.unwrap();
    assert_eq!(checked.len(), 7);

    // Filed as any document would be: channel, the letter read by OCR, a topic, the receipt
    // waiting in the outbox for the citizen.
    let t = &ok(&data, &["tickets", "show", &code, "--json"]).json_lines()[0];
    assert_eq!(t["channel"], "webform");
    let docs = t["documents"].as_array().unwrap();
    assert!(
        docs.iter().any(|d| d["name"] == "scansione-contributo.pdf"
            && d["text"]
                .as_str()
                .unwrap()
                .contains("autonoma sistemazione")),
        "{t}"
    );
    assert!(t["topic"].is_string(), "{t}");
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "ack_queued"),
        "{t}"
    );
}

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

/// Types `text` into the element `at` (keyboard events, as a person typing).
async fn keys(c: &Client, at: Locator<'_>, text: &str) {
    c.find(at).await.unwrap().send_keys(text).await.unwrap();
}

/// Waits for the page a form or link led to.
async fn wait_loaded(c: &Client) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..100 {
        let state = c.execute("return document.readyState", vec![]).await;
        if matches!(state, Ok(ref v) if v == "complete") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A multipart/form-data body of text fields and files.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----sportello-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts raw bytes; the server may answer before reading them all.
fn post_bytes(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server that refuses early closes the connection: the rest cannot be written.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = http_status(&text);
    (status, text)
}

fn the_citizens_form_refuses_bad_input_with_reasons_and_keeps_what_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(&pipeline, "[[stages]]\nkind = \"extract\"\n").unwrap();
    let (_server, addr) = serve(&data, &pipeline);
    let (_, head, page) = get(addr, "/richiesta", "");
    let cookie = header_value(&head, "set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = form_value(&page, "csrf");
    let good = [
        ("csrf", csrf.as_str()),
        ("name", "Anna"),
        ("surname", "Verdi"),
        ("email", "anna.verdi@example.it"),
        ("subject", "Macerie in via Roma"),
        ("text", "Le macerie ostruiscono la strada da una settimana."),
    ];
    // No consent to the privacy notice: said beside the box, what was typed kept.
    let (ct, body) = multipart(&good, &[]);
    let (status, page) = post_bytes(addr, "/richiesta", &cookie, &ct, &body);
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("id=\"err-privacy_accepted\""), "{page}");
    assert!(page.contains("value=\"Macerie in via Roma\""), "{page}");
    // A forged attachment (not the type it claims) and one over the size limit.
    let mut with_privacy = good.to_vec();
    with_privacy.push(("privacy_accepted", "yes"));
    let big = vec![b'%'; 10 * 1024 * 1024 + 1];
    let (ct, body) = multipart(
        &with_privacy,
        &[
            ("lettera.pdf", b"MZ\x90\x00 an executable"),
            ("grande.pdf", &big),
        ],
    );
    let (status, page) = post_bytes(addr, "/richiesta", &cookie, &ct, &body);
    assert_eq!(status, 422, "{}", &page[..page.len().min(3000)]);
    assert!(page.contains("lettera.pdf: non è un file PDF"), "{page}");
    assert!(page.contains("grande.pdf: più di 10 MB"), "{page}");
    // A whole form over the limit is cut off while it streams in, and refused.
    let (ct, body) = multipart(&with_privacy, &[("enorme.pdf", &vec![0u8; 60 << 20])]);
    let (status, _) = post_bytes(addr, "/richiesta", &cookie, &ct, &body);
    assert!(status == 400 || status == 413, "status {status}");
    // The honeypot field only robots fill, and a form without its token.
    let mut robot = with_privacy.clone();
    robot.push(("website", "http://spam.example"));
    let (ct, body) = multipart(&robot, &[]);
    assert_eq!(post_bytes(addr, "/richiesta", &cookie, &ct, &body).0, 400);
    let (ct, body) = multipart(&with_privacy, &[]);
    let (status, page) = post_bytes(addr, "/richiesta", "", &ct, &body);
    assert_eq!(status, 200);
    assert!(page.contains("scaduto"), "{page}");
    assert!(
        ok(&data, &["export", "--jsonl"]).json_lines().is_empty(),
        "nothing was filed"
    );
    // A good one goes to the summary; a draft that is not ours is refused.
    let (ct, body) = multipart(&with_privacy, &[]);
    let (status, page) = post_bytes(addr, "/richiesta", &cookie, &ct, &body);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/richiesta/conferma"), "{page}");
    let (status, _, _) = post(
        addr,
        "/richiesta/conferma",
        &cookie,
        &format!("csrf={csrf}&draft=..%2F..%2Fetc"),
    );
    assert_eq!(status, 400);
    let draft = form_value(&page, "draft");
    let (status, head, _) = post(
        addr,
        "/richiesta/conferma",
        &cookie,
        &format!("csrf={csrf}&draft={draft}"),
    );
    assert_eq!(status, 303, "{head}");
    // Confirmed once: a second click finds nothing to send.
    let (status, _, _) = post(
        addr,
        "/richiesta/conferma",
        &cookie,
        &format!("csrf={csrf}&draft={draft}"),
    );
    assert_eq!(status, 404);
    assert_eq!(ok(&data, &["export", "--jsonl"]).json_lines().len(), 1);
}

fn an_admin_annuls_a_registration_after_confirming_and_a_clerk_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, clerk, clerk_csrf, code) =
        one_ticket_served(dir.path(), "fixtures/mail/orari-ufficio.eml", &[]);
    let data = dir.path().join("data");
    add_user(&data, "anna", "admin", ADMIN_PW);
    let action = format!("/tickets/{code}/action");
    let annul = "action=annul&text=Oggetto+errato&act=Determina+5%2F2026&confirm=yes";
    let (status, _, _) = post(addr, &action, &clerk, &format!("csrf={clerk_csrf}&{annul}"));
    assert_eq!(status, 403, "only an admin annuls");
    let (admin, csrf) = login_raw(addr, "anna", ADMIN_PW);
    let (_, _, page) = get(addr, &format!("/tickets/{code}"), &admin);
    assert!(page.contains("value=\"annul\""), "the admin sees the form");
    let unconfirmed = "action=annul&text=Oggetto+errato&act=";
    let (status, _, _) = post(addr, &action, &admin, &format!("csrf={csrf}&{unconfirmed}"));
    assert_eq!(status, 400, "not without the confirmation");
    let (status, _, _) = post(addr, &action, &admin, &format!("csrf={csrf}&{annul}"));
    assert_eq!(status, 303);
    let (_, _, page) = get(addr, &format!("/tickets/{code}"), &clerk);
    assert!(
        page.contains("Registrazione annullata") && page.contains("Determina 5/2026"),
        "{page}"
    );
    let t = &ok(&data, &["tickets", "show", &code, "--json"]).json_lines()[0];
    assert_eq!(t["annulled"]["by"], "anna");
    assert_eq!(t["annulled"]["reason"], "Oggetto errato");
}

/// An account made with `sportello users add`, its password on standard input.
fn add_user(data: &Path, name: &str, role: &str, password: &str) {
    let mut child = with_database(&mut Command::new(bin()))
        .arg("--data")
        .arg(data)
        .args(["users", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

/// With a register and a seal, the ticket page links the registration's segnatura, which
/// downloads sealed (only for people logged in).
fn a_ticket_page_offers_its_sealed_segnatura() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key, cert) = common::seal_certificate(dir.path());
    let pipeline = dir.path().join("register.toml");
    std::fs::write(
        &pipeline,
        format!(
            "seal_key = {:?}\nseal_cert = {:?}\n\n[register]\nipa = \"c_a345\"\naoo = \"AOO_URP\"\n\
             administration = \"Comune dell'Aquila\"\nfiscal_code = \"80002270660\"\n\n\
             [[stages]]\nkind = \"extract\"\n",
            key.display().to_string(),
            cert.display().to_string()
        ),
    )
    .unwrap();
    let p = pipeline.to_str().unwrap();
    let lines = ok(
        &data,
        &[
            "ingest",
            "--json",
            "--pipeline",
            p,
            "fixtures/mail/richiesta-tari.eml",
        ],
    )
    .json_lines();
    let code = lines[0]["ticket"]["code"].as_str().unwrap().to_string();
    add_user(&data, "mario", "clerk", CLERK_PW);
    let (_server, addr) = serve(&data, &pipeline);
    let link = format!("/tickets/{code}/segnatura.xml");
    let (status, _, _) = get(addr, &link, "");
    assert_ne!(status, 200, "not for strangers");
    let (cookie, _) = login_raw(addr, "mario", CLERK_PW);
    let (_, _, page) = get(addr, &format!("/tickets/{code}"), &cookie);
    assert!(page.contains(&link), "the ticket page links its segnatura");
    let (status, head, xml) = get(addr, &link, &cookie);
    assert_eq!(status, 200, "{xml}");
    assert!(head.contains("content-type: application/xml"), "{head}");
    assert!(
        head.contains(&format!("segnatura-{}.xml", code.to_lowercase())),
        "{head}"
    );
    assert!(xml.contains("<prot:SegnaturaInformatica"), "{xml}");
    let file = dir.path().join("downloaded.xml");
    std::fs::write(&file, &xml).unwrap();
    let verified = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(&cert)
        .arg(&file)
        .output()
        .expect("xmlsec1 (installed by make) runs");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

on_both_backends!(
    sessions_csrf_roles_headers_and_downloads_over_http,
    two_web_servers_on_one_store_share_the_per_address_limits,
    a_request_taken_at_the_desk_is_registered_with_its_documents,
    statuses_change_in_a_pipeline_without_a_classify_stage,
    a_voicemail_plays_on_its_ticket_and_a_clerk_writes_its_summary,
    guessing_a_password_is_slowed_and_an_admin_sees_and_releases_the_account,
    the_json_api_files_a_request_answers_its_status_and_says_every_error_as_a_problem,
    the_citizens_form_refuses_bad_input_with_reasons_and_keeps_what_was_typed,
    an_admin_annuls_a_registration_after_confirming_and_a_clerk_cannot,
    a_ticket_page_offers_its_sealed_segnatura,
);
