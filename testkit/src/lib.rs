//! Test tooling for nmsd, kept out of the crates the binary links (docs/design.md, "Crates"):
//! an export encoder that builds NetFlow v5/v9/IPFIX datagrams from records, a pcap/pcapng
//! reader, and an oracle that decodes with the `netflow_parser` crate and maps the result to
//! nmsd's record semantics, for differential tests and fuzzing.

pub mod capture;
pub mod encode;
pub mod oracle;
