//! Writing and reading a segment's sidecar index (FORMAT.md §3) piece by piece, in memory
//! bounded independently of the index's size.
//!
//! - [`write`] streams an [`IndexImage`] to the index file (temporary file, fsync, rename,
//!   directory fsync), computing the CRC and the tag as the bytes go out. The bytes are those
//!   [`Index::encode_unsigned`] followed by [`crate::crypto::Signer::index_tag`] would give.
//! - [`read`] checks an index file in one pass (structure, sections, CRC, tag: what
//!   [`Index::decode`] and a tag check accept, nothing else) and can fill an
//!   [`IndexBuilder`] with its blocks as it goes, for a writer resuming the segment. The
//!   builder is only handed out if every check passed, the tag last: bytes that failed are
//!   never trusted, and no check is made on bytes other than those the builder got.
//!
//! [`Index`]: crate::format::index::Index
//! [`Index::encode_unsigned`]: crate::format::index::Index::encode_unsigned
//! [`Index::decode`]: crate::format::index::Index::decode

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::DirSync;
use super::scan::{FileWindow, IndexBuilder, IndexImage};
use super::writer::write_atomically_with;
use crate::crypto::{Hash, IndexTagger, KeyProvider, Signer, Tag};
use crate::error::Result;
use crate::event::OrgId;
use crate::format::codec::{Reader, varint_len};
use crate::format::header::SegmentId;
use crate::format::index::{
    BlockFilters, ENTRY_LEN, FILTER_HEADER_LEN, INDEX_HEADER_LEN, INDEX_TRAILER_LEN, IndexEntry,
    IndexHead, MARK_LEN, MARKS_HEADER_LEN, Probing, SECTION_BLOCK_FILTERS, SECTION_BLOCK_TIMES,
    SECTION_USER_MARKS, SeqRun, check_marks_header, decode_marks, user_marks_len,
};
use crate::format::{DecodeError, DecodeErrorKind};
use crate::time::Timestamp;

/// Bytes handed on at a time when copying a long field (a filter, an unknown section).
const COPY_CHUNK: u64 = 64 * 1024;

/// Streams the index `head` + `image` into `sink`, CRC and tag included. `head`'s
/// `entry_count` and `section_count` are taken from the image.
pub(crate) fn stream(
    head: &IndexHead,
    image: &IndexImage,
    signer: &Signer,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut head = head.clone();
    head.entry_count = image.entry_count_u32()?;
    head.section_count = image.section_count();
    let mut crc = crc32fast::Hasher::new();
    let mut tagger = signer.index_tagger();
    let mut tee = |bytes: &[u8]| -> Result<()> {
        crc.update(bytes);
        tagger.update(bytes);
        sink(bytes)
    };
    let mut header = Vec::with_capacity(INDEX_HEADER_LEN);
    head.encode(&mut header);
    tee(&header)?;
    image.write_body(&mut tee)?;
    let crc = crc.finalize().to_le_bytes();
    tagger.update(&crc);
    sink(&crc)?;
    sink(&tagger.finish().0)
}

/// Writes the index `head` + `image` to `path` (temporary file, fsync, rename, directory
/// fsync as `dir_sync` says), streaming: memory use does not depend on the index's size.
pub(crate) fn write(
    path: &Path,
    head: &IndexHead,
    image: &IndexImage,
    signer: &Signer,
    dir_sync: DirSync<'_>,
) -> Result<()> {
    write_atomically_with(path, dir_sync, |sink| stream(head, image, signer, sink))
}

/// The index bytes [`write`] would write, in memory (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode(head: &IndexHead, image: &IndexImage, signer: &Signer) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    stream(head, image, signer, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}

/// What [`read`] found.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The header.
    pub head: IndexHead,
    /// The query sections a writer continues were present: block times, block filters and
    /// user marks.
    pub has_sections: bool,
    /// The blocks, if asked for and both query sections were present: every closed block,
    /// and the open block's entry and times (its terms still to be read back from its
    /// records with [`IndexBuilder::resume_open_block`]).
    pub builder: Option<IndexBuilder>,
    /// The summary, if asked for ([`read_summary`], [`check`]).
    pub summary: Option<Summary>,
    /// What became of the tag ([`read`] and [`read_summary`] accept only `Verified`).
    pub tag: TagCheck,
}

/// Why an index was not accepted.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// The file could not be read.
    Io(io::Error),
    /// Structure, sections or CRC.
    Decode(DecodeError),
    /// No key to check the tag with.
    Key(String),
    /// The tag does not verify.
    Tag,
    /// A group read again ([`Summary::group`]) is not the group that was checked.
    Changed,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::Io(e) => write!(f, "unreadable: {e}"),
            Rejected::Decode(e) => write!(f, "{e}"),
            Rejected::Key(why) => f.write_str(why),
            Rejected::Tag => f.write_str("tag does not verify"),
            Rejected::Changed => f.write_str("changed after it was checked"),
        }
    }
}

impl From<io::Error> for Rejected {
    fn from(e: io::Error) -> Self {
        Rejected::Io(e)
    }
}

impl From<DecodeError> for Rejected {
    fn from(e: DecodeError) -> Self {
        Rejected::Decode(e)
    }
}

/// A checked index as a reader going through it a group of blocks at a time keeps it
/// (the query planner): one [`Group`] per `group_blocks` blocks, with the digest of the
/// group's bytes, so that the group read again later is the group that was checked.
#[derive(Debug)]
pub(crate) struct Summary {
    /// Blocks per group (the last group may hold fewer).
    pub group_blocks: u64,
    /// Blocks (entries) in the index.
    pub blocks: u64,
    /// File offset of the first entry.
    pub entries_at: u64,
    /// File offset of the first block's times, if the index has section 1.
    pub times_at: Option<u64>,
    /// How the filters are probed, if the index has section 2.
    pub filter_probing: Option<Probing>,
    /// File offset of the first record's user mark, if the index has section 3.
    pub marks_at: Option<u64>,
    /// The index's `first_seq` and `record_count`.
    pub first_seq: u64,
    pub record_count: u64,
    pub groups: Vec<Group>,
}

/// One group of a [`Summary`].
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// The group's first entry.
    pub first: IndexEntry,
    /// Smallest `min_ts` and largest `max_ts` of its blocks (section 1; without it
    /// `i64::MAX`, `i64::MIN`).
    pub lo: Timestamp,
    pub hi: Timestamp,
    /// File range of its filters (section 2; empty without it).
    pub filters: (u64, u64),
    /// SHA-256 over the SHA-256 of its entries', its times', its filters' and its user
    /// marks' bytes.
    pub digest: Hash,
}

/// The blocks of one group, read again and found to be those that were checked.
#[derive(Debug)]
pub(crate) struct GroupBlocks {
    pub entries: Vec<IndexEntry>,
    /// `(min_ts, max_ts)` per block, with section 1.
    pub times: Option<Vec<(Timestamp, Timestamp)>>,
    /// The blocks' filters (block `i` of the group is filter `i`), with section 2.
    pub filters: Option<BlockFilters>,
    /// The user marks of the group's records, the first of seq `entries[0].seq`, with
    /// section 3.
    pub marks: Option<Vec<u16>>,
    /// With section 3: each block's first record as a mark number of the group (its seq
    /// less `entries[0].seq`). The same facts as the entries' seqs in a sixth of the bytes,
    /// for finding the block of a marked record without leaving the CPU's caches.
    pub mark_starts: Option<Vec<u32>>,
}

impl GroupBlocks {
    /// Approximate bytes held.
    pub fn mem(&self) -> usize {
        std::mem::size_of::<GroupBlocks>()
            + self.entries.len() * std::mem::size_of::<IndexEntry>()
            + self.times.as_ref().map_or(0, |t| t.len() * 16)
            + self
                .filters
                .as_ref()
                .map_or(0, |f| f.bits.len() + 4 * f.ends.len())
            + self.marks.as_ref().map_or(0, |m| m.len() * MARK_LEN)
            + self.mark_starts.as_ref().map_or(0, |m| m.len() * 4)
    }
}

impl Summary {
    /// Blocks in group `g`.
    pub fn group_len(&self, g: usize) -> u64 {
        let first = g as u64 * self.group_blocks;
        self.blocks.saturating_sub(first).min(self.group_blocks)
    }

    /// Reads group `g` from `file` (the file summarised) and checks it against its digest:
    /// bytes changed since the check are refused ([`Rejected::Changed`]).
    pub fn group(&self, file: &File, g: usize) -> Result<GroupBlocks, Rejected> {
        let group = self.groups.get(g).ok_or(Rejected::Changed)?;
        let n = self.group_len(g);
        let first = g as u64 * self.group_blocks;
        let read = |at: u64, len: u64| -> Result<Vec<u8>, Rejected> {
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Rejected::Changed)?];
            file.read_exact_at(&mut buf, at)?;
            Ok(buf)
        };
        let entries = read(
            self.entries_at + first * ENTRY_LEN as u64,
            n * ENTRY_LEN as u64,
        )?;
        let times = match self.times_at {
            Some(at) => read(at + first * 16, n * 16)?,
            None => Vec::new(),
        };
        let (fa, fb) = group.filters;
        let filters = read(fa, fb.saturating_sub(fa))?;
        let marks = match self.marks_at {
            Some(at) => {
                let (a, b) = self.mark_range(g).ok_or(Rejected::Changed)?;
                read(at + a * MARK_LEN as u64, (b - a) * MARK_LEN as u64)?
            }
            None => Vec::new(),
        };
        let parts = [&entries, &times, &filters, &marks].map(|b| Sha256::digest(b).into());
        if group_digest(&parts) != group.digest {
            return Err(Rejected::Changed);
        }
        let at = self.entries_at + first * ENTRY_LEN as u64;
        let mut r = Reader::new(&entries, at, "index");
        let entries = (0..n)
            .map(|_| IndexEntry::decode(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        let times = match self.times_at {
            Some(at) => {
                let mut r = Reader::new(&times, at + first * 16, "index");
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let lo = Timestamp(r.i64("block_times.min_ts")?);
                    let hi = Timestamp(r.i64("block_times.max_ts")?);
                    v.push((lo, hi));
                }
                Some(v)
            }
            None => None,
        };
        let filters = match self.filter_probing {
            Some(p) => Some(BlockFilters::decode_filters(
                &filters, n as usize, p, first, fa,
            )?),
            None => None,
        };
        // Section 3's checks made the seqs increase from the group's first and stay within
        // `record_count`, whose marks fit in a section's u32 length.
        let mark_starts = match self.marks_at {
            Some(_) => {
                let base = entries.first().map_or(0, |e| e.seq);
                let starts = entries
                    .iter()
                    .map(|e| e.seq.checked_sub(base).and_then(|d| u32::try_from(d).ok()))
                    .collect::<Option<Vec<u32>>>();
                Some(starts.ok_or(Rejected::Changed)?)
            }
            None => None,
        };
        Ok(GroupBlocks {
            entries,
            times,
            filters,
            marks: self.marks_at.map(|_| decode_marks(&marks)),
            mark_starts,
        })
    }

    /// The records of group `g`, as mark numbers `[a, b)` (a record's is its seq less
    /// `first_seq`): from its first entry's seq to the next group's, or to the end. Section
    /// 3's checks made these increase and stay within `record_count`.
    fn mark_range(&self, g: usize) -> Option<(u64, u64)> {
        let a = self.groups.get(g)?.first.seq.checked_sub(self.first_seq)?;
        let b = match self.groups.get(g + 1) {
            Some(next) => next.first.seq.checked_sub(self.first_seq)?,
            None => self.record_count,
        };
        (a <= b && b <= self.record_count).then_some((a, b))
    }
}

/// [`Group::digest`] from the SHA-256 of the group's entries', times', filters' and marks'
/// bytes.
fn group_digest(parts: &[[u8; 32]; 4]) -> Hash {
    let mut all = Sha256::new();
    for d in parts {
        all.update(d);
    }
    Hash(all.finalize().into())
}

/// Which bytes of a group a digest is of.
#[derive(Clone, Copy)]
enum Part {
    Entries = 0,
    Times = 1,
    Filters = 2,
    Marks = 3,
}

/// Collects a [`Summary`] while [`read_with`] checks the index.
struct Summarizer {
    group_blocks: u64,
    blocks: u64,
    entries_at: u64,
    times_at: Option<u64>,
    filter_probing: Option<Probing>,
    marks_at: Option<u64>,
    groups: Vec<Group>,
    /// Per group, the digests of its entries', times', filters' and marks' bytes.
    parts: Vec<[[u8; 32]; 4]>,
}

impl Summarizer {
    fn new(group_blocks: u64, blocks: u64, entries_at: u64) -> Summarizer {
        let empty: [u8; 32] = Sha256::digest([]).into();
        let groups = blocks.div_ceil(group_blocks) as usize;
        Summarizer {
            group_blocks,
            blocks,
            entries_at,
            times_at: None,
            filter_probing: None,
            marks_at: None,
            groups: Vec::with_capacity(groups),
            parts: vec![[empty; 4]; groups],
        }
    }

    fn group_of(&mut self, block: u64) -> Option<&mut Group> {
        self.groups.get_mut((block / self.group_blocks) as usize)
    }

    /// Called before block `i`'s bytes of `part` are read, and with `i = n` after the last:
    /// at a group's start, closes the previous group's digest and opens the next.
    fn boundary(&mut self, feed: &mut Feed, part: Part, i: u64, n: u64) {
        if !i.is_multiple_of(self.group_blocks) && i != n {
            return;
        }
        if let Some(d) = feed.digest.take()
            && let Some(slot) = i
                .checked_sub(1)
                .and_then(|last| self.parts.get_mut((last / self.group_blocks) as usize))
                .and_then(|p| p.get_mut(part as usize))
        {
            *slot = d.finalize().into();
        }
        if i < n {
            feed.digest = Some(Sha256::new());
        }
    }

    fn finish(mut self, head: &IndexHead) -> Summary {
        for (g, p) in self.groups.iter_mut().zip(&self.parts) {
            g.digest = group_digest(p);
        }
        Summary {
            group_blocks: self.group_blocks,
            blocks: self.blocks,
            entries_at: self.entries_at,
            times_at: self.times_at,
            filter_probing: self.filter_probing,
            marks_at: self.marks_at,
            first_seq: head.first_seq,
            record_count: head.record_count,
            groups: self.groups,
        }
    }
}

/// Sequential reads through the CRC-covered bytes of an index file, fed to the CRC and
/// (once the key is known) the tag as they are consumed.
struct Feed {
    win: FileWindow,
    pos: u64,
    /// End of the CRC-covered bytes.
    end: u64,
    crc: crc32fast::Hasher,
    tagger: Option<IndexTagger>,
    /// The digest of the current group's bytes of the current section, when summarising.
    digest: Option<Sha256>,
}

impl Feed {
    fn truncated(&self, field: &'static str, needed: u64) -> DecodeError {
        DecodeError {
            structure: "index",
            field,
            offset: self.pos,
            kind: DecodeErrorKind::Truncated {
                needed,
                available: self.end.saturating_sub(self.pos),
            },
        }
    }

    /// The next `n` bytes, which must lie before `limit` (≤ the covered end).
    fn take(&mut self, n: u64, limit: u64, field: &'static str) -> Result<&[u8], Rejected> {
        if n > limit.saturating_sub(self.pos) {
            return Err(self.truncated(field, n).into());
        }
        let bytes = self.win.get(self.pos, n as usize)?;
        if bytes.len() as u64 != n {
            return Err(Rejected::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.crc.update(bytes);
        if let Some(t) = self.tagger.as_mut() {
            t.update(bytes);
        }
        if let Some(d) = self.digest.as_mut() {
            d.update(bytes);
        }
        self.pos += n;
        Ok(bytes)
    }

    /// A fixed-size field.
    fn array<const N: usize>(
        &mut self,
        limit: u64,
        field: &'static str,
    ) -> Result<[u8; N], Rejected> {
        let at = self.pos;
        let bytes = self.take(N as u64, limit, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| {
            Rejected::Decode(DecodeError {
                structure: "index",
                field,
                offset: at,
                kind: DecodeErrorKind::Truncated {
                    needed: N as u64,
                    available: 0,
                },
            })
        })
    }

    /// `n` bytes, in pieces of at most 64 KiB, each handed to `each`.
    fn copy(
        &mut self,
        mut n: u64,
        limit: u64,
        field: &'static str,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Rejected> {
        if n > limit.saturating_sub(self.pos) {
            return Err(self.truncated(field, n).into());
        }
        while n > 0 {
            let piece = n.min(COPY_CHUNK);
            each(self.take(piece, limit, field)?);
            n -= piece;
        }
        Ok(())
    }

    /// A minimal LEB128 value of at most 5 bytes (as [`Reader::varint`]), before `limit`.
    fn varint(&mut self, limit: u64, field: &'static str) -> Result<(u32, [u8; 5]), Rejected> {
        let at = self.pos;
        let invalid = |why| {
            Rejected::Decode(DecodeError {
                structure: "index",
                field,
                offset: at,
                kind: DecodeErrorKind::Invalid(why),
            })
        };
        let mut raw = [0u8; 5];
        let mut value: u64 = 0;
        for (i, slot) in raw.iter_mut().enumerate() {
            let [byte] = self.array::<1>(limit, field)?;
            *slot = byte;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                let v = u32::try_from(value).map_err(|_| invalid("varint exceeds u32"))?;
                if i + 1 != varint_len(v) {
                    return Err(invalid("non-minimal varint"));
                }
                return Ok((v, raw));
            }
        }
        Err(invalid("varint longer than 5 bytes"))
    }

    fn error(&self, field: &'static str, kind: DecodeErrorKind) -> Rejected {
        self.error_at(self.pos, field, kind)
    }

    /// An error in a field (or structure) read already, at the offset where it begins.
    fn error_at(&self, offset: u64, field: &'static str, kind: DecodeErrorKind) -> Rejected {
        Rejected::Decode(DecodeError {
            structure: "index",
            field,
            offset,
            kind,
        })
    }
}

/// Reads and checks the index file `file` in one pass, in bounded memory: what
/// [`Index::decode`](crate::format::index::Index::decode) accepts and whose tag verifies
/// with the key of `org` it names, and nothing else. Whether the index describes a given
/// segment is the caller's check. With `build` (a directory for spill files), also collects
/// the blocks for a resuming writer (see [`Checked::builder`]).
pub(crate) fn read(
    file: File,
    org: &OrgId,
    keys: &dyn KeyProvider,
    build: Option<&Path>,
) -> Result<Checked, Rejected> {
    authentic(read_with(
        file,
        org,
        Some(keys),
        Want {
            build,
            ..Want::default()
        },
    )?)
}

/// Checks the index file `file` as [`read`] does, except that it is returned whatever became
/// of its tag ([`Checked::tag`]): recovery reads an index whose key is missing as possibly
/// authentic.
/// What an index file of segment `id` is evidence of, whatever the segment holds now
/// (FORMAT.md §6). Recovery and the query layer read it the same way.
pub(crate) enum IndexEvidence {
    /// Nothing: absent, not a regular file, malformed, describing another segment, or its
    /// tag does not verify (recovery ignores and rebuilds it, FORMAT.md §3).
    None,
    /// Its tag verifies with a key of the org.
    Authentic(IndexHead),
    /// Well formed and naming this segment, but its tag could not be checked: the key
    /// provider lacks the key it names, or failed. It may be authentic (the key may turn up,
    /// or be restored), so recovery reads it as if it were wherever that is the safe
    /// reading (what it vouches for was durable; its seqs were issued) and never rebuilds
    /// over it without a copy.
    KeyMissing { head: IndexHead, why: String },
}

impl IndexEvidence {
    /// The header of an index that is, or may be, authentic.
    pub(crate) fn vouching(&self) -> Option<&IndexHead> {
        match self {
            IndexEvidence::None => None,
            IndexEvidence::Authentic(head) | IndexEvidence::KeyMissing { head, .. } => Some(head),
        }
    }
}

/// [`evidence`] of the index file at `path`: absent, or not a regular file (nothing a
/// writer made), is [`IndexEvidence::None`].
pub(crate) fn evidence_at(
    path: &Path,
    org: &OrgId,
    id: SegmentId,
    keys: &dyn KeyProvider,
) -> io::Result<IndexEvidence> {
    match crate::segment::open_regular(path) {
        Ok(f) => evidence(f, org, id, keys),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
            ) =>
        {
            Ok(IndexEvidence::None)
        }
        Err(e) => Err(e),
    }
}

/// Reads index file `file` of segment `id` of `org` for what it is evidence of. `Err` if
/// it cannot be read (permissions, I/O): it may be the evidence of records since lost. A
/// file shorter than its own counts is malformed, not unreadable.
pub(crate) fn evidence(
    file: File,
    org: &OrgId,
    id: SegmentId,
    keys: &dyn KeyProvider,
) -> io::Result<IndexEvidence> {
    match read_unauthenticated(file, org, keys) {
        Ok(c) if &c.head.org == org && c.head.segment == id => Ok(match c.tag {
            TagCheck::Verified => IndexEvidence::Authentic(c.head),
            TagCheck::UnknownKey(why) => IndexEvidence::KeyMissing { head: c.head, why },
            TagCheck::Mismatch | TagCheck::NotChecked => IndexEvidence::None,
        }),
        Ok(_) => Ok(IndexEvidence::None),
        Err(Rejected::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        Err(_) => Ok(IndexEvidence::None),
    }
}

pub(crate) fn read_unauthenticated(
    file: File,
    org: &OrgId,
    keys: &dyn KeyProvider,
) -> Result<Checked, Rejected> {
    read_with(file, org, Some(keys), Want::default())
}

/// `checked` if its tag verified, else why not.
fn authentic(checked: Checked) -> Result<Checked, Rejected> {
    match &checked.tag {
        TagCheck::Verified => Ok(checked),
        TagCheck::Mismatch | TagCheck::NotChecked => Err(Rejected::Tag),
        TagCheck::UnknownKey(why) => Err(Rejected::Key(why.clone())),
    }
}

/// Checks the structure of the index file `file` as [`read`] does, and its tag with the key
/// of `org` it names if `keys` are given, reporting the tag's status rather than refusing
/// the index over it (`verify` reports both). Also summarises it in groups of `group_blocks`
/// blocks ([`Checked::summary`]), so that its blocks can be read again a group at a time
/// and shown to be the bytes checked ([`Summary::group`]).
pub(crate) fn check(
    file: File,
    org: &OrgId,
    keys: Option<&dyn KeyProvider>,
    group_blocks: u64,
) -> Result<Checked, Rejected> {
    read_with(
        file,
        org,
        keys,
        Want {
            group_blocks: Some(group_blocks.max(1)),
            ..Want::default()
        },
    )
}

/// What [`read_with`] collects besides checking.
#[derive(Default)]
struct Want<'a> {
    /// Blocks for a resuming writer (spill files in this directory).
    build: Option<&'a Path>,
    /// A summary in groups of this many blocks.
    group_blocks: Option<u64>,
}

/// What became of an index's tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TagCheck {
    /// It verifies with the key the header names.
    Verified,
    /// It does not.
    Mismatch,
    /// No key to check it with (why).
    UnknownKey(String),
    /// No keys were given.
    NotChecked,
}

/// Reads and checks the index file `file` as [`read`] does, and summarises it in groups of
/// `group_blocks` blocks for a reader that goes through it a group at a time
/// ([`Summary::group`]). Memory: one [`Group`] per group.
pub(crate) fn read_summary(
    file: File,
    org: &OrgId,
    keys: &dyn KeyProvider,
    group_blocks: u64,
) -> Result<(Checked, Summary), Rejected> {
    let mut checked = authentic(read_with(
        file,
        org,
        Some(keys),
        Want {
            group_blocks: Some(group_blocks.max(1)),
            ..Want::default()
        },
    )?)?;
    let summary = checked.summary.take().ok_or(Rejected::Tag)?;
    Ok((checked, summary))
}

fn read_with(
    file: File,
    org: &OrgId,
    keys: Option<&dyn KeyProvider>,
    want: Want<'_>,
) -> Result<Checked, Rejected> {
    let Want {
        build,
        group_blocks,
    } = want;
    let len = file.metadata()?.len();
    let entries_file = file.try_clone()?;
    let body_end = len
        .checked_sub(INDEX_TRAILER_LEN as u64)
        .ok_or(DecodeError {
            structure: "index",
            field: "tag",
            offset: 0,
            kind: DecodeErrorKind::Truncated {
                needed: (INDEX_HEADER_LEN + INDEX_TRAILER_LEN) as u64,
                available: len,
            },
        })?;
    let mut feed = Feed {
        win: FileWindow::new(file, len),
        pos: 0,
        end: body_end,
        crc: crc32fast::Hasher::new(),
        tagger: None,
        digest: None,
    };

    // The header, then the key its tag was made with.
    let header = feed.array::<INDEX_HEADER_LEN>(body_end, "header")?;
    let head = IndexHead::decode(&mut Reader::new(&header, 0, "index"))?;
    let mut tag_check = TagCheck::NotChecked;
    if let Some(keys) = keys {
        match keys.key(org, head.key_id) {
            Ok(Some(key)) => {
                let mut tagger = Signer::new(head.key_id, &key).index_tagger();
                tagger.update(&header);
                feed.tagger = Some(tagger);
            }
            Ok(None) => {
                tag_check =
                    TagCheck::UnknownKey(format!("signed with unknown key {}", head.key_id));
            }
            Err(e) => tag_check = TagCheck::UnknownKey(e.to_string()),
        }
    }

    // Entries.
    let n = u64::from(head.entry_count);
    let room = (body_end - feed.pos) / ENTRY_LEN as u64;
    if n > room {
        return Err(feed.error(
            "entry_count",
            DecodeErrorKind::BadLength {
                found: n,
                min: 0,
                max: room,
            },
        ));
    }
    let mut builder =
        build.map(|dir| IndexBuilder::resuming(head.interval, dir, head.min_ts, head.max_ts));
    let entries_at = feed.pos;
    let mut sum = group_blocks.map(|g| Summarizer::new(g, n, entries_at));
    let mut last_offset = None;
    for i in 0..n {
        if let Some(s) = sum.as_mut() {
            s.boundary(&mut feed, Part::Entries, i, n);
        }
        let at = feed.pos;
        let bytes = feed.array::<ENTRY_LEN>(body_end, "entry")?;
        let e = IndexEntry::decode(&mut Reader::new(&bytes, at, "index"))?;
        if let Some(s) = sum.as_mut()
            && i.is_multiple_of(s.group_blocks)
        {
            s.groups.push(Group {
                first: e,
                lo: Timestamp(i64::MAX),
                hi: Timestamp(i64::MIN),
                filters: (0, 0),
                digest: Hash([0; 32]),
            });
        }
        if last_offset.is_some_and(|o| e.offset <= o) || e.offset >= head.covered_len {
            // The entry's offset field: after its seq and max_ts_before.
            return Err(feed.error_at(
                at + 16,
                "entry.offset",
                DecodeErrorKind::Invalid("entries out of order or past covered_len"),
            ));
        }
        last_offset = Some(e.offset);
        if let Some(b) = builder.as_mut() {
            b.resume_entry(&e, i + 1 == n);
        }
    }
    if let Some(s) = sum.as_mut() {
        s.boundary(&mut feed, Part::Entries, n, n);
    }

    // Sections.
    let count = u64::from(head.section_count);
    let room = (body_end - feed.pos) / 8;
    if count > room {
        return Err(feed.error(
            "section_count",
            DecodeErrorKind::BadLength {
                found: count,
                min: 0,
                max: room,
            },
        ));
    }
    let mut entries = FileWindow::new(entries_file, entries_at + n * ENTRY_LEN as u64);
    let (mut seen_times, mut seen_filters, mut seen_marks) = (false, false, false);
    let mut own_probing = true;
    for _ in 0..count {
        let section_at = feed.pos;
        let kind = u32::from_le_bytes(feed.array(body_end, "section.type")?);
        let slen = u64::from(u32::from_le_bytes(feed.array(body_end, "section.len")?));
        if slen > body_end - feed.pos {
            return Err(feed.truncated("section.bytes", slen).into());
        }
        let seen = match kind {
            SECTION_BLOCK_TIMES => Some(&mut seen_times),
            SECTION_BLOCK_FILTERS => Some(&mut seen_filters),
            SECTION_USER_MARKS => Some(&mut seen_marks),
            _ => None,
        };
        if let Some(seen) = seen {
            if *seen {
                return Err(feed.error_at(
                    section_at,
                    "section.type",
                    DecodeErrorKind::Invalid("a section type appears twice"),
                ));
            }
            *seen = true;
        }
        let section_end = feed.pos + slen;
        match kind {
            SECTION_BLOCK_TIMES => read_times(
                &mut feed,
                section_end,
                &head,
                &mut entries,
                entries_at,
                builder.as_mut(),
                sum.as_mut(),
            )?,
            SECTION_BLOCK_FILTERS => {
                own_probing =
                    read_filters(&mut feed, section_end, n, builder.as_mut(), sum.as_mut())?;
            }
            SECTION_USER_MARKS => read_marks(
                &mut feed,
                section_end,
                &head,
                &mut entries,
                entries_at,
                builder.as_mut(),
                sum.as_mut(),
            )?,
            _ => feed.copy(slen, section_end, "section.bytes", &mut |_| {})?,
        }
    }
    if feed.pos != body_end {
        return Err(feed.error(
            "end of sections",
            DecodeErrorKind::TrailingBytes {
                count: body_end - feed.pos,
            },
        ));
    }

    // CRC, then tag.
    let computed = feed.crc.clone().finalize();
    let crc_at = feed.pos;
    let stored = feed.win.get(crc_at, 4)?;
    let stored = <[u8; 4]>::try_from(stored).map_err(|_| feed.truncated("crc32", 4))?;
    let mut tagger = feed.tagger.take();
    if let Some(t) = tagger.as_mut() {
        t.update(&stored);
    }
    let stored = u32::from_le_bytes(stored);
    if stored != computed {
        return Err(Rejected::Decode(DecodeError {
            structure: "index",
            field: "crc32",
            offset: crc_at,
            kind: DecodeErrorKind::ChecksumMismatch { stored, computed },
        }));
    }
    let tag = feed.win.get(crc_at + 4, 32)?;
    let stored_tag = Tag(<[u8; 32]>::try_from(tag).map_err(|_| feed.truncated("tag", 32))?);
    if let Some(t) = tagger {
        tag_check = match t.verify(&stored_tag) {
            true => TagCheck::Verified,
            false => TagCheck::Mismatch,
        };
    }
    let has_sections = seen_times && seen_filters && seen_marks;
    if let Some(b) = builder.as_mut() {
        b.resume_marks_done(seen_marks.then_some(head.record_count));
    }
    Ok(Checked {
        summary: sum.map(|s| s.finish(&head)),
        tag: tag_check,
        head,
        has_sections,
        // A writer extends filters probed its own way: an index probed with another scheme
        // or `k` (valid, FORMAT.md §3.2) is rebuilt, never continued under a header naming
        // the writer's, which would make queries probe the old filters wrongly.
        builder: builder.filter(|_| has_sections && own_probing),
    })
}

/// Section 1 (FORMAT.md §3.1), as [`Index::decode`](crate::format::index::Index::decode)
/// checks it: one `(min, max)` per entry with `min ≤ max`, agreeing with the entries'
/// `max_ts_before` (read again through `entries`) and with the header's bounds.
fn read_times(
    feed: &mut Feed,
    end: u64,
    head: &IndexHead,
    entries: &mut FileWindow,
    entries_at: u64,
    mut builder: Option<&mut IndexBuilder>,
    mut sum: Option<&mut Summarizer>,
) -> Result<(), Rejected> {
    let n = u64::from(head.entry_count);
    if let Some(s) = sum.as_deref_mut() {
        s.times_at = Some(feed.pos);
    }
    if end - feed.pos != n * 16 {
        return Err(feed.error(
            "block_times",
            DecodeErrorKind::BadLength {
                found: end - feed.pos,
                min: n * 16,
                max: n * 16,
            },
        ));
    }
    let mut running = Timestamp(i64::MIN);
    let (mut lo, mut hi) = (Timestamp(i64::MAX), Timestamp(i64::MIN));
    for i in 0..n {
        if let Some(s) = sum.as_deref_mut() {
            s.boundary(feed, Part::Times, i, n);
        }
        let item = feed.array::<16>(end, "block_times")?;
        let mut r = Reader::new(&item, feed.pos - 16, "index");
        let bmin = Timestamp(r.i64("block_times.min_ts")?);
        let bmax = Timestamp(r.i64("block_times.max_ts")?);
        if bmin > bmax {
            return Err(feed.error_at(
                feed.pos - 16,
                "block_times",
                DecodeErrorKind::Invalid("block min_ts above max_ts"),
            ));
        }
        let at = entries_at + i * ENTRY_LEN as u64;
        let e = entries.get(at, ENTRY_LEN)?;
        let e = IndexEntry::decode(&mut Reader::new(e, at, "index"))?;
        if e.max_ts_before != running {
            return Err(feed.error(
                "block_times",
                DecodeErrorKind::Invalid("block bounds disagree with the entries' max_ts_before"),
            ));
        }
        running = running.max(bmax);
        lo = lo.min(bmin);
        hi = hi.max(bmax);
        if let Some(b) = builder.as_deref_mut() {
            b.resume_time(bmin, bmax, i + 1 == n);
        }
        if let Some(g) = sum.as_deref_mut().and_then(|s| s.group_of(i)) {
            g.lo = g.lo.min(bmin);
            g.hi = g.hi.max(bmax);
        }
    }
    if let Some(s) = sum {
        s.boundary(feed, Part::Times, n, n);
    }
    if n > 0 && (lo != head.min_ts || hi != head.max_ts) {
        return Err(feed.error(
            "block_times",
            DecodeErrorKind::Invalid("block bounds disagree with min_ts/max_ts"),
        ));
    }
    Ok(())
}

/// Reads and checks section 2 (FORMAT.md §3.2) as [`crate::format::index::BlockFilters::decode`]
/// does: scheme 1 or 2, `k` in 1..=16, reserved 0, then exactly `n` filters (minimal varint
/// length, bits) filling the section. The builder gets every filter but the last, copied as
/// they are. `Ok(true)` if they were probed as the writer probes ([`Probing::WRITER`]) and
/// can be continued.
fn read_filters(
    feed: &mut Feed,
    end: u64,
    n: u64,
    mut builder: Option<&mut IndexBuilder>,
    mut sum: Option<&mut Summarizer>,
) -> Result<bool, Rejected> {
    let at = feed.pos;
    let [scheme, k, r0, r1] = feed.array::<FILTER_HEADER_LEN>(end, "block_filters")?;
    let probing = Probing::check(scheme, k, at)?;
    if [r0, r1] != [0, 0] {
        return Err(feed.error_at(
            at + 2,
            "block_filters.reserved",
            DecodeErrorKind::Invalid("reserved bytes must be zero"),
        ));
    }
    if n > end - feed.pos {
        return Err(feed.error(
            "block_filters",
            DecodeErrorKind::BadLength {
                found: n,
                min: 0,
                max: end - feed.pos,
            },
        ));
    }
    if let Some(s) = sum.as_deref_mut() {
        s.filter_probing = Some(probing);
    }
    for i in 0..n {
        if let Some(s) = sum.as_deref_mut() {
            let at = feed.pos;
            s.boundary(feed, Part::Filters, i, n);
            let first = i.is_multiple_of(s.group_blocks);
            if let Some(g) = s.group_of(i)
                && first
            {
                g.filters.0 = at;
            }
        }
        let (len, raw) = feed.varint(end, "block_filters.filter")?;
        let keep = i + 1 < n;
        let mut sink = |bytes: &[u8]| {
            if keep && let Some(b) = builder.as_deref_mut() {
                b.resume_filter(bytes);
            }
        };
        sink(raw.get(..varint_len(len)).unwrap_or_default());
        feed.copy(u64::from(len), end, "block_filters.filter", &mut sink)?;
        if let Some(g) = sum.as_deref_mut().and_then(|s| s.group_of(i)) {
            g.filters.1 = feed.pos;
        }
    }
    if let Some(s) = sum {
        s.boundary(feed, Part::Filters, n, n);
    }
    if feed.pos != end {
        return Err(feed.error(
            "end of block_filters",
            DecodeErrorKind::TrailingBytes {
                count: end - feed.pos,
            },
        ));
    }
    Ok(probing == Probing::WRITER)
}

/// Reads and checks section 3 (FORMAT.md §3.3) as
/// [`crate::format::index::decode_user_marks`] does: scheme 1, reserved 0, one mark per
/// covered record, and entries whose seqs locate each block's marks (read again through
/// `entries`). The builder gets every mark; the summary, each group's digest.
fn read_marks(
    feed: &mut Feed,
    end: u64,
    head: &IndexHead,
    entries: &mut FileWindow,
    entries_at: u64,
    mut builder: Option<&mut IndexBuilder>,
    sum: Option<&mut Summarizer>,
) -> Result<(), Rejected> {
    let at = feed.pos;
    let want = user_marks_len(head.record_count).unwrap_or(u64::MAX);
    if end - feed.pos != want {
        return Err(feed.error(
            "user_marks",
            DecodeErrorKind::BadLength {
                found: end - feed.pos,
                min: want,
                max: want,
            },
        ));
    }
    check_marks_header(feed.array::<MARKS_HEADER_LEN>(end, "user_marks")?, at)?;
    let mut run = SeqRun::new((head.first_seq, head.record_count));
    for i in 0..u64::from(head.entry_count) {
        let e_at = entries_at + i * ENTRY_LEN as u64;
        let e = entries.get(e_at, ENTRY_LEN)?;
        run.push(IndexEntry::decode(&mut Reader::new(e, e_at, "index"))?.seq);
    }
    run.finish(at)?;
    let mut sink = |bytes: &[u8]| {
        if let Some(b) = builder.as_deref_mut() {
            b.resume_marks(bytes);
        }
    };
    let Some(s) = sum else {
        return feed.copy(end - feed.pos, end, "user_marks", &mut sink);
    };
    s.marks_at = Some(feed.pos);
    // Groups follow one another and cover every record: the entries run from `first_seq`.
    for g in 0..s.groups.len() {
        let seq = |x: &Group| x.first.seq.saturating_sub(head.first_seq);
        let from = s.groups.get(g).map_or(0, seq);
        let to = s.groups.get(g + 1).map_or(head.record_count, seq);
        // (The entries were re-read through another window: a file changed in between
        // must not overflow here; its CRC fails further on.)
        let len = to
            .saturating_sub(from)
            .checked_mul(MARK_LEN as u64)
            .ok_or_else(|| feed.truncated("user_marks", u64::MAX))?;
        feed.digest = Some(Sha256::new());
        feed.copy(len, end, "user_marks", &mut sink)?;
        if let (Some(d), Some(slot)) = (
            feed.digest.take(),
            s.parts
                .get_mut(g)
                .and_then(|p| p.get_mut(Part::Marks as usize)),
        ) {
            *slot = d.finalize().into();
        }
    }
    if feed.pos != end {
        return Err(feed.error(
            "end of user_marks",
            DecodeErrorKind::TrailingBytes {
                count: end - feed.pos,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use std::fs;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::{self, Hash, Keyring};
    use crate::format::codec::put_varint;
    use crate::format::header::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentId};
    use crate::format::index::{
        Index, KeyFields, MARK_UNKNOWN, SECTION_BLOCK_FILTERS, Section, encode_block_times,
        encode_filter_probed, encode_user_marks,
    };
    use crate::format::record;
    use crate::log::{Durability, Log, Options, RecoveryAction};
    use crate::segment::recover::{self, load_index};
    use crate::segment::scan::{self, TEST_SPILL_LIMIT, Tally};
    use crate::time::Month;
    use crate::workload::{Workload, WorkloadConfig};

    /// The sidecar index builder as it was before spilling: everything in memory, the index
    /// assembled whole by `Index::encode_unsigned` and tagged by `Signer::index_tag`. The
    /// byte-identity tests compare the streamed index against it.
    struct Legacy {
        interval: u32,
        entries: Vec<IndexEntry>,
        next_boundary: u64,
        min_ts: Timestamp,
        max_ts: Timestamp,
        times: Vec<(Timestamp, Timestamp)>,
        filters: Vec<u8>,
        open_terms: Vec<u64>,
        open_unfiltered: bool,
        probing: Probing,
        marks: Vec<u16>,
    }

    impl Legacy {
        fn new(interval: u32, probing: Probing) -> Self {
            Legacy {
                probing,
                interval,
                entries: Vec::new(),
                next_boundary: 0,
                min_ts: Timestamp(i64::MAX),
                max_ts: Timestamp(i64::MIN),
                times: Vec::new(),
                filters: Vec::new(),
                open_terms: Vec::new(),
                open_unfiltered: false,
                marks: Vec::new(),
            }
        }

        fn observe(&mut self, offset: u64, seq: u64, ts: Timestamp, sealed: &[u8]) {
            if offset >= self.next_boundary {
                if !self.entries.is_empty() {
                    // The block closed is the one before the entry pushed below.
                    legacy_filter(
                        &mut self.open_terms,
                        self.open_unfiltered,
                        self.probing,
                        self.entries.len() as u64 - 1,
                        &mut self.filters,
                    );
                    self.open_terms.clear();
                    self.open_unfiltered = false;
                }
                self.entries.push(IndexEntry {
                    seq,
                    max_ts_before: self.max_ts,
                    offset,
                });
                self.times.push((ts, ts));
                let i = u64::from(self.interval.max(1));
                self.next_boundary = (offset / i + 1) * i;
            }
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
            if let Some((lo, hi)) = self.times.last_mut() {
                *lo = (*lo).min(ts);
                *hi = (*hi).max(ts);
            }
            match KeyFields::parse(sealed) {
                Ok(k) => {
                    k.terms(&mut self.open_terms);
                    self.marks.push(k.user_mark());
                }
                Err(_) => {
                    self.open_unfiltered = true;
                    self.marks.push(MARK_UNKNOWN);
                }
            }
        }

        fn sections(&self) -> Vec<Section> {
            let mut filters = self.probing.header().to_vec();
            filters.extend_from_slice(&self.filters);
            if !self.entries.is_empty() {
                let mut open = self.open_terms.clone();
                let block = self.entries.len() as u64 - 1;
                legacy_filter(
                    &mut open,
                    self.open_unfiltered,
                    self.probing,
                    block,
                    &mut filters,
                );
            }
            vec![
                encode_block_times(&self.times),
                Section {
                    kind: SECTION_BLOCK_FILTERS,
                    bytes: filters,
                },
                encode_user_marks(&self.marks),
            ]
        }
    }

    fn legacy_filter(
        terms: &mut Vec<u64>,
        unfiltered: bool,
        probing: Probing,
        block: u64,
        out: &mut Vec<u8>,
    ) {
        if unfiltered {
            put_varint(out, 0);
        } else {
            encode_filter_probed(terms, probing, block, out);
        }
    }

    /// The index the pre-spill writer wrote for every record of the segment file at `seg`,
    /// its filters probed as `probing` says.
    fn legacy_index(seg: &Path, signer: &Signer, interval: u32, probing: Probing) -> Vec<u8> {
        let bytes = fs::read(seg).unwrap();
        let header = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_LEN]).unwrap();
        let genesis = crypto::sha256(&bytes[..SEGMENT_HEADER_LEN]);
        let mut b = Legacy::new(interval, probing);
        let (mut off, mut head, mut count) = (SEGMENT_HEADER_LEN, genesis, 0u64);
        while off < bytes.len() {
            let rec = record::decode_frame(&bytes[off..], off as u64).unwrap();
            b.observe(
                off as u64,
                rec.fields.seq,
                rec.fields.occurred_at,
                rec.sealed,
            );
            head = crypto::chain_hash(rec.chained_bytes());
            count += 1;
            off += rec.len() as usize;
        }
        let index = Index {
            compat_flags: 0,
            key_id: signer.key_id(),
            org: header.org.clone(),
            segment: header.id,
            interval,
            segment_hash: genesis,
            covered_len: off as u64,
            record_count: count,
            first_seq: header.first_seq,
            min_ts: b.min_ts,
            max_ts: b.max_ts,
            head,
            sections: b.sections(),
            entries: b.entries,
        };
        let mut out = index.encode_unsigned();
        let tag = signer.index_tag(&out);
        out.extend_from_slice(&tag.0);
        out
    }

    /// Asserts equal bytes, naming the first difference rather than printing both.
    #[track_caller]
    fn assert_same(got: &[u8], want: &[u8], what: &str) {
        if got != want {
            let at = got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{what}: {} bytes where {} were expected; first difference at {at:?}",
                got.len(),
                want.len()
            );
        }
    }

    const ORG: &str = "org-000";

    fn org() -> OrgId {
        OrgId::new(ORG).unwrap()
    }

    fn january() -> SegmentId {
        SegmentId {
            month: Month::new(2026, 1).unwrap(),
            part: 0,
        }
    }

    /// Events of one org, all in January 2026 (`skip` first events of the stream left out).
    fn events(n: u64, skip: usize) -> Vec<crate::event::Event> {
        Workload::new(WorkloadConfig {
            events: n + skip as u64,
            orgs: 1,
            days: 20,
            seed: 11,
            start: Timestamp(1_767_312_000_000_000), // 2026-01-02
            out_of_order: 0.05,
        })
        .skip(skip)
        .collect()
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        keys: Arc<Keyring>,
        interval: u32,
    }

    impl Fixture {
        fn new(interval: u32) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("log");
            let keys = Arc::new(Keyring::in_memory());
            keys.rotate(&org()).unwrap();
            Fixture {
                _tmp: tmp,
                dir,
                keys,
                interval,
            }
        }

        /// Opens the log with builders created on this thread spilling beyond `limit`.
        fn open(&self, limit: usize) -> Log {
            TEST_SPILL_LIMIT.with(|l| l.set(Some(limit)));
            let mut opts = Options::new(self.keys.clone()).durability(Durability::Never);
            opts.index_interval = self.interval;
            Log::open(&self.dir, opts).unwrap()
        }

        fn seg(&self) -> PathBuf {
            self.dir.join(ORG).join("2026-01.seg")
        }

        fn idx(&self) -> PathBuf {
            self.dir.join(ORG).join("2026-01.idx")
        }

        fn signer(&self) -> Signer {
            let (id, key) = self.keys.signing_key(&org()).unwrap();
            Signer::new(id, &key)
        }

        /// The legacy index of the segment as it is on disk now.
        fn reference(&self) -> Vec<u8> {
            legacy_index(&self.seg(), &self.signer(), self.interval, Probing::WRITER)
        }

        fn append(&self, limit: usize, evs: &[crate::event::Event]) -> Vec<RecoveryAction> {
            let log = self.open(limit);
            let report = log.recovery_report();
            log.append_batch(evs).unwrap();
            log.close().unwrap();
            report
        }
    }

    /// Limits from "spill every block" to "never spill".
    const LIMITS: [usize; 4] = [1, 700, 64 * 1024, usize::MAX];

    fn rebuilt(report: &[RecoveryAction]) -> Vec<&str> {
        report
            .iter()
            .filter_map(|a| match a {
                RecoveryAction::IndexRebuilt { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_tag_computed_in_pieces_is_the_tag_of_the_whole() {
        let key = crypto::Key::new(&[7; 32]).unwrap();
        let signer = Signer::new(crypto::KeyId(3), &key);
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 31) as u8).collect();
        for cut in [0, 1, 17, 2500, 4999, 5000] {
            let mut t = signer.index_tagger();
            t.update(&bytes[..cut]);
            t.update(&bytes[cut..]);
            assert_eq!(t.clone().finish(), signer.index_tag(&bytes));
            assert!(t.verify(&signer.index_tag(&bytes)));
        }
    }

    /// An index whose filters an older writer probed with scheme 1 (FORMAT.md §3.2) stays
    /// good: queries prune with it and find every match, and the next writer of the segment
    /// rebuilds it with its own scheme rather than extend scheme-1 filters under a scheme-2
    /// header.
    #[test]
    fn scheme_1_filters_are_read_and_then_rebuilt() {
        let f = Fixture::new(1024);
        let evs = events(400, 0);
        f.append(usize::MAX, &evs[..300]);
        let scheme_1 = Probing { scheme: 1, k: 7 };
        let old = legacy_index(&f.seg(), &f.signer(), f.interval, scheme_1);
        fs::write(f.idx(), &old).unwrap();

        let mut opts = Options::new(f.keys.clone());
        opts.index_interval = f.interval;
        let log = Log::open_read_only(&f.dir, opts).unwrap();
        let user = evs[7].user_id.clone().unwrap();
        let want = evs[..300]
            .iter()
            .filter(|e| e.user_id.as_deref() == Some(user.as_str()))
            .count();
        let mut m = log.query(&org()).user(&user).run().unwrap();
        let mut found = 0;
        for r in m.by_ref() {
            assert_eq!(r.unwrap().event.user_id.as_deref(), Some(user.as_str()));
            found += 1;
        }
        let stats = m.stats().clone();
        assert_eq!(found, want);
        assert!(stats.blocks_skipped > 0, "{stats:?}");
        assert!(log.recovery_report().is_empty());
        drop(m);
        drop(log);

        // The index is rebuilt when the segment's writer opens, at the first append.
        let log = f.open(usize::MAX);
        log.append_batch(&evs[300..]).unwrap();
        assert_eq!(
            rebuilt(&log.recovery_report()),
            ["index filters are probed another way (hash scheme or k) than this writer's"]
        );
        log.close().unwrap();
        assert_same(
            &fs::read(f.idx()).unwrap(),
            &f.reference(),
            "after the next writer",
        );
    }

    /// A segment of many blocks: the index a writer streams while appending, with any spill
    /// limit, is the legacy in-memory index byte for byte; and so is the index recovery
    /// rebuilds from the records alone with any limit.
    #[test]
    fn streamed_index_is_byte_identical_to_the_in_memory_index() {
        for interval in [256, 4096] {
            for &limit in &LIMITS {
                let f = Fixture::new(interval);
                f.append(limit, &events(1500, 0));
                let want = f.reference();
                assert!(
                    want.len() > 20_000,
                    "the index should span many blocks: {} bytes",
                    want.len()
                );
                assert_same(
                    &fs::read(f.idx()).unwrap(),
                    &want,
                    &format!("append, limit {limit}"),
                );

                // Rebuilt by recovery from the records.
                for &rebuild_limit in &LIMITS {
                    fs::remove_file(f.idx()).unwrap();
                    let report = f.open(rebuild_limit).recovery_report();
                    assert_eq!(rebuilt(&report), ["index missing"]);
                    assert_same(
                        &fs::read(f.idx()).unwrap(),
                        &want,
                        &format!("rebuild, interval {interval}, limit {rebuild_limit}"),
                    );
                }
            }
        }
    }

    /// A writer resumes from a lagging index (its blocks read back through the streaming
    /// check, spilled as they come), appends more records, some of them into the block the
    /// old index left open, and writes an index identical to the legacy one.
    #[test]
    fn index_after_resume_is_byte_identical() {
        for &limit in &LIMITS {
            let f = Fixture::new(256);
            let evs = events(2000, 0);
            f.append(limit, &evs[..1200]);
            let old_idx = fs::read(f.idx()).unwrap();
            f.append(limit, &evs[1200..1700]);
            // The index lags the segment: the next open resumes from it.
            fs::write(f.idx(), &old_idx).unwrap();
            let report = f.append(limit, &evs[1700..]);
            assert_eq!(
                rebuilt(&report),
                ["index lags the segment"],
                "limit {limit}"
            );
            assert_same(
                &fs::read(f.idx()).unwrap(),
                &f.reference(),
                &format!("limit {limit}"),
            );
        }
        // An index whose last block is still open takes the next records into that block.
        let f = Fixture::new(1 << 20);
        let evs = events(600, 0);
        f.append(1, &evs[..300]);
        let report = f.append(1, &evs[300..]);
        assert!(rebuilt(&report).is_empty(), "{report:?}");
        assert_same(&fs::read(f.idx()).unwrap(), &f.reference(), "open block");
    }

    /// Recovery of a torn tail: the writer resumes from a lagging index, the torn record is
    /// quarantined, and the index written over what is left is the legacy one.
    #[test]
    fn index_after_torn_tail_recovery_is_byte_identical() {
        for &limit in &LIMITS {
            let f = Fixture::new(256);
            let evs = events(1600, 0);
            f.append(limit, &evs[..1000]);
            let old_idx = fs::read(f.idx()).unwrap();
            f.append(limit, &evs[1000..1500]);
            let len = fs::metadata(f.seg()).unwrap().len();
            let file = fs::OpenOptions::new().write(true).open(f.seg()).unwrap();
            file.set_len(len - 100).unwrap();
            drop(file);
            fs::write(f.idx(), &old_idx).unwrap();
            let log = f.open(limit);
            let report = log.recovery_report();
            assert!(
                report
                    .iter()
                    .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { .. })),
                "{report:?}"
            );
            assert_eq!(rebuilt(&report), ["index lags the segment"]);
            drop(log);
            assert_same(
                &fs::read(f.idx()).unwrap(),
                &f.reference(),
                &format!("limit {limit}"),
            );
            // And appending after the cut keeps it identical.
            f.append(limit, &evs[1500..]);
            assert_same(
                &fs::read(f.idx()).unwrap(),
                &f.reference(),
                &format!("limit {limit}"),
            );
        }
    }

    /// Recovery with a torn tail and no usable index scans everything; same bytes. (The
    /// index is removed: one that covers the cut bytes would make the cut evidence of
    /// tampering, and the segment would be sealed, not cut.)
    #[test]
    fn index_after_torn_tail_full_scan_is_byte_identical() {
        let f = Fixture::new(256);
        f.append(1, &events(900, 0));
        let len = fs::metadata(f.seg()).unwrap().len();
        let file = fs::OpenOptions::new().write(true).open(f.seg()).unwrap();
        file.set_len(len - 10).unwrap();
        drop(file);
        fs::remove_file(f.idx()).unwrap();
        let report = f.open(1).recovery_report();
        assert!(
            report
                .iter()
                .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { .. })),
            "{report:?}"
        );
        assert_eq!(rebuilt(&report).len(), 1, "{report:?}");
        assert!(rebuilt(&report)[0].contains("missing"), "{report:?}");
        assert_same(&fs::read(f.idx()).unwrap(), &f.reference(), "open block");
    }

    /// Spill files that cannot be created lose nothing: the blocks stay in memory, the index
    /// is still exact, and the failure comes back once as a typed I/O error naming the
    /// directory.
    #[test]
    fn a_failed_spill_keeps_the_index_exact_and_reports_a_typed_error() {
        let f = Fixture::new(256);
        f.append(usize::MAX, &events(400, 0));
        let (header, genesis, seg_len) = segment_header(&f);
        let missing = f.dir.join("no-such-dir");
        let builder = IndexBuilder::with_spill_limit(256, &missing, 1);
        let tally = Tally::fresh(&header, genesis, builder);
        let mut win = FileWindow::new(File::open(f.seg()).unwrap(), seg_len);
        let o = org();
        let mut tags = scan::Tags::new(&o, &*f.keys);
        let outcome =
            scan::scan(&mut win, SEGMENT_HEADER_LEN as u64, tally, Some(&mut tags)).unwrap();
        assert!(outcome.damage.is_empty());
        let mut t = outcome.tally;
        let signer = f.signer();
        assert_eq!((header.org.clone(), header.id), (org(), january()));
        let head = t.index_head(&header, genesis, signer.key_id());
        let bytes = encode(&head, &t.index.image(), &signer).unwrap();
        assert_same(&bytes, &f.reference(), "index after failed spills");
        match t.index.take_spill_error() {
            Some(crate::error::Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected the spill failure, got {other:?}"),
        }
        assert!(t.index.take_spill_error().is_none(), "reported once");
    }

    fn segment_header(f: &Fixture) -> (SegmentHeader, Hash, u64) {
        let bytes = fs::read(f.seg()).unwrap();
        let h = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_LEN]).unwrap();
        (
            h,
            crypto::sha256(&bytes[..SEGMENT_HEADER_LEN]),
            bytes.len() as u64,
        )
    }

    /// The streaming check accepts exactly what `load_index` (decode, tag, segment checks)
    /// accepts: for every single-byte change of a real index, truncations, trailing bytes,
    /// and re-signed indexes whose structure or sections are wrong. When it accepts, the
    /// blocks it collected give back the original index.
    #[test]
    fn streaming_check_accepts_exactly_what_load_index_accepts() {
        let f = Fixture::new(1024);
        f.append(usize::MAX, &events(150, 0));
        let (header, genesis, seg_len) = segment_header(&f);
        let dir = f.dir.join(ORG);
        let good = fs::read(f.idx()).unwrap();
        let signer = f.signer();
        let check = |bytes: &[u8], what: &str| {
            fs::write(f.idx(), bytes).unwrap();
            let slow = load_index(&dir, &org(), &header, &genesis, seg_len, &*f.keys);
            TEST_SPILL_LIMIT.with(|l| l.set(Some(64)));
            let fast = recover::read_index(
                &dir,
                &org(),
                &header,
                &genesis,
                seg_len,
                &*f.keys,
                Some(&dir),
            );
            assert_eq!(
                fast.is_ok(),
                slow.is_ok(),
                "{what}: streamed {:?}, load_index {:?}",
                fast.as_ref().err(),
                slow.as_ref().err()
            );
            let (Ok(fast), Ok(slow)) = (fast, slow) else {
                return;
            };
            assert_eq!(fast.head, slow.head(), "{what}");
            let sections = slow.block_times().unwrap().is_some()
                && slow.block_filters().unwrap().is_some()
                && slow.user_marks().unwrap().is_some();
            assert_eq!(fast.has_sections, sections, "{what}");
            let own_probing = slow
                .block_filters()
                .unwrap()
                .is_some_and(|f| f.probing == Probing::WRITER);
            let Some(mut b) = fast.builder else {
                assert!(!(sections && own_probing), "{what}");
                return;
            };
            assert!(own_probing, "{what}: continued filters probed another way");
            let file = File::open(f.seg()).unwrap();
            let mut win = FileWindow::new(file, seg_len);
            let o = org();
            let mut tags = scan::Tags::new(&o, &*f.keys);
            assert!(
                b.resume_open_block(&mut win, slow.covered_len, &mut tags)
                    .unwrap()
            );
            let mut again = slow.clone();
            again.sections.retain(|s| {
                [
                    SECTION_BLOCK_TIMES,
                    SECTION_BLOCK_FILTERS,
                    SECTION_USER_MARKS,
                ]
                .contains(&s.kind)
            });
            again.sections.sort_by_key(|s| s.kind);
            let mut want = again.encode_unsigned();
            want.extend_from_slice(&signer.index_tag(&want).0);
            let got = encode(&slow.head(), &b.image(), &signer).unwrap();
            assert_same(&got, &want, &format!("{what}: resumed blocks"));
        };
        check(&good, "as written");
        for at in 0..good.len() {
            for flip in [0x01u8, 0x80] {
                let mut b = good.clone();
                b[at] ^= flip;
                check(&b, &format!("byte {at} ^ {flip:#x}"));
            }
        }
        for cut in [
            0,
            10,
            35,
            36,
            216,
            252,
            good.len() / 2,
            good.len() - 33,
            good.len() - 1,
        ] {
            check(&good[..cut], &format!("cut at {cut}"));
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 40]);
        check(&longer, "trailing bytes");

        // Re-signed: valid CRC and tag, the structure itself changed.
        let (index, _, _) = Index::decode(&good).unwrap();
        let resign = |i: &Index| {
            let mut b = i.encode_unsigned();
            let tag = signer.index_tag(&b);
            b.extend_from_slice(&tag.0);
            b
        };
        type Edit<'a> = Box<dyn Fn(&mut Index) + 'a>;
        let edits: Vec<(&str, Edit)> = vec![
            ("unchanged", Box::new(|_| {})),
            ("sections swapped", Box::new(|i| i.sections.reverse())),
            (
                "unknown section first",
                Box::new(|i| {
                    i.sections.insert(
                        0,
                        Section {
                            kind: 77,
                            bytes: vec![5; 300_000],
                        },
                    )
                }),
            ),
            (
                "unknown section last",
                Box::new(|i| {
                    i.sections.push(Section {
                        kind: 9,
                        bytes: vec![],
                    })
                }),
            ),
            ("no filters", Box::new(|i| i.sections.truncate(1))),
            ("no sections", Box::new(|i| i.sections.clear())),
            (
                "times twice",
                Box::new(|i| i.sections.push(i.sections[0].clone())),
            ),
            (
                "filters twice",
                Box::new(|i| i.sections.push(i.sections[1].clone())),
            ),
            ("entries out of order", Box::new(|i| i.entries.swap(1, 2))),
            (
                "entry past covered_len",
                Box::new(|i| i.entries.last_mut().unwrap().offset = i.covered_len),
            ),
            (
                "entry's max_ts_before",
                Box::new(|i| i.entries[3].max_ts_before.0 += 1),
            ),
            ("min_ts", Box::new(|i| i.min_ts.0 -= 1)),
            ("max_ts", Box::new(|i| i.max_ts.0 += 1)),
            (
                "times short",
                Box::new(|i| {
                    i.sections[0].bytes.pop();
                }),
            ),
            (
                "time min above max",
                Box::new(|i| {
                    let mut t = i.block_times().unwrap().unwrap();
                    t[2].0 = Timestamp(t[2].1.0 + 1);
                    i.sections[0] = encode_block_times(&t);
                }),
            ),
            ("filter k 0", Box::new(|i| i.sections[1].bytes[1] = 0)),
            (
                "filter k 5 (valid, not ours)",
                Box::new(|i| i.sections[1].bytes[1] = 5),
            ),
            ("filter k 17", Box::new(|i| i.sections[1].bytes[1] = 17)),
            (
                "filter scheme 1 (valid, not ours)",
                Box::new(|i| i.sections[1].bytes[0] = 1),
            ),
            ("filter scheme 3", Box::new(|i| i.sections[1].bytes[0] = 3)),
            ("filter reserved", Box::new(|i| i.sections[1].bytes[3] = 1)),
            (
                "filters trailing",
                Box::new(|i| i.sections[1].bytes.push(0)),
            ),
            (
                "filters short",
                Box::new(|i| {
                    i.sections[1].bytes.pop();
                }),
            ),
            (
                "filter length not minimal",
                Box::new(|i| {
                    let f = i.block_filters().unwrap().unwrap();
                    let mut b = f.probing.header().to_vec();
                    for n in 0..f.ends.len() {
                        let bits = f.filter(n);
                        if n == 0 {
                            b.extend_from_slice(&[bits.len() as u8 | 0x80, 0]);
                        } else {
                            put_varint(&mut b, bits.len() as u32);
                        }
                        b.extend_from_slice(bits);
                    }
                    i.sections[1].bytes = b;
                }),
            ),
            (
                "no entries",
                Box::new(|i| {
                    i.entries.clear();
                    i.sections[0].bytes.clear();
                    i.sections[1].bytes.truncate(FILTER_HEADER_LEN);
                }),
            ),
            (
                "other org",
                Box::new(|i| i.org = OrgId::new("org-001").unwrap()),
            ),
            ("other part", Box::new(|i| i.segment.part = 1)),
            (
                "other genesis",
                Box::new(|i| i.segment_hash = Hash([9; 32])),
            ),
            ("other first seq", Box::new(|i| i.first_seq = 1)),
            (
                "covers too much",
                Box::new(move |i| i.covered_len = seg_len + 1),
            ),
            ("covers too little", Box::new(|i| i.covered_len = 10)),
            ("unknown key", Box::new(|i| i.key_id = crypto::KeyId(99))),
            ("incompatible flag", Box::new(|i| i.compat_flags = 1)),
        ];
        for (what, edit) in &edits {
            let mut i = index.clone();
            edit(&mut i);
            check(&resign(&i), what);
        }
        // Checked with the real index back in place, the log still opens cleanly.
        fs::write(f.idx(), &good).unwrap();
        assert!(rebuilt(&f.open(64).recovery_report()).is_empty());
    }
}
