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
//!      …    … sections: u32 type, u32 len, len bytes; unknown types are skipped
//!      …    4 crc32 of every preceding byte
//!      …   32 tag: HMAC-SHA256(key, "auditlog.index.v1" || every preceding byte)
//! ```
//! An entry is written for the first record starting at or after each multiple of
//! `interval`; `max_ts_before` is the largest `occurred_at` of all records before `offset`
//! (i64::MIN if none), so a reader looking for times ≥ t may start at the last entry whose
//! `max_ts_before` < t without missing out-of-order records.
//!
//! Block `i` is the records from entry `i`'s offset up to entry `i+1`'s (the last block ends
//! at `covered_len`). Two section types describe blocks, one item per entry, for the query
//! layer (FORMAT.md §3.1, §3.2):
//! ```text
//! type 1 block_times:   entry_count × (min_ts i64, max_ts i64)    occurred_at bounds of the block
//! type 2 block_filters: u8 hash_scheme (1 or 2), u8 k (1..=16), u16 reserved (0),
//!                       entry_count × (varint n, n bytes)         Bloom filter of the block's terms
//! ```
//! ```text
//! type 3 user_marks:    u8 scheme (1), 3 reserved (0),
//!                       record_count × u16 mark                   one per covered record, seq order
//! ```
//! A mark is 0 without a `user_id`, 1 for a record whose body did not parse, else
//! `mix(term_hash(1 ‖ user_id) ⊕ 0x6A09E667F3BCC909) >> 48`, raised by 2 if below 2.
//!
//! A filter of 0 bytes means "no filter": every term may be present. Terms are a field code
//! byte followed by the value's bytes: 1 user_id, 2 action, 3 each proper dot-prefix of the
//! action (`channel_sync` and `channel_sync.booking` for `channel_sync.booking.imported`),
//! 4 resource_type, 5 resource_id, 6 trace_id. A term's 64-bit hash is FNV-1a; probe `j` of
//! `k` sets bit `x_j · m >> 64` of the `m = 8n` bits (bit `b` is bit `b % 8` of byte `b / 8`),
//! with `h1 = mix(h)`, `h2 = mix(h ^ 0x9E3779B97F4A7C15) | 1`, `mix` the SplitMix64
//! finaliser, and (mod 2^64) `x_j = h1 + j·h2` in scheme 1; in scheme 2, which writers use,
//! `x_0 = h1 ⊕ (i + 1) · 0x9E3779B97F4A7C15` for block `i` and
//! `x_{j+1} = x_j · 0xD1342543DE82EF95 + h2`.

use super::codec::Reader;
use super::header::{SEGMENT_HEADER_LEN, SegmentId};
use super::record::MIN_FRAME_LEN;
use super::{DecodeError, DecodeErrorKind, FORMAT_VERSION, crc32};
use crate::crypto::{Hash, KeyId, Tag};
use crate::event::OrgId;
use crate::time::{Month, Timestamp};

/// Section type of the per-block time bounds (FORMAT.md §3.1).
pub const SECTION_BLOCK_TIMES: u32 = 1;
/// Section type of the per-block term filters (FORMAT.md §3.2).
pub const SECTION_BLOCK_FILTERS: u32 = 2;
/// Hash scheme of the block filters the writer uses (FORMAT.md §3.2): FNV-1a 64, SplitMix64
/// finaliser, and probes from a congruential sequence salted per block. Scheme 1 (double
/// hashing, the same probes in every block) is still read.
pub const FILTER_HASH_SCHEME: u8 = 2;
/// Probes per term the writer uses.
pub const FILTER_K: u8 = 7;
/// Filter bits per distinct term the writer allots (≈ 0.3 % false positives with k = 7).
pub const FILTER_BITS_PER_TERM: usize = 12;
/// Bytes of the block-filter section header.
pub const FILTER_HEADER_LEN: usize = 4;
/// Section type of the per-record user marks (FORMAT.md §3.3).
pub const SECTION_USER_MARKS: u32 = 3;
/// The one user-mark scheme (FORMAT.md §3.3); another would be another section type.
pub const USER_MARK_SCHEME: u8 = 1;
/// Bytes of the user-mark section header.
pub const MARKS_HEADER_LEN: usize = 4;
/// Bytes per user mark.
pub const MARK_LEN: usize = 2;
/// The mark of a record without a `user_id`.
pub const MARK_NO_USER: u16 = 0;
/// The mark of a record whose body did not parse: any user may be its.
pub const MARK_UNKNOWN: u16 = 1;

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

impl IndexEntry {
    /// The entry's 24 bytes: `seq u64, max_ts_before i64, offset u64`.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        let fields = [
            self.seq.to_le_bytes(),
            self.max_ts_before.0.to_le_bytes(),
            self.offset.to_le_bytes(),
        ];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field);
        }
        out
    }

    /// Reads one entry.
    pub fn decode(r: &mut Reader<'_>) -> Result<IndexEntry, DecodeError> {
        Ok(IndexEntry {
            seq: r.u64("entry.seq")?,
            max_ts_before: Timestamp(r.i64("entry.max_ts_before")?),
            offset: r.u64("entry.offset")?,
        })
    }
}

/// The fixed fields of an index: its first [`INDEX_HEADER_LEN`] bytes, up to the entries.
///
/// Separate from [`Index`] so that a writer can encode an index piece by piece (header,
/// then entries and sections streamed from elsewhere) into exactly the bytes
/// [`Index::encode_unsigned`] produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHead {
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
    /// Number of sparse entries that follow.
    pub entry_count: u32,
    /// Number of sections after the entries.
    pub section_count: u32,
}

impl IndexHead {
    /// Appends the [`INDEX_HEADER_LEN`] header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
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
        out.extend_from_slice(&self.entry_count.to_le_bytes());
        out.extend_from_slice(&self.section_count.to_le_bytes());
    }

    /// Whether `covered_len`, `record_count` and `first_seq` keep FORMAT.md §3's rules:
    /// the covered bytes hold a segment header and `record_count` frames of at least
    /// [`MIN_FRAME_LEN`] bytes, and `first_seq + record_count` fits in a u64. A reader
    /// rejects an index that breaks them, so a writer does not write one.
    pub fn counts_fit(&self) -> bool {
        count_rule(self.covered_len, self.record_count, self.first_seq).is_ok()
    }

    /// Reads and checks the header fields (magic, version, reserved bytes, flags, org,
    /// month, interval, and [`IndexHead::counts_fit`]) from the start of an index. Says
    /// nothing about the CRC, the tag or whether the entry and section counts fit the
    /// bytes that follow.
    pub fn decode(r: &mut Reader<'_>) -> Result<IndexHead, DecodeError> {
        r.magic_and_version(INDEX_MAGIC)?;
        zero(r, 2)?;
        let compat_flags = r.u32("compat_flags")?;
        let incompat = r.u32("incompat_flags")?;
        if incompat != 0 {
            return Err(r.error_in_last(
                "incompat_flags",
                DecodeErrorKind::UnknownIncompatibleFlags { flags: incompat },
            ));
        }
        let key_id = KeyId(r.u32("key_id")?);
        let org_len = usize::from(r.u8("org_len")?);
        zero(r, 3)?;
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
        let month_at = r.offset();
        let year = r.u16("year")?;
        let month = r.u8("month")?;
        let month = Month::new(year, month).ok_or(r.error_at(
            month_at,
            "month",
            DecodeErrorKind::Invalid("invalid year or month"),
        ))?;
        zero(r, 1)?;
        let part = r.u16("part")?;
        zero(r, 2)?;
        let interval = r.u32("interval")?;
        if interval == 0 {
            return Err(r.error_in_last(
                "interval",
                DecodeErrorKind::Invalid("interval must be positive"),
            ));
        }
        let segment_hash = Hash(r.array("segment_hash")?);
        let counts_at = r.offset();
        let covered_len = r.u64("covered_len")?;
        let record_count = r.u64("record_count")?;
        let first_seq = r.u64("first_seq")?;
        if let Err((field, at, kind)) = count_rule(covered_len, record_count, first_seq) {
            return Err(DecodeError {
                structure: STRUCTURE,
                field,
                offset: counts_at + at,
                kind,
            });
        }
        Ok(IndexHead {
            compat_flags,
            key_id,
            org,
            segment: SegmentId { month, part },
            interval,
            segment_hash,
            covered_len,
            record_count,
            first_seq,
            min_ts: Timestamp(r.i64("min_ts")?),
            max_ts: Timestamp(r.i64("max_ts")?),
            head: Hash(r.array("head")?),
            entry_count: r.u32("entry_count")?,
            section_count: r.u32("section_count")?,
        })
    }
}

/// FORMAT.md §3's rules for an index's counts (see [`IndexHead::counts_fit`]); on a break,
/// the field to blame, its offset from `covered_len`'s, and why.
fn count_rule(
    covered_len: u64,
    record_count: u64,
    first_seq: u64,
) -> Result<(), (&'static str, u64, DecodeErrorKind)> {
    let Some(room) = covered_len.checked_sub(SEGMENT_HEADER_LEN as u64) else {
        return Err((
            "covered_len",
            0,
            DecodeErrorKind::Invalid("covered_len is shorter than a segment header"),
        ));
    };
    // Every record is a frame of at least MIN_FRAME_LEN bytes.
    let most = room / u64::from(MIN_FRAME_LEN);
    if record_count > most {
        return Err((
            "record_count",
            8,
            DecodeErrorKind::BadLength {
                found: record_count,
                min: 0,
                max: most,
            },
        ));
    }
    if first_seq.checked_add(record_count).is_none() {
        return Err((
            "first_seq",
            16,
            DecodeErrorKind::Invalid("first_seq + record_count overflows"),
        ));
    }
    Ok(())
}

/// The 8 bytes that open a section: `u32 type, u32 len`.
pub fn section_header(kind: u32, len: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    let (a, b) = out.split_at_mut(4);
    a.copy_from_slice(&kind.to_le_bytes());
    b.copy_from_slice(&len.to_le_bytes());
    out
}

/// One block's item of the block-times section: `min_ts i64, max_ts i64`.
pub fn encode_block_time(min: Timestamp, max: Timestamp) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (a, b) = out.split_at_mut(8);
    a.copy_from_slice(&min.0.to_le_bytes());
    b.copy_from_slice(&max.0.to_le_bytes());
    out
}

impl Index {
    /// The fixed fields, with the counts of this index's entries and sections.
    pub fn head(&self) -> IndexHead {
        IndexHead {
            compat_flags: self.compat_flags,
            key_id: self.key_id,
            org: self.org.clone(),
            segment: self.segment,
            interval: self.interval,
            segment_hash: self.segment_hash,
            covered_len: self.covered_len,
            record_count: self.record_count,
            first_seq: self.first_seq,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            head: self.head,
            entry_count: self.entries.len() as u32,
            section_count: self.sections.len() as u32,
        }
    }

    /// Encodes everything but the tag; append the tag computed over `body` to finish.
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            INDEX_HEADER_LEN + self.entries.len() * ENTRY_LEN + INDEX_TRAILER_LEN,
        );
        self.head().encode(&mut out);
        for e in &self.entries {
            out.extend_from_slice(&e.encode());
        }
        for s in &self.sections {
            out.extend_from_slice(&section_header(s.kind, s.bytes.len() as u32));
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
            // A newer format, unless a v1 index's version rotted (FORMAT.md §9).
            if let Some(crc_at) = signed.len().checked_sub(4) {
                let (body, stored) = signed.split_at(crc_at);
                let stored = u32::from_le_bytes(stored.try_into().unwrap_or([0; 4]));
                if super::version_rotted(body, stored) {
                    return Err(DecodeError {
                        structure: STRUCTURE,
                        field: "crc32",
                        offset: crc_at as u64,
                        kind: DecodeErrorKind::ChecksumMismatch {
                            stored,
                            computed: crc32(body),
                        },
                    });
                }
            }
            return Err(r.error_in_last(
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
        let IndexHead {
            compat_flags,
            key_id,
            org,
            segment,
            interval,
            segment_hash,
            covered_len,
            record_count,
            first_seq,
            min_ts,
            max_ts,
            head,
            entry_count,
            section_count,
        } = IndexHead::decode(&mut r)?;
        let (entry_count, section_count) = (entry_count as usize, section_count as usize);
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
            let entry_at = r.offset();
            let e = IndexEntry::decode(&mut r)?;
            if last_offset.is_some_and(|o| e.offset <= o) || e.offset >= covered_len {
                // The entry's offset field: after its seq and max_ts_before.
                return Err(r.error_at(
                    entry_at + 16,
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
        let span = (first_seq, record_count);
        check_sections(&sections, &entries, min_ts, max_ts, span, r.offset())?;
        Ok((
            Index {
                compat_flags,
                key_id,
                org,
                segment,
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

impl Index {
    /// The block time bounds (section type 1), one `(min, max)` per entry, if present.
    /// [`Index::decode`] has checked it; an index built in memory is checked here.
    pub fn block_times(&self) -> Result<Option<Vec<(Timestamp, Timestamp)>>, DecodeError> {
        match self.sections.iter().find(|s| s.kind == SECTION_BLOCK_TIMES) {
            None => Ok(None),
            Some(s) => decode_block_times(&s.bytes, self.entries.len(), 0).map(Some),
        }
    }

    /// The user marks (section type 3), one per covered record, if present.
    pub fn user_marks(&self) -> Result<Option<Vec<u16>>, DecodeError> {
        match self.sections.iter().find(|s| s.kind == SECTION_USER_MARKS) {
            None => Ok(None),
            Some(s) => {
                let span = (self.first_seq, self.record_count);
                check_mark_entries(self.entries.iter().map(|e| e.seq), span, 0)?;
                decode_user_marks(&s.bytes, self.record_count, 0).map(Some)
            }
        }
    }

    /// The block filters (section type 2), if present.
    pub fn block_filters(&self) -> Result<Option<BlockFilters>, DecodeError> {
        match self
            .sections
            .iter()
            .find(|s| s.kind == SECTION_BLOCK_FILTERS)
        {
            None => Ok(None),
            Some(s) => BlockFilters::decode(&s.bytes, self.entries.len(), 0).map(Some),
        }
    }
}

/// Checks the sections this build understands; unknown types are skipped.
fn check_sections(
    sections: &[Section],
    entries: &[IndexEntry],
    min_ts: Timestamp,
    max_ts: Timestamp,
    (first_seq, record_count): (u64, u64),
    at: u64,
) -> Result<(), DecodeError> {
    let err = |field, why| DecodeError {
        structure: STRUCTURE,
        field,
        offset: at,
        kind: DecodeErrorKind::Invalid(why),
    };
    for kind in [
        SECTION_BLOCK_TIMES,
        SECTION_BLOCK_FILTERS,
        SECTION_USER_MARKS,
    ] {
        if sections.iter().filter(|s| s.kind == kind).count() > 1 {
            return Err(err("section.type", "a section type appears twice"));
        }
    }
    for s in sections {
        match s.kind {
            SECTION_BLOCK_TIMES => {
                let times = decode_block_times(&s.bytes, entries.len(), at)?;
                // The bounds must agree with the entries' running maximum and the totals.
                let mut running = Timestamp(i64::MIN);
                let (mut lo, mut hi) = (Timestamp(i64::MAX), Timestamp(i64::MIN));
                for (e, (bmin, bmax)) in entries.iter().zip(&times) {
                    if e.max_ts_before != running {
                        return Err(err(
                            "block_times",
                            "block bounds disagree with the entries' max_ts_before",
                        ));
                    }
                    running = running.max(*bmax);
                    lo = lo.min(*bmin);
                    hi = hi.max(*bmax);
                }
                if !entries.is_empty() && (lo != min_ts || hi != max_ts) {
                    return Err(err(
                        "block_times",
                        "block bounds disagree with min_ts/max_ts",
                    ));
                }
            }
            SECTION_BLOCK_FILTERS => {
                BlockFilters::decode(&s.bytes, entries.len(), at)?;
            }
            SECTION_USER_MARKS => {
                let span = (first_seq, record_count);
                check_mark_entries(entries.iter().map(|e| e.seq), span, at)?;
                decode_user_marks(&s.bytes, record_count, at)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks what section 3 (FORMAT.md §3.3) needs of the entries to find a block's marks:
/// their seqs strictly increase from `first_seq` and stay below `first_seq + record_count`,
/// and there are entries exactly when there are records.
pub(crate) fn check_mark_entries(
    seqs: impl IntoIterator<Item = u64>,
    span: (u64, u64),
    at: u64,
) -> Result<(), DecodeError> {
    let mut run = SeqRun::new(span);
    seqs.into_iter().for_each(|s| run.push(s));
    run.finish(at)
}

/// [`check_mark_entries`] one entry at a time.
pub(crate) struct SeqRun {
    first: u64,
    end: Option<u64>,
    last: Option<u64>,
    records: u64,
    ok: bool,
}

impl SeqRun {
    /// For an index of `record_count` records from `first_seq`.
    pub fn new((first_seq, record_count): (u64, u64)) -> SeqRun {
        SeqRun {
            first: first_seq,
            end: first_seq.checked_add(record_count),
            last: None,
            records: record_count,
            ok: true,
        }
    }

    /// The next entry's seq.
    pub fn push(&mut self, seq: u64) {
        let next = match self.last {
            None => seq == self.first,
            Some(l) => seq > l,
        };
        self.ok &= next && self.end.is_some_and(|e| seq < e);
        self.last = Some(seq);
    }

    /// Whether every entry was in order, and there were entries exactly when there are
    /// records; `at` is where to report it.
    pub fn finish(self, at: u64) -> Result<(), DecodeError> {
        if self.ok && self.end.is_some() && self.last.is_none() == (self.records == 0) {
            return Ok(());
        }
        Err(DecodeError {
            structure: STRUCTURE,
            field: "user_marks",
            offset: at,
            kind: DecodeErrorKind::Invalid(
                "the entries' seqs do not run from first_seq through the records counted",
            ),
        })
    }
}

/// Checks a user-mark section's header (scheme 1, reserved 0); `at` is its file offset.
pub(crate) fn check_marks_header(
    header: [u8; MARKS_HEADER_LEN],
    at: u64,
) -> Result<(), DecodeError> {
    let [scheme, rest @ ..] = header;
    if scheme != USER_MARK_SCHEME {
        return Err(DecodeError {
            structure: STRUCTURE,
            field: "user_marks.scheme",
            offset: at,
            kind: DecodeErrorKind::Invalid("unknown user-mark scheme"),
        });
    }
    if rest != [0; MARKS_HEADER_LEN - 1] {
        return Err(DecodeError {
            structure: STRUCTURE,
            field: "user_marks.reserved",
            offset: at + 1,
            kind: DecodeErrorKind::Invalid("reserved bytes must be zero"),
        });
    }
    Ok(())
}

/// The bytes of a user-mark section for `record_count` records.
pub fn user_marks_len(record_count: u64) -> Option<u64> {
    record_count
        .checked_mul(MARK_LEN as u64)?
        .checked_add(MARKS_HEADER_LEN as u64)
}

/// Decodes a user-mark section (FORMAT.md §3.3) for `record_count` records.
pub fn decode_user_marks(
    bytes: &[u8],
    record_count: u64,
    at: u64,
) -> Result<Vec<u16>, DecodeError> {
    if user_marks_len(record_count) != Some(bytes.len() as u64) {
        let want = user_marks_len(record_count).unwrap_or(u64::MAX);
        return Err(DecodeError {
            structure: STRUCTURE,
            field: "user_marks",
            offset: at,
            kind: DecodeErrorKind::BadLength {
                found: bytes.len() as u64,
                min: want,
                max: want,
            },
        });
    }
    let mut r = Reader::new(bytes, at, STRUCTURE);
    check_marks_header(r.array("user_marks")?, at)?;
    Ok(decode_marks(r.take(r.remaining(), "user_marks")?))
}

/// Marks from their little-endian bytes (a whole number of them).
pub(crate) fn decode_marks(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(MARK_LEN)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect()
}

/// Encodes the user-mark section.
pub fn encode_user_marks(marks: &[u16]) -> Section {
    let mut bytes = Vec::with_capacity(MARKS_HEADER_LEN + marks.len() * MARK_LEN);
    bytes.extend_from_slice(&[USER_MARK_SCHEME, 0, 0, 0]);
    for m in marks {
        bytes.extend_from_slice(&m.to_le_bytes());
    }
    Section {
        kind: SECTION_USER_MARKS,
        bytes,
    }
}

/// Encodes the block-times section.
pub fn encode_block_times(times: &[(Timestamp, Timestamp)]) -> Section {
    let mut bytes = Vec::with_capacity(times.len() * 16);
    for (lo, hi) in times {
        bytes.extend_from_slice(&encode_block_time(*lo, *hi));
    }
    Section {
        kind: SECTION_BLOCK_TIMES,
        bytes,
    }
}

/// Decodes a block-times section for `n` entries.
pub fn decode_block_times(
    bytes: &[u8],
    n: usize,
    at: u64,
) -> Result<Vec<(Timestamp, Timestamp)>, DecodeError> {
    if Some(bytes.len()) != n.checked_mul(16) {
        return Err(DecodeError {
            structure: STRUCTURE,
            field: "block_times",
            offset: at,
            kind: DecodeErrorKind::BadLength {
                found: bytes.len() as u64,
                min: (n * 16) as u64,
                max: (n * 16) as u64,
            },
        });
    }
    let mut r = Reader::new(bytes, at, STRUCTURE);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let block_at = r.offset();
        let lo = Timestamp(r.i64("block_times.min_ts")?);
        let hi = Timestamp(r.i64("block_times.max_ts")?);
        if lo > hi {
            return Err(r.error_at(
                block_at,
                "block_times",
                DecodeErrorKind::Invalid("block min_ts above max_ts"),
            ));
        }
        out.push((lo, hi));
    }
    Ok(out)
}

/// How the filters of a block-filter section are probed (FORMAT.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probing {
    /// The hash scheme: 1 or 2.
    pub scheme: u8,
    /// Probes per term, 1..=16.
    pub k: u8,
}

impl Probing {
    /// How the writer probes; it extends only filters probed so.
    pub const WRITER: Probing = Probing {
        scheme: FILTER_HASH_SCHEME,
        k: FILTER_K,
    };

    /// The section header these stand for (hash scheme, k, reserved).
    pub fn header(self) -> [u8; FILTER_HEADER_LEN] {
        [self.scheme, self.k, 0, 0]
    }

    /// Checks a section header's scheme and `k`; `at` is the header's file offset.
    pub(crate) fn check(scheme: u8, k: u8, at: u64) -> Result<Probing, DecodeError> {
        let error = |field, offset, kind| DecodeError {
            structure: STRUCTURE,
            field,
            offset,
            kind,
        };
        if !(1..=2).contains(&scheme) {
            return Err(error(
                "block_filters.hash_scheme",
                at,
                DecodeErrorKind::Invalid("unknown filter hash scheme"),
            ));
        }
        if !(1..=16).contains(&k) {
            return Err(error(
                "block_filters.k",
                at + 1,
                DecodeErrorKind::BadLength {
                    found: u64::from(k),
                    min: 1,
                    max: 16,
                },
            ));
        }
        Ok(Probing { scheme, k })
    }

    /// Scheme 2's probes: salted per block, congruential steps. Decoding admits schemes 1
    /// and 2 only; any other value built by hand probes as 2.
    fn salted(self) -> bool {
        self.scheme != 1
    }
}

/// The decoded block filters: one Bloom filter per entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFilters {
    /// How the filters are probed.
    pub probing: Probing,
    /// The block (entry) number of the first filter: 0 for a whole section, the group's
    /// first block for a group's filters. Scheme 2 salts the probes of each block with it.
    pub first: u64,
    /// Every filter's bits, back to back.
    pub bits: Vec<u8>,
    /// Filter `i` is `bits[ends[i-1]..ends[i]]` (`ends[-1]` = 0).
    pub ends: Vec<u32>,
}

impl BlockFilters {
    /// Decodes a block-filters section for `n` entries.
    pub fn decode(bytes: &[u8], n: usize, at: u64) -> Result<BlockFilters, DecodeError> {
        let mut r = Reader::new(bytes, at, STRUCTURE);
        let scheme = r.u8("block_filters.hash_scheme")?;
        let k = r.u8("block_filters.k")?;
        let probing = Probing::check(scheme, k, at)?;
        if r.u16("block_filters.reserved")? != 0 {
            return Err(r.error_in_last(
                "block_filters.reserved",
                DecodeErrorKind::Invalid("reserved bytes must be zero"),
            ));
        }
        Self::filters(r, n, probing, 0)
    }

    /// Decodes the `n` filters of blocks `first..first + n`, probed as `probing` says (a run
    /// of section 2 after its header), which must fill `bytes` exactly; `at` is the file
    /// offset of `bytes`.
    pub(crate) fn decode_filters(
        bytes: &[u8],
        n: usize,
        probing: Probing,
        first: u64,
        at: u64,
    ) -> Result<BlockFilters, DecodeError> {
        Self::filters(Reader::new(bytes, at, STRUCTURE), n, probing, first)
    }

    fn filters(
        mut r: Reader<'_>,
        n: usize,
        probing: Probing,
        first: u64,
    ) -> Result<BlockFilters, DecodeError> {
        if n > r.remaining() {
            return Err(r.error(
                "block_filters",
                DecodeErrorKind::BadLength {
                    found: n as u64,
                    min: 0,
                    max: r.remaining() as u64,
                },
            ));
        }
        let mut bits = Vec::with_capacity(r.remaining().saturating_sub(n));
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n {
            let f = r.bytes("block_filters.filter")?;
            bits.extend_from_slice(f);
            ends.push(u32::try_from(bits.len()).map_err(|_| {
                r.error(
                    "block_filters",
                    DecodeErrorKind::Invalid("filters exceed 4 GiB"),
                )
            })?);
        }
        r.finish("end of block_filters")?;
        Ok(BlockFilters {
            probing,
            first,
            bits,
            ends,
        })
    }

    /// The filter bits of block `i` (empty: no filter).
    pub fn filter(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(p) => self.ends.get(p).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.bits
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// Whether the `i`-th block of these filters (block `first + i`) may hold every one of
    /// `terms`.
    pub fn may_contain_all(&self, i: usize, terms: &[TermProbe]) -> bool {
        let f = self.filter(i);
        let block = self.first.wrapping_add(i as u64);
        terms.iter().all(|t| t.may_be_in(f, self.probing, block))
    }
}

/// Field codes of filter terms (FORMAT.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TermField {
    /// `user_id`.
    User = 1,
    /// The whole `action`.
    Action = 2,
    /// A proper dot-prefix of the action (`booking` of `booking.created`).
    ActionPrefix = 3,
    /// `resource_type`.
    ResourceType = 4,
    /// `resource_id`.
    ResourceId = 5,
    /// `trace_id`.
    Trace = 6,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
/// Multiplier of scheme 2's probe sequence (Steele and Vigna, "Computationally easy,
/// spectrally good multipliers for congruential pseudorandom number generators", 2021).
const PROBE_LCG: u64 = 0xd134_2543_de82_ef95;

/// Scheme 2's salt of block `i`: `(i + 1) · GOLDEN` (a Weyl sequence).
fn block_salt(i: u64) -> u64 {
    GOLDEN.wrapping_mul(i.wrapping_add(1))
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hash of a term: FNV-1a over the field code and the value's bytes.
pub fn term_hash(field: TermField, value: &[u8]) -> u64 {
    let mut h = (FNV_OFFSET ^ u64::from(field as u8)).wrapping_mul(FNV_PRIME);
    for &b in value {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Salt of the user mark's hash, so that a mark does not repeat the filter probes' bits.
const MARK_SALT: u64 = 0x6a09_e667_f3bc_c909;

/// The user mark (FORMAT.md §3.3) of a record with `user_id`: [`MARK_NO_USER`] without one,
/// else 16 bits of its term hash, never [`MARK_NO_USER`] or [`MARK_UNKNOWN`].
pub fn user_mark(user_id: Option<&[u8]>) -> u16 {
    match user_id {
        None => MARK_NO_USER,
        Some(u) => {
            let m = (mix64(term_hash(TermField::User, u) ^ MARK_SALT) >> 48) as u16;
            if m <= MARK_UNKNOWN { m + 2 } else { m }
        }
    }
}

/// A term's probe positions, computed once per query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermProbe {
    h1: u64,
    h2: u64,
}

impl TermProbe {
    /// Probe of a term hash.
    pub fn new(hash: u64) -> TermProbe {
        TermProbe {
            h1: mix64(hash),
            h2: mix64(hash ^ GOLDEN) | 1,
        }
    }

    /// The bits, of block `block`'s `m`, that the term's probes set or test.
    ///
    /// Scheme 1 had two faults, both measured on the reference workload
    /// (BENCHMARKS.md, "Block filters: scheme 2"). It steps by `h2` (double hashing): when
    /// `h2 · m / 2^64` falls near a fraction with a small denominator, the probes land on
    /// a few bits only. And every block probes a term at the same places for the same `m`,
    /// so a term whose bits coincide with those of the terms nearly every block holds
    /// (common actions, resource types) passes nearly every filter. Per value, false
    /// positives ranged up to 43 % against 0.3 % designed. Scheme 2 salts the start with
    /// the block number and steps by a congruential sequence. The price: whether a probe's
    /// bit is set no longer repeats from block to block, so [`TermProbe::may_be_in`] tests
    /// every probe without branching.
    fn bits(self, m: u64, probing: Probing, block: u64) -> impl Iterator<Item = u64> {
        let lcg = probing.salted();
        let mut x = if lcg {
            self.h1 ^ block_salt(block)
        } else {
            self.h1
        };
        (0..probing.k).map(move |_| {
            let b = ((u128::from(x) * u128::from(m)) >> 64) as u64;
            x = if lcg {
                x.wrapping_mul(PROBE_LCG).wrapping_add(self.h2)
            } else {
                x.wrapping_add(self.h2)
            };
            b
        })
    }

    /// Whether the term may be in `filter`, block `block`'s, probed as `probing` says
    /// (always true for an empty filter).
    pub fn may_be_in(self, filter: &[u8], probing: Probing, block: u64) -> bool {
        if filter.is_empty() {
            return true;
        }
        let m = filter.len() as u64 * 8;
        let set = |b: u64| {
            filter
                .get((b / 8) as usize)
                .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
        };
        let mut probes = self.bits(m, probing, block);
        if !probing.salted() {
            return probes.all(set);
        }
        // Every probe is tested, without a branch between them: under scheme 2 a probe's bit
        // is set or clear at random from block to block (a bit is set with probability
        // ~0.45), so stopping at the first clear one mispredicts on most blocks (measured on
        // rare users: this took back about a third of scheme 2's extra time).
        probes.fold(true, |all, b| all & set(b))
    }
}

/// Appends block `block`'s filter (varint length, bits) for the term hashes in `terms`
/// (deduplicated here), sized at [`FILTER_BITS_PER_TERM`] bits per distinct term and probed
/// as the writer probes ([`Probing::WRITER`]).
pub fn encode_filter(terms: &mut Vec<u64>, block: u64, out: &mut Vec<u8>) {
    encode_filter_probed(terms, Probing::WRITER, block, out);
}

/// [`encode_filter`], probed as `probing` says (tests of older schemes).
pub(crate) fn encode_filter_probed(
    terms: &mut Vec<u64>,
    probing: Probing,
    block: u64,
    out: &mut Vec<u8>,
) {
    terms.sort_unstable();
    terms.dedup();
    let n = (terms.len() * FILTER_BITS_PER_TERM).div_ceil(8).max(1);
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    super::codec::put_varint(out, n);
    let start = out.len();
    out.resize(start + n as usize, 0);
    let Some(bits) = out.get_mut(start..) else {
        return;
    };
    let m = u64::from(n) * 8;
    for &t in terms.iter() {
        for b in TermProbe::new(t).bits(m, probing, block) {
            if let Some(byte) = bits.get_mut((b / 8) as usize) {
                *byte |= 1 << (b % 8);
            }
        }
    }
}

/// The indexed fields of a sealed event body, as raw bytes (not checked for UTF-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFields<'a> {
    /// `user_id`, if present.
    pub user_id: Option<&'a [u8]>,
    /// `action`.
    pub action: &'a [u8],
    /// `resource_type`.
    pub resource_type: &'a [u8],
    /// `resource_id`.
    pub resource_id: &'a [u8],
    /// `trace_id`, if present.
    pub trace_id: Option<&'a [u8]>,
}

impl<'a> KeyFields<'a> {
    /// Reads the leading fields of a sealed body (FORMAT.md §2.3) without decoding the rest.
    pub fn parse(sealed: &'a [u8]) -> Result<KeyFields<'a>, DecodeError> {
        let mut r = Reader::new(sealed, 0, "event body");
        let flags = r.u8("flags")?;
        let user_id = if flags & 1 != 0 {
            Some(r.bytes("user_id")?)
        } else {
            None
        };
        let action = r.bytes("action")?;
        let resource_type = r.bytes("resource_type")?;
        let resource_id = r.bytes("resource_id")?;
        let trace_id = if flags & 2 != 0 {
            Some(r.bytes("trace_id")?)
        } else {
            None
        };
        Ok(KeyFields {
            user_id,
            action,
            resource_type,
            resource_id,
            trace_id,
        })
    }

    /// The record's user mark (FORMAT.md §3.3).
    pub fn user_mark(&self) -> u16 {
        user_mark(self.user_id)
    }

    /// Appends the hashes of this record's filter terms.
    pub fn terms(&self, out: &mut Vec<u64>) {
        self.each_term(|h| out.push(h));
    }

    /// Hands the hashes of this record's filter terms to `push`, in [`KeyFields::terms`]
    /// order.
    pub fn each_term(&self, mut push: impl FnMut(u64)) {
        if let Some(u) = self.user_id {
            push(term_hash(TermField::User, u));
        }
        push(term_hash(TermField::Action, self.action));
        // Every proper dot-prefix in one pass: FNV-1a is a running state, so the hash of a
        // prefix is the state reached at its dot.
        let mut prefix = term_hash(TermField::ActionPrefix, b"");
        for &b in self.action {
            if b == b'.' {
                push(prefix);
            }
            prefix = (prefix ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        push(term_hash(TermField::ResourceType, self.resource_type));
        push(term_hash(TermField::ResourceId, self.resource_id));
        if let Some(t) = self.trace_id {
            push(term_hash(TermField::Trace, t));
        }
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

    /// The terms of FORMAT.md §3.2, spelled out one `term_hash` each.
    #[test]
    fn terms_are_the_specified_ones() {
        let k = KeyFields {
            user_id: Some(b"user-1"),
            action: b"channel_sync.booking.imported",
            resource_type: b"booking",
            resource_id: b"bk_1",
            trace_id: Some(b"abc"),
        };
        let mut got = Vec::new();
        k.terms(&mut got);
        assert_eq!(
            got,
            vec![
                term_hash(TermField::User, b"user-1"),
                term_hash(TermField::Action, b"channel_sync.booking.imported"),
                term_hash(TermField::ActionPrefix, b"channel_sync"),
                term_hash(TermField::ActionPrefix, b"channel_sync.booking"),
                term_hash(TermField::ResourceType, b"booking"),
                term_hash(TermField::ResourceId, b"bk_1"),
                term_hash(TermField::Trace, b"abc"),
            ]
        );
    }
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

    /// User marks (FORMAT.md §3.3) computed by an independent implementation of the text
    /// (Python, in the commit that added section 3).
    #[test]
    fn user_mark_golden_values() {
        assert_eq!(user_mark(Some(b"user-00107")), 932);
        assert_eq!(user_mark(Some(b"alice")), 56_846);
        assert_eq!(user_mark(Some(b"")), 62_165);
        assert_eq!(user_mark(None), MARK_NO_USER);
    }

    /// Section 3 decodes only with the right length, scheme, reserved bytes and entries.
    #[test]
    fn user_marks_section_is_checked() {
        let Some(mut i) = sample() else {
            panic!("sample index");
        };
        let marks: Vec<u16> = (0..150u16).collect();
        i.sections.push(encode_user_marks(&marks));
        let (d, _, _) = Index::decode(&encode(&i)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.user_marks(), Ok(Some(marks.clone())));
        let bad = |f: &dyn Fn(&mut Index)| {
            let mut j = i.clone();
            f(&mut j);
            Index::decode(&encode(&j)).is_err()
        };
        let marks_byte = |j: &mut Index, at: usize, v: u8| {
            let s = j.sections.iter_mut().find(|s| s.kind == SECTION_USER_MARKS);
            if let Some(b) = s.and_then(|s| s.bytes.get_mut(at)) {
                *b = v;
            }
        };
        assert!(bad(&|j| {
            if let Some(s) = j.sections.iter_mut().find(|s| s.kind == SECTION_USER_MARKS) {
                s.bytes.pop();
            }
        }));
        assert!(bad(&|j| marks_byte(j, 0, 2)));
        assert!(bad(&|j| marks_byte(j, 3, 1)));
        assert!(bad(&|j| j.record_count = 149));
        assert!(bad(&|j| j.first_seq = 1));
        for seq in [150, 0] {
            assert!(bad(&|j| {
                if let Some(e) = j.entries.get_mut(1) {
                    e.seq = seq;
                }
            }));
        }
        assert!(bad(&|j| j.sections.push(encode_user_marks(&marks))));
        assert!(!bad(&|_| {}));
    }

    /// Golden bytes of one block filter in each scheme, computed by an independent
    /// implementation of the FORMAT.md §3.2 text (Python, in the commits that added the
    /// sections and scheme 2).
    #[test]
    fn filter_golden_bytes() {
        let k = KeyFields {
            user_id: Some(b"user-1"),
            action: b"channel_sync.booking.imported",
            resource_type: b"booking",
            resource_id: b"bk_1",
            trace_id: Some(b"t1"),
        };
        assert_eq!(term_hash(TermField::User, b"user-1"), 0xcbf4_bcc6_5ebe_ae95);
        let mut terms = Vec::new();
        k.terms(&mut terms);
        assert_eq!(terms.len(), 7, "user, action, 2 prefixes, type, id, trace");
        let scheme_1 = Probing { scheme: 1, k: 7 };
        for (probing, block, golden) in [
            (scheme_1, 0, "0bd8c899a3aa1de88c990acb"),
            (scheme_1, 5, "0bd8c899a3aa1de88c990acb"),
            (Probing::WRITER, 0, "0b04c1528e0666ab858d6d49"),
            (Probing::WRITER, 5, "0b8f50a0a3bf18a4a1a44156"),
        ] {
            let mut out = Vec::new();
            encode_filter_probed(&mut terms.clone(), probing, block, &mut out);
            assert_eq!(
                crate::crypto::hex(&out),
                golden,
                "{probing:?}, block {block}"
            );
            let f = &out[1..];
            for (field, v) in [
                (TermField::User, &b"user-1"[..]),
                (TermField::ActionPrefix, b"channel_sync"),
                (TermField::ActionPrefix, b"channel_sync.booking"),
                (TermField::Trace, b"t1"),
            ] {
                assert!(TermProbe::new(term_hash(field, v)).may_be_in(f, probing, block));
            }
            assert!(
                TermProbe::new(0).may_be_in(&[], probing, block),
                "empty filter = no filter"
            );
        }
        let mut out = Vec::new();
        encode_filter(&mut terms, 5, &mut out);
        assert_eq!(crate::crypto::hex(&out), "0b8f50a0a3bf18a4a1a44156");
    }

    fn with_sections(i: &mut Index) {
        let times = vec![
            (Timestamp(50), Timestamp(90)),
            (Timestamp(5), Timestamp(500)),
        ];
        i.sections = vec![encode_block_times(&times)];
        let mut f = Probing::WRITER.header().to_vec();
        encode_filter(&mut vec![1, 2, 3], 0, &mut f);
        super::super::codec::put_varint(&mut f, 0);
        i.sections.push(Section {
            kind: SECTION_BLOCK_FILTERS,
            bytes: f,
        });
        i.sections.push(Section {
            kind: 77,
            bytes: vec![9; 5],
        });
    }

    #[test]
    fn query_sections_round_trip() {
        let mut i = sample().unwrap();
        with_sections(&mut i);
        let bytes = encode(&i);
        let (d, _, _) = Index::decode(&bytes).unwrap();
        assert_eq!(d, i);
        assert_eq!(
            d.block_times().unwrap().unwrap(),
            vec![
                (Timestamp(50), Timestamp(90)),
                (Timestamp(5), Timestamp(500))
            ]
        );
        let f = d.block_filters().unwrap().unwrap();
        assert_eq!(f.ends.len(), 2);
        assert_eq!(f.filter(1), &[] as &[u8]);
        assert!(f.may_contain_all(0, &[TermProbe::new(2)]));
        assert!(f.may_contain_all(1, &[TermProbe::new(12345)]));
    }

    #[test]
    fn bad_query_sections_are_rejected() {
        type Mutation = Box<dyn Fn(&mut Index)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "times length",
                Box::new(|i| i.sections[0].bytes.pop().map(drop).unwrap_or(())),
            ),
            (
                "min above max",
                Box::new(|i| {
                    i.sections[0] = encode_block_times(&[
                        (Timestamp(91), Timestamp(90)),
                        (Timestamp(5), Timestamp(500)),
                    ])
                }),
            ),
            (
                "disagrees with max_ts_before",
                Box::new(|i| {
                    i.sections[0] = encode_block_times(&[
                        (Timestamp(50), Timestamp(91)),
                        (Timestamp(5), Timestamp(500)),
                    ])
                }),
            ),
            (
                "disagrees with min_ts",
                Box::new(|i| {
                    i.sections[0] = encode_block_times(&[
                        (Timestamp(50), Timestamp(90)),
                        (Timestamp(6), Timestamp(500)),
                    ])
                }),
            ),
            (
                "duplicate",
                Box::new(|i| i.sections.push(i.sections[0].clone())),
            ),
            ("bad k", Box::new(|i| i.sections[1].bytes[1] = 0)),
            ("scheme 0", Box::new(|i| i.sections[1].bytes[0] = 0)),
            ("scheme 3", Box::new(|i| i.sections[1].bytes[0] = 3)),
            ("reserved", Box::new(|i| i.sections[1].bytes[2] = 1)),
            ("trailing", Box::new(|i| i.sections[1].bytes.push(0))),
            ("short", Box::new(|i| i.sections[1].bytes.truncate(5))),
        ];
        for (what, mutate) in cases {
            let mut i = sample().unwrap();
            with_sections(&mut i);
            mutate(&mut i);
            assert!(Index::decode(&encode(&i)).is_err(), "{what}");
        }
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
