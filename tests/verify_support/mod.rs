//! Helpers shared by the verification and inspection tests: a real multi-org, multi-month log
//! built by the engine, a parser for segment files, and byte-level editors that alter
//! records the way an attacker (or a disk) would — with or without fixing the CRC, the chain
//! or the tags. Each test file uses a subset, hence `dead_code` is allowed.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::crypto::{Signer, chain_hash, sha256};
use auditlog::format::crc32;
use auditlog::format::header::SegmentHeader;
use auditlog::format::index::Index;
use auditlog::verify::{Finding, FindingKind, Report, VerifyOptions, verify};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Hash, Key, KeyId, KeyProvider, Keyring, Log, Options, OrgId};

pub const ORGS: u32 = 3;
pub const EVENTS: u64 = 3_000;
/// 2026-01-01 plus 100 days: January to April.
pub const DAYS: u32 = 100;

pub fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

/// The reference workload used by every verification test.
pub fn events() -> Vec<Event> {
    Workload::new(WorkloadConfig {
        events: EVENTS,
        orgs: ORGS,
        days: DAYS,
        seed: 7,
        ..WorkloadConfig::default()
    })
    .collect()
}

/// A keyring with one key per org of the workload.
pub fn keyring(ring: Keyring) -> Arc<Keyring> {
    for o in 0..ORGS {
        ring.rotate(&org(&format!("org-{o:03}"))).unwrap();
    }
    Arc::new(ring)
}

/// Builds a log in `dir`: several orgs and months, keys rotated halfway (so every org has
/// records under key 1 and key 2), small index interval (several sparse entries per
/// segment), cleanly closed. Returns the keyring.
pub fn build_log(dir: &Path) -> Arc<Keyring> {
    let keys = keyring(Keyring::in_memory());
    build_log_with(dir, Arc::clone(&keys));
    keys
}

pub fn build_log_with(dir: &Path, keys: Arc<Keyring>) {
    build_log_n(dir, keys, EVENTS);
}

/// [`build_log_with`] with only the first `n` events of the workload.
pub fn build_log_n(dir: &Path, keys: Arc<Keyring>, n: u64) {
    let mut all = events();
    all.truncate(n as usize);
    let (first, second) = all.split_at(all.len() / 2);
    let mut opts = Options::new(keys.clone()).durability(Durability::Never);
    opts.index_interval = 1024;
    let log = Log::open(dir, opts).unwrap();
    for chunk in first.chunks(250) {
        log.append_batch(chunk).unwrap();
    }
    for o in 0..ORGS {
        keys.rotate(&org(&format!("org-{o:03}"))).unwrap();
    }
    for chunk in second.chunks(250) {
        log.append_batch(chunk).unwrap();
    }
    log.close().unwrap();
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub fn seg_path(dir: &Path, org: &str, seg: &str) -> PathBuf {
    dir.join(org).join(format!("{seg}.seg"))
}

pub fn idx_path(dir: &Path, org: &str, seg: &str) -> PathBuf {
    dir.join(org).join(format!("{seg}.idx"))
}

/// One record of a segment file, as the bytes lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    pub off: usize,
    pub len: usize,
    pub seq: u64,
}

impl Rec {
    pub fn end(&self) -> usize {
        self.off + self.len
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Walks the frames of a well-formed segment (by `frame_len`; no checks).
pub fn records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut off = 256;
    while off + 4 <= bytes.len() {
        let len = u32_at(bytes, off) as usize;
        if len < 96 || off + len > bytes.len() {
            break;
        }
        out.push(Rec {
            off,
            len,
            seq: u64_at(bytes, off + 8),
        });
        off += len;
    }
    out
}

/// `occurred_at` (µs) of the frame at `off`.
pub fn occurred_at(bytes: &[u8], off: usize) -> i64 {
    i64::from_le_bytes(bytes[off + 16..off + 24].try_into().unwrap())
}

/// The largest `occurred_at` of a segment's records.
pub fn max_occurred_at(bytes: &[u8]) -> i64 {
    records(bytes)
        .iter()
        .map(|r| occurred_at(bytes, r.off))
        .max()
        .unwrap()
}

pub fn header(bytes: &[u8]) -> SegmentHeader {
    SegmentHeader::decode(&bytes[..256]).unwrap()
}

/// The chained bytes of the frame at `off`: seq through the sealed body.
fn chained(bytes: &[u8], off: usize) -> &[u8] {
    let sealed_len = u32_at(bytes, off + 60) as usize;
    &bytes[off + 8..off + 64 + sealed_len]
}

pub fn record_hash(bytes: &[u8], off: usize) -> Hash {
    chain_hash(chained(bytes, off))
}

/// Recomputes the CRC of the frame at `off`.
pub fn fix_crc(bytes: &mut [u8], off: usize) {
    let len = u32_at(bytes, off) as usize;
    let crc = crc32(&bytes[off + 8..off + len]);
    bytes[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites `prev_hash` of every record from `from` (an index into `records`) to the chain
/// hash of the record before it (or the genesis), fixing each CRC; tags are left alone.
pub fn rechain(bytes: &mut [u8], from: usize) {
    let recs = records(bytes);
    for i in from..recs.len() {
        let prev = if i == 0 {
            sha256(&bytes[..256])
        } else {
            record_hash(bytes, recs[i - 1].off)
        };
        let off = recs[i].off;
        bytes[off + 28..off + 60].copy_from_slice(&prev.0);
        fix_crc(bytes, off);
    }
}

/// Re-signs every record tag with `signer` (as `org`), fixing each CRC.
pub fn resign(bytes: &mut [u8], org: &OrgId, signer: &Signer) {
    for r in records(bytes) {
        let tag = signer.record_tag(org, &record_hash(bytes, r.off));
        bytes[r.end() - 32..r.end()].copy_from_slice(&tag.0);
        fix_crc(bytes, r.off);
    }
}

fn varint(b: &[u8], at: &mut usize) -> usize {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let x = b[*at];
        *at += 1;
        v |= usize::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// File offset of the last byte of the record's `resource_id` (an ASCII string in the
/// sealed body): changing it keeps the body decodable but changes the chained bytes.
pub fn resource_id_byte(bytes: &[u8], rec: Rec) -> usize {
    let mut at = rec.off + 64;
    let flags = bytes[at];
    at += 1;
    if flags & 1 != 0 {
        let n = varint(bytes, &mut at);
        at += n;
    }
    for _ in 0..2 {
        // action, resource_type
        let n = varint(bytes, &mut at);
        at += n;
    }
    let n = varint(bytes, &mut at);
    assert!(n > 0);
    at + n - 1
}

/// Changes one ASCII alphanumeric byte into another one.
pub fn change_ascii(b: &mut u8) {
    *b = match *b {
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => *b + 1,
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        other => panic!("not alphanumeric: {other}"),
    };
}

/// Decodes an index file, lets `edit` change it, and writes it back with its CRC fixed and
/// the tag either kept (`signer: None`) or recomputed with `signer`.
pub fn rewrite_index(path: &Path, edit: impl FnOnce(&mut Index), signer: Option<&Signer>) {
    let bytes = fs::read(path).unwrap();
    let (mut ix, tag, _) = Index::decode(&bytes).unwrap();
    edit(&mut ix);
    let mut out = ix.encode_unsigned();
    let tag = match signer {
        Some(s) => s.index_tag(&out),
        None => tag,
    };
    out.extend_from_slice(&tag.0);
    fs::write(path, out).unwrap();
}

pub fn read_index(path: &Path) -> Index {
    Index::decode(&fs::read(path).unwrap()).unwrap().0
}

/// The org's signer for a key id, from a provider.
pub fn signer(keys: &dyn KeyProvider, org: &OrgId, id: u32) -> Signer {
    let key = keys.key(org, KeyId(id)).unwrap().unwrap();
    Signer::new(KeyId(id), &key)
}

/// A key nobody else has.
pub fn forged_key() -> Key {
    Key::new(&[0x5a; 32]).unwrap()
}

/// Verifies with keys.
pub fn verify_keys(dir: &Path, keys: &dyn KeyProvider) -> Report {
    verify(dir, Some(keys), &VerifyOptions::default()).unwrap()
}

/// Verifies without keys.
pub fn verify_nokeys(dir: &Path) -> Report {
    verify(dir, None, &VerifyOptions::default()).unwrap()
}

/// A finding reduced to what tests assert on: kind, file relative to `dir`, byte range, seq.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct F {
    pub kind: String,
    pub file: String,
    pub at: Option<(u64, u64)>,
    pub seq: Option<u64>,
}

pub fn f(kind: FindingKind, file: &str, at: Option<(usize, usize)>, seq: Option<u64>) -> F {
    F {
        kind: kind.name(),
        file: file.to_string(),
        at: at.map(|(o, l)| (o as u64, l as u64)),
        seq,
    }
}

pub fn reduce(dir: &Path, fi: &Finding) -> F {
    F {
        kind: fi.kind.name(),
        file: fi
            .file
            .strip_prefix(dir)
            .unwrap_or(&fi.file)
            .display()
            .to_string(),
        at: fi.offset.zip(fi.len),
        seq: fi.seq,
    }
}

/// The report's findings, reduced and sorted (order of discovery is not part of the contract).
pub fn findings(dir: &Path, r: &Report) -> Vec<F> {
    let mut v: Vec<F> = r.findings.iter().map(|x| reduce(dir, x)).collect();
    v.sort();
    v
}

/// Asserts the exact findings (as a sorted list).
#[track_caller]
pub fn assert_findings(dir: &Path, r: &Report, mut want: Vec<F>) {
    want.sort();
    let got = findings(dir, r);
    assert_eq!(
        got,
        want,
        "findings differ; full report:\n{}",
        r.findings
            .iter()
            .map(|x| format!("  {x}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

pub fn dump(r: &Report) -> String {
    let mut s: Vec<String> = r.findings.iter().map(|x| format!("  {x}")).collect();
    s.push(r.summary());
    s.join("\n")
}
