//! The disk buffer's costs (decision 0013): batch encoding and decoding, the record checksum,
//! appending with each fsync policy, a pass-through (append, read back, acknowledge: what the
//! buffer costs when the sink keeps up) and replay.
//!
//! Batches are 1,024 flow records (~88 KiB encoded, IPv4) or 1,024 roll-up rows. The log lives
//! in `$NMSD_BENCH_DIR` (default: the system temp dir; put it on the disk you mean to measure,
//! not a tmpfs). Appends use drop_oldest at 256 MiB so the bench's disk use stays bounded: the
//! deletion of the oldest 32 MiB segment every ~360 batches is part of the append figure.
//! Replay reads from the page cache (the buffer was just written), so it is the CPU cost of
//! reading, checking and decoding, not the disk's read speed.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nmsd_buffer::{BufferConfig, FsyncPolicy, SegmentLog, WhenFull, codec, crc32c};
use nmsd_parsers::{Direction, FlowRecord, FlowVersion};
use nmsd_pipeline::Batch;
use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::records::RollupRow;

const BATCH_ROWS: usize = 1024;

fn flows() -> Batch {
    let rows = (0..BATCH_ROWS as u32)
        .map(|i| {
            let mut f = FlowRecord::EMPTY;
            f.start_ms = 1_765_000_000_000 + i as u64;
            f.end_ms = f.start_ms + 1500;
            f.bytes = 1500 * (i as u64 % 40 + 1);
            f.packets = i as u64 % 40 + 1;
            f.exporter = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
            f.src_addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7));
            f.dst_addr = IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i % 256));
            f.next_hop = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254));
            f.in_if = 3;
            f.out_if = 4;
            f.src_port = 1024 + i as u16;
            f.dst_port = 443;
            f.protocol = 6;
            f.direction = Direction::Ingress;
            f.version = FlowVersion::NetflowV9;
            f
        })
        .collect();
    Batch::flows(rows)
}

fn rollups() -> Batch {
    let ifs: Vec<Arc<IfInfo>> = (0..8)
        .map(|i| {
            Arc::new(IfInfo {
                name: Some(Arc::from(format!("ge-0/0/{i}").as_str())),
                alias: Some(Arc::from("uplink")),
                speed_mbps: Some(10_000),
            })
        })
        .collect();
    let rows = (0..BATCH_ROWS as u32)
        .map(|i| RollupRow {
            window_start_ms: 1_765_000_000_000,
            exporter: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            source: 0,
            src_addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7)),
            dst_addr: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i % 256)),
            protocol: 6,
            dst_port: 443,
            in_if: i % 8,
            out_if: (i + 1) % 8,
            bytes: 1 << 20,
            packets: 1000,
            flows: 10,
            in_if_info: Some(ifs[i as usize % 8].clone()),
            out_if_info: Some(ifs[(i as usize + 1) % 8].clone()),
        })
        .collect();
    Batch::rollups(rows)
}

fn encoded(b: &Batch) -> Vec<u8> {
    let mut v = Vec::new();
    codec::encode(b, &mut v).expect("encode");
    v
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let base = std::env::var_os("NMSD_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!("nmsd-buffer-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Scratch, fsync: FsyncPolicy) -> BufferConfig {
    BufferConfig {
        dir: dir.0.clone(),
        max_size: 256 << 20,
        segment_size: 32 << 20,
        when_full: WhenFull::DropOldest,
        fsync,
    }
}

fn codec_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("buffer_codec");
    for (name, batch) in [("flows", flows()), ("rollups", rollups())] {
        let bytes = encoded(&batch);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(bytes.len());
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                out.clear();
                codec::encode(black_box(&batch), &mut out).expect("encode");
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| black_box(codec::decode(black_box(&bytes)).expect("decode").rows()))
        });
    }
    g.finish();
}

fn crc_bench(c: &mut Criterion) {
    let data = encoded(&flows());
    let mut g = c.benchmark_group("buffer_crc32c");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("own_slicing_by_8", |b| {
        b.iter(|| crc32c::software::checksum(black_box(&data)))
    });
    g.bench_function("crc32c_crate_sse42", |b| {
        b.iter(|| nmsd_buffer::crc32c::checksum(black_box(&data)))
    });
    g.finish();
}

fn append_bench(c: &mut Criterion) {
    let payload = encoded(&flows());
    let mut g = c.benchmark_group("buffer_append");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    for (name, fsync) in [
        ("never", FsyncPolicy::Never),
        ("100ms", FsyncPolicy::Every(Duration::from_millis(100))),
    ] {
        let dir = Scratch::new(name);
        let mut log = SegmentLog::open(config(&dir, fsync)).expect("open");
        g.bench_function(BenchmarkId::new("fsync", name), |b| {
            b.iter(|| log.append(black_box(&payload)).expect("append"))
        });
        // Append, read back, acknowledge: the buffer in front of a sink that keeps up.
        let mut buf = Vec::new();
        g.bench_function(BenchmarkId::new("pass_through_fsync", name), |b| {
            b.iter(|| {
                log.append(black_box(&payload)).expect("append");
                while let Some(r) = log.read_next(&mut buf).expect("read") {
                    log.ack(r.end).expect("ack");
                }
            })
        });
        // Encoding included: from a batch in memory to a record in the log.
        let batch = flows();
        let mut scratch = Vec::with_capacity(payload.len());
        g.bench_function(BenchmarkId::new("encode_append_fsync", name), |b| {
            b.iter(|| {
                scratch.clear();
                codec::encode(&batch, &mut scratch).expect("encode");
                log.append(&scratch).expect("append")
            })
        });
    }
    g.finish();
}

fn replay_bench(c: &mut Criterion) {
    const BATCHES: usize = 500;
    let payload = encoded(&flows());
    let dir = Scratch::new("replay");
    let mut log = SegmentLog::open(config(&dir, FsyncPolicy::Never)).expect("open");
    for _ in 0..BATCHES {
        log.append(&payload).expect("append");
    }
    let mut g = c.benchmark_group("buffer_replay");
    g.throughput(Throughput::Bytes((payload.len() * BATCHES) as u64));
    g.sample_size(20);
    let mut buf = Vec::new();
    g.bench_function("read_500_batches", |b| {
        b.iter(|| {
            log.rewind();
            let mut n = 0;
            while log.read_next(&mut buf).expect("read").is_some() {
                n += 1;
            }
            assert_eq!(n, BATCHES);
        })
    });
    g.bench_function("read_decode_500_batches", |b| {
        b.iter(|| {
            log.rewind();
            let mut rows = 0;
            while log.read_next(&mut buf).expect("read").is_some() {
                rows += codec::decode(&buf).expect("decode").rows();
            }
            assert_eq!(rows, BATCHES * BATCH_ROWS);
        })
    });
    drop(log);
    // Opening scans every record: the start-up cost of a full buffer, per byte.
    g.bench_function("open_scan_500_batches", |b| {
        b.iter(|| {
            let log = SegmentLog::open(config(&dir, FsyncPolicy::Never)).expect("open");
            black_box(log.unacked_records())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = codec_bench, crc_bench, append_bench, replay_bench
}
criterion_main!(benches);
