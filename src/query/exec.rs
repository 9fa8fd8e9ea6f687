//! Reading and verifying planned blocks, on the calling thread and on helper threads.
//!
//! A batch (a run of blocks contiguous in one file, at most 1 MiB) is read with one
//! positioned read and walked frame by frame. Every record read is checked — whether or not
//! it matches — so that a damaged or forged record inside a block the query reads is always
//! reported:
//!
//! - record checks (a failure replaces the record by an error item): CRC and framing, the
//!   record's month, its time inside the block's bounds, the HMAC tag (verified mode), and,
//!   when the event is decoded, its personal-data commitments. A tag whose key the provider
//!   does not have or fails to give cannot be checked: the record is an [`Item::Unchecked`],
//!   which the consumer reports once per segment and key id and counts otherwise;
//! - link checks (a failure adds an error item): consecutive seqs and `prev_hash` = chain
//!   hash of the record before, inside a block; across blocks the consumer checks the seams
//!   (see `Cursor`), and a block after a skipped stretch must start with the seq the signed
//!   index gives its first record. In a verified query a record that fails them cannot be
//!   placed in the chain, nor can the records after it up to the next signed anchor (a
//!   block the signed index starts with a seq it names): they are withheld, not returned,
//!   though authentic (a copy of an authentic record passes its tag). Two failures do not
//!   unplace: a chain break with the seqs going on, right after a record whose tag fails
//!   (that altered record's doing), and the gap after unreadable bytes when the next
//!   record's seq is past every seq before them. A signed block's records must also have
//!   seqs inside its signed range. So each placed record's seq is one no other placed
//!   record of the segment has: copies are never returned beside their originals.
//!
//! One exception: when the signed index's user marks (FORMAT.md §3.3) name the only records
//! of a block that can be the queried user's (`Block::pick`), the others are passed over
//! after their framing, CRC, seq and time checks, without their chain hash or tag. A record
//! altered so as to leave the user is one the marks still pick, so its tag check reports
//! it; a picked record missing from the block is reported too.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::plan::{Block, Ctx, Expect, Round, Source};
use crate::crypto::{self, Hash, KeyId, Signer, Signers};
use crate::error::{Error, IntegrityKind};
use crate::format::index::KeyFields;
use crate::format::record::{FRAME_HEADER_LEN, FrameError, TAG_LEN, decode_frame};
use crate::format::{DecodeError, DecodeErrorKind};
use crate::segment::scan::{self, MemWindow};
use crate::time::Timestamp;

/// Bytes of a batch's buffer, counted while any match still refers to it; returned to
/// the pool when the last one lets go.
pub(crate) struct Buf {
    pub bytes: Vec<u8>,
    pool: Arc<BufPool>,
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.pool
            .held
            .fetch_sub(self.bytes.len(), Ordering::Relaxed);
        let mut free = self.pool.free.lock();
        let bytes = std::mem::take(&mut self.bytes);
        if free.len() < POOLED_BUFFERS {
            free.push(bytes);
        } else if let Some(small) = free
            .iter_mut()
            .min_by_key(|v| v.capacity())
            .filter(|v| v.capacity() < bytes.capacity())
        {
            // Keep the larger ones: a spare too small for a batch is no spare.
            *small = bytes;
        }
    }
}

/// Spare buffers kept for reuse (saves zeroing and page faults per batch).
const POOLED_BUFFERS: usize = 2 * WINDOW;

/// Batch buffers of one query: bytes held, and spares.
#[derive(Default)]
pub(crate) struct BufPool {
    /// Bytes of buffers some match still refers to.
    pub held: AtomicUsize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// A buffer of exactly `n` bytes (contents unspecified): the smallest spare that holds
    /// `n` bytes, or a new one. A spare is never grown: growing copied its old contents
    /// and faulted in fresh pages, where a new zeroed allocation costs neither.
    fn take(&self, n: usize) -> Vec<u8> {
        let spare = {
            let mut free = self.free.lock();
            let fit = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= n)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            fit.map(|i| free.swap_remove(i))
        };
        match spare {
            Some(mut v) => {
                v.resize(n, 0);
                v
            }
            None => vec![0; n],
        }
    }
}

/// Where a match's bytes are.
pub(crate) enum Payload {
    /// In a batch buffer, at `at`.
    Raw(Arc<Buf>, u32),
    /// Given up to bound memory: read again from the file when released.
    Spilled,
}

/// A record that passed its checks and matches the query.
pub(crate) struct Match {
    pub ts: Timestamp,
    pub seq: u64,
    pub key_id: KeyId,
    pub src: u16,
    pub offset: u64,
    pub frame_len: u32,
    pub sealed_len: u32,
    /// Chain hash (verified mode; computed on demand otherwise).
    pub hash: Option<Hash>,
    pub payload: Payload,
}

/// One item of a block, in file order.
pub(crate) enum Item {
    Err(Error),
    Match(Match),
    /// A record whose tag could not be checked: the key provider has no key of the id it
    /// names, or failed to give it. The consumer reports the first per segment and key id,
    /// and counts the others ([`crate::QueryStats::unchecked`]).
    Unchecked(KeyId, Error),
}

/// What reading one block found.
pub(crate) struct BlockOut {
    /// Seq and prev_hash of its first readable record.
    pub first: Option<(u64, Hash)>,
    /// Seq after its last readable record and that record's chain hash (verified mode).
    pub last: Option<(u64, Option<Hash>)>,
    /// The block had unreadable bytes, so `last` does not continue from `first`.
    pub broken: bool,
    pub items: Vec<Item>,
    pub records: u64,
    /// Records passed over unchecked (see the module's documentation).
    pub passed: u64,
    /// Verified mode: no link fault or unreadable bytes after its first record, so its
    /// records are placed in the chain if its first one is (the consumer decides that).
    pub placed_end: bool,
    /// Matches not returned: they follow a fault in this block (or the block is
    /// [`Block::withheld`]), so they cannot be placed in the chain.
    pub withheld: u64,
}

/// What reading one batch found.
pub(crate) struct BatchOut {
    pub blocks: Vec<BlockOut>,
    pub bytes: u64,
}

/// Per-thread verification state: signers by key id. A key the provider failed to give is
/// not asked for again (every record naming that id gets the same error).
pub(crate) struct Verifier {
    signers: Signers,
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier {
            signers: Signers::default(),
        }
    }

    fn signer(&mut self, ctx: &Ctx, id: KeyId) -> Result<Option<&Signer>, crate::crypto::KeyError> {
        self.signers.get_or_failed(&*ctx.keys, &ctx.org, id)
    }
}

fn invalid(offset: u64, why: &'static str) -> DecodeError {
    DecodeError {
        structure: "record",
        field: "frame",
        offset,
        kind: DecodeErrorKind::Invalid(why),
    }
}

/// Reads and checks batch `i` of `round`.
pub(crate) fn run_batch(
    ctx: &Ctx,
    sources: &[Source],
    round: &Round,
    i: usize,
    v: &mut Verifier,
    pool: &Arc<BufPool>,
) -> BatchOut {
    let (a, b) = round.batches.get(i).copied().unwrap_or((0, 0));
    let blocks = round.blocks.get(a..b).unwrap_or_default();
    let mut out = BatchOut {
        blocks: Vec::with_capacity(blocks.len()),
        bytes: 0,
    };
    let (Some(first), Some(src)) = (
        blocks.first(),
        blocks.first().and_then(|b| sources.get(b.src)),
    ) else {
        return out;
    };
    if let Some(e) = &first.damage {
        out.blocks.push(BlockOut {
            first: None,
            last: None,
            broken: true,
            items: vec![Item::Err(Error::Corrupt {
                file: src.path.clone(),
                offset: first.start,
                seq: None,
                source: e.clone(),
            })],
            records: 0,
            passed: 0,
            placed_end: false,
            withheld: 0,
        });
        return out;
    }
    // Lay the blocks out back to back; blocks adjacent in the file form runs read at once.
    let mut runs: Vec<(u64, u64, usize)> = Vec::new(); // (file start, file end, buffer pos)
    let mut at: Vec<usize> = Vec::with_capacity(blocks.len());
    let mut total = 0usize;
    for b in blocks {
        match runs.last_mut() {
            Some(r) if r.1 == b.start => {
                at.push(r.2 + (b.start - r.0) as usize);
                total += (b.end - b.start) as usize;
                r.1 = b.end;
            }
            Some(r) if b.end == r.0 => {
                // Reverse order: the block sits just before the run; shift the run's blocks.
                let len = (b.end - b.start) as usize;
                for p in at.iter_mut().rev().take_while(|p| **p >= r.2) {
                    *p += len;
                }
                at.push(r.2);
                total += len;
                r.0 = b.start;
            }
            _ => {
                at.push(total);
                runs.push((b.start, b.end, total));
                total += (b.end - b.start) as usize;
            }
        }
    }
    let mut bytes = pool.take(total);
    for &(start, end, pos) in &runs {
        let Some(dst) = bytes.get_mut(pos..pos + (end - start) as usize) else {
            continue;
        };
        if let Err(e) = src.file.read_exact_at(dst, start) {
            out.blocks.push(BlockOut {
                first: None,
                last: None,
                broken: true,
                items: vec![Item::Err(Error::io("read segment", &src.path, e))],
                records: 0,
                passed: 0,
                placed_end: false,
                withheld: 0,
            });
            return out;
        }
    }
    out.bytes = bytes.len() as u64;
    pool.held.fetch_add(bytes.len(), Ordering::Relaxed);
    let buf = Arc::new(Buf {
        bytes,
        pool: Arc::clone(pool),
    });
    for (block, pos) in blocks.iter().zip(at) {
        out.blocks.push(run_block(ctx, src, block, &buf, pos, v));
    }
    out
}

/// Walks one block's frames inside `buf`, where the block starts at `pos`.
fn run_block(
    ctx: &Ctx,
    src: &Source,
    block: &Block,
    buf: &Arc<Buf>,
    pos: usize,
    v: &mut Verifier,
) -> BlockOut {
    let mut out = BlockOut {
        first: None,
        last: None,
        broken: false,
        items: Vec::new(),
        records: 0,
        passed: 0,
        placed_end: true,
        withheld: 0,
    };
    // Verified mode: whether the record at hand is placed in the chain, given that the
    // block's first one is (the consumer decides that). A copy of an authentic record
    // passes its tag; only its link shows it is not where the chain leads. So after a
    // broken link no record of the block is placed, unless the break is the doing of an
    // altered record just before (its tag fails) and the seqs go on; after unreadable
    // bytes, only from a record whose seq is past every seq before them. Records of a
    // signed block must also have seqs inside its signed range. Unplaced records are read
    // and checked, not returned.
    let mut placed = !(ctx.verify && block.withheld);
    let signed_from = match block.expect {
        Expect::Seq(n) | Expect::SeqPrev(n, _) => Some(n),
        Expect::Nothing => None,
    };
    let signed_to = signed_from
        .zip(block.records)
        .map(|(n, c)| n.saturating_add(c));
    let mut floor = signed_from;
    let mut after_damage = false;
    let mut prev_failed = false;
    let pick = block.pick.as_deref();
    let mut picked = 0usize;
    let path = &src.path;
    let f = &ctx.filter;
    let mut off = block.start;
    let mut head: Option<Hash> = None;
    let mut next_seq: Option<u64> = None;
    let rel = |o: u64| pos + (o - block.start) as usize;
    while off < block.end {
        let slice = buf.bytes.get(rel(off)..rel(block.end)).unwrap_or_default();
        let rec = match decode_frame(slice, off) {
            Ok(rec) => rec,
            Err(e) => {
                let source = match e {
                    FrameError::Corrupt(e) => e,
                    FrameError::Incomplete { .. } => {
                        invalid(off, "frame runs past the end of its index block")
                    }
                };
                out.items.push(Item::Err(Error::Corrupt {
                    file: path.clone(),
                    offset: off,
                    seq: None,
                    source,
                }));
                out.broken = true;
                after_damage = true;
                head = None;
                next_seq = None;
                let mut win = MemWindow {
                    base: off,
                    bytes: slice,
                };
                match scan::resync(&mut win, off + 1, None) {
                    Ok(Some(next)) => {
                        off = next;
                        continue;
                    }
                    _ => break,
                }
            }
        };
        let fields = rec.fields;
        let (seq, ts) = (fields.seq, fields.occurred_at);
        let len = rec.len();
        out.records += 1;
        // The block's link to what precedes it is its first frame's; after damage at its
        // start there is nothing to check it against (the damage is the finding).
        if out.first.is_none() && !out.broken {
            out.first = Some((seq, fields.prev));
        }
        let integrity = |kind| {
            Item::Err(Error::Integrity {
                file: path.clone(),
                offset: off,
                seq: Some(seq),
                kind,
            })
        };
        // Link checks: reported; in verified mode the record and the rest of the block are
        // withheld (not placed in the chain).
        if let Some(expected) = next_seq
            && expected != seq
        {
            out.items.push(integrity(IntegrityKind::SeqMismatch {
                expected,
                found: seq,
            }));
            placed &= !ctx.verify;
        } else if let Some(expected) = head
            && expected != fields.prev
        {
            out.items.push(integrity(IntegrityKind::ChainBreak {
                expected,
                found: fields.prev,
            }));
            placed &= !ctx.verify || prev_failed;
        }
        if ctx.verify {
            if after_damage && floor.is_none_or(|f| seq < f) {
                placed = false;
            }
            if signed_from.is_some_and(|f| seq < f) || signed_to.is_some_and(|t| seq >= t) {
                placed = false;
            }
        }
        after_damage = false;
        floor = Some(floor.map_or(seq, |f| f.max(seq)).max(seq.saturating_add(1)));
        let chosen = pick.is_none_or(|p| p.binary_search(&seq).is_ok());
        picked += usize::from(chosen && pick.is_some());
        out.passed += u64::from(!chosen);
        let hash = (ctx.verify && chosen).then(|| crypto::chain_hash(rec.chained_bytes()));
        // Record checks: a failure replaces the record.
        let mut problem = None;
        // Its tag does not verify, or cannot be checked: it may have been altered.
        let mut tag_fails = false;
        if ts < src.month_start || ts >= src.month_end {
            problem = Some(integrity(IntegrityKind::WrongMonth));
        } else if ts < block.lo || ts > block.hi {
            problem = Some(integrity(IntegrityKind::IndexMismatch {
                what: format!(
                    "occurred_at {ts} is outside the bounds {}..={} of its index block",
                    block.lo, block.hi
                ),
            }));
        } else if let Some(h) = &hash {
            let id = fields.key_id;
            problem = match v.signer(ctx, id) {
                Err(source) => Some(Item::Unchecked(
                    id,
                    Error::RecordKey {
                        file: path.clone(),
                        offset: off,
                        seq: Some(seq),
                        org: ctx.org.to_string(),
                        key_id: id,
                        source,
                    },
                )),
                Ok(None) => Some(Item::Unchecked(
                    id,
                    Error::Integrity {
                        file: path.clone(),
                        offset: off,
                        seq: Some(seq),
                        kind: IntegrityKind::UnknownKey { key_id: id },
                    },
                )),
                Ok(Some(s)) if !s.verify_record(&ctx.org, h, &rec.tag) => {
                    Some(integrity(IntegrityKind::TagMismatch { key_id: id }))
                }
                Ok(Some(_)) => None,
            };
            tag_fails = problem.is_some();
        }
        head = hash;
        next_seq = Some(seq.saturating_add(1));
        prev_failed = tag_fails;
        if let Some(p) = problem {
            out.items.push(p);
            off += len;
            continue;
        }
        if chosen && f.in_range(ts) && f.past_resume(ts, seq) {
            let matched = if f.has_fields() {
                match KeyFields::parse(rec.sealed) {
                    Ok(k) => f.fields_match(&k),
                    Err(source) => {
                        out.items.push(Item::Err(Error::Corrupt {
                            file: path.clone(),
                            offset: off,
                            seq: Some(seq),
                            source,
                        }));
                        off += len;
                        continue;
                    }
                }
            } else {
                true
            };
            if matched && !placed {
                out.withheld += 1;
            } else if matched {
                let payload = Payload::Raw(Arc::clone(buf), rel(off) as u32);
                out.items.push(Item::Match(Match {
                    ts,
                    seq,
                    key_id: fields.key_id,
                    src: block.src as u16,
                    offset: off,
                    frame_len: len as u32,
                    sealed_len: rec.sealed.len() as u32,
                    hash,
                    payload,
                }));
            }
        }
        off += len;
    }
    if !out.broken && off != block.end {
        out.items.push(Item::Err(Error::Corrupt {
            file: path.clone(),
            offset: off,
            seq: None,
            source: invalid(off, "last frame does not end at its index block's end"),
        }));
    }
    // What the signed index says of the block, against what its bytes hold.
    let mismatch = |first: Option<(u64, Hash)>, what: String| {
        Item::Err(Error::Integrity {
            file: path.clone(),
            offset: block.start,
            seq: first.map(|(s, _)| s),
            kind: IntegrityKind::IndexMismatch { what },
        })
    };
    if let Some(n) = block.records
        && !out.broken
        && n != out.records
    {
        let what = format!(
            "its signed index block holds {n} records, the segment {}",
            out.records
        );
        out.items.push(mismatch(out.first, what));
    }
    if let Some(p) = pick
        && !out.broken
        && picked != p.len()
    {
        let what = format!(
            "its signed index marks {} records of this block as the user's, the segment holds {picked} of them",
            p.len()
        );
        out.items.push(mismatch(out.first, what));
    }
    out.last = next_seq.map(|n| (n, head));
    out.placed_end = placed;
    out
}

/// The frame bytes of a match inside its payload buffer.
pub(crate) fn frame_of<'a>(m: &Match, buf: &'a [u8], at: usize) -> Option<&'a [u8]> {
    buf.get(at..at + m.frame_len as usize)
        .filter(|f| f.len() >= FRAME_HEADER_LEN + TAG_LEN)
}

// ---------------------------------------------------------------------------------------
// Helper threads
// ---------------------------------------------------------------------------------------

/// Batches read ahead of the consumer at most (memory bound: this many × BATCH_BYTES).
pub(crate) const WINDOW: usize = 6;

struct PoolState {
    results: BTreeMap<usize, BatchOut>,
    /// The consumer has taken every batch below this.
    taken: usize,
}

struct Shared {
    ctx: Arc<Ctx>,
    sources: Arc<Vec<Source>>,
    round: Arc<Round>,
    bufs: Arc<BufPool>,
    next: AtomicUsize,
    cancel: AtomicBool,
    state: Mutex<PoolState>,
    cv: Condvar,
}

/// Reads a round's batches in order: the consumer takes them one by one; helper threads
/// (and the consumer, while it waits) read ahead, at most [`WINDOW`] batches.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    verifier: Verifier,
}

impl Pool {
    pub fn new(
        ctx: Arc<Ctx>,
        sources: Arc<Vec<Source>>,
        round: Arc<Round>,
        bufs: Arc<BufPool>,
        helpers: usize,
    ) -> Pool {
        let shared = Arc::new(Shared {
            ctx,
            sources,
            round,
            bufs,
            next: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new(PoolState {
                results: BTreeMap::new(),
                taken: 0,
            }),
            cv: Condvar::new(),
        });
        let mut handles = Vec::new();
        for n in 0..helpers {
            let s = Arc::clone(&shared);
            let h = std::thread::Builder::new()
                .name(format!("auditlog-query-{n}"))
                .spawn(move || helper(&s));
            // Without the thread the consumer reads every batch itself.
            if let Ok(h) = h {
                handles.push(h);
            }
        }
        Pool {
            shared,
            handles,
            verifier: Verifier::new(),
        }
    }

    /// Batch `i` (the consumer asks for 0, 1, 2, … in order).
    pub fn take(&mut self, i: usize) -> BatchOut {
        let s = &*self.shared;
        let n = s.round.batches.len();
        loop {
            {
                let mut st = s.state.lock();
                if let Some(r) = st.results.remove(&i) {
                    st.taken = i + 1;
                    s.cv.notify_all();
                    return r;
                }
                // Someone is reading it: wait unless there is work to do meanwhile.
                let j = s.next.load(Ordering::Acquire);
                if j > i && (j >= n || j >= i + WINDOW || self.handles.is_empty()) {
                    s.cv.wait(&mut st);
                    continue;
                }
            }
            let j = s.next.fetch_add(1, Ordering::AcqRel);
            if j >= n {
                continue;
            }
            let r = run_batch(&s.ctx, &s.sources, &s.round, j, &mut self.verifier, &s.bufs);
            if j == i {
                let mut st = s.state.lock();
                st.taken = i + 1;
                s.cv.notify_all();
                return r;
            }
            s.state.lock().results.insert(j, r);
            s.cv.notify_all();
        }
    }
}

fn helper(s: &Shared) {
    let mut v = Verifier::new();
    let n = s.round.batches.len();
    loop {
        {
            let mut st = s.state.lock();
            while !s.cancel.load(Ordering::Acquire)
                && s.next.load(Ordering::Acquire) >= st.taken + WINDOW
            {
                s.cv.wait(&mut st);
            }
        }
        if s.cancel.load(Ordering::Acquire) {
            return;
        }
        let j = s.next.fetch_add(1, Ordering::AcqRel);
        if j >= n {
            return;
        }
        let r = run_batch(&s.ctx, &s.sources, &s.round, j, &mut v, &s.bufs);
        s.state.lock().results.insert(j, r);
        s.cv.notify_all();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::Release);
        {
            let _st = self.shared.state.lock();
            self.shared.cv.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
