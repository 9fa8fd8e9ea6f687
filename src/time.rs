//! Timestamps (UTC microseconds) and calendar months, the unit segments are filed by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Earliest timestamp an event may carry: 1970-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: Timestamp = Timestamp(0);
/// Latest timestamp an event may carry: 9999-12-31T23:59:59.999999Z.
pub const MAX_TIMESTAMP: Timestamp = Timestamp(253_402_300_799_999_999);

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Serialised in JSON as an RFC 3339 string with microseconds (`2026-03-14T10:22:31.123456Z`);
/// deserialised from RFC 3339 with any offset (converted to UTC) or from an integer number of
/// microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Why a time could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time {input:?}: expected RFC 3339 (2026-03-01T12:00:00Z) or a date (2026-03-01), to the microsecond at most"
)]
pub struct TimeParseError {
    /// What was given.
    pub input: String,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let now = OffsetDateTime::now_utc();
        Timestamp(i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Whether this is inside the supported range (years 1970 to 9999).
    pub fn in_range(self) -> bool {
        (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&self)
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000).ok()
    }

    /// The UTC calendar month containing this instant, if it is in range.
    pub fn month(self) -> Option<Month> {
        if !self.in_range() {
            return None;
        }
        let dt = self.to_datetime()?;
        Month::new(u16::try_from(dt.year()).ok()?, dt.month() as u8)
    }

    /// Parses RFC 3339 (any offset) or a plain date `YYYY-MM-DD` (midnight UTC). A time
    /// finer than a microsecond (`…00.0000001Z`) is refused, not cut: an event would be
    /// stored at another instant than it says, and a query's `[since, until)` would take in
    /// an event before `since` or leave out one before `until`.
    pub fn parse(input: &str) -> Result<Timestamp, TimeParseError> {
        let err = || TimeParseError {
            input: input.to_string(),
        };
        let dt = if let Ok(dt) = OffsetDateTime::parse(input, &Rfc3339) {
            // `YYYY-MM-DDTHH:MM:SS` is 19 bytes; a fraction follows its '.'. Its digits
            // past the sixth must be zeros. (Read from the text, not from the nanoseconds:
            // a leap second, `23:59:60`, parses as 23:59:59.999999999 and is kept at
            // .999999, as before.)
            let fraction = input
                .get(19..)
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or("");
            let digits = fraction.bytes().take_while(u8::is_ascii_digit);
            if digits.skip(6).any(|b| b != b'0') {
                return Err(err());
            }
            dt
        } else {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            // Four digits of year, no sign: `[year]` also takes `+2026` or `-2026` (and
            // more digits), which is no `YYYY-MM-DD`.
            if input.len() != 10 || !input.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(err());
            }
            let date = Date::parse(input, &fmt).map_err(|_| err())?;
            PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()
        };
        let micros = dt.to_offset(UtcOffset::UTC).unix_timestamp_nanos() / 1000;
        i64::try_from(micros).map(Timestamp).map_err(|_| err())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(dt) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                dt.month() as u8,
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.microsecond()
            ),
            None => write!(f, "@{}us", self.0),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string or integer microseconds since the epoch")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A UTC calendar month, `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

impl Month {
    /// A month, if `year` is 1970..=9999 and `month` 1..=12.
    pub fn new(year: u16, month: u8) -> Option<Month> {
        ((1970..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// First instant of the month.
    pub fn start(self) -> Timestamp {
        let start = Date::from_calendar_date(
            i32::from(self.year),
            time::Month::try_from(self.month).unwrap_or(time::Month::January),
            1,
        )
        .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
        match start {
            Ok(dt) => Timestamp(i64::try_from(dt.unix_timestamp_nanos() / 1000).unwrap_or(0)),
            Err(_) => MIN_TIMESTAMP,
        }
    }

    /// First instant after the month: for December 9999, the instant after
    /// [`MAX_TIMESTAMP`] (10000-01-01), although no month holds it.
    pub fn end(self) -> Timestamp {
        let next = if self.month == 12 {
            Month::new(self.year.saturating_add(1), 1)
        } else {
            Month::new(self.year, self.month + 1)
        };
        next.map_or(Timestamp(MAX_TIMESTAMP.0 + 1), Month::start)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TimeParseError {
            input: s.to_string(),
        };
        let (y, m) = s.split_once('-').ok_or_else(err)?;
        // Digits only: `u16::from_str` also takes a sign (`+3`), and a month must have one
        // spelling (`2026-+3.seg` would name a second segment 2026-03).
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) {
            return Err(err());
        }
        Month::new(y.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?).ok_or_else(err)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last month ends where every other does: one microsecond after its last instant
    /// (FORMAT.md §3.1 bounds a tag-failing record by the month's last microsecond).
    #[test]
    fn december_9999_ends_after_the_last_timestamp() {
        let dec = Month::new(9999, 12).unwrap();
        assert_eq!(dec.end().0 - 1, MAX_TIMESTAMP.0);
        assert_eq!(MAX_TIMESTAMP.month(), Some(dec));
        let nov = Month::new(9999, 11).unwrap();
        assert_eq!(nov.end(), dec.start());
    }

    #[test]
    fn times_finer_than_a_microsecond_are_refused_not_cut() {
        for bad in [
            "2026-01-01T00:00:00.0000001Z",
            "2026-01-01T00:00:00.123456789Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        for (ok, micros) in [
            ("2026-01-01T00:00:00.1234560Z", 123_456),
            ("2026-01-01T00:00:00.123456Z", 123_456),
            ("2026-01-01T00:00:00.000000000Z", 0),
            ("2026-01-01T01:00:00.123456000+01:00", 123_456),
            // A leap second is kept at the last microsecond before the next second.
            ("2025-12-31T23:59:60Z", -1),
        ] {
            let base = Timestamp::parse("2026-01-01T00:00:00Z").unwrap().0;
            assert_eq!(Timestamp::parse(ok).unwrap().0 - base, micros, "{ok}");
        }
    }

    #[test]
    fn a_month_has_one_spelling() {
        assert_eq!("2026-03".parse::<Month>().ok(), Month::new(2026, 3));
        for bad in [
            "2026-+3", "+026-03", "2026-3", "26-03", "2026-03 ", "2026--3", "2026-13",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn month_of_boundaries() {
        let t = Timestamp::parse("2026-03-31T23:59:59.999999Z").ok();
        assert_eq!(t.and_then(|t| t.month()), Month::new(2026, 3));
        let t = Timestamp::parse("2026-04-01T00:00:00Z").ok();
        assert_eq!(t.and_then(|t| t.month()), Month::new(2026, 4));
        assert_eq!(Month::new(2026, 4).map(|m| m.start()), t);
    }

    #[test]
    fn offsets_convert_to_utc() {
        let a = Timestamp::parse("2026-04-01T01:30:00+02:00").ok();
        assert_eq!(a.and_then(|t| t.month()), Month::new(2026, 3));
        assert_eq!(
            a.map(|t| t.to_string()).as_deref(),
            Some("2026-03-31T23:30:00.000000Z")
        );
    }

    #[test]
    fn plain_dates_parse_as_midnight_utc() {
        assert_eq!(
            Timestamp::parse("2026-03-01").ok(),
            Timestamp::parse("2026-03-01T00:00:00Z").ok()
        );
        assert!(Timestamp::parse("2026-13-01").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
        // A sign or a fifth digit of year is no `YYYY-MM-DD` (it was taken as one).
        for signed in [
            "+2026-01-01",
            "-2026-01-01",
            "+02026-01-01",
            "02026-01-01",
            "+2026-01-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse(signed).is_err(), "{signed}");
        }
    }

    #[test]
    fn out_of_range_has_no_month() {
        assert_eq!(Timestamp(-1).month(), None);
        assert_eq!(Timestamp(i64::MAX).month(), None);
        assert!(MAX_TIMESTAMP.month().is_some());
    }

    #[test]
    fn display_round_trips() {
        let t = Timestamp(1_773_483_751_123_456);
        assert_eq!(Timestamp::parse(&t.to_string()).ok(), Some(t));
    }
}
