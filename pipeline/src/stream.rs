//! Typed streams: what flows between components.
//!
//! Every component says which [`StreamKind`]s it takes and which it produces, so the topology
//! can refuse at check time a route whose sink cannot take a stream. A [`Batch`] holds the rows
//! of one stream behind an `Arc`: fanning a batch out to several processors and sinks shares it,
//! and a component that wants to change rows takes them with [`Arc::unwrap_or_clone`], which
//! copies only when someone else still holds the batch.

use std::fmt;
use std::sync::Arc;

use crate::event::Event;
use crate::records::{FlowRecord, RollupRow};
use crate::snmp::{CustomRow, DeviceRow, InterfaceRow, LinkRow, TrapRow};
use crate::view::FlowViewPartial;

/// One kind of stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// Decoded flow records.
    Flows,
    /// Closed roll-up windows.
    Rollups,
    /// Interface rows of SNMP polls.
    SnmpInterfaces,
    /// Device rows of SNMP polls.
    SnmpDevices,
    /// Rows of user-defined SNMP modules.
    SnmpCustom,
    /// Received traps and informs.
    Traps,
    /// LLDP/CDP topology changes.
    TopologyLinks,
    /// Alerts, incidents and other events.
    Events,
    /// Per-worker partial aggregates of flows for a keyed global view (internal: the topology
    /// routes them from workers to the processor that asked for the view).
    FlowView,
}

impl StreamKind {
    pub const ALL: [StreamKind; 9] = [
        StreamKind::Flows,
        StreamKind::Rollups,
        StreamKind::SnmpInterfaces,
        StreamKind::SnmpDevices,
        StreamKind::SnmpCustom,
        StreamKind::Traps,
        StreamKind::TopologyLinks,
        StreamKind::Events,
        StreamKind::FlowView,
    ];

    /// The name used in config errors, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Flows => "flows",
            StreamKind::Rollups => "rollups",
            StreamKind::SnmpInterfaces => "snmp_interfaces",
            StreamKind::SnmpDevices => "snmp_devices",
            StreamKind::SnmpCustom => "snmp_custom",
            StreamKind::Traps => "traps",
            StreamKind::TopologyLinks => "topology_links",
            StreamKind::Events => "events",
            StreamKind::FlowView => "flow_view",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// Which streams a full queue sheds first: raw flows (2) before roll-ups, SNMP rows and
    /// traps (1), before events (0). Aggregates and events are few and each stands for much;
    /// raw flows are the bulk and are summarised in the roll-ups.
    pub const fn priority(self) -> usize {
        match self {
            StreamKind::Events => 0,
            StreamKind::Flows => 2,
            _ => 1,
        }
    }
}

/// A set of stream kinds.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StreamSet(u16);

impl StreamSet {
    pub const EMPTY: StreamSet = StreamSet(0);
    /// Every stream a sink can store (all but the internal flow view).
    pub const STORABLE: StreamSet = StreamSet::of(&[
        StreamKind::Flows,
        StreamKind::Rollups,
        StreamKind::SnmpInterfaces,
        StreamKind::SnmpDevices,
        StreamKind::SnmpCustom,
        StreamKind::Traps,
        StreamKind::TopologyLinks,
        StreamKind::Events,
    ]);

    pub const fn of(kinds: &[StreamKind]) -> StreamSet {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= kinds[i].bit();
            i += 1;
        }
        StreamSet(bits)
    }

    pub const fn contains(self, k: StreamKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub const fn union(self, other: StreamSet) -> StreamSet {
        StreamSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: StreamSet) -> StreamSet {
        StreamSet(self.0 & other.0)
    }

    /// Kinds in `self` that are not in `other`.
    pub const fn without(self, other: StreamSet) -> StreamSet {
        StreamSet(self.0 & !other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn insert(&mut self, k: StreamKind) {
        self.0 |= k.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = StreamKind> {
        StreamKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    /// `flows, rollups`, for messages.
    pub fn names(self) -> String {
        let v: Vec<_> = self.iter().map(StreamKind::name).collect();
        if v.is_empty() {
            "nothing".into()
        } else {
            v.join(", ")
        }
    }
}

impl fmt::Debug for StreamSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.names())
    }
}

/// The rows of one stream, shared when they fan out.
#[derive(Clone, Debug)]
pub enum Batch {
    Flows(Arc<Vec<FlowRecord>>),
    Rollups(Arc<Vec<RollupRow>>),
    SnmpInterfaces(Arc<Vec<InterfaceRow>>),
    SnmpDevices(Arc<Vec<DeviceRow>>),
    SnmpCustom(Arc<Vec<CustomRow>>),
    Traps(Arc<Vec<TrapRow>>),
    TopologyLinks(Arc<Vec<LinkRow>>),
    Events(Arc<Vec<Event>>),
    FlowView(Arc<FlowViewPartial>),
}

impl Batch {
    pub fn kind(&self) -> StreamKind {
        match self {
            Batch::Flows(_) => StreamKind::Flows,
            Batch::Rollups(_) => StreamKind::Rollups,
            Batch::SnmpInterfaces(_) => StreamKind::SnmpInterfaces,
            Batch::SnmpDevices(_) => StreamKind::SnmpDevices,
            Batch::SnmpCustom(_) => StreamKind::SnmpCustom,
            Batch::Traps(_) => StreamKind::Traps,
            Batch::TopologyLinks(_) => StreamKind::TopologyLinks,
            Batch::Events(_) => StreamKind::Events,
            Batch::FlowView(_) => StreamKind::FlowView,
        }
    }

    /// Rows (records, events, view entries) this batch holds.
    pub fn rows(&self) -> usize {
        match self {
            Batch::Flows(r) => r.len(),
            Batch::Rollups(r) => r.len(),
            Batch::SnmpInterfaces(r) => r.len(),
            Batch::SnmpDevices(r) => r.len(),
            Batch::SnmpCustom(r) => r.len(),
            Batch::Traps(r) => r.len(),
            Batch::TopologyLinks(r) => r.len(),
            Batch::Events(r) => r.len(),
            Batch::FlowView(v) => v.entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// About what the batch weighs in memory, in bytes: its vector's whole allocation (a
    /// worker's flow batch is allocated for 4,096 records and often holds a few hundred) plus
    /// the text the rows own. Queues are bounded by it (strings shared through `Arc` are not
    /// counted: a device's name is held once whatever the rows). Counting rows instead of the
    /// allocation let a 64 MiB queue hold 200 MiB (issue 12's memory test).
    pub fn weight(&self) -> u64 {
        fn each<T>(rows: &Vec<T>, owned: impl Fn(&T) -> usize) -> u64 {
            let slack = (rows.capacity() - rows.len()) * std::mem::size_of::<T>();
            rows.iter()
                .map(|r| (std::mem::size_of::<T>() + owned(r)) as u64)
                .sum::<u64>()
                + slack as u64
        }
        match self {
            Batch::Flows(r) => (r.capacity() * std::mem::size_of::<FlowRecord>()) as u64,
            Batch::Rollups(r) => (r.capacity() * std::mem::size_of::<RollupRow>()) as u64,
            Batch::SnmpInterfaces(r) => each(r, |_| 0),
            Batch::SnmpDevices(r) => each(r, |d| {
                [
                    &d.sys_name,
                    &d.sys_descr,
                    &d.sys_object_id,
                    &d.sys_location,
                    &d.sys_contact,
                ]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
                    + d.error_detail.as_ref().map_or(0, String::len)
            }),
            Batch::SnmpCustom(r) => each(r, |c| {
                c.values.len() * 48 + c.idx.as_ref().map_or(0, String::len)
            }),
            Batch::Traps(r) => each(r, |t| {
                t.varbinds.len() + t.trap_oid.len() + t.security_name.len()
            }),
            Batch::TopologyLinks(r) => each(r, |l| {
                l.local_device.len()
                    + l.local_port.len()
                    + l.remote_device.len()
                    + l.remote_port.len()
                    + l.remote_port_descr.len()
                    + l.remote_chassis_id.len()
                    + l.remote_sys_name.len()
            }),
            Batch::Events(r) => each(r, |e| {
                e.subject.len() + e.message.len() + (e.labels.len() + e.fields.len()) * 48
            }),
            Batch::FlowView(v) => (v.entries.len() * 48) as u64,
        }
    }

    pub fn flows(v: Vec<FlowRecord>) -> Batch {
        Batch::Flows(Arc::new(v))
    }

    pub fn rollups(v: Vec<RollupRow>) -> Batch {
        Batch::Rollups(Arc::new(v))
    }

    pub fn events(v: Vec<Event>) -> Batch {
        Batch::Events(Arc::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_was_put_in() {
        let s = StreamSet::of(&[StreamKind::Flows, StreamKind::Events]);
        assert!(s.contains(StreamKind::Flows) && s.contains(StreamKind::Events));
        assert!(!s.contains(StreamKind::Rollups));
        assert_eq!(s.names(), "flows, events");
        assert_eq!(
            s.without(StreamSet::of(&[StreamKind::Flows])),
            StreamSet::of(&[StreamKind::Events])
        );
        assert!(!StreamSet::STORABLE.contains(StreamKind::FlowView));
    }
}
