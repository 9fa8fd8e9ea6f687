//! # auditlog
//!
//! An embedded, append-only, tamper-evident log for compliance-grade audit events.
//!
//! Events are filed per organisation and per UTC month into segment files. Every record is
//! hash-chained (SHA-256) and tagged (HMAC-SHA256 under an org key that can rotate); every
//! segment has a signed sidecar index; personal data sits behind salted commitments so that
//! a later erasure can remove it without breaking the chain or the tags (this build writes
//! no erasure, and `verify` reports an erased slot: see FORMAT.md §2.4).
//!
//! ```no_run
//! use std::sync::Arc;
//! use auditlog::{Event, Keyring, Log, Options, OrgId, Timestamp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Arc::new(Keyring::open_or_create("keys.json")?);
//! keys.rotate_if_due(&OrgId::new("acme")?, Timestamp::now(), Default::default())?;
//! let log = Log::open("audit", Options::new(keys))?;
//! let receipt = log.append(&Event {
//!     org_id: "acme".into(),
//!     occurred_at: Timestamp::now(),
//!     user_id: Some("user-42".into()),
//!     action: "booking.created".into(),
//!     resource_type: "booking".into(),
//!     resource_id: "bk_1".into(),
//!     before: serde_json::Value::Null,
//!     after: serde_json::json!({"guests": 4}),
//!     ip: Some("203.0.113.9".into()),
//!     user_agent: None,
//!     session_id: None,
//!     trace_id: None,
//!     metadata: serde_json::Value::Null,
//! })?;
//! println!("durable as seq {} of {}", receipt.seq, receipt.month);
//! log.close()?;
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//! - With [`Durability::Always`] (the default) an append returns only after its record is
//!   fsynced; concurrent appends share fsyncs. See [`Durability`] for the weaker modes.
//! - After a crash, [`Log::open`] keeps every complete record, moves a torn tail to
//!   `quarantine/` before cutting it, and never cuts damage that is followed by valid records.
//! - After a failed write or fsync a segment refuses appends until the log is reopened.
//! - Nothing read from disk, the CLI or the API panics; errors say file, offset and seq.
//!
//! This crate does not: replicate, encrypt at rest, or protect against an attacker holding the
//! HMAC key (see `docs/SECURITY.md`).

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod checkpoint;
pub mod crypto;
mod entry;
pub mod error;
pub mod event;
pub mod format;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
mod json;
pub(crate) mod log;
pub mod query;
pub mod segment;
pub mod time;
pub mod verify;
pub mod workload;

pub use crypto::{Hash, Key, KeyError, KeyId, KeyProvider, Keyring, RotationPolicy};
pub use error::{Error, IntegrityKind, Result};
pub use event::{Event, InvalidField, OrgId, REDACTED, VerifiedEvent};
pub use log::{Durability, LOCK_FILE, Log, MonthStats, Options, RecoveryAction, Scan};
pub use query::{Cursor, EventFields, EventRef, Matches, Query, QueryStats};
pub use segment::read::SegmentReader;
pub use segment::stats::{DamageKind, StatsDamage};
pub use segment::writer::Receipt;
pub use time::{Month, Timestamp};
