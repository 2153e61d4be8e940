//! The network graph from LLDP (docs/snmp-design.md §11).
//!
//! Each polled device reports its neighbours per local port. A neighbour is resolved to a polled
//! device by chassis ID (equal to that device's own lldpLocChassisId), else by sysName
//! (case-insensitive, also without the domain); otherwise it is an external node. Adjacencies are
//! directional observations; links merge both directions of one cable. Changes (a neighbour
//! appearing, changing or gone from two successful polls in a row) become `topology_link` rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use nmsd_pipeline::snmp::LinkRow;
use serde::Serialize;

/// What one device's LLDP tables said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LldpView {
    /// lldpLocChassisId (hex) and lldpLocSysName.
    pub chassis_id: Option<String>,
    pub sys_name: Option<String>,
    /// Neighbours by local port name.
    pub neighbours: BTreeMap<String, Neighbour>,
}

/// One remote system seen on a local port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub local_if_index: Option<u32>,
    pub chassis_id: String,
    pub port_id: String,
    pub port_descr: String,
    pub sys_name: String,
}

#[derive(Clone, Debug)]
struct Adjacency {
    neighbour: Neighbour,
    first_seen_ms: u64,
    last_seen_ms: u64,
    /// Successful polls in a row it was missing from.
    missing: u8,
}

#[derive(Clone, Debug, Default)]
struct DeviceTopo {
    chassis_id: Option<String>,
    sys_name: Option<String>,
    /// By local port.
    adjacencies: BTreeMap<String, Adjacency>,
}

/// The graph, kept by the engine.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    devices: BTreeMap<String, DeviceTopo>,
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
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub device: String,
    pub port: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
    pub protocols: Vec<&'static str>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

fn short(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

impl Topology {
    /// The polled device a neighbour is, if any.
    fn resolve(&self, n: &Neighbour) -> Option<String> {
        if let Some((name, _)) = self.devices.iter().find(|(_, d)| {
            d.chassis_id.as_deref() == Some(n.chassis_id.as_str()) && !n.chassis_id.is_empty()
        }) {
            return Some(name.clone());
        }
        let want = short(&n.sys_name).to_ascii_lowercase();
        if want.is_empty() {
            return None;
        }
        self.devices
            .iter()
            .find(|(name, d)| {
                d.sys_name
                    .as_deref()
                    .is_some_and(|s| short(s).eq_ignore_ascii_case(&want))
                    || short(name).eq_ignore_ascii_case(&want)
            })
            .map(|(name, _)| name.clone())
    }

    /// Take one device's successful LLDP poll; returns the rows of what changed.
    pub fn observe(&mut self, device: &str, view: LldpView, now_ms: u64) -> Vec<LinkRow> {
        let mut rows = Vec::new();
        let entry = self.devices.entry(device.to_string()).or_default();
        entry.chassis_id = view.chassis_id.clone();
        entry.sys_name = view.sys_name.clone();
        let mut old = std::mem::take(&mut entry.adjacencies);
        let mut new = BTreeMap::new();
        for (port, n) in view.neighbours {
            let state = match old.remove(&port) {
                Some(mut a) if a.neighbour == n => {
                    a.last_seen_ms = now_ms;
                    a.missing = 0;
                    new.insert(port, a);
                    continue;
                }
                Some(_) => "changed",
                None => "up",
            };
            new.insert(
                port.clone(),
                Adjacency {
                    neighbour: n.clone(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    missing: 0,
                },
            );
            rows.push((state, port, n));
        }
        // Missing once is noise (an LLDP entry aging and coming back); twice in a row is gone.
        for (port, mut a) in old {
            a.missing += 1;
            if a.missing >= 2 {
                rows.push(("down", port, a.neighbour));
            } else {
                new.insert(port, a);
            }
        }
        if let Some(d) = self.devices.get_mut(device) {
            d.adjacencies = new;
        }
        rows.into_iter()
            .map(|(state, port, n)| {
                let remote = self.resolve(&n);
                LinkRow {
                    ts_ms: now_ms,
                    protocol: "lldp",
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

    /// Nodes and links (both directions of a cable merged).
    pub fn snapshot(&self) -> TopologySnapshot {
        let mut nodes: BTreeSet<Node> = self
            .devices
            .keys()
            .map(|d| Node {
                id: d.clone(),
                known: true,
            })
            .collect();
        let mut links: BTreeMap<(Endpoint, Endpoint), Link> = BTreeMap::new();
        for (dev, t) in &self.devices {
            for (port, a) in &t.adjacencies {
                let remote = self.resolve(&a.neighbour);
                let known = remote.is_some();
                let rdev = remote.unwrap_or_else(|| node_name(&a.neighbour));
                if !known {
                    nodes.insert(Node {
                        id: rdev.clone(),
                        known: false,
                    });
                }
                let x = Endpoint {
                    device: dev.clone(),
                    port: port.clone(),
                };
                let y = Endpoint {
                    device: rdev,
                    port: a.neighbour.port_id.clone(),
                };
                let key = if x <= y { (x, y) } else { (y, x) };
                let l = links.entry(key.clone()).or_insert_with(|| Link {
                    a: key.0,
                    b: key.1,
                    protocols: vec!["lldp"],
                    first_seen_ms: a.first_seen_ms,
                    last_seen_ms: a.last_seen_ms,
                });
                l.first_seen_ms = l.first_seen_ms.min(a.first_seen_ms);
                l.last_seen_ms = l.last_seen_ms.max(a.last_seen_ms);
            }
        }
        TopologySnapshot {
            nodes: nodes.into_iter().collect(),
            links: links.into_values().collect(),
        }
    }
}

fn node_name(n: &Neighbour) -> String {
    if n.sys_name.is_empty() {
        n.chassis_id.clone()
    } else {
        n.sys_name.clone()
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
                            local_if_index: None,
                            chassis_id: rc.to_string(),
                            port_id: rp.to_string(),
                            port_descr: String::new(),
                            sys_name: rn.to_string(),
                        },
                    )
                })
                .collect(),
        }
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
}
