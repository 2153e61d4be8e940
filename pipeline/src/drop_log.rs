//! One journal line when a full queue starts dropping, then at most one every 30 s with the
//! count, however many senders share the queue and however fast they drop.
//!
//! Drops are counted in Prometheus where they happen; this is only what the journal says. It
//! costs two atomic operations per drop and a compare-and-swap per line, and nothing at all
//! while nothing is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two lines about the same queue.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(30);

/// The journal's view of one queue's drops (share it between the queue's senders with an Arc).
#[derive(Debug)]
pub struct DropLog {
    /// What is full and where its drops are counted, e.g. `sink "questdb" queue`.
    what: String,
    /// What a dropped unit is ("rows", "datagrams").
    unit: &'static str,
    metric: &'static str,
    start: Instant,
    /// Dropped since the last line.
    unlogged: AtomicU64,
    /// When the last line was written, in ms since `start` plus one; 0: never.
    last_line: AtomicU64,
}

impl DropLog {
    pub fn new(what: impl Into<String>, unit: &'static str, metric: &'static str) -> Self {
        DropLog {
            what: what.into(),
            unit,
            metric,
            start: Instant::now(),
            unlogged: AtomicU64::new(0),
            last_line: AtomicU64::new(0),
        }
    }

    /// Count `n` dropped units; write a line if none was written in the last 30 s. Returns the
    /// line written, for tests.
    pub fn dropped(&self, n: u64) -> Option<String> {
        self.dropped_at(n, self.start.elapsed())
    }

    fn dropped_at(&self, n: u64, now: Duration) -> Option<String> {
        self.unlogged.fetch_add(n, Ordering::Relaxed);
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_line.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < DROP_LOG_EVERY.as_millis() as u64 {
            return None;
        }
        // One sender wins the line; the others' drops are in the next one.
        if self
            .last_line
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let count = self.unlogged.swap(0, Ordering::Relaxed);
        let line = if last == 0 {
            format!(
                "{} is full: dropping ({count} {} so far; counted in {})",
                self.what, self.unit, self.metric
            )
        } else {
            let secs = (now_ms - last) / 1000;
            format!(
                "{} still dropping: {count} {} in the last {secs} s (counted in {})",
                self.what, self.unit, self.metric
            )
        };
        tracing::warn!("{line}");
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_drop_is_logged_then_at_most_every_30_s_with_the_count() {
        let log = DropLog::new("sink \"q\" queue", "rows", "nmsd_x_total");
        let s = Duration::from_secs;
        let first = log.dropped_at(5, s(0)).expect("the first drop is logged");
        assert!(first.contains("is full: dropping (5 rows"), "{first}");
        for t in 1..30 {
            assert_eq!(log.dropped_at(10, s(t)), None, "{t} s");
        }
        let next = log.dropped_at(1, s(30)).expect("a line after 30 s");
        assert!(next.contains("291 rows in the last 30 s"), "{next}");
        assert_eq!(log.dropped_at(1, s(31)), None);
    }

    #[test]
    fn many_senders_write_one_line() {
        let log = std::sync::Arc::new(DropLog::new("ring", "datagrams", "m"));
        let lines: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let log = log.clone();
                    sc.spawn(move || (0..1000).filter(|_| log.dropped(1).is_some()).count())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(lines, 1);
    }
}
