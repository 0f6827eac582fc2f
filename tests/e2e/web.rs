//! The web desk over HTTP, as a browser uses it (cookies, forms, redirects):
//! `refnet desk` in front of a running server, and the one `refnet serve`
//! starts. A police officer files through the form (a field violation shown
//! beside its field, the form kept), another agency reads what the server
//! shows it (the pseudonym and the withheld markers with their reasons),
//! the NGO finds the handoff in its inbox; and the security properties hold:
//! CSP and no-store on every page, session cookie flags, CSRF rejection with
//! nothing filed, no token in any page, sign-out ends the session.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{common::TestApp, on_both};

on_both!(a_desk_officer_files_in_the_browser_and_each_agency_sees_its_view);

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// A browser: a cookie jar and no automatic redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Every Set-Cookie header seen, as sent.
    set_cookies: Vec<String>,
}

/// One answer: status, headers, body.
struct Page {
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the hidden input `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in:\n{}", self.body))
            + marker.len();
        self.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("the web desk answers");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("ascii").to_owned();
            let (pair, attributes) = set.split_once(';').unwrap_or((&set, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
            self.set_cookies.push(set);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        let page = Page {
            status,
            headers,
            body,
        };
        // Every page: the strict CSP, never stored, no token in it.
        let csp = page
            .headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("default-src 'none'")
                && !csp.contains("unsafe"),
            "CSP: {csp}"
        );
        assert_eq!(
            page.headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        assert!(
            !page.body.contains("eyJ"),
            "a page holds something like a token"
        );
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.answer(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.answer(request).await
    }

    /// Signs in through the development sign-in as an officer of `agency`.
    async fn sign_in(&mut self, agency: &str) {
        let page = self.get("/sign-in").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.hidden("csrf");
        let signed = self
            .post(
                "/sign-in/dev",
                &[("csrf", &csrf), ("agency", agency), ("role", "officer")],
            )
            .await;
        assert_eq!(signed.status, 303, "{}", signed.body);
        assert_eq!(signed.location(), "/inbox");
        let session = self
            .set_cookies
            .iter()
            .rev()
            .find(|c| c.starts_with("refnet_session="))
            .expect("a session cookie");
        for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(session.contains(flag), "{flag} on {session}");
        }
    }
}

/// A running `refnet desk` (killed on drop) and its address.
struct Desk(Child, String);

impl Drop for Desk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's standard error until the web desk's announcement.
pub(crate) fn announced(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = refnet_core::announce::web_address(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the web desk announces its address")
}

fn desk_for(app: &TestApp) -> Desk {
    let mut child = Command::new(REFNET)
        .args(["desk", "--server", &format!("http://{}", app.addr)])
        .args(["--listen", "127.0.0.1:0", "--dev-key-dir"])
        .arg(app.data_dir.path())
        .args(["--database-url", &app.database_url])
        .env_remove("REFNET_CONFIG")
        .env_remove("REFNET_SERVER")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn refnet desk");
    let url = announced(&mut child);
    Desk(child, url)
}

fn form_of<'a>(
    pairs: &'a [(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    pairs.iter().chain(extra).copied().collect()
}

async fn a_desk_officer_files_in_the_browser_and_each_agency_sees_its_view(app: &TestApp) {
    let desk = desk_for(app);
    let mut police = Browser::new(&desk.1);

    // Signed out, a page leads to the sign-in.
    let page = police.get("/inbox").await;
    assert_eq!((page.status.as_u16(), page.location()), (303, "/sign-in"));
    police.sign_in("police-nairobi").await;

    // The form: every field of the draft; a bad date comes back beside its field, the form kept.
    let form = police.get("/referrals/new").await;
    assert_eq!(form.status, 200);
    for input in [
        "subject.given_name",
        "subject.national_id",
        "case_facts.purposes",
        "consent.agency_kinds",
        "suspects.0.name",
    ] {
        assert!(form.body.contains(&format!("name=\"{input}\"")), "{input}");
    }
    let (csrf, key) = (form.hidden("csrf"), form.hidden("idempotency_key"));
    let draft: [(&str, &str); 14] = [
        ("subject.given_name", "Wanjiru"),
        ("subject.family_name", "Example"),
        ("case_facts.acts", "ACT_RECRUITMENT"),
        ("case_facts.means", "MEANS_DECEPTION"),
        ("case_facts.purposes", "PURPOSE_FORCED_LABOUR"),
        ("needs", "NEED_SHELTER"),
        ("urgency", "URGENCY_HIGH"),
        ("classification", "CLASSIFICATION_SUSPECTED_TIP"),
        ("identified_by", "IDENTIFIED_BY_POLICE"),
        ("county", "Nairobi"),
        ("consent.given", "true"),
        ("consent.by", "CONSENT_BY_SUBJECT"),
        ("consent.agency_kinds", "AGENCY_KIND_NGO"),
        ("subject.phones", "0712 345 678"),
    ];
    let base = [("csrf", csrf.as_str()), ("idempotency_key", key.as_str())];
    let bad = police
        .post(
            "/referrals/new",
            &form_of(
                &draft,
                &[base[0], base[1], ("subject.date_of_birth", "not a date")],
            ),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"subject.date_of_birth-error\""),
        "the violation is beside its field: {}",
        bad.body
    );
    assert!(bad.body.contains("value=\"Wanjiru\""), "the form is kept");
    assert!(
        bad.body.contains("value=\"not a date\""),
        "the bad value is kept"
    );

    // Without the CSRF token, or with another's, nothing is filed.
    let forged = police
        .post(
            "/referrals/new",
            &form_of(&draft, &[("csrf", "forged"), base[1]]),
        )
        .await;
    assert_eq!(forged.status, 403);
    let before = app.count("referrals").await;

    // Corrected, it files, and the page shows what the server returned.
    let filed = police
        .post(
            "/referrals/new",
            &form_of(
                &draft,
                &[base[0], base[1], ("subject.date_of_birth", "2001-05-06")],
            ),
        )
        .await;
    assert_eq!(filed.status, 303, "{}", filed.body);
    let path = filed.location().to_owned();
    assert!(path.starts_with("/referrals/"), "{path}");
    assert_eq!(
        app.count("referrals").await,
        before + 1,
        "the forged post filed nothing"
    );
    let shown = police.get(&path).await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("Wanjiru"), "the filer sees the name");
    let code_at = shown.body.find("RN-").expect("a reference code");
    let code = shown.body[code_at..code_at + 14].to_owned();
    // Sending the same form again files nothing new (its idempotency key).
    let again = police
        .post(
            "/referrals/new",
            &form_of(
                &draft,
                &[base[0], base[1], ("subject.date_of_birth", "2001-05-06")],
            ),
        )
        .await;
    assert_eq!(again.location(), path);

    // Labour (a party without consent) sees the pseudonym and why.
    let mut labour = Browser::new(&desk.1);
    labour.sign_in("labour-nairobi").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let page = labour.get(&path).await;
        if page.status == 200 || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(
        !seen.body.contains("Wanjiru"),
        "labour does not see the name"
    );
    assert!(!seen.body.contains("0712 345 678"), "nor the phone");
    assert!(
        seen.body.contains("referral.draft.subject.given_name") && seen.body.contains("no consent"),
        "the withheld marker and its reason: {}",
        seen.body
    );

    // The NGO's inbox has the handoff.
    let mut ngo = Browser::new(&desk.1);
    ngo.sign_in("ngo-shelter-nairobi").await;
    let inbox = loop {
        let page = ngo.get("/inbox").await;
        if page.body.contains(&code) || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(inbox.body.contains(&code), "{}", inbox.body);

    // The NGO opens its handoff, acknowledges and accepts it, and posts to the thread.
    let handoff_at = inbox
        .body
        .find("href=\"/handoffs/")
        .expect("a handoff link")
        + "href=\"".len();
    let handoff = inbox.body[handoff_at..]
        .split('"')
        .next()
        .expect("link")
        .to_owned();
    for action in ["acknowledge", "accept"] {
        let page = ngo.get(&handoff).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let (csrf, version) = (page.hidden("csrf"), page.hidden("expected_version"));
        let done = ngo
            .post(
                &format!("{handoff}/{action}"),
                &[("csrf", &csrf), ("expected_version", &version)],
            )
            .await;
        assert_eq!(
            (done.status.as_u16(), done.location()),
            (303, handoff.as_str()),
            "{action}: {}",
            done.body
        );
    }
    let accepted = ngo.get(&handoff).await;
    assert!(accepted.body.contains("accepted"), "{}", accepted.body);
    // A step the server refuses is shown as it came, with its code.
    let (csrf, version) = (accepted.hidden("csrf"), accepted.hidden("expected_version"));
    let refused = ngo
        .post(
            &format!("{handoff}/acknowledge"),
            &[("csrf", &csrf), ("expected_version", &version)],
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.body);
    assert!(
        refused.body.contains("FAILED_PRECONDITION"),
        "{}",
        refused.body
    );

    let seen_by_ngo = ngo.get(&path).await;
    let (csrf, key) = (
        seen_by_ngo.hidden("csrf"),
        seen_by_ngo.hidden("idempotency_key"),
    );
    let message = "Shelter bed ready from tonight; call Wanjiru on 0712 345 678";
    let posted = ngo
        .post(
            &format!("{path}/messages"),
            &[
                ("csrf", &csrf),
                ("idempotency_key", &key),
                ("body", message),
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let thread = police.get(&path).await;
    assert!(
        thread.body.contains("Shelter bed ready from tonight"),
        "{}",
        thread.body
    );
    assert!(
        thread.body.contains("HandoffAccepted"),
        "the timeline: {}",
        thread.body
    );
    // Labour reads the same thread with the name and phone redacted by the server.
    let labour_thread = labour.get(&path).await;
    assert!(
        labour_thread
            .body
            .contains("Shelter bed ready from tonight"),
        "{}",
        labour_thread.body
    );
    assert!(
        !labour_thread.body.contains("0712 345 678") && !labour_thread.body.contains("Wanjiru")
    );

    // Sign-out needs the session's CSRF token, then ends the session.
    let refused = police.post("/sign-out", &[("csrf", "forged")]).await;
    assert_eq!(refused.status, 403);
    let page = police.get("/inbox").await;
    let csrf = page.hidden("csrf");
    let out = police.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!((out.status.as_u16(), out.location()), (303, "/sign-in"));
    let after = police.get(&path).await;
    assert_eq!((after.status.as_u16(), after.location()), (303, "/sign-in"));
}

/// `refnet serve` starts the web desk beside gRPC and announces it; the
/// development sign-in is offered there, in Kiswahili too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refnet_serve_serves_the_web_desk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_serve, _, url) = serve_with_web(dir.path());
    let mut browser = Browser::new(&url);
    browser.sign_in("police-nairobi").await;
    let inbox = browser.get("/inbox").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    let sw = browser.get("/lang/sw").await;
    assert_eq!(sw.status, 303);
    let form = browser.get("/referrals/new").await;
    assert!(
        form.body.contains("lang=\"sw\"") && form.body.contains("Wasilisha rufaa"),
        "{}",
        form.body
    );
    let css = browser
        .http
        .get(format!("{url}/static/desk.css"))
        .send()
        .await
        .expect("css");
    assert_eq!(css.status(), 200);

    // Plain HTTP beyond loopback is refused before anything starts.
    let refused = Command::new(REFNET)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--web-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path().join("other"))
        .env_remove("REFNET_CONFIG")
        .env_remove("REFNET_DATABASE_URL")
        .output()
        .expect("refnet serve");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("refusing to serve the web desk on 0.0.0.0:0 without TLS"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// `refnet serve` with its web desk: (process, gRPC address, web desk URL).
pub(crate) fn serve_with_web(dir: &std::path::Path) -> (crate::tls::KillOnDrop, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(REFNET)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env_remove("REFNET_CONFIG")
        .env_remove("REFNET_DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn refnet serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut grpc, mut web) = (None, None);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = refnet_core::announce::served_address(&line) {
                grpc = Some(a.to_owned());
            }
            if let Some(u) = refnet_core::announce::web_address(&line) {
                web = Some(u.to_owned());
            }
            if let (Some(g), Some(w)) = (&grpc, &web) {
                let _ = tx.send((g.clone(), w.clone()));
                grpc = None;
            }
        }
    });
    let (grpc, web) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("refnet serve announces both addresses");
    (
        crate::tls::KillOnDrop(child),
        grpc,
        web.replace("127.0.0.1", "localhost"),
    )
}
