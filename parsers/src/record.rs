//! The one record every flow source decodes into.

use std::net::{IpAddr, Ipv4Addr};

/// Which wire format a record came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FlowVersion {
    #[default]
    NetflowV5 = 5,
    NetflowV9 = 9,
    Ipfix = 10,
    /// Built from captured packets by nmsd's own flow table (capture, pcap files).
    Packets = 0,
    /// sFlow v5 flow samples, decoded by nmsd's packet decoder.
    Sflow = 1,
}

impl FlowVersion {
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The version with this [`FlowVersion::as_u8`] number (for codecs that store it).
    pub const fn from_u8(v: u8) -> Option<FlowVersion> {
        match v {
            5 => Some(FlowVersion::NetflowV5),
            9 => Some(FlowVersion::NetflowV9),
            10 => Some(FlowVersion::Ipfix),
            0 => Some(FlowVersion::Packets),
            1 => Some(FlowVersion::Sflow),
            _ => None,
        }
    }

    /// Short lowercase label, used for metrics and storage.
    pub const fn label(self) -> &'static str {
        match self {
            FlowVersion::NetflowV5 => "v5",
            FlowVersion::NetflowV9 => "v9",
            FlowVersion::Ipfix => "ipfix",
            FlowVersion::Packets => "packets",
            FlowVersion::Sflow => "sflow",
        }
    }
}

/// Flow direction as exported (IE 61 `flowDirection`); unknown when the exporter does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
    #[default]
    Unknown = 255,
}

/// Packets of one flow that security analysis looks for (scans, floods, refused connections),
/// counted where nmsd sees the packets themselves: its flow table (capture, pcap files) and sFlow
/// samples (scaled by the sampling rate, as `packets` is). NetFlow and IPFIX exporters do not
/// count them: zero there, where the OR of `tcp_flags` is what the exporter gives. Each count
/// saturates at 65,535 (one 5-tuple gets there only in a flood, whose size `packets` tells);
/// the per-source totals (`nmsd_packet_tcp_syn_total`, ...) do not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// TCP segments with SYN and without ACK (connection attempts).
    pub syn: u16,
    /// TCP segments with SYN and ACK (accepted connections).
    pub syn_ack: u16,
    pub rst: u16,
    /// ICMP destination unreachable (ICMPv6 type 1 too).
    pub icmp_unreachable: u16,
}

impl PacketCounts {
    pub const ZERO: PacketCounts = PacketCounts {
        syn: 0,
        syn_ack: 0,
        rst: 0,
        icmp_unreachable: 0,
    };

    /// Add `o`, saturating.
    pub fn add(&mut self, o: &PacketCounts) {
        self.syn = self.syn.saturating_add(o.syn);
        self.syn_ack = self.syn_ack.saturating_add(o.syn_ack);
        self.rst = self.rst.saturating_add(o.rst);
        self.icmp_unreachable = self.icmp_unreachable.saturating_add(o.icmp_unreachable);
    }

    /// Each count times `n`, saturating (a sampled packet stands for `n`).
    pub fn scaled(self, n: u32) -> PacketCounts {
        let m = |c: u16| u16::try_from(u32::from(c).saturating_mul(n)).unwrap_or(u16::MAX);
        PacketCounts {
            syn: m(self.syn),
            syn_ack: m(self.syn_ack),
            rst: m(self.rst),
            icmp_unreachable: m(self.icmp_unreachable),
        }
    }
}

/// One unidirectional flow, as every decoder produces it.
///
/// Fixed-size and `Copy` so that batches are plain `Vec`s that are reused: the hot path allocates
/// nothing per record. Times are absolute UTC milliseconds since the Unix epoch whatever the
/// exporter's own clock base (sysUptime-relative for v5/v9, absolute or delta for IPFIX).
/// `bytes` and `packets` are already multiplied by `sampling_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// First packet of the flow, Unix ms.
    pub start_ms: u64,
    /// Last packet of the flow, Unix ms.
    pub end_ms: u64,
    /// Octets at IP level, sampling-corrected.
    pub bytes: u64,
    /// Packets, sampling-corrected.
    pub packets: u64,
    /// Address the export datagram came from.
    pub exporter: IpAddr,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub next_hop: IpAddr,
    /// v9 source id, IPFIX observation domain id, v5 `engine_type << 8 | engine_id`.
    pub observation_domain: u32,
    pub in_if: u32,
    pub out_if: u32,
    pub src_as: u32,
    pub dst_as: u32,
    /// 1 when unsampled.
    pub sampling_interval: u32,
    pub src_port: u16,
    /// For ICMP this holds `type << 8 | code`, as NetFlow v5 and nfdump do.
    pub dst_port: u16,
    /// 802.1Q VLAN id, 0 when absent.
    pub vlan: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// Cumulative OR of TCP flags.
    pub tcp_flags: u8,
    /// IP ToS / traffic class byte; DSCP is `tos >> 2`.
    pub tos: u8,
    pub direction: Direction,
    pub version: FlowVersion,
    /// Which configured flow source (listener) received it, by position in the config: two
    /// exporters on one host sending to different listeners stay apart (names are the sink's).
    pub source: u8,
    /// SYN, SYN-ACK, RST and ICMP-unreachable packets, where nmsd saw the packets.
    pub packet_counts: PacketCounts,
}

const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl FlowRecord {
    /// An empty record: zero counters, unspecified addresses, unsampled.
    pub const EMPTY: FlowRecord = FlowRecord {
        start_ms: 0,
        end_ms: 0,
        bytes: 0,
        packets: 0,
        exporter: UNSPECIFIED,
        src_addr: UNSPECIFIED,
        dst_addr: UNSPECIFIED,
        next_hop: UNSPECIFIED,
        observation_domain: 0,
        in_if: 0,
        out_if: 0,
        src_as: 0,
        dst_as: 0,
        sampling_interval: 1,
        src_port: 0,
        dst_port: 0,
        vlan: 0,
        protocol: 0,
        tcp_flags: 0,
        tos: 0,
        direction: Direction::Unknown,
        version: FlowVersion::NetflowV5,
        source: 0,
        packet_counts: PacketCounts::ZERO,
    };

    /// DSCP code point (upper six bits of the ToS byte).
    pub const fn dscp(&self) -> u8 {
        self.tos >> 2
    }

    /// True when the flow's addresses are IPv6.
    pub const fn is_ipv6(&self) -> bool {
        matches!(self.src_addr, IpAddr::V6(_)) || matches!(self.dst_addr, IpAddr::V6(_))
    }
}

impl Default for FlowRecord {
    fn default() -> Self {
        Self::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_through_their_number() {
        for v in [
            FlowVersion::NetflowV5,
            FlowVersion::NetflowV9,
            FlowVersion::Ipfix,
            FlowVersion::Packets,
            FlowVersion::Sflow,
        ] {
            assert_eq!(FlowVersion::from_u8(v.as_u8()), Some(v));
        }
        assert_eq!(FlowVersion::from_u8(2), None);
    }

    #[test]
    fn record_stays_small() {
        // Records are copied by value through the rings; keep them within two cache lines
        // plus a little so a batch of 1024 stays under ~150 KiB.
        assert!(
            std::mem::size_of::<FlowRecord>() <= 144,
            "{}",
            std::mem::size_of::<FlowRecord>()
        );
    }
}
