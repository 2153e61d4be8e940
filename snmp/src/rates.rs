//! Interface rates from counter deltas, done right.
//!
//! The anchors this replaces produce spikes after counter resets and agent restarts. Here a
//! rate is only computed when both samples provably come from one uninterrupted counter:
//! the first poll, an agent restart (sysUpTime going back, v3 engine boots changing), a
//! discontinuity (ifCounterDiscontinuityTime changing), a re-indexed interface and a Counter64
//! going back all produce *no* rate, with a note saying why. Time is the agent's (sysUpTime
//! in the response), so scheduling jitter on our side does not bias rates.

use rustc_hash::FxHashMap;

/// Counters of an interface row, in `IfSample::counters` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    InOctets,
    OutOctets,
    InUcastPkts,
    OutUcastPkts,
    InMulticastPkts,
    OutMulticastPkts,
    InBroadcastPkts,
    OutBroadcastPkts,
    InErrors,
    OutErrors,
    InDiscards,
    OutDiscards,
}

/// Number of counters per interface.
pub const COUNTERS: usize = 12;

/// A raw counter value with its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raw {
    C32(u32),
    C64(u64),
}

impl Raw {
    pub fn value(self) -> u64 {
        match self {
            Raw::C32(v) => v as u64,
            Raw::C64(v) => v,
        }
    }
}

/// Why a rate was not computed (or was flagged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateNote {
    /// No earlier sample (first poll of the device or interface, or after a reset).
    First,
    /// sysUpTime went back or the v3 engine boots changed.
    AgentRestart,
    /// The agent's clock did not advance between the samples (agent-side caching).
    ZeroInterval,
    /// ifCounterDiscontinuityTime changed.
    Discontinuity,
    /// The ifIndex now names another interface.
    Reindexed,
    /// A counter changed width (Counter32 ↔ Counter64).
    WidthChanged,
    /// A Counter64 went back.
    CounterReset,
    /// A Counter32 octet counter may have wrapped more than once in the interval.
    C32Ambiguous,
    /// The bit rate exceeds 1.5 × the declared speed. The rate is *kept* (loopback, tunnels,
    /// bridges and veth declare nominal speeds their traffic routinely exceeds); only the
    /// utilization, a percentage of a speed that is not real, is left out.
    ExceedsSpeed,
}

impl RateNote {
    pub const fn label(self) -> &'static str {
        match self {
            RateNote::First => "first",
            RateNote::AgentRestart => "agent_restart",
            RateNote::ZeroInterval => "zero_interval",
            RateNote::Discontinuity => "discontinuity",
            RateNote::Reindexed => "reindexed",
            RateNote::WidthChanged => "width_changed",
            RateNote::CounterReset => "counter_reset",
            RateNote::C32Ambiguous => "c32_ambiguous",
            RateNote::ExceedsSpeed => "exceeds_speed",
        }
    }
}

/// One interface row as polled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfSample {
    /// sysUpTime (ticks of 10 ms) of the response that carried the row.
    pub uptime_ticks: u32,
    /// ifCounterDiscontinuityTime, if the agent has it.
    pub discontinuity_ticks: Option<u32>,
    /// ifName (or ifDescr): identifies the interface behind the ifIndex.
    pub identity: String,
    /// Speed in bit/s if known (ifHighSpeed · 10^6, else ifSpeed).
    pub speed_bps: Option<u64>,
    pub counters: [Option<Raw>; COUNTERS],
}

/// What came out of one row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IfRates {
    /// Seconds between the samples (agent time), if a rate was possible at all.
    pub interval_s: Option<f64>,
    /// Per-second rates in counter order (octets per second for the octet counters).
    pub per_second: [Option<f64>; COUNTERS],
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
    /// Percent of the speed.
    pub in_util: Option<f64>,
    pub out_util: Option<f64>,
    /// The first reason a rate was left out, or (ExceedsSpeed) flagged, if any.
    pub note: Option<RateNote>,
    /// Rates dropped in this row (one per counter).
    pub dropped: u32,
}

#[derive(Clone, Debug)]
struct IfBaseline {
    sample: IfSample,
}

/// Baselines of one device.
#[derive(Clone, Debug, Default)]
pub struct DeviceRates {
    uptime: Option<u32>,
    boots: Option<u32>,
    ifs: FxHashMap<u32, IfBaseline>,
}

/// Octet counters: more than this fraction of the speed means the speed is nominal.
const EXCEEDS_SPEED_FACTOR: f64 = 1.5;

impl DeviceRates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything (reload with changed address or credentials).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Start a poll with the device's sysUpTime and (v3) engine boots. Returns the note that
    /// applies to every row of this poll, if rates are impossible for the whole device.
    pub fn begin_poll(&mut self, uptime_ticks: u32, boots: Option<u32>) -> Option<RateNote> {
        let note = match (self.uptime, self.boots) {
            (None, _) => Some(RateNote::First),
            (_, Some(b)) if boots.is_some_and(|n| n != b) => Some(RateNote::AgentRestart),
            // sysUpTime going back: restart (also its 2^32-tick wrap after 497 days, which is
            // indistinguishable from a restart without engine boots).
            (Some(u), _) if uptime_ticks < u => Some(RateNote::AgentRestart),
            _ => None,
        };
        if note.is_some() {
            // Baselines from before a restart are worthless.
            self.ifs.clear();
        }
        self.uptime = Some(uptime_ticks);
        self.boots = boots.or(self.boots);
        note
    }

    /// Rates for one interface row; the row becomes the new baseline whatever happens.
    pub fn interface(
        &mut self,
        device_note: Option<RateNote>,
        if_index: u32,
        s: &IfSample,
    ) -> IfRates {
        let prev = self.ifs.insert(if_index, IfBaseline { sample: s.clone() });
        let mut out = IfRates::default();
        let Some(prev) = prev.map(|b| b.sample) else {
            out.note = Some(device_note.unwrap_or(RateNote::First));
            out.dropped = count(s);
            return out;
        };
        let row_note = device_note
            .or_else(|| (prev.identity != s.identity).then_some(RateNote::Reindexed))
            .or_else(|| {
                (prev.discontinuity_ticks != s.discontinuity_ticks)
                    .then_some(RateNote::Discontinuity)
            })
            .or_else(|| match s.uptime_ticks.checked_sub(prev.uptime_ticks) {
                None => Some(RateNote::AgentRestart),
                Some(0) => Some(RateNote::ZeroInterval),
                Some(_) => None,
            });
        if let Some(n) = row_note {
            out.note = Some(n);
            out.dropped = count(s);
            return out;
        }
        let dt = (s.uptime_ticks - prev.uptime_ticks) as f64 / 100.0;
        out.interval_s = Some(dt);
        for i in 0..COUNTERS {
            let (now, then) = match (s.counters[i], prev.counters[i]) {
                (Some(now), Some(then)) => (now, then),
                (Some(_), None) => {
                    // A counter the previous poll did not have (a Counter32-only device's
                    // first poll walks no 32-bit counters): its first sample.
                    out.note.get_or_insert(RateNote::First);
                    out.dropped += 1;
                    continue;
                }
                _ => continue,
            };
            let octets = i == Counter::InOctets as usize || i == Counter::OutOctets as usize;
            let delta = match (now, then) {
                (Raw::C64(n), Raw::C64(p)) => {
                    if n < p {
                        out.note.get_or_insert(RateNote::CounterReset);
                        out.dropped += 1;
                        continue;
                    }
                    n - p
                }
                (Raw::C32(n), Raw::C32(p)) => {
                    let d = n.wrapping_sub(p) as u64;
                    // One wrap is certain; more than one is possible if the link could have
                    // moved 2^32 octets in the interval.
                    if octets
                        && n < p
                        && s.speed_bps
                            .is_some_and(|bps| bps as f64 / 8.0 * dt >= 4_294_967_296.0)
                    {
                        out.note.get_or_insert(RateNote::C32Ambiguous);
                        out.dropped += 1;
                        continue;
                    }
                    d
                }
                _ => {
                    out.note.get_or_insert(RateNote::WidthChanged);
                    out.dropped += 1;
                    continue;
                }
            };
            out.per_second[i] = Some(delta as f64 / dt);
        }
        out.in_bps = out.per_second[Counter::InOctets as usize].map(|r| r * 8.0);
        out.out_bps = out.per_second[Counter::OutOctets as usize].map(|r| r * 8.0);
        if let Some(speed) = s.speed_bps.filter(|&b| b > 0) {
            let speed = speed as f64;
            let real = |bps: f64| bps <= EXCEEDS_SPEED_FACTOR * speed;
            if out.in_bps.is_some_and(|b| !real(b)) || out.out_bps.is_some_and(|b| !real(b)) {
                out.note.get_or_insert(RateNote::ExceedsSpeed);
            }
            out.in_util = out.in_bps.filter(|&b| real(b)).map(|b| 100.0 * b / speed);
            out.out_util = out.out_bps.filter(|&b| real(b)).map(|b| 100.0 * b / speed);
        }
        out
    }

    /// Drop baselines of interfaces that are gone.
    pub fn retain(&mut self, mut present: impl FnMut(u32) -> bool) {
        self.ifs.retain(|i, _| present(*i));
    }
}

fn count(s: &IfSample) -> u32 {
    s.counters.iter().filter(|c| c.is_some()).count() as u32
}

/// Interface speed in bit/s from ifHighSpeed (Mb/s) and ifSpeed (b/s, saturating at 2^32-1).
pub fn speed_bps(if_high_speed_mbps: Option<u64>, if_speed: Option<u64>) -> Option<u64> {
    match (if_high_speed_mbps, if_speed) {
        (Some(h), _) if h > 0 => Some(h * 1_000_000),
        (_, Some(s)) if s > 0 && s < u32::MAX as u64 => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(uptime: u32, in_octets: Raw) -> IfSample {
        let mut counters = [None; COUNTERS];
        counters[Counter::InOctets as usize] = Some(in_octets);
        counters[Counter::InErrors as usize] = Some(Raw::C32(uptime / 100));
        IfSample {
            uptime_ticks: uptime,
            discontinuity_ticks: Some(0),
            identity: "ge-0/0/0".into(),
            speed_bps: Some(1_000_000_000),
            counters,
        }
    }

    fn poll(d: &mut DeviceRates, uptime: u32, boots: Option<u32>, s: &IfSample) -> IfRates {
        let note = d.begin_poll(uptime, boots);
        d.interface(note, 1, s)
    }

    #[test]
    fn first_poll_gives_no_rate_then_rates_flow() {
        let mut d = DeviceRates::new();
        let r = poll(&mut d, 1000, None, &sample(1000, Raw::C64(0)));
        assert_eq!((r.note, r.in_bps), (Some(RateNote::First), None));
        // 10 s later, 12.5 MB more: 10 Mb/s, 1 % of 1 Gb/s.
        let r = poll(&mut d, 2000, None, &sample(2000, Raw::C64(12_500_000)));
        assert_eq!(r.note, None);
        assert_eq!(r.interval_s, Some(10.0));
        assert_eq!(r.in_bps, Some(10_000_000.0));
        assert_eq!(r.in_util, Some(1.0));
    }

    #[test]
    fn counter32_wraps_once() {
        let mut d = DeviceRates::new();
        let mut slow = sample(1000, Raw::C32(u32::MAX - 99));
        slow.speed_bps = Some(10_000_000);
        poll(&mut d, 1000, None, &slow);
        let mut next = sample(2000, Raw::C32(900));
        next.speed_bps = Some(10_000_000);
        let r = poll(&mut d, 2000, None, &next);
        assert_eq!(
            r.per_second[0],
            Some(100.0),
            "1000 octets in 10 s across the wrap"
        );
    }

    #[test]
    fn counter32_wrap_ambiguous_on_fast_links() {
        let mut d = DeviceRates::new();
        poll(&mut d, 1000, None, &sample(1000, Raw::C32(4_000_000_000)));
        // 1 Gb/s moves 2^32 octets in ~34 s; after 60 s a wrap could be double.
        let r = poll(&mut d, 7000, None, &sample(7000, Raw::C32(5)));
        assert_eq!(r.note, Some(RateNote::C32Ambiguous));
        assert_eq!(r.in_bps, None);
    }

    #[test]
    fn counter64_going_back_is_a_reset_not_a_spike() {
        let mut d = DeviceRates::new();
        poll(&mut d, 1000, None, &sample(1000, Raw::C64(5_000_000)));
        let r = poll(&mut d, 2000, None, &sample(2000, Raw::C64(10)));
        assert_eq!(r.note, Some(RateNote::CounterReset));
        assert_eq!(r.in_bps, None);
    }

    #[test]
    fn agent_restart_and_uptime_wrap_give_no_sample() {
        let mut d = DeviceRates::new();
        poll(&mut d, 500_000, None, &sample(500_000, Raw::C64(1 << 40)));
        let r = poll(&mut d, 300, None, &sample(300, Raw::C64(1000)));
        assert_eq!(r.note, Some(RateNote::AgentRestart));
        // The next poll rates from the post-restart baseline.
        let r = poll(&mut d, 1300, None, &sample(1300, Raw::C64(2000)));
        assert_eq!(r.in_bps, Some(800.0));
    }

    #[test]
    fn engine_boots_change_is_a_restart() {
        let mut d = DeviceRates::new();
        poll(&mut d, 1000, Some(4), &sample(1000, Raw::C64(0)));
        let r = poll(&mut d, 2000, Some(5), &sample(2000, Raw::C64(1000)));
        assert_eq!(r.note, Some(RateNote::AgentRestart));
    }

    #[test]
    fn discontinuity_and_reindex_and_zero_interval() {
        let mut d = DeviceRates::new();
        poll(&mut d, 1000, None, &sample(1000, Raw::C64(0)));
        let mut s = sample(2000, Raw::C64(100));
        s.discontinuity_ticks = Some(1500);
        assert_eq!(
            poll(&mut d, 2000, None, &s).note,
            Some(RateNote::Discontinuity)
        );
        let mut s = sample(3000, Raw::C64(200));
        s.discontinuity_ticks = Some(1500);
        s.identity = "ge-0/0/9".into();
        assert_eq!(poll(&mut d, 3000, None, &s).note, Some(RateNote::Reindexed));
        let mut s = sample(3000, Raw::C64(300));
        s.discontinuity_ticks = Some(1500);
        s.identity = "ge-0/0/9".into();
        assert_eq!(
            poll(&mut d, 3000, None, &s).note,
            Some(RateNote::ZeroInterval)
        );
    }

    #[test]
    fn over_the_declared_speed_keeps_the_rate_and_flags_it() {
        let mut d = DeviceRates::new();
        poll(&mut d, 1000, None, &sample(1000, Raw::C64(0)));
        // 10 Gb/s on a port declaring 1 Gb/s (lo, tunnels, bridges, veth do that).
        let r = poll(&mut d, 2000, None, &sample(2000, Raw::C64(12_500_000_000)));
        assert_eq!(r.note, Some(RateNote::ExceedsSpeed));
        assert_eq!(r.in_bps, Some(10_000_000_000.0), "the rate is kept");
        assert_eq!(
            r.in_util, None,
            "1000 % of a nominal speed is not a utilization"
        );
        assert_eq!(r.dropped, 0, "nothing dropped");
        let mut d = DeviceRates::new();
        let mut s = sample(1000, Raw::C64(0));
        s.speed_bps = None;
        poll(&mut d, 1000, None, &s);
        let mut s = sample(2000, Raw::C64(1250));
        s.speed_bps = None;
        let r = poll(&mut d, 2000, None, &s);
        assert_eq!((r.in_bps, r.in_util), (Some(1000.0), None));
    }

    #[test]
    fn counters_that_appear_later_are_a_first_sample_with_a_note() {
        // A Counter32-only device: the first poll has no octet counters (it looked for HC
        // ones), the second has ifTable's, the third rates them.
        let mut d = DeviceRates::new();
        let mut s = sample(1000, Raw::C32(0));
        s.counters[Counter::InOctets as usize] = None;
        poll(&mut d, 1000, None, &s);
        let r = poll(&mut d, 2000, None, &sample(2000, Raw::C32(1000)));
        assert_eq!((r.in_bps, r.note), (None, Some(RateNote::First)));
        assert_eq!(
            r.per_second[Counter::InErrors as usize],
            Some(1.0),
            "others rate"
        );
        let r = poll(&mut d, 3000, None, &sample(3000, Raw::C32(2250)));
        assert_eq!((r.in_bps, r.note), (Some(1000.0), None));
    }

    #[test]
    fn speed_prefers_high_speed() {
        assert_eq!(
            speed_bps(Some(10_000), Some(u32::MAX as u64)),
            Some(10_000_000_000)
        );
        assert_eq!(speed_bps(Some(0), Some(100_000_000)), Some(100_000_000));
        assert_eq!(speed_bps(Some(0), Some(u32::MAX as u64)), None);
        assert_eq!(speed_bps(None, None), None);
    }
}
