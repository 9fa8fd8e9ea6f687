//! Verifying one segment file (and its index) record by record, collecting findings.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::report::{Finding, FindingKind as K};
use crate::crypto::{self, Hash, KeyId, KeyProvider, Signers};
use crate::entry;
use crate::event::OrgId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::index::{
    INDEX_TRAILER_LEN, IndexEntry, IndexHead, KeyFields, MARK_UNKNOWN, TermProbe,
};
use crate::format::record::{FrameError, MIN_FRAME_LEN};
use crate::format::{DecodeError, DecodeErrorKind};
use crate::segment::index_file::{self, GroupBlocks, Rejected, Summary, TagCheck};
use crate::segment::scan::{self, FileWindow};
use crate::time::Timestamp;

/// Whether `head` is a whole segment header whose stored CRC (its last 4 bytes) is the
/// CRC-32 of the rest.
fn crc_holds(head: &[u8]) -> bool {
    head.len() == SEGMENT_HEADER_LEN
        && head
            .split_last_chunk::<4>()
            .is_some_and(|(body, crc)| crate::format::crc32(body) == u32::from_le_bytes(*crc))
}

/// Findings of one kind listed per file before the rest are summarised in one finding.
const PER_KIND_LIMIT: usize = 50;

/// Longest run of earlier-seen seqs a forward jump may skip without being a gap.
const SEQ_LOOKBACK: u64 = 1024;

/// Out-of-order distance that earns a timestamp warning.
const REORDER_WARNING_US: i64 = 24 * 3600 * 1_000_000;

/// What the verification of one segment produced.
pub(crate) struct SegmentOutcome {
    pub header: Option<SegmentHeader>,
    pub findings: Vec<Finding>,
    pub records: u64,
    pub bytes: u64,
    /// Chain hash after `count` records, for each requested count that was reached
    /// (0 = genesis). Only records in an unbroken run from the start count.
    pub heads: HashMap<u64, Hash>,
    /// Chain hash after `count` readable records, for each requested count that was
    /// reached, whether or not the run from the start is unbroken (the header may be
    /// unreadable): the evidence that a file whose header cannot be read is the segment a
    /// readable link names (the link's head is one of its records' chain hashes).
    pub loose_heads: HashMap<u64, Hash>,
    /// Records in the unbroken run from the start.
    pub run_count: u64,
    /// Where the unbroken run from the start ends: the first byte not covered by it.
    pub run_end: u64,
    /// For each count in `heads`, the byte offset where that many records end.
    pub head_ends: HashMap<u64, u64>,
    /// Largest seq, last time and chain head of the unbroken run.
    pub run_last: Option<(u64, Timestamp, Hash)>,
    /// Where verification stopped in a live segment.
    pub verified_to: u64,
    /// Chain hash of the last readable record (after any damage).
    pub last_hash: Option<Hash>,
    /// Whether unreadable bytes (crash damage or corruption) were found: links and
    /// checkpoints cannot be followed through them, and the damage is its own finding.
    pub damaged: bool,
    /// The only unreadable bytes are a torn tail: a file that ends inside a frame, or
    /// garbled bytes at its end. That loses only records no link or checkpoint can have
    /// named (they name durable records), so it excuses none that one did.
    pub torn_only: bool,
    /// The segment or its index could not be read (permissions, I/O): not a finding, the
    /// verification as a whole fails.
    pub io_error: Option<crate::error::Error>,
    /// The largest seq of a readable record.
    pub max_seq: Option<u64>,
    /// The most records the unreadable bytes before the segment's end could have held (a
    /// torn tail not counted): how far damage can explain a count that falls short. Per
    /// stretch, one per smallest frame, and no more than the seqs missing between the
    /// readable records around it.
    pub hidden_max: u64,
    /// Its header is of a newer format than this build reads: nothing in it (nor its
    /// index) was verified, and links and checkpoints into it cannot be followed (the
    /// `unsupported_format` finding is the error).
    pub unsupported: bool,
    /// The segment's header or its index is of a newer format: the file and what says so
    /// (for refusing a checkpoint with what it is, not as a failed verification).
    pub newer: Option<(PathBuf, DecodeError)>,
    /// Per file (the segment, its index), the first key id the keyring lacks that signed
    /// something in it: the `unknown_key` findings' key.
    pub unknown_keys: Vec<(PathBuf, KeyId)>,
    /// For each requested count `n` (links, checkpoints), the chain hash of the first
    /// authentic record (chained to the record read before it, its tag verifying when there
    /// are keys) whose seq is `first_seq + n − 1`, read wherever it lies, past damage too:
    /// the head a link or checkpoint pinned at `n`, when the run from the start breaks
    /// before it. Keyed by seq.
    pub pinned_hashes: HashMap<u64, Hash>,
    /// The same for seq `first_seq + n`: that record's `prev`, which must be the head
    /// pinned at `n`.
    pub pinned_prevs: HashMap<u64, Hash>,
}

/// How to check a segment.
pub(crate) struct SegmentCheck<'a> {
    pub org: &'a OrgId,
    pub id: SegmentId,
    pub path: &'a Path,
    pub keys: Option<&'a dyn KeyProvider>,
    /// Whether a live writer may be appending to this file (then an incomplete last frame,
    /// or a header not yet whole, is not damage): asked only when such an end is found.
    pub live: &'a super::Liveness,
    /// Whether this is the latest part of its month (the only file a crash can tear).
    pub latest: bool,
    /// Counts at which the chain head is wanted (links, checkpoints).
    pub wanted: &'a BTreeSet<u64>,
    pub now: Timestamp,
}

/// Findings of one segment and its index, capped per (kind, file).
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
    per_kind: HashMap<(K, PathBuf), usize>,
    /// See [`SegmentOutcome::newer`].
    newer: Option<(PathBuf, DecodeError)>,
    /// See [`SegmentOutcome::unknown_keys`].
    unknown_keys: Vec<(PathBuf, KeyId)>,
}

impl Findings {
    /// Notes that `file` holds something signed with `key`, which the keyring lacks.
    fn unknown_key(&mut self, file: &Path, key: KeyId) {
        if !self.unknown_keys.iter().any(|(p, _)| p == file) {
            self.unknown_keys.push((file.to_path_buf(), key));
        }
    }

    fn push(&mut self, f: Finding) {
        let n = self.per_kind.entry((f.kind, f.file.clone())).or_insert(0);
        *n += 1;
        if *n <= PER_KIND_LIMIT {
            self.list.push(f);
        }
    }

    /// The findings, and moves what else was learnt into `out`.
    fn finish_into(self, out: &mut SegmentOutcome) {
        out.newer = self.newer.clone();
        out.unknown_keys = self.unknown_keys.clone();
        out.findings = self.finish();
    }

    fn finish(mut self) -> Vec<Finding> {
        let mut extra: Vec<(K, PathBuf, usize)> = self
            .per_kind
            .into_iter()
            .filter(|(_, n)| *n > PER_KIND_LIMIT)
            .map(|((k, file), n)| (k, file, n - PER_KIND_LIMIT))
            .collect();
        extra.sort_by_key(|(k, file, _)| (k.name(), file.clone()));
        for (k, file, n) in extra {
            let mut more = Finding::new(
                k,
                file,
                format!(
                    "{n} more findings of this kind in this file (first {PER_KIND_LIMIT} listed)"
                ),
            );
            more.omitted = n as u64;
            self.list.push(more);
        }
        self.list
    }
}

/// Facts about the segment at offsets the index names, for comparing with the index.
#[derive(Clone, Copy)]
struct AtOffset {
    seq: u64,
    max_ts_before: Timestamp,
    /// The same, with each record whose tag fails counted at the last instant of its
    /// segment's month: what an index rebuilt by recovery says (FORMAT.md §3.1).
    max_ts_rebuilt: Timestamp,
    count_before: u64,
    head_before: Hash,
}

pub(crate) fn verify_segment(c: &SegmentCheck<'_>) -> SegmentOutcome {
    let mut f = Findings::default();
    let mut out = SegmentOutcome {
        header: None,
        findings: Vec::new(),
        records: 0,
        bytes: 0,
        heads: HashMap::new(),
        loose_heads: HashMap::new(),
        run_count: 0,
        run_end: 0,
        head_ends: HashMap::new(),
        run_last: None,
        verified_to: 0,
        last_hash: None,
        damaged: false,
        torn_only: false,
        io_error: None,
        max_seq: None,
        hidden_max: 0,
        unsupported: false,
        newer: None,
        unknown_keys: Vec::new(),
        pinned_hashes: HashMap::new(),
        pinned_prevs: HashMap::new(),
    };
    // The index before the segment's length: an index never covers bytes not yet written, so
    // a length taken after reading it is at least what it covers, even while a live writer
    // appends and replaces the index.
    let ipath = c.path.with_extension("idx");
    // Absent, or not a regular file (the listing reported that): no index.
    let unread = |e: &std::io::Error| {
        !matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
        )
    };
    let mut index_absent = false;
    let index_file = match crate::segment::open_regular(&ipath) {
        Ok(f) => Some(f),
        Err(e) if unread(&e) => {
            out.io_error = Some(crate::error::Error::io("open index", &ipath, e));
            return out;
        }
        Err(e) => {
            index_absent = e.kind() == std::io::ErrorKind::NotFound;
            None
        }
    };
    let file = match crate::segment::open_regular(c.path) {
        Ok(file) => file,
        Err(e) if unread(&e) => {
            out.io_error = Some(crate::error::Error::io("open segment", c.path, e));
            return out;
        }
        Err(e) => {
            f.push(Finding::new(
                K::MissingSegment,
                c.path,
                format!("cannot open: {e}"),
            ));
            f.finish_into(&mut out);
            return out;
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    out.bytes = len;
    let mut win = FileWindow::new(file, len);
    let head_bytes = win
        .get(0, SEGMENT_HEADER_LEN)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let header = match SegmentHeader::decode(&head_bytes) {
        Ok(h) => Some(h),
        // A newer format: its records cannot be told from damage by this build, so none
        // is read (and its index, which describes them, is not either).
        Err(e) if e.needs_newer_reader() => {
            f.push(
                Finding::new(
                    K::UnsupportedFormat,
                    c.path,
                    format!(
                        "{e}; nothing in this segment or its index was verified: verify it with a newer auditlog"
                    ),
                )
                .at(0, SEGMENT_HEADER_LEN as u64),
            );
            f.newer = Some((c.path.to_path_buf(), e));
            out.unsupported = true;
            f.finish_into(&mut out);
            return out;
        }
        // Being created, if a writer is live: it only ever creates the latest part of a
        // month.
        Err(_) if len < SEGMENT_HEADER_LEN as u64 && c.latest && c.live.now() => None,
        Err(e) if len < SEGMENT_HEADER_LEN as u64 && c.latest => {
            f.push(
                Finding::new(
                    K::TornTail,
                    c.path,
                    format!("incomplete segment header ({len} bytes): {e}"),
                )
                .at(0, len),
            );
            None
        }
        Err(e) => {
            // With its CRC holding, the header was written as it is (an edit that fixed
            // the CRC), not rotted.
            let kind = if crc_holds(&head_bytes) {
                K::MalformedHeader
            } else {
                K::ChecksumCorruption
            };
            f.push(
                // The error names the structure (`segment header: field ...`).
                Finding::new(kind, c.path, e.to_string()).at(0, SEGMENT_HEADER_LEN as u64),
            );
            None
        }
    };
    if let Some(h) = &header
        && (&h.org != c.org || h.id != c.id)
    {
        f.push(
            Finding::new(
                K::Misfiled,
                c.path,
                format!(
                    "header says org {} segment {}, file says org {} segment {}",
                    h.org, h.id, c.org, c.id
                ),
            )
            .at(0, SEGMENT_HEADER_LEN as u64),
        );
    }
    let genesis = header.as_ref().map(|_| crypto::sha256(&head_bytes));
    // Whose records the bodies are checked as: the header's segment, or without a header
    // the file's name. Without a header they are still checked: openings lie outside the
    // chain and the tag, so their commitments are the only check on them, and an
    // unreadable header must not excuse an altered IP address beside it.
    let body_id = header.as_ref().map_or(c.id, |h| h.id);
    if let Some(g) = genesis {
        out.heads.insert(0, g);
        out.head_ends.insert(0, SEGMENT_HEADER_LEN as u64);
        out.run_end = SEGMENT_HEADER_LEN as u64;
    }

    // The index, checked on its own first (one streaming pass); its claims are compared
    // with the segment as the walk below reaches the offsets it names.
    let index =
        index_file.and_then(|file| check_index(c, ipath, file, header.as_ref(), genesis, &mut f));
    let indexed_len = index.as_ref().map_or(0, |ix| ix.head.covered_len);
    let mut cmp = index.and_then(|ix| IndexCompare::new(c, ix, len, &mut f));
    let mut head = genesis;
    let mut expected = header.as_ref().map(|h| h.first_seq);
    let first_seq = header.as_ref().map_or(0, |h| h.first_seq);
    let seq_bound = len / u64::from(MIN_FRAME_LEN) + 1;
    let mut seen = SeqSet::new(first_seq, seq_bound);
    let mut run_intact = header.is_some();
    // The seqs of the records a requested count pins (its last, and the one after it),
    // known only from a readable header.
    let (pin_last, pin_next): (BTreeSet<u64>, BTreeSet<u64>) = match &header {
        Some(h) => (
            c.wanted
                .iter()
                .filter_map(|n| n.checked_sub(1).and_then(|k| h.first_seq.checked_add(k)))
                .collect(),
            c.wanted
                .iter()
                .filter_map(|n| h.first_seq.checked_add(*n))
                .collect(),
        ),
        None => (BTreeSet::new(), BTreeSet::new()),
    };
    let mut count: u64 = 0;
    let mut max_ts = Timestamp(i64::MIN);
    let mut max_ts_rebuilt = max_ts;
    let month_last = Timestamp(c.id.month.end().0.saturating_sub(1));
    let mut max_seq: Option<u64> = None;
    let mut signers = Signers::default();
    let mut terms = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as u64;
    out.verified_to = off.min(len);
    while off < len {
        let here = AtOffset {
            seq: expected.unwrap_or(0),
            max_ts_before: max_ts,
            max_ts_rebuilt,
            count_before: count,
            head_before: head.unwrap_or(Hash::ZERO),
        };
        if let Some(x) = cmp.as_mut() {
            x.covered(off, here);
        }
        // Decoded once: the body is checked here, while the frame is at hand, and so are
        // the fields the index describes it by (if it does).
        let frame = match win.frame(off) {
            Ok(Ok(rec)) => {
                let hash = crypto::chain_hash(rec.chained_bytes());
                let body = entry::check(c.org, body_id.month, body_id.part, &rec, hash);
                let mark = match cmp.as_ref() {
                    Some(x) if x.describes(off) => {
                        terms.clear();
                        KeyFields::parse(rec.sealed).ok().map(|k| {
                            k.terms(&mut terms);
                            k.user_mark()
                        })
                    }
                    _ => None,
                };
                Ok((rec.fields, rec.len(), hash, rec.tag, body, mark))
            }
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        };
        let (fields, flen, hash, tag, body, mark) = match frame {
            Ok(x) => x,
            Err(e) => {
                let next = scan::resync(&mut win, off + 1, max_seq).ok().flatten();
                let incomplete = matches!(e, Some(FrameError::Incomplete { .. }));
                // The seq and `prev_hash` of the record where frames resume, read once.
                let resumed = next.and_then(|n| {
                    let rec = win.frame(n).ok()?.ok()?;
                    Some((rec.fields.seq, rec.fields.prev))
                });
                match next {
                    None if c.latest && incomplete && c.live.now() => {
                        // A record being written right now: stop at the consistent prefix.
                        if let Some(x) = cmp.as_mut() {
                            x.record(off, here);
                        }
                        break;
                    }
                    // Bytes a (decodable) index covers were durable: damage there is not a
                    // torn tail, whatever follows it (recovery draws the same line).
                    None if c.latest && off >= indexed_len => {
                        if let Some(x) = cmp.as_mut() {
                            x.record(off, here);
                        }
                        f.push(
                            Finding::new(
                                K::TornTail,
                                c.path,
                                format!(
                                    "{} bytes at the end do not form a complete record (crash damage; recovery moves them to quarantine)",
                                    len - off
                                ),
                            )
                            .at(off, len - off),
                        );
                    }
                    _ => {
                        let end = next.unwrap_or(len);
                        if let Some(x) = cmp.as_mut() {
                            x.damage(off, end);
                        }
                        // The records the stretch can have held: one per smallest frame,
                        // and, between two readable records, no more than the seqs they
                        // leave out (the seqs are CRC-covered and chained: renumbering
                        // them fails the chain). Zeros inserted between seq 5 and seq 6
                        // hold none, however long: they used to excuse any cut.
                        let room = (end - off) / u64::from(MIN_FRAME_LEN);
                        let room = match (expected, resumed) {
                            (Some(exp), Some((seq, _))) => room.min(seq.saturating_sub(exp)),
                            _ => room,
                        };
                        out.hidden_max = out.hidden_max.saturating_add(room);
                        let why = match e {
                            Some(FrameError::Corrupt(d)) => d.to_string(),
                            Some(FrameError::Incomplete { needed, .. }) => {
                                format!("frame claims {needed} bytes, more than the file holds")
                            }
                            None => "unreadable".to_string(),
                        };
                        f.push(
                            Finding::new(
                                K::ChecksumCorruption,
                                c.path,
                                format!("{} damaged bytes: {why}", end - off),
                            )
                            .at(off, end - off),
                        );
                    }
                }
                run_intact = false;
                match next {
                    Some(n) => {
                        // Records after damage chain to a record we could not read.
                        if let Some((seq, prev)) = resumed {
                            head = Some(prev);
                            expected = Some(seq);
                        }
                        off = n;
                        continue;
                    }
                    None => {
                        off = len;
                        break;
                    }
                }
            }
        };
        if let Some(x) = cmp.as_mut() {
            x.record(off, here);
        }
        let seq = fields.seq;
        let finding = |k: K, msg: String| Finding::new(k, c.path, msg).at(off, flen).seq(seq);
        let mut linked = true;
        match expected {
            // A jump past seqs that all appeared earlier (out of order) is not a gap: the
            // sequence resumes after a reordered record, and the chain check below decides.
            Some(exp) if seq > exp && !seen.contains_all(exp, seq) => {
                linked = false;
                f.push(finding(
                    K::SeqGap,
                    format!(
                        "seq jumps from {} to {seq}: {} records missing",
                        exp.saturating_sub(1),
                        seq - exp
                    ),
                ));
            }
            Some(exp) if seq < exp => {
                linked = false;
                let kind = if seen.contains(seq) {
                    K::SeqDuplicate
                } else {
                    K::SeqReorder
                };
                f.push(finding(kind, format!("seq {seq} where {exp} was expected")));
            }
            _ => {}
        }
        if linked
            && let Some(h) = head
            && fields.prev != h
        {
            linked = false;
            f.push(finding(
                K::ChainBreak,
                format!(
                    "prev_hash {} is not the chain hash {h} of the record before: this record or its predecessor was altered",
                    fields.prev
                ),
            ));
        }
        if let Some(h) = &header
            && fields.occurred_at.month() != Some(h.id.month)
        {
            f.push(finding(
                K::Misfiled,
                format!(
                    "occurred_at {} is outside the segment's month {}",
                    fields.occurred_at, h.id.month
                ),
            ));
        }
        let mut authentic = linked;
        let mut tag_fails = false;
        if let Some(keys) = c.keys {
            // A key the provider fails to give is as unknown as one it does not have.
            match signers.get_or_unknown(keys, c.org, fields.key_id) {
                None => {
                    authentic = false;
                    tag_fails = true;
                    f.unknown_key(c.path, fields.key_id);
                    f.push(finding(
                        K::UnknownKey,
                        format!(
                            "tag made with key {} of org {}, which the keyring does not have",
                            fields.key_id, c.org
                        ),
                    ));
                }
                Some(s) if !s.verify_record(c.org, &hash, &tag) => {
                    authentic = false;
                    tag_fails = true;
                    f.push(finding(
                        K::TagMismatch,
                        format!(
                            "HMAC tag does not verify with key {} of org {}",
                            fields.key_id, c.org
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if authentic {
            if pin_last.contains(&seq) {
                out.pinned_hashes.entry(seq).or_insert(hash);
            }
            if pin_next.contains(&seq) {
                out.pinned_prevs.entry(seq).or_insert(fields.prev);
            }
        }
        // The index's query sections against the record, if it is the one that was written
        // there (else the finding above is the one to report, not the index's): a signed
        // index that contradicts an authentic record is a writer's fault.
        if authentic && let Some(x) = cmp.as_mut() {
            let keys = mark.map(|mark| RecordKeys {
                mark,
                terms: &terms,
            });
            x.contents(off, seq, fields.occurred_at, keys);
        }
        match body {
            Ok(erased) if !erased.is_empty() => f.push(finding(
                K::ErasedPersonalData,
                format!(
                    "personal data erased ({}): the openings commit to the sealed root, \
                     but nothing shows who erased it (erasing needs no key)",
                    erased.join(", ")
                ),
            )),
            Ok(_) => {}
            Err(e) => {
                let msg = match e {
                    entry::OpenError::Commitment => {
                        "personal-data openings do not match their sealed commitments".to_string()
                    }
                    entry::OpenError::Decode(d) => {
                        format!("CRC-valid record whose body does not decode: {d}")
                    }
                    // Erased slots come back as `Ok(erased)` from the check used here.
                    entry::OpenError::Erased(slots) => {
                        format!("personal data erased: {}", slots.join(", "))
                    }
                };
                f.push(finding(K::MalformedRecord, msg));
            }
        }
        if fields.occurred_at.0 < max_ts.0.saturating_sub(REORDER_WARNING_US) {
            f.push(finding(
                K::TimestampAnomaly,
                format!(
                    "occurred_at {} is more than a day before an earlier record's {max_ts}",
                    fields.occurred_at
                ),
            ));
        } else if fields.occurred_at.0 > c.now.0.saturating_add(REORDER_WARNING_US) {
            f.push(finding(
                K::TimestampAnomaly,
                format!("occurred_at {} is in the future", fields.occurred_at),
            ));
        }
        seen.insert(seq);
        max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
        out.max_seq = max_seq;
        max_ts = max_ts.max(fields.occurred_at);
        max_ts_rebuilt = max_ts_rebuilt.max(match tag_fails {
            true => month_last.max(fields.occurred_at),
            false => fields.occurred_at,
        });
        // What a link counting no records names is the segment's genesis, the hash of its
        // header; with the header unreadable, the first record's `prev` is the evidence
        // that this file is that segment, when its tag verifies (without a key anyone can
        // write a record with a `prev` copied from the link).
        if count == 0
            && off == SEGMENT_HEADER_LEN as u64
            && c.keys.is_some()
            && !tag_fails
            && c.wanted.contains(&0)
        {
            out.loose_heads.insert(0, fields.prev);
        }
        head = Some(hash);
        out.last_hash = Some(hash);
        expected = Some(seq.saturating_add(1));
        count += 1;
        out.records += 1;
        run_intact &= linked;
        if c.wanted.contains(&count) {
            out.loose_heads.insert(count, hash);
        }
        if run_intact {
            out.run_count = count;
            out.run_end = off + flen;
            out.run_last = Some((seq, fields.occurred_at, hash));
            if c.wanted.contains(&count) {
                out.heads.insert(count, hash);
                out.head_ends.insert(count, off + flen);
            }
        }
        off += flen;
        out.verified_to = off;
    }
    if let Some(x) = cmp {
        let here = AtOffset {
            seq: expected.unwrap_or(0),
            max_ts_before: max_ts,
            max_ts_rebuilt,
            count_before: count,
            head_before: head.unwrap_or(Hash::ZERO),
        };
        x.finish(c, off, here, &mut f);
    }
    // Records and no index, beside no live writer (whose latest part is indexed only every
    // `index_flush_bytes`): an index every closed or recovered segment has is gone.
    if index_absent && out.records > 0 && !(c.latest && c.live.now()) {
        f.push(Finding::new(
            K::MissingIndex,
            c.path.with_extension("idx"),
            format!(
                "{} holds {} records but has no index: a crash before its first index write, a full disk, or the index was deleted; a cut at its end shows only against a later segment's link or a checkpoint (the next writer rebuilds the index)",
                c.path.display(),
                out.records
            ),
        ));
    }
    out.header = header;
    f.finish_into(&mut out);
    // Only the segment's own unreadable bytes excuse a link that cannot be followed: a
    // corrupt index (derived data) says nothing about how many records the segment held.
    let own_damage = || {
        out.findings.iter().filter(|f| {
            f.file == c.path
                && matches!(
                    f.class,
                    super::report::Class::CrashDamage | super::report::Class::Corruption
                )
        })
    };
    let damaged = own_damage().next().is_some();
    let torn_only = damaged && own_damage().all(|f| f.kind == K::TornTail);
    out.damaged = damaged;
    out.torn_only = torn_only;
    out
}

/// An index that decoded (structure, sections, CRC), with its summary for reading it again.
struct CheckedIndex {
    head: IndexHead,
    path: PathBuf,
    file: File,
    len: u64,
    summary: Summary,
    /// Its tag verified: its query sections are what its key holder's writer claims.
    signed: bool,
}

/// Why an index's comparison stopped when its bytes read again are not those checked.
const CHANGED: &str = "the index changed while it was being verified";

/// Blocks per group when an index is read again for the comparison: the memory held is one
/// group's entries, times, filters and user marks.
const COMPARE_GROUP_BLOCKS: u64 = 1024;

/// Whether the index file's stored CRC (FORMAT.md §3: the 4 bytes before the 32-byte tag)
/// is not the CRC-32 of every byte before it; a file too short to hold them fails too.
/// Reads the whole file, in pieces; only called once the index has failed to decode.
/// `None` if the file cannot be read now (treated as absent, like any unreadable index).
fn index_crc_fails(file: &File, len: u64) -> Option<bool> {
    index_crc_check(file, len, false)
}

/// Whether the index is a v1 index whose format version rotted: its CRC fails as stored
/// but holds with the version (bytes 8..10) put back to 1. `None` as [`index_crc_fails`].
fn index_version_rotted(file: &File, len: u64) -> Option<bool> {
    Some(index_crc_check(file, len, false)? && !index_crc_check(file, len, true)?)
}

/// [`index_crc_fails`] as stored, or (`restore`) with bytes 8..10 put back to version 1.
fn index_crc_check(file: &File, len: u64, restore: bool) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    let Some(crc_at) = len.checked_sub(INDEX_TRAILER_LEN as u64) else {
        return Some(true);
    };
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < crc_at {
        let n = usize::try_from(crc_at - at).map_or(buf.len(), |r| r.min(buf.len()));
        let piece = buf.get_mut(..n)?;
        file.read_exact_at(piece, at).ok()?;
        if restore && at == 0 {
            for (b, v) in piece
                .iter_mut()
                .skip(8)
                .zip(crate::format::FORMAT_VERSION.to_le_bytes())
            {
                *b = v;
            }
        }
        crc.update(piece);
        at += n as u64;
    }
    let mut stored = [0u8; 4];
    file.read_exact_at(&mut stored, crc_at).ok()?;
    Some(u32::from_le_bytes(stored) != crc.finalize())
}

/// Checks an index on its own in one streaming pass (structure, and the tag when there are
/// keys) and whether its header describes this segment, reporting what fails. `None`: it
/// does not decode, so nothing of it can be compared.
fn check_index(
    c: &SegmentCheck<'_>,
    ipath: PathBuf,
    file: File,
    header: Option<&SegmentHeader>,
    genesis: Option<Hash>,
    f: &mut Findings,
) -> Option<CheckedIndex> {
    let ilen = file.metadata().map_or(0, |m| m.len());
    let checked =
        match index_file::check(file.try_clone().ok()?, c.org, c.keys, COMPARE_GROUP_BLOCKS) {
            Ok(x) => x,
            // Unreadable: as if absent (the segment is verified without it).
            Err(Rejected::Io(_)) => return None,
            Err(e) => {
                // Bytes that fail the index's CRC are corruption, as in a segment (bit rot,
                // or a change that did not fix the CRC), whatever part of the decoder noticed
                // first; a CRC-valid index that is malformed was made so. A newer format
                // (FORMAT.md §9) is neither: a version above this build's, unless the CRC
                // holds with the version put back to 1 (a v1 index whose version rotted);
                // unknown incompatible flags under a CRC that holds.
                let newer = match &e {
                    Rejected::Decode(d) => match d.kind {
                        DecodeErrorKind::UnsupportedVersion { .. } if d.needs_newer_reader() => {
                            !index_version_rotted(&file, ilen)?
                        }
                        DecodeErrorKind::UnknownIncompatibleFlags { .. } => {
                            !index_crc_fails(&file, ilen)?
                        }
                        _ => false,
                    },
                    _ => false,
                };
                let (kind, what) = if newer {
                    if let Rejected::Decode(d) = &e {
                        f.newer = Some((ipath.clone(), d.clone()));
                    }
                    (
                        K::UnsupportedFormat,
                        "index of a newer format, not verified (verify it with a newer auditlog)",
                    )
                } else if index_crc_fails(&file, ilen)? {
                    (K::ChecksumCorruption, "index fails its CRC")
                } else {
                    (K::IndexMismatch, "index does not decode")
                };
                f.push(Finding::new(kind, &ipath, format!("{what}: {e}")).at(0, ilen));
                return None;
            }
        };
    let ix = checked.head;
    match checked.tag {
        TagCheck::UnknownKey(_) => {
            f.unknown_key(&ipath, ix.key_id);
            f.push(
                Finding::new(
                    K::UnknownKey,
                    &ipath,
                    format!(
                        "index signed with key {} the keyring does not have",
                        ix.key_id
                    ),
                )
                .at(ilen.saturating_sub(32), 32),
            );
        }
        TagCheck::Mismatch => f.push(
            Finding::new(
                K::TagMismatch,
                &ipath,
                format!("index tag does not verify with key {}", ix.key_id),
            )
            .at(0, ilen),
        ),
        TagCheck::Verified | TagCheck::NotChecked => {}
    }
    let signed = checked.tag == TagCheck::Verified;
    let mut problems = Vec::new();
    if &ix.org != c.org || ix.segment != c.id {
        problems.push(format!("describes org {} segment {}", ix.org, ix.segment));
    }
    if let (Some(h), Some(g)) = (header, genesis) {
        if ix.segment_hash != g {
            problems.push("its segment_hash is not the hash of the segment header".to_string());
        }
        if ix.first_seq != h.first_seq {
            problems.push(format!(
                "first_seq {} but the segment starts at {}",
                ix.first_seq, h.first_seq
            ));
        }
    }
    // Whose index it is: the segment its header (when readable) or else its file name says
    // the file holds. Another segment's index (copied from another month or org, or
    // written before this segment's header was) says nothing about this one's records:
    // comparing it would report what is not true of this segment (a truncation, entries
    // that do not match). Its identity is the finding.
    let own = match (header, genesis) {
        (Some(h), Some(g)) => ix.org == h.org && ix.segment == h.id && ix.segment_hash == g,
        _ => &ix.org == c.org && ix.segment == c.id,
    };
    if !own {
        problems.push(
            "it was written for another segment (or for another header than this one), so nothing else in it was compared with this segment"
                .to_string(),
        );
    }
    if !problems.is_empty() {
        f.push(Finding::new(K::IndexMismatch, &ipath, problems.join("; ")).at(0, ilen));
    }
    if !own {
        return None;
    }
    Some(CheckedIndex {
        head: ix,
        path: ipath,
        file,
        len: ilen,
        summary: checked.summary?,
        signed,
    })
}

/// A record's indexed fields, as [`IndexCompare::contents`] compares them with its block.
struct RecordKeys<'a> {
    /// Its user mark (FORMAT.md §3.3).
    mark: u16,
    /// The hashes of its filter terms (FORMAT.md §3.2).
    terms: &'a [u64],
}

/// Records that disagree with one of the index's query sections: how many, and the first.
#[derive(Default)]
struct Disagreement {
    count: u64,
    first: Option<(u64, u64)>,
}

impl Disagreement {
    fn add(&mut self, ok: bool, seq: u64, off: u64) {
        if !ok {
            self.count += 1;
            self.first.get_or_insert((seq, off));
        }
    }
}

/// Compares an index's claims with the segment as the walk goes:
///
/// - its sparse entries against the records at their offsets;
/// - its `covered_len`, `record_count` and `head` against the records before `covered_len`;
/// - its query sections (FORMAT.md §3.1–3.3) against each record before `covered_len`: the
///   block's times must hold the record's `occurred_at`, the block's filter must admit every
///   one of its terms, and its user mark must be its user's (or `1`, "any user"). These are
///   what queries skip by, so a section that fails them would make a query miss the record
///   without an error.
///
/// The blocks are read again a group at a time, each group's bytes checked against the
/// digest taken while the index was checked, so that what is compared is what was checked.
/// Memory: one group.
struct IndexCompare {
    ix: CheckedIndex,
    /// The group of the current block (the last entry passed), read again and checked.
    group: Option<(u64, GroupBlocks)>,
    /// The current block's number; `None` before the first entry.
    block: Option<u64>,
    /// The next entry not yet reached, and its number.
    next: Option<IndexEntry>,
    next_no: u64,
    /// Why the index could not be read again as it was checked, if it could not: what
    /// follows that point is not compared.
    stopped: Option<String>,
    /// The facts at `covered_len`, once the walk reaches it.
    at_covered: Option<AtOffset>,
    /// Start of the first unreadable stretch (reported as corruption).
    first_damage: u64,
    /// Entries that do not match.
    bad: u64,
    /// Records outside their block's times, with a term their block's filter does not admit,
    /// and with a user mark that is not their user's.
    times: Disagreement,
    filters: Disagreement,
    marks: Disagreement,
    /// Records before the first entry: in no block.
    unblocked: Disagreement,
    /// Scratch for a record's filter probes.
    probes: Vec<TermProbe>,
}

impl IndexCompare {
    /// `None` when nothing can be compared: the index covers more than the segment has.
    fn new(c: &SegmentCheck<'_>, ix: CheckedIndex, seg_len: u64, f: &mut Findings) -> Option<Self> {
        if ix.head.covered_len > seg_len {
            f.push(
                Finding::new(
                    K::IndexMismatch,
                    c.path,
                    format!(
                        "the index covers {} bytes but the segment has only {seg_len}: the segment was truncated after the index was written (or, in a copy, the segment was copied before the index while a writer appended: copy a live log's .idx files before its .seg files, or stop the writer)",
                        ix.head.covered_len
                    ),
                )
                .at(seg_len, ix.head.covered_len - seg_len),
            );
            return None;
        }
        let next = ix.summary.groups.first().map(|g| g.first);
        Some(IndexCompare {
            ix,
            group: None,
            block: None,
            next,
            next_no: 0,
            stopped: None,
            at_covered: None,
            first_damage: u64::MAX,
            bad: 0,
            times: Disagreement::default(),
            filters: Disagreement::default(),
            marks: Disagreement::default(),
            unblocked: Disagreement::default(),
            probes: Vec::new(),
        })
    }

    /// Whether the record at `off` is among those the index describes and its query
    /// sections are to be compared with. Only a signed index's are: an index whose tag does
    /// not verify (or was not checked) is already reported or cannot be, and queries do
    /// not use it.
    fn describes(&self, off: u64) -> bool {
        self.ix.signed && off < self.ix.head.covered_len && self.stopped.is_none()
    }

    /// The next entry was reached or passed: its block becomes the current one (reading its
    /// group again if it starts one), and the entry after it the next.
    fn advance(&mut self) {
        let Some(_) = self.next.take() else {
            return;
        };
        let s = &self.ix.summary;
        let (i, gb) = (self.next_no, s.group_blocks);
        self.block = Some(i);
        if i.is_multiple_of(gb) {
            self.group = match s.group(&self.ix.file, (i / gb) as usize) {
                Ok(blocks) => Some((i / gb, blocks)),
                Err(Rejected::Io(e)) => {
                    self.stopped = Some(format!("the index could not be read again: {e}"));
                    return;
                }
                Err(_) => {
                    self.stopped = Some(CHANGED.to_string());
                    return;
                }
            };
        }
        self.next_no = i + 1;
        if self.next_no >= s.blocks {
            return;
        }
        self.next = if self.next_no.is_multiple_of(gb) {
            s.groups.get((self.next_no / gb) as usize).map(|g| g.first)
        } else {
            self.group.as_ref().and_then(|(g, blocks)| {
                let j = self.next_no.checked_sub(g * gb)?;
                blocks.entries.get(j as usize).copied()
            })
        };
        if self.next.is_none() {
            self.stopped = Some(CHANGED.to_string());
        }
    }

    /// The walk is at `off`, with `here` the facts before it.
    fn covered(&mut self, off: u64, here: AtOffset) {
        if off == self.ix.head.covered_len && self.at_covered.is_none() {
            self.at_covered = Some(here);
        }
    }

    /// Entries before `off` were passed without landing on a record: they do not match.
    fn pass(&mut self, off: u64) {
        while let Some(e) = self.next
            && e.offset < off
        {
            self.bad += 1;
            self.advance();
        }
    }

    /// A record (or the end of what can be read) at `off`, with `here` the facts before it.
    fn record(&mut self, off: u64, here: AtOffset) {
        self.pass(off);
        if let Some(e) = self.next
            && e.offset == off
        {
            let ok = if off > self.first_damage {
                here.seq == e.seq
            } else {
                // An index written before a record was altered has its true time; one
                // rebuilt after, its month (FORMAT.md §3.1).
                here.seq == e.seq
                    && (here.max_ts_before == e.max_ts_before
                        || here.max_ts_rebuilt == e.max_ts_before)
            };
            self.bad += u64::from(!ok);
            self.advance();
        }
    }

    /// The record at `off` (after [`IndexCompare::record`]), of `seq` and `occurred_at`, with
    /// its indexed fields (`None`: its body does not parse), against its block's times and
    /// filter and its user mark.
    fn contents(
        &mut self,
        off: u64,
        seq: u64,
        occurred_at: Timestamp,
        keys: Option<RecordKeys<'_>>,
    ) {
        if !self.describes(off) {
            return;
        }
        let Some(block) = self.block else {
            // Before the first entry: in no block, so no query would read it.
            self.unblocked.add(false, seq, off);
            return;
        };
        let Some((g, blocks)) = self.group.as_ref() else {
            return;
        };
        let Some(j) = block
            .checked_sub(g * self.ix.summary.group_blocks)
            .map(|j| j as usize)
        else {
            return;
        };
        if let Some(&(lo, hi)) = blocks.times.as_ref().and_then(|t| t.get(j)) {
            self.times
                .add(lo <= occurred_at && occurred_at <= hi, seq, off);
        }
        if let Some(filters) = &blocks.filters {
            let ok = match &keys {
                Some(k) => {
                    self.probes.clear();
                    self.probes
                        .extend(k.terms.iter().map(|&h| TermProbe::new(h)));
                    filters.may_contain_all(j, &self.probes)
                }
                // Its terms cannot be read: only "no filter" admits it.
                None => filters.filter(j).is_empty(),
            };
            self.filters.add(ok, seq, off);
        }
        if let Some(marks) = &blocks.marks {
            let stored = blocks
                .entries
                .first()
                .and_then(|e| seq.checked_sub(e.seq))
                .and_then(|i| marks.get(usize::try_from(i).ok()?));
            let ok = match (stored, &keys) {
                (Some(&MARK_UNKNOWN), _) => true,
                (Some(&m), Some(k)) => m == k.mark,
                _ => false,
            };
            self.marks.add(ok, seq, off);
        }
    }

    /// Unreadable bytes `[start, end)`: entries inside them cannot be compared.
    fn damage(&mut self, start: u64, end: u64) {
        self.pass(start);
        self.first_damage = self.first_damage.min(start);
        while let Some(e) = self.next
            && e.offset < end
        {
            self.advance();
        }
    }

    /// The walk ended at `off` with `here` the facts there: compares what is left and
    /// reports.
    fn finish(mut self, c: &SegmentCheck<'_>, off: u64, here: AtOffset, f: &mut Findings) {
        self.covered(off, here);
        self.record(off, here);
        while self.next.is_some() {
            self.bad += 1;
            self.advance();
        }
        let (ipath, ilen) = (self.ix.path.as_path(), self.ix.len);
        let ix = &self.ix.head;
        if self.stopped.is_none() && self.next_no != self.ix.summary.blocks {
            self.stopped = Some(CHANGED.to_string());
        }
        if let Some(why) = &self.stopped {
            f.push(
                Finding::new(
                    K::IndexMismatch,
                    ipath,
                    format!("{why}: its entries from there on were not compared"),
                )
                .at(0, ilen),
            );
        }
        // Past the first damaged stretch (already reported), counts, chain heads and
        // timestamps are those of the readable records only and cannot be compared; nor
        // can they once the index could not be read again.
        match self.at_covered {
            _ if self.stopped.is_some() => {}
            _ if self.first_damage < ix.covered_len => {}
            None => f.push(
                Finding::new(
                    K::IndexMismatch,
                    ipath,
                    format!(
                        "covered_len {} is not a record boundary of the segment",
                        ix.covered_len
                    ),
                )
                .at(0, ilen),
            ),
            Some(a) => {
                if a.count_before != ix.record_count || a.head_before != ix.head {
                    f.push(
                        Finding::new(
                            K::IndexMismatch,
                            c.path,
                            format!(
                                "the index says {} records ending in chain hash {} before byte {}; the segment has {} ending in {}",
                                ix.record_count, ix.head, ix.covered_len, a.count_before, a.head_before
                            ),
                        )
                        .at(SEGMENT_HEADER_LEN as u64, ix.covered_len.saturating_sub(SEGMENT_HEADER_LEN as u64)),
                    );
                }
            }
        }
        if self.bad > 0 && self.stopped.is_none() {
            f.push(
                Finding::new(
                    K::IndexMismatch,
                    ipath,
                    format!(
                        "{} sparse entries do not match the segment's records",
                        self.bad
                    ),
                )
                .at(0, ilen),
            );
        }
        for (d, what, stake) in [
            (
                &self.unblocked,
                "lie before the index's first entry, in no block",
                "any query using the index",
            ),
            (
                &self.times,
                "lie outside their block's times (section 1)",
                "a time-range query",
            ),
            (
                &self.filters,
                "have a term their block's filter (section 2) does not admit",
                "a query by user, action, resource or trace",
            ),
            (
                &self.marks,
                "have a user mark (section 3) that is not their user's",
                "a query by user",
            ),
        ] {
            if let Some((seq, at)) = d.first {
                f.push(
                    Finding::new(
                        K::IndexMismatch,
                        ipath,
                        format!(
                            "{} records {what}, the first seq {seq} at byte {at} of the segment: {stake} would skip them without an error",
                            d.count
                        ),
                    )
                    .at(0, ilen)
                    .seq(seq),
                );
            }
        }
    }
}

/// Which seqs were seen, for telling a duplicate from a reorder; bounded by the file size.
struct SeqSet {
    base: u64,
    bound: u64,
    bits: Vec<u64>,
}

impl SeqSet {
    fn new(base: u64, bound: u64) -> Self {
        SeqSet {
            base,
            bound,
            bits: Vec::new(),
        }
    }

    fn slot(&self, seq: u64) -> Option<(usize, u64)> {
        let i = seq.checked_sub(self.base)?;
        (i < self.bound).then(|| ((i / 64) as usize, 1u64 << (i % 64)))
    }

    fn insert(&mut self, seq: u64) {
        if let Some((w, b)) = self.slot(seq) {
            if self.bits.len() <= w {
                self.bits.resize(w + 1, 0);
            }
            if let Some(word) = self.bits.get_mut(w) {
                *word |= b;
            }
        }
    }

    fn contains(&self, seq: u64) -> bool {
        self.slot(seq)
            .and_then(|(w, b)| self.bits.get(w).map(|word| word & b != 0))
            .unwrap_or(false)
    }

    /// Whether every seq in `from..to` was seen. Looks at most `SEQ_LOOKBACK` seqs (hostile
    /// input must not make this quadratic); a longer range counts as not all seen.
    fn contains_all(&self, from: u64, to: u64) -> bool {
        to.saturating_sub(from) <= SEQ_LOOKBACK && (from..to).all(|s| self.contains(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    use super::*;
    use crate::format::index::ENTRY_LEN;
    use crate::fuzzing::{FuzzKeys, small_log};
    use crate::log::Options;
    use crate::segment::{index_file_name, segment_file_name};

    /// The entries are read twice (checked, then compared beside the walk): bytes changed in
    /// between are reported, not compared as if they were the checked ones.
    #[test]
    fn an_index_changed_between_its_check_and_the_comparison_is_reported() {
        let mut opts = Options::new(Arc::new(FuzzKeys));
        opts.index_interval = 256;
        let (dir, org, id) = small_log(opts, 200);
        let seg = dir.path().join(org.as_str()).join(segment_file_name(id));
        let ipath = dir.path().join(org.as_str()).join(index_file_name(id));
        let wanted = BTreeSet::new();
        let c = SegmentCheck {
            org: &org,
            id,
            path: &seg,
            keys: Some(&FuzzKeys),
            live: &crate::verify::Liveness::never(),
            latest: true,
            wanted: &wanted,
            now: Timestamp::now(),
        };
        let run = |change: bool| {
            let mut f = Findings::default();
            let ix = check_index(
                &c,
                ipath.clone(),
                File::open(&ipath).unwrap(),
                None,
                None,
                &mut f,
            )
            .unwrap();
            assert!(ix.summary.blocks > 2);
            if change {
                // The second entry's seq, in place, after the check.
                let at = ix.summary.entries_at + ENTRY_LEN as u64;
                let file = File::options().read(true).write(true).open(&ipath).unwrap();
                let mut b = [0u8; 1];
                file.read_exact_at(&mut b, at).unwrap();
                file.write_all_at(&[b[0] ^ 1], at).unwrap();
            }
            let len = std::fs::metadata(&seg).unwrap().len();
            let x = IndexCompare::new(&c, ix, len, &mut f).unwrap();
            let here = AtOffset {
                seq: 0,
                max_ts_before: Timestamp(i64::MIN),
                max_ts_rebuilt: Timestamp(i64::MIN),
                count_before: 0,
                head_before: Hash::ZERO,
            };
            x.finish(&c, len, here, &mut f);
            f.finish()
        };
        let unchanged = run(false);
        assert!(
            unchanged.iter().all(|f| !f.message.contains("changed")),
            "{unchanged:?}"
        );
        let changed = run(true);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].kind, K::IndexMismatch);
        assert!(
            changed[0]
                .message
                .contains("changed while it was being verified")
        );
    }
}
