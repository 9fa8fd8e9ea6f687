//! Guards against an event coming back different from how it went in: a field dropped or
//! altered by the sealed-body encoding, personal data (ip, user_agent, session_id and the
//! configured JSON pointers, nested ones included) not restored from its commitments, or a
//! receipt that names another seq, month or hash than the record on disk. Checked through a
//! live writer, after a clean close, and after reopening with `Log::open` and
//! `Log::open_read_only`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::BTreeSet;

use auditlog::{Durability, Event, Keyring, Log, Options, Receipt, VerifiedEvent};
use serde_json::{Value, json};
use support::{assert_verifies, keys_for, month, org, scan_clean, ts, workload};

/// Personal-data pointers, including nested ones in both orders, escaped keys, array
/// elements, a whole root field, and pointers that name nothing in some events.
const PII: &[&str] = &[
    "/after/email",
    "/after/contact/phone",
    "/after/contact",
    "/before/contact",
    "/before/contact/address/street",
    "/after/guests/1/name",
    "/after/a~1b",
    "/after/m~0n",
    "/metadata/client",
    "/metadata/nothing/here",
    "/before/flag",
];

fn base(org_id: &str, at: &str) -> Event {
    Event {
        org_id: org_id.into(),
        occurred_at: ts(at),
        user_id: Some("user-42".into()),
        action: "booking.created".into(),
        resource_type: "booking".into(),
        resource_id: "bk_1".into(),
        before: Value::Null,
        after: Value::Null,
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: None,
        metadata: Value::Null,
    }
}

/// Hand-written events that between them exercise every field and every shape of value.
fn crafted() -> Vec<Event> {
    let mut out = Vec::new();

    // Every field set, personal data at every configured pointer.
    out.push(Event {
        user_id: Some("user-ünïcode-✓".into()),
        action: "channel_sync.booking.imported".into(),
        resource_type: "booking".into(),
        resource_id: "bk_0001/ä".into(),
        before: json!({
            "status": "pending",
            "flag": false,
            "contact": {"name": "Ann", "address": {"street": "1 Main St", "city": "Oslo"}},
        }),
        after: json!({
            "status": "confirmed",
            "email": "ann@example.com",
            "contact": {"phone": "+47 123", "fax": null, "tags": ["a", "b"]},
            "guests": [{"name": "Bob"}, {"name": "Cy", "age": 7}, {"name": "Di"}],
            "a/b": "slash key",
            "m~n": {"tilde": true},
            "price": {"cents": 12_345, "ratio": 0.25, "neg": -3, "big": u64::MAX},
            "empty_obj": {},
            "empty_arr": [],
            "text": "line\nbreak \"quoted\" \\ tab\t",
        }),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0".into()),
        session_id: Some("sess_0123456789abcdef".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        metadata: json!({"client": {"ip_hint": "10.0.0.1", "agent": "x"}, "source": "web"}),
        ..base("acme", "2026-01-15T10:20:30.123456Z")
    });

    // System action: no user, no personal data at all, every optional field absent.
    out.push(Event {
        user_id: None,
        action: "space.price_changed".into(),
        resource_type: "space".into(),
        resource_id: "sp_9".into(),
        ..base("acme", "2026-01-15T10:20:31Z")
    });

    // Only IPv6 ip; before with a scalar at a personal-data pointer (`false` is taken).
    out.push(Event {
        ip: Some("2001:db8::1".into()),
        before: json!({"flag": true}),
        after: json!("a bare string after-state"),
        metadata: json!([1, 2, 3]),
        ..base("acme", "2026-01-31T23:59:59.999999Z")
    });

    // Only user agent and session id; personal-data pointers that hit null values stay null.
    out.push(Event {
        user_agent: Some("curl/8.5.0".into()),
        session_id: Some("s".into()),
        after: json!({"email": null, "contact": null, "guests": [{"name": "only one"}]}),
        ..base("acme", "2026-02-01T00:00:00Z")
    });

    // A whole root-level object that is personal data, and a nested pointer inside the
    // other nested pointer's value (the nested-first order of `PII`).
    out.push(Event {
        before: json!({"contact": {"address": {"street": "2 Side St"}}, "flag": 0}),
        after: json!({"contact": {"phone": "555"}, "email": ""}),
        metadata: json!({"client": [1, {"deep": "x"}]}),
        trace_id: Some("t".into()),
        ..base("acme", "2026-02-10T08:00:00Z")
    });

    // Out-of-order timestamp within the month, and a second org.
    out.push(Event {
        after: json!({"email": "z@example.org"}),
        ..base("acme", "2026-02-03T00:00:00Z")
    });
    out.push(Event {
        user_id: None,
        ip: Some("198.51.100.7".into()),
        after: json!({"email": "other@example.net", "guests": [{"name": "a"}, {"name": "b"}]}),
        ..base("globex", "2026-01-02T00:00:00Z")
    });
    out
}

fn expect_same(sent: &[(Event, Receipt)], read: &[VerifiedEvent], key: auditlog::KeyId) {
    assert_eq!(read.len(), sent.len(), "number of events read back");
    for ((e, r), v) in sent.iter().zip(read) {
        assert_eq!(&v.event, e, "event at {} seq {}", v.month, v.seq);
        assert_eq!(v.seq, r.seq);
        assert_eq!(v.month, r.month);
        assert_eq!(v.hash, r.hash);
        assert_eq!(v.event.org_id, r.org_id);
        assert_eq!(Some(v.month), e.occurred_at.month());
        assert_eq!(v.part, 0);
        assert_eq!(v.key_id, key);
    }
}

/// Reads every org back and compares it with what was sent, in (month, seq) order.
fn check(log: &Log, sent: &[(Event, Receipt)], keys: &Keyring) {
    let orgs: BTreeSet<&str> = sent.iter().map(|(e, _)| e.org_id.as_str()).collect();
    for o in orgs {
        let o = org(o);
        let mut mine: Vec<(Event, Receipt)> = sent
            .iter()
            .filter(|(e, _)| e.org_id == o.as_str())
            .cloned()
            .collect();
        mine.sort_by_key(|(_, r)| (r.month, r.seq));
        let read = scan_clean(log, &o);
        let key = auditlog::KeyProvider::signing_key(keys, &o).unwrap().0;
        expect_same(&mine, &read, key);
    }
}

#[test]
fn every_field_survives_append_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme", "globex", "org-000", "org-001", "org-002"]);
    let opts = || Options::new(keys.clone()).personal_data(PII.iter().copied());

    let mut sent: Vec<(Event, Receipt)> = Vec::new();
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        for e in crafted() {
            let r = log.append(&e).unwrap();
            sent.push((e, r));
        }
        // Realistic events (after.email on auth events is personal data) through
        // `append_batch`, spanning three months and three orgs.
        let events = workload(600, 3, 80, 7);
        for chunk in events.chunks(100) {
            let rs = log.append_batch(chunk).unwrap();
            assert_eq!(rs.len(), chunk.len());
            sent.extend(chunk.iter().cloned().zip(rs));
        }
        // Receipts: seqs per (org, month) are 0.. in append order.
        let mut seen = BTreeSet::new();
        for (e, r) in &sent {
            assert_eq!(r.org_id, e.org_id);
            assert_eq!(Some(r.month), e.occurred_at.month());
            assert!(seen.insert((r.org_id.clone(), r.month, r.seq)), "{r:?}");
        }
        // Readable through the live writer (Always: written and fsynced).
        check(&log, &sent, &keys);
        log.close().unwrap();
    }

    // The crafted events landed in the months their timestamps say.
    let acme = org("acme");
    let read_only = Log::open_read_only(dir.path(), opts()).unwrap();
    let months: BTreeSet<_> = read_only
        .segments(&acme)
        .unwrap()
        .iter()
        .map(|s| s.month)
        .collect();
    assert!(months.contains(&month("2026-01")) && months.contains(&month("2026-02")));
    check(&read_only, &sent, &keys);
    drop(read_only);

    let reopened = Log::open(dir.path(), opts()).unwrap();
    assert!(
        reopened.recovery_report().is_empty(),
        "a cleanly closed log needs no recovery: {:?}",
        reopened.recovery_report()
    );
    check(&reopened, &sent, &keys);

    // Appending after the reopen continues each month's chain.
    let more = Event {
        after: json!({"email": "late@example.com", "contact": {"phone": "1"}}),
        ip: Some("192.0.2.1".into()),
        ..base("acme", "2026-01-20T00:00:00Z")
    };
    let r = reopened.append(&more).unwrap();
    let jan_before = sent
        .iter()
        .filter(|(e, r)| e.org_id == "acme" && r.month == month("2026-01"))
        .count() as u64;
    assert_eq!(r.seq, jan_before);
    sent.push((more, r));
    reopened.close().unwrap();

    let again = Log::open_read_only(dir.path(), opts()).unwrap();
    check(&again, &sent, &keys);
    assert_verifies(dir.path(), &*keys);
}

/// Personal data is configured per log: the same event read by a log opened *without* the
/// pointers still comes back whole (the slots are described in the record itself).
#[test]
fn personal_data_does_not_depend_on_the_reader_options() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let e = crafted().remove(0);
    let r = {
        let log = Log::open(
            dir.path(),
            Options::new(keys.clone())
                .personal_data(PII.iter().copied())
                .durability(Durability::Never),
        )
        .unwrap();
        let r = log.append(&e).unwrap();
        log.close().unwrap();
        r
    };
    let log = Log::open_read_only(dir.path(), Options::new(keys.clone())).unwrap();
    let read = scan_clean(&log, &org("acme"));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event, e);
    assert_eq!((read[0].seq, read[0].hash), (r.seq, r.hash));
}
