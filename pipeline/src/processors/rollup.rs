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

use nmsd_parsers::hash::SeededHashMap;
use serde::Deserialize;

use super::{Emitter, Processor};
use crate::component::{ProcessorContext, ProcessorSpec};
use crate::records::{FlowRecord, RollupRow};
use crate::stream::{Batch, StreamKind, StreamSet};
use crate::units::HumanDuration;

/// `[processors.<id>] type = "rollup"`.
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

impl RollupConfig {
    /// Ranges `build` relies on; `Err((key, message))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        const DAY_MS: u64 = 86_400_000;
        let window = self.window.as_millis_u64();
        if !(1000..=DAY_MS).contains(&window) {
            return Err(("window", "must be between 1s and 1d".into()));
        }
        if self.flush_delay.as_millis_u64() > DAY_MS {
            return Err(("flush_delay", "must be at most 1d".into()));
        }
        if !(1..=100_000_000).contains(&self.max_keys) {
            return Err(("max_keys", "must be between 1 and 100000000".into()));
        }
        Ok(())
    }
}

impl ProcessorSpec for RollupConfig {
    fn accepts(&self) -> StreamSet {
        StreamSet::of(&[StreamKind::Flows])
    }

    fn outputs(&self, _inputs: StreamSet) -> StreamSet {
        StreamSet::of(&[StreamKind::Rollups])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        RollupConfig::validate(self).map_err(|(k, m)| (k.to_string(), m))
    }

    fn build(&self, _ctx: &ProcessorContext) -> Box<dyn Processor> {
        Box::new(Rollup::new(self))
    }
}

/// Exporters (address and flow source) seen by one roll-up, numbered so that keys carry a
/// 4-byte index instead of a 17-byte address. Records of a batch come from few exporters, so
/// the last one is cached.
#[derive(Default)]
struct ExporterIds {
    addrs: Vec<(IpAddr, u8)>,
    ids: SeededHashMap<(IpAddr, u8), u32>,
    last: Option<((IpAddr, u8), u32)>,
}

impl ExporterIds {
    #[inline]
    fn id(&mut self, a: (IpAddr, u8)) -> u32 {
        if let Some((l, id)) = self.last
            && l == a
        {
            return id;
        }
        let next = self.addrs.len() as u32;
        let id = *self.ids.entry(a).or_insert(next);
        if id == next {
            self.addrs.push(a);
        }
        self.last = Some((a, id));
        id
    }

    fn addr(&self, id: u32) -> (IpAddr, u8) {
        self.addrs
            .get(id as usize)
            .copied()
            .unwrap_or((IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0))
    }
}

/// What every key holds besides the addresses (the window is the map the key is in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyRest {
    exporter: u32,
    in_if: u32,
    out_if: u32,
    /// dst_port << 8 | protocol
    port_proto: u32,
}

impl KeyRest {
    #[inline]
    fn new(f: &FlowRecord, exporter: u32) -> Self {
        KeyRest {
            exporter,
            in_if: f.in_if,
            out_if: f.out_if,
            port_proto: (f.dst_port as u32) << 8 | f.protocol as u32,
        }
    }

    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((self.in_if as u64) << 32 | self.out_if as u64);
        h.write_u64((self.port_proto as u64) << 32 | self.exporter as u64);
    }

    fn row(&self, ids: &ExporterIds, start_ms: u64, src: IpAddr, dst: IpAddr) -> RollupRow {
        let (exporter, source) = ids.addr(self.exporter);
        RollupRow {
            window_start_ms: start_ms,
            exporter,
            source,
            src_addr: src,
            dst_addr: dst,
            protocol: self.port_proto as u8,
            dst_port: (self.port_proto >> 8) as u16,
            in_if: self.in_if,
            out_if: self.out_if,
            bytes: 0,
            packets: 0,
            flows: 0,
            in_if_info: None,
            out_if_info: None,
        }
    }
}

/// The key of an IPv4 flow: 24 bytes, so a map entry with its totals is 48. Profiles showed
/// the map lookup as the worker's largest cost, driven by cache misses: most flows are IPv4,
/// and an entry half the size of a general one keeps twice the keys in cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyV4 {
    src: u32,
    dst: u32,
    rest: KeyRest,
}

impl std::hash::Hash for KeyV4 {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((self.src as u64) << 32 | self.dst as u64);
        self.rest.hash(h);
    }
}

/// The key of a flow with an IPv6 address (the other one IPv4-mapped if it is IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyV6 {
    src: [u64; 2],
    dst: [u64; 2],
    rest: KeyRest,
}

impl std::hash::Hash for KeyV6 {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Every word on its own: folding them together (xor) made keys that differ only in a
        // way the fold cancels hash the same, whatever the seed.
        h.write_u64(self.src[0]);
        h.write_u64(self.src[1]);
        h.write_u64(self.dst[0]);
        h.write_u64(self.dst[1]);
        self.rest.hash(h);
    }
}

fn v6_words(a: IpAddr) -> [u64; 2] {
    let b = match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(b >> 64) as u64, b as u64]
}

fn words_v6(w: [u64; 2]) -> IpAddr {
    std::net::Ipv6Addr::from((w[0] as u128) << 64 | w[1] as u128).to_canonical()
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    bytes: u64,
    packets: u64,
    flows: u64,
}

impl Totals {
    /// Add a flow. Sums saturate (garbage counters, or more than 2^64 bytes in one key and
    /// window) instead of wrapping to a small number; a saturated row is counted when its
    /// window is emitted, which keeps the check off the per-record path (counting here cost
    /// the roll-up bench ~7 % of its records/s, saturating alone ~4 %).
    #[inline]
    fn add(&mut self, f: &FlowRecord) {
        self.bytes = self.bytes.saturating_add(f.bytes);
        self.packets = self.packets.saturating_add(f.packets);
        self.flows += 1;
    }

    fn saturated(&self) -> bool {
        self.bytes == u64::MAX || self.packets == u64::MAX
    }
}

/// The open keys of one window. Windows have their own maps so that the current window's keys
/// are not interleaved with those of the previous one (held for `flush_delay`), which keeps
/// the keys being updated denser in cache, and so that emitting a window drains its maps
/// rather than scanning every key.
#[derive(Default)]
struct WindowKeys {
    /// Window index (start / window length).
    index: u64,
    // Keyed by addresses any sender can forge: the seeded hasher keeps a crafted key set from
    // piling into one bucket group.
    v4: SeededHashMap<KeyV4, Totals>,
    v6: SeededHashMap<KeyV6, Totals>,
}

impl WindowKeys {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Move every key into rows, emitted in messages of at most [`ROWS_PER_MESSAGE`], leaving
    /// the maps empty with their capacity.
    /// Returns how many rows had a saturated sum.
    fn drain_into(&mut self, ids: &ExporterIds, window_ms: u64, out: &mut Emitter) -> u64 {
        let start = self.index * window_ms;
        let saturated = self
            .v4
            .values()
            .chain(self.v6.values())
            .filter(|t| t.saturated())
            .count() as u64;
        let with = |mut r: RollupRow, t: Totals| {
            r.bytes = t.bytes;
            r.packets = t.packets;
            r.flows = t.flows;
            r
        };
        let v4 = self.v4.drain().map(|(k, t)| {
            let (src, dst) = (
                IpAddr::from(k.src.to_be_bytes()),
                IpAddr::from(k.dst.to_be_bytes()),
            );
            with(k.rest.row(ids, start, src, dst), t)
        });
        let v6 = self
            .v6
            .drain()
            .map(|(k, t)| with(k.rest.row(ids, start, words_v6(k.src), words_v6(k.dst)), t));
        let mut rows = v4.chain(v6);
        loop {
            // Drains are exact-size, so each chunk is allocated once at its final length.
            let chunk: Vec<RollupRow> = rows.by_ref().take(ROWS_PER_MESSAGE).collect();
            if chunk.is_empty() {
                break;
            }
            out.rollups(chunk);
        }
        saturated
    }
}

/// Rows per message to the sinks when a window is emitted. A window of 20,000 keys made one
/// 1.9 MB vector that sat beside the maps at every emission (the largest step in the process's
/// peak RSS); chunks of 4,096 rows (~390 KB) are handed to the sinks one at a time.
const ROWS_PER_MESSAGE: usize = 4096;

/// The roll-up processor.
pub struct Rollup {
    window_ms: u64,
    flush_delay_ms: u64,
    max_keys: usize,
    exporters: ExporterIds,
    /// Open windows, usually one or two (the current one and the previous until its flush),
    /// more when records arrive late.
    windows: Vec<WindowKeys>,
    /// Emptied maps kept for the next window, so each minute does not grow them again.
    spare: Option<WindowKeys>,
    /// Wall-clock time of the next emission point.
    next_emit_ms: u64,
    forced_flushes: metrics::Counter,
    saturated: metrics::Counter,
    /// Shared by every worker's roll-up: each adds the change in its own count, so the gauge is
    /// the process total (setting it would leave whichever worker wrote last).
    keys_gauge: metrics::Gauge,
    /// This roll-up's share of `keys_gauge`.
    reported_keys: usize,
}

impl Rollup {
    pub fn new(c: &RollupConfig) -> Self {
        Rollup {
            window_ms: c.window.as_millis_u64().max(1000),
            flush_delay_ms: c.flush_delay.as_millis_u64(),
            max_keys: c.max_keys.max(1),
            exporters: ExporterIds::default(),
            windows: Vec::new(),
            spare: None,
            next_emit_ms: 0,
            forced_flushes: metrics::counter!("nmsd_rollup_forced_flushes_total"),
            saturated: {
                metrics::describe_counter!(
                    "nmsd_rollup_sums_saturated_total",
                    "Roll-up rows whose bytes or packets sum reached 2^64-1 and stopped there instead of wrapping."
                );
                metrics::counter!("nmsd_rollup_sums_saturated_total")
            },
            keys_gauge: metrics::gauge!("nmsd_rollup_open_keys"),
            reported_keys: 0,
        }
    }

    fn keys(&self) -> usize {
        self.windows.iter().map(WindowKeys::len).sum()
    }

    /// Move this roll-up's share of the process-wide gauge to its current key count.
    fn report_keys(&mut self) {
        let keys = self.keys();
        if keys >= self.reported_keys {
            self.keys_gauge
                .increment((keys - self.reported_keys) as f64);
        } else {
            self.keys_gauge
                .decrement((self.reported_keys - keys) as f64);
        }
        self.reported_keys = keys;
    }

    /// The position of window `index` in `windows`, opening it if needed.
    fn window_slot(&mut self, index: u64) -> usize {
        if let Some(i) = self.windows.iter().position(|w| w.index == index) {
            return i;
        }
        let mut w = self.spare.take().unwrap_or_default();
        w.index = index;
        self.windows.push(w);
        self.windows.len() - 1
    }

    fn emit_where(&mut self, out: &mut Emitter, due: impl Fn(u64) -> bool) {
        let window_ms = self.window_ms;
        let mut i = 0;
        while i < self.windows.len() {
            if due(self.windows[i].index * window_ms) {
                let mut w = self.windows.swap_remove(i);
                let saturated = w.drain_into(&self.exporters, window_ms, out);
                if saturated > 0 {
                    self.saturated.increment(saturated);
                }
                // Keep the larger of the two emptied map sets.
                if self
                    .spare
                    .as_ref()
                    .is_none_or(|s| s.v4.capacity() < w.v4.capacity())
                {
                    self.spare = Some(w);
                }
            } else {
                i += 1;
            }
        }
        if self.windows.is_empty() {
            // Nothing refers to an exporter number any more: start over, so exporters that
            // went away are forgotten.
            self.exporters = ExporterIds::default();
        }
    }
}

impl Processor for Rollup {
    fn process(&mut self, input: Batch, out: &mut Emitter) {
        if let Batch::Flows(flows) = input {
            self.add_flows(&flows, out);
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Emitter) {
        self.on_tick(now_ms, out);
    }

    fn flush(&mut self, out: &mut Emitter) {
        self.emit_where(out, |_| true);
        self.report_keys();
    }
}

impl Rollup {
    /// Count a batch of flows into their windows.
    pub fn add_flows(&mut self, flows: &[FlowRecord], out: &mut Emitter) {
        let window_ms = self.window_ms;
        // Records of a batch almost always share a window: look it up once per change, and
        // test each record against the window's start with a subtraction, not a division.
        let mut current: Option<(u64, usize)> = None;
        for f in flows.iter() {
            let slot = match current {
                Some((start, slot)) if f.end_ms.wrapping_sub(start) < window_ms => slot,
                _ => {
                    let index = f.end_ms / window_ms;
                    let slot = self.window_slot(index);
                    current = Some((index * window_ms, slot));
                    slot
                }
            };
            let rest = KeyRest::new(f, self.exporters.id((f.exporter, f.source)));
            let w = &mut self.windows[slot];
            match (f.src_addr, f.dst_addr) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => {
                    let key = KeyV4 {
                        src: src.to_bits(),
                        dst: dst.to_bits(),
                        rest,
                    };
                    w.v4.entry(key).or_default().add(f);
                }
                (src, dst) => {
                    let key = KeyV6 {
                        src: v6_words(src),
                        dst: v6_words(dst),
                        rest,
                    };
                    w.v6.entry(key).or_default().add(f);
                }
            }
        }
        let keys = self.keys();
        if keys > self.max_keys {
            self.forced_flushes.increment(1);
            self.emit_where(out, |_| true);
        }
        self.report_keys();
    }

    fn on_tick(&mut self, now_ms: u64, out: &mut Emitter) {
        let (window, delay) = (self.window_ms, self.flush_delay_ms);
        if now_ms >= self.next_emit_ms {
            // Next boundary + delay after now.
            let since = now_ms.saturating_sub(delay);
            self.next_emit_ms = since - since % window + window + delay;
            let is_due = |start: u64| start + window + delay <= now_ms;
            if self.windows.iter().any(|w| is_due(w.index * window)) {
                self.emit_where(out, is_due);
            }
        }
        self.report_keys();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                Batch::Rollups(r) => std::sync::Arc::unwrap_or_clone(r),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn flows_of_two_sources_roll_up_apart() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let second = FlowRecord {
            source: 1,
            ..flow(60_000, 80, 7)
        };
        let flows = vec![flow(60_000, 80, 100), second];
        r.add_flows(&flows, &mut e);
        r.flush(&mut e);
        let mut out: Vec<_> = rows(&mut e).iter().map(|r| (r.source, r.bytes)).collect();
        out.sort_unstable();
        assert_eq!(out, vec![(0, 100), (1, 7)]);
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        // Garbage counters from a hostile exporter once wrapped a sum to a small number (and a
        // signed column showed it negative).
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let flows = vec![
            flow(60_000, 80, u64::MAX - 10),
            flow(60_001, 80, 100),
            flow(60_002, 80, 5),
        ];
        r.add_flows(&flows, &mut e);
        r.flush(&mut e);
        let out = rows(&mut e);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, u64::MAX);
        assert_eq!(out[0].flows, 3);
    }

    #[test]
    fn open_keys_gauge_is_the_total_over_workers() {
        let rec = crate::test_metrics::recorder();
        let (mut a, mut b) = crate::test_metrics::within(&rec, || {
            (
                Rollup::new(&RollupConfig::default()),
                Rollup::new(&RollupConfig::default()),
            )
        });
        let open = || crate::test_metrics::value(&rec, "nmsd_rollup_open_keys");
        let mut e = Emitter::default();
        a.add_flows(&[flow(60_000, 80, 1), flow(60_000, 443, 1)], &mut e);
        b.add_flows(&[flow(60_000, 53, 1)], &mut e);
        // One worker's tick must not overwrite the other's share.
        a.tick(61_000, &mut e);
        assert_eq!(open(), Some(3.0));
        b.tick(61_000, &mut e);
        assert_eq!(open(), Some(3.0));
        a.tick(150_000, &mut e);
        assert_eq!(open(), Some(1.0), "a emitted its window");
        b.flush(&mut e);
        assert_eq!(open(), Some(0.0));
    }

    #[test]
    fn aggregates_per_window_and_key() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let flows = vec![
            flow(60_000, 80, 100),
            flow(119_999, 80, 50),
            flow(120_000, 80, 7),
            flow(61_000, 443, 1),
        ];
        r.add_flows(&flows, &mut e);
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
        r.add_flows(&[flow(60_000, 80, 1)], &mut e);
        r.tick(150_000, &mut e);
        assert_eq!(rows(&mut e).len(), 1);
        // A late record for the emitted window, ticks every 250 ms: no row until 210 s.
        r.add_flows(&[flow(61_000, 80, 2), flow(62_000, 80, 3)], &mut e);
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
    fn rows_carry_every_key_field_for_ipv4_and_ipv6() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let v4 = FlowRecord {
            exporter: IpAddr::from([192, 0, 2, 1]),
            src_addr: IpAddr::from([10, 1, 2, 3]),
            dst_addr: IpAddr::from([172, 16, 0, 9]),
            in_if: 7,
            out_if: 4_000_000_000,
            ..flow(125_000, 443, 10)
        };
        let v6 = FlowRecord {
            exporter: "2001:db8::1".parse().expect("addr"),
            src_addr: "2001:db8::10".parse().expect("addr"),
            dst_addr: IpAddr::from([10, 9, 9, 9]),
            protocol: 17,
            ..flow(61_000, 53, 3)
        };
        r.add_flows(&[v4, v6, v4, v6], &mut e);
        r.flush(&mut e);
        let mut got = rows(&mut e);
        got.sort_by_key(|r| r.dst_port);
        assert_eq!(got.len(), 2);
        let (a, b) = (&got[0], &got[1]);
        assert_eq!(
            (
                a.exporter,
                a.src_addr,
                a.dst_addr,
                a.protocol,
                a.window_start_ms
            ),
            (v6.exporter, v6.src_addr, v6.dst_addr, 17, 60_000)
        );
        assert_eq!((a.bytes, a.packets, a.flows), (6, 2, 2));
        assert_eq!(
            (b.exporter, b.src_addr, b.dst_addr, b.in_if, b.out_if),
            (v4.exporter, v4.src_addr, v4.dst_addr, 7, 4_000_000_000)
        );
        assert_eq!((b.protocol, b.window_start_ms, b.flows), (6, 120_000, 2));
    }

    #[test]
    fn a_large_window_is_emitted_in_chunks() {
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let n = ROWS_PER_MESSAGE * 2 + 5;
        let flows: Vec<_> = (0..n as u32)
            .map(|i| FlowRecord {
                src_addr: IpAddr::from(i.to_be_bytes()),
                ..flow(0, 80, 1)
            })
            .collect();
        r.add_flows(&flows, &mut e);
        r.flush(&mut e);
        let sizes: Vec<usize> = e.drain().map(|m| m.rows()).collect();
        assert_eq!(sizes, [ROWS_PER_MESSAGE, ROWS_PER_MESSAGE, 5]);
    }

    #[test]
    fn key_cap_forces_flush() {
        let mut r = Rollup::new(&RollupConfig {
            max_keys: 2,
            ..RollupConfig::default()
        });
        let mut e = Emitter::default();
        let flows: Vec<_> = (0..3).map(|p| flow(0, p, 1)).collect();
        r.add_flows(&flows, &mut e);
        assert_eq!(rows(&mut e).len(), 3);
    }
}
