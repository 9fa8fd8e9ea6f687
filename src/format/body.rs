//! The sealed event body and the openings of its personal-data commitments.
//!
//! Sealed body (hashed into the chain):
//! ```text
//! u8      flags: bit 0 user_id present, bit 1 trace_id present; other bits zero
//! str     user_id            (only if flag bit 0)
//! str     action
//! str     resource_type
//! str     resource_id
//! str     trace_id           (only if flag bit 1)
//! bytes   before             compact JSON text; empty means JSON null
//! bytes   after              compact JSON text; empty means JSON null
//! bytes   metadata           compact JSON text; empty means JSON null
//! u8      pii_count          0..=MAX_PII_SLOTS
//! slot × pii_count           u8 field: 1 ip, 2 user_agent, 3 session_id, 4 JSON pointer
//!                            (field 4 is followed by a str: the RFC 6901 pointer)
//! [32]    pii_root           only if pii_count > 0
//! ```
//! Openings (outside the chain; rewritten by erasure):
//! ```text
//! (empty when pii_count = 0)
//! u8 kind = 0 (seeded):   [16] salt_seed, then pii_count × bytes value
//! u8 kind = 1 (explicit): pii_count × ( u8 0, [16] salt, bytes value   -- still open
//!                                     | u8 1, [32] commitment )        -- erased
//! ```
//! `str` and `bytes` are a LEB128 length followed by that many bytes; `str` must be UTF-8.

use super::codec::{Reader, put_bytes};
use super::{DecodeError, DecodeErrorKind};
use crate::crypto::Hash;

/// Most personal-data slots one event may have.
pub const MAX_PII_SLOTS: usize = 32;

const SEALED: &str = "event body";
const OPENINGS: &str = "openings";

/// Which part of an event a personal-data slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PiiField<S> {
    /// `ip`.
    Ip,
    /// `user_agent`.
    UserAgent,
    /// `session_id`.
    SessionId,
    /// A value inside `before`, `after` or `metadata`, named by an RFC 6901 JSON pointer
    /// rooted at the event (`/after/email`).
    Json(S),
}

/// The sealed event body, borrowing its strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBody<'a> {
    /// Acting user; `None` for system actions.
    pub user_id: Option<&'a str>,
    /// `domain.action`.
    pub action: &'a str,
    /// Resource type.
    pub resource_type: &'a str,
    /// Resource id.
    pub resource_id: &'a str,
    /// Trace id.
    pub trace_id: Option<&'a str>,
    /// JSON text of `before` (empty for null), with personal-data values replaced by null.
    pub before: &'a [u8],
    /// JSON text of `after`, likewise.
    pub after: &'a [u8],
    /// JSON text of `metadata`, likewise.
    pub metadata: &'a [u8],
    /// Personal-data slots, in commitment order.
    pub pii: Vec<PiiField<&'a str>>,
    /// Commitment over all slots; present exactly when `pii` is non-empty.
    pub pii_root: Option<Hash>,
}

/// One slot's opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening<'a> {
    /// The value and the salt that opens its commitment.
    Open {
        /// 128-bit salt.
        salt: [u8; 16],
        /// The plaintext value.
        value: &'a [u8],
    },
    /// Erased: only the commitment remains.
    Erased {
        /// SHA-256 commitment of the erased value.
        commitment: Hash,
    },
}

/// The openings section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Openings<'a> {
    /// No personal data.
    None,
    /// All slots open; salts derive from one seed.
    Seeded {
        /// 128-bit random seed.
        seed: [u8; 16],
        /// One value per slot.
        values: Vec<&'a [u8]>,
    },
    /// Per-slot openings, after an erasure.
    Explicit(Vec<Opening<'a>>),
}

const FLAG_USER: u8 = 1;
const FLAG_TRACE: u8 = 2;

impl<'a> SealedBody<'a> {
    /// Appends the encoded body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let flags = u8::from(self.user_id.is_some()) * FLAG_USER
            + u8::from(self.trace_id.is_some()) * FLAG_TRACE;
        out.push(flags);
        if let Some(u) = self.user_id {
            put_bytes(out, u.as_bytes());
        }
        put_bytes(out, self.action.as_bytes());
        put_bytes(out, self.resource_type.as_bytes());
        put_bytes(out, self.resource_id.as_bytes());
        if let Some(t) = self.trace_id {
            put_bytes(out, t.as_bytes());
        }
        put_bytes(out, self.before);
        put_bytes(out, self.after);
        put_bytes(out, self.metadata);
        out.push(self.pii.len() as u8);
        for slot in &self.pii {
            match slot {
                PiiField::Ip => out.push(1),
                PiiField::UserAgent => out.push(2),
                PiiField::SessionId => out.push(3),
                PiiField::Json(p) => {
                    out.push(4);
                    put_bytes(out, p.as_bytes());
                }
            }
        }
        if let Some(root) = &self.pii_root {
            out.extend_from_slice(&root.0);
        }
    }

    /// Decodes a sealed body that occupies all of `buf` (at file offset `base`).
    pub fn decode(buf: &'a [u8], base: u64) -> Result<SealedBody<'a>, DecodeError> {
        let mut r = Reader::new(buf, base, SEALED);
        let flags = r.u8("flags")?;
        if flags & !(FLAG_USER | FLAG_TRACE) != 0 {
            return Err(r.error_in_last("flags", DecodeErrorKind::Invalid("unknown flag bits")));
        }
        let user_id = if flags & FLAG_USER != 0 {
            Some(r.str("user_id")?)
        } else {
            None
        };
        let action = r.str("action")?;
        let resource_type = r.str("resource_type")?;
        let resource_id = r.str("resource_id")?;
        let trace_id = if flags & FLAG_TRACE != 0 {
            Some(r.str("trace_id")?)
        } else {
            None
        };
        let before = r.bytes("before")?;
        let after = r.bytes("after")?;
        let metadata = r.bytes("metadata")?;
        let count = usize::from(r.u8("pii_count")?);
        if count > MAX_PII_SLOTS {
            return Err(r.error_in_last(
                "pii_count",
                DecodeErrorKind::BadLength {
                    found: count as u64,
                    min: 0,
                    max: MAX_PII_SLOTS as u64,
                },
            ));
        }
        let mut pii = Vec::with_capacity(count);
        for _ in 0..count {
            pii.push(match r.u8("pii_field")? {
                1 => PiiField::Ip,
                2 => PiiField::UserAgent,
                3 => PiiField::SessionId,
                4 => PiiField::Json(r.str("pii_pointer")?),
                _ => {
                    return Err(r.error_in_last(
                        "pii_field",
                        DecodeErrorKind::Invalid("unknown field code"),
                    ));
                }
            });
        }
        let pii_root = if count > 0 {
            Some(Hash(r.array("pii_root")?))
        } else {
            None
        };
        r.finish("end of body")?;
        Ok(SealedBody {
            user_id,
            action,
            resource_type,
            resource_id,
            trace_id,
            before,
            after,
            metadata,
            pii,
            pii_root,
        })
    }
}

impl<'a> Openings<'a> {
    /// Appends the encoded openings to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Openings::None => {}
            Openings::Seeded { seed, values } => {
                out.push(0);
                out.extend_from_slice(seed);
                for v in values {
                    put_bytes(out, v);
                }
            }
            Openings::Explicit(slots) => {
                out.push(1);
                for slot in slots {
                    match slot {
                        Opening::Open { salt, value } => {
                            out.push(0);
                            out.extend_from_slice(salt);
                            put_bytes(out, value);
                        }
                        Opening::Erased { commitment } => {
                            out.push(1);
                            out.extend_from_slice(&commitment.0);
                        }
                    }
                }
            }
        }
    }

    /// Decodes openings for a body with `count` slots from all of `buf`.
    pub fn decode(buf: &'a [u8], base: u64, count: usize) -> Result<Openings<'a>, DecodeError> {
        let mut r = Reader::new(buf, base, OPENINGS);
        if count == 0 {
            r.finish("openings")?;
            return Ok(Openings::None);
        }
        let out = match r.u8("kind")? {
            0 => {
                let seed = r.array("salt_seed")?;
                let mut values = Vec::with_capacity(count.min(MAX_PII_SLOTS));
                for _ in 0..count {
                    values.push(r.bytes("value")?);
                }
                Openings::Seeded { seed, values }
            }
            1 => {
                let mut slots = Vec::with_capacity(count.min(MAX_PII_SLOTS));
                for _ in 0..count {
                    slots.push(match r.u8("state")? {
                        0 => Opening::Open {
                            salt: r.array("salt")?,
                            value: r.bytes("value")?,
                        },
                        1 => Opening::Erased {
                            commitment: Hash(r.array("commitment")?),
                        },
                        _ => {
                            return Err(r.error_in_last(
                                "state",
                                DecodeErrorKind::Invalid("unknown opening state"),
                            ));
                        }
                    });
                }
                Openings::Explicit(slots)
            }
            _ => {
                return Err(
                    r.error_in_last("kind", DecodeErrorKind::Invalid("unknown openings kind"))
                );
            }
        };
        r.finish("end of openings")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SealedBody<'static> {
        SealedBody {
            user_id: Some("user-1"),
            action: "booking.created",
            resource_type: "booking",
            resource_id: "bk_1",
            trace_id: None,
            before: b"",
            after: br#"{"email":null,"guests":4}"#,
            metadata: b"{}",
            pii: vec![PiiField::Ip, PiiField::Json("/after/email")],
            pii_root: Some(Hash([3; 32])),
        }
    }

    #[test]
    fn body_round_trip() {
        let b = sample();
        let mut out = Vec::new();
        b.encode(&mut out);
        assert_eq!(SealedBody::decode(&out, 0).ok(), Some(b));
    }

    #[test]
    fn openings_round_trip() {
        for o in [
            Openings::Seeded {
                seed: [1; 16],
                values: vec![b"10.0.0.1", br#""a@b.c""#],
            },
            Openings::Explicit(vec![
                Opening::Open {
                    salt: [2; 16],
                    value: b"10.0.0.1",
                },
                Opening::Erased {
                    commitment: Hash([4; 32]),
                },
            ]),
        ] {
            let mut out = Vec::new();
            o.encode(&mut out);
            assert_eq!(Openings::decode(&out, 0, 2).ok(), Some(o));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0usize..40) {
            let _ = SealedBody::decode(&bytes, 0);
            let _ = Openings::decode(&bytes, 0, n);
        }
    }
}
