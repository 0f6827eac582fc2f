//! `refnet handoff show|ack|accept|decline|complete|withdraw|create|sent`: acting on one handoff.

use super::*;

/// `refnet handoff ...`.
#[derive(Debug, Args)]
pub struct HandoffArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: HandoffCommand,
}

#[derive(Debug, Subcommand)]
enum HandoffCommand {
    /// Show one handoff your agency sent or received.
    Show {
        /// Handoff id (see `refnet inbox list`).
        id: String,
    },
    /// Acknowledge receipt of a handoff.
    Ack(HandoffTarget),
    /// Accept a handoff.
    Accept(HandoffTarget),
    /// Decline an acknowledged (or escalated) handoff.
    Decline {
        #[command(flatten)]
        target: HandoffTarget,
        /// Why (required; other parties see it redacted for them).
        #[arg(long)]
        reason: String,
    },
    /// Complete an accepted handoff (a checklist must be complete first).
    Complete(HandoffTarget),
    /// Withdraw a handoff your agency sent (after acceptance a reason is required;
    /// the recipient is told and keeps only what it saw before).
    Withdraw {
        #[command(flatten)]
        target: HandoffTarget,
        /// Why (other parties see it redacted for them).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Hand a referral to an agency by hand (a supervisor of a party agency; this
    /// is how a referral in `refnet triage list` gets routed).
    Create {
        /// Referral id or reference code.
        referral: String,
        /// The receiving agency's id.
        #[arg(long = "to")]
        to_agency_id: String,
        /// Why: one of the routing rules' purposes (`refnet rules check` lists the rules).
        #[arg(long)]
        purpose: String,
        /// Idempotency key [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The handoffs your agency sent: to whom, state and deadlines, overdue first.
    Sent {
        /// Only handoffs in this state (repeat for several).
        #[arg(long = "state", value_parser = handoff_state)]
        states: Vec<i32>,
        #[command(flatten)]
        page: Page,
        /// Print only the handoff ids, one per line.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
}

/// The handoff a transition acts on.
#[derive(Debug, Args)]
struct HandoffTarget {
    /// Handoff id (see `refnet inbox list`).
    id: String,
    /// The version you act on; a stale one fails with ABORTED [default: read the current one].
    #[arg(long)]
    version: Option<i64>,
}

/// `refnet handoff show|ack|accept|decline|complete|withdraw|create|sent`.
pub async fn handoff(args: HandoffArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    let (target, reason, transition) = match args.command {
        HandoffCommand::Show { id } => {
            let handoff = desk
                .routing()
                .get_handoff(pb::GetHandoffRequest { handoff_id: id })
                .await
                .answer()?;
            return desk.show(&handoff, |h| object_and_withheld(h, &h.redactions));
        }
        HandoffCommand::Ack(target) => (target, String::new(), Transition::Acknowledge),
        HandoffCommand::Accept(target) => (target, String::new(), Transition::Accept),
        HandoffCommand::Decline { target, reason } => (target, reason, Transition::Decline),
        HandoffCommand::Complete(target) => (target, String::new(), Transition::Complete),
        HandoffCommand::Withdraw { target, reason } => (target, reason, Transition::Withdraw),
        HandoffCommand::Create {
            referral,
            to_agency_id,
            purpose,
            idempotency_key,
        } => {
            let key = idempotency_key.unwrap_or_else(new_key);
            return triage::create(&desk, referral, to_agency_id, purpose, key).await;
        }
        HandoffCommand::Sent {
            states,
            page,
            quiet,
        } => return triage::sent(&desk, states, page, quiet).await,
    };
    let expected_version = match target.version {
        Some(v) => v,
        None => {
            desk.routing()
                .get_handoff(pb::GetHandoffRequest {
                    handoff_id: target.id.clone(),
                })
                .await
                .answer()?
                .version
        }
    };
    let request = pb::HandoffTransitionRequest {
        handoff_id: target.id,
        expected_version,
        reason,
    };
    let mut routing = desk.routing();
    let handoff = match transition {
        Transition::Acknowledge => routing.acknowledge_handoff(request).await,
        Transition::Accept => routing.accept_handoff(request).await,
        Transition::Decline => routing.decline_handoff(request).await,
        Transition::Complete => routing.complete_handoff(request).await,
        Transition::Withdraw => routing.withdraw_handoff(request).await,
    }
    .answer()?;
    desk.show(&handoff, |h| object_and_withheld(h, &h.redactions))
}

enum Transition {
    Acknowledge,
    Accept,
    Decline,
    Complete,
    Withdraw,
}
