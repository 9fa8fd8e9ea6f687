//! The audit event and the rules its fields must satisfy.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{Hash, KeyId};
use crate::time::{Month, Timestamp};

/// An organisation (tenant) id: 1–64 characters of `[A-Za-z0-9._-]`, not `.` or `..`, and
/// not a name the log directory uses for itself: `LOCK` ([`crate::LOCK_FILE`]).
///
/// Org ids name directories, so the rule rules out path traversal by construction, and an
/// org's directory never collides with the directory's lock file (whose org could never
/// be written). The rule is case-sensitive (`lock` is an org id), as the file systems the
/// log supports are.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(Arc<str>);

/// A field of an event, or an org id, broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid {field}{}: {reason}", .org.as_ref().map(|o| format!(" of an event for org {o}")).unwrap_or_default())]
pub struct InvalidField {
    /// Which field.
    pub field: &'static str,
    /// Which rule it broke.
    pub reason: String,
    /// The org of the event whose field it is, once its org id passed its own rule:
    /// `None` for an invalid org id, and outside an event (a keyring's org).
    pub org: Option<OrgId>,
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        reason: reason.into(),
        org: None,
    }
}

impl OrgId {
    /// Validates and wraps an org id.
    pub fn new(id: &str) -> Result<OrgId, InvalidField> {
        check_org_id(id)?;
        Ok(OrgId(Arc::from(id)))
    }

    /// An org id read back from a file that may predate the reserved names (a keyring):
    /// the character rule only, so that such a file stays readable. No log can have
    /// written such an org (its directory would have collided), so nothing else needs it.
    pub(crate) fn stored(id: &str) -> Result<OrgId, InvalidField> {
        check_org_chars(id)?;
        Ok(OrgId(Arc::from(id)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for OrgId {
    /// Lets maps keyed by `OrgId` be searched with a `&str` (hash, equality and order are
    /// those of the string).
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The names the log directory uses beside its org directories, and what for: no org id
/// may be one of them (docs/FORMAT.md §1).
const RESERVED_ORG_IDS: &[(&str, &str)] = &[(crate::log::LOCK_FILE, "the writer's lock file")];

/// The org id rule, without allocating.
pub(crate) fn check_org_id(id: &str) -> Result<(), InvalidField> {
    check_org_chars(id)?;
    if let Some((_, what)) = RESERVED_ORG_IDS.iter().find(|(name, _)| *name == id) {
        return Err(invalid(
            "org_id",
            format!("{id:?} is reserved: the log directory uses that name for {what}"),
        ));
    }
    Ok(())
}

/// The org id rule without the reserved names.
fn check_org_chars(id: &str) -> Result<(), InvalidField> {
    if id.is_empty() || id.len() > 64 {
        return Err(invalid(
            "org_id",
            format!("{:?} must be 1 to 64 characters", Preview(id)),
        ));
    }
    if id == "." || id == ".." {
        return Err(invalid("org_id", format!("{id:?} is not allowed")));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if !id.bytes().all(allowed)
        && let Some(c) = id.chars().find(|&c| !(c.is_ascii() && allowed(c as u8)))
    {
        return Err(invalid(
            "org_id",
            format!(
                "{:?} contains {c:?}; only A-Z a-z 0-9 . _ - are allowed",
                Preview(id)
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({:?})", &*self.0)
    }
}

/// One audit event: who did what to which resource, when, from where.
///
/// In JSON, `occurred_at` is an RFC 3339 string (or integer microseconds); every field but
/// `org_id`, `occurred_at`, `action`, `resource_type` and `resource_id` may be omitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Organisation (tenant) the event belongs to.
    pub org_id: String,
    /// When it happened (UTC, microsecond precision). Decides the month it is filed in.
    pub occurred_at: Timestamp,
    /// Acting user; absent for system actions. 1–256 bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `domain.action`, e.g. `booking.created` ([`validate_action`]).
    pub action: String,
    /// Kind of resource acted on, e.g. `booking`. 1–128 bytes, no control characters.
    pub resource_type: String,
    /// Id of the resource acted on. 1–256 bytes, no control characters.
    pub resource_id: String,
    /// State before the action. Arrays and objects nested at most [`MAX_JSON_DEPTH`] deep
    /// (so are `after` and `metadata`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub before: Value,
    /// State after the action.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub after: Value,
    /// Client IP address (personal data): an IPv4 or IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent (personal data). 1–4,096 bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Session id (personal data). 1–256 bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Distributed trace id. 1–256 bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// A value named in an error message, cut to its first 80 characters (an oversized field
/// of 64 KiB was echoed whole). Debug-formats as the quoted text, with `…` if cut.
pub(crate) struct Preview<'a>(pub &'a str);

impl fmt::Debug for Preview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(80) {
            Some((at, _)) => write!(f, "{:?}…", self.0.get(..at).unwrap_or_default()),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// The text that stands in for erased personal data.
pub const REDACTED: &str = "[REDACTED]";

fn check_text(field: &'static str, v: &str, max: usize) -> Result<(), InvalidField> {
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, at most {max} allowed", v.len()),
        ));
    }
    // One pass without early exit (the compiler vectorises it); the char walk only for
    // the rare non-ASCII text, whose control characters include C1. (One 16-byte-step scan
    // for both ran fewer instructions but took longer on an event's short strings: tried
    // and measured, BENCHMARKS.md.)
    let bytes = v.as_bytes();
    let ascii_control = bytes
        .iter()
        .fold(false, |c, &b| c | (b < 0x20) | (b == 0x7f));
    let non_ascii = bytes.iter().fold(0, |acc, &b| acc | b) >= 0x80;
    let control = if non_ascii {
        v.chars().any(char::is_control)
    } else {
        ascii_control
    };
    if control {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks `domain.action` form: two to eight dot-separated segments of `[a-z0-9_]`, each
/// starting with a letter, at most 128 bytes.
pub fn validate_action(action: &str) -> Result<(), InvalidField> {
    let bad = || {
        invalid(
            "action",
            format!(
                "{:?} is not of the form domain.action (lower-case letters, digits, _; e.g. booking.created)",
                Preview(action)
            ),
        )
    };
    if action.len() > 128 {
        return Err(bad());
    }
    let mut segments = 0;
    for s in action.split('.') {
        segments += 1;
        let mut bytes = s.bytes();
        if segments > 8 || !bytes.next().is_some_and(|b| b.is_ascii_lowercase()) {
            return Err(bad());
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(bad());
        }
    }
    if segments < 2 {
        return Err(bad());
    }
    Ok(())
}

impl Event {
    /// Checks every field; returns the org id and month the event files under.
    pub fn validate(&self) -> Result<(OrgId, Month), InvalidField> {
        let month = self.check()?;
        for (field, v) in [
            ("before", &self.before),
            ("after", &self.after),
            ("metadata", &self.metadata),
        ] {
            check_json_depth(field, v).map_err(|f| self.refusal(f))?;
        }
        Ok((OrgId(Arc::from(self.org_id.as_str())), month))
    }

    /// [`Event::validate`] without building the [`OrgId`] (the append path looks its org
    /// up by `&str` and allocates nothing for an org it already knows) and without the
    /// JSON depth walk: sealing the event checks the depth as it writes the JSON text
    /// (`json::write_compact`), and before it clones a field (`entry::seal`).
    pub(crate) fn check(&self) -> Result<Month, InvalidField> {
        check_org_id(&self.org_id)?;
        self.check_fields().map_err(|f| self.refusal(f))
    }

    /// `f`, naming this event's org (whose id passed its rule).
    pub(crate) fn refusal(&self, f: InvalidField) -> InvalidField {
        InvalidField {
            org: Some(OrgId(Arc::from(self.org_id.as_str()))),
            ..f
        }
    }

    /// [`Event::check`] past the org id.
    fn check_fields(&self) -> Result<Month, InvalidField> {
        let month = self.occurred_at.month().ok_or_else(|| {
            invalid(
                "occurred_at",
                format!("{} is outside 1970-01-01..=9999-12-31", self.occurred_at),
            )
        })?;
        validate_action(&self.action)?;
        check_text("resource_type", &self.resource_type, 128)?;
        check_text("resource_id", &self.resource_id, 256)?;
        if let Some(u) = &self.user_id {
            check_text("user_id", u, 256)?;
        }
        if let Some(ip) = &self.ip
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(invalid(
                "ip",
                format!("{:?} is not an IPv4 or IPv6 address", Preview(ip)),
            ));
        }
        if let Some(ua) = &self.user_agent {
            check_text("user_agent", ua, 4096)?;
        }
        if let Some(s) = &self.session_id {
            check_text("session_id", s, 256)?;
        }
        if let Some(t) = &self.trace_id {
            check_text("trace_id", t, 256)?;
        }
        Ok(month)
    }
}

/// Deepest nesting of arrays and objects a stored JSON text may have: what every reader
/// of the log parses (serde_json's limit, FORMAT.md §2.3). A deeper value would be written
/// and then read back as a malformed record by this engine's own `verify` and queries.
pub const MAX_JSON_DEPTH: usize = 127;

/// Refuses a value nested deeper than [`MAX_JSON_DEPTH`], before anything serialises or
/// clones it (both recurse once per level: an application's value nested 100,000 deep
/// would overflow the stack). The walk recurses at most [`MAX_JSON_DEPTH`] + 1 levels and
/// allocates nothing.
pub(crate) fn check_json_depth(field: &'static str, v: &Value) -> Result<(), InvalidField> {
    /// Whether the containers in `v`, itself inside `depth` of them, nest at most
    /// [`MAX_JSON_DEPTH`] deep.
    fn within(v: &Value, depth: usize) -> bool {
        match v {
            Value::Array(a) => depth < MAX_JSON_DEPTH && a.iter().all(|x| within(x, depth + 1)),
            Value::Object(o) => depth < MAX_JSON_DEPTH && o.values().all(|x| within(x, depth + 1)),
            _ => true,
        }
    }
    if within(v, 0) {
        Ok(())
    } else {
        Err(invalid(field, too_deep()))
    }
}

/// The reason given for JSON nested deeper than [`MAX_JSON_DEPTH`].
pub(crate) fn too_deep() -> String {
    format!("JSON nested deeper than {MAX_JSON_DEPTH} arrays and objects")
}

/// An event read back from the log, with where it sits in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedEvent {
    /// The event. Erased personal data reads as `"[REDACTED]"` (only from an unverified
    /// query: verified reads refuse such a record, `IntegrityKind::ErasedPersonalData`).
    pub event: Event,
    /// Month of its segment.
    pub month: Month,
    /// Part of its segment (0 unless the month continued after damage).
    pub part: u16,
    /// Sequence number within (org, month).
    pub seq: u64,
    /// Its chain hash.
    pub hash: Hash,
    /// Key id of its tag.
    pub key_id: KeyId,
    /// Byte offset of its record in the segment file.
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON nested `depth` arrays deep.
    fn nested(depth: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    /// [`MAX_JSON_DEPTH`] is exactly what the reader parses: deeper was appended and then
    /// read back as malformed.
    #[test]
    fn json_depth_is_what_the_reader_parses() {
        let text = |d| serde_json::to_string(&nested(d)).unwrap_or_default();
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH + 1)).is_err());
        assert!(check_json_depth("after", &nested(MAX_JSON_DEPTH)).is_ok());
        for d in [MAX_JSON_DEPTH + 1, 1_000] {
            let e = check_json_depth("after", &nested(d)).err();
            assert_eq!(e.map(|e| e.field), Some("after"), "{d}");
        }
        // Objects count as arrays do.
        let mut v = Value::Null;
        for _ in 0..=MAX_JSON_DEPTH {
            v = serde_json::json!({ "k": v });
        }
        assert!(check_json_depth("metadata", &v).is_err());
    }

    #[test]
    fn messages_show_at_most_80_characters_of_a_value() {
        let e = validate_action(&"x".repeat(65_536)).err().map(|e| e.reason);
        let reason = e.unwrap_or_default();
        assert!(reason.len() < 300, "{} bytes", reason.len());
        assert!(
            reason.contains(&format!("\"{}\"…", "x".repeat(80))),
            "{reason}"
        );
        assert_eq!(format!("{:?}", Preview("ab")), "\"ab\"");
    }

    #[test]
    fn org_ids() {
        for ok in ["a", "acme-corp", "A.b_c-9", &"x".repeat(64)] {
            assert!(OrgId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a b",
            "é",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(OrgId::new(bad).is_err(), "{bad}");
        }
    }

    /// Review finding 4: `LOCK` names the log directory's lock file, so an org of that name
    /// could never get its directory; it is refused as an org id, with the reason, by
    /// `OrgId::new` and by an event's check (the append path). Other case spellings are
    /// other names.
    #[test]
    fn the_lock_files_name_is_not_an_org_id() {
        for err in [
            OrgId::new(crate::LOCK_FILE).map(|_| ()),
            check_org_id("LOCK"),
        ] {
            let e = err.unwrap_err();
            assert_eq!(e.field, "org_id");
            assert!(
                e.reason.contains("reserved") && e.reason.contains("lock file"),
                "{e}"
            );
        }
        for ok in ["lock", "Lock", "LOCK2", "LOCK.d"] {
            assert!(OrgId::new(ok).is_ok(), "{ok}");
        }
        assert!(OrgId::stored("LOCK").is_ok());
    }

    #[test]
    fn actions() {
        for ok in [
            "booking.created",
            "auth.role_assigned",
            "channel_sync.booking.imported",
        ] {
            assert!(validate_action(ok).is_ok(), "{ok}");
        }
        for bad in [
            "booking",
            "Booking.created",
            "booking.",
            ".created",
            "booking.1x",
            "a b.c",
            "a..b",
        ] {
            assert!(validate_action(bad).is_err(), "{bad}");
        }
    }

    /// Control characters (C0, DEL and, in non-ASCII text, C1) are refused wherever they
    /// stand in the text, also in the short tail the vectorised scan pads; other text,
    /// non-ASCII included, is accepted.
    #[test]
    fn text_fields_refuse_control_characters_at_every_position() {
        for len in 1..40 {
            for at in 0..len {
                for c in ['\0', '\n', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}'] {
                    let mut v: Vec<char> = "é".repeat(len).chars().collect();
                    if c.is_ascii() {
                        v = vec!['a'; len];
                    }
                    v[at] = c;
                    let v: String = v.into_iter().collect();
                    let e = check_text("resource_id", &v, 256).unwrap_err();
                    assert!(e.reason.contains("control"), "{v:?}: {e}");
                    if !c.is_ascii() {
                        continue;
                    }
                    // The same ASCII control character in otherwise non-ASCII text.
                    let mixed: String = v.replace('a', "é");
                    assert!(check_text("resource_id", &mixed, 512).is_err(), "{mixed:?}");
                }
            }
            for ok in ["a", "é", "日本", "🙂", "~", " "] {
                let v = ok.repeat(len);
                assert!(check_text("resource_id", &v, 4096).is_ok(), "{v:?}");
            }
        }
    }
}
