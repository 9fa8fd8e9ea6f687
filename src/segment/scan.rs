//! Walking the records of a segment file with positioned reads, and classifying damage.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::crypto::{self, Hash};
use crate::error::IntegrityKind;
use crate::format::DecodeError;
use crate::format::codec::put_varint;
use crate::format::index::{
    FILTER_HASH_SCHEME, FILTER_HEADER_LEN, FILTER_K, Index, IndexEntry, KeyFields,
    SECTION_BLOCK_FILTERS, Section, encode_block_times, encode_filter,
};
use crate::format::record::{self, FrameError, MAX_FRAME_LEN, MIN_FRAME_LEN, RawRecord};
use crate::time::Timestamp;

const CHUNK: usize = 1 << 20;

/// A read window over a file: positioned reads into a reusable buffer.
pub(crate) struct FileWindow {
    file: File,
    end: u64,
    buf: Vec<u8>,
    buf_off: u64,
}

impl FileWindow {
    /// A window over `file[..end]`.
    pub fn new(file: File, end: u64) -> Self {
        FileWindow {
            file,
            end,
            buf: Vec::new(),
            buf_off: 0,
        }
    }

    /// Gives the file back.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Readable length.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Up to `n` bytes at `off` (fewer only where the window ends).
    pub fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let want_end = off.saturating_add(n as u64).min(self.end);
        let have_end = self.buf_off + self.buf.len() as u64;
        if off < self.buf_off || want_end > have_end {
            let len = (self.end.saturating_sub(off)).min(n.max(CHUNK) as u64) as usize;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.buf_off = off;
        }
        let start = (off - self.buf_off) as usize;
        let stop = (want_end.max(off) - self.buf_off) as usize;
        Ok(self.buf.get(start..stop).unwrap_or_default())
    }

    /// The frame at `off`.
    pub fn frame(&mut self, off: u64) -> io::Result<Result<RawRecord<'_>, FrameError>> {
        let head = self.get(off, 4)?;
        let len = record::peek_frame_len(head).unwrap_or(0);
        let n = if (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
            len as usize
        } else {
            4
        };
        let bytes = self.get(off, n)?;
        Ok(record::decode_frame(bytes, off))
    }
}

/// One contiguous stretch of a segment that did not read as valid records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DamageRange {
    /// First damaged byte.
    pub start: u64,
    /// One past the last damaged byte (where the next valid record starts, or the end).
    pub end: u64,
    /// Why the record at `start` was rejected.
    pub cause: DamageCause,
}

/// Why a stretch was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DamageCause {
    /// The frame runs past the end of the file.
    Incomplete,
    /// Length or CRC check failed.
    Corrupt(DecodeError),
    /// A CRC-valid record breaks the chain or the sequence (never crash damage).
    Integrity { seq: u64, kind: IntegrityKind },
}

/// Running state of a scan, also what the writer continues from.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    /// Chain hash after the last valid record (genesis if none).
    pub head: Hash,
    /// Seq the next record should have.
    pub next_seq: u64,
    /// Valid records seen.
    pub count: u64,
    /// End offset of the last valid record.
    pub valid_end: u64,
    /// Largest seq seen in a valid record.
    pub max_seq: Option<u64>,
    /// Index being rebuilt.
    pub index: IndexBuilder,
}

/// Sparse index entries, and the per-block time bounds and term filters of the index's
/// query sections (FORMAT.md §3.1, §3.2), as records go by.
#[derive(Clone, Debug)]
pub(crate) struct IndexBuilder {
    pub interval: u32,
    pub entries: Vec<IndexEntry>,
    pub next_boundary: u64,
    pub min_ts: Timestamp,
    pub max_ts: Timestamp,
    /// `(min, max)` occurred_at of each entry's block; the last is the open block.
    pub times: Vec<(Timestamp, Timestamp)>,
    /// Encoded filters (varint length, bits) of every block but the open one.
    pub filters: Vec<u8>,
    /// Term hashes of the open block.
    pub open_terms: Vec<u64>,
    /// The open block holds a record whose body did not parse: it gets no filter.
    pub open_unfiltered: bool,
    scratch: Vec<u64>,
}

impl IndexBuilder {
    pub fn new(interval: u32) -> Self {
        IndexBuilder {
            interval,
            entries: Vec::new(),
            next_boundary: 0,
            min_ts: Timestamp(i64::MAX),
            max_ts: Timestamp(i64::MIN),
            times: Vec::new(),
            filters: Vec::new(),
            open_terms: Vec::new(),
            open_unfiltered: false,
            scratch: Vec::new(),
        }
    }

    /// Notes a record starting at `offset` whose sealed body is `sealed`.
    pub fn observe(&mut self, offset: u64, seq: u64, ts: Timestamp, sealed: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let parsed = KeyFields::parse(sealed).map(|k| k.terms(&mut scratch));
        self.observe_terms(
            offset,
            seq,
            ts,
            parsed.is_ok().then_some(scratch.as_slice()),
        );
        self.scratch = scratch;
    }

    /// Notes a record whose filter term hashes are `terms` (`None`: its body did not parse).
    pub fn observe_terms(&mut self, offset: u64, seq: u64, ts: Timestamp, terms: Option<&[u64]>) {
        if offset >= self.next_boundary {
            if !self.entries.is_empty() {
                self.close_block();
            }
            self.entries.push(IndexEntry {
                seq,
                max_ts_before: self.max_ts,
                offset,
            });
            self.times.push((ts, ts));
            let i = u64::from(self.interval.max(1));
            self.next_boundary = (offset / i + 1) * i;
        }
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        if let Some((lo, hi)) = self.times.last_mut() {
            *lo = (*lo).min(ts);
            *hi = (*hi).max(ts);
        }
        match terms {
            Some(t) => self.open_terms.extend_from_slice(t),
            None => self.open_unfiltered = true,
        }
    }

    fn close_block(&mut self) {
        encode_open_filter(
            &mut self.open_terms,
            self.open_unfiltered,
            &mut self.filters,
        );
        self.open_terms.clear();
        self.open_unfiltered = false;
    }

    /// The query sections for the records seen so far.
    pub fn sections(&self) -> Vec<Section> {
        let mut filters = Vec::with_capacity(FILTER_HEADER_LEN + self.filters.len() + 64);
        filters.extend_from_slice(&[FILTER_HASH_SCHEME, FILTER_K, 0, 0]);
        filters.extend_from_slice(&self.filters);
        if !self.entries.is_empty() {
            let mut open = self.open_terms.clone();
            encode_open_filter(&mut open, self.open_unfiltered, &mut filters);
        }
        vec![
            encode_block_times(&self.times),
            Section {
                kind: SECTION_BLOCK_FILTERS,
                bytes: filters,
            },
        ]
    }

    /// Resumes from a checked index whose covered records `win` holds: closed blocks come
    /// from its sections, the open (last) block's terms are read back from its records.
    /// `None` if the index has no query sections (an older writer) or the records of the
    /// open block do not read back: the caller then rebuilds from the records.
    pub fn resume(index: &Index, win: &mut FileWindow) -> io::Result<Option<IndexBuilder>> {
        let (Ok(Some(times)), Ok(Some(filters))) = (index.block_times(), index.block_filters())
        else {
            return Ok(None);
        };
        let i = u64::from(index.interval.max(1));
        let mut b = IndexBuilder {
            interval: index.interval,
            entries: index.entries.clone(),
            next_boundary: index.entries.last().map_or(0, |e| (e.offset / i + 1) * i),
            min_ts: index.min_ts,
            max_ts: index.max_ts,
            times,
            filters: Vec::new(),
            open_terms: Vec::new(),
            open_unfiltered: false,
            scratch: Vec::new(),
        };
        let Some(last) = index.entries.last() else {
            return Ok(Some(b));
        };
        for block in 0..index.entries.len() - 1 {
            let f = filters.filter(block);
            put_varint(&mut b.filters, u32::try_from(f.len()).unwrap_or(u32::MAX));
            b.filters.extend_from_slice(f);
        }
        let mut off = last.offset;
        while off < index.covered_len {
            match win.frame(off)? {
                Ok(rec) => {
                    match KeyFields::parse(rec.sealed) {
                        Ok(k) => k.terms(&mut b.open_terms),
                        Err(_) => b.open_unfiltered = true,
                    }
                    off += rec.len();
                }
                Err(_) => return Ok(None),
            }
        }
        Ok((off == index.covered_len).then_some(b))
    }
}

fn encode_open_filter(terms: &mut Vec<u64>, unfiltered: bool, out: &mut Vec<u8>) {
    if unfiltered {
        put_varint(out, 0);
    } else {
        encode_filter(terms, out);
    }
}

/// Result of scanning a segment from some point to its end.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    pub tally: Tally,
    pub damage: Vec<DamageRange>,
}

impl ScanOutcome {
    /// Damage that is only a torn tail: one stretch of unreadable frames running to the
    /// end, with no integrity failures and no valid record after it.
    pub fn torn_tail(&self) -> Option<&DamageRange> {
        match self.damage.as_slice() {
            [d] if !matches!(d.cause, DamageCause::Integrity { .. })
                && d.start == self.tally.valid_end =>
            {
                Some(d)
            }
            _ => None,
        }
    }
}

/// Scans records from `start` to the window's end, continuing `tally`.
///
/// Verifies length, CRC, seq order and chain linkage (not tags: that needs keys and is the
/// job of verification). After a bad frame it searches forward for the next valid frame, so
/// every valid record is counted and every damaged stretch is reported.
pub(crate) fn scan(win: &mut FileWindow, start: u64, mut tally: Tally) -> io::Result<ScanOutcome> {
    let mut damage = Vec::new();
    let mut terms = Vec::new();
    let mut off = start;
    let end = win.end();
    while off < end {
        let outcome = match win.frame(off)? {
            Ok(rec) => {
                terms.clear();
                let parsed = KeyFields::parse(rec.sealed).map(|k| k.terms(&mut terms));
                Ok((
                    rec.fields,
                    rec.len(),
                    crypto::chain_hash(rec.chained_bytes()),
                    parsed.is_ok(),
                ))
            }
            Err(FrameError::Incomplete { .. }) => Err(DamageCause::Incomplete),
            Err(FrameError::Corrupt(e)) => Err(DamageCause::Corrupt(e)),
        };
        match outcome {
            Ok((fields, len, hash, parsed)) => {
                let mut problem = None;
                if fields.seq != tally.next_seq {
                    problem = Some(IntegrityKind::SeqMismatch {
                        expected: tally.next_seq,
                        found: fields.seq,
                    });
                } else if fields.prev != tally.head {
                    problem = Some(IntegrityKind::ChainBreak {
                        expected: tally.head,
                        found: fields.prev,
                    });
                }
                if let Some(kind) = problem {
                    damage.push(DamageRange {
                        start: off,
                        end: off + len,
                        cause: DamageCause::Integrity {
                            seq: fields.seq,
                            kind,
                        },
                    });
                }
                tally.index.observe_terms(
                    off,
                    fields.seq,
                    fields.occurred_at,
                    parsed.then_some(terms.as_slice()),
                );
                tally.head = hash;
                tally.next_seq = fields.seq.saturating_add(1);
                tally.count += 1;
                tally.max_seq = Some(tally.max_seq.map_or(fields.seq, |m| m.max(fields.seq)));
                off += len;
                tally.valid_end = off;
            }
            Err(cause) => {
                let next = resync(win, off + 1, tally.max_seq)?;
                let stop = next.unwrap_or(end);
                damage.push(DamageRange {
                    start: off,
                    end: stop,
                    cause,
                });
                if let Some(next) = next {
                    // Records after damage chain to a record we could not read: take the
                    // next valid record's own prev_hash and seq as the new baseline.
                    if let Ok(rec) = win.frame(next)? {
                        tally.head = rec.fields.prev;
                        tally.next_seq = rec.fields.seq;
                    }
                }
                off = stop;
            }
        }
    }
    Ok(ScanOutcome { tally, damage })
}

/// Finds the next offset ≥ `from` holding a CRC-valid frame whose seq is plausible after
/// `max_seq`. Cheap filters run first so garbage costs little more than reading it.
pub(crate) fn resync(
    win: &mut FileWindow,
    from: u64,
    max_seq: Option<u64>,
) -> io::Result<Option<u64>> {
    let end = win.end();
    let max_records = end.saturating_sub(from) / u64::from(MIN_FRAME_LEN) + 1;
    let mut p = from;
    while p + u64::from(MIN_FRAME_LEN) <= end {
        let plausible = {
            let head = win.get(p, 16)?;
            let len = record::peek_frame_len(head).unwrap_or(0);
            let seq = head
                .get(8..16)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len)
                && p + u64::from(len) <= end
                && match max_seq {
                    Some(m) => seq > m && seq - m <= max_records,
                    None => true,
                }
        };
        if plausible && win.frame(p)?.is_ok() {
            return Ok(Some(p));
        }
        p += 1;
    }
    Ok(None)
}
