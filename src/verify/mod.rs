//! Full verification of a log directory: every record, index, link and checkpoint.
//!
//! Verification fails closed. With keys, every tag is checked and a record signed by a key
//! the keyring lacks is a finding, never a pass. Without keys it still checks structure,
//! checksums, seqs, the hash chain, indexes and links, and the report says plainly that
//! authenticity was not checked. It continues after damage (resynchronising on the next
//! valid record) so that every finding is listed, and tells crash damage (a torn tail) apart
//! from corruption and tampering. Beside a live writer it verifies a consistent prefix of
//! the segments being written and reports how far it got.

pub mod report;
mod segment;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use report::{Class, Finding, FindingKind, LiveProgress, Report, Severity};

use crate::checkpoint::Checkpoint;
use crate::crypto::KeyProvider;
use crate::error::{Error, Result};
use crate::event::OrgId;
use crate::format::header::{SEGMENT_HEADER_LEN, SegmentId};
use crate::log::LOCK_FILE;
use crate::segment::quarantine::QUARANTINE_DIR;
use crate::segment::{parse_segment_file_name, segment_file_name};
use crate::time::Timestamp;
use segment::{SegmentCheck, SegmentOutcome, verify_segment};

/// Whether a writer holds the log's lock, asked when it matters: when verification finds
/// the end of a latest part incomplete. A writer that opened after verification began is
/// then seen too (asking once, at the start, took what it was writing for a torn tail).
/// Once seen live, live for the rest of the run.
pub(crate) struct Liveness {
    dir: Option<PathBuf>,
    seen: std::sync::atomic::AtomicBool,
}

impl Liveness {
    /// Probed at once (so that [`Report::live_writer`] says it from the start).
    pub(crate) fn probe(dir: &Path) -> Liveness {
        let l = Liveness {
            dir: Some(dir.to_path_buf()),
            seen: std::sync::atomic::AtomicBool::new(false),
        };
        l.now();
        l
    }

    /// Never live.
    #[cfg(test)]
    pub(crate) fn never() -> Liveness {
        Liveness {
            dir: None,
            seen: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a writer is live now, or was seen live earlier in this run.
    pub(crate) fn now(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.seen.load(Relaxed) {
            return true;
        }
        let live = self.dir.as_deref().is_some_and(crate::log::writer_is_live);
        if live {
            self.seen.store(true, Relaxed);
        }
        live
    }

    /// Whether a writer was seen live in this run.
    pub(crate) fn seen(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Called with the number of bytes just verified (for progress bars).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What to verify.
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// Only this org (default: every org in the directory).
    pub org: Option<OrgId>,
    /// Checkpoints the log must still contain.
    pub checkpoints: Vec<Checkpoint>,
    /// Progress callback.
    pub progress: Option<Progress>,
    /// Segments verified at once (default: the available parallelism; 0 counts as 1; at
    /// most [`MAX_VERIFY_THREADS`], the calling thread included). A thread the OS refuses
    /// is done without: its share goes to the others. Each thread holds a few MB (one
    /// segment's read window, seq set and findings), whatever the size of the log.
    pub threads: Option<usize>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("org", &self.org)
            .field("checkpoints", &self.checkpoints.len())
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Total bytes of segment files to verify (for sizing a progress bar).
pub fn total_bytes(dir: &Path, org: Option<&OrgId>) -> u64 {
    let orgs = match org {
        Some(o) => vec![o.clone()],
        None => crate::log::list_orgs(dir).unwrap_or_default(),
    };
    orgs.iter()
        .flat_map(|o| {
            let d = dir.join(o.as_str());
            crate::log::list_segments(&d)
                .unwrap_or_default()
                .into_iter()
                .map(move |id| fs::metadata(d.join(segment_file_name(id))).map_or(0, |m| m.len()))
        })
        .sum()
}

/// Verifies a log directory. `keys: None` checks structure and chain only.
pub fn verify(dir: &Path, keys: Option<&dyn KeyProvider>, opts: &VerifyOptions) -> Result<Report> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::io(
                "open log directory",
                dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Err(e) => return Err(Error::io("open log directory", dir, e)),
    }
    let live = Liveness::probe(dir);
    let mut report = Report {
        authenticity_checked: keys.is_some(),
        live_writer: live.seen(),
        ..Report::default()
    };
    let (mut orgs, mut linked) = list_log(dir, &mut report.findings)?;
    if let Some(org) = &opts.org {
        if !orgs.contains(org)
            && !linked.contains(org)
            && !opts.checkpoints.iter().any(|c| c.org_id == org.as_str())
        {
            return Err(Error::UnknownOrg {
                org: org.to_string(),
            });
        }
        orgs.retain(|o| o == org);
        linked.retain(|o| o == org);
    }
    for c in &opts.checkpoints {
        match OrgId::new(&c.org_id) {
            Ok(org) if opts.org.as_ref().is_none_or(|o| *o == org) => {
                orgs.insert(org);
            }
            Ok(_) => {}
            // No org can have it: whatever it pins is checked against nothing. Reported
            // whatever org is verified, as an invalid segment name in a checkpoint is.
            Err(why) => report.findings.push(Finding::new(
                FindingKind::CheckpointMismatch,
                dir,
                format!(
                    "a checkpoint of {} names org {:?}, which is not an org id ({why}): it is no org's checkpoint and was not checked",
                    c.created_at, c.org_id
                ),
            )),
        }
    }
    // A linked org is reported, and neither verified nor checked against its checkpoints,
    // with or without them (a link followed only for checkpoints would verify files outside
    // the log that plain `verify` passes over).
    for org in &linked {
        orgs.remove(org);
        if let Some(f) = org_link(dir, org) {
            report.findings.push(f);
        }
    }
    let now = Timestamp::now();
    // One pool over many orgs' segments at a time: an org with fewer segments than cores (in
    // a log of many orgs and few months, one each) would leave cores idle. Orgs are taken
    // in chunks of about `CHUNK_SEGMENTS` segments, so the outcomes waiting to be reported
    // stay bounded however many orgs the log has.
    let mut chunk: Vec<OrgPlan<'_>> = Vec::new();
    let mut chunk_segments = 0;
    let mut orgs = orgs.into_iter().peekable();
    while let Some(org) = orgs.next() {
        let cps: Vec<_> = opts
            .checkpoints
            .iter()
            .filter(|c| c.org_id == org.as_str())
            .collect();
        let uncovered = cps.is_empty() && !opts.checkpoints.is_empty();
        let mut plan = plan_org(dir, org, cps)?;
        if uncovered {
            plan.findings.push(Finding::new(
                FindingKind::NoCheckpoint,
                &plan.org_dir,
                format!(
                    "checkpoints were given, but none for org {}: a truncation or rollback of its segments would go unseen",
                    plan.org
                ),
            ));
        }
        // An org without segments still costs a plan and a report: count it as one, so a
        // log of many empty org directories is chunked too.
        chunk_segments += plan.files.segments.len().max(1);
        chunk.push(plan);
        if chunk_segments >= CHUNK_SEGMENTS || orgs.peek().is_none() {
            let outcomes = run_segments(&chunk, keys, opts, now, &live);
            report.live_writer = live.seen();
            for (plan, outcomes) in chunk.drain(..).zip(outcomes) {
                finish_org(plan, outcomes, keys, &mut report)?;
            }
            chunk_segments = 0;
        }
    }
    // Given the wrong directory, verify found nothing to verify and called it intact.
    if report.files == 0
        && report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::UnexpectedFile)
    {
        report
            .findings
            .push(Finding::new(FindingKind::NotALog, dir, NOT_A_LOG));
    }
    Ok(report)
}

/// Lists a log directory: the entries named like an org that are directories, and those
/// that are symbolic links (never followed: `org_link`). Anything else but the lock file is
/// an [`FindingKind::UnexpectedFile`] finding.
fn list_log(dir: &Path, findings: &mut Vec<Finding>) -> Result<(BTreeSet<OrgId>, BTreeSet<OrgId>)> {
    let mut orgs = BTreeSet::new();
    let mut linked = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list log directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type();
        let is_dir = kind.as_ref().is_ok_and(|t| t.is_dir());
        let is_link = kind.as_ref().is_ok_and(|t| t.is_symlink());
        match OrgId::new(&name) {
            Ok(org) if is_dir => {
                orgs.insert(org);
            }
            Ok(org) if is_link => {
                linked.insert(org);
            }
            _ if name == LOCK_FILE => {}
            _ => findings.push(Finding::new(
                FindingKind::UnexpectedFile,
                entry.path(),
                "not part of an auditlog directory",
            )),
        }
    }
    Ok((orgs, linked))
}

/// Whether `dir` is not a log directory, as [`verify`] tells it ([`FindingKind::NotALog`]):
/// no segment file in any org (only in `org`'s, if given), and entries a log does not have
/// (the directory above a log, or an org directory, given as the log). Only directories
/// are listed; no file is read. `stats` and `query` ask it so as not to report a wrong
/// directory as an empty log.
pub fn not_a_log(dir: &Path, org: Option<&OrgId>) -> Result<bool> {
    let mut findings = Vec::new();
    let (orgs, _) = list_log(dir, &mut findings)?;
    for o in orgs.iter().filter(|o| org.is_none_or(|x| x == *o)) {
        if !list_org(&dir.join(o.as_str()), &mut findings)?
            .segments
            .is_empty()
        {
            return Ok(false);
        }
    }
    Ok(findings
        .iter()
        .any(|f| f.kind == FindingKind::UnexpectedFile))
}

/// The message of a [`FindingKind::NotALog`] finding.
pub const NOT_A_LOG: &str = "no segment anywhere, and entries a log does not have: not a log \
     directory (the directory above one, or an org directory?); nothing was verified";

/// Most threads one verification runs (its own included), whatever
/// [`VerifyOptions::threads`] asks.
pub const MAX_VERIFY_THREADS: usize = 64;

/// Segments verified in one pool before their orgs are reported (see [`verify`]).
const CHUNK_SEGMENTS: usize = 256;

/// The orgs of a log directory as [`verify`] sees them: every entry named like an org
/// that is a directory or a symbolic link (to anything), sorted. A link is not followed:
/// `verify` reports it as [`FindingKind::SymbolicLink`] and [`make_checkpoint`] refuses
/// its org, so a caller checkpointing every org lists them here, not with
/// [`crate::Log::orgs`] (directories only), which would leave such an org out silently.
pub fn orgs(dir: &Path) -> Result<Vec<OrgId>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list log directory", dir, e))?;
        let listed = entry
            .file_type()
            .is_ok_and(|t| t.is_dir() || t.is_symlink());
        if listed && let Some(org) = entry.file_name().to_str().and_then(|n| OrgId::new(n).ok()) {
            out.push(org);
        }
    }
    out.sort();
    Ok(out)
}

/// Where the symbolic link `path` points, quoted, for a finding.
fn link_target(path: &Path) -> String {
    match fs::read_link(path) {
        Ok(t) => format!("{:?}", t.display().to_string()),
        Err(e) => format!("a target that cannot be read ({e})"),
    }
}

/// The finding of an org whose entry in the log directory is a symbolic link, if it is one
/// (to a directory or to anything else, dangling included). The link is never followed:
/// its org is not verified, and checkpoints refuse it.
fn org_link(dir: &Path, org: &OrgId) -> Option<Finding> {
    let path = dir.join(org.as_str());
    if !fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return None;
    }
    let target = link_target(&path);
    Some(Finding::new(
        FindingKind::SymbolicLink,
        &path,
        format!(
            "the directory of org {org} is a symbolic link to {target}: not followed, so org {org} was not verified, nor checked against any checkpoint (the engine never makes such a link; put the org's directory itself here)"
        ),
    ))
}

#[derive(Default)]
struct OrgFiles {
    segments: Vec<SegmentId>,
    orphan_indexes: Vec<(SegmentId, PathBuf)>,
}

/// Lists an org's directory. An org directory that cannot be listed is an I/O error, not
/// an org without segments: verifying it as empty would pass a log it never read.
fn list_org(dir: &Path, findings: &mut Vec<Finding>) -> Result<OrgFiles> {
    let mut segments = Vec::new();
    let mut indexes = Vec::new();
    let list = |e| Error::io("list org directory", dir, e);
    for entry in fs::read_dir(dir).map_err(list)? {
        let entry = entry.map_err(list)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let segment = parse_segment_file_name(&name);
        let index = name
            .strip_suffix(".idx")
            .and_then(|stem| parse_segment_file_name(&format!("{stem}.seg")));
        // A FIFO, device or directory under a segment's or index's name is not read (it
        // could block or never end); the records it stands for are missing, so it fails
        // verification (as it fails `stats` and a query). A symbolic
        // link is not followed either, and fails verification: the engine never makes one,
        // its writer refuses to append through one, and what it points to is outside the
        // log, so an auditor's copy of the log directory would not hold it.
        let found = fs::symlink_metadata(&path).map(|m| m.file_type());
        if (segment.is_some() || index.is_some()) && !found.as_ref().is_ok_and(|t| t.is_file()) {
            findings.push(if found.is_ok_and(|t| t.is_symlink()) {
                Finding::new(
                    FindingKind::SymbolicLink,
                    &path,
                    format!(
                        "named like a segment or index, but a symbolic link to {}: not followed, so not verified (the engine never makes one)",
                        link_target(&path)
                    ),
                )
            } else {
                Finding::new(
                    FindingKind::NotARegularFile,
                    path,
                    "named like a segment or index, but not a regular file: not read, so whatever stood there is not verified (the engine never makes one)",
                )
            });
            continue;
        }
        if name == QUARANTINE_DIR && entry.file_type().is_ok_and(|t| t.is_dir()) {
            // One that cannot be listed is said so: its warnings used to vanish.
            let listed = fs::read_dir(&path).and_then(|entries| {
                for q in entries {
                    let q = q?;
                    let len = q.metadata().map_or(0, |m| m.len());
                    findings.push(
                        Finding::new(
                            FindingKind::QuarantinedData,
                            q.path(),
                            "recovery moved these bytes aside (torn tail or damage report): inspect them",
                        )
                        .at(0, len),
                    );
                }
                Ok(())
            });
            if let Err(e) = listed {
                findings.push(Finding::new(
                    FindingKind::QuarantinedData,
                    path,
                    format!(
                        "cannot be listed ({e}): whatever recovery moved aside there is not shown"
                    ),
                ));
            }
        } else if let Some(id) = segment {
            segments.push(id);
        } else if let Some(id) = index {
            indexes.push((id, path));
        } else if name.ends_with(".tmp") || name.ends_with(".cold") {
            // Leftover of an interrupted atomic rewrite / an archived month.
        } else {
            findings.push(Finding::new(
                FindingKind::UnexpectedFile,
                path,
                "not part of an auditlog directory",
            ));
        }
    }
    segments.sort();
    let orphan_indexes = indexes
        .into_iter()
        .filter(|(id, _)| segments.binary_search(id).is_err())
        .collect();
    Ok(OrgFiles {
        segments,
        orphan_indexes,
    })
}

/// What an org's segments are checked against, learnt before any of them is read.
struct OrgPlan<'c> {
    org: OrgId,
    org_dir: PathBuf,
    files: OrgFiles,
    /// Findings of the listing (quarantined data, unexpected files, orphan indexes), reported
    /// before the segments'.
    findings: Vec<Finding>,
    /// Per segment, the counts at which its chain head is wanted (links, checkpoints).
    wanted: HashMap<SegmentId, BTreeSet<u64>>,
    /// The latest part of each month.
    latest: HashMap<crate::time::Month, u16>,
    checkpoints: Vec<&'c Checkpoint>,
}

impl OrgPlan<'_> {
    fn is_latest(&self, id: &SegmentId) -> bool {
        self.latest.get(&id.month) == Some(&id.part)
    }
}

fn plan_org<'c>(dir: &Path, org: OrgId, checkpoints: Vec<&'c Checkpoint>) -> Result<OrgPlan<'c>> {
    let org_dir = dir.join(org.as_str());
    let mut findings = Vec::new();
    // An org that a checkpoint names but whose directory is gone: every segment the
    // checkpoint pinned is reported missing (`check_checkpoint`), as for a deleted month.
    // Without a checkpoint naming it, a missing org stays an error of the caller's.
    let files = match fs::symlink_metadata(&org_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !checkpoints.is_empty() => {
            OrgFiles::default()
        }
        _ => list_org(&org_dir, &mut findings)?,
    };
    for (id, path) in &files.orphan_indexes {
        findings.push(Finding::new(
            FindingKind::MissingSegment,
            path,
            format!("index of segment {id} exists but the segment does not: it was deleted"),
        ));
    }
    // Headers first, to learn which chain positions links point at.
    let mut wanted: HashMap<SegmentId, BTreeSet<u64>> = HashMap::new();
    for id in &files.segments {
        if let Some(h) = read_header(&org_dir.join(segment_file_name(*id))) {
            for link in [h.prev, h.continues].into_iter().flatten() {
                wanted.entry(link.segment).or_default().insert(link.count);
            }
        }
    }
    for c in &checkpoints {
        for s in &c.segments {
            if let Some(id) = s.id() {
                wanted.entry(id).or_default().insert(s.count);
            }
        }
    }
    let latest = files.segments.iter().fold(HashMap::new(), |mut m, id| {
        let p = m.entry(id.month).or_insert(id.part);
        *p = (*p).max(id.part);
        m
    });
    Ok(OrgPlan {
        org,
        org_dir,
        files,
        findings,
        wanted,
        latest,
        checkpoints,
    })
}

/// Verifies every segment of every plan, spread over the cores. Returns, per plan, the
/// outcomes in the order of its segments, so the report is the same whatever the
/// scheduling.
fn run_segments(
    plans: &[OrgPlan<'_>],
    keys: Option<&dyn KeyProvider>,
    opts: &VerifyOptions,
    now: Timestamp,
    live: &Liveness,
) -> Vec<Vec<SegmentOutcome>> {
    let work: Vec<(usize, usize)> = plans
        .iter()
        .enumerate()
        .flat_map(|(p, plan)| (0..plan.files.segments.len()).map(move |s| (p, s)))
        .collect();
    let workers = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(work.len())
        .clamp(1, MAX_VERIFY_THREADS);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: parking_lot::Mutex<Vec<(usize, SegmentOutcome)>> =
        parking_lot::Mutex::new(Vec::with_capacity(work.len()));
    let empty = BTreeSet::new();
    std::thread::scope(|scope| {
        // The calling thread is a worker too; a helper the OS refuses (a thread or pid
        // limit) is simply not there: the others take its share. (`scope.spawn` panicked.)
        let work_loop = || {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(p, s)) = work.get(i) else {
                    break;
                };
                let (Some(plan), Some(id)) = (
                    plans.get(p),
                    plans.get(p).and_then(|x| x.files.segments.get(s)),
                ) else {
                    break;
                };
                let path = plan.org_dir.join(segment_file_name(*id));
                let check = SegmentCheck {
                    org: &plan.org,
                    id: *id,
                    path: &path,
                    keys,
                    live,
                    latest: plan.is_latest(id),
                    wanted: plan.wanted.get(id).unwrap_or(&empty),
                    now,
                };
                let out = verify_segment(&check);
                if let Some(progress) = &opts.progress {
                    progress(out.bytes);
                }
                done.lock().push((i, out));
            }
        };
        for _ in 1..workers {
            if std::thread::Builder::new()
                .spawn_scoped(scope, work_loop)
                .is_err()
            {
                break;
            }
        }
        work_loop();
    });
    let mut done = done.into_inner();
    done.sort_by_key(|(i, _)| *i);
    let mut per_plan: Vec<Vec<SegmentOutcome>> = plans
        .iter()
        .map(|p| Vec::with_capacity(p.files.segments.len()))
        .collect();
    for (i, out) in done {
        if let Some(v) = work.get(i).and_then(|&(p, _)| per_plan.get_mut(p)) {
            v.push(out);
        }
    }
    per_plan
}

/// Reports an org: its listing's findings, then each segment's, then the links between its
/// segments and its checkpoints. `outcomes` are in the order of `plan.files.segments`.
///
/// A segment or index that could not be read for a reason other than damage (a permission,
/// an I/O error) makes the whole call an error: a report without it would pass it unread.
fn finish_org(
    plan: OrgPlan<'_>,
    mut outcomes: Vec<SegmentOutcome>,
    keys: Option<&dyn KeyProvider>,
    report: &mut Report,
) -> Result<BTreeMap<SegmentId, SegmentOutcome>> {
    if let Some(e) = outcomes.iter_mut().find_map(|o| o.io_error.take()) {
        return Err(e);
    }
    report.findings.extend(plan.findings.iter().cloned());
    let mut by_id: BTreeMap<SegmentId, SegmentOutcome> = BTreeMap::new();
    for (id, out) in plan.files.segments.iter().zip(outcomes) {
        report.files += 1;
        report.records += out.records;
        report.bytes += out.bytes;
        if report.live_writer && plan.is_latest(id) {
            report.live.push(LiveProgress {
                file: plan.org_dir.join(segment_file_name(*id)),
                verified_to: out.verified_to,
                records: out.records,
            });
        }
        report.findings.extend(out.findings.iter().cloned());
        by_id.insert(*id, out);
    }
    check_links(&plan.org_dir, &by_id, report);
    for c in &plan.checkpoints {
        check_checkpoint(&plan.org_dir, &plan.org, c, keys, &by_id, report);
    }
    Ok(by_id)
}

/// One org verified as [`verify`] verifies it, without checkpoints.
fn verify_org(
    dir: &Path,
    org: &OrgId,
    keys: Option<&dyn KeyProvider>,
    now: Timestamp,
    report: &mut Report,
) -> Result<BTreeMap<SegmentId, SegmentOutcome>> {
    let plans = [plan_org(dir, org.clone(), Vec::new())?];
    let live = Liveness::probe(dir);
    let outcomes = run_segments(&plans, keys, &VerifyOptions::default(), now, &live);
    report.live_writer = live.seen();
    let [plan] = plans;
    let outcomes = outcomes.into_iter().next().unwrap_or_default();
    finish_org(plan, outcomes, keys, report)
}

fn read_header(path: &Path) -> Option<crate::format::header::SegmentHeader> {
    let mut buf = [0u8; crate::format::header::SEGMENT_HEADER_LEN];
    let f = crate::segment::open_regular(path).ok()?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0).ok()?;
    crate::format::header::SegmentHeader::decode(&buf).ok()
}

/// Checks the creation-order and continuation links between an org's segments.
fn check_links(
    org_dir: &Path,
    outcomes: &BTreeMap<SegmentId, SegmentOutcome>,
    report: &mut Report,
) {
    let path_of = |id: SegmentId| org_dir.join(segment_file_name(id));
    // Each ordinal's holder: of segments sharing an ordinal, the one whose header names
    // its own file (a copy or a renamed file names another: its `misfiled` finding), else
    // the first. The others are reported, each on its own file: the evidence is there, and
    // the links of the segments after them are checked against the holder.
    let mut claims: BTreeMap<u32, Vec<SegmentId>> = BTreeMap::new();
    for (id, o) in outcomes {
        let Some(h) = &o.header else { continue };
        claims.entry(h.ordinal).or_default().push(*id);
    }
    let mut by_ordinal: BTreeMap<u32, SegmentId> = BTreeMap::new();
    for (&ord, ids) in &claims {
        let in_place = |id: &SegmentId| {
            outcomes
                .get(id)
                .and_then(|o| o.header.as_ref())
                .is_some_and(|h| h.id == *id)
        };
        let Some(&holder) = ids.iter().find(|id| in_place(id)).or(ids.first()) else {
            continue;
        };
        by_ordinal.insert(ord, holder);
        for id in ids.iter().filter(|id| **id != holder) {
            report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    path_of(*id),
                    format!(
                        "segment {id} has creation ordinal {ord} like segment {holder} ({})",
                        path_of(holder).display()
                    ),
                )
                .at(96, 4),
            );
        }
    }
    // Ordinals run 0..n without holes: a hole is a deleted segment. One finding per hole,
    // however wide (a forged ordinal near u32::MAX must not make one per missing number).
    // A segment of a newer format hides its ordinal from this build: as many missing
    // ordinals as there are such segments may be theirs (their `unsupported_format`
    // finding fails the verification).
    //
    // A present segment whose header cannot be read (its own `checksum_corruption`) hides
    // its ordinal too, but where the readable header created after it links to it as its
    // `prev`, and the file holds the record that link names (its chain hash after the
    // link's count of records is the link's head; for a count of 0, the head is the lost
    // header's hash, and the file's first record chains to it with a tag that verifies),
    // that link says whose the ordinal before its own is: that ordinal is not a deleted
    // segment's. Without such a link, or with a
    // file that does not hold what it names (a file put under a deleted segment's name),
    // nothing ties the unreadable file to the missing ordinal, and the hole stays a
    // deletion.
    let attributed: BTreeSet<u32> = by_ordinal
        .iter()
        .filter_map(|(&ord, id)| {
            let link = outcomes.get(id)?.header.as_ref()?.prev.as_ref()?;
            let target = outcomes.get(&link.segment)?;
            let holds = target.loose_heads.get(&link.count) == Some(&link.head);
            (target.header.is_none() && !target.unsupported && holds)
                .then(|| ord.checked_sub(1))
                .flatten()
        })
        .collect();
    let mut unread = outcomes.values().filter(|o| o.unsupported).count() as u64;
    let mut next_expected = 0u32;
    for (&ord, &id) in &by_ordinal {
        // The hole before `ord`, less the ordinals links attribute: ranges `[from, to)`.
        let mut holes = Vec::new();
        let mut from = next_expected;
        if next_expected < ord {
            for &a in attributed.range(next_expected..ord) {
                holes.push((from, a));
                from = a.saturating_add(1);
            }
        }
        holes.push((from, ord));
        for (from, to) in holes {
            let hole = u64::from(to.saturating_sub(from));
            if hole == 0 {
                continue;
            }
            if hole <= unread {
                unread -= hole;
                continue;
            }
            let what = match hole {
                1 => format!("no segment with creation ordinal {from}: a segment was deleted"),
                n => format!(
                    "no segments with creation ordinals {from} to {}: {n} segments were deleted, or an ordinal was altered",
                    to - 1
                ),
            };
            // The evidence is this segment's ordinal.
            report
                .findings
                .push(Finding::new(FindingKind::MissingSegment, path_of(id), what).at(96, 4));
        }
        next_expected = ord.saturating_add(1);
    }
    let floors = seq_floors(outcomes);
    for (id, o) in outcomes {
        let Some(h) = &o.header else { continue };
        let path = path_of(*id);
        match (&h.prev, h.ordinal) {
            (None, 0) => {}
            (None, _) => report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    &path,
                    format!("ordinal {} but no link to a previous segment", h.ordinal),
                )
                .at(120, 48),
            ),
            (Some(_), 0) => report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    &path,
                    "ordinal 0 but links to a previous segment",
                )
                .at(120, 48),
            ),
            (Some(link), _) => {
                match by_ordinal.get(&(h.ordinal - 1)) {
                    // The link names another segment than the one created before this one:
                    // the evidence is this link (the segment it names is not this one's
                    // predecessor, so its chain proves nothing about it).
                    Some(p) if *p != link.segment => report.findings.push(
                        Finding::new(
                            FindingKind::LinkMismatch,
                            &path,
                            format!(
                                "links to segment {} ({}) as its predecessor, but the segment of creation ordinal {} is {} ({})",
                                link.segment,
                                path_of(link.segment).display(),
                                h.ordinal - 1,
                                p,
                                path_of(*p).display()
                            ),
                        )
                        .at(120, 48),
                    ),
                    _ => check_link(link, &path, 120, outcomes, org_dir, report),
                }
            }
        }
        // A continuation link to another part than the one before is `check_continuation`'s
        // finding, on this file; the part it names is not the one continued, so its chain
        // proves nothing about it.
        if let Some(link) = &h.continues
            && id.part.checked_sub(1) == Some(link.segment.part)
            && link.segment.month == id.month
        {
            check_link(link, &path, 168, outcomes, org_dir, report);
        }
        check_continuation(*id, h, &path, outcomes, &floors, report);
    }
}

/// A part `n ≥ 1` continues part `n-1` of its month (FORMAT.md §2.1): its `continues` link
/// names that part, and its seqs start past every seq readable there, so seqs stay unique
/// in the month. A part 0 continues nothing. (A segment copied in as a new part, its header
/// edited, fails here besides its chain.)
fn check_continuation(
    id: SegmentId,
    h: &crate::format::header::SegmentHeader,
    path: &Path,
    outcomes: &BTreeMap<SegmentId, SegmentOutcome>,
    floors: &HashMap<SegmentId, SeqFloor>,
    report: &mut Report,
) {
    let mismatch = |what: String| Finding::new(FindingKind::LinkMismatch, path, what).at(168, 48);
    let Some(before) = id.part.checked_sub(1) else {
        if h.continues.is_some() {
            report.findings.push(mismatch(
                "part 0 of its month, but links to a part it continues".into(),
            ));
        }
        // A month's seqs start at 0 (FORMAT.md §2.1): a part 0 starting later claims
        // records before it that no file holds.
        if h.first_seq != 0 {
            report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    path,
                    format!(
                        "part 0 of its month, but its first_seq is {}, not 0",
                        h.first_seq
                    ),
                )
                .at(104, 8),
            );
        }
        return;
    };
    let want = SegmentId {
        month: id.month,
        part: before,
    };
    match &h.continues {
        None => report.findings.push(mismatch(format!(
            "continuation part {id} has no link to the part it continues ({want})"
        ))),
        Some(link) if link.segment != want => report.findings.push(mismatch(format!(
            "continuation part {id} links to {} as the part it continues, not {want}",
            link.segment
        ))),
        Some(_) => {}
    }
    if let Some(max) = outcomes.get(&want).and_then(|o| o.max_seq)
        && h.first_seq <= max
    {
        report.findings.push(
            Finding::new(
                FindingKind::LinkMismatch,
                path,
                format!(
                    "continuation part {id} starts at seq {}, but {want} holds seqs up to {max}: seqs of one month overlap",
                    h.first_seq
                ),
            )
            .at(104, 8),
        );
    } else if let Some(floor) = floors.get(&id)
        && h.first_seq < floor.seq
    {
        // The part before holds no record (or none past the earlier parts'): its own
        // `first_seq`, and the seqs of every earlier part, still bound this one's.
        report.findings.push(
            Finding::new(
                FindingKind::LinkMismatch,
                path,
                format!(
                    "continuation part {id} starts at seq {}, but {}: seqs of one month overlap",
                    h.first_seq,
                    floor.why()
                ),
            )
            .at(104, 8),
        );
    }
}

/// What bounds a continuation part's `first_seq` from below ([`seq_floors`]): an earlier
/// part of its month (`part`) begins at `seq`, or holds seqs up to `seq - 1`.
#[derive(Clone, Copy)]
struct SeqFloor {
    seq: u64,
    part: SegmentId,
    /// `seq` is one past a seq `part` holds (else `part`'s own `first_seq`).
    held: bool,
}

impl SeqFloor {
    fn why(&self) -> String {
        if self.held {
            format!(
                "{} holds seqs up to {}",
                self.part,
                self.seq.saturating_sub(1)
            )
        } else {
            format!("{} begins at seq {}", self.part, self.seq)
        }
    }
}

/// For every segment, the lowest seq it may start at if it is a continuation part, and
/// why: past every seq readable in the earlier parts of its month, and at or past the
/// `first_seq` of each of them (a continuation starts past every seq the part it continues
/// may have issued, FORMAT.md §2.1; a part without records issued none, so the next may
/// start at its `first_seq`). Absent when no earlier part says anything.
///
/// One pass over the org's segments, in (month, part) order, carrying the month's floor:
/// each part used to walk every earlier part of its month again, and a directory of
/// thousands of planted parts (a header each) made `verify` quadratic in them.
fn seq_floors(outcomes: &BTreeMap<SegmentId, SegmentOutcome>) -> HashMap<SegmentId, SeqFloor> {
    let mut floors = HashMap::new();
    let mut running: Option<(crate::time::Month, Option<SeqFloor>)> = None;
    for (pid, o) in outcomes {
        let best = match running {
            Some((m, best)) if m == pid.month => best,
            _ => None,
        };
        if let Some(b) = best {
            floors.insert(*pid, b);
        }
        let mut best = best;
        // A file holding another segment (its `misfiled` finding) says nothing of this
        // month.
        if o.header.as_ref().is_none_or(|h| h.id == *pid) {
            let own_first = o.header.as_ref().map(|h| SeqFloor {
                seq: h.first_seq,
                part: *pid,
                held: false,
            });
            let past_max = o.max_seq.map(|m| SeqFloor {
                seq: m.saturating_add(1),
                part: *pid,
                held: true,
            });
            for c in [own_first, past_max].into_iter().flatten() {
                if best.is_none_or(|b| c.seq > b.seq) {
                    best = Some(c);
                }
            }
        }
        running = Some((pid.month, best));
    }
    floors
}

fn check_link(
    link: &crate::format::header::SegmentLink,
    path: &Path,
    field_at: u64,
    outcomes: &BTreeMap<SegmentId, SegmentOutcome>,
    org_dir: &Path,
    report: &mut Report,
) {
    let target_path = org_dir.join(segment_file_name(link.segment));
    match outcomes.get(&link.segment) {
        // The evidence is the link, in the linking file.
        None => report.findings.push(
            Finding::new(
                FindingKind::MissingSegment,
                path,
                format!(
                    "links to segment {} (held {} records then), but {} is missing: it was deleted",
                    link.segment,
                    link.count,
                    target_path.display()
                ),
            )
            .at(field_at, 48),
        ),
        // The file under the linked name holds another segment (its `misfiled` finding):
        // the link cannot be followed into it, and the file is not short of records.
        Some(t) if t.header.as_ref().is_some_and(|h| h.id != link.segment) => {
            let holds = t.header.as_ref().map(|h| h.id.to_string()).unwrap_or_default();
            report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    path,
                    format!(
                        "links to segment {} ({} records), but {} holds segment {holds} (its header says so): files were swapped, renamed or copied",
                        link.segment,
                        link.count,
                        target_path.display()
                    ),
                )
                .at(field_at, 48),
            );
        }
        Some(t) => match t.heads.get(&link.count) {
            Some(h) if *h == link.head => {}
            Some(h) => report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    path,
                    format!(
                        "links to segment {} at {} records with chain hash {}, but the chain of {} there is {h}: it was swapped or rewritten",
                        link.segment, link.count, link.head, target_path.display()
                    ),
                )
                .at(field_at, 48),
            ),
            // A continuation links past damage, to the last readable record.
            None if t.records == link.count && t.last_hash == Some(link.head) => {}
            // Of a newer format: not read (its own finding).
            None if t.unsupported => {}
            // Unreadable bytes (already a finding of their own) cut the chain before the
            // linked position: the link cannot be followed, which is not evidence of more,
            // as long as they can have held the records the count misses (a bit flip
            // excused any cut below a link). Not a torn tail alone: a crash tears only
            // records no link names.
            None if t.run_count < link.count
                && t.damaged
                && !t.torn_only
                && t.records.saturating_add(t.hidden_max) >= link.count => {}
            None if t.run_count < link.count => report.findings.push(
                Finding::new(
                    FindingKind::LinkMismatch,
                    &target_path,
                    format!(
                        "{} proves this segment held {} records; it holds {}, and its chain verifies from the start for only {}: records were removed, altered or damaged (or, in a copy, this segment was copied before the later one while a writer appended: copy a live log's newest months first, or stop the writer)",
                        path.display(),
                        link.count,
                        t.records,
                        t.run_count
                    ),
                )
                .at(t.run_end, t.bytes.saturating_sub(t.run_end)),
            ),
            None => {}
        },
    }
}

fn check_checkpoint(
    org_dir: &Path,
    org: &OrgId,
    c: &Checkpoint,
    keys: Option<&dyn KeyProvider>,
    outcomes: &BTreeMap<SegmentId, SegmentOutcome>,
    report: &mut Report,
) {
    // A checkpoint of a newer version (`Checkpoint::parse_lines` refuses one; the API can
    // still be handed one): its statement and tag are not what this build computes, so it
    // is not checked, and says so, rather than failing its tag as if forged.
    if c.format == crate::checkpoint::FORMAT && c.version > crate::checkpoint::VERSION {
        report.findings.push(Finding::new(
            FindingKind::UnsupportedFormat,
            org_dir,
            format!(
                "checkpoint of {} for org {org} is version {}: it needs a newer reader (this build reads version {}); not checked",
                c.created_at,
                c.version,
                crate::checkpoint::VERSION
            ),
        ));
        return;
    }
    // A checkpoint that fails its tag, or cannot be authenticated, says nothing of the log:
    // that finding is all, and no segment is accused on its word (a forged count once
    // reported an untouched segment as truncated).
    if let Some(keys) = keys {
        let unusable = match c.verify_tag(keys) {
            Ok(true) => None,
            Ok(false) => Some((
                FindingKind::CheckpointMismatch,
                format!(
                    "checkpoint of {} for org {org} fails its tag: it is not authentic",
                    c.created_at
                ),
            )),
            Err(why) => Some((
                FindingKind::UnknownKey,
                format!(
                    "checkpoint of {} cannot be authenticated: {why}",
                    c.created_at
                ),
            )),
        };
        if let Some((kind, why)) = unusable {
            report.findings.push(Finding::new(
                kind,
                org_dir,
                format!("{why}; nothing in it was compared with the log"),
            ));
            return;
        }
    }
    for s in &c.segments {
        let Some(id) = s.id() else {
            report.findings.push(Finding::new(
                FindingKind::CheckpointMismatch,
                org_dir,
                format!("checkpoint names an invalid segment {:?}", s.segment),
            ));
            continue;
        };
        let path = org_dir.join(segment_file_name(id));
        match outcomes.get(&id) {
            None => report.findings.push(Finding::new(
                FindingKind::MissingSegment,
                &path,
                format!("the checkpoint of {} pinned {} records in segment {id}; the segment is gone", c.created_at, s.count),
            )),
            Some(o) => match (o.heads.get(&s.count), pinned_elsewhere(o, s.count, &s.head)) {
                (Some(h), _) if *h == s.head => {}
                (Some(h), _) => report.findings.push(Finding::new(
                    FindingKind::CheckpointMismatch,
                    &path,
                    format!(
                        "after {} records the chain is {h}, but the checkpoint of {} pinned {}: history was rewritten",
                        s.count, c.created_at, s.head
                    ),
                )
                // The rewrite lies somewhere in the records the checkpoint pinned.
                .at(
                    SEGMENT_HEADER_LEN as u64,
                    o.head_ends.get(&s.count).map_or(0, |e| e.saturating_sub(SEGMENT_HEADER_LEN as u64)),
                )),
                // Damage cuts the chain before the pinned position, but the record the
                // checkpoint pinned last, or the one after it, reads past it: its chain
                // hash, or its `prev`, must be the pinned head (a key holder's rewrite
                // behind a flipped bit used to pass as that damage).
                (None, Some((seq, what, h))) => {
                    report.findings.push(
                        Finding::new(
                            FindingKind::CheckpointMismatch,
                            &path,
                            format!(
                                "the checkpoint of {} pinned {} records with chain hash {}, but the record of seq {seq}, read past damage, has {what} {h}: history was rewritten",
                                c.created_at, s.count, s.head
                            ),
                        )
                        .seq(seq),
                    );
                }
                // Damage (its own finding) cuts the chain before the pinned position, and
                // the records it made unreadable can make up the count: not a truncation.
                (None, None) if o.run_count < s.count
                    && o.damaged
                    && o.records.saturating_add(o.hidden_max) >= s.count => {}
                // Of a newer format: not read (its own finding).
                (None, None) if o.unsupported => {}
                (None, None) if o.run_count < s.count && o.records >= s.count => report.findings.push(Finding::new(
                    FindingKind::CheckpointMismatch,
                    &path,
                    format!(
                        "the checkpoint of {} pinned {} records; the chain breaks after {}: history before the pinned position was altered",
                        c.created_at, s.count, o.run_count
                    ),
                )
                .at(o.run_end, o.bytes.saturating_sub(o.run_end))),
                (None, None) if o.run_count < s.count => report.findings.push(Finding::new(
                    FindingKind::TruncatedAgainstCheckpoint,
                    &path,
                    format!(
                        "the checkpoint of {} pinned {} records; the segment holds {} ({} verifying from its start): truncated or rolled back",
                        c.created_at, s.count, o.records, o.run_count
                    ),
                )
                // Where the verified run ends: the missing records would follow.
                .at(o.run_end, o.bytes.saturating_sub(o.run_end))),
                (None, None) => {}
            },
        }
    }
}

/// Where the run from the start of a segment breaks before `count` records: the record
/// pinned last at `count` (seq `first_seq + count − 1`) or the one after it, read past the
/// break, if its chain hash, or its `prev`, is not `head`. `(seq, what, hash found)`.
fn pinned_elsewhere(
    o: &SegmentOutcome,
    count: u64,
    head: &crate::crypto::Hash,
) -> Option<(u64, &'static str, crate::crypto::Hash)> {
    let first = o.header.as_ref()?.first_seq;
    let last = count
        .checked_sub(1)
        .and_then(|k| first.checked_add(k))
        .and_then(|seq| Some((seq, "chain hash", *o.pinned_hashes.get(&seq)?)));
    let next = first
        .checked_add(count)
        .and_then(|seq| Some((seq, "prev_hash", *o.pinned_prevs.get(&seq)?)));
    [last, next]
        .into_iter()
        .flatten()
        .find(|(_, _, h)| h != head)
}

/// What [`make_checkpoint_with`] signs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Sign even though some bytes fail their checksum or end in a torn tail (findings of
    /// class [`Class::CrashDamage`] and [`Class::Corruption`]), pinning each segment only up
    /// to its first damage. Without it
    /// such a log is refused, and after recovery sealed a damaged part it stays refused:
    /// the damage is kept, and reported, for good. Findings of any other class (tampering:
    /// chain, tags, links, missing segments) refuse either way, and so does a segment
    /// header that cannot be read (it hides the links that would show a deleted segment).
    pub accept_damage: bool,
}

/// Computes an org's checkpoint (all segments' heads) from the files and signs it.
///
/// Refuses if the org does not verify from the start to the end of every segment: a
/// checkpoint must never bless damage. [`make_checkpoint_with`] can accept damage
/// explicitly. The refusal says what stands in the way:
///
/// - `Error::Key` when the key provider has no signing key for the org (checked before
///   anything is read), or lacks a key that signed records or an index of it
///   (`KeyError::UnknownKey`, the first such finding's key): they cannot be authenticated;
/// - `Error::UnsupportedFormat` when the first finding that refuses is a segment or index
///   of a newer format than this build reads (nothing in it was verified);
/// - `Error::UnknownOrg` when the org has no directory;
/// - `Error::Integrity` with `IntegrityKind::FailsVerification` for every other finding
///   (damage, tampering, a missing segment, an org directory that is a symbolic link, a
///   segment header that cannot be read), naming it;
/// - `Error::Io` when a file cannot be read or fsynced.
pub fn make_checkpoint(dir: &Path, org: &OrgId, keys: &dyn KeyProvider) -> Result<Checkpoint> {
    make_checkpoint_with(dir, org, keys, &CheckpointOptions::default())
}

/// [`make_checkpoint`], with the choices of [`CheckpointOptions`].
///
/// Each segment is pinned at the end of the run of records that verify from its start
/// (`count`, `head`), so with `accept_damage` a damaged segment is pinned up to its first
/// damage: records after the damage are not covered by the checkpoint, and the damage
/// itself is still reported by every `verify`.
pub fn make_checkpoint_with(
    dir: &Path,
    org: &OrgId,
    keys: &dyn KeyProvider,
    options: &CheckpointOptions,
) -> Result<Checkpoint> {
    let org_dir = dir.join(org.as_str());
    // Never followed: `verify` reports the link (an error), so it is refused as any other
    // error finding is (not taken for an unknown org either).
    if let Some(f) = org_link(dir, org) {
        return Err(refuse(&f, ""));
    }
    if !org_dir.is_dir() {
        return Err(Error::UnknownOrg {
            org: org.to_string(),
        });
    }
    // The signing key first: without it nothing can be signed, whatever the files hold
    // (and every record would otherwise be refused as `unknown_key`, not for what it is).
    let (key_id, key) = keys.signing_key(org).map_err(|source| Error::Key {
        org: org.to_string(),
        source,
    })?;
    // The org verified as `verify` would (segments, indexes, links between segments): a
    // deleted or swapped month fails here too, not only damage inside a segment.
    let mut scratch = Report {
        authenticity_checked: true,
        ..Report::default()
    };
    let outcomes = verify_org(dir, org, Some(keys), Timestamp::now(), &mut scratch)?;
    let damage = |f: &Finding| matches!(f.kind.class(), Class::CrashDamage | Class::Corruption);
    // A live writer's newest segment shorter than a header is being created (verify passes
    // it without a finding): it holds no records yet, so the checkpoint leaves it out.
    let being_created = |o: &SegmentOutcome| {
        scratch.live_writer && o.bytes < SEGMENT_HEADER_LEN as u64 && o.findings.is_empty()
    };
    // Any other segment whose header cannot be read is refused below, damage accepted or
    // not: `--accept-damage` is not offered for it.
    let unreadable_header = outcomes
        .values()
        .any(|o| o.header.is_none() && !being_created(o));
    if let Some(f) = scratch
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error && !(options.accept_damage && damage(f)))
    {
        // Said for what it is: a key the keyring lacks, a newer format.
        match f.kind {
            FindingKind::UnknownKey => {
                if let Some(key_id) = outcomes
                    .values()
                    .flat_map(|o| o.unknown_keys.iter())
                    .find_map(|(p, k)| (*p == f.file).then_some(*k))
                {
                    return Err(Error::Key {
                        org: org.to_string(),
                        source: crate::crypto::KeyError::UnknownKey {
                            org: org.to_string(),
                            key_id,
                        },
                    });
                }
            }
            FindingKind::UnsupportedFormat => {
                if let Some((file, source)) = outcomes
                    .values()
                    .filter_map(|o| o.newer.as_ref())
                    .find(|(p, _)| *p == f.file)
                {
                    return Err(Error::UnsupportedFormat {
                        file: file.clone(),
                        source: source.clone(),
                    });
                }
            }
            _ => {}
        }
        // Only reached with damage when it was not accepted.
        let hint = match (damage(f), unreadable_header) {
            (true, false) => {
                " (damage only: `checkpoint --accept-damage` or \
                 `CheckpointOptions::accept_damage` signs it, pinning each segment up to its \
                 first damage)"
            }
            (true, true) => {
                " (damage only, but a segment header cannot be read, which `--accept-damage` \
                 does not sign over either: restore the header from a copy)"
            }
            (false, _) => "",
        };
        return Err(refuse(f, hint));
    }
    let mut outcomes = outcomes;
    outcomes.retain(|_, o| o.header.is_some() || !being_created(o));
    // A header that cannot be read hides the segment's creation ordinal and links, so a
    // segment deleted beside it would leave no trace: damage there is not signed over.
    if let Some((id, _)) = outcomes.iter().find(|(_, o)| o.header.is_none()) {
        return Err(Error::Integrity {
            file: org_dir.join(segment_file_name(*id)),
            offset: 0,
            seq: None,
            kind: crate::error::IntegrityKind::FailsVerification {
                finding: format!(
                    "refusing to checkpoint: the header of segment {id} cannot be read, so the \
                     org's creation order and links cannot be checked around it (a deleted \
                     segment would go unseen); restore the header from a copy"
                ),
            },
        });
    }
    // Pin only durable bytes: a live writer may have written records it has not fsynced
    // yet, and a power loss would then cut them as a torn tail, which verify would report
    // against this checkpoint as tampering. fdatasync after reading makes everything read
    // durable (it flushes the pages dirty when it is called, whoever wrote them).
    for id in outcomes.keys() {
        let path = org_dir.join(segment_file_name(*id));
        let file = crate::segment::open_regular(&path)
            .map_err(|e| Error::io("open segment to fsync it before checkpointing", &path, e))?;
        match file.sync_data() {
            Ok(()) => {}
            // A read-only file system (a copy on read-only media), or one without fsync
            // (EINVAL), holds nothing unwritten.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::InvalidInput
                ) => {}
            Err(e) => return Err(Error::io("fsync segment before checkpointing it", &path, e)),
        }
    }
    let mut segments = Vec::new();
    for (id, out) in outcomes {
        let head = match out.run_last {
            Some((_, _, h)) => h,
            None => out.heads.get(&0).copied().unwrap_or_default(),
        };
        segments.push(crate::checkpoint::CheckpointSegment {
            segment: id.to_string(),
            count: out.run_count,
            last_seq: out.run_last.map(|(s, _, _)| s),
            last_time: out.run_last.map(|(_, t, _)| t),
            head,
        });
    }
    Ok(Checkpoint::sign_with(org, segments, key_id, &key))
}

/// The refusal to checkpoint over the error finding `f` (`hint`: what could be done).
fn refuse(f: &Finding, hint: &str) -> Error {
    Error::Integrity {
        file: f.file.clone(),
        offset: f.offset.unwrap_or(0),
        seq: f.seq,
        kind: crate::error::IntegrityKind::FailsVerification {
            finding: format!("refusing to checkpoint: {f}{hint}"),
        },
    }
}
