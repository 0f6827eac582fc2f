//! What the desk client prints: aligned tables for lists, `key: value` blocks
//! for single objects (drawn from the descriptors, so a field added to a proto
//! shows up without touching this file), the proto3 JSON mapping for `--json`,
//! and gRPC errors with their `BadRequest` field violations.
//!
//! Everything shown to a person passes through [`clean`]: text typed by other
//! agencies (messages, reasons) must not be able to move the cursor or recolour
//! the terminal.

use std::fmt::Write as _;

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage as _, Value};
use refnet_api::v1 as pb;
use tonic::Code;

/// A generated `refnet.v1` message the client prints or reads as JSON.
pub(crate) trait Proto: prost::Message + Default + Sized {
    /// Its fully qualified proto name.
    const NAME: &'static str;
}

macro_rules! proto {
    ($($ty:ident),* $(,)?) => {$(
        impl Proto for pb::$ty {
            const NAME: &'static str = concat!("refnet.v1.", stringify!($ty));
        }
    )*};
}

proto!(
    ReferralDraft,
    Referral,
    FileReferralResponse,
    GetReferralResponse,
    ListReferralsResponse,
    Handoff,
    ListInboxResponse,
    InboxEvent,
    ThreadMessage,
    TimelineEvent,
    ProtectionRequest,
    ListProtectionRequestsResponse,
    Redaction,
    ListTriageResponse,
    ListNotificationsResponse,
    MarkNotificationsReadResponse,
    Webhook,
    CloseReferralResponse,
    ListSentHandoffsResponse,
    ProtectionRequestEvent,
    NotificationMutes,
);

/// The descriptor of `M`.
fn descriptor<M: Proto>() -> anyhow::Result<MessageDescriptor> {
    refnet_api::descriptor_pool()
        .get_message_by_name(M::NAME)
        .ok_or_else(|| anyhow::anyhow!("{} is not in the contract", M::NAME))
}

/// `message` as a dynamic message, for walking its fields by descriptor.
fn dynamic<M: Proto>(message: &M) -> anyhow::Result<DynamicMessage> {
    Ok(DynamicMessage::decode(
        descriptor::<M>()?,
        message.encode_to_vec().as_slice(),
    )?)
}

/// Reads `M` from JSON in the proto3 mapping (field names in camelCase or as
/// in the proto, enum values by name or number); unknown fields are errors.
pub(crate) fn from_json<M: Proto>(text: &str) -> anyhow::Result<M> {
    let mut de = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize(descriptor::<M>()?, &mut de)?;
    de.end()?;
    Ok(message.transcode_to::<M>()?)
}

/// `message` in the proto3 JSON mapping, with the proto's field names (as in
/// redaction and violation paths), enum values by name and every field present.
pub(crate) fn to_json<M: Proto>(message: &M) -> anyhow::Result<serde_json::Value> {
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    Ok(dynamic(message)?.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// Prints one JSON document.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes `text` to standard output; a closed pipe (`| head`) ends quietly.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// `text` safe for a terminal: control characters (escapes, line breaks) become spaces.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A timestamp to the second, RFC 3339; empty when absent.
pub(crate) fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|t| {
        prost_types::Timestamp {
            seconds: t.seconds,
            nanos: 0,
        }
        .to_string()
    })
    .unwrap_or_default()
}

/// The name of an enum value without its type prefix: `HANDOFF_STATE_ACCEPTED` → `ACCEPTED`.
pub(crate) fn enum_name(enum_full_name: &str, number: i32) -> String {
    let Some(e) = refnet_api::descriptor_pool().get_enum_by_name(enum_full_name) else {
        return number.to_string();
    };
    let prefix = e
        .get_value(0)
        .map(|v| v.name().trim_end_matches("UNSPECIFIED").to_owned())
        .unwrap_or_default();
    e.get_value(number)
        .map(|v| {
            v.name()
                .strip_prefix(&prefix)
                .unwrap_or(v.name())
                .to_owned()
        })
        .unwrap_or_else(|| number.to_string())
}

/// Parses a command-line enum value: `accepted`, `ACCEPTED`, `video-link-testimony`
/// or the full name; the error lists the accepted values.
pub(crate) fn parse_enum(enum_full_name: &str, input: &str) -> Result<i32, String> {
    let e = refnet_api::descriptor_pool()
        .get_enum_by_name(enum_full_name)
        .ok_or_else(|| format!("{enum_full_name} is not in the contract"))?;
    let prefix = e
        .get_value(0)
        .map(|v| v.name().trim_end_matches("UNSPECIFIED").to_owned())
        .unwrap_or_default();
    let wanted = input.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    e.values()
        .filter(|v| v.number() != 0)
        .find(|v| v.name() == wanted || v.name().strip_prefix(&prefix) == Some(wanted.as_str()))
        .map(|v| v.number())
        .ok_or_else(|| {
            let names: Vec<String> = e
                .values()
                .filter(|v| v.number() != 0)
                .map(|v| {
                    v.name()
                        .strip_prefix(&prefix)
                        .unwrap_or(v.name())
                        .to_ascii_lowercase()
                        .replace('_', "-")
                })
                .collect();
            format!("expected one of: {}", names.join(", "))
        })
}

/// The names of `values` of enum `enum_full_name`, comma-separated.
pub(crate) fn enum_names(enum_full_name: &str, values: &[i32]) -> String {
    values
        .iter()
        .map(|v| enum_name(enum_full_name, *v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "yes" or "no".
pub(crate) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A table whose columns are as wide as their widest cell.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    /// The table as text, two spaces between columns, no trailing blanks.
    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{:pad$}  ", "");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A `key: value` block: keys padded so the values line up.
#[derive(Default)]
pub(crate) struct Block {
    lines: Vec<(String, Option<String>)>,
}

impl Block {
    /// A line `key: value` (`value` cleaned for the terminal).
    pub(crate) fn kv(&mut self, key: impl Into<String>, value: impl AsRef<str>) -> &mut Self {
        self.lines.push((key.into(), Some(clean(value.as_ref()))));
        self
    }

    /// A line `key: value` only when `value` is not empty.
    pub(crate) fn kv_some(&mut self, key: impl Into<String>, value: impl AsRef<str>) -> &mut Self {
        if !value.as_ref().is_empty() {
            self.kv(key, value);
        }
        self
    }

    /// A heading line `key:` for the indented lines after it.
    pub(crate) fn heading(&mut self, key: impl Into<String>) -> &mut Self {
        self.lines.push((key.into(), None));
        self
    }

    /// The lines: a key (indented two spaces per level) and its value, none
    /// for a heading.
    pub(crate) fn lines(&self) -> &[(String, Option<String>)] {
        &self.lines
    }

    /// The block as text.
    pub(crate) fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.chars().count() + 1)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.lines {
            let label = format!("{key}:");
            match value {
                Some(v) if !v.is_empty() => {
                    let _ = writeln!(out, "{label:width$}  {v}");
                }
                _ => {
                    let _ = writeln!(out, "{label}");
                }
            }
        }
        out
    }
}

/// `message` as a `key: value` block: every field that is set, nested messages
/// indented, enum values by name, timestamps in RFC 3339; redactions are left
/// out (see [`withheld`]).
pub(crate) fn object<M: Proto>(message: &M) -> anyhow::Result<Block> {
    let mut block = Block::default();
    walk(&dynamic(message)?, 0, &mut block);
    Ok(block)
}

fn label(name: &str) -> String {
    name.replace('_', " ")
}

fn walk(message: &DynamicMessage, depth: usize, block: &mut Block) {
    let indent = "  ".repeat(depth);
    for field in message.descriptor().fields() {
        if is_redaction_list(&field.kind()) {
            continue;
        }
        let key = format!("{indent}{}", label(field.name()));
        let value = message.get_field(&field);
        match value.as_ref() {
            Value::List(items) => {
                if items.is_empty() {
                    continue;
                }
                if let Kind::Message(m) = field.kind()
                    && !is_timestamp(&m)
                {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Message(inner) = item {
                            nested(format!("{key}[{i}]"), inner, depth, block);
                        }
                    }
                } else {
                    let text: Vec<String> =
                        items.iter().map(|v| scalar(v, &field.kind())).collect();
                    block.kv(key, text.join(", "));
                }
            }
            Value::Message(inner) => {
                if !message.has_field(&field) {
                    continue;
                }
                if is_timestamp(&inner.descriptor()) {
                    block.kv(key, scalar(value.as_ref(), &field.kind()));
                } else {
                    nested(key, inner, depth, block);
                }
            }
            Value::String(s) if s.is_empty() => {}
            Value::EnumNumber(0) => {}
            other => {
                block.kv(key, scalar(other, &field.kind()));
            }
        }
    }
}

/// A heading and the fields of `inner` under it; "(none shown)" when none is
/// set (for instance every field withheld).
fn nested(key: String, inner: &DynamicMessage, depth: usize, block: &mut Block) {
    let at = block.lines.len();
    block.heading(key);
    walk(inner, depth + 1, block);
    if block.lines.len() == at + 1 {
        block.lines[at].1 = Some("(none shown)".to_owned());
    }
}

fn is_timestamp(m: &MessageDescriptor) -> bool {
    m.full_name() == "google.protobuf.Timestamp"
}

fn is_redaction_list(kind: &Kind) -> bool {
    matches!(kind, Kind::Message(m) if m.full_name() == "refnet.v1.Redaction")
}

fn scalar(value: &Value, kind: &Kind) -> String {
    match (value, kind) {
        (Value::EnumNumber(n), Kind::Enum(e)) => enum_name(e.full_name(), *n),
        (Value::Bool(b), _) => yes_no(*b).to_owned(),
        (Value::String(s), _) => s.clone(),
        (Value::I32(n), _) => n.to_string(),
        (Value::I64(n), _) => n.to_string(),
        (Value::U32(n), _) => n.to_string(),
        (Value::U64(n), _) => n.to_string(),
        (Value::F64(n), _) => n.to_string(),
        (Value::F32(n), _) => n.to_string(),
        (Value::Message(m), _) if is_timestamp(&m.descriptor()) => {
            let seconds = m
                .get_field_by_name("seconds")
                .and_then(|v| v.as_i64())
                .unwrap_or_default();
            time(Some(&prost_types::Timestamp { seconds, nanos: 0 }))
        }
        (other, _) => format!("{other:?}"),
    }
}

/// The "withheld" lines of `redactions`: path, class, action, reason (and how
/// many identifiers were replaced in free text).
pub(crate) fn withheld(redactions: &[pb::Redaction]) -> String {
    if redactions.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["WITHHELD", "CLASS", "ACTION", "REASON", "REPLACED"]);
    for r in redactions {
        table.row(vec![
            r.path.clone(),
            enum_name("refnet.v1.Sensitivity", r.class),
            enum_name("refnet.v1.RedactionAction", r.action),
            enum_name("refnet.v1.RedactionReason", r.reason),
            if r.replaced > 0 {
                r.replaced.to_string()
            } else {
                String::new()
            },
        ]);
    }
    table.render()
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`).
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A failed call in words: `CODE: message`, then one line per field violation
/// (`  field.path: description`) when the status carries a `BadRequest`.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let mut text = format!("{}: {}", code_name(status.code()), clean(status.message()));
    if let Some(bad) = status.get_details_bad_request() {
        for v in &bad.field_violations {
            let _ = write!(text, "\n  {}: {}", clean(&v.field), clean(&v.description));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_parse_in_any_spelling_and_print_without_prefix() {
        let measure = "refnet.v1.ProtectionMeasure";
        let video = pb::ProtectionMeasure::VideoLinkTestimony as i32;
        assert_eq!(parse_enum(measure, "video-link-testimony"), Ok(video));
        assert_eq!(parse_enum(measure, "VIDEO_LINK_TESTIMONY"), Ok(video));
        assert_eq!(
            parse_enum(measure, "PROTECTION_MEASURE_VIDEO_LINK_TESTIMONY"),
            Ok(video)
        );
        let err = parse_enum(measure, "unspecified").unwrap_err();
        assert!(
            err.contains("relocation") && !err.contains("unspecified"),
            "{err}"
        );
        assert_eq!(enum_name(measure, video), "VIDEO_LINK_TESTIMONY");
        assert_eq!(enum_name("refnet.v1.HandoffState", 4), "ACCEPTED");
        assert_eq!(enum_name("refnet.v1.HandoffState", 99), "99");
    }

    #[test]
    fn tables_align_by_characters_and_clean_control_characters() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["•••926".into(), "x".into()]);
        t.row(vec!["ab\x1b[31m".into(), "y\nz".into()]);
        assert_eq!(t.render(), "A        B\n•••926   x\nab [31m  y z\n");
    }

    #[test]
    fn objects_show_set_fields_nested_and_skip_redactions() {
        let handoff = pb::Handoff {
            id: "h-1".into(),
            state: pb::HandoffState::Accepted as i32,
            version: 4,
            acknowledge_by: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 5,
            }),
            checklist: vec![pb::ChecklistItem {
                item: "passport copy".into(),
                provided: true,
                ..Default::default()
            }],
            redactions: vec![pb::Redaction {
                path: "purpose".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = object(&handoff).unwrap().render();
        assert!(text.contains("id:"), "{text}");
        assert!(text.contains("ACCEPTED"), "{text}");
        assert!(text.contains("1970-01-01T00:00:00Z"), "{text}");
        assert!(text.contains("checklist[0]:\n  item:"), "{text}");
        assert!(
            !text.contains("redactions") && !text.contains("purpose"),
            "{text}"
        );
        assert!(
            !text.contains("reference code"),
            "empty fields are left out: {text}"
        );
    }

    #[test]
    fn json_round_trips_in_the_proto3_mapping() {
        let draft: pb::ReferralDraft = from_json(
            r#"{"subject": {"givenName": "A", "family_name": "B"}, "urgency": "URGENCY_HIGH", "needs": [1]}"#,
        )
        .unwrap();
        assert_eq!(draft.subject.as_ref().unwrap().family_name, "B");
        assert_eq!(draft.urgency, pb::Urgency::High as i32);
        assert!(from_json::<pb::ReferralDraft>(r#"{"subjekt": {}}"#).is_err());
        let json = to_json(&draft).unwrap();
        assert_eq!(json["subject"]["given_name"], "A");
        assert_eq!(json["urgency"], "URGENCY_HIGH");
        assert_eq!(json["county"], "", "defaults are present");
    }

    #[test]
    fn statuses_list_their_field_violations() {
        use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};
        let mut details = ErrorDetails::new();
        details.set_bad_request(vec![
            FieldViolation::new("draft.urgency", "is required"),
            FieldViolation::new("draft.county", "unknown county"),
        ]);
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            "invalid request: draft.urgency, draft.county",
            details,
        );
        assert_eq!(
            status_text(&status),
            "INVALID_ARGUMENT: invalid request: draft.urgency, draft.county\n  draft.urgency: is required\n  draft.county: unknown county"
        );
    }
}
