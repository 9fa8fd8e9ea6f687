//! Differential property test of the query layer: random logs (several orgs, times spread
//! over month boundaries, out of order, many equal times, written over several sessions
//! and sometimes still being written) and random queries; every query returns exactly what
//! a filter over all appended events returns, in `(occurred_at, seq)` order (or reversed),
//! with no error items. Variants: verified and unverified, `run()` and `cursor()`, one or
//! two reading threads, a tiny buffer limit (spilling), planning groups of 1–3 blocks (many
//! groups and rounds per month) or the default, an index file damaged or removed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::sync::Arc;

use auditlog::{Durability, Event, Keyring, Log, Month, Options, OrgId, Timestamp};
use proptest::prelude::*;
use support::{event, keys_for, org, ts};

const ORGS: &[&str] = &["a", "b", "c"];
const USERS: &[&str] = &["u0", "u1", "u2", "u3"];
const ACTIONS: &[&str] = &[
    "booking.created",
    "booking.cancelled",
    "payment.refunded",
    "channel_sync.booking.imported",
    "channel_sync.space.pushed",
];
const IDS: &[&str] = &["r0", "r1", "r2"];

/// One appended event and where it landed.
#[derive(Clone, Debug)]
struct Written {
    event: Event,
    month: Month,
    seq: u64,
}

#[derive(Clone, Debug)]
struct Spec {
    org: usize,
    /// Index into the time pool.
    t: usize,
    user: Option<usize>,
    action: usize,
    id: usize,
}

fn time_pool() -> Vec<Timestamp> {
    // Around two month boundaries, with exact boundaries and repeats.
    let mut v = Vec::new();
    for base in ["2026-01-31T22:00:00Z", "2026-03-01T00:00:00Z"] {
        let b = ts(base).0;
        for k in -6i64..=6 {
            v.push(Timestamp(b + k * 1_800_000_000));
        }
        v.push(Timestamp(b - 1));
    }
    v.push(ts("2026-02-15T12:00:00Z"));
    v.push(ts("2026-04-30T23:59:59.999999Z"));
    v.push(ts("2026-05-01T00:00:00Z"));
    v.sort();
    v.dedup();
    v
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..ORGS.len(),
        0..time_pool().len(),
        proptest::option::weighted(0.85, 0..USERS.len()),
        0..ACTIONS.len(),
        0..IDS.len(),
    )
        .prop_map(|(org, t, user, action, id)| Spec {
            org,
            t,
            user,
            action,
            id,
        })
}

fn make(s: &Spec, pool: &[Timestamp], n: usize) -> Event {
    let mut e = event(
        ORGS[s.org],
        pool[s.t],
        s.user.map(|u| USERS[u]),
        ACTIONS[s.action],
        IDS[s.id],
    );
    e.metadata = serde_json::json!({ "n": n });
    e
}

#[derive(Clone, Debug)]
struct Q {
    org: usize,
    since: Option<usize>,
    until: Option<usize>,
    user: Option<usize>,
    action: Option<(usize, bool)>,
    resource_type: Option<usize>,
    id: Option<usize>,
    trace: Option<u8>,
    limit: Option<u64>,
    reverse: bool,
    verify: bool,
    cursor: bool,
    threads: usize,
    tiny_buffer: bool,
    batch: u64,
    /// Blocks per planning group (rounds hold four groups' worth).
    plan: u64,
}

fn query() -> impl Strategy<Value = Q> {
    let pool = time_pool().len();
    (
        (
            0..ORGS.len(),
            proptest::option::of(0..pool),
            proptest::option::of(0..pool),
            proptest::option::weighted(0.4, 0..USERS.len()),
            proptest::option::weighted(0.4, (0..ACTIONS.len(), any::<bool>())),
            proptest::option::weighted(0.2, 0..ACTIONS.len()),
            proptest::option::weighted(0.3, 0..IDS.len()),
            proptest::option::weighted(0.1, 0u8..7),
        ),
        (
            proptest::option::weighted(0.3, 0u64..20),
            any::<bool>(),
            proptest::bool::weighted(0.8),
            any::<bool>(),
            1usize..=3,
            proptest::bool::weighted(0.2),
            prop_oneof![Just(1u64), Just(700), Just(1 << 20)],
            prop_oneof![Just(1u64), Just(2), Just(3), Just(4096)],
        ),
    )
        .prop_map(
            |(
                (org, since, until, user, action, resource_type, id, trace),
                (limit, reverse, verify, cursor, threads, tiny_buffer, batch, plan),
            )| {
                // Until before since is an error case tested elsewhere.
                let (since, until) = match (since, until) {
                    (Some(a), Some(b)) if b < a => (Some(b), Some(a)),
                    x => x,
                };
                Q {
                    org,
                    since,
                    until,
                    user,
                    action,
                    resource_type,
                    id,
                    trace,
                    limit,
                    reverse,
                    verify,
                    cursor,
                    threads,
                    tiny_buffer,
                    batch,
                    plan,
                }
            },
        )
}

fn action_pattern(a: usize, prefix: bool) -> String {
    let full = ACTIONS[a];
    if prefix {
        let cut = full.rfind('.').unwrap();
        format!("{}.*", &full[..cut])
    } else {
        full.to_string()
    }
}

fn brute(all: &[Written], q: &Q, pool: &[Timestamp]) -> Vec<(Timestamp, Month, u64, Event)> {
    let mut v: Vec<_> = all
        .iter()
        .filter(|w| {
            let e = &w.event;
            e.org_id == ORGS[q.org]
                && q.since.is_none_or(|s| e.occurred_at >= pool[s])
                && q.until.is_none_or(|u| e.occurred_at < pool[u])
                && q.user
                    .is_none_or(|u| e.user_id.as_deref() == Some(USERS[u]))
                && q.action.is_none_or(|(a, p)| {
                    let pat = action_pattern(a, p);
                    match pat.strip_suffix('*') {
                        Some(pre) => e.action.starts_with(pre),
                        None => e.action == pat,
                    }
                })
                && q.resource_type
                    .is_none_or(|r| e.resource_type == ACTIONS[r].split('.').next().unwrap())
                && q.id.is_none_or(|i| e.resource_id == IDS[i])
                && q.trace
                    .is_none_or(|t| e.trace_id.as_deref() == Some(format!("tr-{t}").as_str()))
        })
        .map(|w| (w.event.occurred_at, w.month, w.seq, w.event.clone()))
        .collect();
    v.sort_by_key(|(t, _, s, _)| (*t, *s));
    if q.reverse {
        v.reverse();
    }
    if let Some(l) = q.limit {
        v.truncate(l as usize);
    }
    v
}

fn run(
    log: &Log,
    q: &Q,
    pool: &[Timestamp],
) -> (Vec<(Timestamp, Month, u64, Event)>, auditlog::QueryStats) {
    let o = org(ORGS[q.org]);
    let mut b = log
        .query(&o)
        .threads(q.threads)
        .batch_bytes(q.batch)
        .plan_blocks(q.plan);
    if let Some(s) = q.since {
        b = b.since(pool[s]);
    }
    if let Some(u) = q.until {
        b = b.until(pool[u]);
    }
    if let Some(u) = q.user {
        b = b.user(USERS[u]);
    }
    if let Some((a, p)) = q.action {
        b = b.action(&action_pattern(a, p));
    }
    if let Some(r) = q.resource_type {
        b = b.resource_type(ACTIONS[r].split('.').next().unwrap());
    }
    if let Some(i) = q.id {
        b = b.resource_id(IDS[i]);
    }
    if let Some(t) = q.trace {
        b = b.trace(&format!("tr-{t}"));
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
    if q.tiny_buffer {
        b = b.buffer_limit(1);
    }
    let mut out = Vec::new();
    if q.cursor {
        let mut c = b.cursor().unwrap();
        while let Some(item) = c.next_ref() {
            let r = item.unwrap_or_else(|e| panic!("error item: {e}"));
            let ev = r.to_event().unwrap();
            assert_eq!(ev.seq, r.seq());
            let f = r.fields().unwrap();
            assert_eq!(ev.event.action, f.action);
            assert_eq!(ev.event.user_id.as_deref(), f.user_id);
            assert_eq!(ev.event.resource_type, f.resource_type);
            assert_eq!(ev.event.resource_id, f.resource_id);
            assert_eq!(ev.event.trace_id.as_deref(), f.trace_id);
            assert_eq!(ev.hash, r.hash());
            out.push((r.occurred_at(), r.month(), r.seq(), ev.event));
        }
        (out, c.stats().clone())
    } else {
        let mut m = b.run().unwrap();
        for item in m.by_ref() {
            let v = item.unwrap_or_else(|e| panic!("error item: {e}"));
            out.push((v.event.occurred_at, v.month, v.seq, v.event));
        }
        (out, m.stats().clone())
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    /// Flip one byte of one index file.
    FlipIndex(usize, usize),
    /// Delete one index file.
    DropIndex(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(f, b)| Damage::FlipIndex(f, b)),
        1 => any::<usize>().prop_map(Damage::DropIndex),
    ]
}

fn index_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for o in ORGS {
        if let Ok(rd) = std::fs::read_dir(dir.join(o)) {
            for e in rd {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "idx") {
                    v.push(p);
                }
            }
        }
    }
    v.sort();
    v
}

fn opts(keys: &Arc<Keyring>) -> Options {
    let mut o = Options::new(keys.clone()).durability(Durability::Never);
    o.index_interval = 256;
    o
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("QUERY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), .. ProptestConfig::default() })]

    #[test]
    fn queries_equal_brute_force(
        sessions in proptest::collection::vec(proptest::collection::vec(spec(), 0..60), 1..4),
        live in any::<bool>(),
        dmg in damage(),
        queries in proptest::collection::vec(query(), 1..10),
    ) {
        let pool = time_pool();
        let keys = keys_for(ORGS);
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<Written> = Vec::new();
        let mut n = 0;
        let last = sessions.len() - 1;
        let mut live_log = None;
        for (i, session) in sessions.iter().enumerate() {
            let log = Log::open(dir.path(), opts(&keys)).unwrap();
            let events: Vec<Event> = session.iter().map(|s| { n += 1; make(s, &pool, n) }).collect();
            // Mixed batch sizes, so index blocks and batches cut in different places.
            for chunk in events.chunks(7) {
                let receipts = log.append_batch(chunk).unwrap();
                for (e, r) in chunk.iter().zip(receipts) {
                    all.push(Written { event: e.clone(), month: r.month, seq: r.seq });
                }
            }
            if i == last && live {
                live_log = Some(log);
            } else {
                log.close().unwrap();
            }
        }
        match dmg {
            Damage::None => {}
            Damage::FlipIndex(f, b) => {
                let files = index_files(dir.path());
                if !files.is_empty() {
                    let p = &files[f % files.len()];
                    let mut bytes = std::fs::read(p).unwrap();
                    let at = b % bytes.len();
                    bytes[at] ^= 0x5a;
                    std::fs::write(p, bytes).unwrap();
                }
            }
            Damage::DropIndex(f) => {
                let files = index_files(dir.path());
                if !files.is_empty() {
                    std::fs::remove_file(&files[f % files.len()]).unwrap();
                }
            }
        }
        // Query through the writer itself when it is live, else through a reader.
        let reader;
        let log = match &live_log {
            Some(l) => l,
            None => {
                reader = Log::open_read_only(dir.path(), opts(&keys)).unwrap();
                &reader
            }
        };
        for q in &queries {
            let want = brute(&all, q, &pool);
            let (got, stats) = run(log, q, &pool);
            let key = |v: &Vec<(Timestamp, Month, u64, Event)>| -> Vec<(Timestamp, Month, u64)> {
                v.iter().map(|(t, m, s, _)| (*t, *m, *s)).collect()
            };
            prop_assert_eq!(key(&got), key(&want), "query {:?} stats {:?}", q, stats);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(&g.3, &w.3);
            }
            if matches!(dmg, Damage::None) && !live {
                prop_assert!(stats.indexes_bypassed.is_empty(), "{:?}", stats.indexes_bypassed);
            }
            if q.tiny_buffer && stats.peak_waiting > 1 {
                prop_assert!(stats.spilled > 0, "{:?}", stats);
            }
        }
        // A second reader beside the live writer sees the same (everything was handed to
        // the OS by the queries above).
        if let Some(live) = &live_log {
            for o in ORGS {
                // Starting a query hands the org's buffered records to the OS.
                drop(live.query(&org(o)).limit(0).run().unwrap());
            }
            let reader = Log::open_read_only(dir.path(), opts(&keys)).unwrap();
            for q in queries.iter().take(3) {
                let want = brute(&all, q, &pool);
                let (got, _) = run(&reader, q, &pool);
                prop_assert_eq!(got.len(), want.len());
            }
        }
        let _ = OrgId::new("a");
    }
}
