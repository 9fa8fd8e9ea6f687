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

impl DecodeError {
    /// Whether the bytes are of a newer format than this build reads (FORMAT.md §9): a
    /// `format_version` above [`FORMAT_VERSION`], or `incompat_flags` bits it does not know.
    /// That is not damage: nothing of the structure could be checked, and a newer reader is
    /// needed. (The decoders tell bit rot in those fields apart where the format lets them:
    /// a segment header's or index's unknown flags count only under a checksum that holds,
    /// and an unsupported version is reported as a checksum failure when the v1 checksum
    /// holds with the version put back to 1.)
    pub fn needs_newer_reader(&self) -> bool {
        match self.kind {
            DecodeErrorKind::UnsupportedVersion { found, supported } => found > supported,
            DecodeErrorKind::UnknownIncompatibleFlags { .. } => true,
            _ => false,
        }
    }
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
            DecodeErrorKind::UnsupportedVersion { found, supported } if found > supported => {
                write!(
                    f,
                    "format version {found}: this file needs a newer reader (this build reads version {supported})"
                )
            }
            DecodeErrorKind::UnsupportedVersion { found, supported } => {
                write!(
                    f,
                    "format version {found} was never written (this build reads version {supported})"
                )
            }
            DecodeErrorKind::UnknownIncompatibleFlags { flags } => {
                write!(
                    f,
                    "incompatible flags {flags:#010x}: this file needs a newer reader (the bits are unknown to this build)"
                )
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

/// Whether `body` (a v1 structure's bytes under its CRC, with `format_version` at bytes
/// 8..10) fails the `stored` CRC as it is, but passes it with the version put back to
/// [`FORMAT_VERSION`]: a v1 structure whose version field rotted, not a newer format.
pub(crate) fn version_rotted(body: &[u8], stored: u32) -> bool {
    if crc32(body) == stored {
        return false;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(body.get(..8).unwrap_or_default());
    crc.update(&FORMAT_VERSION.to_le_bytes());
    crc.update(body.get(10..).unwrap_or_default());
    body.len() >= 10 && crc.finalize() == stored
}

/// CRC-32 (IEEE, as computed by `crc32fast`) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}
