//! Hashing, MACs and keys: the hash chain, record and index tags, personal-data
//! commitments, the [`KeyProvider`] trait and the file [`Keyring`].
//!
//! Every hash and tag input starts with a domain string (`auditlog.<what>.v1`) or is a
//! fixed-layout structure, so no value of one kind can be replayed as another. Exact inputs
//! are in `docs/FORMAT.md`.

mod keyring;

pub use keyring::{Keyring, RotationPolicy};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::event::OrgId;

type HmacSha256 = hmac::Hmac<Sha256>;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// All zero: "no hash".
    pub const ZERO: Hash = Hash([0; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        unhex(s)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(Hash)
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An HMAC-SHA256 tag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub [u8; 32]);

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", hex(&self.0))
    }
}

/// Identifies one of an org's keys. Ids are assigned by the key provider, per org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Secret key bytes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Arc<[u8]>);

impl Key {
    /// Shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Wraps key bytes; `None` if shorter than [`Key::MIN_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Key> {
        (bytes.len() >= Self::MIN_LEN).then(|| Key(Arc::from(bytes)))
    }

    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Result<Key, KeyError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| KeyError::Provider(format!("no randomness: {e}")))?;
        Ok(Key(Arc::from(&b[..])))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Key lookup failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The provider has no signing key for this org.
    #[error("no signing key for org {org}")]
    NoSigningKey {
        /// The org.
        org: String,
    },
    /// Not one record of a segment whose index could not vouch for it verifies with the
    /// keys the provider gave for their key ids: a wrong keyring or key provider for this
    /// log (same ids, other secrets), or every record altered. Recovery refuses the month
    /// rather than rebuild its index and append under those keys.
    #[error(
        "not one of the {records} records of {file} that were checked verifies with the key \
         provider's key for its key id: a wrong keyring or key provider for this log, or \
         every record altered (run verify). Nothing was changed, and the month takes no \
         appends"
    )]
    WrongKey {
        /// The segment file.
        file: std::path::PathBuf,
        /// Records checked.
        records: u64,
    },
    /// The org's newest key id is `u32::MAX`: no id is left for another key.
    #[error(
        "org {org} has used every key id (up to {}); no key can be added",
        u32::MAX
    )]
    KeyIdsExhausted {
        /// The org.
        org: String,
    },
    /// The provider does not know this key id.
    #[error("org {org} has no key with id {key_id}")]
    UnknownKey {
        /// The org.
        org: String,
        /// The key id.
        key_id: KeyId,
    },
    /// The keyring file is unusable.
    #[error("keyring {path}: {reason}")]
    Keyring {
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The keyring file can be read by group or others.
    #[error(
        "keyring {path} has mode {mode:o}; refusing to load a key file readable by group or others (chmod 600)"
    )]
    InsecurePermissions {
        /// Its path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Any other failure inside a key provider (KMS unavailable...).
    #[error("key provider: {0}")]
    Provider(String),
    /// The key provider panicked. A [`crate::Log`] calls its provider inside
    /// `catch_unwind` and returns the panic as this error (with the panic's message), so
    /// that a panicking provider cannot leave the log half-changed: see [`KeyProvider`].
    #[error("key provider panicked: {0}")]
    Panicked(String),
}

/// Where keys come from: the application's KMS or vault, or a [`Keyring`] file.
///
/// Contract: `signing_key` returns the org's current key; after a rotation it returns the
/// new one, and `key` keeps returning every older key by id so old records still verify.
///
/// A provider should report failures as errors, but a [`crate::Log`] does not rely on it:
/// it calls the provider from its own background thread, from writer retirement, from
/// `close` and from `Drop` as well as from the caller's `append`, so every call it makes
/// runs inside `catch_unwind`, and a panic is returned as [`KeyError::Panicked`] (in
/// [`crate::Error::Key`], with the org) like any other key failure. The panic hook still
/// runs (by default it prints the panic), and a build with `panic = "abort"` aborts as it
/// would anywhere. Functions that take a provider directly (`verify`, checkpoints) let its
/// panic reach their caller.
pub trait KeyProvider: Send + Sync {
    /// The key new records of `org` are signed with.
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError>;
    /// A key of `org` by id, for verification; `Ok(None)` if unknown.
    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError>;
}

/// The provider a [`crate::Log`] calls: the application's, with every panic caught and
/// returned as [`KeyError::Panicked`].
///
/// A log calls its provider where an unwinding panic would leave work half done: a
/// retirement that moved a writer to `closing` and never back (its month's appenders then
/// wait for good), the background flusher (whose death would end every background fsync
/// and index write, silently), `close` (already marked closed, so that `Drop` would not
/// try again and records buffered under `Never` were lost), recovery (a month left marked
/// as being opened). Catching the panic at the one place the log crosses into the
/// provider covers all of these, and those yet to be written, at no cost worth measuring
/// (`catch_unwind` costs nothing unless it catches).
pub(crate) struct PanicContained(pub(crate) Arc<dyn KeyProvider>);

impl KeyProvider for PanicContained {
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        contain(|| self.0.signing_key(org))
    }

    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        contain(|| self.0.key(org, id))
    }
}

/// Runs `call`; a panic becomes [`KeyError::Panicked`] with its message.
fn contain<T>(call: impl FnOnce() -> Result<T, KeyError>) -> Result<T, KeyError> {
    // `AssertUnwindSafe`: nothing of the log's is borrowed by `call`; whatever state the
    // provider itself kept across the panic is the provider's, and it is asked again next
    // time as after any error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|payload| Err(KeyError::Panicked(panic_message(&*payload))))
}

/// The message of a panic's payload (`panic!` with a literal or a format string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a payload that is not a string)".to_string())
}

/// Signers of one org by key id, each made on first use (a stream of records names few keys).
/// The one cache of them: the query's verifier, an index rebuild's tag check, `verify`,
/// `inspect` and [`SegmentReader`](crate::segment::read::SegmentReader) all use it. Every
/// record asks, and consecutive records nearly always name the same key: the signer found
/// last is compared first, before any hashing of the id (which cost a verified query ~3 %
/// of its time). An unknown id costs only its entry in a set and one question to the
/// provider (the file keyring then reads its file again only if it has changed): hostile
/// input can name a different key id in every record.
#[derive(Default)]
pub(crate) struct Signers {
    /// The signers made, in the order they were.
    known: Vec<Signer>,
    /// Where each is in `known`.
    by_id: HashMap<KeyId, usize>,
    /// The one found last.
    last: std::cell::Cell<usize>,
    /// Ids `keys` has no key for (and, through [`Signers::get_or_unknown`], failed to give).
    unknown: HashSet<KeyId>,
    /// Ids `keys` failed to give, with the error, through [`Signers::get_or_failed`].
    failed: HashMap<KeyId, KeyError>,
}

impl Signers {
    /// Where the signer of key `id` is in `known`, if made.
    fn made(&self, id: KeyId) -> Option<usize> {
        let last = self.last.get();
        if self.known.get(last).is_some_and(|s| s.key_id == id) {
            return Some(last);
        }
        let i = *self.by_id.get(&id)?;
        self.last.set(i);
        Some(i)
    }

    /// The signer of key `id` of `org` (`None`: `keys` has no such key). An error is not
    /// kept: the next call asks `keys` again.
    pub fn get(
        &mut self,
        keys: &dyn KeyProvider,
        org: &OrgId,
        id: KeyId,
    ) -> Result<Option<&Signer>, KeyError> {
        if let Some(i) = self.made(id) {
            return Ok(self.known.get(i));
        }
        if self.unknown.contains(&id) {
            return Ok(None);
        }
        match keys.key(org, id)? {
            Some(k) => {
                self.by_id.insert(id, self.known.len());
                self.known.push(Signer::new(id, &k));
                Ok(self.known.last())
            }
            None => {
                self.unknown.insert(id);
                Ok(None)
            }
        }
    }

    /// As [`Signers::get`], but a key `keys` fails to give counts as unknown from then on:
    /// for the checkers that report an unknown key rather than stop (`verify`, `inspect`,
    /// an index rebuild), so that a failing provider is asked once per id, not once per
    /// record, and every record of that id gets the same answer.
    pub fn get_or_unknown(
        &mut self,
        keys: &dyn KeyProvider,
        org: &OrgId,
        id: KeyId,
    ) -> Option<&Signer> {
        match self.get(keys, org, id) {
            Ok(_) => {}
            Err(_) => {
                self.unknown.insert(id);
            }
        }
        self.made(id).and_then(|i| self.known.get(i))
    }

    /// As [`Signers::get`], but an error of `keys` is kept and returned again for that id
    /// without asking `keys` once more: for a query, which reports the failure (once per
    /// segment and key id) and reads on, so that a failing provider is asked once per id.
    pub fn get_or_failed(
        &mut self,
        keys: &dyn KeyProvider,
        org: &OrgId,
        id: KeyId,
    ) -> Result<Option<&Signer>, KeyError> {
        if let Some(i) = self.made(id) {
            return Ok(self.known.get(i));
        }
        if let Some(e) = self.failed.get(&id) {
            return Err(e.clone());
        }
        if let Err(e) = self.get(keys, org, id) {
            self.failed.insert(id, e.clone());
            return Err(e);
        }
        Ok(self.made(id).and_then(|i| self.known.get(i)))
    }
}

/// A keyed HMAC-SHA256 state, cloned per message (saves re-absorbing the key).
#[derive(Clone)]
pub struct Signer {
    key_id: KeyId,
    mac: HmacSha256,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(key {})", self.key_id)
    }
}

const RECORD_TAG_DOMAIN: &[u8] = b"auditlog.record.v1";
const INDEX_TAG_DOMAIN: &[u8] = b"auditlog.index.v1";
const CHECKPOINT_TAG_DOMAIN: &[u8] = b"auditlog.checkpoint.v1";

impl Signer {
    /// A signer for `key`.
    pub fn new(key_id: KeyId, key: &Key) -> Signer {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key.bytes())
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        Signer { key_id, mac }
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn tag_parts(&self, parts: &[&[u8]]) -> Tag {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        Tag(m.finalize().into_bytes().into())
    }

    /// Tag of a record: HMAC(key, "auditlog.record.v1" ‖ u8 org_len ‖ org ‖ chain_hash).
    pub fn record_tag(&self, org: &OrgId, chain: &Hash) -> Tag {
        let org = org.as_str().as_bytes();
        self.tag_parts(&[RECORD_TAG_DOMAIN, &[org.len() as u8], org, &chain.0])
    }

    /// Tag of an index: HMAC(key, "auditlog.index.v1" ‖ index bytes before the tag).
    pub fn index_tag(&self, signed: &[u8]) -> Tag {
        self.tag_parts(&[INDEX_TAG_DOMAIN, signed])
    }

    /// Tag of a checkpoint statement: HMAC(key, "auditlog.checkpoint.v1" ‖ statement).
    pub fn checkpoint_tag(&self, statement: &[u8]) -> Tag {
        self.tag_parts(&[CHECKPOINT_TAG_DOMAIN, statement])
    }

    /// Constant-time check of a record tag.
    pub fn verify_record(&self, org: &OrgId, chain: &Hash, tag: &Tag) -> bool {
        let org = org.as_str().as_bytes();
        let mut m = self.mac.clone();
        for p in [RECORD_TAG_DOMAIN, &[org.len() as u8], org, &chain.0] {
            m.update(p);
        }
        m.verify_slice(&tag.0).is_ok()
    }

    /// Constant-time check of an index tag.
    pub fn verify_index(&self, signed: &[u8], tag: &Tag) -> bool {
        let mut m = self.mac.clone();
        m.update(INDEX_TAG_DOMAIN);
        m.update(signed);
        m.verify_slice(&tag.0).is_ok()
    }

    /// An index tag computed piece by piece, for an index too large to hold in memory: after
    /// [`IndexTagger::update`] with consecutive pieces, [`IndexTagger::finish`] equals
    /// [`Signer::index_tag`] of their concatenation.
    pub(crate) fn index_tagger(&self) -> IndexTagger {
        let mut m = self.mac.clone();
        m.update(INDEX_TAG_DOMAIN);
        IndexTagger(m)
    }
}

/// The running state of an index tag (see [`Signer::index_tagger`]).
#[derive(Clone)]
pub(crate) struct IndexTagger(HmacSha256);

impl IndexTagger {
    /// Absorbs the next index bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The tag of every byte absorbed.
    pub(crate) fn finish(self) -> Tag {
        Tag(self.0.finalize().into_bytes().into())
    }

    /// Constant-time check that `tag` is the tag of every byte absorbed.
    pub(crate) fn verify(self, tag: &Tag) -> bool {
        self.0.verify_slice(&tag.0).is_ok()
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// Chain hash of a record: SHA-256 of its chained bytes (`seq` through the sealed body,
/// which include `prev_hash`).
pub fn chain_hash(chained_bytes: &[u8]) -> Hash {
    sha256(chained_bytes)
}

const SALT_DOMAIN: &[u8] = b"auditlog.salt.v1";
const COMMIT_DOMAIN: &[u8] = b"auditlog.pii.v1";
const ROOT_DOMAIN: &[u8] = b"auditlog.piiroot.v1";

/// Salt of slot `index` derived from a record's seed:
/// first 16 bytes of SHA-256("auditlog.salt.v1" ‖ seed ‖ u8 index).
pub fn derive_salt(seed: &[u8; 16], index: u8) -> [u8; 16] {
    let d = Sha256::new()
        .chain_update(SALT_DOMAIN)
        .chain_update(seed)
        .chain_update([index])
        .finalize();
    let mut s = [0u8; 16];
    s.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    s
}

/// Commitment to one personal-data value: SHA-256("auditlog.pii.v1" ‖ salt ‖ value).
pub fn commitment(salt: &[u8; 16], value: &[u8]) -> Hash {
    Hash(
        Sha256::new()
            .chain_update(COMMIT_DOMAIN)
            .chain_update(salt)
            .chain_update(value)
            .finalize()
            .into(),
    )
}

/// Root over a record's commitments: SHA-256("auditlog.piiroot.v1" ‖ c_0 ‖ … ‖ c_n-1).
pub fn pii_root(commitments: impl IntoIterator<Item = Hash>) -> Hash {
    let mut h = Sha256::new().chain_update(ROOT_DOMAIN);
    for c in commitments {
        h.update(c.0);
    }
    Hash(h.finalize().into())
}

/// Where a writer's personal-data seeds come from: fresh, unpredictable 128-bit values.
///
/// SHA-256 as a PRF in counter mode: `SHA-256(k ‖ counter)`, truncated to 16 bytes, where
/// `k` is 64 bytes from the operating system, drawn at the first seed. `k` fills exactly one
/// SHA-256 block, so each seed costs one compression from the saved state after `k` (HMAC
/// costs two). The input after `k` has one fixed length (8 bytes), so length extension
/// cannot produce another valid input: knowing other records' seeds (they are stored in the
/// openings) does not help predict an erased one without `k`, which never leaves memory.
/// This avoids a `getrandom` system call per event (measured: ~4% of an append).
///
/// Each [`crate::Log`] owns one, so a process that forks gets a fresh `k` for every log its
/// child opens. (A per-process `k` needed the pid in every input to keep a child from
/// repeating its parent's seeds, and `getpid` is a system call: ~5% of an append.) A `Log`
/// used on both sides of a fork after it drew `k` repeats seeds silently, even where parent
/// and child write different orgs: sharing a `Log` across `fork` is not supported
/// (SECURITY.md, "Salts after a fork").
pub(crate) struct SeedSource {
    prf: std::sync::OnceLock<std::result::Result<Sha256, String>>,
    counter: std::sync::atomic::AtomicU64,
}

impl SeedSource {
    /// A source whose key is drawn at its first seed.
    pub(crate) const fn new() -> SeedSource {
        SeedSource {
            prf: std::sync::OnceLock::new(),
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The next seed. Fails only if the operating system has no randomness to give.
    pub(crate) fn next(&self) -> Result<[u8; 16], KeyError> {
        let prf = self.prf.get_or_init(|| {
            let mut k = [0u8; 64];
            getrandom::fill(&mut k).map_err(|e| e.to_string())?;
            Ok(Sha256::new().chain_update(k))
        });
        let prf = prf
            .as_ref()
            .map_err(|e| KeyError::Provider(format!("no randomness: {e}")))?;
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = prf.clone().chain_update(n.to_le_bytes()).finalize();
        let mut seed = [0u8; 16];
        for (d, s) in seed.iter_mut().zip(out.iter()) {
            *d = *s;
        }
        Ok(seed)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 15));
    }
    s
}

/// Parses hex (either case); `None` on odd length or a non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds never repeat, within a source (from many threads) or across sources: each
    /// source draws its own key, which is what keeps a forked child's logs from repeating
    /// its parent's seeds.
    #[test]
    fn seeds_are_distinct_within_and_across_sources() {
        let (a, b) = (SeedSource::new(), SeedSource::new());
        let mut seen = std::collections::HashSet::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| a.next().unwrap()).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                for seed in h.join().unwrap() {
                    assert!(seen.insert(seed), "a seed repeated within one source");
                }
            }
        });
        assert_eq!(seen.len(), 4000);
        // A second source starts its counter at 0 too, so only its own key tells it apart.
        for _ in 0..1000 {
            assert!(
                seen.insert(b.next().unwrap()),
                "two sources gave the same seed"
            );
        }
    }

    /// Key 1 is known, key 2 fails, every other id is unknown; counts the calls.
    struct Counting(std::sync::atomic::AtomicU64);

    impl KeyProvider for Counting {
        fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
            Err(KeyError::NoSigningKey {
                org: org.to_string(),
            })
        }
        fn key(&self, _: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match id.0 {
                1 => Ok(Some(Key(Arc::from(&[7u8; 32][..])))),
                2 => Err(KeyError::Provider("KMS unavailable".into())),
                _ => Ok(None),
            }
        }
    }

    /// The provider is asked once per id, whatever it answered, except that a plain `get`
    /// asks again after an error; and many ids stay cheap to look up.
    #[test]
    fn signers_ask_once_per_id() {
        let keys = Counting(std::sync::atomic::AtomicU64::new(0));
        let calls = || keys.0.load(std::sync::atomic::Ordering::Relaxed);
        let org = OrgId::new("acme").expect("valid");
        let mut s = Signers::default();
        for _ in 0..3 {
            assert!(matches!(s.get(&keys, &org, KeyId(1)), Ok(Some(_))));
            assert!(matches!(s.get(&keys, &org, KeyId(9)), Ok(None)));
        }
        assert_eq!(calls(), 2);
        assert!(s.get(&keys, &org, KeyId(2)).is_err());
        assert!(s.get(&keys, &org, KeyId(2)).is_err());
        assert_eq!(calls(), 4);
        for _ in 0..3 {
            assert!(s.get_or_unknown(&keys, &org, KeyId(2)).is_none());
        }
        assert_eq!(calls(), 5);
        assert!(s.get_or_unknown(&keys, &org, KeyId(1)).is_some());
        for id in 10..20_010 {
            assert!(s.get_or_unknown(&keys, &org, KeyId(id)).is_none());
        }
        assert_eq!(calls(), 5 + 20_000);
    }

    /// Panics on every call.
    struct Panicking;

    impl KeyProvider for Panicking {
        fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
            panic!("no key for {org} today")
        }
        fn key(&self, _: &OrgId, _: KeyId) -> Result<Option<Key>, KeyError> {
            std::panic::panic_any(42_u32)
        }
    }

    /// The log's view of a provider returns its panics as errors, with their message.
    #[test]
    fn a_contained_provider_returns_its_panics_as_errors() {
        let keys = PanicContained(Arc::new(Panicking));
        let org = OrgId::new("acme").expect("valid");
        assert_eq!(
            keys.signing_key(&org).map(|(id, _)| id),
            Err(KeyError::Panicked("no key for acme today".into()))
        );
        assert_eq!(
            keys.key(&org, KeyId(1)),
            Err(KeyError::Panicked(
                "(a payload that is not a string)".into()
            ))
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        let key = Key(Arc::from(&b"Jefe"[..]));
        let s = Signer::new(KeyId(1), &key);
        let t = s.tag_parts(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&t.0),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn record_tag_binds_org_and_chain() {
        let key = Key::new(&[7; 32]);
        let Some(key) = key else { panic!("key") };
        let s = Signer::new(KeyId(1), &key);
        let (a, b) = (OrgId::new("a"), OrgId::new("b"));
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("org")
        };
        let t = s.record_tag(&a, &Hash([1; 32]));
        assert!(s.verify_record(&a, &Hash([1; 32]), &t));
        assert!(!s.verify_record(&b, &Hash([1; 32]), &t));
        assert!(!s.verify_record(&a, &Hash([2; 32]), &t));
    }

    #[test]
    fn key_debug_does_not_leak() {
        let k = Key::new(b"super-secret-key-bytes");
        assert_eq!(format!("{k:?}"), "Some(Key(<redacted>))");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
