//! The referral's pages: the referral as the server shows it to this
//! officer (what it withheld and why), its timeline and its thread (with
//! posting), and the filing form.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use refnet_api::v1 as pb;

use super::{
    Web,
    form::{self, Errors, Values},
    pages::{
        error_page, failed, field, lang, page, posted, signed_in, then_back, to_sign_in, words,
    },
    session::Session,
    text::{Lang, t},
};
use crate::output;

type WebState = State<Arc<Web>>;

/// The "withheld" list of a reply: path, class and reason of each redaction.
fn withheld(lang: Lang, redactions: &[pb::Redaction]) -> Markup {
    html! {
        @if !redactions.is_empty() {
            table.withheld {
                thead { tr {
                    th { (t(lang, "referral.withheld.path")) }
                    th { (t(lang, "referral.withheld.class")) }
                    th { (t(lang, "referral.withheld.reason")) }
                } }
                tbody {
                    @for r in redactions {
                        tr {
                            td { span.withheld { (t(lang, "withheld")) } " " code { (r.path) } }
                            td { (words(&output::enum_name("refnet.v1.Sensitivity", r.class))) }
                            td { (words(&output::enum_name("refnet.v1.RedactionReason", r.reason))) }
                        }
                    }
                }
            }
        }
    }
}

/// The timeline and the thread of `referral` (its id), as this officer may see them.
async fn activity(lang: Lang, session: &Session, desk: &crate::Desk, referral: &str) -> Markup {
    let timeline = desk
        .routing()
        .get_timeline(pb::GetTimelineRequest {
            referral: referral.to_owned(),
            ..Default::default()
        })
        .await;
    let thread = desk
        .routing()
        .list_messages(pb::ListMessagesRequest {
            referral: referral.to_owned(),
            ..Default::default()
        })
        .await;
    let key = format!("web-{}", uuid::Uuid::new_v4().simple());
    html! {
        h2 id="timeline" { (t(lang, "referral.timeline")) }
        @match &timeline {
            Err(status) => { p.error { (output::status_text(status)) } }
            Ok(reply) => {
                @let reply = reply.get_ref();
                table.timeline {
                    thead { tr {
                        th { (t(lang, "referral.when")) }
                        th { (t(lang, "referral.event")) }
                        th { (t(lang, "referral.who")) }
                        th { (t(lang, "referral.detail")) }
                    } }
                    tbody {
                        @for e in &reply.events {
                            tr {
                                td { (output::time(e.occurred_at.as_ref())) }
                                td { (e.event) }
                                td { (e.actor_agency_id) }
                                td {
                                    @if !e.to_agency_id.is_empty() { (t(lang, "handoff.to")) " " (e.to_agency_id) " " }
                                    @if !e.handoff_id.is_empty() {
                                        a href=(format!("/handoffs/{}", e.handoff_id)) { (t(lang, "inbox.handoff")) }
                                        " "
                                    }
                                    (e.reason) " " (e.detail)
                                }
                            }
                        }
                    }
                }
                (withheld(lang, &reply.redactions))
            }
        }
        h2 id="thread" { (t(lang, "referral.thread")) }
        @match &thread {
            Err(status) => { p.error { (output::status_text(status)) } }
            Ok(reply) => {
                @let reply = reply.get_ref();
                @if reply.messages.is_empty() {
                    p { (t(lang, "referral.no_messages")) }
                }
                @for m in &reply.messages {
                    article.message {
                        p.meta { (m.author_agency_id) " · " (m.author_officer) " · " (output::time(m.posted_at.as_ref())) }
                        @if m.body_erased {
                            p { (t(lang, "referral.erased")) }
                        } @else {
                            p.body { (m.body) }
                        }
                        (withheld(lang, &m.redactions))
                    }
                }
            }
        }
        form.post method="post" action=(format!("/referrals/{referral}/messages")) {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="idempotency_key" value=(key);
            label.field {
                span { (t(lang, "referral.message")) }
                textarea name="body" rows="3" required {}
            }
            button type="submit" { (t(lang, "referral.post")) }
        }
    }
}

/// `POST /referrals/{id}/messages`: posts to the thread, then back to it.
pub(crate) async fn post_message(
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
        .post_message(pb::PostMessageRequest {
            referral_id: id.clone(),
            idempotency_key: field(&pairs, "idempotency_key").to_owned(),
            body: field(&pairs, "body").to_owned(),
        })
        .await;
    then_back(lang, &session, answered, &format!("/referrals/{id}#thread"))
}

/// `/referrals/{id}`: the referral as the server shows it to this officer,
/// and what it withheld, with the reasons.
pub(crate) async fn referral(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = lang(&headers);
    let Some((session, desk)) = signed_in(&web, &headers) else {
        return to_sign_in();
    };
    let reply = match desk
        .intake()
        .get_referral(pb::GetReferralRequest { referral: id })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return failed(lang, &session, &status),
    };
    let Some(referral) = reply.referral else {
        return error_page(lang, Some(&session), StatusCode::NOT_FOUND, "no referral");
    };
    let block = match output::object(&referral) {
        Ok(b) => b,
        Err(e) => {
            return error_page(
                lang,
                Some(&session),
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            );
        }
    };
    let activity = activity(lang, &session, &desk, &referral.id).await;
    let body = html! {
        dl.record {
            @for (key, value) in block.lines() {
                @let depth = key.len() - key.trim_start().len();
                @let name = key.trim_start();
                dt class=(format!("depth-{}", depth / 2)) { (name) }
                dd {
                    @match value {
                        Some(v) => { (v) }
                        None => {}
                    }
                }
            }
        }
        h2 { (t(lang, "referral.withheld")) }
        @if reply.redactions.is_empty() {
            p { (t(lang, "referral.none_withheld")) }
        }
        (withheld(lang, &reply.redactions))
        (activity)
    };
    page(
        lang,
        &format!("{} {}", t(lang, "referral.title"), referral.reference_code),
        Some(&session),
        body,
    )
    .into_response()
}

fn filing_form(
    lang: Lang,
    session: &Session,
    key: &str,
    values: &Values,
    errors: &Errors,
    note: Option<&str>,
    status: StatusCode,
) -> Response {
    let draft = match form::draft() {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                lang,
                Some(session),
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            );
        }
    };
    let page = page(
        lang,
        t(lang, "file.title"),
        Some(session),
        html! {
            @if let Some(note) = note {
                p.error role="alert" { (note) }
            }
            p { (t(lang, "file.intro")) }
            form.filing method="post" action="/referrals/new" novalidate {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="idempotency_key" value=(key);
                (form::inputs(lang, &draft, "", values, errors))
                button type="submit" { (t(lang, "file.submit")) }
            }
        },
    );
    (status, page).into_response()
}

/// `/referrals/new`: the filing form.
pub(crate) async fn new_referral(State(web): WebState, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    let Some((session, _)) = signed_in(&web, &headers) else {
        return to_sign_in();
    };
    // One idempotency key per form shown: sending it twice files once.
    let key = format!("web-{}", uuid::Uuid::new_v4().simple());
    filing_form(
        lang,
        &session,
        &key,
        &Values::new(),
        &Errors::new(),
        None,
        StatusCode::OK,
    )
}

/// `POST /referrals/new`: files the draft; on field violations the form
/// comes back as sent, each violation beside its field.
pub(crate) async fn file_referral(
    State(web): WebState,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let lang = lang(&headers);
    let (session, desk) = match posted(&web, &headers, &pairs) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let key = field(&pairs, "idempotency_key").to_owned();
    let values = form::values(&pairs);
    let again = |errors: &Errors, note: &str| -> Response {
        filing_form(
            lang,
            &session,
            &key,
            &values,
            errors,
            Some(note),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let descriptor = match form::draft() {
        Ok(d) => d,
        Err(e) => return again(&Errors::new(), &e.to_string()),
    };
    let json = serde_json::Value::Object(form::to_json(&descriptor, "", &values));
    let draft: pb::ReferralDraft =
        match prost_reflect::DynamicMessage::deserialize(descriptor, json)
            .map_err(anyhow::Error::from)
            .and_then(|m| Ok(m.transcode_to::<pb::ReferralDraft>()?))
        {
            Ok(d) => d,
            Err(e) => return again(&Errors::new(), &e.to_string()),
        };
    match desk
        .intake()
        .file_referral(pb::FileReferralRequest {
            idempotency_key: key.clone(),
            draft: Some(draft),
        })
        .await
    {
        Ok(reply) => match reply.into_inner().referral {
            Some(r) => Redirect::to(&format!("/referrals/{}", r.id)).into_response(),
            None => Redirect::to("/inbox").into_response(),
        },
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            use tonic_types::StatusExt as _;
            let mut errors = Errors::new();
            if let Some(bad) = status.get_details_bad_request() {
                for v in bad.field_violations {
                    let path = v
                        .field
                        .strip_prefix("draft.")
                        .unwrap_or(&v.field)
                        .to_owned();
                    errors.entry(path).or_insert(v.description);
                }
            }
            again(&errors, t(lang, "file.errors"))
        }
        Err(status) => failed(lang, &session, &status),
    }
}
