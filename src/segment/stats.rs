//! Counting a segment's records without keys (structure and CRC only).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::scan::{self, FileWindow};
use super::{index_file_name, segment_file_name};
use crate::error::{Error, Result};
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::format::record::FrameError;
use crate::time::Timestamp;

/// A stretch of a segment that [`crate::Log::stats`] could not read as records: the
/// records after it are counted; `verify` says what it is. A segment name that is not a
/// regular file (a directory, a FIFO, a dangling link) is named with `start` and `end` 0
/// and `not_a_file`: nothing of it is read, and the other segments are still counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsDamage {
    /// The segment file.
    #[serde(serialize_with = "crate::json::serialize_path")]
    pub file: PathBuf,
    /// First unreadable byte.
    pub start: u64,
    /// One past the last (where the next readable record starts, or the end of the file).
    pub end: u64,
    /// The name is not a regular file, so none of it was read.
    pub not_a_file: bool,
}

/// Counts of one segment.
pub(crate) struct SegmentStats {
    pub events: u64,
    /// Records dated outside the segment's month (counted in `events` too).
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
/// segment a live writer is creating). A segment of a newer format is refused with
/// [`Error::UnsupportedFormat`].
pub(crate) fn segment_stats(
    dir: &Path,
    id: SegmentId,
    short_is_damage: impl FnOnce(&Path, &std::fs::File) -> bool,
) -> Result<SegmentStats> {
    let path = dir.join(segment_file_name(id));
    let file = match super::open_regular(&path) {
        Ok(file) => file,
        Err(e) if not_a_file(&path, &e) => {
            return Ok(SegmentStats {
                events: 0,
                misfiled: 0,
                bytes: 0,
                first: None,
                last: None,
                damage: vec![StatsDamage {
                    file: path,
                    start: 0,
                    end: 0,
                    not_a_file: true,
                }],
            });
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
        s.damage.push(StatsDamage {
            file: path.clone(),
            start: 0,
            end: len,
            not_a_file: false,
        });
    }
    let io = |e| Error::io("read segment", &path, e);
    let month = (id.month.start(), id.month.end());
    // A newer format is not counted as v1 frames (every byte would read as damage): the
    // stats fail naming the file. A whole header that fails its checks is a damaged
    // stretch like any other (what it is, verify says); the records after it are counted.
    // One shorter than a header is damage as the caller's rule says (above).
    if len >= SEGMENT_HEADER_LEN as u64
        && let Err(e) = SegmentHeader::decode(win.get(0, SEGMENT_HEADER_LEN).map_err(io)?)
    {
        if e.needs_newer_reader() {
            return Err(Error::decode(&path, None, e));
        }
        s.damage.push(StatsDamage {
            file: path.clone(),
            start: 0,
            end: SEGMENT_HEADER_LEN as u64,
            not_a_file: false,
        });
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
                    s.damage.push(StatsDamage {
                        file: path.clone(),
                        start: off,
                        end: next.unwrap_or(len),
                        not_a_file: false,
                    });
                }
                off = next.unwrap_or(len);
            }
        }
    }
    Ok(s)
}

/// Whether opening `path` failed because the name is not a regular file (what
/// [`super::open_regular`] refuses, or a link to nothing), rather than for an I/O error.
fn not_a_file(path: &Path, e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidInput
        || fs::symlink_metadata(path).is_ok_and(|m| !m.is_file())
}
