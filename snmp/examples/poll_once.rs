//! Poll devices a few times and print what the engine produces (a development aid):
//! `cargo run -p nmsd-snmp --example poll_once -- ADDR:PORT [v2c|sha-aes|sha256-aes256] [polls]`
//! The v3 users are the ones of docs/snmp-design.md §13's test snmpd.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol, UserKeys};
use nmsd_snmp::engine::plan::{Credentials, DeviceSpec, Modules, Plan};
use nmsd_snmp::engine::{Command, Engine};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .map_or("127.0.0.1:161", String::as_str)
        .parse()
        .expect("ADDR:PORT");
    let mode = args.get(2).map_or("v2c", String::as_str);
    let polls: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let credentials = match mode {
        "v2c" => Credentials::V2c {
            community: Arc::new(zeroize::Zeroizing::new(b"public".to_vec())),
        },
        "badcomm" => Credentials::V2c {
            community: Arc::new(zeroize::Zeroizing::new(b"wrong".to_vec())),
        },
        "badauth" | "badpriv" => Credentials::V3 {
            user: Arc::from(&b"u_sha_aes"[..]),
            keys: Some(Arc::new(
                UserKeys::new(
                    AuthProtocol::Sha1,
                    if mode == "badauth" {
                        b"wrongpass-xx"
                    } else {
                        b"authpass-sha1"
                    },
                    Some((
                        PrivProtocol::Aes128,
                        if mode == "badpriv" {
                            b"wrongpriv-xx"
                        } else {
                            b"privpass-aes128"
                        },
                    )),
                )
                .expect("keys"),
            )),
        },
        "sha-aes" => Credentials::V3 {
            user: Arc::from(&b"u_sha_aes"[..]),
            keys: Some(Arc::new(
                UserKeys::new(
                    AuthProtocol::Sha1,
                    b"authpass-sha1",
                    Some((PrivProtocol::Aes128, b"privpass-aes128")),
                )
                .expect("keys"),
            )),
        },
        _ => Credentials::V3 {
            user: Arc::from(&b"u_sha256_aes256"[..]),
            keys: Some(Arc::new(
                UserKeys::new(
                    AuthProtocol::Sha256,
                    b"authpass-sha256",
                    Some((PrivProtocol::Aes256, b"privpass-aes256")),
                )
                .expect("keys"),
            )),
        },
    };
    let plan = Plan {
        devices: vec![DeviceSpec {
            name: Arc::from("dev"),
            addr,
            credentials,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            retries: 1,
            max_repetitions: 25,
            max_in_flight: 2,
            modules: Modules::default(),
            flow_exporters: Vec::new(),
            prometheus: false,
            custom: Vec::new(),
            tags: Default::default(),
        }],
        max_in_flight: 64,
        custom: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (otx, mut orx) = tokio::sync::mpsc::unbounded_channel();
        let board = Arc::new(Mutex::new(Vec::new()));
        let engine = Engine::new(
            plan,
            "0.0.0.0:0".parse().expect("addr"),
            "[::]:0".parse().expect("addr"),
            Box::new(move |o| {
                let _ = otx.send(o);
            }),
            nmsd_snmp::engine::EngineShared {
                board,
                ..Default::default()
            },
        )
        .await
        .expect("engine");
        let h = tokio::spawn(engine.run(rx));
        for _ in 0..polls {
            let Some(o) = orx.recv().await else { break };
            println!("{:#?}", o.device);
            for i in o.interfaces.iter() {
                println!(
                    "  if {} {:?} alias={:?} speed={:?} admin={:?} oper={:?} bits={} in_octets={:?} in_bps={:?} note={:?}",
                    i.if_index, i.if_name, i.if_alias, i.speed_mbps, i.admin_status, i.oper_status, i.counter_bits, i.counters[0], i.in_bps, i.rate_note
                );
            }
        }
        let _ = tx.send(Command::Stop).await;
        let _ = h.await;
    });
}
