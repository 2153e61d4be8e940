//! Decode throughput: records per second on one core, nmsd's `FlowDecoder` against
//! `netflow_parser` on the same datagrams.
//!
//! Inputs (templates already learned, as in steady state):
//! - `gen-v5`: NetFlow v5, 30 records per datagram.
//! - `gen-v9`, `gen-ipfix`: softflowd-like streams (templates 1024/1025/2048/2049, two IPv4
//!   flows for each IPv6 one, ~1400-byte datagrams of ~27 records in ~9 sets of ~3 records,
//!   as softflowd writes them).
//! - `gen-v9-grouped`, `gen-ipfix-grouped`: the same flows with one set per template per
//!   datagram (≤ 4 sets): the difference to the above is the per-set cost.
//! - `pcap-<name>`: every export datagram of `tests/fixtures/*.pcap` and of the files or
//!   directories in `$NMSD_BENCH_PCAPS`, template datagrams included, as captured.
//!
//! Throughput is `Elements(flow records)` per pass, so criterion's "elem/s" is records/s.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use netflow_parser::{AutoScopedParser, NetflowPacket};
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_parsers::{FlowDecoder, FlowRecord};

/// Datagrams per worker batch (nmsd's default `batch_datagrams`): the record buffer is cleared
/// once per batch, as the parse worker does.
const BATCH: usize = 32;

struct Input {
    name: String,
    /// Datagrams learned from before measuring (templates, options).
    warm: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams decoded in each measured pass.
    pass: Vec<(SocketAddr, Vec<u8>)>,
}

fn generated(format: Format, grouped: bool) -> Input {
    let cfg = GenConfig {
        format,
        // About 64 datagrams: a pass is a few tens of microseconds, small enough for L2.
        flows: if format == Format::V5 { 1920 } else { 1800 },
        set_records: if grouped { 0 } else { 3 },
        ..GenConfig::default()
    };
    let src = SocketAddr::from(([192, 0, 2, 1], 40_000));
    let mut dgs = traffic::generate(&cfg);
    let pass = if format == Format::V5 {
        std::mem::take(&mut dgs)
    } else {
        dgs.split_off(1)
    };
    Input {
        name: format!(
            "gen-{}{}",
            format.label(),
            if grouped { "-grouped" } else { "" }
        ),
        warm: dgs.into_iter().map(|d| (src, d)).collect(),
        pass: pass.into_iter().map(|d| (src, d)).collect(),
    }
}

fn captures() -> Vec<Input> {
    let mut out = Vec::new();
    for path in traffic::bench_captures() {
        let dgs = match traffic::read_capture(&path) {
            Ok(d) if !d.is_empty() => d,
            Ok(_) => {
                eprintln!("decode bench: {} has no export datagrams", path.display());
                continue;
            }
            Err(e) => {
                eprintln!("decode bench: skipping {e}");
                continue;
            }
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let all: Vec<(SocketAddr, Vec<u8>)> = dgs
            .into_iter()
            .map(|d| (SocketAddr::new(d.src, d.src_port), d.payload))
            .collect();
        out.push(Input {
            name: format!("pcap-{stem}"),
            warm: all.clone(),
            pass: all,
        });
    }
    out
}

/// Decode one pass with nmsd; returns the records produced.
fn nmsd_pass(
    dec: &mut FlowDecoder,
    pass: &[(SocketAddr, Vec<u8>)],
    out: &mut Vec<FlowRecord>,
) -> u64 {
    let mut n = 0;
    for batch in pass.chunks(BATCH) {
        out.clear();
        for (src, d) in batch {
            // Errors are counted by the decoder; a bad datagram is part of the workload.
            let _ = dec.decode(src.ip(), d, NOW_MS, out);
        }
        n += out.len() as u64;
        black_box(&*out);
    }
    n
}

/// A fixed "now" inside the template timeout of every input.
const NOW_MS: u64 = 1_767_225_600_000;

/// Records netflow_parser produced for one datagram (flow records only, as nmsd counts).
fn np_records(packets: &[NetflowPacket]) -> u64 {
    use netflow_parser::variable_versions::{ipfix, v9};
    let mut n = 0;
    for p in packets {
        match p {
            NetflowPacket::V5(p) => n += p.flowsets.len() as u64,
            NetflowPacket::V9(p) => {
                for s in &p.flowsets {
                    if let v9::FlowSetBody::Data(d) = &s.body {
                        n += d.fields.len() as u64;
                    }
                }
            }
            NetflowPacket::IPFix(p) => {
                for s in &p.flowsets {
                    if let ipfix::FlowSetBody::Data(d) = &s.body {
                        n += d.fields.len() as u64;
                    }
                }
            }
            _ => {}
        }
    }
    n
}

fn np_pass(p: &mut AutoScopedParser, pass: &[(SocketAddr, Vec<u8>)]) -> u64 {
    let mut n = 0;
    for (src, d) in pass {
        let r = p.parse_from_source(*src, d);
        n += np_records(&r.packets);
        drop(black_box(r));
    }
    n
}

fn decode(c: &mut Criterion) {
    let mut inputs = vec![
        generated(Format::V5, false),
        generated(Format::V9, false),
        generated(Format::Ipfix, false),
        generated(Format::V9, true),
        generated(Format::Ipfix, true),
    ];
    inputs.extend(captures());

    let mut g = c.benchmark_group("decode");
    for input in &inputs {
        // nmsd: learn, then check one pass decodes records.
        let mut dec = FlowDecoder::default();
        let mut out = Vec::with_capacity(BATCH * 32);
        nmsd_pass(&mut dec, &input.warm, &mut out);
        let records = nmsd_pass(&mut dec, &input.pass, &mut out);
        assert!(records > 0, "{}: nmsd decoded no records", input.name);
        let ipv6 = input
            .pass
            .first()
            .map(|(s, _)| matches!(s.ip(), IpAddr::V6(_)))
            .unwrap_or(false);
        eprintln!(
            "decode bench: {}: {} datagrams, {} records per pass ({:.1} per datagram){}",
            input.name,
            input.pass.len(),
            records,
            records as f64 / input.pass.len() as f64,
            if ipv6 { ", IPv6 exporter" } else { "" }
        );
        g.throughput(Throughput::Elements(records));
        g.bench_with_input(BenchmarkId::new("nmsd", &input.name), input, |b, input| {
            b.iter(|| nmsd_pass(&mut dec, &input.pass, &mut out))
        });

        let mut np = AutoScopedParser::new();
        np_pass(&mut np, &input.warm);
        let np_records = np_pass(&mut np, &input.pass);
        if np_records != records {
            eprintln!(
                "decode bench: {}: netflow_parser produced {np_records} records, nmsd {records}",
                input.name
            );
        }
        g.bench_with_input(
            BenchmarkId::new("netflow_parser", &input.name),
            input,
            |b, input| b.iter(|| np_pass(&mut np, &input.pass)),
        );
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode
}
criterion_main!(benches);
