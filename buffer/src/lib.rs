//! nmsd's durable sink buffer (issue 12, decision 0013).
//!
//! - [`SegmentLog`]: an append-only log of checksummed records in segment files, replayed in
//!   order from the oldest unacknowledged record, bounded in bytes with a [`WhenFull`] policy,
//!   synced by an [`FsyncPolicy`], recovering from torn, flipped and foreign bytes by skipping
//!   them and reporting each damaged place once ([`Damage`]).
//! - [`codec`]: typed stream batches to bytes and back, versioned.
//!
//! Plain std file I/O, no threads: the caller owns the log and decides when to wait, log and
//! export metrics.

pub mod codec;
pub mod crc32c;
pub mod envelope;
mod log;
mod segment;

pub use log::{
    Appended, BufferConfig, BufferError, BufferStats, FsyncPolicy, Position, RecordInfo,
    SegmentLog, WhenFull,
};
pub use segment::{Damage, DamageKind, MAX_RECORD_LEN, RECORD_OVERHEAD, SEGMENT_FORMAT_VERSION};
