//! The states refnet stores, as Rust enums sea-orm maps to their columns.
//!
//! Each is stored under its proto name (`HANDOFF_STATE_ACCEPTED`), the value
//! every row written since the first migration holds, so typing them needed no
//! data migration. Code compares and matches these enums, converts to the wire
//! with `From`, and shows people [`label`](HandoffState::label) (`ACCEPTED`);
//! nothing strips prefixes off strings.

use refnet_api::v1 as pb;
use sea_orm::entity::prelude::*;

/// Declares a stored state enum mirroring a proto enum: the sea-orm mapping,
/// the conversions both ways and the short label.
macro_rules! stored_state {
    (
        $(#[$doc:meta])*
        $name:ident mirrors $proto:ident, prefix $prefix:literal {
            $($(#[$vdoc:meta])* $variant:ident = $stored:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[sea_orm(string_value = $stored)]
                $variant,
            )+
        }

        impl $name {
            /// The stored (proto) name, for raw queries and event payloads.
            pub fn stored(self) -> &'static str {
                match self {
                    $(Self::$variant => $stored,)+
                }
            }

            /// The name people read: the proto name without its prefix.
            pub fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => &$stored[$prefix.len()..],)+
                }
            }

            /// The state a wire value names; `None` for UNSPECIFIED or unknown.
            pub fn from_wire(value: i32) -> Option<Self> {
                match pb::$proto::try_from(value).ok()? {
                    $(pb::$proto::$variant => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl From<$name> for pb::$proto {
            fn from(state: $name) -> Self {
                match state {
                    $($name::$variant => pb::$proto::$variant,)+
                }
            }
        }

        impl From<$name> for i32 {
            fn from(state: $name) -> Self {
                pb::$proto::from(state) as i32
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

stored_state! {
    /// Where a referral stands (intake files it; routing moves it through
    /// [`crate::access`]).
    ReferralStatus mirrors ReferralStatus, prefix "REFERRAL_STATUS_" {
        /// Filed; routing has not created its handoffs yet.
        Filed = "REFERRAL_STATUS_FILED",
        /// At least one handoff is open.
        Routed = "REFERRAL_STATUS_ROUTED",
        /// Closed.
        Closed = "REFERRAL_STATUS_CLOSED",
        /// Waiting in the filing agency's triage list.
        NeedsRouting = "REFERRAL_STATUS_NEEDS_ROUTING",
    }
}

stored_state! {
    /// Where a handoff to one receiving agency stands.
    HandoffState mirrors HandoffState, prefix "HANDOFF_STATE_" {
        /// Created, not yet delivered.
        Pending = "HANDOFF_STATE_PENDING",
        /// Delivered to the receiving agency.
        Delivered = "HANDOFF_STATE_DELIVERED",
        /// Acknowledged by it.
        Acknowledged = "HANDOFF_STATE_ACKNOWLEDGED",
        /// Accepted.
        Accepted = "HANDOFF_STATE_ACCEPTED",
        /// Declined.
        Declined = "HANDOFF_STATE_DECLINED",
        /// Completed.
        Completed = "HANDOFF_STATE_COMPLETED",
        /// A deadline passed.
        Escalated = "HANDOFF_STATE_ESCALATED",
        /// Moved to another agency.
        Reassigned = "HANDOFF_STATE_REASSIGNED",
        /// Withdrawn by the sender.
        Withdrawn = "HANDOFF_STATE_WITHDRAWN",
    }
}

stored_state! {
    /// Where a protection request to the WPA stands.
    ProtectionState mirrors ProtectionState, prefix "PROTECTION_STATE_" {
        /// Submitted by the requester.
        Submitted = "PROTECTION_STATE_SUBMITTED",
        /// The WPA is assessing it.
        UnderAssessment = "PROTECTION_STATE_UNDER_ASSESSMENT",
        /// Interim measures granted.
        InterimMeasures = "PROTECTION_STATE_INTERIM_MEASURES",
        /// Admitted to the programme.
        Admitted = "PROTECTION_STATE_ADMITTED",
        /// Declined.
        Declined = "PROTECTION_STATE_DECLINED",
        /// Measures in force.
        Active = "PROTECTION_STATE_ACTIVE",
        /// Closed.
        Closed = "PROTECTION_STATE_CLOSED",
        /// Withdrawn by the requester.
        Withdrawn = "PROTECTION_STATE_WITHDRAWN",
    }
}

impl HandoffState {
    /// States after which the receiving agency has nothing left to do.
    pub const ENDED: [HandoffState; 4] = [
        Self::Completed,
        Self::Declined,
        Self::Withdrawn,
        Self::Reassigned,
    ];

    /// Whether the receiving agency has nothing left to do.
    pub fn ended(self) -> bool {
        Self::ENDED.contains(&self)
    }
}

impl ProtectionState {
    /// States in which the request is over.
    pub const ENDED: [ProtectionState; 3] = [Self::Declined, Self::Closed, Self::Withdrawn];
}

/// One lifecycle's steps, declared once: the states each may start from and
/// the state it leads to. Handoffs (`refnet_routing::lifecycle::Transition`)
/// and protection requests (`refnet_protection::steps::Step`) implement it;
/// [`check`] is the one test of a step against the current state.
pub trait Lifecycle: Copy {
    /// The stored state.
    type State: Copy + PartialEq + std::fmt::Display + 'static;
    /// What moves through it, for messages ("handoff").
    const WHAT: &'static str;
    /// The step's name, for messages and logs.
    fn name(self) -> &'static str;
    /// The states it may start from.
    fn from(self) -> &'static [Self::State];
    /// The state it leads to.
    fn target(self) -> Self::State;
}

/// The state `step` leads to from `current`, or FAILED_PRECONDITION naming both.
pub fn check<L: Lifecycle>(current: L::State, step: L) -> crate::ServiceResult<L::State> {
    if step.from().contains(&current) {
        Ok(step.target())
    } else {
        Err(crate::ServiceError::FailedPrecondition(format!(
            "{} is {current}; {} cannot make it {}",
            L::WHAT,
            step.name(),
            step.target()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn stored_names_are_the_proto_names_and_labels_drop_the_prefix() {
        for s in HandoffState::iter() {
            assert_eq!(s.to_value(), pb::HandoffState::from(s).as_str_name());
            assert_eq!(s.stored(), s.to_value());
            assert_eq!(format!("HANDOFF_STATE_{}", s.label()), s.stored());
            assert_eq!(HandoffState::from_wire(i32::from(s)), Some(s));
        }
        for s in ProtectionState::iter() {
            assert_eq!(s.to_value(), pb::ProtectionState::from(s).as_str_name());
            assert_eq!(ProtectionState::from_wire(i32::from(s)), Some(s));
        }
        for s in ReferralStatus::iter() {
            assert_eq!(s.to_value(), pb::ReferralStatus::from(s).as_str_name());
        }
        assert_eq!(HandoffState::from_wire(0), None);
        assert_eq!(ProtectionState::UnderAssessment.label(), "UNDER_ASSESSMENT");
    }
}
