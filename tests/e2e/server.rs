//! The server as an operator sees it: health SERVING per service, reflection
//! listing the three services, and no RPC answered without a token.

use refnet_api::SERVICE_NAMES;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::{common::TestApp, on_both};

on_both!(health_and_reflection_are_served, every_rpc_requires_a_token);

async fn health_and_reflection_are_served(app: &TestApp) {
    let mut health = HealthClient::new(app.channel().await);
    for service in SERVICE_NAMES {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "refnet.v1.Nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = stream.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICE_NAMES {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
}

/// Every method of every refnet.v1 service, called with an empty body and no
/// token, is refused before any handler runs. Methods come from the
/// descriptors, so new RPCs are covered without editing this test.
async fn every_rpc_requires_a_token(app: &TestApp) {
    let pool = refnet_api::descriptor_pool();
    let channel = app.channel().await;
    let mut calls = 0;
    for service in pool.services().filter(|s| s.package_name() == "refnet.v1") {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.expect("ready");
            let codec = tonic_prost::ProstCodec::<(), ()>::default();
            let result = if method.is_server_streaming() {
                grpc.server_streaming(tonic::Request::new(()), path.parse().expect("path"), codec)
                    .await
                    .map(|_| ())
            } else {
                grpc.unary(tonic::Request::new(()), path.parse().expect("path"), codec)
                    .await
                    .map(|_| ())
            };
            let status = result.expect_err(&path);
            assert_eq!(status.code(), Code::Unauthenticated, "{path}");
            calls += 1;
        }
    }
    assert!(calls >= 13, "all methods enumerated ({calls})");
}

/// The shutdown path of SIGTERM: an open stream ends with UNAVAILABLE and a
/// note to resume from its cursor (rather than holding the process up), and
/// the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_a_resumable_status() {
    use refnet_api::v1 as pb;
    let app = TestApp::spawn(crate::common::Backend::Sqlite).await;
    let filed = app
        .file("police-nairobi", crate::common::canary_draft())
        .await
        .referral
        .expect("referral");
    let mut stream = pb::routing_service_client::RoutingServiceClient::new(app.channel().await)
        .watch_referral(crate::common::authed(
            pb::WatchReferralRequest {
                referral: filed.id.clone(),
                cursor: String::new(),
                from_beginning: true,
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("first item in time")
        .expect("ok")
        .expect("item");
    assert!(!first.cursor.is_empty());
    let stopping = tokio::spawn(app.stop());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended when the server began shutting down");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("cursor"), "{}", ended.message());
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .expect("stop task");
}
