//! Bounded queues from workers, sources and the global stage to sinks.
//!
//! A queue is bounded twice: in batches (`queue_capacity`, what the channel allocates) and in
//! bytes (`queue_max_bytes`, what its batches weigh, [`Batch::weight`]). The byte bound sheds
//! by stream priority: raw flows are refused once the queue holds half its bytes, roll-ups,
//! SNMP rows and traps at nine tenths, events only when it is full, so during an outage the
//! aggregated data outlives the bulk. Under `block` a sender waits instead, for the same
//! thresholds. A batch is always taken by an empty queue, whatever it weighs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use metrics::{Counter, Gauge};

use crate::component::ComponentCounters;
use crate::drop_log::DropLog;
use crate::ring::FullPolicy;
use crate::stream::{Batch, StreamKind};

/// Share of `max_bytes` up to which a stream of each priority is taken (see the module doc).
const ADMIT_PERCENT: [u64; 3] = [100, 90, 50];

/// Worker end of a sink's queue; cloned once per worker.
#[derive(Clone)]
pub struct SinkQueue {
    name: Arc<str>,
    tx: Sender<Batch>,
    policy: FullPolicy,
    /// Raw flows dropped (other streams' drops are looked up when they happen).
    dropped_rows: Counter,
    /// Bytes the batches in the queue weigh, shared with the receiver.
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    bytes_gauge: Gauge,
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
    bytes: Arc<AtomicU64>,
    bytes_gauge: Gauge,
    accepted_rows: Arc<AtomicU64>,
}

/// How a sink's queue is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBounds {
    /// Batches.
    pub capacity: usize,
    /// Bytes the queued batches weigh.
    pub max_bytes: u64,
    pub policy: FullPolicy,
}

/// HELP texts of the sink queue families.
fn describe_queue_metrics() {
    metrics::describe_gauge!(
        "nmsd_sink_queue_bytes",
        "Bytes the batches queued for a sink weigh (bounded by queue_max_bytes)."
    );
    metrics::describe_gauge!(
        "nmsd_sink_queue_max_bytes",
        "A sink queue's byte bound (queue_max_bytes)."
    );
}

/// Make the queue of the sink `name`.
pub fn sink_queue(name: &str, bounds: QueueBounds) -> (SinkQueue, SinkQueueReceiver) {
    let QueueBounds {
        capacity,
        max_bytes,
        policy,
    } = bounds;
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let label = name.to_string();
    describe_queue_metrics();
    metrics::gauge!("nmsd_sink_queue_capacity_messages", "sink" => label.clone())
        .set(capacity as f64);
    metrics::gauge!("nmsd_sink_queue_max_bytes", "sink" => label.clone()).set(max_bytes as f64);
    let occupancy = metrics::gauge!("nmsd_sink_queue_occupancy_messages", "sink" => label.clone());
    let bytes_gauge = metrics::gauge!("nmsd_sink_queue_bytes", "sink" => label.clone());
    let bytes = Arc::new(AtomicU64::new(0));
    let q = SinkQueue {
        name: Arc::from(name),
        tx,
        policy,
        // Flows from the start (every config has them); other streams from their first drop,
        // so /metrics lists no SNMP series where SNMP is not set up.
        dropped_rows: metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => label.clone(), "stream" => StreamKind::Flows.name()),
        bytes: bytes.clone(),
        max_bytes: max_bytes.max(1),
        bytes_gauge: bytes_gauge.clone(),
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
            bytes,
            bytes_gauge,
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

    /// What the queued batches weigh now, in bytes (for status and readiness).
    pub fn queued_bytes(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    fn taken(&self, b: Option<&Batch>) {
        if let Some(b) = b {
            let w = b.weight();
            let left = self.bytes.fetch_sub(w, Ordering::Relaxed).saturating_sub(w);
            self.bytes_gauge.set(left as f64);
        }
        self.occupancy.set(self.rx.len() as f64);
    }

    /// Next message, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Batch, RecvTimeoutError> {
        let r = self.rx.recv_timeout(timeout);
        self.taken(r.as_ref().ok());
        r
    }

    /// Next message if one is waiting.
    pub fn try_recv(&self) -> Result<Batch, TryRecvError> {
        let r = self.rx.try_recv();
        self.taken(r.as_ref().ok());
        r
    }

    /// Every message until all senders are gone.
    pub fn iter(&self) -> impl Iterator<Item = Batch> + '_ {
        std::iter::from_fn(|| {
            let r = self.rx.recv().ok();
            self.taken(r.as_ref());
            r
        })
    }

    /// Every message waiting now.
    pub fn try_iter(&self) -> impl Iterator<Item = Batch> + '_ {
        std::iter::from_fn(|| {
            let r = self.rx.try_recv().ok();
            self.taken(r.as_ref());
            r
        })
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
        let kind = msg.kind();
        let weight = msg.weight();
        if !self.admit(kind, weight) {
            self.drop_log.dropped(rows);
            self.count(false, rows, kind);
            return false;
        }
        self.bytes.fetch_add(weight, Ordering::Relaxed);
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
        if !ok {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
        }
        self.count(ok, rows, kind);
        self.occupancy.set(self.tx.len() as f64);
        self.bytes_gauge
            .set(self.bytes.load(Ordering::Relaxed) as f64);
        ok
    }

    /// Whether a batch of `kind` weighing `weight` fits under its priority's share of the byte
    /// bound; under `block`, wait until it does (or the sink stops). An empty queue takes any
    /// batch, so one larger than the bound cannot be refused forever.
    fn admit(&self, kind: StreamKind, weight: u64) -> bool {
        let limit = self.max_bytes / 100 * ADMIT_PERCENT[kind.priority()];
        loop {
            let held = self.bytes.load(Ordering::Relaxed);
            if held == 0 || held.saturating_add(weight) <= limit {
                return true;
            }
            match self.policy {
                FullPolicy::Drop => return false,
                FullPolicy::Block => {
                    // The sink takes batches every few milliseconds while it can write; a
                    // sender waiting on bytes re-checks at that pace.
                    if self.tx.is_empty() && self.bytes.load(Ordering::Relaxed) == held {
                        return true;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    }

    fn count(&self, queued: bool, rows: u64, kind: StreamKind) {
        if queued {
            self.accepted_rows.fetch_add(rows, Ordering::Relaxed);
        } else {
            if kind == StreamKind::Flows {
                self.dropped_rows.increment(rows);
            } else {
                metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => self.name.to_string(), "stream" => kind.name())
                    .increment(rows);
            }
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
        let (q, rx) = crate::test_metrics::within(&rec, || {
            sink_queue(
                "test",
                QueueBounds {
                    capacity: 8,
                    max_bytes: 1 << 20,
                    policy: FullPolicy::Drop,
                },
            )
        });
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

    #[test]
    fn a_full_queue_sheds_raw_flows_first_then_aggregates_and_keeps_events() {
        use crate::event::{Event, Severity};
        use crate::records::RollupRow;
        let flow = Batch::flows(vec![nmsd_parsers::FlowRecord::default(); 10]);
        let w = flow.weight();
        // Room for ten such batches.
        let (q, rx) = sink_queue(
            "shed",
            QueueBounds {
                capacity: 1000,
                max_bytes: 10 * w,
                policy: FullPolicy::Drop,
            },
        );
        let mut sent = [0u64; 3];
        let mut kept = [0u64; 3];
        let row = RollupRow::sample();
        for i in 0..60 {
            let (k, b) = match i % 3 {
                0 => (
                    2,
                    Batch::flows(vec![nmsd_parsers::FlowRecord::default(); 10]),
                ),
                1 => (1, Batch::rollups(vec![row.clone(); 4])),
                _ => (0, Batch::events(vec![Event::new(0, "k", Severity::Info)])),
            };
            let rows = b.rows() as u64;
            sent[k] += rows;
            if q.send(b) {
                kept[k] += rows;
            }
        }
        // Flows stopped first; events were still taken after everything else was refused.
        assert!(kept[2] < sent[2], "flows shed: {kept:?} of {sent:?}");
        assert!(kept[1] > 0 && kept[1] <= sent[1]);
        assert!(kept[0] >= kept[2] / 10, "{kept:?}");
        let flows_ok = kept[2] / 10;
        let bytes_left: u64 = rx.try_iter().map(|b| b.weight()).sum();
        assert!(bytes_left <= 10 * w, "the bound holds: {bytes_left}");
        assert!(flows_ok * w <= 5 * w + w, "flows only to half the bound");
        // Drained: everything is taken again.
        assert!(q.send(Batch::flows(vec![nmsd_parsers::FlowRecord::default(); 10])));
    }
}
