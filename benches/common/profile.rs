//! Bench profiles, shared by every file in `benches/` (included with `#[path]`).
//!
//! - **short** (the default): `cargo bench` runs every bench in under 10 minutes on the
//!   2-core dev machine. Criterion's warm-up and measurement times are cut, verification
//!   builds a smaller log, and the query bench uses a 1M-event log (plus a 4-day one for
//!   flatness) instead of the 5M/1M/20M ones.
//! - **long** (`AUDITLOG_BENCH=long cargo bench`): the settings the figures in
//!   `docs/BENCHMARKS.md` were recorded with, for publication.
//!
//! Every setting of both profiles is in this file.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that selects the profile.
pub const ENV: &str = "AUDITLOG_BENCH";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Short,
    Long,
}

impl Profile {
    /// The profile `AUDITLOG_BENCH` selects: unset, empty or `short` → short; `long` → long.
    /// Anything else stops the bench (a typo must not silently run the other profile).
    pub fn get() -> Profile {
        static P: OnceLock<Profile> = OnceLock::new();
        *P.get_or_init(|| {
            let p = match std::env::var(ENV).as_deref() {
                Err(_) | Ok("" | "short") => Profile::Short,
                Ok("long") => Profile::Long,
                Ok(other) => panic!("{ENV}={other:?}: expected `short` (the default) or `long`"),
            };
            eprintln!(
                "bench profile: {}",
                match p {
                    Profile::Short =>
                        "short (the default; `AUDITLOG_BENCH=long` for publication figures)",
                    Profile::Long => "long (`AUDITLOG_BENCH=long`)",
                }
            );
            p
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Short => "short",
            Profile::Long => "long",
        }
    }

    pub fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Profile::Short => short,
            Profile::Long => long,
        }
    }
}

/// Criterion's sampling for one group of benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Samples per benchmark (criterion's minimum is 10).
    pub samples: usize,
    pub warm_up: Duration,
    pub measure: Duration,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `benches/append.rs`: every group (bounds, auditlog, SQLite). The data is the same in both
/// profiles (20,000 events cycled through); only the sampling changes.
pub fn append() -> Timing {
    Profile::get().pick(
        Timing {
            samples: 10,
            warm_up: ms(500),
            measure: ms(2_000),
        },
        Timing {
            samples: 10,
            warm_up: ms(1_000),
            measure: ms(4_000),
        },
    )
}

/// `benches/verify.rs`.
#[derive(Clone, Copy, Debug)]
pub struct Verify {
    pub timing: Timing,
    /// Segment bytes to build (`AUDITLOG_VERIFY_BENCH_MB` overrides it).
    pub mb: u64,
    /// Calls of each routine, interleaved, for the summary's medians and ratios.
    pub summary_runs: usize,
}

pub fn verify() -> Verify {
    Profile::get().pick(
        Verify {
            timing: Timing {
                samples: 10,
                warm_up: ms(500),
                measure: ms(3_000),
            },
            mb: 100,
            summary_runs: 3,
        },
        Verify {
            timing: Timing {
                samples: 10,
                warm_up: ms(1_000),
                measure: ms(8_000),
            },
            mb: 300,
            summary_runs: 5,
        },
    )
}

/// One cached log of `benches/query.rs` (under `target/query-bench/<dir>`).
#[derive(Clone, Copy, Debug)]
pub struct QueryLog {
    pub dir: &'static str,
    /// Its size in benchmark names (`1M`, `5M`, …).
    pub label: &'static str,
    pub events: u64,
}

/// `benches/query.rs`. Every log is written at the same rate (5M events per 90 days).
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub timing: Timing,
    pub flat_timing: Timing,
    /// The main log; SQLite holds the same events beside it.
    pub main: QueryLog,
    /// The smaller log: `VerifiedEvent` full scans, 1-thread rows, flatness.
    pub small: QueryLog,
    /// The 20M-event log for flatness: used in the long profile when `QUERY_BENCH_20M=1` or
    /// when it was built before; never in the short profile.
    pub big: Option<QueryLog>,
    /// The day of the 1-day queries (inside `main`).
    pub day: &'static str,
    /// The day of the flatness queries (inside every log).
    pub flat_day: &'static str,
    /// Appended to criterion's group names, so criterion never compares the two profiles'
    /// (different-sized) runs with each other.
    pub group_suffix: &'static str,
}

pub fn query() -> Query {
    Profile::get().pick(
        Query {
            timing: Timing {
                samples: 10,
                warm_up: ms(500),
                measure: ms(2_000),
            },
            flat_timing: Timing {
                samples: 10,
                warm_up: ms(500),
                measure: ms(1_500),
            },
            main: QueryLog {
                dir: "short-1m",
                label: "1M",
                events: 1_000_000,
            },
            // 4 days at the common rate.
            small: QueryLog {
                dir: "short-222k",
                label: "222k",
                events: 4 * (5_000_000 / 90),
            },
            big: None,
            day: "2026-01-12",
            flat_day: "2026-01-03",
            group_suffix: "-short",
        },
        Query {
            timing: Timing {
                samples: 10,
                warm_up: ms(1_000),
                measure: ms(5_000),
            },
            flat_timing: Timing {
                samples: 10,
                warm_up: ms(1_000),
                measure: ms(3_000),
            },
            main: QueryLog {
                dir: "log-5m",
                label: "5M",
                events: 5_000_000,
            },
            small: QueryLog {
                dir: "log-1m",
                label: "1M",
                events: 1_000_000,
            },
            big: Some(QueryLog {
                dir: "log-20m",
                label: "20M",
                events: 20_000_000,
            }),
            day: "2026-02-10",
            flat_day: "2026-01-10",
            group_suffix: "",
        },
    )
}
