//! `refnet demo`: the police → NGO → WPA scenario against an embedded server
//! on a fresh data directory, printing side by side what each agency sees of
//! the same referral before and after the witness is admitted to protection.
//! Every person in it is synthetic.

use std::time::Duration;

use anyhow::{Context, bail};
use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use refnet_core::{
    AppContext,
    config::Config,
    devkeys::{DevSigner, TokenRequest},
};
use tonic::transport::Channel;

/// The agencies whose views are compared, with their kinds.
const VIEWERS: [(&str, pb::AgencyKind); 4] = [
    ("police-nairobi", pb::AgencyKind::Police),
    ("ngo-shelter-nairobi", pb::AgencyKind::Ngo),
    ("immigration-nairobi", pb::AgencyKind::Immigration),
    ("wpa", pb::AgencyKind::Wpa),
];

/// A synthetic adult foreign national in sexual exploitation who needs shelter.
fn draft() -> pb::ReferralDraft {
    pb::ReferralDraft {
        subject: Some(pb::Subject {
            given_name: "Demo Akinyi".into(),
            family_name: "Example".into(),
            national_id: String::new(),
            passport_number: "DM1234567".into(),
            phones: vec!["+256772000111".into()],
            current_location: "Demo Lodge, room 4, Eastleigh".into(),
            date_of_birth: "2001-02-03".into(),
            sex: pb::Sex::Female as i32,
            nationality: "UG".into(),
            county_of_origin: String::new(),
            languages: vec!["sw".into()],
            ..Default::default()
        }),
        case_facts: Some(pb::CaseFacts {
            acts: vec![pb::Act::Recruitment as i32],
            means: vec![pb::Means::Deception as i32],
            purposes: vec![pb::Purpose::SexualExploitation as i32],
            country_of_exploitation: "KE".into(),
            identification_date: "2026-11-01".into(),
            narrative: "Demo Akinyi (phone +256 772 000 111) was promised hotel work; she is at \
                        Demo Lodge, room 4, Eastleigh."
                .into(),
            ..Default::default()
        }),
        needs: vec![pb::Need::Shelter as i32],
        consent: Some(pb::Consent {
            given: true,
            by: pb::ConsentBy::Subject as i32,
            agency_kinds: vec![pb::AgencyKind::Ngo as i32],
            ..Default::default()
        }),
        urgency: pb::Urgency::High as i32,
        classification: pb::Classification::SuspectedTip as i32,
        identified_by: pb::IdentifiedBy::Police as i32,
        county: "Nairobi".into(),
        ..Default::default()
    }
}

fn authed<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

fn cell(text: &str) -> String {
    let text = if text.is_empty() { "(none)" } else { text };
    let short: String = text.chars().take(24).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// Prints what each agency sees of `referral`, one column per agency.
async fn print_views(
    channel: &Channel,
    tokens: &[(String, String)],
    referral: &str,
    title: &str,
) -> anyhow::Result<()> {
    let mut columns = Vec::new();
    for (agency, token) in tokens {
        let reply = IntakeServiceClient::new(channel.clone())
            .get_referral(authed(
                pb::GetReferralRequest {
                    referral: referral.to_owned(),
                },
                token,
            )?)
            .await
            .with_context(|| format!("{agency} reads the referral"))?
            .into_inner();
        let r = reply.referral.context("no referral")?;
        let d = r.draft.unwrap_or_default();
        let s = d.subject.unwrap_or_default();
        let c = d.case_facts.unwrap_or_default();
        columns.push((
            agency.clone(),
            vec![
                s.given_name,
                s.passport_number,
                s.phones.join(", "),
                s.current_location,
                s.date_of_birth,
                c.narrative,
                if r.protection_applies { "yes" } else { "no" }.to_owned(),
                reply.redactions.len().to_string(),
            ],
        ));
    }
    let rows = [
        "given name",
        "passport",
        "phones",
        "current location",
        "date of birth",
        "narrative",
        "protection applies",
        "fields redacted",
    ];
    println!("\n{title}\n");
    print!("{:<20}", "");
    for (agency, _) in &columns {
        print!("{:<27}", agency);
    }
    println!();
    for (i, row) in rows.iter().enumerate() {
        print!("{row:<20}");
        for (_, values) in &columns {
            print!("{:<27}", cell(&values[i]));
        }
        println!();
    }
    Ok(())
}

/// Runs the demo in `data_dir` (created; must not hold a refnet already).
pub async fn run(data_dir: std::path::PathBuf) -> anyhow::Result<()> {
    if data_dir.join("refnet.db").exists() {
        bail!(
            "{} already holds a refnet database; the demo needs a fresh directory",
            data_dir.display()
        );
    }
    let config = Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    }
    .embedded();
    let ctx = AppContext::build(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = ctx.clone();
    let server = tokio::spawn(async move {
        crate::serve_all(&serving, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    let signer = DevSigner::load(&data_dir, "refnet-dev", "refnet")?;
    let mint = |agency: &str, kind: pb::AgencyKind| {
        signer.mint(&TokenRequest {
            officer_id: format!("demo-{agency}"),
            agency_id: agency.to_owned(),
            agency_kind: kind,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
    };
    let mut tokens = Vec::new();
    for (agency, kind) in VIEWERS {
        tokens.push((agency.to_owned(), mint(agency, kind)?));
    }
    let token = |agency: &str| -> anyhow::Result<String> {
        tokens
            .iter()
            .find(|(a, _)| a == agency)
            .map(|(_, t)| t.clone())
            .context("token")
    };
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    println!(
        "refnet demo: a police desk files a referral; routing hands it to the agencies that must act."
    );
    let filed = IntakeServiceClient::new(channel.clone())
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: format!("demo-{}", uuid::Uuid::new_v4().simple()),
                draft: Some(draft()),
            },
            &token("police-nairobi")?,
        )?)
        .await
        .context("file the referral")?
        .into_inner()
        .referral
        .context("no referral")?;
    println!("filed {} by police-nairobi", filed.reference_code);

    let mut routing = RoutingServiceClient::new(channel.clone());
    let ngo = token("ngo-shelter-nairobi")?;
    let mut handoff = None;
    for _ in 0..100 {
        let inbox = routing
            .list_inbox(authed(pb::ListInboxRequest::default(), &ngo)?)
            .await?
            .into_inner();
        handoff = inbox
            .handoffs
            .into_iter()
            .find(|h| h.referral_id == filed.id);
        if handoff.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handoff = handoff.context("the NGO's handoff did not arrive")?;
    println!(
        "routed to ngo-shelter-nairobi by rule {} ({}), and to immigration-nairobi",
        handoff.rule_id, handoff.purpose
    );
    let step = |h: &pb::Handoff| pb::HandoffTransitionRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        reason: String::new(),
    };
    let acknowledged = routing
        .acknowledge_handoff(authed(step(&handoff), &ngo)?)
        .await?
        .into_inner();
    routing
        .accept_handoff(authed(step(&acknowledged), &ngo)?)
        .await?;
    println!(
        "the NGO acknowledged and accepted it (it runs the shelter, so it now sees the location)"
    );
    print_views(
        &channel,
        &tokens[..3],
        &filed.id,
        "What each agency sees (consent given to NGO; identity and location per redaction.md):",
    )
    .await?;

    let mut protection = WitnessProtectionServiceClient::new(channel.clone());
    let wpa = token("wpa")?;
    let request = protection
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: filed.id.clone(),
                idempotency_key: format!("demo-{}", uuid::Uuid::new_v4().simple()),
                grounds: "Key witness against the recruiters.".into(),
                threat_assessment: "Threats received by phone.".into(),
                measures: vec![
                    pb::ProtectionMeasure::Relocation as i32,
                    pb::ProtectionMeasure::VideoLinkTestimony as i32,
                ],
                urgency: pb::Urgency::High as i32,
                threat_sources: "the recruitment network".into(),
            },
            &token("police-nairobi")?,
        )?)
        .await
        .context("request protection")?
        .into_inner();
    let assessing = protection
        .begin_assessment(authed(
            pb::ProtectionStepRequest {
                id: request.id.clone(),
                expected_version: request.version,
                ..Default::default()
            },
            &wpa,
        )?)
        .await?
        .into_inner();
    let admitted = protection
        .admit_to_programme(authed(
            pb::ProtectionStepRequest {
                id: assessing.id.clone(),
                expected_version: assessing.version,
                ..Default::default()
            },
            &wpa,
        )?)
        .await?
        .into_inner();
    println!(
        "\npolice-nairobi asked the WPA for protection (relocation, video link); the WPA assessed and admitted the witness as {}",
        admitted.pseudonym
    );
    print_views(
        &channel,
        &tokens,
        &filed.id,
        "What each agency sees now (only the WPA sees the person):",
    )
    .await?;
    println!(
        "\nEvery identity or location shown above was recorded in the hash-chained audit log."
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}
