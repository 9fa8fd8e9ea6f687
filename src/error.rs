//! The engine's error type.
//!
//! Variants keep four kinds of failure apart: the caller's mistake ([`Error::InvalidEvent`],
//! [`Error::EventTooLarge`], [`Error::InvalidOption`], [`Error::MonthFrozen`]...), bytes on
//! disk that fail their checksum or structure ([`Error::Corrupt`]: crash damage or bit rot),
//! bytes that are well formed but fail the hash chain or a tag ([`Error::Integrity`]: evidence
//! of tampering or of a wrong key), and the operating system failing ([`Error::Io`]).
//! Each carries the org, file, byte offset and sequence number it concerns where known.

use std::io;
use std::path::PathBuf;

use crate::crypto::{Hash, KeyError, KeyId};
use crate::event::InvalidField;
use crate::format::DecodeError;
use crate::time::Month;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What check a well-formed record or file failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityKind {
    /// `prev_hash` is not the chain hash of the preceding record.
    ChainBreak {
        /// The hash the chain requires.
        expected: Hash,
        /// The hash stored in the record.
        found: Hash,
    },
    /// The tag does not verify with the key it names.
    TagMismatch {
        /// The key id the record names.
        key_id: KeyId,
    },
    /// The record names a key id the key provider does not have.
    UnknownKey {
        /// The key id.
        key_id: KeyId,
    },
    /// The sequence number is not the next one.
    SeqMismatch {
        /// The seq expected.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// The personal-data openings do not match the sealed commitments.
    CommitmentMismatch,
    /// Personal-data slots whose openings are erased (FORMAT.md §2.4): refused by verified
    /// reads, as `verify` reports them (`erased_personal_data`). Erasing needs no key, and
    /// this build writes no erasure it could verify.
    ErasedPersonalData {
        /// The erased slots (`ip`, `user_agent`, `session_id` or a JSON pointer).
        slots: Vec<String>,
    },
    /// A segment or index describes another org, month or segment than its name says.
    Misfiled {
        /// What does not match.
        what: String,
    },
    /// The record's time is outside the month of its segment.
    WrongMonth,
    /// The segment is shorter than its authentic index says it was: records were removed
    /// (truncation or rollback of the segment file).
    Truncated {
        /// The segment's length now.
        length: u64,
        /// Bytes the signed index covers.
        covered_len: u64,
        /// Records the signed index covers.
        records: u64,
    },
    /// The segment disagrees with what its signed index says about it (a block's record
    /// count or time bounds).
    IndexMismatch {
        /// What disagrees.
        what: String,
    },
    /// A segment that another segment's header shows held records is missing (deleted or
    /// moved): a continuation part whose `continues` link counts records of a part that is
    /// not there.
    MissingSegment {
        /// What shows it.
        what: String,
    },
    /// A record's bytes changed between its verification and its delivery (the file was
    /// modified while being read).
    ChangedWhileReading,
    /// An operation that needs a log that verifies found a finding of severity error.
    FailsVerification {
        /// The finding.
        finding: String,
    },
}

impl std::fmt::Display for IntegrityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntegrityKind::ChainBreak { expected, found } => {
                write!(f, "chain break: prev_hash {found} should be {expected}")
            }
            IntegrityKind::TagMismatch { key_id } => {
                write!(f, "HMAC tag does not verify with key {key_id}")
            }
            IntegrityKind::UnknownKey { key_id } => {
                write!(
                    f,
                    "no key with id {key_id} (the keyring or key provider lacks it)"
                )
            }
            IntegrityKind::SeqMismatch { expected, found } => {
                write!(f, "seq {found} where {expected} was expected")
            }
            IntegrityKind::CommitmentMismatch => {
                f.write_str("personal-data openings do not match their commitments")
            }
            IntegrityKind::ErasedPersonalData { slots } => write!(
                f,
                "personal data erased ({}): nothing shows who erased it (erasing needs no key)",
                slots.join(", ")
            ),
            IntegrityKind::Misfiled { what } => write!(f, "misfiled: {what}"),
            IntegrityKind::WrongMonth => f.write_str("occurred_at is outside the segment's month"),
            IntegrityKind::Truncated {
                length,
                covered_len,
                records,
            } => write!(
                f,
                "segment is {length} bytes but its signed index covers {covered_len} bytes ({records} records): records were removed"
            ),
            IntegrityKind::IndexMismatch { what } => {
                write!(f, "segment disagrees with its signed index: {what}")
            }
            IntegrityKind::MissingSegment { what } => write!(f, "missing segment: {what}"),
            IntegrityKind::ChangedWhileReading => {
                f.write_str("record changed after it was verified (file modified while read)")
            }
            IntegrityKind::FailsVerification { finding } => {
                write!(f, "the log does not verify: {finding}")
            }
        }
    }
}

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event field broke a rule (caller's mistake; nothing was written).
    #[error(transparent)]
    InvalidEvent(#[from] InvalidField),

    /// [`crate::Log::append_batch`] failed before it framed anything, for the event at
    /// `index` of the batch (for a check of a whole (org, month) group, such as a missing
    /// key or a frozen month, the group's first event). Nothing of the batch was written;
    /// [`Error::is_refusal`] is `source`'s.
    #[error("event {index} of the batch: {source}")]
    InBatch {
        /// Index of the event in the batch.
        index: usize,
        /// Why.
        source: Box<Error>,
    },

    /// The encoded event is larger than `Options::max_event_size` (nothing was written).
    #[error("event for org {org} is {size} bytes encoded; the maximum is {max}")]
    EventTooLarge {
        /// The org.
        org: String,
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// An option was out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Which option.
        option: &'static str,
        /// Why.
        reason: String,
    },

    /// Another writer holds the directory lock.
    #[error("{dir} is locked by another writer (read-only opens still work)")]
    Locked {
        /// The log directory.
        dir: PathBuf,
    },

    /// The operating system failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },

    /// Bytes on disk fail their checksum or structure: crash damage or bit rot.
    #[error("corrupt {file} at byte {offset}{}: {source}", seq_suffix(*seq))]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// Sequence number of the record, when known.
        seq: Option<u64>,
        /// What failed to decode.
        source: DecodeError,
    },

    /// A file written in a newer format than this build reads: a `format_version` above
    /// the one it reads, or incompatible feature flags it does not know (FORMAT.md §9).
    /// Not damage: nothing in the file was checked; read it with a newer auditlog.
    #[error("{file} needs a newer reader: {source}")]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// The version or flags found (a [`DecodeError`] whose
        /// [`needs_newer_reader`](DecodeError::needs_newer_reader) is true).
        source: DecodeError,
    },

    /// Well-formed bytes fail the hash chain or a tag: tampering, or a wrong key.
    #[error("integrity failure in {file} at byte {offset}{}: {kind}", seq_suffix(*seq))]
    Integrity {
        /// The file.
        file: PathBuf,
        /// Byte offset of the record or structure.
        offset: u64,
        /// Sequence number, when known.
        seq: Option<u64>,
        /// What failed.
        kind: IntegrityKind,
    },

    /// A key could not be found or loaded.
    #[error("org {org}: {source}")]
    Key {
        /// The org.
        org: String,
        /// The key failure.
        source: KeyError,
    },

    /// A record read could not be checked: the key provider failed to give the key its
    /// tag names (a key it does not have at all is [`IntegrityKind::UnknownKey`]).
    #[error(
        "{file} at byte {offset}{}: tag not checked: org {org}, key id {key_id}: {source}",
        seq_suffix(*seq)
    )]
    RecordKey {
        /// Segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// Its sequence number, when known.
        seq: Option<u64>,
        /// The org.
        org: String,
        /// The key id the record names.
        key_id: KeyId,
        /// The provider's failure.
        source: KeyError,
    },

    /// The event's month was frozen into a cold file; appends to it are refused.
    #[error(
        "month {month} of org {org} is archived (frozen); record a correcting event in a current month instead"
    )]
    MonthFrozen {
        /// The org.
        org: String,
        /// The month.
        month: Month,
    },

    /// An earlier write or fsync of this segment failed; the writer refuses appends until
    /// the log is reopened (it never assumes the failed data reached the disk). Once writer
    /// retirement has closed the poisoned writer (it no longer counts toward
    /// [`crate::Options::max_open_writers`] nor holds a descriptor), the segment still
    /// refuses appends with this same error, and [`crate::Log::sync`] and
    /// [`crate::Log::close`] still return it: this process never reopens the segment.
    /// Records it still buffered when it was closed were never written: under
    /// [`crate::Durability::Always`] and [`crate::Durability::Interval`] no append returned
    /// them as acknowledged; under [`crate::Durability::Never`] they are lost with the
    /// failure, as that mode says.
    #[error(
        "writer for org {org} segment {segment} stopped after an earlier failure ({cause}); reopen the log"
    )]
    WriterFailed {
        /// The org.
        org: String,
        /// The segment (`YYYY-MM` or `YYYY-MM.part`).
        segment: String,
        /// The original failure.
        cause: String,
    },

    /// A segment's writer was wanted while writer retirement was closing it. Appends wait
    /// for such a close and then reopen the segment, so this reports an internal ordering
    /// mistake, refused rather than opening a second writer on the file; nothing was
    /// written, and retrying the append is safe.
    #[error(
        "segment {segment} of org {org} is being closed by writer retirement; nothing was written, retry"
    )]
    SegmentClosing {
        /// The org.
        org: String,
        /// The segment (`YYYY-MM` or `YYYY-MM.part`).
        segment: String,
    },

    /// Opening a month's writer needed that same month's writer first (recovery or the
    /// creation of its segment came back to it through the org's latest segment): an
    /// internal ordering mistake, refused rather than recursing. Nothing was written.
    #[error(
        "opening the writer of month {month} of org {org} needed that month's writer first (an internal ordering mistake); nothing was written"
    )]
    WriterReentered {
        /// The org.
        org: String,
        /// The month.
        month: Month,
    },

    /// The segment's sequence numbers are used up: its header or a record claims a seq so
    /// close to 2^64 that the next one would not fit. Only a damaged or forged file does
    /// that (`verify` reports forged records; a forged header of a segment without records
    /// shows only against a checkpoint). Nothing was written.
    #[error(
        "segment {segment} of org {org} cannot number more records: the next seq would be {next}, too close to 2^64 (only a damaged or forged file claims such seqs; run verify); nothing was written"
    )]
    SeqExhausted {
        /// The org.
        org: String,
        /// The segment (`YYYY-MM` or `YYYY-MM.part`).
        segment: String,
        /// The seq the next record would have taken.
        next: u64,
    },

    /// A new segment cannot be numbered: its creation ordinal (past the org's most recently
    /// created segment's) or its continuation part (past the damaged part it continues) would
    /// overflow. Only a damaged or forged header claims such a number; nothing was written,
    /// and appends that need no new segment go on.
    #[error(
        "org {org} cannot create another segment for {month}: its {field} would be past {max} (only a damaged or forged segment header claims such a number; run verify); nothing was written"
    )]
    SegmentNumberExhausted {
        /// The org.
        org: String,
        /// The month of the segment that was to be created.
        month: Month,
        /// `ordinal` or `part`.
        field: &'static str,
        /// The largest value the field can hold.
        max: u64,
    },

    /// Recovery of a month had to put bytes or a report in the org's `quarantine/`, and
    /// that entry is not a directory (a symbolic link, whatever it points to, a regular
    /// file...). Recovery never writes evidence through a link it did not create, nor
    /// anywhere else: it stopped before changing anything of the month, whose appends fail
    /// with this error until the entry is moved away and the log reopened. Other months and
    /// orgs go on.
    #[error(
        "org {org}: {path} is {found}, not a directory; recovery does not write evidence through it and stopped before changing the month (move it away and reopen the log); nothing was written"
    )]
    QuarantineUnusable {
        /// The org.
        org: String,
        /// The `quarantine` entry.
        path: PathBuf,
        /// What it is instead of a directory.
        found: &'static str,
    },

    /// An org's entry in the log directory is not a directory: a symbolic link (whatever
    /// it points to), a regular file, a FIFO... auditlog neither writes evidence through it
    /// nor reads through it, and `verify` reports it (a link as the error `symbolic_link`,
    /// anything else only as the warning `unexpected_file`): appends for the org
    /// fail with this error, nothing written, and so do its queries, scans and segment
    /// listings, until the entry is replaced by the directory itself. Other orgs go on.
    #[error(
        "org {org}: {path} is {found}, not a directory; auditlog neither writes nor reads evidence through it (verify reports it): put the org's directory itself there"
    )]
    OrgDirUnusable {
        /// The org.
        org: String,
        /// The org's entry in the log directory.
        path: PathBuf,
        /// What it is instead of a directory.
        found: &'static str,
    },

    /// A continuation part's header is unreadable (and neither its records nor an index of
    /// it name its seqs), and the part it continues is missing: nothing on disk tells which
    /// seqs the month issued before it, so none is issued rather than any reissued. Recovery
    /// of the month changes nothing and its appends fail with this error until the missing
    /// part is restored (or the month's parts are moved away to start it afresh); other
    /// months and orgs go on.
    #[error(
        "org {org} segment {segment}: its header is unreadable and {missing}, the part it continues, is missing, so the seqs the month issued cannot be known and none is issued (restore the missing part); nothing was written"
    )]
    ContinuedPartMissing {
        /// The org.
        org: String,
        /// The headerless part (`YYYY-MM.part`).
        segment: String,
        /// The missing part's file.
        missing: PathBuf,
    },

    /// Work the log does on its own behalf panicked: a bug in the engine, not the caller's
    /// input (a key provider's panics are [`Error::Key`] with [`KeyError::Panicked`]). The
    /// log contained it: the background flusher goes on with its next tick and
    /// [`crate::Log::close`] returns this error; a writer whose retirement panicked is
    /// poisoned, so its appends fail with [`Error::WriterFailed`] until the log is reopened
    /// (recovery then decides from the bytes on disk what survived).
    #[error("{task} panicked: {message} (a bug in auditlog; reopening the log recovers)")]
    Panicked {
        /// What was running: `background flusher`, `writer retirement`.
        task: &'static str,
        /// The panic's message.
        message: String,
    },

    /// No such org in the log.
    #[error("unknown org {org}: the log has no directory for it")]
    UnknownOrg {
        /// The org.
        org: String,
    },

    /// The log was opened read-only.
    #[error("the log was opened read-only")]
    ReadOnly,

    /// The log has been closed. Never returned as things are: [`crate::Log::close`] takes
    /// the log by value, and dropping it is the only other way it closes, so no call can
    /// reach a closed log. Kept (the enum is `#[non_exhaustive]` and code may match on it)
    /// for a future way to close a shared log.
    #[error("the log is closed")]
    Closed,
}

fn seq_suffix(seq: Option<u64>) -> String {
    seq.map(|s| format!(" (seq {s})")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Bytes of `file` that failed to decode at `source.offset`: [`Error::UnsupportedFormat`]
    /// when they are of a newer format, else [`Error::Corrupt`].
    pub(crate) fn decode(file: impl Into<PathBuf>, seq: Option<u64>, source: DecodeError) -> Error {
        if source.needs_newer_reader() {
            return Error::UnsupportedFormat {
                file: file.into(),
                source,
            };
        }
        Error::Corrupt {
            file: file.into(),
            offset: source.offset,
            seq,
            source,
        }
    }

    /// Whether this error is evidence of tampering or key mismatch (as opposed to crash
    /// damage, I/O failure or caller misuse).
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Integrity { .. })
    }

    /// The error itself, or for [`Error::InBatch`] the error of the event it names.
    pub fn unbatched(&self) -> &Error {
        match self {
            Error::InBatch { source, .. } => source.unbatched(),
            other => other,
        }
    }

    /// From [`crate::Log::append`] or [`crate::Log::append_batch`]: whether the call was
    /// refused before anything was written, for one of its events (invalid, too large, no
    /// signing key, a frozen month, seqs or segment numbers used up, a `quarantine` recovery
    /// cannot use, an org entry that is not a directory, a month whose issued seqs cannot be
    /// known, a month whose latest segment is of a newer format). Appending the events
    /// before the refused one again cannot duplicate them. Any other error may come after
    /// some records reached the disk.
    pub fn is_refusal(&self) -> bool {
        if let Error::InBatch { source, .. } = self {
            return source.is_refusal();
        }
        matches!(
            self,
            Error::InvalidEvent(_)
                | Error::EventTooLarge { .. }
                | Error::Key { .. }
                | Error::MonthFrozen { .. }
                | Error::SeqExhausted { .. }
                | Error::SegmentNumberExhausted { .. }
                | Error::QuarantineUnusable { .. }
                | Error::OrgDirUnusable { .. }
                | Error::ContinuedPartMissing { .. }
                | Error::UnsupportedFormat { .. }
        )
    }
}
