//! Pins segment format 1 and batch encoding 1 to committed bytes: a build that changes either
//! fails here, and must bump the version and keep reading these fixtures (issue 12: "a test
//! decodes a segment written by the previous format version").
//!
//! Two fixtures: `0000000000000000.seg` (flows, roll-ups, an event: the first streams of
//! encoding 1) and `snmp-traps-links.seg` (one batch of each stream added to encoding 1 later:
//! SNMP interface, device and custom rows, traps, topology links). Both are written the same
//! way and must stay byte for byte. A third, `envelope-v1.seg`, holds the records a sink's disk
//! buffer writes: each batch in envelope 1 (batch id, append time), as nmsd stores them.
//!
//! `NMSD_BLESS=1 cargo test -p nmsd-buffer --test format_v1` rewrites the fixtures; only do that
//! for a new format, keeping the old fixtures under their own names.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use nmsd_buffer::{BufferConfig, FsyncPolicy, SegmentLog, WhenFull};
use nmsd_buffer::{codec, envelope};
use nmsd_pipeline::Batch;
use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::event::{Event, FieldValue, Severity};
use nmsd_pipeline::records::{Direction, FlowRecord, FlowVersion, RollupRow};
use nmsd_pipeline::snmp::{
    CustomRow, CustomValue, DeviceRow, InterfaceRow, LinkRow, Tags, TrapRow,
};

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

/// A NaN with a payload: the fixture must bring back this exact bit pattern.
const NAN_BITS: u64 = 0x7ff8_0000_0000_0bad;

/// One batch of each stream added to encoding 1 after the first fixture: two interface rows
/// of one poll (sharing device and tags), a device row, custom rows of one module, a v2c trap
/// and a v1 trap, a link going up and one going down.
fn snmp_batches() -> Vec<Batch> {
    let device: Arc<str> = Arc::from("core-1");
    let tags: Tags = Tags::from(vec![
        (Arc::from("tag_site"), Arc::from("fra1")),
        (Arc::from("tag_role"), Arc::from("")),
    ]);
    let mut counters = [None; 12];
    counters[0] = Some(u64::MAX);
    counters[4] = Some(1_234_567_890);
    counters[8] = Some(0);
    let mut per_second = [None; 12];
    per_second[0] = Some(f64::from_bits(NAN_BITS));
    per_second[4] = Some(-0.0);
    per_second[8] = Some(12.5);
    let ge1 = InterfaceRow {
        ts_ms: 1_765_000_060_000,
        device: device.clone(),
        tags: tags.clone(),
        if_index: 1,
        if_name: Some(Arc::from("ge-0/0/1")),
        if_alias: Some(Arc::from("uplink → core")),
        if_descr: Some(Arc::from("")),
        if_type: Some(6),
        speed_mbps: Some(10_000),
        admin_status: Some(1),
        oper_status: Some(2),
        counter_bits: 64,
        counters,
        interval_s: Some(60.0),
        in_bps: Some(f64::INFINITY),
        out_bps: Some(800.0),
        in_util: None,
        out_util: Some(0.000_08),
        per_second,
        rate_note: Some("exceeds_speed"),
    };
    let lo = InterfaceRow {
        if_index: u32::MAX,
        if_name: None,
        if_alias: None,
        if_descr: None,
        if_type: Some(-1),
        speed_mbps: None,
        admin_status: None,
        oper_status: None,
        counter_bits: 32,
        counters: [None; 12],
        interval_s: None,
        in_bps: None,
        out_bps: None,
        out_util: None,
        per_second: [None; 12],
        rate_note: None,
        ..ge1.clone()
    };
    let dev = DeviceRow {
        ts_ms: 1_765_000_060_000,
        device: device.clone(),
        tags: tags.clone(),
        address: Some(ip("2001:db8::1")),
        up: false,
        error: Some("timeout"),
        error_detail: Some("no response from [2001:db8::1]:161 after 3 attempts".into()),
        sys_name: Some("core-1.example.net".into()),
        sys_descr: Some(String::new()),
        sys_object_id: Some("1.3.6.1.4.1.2636.1.1.1.2.29".into()),
        sys_location: None,
        sys_contact: None,
        sys_uptime_ticks: Some(u32::MAX),
        engine_id: Some("80000a4c010a000001".into()),
        engine_boots: Some(7),
        poll_ms: 1_234,
        rtt_ms: Some(f64::from_bits(NAN_BITS)),
        requests: 12,
        timeouts: 3,
        varbinds: 480,
        interfaces: 2,
    };
    let table: Arc<str> = Arc::from("snmp_cpu");
    let load: Arc<str> = Arc::from("load");
    let cpu = |idx: &str, v: f64| CustomRow {
        table: table.clone(),
        ts_ms: 1_765_000_060_000,
        device: device.clone(),
        idx: Some(idx.into()),
        values: vec![
            (load.clone(), CustomValue::Gauge(v)),
            (
                Arc::from("ticks"),
                CustomValue::Counter {
                    raw: u64::MAX,
                    rate: None,
                },
            ),
            (
                Arc::from("busy"),
                CustomValue::Counter {
                    raw: 5,
                    rate: Some(0.5),
                },
            ),
            (Arc::from("name"), CustomValue::Label("cpu → 0".into())),
        ],
    };
    let scalar = CustomRow {
        table: Arc::from("snmp_system"),
        ts_ms: 1_765_000_060_000,
        device: device.clone(),
        idx: None,
        values: Vec::new(),
    };
    let v2c = TrapRow {
        ts_ms: 1_765_000_000_456,
        source: Some(SocketAddr::from((ip("192.0.2.1"), 50_162))),
        version: "v2c",
        pdu: "inform",
        trap_oid: "1.3.6.1.6.3.1.1.5.3".into(),
        uptime_ticks: Some(123_456),
        security_name: "lab".into(),
        engine_id: None,
        request_id: Some(i32::MIN),
        enterprise: None,
        generic_trap: None,
        specific_trap: None,
        varbinds: r#"[{"oid":"1.3.6.1.2.1.2.2.1.1.3","type":"integer","value":3}]"#.into(),
    };
    let v1 = TrapRow {
        ts_ms: 1_765_000_000_789,
        source: Some(SocketAddr::from((ip("2001:db8::2"), 162))),
        version: "v1",
        pdu: "trap",
        trap_oid: "1.3.6.1.4.1.8072.2.3.0.1".into(),
        uptime_ticks: None,
        security_name: String::new(),
        engine_id: Some(String::new()),
        request_id: None,
        enterprise: Some("1.3.6.1.4.1.8072.2.3".into()),
        generic_trap: Some(6),
        specific_trap: Some(i64::MAX),
        varbinds: "[]".into(),
    };
    let up = LinkRow {
        ts_ms: 1_765_000_060_000,
        protocol: "lldp",
        state: "up",
        local_device: "core-1".into(),
        local_if_index: Some(1),
        local_port: "ge-0/0/1".into(),
        remote_device: "edge-2".into(),
        remote_known: true,
        remote_port: "Gi0/1".into(),
        remote_port_descr: "to core".into(),
        remote_chassis_id: "00:11:22:33:44:55".into(),
        remote_sys_name: "edge-2.example.net".into(),
    };
    let down = LinkRow {
        protocol: "cdp",
        state: "down",
        local_if_index: None,
        remote_known: false,
        remote_port_descr: String::new(),
        remote_sys_name: String::new(),
        ..up.clone()
    };
    vec![
        Batch::SnmpInterfaces(Arc::new(vec![ge1, lo])),
        Batch::SnmpDevices(Arc::new(vec![dev])),
        Batch::SnmpCustom(Arc::new(vec![cpu("1", 0.25), cpu("2", f64::NAN), scalar])),
        Batch::Traps(Arc::new(vec![v2c, v1])),
        Batch::TopologyLinks(Arc::new(vec![up, down])),
    ]
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1")
}

fn fixture() -> PathBuf {
    fixture_dir().join("0000000000000000.seg")
}

fn snmp_fixture() -> PathBuf {
    fixture_dir().join("snmp-traps-links.seg")
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

/// Writes `batches` to a fresh log and checks the segment against the fixture (or rewrites the
/// fixture under NMSD_BLESS).
fn writes_byte_for_byte(name: &str, fixture: PathBuf, batches: Vec<Batch>) {
    let dir = scratch(name);
    {
        let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
        for b in batches {
            let mut bytes = Vec::new();
            codec::encode(&b, &mut bytes).expect("encode");
            log.append(&bytes).expect("append");
        }
    }
    let written = fs::read(dir.join("0000000000000000.seg")).expect("segment");
    let _ = fs::remove_dir_all(&dir);
    if std::env::var_os("NMSD_BLESS").is_some() {
        fs::write(&fixture, &written).expect("bless");
    }
    let pinned = fs::read(&fixture).expect("fixture");
    assert_eq!(
        written, pinned,
        "the on-disk format changed: bump a version"
    );
}

/// Opens a log holding the fixture as its only segment and decodes every record.
fn replay(name: &str, fixture: PathBuf) -> Vec<Batch> {
    let dir = scratch(name);
    fs::copy(fixture, dir.join("0000000000000000.seg")).expect("copy");
    let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
    assert!(log.take_damage().is_empty());
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while log.read_next(&mut buf).expect("read").is_some() {
        got.push(codec::decode(&buf).expect("decode"));
    }
    drop(log);
    let _ = fs::remove_dir_all(&dir);
    got
}

#[test]
fn this_build_writes_format_1_byte_for_byte() {
    writes_byte_for_byte("write", fixture(), batches());
}

#[test]
fn this_build_writes_the_snmp_trap_and_link_streams_of_format_1_byte_for_byte() {
    writes_byte_for_byte("write-snmp", snmp_fixture(), snmp_batches());
}

#[test]
fn a_format_1_segment_replays_to_the_same_batches() {
    let got = replay("read", fixture());
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

#[test]
fn a_format_1_segment_of_snmp_rows_traps_and_links_replays_to_the_same_batches() {
    let got = replay("read-snmp", snmp_fixture());
    let want = snmp_batches();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            // Rows with NaNs are not equal to themselves: compare the text, which shows every
            // other float exactly, and the NaNs' bit patterns below.
            (Batch::SnmpInterfaces(g), Batch::SnmpInterfaces(w)) => {
                assert_eq!(format!("{g:?}"), format!("{w:?}"));
                assert_eq!(g[0].per_second[0].map(f64::to_bits), Some(NAN_BITS));
                assert_eq!(
                    g[0].per_second[4].map(f64::to_bits),
                    Some((-0.0f64).to_bits())
                );
                // The rows of the poll share device and tags again.
                assert!(Arc::ptr_eq(&g[0].device, &g[1].device));
                assert!(Arc::ptr_eq(&g[0].tags, &g[1].tags));
            }
            (Batch::SnmpDevices(g), Batch::SnmpDevices(w)) => {
                assert_eq!(format!("{g:?}"), format!("{w:?}"));
                assert_eq!(g[0].rtt_ms.map(f64::to_bits), Some(NAN_BITS));
            }
            (Batch::SnmpCustom(g), Batch::SnmpCustom(w)) => {
                assert_eq!(format!("{g:?}"), format!("{w:?}"));
                assert!(matches!(g[1].values[0].1, CustomValue::Gauge(x) if x.is_nan()));
                assert!(Arc::ptr_eq(&g[0].table, &g[1].table));
                assert!(Arc::ptr_eq(&g[0].values[0].0, &g[1].values[0].0));
            }
            (Batch::Traps(g), Batch::Traps(w)) => assert_eq!(g, w),
            (Batch::TopologyLinks(g), Batch::TopologyLinks(w)) => assert_eq!(g, w),
            _ => panic!("{:?} where {:?} was written", g.kind(), w.kind()),
        }
    }
}

/// The fuzz seeds of `decode_batch` (buffer/fuzz/corpus/decode_batch/, one file per stream,
/// named by the stream) are the fixtures' batches, so the fuzzer starts from every stream tag.
#[test]
fn the_decode_batch_fuzz_seeds_are_the_fixture_batches() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_batch");
    let all: Vec<Batch> = batches().into_iter().chain(snmp_batches()).collect();
    assert_eq!(all.len(), 8, "one batch per stored stream");
    for b in all {
        let mut bytes = Vec::new();
        codec::encode(&b, &mut bytes).expect("encode");
        let path = dir.join(b.kind().name());
        if std::env::var_os("NMSD_BLESS").is_some() {
            fs::write(&path, &bytes).expect("bless");
        }
        assert_eq!(fs::read(&path).expect("seed"), bytes, "{}", path.display());
    }
}

fn envelope_fixture() -> PathBuf {
    fixture_dir().join("envelope-v1.seg")
}

/// Batch id and append time of the n-th record of the envelope fixture.
fn envelope_of(n: usize) -> (u64, i64) {
    (
        1_765_000_000_000_000 + n as u64,
        1_765_000_000_000 + n as i64 * 10,
    )
}

#[test]
fn this_build_writes_envelope_1_byte_for_byte() {
    let dir = scratch("envelope-write");
    {
        let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
        for (n, b) in batches().into_iter().enumerate() {
            let (id, ms) = envelope_of(n);
            let mut bytes = Vec::new();
            envelope::encode(id, ms, &b, &mut bytes).expect("encode");
            log.append(&bytes).expect("append");
        }
    }
    let written = fs::read(dir.join("0000000000000000.seg")).expect("segment");
    let _ = fs::remove_dir_all(&dir);
    if std::env::var_os("NMSD_BLESS").is_some() {
        fs::write(envelope_fixture(), &written).expect("bless");
    }
    let pinned = fs::read(envelope_fixture()).expect("fixture");
    assert_eq!(
        written, pinned,
        "the record envelope changed: bump its version"
    );
}

#[test]
fn an_envelope_1_segment_replays_to_the_same_batches_ids_and_times() {
    let dir = scratch("envelope-replay");
    fs::copy(envelope_fixture(), dir.join("0000000000000000.seg")).expect("copy");
    let mut log = SegmentLog::open(cfg(dir.clone())).expect("open");
    let mut buf = Vec::new();
    let mut n = 0;
    let want = batches();
    while log.read_next(&mut buf).expect("read").is_some() {
        let e = envelope::decode(&buf).expect("decode");
        assert_eq!((e.batch_id, e.appended_ms), envelope_of(n));
        assert_eq!(format!("{:?}", e.batch), format!("{:?}", want[n]));
        n += 1;
    }
    assert_eq!(n, want.len());
    drop(log);
    let _ = fs::remove_dir_all(&dir);
}
