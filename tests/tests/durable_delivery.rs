//! Durable delivery (issue 12) against a real QuestDB that the tests stop and start, and a real
//! nmsd that they stop, kill with SIGKILL and start again on the same state directory.
//!
//! Every flow the exporter sends is distinguishable: its byte count is its serial number, so
//! `count() = count_distinct(bytes) = sent` and `sum(bytes) = 1 + 2 + ... + sent` say "every
//! flow exactly once" in one query.
//!
//! Durations: `NMSD_OUTAGE_SECS` (default 40) is the stream of the outage test; QuestDB is down
//! for its middle half. The run (a 6-minute stream, 3 minutes down) is
//! `NMSD_OUTAGE_SECS=360`. `NMSD_RSS_SECS` (default 30) is the memory test's outage and
//! `NMSD_RSS_RATE` its datagrams per second (default 2000, 40,000 flows/s).

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::{OwnedQuestDb, QuestDb};
use nmsd_parsers::FlowRecord;
use nmsd_testkit::encode::{MessageBuilder, ipv4_template};

const RECORDS_PER_DATAGRAM: u64 = 20;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A NetFlow v9 exporter whose flows carry serial numbers as their byte counts.
struct Exporter {
    socket: UdpSocket,
    port: u16,
    boot_ms: u64,
    sequence: u32,
    /// Serial of the last flow sent (flows are 1..=sent).
    sent: u64,
}

impl Exporter {
    fn new(port: u16) -> Self {
        Exporter {
            socket: UdpSocket::bind("127.0.0.1:0").expect("exporter socket"),
            port,
            boot_ms: now_ms() - 3_600_000,
            sequence: 0,
            sent: 0,
        }
    }

    /// One datagram of 20 flows ending now; the template travels in every datagram.
    fn send_one(&mut self) {
        let now = now_ms();
        let t = ipv4_template(256);
        let records: Vec<FlowRecord> = (0..RECORDS_PER_DATAGRAM)
            .map(|i| {
                let serial = self.sent + i + 1;
                FlowRecord {
                    start_ms: now - 1000,
                    end_ms: now,
                    bytes: serial,
                    packets: 1,
                    src_addr: [10, 1, (serial >> 8) as u8, serial as u8].into(),
                    dst_addr: [192, 168, 7, (serial % 16) as u8].into(),
                    src_port: 1024 + (serial % 50_000) as u16,
                    dst_port: 443,
                    protocol: 6,
                    in_if: 1,
                    out_if: 2,
                    ..FlowRecord::default()
                }
            })
            .collect();
        let uptime = (now - self.boot_ms) as u32;
        let mut m = MessageBuilder::v9(uptime, (now / 1000) as u32, self.sequence, 1);
        m.template(&t).data(&t, &records);
        self.socket
            .send_to(&m.finish(), ("127.0.0.1", self.port))
            .expect("send");
        self.sequence += 1;
        self.sent += RECORDS_PER_DATAGRAM;
    }

    /// Send at `per_sec` datagrams a second for `secs`, calling `at(elapsed)` between sends.
    fn stream(&mut self, per_sec: u64, secs: u64, mut at: impl FnMut(Duration)) {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            let due = start + Duration::from_micros(n * 1_000_000 / per_sec);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            self.send_one();
            n += 1;
            at(start.elapsed());
        }
    }

    fn expected_sum(&self) -> i64 {
        serial_sum(self.sent)
    }
}

/// 1 + 2 + ... + n.
fn serial_sum(n: u64) -> i64 {
    (n * (n + 1) / 2) as i64
}

fn options(q: &QuestDb, prefix: &str, state: &Path, extra: &str) -> NmsdOptions {
    NmsdOptions {
        questdb: Some(q.url()),
        table_prefix: prefix.into(),
        state_dir: Some(state.to_path_buf()),
        sink_extra: extra.into(),
        ..NmsdOptions::default()
    }
}

/// (count, distinct byte counts, sum of bytes) of the flows table.
fn flows_totals(q: &QuestDb, table: &str) -> (i64, i64, i64) {
    q.wait_applied(table, Duration::from_secs(60));
    let rows = q.query(&format!(
        "select count(), count_distinct(bytes), sum(bytes) from {table}"
    ));
    let v = |i: usize| rows[0][i].as_i64().unwrap_or(-1);
    (v(0), v(1), v(2))
}

/// Stream NetFlow v9 steadily; stop QuestDB for the middle half and start it again on the same
/// data directory. Every flow is in the flows table exactly once, and the roll-ups add up to
/// the same totals.
#[test]
fn a_questdb_outage_mid_stream_loses_and_duplicates_nothing() {
    let secs = env_secs("NMSD_OUTAGE_SECS", 40);
    let mut q: OwnedQuestDb = QuestDb::owned("outage-questdb");
    let state = nmsd_acceptance::scratch("outage-stream-state");
    let mut nmsd = Nmsd::start("outage-stream", &options(&q.q, "dur_", &state, ""));
    let mut exporter = Exporter::new(nmsd.flow_port);
    let (down_at, up_at) = (secs / 4, secs * 3 / 4);
    let mut phase = 0;
    let mut buffered_peak = 0.0f64;
    let mut last_probe = Instant::now();
    let started = Instant::now();
    exporter.stream(50, secs, |t| {
        if phase == 0 && t >= Duration::from_secs(down_at) {
            q.stop();
            phase = 1;
        } else if phase == 1 && t >= Duration::from_secs(up_at) {
            q.spawn();
            phase = 2;
        }
        if phase == 1 && last_probe.elapsed() >= Duration::from_secs(2) {
            last_probe = Instant::now();
            buffered_peak = buffered_peak.max(nmsd.metric("nmsd_buffer_bytes", &[]));
        }
    });
    let streamed_for = started.elapsed();
    let sent = exporter.sent;
    assert!(
        buffered_peak > 0.0,
        "the disk buffer held the outage's batches"
    );
    // Wait until QuestDB answers and nmsd has written every flow (a replay may write some
    // twice; DEDUP keeps one).
    let wait = Duration::from_secs(secs.max(60) * 2);
    assert!(
        nmsd_acceptance::wait_for(wait, || q.q.answers().then_some(())).is_some(),
        "QuestDB is back"
    );
    let written = nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"dur_flows\""],
        sent as f64,
        wait,
    );
    let log = nmsd.log();
    assert!(nmsd.stop().success(), "{}", nmsd.log());
    assert_eq!(
        log.matches("QuestDB sink cannot write").count(),
        1,
        "one line when the sink goes down:\n{log}"
    );
    assert!(
        log.contains("QuestDB reachable again after"),
        "one line when it recovers:\n{log}"
    );
    let (count, distinct, sum) = flows_totals(&q.q, "dur_flows");
    println!(
        "outage: {sent} flows in {streamed_for:?}, QuestDB down {}s, buffer peak {buffered_peak} \
         bytes, rows written {written} (replays included), table {count}",
        up_at - down_at
    );
    assert_eq!(
        (count, distinct),
        (sent as i64, sent as i64),
        "each flow once"
    );
    assert_eq!(sum, exporter.expected_sum());
    // The roll-ups: every flow counted once across the windows.
    q.q.wait_applied("dur_flows_1m", Duration::from_secs(60));
    let r = q.q.query("select sum(flows), sum(bytes) from dur_flows_1m");
    assert_eq!(r[0][0].as_i64(), Some(sent as i64), "roll-up flows");
    assert_eq!(
        r[0][1].as_i64(),
        Some(exporter.expected_sum()),
        "roll-up bytes"
    );
}

/// SIGKILL during an outage: what nmsd had appended to its disk buffer is written once the
/// restarted nmsd finds QuestDB back, exactly once.
#[test]
fn a_kill_during_an_outage_loses_nothing_the_buffer_took() {
    let mut q = QuestDb::owned("kill-questdb");
    let state = nmsd_acceptance::scratch("kill-state");
    let opts = options(&q.q, "kill_", &state, "");
    // Create the tables first, so that the restarted nmsd's writes are all replays.
    let mut nmsd = Nmsd::start("kill-first", &opts);
    nmsd.wait_metric("nmsd_sink_up", &[], 1.0, Duration::from_secs(30));
    q.stop();
    let mut exporter = Exporter::new(nmsd.flow_port);
    exporter.stream(200, 5, |_| {});
    let sent = exporter.sent;
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        sent as f64,
        Duration::from_secs(30),
    );
    // Raw flows and the roll-up rows of windows emitted so far: everything decoded is in the
    // buffer once the appended count stops moving.
    nmsd.wait_metric(
        "nmsd_buffer_appended_rows_total",
        &[],
        sent as f64,
        Duration::from_secs(30),
    );
    // One fsync interval, so the kill does not race the page cache (it could not lose it
    // anyway: the kernel has it; power loss is what fsync bounds).
    std::thread::sleep(Duration::from_millis(300));
    nmsd.kill();

    q.start();
    let mut nmsd = Nmsd::start("kill-second", &opts);
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"kill_flows\""],
        sent as f64,
        Duration::from_secs(60),
    );
    assert!(
        nmsd.log().contains("from the previous run"),
        "{}",
        nmsd.log()
    );
    assert!(nmsd.stop().success());
    let (count, distinct, sum) = flows_totals(&q.q, "kill_flows");
    assert_eq!((count, distinct), (sent as i64, sent as i64));
    assert_eq!(sum, serial_sum(sent));
}

/// SIGKILL while the exporter is still sending: every flow the buffer had taken before the kill
/// is written after the restart, once; what was lost is only what had not reached the buffer
/// (the socket buffer, the ring, the worker, the sink queue), printed for the note.
#[test]
fn a_kill_mid_stream_loses_only_what_had_not_reached_the_buffer() {
    let mut q = QuestDb::owned("killstream-questdb");
    let state = nmsd_acceptance::scratch("killstream-state");
    let opts = NmsdOptions {
        sink_inputs: Some(vec!["\"netflow\"".into()]),
        ..options(&q.q, "killstream_", &state, "")
    };
    let mut nmsd = Nmsd::start("killstream-first", &opts);
    nmsd.wait_metric("nmsd_sink_up", &[], 1.0, Duration::from_secs(30));
    q.stop();
    let mut exporter = Exporter::new(nmsd.flow_port);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        let due = started + Duration::from_micros(n * 1_000_000 / 500);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        exporter.send_one();
        n += 1;
    }
    // Mid-stream: the last scrape, the kill, and the sender's count at that moment.
    let appended = nmsd.metric("nmsd_buffer_appended_rows_total", &[]);
    nmsd.kill();
    let sent = exporter.sent;
    q.start();
    let mut nmsd = Nmsd::start("killstream-second", &opts);
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"killstream_flows\""],
        appended,
        Duration::from_secs(60),
    );
    // Let the rest of the replay finish.
    nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        (nmsd.metric("nmsd_buffer_records", &[]) == 0.0).then_some(())
    });
    assert!(nmsd.stop().success());
    let (count, distinct, _) = flows_totals(&q.q, "killstream_flows");
    println!(
        "kill mid-stream: sent {sent} flows at 10,000/s, buffer had {appended} at the last \
         scrape before the kill, written after the restart {count}, lost {}",
        sent as i64 - count
    );
    assert_eq!(count, distinct, "no flow twice");
    assert!(
        count as f64 >= appended,
        "everything appended is written: {count} < {appended}"
    );
    assert!(count as u64 <= sent);
}

/// The three kinds of damage on three segments (a truncated tail, a flipped byte, garbage
/// appended): nmsd starts, counts and logs each, and writes every intact batch.
#[test]
fn damaged_segments_are_counted_and_skipped_and_the_rest_is_written() {
    let q = QuestDb::shared();
    let state = nmsd_acceptance::scratch("corrupt-state");
    let dead = format!("http://127.0.0.1:{}", nmsd_acceptance::free_tcp_port());
    // Three runs against a dead QuestDB: each leaves its batches in a segment of its own.
    let mut sent_per_run = Vec::new();
    let mut exporter_sent = 0;
    for run in 0..3 {
        let mut nmsd = Nmsd::start(
            &format!("corrupt-run{run}"),
            &NmsdOptions {
                questdb: Some(dead.clone()),
                table_prefix: "corrupt_".into(),
                state_dir: Some(state.clone()),
                sink_extra: "shutdown_timeout = \"1s\"\n".into(),
                // Raw flows only: the roll-up's rows would make the counts depend on windows.
                sink_inputs: Some(vec!["\"netflow\"".into()]),
                ..NmsdOptions::default()
            },
        );
        let mut exporter = Exporter::new(nmsd.flow_port);
        exporter.sent = exporter_sent;
        // Several batches per run, so damage in one leaves others.
        for _ in 0..10 {
            for _ in 0..10 {
                exporter.send_one();
            }
            std::thread::sleep(Duration::from_millis(60));
        }
        let n = exporter.sent - exporter_sent;
        nmsd.wait_metric(
            "nmsd_buffer_appended_rows_total",
            &[],
            n as f64,
            Duration::from_secs(30),
        );
        assert!(nmsd.stop().success(), "{}", nmsd.log());
        sent_per_run.push((exporter_sent + 1, exporter.sent));
        exporter_sent = exporter.sent;
    }
    let dir = state.join("buffer").join("questdb");
    let mut segs: Vec<_> = std::fs::read_dir(&dir)
        .expect("buffer dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 8))
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 3, "one segment per run: {segs:?}");
    // Run 1: the tail torn off mid-record. Run 2: a byte flipped in the middle. Run 3:
    // garbage appended.
    let len = std::fs::metadata(&segs[0]).expect("seg").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .and_then(|f| f.set_len(len - 100))
        .expect("truncate");
    let mut b = std::fs::read(&segs[1]).expect("seg");
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&segs[1], b).expect("flip");
    let mut b = std::fs::read(&segs[2]).expect("seg");
    b.extend_from_slice(&[0xA5; 777]);
    std::fs::write(&segs[2], b).expect("append");

    let mut nmsd = Nmsd::start(
        "corrupt-replay",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "corrupt_".into(),
            state_dir: Some(state.clone()),
            sink_inputs: Some(vec!["\"netflow\"".into()]),
            ..NmsdOptions::default()
        },
    );
    let corrupt = nmsd.wait_metric(
        "nmsd_buffer_corrupt_records_total",
        &[],
        3.0,
        Duration::from_secs(10),
    );
    assert!(corrupt >= 3.0, "{corrupt}");
    // Everything left is written; then the backlog gauge is 0.
    nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        (nmsd.metric("nmsd_buffer_backlog_records", &[]) == 0.0
            && nmsd.metric("nmsd_buffer_records", &[]) == 0.0)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the rest is written: backlog {} records {}; log:\n{}",
            nmsd.metric("nmsd_buffer_backlog_records", &[]),
            nmsd.metric("nmsd_buffer_records", &[]),
            nmsd.log()
        )
    });
    let log = nmsd.log();
    for kind in ["torn", "checksum", "segment"] {
        assert!(
            log.contains(kind),
            "the log names the damage ({kind}):\n{log}"
        );
    }
    assert!(log.contains("offset="), "with its offset:\n{log}");
    assert!(nmsd.stop().success());
    // A second start finds nothing to report again for the cut tails.
    q.wait_applied("corrupt_flows", Duration::from_secs(30));
    let per_run = |(lo, hi): (u64, u64)| {
        q.scalar(&format!(
            "select count() from corrupt_flows where bytes between {lo} and {hi}"
        ))
        .unwrap_or(-1)
    };
    let sizes: Vec<i64> = sent_per_run
        .iter()
        .map(|r| (r.1 - r.0 + 1) as i64)
        .collect();
    let got: Vec<i64> = sent_per_run.iter().map(|r| per_run(*r)).collect();
    assert!(
        got[0] > 0 && got[0] < sizes[0],
        "torn tail: last batch lost {got:?}"
    );
    assert!(
        got[1] > 0 && got[1] < sizes[1],
        "flipped byte: one batch lost {got:?}"
    );
    assert_eq!(
        got[2], sizes[2],
        "garbage after the last record costs nothing"
    );
    assert_eq!(
        q.scalar("select count() - count_distinct(bytes) from corrupt_flows"),
        Some(0)
    );
}

/// A disk buffer too small for the outage, under each `when_full`: the rows written, the rows
/// the queue shed and the rows the buffer dropped add up to the rows decoded.
#[test]
fn a_full_buffer_accounts_for_every_row_under_each_policy() {
    for policy in ["block", "drop_newest", "drop_oldest"] {
        let mut q = QuestDb::owned(&format!("full-{policy}-questdb"));
        let state = nmsd_acceptance::scratch(&format!("full-{policy}-state"));
        let prefix = format!("full_{policy}_");
        let opts = NmsdOptions {
            sink_inputs: Some(vec!["\"netflow\"".into()]),
            ..options(
                &q.q,
                &prefix,
                &state,
                &format!(
                    "queue_max_bytes = \"8MiB\"\nbuffer = {{ type = \"disk\", max_size = \"16MiB\", \
                     when_full = \"{policy}\", fsync = \"never\" }}\n"
                ),
            )
        };
        let mut nmsd = Nmsd::start(&format!("full-{policy}"), &opts);
        nmsd.wait_metric("nmsd_sink_up", &[], 1.0, Duration::from_secs(30));
        q.stop();
        // ~300,000 flows: about twice what 16 MiB of segments hold.
        let mut exporter = Exporter::new(nmsd.flow_port);
        exporter.stream(3000, 5, |_| {});
        let decoded = nmsd.wait_metric(
            "nmsd_flow_records_decoded_total",
            &[],
            exporter.sent as f64,
            Duration::from_secs(60),
        );
        // Let the writer settle, then bring QuestDB back and let everything drain.
        std::thread::sleep(Duration::from_secs(2));
        q.start();
        nmsd_acceptance::wait_for(Duration::from_secs(120), || {
            (nmsd.metric("nmsd_buffer_records", &[]) == 0.0
                && nmsd.metric("nmsd_sink_queue_bytes", &[]) == 0.0)
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{policy}: drains: buffer records {} backlog {}, sink queue bytes {}; log:\n{}",
                nmsd.metric("nmsd_buffer_records", &[]),
                nmsd.metric("nmsd_buffer_backlog_records", &[]),
                nmsd.metric("nmsd_sink_queue_bytes", &[]),
                nmsd.log()
            )
        });
        let queue_dropped =
            nmsd.metric("nmsd_sink_queue_dropped_rows_total", &["stream=\"flows\""]);
        let buffer_dropped = nmsd.metric("nmsd_buffer_dropped_rows_total", &[]);
        assert!(nmsd.stop().success(), "{}", nmsd.log());
        let (count, distinct, _) = flows_totals(&q.q, &format!("{prefix}flows"));
        println!(
            "{policy}: decoded {decoded}, written {count}, queue shed {queue_dropped}, \
             buffer dropped {buffer_dropped}"
        );
        assert_eq!(count, distinct, "{policy}: no duplicates");
        assert_eq!(
            count as f64 + queue_dropped + buffer_dropped,
            decoded,
            "{policy}: written + shed + dropped = decoded"
        );
        assert!(
            queue_dropped + buffer_dropped > 0.0,
            "{policy}: the buffer was too small"
        );
        match policy {
            "block" => assert_eq!(buffer_dropped, 0.0, "block drops nothing itself"),
            _ => assert!(buffer_dropped > 0.0, "{policy} dropped in the buffer"),
        }
    }
}

/// With QuestDB down, nmsd's memory stays within its queue bound, the disk buffer's in-memory
/// cache and a constant, however long the outage: the backlog goes to disk.
#[test]
fn memory_stays_bounded_through_a_long_outage() {
    let secs = env_secs("NMSD_RSS_SECS", 30);
    let state = nmsd_acceptance::scratch("rss-state");
    let dead = format!("http://127.0.0.1:{}", nmsd_acceptance::free_tcp_port());
    let mut nmsd = Nmsd::start(
        "rss",
        &NmsdOptions {
            questdb: Some(dead),
            state_dir: Some(state),
            sink_extra: "queue_max_bytes = \"64MiB\"\nshutdown_timeout = \"1s\"\n".into(),
            ..NmsdOptions::default()
        },
    );
    let mut exporter = Exporter::new(nmsd.flow_port);
    // Baseline after start-up.
    exporter.stream(500, 2, |_| {});
    let base = nmsd.proc_status_kib("VmRSS").unwrap_or(0);
    exporter.stream(env_secs("NMSD_RSS_RATE", 2000), secs, |_| {});
    let hwm = nmsd.proc_status_kib("VmHWM").unwrap_or(u64::MAX);
    let on_disk = nmsd.metric("nmsd_buffer_bytes", &[]);
    let bound_kib = base + (64 << 10) + (32 << 10) + (64 << 10);
    println!(
        "rss: {} flows over {secs}s, baseline {base} KiB, peak {hwm} KiB, on disk {on_disk} \
         bytes, bound {bound_kib} KiB",
        exporter.sent
    );
    assert!(
        on_disk > (64u64 << 20) as f64,
        "the outage outgrew the queue bound: {on_disk} bytes on disk"
    );
    assert!(
        hwm <= bound_kib,
        "peak RSS {hwm} KiB exceeds baseline + queue_max_bytes + 32 MiB cache + 64 MiB"
    );
    nmsd.kill();
}
