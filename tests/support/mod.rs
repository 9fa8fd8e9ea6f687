//! Helpers shared by the integration tests: keys and keyrings, realistic events, scans and
//! assertions on a log, copies and listings of log directories, the reference multi-org,
//! multi-month log built by the engine, a parser for segment files, byte-level editors that
//! alter records the way an attacker (or a disk) would — with or without fixing the CRC, the
//! chain or the tags —, verification findings reduced to what tests assert on, and a runner
//! for the `auditlog` binary. Each test file uses a subset, hence `dead_code` is allowed.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use auditlog::crypto::{KeyError, Signer, chain_hash, sha256};
use auditlog::format::crc32;
use auditlog::format::header::SegmentHeader;
use auditlog::format::index::Index;
use auditlog::verify::{Finding, FindingKind, Report, VerifyOptions, verify};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{
    Durability, Error, Event, Hash, Key, KeyId, KeyProvider, Keyring, Log, Month, Options, OrgId,
    Receipt, Timestamp, VerifiedEvent,
};

// ---------------------------------------------------------------------------------------
// Names, times, keys and events
// ---------------------------------------------------------------------------------------

/// An org id that must be valid.
pub fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

/// A timestamp from RFC 3339 or `YYYY-MM-DD`.
pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// `YYYY-MM`.
pub fn month(s: &str) -> Month {
    s.parse().unwrap()
}

/// Options with `keys` under `Durability::Always`.
pub fn always(keys: &Arc<Keyring>) -> Options {
    Options::new(keys.clone()).durability(Durability::Always)
}

/// Options with `keys` under `Durability::Never`.
pub fn never(keys: &Arc<Keyring>) -> Options {
    Options::new(keys.clone()).durability(Durability::Never)
}

/// An in-memory keyring with one signing key for each org.
pub fn keys_for(orgs: &[&str]) -> Arc<Keyring> {
    let ring = Keyring::in_memory();
    for o in orgs {
        ring.rotate(&org(o)).unwrap();
    }
    Arc::new(ring)
}

/// `n` events of the reference workload (orgs `org-000`..), deterministic from `seed`.
pub fn workload(n: u64, orgs: u32, days: u32, seed: u64) -> Vec<Event> {
    Workload::new(WorkloadConfig {
        events: n,
        orgs,
        days,
        seed,
        ..WorkloadConfig::default()
    })
    .collect()
}

/// `n` reference events (seed `seed`) of `org`, all in January 2026.
pub fn january_of(org: &str, n: u64, seed: u64) -> Vec<Event> {
    workload(n, 1, 28, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = org.into();
            e
        })
        .collect()
}

/// [`january_of`]'s events, 31 days later: all in February 2026.
pub fn february_of(org: &str, n: u64, seed: u64) -> Vec<Event> {
    january_of(org, n, seed)
        .into_iter()
        .map(|mut e| {
            e.occurred_at.0 += 31 * 86_400_000_000;
            e
        })
        .collect()
}

/// `n` events of the reference workload starting at `start`, 5 % of them out of order.
pub fn workload_from(n: u64, orgs: u32, days: u32, seed: u64, start: &str) -> Vec<Event> {
    Workload::new(WorkloadConfig {
        events: n,
        orgs,
        days,
        seed,
        start: ts(start),
        out_of_order: 0.05,
    })
    .collect()
}

/// A small event.
pub fn event(org_id: &str, at: Timestamp, user: Option<&str>, action: &str, rid: &str) -> Event {
    Event {
        org_id: org_id.into(),
        occurred_at: at,
        user_id: user.map(str::to_string),
        action: action.into(),
        resource_type: action.split('.').next().unwrap().into(),
        resource_id: rid.into(),
        before: serde_json::Value::Null,
        after: serde_json::json!({"n": at.0}),
        ip: user.map(|_| "192.0.2.1".to_string()),
        user_agent: None,
        session_id: None,
        trace_id: Some(format!("tr-{}", at.0 % 7)),
        metadata: serde_json::Value::Null,
    }
}

/// Offset of an event's `resource_id` bytes from the start of its frame, when every
/// variable-length field before it is shorter than 128 bytes (FORMAT.md §2.3: the 64-byte
/// frame head, flags, then varint-prefixed user_id, action, resource_type, resource_id).
pub fn resource_id_start(e: &Event) -> usize {
    64 + 1
        + e.user_id.as_ref().map_or(0, |u| u.len() + 1)
        + (e.action.len() + 1)
        + (e.resource_type.len() + 1)
        + 1
}

// ---------------------------------------------------------------------------------------
// Scans and assertions on a log
// ---------------------------------------------------------------------------------------

/// Every item of a scan of `org`, split into verified events and errors (in order).
pub fn scan(log: &Log, org: &OrgId) -> (Vec<VerifiedEvent>, Vec<Error>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for item in log.scan(org).unwrap() {
        match item {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Scans `org` and fails the test on any error.
pub fn scan_clean(log: &Log, org: &OrgId) -> Vec<VerifiedEvent> {
    let (ok, errs) = scan(log, org);
    assert!(errs.is_empty(), "scan of {org} reported errors: {errs:#?}");
    ok
}

/// Asserts that the seqs of every month in `events` are exactly `0..n`, in order.
pub fn assert_contiguous(events: &[VerifiedEvent]) -> BTreeMap<Month, u64> {
    let mut next: BTreeMap<Month, u64> = BTreeMap::new();
    for v in events {
        let n = next.entry(v.month).or_insert(0);
        assert_eq!(
            v.seq, *n,
            "month {} seq {} where {} was expected",
            v.month, v.seq, n
        );
        *n += 1;
    }
    next
}

/// Asserts that every receipt appears in `events` at its (month, seq) with its hash.
pub fn assert_receipts_present(receipts: &[Receipt], events: &[VerifiedEvent]) {
    let by_pos: BTreeMap<(Month, u64), &VerifiedEvent> =
        events.iter().map(|v| ((v.month, v.seq), v)).collect();
    for r in receipts {
        let v = by_pos
            .get(&(r.month, r.seq))
            .unwrap_or_else(|| panic!("receipt {r:?} has no record in the scan"));
        assert_eq!(v.hash, r.hash, "hash of {} seq {}", r.month, r.seq);
        assert_eq!(v.event.org_id, r.org_id);
    }
}

/// Runs full verification (records, tags, indexes, links) and fails the test on any
/// error-severity finding. Returns the report for further checks.
pub fn assert_verifies(dir: &Path, keys: &dyn KeyProvider) -> Report {
    let report = verify(dir, Some(keys), &VerifyOptions::default()).unwrap();
    assert!(
        report.is_intact(),
        "verification of {} failed: {:#?}",
        dir.display(),
        report.findings
    );
    report
}

/// Verifies `dir` and asserts that its only findings are quarantined data (what recovery
/// moved aside after a crash or a failed write).
pub fn assert_only_quarantined_data(dir: &Path, keys: &dyn KeyProvider) {
    let report = verify(dir, Some(keys), &VerifyOptions::default()).unwrap();
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::QuarantinedData),
        "{:#?}",
        report.findings
    );
}

// ---------------------------------------------------------------------------------------
// Log directories and their files
// ---------------------------------------------------------------------------------------

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

/// Names of the files in `dir` (empty if it does not exist), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Segment files under `dir/org`, sorted.
pub fn segment_files(dir: &Path, org: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(org))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

pub fn seg_path(dir: &Path, org: &str, seg: &str) -> PathBuf {
    dir.join(org).join(format!("{seg}.seg"))
}

pub fn idx_path(dir: &Path, org: &str, seg: &str) -> PathBuf {
    dir.join(org).join(format!("{seg}.idx"))
}

/// The decoded index of a segment file (`…/2026-01.seg` → `…/2026-01.idx`).
pub fn index_of(seg: &Path) -> Index {
    read_index(&seg.with_extension("idx"))
}

// ---------------------------------------------------------------------------------------
// The reference log of the verification and inspection tests
// ---------------------------------------------------------------------------------------

pub const ORGS: u32 = 3;
pub const EVENTS: u64 = 3_000;
/// 2026-01-01 plus 100 days: January to April.
pub const DAYS: u32 = 100;

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

/// The reference log in a fresh temporary directory (the log is the directory itself).
pub fn fresh_log() -> (tempfile::TempDir, Arc<Keyring>) {
    let d = tempfile::tempdir().unwrap();
    let keys = build_log(d.path());
    (d, keys)
}

/// The first `events` events of the reference log in `root/log`, signed with the key file
/// `root/keys.json`, for tests that run the binary.
pub struct KeyedLog {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dir: PathBuf,
    pub keyring: PathBuf,
}

impl KeyedLog {
    pub fn new(events: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("log");
        let key_file = root.join("keys.json");
        build_log_n(
            &dir,
            keyring(Keyring::open_or_create(&key_file).unwrap()),
            events,
        );
        KeyedLog {
            tmp,
            root,
            dir,
            keyring: key_file,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The `auditlog` binary
// ---------------------------------------------------------------------------------------

/// For a test whose work runs in a child process whose files may not grow past `kib` KiB
/// (`ulimit -f`, with SIGXFSZ ignored, so a write past it fails with EFBIG).
///
/// In the child (the environment variable `env` set): runs `child` with the log directory
/// and returns `None`. In the test: runs the test `name` of this test binary again as that
/// child, on a fresh log directory, checks that it exited 0 and returns the temporary
/// directory (keep it alive), the log directory and the child's stdout.
pub fn in_child_with_file_size_limit(
    name: &str,
    kib: u32,
    env: &str,
    child: fn(&str),
) -> Option<(tempfile::TempDir, PathBuf, String)> {
    if let Ok(dir) = std::env::var(env) {
        child(&dir);
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ulimit -f {kib} && trap '' XFSZ && exec \"$0\" --exact {name} --nocapture --test-threads=1"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(&exe)
        .env(env, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((tmp, dir, stdout))
}

/// A keyring's keys, except that key 1 of every org is missing (its `key` lookup finds
/// nothing): records and indexes signed with it cannot be checked.
pub struct WithoutKeyOne(pub Arc<Keyring>);

impl KeyProvider for WithoutKeyOne {
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        self.0.signing_key(org)
    }

    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        if id == KeyId(1) {
            return Ok(None);
        }
        self.0.key(org, id)
    }
}

/// `auditlog [--dir DIR] [--keyring FILE]`, to be given its arguments, with neither
/// `AUDITLOG_DIR` nor `AUDITLOG_KEYRING` taken from the environment.
pub fn auditlog_command(dir: Option<&Path>, keyring: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditlog"));
    if let Some(d) = dir {
        c.arg("--dir").arg(d);
    }
    if let Some(k) = keyring {
        c.arg("--keyring").arg(k);
    }
    c.env_remove("AUDITLOG_DIR").env_remove("AUDITLOG_KEYRING");
    c
}

/// Runs `auditlog [--dir DIR] [--keyring FILE] ARGS…` ([`auditlog_command`]).
pub fn auditlog_cli<S: AsRef<OsStr>>(
    dir: Option<&Path>,
    keyring: Option<&Path>,
    args: impl IntoIterator<Item = S>,
) -> Output {
    auditlog_command(dir, keyring).args(args).output().unwrap()
}

/// Runs `cmd` with `input` on its standard input (written from a thread: a write the
/// process did not read is not an error), standard output as `stdout`, standard error
/// captured.
pub fn run_with_input(mut cmd: Command, input: Vec<u8>, stdout: Stdio) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Standard output of a run, as UTF-8.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Standard error of a run, as UTF-8.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Segment bytes: parsing and editing
// ---------------------------------------------------------------------------------------

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

/// 2026-03-10 plus `i` minutes: a record a minute, for tests that place records by index.
pub fn minute(i: i64) -> Timestamp {
    Timestamp(ts("2026-03-10").0 + i * 60_000_000)
}

/// `n` events of org-000 by alice, one a minute from 2026-03-10 ([`minute`]), resource `b{i}`.
pub fn minutely(n: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            event(
                "org-000",
                minute(i),
                Some("alice"),
                "booking.created",
                &format!("b{i}"),
            )
        })
        .collect()
}

/// Verifies with keys.
pub fn verify_keys(dir: &Path, keys: &dyn KeyProvider) -> Report {
    verify(dir, Some(keys), &VerifyOptions::default()).unwrap()
}

/// Verifies without keys.
pub fn verify_nokeys(dir: &Path) -> Report {
    verify(dir, None, &VerifyOptions::default()).unwrap()
}

/// The error findings of verifying `dir` with keys, as (kind, "file name: message").
pub fn error_findings(dir: &Path, keys: &dyn KeyProvider) -> Vec<(FindingKind, String)> {
    verify_keys(dir, keys)
        .findings
        .iter()
        .filter(|f| f.severity == auditlog::verify::Severity::Error)
        .map(|f| {
            let name = f.file.file_name().unwrap_or_default().to_string_lossy();
            (f.kind, format!("{name}: {}", f.message))
        })
        .collect()
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

/// A finding of `kind` on `file` at record `r` (its byte range and seq).
pub fn at_rec(kind: FindingKind, file: &str, r: Rec) -> F {
    f(kind, file, Some((r.off, r.len)), Some(r.seq))
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

/// Asserts that some finding of `r` is `what` says; the report is shown if none is.
#[track_caller]
pub fn assert_found(r: &Report, what: impl Fn(&Finding) -> bool) {
    assert!(r.findings.iter().any(what), "{}", dump(r));
}

pub fn dump(r: &Report) -> String {
    let mut s: Vec<String> = r.findings.iter().map(|x| format!("  {x}")).collect();
    s.push(r.summary());
    s.join("\n")
}

/// Whether this test process can run a child as another user: it is root and `setpriv` is
/// there. Root reads and writes anything, so tests of permission errors need such a child.
pub fn can_run_as_nobody() -> bool {
    let is_root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    is_root && Command::new("setpriv").arg("--version").output().is_ok()
}

/// Hands `root` (the whole tree) to uid 65534, then runs this test binary's test `test` as
/// that user with `env` set to `root`, and asserts that the child printed `CHILD OK`. The
/// child, seeing `env`, does its part and prints it. `root`'s parent must let 65534 pass.
pub fn run_child_as_nobody(test: &str, env: &str, root: &Path) -> String {
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root)
        .status()
        .unwrap();
    assert!(chown.success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("CHILD OK"),
        "the child as uid 65534 failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a query to its end: the events, the error items, and its stats.
pub fn run_query(q: auditlog::Query<'_>) -> (Vec<VerifiedEvent>, Vec<Error>, auditlog::QueryStats) {
    let mut m = q.run().unwrap();
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for item in m.by_ref() {
        match item {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs, m.stats().clone())
}

/// Recomputes a segment image's header CRC (its last 4 of 256 bytes), after a header edit.
pub fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32(&bytes[..252]);
    bytes[252..256].copy_from_slice(&crc.to_le_bytes());
}
