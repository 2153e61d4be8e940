//! sFlow v5 (issue 13): samples/s on one core, decoding datagrams (the decode_sflow fuzz seeds: a
//! datagram of a flow sample, an expanded flow sample, a counter sample and a vendor record,
//! and an IPv6 agent's flow sample) and turning each flow sample into a flow record, as the
//! `sflow` source does. Criterion's elements are samples.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nmsd_parsers::sflow::{Sample, decode};

const SEEDS: [&[u8]; 2] = [
    include_bytes!("../../parsers/fuzz/corpus/decode_sflow/flow-expanded-counter-vendor"),
    include_bytes!("../../parsers/fuzz/corpus/decode_sflow/ipv6-agent-one-flow-sample"),
];

fn bench(c: &mut Criterion) {
    let mut out = Vec::new();
    let samples: u64 = SEEDS
        .iter()
        .map(|d| {
            out.clear();
            decode(d, &mut out).map_or(0, |_| out.len() as u64)
        })
        .sum();
    assert!(samples > 0, "the seeds decode");
    let mut g = c.benchmark_group("sflow");
    g.throughput(Throughput::Elements(samples * 1000));
    g.bench_function("decode_and_records", |b| {
        b.iter(|| {
            let mut records = 0u64;
            for _ in 0..1000 {
                for d in SEEDS {
                    out.clear();
                    if let Ok(h) = decode(black_box(d), &mut out) {
                        for s in &out {
                            if let Sample::Flow(f) = s {
                                records +=
                                    u64::from(f.to_record(&h, 1_765_000_000_000, 0).is_some());
                            }
                        }
                    }
                }
            }
            black_box(records)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
