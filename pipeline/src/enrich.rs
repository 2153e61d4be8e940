//! Interface names for flow records: `(exporter address, ifIndex)` → what SNMP polling learned
//! (docs/snmp-design.md §10). Built by the SNMP engine, read by the QuestDB sink per roll-up row.

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// What is known about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfInfo {
    pub name: Option<Arc<str>>,
    pub alias: Option<Arc<str>>,
    pub speed_mbps: Option<u64>,
}

/// Interfaces of every polled device, keyed by each address its flows come from.
#[derive(Clone, Debug, Default)]
pub struct IfDirectory {
    map: FxHashMap<(IpAddr, u32), IfInfo>,
}

impl IfDirectory {
    pub fn insert(&mut self, exporter: IpAddr, if_index: u32, info: IfInfo) {
        self.map.insert((exporter.to_canonical(), if_index), info);
    }

    pub fn get(&self, exporter: IpAddr, if_index: u32) -> Option<&IfInfo> {
        self.map.get(&(exporter.to_canonical(), if_index))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
