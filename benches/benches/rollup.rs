//! Roll-up processor throughput: records/s through `nmsd_pipeline::processors::rollup` on one
//! core, with worker-sized batches (32 datagrams ≈ 900 records) of decoded softflowd-like flows.
//!
//! - `keys/N`: a stream of N distinct flows replayed over and over: after the first pass every
//!   record updates an existing key (the steady state of a one-minute window).
//! - `keys/N+tick`: the same with `tick()` closing the window every pass, so rows are emitted
//!   and keys inserted again (the cost at each window boundary, amortised).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_parsers::{FlowDecoder, FlowRecord};
use nmsd_pipeline::processors::rollup::{Rollup, RollupConfig};
use nmsd_pipeline::processors::{Emitter, Processor};

const BATCH_RECORDS: usize = 900;

/// Decoded records of a softflowd-like v9 stream of `flows` distinct flows.
fn records(flows: usize) -> Vec<FlowRecord> {
    let dgs = traffic::generate(&GenConfig {
        format: Format::V9,
        flows,
        ..GenConfig::default()
    });
    let mut dec = FlowDecoder::default();
    let mut out = Vec::with_capacity(flows);
    let src = "192.0.2.1".parse().expect("address");
    for d in &dgs {
        dec.decode(src, d, 1_767_225_600_000, &mut out)
            .expect("generated datagrams decode");
    }
    assert_eq!(out.len(), flows);
    out
}

fn rollup(c: &mut Criterion) {
    let mut g = c.benchmark_group("rollup");
    for flows in [10_000usize, 20_000, 200_000] {
        let recs = records(flows);
        let batches: Vec<Vec<FlowRecord>> = recs.chunks(BATCH_RECORDS).map(<[_]>::to_vec).collect();
        g.throughput(Throughput::Elements(flows as u64));
        for tick in [false, true] {
            let mut r = Rollup::new(&RollupConfig::default());
            let mut e = Emitter::default();
            let mut work = Vec::with_capacity(BATCH_RECORDS);
            // Fill the table once so the untimed state is the steady one.
            for b in &batches {
                work.clear();
                work.extend_from_slice(b);
                r.add_flows(&work, &mut e);
            }
            let name = if tick {
                format!("{flows}+tick")
            } else {
                flows.to_string()
            };
            g.bench_function(BenchmarkId::new("keys", name), |bench| {
                // Each pass is a window later, so every tick is an emission point.
                let mut now = u64::MAX / 4;
                bench.iter(|| {
                    for b in &batches {
                        work.clear();
                        work.extend_from_slice(b);
                        r.add_flows(&work, &mut e);
                    }
                    if tick {
                        // Far in the future: every window is due.
                        now += 60_000;
                        r.tick(now, &mut e);
                    }
                    black_box(e.drain().count())
                })
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = rollup
}
criterion_main!(benches);
