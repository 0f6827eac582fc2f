//! Counts by dimension, with cell suppression.
//!
//! **Primary suppression**: a cell counting fewer than k referrals is withheld.
//! **Complementary suppression**: a withheld cell could be worked out from its
//! row's total (which a coarser query gives) minus the cells shown. So along
//! every dimension, in every row (the cells that agree on every other
//! dimension) holding a withheld cell, further cells are withheld, smallest
//! first, until at least two are withheld and together they count at least k;
//! repeated over all dimensions until nothing changes. What a reader can then
//! derive is the sum of a row's withheld cells, which is at least k. For
//! multi-valued dimensions (purpose, means, act) a referral counts in several
//! cells of a row; the rule still applies, conservatively. The total is
//! withheld when under k.

use std::collections::BTreeMap;

use refnet_api::v1 as pb;

use crate::records::Record;

/// The values of `dim` for `record` (several for purpose, means and act).
pub fn values(dim: pb::Dimension, r: &Record) -> Vec<String> {
    use pb::Dimension as D;
    let list = |v: &[String]| {
        if v.is_empty() {
            vec!["NONE".to_owned()]
        } else {
            v.to_vec()
        }
    };
    match dim {
        D::Month => vec![r.filed_at.format("%Y-%m").to_string()],
        D::County => vec![r.county.clone()],
        D::Sex => vec![r.sex().to_owned()],
        D::AgeBand => vec![r.age_band().to_owned()],
        D::NationalityGroup => vec![r.nationality_group().to_owned()],
        D::Classification => vec![r.classification.clone()],
        D::Purpose => list(&r.purposes),
        D::Means => list(&r.means),
        D::Act => list(&r.acts),
        D::FilingAgencyKind => vec![r.filing_agency_kind.clone()],
        D::IdentifiedBy => vec![r.identified_by.clone()],
        D::Unspecified => vec![String::new()],
    }
}

/// A cell: its count and whether it is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Referrals in it.
    pub count: i64,
    /// Withheld.
    pub suppressed: bool,
}

/// Counts of `records` grouped by `dims`, suppressed for `k`.
pub fn aggregate(
    records: &[Record],
    dims: &[pb::Dimension],
    k: i64,
) -> BTreeMap<Vec<String>, Cell> {
    let mut cells: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
    for r in records {
        let mut keys: Vec<Vec<String>> = vec![Vec::new()];
        for dim in dims {
            let vals = values(*dim, r);
            keys = keys
                .into_iter()
                .flat_map(|key| {
                    vals.iter().map(move |v| {
                        let mut k = key.clone();
                        k.push(v.clone());
                        k
                    })
                })
                .collect();
        }
        for key in keys {
            cells
                .entry(key)
                .or_insert(Cell {
                    count: 0,
                    suppressed: false,
                })
                .count += 1;
        }
    }
    suppress(&mut cells, dims.len(), k);
    cells
}

/// Primary and complementary suppression of `cells` (keys of `width` values).
pub fn suppress(cells: &mut BTreeMap<Vec<String>, Cell>, width: usize, k: i64) {
    for cell in cells.values_mut() {
        cell.suppressed = cell.count < k;
    }
    if width == 0 {
        return;
    }
    loop {
        let mut changed = false;
        for d in 0..width {
            // Rows along `d`: the cells agreeing on every other dimension.
            let mut rows: BTreeMap<Vec<String>, Vec<Vec<String>>> = BTreeMap::new();
            for key in cells.keys() {
                let mut rest = key.clone();
                rest.remove(d);
                rows.entry(rest).or_default().push(key.clone());
            }
            for members in rows.values() {
                let (mut withheld, mut sum) = (0, 0);
                for key in members {
                    let cell = cells[key];
                    if cell.suppressed {
                        withheld += 1;
                        sum += cell.count;
                    }
                }
                if withheld == 0 {
                    continue;
                }
                while withheld < 2 || sum < k {
                    let next = members
                        .iter()
                        .filter(|key| !cells[*key].suppressed)
                        .min_by_key(|key| (cells[*key].count, (*key).clone()));
                    let Some(key) = next else { break };
                    let cell = cells.get_mut(key).map(|c| {
                        c.suppressed = true;
                        c.count
                    });
                    withheld += 1;
                    sum += cell.unwrap_or(0);
                    changed = true;
                }
            }
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str, i64)]) -> BTreeMap<Vec<String>, Cell> {
        rows.iter()
            .map(|(a, b, n)| {
                (
                    vec![(*a).to_owned(), (*b).to_owned()],
                    Cell {
                        count: *n,
                        suppressed: false,
                    },
                )
            })
            .collect()
    }

    /// No row or column with a withheld cell lets it be worked out: each has
    /// none withheld, all withheld, or at least two that together count at least k.
    fn protected(cells: &BTreeMap<Vec<String>, Cell>, k: i64) -> bool {
        (0..2).all(|d| {
            let mut rows: BTreeMap<String, Vec<Cell>> = BTreeMap::new();
            for (key, cell) in cells {
                rows.entry(key[1 - d].clone()).or_default().push(*cell);
            }
            rows.values().all(|row| {
                let withheld: Vec<&Cell> = row.iter().filter(|c| c.suppressed).collect();
                // All withheld: the row shows nothing (its total, if under k,
                // is withheld by the coarser table).
                withheld.is_empty()
                    || withheld.len() == row.len()
                    || (withheld.len() >= 2 && withheld.iter().map(|c| c.count).sum::<i64>() >= k)
            })
        })
    }

    #[test]
    fn a_small_cell_is_withheld_with_a_complement_in_its_row_and_column() {
        let mut cells = table(&[
            ("Nairobi", "FEMALE", 40),
            ("Nairobi", "MALE", 3),
            ("Mombasa", "FEMALE", 25),
            ("Mombasa", "MALE", 30),
        ]);
        suppress(&mut cells, 2, 11);
        let withheld: Vec<_> = cells
            .iter()
            .filter(|(_, c)| c.suppressed)
            .map(|(k, _)| k.join("/"))
            .collect();
        assert!(withheld.contains(&"Nairobi/MALE".to_owned()));
        assert!(protected(&cells, 11), "{cells:?}");
    }

    #[test]
    fn every_table_ends_protected() {
        // A few fixed tables with awkward shapes.
        for rows in [
            vec![
                ("a", "x", 1),
                ("a", "y", 50),
                ("b", "x", 50),
                ("b", "y", 50),
            ],
            vec![("a", "x", 5), ("a", "y", 5), ("a", "z", 100)],
            vec![("a", "x", 2)],
            vec![
                ("a", "x", 12),
                ("b", "x", 12),
                ("c", "x", 1),
                ("c", "y", 30),
            ],
        ] {
            let mut cells = table(&rows);
            suppress(&mut cells, 2, 11);
            assert!(protected(&cells, 11), "{rows:?} -> {cells:?}");
            assert!(cells.values().all(|c| c.count >= 11 || c.suppressed));
        }
    }
}
