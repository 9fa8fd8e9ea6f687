//! The independent reader `tests/spec/read_from_spec.py`, written from docs/FORMAT.md alone,
//! must decode what the library writes: every receipt's chain hash, every event field, and
//! report the log intact; and it must report a flipped body byte in exactly that segment.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use auditlog::{Event, Keyring, Log, Options, OrgId, Receipt, Timestamp};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec/read_from_spec.py")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run_reader(dir: &Path, keyring: &Path) -> Res<(Output, Value)> {
    let out = Command::new("python3")
        .arg(script())
        .arg(dir)
        .arg(keyring)
        .output()?;
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "reader printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out, doc))
}

fn ts(s: &str) -> Res<Timestamp> {
    Ok(Timestamp::parse(s)?)
}

#[allow(clippy::too_many_arguments)]
fn event(
    org: &str,
    at: &str,
    user: Option<&str>,
    action: &str,
    rtype: &str,
    rid: &str,
    before: Value,
    after: Value,
    metadata: Value,
) -> Res<Event> {
    Ok(Event {
        org_id: org.into(),
        occurred_at: ts(at)?,
        user_id: user.map(Into::into),
        action: action.into(),
        resource_type: rtype.into(),
        resource_id: rid.into(),
        before,
        after,
        ip: None,
        user_agent: None,
        session_id: None,
        trace_id: None,
        metadata,
    })
}

/// Events of three orgs over January and February 2026, with and without each optional
/// field, unicode, JSON personal data, one out-of-order January event after February ones.
fn events_part1() -> Res<Vec<Event>> {
    let mut v = vec![
        Event {
            ip: Some("203.0.113.9".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux) — ünïcødé".into()),
            session_id: Some("sess_1".into()),
            trace_id: Some("4bf92f3577b34da6".into()),
            ..event(
                "acme",
                "2026-01-01T00:00:00Z",
                Some("user-42"),
                "payment.refunded",
                "payment",
                "pay_881",
                json!({"status": "captured"}),
                json!({"status": "refunded", "email": "a@example.com"}),
                json!({"client_ip": "198.51.100.7", "source": "api"}),
            )?
        },
        // System event: no user, nothing optional, all JSON null.
        event(
            "acme",
            "2026-01-15T12:30:45.123456Z",
            None,
            "system.rotated",
            "key",
            "k1",
            Value::Null,
            Value::Null,
            Value::Null,
        )?,
        Event {
            session_id: Some("séssion-ß".into()),
            ..event(
                "beta",
                "2026-01-02T08:00:00Z",
                Some("usér-ü-名前"),
                "channel_sync.booking.imported",
                "booking",
                "房间-7",
                json!({"contact": {"phone": "+44 20 7946 0958", "name": "Zoë"}, "n": 1}),
                json!({"tags": ["a", "b", {"deep": true}], "email": {"primary": "z@example.org"}}),
                json!({"note": "naïve ☃ 😀", "ctrl": "tab\tnew\nline \"q\" \\ \u{7f} \u{1}",
                       "numbers": [0, -1, 18446744073709551615u64, -9223372036854775808i64, 0.1, 1e300, -2.5e-8]}),
            )?
        },
        Event {
            ip: Some("2001:db8::1".into()),
            ..event(
                "beta",
                "2026-01-02T08:00:01Z",
                Some("user-7"),
                "booking.created",
                "booking",
                "bk_1",
                json!({}),
                json!({"a/b": "slash key", "m~n": "tilde key", "email": null}),
                json!("just a string"),
            )?
        },
        Event {
            user_agent: Some("curl/8.0".into()),
            trace_id: Some("t-beta-3".into()),
            ..event(
                "beta",
                "2026-01-31T23:59:59.999999Z",
                None,
                "booking.deleted",
                "booking",
                "bk_1",
                json!([1, 2, 3]),
                Value::Null,
                json!({"client_ip": {"v4": "192.0.2.1", "v6": null}}),
            )?
        },
        event(
            "c.org_3",
            "2026-01-20T00:00:00Z",
            Some("u"),
            "a.b",
            "t",
            "r",
            json!(true),
            json!(42),
            Value::Null,
        )?,
    ];
    for i in 0..40u32 {
        v.push(Event {
            ip: (i % 3 == 0).then(|| format!("10.0.0.{i}")),
            trace_id: (i % 2 == 0).then(|| format!("trace-{i:04}")),
            ..event(
                if i % 2 == 0 { "acme" } else { "beta" },
                &format!("2026-01-{:02}T{:02}:00:00Z", 3 + i % 25, i % 24),
                Some(&format!("user-{}", i % 5)),
                "space.price_changed",
                "space",
                &format!("sp_{i:06}"),
                json!({"rate": i, "pad": "x".repeat(200)}),
                json!({"rate": i + 1, "email": format!("u{i}@example.com")}),
                json!({"i": i}),
            )?
        });
    }
    Ok(v)
}

fn events_part2() -> Res<Vec<Event>> {
    let mut v = vec![
        Event {
            ip: Some("203.0.113.10".into()),
            session_id: Some("sess_2".into()),
            ..event(
                "acme",
                "2026-02-01T00:00:00Z",
                Some("user-42"),
                "payment.captured",
                "payment",
                "pay_882",
                json!({"status": "pending"}),
                json!({"status": "captured", "email": "b@example.com"}),
                json!({"client_ip": "198.51.100.8"}),
            )?
        },
        event(
            "beta",
            "2026-02-10T10:10:10.000001Z",
            Some("user-7"),
            "booking.updated",
            "booking",
            "bk_2",
            json!({"guests": 2}),
            json!({"guests": 3}),
            Value::Null,
        )?,
        event(
            "c.org_3",
            "2026-02-28T23:59:59.999999Z",
            None,
            "a.c",
            "t",
            "r2",
            Value::Null,
            json!({"email": ["x@example.com", "y@example.com"]}),
            Value::Null,
        )?,
        // Out of order: a January event after February segments exist.
        Event {
            trace_id: Some("late".into()),
            ..event(
                "acme",
                "2026-01-30T18:00:00Z",
                Some("user-late"),
                "payment.refunded",
                "payment",
                "pay_late",
                Value::Null,
                json!({"email": "late@example.com"}),
                Value::Null,
            )?
        },
    ];
    for i in 0..30u32 {
        v.push(event(
            match i % 3 {
                0 => "acme",
                1 => "beta",
                _ => "c.org_3",
            },
            &format!("2026-02-{:02}T{:02}:30:00Z", 1 + i % 27, i % 24),
            (i % 4 != 0).then(|| format!("user-{}", i % 5)).as_deref(),
            "booking.imported",
            "booking",
            &format!("bk_{i:06}"),
            json!({"i": i}),
            json!({"i": i, "email": format!("p{i}@example.com")}),
            Value::Null,
        )?);
    }
    Ok(v)
}

struct Appended {
    event: Event,
    receipt: Receipt,
    key_id: u64,
}

fn find_record<'a>(
    doc: &'a Value,
    org: &str,
    month: &str,
    seq: u64,
) -> Option<(&'a str, &'a Value)> {
    let segs = doc.get("orgs")?.get(org)?.get("segments")?.as_array()?;
    for s in segs {
        let name = s.get("segment")?.as_str()?;
        if name != month && !name.starts_with(&format!("{month}.")) {
            continue;
        }
        for r in s.get("records")?.as_array()? {
            if r.get("seq")?.as_u64()? == seq {
                return Some((name, r));
            }
        }
    }
    None
}

fn opt_str(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn check_event(rec: &Value, a: &Appended) -> Res<()> {
    let ev = rec.get("event").ok_or("record without decoded event")?;
    let e = &a.event;
    let want = [
        ("user_id", opt_str(&e.user_id)),
        ("action", Value::String(e.action.clone())),
        ("resource_type", Value::String(e.resource_type.clone())),
        ("resource_id", Value::String(e.resource_id.clone())),
        ("trace_id", opt_str(&e.trace_id)),
        ("ip", opt_str(&e.ip)),
        ("user_agent", opt_str(&e.user_agent)),
        ("session_id", opt_str(&e.session_id)),
        ("before", e.before.clone()),
        ("after", e.after.clone()),
        ("metadata", e.metadata.clone()),
    ];
    for (field, value) in want {
        assert_eq!(
            ev.get(field),
            Some(&value),
            "{} {} seq {}: field {field}",
            a.receipt.org_id,
            a.receipt.month,
            a.receipt.seq
        );
    }
    assert_eq!(
        rec.get("occurred_at_us").and_then(Value::as_i64),
        Some(e.occurred_at.micros()),
        "occurred_at of seq {}",
        a.receipt.seq
    );
    assert_eq!(
        rec.get("key_id").and_then(Value::as_u64),
        Some(a.key_id),
        "key id of {} {} seq {}",
        a.receipt.org_id,
        a.receipt.month,
        a.receipt.seq
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Where the reader's findings are.
struct Found {
    /// (org, segment) pairs with findings.
    at: BTreeSet<(String, String)>,
    /// Findings outside any segment (log-level and org-level).
    outside: usize,
    /// Every segment finding.
    all: Vec<Value>,
}

fn findings_by_segment(doc: &Value) -> Res<Found> {
    let mut at = BTreeSet::new();
    let mut all = Vec::new();
    let mut outside = doc
        .get("findings")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let orgs = doc
        .get("orgs")
        .and_then(Value::as_object)
        .ok_or("no orgs")?;
    for (org, o) in orgs {
        outside += o
            .get("findings")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for s in o
            .get("segments")
            .and_then(Value::as_array)
            .ok_or("no segments")?
        {
            let f = s
                .get("findings")
                .and_then(Value::as_array)
                .ok_or("no findings")?;
            if !f.is_empty() {
                let name = s.get("segment").and_then(Value::as_str).ok_or("no name")?;
                at.insert((org.clone(), name.to_string()));
                all.extend(f.iter().cloned());
            }
        }
    }
    Ok(Found { at, outside, all })
}

#[test]
fn spec_reader_agrees_with_the_library() -> Res<()> {
    if !python_available() {
        eprintln!("python3 not on PATH: skipping the spec reader (CI runs it with python3 3.11)");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("audit");
    let keyring_path = tmp.path().join("keys.json");
    let keys = Arc::new(Keyring::open_or_create(&keyring_path)?);
    let orgs = ["acme", "beta", "c.org_3"];
    for o in orgs {
        keys.rotate(&OrgId::new(o)?)?;
    }
    let opts = Options::new(keys.clone()).personal_data([
        "/after/email",
        "/metadata/client_ip",
        "/before/contact/phone",
        // A slot inside a later slot's value: put back in reverse slot order (FORMAT §2.3).
        "/before/contact",
        "/after/tags/1",
        "/after/a~1b",
        "/after/m~0n",
    ]);
    let log = Log::open(&dir, opts)?;
    let mut appended = Vec::new();
    let key_of = |org: &str, rotated: bool| -> u64 { if org == "acme" && rotated { 2 } else { 1 } };

    // Part 1: single appends, then a batch.
    let part1 = events_part1()?;
    let (singles, batch) = part1.split_at(10);
    for e in singles {
        let receipt = log.append(e)?;
        appended.push(Appended {
            event: e.clone(),
            key_id: key_of(&e.org_id, false),
            receipt,
        });
    }
    for (e, receipt) in batch.iter().zip(log.append_batch(batch)?) {
        appended.push(Appended {
            event: e.clone(),
            key_id: key_of(&e.org_id, false),
            receipt,
        });
    }
    // Key rotation in the middle, with the log open.
    let new_id = keys.rotate(&OrgId::new("acme")?)?;
    assert_eq!(new_id.0, 2);
    let part2 = events_part2()?;
    let (singles, batch) = part2.split_at(4);
    for e in singles {
        let receipt = log.append(e)?;
        appended.push(Appended {
            event: e.clone(),
            key_id: key_of(&e.org_id, true),
            receipt,
        });
    }
    for (e, receipt) in batch.iter().zip(log.append_batch(batch)?) {
        appended.push(Appended {
            event: e.clone(),
            key_id: key_of(&e.org_id, true),
            receipt,
        });
    }
    log.close()?;

    let (out, doc) = run_reader(&dir, &keyring_path)?;
    let Found {
        at: bad,
        outside,
        all,
    } = findings_by_segment(&doc)?;
    assert!(
        bad.is_empty() && outside == 0,
        "reader found problems in an untouched log: {all:#?} {:?}",
        doc.get("findings")
    );
    assert_eq!(doc.get("intact"), Some(&Value::Bool(true)));
    assert_eq!(out.status.code(), Some(0), "exit status of an intact log");

    // Every receipt is there, with its chain hash and the fields appended.
    let mut seen = BTreeSet::new();
    for a in &appended {
        let r = &a.receipt;
        let month = r.month.to_string();
        let (_, rec) = find_record(&doc, &r.org_id, &month, r.seq).ok_or_else(|| {
            format!(
                "receipt {} {} seq {} not in the reader's output",
                r.org_id, month, r.seq
            )
        })?;
        assert_eq!(
            rec.get("chain").and_then(Value::as_str),
            Some(r.hash.to_hex().as_str()),
            "chain hash of {} {} seq {}",
            r.org_id,
            month,
            r.seq
        );
        check_event(rec, a)?;
        assert!(
            seen.insert((r.org_id.clone(), month, r.seq)),
            "receipt twice"
        );
    }
    // And nothing else: the reader decoded exactly the records appended.
    let total: u64 = doc
        .get("orgs")
        .and_then(Value::as_object)
        .ok_or("no orgs")?
        .values()
        .flat_map(|o| {
            o.get("segments")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|s| s.get("record_count").and_then(Value::as_u64).unwrap_or(0))
        .sum();
    assert_eq!(total, appended.len() as u64);
    for o in orgs {
        let n = doc
            .get("orgs")
            .and_then(|x| x.get(o))
            .and_then(|x| x.get("segments"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(n, 2, "{o}: one segment per month");
    }

    // Flip one byte inside the body of a record that is neither first nor last of its segment.
    let victim = find_record(&doc, "beta", "2026-01", 2).ok_or("beta 2026-01 seq 2 missing")?;
    let offset = victim
        .1
        .get("offset")
        .and_then(Value::as_u64)
        .ok_or("no offset")?;
    let copy = tmp.path().join("tampered");
    copy_dir(&dir, &copy)?;
    let seg = copy.join("beta").join("2026-01.seg");
    let mut bytes = std::fs::read(&seg)?;
    let at = usize::try_from(offset)? + 64 + 3; // inside the sealed body (§2.2: body at 64)
    let b = bytes.get_mut(at).ok_or("offset past the file")?;
    *b ^= 0x20;
    std::fs::write(&seg, &bytes)?;

    let (out, doc) = run_reader(&copy, &keyring_path)?;
    let Found {
        at: bad,
        outside,
        all,
    } = findings_by_segment(&doc)?;
    assert_eq!(out.status.code(), Some(1), "exit status of a tampered log");
    assert_eq!(doc.get("intact"), Some(&Value::Bool(false)));
    assert_eq!(outside, 0, "findings outside any segment: {doc:#?}");
    assert_eq!(
        bad,
        BTreeSet::from([("beta".to_string(), "2026-01".to_string())]),
        "findings: {all:#?}"
    );
    assert!(
        all.iter()
            .any(|f| f.get("offset").and_then(Value::as_u64) == Some(offset)
                && f.get("file").and_then(Value::as_str) == Some("beta/2026-01.seg")),
        "no finding at the flipped record's offset {offset}: {all:#?}"
    );
    Ok(())
}
