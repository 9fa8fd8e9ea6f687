//! A JSON key file for the CLI, tests and small deployments.
//!
//! ```json
//! {"format":"auditlog-keyring","version":1,
//!  "orgs":{"acme":{"active":2,"keys":[{"id":1,"created_at":"…","secret":"<hex>"}, …]}}}
//! ```
//! The file is created with mode 0600 and refused if group or others may read it.
//!
//! Several processes (and several `Keyring`s in one process) may change one file at once:
//! every change takes an exclusive lock on `<file>.lock` beside it (created 0600, left in
//! place), re-reads the file under that lock, applies the change to what it read, writes the
//! result to a temporary file of its own in the same directory (`.<file>.tmp.<pid>.<n>`),
//! fsyncs it, renames it over the old file and fsyncs the directory (removing, first, the
//! temporary files changes that crashed left: copies of keys). So no key another writer
//! added is lost, and a change reported as done is on disk. Readers ([`Keyring::open`]) take
//! no lock: the rename replaces the file whole. The new file, and a lock file another user
//! (root) made, get the key file's owner, so that root rotating a user's keyring leaves it
//! that user's.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{Key, KeyError, KeyId, KeyProvider, hex, unhex};
use crate::event::OrgId;
use crate::time::Timestamp;

/// When [`Keyring::rotate_if_due`] rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RotationPolicy {
    /// When the active key was created in an earlier UTC calendar quarter.
    #[default]
    Quarterly,
    /// Never automatically.
    Manual,
}

#[derive(Serialize, Deserialize, Clone)]
struct FileKey {
    id: u32,
    created_at: Timestamp,
    secret: String,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct FileOrg {
    active: u32,
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct FileData {
    format: String,
    version: u32,
    #[serde(deserialize_with = "orgs_once")]
    orgs: BTreeMap<String, FileOrg>,
}

/// The `orgs` object, refused if it names an org twice: a map would keep the last one's
/// keys and drop the others', and the next save would remove them from the file.
fn orgs_once<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, FileOrg>, D::Error> {
    struct Once;
    impl<'de> serde::de::Visitor<'de> for Once {
        type Value = BTreeMap<String, FileOrg>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of orgs")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut orgs = BTreeMap::new();
            while let Some((name, org)) = m.next_entry::<String, FileOrg>()? {
                if orgs.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!(
                        "org {name} appears twice (each org's keys must be in one entry)"
                    )));
                }
                orgs.insert(name, org);
            }
            Ok(orgs)
        }
    }
    d.deserialize_map(Once)
}

#[derive(Default)]
struct OrgKeys {
    active: Option<KeyId>,
    keys: BTreeMap<KeyId, (Key, Timestamp)>,
}

/// Org keys held in memory and, unless created with [`Keyring::in_memory`], in a file.
pub struct Keyring {
    path: Option<PathBuf>,
    orgs: RwLock<BTreeMap<OrgId, OrgKeys>>,
    /// Held by a change ([`Keyring::update`]) from reading the keys to publishing them, and
    /// by a lookup that merges the file into `orgs`: one at a time, and none of them
    /// publishes a key before the change that made it is durable. `orgs` itself is written
    /// only for an instant, so `signing_key` (every append) never waits for the file's lock
    /// or its fsyncs.
    updating: Mutex<()>,
    /// The stamp of the file as it was when [`KeyProvider::key`] last read it for an id it
    /// lacked: while the file keeps that stamp it holds no other key, and is not read again.
    looked_up: Mutex<Option<FileStamp>>,
    /// How many times [`KeyProvider::key`] read the file.
    #[cfg(test)]
    lookups_read: AtomicU64,
}

/// What tells one version of the key file from another. It is only ever replaced whole, by
/// a rename (a new inode); the times and length catch an edit in place.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of `path` itself (a link is not followed, as it is not opened), or `None`
    /// when it cannot be read.
    fn of(path: &Path) -> Option<FileStamp> {
        let m = fs::symlink_metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({:?}, {} orgs)",
            self.path,
            self.orgs.read().len()
        )
    }
}

const FORMAT: &str = "auditlog-keyring";

fn kerr(path: &Path, reason: impl std::fmt::Display) -> KeyError {
    KeyError::Keyring {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Keyring {
    fn holding(path: Option<&Path>, orgs: BTreeMap<OrgId, OrgKeys>) -> Keyring {
        Keyring {
            path: path.map(Path::to_path_buf),
            orgs: RwLock::new(orgs),
            updating: Mutex::new(()),
            looked_up: Mutex::new(None),
            #[cfg(test)]
            lookups_read: AtomicU64::new(0),
        }
    }

    /// A keyring that lives only in memory (tests, embedding with keys from elsewhere).
    pub fn in_memory() -> Keyring {
        Keyring::holding(None, BTreeMap::new())
    }

    /// Loads an existing key file. Refuses one readable by group or others.
    pub fn open(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = &resolve(path.as_ref())?;
        let orgs = read_file(path)?.ok_or_else(|| kerr(path, "no such file or directory"))?;
        Ok(Keyring::holding(Some(path), orgs))
    }

    /// Loads the key file, or creates an empty one (mode 0600) if there is none. Creating
    /// takes the file's lock, so concurrent callers agree on one file.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = &resolve(path.as_ref())?;
        if let Some(orgs) = read_file(path)? {
            return Ok(Keyring::holding(Some(path), orgs));
        }
        let _lock = lock(path)?;
        let ring = Keyring::holding(Some(path), read_file(path)?.unwrap_or_default());
        if !path.exists() {
            ring.save(&ring.orgs.read())?;
        }
        Ok(ring)
    }

    /// Adds a fresh random key for `org` and makes it the signing key. Older keys stay for
    /// verification. Returns the new id. Persists before returning.
    pub fn rotate(&self, org: &OrgId) -> Result<KeyId, KeyError> {
        self.add_key(org, Key::generate()?, Timestamp::now())
    }

    /// Adds a given key as the new signing key (for keys that come from elsewhere).
    pub fn add_key(&self, org: &OrgId, key: Key, created_at: Timestamp) -> Result<KeyId, KeyError> {
        self.update(|orgs| Ok((push_key(orgs, org, key, created_at)?, true)))
    }

    /// Rotates `org`'s key if `policy` says it is due at `now`, or if it has none. Decided
    /// again under the file's lock, on the file as it is then: of several processes that
    /// find a rotation due at once, one rotates. The new key is dated `now`, so the next
    /// call with the same clock finds nothing due, whatever the machine's clock says.
    pub fn rotate_if_due(
        &self,
        org: &OrgId,
        now: Timestamp,
        policy: RotationPolicy,
    ) -> Result<Option<KeyId>, KeyError> {
        if !due(&self.orgs.read(), org, now, policy) {
            // Nothing another writer may have done since can make it due: rotations only
            // add newer keys.
            return Ok(None);
        }
        self.update(|orgs| {
            if !due(orgs, org, now, policy) {
                return Ok((None, false));
            }
            let id = push_key(orgs, org, Key::generate()?, now)?;
            Ok((Some(id), true))
        })
    }

    /// Applies `change` to the keys as they are in the file now (under its exclusive lock,
    /// merged with those held in memory), persists the result if `change` says it changed
    /// anything, and keeps it in memory.
    ///
    /// The keys in memory stay readable meanwhile: `orgs` is written only to publish the
    /// result, after the save. It used to be write-locked throughout, and every
    /// `signing_key` call (every append, of every org) waited for the file's lock, which
    /// another process may hold, and for the save's fsyncs
    /// (`tests/rotation_during_appends.rs`).
    fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<OrgId, OrgKeys>) -> Result<(T, bool), KeyError>,
    ) -> Result<T, KeyError> {
        let _one = self.updating.lock();
        // Nothing else changes `orgs` while `updating` is held.
        let mut next = self.orgs.read().clone_shallow();
        let _lock = match &self.path {
            Some(path) => {
                let lock = lock(path)?;
                if let Some(on_disk) = read_file(path)? {
                    next = merge(path, on_disk, next)?;
                }
                Some(lock)
            }
            None => None,
        };
        let (result, changed) = change(&mut next)?;
        if changed {
            self.save(&next)?;
        }
        *self.orgs.write() = next;
        Ok(result)
    }

    /// The orgs that have keys.
    pub fn orgs(&self) -> Vec<OrgId> {
        self.orgs.read().keys().cloned().collect()
    }

    fn save(&self, orgs: &BTreeMap<OrgId, OrgKeys>) -> Result<(), KeyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let data = FileData {
            format: FORMAT.into(),
            version: 1,
            orgs: orgs
                .iter()
                .map(|(org, k)| {
                    (
                        org.as_str().to_string(),
                        FileOrg {
                            active: k.active.map_or(0, |a| a.0),
                            keys: k
                                .keys
                                .iter()
                                .map(|(id, (key, t))| FileKey {
                                    id: id.0,
                                    created_at: *t,
                                    secret: hex(key.bytes()),
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&data).map_err(|e| kerr(path, e))?;
        remove_stale_temps(path);
        let tmp = temp_path(path);
        // The file being replaced keeps its owner: root rotating an application's keyring
        // (`sudo auditlog keys new`) used to leave it owned by root, mode 0600, and the
        // application could no longer read its keys.
        let owner = fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                if let Some(owner) = owner {
                    keep_owner(&f, owner)?;
                }
                f.write_all(&json)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(kerr(
                path,
                format!("writing it through {}: {e}", tmp.display()),
            ));
        }
        let dir = parent_dir(path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| kerr(dir, e))?;
        Ok(())
    }
}

trait CloneShallow {
    fn clone_shallow(&self) -> Self;
}

impl CloneShallow for BTreeMap<OrgId, OrgKeys> {
    fn clone_shallow(&self) -> Self {
        self.iter()
            .map(|(o, k)| {
                (
                    o.clone(),
                    OrgKeys {
                        active: k.active,
                        keys: k.keys.clone(),
                    },
                )
            })
            .collect()
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `<file>.lock` beside the key file.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A temporary name beside the key file that no other writer (process or thread) uses:
/// `.<file>.tmp.<pid>.<n>`.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "keyring".into(), |n| n.to_string_lossy());
    parent_dir(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

/// Removes the temporary files ([`temp_path`]) that saves which crashed left beside the
/// key file: copies of its keys (mode 0600) that nothing else would ever delete. Called
/// under the file's lock, which every save holds from creating its temporary file to
/// renaming it, so none of them is another save's in progress. Best effort: one that
/// cannot be removed stays, as it did before.
fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Gives `file` the owner `(uid, gid)` if it has another user (only root can, and only
/// root makes a file another user's keyring is then owned by). The group is kept along
/// with the user, but a file of mode 0600 grants its group nothing.
fn keep_owner(file: &File, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    if file.metadata()?.uid() == uid {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("giving it the key file's owner (uid {uid}, gid {gid}): {e}"),
        )
    })
}

/// Takes the exclusive lock of the key file at `path`; held until the returned file is
/// dropped. A lock file of another user than the key file's (root made it) is given to
/// the key file's owner, who could otherwise not open it.
fn lock(path: &Path) -> Result<File, KeyError> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| kerr(&lock_path, format!("opening the lock file: {e}")))?;
    if let Ok(m) = fs::metadata(path) {
        keep_owner(&file, (m.uid(), m.gid()))
            .map_err(|e| kerr(&lock_path, format!("giving it the key file's owner: {e}")))?;
    }
    file.lock()
        .map_err(|e| kerr(&lock_path, format!("locking: {e}")))?;
    Ok(file)
}

/// The file a keyring path names: a symbolic link is followed to its target once, here, so
/// that a change is written over the target (a rename over the link would replace the link
/// with a file of its own, and the target would never see the new key) and locked beside
/// it. A link whose target does not exist is refused rather than replaced.
fn resolve(path: &Path) -> Result<PathBuf, KeyError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            kerr(
                path,
                format!("a symbolic link whose target cannot be resolved: {e}"),
            )
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// Reads and checks the key file; `None` if there is none. Anything but a regular file (a
/// directory; a FIFO, whose open would block) is refused.
fn read_file(path: &Path) -> Result<Option<BTreeMap<OrgId, OrgKeys>>, KeyError> {
    let file = match crate::segment::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(kerr(path, e)),
    };
    let mode = file
        .metadata()
        .map_err(|e| kerr(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    let data: FileData = serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|e| kerr(path, format!("not a keyring: {e}")))?;
    if data.format != FORMAT || data.version != 1 {
        return Err(kerr(path, "not an auditlog keyring of version 1"));
    }
    let mut orgs = BTreeMap::new();
    for (name, o) in data.orgs {
        // A keyring written before `LOCK` was reserved as an org id may name it: it stays
        // readable (and keeps its keys when rewritten).
        let org = OrgId::stored(&name).map_err(|e| kerr(path, e))?;
        let mut keys = OrgKeys::default();
        for k in o.keys {
            let bytes = unhex(&k.secret)
                .ok_or_else(|| kerr(path, format!("org {name} key {}: secret is not hex", k.id)))
                .and_then(|b| {
                    Key::new(&b).ok_or_else(|| {
                        kerr(
                            path,
                            format!(
                                "org {name} key {}: secret of {} bytes; a key has at least {}",
                                k.id,
                                b.len(),
                                Key::MIN_LEN
                            ),
                        )
                    })
                })?;
            if keys
                .keys
                .insert(KeyId(k.id), (bytes, k.created_at))
                .is_some()
            {
                return Err(kerr(
                    path,
                    format!("org {name}: key id {} appears twice", k.id),
                ));
            }
        }
        if !keys.keys.contains_key(&KeyId(o.active)) {
            return Err(kerr(
                path,
                format!("org {name}: active key {} is missing", o.active),
            ));
        }
        keys.active = Some(KeyId(o.active));
        orgs.insert(org, keys);
    }
    Ok(Some(orgs))
}

/// The file's keys (read under the lock) plus any this `Keyring` holds that the file lacks
/// (it was replaced behind our back: never drop a key records may be signed with). The
/// active key is the newer of the two: ids are issued in increasing order and a new key
/// always becomes the active one, so a file replaced by an older copy does not make an
/// older key sign again. A key id with different secrets in the two is refused.
fn merge(
    path: &Path,
    mut on_disk: BTreeMap<OrgId, OrgKeys>,
    in_memory: BTreeMap<OrgId, OrgKeys>,
) -> Result<BTreeMap<OrgId, OrgKeys>, KeyError> {
    for (org, mem) in in_memory {
        let disk = on_disk.entry(org.clone()).or_default();
        for (id, (key, created)) in mem.keys {
            match disk.keys.get(&id) {
                Some((k, _)) if *k != key => {
                    return Err(kerr(
                        path,
                        format!(
                            "org {org}: key id {id} in the file is not the key this process holds (was the file replaced?)"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    disk.keys.insert(id, (key, created));
                }
            }
        }
        disk.active = disk.active.max(mem.active);
    }
    Ok(on_disk)
}

/// Adds `key` to `org` under the next id and makes it the signing key. Past id
/// `u32::MAX` there is no next id: [`KeyError::KeyIdsExhausted`], nothing changed (the
/// next id used to wrap to 0 and replace a key).
fn push_key(
    orgs: &mut BTreeMap<OrgId, OrgKeys>,
    org: &OrgId,
    key: Key,
    created_at: Timestamp,
) -> Result<KeyId, KeyError> {
    let entry = orgs.entry(org.clone()).or_default();
    let next = match entry.keys.keys().next_back() {
        None => Some(1),
        Some(last) => last.0.checked_add(1),
    };
    let id = KeyId(next.ok_or_else(|| KeyError::KeyIdsExhausted {
        org: org.to_string(),
    })?);
    entry.keys.insert(id, (key, created_at));
    entry.active = Some(id);
    Ok(id)
}

/// Whether `org` needs a new key at `now` under `policy`.
fn due(
    orgs: &BTreeMap<OrgId, OrgKeys>,
    org: &OrgId,
    now: Timestamp,
    policy: RotationPolicy,
) -> bool {
    let created = orgs
        .get(org)
        .and_then(|o| o.active.and_then(|id| o.keys.get(&id)))
        .map(|(_, t)| *t);
    match (created, policy) {
        (None, _) => true,
        (Some(_), RotationPolicy::Manual) => false,
        (Some(c), RotationPolicy::Quarterly) => quarter(c) < quarter(now),
    }
}

fn quarter(t: Timestamp) -> u32 {
    t.month().map_or(0, |m| {
        u32::from(m.year()) * 4 + (u32::from(m.month()) - 1) / 3
    })
}

impl KeyProvider for Keyring {
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        let orgs = self.orgs.read();
        orgs.get(org)
            .and_then(|o| {
                let id = o.active?;
                o.keys.get(&id).map(|(k, _)| (id, k.clone()))
            })
            .ok_or_else(|| KeyError::NoSigningKey {
                org: org.to_string(),
            })
    }

    /// A key id this keyring does not hold is looked for again in its file, read anew: another
    /// process (`auditlog keys new`, a writer's quarterly rotation) may have added it since
    /// this one was opened. The keys found are for verifying only: which key signs changes
    /// only by this keyring's own rotations, or when it is opened again. Reading a log while its keys rotate used to report every record
    /// of the new key as `unknown_key`. Every key held is kept; a file whose key for an id
    /// held differs is refused, as on any update. The file is read again only once it has
    /// changed (another inode, length or time): hostile files can name a new key id in every
    /// record, and each used to cost a read and parse of the whole key file.
    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        let held = |orgs: &BTreeMap<OrgId, OrgKeys>| {
            orgs.get(org)
                .and_then(|o| o.keys.get(&id))
                .map(|(k, _)| k.clone())
        };
        if let Some(k) = held(&self.orgs.read()) {
            return Ok(Some(k));
        }
        let Some(path) = &self.path else {
            return Ok(None);
        };
        // Taken before the read: a file replaced meanwhile is then read once more, never
        // taken for one already read.
        let stamp = FileStamp::of(path);
        if stamp.is_some() && *self.looked_up.lock() == stamp {
            return Ok(None);
        }
        #[cfg(test)]
        self.lookups_read.fetch_add(1, Ordering::Relaxed);
        // Readers take no lock: the file is only ever replaced whole, by a rename.
        let Some(on_disk) = read_file(path)? else {
            return Ok(None);
        };
        // After a change of this keyring in progress is published.
        let _one = self.updating.lock();
        let mut orgs = self.orgs.write();
        let mut merged = merge(path, on_disk, orgs.clone_shallow())?;
        // Keys to verify with, never a signing key: the file read without the lock may hold
        // another process's new key renamed in before its directory fsync made it durable,
        // and records signed with it would be lost to a power loss with it. The signing key
        // changes only by this keyring's own changes (under the lock), or a reopen.
        for (org, keys) in merged.iter_mut() {
            keys.active = orgs.get(org).and_then(|k| k.active);
        }
        *orgs = merged;
        *self.looked_up.lock() = stamp;
        Ok(held(&orgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::new(s).unwrap()
    }

    #[test]
    fn rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = Keyring::open_or_create(&path).unwrap();
        let a = org("acme");
        assert!(matches!(
            ring.signing_key(&a),
            Err(KeyError::NoSigningKey { .. })
        ));
        let k1 = ring.rotate(&a).unwrap();
        let k2 = ring.rotate(&a).unwrap();
        assert_eq!((k1, k2), (KeyId(1), KeyId(2)));
        let again = Keyring::open(&path).unwrap();
        assert_eq!(again.signing_key(&a).unwrap().0, KeyId(2));
        assert!(again.key(&a, KeyId(1)).unwrap().is_some());
        assert!(again.key(&a, KeyId(3)).unwrap().is_none());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A keyring that holds keys of an org named `LOCK` (possible before that name was
    /// reserved) still opens, and a rotation of another org keeps them.
    #[test]
    fn a_keyring_naming_a_reserved_org_id_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = Keyring::open_or_create(&path).unwrap();
        ring.rotate(&org("acme")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\"acme\"").count(), 1, "{text}");
        fs::write(&path, text.replace("\"acme\"", "\"LOCK\"")).unwrap();
        let again = Keyring::open(&path).unwrap();
        again.rotate(&org("other")).unwrap();
        let again = Keyring::open(&path).unwrap();
        let locked = OrgId::stored("LOCK").unwrap();
        assert_eq!(again.signing_key(&locked).unwrap().0, KeyId(1));
        assert_eq!(again.orgs(), vec![locked, org("other")]);
    }

    #[test]
    fn world_readable_keyring_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        Keyring::open_or_create(&path)
            .unwrap()
            .rotate(&org("a"))
            .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keyring::open(&path),
            Err(KeyError::InsecurePermissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn quarterly_policy() {
        let ring = Keyring::in_memory();
        let a = org("a");
        let jan = Timestamp::parse("2026-01-10").unwrap();
        ring.add_key(&a, Key::generate().unwrap(), jan).unwrap();
        let mar = Timestamp::parse("2026-03-31T23:00:00Z").unwrap();
        let apr = Timestamp::parse("2026-04-01").unwrap();
        assert_eq!(
            ring.rotate_if_due(&a, mar, RotationPolicy::Quarterly)
                .unwrap(),
            None
        );
        assert_eq!(
            ring.rotate_if_due(&a, apr, RotationPolicy::Manual).unwrap(),
            None
        );
        assert_eq!(
            ring.rotate_if_due(&a, apr, RotationPolicy::Quarterly)
                .unwrap(),
            Some(KeyId(2))
        );
        // The new key is dated by the clock given, not the machine's: a clock ahead of the
        // machine's (simulated, or event time) used to rotate again on every call.
        let later = Timestamp::parse("2099-01-01").unwrap();
        let policy = RotationPolicy::Quarterly;
        assert_eq!(
            ring.rotate_if_due(&a, later, policy).unwrap(),
            Some(KeyId(3))
        );
        assert_eq!(ring.rotate_if_due(&a, later, policy).unwrap(), None);
    }

    /// A keyring opened before another process rotated a key finds the new key id in the
    /// file when asked for it (a reader during a rotation).
    #[test]
    fn a_key_added_by_another_process_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let writer = Keyring::open_or_create(&path).unwrap();
        writer.rotate(&org("a")).unwrap();
        let reader = Keyring::open(&path).unwrap();
        assert!(reader.key(&org("a"), KeyId(2)).unwrap().is_none());
        assert_eq!(writer.rotate(&org("a")).unwrap(), KeyId(2));
        let added = reader.key(&org("a"), KeyId(2)).unwrap();
        assert_eq!(added, writer.key(&org("a"), KeyId(2)).unwrap());
        assert!(added.is_some());
        assert!(reader.key(&org("a"), KeyId(3)).unwrap().is_none());
        assert!(reader.key(&org("b"), KeyId(1)).unwrap().is_none());
    }

    /// Another process's key found by a lookup is not taken to sign with: read without the
    /// lock, its rename may not be durable yet. It signs once this keyring rotates itself
    /// (merged under the lock, after the other's fsync; the next id is past it) or is
    /// opened again; an org this keyring had no key for gets none to sign with.
    #[test]
    fn a_key_found_by_a_lookup_does_not_sign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let app = Keyring::open_or_create(&path).unwrap();
        app.rotate(&org("a")).unwrap();
        let other = Keyring::open(&path).unwrap();
        assert_eq!(other.rotate(&org("a")).unwrap(), KeyId(2));
        assert_eq!(other.rotate(&org("b")).unwrap(), KeyId(1));
        assert!(app.key(&org("a"), KeyId(2)).unwrap().is_some());
        assert!(app.key(&org("b"), KeyId(1)).unwrap().is_some());
        assert_eq!(app.signing_key(&org("a")).unwrap().0, KeyId(1));
        assert!(matches!(
            app.signing_key(&org("b")),
            Err(KeyError::NoSigningKey { .. })
        ));
        assert_eq!(
            Keyring::open(&path)
                .unwrap()
                .signing_key(&org("a"))
                .unwrap()
                .0,
            KeyId(2)
        );
        assert_eq!(app.rotate(&org("a")).unwrap(), KeyId(3));
        assert_eq!(app.signing_key(&org("a")).unwrap().0, KeyId(3));
    }

    /// An org at key id `u32::MAX` has no next id: rotating is refused and changes nothing.
    /// The id used to wrap to 0, and a second rotation replaced that key in the file.
    #[test]
    fn rotation_past_the_last_key_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let last = u32::MAX;
        let secret = "ab".repeat(32);
        let text = format!(
            r#"{{"format":"auditlog-keyring","version":1,"orgs":{{"a":{{"active":{last},"keys":[{{"id":{last},"created_at":"2026-01-01T00:00:00Z","secret":"{secret}"}}]}}}}}}"#
        );
        fs::write(&path, &text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let ring = Keyring::open(&path).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                ring.rotate(&org("a")),
                Err(KeyError::KeyIdsExhausted { org }) if org == "a"
            ));
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        assert_eq!(ring.signing_key(&org("a")).unwrap().0, KeyId(last));
    }

    /// A save removes the temporary files of saves that crashed (copies of the keys), and
    /// leaves other files alone, temporary files of another key file included.
    #[test]
    fn a_save_removes_what_crashed_saves_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = Keyring::open_or_create(&path).unwrap();
        for stale in [".keys.json.tmp.4242.0", ".keys.json.tmp.4242.1"] {
            fs::write(dir.path().join(stale), b"secret copy").unwrap();
        }
        for other in [
            ".other.json.tmp.4242.0",
            "keys.json.tmp.1",
            ".keys.json.bak",
        ] {
            fs::write(dir.path().join(other), b"not ours").unwrap();
        }
        ring.rotate(&org("a")).unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".keys.json.bak",
                ".other.json.tmp.4242.0",
                "keys.json",
                "keys.json.lock",
                "keys.json.tmp.1"
            ]
        );
        assert!(
            Keyring::open(&path)
                .unwrap()
                .key(&org("a"), KeyId(1))
                .unwrap()
                .is_some()
        );
    }

    /// Independent `Keyring`s on one file (as separate processes would hold), all adding keys
    /// at once, the file not existing yet: every key reported added is in the file, ids of one
    /// org are distinct, and an unrelated `keys.tmp` beside the file is left alone.
    #[test]
    fn concurrent_writers_lose_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        fs::write(dir.path().join("keys.tmp"), b"not ours").unwrap();
        let n = 16;
        let start = std::sync::Barrier::new(n);
        let shared = org("shared");
        let ids: Vec<KeyId> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let (path, start, shared) = (&path, &start, &shared);
                    s.spawn(move || {
                        start.wait();
                        let ring = Keyring::open_or_create(path).unwrap();
                        assert_eq!(ring.rotate(&org(&format!("org-{i}"))).unwrap(), KeyId(1));
                        let id = ring.rotate(shared).unwrap();
                        // What this ring signs with is what it reported.
                        assert_eq!(ring.signing_key(shared).unwrap().0, id);
                        id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted: Vec<u32> = ids.iter().map(|k| k.0).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=16).collect::<Vec<u32>>());
        let again = Keyring::open(&path).unwrap();
        for i in 0..n {
            assert!(
                again
                    .key(&org(&format!("org-{i}")), KeyId(1))
                    .unwrap()
                    .is_some()
            );
        }
        for id in 1..=16 {
            assert!(again.key(&shared, KeyId(id)).unwrap().is_some());
        }
        assert_eq!(again.signing_key(&shared).unwrap().0, KeyId(16));
        assert_eq!(fs::read(dir.path().join("keys.tmp")).unwrap(), b"not ours");
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["keys.json", "keys.json.lock", "keys.tmp"]);
        let lock_mode = fs::metadata(dir.path().join("keys.json.lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(lock_mode & 0o777, 0o600);
    }

    /// Rings loaded before any of them rotated all find a rotation due; under the lock, on
    /// the file as it is then, only one rotates.
    #[test]
    fn concurrent_rotate_if_due_rotates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let rings: Vec<Keyring> = (0..8)
            .map(|_| Keyring::open_or_create(&path).unwrap())
            .collect();
        let a = org("a");
        let rotated: Vec<Option<KeyId>> = std::thread::scope(|s| {
            let handles: Vec<_> = rings
                .iter()
                .map(|r| {
                    let a = &a;
                    s.spawn(move || {
                        r.rotate_if_due(a, Timestamp::now(), RotationPolicy::Quarterly)
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(rotated.iter().flatten().collect::<Vec<_>>(), [&KeyId(1)]);
        assert!(
            Keyring::open(&path)
                .unwrap()
                .key(&a, KeyId(2))
                .unwrap()
                .is_none()
        );
    }

    /// A ring holding a key the file lost (the file was replaced with an older copy) writes
    /// it back on its next change rather than dropping it.
    #[test]
    fn a_key_missing_from_the_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = Keyring::open_or_create(&path).unwrap();
        let a = org("a");
        ring.rotate(&a).unwrap();
        let old = fs::read(&path).unwrap();
        ring.rotate(&a).unwrap();
        fs::write(&path, old).unwrap();
        ring.rotate(&org("b")).unwrap();
        let again = Keyring::open(&path).unwrap();
        assert!(again.key(&a, KeyId(2)).unwrap().is_some());
        // Nor does the older copy make key 1 sign again, in this ring or the file.
        assert_eq!(ring.signing_key(&a).unwrap().0, KeyId(2));
        assert_eq!(again.signing_key(&a).unwrap().0, KeyId(2));
    }

    /// A rotation through a symbolic link reaches the file it points to: the link stays a
    /// link and the target holds the new key (review finding: the rename replaced the link
    /// with a file of its own, and the real keyring never got the key its records are
    /// signed with). A link to nothing is refused, not replaced.
    #[test]
    fn a_rotation_through_a_symlink_reaches_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let (real, link) = (dir.path().join("real.json"), dir.path().join("link.json"));
        Keyring::open_or_create(&real)
            .unwrap()
            .rotate(&org("a"))
            .unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            Keyring::open_or_create(&link)
                .unwrap()
                .rotate(&org("a"))
                .unwrap(),
            KeyId(2)
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            Keyring::open(&real)
                .unwrap()
                .signing_key(&org("a"))
                .unwrap()
                .0,
            KeyId(2)
        );
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("gone.json"), &dangling).unwrap();
        let e = Keyring::open_or_create(&dangling)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(
            fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    /// Anything but a regular file is refused with that reason; a FIFO does not block.
    #[test]
    fn a_keyring_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for path in [fifo, dir.path().to_path_buf()] {
            let e = Keyring::open(&path).err().unwrap().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }

    /// An org named twice in the file is refused (a map would keep one entry's keys and
    /// the next save would drop the others'); a bad secret says what is wrong with it.
    #[test]
    fn duplicate_orgs_and_bad_secrets_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let key = |id: u32, secret: &str| {
            format!(
                r#"{{"active":{id},"keys":[{{"id":{id},"created_at":"2026-01-01T00:00:00Z","secret":"{secret}"}}]}}"#
            )
        };
        let good = "ab".repeat(32);
        for (orgs, want) in [
            (
                format!(r#""a":{},"a":{}"#, key(1, &good), key(2, &good)),
                "org a appears twice",
            ),
            (format!(r#""a":{}"#, key(1, "xyz")), "secret is not hex"),
            (format!(r#""a":{}"#, key(1, "abcd")), "secret of 2 bytes"),
        ] {
            let text = format!(r#"{{"format":"auditlog-keyring","version":1,"orgs":{{{orgs}}}}}"#);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let e = Keyring::open(&path).err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// An id the keyring lacks makes it read its file again once, not once per id: hostile
    /// files can name a new key id in every record. A rotation by another process (a new
    /// file) is still found.
    #[test]
    fn unknown_key_ids_read_an_unchanged_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let a = org("acme");
        let ring = Keyring::open_or_create(&path).unwrap();
        ring.rotate(&a).unwrap();
        for id in 2..1_002 {
            assert!(ring.key(&a, KeyId(id)).unwrap().is_none());
        }
        assert_eq!(ring.lookups_read.load(Ordering::Relaxed), 1);
        let other = Keyring::open(&path).unwrap();
        assert_eq!(other.rotate(&a).unwrap(), KeyId(2));
        assert!(ring.key(&a, KeyId(2)).unwrap().is_some());
        assert!(ring.key(&a, KeyId(3)).unwrap().is_none());
        assert_eq!(ring.lookups_read.load(Ordering::Relaxed), 2);
    }
}
