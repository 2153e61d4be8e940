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
            ][r.below(3) as usize],
            source: r.next() as u8,
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
    fn ipv4_flows_take_88_bytes() {
        let mut out = Vec::new();
        encode(&Batch::flows(vec![FlowRecord::EMPTY; 10]), &mut out).expect("encode");
        assert_eq!(out.len(), 6 + 10 * MIN_FLOW_LEN);
        assert_eq!(MIN_FLOW_LEN, 88);
    }

    #[test]
    fn streams_without_an_encoding_say_so() {
        let b = Batch::SnmpDevices(Arc::new(Vec::new()));
        let mut out = vec![1, 2, 3];
        assert_eq!(
            encode(&b, &mut out),
            Err(CodecError::Unsupported(StreamKind::SnmpDevices))
        );
        assert_eq!(out, [1, 2, 3], "nothing appended");
    }

    #[test]
    fn every_prefix_and_every_flipped_byte_decodes_to_an_error_or_a_batch_never_a_panic() {
        let mut r = Rng(99);
        let mut encoded = Vec::new();
        for b in [
            Batch::flows((0..5).map(|_| flow(&mut r)).collect()),
            Batch::rollups(rollups(&mut r, 5)),
            Batch::events((0..5).map(|_| event(&mut r)).collect()),
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
                *t = [TAG_FLOWS, TAG_ROLLUPS, TAG_EVENTS][r.below(3) as usize];
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
        // A row count the input cannot hold is refused before allocating.
        assert!(matches!(
            decode(&[CODEC_VERSION, TAG_FLOWS, 0xff, 0xff, 0xff, 0xff]),
            Err(CodecError::BadValue { what: "count", .. })
        ));
    }
}
