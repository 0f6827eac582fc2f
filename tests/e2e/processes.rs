//! Production shape: `refnet migrate`, then the three service binaries as
//! three OS processes on one PostgreSQL database, configured only through
//! `REFNET_...` variables. A police desk files through `refnet-intake`; the
//! worker inside `refnet-routing` routes it; the NGO sees it on its inbox
//! stream, acknowledges and accepts it; the police desk follows it on the
//! referral's stream; `refnet-protection` answers. SIGTERM stops each cleanly.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use refnet_core::devkeys::{DevSigner, TokenRequest};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::common::{authed, new_key};

/// A service binary of the workspace, built beside this test binary.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        path.display()
    );
    path
}

/// A process killed on drop unless it already exited.
struct Process(Child, &'static str);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn agencies_toml() -> String {
    refnet_core::agencies::demo()
        .iter()
        .map(|a| {
            let county = a
                .county
                .as_deref()
                .map(|c| format!("county = \"{c}\"\n"))
                .unwrap_or_default();
            format!(
                "[[agency]]\nid = \"{}\"\nkind = \"{}\"\nname = \"{}\"\n{county}\n",
                a.id,
                refnet_core::auth::agency_kind_name(a.kind),
                a.name
            )
        })
        .collect()
}

async fn connect(port: u16, child: &mut Process) -> Channel {
    for _ in 0..300 {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("{} exited early: {status:?}", child.1);
        }
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not listen on {port}", child.1);
}

async fn next<T>(stream: &mut tonic::Streaming<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing in time"))
        .expect("stream ok")
        .expect("an item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_service_processes_on_one_database() {
    let Some(url) = crate::common::fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = refnet_core::devkeys::ensure(dir.path()).expect("dev key");
    let signer = DevSigner::load(dir.path(), "refnet-dev", "refnet").expect("signer");
    let agencies = dir.path().join("agencies.toml");
    std::fs::write(&agencies, agencies_toml()).expect("agencies file");
    let master = {
        use base64::Engine;
        let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .flat_map(|u| *u.as_bytes())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let env = |port: u16| -> Vec<(String, String)> {
        vec![
            ("REFNET_DATABASE_URL".into(), url.clone()),
            ("REFNET_MASTER_KEY".into(), master.clone()),
            ("REFNET_AUTH__JWKS_FILE".into(), jwks.display().to_string()),
            (
                "REFNET_AGENCIES_FILE".into(),
                agencies.display().to_string(),
            ),
            ("REFNET_MIGRATE_ON_START".into(), "false".into()),
            ("REFNET_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("RUST_LOG".into(), "warn".into()),
        ]
    };

    // Migrations by the operator's command, not by the services.
    let migrated = Command::new(env!("CARGO_BIN_EXE_refnet"))
        .args(["migrate", "--database-url", &url])
        .output()
        .expect("refnet migrate");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let mut processes = Vec::new();
    let mut ports = Vec::new();
    for name in ["refnet-intake", "refnet-routing", "refnet-protection"] {
        let port = free_port();
        let child = Command::new(binary(name))
            .envs(env(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        processes.push(Process(child, name));
        ports.push(port);
    }
    let mut channels = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        channels.push(connect(*port, &mut processes[i]).await);
    }
    let (intake_ch, routing_ch, protection_ch) = (
        channels[0].clone(),
        channels[1].clone(),
        channels[2].clone(),
    );
    for (channel, service) in [
        (&intake_ch, "refnet.v1.IntakeService"),
        (&routing_ch, "refnet.v1.RoutingService"),
        (&protection_ch, "refnet.v1.WitnessProtectionService"),
    ] {
        let mut serving = false;
        for _ in 0..100 {
            if let Ok(reply) = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                && reply.into_inner().status == ServingStatus::Serving as i32
            {
                serving = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(serving, "{service} is SERVING");
    }

    let token = |agency: &str, kind: pb::AgencyKind| {
        signer
            .mint(&TokenRequest {
                officer_id: format!("desk-{agency}"),
                agency_id: agency.into(),
                agency_kind: kind,
                roles: vec!["officer".into()],
                ttl: Duration::from_secs(600),
            })
            .expect("token")
    };
    let police = token("police-nairobi", pb::AgencyKind::Police);
    let ngo = token("ngo-shelter-nairobi", pb::AgencyKind::Ngo);

    // The NGO watches its inbox on the routing process before anything is filed.
    let mut inbox = RoutingServiceClient::new(routing_ch.clone())
        .watch_inbox(authed(pb::WatchInboxRequest::default(), &ngo))
        .await
        .expect("watch inbox")
        .into_inner();
    let filed = IntakeServiceClient::new(intake_ch.clone())
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: new_key(),
                draft: Some(crate::routing::foreign_child_in_forced_labour()),
            },
            &police,
        ))
        .await
        .expect("file through refnet-intake")
        .into_inner()
        .referral
        .expect("referral");
    let mut follow = RoutingServiceClient::new(routing_ch.clone())
        .watch_referral(authed(
            pb::WatchReferralRequest {
                referral: filed.reference_code.clone(),
                cursor: String::new(),
                from_beginning: true,
            },
            &police,
        ))
        .await
        .expect("follow")
        .into_inner();

    // Routed by the worker in refnet-routing; seen on the NGO's stream.
    let created = loop {
        let item = next(&mut inbox, "NGO inbox").await;
        if item.event == "HandoffCreated" {
            break item.handoff.expect("handoff");
        }
    };
    assert_eq!(created.referral_id, filed.id);
    assert_eq!(created.rule_id, "shelter-psychosocial-legal-ngo");
    let mut routing = RoutingServiceClient::new(routing_ch.clone());
    let h = routing
        .list_inbox(authed(pb::ListInboxRequest::default(), &ngo))
        .await
        .expect("inbox")
        .into_inner()
        .handoffs
        .into_iter()
        .find(|h| h.id == created.id)
        .expect("listed");
    let step = |h: &pb::Handoff| pb::HandoffTransitionRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        reason: String::new(),
    };
    let h = routing
        .acknowledge_handoff(authed(step(&h), &ngo))
        .await
        .expect("acknowledge")
        .into_inner();
    routing
        .accept_handoff(authed(step(&h), &ngo))
        .await
        .expect("accept");
    // The police desk sees the whole story on its stream.
    let mut seen = Vec::new();
    while !seen.iter().any(|e| e == "HandoffAccepted") {
        seen.push(next(&mut follow, "police follow").await.event);
    }
    assert_eq!(seen[0], "ReferralFiled");
    assert!(seen.iter().any(|e| e == "HandoffCreated"), "{seen:?}");
    // The NGO, now party, reads the referral through refnet-intake with its redaction.
    let read = IntakeServiceClient::new(intake_ch.clone())
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: filed.id.clone(),
            },
            &ngo,
        ))
        .await
        .expect("NGO reads")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(read.id, filed.id);
    let listed = WitnessProtectionServiceClient::new(protection_ch.clone())
        .list_protection_requests(authed(
            pb::ListProtectionRequestsRequest::default(),
            &police,
        ))
        .await
        .expect("refnet-protection answers")
        .into_inner();
    assert!(listed.requests.is_empty());
    drop((inbox, follow));

    // SIGTERM: each process exits cleanly.
    for p in &mut processes {
        let pid = p.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
    }
    for p in &mut processes {
        let mut status = None;
        for _ in 0..300 {
            if let Some(s) = p.0.try_wait().expect("wait") {
                status = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = status.unwrap_or_else(|| panic!("{} did not exit on SIGTERM", p.1));
        assert!(status.success(), "{} exited {status:?}", p.1);
    }
}
