//! The audit trail: reveals of identity and location are recorded with who,
//! what and how; auditors read a referral's trail (and that read is recorded);
//! the chain detects a modified, deleted or reordered record.

use refnet_api::v1 as pb;
use refnet_core::audit::{ChainError, verify};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::{
    common::{TestApp, authed, canary_draft},
    on_both,
};

on_both!(
    reveals_are_recorded_and_auditors_read_them,
    the_chain_detects_tampering,
    concurrent_reveals_are_each_recorded_once_in_one_chain
);

async fn trail(
    app: &TestApp,
    referral: &str,
    token: &str,
) -> Result<Vec<pb::AuditRecord>, tonic::Status> {
    let mut client = pb::audit_service_client::AuditServiceClient::new(app.channel().await);
    let mut records = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_records(authed(
                pb::ListAuditRecordsRequest {
                    referral: referral.to_owned(),
                    page_size: 2,
                    page_token,
                },
                token,
            ))
            .await?
            .into_inner();
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return Ok(records);
        }
        page_token = page.next_page_token;
    }
}

async fn reveals_are_recorded_and_auditors_read_them(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut request = authed(
        pb::GetReferralRequest {
            referral: referral.id.clone(),
        },
        &app.officer("police-nairobi"),
    );
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("ascii"),
    );
    app.intake().await.get_referral(request).await.expect("get");
    // An auditor's own read of the referral reveals nothing and is not a reveal.
    app.intake()
        .await
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: referral.id.clone(),
            },
            &app.token("police-nairobi", &["auditor"]),
        ))
        .await
        .expect("auditor get");

    let auditor = app.token("police-nairobi", &["auditor"]);
    let records = trail(app, &referral.reference_code, &auditor)
        .await
        .expect("trail");
    assert_eq!(records.len(), 2, "{records:#?}");
    let (filed, read) = (&records[0], &records[1]);
    assert_eq!(filed.rpc, "/refnet.v1.IntakeService/FileReferral");
    assert_eq!(read.rpc, "/refnet.v1.IntakeService/GetReferral");
    assert_eq!(read.officer_id, "officer-police-nairobi");
    assert_eq!(read.agency_id, "police-nairobi");
    assert_eq!(read.agency_kind, pb::AgencyKind::Police as i32);
    assert_eq!(read.roles, vec!["officer".to_owned()]);
    assert_eq!(read.referral_id, referral.id);
    assert_eq!(read.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    for path in [
        "referral.draft.subject.given_name",
        "referral.draft.subject.phones",
        "referral.draft.subject.current_location",
    ] {
        assert!(
            read.field_paths.iter().any(|p| p == path),
            "{path} in {:?}",
            read.field_paths
        );
    }
    assert!(
        !read.field_paths.iter().any(|p| p.contains("special")),
        "POLICE saw no special-category data"
    );
    assert!(read.seq > filed.seq);

    // Reading the trail was itself recorded: the first listing (one page call)
    // is the third record, and the second listing sees it.
    let again = trail(app, &referral.id, &auditor).await.expect("trail");
    assert_eq!(again[..2], records[..]);
    let read_of_trail = &again[2];
    assert_eq!(
        read_of_trail.rpc,
        "/refnet.v1.AuditService/ListAuditRecords"
    );
    assert_eq!(read_of_trail.roles, vec!["auditor".to_owned()]);
    assert_eq!(read_of_trail.field_paths, vec!["audit_log".to_owned()]);

    // Only auditors, and only of a party agency.
    let officer = trail(app, &referral.id, &app.officer("police-nairobi"))
        .await
        .expect_err("officer");
    assert_eq!(officer.code(), Code::PermissionDenied);
    let outsider = trail(
        app,
        &referral.id,
        &app.token("police-mombasa", &["auditor"]),
    )
    .await
    .expect_err("outsider");
    assert_eq!(outsider.code(), Code::NotFound);
    let forged = pb::audit_service_client::AuditServiceClient::new(app.channel().await)
        .list_audit_records(authed(
            pb::ListAuditRecordsRequest {
                referral: referral.id.clone(),
                page_size: 1,
                page_token: "forged".into(),
            },
            &auditor,
        ))
        .await
        .expect_err("forged token");
    assert_eq!(forged.code(), Code::InvalidArgument);
}

async fn exec(app: &TestApp, sql: &str) {
    let db = app.db().await;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect(sql);
}

async fn the_chain_detects_tampering(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    for _ in 0..4 {
        app.get_as("police-nairobi", &referral.id).await;
    }
    let db = app.db().await;
    assert_eq!(verify(&db).await.expect("verify"), Ok(5));

    // Modified: an officer's name changed in record 2.
    exec(
        app,
        "UPDATE audit_log SET officer_id = 'someone-else' WHERE seq = 2",
    )
    .await;
    assert_eq!(
        verify(&db).await.expect("verify"),
        Err(ChainError::Modified { seq: 2 })
    );
    exec(
        app,
        "UPDATE audit_log SET officer_id = 'officer-police-nairobi' WHERE seq = 2",
    )
    .await;
    assert_eq!(verify(&db).await.expect("verify"), Ok(5));

    // Reordered: records 3 and 4 swap places.
    exec(app, "UPDATE audit_log SET seq = -3 WHERE seq = 3").await;
    exec(app, "UPDATE audit_log SET seq = 3 WHERE seq = 4").await;
    exec(app, "UPDATE audit_log SET seq = 4 WHERE seq = -3").await;
    assert!(matches!(
        verify(&db).await.expect("verify"),
        Err(ChainError::Broken { seq: 3, .. }) | Err(ChainError::Modified { seq: 3 })
    ));
    exec(app, "UPDATE audit_log SET seq = -3 WHERE seq = 3").await;
    exec(app, "UPDATE audit_log SET seq = 3 WHERE seq = 4").await;
    exec(app, "UPDATE audit_log SET seq = 4 WHERE seq = -3").await;
    assert_eq!(verify(&db).await.expect("verify"), Ok(5));

    // Deleted from the middle.
    exec(app, "DELETE FROM audit_log WHERE seq = 2").await;
    assert_eq!(
        verify(&db).await.expect("verify"),
        Err(ChainError::Broken {
            seq: 3,
            expected_after: 1
        })
    );

    // Deleted from the end (on a fresh chain: a later app).
    let other = TestApp::spawn(app.backend).await;
    let r = other
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    other.get_as("police-nairobi", &r.id).await;
    let odb = other.db().await;
    assert_eq!(verify(&odb).await.expect("verify"), Ok(2));
    exec(&other, "DELETE FROM audit_log WHERE seq = 2").await;
    assert_eq!(
        verify(&odb).await.expect("verify"),
        Err(ChainError::Truncated { last: 1, head: 2 })
    );
    other.stop().await;
}

/// Reads at once are written together (group commit) yet each gets its own
/// record, in one unbroken chain, before its reply.
async fn concurrent_reveals_are_each_recorded_once_in_one_chain(app: &TestApp) {
    let filed = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let db = app.db().await;
    let before = app.count("audit_log").await;
    let reads = 60;
    let mut tasks = Vec::new();
    for _ in 0..reads {
        let channel = app.channel().await;
        let token = app.officer("police-nairobi");
        let id = filed.id.clone();
        tasks.push(tokio::spawn(async move {
            pb::intake_service_client::IntakeServiceClient::new(channel)
                .get_referral(authed(pb::GetReferralRequest { referral: id }, &token))
                .await
                .expect("get")
        }));
    }
    for t in tasks {
        t.await.expect("read");
    }
    // Every reply came after its record was committed.
    assert_eq!(app.count("audit_log").await, before + reads);
    let n = verify(&db).await.expect("verify").expect("an intact chain");
    assert_eq!(n, before + reads);
    let distinct = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(DISTINCT seq) FROM audit_log",
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("count");
    assert_eq!(distinct, n);
}
