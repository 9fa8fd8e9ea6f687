//! What a query asks for: a time range and field filters, and the filter terms that let it
//! skip index blocks.

use crate::error::{Error, Result};
use crate::event::validate_action;
use crate::format::index::{KeyFields, TermField, TermProbe, term_hash, user_mark};
use crate::time::Timestamp;

/// An action filter: one action, or every action under a `domain.` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ActionPattern {
    /// `booking.created`.
    Exact(Box<[u8]>),
    /// `booking.*`: actions starting with `booking.` (stored with the dot).
    Prefix(Box<[u8]>),
}

impl ActionPattern {
    /// Parses `domain.action` or `domain.*` (any number of leading segments before `.*`).
    pub fn parse(p: &str) -> Result<ActionPattern> {
        let bad = |reason: String| Error::InvalidOption {
            option: "action",
            reason,
        };
        if let Some(domain) = p.strip_suffix(".*") {
            // `domain` must be 1 to 7 valid segments: check it as an action with one more.
            validate_action(&format!("{domain}.x")).map_err(|_| {
                bad(format!(
                    "{p:?} is not a prefix pattern like booking.* (lower-case segments, then .*)"
                ))
            })?;
            let mut pre = domain.as_bytes().to_vec();
            pre.push(b'.');
            Ok(ActionPattern::Prefix(pre.into_boxed_slice()))
        } else {
            validate_action(p)
                .map_err(|e| bad(format!("{} (or use a prefix like booking.*)", e.reason)))?;
            Ok(ActionPattern::Exact(p.as_bytes().into()))
        }
    }

    fn matches(&self, action: &[u8]) -> bool {
        match self {
            ActionPattern::Exact(a) => **a == *action,
            ActionPattern::Prefix(p) => action.starts_with(p),
        }
    }

    fn term(&self) -> u64 {
        match self {
            ActionPattern::Exact(a) => term_hash(TermField::Action, a),
            ActionPattern::Prefix(p) => term_hash(
                TermField::ActionPrefix,
                p.get(..p.len().saturating_sub(1)).unwrap_or_default(),
            ),
        }
    }
}

/// The predicate of a query: `since <= occurred_at < until` and every field filter.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    /// Inclusive lower bound (`i64::MIN`: none).
    pub since: Timestamp,
    /// Exclusive upper bound (`i64::MAX`: none).
    pub until: Timestamp,
    pub user: Option<Box<[u8]>>,
    pub action: Option<ActionPattern>,
    pub resource_type: Option<Box<[u8]>>,
    pub resource_id: Option<Box<[u8]>>,
    pub trace: Option<Box<[u8]>>,
    /// Terms every matching record has: a block whose filter lacks one is skipped.
    pub probes: Vec<TermProbe>,
    /// The user mark (FORMAT.md §3.3) of `user`: with an index's section 3, only records
    /// marked so (or [`crate::format::index::MARK_UNKNOWN`]) can match.
    pub user_mark: Option<u16>,
    /// Resume point ([`crate::Query::after`]): only records past this `(occurred_at, seq)`
    /// in the query's order match.
    pub after: Option<After>,
}

/// A resume point: records after `(at, seq)`, or before it when `reverse`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct After {
    pub at: Timestamp,
    pub seq: u64,
    pub reverse: bool,
}

impl Filter {
    pub fn new() -> Filter {
        Filter {
            since: Timestamp(i64::MIN),
            until: Timestamp(i64::MAX),
            user: None,
            action: None,
            resource_type: None,
            resource_id: None,
            trace: None,
            probes: Vec::new(),
            user_mark: None,
            after: None,
        }
    }

    /// Sets the resume point and narrows the range to it (an empty range if it lies
    /// outside): forward, `since` becomes at least its time; reversed, `until` at most the
    /// instant after it.
    pub fn resume(&mut self, after: After) {
        if after.reverse {
            self.until = self.until.min(Timestamp(after.at.0.saturating_add(1)));
        } else {
            self.since = self.since.max(after.at);
        }
        self.until = self.until.max(self.since);
        self.after = Some(after);
    }

    /// Whether the record `(ts, seq)` lies past the resume point, if any.
    pub fn past_resume(&self, ts: Timestamp, seq: u64) -> bool {
        self.after.is_none_or(|a| {
            if a.reverse {
                (ts, seq) < (a.at, a.seq)
            } else {
                (ts, seq) > (a.at, a.seq)
            }
        })
    }

    /// Computes the probe terms; call once the fields are set.
    pub fn finish(&mut self) {
        let mut terms = Vec::new();
        if let Some(u) = &self.user {
            terms.push(term_hash(TermField::User, u));
        }
        if let Some(a) = &self.action {
            terms.push(a.term());
        }
        if let Some(t) = &self.resource_type {
            terms.push(term_hash(TermField::ResourceType, t));
        }
        if let Some(r) = &self.resource_id {
            terms.push(term_hash(TermField::ResourceId, r));
        }
        if let Some(t) = &self.trace {
            terms.push(term_hash(TermField::Trace, t));
        }
        self.probes = terms.into_iter().map(TermProbe::new).collect();
        self.user_mark = self.user.as_deref().map(|u| user_mark(Some(u)));
    }

    /// Whether `[lo, hi]` can hold a time in the range.
    pub fn overlaps(&self, lo: Timestamp, hi: Timestamp) -> bool {
        lo < self.until && hi >= self.since
    }

    /// Whether `ts` is in the range.
    pub fn in_range(&self, ts: Timestamp) -> bool {
        ts >= self.since && ts < self.until
    }

    /// Whether any field filter is set.
    pub fn has_fields(&self) -> bool {
        !self.probes.is_empty()
    }

    /// Whether the fields match (the time is checked separately).
    pub fn fields_match(&self, k: &KeyFields<'_>) -> bool {
        let eq = |want: &Option<Box<[u8]>>, have: Option<&[u8]>| match want {
            None => true,
            Some(w) => have.is_some_and(|h| **w == *h),
        };
        eq(&self.user, k.user_id)
            && self.action.as_ref().is_none_or(|a| a.matches(k.action))
            && eq(&self.resource_type, Some(k.resource_type))
            && eq(&self.resource_id, Some(k.resource_id))
            && eq(&self.trace, k.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns() {
        assert!(ActionPattern::parse("booking.created").is_ok());
        assert!(ActionPattern::parse("booking.*").is_ok());
        assert!(ActionPattern::parse("channel_sync.booking.*").is_ok());
        for bad in ["booking", "*", ".*", "Booking.*", "booking.*.x", "a..b", ""] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad}");
        }
        let p = ActionPattern::parse("booking.*").unwrap();
        assert!(p.matches(b"booking.created"));
        assert!(!p.matches(b"bookings.created"));
        assert!(!p.matches(b"booking"));
        let p = ActionPattern::parse("channel_sync.booking.*").unwrap();
        assert!(p.matches(b"channel_sync.booking.imported"));
        assert!(!p.matches(b"channel_sync.booking_imported"));
    }

    #[test]
    fn prefix_term_is_the_indexed_prefix() {
        let p = ActionPattern::parse("channel_sync.booking.*").unwrap();
        let k = KeyFields {
            user_id: None,
            action: b"channel_sync.booking.imported",
            resource_type: b"booking",
            resource_id: b"b",
            trace_id: None,
        };
        let mut terms = Vec::new();
        k.terms(&mut terms);
        assert!(terms.contains(&p.term()));
    }
}
