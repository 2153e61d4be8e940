//! Bounded queues from workers, sources and the global stage to sinks.
//!
//! A queue is bounded twice: in batches (`queue_capacity`, what the channel allocates) and in
//! bytes (`queue_max_bytes`, what its batches weigh, [`Batch::weight`]). The byte bound sheds
//! by stream priority: raw flows are refused once the queue holds half its bytes, roll-ups,
//! SNMP rows and traps at nine tenths, events only when it is full, so during an outage the
//! aggregated data outlives the bulk. Under `block` a sender waits instead, for the same
//! thresholds. A batch is always taken by an empty queue, whatever it weighs. Drops are counted
//! per stream and reason: `priority` (shed below the bound to make room for higher streams) or
//! `full`.

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

/// Why a batch was not queued: the `reason` label of the drop counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// It would fit, but not under its stream's share: lower-priority streams give way first.
    Priority,
    /// The queue is full (its byte bound or its batch capacity).
    Full,
}

impl Shed {
    pub fn label(self) -> &'static str {
        match self {
            Shed::Priority => "priority",
            Shed::Full => "full",
        }
    }
}

/// Why a batch was not queued by [`ByteBudget::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Shed by the byte bound or a full channel: news for the journal.
    Shed(Shed),
    /// The receiver has stopped (shutdown): counted as `full`, but not news.
    Stopped,
}

impl Refused {
    /// The drop counters' `reason`.
    pub fn reason(self) -> Shed {
        match self {
            Refused::Shed(s) => s,
            Refused::Stopped => Shed::Full,
        }
    }
}

/// A queue's byte bound, shared by its senders and its receiver: what its batches weigh
/// ([`Batch::weight`]) and how much of it each stream priority may fill.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    held: Arc<AtomicU64>,
    max: u64,
}

impl ByteBudget {
    pub fn new(max: u64) -> Self {
        ByteBudget {
            held: Arc::default(),
            max: max.max(1),
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The shared counter, for status and readiness.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.held.clone()
    }

    /// Whether a batch of `kind` weighing `weight` fits under its priority's share; under
    /// `block`, wait until it does (or `idle()` says the queue is empty and nobody takes from
    /// it). An empty budget takes any batch, so one larger than the bound cannot be refused
    /// forever.
    pub fn admit(
        &self,
        kind: StreamKind,
        weight: u64,
        policy: FullPolicy,
        idle: impl Fn() -> bool,
    ) -> Result<(), Shed> {
        let limit = self.max / 100 * ADMIT_PERCENT[kind.priority()];
        loop {
            let held = self.held();
            if held == 0 || held.saturating_add(weight) <= limit {
                return Ok(());
            }
            match policy {
                FullPolicy::Drop if held.saturating_add(weight) <= self.max => {
                    return Err(Shed::Priority);
                }
                FullPolicy::Drop => return Err(Shed::Full),
                FullPolicy::Block => {
                    // The receiver takes batches every few milliseconds while it can; a
                    // sender waiting on bytes re-checks at that pace.
                    if idle() && self.held() == held {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    }

    pub fn add(&self, weight: u64) {
        self.held.fetch_add(weight, Ordering::Relaxed);
    }

    /// Queue `msg` (of `kind`, weighing `weight`) on `tx` under this bound and `policy`: it is
    /// admitted by its stream's share ([`ByteBudget::admit`]), then sent (waiting under
    /// `block`, refused when the channel is full under `drop`); its weight is held until the
    /// receiver takes it, and given back if it was not queued.
    pub fn send<T>(
        &self,
        tx: &Sender<T>,
        msg: T,
        kind: StreamKind,
        weight: u64,
        policy: FullPolicy,
    ) -> Result<(), Refused> {
        self.admit(kind, weight, policy, || tx.is_empty())
            .map_err(Refused::Shed)?;
        self.add(weight);
        let sent = match policy {
            FullPolicy::Block => tx.send(msg).map_err(|_| Refused::Stopped),
            FullPolicy::Drop => tx.try_send(msg).map_err(|e| match e {
                TrySendError::Full(_) => Refused::Shed(Shed::Full),
                TrySendError::Disconnected(_) => Refused::Stopped,
            }),
        };
        if sent.is_err() {
            self.sub(weight);
        }
        sent
    }

    /// What is held after the receiver looked at its queue: it took a batch of `weight`
    /// (given back), or found none. The receiver sets its gauges from this on every look,
    /// because a sender's set can land after the batch was taken.
    pub fn after_look(&self, took: Option<u64>) -> u64 {
        match took {
            Some(weight) => self.sub(weight),
            None => self.held(),
        }
    }

    /// Give back `weight`; returns what is held after.
    pub fn sub(&self, weight: u64) -> u64 {
        self.held
            .fetch_sub(weight, Ordering::Relaxed)
            .saturating_sub(weight)
    }
}

/// Worker end of a sink's queue; cloned once per worker.
#[derive(Clone)]
pub struct SinkQueue {
    name: Arc<str>,
    tx: Sender<Batch>,
    policy: FullPolicy,
    /// Raw flows shed by priority (other drops are looked up when they happen).
    dropped_rows: Counter,
    /// Bytes the batches in the queue weigh, shared with the receiver.
    budget: ByteBudget,
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
    budget: ByteBudget,
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
    let budget = ByteBudget::new(max_bytes);
    let q = SinkQueue {
        name: Arc::from(name),
        tx,
        policy,
        // Flows from the start (every config has them); other streams from their first drop,
        // so /metrics lists no SNMP series where SNMP is not set up.
        dropped_rows: metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => label.clone(), "stream" => StreamKind::Flows.name(), "reason" => Shed::Priority.label()),
        budget: budget.clone(),
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
            budget,
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
        self.budget.counter()
    }

    /// Set the gauges from the queue as it is now, whether a batch was taken or not: a
    /// sender's set can land after the sink took its batch, and once traffic stops only the
    /// sink's next look (every receive, timeouts included) corrects it.
    fn taken(&self, b: Option<&Batch>) {
        let held = self.budget.after_look(b.map(Batch::weight));
        self.bytes_gauge.set(held as f64);
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
        let sent = self.budget.send(&self.tx, msg, kind, weight, self.policy);
        if let Err(Refused::Shed(_)) = sent {
            self.drop_log.dropped(rows);
        }
        let ok = sent.is_ok();
        self.count(sent.map_err(Refused::reason), rows, kind);
        self.occupancy.set(self.tx.len() as f64);
        self.bytes_gauge.set(self.budget.held() as f64);
        ok
    }

    fn count(&self, queued: Result<(), Shed>, rows: u64, kind: StreamKind) {
        if let Err(why) = queued {
            if kind == StreamKind::Flows && why == Shed::Priority {
                self.dropped_rows.increment(rows);
            } else {
                metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => self.name.to_string(), "stream" => kind.name(), "reason" => why.label())
                    .increment(rows);
            }
            if let Some(c) = &self.counters {
                c.discarded("queue_full", rows);
            }
        } else {
            self.accepted_rows.fetch_add(rows, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_says_why_it_refuses() {
        let b = ByteBudget::new(1000);
        let idle = || false;
        b.add(400);
        // Flows may fill half: 400 + 200 is past it, though it would fit the bound.
        assert_eq!(
            b.admit(StreamKind::Flows, 200, FullPolicy::Drop, idle),
            Err(Shed::Priority)
        );
        assert_eq!(
            b.admit(StreamKind::Rollups, 200, FullPolicy::Drop, idle),
            Ok(())
        );
        b.add(500);
        assert_eq!(
            b.admit(StreamKind::Events, 200, FullPolicy::Drop, idle),
            Err(Shed::Full)
        );
        assert_eq!(
            b.admit(StreamKind::Events, 100, FullPolicy::Drop, idle),
            Ok(())
        );
        // Under block with nobody taking from an empty queue, it goes in rather than wait.
        assert_eq!(
            b.admit(StreamKind::Flows, 200, FullPolicy::Block, || true),
            Ok(())
        );
        assert_eq!(b.sub(900), 0);
        assert_eq!(
            b.admit(StreamKind::Flows, 5000, FullPolicy::Drop, idle),
            Ok(())
        );
    }

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

    /// A sender sets the gauges after its send; on two cores the sink can take that batch and
    /// set 0 first, and the sender's late value stayed until the next batch. Once traffic
    /// stops there is none: the full-buffer test waited two minutes for a queue "holding"
    /// 40 KiB that was empty. The sink's idle looks must correct it.
    #[test]
    fn a_senders_late_gauge_write_is_corrected_by_the_idle_sink() {
        let rec = crate::test_metrics::recorder();
        let (q, rx) = crate::test_metrics::within(&rec, || {
            sink_queue(
                "late",
                QueueBounds {
                    capacity: 8,
                    max_bytes: 1 << 20,
                    policy: FullPolicy::Drop,
                },
            )
        });
        let bytes = || crate::test_metrics::value(&rec, "nmsd_sink_queue_bytes{sink=\"late\"}");
        let occupancy = || {
            crate::test_metrics::value(&rec, "nmsd_sink_queue_occupancy_messages{sink=\"late\"}")
        };
        let batch = Batch::flows(vec![nmsd_parsers::FlowRecord::default()]);
        let weight = batch.weight() as f64;
        assert!(q.send(batch));
        assert_eq!(rx.try_iter().count(), 1);
        // The interleaving: the sender read the budget before the sink took the batch, and
        // writes after it.
        q.bytes_gauge.set(weight);
        q.occupancy.set(1.0);
        assert_eq!(bytes(), Some(weight));
        assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
        assert_eq!(
            bytes(),
            Some(0.0),
            "the idle sink's look sets what the queue holds"
        );
        assert_eq!(occupancy(), Some(0.0));
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
