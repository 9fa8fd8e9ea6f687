//! Segment files on disk: naming, scanning, recovery and the writer.
//!
//! Reads use positioned reads (`pread`), never memory maps: a segment can be truncated by
//! recovery in another process, and a mapped file that shrinks kills its reader with SIGBUS.

pub(crate) mod index_file;
pub(crate) mod quarantine;
pub mod read;
pub(crate) mod recover;
pub(crate) mod scan;
pub(crate) mod spill;
pub(crate) mod stats;
pub mod writer;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::header::SegmentId;
use crate::time::Month;

/// File name of a segment: `2026-03.seg`, or `2026-03.2.seg` for part 2.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{id}.seg")
}

/// File name of a segment's sidecar index: `2026-03.idx`, `2026-03.2.idx`.
pub fn index_file_name(id: SegmentId) -> String {
    format!("{id}.idx")
}

/// File name of a month's cold (archived) file; while it exists the month is frozen.
pub fn cold_file_name(month: Month) -> String {
    format!("{month}.cold")
}

/// Parses a segment file name back into its id.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let stem = name.strip_suffix(".seg")?;
    let (month, part) = match stem.split_once('.') {
        Some((m, p)) => {
            // Parts are written without leading zeros; reject other spellings so that one
            // segment has exactly one name.
            if p.is_empty() || (p.starts_with('0')) || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (m, p.parse().ok()?)
        }
        None => (stem, 0),
    };
    Some(SegmentId {
        month: month.parse().ok()?,
        part,
    })
}

/// Opens a file of the log to read it, refusing anything but a regular file: opening a
/// FIFO put where a segment, index or lock file should be would block until something
/// writes to it, and a device could be read for ever. A symbolic link is refused too, never
/// followed (`O_NOFOLLOW`, so also one swapped in after the check): the engine never makes
/// one, a writer would append evidence through it to a file outside the log, and `verify`
/// reports it (as it does an org directory that is a link).
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let mut read = std::fs::OpenOptions::new();
    read.read(true);
    open_regular_with(path, &mut read)
}

/// [`open_regular`] with `options` (to open for writing too).
pub(crate) fn open_regular_with(
    path: &Path,
    options: &mut std::fs::OpenOptions,
) -> std::io::Result<File> {
    let found = std::fs::symlink_metadata(path)?.file_type();
    if found.is_symlink() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a symbolic link, not followed in a log (the engine never makes one)",
        ));
    }
    if !found.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    open_then_check(path, options, rustix::fs::OFlags::NOFOLLOW)
}

/// Opens `path` non-blocking with `flags`, then checks that what it opened is a regular
/// file: a FIFO swapped in after the caller's check would otherwise block the open itself
/// (until a writer came), and be read after it. Regular files' reads and writes ignore the
/// flag, which is cleared all the same.
fn open_then_check(
    path: &Path,
    options: &mut std::fs::OpenOptions,
    flags: rustix::fs::OFlags,
) -> std::io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = (flags | OFlags::NONBLOCK).bits();
    let file = options
        .custom_flags(i32::try_from(flags).unwrap_or(0))
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (replaced while being opened)",
        ));
    }
    let status = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, status - OFlags::NONBLOCK)?;
    Ok(file)
}

/// [`open_regular`] for a file the user named outside a log's layout (`inspect PATH`): a
/// symbolic link is followed, as any command-line tool follows the path it is given.
pub(crate) fn open_named_regular(path: &Path) -> std::io::Result<File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut read = std::fs::OpenOptions::new();
    open_then_check(path, read.read(true), rustix::fs::OFlags::empty())
}

/// What an entry that should be a directory is instead, for errors that name it.
pub(crate) fn what_instead_of_a_directory(found: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match found {
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a regular file",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a directory",
    }
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(test)]
    if TEST_FAIL_FSYNC_DIR.with(|f| f.get()) {
        return Err(Error::io(
            "fsync directory",
            dir,
            std::io::Error::from_raw_os_error(5),
        ));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
thread_local! {
    /// Tests: directory fsyncs on this thread fail with EIO.
    pub(crate) static TEST_FAIL_FSYNC_DIR: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

/// When the directory fsync that follows a rename (an index written atomically) happens.
#[derive(Clone, Copy)]
pub(crate) enum DirSync<'a> {
    /// Before the write returns.
    Now,
    /// Once for each directory, after a whole set of writes: the caller notes the directory
    /// in the set and fsyncs it later ([`DirsToSync::fsync_each`]). `Log::close` writes the
    /// index of every segment of an org, and fsyncs the org's directory once, not once per
    /// index.
    Later(&'a DirsToSync),
}

impl DirSync<'_> {
    /// fsyncs `dir` now, or notes it for later.
    pub(crate) fn apply(self, dir: &Path) -> Result<()> {
        match self {
            DirSync::Now => fsync_dir(dir),
            DirSync::Later(set) => {
                set.add(dir);
                Ok(())
            }
        }
    }
}

/// Directories whose fsync [`DirSync::Later`] deferred.
#[derive(Default)]
pub(crate) struct DirsToSync(Mutex<BTreeSet<PathBuf>>);

impl DirsToSync {
    fn add(&self, dir: &Path) {
        let mut dirs = self.0.lock();
        if !dirs.contains(dir) {
            dirs.insert(dir.to_path_buf());
        }
    }

    /// The directories noted so far, each once; the set is emptied.
    pub(crate) fn take(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.0.lock()).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Later` notes each directory once and fsyncs nothing; `Now` fsyncs (and so fails on
    /// a directory that does not exist, naming it).
    #[test]
    fn deferred_directory_fsyncs_are_noted_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        let later = DirsToSync::default();
        for d in [&a, &b, &a, &b, &a] {
            DirSync::Later(&later).apply(d).unwrap();
        }
        assert_eq!(later.take(), vec![a.clone(), b.clone()]);
        assert!(later.take().is_empty(), "take empties the set");
        DirSync::Now.apply(&a).unwrap();
        let err = DirSync::Now.apply(&b).unwrap_err().to_string();
        assert!(
            err.contains("fsync directory") && err.contains("/b"),
            "{err}"
        );
    }

    /// What the open finds is checked again: a FIFO (as if swapped in after the `lstat`)
    /// is refused at once, not waited on for a writer, and a regular file is opened
    /// blocking as usual.
    #[test]
    fn an_opened_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("2026-01.seg");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let mut read = std::fs::OpenOptions::new();
        let err =
            open_then_check(&fifo, read.read(true), rustix::fs::OFlags::NOFOLLOW).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let file = dir.path().join("2026-02.seg");
        std::fs::write(&file, b"x").unwrap();
        let f = open_regular(&file).unwrap();
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    }

    #[test]
    fn names_round_trip() {
        let m = Month::new(2026, 3).unwrap();
        for part in [0u16, 1, 12] {
            let id = SegmentId { month: m, part };
            assert_eq!(parse_segment_file_name(&segment_file_name(id)), Some(id));
        }
        for bad in [
            "2026-03.0.seg",
            "2026-03.01.seg",
            "2026-3.seg",
            "2026-13.seg",
            "2026-+3.seg",
            "+026-03.seg",
            "x.seg",
            "2026-03.idx",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }
}

/// Identity of a file's contents as the filesystem reports it: device, inode, length and
/// modification time. Equal stamps at two moments mean the file was (almost certainly) not
/// written in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_ns: i64,
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
        }
    }
}

/// The error item for the part `header` (of the segment at `path`, in `dir`) continues,
/// if its `continues` link counts records and that part's file is not there. The header
/// is bound to the segment's records (its hash is the first record's `prev_hash`), so a
/// link in it is evidence once its records verify.
pub(crate) fn continued_part_missing(
    dir: &Path,
    path: &Path,
    header: &crate::format::header::SegmentHeader,
) -> Option<crate::error::Error> {
    let link = header.continues.as_ref().filter(|l| l.count > 0)?;
    let before = dir.join(segment_file_name(link.segment));
    let gone =
        std::fs::symlink_metadata(&before).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    gone.then(|| crate::error::Error::Integrity {
        file: before.clone(),
        offset: 0,
        seq: None,
        kind: crate::error::IntegrityKind::MissingSegment {
            what: format!(
                "{} continues it after {} records, but it is not there: deleted or moved",
                path.display(),
                link.count
            ),
        },
    })
}
