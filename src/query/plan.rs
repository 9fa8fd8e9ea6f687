//! Planning one month of a query: open its segments, check their indexes (through a cache
//! of checked indexes), pick the blocks that can hold a match, and order them so that
//! results can be released in time order with little buffering.
//!
//! A *block* is a byte range of one segment: an index block (FORMAT.md §3: the records
//! between two sparse entries, with signed time bounds and term filter), or, where no usable
//! index covers the bytes (the unindexed tail behind a live writer, a segment whose index
//! failed its check, an index written without query sections), a block found by a *hint
//! pass*: a CRC walk of the frames that cuts them at the same interval and notes their time
//! bounds (unsigned; checked again when the block is read).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::filter::Filter;
use crate::crypto::{self, Hash, KeyProvider};
use crate::error::{Error, IntegrityKind};
use crate::event::OrgId;
use crate::format::DecodeError;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::index::{BlockFilters, IndexEntry};
use crate::format::record::FrameError;
use crate::segment::scan::{self, FileWindow};
use crate::segment::{FileStamp, index_file_name, recover, segment_file_name};
use crate::time::{Month, Timestamp};

/// Bytes read per batch (one positioned read) at most, unless one block is larger.
pub(crate) const BATCH_BYTES: u64 = 1 << 20;
/// Blocks per batch at most (so a selective query's scattered blocks share few tasks).
const MAX_BATCH_BLOCKS: usize = 256;
/// Interval of hint-pass blocks.
const HINT_INTERVAL: u64 = 4096;

/// What every part of a query shares.
pub(crate) struct Ctx {
    /// The org's directory.
    pub dir: PathBuf,
    pub org: OrgId,
    pub keys: Arc<dyn KeyProvider>,
    pub cache: Arc<IndexCache>,
    pub filter: Filter,
    pub verify: bool,
    pub reverse: bool,
    /// Largest batch (one positioned read).
    pub batch_bytes: u64,
}

/// One segment file open for the query.
pub(crate) struct Source {
    pub path: PathBuf,
    pub file: File,
    pub month: Month,
    pub part: u16,
    /// `[month_start, month_end)`: the times its records may have.
    pub month_start: Timestamp,
    pub month_end: Timestamp,
}

/// What the first record of a block must be, as far as the plan knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Nothing known (after damage, or past a skipped unindexed stretch).
    Nothing,
    /// Its seq (from a signed index entry).
    Seq(u64),
    /// Its seq and its prev_hash (segment start: the genesis; tail start: the index head).
    SeqPrev(u64, Hash),
}

/// A byte range of one segment to read and verify.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub src: usize,
    pub start: u64,
    pub end: u64,
    /// Time bounds of its records.
    pub lo: Timestamp,
    pub hi: Timestamp,
    pub expect: Expect,
    /// Records it holds, when a signed index says so.
    pub records: Option<u64>,
    /// Bytes that did not read as frames during the hint pass: reported, not read.
    pub damage: Option<DecodeError>,
}

/// The blocks of one month in the order they are read, and where reading may stop.
pub(crate) struct MonthPlan {
    pub sources: Vec<Source>,
    pub blocks: Vec<Block>,
    /// After reading `blocks[..=i]`, no unread block holds a time below (forward) or above
    /// (reverse) `frontier[i]`.
    pub frontier: Vec<Timestamp>,
    /// Ranges of `blocks` read together.
    pub batches: Vec<(usize, usize)>,
    /// Bytes the blocks span.
    pub bytes: u64,
    /// Errors found while planning (damaged headers, truncated segments).
    pub errors: Vec<Error>,
    /// Indexes not used, and why.
    pub bypassed: Vec<(PathBuf, String)>,
    /// Blocks considered and blocks skipped by time or filter.
    pub blocks_considered: u64,
    pub blocks_skipped: u64,
}

/// A checked index, in the form the planner uses.
pub(crate) struct LoadedIndex {
    pub covered_len: u64,
    pub record_count: u64,
    pub first_seq: u64,
    pub head: Hash,
    pub segment_hash: Hash,
    pub entries: Vec<IndexEntry>,
    /// Block bounds, and their running maximum / suffix minimum (None: no query sections).
    pub times: Option<BlockTimes>,
    pub filters: Option<BlockFilters>,
    /// Approximate bytes held.
    pub mem: usize,
}

/// Per-block bounds with their monotonic envelopes.
pub(crate) struct BlockTimes {
    pub bounds: Vec<(Timestamp, Timestamp)>,
    /// `prefix_max[i]` = largest `hi` of blocks `..=i`.
    pub prefix_max: Vec<Timestamp>,
    /// `suffix_min[i]` = smallest `lo` of blocks `i..`.
    pub suffix_min: Vec<Timestamp>,
}

impl BlockTimes {
    fn new(bounds: Vec<(Timestamp, Timestamp)>) -> BlockTimes {
        let mut prefix_max = Vec::with_capacity(bounds.len());
        let mut m = Timestamp(i64::MIN);
        for (_, hi) in &bounds {
            m = m.max(*hi);
            prefix_max.push(m);
        }
        let mut suffix_min = vec![Timestamp(i64::MAX); bounds.len()];
        let mut m = Timestamp(i64::MAX);
        for (slot, (lo, _)) in suffix_min.iter_mut().zip(&bounds).rev() {
            m = m.min(*lo);
            *slot = m;
        }
        BlockTimes {
            bounds,
            prefix_max,
            suffix_min,
        }
    }
}

struct CacheEntry {
    /// The index file as last loaded.
    stamp: FileStamp,
    genesis: Hash,
    loaded: Result<Arc<LoadedIndex>, String>,
    used: u64,
}

/// Checked indexes, kept across queries of one [`crate::Log`] so an index is read and its
/// tag checked once, not per query. An entry is used only while the index file is the same
/// file (device, inode, length, mtime) and the segment header hashes to the same genesis;
/// a stale entry is still sound (the segment only grows past `covered_len`) and is simply
/// reloaded. Bounded by bytes; least recently used entries go first.
pub(crate) struct IndexCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

struct CacheInner {
    map: HashMap<PathBuf, CacheEntry>,
    bytes: usize,
    tick: u64,
}

impl IndexCache {
    pub fn new(capacity: usize) -> IndexCache {
        IndexCache {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
            capacity,
        }
    }

    /// The checked index of the segment with `header`, or why there is none.
    fn get(
        &self,
        org_dir: &Path,
        org: &OrgId,
        header: &SegmentHeader,
        genesis: &Hash,
        keys: &dyn KeyProvider,
    ) -> Result<Arc<LoadedIndex>, String> {
        let path = org_dir.join(index_file_name(header.id));
        let meta = std::fs::metadata(&path).map_err(|e| recover::unopened(&e))?;
        let stamp = FileStamp::of(&meta);
        {
            let mut c = self.inner.lock();
            c.tick += 1;
            let tick = c.tick;
            if let Some(e) = c.map.get_mut(&path)
                && e.stamp == stamp
                && e.genesis == *genesis
            {
                e.used = tick;
                return e.loaded.clone();
            }
        }
        let loaded = load(org_dir, org, header, genesis, keys).map(Arc::new);
        let mem = loaded.as_ref().map_or(256, |l| l.mem);
        if mem <= self.capacity {
            let mut c = self.inner.lock();
            c.tick += 1;
            let used = c.tick;
            if let Some(old) = c.map.insert(
                path,
                CacheEntry {
                    stamp,
                    genesis: *genesis,
                    loaded: loaded.clone(),
                    used,
                },
            ) {
                c.bytes -= old.loaded.as_ref().map_or(256, |l| l.mem);
            }
            c.bytes += mem;
            while c.bytes > self.capacity {
                let Some(victim) = c
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(p, _)| p.clone())
                else {
                    break;
                };
                if let Some(e) = c.map.remove(&victim) {
                    c.bytes -= e.loaded.as_ref().map_or(256, |l| l.mem);
                }
            }
        }
        loaded
    }
}

/// Reads and checks an index (CRC, structure and sections, tag, org/segment, header hash,
/// first_seq). `covered_len` against the segment's length is checked by the caller.
fn load(
    org_dir: &Path,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    keys: &dyn KeyProvider,
) -> Result<LoadedIndex, String> {
    let index = recover::load_index(org_dir, org, header, genesis, u64::MAX, keys)?;
    let times = index
        .block_times()
        .map_err(|e| e.to_string())?
        .map(BlockTimes::new);
    let filters = index.block_filters().map_err(|e| e.to_string())?;
    let mem = index.entries.len() * (24 + 48)
        + filters
            .as_ref()
            .map_or(0, |f| f.bits.len() + 4 * f.ends.len())
        + 256;
    Ok(LoadedIndex {
        covered_len: index.covered_len,
        record_count: index.record_count,
        first_seq: index.first_seq,
        head: index.head,
        segment_hash: index.segment_hash,
        entries: index.entries,
        times,
        filters,
        mem,
    })
}

/// First instant after `m`.
pub(crate) fn month_end(m: Month) -> Timestamp {
    let next = if m.month() == 12 {
        Month::new(m.year().saturating_add(1), 1)
    } else {
        Month::new(m.year(), m.month() + 1)
    };
    next.map_or(Timestamp(i64::MAX), Month::start)
}

fn corrupt(path: &Path, source: DecodeError) -> Error {
    Error::Corrupt {
        file: path.to_path_buf(),
        offset: source.offset,
        seq: None,
        source,
    }
}

/// Plans `month` over its segment parts (sorted by part).
pub(crate) fn plan_month(ctx: &Ctx, parts: &[SegmentId]) -> MonthPlan {
    let mut plan = MonthPlan {
        sources: Vec::new(),
        blocks: Vec::new(),
        frontier: Vec::new(),
        batches: Vec::new(),
        bytes: 0,
        errors: Vec::new(),
        bypassed: Vec::new(),
        blocks_considered: 0,
        blocks_skipped: 0,
    };
    let mut lists: Vec<Vec<Block>> = Vec::new();
    for id in parts {
        let path = ctx.dir.join(segment_file_name(*id));
        match open_source(ctx, &path, *id, plan.sources.len(), &mut plan) {
            Ok(Some((src, blocks))) => {
                plan.sources.push(src);
                lists.push(blocks);
            }
            Ok(None) => {}
            Err(e) => plan.errors.push(e),
        }
    }
    order_blocks(&mut plan, lists, ctx.reverse, ctx.batch_bytes);
    plan
}

/// Opens one segment and lists its candidate blocks in file order. `Ok(None)`: the segment
/// cannot be read at all (the reason is in `plan.errors`).
fn open_source(
    ctx: &Ctx,
    path: &Path,
    id: SegmentId,
    src: usize,
    plan: &mut MonthPlan,
) -> Result<Option<(Source, Vec<Block>)>, Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        // Renamed away between listing and opening (quarantine): nothing to read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open segment", path, e)),
    };
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    if let Err(e) = file.read_exact_at(&mut head, 0) {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            // A segment being created: its header is not complete yet, so it has no records.
            return Ok(None);
        }
        return Err(Error::io("read segment header", path, e));
    }
    let header = SegmentHeader::decode(&head).map_err(|e| corrupt(path, e))?;
    if header.org != ctx.org || header.id != id {
        return Err(Error::Integrity {
            file: path.to_path_buf(),
            offset: 0,
            seq: None,
            kind: IntegrityKind::Misfiled {
                what: format!(
                    "header names org {} segment {}, the file name org {} segment {}",
                    header.org, header.id, ctx.org, id
                ),
            },
        });
    }
    let genesis = crypto::sha256(&head);
    // The index first, then the length: a live writer only writes an index over bytes it
    // has already written, so the length read afterwards covers it.
    let index = ctx
        .cache
        .get(&ctx.dir, &ctx.org, &header, &genesis, &*ctx.keys);
    let end = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    let index = match index {
        Ok(ix) if ix.covered_len > end => {
            // The index is authentic (its tag checked) and only ever covers durable bytes:
            // the segment lost records it once held.
            plan.errors.push(Error::Integrity {
                file: path.to_path_buf(),
                offset: end,
                seq: Some(ix.first_seq + ix.record_count),
                kind: IntegrityKind::Truncated {
                    length: end,
                    covered_len: ix.covered_len,
                    records: ix.record_count,
                },
            });
            plan.bypassed
                .push((path.to_path_buf(), "covers more than the segment".into()));
            None
        }
        Ok(ix) if ix.segment_hash == genesis => Some(ix),
        Ok(_) => None,
        Err(why) => {
            plan.bypassed.push((path.to_path_buf(), why));
            None
        }
    };
    let mut win = FileWindow::new(
        file.try_clone()
            .map_err(|e| Error::io("open segment", path, e))?,
        end,
    );
    let f = &ctx.filter;
    let mut blocks = Vec::new();
    let hdr = SEGMENT_HEADER_LEN as u64;
    let first = Expect::SeqPrev(header.first_seq, genesis);
    let io = |e| Error::io("read segment", path, e);
    match &index {
        Some(ix) if ix.times.is_some() => {
            let (times, n) = match &ix.times {
                Some(t) => (t, ix.entries.len()),
                None => return Ok(None),
            };
            // Blocks before `lo` end before `since`; blocks from `hi` start at or after `until`.
            let lo = times.prefix_max.partition_point(|m| *m < f.since);
            let hi = times.suffix_min.partition_point(|m| *m < f.until);
            plan.blocks_considered += n as u64;
            for i in lo..hi.max(lo) {
                let (Some(e), Some((blo, bhi))) = (ix.entries.get(i), times.bounds.get(i)) else {
                    continue;
                };
                if !f.overlaps(*blo, *bhi)
                    || !ix
                        .filters
                        .as_ref()
                        .is_none_or(|fl| fl.may_contain_all(i, &f.probes))
                {
                    continue;
                }
                let next = ix.entries.get(i + 1);
                let last_seq = next.map_or(ix.first_seq + ix.record_count, |n| n.seq);
                blocks.push(Block {
                    src,
                    start: e.offset,
                    end: next.map_or(ix.covered_len, |n| n.offset),
                    lo: *blo,
                    hi: *bhi,
                    expect: if i == 0 { first } else { Expect::Seq(e.seq) },
                    records: Some(last_seq.saturating_sub(e.seq)),
                    damage: None,
                });
            }
            plan.blocks_skipped += n as u64 - blocks.len() as u64;
            if end > ix.covered_len {
                let tail_first = Expect::SeqPrev(ix.first_seq + ix.record_count, ix.head);
                hint_blocks(
                    &mut win,
                    src,
                    ix.covered_len,
                    tail_first,
                    f,
                    &mut blocks,
                    plan,
                )
                .map_err(io)?;
            }
        }
        Some(ix) => {
            // No query sections: seek through the entries, then read on to the end.
            let k = match ctx.reverse {
                true => 0,
                false => ix
                    .entries
                    .partition_point(|e| e.max_ts_before < f.since)
                    .saturating_sub(1),
            };
            let (from, expect) = match ix.entries.get(k) {
                Some(e) if k > 0 => (e.offset, Expect::Seq(e.seq)),
                _ => (hdr, first),
            };
            hint_blocks(&mut win, src, from, expect, f, &mut blocks, plan).map_err(io)?;
        }
        None => {
            hint_blocks(&mut win, src, hdr, first, f, &mut blocks, plan).map_err(io)?;
        }
    }
    let source = Source {
        path: path.to_path_buf(),
        file,
        month: id.month,
        part: id.part,
        month_start: id.month.start(),
        month_end: month_end(id.month),
    };
    Ok(Some((source, blocks)))
}

/// Cuts `[from, end)` into blocks by walking its frames (CRC-checked), keeps those whose
/// times overlap the range, and turns unreadable stretches into damage blocks. Stops at a
/// frame cut off at the end (a live writer's record in progress, or a torn tail).
fn hint_blocks(
    win: &mut FileWindow,
    src: usize,
    from: u64,
    first: Expect,
    f: &Filter,
    out: &mut Vec<Block>,
    plan: &mut MonthPlan,
) -> std::io::Result<()> {
    let end = win.end();
    let mut off = from;
    let mut cur: Option<Block> = None;
    let mut expect = first;
    let mut max_seq: Option<u64> = None;
    let mut next_boundary = 0u64;
    let flush = |b: Option<Block>, out: &mut Vec<Block>, plan: &mut MonthPlan| {
        if let Some(b) = b {
            plan.blocks_considered += 1;
            if f.overlaps(b.lo, b.hi) {
                out.push(b);
            } else {
                plan.blocks_skipped += 1;
            }
        }
    };
    while off < end {
        match win.frame(off)? {
            Ok(rec) => {
                let (ts, seq, len) = (rec.fields.occurred_at, rec.fields.seq, rec.len());
                max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
                match &mut cur {
                    Some(b) if off < next_boundary => {
                        b.end = off + len;
                        b.lo = b.lo.min(ts);
                        b.hi = b.hi.max(ts);
                    }
                    _ => {
                        flush(cur.take(), out, plan);
                        cur = Some(Block {
                            src,
                            start: off,
                            end: off + len,
                            lo: ts,
                            hi: ts,
                            expect,
                            records: None,
                            damage: None,
                        });
                        expect = Expect::Nothing;
                        next_boundary = (off / HINT_INTERVAL + 1) * HINT_INTERVAL;
                    }
                }
                off += len;
            }
            Err(FrameError::Incomplete { .. }) => break,
            Err(FrameError::Corrupt(e)) => {
                flush(cur.take(), out, plan);
                let next = scan::resync(win, off + 1, max_seq)?;
                let stop = next.unwrap_or(end);
                out.push(Block {
                    src,
                    start: off,
                    end: stop,
                    lo: Timestamp(i64::MAX),
                    hi: Timestamp(i64::MIN),
                    expect: Expect::Nothing,
                    records: None,
                    damage: Some(e),
                });
                expect = Expect::Nothing;
                off = stop;
            }
        }
    }
    flush(cur.take(), out, plan);
    Ok(())
}

/// Merges the sources' block lists into one reading order, computes the frontier after
/// each block, and groups blocks into batches.
///
/// Forward: the next block comes from the source whose unread blocks have the smallest
/// lower bound; the frontier is the smallest lower bound of all unread blocks. Reverse is
/// the mirror image (blocks from the end, largest upper bounds). With one source this is
/// simply file order (reverse file order), which keeps reads sequential.
fn order_blocks(plan: &mut MonthPlan, mut lists: Vec<Vec<Block>>, reverse: bool, batch: u64) {
    // Per source, the bound of its unread blocks from position j on.
    let mut bound: Vec<Vec<Timestamp>> = Vec::with_capacity(lists.len());
    for list in &mut lists {
        if reverse {
            list.reverse();
        }
        let mut v = vec![Timestamp(0); list.len() + 1];
        let mut m = Timestamp(if reverse { i64::MIN } else { i64::MAX });
        if let Some(last) = v.last_mut() {
            *last = m;
        }
        for (j, b) in list.iter().enumerate().rev() {
            m = if reverse { m.max(b.hi) } else { m.min(b.lo) };
            if let Some(slot) = v.get_mut(j) {
                *slot = m;
            }
        }
        bound.push(v);
    }
    let mut pos = vec![0usize; lists.len()];
    let total: usize = lists.iter().map(Vec::len).sum();
    let at = |s: usize, pos: &[usize]| -> Timestamp {
        bound
            .get(s)
            .and_then(|v| v.get(pos.get(s).copied().unwrap_or(0)))
            .copied()
            .unwrap_or(Timestamp(if reverse { i64::MIN } else { i64::MAX }))
    };
    for _ in 0..total {
        let pick = (0..lists.len())
            .filter(|&s| pos.get(s).copied().unwrap_or(0) < lists.get(s).map_or(0, Vec::len))
            .min_by_key(|&s| {
                let b = at(s, &pos).0;
                if reverse {
                    -i128::from(b)
                } else {
                    i128::from(b)
                }
            });
        let Some(s) = pick else { break };
        let j = pos.get(s).copied().unwrap_or(0);
        if let Some(b) = lists.get(s).and_then(|l| l.get(j)) {
            plan.bytes += b.end - b.start;
            plan.blocks.push(b.clone());
        }
        if let Some(p) = pos.get_mut(s) {
            *p += 1;
        }
        let f = (0..lists.len()).map(|s| at(s, &pos));
        plan.frontier.push(if reverse {
            f.max().unwrap_or(Timestamp(i64::MIN))
        } else {
            f.min().unwrap_or(Timestamp(i64::MAX))
        });
    }
    // Batches: consecutive blocks (in reading order) of one file, up to `batch` bytes and
    // MAX_BATCH_BLOCKS blocks; damage blocks stand alone. A batch is one task for a thread;
    // its blocks that are adjacent in the file are read with one pread.
    let mut i = 0;
    let n = plan.blocks.len();
    while i < n {
        let mut j = i + 1;
        let mut bytes = plan.blocks.get(i).map_or(0, |b| b.end - b.start);
        while let (Some(a), Some(b)) = (plan.blocks.get(j - 1), plan.blocks.get(j)) {
            let joinable = a.src == b.src && a.damage.is_none() && b.damage.is_none();
            if !joinable || bytes + (b.end - b.start) > batch || j - i >= MAX_BATCH_BLOCKS {
                break;
            }
            bytes += b.end - b.start;
            j += 1;
        }
        plan.batches.push((i, j));
        i = j;
    }
}
