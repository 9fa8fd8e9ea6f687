//! What `append` refuses although serde_json accepts it: JSON text that would not be stored
//! as written.
//!
//! serde_json keeps the last of two equal keys in an object, turns an integer literal
//! outside the 64-bit range into an approximate float, and a float literal too small for
//! an `f64` into `0.0` (one too large is already an error). Stored that way, an audit
//! event would say something its producer did not write. [`check`] walks the raw text of
//! a line that serde_json has already parsed, once, skipping string contents, and names
//! the first such place. Ordinary float rounding (`0.1`) is not refused.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Why a line's JSON text would not be stored as written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Altered {
    /// A key appears twice in one object.
    DuplicateKey {
        /// The key, unescaped.
        key: String,
        /// 1-based byte column of its second occurrence.
        column: usize,
    },
    /// An integer literal outside `i64::MIN..=u64::MAX`.
    IntegerOutOfRange {
        /// The literal (shortened if long).
        literal: String,
        /// 1-based byte column.
        column: usize,
    },
    /// A float literal too large for an `f64`.
    FloatOverflow {
        /// The literal (shortened if long).
        literal: String,
        /// 1-based byte column.
        column: usize,
    },
    /// A non-zero float literal that an `f64` holds only as zero.
    FloatUnderflow {
        /// The literal (shortened if long).
        literal: String,
        /// 1-based byte column.
        column: usize,
    },
}

impl fmt::Display for Altered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Altered::DuplicateKey { key, column } => write!(
                f,
                "duplicate key {key:?} in one object (column {column}): JSON keeps only one of its values"
            ),
            Altered::IntegerOutOfRange { literal, column } => write!(
                f,
                "integer {literal} (column {column}) is outside the 64-bit range ({}..={}) and would not be stored exactly",
                i64::MIN,
                u64::MAX
            ),
            Altered::FloatOverflow { literal, column } => write!(
                f,
                "number {literal} (column {column}) is too large for a 64-bit float"
            ),
            Altered::FloatUnderflow { literal, column } => write!(
                f,
                "number {literal} (column {column}) is not zero but too small for a 64-bit float: it would be stored as 0"
            ),
        }
    }
}

/// Checks the text of one JSON value (already accepted by serde_json) for duplicate keys
/// at any depth and for numbers a `serde_json::Value` would not hold as written.
///
/// One pass over the bytes; string contents are skipped, and a key is unescaped (one
/// allocation) only if it contains a backslash. Keys are compared per object, through one
/// hash set for the whole line.
pub(crate) fn check(text: &str) -> Result<(), Altered> {
    let bytes = text.as_bytes();
    // The containers open at the current position: an object's number, or None for an
    // array.
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut keys: HashSet<(usize, Cow<'_, str>)> = HashSet::new();
    let mut objects = 0usize;
    let mut expect_key = false;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'{' => {
                open.push(Some(objects));
                objects += 1;
                expect_key = true;
                i += 1;
            }
            b'[' => {
                open.push(None);
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = matches!(open.last(), Some(Some(_)));
                i += 1;
            }
            b'"' => {
                let (end, escaped) = string_end(bytes, i + 1);
                if expect_key && let Some(Some(object)) = open.last() {
                    let key = key_text(text, i, end, escaped);
                    if let Some((_, first)) = keys.replace((*object, key)) {
                        return Err(Altered::DuplicateKey {
                            key: first.into_owned(),
                            column: i + 1,
                        });
                    }
                }
                expect_key = false;
                i = end + 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while matches!(
                    bytes.get(i),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    i += 1;
                }
                check_number(text.get(start..i).unwrap_or_default(), start + 1)?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index of the quote closing the string whose contents start at `from` (the length
/// of `bytes` if there is none), and whether the string contains an escape.
fn string_end(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut escaped = false;
    let mut i = from;
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'"' || b == b'\\') {
            None => return (bytes.len(), escaped),
            Some(p) => {
                let at = i + p;
                if bytes.get(at) == Some(&b'"') {
                    return (at, escaped);
                }
                // A backslash: the byte after it is escaped (a `\uXXXX` escape's hex digits
                // are never a quote or a backslash).
                escaped = true;
                i = at + 2;
            }
        }
    }
}

/// The key between the quotes at `open` and `close`, unescaped if it has an escape.
fn key_text(text: &str, open: usize, close: usize, escaped: bool) -> Cow<'_, str> {
    let inner = text.get(open + 1..close).unwrap_or_default();
    if !escaped {
        return Cow::Borrowed(inner);
    }
    match text
        .get(open..=close)
        .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
    {
        Some(k) => Cow::Owned(k),
        // Not reached for text serde_json accepted; comparing the raw text is the best left.
        None => Cow::Borrowed(inner),
    }
}

/// Checks one number literal starting at 1-based `column`.
fn check_number(literal: &str, column: usize) -> Result<(), Altered> {
    let shown = || shorten(literal);
    let float = literal.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if !float {
        let fits = if literal.starts_with('-') {
            literal.parse::<i64>().is_ok()
        } else {
            literal.parse::<u64>().is_ok()
        };
        return if fits {
            Ok(())
        } else {
            Err(Altered::IntegerOutOfRange {
                literal: shown(),
                column,
            })
        };
    }
    match literal.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(Altered::FloatOverflow {
            literal: shown(),
            column,
        }),
        Ok(v) if v == 0.0 && nonzero_mantissa(literal) => Err(Altered::FloatUnderflow {
            literal: shown(),
            column,
        }),
        // Not a literal serde_json accepted: its verdict stands.
        _ => Ok(()),
    }
}

/// Whether the digits before the exponent include one that is not zero.
fn nonzero_mantissa(literal: &str) -> bool {
    literal
        .bytes()
        .take_while(|&b| b != b'e' && b != b'E')
        .any(|b| matches!(b, b'1'..=b'9'))
}

/// The literal, or its first and last 20 characters around an ellipsis if it is long.
fn shorten(literal: &str) -> String {
    const KEEP: usize = 20;
    if literal.len() <= 2 * KEEP + 3 {
        return literal.to_string();
    }
    // Number literals are ASCII, so any byte index is a char boundary.
    let head = literal.get(..KEEP).unwrap_or_default();
    let tail = literal.get(literal.len() - KEEP..).unwrap_or_default();
    format!("{head}…{tail} ({} characters)", literal.len())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Altered {
        // The check runs on text serde_json accepted: hold every case to that.
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|e| panic!("test input is not JSON: {e}: {text}"));
        check(text).expect_err(text)
    }

    fn accepted(text: &str) {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|e| panic!("test input is not JSON: {e}: {text}"));
        assert_eq!(check(text), Ok(()), "{text}");
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert_eq!(
            refused(r#"{"a":1,"before":{"x":1,"x":2}}"#),
            Altered::DuplicateKey {
                key: "x".into(),
                column: 24
            }
        );
        assert!(matches!(
            refused(r#"{"a":[{"b":{"c":[1,{"k":1,"j":2,"k":3}]}}]}"#),
            Altered::DuplicateKey { key, .. } if key == "k"
        ));
        assert!(matches!(
            refused(r#"{"a":1,"a":2}"#),
            Altered::DuplicateKey { key, column: 8 } if key == "a"
        ));
        // Equal after unescaping.
        assert!(matches!(
            refused(r#"{"m":{"x":1,"\u0078":2}}"#),
            Altered::DuplicateKey { key, .. } if key == "x"
        ));
        assert!(matches!(
            refused(r#"{"m":{"a\"b":1,"a\u0022b":2}}"#),
            Altered::DuplicateKey { key, .. } if key == "a\"b"
        ));
    }

    #[test]
    fn equal_keys_in_different_objects_and_strings_that_look_like_keys_pass() {
        accepted(r#"{"x":1,"m":{"x":1},"n":{"x":{"x":2}},"a":[{"x":1},{"x":2}]}"#);
        // A string value equal to a key, strings holding braces, quotes and commas.
        accepted(r#"{"x":"x","y":"{\"x\":1,\"x\":2}","z":["x","x"],"w":"\\","v":1}"#);
        // Keys differing only by escapes that unescape differently.
        accepted(r#"{"m":{"a\\b":1,"a\u005cb2":2,"a/b":3,"a\/b2":4}}"#);
        accepted(r#"{}"#);
        accepted(r#"{"e":{},"f":[]}"#);
    }

    #[test]
    fn integers_outside_64_bits_are_refused() {
        assert_eq!(
            refused(r#"{"n":123456789012345678901234567890}"#),
            Altered::IntegerOutOfRange {
                literal: "123456789012345678901234567890".into(),
                column: 6
            }
        );
        assert!(matches!(
            refused("[18446744073709551616]"),
            Altered::IntegerOutOfRange { .. }
        ));
        assert!(matches!(
            refused("[-9223372036854775809]"),
            Altered::IntegerOutOfRange { .. }
        ));
        accepted("[18446744073709551615, -9223372036854775808, 0, -0, 42]");
    }

    #[test]
    fn floats_that_overflow_or_vanish_are_refused() {
        assert!(matches!(
            refused(r#"{"n":1e-400}"#),
            Altered::FloatUnderflow { literal, column: 6 } if literal == "1e-400"
        ));
        assert!(matches!(
            refused("[-0.0000000000000000000000000000000000000001e-300]"),
            Altered::FloatUnderflow { .. }
        ));
        // Too large: serde_json refuses this itself; the check agrees.
        assert!(matches!(
            check("[1e400]"),
            Err(Altered::FloatOverflow { .. })
        ));
        assert!(matches!(
            check("[-1.5E+309]"),
            Err(Altered::FloatOverflow { .. })
        ));
        // Zero written as zero, ordinary rounding, subnormals, large but finite.
        accepted("[0.0, -0.0, 0e-400, 0.000e5, 0.1, 1e-310, 1.7976931348623157e308, 2.5E-3]");
    }

    #[test]
    fn long_literals_are_shortened_in_the_message() {
        let e = refused(&format!("[0.{}1e-300]", "0".repeat(5000)));
        assert!(matches!(e, Altered::FloatUnderflow { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.contains("(5008 characters)"), "{msg}");
        // serde_json refuses this one itself (it overflows an f64); the check names it.
        let e = check(&format!("[{}]", "9".repeat(5000))).unwrap_err();
        assert!(e.to_string().contains("(5000 characters)"), "{e}");
    }
}
