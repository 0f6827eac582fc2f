//! The leak test: canaries in every IDENTITY, LOCATION, SPECIAL and SUSPECT
//! field and in free text; every RPC of every refnet.v1 service (enumerated
//! from the descriptors) called as every agency kind and role, for subjects
//! with and without consent, adult and child; each canary must appear in a
//! reply exactly where the policy table of redaction.md allows it.
//!
//! The expected table is written out here independently of the policy file,
//! so changing one cell of the shipped policy makes this test fail.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use prost::Message;
use refnet_api::v1 as pb;
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

use crate::{
    common::{TestApp, authed, canary_draft, new_key},
    on_both,
};

on_both!(
    config = crate::common::without_rate_limits;
    every_rpc_reveals_only_what_the_policy_allows,
    non_parties_cannot_tell_whether_a_referral_exists
);

/// Sends and receives raw protobuf bytes, so any method can be called and
/// any reply searched for canaries (strings are stored verbatim in protobuf).
#[derive(Default, Clone)]
struct RawCodec;

#[derive(Default, Clone)]
struct RawCoder;

impl Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    Identity,
    Location,
    Quasi,
    Case,
    Special,
    Suspect,
    /// The WPA's own records (its notes on a protection request).
    Protection,
}

/// Every canary of `canary_draft()` with its class. Free-text mentions use
/// the same strings as the structured fields (or spellings of their own).
pub(crate) const CANARY_CLASSES: &[(&str, Class)] = &[
    ("Canarygiven", Class::Identity),
    ("Canaryfamily", Class::Identity),
    ("Canaryalias", Class::Identity),
    ("31415926", Class::Identity),
    ("ZQ7271828", Class::Identity),
    ("RAS-9988776", Class::Identity),
    ("700111222", Class::Identity),
    ("0700 111 222", Class::Identity),
    ("772987654", Class::Identity),
    ("canary.email.zqx", Class::Identity),
    ("Canaryhome", Class::Identity),
    ("Canarykin", Class::Identity),
    ("733444555", Class::Identity),
    ("Canaryrelation", Class::Identity),
    ("Canarywhere", Class::Location),
    ("Canaryshelter", Class::Location),
    ("1999-04-17", Class::Quasi),
    ("Nyando", Class::Quasi),
    ("Canaryother", Class::Case),
    ("Canaryroute", Class::Case),
    ("Canarynarrative", Class::Case),
    ("Canaryhealth", Class::Special),
    ("Canaryinjury", Class::Special),
    ("Canarypsych", Class::Special),
    ("Canarysuspect", Class::Suspect),
    ("722666777", Class::Suspect),
    ("0722-666-777", Class::Suspect),
    ("KZQ 123X", Class::Suspect),
    ("Canaryemployer", Class::Suspect),
    ("Canaryagency", Class::Suspect),
    ("Canarywpanote", Class::Protection),
];

/// The default policy of redaction.md: does `kind` see `class` in full?
/// (Consented, not protected, no handoff; OPERATIONAL is not canaried.)
fn table_shows(kind: &str, class: Class) -> bool {
    use Class::*;
    match class {
        Identity => !matches!(kind, "LABOUR" | "SECRETARIAT"), // LABOUR masks
        Location => matches!(kind, "POLICE" | "CHILDREN" | "WPA"),
        Quasi => !matches!(kind, "LABOUR" | "NGO" | "TRUST_FUND" | "SECRETARIAT"), // generalised
        Case => kind != "SECRETARIAT",
        Special => matches!(kind, "CHILDREN" | "NGO" | "HEALTH" | "WPA"),
        Suspect => matches!(
            kind,
            "POLICE" | "PROSECUTION" | "IMMIGRATION" | "LABOUR" | "WPA"
        ),
        Protection => kind == "WPA",
    }
}

/// The expected visibility of `class` for `kind` with `role`, given the
/// agency kinds the subject consented to and whether the subject is a
/// protected witness.
fn expected_visible(
    kind: &str,
    role: &str,
    class: Class,
    consented: &[&str],
    protected: bool,
) -> bool {
    if role == "auditor" || role == "data_protection" {
        return false; // OPERATIONAL only
    }
    if protected
        && kind != "WPA"
        && matches!(
            class,
            Class::Identity | Class::Location | Class::Quasi | Class::Special
        )
    {
        return false; // override 1: pseudonym, no location, age band only, no special category
    }
    let consent_bound = matches!(kind, "NGO" | "HEALTH" | "LABOUR" | "TRUST_FUND");
    if consent_bound
        && !consented.contains(&kind)
        && matches!(class, Class::Identity | Class::Location)
    {
        return false; // override 2: pseudonymised / dropped
    }
    table_shows(kind, class)
}

const VIEWERS: &[(&str, &str)] = &[
    ("police-nairobi", "POLICE"),
    ("police-mombasa", "POLICE"),
    ("prosecution-nairobi", "PROSECUTION"),
    ("immigration-nairobi", "IMMIGRATION"),
    ("labour-nairobi", "LABOUR"),
    ("children-nairobi", "CHILDREN"),
    ("ngo-shelter-nairobi", "NGO"),
    ("health-nairobi", "HEALTH"),
    ("wpa", "WPA"),
    ("trust-fund", "TRUST_FUND"),
    ("secretariat", "SECRETARIAT"),
];

/// Parties besides the filer (police-nairobi); police-mombasa and the
/// secretariat stay outside and must see nothing.
const PARTIES: &[&str] = &[
    "prosecution-nairobi",
    "immigration-nairobi",
    "labour-nairobi",
    "children-nairobi",
    "ngo-shelter-nairobi",
    "health-nairobi",
    "wpa",
    "trust-fund",
];

const ROLES: &[&str] = &["officer", "supervisor", "auditor", "data_protection"];

struct Case {
    name: &'static str,
    id: String,
    draft: pb::ReferralDraft,
    /// The draft encoded: a canary is only expected where the case has it.
    bytes: Vec<u8>,
    consented: Vec<&'static str>,
    /// A handoff to the NGO that the NGO declined with [`MESSAGE_BODY`] as the reason.
    declined: String,
    /// A protection request by the filing police desk, with a WPA note ([`WPA_NOTE`]).
    protection: String,
    /// The WPA admitted the subject (override 1 applies).
    protected: bool,
}

/// The same referral filed again with the same parties (a protected
/// witness's copy is protected too, by its identifiers), for a call that
/// would change the case for the calls after it.
async fn disposable_copy(app: &TestApp, case: &Case) -> Case {
    let id = app
        .file("police-nairobi", case.draft.clone())
        .await
        .referral
        .expect("referral")
        .id;
    for party in PARTIES {
        app.make_party(&id, party).await;
    }
    Case {
        name: case.name,
        id,
        draft: case.draft.clone(),
        bytes: case.bytes.clone(),
        consented: case.consented.clone(),
        declined: case.declined.clone(),
        protection: case.protection.clone(),
        protected: case.protected,
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// [`canary_draft`] with other ID numbers and phones: by refnet's blind
/// index a different person, so protecting them leaves the other cases alone.
fn another_person() -> pb::ReferralDraft {
    let mut draft = canary_draft();
    let subject = draft.subject.as_mut().expect("subject");
    subject.national_id = "27182818".into();
    subject.passport_number = "XY1234567".into();
    subject.refugee_id = "RAS-1122334".into();
    subject.phones = vec!["+254711000999".into()];
    draft
}

fn with_consent(
    mut draft: pb::ReferralDraft,
    by: pb::ConsentBy,
    kinds: &[pb::AgencyKind],
) -> pb::ReferralDraft {
    draft.consent = Some(pb::Consent {
        given: !kinds.is_empty(),
        by: by as i32,
        agency_kinds: kinds.iter().map(|k| *k as i32).collect(),
        ..Default::default()
    });
    draft
}

/// The body every PostMessage of this test writes (a subject identifier in free text).
const MESSAGE_BODY: &str = "Canarygiven Zqx is safe";

/// The WPA's note on every case's protection request (class PROTECTION).
const WPA_NOTE: &str = "Canarywpanote: assessed at the coast office";

/// The calls whose replies carry the WPA's note.
const WPA_NOTE_CARRIERS: &[&str] = &["/GetProtectionRequest"];

/// The filing police desk asks for protection; the WPA begins assessing it
/// with [`WPA_NOTE`] and, when `admit`, admits the witness.
async fn request_protection(app: &TestApp, referral: &str, admit: bool) -> String {
    let mut client = pb::witness_protection_service_client::WitnessProtectionServiceClient::new(
        app.channel().await,
    );
    let submitted = client
        .submit_protection_request(authed(
            protection_request(referral),
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("submit")
        .into_inner();
    let wpa = app.officer("wpa");
    let assessing = client
        .begin_assessment(authed(
            pb::ProtectionStepRequest {
                id: submitted.id.clone(),
                expected_version: submitted.version,
                notes: WPA_NOTE.into(),
                ..Default::default()
            },
            &wpa,
        ))
        .await
        .expect("assess")
        .into_inner();
    if admit {
        client
            .admit_to_programme(authed(
                pb::ProtectionStepRequest {
                    id: assessing.id.clone(),
                    expected_version: assessing.version,
                    ..Default::default()
                },
                &wpa,
            ))
            .await
            .expect("admit");
    }
    submitted.id
}

/// A protection request with no canary in it.
fn protection_request(referral: &str) -> pb::SubmitProtectionRequestRequest {
    pb::SubmitProtectionRequestRequest {
        referral_id: referral.into(),
        idempotency_key: new_key(),
        grounds: "Key prosecution witness; threats received".into(),
        threat_assessment: "High: the network knows the family".into(),
        measures: vec![pb::ProtectionMeasure::PhysicalProtection as i32],
        urgency: pb::Urgency::High as i32,
        threat_sources: "the recruitment network".into(),
    }
}

/// The calls whose replies carry a decline reason (free text, [`MESSAGE_BODY`]).
const DECLINE_REASON_CARRIERS: &[&str] = &["/GetHandoff", "/GetTimeline", "/WatchReferral"];

/// A supervisor of the filer hands `referral` to the NGO, which acknowledges
/// it and declines it with [`MESSAGE_BODY`] (a subject identifier) as the reason.
async fn decline_to_ngo(app: &TestApp, referral: &str) -> String {
    let mut routing = pb::routing_service_client::RoutingServiceClient::new(app.channel().await);
    let h = routing
        .create_handoff(authed(
            pb::CreateHandoffRequest {
                referral: referral.into(),
                to_agency_id: "ngo-shelter-nairobi".into(),
                purpose: "shelter, psychosocial support and legal aid".into(),
                idempotency_key: new_key(),
            },
            &app.token("police-nairobi", &["supervisor"]),
        ))
        .await
        .expect("manual handoff")
        .into_inner();
    let ngo = app.officer("ngo-shelter-nairobi");
    let h = routing
        .acknowledge_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: h.version,
                reason: String::new(),
            },
            &ngo,
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    routing
        .decline_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: h.version,
                reason: MESSAGE_BODY.into(),
            },
            &ngo,
        ))
        .await
        .expect("decline")
        .into_inner()
        .id
}

/// Does the reply type of `method` carry a message of type `name` (transitively)?
fn carries(method: &prost_reflect::MethodDescriptor, name: &str) -> bool {
    fn walk(m: &prost_reflect::MessageDescriptor, name: &str, seen: &mut Vec<String>) -> bool {
        if m.full_name() == name {
            return true;
        }
        if seen.contains(&m.full_name().to_owned()) {
            return false;
        }
        seen.push(m.full_name().to_owned());
        m.fields().any(|f| match f.kind() {
            prost_reflect::Kind::Message(inner) => walk(&inner, name, seen),
            _ => false,
        })
    }
    walk(&method.output(), name, &mut Vec::new())
}

async fn current_version(app: &TestApp, referral: &str) -> i64 {
    app.get_as("wpa", referral)
        .await
        .referral
        .expect("referral")
        .version
}

/// The request each method is called with. A method missing here fails the test.
async fn request_for(app: &TestApp, method: &str, case: &Case) -> Option<Vec<u8>> {
    let id = case.id.clone();
    let bytes = match method {
        "/refnet.v1.IntakeService/FileReferral" => pb::FileReferralRequest {
            idempotency_key: new_key(),
            draft: Some(case.draft.clone()),
        }
        .encode_to_vec(),
        "/refnet.v1.IntakeService/GetReferral" => {
            pb::GetReferralRequest { referral: id }.encode_to_vec()
        }
        "/refnet.v1.IntakeService/ListReferrals" => {
            pb::ListReferralsRequest::default().encode_to_vec()
        }
        "/refnet.v1.IntakeService/AmendReferral" => pb::AmendReferralRequest {
            expected_version: current_version(app, &id).await,
            referral: id,
            draft: Some(case.draft.clone()),
        }
        .encode_to_vec(),
        "/refnet.v1.IntakeService/RecordConsent" => pb::RecordConsentRequest {
            expected_version: current_version(app, &id).await,
            referral: id,
            consent: case.draft.consent.clone(),
        }
        .encode_to_vec(),
        // Withdrawing from a kind the subject never consented to changes nothing visible.
        "/refnet.v1.IntakeService/WithdrawConsent" => pb::WithdrawConsentRequest {
            expected_version: current_version(app, &id).await,
            referral: id,
            agency_kinds: vec![pb::AgencyKind::Secretariat as i32],
        }
        .encode_to_vec(),
        "/refnet.v1.IntakeService/EraseSubject" => pb::EraseSubjectRequest {
            referral: id,
            ground: pb::ErasureGround::SubjectRequest as i32,
        }
        .encode_to_vec(),
        // Every dimension a query may hold at once, over everything.
        "/refnet.v1.StatisticsService/GetAggregates" => pb::GetAggregatesRequest {
            group_by: vec![
                pb::Dimension::County as i32,
                pb::Dimension::Sex as i32,
                pb::Dimension::AgeBand as i32,
                pb::Dimension::NationalityGroup as i32,
            ],
            ..Default::default()
        }
        .encode_to_vec(),
        "/refnet.v1.StatisticsService/ExportHtcds" => {
            pb::ExportHtcdsRequest::default().encode_to_vec()
        }
        "/refnet.v1.StatisticsService/GetHandoffMetrics" => {
            pb::GetHandoffMetricsRequest::default().encode_to_vec()
        }
        "/refnet.v1.AuditService/ListAuditRecords" => pb::ListAuditRecordsRequest {
            referral: id,
            ..Default::default()
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/ListInbox" => pb::ListInboxRequest::default().encode_to_vec(),
        "/refnet.v1.RoutingService/AcknowledgeHandoff"
        | "/refnet.v1.RoutingService/AcceptHandoff"
        | "/refnet.v1.RoutingService/DeclineHandoff"
        | "/refnet.v1.RoutingService/CompleteHandoff"
        | "/refnet.v1.RoutingService/WithdrawHandoff" => {
            pb::HandoffTransitionRequest::default().encode_to_vec()
        }
        "/refnet.v1.RoutingService/GetHandoff" => pb::GetHandoffRequest {
            handoff_id: case.declined.clone(),
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/UpdateChecklist" => {
            pb::UpdateChecklistRequest::default().encode_to_vec()
        }
        "/refnet.v1.RoutingService/ListNotifications" => {
            pb::ListNotificationsRequest::default().encode_to_vec()
        }
        "/refnet.v1.RoutingService/MarkNotificationsRead" => pb::MarkNotificationsReadRequest {
            notification_ids: vec![],
            up_to: uuid::Uuid::max().to_string(),
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/ListTriage" => pb::ListTriageRequest::default().encode_to_vec(),
        // Switched off, so the dispatcher never calls the (unresolvable) host.
        "/refnet.v1.RoutingService/ConfigureWebhook" => pb::ConfigureWebhookRequest {
            url: "https://hooks.example.invalid/refnet".into(),
            secret: "leak-test-secret-0123456789abcdef".into(),
            enabled: false,
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/GetWebhook" => pb::GetWebhookRequest {}.encode_to_vec(),
        // Muting nothing: every later call still lists every kind.
        "/refnet.v1.RoutingService/SetNotificationMutes" => {
            pb::SetNotificationMutesRequest { kinds: vec![] }.encode_to_vec()
        }
        "/refnet.v1.RoutingService/ListSentHandoffs" => {
            pb::ListSentHandoffsRequest::default().encode_to_vec()
        }
        "/refnet.v1.RoutingService/CloseReferral" => pb::CloseReferralRequest {
            referral: id,
            reason: pb::CloseReason::Duplicate as i32,
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/CreateHandoff" => pb::CreateHandoffRequest {
            referral: id,
            to_agency_id: "health-nairobi".into(),
            purpose: "medical treatment".into(),
            idempotency_key: new_key(),
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/ReassignHandoff" => {
            pb::ReassignHandoffRequest::default().encode_to_vec()
        }
        "/refnet.v1.RoutingService/WatchInbox" => pb::WatchInboxRequest {
            cursor: String::new(),
            from_beginning: true,
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/GetTimeline" => pb::GetTimelineRequest {
            referral: id,
            ..Default::default()
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/WatchReferral" => pb::WatchReferralRequest {
            referral: id,
            cursor: String::new(),
            from_beginning: true,
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/ListMessages" => pb::ListMessagesRequest {
            referral: id,
            ..Default::default()
        }
        .encode_to_vec(),
        "/refnet.v1.RoutingService/PostMessage" => pb::PostMessageRequest {
            referral_id: id,
            idempotency_key: new_key(),
            body: MESSAGE_BODY.into(),
        }
        .encode_to_vec(),
        "/refnet.v1.WitnessProtectionService/SubmitProtectionRequest" => {
            protection_request(&id).encode_to_vec()
        }
        "/refnet.v1.WitnessProtectionService/GetProtectionRequest" => {
            pb::GetProtectionRequestRequest {
                id: case.protection.clone(),
            }
            .encode_to_vec()
        }
        "/refnet.v1.WitnessProtectionService/ListProtectionRequests" => {
            pb::ListProtectionRequestsRequest::default().encode_to_vec()
        }
        "/refnet.v1.WitnessProtectionService/WatchProtectionRequests" => {
            pb::WatchProtectionRequestsRequest {
                cursor: String::new(),
                from_beginning: true,
            }
            .encode_to_vec()
        }
        // Steps with no request id: the WPA is told what is missing, anyone else is refused.
        "/refnet.v1.WitnessProtectionService/WithdrawProtectionRequest"
        | "/refnet.v1.WitnessProtectionService/BeginAssessment"
        | "/refnet.v1.WitnessProtectionService/GrantInterimMeasures"
        | "/refnet.v1.WitnessProtectionService/AdmitToProgramme"
        | "/refnet.v1.WitnessProtectionService/DeclineRequest"
        | "/refnet.v1.WitnessProtectionService/CloseProtection" => {
            pb::ProtectionStepRequest::default().encode_to_vec()
        }
        "/refnet.v1.WitnessProtectionService/RecordMeasure" => {
            pb::RecordMeasureRequest::default().encode_to_vec()
        }
        _ => return None,
    };
    Some(bytes)
}

async fn every_rpc_reveals_only_what_the_policy_allows(app: &TestApp) {
    use pb::{AgencyKind as K, ConsentBy as By};
    let mut child = canary_draft();
    child.subject.as_mut().expect("subject").date_of_birth = "2012-03-04".into();
    let cases_drafts = [
        (
            "adult, consent to all",
            with_consent(
                canary_draft(),
                By::Subject,
                &[K::Ngo, K::Health, K::Labour, K::TrustFund],
            ),
            vec!["NGO", "HEALTH", "LABOUR", "TRUST_FUND"],
        ),
        (
            "adult, no consent",
            with_consent(canary_draft(), By::Subject, &[]),
            vec![],
        ),
        (
            "child, guardian consent to NGO",
            with_consent(child, By::Guardian, &[K::Ngo]),
            vec!["NGO"],
        ),
        (
            "adult, protected witness (consent to all)",
            with_consent(
                another_person(),
                By::Subject,
                &[K::Ngo, K::Health, K::Labour, K::TrustFund],
            ),
            vec!["NGO", "HEALTH", "LABOUR", "TRUST_FUND"],
        ),
    ];
    let mut cases = Vec::new();
    for (name, draft, consented) in cases_drafts {
        let protected = name.contains("protected");
        let referral = app
            .file("police-nairobi", draft.clone())
            .await
            .referral
            .expect("referral");
        for party in PARTIES {
            app.make_party(&referral.id, party).await;
        }
        let declined = decline_to_ngo(app, &referral.id).await;
        let protection = request_protection(app, &referral.id, protected).await;
        let bytes = draft.encode_to_vec();
        cases.push(Case {
            name,
            id: referral.id,
            draft,
            bytes,
            consented,
            declined,
            protection,
            protected,
        });
    }

    let pool = refnet_api::descriptor_pool();
    let channel = app.channel().await;
    let mut checked_replies = 0;
    let mut per_method: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for service in pool.services().filter(|s| s.package_name() == "refnet.v1") {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            // What subject content the reply can hold: a whole referral, or
            // thread messages (whose bodies this test writes).
            let content: Option<Vec<u8>> = if path.ends_with("/EraseSubject") {
                // Its reply is the referral after erasure: no canary is left for anyone.
                Some(Vec::new())
            } else if carries(&method, "refnet.v1.Referral") {
                None
            } else if carries(&method, "refnet.v1.ThreadMessage")
                || DECLINE_REASON_CARRIERS.iter().any(|m| path.ends_with(m))
            {
                Some(MESSAGE_BODY.as_bytes().to_vec())
            } else if WPA_NOTE_CARRIERS.iter().any(|m| path.ends_with(m)) {
                Some(WPA_NOTE.as_bytes().to_vec())
            } else {
                Some(Vec::new())
            };
            for case in &cases {
                for (agency, kind) in VIEWERS {
                    for role in ROLES {
                        // An erasure that succeeds must not take the case's
                        // subject from the calls after it: it erases a copy.
                        // A protection request goes to a copy too: the case's
                        // subject already has an open one (a second is
                        // ALREADY_EXISTS).
                        let copy;
                        let target = if path.ends_with("/EraseSubject")
                            || path.ends_with("/SubmitProtectionRequest")
                        {
                            copy = disposable_copy(app, case).await;
                            &copy
                        } else {
                            case
                        };
                        let body = request_for(app, &path, target).await.unwrap_or_else(|| {
                            panic!("{path} has no request in the leak test: add one")
                        });
                        let token = app.token(agency, &[role]);
                        let mut grpc = tonic::client::Grpc::new(channel.clone());
                        grpc.ready().await.expect("ready");
                        let request = authed(body, &token);
                        let result = if method.is_server_streaming() {
                            match grpc
                                .server_streaming(request, path.parse().expect("path"), RawCodec)
                                .await
                            {
                                Ok(response) => {
                                    // Live streams never end: take what arrives until they go
                                    // quiet. A replay that must carry content (the timeline's
                                    // decline reason) gets longer for its first batch, which a
                                    // loaded database can take more than 100 ms to prepare.
                                    let mut stream = response.into_inner();
                                    let mut all = Vec::new();
                                    let mut wait =
                                        if content.as_ref().is_some_and(|c| !c.is_empty()) {
                                            std::time::Duration::from_secs(5)
                                        } else {
                                            std::time::Duration::from_millis(100)
                                        };
                                    while let Ok(Ok(Some(item))) =
                                        tokio::time::timeout(wait, stream.message()).await
                                    {
                                        all.extend(item);
                                        wait = std::time::Duration::from_millis(100);
                                    }
                                    Ok(all)
                                }
                                Err(status) => Err(status),
                            }
                        } else {
                            grpc.unary(request, path.parse().expect("path"), RawCodec)
                                .await
                                .map(|r| r.into_inner())
                        };
                        let entry = per_method.entry(path.clone()).or_default();
                        let ok = result.is_ok();
                        let reply = match result {
                            Ok(bytes) => {
                                entry.0 += 1;
                                bytes
                            }
                            Err(status) => {
                                entry.1 += 1;
                                let expected = [
                                    Code::NotFound,
                                    Code::PermissionDenied,
                                    Code::Unimplemented,
                                    Code::InvalidArgument,
                                ];
                                // The filer's supervisors may not close a
                                // referral whose handoffs are still open.
                                let open_handoffs = path.ends_with("/CloseReferral")
                                    && status.code() == Code::FailedPrecondition;
                                assert!(
                                    expected.contains(&status.code()) || open_handoffs,
                                    "{path} as {agency}/{role}: {status:?}"
                                );
                                // An error never carries a canary either.
                                status.message().as_bytes().to_vec()
                            }
                        };
                        checked_replies += 1;
                        // Filing makes the caller the filer of the new referral.
                        let party = path.ends_with("/FileReferral")
                            || *agency == "police-nairobi"
                            || PARTIES.contains(agency);
                        for (canary, class) in CANARY_CLASSES {
                            let found = contains(&reply, canary);
                            let source = content.as_deref().unwrap_or(&case.bytes);
                            let allowed = ok
                                && party
                                && contains(source, canary)
                                && expected_visible(
                                    kind,
                                    role,
                                    *class,
                                    &case.consented,
                                    case.protected,
                                );
                            assert_eq!(
                                found,
                                allowed,
                                "{path} as {agency} ({kind}) {role}, {}: canary {canary:?} ({class:?}) {}",
                                case.name,
                                if found {
                                    "leaked"
                                } else {
                                    "missing though the policy shows it"
                                }
                            );
                        }
                    }
                }
            }
        }
    }
    // Successful calls must exist for the RPCs that are implemented, or the test proves nothing.
    for method in [
        "GetReferral",
        "FileReferral",
        "EraseSubject",
        "AmendReferral",
        "RecordConsent",
        "WithdrawConsent",
        "ListReferrals",
        "ListAuditRecords",
        "PostMessage",
        "ListMessages",
        "GetTimeline",
        "WatchReferral",
        "CreateHandoff",
        "GetHandoff",
        "ListNotifications",
        "MarkNotificationsRead",
        "ListTriage",
        "ListSentHandoffs",
        "ConfigureWebhook",
        "GetWebhook",
        "SetNotificationMutes",
        "WatchProtectionRequests",
        "SubmitProtectionRequest",
        "GetProtectionRequest",
        "ListProtectionRequests",
        "GetAggregates",
        "GetHandoffMetrics",
        "ExportHtcds",
    ] {
        let key = per_method
            .keys()
            .find(|k| k.ends_with(method))
            .expect("method")
            .clone();
        assert!(
            per_method[&key].0 > 0,
            "{key} never succeeded: {:?}",
            per_method[&key]
        );
    }
    assert!(checked_replies > 500, "{checked_replies}");

    // Everything every test of this suite logged so far: no canary, ever.
    let logs =
        String::from_utf8_lossy(&crate::common::captured_logs().lock().expect("logs")).to_string();
    assert!(logs.contains("referral filed"), "logging was captured");
    for (canary, _) in CANARY_CLASSES {
        assert!(!logs.contains(canary), "{canary} appears in the logs");
    }
}

/// `bytes` with every occurrence of each `(from, to)` replaced (same lengths).
fn replace_ids(bytes: &[u8], ids: &[(String, String)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (from, to) in ids {
        assert_eq!(from.len(), to.len(), "ids of one shape");
        let (from, to) = (from.as_bytes(), to.as_bytes());
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    out
}

/// One call with raw bytes; a stream gives what arrives within 300 ms.
async fn call_raw(
    channel: &tonic::transport::Channel,
    method: &prost_reflect::MethodDescriptor,
    path: &str,
    body: Vec<u8>,
    token: &str,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let request = authed(body, token);
    if method.is_server_streaming() {
        let mut stream = grpc
            .server_streaming(request, path.parse().expect("path"), RawCodec)
            .await?
            .into_inner();
        let mut all = Vec::new();
        while let Ok(item) =
            tokio::time::timeout(std::time::Duration::from_millis(300), stream.message()).await
        {
            match item? {
                Some(bytes) => all.extend(bytes),
                None => break,
            }
        }
        Ok(all)
    } else {
        grpc.unary(request, path.parse().expect("path"), RawCodec)
            .await
            .map(|r| r.into_inner())
    }
}

/// For every RPC (from the descriptors) that names a referral, handoff or
/// protection request, a non-party of every role gets exactly the same answer
/// for one that exists as for one that does not: same code, same message,
/// same reply. Role checks and party checks therefore never tell a caller
/// that a referral exists.
async fn non_parties_cannot_tell_whether_a_referral_exists(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let declined = decline_to_ngo(app, &referral.id).await;
    let protection = request_protection(app, &referral.id, false).await;
    let draft = canary_draft();
    let case = Case {
        name: "exists",
        id: referral.id.clone(),
        bytes: draft.encode_to_vec(),
        draft,
        consented: vec![],
        declined: declined.clone(),
        protection: protection.clone(),
        protected: false,
    };
    let ids: Vec<(String, String)> = [referral.id, declined, protection]
        .into_iter()
        .map(|real| (real, uuid::Uuid::now_v7().to_string()))
        .collect();

    let pool = refnet_api::descriptor_pool();
    let channel = app.channel().await;
    let mut compared = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == "refnet.v1") {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let real = request_for(app, &path, &case)
                .await
                .unwrap_or_else(|| panic!("{path} has no request in the leak test: add one"));
            let ghost = replace_ids(&real, &ids);
            if ghost == real {
                continue; // names nothing that could exist or not
            }
            compared.push(path.clone());
            for agency in [
                "police-mombasa",
                "secretariat",
                "labour-nairobi",
                "health-nairobi",
            ] {
                for role in ROLES {
                    let token = app.token(agency, &[role]);
                    // The same request again where it made something (an
                    // idempotency key) would be a replay: both are built anew.
                    let real = request_for(app, &path, &case).await.expect("request");
                    let ghost = replace_ids(&real, &ids);
                    let a = call_raw(&channel, &method, &path, real, &token).await;
                    let b = call_raw(&channel, &method, &path, ghost, &token).await;
                    let who = format!("{path} as {agency}/{role}");
                    match (&a, &b) {
                        (Err(x), Err(y)) => {
                            let x_message = replace_ids(x.message().as_bytes(), &ids);
                            assert_eq!(
                                (x.code(), x_message.as_slice()),
                                (y.code(), y.message().as_bytes()),
                                "{who}: an existing referral is answered differently"
                            );
                            assert!(
                                matches!(
                                    x.code(),
                                    Code::NotFound | Code::PermissionDenied | Code::InvalidArgument
                                ),
                                "{who}: {x:?}"
                            );
                        }
                        (Ok(x), Ok(y)) => assert_eq!(
                            replace_ids(x, &ids),
                            *y,
                            "{who}: an existing referral gives another reply"
                        ),
                        _ => panic!("{who}: existing {a:?}, missing {b:?}"),
                    }
                }
            }
        }
    }
    for method in [
        "GetReferral",
        "EraseSubject",
        "AmendReferral",
        "RecordConsent",
        "WithdrawConsent",
        "ListAuditRecords",
        "GetHandoff",
        "CreateHandoff",
        "GetTimeline",
        "WatchReferral",
        "ListMessages",
        "PostMessage",
        "CloseReferral",
        "SubmitProtectionRequest",
        "GetProtectionRequest",
    ] {
        assert!(
            compared.iter().any(|p| p.ends_with(&format!("/{method}"))),
            "{method} was not compared: {compared:?}"
        );
    }
}
