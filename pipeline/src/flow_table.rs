//! Packets into flows: a bounded table of unidirectional flows keyed by 5-tuple and VLAN.
//!
//! A flow leaves the table as a [`FlowRecord`] when
//! - it has seen no packet for `idle_timeout`,
//! - it has lasted `active_timeout` (a long flow is reported in pieces, as NetFlow exporters do),
//! - `tcp_close_timeout` has passed since a FIN or RST in its direction (the linger lets the
//!   last ACKs of a closing connection join the flow instead of starting a new one),
//! - the table is full and a new flow needs the room (eviction, counted), or
//! - [`FlowTable::flush`] is called (end of a capture file, shutdown).
//!
//! Time is the packets' own (capture timestamps), so a file replayed at file speed builds the
//! same flows as the live traffic did. Expiry is checked by [`FlowTable::expire`], which the
//! caller runs as packet time advances (every second of it is enough); a scan of the table is
//! cheap next to a second of packets.
//!
//! Eviction when full picks the least recently seen of a few flows sampled at random (the way
//! Redis approximates LRU): exact LRU needs a list update per packet, and evicting a random flow
//! would split long-lived flows under a flood of one-packet ones. Evicted flows are emitted, not
//! lost; only their split into two records is the cost.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use nmsd_parsers::PacketCounts;
use nmsd_parsers::hash::SeededHashMap;
use nmsd_parsers::packet::{self, PacketInfo};

use crate::records::{Direction, FlowRecord, FlowVersion};

/// What a flow is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub vlan: u16,
}

impl FlowKey {
    pub fn of(p: &PacketInfo) -> Self {
        FlowKey {
            src_addr: p.src_addr,
            dst_addr: p.dst_addr,
            src_port: p.src_port,
            dst_port: p.dst_port,
            protocol: p.protocol,
            vlan: p.vlan,
        }
    }

    /// A hash for sharding packets over workers: the same flow always lands on one.
    pub fn shard_hash(&self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }
}

/// How a table expires and what it stamps on its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Most flows held; a new flow past it evicts one.
    pub max_flows: usize,
    pub active_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Linger after a FIN or RST before the flow leaves.
    pub tcp_close_timeout_ms: u64,
    /// The records' `exporter`: the observation point (see the source that builds the table).
    pub exporter: IpAddr,
    /// The records' `in_if`: the capture interface's index, 0 for a file.
    pub in_if: u32,
    /// The records' `source` (position among the flow sources).
    pub source: u8,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            max_flows: 65_536,
            active_timeout_ms: 60_000,
            idle_timeout_ms: 15_000,
            tcp_close_timeout_ms: 5_000,
            exporter: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            in_if: 0,
            source: 0,
        }
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    Idle,
    Active,
    TcpClose,
    Evicted,
    Flushed,
}

/// Counts since the table was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    pub packets: u64,
    pub flows_created: u64,
    pub expired_idle: u64,
    pub expired_active: u64,
    pub expired_tcp_close: u64,
    /// Flows pushed out early because the table was full.
    pub evicted: u64,
    pub flushed: u64,
    /// SYN, SYN-ACK, RST and ICMP-unreachable packets, exact (a flow's own counts saturate).
    pub syn: u64,
    pub syn_ack: u64,
    pub rst: u64,
    pub icmp_unreachable: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FlowKey,
    record: FlowRecord,
    /// Time of the first FIN or RST, when one was seen.
    closing_since_ms: Option<u64>,
}

/// Candidates looked at for each eviction.
const EVICTION_SAMPLE: usize = 8;

/// The flow table. Not thread-safe: one per worker, packets sharded by [`FlowKey::shard_hash`].
pub struct FlowTable {
    cfg: FlowTableConfig,
    /// Entries packed in a `Vec` (so eviction can sample them by index) with a map from key to
    /// position; removal swaps the last entry into the hole.
    entries: Vec<Entry>,
    index: SeededHashMap<FlowKey, u32>,
    stats: FlowTableStats,
    /// xorshift state for eviction sampling.
    rng: u64,
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig) -> Self {
        let cfg = FlowTableConfig {
            max_flows: cfg.max_flows.clamp(1, u32::MAX as usize),
            ..cfg
        };
        FlowTable {
            entries: Vec::new(),
            index: SeededHashMap::default(),
            stats: FlowTableStats::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
            cfg,
        }
    }

    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    pub fn stats(&self) -> FlowTableStats {
        self.stats
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Account one packet seen at `ts_ms`. A flow evicted to make room is appended to `out`.
    pub fn add(&mut self, ts_ms: u64, p: &PacketInfo, out: &mut Vec<FlowRecord>) {
        self.stats.packets += 1;
        let key = FlowKey::of(p);
        let at = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => {
                if self.entries.len() >= self.cfg.max_flows {
                    self.evict_one(out);
                }
                self.stats.flows_created += 1;
                let at = self.entries.len();
                self.entries.push(Entry {
                    key,
                    record: self.new_record(ts_ms, p),
                    closing_since_ms: None,
                });
                self.index.insert(key, at as u32);
                at
            }
        };
        let e = &mut self.entries[at];
        let r = &mut e.record;
        // Capture files are not always in time order (several interfaces merged): keep the
        // span whatever the order.
        r.start_ms = r.start_ms.min(ts_ms);
        r.end_ms = r.end_ms.max(ts_ms);
        r.packets += 1;
        r.bytes += u64::from(p.ip_len);
        r.tcp_flags |= p.tcp_flags;
        let c = p.counts();
        if c != PacketCounts::ZERO {
            r.packet_counts.add(&c);
            let s = &mut self.stats;
            s.syn += u64::from(c.syn);
            s.syn_ack += u64::from(c.syn_ack);
            s.rst += u64::from(c.rst);
            s.icmp_unreachable += u64::from(c.icmp_unreachable);
        }
        if p.protocol == packet::PROTO_TCP
            && p.tcp_flags & (packet::TCP_FIN | packet::TCP_RST) != 0
            && e.closing_since_ms.is_none()
        {
            e.closing_since_ms = Some(ts_ms);
        }
    }

    fn new_record(&self, ts_ms: u64, p: &PacketInfo) -> FlowRecord {
        FlowRecord {
            start_ms: ts_ms,
            end_ms: ts_ms,
            bytes: 0,
            packets: 0,
            exporter: self.cfg.exporter,
            src_addr: p.src_addr,
            dst_addr: p.dst_addr,
            in_if: self.cfg.in_if,
            src_port: p.src_port,
            dst_port: p.dst_port,
            vlan: p.vlan,
            protocol: p.protocol,
            tos: p.tos,
            // A capture point sees both directions and a file does not say which is which.
            direction: Direction::Unknown,
            version: FlowVersion::Packets,
            source: self.cfg.source,
            ..FlowRecord::EMPTY
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn evict_one(&mut self, out: &mut Vec<FlowRecord>) {
        let n = self.entries.len();
        if n == 0 {
            return;
        }
        let mut victim = (self.next_random() % n as u64) as usize;
        for _ in 1..EVICTION_SAMPLE.min(n) {
            let i = (self.next_random() % n as u64) as usize;
            if self.entries[i].record.end_ms < self.entries[victim].record.end_ms {
                victim = i;
            }
        }
        self.stats.evicted += 1;
        self.remove(victim, out);
    }

    fn remove(&mut self, at: usize, out: &mut Vec<FlowRecord>) {
        let e = self.entries.swap_remove(at);
        self.index.remove(&e.key);
        if let Some(moved) = self.entries.get(at) {
            self.index.insert(moved.key, at as u32);
        }
        out.push(e.record);
    }

    /// Why the flow at `at` is due at `now_ms`, if it is.
    fn due(&self, e: &Entry, now_ms: u64) -> Option<ExpiryReason> {
        let r = &e.record;
        if let Some(since) = e.closing_since_ms
            && now_ms.saturating_sub(since) >= self.cfg.tcp_close_timeout_ms
        {
            return Some(ExpiryReason::TcpClose);
        }
        if now_ms.saturating_sub(r.end_ms) >= self.cfg.idle_timeout_ms {
            return Some(ExpiryReason::Idle);
        }
        if now_ms.saturating_sub(r.start_ms) >= self.cfg.active_timeout_ms {
            return Some(ExpiryReason::Active);
        }
        None
    }

    /// Move every flow that is due at `now_ms` to `out`; returns how many.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<FlowRecord>) -> usize {
        let before = out.len();
        let mut i = 0;
        while i < self.entries.len() {
            match self.due(&self.entries[i], now_ms) {
                Some(reason) => {
                    match reason {
                        ExpiryReason::Idle => self.stats.expired_idle += 1,
                        ExpiryReason::Active => self.stats.expired_active += 1,
                        ExpiryReason::TcpClose => self.stats.expired_tcp_close += 1,
                        ExpiryReason::Evicted | ExpiryReason::Flushed => {}
                    }
                    // The last entry moves into `i`: look at `i` again.
                    self.remove(i, out);
                }
                None => i += 1,
            }
        }
        out.len() - before
    }

    /// Move every flow to `out` (end of input).
    pub fn flush(&mut self, out: &mut Vec<FlowRecord>) -> usize {
        let n = self.entries.len();
        self.stats.flushed += n as u64;
        self.index.clear();
        out.extend(self.entries.drain(..).map(|e| e.record));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_parsers::packet::Fragment;

    fn pkt(src_port: u16, protocol: u8, flags: u8, len: u32) -> PacketInfo {
        PacketInfo {
            src_addr: "192.0.2.1".parse().unwrap(),
            dst_addr: "192.0.2.2".parse().unwrap(),
            src_port,
            dst_port: 80,
            protocol,
            vlan: 0,
            inner_vlan: 0,
            ip_len: len,
            tos: 0,
            tcp_flags: flags,
            icmp_type: 0,
            icmp_code: 0,
            fragment: Fragment::Whole,
            mpls_labels: 0,
        }
    }

    fn table(max_flows: usize) -> FlowTable {
        FlowTable::new(FlowTableConfig {
            max_flows,
            active_timeout_ms: 60_000,
            idle_timeout_ms: 10_000,
            tcp_close_timeout_ms: 2_000,
            exporter: "198.51.100.9".parse().unwrap(),
            in_if: 3,
            source: 1,
        })
    }

    #[test]
    fn packets_of_a_flow_add_up_and_the_record_carries_the_table_identity() {
        let mut t = table(16);
        let mut out = Vec::new();
        t.add(1_000, &pkt(1, 17, 0, 100), &mut out);
        t.add(1_500, &pkt(1, 17, 0, 200), &mut out);
        t.add(1_200, &pkt(2, 17, 0, 50), &mut out);
        assert_eq!(t.len(), 2);
        assert_eq!(t.flush(&mut out), 2);
        let r = out.iter().find(|r| r.src_port == 1).unwrap();
        assert_eq!(
            (r.packets, r.bytes, r.start_ms, r.end_ms),
            (2, 300, 1_000, 1_500)
        );
        assert_eq!(r.exporter, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert_eq!((r.in_if, r.source, r.version), (3, 1, FlowVersion::Packets));
        assert!(t.is_empty());
    }

    #[test]
    fn idle_and_active_timeouts() {
        let mut t = table(16);
        let mut out = Vec::new();
        t.add(0, &pkt(1, 17, 0, 10), &mut out);
        // A flow with a packet every 5 s: never idle, cut at 60 s.
        for s in 0..=12 {
            t.add(s * 5_000, &pkt(2, 17, 0, 10), &mut out);
        }
        assert_eq!(t.expire(9_999, &mut out), 0);
        assert_eq!(t.expire(10_000, &mut out), 1, "port 1 idle");
        assert_eq!(out[0].src_port, 1);
        assert_eq!(
            t.expire(60_000, &mut out),
            1,
            "port 2 at its active timeout"
        );
        assert_eq!(out[1].packets, 13);
        let s = t.stats();
        assert_eq!((s.expired_idle, s.expired_active), (1, 1));
    }

    #[test]
    fn fin_or_rst_expires_after_the_linger_with_the_security_counters() {
        let mut t = table(16);
        let mut out = Vec::new();
        t.add(0, &pkt(1, 6, packet::TCP_SYN, 60), &mut out);
        t.add(
            10,
            &pkt(1, 6, packet::TCP_SYN | packet::TCP_ACK, 60),
            &mut out,
        );
        t.add(
            20,
            &pkt(1, 6, packet::TCP_FIN | packet::TCP_ACK, 40),
            &mut out,
        );
        t.add(30, &pkt(1, 6, packet::TCP_ACK, 40), &mut out); // the last ACK still joins
        t.add(40, &pkt(2, 6, packet::TCP_RST, 40), &mut out);
        assert_eq!(t.expire(2_019, &mut out), 0);
        assert_eq!(t.expire(2_040, &mut out), 2);
        let r = out.iter().find(|r| r.src_port == 1).unwrap();
        assert_eq!(r.packets, 4);
        assert_eq!(r.tcp_flags, 0x13);
        assert_eq!(
            r.packet_counts,
            PacketCounts {
                syn: 1,
                syn_ack: 1,
                rst: 0,
                icmp_unreachable: 0
            }
        );
        let r = out.iter().find(|r| r.src_port == 2).unwrap();
        assert_eq!(r.packet_counts.rst, 1);
        assert_eq!(t.stats().expired_tcp_close, 2);
    }

    #[test]
    fn icmp_unreachable_is_counted() {
        let mut t = table(4);
        let mut out = Vec::new();
        let mut p = pkt(0, 1, 0, 56);
        p.icmp_type = 3;
        t.add(0, &p, &mut out);
        t.add(1, &p, &mut out);
        t.flush(&mut out);
        assert_eq!(out[0].packet_counts.icmp_unreachable, 2);
    }

    #[test]
    fn a_full_table_evicts_a_stale_flow_and_counts_it_and_loses_nothing() {
        let mut t = table(64);
        let mut out = Vec::new();
        // One busy flow, then 1,000 one-packet flows through a 64-flow table.
        let mut packets = 0;
        for i in 0..1_000u64 {
            t.add(i, &pkt(1, 17, 0, 10), &mut out);
            t.add(i, &pkt(1000 + i as u16, 17, 0, 10), &mut out);
            packets += 2;
            assert!(t.len() <= 64);
        }
        t.flush(&mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), packets);
        assert!(t.stats().evicted >= 1_000 + 1 - 64);
        // Sampled LRU keeps the busy flow nearly whole: it is always the most recent.
        let busy: Vec<_> = out.iter().filter(|r| r.src_port == 1).collect();
        assert!(busy.len() <= 3, "busy flow split in {} pieces", busy.len());
        // The index stays consistent through swap-removes.
        for (i, e) in t.entries.iter().enumerate() {
            assert_eq!(t.index[&e.key] as usize, i);
        }
    }

    #[test]
    fn index_follows_swap_removes() {
        let mut t = table(16);
        let mut out = Vec::new();
        for p in 1..=8 {
            t.add(u64::from(p) * 1_000, &pkt(p, 17, 0, 10), &mut out);
        }
        // Ports 1..=3 idle at 13.5 s (last seen at 1, 2, 3 s).
        assert_eq!(t.expire(13_500, &mut out), 3);
        for (i, e) in t.entries.iter().enumerate() {
            assert_eq!(t.index[&e.key] as usize, i);
        }
        t.add(14_000, &pkt(8, 17, 0, 10), &mut out);
        t.flush(&mut out);
        assert_eq!(out.iter().filter(|r| r.src_port == 8).count(), 1);
    }
}
