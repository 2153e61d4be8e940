//! Keyed global views of the flows: what a detector or a QoS report needs to see across every
//! exporter (a destination under attack, an interface's share per DSCP class), while flows stay
//! with the worker that owns their exporter.
//!
//! Each worker keeps a partial aggregate per key ([`FlowViewBuilder`], a hidden processor the
//! topology adds per worker) and hands it to the global stage every tick; the processor that
//! asked for the view merges the partials ([`KeyedView::merge`]). Only one entry per key and
//! tick crosses cores, not every flow: see docs/decisions/0012-keyed-global-stage.md for the
//! measurement against re-sharding flows by key.

use std::net::IpAddr;
use std::sync::Arc;

use nmsd_parsers::hash::SeededHashMap;
use serde::Deserialize;

use crate::processors::{Emitter, Processor};
use crate::records::FlowRecord;
use crate::stream::Batch;

/// What a view is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKeyBy {
    /// Destination address.
    DstAddr,
    /// Source address.
    SrcAddr,
    /// The input interface, as (exporter, ifIndex).
    InInterface,
    /// The output interface, as (exporter, ifIndex).
    OutInterface,
    /// The DSCP class (the upper six bits of ToS).
    Dscp,
    /// Destination port.
    DstPort,
}

/// One key of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewKey {
    Addr(IpAddr),
    Interface(IpAddr, u32),
    Dscp(u8),
    Port(u16),
}

impl ViewKeyBy {
    pub fn key(self, f: &FlowRecord) -> ViewKey {
        match self {
            ViewKeyBy::DstAddr => ViewKey::Addr(f.dst_addr),
            ViewKeyBy::SrcAddr => ViewKey::Addr(f.src_addr),
            ViewKeyBy::InInterface => ViewKey::Interface(f.exporter, f.in_if),
            ViewKeyBy::OutInterface => ViewKey::Interface(f.exporter, f.out_if),
            ViewKeyBy::Dscp => ViewKey::Dscp(f.tos >> 2),
            ViewKeyBy::DstPort => ViewKey::Port(f.dst_port),
        }
    }
}

/// Sums of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTotals {
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

impl FlowTotals {
    pub fn add(&mut self, o: &FlowTotals) {
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.packets = self.packets.saturating_add(o.packets);
        self.flows = self.flows.saturating_add(o.flows);
    }
}

/// One worker's aggregate since its last tick.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowViewPartial {
    pub key_by: ViewKeyBy,
    /// The worker it comes from (worker ticks and the global stage's are not synchronised, so
    /// a processor that computes rates per interval uses these, not its own tick).
    pub worker: usize,
    /// The flows it sums arrived in `[since_ms, until_ms)`, Unix ms.
    pub since_ms: u64,
    pub until_ms: u64,
    /// Keys the worker could not hold (its `max_keys` was reached); their flows are in
    /// `overflow`.
    pub overflow: FlowTotals,
    pub entries: Vec<(ViewKey, FlowTotals)>,
}

/// The per-worker half of a view: sums flows by key and emits the sums each tick.
pub struct FlowViewBuilder {
    key_by: ViewKeyBy,
    worker: usize,
    since_ms: u64,
    max_keys: usize,
    map: SeededHashMap<ViewKey, FlowTotals>,
    overflow: FlowTotals,
}

impl FlowViewBuilder {
    pub fn new(key_by: ViewKeyBy, max_keys: usize, worker: usize) -> Self {
        FlowViewBuilder {
            key_by,
            worker,
            since_ms: crate::clock::unix_ms(),
            max_keys: max_keys.max(1),
            map: SeededHashMap::default(),
            overflow: FlowTotals::default(),
        }
    }

    fn emit(&mut self, now_ms: u64, out: &mut Emitter) {
        if self.map.is_empty() && self.overflow == FlowTotals::default() {
            self.since_ms = now_ms;
            return;
        }
        let entries: Vec<_> = self.map.drain().collect();
        let since_ms = std::mem::replace(&mut self.since_ms, now_ms);
        out.emit(Batch::FlowView(Arc::new(FlowViewPartial {
            key_by: self.key_by,
            worker: self.worker,
            since_ms,
            until_ms: now_ms,
            overflow: std::mem::take(&mut self.overflow),
            entries,
        })));
    }
}

impl Processor for FlowViewBuilder {
    fn process(&mut self, input: Batch, _out: &mut Emitter) {
        let Batch::Flows(flows) = input else {
            return;
        };
        for f in flows.iter() {
            let t = FlowTotals {
                bytes: f.bytes,
                packets: f.packets,
                flows: 1,
            };
            let key = self.key_by.key(f);
            if let Some(v) = self.map.get_mut(&key) {
                v.add(&t);
            } else if self.map.len() < self.max_keys {
                self.map.insert(key, t);
            } else {
                self.overflow.add(&t);
            }
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Emitter) {
        self.emit(now_ms, out);
    }

    fn flush(&mut self, out: &mut Emitter) {
        self.emit(crate::clock::unix_ms(), out);
    }
}

/// The merged view, held by the processor that asked for it. Keys come from exporters, so the
/// map is seeded (decision 0009); merging into it was 2–3.6× faster than std's SipHash map
/// (decision 0012).
#[derive(Clone, Debug, Default)]
pub struct KeyedView {
    pub totals: SeededHashMap<ViewKey, FlowTotals>,
    pub overflow: FlowTotals,
}

impl KeyedView {
    /// Add one worker's partial.
    pub fn merge(&mut self, p: &FlowViewPartial) {
        for (k, t) in &p.entries {
            self.totals.entry(*k).or_default().add(t);
        }
        self.overflow.add(&p.overflow);
    }

    pub fn get(&self, k: &ViewKey) -> Option<&FlowTotals> {
        self.totals.get(k)
    }

    pub fn clear(&mut self) {
        self.totals.clear();
        self.overflow = FlowTotals::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_of_three_workers_merge_exactly_and_overflow_is_kept() {
        let dst: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let flow = |d, bytes| FlowRecord {
            dst_addr: d,
            bytes,
            packets: 1,
            ..FlowRecord::EMPTY
        };
        let mut view = KeyedView::default();
        for w in 0..3u64 {
            // Worker w holds one key at most: the second destination overflows.
            let mut b = FlowViewBuilder::new(ViewKeyBy::DstAddr, 1, w as usize);
            let mut out = Emitter::default();
            b.process(
                Batch::flows(vec![flow(dst, 10 + w), flow(dst, 1)]),
                &mut out,
            );
            b.process(Batch::flows(vec![flow(other, 5)]), &mut out);
            let now = crate::clock::unix_ms();
            b.tick(now, &mut out);
            b.tick(now + 250, &mut out); // nothing new: no empty partial
            let partials: Vec<_> = out.drain().collect();
            assert_eq!(partials.len(), 1);
            for p in partials {
                let Batch::FlowView(p) = p else {
                    panic!("a flow view partial")
                };
                assert_eq!(p.worker, w as usize);
                assert!(p.since_ms <= p.until_ms);
                view.merge(&p);
            }
        }
        let t = view.get(&ViewKey::Addr(dst)).copied().unwrap_or_default();
        assert_eq!(
            t,
            FlowTotals {
                bytes: 10 + 11 + 12 + 3,
                packets: 6,
                flows: 6
            }
        );
        assert_eq!(view.overflow.bytes, 15);
        assert!(view.get(&ViewKey::Addr(other)).is_none());
    }
}
