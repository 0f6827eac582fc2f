//! Handoff decisions: declines with a reason (sealed, redacted per viewer),
//! Trust Fund checklists whose completeness is tracked and gates completion,
//! decide-by deadlines, and the notifications escalations and declines send.
//! Across processes: an event written by one replica reaches a stream held by
//! another through PostgreSQL LISTEN/NOTIFY, with polling out of the way.

use refnet_api::v1::{self as pb, routing_service_client::RoutingServiceClient};
use tonic::Code;

use crate::{
    common::{Backend, TestApp, authed, canary_draft, violations},
    on_both,
    routing::{await_handoffs, foreign_child_in_forced_labour, inbox},
};

on_both!(
    decline_needs_a_reason_and_is_redacted_per_viewer,
    trust_fund_checklist_is_tracked_and_gates_completion,
    decide_deadline_escalates_and_notifies_supervisors_and_sender,
);

async fn routing(app: &TestApp) -> RoutingServiceClient<tonic::transport::Channel> {
    RoutingServiceClient::new(app.channel().await)
}

fn transition(h: &pb::Handoff, reason: &str) -> pb::HandoffTransitionRequest {
    pb::HandoffTransitionRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        reason: reason.into(),
    }
}

async fn notifications(app: &TestApp, agency: &str, role: &str) -> Vec<pb::Notification> {
    routing(app)
        .await
        .list_notifications(authed(
            pb::ListNotificationsRequest::default(),
            &app.token(agency, &[role]),
        ))
        .await
        .expect("notifications")
        .into_inner()
        .notifications
}

async fn decline_needs_a_reason_and_is_redacted_per_viewer(app: &TestApp) {
    let referral = app
        .file("police-nairobi", foreign_child_in_forced_labour())
        .await
        .referral
        .expect("referral");
    await_handoffs(app, &referral.id, 4).await;
    let mut client = routing(app).await;
    let labour = app.officer("labour-nairobi");
    let h = inbox(app, "labour-nairobi").await.remove(0);
    let reason = "Canarygiven Zqx is outside our area; Canarywhere market stall 9 is Kiambu's";

    // Not before acknowledging; never without a reason.
    let early = client
        .decline_handoff(authed(transition(&h, reason), &labour))
        .await
        .expect_err("decline before acknowledging");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert!(early.message().contains("DECLINED"), "{}", early.message());
    let h = client
        .acknowledge_handoff(authed(transition(&h, ""), &labour))
        .await
        .expect("acknowledge")
        .into_inner();
    let missing = client
        .decline_handoff(authed(transition(&h, "  "), &labour))
        .await
        .expect_err("no reason");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(violations(&missing), vec!["reason"]);
    let control = client
        .decline_handoff(authed(transition(&h, "bad\u{0}reason"), &labour))
        .await
        .expect_err("control character");
    assert_eq!(violations(&control), vec!["reason"]);
    assert_eq!(
        app.count("events WHERE kind = 'HandoffDeclined'").await,
        0,
        "refused declines write nothing"
    );

    let declined = client
        .decline_handoff(authed(transition(&h, reason), &labour))
        .await
        .expect("decline")
        .into_inner();
    assert_eq!(declined.state, pb::HandoffState::Declined as i32);
    // LABOUR has no consent for this child: its own reason comes back with the
    // subject's identifiers replaced.
    assert!(
        !declined.decline_reason.contains("Canarygiven")
            && !declined.decline_reason.contains("Canarywhere")
            && declined.decline_reason.contains("outside our area"),
        "{}",
        declined.decline_reason
    );
    let again = client
        .accept_handoff(authed(transition(&declined, ""), &labour))
        .await
        .expect_err("declined is final");
    assert_eq!(again.code(), Code::FailedPrecondition);

    // The filing police desk (sees identity and location) reads it whole.
    let seen = client
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: h.id.clone(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("sender reads")
        .into_inner();
    assert_eq!(seen.decline_reason, reason);
    // Another party sees the decline on the timeline, reason redacted for it.
    let timeline = client
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.id.clone(),
                ..Default::default()
            },
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("timeline")
        .into_inner();
    let event = timeline
        .events
        .iter()
        .find(|e| e.event == "HandoffDeclined")
        .expect("declined on the timeline");
    assert_eq!(event.handoff_id, h.id);
    assert!(
        event.reason.contains("Canarygiven Zqx") && !event.reason.contains("Canarywhere"),
        "the NGO (consented) sees the name, never the location: {}",
        event.reason
    );
    // A non-party still sees nothing.
    let outsider = client
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: h.id.clone(),
            },
            &app.officer("police-mombasa"),
        ))
        .await
        .expect_err("non-party");
    assert_eq!(outsider.code(), Code::NotFound);

    // The sender is notified; the reason never rides in a notification.
    let notes = notifications(app, "police-nairobi", "officer").await;
    let note = notes
        .iter()
        .find(|n| n.event == "HandoffDeclined")
        .expect("sender notified");
    assert_eq!(note.handoff_id, h.id);
    assert_eq!(note.reference_code, referral.reference_code);
    assert!(
        notifications(app, "labour-nairobi", "supervisor")
            .await
            .iter()
            .all(|n| n.event != "HandoffDeclined")
    );

    // At rest, the reason is sealed.
    assert_eq!(
        app.count("handoffs WHERE decline_reason_ct IS NOT NULL")
            .await,
        1
    );
    use refnet_routing::entities::handoff;
    use sea_orm::EntityTrait;
    let row = handoff::Entity::find_by_id(uuid::Uuid::parse_str(&h.id).expect("id"))
        .one(&app.db().await)
        .await
        .expect("read")
        .expect("row");
    let sealed = row.decline_reason_ct.expect("sealed reason");
    assert!(
        !sealed
            .windows(b"Canarygiven".len())
            .any(|w| w == b"Canarygiven"),
        "the reason is not stored in plain text"
    );
}

/// A referral whose needs send it to the Trust Fund (return home) and an NGO.
fn assistance_draft() -> pb::ReferralDraft {
    let mut draft = canary_draft();
    draft.needs = vec![pb::Need::Return as i32, pb::Need::Shelter as i32];
    draft.county = "Nairobi".into();
    draft
}

async fn trust_fund_checklist_is_tracked_and_gates_completion(app: &TestApp) {
    let referral = app
        .file("police-nairobi", assistance_draft())
        .await
        .referral
        .expect("referral");
    let tf = loop {
        if let Some(h) = inbox(app, "trust-fund")
            .await
            .into_iter()
            .find(|h| h.referral_id == referral.id)
        {
            break h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(tf.rule_id, "assistance-trust-fund");
    assert_eq!(tf.checklist.len(), 4, "{:?}", tf.checklist);
    assert!(!tf.checklist_complete);
    assert!(tf.checklist.iter().all(|i| !i.provided));
    assert_eq!(tf.from_agency_id, "police-nairobi");
    assert!(tf.decide_by.is_some());

    let mut client = routing(app).await;
    let trust = app.officer("trust-fund");
    let mark = |h: &pb::Handoff, item: &str, provided: bool| pb::UpdateChecklistRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        item: item.into(),
        provided,
    };
    let unknown = client
        .update_checklist(authed(mark(&tf, "a photo", true), &trust))
        .await
        .expect_err("not on the list");
    assert_eq!(violations(&unknown), vec!["item"]);
    let first = tf.checklist[0].item.clone();
    let tf = client
        .update_checklist(authed(mark(&tf, &first, true), &trust))
        .await
        .expect("mark")
        .into_inner();
    assert!(tf.checklist[0].provided);
    assert_eq!(tf.checklist[0].updated_by_agency_id, "trust-fund");
    assert!(tf.checklist[0].updated_at.is_some());
    assert!(!tf.checklist_complete);
    let stale = client
        .update_checklist(authed(
            pb::UpdateChecklistRequest {
                expected_version: tf.version - 1,
                ..mark(&tf, &first, false)
            },
            &trust,
        ))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    let outsider = client
        .update_checklist(authed(
            mark(&tf, &first, true),
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect_err("not sender or receiver");
    assert_eq!(outsider.code(), Code::NotFound);

    // Acknowledged and accepted, it cannot be completed with documents missing.
    let tf = client
        .acknowledge_handoff(authed(transition(&tf, ""), &trust))
        .await
        .expect("acknowledge")
        .into_inner();
    let tf = client
        .accept_handoff(authed(transition(&tf, ""), &trust))
        .await
        .expect("accept")
        .into_inner();
    let incomplete = client
        .complete_handoff(authed(transition(&tf, ""), &trust))
        .await
        .expect_err("documents missing");
    assert_eq!(incomplete.code(), Code::FailedPrecondition);
    assert!(
        incomplete.message().contains("1 of 4"),
        "{}",
        incomplete.message()
    );

    // The applying agency supplies the rest.
    let police = app.officer("police-nairobi");
    let mut tf = tf;
    for item in tf.checklist.clone().iter().skip(1) {
        tf = client
            .update_checklist(authed(mark(&tf, &item.item, true), &police))
            .await
            .expect("sender marks")
            .into_inner();
    }
    assert!(tf.checklist_complete);
    let done = client
        .complete_handoff(authed(transition(&tf, ""), &trust))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(done.state, pb::HandoffState::Completed as i32);
    let closed = client
        .update_checklist(authed(mark(&done, &first, false), &trust))
        .await
        .expect_err("closed");
    assert_eq!(closed.code(), Code::FailedPrecondition);

    let timeline = client
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.id.clone(),
                ..Default::default()
            },
            &police,
        ))
        .await
        .expect("timeline")
        .into_inner();
    let progress: Vec<&str> = timeline
        .events
        .iter()
        .filter(|e| e.event == "HandoffChecklistUpdated")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        progress,
        [
            "1/4 provided",
            "2/4 provided",
            "3/4 provided",
            "4/4 provided"
        ]
    );
}

async fn decide_deadline_escalates_and_notifies_supervisors_and_sender(app: &TestApp) {
    // HIGH urgency: acknowledge within 4 hours, decide within 24.
    let mut draft = foreign_child_in_forced_labour();
    draft.urgency = pb::Urgency::High as i32;
    let referral = app
        .file("police-nairobi", draft)
        .await
        .referral
        .expect("referral");
    await_handoffs(app, &referral.id, 4).await;
    let mut client = routing(app).await;
    let ngo = inbox(app, "ngo-shelter-nairobi").await.remove(0);
    let ngo = client
        .acknowledge_handoff(authed(
            transition(&ngo, ""),
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    let deadlines = refnet_routing::deadlines::DeadlineWorker::new(app.ctx.clone());
    let now = chrono::Utc::now();
    // At 5 h the three unacknowledged handoffs are late; the NGO is not.
    assert_eq!(
        deadlines
            .step_at(now + chrono::Duration::hours(5))
            .await
            .expect("step"),
        3
    );
    // The receiving agency's supervisors are told, its officers are not.
    let labour_sup = notifications(app, "labour-nairobi", "supervisor").await;
    assert_eq!(labour_sup.len(), 1, "{labour_sup:?}");
    assert_eq!(labour_sup[0].event, "HandoffEscalated");
    assert_eq!(labour_sup[0].detail, "acknowledge deadline passed");
    assert_eq!(labour_sup[0].audience, "SUPERVISORS");
    assert!(
        notifications(app, "labour-nairobi", "officer")
            .await
            .is_empty()
    );
    // The sender hears of each.
    assert_eq!(
        notifications(app, "police-nairobi", "officer").await.len(),
        3
    );

    // At 23 h the acknowledged NGO handoff is still in time; at 25 h it is late to decide.
    assert_eq!(
        deadlines
            .step_at(now + chrono::Duration::hours(23))
            .await
            .expect("step"),
        0
    );
    assert_eq!(
        deadlines
            .step_at(now + chrono::Duration::hours(25))
            .await
            .expect("step"),
        1
    );
    let late = client
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: ngo.id.clone(),
            },
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(late.state, pb::HandoffState::Escalated as i32);
    let ngo_sup = notifications(app, "ngo-shelter-nairobi", "supervisor").await;
    assert_eq!(ngo_sup.len(), 1);
    assert_eq!(ngo_sup[0].detail, "decide deadline passed");
    // Already acknowledged: it can be decided, not acknowledged again.
    let twice = client
        .acknowledge_handoff(authed(
            transition(&late, ""),
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect_err("acknowledged before");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    client
        .accept_handoff(authed(
            transition(&late, ""),
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("an escalated handoff can still be accepted");
    let timeline = client
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.id.clone(),
                ..Default::default()
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("timeline")
        .into_inner();
    let details: Vec<&str> = timeline
        .events
        .iter()
        .filter(|e| e.event == "HandoffEscalated")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(details.len(), 4);
    assert_eq!(
        details
            .iter()
            .filter(|d| **d == "decide deadline passed")
            .count(),
        1
    );
    // A second deadline worker (another replica) running the same step finds nothing new.
    let other = refnet_routing::deadlines::DeadlineWorker::new(app.ctx.clone());
    assert_eq!(
        other
            .step_at(now + chrono::Duration::hours(30))
            .await
            .expect("step"),
        0
    );
    assert_eq!(
        app.count("notifications WHERE kind = 'HandoffEscalated'")
            .await,
        // 3 receivers' supervisors + 3 to the sender, then 1 + 1 for the NGO's decide miss.
        8
    );
}

/// Two replicas on one PostgreSQL database, each polling only every ten
/// minutes: a referral filed through one (whose worker routes it) reaches an
/// inbox stream held by the other, so the wake-up came by LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_another_replica_is_woken_by_notify() {
    let never_poll = |c: &mut refnet_core::config::Config| c.event_poll_ms = 600_000;
    let Some(first) = TestApp::spawn_configured(Backend::Postgres, never_poll).await else {
        return;
    };
    let master = std::fs::read_to_string(first.data_dir.path().join("master.key")).expect("key");
    let second = TestApp::spawn_with(Some(first.database_url.clone()), move |c| {
        never_poll(c);
        c.master_key = Some(master.into());
        c.routing_worker = false;
    })
    .await;
    let mut stream = routing(&second)
        .await
        .watch_inbox(authed(
            pb::WatchInboxRequest::default(),
            &second.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("watch on the second replica")
        .into_inner();
    // Let the stream reach its wait before the event exists.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let referral = first
        .file("police-nairobi", foreign_child_in_forced_labour())
        .await
        .referral
        .expect("referral");
    let item = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .expect("the other replica's stream was woken (no poll for 10 minutes)")
        .expect("stream ok")
        .expect("an item");
    let handoff = item.handoff.expect("handoff");
    assert_eq!(handoff.referral_id, referral.id);
    assert_eq!(item.event, "HandoffCreated");
    // Open streams hold a graceful shutdown; the client goes away first.
    drop(stream);
    second.stop().await;
    first.stop().await;
}
