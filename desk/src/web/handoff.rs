//! A handoff's page: where it stands, its deadlines and checklist, and the
//! actions on it (acknowledge, accept, decline with a reason, complete,
//! withdraw with a reason; mark a checklist item). Every action is offered;
//! the server decides which this officer may take in this state, and its
//! refusal is shown as it came.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use maud::html;
use refnet_api::v1 as pb;

use super::{
    Web,
    pages::{
        error_page, failed, field, lang, page, posted, signed_in, then_back, to_sign_in, words,
    },
    text::t,
};
use crate::output;

type WebState = State<Arc<Web>>;

/// The actions on a handoff: (path segment, catalogue key, takes a reason).
const ACTIONS: [(&str, &str, bool); 5] = [
    ("acknowledge", "handoff.acknowledge", false),
    ("accept", "handoff.accept", false),
    ("decline", "handoff.decline", true),
    ("complete", "handoff.complete", false),
    ("withdraw", "handoff.withdraw", true),
];

/// `/handoffs/{id}`.
pub(crate) async fn show(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = lang(&headers);
    let Some((session, desk)) = signed_in(&web, &headers) else {
        return to_sign_in();
    };
    let h = match desk
        .routing()
        .get_handoff(pb::GetHandoffRequest { handoff_id: id })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return failed(lang, &session, &status),
    };
    let state = words(&output::enum_name("refnet.v1.HandoffState", h.state));
    let version = h.version.to_string();
    let body = html! {
        dl.record {
            dt { (t(lang, "inbox.referral")) }
            dd { a href=(format!("/referrals/{}", h.referral_id)) { (h.reference_code) } }
            dt { (t(lang, "inbox.state")) } dd.state { (state) }
            dt { (t(lang, "inbox.from")) } dd { (h.from_agency_id) }
            dt { (t(lang, "handoff.to")) } dd { (h.to_agency_id) }
            dt { (t(lang, "inbox.purpose")) } dd { (h.purpose) }
            dt { (t(lang, "handoff.acknowledge_by")) } dd { (output::time(h.acknowledge_by.as_ref())) }
            dt { (t(lang, "handoff.decide_by")) } dd { (output::time(h.decide_by.as_ref())) }
            @if !h.decline_reason.is_empty() {
                dt { (t(lang, "handoff.reason")) } dd { (h.decline_reason) }
            }
        }
        @if !h.redactions.is_empty() {
            p { span.withheld { (t(lang, "withheld")) } " "
                @for r in &h.redactions { code { (r.path) } " " } }
        }
        @if !h.checklist.is_empty() {
            h2 { (t(lang, "handoff.checklist")) }
            table.checklist {
                tbody {
                    @for item in &h.checklist {
                        tr {
                            td { (item.item) }
                            td { @if item.provided { (t(lang, "handoff.provided")) } }
                            td {
                                form method="post" action=(format!("/handoffs/{}/checklist", h.id)) {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="expected_version" value=(version);
                                    input type="hidden" name="item" value=(item.item);
                                    input type="hidden" name="provided" value=(if item.provided { "false" } else { "true" });
                                    button type="submit" {
                                        (t(lang, if item.provided { "handoff.unmark" } else { "handoff.mark" }))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t(lang, "handoff.actions")) }
        div.actions {
            @for (action, key, reason) in ACTIONS {
                form method="post" action=(format!("/handoffs/{}/{action}", h.id)) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="expected_version" value=(version);
                    @if reason {
                        label.field {
                            span { (t(lang, "handoff.reason")) }
                            textarea name="reason" rows="2" required {}
                        }
                    }
                    button type="submit" name="action" value=(action) { (t(lang, key)) }
                }
            }
        }
    };
    page(
        lang,
        &format!("{} {}", t(lang, "handoff.title"), h.reference_code),
        Some(&session),
        body,
    )
    .into_response()
}

/// `POST /handoffs/{id}/{action}`: the transition, then back to the handoff.
pub(crate) async fn act(
    State(web): WebState,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let lang = lang(&headers);
    let (session, desk) = match posted(&web, &headers, &pairs) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let request = pb::HandoffTransitionRequest {
        handoff_id: id.clone(),
        expected_version: field(&pairs, "expected_version")
            .parse()
            .unwrap_or_default(),
        reason: field(&pairs, "reason").to_owned(),
    };
    let mut routing = desk.routing();
    let answered = match action.as_str() {
        "acknowledge" => routing.acknowledge_handoff(request).await,
        "accept" => routing.accept_handoff(request).await,
        "decline" => routing.decline_handoff(request).await,
        "complete" => routing.complete_handoff(request).await,
        "withdraw" => routing.withdraw_handoff(request).await,
        _ => {
            return error_page(
                lang,
                Some(&session),
                StatusCode::NOT_FOUND,
                "no such action",
            );
        }
    };
    then_back(lang, &session, answered, &format!("/handoffs/{id}"))
}

/// `POST /handoffs/{id}/checklist`: marks an item provided (or not).
pub(crate) async fn checklist(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let lang = lang(&headers);
    let (session, desk) = match posted(&web, &headers, &pairs) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let answered = desk
        .routing()
        .update_checklist(pb::UpdateChecklistRequest {
            handoff_id: id.clone(),
            expected_version: field(&pairs, "expected_version")
                .parse()
                .unwrap_or_default(),
            item: field(&pairs, "item").to_owned(),
            provided: field(&pairs, "provided") == "true",
        })
        .await;
    then_back(lang, &session, answered, &format!("/handoffs/{id}"))
}
