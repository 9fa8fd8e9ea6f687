//! Key rotation while appends are in flight. Every record names the key that signed it (its
//! key id is in the chained bytes); beyond that, an append that begins after
//! `Keyring::rotate` returned must be signed with the new key: it asked the provider after
//! the rotation, and the provider named the new key. A key lookup that began before the
//! rotation and returns late must not put the retired key back in the org's cached signer
//! for other appenders to sign with.
//!
//! No timing is asserted: the provider holds chosen calls until the test releases them.
//! The only timeouts are guards that turn a hang into a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use auditlog::{Event, Key, KeyError, KeyId, KeyProvider, Keyring, Log, Options, OrgId};
use support::{event, keys_for, org, scan_clean, ts};

const DEADLOCK_GUARD: Duration = Duration::from_secs(60);

/// Holds the next call that passes it, once armed, until released.
struct Gate {
    armed: AtomicBool,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> (Gate, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Gate {
            armed: AtomicBool::new(false),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        };
        (gate, entered_rx, release_tx)
    }

    fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self.release.lock().unwrap().recv_timeout(DEADLOCK_GUARD);
        }
    }
}

/// A keyring whose `signing_key` answers are held at a gate per org: the answer is read
/// from the keyring first, then held, so a held call returns what the keyring said when it
/// was asked (as a KMS round trip that is slow to come back would).
struct GatedKeys {
    inner: Arc<Keyring>,
    acme: Gate,
    bravo: Gate,
}

impl KeyProvider for GatedKeys {
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        let answer = self.inner.signing_key(org);
        match org.as_str() {
            "acme" => self.acme.pass(),
            "bravo" => self.bravo.pass(),
            _ => {}
        }
        answer
    }

    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        self.inner.key(org, id)
    }
}

fn ev(org_id: &str, n: u32) -> Event {
    event(
        org_id,
        ts(&format!("2026-01-15T10:00:{n:02}Z")),
        Some("u-1"),
        "booking.created",
        &format!("bk-{n}"),
    )
}

/// Append A asks for acme's key before the rotation and its answer (key 1) comes back late.
/// A batch begun after the rotation asks for acme's key (key 2) and frames acme's events
/// after A's late answer arrived: its acme record must be signed with key 2, not with the
/// key 1 that A's answer put back in the org's signer.
#[test]
fn an_append_begun_after_a_rotation_is_signed_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let ring = keys_for(&["acme", "bravo"]);
    let (acme, acme_entered, acme_release) = Gate::new();
    let (bravo, bravo_entered, bravo_release) = Gate::new();
    let keys = Arc::new(GatedKeys {
        inner: Arc::clone(&ring),
        acme,
        bravo,
    });
    let log = Arc::new(Log::open(dir.path(), Options::new(keys.clone())).unwrap());
    log.append_batch(&[ev("acme", 0), ev("bravo", 0)]).unwrap();

    // A: its key lookup answers key 1 and is held.
    keys.acme.armed.store(true, Ordering::SeqCst);
    let a = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append(&ev("acme", 1)).unwrap())
    };
    acme_entered
        .recv_timeout(DEADLOCK_GUARD)
        .expect("A never asked for its key");

    assert_eq!(ring.rotate(&org("acme")).unwrap(), KeyId(2));

    // B, begun after the rotation: acme's lookup answers key 2; it is held at bravo's, which
    // comes after acme's (groups go in org order).
    keys.bravo.armed.store(true, Ordering::SeqCst);
    let b = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append_batch(&[ev("acme", 2), ev("bravo", 2)]).unwrap())
    };
    bravo_entered
        .recv_timeout(DEADLOCK_GUARD)
        .expect("B never asked for bravo's key");

    // A's late answer arrives; A completes. Then B goes on.
    acme_release.send(()).unwrap();
    let a = a.join().unwrap();
    bravo_release.send(()).unwrap();
    let b = b.join().unwrap();
    Arc::into_inner(log).unwrap().close().unwrap();

    let log = Log::open_read_only(dir.path(), Options::new(ring.clone())).unwrap();
    let acme_records = scan_clean(&log, &org("acme"));
    let key_of = |seq: u64| {
        acme_records
            .iter()
            .find(|v| v.seq == seq)
            .map(|v| v.key_id)
            .unwrap()
    };
    assert!(
        [KeyId(1), KeyId(2)].contains(&key_of(a.seq)),
        "A is concurrent with the rotation: either key"
    );
    assert_eq!(
        key_of(b[0].seq),
        KeyId(2),
        "an append begun after the rotation returned was signed with the retired key"
    );
}

/// A rotation waits for the key file's lock (another process rotating, `auditlog keys new`)
/// and then writes and fsyncs the file twice. Appends of other orgs, and of the org itself,
/// must not wait for that: their signing keys are in memory.
#[test]
fn appends_go_on_while_a_rotation_waits_for_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let ring = Arc::new(Keyring::open_or_create(&path).unwrap());
    ring.rotate(&org("acme")).unwrap();
    ring.rotate(&org("bravo")).unwrap();
    let log = Arc::new(Log::open(dir.path().join("log"), Options::new(ring.clone())).unwrap());
    log.append(&ev("bravo", 0)).unwrap();

    // Another process holds the key file's lock.
    let mut lock_name = path.clone().into_os_string();
    lock_name.push(".lock");
    let held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&lock_name)
        .unwrap();
    held.lock().unwrap();
    let rotation = {
        let ring = Arc::clone(&ring);
        std::thread::spawn(move || ring.rotate(&org("acme")))
    };
    // Only so that the stall shows: let the rotation reach the file's lock.
    std::thread::sleep(Duration::from_millis(200));

    let (done_tx, done_rx) = mpsc::channel();
    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let r = (
                log.append(&ev("bravo", 1)).map(|r| r.seq),
                log.append(&ev("acme", 1)).map(|r| r.seq),
            );
            let _ = done_tx.send(r);
        })
    };
    let appended = done_rx.recv_timeout(Duration::from_secs(20));
    held.unlock().unwrap();
    let (bravo, acme) =
        appended.expect("appends waited for a rotation that waited for the key file's lock");
    assert_eq!((bravo.unwrap(), acme.unwrap()), (1, 0));
    appender.join().unwrap();
    assert_eq!(rotation.join().unwrap().unwrap(), KeyId(2));
    let after = log.append(&ev("acme", 2)).unwrap();
    Arc::into_inner(log).unwrap().close().unwrap();

    let log = Log::open_read_only(dir.path().join("log"), Options::new(ring)).unwrap();
    let acme = scan_clean(&log, &org("acme"));
    assert_eq!(acme.len(), 2);
    assert_eq!(acme[0].key_id, KeyId(1));
    assert_eq!((acme[1].seq, acme[1].key_id), (after.seq, KeyId(2)));
}
