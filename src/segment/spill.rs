//! Append-only byte streams kept in memory up to a point, then in an unnamed temporary file.
//!
//! A segment writer derives its sidecar index as records go by, and the index grows with the
//! segment (13–16 bytes per event of the reference workload at the default interval, most of
//! it block filters; ARCHITECTURE.md). A [`Spool`] holds one stream of it (the sparse entries, the
//! block times, the block filters or the user marks) with bounded memory: its owner moves the bytes kept in
//! memory to the spill file whenever they pass its limit ([`Spool::spill`]). The file is
//! created in the segment's directory with `O_TMPFILE` (through `tempfile`), so it has no
//! name, disappears with its last descriptor even after a crash, and stays on the disk the
//! data lives on (never a memory-backed `/tmp`).
//!
//! The file is append-only: bytes once written are never changed. A [`SpoolView`] taken at
//! some moment (a length of the file plus a copy of the bytes then in memory) therefore stays
//! readable while the spool keeps growing, which lets a writer capture its index under its
//! state lock and write it out after releasing the lock.
//!
//! The spill file is neither fsynced nor trusted: a write error the kernel reports only at
//! write-back, and a page evicted after it, would read back other bytes, and the index
//! written from them would be signed. So a spool keeps the CRC-32 of the bytes it spilled,
//! and a view read back that does not match it is an error (the index is then not written).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Bytes read back from a spill file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// One append-only byte stream: a prefix in a spill file, the rest in memory.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    /// The spill file, created on the first spill.
    file: Option<Arc<File>>,
    /// Bytes of the stream in the file (its prefix).
    file_len: u64,
    /// CRC-32 of the bytes in the file, as they were written.
    file_crc: crc32fast::Hasher,
    /// The stream's bytes after `file_len`.
    mem: Vec<u8>,
}

impl Spool {
    /// Appends bytes (in memory).
    pub fn push(&mut self, bytes: &[u8]) {
        self.mem.extend_from_slice(bytes);
    }

    /// Bytes of the stream held in memory.
    pub fn mem_len(&self) -> usize {
        self.mem.len()
    }

    /// Whether part of the stream is in a spill file (which holds a file descriptor).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Heap bytes held for the stream's bytes in memory (its buffer's capacity).
    pub fn held_bytes(&self) -> usize {
        self.mem.capacity()
    }

    /// Gives back the buffer's spare capacity.
    pub fn shrink(&mut self) {
        self.mem.shrink_to_fit();
    }

    /// Bytes of the stream in all.
    pub fn len(&self) -> u64 {
        self.file_len + self.mem.len() as u64
    }

    /// Moves the bytes held in memory to the spill file (created in `dir` if need be). On
    /// error the stream is unchanged: the bytes stay in memory, and bytes a failed write may
    /// have left past the file's logical end are overwritten by the next spill.
    pub fn spill(&mut self, dir: &Path) -> Result<()> {
        if self.mem.is_empty() {
            return Ok(());
        }
        let file = match &self.file {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(
                    tempfile::tempfile_in(dir)
                        .map_err(|e| Error::io("create index spill file in", dir, e))?,
                );
                self.file = Some(Arc::clone(&f));
                f
            }
        };
        file.write_all_at(&self.mem, self.file_len)
            .map_err(|e| Error::io("write index spill file in", dir, e))?;
        self.file_len += self.mem.len() as u64;
        self.file_crc.update(&self.mem);
        self.mem.clear();
        Ok(())
    }

    /// The stream as of now. Costs a copy of the bytes in memory (at most the owner's spill
    /// limit); the spilled prefix is shared, not copied.
    pub fn view(&self) -> SpoolView {
        SpoolView {
            file: self.file.clone(),
            file_len: self.file_len,
            file_crc: self.file_crc.clone().finalize(),
            mem: self.mem.clone(),
        }
    }
}

/// A spool's bytes as of one moment; readable while the spool grows.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpoolView {
    file: Option<Arc<File>>,
    file_len: u64,
    /// CRC-32 of the file's first `file_len` bytes as they were written.
    file_crc: u32,
    mem: Vec<u8>,
}

impl SpoolView {
    /// Length of the stream.
    pub fn len(&self) -> u64 {
        self.file_len + self.mem.len() as u64
    }

    /// Hands the stream to `sink` in order, in pieces of at most 64 KiB from the file, then
    /// the bytes that were in memory. Read errors name `dir`, the spill file's directory;
    /// file bytes that do not read back as they were written are an error too, found once
    /// the file's part has been handed over and before the bytes from memory.
    pub fn copy_to(&self, dir: &Path, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if self.file_len > 0 {
            let file = self.file.as_ref().ok_or_else(|| {
                Error::io(
                    "read index spill file in",
                    dir,
                    io::Error::other("spilled bytes without a spill file"),
                )
            })?;
            let mut buf = vec![0u8; READ_CHUNK.min(self.file_len as usize)];
            let mut off = 0u64;
            let mut crc = crc32fast::Hasher::new();
            while off < self.file_len {
                let n = (self.file_len - off).min(buf.len() as u64) as usize;
                let piece = buf.get_mut(..n).unwrap_or_default();
                file.read_exact_at(piece, off)
                    .map_err(|e| Error::io("read index spill file in", dir, e))?;
                crc.update(piece);
                sink(piece)?;
                off += n as u64;
            }
            if crc.finalize() != self.file_crc {
                return Err(Error::io(
                    "read index spill file in",
                    dir,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "spilled bytes read back differently from how they were written",
                    ),
                ));
            }
        }
        sink(&self.mem)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn collect(v: &SpoolView, dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        v.copy_to(dir, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_view_keeps_its_bytes_while_the_spool_grows_and_spills() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::default();
        let mut want = Vec::new();
        let mut views = Vec::new();
        for i in 0..300u32 {
            let piece: Vec<u8> = (0..(i % 700)).map(|j| (i ^ j) as u8).collect();
            s.push(&piece);
            want.extend_from_slice(&piece);
            if i % 7 == 0 {
                s.spill(dir.path()).unwrap();
            }
            if i % 50 == 0 {
                views.push((s.view(), want.clone()));
            }
            assert_eq!(s.len(), want.len() as u64);
        }
        assert!(s.mem_len() < want.len(), "something was spilled");
        views.push((s.view(), want.clone()));
        for (v, w) in &views {
            assert_eq!(v.len(), w.len() as u64);
            assert_eq!(&collect(v, dir.path()), w);
        }
        // The spill file has no name: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn spilled_bytes_that_read_back_changed_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::default();
        s.push(&[7u8; 100_000]);
        s.spill(dir.path()).unwrap();
        s.push(b"in memory");
        let v = s.view();
        assert_eq!(collect(&v, dir.path()).len(), 100_009);
        // One byte of the spill file changed behind the spool's back (as a lost write-back
        // would leave it).
        let file = s.file.as_ref().unwrap();
        file.write_all_at(&[8], 70_000).unwrap();
        let mut got = Vec::new();
        let err = v
            .copy_to(dir.path(), &mut |b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("read back differently"), "{err}");
        // The bytes from memory were not handed over after the mismatch.
        assert_eq!(got.len(), 100_000);
    }

    #[test]
    fn a_failed_spill_keeps_the_bytes_in_memory_and_names_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let mut s = Spool::default();
        s.push(b"abc");
        match s.spill(&missing) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert_eq!(s.mem_len(), 3);
        s.push(b"def");
        s.spill(dir.path()).unwrap();
        assert_eq!(s.mem_len(), 0);
        assert_eq!(collect(&s.view(), dir.path()), b"abcdef");
    }
}
