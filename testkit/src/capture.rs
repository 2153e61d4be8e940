//! UDP payloads out of packet captures, so tests, benches and fuzz seeds can replay real exports.
//!
//! Reads a capture held in memory: classic pcap (either byte order, micro- or nanosecond
//! timestamps) or pcapng (what `dumpcap` and `tshark` write by default). Link types: Ethernet
//! (1, with 802.1Q/802.1ad tags), Linux cooked SLL (113) and SLL2 (276), raw IP (101, 228, 229)
//! and BSD loopback (0). Inside: IPv4 or IPv6 carrying UDP. Everything else (TCP, ARP, IP
//! fragments, frames cut short by the snap length) is skipped and counted, never an error: a
//! capture of an export stream often holds some unrelated traffic.
//!
//! Like the rest of the crate this does no I/O; the caller reads the file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// One UDP datagram found in a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Capture time, Unix microseconds.
    pub ts_us: u64,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    /// The UDP payload: one NetFlow / IPFIX message when the capture is of an export stream.
    pub payload: &'a [u8],
}

impl UdpDatagram<'_> {
    /// Capture time, Unix milliseconds: what [`nmsd_parsers::FlowDecoder::decode`] takes as `now_ms`.
    pub fn ts_ms(&self) -> u64 {
        self.ts_us / 1000
    }
}

/// The UDP datagrams of a capture, in capture order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capture<'a> {
    pub datagrams: Vec<UdpDatagram<'a>>,
    /// Frames that were not complete, unfragmented UDP over IP.
    pub skipped: usize,
}

/// Why a buffer could not be read as a capture at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng capture (magic {0:#010x})")]
    NotACapture(u32),
    #[error("capture file is cut short at byte {0}")]
    Truncated(usize),
    #[error("pcapng block at byte {offset} has a bad length {len}")]
    BadBlock { offset: usize, len: usize },
}

const PCAP_MICROS: u32 = 0xA1B2_C3D4;
const PCAP_NANOS: u32 = 0xA1B2_3C4D;
const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BYTE_ORDER: u32 = 0x1A2B_3C4D;

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Read every UDP datagram of a pcap or pcapng capture.
pub fn udp_datagrams(capture: &[u8]) -> Result<Capture<'_>, CaptureError> {
    let magic = read_u32(capture, 0, false).ok_or(CaptureError::Truncated(capture.len()))?;
    if magic == PCAPNG_SHB {
        read_pcapng(capture)
    } else {
        read_pcap(capture)
    }
}

/// Which end of a multi-byte field comes first in the capture file (not on the wire: packet
/// headers are always big-endian).
#[derive(Clone, Copy)]
struct Endian {
    little: bool,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        read_u32(b, at, self.little)
    }
}

fn read_u32(b: &[u8], at: usize, little: bool) -> Option<u32> {
    let b: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_pcap(c: &[u8]) -> Result<Capture<'_>, CaptureError> {
    // The magic is written in the capturing host's byte order; reading it both ways tells which.
    let (endian, nanos) = match (read_u32(c, 0, false), read_u32(c, 0, true)) {
        (Some(PCAP_MICROS), _) => (Endian { little: false }, false),
        (Some(PCAP_NANOS), _) => (Endian { little: false }, true),
        (_, Some(PCAP_MICROS)) => (Endian { little: true }, false),
        (_, Some(PCAP_NANOS)) => (Endian { little: true }, true),
        (magic, _) => return Err(CaptureError::NotACapture(magic.unwrap_or(0))),
    };
    // Link type: low 16 bits of the last header word (the upper bits carry FCS information).
    let linktype = endian.u32(c, 20).ok_or(CaptureError::Truncated(c.len()))? & 0xFFFF;
    let mut out = Capture::default();
    let mut pos = 24;
    while pos < c.len() {
        let header = (
            endian.u32(c, pos),
            endian.u32(c, pos + 4),
            endian.u32(c, pos + 8),
            endian.u32(c, pos + 12),
        );
        let (Some(secs), Some(frac), Some(caplen), Some(origlen)) = header else {
            return Err(CaptureError::Truncated(pos));
        };
        let start = pos + 16;
        let Some(frame) = c.get(start..start + caplen as usize) else {
            return Err(CaptureError::Truncated(pos));
        };
        pos = start + caplen as usize;
        let ts_us = secs as u64 * 1_000_000
            + if nanos {
                frac as u64 / 1000
            } else {
                frac as u64
            };
        out.push(linktype, frame, caplen < origlen, ts_us);
    }
    Ok(out)
}

/// One pcapng interface: what its packets' link layer and timestamps are.
#[derive(Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    ticks_per_sec: u64,
}

fn read_pcapng(c: &[u8]) -> Result<Capture<'_>, CaptureError> {
    let mut out = Capture::default();
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut endian = Endian { little: true };
    let mut pos = 0;
    while pos < c.len() {
        let block_type = read_u32(c, pos, endian.little).ok_or(CaptureError::Truncated(pos))?;
        if block_type == PCAPNG_SHB {
            // A section header resets byte order and the interface list.
            endian = match read_u32(c, pos + 8, true) {
                Some(PCAPNG_BYTE_ORDER) => Endian { little: true },
                Some(_) => Endian { little: false },
                None => return Err(CaptureError::Truncated(pos)),
            };
            interfaces.clear();
        }
        let len = endian.u32(c, pos + 4).ok_or(CaptureError::Truncated(pos))? as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(CaptureError::BadBlock { offset: pos, len });
        }
        let block = c.get(pos..pos + len).ok_or(CaptureError::Truncated(pos))?;
        // Body: between the 8-byte block header and the trailing length copy.
        let body = &block[8..len - 4];
        pos += len;
        match block_type {
            // Interface description.
            1 => {
                let linktype = endian.u16(body, 0).unwrap_or(u16::MAX) as u32;
                let ticks_per_sec = body
                    .get(8..)
                    .and_then(|opts| if_tsresol(opts, endian))
                    .unwrap_or(1_000_000);
                interfaces.push(Interface {
                    linktype,
                    ticks_per_sec,
                });
            }
            // Enhanced packet (6) and the obsolete packet block (2): same layout but for a
            // 16-bit interface id followed by a drop count in the latter.
            2 | 6 => {
                let interface = if block_type == 6 {
                    endian.u32(body, 0).map(|i| i as usize)
                } else {
                    endian.u16(body, 0).map(|i| i as usize)
                };
                let fields = (
                    interface,
                    endian.u32(body, 4),
                    endian.u32(body, 8),
                    endian.u32(body, 12),
                    endian.u32(body, 16),
                );
                let (Some(ifx), Some(hi), Some(lo), Some(caplen), Some(origlen)) = fields else {
                    out.skipped += 1;
                    continue;
                };
                let (Some(iface), Some(frame)) =
                    (interfaces.get(ifx), body.get(20..20 + caplen as usize))
                else {
                    out.skipped += 1;
                    continue;
                };
                let ticks = (hi as u64) << 32 | lo as u64;
                let ts_us = ticks_to_us(ticks, iface.ticks_per_sec);
                out.push(iface.linktype, frame, caplen < origlen, ts_us);
            }
            // Simple packet: interface 0, no timestamp; the frame is cut to the block.
            3 => {
                let (Some(origlen), Some(iface)) = (endian.u32(body, 0), interfaces.first()) else {
                    out.skipped += 1;
                    continue;
                };
                let data = &body[4.min(body.len())..];
                let frame = &data[..data.len().min(origlen as usize)];
                out.push(iface.linktype, frame, frame.len() < origlen as usize, 0);
            }
            // Name resolution, statistics, custom blocks and the like carry no packets.
            _ => {}
        }
    }
    Ok(out)
}

/// The `if_tsresol` option of an interface description block, as ticks per second.
fn if_tsresol(mut opts: &[u8], endian: Endian) -> Option<u64> {
    while opts.len() >= 4 {
        let code = endian.u16(opts, 0)?;
        let len = endian.u16(opts, 2)? as usize;
        let value = opts.get(4..4 + len)?;
        if code == 0 {
            break;
        }
        if code == 9 && len == 1 {
            let r = value[0];
            let exp = (r & 0x7F) as u32;
            // High bit set: a power of two; clear: a power of ten. Absurd exponents give up.
            return if r & 0x80 != 0 {
                1u64.checked_shl(exp)
            } else {
                10u64.checked_pow(exp)
            };
        }
        opts = opts.get(4 + len.next_multiple_of(4)..)?;
    }
    None
}

fn ticks_to_us(ticks: u64, per_sec: u64) -> u64 {
    if per_sec == 0 {
        return 0;
    }
    // u128: nanosecond ticks times 10^6 overflows u64.
    (ticks as u128 * 1_000_000 / per_sec as u128) as u64
}

impl<'a> Capture<'a> {
    fn push(&mut self, linktype: u32, frame: &'a [u8], cut_short: bool, ts_us: u64) {
        // A frame cut by the snap length would hand out a partial payload.
        let found = if cut_short {
            None
        } else {
            udp_in_frame(linktype, frame)
        };
        match found {
            Some((src, src_port, dst, dst_port, payload)) => self.datagrams.push(UdpDatagram {
                ts_us,
                src,
                src_port,
                dst,
                dst_port,
                payload,
            }),
            None => self.skipped += 1,
        }
    }
}

type Udp<'a> = (IpAddr, u16, IpAddr, u16, &'a [u8]);

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;

fn udp_in_frame(linktype: u32, f: &[u8]) -> Option<Udp<'_>> {
    let (ethertype, ip) = match linktype {
        LINKTYPE_ETHERNET => {
            let mut at = 12;
            let mut ethertype = be16(f, at)?;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                at += 4;
                ethertype = be16(f, at)?;
            }
            (ethertype, f.get(at + 2..)?)
        }
        // Cooked v1: protocol type at 14, header 16 bytes.
        LINKTYPE_LINUX_SLL => (be16(f, 14)?, f.get(16..)?),
        // Cooked v2: protocol type first, header 20 bytes.
        LINKTYPE_LINUX_SLL2 => (be16(f, 0)?, f.get(20..)?),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => match f.first()? >> 4 {
            4 => (ETHERTYPE_IPV4, f),
            6 => (ETHERTYPE_IPV6, f),
            _ => return None,
        },
        // BSD loopback: the address family in the capturing host's byte order. AF_INET is 2
        // everywhere; AF_INET6 is 24, 28 or 30 depending on the BSD.
        LINKTYPE_NULL => {
            let family = f.get(..4)?;
            let af = if family[0] == 0 && family[1] == 0 {
                family[3]
            } else {
                family[0]
            };
            match af {
                2 => (ETHERTYPE_IPV4, f.get(4..)?),
                24 | 28 | 30 => (ETHERTYPE_IPV6, f.get(4..)?),
                _ => return None,
            }
        }
        _ => return None,
    };
    match ethertype {
        ETHERTYPE_IPV4 => udp_in_ipv4(ip),
        ETHERTYPE_IPV6 => udp_in_ipv6(ip),
        _ => None,
    }
}

const IPPROTO_UDP: u8 = 17;

fn udp_in_ipv4(p: &[u8]) -> Option<Udp<'_>> {
    let vihl = *p.first()?;
    let ihl = (vihl & 0x0F) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    // Total length trims the Ethernet padding of short frames.
    let total = be16(p, 2)? as usize;
    let flags_frag = be16(p, 6)?;
    // More-fragments set or a non-zero offset: only part of the datagram is here.
    if flags_frag & 0x3FFF != 0 || p[9] != IPPROTO_UDP || total < ihl {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let udp = p.get(ihl..total)?;
    udp_payload(udp).map(|(sp, dp, payload)| (src.into(), sp, dst.into(), dp, payload))
}

fn udp_in_ipv6(p: &[u8]) -> Option<Udp<'_>> {
    if p.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = be16(p, 4)? as usize;
    let mut next = *p.get(6)?;
    let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    let mut rest = p.get(40..40 + payload_len)?;
    // Walk extension headers up to UDP; a fragment header means the datagram is incomplete.
    loop {
        match next {
            IPPROTO_UDP => break,
            // Hop-by-hop, routing, destination options: 8-byte units after the first 8.
            0 | 43 | 60 => {
                let len = (*rest.get(1)? as usize + 1) * 8;
                next = *rest.first()?;
                rest = rest.get(len..)?;
            }
            _ => return None,
        }
    }
    let (sp, dp, payload) = udp_payload(rest)?;
    Some((
        Ipv6Addr::from(src).into(),
        sp,
        Ipv6Addr::from(dst).into(),
        dp,
        payload,
    ))
}

fn udp_payload(u: &[u8]) -> Option<(u16, u16, &[u8])> {
    let sp = be16(u, 0)?;
    let dp = be16(u, 2)?;
    let len = be16(u, 4)? as usize;
    // UDP length 0 happens with IPv6 jumbograms only; otherwise it must cover the header.
    let payload = if len == 0 {
        u.get(8..)?
    } else {
        u.get(8..len)?
    };
    Some((sp, dp, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic pcap (little-endian, microseconds) around the given frames.
    fn pcap(linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&PCAP_MICROS.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&linktype.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            b.extend_from_slice(&(1_767_225_600u32 + i as u32).to_le_bytes());
            b.extend_from_slice(&250_000u32.to_le_bytes());
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(f);
        }
        b
    }

    fn udp(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sp.to_be_bytes());
        u.extend_from_slice(&dp.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[IPPROTO_UDP, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        p
    }

    fn ethernet(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        // Pad short frames to the Ethernet minimum, as a capture on a real link shows them.
        while f.len() < 60 {
            f.push(0);
        }
        f
    }

    #[test]
    fn reads_ethernet_ipv4_and_ipv6_and_skips_the_rest() {
        let v4 = ipv4(
            [127, 0, 0, 1],
            [127, 0, 0, 2],
            IPPROTO_UDP,
            &udp(4444, 2055, b"abc"),
        );
        let v6src: Ipv6Addr = "::1".parse().expect("valid address");
        let v6 = ipv6(v6src, v6src, &udp(5555, 4739, b"ipfix!"));
        let tcp = ipv4([127, 0, 0, 1], [127, 0, 0, 2], 6, &[0; 20]);
        let mut tagged = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0, 0, 42, 0x08, 0];
        tagged.extend_from_slice(&v4);
        let frames = [
            ethernet(ETHERTYPE_IPV4, &v4),
            ethernet(ETHERTYPE_IPV6, &v6),
            ethernet(ETHERTYPE_IPV4, &tcp),
            ethernet(0x0806, &[0; 28]),
            tagged,
        ];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let buf = pcap(LINKTYPE_ETHERNET, &refs);
        let cap = udp_datagrams(&buf).expect("valid capture");
        assert_eq!(cap.skipped, 2);
        assert_eq!(cap.datagrams.len(), 3);
        let d = cap.datagrams[0];
        // The 3-byte payload is not followed by the frame's padding.
        assert_eq!(d.payload, b"abc");
        assert_eq!(d.src, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((d.src_port, d.dst_port), (4444, 2055));
        assert_eq!(d.ts_us, 1_767_225_600_250_000);
        assert_eq!(d.ts_ms(), 1_767_225_600_250);
        assert_eq!(cap.datagrams[1].payload, b"ipfix!");
        assert_eq!(cap.datagrams[1].src, IpAddr::V6(v6src));
        assert_eq!(cap.datagrams[2].payload, b"abc");
    }

    #[test]
    fn reads_cooked_raw_and_loopback_links() {
        let v4 = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_UDP,
            &udp(1, 2, b"xyz"),
        );
        let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0];
        sll.extend_from_slice(&v4);
        let mut sll2 = vec![
            0x08, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        sll2.extend_from_slice(&v4);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&v4);
        for (lt, frame) in [
            (LINKTYPE_LINUX_SLL, &sll),
            (LINKTYPE_LINUX_SLL2, &sll2),
            (LINKTYPE_RAW, &v4),
            (LINKTYPE_NULL, &null),
        ] {
            let buf = pcap(lt, &[frame]);
            let cap = udp_datagrams(&buf).expect("valid capture");
            assert_eq!(cap.datagrams.len(), 1, "linktype {lt}");
            assert_eq!(cap.datagrams[0].payload, b"xyz", "linktype {lt}");
            assert_eq!(cap.datagrams[0].src, IpAddr::from([10, 0, 0, 1]));
        }
    }

    #[test]
    fn big_endian_nanosecond_pcap() {
        let v4 = ipv4([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP, &udp(1, 2, b"n"));
        let mut b = Vec::new();
        b.extend_from_slice(&PCAP_NANOS.to_be_bytes());
        b.extend_from_slice(&[0, 2, 0, 4]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&LINKTYPE_RAW.to_be_bytes());
        b.extend_from_slice(&10u32.to_be_bytes());
        b.extend_from_slice(&123_456_789u32.to_be_bytes());
        b.extend_from_slice(&(v4.len() as u32).to_be_bytes());
        b.extend_from_slice(&(v4.len() as u32).to_be_bytes());
        b.extend_from_slice(&v4);
        let cap = udp_datagrams(&b).expect("valid capture");
        assert_eq!(cap.datagrams[0].ts_us, 10_123_456);
    }

    #[test]
    fn snapped_and_fragmented_packets_are_skipped() {
        let v4 = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_UDP,
            &udp(1, 2, &[7; 100]),
        );
        let mut buf = pcap(LINKTYPE_RAW, &[&v4[..60]]);
        // Original length larger than captured: the payload would be partial.
        let at = 24 + 12;
        buf[at..at + 4].copy_from_slice(&(v4.len() as u32).to_le_bytes());
        assert_eq!(udp_datagrams(&buf).expect("valid capture").skipped, 1);
        let mut frag = v4.clone();
        frag[6] = 0x20; // more fragments
        let buf = pcap(LINKTYPE_RAW, &[&frag]);
        let cap = udp_datagrams(&buf).expect("valid capture");
        assert_eq!((cap.datagrams.len(), cap.skipped), (0, 1));
    }

    fn ng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn reads_pcapng_with_tsresol() {
        let v4 = ipv4(
            [192, 0, 2, 9],
            [192, 0, 2, 1],
            IPPROTO_UDP,
            &udp(9, 2055, b"ng"),
        );
        let mut shb = PCAPNG_BYTE_ORDER.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut idb = (LINKTYPE_ETHERNET as u16).to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&0u32.to_le_bytes());
        // if_tsresol = 10^-9, then opt_endofopt.
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        let frame = ethernet(ETHERTYPE_IPV4, &v4);
        let ticks: u64 = 1_767_225_600_123_456_789;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ticks as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        let mut buf = ng_block(PCAPNG_SHB, &shb);
        buf.extend(ng_block(1, &idb));
        buf.extend(ng_block(5, &[0; 8])); // interface statistics: ignored
        buf.extend(ng_block(6, &epb));
        let cap = udp_datagrams(&buf).expect("valid capture");
        assert_eq!(cap.datagrams.len(), 1);
        assert_eq!(cap.datagrams[0].payload, b"ng");
        assert_eq!(cap.datagrams[0].ts_us, 1_767_225_600_123_456);
        assert_eq!(cap.datagrams[0].src, IpAddr::from([192, 0, 2, 9]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            udp_datagrams(b"hello world, not a capture"),
            Err(CaptureError::NotACapture(_))
        ));
        assert!(udp_datagrams(&[]).is_err());
        let v4 = ipv4([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP, &udp(1, 2, b"x"));
        let buf = pcap(LINKTYPE_RAW, &[&v4]);
        for cut in 0..buf.len() {
            let _ = udp_datagrams(&buf[..cut]);
        }
        let mut ng = ng_block(PCAPNG_SHB, &[0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0]);
        ng.extend(ng_block(6, &[0; 24]));
        for cut in 0..ng.len() {
            let _ = udp_datagrams(&ng[..cut]);
        }
    }
}
