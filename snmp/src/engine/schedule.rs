//! When things happen: each device's poll slots (a stable per-device phase within its interval,
//! on the wall clock), the engine's timers (polls due, request and poll deadlines), how long a
//! poll may take, and how a device that stopped answering is probed instead of polled.
//!
//! Everything here takes the time as an argument, so the tests below run on a fake clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The engine's time source: the system's clocks, or a test's fake one.
pub(super) trait Clock: Send {
    /// Monotonic time: timers, deadlines, round trips, the v3 agent clock.
    fn now(&self) -> Instant;
    /// Wall-clock time (Unix ms): poll slots and row timestamps.
    fn unix_ms(&self) -> u64;
}

/// The system's clocks.
pub(super) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        nmsd_pipeline::clock::unix_ms()
    }
}

/// Upper bound on a poll, whatever the interval.
const MAX_POLL_TIME: Duration = Duration::from_secs(60);

/// A device's phase: a stable hash of its name, below its interval, so a fleet's polls spread
/// over the interval instead of going out in one burst, and a restart keeps each device's slot.
pub(super) fn phase_of(name: &str, interval: Duration) -> Duration {
    let mut h = rustc_hash::FxHasher::default();
    name.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// The wall-clock time (Unix ms) of a device's next poll slot, `phase + k × interval`.
///
/// `prev_slot_ms` is the slot just taken (0 before the first poll). The first slot is the
/// first one strictly after `wall_ms`. Later slots advance from the previous slot rather than
/// from the clock, so a timer firing a hair early can never take the same slot twice; after a
/// stall (the engine's thread held up, the machine suspended) the slots already missed are
/// skipped but the latest of them is kept, so the device is polled once at once and then back
/// on its phase.
pub(super) fn next_slot_ms(
    prev_slot_ms: u64,
    interval: Duration,
    phase: Duration,
    wall_ms: u64,
) -> u64 {
    let interval = interval.as_millis().max(1) as u64;
    if prev_slot_ms == 0 {
        let phase = phase.as_millis() as u64;
        let base = wall_ms - wall_ms % interval + phase;
        return if base > wall_ms {
            base
        } else {
            base + interval
        };
    }
    let mut next = prev_slot_ms + interval;
    while next + interval <= wall_ms {
        next += interval;
    }
    next
}

/// How long a poll may run before what is still out is cancelled and the poll fails.
pub(super) fn poll_time_limit(interval: Duration) -> Duration {
    interval.min(MAX_POLL_TIME)
}

/// Retries a timed-out request gets: the configured number, except while probing a device
/// whose last poll got no answer (one request, no retries, until something answers).
pub(super) fn retries_for(probing: bool, configured: u32) -> u32 {
    if probing { 0 } else { configured }
}

/// Whether a finished poll leaves its device unreachable, so that its next poll starts with a
/// single probe: it failed, nothing in it was answered, and it failed by timing out.
pub(super) fn unreachable_after(error: Option<&(&'static str, String)>, answered: bool) -> bool {
    !answered
        && error
            .is_some_and(|(k, _)| matches!(*k, "timeout" | "discovery_timeout" | "poll_timeout"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Start a poll of this device.
    PollDue(usize),
    /// A request's attempt ran out of time.
    Deadline { id: i32, attempt: u32 },
    /// A poll ran out of time.
    PollDeadline { device: usize, generation: u64 },
    /// Rebuild and publish the interface directory (changes are batched, at most once a second).
    PublishDirectory,
}

/// The engine's timers, earliest first. A timer is never cancelled: its handler checks that
/// what it was set for (the request attempt, the poll generation) is still current.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub(super) fn push(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// When the earliest timer fires.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The earliest timer if it is due at `now`, taken off the heap.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let Reverse((at, timer)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn the_first_slot_is_the_phase_after_now() {
        for (interval_s, phase_ms) in [(1, 250), (10, 0), (60, 59_999), (300, 123_456)] {
            let interval = Duration::from_secs(interval_s);
            let phase = Duration::from_millis(phase_ms);
            let iv = interval_s * S;
            // Any time of day: the slot is on the phase, in the future, within one interval.
            for wall in [
                1_765_000_000_000,
                1_765_000_000_000 + 7 * iv + 1,
                42 * iv + phase_ms + 1,
            ] {
                let slot = next_slot_ms(0, interval, phase, wall);
                assert_eq!(slot % iv, phase_ms, "interval {interval_s}s, wall {wall}");
                assert!(slot > wall && slot <= wall + iv, "{slot} after {wall}");
            }
        }
        // Exactly on the phase: that slot is gone, the next one is a whole interval away.
        let interval = Duration::from_secs(60);
        let at_phase = 1000 * 60 * S + 5 * S;
        assert_eq!(
            next_slot_ms(0, interval, Duration::from_secs(5), at_phase),
            at_phase + 60 * S
        );
    }

    #[test]
    fn later_slots_advance_from_the_previous_slot_not_the_clock() {
        let interval = Duration::from_secs(60);
        let phase = Duration::from_secs(7);
        let first = next_slot_ms(0, interval, phase, 10_000 * 60 * S);
        // On time, a little late or a hair early: always the very next slot.
        for wall in [first, first + 3 * S, first - 1] {
            assert_eq!(next_slot_ms(first, interval, phase, wall), first + 60 * S);
        }
    }

    #[test]
    fn after_a_stall_missed_slots_are_skipped_but_the_latest_is_polled_at_once() {
        let interval = Duration::from_secs(10);
        let slot = 1_000 * 10 * S + 3 * S;
        // Held up for 35 s: slots +10, +20 and +30 s were missed. +10 and +20 are skipped, +30
        // (already past) is taken, so the poll starts at once, then +40 as usual.
        let wall = slot + 35 * S;
        let next = next_slot_ms(slot, interval, Duration::ZERO, wall);
        assert_eq!(next, slot + 30 * S);
        assert!(next <= wall, "due at once");
        assert_eq!(
            next_slot_ms(next, interval, Duration::ZERO, wall),
            slot + 40 * S
        );
        // Exactly one interval late: no slot to skip, the missed one is due now.
        assert_eq!(
            next_slot_ms(slot, interval, Duration::ZERO, slot + 10 * S),
            slot + 10 * S
        );
        // Two intervals late: the first missed slot is skipped, the second is due now.
        assert_eq!(
            next_slot_ms(slot, interval, Duration::ZERO, slot + 20 * S),
            slot + 20 * S
        );
    }

    #[test]
    fn phases_are_stable_spread_and_inside_the_interval() {
        for interval_s in [1, 10, 60, 300] {
            let interval = Duration::from_secs(interval_s);
            let phases: Vec<Duration> = (0..50)
                .map(|i| phase_of(&format!("sw{i}"), interval))
                .collect();
            assert!(phases.iter().all(|p| *p < interval));
            assert_eq!(phase_of("sw3", interval), phases[3], "stable");
            let distinct: std::collections::BTreeSet<_> = phases.iter().collect();
            assert!(distinct.len() > 25, "spread: {interval_s}s {distinct:?}");
        }
        // A zero interval does not divide by zero.
        assert_eq!(phase_of("sw1", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_poll_may_take_its_interval_up_to_a_minute() {
        assert_eq!(
            poll_time_limit(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            poll_time_limit(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            poll_time_limit(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn unanswered_timeouts_make_a_device_unreachable_and_probes_do_not_retry() {
        let err = |k: &'static str| Some((k, String::new()));
        for kind in ["timeout", "discovery_timeout", "poll_timeout"] {
            assert!(unreachable_after(err(kind).as_ref(), false), "{kind}");
            assert!(
                !unreachable_after(err(kind).as_ref(), true),
                "{kind} after an answer"
            );
        }
        // An agent that answers with an error, or a wrong password, is reachable.
        for kind in ["agent_error", "wrong_digest", "decode", "send"] {
            assert!(!unreachable_after(err(kind).as_ref(), false), "{kind}");
        }
        assert!(!unreachable_after(None, false));
        assert_eq!(retries_for(true, 3), 0);
        assert_eq!(retries_for(false, 3), 3);
    }

    #[test]
    fn timers_fire_in_order_once_due() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        timers.push(t0 + ms(2000), Timer::PollDue(1));
        timers.push(t0 + ms(500), Timer::Deadline { id: 9, attempt: 0 });
        timers.push(t0 + ms(500), Timer::PollDue(0));
        timers.push(
            t0 + ms(1000),
            Timer::PollDeadline {
                device: 0,
                generation: 1,
            },
        );
        assert_eq!(timers.next_at(), Some(t0 + ms(500)));
        // A request's deadline: not a millisecond early.
        assert_eq!(timers.pop_due(t0 + ms(499)), None);
        let mut due = Vec::new();
        while let Some(t) = timers.pop_due(t0 + ms(1000)) {
            due.push(t);
        }
        assert_eq!(
            due,
            [
                Timer::PollDue(0),
                Timer::Deadline { id: 9, attempt: 0 },
                Timer::PollDeadline {
                    device: 0,
                    generation: 1
                },
            ]
        );
        assert_eq!(timers.next_at(), Some(t0 + ms(2000)));
        assert_eq!(timers.pop_due(t0 + ms(5000)), Some(Timer::PollDue(1)));
        assert_eq!(timers.next_at(), None);
    }
}
