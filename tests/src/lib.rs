//! Test harness: starts real peers (QuestDB, nfcapd, softflowd, Prometheus) and nmsd itself on
//! loopback.
//!
//! Every peer is a real program started here; nothing is mocked. Peers are installed by
//! `tests/install-deps.sh` (run by `tests/run.sh`). A missing peer fails the test with a message
//! that says how to install it, never silently skips.

pub mod nfdump;
pub mod nmsd;
pub mod prometheus;
pub mod questdb;
pub mod snmpd;
pub mod snmpsim;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A fresh scratch folder under `target/acceptance/`, unique per call.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = workspace().join("target").join("acceptance").join(format!(
        "{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free tcp port")
}

/// A UDP port free right now on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

/// Bytes waiting in the receive queue of the UDP socket bound to `port` (from /proc/net/udp
/// and /proc/net/udp6), or None if no socket is bound there.
pub fn udp_receive_queue(port: u16) -> Option<u64> {
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(queues)) = (f.get(1), f.get(4)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) {
                let rx = queues
                    .split(':')
                    .nth(1)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                *found.get_or_insert(0) += rx;
            }
        }
    }
    found
}

/// Path of a required program, or a panic that says how to get it.
pub fn require(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} is not installed: run tests/install-deps.sh (or tests/run.sh)");
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A synthetic pcap with known flows, made by `tests/gen_pcap.py`, and its ground truth.
pub struct Pcap {
    pub path: PathBuf,
    pub truth: serde_json::Value,
}

/// Generate (once per seed and size, per test process) the pcap for `seed`/`flows`.
pub fn pcap(seed: u64, flows: u64) -> &'static Pcap {
    type Cache = std::sync::Mutex<Vec<(u64, u64, &'static Pcap)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().expect("pcap cache");
    if let Some((_, _, p)) = c.iter().find(|(s, f, _)| *s == seed && *f == flows) {
        return p;
    }
    let dir = scratch(&format!("pcap-{seed}-{flows}"));
    let path = dir.join("traffic.pcap");
    let truth_path = dir.join("truth.json");
    let status = Command::new("python3")
        .arg(workspace().join("tests/gen_pcap.py"))
        .args(["--seed", &seed.to_string(), "--flows", &flows.to_string()])
        .arg("--out")
        .arg(&path)
        .arg("--truth")
        .arg(&truth_path)
        .status()
        .expect("python3 runs tests/gen_pcap.py");
    assert!(status.success(), "gen_pcap.py failed");
    let truth = serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("truth file"))
        .expect("truth json");
    let p: &'static Pcap = Box::leak(Box::new(Pcap { path, truth }));
    c.push((seed, flows, p));
    p
}

/// Export every flow of `pcap` with softflowd as NetFlow `version` (5, 9 or 10) to
/// 127.0.0.1:`port`, and wait for it to finish.
pub fn softflowd_export(pcap: &Path, port: u16, version: u8) {
    let softflowd = require("softflowd");
    let out = Command::new(softflowd)
        .arg("-r")
        .arg(pcap)
        .args(["-n", &format!("127.0.0.1:{port}")])
        .args(["-v", &version.to_string()])
        // -a: pcap timestamps (v9/IPFIX times are wrong without it); -m: track every flow so
        // none is expired early; -d: stay in the foreground and exit at EOF.
        .args(["-a", "-m", "400000", "-d"])
        .output()
        .expect("softflowd runs");
    assert!(
        out.status.success(),
        "softflowd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Send with a `SIGTERM` and wait, killing after `grace`.
pub fn terminate(
    child: &mut std::process::Child,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) on a pid we own; harmless if it already exited.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let got = wait_for(grace, || child.try_wait().ok().flatten());
    if got.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    got
}
