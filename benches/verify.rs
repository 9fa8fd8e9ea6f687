#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Verification throughput against the SHA-256 bound, in one run (issue #3).
//!
//! Builds a log of a few hundred MB once (reference workload, `Durability::Never`,
//! `append_batch`) in a temporary directory under `target/tmp`, then measures, over the same
//! segment bytes (hot in the page cache):
//!
//! - `sha256_bound`: raw SHA-256 (sha2 crate) of every segment file, in memory: the bound;
//! - `sha256_records`: SHA-256 of every record's chained bytes, one call per record (the
//!   chain hash alone; shows the per-message cost);
//! - `crypto_floor`: all the hashing verification cannot skip, from pre-parsed records: the
//!   chain hash, the HMAC tag, and for records with personal data each slot's salt
//!   derivation and commitment and the commitment root (FORMAT.md §2.4);
//! - `verify_keys`: `auditlog::verify::verify` with keys (CRC, chain, seq, HMAC tags, body
//!   decoding, personal-data commitments, indexes, links);
//! - `verify_no_keys`: the same without keys (no tags).
//!
//! Then prints MB/s, records/s and the ratio of verification to the bound (target ≥ 0.7).
//! Size: `AUDITLOG_VERIFY_BENCH_MB` (default: 100 in the short profile, 300 in the long one;
//! see `common/profile.rs`). Run: `cargo bench --bench verify` or
//! `AUDITLOG_BENCH=long cargo bench --bench verify`.

#[path = "common/profile.rs"]
mod profile;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::crypto::{Hash, Signer, Tag, chain_hash, commitment, derive_salt, pii_root};
use auditlog::format::body::{Opening, Openings, SealedBody};
use auditlog::verify::{VerifyOptions, verify};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, KeyProvider, Keyring, Log, Options, OrgId};
use criterion::{Criterion, Throughput};
use sha2::{Digest, Sha256};

const ORGS: u32 = 4;
/// Bytes per event on disk, roughly, to size the workload.
const BYTES_PER_EVENT: u64 = 650;

struct Built {
    keys: Arc<Keyring>,
    /// Every segment file's bytes.
    segments: Vec<(PathBuf, Vec<u8>)>,
    records: u64,
    bytes: u64,
}

fn build(dir: &Path, target_bytes: u64) -> Built {
    let keys = Keyring::in_memory();
    for o in 0..ORGS {
        keys.rotate(&OrgId::new(&format!("org-{o:03}")).unwrap())
            .unwrap();
    }
    let keys = Arc::new(keys);
    let events = target_bytes / BYTES_PER_EVENT;
    let log = Log::open(
        dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    let mut batch = Vec::with_capacity(1000);
    for e in Workload::new(WorkloadConfig {
        events,
        orgs: ORGS,
        days: 90,
        seed: 3,
        ..WorkloadConfig::default()
    }) {
        batch.push(e);
        if batch.len() == 1000 {
            log.append_batch(&batch).unwrap();
            batch.clear();
        }
    }
    log.append_batch(&batch).unwrap();
    log.close().unwrap();
    let mut segments = Vec::new();
    for org in fs::read_dir(dir).unwrap() {
        let org = org.unwrap().path();
        if !org.is_dir() {
            continue;
        }
        for f in fs::read_dir(&org).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "seg") {
                let b = fs::read(&p).unwrap();
                segments.push((p, b));
            }
        }
    }
    segments.sort();
    let bytes = segments.iter().map(|(_, b)| b.len() as u64).sum();
    Built {
        keys,
        segments,
        records: events,
        bytes,
    }
}

/// The chained bytes of each record (seq through the sealed body), walking frames.
fn chained_ranges(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 256;
    while off + 64 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let sealed = u32::from_le_bytes(b[off + 60..off + 64].try_into().unwrap()) as usize;
        out.push((off + 8, off + 64 + sealed));
        off += len;
    }
    out
}

/// What the crypto floor hashes for one record, parsed beforehand.
struct Parsed {
    chained: (usize, usize),
    key_id: u32,
    tag: Tag,
    /// Seed (seeded openings) or explicit salts, and each open slot's value.
    seed: Option<[u8; 16]>,
    slots: Vec<(Option<[u8; 16]>, Vec<u8>)>,
    has_root: bool,
}

fn parse(b: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    for (s, e) in chained_ranges(b) {
        let off = s - 8;
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let body = SealedBody::decode(&b[off + 64..e], 0).unwrap();
        let openings = Openings::decode(&b[e..off + len - 32], 0, body.pii.len()).unwrap();
        let (seed, slots) = match openings {
            Openings::None => (None, Vec::new()),
            Openings::Seeded { seed, values } => (
                Some(seed),
                values.iter().map(|v| (None, v.to_vec())).collect(),
            ),
            Openings::Explicit(slots) => (
                None,
                slots
                    .iter()
                    .filter_map(|o| match o {
                        Opening::Open { salt, value } => Some((Some(*salt), value.to_vec())),
                        Opening::Erased { .. } => None,
                    })
                    .collect(),
            ),
        };
        out.push(Parsed {
            chained: (s, e),
            key_id: u32::from_le_bytes(b[off + 24..off + 28].try_into().unwrap()),
            tag: Tag(b[off + len - 32..off + len].try_into().unwrap()),
            seed,
            slots,
            has_root: body.pii_root.is_some(),
        });
    }
    out
}

/// Median wall time of `runs` calls.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn main() {
    let settings = profile::verify();
    let mb: u64 = std::env::var("AUDITLOG_VERIFY_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(settings.mb);
    let tmp_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    fs::create_dir_all(&tmp_root).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("verify-bench-")
        .tempdir_in(&tmp_root)
        .unwrap();
    let dir = tmp.path().join("log");
    let t = Instant::now();
    let built = build(&dir, mb * 1_000_000);
    eprintln!(
        "built {} records, {:.1} MB of segments in {} files, in {:.1} s",
        built.records,
        built.bytes as f64 / 1e6,
        built.segments.len(),
        t.elapsed().as_secs_f64()
    );
    let keys: &dyn KeyProvider = &*built.keys;
    // Sanity: the log is intact, and verification covers every byte and record.
    let r = verify(&dir, Some(keys), &VerifyOptions::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings.first());
    assert_eq!((r.records, r.bytes), (built.records, built.bytes));
    let ranges: Vec<Vec<(usize, usize)>> = built
        .segments
        .iter()
        .map(|(_, b)| chained_ranges(b))
        .collect();
    assert_eq!(
        ranges.iter().map(Vec::len).sum::<usize>() as u64,
        built.records
    );

    let parsed: Vec<(OrgId, Vec<Parsed>)> = built
        .segments
        .iter()
        .map(|(p, b)| {
            let org = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
            (OrgId::new(org).unwrap(), parse(b))
        })
        .collect();
    let signers: Vec<Vec<Signer>> = (0..ORGS)
        .map(|o| {
            let org = OrgId::new(&format!("org-{o:03}")).unwrap();
            (1..=1)
                .map(|k| {
                    let id = auditlog::KeyId(k);
                    Signer::new(id, &keys.key(&org, id).unwrap().unwrap())
                })
                .collect()
        })
        .collect();
    let crypto_floor = || {
        for ((org, recs), (_, b)) in parsed.iter().zip(&built.segments) {
            let o: usize = org.as_str()[4..].parse().unwrap();
            for r in recs {
                let hash = chain_hash(&b[r.chained.0..r.chained.1]);
                let signer = &signers[o][r.key_id as usize - 1];
                assert!(signer.verify_record(org, &hash, &r.tag));
                let commitments: Vec<Hash> = r
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, (salt, v))| {
                        let salt = salt.unwrap_or_else(|| derive_salt(&r.seed.unwrap(), i as u8));
                        commitment(&salt, v)
                    })
                    .collect();
                if r.has_root {
                    black_box(pii_root(&commitments));
                }
            }
        }
    };
    let sha_bound = || {
        for (_, b) in &built.segments {
            black_box(Sha256::digest(b));
        }
    };
    let sha_records = || {
        for ((_, b), rs) in built.segments.iter().zip(&ranges) {
            for &(s, e) in rs {
                black_box(chain_hash(&b[s..e]));
            }
        }
    };
    let verify_keys = || {
        black_box(verify(&dir, Some(keys), &VerifyOptions::default()).unwrap());
    };
    let verify_no_keys = || {
        black_box(verify(&dir, None, &VerifyOptions::default()).unwrap());
    };

    let t = settings.timing;
    let mut c = Criterion::default()
        .sample_size(t.samples)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measure)
        .configure_from_args();
    {
        // The size in the name: criterion compares a run only with runs of the same size.
        let mut g = c.benchmark_group(format!("verify_{mb}MB"));
        g.throughput(Throughput::Bytes(built.bytes));
        g.bench_function("sha256_bound", |b| b.iter(sha_bound));
        g.bench_function("sha256_records", |b| b.iter(sha_records));
        g.bench_function("crypto_floor", |b| b.iter(crypto_floor));
        g.bench_function("verify_keys", |b| b.iter(verify_keys));
        g.bench_function("verify_no_keys", |b| b.iter(verify_no_keys));
        g.finish();
    }
    c.final_summary();

    // The figures, from medians measured here in the same run.
    let runs = settings.summary_runs;
    let bound = median(runs, sha_bound);
    let per_record = median(runs, sha_records);
    let floor = median(runs, crypto_floor);
    let with_keys = median(runs, verify_keys);
    let without = median(runs, verify_no_keys);
    let mbps = |d: Duration| built.bytes as f64 / 1e6 / d.as_secs_f64();
    let rps = |d: Duration| built.records as f64 / d.as_secs_f64();
    println!();
    println!(
        "verification summary: {:.1} MB of segments, {} records (avg {:.0} B/record); profile {}, medians of {runs} calls",
        built.bytes as f64 / 1e6,
        built.records,
        built.bytes as f64 / built.records as f64,
        profile::Profile::get().name()
    );
    println!("  SHA-256 bound (whole files):   {:>8.1} MB/s", mbps(bound));
    println!(
        "  SHA-256 per record (chained):  {:>8.1} MB/s  {:>10.0} records/s  ratio {:.2}",
        mbps(per_record),
        rps(per_record),
        bound.as_secs_f64() / per_record.as_secs_f64()
    );
    println!(
        "  crypto floor (chain, tag, PII): {:>8.1} MB/s  {:>10.0} records/s  ratio {:.2} (the most verification with keys can reach)",
        mbps(floor),
        rps(floor),
        bound.as_secs_f64() / floor.as_secs_f64()
    );
    let slots: usize = parsed
        .iter()
        .flat_map(|(_, r)| r.iter().map(|p| p.slots.len()))
        .sum();
    println!(
        "  personal-data slots: {:.2} per record (each costs a salt derivation and a commitment)",
        slots as f64 / built.records as f64
    );
    for (name, d) in [
        ("verify with keys", with_keys),
        ("verify without keys", without),
    ] {
        let ratio = bound.as_secs_f64() / d.as_secs_f64();
        println!(
            "  {name:<30} {:>8.1} MB/s  {:>10.0} records/s  ratio {ratio:.2} ({}; target >= 0.70)  {:.2} us/record",
            mbps(d),
            rps(d),
            if ratio >= 0.7 { "met" } else { "MISSED" },
            d.as_secs_f64() * 1e6 / built.records as f64
        );
    }
    println!(
        "  verify with keys / crypto floor: {:.2} (share of verification time spent on unavoidable hashing)",
        floor.as_secs_f64() / with_keys.as_secs_f64()
    );
    drop(tmp);
}
