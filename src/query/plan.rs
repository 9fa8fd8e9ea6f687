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
//!
//! Memory does not grow with the month. A month is planned in *rounds* of at most
//! `4 × plan_blocks` blocks, and each segment's blocks are produced a *group* of
//! `plan_blocks` blocks at a time:
//!
//! - an index is checked once in a streaming pass that keeps, per group, its time envelope,
//!   where its filters lie and a digest of its bytes ([`Summary`]); a group is read again
//!   when its turn comes and must have the same digest;
//! - a hint pass walks its range once to note the same per group (where it starts, the walk's
//!   state there, its time envelope) and walks a group again when its turn comes.
//!
//! The group envelopes bound what the unread groups hold, which is all the ordering needs.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::filter::Filter;
use crate::crypto::{self, Hash, KeyId, KeyProvider, Tag};
use crate::error::{Error, IntegrityKind};
use crate::event::OrgId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::index::IndexHead;
use crate::format::index::MARK_UNKNOWN;
use crate::format::record::FrameError;
use crate::format::{DecodeError, DecodeErrorKind};
use crate::segment::index_file::{self, GroupBlocks, IndexEvidence, Rejected, Summary};
use crate::segment::scan::{self, FileWindow};
use crate::segment::{FileStamp, index_file_name, recover, segment_file_name};
use crate::time::{Month, Timestamp};

/// Bytes read per batch (one positioned read) at most, unless one block is larger.
pub(crate) const BATCH_BYTES: u64 = 1 << 20;
/// Blocks per batch at most (so a selective query's scattered blocks share few tasks).
const MAX_BATCH_BLOCKS: usize = 256;
/// Interval of hint-pass blocks.
const HINT_INTERVAL: u64 = 4096;
/// Blocks per group (index and hint pass), and a quarter of the blocks per round, by
/// default: a group of index blocks is ~360 KiB of index, a round ~16 MiB of segment.
pub(crate) const PLAN_BLOCKS: u64 = 4096;
/// Rounds hold this many groups' worth of blocks at most.
const ROUND_GROUPS: u64 = 4;

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
    /// Blocks per group.
    pub plan_blocks: u64,
    /// The query's dealings with `cache` (which groups it may evict).
    pub cache_session: CacheSession,
}

/// Where an org's segments are and the keys that check them: what deciding about a segment
/// missing or shorter than its header needs ([`short_segment`]), for a query and for
/// [`crate::Log::scan`].
pub(crate) struct Place<'a> {
    /// The org's directory.
    pub dir: &'a Path,
    pub org: &'a OrgId,
    pub keys: &'a dyn KeyProvider,
}

impl Ctx {
    fn place(&self) -> Place<'_> {
        Place {
            dir: &self.dir,
            org: &self.org,
            keys: &*self.keys,
        }
    }
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
    /// The seqs, in order, of the only records that may match: those the signed index's
    /// user marks (FORMAT.md §3.3) give to the queried user. `None`: any record may.
    pub pick: Option<Vec<u64>>,
    /// A verified hint pass cannot place this block's records in the chain: a broken link
    /// that no altered record explains came before its first record or is at it, or its
    /// first record follows unreadable bytes with a seq not past every seq before them (no
    /// signed anchor follows in unindexed bytes). Its records are read and checked, none
    /// is returned.
    pub withheld: bool,
    /// A verified hint pass found its first record's broken link explained: the record
    /// before it fails its tag (it was altered) and the seqs go on, so the first record is
    /// placed all the same.
    pub explained: bool,
}

/// The next blocks of a month in the order they are read, and where reading may stop.
#[derive(Default)]
pub(crate) struct Round {
    pub blocks: Vec<Block>,
    /// After reading `blocks[..=i]`, no unread block of the month holds a time below
    /// (forward) or above (reverse) `frontier[i]`.
    pub frontier: Vec<Timestamp>,
    /// Ranges of `blocks` read together.
    pub batches: Vec<(usize, usize)>,
    /// Bytes the blocks span.
    pub bytes: u64,
}

/// What planning found besides blocks; the cursor takes it after each round.
#[derive(Default)]
pub(crate) struct Findings {
    /// Errors (damaged headers, truncated segments).
    pub errors: Vec<Error>,
    /// Indexes not used, and why.
    pub bypassed: Vec<(PathBuf, String)>,
    /// Blocks considered and blocks skipped by time or filter.
    pub blocks_considered: u64,
    pub blocks_skipped: u64,
    /// Index groups read from their files (not served by the cache).
    pub index_groups_read: u64,
    /// Indexes read whole and their tag checked (not served by the cache).
    pub indexes_checked: u64,
}

/// One month being planned: its segments, and each one's blocks still to come.
pub(crate) struct MonthPlan {
    pub sources: Arc<Vec<Source>>,
    streams: Vec<Stream>,
    pub found: Findings,
    round_blocks: usize,
}

/// A checked index and the index file it was checked from, or why there is none.
type Loaded = Result<(Arc<LoadedIndex>, File), Arc<Unused>>;

/// A checked index, in the form the planner keeps it: its header's figures, its summary,
/// and the groups read and checked while it is in the cache.
pub(crate) struct LoadedIndex {
    /// The index file.
    pub path: PathBuf,
    pub covered_len: u64,
    pub record_count: u64,
    pub first_seq: u64,
    pub head: Hash,
    pub segment_hash: Hash,
    pub summary: Summary,
    /// Groups already read and checked (kept only while this index is cached).
    groups: Mutex<HashMap<usize, CachedGroup>>,
}

/// A group kept by the cache, and the cache tick of its last use.
struct CachedGroup {
    blocks: Arc<GroupBlocks>,
    used: u64,
}

struct CacheEntry {
    /// The index file as last loaded.
    stamp: FileStamp,
    genesis: Hash,
    group_blocks: u64,
    loaded: Result<Arc<LoadedIndex>, Arc<Unused>>,
    /// Bytes held: the summary and the cached groups.
    mem: usize,
    used: u64,
}

/// Checked indexes, kept across queries of one [`crate::Log`] so an index is read and its
/// tag checked once, not per query, and its groups read, checked against their digests and
/// decoded once. An entry is used only while the index file is the same file (device,
/// inode, length, mtime) and the segment header hashes to the same genesis; a stale entry
/// is still sound (the segment only grows past `covered_len`) and is simply reloaded.
///
/// Bounded by bytes, with two kinds of entry that cost very differently to replace: an
/// index's *summary* (a few KB per month) took a pass over the whole index file and its
/// tag; a *group* (~360 KiB of index for 4,096 blocks) takes one read and one digest. To
/// keep a summary, groups are evicted first; to keep a group, a query evicts only what it
/// has not used itself ([`CacheSession`]).
pub(crate) struct IndexCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
    /// Ticks of use, for recency.
    tick: AtomicU64,
}

struct CacheInner {
    map: HashMap<PathBuf, CacheEntry>,
    bytes: usize,
}

/// Bytes a cached failure is counted for.
const FAILURE_BYTES: usize = 256;

impl IndexCache {
    pub fn new(capacity: usize) -> IndexCache {
        IndexCache {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                bytes: 0,
            }),
            capacity,
            tick: AtomicU64::new(1),
        }
    }

    /// A new tick of use.
    fn now(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// A query's session, taken when it begins, with the index files of every segment it
    /// may read: their cached summaries count as used by it from the start, so that it
    /// never evicts one it has yet to reach ([`CacheSession`]).
    pub fn session<'a>(&self, indexes: impl IntoIterator<Item = &'a Path>) -> CacheSession {
        let since = self.now();
        let mut c = self.inner.lock();
        for path in indexes {
            if let Some(e) = c.map.get_mut(path) {
                e.used = self.now();
            }
        }
        CacheSession {
            since,
            victims: Mutex::new(None),
        }
    }

    /// The checked index of the segment with `header`, summarised in groups of
    /// `group_blocks` blocks, with the file it was checked from (groups are read again from
    /// that file, never from a newer index); or why there is none. `true` if the index was
    /// read and checked for this call (its summary was not cached). A summary is kept
    /// before any group.
    #[allow(clippy::too_many_arguments)]
    fn get(
        &self,
        org_dir: &Path,
        org: &OrgId,
        header: &SegmentHeader,
        genesis: &Hash,
        keys: &dyn KeyProvider,
        group_blocks: u64,
        session: &CacheSession,
    ) -> (Loaded, bool) {
        let path = org_dir.join(index_file_name(header.id));
        let opened = crate::segment::open_regular(&path).and_then(|f| f.metadata().map(|m| (f, m)));
        let (file, meta) = match opened {
            Ok(fm) => fm,
            Err(e) => return (Err(Arc::new(Unused::unopened(e))), false),
        };
        let stamp = FileStamp::of(&meta);
        {
            let mut c = self.inner.lock();
            if let Some(e) = c.map.get_mut(&path)
                && e.stamp == stamp
                && e.genesis == *genesis
                && e.group_blocks == group_blocks
            {
                e.used = self.now();
                return (e.loaded.clone().map(|l| (l, file)), false);
            }
        }
        let checked = file.try_clone().map_err(|e| Box::new(Unused::unopened(e)));
        let loaded = checked
            .and_then(|f| load(path.clone(), f, org, header, genesis, keys, group_blocks))
            .map(Arc::new)
            .map_err(Arc::from);
        let mem = loaded.as_ref().map_or(FAILURE_BYTES, |l| l.summary_mem());
        // A failure that depends on the provider or the device (a key it lacks or failed to
        // give, a read error) is not kept: the next query checks the index again, so a key
        // loaded late or a key service back up brings the index back into use.
        let settled = loaded
            .as_ref()
            .map_or_else(|u: &Arc<Unused>| u.evidence.is_settled(), |_| true);
        if settled && mem <= self.capacity {
            let mut c = self.inner.lock();
            let used = self.now();
            if let Some(old) = c.map.insert(
                path,
                CacheEntry {
                    stamp,
                    genesis: *genesis,
                    group_blocks,
                    loaded: loaded.clone(),
                    mem,
                    used,
                },
            ) {
                c.drop_entry(old);
            }
            c.bytes += mem;
            c.shrink_to(self.capacity, session);
        }
        (loaded.map(|l| (l, file)), true)
    }

    /// Group `g` of `ix`, from the cache, or read from `file` (the index file `ix` was
    /// checked from) and checked against its digest (then `true`). A group read is kept if
    /// it fits, evicting only groups the query may evict ([`CacheSession`]).
    fn group(
        &self,
        ix: &Arc<LoadedIndex>,
        file: &File,
        g: usize,
        session: &CacheSession,
    ) -> Result<(Arc<GroupBlocks>, bool), Rejected> {
        if let Some(b) = ix.groups.lock().get_mut(&g) {
            b.used = self.now();
            return Ok((Arc::clone(&b.blocks), false));
        }
        let blocks = Arc::new(ix.summary.group(file, g)?);
        let mem = blocks.mem();
        let mut c = self.inner.lock();
        // Groups are added only here, under `inner`: one another query kept meanwhile is
        // not added (or room made for it) again.
        let wanted = c.holds(ix) && !ix.groups.lock().contains_key(&g);
        if wanted && c.make_room(self.capacity, mem, session) && c.holds(ix) {
            let used = self.now();
            ix.groups.lock().insert(
                g,
                CachedGroup {
                    blocks: Arc::clone(&blocks),
                    used,
                },
            );
            if let Some(e) = c.map.get_mut(&ix.path) {
                e.used = used;
                e.mem += mem;
            }
            c.bytes += mem;
        }
        Ok((blocks, true))
    }

    /// Drops `ix` from the cache (a group of it was refused).
    fn forget(&self, ix: &Arc<LoadedIndex>) {
        let mut c = self.inner.lock();
        if c.holds(ix)
            && let Some(e) = c.map.remove(&ix.path)
        {
            c.drop_entry(e);
        }
    }
}

impl CacheInner {
    /// Whether the cache's entry for `ix`'s file is `ix` itself (not a failure, not a newer
    /// load of the file).
    fn holds(&self, ix: &Arc<LoadedIndex>) -> bool {
        self.map
            .get(&ix.path)
            .is_some_and(|e| e.loaded.as_ref().is_ok_and(|l| Arc::ptr_eq(l, ix)))
    }

    /// Forgets an entry, and the groups its index kept (a query still reading it holds the
    /// index, not its groups).
    fn drop_entry(&mut self, e: CacheEntry) {
        self.bytes -= e.mem;
        if let Ok(l) = &e.loaded {
            l.groups.lock().clear();
        }
    }

    /// Every cached group, as a victim with its last use.
    fn cached_groups(&self) -> Vec<Victim> {
        let mut all = Vec::new();
        for e in self.map.values() {
            if let Ok(l) = &e.loaded {
                for (g, cg) in l.groups.lock().iter() {
                    all.push(Victim {
                        used: cg.used,
                        ix: Arc::clone(l),
                        group: Some(*g),
                    });
                }
            }
        }
        all
    }

    /// What the query of `session` may evict, in the order it evicts them, last first
    /// ([`CacheSession`]).
    fn victims_for(&self, session: &CacheSession) -> Vec<Victim> {
        let mut groups = self.cached_groups();
        groups.retain(|v| v.used < session.since);
        let mut summaries: Vec<Victim> = self
            .map
            .values()
            .filter(|e| e.used < session.since)
            .filter_map(|e| {
                e.loaded.as_ref().ok().map(|l| Victim {
                    used: e.used,
                    ix: Arc::clone(l),
                    group: None,
                })
            })
            .collect();
        // Taken from the end: groups, least recently used first, then summaries.
        groups.sort_unstable_by_key(|v| std::cmp::Reverse(v.used));
        summaries.sort_unstable_by_key(|v| std::cmp::Reverse(v.used));
        summaries.extend(groups);
        summaries
    }

    /// Evicts what the query of `session` may evict ([`CacheSession`]) until `need` more
    /// bytes fit within `capacity`; `false` if they cannot (some may have gone all the
    /// same: they were older than the query).
    fn make_room(&mut self, capacity: usize, need: usize, session: &CacheSession) -> bool {
        let over = (self.bytes + need).saturating_sub(capacity);
        if over == 0 {
            return true;
        }
        let mut victims = session.victims.lock();
        let victims = victims.get_or_insert_with(|| self.victims_for(session));
        let mut freed = 0;
        while freed < over {
            let Some(v) = victims.pop() else {
                return false;
            };
            freed += self.evict(&v);
        }
        true
    }

    /// Drops `v` (a group of `v.ix`, or the whole entry with its groups) if the cache
    /// still holds it unused since `v.used`; the bytes freed.
    fn evict(&mut self, v: &Victim) -> usize {
        if !self.holds(&v.ix) {
            return 0;
        }
        let Some(e) = self.map.get_mut(&v.ix.path) else {
            return 0;
        };
        let Some(g) = v.group else {
            if e.used != v.used {
                return 0;
            }
            let mem = e.mem;
            if let Some(e) = self.map.remove(&v.ix.path) {
                self.drop_entry(e);
            }
            return mem;
        };
        let mut groups = v.ix.groups.lock();
        if groups.get(&g).is_none_or(|cg| cg.used != v.used) {
            return 0;
        }
        let Some(cg) = groups.remove(&g) else {
            return 0;
        };
        let mem = cg.blocks.mem();
        e.mem -= mem;
        self.bytes -= mem;
        mem
    }

    /// Evicts until at most `capacity` bytes are held, to keep a summary: groups first
    /// (those the query of `session` may evict, least recently used first, then its own,
    /// most recently used first so that what it keeps stays a prefix of its order), then
    /// whole entries (summaries), least recently used first.
    fn shrink_to(&mut self, capacity: usize, session: &CacheSession) {
        if self.bytes <= capacity {
            return;
        }
        let mut groups = self.cached_groups();
        groups.sort_unstable_by_key(|v| {
            if v.used < session.since {
                (0, v.used)
            } else {
                (1, u64::MAX - v.used)
            }
        });
        for v in &groups {
            if self.bytes <= capacity {
                return;
            }
            self.evict(v);
        }
        while self.bytes > capacity {
            let Some(victim) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(e) = self.map.remove(&victim) {
                self.drop_entry(e);
            }
        }
    }
}

/// Something in the cache a query may evict, as it was when listed: a group of `ix`, or
/// (`group` None) its whole entry.
struct Victim {
    used: u64,
    ix: Arc<LoadedIndex>,
    group: Option<usize>,
}

/// One query's dealings with the [`IndexCache`].
///
/// To keep a group it reads, the query evicts only what was last used before it began
/// (`since`): the groups it has used and the indexes of every segment it may read (marked
/// used when it begins) are its working set. Least recently used first, groups before
/// summaries (a summary cost a pass over its whole index, a group one read). When its
/// working set is larger than the cache, what does not fit is read and not kept, and the
/// next run of the query finds the part that was kept, the first groups in the order it
/// reads them. Plain LRU kept nothing: each run evicted, in order, what the next one
/// needed first.
///
/// The candidates are listed once, when the query first needs room, and the list only
/// shrinks: what is admitted later was used after `since`, and what the query uses leaves
/// the candidates (its tick changes). So a query pays one pass over the cache, not one
/// per group it reads.
pub(crate) struct CacheSession {
    since: u64,
    /// Taken from the end.
    victims: Mutex<Option<Vec<Victim>>>,
}

impl LoadedIndex {
    /// Bytes held by the summary.
    fn summary_mem(&self) -> usize {
        std::mem::size_of::<LoadedIndex>()
            + self.summary.groups.len() * std::mem::size_of::<crate::segment::index_file::Group>()
    }
}

/// Why a segment's index is not used, and what it may be evidence of all the same.
pub(crate) struct Unused {
    /// Why (for [`crate::query::QueryStats::indexes_bypassed`]).
    pub why: String,
    /// What it says of the segment that a query must not pass over in silence.
    pub evidence: Evidence,
}

/// What an index that is not used to plan a segment is evidence of (FORMAT.md §6: an
/// index whose tag does not verify is evidence of nothing).
pub(crate) enum Evidence {
    /// Nothing: absent, not a regular file, malformed, its tag does not verify, or it
    /// describes another segment.
    Nothing,
    /// It exists but cannot be read (permissions, I/O): it may be the only evidence of
    /// records since lost, so the query reports it (as recovery and `verify` do).
    Unreadable(std::io::Error),
    /// Authentic and naming this segment. Beside a readable header it describes another
    /// one (its `segment_hash` or `first_seq` differs, or it covers less than a header).
    Authentic(IndexHead),
    /// Naming this segment, its tag made with a key the provider lacks or fails to give
    /// (why): it cannot be checked, and may be authentic.
    KeyMissing(IndexHead, String),
}

impl Evidence {
    /// Whether reading the index again, unchanged, must give the same verdict: not so for
    /// a key the provider lacks or failed to give, nor for a read error.
    fn is_settled(&self) -> bool {
        match self {
            Evidence::Nothing | Evidence::Authentic(_) => true,
            Evidence::Unreadable(_) | Evidence::KeyMissing(..) => false,
        }
    }
}

impl Unused {
    /// An index file that could not be opened (or its descriptor cloned).
    fn unopened(e: std::io::Error) -> Unused {
        Unused {
            why: recover::unopened(&e),
            evidence: Evidence::unread(e),
        }
    }
}

/// Recovery's reading of an index ([`index_file::evidence`]), or why it could not be read.
impl From<std::io::Result<IndexEvidence>> for Evidence {
    fn from(read: std::io::Result<IndexEvidence>) -> Evidence {
        match read {
            Ok(IndexEvidence::None) => Evidence::Nothing,
            Ok(IndexEvidence::Authentic(head)) => Evidence::Authentic(head),
            Ok(IndexEvidence::KeyMissing { head, why }) => Evidence::KeyMissing(head, why),
            Err(e) => Evidence::Unreadable(e),
        }
    }
}

impl Evidence {
    /// An index that could not be opened or read: absent or not a regular file (nothing a
    /// writer made), or a file shorter than its own counts (malformed) is no evidence.
    fn unread(e: std::io::Error) -> Evidence {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof => {
                Evidence::Nothing
            }
            _ => Evidence::Unreadable(e),
        }
    }

    /// What the index of segment `id`, read without its segment's header, is evidence of:
    /// for a segment file that is missing or shorter than its header. `index` is its path.
    fn of(index: &Path, place: &Place<'_>, id: SegmentId) -> Evidence {
        index_file::evidence_at(index, place.org, id, place.keys).into()
    }

    /// What the index file `file` of segment `id` of `org` is evidence of.
    fn read(file: File, org: &OrgId, id: SegmentId, keys: &dyn KeyProvider) -> Evidence {
        index_file::evidence(file, org, id, keys).into()
    }

    /// The error item for an index that is not used although the segment `seg` (`len`
    /// bytes, its header readable) has one: `None` when it is evidence of nothing the
    /// segment contradicts. An authentic index that does not describe the header, one that
    /// may be authentic and covers more than the file has, and one that cannot be read, are
    /// reported (the segment is read all the same, without the index).
    fn beside_header(&self, seg: &Path, index: &Path, len: u64) -> Option<Error> {
        match self {
            Evidence::Nothing => None,
            Evidence::Unreadable(e) => Some(unreadable_index(index, e)),
            Evidence::Authentic(_) => Some(Error::Integrity {
                file: seg.to_path_buf(),
                offset: 0,
                seq: None,
                kind: IntegrityKind::IndexMismatch {
                    what: format!(
                        "its header is not the one its signed index {} describes (segment_hash, \
                         first_seq or covered_len): the header was replaced or altered",
                        index.display()
                    ),
                },
            }),
            Evidence::KeyMissing(ix, why) if ix.covered_len > len => {
                Some(uncheckable_claim(seg, index, Some(len), ix, why))
            }
            Evidence::KeyMissing(..) => None,
        }
    }

    /// The error item for the index of a segment file that is missing (`len` None) or
    /// shorter than a header (`len` bytes): `None` when it is evidence of nothing. An
    /// index is written only over a header and records already durable, so an index that
    /// is (or may be) authentic and covers more than the file holds shows records were
    /// removed; one that cannot be read may show it.
    fn without_header(&self, seg: &Path, index: &Path, len: Option<u64>) -> Option<Error> {
        match self {
            Evidence::Nothing => None,
            Evidence::Unreadable(e) => Some(unreadable_index(index, e)),
            Evidence::Authentic(ix) => match len {
                Some(length) if ix.covered_len > length => Some(Error::Integrity {
                    file: seg.to_path_buf(),
                    offset: length,
                    seq: ix.first_seq.checked_add(ix.record_count),
                    kind: IntegrityKind::Truncated {
                        length,
                        covered_len: ix.covered_len,
                        records: ix.record_count,
                    },
                }),
                Some(_) => None,
                None => Some(Error::Integrity {
                    file: seg.to_path_buf(),
                    offset: 0,
                    seq: None,
                    kind: IntegrityKind::IndexMismatch {
                        what: format!(
                            "the segment file is missing, but its signed index {} covers {} \
                             bytes ({} records from seq {}): it was deleted or moved",
                            index.display(),
                            ix.covered_len,
                            ix.record_count,
                            ix.first_seq
                        ),
                    },
                }),
            },
            Evidence::KeyMissing(ix, why) => match len {
                Some(length) if ix.covered_len <= length => None,
                _ => Some(uncheckable_claim(seg, index, len, ix, why)),
            },
        }
    }
}

/// An index file that exists but cannot be read.
fn unreadable_index(index: &Path, e: &std::io::Error) -> Error {
    Error::io(
        "read index",
        index,
        std::io::Error::new(e.kind(), e.to_string()),
    )
}

/// An index that may be authentic (its key is missing) and covers more than the segment
/// file `seg` has (`len` bytes; `None`: the file is missing).
fn uncheckable_claim(
    seg: &Path,
    index: &Path,
    len: Option<u64>,
    ix: &IndexHead,
    why: &str,
) -> Error {
    let has = len.map_or_else(|| "is missing".to_string(), |l| format!("has {l} bytes"));
    Error::Integrity {
        file: seg.to_path_buf(),
        offset: len.unwrap_or(0),
        seq: None,
        kind: IntegrityKind::IndexMismatch {
            what: format!(
                "its index {} covers {} bytes ({} records from seq {}) but the segment {has}: \
                 records may have been removed (the index names key {}, which could not be had \
                 to check it: {why})",
                index.display(),
                ix.covered_len,
                ix.record_count,
                ix.first_seq,
                ix.key_id
            ),
        },
    }
}

/// Checks an index in one streaming pass (CRC, structure and sections, tag, org/segment,
/// header hash, first_seq) and summarises it. `covered_len` against the segment's length is
/// checked by the caller. An index that fails is read once more for what it is evidence of
/// all the same ([`Evidence`]; failures are cached like summaries, so this costs one more
/// pass per index file, not per query, except where the key or a read failed:
/// [`Evidence::is_settled`]).
fn load(
    path: PathBuf,
    file: File,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    keys: &dyn KeyProvider,
    group_blocks: u64,
) -> Result<LoadedIndex, Box<Unused>> {
    let again = file
        .try_clone()
        .map_err(|e| Box::new(Unused::unopened(e)))?;
    let (head, summary) =
        match recover::read_index_summary(file, org, header, genesis, u64::MAX, keys, group_blocks)
        {
            Ok(loaded) => loaded,
            Err(why) => {
                let evidence = match Evidence::read(again, org, header.id, keys) {
                    // Authentic and describing this header: the first read failed on
                    // something that did not recur (an I/O error); not evidence of damage.
                    Evidence::Authentic(ix)
                        if ix.segment_hash == *genesis
                            && ix.first_seq == header.first_seq
                            && ix.covered_len >= SEGMENT_HEADER_LEN as u64 =>
                    {
                        Evidence::Nothing
                    }
                    other => other,
                };
                return Err(Box::new(Unused { why, evidence }));
            }
        };
    Ok(LoadedIndex {
        path,
        covered_len: head.covered_len,
        record_count: head.record_count,
        first_seq: head.first_seq,
        head: head.head,
        segment_hash: head.segment_hash,
        summary,
        groups: Mutex::new(HashMap::new()),
    })
}

// ---------------------------------------------------------------------------------------
// Envelopes: forward, the smallest lower bound; reverse, the largest upper bound.
// ---------------------------------------------------------------------------------------

/// The envelope of nothing.
fn neutral(reverse: bool) -> Timestamp {
    Timestamp(if reverse { i64::MIN } else { i64::MAX })
}

/// The envelope of two envelopes.
fn env(reverse: bool, a: Timestamp, b: Timestamp) -> Timestamp {
    if reverse { a.max(b) } else { a.min(b) }
}

/// The envelope of one block or group bounded by `[lo, hi]`.
fn edge(reverse: bool, lo: Timestamp, hi: Timestamp) -> Timestamp {
    if reverse { hi } else { lo }
}

impl MonthPlan {
    /// Opens `month`'s segment parts (sorted by part) and readies their first groups.
    /// `orphans`: parts of the month with an index file and no segment file when the org's
    /// directory was listed.
    pub fn new(ctx: &Ctx, parts: &[SegmentId], orphans: &[SegmentId]) -> MonthPlan {
        let mut found = Findings::default();
        let mut sources = Vec::new();
        let mut streams = Vec::new();
        for id in parts {
            let path = ctx.dir.join(segment_file_name(*id));
            let latest = parts.last() == Some(id);
            match open_source(ctx, &path, *id, latest, sources.len(), &mut found) {
                Ok(Some((src, stream))) => {
                    sources.push(src);
                    streams.push(stream);
                }
                Ok(None) => {}
                Err(e) => found.errors.push(e),
            }
        }
        for id in orphans {
            let path = ctx.dir.join(segment_file_name(*id));
            // Created since the listing: its records were all appended after the query
            // began, so it is not read (as bytes written past a segment's planned end).
            if std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            found
                .errors
                .extend(missing_segment(&ctx.place(), &path, *id));
        }
        MonthPlan {
            sources: Arc::new(sources),
            streams,
            found,
            round_blocks: usize::try_from(ctx.plan_blocks.saturating_mul(ROUND_GROUPS))
                .unwrap_or(usize::MAX)
                .max(1),
        }
    }

    /// The next round of blocks in reading order, `None` when the month has no more.
    ///
    /// Forward: the next block comes from the segment whose unread blocks have the smallest
    /// lower bound; the frontier is the smallest lower bound of all unread blocks. Reverse is
    /// the mirror image (blocks from the end, largest upper bounds). With one segment this is
    /// simply file order (reverse file order), which keeps reads sequential.
    pub fn next_round(&mut self, ctx: &Ctx) -> Option<Round> {
        let reverse = ctx.reverse;
        // Room for a whole round up front (pages are only touched as blocks are added):
        // growing the vectors block by block copied them over and over.
        let room = self.round_blocks.min(1 << 16);
        let mut round = Round {
            blocks: Vec::with_capacity(room),
            frontier: Vec::with_capacity(room),
            ..Round::default()
        };
        while round.blocks.len() < self.round_blocks {
            for s in &mut self.streams {
                s.fill(ctx, &mut self.found);
            }
            let key = |s: &Stream| {
                let b = i128::from(s.bound(reverse).0);
                if reverse { -b } else { b }
            };
            let pick = self
                .streams
                .iter_mut()
                .filter(|s| s.pos < s.ready.len())
                .min_by_key(|s| key(s));
            let Some(block) = pick.and_then(Stream::take) else {
                break;
            };
            round.bytes += block.end - block.start;
            round.blocks.push(block);
            let frontier = self
                .streams
                .iter()
                .fold(neutral(reverse), |f, s| env(reverse, f, s.bound(reverse)));
            round.frontier.push(frontier);
        }
        if round.blocks.is_empty() {
            return None;
        }
        round.batches = batches(&round.blocks, ctx.batch_bytes);
        Some(round)
    }
}

/// Groups consecutive blocks (in reading order) of one file into batches of up to `batch`
/// bytes and [`MAX_BATCH_BLOCKS`] blocks; damage blocks stand alone. A batch is one task
/// for a thread; its blocks that are adjacent in the file are read with one pread.
fn batches(blocks: &[Block], batch: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = blocks.len();
    while i < n {
        let mut j = i + 1;
        let mut bytes = blocks.get(i).map_or(0, |b| b.end - b.start);
        while let (Some(a), Some(b)) = (blocks.get(j - 1), blocks.get(j)) {
            let joinable = a.src == b.src && a.damage.is_none() && b.damage.is_none();
            if !joinable || bytes + (b.end - b.start) > batch || j - i >= MAX_BATCH_BLOCKS {
                break;
            }
            bytes += b.end - b.start;
            j += 1;
        }
        out.push((i, j));
        i = j;
    }
    out
}

/// Opens one segment and readies its blocks. `Ok(None)`: the segment has nothing to read.
/// `latest`: it is the last part of its month that was listed.
fn open_source(
    ctx: &Ctx,
    path: &Path,
    id: SegmentId,
    latest: bool,
    src: usize,
    found: &mut Findings,
) -> Result<Option<(Source, Stream)>, Error> {
    let file = match crate::segment::open_regular(path) {
        Ok(f) => f,
        // Gone between listing and opening (recovery moved a segment without records to
        // quarantine): nothing to read, unless an index of it says it held records.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return missing_segment(&ctx.place(), path, id).map_or(Ok(None), Err);
        }
        Err(e) => return Err(Error::io("open segment", path, e)),
    };
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    if let Err(e) = file.read_exact_at(&mut head, 0) {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return short_segment(&ctx.place(), path, &file, id, latest).map(|()| None);
        }
        return Err(Error::io("read segment header", path, e));
    }
    // A newer format is not corruption: the query says which file needs a newer reader.
    // A header that fails its checks is damage, reported; the records after it are still
    // read, as `verify` and `stats` read them, but none can be placed in the chain (the
    // header's hash anchors the first record): a verified query checks and withholds them
    // (counted), an unverified one returns them.
    let header = match SegmentHeader::decode(&head) {
        Ok(h) => h,
        Err(e) if e.needs_newer_reader() => return Err(Error::decode(path, None, e)),
        Err(e) => {
            found.errors.push(Error::decode(path, None, e));
            return headerless_source(ctx, path, file, id, src, found).map(Some);
        }
    };
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
    // A continuation part whose link counts records of the part before it, that part's
    // file gone: its records are missing, and the month must not read as whole without
    // them (part 0 deleted, the query returned part 1's records alone, exit 0).
    if let Some(gone) = crate::segment::continued_part_missing(&ctx.dir, path, &header) {
        found.errors.push(gone);
    }
    let genesis = crypto::sha256(&head);
    // The index first, then the length: a live writer only writes an index over bytes it
    // has already written, so the length read afterwards covers it.
    let (index, checked) = ctx.cache.get(
        &ctx.dir,
        &ctx.org,
        &header,
        &genesis,
        &*ctx.keys,
        ctx.plan_blocks,
        &ctx.cache_session,
    );
    found.indexes_checked += u64::from(checked);
    let end = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    let index = match index {
        Ok((ix, _)) if ix.covered_len > end => {
            // The index is authentic (its tag checked) and only ever covers durable bytes:
            // the segment lost records it once held.
            found.errors.push(Error::Integrity {
                file: path.to_path_buf(),
                offset: end,
                // Without section 3 nothing bounds `record_count`: a signed index can claim
                // more records than seqs remain after `first_seq`.
                seq: ix.first_seq.checked_add(ix.record_count),
                kind: IntegrityKind::Truncated {
                    length: end,
                    covered_len: ix.covered_len,
                    records: ix.record_count,
                },
            });
            found
                .bypassed
                .push((path.to_path_buf(), "covers more than the segment".into()));
            None
        }
        Ok((ix, f)) if ix.segment_hash == genesis => Some((ix, f)),
        Ok(_) => None,
        Err(unused) => {
            let index = ctx.dir.join(index_file_name(id));
            found
                .errors
                .extend(unused.evidence.beside_header(path, &index, end));
            found
                .bypassed
                .push((path.to_path_buf(), unused.why.clone()));
            None
        }
    };
    let (source, mut stream) = source_and_stream(path, file, end, id, src)?;
    let hdr = SEGMENT_HEADER_LEN as u64;
    let first = Expect::SeqPrev(header.first_seq, genesis);
    let io = |e| Error::io("read segment", path, e);
    match index {
        Some((ix, ixf)) if ix.summary.times_at.is_some() => {
            let tail = (end > ix.covered_len).then(|| {
                // An index claiming more records than seqs remain (nothing bounds
                // `record_count` without section 3) expects the last seq there is, which
                // the tail's first record then fails to have: reported, never wrapped.
                let after = ix.first_seq.saturating_add(ix.record_count);
                let from = Expect::SeqPrev(after, ix.head);
                (ix.covered_len, from)
            });
            let meta: Vec<GroupMeta> = (0..ix.summary.groups.len())
                .filter_map(|g| {
                    let gr = ix.summary.groups.get(g)?;
                    Some(GroupMeta {
                        lo: gr.lo,
                        hi: gr.hi,
                        always: false,
                        blocks: ix.summary.group_len(g),
                    })
                })
                .collect();
            let kind = PieceKind::Index {
                ix,
                file: ixf,
                first,
            };
            stream
                .pieces
                .push_back(Piece::new(kind, &meta, &ctx.filter, ctx.reverse, found));
            // The unindexed tail: a read error there costs the tail, not the indexed part.
            if let Some((from, expect)) = tail {
                match stream.hint_piece(ctx, (from, end), from, expect, found) {
                    Ok(p) => stream.pieces.push_back(p),
                    Err(e) => found.errors.push(io(e)),
                }
            }
        }
        Some((ix, _)) => {
            // No query sections: seek through the entries (a group at a time), then read
            // on to the end.
            let groups = &ix.summary.groups;
            let k = match ctx.reverse {
                true => 0,
                false => groups
                    .partition_point(|g| g.first.max_ts_before < ctx.filter.since)
                    .saturating_sub(1),
            };
            let (from, expect) = match groups.get(k) {
                Some(g) if k > 0 => (g.first.offset, Expect::Seq(g.first.seq)),
                _ => (hdr, first),
            };
            // The index is authentic: it vouches for the records before `covered_len`.
            let p = stream
                .hint_piece(ctx, (from, end), ix.covered_len, expect, found)
                .map_err(io)?;
            stream.pieces.push_back(p);
        }
        None => {
            let p = stream
                .hint_piece(ctx, (hdr, end), hdr, first, found)
                .map_err(io)?;
            stream.pieces.push_back(p);
        }
    }
    if ctx.reverse {
        stream.pieces = stream.pieces.into_iter().rev().collect();
    }
    Ok(Some((source, stream)))
}

/// The source and an empty stream of segment `id` (at `path`, `end` bytes long).
fn source_and_stream(
    path: &Path,
    file: File,
    end: u64,
    id: SegmentId,
    src: usize,
) -> Result<(Source, Stream), Error> {
    let seg = file
        .try_clone()
        .map_err(|e| Error::io("open segment", path, e))?;
    let stream = Stream {
        src,
        path: path.to_path_buf(),
        seg,
        end,
        month: (
            id.month.start(),
            Timestamp(id.month.end().0.saturating_sub(1)),
        ),
        pieces: VecDeque::new(),
        ready: Vec::new(),
        ready_env: Vec::new(),
        pos: 0,
    };
    let source = Source {
        path: path.to_path_buf(),
        file,
        month: id.month,
        part: id.part,
        month_start: id.month.start(),
        month_end: id.month.end(),
    };
    Ok((source, stream))
}

/// A segment whose header fails its checks (reported by the caller): its records are read
/// as the file's name places them (org and month), by one hint pass from the end of the
/// header, started as after a fault, so that a verified query checks every record and
/// withholds them all (nothing anchors the chain), and an unverified one returns them. An
/// index that is, or may be, authentic and covers more than the file has is reported, as
/// for a segment without its header.
fn headerless_source(
    ctx: &Ctx,
    path: &Path,
    file: File,
    id: SegmentId,
    src: usize,
    found: &mut Findings,
) -> Result<(Source, Stream), Error> {
    let end = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    let index = ctx.dir.join(index_file_name(id));
    found
        .errors
        .extend(Evidence::of(&index, &ctx.place(), id).without_header(path, &index, Some(end)));
    let (source, mut stream) = source_and_stream(path, file, end, id, src)?;
    let hdr = SEGMENT_HEADER_LEN as u64;
    let start = (
        Expect::Nothing,
        WalkAt {
            faulted: true,
            ..WalkAt::starting(Expect::Nothing)
        },
    );
    let p = stream
        .hint_piece_at(ctx, (hdr, end), hdr, start, found)
        .map_err(|e| Error::io("read segment", path, e))?;
    stream.pieces.push_back(p);
    Ok((source, stream))
}

/// The error item for segment `id` (at `path`), listed but missing: `None` unless an
/// index of it, which a writer writes only over records already durable, says it held
/// records ([`Evidence::without_header`]).
pub(crate) fn missing_segment(place: &Place<'_>, path: &Path, id: SegmentId) -> Option<Error> {
    let index = place.dir.join(index_file_name(id));
    Evidence::of(&index, place, id).without_header(path, &index, None)
}

/// A segment file shorter than a header (`Ok`: nothing to read; `Err`: the error item).
///
/// A writer creates a segment and writes its header before any record and before any index
/// of it, so such a file holds no record, and is one of: a segment being created by a live
/// writer, one whose creation a crash cut short, or one cut or emptied after the fact. An
/// index of it that is, or may be, authentic, or that cannot be read, tells the last apart:
/// reported as [`Evidence::without_header`] says. Without one, the file is passed over only
/// as `verify` passes it over: the latest part of its month while a writer holds the log's
/// lock (being created). Otherwise its header is damage (`verify`: `torn_tail` for the
/// latest part, `checksum_corruption` for an earlier one, both errors) and is reported as
/// [`Error::Corrupt`], never an empty month.
pub(crate) fn short_segment(
    place: &Place<'_>,
    path: &Path,
    file: &File,
    id: SegmentId,
    latest: bool,
) -> Result<(), Error> {
    let stat = |f: &File| {
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat segment", path, e))
    };
    let len = stat(file)?;
    let index = place.dir.join(index_file_name(id));
    if let Some(e) = Evidence::of(&index, place, id).without_header(path, &index, Some(len)) {
        return Err(e);
    }
    if latest && writer_is_live(place) {
        return Ok(());
    }
    // Asked after the header was found short: a segment a writer was creating then has its
    // header now (the writer held the lock until it was written), or was removed after a
    // failed write. Either way it held no record when the query looked.
    let now = std::fs::metadata(path);
    let file_now = file.metadata();
    let same = match (&now, &file_now) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    };
    let len = stat(file)?;
    if !same || len >= SEGMENT_HEADER_LEN as u64 {
        return Ok(());
    }
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let source = match SegmentHeader::decode(&bytes) {
        Err(e) => e,
        Ok(_) => DecodeError {
            structure: "segment header",
            field: "header",
            offset: 0,
            kind: DecodeErrorKind::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: len,
            },
        },
    };
    Err(Error::decode(path, None, source))
}

/// Whether a writer holds the lock of the log the org directory is in
/// ([`crate::log::writer_is_live`]).
fn writer_is_live(place: &Place<'_>) -> bool {
    place.dir.parent().is_some_and(crate::log::writer_is_live)
}

/// One segment's blocks still to come, in reading order.
struct Stream {
    src: usize,
    path: PathBuf,
    /// The segment, and its length when the month was planned.
    seg: File,
    end: u64,
    /// The segment's month, `[start, last]` (for [`HintCheck`]).
    month: (Timestamp, Timestamp),
    /// Pieces not yet exhausted, in reading order.
    pieces: VecDeque<Piece>,
    /// The candidate blocks of the group loaded last, in reading order; from `pos` on unread.
    ready: Vec<Block>,
    /// `ready_env[j]`: the envelope of `ready[j..]`.
    ready_env: Vec<Timestamp>,
    pos: usize,
}

/// A stretch of a segment read one way (through its index, or by a hint pass), a group of
/// blocks at a time.
struct Piece {
    kind: PieceKind,
    /// The groups that may hold a candidate, in reading order.
    order: Vec<usize>,
    /// Groups of `order` already loaded.
    next: usize,
    /// `rest[j]`: the envelope of groups `order[j..]`.
    rest: Vec<Timestamp>,
}

enum PieceKind {
    /// Blocks of a checked index; `first` is what its first block must start with.
    Index {
        ix: Arc<LoadedIndex>,
        file: File,
        first: Expect,
    },
    /// Blocks of a hint pass. `kept`: the blocks of the pass itself, when it found at most
    /// [`ROUND_GROUPS`] groups (then there is no need to walk them again).
    Hint {
        win: FileWindow,
        groups: Vec<HintGroup>,
        kept: Option<Vec<Block>>,
        /// A checked index vouches for the records before this offset.
        vouched: u64,
        /// The segment's month, `[start, last]` (for [`HintCheck`]).
        month: (Timestamp, Timestamp),
    },
}

/// What a hint pass noted of one group: enough to walk it again.
struct HintGroup {
    start: u64,
    stop: u64,
    /// The walk's state at `start`.
    expect: Expect,
    at: WalkAt,
    /// Blocks (damage blocks not counted) and their time envelope.
    blocks: u64,
    lo: Timestamp,
    hi: Timestamp,
    /// Blocks of all kinds.
    count: u64,
    damage: bool,
}

/// A group as [`Piece::new`] sees it.
struct GroupMeta {
    lo: Timestamp,
    hi: Timestamp,
    /// Read whatever the range (it holds damage to report).
    always: bool,
    blocks: u64,
}

impl Piece {
    /// Keeps the groups that may hold a candidate, in reading order.
    fn new(
        kind: PieceKind,
        meta: &[GroupMeta],
        f: &Filter,
        reverse: bool,
        found: &mut Findings,
    ) -> Piece {
        let mut order = Vec::new();
        let mut edges = Vec::new();
        for (g, m) in meta.iter().enumerate() {
            found.blocks_considered += m.blocks;
            if m.always || (m.blocks > 0 && f.overlaps(m.lo, m.hi)) {
                order.push(g);
                edges.push(edge(reverse, m.lo, m.hi));
            } else {
                found.blocks_skipped += m.blocks;
            }
        }
        if reverse {
            order.reverse();
            edges.reverse();
        }
        let mut rest = vec![neutral(reverse); order.len() + 1];
        let mut e = neutral(reverse);
        for (slot, x) in rest.iter_mut().zip(&edges).rev() {
            e = env(reverse, e, *x);
            *slot = e;
        }
        Piece {
            kind,
            order,
            next: 0,
            rest,
        }
    }

    /// The envelope of the groups not yet loaded.
    fn rest(&self, reverse: bool) -> Timestamp {
        self.rest
            .get(self.next)
            .copied()
            .unwrap_or(neutral(reverse))
    }
}

impl Stream {
    /// The envelope of every unread block.
    fn bound(&self, reverse: bool) -> Timestamp {
        let ready = self
            .ready_env
            .get(self.pos)
            .copied()
            .unwrap_or(neutral(reverse));
        self.pieces
            .iter()
            .fold(ready, |b, p| env(reverse, b, p.rest(reverse)))
    }

    /// The next block.
    fn take(&mut self) -> Option<Block> {
        let b = self.ready.get(self.pos).cloned();
        self.pos += 1;
        b
    }

    /// Loads groups until a block is ready or nothing is left.
    fn fill(&mut self, ctx: &Ctx, found: &mut Findings) {
        let reverse = ctx.reverse;
        while self.pos >= self.ready.len() {
            let Some(piece) = self.pieces.front_mut() else {
                return;
            };
            let Some(&g) = piece.order.get(piece.next) else {
                self.pieces.pop_front();
                continue;
            };
            piece.next += 1;
            // The vectors of the group before are reused: no fresh pages per group.
            let mut blocks = std::mem::take(&mut self.ready);
            blocks.clear();
            let loaded = load_group(piece, g, self.src, &self.path, ctx, &mut blocks, found);
            if let Err(why) = loaded {
                self.index_failed(ctx, &why, found);
                continue;
            }
            if reverse {
                blocks.reverse();
            }
            let mut env_ = std::mem::take(&mut self.ready_env);
            env_.clear();
            env_.resize(blocks.len() + 1, neutral(reverse));
            let mut e = neutral(reverse);
            for (slot, b) in env_.iter_mut().zip(&blocks).rev() {
                e = env(reverse, e, edge(reverse, b.lo, b.hi));
                *slot = e;
            }
            self.ready = blocks;
            self.ready_env = env_;
            self.pos = 0;
        }
    }

    /// The front piece's index could not be read again as it was checked: the rest of its
    /// groups (the one that failed included) are read by a hint pass instead, which the
    /// checked summary still vouches for (a frame cut off inside it is damage, not a tail),
    /// and the index leaves the cache.
    fn index_failed(&mut self, ctx: &Ctx, why: &str, found: &mut Findings) {
        let Some(piece) = self.pieces.pop_front() else {
            return;
        };
        let PieceKind::Index { ix, first, .. } = &piece.kind else {
            self.pieces.push_front(piece);
            return;
        };
        ctx.cache.forget(ix);
        let left = piece
            .order
            .get(piece.next.saturating_sub(1)..)
            .unwrap_or_default();
        let (Some(&lo), Some(&hi)) = (left.iter().min(), left.iter().max()) else {
            return;
        };
        let groups = &ix.summary.groups;
        let (from, expect) = match groups.get(lo) {
            Some(g) if lo > 0 => (g.first.offset, Expect::Seq(g.first.seq)),
            _ => (SEGMENT_HEADER_LEN as u64, *first),
        };
        let to = groups
            .get(hi + 1)
            .map_or(ix.covered_len, |g| g.first.offset);
        // Those groups' blocks were counted as considered; the hint pass counts its own.
        let left_blocks: u64 = left.iter().map(|&g| ix.summary.group_len(g)).sum();
        found.blocks_considered = found.blocks_considered.saturating_sub(left_blocks);
        found.bypassed.push((
            ix.path.clone(),
            format!(
                "{why}; bytes {from}..{to} of {} read without it",
                self.path.display()
            ),
        ));
        match self.hint_piece(ctx, (from, to), to, expect, found) {
            Ok(p) => self.pieces.push_front(p),
            Err(e) => found.errors.push(Error::io("read segment", &self.path, e)),
        }
    }

    /// A hint pass over `[from, to)`: walks it once, noting its groups.
    fn hint_piece(
        &self,
        ctx: &Ctx,
        range: (u64, u64),
        vouched: u64,
        expect: Expect,
        found: &mut Findings,
    ) -> std::io::Result<Piece> {
        let start = (expect, WalkAt::starting(expect));
        self.hint_piece_at(ctx, range, vouched, start, found)
    }

    /// [`Stream::hint_piece`], its walk starting in state `start`.
    fn hint_piece_at(
        &self,
        ctx: &Ctx,
        (from, to): (u64, u64),
        vouched: u64,
        (expect, at): (Expect, WalkAt),
        found: &mut Findings,
    ) -> std::io::Result<Piece> {
        let mut win = FileWindow::new(self.seg.try_clone()?, self.end);
        let mut groups: Vec<HintGroup> = Vec::new();
        let mut kept = Some(Vec::new());
        let per_group = ctx.plan_blocks;
        walk(
            &mut win,
            self.src,
            (from, to),
            vouched,
            (expect, at),
            HintCheck::new(ctx, self.month).as_mut(),
            &mut |b, at| {
                if groups.last().is_none_or(|g| g.count >= per_group) {
                    if groups.len() as u64 >= ROUND_GROUPS {
                        kept = None;
                    }
                    groups.push(HintGroup {
                        start: b.start,
                        stop: b.start,
                        expect: b.expect,
                        at,
                        blocks: 0,
                        lo: Timestamp(i64::MAX),
                        hi: Timestamp(i64::MIN),
                        count: 0,
                        damage: false,
                    });
                }
                if let Some(g) = groups.last_mut() {
                    g.count += 1;
                    g.stop = b.end;
                    if b.damage.is_some() {
                        g.damage = true;
                    } else {
                        g.blocks += 1;
                        g.lo = g.lo.min(b.lo);
                        g.hi = g.hi.max(b.hi);
                    }
                }
                if let Some(k) = kept.as_mut() {
                    k.push(b);
                }
            },
        )?;
        let meta: Vec<GroupMeta> = groups
            .iter()
            .map(|g| GroupMeta {
                lo: g.lo,
                hi: g.hi,
                always: g.damage,
                blocks: g.blocks,
            })
            .collect();
        let kind = PieceKind::Hint {
            win,
            groups,
            kept,
            vouched,
            month: self.month,
        };
        Ok(Piece::new(kind, &meta, &ctx.filter, ctx.reverse, found))
    }
}

/// Appends the candidate blocks of group `g` of `piece` to `out`, in file order. `Err`: the
/// index group could not be read as it was checked.
fn load_group(
    piece: &mut Piece,
    g: usize,
    src: usize,
    path: &Path,
    ctx: &Ctx,
    out: &mut Vec<Block>,
    found: &mut Findings,
) -> Result<(), String> {
    let f = &ctx.filter;
    match &mut piece.kind {
        PieceKind::Index { ix, file, first } => {
            let (blocks, read) = ctx
                .cache
                .group(ix, file, g, &ctx.cache_session)
                .map_err(|e| e.to_string())?;
            found.index_groups_read += u64::from(read);
            let base = g as u64 * ix.summary.group_blocks;
            let next_group = ix.summary.groups.get(g + 1).map(|n| n.first);
            let times = blocks.times.as_deref().unwrap_or_default();
            // With user marks, only the blocks holding a record the user's mark picks
            // (FORMAT.md §3.3), found from the marks rather than block by block.
            let marked = match (f.user_mark, &blocks.marks, &blocks.mark_starts) {
                (Some(user), Some(marks), Some(starts)) => Some(marked_blocks(
                    starts,
                    blocks.entries.first().map_or(0, |e| e.seq),
                    marks,
                    user,
                )),
                _ => None,
            };
            if let Some(m) = &marked {
                found.blocks_skipped += blocks.entries.len().saturating_sub(m.len()) as u64;
            }
            let mut consider = |j: usize, pick: Option<Vec<u64>>| {
                let (Some(e), Some(&(blo, bhi))) = (blocks.entries.get(j), times.get(j)) else {
                    return;
                };
                let candidate = f.overlaps(blo, bhi)
                    && blocks
                        .filters
                        .as_ref()
                        .is_none_or(|fl| fl.may_contain_all(j, &f.probes));
                if !candidate {
                    found.blocks_skipped += 1;
                    return;
                }
                let next = blocks.entries.get(j + 1).copied().or(next_group);
                let last_seq = next.map_or(ix.first_seq.saturating_add(ix.record_count), |n| n.seq);
                out.push(Block {
                    src,
                    start: e.offset,
                    end: next.map_or(ix.covered_len, |n| n.offset),
                    lo: blo,
                    hi: bhi,
                    expect: if base + j as u64 == 0 {
                        *first
                    } else {
                        Expect::Seq(e.seq)
                    },
                    records: Some(last_seq.saturating_sub(e.seq)),
                    damage: None,
                    pick,
                    withheld: false,
                    explained: false,
                });
            };
            match marked {
                Some(m) => m.into_iter().for_each(|(j, seqs)| consider(j, Some(seqs))),
                None => (0..blocks.entries.len()).for_each(|j| consider(j, None)),
            }
            Ok(())
        }
        PieceKind::Hint {
            win,
            groups,
            kept,
            vouched,
            month,
        } => {
            let mut keep = |b: Block| {
                if b.damage.is_some() || f.overlaps(b.lo, b.hi) {
                    out.push(b);
                } else {
                    found.blocks_skipped += 1;
                }
            };
            let Some(hg) = groups.get(g) else {
                return Ok(());
            };
            if let Some(blocks) = kept {
                // Groups hold `count` blocks each, back to back.
                let at: u64 = groups.iter().take(g).map(|x| x.count).sum();
                let at = usize::try_from(at).unwrap_or(usize::MAX);
                let n = usize::try_from(hg.count).unwrap_or(usize::MAX);
                let mine = blocks.get(at..at.saturating_add(n).min(blocks.len()));
                mine.unwrap_or_default().iter().cloned().for_each(&mut keep);
                return Ok(());
            }
            let walked = walk(
                win,
                src,
                (hg.start, hg.stop),
                *vouched,
                (hg.expect, hg.at),
                HintCheck::new(ctx, *month).as_mut(),
                &mut |b, _| keep(b),
            );
            if let Err(e) = walked {
                found.errors.push(Error::io("read segment", path, e));
            }
            Ok(())
        }
    }
}

/// The blocks of a group holding a record marked `user` or [`MARK_UNKNOWN`], each with the
/// seqs of those records, in order. `marks` are the group's records' user marks, the first
/// of seq `from`; `starts` each block's first record as a mark number (from
/// [`GroupBlocks::mark_starts`]). The marks are scanned a chunk at a time without branching
/// (a chunk rarely holds a hit), and each hit finds its block by an exponential search
/// onwards from the last hit's: the cost is one pass over 2 bytes per record, and a search
/// in 4 bytes per block that stays in the CPU's caches, not a step per block.
fn marked_blocks(starts: &[u32], from: u64, marks: &[u16], user: u16) -> Vec<(usize, Vec<u64>)> {
    const CHUNK: usize = 32;
    let may = |x: u16| (x == user) | (x == MARK_UNKNOWN);
    let mut out: Vec<(usize, Vec<u64>)> = Vec::new();
    for (c, chunk) in marks.chunks(CHUNK).enumerate() {
        if !chunk.iter().fold(false, |any, &x| any | may(x)) {
            continue;
        }
        for (i, &x) in chunk.iter().enumerate() {
            if !may(x) {
                continue;
            }
            // Mark numbers fit in u32: a group's marks came from one u32-long section.
            let n = (c * CHUNK + i) as u32;
            let seq = from + u64::from(n);
            match out.last_mut() {
                Some((j, seqs)) if starts.get(*j + 1).is_none_or(|&s| n < s) => {
                    seqs.push(seq);
                }
                last => {
                    // Hits come in seq order: search onwards from the last hit's block.
                    let j = block_of(starts, last.map_or(0, |(j, _)| *j), n);
                    out.push((j, vec![seq]));
                }
            }
        }
    }
    out
}

/// The block that holds record `n`, given each block's first record in `starts`
/// (increasing): the last block from `from` on that starts at or before `n` (`from` if
/// none does). Exponential search from `from`, so that consecutive hits cost the log of
/// the distance between them.
fn block_of(starts: &[u32], from: usize, n: u32) -> usize {
    let (mut lo, mut step) = (from, 1);
    while starts.get(lo + step).is_some_and(|&s| s <= n) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(starts.len());
    let within = starts.get(lo..hi).unwrap_or_default();
    lo + within.partition_point(|&s| s <= n).saturating_sub(1)
}

/// What a verified query's hint pass checks of the frames it walks (see [`walk`]): the
/// hint pass prunes blocks by the times it reads, and nothing signed vouches for them, so
/// they are trusted only for blocks whose records it has proven authentic.
pub(crate) struct HintCheck<'a> {
    tags: scan::Tags<'a>,
    /// The segment's month, `[start, last]`: what a block whose records are not proven
    /// authentic is taken to span, so that every query of the month reads it.
    month: (Timestamp, Timestamp),
}

impl<'a> HintCheck<'a> {
    fn new(ctx: &'a Ctx, month: (Timestamp, Timestamp)) -> Option<HintCheck<'a>> {
        ctx.verify.then(|| HintCheck {
            tags: scan::Tags::new(&ctx.org, &*ctx.keys),
            month,
        })
    }
}

/// Where a hint walk stands before a block: noted per group, so that the group can be
/// walked again from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WalkAt {
    /// The highest seq before.
    pub max_seq: Option<u64>,
    /// Verified walks: a broken link that no altered record explains, or a record after
    /// unreadable bytes below `floor`, came before: every later block is
    /// [`Block::withheld`].
    pub faulted: bool,
    /// Verified walks: past every seq walked so far (and at least the first seq the walk
    /// expected). After unreadable bytes the next record is placed only at or above it.
    pub floor: u64,
    /// Verified walks: the key id, chain hash and tag of the record before, which explains
    /// a broken link after it when its tag fails (it was altered). Part of the state noted
    /// per group: a group walked again from its start must explain a break at its first
    /// record as the first walk did, or it withheld the rest of the group.
    pub prev: Option<(KeyId, Hash, Tag)>,
}

impl WalkAt {
    /// The state at the start of a walk whose first record must be `expect`.
    fn starting(expect: Expect) -> WalkAt {
        WalkAt {
            max_seq: None,
            faulted: false,
            floor: match expect {
                Expect::Seq(n) | Expect::SeqPrev(n, _) => n,
                Expect::Nothing => 0,
            },
            prev: None,
        }
    }
}

/// The block a walk is building.
struct OpenHint {
    block: Block,
    /// The walk's state before the block.
    at: WalkAt,
    /// A record of the block failed its link to the one before (verified walks only).
    unlinked: bool,
    /// The key id, chain hash and tag of the block's last record (verified walks only).
    last: Option<(KeyId, Hash, Tag)>,
}

impl OpenHint {
    /// The finished block. In a verified walk its time bounds are kept only if its records
    /// are proven authentic: each linked to the one before by seq and chain hash, and the
    /// last one's tag verifying, which vouches for the whole block's bytes through the
    /// chain. Otherwise the block spans the whole month, so that a query of any range reads
    /// it and reports what is wrong with it.
    fn finish(self, check: Option<&mut HintCheck<'_>>) -> (Block, WalkAt) {
        let mut b = self.block;
        if let Some(c) = check {
            let authentic = !self.unlinked
                && self
                    .last
                    .is_some_and(|(id, hash, tag)| c.tags.authentic(id, &hash, &tag));
            if !authentic {
                b.lo = b.lo.min(c.month.0);
                b.hi = b.hi.max(c.month.1);
            }
        }
        (b, self.at)
    }
}

/// Walks the frames of `[from, to)` (CRC-checked), cuts them into blocks at
/// [`HINT_INTERVAL`], and hands each block to `sink` with the highest seq seen before it;
/// `start` is what the first record must be and the highest seq before `from`. Bytes that do
/// not read as frames become damage blocks, which end where frames resume, or at `to`. A
/// frame cut off at the window's end ends the walk (a live writer's record in progress, or
/// a torn tail) unless frames resume after it or a checked index vouches for the bytes
/// before `vouched` (then it is damage too: the frame's length was altered). Walking again
/// from a block's start with the state noted there gives the same blocks.
///
/// With `check` (a verified query) the walk also follows the chain: every record's seq and
/// `prev_hash` against the record before, and each block's last tag. Each block then
/// expects what the chain says must precede it (so a block read after a skipped one still
/// has its link checked), and a block that is not proven authentic spans its whole month
/// (see [`OpenHint::finish`]). Every block after the first broken link or unreadable bytes
/// is [`Block::withheld`]: nothing signed places its records in the chain (`start`'s last
/// item says whether such a fault came before `from`).
fn walk(
    win: &mut FileWindow,
    src: usize,
    (from, to): (u64, u64),
    vouched: u64,
    start: (Expect, WalkAt),
    mut check: Option<&mut HintCheck<'_>>,
    sink: &mut dyn FnMut(Block, WalkAt),
) -> std::io::Result<()> {
    let end = win.end();
    let stop = to.min(end);
    let mut off = from;
    let mut cur: Option<OpenHint> = None;
    let (mut expect, mut at) = start;
    // Verified walks: what the next record must be, from the chain so far (nothing known
    // after unreadable bytes: a walk of a verified query starts at an anchor otherwise).
    let mut link = start.0;
    let mut after_damage = link == Expect::Nothing;
    let mut next_boundary = 0u64;
    while off < stop {
        let (damage, incomplete) = match win.frame(off)? {
            Ok(rec) => {
                let (ts, seq, len) = (rec.fields.occurred_at, rec.fields.seq, rec.len());
                let mut unlinked = false;
                let mut explained = false;
                let mut last = None;
                let before = link;
                if let Some(c) = check.as_deref_mut() {
                    let hash = crypto::chain_hash(rec.chained_bytes());
                    let seq_ok = match link {
                        Expect::SeqPrev(n, _) | Expect::Seq(n) => seq == n,
                        Expect::Nothing => true,
                    };
                    unlinked = match link {
                        Expect::SeqPrev(n, h) => seq != n || rec.fields.prev != h,
                        Expect::Seq(n) => seq != n,
                        Expect::Nothing => false,
                    };
                    // Placement (see `Block::withheld`): a chain break where the seqs go on,
                    // right after a record whose tag fails, is that altered record's doing.
                    explained = unlinked
                        && seq_ok
                        && at
                            .prev
                            .is_some_and(|(id, h, t)| !c.tags.authentic(id, &h, &t));
                    if (unlinked && !explained) || (after_damage && seq < at.floor) {
                        at.faulted = true;
                    }
                    link = Expect::SeqPrev(seq.saturating_add(1), hash);
                    last = Some((rec.fields.key_id, hash, rec.tag));
                }
                after_damage = false;
                match &mut cur {
                    Some(o) if off < next_boundary => {
                        o.block.end = off + len;
                        o.block.lo = o.block.lo.min(ts);
                        o.block.hi = o.block.hi.max(ts);
                        o.unlinked |= unlinked;
                        o.last = last;
                    }
                    _ => {
                        if let Some(o) = cur.take() {
                            let (b, m) = o.finish(check.as_deref_mut());
                            sink(b, m);
                        }
                        let b = Block {
                            src,
                            start: off,
                            end: off + len,
                            lo: ts,
                            hi: ts,
                            expect: if check.is_some() { before } else { expect },
                            records: None,
                            damage: None,
                            pick: None,
                            withheld: check.is_some() && at.faulted,
                            explained,
                        };
                        cur = Some(OpenHint {
                            block: b,
                            at,
                            unlinked,
                            last,
                        });
                        expect = Expect::Nothing;
                        next_boundary = (off / HINT_INTERVAL + 1) * HINT_INTERVAL;
                    }
                }
                at.max_seq = Some(at.max_seq.map_or(seq, |m| m.max(seq)));
                at.floor = at.floor.max(seq.saturating_add(1));
                at.prev = last;
                off += len;
                continue;
            }
            Err(FrameError::Corrupt(e)) => (e, false),
            Err(FrameError::Incomplete { needed, available }) => (
                DecodeError {
                    structure: "record",
                    field: "frame_len",
                    offset: off,
                    kind: DecodeErrorKind::Truncated { needed, available },
                },
                true,
            ),
        };
        let next = scan::resync(win, off + 1, at.max_seq)?;
        if incomplete && next.is_none() && off >= vouched {
            break;
        }
        if let Some(o) = cur.take() {
            let (b, m) = o.finish(check.as_deref_mut());
            sink(b, m);
        }
        let resumed = next.unwrap_or(stop).min(stop);
        let b = Block {
            src,
            start: off,
            end: resumed,
            lo: Timestamp(i64::MAX),
            hi: Timestamp(i64::MIN),
            expect: Expect::Nothing,
            records: None,
            damage: Some(damage),
            pick: None,
            withheld: check.is_some() && at.faulted,
            explained: false,
        };
        sink(b, at);
        after_damage = true;
        at.prev = None;
        expect = Expect::Nothing;
        // Past damage the chain cannot be followed: what comes next is not known.
        link = Expect::Nothing;
        off = resumed;
    }
    if let Some(o) = cur.take() {
        let (b, m) = o.finish(check);
        sink(b, m);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    /// A signed index of a segment whose `first_seq` is above 0 (a continuation part) once
    /// could claim so many records that `first_seq + record_count` did not fit in a u64; the
    /// planner added them for the seq after the index (the unindexed tail's first record,
    /// the last block's end): an overflow panic with overflow checks on, a wrapped, wrong seq
    /// without. Found by reading the code behind the `signed_index` fuzz target (whose
    /// segment starts at seq 0, so it cannot reach this). The planner's sums are checked
    /// since, and now `IndexHead::decode` also rejects a `record_count` that its
    /// `covered_len` cannot hold (FORMAT.md §3): such an index, even correctly signed, is not
    /// trusted, and the query walks the segment itself.
    #[test]
    fn an_index_claiming_more_records_than_its_bytes_hold_is_not_trusted() {
        use crate::Log;
        use crate::crypto::{Key, KeyId, Signer};
        use crate::format::crc32;
        use crate::format::index::{Index, IndexEntry, encode_block_times};
        use crate::format::record::{MIN_FRAME_LEN, peek_frame_len};
        use crate::fuzzing::{FUZZ_KEY, FuzzKeys, small_log};
        use crate::log::Options;

        // A real segment of 12 records, its header made to say that its records start at
        // seq 7 (as a continuation's would; its records keep theirs, from 0).
        let (dir, org, id) = small_log(Options::new(Arc::new(FuzzKeys)), 12);
        let seg_path = dir.path().join(org.as_str()).join(segment_file_name(id));
        let mut seg = std::fs::read(&seg_path).unwrap();
        seg[104..112].copy_from_slice(&7u64.to_le_bytes());
        let crc = crc32(&seg[..SEGMENT_HEADER_LEN - 4]);
        seg[SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg_path, &seg).unwrap();
        let header = SegmentHeader::decode(&seg).unwrap();
        assert_eq!(header.first_seq, 7);
        let hdr = SEGMENT_HEADER_LEN as u64;
        let first_len = u64::from(peek_frame_len(&seg[SEGMENT_HEADER_LEN..]).unwrap());

        // A signed index without section 3, covering the first record, claiming
        // `record_count` records from seq 7.
        let t = Timestamp(id.month.start().0 + 1);
        let index = |record_count: u64| Index {
            compat_flags: 0,
            key_id: KeyId(1),
            org: org.clone(),
            segment: id,
            interval: 4096,
            segment_hash: crypto::sha256(&seg[..SEGMENT_HEADER_LEN]),
            covered_len: hdr + first_len,
            record_count,
            first_seq: 7,
            min_ts: Timestamp(i64::MIN),
            max_ts: t,
            head: Hash([5; 32]),
            entries: vec![IndexEntry {
                seq: 7,
                max_ts_before: Timestamp(i64::MIN),
                offset: hdr,
            }],
            sections: vec![encode_block_times(&[(Timestamp(i64::MIN), t)])],
        };
        let signed = |index: &Index| {
            let mut bytes = index.encode_unsigned();
            let key = Key::new(FUZZ_KEY).unwrap();
            bytes.extend_from_slice(&Signer::new(KeyId(1), &key).index_tag(&bytes).0);
            bytes
        };
        // The most records the covered bytes can hold decodes; one more, or a count whose
        // seqs would run past u64::MAX, does not.
        let most = first_len / u64::from(MIN_FRAME_LEN);
        assert!(Index::decode(&signed(&index(most))).is_ok());
        for claim in [most + 1, u64::MAX - 3] {
            let err = Index::decode(&signed(&index(claim))).unwrap_err();
            assert_eq!(err.field, "record_count", "{claim}: {err:?}");
        }

        let query_with = |record_count: u64| {
            std::fs::write(seg_path.with_extension("idx"), signed(&index(record_count))).unwrap();
            let log = Log::open_read_only(dir.path(), Options::new(Arc::new(FuzzKeys))).unwrap();
            let items: Vec<_> = log.query(&org).run().unwrap().collect();
            let events = items.iter().filter(|i| i.is_ok()).count();
            let errs: Vec<_> = items.into_iter().filter_map(Result::err).collect();
            (events, errs)
        };
        // The control: the largest count that decodes is trusted, and the tail after its one
        // block is not where it says, which the query reports.
        let (_, errs) = query_with(most);
        assert!(
            errs.iter().any(|e| !matches!(
                e,
                Error::Integrity {
                    kind: IntegrityKind::SeqMismatch {
                        expected: 7,
                        found: 0
                    },
                    ..
                }
            )),
            "{errs:#?}"
        );
        // One that does not decode is not used: every record is read from the segment
        // itself, and the one finding is that its first record is not the seq its header
        // names. (Trusted, it would have the tail expected at seq 7 + u64::MAX - 3.) No
        // record is returned: none is where the header (the genesis) places the chain's
        // start, and no signed anchor follows in the unindexed segment.
        let (events, errs) = query_with(u64::MAX - 3);
        assert_eq!(events, 0, "{errs:#?}");
        assert!(
            matches!(
                errs.as_slice(),
                [Error::Integrity {
                    kind: IntegrityKind::SeqMismatch {
                        expected: 7,
                        found: 0
                    },
                    ..
                }]
            ),
            "{errs:#?}"
        );
    }

    /// The exponential search finds what a binary search of the whole group finds, from
    /// any starting block at or before the answer; and the hits come out per block, in
    /// order.
    #[test]
    fn block_of_is_the_last_block_starting_at_or_before_the_record() {
        let starts: Vec<u32> = (0..70).map(|i| i * 3 + i / 7).collect();
        let last = starts[starts.len() - 1];
        for n in 0..=last + 5 {
            let want = starts.partition_point(|&s| s <= n) - 1;
            for from in 0..=want {
                assert_eq!(block_of(&starts, from, n), want, "record {n} from {from}");
            }
        }
        let from = 1_000;
        let marks: Vec<u16> = (0..last + 2)
            .map(|n| match n % 5 {
                0 => 9,
                3 if n % 7 == 0 => MARK_UNKNOWN,
                _ => 4,
            })
            .collect();
        let got = marked_blocks(&starts, from, &marks, 9);
        let mut want: Vec<(usize, Vec<u64>)> = Vec::new();
        for (n, _) in marks
            .iter()
            .enumerate()
            .filter(|(_, m)| [9, MARK_UNKNOWN].contains(m))
        {
            let j = starts.partition_point(|&s| s <= n as u32) - 1;
            match want.last_mut() {
                Some((k, v)) if *k == j => v.push(from + n as u64),
                _ => want.push((j, vec![from + n as u64])),
            }
        }
        assert_eq!(got, want);
    }
}
