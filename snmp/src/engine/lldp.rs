//! LLDP-MIB: what one poll collects (local chassis and ports, remote neighbours) and the view
//! of it the topology takes, with LLDP's port numbers named as interfaces.

use std::collections::BTreeMap;

use nmsd_parsers::snmp::{OidRef, Value};

use super::walk::IfRowBuild;
use crate::topology::{LldpView, Neighbour};

/// LLDP-MIB data of one poll.
#[derive(Debug, Default)]
pub(super) struct LldpBuild {
    chassis_id: Option<String>,
    sys_name: Option<String>,
    /// lldpLocPortNum → (PortIdSubtype, PortId, PortDesc).
    ports: BTreeMap<u32, (i64, String, String)>,
    /// (lldpRemLocalPortNum, lldpRemIndex) → columns 4..9.
    remotes: BTreeMap<(u32, u32), [Option<String>; 6]>,
}

/// LLDP identifiers as text: printable strings as they are, anything else as hex bytes
/// (chassis and port IDs are often MAC addresses).
pub(crate) fn lldp_text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::OctetString(b) => Some(match std::str::from_utf8(b) {
            Ok(t) if !t.is_empty() && t.chars().all(|c| !c.is_control()) => t.to_string(),
            _ => b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        }),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

impl LldpBuild {
    /// A varbind of the GET of lldpLocChassisId.0 and lldpLocSysName.0.
    pub(super) fn local(&mut self, oid: OidRef<'_>, v: &Value<'_>) {
        match oid.as_bytes().last() {
            Some(0) if oid.as_bytes().ends_with(&[3, 2, 0]) => self.chassis_id = lldp_text(v),
            Some(0) if oid.as_bytes().ends_with(&[3, 3, 0]) => {
                self.sys_name = v.as_text().map(|t| t.into_owned())
            }
            _ => {}
        }
    }

    /// A cell of lldpLocPortTable (index: lldpLocPortNum).
    pub(super) fn local_port_cell(&mut self, col: u32, idx: &[u32], v: &Value<'_>) {
        let Some(&port) = idx.first() else { return };
        let e = self.ports.entry(port).or_default();
        match col {
            2 => {
                e.0 = match v {
                    Value::Integer(i) => *i,
                    _ => 0,
                }
            }
            3 => e.1 = lldp_text(v).unwrap_or_default(),
            4 => e.2 = v.as_text().map(|t| t.into_owned()).unwrap_or_default(),
            _ => {}
        }
    }

    /// A cell of lldpRemTable.
    pub(super) fn remote_cell(&mut self, col: u32, idx: &[u32], v: &Value<'_>) {
        // Index: TimeMark.LocalPortNum.RemIndex; TimeMark is not identity.
        let (Some(&port), Some(&rem)) = (idx.get(1), idx.get(2)) else {
            return;
        };
        if let Some(slot) = (col as usize).checked_sub(4).filter(|i| *i < 6) {
            let text = if col == 8 || col == 9 {
                v.as_text().map(|t| t.into_owned())
            } else {
                lldp_text(v)
            };
            self.remotes.entry((port, rem)).or_default()[slot] = text;
        }
    }

    /// The topology's view of this poll: the local chassis, its ports and the neighbours on
    /// them, ports named as the device's interfaces (`interfaces` from the IF-MIB walks, empty
    /// when the device's interfaces are not polled).
    pub(super) fn view(&self, interfaces: &BTreeMap<u32, IfRowBuild>) -> LldpView {
        // ifName, then ifDescr → ifIndex.
        let mut by_name: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, r) in interfaces {
            for label in [r.descr.as_deref(), r.name.as_deref()]
                .into_iter()
                .flatten()
            {
                if !label.is_empty() {
                    by_name.insert(label, *i);
                }
            }
        }
        // lldpLocPortNum is not an ifIndex: name the port by its PortId when that is an
        // interface name (subtype 5), by its description when that names an interface
        // (Junos' locally assigned PortIds (7) are numbers, its descriptions names), else
        // by a locally assigned PortId, else its description, else the number.
        let port_name = |num: u32| -> String {
            match self.ports.get(&num) {
                Some((5, id, _)) if !id.is_empty() => id.clone(),
                Some((_, _, descr)) if by_name.contains_key(descr.as_str()) => descr.clone(),
                Some((7, id, _)) if !id.is_empty() => id.clone(),
                Some((_, _, descr)) if !descr.is_empty() => descr.clone(),
                _ => num.to_string(),
            }
        };
        let mut view = LldpView {
            chassis_id: self.chassis_id.clone(),
            sys_name: self.sys_name.clone(),
            neighbours: BTreeMap::new(),
            ports: self
                .ports
                .iter()
                .filter(|(_, (_, id, _))| !id.is_empty())
                .map(|(num, (_, id, _))| (id.clone(), port_name(*num)))
                .collect(),
        };
        for ((port, _), cols) in &self.remotes {
            let port_name = port_name(*port);
            let [_, chassis, _, port_id, port_descr, sys_name] = cols.clone();
            view.neighbours.insert(
                port_name.clone(),
                Neighbour {
                    local_if_index: by_name.get(port_name.as_str()).copied(),
                    chassis_id: chassis.unwrap_or_default(),
                    port_id: port_id.unwrap_or_default(),
                    port_descr: port_descr.unwrap_or_default(),
                    sys_name: sys_name.unwrap_or_default(),
                    address: None,
                    platform: String::new(),
                },
            );
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn text(s: &str) -> Value<'_> {
        Value::OctetString(s.as_bytes())
    }

    /// A local port: subtype, PortId, PortDesc.
    fn port(lldp: &mut LldpBuild, num: u32, subtype: i64, id: &str, descr: &str) {
        lldp.local_port_cell(2, &[num], &Value::Integer(subtype));
        lldp.local_port_cell(3, &[num], &text(id));
        lldp.local_port_cell(4, &[num], &text(descr));
    }

    #[test]
    fn identifiers_are_text_when_printable_else_hex() {
        assert_eq!(lldp_text(&text("sw1")).as_deref(), Some("sw1"));
        let mac = Value::OctetString(&[0x00, 0x1b, 0x21, 0x0a, 0xff, 0x10]);
        assert_eq!(lldp_text(&mac).as_deref(), Some("00:1b:21:0a:ff:10"));
        assert_eq!(lldp_text(&text("")).as_deref(), Some(""));
        assert_eq!(lldp_text(&Value::Integer(7)).as_deref(), Some("7"));
        assert_eq!(lldp_text(&Value::Null), None);
    }

    #[test]
    fn ports_are_named_as_interfaces_and_neighbours_hang_off_them() {
        let interfaces: BTreeMap<u32, IfRowBuild> = [
            (
                501,
                IfRowBuild {
                    name: Some(Arc::from("ge-0/0/1")),
                    ..Default::default()
                },
            ),
            (
                502,
                IfRowBuild {
                    descr: Some(Arc::from("xe-0/1/0")),
                    ..Default::default()
                },
            ),
        ]
        .into();
        let mut lldp = LldpBuild::default();
        // Subtype 5 (interface name): the PortId.
        port(&mut lldp, 1, 5, "Gi0/1", "uplink");
        // Junos: a locally assigned number (7) whose description names an interface.
        port(&mut lldp, 2, 7, "517", "ge-0/0/1");
        // Locally assigned, description naming nothing: the PortId.
        port(&mut lldp, 3, 7, "12", "spare");
        // MAC address PortId (3): the description.
        port(&mut lldp, 4, 3, "", "xe-0/1/0");
        // Timemark 0, local port 2, remote index 1: chassis (5), port id (7), sysName (9).
        lldp.remote_cell(5, &[0, 2, 1], &Value::OctetString(&[0xaa, 0xbb]));
        lldp.remote_cell(7, &[0, 2, 1], &text("et-1"));
        lldp.remote_cell(9, &[0, 2, 1], &text("core2"));
        // A port nothing is known of: its number.
        lldp.remote_cell(9, &[0, 9, 1], &text("edge7"));
        // Short index, out-of-range column: ignored.
        lldp.remote_cell(9, &[0, 9], &text("nobody"));
        lldp.remote_cell(12, &[0, 9, 2], &text("nobody"));
        let view = lldp.view(&interfaces);
        let ports: Vec<(&str, &str)> = view
            .ports
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            ports,
            [("12", "12"), ("517", "ge-0/0/1"), ("Gi0/1", "Gi0/1")],
            "PortId → port name; an empty PortId is left out"
        );
        assert_eq!(view.neighbours.len(), 2);
        let n = &view.neighbours["ge-0/0/1"];
        assert_eq!(n.local_if_index, Some(501));
        assert_eq!(
            (
                n.chassis_id.as_str(),
                n.port_id.as_str(),
                n.sys_name.as_str()
            ),
            ("aa:bb", "et-1", "core2")
        );
        let n = &view.neighbours["9"];
        assert_eq!((n.local_if_index, n.sys_name.as_str()), (None, "edge7"));
    }
}
