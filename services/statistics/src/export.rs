//! The HTCDS export: one de-identified record per referral, with column names
//! and codes of the Human Trafficking Case Data Standard as the Counter
//! Trafficking Data Collaborative publishes it (`yearOfRegistration`,
//! `gender`, `ageBroad`, `majorityStatus`, `citizenship`,
//! `CountryOfExploitation`, `isForcedLabour`, ...), plus two refnet columns
//! (`subnationalRegion`, `identifiedBy`). The mapping is in the README.
//!
//! k-anonymity over the quasi-identifiers (every column but the exploitation
//! flags and lists): the records are generalised by global recoding, one level
//! for every record, at the lowest level where the records left in groups
//! smaller than k are at most a tenth of all; those records are then dropped
//! and counted. Levels: 0 county, country codes, age band; 1 former province,
//! country groups, age band; 2 Kenya, country groups, majority status only.

use std::collections::HashMap;

use crate::records::{Record, country_group};

/// Column names, in order.
pub const COLUMNS: &[&str] = &[
    "yearOfRegistration",
    "Datasource",
    "gender",
    "ageBroad",
    "majorityStatus",
    "citizenship",
    "subnationalRegion",
    "CountryOfExploitation",
    "isForcedLabour",
    "isSexualExploit",
    "isOtherExploit",
    "isForcedMarriage",
    "isSlaveryAndPractices",
    "isOrganRemoval",
    "typeOfExploitConcatenated",
    "meansOfControlConcatenated",
    "identifiedBy",
];

/// Indexes of the quasi-identifier columns in [`COLUMNS`].
pub const QUASI_IDENTIFIERS: &[usize] = &[0, 2, 3, 4, 5, 6, 7];

/// The most generalised level.
pub const TOP_LEVEL: u8 = 2;

/// Kenya's former provinces, by the counties' order in the Constitution's
/// First Schedule (`refnet_core::domain::counties::COUNTIES`).
fn region(county: &str) -> &'static str {
    let Some(i) = refnet_core::domain::counties::COUNTIES
        .iter()
        .position(|c| *c == county)
    else {
        return "";
    };
    match i {
        0..=5 => "Coast",
        6..=8 => "North Eastern",
        9..=16 => "Eastern",
        17..=21 => "Central",
        22..=35 => "Rift Valley",
        36..=39 => "Western",
        40..=45 => "Nyanza",
        _ => "Nairobi",
    }
}

fn gender(sex: &str) -> &'static str {
    match sex {
        "FEMALE" => "Female",
        "MALE" => "Male",
        "OTHER" => "Transgender/NonConforming",
        _ => "Unknown",
    }
}

fn flag(purposes: &[String], purpose: &str) -> &'static str {
    if purposes.iter().any(|p| p == purpose) {
        "1"
    } else {
        "0"
    }
}

/// HTCDS's words for refnet's purposes.
fn exploit_name(purpose: &str) -> &str {
    match purpose {
        "SEXUAL_EXPLOITATION" => "Sexual exploitation",
        "FORCED_LABOUR" => "Forced labour",
        "SLAVERY_OR_SERVITUDE" => "Slavery and similar practices",
        "ORGAN_REMOVAL" => "Organ removal",
        "FORCED_MARRIAGE" => "Forced marriage",
        "CHILD_BEGGING" => "Forced begging",
        "FORCED_CRIMINALITY" => "Forced criminal activity",
        "OTHER" => "Other",
        other => other,
    }
}

/// `record` as an export row at generalisation `level`.
pub fn row(record: &Record, level: u8) -> Vec<String> {
    let protected = record.protected;
    let majority = if protected {
        "Unknown"
    } else if record.is_child {
        "Minor"
    } else {
        "Adult"
    };
    let age = if protected || level >= 2 {
        String::new()
    } else {
        match record.age_band.as_str() {
            "UNKNOWN" => String::new(),
            band => band.replace('-', "--"),
        }
    };
    let nationality = if protected {
        String::new()
    } else if level == 0 {
        record.nationality.clone()
    } else {
        country_group(&record.nationality).to_owned()
    };
    let place = if protected {
        String::new()
    } else {
        match level {
            0 => record.county.clone(),
            1 => region(&record.county).to_owned(),
            _ => "Kenya".to_owned(),
        }
    };
    let exploitation = if level == 0 {
        record.country_of_exploitation.clone()
    } else {
        country_group(&record.country_of_exploitation).to_owned()
    };
    let p = &record.purposes;
    let other = p.iter().any(|x| {
        !matches!(
            x.as_str(),
            "SEXUAL_EXPLOITATION"
                | "FORCED_LABOUR"
                | "FORCED_MARRIAGE"
                | "SLAVERY_OR_SERVITUDE"
                | "ORGAN_REMOVAL"
        )
    });
    vec![
        record.filed_at.format("%Y").to_string(),
        "Case Management".to_owned(),
        if protected {
            "Unknown".to_owned()
        } else {
            gender(&record.sex).to_owned()
        },
        age,
        majority.to_owned(),
        nationality,
        place,
        exploitation,
        flag(p, "FORCED_LABOUR").to_owned(),
        flag(p, "SEXUAL_EXPLOITATION").to_owned(),
        if other { "1" } else { "0" }.to_owned(),
        flag(p, "FORCED_MARRIAGE").to_owned(),
        flag(p, "SLAVERY_OR_SERVITUDE").to_owned(),
        flag(p, "ORGAN_REMOVAL").to_owned(),
        p.iter()
            .map(|x| exploit_name(x))
            .collect::<Vec<_>>()
            .join(";"),
        record.means.join(";"),
        record.identified_by.clone(),
    ]
}

/// The quasi-identifiers of an export row.
pub fn quasi(row: &[String]) -> Vec<&str> {
    QUASI_IDENTIFIERS.iter().map(|i| row[*i].as_str()).collect()
}

/// A k-anonymous export.
#[derive(Debug, Clone)]
pub struct Export {
    /// The rows kept.
    pub rows: Vec<Vec<String>>,
    /// The generalisation level used (0..=[`TOP_LEVEL`]).
    pub level: u8,
    /// Records dropped: their group was smaller than k at that level.
    pub dropped: usize,
}

/// Generalises and suppresses `records` until every combination of
/// quasi-identifiers occurs at least `k` times (see the module's doc).
pub fn anonymise(records: &[Record], k: usize) -> Export {
    let k = k.max(2);
    let mut chosen = None;
    for level in 0..=TOP_LEVEL {
        let rows: Vec<Vec<String>> = records.iter().map(|r| row(r, level)).collect();
        let mut sizes: HashMap<Vec<&str>, usize> = HashMap::new();
        for r in &rows {
            *sizes.entry(quasi(r)).or_default() += 1;
        }
        let small: usize = sizes.values().filter(|n| **n < k).sum();
        let acceptable = small * 10 <= rows.len();
        let keep: Vec<bool> = rows.iter().map(|r| sizes[&quasi(r)] >= k).collect();
        drop(sizes);
        chosen = Some((level, rows, keep, small));
        if acceptable {
            break;
        }
    }
    let Some((level, rows, keep, dropped)) = chosen else {
        return Export {
            rows: Vec::new(),
            level: 0,
            dropped: 0,
        };
    };
    Export {
        rows: rows
            .into_iter()
            .zip(keep)
            .filter_map(|(r, keep)| keep.then_some(r))
            .collect(),
        level,
        dropped,
    }
}

/// One CSV field (quoted when it holds a comma, a quote or a line break).
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The export as CSV text with a header line.
pub fn to_csv(export: &Export) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in &export.rows {
        let line: Vec<String> = row.iter().map(|v| field(v)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_county_has_a_former_province() {
        for county in refnet_core::domain::counties::COUNTIES {
            assert!(!region(county).is_empty(), "{county}");
        }
        assert_eq!(region("Nairobi"), "Nairobi");
        assert_eq!(region("Kisumu"), "Nyanza");
        assert_eq!(region("Nakuru"), "Rift Valley");
        assert_eq!(region("Kiambu"), "Central");
        assert_eq!(region("Busia"), "Western");
        assert_eq!(region("Lamu"), "Coast");
        assert_eq!(region("Wajir"), "North Eastern");
        assert_eq!(region("Makueni"), "Eastern");
    }

    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(field("plain"), "plain");
    }
}
