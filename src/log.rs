//! The embedding API: open a log directory, append events, read them back.
//!
//! Layout of a log directory:
//! ```text
//! <dir>/LOCK                        held (flock) by the one writer process
//! <dir>/<org>/<YYYY-MM>.seg         segment: header + records, append-only
//! <dir>/<org>/<YYYY-MM>.idx         its signed sidecar index (derived; rebuildable)
//! <dir>/<org>/<YYYY-MM>.<n>.seg     continuation part n after damage (plus .idx)
//! <dir>/<org>/<YYYY-MM>.cold        archived month (reserved; its presence freezes the month)
//! <dir>/<org>/quarantine/           torn tails and damage reports moved aside by recovery
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use serde::Serialize;

use crate::crypto::{KeyProvider, Signer};
use crate::entry::{self, SealedEvent};
use crate::error::{Error, Result};
use crate::event::{Event, OrgId, VerifiedEvent};
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId, SegmentLink};
use crate::segment::quarantine::Quarantine;
use crate::segment::read::SegmentReader;
use crate::segment::recover::{self, Recovered};
use crate::segment::scan::{self, DamageCause, FileWindow, IndexBuilder, Tally};
use crate::segment::stats::DamageKind;
use crate::segment::writer::{Failed, Parked, Receipt, SegmentWriter};
use crate::segment::{
    DirSync, DirsToSync, FileStamp, cold_file_name, fsync_dir, parse_segment_file_name,
    segment_file_name,
};
use crate::time::{Month, Timestamp};

/// How durable an append is when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync (fdatasync) before `append` returns: survives power loss. Concurrent appenders
    /// share one fsync (group commit).
    Always,
    /// Written to the OS before `append` returns (survives a crash of the process); fsynced
    /// by a background thread at least this often (a power loss can lose this window).
    /// From 1 ms to 1 hour ([`Error::InvalidOption`] otherwise): the thread wakes this often
    /// even when idle, and a shorter window is [`Durability::Always`]'s job.
    Interval(Duration),
    /// Buffered in the process and handed to the OS when 256 KiB of a segment are buffered
    /// (by the background flusher, so the appender goes on; by the appender itself once
    /// 1 MiB is buffered, the flusher being behind), every second, on `sync` and on `close`.
    /// Not fsynced per append: fsynced by `sync` and `close`, and as a side effect when the
    /// background writes the segment's index (every `index_flush_bytes`), when a retired
    /// writer is closed fully, and before a new segment's `prev` link names its records.
    /// A process crash can lose the buffer (up to 1 MiB per segment, plus the last append
    /// or batch); a power loss anything unsynced. A background write that fails poisons the
    /// segment: the next `append`, `sync` or `close` returns the error.
    Never,
}

/// Settings of a log.
///
/// Each field's bounds are in its documentation. [`Log::open`] and [`Log::open_read_only`]
/// check them and refuse a value outside with [`Error::InvalidOption`], which names the
/// option and the bound.
#[derive(Clone)]
pub struct Options {
    /// Durability of appends. Default [`Durability::Always`].
    pub durability: Durability,
    /// Largest encoded event (sealed body plus openings) accepted, in bytes. Default 1 MiB;
    /// from 1 byte to 64 MiB.
    pub max_event_size: usize,
    /// JSON pointers (RFC 6901, rooted at the event: `/after/email`) of personal data inside
    /// `before`, `after` and `metadata`. `ip`, `user_agent` and `session_id` always are.
    /// Each must point into one of those three fields and be at most 256 bytes. Default
    /// none. An event holds at most 32 personal-data values (FORMAT.md §2.3), counting `ip`,
    /// `user_agent` and `session_id`: only the pointers that name a value in the event
    /// count, so an event with more is refused when appended (`InvalidEvent`), not the
    /// option.
    pub personal_data: Vec<String>,
    /// Bytes between sparse index entries. Default 4096; from 256 bytes to 16 MiB.
    pub index_interval: u32,
    /// The index of a segment being written is rewritten (by the background thread, every
    /// second or every `Interval`) once the segment has grown this many bytes past it, so
    /// that recovery after a crash rescans at most about this much. Default 64 MiB; at
    /// least 4 KiB (each rewrite writes the segment's whole index and fsyncs twice); no
    /// upper bound (`u64::MAX`: only `close` and retirement write indexes).
    pub index_flush_bytes: u64,
    /// Segment writers kept open. Each open writer holds up to ~0.75 MiB (its buffers,
    /// which grow as records arrive, and the part of its index not yet spilled; up to
    /// ~1.75 MiB under [`Durability::Never`] while the flusher is behind) and up to five
    /// file descriptors (its segment, and one spill file per stream of its index). Past this
    /// many, the background flusher (every second, or every `Interval`) and [`Log::sync`]
    /// close the least recently used idle writers;
    /// appends close writers themselves only beyond twice this many, so they rarely pay
    /// for a close, and wait for a close in progress elsewhere only beyond four times this
    /// many (a bound on descriptors however long a close takes). Exception: an
    /// [`Log::append_batch`] holds one writer per (org, month) group it spans until it
    /// returns (it checks and opens every group before it writes any), so a batch over more
    /// groups than the descriptors allow fails; split such a batch. Recovery at
    /// [`Log::open`] retires idle writers as it goes, as appends do: beyond twice this
    /// bound it closes down to about 1.75 times it; the background flusher brings them
    /// down to the bound at its next tick.
    ///
    /// A close *parks* the writer when it can (see [`Options::parked_bytes`]); otherwise it
    /// closes it fully: buffer written, fsynced, index written. A writer poisoned by a
    /// failed write or fsync is closed first and without writing anything: it then holds
    /// no descriptor and no longer counts, and its segment keeps refusing appends with
    /// [`Error::WriterFailed`] until the log is reopened. Default 256; at least 1, no
    /// upper bound.
    pub max_open_writers: usize,
    /// Heap bytes that closed writers may keep *parked*. Parking a writer writes its buffer
    /// (and fsyncs it, except under [`Durability::Never`], where [`Log::sync`] and
    /// [`Log::close`] do it), closes its file descriptor and keeps its small state (chain
    /// head, seqs, the index not yet written: ~13 bytes per event, ~2% of the segment) so
    /// that reopening the segment reads nothing and writes no index. With more (org, month)
    /// pairs in active use than [`Options::max_open_writers`], this is what keeps the
    /// least recently used writers cycling cheaply. A writer whose index has spilled to
    /// files (a large segment) or whose state does not fit is closed fully instead, and
    /// reopens from its index. [`Log::close`] writes the parked writers' indexes. Default
    /// 32 MiB; 0 disables parking. Under `Never`, a parked segment holds no descriptor, so a
    /// writeback error the kernel meets while it is parked can go unreported by the next
    /// `sync` if the file's inode is evicted meanwhile (docs/ARCHITECTURE.md, "Parked
    /// writers"); set 0 if that matters more than the speed of cycling writers. Any value.
    pub parked_bytes: usize,
    /// Bytes of checked segment indexes that queries keep for later queries: each index's
    /// summary (~5 KB for a month of 1.7M events), checked once (tag included), and the
    /// groups of index blocks queries have read (~1.2× their bytes in the `.idx` file),
    /// checked once against their digest. Groups are evicted before summaries; a query
    /// whose groups do not all fit keeps those it read first, and its next run reads only
    /// the rest (docs/ARCHITECTURE.md, "Queries"). Default 64 MiB; 0 disables the cache.
    /// Without it a query still reads the index of a segment it opens a group at a time,
    /// in memory independent of its size. Any value.
    pub query_index_cache: usize,
    keys: Arc<dyn KeyProvider>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("max_event_size", &self.max_event_size)
            .field("personal_data", &self.personal_data)
            .field("index_interval", &self.index_interval)
            .field("index_flush_bytes", &self.index_flush_bytes)
            .field("max_open_writers", &self.max_open_writers)
            .field("parked_bytes", &self.parked_bytes)
            .field("query_index_cache", &self.query_index_cache)
            .finish_non_exhaustive()
    }
}

const MAX_EVENT_SIZE_LIMIT: usize = 64 * 1024 * 1024;
const NEVER_BUFFER_LIMIT: usize = 256 * 1024;
/// Under `Never`, the buffered bytes at which an appender writes its segment's buffer
/// itself instead of leaving it to the flusher.
const NEVER_INLINE_LIMIT: usize = 4 * NEVER_BUFFER_LIMIT;
/// Shortest `Durability::Interval`: the background thread wakes this often, busy or not.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest `Durability::Interval`.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Smallest `Options::index_flush_bytes`: each rewrite streams the whole index out.
pub(crate) const MIN_INDEX_FLUSH_BYTES: u64 = 4096;

impl Options {
    /// Defaults, with keys from `keys`.
    pub fn new(keys: Arc<dyn KeyProvider>) -> Options {
        Options {
            durability: Durability::Always,
            max_event_size: 1024 * 1024,
            personal_data: Vec::new(),
            index_interval: 4096,
            index_flush_bytes: 64 * 1024 * 1024,
            max_open_writers: 256,
            parked_bytes: 32 << 20,
            query_index_cache: 64 << 20,
            keys,
        }
    }

    /// Sets the durability (`Interval` from 1 ms to 1 hour: see [`Durability::Interval`]).
    pub fn durability(mut self, d: Durability) -> Options {
        self.durability = d;
        self
    }

    /// Sets the query index cache's size in bytes (see [`Options::query_index_cache`]).
    pub fn query_index_cache(mut self, bytes: usize) -> Options {
        self.query_index_cache = bytes;
        self
    }

    /// Sets how many segment writers may stay open (see [`Options::max_open_writers`]).
    pub fn max_open_writers(mut self, n: usize) -> Options {
        self.max_open_writers = n;
        self
    }

    /// Sets the bytes closed writers may keep parked (see [`Options::parked_bytes`]).
    pub fn parked_bytes(mut self, bytes: usize) -> Options {
        self.parked_bytes = bytes;
        self
    }

    /// Sets the largest event accepted.
    pub fn max_event_size(mut self, bytes: usize) -> Options {
        self.max_event_size = bytes;
        self
    }

    /// Sets the personal-data pointers.
    pub fn personal_data<S: Into<String>>(
        mut self,
        pointers: impl IntoIterator<Item = S>,
    ) -> Options {
        self.personal_data = pointers.into_iter().map(Into::into).collect();
        self
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    fn validate(&self) -> Result<()> {
        let bad = |option, reason: String| Err(Error::InvalidOption { option, reason });
        if self.max_event_size == 0 || self.max_event_size > MAX_EVENT_SIZE_LIMIT {
            return bad(
                "max_event_size",
                format!("{} is outside 1..=64 MiB", self.max_event_size),
            );
        }
        if self.max_open_writers == 0 {
            return bad("max_open_writers", "must be at least 1".into());
        }
        if !(256..=1 << 24).contains(&self.index_interval) {
            return bad(
                "index_interval",
                format!("{} is outside 256..=16 MiB", self.index_interval),
            );
        }
        if let Durability::Interval(d) = self.durability
            && !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d)
        {
            return bad("durability", format!("interval {d:?} is outside 1ms..=1h"));
        }
        if self.index_flush_bytes < MIN_INDEX_FLUSH_BYTES {
            return bad(
                "index_flush_bytes",
                format!(
                    "{} is below the minimum of 4096 bytes (4 KiB)",
                    self.index_flush_bytes
                ),
            );
        }
        for p in &self.personal_data {
            if let Err(reason) = entry::validate_pointer(p) {
                return bad("personal_data", reason);
            }
        }
        Ok(())
    }
}

/// Something recovery did when the log was opened or a segment first written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RecoveryAction {
    /// A torn tail (crash damage) was copied to quarantine and cut off the segment.
    TornTailQuarantined {
        /// The segment.
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Where the cut bytes start.
        offset: u64,
        /// How many bytes were moved.
        len: u64,
        /// Where they are now.
        #[serde(serialize_with = "crate::json::serialize_path")]
        moved_to: PathBuf,
    },
    /// A segment file with an incomplete header (crash during creation) was moved aside.
    PartialSegmentQuarantined {
        /// Where it is now.
        #[serde(serialize_with = "crate::json::serialize_path")]
        moved_to: PathBuf,
    },
    /// A segment damaged before its end was sealed read-only (nothing cut) and its month
    /// continues in a continuation part.
    SegmentSealed {
        /// The damaged segment.
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Damaged byte ranges and why: `(start, end, cause)`.
        damage: Vec<(u64, u64, String)>,
        /// The continuation segment now receiving the month's appends.
        #[serde(serialize_with = "crate::json::serialize_path")]
        continuation: PathBuf,
    },
    /// Recovery of a segment failed (an I/O error, an index that cannot be read, a segment
    /// that cannot be continued): the log opened all the same, nothing of that month was
    /// changed, and appends to it fail with the same error until the cause is fixed.
    RecoveryFailed {
        /// The month's latest segment; the org directory when its segments could not be
        /// listed (nothing of the org was recovered then, and its appends retry the
        /// listing).
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Why.
        error: String,
    },
    /// A segment's index could not be checked (the key provider lacks the key its tag
    /// names, or failed), so it may be signed evidence, and recovery was about to rebuild
    /// over it: it was first copied, byte for byte, into quarantine, where it can be
    /// checked once the key is found. (An index the segment contradicts, shorter or with
    /// another header, is not rebuilt at all: the segment is sealed and continued.)
    IndexKeptAside {
        /// The index file (rebuilt since).
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Why it could not be checked.
        reason: String,
        /// Its copy.
        #[serde(serialize_with = "crate::json::serialize_path")]
        copied_to: PathBuf,
    },
    /// A sidecar index was missing, stale or failed its check and was rebuilt.
    IndexRebuilt {
        /// The segment.
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A sidecar index that was missing, stale or failed its check could not be rebuilt (a
    /// full disk, say). The index is derived data: the month takes appends all the same,
    /// and is read without that index until a later index write (the flusher's, a close)
    /// succeeds.
    IndexNotRebuilt {
        /// The segment.
        #[serde(serialize_with = "crate::json::serialize_path")]
        file: PathBuf,
        /// Why it needed rebuilding.
        reason: String,
        /// Why writing it failed.
        error: String,
    },
}

/// Per-org writer state.
struct Org {
    id: OrgId,
    dir: PathBuf,
    /// The signer of the key the provider last named, kept so that an append need not
    /// build the HMAC state again. Only a cache: each caller signs with the signer of the
    /// answer its own call to the provider got ([`Org::signer`]).
    signer: RwLock<Option<Arc<Signer>>>,
    segs: Mutex<OrgSegments>,
    /// Signalled (with `segs`) when a retirement's close ends and its month leaves
    /// `OrgSegments::closing`.
    close_done: Condvar,
}

#[derive(Default)]
struct OrgSegments {
    /// Latest part of every month on disk.
    latest: BTreeMap<Month, SegmentId>,
    /// Open writers, one per month.
    writers: HashMap<Month, Arc<SegmentWriter>>,
    /// Writers taken out of `writers` by a retirement that is closing them now (with `segs`
    /// released). A month is in at most one of the two maps; a writer for a month in this one
    /// is neither handed to appenders nor opened a second time (`Inner::writer_in` waits on
    /// `Org::close_done`), and a prev link to it reads the closing writer itself.
    closing: HashMap<Month, Arc<SegmentWriter>>,
    /// Segments whose writer this process retired cleanly, as their files were then: an
    /// unchanged one reopens from its parked state, or without a CRC walk
    /// (`recover::recover`).
    closed: HashMap<SegmentId, ClosedSegment>,
    /// Months whose latest segment's writer a failed write or fsync (or a close that
    /// panicked) poisoned and that retirement let go of (its descriptor closed, its unwritten
    /// buffer dropped), or whose parked state was found poisoned: the poison, shared with
    /// every reference to the writer. Such a month takes no appends and its segment is never
    /// reopened (nor recovered, nor linked to by a new segment) in this process; its appends,
    /// `Log::sync` and `Log::close` get the writer's [`Error::WriterFailed`] until the log is
    /// reopened. Not counted in `Inner::open_writers`; dropped only with the `Log`. A month is
    /// in at most one of `writers`, `closing` and this map.
    failed: HashMap<Month, Failed>,
    /// Most recently created segment (highest ordinal).
    tail: Option<(u32, SegmentId)>,
    /// Segments whose header cannot be read (it fails its CRC or structure) and whose
    /// ordinal no readable `prev` link gives away: each may have had an ordinal above
    /// `tail`'s, so a new segment is numbered past all of them, never with an ordinal one
    /// of them may hold (FORMAT.md §2.1). Zero once a segment is created (its ordinal is
    /// past them).
    unplaced: u32,
    /// Whether this process made the org directory durable: created it if it was missing,
    /// then fsynced the log directory. Not whether it exists: a directory that a process
    /// killed before that fsync created exists and may still vanish in a power loss with
    /// every segment in it, so each process fsyncs the log directory once before its first
    /// segment in the org.
    dir_durable: bool,
    /// Records a segment held by what other segments' `prev` and `continues` links say (the
    /// largest count naming it): they were durable when the link was written, so recovery
    /// never takes fewer for a torn tail (`recover::recover`).
    linked: HashMap<SegmentId, u64>,
    /// Months whose writer [`Inner::open_writer`] is opening now (in this call stack: `segs`
    /// is held throughout). Opening one needs the org's tail for its `prev` link, which may
    /// mean opening another month's writer, never this one's again.
    opening: Vec<Month>,
    /// Whether the rest was read from the org directory. A listing or a header read that
    /// failed (`EMFILE`, `EIO`) leaves it false, and no writer is opened (no segment
    /// numbered, linked or created) until a later read succeeds: taken for an empty org, the
    /// catalog numbered a new month 0 beside the org's existing segments, with no link.
    listed: bool,
}

impl OrgSegments {
    /// The catalog read again from the org directory `dir`, keeping what only this process
    /// knows: its writers (open, closing, retired, retired poisoned), the months being
    /// opened, and whether it made the directory durable.
    /// On failure nothing changes.
    fn reload(&mut self, dir: &Path, org: &OrgId) -> Result<()> {
        let read = load_catalog(dir, org)?;
        *self = OrgSegments {
            writers: std::mem::take(&mut self.writers),
            closing: std::mem::take(&mut self.closing),
            closed: std::mem::take(&mut self.closed),
            failed: std::mem::take(&mut self.failed),
            opening: std::mem::take(&mut self.opening),
            dir_durable: self.dir_durable,
            ..read
        };
        Ok(())
    }

    /// Reads the catalog if it has not been read yet (its first read failed). An org entry
    /// that is not a directory is refused as such ([`Error::OrgDirUnusable`]), not as a
    /// listing that failed.
    fn ensure_listed(&mut self, dir: &Path, org: &OrgId) -> Result<()> {
        match self.listed {
            true => Ok(()),
            false => {
                check_org_dir(dir, org)?;
                self.reload(dir, org)
            }
        }
    }

    /// Keeps what `header`'s links say of the segments they name ([`OrgSegments::linked`]).
    fn note_links(&mut self, header: &SegmentHeader) {
        for link in [&header.prev, &header.continues].into_iter().flatten() {
            let n = self.linked.entry(link.segment).or_insert(0);
            *n = (*n).max(link.count);
        }
    }
}

/// A segment whose writer this process retired, as the writer left it.
struct ClosedSegment {
    /// The file when the writer let go of it. While the file keeps this stamp, nothing has
    /// written it since.
    stamp: FileStamp,
    /// The parked writer's state (`None`: closed fully: fsynced, its index covering it all).
    parked: Option<Parked>,
}

impl OrgSegments {
    /// Months whose latest segment is parked with `pending` work left: its bytes not all
    /// fsynced, or (`index` true) its index not covering it all.
    fn parked_months(&self, index: bool) -> Vec<Month> {
        self.closed
            .iter()
            .filter(|(id, c)| {
                self.latest.get(&id.month) == Some(*id)
                    && c.parked
                        .as_ref()
                        .is_some_and(|p| !p.is_durable() || (index && !p.index_is_current()))
            })
            .map(|(id, _)| id.month)
            .collect()
    }

    /// Every writer of the org: open ones and those being closed.
    fn live(&self) -> impl Iterator<Item = &Arc<SegmentWriter>> {
        self.writers.values().chain(self.closing.values())
    }
}

struct Inner {
    dir: PathBuf,
    opts: Options,
    read_only: bool,
    /// A writer's locks on the directory and its lock file.
    lock: Option<WriterLock>,
    orgs: RwLock<HashMap<OrgId, Arc<Org>>>,
    closed: AtomicBool,
    report: Mutex<Vec<RecoveryAction>>,
    query_cache: Arc<crate::query::IndexCache>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    /// Writers in every org's map.
    open_writers: AtomicUsize,
    /// Heap bytes held by parked writers' states (`ClosedSegment::parked`).
    parked_bytes: AtomicUsize,
    /// Ticks of writer use, for least-recently-used retirement.
    clock: AtomicU64,
    /// Held by the one thread retiring writers at a time, and by the flusher for its whole
    /// tick. Appenders skip retirement while it is held (up to four times the writer limit:
    /// [`Inner::retire_idle`]); `Log::sync` waits for it.
    retiring: Mutex<()>,
    /// The first failure that had no caller to go to when it happened: a failed index spill
    /// of a writer that retirement then closed (it lost nothing), a panic in a tick of the
    /// background flusher (contained). `Log::close` returns it.
    unreported: Mutex<Option<Error>>,
    /// Personal-data seeds of the events this log seals (its own PRF key: see `SeedSource`).
    seeds: crate::crypto::SeedSource,
    /// Under `Never`, writers whose buffer filled, for the flusher to hand to the OS
    /// (`Inner::settle`); empty under the other modes. Weak, so that a queued writer still
    /// counts as idle for retirement (closing or parking it leaves nothing to write).
    writeback: Mutex<Vec<Weak<SegmentWriter>>>,
    /// Whether the flusher thread runs (it drains `writeback`).
    flusher_running: AtomicBool,
    /// Whether the `Interval` fsync thread runs ([`Inner::sync_loop`]); if it could not be
    /// started, the flusher's tick fsyncs instead.
    syncer_running: AtomicBool,
    /// Held by [`Inner::sync_loop`] for each pass, and by a retirement while it decides
    /// which writers are idle and takes one out of its org's map ([`Inner::retire_locked`],
    /// [`Inner::retire`]): the pass's references to the writers must not make them look in
    /// use then, and a pass never touches a writer being closed.
    syncing: Mutex<()>,
    /// Under `Interval`, every writer in an org's `writers` map, for [`Inner::sync_loop`]:
    /// kept apart from the orgs' `segs` locks, which a recovery holds across key lookups.
    /// Added by [`Inner::install`] (and by a failed close that puts its writer back),
    /// removed under `syncing` when a retirement takes the writer out of the map.
    interval_writers: Mutex<Vec<Weak<SegmentWriter>>>,
    /// Tests: the flusher queues every writer it wrote back again, so that its queue is
    /// never found empty.
    #[cfg(test)]
    requeue_for_test: AtomicBool,
}

/// An open log directory. `Send + Sync`: share it between threads (e.g. in an `Arc`).
///
/// Not between processes: a `Log` used by both parent and child after `fork` repeats the
/// personal-data seeds it gives, silently (SECURITY.md, "Salts after a fork"), and where
/// both write one segment they overwrite each other's records. Open it in the process that
/// writes.
///
/// Dropping it does what [`Log::close`] does and discards the error: only `close` tells of
/// a failed write or fsync of the records no append waited for (under
/// [`Durability::Never`] and [`Durability::Interval`]) or of indexes left unwritten.
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Under `Interval`, the thread that fsyncs ([`Inner::sync_loop`]).
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Log({})", self.inner.dir.display())
    }
}

/// Name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

impl Log {
    /// Opens (creating if needed) a log directory for writing.
    ///
    /// Only the directory itself is created, not missing directories above it: a mistyped
    /// path fails with [`Error::Io`] (`NotFound`) instead of starting a new log somewhere
    /// else.
    ///
    /// Takes an exclusive lock ([`Error::Locked`] if another writer has it), then recovers
    /// every segment that was being written when the last writer stopped without closing:
    /// torn tails are moved to `quarantine/` and cut, mid-file damage is sealed and continued
    /// (see [`Log::recovery_report`]). A month whose recovery fails (an index that cannot be
    /// read, a segment that cannot be numbered) does not stop the log from opening: it is
    /// reported as [`RecoveryAction::RecoveryFailed`], left as it is, and its appends fail
    /// with the same error.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // `create_dir("")` fails with NotFound: "its parent directory does not exist".
        if dir.as_os_str().is_empty() {
            return Err(Error::io(
                "open log directory",
                &dir,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is empty"),
            ));
        }
        let created = !dir.exists()
            && match fs::create_dir(&dir) {
                Ok(()) => true,
                // Another process created it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let why = "its parent directory does not exist (the log directory is \
                               created, its parents are not)";
                    let e = std::io::Error::new(e.kind(), why);
                    return Err(Error::io("create log directory", &dir, e));
                }
                Err(e) => return Err(Error::io("create log directory", &dir, e)),
            };
        if !dir.is_dir() {
            return Err(Error::io(
                "open log directory",
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        // Every time, not only when created here: a process killed between creating the
        // directory and this fsync leaves one that exists and may still vanish in a power
        // loss, with everything in it. An existing log's parent may be one this process can
        // pass through but not read (a 0711 home directory): that fsync was its creator's.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        match fsync_dir(parent.unwrap_or(Path::new("."))) {
            Err(Error::Io { source, .. })
                if !created && source.kind() == std::io::ErrorKind::PermissionDenied => {}
            other => other?,
        }
        let lock = WriterLock::take(&dir)?;
        let log = Self::assemble(dir, opts, false, Some(lock))?;
        log.recover_dirty()?;
        log.start_flusher();
        Ok(log)
    }

    /// Opens a log directory for reading only: no lock, no recovery, works beside a live
    /// writer. Appends fail with [`Error::ReadOnly`].
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
                return Err(Error::io("open log directory", &dir, e));
            }
            Err(e) => return Err(Error::io("open log directory", &dir, e)),
        }
        Self::assemble(dir, opts, true, None)
    }

    fn assemble(
        dir: PathBuf,
        mut opts: Options,
        read_only: bool,
        lock: Option<WriterLock>,
    ) -> Result<Log> {
        // Every call the log makes to the provider (here, in the flusher, in retirement, at
        // close and drop) returns a panic as `KeyError::Panicked` (see `KeyProvider`).
        opts.keys = Arc::new(crate::crypto::PanicContained(opts.keys));
        let cache_bytes = opts.query_index_cache;
        Ok(Log {
            inner: Arc::new(Inner {
                dir,
                opts,
                read_only,
                lock,
                orgs: RwLock::new(HashMap::new()),
                closed: AtomicBool::new(false),
                report: Mutex::new(Vec::new()),
                query_cache: Arc::new(crate::query::IndexCache::new(cache_bytes)),
                stop: Mutex::new(false),
                stop_cv: Condvar::new(),
                open_writers: AtomicUsize::new(0),
                parked_bytes: AtomicUsize::new(0),
                clock: AtomicU64::new(0),
                retiring: Mutex::new(()),
                unreported: Mutex::new(None),
                seeds: crate::crypto::SeedSource::new(),
                writeback: Mutex::new(Vec::new()),
                flusher_running: AtomicBool::new(false),
                syncer_running: AtomicBool::new(false),
                syncing: Mutex::new(()),
                interval_writers: Mutex::new(Vec::new()),
                #[cfg(test)]
                requeue_for_test: AtomicBool::new(false),
            }),
            flusher: Mutex::new(None),
            syncer: Mutex::new(None),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// For the query layer: the key provider and the cache of checked indexes.
    pub(crate) fn query_parts(&self) -> (Arc<dyn KeyProvider>, Arc<crate::query::IndexCache>) {
        (
            Arc::clone(&self.inner.opts.keys),
            Arc::clone(&self.inner.query_cache),
        )
    }

    /// Hands records of `org` still buffered in this process to the OS, so a query, a scan
    /// or the stats see every append that returned, whatever the durability (errors poison
    /// the writer and are reported by the next append).
    pub(crate) fn hand_buffers_to_os(&self, org: &OrgId) {
        let org = self.inner.orgs.read().get(org).cloned();
        if let Some(org) = org {
            // Writers being closed too: a close in progress may not have written them yet.
            let writers: Vec<Arc<SegmentWriter>> = org.segs.lock().live().cloned().collect();
            for w in writers {
                let _ = w.flush(u64::MAX, false);
            }
        }
    }

    /// Segment writers open now, counting one whose close is in progress. The background
    /// flusher and [`Log::sync`] close the least recently used idle ones beyond
    /// [`Options::max_open_writers`] (appends only beyond twice that), those poisoned by a
    /// failed write or fsync first; writers in use by other appenders, or whose close
    /// failed without poisoning them (an index write), stay open. A poisoned writer that was
    /// closed no longer counts, and its segment still refuses appends with
    /// [`Error::WriterFailed`] until the log is reopened.
    pub fn open_writers(&self) -> usize {
        self.inner.open_writers.load(Ordering::Relaxed)
    }

    /// What recovery has done since this log was opened.
    pub fn recovery_report(&self) -> Vec<RecoveryAction> {
        self.inner.report.lock().clone()
    }

    /// The orgs that have a directory in the log.
    pub fn orgs(&self) -> Result<Vec<OrgId>> {
        list_orgs(&self.inner.dir)
    }

    /// The segments of `org`, in (month, part) order.
    pub fn segments(&self, org: &OrgId) -> Result<Vec<SegmentId>> {
        let dir = self.inner.dir.join(org.as_str());
        check_org_dir(&dir, org)?;
        list_segments(&dir)
    }

    /// Path of a segment file.
    pub fn segment_path(&self, org: &OrgId, id: SegmentId) -> PathBuf {
        self.inner
            .dir
            .join(org.as_str())
            .join(segment_file_name(id))
    }

    fn recover_dirty(&self) -> Result<()> {
        for org_id in list_orgs(&self.inner.dir)? {
            let org = self.inner.org(&org_id);
            let months: Vec<(Month, SegmentId)> = {
                let mut segs = org.segs.lock();
                // An org whose segments cannot be listed is reported, not taken for empty.
                if let Err(e) = segs.ensure_listed(&org.dir, &org.id) {
                    self.inner
                        .report
                        .lock()
                        .push(RecoveryAction::RecoveryFailed {
                            file: org.dir.clone(),
                            error: e.to_string(),
                        });
                    continue;
                }
                segs.latest.iter().map(|(m, id)| (*m, *id)).collect()
            };
            for (month, id) in months {
                // Writers opened for recovery are retired down to the limit as they go, as
                // an append's are: one per dirty month ran out of descriptors after a crash
                // of a process with many parked writers.
                self.inner.retire_idle();
                let mut segs = org.segs.lock();
                // A frozen month takes no appends: nothing to make writable, and its refusal
                // must not stop the whole log from opening.
                if org.dir.join(cold_file_name(month)).exists() {
                    continue;
                }
                let path = org.dir.join(segment_file_name(id));
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let clean = read_header(&path)
                    .ok()
                    .and_then(|(h, genesis)| {
                        recover::check_index(
                            &org.dir,
                            &org.id,
                            &h,
                            &genesis,
                            len,
                            &*self.inner.opts.keys,
                        )
                        .ok()
                    })
                    .is_some_and(|i| i.covered_len == len);
                if !clean {
                    // `writer_in`: opening an earlier month may already have opened this
                    // one (for its prev link); never a second writer on the file.
                    // A month whose recovery fails (a segment that cannot be numbered, an
                    // index that cannot be read, a damaged header) must not keep the whole
                    // log from opening: it is reported, nothing of it is changed, its
                    // appends fail with the error, and the other orgs and months go on.
                    if let Err(e) = self.inner.writer_in(&org, &mut segs, month) {
                        self.inner
                            .report
                            .lock()
                            .push(RecoveryAction::RecoveryFailed {
                                file: path,
                                error: e.to_string(),
                            });
                    }
                }
            }
        }
        self.inner.retire_idle();
        Ok(())
    }

    fn start_flusher(&self) {
        let tick = match self.inner.opts.durability {
            Durability::Interval(d) => d,
            _ => Duration::from_secs(1),
        };
        let inner = Arc::clone(&self.inner);
        let handle = std::thread::Builder::new()
            .name("auditlog-flusher".into())
            .spawn(move || inner.flush_loop(tick));
        if let Ok(h) = handle {
            *self.flusher.lock() = Some(h);
            self.inner.flusher_running.store(true, Ordering::Release);
        }
        if let Durability::Interval(period) = self.inner.opts.durability {
            let inner = Arc::clone(&self.inner);
            let handle = std::thread::Builder::new()
                .name("auditlog-interval-sync".into())
                .spawn(move || inner.sync_loop(period));
            if let Ok(h) = handle {
                *self.syncer.lock() = Some(h);
                self.inner.syncer_running.store(true, Ordering::Release);
            }
        }
    }

    /// Appends one event. Returns once it is as durable as [`Options::durability`] promises.
    ///
    /// Errors: [`Error::InvalidEvent`] / [`Error::EventTooLarge`] (nothing written),
    /// [`Error::Key`] (no signing key: the provider failed, or panicked, which the log
    /// returns as [`KeyError::Panicked`](crate::KeyError::Panicked); nothing written),
    /// [`Error::MonthFrozen`], [`Error::SeqExhausted`] (a
    /// damaged or forged segment claims seqs near 2^64; nothing written),
    /// [`Error::SegmentNumberExhausted`] (a new segment is needed and a damaged or forged
    /// header claims the last ordinal or part; nothing written), [`Error::Io`] and
    /// [`Error::WriterFailed`] (the record may or may not be on disk; reopen the log).
    pub fn append(&self, event: &Event) -> Result<Receipt> {
        self.inner.check_writable()?;
        let month = event.check()?;
        let org = self.inner.org_named(&event.org_id)?;
        let org_id = &org.id;
        let opts = &self.inner.opts;
        let sealed = entry::seal(
            event,
            &event.org_id,
            &opts.personal_data,
            opts.max_event_size,
            &self.inner.seeds,
        )?;
        // The key first: an org that cannot sign must not get a segment.
        let signer = org.signer(&*opts.keys)?;
        let writer = self.inner.writer(&org, month)?;
        let mut receipt = None;
        let (end, buffered) = writer.append(&[(&sealed, event.occurred_at)], &signer, |r| {
            receipt = Some(r);
        })?;
        self.inner.settle(&writer, end, buffered)?;
        drop(writer);
        self.inner.retire_idle();
        receipt.ok_or_else(|| no_signer(org_id))
    }

    /// Appends events in order; returns one receipt per event, in order.
    ///
    /// Every event is validated and encoded before anything is written: one invalid event
    /// fails the whole call with nothing written, as do a missing key, a frozen month,
    /// a month without seqs left, a new segment that cannot be numbered and a month whose
    /// writer a failed write or fsync poisoned (the errors of [`Log::append`]); each is
    /// checked for every (org, month) before any segment is created, so such a refusal
    /// creates no file either. (One that only recovering an unopened segment finds, such as
    /// a continuation part that cannot be numbered, may come after an earlier group's new
    /// segment was created: empty, no record written.) Such a failure is
    /// [`Error::InBatch`]: the index of the event refused (for a refusal of a whole (org,
    /// month) group, its first event) and the error [`Log::append`] would give for it
    /// ([`Error::unbatched`]). Events of one (org, month) are framed together and share one
    /// write and one fsync. The batch is not atomic across a crash: after an I/O error, a
    /// prefix of each (org, month) group may be on disk.
    pub fn append_batch(&self, events: &[Event]) -> Result<Vec<Receipt>> {
        self.inner.check_writable()?;
        // Also here, not only after a success: a failed call may have opened writers.
        self.inner.retire_idle();
        let opts = &self.inner.opts;
        let in_batch = |index: usize| {
            move |e: Error| Error::InBatch {
                index,
                source: Box::new(e),
            }
        };
        let mut sealed = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let month = e.check().map_err(|f| in_batch(i)(f.into()))?;
            let s = entry::seal(
                e,
                &e.org_id,
                &opts.personal_data,
                opts.max_event_size,
                &self.inner.seeds,
            )
            .map_err(in_batch(i))?;
            sealed.push((e.org_id.as_str(), month, s, e.occurred_at));
        }
        let mut groups: BTreeMap<(&str, Month), Vec<usize>> = BTreeMap::new();
        for (i, (org, month, _, _)) in sealed.iter().enumerate() {
            groups.entry((org, *month)).or_default().push(i);
        }
        // Every group's refusals before any file is created: a missing key, a frozen month,
        // a month without seqs left, a new segment that cannot be numbered, a writer poisoned
        // by a failed write or fsync fails the whole batch with nothing written, not even an
        // empty segment for a group before the refused one (the caller gets no receipts).
        let mut checked = Vec::with_capacity(groups.len());
        for ((org_name, month), idx) in groups {
            let first = in_batch(idx.first().copied().unwrap_or(0));
            let org = self.inner.org_named(org_name).map_err(first)?;
            let signer = org.signer(&*opts.keys).map_err(first)?;
            let check = |n| self.inner.check_refusals(&org, month, n);
            check(idx.len()).map_err(|e| in_batch(first_refused(&idx, check))(e))?;
            checked.push((org, signer, month, idx));
        }
        // Then every group's writer (recovering or creating its segment), checked again
        // before framing anything: another thread may have appended or a write failed
        // meanwhile, and recovery finds what only reading the file tells.
        let mut prepared = Vec::with_capacity(checked.len());
        for (org, signer, month, idx) in checked {
            let first = in_batch(idx.first().copied().unwrap_or(0));
            let writer = self.inner.writer(&org, month).map_err(first)?;
            writer.check_not_failed().map_err(first)?;
            let check = |n| writer.check_seq_room(n);
            check(idx.len()).map_err(|e| in_batch(first_refused(&idx, check))(e))?;
            prepared.push((signer, writer, idx));
        }
        let mut receipts: Vec<Option<Receipt>> = vec![None; events.len()];
        let mut pending = Vec::with_capacity(prepared.len());
        for (signer, writer, idx) in prepared {
            // The key the provider named when this batch asked for it, as in `append`.
            let items: Vec<(&SealedEvent, Timestamp)> = idx
                .iter()
                .filter_map(|&i| sealed.get(i).map(|(_, _, s, t)| (s, *t)))
                .collect();
            let mut slots = idx.iter();
            let (end, buffered) = writer.append(&items, &signer, |r| {
                if let Some(slot) = slots.next().and_then(|&i| receipts.get_mut(i)) {
                    *slot = Some(r);
                }
            })?;
            pending.push((writer, end, buffered));
        }
        if pending.len() > 1 && self.inner.opts.durability == Durability::Always {
            // Several segments: fsync them at the same time rather than one after another
            // (each fsync waits on the disk, not the CPU), on a bounded number of threads.
            // (One thread per segment, as before, ran a 1,500-org batch on ~150 threads at
            // once, and a thread the OS refused panicked.)
            let inner = &self.inner;
            let settled = for_each_at_once(&pending, |(writer, end, buffered)| {
                inner.settle(writer, *end, *buffered)
            });
            // Before the retirement below: a writer referenced here is not idle, and kept
            // every writer of the batch open beyond the limit.
            drop(pending);
            settled?;
        } else {
            for (writer, end, buffered) in pending {
                self.inner.settle(&writer, end, buffered)?;
            }
        }
        self.inner.retire_idle();
        Ok(receipts.into_iter().flatten().collect())
    }

    /// Writes out and fsyncs everything appended so far, whatever the durability mode; then
    /// (also when that failed) closes idle writers beyond [`Options::max_open_writers`],
    /// poisoned ones first, after waiting for a retirement or background flusher tick in
    /// progress. Segments are fsynced several at a time; a failure does not stop the
    /// others, and one is returned (a parked segment's before an open writer's). A segment
    /// whose writer a failed write or fsync poisoned fails every `sync` with its
    /// [`Error::WriterFailed`] until the log is reopened, also once that writer has been
    /// closed.
    pub fn sync(&self) -> Result<()> {
        // All under `retiring` (waiting for a retirement in progress or a flusher tick): no
        // writer is parked meanwhile, so every record appended before this call is either
        // in a writer parked now (under `Never` written, not fsynced), which
        // `settle_parked` fsyncs, or in a writer open after it, which the loop fsyncs.
        let _retiring = self.inner.retiring.lock();
        let settled = self.inner.settle_parked(None);
        // Only writers with work, so that a sync with nothing to do starts no thread. (The
        // list goes before retirement: a writer it holds is not idle.)
        let synced = {
            let mut writers = self.inner.all_writers();
            writers.retain(|w| !w.is_durable());
            for_each_at_once(&writers, |w| w.sync())
        };
        // Every writer not in use is closed down to the limit, whatever failed above: a
        // writer a failure poisoned is closed first, and its segment keeps the failure.
        self.inner.retire_locked(self.inner.opts.max_open_writers);
        settled?;
        synced?;
        // Segments whose poisoned writer was closed: their records were not all made
        // durable, and a sync must not say they were.
        self.inner.check_retired_failures()
    }

    /// Reads every event of `org`, in (month, part, seq) order, verifying each record's
    /// CRC, chain link, seq, tag and personal-data commitments. A record that fails yields
    /// an `Err` naming file, offset and seq, and reading continues after it. A segment
    /// shorter than its header is passed over as a query passes it over (being created by a
    /// live writer, no index saying it held records), else it is an `Err` too. So is, as in
    /// a query, a segment file that is missing while its index, or the header of the part
    /// continuing it, shows it held records.
    pub fn scan(&self, org: &OrgId) -> Result<Scan> {
        self.hand_buffers_to_os(org);
        let dir = self.inner.dir.join(org.as_str());
        check_org_dir(&dir, org)?;
        // Segment files, and index files without one (whose index may show it held
        // records), in (month, part) order.
        let mut files: Vec<(SegmentId, bool)> = Vec::new();
        for parts in crate::query::list_org(&dir)?.into_values() {
            let mut month: Vec<(SegmentId, bool)> =
                parts.parts.iter().map(|&id| (id, false)).collect();
            month.extend(parts.orphans.iter().map(|&id| (id, true)));
            month.sort_unstable();
            files.extend(month);
        }
        Ok(Scan {
            dir,
            org: org.clone(),
            ids: files.into_iter().peekable(),
            keys: Arc::clone(&self.inner.opts.keys),
            current: None,
        })
    }

    /// Per (org, month) counts from the segment files (structure only; no tag checks).
    /// Records after a damaged stretch are counted; each stretch is listed in
    /// [`MonthStats::damage`], as is a segment shorter than its header that the query
    /// would report (any but the latest part of its month being created by a live writer,
    /// with no index saying it held records), a segment that is missing while its index
    /// or the part continuing it says it held records (the month is listed even with no
    /// segment left), and a
    /// segment of a newer format than this build reads (not read; the others are still
    /// counted). Only org entries that are directories are listed (`verify` reports a
    /// symbolic link).
    pub fn stats(&self) -> Result<Vec<MonthStats>> {
        let mut out = Vec::new();
        for org in list_orgs(&self.inner.dir)? {
            self.hand_buffers_to_os(&org);
            let dir = self.inner.dir.join(org.as_str());
            let place = crate::query::plan::Place {
                dir: &dir,
                org: &org,
                keys: &*self.inner.opts.keys,
            };
            for (month, files) in crate::query::list_org(&dir)? {
                let mut m = MonthStats {
                    org_id: org.to_string(),
                    month,
                    segments: 0,
                    events: 0,
                    misfiled: 0,
                    bytes: 0,
                    first: None,
                    last: None,
                    damage: Vec::new(),
                };
                for (i, &id) in files.parts.iter().enumerate() {
                    // A segment shorter than its header: damage unless the query would
                    // pass it over (the latest part of its month being created by a live
                    // writer, with no index saying it held records).
                    let latest = i + 1 == files.parts.len();
                    let short_is_damage = |path: &Path, file: &File| {
                        crate::query::plan::short_segment(&place, path, file, id, latest).is_err()
                    };
                    let s = crate::segment::stats::segment_stats(&dir, &org, id, short_is_damage)?;
                    // A name that is not a regular file is no segment file (named in
                    // `damage`).
                    m.segments +=
                        u32::from(!s.damage.iter().any(|d| d.kind == DamageKind::NotAFile));
                    m.events += s.events;
                    m.bytes += s.bytes;
                    m.first = min_opt(m.first, s.first);
                    m.last = max_opt(m.last, s.last);
                    m.damage.extend(s.damage);
                    m.misfiled += s.misfiled;
                }
                // A part with an index and no segment file: the query's rule (an index
                // that is, or may be, authentic, or cannot be read, says it held records).
                for &id in &files.orphans {
                    let path = dir.join(segment_file_name(id));
                    if !m
                        .damage
                        .iter()
                        .any(|d| d.kind == DamageKind::Missing && d.file == path)
                        && crate::query::plan::missing_segment(&place, &path, id).is_some()
                    {
                        m.damage
                            .push(crate::StatsDamage::whole(&path, DamageKind::Missing));
                    }
                }
                if m.segments > 0 || !m.damage.is_empty() {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Flushes, fsyncs and writes every index, then releases the directory lock.
    ///
    /// Every segment is tried whatever fails, and the first error is returned. Every record
    /// is written and fsynced before the key of its index is asked for: a key provider that
    /// fails or panics ([`Error::Key`]) leaves indexes for the next open to rebuild, and
    /// loses nothing. Also returns the first failure that had no caller when it happened:
    /// a spill failure of a retired writer, a panic in the background flusher
    /// ([`Error::Panicked`]).
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        let mut first_err = None;
        // The flusher contains a panic in its work (`Inner::contain_panic`); one outside it is
        // reported all the same.
        for (thread, task) in [
            (&self.flusher, "background flusher"),
            (&self.syncer, "interval fsync"),
        ] {
            if let Some(h) = thread.lock().take()
                && let Err(payload) = h.join()
            {
                first_err.get_or_insert(Error::Panicked {
                    task,
                    message: crate::crypto::panic_message(&*payload),
                });
            }
        }
        // Each index written below is renamed into its org's directory; each directory is
        // fsynced once, after all of them.
        let dirs = DirsToSync::default();
        let index = Some(DirSync::Later(&dirs));
        {
            let _retiring = self.inner.retiring.lock();
            // Parked writers first, each reopened, fsynced, indexed and closed again.
            if let Err(e) = self.inner.settle_parked(index) {
                first_err = Some(e);
            }
        }
        let writers = self.inner.all_writers_by_org();
        let busy: Vec<_> = writers
            .iter()
            .filter(|(_, w)| !w.is_durable() || w.unindexed_bytes() > 0)
            .cloned()
            .collect();
        let finished = for_each_at_once(&busy, |(org, w)| self.inner.finish(org, w, index));
        if let Err(e) = finished {
            first_err.get_or_insert(e);
        }
        // Poisoned writers already closed by retirement: their failure stands.
        if let Err(e) = self.inner.check_retired_failures() {
            first_err.get_or_insert(e);
        }
        if let Err(e) = for_each_at_once(&dirs.take(), |dir| fsync_dir(dir)) {
            first_err.get_or_insert(e);
        }
        // A spill failure lost nothing (the indexes above are complete), but the
        // application should hear that the disk refused a write.
        for (_, w) in &writers {
            if let Some(e) = w.take_spill_error() {
                first_err.get_or_insert(e);
            }
        }
        let unreported = self.inner.unreported.lock().take();
        // The lock is released here, not when the descriptor is closed with `Inner`: a
        // child process that any thread forks meanwhile holds a copy of the descriptor
        // until it execs, and with it the lock, so that reopening the directory right after
        // `close` could fail with `Locked`. An unlock that fails leaves the lock to the
        // descriptor's close.
        if let Some(lock) = &self.inner.lock {
            lock.release();
        }
        first_err.or(unreported).map_or(Ok(()), Err)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Threads [`for_each_at_once`] uses at most, the caller's included.
const SETTLE_THREADS: usize = 8;

/// The event of a batch that a group's refusal is for: `idx` is the group's events (their
/// indexes in the batch, in order), and `check(n)` the group's check for its first `n`
/// events, which fails for all of them. The first event whose inclusion makes it fail: the
/// first one for a refusal of the whole group (a frozen month), the first past the room
/// for one of a count (seqs left), so that the events before it are those `Log::append`
/// would accept.
fn first_refused(idx: &[usize], check: impl Fn(usize) -> Result<()>) -> usize {
    let counts: Vec<usize> = (1..=idx.len()).collect();
    let ok = counts.partition_point(|&n| check(n).is_ok());
    idx.get(ok).or(idx.first()).copied().unwrap_or(0)
}

/// Runs `work` on every item, on up to [`SETTLE_THREADS`] threads (the caller's one of
/// them), and returns the first error; a failure does not stop the other items.
///
/// For work that waits on the disk: the fsyncs and index writes of `Log::sync` and
/// `Log::close` over many segments. ext4 (like most journalled file systems) commits the
/// fsyncs in flight together, so `n` at once cost little more than one; one after
/// another, each waits for its own commit.
fn for_each_at_once<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let first_err = Mutex::new(None);
    let worker = || {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Err(e) = work(item) {
                first_err.lock().get_or_insert(e);
            }
        }
    };
    let helpers = items.len().min(SETTLE_THREADS).saturating_sub(1);
    std::thread::scope(|s| {
        for _ in 0..helpers {
            // A thread that cannot be started leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name("auditlog-settle".into())
                .spawn_scoped(s, worker);
        }
        worker();
    });
    first_err.into_inner().map_or(Ok(()), Err)
}

fn min_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn no_signer(org: &OrgId) -> Error {
    Error::Key {
        org: org.to_string(),
        source: crate::crypto::KeyError::NoSigningKey {
            org: org.to_string(),
        },
    }
}

/// Events, bytes and time range of one (org, month).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MonthStats {
    /// The org.
    pub org_id: String,
    /// The month.
    pub month: Month,
    /// Segment files (1 unless the month continued after damage).
    pub segments: u32,
    /// Records.
    pub events: u64,
    /// Of them, records dated outside the month, or in a segment whose header names
    /// another org or segment than its file (a segment renamed, swapped or copied in:
    /// `verify` says `misfiled`). Omitted from JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub misfiled: u64,
    /// Bytes on disk: segments plus indexes.
    pub bytes: u64,
    /// Earliest `occurred_at`.
    pub first: Option<Timestamp>,
    /// Latest `occurred_at`.
    pub last: Option<Timestamp>,
    /// Stretches of its segments that did not read as records (counted around; `verify`
    /// says what they are). Omitted from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<crate::StatsDamage>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Iterator over an org's verified events; see [`Log::scan`].
pub struct Scan {
    /// The org's directory.
    dir: PathBuf,
    org: OrgId,
    /// The segments to read, and index files without their segment (`true`).
    ids: std::iter::Peekable<std::vec::IntoIter<(SegmentId, bool)>>,
    keys: Arc<dyn KeyProvider>,
    current: Option<SegmentReader>,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scan({:?})", self.current)
    }
}

impl Iterator for Scan {
    type Item = Result<VerifiedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = &mut self.current {
                if let Some(item) = r.next() {
                    return Some(item);
                }
                self.current = None;
            }
            let (id, orphan) = self.ids.next()?;
            let path = self.dir.join(segment_file_name(id));
            let place = crate::query::plan::Place {
                dir: &self.dir,
                org: &self.org,
                keys: &*self.keys,
            };
            // An index without its segment: reported as a query reports it, when the index
            // is (or may be) authentic evidence that the segment held records.
            if orphan {
                match crate::query::plan::missing_segment(&place, &path, id) {
                    Some(e) => return Some(Err(e)),
                    None => continue,
                }
            }
            // A segment shorter than its header holds no record. It is passed over only as
            // queries pass it over: being created by a live writer, with no index saying it
            // held records; otherwise it is reported (`query::plan::short_segment`).
            if let Ok(file) = crate::segment::open_regular(&path)
                && file
                    .metadata()
                    .is_ok_and(|m| m.len() < SEGMENT_HEADER_LEN as u64)
            {
                let latest = self
                    .ids
                    .peek()
                    .is_none_or(|(next, _)| next.month != id.month);
                match crate::query::plan::short_segment(&place, &path, &file, id, latest) {
                    Ok(()) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            match SegmentReader::open(&path, Arc::clone(&self.keys)) {
                Ok(r) => {
                    // A continuation whose link counts records of a part that is gone.
                    let gone = crate::segment::continued_part_missing(&self.dir, &path, r.header());
                    self.current = Some(r);
                    if let Some(e) = gone {
                        return Some(Err(e));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Inner {
    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Unreachable from the API (`close` takes the log by value; see `Error::Closed`).
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// [`Inner::org`] by name: no allocation for an org already open. `id` must have
    /// passed [`Event::check`] (it is validated again only when first seen).
    fn org_named(&self, id: &str) -> Result<Arc<Org>> {
        if let Some(o) = self.orgs.read().get(id) {
            return Ok(Arc::clone(o));
        }
        Ok(self.org(&OrgId::new(id)?))
    }

    fn org(&self, id: &OrgId) -> Arc<Org> {
        if let Some(o) = self.orgs.read().get(id) {
            return Arc::clone(o);
        }
        let mut orgs = self.orgs.write();
        let org = orgs.entry(id.clone()).or_insert_with(|| {
            let dir = self.dir.join(id.as_str());
            Arc::new(Org {
                id: id.clone(),
                // Read again before any writer opens, if this read fails.
                segs: Mutex::new(load_catalog(&dir, id).unwrap_or_default()),
                dir,
                signer: RwLock::new(None),
                close_done: Condvar::new(),
            })
        });
        Arc::clone(org)
    }

    fn all_orgs(&self) -> Vec<Arc<Org>> {
        self.orgs.read().values().cloned().collect()
    }

    /// Every writer, including those a retirement is closing (so that `Log::sync` covers
    /// their records too).
    fn all_writers(&self) -> Vec<Arc<SegmentWriter>> {
        self.all_orgs()
            .iter()
            .flat_map(|o| o.segs.lock().live().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn writer(&self, org: &Org, month: Month) -> Result<Arc<SegmentWriter>> {
        let mut segs = org.segs.lock();
        self.writer_in(org, &mut segs, month)
    }

    /// With `segs` held: the month's open writer, else, once any retirement closing the
    /// month's writer is done (waiting on `Org::close_done`, which releases `segs`), the
    /// writer it left in the map (its close failed) or a newly opened one.
    fn writer_in(
        &self,
        org: &Org,
        segs: &mut MutexGuard<'_, OrgSegments>,
        month: Month,
    ) -> Result<Arc<SegmentWriter>> {
        loop {
            if let Some(w) = segs.writers.get(&month) {
                w.touch(self.clock.fetch_add(1, Ordering::Relaxed));
                return Ok(Arc::clone(w));
            }
            if !segs.closing.contains_key(&month) {
                break;
            }
            org.close_done.wait(segs);
        }
        // Nothing was read before the last wait ended: `open_writer` sees one state of `segs`.
        segs.ensure_listed(&org.dir, &org.id)?;
        self.open_writer(org, segs, month)
    }

    /// The refusals that [`Inner::writer`] and an append of `n` events to `month` would meet,
    /// as far as they are known without opening or creating a file: a poisoned writer (open,
    /// being closed, parked or retired), seqs used up, a frozen month, a new segment past
    /// the last ordinal. Not what only recovering an unopened segment finds (its damage, a
    /// continuation part that cannot be numbered).
    fn check_refusals(&self, org: &Org, month: Month, n: usize) -> Result<()> {
        let mut segs = org.segs.lock();
        segs.ensure_listed(&org.dir, &org.id)?;
        if let Some(w) = segs
            .writers
            .get(&month)
            .or_else(|| segs.closing.get(&month))
        {
            w.check_not_failed()?;
            return w.check_seq_room(n);
        }
        if let Some(f) = segs.failed.get(&month) {
            return Err(f.error());
        }
        let latest = segs.latest.get(&month);
        // A parked writer resumes as it was (`open_new_writer`: no frozen check either).
        if let Some(parked) = latest
            .and_then(|id| segs.closed.get(id))
            .and_then(|c| c.parked.as_ref())
        {
            return parked.check_append(n);
        }
        check_org_dir(&org.dir, &org.id)?;
        if org.dir.join(cold_file_name(month)).exists() {
            return Err(Error::MonthFrozen {
                org: org.id.to_string(),
                month,
            });
        }
        if latest.is_none() && segs.tail.is_some_and(|(ordinal, _)| ordinal == u32::MAX) {
            return Err(Error::SegmentNumberExhausted {
                org: org.id.to_string(),
                month,
                field: "ordinal",
                max: u32::MAX.into(),
            });
        }
        Ok(())
    }

    /// Makes a record appended up to `end` as durable as the mode promises.
    fn settle(&self, w: &Arc<SegmentWriter>, end: u64, buffered: usize) -> Result<()> {
        match self.opts.durability {
            Durability::Always => w.flush(end, true),
            Durability::Interval(_) => w.flush(end, false),
            Durability::Never if buffered < NEVER_BUFFER_LIMIT => Ok(()),
            Durability::Never
                if buffered < NEVER_INLINE_LIMIT
                    && self.flusher_running.load(Ordering::Acquire) =>
            {
                // The flusher hands the buffer to the OS on the other core while this
                // thread goes on sealing; past `NEVER_INLINE_LIMIT` (the flusher behind),
                // or without a flusher, the appender writes it itself, so a buffer never
                // grows without bound.
                self.queue_writeback(w);
                Ok(())
            }
            Durability::Never => w.flush(end, false),
        }
    }

    fn flush_loop(&self, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        let mut stop = self.stop.lock();
        while !*stop {
            let queued = std::mem::take(&mut *self.writeback.lock());
            let now = Instant::now();
            if queued.is_empty() && now < next_tick {
                self.stop_cv.wait_for(&mut stop, next_tick - now);
                continue;
            }
            drop(stop);
            if !queued.is_empty() {
                self.contain_panic("background writeback", || {
                    // As for a tick: `Log::sync`, which waits for `retiring`, must not find
                    // the writers upgraded here in use and leave them open.
                    let _retiring = self.retiring.lock();
                    for w in queued.iter().filter_map(Weak::upgrade) {
                        // An error poisons the writer; its next append reports it.
                        let _ = w.flush(u64::MAX, false);
                    }
                    #[cfg(test)]
                    if self.requeue_for_test.load(Ordering::Relaxed) {
                        self.writeback.lock().extend(queued);
                    }
                });
            }
            stop = self.stop.lock();
            // Due ticks run however busy the writeback keeps the thread: they write the
            // indexes of growing segments and retire idle writers.
            if !*stop && Instant::now() >= next_tick {
                drop(stop);
                self.flush_tick();
                next_tick = Instant::now() + tick;
                stop = self.stop.lock();
            }
        }
        // Appenders write their buffers themselves from now on; `close` writes what is left.
        self.flusher_running.store(false, Ordering::Release);
        self.writeback.lock().clear();
    }

    /// Under `Interval`, on a thread of its own: fsyncs every open writer at least every
    /// `period`. It never waits for `retiring`, never asks the key provider anything, and
    /// takes no org's `segs` (it finds the writers in `interval_writers`), so that a
    /// retirement, an index write or a recovery held up in a slow key lookup (the flusher's
    /// tick runs the first two holding `retiring`; a recovery holds its org's `segs`)
    /// cannot hold up the fsync the mode promises. (It used to: the tick fsynced, and a KMS
    /// slow for one org stopped every org's fsyncs.) The writers it holds during a pass
    /// would look in use to a retirement, which would then close another, more recently used
    /// one: a pass holds `syncing`, which a retirement takes only while it picks (never
    /// while it closes, which may ask the provider).
    fn sync_loop(&self, period: Duration) {
        let mut next = Instant::now() + period;
        let mut stop = self.stop.lock();
        while !*stop {
            let now = Instant::now();
            if now < next {
                self.stop_cv.wait_for(&mut stop, next - now);
                continue;
            }
            drop(stop);
            self.contain_panic("interval fsync", || {
                let _pass = self.syncing.lock();
                let writers: Vec<Arc<SegmentWriter>> = {
                    let mut list = self.interval_writers.lock();
                    list.retain(|w| w.strong_count() > 0);
                    list.iter().filter_map(Weak::upgrade).collect()
                };
                for w in writers {
                    // An error poisons the writer; its next append reports it.
                    let _ = w.sync();
                }
            });
            next = Instant::now() + period;
            stop = self.stop.lock();
        }
    }

    /// Hands writers whose buffer filled under `Never` to the flusher (`Inner::settle`),
    /// which writes them on its own thread while the appenders go on sealing.
    fn queue_writeback(&self, w: &Arc<SegmentWriter>) {
        {
            let mut queue = self.writeback.lock();
            if queue
                .iter()
                .any(|q| std::ptr::eq(q.as_ptr(), Arc::as_ptr(w)))
            {
                return;
            }
            queue.push(Arc::downgrade(w));
        }
        // Under `stop`, which the flusher holds from looking at the queue to sleeping: it
        // either sees this writer or is asleep and woken.
        let _stop = self.stop.lock();
        self.stop_cv.notify_all();
    }

    /// Runs work of the background flusher (a tick, or buffers handed over under `Never`).
    /// A panic in it (none is expected: the key provider's are contained) does not end the
    /// thread, and with it every later background fsync, index write and retirement: the
    /// first one is kept for [`Log::close`] to return, and the flusher goes on as usual.
    fn contain_panic(&self, task: &'static str, work: impl FnOnce()) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        if let Err(payload) = ran {
            self.unreported.lock().get_or_insert(Error::Panicked {
                task,
                message: crate::crypto::panic_message(&*payload),
            });
        }
    }

    /// One tick of the background flusher ([`Inner::flush_tick_work`]), its panic contained.
    fn flush_tick(&self) {
        self.contain_panic("background flusher", || self.flush_tick_work());
    }

    /// Under `Never` hands every open writer's buffer to the OS, under `Always` fsyncs it
    /// (nothing is left to: a no-op), under `Interval` fsyncs it only if the fsync thread
    /// ([`Inner::sync_loop`]) could not be started; writes the index of each that grew by
    /// `index_flush_bytes`; retires idle writers beyond the limit.
    fn flush_tick_work(&self) {
        #[cfg(test)]
        provider_panics::panic_point("flush_tick");
        // The whole tick holds `retiring`: the writers cloned below look in use, and a
        // `Log::sync` (which waits for `retiring`) must not find them so and skip them.
        let retiring = self.retiring.lock();
        for org in self.all_orgs() {
            let writers: Vec<Arc<SegmentWriter>> =
                org.segs.lock().writers.values().cloned().collect();
            for w in writers {
                // Errors poison the writer; the next append reports them.
                let _ = match self.opts.durability {
                    Durability::Never => w.flush(u64::MAX, false),
                    Durability::Interval(_) if self.syncer_running.load(Ordering::Acquire) => {
                        Ok(())
                    }
                    _ => w.sync(),
                };
                if w.unindexed_bytes() >= self.opts.index_flush_bytes
                    && let Ok(signer) = org.signer(&*self.opts.keys)
                {
                    let _ = w.write_index(&signer, DirSync::Now);
                }
            }
        }
        // The writers cloned above are dropped: idle ones can be closed.
        self.retire_locked(self.opts.max_open_writers);
        drop(retiring);
    }

    /// The writer for `month`: the open one if there is one (a segment never gets a second
    /// writer), else opened by recovering or creating its segment. Holds `segs` throughout.
    ///
    /// Callers deal with a month whose writer is being closed first (`writer_in` waits,
    /// `tail_link` reads the closing writer); reaching here with one is refused with
    /// [`Error::SegmentClosing`] rather than opening the file a second time.
    fn open_writer(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        month: Month,
    ) -> Result<Arc<SegmentWriter>> {
        if let Some(w) = segs.writers.get(&month) {
            w.touch(self.clock.fetch_add(1, Ordering::Relaxed));
            return Ok(Arc::clone(w));
        }
        if let Some(w) = segs.closing.get(&month) {
            return Err(Error::SegmentClosing {
                org: org.id.to_string(),
                segment: w.id().to_string(),
            });
        }
        // Recovery and creation may open other months' writers (the tail, for a `prev`
        // link), never this month's again: that would recurse until the stack overflows.
        if segs.opening.contains(&month) {
            return Err(Error::WriterReentered {
                org: org.id.to_string(),
                month,
            });
        }
        segs.opening.push(month);
        let opened = self.open_new_writer(org, segs, month);
        segs.opening.retain(|m| *m != month);
        opened
    }

    /// [`Inner::open_writer`] for a month without an open or closing writer.
    fn open_new_writer(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        month: Month,
    ) -> Result<Arc<SegmentWriter>> {
        // A poisoned segment is never reopened in this process (after a failed fsync the
        // page cache may show bytes that are not on disk): retired, or parked and poisoned
        // since through a reference that outlived the park (whose state is dropped then,
        // whether or not its file changed meanwhile).
        if let Some(f) = segs.failed.get(&month) {
            return Err(f.error());
        }
        let latest = segs.latest.get(&month).copied();
        if let Some(f) = latest
            .and_then(|id| segs.closed.get(&id))
            .and_then(|c| c.parked.as_ref())
            .and_then(Parked::failed)
        {
            if let Some(parked) = latest
                .and_then(|id| segs.closed.remove(&id))
                .and_then(|c| c.parked)
            {
                self.parked_bytes
                    .fetch_sub(parked.bytes(), Ordering::Relaxed);
            }
            let e = f.error();
            segs.failed.insert(month, f);
            return Err(e);
        }
        check_org_dir(&org.dir, &org.id)?;
        let mut closed_as = None;
        if let Some(id) = latest
            && segs.closed.get(&id).is_some_and(|c| c.parked.is_some())
        {
            // A parked writer is an open one without its descriptor: it resumes as the
            // open one would have gone on (no check for a frozen month either). The file
            // is opened before the state leaves the map, so a failed open loses nothing.
            let (file, meta) = recover::open_for_append(&org.dir.join(segment_file_name(id)))?;
            let now = FileStamp::of(&meta);
            if let Some(ClosedSegment {
                stamp,
                parked: Some(parked),
            }) = segs.closed.remove(&id)
            {
                self.parked_bytes
                    .fetch_sub(parked.bytes(), Ordering::Relaxed);
                if now == stamp {
                    let w = SegmentWriter::unpark(&org.dir, parked, file);
                    return Ok(self.install(segs, month, w));
                }
                // Written by something else since it was parked: the state is stale, and
                // the file is recovered like any other (fsync included).
            }
        } else if let Some(closed) = latest.and_then(|id| segs.closed.remove(&id)) {
            closed_as = Some(closed.stamp);
        }
        let cold = org.dir.join(cold_file_name(month));
        if cold.exists() {
            return Err(Error::MonthFrozen {
                org: org.id.to_string(),
                month,
            });
        }
        let writer = match latest {
            Some(id) => self.recover_latest(org, segs, month, id, closed_as)?,
            None => {
                let header = self.new_header(org, segs, SegmentId { month, part: 0 }, 0, None)?;
                self.create(org, segs, header)?
            }
        };
        Ok(self.install(segs, month, writer))
    }

    /// Recovers `id`, the latest part of `month`, into a writer: resumed, or a new segment
    /// after a partial header (part 0 created anew; part n ≥ 1 recreated as the
    /// continuation of part n-1, which was damaged), or a continuation after damage.
    ///
    /// A loop, not a recursion: each partial header moves one part down, and every segment
    /// created here links (`prev`) either to the damaged part itself or through
    /// [`Inner::tail_link`] to the org's tail, which is another month (the tail has a
    /// readable header; a month whose latest part had none is not it); and
    /// [`Inner::open_writer`] refuses to be re-entered for a month it is opening.
    fn recover_latest(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        month: Month,
        mut id: SegmentId,
        mut closed_as: Option<FileStamp>,
    ) -> Result<SegmentWriter> {
        let interval = self.opts.index_interval;
        let keys = &*self.opts.keys;
        // A later part of the month was begun after `id` (its header never written): `id`
        // was damaged and is continued again, never resumed.
        let mut continued = false;
        loop {
            let linked = segs.linked.get(&id).copied().unwrap_or(0);
            let found = recover::recover(
                &org.dir, &org.id, id, keys, interval, closed_as, continued, linked,
            )?;
            match found {
                Recovered::Ready {
                    header,
                    genesis,
                    file,
                    tally,
                    torn,
                    index_rebuilt,
                    index_kept,
                } => {
                    let path = org.dir.join(segment_file_name(id));
                    if let Some(part) = id.part.checked_sub(1) {
                        // Continued, so sealed: unless a crash came between the continuation's
                        // creation and the sealing.
                        seal(&org.dir.join(segment_file_name(SegmentId { month, part })));
                    }
                    let w = SegmentWriter::resume(&org.dir, header, genesis, file, tally);
                    if index_rebuilt.is_none() {
                        // The index on disk is valid and covers the whole segment.
                        w.index_is_current();
                    }
                    let mut report = self.report.lock();
                    if let Some(k) = index_kept {
                        report.push(RecoveryAction::IndexKeptAside {
                            file: k.index,
                            reason: k.reason,
                            copied_to: k.copied_to,
                        });
                    }
                    if let Some(t) = torn {
                        report.push(RecoveryAction::TornTailQuarantined {
                            file: path.clone(),
                            offset: t.offset,
                            len: t.len,
                            moved_to: t.moved_to,
                        });
                    }
                    if let Some(reason) = index_rebuilt {
                        drop(report);
                        let written = match org.signer(keys) {
                            Ok(signer) => w.write_index(&signer, DirSync::Now),
                            Err(_) => Ok(false),
                        };
                        let action = match written {
                            Ok(true) => Some(RecoveryAction::IndexRebuilt { file: path, reason }),
                            Ok(false) => None,
                            // The segment's own write failed: the writer is poisoned.
                            Err(e) if w.check_not_failed().is_err() => return Err(e),
                            // Only the index (derived data) failed: never the month's appends.
                            Err(e) => Some(RecoveryAction::IndexNotRebuilt {
                                file: path,
                                reason,
                                error: e.to_string(),
                            }),
                        };
                        self.report.lock().extend(action);
                    }
                    return Ok(w);
                }
                Recovered::NoHeader { moved_to } => {
                    self.report
                        .lock()
                        .push(RecoveryAction::PartialSegmentQuarantined { moved_to });
                    // The catalog again without the file moved: it may have been the tail,
                    // and it counted among the unplaced headers if it had 256 bytes.
                    segs.reload(&org.dir, &org.id)?;
                    segs.latest.remove(&month);
                    let Some(part) = id.part.checked_sub(1) else {
                        // The month's first segment: nothing before it in the month.
                        let header = self.new_header(org, segs, id, 0, None)?;
                        return self.create(org, segs, header);
                    };
                    // A continuation is created only after damage to the part before it:
                    // continue that part again, exactly as when it was found (first_seq and
                    // `continues` from its last readable record), never from seq 0.
                    id = SegmentId { month, part };
                    segs.latest.insert(month, id);
                    closed_as = None;
                    continued = true;
                }
                Recovered::Damaged {
                    header,
                    outcome,
                    seq_floor,
                } => {
                    if let Some(part) = id.part.checked_sub(1) {
                        // `id` exists, so the part before it was continued: sealed, even
                        // if a crash came between `id`'s creation and the sealing and `id`
                        // is itself found damaged now, before it was ever resumed.
                        seal(&org.dir.join(segment_file_name(SegmentId { month, part })));
                    }
                    return self.continue_damaged(org, segs, id, header, &outcome, seq_floor);
                }
            }
        }
    }

    /// Continues the damaged segment `id` (the latest part of its month) in part n+1:
    /// `first_seq` past every seq it may have issued (recovery's `seq_floor`: its readable
    /// seqs, its index's, room for records in its unreadable end),
    /// `continues` naming its last readable record. Recovery made the damaged file durable
    /// before it returned. In this order, so that a crash or a failure at any point leaves
    /// a state the next recovery finishes: the damage report (a new one beside any earlier),
    /// the continuation (header and directory entry durable), then the damaged file sealed
    /// read-only. Before the continuation exists, the damaged part is still the month's
    /// latest part, unsealed, and is found damaged again; after, the continuation is the
    /// latest and seals the part before it when it is recovered (resumed or damaged).
    fn continue_damaged(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        id: SegmentId,
        header: Option<SegmentHeader>,
        outcome: &scan::ScanOutcome,
        seq_floor: u64,
    ) -> Result<SegmentWriter> {
        let path = org.dir.join(segment_file_name(id));
        let first_seq = outcome
            .tally
            .max_seq
            .map_or(header.as_ref().map_or(0, |h| h.first_seq), |m| {
                // A forged record can claim u64::MAX; its continuation then has
                // no seqs left and refuses appends (`Error::SeqExhausted`).
                m.saturating_add(1)
            })
            // Seqs an authentic index vouches for were issued, readable or not.
            .max(seq_floor);
        let continues = SegmentLink {
            segment: id,
            count: outcome.tally.count,
            head: outcome.tally.head,
        };
        let next = SegmentId {
            month: id.month,
            part: id
                .part
                .checked_add(1)
                .ok_or(Error::SegmentNumberExhausted {
                    org: org.id.to_string(),
                    month: id.month,
                    field: "part",
                    max: u16::MAX.into(),
                })?,
        };
        let tail_is_damaged = segs.tail.is_some_and(|(_, t)| t == id);
        let prev = if tail_is_damaged {
            Some(continues)
        } else {
            None
        };
        let header = self.new_header(org, segs, next, first_seq, Some((continues, prev)))?;
        let damage: Vec<(u64, u64, String)> = outcome
            .damage
            .iter()
            .map(|d| {
                let cause = match &d.cause {
                    DamageCause::Incomplete => "frame runs past the end of the file".to_string(),
                    DamageCause::Corrupt(e) => e.to_string(),
                    DamageCause::Integrity { seq, kind } => format!("seq {seq}: {kind}"),
                };
                (d.start, d.end, cause)
            })
            .collect();
        let action = RecoveryAction::SegmentSealed {
            file: path.clone(),
            damage,
            continuation: org.dir.join(segment_file_name(next)),
        };
        if let Ok(json) = serde_json::to_vec_pretty(&action) {
            // `<name>.damage.json`, or `<name>.damage.<n>.json` past the reports of earlier
            // continuations of the same part: none is ever replaced.
            let seg = segment_file_name(id);
            let name_of = |n: u32| match n {
                0 => format!("{seg}.damage.json"),
                n => format!("{seg}.damage.{n}.json"),
            };
            Quarantine::open(&org.dir, &org.id)?.write_report(&name_of, &json)?;
        }
        let w = self.create(org, segs, header)?;
        seal(&path);
        self.report.lock().push(action);
        Ok(w)
    }

    /// Puts a newly opened writer in the org's map, as used now.
    fn install(
        &self,
        segs: &mut OrgSegments,
        month: Month,
        writer: SegmentWriter,
    ) -> Arc<SegmentWriter> {
        let w = Arc::new(writer);
        w.touch(self.clock.fetch_add(1, Ordering::Relaxed));
        if segs.writers.insert(month, Arc::clone(&w)).is_none() {
            self.open_writers.fetch_add(1, Ordering::Relaxed);
        }
        self.register_for_sync(&w);
        w
    }

    /// Under `Interval`, lists `w` for [`Inner::sync_loop`].
    fn register_for_sync(&self, w: &Arc<SegmentWriter>) {
        if matches!(self.opts.durability, Durability::Interval(_)) {
            self.interval_writers.lock().push(Arc::downgrade(w));
        }
    }

    /// Makes everything `w` holds durable and, with `index`, writes its index if it lags
    /// (its directory fsynced as `index` says). The index is best effort after the data:
    /// everything is written and fsynced before the key provider is asked, so that a key
    /// lookup that fails (or a provider that panics) loses nothing; its error is returned.
    fn finish(&self, org: &Org, w: &SegmentWriter, index: Option<DirSync<'_>>) -> Result<()> {
        // The data first, whatever the index needs: an index that covers every byte was
        // written after they were fsynced, and one that lags needs the provider.
        w.sync()?;
        let Some(dir_sync) = index.filter(|_| w.unindexed_bytes() > 0) else {
            return Ok(());
        };
        let signer = org.signer(&*self.opts.keys)?;
        w.write_index(&signer, dir_sync).map(|_| ())
    }

    /// With `retiring` held, so that nothing is parked meanwhile: makes every parked
    /// segment's bytes durable (with `index`, also writes its index where it lags), one
    /// segment at a time ([`Inner::settle_month`]). A failure does not stop the others;
    /// the first is returned.
    fn settle_parked(&self, index: Option<DirSync<'_>>) -> Result<()> {
        let mut parked = Vec::new();
        for org in self.all_orgs() {
            let months = org.segs.lock().parked_months(index.is_some());
            parked.extend(months.into_iter().map(|m| (Arc::clone(&org), m)));
        }
        for_each_at_once(&parked, |(org, month)| {
            self.settle_month(org, *month, index)
        })
    }

    /// The [`Error::WriterFailed`] of a segment whose poisoned writer retirement closed
    /// (`OrgSegments::failed`), if any: what its `sync` would have returned, open.
    fn check_retired_failures(&self) -> Result<()> {
        for org in self.all_orgs() {
            if let Some(f) = org.segs.lock().failed.values().next() {
                return Err(f.error());
            }
        }
        Ok(())
    }

    /// Every writer of every org with its org, including those a retirement is closing.
    fn all_writers_by_org(&self) -> Vec<(Arc<Org>, Arc<SegmentWriter>)> {
        let mut out = Vec::new();
        for org in self.all_orgs() {
            let writers: Vec<_> = org.segs.lock().live().cloned().collect();
            out.extend(writers.into_iter().map(|w| (Arc::clone(&org), w)));
        }
        out
    }

    /// Reopens the month's parked writer (reading nothing; a file changed since it was
    /// parked is recovered instead, fsync included), fsyncs it (`index`: writes its index
    /// too, fsync first) and parks it again if nobody has taken it meanwhile. A writer an
    /// appender reopened meanwhile holds the parked bytes now, and is settled the same way.
    /// An fsync failure poisons the writer like any other: the retirement that follows lets
    /// go of it, and its month takes no appends until the log is reopened. A parked state
    /// found poisoned is not reopened at all (`open_new_writer`): its error is returned.
    fn settle_month(&self, org: &Org, month: Month, index: Option<DirSync<'_>>) -> Result<()> {
        let w = {
            let mut segs = org.segs.lock();
            self.writer_in(org, &mut segs, month)?
        };
        let settled = self.finish(org, &w, index);
        let used = w.last_used();
        drop(w);
        let parked_again = self.retire(org, month, used);
        settled?;
        parked_again.unwrap_or(Ok(()))
    }

    /// Open writers beyond which an append closes idle ones itself (the flusher and `sync`
    /// close down to `max_open_writers`).
    fn append_writer_limit(&self) -> usize {
        self.opts.max_open_writers.saturating_mul(2)
    }

    /// How many an append that finds more than [`Inner::append_writer_limit`] open leaves
    /// open: a quarter of the limit fewer. Closing just one would make every further
    /// append pay a pass over all writers (measured: a third of an append's time with
    /// 1,000 orgs in use); closing down to the limit would make one append pay for
    /// hundreds of closes.
    fn append_retire_target(&self) -> usize {
        let max = self.opts.max_open_writers;
        self.append_writer_limit()
            .saturating_sub((max / 4).max(1))
            .max(max)
    }

    /// Closes least recently used idle writers, for appends (see [`Inner::retire_locked`]).
    ///
    /// Does nothing up to [`Inner::append_writer_limit`] open writers, then closes down to
    /// [`Inner::append_retire_target`]. Skipped if another thread holds `retiring`
    /// (retiring, or the flusher's tick), up to [`Inner::append_writer_ceiling`] open
    /// writers: appenders do not wait for a retirement in progress. Beyond it they do (as
    /// `Log::sync` does): while one close took long (a slow key lookup, a slow disk),
    /// appends to new months opened writers without bound, until descriptors ran out.
    fn retire_idle(&self) {
        let open = self.open_writers.load(Ordering::Relaxed);
        if open <= self.append_writer_limit() {
            return;
        }
        let _one_at_a_time = if open > self.append_writer_ceiling() {
            self.retiring.lock()
        } else {
            let Some(held) = self.retiring.try_lock() else {
                return;
            };
            held
        };
        self.retire_locked(self.append_retire_target());
    }

    /// Open writers beyond which an append waits for a retirement in progress rather than
    /// going on without one: four times [`Options::max_open_writers`].
    fn append_writer_ceiling(&self) -> usize {
        self.opts.max_open_writers.saturating_mul(4)
    }

    /// Closes least recently used idle writers until at most `max` are open; `retiring`
    /// is held by the caller.
    ///
    /// A writer is idle when the org's map holds the only reference to it. Every other
    /// reference is cloned from the map under the org's `segs` lock, so a writer found idle
    /// under that lock stays idle while the lock is held. [`Inner::begin_close`] moves it,
    /// under the lock, from `writers` to `closing`; the close itself (key lookup, fsync,
    /// index write) runs with the lock released, so appenders of the org's other months are
    /// not held up; [`Inner::end_close`] then records the outcome under the lock again.
    /// Appenders of the month being closed wait for that (`writer_in`), so a segment never
    /// has two writers. Writers poisoned by a failed write or fsync are closed first (they
    /// take no appends, and hold a descriptor and their buffers for nothing): nothing of
    /// theirs is written or fsynced, and [`Inner::end_close`] leaves their [`Failed`] marker,
    /// so that their segment keeps refusing appends with [`Error::WriterFailed`] and is never
    /// reopened in this process.
    fn retire_locked(&self, max: usize) {
        if self.open_writers.load(Ordering::Relaxed) <= max {
            return;
        }
        // (healthy, last used): poisoned writers first, then least recently used.
        let mut idle: Vec<((bool, u64), Arc<Org>, Month)> = Vec::new();
        let no_sync_pass = self.syncing.lock();
        for org in self.all_orgs() {
            let segs = org.segs.lock();
            for (m, w) in &segs.writers {
                if Arc::strong_count(w) == 1 {
                    idle.push(((!w.is_failed(), w.last_used()), Arc::clone(&org), *m));
                }
            }
        }
        drop(no_sync_pass);
        idle.sort_unstable_by_key(|(key, _, _)| *key);
        for ((_, used), org, month) in idle {
            if self.open_writers.load(Ordering::Relaxed) <= max {
                break;
            }
            // The appender that triggered the retirement gets no error for another
            // segment's disk; a writer whose close failed went back into the map and
            // reports it itself.
            let _ = self.retire(&org, month, used);
        }
    }

    /// Closes the month's writer ([`Inner::begin_close`], [`Inner::close_writer`],
    /// [`Inner::end_close`]) if it is still idle and unused since tick `used`; `None` if
    /// it is not.
    ///
    /// A panic in the close (none is expected: the key provider's are contained) must not
    /// leave the month in `closing`, where its appenders would wait for good: it fails the
    /// close like an error, with the writer, which it may have left half closed, poisoned
    /// ([`Error::Panicked`]; its appends fail with [`Error::WriterFailed`] until the log is
    /// reopened and recovery reads what is on disk).
    ///
    /// A writer already poisoned is not closed (no write or fsync is tried after a failure):
    /// its close fails with its error at once, and [`Inner::end_close`] lets go of it.
    fn retire(&self, org: &Org, month: Month, used: u64) -> Option<Result<()>> {
        let w = {
            let _no_sync_pass = self.syncing.lock();
            let w = Self::begin_close(org, month, used)?;
            self.interval_writers
                .lock()
                .retain(|x| !std::ptr::eq(x.as_ptr(), Arc::as_ptr(&w)));
            w
        };
        let closed = match w.check_not_failed() {
            Err(e) => Err(e),
            Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.close_writer(org, &w)
            }))
            .unwrap_or_else(|payload| {
                Err(w.poison(Error::Panicked {
                    task: "writer retirement",
                    message: crate::crypto::panic_message(&*payload),
                }))
            }),
        };
        Some(self.end_close(org, month, w, closed))
    }

    /// Under `segs`: if the month's writer is still idle and unused since tick `used`
    /// (poisoned or not), moves it from `writers` to `closing` and returns it.
    fn begin_close(org: &Org, month: Month, used: u64) -> Option<Arc<SegmentWriter>> {
        let mut segs = org.segs.lock();
        let w = segs.writers.get(&month)?;
        if Arc::strong_count(w) != 1 || w.last_used() != used {
            return None;
        }
        let w = segs.writers.remove(&month)?;
        segs.closing.insert(month, Arc::clone(&w));
        Some(w)
    }

    /// Closes a writer taken out of the map by [`Inner::begin_close`], without `segs`.
    ///
    /// Parked if it can be (see [`Options::max_open_writers`]): everything buffered written
    /// (and fsynced unless under `Never`), its state kept within the log's budget. Else
    /// closed fully: everything fsynced, the index written.
    fn close_writer(&self, org: &Org, w: &SegmentWriter) -> Result<ClosedSegment> {
        #[cfg(test)]
        provider_panics::panic_point("close_writer");
        match self.opts.durability {
            Durability::Never => w.flush(u64::MAX, false)?,
            Durability::Always | Durability::Interval(_) => w.sync()?,
        }
        let budget = self.opts.parked_bytes;
        // Stamped first: a parked writer is spent, and nothing may fail after it.
        let stamp = w.stamp()?;
        let parked = w.park(|bytes| {
            budget > 0
                && self
                    .parked_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                        held.checked_add(bytes).filter(|&total| total <= budget)
                    })
                    .is_ok()
        });
        if parked.is_some() {
            return Ok(ClosedSegment { stamp, parked });
        }
        // Closed fully. Without a key the data is fsynced all the same and the index is
        // rebuilt when the segment is next opened: the close stands.
        match self.finish(org, w, Some(DirSync::Now)) {
            Ok(()) | Err(Error::Key { .. }) => {}
            Err(e) => return Err(e),
        }
        // The writer goes; a spill failure it kept is held for `Log::close`, as the
        // failures of the writers still open at close are.
        if let Some(e) = w.take_spill_error() {
            self.unreported.lock().get_or_insert(e);
        }
        Ok(ClosedSegment {
            stamp: w.stamp()?,
            parked: None,
        })
    }

    /// Under `segs` again: ends the close begun by [`Inner::begin_close`] and wakes the
    /// appenders waiting for the month. Closed: the writer leaves the count, and its parked
    /// state or its stamp lets the next open read nothing or skip the CRC walk. Failed, the
    /// writer poisoned (by a failed write or fsync, now or before, or a close that
    /// panicked): the writer leaves the count and is let go of (its descriptor is closed
    /// when the last reference to it goes, at once unless a `sync` or a query holds one for
    /// an instant; what it still buffered is dropped: nothing may be written after a
    /// failure), its [`Failed`] marker is kept in `OrgSegments::failed`, and the error is
    /// returned; the month's appends, `Log::sync` and `Log::close` fail with the same
    /// [`Error::WriterFailed`] until the log is reopened (the segment is never reopened or
    /// recovered in this process as if the data were durable). Failed otherwise (a failed
    /// index write): the writer goes back into the map as it is, nothing it holds lost, keeps
    /// taking appends, and a later retirement tries again.
    fn end_close(
        &self,
        org: &Org,
        month: Month,
        w: Arc<SegmentWriter>,
        closed: Result<ClosedSegment>,
    ) -> Result<()> {
        let mut segs = org.segs.lock();
        segs.closing.remove(&month);
        let outcome = match closed {
            Ok(closed) => {
                if let Some(old) = segs.closed.insert(w.id(), closed)
                    && let Some(parked) = old.parked
                {
                    self.parked_bytes
                        .fetch_sub(parked.bytes(), Ordering::Relaxed);
                }
                self.open_writers.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                match w.failed() {
                    // Poisoned: let go of, its marker kept (it is never put back to be used).
                    Some(failed) => {
                        segs.failed.insert(month, failed);
                        self.open_writers.fetch_sub(1, Ordering::Relaxed);
                    }
                    None => match segs.writers.entry(month) {
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            self.register_for_sync(&w);
                            slot.insert(w);
                        }
                        // Not reachable (no writer is opened for a closing month); were it,
                        // the writer in the map is the one counted and used.
                        std::collections::hash_map::Entry::Occupied(_) => {
                            self.open_writers.fetch_sub(1, Ordering::Relaxed);
                        }
                    },
                }
                Err(e)
            }
        };
        drop(segs);
        org.close_done.notify_all();
        outcome
    }

    /// Builds the header of a new segment, linking it to the org's most recently created
    /// one. `continuation` carries the continues-link and, when the damaged segment is
    /// itself the tail, the prev-link to use.
    fn new_header(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        id: SegmentId,
        first_seq: u64,
        continuation: Option<(SegmentLink, Option<SegmentLink>)>,
    ) -> Result<SegmentHeader> {
        let (continues, prev) = match continuation {
            Some((c, Some(p))) => (Some(c), Some(p)),
            Some((c, None)) => (Some(c), self.tail_link(org, segs)?),
            None => (None, self.tail_link(org, segs)?),
        };
        // After `tail_link`: opening the tail's writer may itself have created a segment.
        // A forged or damaged header can claim the largest ordinal: refuse rather than give
        // every later segment that same number. Past the segments whose header is unreadable
        // too: any of them may have been created after the tail.
        let ordinal = match segs.tail {
            None => Some(segs.unplaced),
            Some((o, _)) => o.checked_add(1).and_then(|n| n.checked_add(segs.unplaced)),
        }
        .ok_or(Error::SegmentNumberExhausted {
            org: org.id.to_string(),
            month: id.month,
            field: "ordinal",
            max: u32::MAX.into(),
        })?;
        Ok(SegmentHeader {
            compat_flags: 0,
            org: org.id.clone(),
            id,
            ordinal,
            first_seq,
            created_at: Timestamp::now(),
            prev,
            continues,
        })
    }

    /// The current state of the org's most recently created segment.
    fn tail_link(&self, org: &Org, segs: &mut OrgSegments) -> Result<Option<SegmentLink>> {
        let Some((_, tail)) = segs.tail else {
            return Ok(None);
        };
        // An open writer, or one being closed by a retirement (with `segs` released): that
        // one is still the file's only writer, takes no appends, and its state is the
        // file's; opening the file again here would make a second writer on it.
        let live = segs
            .writers
            .get(&tail.month)
            .or_else(|| segs.closing.get(&tail.month))
            .filter(|w| w.id() == tail)
            .cloned();
        let writer = match live {
            Some(w) => w,
            // A segment that takes no more appends gets no writer here: its state is the
            // file's. So for a frozen month's (it must not block new months), an earlier
            // part of its month (a later part's header is unreadable, so the catalog does
            // not know that part), and the month being opened right now (opening its
            // writer here would re-enter that opening).
            _ if org.dir.join(cold_file_name(tail.month)).exists()
                || segs.opening.contains(&tail.month)
                || segs.latest.get(&tail.month).is_some_and(|l| *l != tail) =>
            {
                let path = org.dir.join(segment_file_name(tail));
                return frozen_link(&path, tail, self.opts.index_interval).map(Some);
            }
            // A month whose recovery fails takes no appends until it is repaired, and must
            // not block the org's new months (it did: each new month's link reopened it and
            // failed with its error). Linked as a frozen one, over its valid records; the
            // original error if even that cannot be read.
            // A key the provider cannot give, or whose secret fails the org's records
            // (`KeyError::WrongKey`), is the org's problem, not the month's: no fallback.
            // Nor is a poisoned segment's failure (its writer retired, or its parked state
            // poisoned): its file may show records that are not on disk, and a link must not
            // name them. A new segment then fails as it does while the poisoned writer is
            // open (its fsync of the linked prefix fails).
            _ => match self.open_writer(org, segs, tail.month) {
                Ok(w) => w,
                Err(e @ (Error::Key { .. } | Error::WriterFailed { .. })) => return Err(e),
                Err(e) => {
                    let path = org.dir.join(segment_file_name(tail));
                    return frozen_link(&path, tail, self.opts.index_interval)
                        .map(Some)
                        .map_err(|_| e);
                }
            },
        };
        // A link must only name records that are on disk: under `Never` or `Interval` the
        // tail may hold buffered records a crash would lose, and a link to them would later
        // read as evidence of removed records. Make the linked prefix durable first.
        let snap = writer.snapshot();
        writer.flush(snap.end, true)?;
        Ok(Some(SegmentLink {
            segment: writer.id(),
            count: snap.count,
            head: snap.head,
        }))
    }

    fn create(
        &self,
        org: &Org,
        segs: &mut OrgSegments,
        header: SegmentHeader,
    ) -> Result<SegmentWriter> {
        if !segs.dir_durable {
            fs::create_dir_all(&org.dir)
                .map_err(|e| Error::io("create org directory", &org.dir, e))?;
            fsync_dir(&self.dir)?;
            segs.dir_durable = true;
        }
        let (id, ordinal) = (header.id, header.ordinal);
        segs.note_links(&header);
        let created = SegmentWriter::create(&org.dir, header, self.opts.index_interval);
        // A failure may leave the file there all the same, its header written and fsynced
        // (the directory's fsync failed): the catalog counts it then, so that no segment
        // created later takes its ordinal, and the month's next append resumes it.
        let on_disk = || {
            read_header(&org.dir.join(segment_file_name(id)))
                .is_ok_and(|(h, _)| h.id == id && h.ordinal == ordinal)
        };
        if created.is_ok() || on_disk() {
            segs.latest.insert(id.month, id);
            segs.tail = Some((ordinal, id));
            segs.unplaced = 0;
        }
        created
    }
}

impl Org {
    /// The signer of the key the provider names now: the cached one if it is that key's,
    /// else a new one, which then replaces it in the cache.
    ///
    /// The caller signs with what this returns, never with whatever the cache holds by the
    /// time it frames: calls to the provider overlap, and one asked before a rotation can
    /// return after one asked after it. Read from the cache, that late answer put the
    /// retired key back for every appender of the org, so an append begun after
    /// `Keyring::rotate` returned, which had itself been told the new key, was signed with
    /// the retired one (`tests/rotation_during_appends.rs`).
    fn signer(&self, keys: &dyn KeyProvider) -> Result<Arc<Signer>> {
        let (id, key) = keys.signing_key(&self.id).map_err(|source| Error::Key {
            org: self.id.to_string(),
            source,
        })?;
        if let Some(s) = self.signer.read().as_ref().filter(|s| s.key_id() == id) {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(Signer::new(id, &key));
        *self.signer.write() = Some(Arc::clone(&s));
        Ok(s)
    }
}

/// A writer's two `flock`s, held from [`Log::open`] to [`Log::close`].
///
/// - The directory itself, exclusive, tried once: writers shut each other out with it, so
///   [`Error::Locked`] means another writer and nothing else. Readers never take it.
/// - `LOCK`, exclusive, waited for: it says a writer is live. Readers probe it with a shared
///   lock tried and released at once ([`writer_is_live`]), so the only thing that can hold
///   it against a writer is such a probe, for an instant. Before this lock was split off,
///   a writer opening during a probe failed with `Locked`.
struct WriterLock {
    dir: File,
    live: File,
}

impl WriterLock {
    fn take(dir: &Path) -> Result<WriterLock> {
        let dir_file = File::open(dir).map_err(|e| Error::io("open log directory", dir, e))?;
        match dir_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", dir, e)),
        }
        let path = dir.join(LOCK_FILE);
        let live = open_lock_file(&dir_file, &path)?;
        // Waited for, but not for ever: what holds it longer than a probe does (a writer of
        // an older release, which took only this lock; a probe's descriptor inherited by a
        // child forked without exec) is treated as another writer.
        let deadline = std::time::Instant::now() + LIVE_LOCK_WAIT;
        let mut pause = Duration::from_micros(20);
        loop {
            match live.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    let _ = dir_file.unlock();
                    return Err(Error::Locked {
                        dir: dir.to_path_buf(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
        Ok(WriterLock {
            dir: dir_file,
            live,
        })
    }

    /// Unlocks both, the liveness lock first. An unlock that fails leaves that lock to the
    /// descriptor's close.
    fn release(&self) {
        let _ = self.live.unlock();
        let _ = self.dir.unlock();
    }
}

/// How long [`WriterLock::take`] waits for `LOCK` once it holds the directory's lock: far
/// longer than any probe holds it (microseconds).
const LIVE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens (creating it) `LOCK` in the log directory `dir`, never through a symbolic link
/// (a writer would create or lock its target, wherever that is) and only a regular file (a
/// FIFO would be locked by the writer yet passed over by readers' probes).
fn open_lock_file(dir: &File, path: &Path) -> Result<File> {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let refused = |what: &str| {
        let why = format!("is {what}; the lock file must be a regular file");
        Error::io("open lock file", path, std::io::Error::other(why))
    };
    let fd = match rustix::fs::openat(dir, LOCK_FILE, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(refused("a symbolic link")),
        Err(e) => return Err(Error::io("open lock file", path, e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("open lock file", path, e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(File::from(fd)),
        FileType::Directory => Err(refused("a directory")),
        other => Err(refused(crate::segment::what_instead_of_a_directory(other))),
    }
}

/// Whether a writer holds the lock of the log directory `dir` right now: a shared lock on
/// `LOCK` tried and, if had, released at once (what `verify` and queries ask before passing
/// over a segment being created). A writer in this process counts too: its lock is another
/// open file description. A writer that opens meanwhile waits for the probe to let go
/// ([`WriterLock`]); it does not fail.
pub(crate) fn writer_is_live(dir: &Path) -> bool {
    match crate::segment::open_regular(&dir.join(LOCK_FILE)) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                // Explicitly: a child forked meanwhile holds a copy of the descriptor.
                let _ = f.unlock();
                false
            }
            Err(e) => matches!(e, fs::TryLockError::WouldBlock),
        },
        Err(_) => false,
    }
}

/// Refuses an org entry `dir` that exists and is not a directory itself
/// ([`Error::OrgDirUnusable`]): a symbolic link would send the org's evidence to wherever
/// it points (or read it from there), where `verify` (which does not follow links) never
/// looks. A missing entry is no org yet (a writer creates it with the first segment).
pub(crate) fn check_org_dir(dir: &Path, org: &OrgId) -> Result<()> {
    use rustix::fs::FileType;
    match rustix::fs::lstat(dir) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Ok(()),
            other => Err(Error::OrgDirUnusable {
                org: org.to_string(),
                path: dir.to_path_buf(),
                found: crate::segment::what_instead_of_a_directory(other),
            }),
        },
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::io("examine org directory", dir, e.into())),
    }
}

/// Seals a damaged segment: read-only (0444), the change fsynced. Best effort, and nothing
/// to do for one sealed already: what keeps the file from being written again is that its
/// continuation takes the month's appends (recovery also examines a file whose mode says it
/// is sealed without opening it for writing).
fn seal(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Not through a symbolic link: that would make a file outside the log read-only.
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    if recover::is_sealed(&meta) {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o444))
        .and_then(|()| File::open(path))
        .and_then(|f| f.sync_all());
}

fn read_header(path: &Path) -> Result<(SegmentHeader, crate::crypto::Hash)> {
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let f = crate::segment::open_regular(path).map_err(|e| Error::io("open segment", path, e))?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let h = SegmentHeader::decode(&buf).map_err(|source| Error::decode(path, None, source))?;
    Ok((h, crate::crypto::sha256(&buf)))
}

/// The link to a segment that takes no more appends: its valid records and chain head.
/// The file is fsynced first: a link must name only durable records, and a process that
/// died without a crash of the machine may have left the last ones in the page cache only.
fn frozen_link(path: &Path, id: SegmentId, interval: u32) -> Result<SegmentLink> {
    let (header, genesis) = read_header(path)?;
    let file =
        crate::segment::open_regular(path).map_err(|e| Error::io("open segment", path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fsync segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    let start = SEGMENT_HEADER_LEN as u64;
    let tally = Tally {
        head: genesis,
        next_seq: header.first_seq,
        count: 0,
        valid_end: start,
        max_seq: None,
        index: IndexBuilder::new(interval, path.parent().unwrap_or(Path::new("."))),
    };
    // Only the count and the head are used: no index is written from this scan.
    let outcome = scan::scan(&mut FileWindow::new(file, len), start, tally, None)
        .map_err(|e| Error::io("read segment", path, e))?;
    Ok(SegmentLink {
        segment: id,
        count: outcome.tally.count,
        head: outcome.tally.head,
    })
}

/// The catalog of `org`'s segments in `dir`, from their file names and headers.
fn load_catalog(dir: &Path, org: &OrgId) -> Result<OrgSegments> {
    let mut segs = OrgSegments {
        listed: true,
        ..OrgSegments::default()
    };
    // Segments whose header is unreadable, and those a readable `prev` link names (whose
    // ordinal is then one below the linking segment's, so not past the tail).
    let mut unreadable = Vec::new();
    let mut named = std::collections::HashSet::new();
    for id in list_segments(dir)? {
        let latest = segs.latest.entry(id.month).or_insert(id);
        if id.part > latest.part {
            *latest = id;
        }
        let path = dir.join(segment_file_name(id));
        match read_header(&path) {
            // A header naming another org or segment (a copy, a renamed or planted file) is
            // read as recovery reads it: not this segment's. Its ordinal and links say
            // nothing of this org's segments, and believing them let a planted file make
            // recovery cut no torn tail, or seal and continue a sound segment (a link
            // counting more records than it holds).
            Ok((h, _)) if h.org == *org && h.id == id => {
                if segs.tail.is_none_or(|(o, _)| h.ordinal >= o) {
                    segs.tail = Some((h.ordinal, id));
                }
                if let Some(prev) = &h.prev {
                    named.insert(prev.segment);
                }
                segs.note_links(&h);
            }
            // A header that fails its checks or names another segment; not one shorter than
            // a header (a crash while creating it: recovery moves it aside and it never had
            // an ordinal on disk).
            Ok(_) | Err(Error::Corrupt { .. }) => unreadable.push(id),
            // A segment that is a symbolic link (never followed) or that this process may
            // not read hides its header as well: its recovery fails, but it may hold an
            // ordinal past the tail's, which a new segment of another month must not take
            // (a review found March numbered like a linked February). Not anything else
            // under a segment's name (a directory, a FIFO): never a segment.
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    || fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                unreadable.push(id);
            }
            // A failure to read a header (`EMFILE`, `EIO`) leaves the catalog unknown, not
            // without that segment: its ordinal and links count. Not anything but a regular
            // file under a segment's name (refused as such), a file gone since the listing,
            // or one shorter than a header.
            Err(Error::Io { source, op, path })
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::InvalidInput
                        | std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(Error::Io { source, op, path });
            }
            // Not anything else (a header of a newer format is its month's refusal).
            Err(_) => {}
        }
    }
    let unplaced = unreadable.iter().filter(|id| !named.contains(*id)).count();
    segs.unplaced = u32::try_from(unplaced).unwrap_or(u32::MAX);
    Ok(segs)
}

#[cfg(test)]
thread_local! {
    /// Tests: listing an org directory on this thread fails with EMFILE.
    static TEST_FAIL_LIST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Org directories in a log directory, sorted.
pub(crate) fn list_orgs(dir: &Path) -> Result<Vec<OrgId>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io("list log directory", dir, e))?;
        if e.file_type().is_ok_and(|t| t.is_dir())
            && let Some(org) = e.file_name().to_str().and_then(|n| OrgId::new(n).ok())
        {
            out.push(org);
        }
    }
    out.sort();
    Ok(out)
}

/// Segment ids in an org directory, sorted by (month, part). Missing directory: none.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentId>> {
    #[cfg(test)]
    if TEST_FAIL_LIST.with(std::cell::Cell::get) {
        return Err(Error::io(
            "list org directory",
            dir,
            std::io::Error::from_raw_os_error(24),
        ));
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list org directory", dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("list org directory", dir, e))?;
        if let Some(id) = e.file_name().to_str().and_then(parse_segment_file_name) {
            out.push(id);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod provider_panics;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::crypto::Keyring;
    use crate::workload::{Workload, WorkloadConfig};

    /// Issue #2: whatever asks for a month's writer (an append, recovery at open, the prev
    /// link of a new segment) gets the one open writer; a second call must not recover the
    /// file again and replace it with a second writer on the same file.
    #[test]
    fn open_writer_returns_the_open_writer() {
        let dir = tempfile::tempdir().unwrap();
        let org_id = OrgId::new("org-000").unwrap();
        let ring = Keyring::in_memory();
        ring.rotate(&org_id).unwrap();
        let log = Log::open(dir.path(), Options::new(Arc::new(ring))).unwrap();
        let event = Workload::new(WorkloadConfig {
            events: 1,
            orgs: 1,
            ..WorkloadConfig::default()
        })
        .next()
        .unwrap();
        let month = event.occurred_at.month().unwrap();
        log.append(&event).unwrap();
        assert_eq!(log.open_writers(), 1);

        let org = log.inner.org(&org_id);
        let mut segs = org.segs.lock();
        let open = segs.writers.get(&month).cloned().unwrap();
        let again = log.inner.open_writer(&org, &mut segs, month).unwrap();
        assert!(Arc::ptr_eq(&open, &again), "a second writer on {month}");
        assert!(Arc::ptr_eq(&open, segs.writers.get(&month).unwrap()));
        let linked = log.inner.tail_link(&org, &mut segs).unwrap().unwrap();
        assert_eq!(linked.segment, open.id());
        assert!(Arc::ptr_eq(&open, segs.writers.get(&month).unwrap()));
        // Through the waiting path used by appends and recovery too.
        let via = log.inner.writer_in(&org, &mut segs, month).unwrap();
        assert!(Arc::ptr_eq(&open, &via));
        assert_eq!(segs.writers.len(), 1);
        drop((segs, open, again, via));
        assert_eq!(log.open_writers(), 1);
        log.append(&event).unwrap();
        log.close().unwrap();
    }
    /// Review finding 1: a batch with events for a month whose writer a failed write or
    /// fsync poisoned fails as a whole before anything is framed, like a batch with a
    /// frozen month: the other months' writers buffer nothing of it (no receipts were
    /// given, so nothing of it may later reach the disk and consume seqs).
    #[test]
    fn a_batch_touching_a_poisoned_writer_buffers_nothing_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new(org_000_keys()).durability(Durability::Never);
        let log = Log::open(dir.path(), opts).unwrap();
        let (jan, feb) = (Month::new(2026, 1).unwrap(), Month::new(2026, 2).unwrap());
        log.append_batch(&[event_in(jan, 1), event_in(feb, 1)])
            .unwrap();
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let (w_jan, w_feb) = {
            let segs = org.segs.lock();
            (segs.writers[&jan].clone(), segs.writers[&feb].clone())
        };
        w_feb.fail_for_test();
        let before = w_jan.snapshot();
        let r = log.append_batch(&[event_in(jan, 2), event_in(feb, 2)]);
        let e = r.unwrap_err();
        assert!(matches!(e.unbatched(), Error::WriterFailed { .. }), "{e:?}");
        let after = w_jan.snapshot();
        assert_eq!(
            (after.count, after.end),
            (before.count, before.end),
            "January buffered the events of a batch that failed"
        );
        // January alone still takes appends.
        assert_eq!(log.append(&event_in(jan, 3)).unwrap().seq, 1);
        drop((w_jan, w_feb));
        assert!(log.close().is_err(), "close reports the poisoned writer");
    }

    /// The writer of org-000's `month`, opened if need be (a reference: not idle).
    fn writer_of(log: &Log, month: Month) -> Arc<SegmentWriter> {
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        log.inner.writer(&org, month).unwrap()
    }

    /// Descriptors of this process open on `path` (`/proc/self/fd`).
    fn fds_on(path: &Path) -> usize {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    /// Concurrency review: writers poisoned by a failed write or fsync were never retired:
    /// they kept their descriptor and counted toward `max_open_writers` until the log was
    /// reopened. Now retirement closes them (first), and their months keep refusing appends
    /// with the same `WriterFailed`, never reopening (recovering) the segment; `sync` and
    /// `close` keep reporting the failure; a new segment whose `prev` link would name a
    /// poisoned segment is refused as while its writer was open. After a reopen everything
    /// acknowledged is there and verifies.
    #[test]
    fn poisoned_writers_are_closed_and_their_months_keep_refusing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        let opts = Options::new(keys.clone())
            .durability(Durability::Always)
            .max_open_writers(2);
        let log = Log::open(dir.path(), opts).unwrap();
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let month = |m| Month::new(2026, m).unwrap();
        let path = |m: u8| dir.path().join(format!("org-000/2026-{m:02}.seg"));
        let mut receipts = log
            .append_batch(&(1..=4).map(|m| event_in(month(m), 0)).collect::<Vec<_>>())
            .unwrap();
        // Months 1-3 poisoned (more than the limit); month 4, the org's tail, healthy.
        for m in 1..=3 {
            writer_of(&log, month(m)).fail_for_test();
        }
        // What each month's appends get while its poisoned writer is open.
        let causes: Vec<String> = (1..=3)
            .map(|m| match log.append(&event_in(month(m), 1)) {
                Err(Error::WriterFailed { cause, .. }) => cause,
                other => panic!("{other:?}"),
            })
            .collect();
        // Fresh months: appends past twice the limit retire writers, poisoned ones first.
        for m in 5..=8 {
            receipts.push(log.append(&event_in(month(m), 0)).unwrap());
        }
        assert!(matches!(log.sync(), Err(Error::WriterFailed { .. })));
        assert!(log.open_writers() <= 2, "{} open", log.open_writers());
        {
            let segs = org.segs.lock();
            assert_eq!(
                segs.writers.len() + segs.closing.len(),
                log.open_writers(),
                "the count is exact"
            );
            for m in 1..=3 {
                assert!(segs.failed.contains_key(&month(m)), "{m} not retired");
                assert!(!segs.writers.contains_key(&month(m)));
            }
        }
        for m in 1..=3 {
            assert_eq!(fds_on(&path(m)), 0, "month {m}'s descriptor is open");
        }
        let lens: Vec<u64> = (1..=3)
            .map(|m| fs::metadata(path(m)).unwrap().len())
            .collect();
        let open = log.open_writers();
        for (m, cause) in (1..=3).zip(&causes) {
            match log.append(&event_in(month(m), 2)) {
                Err(Error::WriterFailed { cause: c, .. }) => assert_eq!(&c, cause),
                other => panic!("month {m}: {other:?}"),
            }
            let batch = log.append_batch(&[event_in(month(8), 9), event_in(month(m), 3)]);
            let e = batch.unwrap_err();
            assert!(matches!(e.unbatched(), Error::WriterFailed { .. }), "{e:?}");
        }
        assert_eq!(log.open_writers(), open, "a refused append opened a writer");
        assert_eq!(
            lens,
            (1..=3)
                .map(|m| fs::metadata(path(m)).unwrap().len())
                .collect::<Vec<_>>()
        );
        assert!(
            log.recovery_report().is_empty(),
            "a poisoned segment was recovered: {:?}",
            log.recovery_report()
        );
        assert!(matches!(log.sync(), Err(Error::WriterFailed { .. })));
        // The org's tail (month 8) poisoned and closed: a new month would link to it.
        writer_of(&log, month(8)).fail_for_test();
        {
            let _retiring = log.inner.retiring.lock();
            log.inner.retire_locked(0);
        }
        assert_eq!(log.open_writers(), 0);
        assert_eq!(fds_on(&path(8)), 0);
        assert!(matches!(
            log.append(&event_in(month(9), 0)),
            Err(Error::WriterFailed { .. })
        ));
        assert!(!path(9).exists(), "a segment linked to a poisoned one");
        assert!(matches!(log.close(), Err(Error::WriterFailed { .. })));

        let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
        for m in [1, 8, 9] {
            receipts.push(log.append(&event_in(month(m), 10)).unwrap());
        }
        let read: Vec<_> = log
            .scan(&OrgId::new("org-000").unwrap())
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        for r in &receipts {
            assert!(
                read.iter()
                    .any(|v| v.month == r.month && v.seq == r.seq && v.hash == r.hash),
                "{r:?} lost"
            );
        }
        log.close().unwrap();
        let report = crate::verify::verify(dir.path(), Some(&*keys), &Default::default()).unwrap();
        assert!(report.is_intact(), "{}", report.summary());
    }

    /// A parked state poisoned through a reference to its writer that outlived the park is
    /// not reopened, let alone recovered when its file changed meanwhile (the recovered
    /// writer took appends again): its month refuses with the same error, its state is
    /// dropped from the parking budget, and `sync` reports the failure.
    #[test]
    fn a_poisoned_parked_state_is_never_reopened() {
        let (dir, jan, log) = january_parked();
        let open = log.open_writers();
        closed_of(&log, jan, |c| c.parked.as_ref().unwrap().fail_for_test()).unwrap();
        let seg = dir.path().join("org-000/2026-01.seg");
        let f = File::options().write(true).open(&seg).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        let first = log.append(&event_in(jan, 50));
        assert!(
            matches!(first, Err(Error::WriterFailed { .. })),
            "{first:?}"
        );
        assert!(
            log.recovery_report().is_empty(),
            "{:?}",
            log.recovery_report()
        );
        assert_eq!(closed_of(&log, jan, |_| ()), None);
        assert_eq!(log.inner.parked_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(log.open_writers(), open);
        assert!(matches!(log.sync(), Err(Error::WriterFailed { .. })));
        let again = log.append(&event_in(jan, 51));
        assert_eq!(format!("{again:?}"), format!("{first:?}"));
        assert_eq!(
            log.append(&event_in(Month::new(2026, 2).unwrap(), 50))
                .unwrap()
                .seq,
            3
        );
        assert!(matches!(log.close(), Err(Error::WriterFailed { .. })));
    }

    /// Under `Never` a full buffer is handed to the flusher, which writes it without a
    /// `sync`, while the appender goes on; and a writer whose flusher is behind (here: not
    /// running) never buffers past `NEVER_INLINE_LIMIT`: its appender writes it itself.
    #[test]
    fn never_hands_a_full_buffer_to_the_os_without_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        let opts = Options::new(keys.clone()).durability(Durability::Never);
        let log = Log::open(dir.path(), opts).unwrap();
        let jan = Month::new(2026, 1).unwrap();
        let path = log.segment_path(
            &OrgId::new("org-000").unwrap(),
            SegmentId {
                month: jan,
                part: 0,
            },
        );
        let writer = || {
            let org = log.inner.org(&OrgId::new("org-000").unwrap());
            org.segs.lock().writers[&jan].clone()
        };
        let mut n = 1;
        log.append(&event_in(jan, n)).unwrap();
        while writer().snapshot().end < NEVER_BUFFER_LIMIT as u64 {
            n += 1;
            log.append(&event_in(jan, n)).unwrap();
        }
        // The flusher writes it on its own thread: wait for the bytes (no fixed delay; the
        // deadline only keeps a broken build from hanging).
        let deadline = Instant::now() + Duration::from_secs(60);
        while fs::metadata(&path).unwrap().len() < NEVER_BUFFER_LIMIT as u64 {
            assert!(
                Instant::now() < deadline,
                "the full buffer never reached the file"
            );
            std::thread::sleep(Duration::from_millis(1));
        }

        // The flusher stopped: appends go on, and write their buffer themselves.
        log.inner.flusher_running.store(false, Ordering::Release);
        let w = writer();
        let on_disk = fs::metadata(&path).unwrap().len();
        while w.snapshot().end < on_disk + NEVER_BUFFER_LIMIT as u64 {
            n += 1;
            log.append(&event_in(jan, n)).unwrap();
        }
        assert!(
            fs::metadata(&path).unwrap().len() > on_disk,
            "an appender without a flusher left its full buffer in memory"
        );
        drop(w);
        log.close().unwrap();
        let report = crate::verify::verify(dir.path(), Some(&*keys), &Default::default()).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.records, n as u64);
    }

    /// The flusher's tick (index writes, retirement) runs on time however busy handing
    /// `Never` buffers to the OS keeps it: here the flusher finds its writeback queue
    /// non-empty every time it looks, and its tick must still write the segment's index.
    #[test]
    fn the_flusher_ticks_while_writeback_keeps_it_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(org_000_keys()).durability(Durability::Never);
        opts.index_flush_bytes = MIN_INDEX_FLUSH_BYTES;
        let log = Log::open(dir.path(), opts).unwrap();
        let jan = Month::new(2026, 1).unwrap();
        for n in 1..=20 {
            log.append(&event_in(jan, n)).unwrap();
        }
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let w = org.segs.lock().writers[&jan].clone();
        assert!(w.unindexed_bytes() >= MIN_INDEX_FLUSH_BYTES);
        let index = org.dir.join(crate::segment::index_file_name(SegmentId {
            month: jan,
            part: 0,
        }));
        assert!(!index.exists());
        log.inner.requeue_for_test.store(true, Ordering::Relaxed);
        log.inner.queue_writeback(&w);
        drop(w);
        // No fixed delay: the deadline only keeps a broken build from hanging.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !index.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            index.exists(),
            "no tick ran while the writeback queue stayed busy"
        );
        log.inner.requeue_for_test.store(false, Ordering::Relaxed);
        log.close().unwrap();
    }

    /// Writers waiting in the flusher's writeback queue are still idle to retirement: a
    /// `sync` with no appender running ends with at most `max_open_writers` open, whatever
    /// the queue holds (here the flusher is kept from taking it).
    #[test]
    fn queued_writers_do_not_keep_sync_from_retiring_them() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new(org_000_keys())
            .durability(Durability::Never)
            .max_open_writers(1);
        let log = Log::open(dir.path(), opts).unwrap();
        let (jan, feb) = (Month::new(2026, 1).unwrap(), Month::new(2026, 2).unwrap());
        log.append_batch(&[event_in(jan, 1), event_in(feb, 1)])
            .unwrap();
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        {
            // The flusher looks at its queue only with `stop` held.
            let _flusher_kept_out = log.inner.stop.lock();
            for m in [jan, feb] {
                let w = org.segs.lock().writers[&m].clone();
                // What `queue_writeback` queues (it would wait for `stop` to wake the flusher).
                log.inner.writeback.lock().push(Arc::downgrade(&w));
            }
            log.sync().unwrap();
            assert_eq!(log.inner.open_writers.load(Ordering::Relaxed), 1);
        }
        log.close().unwrap();
    }

    /// The creation ordinal in the header of the segment at `path`.
    fn ordinal_of(path: &Path) -> u32 {
        let bytes = fs::read(path).unwrap();
        SegmentHeader::decode(bytes.get(..256).unwrap())
            .unwrap()
            .ordinal
    }

    /// An event of org-000 in `month` (day 1 plus `n` seconds).
    fn event_in(month: Month, n: i64) -> Event {
        let mut e = Workload::new(WorkloadConfig {
            events: 1,
            orgs: 1,
            seed: n as u64,
            ..WorkloadConfig::default()
        })
        .next()
        .unwrap();
        e.occurred_at = Timestamp(month.start().micros() + n * 1_000_000);
        e
    }

    /// The closed entry of `month`'s latest segment of org-000, if its writer is closed.
    fn closed_of<R>(log: &Log, month: Month, f: impl FnOnce(&ClosedSegment) -> R) -> Option<R> {
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let segs = org.segs.lock();
        let id = segs.latest.get(&month)?;
        segs.closed.get(id).map(f)
    }

    /// A log under `Never` with one writer allowed open, so that `alternate` parks.
    fn parking_log(dir: &Path, keys: Arc<dyn KeyProvider>) -> Log {
        let opts = Options::new(keys)
            .durability(Durability::Never)
            .max_open_writers(1);
        Log::open(dir, opts).unwrap()
    }

    /// A `parking_log` in a new directory after `alternate(3)`: January's writer parked.
    fn january_parked() -> (tempfile::TempDir, Month, Log) {
        let dir = tempfile::tempdir().unwrap();
        let log = parking_log(dir.path(), org_000_keys());
        alternate(&log, 3);
        (dir, Month::new(2026, 1).unwrap(), log)
    }

    fn org_000_keys() -> Arc<Keyring> {
        let ring = Keyring::in_memory();
        ring.rotate(&OrgId::new("org-000").unwrap()).unwrap();
        Arc::new(ring)
    }

    /// Review finding: under `Never` a scan and the stats missed appends that had returned
    /// (0 of 3, while a query saw all 3): records still in the writer's buffer were not
    /// handed to the OS first, as a query hands them.
    #[test]
    fn scan_and_stats_see_every_append_that_returned_under_never() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgId::new("org-000").unwrap();
        let opts = Options::new(org_000_keys()).durability(Durability::Never);
        let log = Log::open(dir.path(), opts).unwrap();
        let events: Vec<Event> = Workload::new(WorkloadConfig {
            events: 3,
            orgs: 1,
            ..WorkloadConfig::default()
        })
        .collect();
        for e in &events {
            log.append(e).unwrap();
        }
        let scanned: Vec<_> = log.scan(&org).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(scanned.len(), 3);
        let stats = log.stats().unwrap();
        assert_eq!(stats.iter().map(|m| m.events).sum::<u64>(), 3);
        log.close().unwrap();
    }

    /// Issue #2 (retirement thrash with more active months than `max_open_writers`): a
    /// retired writer is parked, not closed: under `Never` nothing is fsynced or indexed
    /// when it is retired, and reopening it reads nothing (a reopen through recovery would
    /// find no index and report `IndexRebuilt`). `Log::sync` fsyncs what was parked;
    /// `Log::close` writes every index, so the next open has nothing to repair.
    #[test]
    fn retired_writers_are_parked_and_reopen_without_reading_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let jan = Month::new(2026, 1).unwrap();
        let keys = org_000_keys();
        let opts = || Options::new(keys.clone()).durability(Durability::Never);
        let log = Log::open(dir.path(), opts().max_open_writers(1)).unwrap();
        let receipts = alternate(&log, 20);
        assert_eq!(log.open_writers(), 1);
        // January was retired last, after February's append: parked, not fsynced, no index.
        assert_eq!(
            closed_of(&log, jan, |c| c
                .parked
                .as_ref()
                .map(|p| (p.is_durable(), p.index_is_current()))),
            Some(Some((false, false)))
        );
        assert!(!dir.path().join("org-000/2026-01.idx").exists());
        assert!(
            log.recovery_report().is_empty(),
            "{:?}",
            log.recovery_report()
        );
        for (i, r) in receipts.iter().enumerate() {
            assert_eq!(r.seq, (i / 2) as u64, "{r:?}");
        }

        log.sync().unwrap();
        assert_eq!(
            closed_of(&log, jan, |c| c.parked.as_ref().map(|p| p.is_durable())),
            Some(Some(true))
        );
        log.close().unwrap();
        for month in ["2026-01", "2026-02"] {
            assert!(dir.path().join(format!("org-000/{month}.idx")).exists());
        }

        let log = Log::open(dir.path(), opts()).unwrap();
        assert!(
            log.recovery_report().is_empty(),
            "{:?}",
            log.recovery_report()
        );
        let r = log.append(&event_in(jan, 99)).unwrap();
        assert_eq!(r.seq, 20);
        log.close().unwrap();
        let keys: &dyn KeyProvider = &*keys;
        let report = crate::verify::verify(
            dir.path(),
            Some(keys),
            &crate::verify::VerifyOptions::default(),
        )
        .unwrap();
        assert!(report.is_intact(), "{}", report.summary());
    }

    /// Appends one event to each of January and February, `rounds` times, with a
    /// retirement down to one writer after each append (as the flusher's tick does):
    /// January ends parked (or closed).
    fn alternate(log: &Log, rounds: i64) -> Vec<Receipt> {
        let mut receipts = Vec::new();
        for round in 0..rounds {
            for month in [Month::new(2026, 1).unwrap(), Month::new(2026, 2).unwrap()] {
                receipts.push(log.append(&event_in(month, round)).unwrap());
                let _retiring = log.inner.retiring.lock();
                log.inner.retire_locked(1);
            }
        }
        receipts
    }

    /// Past twice `max_open_writers`, an append closes a quarter of the limit's worth of
    /// writers, not one: closing one would make every further append pay for a pass over
    /// all writers. (The flusher's tick, which would close down to the limit, never comes.)
    #[test]
    fn an_append_past_twice_the_limit_closes_a_quarter_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path(),
            Options::new(org_000_keys())
                .durability(Durability::Interval(Duration::from_secs(3600)))
                .max_open_writers(4),
        )
        .unwrap();
        for m in 1..=8 {
            log.append(&event_in(Month::new(2025, m).unwrap(), 0))
                .unwrap();
            assert_eq!(log.open_writers(), usize::from(m));
        }
        log.append(&event_in(Month::new(2025, 9).unwrap(), 0))
            .unwrap();
        assert_eq!(log.open_writers(), 7);
        log.sync().unwrap();
        assert_eq!(log.open_writers(), 4);
        log.close().unwrap();
    }

    /// A parked writer's state describes its file as it left it. If anything writes the
    /// file meanwhile, the state is stale: the month must be recovered from the file (here,
    /// the bytes added are quarantined as a torn tail) and not resumed over them.
    #[test]
    fn a_parked_segment_changed_meanwhile_is_recovered_not_resumed() {
        let (dir, jan, log) = january_parked();
        assert_eq!(closed_of(&log, jan, |c| c.parked.is_some()), Some(true));
        let path = dir.path().join("org-000/2026-01.seg");
        let len = fs::metadata(&path).unwrap().len();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, &[0xab; 10]).unwrap();
        drop(f);

        let r = log.append(&event_in(jan, 50)).unwrap();
        assert_eq!(r.seq, 3);
        let report = log.recovery_report();
        assert!(
            report.iter().any(|a| matches!(
                a,
                RecoveryAction::TornTailQuarantined { offset, len: 10, .. } if *offset == len
            )),
            "{report:?}"
        );
        log.close().unwrap();
    }

    /// January's segment after `alternate`: bytes fsynced and bytes written, whether its
    /// writer is open, parked or closed fully (then all fsynced).
    fn january(log: &Log) -> (u64, u64) {
        let jan = Month::new(2026, 1).unwrap();
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let segs = org.segs.lock();
        assert!(segs.closing.is_empty(), "a writer stranded in `closing`");
        if let Some(w) = segs.writers.get(&jan) {
            return (w.durable_len(), w.snapshot().end);
        }
        let closed = &segs.closed[segs.latest.get(&jan).unwrap()];
        closed
            .parked
            .as_ref()
            .map_or((1, 0), Parked::durable_of_written)
    }

    fn january_is_durable(log: &Log) -> bool {
        let (durable, written) = january(log);
        durable >= written
    }

    /// `Log::sync` must fsync every record appended before the call, also one in a writer
    /// parked under `Never` that an appender reopens while the sync runs (then it is no
    /// longer parked, and must be found among the open writers). The sleep only makes that
    /// interleaving likely; the assertion holds in every interleaving.
    #[test]
    fn sync_covers_a_parked_writer_reopened_while_it_runs() {
        let (_dir, jan, log) = january_parked();
        assert!(!january_is_durable(&log));
        let before_call = january(&log).1;
        std::thread::scope(|s| {
            let retiring = log.inner.retiring.lock();
            let sync = s.spawn(|| log.sync());
            std::thread::sleep(Duration::from_millis(50));
            log.append(&event_in(jan, 50)).unwrap();
            drop(retiring);
            sync.join().unwrap().unwrap();
        });
        // The record appended after the call may be unsynced; the three before it are not.
        let (durable, _) = january(&log);
        assert!(
            durable >= before_call,
            "{durable} of {before_call} bytes fsynced"
        );
        log.close().unwrap();
    }

    /// A parked writer whose file cannot be opened stays parked (nothing forgotten): the
    /// later `sync` and `close` still fsync it and write its index. One whose file was
    /// changed meanwhile (here only its mtime) is recovered by them, fsync included.
    #[test]
    fn a_parked_writer_that_cannot_be_reopened_is_not_forgotten() {
        let (dir, jan, log) = january_parked();
        let seg = dir.path().join("org-000/2026-01.seg");
        let aside = dir.path().join("aside");
        fs::rename(&seg, &aside).unwrap();
        assert!(matches!(
            log.append(&event_in(jan, 50)),
            Err(Error::Io { .. })
        ));
        fs::rename(&aside, &seg).unwrap();
        assert_eq!(closed_of(&log, jan, |c| c.parked.is_some()), Some(true));
        // Touched: the parked state no longer describes the file.
        let f = File::options().write(true).open(&seg).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        log.sync().unwrap();
        assert!(january_is_durable(&log));
        assert!(
            log.recovery_report()
                .iter()
                .any(|a| matches!(a, RecoveryAction::IndexRebuilt { .. })),
            "{:?}",
            log.recovery_report()
        );
        log.close().unwrap();
        assert!(dir.path().join("org-000/2026-01.idx").exists());
    }

    /// A key provider that can be told to fail.
    struct FailingKeys {
        inner: Arc<Keyring>,
        fail: AtomicBool,
    }

    impl KeyProvider for FailingKeys {
        fn signing_key(
            &self,
            org: &OrgId,
        ) -> std::result::Result<(crate::KeyId, crate::Key), crate::KeyError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(crate::KeyError::NoSigningKey {
                    org: org.to_string(),
                });
            }
            self.inner.signing_key(org)
        }

        fn key(
            &self,
            org: &OrgId,
            id: crate::KeyId,
        ) -> std::result::Result<Option<crate::Key>, crate::KeyError> {
            self.inner.key(org, id)
        }
    }

    /// `Log::close` with a key provider that fails: the indexes cannot be written, and
    /// `close` says so, but every byte is fsynced all the same and no writer is left
    /// stranded between closing and closed.
    #[test]
    fn a_failing_key_provider_at_close_still_gets_everything_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(FailingKeys {
            inner: org_000_keys(),
            fail: AtomicBool::new(false),
        });
        let log = parking_log(dir.path(), keys.clone());
        alternate(&log, 3);
        assert!(!january_is_durable(&log));
        keys.fail.store(true, Ordering::SeqCst);
        assert!(matches!(log.shutdown(), Err(Error::Key { .. })));
        assert!(january_is_durable(&log));
        let org = log.inner.org(&OrgId::new("org-000").unwrap());
        let segs = org.segs.lock();
        for w in segs.writers.values() {
            assert!(w.durable_len() >= w.snapshot().end, "{w:?} not fsynced");
        }
    }

    /// A writer whose index has spilled to files (which hold descriptors) is not parked: it
    /// is closed fully, fsynced with its index written, as before parking existed.
    #[test]
    fn a_writer_with_spilled_index_is_closed_fully() {
        scan::TEST_SPILL_LIMIT.with(|l| l.set(Some(1)));
        let dir = tempfile::tempdir().unwrap();
        let jan = Month::new(2026, 1).unwrap();
        let log = parking_log(dir.path(), org_000_keys());
        // Enough records for a few closed blocks, spilled at once.
        alternate(&log, 40);
        scan::TEST_SPILL_LIMIT.with(|l| l.set(None));
        assert_eq!(closed_of(&log, jan, |c| c.parked.is_some()), Some(false));
        assert!(dir.path().join("org-000/2026-01.idx").exists());
        assert_eq!(log.append(&event_in(jan, 99)).unwrap().seq, 40);
        assert!(
            log.recovery_report().is_empty(),
            "{:?}",
            log.recovery_report()
        );
        log.close().unwrap();
    }

    /// `close` releases the directory's lock itself: a copy of the lock file's descriptor
    /// left open elsewhere (as in a child process forked by another thread, until it
    /// execs) does not keep the directory locked after `close`.
    #[test]
    fn close_releases_the_lock_even_with_a_copy_of_its_descriptor_open() {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
        let lock = log.inner.lock.as_ref().unwrap();
        let copies = [
            lock.dir.try_clone().unwrap(),
            lock.live.try_clone().unwrap(),
        ];
        log.close().unwrap();
        Log::open(dir.path(), Options::new(keys))
            .unwrap()
            .close()
            .unwrap();
        drop(copies);
    }

    /// An empty log, opened and closed once (its `LOCK` exists), and its keys.
    fn closed_log() -> (tempfile::TempDir, Arc<Keyring>) {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        Log::open(dir.path(), Options::new(keys.clone()))
            .unwrap()
            .close()
            .unwrap();
        (dir, keys)
    }

    /// Readers probe for a live writer (`writer_is_live`, run by `verify` and by queries
    /// that meet a short segment) with a shared lock taken and released at once. A writer
    /// opening at that instant used to fail with `Locked`: with a probe running in a loop,
    /// no run of these 300 opens got through without one. Now it waits for the probe, and
    /// `Locked` still means a second writer, probes or not.
    #[test]
    fn a_probe_for_a_live_writer_never_locks_a_writer_out() {
        let (dir, keys) = closed_log();
        let stop = AtomicBool::new(false);
        let probes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    writer_is_live(dir.path());
                    probes.fetch_add(1, Ordering::Relaxed);
                }
            });
            let opened = (0..300)
                .map(|_| Log::open(dir.path(), Options::new(keys.clone())))
                .map(|log| {
                    let log = log?;
                    let locked_out = matches!(
                        Log::open(dir.path(), Options::new(keys.clone())),
                        Err(Error::Locked { .. })
                    );
                    let live = writer_is_live(dir.path());
                    log.close()?;
                    Ok((locked_out, live))
                })
                .collect::<Result<Vec<_>>>();
            stop.store(true, Ordering::Relaxed);
            let opened = opened.unwrap();
            assert!(opened.iter().all(|&(locked_out, live)| locked_out && live));
        });
        assert!(probes.load(Ordering::Relaxed) > 0);
        assert!(!writer_is_live(dir.path()));
    }

    /// Review finding: an org directory that could not be listed (`EMFILE`, `EIO`) when the
    /// log first read its catalog was taken for an org without segments, for the life of
    /// the `Log`: a new month was numbered 0 with no `prev` link beside the org's segments
    /// (`verify`: `link_mismatch`), and an append to an existing month failed for good with
    /// "File exists". The failure is reported, and the listing is read again before any
    /// writer opens.
    #[test]
    fn an_org_directory_that_cannot_be_listed_is_not_taken_for_empty() {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        let month = |m| Month::new(2026, m).unwrap();
        let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
        log.append(&event_in(month(1), 0)).unwrap();
        log.append(&event_in(month(2), 0)).unwrap();
        log.close().unwrap();
        let org_dir = dir.path().join("org-000");
        let failing = |on| TEST_FAIL_LIST.with(|f| f.set(on));
        failing(true);
        let log = Log::open(dir.path(), Options::new(keys.clone()));
        failing(false);
        let log = log.unwrap();
        assert!(
            log.recovery_report().iter().any(|a| matches!(a,
                RecoveryAction::RecoveryFailed { file, error }
                    if *file == org_dir && error.contains("list org directory"))),
            "{:#?}",
            log.recovery_report()
        );
        failing(true);
        let refused = log.append(&event_in(month(4), 0));
        failing(false);
        assert!(
            matches!(
                refused,
                Err(Error::Io {
                    op: "list org directory",
                    ..
                })
            ),
            "{refused:?}"
        );
        assert!(!org_dir.join("2026-04.seg").exists());
        log.append(&event_in(month(4), 0)).unwrap();
        log.append(&event_in(month(1), 1)).unwrap();
        log.close().unwrap();
        let ordinal = |name: &str| ordinal_of(&org_dir.join(name));
        assert_eq!(
            [
                ordinal("2026-01.seg"),
                ordinal("2026-02.seg"),
                ordinal("2026-04.seg")
            ],
            [0, 1, 2]
        );
        let report = crate::verify::verify(dir.path(), Some(&*keys), &Default::default()).unwrap();
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
    }

    /// Review finding: a segment whose header was written and fsynced, but whose directory
    /// fsync failed, stayed on disk while the catalog did not count it, so the next month
    /// created took its ordinal (two segments with one ordinal: `verify` then reports the
    /// org's order as broken). The catalog is read again after a failed creation.
    #[test]
    fn a_segment_whose_creation_failed_keeps_its_ordinal() {
        let dir = tempfile::tempdir().unwrap();
        let keys = org_000_keys();
        let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
        let month = |m| Month::new(2026, m).unwrap();
        log.append(&event_in(month(1), 0)).unwrap();
        crate::segment::TEST_FAIL_FSYNC_DIR.with(|f| f.set(true));
        let failed = log.append(&event_in(month(2), 0));
        crate::segment::TEST_FAIL_FSYNC_DIR.with(|f| f.set(false));
        assert!(
            matches!(
                failed,
                Err(Error::Io {
                    op: "fsync directory",
                    ..
                })
            ),
            "{failed:?}"
        );
        log.append(&event_in(month(3), 0)).unwrap();
        log.append(&event_in(month(2), 1)).unwrap();
        log.close().unwrap();
        let ordinal = |name: &str| ordinal_of(&dir.path().join("org-000").join(name));
        let ordinals = [
            ordinal("2026-01.seg"),
            ordinal("2026-02.seg"),
            ordinal("2026-03.seg"),
        ];
        assert_eq!(ordinals, [0, 1, 2]);
        let report = crate::verify::verify(dir.path(), Some(&*keys), &Default::default()).unwrap();
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
    }

    /// Review findings: `LOCK` held by something that is not a probe (a writer of an older
    /// release, which locked only `LOCK`) made `Log::open` wait for as long as it lasted,
    /// holding the directory's lock meanwhile; a `LOCK` that is a symbolic link was created
    /// or locked wherever it pointed; a FIFO was locked by the writer and passed over by the
    /// probes. Now: `Locked` after a bounded wait, the directory's lock released; the other
    /// two refused, nothing created.
    #[test]
    fn a_lock_file_held_long_or_not_a_regular_file_is_refused() {
        let (dir, keys) = closed_log();
        let lock_path = dir.path().join(LOCK_FILE);
        let old_writer = File::options().write(true).open(&lock_path).unwrap();
        old_writer.lock().unwrap();
        match Log::open(dir.path(), Options::new(keys.clone())) {
            Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
            other => panic!("{other:?}"),
        }
        assert!(writer_is_live(dir.path()));
        drop(old_writer);
        Log::open(dir.path(), Options::new(keys.clone()))
            .unwrap()
            .close()
            .unwrap();

        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        fs::remove_file(&lock_path).unwrap();
        std::os::unix::fs::symlink(&target, &lock_path).unwrap();
        let e = Log::open(dir.path(), Options::new(keys.clone())).unwrap_err();
        assert!(e.to_string().contains("a symbolic link"), "{e}");
        assert!(!target.exists());
        fs::remove_file(&lock_path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &lock_path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = Log::open(dir.path(), Options::new(keys.clone())).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        fs::remove_file(&lock_path).unwrap();
        Log::open(dir.path(), Options::new(keys))
            .unwrap()
            .close()
            .unwrap();
    }

    /// `for_each_at_once` (the settling of `sync` and `close`) works on every item whatever
    /// fails, each exactly once, and returns an error if any failed.
    #[test]
    fn for_each_at_once_tries_every_item_once_and_returns_a_failure() {
        let items: Vec<usize> = (0..100).collect();
        let runs: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
        let failed = |i: usize| Error::Locked {
            dir: PathBuf::from(i.to_string()),
        };
        let r = for_each_at_once(&items, |&i| {
            runs[i].fetch_add(1, Ordering::SeqCst);
            if i % 7 == 3 { Err(failed(i)) } else { Ok(()) }
        });
        assert!(runs.iter().all(|n| n.load(Ordering::SeqCst) == 1));
        match r {
            Err(Error::Locked { dir }) => {
                let i: usize = dir.to_str().unwrap().parse().unwrap();
                assert_eq!(i % 7, 3);
            }
            other => panic!("expected one of the failures, got {other:?}"),
        }
        assert!(for_each_at_once(&items, |_| Ok(())).is_ok());
        assert!(for_each_at_once(&[] as &[usize], |_| unreachable!()).is_ok());
    }

    /// A writer whose index spill failed is closed fully by retirement, and the failure,
    /// which lost nothing, still reaches the application: `Log::close` returns it, as it
    /// does for a writer still open at close. Everything appended is there after reopen.
    #[test]
    fn a_spill_failure_of_a_retired_writer_is_reported_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        scan::TEST_SPILL_LIMIT.with(|l| l.set(Some(1)));
        scan::TEST_SPILL_DIR.with(|d| *d.borrow_mut() = Some(missing.clone()));
        let keys = org_000_keys();
        let log = parking_log(dir.path(), keys.clone());
        let mut receipts = alternate(&log, 40);
        scan::TEST_SPILL_LIMIT.with(|l| l.set(None));
        scan::TEST_SPILL_DIR.with(|d| *d.borrow_mut() = None);
        // A third month retires February's writer too: the one writer left open at close
        // spills without failing, so only retirement can have kept the error.
        let march = Month::new(2026, 3).unwrap();
        receipts.push(log.append(&event_in(march, 0)).unwrap());
        {
            let _retiring = log.inner.retiring.lock();
            log.inner.retire_locked(1);
        }
        // Each was closed fully (a writer with a spill error is not parked).
        for m in [1, 2] {
            let month = Month::new(2026, m).unwrap();
            assert_eq!(closed_of(&log, month, |c| c.parked.is_some()), Some(false));
        }
        match log.close() {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected the spill failure at close, got {other:?}"),
        }
        let log = Log::open(dir.path(), Options::new(keys)).unwrap();
        assert!(
            log.recovery_report().is_empty(),
            "{:?}",
            log.recovery_report()
        );
        let stats = log.stats().unwrap();
        let events: u64 = stats.iter().map(|m| m.events).sum();
        assert_eq!(events, receipts.len() as u64);
        log.close().unwrap();
    }

    /// A key provider whose `signing_key` (or, with `lookup`, `key`) for org `gated` blocks,
    /// once `armed`, until the test releases it, saying when it has begun blocking.
    struct GatedKeys {
        inner: Arc<Keyring>,
        gated: &'static str,
        lookup: bool,
        armed: AtomicBool,
        entered: parking_lot::Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: parking_lot::Mutex<bool>,
        released: Condvar,
    }

    impl KeyProvider for GatedKeys {
        fn signing_key(
            &self,
            org: &OrgId,
        ) -> std::result::Result<(crate::KeyId, crate::Key), crate::KeyError> {
            self.gate(org, false);
            self.inner.signing_key(org)
        }

        fn key(
            &self,
            org: &OrgId,
            id: crate::KeyId,
        ) -> std::result::Result<Option<crate::Key>, crate::KeyError> {
            self.gate(org, true);
            self.inner.key(org, id)
        }
    }

    impl GatedKeys {
        fn new(
            gated: &'static str,
            lookup: bool,
        ) -> (Arc<GatedKeys>, std::sync::mpsc::Receiver<()>) {
            let ring = Keyring::in_memory();
            for o in ["acme", gated] {
                ring.rotate(&OrgId::new(o).unwrap()).unwrap();
            }
            let (tx, rx) = std::sync::mpsc::channel();
            let keys = GatedKeys {
                inner: Arc::new(ring),
                gated,
                lookup,
                armed: AtomicBool::new(false),
                entered: parking_lot::Mutex::new(Some(tx)),
                release: parking_lot::Mutex::new(false),
                released: Condvar::new(),
            };
            (Arc::new(keys), rx)
        }

        fn gate(&self, org: &OrgId, lookup: bool) {
            if org.as_str() != self.gated
                || lookup != self.lookup
                || !self.armed.swap(false, Ordering::SeqCst)
            {
                return;
            }
            if let Some(tx) = self.entered.lock().take() {
                let _ = tx.send(());
            }
            let mut go = self.release.lock();
            while !*go {
                self.released.wait(&mut go);
            }
        }

        /// Lets the gated call go on, and every later one.
        fn release(&self) {
            self.armed.store(false, Ordering::SeqCst);
            *self.release.lock() = true;
            self.released.notify_all();
        }
    }

    /// Released however the test ends: a failure must not hang in the log's drop.
    struct Release(Arc<GatedKeys>);

    impl Drop for Release {
        fn drop(&mut self) {
            self.0.release();
        }
    }

    /// Waits until everything `acme`'s January writer holds is fsynced; fails only if that
    /// does not happen within a guard that only a hang reaches.
    fn wait_until_acme_is_durable(log: &Log, month: Month) {
        let acme = log.inner.org(&OrgId::new("acme").unwrap());
        let w = acme.segs.lock().writers.get(&month).cloned().unwrap();
        let end = w.snapshot().end;
        let guard = Instant::now() + Duration::from_secs(60);
        while w.durable_len() < end {
            assert!(
                Instant::now() < guard,
                "no fsync while the key lookup waits"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Under `Interval`, an append is fsynced within the interval even while the flusher's
    /// retirement of another org's writer waits in a slow key lookup (found by review: no
    /// fsync at all for as long as the lookup took, in every org). Nothing is timed: the
    /// wait for the fsync is bounded only by a guard that a hang reaches.
    #[test]
    fn interval_fsyncs_go_on_while_a_retirement_waits_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, entered) = GatedKeys::new("other", false);
        let log = Log::open(
            dir.path(),
            Options::new(keys.clone())
                .durability(Durability::Interval(Duration::from_millis(5)))
                .max_open_writers(1)
                .parked_bytes(0),
        )
        .unwrap();
        let jan = Month::new(2026, 1).unwrap();
        let mut other = event_in(jan, 1);
        other.org_id = "other".into();
        log.append(&other).unwrap();
        let mut acme = event_in(jan, 2);
        acme.org_id = "acme".into();
        // Two writers open, one allowed: the flusher's next tick retires `other`'s (the
        // least recently used), whose full close asks for its key, and blocks there.
        let release = Release(keys.clone());
        keys.armed.store(true, Ordering::SeqCst);
        log.append(&acme).unwrap();
        entered
            .recv_timeout(Duration::from_secs(60))
            .expect("the retirement never asked for the key");
        assert_eq!(log.append(&acme).unwrap().seq, 1);
        wait_until_acme_is_durable(&log, jan);
        drop(release);
        log.close().unwrap();
    }

    /// Under `Interval`, an append is fsynced within the interval even while another org's
    /// recovery, which holds that org's catalog lock, waits in a slow key lookup (found by
    /// review: the fsync thread took every org's lock in turn, and stopped at that one).
    #[test]
    fn interval_fsyncs_go_on_while_another_orgs_recovery_waits_for_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, entered) = GatedKeys::new("slow", true);
        let jan = Month::new(2026, 1).unwrap();
        let mut slow = event_in(jan, 1);
        slow.org_id = "slow".into();
        let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
        log.append(&slow).unwrap();
        log.close().unwrap();

        let log = Arc::new(
            Log::open(
                dir.path(),
                Options::new(keys.clone())
                    .durability(Durability::Interval(Duration::from_millis(5))),
            )
            .unwrap(),
        );
        let mut acme = event_in(jan, 2);
        acme.org_id = "acme".into();
        log.append(&acme).unwrap();
        // `slow`'s January is recovered at its first append (its index checked with the
        // key the lookup gives), under its org's lock: the lookup blocks.
        let release = Release(keys.clone());
        keys.armed.store(true, Ordering::SeqCst);
        let recovering = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.append(&slow).map(|r| r.seq))
        };
        entered
            .recv_timeout(Duration::from_secs(60))
            .expect("the recovery never asked for the key");
        assert_eq!(log.append(&acme).unwrap().seq, 1);
        wait_until_acme_is_durable(&log, jan);
        drop(release);
        assert_eq!(recovering.join().unwrap().unwrap(), 1);
        Arc::into_inner(log).unwrap().close().unwrap();
    }
}
