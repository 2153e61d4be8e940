//! The global stage: one thread for the processors that must see everything (SNMP rows, traps,
//! events, flows from every worker, merged keyed views).
//!
//! Workers and sources reach it over one queue bounded in batches and in bytes (with the sink
//! queues' stream priorities: raw flows give way first), under its full policy; drops are
//! counted in `nmsd_global_queue_dropped_records_total{stream,reason}`. It stops when every sender is gone
//! (workers and sources finished), after flushing its processors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use metrics::Gauge;

use crate::clock::unix_ms;
use crate::heartbeat::Heartbeat;
use crate::queue::{ByteBudget, Refused};
use crate::ring::FullPolicy;
use crate::route::{Graph, Slot};
use crate::stream::Batch;

/// How often global processors tick.
const TICK: Duration = Duration::from_millis(250);

/// The senders' end of the global stage's queue.
#[derive(Clone)]
pub struct GlobalSender {
    tx: Sender<(u16, Batch)>,
    policy: FullPolicy,
    budget: ByteBudget,
    bytes: Gauge,
    /// Shared by the senders' clones: one journal line when drops start, then every 30 s.
    drop_log: Arc<crate::drop_log::DropLog>,
    occupancy: Gauge,
}

/// The global stage's end of its queue. It sets the gauges each time it looks at the queue,
/// idle or not: a sender's set can land after the stage took the batch, and once traffic
/// stops no sender corrects it.
pub struct GlobalReceiver {
    rx: Receiver<(u16, Batch)>,
    budget: ByteBudget,
    bytes: Gauge,
    occupancy: Gauge,
}

impl GlobalReceiver {
    fn recv_timeout(&self, wait: Duration) -> Result<(u16, Batch), RecvTimeoutError> {
        let r = self.rx.recv_timeout(wait);
        let held = self
            .budget
            .after_look(r.as_ref().ok().map(|(_, b)| b.weight()));
        self.bytes.set(held as f64);
        self.occupancy.set(self.rx.len() as f64);
        r
    }
}

/// Make the global stage's queue: `capacity` batches weighing at most `max_bytes`.
pub fn global_queue(
    capacity: usize,
    max_bytes: u64,
    policy: FullPolicy,
) -> (GlobalSender, GlobalReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    metrics::describe_counter!(
        "nmsd_global_queue_dropped_records_total",
        "Records dropped because the global stage's queue was full (global_queue_full_policy = \
         \"drop\"), by stream and reason (priority: shed to leave room for higher streams)."
    );
    metrics::describe_gauge!(
        "nmsd_global_queue_bytes",
        "Bytes the batches queued for the global stage weigh (bounded by global_queue_max_bytes)."
    );
    metrics::describe_gauge!(
        "nmsd_global_queue_capacity_batches",
        "Batches the global stage's queue holds."
    );
    metrics::describe_gauge!(
        "nmsd_global_queue_occupancy_batches",
        "Batches waiting in the global stage's queue."
    );
    metrics::gauge!("nmsd_global_queue_capacity_batches").set(capacity as f64);
    let budget = ByteBudget::new(max_bytes);
    let bytes = metrics::gauge!("nmsd_global_queue_bytes");
    let occupancy = metrics::gauge!("nmsd_global_queue_occupancy_batches");
    (
        GlobalSender {
            tx,
            policy,
            budget: budget.clone(),
            bytes: bytes.clone(),
            drop_log: Arc::new(crate::drop_log::DropLog::new(
                "global stage queue",
                "records",
                "nmsd_global_queue_dropped_records_total",
            )),
            occupancy: occupancy.clone(),
        },
        GlobalReceiver {
            rx,
            budget,
            bytes,
            occupancy,
        },
    )
}

impl GlobalSender {
    /// Queue a batch emitted by `node` (of the global graph) under the full policy.
    pub fn send(&self, node: u16, b: Batch) -> bool {
        let rows = b.rows() as u64;
        let kind = b.kind();
        let weight = b.weight();
        let sent = self
            .budget
            .send(&self.tx, (node, b), kind, weight, self.policy);
        if let Err(why) = sent {
            // The stage stopping (shutdown) is counted, but not news for the journal.
            if why != Refused::Stopped {
                self.drop_log.dropped(rows);
            }
            metrics::counter!("nmsd_global_queue_dropped_records_total", "stream" => kind.name(), "reason" => why.reason().label())
                .increment(rows);
        }
        self.occupancy.set(self.tx.len() as f64);
        self.bytes.set(self.budget.held() as f64);
        sent.is_ok()
    }
}

/// The global stage's thread body.
pub struct GlobalStage {
    pub rx: GlobalReceiver,
    pub graph: Arc<Graph>,
    pub slots: Vec<Slot>,
    pub heartbeat: Arc<Heartbeat>,
}

impl GlobalStage {
    /// Run until every sender is gone, then flush.
    pub fn run(mut self) {
        let mut last_tick = Instant::now();
        loop {
            let wait = TICK.saturating_sub(last_tick.elapsed());
            self.heartbeat.idle();
            let msg = self.rx.recv_timeout(wait);
            self.heartbeat.beat();
            match msg {
                Ok((node, batch)) => {
                    self.graph
                        .dispatch(node as usize, batch, &mut self.slots, 0);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.graph.tick(unix_ms(), &mut self.slots);
            }
        }
        self.graph.flush(&mut self.slots);
        tracing::debug!("global stage stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As for the sink queues: a sender's gauge write can land after the stage took its batch;
    /// the stage's idle look must correct it (it used to set nothing when idle, and occupancy
    /// was only ever set by senders).
    #[test]
    fn a_senders_late_gauge_write_is_corrected_by_the_idle_stage() {
        let rec = crate::test_metrics::recorder();
        let (tx, rx) =
            crate::test_metrics::within(&rec, || global_queue(4, 1 << 20, FullPolicy::Drop));
        let value = |name: &str| crate::test_metrics::value(&rec, name);
        let batch = Batch::flows(vec![nmsd_parsers::FlowRecord::default()]);
        let weight = batch.weight() as f64;
        assert!(tx.send(0, batch));
        assert!(rx.recv_timeout(Duration::from_millis(1)).is_ok());
        tx.bytes.set(weight);
        tx.occupancy.set(1.0);
        assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
        assert_eq!(value("nmsd_global_queue_bytes"), Some(0.0));
        assert_eq!(value("nmsd_global_queue_occupancy_batches"), Some(0.0));
    }
}
