//! Captured frames into what a flow table needs: the 5-tuple, VLAN, lengths, TCP flags and
//! ICMP type/code.
//!
//! Decodes Ethernet II (with any number of 802.1Q / 802.1ad tags, so QinQ too), MPLS label
//! stacks, IPv4 (options and fragments), IPv6 with its extension headers, and the first bytes of
//! TCP, UDP, ICMP and ICMPv6. Raw IP and Linux cooked captures (SLL, SLL2) and BSD loopback are
//! taken too, so a pcap from `tcpdump -i any` works. Only headers are read: a frame cut short by
//! the snap length still counts at its IP length, as long as the headers it needs are there.
//!
//! Fragments: the first fragment of an IPv4 or IPv6 datagram carries the transport header and so
//! the ports; later fragments have no ports (they come out with ports 0), the way softflowd and
//! most probes account them. Allocation-free; a malformed or truncated frame is a
//! [`PacketError`], never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::record::PacketCounts;

/// How the frames of a capture begin (pcap `LINKTYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD loopback: a 4-byte address family in host byte order (LINKTYPE_NULL, 0).
    Null,
    /// Ethernet II (LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// Bare IPv4 or IPv6 (LINKTYPE_RAW 101, IPV4 228, IPV6 229).
    RawIp,
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276).
    LinuxSll2,
}

impl LinkType {
    /// The link type of a pcap/pcapng `LINKTYPE_*` number, if this decoder reads it.
    pub const fn from_pcap(linktype: u32) -> Option<LinkType> {
        match linktype {
            0 => Some(LinkType::Null),
            1 => Some(LinkType::Ethernet),
            101 | 228 | 229 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

/// Where a packet stands in a fragmented IP datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    Whole,
    /// First fragment: carries the transport header and its ports.
    First,
    /// A later fragment: no transport header, no ports.
    Later,
}

/// What a flow table takes from one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    /// 0 for protocols without ports and for later fragments.
    pub src_port: u16,
    /// For ICMP and ICMPv6, `type << 8 | code` (as NetFlow v5 and nfdump carry it); 0 for
    /// protocols without ports and for later fragments.
    pub dst_port: u16,
    /// IP protocol of the payload (after IPv6 extension headers).
    pub protocol: u8,
    /// Outermost 802.1Q/802.1ad VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Innermost VLAN id of a QinQ frame (the customer tag), 0 when there is only one tag.
    pub inner_vlan: u16,
    /// Bytes at IP level, from the IP header (not the captured length): what NetFlow counts.
    pub ip_len: u32,
    /// IPv4 ToS / IPv6 traffic class.
    pub tos: u8,
    /// TCP flags of this segment (0 for other protocols).
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type and code (0 for other protocols).
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub fragment: Fragment,
    /// MPLS labels seen before the IP header.
    pub mpls_labels: u8,
}

impl PacketInfo {
    /// Whether this is an ICMP "destination unreachable" (ICMP type 3, ICMPv6 type 1).
    pub const fn is_icmp_unreachable(&self) -> bool {
        (self.protocol == PROTO_ICMP && self.icmp_type == 3)
            || (self.protocol == PROTO_ICMPV6 && self.icmp_type == 1)
    }

    /// What this packet adds to its flow's [`PacketCounts`].
    pub const fn counts(&self) -> PacketCounts {
        let mut c = PacketCounts::ZERO;
        let f = self.tcp_flags;
        if self.protocol == PROTO_TCP {
            if f & TCP_SYN != 0 {
                if f & TCP_ACK != 0 {
                    c.syn_ack = 1;
                } else {
                    c.syn = 1;
                }
            }
            if f & TCP_RST != 0 {
                c.rst = 1;
            }
        } else if self.is_icmp_unreachable() {
            c.icmp_unreachable = 1;
        }
        c
    }
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Why a frame was not decoded. [`PacketError::kind`] is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("frame too short for its {what} header: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("not IP: ethertype {0:#06x}")]
    NotIp(u16),
    #[error("IP version {0} in the IP header")]
    BadIpVersion(u8),
    #[error("IPv4 header length {0} bytes is below 20")]
    BadIpv4HeaderLength(usize),
    #[error("IP total length {total} is shorter than its {header}-byte header")]
    BadIpLength { total: usize, header: usize },
    #[error("more than {0} VLAN tags, MPLS labels or IPv6 extension headers")]
    TooManyHeaders(usize),
}

impl PacketError {
    /// Stable, low-cardinality label for metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            PacketError::Truncated { .. } => "truncated",
            PacketError::NotIp(_) => "not_ip",
            PacketError::BadIpVersion(_) => "bad_ip_version",
            PacketError::BadIpv4HeaderLength(_) => "bad_ipv4_header_length",
            PacketError::BadIpLength { .. } => "bad_ip_length",
            PacketError::TooManyHeaders(_) => "too_many_headers",
        }
    }

    /// Every kind, for pre-registering metrics.
    pub const KINDS: &'static [&'static str] = &[
        "truncated",
        "not_ip",
        "bad_ip_version",
        "bad_ipv4_header_length",
        "bad_ip_length",
        "too_many_headers",
    ];
}

/// Tags, labels and extension headers a frame may stack before we give up: real traffic has a
/// handful; a crafted frame must not make us loop over a 64 KiB jumbo of tags.
const MAX_STACK: usize = 16;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;
/// Pre-standard QinQ outer tag some switches still send.
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MULTICAST: u16 = 0x8848;

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), PacketError> {
    if buf.len() < n {
        Err(PacketError::Truncated {
            what,
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decode one captured frame of link type `link`.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<PacketInfo, PacketError> {
    match link {
        LinkType::Ethernet => decode_ethernet(frame),
        LinkType::RawIp => decode_ip(frame, 0, 0, 0),
        LinkType::Null => {
            need(frame, 4, "loopback")?;
            // The family is in the capturing host's byte order: AF_INET is 2 everywhere,
            // AF_INET6 24, 28 or 30 by OS. Look at the IP version nibble instead.
            decode_ip(&frame[4..], 0, 0, 0)
        }
        LinkType::LinuxSll => {
            need(frame, 16, "Linux cooked")?;
            decode_ethertype(be16(frame, 14), &frame[16..], 0, 0)
        }
        LinkType::LinuxSll2 => {
            need(frame, 20, "Linux cooked v2")?;
            decode_ethertype(be16(frame, 0), &frame[20..], 0, 0)
        }
    }
}

/// Decode an Ethernet II frame (the FCS, if captured, is ignored: lengths come from IP).
pub fn decode_ethernet(frame: &[u8]) -> Result<PacketInfo, PacketError> {
    need(frame, 14, "Ethernet")?;
    let mut ethertype = be16(frame, 12);
    let mut at = 14;
    let (mut outer, mut inner) = (0u16, 0u16);
    let mut tags = 0;
    while matches!(ethertype, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
        tags += 1;
        if tags > MAX_STACK {
            return Err(PacketError::TooManyHeaders(MAX_STACK));
        }
        need(&frame[at..], 4, "802.1Q tag")?;
        let vid = be16(frame, at) & 0x0FFF;
        if tags == 1 {
            outer = vid;
        } else {
            inner = vid;
        }
        ethertype = be16(frame, at + 2);
        at += 4;
    }
    decode_ethertype(ethertype, &frame[at..], outer, inner)
}

fn decode_ethertype(
    ethertype: u16,
    payload: &[u8],
    vlan: u16,
    inner_vlan: u16,
) -> Result<PacketInfo, PacketError> {
    match ethertype {
        ETH_IPV4 | ETH_IPV6 => decode_ip(payload, vlan, inner_vlan, 0),
        ETH_MPLS | ETH_MPLS_MULTICAST => decode_mpls(payload, vlan, inner_vlan),
        other => Err(PacketError::NotIp(other)),
    }
}

fn decode_mpls(mut buf: &[u8], vlan: u16, inner_vlan: u16) -> Result<PacketInfo, PacketError> {
    for labels in 1..=MAX_STACK {
        need(buf, 4, "MPLS label")?;
        let bottom = buf[2] & 0x01 != 0;
        buf = &buf[4..];
        if bottom {
            // MPLS does not say what it carries; the IP version nibble does (a pseudowire's
            // control word starts with 0 and is not IP).
            return decode_ip(buf, vlan, inner_vlan, labels as u8);
        }
    }
    Err(PacketError::TooManyHeaders(MAX_STACK))
}

fn decode_ip(
    buf: &[u8],
    vlan: u16,
    inner_vlan: u16,
    mpls_labels: u8,
) -> Result<PacketInfo, PacketError> {
    need(buf, 1, "IP")?;
    let mut p = match buf[0] >> 4 {
        4 => decode_ipv4(buf)?,
        6 => decode_ipv6(buf)?,
        v => return Err(PacketError::BadIpVersion(v)),
    };
    p.vlan = vlan;
    p.inner_vlan = inner_vlan;
    p.mpls_labels = mpls_labels;
    Ok(p)
}

fn empty(src: IpAddr, dst: IpAddr) -> PacketInfo {
    PacketInfo {
        src_addr: src,
        dst_addr: dst,
        src_port: 0,
        dst_port: 0,
        protocol: 0,
        vlan: 0,
        inner_vlan: 0,
        ip_len: 0,
        tos: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
        fragment: Fragment::Whole,
        mpls_labels: 0,
    }
}

fn decode_ipv4(b: &[u8]) -> Result<PacketInfo, PacketError> {
    need(b, 20, "IPv4")?;
    let ihl = usize::from(b[0] & 0x0F) * 4;
    if ihl < 20 {
        return Err(PacketError::BadIpv4HeaderLength(ihl));
    }
    need(b, ihl, "IPv4 options")?;
    let total = usize::from(be16(b, 2));
    if total < ihl {
        return Err(PacketError::BadIpLength { total, header: ihl });
    }
    let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mut p = empty(src.into(), dst.into());
    p.ip_len = total as u32;
    p.tos = b[1];
    p.protocol = b[9];
    let flags_offset = be16(b, 6);
    let more_fragments = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1FFF;
    p.fragment = match (offset, more_fragments) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    if p.fragment != Fragment::Later {
        // The captured bytes may run past `total` (Ethernet padding) or stop short of it (snap
        // length): the transport header is what both have.
        let end = total.min(b.len());
        transport(&mut p, &b[ihl..end])?;
    }
    Ok(p)
}

fn decode_ipv6(b: &[u8]) -> Result<PacketInfo, PacketError> {
    need(b, 40, "IPv6")?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&b[24..40]);
    let dst = Ipv6Addr::from(a);
    let mut p = empty(src.into(), dst.into());
    // A jumbogram (payload length 0 with a hop-by-hop jumbo option) is counted at its captured
    // length; nothing on Ethernet sends them.
    let payload_len = usize::from(be16(b, 4));
    p.ip_len = (40 + payload_len) as u32;
    p.tos = ((be16(b, 0) >> 4) & 0xFF) as u8;
    let end = (40 + payload_len).min(b.len());
    let mut rest = &b[40..end];
    let mut next = b[6];
    for _ in 0..MAX_STACK {
        match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6: (next, len in
            // 8-byte units not counting the first 8).
            0 | 43 | 60 | 135 | 139 | 140 => {
                need(rest, 8, "IPv6 extension")?;
                let len = 8 + usize::from(rest[1]) * 8;
                need(rest, len, "IPv6 extension")?;
                next = rest[0];
                rest = &rest[len..];
            }
            // Fragment header: fixed 8 bytes.
            44 => {
                need(rest, 8, "IPv6 fragment")?;
                let offset = be16(rest, 2) >> 3;
                let more = rest[3] & 0x01 != 0;
                p.fragment = match (offset, more) {
                    (0, false) => Fragment::Whole,
                    (0, true) => Fragment::First,
                    _ => Fragment::Later,
                };
                next = rest[0];
                rest = &rest[8..];
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                need(rest, 8, "IPv6 AH")?;
                let len = (usize::from(rest[1]) + 2) * 4;
                need(rest, len, "IPv6 AH")?;
                next = rest[0];
                rest = &rest[len..];
            }
            _ => {
                p.protocol = next;
                if p.fragment != Fragment::Later {
                    transport(&mut p, rest)?;
                }
                return Ok(p);
            }
        }
    }
    Err(PacketError::TooManyHeaders(MAX_STACK))
}

/// Ports, flags or type/code from the start of the transport header.
fn transport(p: &mut PacketInfo, l4: &[u8]) -> Result<(), PacketError> {
    match p.protocol {
        PROTO_TCP => {
            need(l4, 14, "TCP")?;
            p.src_port = be16(l4, 0);
            p.dst_port = be16(l4, 2);
            p.tcp_flags = l4[13];
        }
        // UDP, UDP-Lite, SCTP and DCCP all start with the two ports.
        PROTO_UDP | 136 | 132 | 33 => {
            need(l4, 4, "UDP")?;
            p.src_port = be16(l4, 0);
            p.dst_port = be16(l4, 2);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            need(l4, 2, "ICMP")?;
            p.icmp_type = l4[0];
            p.icmp_code = l4[1];
            p.dst_port = u16::from(l4[0]) << 8 | u16::from(l4[1]);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, flags_offset: u16, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0xB8];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1]);
        h.extend_from_slice(&flags_offset.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7]);
        h.extend_from_slice(l4);
        h
    }

    fn ipv6(next: u8, ext_and_l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x6A, 0xB0, 0, 0];
        h.extend_from_slice(&(ext_and_l4.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(ext_and_l4);
        h
    }

    fn tcp(src: u16, dst: u16, flags: u8) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&src.to_be_bytes());
        t.extend_from_slice(&dst.to_be_bytes());
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&[0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
        t
    }

    fn udp(src: u16, dst: u16, payload: usize) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&src.to_be_bytes());
        u.extend_from_slice(&dst.to_be_bytes());
        u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend(std::iter::repeat_n(0xAB, payload));
        u
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = eth(ETH_IPV4, &ipv4(6, 0, &tcp(40000, 443, TCP_SYN | TCP_ACK)));
        let p = decode(LinkType::Ethernet, &f).unwrap();
        assert_eq!(p.src_addr, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst_addr, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((p.src_port, p.dst_port, p.protocol), (40000, 443, 6));
        assert_eq!(p.tcp_flags, TCP_SYN | TCP_ACK);
        assert_eq!((p.ip_len, p.tos, p.vlan), (40, 0xB8, 0));
        assert_eq!(p.fragment, Fragment::Whole);
    }

    #[test]
    fn ethernet_padding_and_snap_length_do_not_change_the_ip_length() {
        // 28-byte IPv4/UDP datagram padded to Ethernet's 46-byte minimum payload.
        let mut payload = ipv4(17, 0, &udp(53, 5353, 0));
        payload.resize(46, 0);
        let p = decode_ethernet(&eth(ETH_IPV4, &payload)).unwrap();
        assert_eq!((p.ip_len, p.src_port, p.dst_port), (28, 53, 5353));
        // A 1,000-byte datagram captured with a 64-byte snap length.
        let big = eth(ETH_IPV4, &ipv4(17, 0, &udp(1, 2, 972)));
        let p = decode_ethernet(&big[..64]).unwrap();
        assert_eq!((p.ip_len, p.src_port, p.dst_port), (1000, 1, 2));
    }

    #[test]
    fn vlan_and_qinq_tags() {
        let ip = ipv4(17, 0, &udp(1000, 2000, 10));
        let mut tagged = vec![0x20, 0x64]; // PCP 1, VID 100
        tagged.extend_from_slice(&ETH_IPV4.to_be_bytes());
        tagged.extend_from_slice(&ip);
        let p = decode_ethernet(&eth(ETH_VLAN, &tagged)).unwrap();
        assert_eq!((p.vlan, p.inner_vlan, p.dst_port), (100, 0, 2000));

        let mut qinq = vec![0x00, 0x0A];
        qinq.extend_from_slice(&ETH_VLAN.to_be_bytes());
        qinq.extend_from_slice(&tagged);
        let p = decode_ethernet(&eth(ETH_QINQ, &qinq)).unwrap();
        assert_eq!((p.vlan, p.inner_vlan, p.src_port), (10, 100, 1000));
    }

    #[test]
    fn mpls_stack_then_ip() {
        let ip = ipv6(17, &udp(7, 8, 0));
        let mut mpls = vec![0x00, 0x01, 0x00, 0x40]; // label 16, not bottom
        mpls.extend_from_slice(&[0x00, 0x02, 0x01, 0x40]); // label 32, bottom of stack
        mpls.extend_from_slice(&ip);
        let p = decode_ethernet(&eth(ETH_MPLS, &mpls)).unwrap();
        assert_eq!(
            (p.mpls_labels, p.protocol, p.src_port, p.dst_port),
            (2, 17, 7, 8)
        );
        assert_eq!(p.ip_len, 48);
    }

    #[test]
    fn ipv4_fragments_only_the_first_has_ports() {
        let first = ipv4(17, 0x2000, &udp(5000, 6000, 100));
        let p = decode(LinkType::RawIp, &first).unwrap();
        assert_eq!(
            (p.fragment, p.src_port, p.dst_port),
            (Fragment::First, 5000, 6000)
        );
        let later = ipv4(17, 0x000E, &[0xAB; 60]);
        let p = decode(LinkType::RawIp, &later).unwrap();
        assert_eq!(
            (p.fragment, p.src_port, p.dst_port),
            (Fragment::Later, 0, 0)
        );
        assert_eq!((p.protocol, p.ip_len), (17, 80));
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        // Hop-by-hop (8 bytes), destination options (16 bytes), then TCP.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&tcp(1, 22, TCP_RST));
        let p = decode(LinkType::RawIp, &ipv6(0, &ext)).unwrap();
        assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 1, 22));
        assert_eq!((p.tcp_flags, p.tos), (TCP_RST, 0xAB));
        assert_eq!(p.ip_len, 40 + 24 + 20);

        // Fragment header: first fragment (offset 0, M=1), then a later one.
        let mut first = vec![17, 0, 0x00, 0x01, 0, 0, 0, 9];
        first.extend_from_slice(&udp(99, 100, 20));
        let p = decode(LinkType::RawIp, &ipv6(44, &first)).unwrap();
        assert_eq!(
            (p.fragment, p.protocol, p.dst_port),
            (Fragment::First, 17, 100)
        );
        let mut later = vec![17, 0, 0x00, 0x18, 0, 0, 0, 9];
        later.extend_from_slice(&[0xAB; 16]);
        let p = decode(LinkType::RawIp, &ipv6(44, &later)).unwrap();
        assert_eq!(
            (p.fragment, p.protocol, p.dst_port),
            (Fragment::Later, 17, 0)
        );
    }

    #[test]
    fn icmp_type_and_code() {
        let p = decode(LinkType::RawIp, &ipv4(1, 0, &[3, 3, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!((p.icmp_type, p.icmp_code, p.dst_port), (3, 3, 0x0303));
        assert!(p.is_icmp_unreachable());
        let p = decode(LinkType::RawIp, &ipv6(58, &[128, 0, 0, 0, 0, 0, 0, 1])).unwrap();
        assert_eq!((p.protocol, p.dst_port), (58, 128 << 8));
        assert!(!p.is_icmp_unreachable());
        let p = decode(LinkType::RawIp, &ipv6(58, &[1, 4, 0, 0])).unwrap();
        assert!(p.is_icmp_unreachable());
    }

    #[test]
    fn cooked_and_loopback_captures() {
        let ip = ipv4(6, 0, &tcp(1, 2, TCP_FIN));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETH_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::LinuxSll, &sll).unwrap().tcp_flags, TCP_FIN);
        let mut sll2 = ETH_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::LinuxSll2, &sll2).unwrap().dst_port, 2);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::Null, &null).unwrap().src_port, 1);
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(matches!(
            decode_ethernet(&[0; 13]),
            Err(PacketError::Truncated { .. })
        ));
        assert_eq!(
            decode_ethernet(&eth(0x0806, &[0; 28])),
            Err(PacketError::NotIp(0x0806))
        );
        let mut bad_ihl = ipv4(6, 0, &tcp(1, 2, 0));
        bad_ihl[0] = 0x44;
        assert_eq!(
            decode(LinkType::RawIp, &bad_ihl),
            Err(PacketError::BadIpv4HeaderLength(16))
        );
        let mut short_total = ipv4(6, 0, &tcp(1, 2, 0));
        short_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(matches!(
            decode(LinkType::RawIp, &short_total),
            Err(PacketError::BadIpLength { .. })
        ));
        // TCP header cut off by the IP total length.
        let mut cut = ipv4(6, 0, &tcp(1, 2, 0));
        cut[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert!(matches!(
            decode(LinkType::RawIp, &cut),
            Err(PacketError::Truncated { what: "TCP", .. })
        ));
        assert_eq!(
            decode(LinkType::RawIp, &[0x50; 40]),
            Err(PacketError::BadIpVersion(5))
        );
        // A chain of hop-by-hop headers longer than the limit.
        let ext: Vec<u8> = std::iter::repeat_n([0u8, 0, 0, 0, 0, 0, 0, 0], 20)
            .flatten()
            .collect();
        assert_eq!(
            decode(LinkType::RawIp, &ipv6(0, &ext)),
            Err(PacketError::TooManyHeaders(MAX_STACK))
        );
        // Tags without end.
        let tags: Vec<u8> = std::iter::repeat_n([0x00, 0x01, 0x81, 0x00], 40)
            .flatten()
            .collect();
        assert_eq!(
            decode_ethernet(&eth(ETH_VLAN, &tags)),
            Err(PacketError::TooManyHeaders(MAX_STACK))
        );
    }

    #[test]
    fn every_prefix_of_every_frame_is_handled() {
        let frames = [
            eth(ETH_IPV4, &ipv4(6, 0, &tcp(1, 2, 3))),
            eth(ETH_IPV6, &ipv6(44, &[6, 0, 0, 1, 0, 0, 0, 1])),
            eth(ETH_MPLS, &[0, 0, 1, 0, 0x45]),
        ];
        for f in &frames {
            for n in 0..=f.len() {
                let _ = decode_ethernet(&f[..n]);
            }
        }
    }
}
