//! Simulator equals snmpd (docs/snmp-design.md § 13, test 5): the same static fixture served by
//! net-snmp's snmpd (through `tests/peers/snmprec_pass.py`, modules
//! `pass_persist,vacm_conf,usmConf` only) and by nmsd's simulator — in process and as the
//! `nmsd-snmpsim` binary — must make net-snmp's own tools print exactly the same, for v2c and
//! both v3 users: bulk walks of four subtrees, GETs of an existing instance, a missing instance
//! and a missing object, GETNEXT (including past the end of the MIB), GETBULK with a
//! non-repeater and 1, 7, 50 and 500 repetitions (the 100-varbind cap). A wrong community gets
//! no answer from either.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nmsd_acceptance::{free_udp_port, require, scratch, terminate, wait_for, workspace};
use nmsd_snmpsim::{DataSpec, Fixture, SimConfig, Simulator};

const V2: &[&str] = &["-v2c", "-c", "public"];
const V3A: &[&str] = &[
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
const V3B: &[&str] = &[
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

fn fixture_path() -> PathBuf {
    workspace().join("tests/fixtures/snmp/static.snmprec")
}

/// snmpd B on `port`, stopped on drop.
struct Snmpd {
    dir: PathBuf,
}

fn snmpd_script() -> PathBuf {
    workspace().join("tests/peers/snmpd.sh")
}

impl Snmpd {
    fn start(dir: &Path, port: u16) -> Snmpd {
        let template = workspace().join("tests/fixtures/snmp/snmpd-static.conf");
        // The script installs snmpd/snmp when missing (as root) and waits until it answers.
        let out = Command::new("bash")
            .arg(snmpd_script())
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .arg(&template)
            .output()
            .expect("bash runs tests/peers/snmpd.sh");
        assert!(
            out.status.success(),
            "snmpd did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Snmpd {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(snmpd_script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// The `nmsd-snmpsim` binary, built once (`$NMSD_SNMPSIM_BIN` overrides).
fn simulator_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NMSD_SNMPSIM_BIN") {
            return PathBuf::from(p);
        }
        let ws = workspace();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "nmsd-snmpsim",
                "--bin",
                "nmsd-snmpsim",
            ])
            .current_dir(&ws)
            .status()
            .expect("cargo build -p nmsd-snmpsim");
        assert!(status.success(), "building nmsd-snmpsim failed");
        ws.join("target/debug/nmsd-snmpsim")
    })
    .clone()
}

struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        terminate(&mut self.0, Duration::from_secs(5));
    }
}

/// Runs net-snmp's tools with a private config (`hexOutputLength 0`: one line per value) and
/// persistent folder.
struct Tools {
    conf: PathBuf,
    persist: PathBuf,
}

/// What a command printed, with the agent's port taken out (timeouts name it).
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Tools {
    fn new(dir: &Path) -> Tools {
        let conf = dir.join("snmpconf");
        let persist = dir.join("client-persist");
        std::fs::create_dir_all(&conf).expect("snmpconf dir");
        std::fs::create_dir_all(&persist).expect("client persist dir");
        std::fs::write(conf.join("snmp.conf"), "hexOutputLength 0\n").expect("snmp.conf");
        Tools { conf, persist }
    }

    /// `program -m "" OPTIONS 127.0.0.1:PORT OIDS`.
    fn run(&self, program: &str, opts: &[&str], oids: &[&str], port: u16) -> Printed {
        let agent = format!("127.0.0.1:{port}");
        let mut full: Vec<&str> = vec!["-m", ""];
        full.extend_from_slice(opts);
        full.push(&agent);
        full.extend_from_slice(oids);
        let out = Command::new(require(program))
            .args(&full)
            .env("SNMPCONFPATH", &self.conf)
            .env("SNMP_PERSISTENT_DIR", &self.persist)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&agent, "AGENT");
        Printed {
            code: out.status.code(),
            stdout: clean(&out.stdout),
            stderr: clean(&out.stderr),
        }
    }

    /// Wait until an agent answers a v2c GET.
    fn wait_up(&self, port: u16) {
        let up = wait_for(Duration::from_secs(15), || {
            let p = self.run(
                "snmpget",
                &["-v2c", "-c", "public", "-r", "0", "-t", "0.5"],
                &["1.3.6.1.2.1.1.3.0"],
                port,
            );
            (p.code == Some(0)).then_some(())
        });
        assert!(up.is_some(), "agent on port {port} never answered");
    }
}

/// One command of the battery.
struct Case {
    label: String,
    program: &'static str,
    opts: Vec<&'static str>,
    oids: &'static [&'static str],
}

const SUBTREES: [&str; 4] = [
    "1.3.6.1.2.1.1",
    "1.3.6.1.2.1.2.2.1",
    "1.3.6.1.2.1.31.1.1.1",
    "1.0.8802.1.1.2.1.4.1.1",
];
/// sysUpTime as the non-repeater, then three columns.
const BULK_OIDS: &[&str] = &[
    "1.3.6.1.2.1.1.3",
    "1.3.6.1.2.1.2.2.1.10",
    "1.3.6.1.2.1.31.1.1.1.6",
    "1.3.6.1.2.1.31.1.1.1.18",
];

/// The comparison battery of the design (§ 13) for each of the three credentials.
fn battery() -> Vec<Case> {
    let mut out = Vec::new();
    for (cred_name, cred) in [
        ("v2c", V2),
        ("v3 SHA/AES", V3A),
        ("v3 SHA-256/AES-256", V3B),
    ] {
        let opts = |extra: &[&'static str]| {
            let mut a: Vec<&'static str> = cred.to_vec();
            // Bounded retries: a command that times out must not take long to fail.
            a.extend_from_slice(&["-r", "1", "-t", "3", "-On", "-Ox"]);
            a.extend_from_slice(extra);
            a
        };
        let mut case = |label: String, program, o: Vec<&'static str>, oids| {
            out.push(Case {
                label: format!("{cred_name}: {label}"),
                program,
                opts: o,
                oids,
            })
        };
        for (i, t) in SUBTREES.iter().enumerate() {
            case(
                format!("snmpbulkwalk -Cr25 {t}"),
                "snmpbulkwalk",
                opts(&["-Cr25"]),
                &SUBTREES[i..=i],
            );
        }
        case(
            "snmpget of existing instances".into(),
            "snmpget",
            opts(&[]),
            &["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.31.1.1.1.18.3"],
        );
        case(
            "snmpget of a missing instance".into(),
            "snmpget",
            opts(&[]),
            &["1.3.6.1.2.1.2.2.1.2.99"],
        );
        case(
            "snmpget of a missing object".into(),
            "snmpget",
            opts(&[]),
            &["1.3.6.1.2.1.4.1.0"],
        );
        case(
            "snmpgetnext".into(),
            "snmpgetnext",
            opts(&[]),
            &[
                "1.3.6.1.2.1.2.2.1.10",
                "1.3.6.1.2.1.31.1.1.1.18.128",
                "1.3.6.1.2.1.31.1.1.1.19.16384",
                "1.0",
            ],
        );
        for reps in ["-Cr1", "-Cr7", "-Cr50", "-Cr500"] {
            case(
                format!("snmpbulkget -Cn1 {reps}"),
                "snmpbulkget",
                opts(&["-Cn1", reps]),
                BULK_OIDS,
            );
        }
    }
    out
}

#[test]
fn simulator_equals_snmpd() {
    let dir = scratch("snmp-sim-vs-snmpd");
    let snmpd_port = free_udp_port();
    let _snmpd = Snmpd::start(&dir.join("snmpd"), snmpd_port);
    for p in ["snmpget", "snmpgetnext", "snmpbulkget", "snmpbulkwalk"] {
        require(p);
    }

    // The simulator in process, serving the same fixture on its own port.
    let fixture = Fixture::load(&fixture_path()).expect("static fixture parses");
    let sim = Simulator::spawn(SimConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: DataSpec {
            interfaces: None,
            lldp: false,
            fixture: Some(fixture),
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator starts");
    let sim_port = sim.addr.port();

    // And the binary, as an operator runs it.
    let bin_port = free_udp_port();
    let child = Command::new(simulator_binary())
        .args(["--listen", &format!("127.0.0.1:{bin_port}"), "--snmprec"])
        .arg(fixture_path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nmsd-snmpsim starts");
    let _bin = SimProcess(child);

    let tools = Tools::new(&dir);
    tools.wait_up(snmpd_port);
    tools.wait_up(sim_port);
    tools.wait_up(bin_port);

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for c in battery() {
        let want = tools.run(c.program, &c.opts, c.oids, snmpd_port);
        // The battery only means something if snmpd itself answered.
        assert!(
            want.code == Some(0) && !want.stdout.is_empty(),
            "snmpd failed {}: {want:?}",
            c.label
        );
        for (who, port) in [("simulator", sim_port), ("nmsd-snmpsim", bin_port)] {
            let got = tools.run(c.program, &c.opts, c.oids, port);
            compared += 1;
            if got != want {
                mismatches.push(format!(
                    "{who}, {}:\n--- snmpd ({:?})\n{}{}\n--- {who} ({:?})\n{}{}",
                    c.label, want.code, want.stdout, want.stderr, got.code, got.stdout, got.stderr
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} outputs differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("simulator equals snmpd: {compared} outputs identical");

    // The battery covered what it should: a walk to the end of the MIB view, the fixture's
    // extreme values, noSuchInstance and noSuchObject, and the 100-varbind cap.
    let v2 = |extra: &[&'static str]| {
        let mut a = V2.to_vec();
        a.extend_from_slice(&["-On"]);
        a.extend_from_slice(extra);
        a
    };
    let walk = tools.run("snmpbulkwalk", &v2(&["-Cr25"]), &SUBTREES[2..3], sim_port);
    assert!(
        walk.stdout
            .contains("No more variables left in this MIB View")
    );
    assert!(walk.stdout.contains("Counter64: 18446744073709551610"));
    let ifs = tools.run("snmpbulkwalk", &v2(&["-Cr25"]), &SUBTREES[1..2], sim_port);
    assert!(ifs.stdout.contains("Counter32: 4294967290"));
    assert!(ifs.stdout.contains("Gauge32: 4294967295"));
    let missing = tools.run(
        "snmpget",
        &v2(&[]),
        &["1.3.6.1.2.1.2.2.1.2.99", "1.3.6.1.2.1.4.1.0"],
        sim_port,
    );
    assert!(missing.stdout.contains("No Such Instance"));
    assert!(missing.stdout.contains("No Such Object"));
    let lines = |p: &Printed| p.stdout.lines().count();
    let r7 = tools.run("snmpbulkget", &v2(&["-Cn1", "-Cr7"]), BULK_OIDS, sim_port);
    assert_eq!(lines(&r7), 1 + 3 * 7, "{r7:?}");
    let r500 = tools.run("snmpbulkget", &v2(&["-Cn1", "-Cr500"]), BULK_OIDS, sim_port);
    assert_eq!(lines(&r500), 1 + 3 * 33, "the cap: {r500:?}");

    // A wrong community: silence from all three (a timeout, not an error response).
    for port in [snmpd_port, sim_port, bin_port] {
        let p = tools.run(
            "snmpget",
            &["-v2c", "-c", "not-public", "-r", "0", "-t", "1"],
            &["1.3.6.1.2.1.1.5.0"],
            port,
        );
        assert_ne!(p.code, Some(0), "port {port}: {p:?}");
        assert!(p.stdout.is_empty(), "port {port}: {p:?}");
        assert!(
            p.stderr.contains("Timeout: No Response from AGENT"),
            "port {port}: {p:?}"
        );
    }
    let stats = sim.stats();
    assert!(stats.dropped_community >= 1);
    assert_eq!(stats.dropped_decode, 0);
    sim.stop().expect("simulator stops cleanly");
}
