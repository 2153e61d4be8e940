//! Bounded queues from parse workers to sinks.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use metrics::{Counter, Gauge};

use crate::records::SinkMessage;
use crate::ring::FullPolicy;

/// Worker end of a sink's queue; cloned once per worker.
#[derive(Clone)]
pub struct SinkQueue {
    name: &'static str,
    tx: Sender<SinkMessage>,
    policy: FullPolicy,
    dropped_rows: Counter,
    occupancy: Gauge,
}

/// Make a queue of `capacity` messages for the sink `name`.
pub fn sink_queue(
    name: &'static str,
    capacity: usize,
    policy: FullPolicy,
) -> (SinkQueue, Receiver<SinkMessage>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    metrics::gauge!("nmsd_sink_queue_capacity_messages", "sink" => name).set(capacity as f64);
    let q = SinkQueue {
        name,
        tx,
        policy,
        dropped_rows: metrics::counter!("nmsd_sink_queue_dropped_rows_total", "sink" => name),
        occupancy: metrics::gauge!("nmsd_sink_queue_occupancy_messages", "sink" => name),
    };
    (q, rx)
}

impl SinkQueue {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Queue a message without ever blocking (for senders that must not stall, like the SNMP
    /// engine); a full queue drops it and counts the rows.
    pub fn try_send(&self, msg: SinkMessage) -> bool {
        let rows = msg.rows() as u64;
        let ok = self.tx.try_send(msg).is_ok();
        if !ok {
            self.dropped_rows.increment(rows);
        }
        self.occupancy.set(self.tx.len() as f64);
        ok
    }

    /// Queue a message under the queue's full policy. Returns false if it was dropped (and
    /// counted): queue full under `drop`, or the sink has stopped.
    pub fn send(&self, msg: SinkMessage) -> bool {
        let rows = msg.rows() as u64;
        let ok = match self.policy {
            FullPolicy::Block => self.tx.send(msg).is_ok(),
            FullPolicy::Drop => match self.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
        };
        if !ok {
            self.dropped_rows.increment(rows);
        }
        self.occupancy.set(self.tx.len() as f64);
        ok
    }
}
