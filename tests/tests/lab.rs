//! Issue 14 item 5: `nmsd lab` runs the daemon with a simulated network. Checked with real
//! peers: QuestDB holds flows of its three exporters and SNMP rows of its three routers
//! within seconds, net-snmp's `snmpbulkwalk`/`snmpget` read the agents' IF-MIB, and an
//! uplink's octet counter matches the bytes of the flows that crossed it.

use std::process::{Command, Stdio};
use std::time::Duration;

use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::{free_tcp_port, free_udp_port, require, scratch, terminate, wait_for};

#[test]
fn lab_shows_flows_and_interface_counters_that_follow_them() {
    let q = QuestDb::shared();
    let dir = scratch("lab");
    let control = free_tcp_port();
    let agent_port = free_udp_port();
    let log = std::fs::File::create(dir.join("nmsd.log")).expect("log");
    let child = Command::new(nmsd_acceptance::nmsd::binary())
        .arg("lab")
        .args(["--questdb", &q.url()])
        .args(["--control", &format!("127.0.0.1:{control}")])
        .args(["--flows", &format!("127.0.0.1:{}", free_udp_port())])
        .args(["--agent-port", &agent_port.to_string()])
        .args(["--rate", "600"])
        .arg("--dir")
        .arg(&dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("nmsd lab starts");
    let read_log = || std::fs::read_to_string(dir.join("nmsd.log")).unwrap_or_default();
    // Killed if an assertion fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);

    // Flows of all three exporters reach QuestDB within seconds.
    let exporters = wait_for(Duration::from_secs(30), || {
        let n = q.scalar("select count_distinct(exporter) from flows")?;
        (n == 3).then_some(n)
    });
    assert!(exporters.is_some(), "log:\n{}", read_log());
    let protocols = q.scalar("select count_distinct(protocol) from flows");
    assert!(protocols >= Some(3), "a mix of protocols: {protocols:?}");
    let devices = wait_for(Duration::from_secs(30), || {
        let n = q.scalar("select count_distinct(device) from snmp_interface")?;
        (n == 3).then_some(n)
    });
    assert!(devices.is_some(), "log:\n{}", read_log());

    // net-snmp reads the agents.
    let agent = format!("127.0.0.11:{agent_port}");
    let walk = Command::new(require("snmpbulkwalk"))
        .args([
            "-v2c",
            "-c",
            "public",
            "-On",
            "-Oq",
            &agent,
            "1.3.6.1.2.1.31.1.1.1.1",
        ])
        .output()
        .expect("snmpbulkwalk runs");
    let names = String::from_utf8_lossy(&walk.stdout);
    assert!(
        names.contains("ge-0/0/0") && names.lines().count() == 4,
        "ifName of lab-edge1: {names}"
    );

    // The uplink's ifHCInOctets counts exactly the bytes of the flows that came in through it.
    // A flow is counted when it is made, and ends (its row's ts) at most 1 s before that: so
    // the counter read between t0 and t1 lies between the stored bytes of flows ending by
    // t0 - 1 s and those ending by t1.
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    };
    let t0 = now_us();
    let get = Command::new(require("snmpget"))
        .args([
            "-v2c",
            "-c",
            "public",
            "-On",
            "-Oqv",
            &agent,
            "1.3.6.1.2.1.31.1.1.1.6.1",
        ])
        .output()
        .expect("snmpget runs");
    let t1 = now_us();
    let counter: i64 = String::from_utf8_lossy(&get.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("ifHCInOctets.1: {e}: {get:?}"));
    std::thread::sleep(Duration::from_secs(3));
    q.wait_applied("flows", Duration::from_secs(30));
    let stored_until = |us: i64| {
        q.scalar(&format!(
            "select sum(bytes) from flows where exporter = '127.0.0.11' and in_if = 1 \
             and ts <= cast({us} as timestamp)"
        ))
        .unwrap_or(0)
    };
    let (low, high) = (stored_until(t0 - 1_005_000), stored_until(t1 + 5_000));
    eprintln!("uplink ifHCInOctets {counter}; stored flow bytes {low}..{high}");
    assert!(
        low <= counter && counter <= high && low > 0,
        "uplink counter {counter} outside the stored flows' {low}..{high}"
    );

    assert!(terminate(&mut child.0, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let log = read_log();
    assert_eq!(
        log.lines().filter(|l| l.contains("new exporter")).count(),
        3,
        "{log}"
    );
}
