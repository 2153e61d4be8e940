//! Wire-format decoders for nmsd.
//!
//! NetFlow v5, NetFlow v9 and IPFIX datagrams become fixed-size [`FlowRecord`]s; captured
//! packets ([`packet`]) and capture files ([`pcap`]) are read here too, for the flow builder. Templates are
//! compiled into field-offset programs when they arrive (see [`template`]), so decoding a record
//! allocates nothing. This crate does no I/O: sockets, files and clocks belong to the caller.
//!
//! ```
//! use nmsd_parsers::FlowDecoder;
//! use nmsd_testkit::encode;
//! let tmpl = encode::ipv4_template(256);
//! let records = encode::sample_records(3, false, 1_767_225_600_000);
//! let mut msg = encode::MessageBuilder::v9(1_000_000, 1_767_225_660, 1, 0);
//! msg.template(&tmpl).data(&tmpl, &records);
//! let mut decoder = FlowDecoder::default();
//! let mut out = Vec::new();
//! let exporter = "192.0.2.1".parse().unwrap();
//! assert_eq!(decoder.decode(exporter, &msg.finish(), 0, &mut out), Ok(3));
//! assert_eq!(out[0].bytes, records[0].bytes);
//! ```

pub mod decoder;
pub mod domain;
pub mod error;
pub mod hash;
pub mod ie;
pub mod packet;
pub mod pcap;
pub mod persist;
pub mod record;
pub mod sflow;
pub mod snmp;
pub mod template;

pub use decoder::{
    DecoderLimits, DecoderStats, FlowDecoder, IpNet, MAX_FLOW_COUNTER, TimeBounds, TimePolicy,
};
pub use domain::{DomainKey, ExporterLoss};
pub use error::DecodeError;
pub use packet::{LinkType, PacketError, PacketInfo};
pub use record::{Direction, FlowRecord, FlowVersion, PacketCounts};
pub use template::{FieldSpec, TemplateDef, TemplateKind};
