//! The desk's commands for work nothing routed and for what an agency is
//! waiting on: `refnet triage list`, `refnet referral close`, `refnet handoff
//! create|withdraw|sent` and `refnet notifications list|read|mute|webhook`.

use clap::{Args, Subcommand};
use refnet_api::v1 as pb;

use super::{
    Answer, Connection, Desk, Page, Table, enum_name, footer, lines, object_and_withheld, output,
    time,
};

/// `refnet triage ...`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: TriageCommand,
}

#[derive(Debug, Subcommand)]
enum TriageCommand {
    /// Referrals of your agency that no rule routed (or whose every handoff
    /// ended) and wait for a supervisor: route one with `refnet handoff
    /// create`, or close it with `refnet referral close` (supervisors and auditors).
    List {
        #[command(flatten)]
        page: Page,
        /// Print only the reference codes, one per line.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
}

/// `refnet notifications ...`.
#[derive(Debug, Args)]
pub struct NotificationsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: NotificationsCommand,
}

#[derive(Debug, Subcommand)]
enum NotificationsCommand {
    /// Your notifications, newest first.
    List {
        /// Only those you have not marked read.
        #[arg(long)]
        unread: bool,
        /// Also the kinds you switched off (`notifications mute`).
        #[arg(long)]
        include_muted: bool,
        #[command(flatten)]
        page: Page,
    },
    /// Mark notifications read: the ids given, or with --all every one you have.
    Read {
        /// Notification ids.
        ids: Vec<String>,
        /// Mark every notification read.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Switch notification kinds off for yourself (the full list; none switches
    /// every kind back on); `list --include-muted` still shows them.
    Mute {
        /// Kinds: HandoffEscalated, HandoffDeclined, HandoffWithdrawn,
        /// ReferralNeedsRouting, TriageEscalated, ProtectionEscalated.
        kinds: Vec<String>,
    },
    /// Your agency's webhook: every new notification POSTed to a URL, signed
    /// (supervisors set it; auditors may look).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Show the webhook and its delivery counts.
    Show,
    /// Set the webhook (and switch it on).
    Set {
        /// Where to POST (https://).
        url: String,
        /// A file holding the HMAC key (32-256 characters; keep the file private).
        /// Omitted: keep the current key.
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
    },
    /// Switch the webhook off (waiting deliveries are given up).
    Off,
}

/// `refnet triage list`.
pub async fn triage(args: TriageArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    match args.command {
        TriageCommand::List { page, quiet } => {
            let reply = desk
                .routing()
                .list_triage(pb::ListTriageRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                })
                .await
                .answer()?;
            if quiet {
                return output::emit(&lines(reply.items.iter().map(|i| &i.reference_code)));
            }
            desk.show(&reply, |reply| {
                if reply.items.is_empty() {
                    return Ok(format!(
                        "nothing waits to be routed\n{}",
                        footer(&reply.next_page_token, reply.redactions.len())
                    ));
                }
                let mut table = Table::new(&[
                    "REFERENCE",
                    "URGENCY",
                    "ROUTE BY",
                    "ESCALATED",
                    "FILED BY",
                    "WHY",
                    "ID",
                ]);
                for i in &reply.items {
                    table.row(vec![
                        i.reference_code.clone(),
                        enum_name("refnet.v1.Urgency", i.urgency),
                        time(i.route_by.as_ref()),
                        output::yes_no(i.escalated).to_owned(),
                        i.filing_agency_id.clone(),
                        i.reason.clone(),
                        i.referral_id.clone(),
                    ]);
                }
                Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
            })
        }
    }
}

/// `refnet notifications list|read`.
pub async fn notifications(args: NotificationsArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    match args.command {
        NotificationsCommand::List {
            unread,
            include_muted,
            page,
        } => {
            let reply = desk
                .routing()
                .list_notifications(pb::ListNotificationsRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                    unread_only: unread,
                    include_muted,
                })
                .await
                .answer()?;
            desk.show(&reply, |reply| {
                if reply.notifications.is_empty() {
                    return Ok(format!(
                        "no notifications\n{}",
                        footer(&reply.next_page_token, reply.redactions.len())
                    ));
                }
                let mut table = Table::new(&[
                    "WHEN",
                    "EVENT",
                    "REFERENCE",
                    "DETAIL",
                    "DUE BY",
                    "READ",
                    "ID",
                ]);
                for n in &reply.notifications {
                    table.row(vec![
                        time(n.created_at.as_ref()),
                        n.event.clone(),
                        n.reference_code.clone(),
                        n.detail.clone(),
                        time(n.due_by.as_ref()),
                        output::yes_no(n.read).to_owned(),
                        n.id.clone(),
                    ]);
                }
                Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
            })
        }
        NotificationsCommand::Read { ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name the notifications to mark read, or pass --all");
            }
            let reply = desk
                .routing()
                .mark_notifications_read(pb::MarkNotificationsReadRequest {
                    notification_ids: ids,
                    up_to: if all {
                        uuid::Uuid::max().to_string()
                    } else {
                        String::new()
                    },
                })
                .await
                .answer()?;
            desk.show(&reply, |r| Ok(format!("marked read: {}\n", r.marked)))
        }
        NotificationsCommand::Mute { kinds } => {
            let reply = desk
                .routing()
                .set_notification_mutes(pb::SetNotificationMutesRequest { kinds })
                .await
                .answer()?;
            desk.show(&reply, |m| {
                Ok(if m.kinds.is_empty() {
                    "every notification kind is on\n".to_owned()
                } else {
                    format!("switched off for you: {}\n", m.kinds.join(", "))
                })
            })
        }
        NotificationsCommand::Webhook { command } => {
            let mut routing = desk.routing();
            let reply = match command {
                WebhookCommand::Show => routing.get_webhook(pb::GetWebhookRequest {}).await,
                WebhookCommand::Set { url, secret_file } => {
                    let secret = match secret_file {
                        Some(path) => std::fs::read_to_string(&path)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
                            .trim()
                            .to_owned(),
                        None => String::new(),
                    };
                    routing
                        .configure_webhook(pb::ConfigureWebhookRequest {
                            url,
                            secret,
                            enabled: true,
                        })
                        .await
                }
                WebhookCommand::Off => {
                    let current = routing
                        .get_webhook(pb::GetWebhookRequest {})
                        .await
                        .answer()?;
                    if current.url.is_empty() {
                        anyhow::bail!("your agency has no webhook to switch off");
                    }
                    routing
                        .configure_webhook(pb::ConfigureWebhookRequest {
                            url: current.url,
                            secret: String::new(),
                            enabled: false,
                        })
                        .await
                }
            }
            .answer()?;
            desk.show(&reply, |w| object_and_withheld(w, &w.redactions))
        }
    }
}

/// `refnet referral close REF --reason R`.
pub(crate) async fn close(desk: &Desk, referral: String, reason: i32) -> anyhow::Result<()> {
    let reply = desk
        .routing()
        .close_referral(pb::CloseReferralRequest { referral, reason })
        .await
        .answer()?;
    desk.show(&reply, |r| object_and_withheld(r, &r.redactions))
}

/// `refnet handoff create REF --to AGENCY --purpose P`.
pub(crate) async fn create(
    desk: &Desk,
    referral: String,
    to_agency_id: String,
    purpose: String,
    idempotency_key: String,
) -> anyhow::Result<()> {
    let handoff = desk
        .routing()
        .create_handoff(pb::CreateHandoffRequest {
            referral,
            to_agency_id,
            purpose,
            idempotency_key,
        })
        .await
        .answer()?;
    desk.show(&handoff, |h| object_and_withheld(h, &h.redactions))
}

/// `refnet handoff sent`.
pub(crate) async fn sent(
    desk: &Desk,
    states: Vec<i32>,
    page: Page,
    quiet: bool,
) -> anyhow::Result<()> {
    let reply = desk
        .routing()
        .list_sent_handoffs(pb::ListSentHandoffsRequest {
            states,
            page_size: page.page_size,
            page_token: page.page_token,
        })
        .await
        .answer()?;
    if quiet {
        return output::emit(&lines(reply.handoffs.iter().map(|h| &h.id)));
    }
    desk.show(&reply, |reply| {
        if reply.handoffs.is_empty() {
            return Ok(format!(
                "your agency has sent no handoffs\n{}",
                footer(&reply.next_page_token, reply.redactions.len())
            ));
        }
        let mut table = Table::new(&[
            "HANDOFF",
            "REFERENCE",
            "TO",
            "STATE",
            "ACKNOWLEDGE BY",
            "DECIDE BY",
            "PURPOSE",
        ]);
        for h in &reply.handoffs {
            table.row(vec![
                h.id.clone(),
                h.reference_code.clone(),
                h.to_agency_id.clone(),
                enum_name("refnet.v1.HandoffState", h.state),
                time(h.acknowledge_by.as_ref()),
                time(h.decide_by.as_ref()),
                h.purpose.clone(),
            ]);
        }
        Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
    })
}

/// Parses a close reason (`duplicate`, `assistance-declined`, ...).
pub(crate) fn close_reason(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.CloseReason", s)
}
