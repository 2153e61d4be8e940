//! What a sink's disk buffer stores per record: the batch and what the sink needs to deliver it
//! again exactly once.
//!
//! ```text
//! record   u8 envelope version (1), u64 LE batch id, i64 LE appended at (Unix ms), codec batch
//! ```
//!
//! The batch id is written with the rows of tables without a natural key, whose DEDUP keys
//! then collapse a replayed row onto its first copy (decision 0017); the append time gives the
//! buffer's oldest-record age.

use nmsd_pipeline::Batch;

use crate::codec::{self, CodecError};

/// The envelope this build writes.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the codec batch.
pub const ENVELOPE_LEN: usize = 17;

/// A record read back.
#[derive(Debug)]
pub struct Envelope {
    pub batch_id: u64,
    pub appended_ms: i64,
    pub batch: Batch,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("record of {0} bytes is shorter than its envelope")]
    Truncated(usize),
    #[error("record envelope version {0} (this build reads {ENVELOPE_VERSION})")]
    UnsupportedVersion(u8),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Appends the record of `batch` to `out` (cleared first).
pub fn encode(
    batch_id: u64,
    appended_ms: i64,
    batch: &Batch,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.clear();
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&batch_id.to_le_bytes());
    out.extend_from_slice(&appended_ms.to_le_bytes());
    codec::encode(batch, out)
}

/// Batch id and append time without decoding the batch.
pub fn header(record: &[u8]) -> Result<(u64, i64), EnvelopeError> {
    if record.len() < ENVELOPE_LEN {
        return Err(EnvelopeError::Truncated(record.len()));
    }
    if record[0] != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(record[0]));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&record[1..9]);
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&record[9..17]);
    Ok((u64::from_le_bytes(id), i64::from_le_bytes(ms)))
}

pub fn decode(record: &[u8]) -> Result<Envelope, EnvelopeError> {
    let (batch_id, appended_ms) = header(record)?;
    Ok(Envelope {
        batch_id,
        appended_ms,
        batch: codec::decode(&record[ENVELOPE_LEN..])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let batch = Batch::flows(vec![nmsd_pipeline::FlowRecord::default(); 3]);
        let mut out = vec![9, 9];
        encode(42, 1_765_000_000_000, &batch, &mut out).expect("encodes");
        let e = decode(&out).expect("decodes");
        assert_eq!(
            (e.batch_id, e.appended_ms, e.batch.rows()),
            (42, 1_765_000_000_000, 3)
        );
        for n in 0..out.len() {
            assert!(decode(&out[..n]).is_err(), "prefix {n}");
        }
        out[0] = 2;
        assert_eq!(
            decode(&out).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
    }
}
