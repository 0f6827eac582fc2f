//! Fuzzing on stable Rust, driven by proptest: hostile input for request
//! validation, the free-text redactor, the policy and routing-rule loaders,
//! and page-token decoding. Each target starts from seeds (the synthetic
//! fixtures, the shipped policy and rules, and the files in
//! `tests/fuzz/corpus/`) and mutates them, or generates input outright.
//!
//! The properties: nothing panics; a refused input is refused with field
//! violations (never a silent partial value); a page token that is not
//! exactly one refnet issued for this caller and these filters never opens to
//! a position; hits are well-formed on any text.
//!
//! Bounded in the default suite (`FUZZ_CASES`, default 256 cases per target);
//! longer by `FUZZ_CASES=100000 cargo test --release --test fuzz`. A failing
//! case is shrunk and its seed stored by proptest in
//! `tests/fuzz/proptest-regressions.txt`, to be committed with the fix so it is
//! replayed first from then on.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::{path::PathBuf, sync::OnceLock};

use chrono::NaiveDate;
use proptest::{
    prelude::*,
    test_runner::{Config, FileFailurePersistence},
};
use prost::Message;
use refnet_api::v1 as pb;
use refnet_core::{
    crypto::{Keyring, MasterKey},
    detect::{Detector, HitKind, RecordIdentifiers, RecordMatcher},
    domain::referral::ReferralContent,
    error::{ServiceError, Violations},
    paging,
    policy::Policy,
};
use refnet_routing::rules::RuleSet;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Inputs are cheap; shrinking a failure should not take forever.
        max_shrink_iters: 2_000,
        // Cargo runs tests from the package root.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz/proptest-regressions.txt",
        ))),
        ..Config::default()
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

/// Encoded drafts: the first fixtures, and the corpus.
fn draft_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let fixtures = refnet_devtools::fixtures::load(&refnet_devtools::fixtures::default_path())
            .expect("fixtures");
        let mut seeds: Vec<Vec<u8>> = fixtures
            .iter()
            .take(40)
            .map(|f| f.draft().encode_to_vec())
            .collect();
        seeds.extend(corpus("draft"));
        seeds
    })
}

/// A byte-level mutation.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        Just(vec![0xff; 10]),                     // varint that never ends
        Just(vec![0x80, 0x80, 0x80, 0x80, 0x0f]), // huge length
        Just("\u{202e}\u{0000}\u{7f}".as_bytes().to_vec()),
        Just(vec![0xc3]), // a lone UTF-8 lead byte
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % len] ^= b | 1;
                }
            }
            Mutation::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                if !bytes.is_empty() {
                    let at = i % len;
                    let end = (at + n).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Splice(a, b, n) => {
                if !bytes.is_empty() {
                    let from = a % len;
                    let piece: Vec<u8> = bytes[from..(from + n).min(bytes.len())].to_vec();
                    let at = b % (bytes.len() + 1);
                    bytes.splice(at..at, piece);
                }
            }
        }
    }
    bytes
}

/// Strings a hostile or careless client sends.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f\u{200b}\u{202e}\u{feff}a-z ]{0,40}",
        (1usize..70_000).prop_map(|n| "A".repeat(n)),
        Just(String::new()),
        Just(" ".into()),
        Just("+254 7".into()),
        Just("9999-99-99".into()),
        Just("0000-01-01".into()),
        Just("'; DROP TABLE referrals; --".into()),
    ]
}

/// Checks what validation said about `draft`: either a value and no
/// violation, or violations that name fields of the draft.
fn validate(draft: &pb::ReferralDraft) -> Result<(), TestCaseError> {
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
    let mut v = Violations::new();
    let content = ReferralContent::from_draft(&mut v, "draft", Some(draft), today);
    let accepted = content.is_some();
    match v.finish(|| content) {
        Ok(_) => prop_assert!(accepted),
        Err(ServiceError::InvalidArgument(violations)) => {
            prop_assert!(!violations.is_empty());
            for f in &violations {
                prop_assert!(
                    f.field.starts_with("draft"),
                    "violation outside the draft: {f:?}"
                );
                prop_assert!(!f.description.is_empty());
            }
        }
        Err(other) => prop_assert!(false, "not a validation error: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Mutated wire bytes of real drafts: prost decodes what it can, and
    /// whatever it decodes is validated without panicking.
    #[test]
    fn mutated_drafts_are_validated_or_refused(
        seed in 0usize..1_000,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = draft_seeds();
        let bytes = apply(seeds[seed % seeds.len()].clone(), &mutations);
        if let Ok(draft) = pb::ReferralDraft::decode(bytes.as_slice()) {
            validate(&draft)?;
        }
    }

    /// A real draft with one field set to something hostile: a string, an
    /// enum number no version of the contract defines, or a list of a
    /// thousand entries.
    #[test]
    fn hostile_fields_are_validated_or_refused(
        seed in 0usize..1_000,
        text in hostile_string(),
        number in any::<i32>(),
        which in 0usize..14,
    ) {
        let seeds: Vec<pb::ReferralDraft> = draft_seeds()
            .iter()
            .filter_map(|b| pb::ReferralDraft::decode(b.as_slice()).ok())
            .collect();
        let mut draft = seeds[seed % seeds.len()].clone();
        let subject = draft.subject.get_or_insert_with(Default::default);
        match which {
            0 => subject.given_name = text,
            1 => subject.family_name = text,
            2 => subject.date_of_birth = text,
            3 => subject.phones = vec![text; 3],
            4 => subject.national_id = text,
            5 => subject.passport_number = text,
            6 => subject.email = text,
            7 => subject.aliases = vec![text.chars().take(100).collect(); 1_000],
            8 => subject.sex = number,
            9 => subject.nationality = text,
            10 => draft.case_facts.get_or_insert_with(Default::default).narrative = text,
            11 => draft.urgency = number,
            12 => draft.county = text,
            _ => draft.needs = vec![number; 50],
        }
        validate(&draft)?;
    }

    /// Page tokens: arbitrary strings never open; a token opens only for the
    /// agency and filters it was issued for; a changed character never opens
    /// to another position.
    #[test]
    fn page_tokens_cannot_be_forged(
        junk in any::<String>(),
        last in any::<u128>(),
        at in any::<usize>(),
        replacement in "[A-Za-z0-9_=+/.-]",
    ) {
        let keys = keys();
        let last = uuid::Uuid::from_u128(last);
        prop_assert_eq!(paging::open(keys, &junk, "police-nairobi", "f"), None);
        let token = paging::seal(keys, "police-nairobi", "f", last);
        prop_assert_eq!(paging::open(keys, &token, "police-nairobi", "f"), Some(last));
        prop_assert_eq!(paging::open(keys, &token, "police-mombasa", "f"), None);
        prop_assert_eq!(paging::open(keys, &token, "police-nairobi", "g"), None);
        let mut chars: Vec<char> = token.chars().collect();
        let i = at % chars.len();
        chars[i] = replacement.chars().next().expect("one char");
        let forged: String = chars.into_iter().collect();
        let opened = paging::open(keys, &forged, "police-nairobi", "f");
        prop_assert!(opened.is_none() || (forged == token && opened == Some(last)),
            "forged token {forged:?} opened to {opened:?}");
        let corpus = corpus("page_token");
        let sample = &corpus[at % corpus.len()];
        prop_assert_eq!(
            paging::open(keys, &String::from_utf8_lossy(sample), "police-nairobi", "f"),
            None
        );
    }

    /// The redaction policy loader on arbitrary text and on line-level
    /// mutations of the shipped policy: an error or a policy, never a panic;
    /// a policy that loads renders its matrix.
    #[test]
    fn policy_files_load_or_are_refused(
        junk in any::<String>(),
        edits in prop::collection::vec(line_edit(), 1..5),
    ) {
        let _ = Policy::parse(&junk, "fuzz.toml");
        let text = edit_lines(include_str!("../../services/core/policy/redaction.toml"), &edits);
        if let Ok(policy) = Policy::parse(&text, "fuzz.toml") {
            prop_assert!(!policy.matrix().is_empty());
        }
    }

    /// The routing-rule loader, the same way.
    #[test]
    fn rule_files_load_or_are_refused(
        junk in any::<String>(),
        edits in prop::collection::vec(line_edit(), 1..5),
    ) {
        let _ = RuleSet::parse(&junk, "fuzz.toml");
        let _ = RuleSet::parse(
            &edit_lines(include_str!("../../services/routing/rules/default.toml"), &edits),
            "fuzz.toml",
        );
        for seed in corpus("rules") {
            let _ = RuleSet::parse(&edit_lines(&String::from_utf8_lossy(&seed), &edits), "fuzz.toml");
        }
    }

    /// The free-text redactor with arbitrary record values and arbitrary text
    /// around them: well-formed hits, and a planted subject name of two or
    /// more letters is found.
    #[test]
    fn any_record_and_text_scan_to_well_formed_hits(
        names in prop::collection::vec(any::<String>(), 0..4),
        numbers in prop::collection::vec("[0-9 +-]{0,20}", 0..4),
        before in any::<String>(),
        after in any::<String>(),
        planted in "[A-Z][a-z]{2,10}",
    ) {
        let mut subject_names = names;
        subject_names.push(planted.clone());
        let ids = RecordIdentifiers {
            subject_names,
            subject_numbers: numbers.into_iter().map(|n| (HitKind::Phone, n)).collect(),
            ..Default::default()
        };
        let matcher = RecordMatcher::new(&ids);
        let text = format!("{before} {planted} {after}");
        let hits = Detector::global().scan(&matcher, &text);
        let mut last = 0;
        for h in &hits {
            prop_assert!(h.start < h.end && h.start >= last && h.end <= text.len());
            prop_assert!(text.is_char_boundary(h.start) && text.is_char_boundary(h.end));
            last = h.end;
        }
        let at = before.len() + 1;
        prop_assert!(
            hits.iter().any(|h| h.start <= at && h.end >= at + planted.len()),
            "planted {planted:?} not covered in {text:?}"
        );
    }
}

fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        let master = MasterKey::from_base64(&"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into())
            .expect("key");
        Keyring::new(master)
    })
}

/// A line-level edit of a TOML file.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, String),
    ReplaceWord(usize, String),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let word = prop_oneof![
        "[A-Z_]{1,12}",
        Just("\"\"".to_owned()),
        Just("[[".to_owned()),
        Just("= =".to_owned()),
        Just("9999999999999999999999".to_owned()),
        any::<String>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), any::<String>()).prop_map(|(a, s)| LineEdit::Replace(a, s)),
        (any::<usize>(), word).prop_map(|(a, s)| LineEdit::ReplaceWord(a, s)),
    ]
}

fn edit_lines(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            LineEdit::Delete(i) => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            LineEdit::Swap(a, b) => lines.swap(a % n, b % n),
            LineEdit::Replace(i, s) => lines[i % n] = s.clone(),
            LineEdit::ReplaceWord(i, s) => {
                let line = &lines[i % n];
                let words: Vec<&str> = line.split(' ').collect();
                let k = i / n.max(1) % words.len().max(1);
                let replaced: Vec<String> = words
                    .iter()
                    .enumerate()
                    .map(|(j, w)| if j == k { s.clone() } else { (*w).to_owned() })
                    .collect();
                lines[i % n] = replaced.join(" ");
            }
        }
    }
    lines.join("\n")
}
