//! One trace from a desk's `FileReferral` through the routing worker to the
//! receiving agency's stream item: the caller's `traceparent` is continued by
//! the RPC span, stored on the event-log rows, and picked up again by the
//! worker and by the stream (spans captured by an in-memory exporter).

use refnet_api::v1::{self as pb, routing_service_client::RoutingServiceClient};
use sea_orm::{ConnectionTrait, Statement};

use crate::common::{Backend, TestApp, authed, new_key, next_item_for, spans};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_filing_to_the_receiving_stream() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut inbox = app.watch_inbox("ngo-shelter-nairobi").await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let mut request = authed(
        pb::FileReferralRequest {
            idempotency_key: new_key(),
            draft: Some(crate::routing::foreign_child_in_forced_labour()),
        },
        &app.officer("police-nairobi"),
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("header"),
    );
    let filed = app
        .intake()
        .await
        .file_referral(request)
        .await
        .expect("file")
        .into_inner()
        .referral
        .expect("referral");
    next_item_for(&mut inbox, &filed.id).await;
    drop(inbox);
    // The filer's WatchReferral items continue the same trace.
    let mut watch = RoutingServiceClient::new(app.channel().await)
        .watch_referral(authed(
            pb::WatchReferralRequest {
                referral: filed.id.clone(),
                from_beginning: true,
                ..Default::default()
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("watch referral")
        .into_inner();
    tokio::time::timeout(std::time::Duration::from_secs(10), watch.message())
        .await
        .expect("an item in time")
        .expect("ok")
        .expect("item");
    drop(watch);

    // The event-log rows carry the trace.
    let db = app.db().await;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT kind, trace_context FROM events WHERE referral_id = $1",
            [uuid::Uuid::parse_str(&filed.id).expect("id").into()],
        ))
        .await
        .expect("events");
    for kind in ["ReferralFiled", "HandoffCreated"] {
        assert!(
            rows.iter().any(|r| {
                r.try_get::<String>("", "kind").ok().as_deref() == Some(kind)
                    && r.try_get::<Option<String>>("", "trace_context")
                        .ok()
                        .flatten()
                        .is_some_and(|t| t.contains(&trace_id))
            }),
            "{kind} carries the trace"
        );
    }
    // One trace: the RPC, the worker's routing and the stream item.
    let finished = spans().get_finished_spans().expect("spans");
    let names: Vec<String> = finished
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .map(|s| s.name.to_string())
        .collect();
    for wanted in [
        "/refnet.v1.IntakeService/FileReferral",
        "route_referral",
        "WatchInbox item",
        "WatchReferral item",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} in the trace: {names:?}"
        );
    }
    // The RPC span names the caller's agency kind and the outcome, nothing identifying.
    let rpc = finished
        .iter()
        .find(|s| {
            s.span_context.trace_id().to_string() == trace_id
                && s.name == "/refnet.v1.IntakeService/FileReferral"
        })
        .expect("rpc span");
    let attr = |key: &str| {
        rpc.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attr("refnet.agency_kind").as_deref(), Some("POLICE"));
    // The referral's reference code is recorded on calls that name it.
    let code = filed.reference_code.clone();
    let mut get = authed(
        pb::GetReferralRequest {
            referral: code.clone(),
        },
        &app.officer("police-nairobi"),
    );
    let get_trace = uuid::Uuid::new_v4().simple().to_string();
    get.metadata_mut().insert(
        "traceparent",
        format!("00-{get_trace}-00f067aa0ba902b7-01")
            .parse()
            .expect("header"),
    );
    app.intake().await.get_referral(get).await.expect("get");
    // The span ends just after the reply is written: wait for it (bounded).
    let mut get_span = None;
    for _ in 0..100 {
        get_span = spans()
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .find(|s| s.span_context.trace_id().to_string() == get_trace);
        if get_span.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let get_span = get_span.expect("get span");
    assert!(
        get_span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "refnet.reference_code" && kv.value.to_string() == code),
        "{:?}",
        get_span.attributes
    );
    app.stop().await;
}
