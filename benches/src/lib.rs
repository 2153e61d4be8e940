//! Shared pieces of nmsd's benchmarks and load tools.
//!
//! - [`stream`]: an export stream (NetFlow v5/v9, IPFIX datagrams) analysed once, so it can be
//!   replayed with rewritten sequence numbers, exporter identities and times, and with templates
//!   re-sent periodically.
//! - [`traffic`]: softflowd-like datagrams built with `nmsd_testkit::encode`, and export
//!   datagrams read from pcap files with `nmsd_testkit::capture`.
//! - [`replay`]: a paced `sendmmsg` sender of a stream to a loopback UDP address.
//! - [`prom`], [`procfs`]: reading Prometheus text, a process tree's CPU time and peak RSS,
//!   and UDP socket queues.
//! - [`child`]: collectors started by the harness, stopped with their process group.
//! - [`peers`]: the collectors nmsd is compared with (goflow2, nfacctd, nfcapd): how each is
//!   configured, started and how its flows are counted.
//! - [`qdb`]: a private QuestDB server, and the bare questdb-rs sender loop that is the
//!   QuestDB sink's ceiling.
//! - [`stats`]: medians and ranges over repeated runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod child;
pub mod peers;
pub mod procfs;
pub mod prom;
pub mod qdb;
pub mod replay;
pub mod stats;
pub mod stream;
pub mod traffic;

/// The workspace root (where `benches/` lives).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// An HTTP agent for scraping and readiness checks: 10 s timeout, statuses are not errors.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `url`: status and body, or `None` if nothing answered.
pub fn http_get(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut r = agent.get(url).call().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().ok()?))
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough on a test machine).
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Parse a rate or count with an optional k/M suffix ("25k", "1.5M", "300000").
pub fn parse_si(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * mul)
        .ok_or_else(|| format!("not a number: \"{s}\" (examples: 300000, 25k, 1.5M)"))
}

/// Format a count with SI suffix for tables ("1.36 M").
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_suffixes() {
        assert_eq!(parse_si("25k"), Ok(25_000.0));
        assert_eq!(parse_si("1.5M"), Ok(1_500_000.0));
        assert_eq!(parse_si("300000"), Ok(300_000.0));
        assert!(parse_si("-1").is_err());
        assert!(parse_si("k").is_err());
        assert_eq!(si(1_360_000.0), "1.36 M");
    }
}
