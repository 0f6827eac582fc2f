//! The handoff state machine (domain.md):
//! `PENDING → DELIVERED → ACKNOWLEDGED → ACCEPTED | DECLINED → COMPLETED`, with
//! `ESCALATED` when a deadline passes. An illegal transition is
//! FAILED_PRECONDITION naming the current and the wanted state.

use refnet_core::states::HandoffState as S;
pub use refnet_core::states::{Lifecycle, check};
use refnet_core::{ServiceError, events::EventKind};

/// A change a caller (or routing itself) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The receiving agency first saw it.
    Deliver,
    /// The receiving agency acknowledges receipt.
    Acknowledge,
    /// The receiving agency takes it on.
    Accept,
    /// The receiving agency will not take it on (with a reason).
    Decline,
    /// Its acknowledge-by deadline passed.
    Escalate,
    /// The receiving agency finished its part.
    Complete,
    /// The sending agency takes it back (after acceptance only with a reason).
    Withdraw,
    /// A supervisor of the receiving agency sends it elsewhere.
    Reassign,
}

impl Lifecycle for Transition {
    type State = S;
    const WHAT: &'static str = "handoff";

    fn name(self) -> &'static str {
        match self {
            Self::Deliver => "Deliver",
            Self::Acknowledge => "AcknowledgeHandoff",
            Self::Accept => "AcceptHandoff",
            Self::Decline => "DeclineHandoff",
            Self::Escalate => "Escalate",
            Self::Complete => "CompleteHandoff",
            Self::Withdraw => "WithdrawHandoff",
            Self::Reassign => "ReassignHandoff",
        }
    }

    fn target(self) -> S {
        match self {
            Self::Deliver => S::Delivered,
            Self::Acknowledge => S::Acknowledged,
            Self::Accept => S::Accepted,
            Self::Decline => S::Declined,
            Self::Escalate => S::Escalated,
            Self::Complete => S::Completed,
            Self::Withdraw => S::Withdrawn,
            Self::Reassign => S::Reassigned,
        }
    }

    fn from(self) -> &'static [S] {
        match self {
            Self::Deliver => &[S::Pending],
            Self::Acknowledge => &[S::Pending, S::Delivered, S::Escalated],
            Self::Accept | Self::Decline => &[S::Acknowledged, S::Escalated],
            // Acknowledge-by passed (PENDING, DELIVERED) or decide-by passed (ACKNOWLEDGED).
            Self::Escalate => &[S::Pending, S::Delivered, S::Acknowledged],
            Self::Complete => &[S::Accepted],
            Self::Withdraw => &[
                S::Pending,
                S::Delivered,
                S::Acknowledged,
                S::Escalated,
                S::Accepted,
            ],
            Self::Reassign => &[S::Pending, S::Delivered, S::Acknowledged, S::Escalated],
        }
    }
}

impl Transition {
    /// The event it appends.
    pub fn event(self) -> EventKind {
        match self {
            Self::Deliver => EventKind::HandoffDelivered,
            Self::Acknowledge => EventKind::HandoffAcknowledged,
            Self::Accept => EventKind::HandoffAccepted,
            Self::Decline => EventKind::HandoffDeclined,
            Self::Escalate => EventKind::HandoffEscalated,
            Self::Complete => EventKind::HandoffCompleted,
            Self::Withdraw => EventKind::HandoffWithdrawn,
            Self::Reassign => EventKind::HandoffReassigned,
        }
    }

    /// Whether the sending agency (rather than the receiving one) makes it.
    pub fn by_sender(self) -> bool {
        self == Self::Withdraw
    }
}

/// [`check`](refnet_core::states::check) for a stored handoff, with the rules that need more than its state:
/// a handoff escalated after it was acknowledged (decide-by passed) cannot be
/// acknowledged again.
pub fn check_row(row: &crate::entities::handoff::Model, t: Transition) -> Result<S, ServiceError> {
    if t == Transition::Acknowledge && row.state == S::Escalated && row.acknowledged_at.is_some() {
        return Err(ServiceError::FailedPrecondition(
            "handoff is ESCALATED and was already acknowledged; accept or decline it".into(),
        ));
    }
    check(row.state, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_and_illegal_transitions() {
        assert_eq!(
            check(S::Pending, Transition::Deliver).unwrap(),
            S::Delivered
        );
        assert_eq!(
            check(S::Delivered, Transition::Acknowledge).unwrap(),
            S::Acknowledged
        );
        assert_eq!(
            check(S::Acknowledged, Transition::Accept).unwrap(),
            S::Accepted
        );
        let err = check(S::Delivered, Transition::Accept)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DELIVERED") && err.contains("ACCEPTED"),
            "{err}"
        );
        assert!(check(S::Accepted, Transition::Acknowledge).is_err());
        assert!(check(S::Accepted, Transition::Deliver).is_err());
        assert_eq!(
            check(S::Accepted, Transition::Complete).unwrap(),
            S::Completed
        );
        assert_eq!(
            check(S::Accepted, Transition::Withdraw).unwrap(),
            S::Withdrawn
        );
        assert!(check(S::Completed, Transition::Withdraw).is_err());
        assert_eq!(
            check(S::Pending, Transition::Withdraw).unwrap(),
            S::Withdrawn
        );
        assert!(check(S::Withdrawn, Transition::Acknowledge).is_err());
        assert_eq!(
            check(S::Acknowledged, Transition::Decline).unwrap(),
            S::Declined
        );
        assert!(check(S::Delivered, Transition::Decline).is_err());
        assert!(check(S::Declined, Transition::Accept).is_err());
        assert_eq!(
            check(S::Acknowledged, Transition::Escalate).unwrap(),
            S::Escalated
        );
        assert!(check(S::Accepted, Transition::Escalate).is_err());
    }
}
