//! An org's `quarantine/` directory: where recovery puts the bytes and reports it moves or
//! copies aside (FORMAT.md §1, §6).
//!
//! Recovery never follows a symbolic link it did not create, here or for any file it puts
//! here. The directory is opened once, with `O_DIRECTORY | O_NOFOLLOW`, relative to a
//! descriptor of the org directory, and everything is then created relative to that
//! descriptor with `O_CREAT | O_EXCL | O_NOFOLLOW` (or renamed in with `RENAME_NOREPLACE`):
//! a `quarantine` that is a symbolic link, or anything else but a directory, is refused
//! with [`Error::QuarantineUnusable`] before recovery changes anything; a name already
//! taken (by a file, a directory, a symbolic link, dangling or not) is never written
//! through or replaced, and the next free name (`<name>.1`, `<name>.2`, …) is taken
//! instead. Nothing here is ever overwritten: what recovery wrote as evidence stays.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::event::OrgId;

/// Name of the per-org directory that receives quarantined bytes.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Names tried for one file before giving up (`name`, `name.1`, …): only files planted on
/// purpose take names there, and recovery must end.
const MAX_NAMES: u32 = 100_000;

/// Bytes [`Quarantine::copy_in`] holds at a time, whatever the size of what it copies.
const COPY_CHUNK: u64 = 1 << 20;

/// The org's quarantine directory, open.
pub(crate) struct Quarantine {
    /// The org directory (renames into quarantine start there).
    org_dir: File,
    /// The quarantine directory itself, opened without following a symbolic link.
    dir: File,
    /// Its path, for names and errors only: nothing is opened through it.
    path: PathBuf,
}

impl Quarantine {
    /// Opens `org_dir`'s `quarantine/`, creating it if there is none, and makes its entry
    /// durable (every time: a process killed before that fsync left a directory that exists
    /// and may still vanish in a power loss; quarantining is rare). A `quarantine` that is
    /// not a directory (a symbolic link, whatever it points to, a regular file, a FIFO...)
    /// is refused with [`Error::QuarantineUnusable`].
    pub(crate) fn open(org_dir: &Path, org: &OrgId) -> Result<Quarantine> {
        let dir_file =
            File::open(org_dir).map_err(|e| Error::io("open org directory", org_dir, e))?;
        let path = org_dir.join(QUARANTINE_DIR);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || rustix::fs::openat(&dir_file, QUARANTINE_DIR, flags, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&dir_file, QUARANTINE_DIR, Mode::from_raw_mode(0o777)) {
                    // Made by someone else meanwhile: opened (and checked) below all the same.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(Error::io("create quarantine directory", &path, e.into()));
                    }
                }
                open().map_err(|e| unusable(&dir_file, &path, org, e))?
            }
            Err(e) => return Err(unusable(&dir_file, &path, org, e)),
        };
        dir_file
            .sync_all()
            .map_err(|e| Error::io("fsync directory", org_dir, e))?;
        Ok(Quarantine {
            org_dir: dir_file,
            dir: File::from(fd),
            path,
        })
    }

    /// The directory's path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the entries created in the directory durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.dir
            .sync_all()
            .map_err(|e| Error::io("fsync directory", &self.path, e))
    }

    /// Creates a new file, with `mode`, at the first free name of `name_of(0)`,
    /// `name_of(1)`, …: never through or over anything already there.
    fn create_with(&self, name_of: &dyn Fn(u32) -> String, mode: u32) -> Result<(File, PathBuf)> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        for n in 0..MAX_NAMES {
            let name = name_of(n);
            match rustix::fs::openat(
                &self.dir,
                name.as_str(),
                flags | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            ) {
                Ok(fd) => return Ok((File::from(fd), self.path.join(name))),
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        "create quarantine file",
                        self.path.join(name),
                        e.into(),
                    ));
                }
            }
        }
        Err(no_free_name(&self.path.join(name_of(0))))
    }

    /// Copies `[start, start + len)` of `src` (at `src_path`) to a new read-only file named
    /// `name` (or the next free name, see [`numbered`]) and fsyncs it; the caller fsyncs the
    /// directory ([`Quarantine::sync`]) before relying on the copy's name.
    ///
    /// The copy goes through one buffer of [`COPY_CHUNK`] bytes, so memory does not depend
    /// on `len` (a torn tail can be any length: a crash under `Never` can leave a file
    /// extended over data that never reached the disk, and a hand-extended file is sparse
    /// and costs nothing to make). Chunks of zeros are left as holes of the copy (same
    /// bytes, read back as zeros), so a sparse tail does not fill the disk either.
    pub(crate) fn copy_in(
        &self,
        src: &File,
        src_path: &Path,
        start: u64,
        len: u64,
        name: &str,
    ) -> Result<PathBuf> {
        let (out, dest) = self.create_with(&|n| numbered(name, n), 0o444)?;
        let copied = (|| {
            let mut buf = vec![0u8; COPY_CHUNK.min(len) as usize];
            let mut done = 0;
            while done < len {
                let n = COPY_CHUNK.min(len - done) as usize;
                let chunk = buf.get_mut(..n).unwrap_or_default();
                src.read_exact_at(chunk, start + done)
                    .map_err(|e| Error::io("read for quarantine", src_path, e))?;
                if chunk.iter().any(|&b| b != 0) {
                    out.write_all_at(chunk, done)
                        .map_err(|e| Error::io("write quarantine file", &dest, e))?;
                }
                done += n as u64;
            }
            // The length, including a trailing run of zeros never written.
            out.set_len(len)
                .and_then(|()| out.sync_all())
                .map_err(|e| Error::io("write quarantine file", &dest, e))
        })();
        if let Err(e) = copied {
            // An incomplete copy is no evidence (the bytes are still in `src`, which the
            // caller leaves as it is), and one left behind per failed attempt would use up
            // the names ([`MAX_NAMES`]) while a disk stays full.
            if let Some(file) = dest.file_name() {
                let _ = rustix::fs::unlinkat(&self.dir, file, AtFlags::empty());
            }
            return Err(e);
        }
        Ok(dest)
    }

    /// Moves the file `name` of the org directory into quarantine as `dest` (or the next free
    /// name, see [`numbered`]), never replacing anything there, and makes both directories
    /// durable.
    pub(crate) fn move_in(&self, name: &str, dest: &str) -> Result<PathBuf> {
        let from = || self.path.with_file_name(name);
        for n in 0..MAX_NAMES {
            let to = numbered(dest, n);
            match rustix::fs::renameat_with(
                &self.org_dir,
                name,
                &self.dir,
                to.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    self.sync()?;
                    self.org_dir
                        .sync_all()
                        .map_err(|e| Error::io("fsync directory", from(), e))?;
                    return Ok(self.path.join(to));
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::io("move to quarantine", from(), e.into())),
            }
        }
        Err(no_free_name(&self.path.join(dest)))
    }

    /// Writes `bytes` as a new report named `name_of(0)`, or `name_of(1)`, … if taken:
    /// through a temporary file, fsynced, then renamed in without replacing anything, and the
    /// directory fsynced. An earlier report is never overwritten; a crash leaves a whole
    /// report or none (and perhaps a `.*.tmp*` file, which nothing reads).
    pub(crate) fn write_report(
        &self,
        name_of: &dyn Fn(u32) -> String,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        let base = name_of(0);
        let tmp_of = |n: u32| numbered(&format!(".{base}.tmp.{}", std::process::id()), n);
        let (tmp, tmp_path) = self.create_with(&tmp_of, 0o444)?;
        let tmp_name = tmp_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let placed = tmp
            .write_all_at(bytes, 0)
            .and_then(|()| tmp.sync_all())
            .map_err(|e| Error::io("write quarantine file", &tmp_path, e))
            .and_then(|()| self.rename_within(&tmp_name, name_of));
        if placed.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, tmp_name.as_str(), AtFlags::empty());
        }
        let dest = placed?;
        self.sync()?;
        Ok(dest)
    }

    /// Renames `from` (in quarantine) to the first free name of `name_of(0)`, `name_of(1)`…
    fn rename_within(&self, from: &str, name_of: &dyn Fn(u32) -> String) -> Result<PathBuf> {
        for n in 0..MAX_NAMES {
            let to = name_of(n);
            match rustix::fs::renameat_with(
                &self.dir,
                from,
                &self.dir,
                to.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Ok(self.path.join(to)),
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        "rename in quarantine",
                        self.path.join(from),
                        e.into(),
                    ));
                }
            }
        }
        Err(no_free_name(&self.path.join(name_of(0))))
    }
}

/// `name`, then `name.1`, `name.2`, …: the names a quarantined file takes when the one
/// before is taken.
pub(crate) fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        name.to_string()
    } else {
        format!("{name}.{n}")
    }
}

fn no_free_name(path: &Path) -> Error {
    Error::io(
        "create quarantine file",
        path,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{MAX_NAMES} names taken"),
        ),
    )
}

/// The error for a `quarantine` entry that could not be opened as a directory without
/// following a symbolic link: [`Error::QuarantineUnusable`] naming what is there, or
/// [`Error::Io`] for any other failure.
fn unusable(org_dir: &File, path: &Path, org: &OrgId, e: Errno) -> Error {
    if !matches!(e, Errno::LOOP | Errno::NOTDIR) {
        return Error::io("open quarantine directory", path, e.into());
    }
    let found = match rustix::fs::statat(org_dir, QUARANTINE_DIR, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => super::what_instead_of_a_directory(FileType::from_raw_mode(st.st_mode)),
        Err(_) => "not a directory",
    };
    Error::QuarantineUnusable {
        org: org.to_string(),
        path: path.to_path_buf(),
        found,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::os::unix::fs::symlink;

    fn org() -> OrgId {
        OrgId::new("acme").unwrap()
    }

    /// A `quarantine` that is a symbolic link (to a directory, dangling, or to itself), a
    /// regular file or a FIFO is refused, names what it is, and nothing is created at its
    /// target.
    #[test]
    fn anything_but_a_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
        let cases: [Case<'_>; 5] = [
            (
                "link",
                &|q| symlink(&elsewhere, q).unwrap(),
                "a symbolic link",
            ),
            (
                "dangling",
                &|q| symlink(root.path().join("nowhere"), q).unwrap(),
                "a symbolic link",
            ),
            ("loop", &|q| symlink(q, q).unwrap(), "a symbolic link"),
            (
                "file",
                &|q| std::fs::write(q, b"x").unwrap(),
                "a regular file",
            ),
            (
                "fifo",
                &|q| {
                    let ok = std::process::Command::new("mkfifo")
                        .arg(q)
                        .status()
                        .unwrap();
                    assert!(ok.success());
                },
                "a FIFO",
            ),
        ];
        for (case, make, what) in cases {
            let org_dir = root.path().join(case);
            std::fs::create_dir(&org_dir).unwrap();
            let q = org_dir.join(QUARANTINE_DIR);
            make(&q);
            match Quarantine::open(&org_dir, &org()) {
                Err(Error::QuarantineUnusable { org, path, found }) => {
                    assert_eq!(
                        (org.as_str(), path, found),
                        ("acme", q.clone(), what),
                        "{case}"
                    );
                }
                Err(e) => panic!("{case}: {e}"),
                Ok(_) => panic!("{case}: accepted"),
            }
        }
        assert!(!root.path().join("nowhere").exists());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    /// A name already taken, by a dangling symbolic link, a link to a file elsewhere, a
    /// file or a directory, is left as it is and the next free name is used.
    /// Review finding: a copy that failed (a full disk) left its empty file behind, one more
    /// per retried append, until the names ran out and the month refused appends for good.
    #[test]
    fn a_failed_copy_leaves_no_file() {
        let root = tempfile::tempdir().unwrap();
        let org_dir = root.path().join("acme");
        std::fs::create_dir(&org_dir).unwrap();
        let q = Quarantine::open(&org_dir, &org()).unwrap();
        let src_path = root.path().join("src");
        std::fs::write(&src_path, b"0123456789").unwrap();
        let src = File::open(&src_path).unwrap();
        for _ in 0..3 {
            // Past the source's end: the read fails after the copy's file was created.
            let e = q.copy_in(&src, &src_path, 2, 50, "x").unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Io {
                        op: "read for quarantine",
                        ..
                    }
                ),
                "{e}"
            );
        }
        assert_eq!(std::fs::read_dir(q.path()).unwrap().count(), 0);
        let dest = q.copy_in(&src, &src_path, 2, 5, "x").unwrap();
        assert_eq!(dest, q.path().join("x"));
    }

    #[test]
    fn taken_names_are_skipped_never_written_through() {
        let root = tempfile::tempdir().unwrap();
        let org_dir = root.path().join("acme");
        std::fs::create_dir(&org_dir).unwrap();
        let q = Quarantine::open(&org_dir, &org()).unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        symlink(root.path().join("nowhere"), q.path().join("x")).unwrap();
        symlink(&outside, q.path().join("x.1")).unwrap();
        std::fs::write(q.path().join("x.2"), b"other").unwrap();
        std::fs::create_dir(q.path().join("x.3")).unwrap();
        let src_path = root.path().join("src");
        std::fs::write(&src_path, b"0123456789").unwrap();
        let src = File::open(&src_path).unwrap();
        let dest = q.copy_in(&src, &src_path, 2, 5, "x").unwrap();
        assert_eq!(dest, q.path().join("x.4"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"23456");
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(!root.path().join("nowhere").exists());
        assert_eq!(std::fs::read(q.path().join("x.2")).unwrap(), b"other");

        // Reports: never over an earlier one, nor through a link.
        symlink(&outside, q.path().join("r.json")).unwrap();
        let name_of = |n: u32| {
            if n == 0 {
                "r.json".to_string()
            } else {
                format!("r.{n}.json")
            }
        };
        let a = q.write_report(&name_of, b"first").unwrap();
        let b = q.write_report(&name_of, b"second").unwrap();
        assert_eq!(
            (a.clone(), b.clone()),
            (q.path().join("r.1.json"), q.path().join("r.2.json"))
        );
        assert_eq!(std::fs::read(&a).unwrap(), b"first");
        assert_eq!(std::fs::read(&b).unwrap(), b"second");
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(
            std::fs::symlink_metadata(q.path().join("r.json"))
                .unwrap()
                .is_symlink()
        );

        // Moves: never over anything.
        std::fs::write(org_dir.join("seg"), b"moved").unwrap();
        symlink(&outside, q.path().join("m")).unwrap();
        let m = q.move_in("seg", "m").unwrap();
        assert_eq!(m, q.path().join("m.1"));
        assert_eq!(std::fs::read(&m).unwrap(), b"moved");
        assert!(!org_dir.join("seg").exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        // No temporary file left behind.
        let names: Vec<String> = std::fs::read_dir(q.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    }
}
