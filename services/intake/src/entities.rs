//! The tables intake owns: subjects (identity and location sealed), referrals
//! and the blind index of subject identifiers.

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
        /// Date of birth (YYYY-MM-DD).
        pub date_of_birth: Option<String>,
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
        /// Status (proto name).
        pub status: String,
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
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
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
