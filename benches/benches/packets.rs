//! Packets into flows (issue 13): the packet decoder alone, and decode + flow table, on a
//! synthetic mix of Ethernet frames (IPv4/IPv6, TCP/UDP/ICMP, some 802.1Q-tagged) spread over
//! 10,000 flows, timestamps 1 µs apart so expiry scans run as they would on a busy link.
//! Criterion reports elements/s = packets/s on one core. The file-reading side (the pcap
//! container) is not in the loop: it is a bounds check and a slice per record.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nmsd_parsers::packet::{LinkType, decode};
use nmsd_pipeline::flow_table::{FlowTable, FlowTableConfig};

const FRAMES: usize = 100_000;
const FLOWS: u32 = 10_000;

fn frame(i: u32) -> Vec<u8> {
    let flow = i % FLOWS;
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if flow.is_multiple_of(5) {
        f.extend_from_slice(&[0x81, 0x00, 0x00, (flow % 200) as u8]);
    }
    let (proto, l4): (u8, Vec<u8>) = match flow % 10 {
        0..=5 => {
            let mut t = (40_000 + (flow % 20_000) as u16).to_be_bytes().to_vec();
            t.extend_from_slice(&443u16.to_be_bytes());
            t.extend_from_slice(&[0; 8]);
            t.extend_from_slice(&[0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]);
            (6, t)
        }
        6..=8 => {
            let mut u = (1024 + (flow % 50_000) as u16).to_be_bytes().to_vec();
            u.extend_from_slice(&53u16.to_be_bytes());
            u.extend_from_slice(&[0, 8, 0, 0]);
            (17, u)
        }
        _ => (1, vec![8, 0, 0, 0, 0, 1, 0, 1]),
    };
    let payload = 64 + (i % 1200) as usize;
    if flow.is_multiple_of(4) {
        f.extend_from_slice(&[0x86, 0xDD, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((l4.len() + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[if proto == 1 { 58 } else { proto }, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&flow.to_be_bytes());
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4.len() + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10]);
        f.extend_from_slice(&flow.to_be_bytes()[1..]);
        f.extend_from_slice(&[192, 0, 2, 1]);
    }
    f.extend_from_slice(&l4);
    // Captured with a 128-byte snap length: the decoder reads headers only.
    f.truncate(128);
    f
}

fn bench(c: &mut Criterion) {
    let frames: Vec<Vec<u8>> = (0..FRAMES as u32).map(frame).collect();
    let mut g = c.benchmark_group("packets");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for f in &frames {
                ok += u32::from(decode(LinkType::Ethernet, black_box(f)).is_ok());
            }
            assert_eq!(ok as usize, FRAMES);
            ok
        })
    });
    g.bench_function("decode_and_flow_table", |b| {
        let mut table = FlowTable::new(FlowTableConfig::default());
        let mut out = Vec::with_capacity(4096);
        let mut ts_us = 1_767_225_600_000_000u64;
        let mut last_scan = 0;
        b.iter(|| {
            for f in &frames {
                ts_us += 1;
                let ts_ms = ts_us / 1000;
                if let Ok(p) = decode(LinkType::Ethernet, f) {
                    table.add(ts_ms, &p, &mut out);
                }
                if ts_ms >= last_scan + 1000 {
                    last_scan = ts_ms;
                    table.expire(ts_ms, &mut out);
                }
                if out.len() >= 1024 {
                    black_box(&out);
                    out.clear();
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
