//! Liveness of the data path: every pipeline thread (receive threads, parse workers, sinks)
//! bumps its own [`Heartbeat`] as it makes progress, and marks itself idle before waiting for
//! input. [`Liveness`] samples them: a thread that has beaten lately, or is waiting for input,
//! is alive; one that has done neither for [`STALL_AFTER`] is stuck in a call.
//!
//! The systemd watchdog and `/readyz` are fed from this, not from the control-plane runtime,
//! which kept answering through a 60-s total stall of the pipeline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a thread may go without progress, outside an idle wait, before it counts as
/// stuck. Longer than one sink request against a server that does not answer, with the default
/// `request_timeout` (10 s), so a hung QuestDB retried every 10 s reads as a sink retrying, not
/// as a stall; far shorter than the 60-s stalls this exists to catch.
pub const STALL_AFTER: Duration = Duration::from_secs(15);

/// How often [`Liveness`] samples the heartbeats.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// One thread's progress. Only its thread writes it.
#[derive(Debug)]
pub struct Heartbeat {
    name: String,
    beats: AtomicU64,
    idle: AtomicBool,
}

impl Heartbeat {
    pub fn new(name: impl Into<String>) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            name: name.into(),
            beats: AtomicU64::new(0),
            idle: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Progress was made (and the thread is not waiting for input).
    #[inline]
    pub fn beat(&self) {
        // A single writer: a load and a store, no read-modify-write on the hot path.
        self.beats.store(
            self.beats.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        if self.idle.load(Ordering::Relaxed) {
            self.idle.store(false, Ordering::Relaxed);
        }
    }

    /// About to wait for input (an empty ring, an empty queue, a quiet socket): alive however
    /// long the wait, until the next [`beat`](Self::beat).
    #[inline]
    pub fn idle(&self) {
        if !self.idle.load(Ordering::Relaxed) {
            self.idle.store(true, Ordering::Relaxed);
        }
    }
}

/// A thread's state as last sampled.
#[derive(Debug)]
struct Sampled {
    beats: u64,
    changed: Instant,
}

/// The pipeline's heartbeats and which of them have stalled.
#[derive(Debug, Default)]
pub struct Liveness {
    hearts: Mutex<Vec<(Arc<Heartbeat>, Sampled)>>,
    /// Names of threads stuck at the last sample.
    stalled: Mutex<Vec<String>>,
    healthy: AtomicBool,
    /// Set when the pipeline stops: threads that finished stop beating, which is no stall.
    stopping: AtomicBool,
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            healthy: AtomicBool::new(true),
            ..Liveness::default()
        })
    }

    /// Watch `heart` from now on.
    pub fn register(&self, heart: Arc<Heartbeat>) {
        if let Ok(mut h) = self.hearts.lock() {
            let beats = heart.beats.load(Ordering::Relaxed);
            h.push((
                heart,
                Sampled {
                    beats,
                    changed: Instant::now(),
                },
            ));
        }
    }

    /// A new heartbeat named `name`, watched.
    pub fn heartbeat(&self, name: impl Into<String>) -> Arc<Heartbeat> {
        let h = Heartbeat::new(name);
        self.register(h.clone());
        h
    }

    /// Sample every heartbeat at `now`; returns the names of stuck threads.
    pub fn sample(&self, now: Instant) -> Vec<String> {
        let mut stuck = Vec::new();
        if let Ok(mut hearts) = self.hearts.lock() {
            for (heart, seen) in hearts.iter_mut() {
                let beats = heart.beats.load(Ordering::Relaxed);
                if beats != seen.beats {
                    *seen = Sampled {
                        beats,
                        changed: now,
                    };
                } else if heart.idle.load(Ordering::Relaxed) {
                    // Waiting for input is not a stall; the clock restarts when it wakes.
                    seen.changed = now;
                } else if now.duration_since(seen.changed) >= STALL_AFTER {
                    stuck.push(heart.name.clone());
                }
            }
        }
        self.healthy.store(stuck.is_empty(), Ordering::Relaxed);
        if let Ok(mut s) = self.stalled.lock() {
            s.clone_from(&stuck);
        }
        stuck
    }

    /// True when no thread was stuck at the last sample.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Threads stuck at the last sample.
    pub fn stalled(&self) -> Vec<String> {
        self.stalled.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The pipeline is stopping: sampling ends, the last verdict stands.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Threads watched.
    pub fn threads(&self) -> usize {
        self.hearts.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Sample every [`SAMPLE_EVERY`] on a thread of its own (it ends with the last `Arc`),
    /// logging when threads stall and recover.
    pub fn spawn_sampler(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Liveness> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("nmsd-liveness".into())
            .spawn(move || {
                let mut was: Vec<String> = Vec::new();
                while let Some(l) = weak.upgrade() {
                    if l.stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let stuck = l.sample(Instant::now());
                    drop(l);
                    if stuck != was {
                        if stuck.is_empty() {
                            tracing::info!("pipeline threads are all making progress again");
                        } else {
                            tracing::error!(
                                threads = ?stuck,
                                "pipeline threads made no progress for {}s outside an idle \
                                 wait: not ready, and the systemd watchdog is no longer fed",
                                STALL_AFTER.as_secs()
                            );
                        }
                        was = stuck;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_threads_are_alive_and_threads_stuck_in_a_call_are_not() {
        let l = Liveness::new();
        let busy = l.heartbeat("busy");
        let idle = l.heartbeat("idle");
        let stuck = l.heartbeat("stuck");
        let t0 = Instant::now();
        busy.beat();
        idle.idle();
        stuck.beat();
        assert!(l.sample(t0).is_empty());
        // Later: busy keeps beating, idle still waits for input, stuck never came back.
        let later = t0 + STALL_AFTER + Duration::from_secs(1);
        busy.beat();
        assert_eq!(l.sample(later), ["stuck"]);
        assert!(!l.healthy());
        assert_eq!(l.stalled(), ["stuck"]);
        // It returns and goes idle: alive again.
        stuck.beat();
        stuck.idle();
        assert!(l.sample(later + Duration::from_secs(1)).is_empty());
        assert!(l.healthy());
    }

    #[test]
    fn a_thread_that_wakes_from_idle_gets_a_full_stall_period() {
        let l = Liveness::new();
        let h = l.heartbeat("worker");
        let t0 = Instant::now();
        h.idle();
        l.sample(t0 + Duration::from_secs(60));
        // Woke (beat) and is now in a long call.
        h.beat();
        assert!(l.sample(t0 + Duration::from_secs(61)).is_empty());
        assert!(
            l.sample(t0 + Duration::from_secs(61) + STALL_AFTER)
                .contains(&"worker".to_string())
        );
    }
}
