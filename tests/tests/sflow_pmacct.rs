//! A real sFlow exporter into nmsd's `sflow` source: pmacctd's `sfprobe` plugin samples every
//! packet of a pcap (rate 1) and exports sFlow v5. The test keeps the datagrams, replays them to
//! nmsd, and writes them to a pcap for tshark's sFlow dissector. nmsd's stored flows must equal
//! tshark's reading of the same datagrams: samples, packets (the sum of sampling rates) and
//! IP-level bytes of the sampled headers (issue 13 item 5). nfdump's sFlow collector `sfcapd`
//! receives the same datagrams: per protocol its flows and packets equal nmsd's, and its bytes
//! are the frame lengths (IP + 14-byte Ethernet header + 4-byte FCS as pmacctd reports them)
//! where nmsd counts IP bytes, as NetFlow does.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nmsd_acceptance::nfdump::{Nfcapd, Totals, totals_by_protocol};
use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::{free_udp_port, pcap, require, scratch};

const SEED: u64 = 20261208;
const SESSIONS: u64 = 1_000;

/// Datagrams pmacctd's sfprobe exports for `pcap`, sampling every packet.
fn pmacct_export(dir: &Path, pcap: &Path) -> Vec<Vec<u8>> {
    let pmacctd = require("pmacctd");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let conf = dir.join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\nplugins: sfprobe\n\
             sfprobe_receiver: 127.0.0.1:{port}\nsfprobe_agentip: 192.0.2.77\nsampling_rate: 1\n",
            pcap.display()
        ),
    )
    .expect("pmacctd.conf");
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        // Until three quiet seconds after the first datagram (or none within the timeout).
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    });
    // pmacctd exits (status 1, "no more plugins active") at the end of the file.
    let out = Command::new(pmacctd)
        .arg("-f")
        .arg(&conf)
        .output()
        .expect("pmacctd runs");
    let got = receiver.join().expect("receiver");
    assert!(
        !got.is_empty(),
        "pmacctd exported nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    got
}

/// The datagrams as a raw-IPv4 pcap (UDP to port 6343, which tshark reads as sFlow).
fn write_pcap(path: &Path, datagrams: &[Vec<u8>]) {
    let mut f = 0xA1B2_C3D4u32.to_le_bytes().to_vec();
    f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&65_535u32.to_le_bytes());
    f.extend_from_slice(&228u32.to_le_bytes()); // LINKTYPE_IPV4
    for (i, d) in datagrams.iter().enumerate() {
        let total = 28 + d.len();
        f.extend_from_slice(&(1_767_225_600 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        f.extend_from_slice(&6343u16.to_be_bytes());
        f.extend_from_slice(&6343u16.to_be_bytes());
        f.extend_from_slice(&((8 + d.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(d);
    }
    std::fs::write(path, f).expect("write pcap");
}

/// tshark's totals over the datagrams: (flow samples, sum of sampling rates, IP bytes of the
/// sampled headers).
fn tshark_totals(pcap: &Path) -> (i64, i64, i64) {
    let out = Command::new(require("tshark"))
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args([
            "-e",
            "sflow.flow_sample.sampling_rate",
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
    let nums = |s: &str| -> Vec<i64> {
        s.split(',')
            .filter_map(|v| v.trim().parse::<i64>().ok())
            .collect()
    };
    let (mut samples, mut packets, mut bytes) = (0, 0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let rates = nums(f.next().unwrap_or(""));
        let v4 = nums(f.next().unwrap_or(""));
        let v6 = nums(f.next().unwrap_or(""));
        samples += rates.len() as i64;
        packets += rates.iter().sum::<i64>();
        // The first IPv4 length is the datagram's own header, not a sampled packet.
        bytes += v4.iter().skip(1).sum::<i64>() + v6.iter().map(|l| l + 40).sum::<i64>();
    }
    (samples, packets, bytes)
}

#[test]
fn pmacct_sfprobe_into_nmsd_matches_tshark_and_sfcapd() {
    let q = QuestDb::shared();
    let traffic = pcap(SEED, SESSIONS);
    let dir = scratch("sflow-pmacct");
    let datagrams = pmacct_export(&dir, &traffic.path);
    let export = dir.join("sflow.pcap");
    write_pcap(&export, &datagrams);
    let (samples, packets, bytes) = tshark_totals(&export);
    assert!(samples > 1000, "tshark read {samples} flow samples");

    let port = free_udp_port();
    let prefix = "sfl_";
    let mut nmsd = Nmsd::start(
        "sflow-pmacct",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: format!(
                "[sources.sflow]\ntype = \"sflow\"\nlisten = \"127.0.0.1:{port}\"\n\
                 receive_buffer = \"8MiB\"\n"
            ),
            rollup_inputs: vec!["\"netflow\"".into(), "\"sflow\"".into()],
            ..NmsdOptions::default()
        },
    );
    let sfcapd = Nfcapd::start_program("sfcapd", "sfcapd-pmacct");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for (i, d) in datagrams.iter().enumerate() {
        tx.send_to(d, ("127.0.0.1", port)).expect("send");
        tx.send_to(d, ("127.0.0.1", sfcapd.port)).expect("send");
        if i % 64 == 63 {
            // Paced: the point is decoding, not the socket buffer.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let got = nmsd.wait_metric(
        "nmsd_sflow_flow_samples_total",
        &[],
        samples as f64,
        Duration::from_secs(30),
    );
    assert_eq!(got as i64, samples, "flow samples; log:\n{}", nmsd.log());
    assert_eq!(
        nmsd.metric("nmsd_sflow_flow_samples_undecoded_total", &[]),
        0.0
    );
    assert_eq!(
        nmsd.metric("nmsd_sflow_datagrams_malformed_total", &[]),
        0.0
    );
    assert_eq!(
        nmsd.metric("nmsd_sflow_datagrams_lost_total", &[]),
        0.0,
        "pmacctd's sequence has no gap"
    );
    let status = nmsd.stop();
    assert!(
        status.success(),
        "nmsd exit: {status:?}; log:\n{}",
        nmsd.log()
    );

    let flows = format!("{prefix}flows");
    q.wait_applied(&flows, Duration::from_secs(60));
    let rows = q.query(&format!(
        "select count(), sum(packets), sum(bytes), count_distinct(exporter), min(source), \
         max(sampling_interval) from {flows} where version = 'sflow'"
    ));
    let r = rows.first().cloned().unwrap_or_default();
    let n = |i: usize| r.get(i).and_then(|v| v.as_i64());
    assert_eq!(
        (n(0), n(1), n(2)),
        (Some(samples), Some(packets), Some(bytes)),
        "QuestDB vs tshark: samples, packets, bytes"
    );
    assert_eq!(n(3), Some(1), "one agent");
    // The roll-up, run on the sFlow source's thread, sums to the same.
    let rollup = format!("{prefix}flows_1m");
    q.wait_applied(&rollup, Duration::from_secs(60));
    let sums = q.query(&format!(
        "select sum(flows), sum(packets), sum(bytes) from {rollup} where exporter = '192.0.2.77'"
    ));
    let sums = sums.first().cloned().unwrap_or_default();
    let m = |i: usize| sums.get(i).and_then(|v| v.as_i64());
    assert_eq!(
        (m(0), m(1), m(2)),
        (Some(samples), Some(packets), Some(bytes)),
        "roll-up vs tshark"
    );
    assert_eq!(r.get(4).and_then(|v| v.as_str()), Some("sflow"));
    assert_eq!(n(5), Some(1), "sampling rate 1");
    // sfcapd's reading of the same datagrams, per protocol.
    let reference = totals_by_protocol(&sfcapd.stop(), None);
    let ours: std::collections::BTreeMap<u8, Totals> = q
        .query(&format!(
            "select protocol, count(), sum(packets), sum(bytes) from {flows} \
             where version = 'sflow' group by protocol order by protocol"
        ))
        .into_iter()
        .map(|r| {
            let n = |i: usize| r.get(i).and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
            (
                n(0) as u8,
                Totals {
                    flows: n(1),
                    packets: n(2),
                    // Frame bytes, as sfcapd counts them: 18 bytes of Ethernet per packet.
                    bytes: n(3) + 18 * n(2),
                },
            )
        })
        .collect();
    assert_eq!(ours, reference, "nmsd vs sfcapd/nfdump per protocol");
    let agent = q.query(&format!(
        "select exporter from {flows} where version = 'sflow' limit 1"
    ));
    assert_eq!(
        agent
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_str()),
        Some("192.0.2.77")
    );
}
