//! Timeliness and replay checks for authenticated SNMPv3 notifications (RFC 3414 §3.2.7).
//!
//! A v3 TRAP's sender is the authoritative engine, so its boots and time can only be judged
//! against what earlier messages from that engine said: per engine, the highest boots seen,
//! the latest time at those boots, and when that time was received, from which the engine's
//! current time is estimated. A message is late when its boots are lower, or equal with a time
//! more than 150 s behind the estimate (or boots are at their 2³¹−1 ceiling). An INFORM names
//! nmsd as authoritative and is judged against nmsd's own clock by the caller.
//!
//! Timeliness alone admits a captured message again for up to 150 s (300 s for INFORMs, whose
//! time may be up to 150 s ahead of ours). So every admitted message's MAC is also remembered
//! until the message would be late anyway, and a second copy is a replay. The memory is
//! bounded: when full, the oldest entry is forgotten early and its engine gets a *floor* (boots,
//! time): a message at or below it is refused as late, so a forgotten message still cannot be
//! replayed (at worst a fresh message in the same second as a forgotten one is refused too).
//!
//! Per-engine state is only created or advanced by messages whose MAC verified, so only holders
//! of a configured user's keys can add engines. It is bounded too; when full, the engines not
//! heard from for longest are forgotten, and a forgotten engine starts afresh (as at start-up)
//! — the replay memory still covers its last 150 s.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

/// RFC 3414 §3.2.7: 150 s either side.
pub const TIME_WINDOW: u32 = 150;
/// snmpEngineBoots at its ceiling: the engine must be reconfigured, nothing it sends is timely.
pub const BOOTS_MAX: u32 = 0x7FFF_FFFF;
/// Remembered MACs (about 60 bytes each): ~870 authenticated notifications/s sustained for
/// 150 s before entries are forgotten early (see the module doc).
const SEEN_MAX: usize = 1 << 18;
/// Engines whose clocks are tracked.
const ENGINES_MAX: usize = 1 << 16;

/// What [`Freshness::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen and in its time window: store it.
    Fresh,
    /// Exactly this message was admitted before (same engine and MAC).
    Replay,
    /// Outside the time window (usmStatsNotInTimeWindows).
    Late,
}

#[derive(Clone, Copy, Debug)]
struct EngineClock {
    boots: u32,
    /// latestReceivedEngineTime at `boots`.
    latest: u32,
    /// When `latest` was received (ms on our clock): the estimate of the engine's time now is
    /// `latest` plus the seconds since.
    at_ms: u64,
    /// Last admitted message (for choosing engines to forget).
    used_ms: u64,
    /// Messages at or below this (boots, time) are refused: their MACs were forgotten early.
    floor: Option<(u32, u32)>,
}

/// Remembered message: engine (keyed hash of its ID) and the first 12 bytes of its MAC (every
/// USM MAC is at least 12 bytes, and unforgeable without the key).
type SeenKey = (u64, [u8; 12]);

#[derive(Clone, Copy, Debug)]
struct Seen {
    key: SeenKey,
    boots: u32,
    time: u32,
    expires_ms: u64,
}

/// Whose clock a message is judged against.
#[derive(Clone, Copy, Debug)]
pub enum Authority {
    /// The sender's (TRAP): per-engine estimate.
    Remote,
    /// Ours (INFORM), already checked by the caller to be within the window; `now` is our
    /// snmpEngineTime.
    Local { now: u32 },
}

pub struct Freshness {
    /// Keyed per process: engine IDs come off the wire, collisions must not be choosable.
    hasher: std::hash::RandomState,
    start: Instant,
    engines: FxHashMap<u64, EngineClock>,
    seen: FxHashSet<SeenKey>,
    order: VecDeque<Seen>,
    seen_max: usize,
    engines_max: usize,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness::with_limits(SEEN_MAX, ENGINES_MAX)
    }
}

impl Freshness {
    fn with_limits(seen_max: usize, engines_max: usize) -> Self {
        Freshness {
            hasher: std::hash::RandomState::new(),
            start: Instant::now(),
            engines: FxHashMap::default(),
            seen: FxHashSet::default(),
            order: VecDeque::new(),
            seen_max: seen_max.max(1),
            engines_max: engines_max.max(1),
        }
    }

    /// A keyed hash of an engine ID (also used by the key cache).
    pub fn engine_key(&self, engine_id: &[u8]) -> u64 {
        self.hasher.hash_one(engine_id)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Judge an authenticated message (its MAC already verified) and, if fresh, remember it
    /// and advance the engine's clock.
    pub fn admit(
        &mut self,
        engine: u64,
        boots: u32,
        time: u32,
        mac: &[u8],
        authority: Authority,
    ) -> Verdict {
        self.admit_at(self.now_ms(), engine, boots, time, mac, authority)
    }

    fn admit_at(
        &mut self,
        now_ms: u64,
        engine: u64,
        boots: u32,
        time: u32,
        mac: &[u8],
        authority: Authority,
    ) -> Verdict {
        self.expire(now_ms);
        if boots >= BOOTS_MAX {
            return Verdict::Late;
        }
        let clock = self.engines.get(&engine).copied();
        if let (Authority::Remote, Some(c)) = (authority, clock) {
            if boots < c.boots {
                return Verdict::Late;
            }
            if boots == c.boots {
                let estimate = c.latest as u64 + now_ms.saturating_sub(c.at_ms) / 1000;
                if (time as u64) + (TIME_WINDOW as u64) < estimate {
                    return Verdict::Late;
                }
            }
        }
        if let Some((fb, ft)) = clock.and_then(|c| c.floor)
            && (boots < fb || (boots == fb && time <= ft))
        {
            return Verdict::Late;
        }
        let mut m = [0u8; 12];
        let n = mac.len().min(12);
        m[..n].copy_from_slice(&mac[..n]);
        let key = (engine, m);
        if self.seen.contains(&key) {
            return Verdict::Replay;
        }
        // Until when a copy would still pass the window check: a remote engine's estimate
        // runs at least as fast as our clock from `time` on; ours is `now`, the message's time
        // may be ahead of it.
        let valid_s = match authority {
            Authority::Remote => TIME_WINDOW as u64 + 1,
            Authority::Local { now } => (time as u64 + TIME_WINDOW as u64 + 1)
                .saturating_sub(now as u64)
                .max(1),
        };
        while self.order.len() >= self.seen_max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&old.key);
            if old.expires_ms > now_ms {
                self.raise_floor(old.key.0, old.boots, old.time, now_ms);
            }
        }
        self.seen.insert(key);
        self.order.push_back(Seen {
            key,
            boots,
            time,
            expires_ms: now_ms + valid_s * 1000,
        });
        match authority {
            Authority::Remote => self.advance(engine, boots, time, now_ms),
            Authority::Local { .. } => {
                if let Some(c) = self.engines.get_mut(&engine) {
                    c.used_ms = now_ms;
                }
            }
        }
        Verdict::Fresh
    }

    fn expire(&mut self, now_ms: u64) {
        // Entries expire roughly in insertion order (INFORM entries may live a little longer
        // than those behind them; they are then only kept a little longer).
        while let Some(s) = self.order.front()
            && s.expires_ms <= now_ms
        {
            self.seen.remove(&s.key);
            self.order.pop_front();
        }
    }

    fn clock_entry(&mut self, engine: u64, now_ms: u64) -> &mut EngineClock {
        if !self.engines.contains_key(&engine) && self.engines.len() >= self.engines_max {
            self.forget_engines();
        }
        self.engines.entry(engine).or_insert(EngineClock {
            boots: 0,
            latest: 0,
            at_ms: now_ms,
            used_ms: now_ms,
            floor: None,
        })
    }

    /// RFC 3414 §3.2.7 b: advance the local notion of the engine's boots and time.
    fn advance(&mut self, engine: u64, boots: u32, time: u32, now_ms: u64) {
        let fresh = !self.engines.contains_key(&engine);
        let c = self.clock_entry(engine, now_ms);
        if fresh || boots > c.boots || (boots == c.boots && time > c.latest) {
            if boots > c.boots {
                c.floor = None;
            }
            c.boots = boots;
            c.latest = time;
            c.at_ms = now_ms;
        }
        c.used_ms = now_ms;
    }

    fn raise_floor(&mut self, engine: u64, boots: u32, time: u32, now_ms: u64) {
        let fresh = !self.engines.contains_key(&engine);
        let c = self.clock_entry(engine, now_ms);
        if fresh {
            // Known only through its floor (an engine forgotten meanwhile, or nmsd itself).
            c.boots = boots;
            c.latest = time;
        }
        c.floor = Some(c.floor.map_or((boots, time), |f| f.max((boots, time))));
    }

    /// Forget the eighth of the engines heard from least recently.
    fn forget_engines(&mut self) {
        let mut used: Vec<u64> = self.engines.values().map(|c| c.used_ms).collect();
        let k = (used.len() / 8).max(1).min(used.len() - 1);
        let (_, cut, _) = used.select_nth_unstable(k);
        let cut = *cut;
        self.engines.retain(|_, c| c.used_ms > cut);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Authority = Authority::Remote;

    #[test]
    fn replays_are_caught_until_they_would_be_late() {
        let mut f = Freshness::default();
        let e = f.engine_key(b"\x80\x00\x1f\x88\x80abc");
        let mac = [7u8; 12];
        assert_eq!(f.admit_at(0, e, 1, 5000, &mac, R), Verdict::Fresh);
        for _ in 0..10 {
            assert_eq!(f.admit_at(10, e, 1, 5000, &mac, R), Verdict::Replay);
        }
        // 151 s later the MAC is forgotten, but the copy is late by then.
        assert_eq!(f.admit_at(151_000, e, 1, 5000, &mac, R), Verdict::Late);
        assert_eq!(f.remembered(), 0);
        // Another message from the same second is fine while it is in the window.
        assert_eq!(f.admit_at(20, e, 1, 5000, &[8u8; 12], R), Verdict::Fresh);
    }

    #[test]
    fn old_boots_and_old_times_are_late() {
        let mut f = Freshness::default();
        let e = f.engine_key(b"engine");
        assert_eq!(f.admit_at(0, e, 5, 1000, &[1; 12], R), Verdict::Fresh);
        assert_eq!(
            f.admit_at(0, e, 4, 9999, &[2; 12], R),
            Verdict::Late,
            "lower boots"
        );
        assert_eq!(
            f.admit_at(0, e, 5, 849, &[3; 12], R),
            Verdict::Late,
            "151 s older"
        );
        assert_eq!(
            f.admit_at(0, e, 5, 850, &[4; 12], R),
            Verdict::Fresh,
            "150 s older"
        );
        // The estimate moves with our clock: 100 s later, 1000 + 100 − 150 = 950 is the limit.
        assert_eq!(f.admit_at(100_000, e, 5, 949, &[5; 12], R), Verdict::Late);
        assert_eq!(f.admit_at(100_000, e, 5, 950, &[6; 12], R), Verdict::Fresh);
        // A reboot (higher boots) resets time.
        assert_eq!(f.admit_at(100_000, e, 6, 3, &[7; 12], R), Verdict::Fresh);
        assert_eq!(f.admit_at(100_000, e, 5, 2000, &[8; 12], R), Verdict::Late);
        assert_eq!(f.admit_at(0, e, BOOTS_MAX, 1, &[9; 12], R), Verdict::Late);
        // net-snmp's snmptrap sends the system uptime in centiseconds, 100 "seconds" a second:
        // ahead of the estimate is fine.
        let n = f.engine_key(b"snmptrap");
        for i in 0..5u32 {
            let mac = [i as u8 + 1; 12];
            let t = 43_822 + 101 * i;
            assert_eq!(
                f.admit_at(i as u64 * 1000, n, 1, t, &mac, R),
                Verdict::Fresh
            );
        }
    }

    #[test]
    fn other_engines_are_independent() {
        let mut f = Freshness::default();
        let (a, b) = (f.engine_key(b"a"), f.engine_key(b"b"));
        assert_eq!(f.admit_at(0, a, 9, 1000, &[1; 12], R), Verdict::Fresh);
        assert_eq!(
            f.admit_at(0, b, 1, 1, &[1; 12], R),
            Verdict::Fresh,
            "same MAC, other engine"
        );
    }

    #[test]
    fn informs_stay_remembered_while_our_clock_allows_them() {
        let mut f = Freshness::default();
        let us = f.engine_key(b"nmsd");
        // Sent claiming 100 s ahead of our clock: valid until our clock passes 1250.
        let local = Authority::Local { now: 1000 };
        assert_eq!(f.admit_at(0, us, 3, 1100, &[1; 12], local), Verdict::Fresh);
        assert_eq!(
            f.admit_at(240_000, us, 3, 1100, &[1; 12], local),
            Verdict::Replay
        );
        assert_eq!(f.remembered(), 1);
        f.expire(252_000);
        assert_eq!(f.remembered(), 0);
    }

    #[test]
    fn a_full_memory_refuses_what_it_forgot() {
        let mut f = Freshness::with_limits(4, 16);
        let e = f.engine_key(b"e");
        for i in 0..4u8 {
            assert_eq!(
                f.admit_at(0, e, 2, 100 + i as u32, &[i; 12], R),
                Verdict::Fresh
            );
        }
        // A fifth pushes out the first (time 100) early: its replay is now refused as late.
        assert_eq!(f.admit_at(0, e, 2, 104, &[4; 12], R), Verdict::Fresh);
        assert_eq!(f.remembered(), 4);
        assert_eq!(f.admit_at(0, e, 2, 100, &[0; 12], R), Verdict::Late);
        assert_eq!(f.admit_at(0, e, 2, 101, &[1; 12], R), Verdict::Replay);
        assert_eq!(f.admit_at(0, e, 2, 105, &[5; 12], R), Verdict::Fresh);
        // Forgetting our own INFORMs early sets a floor for our engine too.
        let us = f.engine_key(b"nmsd");
        let local = Authority::Local { now: 500 };
        for i in 0..5u8 {
            f.admit_at(0, us, 1, 500 + i as u32, &[100 + i; 12], local);
        }
        assert_eq!(f.admit_at(0, us, 1, 500, &[100; 12], local), Verdict::Late);
    }

    #[test]
    fn engine_memory_is_bounded() {
        let mut f = Freshness::with_limits(1 << 10, 16);
        for i in 0..100u32 {
            let e = f.engine_key(&i.to_be_bytes());
            f.admit_at(i as u64, e, 1, 1, &[i as u8; 12], R);
            assert!(f.engines.len() <= 16);
        }
        // The most recent engine is still tracked.
        let last = f.engine_key(&99u32.to_be_bytes());
        assert_eq!(f.admit_at(200, last, 0, 1, &[1; 12], R), Verdict::Late);
    }
}
