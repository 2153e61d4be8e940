//! Shared pieces of nmsd's benchmarks and load tools.
//!
//! - [`stream`]: an export stream (NetFlow v5/v9, IPFIX datagrams) analysed once, so it can be
//!   replayed with rewritten sequence numbers, exporter identities and times, and with templates
//!   re-sent periodically.
//! - [`traffic`]: softflowd-like datagrams built with `nmsd_parsers::encode`, and export
//!   datagrams read from pcap files with `nmsd_parsers::capture`.
//! - [`replay`]: a paced `sendmmsg` sender of a stream to a loopback UDP address.
//! - [`prom`], [`procfs`]: reading Prometheus text and a process's CPU time and peak RSS.

pub mod procfs;
pub mod prom;
pub mod replay;
pub mod stream;
pub mod traffic;

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
