//! What a poll tells the topology: LLDP and CDP neighbours, the device's own names, and the
//! links that changed.

use nmsd_pipeline::snmp::LinkRow;

use super::Engine;
use super::poll::Poll;
use crate::topology::PortNames;

impl Engine {
    /// Take a finished poll's LLDP and CDP data into the topology (when those walks succeeded)
    /// and publish its snapshot; returns the links that changed. `walks_ok`: the IF-MIB walks
    /// succeeded, so the poll's interface names are whole.
    pub(super) fn observe_topology(
        &mut self,
        d: usize,
        poll: &Poll,
        walks_ok: bool,
        now_ms: u64,
    ) -> Vec<LinkRow> {
        let spec = &self.devices[d].spec;
        let lldp_ok = spec.modules.lldp && poll.lldp_ok();
        let cdp_ok = spec.modules.cdp && poll.cdp_ok();
        let mut links = Vec::new();
        if lldp_ok || cdp_ok {
            if let Some(name) = poll.sys.name.as_deref() {
                self.topology.set_sys_name(&spec.name, name);
            }
            if walks_ok && spec.modules.interfaces {
                let names = poll
                    .rows
                    .iter()
                    .map(|(i, r)| {
                        (
                            *i,
                            PortNames {
                                name: r.name.as_deref().unwrap_or_default().to_string(),
                                descr: r.descr.as_deref().unwrap_or_default().to_string(),
                            },
                        )
                    })
                    .collect();
                self.topology.set_interfaces(&spec.name, names);
            }
        }
        if lldp_ok {
            let view = poll.lldp.view(&poll.rows);
            links = self.topology.observe(&spec.name, view, now_ms);
        }
        if cdp_ok {
            links.extend(
                self.topology
                    .observe_cdp(&spec.name, poll.cdp.neighbours(), now_ms),
            );
        }
        if (lldp_ok || cdp_ok)
            && let Ok(mut t) = self.topology_board.lock()
        {
            *t = self.topology.snapshot();
        }
        links
    }
}
