//! The pattern pass: one combined regex over the folded text finds every
//! candidate (emails, coordinates, KRA PINs, passports, plates, and runs of
//! digits); each candidate is then told apart by its shape and checked
//! against the record, so a record phone in any spelling, or a pattern hit
//! that is a record value, gets the record's class. A run of digits is a
//! national ID number when an ID keyword comes right before it ("ID no.",
//! "national ID:", "kitambulisho"), a Kenyan mobile number when it has the
//! shape of one, and is otherwise left alone.

use regex::Regex;

use super::{
    Hit, HitKind, IdentifierClass,
    fold::Folded,
    record::{RecordMatcher, digit_key},
};

/// The combined pattern, over folded (lower-case, one-space) text. Order
/// matters where two alternatives start at the same place (leftmost-first):
/// coordinates before a digit run. Only ASCII classes and ASCII word
/// boundaries, so the lazy DFA handles every input.
const PATTERN: &str = concat!(
    // email
    r"[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)+",
    // GPS coordinates: -1.2921, 36.8219
    r"|-?[0-9]{1,2}\.[0-9]{3,10}, ?-?[0-9]{1,3}\.[0-9]{3,10}",
    // KRA PIN: A012345678Z
    r"|(?-u:\b)[ap][0-9]{9}[a-z](?-u:\b)",
    // passport: A1234567, BK6945343
    r"|(?-u:\b)[a-z]{1,2}[0-9]{6,8}(?-u:\b)",
    // Kenyan plate: KDA 123A, KBZ123X, KMDA 123A
    r"|(?-u:\b)k[a-z]{2,3} ?[0-9]{3}[a-z](?-u:\b)",
    // digits with single separators between groups: 0712 345 678,
    // 0712-345-678, (0754) 756 270, +254 (0) 712 345 678, 12/12/2001
    r"|(?:\+|\(\+?)?[0-9]+(?:(?:[ ./\-]|\) ?|\)[.\-]| ?\()[0-9]+)*",
);

/// At most this many bytes of a match come before its first digit (`kmda `
/// of a plate, `(+` of a phone); emails, which need no digit, are searched
/// for in the whole text.
const MAX_PREFIX: usize = 8;

/// The compiled pattern pass.
pub(crate) struct Patterns {
    re: Regex,
}

impl Patterns {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(Self {
            re: Regex::new(PATTERN)?,
        })
    }

    /// Pushes every pattern hit in `folded` (original offsets), by start.
    pub(crate) fn find(&self, record: &RecordMatcher, folded: &Folded<'_>, hits: &mut Vec<Hit>) {
        let hay = folded.text.as_str();
        let emails = hay.contains('@');
        let mut run = Run {
            record,
            folded,
            hits,
            emails,
        };
        if emails {
            for m in self.re.find_iter(hay) {
                run.candidate(m.start(), m.end(), m.as_str());
            }
        } else {
            self.by_digits(hay, |start, end| {
                if let Some(s) = hay.get(start..end) {
                    run.candidate(start, end, s);
                }
            });
        }
    }

    /// `find_iter` for a text without `@`, faster: every match then has a
    /// digit at most MAX_PREFIX bytes after its start, so each search starts
    /// just before the next digit and the words between numbers are skipped;
    /// and a plain run of digits (no letter, `-` or plate shape next to it),
    /// by far the most common match, is read by [`plain_run`] without the
    /// regex. Same matches as `find_iter` (a property test compares them).
    fn by_digits(&self, hay: &str, mut each: impl FnMut(usize, usize)) {
        let bytes = hay.as_bytes();
        let mut pos = 0;
        while let Some(digit) = next_digit(bytes, pos) {
            let mut from = digit.saturating_sub(MAX_PREFIX).max(pos);
            if let Some((start, end)) = plain_run(bytes, from, digit) {
                pos = end;
                each(start, end);
                continue;
            }
            while !hay.is_char_boundary(from) {
                from += 1;
            }
            let Some(m) = self.re.find_at(hay, from) else {
                break;
            };
            pos = m.end().max(digit + 1);
            each(m.start(), m.end());
        }
    }

    /// The matches of a plain `find_iter` and of `by_digits`, for tests.
    #[cfg(test)]
    pub(crate) fn both_ways(&self, hay: &str) -> (Spans, Spans) {
        let plain = self
            .re
            .find_iter(hay)
            .map(|m| (m.start(), m.end()))
            .collect();
        let mut skipping = Vec::new();
        self.by_digits(hay, |start, end| skipping.push((start, end)));
        (plain, skipping)
    }
}

/// The regex's match for the digit at `digit` (the first at or after
/// `from`, where the search starts) when it can only be a run of digits:
/// the byte before is no letter (passport, KRA PIN) and no `-`
/// (coordinates), and the digits are not three followed by a letter (a
/// plate) nor one or two followed by `.` (coordinates). Then the match is
/// the run: an optional `+`, `(` or `(+`, digits, and more digits after
/// single separators, exactly as the last alternative of [`PATTERN`] reads.
/// `None`: let the regex decide.
fn plain_run(bytes: &[u8], from: usize, digit: usize) -> Option<(usize, usize)> {
    let at = |i: usize| bytes.get(i).copied();
    let is_digit = |i: usize| at(i).is_some_and(|b| b.is_ascii_digit());
    let digits_from = |mut i: usize| {
        while is_digit(i) {
            i += 1;
        }
        i
    };
    if digit > 0 && at(digit - 1).is_some_and(|b| b.is_ascii_alphabetic() || b == b'-') {
        return None;
    }
    let first_end = digits_from(digit);
    let first_len = first_end - digit;
    let after = at(first_end);
    if (first_len == 3 && after.is_some_and(|b| b.is_ascii_alphabetic()))
        || ((1..=2).contains(&first_len) && after == Some(b'.'))
    {
        return None;
    }
    // The optional prefix, within the searched part.
    let mut start = digit;
    if start > from && at(start - 1) == Some(b'+') {
        start -= 1;
        if start > from && at(start - 1) == Some(b'(') {
            start -= 1;
        }
    } else if start > from && at(start - 1) == Some(b'(') {
        start -= 1;
    }
    // Groups after single separators: [ ./-], ")", ") ", ")." or ")-", "(" or " (".
    let mut end = first_end;
    loop {
        let next = match at(end) {
            Some(b' ' | b'.' | b'/' | b'-') if is_digit(end + 1) => end + 1,
            Some(b')') if is_digit(end + 1) => end + 1,
            Some(b')') if matches!(at(end + 1), Some(b' ' | b'.' | b'-')) && is_digit(end + 2) => {
                end + 2
            }
            Some(b'(') if is_digit(end + 1) => end + 1,
            Some(b' ') if at(end + 1) == Some(b'(') && is_digit(end + 2) => end + 2,
            _ => break,
        };
        end = digits_from(next);
    }
    Some((start, end))
}

/// Match ranges, for tests.
#[cfg(test)]
pub(crate) type Spans = Vec<(usize, usize)>;

/// The offset of the first ASCII digit at or after `from`, eight bytes at a
/// time: in a word `w`, byte `b` is a digit iff `b ^ 0x30 < 10`, and
/// `(x - 0x0a..) & !x & 0x80..` flags (at least, and first) the bytes of `x`
/// below 10; bytes of 0x80 and above never are.
pub(crate) fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let rest = bytes.get(from..)?;
    let mut base = from;
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w) ^ (LOW * 0x30);
        let flags = x.wrapping_sub(LOW * 10) & !x & HIGH;
        if flags != 0 {
            return Some(base + (flags.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| base + p)
}

struct Run<'a, 't> {
    record: &'a RecordMatcher,
    folded: &'a Folded<'t>,
    hits: &'a mut Vec<Hit>,
    /// Whether the text has an `@` at all.
    emails: bool,
}

impl Run<'_, '_> {
    fn push(
        &mut self,
        fs: usize,
        fe: usize,
        class: IdentifierClass,
        kind: HitKind,
        from_record: bool,
    ) {
        let (start, end) = self.folded.original_range(fs, fe);
        self.hits.push(Hit {
            start,
            end,
            class,
            kind,
            from_record,
        });
    }

    /// A pattern value that may be a record value: the record's class if so.
    fn token(&mut self, fs: usize, fe: usize, s: &str, class: IdentifierClass, kind: HitKind) {
        match self.record.lookup_token(s) {
            Some((class, kind)) => self.push(fs, fe, class, kind, true),
            None => self.push(fs, fe, class, kind, false),
        }
    }

    fn candidate(&mut self, fs: usize, fe: usize, s: &str) {
        let Some(&first) = s.as_bytes().first() else {
            return;
        };
        if self.emails && s.contains('@') {
            self.token(fs, fe, s, IdentifierClass::Identity, HitKind::Email);
        } else if first.is_ascii_alphabetic() {
            self.lettered(fs, fe, s);
        } else if s.contains(',') {
            self.push(
                fs,
                fe,
                IdentifierClass::Location,
                HitKind::Coordinates,
                false,
            );
        } else {
            self.digits(fs, fe);
        }
    }

    /// A candidate that starts with a letter: KRA PIN, passport or plate.
    fn lettered(&mut self, fs: usize, fe: usize, s: &str) {
        let b = s.as_bytes();
        let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let rest = &b[letters..];
        let all_digits = |x: &[u8]| x.iter().all(u8::is_ascii_digit);
        if b.len() == 11 && letters == 1 && all_digits(&b[1..10]) && b[10].is_ascii_alphabetic() {
            self.token(fs, fe, s, IdentifierClass::Identity, HitKind::KraPin);
        } else if letters <= 2 && all_digits(rest) {
            self.token(fs, fe, s, IdentifierClass::Identity, HitKind::Passport);
        } else if matches!(&b[..letters], b"kes" | b"ksh" | b"kshs" | b"kms") {
            // "KES 500k" is money, not a plate.
        } else {
            self.token(fs, fe, s, IdentifierClass::Suspect, HitKind::VehiclePlate);
        }
    }

    /// A run of digit groups at `folded.text[fs..fe]`. Splits it into the
    /// longest spans that are a record number, a Kenyan mobile number or (in
    /// an ID context, at the start) a national ID number.
    fn digits(&mut self, fs: usize, fe: usize) {
        let bytes = self.folded.text.as_bytes();
        let Some(run) = bytes.get(fs..fe) else {
            return;
        };
        // Whether an ID keyword comes before the run; worked out when needed.
        let mut context: Option<bool> = None;
        if self.record.has_letter_tokens() && self.lettered_record(fs, fe) {
            return;
        }
        let mut groups = Groups::new(fs, run);
        let g = groups.len();
        let mut i = 0;
        while i < g {
            let mut best = None;
            let mut buf = [0u8; 18];
            let mut len = 0;
            let mut value = 0u64;
            for j in i..g {
                let (a, b) = groups.get(j);
                if len + (b - a) > buf.len() {
                    break;
                }
                for &d in &bytes[a..b] {
                    buf[len] = d;
                    len += 1;
                    value = value * 10 + u64::from(d - b'0');
                }
                let (first_a, first_b) = groups.get(i);
                let shape = Shape {
                    groups: j - i + 1,
                    first: first_b - first_a,
                };
                if let Some(found) = classify(self.record, &buf[..len], value, shape, || {
                    i == 0 && *context.get_or_insert_with(|| id_context(bytes, fs))
                }) {
                    best = Some((j, found));
                }
            }
            match best {
                Some((j, (class, kind, from_record))) => {
                    let start = if i == 0 {
                        // "(+254…)": the "(" belongs to the run only if its ")" does.
                        if run.first() == Some(&b'(') && !run.contains(&b')') {
                            fs + 1
                        } else {
                            fs
                        }
                    } else {
                        let a = groups.get(i).0;
                        if a > fs && matches!(bytes.get(a - 1), Some(b'(' | b'+')) {
                            a - 1
                        } else {
                            a
                        }
                    };
                    self.push(start, groups.get(j).1, class, kind, from_record);
                    i = j + 1;
                }
                None => i += 1,
            }
        }
        groups.clear();
    }

    /// A record passport or refugee ID written with a gap between its letters
    /// and its digits ("BK 694 5343"): the letters just before the digit run.
    fn lettered_record(&mut self, fs: usize, fe: usize) -> bool {
        let bytes = self.folded.text.as_bytes();
        let mut p = fs;
        if p > 0 && matches!(bytes[p - 1], b' ' | b'-') {
            p -= 1;
        }
        let letters_end = p;
        while p > 0 && letters_end - p < 4 && bytes[p - 1].is_ascii_alphabetic() {
            p -= 1;
        }
        if p == letters_end || !self.folded.is_word_start(p) {
            return false;
        }
        let (Some(letters), Some(digits)) = (
            self.folded.text.get(p..letters_end),
            self.folded.text.get(fs..fe),
        ) else {
            return false;
        };
        match self.record.lookup_token_parts(letters, digits) {
            Some((class, kind)) => {
                self.push(p, fe, class, kind, true);
                true
            }
            None => false,
        }
    }
}

/// The digit groups of a run, on the stack unless there are many.
struct Groups {
    inline: [(usize, usize); 16],
    len: usize,
    spill: Vec<(usize, usize)>,
}

impl Groups {
    fn new(offset: usize, run: &[u8]) -> Self {
        let mut groups = Self {
            inline: [(0, 0); 16],
            len: 0,
            spill: Vec::new(),
        };
        let mut i = 0;
        while i < run.len() {
            if run[i].is_ascii_digit() {
                let start = i;
                while i < run.len() && run[i].is_ascii_digit() {
                    i += 1;
                }
                groups.push((offset + start, offset + i));
            } else {
                i += 1;
            }
        }
        groups
    }

    fn push(&mut self, group: (usize, usize)) {
        if self.len < self.inline.len() {
            self.inline[self.len] = group;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(group);
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> (usize, usize) {
        if self.spill.is_empty() {
            self.inline.get(i).copied().unwrap_or_default()
        } else {
            self.spill.get(i).copied().unwrap_or_default()
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }
}

/// Whether the folded text before `at` ends with an ID keyword and what may
/// follow it: `id `, `id no. `, `national id: `, `i.d. `, `id#`,
/// `identity card number `, `kitambulisho nambari `. Read backwards from the
/// number.
fn id_context(text: &[u8], at: usize) -> bool {
    let Some(before) = text.get(..at) else {
        return false;
    };
    let mut end = before.len();
    let strip = |s: &[u8], end: &mut usize| -> bool {
        let ok = before[..*end].ends_with(s);
        if ok {
            *end -= s.len();
        }
        ok
    };
    strip(b" ", &mut end);
    for punct in [b":", b"#", b".", b"-"] {
        if strip(punct, &mut end) {
            strip(b" ", &mut end);
            break;
        }
    }
    for _ in 0..3 {
        let qualifiers: [&[u8]; 9] = [
            b" card",
            b" no.",
            b" no",
            b" number",
            b" num.",
            b" num",
            b" nambari",
            b" namba",
            b" #",
        ];
        if !qualifiers.iter().any(|q| strip(q, &mut end)) {
            break;
        }
    }
    let keywords: [&[u8]; 5] = [b"identity card", b"kitambulisho", b"i.d.", b"i.d", b"id"];
    keywords.iter().any(|k| {
        before[..end].ends_with(k)
            && (end == k.len() || {
                let c = before[end - k.len() - 1];
                !(c.is_ascii_alphanumeric() || c == b'_')
            })
    })
}

/// How a span of digits is grouped.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    /// Number of digit groups.
    pub(crate) groups: usize,
    /// Digits in the first group.
    pub(crate) first: usize,
}

/// What a span of digits is: a record number (however grouped), a Kenyan
/// mobile number, or in an ID context a national ID number.
fn classify(
    record: &RecordMatcher,
    digits: &[u8],
    value: u64,
    shape: Shape,
    context: impl FnOnce() -> bool,
) -> Option<(IdentifierClass, HitKind, bool)> {
    if let Some((class, kind)) =
        digit_key(value, digits.len()).and_then(|k| record.lookup_digits(k))
    {
        return Some((class, kind, true));
    }
    if kenyan_mobile(digits, shape) {
        return Some((IdentifierClass::Identity, HitKind::Phone, false));
    }
    if (6..=9).contains(&digits.len()) && context() {
        return Some((IdentifierClass::Identity, HitKind::NationalId, false));
    }
    None
}

/// A Kenyan mobile number (07xx / 01xx) in any spelling: national `0…`
/// (10 digits), `254…` (12), `254 0…` (13), `00254…` (14), in at most five
/// groups; or a bare 9-digit national number only when written as
/// `712 345 678` / `712 345678` (an unspaced 9-digit number is as likely an ID).
pub(crate) fn kenyan_mobile(d: &[u8], shape: Shape) -> bool {
    if shape.groups > 5 {
        return false;
    }
    let national = match d.len() {
        10 if d[0] == b'0' => &d[1..],
        12 if d.starts_with(b"254") => &d[3..],
        13 if d.starts_with(b"2540") => &d[4..],
        14 if d.starts_with(b"00254") => &d[5..],
        9 if shape.groups > 1 && shape.first == 3 => d,
        _ => return false,
    };
    matches!(national.first(), Some(b'7' | b'1'))
}
