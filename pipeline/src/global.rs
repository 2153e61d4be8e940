//! The global stage: one thread for the processors that must see everything (SNMP rows, traps,
//! events, flows from every worker, merged keyed views).
//!
//! Workers and sources reach it over one bounded queue, under its full policy; drops are
//! counted in `nmsd_global_queue_dropped_records_total`. It stops when every sender is gone
//! (workers and sources finished), after flushing its processors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use metrics::{Counter, Gauge};

use crate::clock::unix_ms;
use crate::heartbeat::Heartbeat;
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
    dropped: Counter,
    /// Shared by the senders' clones: one journal line when drops start, then every 30 s.
    drop_log: Arc<crate::drop_log::DropLog>,
    occupancy: Gauge,
}

/// Make the global stage's queue.
pub fn global_queue(capacity: usize, policy: FullPolicy) -> (GlobalSender, Receiver<(u16, Batch)>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    metrics::describe_counter!(
        "nmsd_global_queue_dropped_records_total",
        "Records dropped because the global stage's queue was full (queue_full_policy = \"drop\")."
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
    (
        GlobalSender {
            tx,
            policy,
            dropped: metrics::counter!("nmsd_global_queue_dropped_records_total"),
            drop_log: Arc::new(crate::drop_log::DropLog::new(
                "global stage queue",
                "records",
                "nmsd_global_queue_dropped_records_total",
            )),
            occupancy: metrics::gauge!("nmsd_global_queue_occupancy_batches"),
        },
        rx,
    )
}

impl GlobalSender {
    /// Queue a batch emitted by `node` (of the global graph) under the full policy.
    pub fn send(&self, node: u16, b: Batch) -> bool {
        let rows = b.rows() as u64;
        let ok = match self.policy {
            FullPolicy::Block => self.tx.send((node, b)).is_ok(),
            FullPolicy::Drop => match self.tx.try_send((node, b)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.drop_log.dropped(rows);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        };
        if !ok {
            self.dropped.increment(rows);
        }
        self.occupancy.set(self.tx.len() as f64);
        ok
    }
}

/// The global stage's thread body.
pub struct GlobalStage {
    pub rx: Receiver<(u16, Batch)>,
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
