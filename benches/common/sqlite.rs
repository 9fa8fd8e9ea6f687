//! The SQLite peer of the append and verify benches (included with `#[path]`): one table
//! with a column for every event field, the four indexes of issue #5, WAL, and a hash chain
//! plus an HMAC-SHA256 column computed by the application for each row. `docs/BENCHMARKS.md`
//! ("The SQLite peer") describes it. `benches/query.rs` loads the same table and reads it
//! back with [`sql_select`], [`sql_check_read`] and [`sql_event`].
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use auditlog::Event;
use hmac::{KeyInit, Mac};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row as SqlRow, TransactionBehavior, params};
use sha2::{Digest, Sha256};

pub type HmacSha256 = hmac::Hmac<Sha256>;

pub const SQL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    org_id        TEXT NOT NULL,
    occurred_at   INTEGER NOT NULL,
    user_id       TEXT,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    before        TEXT,
    after         TEXT,
    ip            TEXT,
    user_agent    TEXT,
    session_id    TEXT,
    trace_id      TEXT,
    metadata      TEXT,
    hash          BLOB NOT NULL,
    hmac          BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_org_time ON events (org_id, occurred_at);
CREATE INDEX IF NOT EXISTS events_resource ON events (resource_type, resource_id);
CREATE INDEX IF NOT EXISTS events_user_time ON events (user_id, occurred_at);
CREATE INDEX IF NOT EXISTS events_action_time ON events (action, occurred_at);
";

pub const SQL_INSERT: &str = "INSERT INTO events (org_id, occurred_at, user_id, action, \
    resource_type, resource_id, before, after, ip, user_agent, session_id, trace_id, metadata, \
    hash, hmac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// `PRAGMA cache_size`: 256 MiB per connection (default is 2 MiB). Measured on this
/// machine: OFF, 1 thread, 1,000-row transactions go from ~21k to ~24k rows/s with it; the
/// random-key index makes every transaction dirty about one page per row anyway.
pub const SQL_CACHE_SIZE: i64 = -262_144;

pub const SQL_HMAC_KEY: &[u8; 32] = b"bench-only hmac key, 32 bytes!!!";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SqlSync {
    Full,
    Off,
}

pub fn sql_open(path: &Path, sync: SqlSync) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(60)).unwrap();
    conn.pragma_update(None, "cache_size", SQL_CACHE_SIZE)
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SqlSync::Full => "FULL",
            SqlSync::Off => "OFF",
        },
    )
    .unwrap();
    conn
}

pub fn sql_create(path: &Path) {
    let conn = sql_open(path, SqlSync::Full);
    conn.execute_batch(SQL_SCHEMA).unwrap();
}

/// An event turned into column values, plus the row bytes the chain hash covers (each
/// column length-prefixed, NULL marked): what the application computes before it writes.
pub struct Row {
    pub org_id: String,
    pub occurred_at: i64,
    pub user_id: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub metadata: Option<String>,
    pub bytes: Vec<u8>,
}

pub fn json_col(v: &serde_json::Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// Appends one column to the bytes the chain hash covers: its length (u32, little endian)
/// and its bytes, or `u32::MAX` for NULL.
pub fn put_col(b: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        }
        None => b.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// The column values of `e` and the row bytes the chain hash covers: every column in table
/// order, length-prefixed by [`put_col`], `occurred_at` as decimal text.
pub fn sql_row(e: &Event) -> Row {
    let mut row = Row {
        org_id: e.org_id.clone(),
        occurred_at: e.occurred_at.0,
        user_id: e.user_id.clone(),
        action: e.action.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        before: json_col(&e.before),
        after: json_col(&e.after),
        ip: e.ip.clone(),
        user_agent: e.user_agent.clone(),
        session_id: e.session_id.clone(),
        trace_id: e.trace_id.clone(),
        metadata: json_col(&e.metadata),
        bytes: Vec::new(),
    };
    let mut b = Vec::with_capacity(1024);
    let mut put = |s: Option<&str>| put_col(&mut b, s.map(str::as_bytes));
    put(Some(&row.org_id));
    put(Some(&row.occurred_at.to_string()));
    put(row.user_id.as_deref());
    put(Some(&row.action));
    put(Some(&row.resource_type));
    put(Some(&row.resource_id));
    put(row.before.as_deref());
    put(row.after.as_deref());
    put(row.ip.as_deref());
    put(row.user_agent.as_deref());
    put(row.session_id.as_deref());
    put(row.trace_id.as_deref());
    put(row.metadata.as_deref());
    row.bytes = b;
    row
}

/// One transaction: take the write lock, read the chain head, chain + sign + insert `rows`,
/// commit.
pub fn sql_commit(conn: &mut Connection, rows: &[Row], mac: &HmacSha256) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    {
        let mut prev: [u8; 32] = tx
            .query_row(
                "SELECT hash FROM events ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .unwrap()
            .map_or([0; 32], |h| h.try_into().unwrap());
        let mut stmt = tx.prepare_cached(SQL_INSERT).unwrap();
        for r in rows {
            let hash: [u8; 32] = Sha256::new()
                .chain_update(prev)
                .chain_update(&r.bytes)
                .finalize()
                .into();
            let mut m = mac.clone();
            m.update(&hash);
            let tag: [u8; 32] = m.finalize().into_bytes().into();
            stmt.execute(params![
                r.org_id,
                r.occurred_at,
                r.user_id,
                r.action,
                r.resource_type,
                r.resource_id,
                r.before,
                r.after,
                r.ip,
                r.user_agent,
                r.session_id,
                r.trace_id,
                r.metadata,
                &hash[..],
                &tag[..],
            ])
            .unwrap();
            prev = hash;
        }
    }
    tx.commit().unwrap();
}

pub fn sql_mac() -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(SQL_HMAC_KEY).unwrap()
}

// ---------------------------------------------------------------------------------------
// Re-verification of the whole table
// ---------------------------------------------------------------------------------------

/// What a re-verification of the table found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SqlVerified {
    pub rows: u64,
    /// Ids of the rows whose recomputed chain hash or HMAC does not match, ascending.
    pub bad: Vec<i64>,
}

const SQL_VERIFY_COLS: &str = "SELECT id, org_id, occurred_at, user_id, action, resource_type, \
    resource_id, before, after, ip, user_agent, session_id, trace_id, metadata, hash, hmac \
    FROM events";

/// A connection as a verification job would open it: SQLite's defaults. Not the writers'
/// 256 MiB `cache_size`: a single pass reuses nothing, and with the default 2 MiB cache page
/// buffers are recycled instead of allocated and faulted in (measured: the same speed on one
/// thread, faster on two).
pub fn sql_open_reader(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(60)).unwrap();
    conn
}

/// Re-verifies the whole table as an application holding the HMAC key must: reads every
/// row in chain order (`ORDER BY id`, the rowid), rebuilds the row bytes from the columns
/// exactly as [`sql_row`] did, recomputes `hash = SHA-256(previous hash ‖ row bytes)` (the
/// first row's previous hash is 32 zero bytes) and `HMAC-SHA256(key, hash)`, and compares
/// both with the stored columns. A mismatch is noted and the walk continues from the stored
/// hash, so one altered or deleted row is one finding.
///
/// `threads` > 1 splits the id range into that many equal parts, each walked by its own
/// connection on its own thread from the stored hash of the row before it; the links at the
/// boundaries are still checked (each part's first row chains from that stored hash, whose
/// own row is checked by the part before). One thread is the plain sequential walk.
pub fn sql_verify(path: &Path, threads: usize) -> SqlVerified {
    let mac = sql_mac();
    if threads <= 1 {
        let conn = sql_open_reader(path);
        let mut stmt = conn
            .prepare(&format!("{SQL_VERIFY_COLS} ORDER BY id"))
            .unwrap();
        return verify_rows(stmt.query([]).unwrap(), [0; 32], &mac);
    }
    let max_id: i64 = {
        let conn = sql_open_reader(path);
        conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    let per = ((max_id + threads as i64 - 1) / threads as i64).max(1);
    let parts: Vec<SqlVerified> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as i64)
            .map(|t| {
                let (lo, hi) = (t * per, (t + 1) * per);
                let mac = &mac;
                s.spawn(move || {
                    let conn = sql_open_reader(path);
                    let prev: [u8; 32] = conn
                        .query_row(
                            "SELECT hash FROM events WHERE id <= ?1 ORDER BY id DESC LIMIT 1",
                            [lo],
                            |r| r.get::<_, Vec<u8>>(0),
                        )
                        .optional()
                        .unwrap()
                        .and_then(|h| h.try_into().ok())
                        .unwrap_or([0; 32]);
                    let mut stmt = conn
                        .prepare(&format!(
                            "{SQL_VERIFY_COLS} WHERE id > ?1 AND id <= ?2 ORDER BY id"
                        ))
                        .unwrap();
                    verify_rows(stmt.query([lo, hi]).unwrap(), prev, mac)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = SqlVerified::default();
    for p in parts {
        out.rows += p.rows;
        out.bad.extend(p.bad);
    }
    out
}

/// A text column's bytes; `Err` for a value the writer never stores there.
fn text<'a>(r: &'a SqlRow<'_>, i: usize) -> Result<Option<&'a [u8]>, ()> {
    match r.get_ref_unwrap(i) {
        ValueRef::Text(b) => Ok(Some(b)),
        ValueRef::Null => Ok(None),
        _ => Err(()),
    }
}

/// Rebuilds into `bytes` the row bytes the chain hash covers, from columns 1..=13 of `r`
/// (`org_id` … `metadata` in table order, as [`SQL_VERIFY_COLS`] and [`SQL_ROW_COLS`] select
/// them), exactly as [`sql_row`] built them. `false` if a column holds a type the writer never
/// stores there.
fn row_bytes(r: &SqlRow<'_>, bytes: &mut Vec<u8>, ts: &mut String) -> bool {
    bytes.clear();
    let mut well_typed = true;
    for i in 1..=13 {
        if i == 2 {
            // occurred_at: an INTEGER column, chained as its decimal text.
            match r.get_ref_unwrap(i) {
                ValueRef::Integer(v) => {
                    ts.clear();
                    write!(ts, "{v}").unwrap();
                    put_col(bytes, Some(ts.as_bytes()));
                }
                _ => well_typed = false,
            }
            continue;
        }
        match text(r, i) {
            Ok(v) => put_col(bytes, v),
            Err(()) => well_typed = false,
        }
    }
    well_typed
}

/// The check both readers do: `hash = SHA-256(prev ‖ row bytes)` must equal the stored
/// `hash` (column 14) and `HMAC-SHA256(key, hash)` the stored `hmac` (column 15). Returns
/// whether it holds and the row's stored hash (the recomputed one if none is stored), which
/// the next row chains from.
fn check_row(
    r: &SqlRow<'_>,
    prev: &[u8; 32],
    well_typed: bool,
    bytes: &[u8],
    mac: &HmacSha256,
) -> (bool, [u8; 32]) {
    let hash: [u8; 32] = Sha256::new()
        .chain_update(prev)
        .chain_update(bytes)
        .finalize()
        .into();
    let stored = r.get_ref_unwrap(14).as_blob().ok();
    let tag = r.get_ref_unwrap(15).as_blob().ok();
    let mut m = mac.clone();
    m.update(&hash);
    let ok =
        well_typed && stored == Some(&hash[..]) && tag.is_some_and(|t| m.verify_slice(t).is_ok());
    (ok, stored.and_then(|s| s.try_into().ok()).unwrap_or(hash))
}

fn verify_rows(mut rows: rusqlite::Rows<'_>, mut prev: [u8; 32], mac: &HmacSha256) -> SqlVerified {
    let mut out = SqlVerified::default();
    let mut bytes = Vec::with_capacity(4096);
    let mut ts = String::with_capacity(24);
    while let Some(r) = rows.next().unwrap() {
        out.rows += 1;
        let id: i64 = r.get_unwrap(0);
        let well_typed = row_bytes(r, &mut bytes, &mut ts);
        let (ok, next) = check_row(r, &prev, well_typed, &bytes, mac);
        if !ok {
            out.bad.push(id);
        }
        prev = next;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reading rows back (the query bench)
// ---------------------------------------------------------------------------------------

/// The row's id and its columns in table order (`org_id` … `metadata`, indexes 1..=13), as
/// [`row_bytes`] and [`sql_event`] expect them; the table is aliased `e`.
pub const SQL_ROW_COLS: &str = "e.id, e.org_id, e.occurred_at, e.user_id, e.action, \
    e.resource_type, e.resource_id, e.before, e.after, e.ip, e.user_agent, e.session_id, \
    e.trace_id, e.metadata";

/// The query an application would write for the rows of `events AS e` matching `filter`,
/// oldest first (`ORDER BY e.occurred_at, e.id`: the order of the `(…, occurred_at)` indexes,
/// whose entries end with the rowid, so no sort is needed).
///
/// With `checked`, each row also brings its `hash` and `hmac` (columns 14, 15) and the stored
/// `hash` of the row before it in the chain (column 16, NULL for the first row): `LEFT JOIN
/// events AS p ON p.id = e.id - 1`, one rowid lookup per row. That is what re-checking a row
/// read out of range needs: its chain hash is SHA-256(previous hash ‖ row bytes). A deleted
/// row leaves a gap in the ids, so the row after it gets NULL and fails the check.
pub fn sql_select(filter: &str, checked: bool) -> String {
    if checked {
        format!(
            "SELECT {SQL_ROW_COLS}, e.hash, e.hmac, p.hash FROM events AS e \
             LEFT JOIN events AS p ON p.id = e.id - 1 \
             WHERE {filter} ORDER BY e.occurred_at, e.id"
        )
    } else {
        format!(
            "SELECT {SQL_ROW_COLS} FROM events AS e WHERE {filter} ORDER BY e.occurred_at, e.id"
        )
    }
}

/// Checks one row of a `checked` [`sql_select`] as [`sql_verify`] checks it in its walk:
/// rebuilds the row bytes from the columns, recomputes `hash = SHA-256(previous row's stored
/// hash ‖ row bytes)` and `HMAC-SHA256(key, hash)`, and compares both with the stored
/// columns. `bytes` and `ts` are scratch buffers reused across rows.
pub fn sql_check_read(
    r: &SqlRow<'_>,
    mac: &HmacSha256,
    bytes: &mut Vec<u8>,
    ts: &mut String,
) -> bool {
    let well_typed = row_bytes(r, bytes, ts);
    let prev: [u8; 32] = match r.get_ref_unwrap(16) {
        ValueRef::Blob(b) => match b.try_into() {
            Ok(p) => p,
            Err(_) => return false,
        },
        // No row before: only the table's first row chains from 32 zero bytes.
        ValueRef::Null if r.get_unwrap::<_, i64>(0) == 1 => [0; 32],
        _ => return false,
    };
    check_row(r, &prev, well_typed, bytes, mac).0
}

/// The [`Event`] a row of [`sql_select`] holds: its text columns copied, `before`, `after`
/// and `metadata` parsed from their JSON (what a caller gets from `Query::run()`).
pub fn sql_event(r: &SqlRow<'_>) -> Event {
    let text = |i: usize| -> Option<String> {
        r.get_ref_unwrap(i)
            .as_str_or_null()
            .unwrap()
            .map(str::to_owned)
    };
    let json = |i: usize| -> serde_json::Value {
        r.get_ref_unwrap(i)
            .as_str_or_null()
            .unwrap()
            .map_or(serde_json::Value::Null, |s| {
                serde_json::from_str(s).unwrap()
            })
    };
    Event {
        org_id: text(1).unwrap(),
        occurred_at: auditlog::Timestamp(r.get_unwrap(2)),
        user_id: text(3),
        action: text(4).unwrap(),
        resource_type: text(5).unwrap(),
        resource_id: text(6).unwrap(),
        before: json(7),
        after: json(8),
        ip: text(9),
        user_agent: text(10),
        session_id: text(11),
        trace_id: text(12),
        metadata: json(13),
    }
}
