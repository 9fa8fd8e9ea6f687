//! Walking the records of a segment file with positioned reads, and classifying damage.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::spill::{Spool, SpoolView};
use crate::crypto::{self, Hash, KeyId, KeyProvider, Signers, Tag};
use crate::error::{Error, IntegrityKind, Result};
use crate::event::OrgId;
use crate::format::DecodeError;
use crate::format::codec::put_varint;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::format::index::{
    ENTRY_LEN, FILTER_HEADER_LEN, IndexEntry, IndexHead, KeyFields, MARK_LEN, MARK_UNKNOWN,
    MARKS_HEADER_LEN, Probing, SECTION_BLOCK_FILTERS, SECTION_BLOCK_TIMES, SECTION_USER_MARKS,
    USER_MARK_SCHEME, encode_block_time, encode_filter, section_header,
};
use crate::format::record::{self, FrameError, MAX_FRAME_LEN, MIN_FRAME_LEN, RawRecord};
use crate::time::{Month, Timestamp};

const CHUNK: usize = 1 << 20;

/// Random access to a stretch of segment bytes by file offset: a [`FileWindow`] over a
/// file, or a [`MemWindow`] over bytes already read (the query's batch buffers). What
/// [`resync`] needs, so every reader searches for the next frame the same, linear way.
pub(crate) trait Window {
    /// One past the last readable offset.
    fn end(&self) -> u64;
    /// Up to `n` bytes at `off` (fewer only where the window ends).
    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]>;
    /// Exactly `buf.len()` bytes at `off`.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// The first offset at or after `off` that may hold written data: past a hole of a
    /// sparse file (which reads as zeros), or `off` itself where that is not known.
    fn data_from(&self, off: u64) -> io::Result<u64> {
        Ok(off)
    }

    /// The frame at `off`.
    fn frame(&mut self, off: u64) -> io::Result<Result<RawRecord<'_>, FrameError>> {
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

/// Segment bytes in memory: `bytes[0]` is file offset `base`.
pub(crate) struct MemWindow<'a> {
    /// File offset of the first byte.
    pub base: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl Window for MemWindow<'_> {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let start = off.saturating_sub(self.base).min(self.bytes.len() as u64) as usize;
        let stop = start.saturating_add(n).min(self.bytes.len());
        Ok(self.bytes.get(start..stop).unwrap_or_default())
    }

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let start = off.checked_sub(self.base).map(|s| s as usize);
        match start.and_then(|s| self.bytes.get(s..s.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
}

impl Window for FileWindow {
    fn end(&self) -> u64 {
        FileWindow::end(self)
    }

    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        FileWindow::get(self, off, n)
    }

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileWindow::read_exact_at(self, buf, off)
    }

    /// `lseek(SEEK_DATA)`: it moves the file's offset, which no read or write of a segment
    /// uses (they are all positioned). No data after `off` gives the window's end; a file
    /// system that cannot tell gives `off`.
    fn data_from(&self, off: u64) -> io::Result<u64> {
        match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(off)) {
            Ok(at) => Ok(at.max(off)),
            Err(rustix::io::Errno::NXIO) => Ok(self.end.max(off)),
            Err(_) => Ok(off),
        }
    }
}

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

    /// Reads exactly `buf.len()` bytes at `off`, bypassing the window's buffer.
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
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

    /// The frame at `off` ([`Window::frame`], callable without the trait in scope).
    pub fn frame(&mut self, off: u64) -> io::Result<Result<RawRecord<'_>, FrameError>> {
        <Self as Window>::frame(self, off)
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
#[derive(Debug)]
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

impl Tally {
    /// The state before a segment's first record: the chain at the genesis (SHA-256 of the
    /// header), seqs from the header's `first_seq`, nothing valid past the header.
    pub fn fresh(header: &SegmentHeader, genesis: Hash, index: IndexBuilder) -> Tally {
        Tally {
            head: genesis,
            next_seq: header.first_seq,
            count: 0,
            valid_end: SEGMENT_HEADER_LEN as u64,
            max_seq: None,
            index,
        }
    }

    /// The head of the index that describes what this tally has seen of the segment, as a
    /// writer writes it and recovery rebuilds it. `entry_count` and `section_count` are 0:
    /// they are set from the image when it is encoded.
    pub fn index_head(&self, header: &SegmentHeader, genesis: Hash, key_id: KeyId) -> IndexHead {
        IndexHead {
            compat_flags: 0,
            key_id,
            org: header.org.clone(),
            segment: header.id,
            interval: self.index.interval,
            segment_hash: genesis,
            covered_len: self.valid_end,
            record_count: self.count,
            first_seq: header.first_seq,
            min_ts: self.index.min_ts,
            max_ts: self.index.max_ts,
            head: self.head,
            entry_count: 0,
            section_count: 0,
        }
    }
}

/// Bytes of closed blocks an [`IndexBuilder`] keeps in memory before it moves them to its
/// spill files: ~2,900 blocks (~19,500 events of the reference workload, measured).
pub(crate) const INDEX_SPILL_LIMIT: usize = 256 * 1024;

#[cfg(test)]
thread_local! {
    /// Spill limit of the builders a test thread creates (see [`IndexBuilder::new`]).
    pub(crate) static TEST_SPILL_LIMIT: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
    /// Where the builders a test thread creates put their spill files, instead of the
    /// segment's directory (a missing directory makes every spill fail). Like
    /// `TEST_SPILL_LIMIT`, it does not reach builders created on other threads, such as
    /// those `Log::sync` and `Log::close` settle segments on.
    pub(crate) static TEST_SPILL_DIR: std::cell::RefCell<Option<PathBuf>> =
        const { std::cell::RefCell::new(None) };
}

/// The open (last) block: its entry and the time bounds of its records so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenBlock {
    pub entry: IndexEntry,
    pub min_ts: Timestamp,
    pub max_ts: Timestamp,
}

/// Sparse index entries, and the per-block time bounds and term filters of the index's
/// query sections (FORMAT.md §3.1, §3.2), as records go by.
///
/// Memory is bounded whatever the size of the segment: closed blocks are kept as the bytes
/// they take in the index file, in four [`Spool`]s (entries, block times, block filters,
/// and the user marks of every record),
/// and once those hold more than the spill limit in memory they are moved to unnamed
/// temporary files in the segment's directory. The index is then written by streaming
/// ([`IndexBuilder::image`], `index_file::write`), never assembled in memory.
///
/// A failed spill loses nothing: the bytes stay in memory, the next spill is tried when
/// twice as much is held, and the first failure is kept for [`IndexBuilder::take_spill_error`].
#[derive(Debug)]
pub(crate) struct IndexBuilder {
    pub interval: u32,
    next_boundary: u64,
    pub min_ts: Timestamp,
    pub max_ts: Timestamp,
    /// Entries of the closed blocks, 24 bytes each as in the index file.
    entries: Spool,
    /// `(min, max)` occurred_at of the closed blocks, 16 bytes each as in section 1.
    times: Spool,
    /// Encoded filters (varint length, bits) of the closed blocks, as in section 2.
    filters: Spool,
    /// User marks of every record so far, the open block's included, as in section 3.
    marks: Spool,
    /// The records' seqs have run on one by one, so a record's mark is found by its seq
    /// (FORMAT.md §3.3); after a gap the index is written without section 3.
    marks_ok: bool,
    /// The seq the next record must have for `marks_ok` to hold (`None`: any).
    marks_next: Option<u64>,
    /// Closed blocks.
    closed: u64,
    /// The open block, once there is a record.
    open: Option<OpenBlock>,
    /// Term hashes of the open block.
    open_terms: Vec<u64>,
    /// The open block holds a record whose body did not parse: it gets no filter.
    open_unfiltered: bool,
    /// Reused for encoding a closed block's filter.
    filter_buf: Vec<u8>,
    /// Where spill files go (the segment's directory).
    dir: PathBuf,
    spill_limit: usize,
    /// Bytes in memory at which the next spill is tried.
    spill_at: usize,
    spill_error: Option<Error>,
}

impl IndexBuilder {
    /// An empty builder whose spill files go to `dir`, with the default spill limit.
    pub fn new(interval: u32, dir: &Path) -> Self {
        #[cfg(test)]
        let test_dir = TEST_SPILL_DIR.with(|d| d.borrow().clone());
        #[cfg(test)]
        let dir = test_dir.as_deref().unwrap_or(dir);
        #[cfg(test)]
        let limit = TEST_SPILL_LIMIT
            .with(std::cell::Cell::get)
            .unwrap_or(INDEX_SPILL_LIMIT);
        #[cfg(not(test))]
        let limit = INDEX_SPILL_LIMIT;
        Self::with_spill_limit(interval, dir, limit)
    }

    /// An empty builder that keeps at most about `limit` bytes of closed blocks in memory
    /// (`usize::MAX`: everything).
    pub fn with_spill_limit(interval: u32, dir: &Path, limit: usize) -> Self {
        IndexBuilder {
            interval,
            next_boundary: 0,
            min_ts: Timestamp(i64::MAX),
            max_ts: Timestamp(i64::MIN),
            entries: Spool::default(),
            times: Spool::default(),
            filters: Spool::default(),
            marks: Spool::default(),
            marks_ok: true,
            marks_next: None,
            closed: 0,
            open: None,
            open_terms: Vec::new(),
            open_unfiltered: false,
            filter_buf: Vec::new(),
            dir: dir.to_path_buf(),
            spill_limit: limit,
            spill_at: limit,
            spill_error: None,
        }
    }

    /// Entries (blocks) so far, the open one included.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn entry_count(&self) -> u64 {
        self.closed + u64::from(self.open.is_some())
    }

    /// The first spill failure since the last call, if any. The builder lost nothing by it,
    /// but its memory is no longer bounded until a later spill succeeds.
    pub fn take_spill_error(&mut self) -> Option<Error> {
        self.spill_error.take()
    }

    /// Whether part of the index has moved to spill files (which hold file descriptors).
    pub fn has_spill_file(&self) -> bool {
        self.entries.has_file()
            || self.times.has_file()
            || self.filters.has_file()
            || self.marks.has_file()
    }

    /// Whether a spill failure is waiting to be reported ([`IndexBuilder::take_spill_error`]).
    pub fn has_spill_error(&self) -> bool {
        self.spill_error.is_some()
    }

    /// Heap bytes the builder holds: its closed blocks in memory, the open block's terms and
    /// its scratch buffer.
    pub fn held_bytes(&self) -> usize {
        self.entries.held_bytes()
            + self.times.held_bytes()
            + self.filters.held_bytes()
            + self.marks.held_bytes()
            + self.open_terms.capacity() * std::mem::size_of::<u64>()
            + self.filter_buf.capacity()
    }

    /// Gives back spare capacity, for a builder that will be kept idle (a parked writer's).
    pub fn shrink(&mut self) {
        self.entries.shrink();
        self.times.shrink();
        self.filters.shrink();
        self.marks.shrink();
        self.open_terms.shrink_to_fit();
        self.filter_buf = Vec::new();
    }

    /// Notes a record whose filter term hashes are `terms` and whose user mark is `mark`
    /// (`None`, [`MARK_UNKNOWN`]: its body did not parse).
    pub fn observe_terms(
        &mut self,
        offset: u64,
        seq: u64,
        ts: Timestamp,
        terms: Option<&[u64]>,
        mark: u16,
    ) {
        self.observe_span(offset, seq, (ts, ts), terms, mark);
    }

    /// [`IndexBuilder::observe_terms`] for a record whose time is only known to lie in
    /// `[lo, hi]`: its block's times (and the index's) are widened to hold all of it.
    pub fn observe_span(
        &mut self,
        offset: u64,
        seq: u64,
        (lo, hi): (Timestamp, Timestamp),
        terms: Option<&[u64]>,
        mark: u16,
    ) {
        if self.marks_next.is_some_and(|n| n != seq) {
            self.marks_ok = false;
        }
        self.marks_next = seq.checked_add(1);
        if self.marks_ok {
            self.marks.push(&mark.to_le_bytes());
        }
        let open = match self.open.as_mut() {
            Some(open) if offset < self.next_boundary => open,
            _ => {
                self.close_block();
                let i = u64::from(self.interval.max(1));
                self.next_boundary = (offset / i + 1) * i;
                self.open.insert(OpenBlock {
                    entry: IndexEntry {
                        seq,
                        max_ts_before: self.max_ts,
                        offset,
                    },
                    min_ts: lo,
                    max_ts: hi,
                })
            }
        };
        open.min_ts = open.min_ts.min(lo);
        open.max_ts = open.max_ts.max(hi);
        self.min_ts = self.min_ts.min(lo);
        self.max_ts = self.max_ts.max(hi);
        match terms {
            Some(t) => self.open_terms.extend_from_slice(t),
            None => self.open_unfiltered = true,
        }
    }

    /// Moves the open block, if any, to the closed ones.
    fn close_block(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let mut filter = std::mem::take(&mut self.filter_buf);
        filter.clear();
        encode_open_filter(
            &mut self.open_terms,
            self.open_unfiltered,
            self.closed,
            &mut filter,
        );
        self.push_closed(&open.entry, open.min_ts, open.max_ts, &filter);
        self.filter_buf = filter;
        self.open_terms.clear();
        self.open_unfiltered = false;
    }

    /// Appends one closed block (its encoded filter included).
    fn push_closed(&mut self, entry: &IndexEntry, min: Timestamp, max: Timestamp, filter: &[u8]) {
        self.entries.push(&entry.encode());
        self.times.push(&encode_block_time(min, max));
        self.filters.push(filter);
        self.closed += 1;
        self.maybe_spill();
    }

    /// Spills the closed blocks held in memory once they pass the limit.
    fn maybe_spill(&mut self) {
        let held = self.entries.mem_len()
            + self.times.mem_len()
            + self.filters.mem_len()
            + self.marks.mem_len();
        if held < self.spill_at {
            return;
        }
        let dir = &self.dir;
        let spilled = self
            .entries
            .spill(dir)
            .and_then(|()| self.times.spill(dir))
            .and_then(|()| self.filters.spill(dir))
            .and_then(|()| self.marks.spill(dir));
        match spilled {
            Ok(()) => self.spill_at = self.spill_limit,
            Err(e) => {
                self.spill_error.get_or_insert(e);
                self.spill_at = held.saturating_mul(2);
            }
        }
    }

    /// The index as of now, to be written out after the caller's lock is released: the
    /// spilled bytes are shared, the few in memory copied (bounded by the spill limit), and
    /// the open block's filter encoded.
    pub fn image(&self) -> IndexImage {
        let mut open_filter = Vec::new();
        if self.open.is_some() {
            let mut terms = self.open_terms.clone();
            encode_open_filter(
                &mut terms,
                self.open_unfiltered,
                self.closed,
                &mut open_filter,
            );
        }
        IndexImage {
            entries: self.entries.view(),
            times: self.times.view(),
            filters: self.filters.view(),
            marks: self.marks_ok.then(|| self.marks.view()),
            closed: self.closed,
            open: self.open,
            open_filter,
            dir: self.dir.clone(),
        }
    }

    /// Starts a builder that an index file being read will fill: [`IndexBuilder::resume_entry`],
    /// [`IndexBuilder::resume_time`] and [`IndexBuilder::resume_filter`] for each block in
    /// order (the three streams independently), then [`IndexBuilder::resume_open_block`].
    pub fn resuming(interval: u32, dir: &Path, min_ts: Timestamp, max_ts: Timestamp) -> Self {
        let mut b = Self::new(interval, dir);
        b.min_ts = min_ts;
        b.max_ts = max_ts;
        b
    }

    /// Resuming: the entry of the next block; `last` for the open block.
    pub fn resume_entry(&mut self, e: &IndexEntry, last: bool) {
        if last {
            let i = u64::from(self.interval.max(1));
            self.next_boundary = (e.offset / i + 1) * i;
            self.open = Some(OpenBlock {
                entry: *e,
                min_ts: Timestamp(i64::MAX),
                max_ts: Timestamp(i64::MIN),
            });
        } else {
            self.entries.push(&e.encode());
            self.closed += 1;
            self.maybe_spill();
        }
    }

    /// Resuming: the time bounds of the next block; `last` for the open block.
    pub fn resume_time(&mut self, min: Timestamp, max: Timestamp, last: bool) {
        if last {
            if let Some(open) = self.open.as_mut() {
                open.min_ts = min;
                open.max_ts = max;
            }
        } else {
            self.times.push(&encode_block_time(min, max));
            self.maybe_spill();
        }
    }

    /// Resuming: the next bytes of the closed blocks' encoded filters (varint length, bits;
    /// in any pieces). The open block's filter is not given: it is rebuilt from its records.
    pub fn resume_filter(&mut self, bytes: &[u8]) {
        self.filters.push(bytes);
        self.maybe_spill();
    }

    /// A record did not follow the one before it (its seq or its link): from now on the
    /// index is written without section 3, whose marks are found by seq.
    pub fn marks_gap(&mut self) {
        self.marks_ok = false;
    }

    /// Resuming: the next bytes of the user marks of every covered record (in any pieces).
    pub fn resume_marks(&mut self, bytes: &[u8]) {
        self.marks.push(bytes);
        self.maybe_spill();
    }

    /// Resuming: the marks given were those of `records` records (`None`: the index had
    /// no section 3); if not, later indexes are written without section 3.
    pub fn resume_marks_done(&mut self, records: Option<u64>) {
        self.marks_ok =
            records.and_then(|n| n.checked_mul(MARK_LEN as u64)) == Some(self.marks.len());
    }

    /// Resuming: reads back the terms of the open block's records, from its entry to
    /// `covered_len`. False if they do not read back as whole frames (the caller then
    /// rebuilds from the records), or if the streams given do not agree on the blocks.
    pub fn resume_open_block(
        &mut self,
        win: &mut FileWindow,
        covered_len: u64,
        tags: &mut Tags<'_>,
    ) -> io::Result<bool> {
        let Some(open) = self.open else {
            return Ok(self.closed == 0);
        };
        let consistent = open.min_ts <= open.max_ts
            && self.entries.len() == self.closed * ENTRY_LEN as u64
            && self.times.len() == self.closed * 16;
        if !consistent {
            return Ok(false);
        }
        let mut off = open.entry.offset;
        while off < covered_len {
            match win.frame(off)? {
                Ok(rec) => {
                    // Only an authentic record's terms (see [`Tags`]).
                    let hash = crypto::chain_hash(rec.chained_bytes());
                    let authentic = tags.authentic(rec.fields.key_id, &hash, &rec.tag);
                    match KeyFields::parse(rec.sealed) {
                        Ok(k) if authentic => k.terms(&mut self.open_terms),
                        _ => self.open_unfiltered = true,
                    }
                    off += rec.len();
                }
                Err(_) => return Ok(false),
            }
        }
        Ok(off == covered_len)
    }
}

/// An [`IndexBuilder`]'s index as of one moment, in bounded memory (see
/// [`IndexBuilder::image`]); written out by `index_file`.
#[derive(Clone, Debug)]
pub(crate) struct IndexImage {
    entries: SpoolView,
    times: SpoolView,
    filters: SpoolView,
    /// Section 3, unless the records' seqs had a gap.
    marks: Option<SpoolView>,
    closed: u64,
    open: Option<OpenBlock>,
    /// The open block's encoded filter (empty if there is no open block).
    open_filter: Vec<u8>,
    /// Directory of the spill files, for error messages.
    dir: PathBuf,
}

impl IndexImage {
    /// Entries of the index.
    pub fn entry_count(&self) -> u64 {
        self.closed + u64::from(self.open.is_some())
    }

    /// Entries of the index, as the header's `u32`.
    pub fn entry_count_u32(&self) -> Result<u32> {
        u32::try_from(self.entry_count()).map_err(|_| self.too_large())
    }

    /// Sections written: block times and filters, and user marks unless seqs had a gap.
    pub fn section_count(&self) -> u32 {
        2 + u32::from(self.marks.is_some())
    }

    /// The lengths of sections 1, 2 and (with user marks) 3, as their headers' `u32`s:
    /// `None` if one does not fit (FORMAT.md §3), which happens only past hundreds of
    /// millions of records in one segment; section lengths only grow with the segment.
    pub fn section_lens(&self) -> Option<(u32, u32, Option<u32>)> {
        let times = u32::try_from(self.entry_count().checked_mul(16)?).ok()?;
        let filters = FILTER_HEADER_LEN as u64 + self.filters.len() + self.open_filter.len() as u64;
        let filters = u32::try_from(filters).ok()?;
        let marks = match &self.marks {
            Some(marks) => Some(u32::try_from(MARKS_HEADER_LEN as u64 + marks.len()).ok()?),
            None => None,
        };
        Some((times, filters, marks))
    }

    fn too_large(&self) -> Error {
        Error::io(
            "encode the index of a segment in",
            &self.dir,
            io::Error::other("the index exceeds the format's 32-bit counts"),
        )
    }

    /// Hands `sink` every index byte after the header and before the CRC: the entries, then
    /// section 1 (block times), section 2 (block filters) and section 3 (user marks), exactly as
    /// [`crate::format::index::Index::encode_unsigned`] lays them out.
    pub fn write_body(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let (times_len, filters_len, marks_len) =
            self.section_lens().ok_or_else(|| self.too_large())?;
        self.entries.copy_to(&self.dir, sink)?;
        if let Some(open) = &self.open {
            sink(&open.entry.encode())?;
        }
        sink(&section_header(SECTION_BLOCK_TIMES, times_len))?;
        self.times.copy_to(&self.dir, sink)?;
        if let Some(open) = &self.open {
            sink(&encode_block_time(open.min_ts, open.max_ts))?;
        }
        sink(&section_header(SECTION_BLOCK_FILTERS, filters_len))?;
        sink(&Probing::WRITER.header())?;
        self.filters.copy_to(&self.dir, sink)?;
        sink(&self.open_filter)?;
        if let (Some(marks), Some(len)) = (&self.marks, marks_len) {
            sink(&section_header(SECTION_USER_MARKS, len))?;
            sink(&[USER_MARK_SCHEME, 0, 0, 0])?;
            marks.copy_to(&self.dir, sink)?;
        }
        Ok(())
    }
}

/// The filter of block `block` (the open one).
fn encode_open_filter(terms: &mut Vec<u64>, unfiltered: bool, block: u64, out: &mut Vec<u8>) {
    if unfiltered {
        put_varint(out, 0);
    } else {
        encode_filter(terms, block, out);
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

/// The tag check of the records an index is rebuilt from: the index is signed, so what it
/// says of a record (its filter terms, its user mark) must come from a record whose tag
/// verifies, or a keyless attacker could have the writer sign what a forged record claims
/// (a `user_id` changed, CRC and later links fixed) and hide the original from queries.
///
/// The same goes for its times: a rebuilt index gives a record whose tag does not verify
/// the whole month of its segment as its time (see [`Tags::in_month`]), or an attacker
/// could move a record's `occurred_at` out of the range a query asks for and have the
/// writer sign the block times that let the query skip it.
pub(crate) struct Tags<'a> {
    org: &'a OrgId,
    keys: &'a dyn KeyProvider,
    signers: Signers,
    /// The segment's month, `[start, last]`, when known.
    month: Option<(Timestamp, Timestamp)>,
    /// Records checked with a key the provider gave, and how many of them failed.
    pub checked: u64,
    pub failed: u64,
}

impl<'a> Tags<'a> {
    pub fn new(org: &'a OrgId, keys: &'a dyn KeyProvider) -> Self {
        Tags {
            org,
            keys,
            signers: Signers::default(),
            month: None,
            checked: 0,
            failed: 0,
        }
    }

    /// For a scan that rebuilds the index of a segment of `month`: a record whose tag does
    /// not verify is given all of `month` as its time (FORMAT.md §3.1).
    pub fn in_month(org: &'a OrgId, month: Month, keys: &'a dyn KeyProvider) -> Self {
        let last = Timestamp(month.end().0.saturating_sub(1));
        Tags {
            month: Some((month.start(), last)),
            ..Tags::new(org, keys)
        }
    }

    /// Whether `tag` is the tag of chain hash `hash` under key `id` (false for a key that
    /// is unknown or cannot be had).
    pub(crate) fn authentic(&mut self, id: KeyId, hash: &Hash, tag: &Tag) -> bool {
        let Some(signer) = self.signers.get_or_unknown(self.keys, self.org, id) else {
            return false;
        };
        let ok = signer.verify_record(self.org, hash, tag);
        self.checked += 1;
        self.failed += u64::from(!ok);
        ok
    }

    /// Whether records were checked and not one verified: the provider's keys are not the
    /// ones that signed them (or every record was altered).
    pub(crate) fn none_verified(&self) -> bool {
        self.checked > 0 && self.failed == self.checked
    }
}

/// Scans records from `start` to the window's end, continuing `tally`.
///
/// Verifies length, CRC, seq order and chain linkage, and with `tags` each record's tag, but
/// only to decide what the rebuilt index may say of it: a record whose tag does not verify
/// gets no filter terms and the mark [`MARK_UNKNOWN`], so queries read it and report it.
/// (Reporting tags is the job of verification.) After a bad frame it searches forward for
/// the next valid frame, so every valid record is counted and every damaged stretch is
/// reported.
pub(crate) fn scan(
    win: &mut FileWindow,
    start: u64,
    mut tally: Tally,
    mut tags: Option<&mut Tags<'_>>,
) -> io::Result<ScanOutcome> {
    let mut damage = Vec::new();
    let mut terms = Vec::new();
    let mut off = start;
    let end = win.end();
    while off < end {
        let outcome = match win.frame(off)? {
            Ok(rec) => {
                terms.clear();
                let hash = crypto::chain_hash(rec.chained_bytes());
                let authentic = tags
                    .as_deref_mut()
                    .is_none_or(|t| t.authentic(rec.fields.key_id, &hash, &rec.tag));
                let mark = match KeyFields::parse(rec.sealed) {
                    Ok(k) if authentic => {
                        k.terms(&mut terms);
                        Some(k.user_mark())
                    }
                    _ => None,
                };
                let ts = rec.fields.occurred_at;
                let span = match tags.as_deref().and_then(|t| t.month) {
                    Some((lo, hi)) if !authentic => (lo.min(ts), hi.max(ts)),
                    _ => (ts, ts),
                };
                Ok((rec.fields, rec.len(), hash, mark, span))
            }
            Err(FrameError::Incomplete { .. }) => Err(DamageCause::Incomplete),
            Err(FrameError::Corrupt(e)) => Err(DamageCause::Corrupt(e)),
        };
        match outcome {
            Ok((fields, len, hash, mark, span)) => {
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
                    tally.index.marks_gap();
                    damage.push(DamageRange {
                        start: off,
                        end: off + len,
                        cause: DamageCause::Integrity {
                            seq: fields.seq,
                            kind,
                        },
                    });
                }
                tally.index.observe_span(
                    off,
                    fields.seq,
                    span,
                    mark.is_some().then_some(terms.as_slice()),
                    mark.unwrap_or(MARK_UNKNOWN),
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
                    // Their seqs need not follow the last one counted.
                    tally.index.marks_gap();
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
/// `max_seq`.
///
/// Cheap filters (length bounds, `sealed_len` room, seq plausibility) run first. Candidates
/// that pass them have their CRC checked in constant time from prefix CRCs of the searched
/// region ([`PrefixCrc`]), never by re-reading their whole claimed length, so the search is
/// linear in the bytes searched even on garbage crafted so that every offset claims a long
/// frame (which made a naive search quadratic: 2 MiB took ~54 s).
///
/// Before those filters, [`next_candidate`] skips, 64 offsets at a time, every offset whose
/// bytes cannot pass them (a length or `sealed_len` above the largest frame, a length below
/// the smallest): on zeros or random bytes that is almost every offset, and the search runs
/// at memory speed instead of one window lookup and parse attempt per byte. The offsets it
/// skips are exactly offsets the filters reject, so the result is the same.
pub(crate) fn resync<W: Window>(
    win: &mut W,
    from: u64,
    max_seq: Option<u64>,
) -> io::Result<Option<u64>> {
    let end = win.end();
    let max_records = end.saturating_sub(from) / u64::from(MIN_FRAME_LEN) + 1;
    let mut prefix = PrefixCrc::new(from);
    let mut p = from;
    while p + u64::from(MIN_FRAME_LEN) <= end {
        p = next_candidate(win, p)?;
        if p + u64::from(MIN_FRAME_LEN) > end {
            break;
        }
        if p >= prefix.base + prefix.hashed {
            // Nothing hashed so far reaches this candidate (the skip ruled out what lies
            // between, a hole of a sparse file perhaps): the prefixes start here instead,
            // rather than hash, and keep a CRC every 256 bytes of, all that lies between.
            prefix = PrefixCrc::new(p);
        }
        if let Some((len, crc)) = plausible_at(win, p, end, max_seq, max_records)? {
            let computed = prefix.crc_of(win, p + 8, p + u64::from(len))?;
            if computed == crc && win.frame(p)?.is_ok() {
                return Ok(Some(p));
            }
        }
        p += 1;
    }
    Ok(None)
}

/// The cheap filters of [`resync`] at `p` (`p + MIN_FRAME_LEN ≤ end`): the frame's length and
/// stored CRC if its length fits in bounds and in the file, its `sealed_len` fits in its
/// length, and its seq is plausible after `max_seq`.
fn plausible_at<W: Window>(
    win: &mut W,
    p: u64,
    end: u64,
    max_seq: Option<u64>,
    max_records: u64,
) -> io::Result<Option<(u32, u32)>> {
    let head = win.get(p, 64)?;
    let field = |at: usize| -> Option<[u8; 4]> { head.get(at..at + 4)?.try_into().ok() };
    let len = record::peek_frame_len(head).unwrap_or(0);
    let crc = field(4).map_or(0, u32::from_le_bytes);
    let sealed_len = field(60).map_or(u32::MAX, u32::from_le_bytes);
    let seq = head
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let plausible = (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len)
        && p + u64::from(len) <= end
        && u64::from(sealed_len) + u64::from(MIN_FRAME_LEN) <= u64::from(len)
        && match max_seq {
            Some(m) => seq > m && seq - m <= max_records,
            None => true,
        };
    Ok(plausible.then_some((len, crc)))
}

/// Offsets [`next_candidate`] examines per read of the window.
const SKIP_BLOCK: usize = 64 * 1024;

/// The largest value the top byte of a frame's `frame_len`, or of its `sealed_len` (which
/// is at most `frame_len − 96`), can have.
const TOP_BYTE_MAX: u8 = (MAX_FRAME_LEN >> 24) as u8;

/// The first offset ≥ `p` whose bytes may pass [`plausible_at`], or one past the last offset
/// [`resync`] examines (`end − MIN_FRAME_LEN + 1`) if none does. An offset can pass only if
/// its `frame_len` is at least [`MIN_FRAME_LEN`] (a byte ≥ 96 or a higher byte set) and the
/// top bytes of its `frame_len` and `sealed_len` (bytes 3 and 63) are at most
/// [`TOP_BYTE_MAX`]: necessary conditions, checked for 64 offsets at once over the window's
/// bytes ([`skip_mask`]), so that the search costs a few instructions per byte.
fn next_candidate<W: Window>(win: &mut W, mut p: u64) -> io::Result<u64> {
    let last = win.end().saturating_sub(u64::from(MIN_FRAME_LEN));
    while p <= last {
        // Offsets p ..= p + n − 1, each with its 64 header bytes.
        let n = (last - p + 1).min(SKIP_BLOCK as u64) as usize;
        let zeros = win.get(p, 64)?.iter().all(|&b| b == 0);
        if zeros {
            // Perhaps a hole of a sparse file: no frame starts where its `frame_len` reads
            // zeros, so the search goes on 3 bytes before the data. (A file extended by
            // terabytes of holes used to cost a pass over every zero byte: hours.)
            let data = win.data_from(p)?;
            if data > p.saturating_add(64) {
                p = data - 3;
                continue;
            }
        }
        let bytes = win.get(p, n + 63)?;
        let mut i = 0;
        while i < n {
            let mask = match bytes.get(i..).and_then(|b| b.first_chunk::<{ 64 + 63 }>()) {
                Some(lanes) if i + 64 <= n => skip_mask(lanes),
                // Fewer than 64 offsets left in this block: one at a time.
                _ => u64::from(bytes.get(i..).is_none_or(may_start_frame)),
            };
            if mask != 0 {
                return Ok(p + i as u64 + u64::from(mask.trailing_zeros()));
            }
            i += if i + 64 <= n { 64 } else { 1 };
        }
        p += n as u64;
    }
    Ok(last + 1)
}

/// Whether the frame header at the start of `head` (at least 64 bytes) may pass
/// [`plausible_at`]; see [`next_candidate`].
fn may_start_frame(head: &[u8]) -> bool {
    match (head.first_chunk::<4>(), head.get(63)) {
        (Some(&[b0, b1, b2, b3]), Some(&b63)) => {
            b3 <= TOP_BYTE_MAX
                && b63 <= TOP_BYTE_MAX
                && (b0 >= MIN_FRAME_LEN as u8 || (b1 | b2 | b3) != 0)
        }
        // Too short for a header: let the exact check decide.
        _ => true,
    }
}

/// Bit `j` set when offset `j` of `lanes` (64 offsets, with the 63 bytes after the last)
/// may start a frame ([`may_start_frame`]). Written lane by lane over fixed-size arrays so
/// that the compiler vectorises it; the flags become bits eight at a time (a multiply
/// gathers the low bit of each byte of a word into its top byte).
fn skip_mask(lanes: &[u8; 64 + 63]) -> u64 {
    const NONE: [u8; 64] = [0; 64];
    let lane = |k: usize| -> &[u8; 64] {
        lanes
            .get(k..)
            .and_then(|b| b.first_chunk::<64>())
            .unwrap_or(&NONE)
    };
    let (b0, b1, b2, b3, b63) = (lane(0), lane(1), lane(2), lane(3), lane(63));
    let mut flags = [0u8; 64];
    let inputs = b0.iter().zip(b1).zip(b2).zip(b3).zip(b63);
    for (f, ((((&x0, &x1), &x2), &x3), &x63)) in flags.iter_mut().zip(inputs) {
        let ok = (x3 <= TOP_BYTE_MAX)
            & (x63 <= TOP_BYTE_MAX)
            & ((x0 >= MIN_FRAME_LEN as u8) | ((x1 | x2 | x3) != 0));
        *f = u8::from(ok);
    }
    let mut mask = 0u64;
    for (i, word) in flags.chunks_exact(8).enumerate() {
        let w = word
            .first_chunk::<8>()
            .map_or(0, |w| u64::from_le_bytes(*w));
        mask |= (w.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i);
    }
    mask
}

/// CRC-32 of arbitrary sub-ranges of a file region in O(log n) each, after one linear pass.
///
/// CRC-32 is linear: `crc(A‖B) = shift(crc(A), |B|) ^ crc(B)`, where `shift` appends |B| zero
/// bytes to the register (zlib's `crc32_combine`). With prefix CRCs `P(x) = crc(base..x)`,
/// `crc(a..b) = P(b) ^ shift(P(a), b - a)`. Prefixes are kept every [`PrefixCrc::STEP`] bytes,
/// extended lazily as far as a lookup needs (so a search that ends early reads little), and
/// finished from the nearest checkpoint with at most `STEP - 1` bytes of plain CRC.
struct PrefixCrc {
    base: u64,
    /// `marks[i]` = crc(base .. base + i·STEP).
    marks: Vec<u32>,
    hasher: crc32fast::Hasher,
    /// Bytes hashed by `hasher` so far (a multiple of STEP).
    hashed: u64,
    ops: Option<Box<[[u32; 32]; 64]>>,
}

impl PrefixCrc {
    const STEP: u64 = 256;

    fn new(base: u64) -> Self {
        PrefixCrc {
            base,
            marks: vec![0],
            hasher: crc32fast::Hasher::new(),
            hashed: 0,
            ops: None,
        }
    }

    /// CRC-32 of file bytes `a..b` (`base ≤ a ≤ b ≤ end`).
    fn crc_of<W: Window>(&mut self, win: &W, a: u64, b: u64) -> io::Result<u32> {
        let pa = self.prefix(win, a)?;
        let pb = self.prefix(win, b)?;
        Ok(pb ^ self.shift(pa, b - a))
    }

    /// crc(base..x).
    fn prefix<W: Window>(&mut self, win: &W, x: u64) -> io::Result<u32> {
        let rel = x - self.base;
        let mark = rel / Self::STEP;
        // Extend the checkpoints in 1 MiB reads until `mark` exists.
        let mut chunk = Vec::new();
        while (self.marks.len() as u64) <= mark {
            let start = self.base + self.hashed;
            let n = (CHUNK as u64).min(win.end().saturating_sub(start)) / Self::STEP * Self::STEP;
            if n == 0 {
                break;
            }
            chunk.resize(n as usize, 0);
            win.read_exact_at(&mut chunk, start)?;
            for piece in chunk.chunks(Self::STEP as usize) {
                self.hasher.update(piece);
                self.marks.push(self.hasher.clone().finalize());
            }
            self.hashed += n;
        }
        let (m, from) = match self.marks.get(mark as usize) {
            Some(m) => (*m, mark * Self::STEP),
            None => {
                let last = self.marks.len().saturating_sub(1);
                (
                    self.marks.get(last).copied().unwrap_or(0),
                    last as u64 * Self::STEP,
                )
            }
        };
        let tail_len = rel - from;
        if tail_len == 0 {
            return Ok(m);
        }
        let mut tail = vec![0u8; tail_len as usize];
        win.read_exact_at(&mut tail, self.base + from)?;
        Ok(self.shift(m, tail_len) ^ crc32fast::hash(&tail))
    }

    /// Appends `n` zero bytes to CRC register state `crc` (the linear part only).
    fn shift(&mut self, mut crc: u32, mut n: u64) -> u32 {
        let ops = self.ops.get_or_insert_with(zero_byte_operators);
        let mut k = 0;
        while n != 0 && k < 64 {
            if n & 1 == 1 {
                crc = gf2_times(ops.get(k).unwrap_or(&[0; 32]), crc);
            }
            n >>= 1;
            k += 1;
        }
        crc
    }
}

/// `ops[k]`: the GF(2) operator that appends 2^k zero bytes to a reflected CRC-32 register.
fn zero_byte_operators() -> Box<[[u32; 32]; 64]> {
    let mut ops = Box::new([[0u32; 32]; 64]);
    // One zero bit: the CRC-32 polynomial (reflected) for bit 0, a shift for the others.
    let mut op = [0u32; 32];
    op[0] = 0xedb8_8320;
    for (n, row) in op.iter_mut().enumerate().skip(1) {
        *row = 1 << (n - 1);
    }
    // Square three times: 2, 4, 8 zero bits = one zero byte.
    for _ in 0..3 {
        op = gf2_square(&op);
    }
    for slot in ops.iter_mut() {
        *slot = op;
        op = gf2_square(&op);
    }
    ops
}

fn gf2_times(mat: &[u32; 32], mut vec: u32) -> u32 {
    let mut sum = 0;
    for row in mat {
        if vec == 0 {
            break;
        }
        if vec & 1 == 1 {
            sum ^= row;
        }
        vec >>= 1;
    }
    sum
}

fn gf2_square(mat: &[u32; 32]) -> [u32; 32] {
    let mut out = [0u32; 32];
    for (o, row) in out.iter_mut().zip(mat) {
        *o = gf2_times(mat, *row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn window(bytes: &[u8]) -> FileWindow {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        FileWindow::new(f, bytes.len() as u64)
    }

    #[test]
    fn prefix_crc_matches_direct_crc_on_every_range_shape() {
        let mut rng = crate::workload::Rng::new(9);
        let bytes: Vec<u8> = (0..5000).map(|_| rng.next_u64() as u8).collect();
        let win = window(&bytes);
        for base in [0u64, 1, 255, 256, 1000] {
            let mut p = PrefixCrc::new(base);
            for _ in 0..300 {
                let a = base + rng.below(5000 - base);
                let b = a + rng.below(5000 - a + 1);
                let want = crc32fast::hash(&bytes[a as usize..b as usize]);
                assert_eq!(
                    p.crc_of(&win, a, b).unwrap(),
                    want,
                    "base {base} range {a}..{b}"
                );
            }
        }
    }

    /// Garbage crafted so that every 4th offset claims a 1 MiB frame: the search must still
    /// find the real frame after it (and it does so reading each byte a bounded number of
    /// times; before prefix CRCs this input took ~54 s for 2 MiB).
    #[test]
    fn resync_finds_a_frame_after_crafted_garbage() {
        let mut bytes = Vec::new();
        while bytes.len() < 1 << 20 {
            bytes.extend_from_slice(&(1u32 << 19).to_le_bytes());
        }
        let at = bytes.len() as u64;
        crate::format::record::encode_frame(
            &mut bytes,
            &record::FrameFields {
                seq: 7,
                occurred_at: Timestamp(1),
                key_id: crate::crypto::KeyId(1),
                prev: Hash::ZERO,
            },
            b"\x00\x01a\x01b\x01c\x00\x00\x00\x00",
            b"",
            |_| crate::crypto::Tag([0; 32]),
        );
        let mut win = window(&bytes);
        assert_eq!(resync(&mut win, 1, None).unwrap(), Some(at));
        assert_eq!(resync(&mut win, 1, Some(3)).unwrap(), Some(at));
        assert_eq!(resync(&mut win, at + 1, None).unwrap(), None);
        // The same search over the bytes in memory, as the query layer runs it, from a
        // window that starts mid-file.
        let base = 1000;
        let mut mem = MemWindow {
            base,
            bytes: &bytes[base as usize..],
        };
        assert_eq!(resync(&mut mem, base + 1, None).unwrap(), Some(at));
        assert_eq!(resync(&mut mem, base + 1, Some(3)).unwrap(), Some(at));
        assert_eq!(resync(&mut mem, at + 1, None).unwrap(), None);
    }

    /// The search as it was before [`next_candidate`]: every offset through the cheap
    /// filters. [`resync`] must find exactly what this finds.
    fn resync_reference<W: Window>(
        win: &mut W,
        from: u64,
        max_seq: Option<u64>,
    ) -> io::Result<Option<u64>> {
        let end = win.end();
        let max_records = end.saturating_sub(from) / u64::from(MIN_FRAME_LEN) + 1;
        let mut prefix = PrefixCrc::new(from);
        let mut p = from;
        while p + u64::from(MIN_FRAME_LEN) <= end {
            if let Some((len, crc)) = plausible_at(win, p, end, max_seq, max_records)? {
                let computed = prefix.crc_of(win, p + 8, p + u64::from(len))?;
                if computed == crc && win.frame(p)?.is_ok() {
                    return Ok(Some(p));
                }
            }
            p += 1;
        }
        Ok(None)
    }

    /// A valid frame with seq `seq` and a body of `pad` extra bytes.
    fn frame_bytes(seq: u64, pad: usize) -> Vec<u8> {
        let mut body = b"\x00\x01a\x01b\x01c\x00\x00\x00\x00".to_vec();
        // Extra bytes in `before` (a `bytes` field whose varint length is body[7]).
        let pad = pad.min(100);
        body[7] = pad as u8;
        body.splice(8..8, std::iter::repeat_n(b'x', pad));
        let mut out = Vec::new();
        crate::format::record::encode_frame(
            &mut out,
            &record::FrameFields {
                seq,
                occurred_at: Timestamp(1),
                key_id: crate::crypto::KeyId(1),
                prev: Hash::ZERO,
            },
            &body,
            b"",
            |_| crate::crypto::Tag([7; 32]),
        );
        out
    }

    /// A [`FileWindow`] that counts the bytes it is asked for.
    struct Counting(FileWindow, std::cell::Cell<u64>);

    impl Window for Counting {
        fn end(&self) -> u64 {
            self.0.end()
        }
        fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
            self.1.set(self.1.get() + n as u64);
            self.0.get(off, n)
        }
        fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
            self.1.set(self.1.get() + buf.len() as u64);
            self.0.read_exact_at(buf, off)
        }
        fn data_from(&self, off: u64) -> io::Result<u64> {
            self.0.data_from(off)
        }
    }

    /// The search steps over a sparse file's holes instead of reading their zeros: a frame
    /// after a 64 GiB hole is found at its offset, reading a few MiB, and a hole to the end
    /// of the file ends the search as quickly. The holes' last bytes are still examined:
    /// a frame starting 1 byte after a hole is found too.
    #[test]
    fn resync_steps_over_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.seg");
        let frame = frame_bytes(5, 40);
        let hole = 64u64 << 30;
        for gap in [0u64, 1, 4097] {
            let f = File::create(&path).unwrap();
            f.write_all_at(&[0xAB; 100], 0).unwrap();
            let at = 100 + hole + gap;
            f.write_all_at(&frame, at).unwrap();
            let end = at + frame.len() as u64;
            let open = |end| Counting(FileWindow::new(File::open(&path).unwrap(), end), 0.into());
            let mut win = open(end);
            assert_eq!(resync(&mut win, 1, None).unwrap(), Some(at), "gap {gap}");
            // The garbage's last bytes may start a frame of up to 64 MiB, whose CRC is
            // read; the hole is not.
            assert!(
                win.1.get() < 128 << 20,
                "gap {gap}: {} bytes read",
                win.1.get()
            );
            // Only the hole after the garbage: nothing found, little read.
            let mut win = open(at);
            assert_eq!(resync(&mut win, 1, None).unwrap(), None);
            assert!(win.1.get() < 128 << 20, "{} bytes read", win.1.get());
        }
    }

    /// `bytes` with a 4-byte little-endian `v` written at `at` (if it fits).
    fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
        if let Some(dst) = bytes.get_mut(at..at + 4) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// [`resync`] with the 64-at-a-time skip finds exactly what the search over every offset
    /// found, from every start, on random bytes, zeros, bytes with few values (so that the
    /// skip's byte conditions pass often), headers on the boundaries of each filter (length
    /// 95, 96, the largest frame and one more; `sealed_len` just fitting and not; a length
    /// running past the end), crafted CRC-valid near-misses, and real frames (also
    /// overlapping the 64-offset blocks and the end of the window), in a file window and in
    /// memory windows with a base.
    #[test]
    fn resync_finds_what_the_offset_by_offset_search_finds() {
        let mut rng = crate::workload::Rng::new(77);
        let boundary_lens = [
            95,
            MIN_FRAME_LEN,
            MIN_FRAME_LEN + 1,
            600,
            MAX_FRAME_LEN,
            MAX_FRAME_LEN + 1,
            0x0500_0000,
            0x00ff_ffff,
        ];
        let (mut cases, mut found) = (0, 0);
        for round in 0..400u64 {
            let len = match round % 4 {
                0 => 96 + rng.below(300) as usize,
                1 => 1000 + rng.below(3000) as usize,
                2 => 64 * 1024 + rng.below(5000) as usize,
                _ => rng.below(200) as usize,
            };
            let mut bytes: Vec<u8> = match round % 5 {
                0 => vec![0; len],
                1 => (0..len).map(|_| rng.next_u64() as u8).collect(),
                // Few values, most of them passing the byte conditions.
                2 => (0..len)
                    .map(|_| [0, 1, 4, 5, 96, 255][rng.below(6) as usize])
                    .collect(),
                3 => (0..len).map(|_| rng.below(6) as u8).collect(),
                _ => vec![0xff; len],
            };
            // Headers on the filters' boundaries.
            for _ in 0..rng.below(40) {
                if bytes.len() < 64 {
                    break;
                }
                let at = rng.below(bytes.len() as u64) as usize;
                let flen = boundary_lens[rng.below(boundary_lens.len() as u64) as usize];
                put_u32(&mut bytes, at, flen);
                let sealed = match rng.below(3) {
                    0 => flen.saturating_sub(MIN_FRAME_LEN),
                    1 => flen.saturating_sub(MIN_FRAME_LEN) + 1,
                    _ => rng.next_u64() as u32,
                };
                put_u32(&mut bytes, at + 60, sealed);
                // A CRC that matches when the claimed frame fits (a near-miss for the parse).
                if let Some(body) = bytes.get(at + 8..at + flen as usize) {
                    let crc = crc32fast::hash(body);
                    put_u32(&mut bytes, at + 4, crc);
                }
            }
            // Real frames, anywhere (also overlapping each other and the end).
            for _ in 0..rng.below(4) {
                let f = frame_bytes(rng.below(20), rng.below(100) as usize);
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                for (k, b) in f.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            let mut froms: Vec<u64> = (0..6).map(|_| rng.below(bytes.len() as u64 + 2)).collect();
            froms.extend([0, 1, 63, 64, 65]);
            let mut file = window(&bytes);
            for from in froms {
                for max_seq in [None, Some(0), Some(5), Some(u64::MAX)] {
                    let want = resync_reference(&mut file, from, max_seq).unwrap();
                    let got = resync(&mut file, from, max_seq).unwrap();
                    assert_eq!(got, want, "round {round} from {from} max_seq {max_seq:?}");
                    found += usize::from(got.is_some());
                    let base = 5000;
                    let mut mem = MemWindow {
                        base,
                        bytes: &bytes,
                    };
                    let want = resync_reference(&mut mem, base + from, max_seq).unwrap();
                    assert_eq!(want, got.map(|g| g + base), "memory window, round {round}");
                    assert_eq!(resync(&mut mem, base + from, max_seq).unwrap(), want);
                    cases += 1;
                }
            }
        }
        assert!(cases > 1000 && found > 100, "{cases} cases, {found} found");

        // The largest frame: the top bytes of its length and of its `sealed_len` are the
        // largest the skip lets through.
        let mut bytes = vec![0u8; 1000];
        let sealed = vec![0u8; (MAX_FRAME_LEN - MIN_FRAME_LEN) as usize];
        crate::format::record::encode_frame(
            &mut bytes,
            &record::FrameFields {
                seq: 3,
                occurred_at: Timestamp(1),
                key_id: crate::crypto::KeyId(1),
                prev: Hash::ZERO,
            },
            &sealed,
            b"",
            |_| crate::crypto::Tag([7; 32]),
        );
        assert_eq!(bytes.len() as u64, 1000 + u64::from(MAX_FRAME_LEN));
        let mut mem = MemWindow {
            base: 0,
            bytes: &bytes,
        };
        assert_eq!(resync_reference(&mut mem, 1, None).unwrap(), Some(1000));
        assert_eq!(resync(&mut mem, 1, None).unwrap(), Some(1000));
    }

    #[test]
    fn mem_window_reads_like_a_file_window() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = window(&bytes[100..]);
        let mut mem = MemWindow {
            base: 0,
            bytes: &bytes[100..],
        };
        for (off, n) in [(0, 10), (4890, 20), (4899, 5), (4900, 3), (17, 4000)] {
            assert_eq!(
                Window::get(&mut mem, off, n).unwrap(),
                FileWindow::get(&mut file, off, n).unwrap(),
                "{off} {n}"
            );
        }
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        Window::read_exact_at(&mem, &mut a, 4884).unwrap();
        FileWindow::read_exact_at(&file, &mut b, 4884).unwrap();
        assert_eq!(a, b);
        assert!(Window::read_exact_at(&mem, &mut a, 4885).is_err());
    }
}
