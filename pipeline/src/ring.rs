//! Bounded lock-free rings between receive threads and parse workers.
//!
//! Each receive socket has one SPSC ring (rtrb) to the one worker that owns it, carrying boxed
//! [`DatagramBatch`]es, and a second ring back for recycling the emptied batches. The pool of
//! batches is fixed at `capacity + 2`, so memory is bounded and steady-state receiving allocates
//! nothing. When the forward ring is full the [`FullPolicy`] decides: `drop` counts the batch's
//! datagrams as dropped and reuses the buffer, `block` waits (the kernel socket buffer then
//! absorbs the burst, and its own drops are counted from SO_RXQ_OVFL).

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};

use crate::heartbeat::Heartbeat;
use crate::records::DatagramBatch;

/// What a producer does when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Drop the newest data and count it.
    #[default]
    Drop,
    /// Wait for room (backpressure to the previous stage).
    Block,
}

/// Lets receive threads wake their parse worker when it sleeps on empty rings.
///
/// An idle worker parks instead of polling; the receive thread unparks it after pushing into
/// a ring only when it is actually parked, so a busy pipeline makes no wake-up syscalls and an
/// idle one no polling context switches. Both sides fence before checking the other's state, so
/// a wake-up cannot be lost; the worker also parks with a timeout, as a backstop.
#[derive(Debug, Default)]
pub struct Waker {
    thread: OnceLock<Thread>,
    parked: AtomicBool,
    /// The worker's liveness: it beats each loop and is idle while parked.
    heartbeat: Option<Arc<Heartbeat>>,
}

impl Waker {
    pub fn new() -> Arc<Waker> {
        Arc::new(Waker::default())
    }

    /// A waker whose worker reports its progress to `heartbeat`.
    pub fn with_heartbeat(heartbeat: Arc<Heartbeat>) -> Arc<Waker> {
        Arc::new(Waker {
            heartbeat: Some(heartbeat),
            ..Waker::default()
        })
    }

    /// Called by the worker each time round its loop: it is making progress.
    #[inline]
    pub fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    /// Called by the receive thread after a push.
    #[inline]
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Called by the worker: sleep until woken or `timeout`, unless `has_work` says there is
    /// something to do once the parked flag is visible.
    pub fn park(&self, timeout: Duration, has_work: impl Fn() -> bool) {
        let _ = self.thread.set(std::thread::current());
        if let Some(h) = &self.heartbeat {
            h.idle();
        }
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::Relaxed);
    }
}

/// Receive-thread end of a datagram ring.
pub struct RingSender {
    forward: rtrb::Producer<Box<DatagramBatch>>,
    returned: rtrb::Consumer<Box<DatagramBatch>>,
    // Boxes on purpose: the rings move batches as pointers, and keeping the free list boxed
    // means a recycled batch is never re-boxed (no allocation per burst).
    #[allow(clippy::vec_box)]
    free: Vec<Box<DatagramBatch>>,
    allocated: usize,
    pool_max: usize,
    batch_capacity: usize,
    policy: FullPolicy,
    dropped: Counter,
    drop_log: crate::drop_log::DropLog,
    occupancy: Gauge,
    waker: Option<Arc<Waker>>,
    /// The receive thread's liveness: idle (reading its socket) except while handing a batch
    /// over, so only a thread blocked on a full ring for long counts as stuck.
    heartbeat: Option<Arc<Heartbeat>>,
}

/// Worker end of a datagram ring.
pub struct RingReceiver {
    name: Arc<str>,
    forward: rtrb::Consumer<Box<DatagramBatch>>,
    returned: rtrb::Producer<Box<DatagramBatch>>,
    /// The same series as the sender's: the sender sets it after a push (so a stuck worker's
    /// backlog shows), the worker after every poll (so a drained ring reads 0 once traffic
    /// stops; set by the sender alone it kept its last, non-zero value).
    occupancy: Gauge,
}

/// Make a ring named `name` holding up to `capacity` batches of up to `batch_capacity`
/// datagrams each.
pub fn datagram_ring(
    name: &str,
    capacity: usize,
    batch_capacity: usize,
    policy: FullPolicy,
) -> (RingSender, RingReceiver) {
    let capacity = capacity.max(1);
    let pool_max = capacity + 2;
    let (fp, fc) = rtrb::RingBuffer::new(capacity);
    let (rp, rc) = rtrb::RingBuffer::new(pool_max);
    let labels = [("ring", name.to_string())];
    metrics::gauge!("nmsd_ring_capacity_batches", &labels).set(capacity as f64);
    let sender = RingSender {
        forward: fp,
        returned: rc,
        free: Vec::with_capacity(pool_max),
        allocated: 0,
        pool_max,
        batch_capacity,
        policy,
        dropped: metrics::counter!("nmsd_ring_dropped_datagrams_total", &labels),
        drop_log: crate::drop_log::DropLog::new(
            format!("receive ring \"{name}\" (its parse worker is behind)"),
            "datagrams",
            "nmsd_ring_dropped_datagrams_total",
        ),
        occupancy: metrics::gauge!("nmsd_ring_occupancy_batches", &labels),
        waker: None,
        heartbeat: None,
    };
    let receiver = RingReceiver {
        name: Arc::from(name),
        forward: fc,
        returned: rp,
        occupancy: sender.occupancy.clone(),
    };
    (sender, receiver)
}

impl Drop for RingSender {
    /// The worker learns that the ring is finished without waiting for its park timeout.
    fn drop(&mut self) {
        if let Some(w) = &self.waker {
            w.wake();
        }
    }
}

impl RingSender {
    /// Wake this worker after each push (see [`Waker`]).
    pub fn with_waker(mut self, waker: Arc<Waker>) -> Self {
        self.waker = Some(waker);
        self
    }

    /// Report the receive thread's liveness to `heartbeat` (see [`RingSender::send`]).
    pub fn with_heartbeat(mut self, heartbeat: Arc<Heartbeat>) -> Self {
        heartbeat.idle();
        self.heartbeat = Some(heartbeat);
        self
    }

    /// An empty batch to receive into: recycled if possible, new while under the pool bound.
    pub fn take_batch(&mut self) -> Box<DatagramBatch> {
        while let Ok(b) = self.returned.pop() {
            self.free.push(b);
        }
        if let Some(mut b) = self.free.pop() {
            b.clear();
            return b;
        }
        self.allocated += 1;
        if self.allocated > self.pool_max {
            // Only reachable if a worker dropped batches instead of returning them; allocation
            // then replaces them, and the counter below keeps the pool honest.
            self.allocated = self.pool_max;
        }
        Box::new(DatagramBatch::new(self.batch_capacity))
    }

    /// Hand a filled batch to the worker. With `Drop` a full ring drops the batch's datagrams
    /// (counted) and keeps the buffer; with `Block` it waits until there is room or `stop` is set.
    pub fn send(&mut self, batch: Box<DatagramBatch>, stop: &AtomicBool) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
        self.push(batch, stop);
        // Back to reading the socket: waiting for input.
        if let Some(h) = &self.heartbeat {
            h.idle();
        }
    }

    fn push(&mut self, batch: Box<DatagramBatch>, stop: &AtomicBool) {
        let mut batch = batch;
        loop {
            match self.forward.push(batch) {
                Ok(()) => {
                    let cap = self.forward.buffer().capacity();
                    self.occupancy.set((cap - self.forward.slots()) as f64);
                    if let Some(w) = &self.waker {
                        w.wake();
                    }
                    return;
                }
                Err(rtrb::PushError::Full(b)) => {
                    if self.policy == FullPolicy::Drop || stop.load(Ordering::Relaxed) {
                        self.dropped.increment(b.len() as u64);
                        if self.policy == FullPolicy::Drop {
                            self.drop_log.dropped(b.len() as u64);
                        }
                        self.free.push(b);
                        return;
                    }
                    batch = b;
                    // The worker is a whole ring behind: it needs far longer than this to
                    // make room, and the socket buffer holds what arrives meanwhile. Shorter
                    // sleeps only add wake-ups.
                    std::thread::sleep(Duration::from_micros(250));
                }
            }
        }
    }

    /// Give back a batch that was taken but not sent (e.g. a receive timeout with no data).
    pub fn put_back(&mut self, batch: Box<DatagramBatch>) {
        self.free.push(batch);
    }

    /// Batches waiting in the ring: a non-empty ring means the worker is busy, so the receive
    /// thread may as well fill its batch further before handing it over.
    pub fn backlog(&self) -> usize {
        self.forward.buffer().capacity() - self.forward.slots()
    }
}

impl RingReceiver {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Next batch, if any.
    #[inline]
    pub fn try_recv(&mut self) -> Option<Box<DatagramBatch>> {
        let batch = self.forward.pop().ok();
        // One relaxed store: per batch when busy, per poll (a few per tick) when idle.
        self.occupancy.set(self.forward.slots() as f64);
        batch
    }

    /// Return a processed batch to its receive thread for reuse.
    #[inline]
    pub fn recycle(&mut self, batch: Box<DatagramBatch>) {
        // The return ring holds the whole pool, so this only fails if the sender is gone.
        let _ = self.returned.push(batch);
    }

    /// True once the receive thread has gone and everything it sent was taken.
    pub fn is_finished(&self) -> bool {
        self.forward.is_abandoned() && self.forward.is_empty()
    }

    /// Batches waiting.
    pub fn occupancy(&self) -> usize {
        self.forward.slots()
    }

    /// True when a batch is waiting.
    pub fn has_batch(&self) -> bool {
        !self.forward.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_gauge_reads_zero_once_the_worker_drained_the_ring() {
        let rec = crate::test_metrics::recorder();
        let (mut tx, mut rx) =
            crate::test_metrics::within(&rec, || datagram_ring("idle", 4, 4, FullPolicy::Drop));
        let occupancy =
            || crate::test_metrics::value(&rec, "nmsd_ring_occupancy_batches{ring=\"idle\"}");
        let stop = AtomicBool::new(false);
        let src = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            let mut b = tx.take_batch();
            b.push(src, b"x");
            tx.send(b, &stop);
        }
        assert_eq!(occupancy(), Some(3.0));
        // The worker drains the ring; the receive thread has nothing more to send.
        while let Some(b) = rx.try_recv() {
            rx.recycle(b);
        }
        assert_eq!(occupancy(), Some(0.0), "not the sender's last 3");
    }

    #[test]
    fn a_receive_thread_blocked_on_a_full_ring_stops_beating_and_an_idle_one_does_not() {
        let liveness = crate::heartbeat::Liveness::new();
        let hb = liveness.heartbeat("rx");
        let (tx, _rx) = datagram_ring("full", 1, 4, FullPolicy::Block);
        let mut tx = tx.with_heartbeat(hb);
        let t0 = std::time::Instant::now();
        let later = t0 + crate::heartbeat::STALL_AFTER + Duration::from_secs(1);
        // No traffic: idle, alive however long.
        assert!(liveness.sample(later).is_empty());
        let stop = Arc::new(AtomicBool::new(false));
        let src = "192.0.2.1".parse().unwrap();
        let mut b = tx.take_batch();
        b.push(src, b"x");
        tx.send(b, &stop);
        // The worker takes nothing: the next send blocks.
        let stop2 = stop.clone();
        let blocked = std::thread::spawn(move || {
            let mut b = tx.take_batch();
            b.push(src, b"y");
            tx.send(b, &stop2);
        });
        std::thread::sleep(Duration::from_millis(50));
        let now = std::time::Instant::now();
        liveness.sample(now);
        assert_eq!(
            liveness.sample(now + crate::heartbeat::STALL_AFTER),
            ["rx"],
            "blocked in send"
        );
        stop.store(true, Ordering::Relaxed);
        blocked.join().unwrap();
    }

    #[test]
    fn drop_policy_counts_and_keeps_buffers_bounded() {
        let (mut tx, mut rx) = datagram_ring("test", 2, 4, FullPolicy::Drop);
        let stop = AtomicBool::new(false);
        let src = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            let mut b = tx.take_batch();
            b.push(src, b"x");
            tx.send(b, &stop);
        }
        // Two fit; three were dropped and their buffers reused.
        assert_eq!(rx.occupancy(), 2);
        assert!(tx.allocated <= tx.pool_max);
        let b = rx.try_recv().unwrap();
        assert_eq!(b.len(), 1);
        rx.recycle(b);
        drop(tx);
        assert!(!rx.is_finished());
        let b = rx.try_recv().unwrap();
        rx.recycle(b);
        assert!(rx.is_finished());
    }
}
