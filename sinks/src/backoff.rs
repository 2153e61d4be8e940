//! Exponential backoff with a cap and jitter.

use std::time::Duration;

/// Doubles from `initial` to `max`; each delay is jittered by up to ±20 % so that many
/// collectors restarting together do not hammer a recovering server in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            seed: 0x2545_F491_4F6C_DD1D ^ std::process::id() as u64,
        }
    }

    /// The delay to wait now; the following one will be longer.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = (self.seed % 401) as i64 - 200; // per mille, -200..=200
        let ms = d.as_millis() as i64;
        Duration::from_millis((ms + ms * jitter / 1000).max(1) as u64)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!((80..=120).contains(&d[0]), "{d:?}");
        assert!((800..=1200).contains(&d[5]), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
