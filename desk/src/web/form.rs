//! The filing form, drawn from the contract: every field of
//! `refnet.v1.ReferralDraft`, as the descriptors compiled into refnet name
//! them, becomes an input named by its path (`subject.given_name`,
//! `suspects.0.name`), so a field added to the contract appears here without
//! a change. A posted form is read back into a draft by the same descriptors;
//! the server validates it, and its field violations (paths like
//! `draft.subject.date_of_birth`) land beside the inputs of those paths.

use std::collections::BTreeMap;

use maud::{Markup, html};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::text::{Lang, label, t};

/// Entries a repeated message (suspects, next of kin) offers on the form.
const REPEATED_ENTRIES: usize = 2;

/// Fields the server sets, not the officer.
const SERVER_SET: [&str; 2] = ["consent.recorded_at", "consent.recorded_by_officer"];

/// Fields that hold free text: a text area.
fn is_long_text(field: &FieldDescriptor) -> bool {
    ["narrative", "notes", "injuries", "address", "location"]
        .iter()
        .any(|w| field.name().contains(w))
}

fn is_timestamp(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.protobuf.Timestamp"
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The contract's draft message.
pub(crate) fn draft() -> anyhow::Result<MessageDescriptor> {
    refnet_api::descriptor_pool()
        .get_message_by_name("refnet.v1.ReferralDraft")
        .ok_or_else(|| anyhow::anyhow!("refnet.v1.ReferralDraft is not in the contract"))
}

/// What the officer typed, by input name (several values for checkboxes).
pub(crate) type Values = BTreeMap<String, Vec<String>>;

/// Field violations by input path.
pub(crate) type Errors = BTreeMap<String, String>;

/// The form's inputs for `message` under `prefix`, with `values` filled in
/// and `errors` beside their inputs.
pub(crate) fn inputs(
    lang: Lang,
    message: &MessageDescriptor,
    prefix: &str,
    values: &Values,
    errors: &Errors,
) -> Markup {
    html! {
        @for field in message.fields() {
            @let path = join(prefix, field.name());
            @if !SERVER_SET.contains(&path.as_str()) {
                (input(lang, &field, &path, values, errors))
            }
        }
    }
}

fn first<'a>(values: &'a Values, path: &str) -> &'a str {
    values
        .get(path)
        .and_then(|v| v.first())
        .map_or("", String::as_str)
}

fn error(errors: &Errors, path: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(path) {
            span.violation id=(format!("{path}-error")) { (e) }
        }
    }
}

fn input(
    lang: Lang,
    field: &FieldDescriptor,
    path: &str,
    values: &Values,
    errors: &Errors,
) -> Markup {
    let name = label(lang, &format!("draft.{path}"), field.name());
    let invalid = errors.contains_key(path);
    match field.kind() {
        Kind::Message(inner) if is_timestamp(&inner) => html! {},
        Kind::Message(inner) if field.is_list() => html! {
            fieldset {
                legend { (name) } (error(errors, path))
                @for i in 0..REPEATED_ENTRIES {
                    fieldset.entry {
                        legend { (i + 1) }
                        (inputs(lang, &inner, &format!("{path}.{i}"), values, errors))
                    }
                }
            }
        },
        Kind::Message(inner) => html! {
            fieldset {
                legend { (name) } (error(errors, path))
                (inputs(lang, &inner, path, values, errors))
            }
        },
        Kind::Enum(e) if field.is_list() => {
            let chosen = values.get(path).cloned().unwrap_or_default();
            html! {
                fieldset.choices {
                    legend { (name) } (error(errors, path))
                    @for v in e.values().filter(|v| v.number() != 0) {
                        label.choice {
                            input type="checkbox" name=(path) value=(v.name())
                                checked[chosen.iter().any(|c| c == v.name())];
                            " " (short(&e, v.name()))
                        }
                    }
                }
            }
        }
        Kind::Enum(e) => {
            let chosen = first(values, path);
            html! {
                label.field {
                    span { (name) }
                    select name=(path) aria-invalid=[invalid.then_some("true")] {
                        option value="" { "" }
                        @for v in e.values().filter(|v| v.number() != 0) {
                            option value=(v.name()) selected[chosen == v.name()] { (short(&e, v.name())) }
                        }
                    }
                    (error(errors, path))
                }
            }
        }
        Kind::Bool => html! {
            label.choice {
                input type="checkbox" name=(path) value="true" checked[first(values, path) == "true"];
                " " (name)
                (error(errors, path))
            }
        },
        Kind::String if field.is_list() => html! {
            label.field {
                span { (name) " (" (t(lang, "file.lines")) ")" }
                textarea name=(path) rows="2" aria-invalid=[invalid.then_some("true")] { (first(values, path)) }
                (error(errors, path))
            }
        },
        Kind::String if is_long_text(field) => html! {
            label.field {
                span { (name) }
                textarea name=(path) rows="3" aria-invalid=[invalid.then_some("true")] { (first(values, path)) }
                (error(errors, path))
            }
        },
        Kind::String => html! {
            label.field {
                span { (name) }
                input type="text" name=(path) value=(first(values, path)) aria-invalid=[invalid.then_some("true")];
                (error(errors, path))
            }
        },
        _ => html! {
            label.field {
                span { (name) }
                input type="number" step="any" name=(path) value=(first(values, path)) aria-invalid=[invalid.then_some("true")];
                (error(errors, path))
            }
        },
    }
}

/// An enum value without its type's prefix, in words: `NEED_SHELTER` -> `shelter`.
pub(crate) fn short(e: &prost_reflect::EnumDescriptor, value: &str) -> String {
    let prefix = e
        .get_value(0)
        .map(|v| v.name().trim_end_matches("UNSPECIFIED").to_owned())
        .unwrap_or_default();
    value
        .strip_prefix(&prefix)
        .unwrap_or(value)
        .replace('_', " ")
        .to_ascii_lowercase()
}

/// The posted form as `Values`.
pub(crate) fn values(pairs: &[(String, String)]) -> Values {
    let mut out = Values::new();
    for (k, v) in pairs {
        out.entry(k.clone()).or_default().push(v.clone());
    }
    out
}

/// The draft the form describes, in the proto3 JSON mapping (empty inputs
/// left out; the server says what is missing).
pub(crate) fn to_json(
    message: &MessageDescriptor,
    prefix: &str,
    values: &Values,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut out = serde_json::Map::new();
    for field in message.fields() {
        let path = join(prefix, field.name());
        if SERVER_SET.contains(&path.as_str()) {
            continue;
        }
        let given: Vec<&str> = values
            .get(&path)
            .map(|v| {
                v.iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let value = match field.kind() {
            Kind::Message(inner) if is_timestamp(&inner) => None,
            Kind::Message(inner) if field.is_list() => {
                let entries: Vec<Value> = (0..REPEATED_ENTRIES)
                    .map(|i| to_json(&inner, &format!("{path}.{i}"), values))
                    .filter(|m| !m.is_empty())
                    .map(Value::Object)
                    .collect();
                (!entries.is_empty()).then_some(Value::Array(entries))
            }
            Kind::Message(inner) => {
                let m = to_json(&inner, &path, values);
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Kind::String if field.is_list() => {
                let lines: Vec<Value> = given
                    .iter()
                    .flat_map(|v| v.lines())
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Value::String(l.to_owned()))
                    .collect();
                (!lines.is_empty()).then_some(Value::Array(lines))
            }
            Kind::Enum(_) if field.is_list() => (!given.is_empty()).then(|| {
                Value::Array(
                    given
                        .iter()
                        .map(|v| Value::String((*v).to_owned()))
                        .collect(),
                )
            }),
            Kind::Bool => given.contains(&"true").then_some(Value::Bool(true)),
            Kind::String | Kind::Enum(_) => given.first().map(|v| Value::String((*v).to_owned())),
            _ => given.first().map(|v| match v.parse::<f64>() {
                Ok(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
                Ok(n) => Value::from(n),
                // Not a number: sent as written, the server's answer names the field.
                Err(_) => Value::String((*v).to_owned()),
            }),
        };
        if let Some(value) = value {
            out.insert(field.name().to_owned(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_form_becomes_a_draft_by_the_contract() {
        let pairs: Vec<(String, String)> = [
            ("subject.given_name", "Amani"),
            ("subject.phones", "0712 345 678\n\n0733 000 000"),
            ("needs", "NEED_SHELTER"),
            ("needs", "NEED_MEDICAL"),
            ("consent.given", "true"),
            ("suspects.1.name", "Demo Suspect"),
            ("subject.coordinates.latitude", "-1.28"),
            ("county", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let d = draft().expect("descriptor");
        let json = serde_json::Value::Object(to_json(&d, "", &values(&pairs)));
        assert_eq!(json["subject"]["given_name"], "Amani");
        assert_eq!(
            json["subject"]["phones"],
            serde_json::json!(["0712 345 678", "0733 000 000"])
        );
        assert_eq!(
            json["needs"],
            serde_json::json!(["NEED_SHELTER", "NEED_MEDICAL"])
        );
        assert_eq!(json["consent"]["given"], true);
        assert_eq!(
            json["suspects"],
            serde_json::json!([{"name": "Demo Suspect"}])
        );
        assert!(json.get("county").is_none(), "an empty input is left out");
        // It is a ReferralDraft by the contract.
        let message = prost_reflect::DynamicMessage::deserialize(d, json).expect("a draft");
        assert!(message.has_field_by_name("subject"));
    }

    #[test]
    fn every_field_of_the_draft_has_an_input() {
        let d = draft().expect("descriptor");
        let form = inputs(Lang::En, &d, "", &Values::new(), &Errors::new()).into_string();
        for path in [
            "subject.given_name",
            "subject.national_id",
            "case_facts.acts",
            "needs",
            "consent.agency_kinds",
            "suspects.1.phone",
            "special.health_notes",
            "county",
        ] {
            assert!(form.contains(&format!("name=\"{path}\"")), "{path}");
        }
        assert!(!form.contains("recorded_by_officer"));
        let pool = refnet_api::descriptor_pool();
        let need = pool.get_enum_by_name("refnet.v1.Need").expect("Need");
        assert_eq!(short(&need, "NEED_SHELTER"), "shelter");
    }
}
