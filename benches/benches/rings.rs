//! Datagram ring throughput: a receive thread handing `DatagramBatch`es to a parse worker over
//! `nmsd_pipeline::ring::datagram_ring`, across two threads, by batch size.
//!
//! The producer fills batches the way the receive thread does after `recvmmsg` (copying each
//! datagram into the packed batch), sends them with the `block` policy and takes recycled
//! batches back; the consumer thread pops them, reads the first byte of each datagram
//! and recycles them. `Elements` are datagrams, so "elem/s" is datagrams/s through the ring.
//! This is the ring's own ceiling: real receive and decode costs are not included.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nmsd_pipeline::ring::{FullPolicy, RingSender, datagram_ring};

/// nmsd's default ring capacity (batches).
const RING_CAPACITY: usize = 512;
/// A typical softflowd datagram.
const DATAGRAM_LEN: usize = 1400;

struct Consumer {
    consumed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn start(batch: usize) -> (RingSender, Consumer) {
    let (tx, mut rx) = datagram_ring("bench", RING_CAPACITY, batch, FullPolicy::Block);
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (consumed.clone(), stop.clone());
    let handle = std::thread::spawn(move || {
        let mut sum = 0u64;
        while !s.load(Ordering::Relaxed) {
            match rx.try_recv() {
                Some(b) => {
                    let mut n = 0;
                    for (_, d) in b.iter() {
                        sum = sum.wrapping_add(d.first().copied().unwrap_or(0) as u64);
                        n += 1;
                    }
                    rx.recycle(b);
                    c.fetch_add(n, Ordering::Release);
                }
                None => std::hint::spin_loop(),
            }
        }
        black_box(sum);
    });
    let consumer = Consumer {
        consumed,
        stop,
        handle: Some(handle),
    };
    (tx, consumer)
}

fn rings(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let src = IpAddr::from([127, 0, 0, 1]);
    let datagram = [0u8; DATAGRAM_LEN];
    let never = AtomicBool::new(false);
    for batch in [1usize, 8, 32, 128] {
        let (mut tx, consumer) = start(batch);
        let mut produced = 0u64;
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("spsc", batch), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let mut bt = tx.take_batch();
                    for _ in 0..batch {
                        bt.push(src, &datagram);
                    }
                    tx.send(bt, &never);
                }
                produced += iters * batch as u64;
                // The time counts until the consumer has everything.
                while consumer.consumed.load(Ordering::Acquire) < produced {
                    std::hint::spin_loop();
                }
                t0.elapsed()
            })
        });
        drop(tx);
        drop(consumer);
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
    targets = rings
}
criterion_main!(benches);
