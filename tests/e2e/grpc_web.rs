//! gRPC-Web and CORS: a browser client calls the services over HTTP/1.1 on
//! the same port, with its token; CORS answers only the origins configured
//! in `REFNET_CORS_ALLOWED_ORIGINS` (read from the environment by the real
//! `refnet serve` process). Requests are built by hand, as a browser's
//! grpc-web library frames them.

use prost::Message;
use refnet_api::v1 as pb;

use crate::common::canary_draft;

const ALLOWED: &str = "https://desk.example.org";

/// A grpc-web data frame around `message`.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).expect("len").to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Splits a grpc-web reply body into its data frames and its trailers.
fn unframe(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body[5..5 + len].to_vec();
        body = &body[5 + len..];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8(payload).expect("trailers"));
        } else {
            data.push(payload);
        }
    }
    (data, trailers)
}

/// The grpc-status of a reply: a trailers-only reply carries it in its
/// headers, a full one in its trailer frame.
fn grpc_status(headers: &reqwest::header::HeaderMap, trailers: &str) -> String {
    if let Some(v) = headers.get("grpc-status") {
        return v.to_str().expect("ascii").to_owned();
    }
    trailers
        .lines()
        .find_map(|l| l.trim().strip_prefix("grpc-status:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_over_grpc_web_from_an_allowed_origin_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let origins = format!("[{ALLOWED}]");
    let (server, addr, _log) =
        crate::cli::spawn_serve(data, &[("REFNET_CORS_ALLOWED_ORIGINS", origins.as_str())]).await;
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let url = |method: &str| format!("http://{addr}/refnet.v1.IntakeService/{method}");
    let police = crate::cli::officer_token(data, "police-nairobi");

    // The preflight: allowed origin gets the CORS answer, another origin none.
    for (origin, allowed) in [(ALLOWED, true), ("https://evil.example.com", false)] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, url("FileReferral"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web",
            )
            .send()
            .await
            .expect("preflight");
        let allow = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii").to_owned());
        if allowed {
            assert_eq!(allow.as_deref(), Some(ALLOWED));
            let headers = preflight
                .headers()
                .get("access-control-allow-headers")
                .expect("allow-headers")
                .to_str()
                .expect("ascii")
                .to_ascii_lowercase();
            assert!(headers.contains("authorization") && headers.contains("x-grpc-web"));
        } else {
            assert_eq!(allow, None, "no CORS grant for an unlisted origin");
        }
    }

    // A unary call: the police file a referral over grpc-web.
    let filed = http
        .post(url("FileReferral"))
        .header("origin", ALLOWED)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {police}"))
        .body(frame(&pb::FileReferralRequest {
            idempotency_key: format!("web-{}", uuid::Uuid::new_v4().simple()),
            draft: Some(canary_draft()),
        }))
        .send()
        .await
        .expect("file");
    assert_eq!(filed.status(), reqwest::StatusCode::OK);
    assert_eq!(
        filed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ALLOWED)
    );
    let exposed = filed
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("grpc-status"), "{exposed}");
    let headers = filed.headers().clone();
    let body = filed.bytes().await.expect("body");
    let (data_frames, trailers) = unframe(&body);
    assert_eq!(grpc_status(&headers, &trailers), "0", "{trailers}");
    let reply = pb::FileReferralResponse::decode(data_frames[0].as_slice()).expect("reply");
    let referral = reply.referral.expect("referral");
    assert!(referral.reference_code.starts_with("RN-"));

    // Reading it back over grpc-web, with the same token.
    let got = http
        .post(url("GetReferral"))
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", format!("Bearer {police}"))
        .body(frame(&pb::GetReferralRequest {
            referral: referral.reference_code.clone(),
        }))
        .send()
        .await
        .expect("get");
    let headers = got.headers().clone();
    let (data_frames, trailers) = unframe(&got.bytes().await.expect("body"));
    assert_eq!(grpc_status(&headers, &trailers), "0");
    let got = pb::GetReferralResponse::decode(data_frames[0].as_slice()).expect("reply");
    assert_eq!(got.referral.expect("referral").id, referral.id);

    // Without a token: UNAUTHENTICATED, as over gRPC.
    let refused = http
        .post(url("GetReferral"))
        .header("content-type", "application/grpc-web+proto")
        .body(frame(&pb::GetReferralRequest {
            referral: referral.id.clone(),
        }))
        .send()
        .await
        .expect("refused");
    let headers = refused.headers().clone();
    let (_, trailers) = unframe(&refused.bytes().await.expect("body"));
    assert_eq!(grpc_status(&headers, &trailers), "16");

    // A non-party agency: NOT_FOUND.
    let outsider = crate::cli::officer_token(data, "police-mombasa");
    let hidden = http
        .post(url("GetReferral"))
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", format!("Bearer {outsider}"))
        .body(frame(&pb::GetReferralRequest {
            referral: referral.id.clone(),
        }))
        .send()
        .await
        .expect("outsider");
    let headers = hidden.headers().clone();
    let (_, trailers) = unframe(&hidden.bytes().await.expect("body"));
    assert_eq!(grpc_status(&headers, &trailers), "5");
    drop(server);
}

/// The gateway forwards gRPC-Web (HTTP/1.1) as it came, and the service
/// behind it answers: a browser desk can use the one entry point too. A
/// service the gateway does not know answers UNIMPLEMENTED, one that is down
/// UNAVAILABLE; neither is a hang or a transport error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_grpc_web_and_names_what_it_cannot_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (_server, addr, _log) = crate::cli::spawn_serve(data, &[]).await;
    let gateway_port = crate::processes::free_port();
    let dead_port = crate::processes::free_port();
    let backend = format!("http://{addr}");
    let gateway = std::process::Command::new(env!("CARGO_BIN_EXE_refnet"))
        .args(["service", "gateway", "--listen"])
        .arg(format!("127.0.0.1:{gateway_port}"))
        .args([
            "--intake",
            &backend,
            "--routing",
            &backend,
            "--protection",
            &backend,
        ])
        .args(["--statistics", &format!("http://127.0.0.1:{dead_port}")])
        .env_remove("REFNET_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the gateway");
    let _gateway = crate::tls::KillOnDrop(gateway);
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let police = crate::cli::officer_token(data, "police-nairobi");
    let call = |service: &str, method: &str, body: Vec<u8>| {
        http.post(format!(
            "http://127.0.0.1:{gateway_port}/refnet.v1.{service}/{method}"
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {police}"))
        .body(body)
        .send()
    };
    // The gateway may still be starting.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let filed = loop {
        let request = frame(&pb::FileReferralRequest {
            idempotency_key: format!("web-{}", uuid::Uuid::new_v4().simple()),
            draft: Some(canary_draft()),
        });
        match call("IntakeService", "FileReferral", request).await {
            Ok(reply) => break reply,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "gateway: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let headers = filed.headers().clone();
    let (data_frames, trailers) = unframe(&filed.bytes().await.expect("body"));
    assert_eq!(grpc_status(&headers, &trailers), "0", "{trailers}");
    let reply = pb::FileReferralResponse::decode(data_frames[0].as_slice()).expect("reply");
    assert!(
        reply
            .referral
            .expect("referral")
            .reference_code
            .starts_with("RN-")
    );

    let down = call(
        "StatisticsService",
        "GetAggregates",
        frame(&pb::GetAggregatesRequest::default()),
    )
    .await
    .expect("an answer");
    let headers = down.headers().clone();
    let (_, trailers) = unframe(&down.bytes().await.expect("body"));
    assert_eq!(
        grpc_status(&headers, &trailers),
        "14",
        "UNAVAILABLE: {headers:?}"
    );

    let unknown = call(
        "NoSuchService",
        "Nothing",
        frame(&pb::GetReferralRequest::default()),
    )
    .await
    .expect("an answer");
    let headers = unknown.headers().clone();
    let (_, trailers) = unframe(&unknown.bytes().await.expect("body"));
    assert_eq!(
        grpc_status(&headers, &trailers),
        "12",
        "UNIMPLEMENTED: {headers:?}"
    );
}
