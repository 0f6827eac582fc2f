//! Notifications that reach people outside refnet: an agency's webhook gets
//! every new notification POSTed, HMAC-signed, retried with back-off after
//! failures (by a new dispatcher too, as after a restart: the outbox is in
//! the database), with one delivery id per notification as the receiver's
//! idempotency key; switched off, nothing more leaves; no payload carries an
//! identifying value. The receiver is a real HTTP server on a local port.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use chrono::Utc;
use hmac::{Hmac, Mac};
use refnet_api::v1::{self as pb, routing_service_client::RoutingServiceClient};
use refnet_routing::webhooks::WebhookWorker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::{
    common::{CANARIES, TestApp, authed, violations},
    on_both,
};

fn configured(c: &mut refnet_core::config::Config) {
    // The test drives the workers itself, at chosen instants.
    c.routing_worker = false;
    c.webhook_allow_plain_http = true;
}

on_both!(config = super::configured; webhooks_deliver_signed_retried_and_once_per_key);

const SECRET: &str = "test-webhook-key-0123456789-abcdefghij";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: String,
}

/// A local HTTP/1.1 receiver answering each request with the next status of
/// `plan`, then 200; it records every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Reads one request from `socket`, records it and answers with the next
/// status of `plan` (then 200).
async fn answer<S>(
    mut socket: S,
    record: &Mutex<Vec<Received>>,
    plan: &Mutex<std::vec::IntoIter<u16>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then as much body as Content-Length says.
    let (head, mut body) = loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break (String::new(), Vec::new());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&raw[..end]).to_string(),
                raw[end + 4..].to_vec(),
            );
        }
    };
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    record.lock().expect("record").push(Received {
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let status = plan.lock().expect("plan").next().unwrap_or(200);
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
}

impl Receiver {
    async fn start(plan: Vec<u16>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/refnet-hook",
            listener.local_addr().expect("addr")
        );
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let plan = Arc::new(Mutex::new(plan.into_iter()));
        let record = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                answer(socket, &record, &plan).await;
            }
        });
        Self { url, got, task }
    }

    /// [`Receiver::start`] over HTTPS with the certificate `cert`/`key`
    /// (through refnet's own TLS listener code), at `https://localhost:PORT`.
    async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        use tokio_stream::StreamExt;
        let (incoming, port) = crate::tls::tls_incoming(cert, key).await;
        let mut incoming = Box::pin(incoming);
        let url = format!("https://localhost:{port}/refnet-hook");
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let plan = Arc::new(Mutex::new(Vec::new().into_iter()));
        let record = got.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(socket)) = incoming.next().await {
                answer(socket, &record, &plan).await;
            }
        });
        Self { url, got, task }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("got").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Files an unroutable referral and runs the routing worker until idle.
async fn notify_police(app: &TestApp) -> pb::Referral {
    let referral = app
        .file("police-nairobi", crate::triage::unroutable())
        .await
        .referral
        .expect("referral");
    let rules = refnet_routing::rules(&app.ctx).expect("rules");
    let worker = refnet_routing::worker::RoutingWorker::new(app.ctx.clone(), rules);
    while worker.step().await.expect("route") > 0 {}
    referral
}

fn expected_signature(timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

async fn webhooks_deliver_signed_retried_and_once_per_key(app: &TestApp) {
    let receiver = Receiver::start(vec![500, 503]).await;
    let mut client = RoutingServiceClient::new(app.channel().await);
    let supervisor = app.token("police-nairobi", &["supervisor"]);
    let configure = |url: &str, secret: &str, enabled: bool, token: &str| {
        authed(
            pb::ConfigureWebhookRequest {
                url: url.into(),
                secret: secret.into(),
                enabled,
            },
            token,
        )
    };

    // Only supervisors set it; bad URLs and keys are named.
    let officer = client
        .configure_webhook(configure(
            &receiver.url,
            SECRET,
            true,
            &app.officer("police-nairobi"),
        ))
        .await
        .expect_err("officer");
    assert_eq!(officer.code(), Code::PermissionDenied);
    let bad = client
        .configure_webhook(configure("ftp://example.org/x", "short", true, &supervisor))
        .await
        .expect_err("bad");
    assert_eq!(violations(&bad), vec!["url", "secret"]);
    let with_user = client
        .configure_webhook(configure(
            "https://user:pw@example.org/x",
            SECRET,
            true,
            &supervisor,
        ))
        .await
        .expect_err("credentials in the URL");
    assert_eq!(violations(&with_user), vec!["url"]);
    let hook = client
        .configure_webhook(configure(&receiver.url, SECRET, true, &supervisor))
        .await
        .expect("configure")
        .into_inner();
    assert!(hook.enabled);
    assert_eq!(hook.url, receiver.url);

    // A notification is recorded: one delivery queued in the same transaction.
    let referral = notify_police(app).await;
    assert_eq!(app.count("webhook_outbox").await, 1);

    // Attempt 1 fails (500), attempt 2 fails (503) after its back-off, and a
    // new dispatcher (as after a restart) delivers attempt 3.
    let start = Utc::now();
    let first = WebhookWorker::new(app.ctx.clone()).expect("worker");
    let step = first.step_at(start).await.expect("step");
    assert_eq!((step.delivered, step.retrying), (0, 1));
    let step = first.step_at(start).await.expect("step");
    assert_eq!(
        step,
        Default::default(),
        "not due again before its back-off"
    );
    let step = first
        .step_at(start + chrono::Duration::seconds(3))
        .await
        .expect("step");
    assert_eq!(step.retrying, 1);
    let restarted = WebhookWorker::new(app.ctx.clone()).expect("worker");
    let step = restarted
        .step_at(start + chrono::Duration::seconds(3 + 5))
        .await
        .expect("step");
    assert_eq!(step.delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");

    // Every attempt: the same delivery id, a valid signature, only operational fields.
    let delivery = got[0].headers["refnet-delivery"].clone();
    for r in &got {
        assert_eq!(r.headers["refnet-delivery"], delivery);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.headers["refnet-signature"],
            expected_signature(&r.headers["refnet-timestamp"], &r.body)
        );
        let payload: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(payload["kind"], "ReferralNeedsRouting");
        assert_eq!(payload["reference_code"], referral.reference_code.as_str());
        assert_eq!(payload["delivery_id"], delivery.as_str());
        assert!(payload["due_by"].is_string(), "{payload}");
        let keys: Vec<&String> = payload.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            vec![
                "agency_id",
                "created_at",
                "delivery_id",
                "detail",
                "due_by",
                "kind",
                "reference_code"
            ]
        );
        for canary in CANARIES {
            assert!(!r.body.contains(canary), "{canary} in a webhook body");
            assert!(
                !r.headers.values().any(|v| v.contains(canary)),
                "{canary} in a webhook header"
            );
        }
    }

    // A dispatcher that crashed after the POST but before recording it sends
    // again: the same delivery id, so the receiver keeps one.
    use sea_orm::ConnectionTrait;
    app.db()
        .await
        .execute_unprepared("UPDATE webhook_outbox SET delivered_at = NULL")
        .await
        .expect("forget the delivery");
    let later = start + chrono::Duration::minutes(10);
    assert_eq!(restarted.step_at(later).await.expect("step").delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    let keys: std::collections::BTreeSet<&String> =
        got.iter().map(|r| &r.headers["refnet-delivery"]).collect();
    assert_eq!(keys.len(), 1, "no duplicate beyond the idempotency key");

    // Switched off: nothing more is queued or sent.
    let off = client
        .configure_webhook(configure(&receiver.url, "", false, &supervisor))
        .await
        .expect("switch off")
        .into_inner();
    assert!(!off.enabled);
    notify_police(app).await;
    assert_eq!(
        app.count("webhook_outbox").await,
        1,
        "nothing queued while off"
    );
    assert_eq!(
        restarted.step_at(later).await.expect("step"),
        Default::default()
    );
    assert_eq!(receiver.received().len(), 4);

    // On again (the key kept): the next notification goes out.
    client
        .configure_webhook(configure(&receiver.url, "", true, &supervisor))
        .await
        .expect("switch on");
    notify_police(app).await;
    assert_eq!(restarted.step_at(later).await.expect("step").delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 5);
    assert_ne!(got[4].headers["refnet-delivery"], delivery);
    let counts = client
        .get_webhook(authed(
            pb::GetWebhookRequest {},
            &app.token("police-nairobi", &["auditor"]),
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!((counts.delivered, counts.pending, counts.failed), (2, 0, 0));
    let other = client
        .get_webhook(authed(
            pb::GetWebhookRequest {},
            &app.token("labour-nairobi", &["supervisor"]),
        ))
        .await
        .expect("labour")
        .into_inner();
    assert!(
        other.url.is_empty() && !other.enabled,
        "another agency sees only its own"
    );
}

/// Deliveries over HTTPS to a receiver whose certificate comes from a private
/// CA: refused (retried later) until refnet trusts that CA through
/// `tls.outbound_ca`, then delivered and signed. Plain `http://` stays off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_an_https_receiver_through_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = refnet_devtools::certs::DevCa::new("agency private CA").expect("ca");
    let ca_file = ca.write(dir.path(), "ca").expect("ca file");
    let (cert, key) = ca
        .write_signed(dir.path(), "receiver", &["localhost"])
        .expect("cert");
    let receiver = Receiver::start_tls(&cert, &key).await;

    for trusted in [false, true] {
        let app = TestApp::spawn_with(None, |c| {
            c.routing_worker = false;
            if trusted {
                c.tls.outbound_ca = Some(ca_file.clone());
            }
        })
        .await;
        let supervisor = app.token("police-nairobi", &["supervisor"]);
        RoutingServiceClient::new(app.channel().await)
            .configure_webhook(authed(
                pb::ConfigureWebhookRequest {
                    url: receiver.url.clone(),
                    secret: SECRET.into(),
                    enabled: true,
                },
                &supervisor,
            ))
            .await
            .expect("an https URL is accepted without webhook_allow_plain_http");
        notify_police(&app).await;
        let step = WebhookWorker::new(app.ctx.clone())
            .expect("worker")
            .step_at(Utc::now())
            .await
            .expect("step");
        if trusted {
            assert_eq!((step.delivered, step.retrying), (1, 0), "{step:?}");
        } else {
            assert_eq!((step.delivered, step.retrying), (0, 1), "{step:?}");
            assert!(receiver.received().is_empty(), "no request got through");
        }
        app.stop().await;
    }
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers["refnet-signature"],
        expected_signature(&got[0].headers["refnet-timestamp"], &got[0].body)
    );
}
