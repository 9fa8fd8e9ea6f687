//! Matches waiting for their turn: sorted runs (one per batch) merged on release.

use std::collections::VecDeque;

use super::exec::{Match, Payload};
use crate::time::Timestamp;

/// Bytes a spilled match keeps (its key and where to read it again).
pub(crate) const SPILLED_BYTES: usize = std::mem::size_of::<Match>();

/// Runs merged into one when there are more than this.
const MAX_RUNS: usize = 16;

/// Matches read but not yet released, as sorted runs.
pub(crate) struct Pending {
    runs: VecDeque<VecDeque<Match>>,
    reverse: bool,
    /// Bytes held by spilled keys (batch buffers are counted apart).
    pub own: usize,
    pub count: usize,
    pub spilled: u64,
}

fn key(m: &Match) -> (Timestamp, u64) {
    (m.ts, m.seq)
}

impl Pending {
    pub fn new(reverse: bool) -> Pending {
        Pending {
            runs: VecDeque::new(),
            reverse,
            own: 0,
            count: 0,
            spilled: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds one batch's matches.
    pub fn push(&mut self, mut v: Vec<Match>) {
        if v.is_empty() {
            return;
        }
        // Nearly sorted (a few out-of-order events): the stable sort merges the runs it
        // finds in linear time.
        if self.reverse {
            v.sort_by_key(|m| std::cmp::Reverse(key(m)));
        } else {
            v.sort_by_key(key);
        }
        self.count += v.len();
        self.runs.push_back(v.into());
        if self.runs.len() > MAX_RUNS {
            let mut all: Vec<Match> = self.runs.drain(..).flatten().collect();
            if self.reverse {
                all.sort_unstable_by_key(|m| std::cmp::Reverse(key(m)));
            } else {
                all.sort_unstable_by_key(key);
            }
            self.runs.push_back(all.into());
        }
    }

    /// The next match in order if no unread block can hold an earlier one: its time is
    /// below `frontier` (forward) or above it (reverse).
    pub fn pop_ready(&mut self, frontier: Timestamp) -> Option<Match> {
        if self.runs.len() == 1 {
            let run = self.runs.front_mut()?;
            let ts = run.front()?.ts;
            let ready = if self.reverse {
                ts > frontier
            } else {
                ts < frontier
            };
            if !ready {
                return None;
            }
            let m = run.pop_front()?;
            if run.is_empty() {
                self.runs.clear();
            }
            self.count -= 1;
            self.own -= usize::from(matches!(m.payload, Payload::Spilled)) * SPILLED_BYTES;
            return Some(m);
        }
        let mut best: Option<(usize, (Timestamp, u64))> = None;
        for (i, r) in self.runs.iter().enumerate() {
            if let Some(m) = r.front() {
                let k = key(m);
                let better = match best {
                    None => true,
                    Some((_, b)) => {
                        if self.reverse {
                            k > b
                        } else {
                            k < b
                        }
                    }
                };
                if better {
                    best = Some((i, k));
                }
            }
        }
        let (i, (ts, _)) = best?;
        let ready = if self.reverse {
            ts > frontier
        } else {
            ts < frontier
        };
        if !ready {
            return None;
        }
        let run = self.runs.get_mut(i)?;
        let m = run.pop_front()?;
        if run.is_empty() {
            self.runs.remove(i);
        }
        self.count -= 1;
        self.own -= usize::from(matches!(m.payload, Payload::Spilled)) * SPILLED_BYTES;
        Some(m)
    }

    /// Gives up the payloads of the most recently added runs, newest first, until at most
    /// `target` bytes are held by this buffer plus `buffers` (batch buffers still referred
    /// to); returns how many matches were spilled. Releasing a spilled match reads it again.
    pub fn spill(&mut self, buffers: impl Fn() -> usize, target: usize) -> u64 {
        let mut n = 0;
        for run in self.runs.iter_mut().rev() {
            if self.own + buffers() <= target {
                break;
            }
            for m in run.iter_mut() {
                if !matches!(m.payload, Payload::Spilled) {
                    m.payload = Payload::Spilled;
                    self.own += SPILLED_BYTES;
                    n += 1;
                }
            }
        }
        self.spilled += n;
        n
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.count = 0;
        self.own = 0;
    }
}
