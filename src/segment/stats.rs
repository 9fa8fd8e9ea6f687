//! Counting a segment's records without keys (structure and CRC only).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::scan::{self, FileWindow};
use super::{index_file_name, segment_file_name};
use crate::error::{Error, Result};
use crate::event::OrgId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::record::FrameError;
use crate::time::Timestamp;

/// A stretch of a segment that [`crate::Log::stats`] could not read as records: the
/// records after it are counted; `verify` says what it is. A segment that could not be
/// read at all is named with `start` and `end` 0 and its [`DamageKind`], and the other
/// segments are still counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsDamage {
    /// The segment file.
    #[serde(serialize_with = "crate::json::serialize_path")]
    pub file: PathBuf,
    /// First unreadable byte.
    pub start: u64,
    /// One past the last (where the next readable record starts, or the end of the file).
    pub end: u64,
    /// What kind of damage.
    pub kind: DamageKind,
}

/// What [`StatsDamage`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DamageKind {
    /// Bytes `start..end` do not read as records (an empty file: `0..0`).
    Bytes,
    /// The name is not a regular file (a directory, a FIFO, a dangling link): none of it
    /// was read.
    NotAFile,
    /// The segment file is missing, and its index (which may be authentic; stats checks no
    /// tag) or the header of the part that continues it says it held records: deleted or
    /// moved.
    Missing,
    /// The segment is of a newer format than this build reads: none of it was read.
    NewerFormat,
}

impl StatsDamage {
    /// Bytes `start..end` of `file` that do not read as records.
    fn bytes(file: &Path, start: u64, end: u64) -> StatsDamage {
        StatsDamage {
            file: file.to_path_buf(),
            start,
            end,
            kind: DamageKind::Bytes,
        }
    }

    /// Nothing of `file` was read, for `kind`.
    pub(crate) fn whole(file: &Path, kind: DamageKind) -> StatsDamage {
        StatsDamage {
            file: file.to_path_buf(),
            start: 0,
            end: 0,
            kind,
        }
    }
}

/// Counts of one segment.
pub(crate) struct SegmentStats {
    pub events: u64,
    /// Records dated outside the segment's month, or all of them if its header names
    /// another org or segment than its file (counted in `events` too).
    pub misfiled: u64,
    pub bytes: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub damage: Vec<StatsDamage>,
}

/// Walks the readable records of a segment. After an unreadable frame it searches forward
/// for the next valid one (as verification does), so records after damage are counted and
/// each damaged stretch is returned. An incomplete last frame with nothing readable after it
/// (a write in progress beside a live writer, or a torn tail the next writer quarantines)
/// is neither counted nor damage. A segment shorter than its header is damage (bytes
/// `0..len`) when `short_is_damage` says so for its open file (the query's rule: not a
/// segment a live writer is creating). A segment of a newer format is not read, and named
/// as damage (`newer_format`). A segment whose header names another org or segment than
/// its file (`org`, `id`) has all its records counted as misfiled.
pub(crate) fn segment_stats(
    dir: &Path,
    org: &OrgId,
    id: SegmentId,
    short_is_damage: impl FnOnce(&Path, &std::fs::File) -> bool,
) -> Result<SegmentStats> {
    let path = dir.join(segment_file_name(id));
    let unread = |damage: StatsDamage| SegmentStats {
        events: 0,
        misfiled: 0,
        bytes: 0,
        first: None,
        last: None,
        damage: vec![damage],
    };
    let file = match super::open_regular(&path) {
        Ok(file) => file,
        Err(e) if not_a_file(&path, &e) => {
            return Ok(unread(StatsDamage::whole(&path, DamageKind::NotAFile)));
        }
        Err(e) => return Err(Error::io("open segment", &path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat segment", &path, e))?
        .len();
    let index_len = fs::metadata(dir.join(index_file_name(id))).map_or(0, |m| m.len());
    let short_damage = len < SEGMENT_HEADER_LEN as u64 && short_is_damage(&path, &file);
    let mut win = FileWindow::new(file, len);
    let mut s = SegmentStats {
        events: 0,
        misfiled: 0,
        bytes: len + index_len,
        first: None,
        last: None,
        damage: Vec::new(),
    };
    if short_damage {
        s.damage.push(StatsDamage::bytes(&path, 0, len));
    }
    let io = |e| Error::io("read segment", &path, e);
    let month = (id.month.start(), id.month.end());
    // A newer format is not counted as v1 frames (every byte would read as damage): named,
    // none of it read. A whole header that fails its checks is a damaged stretch like any
    // other (what it is, verify says); the records after it are counted. One shorter than a
    // header is damage as the caller's rule says (above). A header naming another org or
    // segment makes every record misfiled (a file copied or renamed into this place).
    let mut misnamed = false;
    if len >= SEGMENT_HEADER_LEN as u64 {
        match SegmentHeader::decode(win.get(0, SEGMENT_HEADER_LEN).map_err(io)?) {
            Ok(h) => {
                misnamed = h.org != *org || h.id != id;
                // The part it continues, gone although the link counts records of it.
                if let Some(Error::Integrity { file, .. }) =
                    crate::segment::continued_part_missing(dir, &path, &h)
                {
                    s.damage
                        .push(StatsDamage::whole(&file, DamageKind::Missing));
                }
            }
            Err(e) if e.needs_newer_reader() => {
                return Ok(unread(StatsDamage::whole(&path, DamageKind::NewerFormat)));
            }
            Err(_) => s
                .damage
                .push(StatsDamage::bytes(&path, 0, SEGMENT_HEADER_LEN as u64)),
        }
    }
    let mut off = SEGMENT_HEADER_LEN as u64;
    let mut max_seq = None;
    while off < len {
        match win.frame(off).map_err(io)? {
            Ok(rec) => {
                let t = rec.fields.occurred_at;
                s.events += 1;
                s.misfiled += u64::from(t < month.0 || t >= month.1);
                s.first = Some(s.first.map_or(t, |f| f.min(t)));
                s.last = Some(s.last.map_or(t, |l| l.max(t)));
                max_seq = Some(max_seq.map_or(rec.fields.seq, |m: u64| m.max(rec.fields.seq)));
                off += rec.len();
            }
            Err(err) => {
                let next = scan::resync(&mut win, off.saturating_add(1), max_seq).map_err(io)?;
                let tail = matches!(err, FrameError::Incomplete { .. });
                if next.is_some() || !tail {
                    s.damage
                        .push(StatsDamage::bytes(&path, off, next.unwrap_or(len)));
                }
                off = next.unwrap_or(len);
            }
        }
    }
    if misnamed {
        s.misfiled = s.events;
    }
    Ok(s)
}

/// Whether opening `path` failed because the name is not a regular file (what
/// [`super::open_regular`] refuses, or a link to nothing), rather than for an I/O error.
fn not_a_file(path: &Path, e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidInput
        || fs::symlink_metadata(path).is_ok_and(|m| !m.is_file())
}
