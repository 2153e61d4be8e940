//! The lab's exporters: a few routers at 127.0.0.x sending NetFlow v9 or IPFIX about a
//! plausible mix of traffic (mostly HTTPS and QUIC downloads, DNS, some SSH, NTP, mail and
//! ICMP; a few busy servers and many quiet ones), and counting every byte they report on the
//! interfaces the SNMP agents serve, so interface counters follow the flows.
//!
//! The encoders are deliberately small and fixed (one template per exporter); the test-only
//! `nmsd-testkit` encoder, which builds hostile and arbitrary datagrams, is not linked into
//! the binary (decision 0016).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Export protocol of a lab exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    NetflowV9,
    Ipfix,
}

/// One interface of a lab router. Index 1 is the uplink; the others face users.
#[derive(Debug)]
pub struct Interface {
    pub index: u32,
    pub name: &'static str,
    pub alias: &'static str,
    pub speed_bps: u64,
    pub in_octets: AtomicU64,
    pub out_octets: AtomicU64,
    pub in_packets: AtomicU64,
    pub out_packets: AtomicU64,
}

impl Interface {
    fn new(index: u32, name: &'static str, alias: &'static str, speed_bps: u64) -> Self {
        Interface {
            index,
            name,
            alias,
            speed_bps,
            in_octets: AtomicU64::new(0),
            out_octets: AtomicU64::new(0),
            in_packets: AtomicU64::new(0),
            out_packets: AtomicU64::new(0),
        }
    }
}

/// One lab router: exporter and SNMP agent at the same address.
#[derive(Debug)]
pub struct Router {
    pub name: &'static str,
    pub address: Ipv4Addr,
    pub protocol: Protocol,
    /// v9 source id / IPFIX observation domain.
    pub domain: u32,
    /// Users behind it: 10.<site>.0.0/16.
    pub site: u8,
    /// Flows per second it reports, on average.
    pub flows_per_second: u32,
    pub interfaces: Vec<Interface>,
}

/// The simulated network: three routers of different size and protocol.
pub fn network(flows_per_second: u32) -> Vec<Arc<Router>> {
    let router = |name,
                  last: u8,
                  protocol,
                  domain,
                  site,
                  share: u32,
                  access: &[(&'static str, &'static str)]| {
        let mut interfaces = vec![Interface::new(
            1,
            "ge-0/0/0",
            "uplink to transit",
            10_000_000_000,
        )];
        for (i, (n, a)) in access.iter().enumerate() {
            interfaces.push(Interface::new(i as u32 + 2, n, a, 1_000_000_000));
        }
        Arc::new(Router {
            name,
            address: Ipv4Addr::new(127, 0, 0, last),
            protocol,
            domain,
            site,
            flows_per_second: (flows_per_second * share / 100).max(1),
            interfaces,
        })
    };
    vec![
        router(
            "lab-edge1",
            11,
            Protocol::Ipfix,
            1,
            1,
            50,
            &[
                ("ge-0/0/1", "office floor 1"),
                ("ge-0/0/2", "office floor 2"),
                ("ge-0/0/3", "servers"),
            ],
        ),
        router(
            "lab-edge2",
            12,
            Protocol::Ipfix,
            2,
            2,
            30,
            &[("ge-0/0/1", "campus wifi"), ("ge-0/0/2", "labs")],
        ),
        router(
            "lab-branch",
            13,
            Protocol::NetflowV9,
            7,
            3,
            20,
            &[("Gi0/1", "branch LAN")],
        ),
    ]
}

/// A small deterministic generator (SplitMix64): the lab needs variety, not cryptography.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A heavy-tailed multiplier with mean ~1 (a few flows are much bigger than most), at most
    /// 12: one flow should not outweigh minutes of the others.
    fn heavy(&mut self) -> f64 {
        let u = self.unit().max(1e-9);
        ((-u.ln()).powf(1.6) / 1.43).min(12.0)
    }
    /// Index into `weights`, chosen by weight.
    fn pick(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        0
    }
}

/// A service: protocol, server port, share of connections, mean bytes each way, duration.
struct Service {
    protocol: u8,
    port: u16,
    weight: u32,
    request_bytes: f64,
    response_bytes: f64,
    mean_ms: u64,
}

const SERVICES: &[Service] = &[
    Service {
        protocol: 6,
        port: 443,
        weight: 45,
        request_bytes: 4_000.0,
        response_bytes: 180_000.0,
        mean_ms: 8_000,
    },
    Service {
        protocol: 17,
        port: 443,
        weight: 14,
        request_bytes: 6_000.0,
        response_bytes: 250_000.0,
        mean_ms: 12_000,
    },
    Service {
        protocol: 6,
        port: 80,
        weight: 8,
        request_bytes: 1_500.0,
        response_bytes: 60_000.0,
        mean_ms: 3_000,
    },
    Service {
        protocol: 17,
        port: 53,
        weight: 16,
        request_bytes: 75.0,
        response_bytes: 160.0,
        mean_ms: 20,
    },
    Service {
        protocol: 6,
        port: 22,
        weight: 3,
        request_bytes: 40_000.0,
        response_bytes: 90_000.0,
        mean_ms: 60_000,
    },
    Service {
        protocol: 17,
        port: 123,
        weight: 3,
        request_bytes: 90.0,
        response_bytes: 90.0,
        mean_ms: 5,
    },
    Service {
        protocol: 6,
        port: 25,
        weight: 2,
        request_bytes: 30_000.0,
        response_bytes: 2_000.0,
        mean_ms: 2_000,
    },
    Service {
        protocol: 6,
        port: 3389,
        weight: 2,
        request_bytes: 200_000.0,
        response_bytes: 2_000_000.0,
        mean_ms: 120_000,
    },
    Service {
        protocol: 1,
        port: 0,
        weight: 4,
        request_bytes: 84.0,
        response_bytes: 84.0,
        mean_ms: 1,
    },
    Service {
        protocol: 6,
        port: 8080,
        weight: 3,
        request_bytes: 2_000.0,
        response_bytes: 40_000.0,
        mean_ms: 4_000,
    },
];

/// Servers on the Internet (documentation ranges): a few popular, most rarely used.
fn server(r: &mut Random) -> Ipv4Addr {
    // Zipf-like: the rank is the inverse of a uniform draw, so rank 1 is ~20x rank 20.
    let rank = ((1.0 / r.unit().max(1e-3)) as u32).min(250);
    let net = match rank % 3 {
        0 => [192, 0, 2],
        1 => [198, 51, 100],
        _ => [203, 0, 113],
    };
    Ipv4Addr::new(net[0], net[1], net[2], (rank % 250 + 1) as u8)
}

/// One flow record as the encoders write it.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub tcp_flags: u8,
    pub input: u32,
    pub output: u32,
    pub octets: u64,
    pub packets: u64,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The two flows (request, response) of one connection through `router`, counted on its
/// interfaces.
fn connection(router: &Router, r: &mut Random, now_ms: u64) -> [Flow; 2] {
    let weights: Vec<u32> = SERVICES.iter().map(|s| s.weight).collect();
    let s = &SERVICES[r.pick(&weights)];
    let access = &router.interfaces[1 + r.below(router.interfaces.len() as u64 - 1) as usize];
    let client = Ipv4Addr::new(10, router.site, access.index as u8, 2 + r.below(200) as u8);
    let server = server(r);
    let client_port = 32_768 + r.below(28_000) as u16;
    let duration = (s.mean_ms as f64 * r.heavy()) as u64;
    let end_ms = now_ms - r.below(1_000);
    let start_ms = end_ms.saturating_sub(duration);
    let mtu_packets = |bytes: u64| bytes.div_ceil(1_400).max(1);
    let up = (s.request_bytes * r.heavy()).max(40.0) as u64;
    let down = (s.response_bytes * r.heavy()).max(40.0) as u64;
    let (up_packets, down_packets) = (
        mtu_packets(up).max(mtu_packets(down) / 2),
        mtu_packets(down),
    );
    let flags = if s.protocol == 6 { 0x1b } else { 0 };
    let (cp, sp) = if s.protocol == 1 {
        (0, 0x0800)
    } else {
        (client_port, s.port)
    };
    let uplink = &router.interfaces[0];
    let request = Flow {
        src: client,
        dst: server,
        src_port: cp,
        dst_port: sp,
        protocol: s.protocol,
        tcp_flags: flags,
        input: access.index,
        output: uplink.index,
        octets: up,
        packets: up_packets,
        start_ms,
        end_ms,
    };
    let response = Flow {
        src: server,
        dst: client,
        src_port: if s.protocol == 1 { 0 } else { s.port },
        dst_port: cp,
        input: uplink.index,
        output: access.index,
        octets: down,
        packets: down_packets,
        ..request
    };
    for f in [&request, &response] {
        count(router, f.input, f.output, f.octets, f.packets);
    }
    [request, response]
}

fn count(router: &Router, input: u32, output: u32, octets: u64, packets: u64) {
    for i in &router.interfaces {
        if i.index == input {
            i.in_octets.fetch_add(octets, Ordering::Relaxed);
            i.in_packets.fetch_add(packets, Ordering::Relaxed);
        }
        if i.index == output {
            i.out_octets.fetch_add(octets, Ordering::Relaxed);
            i.out_packets.fetch_add(packets, Ordering::Relaxed);
        }
    }
}

/// Information elements of the one template (IANA numbers; the same in v9 except the times).
const TEMPLATE_ID: u16 = 256;
const FIELDS_IPFIX: &[(u16, u16)] = &[
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (6, 1),   // tcpControlBits
    (10, 4),  // ingressInterface
    (14, 4),  // egressInterface
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
];
/// v9: FIRST_SWITCHED (22) and LAST_SWITCHED (21) are milliseconds of the router's uptime.
const FIELDS_V9: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (10, 4),
    (14, 4),
    (1, 8),
    (2, 8),
    (22, 4),
    (21, 4),
];

/// Records per datagram: ~1,100 bytes, under a 1,500-byte MTU like a real exporter's.
const RECORDS_PER_DATAGRAM: usize = 20;
/// Templates are sent again this often (and in the first datagram), as routers do.
const TEMPLATE_EVERY: Duration = Duration::from_secs(10);

/// An exporter's wire state.
pub struct Exporter {
    pub router: Arc<Router>,
    boot_ms: u64,
    /// IPFIX: data records sent; v9: datagrams sent.
    sequence: u32,
    last_template_ms: Option<u64>,
}

impl Exporter {
    pub fn new(router: Arc<Router>, now_ms: u64) -> Self {
        Exporter {
            router,
            // Up for a day: v9 times are offsets from boot.
            boot_ms: now_ms.saturating_sub(86_400_000),
            sequence: 0,
            last_template_ms: None,
        }
    }

    /// Encode `flows` (at most RECORDS_PER_DATAGRAM) as one datagram.
    pub fn datagram(&mut self, flows: &[Flow], now_ms: u64) -> Vec<u8> {
        let with_template = self
            .last_template_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= TEMPLATE_EVERY.as_millis() as u64);
        if with_template {
            self.last_template_ms = Some(now_ms);
        }
        let v9 = self.router.protocol == Protocol::NetflowV9;
        let fields = if v9 { FIELDS_V9 } else { FIELDS_IPFIX };
        let mut out = Vec::with_capacity(1_400);
        // Header: filled in at the end (lengths and counts).
        out.resize(if v9 { 20 } else { 16 }, 0);
        if with_template {
            let set_start = out.len();
            put16(&mut out, if v9 { 0 } else { 2 });
            put16(&mut out, 0);
            put16(&mut out, TEMPLATE_ID);
            put16(&mut out, fields.len() as u16);
            for &(id, len) in fields {
                put16(&mut out, id);
                put16(&mut out, len);
            }
            set_len(&mut out, set_start);
        }
        let set_start = out.len();
        put16(&mut out, TEMPLATE_ID);
        put16(&mut out, 0);
        let uptime = |ms: u64| ms.saturating_sub(self.boot_ms) as u32;
        for f in flows {
            out.extend_from_slice(&f.src.octets());
            out.extend_from_slice(&f.dst.octets());
            put16(&mut out, f.src_port);
            put16(&mut out, f.dst_port);
            out.push(f.protocol);
            out.push(f.tcp_flags);
            out.extend_from_slice(&f.input.to_be_bytes());
            out.extend_from_slice(&f.output.to_be_bytes());
            out.extend_from_slice(&f.octets.to_be_bytes());
            out.extend_from_slice(&f.packets.to_be_bytes());
            if v9 {
                out.extend_from_slice(&uptime(f.start_ms).to_be_bytes());
                out.extend_from_slice(&uptime(f.end_ms).to_be_bytes());
            } else {
                out.extend_from_slice(&f.start_ms.to_be_bytes());
                out.extend_from_slice(&f.end_ms.to_be_bytes());
            }
        }
        // v9 flowsets are padded to 4 bytes; IPFIX sets need no padding.
        if v9 {
            while (out.len() - set_start) % 4 != 0 {
                out.push(0);
            }
        }
        set_len(&mut out, set_start);
        let secs = (now_ms / 1000) as u32;
        let domain = self.router.domain;
        if v9 {
            let count = flows.len() as u16 + u16::from(with_template);
            write_at(&mut out, 0, &9u16.to_be_bytes());
            write_at(&mut out, 2, &count.to_be_bytes());
            write_at(&mut out, 4, &uptime(now_ms).to_be_bytes());
            write_at(&mut out, 8, &secs.to_be_bytes());
            write_at(&mut out, 12, &self.sequence.to_be_bytes());
            write_at(&mut out, 16, &domain.to_be_bytes());
            self.sequence = self.sequence.wrapping_add(1);
        } else {
            let len = out.len() as u16;
            write_at(&mut out, 0, &10u16.to_be_bytes());
            write_at(&mut out, 2, &len.to_be_bytes());
            write_at(&mut out, 4, &secs.to_be_bytes());
            write_at(&mut out, 8, &self.sequence.to_be_bytes());
            write_at(&mut out, 12, &domain.to_be_bytes());
            self.sequence = self.sequence.wrapping_add(flows.len() as u32);
        }
        out
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn write_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Write a set's length into its header (bytes 2..4 from `start`).
fn set_len(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    write_at(out, start + 2, &len.to_be_bytes());
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Send `router`'s flows to `collector` from its own address, forever (a lab thread).
pub fn run_exporter(router: Arc<Router>, collector: SocketAddr, seed: u64) -> std::io::Result<()> {
    // Every 127/8 address is local on Linux: each router has its own source address. Where
    // that fails, they share 127.0.0.1 and differ by domain.
    let socket = UdpSocket::bind((router.address, 0))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let mut exporter = Exporter::new(router.clone(), unix_ms());
    let mut r = Random(seed);
    let tick = Duration::from_millis(200);
    let mut owed = 0.0f64;
    // The collector starts listening right after the lab starts its routers: what they sent
    // before would be lost, and their counters would run ahead of the stored flows.
    std::thread::sleep(Duration::from_secs(1));
    loop {
        let now_ms = unix_ms();
        // A slow swell over ten minutes, so graphs are not flat lines.
        let phase = (now_ms % 600_000) as f64 / 600_000.0 * std::f64::consts::TAU;
        let rate = f64::from(router.flows_per_second) * (1.0 + 0.35 * phase.sin());
        owed += rate * tick.as_secs_f64();
        let connections = (owed / 2.0) as usize;
        owed -= connections as f64 * 2.0;
        let mut flows = Vec::with_capacity(connections * 2);
        for _ in 0..connections {
            flows.extend(connection(&router, &mut r, now_ms));
        }
        for chunk in flows.chunks(RECORDS_PER_DATAGRAM) {
            let d = exporter.datagram(chunk, now_ms);
            // The collector may not be listening yet (or any more): the lab goes on.
            let _ = socket.send_to(&d, collector);
        }
        std::thread::sleep(tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_decode_and_counters_follow_the_flows() {
        let routers = network(1_000);
        let now = unix_ms();
        let mut decoder = nmsd_parsers::FlowDecoder::new(Default::default());
        let mut r = Random(7);
        for router in &routers {
            let mut e = Exporter::new(router.clone(), now);
            let flows: Vec<Flow> = (0..10)
                .flat_map(|_| connection(router, &mut r, now))
                .collect();
            let mut out = Vec::new();
            let d = e.datagram(&flows, now);
            decoder
                .decode_from_source(0, std::net::IpAddr::V4(router.address), &d, now, &mut out)
                .expect("decodes");
            assert_eq!(out.len(), 20, "{}", router.name);
            let bytes: u64 = out.iter().map(|f| f.bytes).sum();
            let uplink = &router.interfaces[0];
            let through_uplink = uplink.in_octets.load(Ordering::Relaxed)
                + uplink.out_octets.load(Ordering::Relaxed);
            assert_eq!(bytes, through_uplink, "every flow crosses the uplink once");
            // Without the template, the next datagram still decodes (the cache has it).
            let d = e.datagram(&flows[..2], now + 1);
            out.clear();
            decoder
                .decode_from_source(0, std::net::IpAddr::V4(router.address), &d, now, &mut out)
                .expect("decodes");
            assert_eq!(out.len(), 2);
        }
    }
}
