//! SNMP poll results as the sinks see them (docs/snmp-design.md §7).

use std::net::IpAddr;
use std::sync::Arc;

/// A device's tags from config, as (QuestDB column name, value): the names carry the `tag_`
/// prefix already, so rows need no formatting per write. Shared by every row of the device.
pub type Tags = Arc<[(Arc<str>, Arc<str>)]>;

/// One interface of one poll: raw values and the rates computed against the previous poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterfaceRow {
    /// The poll's scheduled wall-clock slot (Unix ms), shared by every row of the poll so a
    /// replay upserts the same keys.
    pub ts_ms: u64,
    pub device: Arc<str>,
    pub tags: Tags,
    pub if_index: u32,
    pub if_name: Option<Arc<str>>,
    pub if_alias: Option<Arc<str>>,
    pub if_descr: Option<Arc<str>>,
    pub if_type: Option<i64>,
    pub speed_mbps: Option<u64>,
    pub admin_status: Option<i64>,
    pub oper_status: Option<i64>,
    /// 64 for HC counters, 32 for agents without ifXTable counters.
    pub counter_bits: u8,
    /// Raw counters in `nmsd_snmp::rates::Counter` order.
    pub counters: [Option<u64>; 12],
    pub interval_s: Option<f64>,
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
    pub in_util: Option<f64>,
    pub out_util: Option<f64>,
    /// Per-second rates in counter order (octets per second for the octet counters).
    pub per_second: [Option<f64>; 12],
    /// Why a rate is missing, if one is.
    pub rate_note: Option<&'static str>,
}

/// One device poll: system group and health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRow {
    pub ts_ms: u64,
    pub device: Arc<str>,
    pub tags: Tags,
    pub address: Option<IpAddr>,
    pub up: bool,
    /// Error kind of a failed or partial poll.
    pub error: Option<&'static str>,
    pub error_detail: Option<String>,
    pub sys_name: Option<String>,
    pub sys_descr: Option<String>,
    pub sys_object_id: Option<String>,
    pub sys_location: Option<String>,
    pub sys_contact: Option<String>,
    pub sys_uptime_ticks: Option<u32>,
    pub engine_id: Option<String>,
    pub engine_boots: Option<u32>,
    pub poll_ms: u32,
    pub rtt_ms: Option<f64>,
    pub requests: u32,
    pub timeouts: u32,
    pub varbinds: u32,
    pub interfaces: u32,
}

/// A received trap or inform (docs/snmp-design.md §9).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrapRow {
    /// Receive time, Unix ms.
    pub ts_ms: u64,
    pub source: Option<std::net::SocketAddr>,
    /// "v1", "v2c" or "v3".
    pub version: &'static str,
    /// "trap" or "inform".
    pub pdu: &'static str,
    /// snmpTrapOID (v2/v3), or the RFC 3584 mapping of a v1 trap.
    pub trap_oid: String,
    pub uptime_ticks: Option<u32>,
    /// The v3 user, or the *name* of the matching community entry (never the community).
    pub security_name: String,
    pub engine_id: Option<String>,
    pub request_id: Option<i32>,
    pub enterprise: Option<String>,
    pub generic_trap: Option<i64>,
    pub specific_trap: Option<i64>,
    /// JSON array of `{"oid", "type", "value"}`.
    pub varbinds: String,
}

/// A change in the LLDP/CDP topology, as seen from the local device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkRow {
    pub ts_ms: u64,
    /// "lldp" (or "cdp").
    pub protocol: &'static str,
    /// "up", "changed" or "down".
    pub state: &'static str,
    pub local_device: String,
    pub local_if_index: Option<u32>,
    pub local_port: String,
    /// The polled device it resolves to, else the neighbour's sysName or chassis ID.
    pub remote_device: String,
    pub remote_known: bool,
    pub remote_port: String,
    pub remote_port_descr: String,
    pub remote_chassis_id: String,
    pub remote_sys_name: String,
}

/// A value of a user-defined SNMP module.
#[derive(Clone, Debug, PartialEq)]
pub enum CustomValue {
    Gauge(f64),
    /// Raw counter and its per-second rate (none on the first poll or after a reset).
    Counter {
        raw: u64,
        rate: Option<f64>,
    },
    Label(String),
}

/// What kind of column a user-defined OID is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomKind {
    Gauge,
    Counter,
    Label,
}

/// One row of a user-defined scalar group or table (written to its own QuestDB table).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomRow {
    /// Table name without prefix: `snmp_<module>` for scalars, `snmp_<table>` for tables.
    pub table: Arc<str>,
    pub ts_ms: u64,
    pub device: Arc<str>,
    /// Row index (dotted arcs) for tables; None for scalars.
    pub idx: Option<String>,
    pub values: Vec<(Arc<str>, CustomValue)>,
}

/// The columns of a user-defined table, for its DDL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomTableSchema {
    /// Without prefix.
    pub table: String,
    pub indexed: bool,
    pub columns: Vec<(String, CustomKind)>,
}
