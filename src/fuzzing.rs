//! Entry points for the fuzz targets in `fuzz/` (hidden; not a stable API).
//!
//! Each `fuzz_*` function takes arbitrary bytes, runs one family of decoders over them, and
//! checks that whatever decodes re-encodes to exactly the same bytes (every encoding in
//! `format/` is canonical). They panic only when such a round trip is violated; any other
//! panic, hang or runaway allocation found while fuzzing is a bug in the library.
//!
//! Checksums (CRC-32) sit in front of most fields, and random mutations almost never keep
//! them valid. So besides the input as given, the functions also decode a copy whose CRC
//! (and, for record frames, length) fields are recomputed, which lets the fuzzer reach the
//! decoders behind them.
//!
//! The segment walk verifies tags with [`FuzzKeys`]: every org has key id 1, a fixed public
//! key. Seeds written with that key (see `fuzz/README.md`) pass verification and reach the
//! event decoder.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::crypto::{self, Key, KeyError, KeyId, KeyProvider, Signer};
use crate::entry;
use crate::event::OrgId;
use crate::format::body::{Openings, SealedBody};
use crate::format::codec::put_bytes;
use crate::format::crc32;
use crate::format::header::SegmentId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::format::index::{
    INDEX_TRAILER_LEN, Index, IndexHead, KeyFields, SECTION_BLOCK_FILTERS, SECTION_BLOCK_TIMES,
    TermField, TermProbe, encode_block_times, term_hash,
};
use crate::format::record::{self, FRAME_HEADER_LEN, MAX_FRAME_LEN, MIN_FRAME_LEN, RawRecord};
use crate::segment::index_file;
use crate::segment::read::SegmentReader;
use crate::segment::scan::{self, FileWindow, IndexBuilder, Tally};
use crate::time::Month;

/// The key behind key id 1 of every org in [`FuzzKeys`]. Public: never use it for real data.
pub const FUZZ_KEY: &[u8; 32] = b"auditlog-fuzzing-key-not-secret!";

/// Key provider of the fuzz targets and their seed corpus: key id 1 of every org is
/// [`FUZZ_KEY`]; no other key exists.
#[derive(Clone, Copy, Debug, Default)]
pub struct FuzzKeys;

impl FuzzKeys {
    fn the_key() -> Result<Key, KeyError> {
        Key::new(FUZZ_KEY).ok_or_else(|| KeyError::Provider("fuzz key too short".into()))
    }
}

impl KeyProvider for FuzzKeys {
    fn signing_key(&self, _org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        Ok((KeyId(1), Self::the_key()?))
    }

    fn key(&self, _org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        if id == KeyId(1) {
            Self::the_key().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Copies `data` and overwrites the little-endian CRC-32 at `crc_at` with the CRC of
/// `data[covered]`. `None` if the ranges do not fit.
fn with_crc(data: &[u8], crc_at: usize, covered: std::ops::Range<usize>) -> Option<Vec<u8>> {
    let crc = crc32(data.get(covered)?);
    let mut fixed = data.to_vec();
    fixed
        .get_mut(crc_at..crc_at.checked_add(4)?)?
        .copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

// ---------------------------------------------------------------------------------------
// Record frames, sealed bodies and openings.
// ---------------------------------------------------------------------------------------

/// Decodes `data` as one record frame; when it decodes, decodes its sealed body and its
/// openings, and opens the event. Everything that decodes must re-encode to its bytes.
pub fn fuzz_record(data: &[u8]) {
    check_frame(data);
    // The same bytes as a frame of exactly `data.len()` bytes with a valid CRC.
    if let Ok(len) = u32::try_from(data.len())
        && (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len)
    {
        let mut sized = data.to_vec();
        if let Some(slot) = sized.get_mut(..4) {
            slot.copy_from_slice(&len.to_le_bytes());
        }
        if let Some(fixed) = with_crc(&sized, 4, 8..sized.len()) {
            check_frame(&fixed);
        }
    }
}

/// What [`check_frame`] got through; for the harness's own tests.
#[derive(Debug, Default, PartialEq, Eq)]
struct FrameDepth {
    frame: bool,
    body: bool,
    openings: bool,
    event: bool,
}

fn check_frame(data: &[u8]) -> FrameDepth {
    let mut depth = FrameDepth::default();
    // A nonzero base offset, so offset arithmetic is exercised too.
    let Ok(rec) = record::decode_frame(data, 4096) else {
        return depth;
    };
    depth.frame = true;
    let mut out = Vec::with_capacity(rec.frame.len());
    record::encode_frame(&mut out, &rec.fields, rec.sealed, rec.openings, |_| rec.tag);
    assert_eq!(
        out, rec.frame,
        "record frame does not re-encode to its bytes"
    );

    // The index builder's shortcut parse of the leading fields (no UTF-8 check).
    let keys = KeyFields::parse(rec.sealed);
    if let Ok(k) = &keys {
        let mut terms = Vec::new();
        k.terms(&mut terms);
    }

    let body_at = rec.offset + FRAME_HEADER_LEN as u64;
    let Ok(body) = SealedBody::decode(rec.sealed, body_at) else {
        return depth;
    };
    depth.body = true;
    let mut out = Vec::with_capacity(rec.sealed.len());
    body.encode(&mut out);
    assert_eq!(
        out, rec.sealed,
        "sealed body does not re-encode to its bytes"
    );
    // Both parsers read the same leading fields.
    assert_eq!(
        keys.ok(),
        Some(KeyFields {
            user_id: body.user_id.map(str::as_bytes),
            action: body.action.as_bytes(),
            resource_type: body.resource_type.as_bytes(),
            resource_id: body.resource_id.as_bytes(),
            trace_id: body.trace_id.map(str::as_bytes),
        }),
        "KeyFields::parse disagrees with SealedBody::decode"
    );

    let open_at = body_at + rec.sealed.len() as u64;
    let Ok(openings) = Openings::decode(rec.openings, open_at, body.pii.len()) else {
        return depth;
    };
    depth.openings = true;
    let mut out = Vec::with_capacity(rec.openings.len());
    openings.encode(&mut out);
    assert_eq!(
        out, rec.openings,
        "openings do not re-encode to their bytes"
    );

    depth.event = open_event(&rec);
    depth
}

/// Turns a decoded frame into an event (commitments, JSON, pointers): must not panic.
fn open_event(rec: &RawRecord<'_>) -> bool {
    let (Ok(org), Some(month)) = (OrgId::new("fuzz"), Month::new(2026, 1)) else {
        return false;
    };
    let month = rec.fields.occurred_at.month().unwrap_or(month);
    let hash = crypto::chain_hash(rec.chained_bytes());
    entry::open(&org, month, 0, rec, hash, entry::Erased::Redact).is_ok()
}

// ---------------------------------------------------------------------------------------
// Segment files.
// ---------------------------------------------------------------------------------------

/// Treats `data` as a whole segment file: decodes and round-trips its header, walks its
/// frames with resynchronisation the way recovery does, and reads it with
/// [`SegmentReader`] (chain, month, tag and commitment checks) under [`FuzzKeys`].
pub fn fuzz_segment(data: &[u8]) {
    segment_walk(data);
}

/// `auditlog inspect` over an arbitrary file (segment, index or garbage), with and without
/// keys, whole and from an offset inside the data: it must never fail on content (only on
/// I/O), must report items in file order without overlap, and must always advance.
pub fn fuzz_inspect(data: &[u8]) {
    use crate::inspect::{InspectOptions, Item, inspect};
    let Some(file) = scratch_file(data) else {
        return;
    };
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let from = data
        .get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| u64::from(u16::from_le_bytes(b)) % (data.len() as u64 + 1));
    for (keys, opts) in [
        (None, InspectOptions::default()),
        (
            Some(&FuzzKeys as &dyn KeyProvider),
            InspectOptions {
                from_offset: from,
                limit: Some(1000),
            },
        ),
    ] {
        let mut last_end = 0u64;
        let mut items = 0usize;
        let result = inspect(Path::new(&path), keys, opts, |item| {
            items += 1;
            assert!(items <= data.len() + 2, "inspect does not advance");
            let (start, end) = match &item {
                Item::Record { offset, len, .. } => (*offset, offset + len),
                Item::Damage { start, end, .. } | Item::BeingWritten { start, end } => {
                    (*start, *end)
                }
                Item::SegmentHeader { .. } | Item::Index { .. } => (0, 0),
            };
            assert!(
                start >= last_end || end == 0,
                "items overlap or go backwards"
            );
            assert!(end <= data.len() as u64, "item past the end of the file");
            last_end = last_end.max(end);
            Ok(())
        });
        // Content refuses only as a newer format (its version or incompatible flags), or,
        // with records selected, as an index (shown whole: `from_offset`/`limit` refused).
        let index = data.starts_with(&crate::format::index::INDEX_MAGIC);
        let refused_as_allowed = |e: &crate::Error| match e {
            crate::Error::Io { .. } | crate::Error::UnsupportedFormat { .. } => true,
            crate::Error::InvalidOption { .. } => index,
            _ => false,
        };
        assert!(
            result.as_ref().err().is_none_or(refused_as_allowed),
            "inspect failed on content: {result:?}"
        );
    }
}

/// What [`segment_walk`] saw; for the harness's own tests.
#[derive(Debug, Default)]
struct SegmentWalk {
    header: bool,
    scanned: u64,
    damage: usize,
    events: usize,
    errors: usize,
}

fn segment_walk(data: &[u8]) -> SegmentWalk {
    let mut walk = SegmentWalk::default();
    let header = SegmentHeader::decode(data).ok();
    if let Some(h) = &header {
        walk.header = true;
        assert_eq!(
            Some(&h.encode()[..]),
            data.get(..SEGMENT_HEADER_LEN),
            "segment header does not re-encode to its bytes"
        );
    }
    if header.is_none()
        && let Some(fixed) = data
            .get(..SEGMENT_HEADER_LEN)
            .and_then(|h| with_crc(h, SEGMENT_HEADER_LEN - 4, 0..SEGMENT_HEADER_LEN - 4))
        && let Ok(h) = SegmentHeader::decode(&fixed)
    {
        assert_eq!(
            &h.encode()[..],
            &fixed[..],
            "segment header does not re-encode to its bytes"
        );
    }

    // The scanners need a file. Temp file trouble is the machine's, not the input's.
    let Some(file) = scratch_file(data) else {
        return walk;
    };
    let len = data.len() as u64;

    // Recovery's scan, from where the first record would start.
    if let Ok(file) = file.try_clone() {
        let start = len.min(SEGMENT_HEADER_LEN as u64);
        let tally = Tally {
            head: crypto::sha256(data.get(..SEGMENT_HEADER_LEN).unwrap_or(data)),
            next_seq: header.as_ref().map_or(0, |h| h.first_seq),
            count: 0,
            valid_end: start,
            max_seq: None,
            index: IndexBuilder::new(4096, &std::env::temp_dir()),
        };
        let mut win = FileWindow::new(file, len);
        if let Ok(outcome) = scan::scan(&mut win, start, tally, None) {
            walk.scanned = outcome.tally.count;
            walk.damage = outcome.damage.len();
            check_scan(&outcome, start, len);
            check_rebuilt_index(&outcome.tally, header.as_ref(), len);
        }
    }

    // The reader, with every check.
    if header.is_some()
        && let Ok(reader) = file
            .try_clone()
            .map_err(|e| crate::Error::io("clone scratch file", "<scratch>", e))
            .and_then(|f| SegmentReader::from_file(f, Path::new("<scratch>"), Arc::new(FuzzKeys)))
    {
        for (n, item) in reader.enumerate() {
            // Each item consumes at least one byte: more items than bytes is a livelock.
            assert!(n <= data.len(), "segment reader does not advance");
            match item {
                Ok(_) => walk.events += 1,
                Err(_) => walk.errors += 1,
            }
        }
    }
    walk
}

/// A file holding exactly `data`. One unlinked temp file per thread is reused (reopened by
/// path through `/proc/self/fd`), in memory when `/dev/shm` exists: far cheaper than
/// creating and deleting a file per input, and it leaves nothing behind.
fn scratch_file(data: &[u8]) -> Option<File> {
    thread_local! {
        static SCRATCH: Option<File> = tempfile::tempfile_in("/dev/shm")
            .or_else(|_| tempfile::tempfile())
            .ok();
    }
    SCRATCH.with(|f| {
        let f = f.as_ref()?;
        // Write, then cut: truncating to zero first makes some file systems flush on close.
        f.write_all_at(data, 0).ok()?;
        f.set_len(data.len() as u64).ok()?;
        f.try_clone().ok()
    })
}

/// An empty directory for one input's log, in memory when `/dev/shm` exists; removed when
/// dropped.
fn scratch_dir() -> Option<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("auditlog-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .ok()
}

/// Properties of a scan outcome that hold for any input.
fn check_scan(outcome: &scan::ScanOutcome, start: u64, len: u64) {
    let t = &outcome.tally;
    assert!(
        start <= t.valid_end && t.valid_end <= len,
        "valid_end {} outside {start}..={len}",
        t.valid_end
    );
    let mut prev_end = start;
    for d in &outcome.damage {
        assert!(
            prev_end <= d.start && d.start < d.end && d.end <= len,
            "damage ranges must be ordered, disjoint and inside the file: {:?}",
            outcome.damage
        );
        prev_end = d.end;
    }
    let _ = outcome.torn_tail();
}

/// The index a writer would write after this scan (streamed by `index_file`, as
/// `SegmentWriter::write_index` writes it from the tally) must decode again, with its entries
/// in offset order inside the scanned bytes, and must be exactly the bytes the in-memory
/// encoder gives for what it decodes to: the engine never writes an index its own reader
/// rejects, whatever records it scanned.
fn check_rebuilt_index(t: &Tally, header: Option<&SegmentHeader>, len: u64) {
    let (Ok(fallback_org), Some(fallback_month), Ok(key)) =
        (OrgId::new("fuzz"), Month::new(2026, 1), FuzzKeys::the_key())
    else {
        return;
    };
    let signer = Signer::new(KeyId(1), &key);
    let head = IndexHead {
        compat_flags: 0,
        key_id: KeyId(1),
        org: header.map_or(fallback_org, |h| h.org.clone()),
        segment: header.map_or(
            SegmentId {
                month: fallback_month,
                part: 0,
            },
            |h| h.id,
        ),
        interval: t.index.interval,
        segment_hash: crypto::Hash::ZERO,
        covered_len: t.valid_end,
        record_count: t.count,
        first_seq: header.map_or(0, |h| h.first_seq),
        min_ts: t.index.min_ts,
        max_ts: t.index.max_ts,
        head: t.head,
        entry_count: 0,
        section_count: 0,
    };
    // The writer does not write an index its readers would reject (no header's bytes, or a
    // forged first_seq).
    if !head.counts_fit() {
        return;
    }
    // Spill files (if any) of a fuzz input are the machine's trouble, not the input's.
    let Ok(bytes) = index_file::encode(&head, &t.index.image(), &signer) else {
        return;
    };
    let decoded = Index::decode(&bytes);
    assert!(
        decoded.is_ok(),
        "an index rebuilt by the scan does not decode: {decoded:?}"
    );
    let Ok((index, tag, signed)) = decoded else {
        return;
    };
    let mut last = None;
    for e in &index.entries {
        assert!(
            last.is_none_or(|o| e.offset > o) && e.offset < len,
            "rebuilt index entries out of order: {:?}",
            index.entries
        );
        last = Some(e.offset);
    }
    assert!(
        signer.verify_index(signed, &tag),
        "the streamed tag differs from Signer::index_tag"
    );
    let mut again = index.encode_unsigned();
    again.extend_from_slice(&signer.index_tag(&again).0);
    assert_eq!(
        again, bytes,
        "the streamed index differs from the in-memory encoding"
    );
}

// ---------------------------------------------------------------------------------------
// Sidecar index files.
// ---------------------------------------------------------------------------------------

/// Decodes `data` as a sidecar index; when it decodes, re-encodes it (unsigned part plus
/// tag) and checks the bytes are identical, and checks the tag under [`FuzzKeys`].
pub fn fuzz_index(data: &[u8]) {
    check_index(data);
    check_streamed_index(data);
    if let Some(crc_at) = data.len().checked_sub(INDEX_TRAILER_LEN)
        && let Some(fixed) = with_crc(data, crc_at, 0..crc_at)
    {
        check_index(&fixed);
        check_streamed_index(&fixed);
    }
}

fn check_index(data: &[u8]) -> bool {
    let Ok((index, tag, signed)) = Index::decode(data) else {
        return false;
    };
    let mut out = index.encode_unsigned();
    assert_eq!(out, signed, "index does not re-encode to its signed bytes");
    out.extend_from_slice(&tag.0);
    assert_eq!(out, data, "index does not re-encode to its bytes");
    if let Ok((id, key)) = FuzzKeys.signing_key(&index.org) {
        let _ = Signer::new(id, &key).verify_index(signed, &tag);
    }
    check_query_sections(&index);
    true
}

/// The streaming reader a resuming writer uses accepts exactly what [`Index::decode`] plus
/// a tag check under [`FuzzKeys`] accept, and collects one block per entry when it does.
fn check_streamed_index(data: &[u8]) {
    let Some(file) = scratch_file(data) else {
        return;
    };
    let Ok(org) = OrgId::new("fuzz") else {
        return;
    };
    let streamed = index_file::read(file, &org, &FuzzKeys, Some(&std::env::temp_dir()));
    let decoded = Index::decode(data).ok().filter(|(index, tag, signed)| {
        FuzzKeys
            .key(&org, index.key_id)
            .ok()
            .flatten()
            .is_some_and(|key| Signer::new(index.key_id, &key).verify_index(signed, tag))
    });
    match (&streamed, &decoded) {
        (Ok(checked), Some((index, _, _))) => {
            assert_eq!(checked.head, index.head(), "streamed header differs");
            let sections = index.block_times().is_ok_and(|t| t.is_some())
                && index.block_filters().is_ok_and(|f| f.is_some())
                && index.user_marks().is_ok_and(|m| m.is_some());
            assert_eq!(
                checked.has_sections, sections,
                "query sections seen differently"
            );
            if let Some(b) = &checked.builder {
                assert_eq!(b.entry_count(), index.entries.len() as u64);
            }
            check_summary(data, &org, index);
        }
        // A file that could not be read back is the machine's trouble.
        (Err(index_file::Rejected::Io(_)), _) => {}
        (s, d) => assert_eq!(
            s.is_ok(),
            d.is_some(),
            "streaming index check disagrees with decode: {s:?}"
        ),
    }
}

/// The summary the query planner keeps of an accepted index ([`index_file::read_summary`],
/// groups of 1 to 4 blocks chosen by the input) gives back, a group at a time, exactly the
/// entries, block times and filters the whole decode gives.
fn check_summary(data: &[u8], org: &OrgId, index: &Index) {
    let per_group = 1 + u64::from(data.last().copied().unwrap_or(0) % 4);
    let Some(file) = scratch_file(data) else {
        return;
    };
    let Ok(reread) = file.try_clone() else {
        return;
    };
    let summarised = index_file::read_summary(file, org, &FuzzKeys, per_group);
    if matches!(summarised, Err(index_file::Rejected::Io(_))) {
        return;
    }
    assert!(
        summarised.is_ok(),
        "summary refuses an accepted index: {:?}",
        summarised.as_ref().err()
    );
    let Ok((checked, summary)) = summarised else {
        return;
    };
    assert_eq!(checked.head, index.head(), "summarised header differs");
    let times = index.block_times().ok().flatten();
    let filters = index.block_filters().ok().flatten();
    let marks = index.user_marks().ok().flatten();
    let mut marks_at = 0usize;
    let mut at = 0usize;
    for g in 0..summary.groups.len() {
        let read = summary.group(&reread, g);
        if matches!(read, Err(index_file::Rejected::Io(_))) {
            return;
        }
        assert!(
            read.is_ok(),
            "group {g} of an unchanged index refused: {:?}",
            read.as_ref().err()
        );
        let Ok(blocks) = read else {
            return;
        };
        let n = blocks.entries.len();
        assert_eq!(n as u64, summary.group_len(g), "group {g} length");
        assert_eq!(
            Some(blocks.entries.as_slice()),
            index.entries.get(at..at + n),
            "group {g} entries"
        );
        if let Some(t) = &times {
            assert_eq!(
                blocks.times.as_deref(),
                t.get(at..at + n),
                "group {g} times"
            );
        }
        if let (Some(f), Some(gf)) = (&filters, &blocks.filters) {
            assert_eq!(gf.first, at as u64, "group {g}'s first block");
            assert_eq!(gf.probing, f.probing, "group {g}'s probing");
            let probes = [
                TermProbe::new(term_hash(TermField::Action, b"booking.created")),
                TermProbe::new(0),
            ];
            for j in 0..n {
                assert_eq!(gf.filter(j), f.filter(at + j), "group {g} filter {j}");
                for p in &probes {
                    assert_eq!(
                        gf.may_contain_all(j, std::slice::from_ref(p)),
                        f.may_contain_all(at + j, std::slice::from_ref(p)),
                        "group {g} block {j}: the group and the whole index disagree"
                    );
                }
            }
        }
        assert_eq!(blocks.marks.is_some(), marks.is_some(), "group {g} marks");
        if let (Some(m), Some(gm)) = (&marks, &blocks.marks) {
            assert_eq!(
                Some(gm.as_slice()),
                m.get(marks_at..marks_at + gm.len()),
                "group {g} marks"
            );
            assert_eq!(
                blocks.entries.first().map(|e| e.seq - index.first_seq),
                (!gm.is_empty()).then_some(marks_at as u64),
                "group {g}'s marks start at its first record"
            );
            marks_at += gm.len();
        }
        at += n;
    }
    assert_eq!(at, index.entries.len(), "groups cover every entry");
    if let Some(m) = &marks {
        assert_eq!(marks_at, m.len(), "groups cover every mark");
    }
}

/// The query sections of a decoded index re-encode to their bytes, and probing the
/// filters stays in bounds.
fn check_query_sections(index: &Index) {
    let section = |kind| index.sections.iter().find(|s| s.kind == kind);
    if let Ok(Some(times)) = index.block_times() {
        assert_eq!(
            Some(&encode_block_times(&times)),
            section(SECTION_BLOCK_TIMES),
            "block times do not re-encode to their bytes"
        );
    }
    if let Ok(Some(filters)) = index.block_filters() {
        let mut out = filters.probing.header().to_vec();
        for i in 0..filters.ends.len() {
            put_bytes(&mut out, filters.filter(i));
        }
        assert_eq!(
            Some(&out),
            section(SECTION_BLOCK_FILTERS).map(|s| &s.bytes),
            "block filters do not re-encode to their bytes"
        );
        let probes = [
            TermProbe::new(term_hash(TermField::Action, b"booking.created")),
            TermProbe::new(0),
            TermProbe::new(u64::MAX),
        ];
        for i in 0..=filters.ends.len() {
            let _ = filters.may_contain_all(i, &probes);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Signed indexes: what verification and queries make of a wrong index that a key holder
// (or a buggy writer) signed.
// ---------------------------------------------------------------------------------------

/// Bytes between the sparse entries of the `signed_index` target's segment (its index has
/// a few dozen blocks).
pub const SIGNED_INDEX_INTERVAL: u32 = 1024;

/// The segment every `signed_index` input is taken to be the index of: 128 small workload
/// events of org `org-000` in January 2026, signed with [`FUZZ_KEY`], written by
/// `fuzz/examples/gen_corpus.rs` (with the target's seed, its index as the writer wrote it).
static SIGNED_INDEX_SEGMENT: &[u8] = include_bytes!("fuzzing/signed_index.seg");

/// Treats `data` as the index file of a fixed, valid segment ([`SIGNED_INDEX_SEGMENT`]).
/// The harness first *repairs* it as a key holder would, recomputing its CRC and signing
/// it with [`FUZZ_KEY`] (bytes too short for a trailer are left as they are), so that the
/// structure behind the tag is what gets fuzzed. Then, over a fresh log directory holding
/// the segment and that index, it runs `verify` with [`FuzzKeys`] and a read-only
/// [`crate::Log`]'s queries (a whole-month range, forward and reverse, a user, an action, a
/// resource; with and without a limit), consuming every item.
///
/// The input's original tag bytes, which the repair overwrites, choose how the queries run
/// (group size of the planner, batch size, cache, spilling, helper threads): the fuzzer
/// explores those without disturbing the index.
///
/// It panics (besides on any panic of the library) when:
/// - a query returns an event that a full scan of the segment does not give for it, or
///   returns events out of order, twice, or past its limit;
/// - the index is the pristine one (what the writer writes for the segment) and `verify`
///   reports anything, or a query returns an error or other events than a full scan;
/// - `verify` finds nothing wrong, yet a query returns an error or other events than a
///   full scan: a signed index that passes verification must never make a query miss a
///   record (FORMAT.md §3.1–3.3), which is what verification's index comparison is for.
pub fn fuzz_signed_index(data: &[u8]) {
    let _ = signed_index_run(data);
}

/// What [`signed_index_run`] saw; for the harness's own tests.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct SignedIndexRun {
    /// The repaired input is the pristine index.
    pristine: bool,
    /// What `verify` reported (`None`: it failed, on I/O).
    findings: Option<Vec<crate::verify::FindingKind>>,
    /// Error items over all queries.
    query_errors: usize,
    /// Events returned over all queries.
    events: usize,
    /// Events a full scan gives over all queries.
    expected: usize,
}

/// The segment of the `signed_index` target, what a full scan of it gives, and its
/// pristine index; built once per process.
struct SignedIndexFixture {
    org: OrgId,
    id: SegmentId,
    /// The index the writer writes for the segment (built here as recovery rebuilds it).
    pristine: Vec<u8>,
    signer: Signer,
    queries: Vec<QuerySpec>,
    /// Records in the segment.
    records: usize,
}

/// One record of the full scan, as queries filter it.
struct ScannedRecord {
    seq: u64,
    at: crate::Timestamp,
    user: Option<String>,
    action: String,
    resource_type: String,
    resource_id: String,
}

/// One query of the harness, and what a full scan of the segment says it returns.
#[derive(Clone, Debug, Default)]
struct QuerySpec {
    since: Option<crate::Timestamp>,
    until: Option<crate::Timestamp>,
    user: Option<String>,
    /// `domain.action` or `domain.*`.
    action: Option<String>,
    resource: Option<(String, String)>,
    limit: Option<u64>,
    reverse: bool,
    /// Through [`crate::Query::run`] (a `VerifiedEvent` per match) rather than a cursor.
    decode: bool,
    /// Every record that matches (limit aside): seq → occurred_at.
    matching: std::collections::BTreeMap<u64, crate::Timestamp>,
    /// What the query returns: `(occurred_at, seq)` in its order, limit applied.
    expected: Vec<(crate::Timestamp, u64)>,
}

impl QuerySpec {
    fn matches(&self, r: &ScannedRecord) -> bool {
        let action = match self.action.as_deref().map(|a| (a, a.strip_suffix('*'))) {
            None => true,
            Some((_, Some(prefix))) => r.action.starts_with(prefix),
            Some((a, None)) => r.action == a,
        };
        self.since.is_none_or(|t| r.at >= t)
            && self.until.is_none_or(|t| r.at < t)
            && self
                .user
                .as_ref()
                .is_none_or(|u| r.user.as_ref() == Some(u))
            && action
            && self
                .resource
                .as_ref()
                .is_none_or(|(t, i)| *t == r.resource_type && *i == r.resource_id)
    }

    /// Fills `matching` and `expected` from the full scan.
    fn expect(mut self, records: &[ScannedRecord]) -> QuerySpec {
        self.matching = records
            .iter()
            .filter(|r| self.matches(r))
            .map(|r| (r.seq, r.at))
            .collect();
        let mut order: Vec<_> = self.matching.iter().map(|(s, t)| (*t, *s)).collect();
        order.sort_unstable();
        if self.reverse {
            order.reverse();
        }
        if let Some(n) = self.limit {
            order.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        self.expected = order;
        self
    }

    fn build<'a>(&self, log: &'a crate::Log, org: &OrgId, knobs: QueryKnobs) -> crate::Query<'a> {
        let mut q = log.query(org);
        if let Some(t) = self.since {
            q = q.since(t);
        }
        if let Some(t) = self.until {
            q = q.until(t);
        }
        if let Some(u) = &self.user {
            q = q.user(u);
        }
        if let Some(a) = &self.action {
            q = q.action(a);
        }
        if let Some((t, i)) = &self.resource {
            q = q.resource(t, i);
        }
        if let Some(n) = self.limit {
            q = q.limit(n);
        }
        if self.reverse {
            q = q.reverse();
        }
        if let Some(n) = knobs.plan_blocks {
            q = q.plan_blocks(n);
        }
        if let Some(n) = knobs.batch_bytes {
            q = q.batch_bytes(n);
        }
        if knobs.spill {
            q = q.buffer_limit(0);
        }
        if knobs.helpers {
            q = q.threads(2);
        }
        q
    }

    /// Runs the query and consumes every item: `(occurred_at, seq)` of the events in the
    /// order returned, and the number of error items.
    fn run(
        &self,
        log: &crate::Log,
        org: &OrgId,
        knobs: QueryKnobs,
        records: usize,
    ) -> (Vec<(crate::Timestamp, u64)>, usize) {
        // Each block, record and index yields at most a few items: more is a livelock.
        let bound = 16 * records + 1024;
        let mut events = Vec::new();
        let mut errors = 0usize;
        let q = self.build(log, org, knobs);
        if self.decode {
            for item in q {
                assert!(
                    events.len() + errors < bound,
                    "query does not end: {self:?}"
                );
                match item {
                    Ok(ev) => events.push((ev.event.occurred_at, ev.seq)),
                    Err(_) => errors += 1,
                }
            }
        } else {
            match q.cursor() {
                Ok(mut cur) => {
                    while let Some(item) = cur.next_ref() {
                        assert!(
                            events.len() + errors < bound,
                            "query does not end: {self:?}"
                        );
                        match item {
                            Ok(ev) => {
                                let _ = ev.fields();
                                events.push((ev.occurred_at(), ev.seq()));
                            }
                            Err(_) => errors += 1,
                        }
                    }
                }
                Err(_) => errors += 1,
            }
        }
        (events, errors)
    }

    /// What holds whatever the index: every event returned is one the query matches, with
    /// its time, in the query's order, once, within the limit.
    fn check_sound(&self, events: &[(crate::Timestamp, u64)]) {
        for (at, seq) in events {
            assert_eq!(
                self.matching.get(seq),
                Some(at),
                "query returned seq {seq} at {at}, which a full scan does not give it: {self:?}"
            );
        }
        for pair in events.windows(2) {
            if let [a, b] = pair {
                assert!(
                    if self.reverse { a > b } else { a < b },
                    "query results out of order or repeated ({a:?} then {b:?}): {self:?}"
                );
            }
        }
        if let Some(n) = self.limit {
            assert!(
                events.len() as u64 <= n,
                "query returned {} events past its limit: {self:?}",
                events.len()
            );
        }
    }
}

/// How the harness runs its queries, chosen by the input's tag bytes (which the repair
/// overwrites, so they do not change the index).
#[derive(Clone, Copy, Debug, Default)]
struct QueryKnobs {
    plan_blocks: Option<u64>,
    batch_bytes: Option<u64>,
    no_cache: bool,
    spill: bool,
    helpers: bool,
}

impl QueryKnobs {
    fn from_tag(data: &[u8]) -> QueryKnobs {
        let Some(at) = data.len().checked_sub(INDEX_TRAILER_LEN - 4) else {
            return QueryKnobs::default();
        };
        let byte = |i: usize| data.get(at + i).copied().unwrap_or(0);
        let (a, b, c) = (byte(0), byte(1), byte(2));
        QueryKnobs {
            plan_blocks: (a % 8 != 0).then_some(u64::from(a % 8)),
            batch_bytes: (b % 4 == 0).then_some(1 + u64::from(b) * 64),
            no_cache: c & 1 != 0,
            spill: c & 2 != 0,
            helpers: c & 4 != 0,
        }
    }
}

fn signed_index_fixture() -> Option<&'static SignedIndexFixture> {
    static FIXTURE: std::sync::OnceLock<Option<SignedIndexFixture>> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(build_signed_index_fixture).as_ref()
}

fn build_signed_index_fixture() -> Option<SignedIndexFixture> {
    let segment = SIGNED_INDEX_SEGMENT;
    let header = SegmentHeader::decode(segment).ok()?;
    let genesis = crypto::sha256(segment.get(..SEGMENT_HEADER_LEN)?);
    let file = tempfile::tempfile_in("/dev/shm")
        .or_else(|_| tempfile::tempfile())
        .ok()?;
    file.write_all_at(segment, 0).ok()?;
    let len = segment.len() as u64;

    // The full scan, with every check.
    let mut records = Vec::new();
    let reader = SegmentReader::from_file(
        file.try_clone().ok()?,
        Path::new("<fixture>"),
        Arc::new(FuzzKeys),
    );
    for item in reader.ok()? {
        let ev = item.ok()?;
        records.push(ScannedRecord {
            seq: ev.seq,
            at: ev.event.occurred_at,
            user: ev.event.user_id,
            action: ev.event.action,
            resource_type: ev.event.resource_type,
            resource_id: ev.event.resource_id,
        });
    }

    // The pristine index: what recovery rebuilds and the writer writes.
    let key = FuzzKeys::the_key().ok()?;
    let signer = Signer::new(KeyId(1), &key);
    let builder = IndexBuilder::new(SIGNED_INDEX_INTERVAL, &std::env::temp_dir());
    let tally = Tally::fresh(&header, genesis, builder);
    let mut tags = scan::Tags::new(&header.org, &FuzzKeys);
    let mut win = FileWindow::new(file, len);
    let outcome = scan::scan(&mut win, SEGMENT_HEADER_LEN as u64, tally, Some(&mut tags)).ok()?;
    if !outcome.damage.is_empty() || outcome.tally.count != records.len() as u64 {
        return None;
    }
    let t = &outcome.tally;
    let head = t.index_head(&header, genesis, KeyId(1));
    let pristine = index_file::encode(&head, &t.index.image(), &signer).ok()?;

    // The queries, on values the segment holds.
    let month = header.id.month;
    let since = month.start();
    let until = next_month(month).map(Month::start)?;
    let mut users: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in &records {
        if let Some(u) = &r.user {
            *users.entry(u.as_str()).or_default() += 1;
        }
    }
    let user = users
        .iter()
        .max_by_key(|(u, n)| (**n, std::cmp::Reverse(**u)))
        .map(|(u, _)| (*u).to_string())?;
    let middle = records.get(records.len() / 2)?;
    let mid_time = crate::Timestamp(since.0 + (until.0 - since.0) / 3);
    let specs = [
        QuerySpec {
            since: Some(since),
            until: Some(until),
            ..QuerySpec::default()
        },
        QuerySpec {
            since: Some(since),
            until: Some(until),
            limit: Some(7),
            ..QuerySpec::default()
        },
        QuerySpec {
            reverse: true,
            limit: Some(5),
            ..QuerySpec::default()
        },
        QuerySpec {
            user: Some(user.clone()),
            decode: true,
            ..QuerySpec::default()
        },
        QuerySpec {
            user: Some(user),
            limit: Some(3),
            ..QuerySpec::default()
        },
        QuerySpec {
            action: Some("booking.*".into()),
            since: Some(mid_time),
            ..QuerySpec::default()
        },
        QuerySpec {
            action: Some(middle.action.clone()),
            limit: Some(2),
            reverse: true,
            ..QuerySpec::default()
        },
        QuerySpec {
            resource: Some((middle.resource_type.clone(), middle.resource_id.clone())),
            ..QuerySpec::default()
        },
        QuerySpec {
            resource: Some((middle.resource_type.clone(), middle.resource_id.clone())),
            limit: Some(1),
            ..QuerySpec::default()
        },
    ];
    let queries = specs.into_iter().map(|q| q.expect(&records)).collect();
    Some(SignedIndexFixture {
        org: header.org,
        id: header.id,
        pristine,
        signer,
        queries,
        records: records.len(),
    })
}

/// The month after `m`.
fn next_month(m: Month) -> Option<Month> {
    if m.month() == 12 {
        Month::new(m.year().checked_add(1)?, 1)
    } else {
        Month::new(m.year(), m.month() + 1)
    }
}

/// `data` with its CRC recomputed and its tag made with `signer`, as a key holder would
/// write it; unchanged if it is too short to hold a trailer.
fn sign_index(data: &[u8], signer: &Signer) -> Vec<u8> {
    let (Some(crc_at), Some(tag_at)) = (
        data.len().checked_sub(INDEX_TRAILER_LEN),
        data.len().checked_sub(32),
    ) else {
        return data.to_vec();
    };
    let Some(mut out) = with_crc(data, crc_at, 0..crc_at) else {
        return data.to_vec();
    };
    let tag = out.get(..tag_at).map(|signed| signer.index_tag(signed));
    if let (Some(tag), Some(slot)) = (tag, out.get_mut(tag_at..)) {
        slot.copy_from_slice(&tag.0);
    }
    out
}

/// A log directory holding the fixture's segment and `index` as its index; in memory when
/// `/dev/shm` exists. `None` on I/O trouble (the machine's, not the input's).
fn signed_index_dir(fx: &SignedIndexFixture, index: &[u8]) -> Option<tempfile::TempDir> {
    let dir = scratch_dir()?;
    let org_dir = dir.path().join(fx.org.as_str());
    std::fs::create_dir(&org_dir).ok()?;
    std::fs::write(
        org_dir.join(crate::segment::segment_file_name(fx.id)),
        SIGNED_INDEX_SEGMENT,
    )
    .ok()?;
    std::fs::write(org_dir.join(crate::segment::index_file_name(fx.id)), index).ok()?;
    Some(dir)
}

fn signed_index_run(data: &[u8]) -> Option<SignedIndexRun> {
    let fixture = signed_index_fixture();
    assert!(
        fixture.is_some(),
        "the signed_index segment does not read back (regenerate it: fuzz/README.md)"
    );
    let fx = fixture?;
    let index = sign_index(data, &fx.signer);
    let pristine = index == fx.pristine;
    let knobs = QueryKnobs::from_tag(data);
    let dir = signed_index_dir(fx, &index)?;

    let opts = crate::verify::VerifyOptions {
        threads: Some(1),
        ..crate::verify::VerifyOptions::default()
    };
    let report = crate::verify::verify(dir.path(), Some(&FuzzKeys), &opts).ok();
    if knobs.helpers {
        // Without keys too: the index's tag is then not checked, nor its sections compared.
        let _ = crate::verify::verify(dir.path(), None, &opts);
    }
    if pristine {
        assert_eq!(
            report.as_ref().map(|r| &r.findings),
            Some(&Vec::new()),
            "verify reports findings on the pristine index"
        );
    }
    let intact = report
        .as_ref()
        .is_some_and(crate::verify::Report::is_intact);

    let mut run = SignedIndexRun {
        pristine,
        findings: report.map(|r| r.findings.into_iter().map(|f| f.kind).collect()),
        query_errors: 0,
        events: 0,
        expected: 0,
    };
    let mut opts = crate::Options::new(Arc::new(FuzzKeys));
    if knobs.no_cache {
        opts = opts.query_index_cache(0);
    }
    let log = crate::Log::open_read_only(dir.path(), opts).ok()?;
    for q in &fx.queries {
        let (events, errors) = q.run(&log, &fx.org, knobs, fx.records);
        q.check_sound(&events);
        if pristine || intact {
            assert!(
                errors == 0 && events == q.expected,
                "{} index: query {q:?} under {knobs:?} gave {errors} errors and events \
                 {events:?}, a full scan {:?}",
                if pristine {
                    "the pristine"
                } else {
                    "an index verify passes as intact:"
                },
                q.expected
            );
        }
        run.query_errors += errors;
        run.events += events.len();
        run.expected += q.expected.len();
    }
    Some(run)
}

// ---------------------------------------------------------------------------------------
// Recovery: a log directory holding one fuzzed segment.
// ---------------------------------------------------------------------------------------

mod recover;

/// Treats `data` as the only segment of a log directory, filed under the org and segment
/// its header names (`org-000`, `2026-01` when it has none), without an index, as a crash
/// leaves a segment being written. Unless the input's length is a multiple of 4, the
/// header's CRC is recomputed first. Then:
/// - `verify` (with [`FuzzKeys`] and without keys) must not fail on content;
/// - a checkpoint is made of it, accepting damage (`checkpoint --accept-damage`: each
///   segment pinned up to its first damage), if `make_checkpoint_with` makes one;
/// - [`crate::Log::open`] recovers it and must open (a month it cannot recover is reported
///   as `RecoveryFailed`, not an error);
/// - one event is appended in the segment's month and the log closed; when both succeed,
///   the log must reopen with nothing to recover, a query of the month must give the event
///   exactly once (or report an error), and `verify` with the checkpoint made before
///   recovery must find no record of it missing or changed.
pub fn fuzz_recover(data: &[u8]) {
    let _ = recover::recover_run(data);
}

/// For tests: `events` events of the reference workload (one org, two days) appended under
/// `opts` (durability `Never`) and closed; the directory, the org and its segment.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) fn small_log(
    opts: crate::log::Options,
    events: u64,
) -> (tempfile::TempDir, OrgId, crate::format::header::SegmentId) {
    use crate::workload::{Workload, WorkloadConfig};
    let dir = tempfile::tempdir().unwrap();
    let log =
        crate::log::Log::open(dir.path(), opts.durability(crate::log::Durability::Never)).unwrap();
    let events: Vec<_> = Workload::new(WorkloadConfig {
        events,
        orgs: 1,
        days: 2,
        ..WorkloadConfig::default()
    })
    .collect();
    log.append_batch(&events).unwrap();
    let org = OrgId::new(&events[0].org_id).unwrap();
    let id = log.segments(&org).unwrap()[0];
    log.close().unwrap();
    (dir, org, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Options;
    use crate::segment::{index_file_name, segment_file_name};

    /// Writes a small real log under `FuzzKeys` and returns (segment, index) bytes of one
    /// segment.
    fn real_files() -> (Vec<u8>, Vec<u8>) {
        let opts = Options::new(Arc::new(FuzzKeys)).personal_data(["/after/email"]);
        let (dir, org, id) = small_log(opts, 12);
        let org_dir = dir.path().join(org.as_str());
        (
            std::fs::read(org_dir.join(segment_file_name(id))).unwrap(),
            std::fs::read(org_dir.join(index_file_name(id))).unwrap(),
        )
    }

    #[test]
    fn real_files_reach_every_decoder() {
        let (seg, idx) = real_files();
        let walk = segment_walk(&seg);
        assert!(walk.header);
        assert_eq!((walk.scanned, walk.damage), (12, 0));
        assert_eq!((walk.events, walk.errors), (12, 0));
        assert!(check_index(&idx));
        let (index, _, _) = Index::decode(&idx).unwrap();
        check_summary(&idx, &OrgId::new("fuzz").unwrap(), &index);

        let first = seg.get(SEGMENT_HEADER_LEN..).unwrap();
        let len = record::peek_frame_len(first).unwrap() as usize;
        let depth = check_frame(&first[..len]);
        assert_eq!(
            depth,
            FrameDepth {
                frame: true,
                body: true,
                openings: true,
                event: true
            }
        );
    }

    fn fuzz_dir(sub: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(sub)
    }

    /// Every committed seed and regression input still passes its target.
    #[test]
    fn committed_inputs_pass() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("record", fuzz_record),
            ("segment", fuzz_segment),
            ("index", fuzz_index),
            ("inspect", fuzz_inspect),
            ("signed_index", fuzz_signed_index),
            ("recover", fuzz_recover),
        ];
        let mut seen = 0;
        for (name, target) in targets {
            for sub in ["corpus", "regressions"] {
                let Ok(dir) = std::fs::read_dir(fuzz_dir(sub).join(name)) else {
                    continue;
                };
                for entry in dir {
                    let path = entry.unwrap().path();
                    if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    target(&std::fs::read(&path).unwrap());
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "no committed fuzz inputs found");
    }

    /// The committed real segment still verifies end to end, so the `segment` target
    /// reaches the event decoder. If the format changes, regenerate the seeds (see
    /// `fuzz/README.md`).
    #[test]
    fn committed_segment_seed_verifies() {
        let seg = std::fs::read(fuzz_dir("corpus/segment/real-9-records.seg")).unwrap();
        let walk = segment_walk(&seg);
        assert!(walk.header);
        assert_eq!(
            (walk.scanned, walk.damage, walk.events, walk.errors),
            (9, 0, 9, 0)
        );
        let idx = std::fs::read(fuzz_dir("corpus/index/real-9-records.idx")).unwrap();
        assert!(check_index(&idx));
        for f in [
            "frame-no-personal-data.bin",
            "frame-personal-data.bin",
            "frame-erased-slot.bin",
        ] {
            let bytes = std::fs::read(fuzz_dir("corpus/record").join(f)).unwrap();
            assert!(check_frame(&bytes).event, "{f} does not open as an event");
        }
    }

    /// Garbage in which every 4th offset claims a 1 MiB frame once made `scan::resync` CRC
    /// each candidate over its whole claimed length: O(n²), ~54 s for 2 MiB. Resync now
    /// checks candidates from prefix CRCs (linear). The walk must report the garbage as one
    /// damaged stretch and no records.
    #[test]
    fn resync_on_crafted_garbage_is_linear() {
        let seg = std::fs::read(fuzz_dir("corpus/segment/header-only.seg")).unwrap();
        let mut bytes = seg[..SEGMENT_HEADER_LEN].to_vec();
        let claim = 1u32 << 20;
        while bytes.len() < SEGMENT_HEADER_LEN + (2 << 20) {
            bytes.extend_from_slice(&claim.to_le_bytes());
        }
        let walk = segment_walk(&bytes);
        assert_eq!(walk.events, 0);
        assert_eq!(walk.damage, 1);
    }

    /// The `recover` harness gets through every step on the seeds: the real segment
    /// verifies, is checkpointed, needs only its index rebuilt, takes the marker and gives
    /// it back; the torn tail is cut and the flipped bit sealed and continued, and the
    /// marker is appended after either, checkpointed (accepting damage) before recovery.
    #[test]
    fn recover_harness_reaches_the_reopened_log() {
        let read = |f: &str| std::fs::read(fuzz_dir("corpus/segment").join(f)).unwrap();
        // 5346 bytes: not a multiple of 4, so the header is repaired (it is valid anyway).
        let run = recover::recover_run(&read("real-9-records.seg")).unwrap();
        assert!(run.header && run.intact_before && run.checkpoint && run.appended);
        assert_eq!(run.events, 1);
        assert!(
            run.recovery
                .iter()
                .all(|a| matches!(a, crate::log::RecoveryAction::IndexRebuilt { .. })),
            "{:?}",
            run.recovery
        );
        for (f, want) in [
            ("torn-tail.seg", "TornTailQuarantined"),
            ("corrupt-middle.seg", "SegmentSealed"),
        ] {
            let run = recover::recover_run(&read(f)).unwrap();
            // Pinned up to the damage, which recovery leaves where it is.
            assert!(run.header && run.checkpoint && run.appended, "{f}: {run:?}");
            assert_eq!(run.events, 1, "{f}: {run:?}");
            assert!(
                run.recovery
                    .iter()
                    .any(|a| format!("{a:?}").starts_with(want)),
                "{f}: {run:?}"
            );
        }
    }

    #[test]
    fn inspect_harness_accepts_every_seed_and_cut() {
        let (seg, idx) = real_files();
        for cut in (0..seg.len()).step_by(53) {
            fuzz_inspect(&seg[..cut]);
        }
        fuzz_inspect(&idx);
        fuzz_inspect(&[]);
        let mut flipped = seg.clone();
        flipped[SEGMENT_HEADER_LEN + 70] ^= 0x40;
        fuzz_inspect(&flipped);
    }

    #[test]
    fn garbage_and_truncations_do_not_panic() {
        let (seg, idx) = real_files();
        for cut in (0..seg.len()).step_by(97) {
            fuzz_segment(&seg[..cut]);
            fuzz_record(&seg[SEGMENT_HEADER_LEN.min(cut)..cut]);
        }
        for cut in 0..idx.len() {
            fuzz_index(&idx[..cut]);
        }
        let mut flipped = seg.clone();
        flipped[SEGMENT_HEADER_LEN + 70] ^= 0x40;
        let walk = segment_walk(&flipped);
        assert_eq!(walk.damage, 1);
        assert_eq!(walk.events, 11);
        fuzz_record(&[]);
        fuzz_segment(&[]);
        fuzz_index(&[]);
    }

    /// A header (CRC fixed) whose `first_seq` leaves fewer seqs than the file has records:
    /// the index a scan of it would give breaks FORMAT.md §3's count rule, so the writer
    /// writes none, and the harness's rebuilt-index check must not expect one.
    #[test]
    fn a_header_claiming_seqs_near_2_pow_64_does_not_fail_the_rebuilt_index_check() {
        let (mut seg, _) = real_files();
        seg[104..112].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        let crc = crc32(&seg[..SEGMENT_HEADER_LEN - 4]);
        seg[SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&seg).unwrap().first_seq, u64::MAX - 3);
        fuzz_segment(&seg);
    }

    fn pristine_signed_index() -> Vec<u8> {
        signed_index_fixture()
            .expect("the signed_index fixture builds")
            .pristine
            .clone()
    }

    /// The committed seed is the index the writer wrote for the embedded segment, which is
    /// also what the harness rebuilds: generator, seed and fixture agree.
    #[test]
    fn signed_index_seed_is_the_pristine_index() {
        let seed = std::fs::read(fuzz_dir("corpus/signed_index/pristine.idx")).unwrap();
        assert_eq!(seed, pristine_signed_index());
        let (index, _, _) = Index::decode(&seed).unwrap();
        assert!(index.entries.len() > 20, "{} blocks", index.entries.len());
        assert!(index.user_marks().unwrap().is_some());
    }

    #[test]
    fn pristine_signed_index_verifies_and_queries_exactly() {
        let pristine = pristine_signed_index();
        let t = std::time::Instant::now();
        let run = signed_index_run(&pristine).unwrap();
        eprintln!("one run: {:?}", t.elapsed());
        assert!(run.pristine);
        assert_eq!(run.findings, Some(vec![]));
        assert_eq!(run.query_errors, 0);
        assert_eq!(run.events, run.expected);
        assert!(run.expected > 50, "{run:?}");
        // Every way of running the queries, on the same index.
        for knob in [0u8, 1, 3, 4, 7, 8, 255] {
            let mut data = pristine.clone();
            let n = data.len();
            for b in &mut data[n - 32..n - 29] {
                *b = knob;
            }
            let run = signed_index_run(&data).unwrap();
            assert!(run.pristine);
            assert_eq!((run.query_errors, run.events), (0, run.expected));
        }
    }

    /// The pristine index, decoded, changed by `f`, and encoded again (the harness signs it).
    fn changed_signed_index(f: impl FnOnce(&mut Index)) -> Vec<u8> {
        let (mut index, _, _) = Index::decode(&pristine_signed_index()).unwrap();
        f(&mut index);
        let mut out = index.encode_unsigned();
        out.extend_from_slice(&[0; 32]);
        out
    }

    fn section(index: &mut Index, kind: u32) -> &mut Vec<u8> {
        &mut index
            .sections
            .iter_mut()
            .find(|s| s.kind == kind)
            .unwrap()
            .bytes
    }

    /// Signed indexes that are wrong in ways a writer bug or a key holder could make them:
    /// nothing panics, queries stay sound, and verify reports the unsound ones.
    #[test]
    fn wrong_signed_indexes_are_reported_never_panic() {
        use crate::format::index::{
            FILTER_HEADER_LEN, MARK_UNKNOWN, SECTION_USER_MARKS, encode_user_marks,
        };
        use crate::time::Timestamp;
        use crate::verify::FindingKind;
        let pristine = pristine_signed_index();
        let seg_len = SIGNED_INDEX_SEGMENT.len() as u64;
        let raw = |at: usize, f: &dyn Fn(u32) -> u32| {
            let mut b = pristine.clone();
            let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            b[at..at + 4].copy_from_slice(&f(v).to_le_bytes());
            b
        };
        // Rejected as a whole: the queries read the segment without it.
        let rejected = [
            ("entry count inflated", raw(208, &|n| n + 3)),
            ("entry count huge", raw(208, &|_| u32::MAX)),
            ("section count inflated", raw(212, &|n| n + 1)),
            (
                "an entry past covered_len",
                changed_signed_index(|i| i.entries.last_mut().unwrap().offset = i.covered_len),
            ),
            (
                "entry seqs out of order",
                changed_signed_index(|i| i.entries[3].seq = i.entries[2].seq),
            ),
            (
                "empty block-times section",
                changed_signed_index(|i| section(i, SECTION_BLOCK_TIMES).clear()),
            ),
            (
                "empty user-marks section",
                changed_signed_index(|i| section(i, SECTION_USER_MARKS).clear()),
            ),
            (
                "one filter too few",
                changed_signed_index(|i| {
                    let n = section(i, SECTION_BLOCK_FILTERS).len();
                    let last = i
                        .block_filters()
                        .unwrap()
                        .unwrap()
                        .filter(i.entries.len() - 1)
                        .len();
                    section(i, SECTION_BLOCK_FILTERS).truncate(n - last - 1);
                }),
            ),
        ];
        for (what, data) in &rejected {
            let run = signed_index_run(data).unwrap();
            let findings = run.findings.unwrap();
            assert!(
                findings.contains(&FindingKind::IndexMismatch),
                "{what}: {findings:?}"
            );
            assert_eq!((run.query_errors, run.events), (0, run.expected), "{what}");
        }

        // Accepted, and still true of every record: verify passes, queries are exact.
        let sound = [
            (
                "an unknown empty section",
                changed_signed_index(|i| {
                    i.sections.push(crate::format::index::Section {
                        kind: 9,
                        bytes: Vec::new(),
                    })
                }),
            ),
            (
                "no query sections",
                changed_signed_index(|i| i.sections.clear()),
            ),
            (
                "every block unfiltered",
                changed_signed_index(|i| {
                    let mut f = section(i, SECTION_BLOCK_FILTERS)[..FILTER_HEADER_LEN].to_vec();
                    f.resize(FILTER_HEADER_LEN + i.entries.len(), 0);
                    *section(i, SECTION_BLOCK_FILTERS) = f;
                }),
            ),
            (
                "every mark unknown",
                changed_signed_index(|i| {
                    let marks = vec![MARK_UNKNOWN; i.record_count as usize];
                    *section(i, SECTION_USER_MARKS) = encode_user_marks(&marks).bytes;
                }),
            ),
            (
                "interval changed",
                changed_signed_index(|i| i.interval = 300),
            ),
        ];
        for (what, data) in &sound {
            let run = signed_index_run(data).unwrap();
            assert!(!run.pristine, "{what}");
            assert_eq!(run.findings, Some(vec![]), "{what}");
            assert_eq!((run.query_errors, run.events), (0, run.expected), "{what}");
        }

        // Accepted, signed, and wrong: verify says so; queries may miss records or report
        // errors, but return nothing false (the harness checks every event returned).
        let wrong = [
            (
                "covered_len and an entry past the end of the segment",
                changed_signed_index(|i| {
                    i.covered_len = seg_len + 4096;
                    i.entries.last_mut().unwrap().offset = seg_len + 100;
                }),
            ),
            (
                "an entry inside a record",
                changed_signed_index(|i| i.entries[5].offset += 1),
            ),
            (
                "mark_starts off by one (an entry's seq)",
                changed_signed_index(|i| i.entries[4].seq = i.entries[5].seq - 1),
            ),
            (
                "marks shifted by one record",
                changed_signed_index(|i| {
                    let mut marks = i.user_marks().unwrap().unwrap();
                    marks.rotate_left(1);
                    *section(i, SECTION_USER_MARKS) = encode_user_marks(&marks).bytes;
                }),
            ),
            (
                "a block's times narrowed",
                changed_signed_index(|i| {
                    let mut times = i.block_times().unwrap().unwrap();
                    let k = (1..times.len())
                        .find(|&k| times[k].0 < times[k].1 && times[k].0 > i.min_ts)
                        .unwrap();
                    times[k].0 = Timestamp(times[k].0.0 + 1);
                    *section(i, SECTION_BLOCK_TIMES) = encode_block_times(&times).bytes;
                }),
            ),
            (
                "an empty filter that is not 'no filter'",
                changed_signed_index(|i| {
                    let f = i.block_filters().unwrap().unwrap();
                    let mut out = f.probing.header().to_vec();
                    for b in 0..i.entries.len() {
                        let bits = if b == 7 {
                            vec![0; f.filter(b).len()]
                        } else {
                            f.filter(b).to_vec()
                        };
                        put_bytes(&mut out, &bits);
                    }
                    *section(i, SECTION_BLOCK_FILTERS) = out;
                }),
            ),
            (
                "record_count short by one",
                changed_signed_index(|i| {
                    i.record_count -= 1;
                    let mut marks = i.user_marks().ok().flatten().unwrap_or_default();
                    marks.truncate(i.record_count as usize);
                    *section(i, SECTION_USER_MARKS) = encode_user_marks(&marks).bytes;
                }),
            ),
        ];
        for (what, data) in &wrong {
            let run = signed_index_run(data).unwrap();
            let findings = run.findings.unwrap();
            assert!(
                findings.contains(&FindingKind::IndexMismatch),
                "{what}: {findings:?}"
            );
        }

        for cut in (0..pristine.len()).step_by(61) {
            fuzz_signed_index(&pristine[..cut]);
        }
        fuzz_signed_index(&[]);
    }
}
