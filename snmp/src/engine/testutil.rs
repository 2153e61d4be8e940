//! Helpers for the engine's unit tests: a device to poll and agent responses to feed it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{PduHeader, encode_community_message};
use nmsd_parsers::snmp::{Oid, PduKind, Value, Version};

use super::plan::{Credentials, DeviceSpec, Modules};

pub(super) const COMMUNITY: &[u8] = b"public";

pub(super) fn oid(arcs: &[u32]) -> Oid {
    Oid::from_arcs(arcs).expect("a valid OID")
}

/// A v2c device polling the system group and interfaces every 10 s (timeout 1 s, 2 retries).
pub(super) fn v2c_device(name: &str, addr: SocketAddr) -> DeviceSpec {
    DeviceSpec {
        name: Arc::from(name),
        addr,
        credentials: Credentials::V2c {
            community: Arc::new(zeroize::Zeroizing::new(COMMUNITY.to_vec())),
        },
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        retries: 2,
        max_repetitions: 25,
        max_in_flight: 2,
        modules: Modules::default(),
        flow_exporters: Vec::new(),
        prometheus: false,
        custom: Vec::new(),
        tags: Default::default(),
    }
}

/// An encoded v2c response.
pub(super) fn response(
    community: &[u8],
    request_id: i32,
    error_status: i64,
    error_index: i64,
    varbinds: &[(Oid, Value<'_>)],
) -> Vec<u8> {
    let pairs: Vec<_> = varbinds.iter().map(|(o, v)| (o.as_ref(), *v)).collect();
    let header = PduHeader {
        a: error_status,
        b: error_index,
        ..PduHeader::new(PduKind::Response, request_id)
    };
    let mut w = BackWriter::default();
    encode_community_message(&mut w, Version::V2c, community, &header, &pairs);
    w.as_bytes().to_vec()
}
