//! Flows from an exporter that is also polled get interface names: every flows_1m row's
//! in_if_name/out_if_name equals what the (simulated) agent's ifName says for that ifIndex.

use std::net::UdpSocket;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_snmpsim::data::if_name;
use nmsd_snmpsim::{DataSpec, SimConfig, Simulator};
use nmsd_testkit::encode::{self, MessageBuilder};

#[test]
fn flows_1m_carries_interface_names_of_polled_exporters() {
    let q = QuestDb::shared();
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: 1,
        data: DataSpec {
            interfaces: Some(48),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator");
    let dir = nmsd_acceptance::scratch("enrich-secrets");
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\ntimeout = \"1s\"\nport = {port}\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n\
         [[sources.snmp.devices]]\nname = \"router\"\naddress = \"{}\"\nprofile = \"v2\"\n\
         flow_exporters = [\"127.0.0.1\"]\n",
        community.display(),
        sim.device_addr(0).ip()
    );
    let mut nmsd = Nmsd::start(
        "enrich",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "enrich_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );
    // Wait for the first interfaces poll (and the directory, published within a second).
    let polled = nmsd_acceptance::wait_for(Duration::from_secs(20), || {
        (nmsd.metric("nmsd_snmp_polls_total", &["outcome=\"ok\""]) >= 1.0).then_some(())
    });
    assert!(polled.is_some(), "the device was polled");
    std::thread::sleep(Duration::from_millis(1500));

    // v9 flows from 127.0.0.1 with in_if/out_if 1–48.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let recs = encode::sample_records(200, false, (now_s as u64 - 30) * 1000);
    let t = encode::ipv4_template(300);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    for (i, chunk) in recs.chunks(20).enumerate() {
        let mut m = MessageBuilder::v9(1_000_000, now_s, i as u32 + 1, 0);
        m.template(&t).data(&t, chunk);
        sock.send_to(&m.finish(), ("127.0.0.1", nmsd.flow_port))
            .expect("send");
    }
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        200.0,
        Duration::from_secs(10),
    );
    assert_eq!(decoded, 200.0, "all flows decoded; log:\n{}", nmsd.log());
    assert!(nmsd.stop().success());
    q.wait_applied("enrich_flows_1m", Duration::from_secs(30));
    // The sink wrote them before nmsd exited; give a loaded server time to make them visible.
    let written = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        q.scalar("select count() from enrich_flows_1m")
            .filter(|n| *n > 0)
    });
    assert!(
        written.is_some(),
        "no flows_1m rows; QuestDB log in {}; nmsd log:\n{}",
        q.dir.display(),
        nmsd.log()
    );
    let rows = q.query(
        "select in_if, in_if_name, out_if, out_if_name, in_if_speed_mbps from enrich_flows_1m",
    );
    for r in &rows {
        let (i, o) = (
            r[0].as_u64().unwrap_or(0) as u32,
            r[2].as_u64().unwrap_or(0) as u32,
        );
        assert_eq!(r[1].as_str(), Some(if_name(i).as_str()), "in_if {i}: {r:?}");
        assert_eq!(
            r[3].as_str(),
            Some(if_name(o).as_str()),
            "out_if {o}: {r:?}"
        );
        assert!(r[4].as_u64().is_some(), "speed known: {r:?}");
    }
    let _ = sim.stop();
}
