//! LLDP (and CDP) topology from a ring of simulated devices: every cable is one link, JSON and
//! DOT are served, and a neighbour that disappears becomes a `down` row after two polls without
//! it.

use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_snmpsim::data::if_name;
use nmsd_snmpsim::{DataSpec, SimConfig, Simulator};

const RING: usize = 6;

#[test]
fn lldp_ring_topology() {
    let q = QuestDb::shared();
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: RING,
        data: DataSpec {
            interfaces: Some(4),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator");
    let dir = nmsd_acceptance::scratch("topology-secrets");
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let mut extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\ntimeout = \"1s\"\nport = {port}\n\
         modules = [\"system\", \"interfaces\", \"lldp\"]\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n",
        community.display()
    );
    for (i, a) in sim.device_addrs().iter().enumerate() {
        extra.push_str(&format!(
            "[[sources.snmp.devices]]\nname = \"sw{i}\"\naddress = \"{}\"\nprofile = \"v2\"\n",
            a.ip()
        ));
    }
    let mut nmsd = Nmsd::start(
        "topology",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "topo_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );
    let topo = nmsd_acceptance::wait_for(Duration::from_secs(20), || {
        let (_, body) = nmsd.get("/api/v1/topology")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        // Until every device was polled once, some neighbours are still unresolved.
        let all_known = v["nodes"].as_array()?.iter().all(|n| n["known"] == true);
        (v["links"].as_array().map(Vec::len) == Some(RING) && all_known).then_some(v)
    })
    .unwrap_or_else(|| panic!("a ring of {RING} links: {:?}", nmsd.get("/api/v1/topology")));
    let nodes = topo["nodes"].as_array().expect("nodes");
    assert_eq!(
        nodes.len(),
        RING,
        "every neighbour resolves to a polled device: {topo}"
    );
    assert!(nodes.iter().all(|n| n["known"] == true));
    let (_, dot) = nmsd.get("/api/v1/topology.dot").expect("dot");
    assert!(dot.starts_with("graph nmsd {"), "{dot}");
    assert_eq!(dot.matches(" -- ").count(), RING, "{dot}");

    // sw0 loses its neighbour on port 1: one `down` row after two more polls.
    sim.set_neighbour(0, 0, false);
    std::thread::sleep(Duration::from_secs(12));
    assert!(nmsd.stop().success());
    q.wait_applied("topo_topology_link", Duration::from_secs(30));
    let up = q.scalar("select count() from topo_topology_link where state = 'up'");
    assert_eq!(
        up,
        Some(2 * RING as i64),
        "each device sees two neighbours come up"
    );
    let down = q.query("select local_device, local_port, remote_known from topo_topology_link where state = 'down'");
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0][0].as_str(), Some("sw0"));
    assert_eq!(down[0][1].as_str(), Some(if_name(1).as_str()));
    assert_eq!(down[0][2].as_bool(), Some(true));
    let _ = sim.stop();
}

/// The same ring with CDP on every device but one: every cable is still one link, now seen by
/// LLDP and CDP; the device without CISCO-CDP-MIB polls without an error; a removed neighbour
/// goes down once per protocol.
#[test]
fn lldp_and_cdp_ring_topology() {
    const NO_CDP: usize = 3;
    let q = QuestDb::shared();
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: RING,
        data: DataSpec {
            interfaces: Some(4),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        },
        cdp: true,
        ..SimConfig::default()
    })
    .expect("simulator");
    sim.set_cdp(NO_CDP, false);
    let dir = nmsd_acceptance::scratch("topology-cdp-secrets");
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let mut extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\ntimeout = \"1s\"\nport = {port}\n\
         modules = [\"system\", \"interfaces\", \"lldp\"]\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n",
        community.display()
    );
    for (i, a) in sim.device_addrs().iter().enumerate() {
        extra.push_str(&format!(
            "[[sources.snmp.devices]]\nname = \"sw{i}\"\naddress = \"{}\"\nprofile = \"v2\"\n",
            a.ip()
        ));
    }
    let mut nmsd = Nmsd::start(
        "topology-cdp",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "topocdp_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );
    let topo = nmsd_acceptance::wait_for(Duration::from_secs(20), || {
        let (_, body) = nmsd.get("/api/v1/topology")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let all_known = v["nodes"].as_array()?.iter().all(|n| n["known"] == true);
        let links = v["links"].as_array()?;
        let both = links
            .iter()
            .all(|l| l["protocols"] == serde_json::json!(["lldp", "cdp"]));
        (links.len() == RING && all_known && both).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "a ring of {RING} links, each by LLDP and CDP: {:?}",
            nmsd.get("/api/v1/topology")
        )
    });
    assert_eq!(topo["nodes"].as_array().map(Vec::len), Some(RING), "{topo}");
    // LLDP names ports Gi0/2, CDP GigabitEthernet0/2: both are the ifName in the graph.
    for l in topo["links"].as_array().expect("links") {
        for end in ["a", "b"] {
            let p = l[end]["port"].as_str().unwrap_or_default();
            assert!(p == if_name(1) || p == if_name(2), "{l}");
            // Issue 11 item 10: the ifIndex of each end (it was null on every link).
            let want = if p == if_name(1) { 1 } else { 2 };
            assert_eq!(l[end]["if_index"].as_u64(), Some(want), "{l}");
        }
    }
    let (_, body) = nmsd.get("/api/v1/devices").expect("devices");
    let devices: serde_json::Value = serde_json::from_str(&body).expect("devices JSON");
    let no_cdp = devices["devices"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == format!("sw{NO_CDP}")))
        .unwrap_or_else(|| panic!("sw{NO_CDP} in {devices}"));
    assert_eq!(no_cdp["state"], "up", "{no_cdp}");
    assert!(no_cdp["last_error"].is_null(), "{no_cdp}");
    assert_eq!(no_cdp["polls_failed"], 0, "{no_cdp}");

    // sw0 loses its neighbour on port 1: one `down` row per protocol after two more polls.
    sim.set_neighbour(0, 0, false);
    std::thread::sleep(Duration::from_secs(12));
    assert!(nmsd.stop().success());
    q.wait_applied("topocdp_topology_link", Duration::from_secs(30));
    let up = q.query(
        "select protocol, count() from topocdp_topology_link where state = 'up' order by protocol",
    );
    assert_eq!(
        up,
        vec![
            vec![
                serde_json::json!("cdp"),
                serde_json::json!(2 * RING as i64 - 2)
            ],
            vec![
                serde_json::json!("lldp"),
                serde_json::json!(2 * RING as i64)
            ],
        ],
        "LLDP: two neighbours per device; CDP: the same, but none from sw{NO_CDP}"
    );
    let down = q.query(
        "select protocol, local_device, local_port, local_if_index, remote_device, remote_known \
         from topocdp_topology_link where state = 'down' order by protocol",
    );
    assert_eq!(down.len(), 2, "{down:?}");
    for (row, protocol) in down.iter().zip(["cdp", "lldp"]) {
        assert_eq!(row[0].as_str(), Some(protocol), "{down:?}");
        assert_eq!(row[1].as_str(), Some("sw0"));
        assert_eq!(row[2].as_str(), Some(if_name(1).as_str()));
        assert_eq!(row[4].as_str(), Some("sw1"));
        assert_eq!(row[5].as_bool(), Some(true));
    }
    assert_eq!(
        down[0][3].as_i64(),
        Some(1),
        "CDP rows carry the local ifIndex"
    );
    let _ = sim.stop();
}

/// Issue 11 item 10: neighbours that advertise a locally assigned PortId (subtype 7, a number,
/// as Junos does) while their own port table names the port. Each cable was two links (one
/// per direction, one end named by the number); the advertised port description maps it to
/// the neighbour's ifName, so the ring is still one link per cable.
#[test]
fn lldp_ring_with_locally_assigned_port_ids() {
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: RING,
        data: DataSpec {
            interfaces: Some(4),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        },
        lldp_local_port_ids: true,
        ..SimConfig::default()
    })
    .expect("simulator");
    let dir = nmsd_acceptance::scratch("topology-junos-secrets");
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let mut extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\ntimeout = \"1s\"\nport = {port}\n\
         modules = [\"system\", \"interfaces\", \"lldp\"]\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n",
        community.display()
    );
    for (i, a) in sim.device_addrs().iter().enumerate() {
        extra.push_str(&format!(
            "[[sources.snmp.devices]]\nname = \"sw{i}\"\naddress = \"{}\"\nprofile = \"v2\"\n",
            a.ip()
        ));
    }
    let nmsd = Nmsd::start(
        "topology-junos",
        &NmsdOptions {
            extra,
            ..NmsdOptions::default()
        },
    );
    // Two full rounds of polls: every device's view is in.
    std::thread::sleep(Duration::from_secs(11));
    let (_, body) = nmsd.get("/api/v1/topology").expect("topology");
    let topo: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let links = topo["links"].as_array().expect("links");
    assert_eq!(links.len(), RING, "one link per cable: {topo}");
    for l in links {
        for end in ["a", "b"] {
            let p = l[end]["port"].as_str().unwrap_or_default();
            assert!(p == if_name(1) || p == if_name(2), "ports by ifName: {l}");
        }
    }
    let _ = sim.stop();
}
