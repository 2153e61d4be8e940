//! Bounded queues from parse workers to sinks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use metrics::{Counter, Gauge};

use crate::component::ComponentCounters;
use crate::drop_log::DropLog;
use crate::ring::FullPolicy;
use crate::stream::Batch;

/// Worker end of a sink's queue; cloned once per worker.
#[derive(Clone)]
pub struct SinkQueue {
    name: Arc<str>,
    tx: Sender<Batch>,
    policy: FullPolicy,
    dropped_rows: Counter,
    occupancy: Gauge,
    accepted_rows: Arc<AtomicU64>,
    /// The sink's component counters: a full queue is the sink discarding.
    counters: Option<ComponentCounters>,
    /// Shared by every worker's clone: one journal line when drops start, then every 30 s.
    drop_log: Arc<DropLog>,
}

/// Sink end of a queue. Taking a message updates the occupancy gauge as well: set only by
/// senders, it kept the last sender's value once the sink had drained the queue and traffic
/// stopped.
pub struct SinkQueueReceiver {
    rx: Receiver<Batch>,
    occupancy: Gauge,
    accepted_rows: Arc<AtomicU64>,
}

/// Make a queue of `capacity` messages for the sink `name`.
pub fn sink_queue(
    name: &str,
    capacity: usize,
    policy: FullPolicy,
) -> (SinkQueue, SinkQueueReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let label = name.to_string();
    metrics::gauge!("nmsd_sink_queue_capacity_messages", "sink" => label.clone())
        .set(capacity as f64);
    let occupancy = metrics::gauge!("nmsd_sink_queue_occupancy_messages", "sink" => label.clone());
    let q = SinkQueue {
        name: Arc::from(name),
        tx,
        policy,
        dropped_rows: metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => label),
        occupancy: occupancy.clone(),
        accepted_rows: Arc::default(),
        counters: None,
        drop_log: Arc::new(DropLog::new(
            format!("sink \"{name}\" queue"),
            "rows",
            "nmsd_sink_queue_dropped_rows_total",
        )),
    };
    let accepted_rows = q.accepted_rows.clone();
    (
        q,
        SinkQueueReceiver {
            rx,
            occupancy,
            accepted_rows,
        },
    )
}

impl SinkQueueReceiver {
    /// Rows ever queued (not dropped) by any sender. At shutdown, what the sink neither wrote
    /// nor counted as failed is what an abandoned sink still held.
    pub fn accepted_rows(&self) -> Arc<AtomicU64> {
        self.accepted_rows.clone()
    }

    fn taken<T>(&self, r: T) -> T {
        self.occupancy.set(self.rx.len() as f64);
        r
    }

    /// Next message, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Batch, RecvTimeoutError> {
        self.taken(self.rx.recv_timeout(timeout))
    }

    /// Next message if one is waiting.
    pub fn try_recv(&self) -> Result<Batch, TryRecvError> {
        self.taken(self.rx.try_recv())
    }

    /// Every message until all senders are gone.
    pub fn iter(&self) -> impl Iterator<Item = Batch> + '_ {
        std::iter::from_fn(|| self.taken(self.rx.recv().ok()))
    }

    /// Every message waiting now.
    pub fn try_iter(&self) -> impl Iterator<Item = Batch> + '_ {
        std::iter::from_fn(|| self.taken(self.rx.try_recv().ok()))
    }
}

impl SinkQueue {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Count drops at this queue as the sink's discards too (`reason="queue_full"`).
    pub fn with_counters(mut self, counters: ComponentCounters) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Queue a message under the queue's full policy. Returns false if it was dropped (and
    /// counted): queue full under `drop`, or the sink has stopped.
    pub fn send(&self, msg: Batch) -> bool {
        let rows = msg.rows() as u64;
        let ok = match self.policy {
            FullPolicy::Block => self.tx.send(msg).is_ok(),
            FullPolicy::Drop => match self.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.drop_log.dropped(rows);
                    false
                }
                // The sink has stopped (shutdown): counted, but not news for the journal.
                Err(TrySendError::Disconnected(_)) => false,
            },
        };
        self.count(ok, rows);
        self.occupancy.set(self.tx.len() as f64);
        ok
    }

    fn count(&self, queued: bool, rows: u64) {
        if queued {
            self.accepted_rows.fetch_add(rows, Ordering::Relaxed);
        } else {
            self.dropped_rows.increment(rows);
            if let Some(c) = &self.counters {
                c.discarded("queue_full", rows);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_gauge_follows_the_sink_draining_the_queue() {
        let rec = crate::test_metrics::recorder();
        let (q, rx) = crate::test_metrics::within(&rec, || sink_queue("test", 8, FullPolicy::Drop));
        let occupancy = || {
            crate::test_metrics::value(&rec, "nmsd_sink_queue_occupancy_messages{sink=\"test\"}")
        };
        for _ in 0..3 {
            assert!(q.send(Batch::flows(vec![nmsd_parsers::FlowRecord::default()])));
        }
        assert_eq!(occupancy(), Some(3.0));
        // The sink takes everything; no sender runs again (traffic stopped).
        assert_eq!(rx.try_iter().count(), 3);
        assert_eq!(occupancy(), Some(0.0), "not the last sender's 3");
    }
}
