//! Differential tests: nmsd's decoder against the `netflow_parser`-based oracle.
//!
//! Agreement is defined in `nmsd_testkit::oracle`: for every datagram the oracle accepts, nmsd
//! must accept it too and produce the same records (as a multiset). Inputs are generated
//! streams of all three versions and several template layouts, and every datagram of the
//! recorded captures in `tests/fixtures/` at the workspace root (plus any named in
//! `NMSD_FIXTURES`, a `:`-separated list of files or directories).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nmsd_parsers::{Direction, FieldSpec, FlowDecoder, FlowRecord, TemplateDef, TemplateKind, ie};
use nmsd_testkit::capture;
use nmsd_testkit::encode::{self, MessageBuilder, V5Header, field};
use nmsd_testkit::oracle::{Oracle, compare_records};

const T0: u64 = 1_767_225_600_000;

/// xorshift64, fixed seed: the generated streams are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Both decoders, fed the same stream.
struct Pair {
    nmsd: FlowDecoder,
    oracle: Oracle,
    datagrams: usize,
    compared: usize,
    records: usize,
}

impl Pair {
    fn new() -> Self {
        Pair {
            nmsd: FlowDecoder::default(),
            oracle: Oracle::new(),
            datagrams: 0,
            compared: 0,
            records: 0,
        }
    }

    /// Feed one datagram to both; panic with context on disagreement.
    fn feed(&mut self, from: IpAddr, d: &[u8], now_ms: u64, what: &str) {
        self.datagrams += 1;
        let mut ours = Vec::new();
        let nmsd = self.nmsd.decode(from, d, now_ms, &mut ours);
        let Ok(theirs) = self.oracle.decode(from, d) else {
            return;
        };
        assert!(
            nmsd.is_ok(),
            "{what}: oracle accepted, nmsd refused: {nmsd:?}\n{}",
            hex(d)
        );
        if let Err(m) = compare_records(&ours, &theirs) {
            panic!(
                "{what}: {m}\nnmsd record: {:?}\ndatagram: {}",
                ours.get(m.index),
                hex(d)
            );
        }
        self.compared += 1;
        self.records += ours.len();
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sample records with every field randomised within what its wire element can carry.
fn records(rng: &mut Rng, n: usize, ipv6: bool, export_ms: u64) -> Vec<FlowRecord> {
    let base = export_ms - 90_000;
    encode::sample_records(n, ipv6, base + rng.below(1000))
        .into_iter()
        .map(|r| {
            let icmp = if ipv6 { 58 } else { 1 };
            let protocol = [6, 17, icmp, 47, 6, 17][rng.below(6) as usize];
            FlowRecord {
                protocol,
                dst_port: if protocol == icmp {
                    (rng.below(20) as u16) << 8 | rng.below(16) as u16
                } else {
                    r.dst_port
                },
                src_port: if protocol == icmp { 0 } else { r.src_port },
                tcp_flags: if protocol == 6 { rng.next() as u8 } else { 0 },
                tos: rng.next() as u8,
                vlan: rng.below(4096) as u16,
                src_as: rng.next() as u32,
                dst_as: rng.below(65_536) as u32,
                in_if: rng.next() as u32,
                out_if: rng.below(1000) as u32,
                bytes: rng.below(1 << 40),
                packets: 1 + rng.below(1 << 20),
                direction: [Direction::Ingress, Direction::Egress, Direction::Unknown]
                    [rng.below(3) as usize],
                ..r
            }
        })
        .collect()
}

/// Data template layouts. `ipfix` allows elements v9 cannot carry (variable length,
/// enterprise numbers). Returns the layout and whether it holds IPv6 addresses.
fn layout(id: u16, which: u64, ipfix: bool) -> (TemplateDef, bool) {
    let f = field;
    let (fields, ipv6) = match which {
        0 => (encode::ipv4_template(id).fields, false),
        1 => (encode::ipv6_template(id).fields, true),
        // 8-byte counters, NTP times, BGP next hop, 802.1Q VLAN, 2-byte AS and TCP flags,
        // separate ICMP type and code, DSCP rather than ToS.
        2 => (
            vec![
                f(ie::SOURCE_IPV4_ADDRESS, 4),
                f(ie::DESTINATION_IPV4_ADDRESS, 4),
                f(ie::BGP_NEXT_HOP_IPV4_ADDRESS, 4),
                f(ie::OCTET_DELTA_COUNT, 8),
                f(ie::PACKET_DELTA_COUNT, 8),
                f(ie::FLOW_START_MICROSECONDS, 8),
                f(ie::FLOW_END_NANOSECONDS, 8),
                f(ie::DOT1Q_VLAN_ID, 2),
                f(ie::BGP_SOURCE_AS_NUMBER, 2),
                f(ie::BGP_DESTINATION_AS_NUMBER, 2),
                f(ie::TCP_CONTROL_BITS, 2),
                f(ie::SOURCE_TRANSPORT_PORT, 2),
                f(ie::DESTINATION_TRANSPORT_PORT, 2),
                f(ie::ICMP_TYPE_IPV4, 1),
                f(ie::ICMP_CODE_IPV4, 1),
                f(ie::PROTOCOL_IDENTIFIER, 1),
                f(ie::IP_DIFF_SERV_CODE_POINT, 1),
                f(ie::FLOW_DIRECTION, 1),
            ],
            false,
        ),
        // Seconds; competing elements for one slot (total and delta counters, both next hops,
        // both VLAN elements, ToS and DSCP, ICMP type-code and its parts), the losers of which
        // get random values (see `scramble_losers`).
        3 => (
            vec![
                f(ie::FLOW_START_SECONDS, 4),
                f(ie::FLOW_END_SECONDS, 4),
                f(ie::OCTET_TOTAL_COUNT, 8),
                f(ie::OCTET_DELTA_COUNT, 4),
                f(ie::PACKET_TOTAL_COUNT, 4),
                f(ie::ICMP_TYPE_IPV4, 1),
                f(ie::IP_DIFF_SERV_CODE_POINT, 1),
                f(ie::SOURCE_IPV4_ADDRESS, 4),
                f(ie::DESTINATION_IPV4_ADDRESS, 4),
                f(ie::BGP_NEXT_HOP_IPV4_ADDRESS, 4),
                f(ie::IP_NEXT_HOP_IPV4_ADDRESS, 4),
                f(ie::PROTOCOL_IDENTIFIER, 1),
                f(ie::ICMP_TYPE_CODE_IPV4, 2),
                f(ie::SOURCE_TRANSPORT_PORT, 2),
                f(ie::DESTINATION_TRANSPORT_PORT, 2),
                f(ie::VLAN_ID, 2),
                f(ie::DOT1Q_VLAN_ID, 2),
                f(ie::INGRESS_INTERFACE, 2),
                f(ie::EGRESS_INTERFACE, 2),
                f(ie::IP_CLASS_OF_SERVICE, 1),
                f(ie::ICMP_CODE_IPV4, 1),
            ],
            false,
        ),
        // IPv6 with delta times, reduced-size counters, ICMPv6 type-code, BGP v6 next hop.
        4 => (
            vec![
                f(ie::SOURCE_IPV6_ADDRESS, 16),
                f(ie::DESTINATION_IPV6_ADDRESS, 16),
                f(ie::BGP_NEXT_HOP_IPV6_ADDRESS, 16),
                f(ie::FLOW_START_DELTA_MICROSECONDS, 4),
                f(ie::FLOW_END_DELTA_MICROSECONDS, 4),
                f(ie::OCTET_DELTA_COUNT, 3),
                f(ie::PACKET_DELTA_COUNT, 2),
                f(ie::PROTOCOL_IDENTIFIER, 1),
                f(ie::ICMP_TYPE_CODE_IPV6, 2),
                f(ie::SOURCE_TRANSPORT_PORT, 2),
                f(ie::DESTINATION_TRANSPORT_PORT, 2),
                f(ie::INGRESS_INTERFACE, 4),
                f(ie::EGRESS_INTERFACE, 4),
                f(ie::IP_CLASS_OF_SERVICE, 1),
                f(ie::TCP_CONTROL_BITS, 1),
            ],
            true,
        ),
        // Only some times (start only), no ports; unknown and (v9) zero-length fields around.
        // netflow_parser refuses IPFIX templates with zero-length fields (nmsd accepts them),
        // so IPFIX gets a 1-byte field there.
        5 => (
            vec![
                f(ie::SOURCE_IPV4_ADDRESS, 4),
                f(999, 3),
                f(ie::DESTINATION_IPV4_ADDRESS, 4),
                f(ie::FLOW_START_MILLISECONDS, 8),
                f(ie::OCTET_DELTA_COUNT, 4),
                f(300, u16::from(ipfix)),
                f(ie::PACKET_DELTA_COUNT, 4),
                f(ie::PROTOCOL_IDENTIFIER, 1),
            ],
            false,
        ),
        // IPFIX only: variable-length and enterprise elements between the ones nmsd uses.
        _ if ipfix => (
            vec![
                f(ie::SOURCE_IPV6_ADDRESS, 16),
                f(82, ie::VARIABLE_LENGTH),
                FieldSpec {
                    id: 1,
                    len: 4,
                    enterprise: 9,
                },
                f(ie::DESTINATION_IPV6_ADDRESS, 16),
                FieldSpec {
                    id: 100,
                    len: ie::VARIABLE_LENGTH,
                    enterprise: 29_305,
                },
                f(ie::OCTET_DELTA_COUNT, 8),
                f(ie::PACKET_DELTA_COUNT, 8),
                f(ie::FLOW_START_MILLISECONDS, 8),
                f(ie::FLOW_END_MILLISECONDS, 8),
                f(ie::SOURCE_TRANSPORT_PORT, 2),
                f(ie::DESTINATION_TRANSPORT_PORT, 2),
                f(ie::PROTOCOL_IDENTIFIER, 1),
            ],
            true,
        ),
        _ => (encode::ipv4_template(id).fields, false),
    };
    (
        TemplateDef {
            id,
            kind: TemplateKind::Data,
            fields,
        },
        ipv6,
    )
}

const LAYOUTS: u64 = 7;

/// Give random values to elements that lose to another element of the same record, so a
/// decoder that reads the wrong one of the pair disagrees. The encoder writes one record value
/// into both, which would hide it. Fixed-length layouts only.
fn scramble_losers(def: &TemplateDef, body: &mut [u8], rng: &mut Rng) {
    let has = |id: u16| def.fields.iter().any(|f| f.id == id && f.enterprise == 0);
    if def.fields.iter().any(|f| f.len == ie::VARIABLE_LENGTH) {
        return;
    }
    let pairs = [
        (ie::OCTET_DELTA_COUNT, ie::OCTET_TOTAL_COUNT),
        (ie::PACKET_DELTA_COUNT, ie::PACKET_TOTAL_COUNT),
        (ie::IP_NEXT_HOP_IPV4_ADDRESS, ie::BGP_NEXT_HOP_IPV4_ADDRESS),
        (ie::IP_NEXT_HOP_IPV6_ADDRESS, ie::BGP_NEXT_HOP_IPV6_ADDRESS),
        (ie::VLAN_ID, ie::DOT1Q_VLAN_ID),
        (ie::ICMP_TYPE_CODE_IPV4, ie::ICMP_TYPE_IPV4),
        (ie::ICMP_TYPE_CODE_IPV4, ie::ICMP_CODE_IPV4),
        // DSCP counts only where ToS is 0; random DSCP values check that rule too.
        (ie::IP_CLASS_OF_SERVICE, ie::IP_DIFF_SERV_CODE_POINT),
    ];
    let rec_len: usize = def.fields.iter().map(|f| usize::from(f.len)).sum();
    if rec_len == 0 {
        return;
    }
    let mut offset = 0;
    for f in &def.fields {
        let loses = pairs
            .iter()
            .any(|&(winner, loser)| f.id == loser && has(winner));
        if loses {
            for rec in body.chunks_exact_mut(rec_len) {
                for b in &mut rec[offset..offset + usize::from(f.len)] {
                    *b = rng.next() as u8;
                }
            }
        }
        offset += usize::from(f.len);
    }
}

#[test]
fn generated_v5() {
    let mut rng = Rng(0x0005_D1FF);
    let mut pair = Pair::new();
    let exporters = [IpAddr::from([10, 5, 0, 1]), IpAddr::from([10, 5, 0, 2])];
    let mut seq = [0u32; 2];
    for i in 0..400 {
        let e = rng.below(2) as usize;
        let secs = (T0 / 1000) as u32 + 100 + i;
        let n = 1 + rng.below(30) as usize;
        let h = V5Header {
            sys_uptime_ms: 200_000 + rng.below(1 << 31) as u32,
            unix_secs: secs,
            unix_nsecs: rng.below(1_000_000_000) as u32,
            flow_sequence: seq[e],
            engine_type: rng.below(3) as u8,
            engine_id: rng.below(3) as u8,
            sampling: if rng.chance(3) {
                (rng.below(4) as u16) << 14 | rng.below(1 << 14) as u16
            } else {
                0
            },
        };
        seq[e] = seq[e].wrapping_add(n as u32);
        let recs = records(&mut rng, n, false, secs as u64 * 1000);
        let d = encode::v5_datagram(&h, &recs);
        pair.feed(exporters[e], &d, secs as u64 * 1000, &format!("v5 #{i}"));
    }
    assert_eq!(pair.compared, 400);
    assert!(pair.records > 4000);
}

/// Build a v9 or IPFIX stream for several exporters and domains: templates alone, with data,
/// after data; options announcing sampling and (IPFIX) the system init time.
fn generated_templated(ipfix: bool, seed: u64) -> Pair {
    let mut rng = Rng(seed);
    let mut pair = Pair::new();
    let exporters = [
        IpAddr::from([10, 9, 0, 1]),
        IpAddr::from([10, 9, 0, 2]),
        "2001:db8::9".parse().expect("valid address"),
    ];
    let sampler_opts = TemplateDef {
        id: 250 + 10,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: if ipfix {
            vec![
                field(149, 4),
                field(ie::SAMPLING_PACKET_INTERVAL, 4),
                field(ie::SAMPLING_PACKET_SPACE, 4),
            ]
        } else {
            vec![
                field(1, 4),
                field(ie::SAMPLER_ID, 1),
                field(ie::SAMPLING_INTERVAL, 4),
            ]
        },
    };
    let init_opts = TemplateDef {
        id: 261,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: vec![field(149, 4), field(ie::SYSTEM_INIT_TIME_MILLISECONDS, 8)],
    };
    // Per (exporter, domain) and template id: its layout, and whether the template has been
    // sent (data may go first: both decoders then buffer it until the template comes).
    let mut known: Vec<((usize, u32), u16, u64, bool)> = Vec::new();
    let mut seqs: Vec<((usize, u32), u32)> = Vec::new();
    let mut clock_secs = (T0 / 1000) as u32 + 200;
    for i in 0..600 {
        // A domain owing a template gets the next datagram, so early data waits well within
        // nmsd's buffering limits (agreement does not cover data that outlives them).
        let owed = known.iter().find(|k| !k.3).map(|k| k.0);
        let (e, domain) = owed.unwrap_or_else(|| {
            (
                rng.below(exporters.len() as u64) as usize,
                rng.below(2) as u32,
            )
        });
        clock_secs += rng.below(3) as u32;
        let at = match seqs.iter().position(|(k, _)| *k == (e, domain)) {
            Some(at) => at,
            None => {
                seqs.push(((e, domain), 0));
                seqs.len() - 1
            }
        };
        let seq = &mut seqs[at].1;
        // IPFIX uptimes are relative to the builder's fixed boot (export - 1000 s), which
        // this stream announces through options; v9 has its uptime in every header.
        let mut m = if ipfix {
            MessageBuilder::ipfix(clock_secs, *seq, domain)
        } else {
            MessageBuilder::v9(1_000_000 + rng.below(1000) as u32, clock_secs, *seq, domain)
        };
        let export_ms = clock_secs as u64 * 1000;
        let mut data_records = 0u32;
        // Owed templates first, or after more data for them.
        let late_templates = rng.chance(2);
        let send_owed = |m: &mut MessageBuilder, known: &mut Vec<_>| {
            for k in known
                .iter_mut()
                .filter(|k: &&mut ((usize, u32), u16, u64, bool)| k.0 == (e, domain) && !k.3)
            {
                m.template(&layout(k.1, k.2, ipfix).0);
                k.3 = true;
            }
        };
        if !late_templates {
            send_owed(&mut m, &mut known);
        }
        for _ in 0..1 + rng.below(3) {
            let tid = 256 + rng.below(4) as u16;
            let entry = known.iter().position(|k| k.0 == (e, domain) && k.1 == tid);
            match rng.below(6) {
                // (Re)define a template, sometimes with a new layout.
                0 | 1 => {
                    let which = match entry {
                        Some(at) if !known[at].3 || !rng.chance(4) => known[at].2,
                        _ => rng.below(LAYOUTS),
                    };
                    m.template(&layout(tid, which, ipfix).0);
                    match entry {
                        Some(at) => known[at] = ((e, domain), tid, which, true),
                        None => known.push(((e, domain), tid, which, true)),
                    }
                }
                // Options: sampling, or the system init time.
                2 => {
                    if ipfix && rng.chance(2) {
                        let boot = m.boot_ms();
                        m.template(&init_opts)
                            .options_data(&init_opts, &[&[domain as u64, boot]]);
                    } else if ipfix {
                        let (pi, ps) = (1 + rng.below(3), rng.below(200));
                        m.template(&sampler_opts)
                            .options_data(&sampler_opts, &[&[domain as u64, pi, ps]]);
                    } else {
                        let k = 1 + rng.below(500);
                        m.template(&sampler_opts)
                            .options_data(&sampler_opts, &[&[0, 0, k]]);
                    }
                }
                // Data for a template: known, or not yet sent.
                _ => {
                    let which = match entry {
                        Some(at) => known[at].2,
                        None => {
                            let which = rng.below(LAYOUTS);
                            known.push(((e, domain), tid, which, false));
                            which
                        }
                    };
                    let (def, ipv6) = layout(tid, which, ipfix);
                    let n = 1 + rng.below(12) as usize;
                    let recs = records(&mut rng, n, ipv6, export_ms);
                    let start = m.finish().len() + 4;
                    let mut with_data = m.clone();
                    with_data.data(&def, &recs);
                    let mut body = with_data.finish()[start..].to_vec();
                    scramble_losers(&def, &mut body, &mut rng);
                    m.raw_set(tid, &body);
                    data_records += n as u32;
                }
            }
        }
        if late_templates && rng.chance(2) {
            send_owed(&mut m, &mut known);
        }
        *seq = if ipfix {
            seq.wrapping_add(data_records)
        } else {
            seq.wrapping_add(1)
        };
        let what = format!("{} #{i}", if ipfix { "IPFIX" } else { "v9" });
        pair.feed(exporters[e], &m.finish(), export_ms, &what);
    }
    pair
}

#[test]
fn generated_v9() {
    let pair = generated_templated(false, 0x0009_5EED);
    assert_eq!(
        pair.compared, pair.datagrams,
        "the oracle refused generated datagrams"
    );
    assert!(pair.records > 1000, "{}", pair.records);
    let stats = pair.nmsd.stats();
    // The stream exercises early data and options, not only the easy path.
    assert!(stats.sets_buffered > 5 && stats.sets_replayed == stats.sets_buffered);
    assert!(stats.options_records > 100);
}

#[test]
fn generated_ipfix() {
    let pair = generated_templated(true, 0x000A_5EED);
    assert_eq!(
        pair.compared, pair.datagrams,
        "the oracle refused generated datagrams"
    );
    assert!(pair.records > 1000, "{}", pair.records);
    let stats = pair.nmsd.stats();
    // The stream exercises early data and options, not only the easy path.
    assert!(stats.sets_buffered > 5 && stats.sets_replayed == stats.sets_buffered);
    assert!(stats.options_records > 100);
}

/// Capture files to replay: `tests/fixtures/` of the workspace and `NMSD_FIXTURES`.
fn fixture_files() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")];
    if let Some(extra) = std::env::var_os("NMSD_FIXTURES") {
        roots.extend(std::env::split_paths(&extra));
    }
    let mut files = Vec::new();
    for root in roots {
        if root.is_file() {
            files.push(root);
            continue;
        }
        let Ok(dir) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in dir.flatten() {
            let p = entry.path();
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng" | "cap")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Feed every UDP datagram of a capture to both decoders, each exporter by its source address.
fn replay_capture(bytes: &[u8], name: &str) -> Pair {
    let cap = capture::udp_datagrams(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut pair = Pair::new();
    for (i, d) in cap.datagrams.iter().enumerate() {
        pair.feed(d.src, d.payload, d.ts_ms(), &format!("{name} datagram {i}"));
    }
    pair
}

#[test]
fn recorded_fixtures() {
    let files = fixture_files();
    if files.is_empty() {
        eprintln!("no capture fixtures found; nothing to replay");
    }
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.display().to_string();
        let pair = replay_capture(&bytes, &name);
        eprintln!(
            "{name}: {} datagrams, {} compared, {} records agree",
            pair.datagrams, pair.compared, pair.records
        );
        assert!(
            pair.compared > 0 || pair.datagrams == 0,
            "{name}: the oracle refused every datagram"
        );
    }
}

/// The fixture path itself, on a capture built here: generated exports in a pcap.
#[test]
fn replay_of_a_generated_capture() {
    let mut rng = Rng(0xCAB7);
    let tmpl = encode::ipv4_template(256);
    let mut frames = Vec::new();
    for i in 0..20u32 {
        let secs = (T0 / 1000) as u32 + 100 + i;
        let mut m = MessageBuilder::ipfix(secs, i * 5, 0);
        if i % 4 == 1 {
            m.template(&tmpl);
        }
        m.data(&tmpl, &records(&mut rng, 5, false, secs as u64 * 1000));
        frames.push((secs, m.finish()));
    }
    let pcap = pcap_of(&frames);
    let pair = replay_capture(&pcap, "generated.pcap");
    assert_eq!(pair.datagrams, 20);
    assert_eq!(pair.compared, 20);
    // The first data arrived before any template: buffered by both, replayed with it.
    assert_eq!(pair.records, 100);
}

/// A little-endian classic pcap of IPv4/UDP frames on Ethernet, 192.0.2.7:4444 -> :4739.
fn pcap_of(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    b.extend_from_slice(&[2, 0, 4, 0]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65_535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (secs, payload) in frames {
        let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00];
        let udp_len = 8 + payload.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 7, 192, 0, 2, 1]);
        f.extend_from_slice(&4444u16.to_be_bytes());
        f.extend_from_slice(&4739u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        b.extend_from_slice(&secs.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&f);
    }
    b
}
