//! What statistics read: one row per referral, from columns kept in clear
//! (case facts, codes and the subject's quasi-identifiers). Nothing sealed is
//! read, so no identity, location, free text or suspect detail can reach a
//! figure or an export; no key is needed.

use chrono::{DateTime, NaiveDate, Utc};
use refnet_core::{
    ServiceResult,
    domain::{age_broad, referral::CaseRecord},
    entities::{referral, referral_party, subject},
    subjects::from_json,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
};

/// Routing's handoffs table as statistics reads it: the clear columns the
/// handoff metrics need and nothing else (no checklist, no sealed reason).
/// Routing owns and writes the table; this view only reads.
pub mod handoff_times {
    use sea_orm::entity::prelude::*;

    /// One handoff's timing.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "handoffs")]
    pub struct Model {
        /// Id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The referral.
        pub referral_id: Uuid,
        /// The receiving agency's kind ("CHILDREN").
        pub to_agency_kind: String,
        /// Created.
        pub created_at: DateTimeUtc,
        /// When the receiving agency acknowledged it.
        pub acknowledged_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Value of a subject dimension for a protected witness.
pub const WITHHELD: &str = "WITHHELD";

/// Countries whose nationals are grouped as East African: the East African
/// Community and the Horn of Africa, Kenya's main source and transit neighbours.
const EAST_AFRICAN: &[&str] = &[
    "UG", "TZ", "RW", "BI", "SS", "CD", "SO", "ET", "ER", "DJ", "SD",
];

#[derive(Debug, FromQueryResult)]
struct Row {
    filed_at: DateTime<Utc>,
    county: String,
    classification: String,
    identified_by: String,
    filing_agency_kind: String,
    case_facts: String,
    is_child: bool,
    sex: String,
    date_of_birth: Option<NaiveDate>,
    age_band: Option<String>,
    nationality: String,
    protected_pseudonym: Option<String>,
}

/// One referral as statistics see it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Filing time.
    pub filed_at: DateTime<Utc>,
    /// County where the case is handled.
    pub county: String,
    /// Classification (proto name without prefix).
    pub classification: String,
    /// Who identified the person (proto name without prefix).
    pub identified_by: String,
    /// Filing agency kind ("POLICE").
    pub filing_agency_kind: String,
    /// Acts, means and purposes (proto names without prefix).
    pub acts: Vec<String>,
    /// Means.
    pub means: Vec<String>,
    /// Purposes.
    pub purposes: Vec<String>,
    /// Country of exploitation (ISO alpha-2) or empty.
    pub country_of_exploitation: String,
    /// The subject is a child.
    pub is_child: bool,
    /// The subject is a protected witness: no subject field is used.
    pub protected: bool,
    /// Sex ("FEMALE", "MALE", "OTHER", "UNKNOWN").
    pub sex: String,
    /// HTCDS age band at filing, or "UNKNOWN".
    pub age_band: String,
    /// Nationality (ISO alpha-2) or empty.
    pub nationality: String,
}

fn strip<'a>(value: &'a str, prefix: &str) -> &'a str {
    value.strip_prefix(prefix).unwrap_or(value)
}

fn stripped(values: &[String], prefix: &str) -> Vec<String> {
    values.iter().map(|v| strip(v, prefix).to_owned()).collect()
}

impl Record {
    fn of(row: Row) -> ServiceResult<Self> {
        let facts: CaseRecord = from_json(&row.case_facts, "case facts")?;
        let filed_on = row.filed_at.date_naive();
        let age_band = match (&row.age_band, &row.date_of_birth) {
            (Some(band), _) => band.clone(),
            (None, Some(dob)) => age_broad(*dob, filed_on).to_owned(),
            (None, None) => "UNKNOWN".to_owned(),
        };
        let sex = match strip(&row.sex, "SEX_") {
            "" | "UNSPECIFIED" => "UNKNOWN".to_owned(),
            other => other.to_owned(),
        };
        Ok(Self {
            filed_at: row.filed_at,
            county: row.county,
            classification: strip(&row.classification, "CLASSIFICATION_").to_owned(),
            identified_by: strip(&row.identified_by, "IDENTIFIED_BY_").to_owned(),
            filing_agency_kind: row.filing_agency_kind,
            acts: stripped(&facts.acts, "ACT_"),
            means: stripped(&facts.means, "MEANS_"),
            purposes: stripped(&facts.purposes, "PURPOSE_"),
            country_of_exploitation: facts
                .country_of_exploitation
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            is_child: row.is_child,
            protected: row.protected_pseudonym.is_some(),
            sex,
            age_band,
            nationality: row.nationality,
        })
    }

    /// Sex, or [`WITHHELD`] for a protected witness.
    pub fn sex(&self) -> &str {
        if self.protected { WITHHELD } else { &self.sex }
    }

    /// Age band, or [`WITHHELD`].
    pub fn age_band(&self) -> &str {
        if self.protected {
            WITHHELD
        } else {
            &self.age_band
        }
    }

    /// Nationality group ("KENYAN", "EAST_AFRICAN", "OTHER", "UNKNOWN"), or [`WITHHELD`].
    pub fn nationality_group(&self) -> &'static str {
        if self.protected {
            return WITHHELD;
        }
        country_group(&self.nationality)
    }
}

/// The group of an ISO alpha-2 country code.
pub fn country_group(code: &str) -> &'static str {
    match code {
        "" => "UNKNOWN",
        "KE" => "KENYAN",
        c if EAST_AFRICAN.contains(&c) => "EAST_AFRICAN",
        _ => "OTHER",
    }
}

/// Which referrals: all (the secretariat) or those an agency is party to.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every referral.
    All,
    /// The referrals this agency is party to.
    PartyOf(String),
}

/// Every referral in `scope` filed in `[after, before)`.
pub async fn load<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) -> ServiceResult<Vec<Record>> {
    let subject_of: sea_orm::RelationDef = referral::Entity::belongs_to(subject::Entity)
        .from(referral::Column::SubjectId)
        .to(subject::Column::Id)
        .into();
    let mut q = referral::Entity::find()
        .select_only()
        .columns([
            referral::Column::FiledAt,
            referral::Column::County,
            referral::Column::Classification,
            referral::Column::IdentifiedBy,
            referral::Column::FilingAgencyKind,
            referral::Column::CaseFacts,
            referral::Column::IsChild,
        ])
        .column(subject::Column::Sex)
        .column(subject::Column::DateOfBirth)
        .column(subject::Column::AgeBand)
        .column(subject::Column::Nationality)
        .column(subject::Column::ProtectedPseudonym)
        .join(sea_orm::JoinType::InnerJoin, subject_of);
    if let Scope::PartyOf(agency) = scope {
        let parties: sea_orm::RelationDef = referral_party::Entity::belongs_to(referral::Entity)
            .from(referral_party::Column::ReferralId)
            .to(referral::Column::Id)
            .into();
        q = q
            .join_rev(sea_orm::JoinType::InnerJoin, parties)
            .filter(referral_party::Column::AgencyId.eq(agency.as_str()));
    }
    if let Some(after) = after {
        q = q.filter(referral::Column::FiledAt.gte(after));
    }
    if let Some(before) = before {
        q = q.filter(referral::Column::FiledAt.lt(before));
    }
    q.into_model::<Row>()
        .all(db)
        .await?
        .into_iter()
        .map(Record::of)
        .collect()
}
