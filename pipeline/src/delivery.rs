//! What a sink reads: batches from its in-memory queue, or from its disk buffer in front of
//! that queue, each with a batch id that makes a replay idempotent and a token the sink hands
//! back once the batch's rows are written (acknowledged delivery, issue 12).
//!
//! A sink takes [`Delivery`]s from its [`SinkInput`] and calls [`SinkInput::done`] with the
//! delivery's token once every row of it is written, refused by the server or discarded as
//! unencodable: only then may a disk buffer forget it. Tokens may come back in any order (a
//! sink batches rows per table and flushes tables independently).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use serde::Deserialize;

use crate::queue::SinkQueueReceiver;
use crate::stream::Batch;
use crate::units::ByteSize;

/// One batch for a sink.
#[derive(Debug)]
pub struct Delivery {
    pub batch: Batch,
    /// Unique per batch and stable across replays: written with every row of the tables that
    /// have no natural key, whose DEDUP keys it makes a replayed row collapse onto its first
    /// copy (decision 0017).
    pub batch_id: u64,
    /// Hand back to [`SinkInput::done`] once the rows are written.
    pub token: DeliveryToken,
}

/// Names a delivery to its input; opaque to the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryToken(pub u64, pub u64);

/// What a buffer holds besides the sink's in-memory queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub bytes: u64,
    pub records: u64,
    pub rows: u64,
}

/// Where a sink's batches come from.
pub trait SinkInput: Send {
    /// The next batch, waiting up to `timeout`. `Disconnected` once everything upstream has
    /// stopped and every batch has been handed out.
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery, RecvTimeoutError>;

    /// The next batch if one is ready.
    fn try_recv(&mut self) -> Result<Delivery, TryRecvError>;

    /// The delivery's rows are written, refused or discarded: it need not be replayed.
    fn done(&mut self, token: DeliveryToken);

    /// True when batches handed out but not done survive a restart (a disk buffer): a sink
    /// that gives up at shutdown leaves them there instead of counting them lost.
    fn durable(&self) -> bool {
        false
    }

    /// What the buffer holds now (nothing for the memory queue alone).
    fn held(&self) -> Held {
        Held::default()
    }
}

/// Batch ids: a counter started at the wall clock in microseconds, so ids of a restarted
/// process (or of a buffer directory that was wiped) do not meet the previous run's: a sink
/// takes far fewer than a million batches a second, so the counter never catches up with the
/// clock.
#[derive(Debug)]
pub struct BatchIds {
    next: AtomicU64,
}

impl Default for BatchIds {
    fn default() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        BatchIds {
            next: AtomicU64::new(now),
        }
    }
}

impl BatchIds {
    /// Starts past `seen` (the largest id found in a buffer) as well as past the clock.
    pub fn after(seen: u64) -> Self {
        let ids = BatchIds::default();
        ids.next
            .fetch_max(seen.saturating_add(1), Ordering::Relaxed);
        ids
    }

    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// The in-memory queue alone: nothing survives a restart; a delivery is forgotten when taken.
pub struct MemoryInput {
    rx: SinkQueueReceiver,
    ids: BatchIds,
}

impl MemoryInput {
    pub fn new(rx: SinkQueueReceiver) -> Self {
        MemoryInput {
            rx,
            ids: BatchIds::default(),
        }
    }

    fn deliver(&self, batch: Batch) -> Delivery {
        let id = self.ids.next();
        Delivery {
            batch,
            batch_id: id,
            token: DeliveryToken(0, id),
        }
    }
}

impl SinkInput for MemoryInput {
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map(|b| self.deliver(b))
    }

    fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        self.rx.try_recv().map(|b| self.deliver(b))
    }

    fn done(&mut self, _token: DeliveryToken) {}

    fn held(&self) -> Held {
        Held {
            bytes: self.rx.queued_bytes().load(Ordering::Relaxed),
            ..Held::default()
        }
    }
}

/// `buffer = { type = "memory" | "disk", ... }` of a sink.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkBufferConfig {
    /// The in-memory queue only (`queue_max_bytes`): lost at a crash, dropped when full.
    #[default]
    Memory,
    /// Segment files under `state_dir/buffer/<sink id>/`, replayed after an outage or restart.
    Disk(DiskBufferConfig),
}

/// What the disk buffer does with a batch that does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferWhenFull {
    /// Stop taking from the in-memory queue until the sink frees room; the queue's own full
    /// policy and priorities then apply (raw flows shed first).
    Block,
    /// Drop the batch that does not fit (counted).
    DropNewest,
    /// Delete the oldest segment, written or not (its rows counted).
    DropOldest,
}

/// When appended batches are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferFsync {
    /// Left to the kernel: survives a crash of nmsd, not of the host.
    Never,
    /// After every batch.
    Always,
    /// At most this long after a batch is appended.
    Every(Duration),
}

impl<'de> Deserialize<'de> for BufferFsync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "never" => Ok(BufferFsync::Never),
            "always" => Ok(BufferFsync::Always),
            other => crate::units::parse_duration(other)
                .map(BufferFsync::Every)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "fsync must be \"never\", \"always\" or a duration such as \"100ms\": {e}"
                    ))
                }),
        }
    }
}

/// `buffer = { type = "disk", max_size = "2GiB", when_full = "block", fsync = "100ms" }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskBufferConfig {
    /// Bytes all segment files may take.
    pub max_size: ByteSize,
    pub when_full: BufferWhenFull,
    pub fsync: BufferFsync,
}

impl Default for DiskBufferConfig {
    fn default() -> Self {
        DiskBufferConfig {
            max_size: ByteSize(2 << 30),
            when_full: BufferWhenFull::Block,
            fsync: BufferFsync::Every(Duration::from_millis(100)),
        }
    }
}

impl SinkBufferConfig {
    /// Range checks; `Err((key, message))` with the key under `buffer`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let SinkBufferConfig::Disk(d) = self {
            if !(16 << 20..=16 << 40).contains(&d.max_size.0) {
                return Err((
                    "buffer.max_size".into(),
                    "must be between 16MiB and 16TiB".into(),
                ));
            }
            if let BufferFsync::Every(t) = d.fsync
                && (t.is_zero() || t > Duration::from_secs(60))
            {
                return Err((
                    "buffer.fsync".into(),
                    "an interval must be between 1ms and 60s (or \"never\" / \"always\")".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_start_at_the_clock_and_past_what_a_buffer_holds() {
        let a = BatchIds::default().next();
        let b = BatchIds::default().next();
        assert!(b >= a && a > 1_700_000_000_000_000, "{a} {b}");
        let far = a + 1_000_000_000;
        assert_eq!(BatchIds::after(far).next(), far + 1);
    }

    #[derive(Deserialize)]
    struct Wrap {
        buffer: SinkBufferConfig,
    }

    #[test]
    fn buffer_config_parses_and_checks() {
        let w: Wrap = toml::from_str(
            r#"buffer = { type = "disk", max_size = "2GiB", when_full = "drop_oldest", fsync = "250ms" }"#,
        )
        .expect("parses");
        assert_eq!(
            w.buffer,
            SinkBufferConfig::Disk(DiskBufferConfig {
                max_size: ByteSize(2 << 30),
                when_full: BufferWhenFull::DropOldest,
                fsync: BufferFsync::Every(Duration::from_millis(250)),
            })
        );
        let w: Wrap = toml::from_str(r#"buffer = { type = "disk" }"#).expect("defaults");
        assert!(w.buffer.validate().is_ok());
        let w: Wrap = toml::from_str(r#"buffer = { type = "memory" }"#).expect("memory");
        assert_eq!(w.buffer, SinkBufferConfig::Memory);
        assert!(
            toml::from_str::<Wrap>(r#"buffer = { type = "disk", fsync = "sometimes" }"#).is_err()
        );
        assert!(
            toml::from_str::<Wrap>(r#"buffer = { type = "disk", max_bytes = "1GiB" }"#).is_err()
        );
        let w: Wrap =
            toml::from_str(r#"buffer = { type = "disk", max_size = "1MiB" }"#).expect("parses");
        assert_eq!(w.buffer.validate().unwrap_err().0, "buffer.max_size");
    }
}
