//! softflowd exports a pcap with known flows to nmsd and to nfcapd; flow, packet and byte totals
//! per protocol, per IP version and per exporter in QuestDB (raw and roll-up tables) must equal
//! what nfdump decodes from the same export, and the pcap's ground truth.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use nmsd_acceptance::nfdump::{Nfcapd, Totals, totals_by_protocol};
use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::{pcap, softflowd_export};

/// The exports are bursts on loopback; running two at once on a 2-core machine would measure
/// the machine, not nmsd.
static SERIAL: Mutex<()> = Mutex::new(());

const SEED: u64 = 20261125;
const SESSIONS: u64 = 10_000;

fn questdb_totals(q: &QuestDb, sql: &str) -> BTreeMap<u8, Totals> {
    q.query(sql)
        .into_iter()
        .map(|r| {
            let n = |i: usize| r.get(i).and_then(|v| v.as_i64()).unwrap_or(-1);
            (
                n(0) as u8,
                Totals {
                    flows: n(1) as u64,
                    packets: n(2) as u64,
                    bytes: n(3) as u64,
                },
            )
        })
        .collect()
}

fn sum(t: &BTreeMap<u8, Totals>) -> Totals {
    let mut s = Totals::default();
    for v in t.values() {
        s += *v;
    }
    s
}

fn check_version(version: u8) {
    check(version, "ring");
}

/// `receive` is the `[pipeline] receive` mode: "ring" (the default) or "inline".
fn check(version: u8, receive: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = QuestDb::shared();
    let traffic = pcap(SEED, SESSIONS);
    let prefix = format!("sf{version}_{receive}_");
    let mut nmsd = Nmsd::start(
        &format!("flows-v{version}-{receive}"),
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.clone(),
            extra: format!("[pipeline]\nreceive = \"{receive}\"\n"),
            ..NmsdOptions::default()
        },
    );

    // The reference: nfcapd receives the same export, nfdump decodes it.
    let nfcapd = Nfcapd::start(&format!("nfcapd-v{version}"));
    softflowd_export(&traffic.path, nfcapd.port, version);
    let nf_dir = nfcapd.stop();
    let want = totals_by_protocol(&nf_dir, None);
    let want6 = totals_by_protocol(&nf_dir, Some("inet6"));
    let total = sum(&want);
    assert!(total.flows > 1000, "nfdump decoded too few flows: {want:?}");

    softflowd_export(&traffic.path, nmsd.flow_port, version);
    let label = match version {
        5 => "version=\"v5\"",
        9 => "version=\"v9\"",
        _ => "version=\"ipfix\"",
    };
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[label],
        total.flows as f64,
        Duration::from_secs(60),
    );
    assert_eq!(
        decoded as u64,
        total.flows,
        "records decoded; log:\n{}",
        nmsd.log()
    );
    // Nothing lost on the way, by every counter that could show it.
    for m in [
        "nmsd_flow_socket_kernel_drops_total",
        "nmsd_ring_dropped_datagrams_total",
        "nmsd_flow_sequence_lost_flows_total",
        "nmsd_flow_sequence_lost_datagrams_total",
        "nmsd_flow_sequence_resets_total",
        "nmsd_flow_datagrams_malformed_total",
        "nmsd_sink_queue_dropped_rows_total",
    ] {
        assert_eq!(nmsd.metric(m, &[]), 0.0, "{m} must be 0");
    }
    // SIGTERM: drain, flush roll-ups and the sink, exit 0.
    let status = nmsd.stop();
    assert!(
        status.success(),
        "nmsd exit: {status:?}; log:\n{}",
        nmsd.log()
    );

    let flows = format!("{prefix}flows");
    let rollup = format!("{prefix}flows_1m");
    q.wait_applied(&flows, Duration::from_secs(60));
    q.wait_applied(&rollup, Duration::from_secs(60));

    let raw = questdb_totals(
        q,
        &format!(
            "select protocol, count(), sum(packets), sum(bytes) from {flows} \
             group by protocol order by protocol"
        ),
    );
    assert_eq!(raw, want, "raw flows table vs nfdump, per protocol");
    let raw6 = questdb_totals(
        q,
        &format!(
            "select protocol, count(), sum(packets), sum(bytes) from {flows} \
             where src_ipv6 is not null group by protocol order by protocol"
        ),
    );
    assert_eq!(raw6, want6, "IPv6 flows vs nfdump 'inet6'");
    let rolled = questdb_totals(
        q,
        &format!(
            "select protocol, sum(flows), sum(packets), sum(bytes) from {rollup} \
             group by protocol order by protocol"
        ),
    );
    assert_eq!(rolled, want, "roll-up table vs nfdump, per protocol");
    // The pcap's ground truth: what the packets really were, per IP version and protocol
    // (NetFlow v5 cannot carry IPv6).
    for (key, proto, v6) in [
        ("ipv4/tcp", 6, false),
        ("ipv4/udp", 17, false),
        ("ipv4/icmp", 1, false),
        ("ipv6/tcp", 6, true),
        ("ipv6/udp", 17, true),
        ("ipv6/icmp6", 58, true),
    ] {
        if version == 5 && v6 {
            continue;
        }
        let t = &traffic.truth["by_proto"][key];
        let want = (
            t["flows"].as_i64(),
            t["packets"].as_i64(),
            t["bytes"].as_i64(),
        );
        let family = if v6 {
            "src_ipv6 is not null"
        } else {
            "src_ipv4 is not null"
        };
        let got = q.query(&format!(
            "select count(), sum(packets), sum(bytes) from {flows} where protocol = {proto} and {family}"
        ));
        let row = got.first().cloned().unwrap_or_default();
        let got = (
            row.first().and_then(|v| v.as_i64()),
            row.get(1).and_then(|v| v.as_i64()),
            row.get(2).and_then(|v| v.as_i64()),
        );
        assert_eq!(got, want, "{key}: QuestDB vs the pcap's ground truth");
    }
    let per_exporter = q.query(&format!(
        "select exporter, count(), sum(packets), sum(bytes) from {flows} group by exporter"
    ));
    assert_eq!(per_exporter.len(), 1, "one exporter: {per_exporter:?}");
    let row = &per_exporter[0];
    assert_eq!(row[0].as_str(), Some("127.0.0.1"));
    assert_eq!(
        (row[1].as_u64(), row[2].as_u64(), row[3].as_u64()),
        (Some(total.flows), Some(total.packets), Some(total.bytes)),
        "per-exporter totals"
    );
}

#[test]
fn netflow_v5_matches_nfdump() {
    check_version(5);
}

#[test]
fn netflow_v9_matches_nfdump() {
    check_version(9);
}

#[test]
fn ipfix_matches_nfdump() {
    check_version(10);
}

/// Run to completion: each socket's thread decodes and rolls up; the same totals.
#[test]
fn netflow_v9_matches_nfdump_with_inline_receive() {
    check(9, "inline");
}
