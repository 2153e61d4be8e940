//! A fleet of 1,000 simulated agents on 127.0.1.1–127.0.4.250, some dead, slow, with a wrong
//! community, restarting, resetting their counters or Counter32-only: every live device is
//! polled every interval, the broken ones are reported as such, and rates equal the simulator's
//! configured rates.

use std::collections::HashMap;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_snmpsim::{Behaviour, DataSpec, Group, SimConfig};
use nmsd_snmpsim::{Simulator, data::if_rates};

const DEVICES: usize = 1000;
const INTERFACES: u32 = 24;
const DEAD: usize = 50;
const SLOW: usize = 50;
const WRONG_COMMUNITY: usize = 20;
const RESTARTING: usize = 10;
const DISCONTINUITY: usize = 10;
const C32: usize = 10;

fn group(count: usize, b: Behaviour) -> Group {
    Group {
        count,
        behaviour: b,
    }
}

#[test]
fn a_thousand_devices_with_dead_and_slow_ones() {
    let q = QuestDb::shared();
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: DEVICES,
        data: DataSpec {
            interfaces: Some(INTERFACES),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        // Taken from the end of the device list, in this order.
        groups: vec![
            group(
                DEAD,
                Behaviour {
                    dead: true,
                    ..Behaviour::default()
                },
            ),
            group(
                SLOW,
                Behaviour {
                    slow: Some(Duration::from_millis(1500)),
                    ..Behaviour::default()
                },
            ),
            group(
                WRONG_COMMUNITY,
                Behaviour {
                    wrong_community: true,
                    ..Behaviour::default()
                },
            ),
            group(
                RESTARTING,
                Behaviour {
                    restart_every: Some(Duration::from_secs(25)),
                    ..Behaviour::default()
                },
            ),
            group(
                DISCONTINUITY,
                Behaviour {
                    discontinuity_every: Some(Duration::from_secs(25)),
                    ..Behaviour::default()
                },
            ),
            group(
                C32,
                Behaviour {
                    c32_only: true,
                    ..Behaviour::default()
                },
            ),
        ],
        ..SimConfig::default()
    })
    .expect("simulator starts");

    let dir = nmsd_acceptance::scratch("fleet-secrets");
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let mut extra = format!(
        "[sources.snmp]\ntype = \"snmp\"\nmax_in_flight = 1024\n[sources.snmp.defaults]\ninterval = \"10s\"\n\
         timeout = \"1s\"\nretries = 1\nport = {port}\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n",
        community.display()
    );
    for (i, addr) in sim.device_addrs().iter().enumerate() {
        extra.push_str(&format!(
            "[[sources.snmp.devices]]\nname = \"d{i:04}\"\naddress = \"{}\"\nprofile = \"v2\"\n",
            addr.ip()
        ));
    }
    let mut nmsd = Nmsd::start(
        "snmp-fleet",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "fleet_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );
    // Four cycles.
    std::thread::sleep(Duration::from_secs(42));
    let (_, body) = nmsd.get("/api/v1/devices").expect("devices API");
    let api: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let devices: HashMap<String, serde_json::Value> = api["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["name"].as_str().unwrap_or("").to_string(), d.clone()))
        .collect();
    assert_eq!(devices.len(), DEVICES);
    let dead_from = DEVICES - DEAD;
    let wrong_from = DEVICES - DEAD - SLOW - WRONG_COMMUNITY;
    let wrong_to = DEVICES - DEAD - SLOW;
    for i in 0..DEVICES {
        let d = &devices[&format!("d{i:04}")];
        assert_eq!(d["polls_overrun"], 0, "d{i:04} never overruns: {d}");
        let silent = i >= dead_from || (wrong_from..wrong_to).contains(&i);
        if silent {
            assert_eq!(d["state"], "down", "d{i:04}: {d}");
            assert_eq!(d["last_error"]["kind"], "timeout", "d{i:04}: {d}");
        } else {
            assert_eq!(d["state"], "up", "d{i:04}: {d}");
            assert!(
                d["polls_ok"].as_u64() >= Some(3),
                "d{i:04} polled every interval: {d}"
            );
        }
    }
    let cpu = nmsd.metric("nmsd_snmp_varbinds_total", &[]);
    assert!(cpu > 1_000_000.0, "varbinds received: {cpu}");
    assert!(nmsd.stop().success());

    // Rates equal the simulator's (exact functions of its uptime) within 0.5 %.
    q.wait_applied("fleet_snmp_interface", Duration::from_secs(60));
    for i in [0usize, 1, 250, 499, 800] {
        let rows = q.query(&format!(
            "select if_index, in_bps, out_bps from fleet_snmp_interface \
             where device = 'd{i:04}' and in_bps is not null latest on ts partition by if_index"
        ));
        assert_eq!(
            rows.len(),
            INTERFACES as usize,
            "d{i:04}: a rate per interface"
        );
        for r in rows {
            let idx = r[0].as_u64().expect("if_index") as u32;
            let want = if_rates(i, idx);
            for (got, want) in [
                (r[1].as_f64(), want.in_octets),
                (r[2].as_f64(), want.out_octets),
            ] {
                let want = want as f64 * 8.0;
                let got = got.expect("rate");
                assert!(
                    (got - want).abs() <= want * 0.005 + 1.0,
                    "d{i:04} if {idx}: {got} vs {want}"
                );
            }
        }
    }
    // Restarts and counter resets never become spikes: no rate above the interface speed.
    let spikes = q.scalar(
        "select count() from fleet_snmp_interface where in_bps > speed_mbps * 1000000.0 * 1.01",
    );
    assert_eq!(spikes, Some(0));
    let _ = sim.stop();
}
