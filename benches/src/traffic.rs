//! Export traffic for benchmarks: softflowd-like datagrams built with the encoder, and export
//! datagrams read from pcap files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nmsd_parsers::{FlowRecord, TemplateDef, TemplateKind, ie};
use nmsd_testkit::encode::{self, MessageBuilder, V5Header, field};

/// Which export format to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    V5,
    V9,
    Ipfix,
}

impl Format {
    pub fn label(self) -> &'static str {
        match self {
            Format::V5 => "v5",
            Format::V9 => "v9",
            Format::Ipfix => "ipfix",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "v5" | "5" => Some(Format::V5),
            "v9" | "9" => Some(Format::V9),
            "ipfix" | "v10" | "10" => Some(Format::Ipfix),
            _ => None,
        }
    }
}

/// IE 136 `flowEndReason`, which softflowd sends and nmsd skips.
const FLOW_END_REASON: u16 = 136;

/// softflowd 1.1.0's data templates: 1024 IPv4, 1025 ICMPv4, 2048 IPv6, 2049 ICMPv6 (the same
/// fields in v9 and IPFIX; times are uptime-relative in both).
pub fn softflowd_template(ipv6: bool, icmp: bool) -> TemplateDef {
    let (id, addr_len, src, dst) = if ipv6 {
        (
            2048,
            16,
            ie::SOURCE_IPV6_ADDRESS,
            ie::DESTINATION_IPV6_ADDRESS,
        )
    } else {
        (
            1024,
            4,
            ie::SOURCE_IPV4_ADDRESS,
            ie::DESTINATION_IPV4_ADDRESS,
        )
    };
    let mut fields = vec![
        field(src, addr_len),
        field(dst, addr_len),
        field(ie::FLOW_START_SYS_UP_TIME, 4),
        field(ie::FLOW_END_SYS_UP_TIME, 4),
        field(ie::OCTET_DELTA_COUNT, 4),
        field(ie::PACKET_DELTA_COUNT, 4),
        field(ie::INGRESS_INTERFACE, 4),
        field(ie::EGRESS_INTERFACE, 4),
        field(ie::FLOW_DIRECTION, 1),
        field(FLOW_END_REASON, 1),
    ];
    if icmp {
        let tc = if ipv6 {
            ie::ICMP_TYPE_CODE_IPV6
        } else {
            ie::ICMP_TYPE_CODE_IPV4
        };
        fields.extend([
            field(tc, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::IP_VERSION, 1),
            field(ie::IP_CLASS_OF_SERVICE, 1),
        ]);
    } else {
        fields.extend([
            field(ie::SOURCE_TRANSPORT_PORT, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::TCP_CONTROL_BITS, 1),
            field(ie::IP_VERSION, 1),
            field(ie::IP_CLASS_OF_SERVICE, 1),
        ]);
    }
    TemplateDef {
        id: id + icmp as u16,
        kind: TemplateKind::Data,
        fields,
    }
}

/// softflowd's options template 256: IPFIX announces the system init time (which its uptime
/// times are relative to) and unsampled export; v9 an unsampled sampling interval.
pub fn softflowd_options(format: Format) -> TemplateDef {
    let fields = match format {
        Format::Ipfix => vec![
            field(143, 4), // meteringProcessId (scope)
            field(ie::SYSTEM_INIT_TIME_MILLISECONDS, 8),
            field(ie::SAMPLING_PACKET_INTERVAL, 4),
            field(ie::SAMPLING_PACKET_SPACE, 4),
            field(304, 2), // selectorAlgorithm
        ],
        _ => vec![
            field(1, 4), // v9 scope "System"
            field(ie::SAMPLING_INTERVAL, 4),
            field(ie::SAMPLING_ALGORITHM, 1),
        ],
    };
    TemplateDef {
        id: 256,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields,
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub format: Format,
    /// Distinct flows in the stream (one pass).
    pub flows: usize,
    /// Largest UDP payload; softflowd fills ~1400 bytes (about 27–30 records).
    pub max_payload: usize,
    /// Header export time, Unix seconds; flows end within the minute before it.
    pub export_secs: u32,
    /// v9 source id / IPFIX observation domain / v5 engine id.
    pub domain: u32,
    /// Share of IPv6 flows, 0.0–1.0 (v5 carries IPv4 only).
    pub ipv6_share: f64,
    /// Mean records per data set (softflowd: ~3, so ~9 sets per datagram); 0 puts each
    /// template's records of a datagram in one set (at most 4 sets: the decoder's best case).
    pub set_records: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            format: Format::V9,
            flows: 10_000,
            max_payload: 1400,
            export_secs: 1_767_225_600,
            domain: 0,
            ipv6_share: 1.0 / 3.0,
            set_records: 3,
        }
    }
}

/// v9 exporter uptime at export: ten days, so uptime times never go below zero.
const V9_UPTIME_MS: u32 = 864_000_000;

/// Build a softflowd-like export stream: a template datagram, then data datagrams holding
/// `flows` distinct flows, each datagram filled up to `max_payload` bytes with sets of the
/// four softflowd templates. Sequence numbers are consistent over the stream.
pub fn generate(cfg: &GenConfig) -> Vec<Vec<u8>> {
    let base_ms = cfg.export_secs as u64 * 1000 - 70_000;
    if cfg.format == Format::V5 {
        return generate_v5(cfg, base_ms);
    }
    let n6 = ((cfg.flows as f64) * cfg.ipv6_share.clamp(0.0, 1.0)).round() as usize;
    let n4 = cfg.flows - n6.min(cfg.flows);
    let v4 = encode::sample_records(n4, false, base_ms);
    let v6 = encode::sample_records(n6, true, base_ms);
    // Runs of records of one template, so that every datagram carries both families and ICMP
    // in many small sets, as softflowd's do (it writes flows in table order: ~9 sets of ~3
    // records per datagram). Each run draws its template in proportion to the records left
    // and its length from 1..=2·mean−1, from a fixed xorshift: streams are reproducible.
    let mean = cfg.set_records.max(1) as u64;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let icmp = |r: &FlowRecord| r.protocol == 1 || r.protocol == 58;
    let mut pools: [Vec<&FlowRecord>; 4] = Default::default();
    for r in v4.iter().chain(&v6) {
        pools[(r.is_ipv6() as usize) * 2 + icmp(r) as usize].push(r);
    }
    for p in &mut pools {
        p.reverse();
    }
    let mut order: Vec<&FlowRecord> = Vec::with_capacity(cfg.flows);
    let mut last = usize::MAX;
    loop {
        // Another template than the last run's while there is one, so runs do not merge.
        let avail = |k: usize| {
            !pools[k].is_empty()
                && (k != last || pools.iter().filter(|p| !p.is_empty()).count() == 1)
        };
        let left: usize = (0..4).filter(|&k| avail(k)).map(|k| pools[k].len()).sum();
        if left == 0 {
            break;
        }
        let mut pick = (rnd() % left as u64) as usize;
        let k = (0..4)
            .filter(|&k| avail(k))
            .find(|&k| {
                if pick < pools[k].len() {
                    true
                } else {
                    pick -= pools[k].len();
                    false
                }
            })
            .unwrap_or(0);
        last = k;
        let run = 1 + rnd() % (2 * mean - 1);
        for _ in 0..run {
            match pools[k].pop() {
                Some(r) => order.push(r),
                None => break,
            }
        }
    }

    let templates = [
        softflowd_template(false, false),
        softflowd_template(false, true),
        softflowd_template(true, false),
        softflowd_template(true, true),
    ];
    let rec_len: Vec<usize> = templates
        .iter()
        .map(|t| t.fields.iter().map(|f| f.len as usize).sum())
        .collect();
    let options = softflowd_options(cfg.format);
    let header_len = if cfg.format == Format::V9 { 20 } else { 16 };

    let mut seq: u32 = 0;
    let new_msg = |seq: u32| match cfg.format {
        Format::V9 => MessageBuilder::v9(V9_UPTIME_MS, cfg.export_secs, seq, cfg.domain),
        _ => MessageBuilder::ipfix(cfg.export_secs, seq, cfg.domain),
    };
    let mut out = Vec::new();

    let mut m = new_msg(seq);
    for t in &templates {
        m.template(t);
    }
    m.template(&options);
    let row: Vec<u64> = match cfg.format {
        Format::Ipfix => vec![1, m.boot_ms(), 1, 0, 1],
        _ => vec![0, 1, 1],
    };
    m.options_data(&options, &[&row]);
    out.push(m.finish());
    // v9 counts datagrams, IPFIX data records: one options record here.
    seq += 1;

    // Sets in order of appearance: consecutive records of one template share a set. With
    // `set_records == 0` a datagram holds one set per template instead (the best case).
    let grouped = cfg.set_records == 0;
    let mut sets: Vec<(usize, Vec<FlowRecord>)> = Vec::new();
    let mut size = header_len;
    let flush =
        |sets: &mut Vec<(usize, Vec<FlowRecord>)>, seq: &mut u32, out: &mut Vec<Vec<u8>>| {
            let n: usize = sets.iter().map(|(_, g)| g.len()).sum();
            if n == 0 {
                return;
            }
            let mut m = new_msg(*seq);
            for (k, g) in sets.drain(..) {
                m.data(&templates[k], &g);
            }
            out.push(m.finish());
            *seq = seq.wrapping_add(if cfg.format == Format::V9 {
                1
            } else {
                n as u32
            });
        };
    for r in order {
        let icmp = r.protocol == 1 || r.protocol == 58;
        let k = (r.is_ipv6() as usize) * 2 + icmp as usize;
        let join = if grouped {
            sets.iter().position(|(t, _)| *t == k)
        } else {
            sets.last().filter(|(t, _)| *t == k).map(|_| sets.len() - 1)
        };
        let extra = rec_len[k] + if join.is_some() { 0 } else { 4 };
        if size + extra > cfg.max_payload {
            flush(&mut sets, &mut seq, &mut out);
            size = header_len;
            size += rec_len[k] + 4;
            sets.push((k, vec![*r]));
            continue;
        }
        size += extra;
        match join {
            Some(i) => sets[i].1.push(*r),
            None => sets.push((k, vec![*r])),
        }
    }
    flush(&mut sets, &mut seq, &mut out);
    out
}

fn generate_v5(cfg: &GenConfig, base_ms: u64) -> Vec<Vec<u8>> {
    let recs = encode::sample_records(cfg.flows, false, base_ms);
    let mut seq = 0u32;
    recs.chunks(30)
        .map(|chunk| {
            let h = V5Header {
                sys_uptime_ms: V9_UPTIME_MS,
                unix_secs: cfg.export_secs,
                unix_nsecs: 0,
                flow_sequence: seq,
                engine_type: (cfg.domain >> 8) as u8,
                engine_id: cfg.domain as u8,
                sampling: 0,
            };
            seq = seq.wrapping_add(chunk.len() as u32);
            encode::v5_datagram(&h, chunk)
        })
        .collect()
}

/// One UDP datagram of a capture, owned.
#[derive(Clone, Debug)]
pub struct CapturedDatagram {
    pub src: IpAddr,
    pub src_port: u16,
    pub ts_ms: u64,
    pub payload: Vec<u8>,
}

/// Read the UDP datagrams of a pcap/pcapng file that look like NetFlow v5/v9 or IPFIX.
pub fn read_capture(path: &Path) -> Result<Vec<CapturedDatagram>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cap = nmsd_testkit::capture::udp_datagrams(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cap
        .datagrams
        .iter()
        .filter(|d| matches!(d.payload, [0, 5 | 9 | 10, ..]))
        .map(|d| CapturedDatagram {
            src: d.src,
            src_port: d.src_port,
            ts_ms: d.ts_ms(),
            payload: d.payload.to_vec(),
        })
        .collect())
}

/// Captures the decode bench reads: `tests/fixtures/*.pcap{,ng}` of the workspace, plus the
/// files and directories listed in `$NMSD_BENCH_PCAPS` (colon-separated).
pub fn bench_captures() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")];
    if let Some(extra) = std::env::var_os("NMSD_BENCH_PCAPS") {
        roots.extend(std::env::split_paths(&extra));
    }
    let mut out = Vec::new();
    for r in roots {
        if r.is_file() {
            out.push(r);
            continue;
        }
        let Ok(dir) = std::fs::read_dir(&r) else {
            continue;
        };
        let mut files: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Stream;
    use nmsd_parsers::FlowDecoder;

    #[test]
    fn generated_streams_decode_completely() {
        for (format, set_records) in [
            (Format::V5, 3),
            (Format::V9, 3),
            (Format::Ipfix, 3),
            (Format::V9, 0),
            (Format::Ipfix, 0),
        ] {
            let cfg = GenConfig {
                format,
                flows: 1000,
                set_records,
                ..GenConfig::default()
            };
            let dgs = generate(&cfg);
            let s = Stream::analyze(&dgs);
            assert_eq!(s.flows(), 1000, "{format:?}");
            assert_eq!(s.unknown_sets(), 0);
            let mut dec = FlowDecoder::default();
            let mut out = Vec::new();
            let src = "127.0.0.1".parse().expect("address");
            for d in &dgs {
                if format != Format::V5 {
                    assert!(d.len() <= cfg.max_payload, "{}", d.len());
                }
                dec.decode(src, d, 1_767_225_600_000, &mut out)
                    .expect("decodes");
            }
            assert_eq!(out.len(), 1000, "{format:?}");
            // Times survive the uptime round trip and lie before the export time.
            assert!(
                out.iter()
                    .all(|r| r.end_ms < 1_767_225_600_000 && r.end_ms > 1_767_225_500_000)
            );
            let st = dec.stats();
            assert_eq!(st.sequence_lost_flows + st.sequence_lost_datagrams, 0);
            if format != Format::V5 {
                let per = 1000.0 / (dgs.len() - 1) as f64;
                assert!(
                    (25.0..=32.0).contains(&per),
                    "{format:?}: {per} records/datagram"
                );
            }
        }
    }
}
