//! The `nmsd` daemon as a library: config, component registry, topology, sources, control
//! plane and lifecycle. The `nmsd` binary is a thin command line over it; tests and embedders
//! start a [`topology::Topology`] with a [`registry::Registry`] extended by their own
//! components.

pub mod config;
#[cfg(test)]
mod config_docs;
pub mod control;
pub mod lab;
pub mod lifecycle;
pub mod logging;
pub mod process_metrics;
pub mod registry;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod topology;
