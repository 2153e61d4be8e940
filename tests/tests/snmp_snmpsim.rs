//! nmsd against snmpsim (PyPI), an SNMP agent written independently of nmsd and of its
//! simulator: three small routers from `tests/fixtures/snmp/snmpsim/*.snmprec` on 127.0.0.1–3.
//! r1 and r2 (Cisco-like) have LLDP and CDP, r3 (Linux) LLDP only and no CISCO-CDP-MIB at all.
//! The topology must hold one link per cable with the protocols that saw it, CDP neighbours
//! resolved by device ID and by address, an external CDP neighbour as its own node; the
//! interface rows in QuestDB must equal the files; the agent without CDP must poll cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::snmpsim::Snmpsim;
use serde_json::{Value, json};

const DEVICES: [(&str, Ipv4Addr); 3] = [
    ("r1", Ipv4Addr::new(127, 0, 0, 1)),
    ("r2", Ipv4Addr::new(127, 0, 0, 2)),
    ("r3", Ipv4Addr::new(127, 0, 0, 3)),
];

fn fixture(name: &str) -> PathBuf {
    nmsd_acceptance::workspace()
        .join("tests/fixtures/snmp/snmpsim")
        .join(format!("{name}.snmprec"))
}

/// OID → value of a `.snmprec` file, read here without nmsd's code.
fn snmprec(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            Some((f.next()?.to_string(), {
                f.next()?;
                f.next()?.to_string()
            }))
        })
        .collect()
}

/// The `snmp_interface` columns the test reads, as the fixture says they must be.
const COLUMNS: &str = "if_index, if_name, if_alias, if_descr, if_type, speed_mbps, admin_status, \
     oper_status, counter_bits, in_octets, out_octets, in_ucast_pkts, out_ucast_pkts, \
     in_mcast_pkts, out_mcast_pkts, in_bcast_pkts, out_bcast_pkts, in_errors, out_errors, \
     in_discards, out_discards";

fn expected_interfaces(name: &str) -> Vec<Vec<Value>> {
    let rec = snmprec(name);
    let if_table = "1.3.6.1.2.1.2.2.1";
    let if_x = "1.3.6.1.2.1.31.1.1.1";
    let mut indexes: Vec<u32> = rec
        .keys()
        .filter_map(|o| o.strip_prefix(&format!("{if_table}.1.")))
        .filter_map(|i| i.parse().ok())
        .collect();
    indexes.sort_unstable();
    indexes
        .iter()
        .map(|i| {
            let s = |base: &str, col: u32| -> Value {
                let v = rec
                    .get(&format!("{base}.{col}.{i}"))
                    .unwrap_or_else(|| panic!("{name}: {base}.{col}.{i} in the fixture"));
                json!(v)
            };
            let n = |base: &str, col: u32| -> Value {
                let v = rec
                    .get(&format!("{base}.{col}.{i}"))
                    .unwrap_or_else(|| panic!("{name}: {base}.{col}.{i} in the fixture"));
                json!(v.parse::<i64>().expect("a number"))
            };
            vec![
                json!(i),
                s(if_x, 1),
                s(if_x, 18),
                s(if_table, 2),
                n(if_table, 3),
                // ifHighSpeed is in Mb/s already.
                n(if_x, 15),
                n(if_table, 7),
                n(if_table, 8),
                json!(64),
                // HC octets and packets, ifTable errors and discards.
                n(if_x, 6),
                n(if_x, 10),
                n(if_x, 7),
                n(if_x, 11),
                n(if_x, 8),
                n(if_x, 12),
                n(if_x, 9),
                n(if_x, 13),
                n(if_table, 14),
                n(if_table, 20),
                n(if_table, 13),
                n(if_table, 19),
            ]
        })
        .collect()
}

fn devices(n: &Nmsd) -> Value {
    let (_, body) = n.get("/api/v1/devices").expect("devices API answers");
    serde_json::from_str(&body).expect("devices JSON")
}

/// Links as {(device, port), (device, port)} → protocols.
fn links(topo: &Value) -> BTreeMap<BTreeSet<(String, String)>, Vec<String>> {
    let end = |e: &Value| {
        (
            e["device"].as_str().unwrap_or_default().to_string(),
            e["port"].as_str().unwrap_or_default().to_string(),
        )
    };
    topo["links"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    let protocols = l["protocols"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        [end(&l["a"]), end(&l["b"])].into_iter().collect(),
                        protocols,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn link(a: (&str, &str), b: (&str, &str)) -> BTreeSet<(String, String)> {
    [a, b]
        .into_iter()
        .map(|(d, p)| (d.to_string(), p.to_string()))
        .collect()
}

#[test]
fn lldp_and_cdp_from_snmpsim() {
    let q = QuestDb::shared();
    let files: Vec<PathBuf> = DEVICES.iter().map(|(n, _)| fixture(n)).collect();
    let addresses: Vec<Ipv4Addr> = DEVICES.iter().map(|(_, a)| *a).collect();
    let sim = Snmpsim::start("snmpsim", &files, &addresses);
    let secrets = nmsd_acceptance::scratch("snmpsim-secrets");
    let mut extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\ntimeout = \"1s\"\n\
         retries = 1\nport = {}\nmodules = [\"system\", \"interfaces\", \"lldp\"]\n",
        sim.port
    );
    for (name, addr) in DEVICES {
        // snmpsim: the community selects the file.
        let community = secrets.join(name);
        std::fs::write(&community, name).expect("secret");
        extra.push_str(&format!(
            "[[sources.snmp.profiles]]\nname = \"{name}\"\nversion = \"2c\"\n\
             community = {{ file = \"{}\" }}\n\
             [[sources.snmp.devices]]\nname = \"{name}\"\naddress = \"{addr}\"\nprofile = \"{name}\"\n",
            community.display()
        ));
    }
    let mut nmsd = Nmsd::start(
        "snmpsim-nmsd",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "snmpsim_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );

    let want: BTreeMap<BTreeSet<(String, String)>, Vec<String>> = [
        // r1–r2: LLDP both ways (Gi1/0/1) and CDP both ways (GigabitEthernet1/0/1; r1 knows
        // r2 as "R2.Lab.Example").
        (
            link(("r1", "Gi1/0/1"), ("r2", "Gi1/0/1")),
            vec!["lldp", "cdp"],
        ),
        // r1–r3: LLDP from both, CDP from r1 only (device ID "lnx-r3" names nothing polled:
        // resolved by its address 127.0.0.3).
        (link(("r1", "Gi1/0/2"), ("r3", "eth0")), vec!["lldp", "cdp"]),
        // A phone nobody polls: an external node named by its device ID.
        (
            link(("r1", "Gi1/0/3"), ("SEP001122334455", "Port 1")),
            vec!["cdp"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.into_iter().map(str::to_string).collect()))
    .collect();
    let topo = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        let (_, body) = nmsd.get("/api/v1/topology")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (links(&v) == want).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "links {want:?}; got {:?}\ndevices: {}\nlog:\n{}",
            nmsd.get("/api/v1/topology"),
            devices(&nmsd),
            nmsd.log()
        )
    });
    let nodes: BTreeMap<&str, &Value> = topo["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    assert_eq!(nodes.len(), 4, "{topo}");
    for (name, addr) in DEVICES {
        assert_eq!(nodes[name]["known"], true, "{topo}");
        assert_eq!(nodes[name]["address"], addr.to_string(), "{topo}");
    }
    let phone = nodes["SEP001122334455"];
    assert_eq!(phone["known"], false, "{topo}");
    assert_eq!(phone["address"], "192.0.2.50", "{topo}");
    assert_eq!(phone["platform"], "Cisco IP Phone 8845", "{topo}");
    let (_, dot) = nmsd.get("/api/v1/topology.dot").expect("dot");
    assert_eq!(dot.matches(" -- ").count(), 3, "{dot}");
    assert!(dot.contains("\"SEP001122334455\" [style=dashed];"), "{dot}");

    // Every device polls cleanly, r3 (no CISCO-CDP-MIB: endOfMibView) included.
    let all = nmsd_acceptance::wait_for(Duration::from_secs(20), || {
        let all = devices(&nmsd);
        all["devices"]
            .as_array()?
            .iter()
            .all(|d| d["polls_ok"].as_u64() >= Some(2))
            .then_some(all)
    })
    .unwrap_or_else(|| panic!("two polls of every device: {}", devices(&nmsd)));
    for d in all["devices"].as_array().expect("devices") {
        assert_eq!(d["state"], "up", "{d}");
        assert!(d["last_error"].is_null(), "{d}");
        assert_eq!(d["polls_failed"], 0, "{d}");
    }
    assert!(nmsd.stop().success(), "clean exit; log:\n{}", nmsd.log());
    drop(sim);

    // QuestDB: interfaces equal the files; sysName too; topology rows per protocol.
    q.wait_applied("snmpsim_snmp_interface", Duration::from_secs(30));
    q.wait_applied("snmpsim_snmp_device", Duration::from_secs(30));
    q.wait_applied("snmpsim_topology_link", Duration::from_secs(30));
    for (name, _) in DEVICES {
        let rows = q.query(&format!(
            "select {COLUMNS} from snmpsim_snmp_interface where device = '{name}' \
             latest on ts partition by if_index order by if_index"
        ));
        assert_eq!(rows, expected_interfaces(name), "{name}: {COLUMNS}");
        let sys = q.query(&format!(
            "select sys_name, sys_descr, up from snmpsim_snmp_device where device = '{name}' \
             latest on ts partition by device"
        ));
        let rec = snmprec(name);
        assert_eq!(
            sys,
            vec![vec![
                json!(rec["1.3.6.1.2.1.1.5.0"]),
                json!(rec["1.3.6.1.2.1.1.1.0"]),
                json!(true)
            ]],
            "{name}"
        );
    }
    let ups = q.query(
        "select protocol, local_device, local_if_index, local_port, remote_device, remote_known, \
         remote_port, remote_sys_name from snmpsim_topology_link where state = 'up' \
         order by protocol, local_device, local_port",
    );
    let want_rows = vec![
        json!([
            "cdp",
            "r1",
            1,
            "Gi1/0/1",
            "r2",
            true,
            "GigabitEthernet1/0/1",
            "R2.Lab.Example"
        ]),
        json!(["cdp", "r1", 2, "Gi1/0/2", "r3", true, "eth0", "lnx-r3"]),
        json!([
            "cdp",
            "r1",
            3,
            "Gi1/0/3",
            "SEP001122334455",
            false,
            "Port 1",
            "SEP001122334455"
        ]),
        json!([
            "cdp",
            "r2",
            1,
            "Gi1/0/1",
            "r1",
            true,
            "GigabitEthernet1/0/1",
            "r1.lab.example"
        ]),
    ];
    let cdp_rows: Vec<Value> = ups
        .iter()
        .filter(|r| r[0] == "cdp")
        .map(|r| Value::Array(r.clone()))
        .collect();
    assert_eq!(cdp_rows, want_rows, "CDP rows: {ups:?}");
    let lldp = ups.iter().filter(|r| r[0] == "lldp").count();
    assert_eq!(lldp, 4, "LLDP: r1 sees two, r2 and r3 one each: {ups:?}");
    assert_eq!(
        q.scalar("select count() from snmpsim_topology_link where state <> 'up'"),
        Some(0),
        "static agents: nothing changes"
    );
}
