//! Forensic inspection of a single file, offline, without the rest of the log.
//!
//! Works on partial and damaged copies: a damaged range is reported with its offsets and
//! skipped (the scanner resynchronises on the next valid frame), never fatal. Reads with
//! positioned reads only; never maps the file.

use std::path::Path;

use serde::Serialize;

use crate::crypto::{self, Hash, KeyProvider, Signer, Signers};
use crate::entry;
use crate::error::{Error, Result};
use crate::event::{Event, OrgId};
use crate::format::header::{SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SegmentHeader, SegmentId};
use crate::format::index::{INDEX_MAGIC, Index};
use crate::format::record::FrameError;
use crate::segment::scan::{self, FileWindow};
use crate::segment::segment_file_name;
use crate::time::Timestamp;

/// The largest index file [`inspect`] reads (it decodes an index whole, in memory): 256 MiB.
/// Larger ones are refused with [`Error::Io`]. (An index's user marks alone take two bytes
/// per record: this is over 100 million records in one segment.)
pub const INSPECT_INDEX_LIMIT: u64 = 256 * 1024 * 1024;

/// Where to start and how much to show.
#[derive(Clone, Copy, Debug, Default)]
pub struct InspectOptions {
    /// Start scanning at this byte offset (resynchronising to the next valid record).
    pub from_offset: Option<u64>,
    /// Show at most this many records.
    pub limit: Option<u64>,
}

/// Whether a record's tag was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStatus {
    /// Verified with the key it names.
    Valid,
    /// Does not verify.
    Invalid,
    /// The keyring lacks the key id.
    UnknownKey,
    /// No keyring given, or the org is unknown (damaged header).
    NotChecked,
}

/// One thing found in the file, in file order.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "item", rename_all = "snake_case")]
// Items are produced and consumed one at a time: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    /// A segment header.
    SegmentHeader {
        /// Decoded header fields.
        org_id: String,
        /// Month and part.
        segment: String,
        /// Creation ordinal.
        ordinal: u32,
        /// First seq.
        first_seq: u64,
        /// Creation time.
        created_at: Timestamp,
        /// Link to the previous segment, as `segment@count:hash`.
        prev: Option<String>,
        /// Continuation link.
        continues: Option<String>,
        /// SHA-256 of the header: the chain's genesis.
        genesis: Hash,
    },
    /// An index file summary.
    Index {
        /// Org.
        org_id: String,
        /// Segment described.
        segment: String,
        /// Bytes of segment covered.
        covered_len: u64,
        /// Records covered.
        record_count: u64,
        /// Chain head at `covered_len`.
        head: Hash,
        /// Sparse entries.
        entries: usize,
        /// Tag check.
        tag: TagStatus,
    },
    /// A record.
    Record {
        /// Byte offset of the frame.
        offset: u64,
        /// Frame length.
        len: u64,
        /// Seq.
        seq: u64,
        /// Time.
        occurred_at: Timestamp,
        /// Key id.
        key_id: u32,
        /// Stored prev hash.
        prev_hash: Hash,
        /// Computed chain hash.
        hash: Hash,
        /// Whether `prev_hash` is the chain hash of the record before it in this scan
        /// (`None` for the first record shown after a start offset or damage).
        linked: Option<bool>,
        /// Tag check.
        tag: TagStatus,
        /// The decoded event, if its body decodes and its openings match.
        event: Option<Event>,
        /// Why the body did not decode, if it did not.
        body_error: Option<String>,
    },
    /// Bytes that are not a valid record; scanning resumed after them.
    Damage {
        /// First damaged byte.
        start: u64,
        /// One past the last.
        end: u64,
        /// What was wrong at `start`.
        reason: String,
    },
    /// The end of the latest part of a month is an incomplete record, or its header is
    /// shorter than a header, while a writer holds the log's lock: a record or a segment
    /// being written, not damage (`verify` stops there too).
    BeingWritten {
        /// Where the incomplete record begins.
        start: u64,
        /// The file's length when it was read.
        end: u64,
    },
}

enum Kind {
    Incomplete,
    Corrupt,
}

/// Whether segment file `path` (of segment `id`) may be being written right now: it is the
/// latest part of its month, in a log directory whose writer is live.
fn being_written(path: &Path, id: Option<SegmentId>) -> bool {
    let Some(id) = id else {
        return false;
    };
    let later = id.part.checked_add(1).map(|part| SegmentId { part, ..id });
    let latest = later.is_none_or(|l| !path.with_file_name(segment_file_name(l)).exists());
    let log_dir = path.parent().and_then(Path::parent);
    latest && log_dir.is_some_and(crate::log::writer_is_live)
}

/// The segment id `path`'s file name gives, if it is a segment's name.
fn path_segment_id(path: &Path) -> Option<SegmentId> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::segment::parse_segment_file_name)
}

/// The org (the parent directory's name, if a valid org id) and segment id (the file's
/// name) that `path`'s place in a log gives.
fn path_place(path: &Path) -> Option<(OrgId, SegmentId)> {
    let id = path_segment_id(path)?;
    let org = path.parent()?.file_name()?.to_str()?;
    Some((OrgId::new(org).ok()?, id))
}

/// Inspects `path` (segment or index file), calling `visit` for each item found. An index
/// file over [`INSPECT_INDEX_LIMIT`] is refused. A `from_offset` at or past the end of the
/// file shows no record. A segment or index of a newer format than this build reads is
/// refused with [`Error::UnsupportedFormat`] before any item. Anything but a regular file (after symlinks) is refused with
/// [`Error::Io`] (`InvalidInput`, "not a regular file") before it is opened: opening a FIFO
/// would block until something wrote to it, and a device could be read for ever (neither
/// could be inspected anyway: inspection reads at offsets within the file's length).
/// An index file with `from_offset` or `limit` set is refused with [`Error::InvalidOption`]
/// (they select a segment's records). Returns the number of records shown. An error from
/// `visit` (e.g. writing the item out)
/// stops the walk and is returned as [`Error::Io`].
pub fn inspect(
    path: &Path,
    keys: Option<&dyn KeyProvider>,
    opts: InspectOptions,
    mut visit: impl FnMut(Item) -> std::io::Result<()>,
) -> Result<u64> {
    let mut visit =
        |item| visit(item).map_err(|e| Error::io("write inspected item", "<output>", e));
    let file = crate::segment::open_named_regular(path)
        .map_err(|e| Error::io("open file to inspect", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let mut win = FileWindow::new(file, len);
    let io = |e| Error::io("read", path, e);
    let magic = win.get(0, 8).map_err(io)?.to_vec();
    if magic == INDEX_MAGIC {
        // An index is shown whole, as one item: a record offset or count means nothing
        // there, and was ignored without a word.
        if opts.from_offset.is_some() || opts.limit.is_some() {
            return Err(Error::InvalidOption {
                option: "from_offset/limit",
                reason: format!(
                    "{} is an index file, shown whole; --from-offset and --limit select the records of a segment file",
                    path.display()
                ),
            });
        }
        if len > INSPECT_INDEX_LIMIT {
            return Err(Error::io(
                "inspect index",
                path,
                std::io::Error::other(format!(
                    "{len} bytes: over the {INSPECT_INDEX_LIMIT}-byte limit of an index file inspect reads whole (an index that large would cover over 100 million records)"
                )),
            ));
        }
        // Read once, into the window's buffer; decoded from there.
        let bytes = win.get(0, len as usize).map_err(io)?;
        return match Index::decode(bytes) {
            Ok((ix, tag, signed)) => {
                let status = match keys {
                    None => TagStatus::NotChecked,
                    Some(k) => match k.key(&ix.org, ix.key_id).ok().flatten() {
                        None => TagStatus::UnknownKey,
                        Some(key) if Signer::new(ix.key_id, &key).verify_index(signed, &tag) => {
                            TagStatus::Valid
                        }
                        Some(_) => TagStatus::Invalid,
                    },
                };
                visit(Item::Index {
                    org_id: ix.org.to_string(),
                    segment: ix.segment.to_string(),
                    covered_len: ix.covered_len,
                    record_count: ix.record_count,
                    head: ix.head,
                    entries: ix.entries.len(),
                    tag: status,
                })?;
                Ok(0)
            }
            // A newer format is not damage: nothing of it can be shown.
            Err(e) if e.needs_newer_reader() => Err(Error::decode(path, None, e)),
            Err(e) => {
                visit(Item::Damage {
                    start: e.offset,
                    end: len,
                    reason: e.to_string(),
                })?;
                Ok(0)
            }
        };
    }
    let head_bytes = win.get(0, SEGMENT_HEADER_LEN).map_err(io)?.to_vec();
    let header = SegmentHeader::decode(&head_bytes);
    // A newer format: its records cannot be told from damage by this build, so none is
    // shown (a walk would show every one of them as damaged bytes).
    if let Err(e) = &header
        && e.needs_newer_reader()
    {
        return Err(Error::decode(path, None, e.clone()));
    }
    let mut head: Option<Hash> = None;
    // Without a header, the org and segment the file's place names (as a query reads such
    // a segment): its tags can still be checked and its bodies decoded.
    let from_path = header.is_err().then(|| path_place(path)).flatten();
    match &header {
        Ok(h) => {
            let link = |l: &crate::format::header::SegmentLink| {
                format!("{}@{}:{}", l.segment, l.count, l.head)
            };
            let genesis = crypto::sha256(&head_bytes);
            head = Some(genesis);
            visit(Item::SegmentHeader {
                org_id: h.org.to_string(),
                segment: h.id.to_string(),
                ordinal: h.ordinal,
                first_seq: h.first_seq,
                created_at: h.created_at,
                prev: h.prev.as_ref().map(link),
                continues: h.continues.as_ref().map(link),
                genesis,
            })?;
        }
        // A header not yet all written, in a file the live writer is creating: its bytes
        // are still coming (recovery moves such a file aside only once no writer is live).
        Err(_) if len < SEGMENT_HEADER_LEN as u64 && being_written(path, path_segment_id(path)) => {
            visit(Item::BeingWritten { start: 0, end: len })?;
            return Ok(0);
        }
        Err(e) => {
            let mut reason = if magic == SEGMENT_MAGIC {
                format!("damaged {e}")
            } else {
                format!("not a segment or index header: {e}")
            };
            if let Some((org, id)) = &from_path {
                reason.push_str(&format!(
                    "; the file's path names org {org}, segment {id}: a record whose tag proves it is decoded"
                ));
            }
            visit(Item::Damage {
                start: 0,
                end: SEGMENT_HEADER_LEN.min(len as usize) as u64,
                reason,
            })?;
        }
    }
    let (org, segment) = match &header {
        Ok(h) => (Some(h.org.clone()), Some(h.id)),
        Err(_) => from_path.clone().unzip(),
    };
    let org_from_path = from_path.is_some();
    let mut signers = Signers::default();
    let mut off = SEGMENT_HEADER_LEN as u64;
    if let Some(from) = opts.from_offset.filter(|f| *f > off) {
        // Start at the first valid record at or after `from`, silently.
        head = None;
        off = if from >= len {
            len
        } else if win.frame(from).map_err(io)?.is_ok() {
            from
        } else {
            scan::resync(&mut win, from.saturating_add(1), None)
                .map_err(io)?
                .unwrap_or(len)
        };
    }
    let mut shown = 0u64;
    let mut max_seq = None;
    while off < len {
        if opts.limit.is_some_and(|l| shown >= l) {
            break;
        }
        let frame = win.frame(off).map_err(io)?;
        let rec = match frame {
            Ok(rec) => rec,
            Err(err) => {
                let (err_kind, reason) = match err {
                    FrameError::Incomplete { needed, available } => (
                        Kind::Incomplete,
                        format!("incomplete frame: needs {needed} bytes, {available} left"),
                    ),
                    FrameError::Corrupt(d) => (Kind::Corrupt, d.to_string()),
                };
                let next = scan::resync(&mut win, off + 1, max_seq).map_err(io)?;
                let incomplete = matches!(err_kind, Kind::Incomplete);
                if incomplete && next.is_none() && being_written(path, segment) {
                    visit(Item::BeingWritten {
                        start: off,
                        end: len,
                    })?;
                    break;
                }
                let end = next.unwrap_or(len);
                visit(Item::Damage {
                    start: off,
                    end,
                    reason,
                })?;
                head = None;
                off = end;
                continue;
            }
        };
        let hash = crypto::chain_hash(rec.chained_bytes());
        let fields = rec.fields;
        let tag = match (keys, &org) {
            (Some(k), Some(o)) => match signers.get_or_unknown(k, o, fields.key_id) {
                None => TagStatus::UnknownKey,
                Some(s) if s.verify_record(o, &hash, &rec.tag) => TagStatus::Valid,
                Some(_) => TagStatus::Invalid,
            },
            _ => TagStatus::NotChecked,
        };
        let (event, body_error) = match (&org, segment) {
            // The path's org is believed for a record only once its tag proves it.
            (Some(o), Some(_)) if org_from_path && tag != TagStatus::Valid => (
                None,
                Some(format!(
                    "org unknown (damaged header), and the tag does not prove the path's org {o}: body not decoded"
                )),
            ),
            (Some(o), Some(id)) => {
                match entry::open(o, id.month, id.part, &rec, hash, entry::Erased::Redact) {
                    Ok(v) => (Some(v.event), None),
                    Err(entry::OpenError::Commitment) => (
                        None,
                        Some("personal-data openings do not match their commitments".to_string()),
                    ),
                    Err(entry::OpenError::Decode(d)) => (None, Some(d.to_string())),
                    // Not with `Erased::Redact`: an erased slot reads as "[REDACTED]".
                    Err(entry::OpenError::Erased(slots)) => (
                        None,
                        Some(format!("personal data erased: {}", slots.join(", "))),
                    ),
                }
            }
            _ => (
                None,
                Some("org unknown (damaged header): body not decoded".to_string()),
            ),
        };
        let len_rec = rec.len();
        visit(Item::Record {
            offset: off,
            len: len_rec,
            seq: fields.seq,
            occurred_at: fields.occurred_at,
            key_id: fields.key_id.0,
            prev_hash: fields.prev,
            hash,
            linked: head.map(|h| h == fields.prev),
            tag,
            event,
            body_error,
        })?;
        shown += 1;
        max_seq = Some(max_seq.map_or(fields.seq, |m: u64| m.max(fields.seq)));
        head = Some(hash);
        off += len_rec;
    }
    Ok(shown)
}
