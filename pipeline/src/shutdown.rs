//! The shutdown deadline the collector sets and every sink honours.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set once by the collector when it starts stopping. The deadline is fixed then, not when a
/// sink first notices: a sink busy in a request for `request_timeout` used to start its own
/// `shutdown_timeout` only afterwards (16.8 s of shutdown against a 10 s timeout).
#[derive(Debug, Default)]
pub struct ShutdownSignal {
    deadline: OnceLock<Instant>,
}

impl ShutdownSignal {
    /// Start stopping, with `timeout` to finish writing; returns the deadline. A second call
    /// keeps the first deadline.
    pub fn begin(&self, timeout: Duration) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + timeout)
    }

    /// True once the collector has started stopping.
    pub fn requested(&self) -> bool {
        self.deadline.get().is_some()
    }

    /// Time left until the deadline: None while running, zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True once the deadline has passed: give up and count what is left.
    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_fixed_when_stopping_begins() {
        let s = ShutdownSignal::default();
        assert!(!s.requested() && !s.expired());
        let d = s.begin(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(20));
        // A late caller (a sink noticing only now) does not move it.
        assert_eq!(s.begin(Duration::from_millis(30)), d);
        assert!(s.requested() && !s.expired());
        std::thread::sleep(Duration::from_millis(15));
        assert!(s.expired());
    }
}
