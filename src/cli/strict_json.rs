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
/// allocation) only if it contains a backslash. Each open object's keys sit on one stack
/// (borrowed from the line): a new key is compared with those of its object while the
/// object has at most [`LINEAR_KEYS`] (an event's objects have a handful), and an object
/// with more is checked once, sorted, when it closes, so no line costs more than
/// O(n log n). A hash set per line made this check cost half as much as the whole append.
pub(crate) fn check(text: &str) -> Result<(), Altered> {
    let bytes = text.as_bytes();
    // The containers open at the current position: for an object, where its keys start on
    // `keys`; None for an array.
    let mut open: Vec<Option<usize>> = Vec::new();
    // The keys of every open object, with their 1-based columns.
    let mut keys: Vec<(Cow<'_, str>, usize)> = Vec::new();
    let mut expect_key = false;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'{' => {
                open.push(Some(keys.len()));
                expect_key = true;
                i += 1;
            }
            b'[' => {
                open.push(None);
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                if let Some(Some(start)) = open.pop() {
                    let own = keys.get_mut(start..).unwrap_or_default();
                    if own.len() > LINEAR_KEYS {
                        duplicate_among(own)?;
                    }
                    keys.truncate(start);
                }
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = matches!(open.last(), Some(Some(_)));
                i += 1;
            }
            b'"' => {
                let (end, escaped) = string_end(bytes, i + 1);
                if expect_key && let Some(&Some(start)) = open.last() {
                    let key = key_text(text, i, end, escaped);
                    let own = keys.get(start..).unwrap_or_default();
                    if own.len() < LINEAR_KEYS
                        && let Some((first, _)) = own.iter().find(|(k, _)| *k == key)
                    {
                        return Err(Altered::DuplicateKey {
                            key: first.to_string(),
                            column: i + 1,
                        });
                    }
                    keys.push((key, i + 1));
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

/// The index of the first `"` or `\` in `bytes`: eight bytes at a time (a string's
/// contents are most of a line), then byte by byte for the last few.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes of `x` equal to zero have their high bit set in the result (and none before
    // the first such byte is set: the borrow only runs upwards, past it).
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        let hits =
            zero_bytes(x ^ (ONES * u64::from(b'"'))) | zero_bytes(x ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| at + p)
}

/// Keys of one object compared one by one as they come; an object with more is checked by
/// [`duplicate_among`] when it closes.
const LINEAR_KEYS: usize = 32;

/// The first duplicate among one object's keys (sorted here), named at the column of its
/// later occurrence.
fn duplicate_among(keys: &mut [(Cow<'_, str>, usize)]) -> Result<(), Altered> {
    keys.sort_unstable();
    let dup = keys
        .windows(2)
        .filter_map(|w| match w {
            [(a, _), (b, later)] if a == b => Some((a, *later)),
            _ => None,
        })
        .min_by_key(|(_, column)| *column);
    match dup {
        Some((key, column)) => Err(Altered::DuplicateKey {
            key: key.to_string(),
            column,
        }),
        None => Ok(()),
    }
}

/// The index of the quote closing the string whose contents start at `from` (the length
/// of `bytes` if there is none), and whether the string contains an escape.
fn string_end(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut escaped = false;
    let mut i = from;
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        match quote_or_backslash(rest) {
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

    /// The eight-byte search finds the first quote or backslash wherever it is, after any
    /// other bytes (high bytes included: the borrow trick must not see them as hits).
    #[test]
    fn the_word_search_finds_the_first_quote_or_backslash() {
        let fill = [b'a', 0x00, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff];
        for len in 0..40 {
            for f in fill {
                let plain = vec![f; len];
                assert_eq!(quote_or_backslash(&plain), None, "{len} x {f:#x}");
                for at in 0..len {
                    for hit in [b'"', b'\\'] {
                        let mut v = plain.clone();
                        v[at] = hit;
                        if at + 1 < len {
                            v[len - 1] = b'"';
                        }
                        assert_eq!(quote_or_backslash(&v), Some(at), "{len} x {f:#x}, at {at}");
                    }
                }
            }
        }
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

    /// Objects past the linear check's size are checked when they close, sorted: a
    /// duplicate anywhere among many keys is found (named at its later column), and many
    /// distinct keys pass, also nested inside such an object.
    #[test]
    fn many_keys_are_checked_sorted_when_the_object_closes() {
        for n in [LINEAR_KEYS - 1, LINEAR_KEYS, LINEAR_KEYS + 1, 200] {
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            accepted(&format!(r#"{{"m":{{{}}},"n":{{"k0":1}}}}"#, keys.join(",")));
            for (first, again) in [(0, n - 1), (n / 2, n - 1), (n - 2, n - 1)] {
                let mut dup = keys.clone();
                dup[again] = format!("\"k{first}\":0");
                let text = format!(r#"{{"m":{{{}}}}}"#, dup.join(","));
                let column = text.rfind(&format!("\"k{first}\"")).unwrap() + 1;
                assert_eq!(
                    refused(&text),
                    Altered::DuplicateKey {
                        key: format!("k{first}"),
                        column
                    },
                    "{n} keys, k{first} again"
                );
            }
        }
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
