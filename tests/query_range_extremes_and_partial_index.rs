//! Against a filter over every appended event: times at both ends of the supported range
//! (1970-01 and 9999-12) and across a year boundary, out of order, appended over several
//! sessions, the last one live with its index rewritten every 4 KiB (an indexed prefix
//! and a hint-passed tail, out-of-order events on both sides of covered_len); filters
//! combined, action prefixes of every depth (an 8-segment action too), resource types
//! unrelated to the action, limits, reverse, verified and not, through a reader and
//! through the writer itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::manual_is_multiple_of,
    missing_docs
)]

mod support;

use std::sync::Arc;

use auditlog::{Event, Keyring, Log, Month, Options, Timestamp};
use support::{keys_for, org, ts};

const USERS: &[Option<&str>] = &[Some("alice"), Some("bob"), None, Some("carol")];
const ACTIONS: &[&str] = &[
    "booking.created",
    "booking.cancelled",
    "payment.refunded",
    "channel_sync.booking.imported",
    "channel_sync.space.pushed",
    "a.b.c.d.e.f.g.h",
];
const TYPES: &[&str] = &["booking", "payment", "space"];
const IDS: &[&str] = &["r0", "r1", "r2", "r3"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn ev(o: &str, at: Timestamp, r: &mut Rng, n: usize) -> Event {
    Event {
        org_id: o.into(),
        occurred_at: at,
        user_id: r.pick(USERS).map(str::to_string),
        action: r.pick(ACTIONS).into(),
        resource_type: r.pick(TYPES).into(),
        resource_id: r.pick(IDS).into(),
        before: serde_json::Value::Null,
        after: serde_json::json!({"n": n, "pad": "x".repeat((n * 37) % 300)}),
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: if r.next() % 3 == 0 {
            Some(format!("tr-{}", r.next() % 3))
        } else {
            None
        },
        metadata: serde_json::Value::Null,
    }
}

#[derive(Clone, Debug, Default)]
struct Q {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    user: Option<&'static str>,
    action: Option<String>,
    rtype: Option<&'static str>,
    rid: Option<&'static str>,
    trace: Option<String>,
    limit: Option<u64>,
    reverse: bool,
    verify: bool,
}

fn brute(all: &[(Event, Month, u64)], q: &Q) -> Vec<(Timestamp, u64)> {
    let mut v: Vec<_> = all
        .iter()
        .filter(|(e, _, _)| {
            q.since.is_none_or(|s| e.occurred_at >= s)
                && q.until.is_none_or(|u| e.occurred_at < u)
                && q.user.is_none_or(|u| e.user_id.as_deref() == Some(u))
                && q.action.as_ref().is_none_or(|a| match a.strip_suffix('*') {
                    Some(p) => e.action.starts_with(p),
                    None => e.action == *a,
                })
                && q.rtype.is_none_or(|t| e.resource_type == t)
                && q.rid.is_none_or(|t| e.resource_id == t)
                && q.trace
                    .as_ref()
                    .is_none_or(|t| e.trace_id.as_ref() == Some(t))
        })
        .map(|(e, _, s)| (e.occurred_at, *s))
        .collect();
    v.sort();
    if q.reverse {
        v.reverse();
    }
    if let Some(l) = q.limit {
        v.truncate(l as usize);
    }
    v
}

fn run(log: &Log, o: &str, q: &Q) -> Vec<(Timestamp, u64)> {
    let mut b = log.query(&org(o));
    if let Some(s) = q.since {
        b = b.since(s);
    }
    if let Some(s) = q.until {
        b = b.until(s);
    }
    if let Some(s) = q.user {
        b = b.user(s);
    }
    if let Some(s) = &q.action {
        b = b.action(s);
    }
    if let Some(s) = q.rtype {
        b = b.resource_type(s);
    }
    if let Some(s) = q.rid {
        b = b.resource_id(s);
    }
    if let Some(s) = &q.trace {
        b = b.trace(s);
    }
    if let Some(l) = q.limit {
        b = b.limit(l);
    }
    if q.reverse {
        b = b.reverse();
    }
    if !q.verify {
        b = b.unverified();
    }
    b.run()
        .unwrap()
        .map(|r| {
            let v = r.unwrap_or_else(|e| panic!("error item {e} for {q:?}"));
            (v.event.occurred_at, v.seq)
        })
        .collect()
}

fn queries(r: &mut Rng, times: &[Timestamp], n: usize) -> Vec<Q> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut q = Q {
            verify: r.next() % 5 != 0,
            reverse: r.next() % 2 == 0,
            ..Q::default()
        };
        if r.next() % 3 != 0 {
            q.since = Some(r.pick(times));
        }
        if r.next() % 3 != 0 {
            q.until = Some(r.pick(times));
        }
        if let (Some(a), Some(b)) = (q.since, q.until)
            && b < a
        {
            q.since = Some(b);
            q.until = Some(a);
        }
        if r.next() % 3 == 0 {
            q.user = r.pick(USERS);
        }
        if r.next() % 3 == 0 {
            let a = r.pick(ACTIONS);
            let segs: Vec<&str> = a.split('.').collect();
            let k = (r.next() as usize) % segs.len();
            q.action = Some(if k == 0 {
                a.to_string()
            } else {
                format!("{}.*", segs[..k].join("."))
            });
        }
        if r.next() % 4 == 0 {
            q.rtype = Some(r.pick(TYPES));
        }
        if r.next() % 4 == 0 {
            q.rid = Some(r.pick(IDS));
        }
        if r.next() % 6 == 0 {
            q.trace = Some(format!("tr-{}", r.next() % 3));
        }
        if r.next() % 4 == 0 {
            q.limit = Some(r.next() % 30);
        }
        out.push(q);
    }
    out
}

fn opts(keys: &Arc<Keyring>) -> Options {
    let mut o = support::never(keys);
    o.index_interval = 256;
    o.index_flush_bytes = 4096;
    o
}

/// Times at the ends of the supported range and across a year boundary, appended out of
/// order, in several sessions, the last one live with its index flushed every 4 KiB.
#[test]
fn extremes_year_boundary_and_live_partial_index_agree_with_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["o"]);
    let anchors = [
        "1970-01-01T00:00:00Z",
        "1970-01-31T23:59:59.999999Z",
        "2026-12-31T23:59:59.999999Z",
        "2027-01-01T00:00:00Z",
        "2027-01-15T12:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-01T00:00:00Z",
    ];
    let mut times: Vec<Timestamp> = Vec::new();
    for a in anchors {
        let t = ts(a).0;
        for d in [-7_200_000_000i64, -1, 0, 1, 3_600_000_000] {
            let x = Timestamp(t + d);
            if x.in_range() {
                times.push(x);
            }
        }
    }
    times.sort();
    times.dedup();
    let mut r = Rng(7);
    let mut all = Vec::new();
    let mut n = 0;
    let mut live = None;
    for session in 0..3 {
        let log = Log::open(dir.path(), opts(&keys)).unwrap();
        for _ in 0..12 {
            let batch: Vec<Event> = (0..(r.next() % 40 + 1))
                .map(|_| {
                    n += 1;
                    let t = r.pick(&times);
                    ev("o", t, &mut r, n)
                })
                .collect();
            let rec = log.append_batch(&batch).unwrap();
            for (e, rc) in batch.into_iter().zip(rec) {
                all.push((e, rc.month, rc.seq));
            }
        }
        if session == 2 {
            log.sync().unwrap();
            live = Some(log);
        } else {
            log.close().unwrap();
        }
    }
    let live = live.unwrap();
    let reader = Log::open_read_only(dir.path(), opts(&keys)).unwrap();
    let mut qt = times.clone();
    qt.push(Timestamp(i64::MIN + 1));
    qt.push(Timestamp(-1));
    qt.push(Timestamp(253_402_300_800_000_000));
    qt.push(Timestamp(i64::MAX));
    for (i, q) in queries(&mut Rng(99), &qt, 400).iter().enumerate() {
        let want = brute(&all, q);
        for log in [&reader, &live] {
            let got = run(log, "o", q);
            assert_eq!(got, want, "query {i} {q:?}");
        }
    }
}
