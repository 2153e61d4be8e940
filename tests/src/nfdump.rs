//! nfcapd/nfdump (the nfdump project's collector and decoder) as the reference decoder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Flow, packet and byte totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// A running nfcapd (or sfcapd) writing to its own folder.
pub struct Nfcapd {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nfcapd {
    pub fn start(name: &str) -> Nfcapd {
        Nfcapd::start_program("nfcapd", name)
    }

    /// `program` with nfcapd's options: `nfcapd`, or `sfcapd` (nfdump's sFlow collector).
    pub fn start_program(program: &str, name: &str) -> Nfcapd {
        let bin = crate::require(program);
        let dir = crate::scratch(name);
        let port = crate::free_udp_port();
        let child = Command::new(bin)
            .args(["-b", "127.0.0.1", "-p", &port.to_string()])
            .arg("-w")
            .arg(&dir)
            // One file for the whole test; a 4 MiB buffer (its default lost ~40 % of a
            // softflowd burst here, see docs/peers.md).
            .args(["-t", "3600", "-I", "nmsd-test", "-B", "4194304"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        // nfcapd binds right away; give it a moment before anything sends.
        std::thread::sleep(Duration::from_millis(300));
        Nfcapd {
            port,
            dir,
            child: Some(child),
        }
    }

    /// Stop (nfcapd writes its file on SIGTERM) and return the folder to read with nfdump.
    pub fn stop(mut self) -> PathBuf {
        // nfcapd drops what is still in its socket buffer when it stops: wait until it has read
        // everything (the kernel's receive queue for its port stays empty).
        let mut empty_since = None;
        let drained = crate::wait_for(Duration::from_secs(30), || {
            if crate::udp_receive_queue(self.port) == Some(0) {
                let t = *empty_since.get_or_insert_with(std::time::Instant::now);
                (t.elapsed() >= Duration::from_millis(500)).then_some(())
            } else {
                empty_since = None;
                None
            }
        });
        assert!(drained.is_some(), "nfcapd did not drain its socket in 30 s");
        if let Some(mut c) = self.child.take() {
            crate::terminate(&mut c, Duration::from_secs(20));
        }
        self.dir.clone()
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Per-protocol totals nfdump reads from an nfcapd folder, with an optional filter.
pub fn totals_by_protocol(dir: &std::path::Path, filter: Option<&str>) -> BTreeMap<u8, Totals> {
    let mut cmd = Command::new(crate::require("nfdump"));
    cmd.arg("-R")
        .arg(dir)
        // -q: no header/summary, -N: plain numbers (no "43.8 M"), -A proto: aggregate.
        .args(["-q", "-N", "-A", "proto", "-o", "fmt:%pr %fl %pkt %byt"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    let out = cmd.output().expect("nfdump runs");
    assert!(
        out.status.success(),
        "nfdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            continue;
        }
        let (Ok(p), Ok(fl), Ok(pk), Ok(by)) =
            (f[0].parse(), f[1].parse(), f[2].parse(), f[3].parse())
        else {
            panic!("unexpected nfdump line: {line}");
        };
        t.insert(
            p,
            Totals {
                flows: fl,
                packets: pk,
                bytes: by,
            },
        );
    }
    t
}
