//! The inbox: handoffs to this agency, overdue first, then by deadline; kept
//! current while open. The page subscribes to `/inbox/events`, Server-Sent
//! Events fed by the officer's own `WatchInbox` stream; each event carries
//! only its cursor, and the page's script then fetches the rows again
//! (`/inbox/rows`), rendered by the server for this session like the page.
//! Without JavaScript the page is the same, current as of its loading.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        Html, IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use maud::{Markup, html};
use refnet_api::v1 as pb;
use tokio_stream::StreamExt as _;

use super::{
    Web,
    pages::{failed, lang, page, signed_in, to_sign_in, words},
    session::Session,
    text::{Lang, t},
};
use crate::{Desk, output};

type WebState = State<Arc<Web>>;

/// The deadline a handoff in its state is waiting on, if any.
fn due(h: &pb::Handoff) -> Option<&prost_types::Timestamp> {
    match pb::HandoffState::try_from(h.state) {
        Ok(pb::HandoffState::Delivered) => h.acknowledge_by.as_ref(),
        Ok(pb::HandoffState::Acknowledged) => h.decide_by.as_ref(),
        _ => None,
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The inbox's table (or its empty note) as the server lists it now.
async fn rows(lang: Lang, session: &Session, desk: &Desk) -> Result<Markup, Response> {
    let reply = match desk
        .routing()
        .list_inbox(pb::ListInboxRequest::default())
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(failed(lang, session, &status)),
    };
    let now = now_seconds();
    let mut rows: Vec<(&pb::Handoff, Option<i64>)> = reply
        .handoffs
        .iter()
        .map(|h| (h, due(h).map(|d| d.seconds)))
        .collect();
    rows.sort_by_key(|(_, due)| (due.is_none_or(|d| d >= now), due.unwrap_or(i64::MAX)));
    Ok(html! {
        @if rows.is_empty() {
            p { (t(lang, "inbox.empty")) }
        } @else {
            table.inbox {
                thead { tr {
                    th { (t(lang, "inbox.referral")) }
                    th { (t(lang, "inbox.state")) }
                    th { (t(lang, "inbox.due")) }
                    th { (t(lang, "inbox.from")) }
                    th { (t(lang, "inbox.purpose")) }
                } }
                tbody {
                    @for (h, due_at) in &rows {
                        @let overdue = due_at.is_some_and(|d| d < now);
                        tr.overdue[overdue] data-handoff=(h.id) {
                            td { a href=(format!("/referrals/{}", h.referral_id)) { (h.reference_code) } }
                            td { (words(&output::enum_name("refnet.v1.HandoffState", h.state))) }
                            td {
                                (output::time(due(h)))
                                @if overdue { " " strong.overdue { (t(lang, "inbox.overdue")) } }
                            }
                            td { (h.from_agency_id) }
                            td { (h.purpose) " " a href=(format!("/handoffs/{}", h.id)) { (t(lang, "inbox.handoff")) } }
                        }
                    }
                }
            }
        }
    })
}

/// `/inbox`.
pub(crate) async fn show(State(web): WebState, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    let Some((session, desk)) = signed_in(&web, &headers) else {
        return to_sign_in();
    };
    let table = match rows(lang, &session, &desk).await {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let body = html! {
        div #inbox data-live="/inbox/events" data-rows="/inbox/rows" { (table) }
    };
    page(lang, t(lang, "inbox.title"), Some(&session), body).into_response()
}

/// `/inbox/rows`: the table alone, for the page's script.
pub(crate) async fn fragment(State(web): WebState, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    let Some((session, desk)) = signed_in(&web, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match rows(lang, &session, &desk).await {
        Ok(table) => Html(table.into_string()).into_response(),
        Err(answer) => answer,
    }
}

/// `/inbox/events`: an event (its cursor only) for each change to this
/// agency's inbox, from the officer's `WatchInbox` stream. When the stream
/// ends (the server restarting, say) so does this; the browser reconnects and
/// the page fetches the rows again.
pub(crate) async fn events(State(web): WebState, headers: HeaderMap) -> Response {
    let Some((_, desk)) = signed_in(&web, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let stream = match desk
        .routing()
        .watch_inbox(pb::WatchInboxRequest::default())
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => {
            return (StatusCode::BAD_GATEWAY, output::status_text(&status)).into_response();
        }
    };
    let events = stream
        .take_while(Result::is_ok)
        .filter_map(Result::ok)
        .map(|e| Ok::<_, Infallible>(Event::default().event("inbox").data(e.cursor)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
