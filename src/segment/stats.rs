//! Counting a segment's records without keys (structure and CRC only).

use std::fs::{self, File};
use std::path::Path;

use super::scan::FileWindow;
use super::{index_file_name, segment_file_name};
use crate::error::{Error, Result};
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentId};
use crate::time::Timestamp;

/// Counts of one segment.
pub(crate) struct SegmentStats {
    pub events: u64,
    pub bytes: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
}

/// Walks the readable records of a segment (stopping at the first unreadable frame).
pub(crate) fn segment_stats(dir: &Path, id: SegmentId) -> Result<SegmentStats> {
    let path = dir.join(segment_file_name(id));
    let file = File::open(&path).map_err(|e| Error::io("open segment", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat segment", &path, e))?
        .len();
    let index_len = fs::metadata(dir.join(index_file_name(id))).map_or(0, |m| m.len());
    let mut win = FileWindow::new(file, len);
    let mut s = SegmentStats {
        events: 0,
        bytes: len + index_len,
        first: None,
        last: None,
    };
    let mut off = SEGMENT_HEADER_LEN as u64;
    while off < len {
        match win
            .frame(off)
            .map_err(|e| Error::io("read segment", &path, e))?
        {
            Ok(rec) => {
                let t = rec.fields.occurred_at;
                s.events += 1;
                s.first = Some(s.first.map_or(t, |f| f.min(t)));
                s.last = Some(s.last.map_or(t, |l| l.max(t)));
                off += rec.len();
            }
            Err(_) => break,
        }
    }
    Ok(s)
}
