//! nmsd's data plane.
//!
//! Receive threads (in the collector) fill [`records::DatagramBatch`]es and push them through
//! bounded SPSC [`ring`]s to [`worker::ParseWorker`]s, which decode them, run the per-worker
//! [`processors`] and [`route`] typed [`stream`] batches to sinks over bounded [`queue`]s and to
//! the [`global`] stage. The [`component`] model (processor and sink specs) lives here. Plain threads, no async,
//! no locks on the hot path; every queue has a capacity and a full policy, and every drop is a
//! Prometheus counter. Nothing here knows about config files, sockets or HTTP.

pub mod clock;
pub mod component;
pub mod delivery;
pub mod drop_log;
pub mod enrich;
pub mod event;
pub mod flow_table;
pub mod global;
pub mod heartbeat;
pub mod processors;
pub mod published;
pub mod queue;
pub mod records;
pub mod ring;
pub mod route;
pub mod shutdown;
pub mod sink_status;
pub mod snmp;
pub mod stream;
#[cfg(test)]
pub(crate) mod test_metrics;
pub mod units;
pub mod view;
pub mod worker;

pub use records::{DatagramBatch, FlowRecord, RollupRow};
pub use ring::FullPolicy;
pub use stream::{Batch, StreamKind, StreamSet};
