//! The tables routing owns and alone writes: handoffs and the event-log
//! consumers' checkpoints (with triage, webhooks and the outbox in their own
//! modules). Other crates read a handoff's state only through the access
//! model's relation query (`refnet_core::access::relation`) and statistics'
//! read of clear columns.

/// Handoffs of referrals to receiving agencies.
pub mod handoff {
    use sea_orm::entity::prelude::*;

    /// One handoff.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "handoffs")]
    pub struct Model {
        /// Id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The referral.
        pub referral_id: Uuid,
        /// Its reference code.
        pub reference_code: String,
        /// The sending agency (the filer, or the supervisor's agency for manual handoffs).
        pub from_agency_id: String,
        /// The receiving agency.
        pub to_agency_id: String,
        /// Its kind ("CHILDREN").
        pub to_agency_kind: String,
        /// Why it was sent.
        pub purpose: String,
        /// State.
        pub state: refnet_core::states::HandoffState,
        /// Version for optimistic concurrency.
        pub version: i64,
        /// The rule that produced it.
        pub rule_id: String,
        /// The rule set in force when it was made (on handoffs made before
        /// migration 15 by hand or from another, their `route_key`).
        pub rule_set_version: String,
        /// Supporting documents checklist, JSON.
        pub checklist: String,
        /// Acknowledge-by deadline.
        pub acknowledge_by: DateTimeUtc,
        /// First delivered to the receiving agency.
        pub delivered_at: Option<DateTimeUtc>,
        /// Created.
        pub created_at: DateTimeUtc,
        /// Updated.
        pub updated_at: DateTimeUtc,
        /// Decide-by deadline (accept or decline); absent on handoffs routed before it existed.
        pub decide_by: Option<DateTimeUtc>,
        /// When the receiving agency acknowledged it.
        pub acknowledged_at: Option<DateTimeUtc>,
        /// The decline reason (or the reason for a withdrawal after
        /// acceptance), sealed under the subject's data key.
        pub decline_reason_ct: Option<Vec<u8>>,
        /// The deadline the receiving agency must meet next (acknowledge-by,
        /// then decide-by; the missed one while ESCALATED); none once
        /// decided or ended.
        pub due_at: Option<DateTimeUtc>,
        /// What makes it happen once per referral and agency kind: the
        /// rule-set version (the worker's), `manual:AGENCY:KEY` (by hand),
        /// `second-choice:ID` or `reassigned:ID` (made from another handoff).
        pub route_key: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    refnet_core::versioned_entity!();
}

/// Where each event-log consumer has got to.
pub mod consumer_checkpoint {
    use sea_orm::entity::prelude::*;

    /// One consumer's checkpoint.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "consumer_checkpoints")]
    pub struct Model {
        /// Consumer name, e.g. `routing`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        /// Last event sequence number fully handled.
        pub seq: i64,
        /// When it last moved.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
