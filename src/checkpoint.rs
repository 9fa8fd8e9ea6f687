//! Signed checkpoints: a statement of every segment's chain head, kept off the host so that
//! truncation, rollback and rewritten history become detectable (see SECURITY.md).

use serde::{Deserialize, Serialize};

use crate::crypto::{Hash, Key, KeyId, KeyProvider, Signer, Tag, hex, unhex};
use crate::error::{Error, Result};
use crate::event::OrgId;
use crate::format::header::SegmentId;
use crate::segment::parse_segment_file_name;
use crate::time::Timestamp;

/// One segment's state in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSegment {
    /// `YYYY-MM` or `YYYY-MM.n`.
    pub segment: String,
    /// Records in the segment.
    pub count: u64,
    /// Seq of the last record (absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// `occurred_at` of the last record (absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<Timestamp>,
    /// Chain hash after the last record (the genesis when empty).
    pub head: Hash,
}

impl CheckpointSegment {
    /// The segment id, if the name is valid.
    pub fn id(&self) -> Option<SegmentId> {
        parse_segment_file_name(&format!("{}.seg", self.segment))
    }
}

/// A signed statement of an org's chain heads at one moment. Serialised as one JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always `auditlog-checkpoint`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// The org.
    pub org_id: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// Every segment of the org, in (month, part) order.
    pub segments: Vec<CheckpointSegment>,
    /// Key id of the tag.
    pub key_id: u32,
    /// HMAC-SHA256 over `statement()` (hex).
    pub tag: String,
}

/// The `format` of every checkpoint.
pub const FORMAT: &str = "auditlog-checkpoint";
/// The checkpoint version this build writes and reads.
pub const VERSION: u32 = 1;

/// The fields that say what a checkpoint line is, read before the rest: a line of a newer
/// version may lay out the rest differently.
#[derive(Deserialize)]
struct Kind {
    format: String,
    version: u32,
}

impl Checkpoint {
    /// The exact bytes the tag covers (FORMAT.md §8).
    pub fn statement(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let org = self.org_id.as_bytes();
        out.push(org.len().min(255) as u8);
        out.extend_from_slice(org);
        out.extend_from_slice(&self.created_at.0.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            let name = s.segment.as_bytes();
            out.push(name.len().min(255) as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&s.count.to_le_bytes());
            out.extend_from_slice(&s.last_seq.map_or(u64::MAX, |v| v).to_le_bytes());
            out.extend_from_slice(&s.last_time.map_or(i64::MIN, |t| t.0).to_le_bytes());
            out.extend_from_slice(&s.head.0);
        }
        out
    }

    /// Builds and signs a checkpoint with the org's current signing key.
    pub fn sign(
        org: &OrgId,
        segments: Vec<CheckpointSegment>,
        keys: &dyn KeyProvider,
    ) -> Result<Checkpoint> {
        let (id, key) = keys.signing_key(org).map_err(|source| Error::Key {
            org: org.to_string(),
            source,
        })?;
        Ok(Checkpoint::sign_with(org, segments, id, &key))
    }

    /// [`Checkpoint::sign`] with a key already looked up.
    pub(crate) fn sign_with(
        org: &OrgId,
        segments: Vec<CheckpointSegment>,
        id: KeyId,
        key: &Key,
    ) -> Checkpoint {
        let mut c = Checkpoint {
            format: FORMAT.into(),
            version: VERSION,
            org_id: org.to_string(),
            created_at: Timestamp::now(),
            segments,
            key_id: id.0,
            tag: String::new(),
        };
        c.tag = hex(&Signer::new(id, key).checkpoint_tag(&c.statement()).0);
        c
    }

    /// Checks the tag: `Ok(true)` valid, `Ok(false)` wrong, `Err` key missing.
    pub fn verify_tag(&self, keys: &dyn KeyProvider) -> std::result::Result<bool, String> {
        if self.format != FORMAT || self.version != VERSION {
            return Ok(false);
        }
        let org = OrgId::new(&self.org_id).map_err(|e| e.to_string())?;
        let key = keys
            .key(&org, KeyId(self.key_id))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the keyring has no key {} for org {org}", self.key_id))?;
        let Some(tag) = unhex(&self.tag).and_then(|t| <[u8; 32]>::try_from(t).ok()) else {
            return Ok(false);
        };
        let want = Signer::new(KeyId(self.key_id), &key).checkpoint_tag(&self.statement());
        // Constant-time comparison is not needed here: the checkpoint is public data.
        Ok(want == Tag(tag))
    }

    /// Parses checkpoints from JSON lines (blank lines ignored). Refuses a line of another
    /// format or of a version this build does not read (rather than letting it fail its tag
    /// later, as if forged). The format and version are read first, so a line of a newer
    /// version is refused as such even if its other fields changed.
    ///
    /// Refuses a text without any checkpoint (empty, or blank lines only): given to
    /// `verify`, it would check nothing, and a verification that was asked to hold the log
    /// to checkpoints would pass as if none had been asked for. (An invalid `org_id` in a
    /// line is not refused here: `verify` reports it as an error finding.)
    pub fn parse_lines(text: &str) -> std::result::Result<Vec<Checkpoint>, String> {
        let checkpoints = Self::parse_each(text)?;
        if checkpoints.is_empty() {
            return Err(
                "no checkpoint in it (empty, or blank lines only): it would check nothing".into(),
            );
        }
        Ok(checkpoints)
    }

    fn parse_each(text: &str) -> std::result::Result<Vec<Checkpoint>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let line = i + 1;
                let kind: Kind =
                    serde_json::from_str(l).map_err(|e| format!("line {line}: {e}"))?;
                if kind.format != FORMAT {
                    return Err(format!(
                        "line {line}: format {:?} is not {FORMAT:?}",
                        kind.format
                    ));
                }
                if kind.version > VERSION {
                    return Err(format!(
                        "line {line}: unsupported checkpoint version {}: it needs a newer reader (this build reads version {VERSION})",
                        kind.version
                    ));
                }
                if kind.version != VERSION {
                    return Err(format!(
                        "line {line}: unsupported checkpoint version {} (this build reads version {VERSION}, and no version below it exists)",
                        kind.version
                    ));
                }
                serde_json::from_str(l).map_err(|e| format!("line {line}: {e}"))
            })
            .collect()
    }
}
