//! SNMP wire format: BER, OIDs, values, v1/v2c messages and PDUs. No I/O.
//!
//! Built for a poller that keeps many requests in flight on one socket: decoding borrows the
//! datagram (no allocation per varbind), varbinds are read lazily and every malformed value is an
//! error rather than a silently shortened list, and encoding writes into one reused buffer.
//! SNMPv3 with USM lives in `usm` (keys, HMAC, privacy) and `v3` (messages); see
//! docs/snmp-design.md and docs/decisions/0004-snmp-engine.md.

pub mod ber;
pub mod oid;
pub mod pdu;
pub mod usm;
pub mod v3;
pub mod value;

pub use oid::{Oid, OidRef};
pub use pdu::{Message, Pdu, PduHeader, PduKind, Version};
pub use value::Value;

/// Bytes as lowercase hex (engine IDs, in logs, rows and status).
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Hex text (`80001f88`, upper or lower case, an optional `0x`) as bytes; None unless every
/// character pair is a hex byte.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

use thiserror::Error;

/// Why an SNMP message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnmpError {
    #[error("message truncated: {0}")]
    Truncated(&'static str),
    #[error("expected BER tag {expected:#04x}, found {found:#04x} ({what})")]
    UnexpectedTag {
        expected: u8,
        found: u8,
        what: &'static str,
    },
    #[error("unsupported BER encoding: {0}")]
    Unsupported(&'static str),
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("bad object identifier: {0}")]
    BadOid(&'static str),
    #[error("unknown SNMP version {0}")]
    UnknownVersion(i64),
    #[error("unknown PDU type {0:#04x}")]
    UnknownPdu(u8),
    #[error("trailing bytes after {0}")]
    Trailing(&'static str),
}

impl SnmpError {
    /// Stable label for metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            SnmpError::Truncated(_) => "truncated",
            SnmpError::UnexpectedTag { .. } => "unexpected_tag",
            SnmpError::Unsupported(_) => "unsupported",
            SnmpError::OutOfRange(_) => "out_of_range",
            SnmpError::BadOid(_) => "bad_oid",
            SnmpError::UnknownVersion(_) => "unknown_version",
            SnmpError::UnknownPdu(_) => "unknown_pdu",
            SnmpError::Trailing(_) => "trailing",
        }
    }
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            unhex(&hex(&[0x80, 0, 0x1f, 0xff])),
            Some(vec![0x80, 0, 0x1f, 0xff])
        );
        assert_eq!(unhex("0xAb"), Some(vec![0xab]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
