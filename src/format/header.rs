//! The 256-byte segment header.
//!
//! ```text
//! offset size field
//!      0    8 magic "AUDLOGSG"
//!      8    2 format_version (u16) = 1
//!     10    2 header_len (u16) = 256
//!     12    4 compat_flags (u32): unknown bits are ignored by readers
//!     16    4 incompat_flags (u32): any unknown bit makes readers refuse the file
//!     20    1 hash_alg = 1 (SHA-256)
//!     21    1 tag_alg = 1 (HMAC-SHA256)
//!     22    1 key_id_scheme = 1 (u32 per-org key ids)
//!     23    1 org_len (1..=64)
//!     24   64 org_id, zero padded
//!     88    2 year (u16)
//!     90    1 month (1..=12)
//!     91    1 reserved (0)
//!     92    2 part (u16): 0 for a month's first file, n for its n-th continuation
//!     94    2 reserved (0)
//!     96    4 ordinal (u32): creation order of this segment within the org, from 0
//!    100    4 reserved (0)
//!    104    8 first_seq (u64): seq of the first record in this file
//!    112    8 created_at (i64 µs since epoch, informational)
//!    120   48 prev link: the org's previously created segment (year 0 = none)
//!    168   48 continues link: the damaged part this continuation follows (year 0 = none)
//!    216   36 reserved (0)
//!    252    4 crc32 of bytes 0..252
//! link (48 bytes): year u16, month u8, reserved u8, part u16, reserved u16,
//!                  count u64 (records the linked segment held), head [32] (its chain hash then)
//! ```
//! All integers little-endian. The chain of a segment starts at SHA-256 of these 256 bytes.

use super::codec::Reader;
use super::{
    DecodeError, DecodeErrorKind, FORMAT_VERSION, HASH_ALG_SHA256, KEY_ID_SCHEME_U32,
    TAG_ALG_HMAC_SHA256, crc32,
};
use crate::crypto::Hash;
use crate::event::OrgId;
use crate::time::{Month, Timestamp};

/// Magic bytes at offset 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AUDLOGSG";
/// Length of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 256;
/// Incompatible flags this build understands (none yet).
pub const KNOWN_INCOMPAT_FLAGS: u32 = 0;

const STRUCTURE: &str = "segment header";
const ORG_FIELD_LEN: usize = 64;
const LINK_LEN: usize = 48;
const RESERVED_TAIL: usize = 36;

/// Which file of an org a segment is: its month and part number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The UTC month its events fall in.
    pub month: Month,
    /// 0 for the month's first file; n for the n-th continuation after damage.
    pub part: u16,
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.part == 0 {
            write!(f, "{}", self.month)
        } else {
            write!(f, "{}.{}", self.month, self.part)
        }
    }
}

/// A pointer from one segment to a state of another: "segment S when it held `count`
/// records and its chain head was `head`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLink {
    /// The segment pointed at.
    pub segment: SegmentId,
    /// How many records it held.
    pub count: u64,
    /// Its chain hash after those records (its genesis hash when `count` is 0).
    pub head: Hash,
}

/// A decoded segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Compatible feature flags.
    pub compat_flags: u32,
    /// Organisation the segment belongs to.
    pub org: OrgId,
    /// Month and part.
    pub id: SegmentId,
    /// Creation order within the org, from 0.
    pub ordinal: u32,
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Wall-clock creation time (informational; not trusted for ordering).
    pub created_at: Timestamp,
    /// The org's previously created segment, as it stood when this one was created.
    pub prev: Option<SegmentLink>,
    /// For a continuation: the damaged part it continues and its last valid record.
    pub continues: Option<SegmentLink>,
}

fn put_link(out: &mut Vec<u8>, link: Option<&SegmentLink>) {
    match link {
        None => out.extend_from_slice(&[0u8; LINK_LEN]),
        Some(l) => {
            out.extend_from_slice(&l.segment.month.year().to_le_bytes());
            out.push(l.segment.month.month());
            out.push(0);
            out.extend_from_slice(&l.segment.part.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&l.count.to_le_bytes());
            out.extend_from_slice(&l.head.0);
        }
    }
}

fn reserved_zero(r: &mut Reader<'_>, n: usize, field: &'static str) -> Result<(), DecodeError> {
    let at = r.offset();
    if r.take(n, field)?.iter().any(|&b| b != 0) {
        return Err(DecodeError {
            structure: STRUCTURE,
            field,
            offset: at,
            kind: DecodeErrorKind::Invalid("reserved bytes must be zero"),
        });
    }
    Ok(())
}

fn get_link(r: &mut Reader<'_>, field: &'static str) -> Result<Option<SegmentLink>, DecodeError> {
    let at = r.offset();
    let year = r.u16(field)?;
    let month = r.u8(field)?;
    reserved_zero(r, 1, field)?;
    let part = r.u16(field)?;
    reserved_zero(r, 2, field)?;
    let count = r.u64(field)?;
    let head = Hash(r.array(field)?);
    if year == 0 {
        if month != 0 || part != 0 || count != 0 || head != Hash::ZERO {
            return Err(DecodeError {
                structure: STRUCTURE,
                field,
                offset: at,
                kind: DecodeErrorKind::Invalid("empty link must be all zero"),
            });
        }
        return Ok(None);
    }
    let month = Month::new(year, month).ok_or(DecodeError {
        structure: STRUCTURE,
        field,
        offset: at,
        kind: DecodeErrorKind::Invalid("link names an invalid month"),
    })?;
    Ok(Some(SegmentLink {
        segment: SegmentId { month, part },
        count,
        head,
    }))
}

/// An unsupported `format_version` (FORMAT.md §9) is taken for a newer format unless the
/// header is a v1 header whose version bytes rotted: its CRC holds once the version is put
/// back to 1. Then it is the checksum failure it is.
fn version_rot(buf: &[u8], e: DecodeError) -> DecodeError {
    if !matches!(e.kind, DecodeErrorKind::UnsupportedVersion { .. }) {
        return e;
    }
    let (Some(body), Some(stored)) = (
        buf.get(..SEGMENT_HEADER_LEN - 4),
        buf.get(SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN),
    ) else {
        return e;
    };
    let stored = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    if !super::version_rotted(body, stored) {
        return e;
    }
    DecodeError {
        structure: STRUCTURE,
        field: "crc32",
        offset: (SEGMENT_HEADER_LEN - 4) as u64,
        kind: DecodeErrorKind::ChecksumMismatch {
            stored,
            computed: crc32(body),
        },
    }
}

impl SegmentHeader {
    /// Encodes the header into its 256 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = Vec::with_capacity(SEGMENT_HEADER_LEN);
        out.extend_from_slice(&SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        out.extend_from_slice(&self.compat_flags.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(HASH_ALG_SHA256);
        out.push(TAG_ALG_HMAC_SHA256);
        out.push(KEY_ID_SCHEME_U32);
        let org = self.org.as_str().as_bytes();
        out.push(org.len() as u8);
        let mut org_field = [0u8; ORG_FIELD_LEN];
        for (dst, src) in org_field.iter_mut().zip(org) {
            *dst = *src;
        }
        out.extend_from_slice(&org_field);
        out.extend_from_slice(&self.id.month.year().to_le_bytes());
        out.push(self.id.month.month());
        out.push(0);
        out.extend_from_slice(&self.id.part.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.ordinal.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.created_at.0.to_le_bytes());
        put_link(&mut out, self.prev.as_ref());
        put_link(&mut out, self.continues.as_ref());
        out.extend_from_slice(&[0u8; RESERVED_TAIL]);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let mut fixed = [0u8; SEGMENT_HEADER_LEN];
        for (dst, src) in fixed.iter_mut().zip(&out) {
            *dst = *src;
        }
        fixed
    }

    /// Decodes a header from the first 256 bytes of `buf` (a segment file's start).
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, DecodeError> {
        let mut r = Reader::new(buf, 0, STRUCTURE);
        if let Err(e) = r.magic_and_version(SEGMENT_MAGIC) {
            return Err(version_rot(buf, e));
        }
        let header_len = r.u16("header_len")?;
        if usize::from(header_len) != SEGMENT_HEADER_LEN {
            return Err(r.error_in_last(
                "header_len",
                DecodeErrorKind::BadLength {
                    found: header_len.into(),
                    min: SEGMENT_HEADER_LEN as u64,
                    max: SEGMENT_HEADER_LEN as u64,
                },
            ));
        }
        // A header cut short is named as a whole: how much of its 256 bytes there is.
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err(r.error_at(
                0,
                "header",
                DecodeErrorKind::Truncated {
                    needed: SEGMENT_HEADER_LEN as u64,
                    available: buf.len() as u64,
                },
            ));
        }
        // Check the CRC before trusting any other field.
        let mut crc_reader = Reader::new(
            buf.get(SEGMENT_HEADER_LEN - 4..).unwrap_or_default(),
            (SEGMENT_HEADER_LEN - 4) as u64,
            STRUCTURE,
        );
        let stored = crc_reader.u32("crc32")?;
        let computed = crc32(buf.get(..SEGMENT_HEADER_LEN - 4).unwrap_or_default());
        if stored != computed {
            return Err(crc_reader.error_in_last(
                "crc32",
                DecodeErrorKind::ChecksumMismatch { stored, computed },
            ));
        }
        let compat_flags = r.u32("compat_flags")?;
        let incompat = r.u32("incompat_flags")?;
        if incompat & !KNOWN_INCOMPAT_FLAGS != 0 {
            return Err(r.error_in_last(
                "incompat_flags",
                DecodeErrorKind::UnknownIncompatibleFlags {
                    flags: incompat & !KNOWN_INCOMPAT_FLAGS,
                },
            ));
        }
        for (field, want) in [
            ("hash_alg", HASH_ALG_SHA256),
            ("tag_alg", TAG_ALG_HMAC_SHA256),
            ("key_id_scheme", KEY_ID_SCHEME_U32),
        ] {
            if r.u8(field)? != want {
                return Err(r.error_in_last(field, DecodeErrorKind::Invalid("unknown algorithm")));
            }
        }
        let org_len = usize::from(r.u8("org_len")?);
        let org_at = r.offset();
        let org_field = r.take(ORG_FIELD_LEN, "org_id")?;
        let invalid_org = DecodeError {
            structure: STRUCTURE,
            field: "org_id",
            offset: org_at,
            kind: DecodeErrorKind::Invalid("not a valid org id"),
        };
        let (org_bytes, padding) = org_field
            .split_at_checked(org_len)
            .ok_or_else(|| invalid_org.clone())?;
        if padding.iter().any(|&b| b != 0) {
            return Err(invalid_org);
        }
        let org = std::str::from_utf8(org_bytes)
            .ok()
            .and_then(|s| OrgId::new(s).ok())
            .ok_or(invalid_org)?;
        let month_at = r.offset();
        let year = r.u16("year")?;
        let month = r.u8("month")?;
        let month = Month::new(year, month).ok_or(DecodeError {
            structure: STRUCTURE,
            field: "month",
            offset: month_at,
            kind: DecodeErrorKind::Invalid("invalid year or month"),
        })?;
        reserved_zero(&mut r, 1, "reserved")?;
        let part = r.u16("part")?;
        reserved_zero(&mut r, 2, "reserved")?;
        let ordinal = r.u32("ordinal")?;
        reserved_zero(&mut r, 4, "reserved")?;
        let first_seq = r.u64("first_seq")?;
        let created_at = Timestamp(r.i64("created_at")?);
        let prev = get_link(&mut r, "prev")?;
        let continues = get_link(&mut r, "continues")?;
        reserved_zero(&mut r, RESERVED_TAIL, "reserved")?;
        Ok(SegmentHeader {
            compat_flags,
            org,
            id: SegmentId { month, part },
            ordinal,
            first_seq,
            created_at,
            prev,
            continues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Option<SegmentHeader> {
        Some(SegmentHeader {
            compat_flags: 0,
            org: OrgId::new("acme-corp").ok()?,
            id: SegmentId {
                month: Month::new(2026, 3)?,
                part: 1,
            },
            ordinal: 7,
            first_seq: 1000,
            created_at: Timestamp(1_773_483_751_123_456),
            prev: Some(SegmentLink {
                segment: SegmentId {
                    month: Month::new(2026, 4)?,
                    part: 0,
                },
                count: 55,
                head: Hash([7; 32]),
            }),
            continues: Some(SegmentLink {
                segment: SegmentId {
                    month: Month::new(2026, 3)?,
                    part: 0,
                },
                count: 1000,
                head: Hash([9; 32]),
            }),
        })
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.as_ref().map(|h| h.encode());
        assert_eq!(bytes.map(|b| b.len()), Some(SEGMENT_HEADER_LEN));
        assert_eq!(bytes.and_then(|b| SegmentHeader::decode(&b).ok()), h);
    }

    /// A decode error names the field at the offset FORMAT.md §1 gives it, not the offset
    /// after it (the reader's position once the field is read, as errors used to say).
    #[test]
    fn errors_name_the_offset_where_the_field_begins() {
        let Some(h) = sample() else { panic!("sample") };
        let error_after = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = h.encode().to_vec();
            edit(&mut b);
            SegmentHeader::decode(&b).err().map(|e| (e.field, e.offset))
        };
        // Rewrites a field and fixes the CRC, so that the field's own check is reached.
        let with_crc = |b: &mut Vec<u8>| {
            let crc = crc32(&b[..SEGMENT_HEADER_LEN - 4]);
            b[SEGMENT_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        };
        type Edit<'a> = &'a dyn Fn(&mut Vec<u8>);
        let cases: [(&str, u64, Edit<'_>); 7] = [
            ("magic", 0, &|b| b[0] ^= 1),
            ("format_version", 8, &|b| {
                b[8] = 2;
                with_crc(b)
            }),
            ("header_len", 10, &|b| b[10] = 1),
            ("crc32", 252, &|b| b[100] ^= 1),
            ("header", 0, &|b| b.truncate(200)),
            ("incompat_flags", 16, &|b| {
                b[16] = 1;
                with_crc(b)
            }),
            ("hash_alg", 20, &|b| {
                b[20] = 9;
                with_crc(b)
            }),
        ];
        for (field, offset, edit) in cases {
            assert_eq!(error_after(edit), Some((field, offset)), "{field}");
        }
    }

    proptest! {
        /// Every single-bit flip anywhere in the header is rejected.
        #[test]
        fn every_bit_flip_is_detected(bit in 0usize..SEGMENT_HEADER_LEN * 8) {
            let Some(h) = sample() else { return Err(TestCaseError::fail("sample")) };
            let mut b = h.encode();
            if let Some(byte) = b.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
            prop_assert!(SegmentHeader::decode(&b).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
