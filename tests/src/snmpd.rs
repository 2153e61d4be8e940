//! A real net-snmp agent (`snmpd`) on a loopback port, with two SNMPv3 users.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Users every test snmpd has (docs/snmp-design.md §13).
pub const V3_USERS: &[(&str, &str, &str, &str, &str)] = &[
    // (user, auth protocol, auth password, priv protocol, priv password)
    (
        "u_sha_aes",
        "SHA",
        "authpass-sha1",
        "AES",
        "privpass-aes128",
    ),
    (
        "u_sha256_aes256",
        "SHA-256",
        "authpass-sha256",
        "AES-256",
        "privpass-aes256",
    ),
];

/// A running snmpd serving this machine's real interfaces (counters move).
pub struct Snmpd {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Snmpd {
    pub fn start(name: &str) -> Snmpd {
        Snmpd::start_on(name, crate::free_udp_port())
    }

    /// An agent on `port` (an agent that comes back where a stopped one was).
    pub fn start_on(name: &str, port: u16) -> Snmpd {
        let snmpd = crate::require("snmpd");
        let dir = crate::scratch(name);
        let persist = dir.join("persist");
        std::fs::create_dir_all(&persist).expect("persist dir");
        let mut conf =
            format!("agentAddress udp:127.0.0.1:{port}\nmaster no\nrocommunity public 127.0.0.1\n");
        for (u, a, ap, p, pp) in V3_USERS {
            conf.push_str(&format!(
                "createUser {u} {a} \"{ap}\" {p} \"{pp}\"\nrouser {u} priv\n"
            ));
        }
        std::fs::write(dir.join("snmpd.conf"), conf).expect("snmpd.conf");
        // As root snmpd refuses some persistence paths: run it as its service user.
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            let _ = Command::new("chown")
                .args(["-R", "Debian-snmp"])
                .arg(&dir)
                .status();
        }
        let mut cmd = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "Debian-snmp", "--"]).arg(snmpd);
            c
        } else {
            Command::new(snmpd)
        };
        cmd.env("SNMP_PERSISTENT_DIR", &persist)
            .args(["-f", "-C", "-c"])
            .arg(dir.join("snmpd.conf"))
            .args(["-m", "", "-I", "-smux", "-Lf"])
            .arg(dir.join("snmpd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("snmpd starts");
        let s = Snmpd {
            port,
            dir,
            child: Some(child),
        };
        let up = crate::wait_for(Duration::from_secs(15), || {
            s.get_v2c("1.3.6.1.2.1.1.3.0").ok()
        });
        assert!(
            up.is_some(),
            "snmpd did not answer in 15 s (log in {})",
            s.dir.display()
        );
        s
    }

    /// `snmpget -v2c` of one OID, output as net-snmp prints it with `-On -Oq`.
    pub fn get_v2c(&self, oid: &str) -> Result<String, String> {
        let out = Command::new(crate::require("snmpget"))
            .args([
                "-m", "", "-On", "-Oq", "-r", "0", "-t", "1", "-v2c", "-c", "public",
            ])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(oid)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// `snmpbulkwalk -v2c` of a subtree as (OID, value) pairs (`-On -Oq -Ov`-style parsing).
    pub fn walk_v2c(&self, oid: &str) -> Vec<(String, String)> {
        let out = Command::new(crate::require("snmpbulkwalk"))
            .args([
                "-m", "", "-On", "-Oq", "-Oe", "-Cr25", "-v2c", "-c", "public",
            ])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(oid)
            .output()
            .expect("snmpbulkwalk runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (o, v) = l.split_once(' ')?;
                Some((o.to_string(), v.trim().trim_matches('"').to_string()))
            })
            .collect()
    }
}

impl Snmpd {
    /// Stop the agent (its device then stops answering).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::terminate(&mut c, Duration::from_secs(5));
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}
