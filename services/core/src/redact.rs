//! The redactor: one component that every outgoing message passes through.
//!
//! It is a [`Visitor`] over the walk that `refnet-api` generates for each
//! message from the contract's sensitivity options: for each field it asks the
//! viewer's [`View`] (computed once per reply from the policy) what to do with
//! the field's class, applies SHOW / MASK / GENERALISE / PSEUDONYMISE / DROP
//! according to the field's shape, scans free text for identifiers and treats
//! each hit by its own class, and records every change as a `Redaction` on the
//! reply. It also collects the IDENTITY and LOCATION paths it let through, so
//! the caller can append the audit record.

use std::{borrow::Cow, collections::BTreeSet};

use chrono::NaiveDate;
use refnet_api::{
    redact::{FieldInfo, Redact, Visitor},
    v1::{FieldShape, Redaction, RedactionAction, RedactionReason, Sensitivity},
};

use crate::{
    detect::{Detector, Hit, HitKind, IdentifierClass, RecordMatcher, replace_hits},
    domain::{age_on, canonical_county},
    policy::{Action, Decision, View},
};

/// Placeholder for an identifier removed from free text.
pub const WITHHELD: &str = "[withheld]";

/// Redacts messages for one viewer of one subject.
pub struct Redactor<'a> {
    view: &'a View,
    record: &'a RecordMatcher,
    today: NaiveDate,
    path: String,
    redactions: Vec<Redaction>,
    revealed: BTreeSet<String>,
}

/// What a redaction pass found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// IDENTITY and LOCATION field paths whose content reached the viewer
    /// (shown or masked, non-empty): what the audit record lists.
    pub revealed: BTreeSet<String>,
    /// How many redactions were applied, per (class, action): what the
    /// `refnet.redactions` metric counts.
    pub tally: std::collections::BTreeMap<(Sensitivity, RedactionAction), u64>,
}

fn tally(
    redactions: &[Redaction],
) -> std::collections::BTreeMap<(Sensitivity, RedactionAction), u64> {
    let mut tally = std::collections::BTreeMap::new();
    for r in redactions {
        let class = Sensitivity::try_from(r.class).unwrap_or(Sensitivity::Unspecified);
        let action = RedactionAction::try_from(r.action).unwrap_or(RedactionAction::Unspecified);
        *tally.entry((class, action)).or_insert(0) += 1;
    }
    tally
}

impl<'a> Redactor<'a> {
    /// A redactor for `view`, scanning free text with `record`'s identifiers.
    pub fn new(view: &'a View, record: &'a RecordMatcher) -> Self {
        Self {
            view,
            record,
            today: chrono::Utc::now().date_naive(),
            path: String::new(),
            redactions: Vec::new(),
            revealed: BTreeSet::new(),
        }
    }

    /// Redacts `message` in place, appends the redactions to its own list (for
    /// replies that carry one) and returns what was revealed.
    pub fn apply<M: Redact>(mut self, message: &mut M) -> Outcome {
        message.redact(&mut self);
        let tally = tally(&self.redactions);
        if let Some(list) = message.redactions_mut() {
            list.append(&mut self.redactions);
        }
        Outcome {
            revealed: self.revealed,
            tally,
        }
    }

    /// Redacts `message` as the item at `prefix` of a larger reply, keeping
    /// the redactions for the reply's own list (see [`Redactor::into_parts`]).
    pub fn apply_at<M: Redact>(&mut self, prefix: &str, message: &mut M) {
        let saved = std::mem::replace(&mut self.path, prefix.to_owned());
        message.redact(self);
        self.path = saved;
    }

    /// The redactions and reveals collected by [`Redactor::apply_at`].
    pub fn into_parts(self) -> (Vec<Redaction>, Outcome) {
        let tally = tally(&self.redactions);
        (
            self.redactions,
            Outcome {
                revealed: self.revealed,
                tally,
            },
        )
    }

    fn enter(&mut self, segment: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(segment);
        len
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
    }

    fn note(&mut self, field: &FieldInfo, class: Sensitivity, decision: Decision, replaced: i32) {
        let len = self.enter(field.name);
        self.redactions.push(Redaction {
            path: self.path.clone(),
            class: class as i32,
            action: decision.action.to_proto() as i32,
            reason: decision.reason as i32,
            replaced,
        });
        self.leave(len);
    }

    fn reveal(&mut self, field: &FieldInfo, class: Sensitivity) {
        if matches!(class, Sensitivity::Identity | Sensitivity::Location) {
            let len = self.enter(field.name);
            self.revealed.insert(self.path.clone());
            self.leave(len);
        }
    }

    /// Applies a field-level action to one string; `None` leaves it as it is.
    fn string_action(&self, field: &FieldInfo, action: Action, value: &str) -> Option<String> {
        match action {
            Action::Show => None,
            Action::Drop => Some(String::new()),
            Action::Mask => Some(match field.shape {
                FieldShape::SubjectName | FieldShape::PersonName => initials(value),
                FieldShape::Number => mask_number(value),
                FieldShape::Email => mask_email(value),
                FieldShape::BirthDate => value.get(..4).map(str::to_owned).unwrap_or_default(),
                _ => String::new(),
            }),
            Action::Generalise => Some(match field.shape {
                FieldShape::BirthDate => age_band(value, self.today),
                FieldShape::Address => county_in(value),
                FieldShape::County | FieldShape::Code if !self.view.coarse_quasi => {
                    value.to_owned()
                }
                _ => String::new(),
            }),
            Action::Pseudonymise => Some(match field.shape {
                FieldShape::SubjectName => self.view.pseudonym.clone(),
                _ => String::new(),
            }),
        }
    }

    /// Scans free text the viewer may read and treats each identifier by its class.
    fn scan(&mut self, field: &FieldInfo, value: &mut String) {
        let hits = Detector::global().scan(self.record, value);
        if hits.is_empty() {
            return;
        }
        let mut counts: Vec<(Sensitivity, Decision, i32)> = Vec::new();
        let mut revealed_any = false;
        let view = self.view;
        let replaced = replace_hits(value, &hits, |hit: &Hit, text: &str| {
            let class = hit_class(hit);
            let decision = view.decide(class);
            if decision.action == Action::Show {
                revealed_any |= matches!(class, Sensitivity::Identity | Sensitivity::Location);
                return None;
            }
            match counts
                .iter_mut()
                .find(|(c, d, _)| *c == class && *d == decision)
            {
                Some(entry) => entry.2 += 1,
                None => counts.push((class, decision, 1)),
            }
            Some(Cow::Owned(replace_identifier(
                hit,
                text,
                decision.action,
                &view.pseudonym,
            )))
        })
        .into_owned();
        *value = replaced;
        for (class, decision, n) in counts {
            self.note(field, class, decision, n);
        }
        if revealed_any {
            self.reveal(field, Sensitivity::Identity);
        }
    }
}

fn hit_class(hit: &Hit) -> Sensitivity {
    match hit.class {
        IdentifierClass::Identity => Sensitivity::Identity,
        IdentifierClass::Location => Sensitivity::Location,
        IdentifierClass::Suspect => Sensitivity::Suspect,
    }
}

fn replace_identifier(hit: &Hit, text: &str, action: Action, pseudonym: &str) -> String {
    match (action, hit.kind, hit.class) {
        (Action::Mask, HitKind::Name, _) => initials(text),
        (Action::Mask, HitKind::Email, _) => mask_email(text),
        (Action::Mask, HitKind::Address | HitKind::Coordinates, _) => "[location]".into(),
        (Action::Mask, _, _) => mask_number(text),
        (Action::Generalise, _, IdentifierClass::Location) => {
            let county = county_in(text);
            if county.is_empty() {
                "[location]".into()
            } else {
                county
            }
        }
        (Action::Pseudonymise, HitKind::Name, IdentifierClass::Identity) => pseudonym.to_owned(),
        _ => WITHHELD.to_owned(),
    }
}

impl Visitor for Redactor<'_> {
    fn string(&mut self, field: &'static FieldInfo, value: &mut String) {
        if value.is_empty() {
            return;
        }
        let decision = self.view.decide(field.class);
        if field.free_text && decision.action == Action::Show {
            self.scan(field, value);
            return;
        }
        match self.string_action(field, decision.action, value) {
            None => self.reveal(field, field.class),
            Some(new) => {
                if decision.action == Action::Mask && !new.is_empty() {
                    self.reveal(field, field.class);
                }
                *value = new;
                self.note(field, field.class, decision, 0);
            }
        }
    }

    fn strings(&mut self, field: &'static FieldInfo, value: &mut Vec<String>) {
        if value.is_empty() {
            return;
        }
        let decision = self.view.decide(field.class);
        if decision.action == Action::Show {
            if field.free_text {
                for item in value.iter_mut() {
                    self.scan(field, item);
                }
            } else {
                self.reveal(field, field.class);
            }
            return;
        }
        let mut out = Vec::with_capacity(value.len());
        for item in value.iter() {
            if let Some(new) = self.string_action(field, decision.action, item)
                && !new.is_empty()
            {
                out.push(new);
            }
        }
        if decision.action == Action::Mask && !out.is_empty() {
            self.reveal(field, field.class);
        }
        *value = out;
        self.note(field, field.class, decision, 0);
    }

    fn enumeration(&mut self, field: &'static FieldInfo, value: &mut i32) {
        if *value == 0 {
            return;
        }
        let decision = self.view.decide(field.class);
        let keep = match decision.action {
            Action::Show => true,
            Action::Generalise => field.shape == FieldShape::Code && !self.view.coarse_quasi,
            _ => false,
        };
        if !keep {
            *value = 0;
            self.note(field, field.class, decision, 0);
        } else if decision.action != Action::Show {
            self.note(field, field.class, decision, 0);
        }
    }

    fn enumerations(&mut self, field: &'static FieldInfo, value: &mut Vec<i32>) {
        if value.is_empty() {
            return;
        }
        let decision = self.view.decide(field.class);
        if decision.action != Action::Show {
            value.clear();
            self.note(field, field.class, decision, 0);
        }
    }

    fn boolean(&mut self, field: &'static FieldInfo, value: &mut bool) {
        if !*value {
            return;
        }
        let decision = self.view.decide(field.class);
        if decision.action != Action::Show {
            *value = false;
            self.note(field, field.class, decision, 0);
        }
    }

    fn double(&mut self, field: &'static FieldInfo, value: &mut f64) {
        if *value == 0.0 {
            return;
        }
        let decision = self.view.decide(field.class);
        match decision.action {
            Action::Show => self.reveal(field, field.class),
            Action::Generalise | Action::Mask
                if field.shape == FieldShape::Coordinate && !self.view.coarse_quasi =>
            {
                *value = (*value * 10.0).round() / 10.0;
                self.note(field, field.class, decision, 0);
            }
            _ => {
                *value = 0.0;
                self.note(field, field.class, decision, 0);
            }
        }
    }

    fn int64(&mut self, field: &'static FieldInfo, value: &mut i64) {
        if *value != 0 && self.view.decide(field.class).action != Action::Show {
            *value = 0;
            self.note(field, field.class, self.view.decide(field.class), 0);
        }
    }

    fn int32(&mut self, field: &'static FieldInfo, value: &mut i32) {
        if *value != 0 && self.view.decide(field.class).action != Action::Show {
            *value = 0;
            self.note(field, field.class, self.view.decide(field.class), 0);
        }
    }

    fn opaque<T>(&mut self, field: &'static FieldInfo, value: &mut Option<T>) {
        if value.is_some() && self.view.decide(field.class).action != Action::Show {
            *value = None;
            self.note(field, field.class, self.view.decide(field.class), 0);
        }
    }

    fn message<M: Redact>(&mut self, field: &'static FieldInfo, value: &mut Option<M>) {
        let Some(inner) = value.as_mut() else {
            return;
        };
        let decision = self.view.decide(field.class);
        if decision.action == Action::Drop
            || (decision.action == Action::Pseudonymise && field.class != Sensitivity::Operational)
        {
            *value = None;
            self.note(field, field.class, decision, 0);
            return;
        }
        let len = self.enter(field.name);
        inner.redact(self);
        self.leave(len);
    }

    fn messages<M: Redact>(&mut self, field: &'static FieldInfo, value: &mut Vec<M>) {
        if value.is_empty() {
            return;
        }
        let decision = self.view.decide(field.class);
        if decision.action == Action::Drop
            || (decision.action == Action::Pseudonymise && field.class != Sensitivity::Operational)
        {
            value.clear();
            self.note(field, field.class, decision, 0);
            return;
        }
        for (i, item) in value.iter_mut().enumerate() {
            let len = self.enter(&format!("{}[{i}]", field.name));
            item.redact(self);
            self.leave(len);
        }
    }
}

/// "Wanjiru Kamau" → "W. K."
pub fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphabetic()))
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// "+254712345678" → "+•••••••••678": only the last 3 digits are kept.
pub fn mask_number(number: &str) -> String {
    let digits = number.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    let mut seen = 0;
    number
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen + 3 > digits { c } else { '•' }
            } else {
                c
            }
        })
        .collect()
}

/// "amina.w@example.org" → "a•••@•••"
pub fn mask_email(email: &str) -> String {
    let first = email.chars().next().map(String::from).unwrap_or_default();
    format!("{first}•••@•••")
}

/// "1999-04-17" → "25-29" (five-year band of the age today).
pub fn age_band(date: &str, today: NaiveDate) -> String {
    let Ok(birth) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return String::new();
    };
    let age = age_on(birth, today).max(0);
    let low = age / 5 * 5;
    format!("{low}-{}", low + 4)
}

/// The county an address or place description names, or "" when none.
pub fn county_in(text: &str) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    for n in [3, 2, 1] {
        for window in words.windows(n) {
            if let Some(county) = canonical_county(&window.join(" ")) {
                return county.to_owned();
            }
        }
    }
    String::new()
}

/// A `RedactionReason` for log and test readability.
pub fn reason_name(reason: i32) -> &'static str {
    RedactionReason::try_from(reason).map_or("UNKNOWN", |r| r.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_a_hint() {
        assert_eq!(initials("Wanjiru  Kamau"), "W. K.");
        assert_eq!(mask_number("+254712345678"), "+•••••••••678");
        assert_eq!(mask_number("A1234567"), "•••••567");
        assert_eq!(mask_email("amina@example.org"), "a•••@•••");
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(age_band("1999-04-17", today), "25-29");
        assert_eq!(age_band("2020-01-01", today), "5-9");
        assert_eq!(
            county_in("Manyatta Estate, House 133, Kirinyaga"),
            "Kirinyaga"
        );
        assert_eq!(county_in("Tana River bridge"), "Tana River");
        assert_eq!(county_in("House 4"), "");
    }
}
