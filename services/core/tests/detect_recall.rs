//! Recall of the free-text detector on the synthetic fixtures: every
//! identifier that `narrative_subject_identifiers` and
//! `narrative_suspect_identifiers` list must be covered by a hit of the right
//! class when the detector knows the record. Also prints pattern-only recall
//! (empty record) and false positives, for the benchmark notes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use refnet_core::detect::{
    Detector, Hit, HitKind, IdentifierClass, RecordIdentifiers, RecordMatcher,
};
use serde_json::Value;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/referrals.jsonl"
);

struct Fixture {
    id: String,
    narrative: String,
    subject_ids: Vec<String>,
    suspect_ids: Vec<String>,
    record: RecordIdentifiers,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
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

fn load() -> Vec<Fixture> {
    let data = std::fs::read_to_string(FIXTURES).expect("fixtures");
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("fixture line is JSON");
            Fixture {
                id: v["fixture_id"].as_str().unwrap_or_default().to_owned(),
                narrative: v["case"]["narrative"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                subject_ids: strings(&v["narrative_subject_identifiers"]),
                suspect_ids: strings(&v["narrative_suspect_identifiers"]),
                record: record_of(&v),
            }
        })
        .collect()
}

/// Whole-word occurrences of `needle` in `hay` (byte ranges).
fn occurrences(hay: &str, needle: &str) -> Vec<(usize, usize)> {
    let alnum_before = |i: usize| {
        hay[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
    };
    let alnum_after = |i: usize| hay[i..].chars().next().is_some_and(char::is_alphanumeric);
    hay.match_indices(needle)
        .map(|(i, m)| (i, i + m.len()))
        .filter(|&(s, e)| !alnum_before(s) && !alnum_after(e))
        .collect()
}

/// Whether every letter and digit of `range` is inside a hit that `ok` accepts.
fn covered(text: &str, hits: &[Hit], (s, e): (usize, usize), ok: impl Fn(&Hit) -> bool) -> bool {
    text[s..e].char_indices().all(|(i, c)| {
        let p = s + i;
        !c.is_alphanumeric() || hits.iter().any(|h| h.start <= p && p < h.end && ok(h))
    })
}

/// Grades one narrative. A subject identifier counts when every whole-word
/// occurrence of it (also one inside a suspect's name: a shared family name
/// identifies the subject too) is covered by IDENTITY or LOCATION hits. A
/// suspect identifier counts when every occurrence is covered by SUSPECT hits,
/// except for parts that are themselves an occurrence of a subject identifier,
/// which must be IDENTITY. `class_aware == false` accepts any class.
/// Returns (covered entries, total entries, failures).
fn grade(f: &Fixture, hits: &[Hit], class_aware: bool) -> (usize, usize, Vec<String>) {
    let subject_ranges: Vec<(usize, usize)> = f
        .subject_ids
        .iter()
        .flat_map(|id| occurrences(&f.narrative, id))
        .collect();
    let mut good = 0;
    let mut total = 0;
    let mut failures = Vec::new();
    for (ids, suspect) in [(&f.subject_ids, false), (&f.suspect_ids, true)] {
        for id in ids {
            total += 1;
            let occ = occurrences(&f.narrative, id);
            let ok = |h: &Hit| {
                !class_aware
                    || if suspect {
                        h.class == IdentifierClass::Suspect
                            || (h.class == IdentifierClass::Identity
                                && subject_ranges.contains(&(h.start, h.end)))
                    } else {
                        matches!(
                            h.class,
                            IdentifierClass::Identity | IdentifierClass::Location
                        )
                    }
            };
            if !occ.is_empty() && occ.iter().all(|&r| covered(&f.narrative, hits, r, ok)) {
                good += 1;
            } else {
                failures.push(format!(
                    "{}: {} {id:?} not covered in {:?}; hits: {:?}",
                    f.id,
                    if suspect { "suspect" } else { "subject" },
                    f.narrative,
                    hits.iter()
                        .map(|h| (&f.narrative[h.start..h.end], h.class, h.kind))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    (good, total, failures)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

#[test]
fn record_aware_recall_is_complete_on_the_fixtures() {
    let fixtures = load();
    assert!(fixtures.len() >= 500, "expected the 500 fixtures");
    let detector = Detector::global();
    let empty = RecordMatcher::empty();

    let (mut good, mut total, mut failures) = (0, 0, Vec::new());
    let (mut p_good, mut p_total) = (0, 0);
    let (mut p_numbers, mut p_words) = ((0, 0), (0, 0));
    let mut p_false = 0;
    let mut hits_total = 0;
    let mut fp: BTreeMap<String, usize> = BTreeMap::new();
    let mut fp_examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fp_total = 0;
    let mut fp_record_value = 0;

    for f in &fixtures {
        let matcher = RecordMatcher::new(&f.record);
        let hits = detector.scan(&matcher, &f.narrative);
        hits_total += hits.len();
        let (g, t, fails) = grade(f, &hits, true);
        good += g;
        total += t;
        failures.extend(fails);

        let pattern_hits = detector.scan(&empty, &f.narrative);
        let (g, t, _) = grade(f, &pattern_hits, false);
        p_good += g;
        p_total += t;
        // The same split by what the identifiers are: numbers or words.
        for id in f.subject_ids.iter().chain(&f.suspect_ids) {
            let numeric = id.chars().any(|c| c.is_ascii_digit());
            let found = occurrences(&f.narrative, id)
                .into_iter()
                .all(|r| covered(&f.narrative, &pattern_hits, r, |_| true));
            let entry = if numeric {
                &mut p_numbers
            } else {
                &mut p_words
            };
            entry.1 += 1;
            if found {
                entry.0 += 1;
            }
        }
        let listed: Vec<(usize, usize)> = f
            .subject_ids
            .iter()
            .chain(&f.suspect_ids)
            .flat_map(|id| occurrences(&f.narrative, id))
            .collect();
        p_false += pattern_hits
            .iter()
            .filter(|h| !listed.iter().any(|&(s, e)| s < h.end && h.start < e))
            .count();

        // False positives: hits that cover no occurrence of a listed
        // identifier and are not themselves a listed string.
        let listed: Vec<(usize, usize)> = f
            .subject_ids
            .iter()
            .chain(&f.suspect_ids)
            .flat_map(|id| occurrences(&f.narrative, id))
            .collect();
        for h in &hits {
            let span = &f.narrative[h.start..h.end];
            let covers_listed = listed.iter().any(|&(s, e)| s < h.end && h.start < e);
            let is_listed = f
                .subject_ids
                .iter()
                .chain(&f.suspect_ids)
                .any(|id| id == span);
            if covers_listed || is_listed {
                continue;
            }
            fp_total += 1;
            let record_value = f
                .record
                .locations
                .iter()
                .chain(&f.record.suspect_names)
                .chain(&f.record.subject_addresses)
                .any(|v| v.eq_ignore_ascii_case(span));
            if record_value {
                fp_record_value += 1;
            }
            let key = format!(
                "{:?}/{:?}/{}{}",
                h.class,
                h.kind,
                if h.from_record { "record" } else { "pattern" },
                if record_value {
                    " (a record value the lists omit)"
                } else {
                    ""
                }
            );
            *fp.entry(key.clone()).or_default() += 1;
            let ex = fp_examples.entry(key).or_default();
            if ex.len() < 4 {
                ex.push(format!("{}: {span:?}", f.id));
            }
        }
    }

    eprintln!("detect recall on {} fixture narratives:", fixtures.len());
    eprintln!(
        "  record-aware recall (right class): {good}/{total} = {:.2}%",
        pct(good, total)
    );
    eprintln!(
        "  pattern-only recall (empty record, any class): {p_good}/{p_total} = {:.2}%",
        pct(p_good, p_total)
    );
    eprintln!(
        "    numbers (phones, ID and passport numbers): {}/{} = {:.2}%; names: {}/{} = {:.2}%; \
         pattern hits covering no listed identifier: {p_false}",
        p_numbers.0,
        p_numbers.1,
        pct(p_numbers.0, p_numbers.1),
        p_words.0,
        p_words.1,
        pct(p_words.0, p_words.1)
    );
    eprintln!(
        "  hits with the record: {hits_total}; not covering a listed identifier: {fp_total} \
         ({fp_record_value} of them are record values the lists omit, {} others)",
        fp_total - fp_record_value
    );
    for (k, n) in &fp {
        eprintln!(
            "    {n:5}  {k}  e.g. {:?}",
            fp_examples.get(k).map(|v| v.join("; "))
        );
    }
    for f in failures.iter().take(20) {
        eprintln!("  MISS {f}");
    }
    assert!(
        failures.is_empty(),
        "{} listed identifiers missed",
        failures.len()
    );
    assert_eq!(good, total);
}
