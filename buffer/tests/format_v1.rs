//! Pins segment format 1 and batch encoding 1 to committed bytes: a build that changes either
//! fails here, and must bump the version and keep reading this fixture (issue 12: "a test
//! decodes a segment written by the previous format version").
//!
//! `NMSD_BLESS=1 cargo test -p nmsd-buffer --test format_v1` rewrites the fixture; only do that
//! for a new format, keeping the old fixture under its own name.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use nmsd_buffer::codec;
use nmsd_buffer::{BufferConfig, FsyncPolicy, SegmentLog, WhenFull};
use nmsd_pipeline::Batch;
use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::event::{Event, FieldValue, Severity};
use nmsd_pipeline::records::{Direction, FlowRecord, FlowVersion, RollupRow};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn batches() -> Vec<Batch> {
    let mut f = FlowRecord::EMPTY;
    f.start_ms = 1_765_000_000_000;
    f.end_ms = 1_765_000_001_500;
    f.bytes = 123_456;
    f.packets = 789;
    f.exporter = ip("192.0.2.1");
    f.src_addr = ip("198.51.100.7");
    f.dst_addr = ip("2001:db8::53");
    f.next_hop = ip("203.0.113.254");
    f.in_if = 3;
    f.out_if = 4;
    f.src_port = 51234;
    f.dst_port = 53;
    f.protocol = 17;
    f.direction = Direction::Ingress;
    f.version = FlowVersion::Ipfix;
    f.source = 2;
    let uplink = Arc::new(IfInfo {
        name: Some(Arc::from("ge-0/0/1")),
        alias: Some(Arc::from("uplink → core")),
        speed_mbps: Some(10_000),
    });
    let r = RollupRow {
        window_start_ms: 1_765_000_000_000,
        exporter: ip("192.0.2.1"),
        source: 0,
        src_addr: ip("198.51.100.7"),
        dst_addr: ip("192.0.2.99"),
        protocol: 6,
        dst_port: 443,
        in_if: 3,
        out_if: 4,
        bytes: 1 << 40,
        packets: 1 << 30,
        flows: 12,
        in_if_info: Some(uplink.clone()),
        out_if_info: None,
    };
    let e = Event::new(1_765_000_000_123, "port_scan", Severity::Warning)
        .subject("198.51.100.7")
        .label("exporter", "192.0.2.1")
        .field("ports", FieldValue::Integer(1024))
        .field("rate", FieldValue::Number(33.5))
        .field("note", FieldValue::Text("first seen".into()))
        .message("198.51.100.7 probed 1024 ports");
    vec![
        Batch::flows(vec![f, FlowRecord::EMPTY]),
        Batch::rollups(vec![r.clone(), r]),
        Batch::events(vec![e]),
    ]
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/0000000000000000.seg")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nmsd-buffer-v1-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn cfg(dir: PathBuf) -> BufferConfig {
    BufferConfig {
        dir,
        max_size: 1 << 20,
        segment_size: 64 << 10,
        when_full: WhenFull::Block,
        fsync: FsyncPolicy::Never,
    }
}

#[test]
fn this_build_writes_format_1_byte_for_byte() {
    let dir = scratch("write");
    {
        let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
        for b in batches() {
            let mut bytes = Vec::new();
            codec::encode(&b, &mut bytes).expect("encode");
            log.append(&bytes).expect("append");
        }
    }
    let written = fs::read(dir.join("0000000000000000.seg")).expect("segment");
    let _ = fs::remove_dir_all(&dir);
    if std::env::var_os("NMSD_BLESS").is_some() {
        fs::write(fixture(), &written).expect("bless");
    }
    let pinned = fs::read(fixture()).expect("fixture");
    assert_eq!(
        written, pinned,
        "the on-disk format changed: bump a version"
    );
}

#[test]
fn a_format_1_segment_replays_to_the_same_batches() {
    let dir = scratch("read");
    fs::copy(fixture(), dir.join("0000000000000000.seg")).expect("copy");
    let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
    assert!(log.take_damage().is_empty());
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while log.read_next(&mut buf).expect("read").is_some() {
        got.push(codec::decode(&buf).expect("decode"));
    }
    drop(log);
    let _ = fs::remove_dir_all(&dir);
    let want = batches();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            (Batch::Flows(g), Batch::Flows(w)) => assert_eq!(g, w),
            (Batch::Rollups(g), Batch::Rollups(w)) => assert_eq!(g, w),
            (Batch::Events(g), Batch::Events(w)) => assert_eq!(g, w),
            _ => panic!("{:?} where {:?} was written", g.kind(), w.kind()),
        }
    }
}
