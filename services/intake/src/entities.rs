//! The tables intake owns: subjects (identity and location sealed), referrals
//! and the blind index of subject identifiers. Their entity definitions live
//! in `refnet-core` because routing reads a referral's sealed content to
//! redact free text on it (messages, reasons) with the subject's identifiers.

pub use refnet_core::entities::{referral, subject, subject_identifier};
