//! What the engine polls: devices with resolved addresses and ready-to-use credentials.
//!
//! The collector builds a [`Plan`] from config.toml (secrets read, passwords turned into keys);
//! the engine never sees a config file.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nmsd_parsers::snmp::usm::UserKeys;
use zeroize::Zeroizing;

/// How to talk to a device.
#[derive(Clone)]
pub enum Credentials {
    V2c {
        community: Arc<Zeroizing<Vec<u8>>>,
    },
    V3 {
        user: Arc<[u8]>,
        /// `None` for noAuthNoPriv.
        keys: Option<Arc<UserKeys>>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a community or key.
        match self {
            Credentials::V2c { .. } => f.write_str("V2c { community: <redacted> }"),
            Credentials::V3 { user, keys } => write!(
                f,
                "V3 {{ user: {:?}, keys: {:?} }}",
                String::from_utf8_lossy(user),
                keys
            ),
        }
    }
}

impl Credentials {
    pub fn version_label(&self) -> &'static str {
        match self {
            Credentials::V2c { .. } => "2c",
            Credentials::V3 { .. } => "3",
        }
    }
}

/// Which built-in modules a device polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modules {
    pub system: bool,
    pub interfaces: bool,
    /// LLDP-MIB neighbours, for the topology.
    pub lldp: bool,
    /// CISCO-CDP-MIB cdpCacheTable neighbours, for the topology (agents without it are silent).
    pub cdp: bool,
}

impl Default for Modules {
    fn default() -> Self {
        Modules {
            system: true,
            interfaces: true,
            lldp: false,
            cdp: false,
        }
    }
}

/// One device.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// Unique; labels everything.
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub credentials: Credentials,
    pub interval: Duration,
    /// Per attempt.
    pub timeout: Duration,
    pub retries: u32,
    pub max_repetitions: u32,
    /// Requests in flight to this device at once.
    pub max_in_flight: u32,
    pub modules: Modules,
    /// Addresses this device's NetFlow/IPFIX comes from: its interface names enrich those
    /// flows. Usually just the polled address.
    pub flow_exporters: Vec<std::net::IpAddr>,
    /// Export this device's per-interface gauges on /metrics (opt-in: cardinality).
    pub prometheus: bool,
    /// Indices into `Plan::custom`.
    pub custom: Vec<usize>,
    /// Operator tags (site, role, …) written with every row of this device.
    pub tags: nmsd_pipeline::snmp::Tags,
}

/// A user-defined OID: a scalar (instance OID, e.g. `….0`) or a table column.
#[derive(Clone, Debug)]
pub struct CustomOid {
    /// Column name in QuestDB.
    pub name: Arc<str>,
    pub oid: nmsd_parsers::snmp::Oid,
    pub kind: nmsd_pipeline::snmp::CustomKind,
}

/// A user-defined table: its columns are walked together.
#[derive(Clone, Debug)]
pub struct CustomTable {
    /// QuestDB table name without prefix (`snmp_<name>`).
    pub table: Arc<str>,
    pub columns: Vec<CustomOid>,
}

/// A user-defined module (like Telegraf's `[[inputs.snmp.field]]` / `[[inputs.snmp.table]]`).
#[derive(Clone, Debug)]
pub struct CustomModule {
    pub name: Arc<str>,
    /// QuestDB table of the scalars (`snmp_<module>`).
    pub scalar_table: Arc<str>,
    pub scalars: Vec<CustomOid>,
    pub tables: Vec<CustomTable>,
}

/// Everything the engine polls.
#[derive(Clone, Debug)]
pub struct Plan {
    pub devices: Vec<DeviceSpec>,
    /// Requests in flight over all devices.
    pub max_in_flight: usize,
    /// User-defined modules; devices refer to them by index.
    pub custom: Vec<CustomModule>,
}
