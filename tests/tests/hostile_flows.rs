//! Hostile and broken flow input against a running nmsd, a real exporter (softflowd) and a real
//! QuestDB (issue 11, items 1, 2, 3 and 15). Each test reproduces a finding of an outside run
//! and fails on the code that run used.

use std::net::UdpSocket;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::{pcap, softflowd_export, wait_for};
use nmsd_parsers::ie;
use nmsd_testkit::encode::{self, MessageBuilder, field};

/// Bursts on loopback: one test at a time keeps a 2-core machine from measuring itself.
static SERIAL: Mutex<()> = Mutex::new(());

const SEED: u64 = 20261207;
const SESSIONS: u64 = 2_000;

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// An IPFIX datagram (template + data) with absolute millisecond times: one record ends in the
/// year 2500, one at 2^63 - 1 ms, one is fine.
fn far_future_ipfix() -> Vec<u8> {
    let mut tmpl = encode::ipv4_template(300);
    tmpl.fields
        .retain(|f| f.id != ie::FLOW_START_SYS_UP_TIME && f.id != ie::FLOW_END_SYS_UP_TIME);
    tmpl.fields.push(field(ie::FLOW_START_MILLISECONDS, 8));
    tmpl.fields.push(field(ie::FLOW_END_MILLISECONDS, 8));
    let now_ms = now_secs() as u64 * 1000;
    let mut records = encode::sample_records(3, false, now_ms - 60_000);
    records[0].end_ms = 16_725_225_600_000;
    records[1].end_ms = i64::MAX as u64;
    let mut m = MessageBuilder::ipfix(now_secs(), 0, 77);
    m.template(&tmpl).data(&tmpl, &records);
    m.finish()
}

fn send(port: u16, from: &str, datagram: &[u8]) {
    let s = UdpSocket::bind(format!("{from}:0")).expect("bind sender");
    s.send_to(datagram, ("127.0.0.1", port)).expect("send");
}

/// A metric's value once it has not changed for a second (at most 30 s).
fn settled(nmsd: &Nmsd, name: &str, labels: &[&str]) -> f64 {
    let mut last = nmsd.metric(name, labels);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        let now = nmsd.metric(name, labels);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn count(q: &QuestDb, table: &str) -> i64 {
    q.scalar(&format!("select count() from {table}"))
        .unwrap_or(0)
}

/// Item 1: one record with a timestamp past what QuestDB can store used to stop the sink for
/// good (every later row failed) while status said healthy. With `time_policy = "accept"` the
/// record reaches the sink, which must discard exactly that row and keep writing.
#[test]
fn a_timestamp_the_sink_cannot_store_costs_one_row_not_the_sink() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = QuestDb::shared();
    let prefix = "hostile_ts_";
    let nmsd = Nmsd::start(
        "hostile-ts",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: "[pipeline]\ntime_policy = \"accept\"\n".into(),
            ..NmsdOptions::default()
        },
    );
    send(nmsd.flow_port, "127.0.0.1", &far_future_ipfix());
    let failed = nmsd.wait_metric(
        "nmsd_sink_rows_failed_total",
        &["reason=\"encode\""],
        2.0,
        Duration::from_secs(20),
    );
    assert_eq!(failed, 2.0, "log:\n{}", nmsd.log());
    // A real exporter afterwards: every one of its records is stored.
    let traffic = pcap(SEED, SESSIONS);
    softflowd_export(&traffic.path, nmsd.flow_port, 9);
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
        1000.0,
        Duration::from_secs(30),
    );
    // softflowd has sent everything, but the worker may still be decoding: the count it
    // waits for is the one that stopped moving (it once read 1,685 mid-way while 3,713 came).
    let decoded = settled(
        &nmsd,
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
    );
    let table = format!("{prefix}flows");
    let want = decoded as i64 + 1; // + the one good IPFIX record
    let stored = wait_for(Duration::from_secs(60), || {
        (count(q, &table) == want).then_some(())
    });
    assert!(
        stored.is_some(),
        "{} of {want} rows stored; log:\n{}",
        count(q, &table),
        nmsd.log()
    );
    assert_eq!(nmsd.metric("nmsd_sink_up", &[]), 1.0);
    let (_, status) = nmsd.get("/api/v1/status").expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    let sink = &v["sinks"]["questdb"];
    assert_eq!(sink["rows_rejected"], 2, "{status}");
    assert!(
        sink["last_discard"]
            .as_str()
            .is_some_and(|s| s.contains("out of range")),
        "{status}"
    );
}

/// Item 1, the decoder's side: by default an implausible time is replaced by the receive time
/// and counted, and the row is stored.
#[test]
fn implausible_times_are_clamped_at_decode_by_default() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = QuestDb::shared();
    let prefix = "hostile_clamp_";
    let nmsd = Nmsd::start(
        "hostile-clamp",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            ..NmsdOptions::default()
        },
    );
    let before = now_secs() as i64 * 1_000_000;
    send(nmsd.flow_port, "127.0.0.1", &far_future_ipfix());
    let future = nmsd.wait_metric(
        "nmsd_flow_record_times_out_of_range_total",
        &["reason=\"future\""],
        2.0,
        Duration::from_secs(20),
    );
    assert_eq!(future, 2.0);
    let table = format!("{prefix}flows");
    let stored = wait_for(Duration::from_secs(30), || {
        (count(q, &table) == 3).then_some(())
    });
    assert!(stored.is_some(), "log:\n{}", nmsd.log());
    // The two clamped rows carry the receive time, not the year 2500.
    let latest = q
        .scalar(&format!("select max(ts)::long from {table}"))
        .unwrap_or(0);
    assert!(
        latest >= before && latest < before + 120_000_000,
        "latest {latest}"
    );
    assert_eq!(nmsd.metric("nmsd_sink_rows_failed_total", &[]), 0.0);
}

/// Item 2: 4,200 twenty-byte v9 headers with distinct source ids used to fill the exporter
/// table, after which a real softflowd stream from another address decoded 0 records.
#[test]
fn a_header_flood_does_not_blind_nmsd_to_a_real_exporter() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nmsd = Nmsd::start("hostile-flood", &NmsdOptions::default());
    let s = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    for id in 0..4_200u32 {
        let header = MessageBuilder::v9(3_600_000, now_secs(), 0, id).finish();
        s.send_to(&header, ("127.0.0.1", nmsd.flow_port))
            .expect("send");
        if id % 256 == 255 {
            // Paced enough that the socket buffer, not the flood, is what this measures.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    nmsd.wait_metric(
        "nmsd_flow_datagrams_decoded_total",
        &["version=\"v9\""],
        4_200.0,
        Duration::from_secs(20),
    );
    let traffic = pcap(SEED, SESSIONS);
    softflowd_export(&traffic.path, nmsd.flow_port, 9);
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
        1000.0,
        Duration::from_secs(30),
    );
    assert!(decoded >= 1000.0, "decoded {decoded}; log:\n{}", nmsd.log());
    assert!(nmsd.metric("nmsd_flow_exporter_domains_evicted_total", &[]) > 0.0);
    assert_eq!(
        nmsd.metric(
            "nmsd_flow_sets_without_template_total",
            &["outcome=\"dropped\""]
        ),
        0.0
    );
}

/// Item 3: bit-flipped sequence numbers pushed the lost-flows counter to billions; and the
/// per-exporter loss counters the README documents were never emitted.
#[test]
fn flipped_sequence_bits_are_resets_and_loss_is_shown_per_exporter() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nmsd = Nmsd::start("hostile-seq", &NmsdOptions::default());
    let records = encode::sample_records(30, false, now_secs() as u64 * 1000 - 60_000);
    let mut seq = 5_000u32;
    for i in 0..20u32 {
        let flipped = match i {
            7 => seq ^ 1 << 30,
            12 => seq ^ 1 << 27,
            // 90 flows really lost before this one.
            16 => {
                seq += 90;
                seq
            }
            _ => seq,
        };
        let h = encode::V5Header {
            sys_uptime_ms: 3_600_000,
            unix_secs: now_secs(),
            flow_sequence: flipped,
            ..encode::V5Header::default()
        };
        send(
            nmsd.flow_port,
            "127.0.0.1",
            &encode::v5_datagram(&h, &records),
        );
        seq += 30;
        std::thread::sleep(Duration::from_millis(5));
    }
    nmsd.wait_metric(
        "nmsd_flow_datagrams_decoded_total",
        &["version=\"v5\""],
        20.0,
        Duration::from_secs(20),
    );
    let lost = wait_for(Duration::from_secs(5), || {
        let v = nmsd.metric(
            "nmsd_flow_exporter_lost_flows_total",
            &["exporter=\"127.0.0.1\""],
        );
        (v > 0.0).then_some(v)
    });
    assert_eq!(lost, Some(90.0), "log:\n{}", nmsd.log());
    assert_eq!(
        nmsd.metric("nmsd_flow_sequence_lost_flows_total", &[]),
        90.0
    );
    assert_eq!(
        nmsd.metric(
            "nmsd_flow_exporter_sequence_resets_total",
            &["exporter=\"127.0.0.1\""]
        ),
        4.0
    );
}

/// Item 15: writing resumed up to 30 s (the next backoff retry) after QuestDB came back. With a
/// 60-s backoff, rows must reach the restarted server within seconds of it answering.
#[test]
fn writing_resumes_within_seconds_of_questdb_coming_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut q = QuestDb::owned("questdb-outage");
    let prefix = "outage_";
    let nmsd = Nmsd::start(
        "hostile-outage",
        &NmsdOptions {
            questdb: Some(q.q.url()),
            table_prefix: prefix.into(),
            // At its cap from the first failure: the old code waited all of it.
            retry: ("60s".into(), "60s".into()),
            ..NmsdOptions::default()
        },
    );
    let table = format!("{prefix}flows");
    let records = encode::sample_records(10, false, now_secs() as u64 * 1000 - 60_000);
    let v5 = |seq: u32| {
        let h = encode::V5Header {
            sys_uptime_ms: 3_600_000,
            unix_secs: now_secs(),
            flow_sequence: seq,
            ..encode::V5Header::default()
        };
        encode::v5_datagram(&h, &records)
    };
    send(nmsd.flow_port, "127.0.0.1", &v5(0));
    let first = wait_for(Duration::from_secs(30), || {
        (count(&q.q, &table) == 10).then_some(())
    });
    assert!(first.is_some(), "log:\n{}", nmsd.log());

    q.stop();
    send(nmsd.flow_port, "127.0.0.1", &v5(10));
    // The sink tries, fails and starts its 60-s pause.
    nmsd.wait_metric("nmsd_sink_up", &[], 0.0, Duration::from_secs(5));
    let down = wait_for(Duration::from_secs(20), || {
        (nmsd.metric("nmsd_sink_retries_total", &[]) >= 1.0).then_some(())
    });
    assert!(down.is_some(), "sink never retried; log:\n{}", nmsd.log());

    q.spawn();
    let answered = wait_for(Duration::from_secs(90), || q.q.answers().then(Instant::now))
        .expect("QuestDB restarts");
    let resumed = wait_for(Duration::from_secs(70), || {
        (count(&q.q, &table) == 20).then(Instant::now)
    });
    let resumed = resumed.unwrap_or_else(|| panic!("rows never arrived; log:\n{}", nmsd.log()));
    let lag = resumed.saturating_duration_since(answered);
    assert!(
        lag < Duration::from_secs(10),
        "writing resumed {lag:?} after QuestDB answered; log:\n{}",
        nmsd.log()
    );
}

/// Item 11: the exporter identity was only the address, so two exporters on one host sending
/// to different listeners were one exporter in `flows` and `flows_1m`. Rows now carry the
/// source's name.
#[test]
fn two_listeners_keep_exporters_on_one_host_apart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = QuestDb::shared();
    let prefix = "two_sources_";
    let second = nmsd_acceptance::free_udp_port();
    let nmsd = Nmsd::start(
        "two-sources",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: format!(
                "[sources.edge-b]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{second}\"\n\
                 sockets = 1\nreceive_buffer = \"8MiB\"\n"
            ),
            rollup_inputs: vec!["\"netflow\"".into(), "\"edge-b\"".into()],
            ..NmsdOptions::default()
        },
    );
    let traffic = pcap(SEED, SESSIONS);
    softflowd_export(&traffic.path, nmsd.flow_port, 9);
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
        1000.0,
        Duration::from_secs(30),
    );
    let first = settled(
        &nmsd,
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
    );
    softflowd_export(&traffic.path, second, 10);
    let both = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        2.0 * first,
        Duration::from_secs(30),
    );
    assert_eq!(both, 2.0 * first, "log:\n{}", nmsd.log());
    let flows = format!("{prefix}flows");
    let per_source = |table: &str, col: &str| {
        wait_for(Duration::from_secs(60), || {
            let rows = q.query(&format!(
                "select source, exporter, {col} from {table} order by source"
            ));
            let got: Vec<(String, String, i64)> = rows
                .iter()
                .map(|r| {
                    let s = |i: usize| r.get(i).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    (s(0), s(1), r.get(2).and_then(|v| v.as_i64()).unwrap_or(0))
                })
                .collect();
            let want = vec![
                ("edge-b".to_string(), "127.0.0.1".to_string(), first as i64),
                ("netflow".to_string(), "127.0.0.1".to_string(), first as i64),
            ];
            (got == want).then_some(got)
        })
    };
    assert!(
        per_source(&flows, "count()").is_some(),
        "flows per source; log:\n{}",
        nmsd.log()
    );
    drop(nmsd);
}
