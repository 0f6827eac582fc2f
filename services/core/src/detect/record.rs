//! Record-aware matching: the identifiers a referral's record holds, compiled
//! into one leftmost-longest Aho-Corasick search over folded phrases (names
//! and their parts, aliases, emails, addresses, locations, suspects' names and
//! employers, plates, ID numbers of unusual shapes) plus small tables that
//! the pattern pass consults (phone numbers in every spelling, ID and passport
//! numbers, plates, emails).

mod build;

use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind, Span, packed};

use super::{Hit, HitKind, IdentifierClass, fold::Folded};
use build::Build;

/// The identifiers known from a referral's record (plain strings as stored;
/// phones in E.164, though national spellings are accepted too).
///
/// `Debug` prints only how many values each list holds, never the values.
/// Serialised only inside sealed records (a referral's former identifiers).
#[derive(Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RecordIdentifiers {
    /// The subject's given name, family name, full name, aliases and
    /// next-of-kin names (class Identity). Multi-word names also match by
    /// each part (given name alone, family name alone).
    pub subject_names: Vec<String>,
    /// The subject's national ID, passport and refugee ID numbers and phones
    /// (class Identity), each with its kind.
    pub subject_numbers: Vec<(HitKind, String)>,
    /// The subject's email addresses (class Identity).
    pub subject_emails: Vec<String>,
    /// The subject's home address (class Identity).
    pub subject_addresses: Vec<String>,
    /// Current whereabouts, shelter or safe-house address (class Location).
    pub locations: Vec<String>,
    /// Suspects' names, employers and recruitment agencies (class Suspect).
    pub suspect_names: Vec<String>,
    /// Suspects' phones, E.164 (class Suspect).
    pub suspect_phones: Vec<String>,
    /// Suspects' vehicle plates (class Suspect).
    pub suspect_vehicles: Vec<String>,
}

impl RecordIdentifiers {
    /// Adds every identifier of `other` that this record does not list yet.
    pub fn absorb(&mut self, other: &Self) {
        fn add<T: Clone + PartialEq>(to: &mut Vec<T>, from: &[T]) {
            for value in from {
                if !to.contains(value) {
                    to.push(value.clone());
                }
            }
        }
        add(&mut self.subject_names, &other.subject_names);
        add(&mut self.subject_numbers, &other.subject_numbers);
        add(&mut self.subject_emails, &other.subject_emails);
        add(&mut self.subject_addresses, &other.subject_addresses);
        add(&mut self.locations, &other.locations);
        add(&mut self.suspect_names, &other.suspect_names);
        add(&mut self.suspect_phones, &other.suspect_phones);
        add(&mut self.suspect_vehicles, &other.suspect_vehicles);
    }

    /// Whether the record lists no identifier at all.
    pub fn is_empty(&self) -> bool {
        self.subject_names.is_empty()
            && self.subject_numbers.is_empty()
            && self.subject_emails.is_empty()
            && self.subject_addresses.is_empty()
            && self.locations.is_empty()
            && self.suspect_names.is_empty()
            && self.suspect_phones.is_empty()
            && self.suspect_vehicles.is_empty()
    }
}

impl fmt::Debug for RecordIdentifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordIdentifiers")
            .field("subject_names", &self.subject_names.len())
            .field("subject_numbers", &self.subject_numbers.len())
            .field("subject_emails", &self.subject_emails.len())
            .field("subject_addresses", &self.subject_addresses.len())
            .field("locations", &self.locations.len())
            .field("suspect_names", &self.suspect_names.len())
            .field("suspect_phones", &self.suspect_phones.len())
            .field("suspect_vehicles", &self.suspect_vehicles.len())
            .finish()
    }
}

/// Leftmost-longest multi-pattern search: Aho-Corasick's packed (Teddy,
/// SIMD) searcher, which builds in a few microseconds and is the fastest on
/// short texts, or its automaton where Teddy is not available (no SIMD, more
/// than 64 phrases).
#[derive(Clone)]
enum Engine {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl Engine {
    fn build(patterns: &[String]) -> Option<Self> {
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(patterns)
            .build();
        if let Some(searcher) = packed {
            return Some(Self::Packed(searcher));
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(patterns)
            .ok()
            .map(Self::Automaton)
    }

    /// The leftmost-longest match in `hay[from..to]`: (pattern, start, end).
    fn find(&self, hay: &str, from: usize, to: usize) -> Option<(usize, usize, usize)> {
        if from >= to || to > hay.len() {
            return None;
        }
        match self {
            Self::Packed(searcher) => searcher
                .find_in(
                    hay,
                    Span {
                        start: from,
                        end: to,
                    },
                )
                .map(|m| (m.pattern().as_usize(), m.start(), m.end())),
            Self::Automaton(ac) => ac
                .try_find(Input::new(hay).range(from..to))
                .ok()
                .flatten()
                .map(|m| (m.pattern().as_usize(), m.start(), m.end())),
        }
    }
}

/// One phrase: what a match of it is, and whether it must stand as a whole
/// word at either end (it must where it starts or ends with a letter or
/// digit).
#[derive(Clone, Copy)]
struct Needle {
    class: IdentifierClass,
    kind: HitKind,
    word_start: bool,
    word_end: bool,
    /// A subject value given as such (not a part of a multi-word name): it
    /// identifies the subject even inside a suspect's name.
    strong: bool,
}

/// A number of up to 18 digits as one integer that keeps its leading zeros:
/// `10^len + value` (so `0712345678` and `712345678` differ).
pub(crate) fn digit_key(value: u64, len: usize) -> Option<u64> {
    if len > 18 {
        return None;
    }
    10u64
        .checked_pow(u32::try_from(len).ok()?)?
        .checked_add(value)
}

/// A record value compared by its letters and digits only, lower-cased
/// (passports, refugee IDs, plates, emails).
#[derive(Clone)]
struct Token {
    compact: String,
    class: IdentifierClass,
    kind: HitKind,
}

/// A referral's identifiers compiled for scanning. Build it once per record
/// (microseconds) and reuse it for every text field of that record's reply.
///
/// `Debug` prints only sizes, never the identifiers.
#[derive(Clone)]
pub struct RecordMatcher {
    /// The searcher over `patterns`; `None` when there are none, or (never
    /// for a sane record) when none could be built, and then a plain
    /// substring search over `patterns` takes its place.
    searcher: Option<Engine>,
    patterns: Vec<String>,
    needles: Vec<Needle>,
    /// Subject values given as such inside the other phrases.
    inner: Vec<Inner>,
    /// Record numbers as [`digit_key`]s, with their class and kind.
    digits: Vec<u64>,
    digit_meta: Vec<(IdentifierClass, HitKind)>,
    tokens: Vec<Token>,
    letter_tokens: bool,
}

/// Needle `id` occurs at `offset` (folded bytes) in needle `outer`.
#[derive(Clone, Copy)]
struct Inner {
    outer: usize,
    id: usize,
    offset: usize,
    len: usize,
}

impl fmt::Debug for RecordMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordMatcher")
            .field("phrases", &self.needles.len())
            .field("numbers", &self.digits.len())
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Default for RecordMatcher {
    fn default() -> Self {
        Self::empty()
    }
}

impl RecordMatcher {
    /// Compiles `ids`. Subject values take precedence over suspect values
    /// when the same string is both (a shared name part stays Identity).
    pub fn new(ids: &RecordIdentifiers) -> Self {
        let mut b = Build::default();
        for name in &ids.subject_names {
            b.name(name, IdentifierClass::Identity);
        }
        for (kind, value) in &ids.subject_numbers {
            b.number(*kind, value, IdentifierClass::Identity);
        }
        for email in &ids.subject_emails {
            b.email(email, IdentifierClass::Identity);
        }
        for address in &ids.subject_addresses {
            b.address(address, IdentifierClass::Identity);
        }
        for location in &ids.locations {
            b.address(location, IdentifierClass::Location);
        }
        for name in &ids.suspect_names {
            b.name(name, IdentifierClass::Suspect);
        }
        for phone in &ids.suspect_phones {
            b.phone(phone, IdentifierClass::Suspect);
        }
        for plate in &ids.suspect_vehicles {
            b.number(HitKind::VehiclePlate, plate, IdentifierClass::Suspect);
        }
        b.finish()
    }

    /// A matcher that knows no identifiers: only the patterns apply.
    pub fn empty() -> Self {
        Self {
            searcher: None,
            patterns: Vec::new(),
            needles: Vec::new(),
            inner: Vec::new(),
            digits: Vec::new(),
            digit_meta: Vec::new(),
            tokens: Vec::new(),
            letter_tokens: false,
        }
    }

    /// Whether the record gave no identifier at all.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty() && self.digits.is_empty() && self.tokens.is_empty()
    }

    /// The record phrases in `folded`, leftmost-longest, whole words only
    /// (where the longest phrase at a place is not a whole word, a shorter one
    /// may be), sorted by start. Inside a LOCATION or SUSPECT phrase, the
    /// subject's values that it contains are hits too (so the subject's name
    /// inside a suspect's name is seen), and their ranges go to `strong`, for
    /// [`super::resolve`] to split the outer hit around them.
    pub(crate) fn find_phrases(
        &self,
        folded: &Folded<'_>,
        hits: &mut Vec<Hit>,
        strong: &mut Vec<(usize, usize)>,
    ) {
        let mut out = Out { hits, strong };
        match &self.searcher {
            Some(engine) => self.search(engine, folded, &mut out),
            None => self.naive(folded, &mut out),
        }
    }

    fn search(&self, engine: &Engine, folded: &Folded<'_>, out: &mut Out<'_>) {
        let hay = folded.text.as_str();
        let to = hay.len();
        let mut pos = 0;
        while let Some((id, s, e)) = engine.find(hay, pos, to) {
            match self.check(folded, id, s, e) {
                Check::Word(n) => {
                    self.accept(folded, id, n, s, e, out);
                    pos = e.max(pos + 1);
                }
                Check::BadStart => pos = next_char(hay, s),
                Check::BadEnd => {
                    // A shorter phrase at the same place may end a word.
                    let mut limit = e;
                    while limit > s + 1 {
                        limit -= 1;
                        match engine.find(hay, s, limit) {
                            Some((id, start, end)) if start == s => {
                                match self.check(folded, id, s, end) {
                                    Check::Word(n) => {
                                        self.accept(folded, id, n, s, end, out);
                                        break;
                                    }
                                    Check::BadEnd => limit = end,
                                    Check::BadStart => break,
                                }
                            }
                            _ => break,
                        }
                    }
                    pos = next_char(hay, s);
                }
            }
        }
    }

    /// Records a hit and, inside a phrase of another class, the subject's
    /// values that it contains (worked out when the matcher was built).
    fn accept(
        &self,
        folded: &Folded<'_>,
        id: usize,
        n: Needle,
        s: usize,
        e: usize,
        out: &mut Out<'_>,
    ) {
        out.push(folded, n, s, e);
        if n.class == IdentifierClass::Identity {
            return;
        }
        for inner in self.inner.iter().filter(|i| i.outer == id) {
            if let Some(&m) = self.needles.get(inner.id) {
                let fs = s + inner.offset;
                let (start, end) = out.push(folded, m, fs, (fs + inner.len).min(e));
                out.strong.push((start, end));
            }
        }
    }

    fn check(&self, folded: &Folded<'_>, id: usize, fs: usize, fe: usize) -> Check {
        let Some(&n) = self.needles.get(id) else {
            return Check::BadStart;
        };
        if n.word_start && !folded.is_word_start(fs) {
            Check::BadStart
        } else if n.word_end && !folded.is_word_end(fe) {
            Check::BadEnd
        } else {
            Check::Word(n)
        }
    }

    /// Plain substring search, for when the automaton could not be built.
    fn naive(&self, folded: &Folded<'_>, out: &mut Out<'_>) {
        let text = folded.text.as_str();
        for (id, p) in self.patterns.iter().enumerate() {
            let mut from = 0;
            while let Some(pos) = text.get(from..).and_then(|t| t.find(p.as_str())) {
                let fs = from + pos;
                if let Check::Word(n) = self.check(folded, id, fs, fs + p.len()) {
                    self.accept(folded, id, n, fs, fs + p.len(), out);
                }
                from = next_char(text, fs);
            }
        }
    }

    /// The record number with this [`digit_key`].
    pub(crate) fn lookup_digits(&self, key: u64) -> Option<(IdentifierClass, HitKind)> {
        // Branch-free first: most runs of digits are no record number.
        if !self.digits.iter().fold(false, |any, &k| any | (k == key)) {
            return None;
        }
        let i = self.digits.iter().position(|&k| k == key)?;
        self.digit_meta.get(i).copied()
    }

    /// The record value whose letters and digits are those of `candidate`
    /// (already folded).
    pub(crate) fn lookup_token(&self, candidate: &str) -> Option<(IdentifierClass, HitKind)> {
        if self.tokens.is_empty() {
            return None;
        }
        self.tokens
            .iter()
            .find(|t| {
                t.compact.chars().eq(candidate
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .map(|c| c.to_ascii_lowercase()))
            })
            .map(|t| (t.class, t.kind))
    }

    /// [`RecordMatcher::lookup_token`] for `first` followed by `second`.
    pub(crate) fn lookup_token_parts(
        &self,
        first: &str,
        second: &str,
    ) -> Option<(IdentifierClass, HitKind)> {
        // Separators aside, the candidate is at most this long.
        let most = first.len() + second.len();
        self.tokens
            .iter()
            .find(|t| {
                t.compact.len() <= most
                    && t.compact.chars().eq(first
                        .chars()
                        .chain(second.chars())
                        .filter(|c| c.is_alphanumeric())
                        .map(|c| c.to_ascii_lowercase()))
            })
            .map(|t| (t.class, t.kind))
    }

    /// Whether some record number has letters (a passport or refugee ID),
    /// so a digit run preceded by letters is worth comparing.
    pub(crate) fn has_letter_tokens(&self) -> bool {
        self.letter_tokens
    }
}

enum Check {
    Word(Needle),
    BadStart,
    BadEnd,
}

struct Out<'h> {
    hits: &'h mut Vec<Hit>,
    strong: &'h mut Vec<(usize, usize)>,
}

impl Out<'_> {
    fn push(&mut self, folded: &Folded<'_>, n: Needle, fs: usize, fe: usize) -> (usize, usize) {
        let (start, end) = folded.original_range(fs, fe);
        self.hits.push(Hit {
            start,
            end,
            class: n.class,
            kind: n.kind,
            from_record: true,
        });
        (start, end)
    }
}

/// The offset of the character after the one at `at`.
fn next_char(text: &str, at: usize) -> usize {
    at + text
        .get(at..)
        .and_then(|t| t.chars().next())
        .map_or(1, char::len_utf8)
}
