//! The signed sidecar index of a segment.
//!
//! ```text
//! offset size field
//!      0    8 magic "AUDLOGIX"
//!      8    2 format_version (u16) = 1
//!     10    2 reserved (0)
//!     12    4 compat_flags (u32)
//!     16    4 incompat_flags (u32)
//!     20    4 key_id (u32): the org key that made `tag`
//!     24    1 org_len
//!     25    3 reserved (0)
//!     28   64 org_id, zero padded
//!     92    2 year
//!     94    1 month
//!     95    1 reserved (0)
//!     96    2 part
//!     98    2 reserved (0)
//!    100    4 interval (u32): bytes between sparse entries
//!    104   32 segment_hash: SHA-256 of the segment's 256-byte header (its genesis)
//!    136    8 covered_len (u64): segment bytes this index describes, header included
//!    144    8 record_count (u64) in the covered bytes
//!    152    8 first_seq (u64)
//!    160    8 min_ts (i64; i64::MAX when empty)
//!    168    8 max_ts (i64; i64::MIN when empty)
//!    176   32 head: chain hash after the last covered record (segment_hash when empty)
//!    208    4 entry_count (u32)
//!    212    4 section_count (u32)
//!    216  24n entries: seq u64, max_ts_before i64, offset u64
//!      …    … sections: u32 type, u32 len, len bytes (reserved for the query layer)
//!      …    4 crc32 of every preceding byte
//!      …   32 tag: HMAC-SHA256(key, "auditlog.index.v1" || every preceding byte)
//! ```
//! An entry is written for the first record starting at or after each multiple of
//! `interval`; `max_ts_before` is the largest `occurred_at` of all records before `offset`
//! (i64::MIN if none), so a reader looking for times ≥ t may start at the last entry whose
//! `max_ts_before` < t without missing out-of-order records.

use super::codec::Reader;
use super::header::SegmentId;
use super::{DecodeError, DecodeErrorKind, FORMAT_VERSION, crc32};
use crate::crypto::{Hash, KeyId, Tag};
use crate::event::OrgId;
use crate::time::{Month, Timestamp};

/// Magic bytes of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"AUDLOGIX";
/// Bytes before the entries.
pub const INDEX_HEADER_LEN: usize = 216;
/// Bytes per sparse entry.
pub const ENTRY_LEN: usize = 24;
/// Bytes after the sections: crc32 and tag.
pub const INDEX_TRAILER_LEN: usize = 36;

const STRUCTURE: &str = "index";

/// One sparse entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Seq of the record at `offset`.
    pub seq: u64,
    /// Largest `occurred_at` of all records before `offset` (i64::MIN if none).
    pub max_ts_before: Timestamp,
    /// Byte offset of a record start in the segment.
    pub offset: u64,
}

/// An opaque section for later readers (the query layer's secondary indexes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Section type; unknown types are skipped by readers.
    pub kind: u32,
    /// Section bytes.
    pub bytes: Vec<u8>,
}

/// A decoded index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// Compatible flags.
    pub compat_flags: u32,
    /// Key id of the tag.
    pub key_id: KeyId,
    /// Org.
    pub org: OrgId,
    /// Segment described.
    pub segment: SegmentId,
    /// Entry interval in bytes.
    pub interval: u32,
    /// SHA-256 of the segment header.
    pub segment_hash: Hash,
    /// Segment bytes covered.
    pub covered_len: u64,
    /// Records in the covered bytes.
    pub record_count: u64,
    /// Seq of the first record.
    pub first_seq: u64,
    /// Smallest `occurred_at` covered.
    pub min_ts: Timestamp,
    /// Largest `occurred_at` covered.
    pub max_ts: Timestamp,
    /// Chain hash after the last covered record.
    pub head: Hash,
    /// Sparse entries, in offset order.
    pub entries: Vec<IndexEntry>,
    /// Extension sections.
    pub sections: Vec<Section>,
}

impl Index {
    /// Encodes everything but the tag; append the tag computed over `body` to finish.
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            INDEX_HEADER_LEN + self.entries.len() * ENTRY_LEN + INDEX_TRAILER_LEN,
        );
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.compat_flags.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.key_id.0.to_le_bytes());
        let org = self.org.as_str().as_bytes();
        out.push(org.len() as u8);
        out.extend_from_slice(&[0; 3]);
        let mut org_field = [0u8; 64];
        for (d, s) in org_field.iter_mut().zip(org) {
            *d = *s;
        }
        out.extend_from_slice(&org_field);
        out.extend_from_slice(&self.segment.month.year().to_le_bytes());
        out.push(self.segment.month.month());
        out.push(0);
        out.extend_from_slice(&self.segment.part.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.interval.to_le_bytes());
        out.extend_from_slice(&self.segment_hash.0);
        out.extend_from_slice(&self.covered_len.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.min_ts.0.to_le_bytes());
        out.extend_from_slice(&self.max_ts.0.to_le_bytes());
        out.extend_from_slice(&self.head.0);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.seq.to_le_bytes());
            out.extend_from_slice(&e.max_ts_before.0.to_le_bytes());
            out.extend_from_slice(&e.offset.to_le_bytes());
        }
        for s in &self.sections {
            out.extend_from_slice(&s.kind.to_le_bytes());
            out.extend_from_slice(&(s.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&s.bytes);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an index file. Returns the index, the tag, and the bytes the tag covers.
    ///
    /// Checks structure and CRC only; the caller checks the tag with the org's key.
    pub fn decode(buf: &[u8]) -> Result<(Index, Tag, &[u8]), DecodeError> {
        let trailer_at = buf.len().checked_sub(32).ok_or(DecodeError {
            structure: STRUCTURE,
            field: "tag",
            offset: 0,
            kind: DecodeErrorKind::Truncated {
                needed: (INDEX_HEADER_LEN + INDEX_TRAILER_LEN) as u64,
                available: buf.len() as u64,
            },
        })?;
        let (signed, tag_bytes) = buf.split_at(trailer_at);
        let tag = Tag(tag_bytes.try_into().unwrap_or([0; 32]));
        let mut r = Reader::new(signed, 0, STRUCTURE);
        let magic: [u8; 8] = r.array("magic")?;
        if magic != INDEX_MAGIC {
            return Err(DecodeError {
                structure: STRUCTURE,
                field: "magic",
                offset: 0,
                kind: DecodeErrorKind::BadMagic { found: magic },
            });
        }
        let version = r.u16("format_version")?;
        if version != FORMAT_VERSION {
            return Err(r.error(
                "format_version",
                DecodeErrorKind::UnsupportedVersion {
                    found: version,
                    supported: FORMAT_VERSION,
                },
            ));
        }
        // CRC over everything before the stored CRC, checked before the other fields.
        let crc_at = signed.len().checked_sub(4).ok_or(r.error(
            "crc32",
            DecodeErrorKind::Truncated {
                needed: 4,
                available: 0,
            },
        ))?;
        let (crc_body, crc_bytes) = signed.split_at(crc_at);
        let stored = u32::from_le_bytes(crc_bytes.try_into().unwrap_or([0; 4]));
        let computed = crc32(crc_body);
        if stored != computed {
            return Err(DecodeError {
                structure: STRUCTURE,
                field: "crc32",
                offset: crc_at as u64,
                kind: DecodeErrorKind::ChecksumMismatch { stored, computed },
            });
        }
        let mut r = Reader::new(crc_body, 0, STRUCTURE);
        r.take(10, "magic")?;
        zero(&mut r, 2)?;
        let compat_flags = r.u32("compat_flags")?;
        let incompat = r.u32("incompat_flags")?;
        if incompat != 0 {
            return Err(r.error(
                "incompat_flags",
                DecodeErrorKind::UnknownIncompatibleFlags { flags: incompat },
            ));
        }
        let key_id = KeyId(r.u32("key_id")?);
        let org_len = usize::from(r.u8("org_len")?);
        zero(&mut r, 3)?;
        let org_at = r.offset();
        let org_field = r.take(64, "org_id")?;
        let bad_org = DecodeError {
            structure: STRUCTURE,
            field: "org_id",
            offset: org_at,
            kind: DecodeErrorKind::Invalid("not a valid org id"),
        };
        let (org, pad) = org_field.split_at_checked(org_len).ok_or(bad_org.clone())?;
        if pad.iter().any(|&b| b != 0) {
            return Err(bad_org);
        }
        let org = std::str::from_utf8(org)
            .ok()
            .and_then(|s| OrgId::new(s).ok())
            .ok_or(bad_org)?;
        let year = r.u16("year")?;
        let month = r.u8("month")?;
        let month = Month::new(year, month)
            .ok_or(r.error("month", DecodeErrorKind::Invalid("invalid year or month")))?;
        zero(&mut r, 1)?;
        let part = r.u16("part")?;
        zero(&mut r, 2)?;
        let interval = r.u32("interval")?;
        if interval == 0 {
            return Err(r.error(
                "interval",
                DecodeErrorKind::Invalid("interval must be positive"),
            ));
        }
        let segment_hash = Hash(r.array("segment_hash")?);
        let covered_len = r.u64("covered_len")?;
        let record_count = r.u64("record_count")?;
        let first_seq = r.u64("first_seq")?;
        let min_ts = Timestamp(r.i64("min_ts")?);
        let max_ts = Timestamp(r.i64("max_ts")?);
        let head = Hash(r.array("head")?);
        let entry_count = r.u32("entry_count")? as usize;
        let section_count = r.u32("section_count")? as usize;
        // Bound allocations by the bytes actually present.
        if entry_count > r.remaining() / ENTRY_LEN {
            return Err(r.error(
                "entry_count",
                DecodeErrorKind::BadLength {
                    found: entry_count as u64,
                    min: 0,
                    max: (r.remaining() / ENTRY_LEN) as u64,
                },
            ));
        }
        let mut entries = Vec::with_capacity(entry_count);
        let mut last_offset = None;
        for _ in 0..entry_count {
            let e = IndexEntry {
                seq: r.u64("entry.seq")?,
                max_ts_before: Timestamp(r.i64("entry.max_ts_before")?),
                offset: r.u64("entry.offset")?,
            };
            if last_offset.is_some_and(|o| e.offset <= o) || e.offset >= covered_len {
                return Err(r.error(
                    "entry.offset",
                    DecodeErrorKind::Invalid("entries out of order or past covered_len"),
                ));
            }
            last_offset = Some(e.offset);
            entries.push(e);
        }
        if section_count > r.remaining() / 8 {
            return Err(r.error(
                "section_count",
                DecodeErrorKind::BadLength {
                    found: section_count as u64,
                    min: 0,
                    max: (r.remaining() / 8) as u64,
                },
            ));
        }
        let mut sections = Vec::with_capacity(section_count);
        for _ in 0..section_count {
            let kind = r.u32("section.type")?;
            let len = r.u32("section.len")? as usize;
            sections.push(Section {
                kind,
                bytes: r.take(len, "section.bytes")?.to_vec(),
            });
        }
        r.finish("end of sections")?;
        Ok((
            Index {
                compat_flags,
                key_id,
                org,
                segment: SegmentId { month, part },
                interval,
                segment_hash,
                covered_len,
                record_count,
                first_seq,
                min_ts,
                max_ts,
                head,
                entries,
                sections,
            },
            tag,
            signed,
        ))
    }
}

fn zero(r: &mut Reader<'_>, n: usize) -> Result<(), DecodeError> {
    let at = r.offset();
    if r.take(n, "reserved")?.iter().any(|&b| b != 0) {
        return Err(DecodeError {
            structure: STRUCTURE,
            field: "reserved",
            offset: at,
            kind: DecodeErrorKind::Invalid("reserved bytes must be zero"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Option<Index> {
        Some(Index {
            compat_flags: 0,
            key_id: KeyId(2),
            org: OrgId::new("acme").ok()?,
            segment: SegmentId {
                month: Month::new(2026, 3)?,
                part: 0,
            },
            interval: 4096,
            segment_hash: Hash([1; 32]),
            covered_len: 100_000,
            record_count: 150,
            first_seq: 0,
            min_ts: Timestamp(5),
            max_ts: Timestamp(500),
            head: Hash([2; 32]),
            entries: vec![
                IndexEntry {
                    seq: 0,
                    max_ts_before: Timestamp(i64::MIN),
                    offset: 256,
                },
                IndexEntry {
                    seq: 7,
                    max_ts_before: Timestamp(90),
                    offset: 4200,
                },
            ],
            sections: vec![Section {
                kind: 9,
                bytes: vec![1, 2, 3],
            }],
        })
    }

    fn encode(i: &Index) -> Vec<u8> {
        let mut b = i.encode_unsigned();
        b.extend_from_slice(&[0xEE; 32]);
        b
    }

    #[test]
    fn round_trip() {
        let i = sample();
        let bytes = i.as_ref().map(encode).unwrap_or_default();
        let decoded = Index::decode(&bytes).ok();
        assert_eq!(decoded.as_ref().map(|d| &d.0), i.as_ref());
        assert_eq!(
            decoded.map(|d| (d.1, d.2.len())),
            Some((Tag([0xEE; 32]), bytes.len() - 32))
        );
    }

    proptest! {
        /// Any flipped bit outside the tag is caught by the CRC or a structural check.
        #[test]
        fn every_bit_flip_outside_tag_is_detected(bit in 0usize..((INDEX_HEADER_LEN + 48 + 11 + 4) * 8)) {
            let Some(i) = sample() else { return Err(TestCaseError::fail("sample")) };
            let mut b = encode(&i);
            if let Some(x) = b.get_mut(bit / 8) { *x ^= 1 << (bit % 8); }
            prop_assert!(Index::decode(&b).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Index::decode(&bytes);
        }
    }
}
