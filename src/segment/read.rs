//! Reading a segment's records back with every check: framing, CRC, seq order, chain
//! linkage, month, tag, and personal-data commitments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::scan::{self, FileWindow};
use crate::crypto::{self, Hash, KeyId, KeyProvider, Signer, Signers};
use crate::entry;
use crate::error::{Error, IntegrityKind, Result};
use crate::event::{OrgId, VerifiedEvent};
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::format::record::FrameError;

/// Iterates the verified events of one segment file.
///
/// A damaged or failing record yields one `Err` naming file, offset and seq; reading then
/// continues with the next readable record. A frame cut off at the end of the file (a torn
/// tail, or a record a live writer is still writing) ends the iteration: what came before
/// it is a consistent prefix.
pub struct SegmentReader {
    path: PathBuf,
    header: SegmentHeader,
    win: FileWindow,
    off: u64,
    head: Hash,
    next_seq: u64,
    keys: Arc<dyn KeyProvider>,
    signers: Signers,
    done: bool,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentReader({}, at {})", self.path.display(), self.off)
    }
}

impl SegmentReader {
    /// Opens a segment file of a log for reading (read-only; never mapped). Anything but a
    /// regular file is refused, a symbolic link included (it is not followed).
    pub fn open(path: &Path, keys: Arc<dyn KeyProvider>) -> Result<SegmentReader> {
        let file = super::open_regular(path).map_err(|e| Error::io("open segment", path, e))?;
        Self::from_file(file, path, keys)
    }

    /// A reader of the segment open as `file`, named `path` in errors.
    pub(crate) fn from_file(
        file: std::fs::File,
        path: &Path,
        keys: Arc<dyn KeyProvider>,
    ) -> Result<SegmentReader> {
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        let mut win = FileWindow::new(file, len);
        let head_bytes = win
            .get(0, SEGMENT_HEADER_LEN)
            .map_err(|e| Error::io("read segment", path, e))?
            .to_vec();
        let header = SegmentHeader::decode(&head_bytes)
            .map_err(|source| Error::decode(path, None, source))?;
        Ok(SegmentReader {
            path: path.to_path_buf(),
            head: crypto::sha256(&head_bytes),
            next_seq: header.first_seq,
            header,
            win,
            off: SEGMENT_HEADER_LEN as u64,
            keys,
            signers: Signers::default(),
            done: false,
        })
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Offset of the next record to read.
    pub fn offset(&self) -> u64 {
        self.off
    }

    fn signer(
        &mut self,
        org: &OrgId,
        id: KeyId,
    ) -> std::result::Result<Option<&Signer>, crate::crypto::KeyError> {
        self.signers.get(&*self.keys, org, id)
    }

    fn read_next(&mut self) -> Option<Result<VerifiedEvent>> {
        if self.done || self.off >= self.win.end() {
            return None;
        }
        let off = self.off;
        let path = self.path.clone();
        let io_err = |e| Error::io("read segment", &path, e);
        let frame = match self.win.frame(off) {
            Err(e) => {
                self.done = true;
                return Some(Err(io_err(e)));
            }
            Ok(Err(FrameError::Incomplete { .. })) => {
                self.done = true;
                return None;
            }
            Ok(Err(FrameError::Corrupt(source))) => Err(source),
            Ok(Ok(rec)) => Ok((
                rec.fields,
                rec.len(),
                crypto::chain_hash(rec.chained_bytes()),
            )),
        };
        let (fields, len, hash) = match frame {
            Ok(x) => x,
            Err(source) => {
                match scan::resync(&mut self.win, off + 1, None) {
                    Ok(Some(next)) => {
                        if let Ok(Ok(rec)) = self.win.frame(next) {
                            self.head = rec.fields.prev;
                            self.next_seq = rec.fields.seq;
                        }
                        self.off = next;
                    }
                    Ok(None) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(io_err(e)));
                    }
                }
                return Some(Err(Error::Corrupt {
                    file: path,
                    offset: off,
                    seq: None,
                    source,
                }));
            }
        };
        let org = self.header.org.clone();
        let integrity = |kind| Error::Integrity {
            file: path.clone(),
            offset: off,
            seq: Some(fields.seq),
            kind,
        };
        let mut result = if fields.seq != self.next_seq {
            Err(integrity(IntegrityKind::SeqMismatch {
                expected: self.next_seq,
                found: fields.seq,
            }))
        } else if fields.prev != self.head {
            Err(integrity(IntegrityKind::ChainBreak {
                expected: self.head,
                found: fields.prev,
            }))
        } else if fields.occurred_at.month() != Some(self.header.id.month) {
            Err(integrity(IntegrityKind::WrongMonth))
        } else {
            Ok(())
        };
        self.off = off + len;
        self.head = hash;
        self.next_seq = fields.seq.saturating_add(1);
        if result.is_ok() {
            result = match self.signer(&org, fields.key_id) {
                Err(source) => Err(Error::RecordKey {
                    file: path.clone(),
                    offset: off,
                    seq: Some(fields.seq),
                    org: org.to_string(),
                    key_id: fields.key_id,
                    source,
                }),
                Ok(None) => Err(integrity(IntegrityKind::UnknownKey {
                    key_id: fields.key_id,
                })),
                Ok(Some(signer)) => {
                    let signer = signer.clone();
                    match self.win.frame(off) {
                        Ok(Ok(rec)) if signer.verify_record(&org, &hash, &rec.tag) => Ok(()),
                        _ => Err(integrity(IntegrityKind::TagMismatch {
                            key_id: fields.key_id,
                        })),
                    }
                }
            };
        }
        if let Err(e) = result {
            return Some(Err(e));
        }
        let (month, part) = (self.header.id.month, self.header.id.part);
        Some(match self.win.frame(off) {
            Ok(Ok(rec)) => entry::open(&org, month, part, &rec, hash, entry::Erased::Refuse)
                .map_err(|e| e.into_error(&path, off, fields.seq)),
            // The bytes read back differently than a moment ago: the file changed under us.
            Ok(Err(_)) => Err(integrity(IntegrityKind::TagMismatch {
                key_id: fields.key_id,
            })),
            Err(e) => Err(io_err(e)),
        })
    }
}

impl Iterator for SegmentReader {
    type Item = Result<VerifiedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_next()
    }
}
