//! Validated value types. Each has a private field and a `parse` that is the
//! only way to build it; the error is a sentence for a field violation.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A phone number in E.164 (`+254712345678`). Local Kenyan forms (`0712 345 678`,
/// `0712-345-678`, `254712345678`) are accepted and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses any national or international spelling; Kenya is the default region.
    pub fn parse(input: &str) -> Result<Self, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > 32 {
            return Err("must be a phone number".into());
        }
        // "254712345678" without the plus is a common spelling of a Kenyan number.
        let candidate = if trimmed.starts_with("254") && trimmed.chars().all(|c| c.is_ascii_digit())
        {
            format!("+{trimmed}")
        } else {
            trimmed.to_owned()
        };
        let number = phonenumber::parse(Some(phonenumber::country::Id::KE), &candidate)
            .map_err(|_| "is not a phone number".to_owned())?;
        // libphonenumber's metadata lags new Kenyan mobile ranges (e.g. 0109...),
        // so a 9-digit Kenyan national number starting 1 or 7 is accepted too.
        let national = number.national().value().to_string();
        let kenyan_mobile = number.code().value() == 254
            && national.len() == 9
            && (national.starts_with('7') || national.starts_with('1'));
        if !phonenumber::is_valid(&number) && !kenyan_mobile {
            return Err("is not a valid phone number".into());
        }
        Ok(Self(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// The E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Kenyan national ID number: 6 to 9 digits (spaces ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NationalId(String);

impl NationalId {
    /// Parses a national ID number.
    pub fn parse(input: &str) -> Result<Self, String> {
        let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if (6..=9).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err("must be a Kenyan national ID number (6 to 9 digits)".into())
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A passport number: 6 to 9 letters and digits, at least 4 digits, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PassportNumber(String);

impl PassportNumber {
    /// Parses a passport number.
    pub fn parse(input: &str) -> Result<Self, String> {
        let norm: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_uppercase)
            .collect();
        let ok = (6..=9).contains(&norm.len())
            && norm.chars().all(|c| c.is_ascii_alphanumeric())
            && norm.chars().filter(char::is_ascii_digit).count() >= 4;
        if ok {
            Ok(Self(norm))
        } else {
            Err("must be a passport number (6 to 9 letters and digits)".into())
        }
    }

    /// The normalised number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A refugee or asylum-seeker ID: 4 to 20 letters, digits and `-`, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefugeeId(String);

impl RefugeeId {
    /// Parses a refugee ID.
    pub fn parse(input: &str) -> Result<Self, String> {
        let norm: String = input
            .trim()
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_uppercase)
            .collect();
        let ok = (4..=20).contains(&norm.len())
            && norm.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && norm.chars().any(|c| c.is_ascii_digit());
        if ok {
            Ok(Self(norm))
        } else {
            Err("must be a refugee ID (4 to 20 letters, digits and '-')".into())
        }
    }

    /// The normalised id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address (shape checked, lower-cased domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an email address.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let err = || "must be an email address".to_owned();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(err)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(err());
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CountryCode(String);

impl CountryCode {
    /// Parses a two-letter country code.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim().to_ascii_uppercase();
        if s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Self(s))
        } else {
            Err("must be an ISO 3166-1 alpha-2 country code such as \"KE\"".into())
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 639 language code (2 or 3 lower-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LanguageCode(String);

impl LanguageCode {
    /// Parses a language code.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim().to_ascii_lowercase();
        if (2..=3).contains(&s.len()) && s.chars().all(|c| c.is_ascii_lowercase()) {
            Ok(Self(s))
        } else {
            Err("must be an ISO 639 language code such as \"sw\"".into())
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A calendar date that is not in the future and not before 1900.
pub fn parse_past_date(input: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(input.trim(), "%Y-%m-%d")
        .map_err(|_| "must be a date as YYYY-MM-DD".to_owned())?;
    if date > today {
        return Err("must not be in the future".into());
    }
    if date.year() < 1900 {
        return Err("must not be before 1900".into());
    }
    Ok(date)
}

/// Age in whole years on `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// Free text with a length limit and no control characters (line breaks and
/// tabs allowed when `multiline`). Leading and trailing whitespace is trimmed.
pub fn parse_text(input: &str, max_chars: usize, multiline: bool) -> Result<String, String> {
    let s = input.trim();
    if s.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    let bad = s.chars().any(|c| {
        c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    if bad {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

/// A client-chosen idempotency key: 8 to 128 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses an idempotency key.
    pub fn parse(input: &str) -> Result<Self, String> {
        let ok = (8..=128).contains(&input.len())
            && input
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err("is required: 8 to 128 characters of A-Z, a-z, 0-9, '-' and '_'".into())
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a request names a referral: its UUID or its reference code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferralRef {
    /// By id.
    Id(Uuid),
    /// By reference code (upper-cased).
    Code(String),
}

impl ReferralRef {
    /// Parses a referral id or reference code. Every RPC that names a
    /// referral parses it here, so this also names it on the call's span
    /// (`refnet.referral_id` or `refnet.reference_code`: never a person).
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if let Ok(id) = Uuid::parse_str(s) {
            tracing::Span::current().record("refnet.referral_id", tracing::field::display(id));
            return Ok(Self::Id(id));
        }
        let code = s.to_ascii_uppercase();
        if is_reference_code(&code) {
            tracing::Span::current().record("refnet.reference_code", code.as_str());
            Ok(Self::Code(code))
        } else {
            Err("must be a referral id or reference code (RN-YYYY-XXXXXX)".into())
        }
    }
}

/// The alphabet of reference codes (Crockford base32: no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn is_reference_code(code: &str) -> bool {
    let parts: Vec<&str> = code.split('-').collect();
    matches!(parts.as_slice(), ["RN", year, tail]
        if year.len() == 4 && year.chars().all(|c| c.is_ascii_digit())
        && tail.len() == 6 && tail.bytes().all(|b| CODE_ALPHABET.contains(&b)))
}

/// A new human reference code for a referral filed in `year`, e.g. `RN-2026-7F3K9Q`.
pub fn new_reference_code(year: i32) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let tail: String = (0..6)
        .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
        .collect();
    format!("RN-{year:04}-{tail}")
}

/// The `n`th seeded reference code of `year` (`refnet seed`): `n` in base 32
/// over the code alphabet, so seeded codes never collide with each other
/// (seed into a past year to keep them apart from live filings' random codes).
pub fn seeded_reference_code(year: i32, n: u64) -> String {
    let mut tail = [b'0'; 6];
    let mut rest = n;
    for slot in tail.iter_mut().rev() {
        // The remainder is below 32, so the index is in range.
        *slot = CODE_ALPHABET[(rest % 32) as usize];
        rest /= 32;
    }
    format!("RN-{year:04}-{}", String::from_utf8_lossy(&tail))
}

/// A fresh WPA pseudonym, e.g. `Witness-7F3KQ` (callers check it is unused).
pub fn new_pseudonym() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let tail: String = (0..5)
        .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
        .collect();
    format!("Witness-{tail}")
}

/// A pseudonym the WPA chose: 3 to 40 letters, digits, spaces and hyphens,
/// starting with a letter. Returns it trimmed, with inner spaces collapsed.
pub fn parse_pseudonym(input: &str) -> Result<String, String> {
    let collapsed = input.split_whitespace().collect::<Vec<_>>().join(" ");
    let ok = (3..=40).contains(&collapsed.chars().count())
        && collapsed.chars().next().is_some_and(char::is_alphabetic)
        && collapsed
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-');
    if ok {
        Ok(collapsed)
    } else {
        Err("must be 3 to 40 letters, digits, spaces or hyphens, starting with a letter".into())
    }
}

/// The form pseudonyms are compared in (unique system-wide): lower case, no spaces or hyphens.
pub fn pseudonym_key(pseudonym: &str) -> String {
    pseudonym
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// HTCDS's `ageBroad` band of someone born on `birth` at `on`: "0-8",
/// "9-17", "18-20", "21-23", "24-26", "27-29", "30-38", "39-47", "48+" (the
/// Counter Trafficking Data Collaborative's bands, wider where people are
/// fewer). The band statistics and the HTCDS export count, and the one an
/// erased subject keeps in place of the date of birth.
pub fn age_broad(birth: chrono::NaiveDate, on: chrono::NaiveDate) -> &'static str {
    let age = on.years_since(birth).unwrap_or(0);
    match age {
        0..=8 => "0-8",
        9..=17 => "9-17",
        18..=20 => "18-20",
        21..=23 => "21-23",
        24..=26 => "24-26",
        27..=29 => "27-29",
        30..=38 => "30-38",
        39..=47 => "39-47",
        _ => "48+",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_checked_and_compared_loosely() {
        assert!(new_pseudonym().starts_with("Witness-"));
        assert_eq!(
            parse_pseudonym("  Witness   K-17 ").unwrap(),
            "Witness K-17"
        );
        assert!(parse_pseudonym("K").is_err());
        assert!(parse_pseudonym("7 Witness").is_err());
        assert!(parse_pseudonym("Witness; DROP").is_err());
        assert_eq!(pseudonym_key("Witness K-17"), pseudonym_key("witness-k17"));
    }

    #[test]
    fn kenyan_phone_spellings_normalise_to_e164() {
        for s in [
            "+254712345678",
            "0712 345 678",
            "0712-345-678",
            "254712345678",
            "+254 712 345 678",
        ] {
            assert_eq!(Phone::parse(s).unwrap().as_str(), "+254712345678", "{s}");
        }
        assert_eq!(
            Phone::parse("0110 123 456").unwrap().as_str(),
            "+254110123456"
        );
        assert_eq!(
            Phone::parse("+256 772 123456").unwrap().as_str(),
            "+256772123456"
        );
        assert_eq!(
            Phone::parse("0109-521-593").unwrap().as_str(),
            "+254109521593"
        );
        assert!(Phone::parse("0009 521 593").is_err(), "not a Kenyan range");
        assert!(Phone::parse("12345").is_err());
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("").is_err());
    }

    #[test]
    fn identifiers() {
        assert_eq!(NationalId::parse("2020 9408").unwrap().as_str(), "20209408");
        assert!(NationalId::parse("12AB5678").is_err());
        assert!(NationalId::parse("123").is_err());
        assert_eq!(
            PassportNumber::parse("bk6945343").unwrap().as_str(),
            "BK6945343"
        );
        assert!(PassportNumber::parse("ABCDEFG").is_err());
        assert!(PassportNumber::parse("A1").is_err());
        assert!(Email::parse("a@example.org").is_ok());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("not an email").is_err());
        assert!(CountryCode::parse("ke").is_ok());
        assert!(CountryCode::parse("KEN").is_err());
    }

    #[test]
    fn dates_are_real_and_not_in_the_future() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert!(parse_past_date("2001-12-12", today).is_ok());
        assert!(parse_past_date("2026-11-29", today).is_err());
        assert!(parse_past_date("2001-02-30", today).is_err());
        assert!(parse_past_date("12/12/2001", today).is_err());
        assert!(parse_past_date("1850-01-01", today).is_err());
        let birth = NaiveDate::from_ymd_opt(2008, 11, 29).unwrap();
        assert_eq!(age_on(birth, today), 17);
    }

    #[test]
    fn text_limits_and_control_characters() {
        assert_eq!(parse_text("  hi  ", 10, false).unwrap(), "hi");
        assert!(parse_text("a\u{0}b", 10, true).is_err());
        assert!(parse_text("a\nb", 10, false).is_err());
        assert!(parse_text("a\nb", 10, true).is_ok());
        assert!(parse_text("abc\u{202E}", 10, true).is_err());
        assert!(parse_text(&"x".repeat(11), 10, true).is_err());
    }

    #[test]
    fn reference_codes_round_trip() {
        let code = new_reference_code(2026);
        assert_eq!(
            ReferralRef::parse(&code.to_lowercase()).unwrap(),
            ReferralRef::Code(code)
        );
        assert!(ReferralRef::parse("RN-2026-IIIIII").is_err());
        assert!(ReferralRef::parse("'; drop table").is_err());
    }

    #[test]
    fn age_broad_follows_the_htcds_bands_at_the_date_given() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_broad(d("1999-04-17"), d("2026-11-30")), "27-29");
        assert_eq!(age_broad(d("1999-04-17"), d("2017-04-16")), "9-17");
        assert_eq!(age_broad(d("1999-04-17"), d("2017-04-17")), "18-20");
        assert_eq!(age_broad(d("1955-01-01"), d("2026-11-30")), "48+");
        assert_eq!(age_broad(d("2026-01-01"), d("2026-11-30")), "0-8");
    }
}
