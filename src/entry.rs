//! Turning an [`Event`] into the sealed body and openings of a record, and back.
//!
//! Personal data (`ip`, `user_agent`, `session_id` and the configured JSON pointers inside
//! `before`/`after`/`metadata`) is taken out of the sealed body and replaced by a salted
//! commitment, so a later erasure can delete the plaintext and salt without touching a
//! hashed byte.

use std::borrow::Cow;

use serde_json::Value;

use crate::crypto::{self, Hash};
use crate::error::{Error, IntegrityKind};
use crate::event::{Event, InvalidField, OrgId, REDACTED, VerifiedEvent};
use crate::format::body::{Opening, Openings, PiiField, SealedBody};
use crate::format::index::KeyFields;
use crate::format::record::RawRecord;
use crate::format::{DecodeError, DecodeErrorKind};
use crate::time::Month;

/// An event encoded for the writer: `bytes[..sealed_len]` is the sealed body, the rest the
/// openings; `terms` are its index filter terms, hashed here, outside the writer's lock.
pub(crate) struct SealedEvent {
    pub bytes: Vec<u8>,
    pub sealed_len: usize,
    pub terms: Terms,
}

/// The filter term hashes of one record (FORMAT.md §3.2): at most 12 (user, action, up to
/// seven action prefixes, resource type and id, trace).
pub(crate) struct Terms {
    hashes: [u64; 12],
    len: usize,
    /// More terms than fit (impossible for a validated event): the record gets no filter.
    overflow: bool,
    /// The record's user mark (FORMAT.md §3.3).
    pub mark: u16,
}

impl Terms {
    fn of(fields: &KeyFields<'_>) -> Terms {
        let mut t = Terms {
            hashes: [0; 12],
            len: 0,
            overflow: false,
            mark: fields.user_mark(),
        };
        fields.each_term(|h| match t.hashes.get_mut(t.len) {
            Some(slot) => {
                *slot = h;
                t.len += 1;
            }
            None => t.overflow = true,
        });
        t
    }

    /// The hashes, or `None` if they did not all fit (then the block must be unfiltered,
    /// never filtered without some of its terms).
    pub(crate) fn get(&self) -> Option<&[u64]> {
        if self.overflow {
            None
        } else {
            self.hashes.get(..self.len)
        }
    }
}

/// Appends `v`'s stored text (nothing for `null`); `field` names it if it nests deeper
/// than readers parse ([`crate::event::MAX_JSON_DEPTH`]).
fn put_json(field: &'static str, v: &Value, out: &mut Vec<u8>) -> Result<(), InvalidField> {
    if v.is_null() {
        return Ok(());
    }
    crate::json::write_compact(v, out)
        .map_err(|crate::json::TooDeep| crate::event::invalid(field, crate::event::too_deep()))
}

fn json_bytes(field: &'static str, v: &Value) -> Result<Vec<u8>, InvalidField> {
    let mut out = Vec::new();
    put_json(field, v, &mut out)?;
    Ok(out)
}

/// Splits a personal-data pointer into its root field and the pointer inside it.
fn split_pointer(p: &str) -> Option<(&'static str, &str)> {
    for root in ["before", "after", "metadata"] {
        if let Some(rest) = p.strip_prefix('/').and_then(|r| r.strip_prefix(root))
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return Some((root, rest));
        }
    }
    None
}

/// Checks a configured personal-data pointer.
pub(crate) fn validate_pointer(p: &str) -> Result<(), String> {
    if split_pointer(p).is_none() {
        return Err(format!(
            "{:?} must be a JSON pointer starting with /before, /after or /metadata",
            crate::event::Preview(p)
        ));
    }
    if p.len() > 256 {
        return Err(format!(
            "{:?} is longer than 256 bytes",
            crate::event::Preview(p)
        ));
    }
    // RFC 6901: `~` only as `~0` (a `~`) or `~1` (a `/`).
    let mut rest = p;
    while let Some(at) = rest.find('~') {
        rest = rest.get(at + 1..).unwrap_or_default();
        if !(rest.starts_with('0') || rest.starts_with('1')) {
            return Err(format!(
                "{:?} has a `~` that is not `~0` or `~1` (JSON pointer escapes)",
                crate::event::Preview(p)
            ));
        }
    }
    Ok(())
}

/// Encodes `event` (already validated) of org `org`. `pii_paths` are checked pointers;
/// `seeds` gives the personal-data seed, if the event has personal data.
pub(crate) fn seal(
    event: &Event,
    org: &str,
    pii_paths: &[String],
    max: usize,
    seeds: &crypto::SeedSource,
) -> Result<SealedEvent, Error> {
    // The JSON texts of before, after and metadata, one after another in a buffer this
    // thread reuses: no allocation per event once it has grown.
    thread_local! {
        static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    JSON.with(|json| match json.try_borrow_mut() {
        Ok(mut json) => seal_with(event, org, pii_paths, max, seeds, &mut json),
        Err(_) => seal_with(event, org, pii_paths, max, seeds, &mut Vec::new()),
    })
    .map_err(|e| match e {
        Error::InvalidEvent(f) => Error::InvalidEvent(event.refusal(f)),
        e => e,
    })
}

fn seal_with(
    event: &Event,
    org: &str,
    pii_paths: &[String],
    max: usize,
    seeds: &crypto::SeedSource,
    json: &mut Vec<u8>,
) -> Result<SealedEvent, Error> {
    let mut before = None::<Value>;
    let mut after = None::<Value>;
    let mut metadata = None::<Value>;
    let mut slots: Vec<(PiiField<&str>, Cow<'_, [u8]>)> = Vec::new();
    for (field, v) in [
        (PiiField::Ip, &event.ip),
        (PiiField::UserAgent, &event.user_agent),
        (PiiField::SessionId, &event.session_id),
    ] {
        if let Some(v) = v {
            slots.push((field, Cow::Borrowed(v.as_bytes())));
        }
    }
    for p in pii_paths {
        let Some((root, rest)) = split_pointer(p) else {
            continue;
        };
        let (orig, copy) = match root {
            "before" => (&event.before, &mut before),
            "after" => (&event.after, &mut after),
            _ => (&event.metadata, &mut metadata),
        };
        let copy = match copy {
            Some(c) => c,
            // Cloning recurses once per level: the depth is checked first.
            None => {
                crate::event::check_json_depth(root, orig)?;
                copy.insert(orig.clone())
            }
        };
        if let Some(slot) = copy.pointer_mut(rest)
            && !slot.is_null()
        {
            let taken = std::mem::take(slot);
            slots.push((
                PiiField::Json(p.as_str()),
                Cow::Owned(json_bytes(root, &taken)?),
            ));
        }
    }
    if slots.len() > crate::format::body::MAX_PII_SLOTS {
        return Err(crate::event::invalid(
            "personal data",
            format!("{} personal-data values; at most 32 allowed", slots.len()),
        )
        .into());
    }
    json.clear();
    put_json("before", before.as_ref().unwrap_or(&event.before), json)?;
    let after_at = json.len();
    put_json("after", after.as_ref().unwrap_or(&event.after), json)?;
    let metadata_at = json.len();
    put_json(
        "metadata",
        metadata.as_ref().unwrap_or(&event.metadata),
        json,
    )?;
    let (before_b, rest) = json.split_at(after_at);
    let (after_b, metadata_b) = rest.split_at(metadata_at - after_at);

    let (openings, root) = if slots.is_empty() {
        (Openings::None, None)
    } else {
        let seed = seeds.next().map_err(|e| Error::Key {
            org: org.to_string(),
            source: e,
        })?;
        let commitments = slots
            .iter()
            .enumerate()
            .map(|(i, (_, v))| crypto::commitment(&crypto::derive_salt(&seed, i as u8), v));
        (
            Openings::Seeded {
                seed,
                values: slots.iter().map(|(_, v)| v.as_ref()).collect(),
            },
            Some(crypto::pii_root(commitments)),
        )
    };
    let body = SealedBody {
        user_id: event.user_id.as_deref(),
        action: &event.action,
        resource_type: &event.resource_type,
        resource_id: &event.resource_id,
        trace_id: event.trace_id.as_deref(),
        before: before_b,
        after: after_b,
        metadata: metadata_b,
        pii: slots.iter().map(|(f, _)| f.clone()).collect(),
        pii_root: root,
    };
    let mut bytes = Vec::with_capacity(
        json.len()
            + event.action.len()
            + event.resource_type.len()
            + event.resource_id.len()
            + slots.iter().map(|(_, v)| v.len() + 1).sum::<usize>()
            + 160,
    );
    body.encode(&mut bytes);
    let sealed_len = bytes.len();
    openings.encode(&mut bytes);
    if bytes.len() > max {
        return Err(Error::EventTooLarge {
            org: org.to_string(),
            size: bytes.len(),
            max,
        });
    }
    let terms = Terms::of(&KeyFields {
        user_id: event.user_id.as_deref().map(str::as_bytes),
        action: event.action.as_bytes(),
        resource_type: event.resource_type.as_bytes(),
        resource_id: event.resource_id.as_bytes(),
        trace_id: event.trace_id.as_deref().map(str::as_bytes),
    });
    Ok(SealedEvent {
        bytes,
        sealed_len,
        terms,
    })
}

/// Why a record's body could not be turned back into an event.
pub(crate) enum OpenError {
    Decode(DecodeError),
    Commitment,
    /// Slots whose openings are erased (FORMAT.md §2.4), by name: refused by a verified
    /// read ([`Erased::Refuse`]), as no erasure this build can verify exists.
    Erased(Vec<String>),
}

impl OpenError {
    pub(crate) fn into_error(self, file: &std::path::Path, offset: u64, seq: u64) -> Error {
        match self {
            OpenError::Decode(source) => Error::Corrupt {
                file: file.to_path_buf(),
                offset,
                seq: Some(seq),
                source,
            },
            OpenError::Commitment => Error::Integrity {
                file: file.to_path_buf(),
                offset,
                seq: Some(seq),
                kind: IntegrityKind::CommitmentMismatch,
            },
            OpenError::Erased(slots) => Error::Integrity {
                file: file.to_path_buf(),
                offset,
                seq: Some(seq),
                kind: IntegrityKind::ErasedPersonalData { slots },
            },
        }
    }
}

fn parse_json(bytes: &[u8], base: u64, field: &'static str) -> Result<Value, OpenError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    // UTF-8 checked once for the whole text, then parsed as `str` (the parser then skips
    // its per-string UTF-8 checks): `serde_json::from_slice` accepts exactly the texts that
    // are UTF-8 and that `from_str` accepts, and this is 10–30 % faster.
    let text = std::str::from_utf8(bytes).ok();
    text.and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| not_json(base, field))
}

fn not_json(base: u64, field: &'static str) -> OpenError {
    OpenError::Decode(DecodeError {
        structure: "event body",
        field,
        offset: base,
        kind: DecodeErrorKind::Invalid("not valid JSON"),
    })
}

fn text(bytes: &[u8], base: u64) -> Result<String, OpenError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        OpenError::Decode(DecodeError {
            structure: "openings",
            field: "value",
            offset: base,
            kind: DecodeErrorKind::Invalid("not UTF-8"),
        })
    })
}

/// Checks what [`open`] checks — the body and openings decode, the openings match the sealed
/// commitments, JSON texts parse, text values are UTF-8 — without building the event
/// (verification discards it: building `serde_json::Value` trees cost most of its time).
/// Returns the personal-data slots the openings mark erased, by the names
/// [`slot_name`] gives them (none, without allocating, for a record as written).
pub(crate) fn check(
    org: &OrgId,
    month: Month,
    part: u16,
    rec: &RawRecord<'_>,
    hash: Hash,
) -> Result<Vec<String>, OpenError> {
    let body_at = rec.offset + crate::format::record::FRAME_HEADER_LEN as u64;
    let body = SealedBody::decode(rec.sealed, body_at).map_err(OpenError::Decode)?;
    let open_at = body_at + rec.sealed.len() as u64;
    let openings =
        Openings::decode(rec.openings, open_at, body.pii.len()).map_err(OpenError::Decode)?;
    let erased = match &openings {
        Openings::Explicit(slots) => slots
            .iter()
            .zip(&body.pii)
            .filter(|(o, _)| matches!(o, Opening::Erased { .. }))
            .map(|(_, field)| slot_name(field))
            .collect(),
        Openings::None | Openings::Seeded { .. } => Vec::new(),
    };
    if body.pii.iter().any(|f| matches!(f, PiiField::Json(_))) {
        // Restoring a JSON slot needs the parsed value (its pointer must name one): the
        // full path, for the few records that have such slots.
        return open(org, month, part, rec, hash, Erased::Redact).map(|_| erased);
    }
    let values = opened_values(&openings);
    if let Some(root) = body.pii_root
        && crypto::pii_root(values.iter().map(|(_, c)| *c)) != root
    {
        return Err(OpenError::Commitment);
    }
    for (bytes, field) in [
        (body.before, "before"),
        (body.after, "after"),
        (body.metadata, "metadata"),
    ] {
        check_json(bytes, body_at, field)?;
    }
    for (value, _) in &values {
        if let Some(v) = value
            && std::str::from_utf8(v).is_err()
        {
            text(v, open_at)?;
        }
    }
    Ok(erased)
}

/// Each slot's value, or None when erased; and the commitments they open.
fn opened_values<'a>(openings: &Openings<'a>) -> Vec<(Option<&'a [u8]>, Hash)> {
    match openings {
        Openings::None => Vec::new(),
        Openings::Seeded { seed, values } => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    Some(*v),
                    crypto::commitment(&crypto::derive_salt(seed, i as u8), v),
                )
            })
            .collect(),
        Openings::Explicit(slots) => slots
            .iter()
            .map(|s| match s {
                Opening::Open { salt, value } => (Some(*value), crypto::commitment(salt, value)),
                Opening::Erased { commitment } => (None, *commitment),
            })
            .collect(),
    }
}

/// A personal-data slot by the event field it holds: `ip`, `user_agent`, `session_id`, or
/// its JSON pointer (`/after/email`).
fn slot_name<S: AsRef<str>>(field: &PiiField<S>) -> String {
    match field {
        PiiField::Ip => "ip".into(),
        PiiField::UserAgent => "user_agent".into(),
        PiiField::SessionId => "session_id".into(),
        PiiField::Json(pointer) => pointer.as_ref().to_string(),
    }
}

/// [`parse_json`]'s check without building the value: the same parser, driven the same way
/// (`deserialize_any`, so numbers are range-checked as for a `Value`), allocating nothing.
fn check_json(bytes: &[u8], base: u64, field: &'static str) -> Result<(), OpenError> {
    let text = std::str::from_utf8(bytes).ok();
    if bytes.is_empty() || text.is_some_and(|t| serde_json::from_str::<AnyJson>(t).is_ok()) {
        return Ok(());
    }
    Err(not_json(base, field))
}

/// Any JSON value, accepted exactly when `serde_json::Value` would be, and dropped.
struct AnyJson;

impl<'de> serde::Deserialize<'de> for AnyJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyJson)
    }
}

impl<'de> serde::de::Visitor<'de> for AnyJson {
    type Value = AnyJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<AnyJson, A::Error> {
        while a.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<AnyJson, A::Error> {
        while a.next_key::<AnyJson>()?.is_some() {
            a.next_value::<AnyJson>()?;
        }
        Ok(AnyJson)
    }
}

/// What [`open`] does with an erased personal-data slot (FORMAT.md §2.4).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Erased {
    /// Reads it as [`REDACTED`] (an unverified query, `inspect`).
    Redact,
    /// Refuses the record, [`OpenError::Erased`] (a verified read: a verified query,
    /// [`crate::Log::scan`]), as `verify` reports it (`erased_personal_data`): erasing needs
    /// no key, and this build writes no erasure it could verify.
    Refuse,
}

/// Decodes a record (whose frame, chain and tag the caller has checked) into an event,
/// checking the openings against the sealed commitments.
pub(crate) fn open(
    org: &OrgId,
    month: Month,
    part: u16,
    rec: &RawRecord<'_>,
    hash: Hash,
    erased: Erased,
) -> Result<VerifiedEvent, OpenError> {
    let body_at = rec.offset + crate::format::record::FRAME_HEADER_LEN as u64;
    let body = SealedBody::decode(rec.sealed, body_at).map_err(OpenError::Decode)?;
    let open_at = body_at + rec.sealed.len() as u64;
    let openings =
        Openings::decode(rec.openings, open_at, body.pii.len()).map_err(OpenError::Decode)?;
    let values = opened_values(&openings);
    if let Some(root) = body.pii_root
        && crypto::pii_root(values.iter().map(|(_, c)| *c)) != root
    {
        return Err(OpenError::Commitment);
    }
    if erased == Erased::Refuse && values.iter().any(|(v, _)| v.is_none()) {
        let erased = body
            .pii
            .iter()
            .zip(&values)
            .filter(|(_, (v, _))| v.is_none())
            .map(|(field, _)| slot_name(field))
            .collect();
        return Err(OpenError::Erased(erased));
    }
    let mut event = Event {
        org_id: org.to_string(),
        occurred_at: rec.fields.occurred_at,
        user_id: body.user_id.map(str::to_string),
        action: body.action.to_string(),
        resource_type: body.resource_type.to_string(),
        resource_id: body.resource_id.to_string(),
        before: parse_json(body.before, body_at, "before")?,
        after: parse_json(body.after, body_at, "after")?,
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: body.trace_id.map(str::to_string),
        metadata: parse_json(body.metadata, body_at, "metadata")?,
    };
    // Re-insert in reverse slot order so nested pointers restore correctly.
    for (field, (value, _)) in body.pii.iter().zip(values.iter()).rev() {
        match field {
            PiiField::Ip | PiiField::UserAgent | PiiField::SessionId => {
                let s = match value {
                    Some(v) => text(v, open_at)?,
                    None => REDACTED.to_string(),
                };
                match field {
                    PiiField::Ip => event.ip = Some(s),
                    PiiField::UserAgent => event.user_agent = Some(s),
                    _ => event.session_id = Some(s),
                }
            }
            PiiField::Json(p) => {
                let v = match value {
                    Some(v) => parse_json(v, open_at, "value")?,
                    None => Value::String(REDACTED.to_string()),
                };
                let bad = || {
                    OpenError::Decode(DecodeError {
                        structure: "event body",
                        field: "pii_pointer",
                        offset: body_at,
                        kind: DecodeErrorKind::Invalid("pointer does not name a value in the body"),
                    })
                };
                let (root, rest) = split_pointer(p).ok_or_else(bad)?;
                let target = match root {
                    "before" => &mut event.before,
                    "after" => &mut event.after,
                    _ => &mut event.metadata,
                };
                *target.pointer_mut(rest).ok_or_else(bad)? = v;
            }
        }
    }
    Ok(VerifiedEvent {
        event,
        month,
        part,
        seq: rec.fields.seq,
        hash,
        key_id: rec.fields.key_id,
        offset: rec.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The terms hashed while sealing are the terms the index would parse back out of the
    /// sealed body.
    #[test]
    fn sealed_terms_are_the_parsed_terms() {
        let cfg = crate::workload::WorkloadConfig {
            events: 300,
            ..Default::default()
        };
        let mut events: Vec<Event> = crate::workload::Workload::new(cfg).collect();
        let mut deep = events[0].clone();
        deep.action = "a.b.c.d.e.f.g.h".into();
        deep.user_id = None;
        deep.trace_id = Some("t".into());
        events.push(deep);
        for e in &events {
            let s = seal(e, &e.org_id, &[], 1 << 20, &crypto::SeedSource::new()).unwrap();
            let mut parsed = Vec::new();
            KeyFields::parse(&s.bytes[..s.sealed_len])
                .unwrap()
                .terms(&mut parsed);
            assert_eq!(s.terms.get(), Some(parsed.as_slice()), "{}", e.action);
        }
        let nine = "a.b.c.d.e.f.g.h.i";
        let t = Terms::of(&KeyFields {
            user_id: Some(b"u"),
            action: nine.as_bytes(),
            resource_type: b"r",
            resource_id: b"i",
            trace_id: Some(b"t"),
        });
        assert_eq!(
            t.get(),
            None,
            "13 terms do not fit: no filter rather than a partial one"
        );
    }

    /// Verification's allocation-free JSON check accepts exactly what reading accepts.
    #[test]
    fn check_json_agrees_with_parse_json() {
        let deep_ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<&[u8]> = vec![
            b"",
            b"null",
            b"{\"a\":[1,2.5,-3e7,true,false,null,\"x\\u00e9\\n\"]}",
            b"18446744073709551616",
            b"1e400",
            b"-1e400",
            b"[1e308, 1.7976931348623157e309]",
            b"\"\\ud800\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\xff\"",
            b"\"caf\xc3\xa9\"",
            b"[1]\xff",
            b"\xef\xbb\xbfnull",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"{\"\xe9\":1}",
            b"\"\xf4\x90\x80\x80\"",
            b"{\"a\":1,\"a\":2}",
            b"{\"a\":1,}",
            b"[1,2] x",
            b"{\"k\": {\"nested\": [{}]}}",
            b"01",
            b"nul",
            deep_ok.as_bytes(),
            too_deep.as_bytes(),
        ];
        for c in cases {
            assert_eq!(
                check_json(c, 0, "before").is_ok(),
                parse_json(c, 0, "before").is_ok(),
                "{}",
                String::from_utf8_lossy(c)
            );
            // Both parse the text as `str` after one UTF-8 check: the same acceptance as
            // `from_slice` on the raw bytes (the empty text is our own "absent").
            if !c.is_empty() {
                assert_eq!(
                    parse_json(c, 0, "before").ok(),
                    serde_json::from_slice::<Value>(c).ok(),
                    "{}",
                    String::from_utf8_lossy(c)
                );
            }
        }
    }
}
