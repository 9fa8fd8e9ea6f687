//! Queries: one org's events in a time range, filtered, in time order, verified on read.
//!
//! ```no_run
//! # use auditlog::{Log, OrgId, Timestamp};
//! # fn f(log: &Log) -> Result<(), Box<dyn std::error::Error>> {
//! let org = OrgId::new("acme")?;
//! for ev in log
//!     .query(&org)
//!     .since(Timestamp::parse("2026-03-01")?)
//!     .until(Timestamp::parse("2026-06-01")?)
//!     .user("user-42")
//!     .action("booking.*")
//!     .run()?
//! {
//!     let ev = ev?; // an error names file, offset and seq; later items still come
//!     println!("{} {} {}", ev.event.occurred_at, ev.event.action, ev.seq);
//! }
//! # Ok(()) }
//! ```
//!
//! **Semantics.** Results are the events of the org with `since <= occurred_at < until`
//! (half-open; either end may be left open) that match every filter, ordered by
//! `(occurred_at, seq)` ascending (descending with [`Query::reverse`]), including events that
//! arrived out of order and across months; [`Query::limit`] keeps the first `n` of that
//! order, and [`Query::after`] resumes after a given `(occurred_at, seq)` (paging without
//! gaps or duplicates). Exactly what a filter over all records would return.
//!
//! **Verification** (default): every record in every block the query reads is checked:
//! CRC, month, its time inside the signed block bounds, the HMAC tag with the org's key, the
//! seq and chain link to the record before it, and, for returned events, the personal-data
//! commitments. A record that fails yields an `Err` item naming file, offset and seq instead
//! of the event; a broken link between two authentic records (deleted, inserted or
//! reordered records) yields an `Err` item in addition. Reading continues after either.
//! One exception: a user query that reads a block through the index's signed user marks
//! (FORMAT.md §3.3) checks the chain hash and tag of the records marked as the user's (or
//! unknown) only; the block's other records get CRC, seq and time checks
//! ([`QueryStats::records_passed`]), and are not returned.
//! Records whose key the key provider does not have (or fails to give) are never returned,
//! and only the first of each segment and key id is an `Err` item; the others are counted
//! in [`QueryStats::unchecked`]. [`Query::unverified`] skips the chain hash and tag (CRC,
//! seq, month and bounds are still checked, so crash damage is reported, tampering is not).
//!
//! **Missing segments.** A month is never read as empty in silence when its files show it
//! held records: a segment file shorter than its header, or gone, while an index of it that
//! is (or, its key missing, may be) authentic covers more bytes, or cannot be read; a
//! segment without a readable header otherwise, unless it is the latest part of its month
//! while a writer holds the log's lock (being created). Each is an `Err` item naming the
//! file (ARCHITECTURE.md, "Queries").
//!
//! **Pruning.** Months outside the range are not opened. Inside a segment, the signed index
//! (checked once and cached per `Log`, up to `Options::query_index_cache`) gives every 4 KiB block its time bounds and a
//! Bloom filter of its user, action, action prefixes, resource type, resource id and trace
//! id; only blocks that can hold a match are read. An index that fails its check is
//! bypassed: the segment is walked frame by frame instead (a *hint pass*), and so are
//! the bytes past the index's `covered_len` (a live writer's unindexed tail). Nothing signed
//! vouches for the times a hint pass reads, so a verified query also follows the chain
//! there and checks each block's last tag; a block it cannot prove authentic is read
//! whatever the range, and its errors reported (ARCHITECTURE.md, "Queries").
//!
//! **Ordering and memory.** Blocks are read in file order; the index says, before each
//! block, the earliest time any unread block can hold (the *frontier*), and a match is
//! released once it is below the frontier. Matches waiting for the frontier are the only
//! buffering: about one out-of-order span's worth (an event stamped an hour early holds back
//! an hour of matches). Beyond [`Query::buffer_limit`] (64 MiB default) waiting matches are
//! spilled to ~100-byte keys and read again when released. See ARCHITECTURE.md, "Queries".

mod exec;
mod filter;
mod order;
pub(crate) mod plan;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use exec::{BufPool, Item, Match, Payload, Pool, Verifier, run_batch};
use filter::{ActionPattern, After, Filter};
use order::Pending;
pub(crate) use plan::IndexCache;
use plan::{Ctx, Expect, MonthPlan, Round};

use crate::crypto::{self, Hash, KeyId};
use crate::entry;
use crate::error::{Error, IntegrityKind, Result};
use crate::event::{OrgId, VerifiedEvent};
use crate::format::DecodeError;
use crate::format::header::SegmentId;
use crate::format::index::KeyFields;
use crate::format::record::{FRAME_HEADER_LEN, RawRecord, decode_frame};
use crate::log::Log;
use crate::segment::index_file_name;
use crate::segment::parse_segment_file_name;
use crate::time::{Month, Timestamp};

/// Months at least this large (bytes to read) are read with helper threads.
const PARALLEL_BYTES: u64 = 4 << 20;
/// Default bound on bytes held by matches waiting for their turn.
const DEFAULT_BUFFER: usize = 64 << 20;
/// The most threads [`Query::threads`] gives a query (the caller's included). Before the
/// bound, `threads(200)` started 199 helpers for one query, and `threads(usize::MAX)`
/// tried to start threads for ever.
pub const MAX_QUERY_THREADS: usize = 64;

impl Log {
    /// Starts a query over the events of `org` (and only `org`). See [`crate::query`].
    pub fn query(&self, org: &OrgId) -> Query<'_> {
        Query {
            log: self,
            org: org.clone(),
            filter: Filter::new(),
            limit: None,
            after: None,
            reverse: false,
            verify: true,
            threads: None,
            buffer: DEFAULT_BUFFER,
            batch_bytes: plan::BATCH_BYTES,
            plan_blocks: plan::PLAN_BLOCKS,
            bad: None,
        }
    }
}

/// A query being built; see [`crate::query`] for what it returns.
#[derive(Clone)]
pub struct Query<'a> {
    log: &'a Log,
    org: OrgId,
    filter: Filter,
    limit: Option<u64>,
    after: Option<(Timestamp, u64)>,
    reverse: bool,
    verify: bool,
    threads: Option<usize>,
    buffer: usize,
    batch_bytes: u64,
    plan_blocks: u64,
    bad: Option<(&'static str, String)>,
}

impl fmt::Debug for Query<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("org", &self.org)
            .field("filter", &self.filter)
            .field("limit", &self.limit)
            .field("after", &self.after)
            .field("reverse", &self.reverse)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

fn field(v: &str, name: &'static str, bad: &mut Option<(&'static str, String)>) -> Box<[u8]> {
    if v.is_empty() && bad.is_none() {
        *bad = Some((name, "must not be empty".into()));
    }
    v.as_bytes().into()
}

impl<'a> Query<'a> {
    /// Events at or after `t` (inclusive).
    pub fn since(mut self, t: Timestamp) -> Self {
        self.filter.since = t;
        self
    }

    /// Events before `t` (exclusive): the range is `[since, until)`.
    pub fn until(mut self, t: Timestamp) -> Self {
        self.filter.until = t;
        self
    }

    /// Events of this user (system events, which have none, never match).
    pub fn user(mut self, id: &str) -> Self {
        self.filter.user = Some(field(id, "user", &mut self.bad));
        self
    }

    /// Events with this action (`booking.created`), or under a prefix (`booking.*`,
    /// `channel_sync.booking.*`: actions that start with the part before `*`).
    pub fn action(mut self, pattern: &str) -> Self {
        match ActionPattern::parse(pattern) {
            Ok(p) => self.filter.action = Some(p),
            Err(Error::InvalidOption { reason, .. }) => {
                self.bad.get_or_insert(("action", reason));
            }
            Err(e) => {
                self.bad.get_or_insert(("action", e.to_string()));
            }
        }
        self
    }

    /// Events on resources of this type.
    pub fn resource_type(mut self, t: &str) -> Self {
        self.filter.resource_type = Some(field(t, "resource_type", &mut self.bad));
        self
    }

    /// Events on resources with this id (of any type).
    pub fn resource_id(mut self, id: &str) -> Self {
        self.filter.resource_id = Some(field(id, "resource_id", &mut self.bad));
        self
    }

    /// Events on this one resource.
    pub fn resource(self, resource_type: &str, id: &str) -> Self {
        self.resource_type(resource_type).resource_id(id)
    }

    /// Events of this trace.
    pub fn trace(mut self, id: &str) -> Self {
        self.filter.trace = Some(field(id, "trace", &mut self.bad));
        self
    }

    /// At most `n` events (errors are not counted).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Resumes after the event at `(occurred_at, seq)` in the query's order: only events
    /// past it are returned, `(occurred_at, seq)` greater (or, with [`Query::reverse`],
    /// smaller). For paging: give the `occurred_at` and `seq` of the last event of a page
    /// read with [`Query::limit`] to get the next page, with no gap and no duplicate, even
    /// among events of one `occurred_at` (`since` is inclusive and cannot tell them
    /// apart). An event's `(occurred_at, seq)` is unique within its org: the time names
    /// the month, and seqs are unique within a month. The event need not exist or match;
    /// the range still applies (a point outside it leaves nothing). Beside a live writer,
    /// an event appended later but stamped before the resume point (a late arrival) is in
    /// no later page: the order is by time, not by arrival.
    pub fn after(mut self, occurred_at: Timestamp, seq: u64) -> Self {
        self.after = Some((occurred_at, seq));
        self
    }

    /// Newest first: descending `(occurred_at, seq)`.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Skips the chain hash and HMAC tag checks (for speed, explicitly): crash damage is
    /// still reported, tampering is not.
    pub fn unverified(mut self) -> Self {
        self.verify = false;
        self
    }

    /// Threads reading blocks (the caller's included). Default: the available parallelism,
    /// at most 4, for rounds with at least 4 MiB to read (smaller reads stay on the calling
    /// thread); an explicit `n > 1` uses helpers whenever a round of reads has more than one
    /// batch. `n` is taken as at most [`MAX_QUERY_THREADS`], and a round never starts more
    /// helpers than it has batches beyond the caller's first.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n.clamp(1, MAX_QUERY_THREADS));
        self
    }

    /// Bound on bytes held by matches waiting for their turn (default 64 MiB); beyond it
    /// they are spilled to small keys and read again when released.
    pub fn buffer_limit(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Largest single read (default 1 MiB). For tests and tuning.
    #[doc(hidden)]
    pub fn batch_bytes(mut self, bytes: u64) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Blocks per group the planner holds of a segment at a time (default 4096); rounds
    /// hold four groups' worth. For tests and tuning.
    #[doc(hidden)]
    pub fn plan_blocks(mut self, blocks: u64) -> Self {
        self.plan_blocks = blocks.max(1);
        self
    }

    /// Runs the query; the iterator decodes each match into a [`VerifiedEvent`].
    ///
    /// Errors: [`Error::InvalidOption`] for a bad argument (`until` before `since`, an empty
    /// value, a malformed action pattern); [`Error::OrgDirUnusable`] if the org's entry is
    /// not a directory (a symbolic link, a file); [`Error::Io`] if the org's directory
    /// cannot be listed. An org without a directory has no events. Everything found while reading
    /// (damage, tampering, a missing segment or key) is an `Err` item of the iterator.
    pub fn run(self) -> Result<Matches> {
        // Decoding happens on the calling thread: a `VerifiedEvent` is a tree of small
        // allocations (serde_json values), and building them on helper threads only to free
        // them on this one made the allocator the bottleneck (measured: slower than one
        // thread). The helpers still do the reading and the hashing.
        Ok(Matches {
            inner: MatchesInner::Running(Box::new(self.start()?)),
        })
    }

    /// Runs the query and returns a cursor over borrowed, lazily decoded matches
    /// ([`EventRef`]): the fast path, without building a `VerifiedEvent` per match.
    pub fn cursor(self) -> Result<Cursor> {
        self.start()
    }

    fn start(self) -> Result<Cursor> {
        if let Some((option, reason)) = self.bad {
            return Err(Error::InvalidOption { option, reason });
        }
        let mut filter = self.filter;
        if filter.until < filter.since {
            return Err(Error::InvalidOption {
                option: "until",
                reason: format!("{} is before since {}", filter.until, filter.since),
            });
        }
        if let Some((at, seq)) = self.after {
            filter.resume(After {
                at,
                seq,
                reverse: self.reverse,
            });
        }
        filter.finish();
        self.log.hand_buffers_to_os(&self.org);
        let dir = self.log.dir().join(self.org.as_str());
        crate::log::check_org_dir(&dir, &self.org)?;
        let mut months: Vec<MonthParts> = list_org(&dir)?
            .into_values()
            .filter(|m| m.month.start() < filter.until && m.month.end() > filter.since)
            .collect();
        if self.reverse {
            months.reverse();
        }
        let (threads, min_parallel) = match self.threads {
            Some(n) => (n, 0),
            None => (
                std::thread::available_parallelism()
                    .map(std::num::NonZeroUsize::get)
                    .unwrap_or(1)
                    .min(4),
                PARALLEL_BYTES,
            ),
        };
        let (keys, cache) = self.log.query_parts();
        let indexes: Vec<_> = months
            .iter()
            .flat_map(|m| m.parts.iter().map(|id| dir.join(index_file_name(*id))))
            .collect();
        let cache_session = cache.session(indexes.iter().map(PathBuf::as_path));
        let ctx = Arc::new(Ctx {
            dir,
            org: self.org,
            keys,
            cache,
            filter,
            verify: self.verify,
            reverse: self.reverse,
            batch_bytes: self.batch_bytes,
            plan_blocks: self.plan_blocks,
            cache_session,
        });
        Ok(Cursor {
            ctx,
            months: months.into(),
            run: None,
            pending: Pending::new(self.reverse),
            errors: VecDeque::new(),
            emitted: 0,
            limit: self.limit,
            bufs: Arc::new(BufPool::default()),
            budget: self.buffer,
            threads,
            min_parallel,
            stats: QueryStats::default(),
            current: None,
            done: false,
        })
    }
}

impl<'a> IntoIterator for Query<'a> {
    type Item = Result<VerifiedEvent>;
    type IntoIter = Matches;

    /// Runs the query; a bad argument becomes the only item.
    fn into_iter(self) -> Matches {
        match self.run() {
            Ok(m) => m,
            Err(e) => Matches {
                inner: MatchesInner::Failed(Box::new((Some(e), QueryStats::default()))),
            },
        }
    }
}

/// What a query did, for tests, tuning and the docs' memory figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryStats {
    /// Months opened.
    pub months: u64,
    /// Segment files opened.
    pub segments: u64,
    /// Blocks (index blocks and hint-pass blocks) considered, and skipped by time or filter.
    /// Blocks of groups a query never reached (it stopped at its `limit`) count as
    /// considered but neither skipped nor read.
    pub blocks_considered: u64,
    /// Blocks not read.
    pub blocks_skipped: u64,
    /// Blocks read.
    pub blocks_read: u64,
    /// Records read: their framing, CRC, seq and time checked, and (unless counted in
    /// `records_passed`) their chain hash and tag.
    pub records_read: u64,
    /// Records read but passed over, neither tested against the query's fields nor their
    /// chain hash and tag checked: the signed index's user marks (FORMAT.md §3.3) show they
    /// are not the queried user's.
    pub records_passed: u64,
    /// Bytes read from segments by the reading threads.
    pub bytes_read: u64,
    /// Events returned.
    pub returned: u64,
    /// Error items returned.
    pub errors: u64,
    /// Groups of index blocks read from index files and checked (the others came from the
    /// `Log`'s cache of checked indexes).
    pub index_groups_read: u64,
    /// Segment indexes read whole and their tag checked to plan the query (the others came
    /// from the `Log`'s cache of checked indexes).
    pub indexes_checked: u64,
    /// Segments whose index was not used, and why (missing, failed its check, …).
    pub indexes_bypassed: Vec<(std::path::PathBuf, String)>,
    /// Most matches waiting for their turn at once.
    pub peak_waiting: u64,
    /// Most bytes held at once by waiting matches and the batch buffers they refer to.
    pub peak_waiting_bytes: u64,
    /// Matches spilled (given up and read again) to stay within the buffer limit.
    pub spilled: u64,
    /// Matches a verified query did not return because it could not place them in the
    /// chain: they follow a broken link or unreadable bytes (reported as error items) with
    /// no signed anchor in between (FORMAT.md §7; ARCHITECTURE.md, "Checks").
    pub withheld: u64,
    /// Records read whose tag could not be checked, because the key provider has no key
    /// of the id they name for the org, or failed to give it; none is returned. Only the
    /// first of them per segment and key id is an error item (naming its file, offset and
    /// seq, and the key id: [`IntegrityKind::UnknownKey`], or [`Error::RecordKey`] with the
    /// provider's failure); the others are counted here only.
    pub unchecked: u64,
}

/// One month of the org, as its directory was listed.
pub(crate) struct MonthParts {
    pub month: Month,
    /// Its segment files' parts, in order.
    pub parts: Vec<SegmentId>,
    /// Parts with an index file but no segment file: an index is written only over records
    /// already durable, so the segment may have been deleted ([`MonthPlan::new`]).
    pub orphans: Vec<SegmentId>,
}

/// The months of an org directory (`<month>[.<part>].seg` and `.idx` files), in order.
/// Missing directory: none.
pub(crate) fn list_org(dir: &std::path::Path) -> Result<BTreeMap<Month, MonthParts>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io("list org directory", dir, e)),
    };
    let mut segments = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("list org directory", dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(id) = parse_segment_file_name(name) {
            segments.insert(id);
        } else if let Some(id) = name
            .strip_suffix(".idx")
            .and_then(|stem| parse_segment_file_name(&format!("{stem}.seg")))
        {
            indexes.insert(id);
        }
    }
    fn month(months: &mut BTreeMap<Month, MonthParts>, id: SegmentId) -> &mut MonthParts {
        months.entry(id.month).or_insert_with(|| MonthParts {
            month: id.month,
            parts: Vec::new(),
            orphans: Vec::new(),
        })
    }
    let mut months = BTreeMap::new();
    for id in &segments {
        month(&mut months, *id).parts.push(*id);
    }
    for id in indexes.difference(&segments) {
        month(&mut months, *id).orphans.push(*id);
    }
    Ok(months)
}

/// Where the reading of one side of a block boundary left off, per segment.
#[derive(Clone, Copy)]
struct Seam {
    /// File offset of the boundary.
    at: u64,
    /// Forward: the seq the next record must have; reverse: the seq of the record after.
    seq: u64,
    /// Forward: the chain hash it must link to; reverse: the prev_hash of the record after.
    hash: Option<Hash>,
    /// Forward, verified: the record before the boundary is placed in the chain, so a
    /// record linked to it is too.
    placed: bool,
    /// Reverse: the record after the boundary already failed its own block's expectation
    /// there, so the break is reported (once, not again from the block before it).
    reported: bool,
}

struct MonthRun {
    plan: MonthPlan,
    /// The round being read, its batches from `next` on still to take.
    round: Arc<Round>,
    pool: Option<Pool>,
    verifier: Verifier,
    next: usize,
    frontier: Timestamp,
    seams: Vec<Option<Seam>>,
    /// (segment, key id) pairs whose unchecked records have been reported.
    unchecked: HashSet<(usize, KeyId)>,
}

/// The match last released, kept so an [`EventRef`] can borrow it.
enum Current {
    Buffer(Arc<exec::Buf>, usize, Match),
    Bytes(Vec<u8>, Match),
}

/// A running query over borrowed matches; see [`Query::cursor`].
pub struct Cursor {
    ctx: Arc<Ctx>,
    months: VecDeque<MonthParts>,
    run: Option<MonthRun>,
    pending: Pending,
    errors: VecDeque<Error>,
    emitted: u64,
    limit: Option<u64>,
    bufs: Arc<BufPool>,
    budget: usize,
    threads: usize,
    /// Months reading fewer bytes stay on the calling thread.
    min_parallel: u64,
    stats: QueryStats,
    current: Option<Current>,
    done: bool,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("org", &self.ctx.org)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Cursor {
    /// What the query has done so far.
    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// The next match (borrowing the cursor) or error item; `None` at the end.
    pub fn next_ref(&mut self) -> Option<Result<EventRef<'_>>> {
        self.current = None;
        let m = match self.advance()? {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        let cur = match m.payload {
            Payload::Raw(ref buf, at) => Current::Buffer(Arc::clone(buf), at as usize, m),
            Payload::Spilled => match self.reread(&m) {
                Ok(bytes) => Current::Bytes(bytes, m),
                Err(e) => return Some(Err(e)),
            },
        };
        let (bytes, at, m): (&[u8], usize, &Match) = match self.current.insert(cur) {
            Current::Buffer(b, at, m) => (&b.bytes, *at, m),
            Current::Bytes(b, m) => (b, 0, m),
        };
        let run = self.run.as_ref()?;
        let src = run.plan.sources.get(usize::from(m.src))?;
        Some(EventRef::new(m, bytes, at, &self.ctx.org, src))
    }

    /// Reads a spilled match again, checking it is the record that was verified.
    fn reread(&self, m: &Match) -> Result<Vec<u8>> {
        let src = self
            .run
            .as_ref()
            .and_then(|r| r.plan.sources.get(usize::from(m.src)))
            .ok_or_else(|| Error::InvalidOption {
                option: "query",
                reason: "match outlived its month".into(),
            })?;
        let mut bytes = vec![0u8; m.frame_len as usize];
        src.file
            .read_exact_at(&mut bytes, m.offset)
            .map_err(|e| Error::io("read segment", &src.path, e))?;
        let changed = |kind| Error::Integrity {
            file: src.path.clone(),
            offset: m.offset,
            seq: Some(m.seq),
            kind,
        };
        let rec = decode_frame(&bytes, m.offset).map_err(|e| match e {
            crate::format::record::FrameError::Corrupt(source) => Error::Corrupt {
                file: src.path.clone(),
                offset: m.offset,
                seq: Some(m.seq),
                source,
            },
            crate::format::record::FrameError::Incomplete { .. } => {
                changed(IntegrityKind::ChangedWhileReading)
            }
        })?;
        let same = rec.fields.seq == m.seq
            && rec.fields.occurred_at == m.ts
            && m.hash
                .is_none_or(|h| crypto::chain_hash(rec.chained_bytes()) == h);
        if !same {
            return Err(changed(IntegrityKind::ChangedWhileReading));
        }
        Ok(bytes)
    }

    /// The next released match or error.
    fn advance(&mut self) -> Option<Result<Match>> {
        loop {
            if let Some(e) = self.errors.pop_front() {
                self.stats.errors += 1;
                return Some(Err(e));
            }
            if self.done || self.limit.is_some_and(|l| self.emitted >= l) {
                self.finish();
                return None;
            }
            if let Some(run) = &self.run
                && let Some(m) = self.pending.pop_ready(run.frontier)
            {
                self.emitted += 1;
                self.stats.returned += 1;
                return Some(Ok(m));
            }
            if self.run.is_none() {
                let Some(month) = self.months.pop_front() else {
                    self.finish();
                    continue;
                };
                self.start_month(&month);
                continue;
            }
            if !self.step() {
                // Month read: release everything, then move on.
                if self.pending.is_empty() {
                    self.run = None;
                } else if let Some(run) = &mut self.run {
                    run.frontier = Timestamp(if self.ctx.reverse { i64::MIN } else { i64::MAX });
                }
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.run = None;
        self.pending.clear();
        self.months.clear();
    }

    fn start_month(&mut self, month: &MonthParts) {
        let plan = MonthPlan::new(&self.ctx, &month.parts, &month.orphans);
        self.stats.months += 1;
        self.stats.segments += plan.sources.len() as u64;
        let n = plan.sources.len();
        self.run = Some(MonthRun {
            plan,
            round: Arc::new(Round::default()),
            pool: None,
            verifier: Verifier::new(),
            next: 0,
            frontier: Timestamp(if self.ctx.reverse { i64::MAX } else { i64::MIN }),
            seams: vec![None; n],
            unchecked: HashSet::new(),
        });
    }

    /// Reads the next batch of the month (planning its next round first if need be); false
    /// when there is none.
    fn step(&mut self) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        if run.next >= run.round.batches.len() {
            // Helpers of the round read are done: stop them before planning the next.
            run.pool = None;
            let round = run.plan.next_round(&self.ctx);
            let found = std::mem::take(&mut run.plan.found);
            self.stats.blocks_considered += found.blocks_considered;
            self.stats.blocks_skipped += found.blocks_skipped;
            self.stats.index_groups_read += found.index_groups_read;
            self.stats.indexes_checked += found.indexes_checked;
            self.stats.indexes_bypassed.extend(found.bypassed);
            self.errors.extend(found.errors);
            let Some(round) = round else {
                return false;
            };
            run.round = Arc::new(round);
            run.next = 0;
            let helpers = self
                .threads
                .saturating_sub(1)
                .min(run.round.batches.len().saturating_sub(1));
            let parallel =
                helpers > 0 && run.round.batches.len() > 1 && run.round.bytes >= self.min_parallel;
            run.pool = parallel.then(|| {
                Pool::new(
                    Arc::clone(&self.ctx),
                    Arc::clone(&run.plan.sources),
                    Arc::clone(&run.round),
                    Arc::clone(&self.bufs),
                    helpers,
                )
            });
        }
        let i = run.next;
        let Some(&(a, b)) = run.round.batches.get(i) else {
            return false;
        };
        run.next += 1;
        let out = match &mut run.pool {
            Some(p) => p.take(i),
            None => run_batch(
                &self.ctx,
                &run.plan.sources,
                &run.round,
                i,
                &mut run.verifier,
                &self.bufs,
            ),
        };
        self.stats.bytes_read += out.bytes;
        let mut matches = Vec::new();
        let reverse = self.ctx.reverse;
        for (bi, bo) in (a..b).zip(out.blocks) {
            let Some(block) = run.round.blocks.get(bi) else {
                continue;
            };
            let Some(src) = run.plan.sources.get(block.src) else {
                continue;
            };
            self.stats.blocks_read += 1;
            self.stats.records_read += bo.records;
            self.stats.records_passed += bo.passed;
            let seam = run.seams.get(block.src).copied().flatten();
            let link_err = |offset: u64, seq: u64, kind| Error::Integrity {
                file: src.path.clone(),
                offset,
                seq: Some(seq),
                kind,
            };
            // The block's first record against what comes before it. In a verified query
            // its records are returned only if it is placed in the chain: linked to a placed
            // record just before it (forward, across the seam), or where its planned
            // expectation puts it (a signed anchor: the genesis, an index entry's seq or the
            // index head; or, in a hint pass, the chain followed from one, which the pass
            // judged: `Block::withheld`, `Block::explained`).
            let mut placed_start = true;
            let mut fault = false;
            if let Some((seq, prev)) = bo.first {
                let via_seam = matches!(seam, Some(s) if !reverse && s.at == block.start);
                let expect: Option<(u64, Option<Hash>)> = match seam {
                    Some(s) if !reverse && s.at == block.start => {
                        // A block read with user marks may not have hashed its last record;
                        // the plan may still know the hash (the index head, at the tail).
                        let planned = match block.expect {
                            Expect::SeqPrev(_, h) => Some(h),
                            _ => None,
                        };
                        Some((s.seq, s.hash.or(planned)))
                    }
                    _ => match block.expect {
                        Expect::Nothing => None,
                        Expect::Seq(n) => Some((n, None)),
                        Expect::SeqPrev(n, h) => Some((n, Some(h))),
                    },
                };
                if let Some((n, h)) = expect {
                    if n != seq {
                        fault = true;
                        self.errors.push_back(link_err(
                            block.start,
                            seq,
                            IntegrityKind::SeqMismatch {
                                expected: n,
                                found: seq,
                            },
                        ));
                    } else if let Some(h) = h
                        && h != prev
                    {
                        fault = true;
                        self.errors.push_back(link_err(
                            block.start,
                            seq,
                            IntegrityKind::ChainBreak {
                                expected: h,
                                found: prev,
                            },
                        ));
                    }
                }
                let anchored = match block.expect {
                    // Only a verified hint pass plans this, after unreadable bytes, having
                    // checked the record's seq against the ones before them.
                    Expect::Nothing => block.records.is_none(),
                    Expect::Seq(n) => n == seq,
                    Expect::SeqPrev(n, h) => n == seq && (h == prev || block.explained),
                };
                let linked = via_seam && !fault && seam.is_some_and(|s| s.placed);
                placed_start = anchored || linked;
            }
            placed_start = !self.ctx.verify || (placed_start && !block.withheld);
            // Reverse: the block's last record against the first of the block after it.
            if reverse
                && let (Some(s), Some((next_seq, hash))) = (seam, bo.last)
                && s.at == block.end
                && !s.reported
            {
                if next_seq != s.seq {
                    self.errors.push_back(link_err(
                        s.at,
                        s.seq,
                        IntegrityKind::SeqMismatch {
                            expected: next_seq,
                            found: s.seq,
                        },
                    ));
                } else if let (Some(h), Some(p)) = (hash, s.hash)
                    && h != p
                {
                    self.errors.push_back(link_err(
                        s.at,
                        s.seq,
                        IntegrityKind::ChainBreak {
                            expected: h,
                            found: p,
                        },
                    ));
                }
            }
            if let Some(slot) = run.seams.get_mut(block.src) {
                *slot = if block.damage.is_some() {
                    None
                } else if reverse {
                    bo.first.map(|(seq, prev)| Seam {
                        at: block.start,
                        seq,
                        hash: Some(prev),
                        placed: true,
                        reported: fault,
                    })
                } else {
                    bo.last.map(|(seq, hash)| Seam {
                        at: block.end,
                        seq,
                        hash,
                        placed: placed_start && bo.placed_end,
                        reported: false,
                    })
                };
            }
            self.stats.withheld += bo.withheld;
            for item in bo.items {
                match item {
                    Item::Err(e) => self.errors.push_back(e),
                    Item::Match(m) if placed_start => matches.push(m),
                    Item::Match(_) => self.stats.withheld += 1,
                    Item::Unchecked(id, e) => {
                        self.stats.unchecked += 1;
                        if run.unchecked.insert((block.src, id)) {
                            self.errors.push_back(e);
                        }
                    }
                }
            }
        }
        self.pending.push(matches);
        run.frontier = run
            .round
            .frontier
            .get(b.saturating_sub(1))
            .copied()
            .unwrap_or(run.frontier);
        let held = || self.bufs.held.load(Ordering::Relaxed);
        let total = self.pending.own + held();
        self.stats.peak_waiting = self.stats.peak_waiting.max(self.pending.count as u64);
        self.stats.peak_waiting_bytes = self.stats.peak_waiting_bytes.max(total as u64);
        if total > self.budget {
            self.stats.spilled += self.pending.spill(held, self.budget / 2);
        }
        true
    }
}

impl Iterator for Matches {
    type Item = Result<VerifiedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let c = match &mut self.inner {
            MatchesInner::Running(c) => c,
            MatchesInner::Failed(f) => return f.0.take().map(Err),
        };
        let m = match c.advance()? {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        match m.payload {
            Payload::Raw(ref buf, at) => {
                let run = c.run.as_ref()?;
                let src = run.plan.sources.get(usize::from(m.src))?;
                Some(
                    EventRef::new(&m, &buf.bytes, at as usize, &c.ctx.org, src)
                        .and_then(|r| r.to_event()),
                )
            }
            Payload::Spilled => {
                let bytes = match c.reread(&m) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                let run = c.run.as_ref()?;
                let src = run.plan.sources.get(usize::from(m.src))?;
                Some(EventRef::new(&m, &bytes, 0, &c.ctx.org, src).and_then(|r| r.to_event()))
            }
        }
    }
}

/// A running query yielding [`VerifiedEvent`]s; see [`Query::run`].
#[derive(Debug)]
pub struct Matches {
    inner: MatchesInner,
}

#[derive(Debug)]
enum MatchesInner {
    Running(Box<Cursor>),
    Failed(Box<(Option<Error>, QueryStats)>),
}

impl Matches {
    /// What the query has done so far.
    pub fn stats(&self) -> &QueryStats {
        match &self.inner {
            MatchesInner::Running(c) => c.stats(),
            MatchesInner::Failed(f) => &f.1,
        }
    }
}

/// A match borrowed from a [`Cursor`]: the record has passed the query's checks; its
/// fields are decoded on demand. [`EventRef::fields`] reads the indexed fields;
/// [`EventRef::to_event`] decodes the whole event (personal data restored and its
/// commitments checked, `before`/`after`/`metadata` parsed).
pub struct EventRef<'a> {
    frame: &'a [u8],
    m: &'a Match,
    org: &'a OrgId,
    src: &'a plan::Source,
}

/// The indexed fields of an [`EventRef`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// Acting user; `None` for system actions.
    pub user_id: Option<&'a str>,
    /// `domain.action`.
    pub action: &'a str,
    /// Resource type.
    pub resource_type: &'a str,
    /// Resource id.
    pub resource_id: &'a str,
    /// Trace id.
    pub trace_id: Option<&'a str>,
}

impl fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("month", &self.src.month)
            .field("seq", &self.m.seq)
            .field("occurred_at", &self.m.ts)
            .field("fields", &self.fields().ok())
            .finish_non_exhaustive()
    }
}

impl<'a> EventRef<'a> {
    fn new(
        m: &'a Match,
        bytes: &'a [u8],
        at: usize,
        org: &'a OrgId,
        src: &'a plan::Source,
    ) -> Result<EventRef<'a>> {
        let frame = exec::frame_of(m, bytes, at)
            .ok_or_else(|| corrupt_at(m, src, "frame does not fit its buffer"))?;
        Ok(EventRef { frame, m, org, src })
    }

    /// Sequence number within (org, month).
    pub fn seq(&self) -> u64 {
        self.m.seq
    }

    /// When the event happened.
    pub fn occurred_at(&self) -> Timestamp {
        self.m.ts
    }

    /// Month of its segment.
    pub fn month(&self) -> Month {
        self.src.month
    }

    /// Part of its segment.
    pub fn part(&self) -> u16 {
        self.src.part
    }

    /// Byte offset of its record in the segment file.
    pub fn offset(&self) -> u64 {
        self.m.offset
    }

    /// Key id of its tag.
    pub fn key_id(&self) -> KeyId {
        self.m.key_id
    }

    fn sealed(&self) -> &'a [u8] {
        let end = FRAME_HEADER_LEN + self.m.sealed_len as usize;
        self.frame.get(FRAME_HEADER_LEN..end).unwrap_or_default()
    }

    /// Its chain hash (computed now for an unverified query).
    pub fn hash(&self) -> Hash {
        self.m.hash.unwrap_or_else(|| {
            let end = FRAME_HEADER_LEN + self.m.sealed_len as usize;
            crypto::chain_hash(self.frame.get(8..end).unwrap_or_default())
        })
    }

    /// The indexed fields (user, action, resource type and id, trace), borrowed.
    pub fn fields(&self) -> Result<EventFields<'a>> {
        let k = KeyFields::parse(self.sealed()).map_err(|mut source| {
            source.offset += self.m.offset + FRAME_HEADER_LEN as u64;
            Error::Corrupt {
                file: self.src.path.clone(),
                offset: self.m.offset,
                seq: Some(self.m.seq),
                source,
            }
        })?;
        let text = |b: &'a [u8]| {
            std::str::from_utf8(b)
                .map_err(|_| corrupt_at(self.m, self.src, "indexed field is not UTF-8"))
        };
        Ok(EventFields {
            user_id: k.user_id.map(text).transpose()?,
            action: text(k.action)?,
            resource_type: text(k.resource_type)?,
            resource_id: text(k.resource_id)?,
            trace_id: k.trace_id.map(text).transpose()?,
        })
    }

    /// The whole event, personal data restored (and its commitments checked).
    pub fn to_event(&self) -> Result<VerifiedEvent> {
        let m = self.m;
        let frame = self.frame;
        let sealed_end = FRAME_HEADER_LEN + m.sealed_len as usize;
        let tag_at = frame.len().saturating_sub(crate::format::record::TAG_LEN);
        let bytes32 = |r: std::ops::Range<usize>| {
            frame
                .get(r)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .unwrap_or([0; 32])
        };
        // The frame passed its CRC when it was read: rebuild its view without a second pass.
        let rec = RawRecord {
            offset: m.offset,
            frame,
            fields: crate::format::record::FrameFields {
                seq: m.seq,
                occurred_at: m.ts,
                key_id: m.key_id,
                prev: Hash(bytes32(28..60)),
            },
            sealed: frame.get(FRAME_HEADER_LEN..sealed_end).unwrap_or_default(),
            openings: frame.get(sealed_end..tag_at).unwrap_or_default(),
            tag: crate::crypto::Tag(bytes32(tag_at..frame.len())),
        };
        // A verified query (its matches carry their checked hash) refuses an erased slot,
        // as verify does; an unverified one shows it as "[REDACTED]".
        let erased = if m.hash.is_some() {
            entry::Erased::Refuse
        } else {
            entry::Erased::Redact
        };
        entry::open(
            self.org,
            self.src.month,
            self.src.part,
            &rec,
            self.hash(),
            erased,
        )
        .map_err(|e| e.into_error(&self.src.path, m.offset, m.seq))
    }
}

fn corrupt_at(m: &Match, src: &plan::Source, why: &'static str) -> Error {
    Error::Corrupt {
        file: src.path.clone(),
        offset: m.offset,
        seq: Some(m.seq),
        source: DecodeError {
            structure: "record",
            field: "frame",
            offset: m.offset,
            kind: crate::format::DecodeErrorKind::Invalid(why),
        },
    }
}
