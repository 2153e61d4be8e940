//! nmsd's sinks. Each sink runs on its own thread, takes [`nmsd_pipeline::SinkMessage`]s from a
//! bounded queue, batches them by rows and time, and retries with backoff. One file (or folder)
//! per sink, its config struct beside it.

pub mod backoff;
pub mod questdb;
pub mod shutdown;
pub mod status;

pub use shutdown::ShutdownSignal;
pub use status::SinkStatus;
