//! A sink's health, shared with the control plane.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a sink's disk buffer holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BufferSnapshot {
    /// Bytes of its segment files, and their bound.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Batches not yet acknowledged by the sink.
    pub records: u64,
    /// Of those, batches not yet handed to the sink (what a replay still has to go through).
    pub backlog_records: u64,
    /// Age of the oldest batch held, in seconds.
    pub oldest_age_s: f64,
}

/// Health of one sink, written by its thread and read by `/api/v1/status`.
#[derive(Debug, Default)]
pub struct SinkStatus {
    connected: AtomicBool,
    rows_written: AtomicU64,
    /// Rows the server refused (or that could not be encoded).
    rows_rejected: AtomicU64,
    /// Rows given up on at shutdown.
    rows_lost: AtomicU64,
    /// Rows its disk buffer dropped (when full, or unwritable).
    rows_dropped: AtomicU64,
    /// Rows left unwritten at shutdown in a disk buffer, for the next start.
    rows_kept: AtomicU64,
    buffer: Mutex<Option<BufferSnapshot>>,
    last_error: Mutex<Option<String>>,
    /// The last row or batch the sink had to discard, and why: a sink can be connected and
    /// still be losing rows, and status must say so.
    last_discard: Mutex<Option<String>>,
}

impl SinkStatus {
    pub fn set_ok(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn set_error(&self, e: String) {
        self.connected.store(false, Ordering::Relaxed);
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }

    /// Why the sink last discarded rows (not encodable, or rejected by the server); the rows
    /// themselves are counted with [`SinkStatus::add_rejected`].
    pub fn set_discard(&self, why: String) {
        if let Ok(mut g) = self.last_discard.lock() {
            *g = Some(why);
        }
    }

    pub fn last_discard(&self) -> Option<String> {
        self.last_discard.lock().ok().and_then(|g| g.clone())
    }

    pub fn add_rows(&self, n: u64) {
        self.rows_written.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_rejected(&self, n: u64) {
        self.rows_rejected.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_lost(&self, n: u64) {
        self.rows_lost.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_dropped(&self, n: u64) {
        self.rows_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_kept(&self, n: u64) {
        self.rows_kept.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rows_dropped(&self) -> u64 {
        self.rows_dropped.load(Ordering::Relaxed)
    }

    pub fn rows_kept(&self) -> u64 {
        self.rows_kept.load(Ordering::Relaxed)
    }

    /// The disk buffer's state, refreshed by its writer thread.
    pub fn set_buffer(&self, b: BufferSnapshot) {
        if let Ok(mut g) = self.buffer.lock() {
            *g = Some(b);
        }
    }

    /// None for a sink with no disk buffer.
    pub fn buffer(&self) -> Option<BufferSnapshot> {
        self.buffer.lock().ok().and_then(|g| *g)
    }

    pub fn rows_rejected(&self) -> u64 {
        self.rows_rejected.load(Ordering::Relaxed)
    }

    pub fn rows_lost(&self) -> u64 {
        self.rows_lost.load(Ordering::Relaxed)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn rows_written(&self) -> u64 {
        self.rows_written.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }
}
