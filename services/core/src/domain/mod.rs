//! Domain types, built from requests at the boundary ("parse, don't validate").
//!
//! Every value that reaches a handler has passed through a constructor here:
//! phone numbers are E.164, Kenyan national IDs are digits, passports are
//! upper-case, counties are one of Kenya's 47 by their canonical name, dates
//! are real dates not in the future. [`referral::ValidDraft`] is a whole
//! referral built from a request with every bad field reported at once.

pub mod counties;
pub mod facts;
pub mod referral;
pub mod values;

pub use counties::canonical_county;
pub use values::*;
