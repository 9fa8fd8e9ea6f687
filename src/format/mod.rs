//! Pure encode/decode of every on-disk structure. No I/O, no clock, no keys.
//!
//! `docs/FORMAT.md` is the spec of record; each submodule repeats the layout of its
//! structure. Encoding appends to a `Vec<u8>` and cannot fail; decoding goes through the
//! bounds-checked [`codec::Reader`] and returns a [`DecodeError`] naming the structure, the
//! field and the absolute byte offset. Hostile bytes never panic and never make the decoder
//! allocate more than the input's own length.

pub mod body;
pub mod codec;
pub mod header;
pub mod index;
pub mod record;

use std::fmt;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// `hash_alg` value for SHA-256 (the only one defined).
pub const HASH_ALG_SHA256: u8 = 1;
/// `tag_alg` value for HMAC-SHA256 (the only one defined).
pub const TAG_ALG_HMAC_SHA256: u8 = 1;
/// `key_id_scheme` value: 32-bit key ids, per organisation, assigned by the key provider.
pub const KEY_ID_SCHEME_U32: u8 = 1;

/// A structure on disk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{structure}: field `{field}` at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Which structure (`segment header`, `record`, `event body`, `index`...).
    pub structure: &'static str,
    /// Which field was being read.
    pub field: &'static str,
    /// Absolute byte offset in the file where the field starts.
    pub offset: u64,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// What was wrong with bytes that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended early.
    Truncated {
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The magic bytes are not ours.
    BadMagic {
        /// What was found.
        found: [u8; 8],
    },
    /// A format version this build cannot read.
    UnsupportedVersion {
        /// Version on disk.
        found: u16,
        /// Highest version this build reads.
        supported: u16,
    },
    /// Incompatible feature flags this build does not know.
    UnknownIncompatibleFlags {
        /// The unknown bits.
        flags: u32,
    },
    /// A checksum did not match.
    ChecksumMismatch {
        /// Checksum stored on disk.
        stored: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// A length is outside its allowed range.
    BadLength {
        /// Length found.
        found: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// Bytes left over after a structure that should have ended.
    TrailingBytes {
        /// How many.
        count: u64,
    },
    /// Any other rule of the format broken; the text names the rule.
    Invalid(&'static str),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} available")
            }
            DecodeErrorKind::BadMagic { found } => write!(f, "bad magic {found:02x?}"),
            DecodeErrorKind::UnsupportedVersion { found, supported } => {
                write!(
                    f,
                    "format version {found} is newer than supported {supported}"
                )
            }
            DecodeErrorKind::UnknownIncompatibleFlags { flags } => {
                write!(f, "unknown incompatible flags {flags:#010x}")
            }
            DecodeErrorKind::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            DecodeErrorKind::BadLength { found, min, max } => {
                write!(f, "length {found} outside {min}..={max}")
            }
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} unexpected trailing bytes")
            }
            DecodeErrorKind::Invalid(why) => f.write_str(why),
        }
    }
}

/// CRC-32 (IEEE, as computed by `crc32fast`) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}
