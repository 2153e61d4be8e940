//! snmpsim (PyPI `snmpsim`), an SNMP agent simulator written independently of nmsd, serving
//! `.snmprec` files on loopback addresses. The community of a file is its name without the
//! extension. `tests/install-deps.sh` installs it into a venv.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The version tests/install-deps.sh installs.
pub const VERSION: &str = "1.2.2";

/// `snmpsim-command-responder`: `$SNMPSIM_VENV/bin/…` (default
/// `$HOME/.cache/nmsd-tests/snmpsim-VERSION`, where tests/install-deps.sh puts it), else on
/// `PATH`; a panic that says how to install it otherwise.
pub fn command_responder() -> PathBuf {
    const BIN: &str = "snmpsim-command-responder";
    let venv = std::env::var_os("SNMPSIM_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                Path::new(&h)
                    .join(".cache/nmsd-tests")
                    .join(format!("snmpsim-{VERSION}"))
            })
        });
    if let Some(p) = venv.map(|v| v.join("bin").join(BIN))
        && p.exists()
    {
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(BIN))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "snmpsim is not installed: run tests/install-deps.sh (or tests/run.sh), which puts \
             snmpsim {VERSION} into a venv at $HOME/.cache/nmsd-tests/snmpsim-{VERSION} \
             (or set SNMPSIM_VENV)"
        )
    })
}

/// A running snmpsim-command-responder; killed on drop.
pub struct Snmpsim {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Snmpsim {
    /// Serve `files` (community = file stem) on UDP `port` of each of `addresses` (loopback
    /// only), and wait until every file answers a GET of sysName.0 on every address.
    pub fn start(name: &str, files: &[PathBuf], addresses: &[Ipv4Addr]) -> Snmpsim {
        assert!(
            addresses.iter().all(Ipv4Addr::is_loopback),
            "snmpsim listens on loopback only"
        );
        let bin = command_responder();
        let snmpget = crate::require("snmpget");
        let dir = crate::scratch(name);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("snmpsim data dir");
        let mut communities = Vec::new();
        for f in files {
            let file_name = f.file_name().expect("a .snmprec file");
            std::fs::copy(f, data.join(file_name)).expect("copy .snmprec");
            let stem = f.file_stem().expect("file stem").to_string_lossy();
            communities.push(stem.into_owned());
        }
        let port = crate::free_udp_port();
        let log = std::fs::File::create(dir.join("snmpsim.log")).expect("snmpsim log");
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(["--log-level", "error"]);
        for a in addresses {
            cmd.arg("--agent-udpv4-endpoint").arg(format!("{a}:{port}"));
        }
        // As root snmpsim insists on dropping privileges unless told otherwise; the venv lives
        // under root's home, which other users cannot read.
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.env("SNMPSIM_ALLOW_ROOT", "true");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let mut s = Snmpsim {
            port,
            dir,
            child: Some(child),
        };
        for a in addresses {
            for c in &communities {
                let answered = crate::wait_for(Duration::from_secs(30), || {
                    if !s.alive() {
                        return Some(false);
                    }
                    let out = Command::new(&snmpget)
                        .args(["-m", "", "-On", "-v2c", "-c", c, "-t", "1", "-r", "0"])
                        .arg(format!("{a}:{port}"))
                        .arg("1.3.6.1.2.1.1.5.0")
                        .output()
                        .ok()?;
                    out.status.success().then_some(true)
                });
                assert_eq!(
                    answered,
                    Some(true),
                    "snmpsim does not answer community {c} on {a}:{port}; log:\n{}",
                    s.log()
                );
            }
        }
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("snmpsim.log")).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Snmpsim {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
