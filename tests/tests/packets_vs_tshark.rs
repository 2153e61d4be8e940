//! The frames softflowd's test pcap does not have: 802.1Q and QinQ tags, MPLS label stacks,
//! IPv4 and IPv6 fragments, IPv6 extension headers, ICMP errors that quote a header, a
//! truncated (snap length) capture and frames that are not IP. `nmsd replay` builds flows from
//! a pcap of them; tshark dissects the same pcap independently (defragmentation off, so a later
//! fragment has no ports in either). Per (VLAN, src, dst, protocol, ports), packets and IP bytes
//! must agree, and frames that are not IP are counted as malformed by nmsd.

use std::collections::BTreeMap;
use std::process::Command;

use nmsd_acceptance::{require, scratch};

type Key = (u16, String, String, u8, u16, u16);

struct Frames {
    pcap: Vec<u8>,
    count: u32,
}

impl Frames {
    fn new() -> Self {
        let mut pcap = 0xA1B2_C3D4u32.to_le_bytes().to_vec();
        pcap.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pcap.extend_from_slice(&65_535u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        Frames { pcap, count: 0 }
    }

    /// One Ethernet frame; `snap` cuts the captured bytes (the wire length stays).
    fn push(&mut self, frame: &[u8], snap: Option<usize>) {
        let cap = snap.map_or(frame.len(), |s| s.min(frame.len()));
        let ts_us = 1_767_225_600_000_000u64 + u64::from(self.count) * 1000;
        self.pcap
            .extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        self.pcap
            .extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        self.pcap.extend_from_slice(&(cap as u32).to_le_bytes());
        self.pcap
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.pcap.extend_from_slice(&frame[..cap]);
        self.count += 1;
    }
}

const MACS: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

/// Ethernet with `tags` (TPID, VID), outermost first, and then `ethertype`.
fn eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = MACS.to_vec();
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(proto: u8, id: u16, flags_offset: u16, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags_offset.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    // Header checksum, so tshark has nothing to complain about.
    let sum = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let sum = !((sum & 0xFFFF) + (sum >> 16)) as u16;
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn ipv6(next: u8, src_last: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src_last,
    ]);
    h.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFE,
    ]);
    h.extend_from_slice(rest);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    t.extend(std::iter::repeat_n(0x61, payload));
    t
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend(std::iter::repeat_n(0x62, payload));
    u
}

fn build() -> Frames {
    let mut f = Frames::new();
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    for i in 0..5usize {
        // Plain, 802.1Q, QinQ (802.1ad outer, 802.1Q inner), MPLS with two labels.
        f.push(
            &eth(
                &[],
                0x0800,
                &ipv4(6, 1, 0, a, b, &tcp(1000, 80, 0x18, 10 * i)),
            ),
            None,
        );
        f.push(
            &eth(
                &[(0x8100, 100)],
                0x0800,
                &ipv4(17, 2, 0, a, b, &udp(2000, 53, 20 + i)),
            ),
            None,
        );
        f.push(
            &eth(
                &[(0x88A8, 200), (0x8100, 300)],
                0x86DD,
                &ipv6(17, 1, &udp(3000, 123, 48 + i)),
            ),
            None,
        );
        let mut mpls = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        mpls.extend_from_slice(&ipv4(6, 3, 0, [10, 1, 0, 1], b, &tcp(4000, 443, 0x10, i)));
        f.push(&eth(&[], 0x8847, &mpls), None);
    }
    // An IPv4 UDP datagram in three fragments (offsets in 8-byte units).
    let whole = udp(5000, 5001, 1000);
    f.push(
        &eth(&[], 0x0800, &ipv4(17, 9, 0x2000, a, b, &whole[..400])),
        None,
    );
    f.push(
        &eth(
            &[],
            0x0800,
            &ipv4(17, 9, 0x2000 | 50, a, b, &whole[400..800]),
        ),
        None,
    );
    f.push(
        &eth(&[], 0x0800, &ipv4(17, 9, 100, a, b, &whole[800..])),
        None,
    );
    // IPv6: hop-by-hop and destination options before TCP; a fragmented UDP datagram.
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&tcp(6000, 22, 0x02, 0));
    f.push(&eth(&[], 0x86DD, &ipv6(0, 2, &ext)), None);
    let whole = udp(7000, 7001, 200);
    let mut first = vec![17, 0, 0x00, 0x01, 0, 0, 0, 42];
    first.extend_from_slice(&whole[..104]);
    f.push(&eth(&[], 0x86DD, &ipv6(44, 3, &first)), None);
    let mut later = vec![17, 0, 0x00, 104, 0, 0, 0, 42];
    later.extend_from_slice(&whole[104..]);
    f.push(&eth(&[], 0x86DD, &ipv6(44, 3, &later)), None);
    // ICMP port unreachable quoting the UDP datagram it answers, and an ICMPv6 echo.
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&ipv4(17, 2, 0, a, b, &udp(2000, 53, 0)));
    f.push(&eth(&[], 0x0800, &ipv4(1, 4, 0, b, a, &icmp)), None);
    f.push(
        &eth(
            &[],
            0x86DD,
            &ipv6(58, 4, &[128, 0, 0, 0, 0, 1, 0, 1, 0x63, 0x63]),
        ),
        None,
    );
    // A 1,400-byte TCP segment captured with a 96-byte snap length.
    f.push(
        &eth(
            &[],
            0x0800,
            &ipv4(6, 5, 0, a, b, &tcp(8000, 8080, 0x10, 1360)),
        ),
        Some(96),
    );
    // Not IP: ARP and an LLDP frame.
    f.push(&eth(&[], 0x0806, &[0; 28]), None);
    f.push(&eth(&[], 0x88CC, &[0; 40]), None);
    f
}

/// Per key: (packets, bytes) from `nmsd replay`'s output.
fn nmsd_flows(pcap: &std::path::Path) -> (BTreeMap<Key, (u64, u64)>, String) {
    let out = Command::new(nmsd_acceptance::nmsd::binary())
        .arg("replay")
        .arg(pcap)
        .args(["--active-timeout", "1h", "--idle-timeout", "1h"])
        .args(["--tcp-close-timeout", "1h"])
        .output()
        .expect("nmsd replay runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "nmsd replay: {stderr}");
    let mut flows = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        let n = |i: usize| {
            c.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        let key = (
            n(7) as u16,
            c[3].to_string(),
            c[5].to_string(),
            n(2) as u8,
            n(4) as u16,
            n(6) as u16,
        );
        let e = flows.entry(key).or_insert((0, 0));
        e.0 += n(8);
        e.1 += n(9);
    }
    (flows, stderr)
}

/// The same from tshark's dissection, and the frames it found no IP in.
fn tshark_flows(pcap: &std::path::Path) -> (BTreeMap<Key, (u64, u64)>, u64) {
    let fields = [
        "vlan.id",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.proto",
        "ipv6.fraghdr.nxt",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "icmp.type",
        "icmp.code",
        "icmpv6.type",
        "icmpv6.code",
        "ip.len",
        "ipv6.plen",
        "ieee8021ad.id",
    ];
    let mut cmd = Command::new(require("tshark"));
    cmd.arg("-r")
        .arg(pcap)
        .args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"])
        .args(["-T", "fields", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows = BTreeMap::new();
    let mut not_ip = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        let s = |i: usize| c.get(i).copied().unwrap_or("").trim();
        let n = |i: usize| s(i).parse::<u64>().ok();
        // An 802.1ad outer tag is its own protocol to tshark; the outer tag is the flow's VLAN.
        let vlan = n(17).or(n(0)).unwrap_or(0) as u16;
        let (src, dst, v6) = if !s(1).is_empty() {
            (s(1), s(2), false)
        } else if !s(3).is_empty() {
            (s(3), s(4), true)
        } else {
            not_ip += 1;
            continue;
        };
        // ICMP before the ports: an ICMP error quotes a UDP header tshark dissects too.
        let (proto, sport, dport) = if let Some(t) = n(11) {
            (1, 0, (t << 8 | n(12).unwrap_or(0)) as u16)
        } else if let Some(t) = n(13) {
            (58, 0, (t << 8 | n(14).unwrap_or(0)) as u16)
        } else if let Some(p) = n(7) {
            (6, p as u16, n(8).unwrap_or(0) as u16)
        } else if let Some(p) = n(9) {
            (17, p as u16, n(10).unwrap_or(0) as u16)
        } else {
            // A later fragment: the protocol from the IP or fragment header.
            (n(5).or(n(6)).unwrap_or(0) as u8, 0, 0)
        };
        let bytes = if v6 {
            n(16).unwrap_or(0) + 40
        } else {
            n(15).unwrap_or(0)
        };
        let e = flows
            .entry((vlan, src.to_string(), dst.to_string(), proto, sport, dport))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += bytes;
    }
    (flows, not_ip)
}

#[test]
fn tags_labels_fragments_and_extension_headers_agree_with_tshark() {
    let frames = build();
    let dir = scratch("packets-vs-tshark");
    let pcap = dir.join("edge.pcap");
    std::fs::write(&pcap, &frames.pcap).expect("write pcap");
    let (ours, summary) = nmsd_flows(&pcap);
    let (theirs, not_ip) = tshark_flows(&pcap);
    assert_eq!(not_ip, 2, "ARP and LLDP");
    assert!(
        summary.contains(&format!("{} frames, 2 malformed", frames.count)),
        "nmsd replay's summary: {summary}"
    );
    assert_eq!(ours, theirs, "nmsd replay vs tshark per flow key");
    // The cases are really there: QinQ's outer tag, MPLS, a later fragment, the snap length.
    assert!(ours.keys().any(|k| k.0 == 200 && k.3 == 17));
    assert!(ours.keys().any(|k| k.1 == "10.1.0.1"));
    assert!(
        ours.keys()
            .any(|k| k.3 == 17 && k.4 == 0 && k.1 == "10.0.0.1")
    );
    assert!(ours.values().any(|v| v.1 == 1400));
}
