//! De-identified statistics: k-anonymous aggregates for the secretariat and
//! supervisors, protected witnesses counted without their subject fields, and
//! the HTCDS export, checked by recomputing its equivalence classes and
//! searched for every canary of the leak test.

use std::{collections::HashMap, process::Command};

use refnet_api::v1 as pb;
use sea_orm::EntityTrait;
use tonic::Code;

use crate::{
    common::{TestApp, authed, canary_draft, fixtures},
    on_both,
};

on_both!(
    aggregates_are_k_anonymous_and_scoped,
    the_htcds_export_is_k_anonymous_and_holds_no_canary
);

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");
const K: usize = 11;

type Client = pb::statistics_service_client::StatisticsServiceClient<tonic::transport::Channel>;

/// The synthetic fixture set, as filed history.
async fn seed_fixtures(app: &TestApp) -> usize {
    let n = fixtures().len();
    refnet_devtools::seed::run(&app.ctx, fixtures(), n as u64, n as u64)
        .await
        .expect("seed the fixtures");
    n
}

/// One person no one else resembles: an Icelandic national aged 70 in Lamu.
fn outlier() -> pb::ReferralDraft {
    let mut draft = canary_draft();
    draft.county = "Lamu".into();
    let subject = draft.subject.as_mut().expect("subject");
    subject.nationality = "IS".into();
    subject.date_of_birth = "1955-01-01".into();
    subject.county_of_origin = "Lamu".into();
    // Identifiers of its own: not the same person as the canary witness.
    subject.national_id = "27182818".into();
    subject.passport_number = "XY1234567".into();
    subject.refugee_id = "RAS-1122334".into();
    subject.phones = vec!["+254711000999".into()];
    draft
}

async fn aggregates(
    client: &mut Client,
    token: &str,
    group_by: &[pb::Dimension],
) -> Result<pb::GetAggregatesResponse, tonic::Status> {
    client
        .get_aggregates(authed(
            pb::GetAggregatesRequest {
                group_by: group_by.iter().map(|d| *d as i32).collect(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The filing police desk asks the WPA to protect the subject of `referral`;
/// the WPA assesses and admits them (every referral sharing an identifier
/// with theirs is protected too).
async fn admit_witness(app: &TestApp, referral: &str) {
    let mut protection = pb::witness_protection_service_client::WitnessProtectionServiceClient::new(
        app.channel().await,
    );
    let submitted = protection
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: referral.into(),
                idempotency_key: crate::common::new_key(),
                grounds: "witness".into(),
                threat_assessment: "high".into(),
                measures: vec![pb::ProtectionMeasure::PhysicalProtection as i32],
                urgency: pb::Urgency::High as i32,
                threat_sources: "network".into(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("submit")
        .into_inner();
    let wpa = app.officer("wpa");
    let step = |r: &pb::ProtectionRequest| pb::ProtectionStepRequest {
        id: r.id.clone(),
        expected_version: r.version,
        ..Default::default()
    };
    let assessing = protection
        .begin_assessment(authed(step(&submitted), &wpa))
        .await
        .expect("assess")
        .into_inner();
    protection
        .admit_to_programme(authed(step(&assessing), &wpa))
        .await
        .expect("admit");
}

/// Along every dimension, each row (cells agreeing on the others) with a
/// withheld cell withholds at least two, or all of its cells.
fn complemented(cells: &[pb::AggregateCell], width: usize) -> bool {
    (0..width).all(|d| {
        let mut rows: HashMap<Vec<String>, Vec<bool>> = HashMap::new();
        for c in cells {
            let mut rest = c.values.clone();
            rest.remove(d);
            rows.entry(rest).or_default().push(c.suppressed);
        }
        rows.values().all(|row| {
            let withheld = row.iter().filter(|s| **s).count();
            withheld == 0 || withheld >= 2 || withheld == row.len()
        })
    })
}

async fn aggregates_are_k_anonymous_and_scoped(app: &TestApp) {
    let seeded = seed_fixtures(app).await;
    app.file("police-nairobi", outlier()).await;
    // A protected witness: the WPA admits them.
    let witness = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral")
        .id;
    admit_witness(app, &witness).await;

    let mut client = Client::new(app.channel().await);
    let secretariat = app.officer("secretariat");
    let everything = aggregates(&mut client, &secretariat, &[])
        .await
        .expect("total");
    assert_eq!(
        everything.total as usize,
        seeded + 2,
        "every referral counted, the witness too"
    );
    assert_eq!(everything.k as usize, K);

    // County x age band x nationality group: the outlier's cell is withheld,
    // every cell shown counts at least k, and no withheld cell can be worked
    // out from its row.
    use pb::Dimension as D;
    let dims = [D::County, D::AgeBand, D::NationalityGroup];
    let got = aggregates(&mut client, &secretariat, &dims)
        .await
        .expect("aggregates");
    let lone = got
        .cells
        .iter()
        .find(|c| c.values == ["Lamu", "48+", "OTHER"])
        .expect("the outlier's cell is listed");
    assert!(lone.suppressed && lone.count == 0, "{lone:?}");
    assert!(
        got.cells
            .iter()
            .all(|c| c.suppressed || c.count as usize >= K)
    );
    assert!(complemented(&got.cells, dims.len()), "{:?}", got.cells);
    // Coarser, the fixtures fill groups of k: some are shown, the rest withheld as above.
    let coarse = [D::NationalityGroup, D::AgeBand];
    let got = aggregates(&mut client, &secretariat, &coarse)
        .await
        .expect("aggregates");
    assert!(got.cells.iter().any(|c| !c.suppressed), "{:?}", got.cells);
    assert!(got.cells.iter().any(|c| c.suppressed), "{:?}", got.cells);
    assert!(
        got.cells
            .iter()
            .all(|c| c.suppressed || c.count as usize >= K)
    );
    assert!(complemented(&got.cells, coarse.len()), "{:?}", got.cells);
    let shown: i64 = got.cells.iter().map(|c| c.count).sum();
    assert!(
        shown < everything.total,
        "withheld cells are not counted in what is shown"
    );

    // The protected witness is counted under WITHHELD, never by sex, age or nationality.
    let by_sex = aggregates(&mut client, &secretariat, &[D::Sex])
        .await
        .expect("by sex");
    let withheld = by_sex
        .cells
        .iter()
        .find(|c| c.values == ["WITHHELD"])
        .expect("a WITHHELD cell");
    assert!(withheld.suppressed, "one witness is under k");
    assert!(complemented(&by_sex.cells, 1));
    let by_purpose = aggregates(&mut client, &secretariat, &[D::Purpose, D::Month])
        .await
        .expect("by purpose and month");
    assert!(by_purpose.cells.iter().all(|c| c.values.len() == 2));

    // A supervisor counts what their agency is party to; others are refused.
    let supervisor = app.token("police-nairobi", &["supervisor"]);
    let own = aggregates(&mut client, &supervisor, &[])
        .await
        .expect("supervisor");
    let db = app.db().await;
    let parties = crate::common::count_rows(
        &db,
        "SELECT COUNT(*) AS n FROM referral_parties WHERE agency_id = 'police-nairobi'",
    )
    .await;
    assert!(parties as usize >= K && (parties as usize) < seeded + 2);
    assert_eq!(own.total, parties);
    for (agency, role) in [
        ("police-nairobi", "officer"),
        ("secretariat", "auditor"),
        ("secretariat", "data_protection"),
        ("wpa", "officer"),
    ] {
        let status = aggregates(&mut client, &app.token(agency, &[role]), &[])
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{agency}/{role}");
        let status = client
            .get_handoff_metrics(authed(
                pb::GetHandoffMetricsRequest::default(),
                &app.token(agency, &[role]),
            ))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{agency}/{role}");
    }
    for bad in [
        vec![D::Unspecified],
        vec![D::County, D::County],
        vec![D::County, D::Sex, D::AgeBand, D::Month, D::Act],
    ] {
        let status = aggregates(&mut client, &secretariat, &bad)
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
    }

    // Handoff figures: twelve referrals routed alike fill a group; groups
    // under k are withheld whole.
    for _ in 0..12 {
        app.file(
            "police-nairobi",
            crate::routing::foreign_child_in_forced_labour(),
        )
        .await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while crate::common::count_rows(&db, "SELECT COUNT(*) AS n FROM handoffs").await < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "the filings were not routed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The busiest recipient acknowledges and accepts every handoff it got.
    let mut per_agency: HashMap<String, i64> = HashMap::new();
    for h in refnet_routing::entities::handoff::Entity::find()
        .all(&db)
        .await
        .expect("handoffs")
    {
        *per_agency.entry(h.to_agency_id).or_default() += 1;
    }
    let (busiest, received) = per_agency
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("handoffs");
    assert!(received as usize >= K, "{busiest} received {received}");
    let mut routing = pb::routing_service_client::RoutingServiceClient::new(app.channel().await);
    let recipient = app.officer(&busiest);
    for h in crate::routing::inbox(app, &busiest).await {
        let step = |id: &str, version| pb::HandoffTransitionRequest {
            handoff_id: id.to_owned(),
            expected_version: version,
            reason: String::new(),
        };
        let acknowledged = routing
            .acknowledge_handoff(authed(step(&h.id, h.version), &recipient))
            .await
            .expect("acknowledge")
            .into_inner();
        routing
            .accept_handoff(authed(step(&h.id, acknowledged.version), &recipient))
            .await
            .expect("accept");
    }
    let busiest_kind = app.ctx.agencies().get(&busiest).expect("agency").kind as i32;
    let metrics = client
        .get_handoff_metrics(authed(
            pb::GetHandoffMetricsRequest::default(),
            &secretariat,
        ))
        .await
        .expect("metrics")
        .into_inner();
    assert!(
        metrics.metrics.iter().any(|m| !m.suppressed),
        "{:?}",
        metrics.metrics
    );
    let group = metrics
        .metrics
        .iter()
        .find(|m| m.to_agency_kind == busiest_kind && !m.suppressed)
        .expect("the busiest recipient's group is shown");
    assert!(group.handoffs >= received, "{group:?}");
    assert_eq!(group.overdue_share, 0.0);
    // Acknowledged and accepted within the test: more than nothing, under an hour.
    assert!(
        group.median_hours_to_acknowledge > 0.0 && group.median_hours_to_acknowledge < 1.0,
        "{group:?}"
    );
    assert!(
        group.median_hours_to_accept >= group.median_hours_to_acknowledge
            && group.median_hours_to_accept < 1.0,
        "{group:?}"
    );
    for m in &metrics.metrics {
        if m.suppressed {
            assert_eq!((m.handoffs, m.overdue_share), (0, 0.0));
        } else {
            assert!(m.handoffs as usize >= K);
            assert!((0.0..=1.0).contains(&m.overdue_share));
        }
    }
}

/// Runs `refnet export htcds` against the app's database; the CSV and what it printed.
fn export(app: &TestApp) -> (String, String) {
    let out = app.data_dir.path().join("htcds.csv");
    let run = Command::new(REFNET)
        .args(["export", "htcds", "--out"])
        .arg(&out)
        .args(["--database-url", &app.database_url])
        .args(["--data-dir", &app.data_dir.path().display().to_string()])
        .output()
        .expect("run refnet export");
    assert!(
        run.status.success(),
        "refnet export htcds: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    (
        std::fs::read_to_string(&out).expect("the export"),
        String::from_utf8_lossy(&run.stdout).to_string(),
    )
}

async fn the_htcds_export_is_k_anonymous_and_holds_no_canary(app: &TestApp) {
    let seeded = seed_fixtures(app).await;
    // The leak test's canaries, twelve times (one person, enough to form a
    // group), then protected by the WPA; and the outlier.
    let mut witness = String::new();
    for _ in 0..12 {
        witness = app
            .file("police-nairobi", canary_draft())
            .await
            .referral
            .expect("referral")
            .id;
    }
    admit_witness(app, &witness).await;
    app.file("police-nairobi", outlier()).await;
    let total = seeded + 13;

    let (csv, printed) = export(app);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header, refnet_statistics::export::COLUMNS);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(
        rows.iter().all(|r| r.len() == header.len()),
        "one field per column"
    );
    // Recompute the equivalence classes over the quasi-identifiers.
    let mut classes: HashMap<Vec<&str>, usize> = HashMap::new();
    for r in &rows {
        let key: Vec<&str> = refnet_statistics::export::QUASI_IDENTIFIERS
            .iter()
            .map(|i| r[*i])
            .collect();
        *classes.entry(key).or_default() += 1;
    }
    let smallest = classes.values().min().copied().unwrap_or(0);
    assert!(smallest >= K, "a class of {smallest} records: {classes:?}");
    assert!(
        rows.len() * 2 > total,
        "most records are kept: {} of {total}",
        rows.len()
    );
    let dropped: usize = printed
        .split("dropped ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the dropped count is printed");
    assert_eq!(rows.len() + dropped, total, "{printed}");
    // The outlier is nowhere: not as a country, not as its own class.
    let citizenship = header
        .iter()
        .position(|c| *c == "citizenship")
        .expect("column");
    assert!(rows.iter().all(|r| r[citizenship] != "IS"));
    // The protected witness's twelve records: no subject field at all.
    let column = |name: &str| header.iter().position(|c| *c == name).expect(name);
    let protected: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r[column("majorityStatus")] == "Unknown")
        .collect();
    assert_eq!(
        protected.len(),
        12,
        "the witness's records are kept, as one group"
    );
    for r in &protected {
        assert_eq!(
            (
                r[column("gender")],
                r[column("ageBroad")],
                r[column("citizenship")],
                r[column("subnationalRegion")]
            ),
            ("Unknown", "", "", "")
        );
    }

    // The secretariat gets the same export over gRPC; nobody else gets it.
    let mut client = Client::new(app.channel().await);
    let got = client
        .export_htcds(authed(
            pb::ExportHtcdsRequest::default(),
            &app.officer("secretariat"),
        ))
        .await
        .expect("export over gRPC")
        .into_inner();
    assert_eq!(got.columns, header);
    assert_eq!(got.dropped as usize, dropped);
    let mut over_grpc: Vec<String> = got.records.iter().map(|r| r.values.join(",")).collect();
    let mut from_cli: Vec<String> = csv.lines().skip(1).map(str::to_owned).collect();
    over_grpc.sort();
    from_cli.sort();
    assert_eq!(over_grpc, from_cli);
    for token in [
        app.token("police-nairobi", &["supervisor"]),
        app.token("secretariat", &["auditor"]),
    ] {
        let status = client
            .export_htcds(authed(pb::ExportHtcdsRequest::default(), &token))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    for (canary, _) in crate::leak::CANARY_CLASSES {
        assert!(!csv.contains(canary), "{canary} in the export");
    }
    for canary in crate::common::CANARIES {
        assert!(!csv.contains(canary), "{canary} in the export");
    }
}
