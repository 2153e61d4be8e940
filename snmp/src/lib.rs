//! nmsd's SNMP side (see docs/snmp-design.md): the polling engine, interface rates, the trap
//! receiver and topology. The wire format lives in `nmsd_parsers::snmp`; nothing here parses
//! bytes by hand. The agent simulator the tests and benches use is the dev-only crate
//! `nmsd-snmpsim`.

pub mod engine;
pub mod rates;
pub mod topology;
pub mod traps;
