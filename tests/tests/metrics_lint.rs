//! `/metrics` passes Prometheus' own linter (`promtool check metrics`) with every source
//! configured and traffic on each: NetFlow from a socket, SNMP polling of a real snmpd, traps
//! from net-snmp's `snmptrap`. Also: `nmsd_build_info` names the compiler, and a daemon without
//! SNMP lists no SNMP series.

use std::io::Write as _;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::snmpd::Snmpd;
use nmsd_testkit::encode::{self, V5Header};

/// `promtool check metrics` on `body`: Ok, or its complaints.
fn promtool_check(body: &str) -> Result<(), String> {
    let promtool = nmsd_acceptance::require("promtool");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The nmsd_* and process_* metric names an expression text mentions (recorded series, named
/// level:metric:operation, have colons and are left out).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for (start, _) in text.match_indices(['n', 'p']) {
        let rest = &text[start..];
        if !(rest.starts_with("nmsd_") || rest.starts_with("process_")) {
            continue;
        }
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if !name.contains(':') {
            names.insert(name);
        }
    }
    names
}

fn send_v5(port: u16) {
    let recs = encode::sample_records(10, false, 1_767_225_600_000);
    let d = encode::v5_datagram(
        &V5Header {
            sys_uptime_ms: 1_000_000,
            unix_secs: 1_767_225_660,
            ..V5Header::default()
        },
        &recs,
    );
    let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    s.send_to(&d, ("127.0.0.1", port)).expect("send");
}

#[test]
fn promtool_accepts_metrics_with_every_source_configured() {
    let agent = Snmpd::start("lint-snmpd");
    let trap_port = nmsd_acceptance::free_udp_port();
    let secrets = nmsd_acceptance::scratch("lint-secrets");
    let community = secrets.join("c");
    std::fs::write(&community, "public").expect("secret file");
    let extra = format!(
        r#"
[sources.snmp]
type = "snmp"
[sources.snmp.defaults]
interval = "5s"
timeout = "1s"
retries = 1

[[sources.snmp.profiles]]
name = "v2"
version = "2c"
community = {{ file = "{c}" }}

[[sources.snmp.devices]]
name = "lint-agent"
address = "127.0.0.1"
port = {port}
profile = "v2"
prometheus = true
modules = ["system", "interfaces"]

[sources.traps]
type = "snmp_traps"
listen = ["127.0.0.1:{trap_port}"]
communities = [{{ name = "lab", community = {{ file = "{c}" }} }}]

[sources.capture]
type = "pcap_file"
path = "{pcap}"

[sources.sflow]
type = "sflow"
listen = "127.0.0.1:{sflow_port}"
"#,
        c = community.display(),
        port = agent.port,
        pcap = nmsd_acceptance::pcap(1, 100).path.display(),
        sflow_port = nmsd_acceptance::free_udp_port(),
    );
    // The sink points at a port nothing listens on: its series are there all the same, and
    // no JVM is needed for a lint.
    let dead = format!("http://127.0.0.1:{}", nmsd_acceptance::free_tcp_port());
    let mut nmsd = Nmsd::start(
        "metrics-lint",
        &NmsdOptions {
            questdb: Some(dead),
            extra,
            ..NmsdOptions::default()
        },
    );
    send_v5(nmsd.flow_port);
    let out = Command::new(nmsd_acceptance::require("snmptrap"))
        .args(["-m", "", "-v", "2c", "-c", "public"])
        .arg(format!("127.0.0.1:{trap_port}"))
        .args(["", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2"])
        .output()
        .expect("snmptrap runs");
    assert!(out.status.success(), "snmptrap failed: {out:?}");
    // A wrong community: the dropped-traps counter has a series too.
    let _ = Command::new(nmsd_acceptance::require("snmptrap"))
        .args(["-m", "", "-v", "2c", "-c", "wrong"])
        .arg(format!("127.0.0.1:{trap_port}"))
        .args(["", "1.3.6.1.6.3.1.1.5.3"])
        .output();
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        10.0,
        Duration::from_secs(10),
    );
    nmsd.wait_metric(
        "nmsd_snmp_traps_received_total",
        &[],
        1.0,
        Duration::from_secs(10),
    );
    nmsd.wait_metric(
        "nmsd_snmp_polls_total",
        &["outcome=\"ok\""],
        1.0,
        Duration::from_secs(30),
    );
    // Interface gauges need two polls (rates).
    nmsd.wait_metric(
        "nmsd_snmp_polls_total",
        &["outcome=\"ok\""],
        2.0,
        Duration::from_secs(30),
    );
    // The capture file is read to its end.
    nmsd.wait_metric(
        "nmsd_packet_frames_total",
        &[],
        1.0,
        Duration::from_secs(30),
    );
    let (_, body) = nmsd.get("/metrics").expect("metrics endpoint answers");
    for family in [
        "nmsd_packet_flows_total",
        "nmsd_flow_table_evicted_total",
        "nmsd_sflow_datagrams_total",
        "nmsd_snmp_traps_received_total",
        "nmsd_snmp_device_up",
        "nmsd_flow_records_decoded_total",
        "nmsd_sink_up",
    ] {
        assert!(body.contains(family), "{family} in the scrape:\n{body}");
    }
    if let Err(problems) = promtool_check(&body) {
        panic!("promtool check metrics failed:\n{problems}\n--- scrape ---\n{body}");
    }
    let rustc = body
        .lines()
        .find(|l| l.starts_with("nmsd_build_info{"))
        .unwrap_or_default()
        .to_string();
    assert!(
        rustc.contains("rustc=\"rustc 1.") || rustc.contains("rustc=\"1."),
        "build_info names the compiler: {rustc}"
    );
    let commit = rustc
        .split("commit=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    assert!(
        commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "build_info names the git commit: {rustc}"
    );
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(&format!("{family} "))),
            "{family} in the scrape:\n{body}"
        );
    }
    // Every series the shipped alerting and recording rules read is one nmsd exports.
    let rules =
        std::fs::read_to_string(nmsd_acceptance::workspace().join("prometheus/nmsd.rules.yml"))
            .expect("prometheus/nmsd.rules.yml");
    for name in metric_names(&rules) {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "prometheus/nmsd.rules.yml reads {name}, which nmsd does not export:\n{body}"
        );
    }
    // Rows queued for the unreachable sink are lost at shutdown: the exit code is not the
    // subject here.
    let _ = nmsd.stop();
}

#[test]
fn promtool_accepts_metrics_without_snmp_and_they_list_no_snmp_series() {
    let dead = format!("http://127.0.0.1:{}", nmsd_acceptance::free_tcp_port());
    let mut nmsd = Nmsd::start(
        "metrics-no-snmp",
        &NmsdOptions {
            questdb: Some(dead),
            ..NmsdOptions::default()
        },
    );
    let (_, body) = nmsd.get("/metrics").expect("metrics endpoint answers");
    let snmp: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("snmp"))
        .collect();
    assert!(snmp.is_empty(), "SNMP series without SNMP: {snmp:#?}");
    if let Err(problems) = promtool_check(&body) {
        panic!("promtool check metrics failed:\n{problems}\n--- scrape ---\n{body}");
    }
    let _ = nmsd.stop();
}
