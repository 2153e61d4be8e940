//! The same pcap through nmsd's `pcap_file` source and through `softflowd -r` exporting NetFlow
//! v9 into nmsd: per 5-tuple, the flows, packets and bytes stored in QuestDB agree exactly, and
//! tshark's reading of the pcap agrees with the totals (issue 13).
//!
//! softflowd applies no timeouts with `-r` (flows leave at EOF, docs/peers.md), so nmsd's
//! source is given timeouts longer than the capture: both then report one flow per 5-tuple and
//! direction, and even the flow counts must match.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::{pcap, require, softflowd_export};

const SEED: u64 = 20261207;
const SESSIONS: u64 = 3_000;

type Key = (String, String, i64, i64, i64);
type Totals = (i64, i64, i64);

/// Per 5-tuple (src, dst, src port, dst port, protocol): flows, packets, bytes, of one version.
fn per_tuple(q: &QuestDb, table: &str, version: &str) -> BTreeMap<Key, Totals> {
    let rows = q.query(&format!(
        "select coalesce(src_ipv4::string, src_ipv6::string), \
         coalesce(dst_ipv4::string, dst_ipv6::string), src_port, dst_port, protocol, \
         count(), sum(packets), sum(bytes) from {table} where version = '{version}' \
         group by 1, 2, 3, 4, 5"
    ));
    rows.into_iter()
        .map(|r| {
            let s = |i: usize| r.get(i).and_then(|v| v.as_str()).unwrap_or("?").to_string();
            let n = |i: usize| r.get(i).and_then(|v| v.as_i64()).unwrap_or(-1);
            ((s(0), s(1), n(2), n(3), n(4)), (n(5), n(6), n(7)))
        })
        .collect()
}

/// tshark's count of IP packets and their IP-level bytes (IPv4 total length, IPv6 payload
/// length + 40; the first IP header of each frame, not one quoted inside an ICMP error).
fn tshark_totals(pcap: &std::path::Path) -> (i64, i64) {
    let out = Command::new(require("tshark"))
        .arg("-r")
        .arg(pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "ip.len",
            "-e",
            "ipv6.plen",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut packets, mut bytes) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let v4 = f.next().unwrap_or("").trim();
        let v6 = f.next().unwrap_or("").trim();
        if let Ok(n) = v4.parse::<i64>() {
            packets += 1;
            bytes += n;
        } else if let Ok(n) = v6.parse::<i64>() {
            packets += 1;
            bytes += n + 40;
        }
    }
    (packets, bytes)
}

#[test]
fn pcap_source_matches_softflowd_per_five_tuple() {
    let q = QuestDb::shared();
    let traffic = pcap(SEED, SESSIONS);
    let want_flows = traffic.truth["total"]["flows"].as_i64().unwrap_or(-1);
    let prefix = "pkt_";
    let mut nmsd = Nmsd::start(
        "packets-vs-softflowd",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: format!(
                "[sources.capture]\ntype = \"pcap_file\"\npath = \"{}\"\n\
                 exporter = \"192.0.2.99\"\ninterface_index = 7\n\
                 active_timeout = \"1h\"\nidle_timeout = \"1h\"\ntcp_close_timeout = \"1h\"\n",
                traffic.path.display()
            ),
            // The roll-up runs on the pcap source's own thread as it does in the parse
            // workers for the NetFlow listener.
            rollup_inputs: vec!["\"netflow\"".into(), "\"capture\"".into()],
            ..NmsdOptions::default()
        },
    );
    softflowd_export(&traffic.path, nmsd.flow_port, 9);
    let built = nmsd.wait_metric(
        "nmsd_packet_flows_total",
        &["source=\"capture\""],
        want_flows as f64,
        Duration::from_secs(60),
    );
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &["version=\"v9\""],
        want_flows as f64,
        Duration::from_secs(60),
    );
    assert_eq!(
        (built as i64, decoded as i64),
        (want_flows, want_flows),
        "flows built from the pcap and decoded from softflowd; log:\n{}",
        nmsd.log()
    );
    // Frames are counted when the file is done.
    let want_packets = traffic.truth["total"]["packets"].as_f64().unwrap_or(-1.0);
    let frames = nmsd.wait_metric(
        "nmsd_packet_frames_total",
        &["source=\"capture\""],
        want_packets,
        Duration::from_secs(30),
    );
    assert_eq!(frames, want_packets, "frames read");
    assert_eq!(
        nmsd.metric("nmsd_packet_frames_malformed_total", &[]),
        0.0,
        "no malformed frame in a generated pcap"
    );
    assert!(
        nmsd.metric("nmsd_packet_tcp_syn_total", &["source=\"capture\""]) > 0.0,
        "SYNs counted"
    );
    let status = nmsd.stop();
    assert!(
        status.success(),
        "nmsd exit: {status:?}; log:\n{}",
        nmsd.log()
    );

    let flows = format!("{prefix}flows");
    q.wait_applied(&flows, Duration::from_secs(60));
    let ours = per_tuple(q, &flows, "packets");
    let softflowd = per_tuple(q, &flows, "v9");
    assert_eq!(ours.len() as i64, want_flows, "5-tuples built by nmsd");
    if ours != softflowd {
        let differ: Vec<_> = ours
            .iter()
            .filter(|(k, v)| softflowd.get(*k) != Some(*v))
            .take(10)
            .map(|(k, v)| format!("{k:?}: nmsd {v:?}, softflowd {:?}", softflowd.get(k)))
            .collect();
        let only_softflowd: Vec<_> = softflowd
            .keys()
            .filter(|k| !ours.contains_key(*k))
            .take(10)
            .collect();
        panic!(
            "per 5-tuple totals differ ({} of nmsd's, {} of softflowd's tuples); first \
             differences: {differ:#?}; only in softflowd's: {only_softflowd:?}",
            ours.len(),
            softflowd.len()
        );
    }

    // tshark on the pcap, and the generator's ground truth.
    let (packets, bytes) = ours.values().fold((0, 0), |(p, b), v| (p + v.1, b + v.2));
    assert_eq!(
        tshark_totals(&traffic.path),
        (packets, bytes),
        "tshark vs nmsd"
    );
    let t = &traffic.truth["total"];
    assert_eq!(
        (t["packets"].as_i64(), t["bytes"].as_i64()),
        (Some(packets), Some(bytes)),
        "ground truth vs nmsd"
    );

    // The roll-up of each path sums to what that path stored as flows: nmsd's packet flows
    // under the configured exporter, softflowd's under the address it sent from.
    let rollup = format!("{prefix}flows_1m");
    q.wait_applied(&rollup, Duration::from_secs(60));
    for (exporter, version) in [("192.0.2.99", "packets"), ("127.0.0.1", "v9")] {
        let sums = |table: &str, flows: &str, filter: &str| {
            q.query(&format!(
                "select {flows}, sum(packets), sum(bytes) from {table} where exporter = \
                 '{exporter}'{filter}"
            ))
            .first()
            .map(|r| (0..3).map(|i| r[i].as_i64()).collect::<Vec<_>>())
        };
        let flows_side = sums(&flows, "count()", &format!(" and version = '{version}'"));
        assert_eq!(
            sums(&rollup, "sum(flows)", ""),
            flows_side,
            "{exporter}: roll-up vs flows ({version})"
        );
        assert_eq!(
            flows_side.and_then(|v| v[0]),
            Some(want_flows),
            "{exporter}: every flow"
        );
    }

    // The capture's identity: source id, configured exporter and interface, version.
    let ident = q.query(&format!(
        "select source, exporter, in_if, count() from {flows} where version = 'packets' \
         group by source, exporter, in_if"
    ));
    assert_eq!(ident.len(), 1, "one identity: {ident:?}");
    let r = &ident[0];
    assert_eq!(
        (r[0].as_str(), r[1].as_str(), r[2].as_i64(), r[3].as_i64()),
        (
            Some("capture"),
            Some("192.0.2.99"),
            Some(7),
            Some(want_flows)
        )
    );
}
