//! Traps and informs sent with net-snmp's `snmptrap` and `snmpinform` (v2c and v3 authPriv)
//! arrive as rows in QuestDB; informs are answered (the tools exit 0 only then); a trap with a
//! wrong password is dropped and counted.

use std::process::Command;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;

#[test]
fn net_snmp_traps_and_informs_are_stored() {
    let q = QuestDb::shared();
    let secrets = nmsd_acceptance::scratch("trap-secrets");
    let secret = |name: &str, value: &str| {
        let p = secrets.join(name);
        std::fs::write(&p, value).expect("secret file");
        p.display().to_string()
    };
    let port = nmsd_acceptance::free_udp_port();
    let extra = format!(
        r#"
[sources.snmp.traps]
listen = ["127.0.0.1:{port}"]
users = ["sha-aes", "sha256-aes256"]
communities = [{{ name = "lab", community = {{ file = "{}" }} }}]

[[sources.snmp.profiles]]
name = "sha-aes"
version = "3"
user = "u_sha_aes"
auth = "sha"
auth_password = {{ file = "{}" }}
priv = "aes"
priv_password = {{ file = "{}" }}

[[sources.snmp.profiles]]
name = "sha256-aes256"
version = "3"
user = "u_sha256_aes256"
auth = "sha256"
auth_password = {{ file = "{}" }}
priv = "aes256"
priv_password = {{ file = "{}" }}
"#,
        secret("c", "public"),
        secret("a1", "authpass-sha1"),
        secret("p1", "privpass-aes128"),
        secret("a2", "authpass-sha256"),
        secret("p2", "privpass-aes256"),
    );
    let mut nmsd = Nmsd::start(
        "snmp-traps",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "traps_".into(),
            extra: format!("[sources.snmp]\n{extra}"),
            ..NmsdOptions::default()
        },
    );
    let to = format!("127.0.0.1:{port}");
    let v3a = [
        "-v3",
        "-l",
        "authPriv",
        "-u",
        "u_sha_aes",
        "-a",
        "SHA",
        "-A",
        "authpass-sha1",
        "-x",
        "AES",
        "-X",
        "privpass-aes128",
    ];
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
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(nmsd_acceptance::require(tool))
            .args(["-m", "", "-r", "1", "-t", "3"])
            .args(args)
            .output()
            .expect("net-snmp tool runs");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let link_down = ["", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2"];
    let mut v2 = vec!["-v", "2c", "-c", "public", &to];
    v2.extend_from_slice(&link_down);
    run("snmptrap", &v2);
    let mut v2i = vec!["-v", "2c", "-c", "public", &to, "", "1.3.6.1.6.3.1.1.5.4"];
    v2i.extend_from_slice(&["1.3.6.1.2.1.2.2.1.1.2", "i", "2"]);
    run("snmpinform", &v2i);
    let mut t3a: Vec<&str> = v3a.to_vec();
    t3a.extend_from_slice(&["-e", "0x8000000001020304", &to, "", "1.3.6.1.6.3.1.1.5.3"]);
    run("snmptrap", &t3a);
    let mut t3b: Vec<&str> = v3b.to_vec();
    t3b.extend_from_slice(&[&to, "", "1.3.6.1.6.3.1.1.5.3"]);
    run("snmptrap", &t3b);
    let mut i3a: Vec<&str> = v3a.to_vec();
    i3a.extend_from_slice(&[&to, "", "1.3.6.1.6.3.1.1.5.4"]);
    run("snmpinform", &i3a);
    let mut i3b: Vec<&str> = v3b.to_vec();
    i3b.extend_from_slice(&[&to, "", "1.3.6.1.6.3.1.1.5.4"]);
    run("snmpinform", &i3b);
    // A wrong authentication password: dropped and counted.
    let mut bad: Vec<&str> = v3a.to_vec();
    bad[8] = "wrong-password";
    bad.extend_from_slice(&["-e", "0x8000000001020304", &to, "", "1.3.6.1.6.3.1.1.5.3"]);
    run("snmptrap", &bad);

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
    assert!(nmsd.stop().success());
    q.wait_applied("traps_snmp_trap", Duration::from_secs(30));
    let rows =
        q.query("select version, pdu, trap_oid, security_name from traps_snmp_trap order by ts");
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
    let vb = q.query("select varbinds from traps_snmp_trap where version = 'v2c' and pdu = 'trap'");
    assert!(
        vb[0][0]
            .as_str()
            .unwrap_or("")
            .contains("\"1.3.6.1.2.1.2.2.1.1.2\""),
        "varbinds as JSON: {vb:?}"
    );
}
