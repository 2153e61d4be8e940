//! The simulator over real sockets on loopback: addresses, ports mode, delays, speed.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{
    AnyPdu, Message, PduHeader, PduKind, Version, encode_community_message,
};
use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol, UserKeys};
use nmsd_parsers::snmp::v3::{self, ScopedData, V3Message, V3Params};
use nmsd_parsers::snmp::{Oid, Value};

use super::*;

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn get_request(id: i32, oids: &[&str]) -> Vec<u8> {
    let oids: Vec<Oid> = oids.iter().map(|s| oid(s)).collect();
    let vbs: Vec<_> = oids.iter().map(|o| (o.as_ref(), Value::Null)).collect();
    let mut w = BackWriter::default();
    encode_community_message(
        &mut w,
        Version::V2c,
        b"public",
        &PduHeader::new(PduKind::Get, id),
        &vbs,
    );
    w.as_bytes().to_vec()
}

/// sysName.0 from a v2c response.
fn sys_name(bytes: &[u8]) -> String {
    let m = Message::decode(bytes).unwrap();
    let AnyPdu::Standard(p) = m.pdu else {
        panic!("standard")
    };
    let (_, v) = p.varbinds().next().unwrap().unwrap();
    v.as_text().unwrap().into_owned()
}

#[test]
fn every_device_answers_from_its_own_address() {
    let sim = Simulator::spawn(SimConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        devices: 300,
        ..SimConfig::default()
    })
    .unwrap();
    let c = client();
    let mut buf = [0u8; 2048];
    for (i, want) in [(0, "127.0.1.1"), (249, "127.0.1.250"), (299, "127.0.2.50")] {
        let to = sim.device_addr(i);
        assert_eq!(to.ip().to_string(), want);
        c.send_to(&get_request(i as i32, &["1.3.6.1.2.1.1.5.0"]), to)
            .unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, to, "the reply leaves from the device's address");
        assert_eq!(sys_name(&buf[..n]), format!("sim-{:04}", i + 1));
    }
    // An address that is no device: no answer, counted.
    let port = sim.addr.port();
    c.send_to(
        &get_request(1, &["1.3.6.1.2.1.1.5.0"]),
        (Ipv4Addr::new(127, 0, 9, 9), port),
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(c.recv_from(&mut buf).is_err());
    assert_eq!(sim.stats().unknown_destination, 1);
    let t = Instant::now();
    sim.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "stops promptly");
}

#[test]
fn ports_mode_gives_each_device_a_port() {
    let sim = Simulator::spawn(SimConfig {
        addressing: Addressing::Ports,
        devices: 3,
        ..SimConfig::default()
    })
    .unwrap();
    let c = client();
    let mut buf = [0u8; 2048];
    let addrs: Vec<SocketAddr> = sim.device_addrs().to_vec();
    assert_eq!(addrs.len(), 3);
    for (i, to) in addrs.iter().enumerate() {
        c.send_to(&get_request(7, &["1.3.6.1.2.1.1.5.0"]), to)
            .unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, *to);
        assert_eq!(sys_name(&buf[..n]), format!("sim-{:04}", i + 1));
    }
}

#[test]
fn slow_devices_answer_late_and_dead_ones_never() {
    let sim = Simulator::spawn(SimConfig {
        devices: 3,
        listen: "0.0.0.0:0".parse().unwrap(),
        groups: vec![
            Group {
                count: 1,
                behaviour: Behaviour {
                    slow: Some(Duration::from_millis(300)),
                    ..Behaviour::default()
                },
            },
            Group {
                count: 1,
                behaviour: Behaviour {
                    dead: true,
                    ..Behaviour::default()
                },
            },
        ],
        ..SimConfig::default()
    })
    .unwrap();
    let c = client();
    let mut buf = [0u8; 2048];
    // Groups take devices from the end: slow is device 2, dead device 1.
    let slow = sim.device_addr(2);
    let mut took = Vec::new();
    for id in 0..2 {
        let t = Instant::now();
        c.send_to(&get_request(id, &["1.3.6.1.2.1.1.5.0"]), slow)
            .unwrap();
        c.recv_from(&mut buf).unwrap();
        took.push(t.elapsed());
    }
    assert!(took[0] < Duration::from_millis(200), "{took:?}");
    assert!(took[1] >= Duration::from_millis(300), "{took:?}");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.send_to(&get_request(9, &["1.3.6.1.2.1.1.5.0"]), sim.device_addr(1))
        .unwrap();
    assert!(c.recv_from(&mut buf).is_err(), "dead");
    sim.set_dead(0, true);
    c.send_to(&get_request(9, &["1.3.6.1.2.1.1.5.0"]), sim.device_addr(0))
        .unwrap();
    assert!(c.recv_from(&mut buf).is_err(), "killed at run time");
    assert_eq!(sim.stats().dropped_dead, 2);
}

/// The requests the engine's interface walk B sends: sysUpTime plus 12 ifXTable columns.
const WALK_B: [&str; 13] = [
    "1.3.6.1.2.1.1.3",
    "1.3.6.1.2.1.31.1.1.1.1",
    "1.3.6.1.2.1.31.1.1.1.6",
    "1.3.6.1.2.1.31.1.1.1.7",
    "1.3.6.1.2.1.31.1.1.1.8",
    "1.3.6.1.2.1.31.1.1.1.9",
    "1.3.6.1.2.1.31.1.1.1.10",
    "1.3.6.1.2.1.31.1.1.1.11",
    "1.3.6.1.2.1.31.1.1.1.12",
    "1.3.6.1.2.1.31.1.1.1.13",
    "1.3.6.1.2.1.31.1.1.1.15",
    "1.3.6.1.2.1.31.1.1.1.18",
    "1.3.6.1.2.1.31.1.1.1.19",
];

/// Keep `in_flight` requests outstanding against every device in turn for `secs`: GETBULKs
/// like the engine's walk B (sysUpTime + 12 columns, 8 repetitions = 97 varbinds each), or
/// with `bulk` false GETs of sysUpTime.0 (1 varbind: the per-request cost). Returns
/// (varbinds/s, varbinds per CPU-second of the simulator thread, its CPU share, requests/s).
fn load(
    sim: &SimHandle,
    v3_user: bool,
    bulk: bool,
    in_flight: usize,
    secs: f64,
) -> (f64, f64, f64, f64) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let oids: Vec<Oid> = if bulk {
        WALK_B.iter().map(|s| oid(s)).collect()
    } else {
        vec![oid("1.3.6.1.2.1.1.3.0")]
    };
    let vbs: Vec<_> = oids.iter().map(|o| (o.as_ref(), Value::Null)).collect();
    let devices = sim.device_addrs().len();
    let user = UserKeys::new(
        AuthProtocol::Sha1,
        b"authpass-sha1",
        Some((PrivProtocol::Aes128, b"privpass-aes128")),
    )
    .unwrap();
    // v3: learn boots/time by discovery, like a real poller.
    let mut engines = Vec::new();
    let mut buf = vec![0u8; 65536];
    if v3_user {
        for d in 0..devices {
            let mut w = BackWriter::default();
            v3::encode_discovery(&mut w, d as i32, d as i32);
            c.send_to(w.as_bytes(), sim.device_addr(d)).unwrap();
            let (n, _) = c.recv_from(&mut buf).unwrap();
            let m = V3Message::decode(&buf[..n]).unwrap();
            engines.push((
                user.localize(m.engine_id),
                m.engine_id.to_vec(),
                m.engine_boots,
                m.engine_time,
            ));
        }
    }
    let mut w = BackWriter::with_capacity(2048);
    let mut scratch = Vec::new();
    let mut send = |id: i32| {
        let d = id as usize % devices;
        let h = if bulk {
            PduHeader::bulk(id, 1, 8)
        } else {
            PduHeader::new(PduKind::Get, id)
        };
        if v3_user {
            let (keys, engine, boots, time) = &engines[d];
            let p = V3Params {
                msg_id: id,
                reportable: true,
                engine_id: engine,
                engine_boots: *boots,
                engine_time: *time,
                user: b"u_sha_aes",
                context_engine_id: engine,
                context_name: b"",
            };
            v3::encode_v3(&mut w, &mut scratch, &p, Some(keys), id as u64, &h, &vbs).unwrap();
        } else {
            encode_community_message(&mut w, Version::V2c, b"public", &h, &vbs);
        }
        c.send_to(w.as_bytes(), sim.device_addr(d)).unwrap();
    };
    let cpu0 = sim.cpu_time().unwrap_or_default();
    let t0 = Instant::now();
    let mut next_id = 1i32;
    for _ in 0..in_flight {
        send(next_id);
        next_id += 1;
    }
    let mut varbinds = 0u64;
    let mut responses = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        let Ok((n, _)) = c.recv_from(&mut buf) else {
            // A lost datagram: refill the window.
            send(next_id);
            next_id += 1;
            continue;
        };
        let count = if v3_user {
            let m = V3Message::decode(&buf[..n]).unwrap();
            let ScopedData::Encrypted(_) = m.data else {
                panic!("encrypted response expected")
            };
            // Decrypting here would measure the client, not the simulator.
            if bulk { 97 } else { 1 }
        } else {
            let m = Message::decode(&buf[..n]).unwrap();
            let AnyPdu::Standard(p) = m.pdu else {
                panic!("standard")
            };
            p.varbinds().count() as u64
        };
        varbinds += count;
        responses += 1;
        send(next_id);
        next_id += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (sim.cpu_time().unwrap_or_default() - cpu0).as_secs_f64();
    (
        varbinds as f64 / wall,
        varbinds as f64 / cpu.max(1e-9),
        cpu / wall,
        responses as f64 / wall,
    )
}

/// Speed of one simulator thread. Run in release, alone:
/// `cargo test -p nmsd-snmp --release -- --ignored --nocapture simulator_speed`
#[test]
#[ignore]
fn simulator_speed() {
    let sim = Simulator::spawn(SimConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        devices: 100,
        data: DataSpec {
            interfaces: Some(48),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .unwrap();
    for (name, v3_user, bulk) in [
        ("v2c GETBULK 97 varbinds", false, true),
        ("v3 SHA/AES GETBULK 97 varbinds", true, true),
        ("v2c GET 1 varbind", false, false),
        ("v3 SHA/AES GET 1 varbind", true, false),
    ] {
        let (rate, per_cpu, share, rps) = load(&sim, v3_user, bulk, 16, 4.0);
        println!(
            "simulator, {name}: {rps:.0} requests/s, {rate:.0} varbinds/s wall, \
             {per_cpu:.0} varbinds per CPU-second of its thread ({:.0} % of a core busy)",
            share * 100.0
        );
    }
    println!("{:?}", sim.stats());
}

/// A quick sanity check of the same load path in debug builds.
#[test]
fn load_path_works() {
    let sim = Simulator::spawn(SimConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        devices: 4,
        data: DataSpec {
            interfaces: Some(24),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .unwrap();
    for (v3_user, bulk) in [(false, true), (true, true), (false, false), (true, false)] {
        let (_, _, _, rps) = load(&sim, v3_user, bulk, 4, 0.3);
        assert!(rps > 100.0, "{rps} requests/s (v3 {v3_user}, bulk {bulk})");
    }
}
