//! Writes the committed seed corpus from real files made by the engine:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus -- fuzz/corpus
//! ```
//!
//! Records are signed with `auditlog::fuzzing::FuzzKeys` (a fixed, public key), so the
//! segment seeds pass tag verification in the `segment` target and reach the event decoder.
//! Output is deterministic except for the salt seeds of personal data and `created_at`.
//!
//! It also writes the segment the `signed_index` target runs every input against, which the
//! library embeds (`src/fuzzing/signed_index.seg`, or the second argument), and that
//! segment's index as the target's seed: the two are written together and must be
//! committed together (`fuzzing::tests::signed_index_seed_is_the_pristine_index` checks it).

use std::error::Error;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use auditlog::crypto::{commitment, derive_salt};
use auditlog::format::body::{Opening, Openings, SealedBody};
use auditlog::format::header::SEGMENT_HEADER_LEN;
use auditlog::format::record::{self, FRAME_HEADER_LEN};
use auditlog::fuzzing::{FuzzKeys, SIGNED_INDEX_INTERVAL};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Log, Options, OrgId, Timestamp};
use serde_json::Value;

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> Res<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let fixture = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "src/fuzzing/signed_index.seg".into());
    let out = Path::new(&out);
    for t in ["record", "segment", "index", "signed_index", "recover"] {
        fs::create_dir_all(out.join(t))?;
    }
    signed_index_seed(out, Path::new(&fixture))?;

    // A real segment and index: eight small workload events of one org (with personal
    // data) and a system event without any.
    let mut events: Vec<_> = Workload::new(WorkloadConfig {
        events: 400,
        orgs: 1,
        days: 20,
        seed: 7,
        ..WorkloadConfig::default()
    })
    .filter(|e| e.after.to_string().len() < 200 && e.before.to_string().len() < 200)
    .take(8)
    .collect();
    let last = events.last().ok_or("no events")?.clone();
    events.push(Event {
        occurred_at: Timestamp(last.occurred_at.0 + 1_000_000),
        user_id: None,
        action: "retention.applied".into(),
        resource_type: "segment".into(),
        resource_id: "2024-01".into(),
        before: Value::Null,
        after: Value::Null,
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: None,
        metadata: Value::Null,
        ..last
    });
    let dir = tempfile::tempdir()?;
    let mut opts = Options::new(Arc::new(FuzzKeys))
        .personal_data(["/after/email"])
        .durability(Durability::Never);
    opts.index_interval = 512;
    let log = Log::open(dir.path(), opts)?;
    log.append_batch(&events)?;
    let org = OrgId::new(&events.first().ok_or("no events")?.org_id)?;
    let id = *log.segments(&org)?.first().ok_or("no segment")?;
    log.close()?;
    let org_dir = dir.path().join(org.as_str());
    let seg = fs::read(org_dir.join(format!("{id}.seg")))?;
    let idx = fs::read(org_dir.join(format!("{id}.idx")))?;

    // The frames, in file order.
    let mut frames = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while let Some(len) = seg.get(off..).and_then(record::peek_frame_len) {
        let end = off + len as usize;
        frames.push((off, end, seg.get(off..end).ok_or("short frame")?.to_vec()));
        off = end;
    }
    if frames.len() != events.len() {
        return Err(format!("{} frames for {} events", frames.len(), events.len()).into());
    }

    // A frame without openings, one with, and one whose first slot is erased (an erasure
    // rewrites only the openings, so its tag and chain stay valid).
    let with_openings = |want: bool| {
        frames.iter().find(|(o, _, f)| {
            record::decode_frame(f, *o as u64).is_ok_and(|r| r.openings.is_empty() != want)
        })
    };
    if let Some((_, _, f)) = with_openings(false) {
        fs::write(out.join("record/frame-no-personal-data.bin"), f)?;
    }
    let (pii_at, pii_end, pii_frame) = with_openings(true).ok_or("no frame with openings")?;
    fs::write(out.join("record/frame-personal-data.bin"), pii_frame)?;
    let erased = erase_first_slot(pii_frame, *pii_at as u64)?;
    fs::write(out.join("record/frame-erased-slot.bin"), &erased)?;

    fs::write(out.join("segment/real-9-records.seg"), &seg)?;
    let mut spliced = seg.get(..*pii_at).ok_or("cut")?.to_vec();
    spliced.extend_from_slice(&erased);
    spliced.extend_from_slice(seg.get(*pii_end..).ok_or("cut")?);
    fs::write(out.join("segment/erased-slot.seg"), &spliced)?;
    fs::write(
        out.join("segment/header-only.seg"),
        seg.get(..SEGMENT_HEADER_LEN).ok_or("cut")?,
    )?;
    fs::write(
        out.join("segment/torn-tail.seg"),
        seg.get(..seg.len() - 40).ok_or("cut")?,
    )?;
    // A flipped bit inside the third record's body: CRC failure, then resync.
    let mut flipped = seg.clone();
    let (third, _, _) = frames.get(2).ok_or("fewer than 3 frames")?;
    if let Some(b) = flipped.get_mut(third + FRAME_HEADER_LEN + 5) {
        *b ^= 0x10;
    }
    fs::write(out.join("segment/corrupt-middle.seg"), &flipped)?;

    // The `recover` target takes the same segments, as a crash leaves them.
    for f in [
        "real-9-records.seg",
        "erased-slot.seg",
        "header-only.seg",
        "torn-tail.seg",
        "corrupt-middle.seg",
    ] {
        fs::copy(out.join("segment").join(f), out.join("recover").join(f))?;
    }
    fs::write(out.join("index/real-9-records.idx"), &idx)?;
    println!(
        "wrote seeds to {}: segment {} bytes, index {} bytes, {} frames",
        out.display(),
        seg.len(),
        idx.len(),
        frames.len()
    );
    Ok(())
}

/// The `signed_index` target's segment: a few hundred small workload events of one org in
/// January 2026 (several users, every action, some out of order, system events without a
/// user, personal data), indexed every `SIGNED_INDEX_INTERVAL` bytes so that the index has
/// a few dozen blocks; and the index the writer wrote for it, the target's seed.
fn signed_index_seed(out: &Path, fixture: &Path) -> Res<()> {
    let events: Vec<_> = Workload::new(WorkloadConfig {
        events: 600,
        orgs: 1,
        days: 20,
        seed: 11,
        start: Timestamp::parse("2026-01-02")?,
        out_of_order: 0.05,
    })
    .filter(|e| e.after.to_string().len() < 160 && e.before.to_string().len() < 160)
    .take(128)
    .collect();
    let dir = tempfile::tempdir()?;
    let mut opts = Options::new(Arc::new(FuzzKeys))
        .personal_data(["/after/email"])
        .durability(Durability::Never);
    opts.index_interval = SIGNED_INDEX_INTERVAL;
    let log = Log::open(dir.path(), opts)?;
    log.append_batch(&events)?;
    let org = OrgId::new(&events.first().ok_or("no events")?.org_id)?;
    let ids = log.segments(&org)?;
    log.close()?;
    let [id] = ids.as_slice() else {
        return Err(format!("{} segments, expected one month", ids.len()).into());
    };
    let org_dir = dir.path().join(org.as_str());
    let seg = fs::read(org_dir.join(format!("{id}.seg")))?;
    let idx = fs::read(org_dir.join(format!("{id}.idx")))?;
    if let Some(parent) = fixture.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(fixture, &seg)?;
    fs::write(out.join("signed_index/pristine.idx"), &idx)?;
    println!(
        "wrote the signed_index segment to {} ({} events, {} bytes) and its index ({} bytes)",
        fixture.display(),
        events.len(),
        seg.len(),
        idx.len()
    );
    Ok(())
}

/// Re-encodes `frame` with its first personal-data slot erased.
fn erase_first_slot(frame: &[u8], offset: u64) -> Res<Vec<u8>> {
    let rec = record::decode_frame(frame, offset).map_err(|e| format!("{e:?}"))?;
    let body = SealedBody::decode(rec.sealed, 0)?;
    let Openings::Seeded { seed, values } = Openings::decode(rec.openings, 0, body.pii.len())?
    else {
        return Err("expected seeded openings".into());
    };
    let slots = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let salt = derive_salt(&seed, i as u8);
            if i == 0 {
                Opening::Erased {
                    commitment: commitment(&salt, v),
                }
            } else {
                Opening::Open { salt, value: v }
            }
        })
        .collect();
    let mut openings = Vec::new();
    Openings::Explicit(slots).encode(&mut openings);
    let mut out = Vec::new();
    record::encode_frame(&mut out, &rec.fields, rec.sealed, &openings, |_| rec.tag);
    Ok(out)
}
