use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn record() -> RecordIdentifiers {
    RecordIdentifiers {
        subject_names: vec![
            "Wanjirũ".into(),
            "Kamau".into(),
            "Wanjirũ Kamau".into(),
            "Onyango Mama".into(),
            "Ann".into(),
        ],
        subject_numbers: vec![
            (HitKind::NationalId, "20209408".into()),
            (HitKind::Passport, "BK6945343".into()),
            (HitKind::RefugeeId, "KAK-123456".into()),
            (HitKind::Phone, "+254712345678".into()),
        ],
        subject_emails: vec!["wanjiru.kamau81@example.org".into()],
        subject_addresses: vec!["Manyatta Estate, House 133, Kirinyaga".into()],
        locations: vec!["Murang'a market".into()],
        suspect_names: vec![
            "Nafula Kariuki".into(),
            "Sunrise Domestic Placements Ltd".into(),
        ],
        suspect_phones: vec!["+254109521593".into()],
        suspect_vehicles: vec!["UAX 123B".into()],
    }
}

fn scan(ids: &RecordIdentifiers, text: &str) -> Vec<Hit> {
    Detector::global().scan(&RecordMatcher::new(ids), text)
}

/// The hits as (text, class, kind, from_record).
fn spans<'t>(text: &'t str, hits: &[Hit]) -> Vec<(&'t str, IdentifierClass, HitKind, bool)> {
    hits.iter()
        .map(|h| (&text[h.start..h.end], h.class, h.kind, h.from_record))
        .collect()
}

fn found<'t>(ids: &RecordIdentifiers, text: &'t str) -> Vec<&'t str> {
    scan(ids, text)
        .iter()
        .map(|h| &text[h.start..h.end])
        .collect()
}

use HitKind as K;
use IdentifierClass as C;

#[test]
fn patterns_compile_and_the_detector_is_shared() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Detector>();
    send_sync::<RecordMatcher>();
    assert!(Detector::new().is_ok());
    assert!(Detector::try_global().is_ok());
}

#[test]
fn names_match_whatever_the_case_and_accents() {
    let ids = record();
    for text in [
        "seen with WANJIRU today",
        "seen with wanjiru today",
        "seen with Wanjirũ today",
        "seen with Wanjiru\u{303} today",
        "seen with Wánjírú today",
        "seen with Ｗａｎｊｉｒｕ today",
    ] {
        let hits = scan(&ids, text);
        assert_eq!(hits.len(), 1, "{text}: {hits:?}");
        let h = hits[0];
        assert_eq!(
            &text[h.start..h.end],
            text[10..].trim_end_matches(" today"),
            "{text}"
        );
        assert_eq!(
            (h.class, h.kind, h.from_record),
            (C::Identity, K::Name, true)
        );
    }
    // The record spelled without the accent matches the accented text too.
    let plain = RecordIdentifiers {
        subject_names: vec!["Wanjiru".into()],
        ..Default::default()
    };
    assert_eq!(found(&plain, "Wanjirũ called"), ["Wanjirũ"]);
}

#[test]
fn names_match_whole_words_only() {
    let ids = record();
    assert!(found(&ids, "Announcement for Joann and Annabel, Hanna.").is_empty());
    assert_eq!(
        found(&ids, "Ann, (Ann) and ANN's bag"),
        ["Ann", "Ann", "ANN"]
    );
    assert_eq!(found(&ids, "Kamau-Otieno"), ["Kamau"]);
    assert!(found(&ids, "Kamau2").is_empty());
}

#[test]
fn multi_word_names_match_as_a_phrase_and_by_part() {
    let ids = record();
    let text = "Wanjiru Kamau left; later Kamau and Wanjiru returned.";
    assert_eq!(found(&ids, text), ["Wanjiru Kamau", "Kamau", "Wanjiru"]);
    // The phrase across a line break and extra spaces is still one hit.
    let text = "name: Wanjiru\n   Kamau.";
    assert_eq!(found(&ids, text), ["Wanjiru\n   Kamau"]);
    // The alias as a whole; its common word alone is not a name.
    let text = "known as Onyango Mama; mama said Onyango left";
    assert_eq!(found(&ids, text), ["Onyango Mama", "Onyango"]);
    // Parts shorter than 3 characters are not matched alone.
    let short = RecordIdentifiers {
        subject_names: vec!["Li Wei".into()],
        ..Default::default()
    };
    assert_eq!(found(&short, "Li Wei, Wei and li"), ["Li Wei", "Wei"]);
}

#[test]
fn organisations_match_as_a_phrase_not_by_word() {
    let ids = record();
    let text =
        "domestic work found by Sunrise Domestic Placements Ltd and Sunrise Domestic Placements";
    let hits = scan(&ids, text);
    assert_eq!(
        spans(text, &hits),
        [
            ("Sunrise Domestic Placements Ltd", C::Suspect, K::Name, true),
            ("Sunrise Domestic Placements", C::Suspect, K::Name, true),
        ]
    );
}

#[test]
fn record_phones_match_in_every_spelling() {
    let ids = record();
    for phone in [
        "+254712345678",
        "0712 345 678",
        "0712-345-678",
        "254712345678",
        "+254 712 345 678",
        "(0712) 345 678",
        "0712345678",
        "+254 (0) 712 345 678",
        "00254712345678",
        "0712.345.678",
        "712 345 678",
    ] {
        let text = format!("call {phone}, then leave");
        let hits = scan(&ids, &text);
        assert_eq!(
            spans(&text, &hits),
            [(phone, C::Identity, K::Phone, true)],
            "{phone}"
        );
    }
    // A suspect's phone is SUSPECT in any spelling.
    for phone in ["0109-521-593", "+254 109 521 593", "(0109) 521 593"] {
        let text = format!("recruiter on {phone}.");
        let hits = scan(&ids, &text);
        assert_eq!(spans(&text, &hits), [(phone, C::Suspect, K::Phone, true)]);
    }
}

#[test]
fn kenyan_mobiles_are_found_without_the_record() {
    let empty = RecordMatcher::empty();
    for phone in [
        "+254712345678",
        "0712 345 678",
        "0712-345-678",
        "254712345678",
        "+254 712 345 678",
        "0110 123 456",
        "(0100) 048 154",
    ] {
        let text = format!("call {phone} now");
        let hits = Detector::global().scan(&empty, &text);
        assert_eq!(
            spans(&text, &hits),
            [(phone, C::Identity, K::Phone, false)],
            "{phone}"
        );
    }
    // Not Kenyan mobiles: too short, a landline prefix, a date, a year, money.
    for text in [
        "room 12345",
        "call 0201234567",
        "on 12/12/2001",
        "in 2024",
        "KES 50,000",
        "ref 712345678",
    ] {
        assert!(Detector::global().scan(&empty, text).is_empty(), "{text}");
    }
}

#[test]
fn a_phone_inside_a_longer_run_of_digits_is_found_alone() {
    let empty = RecordMatcher::empty();
    let text = "on 0712 345 678 2020 and (+254712345678).";
    let hits = Detector::global().scan(&empty, text);
    assert_eq!(found_in(text, &hits), ["0712 345 678", "+254712345678"]);
    let text = "tel 0712345678/0722123456";
    let hits = Detector::global().scan(&empty, text);
    assert_eq!(found_in(text, &hits), ["0712345678", "0722123456"]);
}

fn found_in<'t>(text: &'t str, hits: &[Hit]) -> Vec<&'t str> {
    hits.iter().map(|h| &text[h.start..h.end]).collect()
}

#[test]
fn national_ids_need_context_unless_the_record_knows_them() {
    let empty = RecordMatcher::empty();
    for (text, id) in [
        ("ID 12345678 seen", "12345678"),
        ("ID no. 12345678 seen", "12345678"),
        ("national ID: 12345678 seen", "12345678"),
        ("ID number 24947727 seen", "24947727"),
        ("id#12345678", "12345678"),
        ("I.D. 1234567", "1234567"),
        ("ID No: 1234 5678", "1234 5678"),
        ("kitambulisho 12345678", "12345678"),
    ] {
        let hits = Detector::global().scan(&empty, text);
        assert_eq!(
            spans(text, &hits),
            [(id, C::Identity, K::NationalId, false)],
            "{text}"
        );
    }
    for text in [
        "bare 12345678 number",
        "said 12345678",
        "ID 123",
        "idea 12345678",
    ] {
        assert!(Detector::global().scan(&empty, text).is_empty(), "{text}");
    }
    // The longest context, far into a text.
    let text = format!(
        "{}identity card nambari nambari nambari: 12345678.",
        "words ".repeat(30)
    );
    let hits = Detector::global().scan(&empty, &text);
    assert_eq!(
        spans(&text, &hits),
        [("12345678", C::Identity, K::NationalId, false)]
    );
    // An ID context followed by a phone: the phone.
    let text = "ID 0712345678";
    let hits = Detector::global().scan(&empty, text);
    assert_eq!(
        spans(text, &hits),
        [("0712345678", C::Identity, K::Phone, false)]
    );
    // The record's ID number is found bare, spaced or not.
    let ids = record();
    for (text, id) in [
        ("bare 20209408 number", "20209408"),
        ("it is 2020 9408.", "2020 9408"),
    ] {
        let hits = scan(&ids, text);
        assert_eq!(
            spans(text, &hits),
            [(id, C::Identity, K::NationalId, true)],
            "{text}"
        );
    }
}

#[test]
fn passports_kra_pins_and_refugee_ids() {
    let empty = RecordMatcher::empty();
    for (text, id, kind) in [
        ("passport A1234567 kept", "A1234567", K::Passport),
        ("passport BK6945343 kept", "BK6945343", K::Passport),
        ("pin A012345678Z filed", "A012345678Z", K::KraPin),
        ("pin p051234567q filed", "p051234567q", K::KraPin),
    ] {
        let hits = Detector::global().scan(&empty, text);
        assert_eq!(
            spans(text, &hits),
            [(id, C::Identity, kind, false)],
            "{text}"
        );
    }
    assert!(
        Detector::global()
            .scan(&empty, "model AB123 and X12345")
            .is_empty()
    );
    // The record's numbers ignore case and spaces.
    let ids = record();
    for (text, id, kind) in [
        ("passport bk6945343 kept", "bk6945343", K::Passport),
        ("passport BK 694 5343 kept", "BK 694 5343", K::Passport),
        ("passport BK-6945343 kept", "BK-6945343", K::Passport),
        ("card kak-123456 shown", "kak-123456", K::RefugeeId),
        ("card KAK 123456 shown", "KAK 123456", K::RefugeeId),
        ("card KAK123456 shown", "KAK123456", K::RefugeeId),
    ] {
        let hits = scan(&ids, text);
        assert_eq!(
            spans(text, &hits),
            [(id, C::Identity, kind, true)],
            "{text}"
        );
    }
}

#[test]
fn emails_coordinates_and_plates() {
    let empty = RecordMatcher::empty();
    for (text, id, class, kind) in [
        (
            "mail juma.k+1@mail.example.co.ke now",
            "juma.k+1@mail.example.co.ke",
            C::Identity,
            K::Email,
        ),
        (
            "at -1.2921, 36.8219 yesterday",
            "-1.2921, 36.8219",
            C::Location,
            K::Coordinates,
        ),
        (
            "at 0.5143,35.2698.",
            "0.5143,35.2698",
            C::Location,
            K::Coordinates,
        ),
        ("a KDA 123A lorry", "KDA 123A", C::Suspect, K::VehiclePlate),
        ("a KBZ123X car", "KBZ123X", C::Suspect, K::VehiclePlate),
        (
            "a KMDA 123A motorbike",
            "KMDA 123A",
            C::Suspect,
            K::VehiclePlate,
        ),
    ] {
        let hits = Detector::global().scan(&empty, text);
        assert_eq!(spans(text, &hits), [(id, class, kind, false)], "{text}");
    }
    assert!(
        Detector::global()
            .scan(&empty, "paid KES 500K and KSH 100k")
            .is_empty()
    );
    // Record values found by a pattern are record hits with the record's class.
    let ids = record();
    let text = "write to Wanjiru.Kamau81@Example.org or see UAX 123B or uax123b";
    let hits = scan(&ids, text);
    assert_eq!(
        spans(text, &hits),
        [
            ("Wanjiru.Kamau81@Example.org", C::Identity, K::Email, true),
            ("UAX 123B", C::Suspect, K::VehiclePlate, true),
            ("uax123b", C::Suspect, K::VehiclePlate, true),
        ]
    );
}

#[test]
fn addresses_and_locations() {
    let ids = record();
    let text =
        "from Manyatta Estate, House 133, Kirinyaga (house 133) to Murang’a Market; Murang'a town";
    let hits = scan(&ids, text);
    assert_eq!(
        spans(text, &hits),
        [
            (
                "Manyatta Estate, House 133, Kirinyaga",
                C::Identity,
                K::Address,
                true
            ),
            ("house 133", C::Identity, K::Address, true),
            ("Murang’a Market", C::Location, K::Address, true),
        ]
    );
}

#[test]
fn overlapping_hits_resolve_to_one() {
    // A name inside an unknown email: one hit over the whole email.
    let ids = record();
    let text = "mail ann.smith@example.org today";
    let hits = scan(&ids, text);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(&text[hits[0].start..hits[0].end], "ann.smith@example.org");
    assert!(hits[0].from_record);
    // A suspect who shares the subject's family name: the shared name stays
    // IDENTITY, the rest SUSPECT.
    let ids = RecordIdentifiers {
        subject_names: vec!["Zawadi".into(), "Kiprono".into(), "Moraa Dada".into()],
        suspect_names: vec!["Grace Kiprono".into(), "Moraa Nyambura".into()],
        ..Default::default()
    };
    let text = "Zawadi says Grace Kiprono and Moraa Nyambura moved them.";
    let hits = scan(&ids, text);
    assert_eq!(
        spans(text, &hits),
        [
            ("Zawadi", C::Identity, K::Name, true),
            ("Grace", C::Suspect, K::Name, true),
            ("Kiprono", C::Identity, K::Name, true),
            ("Moraa Nyambura", C::Suspect, K::Name, true),
        ]
    );
    // Also when the shared name comes first.
    let ids = RecordIdentifiers {
        subject_names: vec!["Kibet".into()],
        suspect_names: vec!["Kibet Kamau".into()],
        ..Default::default()
    };
    let text = "seen with Kibet Kamau.";
    let hits = scan(&ids, text);
    assert_eq!(
        spans(text, &hits),
        [
            ("Kibet", C::Identity, K::Name, true),
            ("Kamau", C::Suspect, K::Name, true),
        ]
    );
    // Sorted and non-overlapping whatever the input.
    for pair in hits.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
}

#[test]
fn a_large_record_and_unusual_numbers_are_still_matched() {
    // More phrases than the packed searcher takes: the automaton.
    let mut ids = RecordIdentifiers::default();
    for i in 0..100 {
        ids.subject_names.push(format!("Name{i} Family{i}"));
    }
    ids.subject_numbers
        .push((K::Other, "12345678901234567890123".into()));
    ids.subject_numbers
        .push((K::RefugeeId, "RA/2019/001234".into()));
    let text = "Family77 met name3 family3; refs 12345678901234567890123 and ra/2019/001234.";
    assert_eq!(
        found(&ids, text),
        [
            "Family77",
            "name3 family3",
            "12345678901234567890123",
            "ra/2019/001234"
        ]
    );
}

#[test]
fn replace_hits_rebuilds_the_text() {
    let ids = record();
    let text = "Wanjiru Kamau (0712 345 678) met Nafula Kariuki.";
    let hits = scan(&ids, text);
    let out = replace_hits(text, &hits, |hit, span| {
        Some(Cow::Owned(format!("[{:?}:{}]", hit.class, span.len())))
    });
    assert_eq!(out, "[Identity:13] ([Identity:12]) met [Suspect:14].");
    // Nothing replaced: the text is borrowed.
    let out = replace_hits(text, &hits, |_, _| None);
    assert!(matches!(out, Cow::Borrowed(_)));
    let out = replace_hits(text, &[], |_, _| Some(Cow::Borrowed("x")));
    assert!(matches!(out, Cow::Borrowed(_)));
    // Only the hits the closure replaces change.
    let out = replace_hits(text, &hits, |hit, _| {
        (hit.class == C::Suspect).then_some(Cow::Borrowed("[withheld]"))
    });
    assert_eq!(out, "Wanjiru Kamau (0712 345 678) met [withheld].");
    // Bad hits (out of range, inside a character, overlapping) are skipped.
    let text = "añb";
    let bad = [
        Hit {
            start: 0,
            end: 2,
            class: C::Identity,
            kind: K::Name,
            from_record: true,
        },
        Hit {
            start: 1,
            end: 4,
            class: C::Identity,
            kind: K::Name,
            from_record: true,
        },
        Hit {
            start: 2,
            end: 3,
            class: C::Identity,
            kind: K::Name,
            from_record: true,
        },
        Hit {
            start: 3,
            end: 9,
            class: C::Identity,
            kind: K::Name,
            from_record: true,
        },
    ];
    let out = replace_hits(text, &bad, |_, _| Some(Cow::Borrowed("X")));
    assert_eq!(out, "aX");
}

#[test]
fn unicode_oddities_map_back_to_the_original() {
    let ids = record();
    // Zero-width space and soft hyphen inside a name do not hide it.
    let text = "Wan\u{200B}jiru and Ka\u{AD}mau";
    assert_eq!(found(&ids, text), ["Wan\u{200B}jiru", "Ka\u{AD}mau"]);
    // A ligature expands when folded; the hit covers the whole character.
    let fi = RecordIdentifiers {
        subject_names: vec!["Fiona".into()],
        ..Default::default()
    };
    assert_eq!(found(&fi, "see ﬁona now"), ["ﬁona"]);
    // Fullwidth digits are digits.
    assert_eq!(
        found(&ids, "call ０７１２３４５６７８ now"),
        ["０７１２３４５６７８"]
    );
    // Nothing odd panics.
    for text in [
        "",
        " ",
        "\u{301}",
        "\u{301}Ann",
        "🙂Ann🙂",
        "Ann\u{301}",
        "İstanbul",
        "ǅ",
        "\0\u{FFFF}",
    ] {
        let hits = scan(&ids, text);
        assert_well_formed(text, &hits);
    }
}

#[test]
fn a_huge_text_is_scanned() {
    let ids = record();
    let mut text = "Wanjiru met 0712 345 678 at Murang'a market. ".repeat(20_000);
    text.push_str(&"1 ".repeat(100_000));
    let start = std::time::Instant::now();
    let hits = scan(&ids, &text);
    eprintln!("{} bytes scanned in {:?}", text.len(), start.elapsed());
    assert_eq!(hits.len(), 60_000);
    assert_well_formed(&text, &hits);
}

fn assert_well_formed(text: &str, hits: &[Hit]) {
    let mut last = 0;
    for h in hits {
        assert!(h.start < h.end, "{h:?}");
        assert!(h.start >= last, "sorted and non-overlapping: {hits:?}");
        assert!(h.end <= text.len());
        assert!(
            text.is_char_boundary(h.start) && text.is_char_boundary(h.end),
            "{h:?}"
        );
        last = h.end;
    }
}

#[test]
fn debug_output_does_not_leak_identifiers() {
    let ids = record();
    let shown = format!("{ids:?} {:?}", RecordMatcher::new(&ids));
    assert!(
        !shown.contains("Wanjir") && !shown.contains("0712") && !shown.contains("254"),
        "{shown}"
    );
}

// ---- property tests ----

const FILLER: &[&str] = &[
    "the",
    "report",
    "says",
    "moved",
    "to",
    "Nairobi",
    "bus",
    "night",
    "alisema",
    "kwamba",
    "alihamishwa",
    "École",
    "niño",
    "Ζωή",
    "Привет",
    "日本語",
    "مرحبا",
    "🙂",
    "naïve",
    "façade",
    "straße",
    "ÅSA",
    "x",
    "Q",
];
const JOINERS: &[&str] = &[" ", ", ", ". ", "\n", " — ", "; ", " (", ") ", ": "];

fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (prop::sample::select(FILLER), prop::sample::select(JOINERS)),
        0..8,
    )
    .prop_map(|words| {
        words
            .into_iter()
            .map(|(w, j)| format!("{w}{j}"))
            .collect::<String>()
    })
}

/// Names in the record as stored, with a spelling as they may appear.
const NAMES: &[(&str, &str)] = &[
    ("Wanjirũ", "WANJIRU"),
    ("Wanjirũ", "wanjiru"),
    ("Wanjirũ", "Wanjiru"),
    ("Wanjiru", "Wánjírú"),
    ("Nyokabi Kamau", "NYOKABI KAMAU"),
    ("Nyokabi Kamau", "kamau"),
    ("Chebet Jepkosgei", "Jepkosgei"),
    ("Zoë Nduta", "zoe nduta"),
    ("Hakizimana", "HakiZimana"),
    ("Müller Ochieng", "MULLER"),
];

#[derive(Debug, Clone)]
enum Planted {
    Name(usize),
    Phone(String, usize),
    NationalId(String),
    Passport(String, bool),
    Email(String, bool),
    SuspectPhone(String, usize),
    SuspectName(usize),
    Location(usize),
}

/// Suspects' names and employers, and places, as stored and as they may appear.
const SUSPECTS: &[(&str, &str)] = &[
    ("Nafula Kariuki", "NAFULA KARIUKI"),
    ("Nafula Kariuki", "Kariuki"),
    (
        "Sunrise Domestic Placements Ltd",
        "sunrise domestic placements",
    ),
    ("Jean-Pierre Mukendi", "Jean Pierre Mukendi"),
];
const PLACES: &[(&str, &str)] = &[
    ("Murang'a market", "MURANG’A MARKET"),
    ("Mama Ngina Street, House 12", "mama ngina street house 12"),
    ("Kakuma Camp, Block 4", "Kakuma Camp, Block 4"),
];

fn planted() -> impl Strategy<Value = Planted> {
    prop_oneof![
        (0..NAMES.len()).prop_map(Planted::Name),
        ("[71][0-9]{8}", 0usize..9).prop_map(|(n, s)| Planted::Phone(n, s)),
        "[1-3][0-9]{7}".prop_map(Planted::NationalId),
        ("[A-Z]{1,2}[0-9]{7}", any::<bool>()).prop_map(|(p, l)| Planted::Passport(p, l)),
        (
            "[a-z]{3,8}\\.[a-z]{3,8}[0-9]{0,2}@example\\.org",
            any::<bool>()
        )
            .prop_map(|(e, u)| Planted::Email(e, u)),
        ("[71][0-9]{8}", 0usize..9).prop_map(|(n, s)| Planted::SuspectPhone(n, s)),
        (0..SUSPECTS.len()).prop_map(Planted::SuspectName),
        (0..PLACES.len()).prop_map(Planted::Location),
    ]
}

/// A Kenyan national number (9 digits) in one of its spellings.
fn spell_phone(n: &str, spelling: usize) -> String {
    let (a, b, c) = (&n[..3], &n[3..6], &n[6..]);
    match spelling {
        0 => format!("+254{n}"),
        1 => format!("0{a} {b} {c}"),
        2 => format!("0{a}-{b}-{c}"),
        3 => format!("254{n}"),
        4 => format!("+254 {a} {b} {c}"),
        5 => format!("0{n}"),
        6 => format!("(0{a}) {b} {c}"),
        7 => format!("00254{n}"),
        _ => format!("+254-{a}-{b}-{c}"),
    }
}

fn plant(p: &Planted) -> (RecordIdentifiers, String, IdentifierClass) {
    let mut ids = RecordIdentifiers::default();
    let (text, class) = match p {
        Planted::Name(i) => {
            let (stored, shown) = NAMES[*i];
            ids.subject_names.push(stored.into());
            (shown.to_owned(), C::Identity)
        }
        Planted::Phone(n, s) => {
            ids.subject_numbers.push((K::Phone, format!("+254{n}")));
            (spell_phone(n, *s), C::Identity)
        }
        Planted::SuspectPhone(n, s) => {
            ids.suspect_phones.push(format!("+254{n}"));
            (spell_phone(n, *s), C::Suspect)
        }
        Planted::NationalId(n) => {
            ids.subject_numbers.push((K::NationalId, n.clone()));
            (n.clone(), C::Identity)
        }
        Planted::Passport(p, lower) => {
            ids.subject_numbers.push((K::Passport, p.clone()));
            (
                if *lower { p.to_lowercase() } else { p.clone() },
                C::Identity,
            )
        }
        Planted::SuspectName(i) => {
            let (stored, shown) = SUSPECTS[*i];
            ids.suspect_names.push(stored.into());
            (shown.to_owned(), C::Suspect)
        }
        Planted::Location(i) => {
            let (stored, shown) = PLACES[*i];
            ids.locations.push(stored.into());
            (shown.to_owned(), C::Location)
        }
        Planted::Email(e, upper) => {
            ids.subject_emails.push(e.clone());
            (
                if *upper { e.to_uppercase() } else { e.clone() },
                C::Identity,
            )
        }
    };
    (ids, text, class)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_planted_record_identifier_is_found_exactly(
        before in filler(),
        after in filler(),
        planted in planted(),
    ) {
        let (ids, shown, class) = plant(&planted);
        let sep = if after.is_empty() { "" } else { " " };
        let text = format!("{before}{shown}{sep}{after}");
        let start = before.len();
        let end = start + shown.len();
        let hits = scan(&ids, &text);
        assert_well_formed(&text, &hits);
        prop_assert!(
            hits.iter().any(|h| h.start == start && h.end == end && h.class == class && h.from_record),
            "{planted:?} {text:?}: {:?}", spans(&text, &hits)
        );
    }

    #[test]
    fn next_digit_finds_the_first_digit(bytes in prop::collection::vec(any::<u8>(), 0..80), from in 0usize..90) {
        let expected = bytes.get(from..).and_then(|b| b.iter().position(u8::is_ascii_digit)).map(|p| from + p);
        prop_assert_eq!(super::patterns::next_digit(&bytes, from), expected);
    }

    #[test]
    fn any_text_scans_to_well_formed_hits(text in any::<String>()) {
        let ids = record();
        let hits = scan(&ids, &text);
        assert_well_formed(&text, &hits);
        let out = replace_hits(&text, &hits, |_, _| Some(Cow::Borrowed("#")));
        prop_assert!(out.len() <= text.len() + hits.len());
    }

    #[test]
    fn identifier_like_text_scans_to_well_formed_hits(
        text in "([0-9 +()./-]|[a-zA-Z]|Ann|Kamau|Wanjir[uũ]|ID|@|\\.|,|\u{301}|\u{200B}|ﬁ|é| {2}|\n){0,80}"
    ) {
        let ids = record();
        let hits = scan(&ids, &text);
        assert_well_formed(&text, &hits);
        let empty = Detector::global().scan(&RecordMatcher::empty(), &text);
        assert_well_formed(&text, &empty);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The pattern pass skips to digits and reads plain runs of digits by
    /// hand; it must find exactly what the regex alone finds.
    #[test]
    fn skipping_to_digits_finds_what_a_full_search_finds(
        text in "([0-9]|[0-9]{3,4}| |[+()./:#,-]|[a-z]|[akp]|id|no\\.|ID|kda|kmda|KBZ|é|ß|\\(\\+|\\) ){0,40}"
    ) {
        let (plain, skipping) = Detector::global().patterns().both_ways(&text);
        prop_assert_eq!(plain, skipping);
    }
}
