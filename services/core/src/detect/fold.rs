//! Folding for matching: a lower-cased, accent-free, whitespace-collapsed copy
//! of a text, with a byte map back to the original.
//!
//! Both the record's identifiers and the scanned text go through [`Folded`], so
//! "Wanjirũ", "WANJIRU" and "wanjiru" all become `wanjiru`, fullwidth digits
//! become ASCII digits, typographic dashes and apostrophes become `-` and `'`,
//! invisible format characters (zero-width space, soft hyphen, bidi controls)
//! disappear and every run of whitespace becomes one space.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A folded copy of `original` and the way back to it.
pub(crate) struct Folded<'t> {
    original: &'t str,
    /// The folded text that patterns run over.
    pub(crate) text: String,
    /// The way back from an offset in `text` to the offset in `original` of
    /// the character that produced it, as segments sorted by `folded`. `None`
    /// when folding was byte for byte (ASCII text without control characters
    /// or space runs): an offset in `text` is then the same in `original`.
    map: Option<Vec<Segment>>,
}

/// From `folded` on (until the next segment), bytes of the folded text come
/// from `original` on: one for one (`linear`, plain ASCII), or all from the
/// one character at `original` (an accented or expanded character).
#[derive(Clone, Copy)]
struct Segment {
    folded: usize,
    original: usize,
    linear: bool,
}

impl<'t> Folded<'t> {
    /// Folds `original`.
    pub(crate) fn new(original: &'t str) -> Self {
        if let Some(text) = fold_ascii(original) {
            return Self {
                original,
                text,
                map: None,
            };
        }
        let bytes = original.as_bytes();
        let mut b = Builder {
            text: Vec::with_capacity(bytes.len() + 8),
            segments: Vec::new(),
            prev_ws: false,
        };
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            if byte.is_ascii() {
                // The common case: a run of ASCII, in bulk unless it has
                // whitespace to collapse.
                let end = next_non_ascii(bytes, at);
                let run = &bytes[at..end];
                let pairs = run
                    .iter()
                    .zip(run.iter().skip(1))
                    .fold(false, |acc, (&x, &y)| {
                        acc | (is_ascii_ws(x) & is_ascii_ws(y))
                    });
                let collapse = pairs || (b.prev_ws && is_ascii_ws(byte));
                if !collapse {
                    b.linear(at);
                    b.text.extend(run.iter().map(|&c| {
                        if is_ascii_ws(c) {
                            b' '
                        } else {
                            c.to_ascii_lowercase()
                        }
                    }));
                    b.prev_ws = run.last().is_some_and(|&c| is_ascii_ws(c));
                } else {
                    for (i, &c) in run.iter().enumerate() {
                        if !is_ascii_ws(c) {
                            b.linear(at + i);
                            b.text.push(c.to_ascii_lowercase());
                            b.prev_ws = false;
                        } else if !b.prev_ws {
                            b.linear(at + i);
                            b.text.push(b' ');
                            b.prev_ws = true;
                        }
                    }
                }
                at = end;
            } else {
                let Some(c) = original.get(at..).and_then(|s| s.chars().next()) else {
                    break;
                };
                fold_char(c, at, &mut b);
                at += c.len_utf8();
            }
        }
        // Only whole characters were pushed, so this is valid UTF-8.
        let text = String::from_utf8(b.text)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Self {
            original,
            text,
            map: Some(b.segments),
        }
    }

    /// The offset in `original` of the character that produced byte `i` of
    /// the folded text (the end of `original` for the end of the text).
    fn map_at(&self, segments: &[Segment], i: usize) -> usize {
        if i >= self.text.len() {
            return self.original.len();
        }
        let k = segments.partition_point(|s| s.folded <= i);
        match k.checked_sub(1).and_then(|k| segments.get(k)) {
            Some(s) if s.linear => s.original + (i - s.folded),
            Some(s) => s.original,
            None => i,
        }
    }

    /// The range of `original` that produced `text[fs..fe]`, widened to whole
    /// characters (and over characters that fold to nothing inside or right
    /// after it). Always on `original`'s char boundaries.
    pub(crate) fn original_range(&self, fs: usize, fe: usize) -> (usize, usize) {
        let Some(segments) = &self.map else {
            return (fs, fe);
        };
        let start = self.map_at(segments, fs);
        if fe <= fs {
            return (start, start);
        }
        let last = self.map_at(segments, fe - 1);
        let next = self.map_at(segments, fe);
        let end = if next == last {
            // `fe` falls inside the expansion of one original character
            // (e.g. "ﬁ" → "fi"): take the whole character.
            last + self
                .original
                .get(last..)
                .and_then(|s| s.chars().next())
                .map_or(0, char::len_utf8)
        } else {
            next
        };
        (start, end.max(start))
    }

    /// Whether `text[..fs]` does not end with a letter or digit.
    pub(crate) fn is_word_start(&self, fs: usize) -> bool {
        self.text
            .get(..fs)
            .and_then(|s| s.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric())
    }

    /// Whether `text[fe..]` does not start with a letter or digit.
    pub(crate) fn is_word_end(&self, fe: usize) -> bool {
        self.text
            .get(fe..)
            .and_then(|s| s.chars().next())
            .is_none_or(|c| !c.is_alphanumeric())
    }
}

/// Folds a record value the same way as scanned text, trimmed.
pub(crate) fn fold_str(s: &str) -> String {
    Folded::new(s).text.trim().to_owned()
}

/// The fast path: ASCII text folds byte for byte (lower-cased, a tab or line
/// break to a space) unless two whitespace characters are adjacent, which
/// collapse into one.
fn fold_ascii(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if !s.is_ascii() {
        return None;
    }
    // Branch-free, so both checks vectorise.
    let ws = |c: u8| (c == b' ') | ((b'\t'..=b'\r').contains(&c));
    let control = b.iter().fold(false, |acc, &c| acc | (c < b' '));
    let runs = b
        .iter()
        .zip(b.iter().skip(1))
        .fold(false, |acc, (&x, &y)| acc | (ws(x) & ws(y)));
    if runs {
        return None;
    }
    if !control {
        return Some(s.to_ascii_lowercase());
    }
    let folded: Vec<u8> = b
        .iter()
        .map(|&c| if ws(c) { b' ' } else { c.to_ascii_lowercase() })
        .collect();
    String::from_utf8(folded).ok()
}

/// The offset of the first non-ASCII byte at or after `from` (or the end),
/// eight bytes at a time.
fn next_non_ascii(bytes: &[u8], from: usize) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let Some(rest) = bytes.get(from..) else {
        return bytes.len();
    };
    let mut base = from;
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let high = u64::from_le_bytes(w) & HIGH;
        if high != 0 {
            return base + (high.trailing_zeros() / 8) as usize;
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|b| !b.is_ascii())
        .map_or(bytes.len(), |p| base + p)
}

fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

struct Builder {
    text: Vec<u8>,
    segments: Vec<Segment>,
    prev_ws: bool,
}

impl Builder {
    /// Bytes about to be pushed come one for one from `original[at..]`.
    fn linear(&mut self, at: usize) {
        let folded = self.text.len();
        let continues = self
            .segments
            .last()
            .is_some_and(|s| s.linear && s.original + (folded - s.folded) == at);
        if !continues {
            self.segments.push(Segment {
                folded,
                original: at,
                linear: true,
            });
        }
    }

    /// Bytes about to be pushed all come from the character at `at`.
    fn constant(&mut self, at: usize) {
        let folded = self.text.len();
        let continues = self
            .segments
            .last()
            .is_some_and(|s| !s.linear && s.original == at);
        if !continues {
            self.segments.push(Segment {
                folded,
                original: at,
                linear: false,
            });
        }
    }

    fn push(&mut self, c: char, at: usize) {
        let c = if c.is_whitespace() {
            if self.prev_ws {
                return;
            }
            self.prev_ws = true;
            ' '
        } else {
            self.prev_ws = false;
            c
        };
        let mut buf = [0u8; 4];
        self.constant(at);
        self.text
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    fn push_str(&mut self, s: &str, at: usize) {
        for c in s.chars() {
            self.push(c, at);
        }
    }
}

fn fold_char(c: char, at: usize, b: &mut Builder) {
    if c.is_whitespace() {
        b.push(' ', at);
        return;
    }
    if c.is_ascii() {
        b.push(c.to_ascii_lowercase(), at);
        return;
    }
    decompose_compatible(c, |d| {
        if is_combining_mark(d) || is_invisible(d) {
            return;
        }
        match d {
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => {
                b.push('-', at);
            }
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '\u{FF07}' => {
                b.push('\'', at);
            }
            'ø' | 'Ø' => b.push('o', at),
            'đ' | 'Đ' | 'ð' | 'Ð' => b.push('d', at),
            'ł' | 'Ł' => b.push('l', at),
            'ı' => b.push('i', at),
            'æ' | 'Æ' => b.push_str("ae", at),
            'œ' | 'Œ' => b.push_str("oe", at),
            'ß' | 'ẞ' => b.push_str("ss", at),
            'þ' | 'Þ' => b.push_str("th", at),
            _ => {
                for l in d.to_lowercase() {
                    if !is_combining_mark(l) {
                        b.push(l, at);
                    }
                }
            }
        }
    });
}

/// Format characters that are invisible in rendered text and must not split a
/// word: soft hyphen, zero-width space/joiners, directional marks and
/// embeddings, word joiner and invisible operators, byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}
