//! Interface names for flow records: `(exporter address, ifIndex)` → what SNMP polling learned
//! (docs/snmp-design.md §10). Built by each SNMP polling source, read by the `interface_names`
//! processor.

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::published::{Published, PublishedReader};

/// What is known about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfInfo {
    pub name: Option<Arc<str>>,
    pub alias: Option<Arc<str>>,
    pub speed_mbps: Option<u64>,
}

/// Interfaces of every device one SNMP source polls, keyed by each address its flows come from.
/// Entries are shared: enriching a row costs a reference count, not a copy of its strings.
#[derive(Clone, Debug, Default)]
pub struct IfDirectory {
    map: FxHashMap<(IpAddr, u32), Arc<IfInfo>>,
}

impl IfDirectory {
    pub fn insert(&mut self, exporter: IpAddr, if_index: u32, info: IfInfo) {
        self.map
            .insert((exporter.to_canonical(), if_index), Arc::new(info));
    }

    pub fn get(&self, exporter: IpAddr, if_index: u32) -> Option<&Arc<IfInfo>> {
        self.map.get(&(exporter.to_canonical(), if_index))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The directories of every SNMP polling source (one each), shared by the processors that
/// read them.
#[derive(Clone, Debug, Default)]
pub struct InterfaceDirectories {
    pub sources: Vec<Arc<Published<IfDirectory>>>,
}

impl InterfaceDirectories {
    /// One reader per directory, for one processor instance.
    pub fn readers(&self) -> Vec<PublishedReader<IfDirectory>> {
        self.sources.iter().map(|p| p.reader()).collect()
    }
}
