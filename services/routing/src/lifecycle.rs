//! The handoff state machine (domain.md):
//! `PENDING → DELIVERED → ACKNOWLEDGED → ACCEPTED | DECLINED → COMPLETED`, with
//! `ESCALATED` when a deadline passes. An illegal transition is
//! FAILED_PRECONDITION naming the current and the wanted state.

use refnet_api::v1::HandoffState as S;
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

impl Transition {
    /// The state it leads to.
    pub fn target(self) -> S {
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

    /// The states it may start from.
    pub fn from(self) -> &'static [S] {
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

fn name(s: S) -> &'static str {
    s.as_str_name()
        .strip_prefix("HANDOFF_STATE_")
        .unwrap_or("UNSPECIFIED")
}

/// The state `t` leads to from `current` (a proto state name), or FAILED_PRECONDITION.
pub fn check(current: &str, t: Transition) -> Result<S, ServiceError> {
    let state = S::from_str_name(current).unwrap_or(S::Unspecified);
    if t.from().contains(&state) {
        Ok(t.target())
    } else {
        Err(ServiceError::FailedPrecondition(format!(
            "handoff is {}; it cannot become {}",
            name(state),
            name(t.target())
        )))
    }
}

/// [`check`] for a stored handoff, with the rules that need more than its state:
/// a handoff escalated after it was acknowledged (decide-by passed) cannot be
/// acknowledged again.
pub fn check_row(
    row: &refnet_core::entities::handoff::Model,
    t: Transition,
) -> Result<S, ServiceError> {
    if t == Transition::Acknowledge
        && row.state == S::Escalated.as_str_name()
        && row.acknowledged_at.is_some()
    {
        return Err(ServiceError::FailedPrecondition(
            "handoff is ESCALATED and was already acknowledged; accept or decline it".into(),
        ));
    }
    check(&row.state, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_and_illegal_transitions() {
        assert_eq!(
            check("HANDOFF_STATE_PENDING", Transition::Deliver).unwrap(),
            S::Delivered
        );
        assert_eq!(
            check("HANDOFF_STATE_DELIVERED", Transition::Acknowledge).unwrap(),
            S::Acknowledged
        );
        assert_eq!(
            check("HANDOFF_STATE_ACKNOWLEDGED", Transition::Accept).unwrap(),
            S::Accepted
        );
        let err = check("HANDOFF_STATE_DELIVERED", Transition::Accept)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DELIVERED") && err.contains("ACCEPTED"),
            "{err}"
        );
        assert!(check("HANDOFF_STATE_ACCEPTED", Transition::Acknowledge).is_err());
        assert!(check("HANDOFF_STATE_ACCEPTED", Transition::Deliver).is_err());
        assert_eq!(
            check("HANDOFF_STATE_ACCEPTED", Transition::Complete).unwrap(),
            S::Completed
        );
        assert_eq!(
            check("HANDOFF_STATE_ACCEPTED", Transition::Withdraw).unwrap(),
            S::Withdrawn
        );
        assert!(check("HANDOFF_STATE_COMPLETED", Transition::Withdraw).is_err());
        assert_eq!(
            check("HANDOFF_STATE_PENDING", Transition::Withdraw).unwrap(),
            S::Withdrawn
        );
        assert!(check("HANDOFF_STATE_WITHDRAWN", Transition::Acknowledge).is_err());
        assert_eq!(
            check("HANDOFF_STATE_ACKNOWLEDGED", Transition::Decline).unwrap(),
            S::Declined
        );
        assert!(check("HANDOFF_STATE_DELIVERED", Transition::Decline).is_err());
        assert!(check("HANDOFF_STATE_DECLINED", Transition::Accept).is_err());
        assert_eq!(
            check("HANDOFF_STATE_ACKNOWLEDGED", Transition::Escalate).unwrap(),
            S::Escalated
        );
        assert!(check("HANDOFF_STATE_ACCEPTED", Transition::Escalate).is_err());
    }
}
