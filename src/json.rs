//! Compact JSON text of a [`serde_json::Value`], byte for byte what `serde_json::to_vec`
//! writes, appended straight to a buffer.
//!
//! Serialising `before`/`after`/`metadata` was the largest single cost of an append (24% of
//! a single-thread `Never` append, BENCHMARKS.md): serde's generic serializer goes through
//! `io::Write` and escapes strings one byte at a time. This writer checks a whole string
//! for bytes that need escaping in one vectorised pass and copies it at once, writing into
//! the caller's buffer without intermediate vectors.
//! The output must stay identical to serde_json's (the property test below holds it to
//! that), so records written before and after this change hash the same way.
//!
//! Also [`serialize_path`], for the paths of JSON reports.

use std::path::Path;

use serde_json::Value;

/// Serialises a path as text, invalid UTF-8 replaced by U+FFFD as the text reports show it.
/// serde's own `Path` impl fails on such a name, and one stray file name would cut a JSON
/// report off in the middle (a verdict lost to an I/O error).
pub(crate) fn serialize_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.to_string_lossy())
}

/// Appends the compact JSON text of `v` to `out`, or returns `Err(TooDeep)` (with part of
/// the text appended) if its arrays and objects nest deeper than
/// [`crate::event::MAX_JSON_DEPTH`], which no reader would parse. The check rides on the
/// walk the text needs anyway, and bounds its recursion: a container past the limit is
/// not entered, and noted, so a node costs no error test on the way back.
pub(crate) fn write_compact(v: &Value, out: &mut Vec<u8>) -> Result<(), TooDeep> {
    let mut too_deep = false;
    write_at(v, out, 0, &mut too_deep);
    if too_deep { Err(TooDeep) } else { Ok(()) }
}

/// JSON nested deeper than [`crate::event::MAX_JSON_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep;

/// Writes `v`, itself inside `depth` arrays and objects; a container past the limit is not
/// entered, and noted in `too_deep`.
fn write_at(v: &Value, out: &mut Vec<u8>, depth: u32, too_deep: &mut bool) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        Value::Array(_) | Value::Object(_) if depth as usize >= crate::event::MAX_JSON_DEPTH => {
            *too_deep = true;
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_at(item, out, depth + 1, too_deep);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_at(item, out, depth + 1, too_deep);
            }
            out.push(b'}');
        }
    }
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else if serde_json::to_writer(&mut *out, n).is_err() {
        // Writing to a Vec cannot fail; keep the text valid JSON all the same.
        out.extend_from_slice(b"null");
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: one pass without early exit (vectorised), one copy.
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
    } else {
        write_escaped(bytes, out);
    }
    out.push(b'"');
}

/// The escapes serde_json writes: `\"`, `\\`, the five short control escapes and `\u00xx`
/// (lower-case hex) for the other bytes below 0x20. Everything else is copied as is.
fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |n: u8| HEX.get(usize::from(n)).copied().unwrap_or(b'0');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 => &[],
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if short.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 15)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // non-finite becomes null
            "\\PC{0,40}".prop_map(Value::from),
            // Escapes and the eight-byte fast path at every alignment.
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\u{1f}'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('a'),
                    any::<char>()
                ],
                0..40
            )
            .prop_map(|cs| Value::from(cs.into_iter().collect::<String>())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{0,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn matches_serde_json(v in value()) {
            let mut out = Vec::new();
            prop_assert_eq!(write_compact(&v, &mut out), Ok(()));
            prop_assert_eq!(out, serde_json::to_vec(&v).unwrap());
        }
    }

    #[test]
    fn every_byte_escapes_like_serde_json() {
        for b in 0u8..0x80 {
            let s = format!("ab{}cdefghij{}", b as char, b as char);
            let v = Value::from(s);
            let mut out = Vec::new();
            assert_eq!(write_compact(&v, &mut out), Ok(()));
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "byte {b:#x}");
        }
    }
}
