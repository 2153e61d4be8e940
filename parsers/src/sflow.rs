//! sFlow version 5 datagrams (sflow.org's sflow_version_5.txt): flow samples, expanded flow
//! samples, counter samples and expanded counter samples.
//!
//! A flow sample's raw packet header goes through the same decoder as captured frames
//! ([`crate::packet`]), so a sampled packet becomes the same 5-tuple a capture would give; a
//! sample carrying only the decoded "sampled IPv4/IPv6" records is read from those. Counter
//! samples keep their generic interface counters (the IF-MIB set). Unknown sample and record
//! formats are skipped by their length, as the format intends. Allocation-free apart from the
//! caller's output `Vec`; a malformed datagram is an [`SflowError`] and the samples decoded
//! before the damage stay in the output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::packet::{self, Fragment, LinkType, PacketError, PacketInfo};
use crate::record::{Direction, FlowRecord, FlowVersion};

/// Why a datagram (or its tail) was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SflowError {
    #[error("sFlow datagram too short for its {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("sFlow version {0} (expected 5)")]
    UnknownVersion(u32),
    #[error("sFlow agent address type {0} (expected 1 or 2)")]
    BadAddressType(u32),
    #[error("sFlow datagram says {0} samples, more than fit")]
    TooManySamples(u32),
}

impl SflowError {
    /// Stable, low-cardinality label for metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            SflowError::Truncated { .. } => "truncated",
            SflowError::UnknownVersion(_) => "unknown_version",
            SflowError::BadAddressType(_) => "bad_address_type",
            SflowError::TooManySamples(_) => "too_many_samples",
        }
    }

    pub const KINDS: &'static [&'static str] = &[
        "truncated",
        "unknown_version",
        "bad_address_type",
        "too_many_samples",
    ];
}

/// The datagram header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SflowHeader {
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    /// Datagram sequence number, per agent and sub-agent.
    pub sequence: u32,
    pub uptime_ms: u32,
    pub samples: u32,
}

/// What a flow sample's records said about the sampled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampledPacket {
    /// Decoded from the raw header (or the sampled IPv4/IPv6 record).
    Decoded(PacketInfo),
    /// The raw header did not decode.
    Malformed(PacketError),
    /// No record this decoder reads (an unsupported header protocol, or none at all).
    Unknown,
}

/// A flow sample (compact or expanded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSample {
    pub sequence: u32,
    /// Data source type (0 ifIndex, 1 smonVlanDataSource, 2 entPhysicalEntry).
    pub source_id_type: u32,
    pub source_id_index: u32,
    /// One packet in `sampling_rate` was sampled.
    pub sampling_rate: u32,
    /// Packets that could have been sampled (cumulative).
    pub sample_pool: u32,
    /// Samples the agent dropped for lack of resources (cumulative).
    pub drops: u32,
    /// ifIndex of the input interface, 0 when unknown or not a single interface.
    pub input_if: u32,
    pub output_if: u32,
    /// Frame length of the sampled packet as the agent saw it (raw header record).
    pub frame_length: u32,
    pub packet: SampledPacket,
    pub expanded: bool,
}

/// Generic interface counters (counter record 0:1), IF-MIB's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub if_index: u32,
    pub if_type: u32,
    /// Bits per second.
    pub if_speed: u64,
    /// 0 unknown, 1 full duplex, 2 half, 3 in, 4 out.
    pub if_direction: u32,
    /// Bit 0 admin up, bit 1 oper up.
    pub if_status: u32,
    pub in_octets: u64,
    pub in_ucast_pkts: u32,
    pub in_multicast_pkts: u32,
    pub in_broadcast_pkts: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast_pkts: u32,
    pub out_multicast_pkts: u32,
    pub out_broadcast_pkts: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous_mode: u32,
}

/// A counter sample (compact or expanded); `generic` when it carried record 0:1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterSample {
    pub sequence: u32,
    pub source_id_type: u32,
    pub source_id_index: u32,
    pub generic: Option<IfCounters>,
}

/// One sample of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    Flow(FlowSample),
    Counters(CounterSample),
}

/// Samples in one datagram at most (a 64 KiB datagram of the smallest sample, 8 bytes).
const MAX_SAMPLES: u32 = 8192;

/// Reads XDR fields (big-endian 32-bit units) off a slice.
struct Xdr<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Xdr<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Xdr { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SflowError> {
        if self.buf.len() < n {
            return Err(SflowError::Truncated {
                what: self.what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SflowError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SflowError> {
        Ok(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }

    /// A sample's data source: (type, index), two words when expanded, else packed in one
    /// (type in the top 8 bits).
    fn source_id(&mut self, expanded: bool) -> Result<(u32, u32), SflowError> {
        if expanded {
            Ok((self.u32()?, self.u32()?))
        } else {
            let v = self.u32()?;
            Ok((v >> 24, v & 0x00FF_FFFF))
        }
    }

    fn ipv4(&mut self) -> Result<Ipv4Addr, SflowError> {
        let b = self.take(4)?;
        Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }

    fn ipv6(&mut self) -> Result<Ipv6Addr, SflowError> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(Ipv6Addr::from(a))
    }

    /// An opaque element: `u32 format, u32 length, data` (data padded to 4 bytes).
    fn element(&mut self, what: &'static str) -> Result<(u32, Xdr<'a>), SflowError> {
        let format = self.u32()?;
        let len = self.u32()? as usize;
        let body = self.take(len)?;
        Ok((format, Xdr::new(body, what)))
    }
}

/// Decode one datagram, appending its samples to `out`. On an error, the samples before the
/// damage stay appended.
pub fn decode(datagram: &[u8], out: &mut Vec<Sample>) -> Result<SflowHeader, SflowError> {
    let mut x = Xdr::new(datagram, "header");
    let version = x.u32()?;
    if version != 5 {
        return Err(SflowError::UnknownVersion(version));
    }
    let agent = match x.u32()? {
        1 => IpAddr::V4(x.ipv4()?),
        2 => IpAddr::V6(x.ipv6()?),
        t => return Err(SflowError::BadAddressType(t)),
    };
    let header = SflowHeader {
        agent,
        sub_agent_id: x.u32()?,
        sequence: x.u32()?,
        uptime_ms: x.u32()?,
        samples: x.u32()?,
    };
    if header.samples > MAX_SAMPLES || header.samples as usize > x.buf.len() / 8 {
        return Err(SflowError::TooManySamples(header.samples));
    }
    for _ in 0..header.samples {
        let (format, mut s) = x.element("sample")?;
        // Enterprise 0 only: others are vendor formats.
        match format {
            1 => out.push(Sample::Flow(flow_sample(&mut s, false)?)),
            3 => out.push(Sample::Flow(flow_sample(&mut s, true)?)),
            2 => out.push(Sample::Counters(counter_sample(&mut s, false)?)),
            4 => out.push(Sample::Counters(counter_sample(&mut s, true)?)),
            _ => {}
        }
    }
    Ok(header)
}

/// A compact interface field: format in the top 2 bits, an ifIndex only for format 0.
fn compact_if(v: u32) -> u32 {
    if v >> 30 == 0 { v & 0x3FFF_FFFF } else { 0 }
}

fn flow_sample(s: &mut Xdr<'_>, expanded: bool) -> Result<FlowSample, SflowError> {
    s.what = "flow sample";
    let sequence = s.u32()?;
    let (source_id_type, source_id_index) = s.source_id(expanded)?;
    let sampling_rate = s.u32()?;
    let sample_pool = s.u32()?;
    let drops = s.u32()?;
    let (input_if, output_if) = if expanded {
        let (inf, inv, outf, outv) = (s.u32()?, s.u32()?, s.u32()?, s.u32()?);
        (
            if inf == 0 { inv } else { 0 },
            if outf == 0 { outv } else { 0 },
        )
    } else {
        (compact_if(s.u32()?), compact_if(s.u32()?))
    };
    let records = s.u32()?;
    let mut sample = FlowSample {
        sequence,
        source_id_type,
        source_id_index,
        sampling_rate,
        sample_pool,
        drops,
        input_if,
        output_if,
        frame_length: 0,
        packet: SampledPacket::Unknown,
        expanded,
    };
    let mut switch_vlan = None;
    for _ in 0..records.min(MAX_SAMPLES) {
        let (format, mut r) = s.element("flow record")?;
        match format {
            // Raw packet header.
            1 => {
                let protocol = r.u32()?;
                sample.frame_length = r.u32()?;
                let _stripped = r.u32()?;
                let len = r.u32()? as usize;
                let header = r.take(len)?;
                let link = match protocol {
                    1 => Some(LinkType::Ethernet),
                    11 | 12 => Some(LinkType::RawIp),
                    _ => None,
                };
                if let Some(link) = link {
                    sample.packet = match packet::decode(link, header) {
                        Ok(p) => SampledPacket::Decoded(p),
                        Err(e) => SampledPacket::Malformed(e),
                    };
                }
            }
            // Sampled IPv4 / IPv6: only when there was no raw header.
            3 | 4 if sample.packet == SampledPacket::Unknown => {
                let ip_len = r.u32()?;
                let protocol = r.u32()?;
                let (src, dst) = if format == 3 {
                    (IpAddr::V4(r.ipv4()?), IpAddr::V4(r.ipv4()?))
                } else {
                    (IpAddr::V6(r.ipv6()?), IpAddr::V6(r.ipv6()?))
                };
                let (sport, dport, flags, tos) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
                let protocol = protocol as u8;
                let icmp = protocol == packet::PROTO_ICMP || protocol == packet::PROTO_ICMPV6;
                sample.packet = SampledPacket::Decoded(PacketInfo {
                    src_addr: src,
                    dst_addr: dst,
                    src_port: sport as u16,
                    dst_port: dport as u16,
                    protocol,
                    vlan: 0,
                    inner_vlan: 0,
                    // "The length of the IP packet excluding lower layer encapsulations", both.
                    ip_len,
                    tos: tos as u8,
                    tcp_flags: flags as u8,
                    icmp_type: if icmp { (dport >> 8) as u8 } else { 0 },
                    icmp_code: if icmp { dport as u8 } else { 0 },
                    fragment: Fragment::Whole,
                    mpls_labels: 0,
                });
            }
            // Extended switch: the VLAN the frame came in on (switches often strip the tag
            // from the sampled header).
            1001 => switch_vlan = Some(r.u32()? as u16 & 0x0FFF),
            _ => {}
        }
    }
    if let (Some(vlan), SampledPacket::Decoded(p)) = (switch_vlan, &mut sample.packet)
        && p.vlan == 0
    {
        p.vlan = vlan;
    }
    Ok(sample)
}

fn counter_sample(s: &mut Xdr<'_>, expanded: bool) -> Result<CounterSample, SflowError> {
    s.what = "counter sample";
    let sequence = s.u32()?;
    let (source_id_type, source_id_index) = s.source_id(expanded)?;
    let records = s.u32()?;
    let mut sample = CounterSample {
        sequence,
        source_id_type,
        source_id_index,
        generic: None,
    };
    for _ in 0..records.min(MAX_SAMPLES) {
        let (format, mut r) = s.element("counter record")?;
        if format == 1 {
            r.what = "generic interface counters";
            sample.generic = Some(IfCounters {
                if_index: r.u32()?,
                if_type: r.u32()?,
                if_speed: r.u64()?,
                if_direction: r.u32()?,
                if_status: r.u32()?,
                in_octets: r.u64()?,
                in_ucast_pkts: r.u32()?,
                in_multicast_pkts: r.u32()?,
                in_broadcast_pkts: r.u32()?,
                in_discards: r.u32()?,
                in_errors: r.u32()?,
                in_unknown_protos: r.u32()?,
                out_octets: r.u64()?,
                out_ucast_pkts: r.u32()?,
                out_multicast_pkts: r.u32()?,
                out_broadcast_pkts: r.u32()?,
                out_discards: r.u32()?,
                out_errors: r.u32()?,
                promiscuous_mode: r.u32()?,
            });
        }
    }
    Ok(sample)
}

impl FlowSample {
    /// The sample as a flow record seen at `ts_ms`: one packet standing for `sampling_rate`
    /// (packets and bytes scaled by it), exporter = the agent. None when the sampled packet
    /// was not decoded.
    pub fn to_record(&self, header: &SflowHeader, ts_ms: u64, source: u8) -> Option<FlowRecord> {
        let SampledPacket::Decoded(p) = self.packet else {
            return None;
        };
        let rate = self.sampling_rate.max(1);
        Some(FlowRecord {
            start_ms: ts_ms,
            end_ms: ts_ms,
            bytes: u64::from(p.ip_len) * u64::from(rate),
            packets: u64::from(rate),
            exporter: header.agent,
            src_addr: p.src_addr,
            dst_addr: p.dst_addr,
            observation_domain: header.sub_agent_id,
            in_if: self.input_if,
            out_if: self.output_if,
            sampling_interval: rate,
            src_port: p.src_port,
            dst_port: p.dst_port,
            vlan: p.vlan,
            protocol: p.protocol,
            tcp_flags: p.tcp_flags,
            tos: p.tos,
            direction: Direction::Unknown,
            version: FlowVersion::Sflow,
            source,
            packet_counts: p.counts().scaled(rate),
            ..FlowRecord::EMPTY
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn w(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_be_bytes());
    }

    fn element(v: &mut Vec<u8>, format: u32, body: &[u8]) {
        w(v, format);
        w(v, body.len() as u32);
        v.extend_from_slice(body);
    }

    /// An Ethernet/IPv4/TCP frame of `ip_len` IP bytes, cut to its first 54 bytes.
    fn frame_header(ip_len: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 1, 1, 10, 2, 2, 2]);
        f.extend_from_slice(&[0x9C, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xFF]);
        f.extend_from_slice(&[0xFF, 0, 0, 0, 0]);
        f
    }

    /// A datagram with a compact flow sample (raw header + extended switch), an expanded flow
    /// sample with a sampled-IPv6 record, a counter sample and an unknown sample.
    pub(crate) fn datagram() -> Vec<u8> {
        let mut d = Vec::new();
        for x in [5, 1] {
            w(&mut d, x);
        }
        d.extend_from_slice(&[192, 0, 2, 10]);
        for x in [3, 77, 123_456, 4] {
            w(&mut d, x);
        }
        // Compact flow sample.
        let mut s = Vec::new();
        for x in [9, 5, 1000, 50_000, 2, 5, 6, 2] {
            w(&mut s, x);
        }
        let hdr = frame_header(1500);
        let mut raw = Vec::new();
        for x in [1, 1518, 4, hdr.len() as u32] {
            w(&mut raw, x);
        }
        raw.extend_from_slice(&hdr);
        raw.resize(raw.len().div_ceil(4) * 4, 0);
        element(&mut s, 1, &raw);
        let mut sw = Vec::new();
        for x in [42, 0, 42, 0] {
            w(&mut sw, x);
        }
        element(&mut s, 1001, &sw);
        element(&mut d, 1, &s);
        // Expanded flow sample with a sampled IPv6 record.
        let mut s = Vec::new();
        for x in [10, 0, 7, 512, 9_000, 0, 0, 7, 0, 8, 1] {
            w(&mut s, x);
        }
        let mut v6 = Vec::new();
        for x in [100, 17] {
            w(&mut v6, x);
        }
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        for x in [53, 5353, 0, 0] {
            w(&mut v6, x);
        }
        element(&mut s, 4, &v6);
        element(&mut d, 3, &s);
        // Counter sample with generic interface counters.
        let mut s = Vec::new();
        for x in [11, 5, 1] {
            w(&mut s, x);
        }
        let mut g = Vec::new();
        for x in [5, 6] {
            w(&mut g, x);
        }
        g.extend_from_slice(&10_000_000_000u64.to_be_bytes());
        for x in [1, 3] {
            w(&mut g, x);
        }
        g.extend_from_slice(&123_456_789_012u64.to_be_bytes());
        for x in [1, 2, 3, 4, 5, 6] {
            w(&mut g, x);
        }
        g.extend_from_slice(&987_654_321u64.to_be_bytes());
        for x in [7, 8, 9, 10, 11, 0] {
            w(&mut g, x);
        }
        element(&mut s, 1, &g);
        element(&mut d, 2, &s);
        // A vendor sample: skipped.
        element(&mut d, (9 << 12) | 1, &[0; 12]);
        d
    }

    #[test]
    fn decodes_flow_and_counter_samples() {
        let mut out = Vec::new();
        let h = decode(&datagram(), &mut out).unwrap();
        assert_eq!(h.agent, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!((h.sub_agent_id, h.sequence, h.samples), (3, 77, 4));
        assert_eq!(out.len(), 3);
        let Sample::Flow(f) = out[0] else {
            panic!("flow sample first")
        };
        assert_eq!(
            (f.sampling_rate, f.drops, f.input_if, f.output_if),
            (1000, 2, 5, 6)
        );
        assert_eq!(f.frame_length, 1518);
        let r = f.to_record(&h, 1_000, 2).unwrap();
        assert_eq!(
            (r.packets, r.bytes, r.sampling_interval),
            (1000, 1_500_000, 1000)
        );
        assert_eq!(
            (r.src_port, r.dst_port, r.protocol, r.vlan),
            (40000, 80, 6, 42)
        );
        assert_eq!(
            (r.exporter, r.version, r.source),
            (h.agent, FlowVersion::Sflow, 2)
        );

        let Sample::Flow(e) = out[1] else {
            panic!("expanded flow sample second")
        };
        assert!(e.expanded);
        let r = e.to_record(&h, 1_000, 0).unwrap();
        assert_eq!(
            (r.packets, r.bytes, r.in_if, r.out_if),
            (512, 100 * 512, 7, 8)
        );
        assert_eq!((r.protocol, r.src_port, r.dst_port), (17, 53, 5353));

        let Sample::Counters(c) = out[2] else {
            panic!("counter sample third")
        };
        let g = c.generic.unwrap();
        assert_eq!(
            (g.if_index, g.if_speed, g.if_status),
            (5, 10_000_000_000, 3)
        );
        assert_eq!(
            (g.in_octets, g.out_octets, g.out_errors),
            (123_456_789_012, 987_654_321, 11)
        );
    }

    #[test]
    fn damage_is_an_error_and_keeps_what_came_before() {
        let d = datagram();
        for n in 0..d.len() {
            let mut out = Vec::new();
            let r = decode(&d[..n], &mut out);
            assert!(r.is_err(), "a {n}-byte prefix decoded");
        }
        let mut out = Vec::new();
        let mut v4 = d.clone();
        v4[3] = 4;
        assert_eq!(decode(&v4, &mut out), Err(SflowError::UnknownVersion(4)));
        let mut at = d.clone();
        at[7] = 9;
        assert_eq!(decode(&at, &mut out), Err(SflowError::BadAddressType(9)));
        let mut many = d.clone();
        many[24..28].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(
            decode(&many, &mut out),
            Err(SflowError::TooManySamples(100_000))
        );
        // The counter sample cut short: the two flow samples stay.
        let cut = &d[..d.len() - 40];
        assert!(decode(cut, &mut out).is_err());
        assert_eq!(out.len(), 2);
    }
}
