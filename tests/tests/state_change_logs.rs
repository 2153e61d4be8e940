//! Issue 14 item 3: every state change an operator cares about is one log line, with the real
//! binary and real peers: softflowd's exporter appearing, QuestDB going down and coming back,
//! the sink's full queue starting to drop, SNMP devices (real snmpd) answering, going down,
//! coming back and failing authentication, and the template cache restored at the next start.
//! Each line must appear exactly once, however many datagrams, polls and drops caused it.

use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::snmpd::Snmpd;
use nmsd_acceptance::{pcap, scratch, softflowd_export, wait_for};

/// Lines of `log` containing every one of `parts`, quotes removed (text logs quote string
/// fields: `device="flaky"` matches `device=flaky`).
fn lines_with(log: &str, parts: &[&str]) -> Vec<String> {
    log.lines()
        .map(|l| l.replace('"', ""))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// Wait until a line with every one of `parts` is in nmsd's log.
fn wait_line(nmsd: &Nmsd, parts: &[&str], timeout: Duration) {
    let seen = wait_for(timeout, || {
        (!lines_with(&nmsd.log(), parts).is_empty()).then_some(())
    });
    assert!(seen.is_some(), "no line with {parts:?} in:\n{}", nmsd.log());
}

#[test]
fn each_state_change_is_one_line() {
    let mut questdb = QuestDb::owned("questdb-logs");
    let healthy = Snmpd::start("snmpd-logs-healthy");
    let mut flaky = Snmpd::start("snmpd-logs-flaky");
    let flaky_port = flaky.port;
    let secrets = scratch("snmp-logs-secrets");
    let secret = |name: &str, value: &str| {
        let p = secrets.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("secret file");
        p.display().to_string()
    };
    let extra = format!(
        r#"
[sources.snmp]
type = "snmp"
[sources.snmp.defaults]
interval = "5s"
timeout = "500ms"
retries = 0

[[sources.snmp.profiles]]
name = "v2"
version = "2c"
community = {{ file = "{community}" }}

[[sources.snmp.profiles]]
name = "bad-auth"
version = "3"
user = "u_sha_aes"
auth = "sha"
auth_password = {{ file = "{bad}" }}
priv = "aes"
priv_password = {{ file = "{privacy}" }}

[[sources.snmp.devices]]
name = "healthy"
address = "127.0.0.1"
port = {healthy}
profile = "v2"

[[sources.snmp.devices]]
name = "flaky"
address = "127.0.0.1"
port = {flaky_port}
profile = "v2"

[[sources.snmp.devices]]
name = "wrong-auth"
address = "127.0.0.1"
port = {healthy}
profile = "bad-auth"
"#,
        community = secret("community", "public"),
        bad = secret("bad", "not-the-password"),
        privacy = secret("priv", "privpass-aes128"),
        healthy = healthy.port,
    );
    let state = scratch("logs-state");
    let opts = NmsdOptions {
        questdb: Some(questdb.q.url()),
        table_prefix: "logs_".into(),
        // A one-batch queue that drops: full as soon as the sink stalls.
        sink_extra: "queue_capacity = 1\nqueue_full_policy = \"drop\"\n".into(),
        retry: ("100ms".into(), "500ms".into()),
        extra,
        state_dir: Some(state.clone()),
        ..NmsdOptions::default()
    };
    let mut nmsd = Nmsd::start("logs", &opts);

    // Flows from softflowd (IPFIX, so there are templates to save): many datagrams, one
    // exporter, one line.
    let traffic = pcap(14, 2000);
    softflowd_export(&traffic.path, nmsd.flow_port, 10);
    wait_line(
        &nmsd,
        &["new exporter", "127.0.0.1"],
        Duration::from_secs(10),
    );
    wait_line(
        &nmsd,
        &["SNMP device answering", "device=flaky"],
        Duration::from_secs(15),
    );

    // QuestDB goes away while flows keep arriving: down once, drops start once.
    flaky.stop();
    questdb.stop();
    for _ in 0..3 {
        softflowd_export(&traffic.path, nmsd.flow_port, 10);
    }
    wait_line(
        &nmsd,
        &["QuestDB sink cannot write"],
        Duration::from_secs(15),
    );
    wait_line(
        &nmsd,
        &["sink questdb queue is full"],
        Duration::from_secs(15),
    );
    // The flaky agent has missed three polls (5 s apart) by now, or soon.
    wait_line(
        &nmsd,
        &["SNMP device down", "device=flaky"],
        Duration::from_secs(25),
    );

    // Both come back: one line each.
    questdb.start();
    let _flaky_again = Snmpd::start_on("snmpd-logs-flaky-2", flaky_port);
    wait_line(&nmsd, &["QuestDB reachable again"], Duration::from_secs(30));
    wait_line(
        &nmsd,
        &["SNMP device up again", "device=flaky"],
        Duration::from_secs(15),
    );
    assert!(nmsd.stop().success(), "log:\n{}", nmsd.log());
    let log = nmsd.log();

    for (what, parts) in [
        ("exporter appearing", &["new exporter", "127.0.0.1"][..]),
        ("sink down", &["QuestDB sink cannot write"][..]),
        ("sink back", &["QuestDB reachable again"][..]),
        ("queue starting to drop", &["queue is full: dropping"][..]),
        (
            "device answering",
            &["SNMP device answering", "device=healthy"][..],
        ),
        (
            "device answering",
            &["SNMP device answering", "device=flaky"][..],
        ),
        ("device down", &["SNMP device down", "device=flaky"][..]),
        ("device back", &["SNMP device up again", "device=flaky"][..]),
        (
            "failing authentication",
            &["SNMP device failing authentication", "device=wrong-auth"][..],
        ),
    ] {
        let found = lines_with(&log, parts);
        assert_eq!(found.len(), 1, "{what}: {found:#?}\nlog:\n{log}");
    }
    // Nothing else about these devices at info or above: no line per poll.
    for device in ["healthy", "flaky", "wrong-auth"] {
        let noisy: Vec<String> = lines_with(&log, &["SNMP device", &format!("device={device}")])
            .into_iter()
            .filter(|l| !l.contains("DEBUG"))
            .collect();
        let expected = match device {
            "flaky" => 3,
            _ => 1,
        };
        assert_eq!(noisy.len(), expected, "{device}: {noisy:#?}");
    }

    // The next start restores the templates the first one saved: one line.
    let mut again = Nmsd::start(
        "logs-again",
        &NmsdOptions {
            questdb: None,
            extra: String::new(),
            state_dir: Some(state),
            ..NmsdOptions::default()
        },
    );
    assert!(again.stop().success());
    let restored = lines_with(&again.log(), &["restored template cache"]);
    assert_eq!(restored.len(), 1, "{restored:#?}\n{}", again.log());
    assert!(
        !restored[0].contains("templates=0"),
        "templates were saved and restored: {restored:?}"
    );
}
