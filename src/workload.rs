//! The reference workload: realistic audit events, deterministic from a seed.
//!
//! Used by the demo, the benches, the tests and `auditlog gen`, so every tool measures the
//! same data. Events average about 670 bytes of JSON (670.2 B for `auditlog gen --events
//! 20000 --orgs 4 --seed 1 --days 28 --start 2026-01-02`, the append bench's pool) with a long
//! tail of large before/after states (up to tens of KB); org sizes are skewed (org `k` gets weight 1/(k+1)); users
//! follow a power law; actions come from the booking, payment, space, auth and
//! channel-sync domains; a configurable fraction arrive with out-of-order timestamps.

use serde_json::{Value, json};

use crate::event::Event;
use crate::time::Timestamp;

/// Parameters of a workload.
///
/// Event `i` (from 0) is stamped `start + i × step`, with `step = days × 86,400,000,000 ÷
/// events` µs (integer division), minus up to an hour for out-of-order events. Out-of-range
/// parameters are clamped rather than refused, so [`Workload`] never overflows nor panics:
/// - the span (`days` × a day in µs) saturates at `i64::MAX` µs (past about 106.75 million
///   days, which a `u32` allows);
/// - where `events` exceed the span's microseconds (`step` would be 0, and every event
///   stamped `start`), event `i` is stamped `start + span × i ÷ events` instead, so the
///   events still cover the span, several to a microsecond;
/// - a time below `i64::MIN` or above `i64::MAX` µs saturates there.
///
/// Such times are outside what [`Event::validate`] accepts (1970-01-01 to 9999-12-31); the
/// CLI's `gen` refuses the parameters that lead to them. Within range the stamps are as
/// above, unchanged.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Number of events.
    pub events: u64,
    /// Number of orgs (`org-000` …). The generator holds 8 bytes per org (their weights):
    /// the CLI allows at most 1,000,000.
    pub orgs: u32,
    /// Days the events span.
    pub days: u32,
    /// PRNG seed.
    pub seed: u64,
    /// Time of the first event.
    pub start: Timestamp,
    /// Fraction of events (0.0 to 1.0) stamped up to an hour earlier than their position.
    pub out_of_order: f64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            events: 10_000,
            orgs: 4,
            days: 90,
            seed: 1,
            start: Timestamp(1_767_225_600_000_000), // 2026-01-01T00:00:00Z
            out_of_order: 0.01,
        }
    }
}

/// SplitMix64: small, fast, and stable across platforms and releases.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Power-law pick in `0..n`: small values are much more likely.
    ///
    /// It goes through `f64::powf`, which Rust leaves to the platform's `pow`: results may
    /// differ by an ulp across platforms and C libraries, and such a difference can move the
    /// `floor` to the next integer. So the workload is deterministic on one platform, but
    /// byte-identical output across platforms is not guaranteed.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((n as f64).powf(u) - 1.0)
            .floor()
            .clamp(0.0, (n.max(1) - 1) as f64) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or_default()
    }
}

const ACTIONS: &[(&str, &str)] = &[
    ("booking.created", "booking"),
    ("booking.updated", "booking"),
    ("booking.cancelled", "booking"),
    ("booking.confirmed", "booking"),
    ("payment.captured", "payment"),
    ("payment.refunded", "payment"),
    ("payment.failed", "payment"),
    ("space.created", "space"),
    ("space.updated", "space"),
    ("space.price_changed", "space"),
    ("auth.login", "user"),
    ("auth.logout", "user"),
    ("auth.role_assigned", "user"),
    ("auth.password_reset", "user"),
    ("channel_sync.booking_imported", "booking"),
    ("channel_sync.availability_pushed", "space"),
];

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "bookings-api-client/3.2.1 (+python-requests/2.32)",
];

const STATUSES: &[&str] = &["pending", "confirmed", "cancelled", "completed"];

/// An endless-until-`events` iterator of generated events.
#[derive(Clone, Debug)]
pub struct Workload {
    cfg: WorkloadConfig,
    rng: Rng,
    i: u64,
    org_weights: Vec<f64>,
}

impl Workload {
    /// A workload from its parameters.
    pub fn new(cfg: WorkloadConfig) -> Workload {
        let n = cfg.orgs.max(1);
        let total: f64 = (0..n).map(|k| 1.0 / f64::from(k + 1)).sum();
        let mut acc = 0.0;
        let org_weights = (0..n)
            .map(|k| {
                acc += 1.0 / f64::from(k + 1) / total;
                acc
            })
            .collect();
        Workload {
            rng: Rng::new(cfg.seed),
            cfg,
            i: 0,
            org_weights,
        }
    }

    /// µs from `start` to event `i`'s place (before any out-of-order shift); see
    /// [`WorkloadConfig`] for the clamping.
    fn offset(&self, i: u64) -> i64 {
        let span = i64::from(self.cfg.days.max(1)).saturating_mul(86_400_000_000);
        let events = i64::try_from(self.cfg.events.max(1)).unwrap_or(i64::MAX);
        let step = span / events;
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        if step > 0 {
            step.saturating_mul(i)
        } else {
            // More events than microseconds in the span: spread them over it. `i` < `events`,
            // so the quotient is below `span` and fits.
            let spread = i128::from(span) * i128::from(i) / i128::from(events);
            i64::try_from(spread).unwrap_or(span)
        }
    }

    fn org(&mut self) -> u32 {
        let u = self.rng.unit();
        // The first org whose cumulative weight passes `u` (the weights only grow).
        let k = self.org_weights.partition_point(|&w| w <= u);
        if k < self.org_weights.len() {
            k as u32
        } else {
            0
        }
    }

    fn state(&mut self, kind: &str, big: bool) -> Value {
        let r = &mut self.rng;
        let mut v = match kind {
            "booking" => json!({
                "status": r.pick(STATUSES),
                "space_id": format!("sp_{:06}", r.below(50_000)),
                "starts_at": "2026-04-01T09:00:00Z",
                "ends_at": "2026-04-01T11:00:00Z",
                "guests": r.below(12) + 1,
                "price_cents": r.below(100_000),
                "currency": "EUR",
            }),
            "payment" => json!({
                "amount_cents": r.below(200_000),
                "currency": "EUR",
                "method": r.pick(&["card", "sepa", "paypal"]),
                "psp_reference": format!("psp_{:016x}", r.next_u64()),
            }),
            "space" => json!({
                "name": format!("Meeting room {}", r.below(500)),
                "capacity": r.below(40) + 2,
                "hourly_rate_cents": r.below(20_000),
            }),
            _ => json!({
                "role": r.pick(&["admin", "manager", "member", "viewer"]),
                "email": format!("user{}@example.com", r.below(100_000)),
                "mfa": r.below(2) == 1,
            }),
        };
        if big {
            // The long tail: a large nested state (line items, notes, history).
            let n = 20 + r.skewed(400) as usize;
            let items: Vec<Value> = (0..n)
                .map(|k| json!({"line": k, "sku": format!("sku_{:08x}", r.next_u64() as u32), "qty": r.below(9) + 1, "note": "extra cleaning and setup requested"}))
                .collect();
            if let Value::Object(m) = &mut v {
                m.insert("items".into(), Value::Array(items));
            }
        }
        v
    }
}

impl Iterator for Workload {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.i >= self.cfg.events {
            return None;
        }
        let mut t = self.cfg.start.0.saturating_add(self.offset(self.i));
        if self.rng.unit() < self.cfg.out_of_order {
            t = t.saturating_sub(i64::try_from(self.rng.below(3_600_000_000)).unwrap_or(0));
        }
        self.i += 1;
        let org = self.org();
        let (action, kind) = ACTIONS
            .get(self.rng.below(ACTIONS.len() as u64) as usize)
            .copied()
            .unwrap_or(("booking.created", "booking"));
        let system = self.rng.below(20) == 0;
        let user = self.rng.skewed(10_000);
        let big = self.rng.below(200) == 0;
        let before = if action.ends_with("created") {
            Value::Null
        } else {
            self.state(kind, false)
        };
        let after = self.state(kind, big);
        let r = &mut self.rng;
        Some(Event {
            org_id: format!("org-{org:03}"),
            occurred_at: Timestamp(t),
            user_id: (!system).then(|| format!("user-{user:05}")),
            action: action.to_string(),
            resource_type: kind.to_string(),
            resource_id: format!("{}_{:012x}", &kind[..2.min(kind.len())], r.below(1 << 40)),
            before,
            after,
            ip: (!system).then(|| format!("203.0.{}.{}", r.below(256), r.below(256))),
            user_agent: (!system).then(|| r.pick(AGENTS).to_string()),
            session_id: (!system).then(|| format!("sess_{:016x}", r.next_u64())),
            trace_id: Some(format!("{:016x}{:016x}", r.next_u64(), r.next_u64())),
            metadata: json!({"source": r.pick(&["web", "api", "mobile", "channel_manager"]), "request_id": format!("req_{:012x}", r.below(1 << 48))}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let cfg = WorkloadConfig {
            events: 2000,
            ..WorkloadConfig::default()
        };
        let a: Vec<Event> = Workload::new(cfg.clone()).collect();
        let b: Vec<Event> = Workload::new(cfg).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2000);
        for e in &a {
            e.validate().unwrap();
        }
        let avg = a
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .sum::<usize>()
            / a.len();
        assert!((450..=900).contains(&avg), "average JSON size {avg}");
    }

    #[test]
    fn stamps_are_unchanged_within_range() {
        // The benches' figures depend on these stamps: step × i, step = span ÷ events.
        let cfg = WorkloadConfig {
            events: 7,
            days: 3,
            out_of_order: 0.0,
            ..WorkloadConfig::default()
        };
        let start = cfg.start.0;
        let step = 3 * 86_400_000_000 / 7;
        let t: Vec<i64> = Workload::new(cfg).map(|e| e.occurred_at.0).collect();
        let want: Vec<i64> = (0..7).map(|i| start + step * i).collect();
        assert_eq!(t, want);
    }

    #[test]
    fn extreme_parameters_clamp_instead_of_overflowing() {
        // A span beyond i64 µs (u32::MAX days) and a start near the end of i64: no overflow
        // (tests build with overflow checks), times saturate and stay in order.
        let mut w = Workload::new(WorkloadConfig {
            events: 3,
            days: u32::MAX,
            start: Timestamp(i64::MAX - 10),
            out_of_order: 1.0,
            ..WorkloadConfig::default()
        });
        assert_eq!(w.offset(1), i64::MAX / 3);
        assert_eq!(w.offset(2), i64::MAX / 3 * 2);
        assert_eq!(w.by_ref().count(), 3);
        let w = Workload::new(WorkloadConfig {
            events: 2,
            days: 1,
            start: Timestamp(i64::MIN + 10),
            out_of_order: 1.0,
            ..WorkloadConfig::default()
        });
        assert_eq!(w.count(), 2);

        // More events than µs in the span: spread over it, not all at `start`.
        let day = 86_400_000_000u64;
        let w = Workload::new(WorkloadConfig {
            events: 3 * day,
            days: 1,
            ..WorkloadConfig::default()
        });
        assert_eq!(w.offset(0), 0);
        assert_eq!(w.offset(3), 1);
        assert_eq!(w.offset(3 * day - 1), 86_399_999_999);
        let mut last = 0;
        for i in (0..3 * day).step_by(1_000_003) {
            let o = w.offset(i);
            assert!(o >= last && o < 86_400_000_000, "{i}: {o}");
            last = o;
        }
    }
}
