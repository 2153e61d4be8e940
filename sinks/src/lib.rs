//! nmsd's sinks. Each sink runs on its own thread, takes typed [`nmsd_pipeline::Batch`]es from a
//! bounded queue, batches them by rows and time, and retries with backoff. One file (or folder)
//! per sink, its config struct beside it.

pub mod backoff;
pub mod disk_buffer;
pub mod questdb;

pub use nmsd_pipeline::shutdown::ShutdownSignal;
pub use nmsd_pipeline::sink_status::SinkStatus;
