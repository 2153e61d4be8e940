//! Typed stream batches to bytes and back.
//!
//! ```text
//! batch    u8 codec version (1), u8 stream tag, u32 LE row count, rows
//! flows    (tag 1) per row: u64 start_ms, end_ms, bytes, packets; ip exporter, src, dst,
//!          next_hop; u32 observation_domain, in_if, out_if, src_as, dst_as, sampling_interval;
//!          u16 src_port, dst_port, vlan; u8 protocol, tcp_flags, tos, direction, version, source
//! rollups  (tag 2) u32 interface count, per interface: opt-str name, opt-str alias,
//!          opt-u64 speed;
//!          per row: u64 window_start_ms; ip exporter; u8 source; ip src, dst; u8 protocol;
//!          u16 dst_port; u32 in_if, out_if; u64 bytes, packets, flows;
//!          u32 in_if_info, out_if_info (1-based index into the interfaces, 0 for none)
//! snmp_interfaces  (tag 3) devices;
//!          per row: u64 ts_ms; u32 device (0-based index into the devices); u32 if_index;
//!          opt-str if_name, if_alias, if_descr; opt-i64 if_type; opt-u64 speed_mbps;
//!          opt-i64 admin_status, oper_status; u8 counter_bits; 12 × opt-u64 counters;
//!          opt-f64 interval_s, in_bps, out_bps, in_util, out_util; 12 × opt-f64 per_second;
//!          opt-label rate_note
//! snmp_devices  (tag 4) devices;
//!          per row: u64 ts_ms; u32 device (0-based index into the devices); opt-ip address;
//!          bool up; opt-label error; opt-str error_detail, sys_name, sys_descr,
//!          sys_object_id, sys_location, sys_contact; opt-u32 sys_uptime_ticks;
//!          opt-str engine_id; opt-u32 engine_boots; u32 poll_ms; opt-f64 rtt_ms;
//!          u32 requests, timeouts, varbinds, interfaces
//! snmp_custom  (tag 5) u32 name count, str* (table, device and column names);
//!          per row: u32 table, device (0-based indexes into the names); u64 ts_ms;
//!          opt-str idx; u32 value count, per value: u32 name (index), u8 tag, value:
//!          0 gauge f64, 1 counter u64 raw + opt-f64 rate, 2 label str
//! traps    (tag 6) per row: u64 ts_ms; opt-sockaddr source; label version, pdu; str trap_oid;
//!          opt-u32 uptime_ticks; str security_name; opt-str engine_id; opt-i32 request_id;
//!          opt-str enterprise; opt-i64 generic_trap, specific_trap; str varbinds
//! topology_links  (tag 7) per row: u64 ts_ms; label protocol, state; str local_device;
//!          opt-u32 local_if_index; str local_port, remote_device; bool remote_known;
//!          str remote_port, remote_port_descr, remote_chassis_id, remote_sys_name
//! events   (tag 8) per row: u64 ts_ms; str kind; u8 severity; str subject, component;
//!          u32 label count, (str, str)*; u32 field count, (str, u8 tag, value)*; str message
//! devices  u32 device count, per device: str name, u32 tag count, (str name, str value)*
//! ip       u8 4 + 4 bytes, or u8 6 + 16 bytes
//! sockaddr ip, u16 port; after an IPv6 address also u32 flowinfo, u32 scope_id
//! str      u32 LE length + UTF-8;  opt-x: u8 0, or u8 1 + x;  bool: u8 0 or 1
//! i64/i32  two's complement, as u64/u32;  f64: the bit pattern (f64::to_bits) as u64, so NaN
//!          payloads and -0.0 come back as they were
//! label    str of at most 64 bytes, for the rows' `&'static str` fields (see below)
//! ```
//!
//! Fixed little-endian layouts written field by field: no serde, no padding, no dependence on
//! struct layout. Addresses are tagged so IPv4 flows take 12 bytes less per address than a fixed
//! 16-byte form. Roll-up rows carry interface names by index into a per-batch table, which keeps
//! the sharing the rows had in memory (one `Arc<IfInfo>` per interface, not per row).
//!
//! The same holds for the other per-batch tables, by identity of the `Arc`: SNMP interface and
//! device rows that shared one device name and one `Tags` allocation (the rows of a poll) share
//! them again after a replay (one device table entry per distinct pair), and custom rows share
//! their table, device and column names again (one name table entry per distinct `Arc<str>`).
//! Everything else that is an `Arc` in memory comes back as a fresh allocation per row: the
//! interface names of interface rows, and the names and values inside a device's tags (two
//! devices whose tags shared a `tag_site` name get one copy each).
//!
//! Labels (rate note, error kind, trap version and PDU, link protocol and state) are
//! `&'static str` in the rows. They are written as text, not as a number from a list, so a
//! label this build does not know (written by a newer or older build) still reads back as the
//! same text: the reader keeps one process-wide copy of each distinct label it has seen
//! (leaked once, at most 1,024 of at most 64 bytes; past that, decoding a new label fails).
//!
//! Stream tags 3 to 7 (SNMP rows, traps, topology links) were added to version 1 later, without
//! bumping the version byte: data written before held only tags 1, 2 and 8, which read exactly
//! as before, and a build that predates the new tags refuses them as an unknown stream rather
//! than misreading them. The internal flow view returns [`CodecError::Unsupported`]: it never
//! leaves the global stage, so no sink buffers it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, PoisonError};

use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::event::{Event, FieldValue, Severity};
use nmsd_pipeline::records::{Direction, FlowRecord, FlowVersion, RollupRow};
use nmsd_pipeline::snmp::{
    CustomRow, CustomValue, DeviceRow, InterfaceRow, LinkRow, Tags, TrapRow,
};
use nmsd_pipeline::{Batch, StreamKind};

/// The batch encoding this build writes.
pub const CODEC_VERSION: u8 = 1;

const TAG_FLOWS: u8 = 1;
const TAG_ROLLUPS: u8 = 2;
const TAG_SNMP_INTERFACES: u8 = 3;
const TAG_SNMP_DEVICES: u8 = 4;
const TAG_SNMP_CUSTOM: u8 = 5;
const TAG_TRAPS: u8 = 6;
const TAG_TOPOLOGY_LINKS: u8 = 7;
const TAG_EVENTS: u8 = 8;

/// Bytes of the smallest encoded row of each stream (all options empty, all strings empty), to
/// bound a row count read from the input before allocating for it. A test encodes such rows
/// and checks these.
const MIN_FLOW_LEN: usize = 32 + 4 * 5 + 24 + 6 + 6;
const MIN_ROLLUP_LEN: usize = 8 + 5 + 1 + 10 + 1 + 2 + 8 + 24 + 8;
const MIN_EVENT_LEN: usize = 8 + 4 + 1 + 4 + 4 + 4 + 4 + 4;
const MIN_INTERFACE_LEN: usize = 8 + 4 + 4 + 3 + 4 + 1 + 12 + 5 + 12 + 1;
const MIN_DEVICE_LEN: usize = 8 + 4 + 1 + 1 + 1 + 6 + 3 + 4 + 1 + 16;
const MIN_CUSTOM_LEN: usize = 4 + 4 + 8 + 1 + 4;
const MIN_TRAP_LEN: usize = 8 + 1 + 4 + 4 + 4 + 1 + 4 + 3 + 2 + 4;
const MIN_LINK_LEN: usize = 8 + 4 + 4 + 4 + 1 + 4 + 4 + 1 + 4 * 4;
/// Bytes of the smallest entry of a device table (name, tag count) and of a name table.
const MIN_DEVICE_ENTRY_LEN: usize = 4 + 4;
const MIN_NAME_LEN: usize = 4;

/// Longest label (a `&'static str` field: rate note, error kind, trap version and PDU, link
/// protocol and state) written and read. Labels are short identifiers; the bound keeps what
/// `Reader::label` interns small.
const MAX_LABEL_LEN: usize = 64;
/// Distinct labels one process interns before decoding refuses new ones (so at most 64 KiB).
/// Real data holds a few dozen; the margin is for tests and fuzzing, whose damaged inputs
/// make up new ones.
const MAX_LABELS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("the {} stream has no buffer encoding yet", .0.name())]
    Unsupported(StreamKind),
    #[error("batch encoding version {0} (this build reads {CODEC_VERSION})")]
    UnsupportedVersion(u8),
    #[error("unknown stream tag {0}")]
    UnknownStream(u8),
    #[error("batch ends early at byte {0}")]
    Truncated(usize),
    #[error("bad {what} {value} at byte {at}")]
    BadValue {
        what: &'static str,
        value: u64,
        at: usize,
    },
    #[error("text at byte {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("{0} bytes after the last row")]
    TrailingBytes(usize),
    #[error("a string of {0} bytes is too long to encode")]
    TooLong(usize),
}

/// Appends the encoding of `batch` to `out`.
pub fn encode(batch: &Batch, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let r = match batch {
        Batch::Flows(rows) => {
            header(out, TAG_FLOWS, rows.len())?;
            out.reserve(rows.len() * (MIN_FLOW_LEN + 48));
            for f in rows.iter() {
                put_flow(out, f);
            }
            Ok(())
        }
        Batch::Rollups(rows) => {
            header(out, TAG_ROLLUPS, rows.len())?;
            put_rollups(out, rows)
        }
        Batch::Events(rows) => {
            header(out, TAG_EVENTS, rows.len())?;
            rows.iter().try_for_each(|e| put_event(out, e))
        }
        Batch::SnmpInterfaces(rows) => {
            header(out, TAG_SNMP_INTERFACES, rows.len())?;
            put_interfaces(out, rows)
        }
        Batch::SnmpDevices(rows) => {
            header(out, TAG_SNMP_DEVICES, rows.len())?;
            put_devices(out, rows)
        }
        Batch::SnmpCustom(rows) => {
            header(out, TAG_SNMP_CUSTOM, rows.len())?;
            put_custom(out, rows)
        }
        Batch::Traps(rows) => {
            header(out, TAG_TRAPS, rows.len())?;
            rows.iter().try_for_each(|t| put_trap(out, t))
        }
        Batch::TopologyLinks(rows) => {
            header(out, TAG_TOPOLOGY_LINKS, rows.len())?;
            rows.iter().try_for_each(|l| put_link(out, l))
        }
        // Internal to the global stage: it never reaches a sink.
        Batch::FlowView(_) => Err(CodecError::Unsupported(StreamKind::FlowView)),
    };
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decodes one batch; the whole of `bytes` must be that batch.
pub fn decode(bytes: &[u8]) -> Result<Batch, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u8()?;
    if version != CODEC_VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    let tag = r.u8()?;
    let batch = match tag {
        TAG_FLOWS => {
            let n = r.count(MIN_FLOW_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(r.flow()?);
            }
            Batch::flows(v)
        }
        TAG_ROLLUPS => Batch::rollups(r.rollups()?),
        TAG_EVENTS => {
            let n = r.count(MIN_EVENT_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(r.event()?);
            }
            Batch::events(v)
        }
        TAG_SNMP_INTERFACES => Batch::SnmpInterfaces(Arc::new(r.interfaces()?)),
        TAG_SNMP_DEVICES => Batch::SnmpDevices(Arc::new(r.devices()?)),
        TAG_SNMP_CUSTOM => Batch::SnmpCustom(Arc::new(r.custom()?)),
        TAG_TRAPS => {
            let n = r.count(MIN_TRAP_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(r.trap()?);
            }
            Batch::Traps(Arc::new(v))
        }
        TAG_TOPOLOGY_LINKS => {
            let n = r.count(MIN_LINK_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(r.link()?);
            }
            Batch::TopologyLinks(Arc::new(v))
        }
        t => return Err(CodecError::UnknownStream(t)),
    };
    match bytes.len() - r.pos {
        0 => Ok(batch),
        n => Err(CodecError::TrailingBytes(n)),
    }
}

fn len_u32(n: usize) -> Result<u32, CodecError> {
    u32::try_from(n).map_err(|_| CodecError::TooLong(n))
}

fn header(out: &mut Vec<u8>, tag: u8, rows: usize) -> Result<(), CodecError> {
    out.push(CODEC_VERSION);
    out.push(tag);
    out.extend_from_slice(&len_u32(rows)?.to_le_bytes());
    Ok(())
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    out.extend_from_slice(&len_u32(s.len())?.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_flow(out: &mut Vec<u8>, f: &FlowRecord) {
    for v in [f.start_ms, f.end_ms, f.bytes, f.packets] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for ip in [f.exporter, f.src_addr, f.dst_addr, f.next_hop] {
        put_ip(out, ip);
    }
    for v in [
        f.observation_domain,
        f.in_if,
        f.out_if,
        f.src_as,
        f.dst_as,
        f.sampling_interval,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [f.src_port, f.dst_port, f.vlan] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&[
        f.protocol,
        f.tcp_flags,
        f.tos,
        f.direction as u8,
        f.version.as_u8(),
        f.source,
    ]);
}

fn put_rollups(out: &mut Vec<u8>, rows: &[RollupRow]) -> Result<(), CodecError> {
    // The interface table: each distinct `Arc<IfInfo>` once, by identity.
    let mut index: HashMap<*const IfInfo, u32> = HashMap::new();
    let mut table: Vec<&IfInfo> = Vec::new();
    for r in rows {
        for info in [&r.in_if_info, &r.out_if_info].into_iter().flatten() {
            index.entry(Arc::as_ptr(info)).or_insert_with(|| {
                table.push(info);
                table.len() as u32
            });
        }
    }
    out.extend_from_slice(&len_u32(table.len())?.to_le_bytes());
    for info in &table {
        for s in [&info.name, &info.alias] {
            match s {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    put_str(out, s)?;
                }
            }
        }
        match info.speed_mbps {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let slot = |info: &Option<Arc<IfInfo>>| {
        info.as_ref()
            .and_then(|i| index.get(&Arc::as_ptr(i)).copied())
            .unwrap_or(0)
    };
    for r in rows {
        out.extend_from_slice(&r.window_start_ms.to_le_bytes());
        put_ip(out, r.exporter);
        out.push(r.source);
        put_ip(out, r.src_addr);
        put_ip(out, r.dst_addr);
        out.push(r.protocol);
        out.extend_from_slice(&r.dst_port.to_le_bytes());
        out.extend_from_slice(&r.in_if.to_le_bytes());
        out.extend_from_slice(&r.out_if.to_le_bytes());
        for v in [r.bytes, r.packets, r.flows] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&slot(&r.in_if_info).to_le_bytes());
        out.extend_from_slice(&slot(&r.out_if_info).to_le_bytes());
    }
    Ok(())
}

fn put_event(out: &mut Vec<u8>, e: &Event) -> Result<(), CodecError> {
    out.extend_from_slice(&e.ts_ms.to_le_bytes());
    put_str(out, &e.kind)?;
    out.push(match e.severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    });
    put_str(out, &e.subject)?;
    put_str(out, &e.component)?;
    out.extend_from_slice(&len_u32(e.labels.len())?.to_le_bytes());
    for (k, v) in &e.labels {
        put_str(out, k)?;
        put_str(out, v)?;
    }
    out.extend_from_slice(&len_u32(e.fields.len())?.to_le_bytes());
    for (k, v) in &e.fields {
        put_str(out, k)?;
        match v {
            FieldValue::Number(x) => {
                out.push(0);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            FieldValue::Integer(x) => {
                out.push(1);
                out.extend_from_slice(&x.to_le_bytes());
            }
            FieldValue::Text(s) => {
                out.push(2);
                put_str(out, s)?;
            }
        }
    }
    put_str(out, &e.message)
}

fn put_u32(out: &mut Vec<u8>, v: u32) -> Result<(), CodecError> {
    out.extend_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u64(out: &mut Vec<u8>, v: u64) -> Result<(), CodecError> {
    out.extend_from_slice(&v.to_le_bytes());
    Ok(())
}

/// `opt-x`: u8 0, or u8 1 and what `put` writes.
fn put_opt<T>(
    out: &mut Vec<u8>,
    v: Option<T>,
    put: impl FnOnce(&mut Vec<u8>, T) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    match v {
        None => {
            out.push(0);
            Ok(())
        }
        Some(v) => {
            out.push(1);
            put(out, v)
        }
    }
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// A `&'static str` field; refused above [`MAX_LABEL_LEN`], which decoding would not accept.
fn put_label(out: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    if s.len() > MAX_LABEL_LEN {
        return Err(CodecError::TooLong(s.len()));
    }
    put_str(out, s)
}

fn put_sockaddr(out: &mut Vec<u8>, a: SocketAddr) -> Result<(), CodecError> {
    put_ip(out, a.ip());
    out.extend_from_slice(&a.port().to_le_bytes());
    if let SocketAddr::V6(a) = a {
        put_u32(out, a.flowinfo())?;
        put_u32(out, a.scope_id())?;
    }
    Ok(())
}

/// The device table of SNMP interface and device rows: each distinct pair of `device` and
/// `tags` allocations once, by identity (the rows of one poll share both). Returns each row's
/// index into it.
fn put_device_table<'r>(
    out: &mut Vec<u8>,
    rows: impl Iterator<Item = (&'r Arc<str>, &'r Tags)>,
) -> Result<Vec<u32>, CodecError> {
    type Key = (*const str, *const [(Arc<str>, Arc<str>)]);
    let mut index: HashMap<Key, u32> = HashMap::new();
    let mut table: Vec<(&str, &Tags)> = Vec::new();
    let slots = rows
        .map(|(device, tags)| {
            *index
                .entry((Arc::as_ptr(device), Arc::as_ptr(tags)))
                .or_insert_with(|| {
                    table.push((device, tags));
                    table.len() as u32 - 1
                })
        })
        .collect();
    put_u32(out, len_u32(table.len())?)?;
    for (device, tags) in table {
        put_str(out, device)?;
        put_u32(out, len_u32(tags.len())?)?;
        for (k, v) in tags.iter() {
            put_str(out, k)?;
            put_str(out, v)?;
        }
    }
    Ok(slots)
}

fn put_interfaces(out: &mut Vec<u8>, rows: &[InterfaceRow]) -> Result<(), CodecError> {
    let slots = put_device_table(out, rows.iter().map(|r| (&r.device, &r.tags)))?;
    out.reserve(rows.len() * (MIN_INTERFACE_LEN + 200));
    for (r, slot) in rows.iter().zip(slots) {
        put_u64(out, r.ts_ms)?;
        put_u32(out, slot)?;
        put_u32(out, r.if_index)?;
        for s in [&r.if_name, &r.if_alias, &r.if_descr] {
            put_opt(out, s.as_deref(), put_str)?;
        }
        put_opt(out, r.if_type.map(|v| v as u64), put_u64)?;
        put_opt(out, r.speed_mbps, put_u64)?;
        put_opt(out, r.admin_status.map(|v| v as u64), put_u64)?;
        put_opt(out, r.oper_status.map(|v| v as u64), put_u64)?;
        out.push(r.counter_bits);
        for c in r.counters {
            put_opt(out, c, put_u64)?;
        }
        for x in [r.interval_s, r.in_bps, r.out_bps, r.in_util, r.out_util] {
            put_opt(out, x.map(f64::to_bits), put_u64)?;
        }
        for x in r.per_second {
            put_opt(out, x.map(f64::to_bits), put_u64)?;
        }
        put_opt(out, r.rate_note, put_label)?;
    }
    Ok(())
}

fn put_devices(out: &mut Vec<u8>, rows: &[DeviceRow]) -> Result<(), CodecError> {
    let slots = put_device_table(out, rows.iter().map(|r| (&r.device, &r.tags)))?;
    for (r, slot) in rows.iter().zip(slots) {
        put_u64(out, r.ts_ms)?;
        put_u32(out, slot)?;
        put_opt(out, r.address, |out, ip| {
            put_ip(out, ip);
            Ok(())
        })?;
        put_bool(out, r.up);
        put_opt(out, r.error, put_label)?;
        for s in [
            &r.error_detail,
            &r.sys_name,
            &r.sys_descr,
            &r.sys_object_id,
            &r.sys_location,
            &r.sys_contact,
        ] {
            put_opt(out, s.as_deref(), put_str)?;
        }
        put_opt(out, r.sys_uptime_ticks, put_u32)?;
        put_opt(out, r.engine_id.as_deref(), put_str)?;
        put_opt(out, r.engine_boots, put_u32)?;
        put_u32(out, r.poll_ms)?;
        put_opt(out, r.rtt_ms.map(f64::to_bits), put_u64)?;
        for v in [r.requests, r.timeouts, r.varbinds, r.interfaces] {
            put_u32(out, v)?;
        }
    }
    Ok(())
}

fn put_custom(out: &mut Vec<u8>, rows: &[CustomRow]) -> Result<(), CodecError> {
    // The name table: each distinct `Arc<str>` of table, device and column names once, by
    // identity (a module's rows share their table and column names).
    fn slot<'r>(
        index: &mut HashMap<*const str, u32>,
        table: &mut Vec<&'r str>,
        s: &'r Arc<str>,
    ) -> u32 {
        *index.entry(Arc::as_ptr(s)).or_insert_with(|| {
            table.push(s);
            table.len() as u32 - 1
        })
    }
    let mut index = HashMap::new();
    let mut table = Vec::new();
    let slots: Vec<(u32, u32, Vec<u32>)> = rows
        .iter()
        .map(|r| {
            let t = slot(&mut index, &mut table, &r.table);
            let d = slot(&mut index, &mut table, &r.device);
            let names = r
                .values
                .iter()
                .map(|(k, _)| slot(&mut index, &mut table, k))
                .collect();
            (t, d, names)
        })
        .collect();
    put_u32(out, len_u32(table.len())?)?;
    for s in table {
        put_str(out, s)?;
    }
    for (r, (table, device, names)) in rows.iter().zip(slots) {
        put_u32(out, table)?;
        put_u32(out, device)?;
        put_u64(out, r.ts_ms)?;
        put_opt(out, r.idx.as_deref(), put_str)?;
        put_u32(out, len_u32(r.values.len())?)?;
        for ((_, v), name) in r.values.iter().zip(names) {
            put_u32(out, name)?;
            match v {
                CustomValue::Gauge(x) => {
                    out.push(0);
                    put_u64(out, x.to_bits())?;
                }
                CustomValue::Counter { raw, rate } => {
                    out.push(1);
                    put_u64(out, *raw)?;
                    put_opt(out, rate.map(f64::to_bits), put_u64)?;
                }
                CustomValue::Label(s) => {
                    out.push(2);
                    put_str(out, s)?;
                }
            }
        }
    }
    Ok(())
}

fn put_trap(out: &mut Vec<u8>, t: &TrapRow) -> Result<(), CodecError> {
    put_u64(out, t.ts_ms)?;
    put_opt(out, t.source, put_sockaddr)?;
    put_label(out, t.version)?;
    put_label(out, t.pdu)?;
    put_str(out, &t.trap_oid)?;
    put_opt(out, t.uptime_ticks, put_u32)?;
    put_str(out, &t.security_name)?;
    put_opt(out, t.engine_id.as_deref(), put_str)?;
    put_opt(out, t.request_id.map(|v| v as u32), put_u32)?;
    put_opt(out, t.enterprise.as_deref(), put_str)?;
    put_opt(out, t.generic_trap.map(|v| v as u64), put_u64)?;
    put_opt(out, t.specific_trap.map(|v| v as u64), put_u64)?;
    put_str(out, &t.varbinds)
}

fn put_link(out: &mut Vec<u8>, l: &LinkRow) -> Result<(), CodecError> {
    put_u64(out, l.ts_ms)?;
    put_label(out, l.protocol)?;
    put_label(out, l.state)?;
    put_str(out, &l.local_device)?;
    put_opt(out, l.local_if_index, put_u32)?;
    put_str(out, &l.local_port)?;
    put_str(out, &l.remote_device)?;
    put_bool(out, l.remote_known);
    for s in [
        &l.remote_port,
        &l.remote_port_descr,
        &l.remote_chassis_id,
        &l.remote_sys_name,
    ] {
        put_str(out, s)?;
    }
    Ok(())
}

/// One entry of the device table of SNMP interface and device rows.
type DeviceEntry = (Arc<str>, Tags);

/// Every label decoded in this process (see [`intern_label`]).
static LABELS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The process's copy of a label read from the input: `&'static str` fields need a string that
/// lives for ever, and the values are a small closed set (identifiers in the code of the build
/// that wrote them), so each distinct one is leaked once and found again after that. At most
/// `max` of them (of at most [`MAX_LABEL_LEN`] bytes, which the reader checks): `None` when the
/// set is full, so damaged or hostile input cannot grow it without bound.
fn intern_label(labels: &Mutex<Vec<&'static str>>, max: usize, s: &str) -> Option<&'static str> {
    let mut labels = labels.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = labels.iter().find(|l| **l == s) {
        return Some(l);
    }
    if labels.len() >= max {
        return None;
    }
    let l: &'static str = Box::leak(Box::from(s));
    labels.push(l);
    Some(l)
}

/// A bounds-checked cursor: every read either succeeds or says where the input ended.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        let s = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or(CodecError::Truncated(self.pos))?;
        a.copy_from_slice(s);
        self.pos += N;
        Ok(a)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CodecError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        self.take().map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_len` bytes each, refused when the rest of the input
    /// cannot hold that many (so a damaged count never allocates gigabytes).
    fn count(&mut self, min_len: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n.saturating_mul(min_len) > self.buf.len() - self.pos {
            return Err(CodecError::BadValue {
                what: "count",
                value: n as u64,
                at,
            });
        }
        Ok(n)
    }

    fn bad(&self, what: &'static str, value: u64) -> CodecError {
        CodecError::BadValue {
            what,
            value,
            at: self.pos.saturating_sub(1),
        }
    }

    fn ip(&mut self) -> Result<IpAddr, CodecError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.take::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.take::<16>()?))),
            t => Err(self.bad("address tag", t.into())),
        }
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| CodecError::NotUtf8(at))
    }

    fn opt_tag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(self.bad("option tag", t.into())),
        }
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        if self.opt_tag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn f64(&mut self) -> Result<f64, CodecError> {
        self.u64().map(f64::from_bits)
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        self.u64().map(|v| v as i64)
    }

    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.bad("bool", b.into())),
        }
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_owned)
    }

    fn arc_str(&mut self) -> Result<Arc<str>, CodecError> {
        self.str().map(Arc::from)
    }

    fn label(&mut self) -> Result<&'static str, CodecError> {
        let at = self.pos;
        let s = self.str()?;
        let bad = |what| CodecError::BadValue {
            what,
            value: s.len() as u64,
            at,
        };
        if s.len() > MAX_LABEL_LEN {
            return Err(bad("label length"));
        }
        intern_label(&LABELS, MAX_LABELS, s).ok_or_else(|| bad("label (too many distinct labels)"))
    }

    fn sockaddr(&mut self) -> Result<SocketAddr, CodecError> {
        let ip = self.ip()?;
        let port = self.u16()?;
        Ok(match ip {
            IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
            IpAddr::V6(a) => {
                let flowinfo = self.u32()?;
                let scope_id = self.u32()?;
                SocketAddr::V6(SocketAddrV6::new(a, port, flowinfo, scope_id))
            }
        })
    }

    /// An index into a per-batch table.
    fn index<'t, T>(&mut self, table: &'t [T], what: &'static str) -> Result<&'t T, CodecError> {
        let i = self.u32()?;
        table
            .get(i as usize)
            .ok_or_else(|| self.bad_at(what, i.into(), 4))
    }

    fn bad_at(&self, what: &'static str, value: u64, len: usize) -> CodecError {
        CodecError::BadValue {
            what,
            value,
            at: self.pos.saturating_sub(len),
        }
    }

    /// Refuses a row count read earlier (at `at`, before a table) that the rest of the input
    /// cannot hold.
    fn check_rows(&self, rows: usize, min_len: usize, at: usize) -> Result<(), CodecError> {
        if rows.saturating_mul(min_len) > self.buf.len() - self.pos {
            return Err(CodecError::BadValue {
                what: "count",
                value: rows as u64,
                at,
            });
        }
        Ok(())
    }

    /// The row count of the header (rows of at least `min_row_len` bytes), then the device
    /// table of SNMP interface and device rows.
    fn device_table(
        &mut self,
        min_row_len: usize,
    ) -> Result<(usize, Vec<DeviceEntry>), CodecError> {
        let rows_at = self.pos;
        let rows = self.u32()? as usize;
        let n = self.count(MIN_DEVICE_ENTRY_LEN)?;
        let mut table = Vec::with_capacity(n);
        for _ in 0..n {
            let device = self.arc_str()?;
            let n_tags = self.count(8)?;
            let mut tags = Vec::with_capacity(n_tags);
            for _ in 0..n_tags {
                tags.push((self.arc_str()?, self.arc_str()?));
            }
            table.push((device, Tags::from(tags)));
        }
        self.check_rows(rows, min_row_len, rows_at)?;
        Ok((rows, table))
    }

    fn interfaces(&mut self) -> Result<Vec<InterfaceRow>, CodecError> {
        let (rows, devices) = self.device_table(MIN_INTERFACE_LEN)?;
        let mut v = Vec::with_capacity(rows);
        for _ in 0..rows {
            let ts_ms = self.u64()?;
            let (device, tags) = self.index(&devices, "device index")?.clone();
            let if_index = self.u32()?;
            let if_name = self.opt(Self::arc_str)?;
            let if_alias = self.opt(Self::arc_str)?;
            let if_descr = self.opt(Self::arc_str)?;
            let if_type = self.opt(Self::i64)?;
            let speed_mbps = self.opt(Self::u64)?;
            let admin_status = self.opt(Self::i64)?;
            let oper_status = self.opt(Self::i64)?;
            let counter_bits = self.u8()?;
            let mut counters = [None; 12];
            for c in &mut counters {
                *c = self.opt(Self::u64)?;
            }
            let interval_s = self.opt(Self::f64)?;
            let in_bps = self.opt(Self::f64)?;
            let out_bps = self.opt(Self::f64)?;
            let in_util = self.opt(Self::f64)?;
            let out_util = self.opt(Self::f64)?;
            let mut per_second = [None; 12];
            for x in &mut per_second {
                *x = self.opt(Self::f64)?;
            }
            let rate_note = self.opt(Self::label)?;
            v.push(InterfaceRow {
                ts_ms,
                device,
                tags,
                if_index,
                if_name,
                if_alias,
                if_descr,
                if_type,
                speed_mbps,
                admin_status,
                oper_status,
                counter_bits,
                counters,
                interval_s,
                in_bps,
                out_bps,
                in_util,
                out_util,
                per_second,
                rate_note,
            });
        }
        Ok(v)
    }

    fn devices(&mut self) -> Result<Vec<DeviceRow>, CodecError> {
        let (rows, devices) = self.device_table(MIN_DEVICE_LEN)?;
        let mut v = Vec::with_capacity(rows);
        for _ in 0..rows {
            let ts_ms = self.u64()?;
            let (device, tags) = self.index(&devices, "device index")?.clone();
            v.push(DeviceRow {
                ts_ms,
                device,
                tags,
                address: self.opt(Self::ip)?,
                up: self.bool()?,
                error: self.opt(Self::label)?,
                error_detail: self.opt(Self::string)?,
                sys_name: self.opt(Self::string)?,
                sys_descr: self.opt(Self::string)?,
                sys_object_id: self.opt(Self::string)?,
                sys_location: self.opt(Self::string)?,
                sys_contact: self.opt(Self::string)?,
                sys_uptime_ticks: self.opt(Self::u32)?,
                engine_id: self.opt(Self::string)?,
                engine_boots: self.opt(Self::u32)?,
                poll_ms: self.u32()?,
                rtt_ms: self.opt(Self::f64)?,
                requests: self.u32()?,
                timeouts: self.u32()?,
                varbinds: self.u32()?,
                interfaces: self.u32()?,
            });
        }
        Ok(v)
    }

    fn custom(&mut self) -> Result<Vec<CustomRow>, CodecError> {
        let rows_at = self.pos;
        let rows = self.u32()? as usize;
        let n = self.count(MIN_NAME_LEN)?;
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            names.push(self.arc_str()?);
        }
        self.check_rows(rows, MIN_CUSTOM_LEN, rows_at)?;
        let mut v = Vec::with_capacity(rows);
        for _ in 0..rows {
            let table = self.index(&names, "name index")?.clone();
            let device = self.index(&names, "name index")?.clone();
            let ts_ms = self.u64()?;
            let idx = self.opt(Self::string)?;
            // A value is at least a name index, a tag and a label's length.
            let n = self.count(4 + 1 + 4)?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                let name = self.index(&names, "name index")?.clone();
                let value = match self.u8()? {
                    0 => CustomValue::Gauge(self.f64()?),
                    1 => CustomValue::Counter {
                        raw: self.u64()?,
                        rate: self.opt(Self::f64)?,
                    },
                    2 => CustomValue::Label(self.string()?),
                    t => return Err(self.bad("custom value tag", t.into())),
                };
                values.push((name, value));
            }
            v.push(CustomRow {
                table,
                ts_ms,
                device,
                idx,
                values,
            });
        }
        Ok(v)
    }

    fn trap(&mut self) -> Result<TrapRow, CodecError> {
        Ok(TrapRow {
            ts_ms: self.u64()?,
            source: self.opt(Self::sockaddr)?,
            version: self.label()?,
            pdu: self.label()?,
            trap_oid: self.string()?,
            uptime_ticks: self.opt(Self::u32)?,
            security_name: self.string()?,
            engine_id: self.opt(Self::string)?,
            request_id: self.opt(|r| r.u32().map(|v| v as i32))?,
            enterprise: self.opt(Self::string)?,
            generic_trap: self.opt(Self::i64)?,
            specific_trap: self.opt(Self::i64)?,
            varbinds: self.string()?,
        })
    }

    fn link(&mut self) -> Result<LinkRow, CodecError> {
        Ok(LinkRow {
            ts_ms: self.u64()?,
            protocol: self.label()?,
            state: self.label()?,
            local_device: self.string()?,
            local_if_index: self.opt(Self::u32)?,
            local_port: self.string()?,
            remote_device: self.string()?,
            remote_known: self.bool()?,
            remote_port: self.string()?,
            remote_port_descr: self.string()?,
            remote_chassis_id: self.string()?,
            remote_sys_name: self.string()?,
        })
    }

    fn flow(&mut self) -> Result<FlowRecord, CodecError> {
        let mut f = FlowRecord::EMPTY;
        f.start_ms = self.u64()?;
        f.end_ms = self.u64()?;
        f.bytes = self.u64()?;
        f.packets = self.u64()?;
        f.exporter = self.ip()?;
        f.src_addr = self.ip()?;
        f.dst_addr = self.ip()?;
        f.next_hop = self.ip()?;
        f.observation_domain = self.u32()?;
        f.in_if = self.u32()?;
        f.out_if = self.u32()?;
        f.src_as = self.u32()?;
        f.dst_as = self.u32()?;
        f.sampling_interval = self.u32()?;
        f.src_port = self.u16()?;
        f.dst_port = self.u16()?;
        f.vlan = self.u16()?;
        f.protocol = self.u8()?;
        f.tcp_flags = self.u8()?;
        f.tos = self.u8()?;
        f.direction = match self.u8()? {
            0 => Direction::Ingress,
            1 => Direction::Egress,
            255 => Direction::Unknown,
            d => return Err(self.bad("direction", d.into())),
        };
        // The number the record carries (5, 9, 10; 0 for flows built from packets, 1 for
        // sFlow): every version nmsd makes flows from.
        let v = self.u8()?;
        f.version = FlowVersion::from_u8(v).ok_or_else(|| self.bad("flow version", v.into()))?;
        f.source = self.u8()?;
        // `packet_counts` are not stored: they are for processors, which run before a sink's
        // buffer, and no sink writes them.
        Ok(f)
    }

    fn rollups(&mut self) -> Result<Vec<RollupRow>, CodecError> {
        // The row count comes first in the header, the interface table after it.
        let rows_at = self.pos;
        let rows = self.u32()? as usize;
        let n_if = self.count(3)?;
        let mut table = Vec::with_capacity(n_if);
        for _ in 0..n_if {
            let name = if self.opt_tag()? {
                Some(Arc::from(self.str()?))
            } else {
                None
            };
            let alias = if self.opt_tag()? {
                Some(Arc::from(self.str()?))
            } else {
                None
            };
            let speed_mbps = if self.opt_tag()? {
                Some(self.u64()?)
            } else {
                None
            };
            table.push(Arc::new(IfInfo {
                name,
                alias,
                speed_mbps,
            }));
        }
        if rows.saturating_mul(MIN_ROLLUP_LEN) > self.buf.len() - self.pos {
            return Err(CodecError::BadValue {
                what: "count",
                value: rows as u64,
                at: rows_at,
            });
        }
        let mut v = Vec::with_capacity(rows);
        for _ in 0..rows {
            let window_start_ms = self.u64()?;
            let exporter = self.ip()?;
            let source = self.u8()?;
            let src_addr = self.ip()?;
            let dst_addr = self.ip()?;
            let protocol = self.u8()?;
            let dst_port = self.u16()?;
            let in_if = self.u32()?;
            let out_if = self.u32()?;
            let bytes = self.u64()?;
            let packets = self.u64()?;
            let flows = self.u64()?;
            let mut info = || -> Result<Option<Arc<IfInfo>>, CodecError> {
                match self.u32()? {
                    0 => Ok(None),
                    i => table
                        .get(i as usize - 1)
                        .cloned()
                        .map(Some)
                        .ok_or_else(|| self.bad("interface index", i.into())),
                }
            };
            let in_if_info = info()?;
            let out_if_info = info()?;
            v.push(RollupRow {
                window_start_ms,
                exporter,
                source,
                src_addr,
                dst_addr,
                protocol,
                dst_port,
                in_if,
                out_if,
                bytes,
                packets,
                flows,
                in_if_info,
                out_if_info,
            });
        }
        Ok(v)
    }

    fn event(&mut self) -> Result<Event, CodecError> {
        let ts_ms = self.u64()?;
        let kind: Arc<str> = Arc::from(self.str()?);
        let severity = match self.u8()? {
            0 => Severity::Info,
            1 => Severity::Warning,
            2 => Severity::Critical,
            s => return Err(self.bad("severity", s.into())),
        };
        let subject = self.str()?.to_owned();
        let component: Arc<str> = Arc::from(self.str()?);
        let n = self.count(8)?;
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let k: Arc<str> = Arc::from(self.str()?);
            labels.push((k, self.str()?.to_owned()));
        }
        let n = self.count(5)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let k: Arc<str> = Arc::from(self.str()?);
            let v = match self.u8()? {
                0 => FieldValue::Number(f64::from_bits(self.u64()?)),
                1 => FieldValue::Integer(self.u64()? as i64),
                2 => FieldValue::Text(self.str()?.to_owned()),
                t => return Err(self.bad("field tag", t.into())),
            };
            fields.push((k, v));
        }
        let message = self.str()?.to_owned();
        Ok(Event {
            ts_ms,
            kind,
            severity,
            subject,
            component,
            labels,
            fields,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic, seedable, enough for property-style tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn ip(&mut self) -> IpAddr {
            if self.below(4) == 0 {
                let hi = self.next() as u128;
                IpAddr::V6(Ipv6Addr::from(hi << 64 | self.next() as u128))
            } else {
                IpAddr::V4(Ipv4Addr::from(self.next() as u32))
            }
        }
        fn text(&mut self) -> String {
            let n = self.below(12) as usize;
            (0..n)
                .map(|_| ['a', 'é', '0', '→', ' ', '"', '\n'][self.below(7) as usize])
                .collect()
        }
    }

    fn flow(r: &mut Rng) -> FlowRecord {
        FlowRecord {
            start_ms: r.next(),
            end_ms: r.next(),
            bytes: r.next(),
            packets: r.next(),
            exporter: r.ip(),
            src_addr: r.ip(),
            dst_addr: r.ip(),
            next_hop: r.ip(),
            observation_domain: r.next() as u32,
            in_if: r.next() as u32,
            out_if: r.next() as u32,
            src_as: r.next() as u32,
            dst_as: r.next() as u32,
            sampling_interval: r.next() as u32,
            src_port: r.next() as u16,
            dst_port: r.next() as u16,
            vlan: r.next() as u16,
            protocol: r.next() as u8,
            tcp_flags: r.next() as u8,
            tos: r.next() as u8,
            direction: [Direction::Ingress, Direction::Egress, Direction::Unknown]
                [r.below(3) as usize],
            version: [
                FlowVersion::NetflowV5,
                FlowVersion::NetflowV9,
                FlowVersion::Ipfix,
                FlowVersion::Packets,
                FlowVersion::Sflow,
            ][r.below(5) as usize],
            source: r.next() as u8,
            // Not stored (see `flow`): a round trip gives zero.
            packet_counts: nmsd_pipeline::records::PacketCounts::ZERO,
        }
    }

    fn rollups(r: &mut Rng, n: usize) -> Vec<RollupRow> {
        let infos: Vec<Arc<IfInfo>> = (0..4)
            .map(|_| {
                Arc::new(IfInfo {
                    name: (r.below(3) > 0).then(|| Arc::from(r.text().as_str())),
                    alias: (r.below(2) > 0).then(|| Arc::from(r.text().as_str())),
                    speed_mbps: (r.below(2) > 0).then(|| r.next()),
                })
            })
            .collect();
        (0..n)
            .map(|_| {
                let pick = |r: &mut Rng| {
                    let i = r.below(infos.len() as u64 + 1) as usize;
                    infos.get(i).cloned()
                };
                RollupRow {
                    window_start_ms: r.next(),
                    exporter: r.ip(),
                    source: r.next() as u8,
                    src_addr: r.ip(),
                    dst_addr: r.ip(),
                    protocol: r.next() as u8,
                    dst_port: r.next() as u16,
                    in_if: r.next() as u32,
                    out_if: r.next() as u32,
                    bytes: r.next(),
                    packets: r.next(),
                    flows: r.next(),
                    in_if_info: pick(r),
                    out_if_info: pick(r),
                }
            })
            .collect()
    }

    fn event(r: &mut Rng) -> Event {
        let mut e = Event::new(
            r.next(),
            r.text(),
            [Severity::Info, Severity::Warning, Severity::Critical][r.below(3) as usize],
        )
        .subject(r.text())
        .message(r.text());
        e.component = Arc::from(r.text().as_str());
        for _ in 0..r.below(4) {
            e = e.label(r.text(), r.text());
        }
        for _ in 0..r.below(4) {
            let v = match r.below(3) {
                // Finite numbers: NaN is not equal to itself.
                0 => FieldValue::Number(r.next() as f64 / 7.0),
                1 => FieldValue::Integer(r.next() as i64),
                _ => FieldValue::Text(r.text()),
            };
            e = e.field(r.text(), v);
        }
        e
    }

    /// Awkward floats: NaN with and without a payload, both zeros, infinities, subnormals, and
    /// random bit patterns (which include more NaNs).
    fn float(r: &mut Rng) -> f64 {
        match r.below(8) {
            0 => f64::NAN,
            1 => f64::from_bits(0xfff0_0000_0000_0001 | r.next() & 0xf_ffff),
            2 => -0.0,
            3 => [f64::INFINITY, f64::NEG_INFINITY][r.below(2) as usize],
            4 => f64::from_bits(1),
            _ => f64::from_bits(r.next()),
        }
    }

    fn maybe<T>(r: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        (r.below(2) == 0).then(|| f(r))
    }

    fn label(r: &mut Rng) -> &'static str {
        [
            "",
            "first",
            "agent_restart",
            "v2c",
            "inform",
            "lldp",
            "down",
            LONGEST_LABEL,
        ][r.below(8) as usize]
    }

    const LONGEST_LABEL: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A few devices whose rows share their name and tags, as the rows of a poll do.
    fn devices(r: &mut Rng) -> Vec<(Arc<str>, Tags)> {
        (0..3)
            .map(|_| {
                let tags: Vec<(Arc<str>, Arc<str>)> = (0..r.below(4))
                    .map(|_| (Arc::from(r.text().as_str()), Arc::from(r.text().as_str())))
                    .collect();
                (Arc::from(r.text().as_str()), Tags::from(tags))
            })
            .collect()
    }

    fn interface(r: &mut Rng, devices: &[(Arc<str>, Tags)]) -> InterfaceRow {
        let (device, tags) = devices[r.below(devices.len() as u64) as usize].clone();
        InterfaceRow {
            ts_ms: r.next(),
            device,
            tags,
            if_index: r.next() as u32,
            if_name: maybe(r, |r| Arc::from(r.text().as_str())),
            if_alias: maybe(r, |r| Arc::from(r.text().as_str())),
            if_descr: maybe(r, |r| Arc::from(r.text().as_str())),
            if_type: maybe(r, |r| r.next() as i64),
            speed_mbps: maybe(r, Rng::next),
            admin_status: maybe(r, |r| r.next() as i64),
            oper_status: maybe(r, |r| r.next() as i64),
            counter_bits: r.next() as u8,
            counters: std::array::from_fn(|_| maybe(r, Rng::next)),
            interval_s: maybe(r, float),
            in_bps: maybe(r, float),
            out_bps: maybe(r, float),
            in_util: maybe(r, float),
            out_util: maybe(r, float),
            per_second: std::array::from_fn(|_| maybe(r, float)),
            rate_note: maybe(r, label),
        }
    }

    fn device(r: &mut Rng, devices: &[(Arc<str>, Tags)]) -> DeviceRow {
        let (device, tags) = devices[r.below(devices.len() as u64) as usize].clone();
        DeviceRow {
            ts_ms: r.next(),
            device,
            tags,
            address: maybe(r, Rng::ip),
            up: r.below(2) == 0,
            error: maybe(r, label),
            error_detail: maybe(r, Rng::text),
            sys_name: maybe(r, Rng::text),
            sys_descr: maybe(r, Rng::text),
            sys_object_id: maybe(r, Rng::text),
            sys_location: maybe(r, Rng::text),
            sys_contact: maybe(r, Rng::text),
            sys_uptime_ticks: maybe(r, |r| r.next() as u32),
            engine_id: maybe(r, Rng::text),
            engine_boots: maybe(r, |r| r.next() as u32),
            poll_ms: r.next() as u32,
            rtt_ms: maybe(r, float),
            requests: r.next() as u32,
            timeouts: r.next() as u32,
            varbinds: r.next() as u32,
            interfaces: r.next() as u32,
        }
    }

    /// Custom rows of two modules: rows of a module share their table and column names.
    fn custom(r: &mut Rng, n: usize) -> Vec<CustomRow> {
        let names: Vec<Arc<str>> = (0..6).map(|_| Arc::from(r.text().as_str())).collect();
        (0..n)
            .map(|_| {
                let pick = |r: &mut Rng| names[r.below(names.len() as u64) as usize].clone();
                CustomRow {
                    table: pick(r),
                    ts_ms: r.next(),
                    device: pick(r),
                    idx: maybe(r, Rng::text),
                    values: (0..r.below(5))
                        .map(|_| {
                            let v = match r.below(3) {
                                0 => CustomValue::Gauge(float(r)),
                                1 => CustomValue::Counter {
                                    raw: r.next(),
                                    rate: maybe(r, float),
                                },
                                _ => CustomValue::Label(r.text()),
                            };
                            (pick(r), v)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn sockaddr(r: &mut Rng) -> SocketAddr {
        match r.ip() {
            IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, r.next() as u16)),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
                a,
                r.next() as u16,
                r.next() as u32,
                r.next() as u32,
            )),
        }
    }

    fn trap(r: &mut Rng) -> TrapRow {
        TrapRow {
            ts_ms: r.next(),
            source: maybe(r, sockaddr),
            version: label(r),
            pdu: label(r),
            trap_oid: r.text(),
            uptime_ticks: maybe(r, |r| r.next() as u32),
            security_name: r.text(),
            engine_id: maybe(r, Rng::text),
            request_id: maybe(r, |r| r.next() as i32),
            enterprise: maybe(r, Rng::text),
            generic_trap: maybe(r, |r| r.next() as i64),
            specific_trap: maybe(r, |r| r.next() as i64),
            varbinds: r.text(),
        }
    }

    fn link(r: &mut Rng) -> LinkRow {
        LinkRow {
            ts_ms: r.next(),
            protocol: label(r),
            state: label(r),
            local_device: r.text(),
            local_if_index: maybe(r, |r| r.next() as u32),
            local_port: r.text(),
            remote_device: r.text(),
            remote_known: r.below(2) == 0,
            remote_port: r.text(),
            remote_port_descr: r.text(),
            remote_chassis_id: r.text(),
            remote_sys_name: r.text(),
        }
    }

    /// Rows with floats are compared by their `Debug` text (which says `NaN` for every NaN)
    /// and by the bit patterns of their floats, since `NaN != NaN`.
    fn interface_floats(r: &InterfaceRow) -> Vec<Option<u64>> {
        [r.interval_s, r.in_bps, r.out_bps, r.in_util, r.out_util]
            .into_iter()
            .chain(r.per_second)
            .map(|x| x.map(f64::to_bits))
            .collect()
    }

    fn custom_floats(r: &CustomRow) -> Vec<Option<u64>> {
        r.values
            .iter()
            .map(|(_, v)| match v {
                CustomValue::Gauge(x) => Some(x.to_bits()),
                CustomValue::Counter { rate, .. } => rate.map(f64::to_bits),
                CustomValue::Label(_) => None,
            })
            .collect()
    }

    fn assert_same<T: std::fmt::Debug>(
        got: &[T],
        want: &[T],
        floats: impl Fn(&T) -> Vec<Option<u64>>,
    ) {
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        let bits = |v: &[T]| v.iter().map(&floats).collect::<Vec<_>>();
        assert_eq!(bits(got), bits(want), "float bit patterns");
    }

    /// For every pair of `Arc`s the rows hold, whether they were one allocation: the same
    /// before and after a round trip means the sharing survived, and no more than that.
    fn same_sharing(want: &[*const ()], have: &[*const ()]) {
        assert_eq!(want.len(), have.len());
        for i in 0..want.len().min(80) {
            for j in 0..want.len().min(80) {
                assert_eq!(want[i] == want[j], have[i] == have[j], "Arcs {i}, {j}");
            }
        }
    }

    const ALL_TAGS: [u8; 8] = [
        TAG_FLOWS,
        TAG_ROLLUPS,
        TAG_SNMP_INTERFACES,
        TAG_SNMP_DEVICES,
        TAG_SNMP_CUSTOM,
        TAG_TRAPS,
        TAG_TOPOLOGY_LINKS,
        TAG_EVENTS,
    ];

    fn round_trip(b: &Batch) -> Batch {
        let mut out = Vec::new();
        encode(b, &mut out).expect("encode");
        decode(&out).expect("decode")
    }

    #[test]
    fn random_flows_survive_a_round_trip() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for n in [0, 1, 2, 17, 1000] {
            let rows: Vec<FlowRecord> = (0..n).map(|_| flow(&mut r)).collect();
            let Batch::Flows(got) = round_trip(&Batch::flows(rows.clone())) else {
                panic!("not flows");
            };
            assert_eq!(*got, rows);
        }
    }

    #[test]
    fn random_rollups_survive_a_round_trip_and_share_their_interfaces() {
        let mut r = Rng(42);
        for n in [0, 1, 3, 500] {
            let rows = rollups(&mut r, n);
            let Batch::Rollups(got) = round_trip(&Batch::rollups(rows.clone())) else {
                panic!("not rollups");
            };
            assert_eq!(*got, rows);
            // Rows that shared an interface still share one allocation, and only those.
            let ptrs = |v: &[RollupRow]| -> Vec<Option<*const IfInfo>> {
                v.iter()
                    .flat_map(|x| [&x.in_if_info, &x.out_if_info])
                    .map(|i| i.as_ref().map(Arc::as_ptr))
                    .collect()
            };
            let (want, have) = (ptrs(&rows), ptrs(&got));
            for i in 0..want.len().min(60) {
                for j in 0..want.len().min(60) {
                    assert_eq!(want[i] == want[j], have[i] == have[j], "rows {i}, {j}");
                }
            }
            let distinct: std::collections::HashSet<*const IfInfo> =
                have.iter().flatten().copied().collect();
            assert!(distinct.len() <= 4);
        }
    }

    #[test]
    fn random_events_survive_a_round_trip() {
        let mut r = Rng(7);
        let rows: Vec<Event> = (0..200).map(|_| event(&mut r)).collect();
        let Batch::Events(got) = round_trip(&Batch::events(rows.clone())) else {
            panic!("not events");
        };
        assert_eq!(*got, rows);
    }

    #[test]
    fn random_snmp_interfaces_survive_a_round_trip_and_share_device_and_tags() {
        let mut r = Rng(3);
        for n in [0, 1, 2, 300] {
            let devices = devices(&mut r);
            let rows: Vec<InterfaceRow> = (0..n).map(|_| interface(&mut r, &devices)).collect();
            let Batch::SnmpInterfaces(got) =
                round_trip(&Batch::SnmpInterfaces(Arc::new(rows.clone())))
            else {
                panic!("not interface rows");
            };
            assert_same(&got, &rows, interface_floats);
            let ptrs = |v: &[InterfaceRow]| -> Vec<*const ()> {
                v.iter()
                    .flat_map(|x| {
                        [
                            Arc::as_ptr(&x.device).cast::<()>(),
                            Arc::as_ptr(&x.tags).cast::<()>(),
                        ]
                    })
                    .collect()
            };
            same_sharing(&ptrs(&rows), &ptrs(&got));
        }
    }

    #[test]
    fn random_snmp_devices_survive_a_round_trip_and_share_device_and_tags() {
        let mut r = Rng(4);
        for n in [0, 1, 2, 300] {
            let devices = devices(&mut r);
            let rows: Vec<DeviceRow> = (0..n).map(|_| device(&mut r, &devices)).collect();
            let Batch::SnmpDevices(got) = round_trip(&Batch::SnmpDevices(Arc::new(rows.clone())))
            else {
                panic!("not device rows");
            };
            assert_same(&got, &rows, |d| vec![d.rtt_ms.map(f64::to_bits)]);
            let ptrs = |v: &[DeviceRow]| -> Vec<*const ()> {
                v.iter()
                    .flat_map(|x| {
                        [
                            Arc::as_ptr(&x.device).cast::<()>(),
                            Arc::as_ptr(&x.tags).cast::<()>(),
                        ]
                    })
                    .collect()
            };
            same_sharing(&ptrs(&rows), &ptrs(&got));
        }
    }

    #[test]
    fn random_snmp_custom_rows_survive_a_round_trip_and_share_their_names() {
        let mut r = Rng(5);
        for n in [0, 1, 2, 300] {
            let rows = custom(&mut r, n);
            let Batch::SnmpCustom(got) = round_trip(&Batch::SnmpCustom(Arc::new(rows.clone())))
            else {
                panic!("not custom rows");
            };
            assert_same(&got, &rows, custom_floats);
            let ptrs = |v: &[CustomRow]| -> Vec<*const ()> {
                v.iter()
                    .flat_map(|x| {
                        [&x.table, &x.device]
                            .into_iter()
                            .chain(x.values.iter().map(|(k, _)| k))
                            .map(|s| Arc::as_ptr(s).cast::<()>())
                    })
                    .collect()
            };
            same_sharing(&ptrs(&rows), &ptrs(&got));
        }
    }

    #[test]
    fn random_traps_and_links_survive_a_round_trip() {
        let mut r = Rng(6);
        for n in [0, 1, 2, 300] {
            let traps: Vec<TrapRow> = (0..n).map(|_| trap(&mut r)).collect();
            let Batch::Traps(got) = round_trip(&Batch::Traps(Arc::new(traps.clone()))) else {
                panic!("not traps");
            };
            assert_eq!(*got, traps);
            let links: Vec<LinkRow> = (0..n).map(|_| link(&mut r)).collect();
            let Batch::TopologyLinks(got) =
                round_trip(&Batch::TopologyLinks(Arc::new(links.clone())))
            else {
                panic!("not links");
            };
            assert_eq!(*got, links);
        }
    }

    /// One row of each SNMP stream with every option empty and every string empty, and one
    /// with every option set to an extreme; both must come back exactly, and the empty one is
    /// exactly the MIN_*_LEN a row count is checked against.
    #[test]
    fn empty_and_extreme_snmp_rows_survive_and_the_minimal_rows_take_min_len() {
        let device: Arc<str> = Arc::from("");
        let no_tags: Tags = Tags::from(Vec::new());
        let empty_if = InterfaceRow {
            device: device.clone(),
            tags: no_tags.clone(),
            ..InterfaceRow::default()
        };
        let tags: Tags = Tags::from(vec![
            (Arc::from("tag_site"), Arc::from("")),
            (Arc::from(""), Arc::from("é → \0")),
        ]);
        let nan_payload = f64::from_bits(0x7ff4_0000_dead_beef);
        let full_if = InterfaceRow {
            ts_ms: u64::MAX,
            device: Arc::from("core-1 ✓"),
            tags: tags.clone(),
            if_index: u32::MAX,
            if_name: Some(Arc::from("")),
            if_alias: Some(Arc::from("uplink\n\"quoted\"")),
            if_descr: Some(Arc::from("x".repeat(1000).as_str())),
            if_type: Some(i64::MIN),
            speed_mbps: Some(u64::MAX),
            admin_status: Some(-1),
            oper_status: Some(i64::MAX),
            counter_bits: u8::MAX,
            counters: std::array::from_fn(|i| Some(u64::MAX - i as u64)),
            interval_s: Some(f64::NAN),
            in_bps: Some(-0.0),
            out_bps: Some(f64::INFINITY),
            in_util: Some(nan_payload),
            out_util: Some(f64::MIN_POSITIVE),
            per_second: std::array::from_fn(|i| Some(if i % 2 == 0 { f64::NAN } else { f64::MAX })),
            rate_note: Some(LONGEST_LABEL),
        };
        let batch = vec![empty_if.clone(), full_if];
        let Batch::SnmpInterfaces(got) =
            round_trip(&Batch::SnmpInterfaces(Arc::new(batch.clone())))
        else {
            panic!("not interface rows");
        };
        assert_same(&got, &batch, interface_floats);
        let mut out = Vec::new();
        encode(
            &Batch::SnmpInterfaces(Arc::new(vec![empty_if; 3])),
            &mut out,
        )
        .expect("encode");
        assert_eq!(out.len(), 6 + 12 + 3 * MIN_INTERFACE_LEN);

        let empty_dev = DeviceRow {
            device: device.clone(),
            tags: no_tags.clone(),
            ..DeviceRow::default()
        };
        let full_dev = DeviceRow {
            ts_ms: u64::MAX,
            device: Arc::from("2001:db8::1"),
            tags,
            address: Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xffff,
            ))),
            up: true,
            error: Some(""),
            error_detail: Some(String::new()),
            sys_name: Some("sw\u{0}1".into()),
            sys_descr: Some("d".repeat(5000)),
            sys_object_id: Some("1.3.6.1.4.1.9.1.1".into()),
            sys_location: Some(String::new()),
            sys_contact: Some("noc@example.net".into()),
            sys_uptime_ticks: Some(u32::MAX),
            engine_id: Some("80001f8880".into()),
            engine_boots: Some(u32::MAX),
            poll_ms: u32::MAX,
            rtt_ms: Some(f64::NAN),
            requests: u32::MAX,
            timeouts: u32::MAX,
            varbinds: u32::MAX,
            interfaces: u32::MAX,
        };
        let with_v4 = DeviceRow {
            address: Some(IpAddr::V4(Ipv4Addr::BROADCAST)),
            rtt_ms: Some(0.25),
            ..full_dev.clone()
        };
        let batch = vec![empty_dev.clone(), full_dev, with_v4];
        let Batch::SnmpDevices(got) = round_trip(&Batch::SnmpDevices(Arc::new(batch.clone())))
        else {
            panic!("not device rows");
        };
        assert_same(&got, &batch, |d| vec![d.rtt_ms.map(f64::to_bits)]);
        let mut out = Vec::new();
        encode(&Batch::SnmpDevices(Arc::new(vec![empty_dev; 3])), &mut out).expect("encode");
        assert_eq!(out.len(), 6 + 12 + 3 * MIN_DEVICE_LEN);

        let empty_custom = CustomRow {
            table: device.clone(),
            ts_ms: 0,
            device: device.clone(),
            idx: None,
            values: Vec::new(),
        };
        let full_custom = CustomRow {
            table: Arc::from("snmp_cpu"),
            ts_ms: u64::MAX,
            device: Arc::from(""),
            idx: Some(String::new()),
            values: vec![
                (Arc::from("gauge"), CustomValue::Gauge(nan_payload)),
                (Arc::from(""), CustomValue::Gauge(-0.0)),
                (
                    Arc::from("counter"),
                    CustomValue::Counter {
                        raw: u64::MAX,
                        rate: None,
                    },
                ),
                (
                    Arc::from("counter"),
                    CustomValue::Counter {
                        raw: 0,
                        rate: Some(f64::NEG_INFINITY),
                    },
                ),
                (Arc::from("label"), CustomValue::Label(String::new())),
            ],
        };
        let batch = vec![empty_custom.clone(), full_custom];
        let Batch::SnmpCustom(got) = round_trip(&Batch::SnmpCustom(Arc::new(batch.clone()))) else {
            panic!("not custom rows");
        };
        assert_same(&got, &batch, custom_floats);
        let mut out = Vec::new();
        encode(
            &Batch::SnmpCustom(Arc::new(vec![empty_custom; 3])),
            &mut out,
        )
        .expect("encode");
        assert_eq!(out.len(), 6 + 4 + 4 + 3 * MIN_CUSTOM_LEN);

        let empty_trap = TrapRow::default();
        let full_trap = TrapRow {
            ts_ms: u64::MAX,
            source: Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                u16::MAX,
                0x000f_ffff,
                u32::MAX,
            ))),
            version: "v3",
            pdu: LONGEST_LABEL,
            trap_oid: "1.3.6.1.6.3.1.1.5.3".into(),
            uptime_ticks: Some(u32::MAX),
            security_name: String::new(),
            engine_id: Some(String::new()),
            request_id: Some(i32::MIN),
            enterprise: Some("1.3.6.1.4.1.8072".into()),
            generic_trap: Some(i64::MIN),
            specific_trap: Some(i64::MAX),
            varbinds: "[{\"oid\":\"1.3\",\"type\":\"string\",\"value\":\"\"}]".into(),
        };
        let v4_trap = TrapRow {
            source: Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))),
            request_id: Some(-1),
            ..full_trap.clone()
        };
        let batch = vec![empty_trap.clone(), full_trap, v4_trap];
        let Batch::Traps(got) = round_trip(&Batch::Traps(Arc::new(batch.clone()))) else {
            panic!("not traps");
        };
        assert_eq!(*got, batch);
        let mut out = Vec::new();
        encode(&Batch::Traps(Arc::new(vec![empty_trap; 3])), &mut out).expect("encode");
        assert_eq!(out.len(), 6 + 3 * MIN_TRAP_LEN);

        let empty_link = LinkRow::default();
        let full_link = LinkRow {
            ts_ms: u64::MAX,
            protocol: "cdp",
            state: "changed",
            local_device: "a".into(),
            local_if_index: Some(u32::MAX),
            local_port: String::new(),
            remote_device: "ü".repeat(300),
            remote_known: true,
            remote_port: "Gi0/1".into(),
            remote_port_descr: String::new(),
            remote_chassis_id: "00:11:22:33:44:55".into(),
            remote_sys_name: "\u{10ffff}".into(),
        };
        let batch = vec![empty_link.clone(), full_link];
        let Batch::TopologyLinks(got) = round_trip(&Batch::TopologyLinks(Arc::new(batch.clone())))
        else {
            panic!("not links");
        };
        assert_eq!(*got, batch);
        let mut out = Vec::new();
        encode(
            &Batch::TopologyLinks(Arc::new(vec![empty_link; 3])),
            &mut out,
        )
        .expect("encode");
        assert_eq!(out.len(), 6 + 3 * MIN_LINK_LEN);
    }

    #[test]
    fn labels_too_long_to_read_back_are_refused_when_encoding() {
        let long: &'static str = Box::leak(format!("{LONGEST_LABEL}x").into_boxed_str());
        let link = LinkRow {
            state: long,
            ..LinkRow::default()
        };
        let mut out = vec![9];
        assert_eq!(
            encode(&Batch::TopologyLinks(Arc::new(vec![link])), &mut out),
            Err(CodecError::TooLong(65))
        );
        assert_eq!(out, [9], "nothing appended");
        // And a too long label in the input is refused when decoding.
        let mut bytes = vec![CODEC_VERSION, TAG_TOPOLOGY_LINKS, 1, 0, 0, 0];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65u32.to_le_bytes());
        bytes.extend_from_slice(&[b'x'; 65]);
        bytes.extend_from_slice(&[0; 64]);
        assert!(matches!(
            decode(&bytes),
            Err(CodecError::BadValue {
                what: "label length",
                value: 65,
                at: 14
            })
        ));
    }

    #[test]
    fn labels_are_interned_once_and_only_up_to_the_limit() {
        let labels = Mutex::new(Vec::new());
        let a = intern_label(&labels, 2, "first").expect("room");
        let b = intern_label(&labels, 2, &String::from("first")).expect("known");
        assert!(std::ptr::eq(a, b), "the same copy");
        assert_eq!(intern_label(&labels, 2, ""), Some(""));
        assert_eq!(intern_label(&labels, 2, "third"), None, "full");
        assert_eq!(
            intern_label(&labels, 2, "first"),
            Some("first"),
            "still known"
        );
    }

    #[test]
    fn ipv4_flows_take_88_bytes() {
        let mut out = Vec::new();
        encode(&Batch::flows(vec![FlowRecord::EMPTY; 10]), &mut out).expect("encode");
        assert_eq!(out.len(), 6 + 10 * MIN_FLOW_LEN);
        assert_eq!(MIN_FLOW_LEN, 88);
    }

    #[test]
    fn the_flow_view_has_no_encoding_and_says_so() {
        use nmsd_pipeline::view::{FlowTotals, FlowViewPartial, ViewKeyBy};
        let b = Batch::FlowView(Arc::new(FlowViewPartial {
            key_by: ViewKeyBy::DstAddr,
            worker: 0,
            since_ms: 0,
            until_ms: 0,
            overflow: FlowTotals::default(),
            entries: Vec::new(),
        }));
        let mut out = vec![1, 2, 3];
        assert_eq!(
            encode(&b, &mut out),
            Err(CodecError::Unsupported(StreamKind::FlowView))
        );
        assert_eq!(out, [1, 2, 3], "nothing appended");
    }

    #[test]
    fn every_prefix_and_every_flipped_byte_decodes_to_an_error_or_a_batch_never_a_panic() {
        let mut r = Rng(99);
        let mut encoded = Vec::new();
        let devs = devices(&mut r);
        for b in [
            Batch::flows((0..5).map(|_| flow(&mut r)).collect()),
            Batch::rollups(rollups(&mut r, 5)),
            Batch::events((0..5).map(|_| event(&mut r)).collect()),
            Batch::SnmpInterfaces(Arc::new((0..5).map(|_| interface(&mut r, &devs)).collect())),
            Batch::SnmpDevices(Arc::new((0..5).map(|_| device(&mut r, &devs)).collect())),
            Batch::SnmpCustom(Arc::new(custom(&mut r, 5))),
            Batch::Traps(Arc::new((0..5).map(|_| trap(&mut r)).collect())),
            Batch::TopologyLinks(Arc::new((0..5).map(|_| link(&mut r)).collect())),
        ] {
            let mut out = Vec::new();
            encode(&b, &mut out).expect("encode");
            encoded.push(out);
        }
        for bytes in &encoded {
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer).err(), Some(CodecError::TrailingBytes(1)));
            for at in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[at] = bad[at].wrapping_add(1 + r.below(255) as u8);
                let _ = decode(&bad);
            }
        }
        for _ in 0..20_000 {
            let n = r.below(64) as usize;
            let mut junk: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            if let Some(v) = junk.first_mut() {
                *v = CODEC_VERSION;
            }
            if let Some(t) = junk.get_mut(1) {
                *t = ALL_TAGS[r.below(ALL_TAGS.len() as u64) as usize];
            }
            let _ = decode(&junk);
        }
    }

    #[test]
    fn versions_and_tags_this_build_does_not_know_are_refused() {
        assert_eq!(
            decode(&[2, TAG_FLOWS, 0, 0, 0, 0]).err(),
            Some(CodecError::UnsupportedVersion(2))
        );
        assert_eq!(
            decode(&[CODEC_VERSION, 77, 0, 0, 0, 0]).err(),
            Some(CodecError::UnknownStream(77))
        );
        // A row count the input cannot hold is refused before allocating, for every stream
        // (those with a table after the count too: here an empty one).
        for tag in ALL_TAGS {
            let mut bytes = vec![CODEC_VERSION, tag, 0xff, 0xff, 0xff, 0xff];
            if [
                TAG_ROLLUPS,
                TAG_SNMP_INTERFACES,
                TAG_SNMP_DEVICES,
                TAG_SNMP_CUSTOM,
            ]
            .contains(&tag)
            {
                bytes.extend_from_slice(&[0; 4]);
            }
            bytes.extend_from_slice(&[0; 100]);
            assert!(
                matches!(
                    decode(&bytes),
                    Err(CodecError::BadValue {
                        what: "count",
                        at: 2,
                        ..
                    })
                ),
                "tag {tag}"
            );
        }
    }
}
