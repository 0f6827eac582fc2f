//! The free-text identifier detector.
//!
//! Narratives, notes and message bodies are scanned before they leave the
//! server; every identifier found is a [`Hit`] with the policy class
//! (IDENTITY, LOCATION, SUSPECT) that decides what the viewer gets.
//!
//! Two passes over one folded copy of the text (lower-cased, accents and
//! invisible characters removed, whitespace runs collapsed; a byte map leads
//! back to the original):
//!
//! 1. **Record-aware** ([`RecordMatcher`], built once per referral, in a few
//!    microseconds): the subject's names and aliases (also each name part),
//!    emails, addresses and locations, and the suspects' names, employers and
//!    plates, searched for at once with Aho-Corasick (leftmost-longest), whole
//!    words only. "Wanjirũ" in the record matches "WANJIRU" and "wanjiru";
//!    "Ann" does not match in "Announcement".
//! 2. **Patterns** ([`Detector`], compiled once per process): one combined
//!    regex finds emails, GPS coordinates, KRA PINs, passport numbers, Kenyan
//!    plates and runs of digits. A run of digits is compared with the record's
//!    phones (any spelling: `+254712345678`, `0712 345 678`, `0712-345-678`,
//!    `254712345678`, `+254 712 345 678`, `(0712) 345 678`) and ID numbers; if
//!    it is none of them it is flagged when it is a Kenyan mobile number, or a
//!    national ID number right after an ID keyword ("ID no. 12345678"; a bare
//!    8-digit number is not flagged). A pattern hit that is a record value
//!    takes the record's class (a suspect's phone is SUSPECT).
//!
//! Overlapping hits are resolved into one: the record-aware one wins, then the
//! longer one, and the kept hit is widened to cover the overlapping ones so
//! that no part of an identifier is left out. The one exception: where a
//! suspect's name or a place contains one of the subject's own names (a
//! suspect who shares the subject's family name), that name is its own
//! IDENTITY hit, so it gets the subject's protection.
//!
//! Nothing here panics on any input, and every hit is on char boundaries of
//! the original text (the tests check both on arbitrary strings).

mod cache;
mod fold;
mod patterns;
mod record;
#[cfg(test)]
mod tests;

use std::{borrow::Cow, sync::LazyLock};

pub use cache::MatcherCache;
pub use record::{RecordIdentifiers, RecordMatcher};

use fold::Folded;
use patterns::Patterns;

/// Which policy class a detected identifier belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierClass {
    /// Names, aliases, ID/passport/refugee numbers, phones, email, home address.
    Identity,
    /// Current whereabouts, shelter address, coordinates.
    Location,
    /// Suspects' names and phones, vehicles, employers, recruitment agencies.
    Suspect,
}

/// What kind of identifier a hit is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum HitKind {
    /// A person's or an organisation's name, or an alias.
    Name,
    /// A phone number.
    Phone,
    /// A national ID number.
    NationalId,
    /// A passport number.
    Passport,
    /// A refugee or asylum-seeker ID.
    RefugeeId,
    /// An email address.
    Email,
    /// An address or a named place.
    Address,
    /// A KRA PIN.
    KraPin,
    /// GPS coordinates.
    Coordinates,
    /// A vehicle registration plate.
    VehiclePlate,
    /// Any other record number.
    Other,
}

/// One detected identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Byte offset of the start in the original text (a char boundary).
    pub start: usize,
    /// Byte offset one past the end in the original text (a char boundary).
    pub end: usize,
    /// The policy class.
    pub class: IdentifierClass,
    /// What it is.
    pub kind: HitKind,
    /// Whether it is a value from the referral's record (record-aware) rather
    /// than only a pattern match.
    pub from_record: bool,
}

impl Hit {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the hit covers nothing (never the case for a hit from `scan`).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The pattern recognisers, compiled once per process; `Send + Sync`.
pub struct Detector {
    patterns: Patterns,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").finish_non_exhaustive()
    }
}

static GLOBAL: LazyLock<Result<Detector, regex::Error>> = LazyLock::new(Detector::new);

impl Detector {
    /// Compiles the patterns. They are fixed, so this fails only if the
    /// regex engine rejects them (tests make sure it does not).
    pub fn new() -> Result<Self, regex::Error> {
        Ok(Self {
            patterns: Patterns::new()?,
        })
    }

    /// The process-wide detector, compiled on first use.
    pub fn try_global() -> Result<&'static Detector, &'static regex::Error> {
        GLOBAL.as_ref()
    }

    /// The process-wide detector, compiled on first use.
    ///
    /// # Panics
    /// If the built-in patterns do not compile, which the unit tests rule
    /// out; a detector that cannot detect must not let text through.
    pub fn global() -> &'static Detector {
        match GLOBAL.as_ref() {
            Ok(detector) => detector,
            Err(e) => panic!("the identifier patterns do not compile: {e}"),
        }
    }

    #[cfg(test)]
    pub(crate) fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// Every identifier in `text`: record-aware hits first in priority, then
    /// pattern hits; sorted by start and non-overlapping.
    pub fn scan(&self, record: &RecordMatcher, text: &str) -> Vec<Hit> {
        if text.is_empty() {
            return Vec::new();
        }
        let folded = Folded::new(text);
        let mut hits = Vec::with_capacity(16);
        let mut strong = Vec::new();
        record.find_phrases(&folded, &mut hits, &mut strong);
        self.patterns.find(record, &folded, &mut hits);
        resolve(text, hits, &mut strong)
    }
}

/// Sorts hits and merges overlapping ones: in each group of overlapping hits
/// the record-aware one wins, then the longer one (then the earlier one), and
/// it is widened to the union of the group.
///
/// One exception comes first: a record value of another class that contains
/// one of the subject's identifiers as given in the record (a suspect "Grace
/// Kiprono" when the subject's family name is Kiprono, a place named after the
/// subject; `strong` holds their ranges) is split around it, so that the
/// subject's part stays IDENTITY (pseudonymised for a protected subject) and
/// the rest keeps its own class. A mere part of a subject's alias does not
/// split a suspect's name ("Moraa" of the alias "Moraa Dada" in a suspect
/// "Moraa Nyambura").
fn resolve(text: &str, mut hits: Vec<Hit>, strong: &mut [(usize, usize)]) -> Vec<Hit> {
    if hits.len() <= 1 {
        return hits;
    }
    sort(&mut hits);
    if !strong.is_empty() {
        strong.sort_unstable();
        if carve_identity(text, &mut hits, strong) {
            sort(&mut hits);
        }
    }
    // Merge in place: `kept` hits are final, `current` is the open group.
    let mut kept = 0;
    let mut current: Option<(Hit, usize, usize)> = None;
    for i in 0..hits.len() {
        let hit = hits[i];
        if hit.is_empty() {
            continue;
        }
        match &mut current {
            Some((winner, _, end)) if hit.start < *end => {
                if better(&hit, winner) {
                    *winner = hit;
                }
                *end = (*end).max(hit.end);
            }
            _ => {
                if let Some((winner, start, end)) = current.take() {
                    hits[kept] = Hit {
                        start,
                        end,
                        ..winner
                    };
                    kept += 1;
                }
                current = Some((hit, hit.start, hit.end));
            }
        }
    }
    if let Some((winner, start, end)) = current {
        hits[kept] = Hit {
            start,
            end,
            ..winner
        };
        kept += 1;
    }
    hits.truncate(kept);
    hits
}

/// By start, then longest first, then record-aware first.
fn order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    a.start
        .cmp(&b.start)
        .then(b.end.cmp(&a.end))
        .then(b.from_record.cmp(&a.from_record))
        .then(a.class.cmp(&b.class))
}

/// Sorts hits that come as a few sorted runs (record hits, then pattern hits).
fn sort(hits: &mut [Hit]) {
    hits.sort_by(order);
}

/// Splits record hits of class Location or Suspect around the record
/// Identity hits they contain (hits sorted by start). Returns whether any
/// hit was split.
fn carve_identity(text: &str, hits: &mut Vec<Hit>, strong: &[(usize, usize)]) -> bool {
    let mut pieces = Vec::new();
    let mut split = Vec::new();
    for (i, outer) in hits.iter().enumerate() {
        if !outer.from_record || outer.class == IdentifierClass::Identity {
            continue;
        }
        let mut cursor = outer.start;
        let before = pieces.len();
        for inner in hits[i + 1..].iter().take_while(|h| h.start < outer.end) {
            if inner.from_record
                && inner.class == IdentifierClass::Identity
                && strong.binary_search(&(inner.start, inner.end)).is_ok()
                && inner.start >= cursor
                && inner.end <= outer.end
                && inner.len() < outer.len()
            {
                push_piece(text, outer, cursor, inner.start, &mut pieces);
                cursor = inner.end;
                split.push(i);
            }
        }
        if split.last() == Some(&i) {
            push_piece(text, outer, cursor, outer.end, &mut pieces);
        } else {
            pieces.truncate(before);
        }
    }
    if split.is_empty() {
        return false;
    }
    split.dedup();
    for i in split.into_iter().rev() {
        hits.swap_remove(i);
    }
    hits.extend(pieces);
    true
}

/// The part `start..end` of `outer`, trimmed of spaces and punctuation, if it
/// has a letter or digit left.
fn push_piece(text: &str, outer: &Hit, start: usize, end: usize, pieces: &mut Vec<Hit>) {
    let Some(part) = text.get(start..end) else {
        return;
    };
    let trimmed = part.trim_start_matches(|c: char| !c.is_alphanumeric());
    let start = start + (part.len() - trimmed.len());
    let trimmed = trimmed.trim_end_matches(|c: char| !c.is_alphanumeric());
    if !trimmed.is_empty() {
        pieces.push(Hit {
            start,
            end: start + trimmed.len(),
            ..*outer
        });
    }
}

fn better(a: &Hit, b: &Hit) -> bool {
    (a.from_record, a.len()) > (b.from_record, b.len())
}

/// Rebuilds `text` with each hit replaced by what `replacement` returns for it
/// (`None` keeps the original span). Hits must be sorted and non-overlapping
/// (as [`Detector::scan`] returns them); a hit that overlaps an earlier
/// replaced one, or is not on char boundaries of `text`, is skipped.
/// Borrows `text` when nothing is replaced.
pub fn replace_hits<'a>(
    text: &'a str,
    hits: &[Hit],
    mut replacement: impl FnMut(&Hit, &str) -> Option<Cow<'a, str>>,
) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for hit in hits {
        if hit.start < copied || hit.is_empty() {
            continue;
        }
        let (Some(before), Some(span)) =
            (text.get(copied..hit.start), text.get(hit.start..hit.end))
        else {
            continue;
        };
        if let Some(new) = replacement(hit, span) {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            buf.push_str(before);
            buf.push_str(&new);
            copied = hit.end;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(buf)
        }
    }
}
