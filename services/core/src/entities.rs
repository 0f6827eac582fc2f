//! sea-orm entities of the shared tables: the agency registry and keys, who is
//! party to a referral, the event log, the audit log, notifications, and the
//! case record (referrals, subjects and their blind index).
//!
//! Who writes what: intake files and amends referrals, subjects and
//! identifiers; routing changes a referral's status only through
//! [`crate::access`] (`mark_routed`, `mark_needs_routing`, `mark_closed`);
//! protection sets a subject's pseudonym only through [`crate::subjects`];
//! notifications are written only by [`crate::notify`]. Tables one service
//! owns (handoffs, triage, webhooks, protection requests and measures) live in
//! that service's crate.

/// The agency registry.
pub mod agency {
    use sea_orm::entity::prelude::*;

    /// A registered agency.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agencies")]
    pub struct Model {
        /// Agency id (stable, human-readable, e.g. `police-nairobi-attu`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Agency kind, as in tokens ("POLICE").
        pub kind: String,
        /// Display name.
        pub name: String,
        /// County served; `None` for a national agency.
        pub county: Option<String>,
        /// Inactive agencies' tokens are refused.
        pub active: bool,
        /// When it was registered.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The keyring's root, wrapped by a master key (one row, id 1).
pub mod key_root {
    use sea_orm::entity::prelude::*;

    /// The root row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_roots")]
    pub struct Model {
        /// Always 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// The id of the master key that wraps it.
        pub key_id: String,
        /// The wrapped root.
        pub wrapped: Vec<u8>,
        /// When it was last wrapped.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Officers whose access is suspended.
pub mod officer_suspension {
    use sea_orm::entity::prelude::*;

    /// One suspended officer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "officer_suspensions")]
    pub struct Model {
        /// The officer's agency.
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        /// The officer (`sub` of their tokens).
        #[sea_orm(primary_key, auto_increment = false)]
        pub officer_id: String,
        /// Why, for the record.
        pub reason: String,
        /// When.
        pub suspended_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which agencies are party to which referral (the access model).
pub mod referral_party {
    use sea_orm::entity::prelude::*;

    /// One agency's relation to one referral.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "referral_parties")]
    pub struct Model {
        /// The referral.
        #[sea_orm(primary_key, auto_increment = false)]
        pub referral_id: Uuid,
        /// The agency.
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        /// How it is party: `FILER`, `RECIPIENT`, `PROTECTION`.
        pub relation: String,
        /// Since when.
        pub since: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The event log (transactional outbox).
pub mod event {
    use sea_orm::entity::prelude::*;

    /// One event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        /// Position in the log; consumers checkpoint on it.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// Event id (UUIDv7).
        pub id: Uuid,
        /// The referral it concerns.
        pub referral_id: Option<Uuid>,
        /// Kind, e.g. `ReferralFiled`.
        pub kind: String,
        /// JSON payload: ids, versions and codes only, never identifying values.
        pub payload: String,
        /// Acting agency.
        pub agency_id: Option<String>,
        /// Acting officer.
        pub officer_id: Option<String>,
        /// W3C trace context of the call that caused it.
        pub trace_context: Option<String>,
        /// When it happened.
        pub occurred_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The audit log.
pub mod audit_log {
    use sea_orm::entity::prelude::*;

    /// One audit record: a reveal of identifying data, or a read of the audit trail.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Position in the chain, from 1, without gaps.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// Record id.
        pub id: Uuid,
        /// Hash of the previous record (32 zero bytes for the first).
        pub prev_hash: Vec<u8>,
        /// SHA-256 over `prev_hash` and this record's content.
        pub hash: Vec<u8>,
        /// Officer.
        pub officer_id: String,
        /// Agency.
        pub agency_id: String,
        /// Agency kind.
        pub agency_kind: String,
        /// Roles, JSON array.
        pub roles: String,
        /// RPC path.
        pub rpc: String,
        /// Referral.
        pub referral_id: Option<Uuid>,
        /// Field paths revealed, JSON array.
        pub field_paths: String,
        /// W3C trace id.
        pub trace_id: Option<String>,
        /// When.
        pub occurred_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The head of the audit chain (one row).
pub mod audit_head {
    use sea_orm::entity::prelude::*;

    /// The last sequence number and hash.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_head")]
    pub struct Model {
        /// Always 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// Last sequence number.
        pub seq: i64,
        /// Last hash.
        pub hash: Vec<u8>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Notifications to an agency (its supervisors, or all its officers) about a
/// handoff: escalations and declines. Hold ids and codes, never identifying values.
pub mod notification {
    use sea_orm::entity::prelude::*;

    /// One notification.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        /// Id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The agency notified.
        pub agency_id: String,
        /// Who in it: "SUPERVISORS" or "ALL".
        pub audience: String,
        /// What happened ("HandoffEscalated", "HandoffDeclined", "ReferralNeedsRouting", ...).
        pub kind: String,
        /// The referral.
        pub referral_id: Uuid,
        /// Its reference code.
        pub reference_code: String,
        /// The handoff; the nil id for a notification about the referral
        /// itself (it needs routing).
        pub handoff_id: Uuid,
        /// Operational detail ("acknowledge deadline passed").
        pub detail: String,
        /// When.
        pub created_at: DateTimeUtc,
        /// Act by (a referral's routing deadline), if any.
        pub due_by: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Subjects: one per referral's person.
pub mod subject {
    use sea_orm::entity::prelude::*;

    /// A subject row. Identity and location are ciphertexts under the subject's data key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subjects")]
    pub struct Model {
        /// Id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Id of the master key that wraps the data key.
        pub key_id: String,
        /// The data key, wrapped by the master key.
        pub wrapped_key: Vec<u8>,
        /// Sealed identity JSON.
        pub identity_ct: Vec<u8>,
        /// Sealed location JSON.
        pub location_ct: Vec<u8>,
        /// Date of birth.
        pub date_of_birth: Option<Date>,
        /// Sex (proto name).
        pub sex: String,
        /// Nationality (ISO alpha-2) or empty.
        pub nationality: String,
        /// County of origin or empty.
        pub county_of_origin: String,
        /// Sub-county of origin or empty.
        pub sub_county_of_origin: String,
        /// Languages, JSON array.
        pub languages: String,
        /// The subject is a child.
        pub is_child: bool,
        /// Created.
        pub created_at: DateTimeUtc,
        /// Updated.
        pub updated_at: DateTimeUtc,
        /// The WPA pseudonym while the subject is protected (every viewer but the WPA sees it).
        pub protected_pseudonym: Option<String>,
        /// When the subject was erased: its data key destroyed, identity,
        /// location and date of birth gone (see `subjects::erase`).
        pub erased_at: Option<DateTimeUtc>,
        /// The age band at filing (HTCDS `ageBroad`), kept in place of the date of birth once erased.
        pub age_band: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Referrals.
pub mod referral {
    use sea_orm::entity::prelude::*;

    /// A referral row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "referrals")]
    pub struct Model {
        /// Id (UUIDv7: ordering by id is ordering by filing time).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Reference code.
        #[sea_orm(unique)]
        pub reference_code: String,
        /// Version.
        pub version: i64,
        /// Status.
        pub status: crate::states::ReferralStatus,
        /// Subject.
        pub subject_id: Uuid,
        /// Filing agency.
        pub filing_agency_id: String,
        /// Filing agency kind ("POLICE").
        pub filing_agency_kind: String,
        /// Filing officer.
        pub filed_by_officer: String,
        /// Urgency (proto name).
        pub urgency: String,
        /// Classification (proto name).
        pub classification: String,
        /// Identified by (proto name).
        pub identified_by: String,
        /// County where the case is handled.
        pub county: String,
        /// The subject is a child.
        pub is_child: bool,
        /// Case facts without free text, JSON.
        pub case_facts: String,
        /// Needs, JSON array of proto names.
        pub needs: String,
        /// Missing trafficking elements, JSON array of proto names.
        pub missing_elements: String,
        /// Consent, JSON.
        pub consent: String,
        /// Sealed free text, special category and suspects.
        pub sealed: Vec<u8>,
        /// Idempotency key of the filing call.
        pub idempotency_key: String,
        /// SHA-256 of the filing request's draft.
        pub request_digest: Vec<u8>,
        /// Filed.
        pub filed_at: DateTimeUtc,
        /// Updated.
        pub updated_at: DateTimeUtc,
        /// When the referral last became CLOSED (none while open); the
        /// retention period counts from it.
        pub closed_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    crate::versioned_entity!();
}

/// The blind index: keyed hashes of normalised identifiers.
pub mod subject_identifier {
    use sea_orm::entity::prelude::*;

    /// One identifier of one referral's subject.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subject_identifiers")]
    pub struct Model {
        /// HMAC-SHA256 of kind and normalised value.
        #[sea_orm(primary_key, auto_increment = false)]
        pub digest: Vec<u8>,
        /// The referral.
        #[sea_orm(primary_key, auto_increment = false)]
        pub referral_id: Uuid,
        /// Kind: national_id, passport_number, refugee_id or phone.
        pub kind: String,
        /// The subject.
        pub subject_id: Uuid,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
