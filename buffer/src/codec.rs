//! Typed stream batches to bytes and back.
//!
//! ```text
//! batch    u8 codec version (1), u8 stream tag, u32 LE row count, rows
//! flows    per row: u64 start_ms, end_ms, bytes, packets; ip exporter, src, dst, next_hop;
//!          u32 observation_domain, in_if, out_if, src_as, dst_as, sampling_interval;
//!          u16 src_port, dst_port, vlan; u8 protocol, tcp_flags, tos, direction, version, source
//! rollups  u32 interface count, per interface: opt-str name, opt-str alias, opt-u64 speed;
//!          per row: u64 window_start_ms; ip exporter; u8 source; ip src, dst; u8 protocol;
//!          u16 dst_port; u32 in_if, out_if; u64 bytes, packets, flows;
//!          u32 in_if_info, out_if_info (1-based index into the interfaces, 0 for none)
//! events   per row: u64 ts_ms; str kind; u8 severity; str subject, component;
//!          u32 label count, (str, str)*; u32 field count, (str, u8 tag, value)*; str message
//! ip       u8 4 + 4 bytes, or u8 6 + 16 bytes
//! str      u32 LE length + UTF-8;  opt-x: u8 0, or u8 1 + x
//! ```
//!
//! Fixed little-endian layouts written field by field: no serde, no padding, no dependence on
//! struct layout. Addresses are tagged so IPv4 flows take 12 bytes less per address than a fixed
//! 16-byte form. Roll-up rows carry interface names by index into a per-batch table, which keeps
//! the sharing the rows had in memory (one `Arc<IfInfo>` per interface, not per row).
//!
//! SNMP rows, traps, topology links and the internal flow view return
//! [`CodecError::Unsupported`] for now: they are small streams; they get a layout when the
//! buffer is wired into the sinks that store them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::event::{Event, FieldValue, Severity};
use nmsd_pipeline::records::{Direction, FlowRecord, FlowVersion, RollupRow};
use nmsd_pipeline::{Batch, StreamKind};

/// The batch encoding this build writes.
pub const CODEC_VERSION: u8 = 1;

const TAG_FLOWS: u8 = 1;
const TAG_ROLLUPS: u8 = 2;
const TAG_EVENTS: u8 = 8;

/// Bytes of the smallest encoded flow / roll-up row / event, to bound a row count read from
/// the input before allocating for it.
const MIN_FLOW_LEN: usize = 32 + 4 * 5 + 24 + 6 + 6;
const MIN_ROLLUP_LEN: usize = 8 + 5 + 1 + 10 + 1 + 2 + 8 + 24 + 8;
const MIN_EVENT_LEN: usize = 8 + 4 + 1 + 4 + 4 + 4 + 4 + 4;

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
        other => Err(CodecError::Unsupported(other.kind())),
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
        f.version = match self.u8()? {
            5 => FlowVersion::NetflowV5,
            9 => FlowVersion::NetflowV9,
            10 => FlowVersion::Ipfix,
            v => return Err(self.bad("flow version", v.into())),
        };
        f.source = self.u8()?;
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
