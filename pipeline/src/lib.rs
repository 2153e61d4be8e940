//! nmsd's data plane.
//!
//! Receive threads (in the collector) fill [`records::DatagramBatch`]es and push them through
//! bounded SPSC [`ring`]s to [`worker::ParseWorker`]s, which decode them, run the
//! [`processors`] and pass results over bounded [`queue`]s to the sinks. Plain threads, no async,
//! no locks on the hot path; every queue has a capacity and a full policy, and every drop is a
//! Prometheus counter. Nothing here knows about config files, sockets or HTTP.

pub mod clock;
pub mod enrich;
pub mod heartbeat;
pub mod processors;
pub mod published;
pub mod queue;
pub mod records;
pub mod ring;
pub mod snmp;
#[cfg(test)]
pub(crate) mod test_metrics;
pub mod units;
pub mod worker;

pub use records::{DatagramBatch, FlowRecord, RollupRow, SinkMessage};
pub use ring::FullPolicy;
