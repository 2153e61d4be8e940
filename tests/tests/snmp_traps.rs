//! Traps and informs sent with net-snmp's `snmptrap` and `snmpinform` (v2c and v3) arrive as
//! rows in QuestDB; informs are answered (the tools exit 0 only then); a trap with a wrong
//! password is dropped and counted. v3 messages below their profile's security level, replayed
//! or stale are dropped and counted, and a burst of 20,000 traps from two unpaced senders is
//! stored whole.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;

/// Secret files for the profiles below.
struct Secrets(PathBuf);

impl Secrets {
    fn new() -> Secrets {
        Secrets(nmsd_acceptance::scratch("trap-secrets"))
    }

    fn file(&self, name: &str, value: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, value).expect("secret file");
        p.display().to_string()
    }
}

/// `[[sources.traps.profiles]]` of a v3 user (auth and privacy as in tests/src/snmpd.rs).
fn v3_profile(s: &Secrets, name: &str, user: &str, level: &str) -> String {
    let mut p = format!(
        "\n[[sources.traps.profiles]]\nname = \"{name}\"\nversion = \"3\"\nuser = \"{user}\"\n\
         level = \"{level}\"\n"
    );
    if level != "noAuthNoPriv" {
        p.push_str(&format!(
            "auth = \"sha\"\nauth_password = {{ file = \"{}\" }}\n",
            s.file(&format!("{name}-auth"), "authpass-sha1")
        ));
    }
    if level == "authPriv" {
        p.push_str(&format!(
            "priv = \"aes\"\npriv_password = {{ file = \"{}\" }}\n",
            s.file(&format!("{name}-priv"), "privpass-aes128")
        ));
    }
    p
}

/// nmsd receiving traps on a fresh port with `traps` (the `[sources.traps]` body) and
/// `profiles`; returns it and the trap address.
fn start(name: &str, q: &QuestDb, traps: &str, profiles: &str) -> (Nmsd, String) {
    let port = nmsd_acceptance::free_udp_port();
    let nmsd = Nmsd::start(
        name,
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: format!("{}_", name.replace('-', "_")),
            extra: format!(
                "[sources.traps]\ntype = \"snmp_traps\"\nlisten = [\"127.0.0.1:{port}\"]\n\
                 {traps}\n{profiles}"
            ),
            ..NmsdOptions::default()
        },
    );
    (nmsd, format!("127.0.0.1:{port}"))
}

thread_local! {
    /// net-snmp's tools keep their engine boots in `SNMP_PERSISTENT_DIR/snmpapp.conf`
    /// (`/var/lib/snmp` by default) and rewrite it on every v3 run. Tests run on two threads,
    /// and two snmptrap runs at once tore the shared file ("buffer too small to read octet
    /// string", then "USM unknown security name"). Each test thread gets its own.
    static NET_SNMP_PERSIST: PathBuf = nmsd_acceptance::scratch("net-snmp-persist");
}

/// Run a net-snmp tool (`-m ""`: no MIBs, one retry at most).
fn net_snmp(tool: &str, args: &[&str]) -> Output {
    Command::new(nmsd_acceptance::require(tool))
        .env("SNMP_PERSISTENT_DIR", NET_SNMP_PERSIST.with(|p| p.clone()))
        .args(["-m", "", "-r", "1", "-t", "3"])
        .args(args)
        .output()
        .expect("net-snmp tool runs")
}

fn ok(tool: &str, args: &[&str]) {
    let out = net_snmp(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `-v3` options of a user at a level, with the passwords of [`v3_profile`].
fn v3_args<'a>(user: &'a str, level: &'a str) -> Vec<&'a str> {
    let mut a = vec!["-v3", "-l", level, "-u", user];
    if level != "noAuthNoPriv" {
        a.extend_from_slice(&["-a", "SHA", "-A", "authpass-sha1"]);
    }
    if level == "authPriv" {
        a.extend_from_slice(&["-x", "AES", "-X", "privpass-aes128"]);
    }
    a
}

/// Stop nmsd (its last batch is flushed) and return `select <cols> from <table> order by ts`.
fn rows_after_stop(
    nmsd: &mut Nmsd,
    q: &QuestDb,
    table: &str,
    cols: &str,
) -> Vec<Vec<serde_json::Value>> {
    assert!(nmsd.stop().success());
    q.wait_applied(table, Duration::from_secs(30));
    q.query(&format!("select {cols} from {table} order by ts"))
}

/// What a real `snmptrap` puts on the wire: run it against a socket of our own and return the
/// datagram.
fn capture_snmptrap(args: &[&str]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("capture socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let to = sock.local_addr().expect("addr").to_string();
    let mut a: Vec<&str> = args.to_vec();
    let at = a.iter().position(|x| *x == "TO").expect("TO in args");
    a[at] = &to;
    ok("snmptrap", &a);
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("snmptrap sent a datagram");
    buf.truncate(n);
    buf
}

#[test]
fn net_snmp_traps_and_informs_are_stored() {
    let q = QuestDb::shared();
    let s = Secrets::new();
    let traps = format!(
        "users = [\"sha-aes\", \"sha256-aes256\"]\n\
         communities = [{{ name = \"lab\", community = {{ file = \"{}\" }} }}]\n",
        s.file("c", "public")
    );
    let profiles = format!(
        r#"
[[sources.traps.profiles]]
name = "sha-aes"
version = "3"
user = "u_sha_aes"
auth = "sha"
auth_password = {{ file = "{}" }}
priv = "aes"
priv_password = {{ file = "{}" }}

[[sources.traps.profiles]]
name = "sha256-aes256"
version = "3"
user = "u_sha256_aes256"
auth = "sha256"
auth_password = {{ file = "{}" }}
priv = "aes256"
priv_password = {{ file = "{}" }}
"#,
        s.file("a1", "authpass-sha1"),
        s.file("p1", "privpass-aes128"),
        s.file("a2", "authpass-sha256"),
        s.file("p2", "privpass-aes256"),
    );
    let (mut nmsd, to) = start("traps", q, &traps, &profiles);
    let to = to.as_str();
    let v3a = v3_args("u_sha_aes", "authPriv");
    let v3b = [
        "-v3",
        "-l",
        "authPriv",
        "-u",
        "u_sha256_aes256",
        "-a",
        "SHA-256",
        "-A",
        "authpass-sha256",
        "-x",
        "AES-256",
        "-X",
        "privpass-aes256",
    ];
    let link_down = ["", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2"];
    let mut v2 = vec!["-v", "2c", "-c", "public", to];
    v2.extend_from_slice(&link_down);
    ok("snmptrap", &v2);
    let mut v2i = vec!["-v", "2c", "-c", "public", to, "", "1.3.6.1.6.3.1.1.5.4"];
    v2i.extend_from_slice(&["1.3.6.1.2.1.2.2.1.1.2", "i", "2"]);
    ok("snmpinform", &v2i);
    let mut t3a = v3a.clone();
    t3a.extend_from_slice(&["-e", "0x8000000001020304", to, "", "1.3.6.1.6.3.1.1.5.3"]);
    ok("snmptrap", &t3a);
    let mut t3b: Vec<&str> = v3b.to_vec();
    t3b.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.3"]);
    ok("snmptrap", &t3b);
    let mut i3a = v3a.clone();
    i3a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.4"]);
    ok("snmpinform", &i3a);
    let mut i3b: Vec<&str> = v3b.to_vec();
    i3b.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.4"]);
    ok("snmpinform", &i3b);
    // A wrong authentication password: dropped and counted.
    let mut bad = v3a.clone();
    bad[8] = "wrong-password";
    bad.extend_from_slice(&["-e", "0x8000000001020304", to, "", "1.3.6.1.6.3.1.1.5.3"]);
    ok("snmptrap", &bad);

    let dropped = nmsd.wait_metric(
        "nmsd_snmp_traps_dropped_total",
        &["reason=\"authentication\""],
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(
        dropped, 1.0,
        "the wrong-password trap is dropped and counted"
    );
    let rows = rows_after_stop(
        &mut nmsd,
        q,
        "traps_snmp_trap",
        "version, pdu, trap_oid, security_name",
    );
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or("").to_string();
            (s(0), s(1), s(2), s(3))
        })
        .collect();
    let want = [
        ("v2c", "trap", "1.3.6.1.6.3.1.1.5.3", "lab"),
        ("v2c", "inform", "1.3.6.1.6.3.1.1.5.4", "lab"),
        ("v3", "trap", "1.3.6.1.6.3.1.1.5.3", "u_sha_aes"),
        ("v3", "trap", "1.3.6.1.6.3.1.1.5.3", "u_sha256_aes256"),
        ("v3", "inform", "1.3.6.1.6.3.1.1.5.4", "u_sha_aes"),
        ("v3", "inform", "1.3.6.1.6.3.1.1.5.4", "u_sha256_aes256"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
    // v2c and v3 traps have no generic trap number: NULL, not 0 (coldStart).
    let generic = q.query("select count() from traps_snmp_trap where generic_trap is not null");
    assert_eq!(
        generic[0][0].as_i64(),
        Some(0),
        "generic_trap must be null: {generic:?}"
    );
    let vb = q.query("select varbinds from traps_snmp_trap where version = 'v2c' and pdu = 'trap'");
    assert!(
        vb[0][0]
            .as_str()
            .unwrap_or("")
            .contains("\"1.3.6.1.2.1.2.2.1.1.2\""),
        "varbinds as JSON: {vb:?}"
    );
}

/// Issue 11 item 4: a message naming a user must carry the security level of that user's
/// profile. noAuthNoPriv and authNoPriv traps and informs naming an authPriv user (and a
/// noAuthNoPriv one naming an authNoPriv user) are dropped and counted; informs get an
/// unsupportedSecLevel Report, which snmpinform reports at once instead of timing out. A
/// noAuthNoPriv profile still works: its informs are answered at their own level (item 5:
/// snmpinform exits 0).
#[test]
fn v3_messages_below_their_profiles_level_are_dropped() {
    let q = QuestDb::shared();
    let s = Secrets::new();
    let profiles = [
        v3_profile(&s, "strict", "u_sha_aes", "authPriv"),
        v3_profile(&s, "signed", "u_auth", "authNoPriv"),
        v3_profile(&s, "open", "u_noauth", "noAuthNoPriv"),
    ]
    .concat();
    let traps = "users = [\"strict\", \"signed\", \"open\"]\n";
    let (mut nmsd, to) = start("trap-levels", q, traps, &profiles);
    let to = to.as_str();
    let engine = ["-e", "0x8000000001020305"];
    let forged = [
        ("u_sha_aes", "noAuthNoPriv"),
        ("u_sha_aes", "authNoPriv"),
        ("u_auth", "noAuthNoPriv"),
    ];
    for (user, level) in forged {
        let mut a = v3_args(user, level);
        a.extend_from_slice(&engine);
        a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.2"]);
        // snmptrap cannot know; nmsd must not store it.
        ok("snmptrap", &a);
    }
    for level in ["noAuthNoPriv", "authNoPriv"] {
        let mut a = v3_args("u_sha_aes", level);
        a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.2"]);
        let out = net_snmp("snmpinform", &a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Unsupported security level"),
            "a {level} inform naming an authPriv user is refused with a Report: {err}"
        );
    }
    // What the profiles allow is stored.
    let mut a = v3_args("u_noauth", "noAuthNoPriv");
    a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.4"]);
    ok("snmpinform", &a);
    let mut a = v3_args("u_noauth", "noAuthNoPriv");
    a.extend_from_slice(&engine);
    a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.3"]);
    ok("snmptrap", &a);
    let mut a = v3_args("u_sha_aes", "authPriv");
    a.extend_from_slice(&engine);
    a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.3"]);
    ok("snmptrap", &a);
    let mut a = v3_args("u_auth", "authNoPriv");
    a.extend_from_slice(&[to, "", "1.3.6.1.6.3.1.1.5.4"]);
    ok("snmpinform", &a);

    let dropped = nmsd.wait_metric(
        "nmsd_snmp_traps_dropped_total",
        &["reason=\"security_level\""],
        5.0,
        Duration::from_secs(10),
    );
    assert_eq!(dropped, 5.0, "3 traps and 2 informs below their level");
    let log = nmsd.log();
    assert!(
        log.contains("SNMP traps dropped") && log.contains("its profile requires authPriv"),
        "the drop reaches the log"
    );
    let rows = rows_after_stop(
        &mut nmsd,
        q,
        "trap_levels_snmp_trap",
        "pdu, trap_oid, security_name",
    );
    let mut got: Vec<String> = rows
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or("").to_string();
            format!("{} {} {}", s(0), s(1), s(2))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "inform 1.3.6.1.6.3.1.1.5.4 u_auth",
            "inform 1.3.6.1.6.3.1.1.5.4 u_noauth",
            "trap 1.3.6.1.6.3.1.1.5.3 u_noauth",
            "trap 1.3.6.1.6.3.1.1.5.3 u_sha_aes",
        ],
        "no row under a forged level (warmStart, 1.3.6.1.6.3.1.1.5.2)"
    );
}

/// Issue 11 item 5 (RFC 3414 §3.2.7): a captured authPriv trap replayed is stored once; a trap
/// with older boots, or a time more than 150 s behind what its engine sent before, is dropped.
/// `snmptrap -Z BOOTS,TIME` sets what the sending engine claims.
#[test]
fn replayed_and_stale_v3_traps_are_dropped() {
    let q = QuestDb::shared();
    let s = Secrets::new();
    let profiles = v3_profile(&s, "strict", "u_sha_aes", "authPriv");
    let (mut nmsd, to) = start("trap-replay", q, "users = [\"strict\"]\n", &profiles);
    let to = to.as_str();
    let trap = |z: &str, oid: &str| {
        let mut a = v3_args("u_sha_aes", "authPriv");
        a.extend_from_slice(&["-e", "0x80000000010203AA", "-Z", z, to, "", oid]);
        ok("snmptrap", &a);
    };
    // linkDown at boots 3, time 1000, captured off the wire.
    let mut a = v3_args("u_sha_aes", "authPriv");
    a.extend_from_slice(&[
        "-e",
        "0x80000000010203AA",
        "-Z",
        "3,1000",
        "TO",
        "",
        "1.3.6.1.6.3.1.1.5.3",
    ]);
    let captured = capture_snmptrap(&a);
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let replay = |times: usize| {
        for _ in 0..times {
            attacker.send_to(&captured, to).expect("send");
        }
    };
    replay(10);
    trap("3,800", "1.3.6.1.6.3.1.1.5.2"); // 200 s older than the latest: stale
    trap("2,5000", "1.3.6.1.6.3.1.1.5.2"); // older boots: stale
    trap("3,1100", "1.3.6.1.6.3.1.1.5.4"); // linkUp, newer: stored
    replay(1); // still in the window, but seen
    trap("4,1", "1.3.6.1.6.3.1.1.5.1"); // coldStart after a reboot: stored
    replay(1); // older boots now
    let replays = nmsd.wait_metric(
        "nmsd_snmp_traps_dropped_total",
        &["reason=\"replay\""],
        10.0,
        Duration::from_secs(10),
    );
    assert_eq!(replays, 10.0, "9 + 1 copies of the captured trap");
    let stale = nmsd.wait_metric(
        "nmsd_snmp_traps_dropped_total",
        &["reason=\"not_in_time_window\""],
        3.0,
        Duration::from_secs(10),
    );
    assert_eq!(stale, 3.0, "boots 3 time 800, boots 2, the last copy");
    let rows = rows_after_stop(&mut nmsd, q, "trap_replay_snmp_trap", "trap_oid");
    let got: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap_or("")).collect();
    assert_eq!(
        got,
        [
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.6.3.1.1.5.4",
            "1.3.6.1.6.3.1.1.5.1"
        ]
    );
}

/// Issue 11 item 6: two unpaced senders of 10,000 traps each; all 20,000 are stored, nothing is
/// dropped in the kernel or at the sink queue, and traps reach the queue in batches. The
/// senders replay a datagram captured from a real `snmptrap -v 2c` (a loop of snmptrap
/// processes is far too slow to be a burst).
#[test]
fn a_burst_of_20000_traps_from_two_unpaced_senders_is_stored_whole() {
    const PER_SENDER: usize = 10_000;
    let q = QuestDb::shared();
    let s = Secrets::new();
    let traps = format!(
        "communities = [{{ name = \"lab\", community = {{ file = \"{}\" }} }}]\n",
        s.file("c", "public")
    );
    let (mut nmsd, to) = start("trap-burst", q, &traps, "");
    let datagram = capture_snmptrap(&[
        "-v",
        "2c",
        "-c",
        "public",
        "TO",
        "",
        "1.3.6.1.6.3.1.1.5.3",
        "1.3.6.1.2.1.2.2.1.1.2",
        "i",
        "2",
    ]);
    let started = std::time::Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (d, to) = (datagram.clone(), to.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").expect("sender socket");
                for _ in 0..PER_SENDER {
                    sock.send_to(&d, &to).expect("send");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    let sent_in = started.elapsed();
    let total = (2 * PER_SENDER) as f64;
    let received = nmsd.wait_metric(
        "nmsd_snmp_traps_received_total",
        &["version=\"v2c\""],
        total,
        Duration::from_secs(120),
    );
    let kernel = nmsd.metric("nmsd_snmp_trap_socket_kernel_drops_total", &[]);
    let queue = nmsd.metric("nmsd_snmp_traps_dropped_total", &["reason=\"queue\""]);
    let batches = nmsd.metric("nmsd_snmp_trap_batches_total", &[]);
    assert_eq!(
        (received, kernel, queue),
        (total, 0.0, 0.0),
        "received, kernel drops, queue drops (sent in {sent_in:?})"
    );
    assert!(
        batches > 0.0 && batches * 10.0 <= total,
        "{batches} queue messages for {total} traps: batched"
    );
    assert!(nmsd.stop().success());
    q.wait_applied("trap_burst_snmp_trap", Duration::from_secs(60));
    let rows = q.scalar("select count() from trap_burst_snmp_trap");
    assert_eq!(rows, Some(2 * PER_SENDER as i64), "0 lost");
}

/// Issue 11 item 10: `generic_trap` was a SHORT column, whose null QuestDB stores as 0, so
/// every v2c/v3 trap read as coldStart. A table made by an earlier version is migrated to INT
/// at start (and a new one is made INT).
#[test]
fn an_old_trap_table_gets_a_nullable_generic_trap() {
    let q = QuestDb::shared();
    q.query(
        "CREATE TABLE IF NOT EXISTS trap_migrate_snmp_trap (\
         ts TIMESTAMP, source_ipv4 IPV4, source_ipv6 VARCHAR, source_port INT, \
         version SYMBOL CAPACITY 4 CACHE, pdu SYMBOL CAPACITY 4 CACHE, \
         trap_oid SYMBOL CAPACITY 4096 CACHE, uptime_ticks LONG, security_name SYMBOL, \
         engine_id VARCHAR, request_id LONG, enterprise VARCHAR, generic_trap SHORT, \
         specific_trap INT, varbinds VARCHAR) TIMESTAMP(ts) PARTITION BY DAY WAL",
    );
    let (nmsd, _) = start("trap-migrate", q, "", "");
    let column_type = || {
        q.query(
            "SELECT type FROM table_columns('trap_migrate_snmp_trap') \
             WHERE \"column\" = 'generic_trap'",
        )
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_str())
        .map(str::to_string)
    };
    let migrated = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        (column_type().as_deref() == Some("INT")).then_some(())
    });
    assert!(
        migrated.is_some(),
        "generic_trap is {:?}; log:\n{}",
        column_type(),
        nmsd.log()
    );
}
