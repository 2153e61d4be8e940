//! The engine as a whole, on a fake clock: a real loopback socket stands in for the agent, the
//! test decides when time passes and what the agent answers.

use std::net::UdpSocket as StdUdpSocket;
use std::sync::mpsc as std_mpsc;

use nmsd_parsers::snmp::Value;
use nmsd_parsers::snmp::pdu::{AnyPdu, Message};

use super::plan::Modules;
use super::testutil::{COMMUNITY, oid, response, v2c_device};
use super::*;

/// A clock the test moves: monotonic and wall time advance together.
#[derive(Clone)]
struct FakeClock(Arc<Mutex<(Instant, u64)>>);

/// Where the fake wall clock starts (a whole number of intervals of every test).
const WALL0: u64 = 1_700_000_000_000;

impl FakeClock {
    fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            t.0 += by;
            t.1 += by.as_millis() as u64;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.0
            .lock()
            .map(|t| t.0)
            .unwrap_or_else(|_| Instant::now())
    }

    fn unix_ms(&self) -> u64 {
        self.0.lock().map(|t| t.1).unwrap_or(0)
    }
}

/// One engine polling one device whose agent is a socket of the test's.
struct Rig {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    clock: FakeClock,
    polls: std_mpsc::Receiver<PollOutput>,
    agent: StdUdpSocket,
}

impl Rig {
    fn new(tweak: impl FnOnce(&mut DeviceSpec)) -> Rig {
        let agent = StdUdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
        agent.set_nonblocking(true).expect("non-blocking");
        let mut spec = v2c_device("r1", agent.local_addr().expect("an address"));
        tweak(&mut spec);
        let plan = Plan {
            devices: vec![spec],
            max_in_flight: 64,
            custom: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (tx, polls) = std_mpsc::channel();
        let output = Box::new(move |o: PollOutput| {
            let _ = tx.send(o);
        });
        let mut engine = rt
            .block_on(Engine::new(
                plan,
                "127.0.0.1:0".parse().expect("an address"),
                "[::1]:0".parse().expect("an address"),
                output,
                EngineShared::default(),
            ))
            .expect("the engine binds");
        let clock = FakeClock(Arc::new(Mutex::new((Instant::now(), WALL0))));
        engine.clock = Box::new(clock.clone());
        let rig = Rig {
            rt,
            engine,
            clock,
            polls,
            agent,
        };
        rig.settle();
        rig
    }

    /// Let the runtime's reactor see the sockets' readiness (real time, not the fake clock).
    fn settle(&self) {
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(2)).await });
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Move the clock on and fire what is due.
    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.settle();
        self.engine.fire_timers();
    }

    /// Move the clock to the next timer and fire it.
    fn next_timer(&mut self) -> Duration {
        let at = self.engine.timers.next_at().expect("a timer");
        let by = at.saturating_duration_since(self.now());
        self.advance(by);
        by
    }

    /// The request ids the agent received since the last call.
    fn requests(&self) -> Vec<i32> {
        let mut ids = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.agent.recv_from(&mut buf) {
            match Message::decode(&buf[..n]).map(|m| m.pdu) {
                Ok(AnyPdu::Standard(p)) => ids.push(p.request_id),
                other => panic!("not a request: {other:?}"),
            }
        }
        ids
    }

    /// Send `bytes` to the engine from `from` and let it read them.
    fn reply_from(&mut self, from: &StdUdpSocket, bytes: &[u8]) {
        let engine = self.engine.local_addr4().expect("an IPv4 socket");
        from.send_to(bytes, engine).expect("sent");
        self.settle();
        let mut buf = vec![0u8; 65536];
        self.engine.drain(false, &mut buf);
    }

    fn reply(&mut self, bytes: &[u8]) {
        let agent = self.agent.try_clone().expect("a socket");
        self.reply_from(&agent, bytes);
    }

    fn status(&self) -> &DeviceStatus {
        &self.engine.devices[0].status
    }

    fn finished(&self) -> Vec<PollOutput> {
        self.polls.try_iter().collect()
    }
}

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

#[test]
fn the_first_poll_starts_on_the_devices_phase() {
    let mut rig = Rig::new(|_| {});
    rig.engine.start();
    let phase = rig.engine.devices[0].phase;
    assert!(phase < 10 * S);
    // WALL0 is on a 10 s boundary: the first slot is the phase after it (or a whole interval
    // when the phase is 0).
    let wait = rig.next_timer();
    let expected = if phase.is_zero() { 10 * S } else { phase };
    assert_eq!(wait, expected);
    let slot = WALL0 + expected.as_millis() as u64;
    assert_eq!(
        rig.engine.devices[0].poll.as_ref().map(|p| p.slot_ms),
        Some(slot)
    );
    // Two requests at once (the device's cap), the third job waits for one of them.
    assert_eq!(rig.requests().len(), 2);
    assert_eq!(rig.engine.outstanding.len(), 2);
}

#[test]
fn a_silent_device_is_retried_then_failed_then_probed_once_per_interval() {
    let mut rig = Rig::new(|_| {});
    rig.engine.start();
    rig.next_timer();
    let first = rig.requests();
    assert_eq!(first.len(), 2, "system group and ifTable");
    // The timeout is 1 s: not a millisecond early.
    rig.advance(999 * MS);
    assert!(rig.requests().is_empty());
    rig.advance(MS);
    let mut retry = rig.requests();
    retry.sort_unstable();
    let mut expected = first.clone();
    expected.sort_unstable();
    assert_eq!(retry, expected, "v2c resends under the same request ids");
    assert_eq!(rig.status().timeouts, 2);
    rig.advance(S);
    assert_eq!(rig.requests().len(), 2, "second retry");
    assert!(rig.finished().is_empty());
    rig.advance(S);
    // Three attempts each, then the poll fails, ifXTable never sent (nothing answered).
    assert!(rig.requests().is_empty());
    let out = rig.finished();
    assert_eq!(out.len(), 1);
    let row = &out[0].device;
    assert_eq!((row.up, row.error), (false, Some("timeout")));
    assert_eq!((row.requests, row.timeouts), (6, 6));
    let detail = row.error_detail.as_deref().unwrap_or_default();
    assert!(detail.contains("after 3 attempts"), "{detail}");
    assert!(detail.contains("wrong community"), "{detail}");
    assert_eq!(row.poll_ms, 3000);
    assert_eq!(row.rtt_ms, None);
    assert!(rig.engine.outstanding.is_empty());
    assert!(rig.engine.devices[0].unreachable);
    assert_eq!(rig.status().state, "failing");
    // The next polls: one probe, no retry, on their slots (poll 1 took 3 s, the probes 1 s).
    for (n, wait) in [(2, 7 * S), (3, 9 * S)] {
        assert_eq!(rig.next_timer(), wait, "poll {n} on its slot");
        assert_eq!(rig.requests().len(), 1, "poll {n}: one probe");
        rig.advance(S);
        assert!(rig.requests().is_empty(), "poll {n}: no retry");
        let out = rig.finished();
        let row = &out[0].device;
        assert_eq!(
            (row.requests, row.timeouts, row.up),
            (1, 1, false),
            "poll {n}"
        );
    }
    assert_eq!(rig.status().state, "down");
    assert_eq!(rig.status().polls_failed, 3);
    assert_eq!(rig.status().polls_overrun, 0);
}

#[test]
fn a_poll_cut_at_its_time_limit_overruns_the_next_slot() {
    // Retries outlast the interval: 4 s timeouts, five retries, a 10 s interval.
    let mut rig = Rig::new(|d| {
        d.timeout = 4 * S;
        d.retries = 5;
        d.modules = Modules {
            interfaces: false,
            ..Modules::default()
        };
    });
    rig.engine.start();
    rig.next_timer();
    let slot = rig.engine.devices[0].next_slot_ms - 10_000;
    assert_eq!(rig.requests().len(), 1);
    rig.advance(4 * S);
    rig.advance(4 * S);
    assert_eq!(rig.requests().len(), 2, "two retries");
    // At 10 s the next slot comes while the poll still runs: skipped and counted; the poll
    // then hits its limit (the interval) and fails.
    rig.advance(2 * S);
    assert_eq!(rig.status().polls_overrun, 1);
    let out = rig.finished();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].device.ts_ms, slot);
    assert_eq!(out[0].device.error, Some("poll_timeout"));
    assert!(
        rig.engine.outstanding.is_empty(),
        "what was out is cancelled"
    );
    // The stale deadline of the cancelled attempt (at 12 s) does nothing; the next poll is
    // the slot after the skipped one, as a probe.
    assert_eq!(rig.next_timer(), 2 * S);
    assert!(rig.requests().is_empty() && rig.finished().is_empty());
    assert_eq!(rig.next_timer(), 8 * S);
    assert_eq!(
        rig.engine.devices[0].poll.as_ref().map(|p| p.slot_ms),
        Some(slot + 20_000)
    );
    assert!(rig.engine.devices[0].poll.as_ref().is_some_and(|p| p.probe));
    assert_eq!(rig.requests().len(), 1);
}

fn sys_reply(id: i32, community: &[u8]) -> Vec<u8> {
    let sys = |c: u32| oid(&[1, 3, 6, 1, 2, 1, 1, c, 0]);
    response(
        community,
        id,
        0,
        0,
        &[
            (sys(3), Value::TimeTicks(4200)),
            (sys(5), Value::OctetString(b"r1.lab")),
        ],
    )
}

#[test]
fn replies_are_matched_by_request_id_source_and_community() {
    let mut rig = Rig::new(|d| {
        d.modules = Modules {
            interfaces: false,
            ..Modules::default()
        }
    });
    rig.engine.start();
    rig.next_timer();
    let ids = rig.requests();
    assert_eq!(ids.len(), 1);
    let id = ids[0];
    // Wrong community, another port, an unknown id: all dropped, the request still out.
    rig.reply(&sys_reply(id, b"private"));
    let stranger = StdUdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    rig.reply_from(&stranger, &sys_reply(id, COMMUNITY));
    rig.reply(&sys_reply(id.wrapping_add(1), COMMUNITY));
    rig.reply(b"\x30\x03garbage");
    assert!(rig.engine.outstanding.contains_key(&id));
    assert!(rig.finished().is_empty());
    // The first attempt times out; the answer comes 5 ms after the resend.
    rig.advance(S);
    assert_eq!(rig.requests(), [id]);
    rig.advance(5 * MS);
    rig.reply(&sys_reply(id, COMMUNITY));
    let out = rig.finished();
    assert_eq!(out.len(), 1);
    let row = &out[0].device;
    assert!(row.up, "{row:?}");
    assert_eq!((row.requests, row.timeouts, row.varbinds), (2, 1, 2));
    assert_eq!(
        row.rtt_ms,
        Some(5.0),
        "measured from the attempt that was answered"
    );
    assert_eq!(row.poll_ms, 1005);
    assert_eq!(row.sys_name.as_deref(), Some("r1.lab"));
    assert_eq!(row.sys_uptime_ticks, Some(4200));
    assert_eq!(rig.status().state, "up");
    // A duplicate of the answer is late: nothing happens.
    rig.reply(&sys_reply(id, COMMUNITY));
    assert!(rig.finished().is_empty());
    assert_eq!(rig.status().polls_ok, 1);
}

#[test]
fn an_answering_device_is_not_cut_short_by_one_timeout() {
    // The system group answers, one walk times out: the poll goes on with the other jobs.
    let mut rig = Rig::new(|d| d.retries = 0);
    rig.engine.start();
    rig.next_timer();
    let ids = rig.requests();
    assert_eq!(ids.len(), 2);
    rig.advance(500 * MS);
    rig.reply(&sys_reply(ids[0], COMMUNITY));
    // The answer freed a slot: ifXTable goes out.
    assert_eq!(rig.requests().len(), 1);
    rig.advance(500 * MS);
    // ifTable timed out (no retries): the poll has its error but ifXTable is still out.
    assert!(rig.finished().is_empty());
    assert_eq!(rig.engine.outstanding.len(), 1);
    rig.advance(500 * MS);
    let out = rig.finished();
    let row = &out[0].device;
    assert_eq!(
        (row.up, row.error, row.requests),
        (false, Some("timeout"), 3)
    );
    assert!(
        !rig.engine.devices[0].unreachable,
        "it answered: no probe next time"
    );
    assert!(
        out[0].interfaces.is_empty(),
        "no interface rows without both walks"
    );
}

/// Issue 11 item 10: a device that does not answer cost every job's full retries each
/// interval (9 requests here) and overran its interval. Now the first failed poll stops at
/// the jobs already out, and later polls are one probe without retries.
#[test]
fn a_dead_device_is_probed_once_per_interval() {
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    dead.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let plan = Plan {
        devices: vec![DeviceSpec {
            name: Arc::from("dead"),
            addr: dead.local_addr().unwrap(),
            credentials: Credentials::V2c {
                community: Arc::new(zeroize::Zeroizing::new(b"public".to_vec())),
            },
            interval: Duration::from_millis(700),
            timeout: Duration::from_millis(100),
            retries: 2,
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
    let board: StatusBoard = Default::default();
    let shared = EngineShared {
        board: board.clone(),
        ..Default::default()
    };
    let (polls_tx, polls_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(1);
    let engine_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let out = Box::new(move |o: PollOutput| {
                let _ = polls_tx.send(o.device.up);
            });
            let engine = Engine::new(
                plan,
                "127.0.0.1:0".parse().unwrap(),
                "[::1]:0".parse().unwrap(),
                out,
                shared,
            )
            .await
            .unwrap();
            engine.run(stop_rx).await;
        });
    });
    // Requests the dead device received per finished poll.
    let mut per_poll = Vec::new();
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while per_poll.len() < 4 {
        if dead.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        if let Ok(up) = polls_rx.try_recv() {
            assert!(!up);
            per_poll.push(got);
            got = 0;
        }
    }
    let _ = stop_tx.blocking_send(Command::Stop);
    engine_thread.join().unwrap();
    // Poll 1: the two jobs in flight (system, ifTable) with their retries, nothing more.
    assert_eq!(per_poll[0], 2 * 3, "{per_poll:?}");
    assert_eq!(
        &per_poll[1..],
        [1, 1, 1],
        "one probe per interval: {per_poll:?}"
    );
    let st = board.lock().unwrap()[0].clone();
    assert_eq!(st.polls_overrun, 0);
    assert_eq!(st.state, "down");
}
