//! The daemon as an operator runs it: bad input, restarts, the config checker, a QuestDB that is
//! down at start.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions, binary};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_parsers::{FieldSpec, TemplateDef, TemplateKind};
use nmsd_testkit::encode::{self, MessageBuilder, V5Header};

const T0_SECS: u32 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn send(port: u16, datagrams: &[Vec<u8>]) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    for d in datagrams {
        s.send_to(d, ("127.0.0.1", port)).expect("send");
        // Keep well under any buffer limit: this test is about content, not rate.
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A stream of valid datagrams of every version (v9 and IPFIX with their templates).
fn valid_datagrams(records_per: usize) -> (Vec<Vec<u8>>, usize) {
    let recs = encode::sample_records(records_per, false, T0_SECS as u64 * 1000);
    let recs6 = encode::sample_records(records_per, true, T0_SECS as u64 * 1000);
    let t4 = encode::ipv4_template(300);
    let t6 = encode::ipv6_template(301);
    let mut v9 = MessageBuilder::v9(1_000_000, T0_SECS + 60, 1, 7);
    v9.template(&t4).data(&t4, &recs);
    let mut ipfix = MessageBuilder::ipfix(T0_SECS + 60, 0, 9);
    ipfix.template(&t6).data(&t6, &recs6);
    let v5 = encode::v5_datagram(
        &V5Header {
            sys_uptime_ms: 1_000_000,
            unix_secs: T0_SECS + 60,
            ..V5Header::default()
        },
        &recs,
    );
    (vec![v9.finish(), ipfix.finish(), v5], records_per * 3)
}

/// Malformed datagrams of every kind the issue names.
fn malformed() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let (valid, _) = valid_datagrams(5);
    // Truncated at every length.
    for d in &valid {
        for cut in [0, 1, 2, 3, 10, 19, 23, 30, d.len() / 2, d.len() - 1] {
            out.push(d[..cut.min(d.len())].to_vec());
        }
    }
    // Wrong lengths: IPFIX header length larger than the datagram, v5 count too high.
    let mut ipfix = valid[1].clone();
    ipfix[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    out.push(ipfix);
    let mut v5 = valid[2].clone();
    v5[2..4].copy_from_slice(&200u16.to_be_bytes());
    out.push(v5);
    // Zero-length and overrunning sets.
    let mut m = MessageBuilder::v9(1, T0_SECS, 2, 7);
    m.raw_set(0, &[]);
    let mut zero = m.finish();
    let n = zero.len();
    zero[n - 2..].copy_from_slice(&0u16.to_be_bytes());
    out.push(zero);
    let mut m = MessageBuilder::ipfix(T0_SECS, 1, 9);
    m.raw_set(400, &[1, 2, 3, 4]);
    let mut over = m.finish();
    let n = over.len();
    over[n - 6..n - 4].copy_from_slice(&9999u16.to_be_bytes());
    out.push(over);
    // Template with zero-length records ("template loop"), oversized field lengths, v9
    // variable length, too many fields.
    let zero_len = TemplateDef {
        id: 310,
        kind: TemplateKind::Data,
        fields: vec![encode::field(1, 0), encode::field(2, 0)],
    };
    let mut m = MessageBuilder::v9(1, T0_SECS, 3, 7);
    m.template(&zero_len).raw_set(310, &[0; 40]);
    out.push(m.finish());
    let huge = TemplateDef {
        id: 311,
        kind: TemplateKind::Data,
        fields: vec![encode::field(1, 60000), encode::field(2, 60000)],
    };
    let mut m = MessageBuilder::ipfix(T0_SECS, 2, 9);
    m.template(&huge).raw_set(311, &[0; 100]);
    out.push(m.finish());
    let var_v9 = TemplateDef {
        id: 312,
        kind: TemplateKind::Data,
        fields: vec![FieldSpec {
            id: 1,
            len: 0xFFFF,
            enterprise: 0,
        }],
    };
    let mut m = MessageBuilder::v9(1, T0_SECS, 4, 7);
    m.template(&var_v9);
    out.push(m.finish());
    // A template set claiming 10000 fields in a few bytes.
    let mut m = MessageBuilder::v9(1, T0_SECS, 5, 7);
    m.raw_set(0, &[1, 60, 0x27, 0x10, 0, 1, 0, 4]);
    out.push(m.finish());
    // Reserved set id, unknown versions, random bytes.
    let mut m = MessageBuilder::ipfix(T0_SECS, 3, 9);
    m.raw_set(100, &[0; 8]);
    out.push(m.finish());
    out.push(vec![0, 7, 1, 2, 3, 4]);
    out.push(vec![0xFF, 0xFF]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..500 {
        let len = 1 + (i * 37) % 1400;
        let mut d = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.push(x as u8);
        }
        // Half of them look like real versions so the decoders, not the dispatcher, see them.
        if i % 2 == 0 {
            d[0] = 0;
            if len > 1 {
                d[1] = [5, 9, 10][i % 3];
            }
        }
        out.push(d);
    }
    out
}

#[test]
fn malformed_datagrams_are_counted_and_the_daemon_keeps_working() {
    let mut nmsd = Nmsd::start("bad-input", &NmsdOptions::default());
    let bad = malformed();
    send(nmsd.flow_port, &bad);
    let (good, good_records) = valid_datagrams(10);
    send(nmsd.flow_port, &good);

    let received = nmsd.wait_metric(
        "nmsd_flow_datagrams_received_total",
        &[],
        (bad.len() + good.len()) as f64,
        Duration::from_secs(20),
    );
    assert_eq!(received as usize, bad.len() + good.len());
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        good_records as f64,
        Duration::from_secs(10),
    );
    assert!(
        decoded >= good_records as f64,
        "valid records still decode after bad input"
    );
    assert!(nmsd.alive(), "nmsd died on bad input; log:\n{}", nmsd.log());
    assert_eq!(nmsd.get("/healthz").map(|r| r.0), Some(200));

    let malformed = nmsd.metric("nmsd_flow_datagrams_malformed_total", &[]);
    assert!(
        malformed >= 40.0,
        "malformed datagrams counted: {malformed}"
    );
    for kind in [
        "truncated",
        "unknown_version",
        "length_mismatch",
        "bad_record_count",
        "bad_set_length",
        "bad_template",
        "reserved_set_id",
    ] {
        let v = nmsd.metric(
            "nmsd_flow_decode_errors_total",
            &[&format!("kind=\"{kind}\"")],
        );
        assert!(v > 0.0, "decode errors of kind {kind} counted");
    }
    let log = nmsd.log();
    assert!(!log.contains("panicked"), "no panic in the log:\n{log}");
    let status = nmsd.stop();
    assert!(status.success(), "clean exit after bad input: {status:?}");
}

#[test]
fn templates_survive_a_restart() {
    let state = nmsd_acceptance::scratch("restart-state");
    let opts = NmsdOptions {
        state_dir: Some(state.clone()),
        ..NmsdOptions::default()
    };
    let recs = encode::sample_records(20, false, T0_SECS as u64 * 1000);
    let t = encode::ipv4_template(400);

    let mut first = Nmsd::start("restart-1", &opts);
    let mut m = MessageBuilder::v9(1_000_000, T0_SECS + 60, 1, 3);
    m.template(&t).data(&t, &recs);
    send(first.flow_port, &[m.finish()]);
    first.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        20.0,
        Duration::from_secs(10),
    );
    assert!(first.stop().success());
    let saved = std::fs::read_to_string(state.join("templates/worker-0.txt")).unwrap_or_default();
    assert!(
        saved.contains(" 400 d "),
        "template 400 saved at shutdown:\n{saved}"
    );

    // After the restart the exporter sends data only; it must decode at once.
    let mut second = Nmsd::start("restart-2", &opts);
    let mut m = MessageBuilder::v9(1_000_100, T0_SECS + 61, 2, 3);
    m.data(&t, &recs);
    send(second.flow_port, &[m.finish()]);
    let decoded = second.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        20.0,
        Duration::from_secs(10),
    );
    assert_eq!(decoded, 20.0, "first datagram after restart decoded");
    assert_eq!(
        second.metric("nmsd_flow_sets_without_template_total", &[]),
        0.0,
        "no data set waited for a template"
    );
    assert!(second.stop().success());
}

#[test]
fn check_config_accepts_the_shipped_file_and_refuses_bad_ones() {
    let shipped = nmsd_acceptance::workspace().join("config.toml");
    let ok = Command::new(binary())
        .arg("check-config")
        .arg(&shipped)
        .output()
        .expect("nmsd runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = nmsd_acceptance::scratch("bad-config");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[general]\nlog_level = \"info\"\n\n[sources.netflow]\ntype = \"netflow\"\nlisten = \"0.0.0.0:2055\"\nrecieve_buffer = \"4MiB\"\n",
    )
    .expect("write bad config");
    let out = Command::new(binary())
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("nmsd runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:7"), "file and line: {err}");
    assert!(err.contains("recieve_buffer"), "the key: {err}");
    assert!(err.contains("receive_buffer"), "what is allowed: {err}");

    // `run` refuses it the same way, before binding anything.
    let out = Command::new(binary())
        .args(["run", "-c"])
        .arg(&bad)
        .output()
        .expect("nmsd runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:7"));
}

#[test]
fn a_table_buffer_is_flushed_at_batch_bytes_without_waiting_for_batch_interval() {
    let q = QuestDb::shared();
    let mut nmsd = Nmsd::start(
        "batch-bytes",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "bytecap_".into(),
            // Only the byte limit can flush before shutdown.
            batch_interval: "1h".into(),
            sink_extra: "batch_rows = 1000000\nbatch_bytes = \"64KiB\"\n".into(),
            ..NmsdOptions::default()
        },
    );
    let (good, per_round) = valid_datagrams(30);
    let rounds = 20;
    for _ in 0..rounds {
        send(nmsd.flow_port, &good);
    }
    let total = (per_round * rounds) as f64;
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        total,
        Duration::from_secs(20),
    );
    let flows = ["table=\"bytecap_flows\""];
    // Raw flow rows are a few hundred bytes of ILP, so 64 KiB holds a few hundred: most are
    // written long before the interval. (How many are left pending depends on how the worker
    // batched the datagrams, so only "most" is asserted.)
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &flows,
        total / 2.0,
        Duration::from_secs(20),
    );
    assert!(nmsd.stop().success());
    q.wait_applied("bytecap_flows", Duration::from_secs(30));
    assert_eq!(
        q.scalar("select count() from bytecap_flows"),
        Some(total as i64),
        "shutdown flushes what was pending"
    );
}

#[test]
fn runs_without_questdb_and_catches_up_when_it_appears() {
    // A port where nothing listens yet.
    let dead = format!("http://127.0.0.1:{}", nmsd_acceptance::free_tcp_port());
    let mut nmsd = Nmsd::start(
        "no-questdb",
        &NmsdOptions {
            questdb: Some(dead.clone()),
            table_prefix: "outage_".into(),
            // The memory queue alone; the disk buffer's part is below.
            sink_extra: "buffer = { type = \"memory\" }\n".into(),
            ..NmsdOptions::default()
        },
    );
    let (good, n) = valid_datagrams(10);
    send(nmsd.flow_port, &good);
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        n as f64,
        Duration::from_secs(10),
    );
    assert_eq!(nmsd.metric("nmsd_sink_up", &[]), 0.0);
    let status = nmsd.get("/api/v1/status").expect("status").1;
    assert!(status.contains("\"connected\":false"), "{status}");
    let log = nmsd.log();
    assert!(
        log.contains("QuestDB sink cannot write") && log.contains("Retrying"),
        "the log says plainly that the sink is unreachable:\n{log}"
    );
    // Still collecting and serving metrics, and ready: an outage is buffered and said, not a
    // reason for a restart.
    assert!(nmsd.alive());
    let (code, body) = nmsd.get("/readyz").expect("readyz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("degraded")
            && body.contains("sink \"questdb\" down")
            && body.contains("bytes queued"),
        "{body}"
    );
    // It stops even with QuestDB down; the rows it could not write are lost, which the log
    // and the exit status say.
    let status = nmsd.stop();
    let log = nmsd.log();
    assert!(!status.success(), "rows were lost at shutdown: {status}");
    assert!(
        log.contains("were not written and are lost"),
        "the log names the lost rows:\n{log}"
    );

    // With the disk buffer (the default) the same outage loses nothing: the rows wait in
    // state_dir, the stop is clean, and the next start writes them once QuestDB is there.
    let state = nmsd_acceptance::scratch("outage-state");
    let mut nmsd = Nmsd::start(
        "no-questdb-disk",
        &NmsdOptions {
            questdb: Some(dead),
            table_prefix: "outage_".into(),
            state_dir: Some(state.clone()),
            sink_extra: "shutdown_timeout = \"2s\"\n".into(),
            ..NmsdOptions::default()
        },
    );
    send(nmsd.flow_port, &good);
    nmsd.wait_metric(
        "nmsd_buffer_appended_rows_total",
        &[],
        n as f64,
        Duration::from_secs(10),
    );
    let (code, body) = nmsd.get("/readyz").expect("readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("buffering on disk"), "{body}");
    let status = nmsd.stop();
    assert!(status.success(), "nothing was lost: {}", nmsd.log());
    assert!(nmsd.log().contains("disk buffer keeps"), "{}", nmsd.log());

    // An operator who switches that sink to the memory buffer is told the rows are still on
    // disk, unwritten (and they stay there for the next disk-buffered start).
    let mut nmsd = Nmsd::start(
        "no-questdb-switched",
        &NmsdOptions {
            questdb: Some(format!(
                "http://127.0.0.1:{}",
                nmsd_acceptance::free_tcp_port()
            )),
            table_prefix: "outage_".into(),
            state_dir: Some(state.clone()),
            sink_extra: "buffer = { type = \"memory\" }\n".into(),
            ..NmsdOptions::default()
        },
    );
    let log = nmsd.log();
    assert!(
        log.contains("a disk buffer from an earlier run is still there"),
        "{log}"
    );
    assert!(nmsd.stop().success());

    let q = QuestDb::shared();
    let mut nmsd = Nmsd::start(
        "questdb-up",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "outage_".into(),
            state_dir: Some(state),
            ..NmsdOptions::default()
        },
    );
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"outage_flows\""],
        n as f64,
        Duration::from_secs(20),
    );
    assert!(
        nmsd.log().contains("from the previous run"),
        "{}",
        nmsd.log()
    );
    // And live data as before.
    send(nmsd.flow_port, &good);
    nmsd.wait_metric(
        "nmsd_sink_rows_written_total",
        &["table=\"outage_flows\""],
        2.0 * n as f64,
        Duration::from_secs(20),
    );
    assert!(nmsd.stop().success());
    q.wait_applied("outage_flows", Duration::from_secs(30));
    assert_eq!(
        q.scalar("select count() from outage_flows"),
        Some(2 * n as i64)
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let none = Command::new(binary()).output().expect("nmsd runs");
    assert_eq!(none.status.code(), Some(2), "no command is a usage error");
    assert!(String::from_utf8_lossy(&none.stderr).contains("USAGE"));
    let unknown = Command::new(binary())
        .arg("frobnicate")
        .output()
        .expect("nmsd runs");
    assert_eq!(unknown.status.code(), Some(2));
    let help = Command::new(binary())
        .arg("help")
        .output()
        .expect("nmsd runs");
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("USAGE"));
}

/// Configs the outside test run found passing `check-config` and then crashing `run` (a panic,
/// an abort) or accepted as nonsense: both commands refuse each with exit 1, the key and line.
#[test]
fn configs_run_cannot_use_are_refused_by_check_config_and_run_alike() {
    let dir = nmsd_acceptance::scratch("unusable-configs");
    let netflow = |extra: &str| {
        format!(
            "[general]\nstate_dir = \"{}\"\n\n[sources.netflow]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{}\"\n{extra}\n",
            dir.join("state").display(),
            nmsd_acceptance::free_udp_port()
        )
    };
    let cases = [
        (
            "queue-capacity",
            format!(
                "{}[sinks.questdb]\ntype = \"questdb\"\ninputs = [\"netflow\"]\n\
                 queue_capacity = 9223372036854775807\n",
                netflow("")
            ),
            "sinks.questdb.queue_capacity",
            11,
        ),
        (
            "ring-capacity",
            netflow("ring_capacity = 4611686018427387903"),
            "sources.netflow.ring_capacity",
            7,
        ),
        (
            "zero-window",
            format!(
                "{}[processors.rollup]\ntype = \"rollup\"\ninputs = [\"netflow\"]\n\
                 window = \"0s\"\n",
                netflow("")
            ),
            "processors.rollup.window",
            11,
        ),
        (
            "same-table",
            format!(
                "{}[sinks.questdb]\ntype = \"questdb\"\ninputs = [\"netflow\"]\n\
                 flows_table = \"flows\"\nrollup_table = \"flows\"\n",
                netflow("")
            ),
            "sinks.questdb.rollup_table",
            12,
        ),
    ];
    for (name, text, key, line) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, &text).expect("write config");
        for args in [&["check-config"][..], &["run", "-c"][..]] {
            let out = Command::new(binary())
                .args(args)
                .arg(&path)
                .env("NO_COLOR", "1")
                .output()
                .expect("nmsd runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}, {args:?}: refused with exit 1, not a crash: {err}"
            );
            assert!(err.contains(key), "{name}, {args:?}: names {key}: {err}");
            assert!(
                err.contains(&format!("{name}.toml:{line}")),
                "{name}, {args:?}: line {line}: {err}"
            );
        }
    }
}

/// The shipped config.toml, as the shipped unit runs it: /etc/nmsd is read-only there
/// (ProtectSystem=strict) and systemd passes the writable StateDirectory= in
/// $STATE_DIRECTORY. Only the ports are changed, to free ones.
#[test]
fn the_shipped_config_keeps_its_state_in_systemds_state_directory() {
    let dir = nmsd_acceptance::scratch("shipped-config");
    let etc = dir.join("etc");
    let var_lib = dir.join("var-lib-nmsd");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::create_dir_all(&var_lib).expect("state directory");
    let shipped = std::fs::read_to_string(nmsd_acceptance::workspace().join("config.toml"))
        .expect("shipped config");
    let control_port = nmsd_acceptance::free_tcp_port();
    let flow_port = nmsd_acceptance::free_udp_port();
    let config = shipped
        .replace(
            "listen = \"127.0.0.1:9464\"",
            &format!("listen = \"127.0.0.1:{control_port}\""),
        )
        .replace(
            "listen = \"0.0.0.0:2055\"",
            &format!("listen = \"127.0.0.1:{flow_port}\""),
        )
        // Nothing listens there: no rows go to a QuestDB another test may run on 9000.
        .replace(
            "url = \"http://127.0.0.1:9000\"",
            &format!(
                "url = \"http://127.0.0.1:{}\"",
                nmsd_acceptance::free_tcp_port()
            ),
        );
    assert_ne!(config, shipped, "the ports were replaced");
    let cfg_path = etc.join("config.toml");
    std::fs::write(&cfg_path, config).expect("write config");
    let opts = NmsdOptions {
        env: vec![(
            "STATE_DIRECTORY".into(),
            var_lib.to_string_lossy().into_owned(),
        )],
        ..NmsdOptions::default()
    };
    let check = Command::new(binary())
        .arg("check-config")
        .arg(&cfg_path)
        .env("STATE_DIRECTORY", &var_lib)
        .output()
        .expect("nmsd runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut nmsd = Nmsd::launch(dir.clone(), &cfg_path, control_port, flow_port, &opts);
    let (datagrams, _) = valid_datagrams(3);
    send(flow_port, &datagrams);
    nmsd.wait_metric(
        "nmsd_flow_datagrams_received_total",
        &[],
        datagrams.len() as f64,
        Duration::from_secs(10),
    );
    // Nothing listens at the sink's port: the shipped disk buffer keeps what the sink could
    // not write, in $STATE_DIRECTORY, for the next start, so nothing is lost and nmsd exits 0
    // (issue 12); the state must be saved all the same.
    let status = nmsd.stop();
    assert!(status.success(), "{}", nmsd.log());
    assert!(
        nmsd.log().contains("disk buffer keeps") && nmsd.log().contains("nothing lost"),
        "{}",
        nmsd.log()
    );
    let segments = std::fs::read_dir(var_lib.join("buffer").join("questdb"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count()
        })
        .unwrap_or(0);
    assert!(segments > 0, "the disk buffer is in $STATE_DIRECTORY");
    let saved = std::fs::read_dir(var_lib.join("templates"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        saved > 0,
        "template caches in $STATE_DIRECTORY: {}",
        nmsd.log()
    );
    assert!(
        !etc.join("state").exists(),
        "nothing is written next to the config file"
    );
}

/// A UDP socket bound to 127.0.0.1:`port` with SO_REUSEPORT, as a second collector would hold it.
fn foreign_reuseport_socket() -> UdpSocket {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor created and owned here; the sockaddr is a
    // fully initialised sockaddr_in of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket");
        let one: libc::c_int = 1;
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "SO_REUSEPORT");
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let r = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "bind");
        UdpSocket::from_raw_fd(fd)
    }
}

/// Outside test run, item 7: with a foreign SO_REUSEPORT socket on the flow port, nmsd started
/// and the kernel sent part of the exporters' datagrams to that socket. nmsd must refuse to
/// start instead, and say why.
#[test]
fn refuses_to_share_the_flow_port_with_a_foreign_socket() {
    let foreign = foreign_reuseport_socket();
    let port = foreign.local_addr().expect("bound").port();
    let dir = nmsd_acceptance::scratch("foreign-socket");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[general]\nstate_dir = \"{}\"\n\n[control]\nlisten = \"127.0.0.1:{}\"\n\n\
             [sources.netflow]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{port}\"\nsockets = 2\n",
            dir.join("state").display(),
            nmsd_acceptance::free_tcp_port()
        ),
    )
    .expect("write config");
    let mut child = Nmsd::command(&cfg, &NmsdOptions::default())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nmsd starts");
    let exited =
        nmsd_acceptance::wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("nmsd started on a port a foreign socket holds");
    }
    let out = child.wait_with_output().expect("nmsd output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refusal exits non-zero: {err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("nmsd did not create"),
        "says which port and why: {err}"
    );
    // Held until nmsd has given up.
    drop(foreign);
}

/// The kernel's drop count of the UDP socket(s) on `port` (last column of /proc/net/udp{,6}).
fn kernel_udp_drops(port: u16) -> u64 {
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if local_port == Some(port) {
                drops += f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    drops
}

/// Outside test run, item 13: the pipeline stalled (here: QuestDB down, the sink queue full
/// under `block`, so workers, rings and the receive thread block in turn) and the kernel
/// dropped datagrams on the full socket buffer, but the drop metric stayed 0: it was only
/// read from ancillary data of successful receives. It must count them while stalled.
#[test]
fn kernel_drops_are_counted_while_the_pipeline_is_stalled() {
    let mut nmsd = Nmsd::start(
        "stalled-drops",
        &NmsdOptions {
            questdb: Some(format!(
                "http://127.0.0.1:{}",
                nmsd_acceptance::free_tcp_port()
            )),
            // The memory queue alone: a disk buffer would take the batches off it.
            sink_extra: "queue_capacity = 1\nqueue_full_policy = \"block\"\n\
                         shutdown_timeout = \"1s\"\nbuffer = { type = \"memory\" }\n"
                .into(),
            receive_buffer: "64KiB".into(),
            netflow_extra: "ring_capacity = 1\nbatch_datagrams = 1\n".into(),
            ..NmsdOptions::default()
        },
    );
    let (datagrams, _) = valid_datagrams(10);
    let v5 = datagrams[2].clone();
    let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    let sent = 3000;
    for _ in 0..sent {
        s.send_to(&v5, ("127.0.0.1", nmsd.flow_port)).expect("send");
    }
    let dropped = nmsd_acceptance::wait_for(Duration::from_secs(5), || {
        let d = kernel_udp_drops(nmsd.flow_port);
        (d > 0).then_some(d)
    })
    .expect("the kernel drops behind the stalled pipeline");
    let received = nmsd.metric("nmsd_flow_datagrams_received_total", &[]);
    assert!(
        received < f64::from(sent) / 2.0,
        "the pipeline is stalled ({received} of {sent} read)"
    );
    let counted = nmsd.wait_metric(
        "nmsd_flow_socket_kernel_drops_total",
        &[],
        dropped as f64,
        Duration::from_secs(5),
    );
    assert!(
        counted >= dropped as f64,
        "kernel dropped {dropped}, metric says {counted}"
    );
    assert_eq!(
        nmsd.metric("nmsd_flow_datagrams_received_total", &[]),
        received,
        "still stalled while the drops were counted"
    );
    nmsd.stop();
}

/// GET /healthz on a fresh connection: (the response, how long it took), or None if it did not
/// answer within `limit`.
fn healthz_within(port: u16, limit: Duration) -> Option<(String, Duration)> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: nmsd\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let took = started.elapsed();
    (took <= limit && !response.is_empty()).then_some((response, took))
}

/// Whether nmsd closed `s` (end of stream or reset) within `limit`.
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    let _ = s.set_read_timeout(Some(limit));
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Outside test run, item 17: 1,100 idle connections against an open-files limit of 1,024 made
/// /healthz time out for 30 s. Here: a limit of 256 and 300 idle connections; /healthz on a new
/// connection still answers within a second.
#[test]
fn idle_connections_beyond_the_fd_limit_do_not_lock_out_healthz() {
    let nmsd = Nmsd::start(
        "control-flood",
        &NmsdOptions {
            nofile_limit: Some(256),
            ..NmsdOptions::default()
        },
    );
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", nmsd.control_port)).expect("connect"))
        .collect();
    // Let nmsd accept what it can.
    std::thread::sleep(Duration::from_millis(500));
    let answered = healthz_within(nmsd.control_port, Duration::from_secs(1));
    let (response, took) = answered.unwrap_or_else(|| {
        panic!(
            "/healthz did not answer within 1 s behind 300 idle connections; log:\n{}",
            nmsd.log()
        )
    });
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    eprintln!("/healthz answered in {took:?}");
    assert!(
        nmsd.metric(
            "nmsd_control_connections_closed_total",
            &["reason=\"evicted\""]
        ) > 0.0,
        "evictions are counted"
    );
    drop(idle);
}

/// Half-sent and idle connections are closed after [control] request_timeout / idle_timeout.
#[test]
fn half_sent_and_idle_control_connections_are_closed() {
    use std::io::Write;
    let nmsd = Nmsd::start(
        "control-timeouts",
        &NmsdOptions {
            control_extra: "request_timeout = \"500ms\"\nidle_timeout = \"1s\"\n".into(),
            ..NmsdOptions::default()
        },
    );
    let connect =
        || std::net::TcpStream::connect(("127.0.0.1", nmsd.control_port)).expect("connect");
    // Nothing sent at all.
    let mut silent = connect();
    // Headers begun, never finished, trickled to look alive.
    let mut half = connect();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: n")
        .expect("send");
    // A complete keep-alive request, then nothing.
    let mut kept = connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: nmsd\r\n\r\n")
        .expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let _ = half.write_all(b"m");
    assert!(closed_within(&mut silent, Duration::from_secs(3)), "silent");
    assert!(
        closed_within(&mut half, Duration::from_secs(3)),
        "half-sent"
    );
    assert!(closed_within(&mut kept, Duration::from_secs(4)), "idle");
    assert!(
        nmsd.metric(
            "nmsd_control_connections_closed_total",
            &["reason=\"request_timeout\""]
        ) >= 2.0
    );
    assert!(
        nmsd.metric(
            "nmsd_control_connections_closed_total",
            &["reason=\"idle_timeout\""]
        ) >= 1.0
    );
    assert!(healthz_within(nmsd.control_port, Duration::from_secs(1)).is_some());
}
