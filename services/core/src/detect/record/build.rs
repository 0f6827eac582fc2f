//! Compiling a record's identifiers into a [`RecordMatcher`]: the folded
//! phrases (names and their parts, organisations with and without their legal
//! suffix, addresses and their numbered parts, numbers of unusual shapes),
//! every digit spelling of a phone, and the compact tokens the pattern pass
//! compares with; then which subject values occur inside other phrases.

use super::{Engine, Inner, Needle, RecordMatcher, Token, digit_key};
use crate::detect::{HitKind, IdentifierClass, fold::fold_str};

/// Words that are not a name on their own when they are part of one
/// ("Mama" in the alias "Onyango Mama"), folded.
const STOPWORDS: &[&str] = &[
    "mama", "baba", "dada", "kaka", "bibi", "babu", "kijana", "mzee", "mtoto", "binti", "bwana",
    "shangazi", "mjomba", "shosho", "cucu", "nyanya", "mwana", "mrs", "miss", "sir", "madam",
    "mister", "the", "and", "von", "van", "der", "den", "del", "della", "ole", "bin", "ibn", "abu",
    "boy", "girl", "son", "daughter", "sister", "brother", "mother", "father", "aunt", "aunty",
    "auntie", "uncle", "junior", "senior", "jnr", "snr", "baby", "mum", "mom", "dad", "papa",
    "kid", "child", "wife", "husband", "madame", "mwalimu", "daktari", "pastor", "sheikh", "imam",
];

/// Words that make a name an organisation's (an employer, an agency): matched
/// as a phrase only, never by its words, which are common ("Domestic").
const ORG_WORDS: &[&str] = &[
    "ltd",
    "limited",
    "co",
    "company",
    "agency",
    "agencies",
    "enterprise",
    "enterprises",
    "recruiters",
    "recruitment",
    "recruiting",
    "services",
    "bureau",
    "inc",
    "plc",
    "llc",
    "group",
    "international",
    "lodge",
    "bar",
    "hotel",
    "estate",
    "works",
    "placements",
    "placement",
    "manpower",
    "fishing",
    "farm",
    "farms",
    "consultants",
    "consultancy",
    "associates",
    "holdings",
    "traders",
    "trading",
    "transport",
    "sacco",
    "academy",
    "school",
    "church",
    "club",
    "restaurant",
    "shop",
    "store",
    "salon",
    "quarry",
    "tea",
    "industries",
    "investments",
    "employment",
    "staffing",
    "travel",
    "travels",
    "tours",
    "logistics",
    "supermarket",
    "bakery",
    "garage",
    "mall",
    "centre",
    "center",
    "agents",
];

/// Legal suffixes an organisation is also named without.
const LEGAL_SUFFIXES: &[&str] = &["ltd", "limited", "co", "company", "inc", "plc", "llc"];

#[derive(Default)]
pub(super) struct Build {
    patterns: Vec<String>,
    needles: Vec<Needle>,
    digits: Vec<u64>,
    digit_meta: Vec<(IdentifierClass, HitKind)>,
    tokens: Vec<Token>,
}

impl Build {
    pub(super) fn finish(self) -> RecordMatcher {
        let searcher = if self.patterns.is_empty() {
            None
        } else {
            Engine::build(&self.patterns)
        };
        let letter_tokens = self
            .tokens
            .iter()
            .any(|t| t.compact.chars().any(char::is_alphabetic));
        let inner = inner_values(&self.patterns, &self.needles);
        RecordMatcher {
            searcher,
            inner,
            patterns: self.patterns,
            needles: self.needles,
            digits: self.digits,
            digit_meta: self.digit_meta,
            tokens: self.tokens,
            letter_tokens,
        }
    }

    /// Adds one folded phrase (the first class given for a phrase wins):
    /// a value as given.
    fn phrase(&mut self, folded: &str, class: IdentifierClass, kind: HitKind) {
        self.add(folded, class, kind, true);
    }

    /// Adds a phrase derived from a value (a part of a name, a variant).
    fn derived(&mut self, folded: &str, class: IdentifierClass, kind: HitKind) {
        self.add(folded, class, kind, false);
    }

    fn add(&mut self, folded: &str, class: IdentifierClass, kind: HitKind, explicit: bool) {
        let folded = folded.trim();
        if folded.chars().filter(|c| c.is_alphanumeric()).count() < 2
            || self.patterns.iter().any(|p| p == folded)
        {
            return;
        }
        let word_start = folded.chars().next().is_some_and(char::is_alphanumeric);
        let word_end = folded
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        self.patterns.push(folded.to_owned());
        self.needles.push(Needle {
            class,
            kind,
            word_start,
            word_end,
            strong: explicit && class == IdentifierClass::Identity,
        });
    }

    pub(super) fn name(&mut self, raw: &str, class: IdentifierClass) {
        let folded = fold_str(raw);
        self.phrase(&folded, class, HitKind::Name);
        if folded.contains('-') {
            self.derived(&folded.replace('-', " "), class, HitKind::Name);
        }
        let words: Vec<&str> = folded
            .split([' ', '-', ',', ';', '/'])
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() < 2 {
            return;
        }
        if words.iter().any(|w| ORG_WORDS.contains(w)) {
            // An organisation: also without its legal suffix, never by word.
            if words.last().is_some_and(|w| LEGAL_SUFFIXES.contains(w)) {
                let stripped = words[..words.len() - 1].join(" ");
                if stripped.contains(' ') {
                    self.derived(&stripped, class, HitKind::Name);
                }
            }
            return;
        }
        for w in words {
            if w.chars().count() >= 3 && !STOPWORDS.contains(&w) {
                self.derived(w, class, HitKind::Name);
            }
        }
    }

    pub(super) fn email(&mut self, raw: &str, class: IdentifierClass) {
        let folded = fold_str(raw);
        self.phrase(&folded, class, HitKind::Email);
        self.token(&folded, class, HitKind::Email);
    }

    /// An address or a place: the phrase, the phrase without commas, and each
    /// comma-separated part that has a number in it ("House 133").
    pub(super) fn address(&mut self, raw: &str, class: IdentifierClass) {
        let kind = HitKind::Address;
        let folded = fold_str(raw);
        self.phrase(&folded, class, kind);
        if folded.contains([',', ';']) {
            let plain = folded
                .split([',', ';', ' '])
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            self.phrase(&plain, class, kind);
            for part in folded.split([',', ';']) {
                let part = part.trim();
                if part.chars().any(|c| c.is_ascii_digit())
                    && part.chars().filter(|c| c.is_alphanumeric()).count() >= 4
                {
                    self.phrase(part, class, kind);
                }
            }
        }
    }

    /// An ID, passport, refugee ID or plate: compared by letters and digits
    /// (spaces, dashes and case ignored).
    pub(super) fn number(&mut self, kind: HitKind, raw: &str, class: IdentifierClass) {
        if kind == HitKind::Phone {
            self.phone(raw, class);
            return;
        }
        let folded = fold_str(raw);
        let compact: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
        if compact.chars().count() < 4 {
            return;
        }
        if compact.bytes().all(|b| b.is_ascii_digit()) {
            self.digit_key(&compact, class, kind);
        }
        self.token(&compact, class, kind);
        // The pattern pass finds numbers of the shapes it knows however they
        // are spaced (a run of digits, with the letters before it); other
        // shapes (`kak-123456`) need the phrase.
        if !pattern_shaped(&compact) {
            self.phrase(&compact, class, kind);
            if folded != compact {
                self.derived(&folded, class, kind);
            }
        }
    }

    /// A phone: every digit spelling of it (international, with `00`, national
    /// with and without the trunk `0`).
    pub(super) fn phone(&mut self, raw: &str, class: IdentifierClass) {
        let folded = fold_str(raw);
        let digits: String = folded.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 6 {
            return;
        }
        let international = if folded.starts_with('+') {
            Some(digits.as_str())
        } else {
            digits.strip_prefix("00")
        };
        let split = match international {
            Some(intl) => split_international(intl),
            None => split_national(&digits, &folded),
        };
        let kind = HitKind::Phone;
        match split {
            Some((cc, national)) => {
                let national = national.trim_start_matches('0');
                for key in [
                    format!("{cc}{national}"),
                    format!("00{cc}{national}"),
                    format!("{cc}0{national}"),
                    format!("0{national}"),
                ] {
                    self.digit_key(&key, class, kind);
                }
                if national.len() >= 7 {
                    self.digit_key(national, class, kind);
                }
            }
            None => self.digit_key(&digits, class, kind),
        }
    }

    fn digit_key(&mut self, digits: &str, class: IdentifierClass, kind: HitKind) {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let value = digits.bytes().try_fold(0u64, |v, b| {
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        });
        let Some(key) = value.and_then(|v| digit_key(v, digits.len())) else {
            return;
        };
        if !self.digits.contains(&key) {
            self.digits.push(key);
            self.digit_meta.push((class, kind));
        }
    }

    fn token(&mut self, folded: &str, class: IdentifierClass, kind: HitKind) {
        let compact: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
        if compact.chars().count() >= 4 && !self.tokens.iter().any(|t| t.compact == compact) {
            self.tokens.push(Token {
                compact,
                class,
                kind,
            });
        }
    }
}

/// Where a subject value given as such (a strong needle) occurs, as whole
/// words, inside a phrase of another class.
fn inner_values(patterns: &[String], needles: &[Needle]) -> Vec<Inner> {
    let mut out = Vec::new();
    for (outer, (container, n)) in patterns.iter().zip(needles).enumerate() {
        if n.class == IdentifierClass::Identity {
            continue;
        }
        // Where a word may start in the container (and so a whole-word value).
        let mut prev_alnum = false;
        let starts: Vec<(usize, bool)> = container
            .char_indices()
            .map(|(i, c)| {
                let word_start = !prev_alnum;
                prev_alnum = c.is_alphanumeric();
                (i, word_start)
            })
            .collect();
        for (id, (p, m)) in patterns.iter().zip(needles).enumerate() {
            if !m.strong || p.len() >= container.len() {
                continue;
            }
            for &(offset, word_start) in &starts {
                if (m.word_start && !word_start) || !container[offset..].starts_with(p.as_str()) {
                    continue;
                }
                let after = container[offset + p.len()..].chars().next();
                if !m.word_end || after.is_none_or(|c| !c.is_alphanumeric()) {
                    out.push(Inner {
                        outer,
                        id,
                        offset,
                        len: p.len(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|i| (i.outer, i.offset));
    out
}

/// Whether the pattern pass finds this (compact, folded) number by itself:
/// up to 18 digits, or a passport or KRA PIN shape.
fn pattern_shaped(compact: &str) -> bool {
    let b = compact.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let digits = b[letters..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let rest = &b[letters + digits..];
    (letters == 0 && rest.is_empty() && digits <= 18)
        || (letters <= 2 && (6..=8).contains(&digits) && rest.is_empty())
        || (letters == 1
            && matches!(b[0], b'a' | b'p')
            && digits == 9
            && rest.len() == 1
            && rest[0].is_ascii_alphabetic())
}

/// Country code and national number of an international number's digits.
fn split_international(digits: &str) -> Option<(String, String)> {
    if let Some(national) = digits.strip_prefix("254") {
        return Some(("254".into(), national.to_owned()));
    }
    let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
    let cc = number.code().value().to_string();
    let national = digits.strip_prefix(cc.as_str())?.to_owned();
    Some((cc, national))
}

/// Country code and national number of a number written without `+`;
/// Kenya is the default region.
fn split_national(digits: &str, folded: &str) -> Option<(String, String)> {
    match digits.len() {
        10 if digits.starts_with('0') => Some(("254".into(), digits[1..].to_owned())),
        12 if digits.starts_with("254") => Some(("254".into(), digits[3..].to_owned())),
        9 => Some(("254".into(), digits.to_owned())),
        _ => {
            let number = phonenumber::parse(Some(phonenumber::country::Id::KE), folded).ok()?;
            let cc = number.code().value().to_string();
            let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
            let national = e164
                .strip_prefix('+')?
                .strip_prefix(cc.as_str())?
                .to_owned();
            Some((cc, national))
        }
    }
}
