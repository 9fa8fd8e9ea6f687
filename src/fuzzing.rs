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
    entry::open(&org, month, 0, rec, hash).is_ok()
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
                Item::Damage { start, end, .. } => (*start, *end),
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
        assert!(
            !matches!(result, Err(ref e) if !matches!(e, crate::Error::Io { .. })),
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
        && let Ok(reader) = SegmentReader::open(
            Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())),
            Arc::new(FuzzKeys),
        )
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
        let targets: [(&str, Target); 3] = [
            ("record", fuzz_record),
            ("segment", fuzz_segment),
            ("index", fuzz_index),
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
}
