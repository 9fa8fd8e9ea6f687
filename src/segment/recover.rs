//! Bringing a segment back to a writable state after a crash, without destroying evidence.
//!
//! - Clean (its index matches and every frame passes its CRC): resume at its end.
//! - Torn tail (one unreadable stretch at the end, nothing valid after it, no chain or seq
//!   failure anywhere): copy the stretch to `quarantine/`, fsync it, then truncate.
//! - Anything else (damage followed by valid records, a CRC-valid record that breaks the chain
//!   or the seq order, an unreadable header on a file holding records, a file shorter than
//!   an authentic index of it covers or without the header it describes): nothing is cut,
//!   and such an index is not rebuilt (it is the evidence). The caller seals the file
//!   read-only and continues the month in a continuation part, past every seq the index
//!   vouches for.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::index_file::{self, IndexEvidence};
use super::quarantine::Quarantine;
use super::scan::{self, DamageCause, DamageRange, FileWindow, IndexBuilder, ScanOutcome, Tally};
use super::{FileStamp, index_file_name, segment_file_name};
use crate::crypto::{self, Hash, KeyProvider};
use crate::error::{Error, Result};
use crate::event::OrgId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::index::IndexHead;
use crate::format::record::{FrameError, MIN_FRAME_LEN};
use crate::format::{DecodeError, DecodeErrorKind};

/// What recovery found in one segment.
pub(crate) enum Recovered {
    /// Writable: resume with this state.
    Ready {
        header: SegmentHeader,
        genesis: Hash,
        file: File,
        tally: Tally,
        torn: Option<TornTail>,
        index_rebuilt: Option<String>,
        /// An index that could not be checked (its key is missing), copied to quarantine
        /// before the writer rebuilds over it.
        index_kept: Option<IndexKept>,
    },
    /// The file held only a partial header (a crash while creating it); it was moved to
    /// quarantine and the segment does not exist any more.
    NoHeader { moved_to: PathBuf },
    /// Damaged: must not be written again.
    Damaged {
        header: Option<SegmentHeader>,
        outcome: ScanOutcome,
        /// Past every seq the part may have issued: the continuation's `first_seq` is at
        /// least this (the header's `first_seq`, past every seq readable or vouched for by
        /// an index that is or may be authentic, and room for records in its unreadable
        /// end; for a headerless part without records or index, from the part before it).
        seq_floor: u64,
    },
}

/// An index copied to quarantine before it is rebuilt over.
#[derive(Clone, Debug)]
pub(crate) struct IndexKept {
    /// The index file.
    pub index: PathBuf,
    /// Why it could not be checked.
    pub reason: String,
    /// Its copy.
    pub copied_to: PathBuf,
}

/// A torn tail that was moved aside.
#[derive(Clone, Debug)]
pub(crate) struct TornTail {
    pub offset: u64,
    pub len: u64,
    pub moved_to: PathBuf,
}

/// Why an index file could not be opened, as the reason an index is not used.
pub(crate) fn unopened(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "missing".into()
    } else {
        format!("unreadable: {e}")
    }
}

/// Loads and checks a segment's index whole; `Err` says why it cannot be used. The
/// reference the streaming check ([`read_index`]) is tested against.
#[cfg(test)]
pub(crate) fn load_index(
    dir: &Path,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    file_len: u64,
    keys: &dyn KeyProvider,
) -> std::result::Result<crate::format::index::Index, String> {
    let path = dir.join(index_file_name(header.id));
    let bytes = fs::read(&path).map_err(|e| unopened(&e))?;
    let (index, tag, signed) =
        crate::format::index::Index::decode(&bytes).map_err(|e| e.to_string())?;
    let key = keys
        .key(org, index.key_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("signed with unknown key {}", index.key_id))?;
    if !crate::crypto::Signer::new(index.key_id, &key).verify_index(signed, &tag) {
        return Err("tag does not verify".into());
    }
    check_describes(&index.head(), org, header, genesis, file_len)?;
    Ok(index)
}

/// An authentic index header describes this segment: its org and id, its header hash and
/// first seq, and no more bytes than the segment has.
fn check_describes(
    index: &IndexHead,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    file_len: u64,
) -> std::result::Result<(), String> {
    if &index.org != org || index.segment != header.id {
        return Err("describes another segment".into());
    }
    if index.segment_hash != *genesis || index.first_seq != header.first_seq {
        return Err("does not match the segment header".into());
    }
    if index.covered_len > file_len || index.covered_len < SEGMENT_HEADER_LEN as u64 {
        return Err(format!(
            "covers {} bytes but the segment has {file_len}",
            index.covered_len
        ));
    }
    Ok(())
}

/// Reads the index of segment `id` for what it is evidence of ([`IndexEvidence`]). `Err` if
/// it exists but cannot be read (permissions, I/O): it may be the evidence of records since
/// lost, so recovery of the segment stops there rather than rebuild over it or move the
/// segment unread.
fn index_evidence(
    dir: &Path,
    org: &OrgId,
    id: SegmentId,
    keys: &dyn KeyProvider,
) -> Result<IndexEvidence> {
    let path = dir.join(index_file_name(id));
    index_file::evidence_at(&path, org, id, keys).map_err(|e| Error::io("read index", &path, e))
}

/// Copies the index of segment `id`, byte for byte, into quarantine before recovery
/// rebuilds over it: its tag names a key the key provider lacks (`why`), so it may be
/// signed evidence that can be checked once the key is found.
fn keep_index(dir: &Path, org: &OrgId, id: SegmentId, why: String) -> Result<IndexKept> {
    let index = dir.join(index_file_name(id));
    let file = super::open_regular(&index).map_err(|e| Error::io("read index", &index, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat index", &index, e))?
        .len();
    let q = Quarantine::open(dir, org)?;
    let copied_to = q.copy_in(
        &file,
        &index,
        0,
        len,
        &format!("{}.key-missing", index_file_name(id)),
    )?;
    q.sync()?;
    Ok(IndexKept {
        index,
        reason: why,
        copied_to,
    })
}

/// Where segment `id` (its header, if readable, and its length `file_len`) contradicts what
/// its authentic index says was durable when the index was written (FORMAT.md §6 step 5):
/// a header other than the one it describes, or fewer bytes than it covers. Neither is
/// crash damage: an index only ever covers fsynced bytes.
fn contradicted(
    index: &IndexHead,
    header: Option<(&SegmentHeader, &Hash)>,
    file_len: u64,
) -> Vec<DamageRange> {
    let mut damage = Vec::new();
    if let Some((header, genesis)) = header
        && (index.segment_hash != *genesis || index.first_seq != header.first_seq)
    {
        damage.push(DamageRange {
            start: 0,
            end: SEGMENT_HEADER_LEN as u64,
            cause: DamageCause::Corrupt(DecodeError {
                structure: "segment header",
                field: "header",
                offset: 0,
                kind: DecodeErrorKind::Invalid(
                    "the segment header is not the one its signed index describes",
                ),
            }),
        });
    }
    if index.covered_len > file_len {
        damage.push(DamageRange {
            // Past the header's range when that is damaged too (a file cut inside it).
            start: file_len.max(SEGMENT_HEADER_LEN as u64),
            end: index.covered_len,
            cause: DamageCause::Corrupt(DecodeError {
                structure: "segment",
                field: "records its signed index covers",
                offset: file_len,
                kind: DecodeErrorKind::Truncated {
                    needed: index.covered_len,
                    available: file_len,
                },
            }),
        });
    }
    damage
}

/// The first seq an authentic index leaves unissued: past its `record_count` records from
/// its `first_seq` (saturating: a continuation then has no seqs left and refuses appends).
fn seqs_vouched(index: &IndexHead) -> u64 {
    index.first_seq.saturating_add(index.record_count)
}

/// Checks a segment's index (every check of FORMAT.md §3: what `Index::decode` and the tag
/// check accept, and that it describes this segment) in one streaming pass whose memory does
/// not depend on the index's size. With `build` (the directory for spill files), also
/// collects its blocks for a resuming writer.
pub(crate) fn read_index(
    dir: &Path,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    file_len: u64,
    keys: &dyn KeyProvider,
    build: Option<&Path>,
) -> std::result::Result<index_file::Checked, String> {
    let path = dir.join(index_file_name(header.id));
    let file = super::open_regular(&path).map_err(|e| unopened(&e))?;
    let checked = index_file::read(file, org, keys, build).map_err(|e| e.to_string())?;
    check_describes(&checked.head, org, header, genesis, file_len)?;
    Ok(checked)
}

/// Checks the index file `file` of segment `header` as [`read_index`] does and summarises
/// it in groups of `group_blocks` blocks ([`index_file::Summary`]), for the query planner.
pub(crate) fn read_index_summary(
    file: File,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    file_len: u64,
    keys: &dyn KeyProvider,
    group_blocks: u64,
) -> std::result::Result<(IndexHead, index_file::Summary), String> {
    let (checked, summary) =
        index_file::read_summary(file, org, keys, group_blocks).map_err(|e| e.to_string())?;
    check_describes(&checked.head, org, header, genesis, file_len)?;
    Ok((checked.head, summary))
}

/// The header of a segment's index if it passes every check ([`read_index`] without
/// collecting blocks).
pub(crate) fn check_index(
    dir: &Path,
    org: &OrgId,
    header: &SegmentHeader,
    genesis: &Hash,
    file_len: u64,
    keys: &dyn KeyProvider,
) -> std::result::Result<IndexHead, String> {
    read_index(dir, org, header, genesis, file_len, keys, None).map(|c| c.head)
}

/// Walks `[start, end)` checking only framing and CRCs; returns the record count if every
/// frame is valid and the last one ends exactly at `end`.
fn crc_walk(win: &mut FileWindow, start: u64, end: u64) -> std::io::Result<Option<u64>> {
    let mut off = start;
    let mut n = 0;
    while off < end {
        match win.frame(off)? {
            Ok(rec) => {
                off += rec.len();
                n += 1;
            }
            Err(FrameError::Incomplete { .. } | FrameError::Corrupt(_)) => return Ok(None),
        }
    }
    Ok((off == end).then_some(n))
}

/// Opens a segment to write it, with its metadata now.
pub(crate) fn open_for_append(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let file = super::open_regular_with(path, OpenOptions::new().read(true).write(true))
        .map_err(|e| Error::io("open segment", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?;
    Ok((file, meta))
}

/// Whether a segment file was sealed: no write permission bit is set (recovery makes a
/// damaged segment read-only, FORMAT.md §6 step 5).
pub(crate) fn is_sealed(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o222 == 0
}

/// Opens a segment for recovery, with its metadata now and whether it is to be examined
/// only (`sealed`): then it is opened to read, never to write. It is if the caller says so
/// or its mode says it was sealed: a sealed segment is never written again, and opening one
/// for writing fails with EACCES for any writer but root.
fn open_to_recover(path: &Path, sealed: bool) -> Result<(File, fs::Metadata, bool)> {
    let meta = fs::metadata(path).map_err(|e| Error::io("stat segment", path, e))?;
    if !(sealed || is_sealed(&meta)) {
        let (file, meta) = open_for_append(path)?;
        return Ok((file, meta, false));
    }
    let file = super::open_regular(path).map_err(|e| Error::io("open segment", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?;
    Ok((file, meta, true))
}

/// Recovers the segment at `path`.
///
/// `closed_as`: the stamp of the file when this process last closed a writer on it cleanly
/// (fsynced, index written over all of it). If the file still has that stamp, the CRC walk
/// of the indexed range is skipped: this process wrote and fsynced those bytes and nothing
/// has written the file since, so reopening costs the index read, not a segment read.
///
/// `continued`: a later part of the month was begun after this one (its header was never
/// written), so this one was found damaged and must be continued again: it is examined
/// without being written and comes back as [`Recovered::Damaged`] (its damage, if it now
/// reads clean, empty), never resumed or cut. A segment whose mode says it was sealed is
/// examined the same way: damaged, it comes back as [`Recovered::Damaged`] whatever the
/// damage (a torn tail of a sealed file is not cut); reading clean, it is opened for
/// writing and resumed as before it was sealed (which fails for a writer that is not root).
///
/// Before [`Recovered::Damaged`] returns, the file is fsynced: the continuation's links
/// name its records, and links name durable records only (FORMAT.md §6).
#[allow(clippy::too_many_arguments)]
pub(crate) fn recover(
    dir: &Path,
    org: &OrgId,
    id: SegmentId,
    keys: &dyn KeyProvider,
    interval: u32,
    closed_as: Option<FileStamp>,
    continued: bool,
    linked: u64,
) -> Result<Recovered> {
    let path = dir.join(segment_file_name(id));
    let (file, meta, sealed) = open_to_recover(&path, continued)?;
    let len = meta.len();
    let unchanged = closed_as.is_some_and(|s| s == FileStamp::of(&meta));
    let mut win = FileWindow::new(file, len);
    let head_bytes = win
        .get(0, SEGMENT_HEADER_LEN)
        .map_err(|e| Error::io("read segment", &path, e))?
        .to_vec();
    // Written by a newer auditlog: not damage. Sealing it and continuing the month in this
    // build's format would mix formats in one month; the month's recovery fails instead,
    // its appends with it, and the file is left as it is (FORMAT.md §9).
    newer_format(&path, &head_bytes)?;
    let header = SegmentHeader::decode(&head_bytes)
        .ok()
        .filter(|h| &h.org == org && h.id == id);
    let Some(header) = header else {
        // An authentic index of this segment says its header and `covered_len` bytes were
        // durable: then a missing or unreadable header is not a crash during creation, and
        // the seqs it vouches for were issued. One that cannot be read might say so: the
        // segment is then left as it is.
        let evidence = index_evidence(dir, org, id, keys)?;
        let vouched = evidence.vouching();
        if len <= SEGMENT_HEADER_LEN as u64 && vouched.is_none() {
            // The month is then continued from the part before (FORMAT.md §6 step 1): if
            // that is gone, nothing tells which seqs were issued, and this file must stay,
            // so that every later recovery stops here too rather than start the month anew.
            if let Some(before) = id.part.checked_sub(1) {
                continued_part(dir, org, id, before)?;
            }
            drop(win);
            let moved_to = quarantine_whole(dir, org, &path)?;
            return Ok(Recovered::NoHeader { moved_to });
        }
        let tally = Tally {
            head: Hash::ZERO,
            next_seq: 0,
            count: 0,
            valid_end: SEGMENT_HEADER_LEN as u64,
            max_seq: None,
            index: IndexBuilder::new(interval, dir),
        };
        let mut tags = scan::Tags::in_month(org, id.month, keys);
        let mut outcome = scan::scan(&mut win, SEGMENT_HEADER_LEN as u64, tally, Some(&mut tags))
            .map_err(|e| Error::io("read segment", &path, e))?;
        outcome.damage.insert(
            0,
            DamageRange {
                start: 0,
                end: SEGMENT_HEADER_LEN as u64,
                cause: scan::DamageCause::Corrupt(match SegmentHeader::decode(&head_bytes) {
                    Err(e) => e,
                    Ok(_) => crate::format::DecodeError {
                        structure: "segment header",
                        field: "org_id",
                        offset: 24,
                        kind: crate::format::DecodeErrorKind::Invalid(
                            "header names another org or segment than its file",
                        ),
                    },
                }),
            },
        );
        // Its first seq is gone with the header. Its readable records, or an index of it,
        // are past every seq of the part before; without either, the part before says
        // where this one began (as the continuation of it this file must be).
        let base = match (outcome.tally.max_seq, vouched) {
            (Some(m), _) => m.saturating_add(1),
            (None, Some(index)) => seqs_vouched(index),
            (None, None) => match id.part.checked_sub(1) {
                Some(before) => seqs_through(dir, org, id, before, keys, interval)?,
                None => 0,
            },
        };
        let known_end = vouched
            .map_or(0, |i| i.covered_len)
            .max(outcome.tally.valid_end);
        let mut seq_floor = base.saturating_add(unreadable_room(len, known_end));
        if let Some(index) = vouched {
            outcome.damage.extend(contradicted(index, None, len));
            seq_floor = seq_floor.max(seqs_vouched(index));
        }
        sync_damaged(&win.into_file(), &path)?;
        return Ok(Recovered::Damaged {
            header: None,
            outcome,
            seq_floor,
        });
    };
    let genesis = crypto::sha256(&head_bytes);
    let fresh = Tally::fresh(&header, genesis, IndexBuilder::new(interval, dir));
    // Fast path: trust a valid index for the prefix it covers after a CRC walk of it.
    // A valid index also vouches, whatever the walk finds, that its `record_count` records
    // in `covered_len` bytes were complete and durable: `indexed` keeps that evidence.
    let mut indexed: Option<IndexHead> = None;
    // An authentic index of this segment that the file contradicts (its header is another,
    // or it is shorter than the index covers): bytes that were durable are gone or changed.
    let mut evidence: Option<(IndexHead, Vec<DamageRange>)> = None;
    // An index of this segment whose key is missing and that the file does not contradict:
    // copied to quarantine before the writer rebuilds over it.
    let mut unchecked: Option<String> = None;
    let (start, tally, index_rebuilt) =
        match read_index(dir, org, &header, &genesis, len, keys, Some(dir)) {
            Ok(checked) => {
                let index = checked.head;
                indexed = Some(index.clone());
                let walked = if unchanged && index.covered_len == len {
                    Some(index.record_count)
                } else {
                    crc_walk(&mut win, SEGMENT_HEADER_LEN as u64, index.covered_len)
                        .map_err(|e| Error::io("read segment", &path, e))?
                };
                let own_filters = checked.builder.is_some();
                let next_seq = header.first_seq.checked_add(index.record_count);
                let mut resumed = None;
                if walked == Some(index.record_count)
                    && next_seq.is_some()
                    && let Some(mut builder) = checked.builder
                    && builder
                        .resume_open_block(
                            &mut win,
                            index.covered_len,
                            &mut scan::Tags::new(org, keys),
                        )
                        .map_err(|e| Error::io("read segment", &path, e))?
                {
                    resumed = Some(builder);
                }
                if let Some(builder) = resumed {
                    let tally = Tally {
                        head: index.head,
                        next_seq: next_seq.unwrap_or(u64::MAX),
                        count: index.record_count,
                        valid_end: index.covered_len,
                        max_seq: index
                            .record_count
                            .checked_sub(1)
                            .map(|n| header.first_seq + n),
                        index: builder,
                    };
                    let stale =
                        (index.covered_len < len).then(|| "index lags the segment".to_string());
                    (index.covered_len, tally, stale)
                } else {
                    let why = if walked != Some(index.record_count) {
                        "segment bytes fail their CRC inside the indexed range"
                    } else if next_seq.is_none() {
                        "index counts more records than seqs remain"
                    } else if !checked.has_sections {
                        "index lacks the query sections (older writer)"
                    } else if !own_filters {
                        "index filters are probed another way (hash scheme or k) than this writer's"
                    } else {
                        "the records of the index's last block do not read back"
                    };
                    (SEGMENT_HEADER_LEN as u64, fresh, Some(why.into()))
                }
            }
            Err(why) => {
                // An index that exists but cannot be read (permissions, I/O) may be the
                // evidence of records since lost: it is not rebuilt over unread.
                // One whose key is missing may be authentic: read as if it were.
                let found = index_evidence(dir, org, id, keys)?;
                if let Some(index) = found.vouching() {
                    let damage = contradicted(index, Some((&header, &genesis)), len);
                    if !damage.is_empty() {
                        evidence = Some((index.clone(), damage));
                    } else if let IndexEvidence::KeyMissing { head, why } = found {
                        // What it vouches for was durable and issued (see `indexed`).
                        indexed = Some(head);
                        unchecked = Some(format!("index {why}"));
                    }
                }
                (
                    SEGMENT_HEADER_LEN as u64,
                    fresh,
                    Some(format!("index {why}")),
                )
            }
        };
    let mut tags = scan::Tags::in_month(org, id.month, keys);
    let outcome = scan::scan(&mut win, start, tally, Some(&mut tags))
        .map_err(|e| Error::io("read segment", &path, e))?;
    // No index vouches for the records (an authentic one, even one the file contradicts,
    // shows the keys are right: that file is sealed and continued below), and not one
    // record verifies: the provider's keys are not those of this log. Rebuilding would
    // sign the index over with them (the old one gone) and the writer would append under
    // them: refused before anything changes.
    let vouched = indexed.is_some() || evidence.is_some();
    if index_rebuilt.is_some() && !vouched && tags.none_verified() {
        return Err(Error::Key {
            org: org.to_string(),
            source: crate::crypto::KeyError::WrongKey {
                file: path,
                records: tags.checked,
            },
        });
    }
    let mut file = win.into_file();
    if let Some((index, damage)) = evidence {
        // Never resumed, never cut, and the index is left as it is: it is the evidence.
        let mut outcome = outcome;
        outcome.damage.extend(damage);
        outcome.damage.sort_by_key(|d| d.start);
        sync_damaged(&file, &path)?;
        return Ok(Recovered::Damaged {
            seq_floor: seqs_through_damage(&header, &outcome.tally, len, Some(&index)),
            header: Some(header),
            outcome,
        });
    }
    // A continuation part that no authentic index vouches for is a header anyone can write
    // (its CRC is no secret, its links are chain hashes computed from the files): one whose
    // `first_seq` lies inside the seqs the month's earlier parts hold would have the writer
    // issue them again. Sealed and continued past them instead, never resumed; its header
    // stays as it is, the evidence `verify` reports (`link_mismatch`).
    if !vouched
        && let Some((floor, why)) = seqs_before(dir, org, id, keys, interval)?
        && header.first_seq < floor
    {
        let mut outcome = outcome;
        outcome.damage.insert(
            0,
            DamageRange {
                start: 104,
                end: 112,
                cause: DamageCause::Corrupt(DecodeError {
                    structure: "segment header",
                    field: "first_seq",
                    offset: 104,
                    kind: DecodeErrorKind::Invalid(why),
                }),
            },
        );
        sync_damaged(&file, &path)?;
        let floor = seqs_through_damage(&header, &outcome.tally, len, None).max(floor);
        return Ok(Recovered::Damaged {
            seq_floor: floor,
            header: Some(header),
            outcome,
        });
    }
    // Another segment's link says this one held `linked` records, fsynced before the link
    // was written: fewer now is not a crash's tear, however the file ends (even cut at a
    // record boundary). Sealed and continued past every seq the link vouches for, as for
    // a file an authentic index contradicts; never cut, never reissued.
    if outcome.tally.count < linked {
        let mut outcome = outcome;
        if outcome.damage.is_empty() {
            let at = outcome.tally.valid_end;
            outcome.damage.push(DamageRange {
                start: at,
                end: at.max(len),
                cause: DamageCause::Corrupt(DecodeError {
                    structure: "segment",
                    field: "records a later segment's link names",
                    offset: at,
                    kind: DecodeErrorKind::Invalid(
                        "the file ends before the records another segment's link says it held",
                    ),
                }),
            });
        }
        sync_damaged(&file, &path)?;
        let floor = seqs_through_damage(&header, &outcome.tally, len, indexed.as_ref())
            .max(header.first_seq.saturating_add(linked));
        return Ok(Recovered::Damaged {
            seq_floor: floor,
            header: Some(header),
            outcome,
        });
    }
    if outcome.damage.is_empty() && !continued {
        if sealed {
            // Sealed, yet it reads clean (its mode was changed by hand): resumed as before.
            file = open_for_append(&path)?.0;
        }
        // The writer counts every byte found here as durable (its next index and any link
        // to it may name them), but a crash under `Never` or `Interval` can leave records
        // that reached the page cache and not the disk. Make them durable first, unless
        // this process fsynced every one of them when it closed the file and nothing has
        // written it since (the stamp it recorded then still holds).
        if !unchanged {
            file.sync_data()
                .map_err(|e| Error::io("fsync segment", &path, e))?;
        }
        let index_kept = match unchecked {
            Some(why) => Some(keep_index(dir, org, id, why)?),
            None => None,
        };
        return Ok(Recovered::Ready {
            header,
            genesis,
            file,
            tally: outcome.tally,
            torn: None,
            index_rebuilt,
            index_kept,
        });
    }
    // Damage inside the indexed range is not a torn tail: those bytes were durable.
    let indexed_len = indexed.as_ref().map_or(0, |i| i.covered_len);
    if let Some(torn) = outcome
        .torn_tail()
        .filter(|t| !sealed && t.start >= indexed_len)
        .cloned()
    {
        let index_kept = match unchecked {
            Some(why) => Some(keep_index(dir, org, id, why)?),
            None => None,
        };
        let moved_to = quarantine_tail(dir, org, &path, &file, torn.start, torn.end)?;
        return Ok(Recovered::Ready {
            header,
            genesis,
            file,
            tally: outcome.tally,
            torn: Some(TornTail {
                offset: torn.start,
                len: torn.end - torn.start,
                moved_to,
            }),
            index_rebuilt,
            index_kept,
        });
    }
    // Seqs the index vouches for were issued even if their records are now unreadable
    // (damage at the end of the file leaves no later record to tell): never reissue them.
    let mut outcome = outcome;
    if let Some(last) = indexed.as_ref().and_then(|i| i.record_count.checked_sub(1)) {
        let last = header.first_seq.saturating_add(last);
        outcome.tally.max_seq = Some(outcome.tally.max_seq.map_or(last, |m| m.max(last)));
    }
    sync_damaged(&file, &path)?;
    Ok(Recovered::Damaged {
        seq_floor: seqs_through_damage(&header, &outcome.tally, len, indexed.as_ref()),
        header: Some(header),
        outcome,
    })
}

/// Records that may lie, unreadable, in the `len − known_end` bytes after a part's last
/// readable record (or after its header, without one) and past what an index vouches for:
/// at most one per smallest frame. Their seqs, one after another past the last known one,
/// may have been issued and acknowledged before the bytes were damaged.
fn unreadable_room(len: u64, known_end: u64) -> u64 {
    len.saturating_sub(known_end) / u64::from(MIN_FRAME_LEN)
}

/// One past every seq that may have been issued in a damaged part with a readable header:
/// past its readable records (or from its `first_seq`) and every seq `index` (which is, or
/// may be, authentic) vouches for, plus [`unreadable_room`] after both.
fn seqs_through_damage(
    header: &SegmentHeader,
    tally: &Tally,
    len: u64,
    index: Option<&IndexHead>,
) -> u64 {
    let base = tally
        .max_seq
        .map_or(header.first_seq, |m| m.saturating_add(1))
        .max(header.first_seq)
        .max(index.map_or(0, seqs_vouched));
    let known_end = index.map_or(0, |i| i.covered_len).max(tally.valid_end);
    base.saturating_add(unreadable_room(len, known_end))
}

/// Part `before` of `id`'s month, which `id` continues, exists; `Err` (typed) if it does not:
/// nothing on disk then tells which seqs the month issued before `id`.
fn continued_part(dir: &Path, org: &OrgId, id: SegmentId, before: u16) -> Result<PathBuf> {
    let path = dir.join(segment_file_name(SegmentId {
        month: id.month,
        part: before,
    }));
    match fs::symlink_metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ContinuedPartMissing {
            org: org.to_string(),
            segment: id.to_string(),
            missing: path,
        }),
        Err(e) => Err(Error::io("stat segment", &path, e)),
    }
}

/// One past every seq that may have been issued in parts `..= before` of `id`'s month,
/// read from the files without writing anything: where the headerless part `id`, which
/// continues part `before`, had its `first_seq`. Each part is examined as recovery would
/// continue it (its readable records, its header's `first_seq`, an index that vouches for
/// it, [`unreadable_room`]); a part with none of these (no header, no readable record, no
/// index) began where the part before it ended, down to part 0, which begins at seq 0.
/// `Err` ([`Error::ContinuedPartMissing`]) if a part needed is missing.
fn seqs_through(
    dir: &Path,
    org: &OrgId,
    id: SegmentId,
    before: u16,
    keys: &dyn KeyProvider,
    interval: u32,
) -> Result<u64> {
    // The rooms of the parts walked past (each began where the one before it ended).
    let mut carried = 0u64;
    let mut part = before;
    let mut after = id;
    loop {
        let path = continued_part(dir, org, after, part)?;
        let this = SegmentId {
            month: id.month,
            part,
        };
        let file = super::open_regular(&path).map_err(|e| Error::io("open segment", &path, e))?;
        let PartRead {
            header,
            len,
            outcome,
        } = read_part(dir, org, this, &path, file, interval)?;
        let header = header.ok();
        let room = unreadable_room(len, outcome.tally.valid_end);
        let vouched = index_evidence(dir, org, this, keys)?.vouching().cloned();
        let own = match (&header, outcome.tally.max_seq) {
            (Some(h), _) => Some(seqs_through_damage(
                h,
                &outcome.tally,
                len,
                vouched.as_ref(),
            )),
            (None, Some(m)) => Some(m.saturating_add(1).saturating_add(room)),
            (None, None) => vouched.as_ref().map(|v| {
                let past = unreadable_room(len, v.covered_len.max(outcome.tally.valid_end));
                seqs_vouched(v).saturating_add(past)
            }),
        };
        if let Some(own) = own {
            let vouched = vouched.as_ref().map_or(0, seqs_vouched);
            return Ok(own.max(vouched).saturating_add(carried));
        }
        carried = carried.saturating_add(room);
        match part.checked_sub(1) {
            Some(p) => {
                after = this;
                part = p;
            }
            // Part 0 begins at seq 0.
            None => return Ok(carried),
        }
    }
}

/// The lowest seq continuation part `id` may start at, if an earlier part of its month
/// says anything: past every seq readable in each earlier part or vouched for by an index
/// of it (authentic, or whose key is missing), and at or past each one's header `first_seq`
/// (FORMAT.md §2.1: a continuation starts past every seq the part it continues may have
/// issued). Read from the files without writing anything; a part that is missing, or whose
/// header names another segment, says nothing (its own finding in `verify`). Unreadable
/// bytes add no room here: a continuation made by recovery starts past them too, so this
/// is never above what recovery gave it.
fn seqs_before(
    dir: &Path,
    org: &OrgId,
    id: SegmentId,
    keys: &dyn KeyProvider,
    interval: u32,
) -> Result<Option<(u64, &'static str)>> {
    let mut best: Option<(u64, &'static str)> = None;
    let mut raise = |seq: u64, why: &'static str| {
        if best.is_none_or(|(b, _)| seq > b) {
            best = Some((seq, why));
        }
    };
    for part in 0..id.part {
        let this = SegmentId {
            month: id.month,
            part,
        };
        let path = dir.join(segment_file_name(this));
        let file = match super::open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open segment", &path, e)),
        };
        let part = read_part(dir, org, this, &path, file, interval)?;
        match part.header {
            Ok(h) => raise(
                h.first_seq,
                "an earlier part of the month begins at a later seq",
            ),
            Err(PartHeader::Other) => continue,
            Err(PartHeader::Unreadable) => {}
        }
        let outcome = part.outcome;
        if let Some(m) = outcome.tally.max_seq {
            raise(
                m.saturating_add(1),
                "an earlier part of the month holds a seq at or past it",
            );
        }
        if let Some(index) = index_evidence(dir, org, this, keys)?.vouching() {
            raise(
                seqs_vouched(index),
                "an index of an earlier part of the month vouches for a seq at or past it",
            );
        }
    }
    Ok(best)
}

/// An earlier part of a month, read as recovery reads it, without writing anything.
struct PartRead {
    /// Its header, if it is the part's own.
    header: std::result::Result<SegmentHeader, PartHeader>,
    len: u64,
    /// Its records, chained from its header's hash (from nothing without one).
    outcome: ScanOutcome,
}

/// Why a [`PartRead`] has no header.
enum PartHeader {
    /// It decodes, but names another org or segment.
    Other,
    /// It does not decode.
    Unreadable,
}

/// Reads part `this` of `org` (`file`, opened at `path`): its header (refused if of a
/// newer format) and a scan of its records.
fn read_part(
    dir: &Path,
    org: &OrgId,
    this: SegmentId,
    path: &Path,
    file: File,
    interval: u32,
) -> Result<PartRead> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    let mut win = FileWindow::new(file, len);
    let head_bytes = win
        .get(0, SEGMENT_HEADER_LEN)
        .map_err(|e| Error::io("read segment", path, e))?
        .to_vec();
    newer_format(path, &head_bytes)?;
    let header = match SegmentHeader::decode(&head_bytes) {
        Ok(h) if &h.org == org && h.id == this => Ok(h),
        Ok(_) => Err(PartHeader::Other),
        Err(_) => Err(PartHeader::Unreadable),
    };
    let tally = match &header {
        Ok(h) => Tally::fresh(
            h,
            crypto::sha256(&head_bytes),
            IndexBuilder::new(interval, dir),
        ),
        Err(_) => Tally {
            head: Hash::ZERO,
            next_seq: 0,
            count: 0,
            valid_end: SEGMENT_HEADER_LEN as u64,
            max_seq: None,
            index: IndexBuilder::new(interval, dir),
        },
    };
    let outcome = scan::scan(&mut win, SEGMENT_HEADER_LEN as u64, tally, None)
        .map_err(|e| Error::io("read segment", path, e))?;
    Ok(PartRead {
        header,
        len,
        outcome,
    })
}

/// Makes a damaged segment's bytes durable before its continuation's `continues` (and maybe
/// `prev`) link names its records: a crash under `Never` or `Interval` can leave records in
/// the page cache only. (fsync works on a descriptor opened to read, as a sealed segment's is.)
fn sync_damaged(file: &File, path: &Path) -> Result<()> {
    file.sync_data()
        .map_err(|e| Error::io("fsync segment", path, e))
}

/// Copies `[start, end)` of `file` into quarantine and makes it durable, then truncates the
/// segment to `start` and makes that durable. The copy is durable before the cut.
fn quarantine_tail(
    dir: &Path,
    org: &OrgId,
    path: &Path,
    file: &File,
    start: u64,
    end: u64,
) -> Result<PathBuf> {
    let name = format!("{}.torn-at-{start}", file_name(path));
    let q = Quarantine::open(dir, org)?;
    let dest = q.copy_in(file, path, start, end.saturating_sub(start), &name)?;
    q.sync()?;
    file.set_len(start)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("truncate segment", path, e))?;
    Ok(dest)
}

/// Moves a whole file into quarantine (a segment that never got a complete header).
fn quarantine_whole(dir: &Path, org: &OrgId, path: &Path) -> Result<PathBuf> {
    let name = file_name(path);
    Quarantine::open(dir, org)?.move_in(&name, &format!("{name}.partial-header"))
}

/// The last component of a path of the log (always UTF-8: names the log gave).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "segment".into())
}

/// `Err(Error::UnsupportedFormat)` when `head_bytes` are the header of a newer format
/// than this build reads (a checksum that holds over an unknown version or incompatible
/// flags): recovery must not take such a file for damage.
fn newer_format(path: &Path, head_bytes: &[u8]) -> Result<()> {
    match SegmentHeader::decode(head_bytes) {
        Err(e) if e.needs_newer_reader() => Err(Error::decode(path, None, e)),
        _ => Ok(()),
    }
}
