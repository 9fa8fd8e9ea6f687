//! The `recover` target: a log directory holding one fuzzed segment (and no index), put
//! through `verify`, a checkpoint, recovery (`Log::open`), one append, a clean close and a
//! second open.

use std::sync::Arc;

use super::{FuzzKeys, next_month, scratch_dir, with_crc};
use crate::crypto::KeyProvider;
use crate::event::{Event, OrgId};
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
use crate::log::{Durability, Log, Options, RecoveryAction};
use crate::time::{Month, Timestamp};
use crate::verify::{CheckpointOptions, FindingKind, VerifyOptions};

/// Org and segment a file whose header does not decode is filed as: those of the seeds.
const FALLBACK_ORG: &str = "org-000";

/// The event the harness appends after recovery.
const MARKER_ACTION: &str = "fuzz.recovered";

/// What [`recover_run`] got through; for the harness's own tests.
#[derive(Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) struct RecoverRun {
    /// The (possibly repaired) header decoded, and named the file.
    pub header: bool,
    /// `verify` passed the directory as it was given (before recovery).
    pub intact_before: bool,
    /// A checkpoint could be made of it before recovery (accepting damage).
    pub checkpoint: bool,
    /// What recovery reported.
    pub recovery: Vec<RecoveryAction>,
    /// The marker event was appended and the log closed cleanly.
    pub appended: bool,
    /// Events a query of the month returned after reopening.
    pub events: usize,
}

/// Treats `data` as the only segment of a log directory; see [`super::fuzz_recover`].
pub(super) fn recover_run(data: &[u8]) -> Option<RecoverRun> {
    let mut run = RecoverRun::default();
    // Random mutations almost never keep the header's CRC: unless the input's length is a
    // multiple of 4, it is recomputed, so that recovery sees a header it believes.
    let mut seg = data.to_vec();
    if !data.len().is_multiple_of(4)
        && let Some(fixed) = data
            .get(..SEGMENT_HEADER_LEN)
            .and_then(|h| with_crc(h, SEGMENT_HEADER_LEN - 4, 0..SEGMENT_HEADER_LEN - 4))
        && let Some(slot) = seg.get_mut(..SEGMENT_HEADER_LEN)
    {
        slot.copy_from_slice(&fixed);
    }
    let header = SegmentHeader::decode(&seg).ok();
    run.header = header.is_some();
    let (org, id) = match header {
        Some(h) => (h.org, h.id),
        None => (
            OrgId::new(FALLBACK_ORG).ok()?,
            SegmentId {
                month: Month::new(2026, 1)?,
                part: 0,
            },
        ),
    };

    let dir = scratch_dir()?;
    let org_dir = dir.path().join(org.as_str());
    std::fs::create_dir(&org_dir).ok()?;
    std::fs::write(org_dir.join(crate::segment::segment_file_name(id)), &seg).ok()?;

    // `verify` fails only on I/O (the machine's), never on content.
    let vopts = VerifyOptions {
        threads: Some(1),
        ..VerifyOptions::default()
    };
    let keys: &dyn KeyProvider = &FuzzKeys;
    for k in [Some(keys), None] {
        let report = crate::verify::verify(dir.path(), k, &vopts);
        assert!(
            matches!(report, Ok(_) | Err(crate::Error::Io { .. })),
            "verify failed on content: {:?}",
            report.err()
        );
        if k.is_some() {
            run.intact_before = report.is_ok_and(|r| r.is_intact());
        }
    }
    // Accepting damage (as `checkpoint --accept-damage`): each segment is pinned up to its
    // first damage, which recovery must leave as it is.
    let cp_opts = CheckpointOptions {
        accept_damage: true,
    };
    let checkpoint = crate::verify::make_checkpoint_with(dir.path(), &org, keys, &cp_opts).ok();
    run.checkpoint = checkpoint.is_some();

    // Recovery: the log opens whatever the segment holds (a month it cannot recover is
    // reported, not an error of `open`).
    let opts = || Options::new(Arc::new(FuzzKeys)).durability(Durability::Never);
    let opened = Log::open(dir.path(), opts());
    assert!(
        matches!(opened, Ok(_) | Err(crate::Error::Io { .. })),
        "recovery failed to open the log: {:?}",
        opened.err()
    );
    let log = opened.ok()?;
    run.recovery = log.recovery_report();
    let month = id.month;
    let start = month.start();
    let until = next_month(month)?.start();
    let marker = Event {
        org_id: org.to_string(),
        occurred_at: Timestamp(start.0 + (until.0 - start.0) / 2),
        user_id: None,
        action: MARKER_ACTION.into(),
        resource_type: "fuzz".into(),
        resource_id: "marker".into(),
        before: serde_json::Value::Null,
        after: serde_json::Value::Null,
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: None,
        metadata: serde_json::Value::Null,
    };
    let appended = log.append(&marker).is_ok();
    run.appended = log.close().is_ok() && appended;
    if !run.appended {
        return Some(run);
    }

    // A log closed cleanly has nothing left to recover, and holds the marker once.
    let reopened = Log::open(dir.path(), opts());
    assert!(
        matches!(reopened, Ok(_) | Err(crate::Error::Io { .. })),
        "a log closed cleanly after recovery does not reopen: {:?}",
        reopened.err()
    );
    let log = reopened.ok()?;
    let again = log.recovery_report();
    assert!(
        again.is_empty(),
        "a log closed cleanly after recovery ({:?}) is recovered again: {again:?}",
        run.recovery
    );
    let mut errors = 0usize;
    for item in log
        .query(&org)
        .since(start)
        .until(until)
        .action(MARKER_ACTION)
    {
        match item {
            Ok(ev) => {
                assert!(
                    ev.event == marker,
                    "a query for the marker returned another event: {ev:?}"
                );
                run.events += 1;
            }
            Err(_) => errors += 1,
        }
        assert!(run.events + errors < 1024, "query does not end");
    }
    assert!(
        run.events <= 1 && (errors > 0 || run.events == 1),
        "the appended marker came back {} times (query errors: {errors})",
        run.events
    );
    let _ = log.close();

    // A checkpoint made before recovery still holds after it and the append: recovery
    // never takes away or changes records that verified from a segment's start.
    if let Some(cp) = checkpoint {
        let vopts = VerifyOptions {
            threads: Some(1),
            checkpoints: vec![cp],
            ..VerifyOptions::default()
        };
        if let Ok(report) = crate::verify::verify(dir.path(), Some(keys), &vopts) {
            let against: Vec<_> = report
                .findings
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind,
                        FindingKind::CheckpointMismatch | FindingKind::TruncatedAgainstCheckpoint
                    )
                })
                .collect();
            assert!(
                against.is_empty(),
                "recovery ({:?}) broke a checkpoint made before it: {against:?}",
                run.recovery
            );
        }
    }
    Some(run)
}
