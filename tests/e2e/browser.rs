//! The web desk in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) by fantoccini. A police officer signs
//! in, files through the form, sees a field violation beside its field (the
//! desk's own script, allowed by the CSP, puts the cursor there), corrects it
//! and files; the session's token is nowhere the page's script can reach
//! (no readable cookie, nothing in local or session storage, nothing in the
//! page source). `scripts/test` installs chromium and chromium-driver when
//! missing; without them the test is skipped, and fails under CI=true.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// A headless chromium under chromedriver, both stopped on drop.
struct Chrome {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The browser, or `None` (recorded as skipped) when this machine has none.
async fn chrome() -> Option<Chrome> {
    let present = |p: &str| std::path::Path::new(p).exists();
    if !present("/usr/bin/chromium") || !present("/usr/bin/chromedriver") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium and chromium-driver are required under CI=true (scripts/test installs them)"
        );
        eprintln!("skipping the browser test: install chromium and chromium-driver");
        crate::common::record_skip();
        return None;
    }
    let port = crate::processes::free_port();
    let driver = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=360,800",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    Some(Chrome {
        client,
        driver,
        _profile: profile,
    })
}

/// Waits (bounded) until the page's path satisfies `wanted`: a click
/// returns before the navigation it starts has finished.
async fn wait_for_path(c: &Client, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let at = c.current_url().await.expect("url");
        let ready = script(c, "return document.readyState;").await == "complete";
        if wanted(at.path()) && ready {
            return at.path().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "still at {at}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn script(c: &Client, js: &str) -> serde_json::Value {
    c.execute(js, vec![]).await.expect("script runs")
}

async fn fill(c: &Client, name: &str, value: &str) {
    let input = c
        .find(Locator::Css(&format!("[name='{name}']")))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_police_officer_files_a_referral_in_chromium() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let c = &chrome.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_serve, _, url) = crate::web::serve_with_web(dir.path());
    // The desk's address as a browser treats it: localhost is a secure context.
    let url = url.replace("127.0.0.1", "localhost");

    c.goto(&format!("{url}/sign-in"))
        .await
        .expect("sign-in page");
    click(c, "select[name='agency'] option[value='police-nairobi']").await;
    click(c, "form[action='/sign-in/dev'] button[type='submit']").await;
    wait_for_path(c, |p| p == "/inbox").await;

    // The token is nowhere the page's script reaches.
    assert_eq!(
        script(c, "return document.cookie;").await,
        "",
        "the session cookie is HttpOnly"
    );
    assert_eq!(
        script(c, "return localStorage.length + sessionStorage.length;").await,
        0
    );
    assert!(!c.source().await.expect("source").contains("eyJ"));

    // The form: a bad date comes back beside its field, the form kept, the cursor there.
    c.goto(&format!("{url}/referrals/new")).await.expect("form");
    for (name, value) in [
        ("subject.given_name", "Wanjiru"),
        ("subject.family_name", "Example"),
        ("subject.date_of_birth", "not a date"),
        ("county", "Nairobi"),
    ] {
        fill(c, name, value).await;
    }
    for css in [
        "select[name='urgency'] option[value='URGENCY_HIGH']",
        "select[name='classification'] option[value='CLASSIFICATION_SUSPECTED_TIP']",
        "select[name='identified_by'] option[value='IDENTIFIED_BY_POLICE']",
        "input[name='case_facts.acts'][value='ACT_RECRUITMENT']",
        "input[name='case_facts.means'][value='MEANS_DECEPTION']",
        "input[name='case_facts.purposes'][value='PURPOSE_FORCED_LABOUR']",
        "input[name='needs'][value='NEED_SHELTER']",
    ] {
        click(c, css).await;
    }
    click(c, "form.filing button[type='submit']").await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[id='subject.date_of_birth-error']"))
        .await
        .expect("the form comes back with the violation");
    let violation = c
        .find(Locator::Css("[id='subject.date_of_birth-error']"))
        .await
        .expect("the violation beside the date")
        .text()
        .await
        .expect("text");
    assert!(violation.contains("YYYY-MM-DD"), "{violation}");
    let kept = c
        .find(Locator::Css("[name='subject.given_name']"))
        .await
        .expect("input")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some("Wanjiru"), "the form is kept");
    // The desk's script (allowed by the CSP) puts the cursor on the first invalid field.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while script(
        c,
        "return document.activeElement && document.activeElement.name;",
    )
    .await
        != "subject.date_of_birth"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cursor is not on the invalid field"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fill(c, "subject.date_of_birth", "2001-05-06").await;
    click(c, "form.filing button[type='submit']").await;
    wait_for_path(c, |p| p.starts_with("/referrals/0")).await;
    let source = c.source().await.expect("source");
    assert!(
        source.contains("Wanjiru") && source.contains("RN-"),
        "the referral as filed"
    );
}

/// The NGO's open inbox page shows a handoff routed to it without a reload:
/// Server-Sent Events from its WatchInbox stream, rows fetched by our script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ngos_open_inbox_shows_a_new_handoff_without_reload() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let c = &chrome.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_serve, grpc, url) = crate::web::serve_with_web(dir.path());
    let url = url.replace("127.0.0.1", "localhost");

    c.goto(&format!("{url}/sign-in"))
        .await
        .expect("sign-in page");
    click(
        c,
        "select[name='agency'] option[value='ngo-shelter-nairobi']",
    )
    .await;
    click(c, "form[action='/sign-in/dev'] button[type='submit']").await;
    wait_for_path(c, |p| p == "/inbox").await;
    script(c, "window.refnetStillHere = true; return null;").await;

    // Police files from the command line (consent for NGOs, needs shelter: routed to the NGO).
    let data = dir.path().join("data");
    let token = Command::new(REFNET)
        .args(["token", "--data-dir"])
        .arg(&data)
        .args(["--agency", "police-nairobi", "--role", "officer"])
        .output()
        .expect("refnet token");
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let (draft, _) = crate::desk::shelter_draft();
    let file = dir.path().join("draft.json");
    std::fs::write(&file, crate::desk::draft_json(&draft)).expect("draft");
    let filed = crate::desk::run(
        &format!("http://{grpc}"),
        Some(&token),
        &["referral", "file", file.to_str().expect("utf-8"), "--quiet"],
        None,
    )
    .await;
    assert!(filed.success, "{filed:?}");
    let code = filed.stdout.trim().to_owned();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = script(c, "return document.getElementById('inbox').textContent;").await;
        if text.as_str().is_some_and(|t| t.contains(&code)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{code} never appeared on the open inbox: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        script(c, "return window.refnetStillHere === true;").await,
        true,
        "the page was not reloaded"
    );
}
