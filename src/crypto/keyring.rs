//! A JSON key file for the CLI, tests and small deployments.
//!
//! ```json
//! {"format":"auditlog-keyring","version":1,
//!  "orgs":{"acme":{"active":2,"keys":[{"id":1,"created_at":"…","secret":"<hex>"}, …]}}}
//! ```
//! The file is created with mode 0600 and refused if group or others may read it. Every
//! change is written to a temporary file, fsynced and renamed over the old one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
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
    orgs: BTreeMap<String, FileOrg>,
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
    /// A keyring that lives only in memory (tests, embedding with keys from elsewhere).
    pub fn in_memory() -> Keyring {
        Keyring {
            path: None,
            orgs: RwLock::new(BTreeMap::new()),
        }
    }

    /// Loads an existing key file. Refuses one readable by group or others.
    pub fn open(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| kerr(path, e))?;
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
            let org = OrgId::new(&name).map_err(|e| kerr(path, e))?;
            let mut keys = OrgKeys::default();
            for k in o.keys {
                let bytes = unhex(&k.secret)
                    .and_then(|b| Key::new(&b))
                    .ok_or_else(|| kerr(path, format!("org {name} key {}: bad secret", k.id)))?;
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
        Ok(Keyring {
            path: Some(path.to_path_buf()),
            orgs: RwLock::new(orgs),
        })
    }

    /// Loads the key file, or creates an empty one (mode 0600) if there is none.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = path.as_ref();
        if path.exists() {
            return Keyring::open(path);
        }
        let ring = Keyring {
            path: Some(path.to_path_buf()),
            orgs: RwLock::new(BTreeMap::new()),
        };
        ring.save(&ring.orgs.read())?;
        Ok(ring)
    }

    /// Adds a fresh random key for `org` and makes it the signing key. Older keys stay for
    /// verification. Returns the new id. Persists before returning.
    pub fn rotate(&self, org: &OrgId) -> Result<KeyId, KeyError> {
        self.add_key(org, Key::generate()?, Timestamp::now())
    }

    /// Adds a given key as the new signing key (for keys that come from elsewhere).
    pub fn add_key(&self, org: &OrgId, key: Key, created_at: Timestamp) -> Result<KeyId, KeyError> {
        let mut orgs = self.orgs.write();
        let mut next = orgs.clone_shallow();
        let entry = next.entry(org.clone()).or_default();
        let id = KeyId(entry.keys.keys().next_back().map_or(1, |k| k.0 + 1));
        entry.keys.insert(id, (key, created_at));
        entry.active = Some(id);
        self.save(&next)?;
        *orgs = next;
        Ok(id)
    }

    /// Rotates `org`'s key if `policy` says it is due at `now`, or if it has none.
    pub fn rotate_if_due(
        &self,
        org: &OrgId,
        now: Timestamp,
        policy: RotationPolicy,
    ) -> Result<Option<KeyId>, KeyError> {
        let created = {
            let orgs = self.orgs.read();
            orgs.get(org)
                .and_then(|o| o.active.and_then(|id| o.keys.get(&id)))
                .map(|(_, t)| *t)
        };
        let due = match (created, policy) {
            (None, _) => true,
            (Some(_), RotationPolicy::Manual) => false,
            (Some(c), RotationPolicy::Quarterly) => quarter(c) < quarter(now),
        };
        if due {
            self.rotate(org).map(Some)
        } else {
            Ok(None)
        }
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
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| kerr(&tmp, e))?;
        f.write_all(&json).map_err(|e| kerr(&tmp, e))?;
        f.sync_all().map_err(|e| kerr(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| kerr(path, e))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
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

    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        Ok(self
            .orgs
            .read()
            .get(org)
            .and_then(|o| o.keys.get(&id))
            .map(|(k, _)| k.clone()))
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
    }
}
