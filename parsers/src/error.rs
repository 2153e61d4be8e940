//! Why a datagram (or part of one) could not be decoded.

use thiserror::Error;

/// A reason to drop a datagram or a set within it.
///
/// Records decoded before the error stay in the output: a bad set late in a datagram does not
/// discard the good sets before it. [`DecodeError::kind`] gives a stable label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram too short for a {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unknown export version {0} (expected 5, 9 or 10)")]
    UnknownVersion(u16),
    #[error("header length {header} disagrees with the datagram's {actual} bytes")]
    LengthMismatch { header: usize, actual: usize },
    #[error("NetFlow v5 header says {count} records, allowed 1..=30 for {len} bytes")]
    BadRecordCount { count: u16, len: usize },
    #[error("set {set_id} has length {len}, outside 4..={remaining}")]
    BadSetLength {
        set_id: u16,
        len: usize,
        remaining: usize,
    },
    #[error("set id {0} is reserved")]
    ReservedSetId(u16),
    #[error("template {template_id}: {reason}")]
    BadTemplate {
        template_id: u16,
        reason: &'static str,
    },
    #[error("exporter has more than {limit} templates; template {template_id} refused")]
    TemplateLimit { template_id: u16, limit: usize },
    #[error("variable-length field overruns its record")]
    BadVariableLength,
}

impl DecodeError {
    /// Stable, low-cardinality label for the `kind` metric label.
    pub const fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::UnknownVersion(_) => "unknown_version",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::BadRecordCount { .. } => "bad_record_count",
            DecodeError::BadSetLength { .. } => "bad_set_length",
            DecodeError::ReservedSetId(_) => "reserved_set_id",
            DecodeError::BadTemplate { .. } => "bad_template",
            DecodeError::TemplateLimit { .. } => "template_limit",
            DecodeError::BadVariableLength => "bad_variable_length",
        }
    }

    /// Every kind, for pre-registering metrics so dashboards show zeros rather than gaps.
    pub const KINDS: &'static [&'static str] = &[
        "truncated",
        "unknown_version",
        "length_mismatch",
        "bad_record_count",
        "bad_set_length",
        "reserved_set_id",
        "bad_template",
        "template_limit",
        "bad_variable_length",
    ];
}
