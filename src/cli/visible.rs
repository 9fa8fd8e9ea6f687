//! Text for human-readable output (`query --format table`, `inspect` without `--json`)
//! that a terminal cannot reorder or hide.
//!
//! An event's fields may hold Unicode bidirectional controls (U+202E RIGHT-TO-LEFT
//! OVERRIDE and the like) and invisible characters; printed raw, they make a table show
//! something other than what is stored (the characters after an override are drawn right to
//! left, over the next columns). Those characters, and control characters, are shown as
//! escapes (`\u{202e}`) instead, and a backslash as `\\`, so that text that spells an
//! escape (`\u{202e}` typed into a field) cannot pass for one. JSON output is left as
//! serde_json writes it.

use std::borrow::Cow;

/// Whether `c` is shown as an escape: a control character, a bidirectional control
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) or an invisible formatting
/// character (U+00AD, U+180E, U+200B–U+200D, U+2060–U+2065, U+FEFF, U+FFF9–U+FFFB).
pub(crate) fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `s` with every character of [`is_hidden`] written as `\u{hex}` and every backslash as
/// `\\`; borrowed when there is none (printable ASCII is checked without decoding).
pub(crate) fn visible(s: &str) -> Cow<'_, str> {
    let plain = if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        !s.contains('\\')
    } else {
        !s.chars().any(|c| c == '\\' || is_hidden(c))
    };
    if plain {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

    #[test]
    fn bidi_and_invisible_characters_are_escaped() {
        assert_eq!(visible("user\u{202e}gnp.exe"), "user\\u{202e}gnp.exe");
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200b}', '\u{feff}',
            '\u{7f}', '\u{85}', '\n', '\u{1b}',
        ] {
            let s = format!("a{c}b");
            let v = visible(&s);
            assert_eq!(v, format!("a\\u{{{:x}}}b", u32::from(c)), "{c:?}");
            assert!(!v.chars().any(is_hidden), "{c:?}");
        }
    }

    /// Text that spells an escape is told apart from one: its backslash is doubled.
    #[test]
    fn a_backslash_is_doubled_so_typed_escapes_do_not_pass_for_real_ones() {
        assert_eq!(visible("a\\u{202e}b"), "a\\\\u{202e}b");
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(visible("C:\\dir é"), "C:\\\\dir é");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in ["plain-ascii_42", "Zoë Ωmega 日本語 عربي", ""] {
            assert!(matches!(visible(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }
}
