//! nmsd's SNMP side (see docs/snmp-design.md): the polling engine, interface rates, the trap
//! receiver, topology and a fast agent simulator. The wire format lives in
//! `nmsd_parsers::snmp`; nothing here parses bytes by hand.

pub mod engine;
pub mod rates;
pub mod sim;
pub mod topology;
pub mod traps;
