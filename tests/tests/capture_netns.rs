//! Live capture: a veth pair into a network namespace the test creates; UDP sent across it
//! arrives as flows in QuestDB, with the interface's address as exporter and its ifindex as
//! in_if, and the namespace's ICMP port-unreachable answers are counted (issue 13). Needs root
//! (namespaces, CAP_NET_RAW); skipped with a message otherwise.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;

/// The namespace and veth pair, removed on drop (deleting the namespace deletes the pair).
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace `name` with a veth pair: `outer` here as `net.1/30`, `inner` there as
    /// `net.2/30` (`net` is the first three octets; tests running side by side use their own).
    fn create(name: &str, outer: &str, inner: &str, net: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        let ns = Netns { name: name.into() };
        ip(&["link", "add", outer, "type", "veth", "peer", "name", inner]);
        ip(&["link", "set", inner, "netns", name]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", outer]);
        ip(&["link", "set", outer, "up"]);
        ip(&[
            "netns",
            "exec",
            name,
            "ip",
            "addr",
            "add",
            &format!("{net}.2/30"),
            "dev",
            inner,
        ]);
        ip(&["netns", "exec", name, "ip", "link", "set", inner, "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Whether the test runs as root (namespaces, CAP_NET_RAW); says it is skipped otherwise.
fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("capture_netns: skipped: needs root for network namespaces and CAP_NET_RAW");
    }
    root
}

#[test]
fn udp_across_a_veth_pair_arrives_as_flows() {
    if !root() {
        return;
    }
    let pid = std::process::id() % 100_000;
    let (outer, inner) = (format!("ncapa{pid}"), format!("ncapb{pid}"));
    let _ns = Netns::create(&format!("nmsd-cap-{pid}"), &outer, &inner, "10.213.0");
    let ifindex: i64 = std::fs::read_to_string(format!("/sys/class/net/{outer}/ifindex"))
        .expect("ifindex")
        .trim()
        .parse()
        .expect("ifindex number");

    let q = QuestDb::shared();
    let prefix = "cap_";
    let mut nmsd = Nmsd::start(
        "capture-netns",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: format!(
                "[sources.mirror]\ntype = \"capture\"\ninterface = \"{outer}\"\n\
                 idle_timeout = \"2s\"\n"
            ),
            ..NmsdOptions::default()
        },
    );

    let tx = UdpSocket::bind("10.213.0.1:40000").expect("bind on the veth address");
    // A first datagram to another port resolves ARP before the counted ones.
    tx.send_to(b"warm-up", "10.213.0.2:9998").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let (mut packets, mut bytes) = (0i64, 0i64);
    for i in 0..50usize {
        let payload = vec![0x5Au8; 100 + i];
        tx.send_to(&payload, "10.213.0.2:9999").expect("send");
        packets += 1;
        bytes += (20 + 8 + payload.len()) as i64;
        std::thread::sleep(Duration::from_millis(2));
    }
    nmsd.wait_metric(
        "nmsd_packet_frames_total",
        &["source=\"mirror\""],
        51.0,
        Duration::from_secs(10),
    );
    // The namespace answers the closed port with ICMP unreachable (rate-limited, so some).
    let unreachable = nmsd.wait_metric(
        "nmsd_packet_icmp_unreachable_total",
        &["source=\"mirror\""],
        1.0,
        Duration::from_secs(10),
    );
    assert!(unreachable >= 1.0, "log:\n{}", nmsd.log());
    let status = nmsd.stop();
    assert!(
        status.success(),
        "nmsd exit: {status:?}; log:\n{}",
        nmsd.log()
    );

    let flows = format!("{prefix}flows");
    q.wait_applied(&flows, Duration::from_secs(60));
    let rows = q.query(&format!(
        "select sum(packets), sum(bytes), min(exporter), min(in_if), max(in_if), min(source) \
         from {flows} where version = 'packets' and src_ipv4 = '10.213.0.1' \
         and dst_port = 9999 and protocol = 17"
    ));
    let r = rows.first().cloned().unwrap_or_default();
    let n = |i: usize| r.get(i).and_then(|v| v.as_i64());
    let s = |i: usize| r.get(i).and_then(|v| v.as_str());
    assert_eq!(
        (n(0), n(1)),
        (Some(packets), Some(bytes)),
        "packets and bytes"
    );
    assert_eq!(
        s(2),
        Some("10.213.0.1"),
        "exporter = the interface's address"
    );
    assert_eq!(
        (n(3), n(4)),
        (Some(ifindex), Some(ifindex)),
        "in_if = ifindex"
    );
    assert_eq!(s(5), Some("mirror"));
}

/// Two capture threads: the kernel spreads frames over their sockets by flow hash, so every
/// flow is built whole by one thread (one row per 5-tuple, exact totals), and the roll-up, one
/// instance per thread, sums to the same.
#[test]
fn two_capture_threads_split_by_flow_and_lose_nothing() {
    if !root() {
        return;
    }
    let pid = std::process::id() % 100_000;
    let (outer, inner) = (format!("ncapc{pid}"), format!("ncapd{pid}"));
    let _ns = Netns::create(&format!("nmsd-cap2-{pid}"), &outer, &inner, "10.214.0");

    let q = QuestDb::shared();
    let prefix = "cap2_";
    let mut nmsd = Nmsd::start(
        "capture-netns-2",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: prefix.into(),
            extra: format!(
                "[sources.mirror]\ntype = \"capture\"\ninterface = \"{outer}\"\nthreads = 2\n\
                 idle_timeout = \"1h\"\nactive_timeout = \"1h\"\n"
            ),
            rollup_inputs: vec!["\"netflow\"".into(), "\"mirror\"".into()],
            ..NmsdOptions::default()
        },
    );
    let warm = UdpSocket::bind("10.214.0.1:0").expect("bind on the veth address");
    warm.send_to(b"warm-up", "10.214.0.2:9998").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    // 40 flows (source ports) of 10 datagrams each, interleaved.
    let socks: Vec<UdpSocket> = (0..40u16)
        .map(|i| UdpSocket::bind(("10.214.0.1", 41_000 + i)).expect("bind"))
        .collect();
    for round in 0..10usize {
        for s in &socks {
            s.send_to(&vec![0x5Au8; 64 + round], "10.214.0.2:9999")
                .expect("send");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    nmsd.wait_metric(
        "nmsd_packet_frames_total",
        &["source=\"mirror\""],
        401.0,
        Duration::from_secs(10),
    );
    assert!(nmsd.stop().success(), "log:\n{}", nmsd.log());

    let flows = format!("{prefix}flows");
    q.wait_applied(&flows, Duration::from_secs(60));
    let per_flow = q.query(&format!(
        "select src_port, count(), sum(packets), sum(bytes) from {flows} \
         where version = 'packets' and dst_port = 9999 and protocol = 17 \
         group by src_port order by src_port"
    ));
    assert_eq!(per_flow.len(), 40, "every flow: {per_flow:?}");
    let want_bytes: i64 = (0..10).map(|r| 20 + 8 + 64 + r).sum();
    for r in &per_flow {
        let n = |i: usize| r.get(i).and_then(|v| v.as_i64());
        assert_eq!(
            (n(1), n(2), n(3)),
            (Some(1), Some(10), Some(want_bytes)),
            "one row per flow, whole (port {:?})",
            n(0)
        );
    }
    let rollup = format!("{prefix}flows_1m");
    q.wait_applied(&rollup, Duration::from_secs(60));
    let sums = q.query(&format!(
        "select sum(packets), sum(bytes) from {rollup} where dst_port = 9999 and protocol = 17"
    ));
    let s = sums.first().cloned().unwrap_or_default();
    assert_eq!(
        (
            s.first().and_then(|v| v.as_i64()),
            s.get(1).and_then(|v| v.as_i64())
        ),
        (Some(400), Some(40 * want_bytes)),
        "the roll-up instances of both threads sum to the flows"
    );
}
