//! Readiness and the systemd watchdog follow the data path. A QuestDB that is stopped (it
//! accepts connections, never answers) holds the sink in one request; with a blocking queue
//! the parse worker then blocks too. Within the stall limit `/readyz` turns 503 naming both,
//! `/api/v1/status` lists them, and WATCHDOG=1 stops arriving on $NOTIFY_SOCKET; the receive
//! thread, idle for as long, is not listed.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_testkit::encode::{self, V5Header};

/// Everything that arrives on the notify socket, with when it arrived, read on a thread of its
/// own (as systemd would: an unread socket fills up after a few datagrams).
fn listen(sock: UnixDatagram) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock()
                .expect("notifications")
                .push((Instant::now(), msg));
        }
    });
    got
}

/// Messages that arrived after `since`.
fn since(got: &Mutex<Vec<(Instant, String)>>, since: Instant) -> Vec<String> {
    got.lock()
        .expect("notifications")
        .iter()
        .filter(|(t, _)| *t > since)
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn a_stuck_sink_and_worker_make_nmsd_not_ready_and_starve_the_watchdog() {
    let dir = nmsd_acceptance::scratch("liveness-notify");
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let stopped_questdb = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", stopped_questdb.local_addr().expect("addr"));
    let nmsd = Nmsd::start(
        "liveness",
        &NmsdOptions {
            questdb: Some(url),
            // The memory queue alone, so that the stuck sink blocks the worker behind it (a
            // disk buffer would take the batches off the queue).
            sink_extra: "request_timeout = \"120s\"\nshutdown_timeout = \"2s\"\n\
                         queue_capacity = 1\nqueue_full_policy = \"block\"\n\
                         buffer = { type = \"memory\" }\n"
                .into(),
            env: vec![
                ("NOTIFY_SOCKET".into(), notify_path.display().to_string()),
                ("WATCHDOG_USEC".into(), "1000000".into()),
            ],
            ..NmsdOptions::default()
        },
    );
    let started = Instant::now();
    let notifications = listen(notify);
    std::thread::sleep(Duration::from_secs(2));
    let fed = since(&notifications, started);
    assert!(fed.iter().any(|m| m == "READY=1"), "{fed:?}");
    assert!(
        fed.iter().any(|m| m == "WATCHDOG=1"),
        "fed while healthy: {fed:?}"
    );

    // Flows for a queue of one message that nobody takes: the worker blocks on the second.
    let records = encode::sample_records(10, false, 1_767_225_600_000);
    let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    for i in 0..4u32 {
        let d = encode::v5_datagram(
            &V5Header {
                sys_uptime_ms: 1_000_000,
                unix_secs: 1_767_225_660,
                flow_sequence: i * 10,
                ..V5Header::default()
            },
            &records,
        );
        s.send_to(&d, ("127.0.0.1", nmsd.flow_port)).expect("send");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The stall limit is 15 s (nmsd_pipeline::heartbeat::STALL_AFTER).
    let not_ready = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        nmsd.get("/readyz").filter(|(code, _)| *code == 503)
    });
    let (_, body) = not_ready.unwrap_or_else(|| {
        panic!(
            "/readyz still ready ({:?}) with a stuck sink; log:\n{}",
            nmsd.get("/readyz"),
            nmsd.log()
        )
    });
    assert!(body.contains("nmsd-sink-questdb"), "{body}");
    let stalled = nmsd_acceptance::wait_for(Duration::from_secs(5), || {
        let (_, status) = nmsd.get("/api/v1/status")?;
        let v: serde_json::Value = serde_json::from_str(&status).ok()?;
        let names: Vec<String> = v["pipeline"]["stalled"]
            .as_array()?
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        (names.len() == 2 && v["pipeline"]["healthy"] == false && v["ready"] == false)
            .then_some(names)
    })
    .unwrap_or_else(|| {
        panic!(
            "status: {:?}; log:\n{}",
            nmsd.get("/api/v1/status"),
            nmsd.log()
        )
    });
    assert_eq!(stalled, ["nmsd-sink-questdb", "nmsd-parse-0"]);
    // Fed every 0.5 s while healthy; nothing for 3 s now.
    let noticed = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = since(&notifications, noticed);
    assert!(
        !after.iter().any(|m| m == "WATCHDOG=1"),
        "the watchdog is still fed: {after:?}"
    );
    assert!(nmsd.log().contains("made no progress"), "{}", nmsd.log());
}
