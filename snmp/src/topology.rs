//! The network graph from LLDP and CDP (docs/snmp-design.md §11).
//!
//! Each polled device reports its neighbours per local port, per protocol. A neighbour is
//! resolved to a polled device by chassis ID (equal to that device's own lldpLocChassisId), else
//! by name (LLDP sysName or CDP DeviceId against a device's sysName or configured name,
//! case-insensitive, also without the domain), else by address (the CDP address equal to exactly
//! one polled device's address); otherwise it is an external node. Adjacencies are directional
//! observations, kept per protocol; links merge both directions of one cable and both protocols
//! (ports are named by the device's ifName where it can be matched, so LLDP's `Gi0/1` and CDP's
//! `GigabitEthernet0/1` meet). Changes (a neighbour appearing, changing or gone from two
//! successful polls of that protocol in a row) become `topology_link` rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use nmsd_pipeline::snmp::LinkRow;
use serde::Serialize;

/// The discovery protocol an adjacency was seen with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Lldp,
    Cdp,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Lldp => "lldp",
            Protocol::Cdp => "cdp",
        }
    }
}

/// What one device's LLDP tables said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LldpView {
    /// lldpLocChassisId (hex) and lldpLocSysName.
    pub chassis_id: Option<String>,
    pub sys_name: Option<String>,
    /// Neighbours by local port name.
    pub neighbours: BTreeMap<String, Neighbour>,
    /// lldpLocPortTable: each local port's lldpLocPortId → the port's name as in
    /// `neighbours`. What the device advertises is its PortId, which need not be an interface
    /// name (Junos sends a locally assigned number): neighbours' views map back through it.
    pub ports: BTreeMap<String, String>,
}

/// One remote system seen on a local port (LLDP or CDP).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub local_if_index: Option<u32>,
    /// LLDP chassis ID; empty for CDP.
    pub chassis_id: String,
    /// LLDP port ID, or CDP cdpCacheDevicePort.
    pub port_id: String,
    /// LLDP port description; empty for CDP.
    pub port_descr: String,
    /// LLDP system name, or CDP cdpCacheDeviceId.
    pub sys_name: String,
    /// CDP cdpCacheAddress (IPv4, or IPv6); LLDP: none.
    pub address: Option<IpAddr>,
    /// CDP cdpCachePlatform; empty for LLDP.
    pub platform: String,
}

/// Names of one interface of a polled device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNames {
    pub name: String,
    pub descr: String,
}

#[derive(Clone, Debug)]
struct Adjacency {
    neighbour: Neighbour,
    first_seen_ms: u64,
    last_seen_ms: u64,
    /// Successful polls of its protocol in a row it was missing from.
    missing: u8,
}

/// A device that took part in the topology (polled LLDP or CDP at least once).
#[derive(Clone, Debug, Default)]
struct DeviceTopo {
    chassis_id: Option<String>,
    /// lldpLocSysName.
    lldp_sys_name: Option<String>,
    /// lldpLocPortId → local port name (see [`LldpView::ports`]).
    lldp_ports: BTreeMap<String, String>,
    /// By (protocol, local port).
    adjacencies: BTreeMap<(Protocol, String), Adjacency>,
}

/// What is known of every configured device, topology or not: remotes resolve to these.
#[derive(Clone, Debug, Default)]
struct Known {
    address: Option<IpAddr>,
    /// sysName from the system group.
    sys_name: Option<String>,
    /// By ifIndex, from the last good interfaces poll.
    interfaces: BTreeMap<u32, PortNames>,
}

/// The graph, kept by the engine.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    devices: BTreeMap<String, DeviceTopo>,
    known: BTreeMap<String, Known>,
}

/// A snapshot for the API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TopologySnapshot {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub id: String,
    /// A polled device (true) or only seen as a neighbour.
    pub known: bool,
    /// The polled address, or for an external node the address CDP gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For an external node: the platform CDP gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub device: String,
    pub port: String,
    /// The port's ifIndex on a polled device (from its interfaces poll, else the local
    /// ifIndex its own neighbour table gave); null for external nodes.
    pub if_index: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
    /// "lldp", "cdp" or both, in that order.
    pub protocols: Vec<&'static str>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// A system name for matching: without a trailing `(serial)` (NX-OS CDP device IDs), without
/// the domain (unless it is an IP address), lowercase.
fn name_key(name: &str) -> String {
    let mut n = name.trim();
    if let Some(i) = n.find('(')
        && n.ends_with(')')
        && i > 0
    {
        n = n[..i].trim_end();
    }
    if n.parse::<IpAddr>().is_err() {
        n = n.split('.').next().unwrap_or(n);
    }
    n.to_ascii_lowercase()
}

/// Indexes for resolving neighbours to polled devices, built per batch of lookups.
struct Resolver<'a> {
    chassis: HashMap<&'a str, &'a str>,
    names: HashMap<String, &'a str>,
    /// Address → the device with it, or None when several devices share it (ambiguous).
    addresses: HashMap<IpAddr, Option<&'a str>>,
}

impl<'a> Resolver<'a> {
    fn new(t: &'a Topology) -> Self {
        let mut r = Resolver {
            chassis: HashMap::new(),
            names: HashMap::new(),
            addresses: HashMap::new(),
        };
        // Later inserts win, so order by priority: configured names, then sysNames.
        for name in t.known.keys().chain(t.devices.keys()) {
            r.names.insert(name_key(name), name);
        }
        for (name, k) in &t.known {
            if let Some(s) = k.sys_name.as_deref().filter(|s| !s.is_empty()) {
                r.names.insert(name_key(s), name);
            }
            if let Some(a) = k.address {
                r.addresses
                    .entry(a)
                    .and_modify(|d| *d = None)
                    .or_insert(Some(name));
            }
        }
        for (name, d) in &t.devices {
            if let Some(s) = d.lldp_sys_name.as_deref().filter(|s| !s.is_empty()) {
                r.names.insert(name_key(s), name);
            }
            if let Some(c) = d.chassis_id.as_deref().filter(|c| !c.is_empty()) {
                r.chassis.insert(c, name);
            }
        }
        r
    }

    /// The polled device a neighbour is, if any.
    fn resolve(&self, n: &Neighbour) -> Option<&'a str> {
        if let Some(d) = self.chassis.get(n.chassis_id.as_str()) {
            return Some(d);
        }
        let key = name_key(&n.sys_name);
        if !key.is_empty()
            && let Some(d) = self.names.get(&key)
        {
            return Some(d);
        }
        n.address
            .and_then(|a| self.addresses.get(&a).copied().flatten())
    }
}

impl Topology {
    /// A configured device and its polled address: neighbours may resolve to it by address or
    /// name before it was polled.
    pub fn register(&mut self, device: &str, address: IpAddr) {
        self.known.entry(device.to_string()).or_default().address = Some(address);
    }

    /// A device's sysName from the system group (matched against LLDP sysNames and CDP device
    /// IDs).
    pub fn set_sys_name(&mut self, device: &str, sys_name: &str) {
        let k = self.known.entry(device.to_string()).or_default();
        if k.sys_name.as_deref() != Some(sys_name) {
            k.sys_name = Some(sys_name.to_string());
        }
    }

    /// A device's interfaces from a complete interfaces poll: CDP's local ifIndex becomes a port
    /// name, and remote ports given as descriptions become that device's ifName.
    pub fn set_interfaces(&mut self, device: &str, interfaces: BTreeMap<u32, PortNames>) {
        let k = self.known.entry(device.to_string()).or_default();
        if k.interfaces != interfaces {
            k.interfaces = interfaces;
        }
    }

    /// Take one device's successful LLDP poll; returns the rows of what changed.
    pub fn observe(&mut self, device: &str, view: LldpView, now_ms: u64) -> Vec<LinkRow> {
        let entry = self.devices.entry(device.to_string()).or_default();
        entry.chassis_id = view.chassis_id;
        entry.lldp_sys_name = view.sys_name;
        entry.lldp_ports = view.ports;
        self.observe_protocol(device, Protocol::Lldp, view.neighbours, now_ms)
    }

    /// Take one device's successful CDP poll (cdpCacheTable neighbours by local ifIndex);
    /// returns the rows of what changed. Local ports are named by ifName (else ifDescr, else
    /// the ifIndex) from the device's last interfaces poll.
    pub fn observe_cdp(
        &mut self,
        device: &str,
        neighbours: BTreeMap<u32, Neighbour>,
        now_ms: u64,
    ) -> Vec<LinkRow> {
        let ifs = self.known.get(device).map(|k| &k.interfaces);
        let mut by_port = BTreeMap::new();
        for (if_index, mut n) in neighbours {
            let port = ifs
                .and_then(|m| m.get(&if_index))
                .map(|p| {
                    if p.name.is_empty() {
                        p.descr.clone()
                    } else {
                        p.name.clone()
                    }
                })
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| if_index.to_string());
            n.local_if_index = Some(if_index);
            // One neighbour per local port and protocol (topology_link's key): the first wins.
            by_port.entry(port).or_insert(n);
        }
        self.devices.entry(device.to_string()).or_default();
        self.observe_protocol(device, Protocol::Cdp, by_port, now_ms)
    }

    fn observe_protocol(
        &mut self,
        device: &str,
        protocol: Protocol,
        neighbours: BTreeMap<String, Neighbour>,
        now_ms: u64,
    ) -> Vec<LinkRow> {
        let mut rows = Vec::new();
        let entry = self.devices.entry(device.to_string()).or_default();
        let all = std::mem::take(&mut entry.adjacencies);
        let (mut old, mut new): (BTreeMap<_, _>, BTreeMap<_, _>) =
            all.into_iter().partition(|((p, _), _)| *p == protocol);
        for (port, n) in neighbours {
            let key = (protocol, port);
            let state = match old.remove(&key) {
                Some(mut a) if a.neighbour == n => {
                    a.last_seen_ms = now_ms;
                    a.missing = 0;
                    new.insert(key, a);
                    continue;
                }
                Some(_) => "changed",
                None => "up",
            };
            new.insert(
                key.clone(),
                Adjacency {
                    neighbour: n.clone(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    missing: 0,
                },
            );
            rows.push((state, key.1, n));
        }
        // Missing once is noise (an entry aging and coming back); twice in a row is gone.
        for (key, mut a) in old {
            a.missing += 1;
            if a.missing >= 2 {
                rows.push(("down", key.1, a.neighbour));
            } else {
                new.insert(key, a);
            }
        }
        if let Some(d) = self.devices.get_mut(device) {
            d.adjacencies = new;
        }
        if rows.is_empty() {
            return Vec::new();
        }
        let resolver = Resolver::new(self);
        rows.into_iter()
            .map(|(state, port, n)| {
                let remote = resolver.resolve(&n).map(str::to_string);
                LinkRow {
                    ts_ms: now_ms,
                    protocol: protocol.label(),
                    state,
                    local_device: device.to_string(),
                    local_if_index: n.local_if_index,
                    local_port: port,
                    remote_known: remote.is_some(),
                    remote_device: remote.unwrap_or_else(|| node_name(&n)),
                    remote_port: n.port_id,
                    remote_port_descr: n.port_descr,
                    remote_chassis_id: n.chassis_id,
                    remote_sys_name: n.sys_name,
                }
            })
            .collect()
    }

    /// Nodes and links (both directions of a cable and both protocols merged).
    pub fn snapshot(&self) -> TopologySnapshot {
        let resolver = Resolver::new(self);
        // Per device: lowercase ifName and ifDescr → ifName.
        let ports: HashMap<&str, HashMap<String, &str>> = self
            .known
            .iter()
            .map(|(d, k)| {
                let mut m = HashMap::new();
                for p in k.interfaces.values() {
                    let name = if p.name.is_empty() { &p.descr } else { &p.name };
                    for alias in [&p.descr, &p.name] {
                        if !alias.is_empty() {
                            m.insert(alias.to_ascii_lowercase(), name.as_str());
                        }
                    }
                }
                (d.as_str(), m)
            })
            .collect();
        let canon = |device: &str, port: &str| -> String {
            ports
                .get(device)
                .and_then(|m| m.get(&port.to_ascii_lowercase()))
                .map_or_else(|| port.to_string(), |p| p.to_string())
        };
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let known_node = |name: &str| Node {
            id: name.to_string(),
            known: true,
            address: self
                .known
                .get(name)
                .and_then(|k| k.address)
                .map(|a| a.to_string()),
            platform: None,
        };
        for d in self.devices.keys() {
            nodes.insert(d.clone(), known_node(d));
        }
        let mut links: BTreeMap<(Endpoint, Endpoint), Link> = BTreeMap::new();
        // (device, port as named in the graph) → ifIndex from that device's own neighbour
        // tables, for devices polled without the interfaces module.
        let mut local_index: HashMap<(String, String), u32> = HashMap::new();
        for (dev, t) in &self.devices {
            // The remote port of the first protocol (LLDP before CDP) seen on a local port
            // towards a remote node names that end of the cable for every protocol.
            let mut remote_port_of: HashMap<(String, String), String> = HashMap::new();
            for ((protocol, port), a) in &t.adjacencies {
                let n = &a.neighbour;
                let remote = resolver.resolve(n);
                let rdev = remote.map_or_else(|| node_name(n), str::to_string);
                match remote {
                    Some(r) => {
                        nodes.entry(r.to_string()).or_insert_with(|| known_node(r));
                    }
                    None => {
                        let node = nodes.entry(rdev.clone()).or_insert_with(|| Node {
                            id: rdev.clone(),
                            known: false,
                            address: None,
                            platform: None,
                        });
                        if node.address.is_none() {
                            node.address = n.address.map(|a| a.to_string());
                        }
                        if node.platform.is_none() && !n.platform.is_empty() {
                            node.platform = Some(n.platform.clone());
                        }
                    }
                }
                let local = canon(dev, port);
                let rport = match remote {
                    Some(r) => {
                        // The remote port as that device names it: its ifName or ifDescr, else
                        // through its own LLDP port table (a locally assigned PortId), else
                        // the description the neighbour advertised with it.
                        let named = |p: &str| {
                            ports
                                .get(r)
                                .and_then(|m| m.get(&p.to_ascii_lowercase()))
                                .map(|p| p.to_string())
                        };
                        named(&n.port_id)
                            .or_else(|| {
                                self.devices
                                    .get(r)
                                    .and_then(|d| d.lldp_ports.get(&n.port_id))
                                    .map(|p| canon(r, p))
                            })
                            .or_else(|| named(&n.port_descr).filter(|_| !n.port_descr.is_empty()))
                            .unwrap_or_else(|| n.port_id.clone())
                    }
                    None => n.port_id.clone(),
                };
                let rport = remote_port_of
                    .entry((local.clone(), rdev.clone()))
                    .or_insert(rport)
                    .clone();
                if let Some(i) = n.local_if_index {
                    local_index.entry((dev.clone(), local.clone())).or_insert(i);
                }
                // Links are keyed by device and port; ifIndexes are filled in once merged.
                let x = Endpoint {
                    device: dev.clone(),
                    port: local,
                    if_index: None,
                };
                let y = Endpoint {
                    device: rdev,
                    port: rport,
                    if_index: None,
                };
                let key = if x <= y { (x, y) } else { (y, x) };
                let l = links.entry(key.clone()).or_insert_with(|| Link {
                    a: key.0,
                    b: key.1,
                    protocols: Vec::new(),
                    first_seen_ms: a.first_seen_ms,
                    last_seen_ms: a.last_seen_ms,
                });
                if !l.protocols.contains(&protocol.label()) {
                    l.protocols.push(protocol.label());
                }
                l.first_seen_ms = l.first_seen_ms.min(a.first_seen_ms);
                l.last_seen_ms = l.last_seen_ms.max(a.last_seen_ms);
            }
        }
        // Per polled device: lowercase ifName and ifDescr → ifIndex.
        let indexes: HashMap<&str, HashMap<String, u32>> = self
            .known
            .iter()
            .map(|(d, k)| {
                let mut m = HashMap::new();
                for (i, p) in &k.interfaces {
                    for alias in [&p.descr, &p.name] {
                        if !alias.is_empty() {
                            m.insert(alias.to_ascii_lowercase(), *i);
                        }
                    }
                }
                (d.as_str(), m)
            })
            .collect();
        let if_index = |e: &Endpoint| {
            indexes
                .get(e.device.as_str())
                .and_then(|m| m.get(&e.port.to_ascii_lowercase()).copied())
                .or_else(|| {
                    local_index
                        .get(&(e.device.clone(), e.port.clone()))
                        .copied()
                })
        };
        let mut links: Vec<Link> = links.into_values().collect();
        for l in &mut links {
            l.a.if_index = if_index(&l.a);
            l.b.if_index = if_index(&l.b);
            let set: BTreeSet<&'static str> = l.protocols.iter().copied().collect();
            // "lldp" before "cdp".
            l.protocols = ["lldp", "cdp"]
                .into_iter()
                .filter(|p| set.contains(p))
                .collect();
        }
        TopologySnapshot {
            nodes: nodes.into_values().collect(),
            links,
        }
    }
}

fn node_name(n: &Neighbour) -> String {
    if !n.sys_name.is_empty() {
        n.sys_name.clone()
    } else if !n.chassis_id.is_empty() {
        n.chassis_id.clone()
    } else if let Some(a) = n.address {
        a.to_string()
    } else {
        String::new()
    }
}

impl TopologySnapshot {
    /// Graphviz DOT; external nodes dashed.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut s = String::from("graph nmsd {\n");
        for n in &self.nodes {
            let style = if n.known { "" } else { " [style=dashed]" };
            let _ = writeln!(s, "  \"{}\"{style};", q(&n.id));
        }
        for l in &self.links {
            let _ = writeln!(
                s,
                "  \"{}\" -- \"{}\" [label=\"{} – {}\"];",
                q(&l.a.device),
                q(&l.b.device),
                q(&l.a.port),
                q(&l.b.port)
            );
        }
        s.push_str("}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(chassis: &str, name: &str, ns: &[(&str, &str, &str, &str)]) -> LldpView {
        LldpView {
            chassis_id: Some(chassis.into()),
            sys_name: Some(name.into()),
            neighbours: ns
                .iter()
                .map(|(lp, rc, rp, rn)| {
                    (
                        lp.to_string(),
                        Neighbour {
                            chassis_id: rc.to_string(),
                            port_id: rp.to_string(),
                            sys_name: rn.to_string(),
                            ..Neighbour::default()
                        },
                    )
                })
                .collect(),
            ports: BTreeMap::new(),
        }
    }

    fn cdp(ns: &[(u32, &str, &str, Option<[u8; 4]>)]) -> BTreeMap<u32, Neighbour> {
        ns.iter()
            .map(|(i, id, port, addr)| {
                (
                    *i,
                    Neighbour {
                        port_id: port.to_string(),
                        sys_name: id.to_string(),
                        address: addr.map(IpAddr::from),
                        platform: "cisco WS-C3850".into(),
                        ..Neighbour::default()
                    },
                )
            })
            .collect()
    }

    fn ifs(names: &[(u32, &str, &str)]) -> BTreeMap<u32, PortNames> {
        names
            .iter()
            .map(|(i, n, d)| {
                (
                    *i,
                    PortNames {
                        name: n.to_string(),
                        descr: d.to_string(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn links_merge_both_directions_and_changes_are_rows() {
        let mut t = Topology::default();
        let rows = t.observe("a", view("aa", "a.lab", &[("p1", "bb", "q1", "b.lab")]), 1);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].state, rows[0].remote_known), ("up", false));
        let rows = t.observe(
            "b",
            view(
                "bb",
                "b.lab",
                &[("q1", "aa", "p1", "a.lab"), ("q2", "zz", "x", "ext")],
            ),
            2,
        );
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.state == "up"));
        assert!(
            rows.iter()
                .any(|r| r.remote_device == "a" && r.remote_known)
        );
        let s = t.snapshot();
        assert_eq!(s.links.len(), 2, "a–b once, b–ext once: {:?}", s.links);
        assert!(s.links.iter().all(|l| l.protocols == ["lldp"]));
        assert!(s.nodes.iter().any(|n| n.id == "ext" && !n.known));
        assert!(s.to_dot().contains("\"a\" -- \"b\""));
        // Unchanged: no rows. Gone: down only after two polls without it.
        assert!(
            t.observe("a", view("aa", "a.lab", &[("p1", "bb", "q1", "b.lab")]), 3)
                .is_empty()
        );
        assert!(t.observe("a", view("aa", "a.lab", &[]), 4).is_empty());
        let rows = t.observe("a", view("aa", "a.lab", &[]), 5);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, "down");
    }

    /// Issue 11 item 10: Junos advertises a locally assigned PortId (a number); its neighbours
    /// named its end of a cable by that number and the link appeared twice, once per
    /// direction. The number maps back through Junos' own port table, or through the port
    /// description it advertises when Junos itself is not polled for LLDP.
    #[test]
    fn locally_assigned_port_ids_map_to_the_neighbours_port() {
        let mut t = Topology::default();
        t.set_interfaces(
            "j",
            ifs(&[(523, "ge-0/0/1", "ge-0/0/1"), (524, "ge-0/0/2", "")]),
        );
        t.set_interfaces(
            "p",
            ifs(&[(1, "Gi0/1", "GigabitEthernet0/1"), (2, "Gi0/2", "")]),
        );
        t.set_interfaces("q", ifs(&[(7, "et-0/0/7", "et-0/0/7")]));
        let mut j = view(
            "jj",
            "j",
            &[
                ("ge-0/0/1", "pp", "Gi0/1", "p"),
                ("ge-0/0/2", "pp", "Gi0/2", "p"),
            ],
        );
        j.ports = [("523", "ge-0/0/1"), ("524", "ge-0/0/2")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        t.observe("j", j, 1);
        // p sees j's ports as 523 (description: the name) and 524 (a free description), and
        // q (not polled for LLDP) as 77, described by its name.
        let mut pv = view(
            "pp",
            "p",
            &[("Gi0/1", "jj", "523", "j"), ("Gi0/2", "jj", "524", "j")],
        );
        pv.neighbours.get_mut("Gi0/1").expect("Gi0/1").port_descr = "ge-0/0/1".into();
        pv.neighbours.get_mut("Gi0/2").expect("Gi0/2").port_descr = "uplink to core".into();
        t.observe("p", pv, 2);
        t.register("q", IpAddr::from([127, 0, 0, 9]));
        t.set_sys_name("q", "q");
        let mut rv = view("rr", "r", &[("eth0", "qq", "77", "q")]);
        rv.neighbours.get_mut("eth0").expect("eth0").port_descr = "et-0/0/7".into();
        t.observe("r", rv, 3);
        let s = t.snapshot();
        let mut got: Vec<String> = s
            .links
            .iter()
            .map(|l| format!("{}:{} {}:{}", l.a.device, l.a.port, l.b.device, l.b.port))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "j:ge-0/0/1 p:Gi0/1",
                "j:ge-0/0/2 p:Gi0/2",
                "q:et-0/0/7 r:eth0"
            ],
            "one link per cable"
        );
    }

    #[test]
    fn names_match_without_case_domain_or_serial() {
        assert_eq!(name_key("R2.Lab.Example"), "r2");
        assert_eq!(name_key("sw9(FOX1234ABCD)"), "sw9");
        assert_eq!(name_key("sw9.lab(FOX1234ABCD)"), "sw9");
        assert_eq!(name_key("10.0.0.1"), "10.0.0.1");
        assert_eq!(name_key(""), "");
    }

    #[test]
    fn cdp_resolves_by_device_id_then_address_and_merges_with_lldp() {
        let mut t = Topology::default();
        for (d, a) in [
            ("r1", [127, 0, 0, 1]),
            ("r2", [127, 0, 0, 2]),
            ("r3", [127, 0, 0, 3]),
        ] {
            t.register(d, IpAddr::from(a));
        }
        t.set_sys_name("r1", "r1.lab.example");
        t.set_sys_name("r2", "r2.lab.example");
        t.set_sys_name("r3", "r3-linux");
        let cisco = [
            (1, "Gi0/1", "GigabitEthernet0/1"),
            (2, "Gi0/2", "GigabitEthernet0/2"),
            (3, "Gi0/3", "GigabitEthernet0/3"),
        ];
        t.set_interfaces("r1", ifs(&cisco));
        t.set_interfaces("r2", ifs(&cisco));
        t.set_interfaces("r3", ifs(&[(1, "eth0", "eth0")]));

        // r1: CDP to r2 by device ID (other case, with domain), to r3 by address (its device
        // ID names nothing polled), to a phone nobody polls.
        let rows = t.observe_cdp(
            "r1",
            cdp(&[
                (
                    1,
                    "R2.LAB.EXAMPLE",
                    "GigabitEthernet0/1",
                    Some([127, 0, 0, 2]),
                ),
                (2, "lnx-r3", "eth0", Some([127, 0, 0, 3])),
                (3, "SEP001122334455", "Port 1", Some([192, 0, 2, 50])),
            ]),
            10,
        );
        assert_eq!(rows.len(), 3);
        let by_port: BTreeMap<&str, &LinkRow> =
            rows.iter().map(|r| (r.local_port.as_str(), r)).collect();
        let r = by_port["Gi0/1"];
        assert_eq!(
            (
                r.protocol,
                r.state,
                r.local_if_index,
                r.remote_device.as_str(),
                r.remote_known
            ),
            ("cdp", "up", Some(1), "r2", true)
        );
        assert_eq!(r.remote_sys_name, "R2.LAB.EXAMPLE");
        assert_eq!(r.remote_port, "GigabitEthernet0/1");
        assert_eq!(
            (
                by_port["Gi0/2"].remote_device.as_str(),
                by_port["Gi0/2"].remote_known
            ),
            ("r3", true)
        );
        assert_eq!(
            (
                by_port["Gi0/3"].remote_device.as_str(),
                by_port["Gi0/3"].remote_known
            ),
            ("SEP001122334455", false)
        );

        // r2 sees r1 over LLDP (short port names) and CDP (long ones); r1 sees r2 over LLDP
        // too; r3 has LLDP only.
        t.observe(
            "r2",
            view(
                "c2",
                "r2.lab.example",
                &[("Gi0/1", "c1", "Gi0/1", "r1.lab.example")],
            ),
            11,
        );
        t.observe_cdp(
            "r2",
            cdp(&[(
                1,
                "r1.lab.example",
                "GigabitEthernet0/1",
                Some([127, 0, 0, 1]),
            )]),
            11,
        );
        t.observe(
            "r1",
            view(
                "c1",
                "r1.lab.example",
                &[("Gi0/1", "c2", "Gi0/1", "r2.lab.example")],
            ),
            12,
        );
        t.observe(
            "r3",
            view(
                "c3",
                "r3-linux",
                &[("eth0", "c1", "Gi0/2", "r1.lab.example")],
            ),
            12,
        );
        let s = t.snapshot();
        let link = |a: &str, b: &str| {
            s.links
                .iter()
                .find(|l| {
                    (l.a.device == a && l.b.device == b) || (l.a.device == b && l.b.device == a)
                })
                .unwrap_or_else(|| panic!("{a}–{b} in {:#?}", s.links))
        };
        assert_eq!(s.links.len(), 3, "{:#?}", s.links);
        let l12 = link("r1", "r2");
        assert_eq!(l12.protocols, ["lldp", "cdp"]);
        assert_eq!(
            (l12.a.port.as_str(), l12.b.port.as_str()),
            ("Gi0/1", "Gi0/1")
        );
        // Both ends carry their ifIndex (issue 11 item 10: it was null on every link).
        assert_eq!((l12.a.if_index, l12.b.if_index), (Some(1), Some(1)));
        let l13 = link("r1", "r3");
        assert_eq!(l13.protocols, ["lldp", "cdp"]);
        assert_eq!((l13.a.if_index, l13.b.if_index), (Some(2), Some(1)));
        assert_eq!(
            (l13.a.port.as_str(), l13.b.port.as_str()),
            ("Gi0/2", "eth0")
        );
        let phone = link("r1", "SEP001122334455");
        assert_eq!(phone.protocols, ["cdp"]);
        let (r1_end, phone_end) = if phone.a.device == "r1" {
            (&phone.a, &phone.b)
        } else {
            (&phone.b, &phone.a)
        };
        assert_eq!((r1_end.if_index, phone_end.if_index), (Some(3), None));
        let ext = s
            .nodes
            .iter()
            .find(|n| n.id == "SEP001122334455")
            .expect("phone node");
        assert!(!ext.known);
        assert_eq!(ext.address.as_deref(), Some("192.0.2.50"));
        assert_eq!(ext.platform.as_deref(), Some("cisco WS-C3850"));
        assert_eq!(s.nodes.iter().filter(|n| n.known).count(), 3);
        assert_eq!(s.to_dot().matches(" -- ").count(), 3);

        // Down per protocol: CDP gone from r2 twice → one CDP down row, the link stays up
        // through LLDP.
        assert!(t.observe_cdp("r2", BTreeMap::new(), 13).is_empty());
        let rows = t.observe_cdp("r2", BTreeMap::new(), 14);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].protocol, rows[0].state), ("cdp", "down"));
        let s = t.snapshot();
        assert_eq!(s.links.len(), 3);
        let l12 = s
            .links
            .iter()
            .find(|l| l.a.device == "r1" && l.b.device == "r2")
            .expect("r1–r2");
        assert_eq!(l12.protocols, ["lldp", "cdp"], "r1's CDP still sees it");
        // LLDP polls of r2 do not touch its CDP adjacencies and vice versa.
        let rows = t.observe(
            "r2",
            view(
                "c2",
                "r2.lab.example",
                &[("Gi0/1", "c1", "Gi0/1", "r1.lab.example")],
            ),
            15,
        );
        assert!(rows.is_empty());
    }

    #[test]
    fn an_address_shared_by_two_devices_resolves_nothing() {
        let mut t = Topology::default();
        t.register("x", IpAddr::from([127, 0, 0, 1]));
        t.register("y", IpAddr::from([127, 0, 0, 1]));
        let rows = t.observe_cdp("x", cdp(&[(5, "other", "p", Some([127, 0, 0, 1]))]), 1);
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].remote_known);
        assert_eq!(rows[0].local_port, "5", "no interface names: the ifIndex");
        // The device ID names a configured device.
        let rows = t.observe_cdp("x", cdp(&[(5, "Y.example", "p", None)]), 2);
        assert_eq!(rows[0].state, "changed");
        assert_eq!(
            (rows[0].remote_device.as_str(), rows[0].remote_known),
            ("y", true)
        );
    }
}
