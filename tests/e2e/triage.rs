//! Nothing ends silently (issue 18): a referral no rule routes waits in its
//! filing agency's triage list with its supervisors notified and a routing
//! deadline that escalates; declines re-route to a rule's second choice and
//! then to triage, never to CLOSED; a sender withdraws after acceptance and
//! the recipient keeps only what it saw; the sender lists what it sent,
//! overdue first; notifications are read or unread per officer; protection
//! requests have deadlines that escalate, a live stream, and one open
//! request per subject.

use std::time::Duration;

use chrono::Utc;
use refnet_api::v1::{
    self as pb, routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::{
    common::{TestApp, authed, canary_draft, new_key, violations},
    on_both,
    routing::{await_handoffs, foreign_child_in_forced_labour, inbox},
};

fn no_worker(c: &mut refnet_core::config::Config) {
    c.routing_worker = false;
}

on_both!(
    config = super::no_worker;
    an_unrouted_referral_waits_in_triage_until_a_supervisor_routes_it,
    a_rule_set_change_routes_what_waits_in_triage,
);

on_both!(
    declines_try_the_second_choice_then_triage_never_closed,
    a_sender_withdraws_after_acceptance_and_lists_what_it_sent,
    protection_requests_have_deadlines_a_stream_and_one_open_per_subject,
);

async fn routing(app: &TestApp) -> RoutingServiceClient<Channel> {
    RoutingServiceClient::new(app.channel().await)
}

/// An adult Kenyan, sexual exploitation, classification UNCLEAR, no needs,
/// filed by police in Nairobi: no default rule routes it.
pub(crate) fn unroutable() -> pb::ReferralDraft {
    let mut draft = canary_draft();
    draft.county = "Nairobi".into();
    draft.needs.clear();
    draft.classification = pb::Classification::Unclear as i32;
    let case = draft.case_facts.as_mut().expect("case");
    case.purposes = vec![pb::Purpose::SexualExploitation as i32];
    case.other_purpose.clear();
    draft.suspects[0].employer.clear();
    draft.suspects[0].recruitment_agency.clear();
    draft
}

async fn status(app: &TestApp, referral: &str) -> pb::ReferralStatus {
    let got = app
        .get_as("police-nairobi", referral)
        .await
        .referral
        .expect("referral");
    pb::ReferralStatus::try_from(got.status).expect("status")
}

async fn triage(app: &TestApp, agency: &str) -> Vec<pb::TriageItem> {
    routing(app)
        .await
        .list_triage(authed(
            pb::ListTriageRequest::default(),
            &app.token(agency, &["supervisor"]),
        ))
        .await
        .expect("triage")
        .into_inner()
        .items
}

async fn notifications(
    app: &TestApp,
    agency: &str,
    role: &str,
    unread_only: bool,
) -> Vec<pb::Notification> {
    routing(app)
        .await
        .list_notifications(authed(
            pb::ListNotificationsRequest {
                unread_only,
                ..Default::default()
            },
            &app.token(agency, &[role]),
        ))
        .await
        .expect("notifications")
        .into_inner()
        .notifications
}

fn of_kind<'a>(list: &'a [pb::Notification], event: &str) -> Vec<&'a pb::Notification> {
    list.iter().filter(|n| n.event == event).collect()
}

async fn timeline(app: &TestApp, agency: &str, referral: &str) -> Vec<pb::TimelineEvent> {
    routing(app)
        .await
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.into(),
                ..Default::default()
            },
            &app.officer(agency),
        ))
        .await
        .expect("timeline")
        .into_inner()
        .events
}

fn transition(h: &pb::Handoff, reason: &str) -> pb::HandoffTransitionRequest {
    pb::HandoffTransitionRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        reason: reason.into(),
    }
}

/// Acknowledges `h` as `agency`, then declines it with `reason`.
async fn decline(app: &TestApp, agency: &str, h: &pb::Handoff, reason: &str) -> pb::Handoff {
    let mut client = routing(app).await;
    let token = app.officer(agency);
    let h = client
        .acknowledge_handoff(authed(transition(h, ""), &token))
        .await
        .expect("acknowledge")
        .into_inner();
    client
        .decline_handoff(authed(transition(&h, reason), &token))
        .await
        .expect("decline")
        .into_inner()
}

async fn an_unrouted_referral_waits_in_triage_until_a_supervisor_routes_it(app: &TestApp) {
    let referral = app
        .file("police-nairobi", unroutable())
        .await
        .referral
        .expect("referral");
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Filed);
    assert!(triage(app, "police-nairobi").await.is_empty());

    // One step of the routing worker: no rule routes it, so it waits.
    let rules = refnet_routing::rules(&app.ctx).expect("rules");
    let worker = refnet_routing::worker::RoutingWorker::new(app.ctx.clone(), rules);
    let before = Utc::now();
    assert!(worker.step().await.expect("step") > 0);
    assert_eq!(app.count("handoffs").await, 0);
    assert_eq!(
        status(app, &referral.id).await,
        pb::ReferralStatus::NeedsRouting
    );
    let items = triage(app, "police-nairobi").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item.referral_id, referral.id);
    assert_eq!(item.reference_code, referral.reference_code);
    assert_eq!(item.reason, "no rule routed this referral");
    assert_eq!(item.urgency, pb::Urgency::High as i32);
    assert!(!item.escalated);
    // HIGH: route within 4 hours ([fallback] of the default rules).
    let route_by = item.route_by.as_ref().expect("route_by").seconds;
    let four_hours = (before + chrono::Duration::hours(4)).timestamp();
    assert!(
        (four_hours - 5..=four_hours + 60).contains(&route_by),
        "{route_by} vs {four_hours}"
    );
    // Only the filing agency's supervisors (and auditors) see it.
    let officer = routing(app)
        .await
        .list_triage(authed(
            pb::ListTriageRequest::default(),
            &app.officer("police-nairobi"),
        ))
        .await
        .expect_err("officer");
    assert_eq!(officer.code(), Code::PermissionDenied);
    assert!(triage(app, "labour-nairobi").await.is_empty());
    assert!(
        triage(app, "secretariat").await.is_empty(),
        "not yet escalated"
    );

    // Its supervisors are told at once, with the deadline; its officers are not.
    let sup = notifications(app, "police-nairobi", "supervisor", false).await;
    let waiting = of_kind(&sup, "ReferralNeedsRouting");
    assert_eq!(waiting.len(), 1, "{sup:?}");
    assert_eq!(waiting[0].reference_code, referral.reference_code);
    assert_eq!(waiting[0].handoff_id, "");
    assert_eq!(waiting[0].audience, "SUPERVISORS");
    assert_eq!(waiting[0].due_by, item.route_by);
    assert!(!waiting[0].read);
    assert!(
        of_kind(
            &notifications(app, "police-nairobi", "officer", false).await,
            "ReferralNeedsRouting"
        )
        .is_empty()
    );
    assert!(
        timeline(app, "police-nairobi", &referral.id)
            .await
            .iter()
            .any(|e| e.event == "ReferralNeedsRouting" && e.detail == item.reason)
    );

    // Read state is per officer; an id that is not the caller's is refused.
    let mut client = routing(app).await;
    let sup_token = app.token("police-nairobi", &["supervisor"]);
    let marked = client
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                notification_ids: vec![waiting[0].id.clone()],
                up_to: String::new(),
            },
            &sup_token,
        ))
        .await
        .expect("mark")
        .into_inner();
    assert_eq!(marked.marked, 1);
    let again = notifications(app, "police-nairobi", "supervisor", false).await;
    assert!(of_kind(&again, "ReferralNeedsRouting")[0].read);
    assert!(
        of_kind(
            &notifications(app, "police-nairobi", "supervisor", true).await,
            "ReferralNeedsRouting"
        )
        .is_empty()
    );
    let foreign = client
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                notification_ids: vec![waiting[0].id.clone()],
                up_to: String::new(),
            },
            &app.token("labour-nairobi", &["supervisor"]),
        ))
        .await
        .expect_err("not labour's");
    assert_eq!(violations(&foreign), vec!["notification_ids[0]"]);
    let empty = client
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest::default(),
            &sup_token,
        ))
        .await
        .expect_err("nothing named");
    assert_eq!(empty.code(), Code::InvalidArgument);

    // The routing deadline passes: escalated once, to the secretariat too.
    let deadlines = refnet_routing::deadlines::DeadlineWorker::new(app.ctx.clone());
    let late = Utc::now() + chrono::Duration::hours(5);
    assert_eq!(deadlines.triage_step_at(late).await.expect("step"), 1);
    assert_eq!(deadlines.triage_step_at(late).await.expect("step"), 0);
    let escalated = triage(app, "secretariat").await;
    assert_eq!(escalated.len(), 1);
    assert!(escalated[0].escalated);
    assert!(triage(app, "police-nairobi").await[0].escalated);
    let sec = notifications(app, "secretariat", "supervisor", false).await;
    assert_eq!(of_kind(&sec, "TriageEscalated").len(), 1, "{sec:?}");
    assert_eq!(
        of_kind(
            &notifications(app, "police-nairobi", "supervisor", true).await,
            "TriageEscalated"
        )
        .len(),
        1
    );

    // A supervisor routes it by hand: off the list, ROUTED.
    let handoff = client
        .create_handoff(authed(
            pb::CreateHandoffRequest {
                referral: referral.reference_code.clone(),
                to_agency_id: "ngo-shelter-nairobi".into(),
                purpose: "shelter, psychosocial support and legal aid".into(),
                idempotency_key: new_key(),
            },
            &sup_token,
        ))
        .await
        .expect("create handoff")
        .into_inner();
    assert_eq!(handoff.to_agency_id, "ngo-shelter-nairobi");
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Routed);
    assert!(triage(app, "police-nairobi").await.is_empty());
    assert!(triage(app, "secretariat").await.is_empty());
    // Marking everything read leaves nothing unread.
    client
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                notification_ids: vec![],
                up_to: uuid::Uuid::max().to_string(),
            },
            &sup_token,
        ))
        .await
        .expect("mark all");
    assert!(
        notifications(app, "police-nairobi", "supervisor", true)
            .await
            .is_empty()
    );
}

async fn a_rule_set_change_routes_what_waits_in_triage(app: &TestApp) {
    let referral = app
        .file("police-nairobi", unroutable())
        .await
        .referral
        .expect("referral");
    let rules = refnet_routing::rules(&app.ctx).expect("rules");
    let worker = refnet_routing::worker::RoutingWorker::new(app.ctx.clone(), rules);
    while worker.step().await.expect("step") > 0 {}
    assert_eq!(triage(app, "police-nairobi").await.len(), 1);
    // Re-evaluating with the same rules changes nothing.
    assert_eq!(worker.reevaluate_triage().await.expect("again"), 0);

    // A new rule set names an agency for it: the worker of a process started
    // with it routes the waiting referral and takes it off the list.
    let text: String = refnet_routing::rules::DEFAULT_RULES
        .lines()
        .map(|l| {
            if l.starts_with("version = ") {
                "version = \"test-triage-1\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + r#"

[[rule]]
id = "sexual-exploitation-ngo"
description = "Sexual exploitation goes to an NGO service provider."
purposes = ["SEXUAL_EXPLOITATION"]
to = "NGO"
purpose = "shelter, psychosocial support and legal aid"
"#;
    let changed = refnet_routing::rules::RuleSet::parse(&text, "test rules").expect("rules");
    let worker = refnet_routing::worker::RoutingWorker::new(app.ctx.clone(), changed.into());
    assert_eq!(worker.reevaluate_triage().await.expect("re-evaluate"), 1);
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Routed);
    assert!(triage(app, "police-nairobi").await.is_empty());
    let ngo = inbox(app, "ngo-shelter-nairobi").await;
    assert_eq!(ngo.len(), 1);
    assert_eq!(
        (ngo[0].rule_id.as_str(), ngo[0].rule_set_version.as_str()),
        ("sexual-exploitation-ngo", "test-triage-1")
    );
}

/// An adult in Nairobi whose only need is medical: the Health rule, whose
/// second choice is an NGO.
fn medical_only() -> pb::ReferralDraft {
    let mut draft = unroutable();
    draft.needs = vec![pb::Need::Medical as i32];
    draft
}

async fn declines_try_the_second_choice_then_triage_never_closed(app: &TestApp) {
    let referral = app
        .file("police-nairobi", medical_only())
        .await
        .referral
        .expect("referral");
    await_handoffs(app, &referral.id, 1).await;
    let health = inbox(app, "health-nairobi").await.remove(0);
    assert_eq!(health.rule_id, "medical-health");
    let declined = decline(
        app,
        "health-nairobi",
        &health,
        "No bed for Canarygiven Zqx this week",
    )
    .await;
    assert_eq!(declined.state, pb::HandoffState::Declined as i32);

    // The rule's second choice, an NGO, gets the referral at once.
    await_handoffs(app, &referral.id, 2).await;
    let ngo = inbox(app, "ngo-shelter-nairobi").await.remove(0);
    assert_eq!(ngo.rule_id, "medical-health");
    assert_eq!(ngo.purpose, "medical treatment");
    assert_eq!(ngo.from_agency_id, "police-nairobi");
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Routed);
    assert!(triage(app, "police-nairobi").await.is_empty());

    // The NGO declines too: no third choice, so the referral waits for the
    // filing agency, and everyone there is told. It is not CLOSED.
    decline(app, "ngo-shelter-nairobi", &ngo, "Outside what we offer").await;
    assert_eq!(
        status(app, &referral.id).await,
        pb::ReferralStatus::NeedsRouting
    );
    let items = triage(app, "police-nairobi").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].reason, "every handoff was declined or withdrawn");
    let mut ended = items[0].ended_handoff_ids.clone();
    ended.sort();
    let mut expected = vec![health.id.clone(), ngo.id.clone()];
    expected.sort();
    assert_eq!(ended, expected);
    let officer = notifications(app, "police-nairobi", "officer", false).await;
    assert_eq!(
        of_kind(&officer, "ReferralNeedsRouting").len(),
        1,
        "{officer:?}"
    );
    assert_eq!(of_kind(&officer, "HandoffDeclined").len(), 2);
    // An officer switches a kind off for themselves; colleagues still see it.
    let muted = routing(app)
        .await
        .set_notification_mutes(authed(
            pb::SetNotificationMutesRequest {
                kinds: vec!["HandoffDeclined".into()],
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("mute")
        .into_inner();
    assert_eq!(muted.kinds, vec!["HandoffDeclined"]);
    let after = notifications(app, "police-nairobi", "officer", false).await;
    assert!(of_kind(&after, "HandoffDeclined").is_empty(), "{after:?}");
    assert_eq!(of_kind(&after, "ReferralNeedsRouting").len(), 1);
    let colleague = app
        .signer()
        .mint(&refnet_core::devkeys::TokenRequest {
            officer_id: "officer-police-nairobi-2".into(),
            agency_id: "police-nairobi".into(),
            agency_kind: pb::AgencyKind::Police,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("mint");
    let colleague = routing(app)
        .await
        .list_notifications(authed(pb::ListNotificationsRequest::default(), &colleague))
        .await
        .expect("colleague")
        .into_inner()
        .notifications;
    assert_eq!(of_kind(&colleague, "HandoffDeclined").len(), 2);
    let included = routing(app)
        .await
        .list_notifications(authed(
            pb::ListNotificationsRequest {
                include_muted: true,
                ..Default::default()
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("list")
        .into_inner()
        .notifications;
    assert_eq!(of_kind(&included, "HandoffDeclined").len(), 2);
    let unknown = routing(app)
        .await
        .set_notification_mutes(authed(
            pb::SetNotificationMutesRequest {
                kinds: vec!["HandoffDeclined".into(), "Everything".into()],
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect_err("unknown kind");
    assert_eq!(violations(&unknown), vec!["kinds[1]"]);
    // The reasons are on the handoffs (GetHandoff), redacted per viewer.
    let reason = routing(app)
        .await
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: health.id.clone(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("get")
        .into_inner()
        .decline_reason;
    assert!(reason.starts_with("No bed for"), "{reason}");

    // Only a supervisor of the filing agency closes it, with a reason from the list.
    let mut client = routing(app).await;
    let close = |token: String, reason: pb::CloseReason| {
        let request = pb::CloseReferralRequest {
            referral: referral.reference_code.clone(),
            reason: reason as i32,
        };
        authed(request, &token)
    };
    let officer = client
        .close_referral(close(
            app.officer("police-nairobi"),
            pb::CloseReason::AssistedOutside,
        ))
        .await
        .expect_err("officer");
    assert_eq!(officer.code(), Code::PermissionDenied);
    let other = client
        .close_referral(close(
            app.token("health-nairobi", &["supervisor"]),
            pb::CloseReason::AssistedOutside,
        ))
        .await
        .expect_err("not the filer");
    assert_eq!(other.code(), Code::PermissionDenied);
    let unspecified = client
        .close_referral(close(
            app.token("police-nairobi", &["supervisor"]),
            pb::CloseReason::Unspecified,
        ))
        .await
        .expect_err("no reason");
    assert_eq!(violations(&unspecified), vec!["reason"]);
    let closed = client
        .close_referral(close(
            app.token("police-nairobi", &["supervisor"]),
            pb::CloseReason::AssistedOutside,
        ))
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.status, pb::ReferralStatus::Closed as i32);
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Closed);
    assert!(triage(app, "police-nairobi").await.is_empty());
    let last = timeline(app, "police-nairobi", &referral.id)
        .await
        .pop()
        .expect("events");
    assert_eq!(
        (last.event.as_str(), last.detail.as_str()),
        ("ReferralClosed", "assisted outside")
    );
}

async fn a_sender_withdraws_after_acceptance_and_lists_what_it_sent(app: &TestApp) {
    let referral = app
        .file("police-nairobi", foreign_child_in_forced_labour())
        .await
        .referral
        .expect("referral");
    await_handoffs(app, &referral.id, 4).await;
    let mut client = routing(app).await;
    let ngo_token = app.officer("ngo-shelter-nairobi");
    let police = app.officer("police-nairobi");
    let h = inbox(app, "ngo-shelter-nairobi").await.remove(0);
    let h = client
        .acknowledge_handoff(authed(transition(&h, ""), &ngo_token))
        .await
        .expect("ack")
        .into_inner();
    let h = client
        .accept_handoff(authed(transition(&h, ""), &ngo_token))
        .await
        .expect("accept")
        .into_inner();
    let post = |body: &str| pb::PostMessageRequest {
        referral_id: referral.id.clone(),
        idempotency_key: new_key(),
        body: body.into(),
    };
    client
        .post_message(authed(post("NGO intake note"), &ngo_token))
        .await
        .expect("ngo posts");
    client
        .post_message(authed(post("Police note before"), &police))
        .await
        .expect("police posts");

    // After acceptance a withdrawal needs a reason.
    let bare = client
        .withdraw_handoff(authed(transition(&h, ""), &police))
        .await
        .expect_err("no reason");
    assert_eq!(violations(&bare), vec!["reason"]);
    let withdrawn = client
        .withdraw_handoff(authed(
            transition(&h, "The family took Canarygiven Zqx home"),
            &police,
        ))
        .await
        .expect("withdraw")
        .into_inner();
    assert_eq!(withdrawn.state, pb::HandoffState::Withdrawn as i32);
    let told = notifications(app, "ngo-shelter-nairobi", "officer", false).await;
    let told = of_kind(&told, "HandoffWithdrawn");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].detail, "withdrawn after acceptance");
    // The withdrawal reason is on the handoff and the timeline, redacted for
    // each viewer: Labour (a party without consent to identity) reads no name.
    let seen = routing(app)
        .await
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: h.id.clone(),
            },
            &ngo_token,
        ))
        .await
        .expect("ngo reads its handoff")
        .into_inner();
    assert!(
        seen.decline_reason.starts_with("The family took"),
        "{}",
        seen.decline_reason
    );
    let labour_sees = timeline(app, "labour-nairobi", &referral.id)
        .await
        .into_iter()
        .find(|e| e.event == "HandoffWithdrawn")
        .expect("withdrawal on labour's timeline");
    assert!(
        labour_sees.reason.starts_with("The family took")
            && !labour_sees.reason.contains("Canarygiven"),
        "{}",
        labour_sees.reason
    );

    // New content no longer reaches the NGO; it keeps its own messages.
    client
        .post_message(authed(post("Police note after"), &police))
        .await
        .expect("police posts again");
    let bodies: Vec<String> = client
        .list_messages(authed(
            pb::ListMessagesRequest {
                referral: referral.id.clone(),
                ..Default::default()
            },
            &ngo_token,
        ))
        .await
        .expect("ngo lists")
        .into_inner()
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, vec!["NGO intake note", "Police note before"]);
    let refused = client
        .post_message(authed(post("NGO again"), &ngo_token))
        .await
        .expect_err("former recipient");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let last = timeline(app, "ngo-shelter-nairobi", &referral.id)
        .await
        .pop()
        .expect("events");
    assert_eq!(last.event, "HandoffWithdrawn");
    assert!(
        timeline(app, "police-nairobi", &referral.id)
            .await
            .last()
            .is_some_and(|e| e.event == "MessagePosted")
    );

    // The sender's list: open handoffs by their next deadline first, the
    // withdrawn one last; paging gives the same order.
    let sent = |page_size: i32, page_token: String| {
        authed(
            pb::ListSentHandoffsRequest {
                states: vec![],
                page_size,
                page_token,
            },
            &police,
        )
    };
    let all = client
        .list_sent_handoffs(sent(50, String::new()))
        .await
        .expect("sent")
        .into_inner()
        .handoffs;
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].id, h.id);
    let due: Vec<i64> = all[..3]
        .iter()
        .map(|h| h.acknowledge_by.as_ref().expect("deadline").seconds)
        .collect();
    assert!(due.windows(2).all(|w| w[0] <= w[1]), "{due:?}");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sent_handoffs(sent(1, token))
            .await
            .expect("page")
            .into_inner();
        paged.extend(page.handoffs.into_iter().map(|h| h.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.iter().map(|h| h.id.clone()).collect::<Vec<_>>());
    // Receivers have sent nothing.
    let none = client
        .list_sent_handoffs(authed(
            pb::ListSentHandoffsRequest::default(),
            &app.officer("labour-nairobi"),
        ))
        .await
        .expect("labour")
        .into_inner();
    assert!(none.handoffs.is_empty());
    // Three open handoffs remain: the referral stays ROUTED.
    assert_eq!(status(app, &referral.id).await, pb::ReferralStatus::Routed);
}

fn protection_request(referral: &str) -> pb::SubmitProtectionRequestRequest {
    pb::SubmitProtectionRequestRequest {
        referral_id: referral.into(),
        idempotency_key: new_key(),
        grounds: "Key witness against Canarysuspect Zqx".into(),
        threat_assessment: "Calls from the network".into(),
        measures: vec![pb::ProtectionMeasure::Relocation as i32],
        urgency: pb::Urgency::High as i32,
        threat_sources: "Canarysuspect Zqx".into(),
    }
}

async fn next_event(
    stream: &mut tonic::Streaming<pb::ProtectionRequestEvent>,
) -> pb::ProtectionRequestEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an item within 10 s")
        .expect("stream ok")
        .expect("stream open")
}

async fn protection_requests_have_deadlines_a_stream_and_one_open_per_subject(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = WitnessProtectionServiceClient::new(app.channel().await);
    let police = app.officer("police-nairobi");
    let wpa = app.officer("wpa");
    let mut stream = client
        .watch_protection_requests(authed(pb::WatchProtectionRequestsRequest::default(), &wpa))
        .await
        .expect("watch")
        .into_inner();

    let submitted_at = Utc::now();
    let first = client
        .submit_protection_request(authed(protection_request(&referral.id), &police))
        .await
        .expect("submit")
        .into_inner();
    // HIGH: assess within 12 h, decide within 72 h (deadlines.toml).
    let assess_by = first.assess_by.as_ref().expect("assess_by").seconds;
    let twelve = (submitted_at + chrono::Duration::hours(12)).timestamp();
    assert!((twelve - 5..=twelve + 60).contains(&assess_by));
    assert!(first.decide_by.is_some() && !first.escalated);

    // A second open request for the same person is refused, naming the first.
    let second = client
        .submit_protection_request(authed(protection_request(&referral.id), &police))
        .await
        .expect_err("one open request per subject");
    assert_eq!(second.code(), Code::AlreadyExists, "{second:?}");
    assert!(second.message().contains(&first.id), "{}", second.message());

    // The WPA's stream carries the request.
    let item = next_event(&mut stream).await;
    assert_eq!(item.event, "ProtectionRequested");
    assert_eq!(item.request.as_ref().expect("request").id, first.id);
    let after_first = item.cursor.clone();

    // The assessment deadline passes: escalated once.
    let deadlines = refnet_protection::deadlines::DeadlineWorker::new(app.ctx.clone());
    let late = Utc::now() + chrono::Duration::hours(13);
    assert_eq!(deadlines.step_at(late).await.expect("step"), 1);
    assert_eq!(deadlines.step_at(late).await.expect("step"), 0);
    let item = next_event(&mut stream).await;
    assert_eq!(item.event, "ProtectionEscalated");
    assert_eq!(item.detail, "assessment deadline passed");
    assert!(item.request.as_ref().expect("request").escalated);
    let sup = notifications(app, "wpa", "supervisor", false).await;
    let sup = of_kind(&sup, "ProtectionEscalated");
    assert_eq!(sup.len(), 1);
    assert!(sup[0].detail.starts_with("assessment deadline passed"));
    assert!(
        of_kind(
            &notifications(app, "wpa", "officer", false).await,
            "ProtectionEscalated"
        )
        .is_empty(),
        "WPA supervisors, not its officers"
    );
    assert_eq!(
        of_kind(
            &notifications(app, "police-nairobi", "officer", false).await,
            "ProtectionEscalated"
        )
        .len(),
        1,
        "the requester is told"
    );
    // Nothing about the request reaches the referral's timeline.
    assert!(
        timeline(app, "police-nairobi", &referral.id)
            .await
            .iter()
            .all(|e| !e.event.starts_with("Protection"))
    );
    // Then the decision deadline.
    let later = Utc::now() + chrono::Duration::hours(73);
    assert_eq!(deadlines.step_at(later).await.expect("step"), 1);
    assert_eq!(
        next_event(&mut stream).await.detail,
        "decision deadline passed"
    );

    // Resuming from a cursor repeats nothing and misses nothing.
    let mut resumed = client
        .watch_protection_requests(authed(
            pb::WatchProtectionRequestsRequest {
                cursor: after_first,
                from_beginning: false,
            },
            &wpa,
        ))
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        next_event(&mut resumed).await.detail,
        "assessment deadline passed"
    );
    // Another agency's cursor is refused.
    let stolen = client
        .watch_protection_requests(authed(
            pb::WatchProtectionRequestsRequest {
                cursor: item.cursor.clone(),
                from_beginning: false,
            },
            &police,
        ))
        .await
        .expect_err("not police's cursor");
    assert_eq!(violations(&stolen), vec!["cursor"]);

    // Once the first is withdrawn, a new request may be made.
    let current = client
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: first.id.clone(),
            },
            &police,
        ))
        .await
        .expect("get")
        .into_inner();
    client
        .withdraw_protection_request(authed(
            pb::ProtectionStepRequest {
                id: first.id.clone(),
                expected_version: current.version,
                reason: "Filed in error".into(),
                ..Default::default()
            },
            &police,
        ))
        .await
        .expect("withdraw");
    client
        .submit_protection_request(authed(protection_request(&referral.id), &police))
        .await
        .expect("a new request after the first was withdrawn");
}
