//! `refnet message post` and `refnet timeline`: a referral's thread and its events, oldest first.

use super::*;

/// `refnet message ...`.
#[derive(Debug, Args)]
pub struct MessageArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: MessageCommand,
}

#[derive(Debug, Subcommand)]
enum MessageCommand {
    /// Post a message on a referral's thread (every party reads it, redacted for them).
    Post {
        /// Referral id or reference code.
        referral: String,
        /// The message, or - for standard input.
        text: String,
        /// Idempotency key [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

/// `refnet timeline REF`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    connection: Connection,
    /// Referral id or reference code.
    referral: String,
}

/// `refnet message post`.
pub async fn message(args: MessageArgs) -> anyhow::Result<()> {
    match args.command {
        MessageCommand::Post {
            referral,
            text,
            idempotency_key,
        } => {
            let body = text_or_stdin(&text)?;
            let desk = Desk::connect(args.connection).await?;
            let posted = desk
                .routing()
                .post_message(pb::PostMessageRequest {
                    referral_id: referral,
                    idempotency_key: idempotency_key.unwrap_or_else(new_key),
                    body,
                })
                .await
                .answer()?;
            desk.show(&posted, |m| object_and_withheld(m, &m.redactions))
        }
    }
}

/// Most pages `timeline` reads of either list (a runaway guard).
const MAX_PAGES: usize = 1000;

/// `refnet timeline REF`: every event on the referral and every message on
/// its thread, oldest first (messages in full where events only say one was posted).
pub async fn timeline(args: TimelineArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    let mut routing = desk.routing();
    let mut events: Vec<pb::TimelineEvent> = Vec::new();
    let mut redactions: Vec<pb::Redaction> = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let page = routing
            .get_timeline(pb::GetTimelineRequest {
                referral: args.referral.clone(),
                page_size: 500,
                page_token,
            })
            .await
            .answer()?;
        redactions.extend(rebased(page.redactions, "events", events.len()));
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut messages: Vec<pb::ThreadMessage> = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let page = routing
            .list_messages(pb::ListMessagesRequest {
                referral: args.referral.clone(),
                page_size: 200,
                page_token,
            })
            .await
            .answer()?;
        redactions.extend(rebased(page.redactions, "messages", messages.len()));
        messages.extend(page.messages);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // Items carry their own redactions too; list them with their place.
    for (i, e) in events.iter().enumerate() {
        redactions.extend(prefixed(&e.redactions, &format!("events[{i}]")));
    }
    for (i, m) in messages.iter().enumerate() {
        redactions.extend(prefixed(&m.redactions, &format!("messages[{i}]")));
    }
    if desk.json {
        let json = serde_json::json!({
            "events": events.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
            "messages": messages.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
            "redactions": redactions.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
        });
        return output::print_json(&json);
    }
    let key = |t: Option<&prost_types::Timestamp>| t.map_or((0, 0), |t| (t.seconds, t.nanos));
    let mut rows: Vec<((i64, i32), Vec<String>)> = Vec::new();
    for e in events.iter().filter(|e| e.event != "MessagePosted") {
        rows.push((
            key(e.occurred_at.as_ref()),
            vec![
                time(e.occurred_at.as_ref()),
                e.event.clone(),
                if e.actor_agency_id.is_empty() {
                    "(routing)".to_owned()
                } else {
                    e.actor_agency_id.clone()
                },
                event_detail(e),
            ],
        ));
    }
    for m in &messages {
        rows.push((
            key(m.posted_at.as_ref()),
            vec![
                time(m.posted_at.as_ref()),
                "Message".to_owned(),
                m.author_agency_id.clone(),
                m.body.clone(),
            ],
        ));
    }
    rows.sort_by_key(|(k, _)| *k);
    let mut table = Table::new(&["WHEN", "EVENT", "BY", "DETAIL"]);
    for (_, row) in rows {
        table.row(row);
    }
    let mut text = table.render();
    let withheld = output::withheld(&redactions);
    if !withheld.is_empty() {
        text.push('\n');
        text.push_str(&withheld);
    }
    output::emit(&text)
}

/// What a timeline event says beyond its name.
fn event_detail(e: &pb::TimelineEvent) -> String {
    let mut parts = Vec::new();
    if !e.to_agency_id.is_empty() {
        parts.push(format!("to {}", e.to_agency_id));
    }
    if !e.rule_id.is_empty() {
        parts.push(format!("rule {}", e.rule_id));
    }
    if !e.handoff_id.is_empty() {
        parts.push(format!("handoff {}", e.handoff_id));
    }
    if e.version > 0 {
        parts.push(format!("version {}", e.version));
    }
    if !e.detail.is_empty() {
        parts.push(e.detail.clone());
    }
    if !e.reason.is_empty() {
        parts.push(format!("reason: {}", e.reason));
    }
    parts.join("; ")
}

/// Redactions of one page with their list index moved by `offset` (`events[3]`
/// of the second page of 500 becomes `events[503]`).
pub(crate) fn rebased(
    redactions: Vec<pb::Redaction>,
    list: &str,
    offset: usize,
) -> Vec<pb::Redaction> {
    redactions
        .into_iter()
        .map(|mut r| {
            if let Some(rest) = r.path.strip_prefix(&format!("{list}["))
                && let Some((n, tail)) = rest.split_once(']')
                && let Ok(n) = n.parse::<usize>()
            {
                r.path = format!("{list}[{}]{tail}", n + offset);
            }
            r
        })
        .collect()
}

pub(crate) fn prefixed(redactions: &[pb::Redaction], prefix: &str) -> Vec<pb::Redaction> {
    redactions
        .iter()
        .map(|r| pb::Redaction {
            path: format!("{prefix}.{}", r.path),
            ..r.clone()
        })
        .collect()
}
