//! Throughput of free-text redaction (record-aware scan + replace) on the
//! fixture narratives, against the `scan` baseline of
//! shared/design/performance.md measured in the same run: Aho-Corasick over 10
//! names plus one combined regex of 5 identifier patterns, replacing hits.
//!
//! `cargo bench -p refnet-core --bench detect -- --warm-up-time 1 --measurement-time 3`
//!
//! The baseline runs first and last, so drift within the run shows. A second
//! group repeats baseline and refnet on the narratives made non-ASCII (an
//! accented word, a line break), which takes the general folding path.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{borrow::Cow, hint::black_box};

use aho_corasick::{AhoCorasick, MatchKind};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refnet_core::detect::{Detector, HitKind, RecordIdentifiers, RecordMatcher, replace_hits};
use regex::Regex;
use serde_json::Value;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/referrals.jsonl"
);
const WITHHELD: &str = "[withheld]";

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(text)
        .collect()
}

fn record_of(line: &Value) -> RecordIdentifiers {
    let s = &line["subject"];
    let mut r = RecordIdentifiers::default();
    let given = text(&s["given_name"]);
    let family = text(&s["family_name"]);
    r.subject_names.extend(given.clone());
    r.subject_names.extend(family.clone());
    if let (Some(g), Some(f)) = (&given, &family) {
        r.subject_names.push(format!("{g} {f}"));
    }
    r.subject_names.extend(strings(&s["aliases"]));
    if let Some(id) = text(&s["national_id"]) {
        r.subject_numbers.push((HitKind::NationalId, id));
    }
    if let Some(p) = text(&s["passport_number"]) {
        r.subject_numbers.push((HitKind::Passport, p));
    }
    for phone in strings(&s["phones"]) {
        r.subject_numbers.push((HitKind::Phone, phone));
    }
    r.subject_emails.extend(text(&s["email"]));
    r.subject_addresses.extend(text(&s["home_address"]));
    r.locations.extend(text(&s["current_location"]));
    for suspect in line["suspects"].as_array().into_iter().flatten() {
        r.suspect_names.extend(text(&suspect["name"]));
        r.suspect_names.extend(text(&suspect["employer"]));
        r.suspect_phones.extend(text(&suspect["phone"]));
    }
    r
}

fn load() -> Vec<(String, RecordIdentifiers)> {
    std::fs::read_to_string(FIXTURES)
        .expect("fixtures")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            let narrative = v["case"]["narrative"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (narrative, record_of(&v))
        })
        .collect()
}

/// The baseline of performance.md: Aho-Corasick over 10 names and one
/// combined regex of 5 identifier patterns, hits replaced.
struct Baseline {
    names: AhoCorasick,
    re: Regex,
}

impl Baseline {
    fn new(fixtures: &[(String, RecordIdentifiers)]) -> Self {
        // The 10 most frequent given names of the fixtures.
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        for (_, r) in fixtures {
            if let Some(n) = r.subject_names.first() {
                *counts.entry(n.as_str()).or_default() += 1;
            }
        }
        let mut names: Vec<(&str, usize)> = counts.into_iter().collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let names: Vec<&str> = names.into_iter().take(10).map(|(n, _)| n).collect();
        let names = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(names)
            .unwrap();
        let re = Regex::new(concat!(
            r"(?:\+?254|0)[17][0-9]{2}[ -]?[0-9]{3}[ -]?[0-9]{3}",
            r"|(?-u:\b)[0-9]{8}(?-u:\b)",
            r"|(?-u:\b)[A-Z]{1,2}[0-9]{6,8}(?-u:\b)",
            r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            r"|(?-u:\b)[AP][0-9]{9}[A-Z](?-u:\b)",
        ))
        .unwrap();
        Self { names, re }
    }

    fn redact(&self, text: &str) -> String {
        let mut hits: Vec<(usize, usize)> = self
            .names
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .chain(self.re.find_iter(text).map(|m| (m.start(), m.end())))
            .collect();
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (s, e) in hits {
            if s < copied {
                continue;
            }
            out.push_str(&text[copied..s]);
            out.push_str(WITHHELD);
            copied = e;
        }
        out.push_str(&text[copied..]);
        out
    }
}

fn bench(c: &mut Criterion) {
    let fixtures = load();
    let bytes: usize = fixtures.iter().map(|(n, _)| n.len()).sum();
    let matchers: Vec<RecordMatcher> = fixtures
        .iter()
        .map(|(_, r)| RecordMatcher::new(r))
        .collect();
    let detector = Detector::global();
    let baseline = Baseline::new(&fixtures);
    let replace = |_: &_, _: &str| Some(Cow::Borrowed(WITHHELD));

    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Bytes(bytes as u64));

    group.bench_function(
        "baseline: aho-corasick 10 names + regex 5 patterns, replace",
        |b| {
            b.iter(|| {
                for (narrative, _) in &fixtures {
                    black_box(baseline.redact(black_box(narrative)));
                }
            });
        },
    );
    group.bench_function("refnet: scan+replace, matcher prebuilt", |b| {
        b.iter(|| {
            for ((narrative, _), matcher) in fixtures.iter().zip(&matchers) {
                let hits = detector.scan(matcher, black_box(narrative));
                black_box(replace_hits(narrative, &hits, replace));
            }
        });
    });
    group.bench_function("refnet: build matcher + scan+replace", |b| {
        b.iter(|| {
            for (narrative, record) in &fixtures {
                let matcher = RecordMatcher::new(black_box(record));
                let hits = detector.scan(&matcher, black_box(narrative));
                black_box(replace_hits(narrative, &hits, replace));
            }
        });
    });
    group.bench_function("baseline again (drift check)", |b| {
        b.iter(|| {
            for (narrative, _) in &fixtures {
                black_box(baseline.redact(black_box(narrative)));
            }
        });
    });
    group.finish();

    // The same narratives with an accented word, a line break and a Swahili
    // tail: text that takes the general (non-ASCII) folding path.
    let unicode: Vec<(String, RecordIdentifiers)> = fixtures
        .iter()
        .map(|(n, r)| {
            let n = n.replacen("was", "wás", 1).replacen(". ", ".\n", 1) + " Asanté sana.";
            (n, r.clone())
        })
        .collect();
    let unicode_bytes: usize = unicode.iter().map(|(n, _)| n.len()).sum();
    let mut group = c.benchmark_group("detect-unicode");
    group.throughput(Throughput::Bytes(unicode_bytes as u64));
    group.bench_function(
        "baseline: aho-corasick 10 names + regex 5 patterns, replace",
        |b| {
            b.iter(|| {
                for (narrative, _) in &unicode {
                    black_box(baseline.redact(black_box(narrative)));
                }
            });
        },
    );
    group.bench_function("refnet: scan+replace, matcher prebuilt", |b| {
        b.iter(|| {
            for ((narrative, _), matcher) in unicode.iter().zip(&matchers) {
                let hits = detector.scan(matcher, black_box(narrative));
                black_box(replace_hits(narrative, &hits, replace));
            }
        });
    });
    group.finish();

    // Matcher construction alone, per record.
    let mut group = c.benchmark_group("detect-matcher");
    group.throughput(Throughput::Elements(fixtures.len() as u64));
    group.bench_function("RecordMatcher::new (per record)", |b| {
        b.iter(|| {
            for (_, record) in &fixtures {
                black_box(RecordMatcher::new(black_box(record)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
