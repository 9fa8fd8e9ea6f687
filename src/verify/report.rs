//! The findings report of a verification.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A cut-off or garbled end of a segment: what a crash leaves behind.
    TornTail,
    /// Bytes that fail their CRC or structure (bit rot, or editing without fixing the CRC):
    /// in a segment, or an index whose own CRC fails.
    ChecksumCorruption,
    /// A record's `prev_hash` is not the chain hash of the record before it.
    ChainBreak,
    /// An HMAC tag does not verify with the key it names.
    TagMismatch,
    /// A record or index names a key id the keyring does not have.
    UnknownKey,
    /// Sequence numbers jump forward: records are missing.
    SeqGap,
    /// A sequence number appears again.
    SeqDuplicate,
    /// A sequence number appears out of order.
    SeqReorder,
    /// A well-formed record whose body does not decode, or whose personal-data openings do
    /// not match their commitments.
    MalformedRecord,
    /// A record whose personal-data openings mark slots erased (FORMAT.md §2.4): their
    /// values are gone, and a query shows them as `"[REDACTED]"`. An error, because no
    /// erasure this build can verify exists: it writes none, and an erased slot carries no
    /// proof of who erased it. Erasing needs no key (the commitment that replaces a value
    /// is computed from the seed and value stored beside it), so anyone who can write the
    /// file can hide a record's IP address or session this way, chain, tag and checkpoint
    /// intact.
    ErasedPersonalData,
    /// A segment header whose CRC holds but whose fields are not valid for its format
    /// version (a reserved byte set, an unknown algorithm, an invalid org id or month): it
    /// was written so, not rotted (rot would fail the CRC). Like a header that fails its
    /// CRC, it hides its segment's ordinal and links.
    MalformedHeader,
    /// A record dated outside its segment's month, or a segment or index naming another
    /// org, month or part than its file.
    Misfiled,
    /// `occurred_at` far out of order or in the future (a warning).
    TimestampAnomaly,
    /// The sidecar index disagrees with its segment, or fails its own checks although its
    /// CRC is right (an index whose CRC fails is [`FindingKind::ChecksumCorruption`]).
    IndexMismatch,
    /// A segment that other files prove existed is gone.
    MissingSegment,
    /// A segment that holds records has no index file (a warning): a crash before its first
    /// index write, a full disk, or the index was deleted. Without it a clean cut at the
    /// segment's end shows only against a later segment's link or a checkpoint; the next
    /// writer rebuilds it.
    MissingIndex,
    /// A segment's link to another does not match that segment's chain.
    LinkMismatch,
    /// A file that is not part of a log.
    UnexpectedFile,
    /// A FIFO, device or directory under a segment's or index's name: not read (it could
    /// block or never end), so whatever segment or index stood there is not verified, and
    /// verification fails. The engine never makes one.
    NotARegularFile,
    /// No segment at all in a directory holding entries a log does not have (the directory
    /// above a log, an org directory given as the log): not a log directory, so nothing was
    /// verified, and verification fails rather than call it intact. (An empty directory is
    /// an empty log.)
    NotALog,
    /// An entry of the log directory named like an org, or of an org directory named like a
    /// segment or index, that is a symbolic link (to anything). It is never followed, so
    /// that org or file is not verified, and verification fails: the engine never makes
    /// one (its writer refuses an org directory or a segment that is a link), and
    /// following it would verify files outside the log.
    SymbolicLink,
    /// Recovery moved bytes into `quarantine/` (a warning: look at them).
    QuarantinedData,
    /// The log holds fewer records than a checkpoint pinned: truncation or rollback.
    TruncatedAgainstCheckpoint,
    /// The log's chain at a checkpointed position differs from the checkpoint: rewritten
    /// history, or a checkpoint that fails its own tag.
    CheckpointMismatch,
    /// Checkpoints were given, but none for this org: its truncation or rollback goes
    /// unseen (a warning).
    NoCheckpoint,
    /// A segment, index or checkpoint of a newer format than this build reads (a higher
    /// format version, or incompatible flags it does not know): nothing in it was
    /// verified, so verification fails; verify with a newer auditlog.
    UnsupportedFormat,
}

/// What a finding suggests happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Class {
    /// What a crash leaves: a torn tail.
    CrashDamage,
    /// Bytes that fail a checksum: bit rot, or an edit that did not fix the CRC.
    Corruption,
    /// Well-formed bytes that fail the chain, a tag, a link or a checkpoint, or an org
    /// directory replaced by a symbolic link: deliberate alteration, or verification with
    /// the wrong key.
    Tampering,
    /// Worth a look, not proof of anything.
    Anomaly,
    /// Written in a newer format than this build reads: not evidence of anything, but
    /// nothing in it was verified.
    Unsupported,
}

/// Whether a finding fails verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Verification fails.
    Error,
    /// Reported, but verification can still pass.
    Warning,
}

impl FindingKind {
    /// The class of this kind.
    pub fn class(self) -> Class {
        use FindingKind::*;
        match self {
            TornTail => Class::CrashDamage,
            ChecksumCorruption => Class::Corruption,
            UnsupportedFormat => Class::Unsupported,
            TimestampAnomaly | UnexpectedFile | QuarantinedData | NoCheckpoint | NotALog
            | MissingIndex => Class::Anomaly,
            _ => Class::Tampering,
        }
    }

    /// The severity of this kind.
    pub fn severity(self) -> Severity {
        match self.class() {
            Class::Anomaly if self != FindingKind::NotALog => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// snake_case name, as in JSON.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// What it suggests.
    pub class: Class,
    /// Whether it fails verification.
    pub severity: Severity,
    /// The file concerned.
    #[serde(serialize_with = "crate::json::serialize_path")]
    pub file: PathBuf,
    /// First byte concerned, when known.
    pub offset: Option<u64>,
    /// How many bytes, when known (`offset..offset+len` covers the problem).
    pub len: Option<u64>,
    /// The record's sequence number, when known.
    pub seq: Option<u64>,
    /// What exactly is wrong.
    pub message: String,
    /// Nonzero for an entry that lists no problem itself but stands for this many further
    /// findings of its kind in its file, not listed (verification lists the first 50 of a
    /// kind per file). Counted as that many by [`Report::errors`] and the summary.
    pub omitted: u64,
}

impl Finding {
    /// A finding of `kind`.
    pub fn new(kind: FindingKind, file: impl Into<PathBuf>, message: impl Into<String>) -> Finding {
        Finding {
            kind,
            class: kind.class(),
            severity: kind.severity(),
            file: file.into(),
            offset: None,
            len: None,
            seq: None,
            message: message.into(),
            omitted: 0,
        }
    }

    /// How many findings this entry stands for: 1, or [`Finding::omitted`].
    pub fn count(&self) -> u64 {
        self.omitted.max(1)
    }

    /// With a byte range.
    pub fn at(mut self, offset: u64, len: u64) -> Finding {
        self.offset = Some(offset);
        self.len = Some(len);
        self
    }

    /// With a seq.
    pub fn seq(mut self, seq: u64) -> Finding {
        self.seq = Some(seq);
        self
    }

    /// Whether the finding's byte range covers `offset`.
    pub fn covers(&self, offset: u64) -> bool {
        match (self.offset, self.len) {
            (Some(o), Some(l)) => (o..o.saturating_add(l.max(1))).contains(&offset),
            _ => false,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} {} {}", self.kind.name(), self.file.display())?;
        if let Some(o) = self.offset {
            write!(f, " @{o}")?;
            if let Some(l) = self.len {
                write!(f, "+{l}")?;
            }
        }
        if let Some(s) = self.seq {
            write!(f, " seq {s}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How far verification got in a segment that a live writer is still appending to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveProgress {
    /// The segment.
    #[serde(serialize_with = "crate::json::serialize_path")]
    pub file: PathBuf,
    /// Bytes verified (a consistent prefix).
    pub verified_to: u64,
    /// Records in that prefix.
    pub records: u64,
}

/// The result of verifying a log or a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every problem found, in the order found (past 50 of a kind in a file, one entry
    /// stands for the rest: [`Finding::omitted`]).
    pub findings: Vec<Finding>,
    /// Files examined.
    pub files: u64,
    /// Records examined.
    pub records: u64,
    /// Bytes examined.
    pub bytes: u64,
    /// Whether tags were checked with keys. Without keys only structure and chain are checked,
    /// and nothing proves who wrote the records.
    pub authenticity_checked: bool,
    /// Whether a writer held the log's lock during verification.
    pub live_writer: bool,
    /// For segments a live writer is appending to: how far verification got.
    pub live: Vec<LiveProgress>,
}

impl Report {
    /// No error-severity findings.
    pub fn is_intact(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Findings that fail verification, those not listed included ([`Finding::omitted`]).
    pub fn errors(&self) -> u64 {
        self.count(Severity::Error)
    }

    /// Findings that do not fail verification, those not listed included.
    pub fn warnings(&self) -> u64 {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> u64 {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(Finding::count)
            .sum()
    }

    /// The one-line summary the CLI ends with.
    pub fn summary(&self) -> String {
        let warnings = self.warnings();
        format!(
            "{}: {} files, {} records, {} bytes verified; {} findings ({} errors, {} warnings); {}{}",
            if self.is_intact() { "INTACT" } else { "FAILED" },
            self.files,
            self.records,
            self.bytes,
            self.errors() + warnings,
            self.errors(),
            warnings,
            if self.authenticity_checked {
                "authenticity checked (HMAC tags)"
            } else {
                "authenticity NOT checked (no keyring): structure and hash chain only"
            },
            if self.live_writer {
                "; a writer was live: its segments were verified up to a consistent prefix"
            } else {
                ""
            }
        )
    }
}
