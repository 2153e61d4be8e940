//! Stopping against a QuestDB that is stopped: the process accepts connections (the kernel
//! does) but never answers, so every request hangs for `request_timeout`. nmsd must still exit
//! within `shutdown_timeout`, say in its log how many rows it dropped, and exit non-zero when
//! rows it had accepted were lost; with nothing to lose it exits 0, just as promptly. With a
//! disk buffer (the default) the rows stay on disk and the next start writes them.

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_testkit::encode::{self, V5Header};

const SHUTDOWN_TIMEOUT_SECS: u64 = 3;
/// Process exit, signal delivery and the test's 100 ms polling on top of the timeout.
const SLACK: Duration = Duration::from_millis(1500);

/// A listening socket nobody accepts on: what a SIGSTOPped QuestDB looks like to a client.
fn stopped_questdb() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    (l, url)
}

fn options(url: String, buffer: &str) -> NmsdOptions {
    NmsdOptions {
        questdb: Some(url),
        // Longer than shutdown_timeout, as by default (10 s each): a request in flight when
        // stopping begins must not extend the shutdown.
        sink_extra: format!(
            "shutdown_timeout = \"{SHUTDOWN_TIMEOUT_SECS}s\"\nrequest_timeout = \"20s\"\n\
             buffer = {{ type = \"{buffer}\" }}\n"
        ),
        ..NmsdOptions::default()
    }
}

/// SIGTERM, and check that stopping took no longer than `shutdown_timeout` (plus slack).
fn stop_within_the_timeout(nmsd: &mut Nmsd) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let status = nmsd.stop();
    let took = started.elapsed();
    let log = nmsd.log();
    assert!(
        took <= Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK,
        "shutdown took {took:?} against a {SHUTDOWN_TIMEOUT_SECS} s shutdown_timeout; log:\n{log}"
    );
    (status, log)
}

fn send_20_flows(port: u16) {
    let records = encode::sample_records(20, false, 1_767_225_600_000);
    let datagram = encode::v5_datagram(
        &V5Header {
            sys_uptime_ms: 1_000_000,
            unix_secs: 1_767_225_660,
            ..V5Header::default()
        },
        &records,
    );
    let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    s.send_to(&datagram, ("127.0.0.1", port)).expect("send");
}

#[test]
fn shutdown_with_rows_queued_for_a_stopped_questdb_honours_the_timeout_and_fails() {
    let (_questdb, url) = stopped_questdb();
    let mut nmsd = Nmsd::start("shutdown-lost", &options(url, "memory"));
    send_20_flows(nmsd.flow_port);
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        20.0,
        Duration::from_secs(10),
    );
    // The sink is stuck in its first request (creating the tables); the rows wait in its queue.
    std::thread::sleep(Duration::from_millis(500));

    let (status, log) = stop_within_the_timeout(&mut nmsd);
    assert!(
        !status.success(),
        "rows were lost, yet the exit status is {status}; log:\n{log}"
    );
    // 20 raw flows and at least one roll-up row.
    let lost: u64 = log
        .lines()
        .find_map(|l| {
            l.contains("were not written and are lost")
                .then(|| l.split("rows_lost=").nth(1))?
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("a log line names the rows lost; log:\n{log}"));
    assert!(lost >= 21, "rows lost {lost}; log:\n{log}");
}

#[test]
fn shutdown_with_nothing_queued_exits_zero_within_the_timeout() {
    let (_questdb, url) = stopped_questdb();
    let mut nmsd = Nmsd::start("shutdown-clean", &options(url, "memory"));
    // Let the sink get stuck in its first request.
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = stop_within_the_timeout(&mut nmsd);
    assert!(
        status.success(),
        "nothing was lost, yet the exit status is {status}; log:\n{log}"
    );
}

/// The same stuck sink with the disk buffer: the stop is as prompt, nothing is lost (exit 0),
/// and the next start, with a QuestDB that answers, writes the rows the stuck sink never did.
#[test]
fn a_stuck_sink_with_a_disk_buffer_stops_promptly_and_the_next_start_writes_its_rows() {
    let (_questdb, url) = stopped_questdb();
    let state = nmsd_acceptance::scratch("shutdown-disk-state");
    let mut nmsd = Nmsd::start(
        "shutdown-disk",
        &NmsdOptions {
            state_dir: Some(state.clone()),
            table_prefix: "stuck_".into(),
            ..options(url, "disk")
        },
    );
    send_20_flows(nmsd.flow_port);
    nmsd.wait_metric(
        "nmsd_buffer_appended_rows_total",
        &[],
        20.0,
        Duration::from_secs(10),
    );
    let (status, log) = stop_within_the_timeout(&mut nmsd);
    assert!(status.success(), "nothing was lost: {status}; log:\n{log}");

    let q = nmsd_acceptance::questdb::QuestDb::shared();
    let mut nmsd = Nmsd::start(
        "shutdown-disk-again",
        &NmsdOptions {
            questdb: Some(q.url()),
            state_dir: Some(state),
            table_prefix: "stuck_".into(),
            ..NmsdOptions::default()
        },
    );
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"stuck_flows\""],
        20.0,
        Duration::from_secs(30),
    );
    assert!(nmsd.stop().success());
    q.wait_applied("stuck_flows", Duration::from_secs(30));
    assert_eq!(q.scalar("select count() from stuck_flows"), Some(20));
}
