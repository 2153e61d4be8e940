//! Keyed global views (issue 10 item 6, decision 0012): two ways to see all workers' flows
//! keyed by destination address, measured end to end with two producing workers.
//!
//! - `merge`: what nmsd does. Each worker sums its flows by key in a `FlowViewBuilder` and
//!   emits one partial per tick over a bounded crossbeam queue (the global stage's); one consumer
//!   merges the partials with `KeyedView::merge`.
//! - `reshard-<consumers>x<chunk>`: each worker hashes every flow's key with a hasher shared by
//!   all workers, appends `(key, bytes, packets)` to a buffer per owning consumer and sends a
//!   buffer when it holds `chunk` entries (and at every tick); each consumer adds the entries to
//!   its own `KeyedView`.
//!
//! Every worker replays 131,072 decoded softflowd-like flows in batches of `batch` records;
//! destinations are drawn from `keys` addresses (a third IPv6), uniformly (the worst case for
//! the merge: a tick folds the fewest flows per key) or with a heavy tail (`-skewed`). A tick is 32,768 flows per worker (250 ms
//! at ~131k flows/s per worker). Criterion's time is the wall time from starting the threads to
//! the last consumer finishing; after each case a line on stderr gives the CPU time per flow of
//! producers and consumers (thread CPU clocks) and the entries, messages and bytes that crossed
//! to the consumers per flow.
//!
//! `worker_cost`: what the per-worker half of a view adds to a parse worker, against the
//! roll-up, on one core (and the builder's loop with one hash lookup per flow instead of two on
//! a miss). `merge_map`: `KeyedView::merge` (a SipHash map) per entry against the
//! same merge into a seeded foldhash map.

use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_parsers::hash::{SeededHashMap, SeededState};
use nmsd_parsers::{FlowDecoder, FlowRecord};
use nmsd_pipeline::Batch;
use nmsd_pipeline::processors::rollup::{Rollup, RollupConfig};
use nmsd_pipeline::processors::{Emitter, Processor};
use nmsd_pipeline::view::{FlowTotals, FlowViewBuilder, KeyedView, ViewKey, ViewKeyBy};

const WORKERS: usize = 2;
const FLOWS_PER_WORKER: usize = 131_072;
const TICK_FLOWS: usize = 32_768;
/// The global stage's queue (collector/src/topology.rs `GLOBAL_QUEUE_BATCHES`).
const GLOBAL_QUEUE: usize = 1024;
/// Buffers in flight per consumer when re-sharding.
const SHARD_QUEUE: usize = 64;
/// `max_keys` of the builders: above every key count here, so nothing overflows.
const MAX_KEYS: usize = 1 << 20;

/// Decoded records of a softflowd-like v9 stream of `flows` distinct flows from `exporter`.
fn records(flows: usize, exporter: IpAddr) -> Vec<FlowRecord> {
    let dgs = traffic::generate(&GenConfig {
        format: Format::V9,
        flows,
        ..GenConfig::default()
    });
    let mut dec = FlowDecoder::default();
    let mut out = Vec::with_capacity(flows);
    for d in &dgs {
        dec.decode(exporter, d, 1_767_225_600_000, &mut out)
            .expect("generated datagrams decode");
    }
    assert_eq!(out.len(), flows);
    out
}

/// `keys` destination addresses, a third of them IPv6.
fn destinations(keys: usize) -> Vec<IpAddr> {
    (0..keys as u32)
        .map(|i| {
            if i % 3 == 2 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
            }
        })
        .collect()
}

/// How destinations are drawn from the key set.
#[derive(Clone, Copy)]
enum Spread {
    /// Every key equally likely: the fewest flows per key and tick (the merge's worst case).
    Uniform,
    /// Index `keys · u⁴` for uniform `u`: half the flows go to 1/16 of the keys, a tenth to
    /// the first 1/10,000 (a heavy tail, as destinations of real traffic have).
    Skewed,
}

/// Give each record a destination drawn (fixed xorshift) from `dsts`.
fn spread_destinations(recs: &mut [FlowRecord], dsts: &[IpAddr], spread: Spread, seed: u64) {
    let mut x = seed | 1;
    for r in recs {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = match spread {
            Spread::Uniform => x % dsts.len() as u64,
            Spread::Skewed => {
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                (u.powi(4) * dsts.len() as f64) as u64
            }
        };
        r.dst_addr = dsts[i as usize];
    }
}

/// Per-worker streams of `FLOWS_PER_WORKER` flows in batches of `batch`, as workers hold them.
fn worker_batches(keys: usize, spread: Spread, batch: usize) -> Vec<Vec<Batch>> {
    let dsts = destinations(keys);
    (0..WORKERS)
        .map(|w| {
            let exporter = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + w as u8));
            let mut recs = records(FLOWS_PER_WORKER, exporter);
            spread_destinations(&mut recs, &dsts, spread, 0x9E37_79B9_7F4A_7C15 ^ w as u64);
            recs.chunks(batch)
                .map(|c| Batch::flows(c.to_vec()))
                .collect()
        })
        .collect()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one case moved and spent, over every round criterion ran.
#[derive(Default)]
struct Tally {
    flows: AtomicU64,
    producer_ns: AtomicU64,
    consumer_ns: AtomicU64,
    entries: AtomicU64,
    messages: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn report(&self, case: &str, entry_bytes: usize) {
        let flows = self.flows.load(Ordering::Relaxed).max(1) as f64;
        let entries = self.entries.load(Ordering::Relaxed) as f64;
        eprintln!(
            "tally {case}: producer {:.1} ns/flow, consumer {:.1} ns/flow, \
             {:.4} entries/flow, {:.5} messages/flow, {:.2} bytes/flow crossing",
            self.producer_ns.load(Ordering::Relaxed) as f64 / flows,
            self.consumer_ns.load(Ordering::Relaxed) as f64 / flows,
            entries / flows,
            self.messages.load(Ordering::Relaxed) as f64 / flows,
            entries * entry_bytes as f64 / flows,
        );
    }
}

/// Flows a merged view counted (every flow must arrive exactly once).
fn view_flows(v: &KeyedView) -> u64 {
    v.totals.values().map(|t| t.flows).sum::<u64>() + v.overflow.flows
}

/// One round of the partial-merge design; returns its wall time.
fn round_merge(streams: &[Vec<Batch>], tally: &Tally) -> Duration {
    let start = Instant::now();
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(GLOBAL_QUEUE);
    let merged = std::thread::scope(|s| {
        for stream in streams {
            let tx = tx.clone();
            s.spawn(move || {
                let cpu = thread_cpu();
                let mut b = FlowViewBuilder::new(ViewKeyBy::DstAddr, MAX_KEYS, 0);
                let mut e = Emitter::default();
                let (mut since_tick, mut entries, mut messages) = (0, 0, 0);
                let mut send = |e: &mut Emitter| {
                    for p in e.drain() {
                        entries += p.rows() as u64;
                        messages += 1;
                        tx.send(p).expect("consumer alive");
                    }
                };
                for batch in stream {
                    since_tick += batch.rows();
                    b.process(batch.clone(), &mut e);
                    if since_tick >= TICK_FLOWS {
                        since_tick = 0;
                        b.tick(0, &mut e);
                        send(&mut e);
                    }
                }
                b.flush(&mut e);
                send(&mut e);
                Tally::add(&tally.entries, entries);
                Tally::add(&tally.messages, messages);
                Tally::add(&tally.producer_ns, (thread_cpu() - cpu).as_nanos() as u64);
            });
        }
        drop(tx);
        s.spawn(move || {
            let cpu = thread_cpu();
            let mut view = KeyedView::default();
            for b in rx {
                if let Batch::FlowView(p) = b {
                    view.merge(&p);
                }
            }
            Tally::add(&tally.consumer_ns, (thread_cpu() - cpu).as_nanos() as u64);
            view_flows(&view)
        })
        .join()
        .expect("consumer")
    });
    let elapsed = start.elapsed();
    let flows: usize = streams.iter().flatten().map(Batch::rows).sum();
    assert_eq!(merged, flows as u64);
    Tally::add(&tally.flows, flows as u64);
    elapsed
}

/// What a re-sharding worker sends per flow.
type ShardEntry = (ViewKey, u64, u64);

/// One round of the re-shard design with `consumers` shards and buffers of `chunk` entries.
fn round_reshard(
    streams: &[Vec<Batch>],
    consumers: usize,
    chunk: usize,
    tally: &Tally,
) -> Duration {
    let start = Instant::now();
    // Every worker must place a key in the same shard: one hasher (seed) for all.
    let shard_hasher = SeededState::default();
    let (txs, rxs): (Vec<Sender<_>>, Vec<Receiver<Vec<ShardEntry>>>) = (0..consumers)
        .map(|_| crossbeam_channel::bounded(SHARD_QUEUE))
        .unzip();
    let merged = std::thread::scope(|s| {
        for stream in streams {
            let txs = txs.clone();
            let shard_hasher = &shard_hasher;
            s.spawn(move || {
                let cpu = thread_cpu();
                let mut bufs: Vec<Vec<ShardEntry>> =
                    (0..consumers).map(|_| Vec::with_capacity(chunk)).collect();
                let (mut since_tick, mut messages) = (0, 0u64);
                let mut flush = |k: usize, bufs: &mut Vec<Vec<ShardEntry>>| {
                    if !bufs[k].is_empty() {
                        let full = std::mem::replace(&mut bufs[k], Vec::with_capacity(chunk));
                        messages += 1;
                        txs[k].send(full).expect("consumer alive");
                    }
                };
                for batch in stream {
                    let Batch::Flows(flows) = batch else {
                        continue;
                    };
                    for f in flows.iter() {
                        let key = ViewKeyBy::DstAddr.key(f);
                        let k = (shard_hasher.hash_one(key) % consumers as u64) as usize;
                        bufs[k].push((key, f.bytes, f.packets));
                        if bufs[k].len() >= chunk {
                            flush(k, &mut bufs);
                        }
                    }
                    since_tick += flows.len();
                    if since_tick >= TICK_FLOWS {
                        since_tick = 0;
                        (0..consumers).for_each(|k| flush(k, &mut bufs));
                    }
                }
                (0..consumers).for_each(|k| flush(k, &mut bufs));
                Tally::add(&tally.messages, messages);
                Tally::add(&tally.producer_ns, (thread_cpu() - cpu).as_nanos() as u64);
            });
        }
        drop(txs);
        let handles: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                s.spawn(move || {
                    let cpu = thread_cpu();
                    let mut view = KeyedView::default();
                    let mut entries = 0u64;
                    for buf in rx {
                        entries += buf.len() as u64;
                        for (key, bytes, packets) in buf {
                            view.totals.entry(key).or_default().add(&FlowTotals {
                                bytes,
                                packets,
                                flows: 1,
                            });
                        }
                    }
                    Tally::add(&tally.entries, entries);
                    Tally::add(&tally.consumer_ns, (thread_cpu() - cpu).as_nanos() as u64);
                    view_flows(&view)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("consumer"))
            .sum::<u64>()
    });
    let elapsed = start.elapsed();
    let flows: usize = streams.iter().flatten().map(Batch::rows).sum();
    assert_eq!(merged, flows as u64);
    Tally::add(&tally.flows, flows as u64);
    elapsed
}

fn global_view(c: &mut Criterion) {
    let mut g = c.benchmark_group("global_view");
    g.throughput(Throughput::Elements((WORKERS * FLOWS_PER_WORKER) as u64));
    let partial_entry = std::mem::size_of::<(ViewKey, FlowTotals)>();
    let shard_entry = std::mem::size_of::<ShardEntry>();
    let spreads = [
        (1_000usize, Spread::Uniform, ""),
        (100_000, Spread::Uniform, ""),
        (100_000, Spread::Skewed, "-skewed"),
    ];
    for (keys, spread, label) in spreads {
        for batch in [64usize, 1024, 4096] {
            let streams = worker_batches(keys, spread, batch);
            let param = format!("keys={keys}{label}/batch={batch}");

            let tally = Tally::default();
            g.bench_function(BenchmarkId::new("merge", &param), |bench| {
                bench.iter_custom(|iters| (0..iters).map(|_| round_merge(&streams, &tally)).sum())
            });
            tally.report(&format!("merge/{param}"), partial_entry);

            for (consumers, chunk) in [(1usize, 256usize), (2, 64), (2, 256)] {
                let tally = Tally::default();
                let name = format!("reshard-{consumers}x{chunk}");
                g.bench_function(BenchmarkId::new(&name, &param), |bench| {
                    bench.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| round_reshard(&streams, consumers, chunk, &tally))
                            .sum()
                    })
                });
                tally.report(&format!("{name}/{param}"), shard_entry);
            }
        }
    }
    g.finish();
}

/// The builder's loop with one hash lookup per flow (`entry`) instead of `get_mut` then
/// `insert` on a miss: what `FlowViewBuilder::process` would cost with that change.
#[derive(Default)]
struct OneLookupBuilder {
    map: SeededHashMap<ViewKey, FlowTotals>,
    overflow: FlowTotals,
}

impl OneLookupBuilder {
    fn add(&mut self, flows: &[FlowRecord]) {
        use std::collections::hash_map::Entry;
        for f in flows {
            let t = FlowTotals {
                bytes: f.bytes,
                packets: f.packets,
                flows: 1,
            };
            let full = self.map.len() >= MAX_KEYS;
            match self.map.entry(ViewKeyBy::DstAddr.key(f)) {
                Entry::Occupied(mut o) => o.get_mut().add(&t),
                Entry::Vacant(v) if !full => {
                    v.insert(t);
                }
                Entry::Vacant(_) => self.overflow.add(&t),
            }
        }
    }

    fn drain(&mut self) -> Vec<(ViewKey, FlowTotals)> {
        self.map.drain().collect()
    }
}

/// Per-flow cost on one parse worker: a view's builder (with a tick every pass, so keys are
/// inserted again each tick) against the roll-up's `add_flows` (steady state, as in the rollup
/// bench), over the same 100,000 records in batches of 900.
fn worker_cost(c: &mut Criterion) {
    const FLOWS: usize = 100_000;
    const BATCH: usize = 900;
    let mut g = c.benchmark_group("worker_cost");
    g.throughput(Throughput::Elements(FLOWS as u64));
    let base = records(FLOWS, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    for keys in [1_000usize, 100_000] {
        let mut recs = base.clone();
        spread_destinations(
            &mut recs,
            &destinations(keys),
            Spread::Uniform,
            0x9E37_79B9_7F4A_7C15,
        );
        let batches: Vec<Batch> = recs
            .chunks(BATCH)
            .map(|c| Batch::flows(c.to_vec()))
            .collect();
        let mut b = FlowViewBuilder::new(ViewKeyBy::DstAddr, MAX_KEYS, 0);
        let mut e = Emitter::default();
        g.bench_function(
            BenchmarkId::new("view_dst_addr", format!("keys={keys}")),
            |bench| {
                bench.iter(|| {
                    for batch in &batches {
                        b.process(batch.clone(), &mut e);
                    }
                    b.tick(0, &mut e);
                    black_box(e.drain().map(|p| p.rows()).sum::<usize>())
                })
            },
        );
        let mut one = OneLookupBuilder::default();
        g.bench_function(
            BenchmarkId::new("view_dst_addr_one_lookup", format!("keys={keys}")),
            |bench| {
                bench.iter(|| {
                    for batch in &batches {
                        if let Batch::Flows(flows) = batch {
                            one.add(flows);
                        }
                    }
                    black_box(one.drain().len())
                })
            },
        );
    }
    {
        let batches: Vec<Batch> = base
            .chunks(BATCH)
            .map(|c| Batch::flows(c.to_vec()))
            .collect();
        let mut b = FlowViewBuilder::new(ViewKeyBy::Dscp, MAX_KEYS, 0);
        let mut e = Emitter::default();
        g.bench_function(BenchmarkId::new("view_dscp", "keys<=64"), |bench| {
            bench.iter(|| {
                for batch in &batches {
                    b.process(batch.clone(), &mut e);
                }
                b.tick(0, &mut e);
                black_box(e.drain().map(|p| p.rows()).sum::<usize>())
            })
        });
    }
    {
        let slices: Vec<&[FlowRecord]> = base.chunks(BATCH).collect();
        let mut r = Rollup::new(&RollupConfig::default());
        let mut e = Emitter::default();
        let mut work = Vec::with_capacity(BATCH);
        for s in &slices {
            work.clear();
            work.extend_from_slice(s);
            r.add_flows(&work, &mut e);
        }
        g.bench_function(
            BenchmarkId::new("rollup", format!("keys={FLOWS}")),
            |bench| {
                bench.iter(|| {
                    for s in &slices {
                        work.clear();
                        work.extend_from_slice(s);
                        r.add_flows(&work, &mut e);
                    }
                    black_box(e.drain().count())
                })
            },
        );
    }
    g.finish();
}

/// The global stage's merge per entry: `KeyedView::merge` (a seeded map since decision 0012; it was std's SipHash `HashMap` when measured) against
/// the same loop into a `SeededHashMap` (foldhash quality, as the builders use), merging two
/// workers' partials of `keys` entries into a view that already holds them.
fn merge_map(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge_map");
    for keys in [1_000usize, 100_000] {
        let dsts = destinations(keys);
        let partials: Vec<Vec<(ViewKey, FlowTotals)>> = (0..WORKERS)
            .map(|w| {
                dsts.iter()
                    .map(|a| {
                        let t = FlowTotals {
                            bytes: 1500 + w as u64,
                            packets: 3,
                            flows: 1,
                        };
                        (ViewKey::Addr(*a), t)
                    })
                    .collect()
            })
            .collect();
        let partials: Vec<_> = partials
            .into_iter()
            .map(|entries| nmsd_pipeline::view::FlowViewPartial {
                key_by: ViewKeyBy::DstAddr,
                worker: 0,
                since_ms: 0,
                until_ms: 0,
                overflow: FlowTotals::default(),
                entries,
            })
            .collect();
        g.throughput(Throughput::Elements((WORKERS * keys) as u64));
        let mut view = KeyedView::default();
        g.bench_function(BenchmarkId::new("keyed_view_siphash", keys), |bench| {
            bench.iter(|| {
                for p in &partials {
                    view.merge(p);
                }
                black_box(view.totals.len())
            })
        });
        let mut seeded: SeededHashMap<ViewKey, FlowTotals> = SeededHashMap::default();
        g.bench_function(BenchmarkId::new("seeded_foldhash", keys), |bench| {
            bench.iter(|| {
                for p in &partials {
                    for (k, t) in &p.entries {
                        seeded.entry(*k).or_default().add(t);
                    }
                }
                black_box(seeded.len())
            })
        });
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
    targets = global_view, worker_cost, merge_map
}
criterion_main!(benches);
