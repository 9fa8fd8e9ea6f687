//! The record frame.
//!
//! ```text
//! offset      size        field
//!      0         4        frame_len (u32): total bytes of this record, 96..=MAX_FRAME_LEN
//!      4         4        crc32 (u32) of bytes 8..frame_len
//!      8         8        seq (u64)
//!     16         8        occurred_at (i64, µs since the Unix epoch, UTC)
//!     24         4        key_id (u32): the org key that made `tag`
//!     28        32        prev_hash: chain hash of the previous record (or the segment genesis)
//!     60         4        sealed_len (u32)
//!     64 sealed_len       sealed event body (see `body`)
//!      …         …        openings of the personal-data commitments (see `body`)
//! frame_len-32  32        tag: HMAC-SHA256 (see `crypto::record_tag`)
//! ```
//! The chain hash of a record is SHA-256 of bytes `8..64+sealed_len` (everything from `seq`
//! through the sealed body). The openings sit outside the chain so that erasing personal data
//! rewrites only them (and `frame_len`/`crc32`), never a hashed byte.

use super::codec::Reader;
use super::{DecodeError, DecodeErrorKind, crc32};
use crate::crypto::{Hash, KeyId, Tag};
use crate::time::Timestamp;

/// Bytes before the sealed body.
pub const FRAME_HEADER_LEN: usize = 64;
/// Bytes of the trailing tag.
pub const TAG_LEN: usize = 32;
/// Smallest possible frame: the fixed fields, an empty body and no openings... (the body is
/// never empty in practice; the reader only requires room for the fixed parts).
pub const MIN_FRAME_LEN: u32 = (FRAME_HEADER_LEN + TAG_LEN) as u32;
/// Largest frame any reader accepts: 64 MiB of event plus 64 KiB of framing.
pub const MAX_FRAME_LEN: u32 = 64 * 1024 * 1024 + 64 * 1024;

const STRUCTURE: &str = "record";

/// The fixed fields of a frame, as the writer fills them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFields {
    /// Per-(org, month) sequence number.
    pub seq: u64,
    /// When the event happened.
    pub occurred_at: Timestamp,
    /// Key id of the tag.
    pub key_id: KeyId,
    /// Chain hash of the predecessor.
    pub prev: Hash,
}

/// A frame whose length and CRC have been checked; its contents are borrowed.
#[derive(Clone, Copy, Debug)]
pub struct RawRecord<'a> {
    /// Absolute file offset of the frame's first byte.
    pub offset: u64,
    /// The whole frame.
    pub frame: &'a [u8],
    /// The fixed fields.
    pub fields: FrameFields,
    /// The sealed event body.
    pub sealed: &'a [u8],
    /// The openings section.
    pub openings: &'a [u8],
    /// The tag.
    pub tag: Tag,
}

impl<'a> RawRecord<'a> {
    /// The bytes the chain hash covers: from `seq` through the end of the sealed body.
    pub fn chained_bytes(&self) -> &'a [u8] {
        self.frame
            .get(8..FRAME_HEADER_LEN + self.sealed.len())
            .unwrap_or_default()
    }

    /// Length of the frame in bytes.
    pub fn len(&self) -> u64 {
        self.frame.len() as u64
    }

    /// Always false: a frame has at least its fixed fields.
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

/// Appends one frame to `out`.
///
/// `seal` receives the chained bytes (see module docs) and returns the tag; it is where the
/// caller computes the chain hash and the HMAC. Returns the frame's length.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fields: &FrameFields,
    sealed: &[u8],
    openings: &[u8],
    seal: impl FnOnce(&[u8]) -> Tag,
) -> usize {
    let start = out.len();
    let frame_len = FRAME_HEADER_LEN + sealed.len() + openings.len() + TAG_LEN;
    out.reserve(frame_len);
    out.extend_from_slice(&u32::try_from(frame_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&fields.seq.to_le_bytes());
    out.extend_from_slice(&fields.occurred_at.0.to_le_bytes());
    out.extend_from_slice(&fields.key_id.0.to_le_bytes());
    out.extend_from_slice(&fields.prev.0);
    out.extend_from_slice(
        &u32::try_from(sealed.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(sealed);
    let tag = seal(out.get(start + 8..).unwrap_or_default());
    out.extend_from_slice(openings);
    out.extend_from_slice(&tag.0);
    let crc = crc32(out.get(start + 8..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start + 4..start + 8) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    frame_len
}

/// Reads the `frame_len` field at the start of `buf`, if four bytes are there.
pub fn peek_frame_len(buf: &[u8]) -> Option<u32> {
    let b: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Why a frame could not be read at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame claims more bytes than are available: a torn or growing tail.
    Incomplete {
        /// Bytes the frame claims.
        needed: u64,
        /// Bytes available from its start.
        available: u64,
    },
    /// The bytes are not a valid frame.
    Corrupt(DecodeError),
}

/// Decodes the frame starting at `buf[0]`, which sits at file offset `offset`.
///
/// `buf` may extend past the frame. Checks the length bounds and the CRC before anything else.
pub fn decode_frame(buf: &[u8], offset: u64) -> Result<RawRecord<'_>, FrameError> {
    let corrupt = FrameError::Corrupt;
    let Some(frame_len) = peek_frame_len(buf) else {
        return Err(FrameError::Incomplete {
            needed: 4,
            available: buf.len() as u64,
        });
    };
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame_len) {
        return Err(corrupt(DecodeError {
            structure: STRUCTURE,
            field: "frame_len",
            offset,
            kind: DecodeErrorKind::BadLength {
                found: frame_len.into(),
                min: MIN_FRAME_LEN.into(),
                max: MAX_FRAME_LEN.into(),
            },
        }));
    }
    let Some(frame) = buf.get(..frame_len as usize) else {
        return Err(FrameError::Incomplete {
            needed: frame_len.into(),
            available: buf.len() as u64,
        });
    };
    let mut r = Reader::new(frame, offset, STRUCTURE);
    r.u32("frame_len").map_err(corrupt)?;
    let stored = r.u32("crc32").map_err(corrupt)?;
    let computed = crc32(frame.get(8..).unwrap_or_default());
    if stored != computed {
        return Err(corrupt(DecodeError {
            structure: STRUCTURE,
            field: "crc32",
            offset: offset + 4,
            kind: DecodeErrorKind::ChecksumMismatch { stored, computed },
        }));
    }
    let seq = r.u64("seq").map_err(corrupt)?;
    let occurred_at = Timestamp(r.i64("occurred_at").map_err(corrupt)?);
    let key_id = KeyId(r.u32("key_id").map_err(corrupt)?);
    let prev = Hash(r.array("prev_hash").map_err(corrupt)?);
    let sealed_len = r.u32("sealed_len").map_err(corrupt)?;
    let body_room = frame.len() - FRAME_HEADER_LEN - TAG_LEN;
    if sealed_len as usize > body_room {
        return Err(corrupt(r.error_in_last(
            "sealed_len",
            DecodeErrorKind::BadLength {
                found: sealed_len.into(),
                min: 0,
                max: body_room as u64,
            },
        )));
    }
    let sealed = r.take(sealed_len as usize, "sealed").map_err(corrupt)?;
    let openings = r
        .take(body_room - sealed_len as usize, "openings")
        .map_err(corrupt)?;
    let tag = Tag(r.array("tag").map_err(corrupt)?);
    Ok(RawRecord {
        offset,
        frame,
        fields: FrameFields {
            seq,
            occurred_at,
            key_id,
            prev,
        },
        sealed,
        openings,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_sample(sealed: &[u8], openings: &[u8]) -> Vec<u8> {
        let mut out = vec![0xAA; 3]; // unrelated prefix: offsets must be relative to the frame
        encode_frame(
            &mut out,
            &FrameFields {
                seq: 42,
                occurred_at: Timestamp(1_000_000),
                key_id: KeyId(3),
                prev: Hash([5; 32]),
            },
            sealed,
            openings,
            |chained| {
                let mut t = [0u8; 32];
                t[0] = chained.len() as u8;
                Tag(t)
            },
        );
        out.split_off(3)
    }

    proptest! {
        #[test]
        fn round_trip(sealed in proptest::collection::vec(any::<u8>(), 0..200),
                      openings in proptest::collection::vec(any::<u8>(), 0..100)) {
            let bytes = encode_sample(&sealed, &openings);
            let rec = decode_frame(&bytes, 10).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(rec.sealed, &sealed[..]);
            prop_assert_eq!(rec.openings, &openings[..]);
            prop_assert_eq!(rec.fields.seq, 42);
            prop_assert_eq!(rec.tag.0[0] as usize, (56 + sealed.len()) & 0xff);
            prop_assert_eq!(rec.chained_bytes().len(), 56 + sealed.len());
            prop_assert_eq!(rec.len() as usize, bytes.len());
        }

        /// A flipped bit anywhere in a frame is caught by the length check or the CRC.
        #[test]
        fn every_bit_flip_is_detected(bit in 0usize..(150 * 8)) {
            let mut bytes = encode_sample(&[1u8; 40], &[2u8; 14]);
            prop_assume!(bit / 8 < bytes.len());
            if let Some(b) = bytes.get_mut(bit / 8) { *b ^= 1 << (bit % 8); }
            prop_assert!(decode_frame(&bytes, 0).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_frame(&bytes, 0);
        }
    }

    #[test]
    fn short_buffer_is_incomplete_not_corrupt() {
        let bytes = encode_sample(b"body", b"");
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_frame(bytes.get(..cut).unwrap_or_default(), 0),
                Err(FrameError::Incomplete { .. })
            ));
        }
    }
}
