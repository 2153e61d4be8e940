//! `rollup`: per-window aggregates of flows by exporter, addresses, protocol, destination port
//! and interfaces (the `flows_1m` table).
//!
//! Flows are bucketed by their end time. Windows are emitted once per window length, at each
//! window boundary plus `flush_delay` (e.g. at hh:mm:30 for 1-minute windows and a 30 s delay),
//! which leaves time for exporters' late records. Records that still arrive for an emitted
//! window (routers export long flows minutes after they end) open it again and are emitted at the
//! next emission point, as one extra row per key: sums over the table stay exact, and the number
//! of rows per key and window stays small (at most one per emission point the records straddle).

use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::{BuildProcessor, Emitter, Processor};
use crate::records::{FlowRecord, RollupRow};
use crate::units::HumanDuration;

/// `[[processors]] type = "rollup"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupConfig {
    /// Window length. Default 1m.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// How long after a window ends it stays open for late records. Default 30s.
    #[serde(default = "default_flush_delay")]
    pub flush_delay: HumanDuration,
    /// Most keys held per worker; beyond it every open window is emitted early (and counted).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_window() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_flush_delay() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_max_keys() -> usize {
    1_000_000
}

impl Default for RollupConfig {
    fn default() -> Self {
        RollupConfig {
            window: default_window(),
            flush_delay: default_flush_delay(),
            max_keys: default_max_keys(),
        }
    }
}

impl BuildProcessor for RollupConfig {
    fn build(&self) -> Box<dyn Processor> {
        Box::new(Rollup::new(self))
    }
}

/// The aggregation key, packed for the hash map: addresses as IPv6 (IPv4-mapped) integers, the
/// window as its index. Profiling showed the map lookup as the worker's largest cost with
/// `IpAddr` fields (72-byte keys hashed field by field); this key hashes in three words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RollupKey {
    src: u128,
    dst: u128,
    exporter: u128,
    /// window index << 32 | in_if
    window_in: u64,
    /// out_if << 32 | dst_port << 8 | protocol
    out_port_proto: u64,
}

impl std::hash::Hash for RollupKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // The exporter rarely varies within a worker; folding it into the other words keeps
        // the hash to four multiply rounds.
        h.write_u128(self.src ^ self.exporter.rotate_left(64));
        h.write_u128(self.dst);
        h.write_u64(self.window_in ^ self.out_port_proto.rotate_left(17));
    }
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn bits_addr(b: u128) -> IpAddr {
    std::net::Ipv6Addr::from(b).to_canonical()
}

impl RollupKey {
    fn new(f: &FlowRecord, window_ms: u64) -> Self {
        let window = f.end_ms / window_ms;
        RollupKey {
            src: addr_bits(f.src_addr),
            dst: addr_bits(f.dst_addr),
            exporter: addr_bits(f.exporter),
            window_in: (window << 32) | f.in_if as u64,
            out_port_proto: (f.out_if as u64) << 32 | (f.dst_port as u64) << 8 | f.protocol as u64,
        }
    }

    fn window_start_ms(&self, window_ms: u64) -> u64 {
        (self.window_in >> 32) * window_ms
    }

    fn row(&self, window_ms: u64, t: &Totals) -> RollupRow {
        RollupRow {
            window_start_ms: self.window_start_ms(window_ms),
            exporter: bits_addr(self.exporter),
            src_addr: bits_addr(self.src),
            dst_addr: bits_addr(self.dst),
            protocol: self.out_port_proto as u8,
            dst_port: (self.out_port_proto >> 8) as u16,
            in_if: self.window_in as u32,
            out_if: (self.out_port_proto >> 32) as u32,
            bytes: t.bytes,
            packets: t.packets,
            flows: t.flows,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    bytes: u64,
    packets: u64,
    flows: u64,
}

/// The roll-up processor.
pub struct Rollup {
    window_ms: u64,
    flush_delay_ms: u64,
    max_keys: usize,
    open: FxHashMap<RollupKey, Totals>,
    /// Earliest window start held, to skip scanning when nothing can be due.
    oldest_window: Option<u64>,
    /// Wall-clock time of the next emission point.
    next_emit_ms: u64,
    forced_flushes: metrics::Counter,
    keys_gauge: metrics::Gauge,
}

impl Rollup {
    pub fn new(c: &RollupConfig) -> Self {
        Rollup {
            window_ms: c.window.as_millis_u64().max(1000),
            flush_delay_ms: c.flush_delay.as_millis_u64(),
            max_keys: c.max_keys.max(1),
            open: FxHashMap::default(),
            oldest_window: None,
            next_emit_ms: 0,
            forced_flushes: metrics::counter!("nmsd_rollup_forced_flushes_total"),
            keys_gauge: metrics::gauge!("nmsd_rollup_open_keys"),
        }
    }

    fn emit_where(&mut self, out: &mut Emitter, due: impl Fn(u64) -> bool) {
        let window_ms = self.window_ms;
        let mut rows = Vec::new();
        let mut oldest: Option<u64> = None;
        self.open.retain(|k, t| {
            let start = k.window_start_ms(window_ms);
            if due(start) {
                rows.push(k.row(window_ms, t));
                false
            } else {
                oldest = Some(oldest.map_or(start, |o| o.min(start)));
                true
            }
        });
        self.oldest_window = oldest;
        out.rollups(rows);
    }
}

impl Processor for Rollup {
    fn name(&self) -> &'static str {
        "rollup"
    }

    fn process(&mut self, flows: &mut Vec<FlowRecord>, out: &mut Emitter) {
        for f in flows.iter() {
            let key = RollupKey::new(f, self.window_ms);
            let t = self.open.entry(key).or_default();
            t.bytes += f.bytes;
            t.packets += f.packets;
            t.flows += 1;
        }
        // The oldest window only matters for skipping ticks; the batch's minimum is enough.
        if let Some(min_end) = flows.iter().map(|f| f.end_ms).min() {
            let start = min_end - min_end % self.window_ms;
            self.oldest_window = Some(self.oldest_window.map_or(start, |o| o.min(start)));
        }
        if self.open.len() > self.max_keys {
            self.forced_flushes.increment(1);
            self.emit_where(out, |_| true);
        }
        self.keys_gauge.set(self.open.len() as f64);
    }

    fn tick(&mut self, now_ms: u64, out: &mut Emitter) {
        let (window, delay) = (self.window_ms, self.flush_delay_ms);
        if now_ms >= self.next_emit_ms {
            // Next boundary + delay after now.
            let since = now_ms.saturating_sub(delay);
            self.next_emit_ms = since - since % window + window + delay;
            let is_due = |start: u64| start + window + delay <= now_ms;
            if self.oldest_window.is_some_and(is_due) {
                self.emit_where(out, is_due);
            }
        }
        self.keys_gauge.set(self.open.len() as f64);
    }

    fn flush(&mut self, out: &mut Emitter) {
        self.emit_where(out, |_| true);
        self.keys_gauge.set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SinkMessage;

    fn flow(end_ms: u64, dst_port: u16, bytes: u64) -> FlowRecord {
        FlowRecord {
            end_ms,
            start_ms: end_ms,
            bytes,
            packets: 1,
            protocol: 6,
            dst_port,
            ..FlowRecord::EMPTY
        }
    }

    fn rows(e: &mut Emitter) -> Vec<RollupRow> {
        e.drain()
            .flat_map(|m| match m {
                SinkMessage::Rollups(r) => r,
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn aggregates_per_window_and_key() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let mut flows = vec![
            flow(60_000, 80, 100),
            flow(119_999, 80, 50),
            flow(120_000, 80, 7),
            flow(61_000, 443, 1),
        ];
        r.process(&mut flows, &mut e);
        // Window [60s,120s) closes at 120s + 30s.
        r.tick(149_999, &mut e);
        assert!(rows(&mut e).is_empty());
        r.tick(150_000, &mut e);
        let mut got = rows(&mut e);
        got.sort_by_key(|r| r.dst_port);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].bytes, got[0].flows), (150, 2));
        assert_eq!((got[1].bytes, got[1].flows), (1, 1));
        r.flush(&mut e);
        let rest = rows(&mut e);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].window_start_ms, 120_000);
    }

    #[test]
    fn late_records_wait_for_the_next_emission_point() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        r.process(&mut vec![flow(60_000, 80, 1)], &mut e);
        r.tick(150_000, &mut e);
        assert_eq!(rows(&mut e).len(), 1);
        // A late record for the emitted window, ticks every 250 ms: no row until 210 s.
        r.process(&mut vec![flow(61_000, 80, 2), flow(62_000, 80, 3)], &mut e);
        let mut t = 150_250;
        while t < 210_000 {
            r.tick(t, &mut e);
            t += 250;
        }
        assert!(rows(&mut e).is_empty());
        r.tick(210_000, &mut e);
        let late = rows(&mut e);
        assert_eq!(late.len(), 1, "one extra row per key, not one per tick");
        assert_eq!((late[0].bytes, late[0].flows), (5, 2));
    }

    #[test]
    fn key_cap_forces_flush() {
        let mut r = Rollup::new(&RollupConfig {
            max_keys: 2,
            ..RollupConfig::default()
        });
        let mut e = Emitter::default();
        let mut flows: Vec<_> = (0..3).map(|p| flow(0, p, 1)).collect();
        r.process(&mut flows, &mut e);
        assert_eq!(rows(&mut e).len(), 3);
    }
}
