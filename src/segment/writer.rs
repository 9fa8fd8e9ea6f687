//! Appending records to one segment: framing, chaining, signing, group commit.
//!
//! Three locks, taken in the order `commit` → `io` → `state` when more than one is needed
//! (`commit` is never held across I/O), plus `index_lock`, which serialises index writes and is
//! taken before `io`, and `rounds`, taken after `commit` and only for an instant:
//! - `state` guards the chain head, the next seq and the in-memory buffer of framed records
//!   not yet handed to the OS. Appenders hold it only to frame one record (or one batch).
//! - `io` guards the file. Whoever holds it writes out everything buffered so far.
//! - `commit` elects one leader at a time for durable appends (group commit). The leader
//!   takes the whole buffer, writes it and fsyncs once; appenders that arrive meanwhile wait
//!   for its round to end (`rounds`, taken after `commit`, held for an instant) and are all
//!   woken together when it does, and the next leader covers everything they appended.
//!   Before taking the buffer a leader briefly gathers: it waits until as many records are
//!   buffered as there were waiters at the last fsync, for at most the last fsync's duration
//!   (capped at 4 ms). A lone appender never waits; with N concurrent appenders, one fsync
//!   covers about N records instead of alternating halves.
//!
//! After a failed write or fsync the writer is poisoned: every later append fails with
//! [`Error::WriterFailed`] until the log is reopened, and recovery decides from the bytes on
//! disk what survived. It never retries an fsync and assumes success. Retirement lets go of
//! a poisoned writer (its descriptor closed, its unwritten buffer dropped) and keeps only a
//! `Failed` marker, which refuses the segment's appends with the same error.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::scan::{IndexBuilder, Tally};
use super::{DirSync, fsync_dir, index_file, index_file_name};
use crate::crypto::{self, Hash, Signer, Tag};
use crate::entry::SealedEvent;
use crate::error::{Error, Result};
use crate::event::OrgId;
use crate::format::header::{SegmentHeader, SegmentId};
use crate::format::record::{FrameFields, encode_frame};
use crate::time::Timestamp;

/// What an append returns: where the record sits in the chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// The org.
    pub org_id: String,
    /// Month of the segment (`YYYY-MM`).
    pub month: crate::time::Month,
    /// Sequence number within (org, month).
    pub seq: u64,
    /// Chain hash of the record.
    pub hash: Hash,
}

struct WriterState {
    tally: Tally,
    /// Logical end: file bytes written plus `buf`.
    end: u64,
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: usize,
    /// While a commit leader gathers, the number of buffered records it waits for (see
    /// module docs); 0 otherwise. Only the append that reaches it wakes the leader: one
    /// wake-up per round, not one per record.
    gathering: usize,
}

struct IoState {
    file: File,
    written: u64,
    synced: u64,
    /// The previous buffer, kept for reuse.
    spare: Vec<u8>,
}

/// Group-commit bookkeeping.
struct Commit {
    /// A leader is writing and fsyncing.
    leader: bool,
    /// [`SegmentWriter::waiters`] when the last fsync finished: how many records the next one
    /// should cover.
    last_waiters: usize,
    /// Duration of the last write + fsync.
    last_fsync: Duration,
}

/// Longest a commit leader waits for more records.
const MAX_GATHER: Duration = Duration::from_millis(4);

/// The append side of one segment file.
pub(crate) struct SegmentWriter {
    org: OrgId,
    header: SegmentHeader,
    genesis: Hash,
    path: PathBuf,
    index_path: PathBuf,
    state: Mutex<WriterState>,
    /// Signalled by appenders while a leader gathers.
    gather_cv: Condvar,
    io: Mutex<IoState>,
    commit: Mutex<Commit>,
    /// Group commits finished, successful or not (advanced with `commit` held). A
    /// `std::sync` pair, not `parking_lot`'s: see [`SegmentWriter::commit_upto`].
    rounds: std::sync::Mutex<u64>,
    round_done: std::sync::Condvar,
    /// Threads inside a durable flush.
    waiters: AtomicUsize,
    durable: AtomicU64,
    /// Shared with the [`Parked`] state taken from this writer and the writer resumed from
    /// it: a failure seen through any of them poisons the segment for all.
    poison: Arc<Poison>,
    index_written_at: AtomicU64,
    /// Held for a whole index write, so that two never interleave (taken before `io`).
    index_lock: Mutex<()>,
    /// The log's use clock when this writer was last handed to an appender.
    last_used: AtomicU64,
    /// [`SegmentWriter::park`] took its state: it appends nothing and writes no index again.
    parked: AtomicBool,
}

/// Whether a failed write or fsync has poisoned a segment's writer, and why.
#[derive(Default)]
struct Poison {
    failed: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Poison {
    fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The [`Error::WriterFailed`] that every append to the segment `id` of `org` gets once
    /// it is poisoned, whether its writer is open, parked or retired ([`Failed`]).
    fn error(&self, org: &OrgId, id: SegmentId) -> Error {
        Error::WriterFailed {
            org: org.to_string(),
            segment: id.to_string(),
            cause: self.cause.lock().clone().unwrap_or_default(),
        }
    }
}

/// What retirement keeps of a writer poisoned by a failed write or fsync (or a close that
/// panicked), once it has let go of the writer: no descriptor, no buffer, no chain state;
/// the segment and its poison, shared with every reference to the writer and its parked
/// state, so that its appends keep failing with the same [`Error::WriterFailed`] and the
/// segment is never reopened (recovered) by this process. After a failed fsync the page
/// cache may show bytes that are not on disk: only a reopen of the log, whose recovery reads
/// the file afresh, brings the segment back.
pub(crate) struct Failed {
    org: OrgId,
    id: SegmentId,
    poison: Arc<Poison>,
}

impl Failed {
    /// The error an append to the segment gets.
    pub fn error(&self) -> Error {
        self.poison.error(&self.org, self.id)
    }
}

/// The state of a writer closed by [`SegmentWriter::park`]: what reopening its segment would
/// otherwise rebuild by reading the file (chain head, seqs, the index builder), kept so that
/// the reopen ([`SegmentWriter::unpark`]) reads nothing. It holds no file descriptor.
pub(crate) struct Parked {
    header: SegmentHeader,
    genesis: Hash,
    tally: Tally,
    /// Bytes of the file fsynced when the writer was parked (the rest was written, not
    /// fsynced: under `Durability::Never`).
    durable: u64,
    index_written_at: u64,
    /// Heap bytes held, as the log's budget for parked writers counts them.
    bytes: usize,
    /// The parked writer's: a reference to it that outlives the park may still fsync (a
    /// `prev` link, `Log::sync`), and a failure it meets must poison the resumed writer.
    poison: Arc<Poison>,
}

impl Parked {
    /// Heap bytes held (the index builder's).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes fsynced and bytes written.
    #[cfg(test)]
    pub fn durable_of_written(&self) -> (u64, u64) {
        (self.durable, self.tally.valid_end)
    }

    /// Whether every byte of the segment was fsynced. Never once a reference to the writer
    /// that outlived its park has poisoned it: settling it reports the failure.
    pub fn is_durable(&self) -> bool {
        !self.poison.is_failed() && self.durable >= self.tally.valid_end
    }

    /// The [`Failed`] marker of the segment if a reference to the writer that outlived its
    /// park has poisoned it: it must then not be resumed (nor recovered) in this process.
    pub fn failed(&self) -> Option<Failed> {
        self.poison.is_failed().then(|| Failed {
            org: self.header.org.clone(),
            id: self.header.id,
            poison: Arc::clone(&self.poison),
        })
    }

    /// Poisons the parked state as a failed fsync through a reference to its writer that
    /// outlived the park would.
    #[cfg(test)]
    pub fn fail_for_test(&self) {
        *self.poison.cause.lock() = Some("fsync segment: Input/output error (test)".into());
        self.poison.failed.store(true, Ordering::Release);
    }

    /// Whether the index on disk covers the whole segment.
    pub fn index_is_current(&self) -> bool {
        self.index_written_at >= self.tally.valid_end
    }

    /// What the writer resumed from this state would refuse an append of `n` records with
    /// ([`SegmentWriter::check_not_failed`], [`SegmentWriter::check_seq_room`]), without
    /// resuming it.
    pub fn check_append(&self, n: usize) -> Result<()> {
        if self.poison.is_failed() {
            return Err(self.poison.error(&self.header.org, self.header.id));
        }
        let next = self.tally.next_seq;
        if next.checked_add(n as u64).is_none() {
            return Err(Error::SeqExhausted {
                org: self.header.org.to_string(),
                segment: self.header.id.to_string(),
                next,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentWriter({})", self.path.display())
    }
}

/// A consistent view of a writer's chain, for links and indexes.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub count: u64,
    pub head: Hash,
    /// Logical end offset after the last counted record.
    pub end: u64,
}

impl SegmentWriter {
    /// Creates a new segment file with `header` and makes it durable (file and directory).
    pub fn create(dir: &Path, header: SegmentHeader, interval: u32) -> Result<SegmentWriter> {
        let path = dir.join(super::segment_file_name(header.id));
        let bytes = header.encode();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io("create segment", &path, e))?;
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_all()) {
            // Nothing but (part of) a header can be in the file: remove it, so that a retry
            // in this process can create it again. Should that fail too, or the process die
            // before, the next recovery moves the partial header aside (FORMAT.md §6).
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(Error::io("write segment header", &path, e));
        }
        fsync_dir(dir)?;
        let genesis = crypto::sha256(&bytes);
        let tally = Tally {
            head: genesis,
            next_seq: header.first_seq,
            count: 0,
            valid_end: bytes.len() as u64,
            max_seq: None,
            index: IndexBuilder::new(interval, dir),
        };
        Ok(Self::assemble(dir, header, genesis, path, file, tally))
    }

    /// Resumes a segment that recovery has checked and repaired; `tally` ends at its end.
    pub fn resume(
        dir: &Path,
        header: SegmentHeader,
        genesis: Hash,
        file: File,
        tally: Tally,
    ) -> SegmentWriter {
        let path = dir.join(super::segment_file_name(header.id));
        Self::assemble(dir, header, genesis, path, file, tally)
    }

    fn assemble(
        dir: &Path,
        header: SegmentHeader,
        genesis: Hash,
        path: PathBuf,
        file: File,
        tally: Tally,
    ) -> Self {
        let end = tally.valid_end;
        SegmentWriter {
            org: header.org.clone(),
            index_path: dir.join(index_file_name(header.id)),
            header,
            genesis,
            path,
            state: Mutex::new(WriterState {
                tally,
                end,
                buf: Vec::new(),
                buffered: 0,
                gathering: 0,
            }),
            gather_cv: Condvar::new(),
            io: Mutex::new(IoState {
                file,
                written: end,
                synced: end,
                spare: Vec::new(),
            }),
            commit: Mutex::new(Commit {
                leader: false,
                last_waiters: 0,
                last_fsync: Duration::ZERO,
            }),
            rounds: std::sync::Mutex::new(0),
            round_done: std::sync::Condvar::new(),
            waiters: AtomicUsize::new(0),
            durable: AtomicU64::new(end),
            poison: Arc::default(),
            index_written_at: AtomicU64::new(0),
            index_lock: Mutex::new(()),
            last_used: AtomicU64::new(0),
            parked: AtomicBool::new(false),
        }
    }

    /// The stamp of the file now. For a writer being closed, with its buffer written: no
    /// append can reach the file while its month is closing, and a flush by `Log::sync` or
    /// a prev link finds nothing left to write, so this is the stamp the file keeps until
    /// a writer is opened on it again.
    pub fn stamp(&self) -> Result<super::FileStamp> {
        let io = self.io.lock();
        let meta = io
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.path, e))?;
        Ok(super::FileStamp::of(&meta))
    }

    /// Takes the writer's state out so it can be closed and reopened later without reading
    /// its file ([`SegmentWriter::unpark`]). Only for an idle writer whose records have all
    /// been written to the file (flushed; fsynced or not) and whose index builder holds no
    /// spill file: `admit` is asked with the heap bytes the state would keep and may refuse.
    /// On `None` the writer is unchanged. On `Some` it is spent: a reference to it that
    /// outlives the close may still flush or fsync (nothing is left to write), but it takes
    /// no append and writes no index again. A poisoned writer is never parked (a parked
    /// state resumes): retirement keeps its [`SegmentWriter::failed`] marker instead.
    pub fn park(&self, admit: impl FnOnce(usize) -> bool) -> Option<Parked> {
        let _serial = self.index_lock.lock();
        let io = self.io.lock();
        let mut st = self.state.lock();
        if self.is_failed()
            || self.parked.load(Ordering::Acquire)
            || !st.buf.is_empty()
            || io.written != st.end
            || st.tally.index.has_spill_file()
            || st.tally.index.has_spill_error()
        {
            return None;
        }
        st.tally.index.shrink();
        let bytes = st.tally.index.held_bytes();
        if !admit(bytes) {
            return None;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let interval = st.tally.index.interval;
        let index = std::mem::replace(&mut st.tally.index, IndexBuilder::new(interval, dir));
        let t = &st.tally;
        let tally = Tally {
            head: t.head,
            next_seq: t.next_seq,
            count: t.count,
            valid_end: t.valid_end,
            max_seq: t.max_seq,
            index,
        };
        self.parked.store(true, Ordering::Release);
        Some(Parked {
            header: self.header.clone(),
            genesis: self.genesis,
            tally,
            durable: io.synced,
            index_written_at: self.index_written_at.load(Ordering::Acquire),
            bytes,
            poison: Arc::clone(&self.poison),
        })
    }

    /// Reopens a parked writer on `file`, its segment opened again. The caller has checked
    /// that the file is as the writer left it (its [`FileStamp`](super::FileStamp)).
    pub fn unpark(dir: &Path, parked: Parked, file: File) -> SegmentWriter {
        let path = dir.join(super::segment_file_name(parked.header.id));
        let mut w = Self::assemble(dir, parked.header, parked.genesis, path, file, parked.tally);
        w.io.lock().synced = parked.durable;
        w.durable.store(parked.durable, Ordering::Release);
        w.index_written_at
            .store(parked.index_written_at, Ordering::Release);
        w.poison = parked.poison;
        w
    }

    pub fn id(&self) -> SegmentId {
        self.header.id
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes fsynced so far.
    #[cfg(test)]
    pub fn durable_len(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether everything appended so far is durable ([`SegmentWriter::sync`] has nothing
    /// to do). Never for a poisoned writer: its `sync` has its failure to report.
    pub fn is_durable(&self) -> bool {
        let end = self.state.lock().end;
        !self.is_failed() && self.durable.load(Ordering::Acquire) >= end
    }

    /// Whether a failed write or fsync has poisoned the writer (it takes no more appends).
    pub fn is_failed(&self) -> bool {
        self.poison.is_failed()
    }

    /// The [`Failed`] marker that stands for this writer once retirement lets go of it, if
    /// it is poisoned.
    pub fn failed(&self) -> Option<Failed> {
        self.is_failed().then(|| Failed {
            org: self.org.clone(),
            id: self.header.id,
            poison: Arc::clone(&self.poison),
        })
    }

    /// Whether `n` more records fit: every record's seq, and the seq after the last (an
    /// index's `first_seq + record_count`), must fit in a u64. Only a damaged or forged
    /// file claims seqs near 2^64.
    fn seq_room(&self, next_seq: u64, n: usize) -> Result<()> {
        if next_seq.checked_add(n as u64).is_none() {
            return Err(Error::SeqExhausted {
                org: self.org.to_string(),
                segment: self.header.id.to_string(),
                next: next_seq,
            });
        }
        Ok(())
    }

    /// [`Error::WriterFailed`] if a failed write or fsync has poisoned the writer: an
    /// append to it would fail. (`Log::append_batch` asks every writer of a batch first,
    /// so that a batch that would fail on one of them buffers nothing on the others.)
    pub fn check_not_failed(&self) -> Result<()> {
        match self.is_failed() {
            true => Err(self.failed_error()),
            false => Ok(()),
        }
    }

    /// [`Error::SeqExhausted`] if `n` more records would not fit now (`append` checks
    /// again under its lock: an append from another thread in between can still use
    /// them up).
    pub fn check_seq_room(&self, n: usize) -> Result<()> {
        let next_seq = self.state.lock().tally.next_seq;
        self.seq_room(next_seq, n)
    }

    fn failed_error(&self) -> Error {
        self.poison.error(&self.org, self.header.id)
    }

    /// Poisons the writer as a failed write or fsync would.
    #[cfg(test)]
    pub fn fail_for_test(&self) {
        let _ = self.poison(Error::io(
            "fsync segment",
            &self.path,
            std::io::Error::from_raw_os_error(5),
        ));
    }

    /// Poisons the writer with `e` as the cause (the first cause is kept) and returns `e`:
    /// after a failed write or fsync, or a close that panicked half way.
    pub fn poison(&self, e: Error) -> Error {
        let mut f = self.poison.cause.lock();
        if f.is_none() {
            *f = Some(e.to_string());
        }
        self.poison.failed.store(true, Ordering::Release);
        e
    }

    /// Frames, chains and signs `events` (all of this segment's month) as consecutive
    /// records, handing each one's receipt to `receipt` in order (the caller keeps them as
    /// it likes: a single append needs no vector). Returns the logical end offset after the
    /// last one and the bytes now buffered.
    pub fn append(
        &self,
        events: &[(&SealedEvent, Timestamp)],
        signer: &Signer,
        mut receipt: impl FnMut(Receipt),
    ) -> Result<(u64, usize)> {
        self.check_not_failed()?;
        if self.parked.load(Ordering::Acquire) {
            // Unreachable: a parked writer is in none of the log's maps, and appends find
            // writers only there. Were it reached, the state is gone: refuse, lose nothing.
            return Err(Error::SegmentClosing {
                org: self.org.to_string(),
                segment: self.header.id.to_string(),
            });
        }
        let mut st = self.state.lock();
        let st = &mut *st;
        self.seq_room(st.tally.next_seq, events.len())?;
        for (ev, ts) in events {
            let fields = FrameFields {
                seq: st.tally.next_seq,
                occurred_at: *ts,
                key_id: signer.key_id(),
                prev: st.tally.head,
            };
            let (sealed, openings) = ev.bytes.split_at(ev.sealed_len);
            let mut hash = Hash::ZERO;
            let org = &self.org;
            let len = encode_frame(&mut st.buf, &fields, sealed, openings, |chained| {
                hash = crypto::chain_hash(chained);
                let t: Tag = signer.record_tag(org, &hash);
                t
            }) as u64;
            st.tally
                .index
                .observe_terms(st.end, fields.seq, *ts, ev.terms.get(), ev.terms.mark);
            st.tally.head = hash;
            st.tally.next_seq += 1;
            st.tally.count += 1;
            st.tally.max_seq = Some(fields.seq);
            st.end += len;
            st.tally.valid_end = st.end;
            st.buffered += 1;
            receipt(Receipt {
                org_id: self.org.to_string(),
                month: self.header.id.month,
                seq: fields.seq,
                hash,
            });
        }
        if st.gathering != 0 && st.buffered >= st.gathering {
            self.gather_cv.notify_one();
        }
        Ok((st.end, st.buf.len()))
    }

    /// Makes every record up to logical offset `upto` reach the OS (`sync` false) or the
    /// disk (`sync` true). Concurrent durable callers share one write and one fsync.
    pub fn flush(&self, upto: u64, sync: bool) -> Result<()> {
        if !sync {
            let mut io = self.io.lock();
            self.check_not_failed()?;
            if io.written >= upto {
                return Ok(());
            }
            return self.write_out(&mut io, false);
        }
        // Not for a poisoned writer: whoever asks after the failure hears of it, like
        // `commit_upto`'s waiters (its records may have been written, not fsynced).
        if !self.is_failed() && self.durable.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let result = self.commit_upto(upto);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The durable half of [`SegmentWriter::flush`]: lead a group commit or wait for one.
    ///
    /// Waiters sleep on `round_done` and return without taking `commit` again when the
    /// round made their record durable. They used to wait on a `parking_lot` condition
    /// variable paired with `commit`: its `notify_all` moves the waiters onto the mutex's
    /// queue, and each is woken only when the one before it has run and unlocked. With 64
    /// appenders on two cores that chain of context switches took longer than the fsync,
    /// and the CPUs idled meanwhile. `std`'s condition variable wakes every waiter with one
    /// system call; they re-take only `rounds`, for an instant (`examples/profile_commit`:
    /// 1.15 context switches per event instead of 1.6, about 1.35× the events per second).
    fn commit_upto(&self, upto: u64) -> Result<()> {
        // Whether this flush is over: the writer failed, or the record is durable.
        let settled = || {
            if self.is_failed() {
                Some(Err(self.failed_error()))
            } else if self.durable.load(Ordering::Acquire) >= upto {
                Some(Ok(()))
            } else {
                None
            }
        };
        loop {
            // Without `commit` first: a waiter whose round covered it returns at once.
            if let Some(done) = settled() {
                return done;
            }
            let mut c = self.commit.lock();
            // Again with it: a round that ended while this thread waited for `commit` may
            // have failed (no fsync is ever retried) or covered its record.
            if let Some(done) = settled() {
                return done;
            }
            if c.leader {
                // Taken with `commit` held while a leader is at work: its round has not ended.
                let mut r = relock(self.rounds.lock());
                let round = *r;
                drop(c);
                while *r == round {
                    r = relock(self.round_done.wait(r));
                }
                continue;
            }
            c.leader = true;
            let (target, budget) = (c.last_waiters, c.last_fsync.min(MAX_GATHER));
            drop(c);
            let led = self.lead(target, budget);
            let mut c = self.commit.lock();
            c.leader = false;
            if let Ok(took) = led {
                c.last_fsync = took;
                c.last_waiters = self.waiters.load(Ordering::Relaxed);
            }
            *relock(self.rounds.lock()) += 1;
            drop(c);
            self.round_done.notify_all();
            led?;
        }
    }

    /// One group commit: gather, write everything buffered, fsync. Returns its duration.
    fn lead(&self, target: usize, budget: Duration) -> Result<Duration> {
        if target > 1 && !budget.is_zero() {
            let deadline = Instant::now() + budget;
            let mut st = self.state.lock();
            st.gathering = target;
            while st.buffered < target {
                if self.gather_cv.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            st.gathering = 0;
        }
        let start = Instant::now();
        let mut io = self.io.lock();
        self.write_out(&mut io, true)?;
        Ok(start.elapsed())
    }

    /// With `io` held: writes the buffer and optionally fsyncs.
    ///
    /// Refuses a poisoned writer, checked here with `io` held: every write and fsync is made
    /// here, so none follows a failure. Checks made before taking `io` are not enough: a
    /// commit leader checks under `commit`, while `write_index` and an unsynced flush (the
    /// flusher under `Never`, a query handing buffers to the OS) take `io` without
    /// `commit` and may fail in between. A leader that went on would fsync again after a
    /// failed fsync (on Linux the retry succeeds, and `durable` would cover bytes the
    /// kernel may have dropped), or write the next buffer at the stale `written` offset,
    /// where records that never reached the file belong, and call the end durable.
    fn write_out(&self, io: &mut IoState, sync: bool) -> Result<()> {
        self.check_not_failed()?;
        let mut bytes = std::mem::take(&mut io.spare);
        bytes.clear();
        let end = {
            let mut st = self.state.lock();
            std::mem::swap(&mut st.buf, &mut bytes);
            st.buffered = 0;
            st.end
        };
        if !bytes.is_empty() {
            if let Err(e) = io.file.write_all_at(&bytes, io.written) {
                return Err(self.poison(Error::io("write segment", &self.path, e)));
            }
            io.written = end;
        }
        // The spare buffer is kept for the next swap, cut back to `SPARE_MAX` if it grew
        // past it (a batch, or a `Never` buffer the flusher was late for): that memory
        // would otherwise stay with the writer for as long as it is open.
        bytes.clear();
        bytes.shrink_to(SPARE_MAX);
        io.spare = bytes;
        if sync && io.synced < io.written {
            if let Err(e) = io.file.sync_data() {
                return Err(self.poison(Error::io("fsync segment", &self.path, e)));
            }
            io.synced = io.written;
            self.durable.store(io.synced, Ordering::Release);
        }
        Ok(())
    }

    /// Writes out and fsyncs everything appended so far.
    pub fn sync(&self) -> Result<()> {
        let end = self.state.lock().end;
        self.flush(end, true)
    }

    /// Notes that the index on disk covers everything appended so far (a writer resumed
    /// from a segment whose valid index covers all of it), so that an index write is not
    /// due until more is appended.
    pub fn index_is_current(&self) {
        let end = self.state.lock().end;
        self.index_written_at.store(end, Ordering::Release);
    }

    /// Notes that the writer was handed out at tick `t` of the log's use clock.
    pub fn touch(&self, t: u64) {
        self.last_used.store(t, Ordering::Relaxed);
    }

    /// The tick of the last [`SegmentWriter::touch`].
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// The chain state as of now (including buffered records).
    pub fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        Snapshot {
            count: st.tally.count,
            head: st.tally.head,
            end: st.end,
        }
    }

    /// Bytes appended since the index was last written.
    pub fn unindexed_bytes(&self) -> u64 {
        self.state
            .lock()
            .end
            .saturating_sub(self.index_written_at.load(Ordering::Acquire))
    }

    /// Makes everything durable, then writes the signed sidecar index for exactly the
    /// durable bytes (temporary file, fsync, rename, directory fsync).
    ///
    /// The index is captured under the state lock as an [`IndexImage`] (the blocks already
    /// spilled are shared, the few in memory copied) and streamed to the file after every
    /// lock but `index` is released, so appenders wait only for the capture and memory does
    /// not grow with the index. Index writes of one segment are serialised by `index_lock`.
    ///
    /// A failure here never poisons the writer: the index is derived data. A failed spill is
    /// not this call's failure: the builder then keeps the blocks in memory, loses nothing,
    /// and the index is written all the same; [`SegmentWriter::take_spill_error`] reports it.
    ///
    /// [`IndexImage`]: super::scan::IndexImage
    ///
    /// Returns whether an index was written: not for a parked writer (its state writes it),
    /// nor for counts that FORMAT.md §3 does not allow (see below).
    pub fn write_index(&self, signer: &Signer, dir_sync: DirSync<'_>) -> Result<bool> {
        let _serial = self.index_lock.lock();
        let mut io = self.io.lock();
        self.check_not_failed()?;
        if self.parked.load(Ordering::Acquire) {
            // Its index builder left with the parked state, which writes the index when
            // the segment is reopened or the log closed.
            return Ok(false);
        }
        // Take the snapshot and the buffer under one state lock so they describe the same
        // bytes; then write and fsync them.
        let (head, image) = {
            let st = self.state.lock();
            // `tally.valid_end` is `st.end`: every append moves both.
            let head = st
                .tally
                .index_head(&self.header, self.genesis, signer.key_id());
            (head, st.tally.index.image())
        };
        // Anything appended after the snapshot is written too, which is harmless: the index
        // simply covers a prefix of the durable bytes.
        self.write_out(&mut io, true)?;
        drop(io);
        // A `first_seq + record_count` past 2^64: only a forged header or forged records get
        // here (FORMAT.md, "Seqs near 2^64"). Readers would reject such an index, so none is
        // written and the segment is read without it (or with an older index of a prefix).
        // The same for a section longer than its `u32` length allows (FORMAT.md §3: past
        // hundreds of millions of records in one segment). Its bytes count as indexed all
        // the same, so that the flusher, close and retirement do not try again (streaming
        // gigabytes to throw them away): counts and sections only grow, so they never fit.
        let fits = head.counts_fit() && image.section_lens().is_some();
        if fits {
            index_file::write(&self.index_path, &head, &image, signer, dir_sync)?;
        }
        self.index_written_at
            .store(head.covered_len, Ordering::Release);
        Ok(fits)
    }

    /// The first failure to move index blocks to their spill files since the last call, if
    /// any. Nothing was lost by it, but the writer's memory was not bounded until a later
    /// spill succeeded. `Log::close` reports it.
    pub fn take_spill_error(&self) -> Option<Error> {
        self.state.lock().tally.index.take_spill_error()
    }
}

/// Writes the bytes `fill` hands piece by piece to the sink it is given (buffered writes to
/// a temporary file) to `path`: temporary file, fsync, rename, then the directory fsynced as
/// `dir_sync` says.
pub(crate) fn write_atomically_with(
    path: &Path,
    dir_sync: DirSync<'_>,
    fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let mut out = BufWriter::with_capacity(64 * 1024, f);
    let written = {
        let mut sink = |b: &[u8]| out.write_all(b).map_err(|e| Error::io("write", &tmp, e));
        fill(&mut sink)
    }
    .and_then(|()| {
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))
    })
    .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e)));
    if let Err(e) = written {
        // A half-written temporary file (a full disk, say) is not left taking space.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        dir_sync.apply(dir)?;
    }
    Ok(())
}

/// Largest capacity a writer's spare buffer keeps after it was written out.
const SPARE_MAX: usize = 512 * 1024;

/// A `std::sync` lock or wait result, poisoned or not: what `rounds` guards (a counter only
/// ever incremented) is valid either way.
fn relock<G>(r: std::sync::LockResult<G>) -> G {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::format::header::SegmentId;
    use crate::time::Month;

    fn writer(dir: &Path) -> SegmentWriter {
        let header = SegmentHeader {
            compat_flags: 0,
            org: OrgId::new("acme").unwrap(),
            id: SegmentId {
                month: Month::new(2026, 3).unwrap(),
                part: 0,
            },
            ordinal: 0,
            first_seq: 1,
            created_at: Timestamp(0),
            prev: None,
            continues: None,
        };
        SegmentWriter::create(dir, header, 64).unwrap()
    }

    /// Buffers one record (raw bytes: the commit path never parses them); returns its end.
    fn buffer_one(w: &SegmentWriter) -> u64 {
        let mut st = w.state.lock();
        st.buf.extend_from_slice(b"record");
        st.buffered = 1;
        st.end += 6;
        st.end
    }

    /// A durable flush whose record a round made durable while the flush queued on
    /// `commit` returns; it does not lead (gather, fsync) a round of its own.
    #[test]
    fn writer_flush_made_durable_while_queued_does_not_lead() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let upto = buffer_one(&w);
        let mut c = w.commit.lock(); // the flush below queues on `commit`
        let took = std::thread::scope(|s| {
            let f = s.spawn(|| {
                let t = Instant::now();
                w.flush(upto, true).map(|()| t.elapsed())
            });
            while w.waiters.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            // Only so that the bug shows: let the flush pass its lock-free durable check.
            std::thread::sleep(Duration::from_millis(50));
            // The round of the leader before it (here: the test) makes the record durable
            // and hands `commit` back with its measurements.
            w.write_out(&mut w.io.lock(), true).unwrap();
            assert!(w.durable_len() >= upto);
            c.last_waiters = 64;
            c.last_fsync = Duration::from_millis(3);
            drop(c);
            f.join().unwrap().unwrap()
        });
        let c = w.commit.lock();
        assert_eq!(
            (c.last_waiters, c.last_fsync),
            (64, Duration::from_millis(3)),
            "the flush led a round (gathered, then fsynced) for a record already durable; \
             it returned after {took:?}"
        );
    }

    /// A leader whose write fails wakes every durable flush waiting for its round, with the
    /// writer's failure.
    #[test]
    fn writer_failed_round_wakes_every_waiter_with_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let upto = buffer_one(&w);
        // A read-only handle: the leader's write fails and poisons the writer.
        w.io.lock().file = File::open(w.path()).unwrap();
        let c = w.commit.lock();
        let results = std::thread::scope(|s| {
            let fs: Vec<_> = (0..8).map(|_| s.spawn(|| w.flush(upto, true))).collect();
            while w.waiters.load(Ordering::Relaxed) < 8 {
                std::thread::yield_now();
            }
            drop(c);
            fs.into_iter()
                .map(|f| f.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(Error::WriterFailed { .. }) | Err(Error::Io { .. }))),
            "{results:?}"
        );
        assert_eq!(*relock(w.rounds.lock()), 1);
    }

    /// A durable flush queued on `commit` when the round before it failed does not lead a
    /// round of its own: no fsync is retried after a failure, and nothing is called durable
    /// that the failed fsync may have lost.
    #[test]
    fn writer_flush_queued_behind_a_failed_round_retries_no_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let upto = buffer_one(&w);
        let before = w.durable_len();
        let c = w.commit.lock(); // a leader finishing its round holds `commit`
        let queued = std::thread::scope(|s| {
            let f = s.spawn(|| w.flush(upto, true));
            while w.waiters.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            // Only so that the bug shows: let the flush pass its lock-free failure check.
            std::thread::sleep(Duration::from_millis(50));
            // The leader's round: the record is written, its fsync fails (EIO).
            w.flush(upto, false).unwrap();
            let _ = w.poison(Error::io(
                "fsync segment",
                w.path(),
                std::io::Error::from_raw_os_error(5),
            ));
            drop(c);
            f.join().unwrap()
        });
        assert!(queued.is_err());
        assert_eq!(
            w.durable_len(),
            before,
            "an fsync was retried after a failed one"
        );
        // An appender whose record was in the failed fsync asks for it now.
        assert!(
            w.flush(upto, true).is_err(),
            "a record the failed fsync may have lost is called durable"
        );
    }

    /// Holds `io` (as `write_index` or an unsynced flush does for its write and fsync)
    /// while another thread's durable flush of `upto` becomes the commit leader and waits
    /// for `io`; runs `holder` with `io` held, releases it and returns the leader's result.
    fn leader_waiting_for_io(
        w: &SegmentWriter,
        upto: u64,
        holder: impl FnOnce(&mut IoState),
    ) -> Result<()> {
        let mut io = w.io.lock();
        std::thread::scope(|s| {
            let leader = s.spawn(|| w.flush(upto, true));
            // The leader passed its poison check (under `commit`) and waits for `io`.
            while !w.commit.lock().leader {
                std::thread::yield_now();
            }
            // Whether the leader is still gathering or already waits for `io`, it gets `io`
            // only after `holder`: no timing is assumed.
            holder(&mut io);
            drop(io);
            leader.join().unwrap()
        })
    }

    /// Finding: an fsync that fails outside a commit round (here: `write_index`'s) while a
    /// commit leader waits for `io` must not be retried by that leader. Retried, it
    /// succeeds on Linux, `durable` passes the bytes whose fsync failed, and an appender
    /// whose record was in them is told its record is durable.
    #[test]
    fn writer_leader_after_a_failed_fsync_outside_its_round_fsyncs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let before = w.durable_len();
        let a = buffer_one(&w); // appended, its flush not called yet
        let b = buffer_one(&w); // its appender leads a round
        let led = leader_waiting_for_io(&w, b, |io| {
            // `write_index`'s write_out: the write goes out, the fsync fails (EIO).
            w.write_out(io, false).unwrap();
            w.fail_for_test();
        });
        assert!(matches!(led, Err(Error::WriterFailed { .. })), "{led:?}");
        assert_eq!(
            w.durable_len(),
            before,
            "the leader fsynced again after a failed fsync and moved `durable` over its bytes"
        );
        assert!(
            matches!(w.flush(a, true), Err(Error::WriterFailed { .. })),
            "a record whose fsync failed is acknowledged as durable"
        );
        assert!(
            !w.is_durable(),
            "a poisoned writer is skipped by `Log::sync`"
        );
        assert!(matches!(w.sync(), Err(Error::WriterFailed { .. })));
    }

    /// Finding: a write that fails outside a commit round (a query handing buffers to the
    /// OS, the flusher under `Never`) loses the buffer it took; a commit leader waiting for
    /// `io` meanwhile must not write the next buffer at the stale offset (where the lost
    /// records belong), fsync it and call the logical end, lost records included, durable.
    #[test]
    fn writer_leader_after_a_failed_write_outside_its_round_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let len = || fs::metadata(w.path()).unwrap().len();
        let (before, size) = (w.durable_len(), len());
        let a = buffer_one(&w);
        let b = buffer_one(&w);
        let led = leader_waiting_for_io(&w, b, |io| {
            // The failing write (EBADF on a read-only handle; EIO, ENOSPC or EFBIG in life)
            // poisons the writer and takes records A and B with it.
            let rw = std::mem::replace(&mut io.file, File::open(w.path()).unwrap());
            assert!(w.write_out(io, false).is_err());
            io.file = rw;
            // Record C was framed by an append that passed its poison check before.
            buffer_one(&w);
        });
        assert!(matches!(led, Err(Error::WriterFailed { .. })), "{led:?}");
        assert_eq!(len(), size, "record C was written where A belongs");
        assert_eq!(w.durable_len(), before);
        assert!(
            matches!(w.flush(a, true), Err(Error::WriterFailed { .. })),
            "record A, never written, is acknowledged as durable"
        );
        assert!(matches!(
            w.flush(u64::MAX, false),
            Err(Error::WriterFailed { .. })
        ));
        assert_eq!(len(), size);
    }

    /// A record made durable before the writer was poisoned is not acknowledged either once
    /// it is poisoned: the durable shortcut of `flush` reports the failure like the rest.
    #[test]
    fn writer_durable_shortcut_reports_the_poison() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let upto = buffer_one(&w);
        w.flush(upto, true).unwrap();
        assert!(w.is_durable());
        w.fail_for_test();
        assert!(matches!(
            w.flush(upto, true),
            Err(Error::WriterFailed { .. })
        ));
        assert!(!w.is_durable());
    }
}
