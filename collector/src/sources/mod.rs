//! Sources: where telemetry enters nmsd. One file per source kind, its config beside it.

pub mod netflow;
pub mod snmp;
