//! Building export datagrams: the inverse of the decoder.
//!
//! Tests build packets with it, benches build realistic traffic with it, the fuzz corpus is
//! seeded from it, and `nmsd lab` will use it to simulate exporters. It writes what a record
//! holds into whatever fields a template lists, so `decode(encode(records)) == records` for the
//! fields the template carries.

use std::net::IpAddr;

use nmsd_parsers::ie;
use nmsd_parsers::{Direction, FieldSpec, FlowRecord, TemplateDef, TemplateKind};

/// Shorthand for an IANA field.
pub const fn field(id: u16, len: u16) -> FieldSpec {
    FieldSpec {
        id,
        len,
        enterprise: 0,
    }
}

/// The IPv4 template a typical software exporter sends (softflowd-like, v9 uptime times).
pub fn ipv4_template(id: u16) -> TemplateDef {
    TemplateDef {
        id,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::FLOW_END_SYS_UP_TIME, 4),
            field(ie::FLOW_START_SYS_UP_TIME, 4),
            field(ie::OCTET_DELTA_COUNT, 4),
            field(ie::PACKET_DELTA_COUNT, 4),
            field(ie::INGRESS_INTERFACE, 4),
            field(ie::EGRESS_INTERFACE, 4),
            field(ie::SOURCE_TRANSPORT_PORT, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::TCP_CONTROL_BITS, 1),
            field(ie::IP_VERSION, 1),
            field(ie::IP_CLASS_OF_SERVICE, 1),
        ],
    }
}

/// An IPv6 template with absolute millisecond times (IPFIX style).
pub fn ipv6_template(id: u16) -> TemplateDef {
    TemplateDef {
        id,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV6_ADDRESS, 16),
            field(ie::DESTINATION_IPV6_ADDRESS, 16),
            field(ie::FLOW_START_MILLISECONDS, 8),
            field(ie::FLOW_END_MILLISECONDS, 8),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::PACKET_DELTA_COUNT, 8),
            field(ie::INGRESS_INTERFACE, 4),
            field(ie::EGRESS_INTERFACE, 4),
            field(ie::SOURCE_TRANSPORT_PORT, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::TCP_CONTROL_BITS, 1),
            field(ie::IP_CLASS_OF_SERVICE, 1),
            field(ie::FLOW_DIRECTION, 1),
            field(ie::VLAN_ID, 2),
            field(ie::BGP_SOURCE_AS_NUMBER, 4),
            field(ie::BGP_DESTINATION_AS_NUMBER, 4),
            field(ie::IP_NEXT_HOP_IPV6_ADDRESS, 16),
        ],
    }
}

/// Which templated format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    V9,
    Ipfix,
}

/// Builds one NetFlow v9 or IPFIX message, set by set.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    format: Format,
    buf: Vec<u8>,
    records: u16,
    export_ms: u64,
    sys_uptime_ms: u32,
}

impl MessageBuilder {
    /// A v9 message. `export_secs` is the header's Unix seconds, `sys_uptime_ms` its uptime.
    pub fn v9(sys_uptime_ms: u32, export_secs: u32, sequence: u32, source_id: u32) -> Self {
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&9u16.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&sys_uptime_ms.to_be_bytes());
        buf.extend_from_slice(&export_secs.to_be_bytes());
        buf.extend_from_slice(&sequence.to_be_bytes());
        buf.extend_from_slice(&source_id.to_be_bytes());
        MessageBuilder {
            format: Format::V9,
            buf,
            records: 0,
            export_ms: export_secs as u64 * 1000,
            sys_uptime_ms,
        }
    }

    /// An IPFIX message. Uptime-relative fields are written relative to a system init time of
    /// `export_secs - 1000 s`; announce it with an options data record carrying `systemInitTimeMilliseconds` (160) if used.
    pub fn ipfix(export_secs: u32, sequence: u32, observation_domain: u32) -> Self {
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&10u16.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&export_secs.to_be_bytes());
        buf.extend_from_slice(&sequence.to_be_bytes());
        buf.extend_from_slice(&observation_domain.to_be_bytes());
        MessageBuilder {
            format: Format::Ipfix,
            buf,
            records: 0,
            export_ms: export_secs as u64 * 1000,
            sys_uptime_ms: 1_000_000,
        }
    }

    /// Unix ms that uptime 0 corresponds to.
    pub fn boot_ms(&self) -> u64 {
        self.export_ms.saturating_sub(self.sys_uptime_ms as u64)
    }

    fn set_header(&mut self, id: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&id.to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        at
    }

    fn close_set(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn push_field_spec(&mut self, f: &FieldSpec) {
        if self.format == Format::Ipfix && f.enterprise != 0 {
            self.buf.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
            self.buf.extend_from_slice(&f.len.to_be_bytes());
            self.buf.extend_from_slice(&f.enterprise.to_be_bytes());
        } else {
            self.buf.extend_from_slice(&f.id.to_be_bytes());
            self.buf.extend_from_slice(&f.len.to_be_bytes());
        }
    }

    /// Add a template set holding `def` (data or options, as its kind says).
    pub fn template(&mut self, def: &TemplateDef) -> &mut Self {
        let (set_id, options) = match (self.format, def.kind) {
            (Format::V9, TemplateKind::Data) => (0, None),
            (Format::V9, TemplateKind::Options { scope_fields }) => (1, Some(scope_fields)),
            (Format::Ipfix, TemplateKind::Data) => (2, None),
            (Format::Ipfix, TemplateKind::Options { scope_fields }) => (3, Some(scope_fields)),
        };
        let at = self.set_header(set_id);
        self.buf.extend_from_slice(&def.id.to_be_bytes());
        match (self.format, options) {
            (Format::V9, Some(scope)) => {
                let scope = scope as usize;
                self.buf
                    .extend_from_slice(&((scope * 4) as u16).to_be_bytes());
                self.buf
                    .extend_from_slice(&(((def.fields.len() - scope) * 4) as u16).to_be_bytes());
            }
            (Format::Ipfix, Some(scope)) => {
                self.buf
                    .extend_from_slice(&(def.fields.len() as u16).to_be_bytes());
                self.buf.extend_from_slice(&scope.to_be_bytes());
            }
            _ => self
                .buf
                .extend_from_slice(&(def.fields.len() as u16).to_be_bytes()),
        }
        for f in &def.fields {
            self.push_field_spec(f);
        }
        // v9 options template sets are padded to 4 bytes.
        while self.format == Format::V9 && options.is_some() && !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.close_set(at);
        self.records += 1;
        self
    }

    /// Add a data set of `records` encoded with `def`.
    pub fn data(&mut self, def: &TemplateDef, records: &[FlowRecord]) -> &mut Self {
        let at = self.set_header(def.id);
        for r in records {
            for f in &def.fields {
                self.push_value(f, r);
            }
            self.records += 1;
        }
        self.close_set(at);
        self
    }

    /// Add an options data set: one row of raw values per record, one value per field.
    pub fn options_data(&mut self, def: &TemplateDef, rows: &[&[u64]]) -> &mut Self {
        let at = self.set_header(def.id);
        for row in rows {
            for (f, v) in def.fields.iter().zip(row.iter()) {
                push_uint(&mut self.buf, *v, f.len as usize);
            }
            self.records += 1;
        }
        self.close_set(at);
        self
    }

    /// Add a set with arbitrary id and body (for malformed-input tests).
    pub fn raw_set(&mut self, set_id: u16, body: &[u8]) -> &mut Self {
        let at = self.set_header(set_id);
        self.buf.extend_from_slice(body);
        self.close_set(at);
        self
    }

    /// The finished datagram, with count (v9) or length (IPFIX) filled in.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        match self.format {
            Format::V9 => out[2..4].copy_from_slice(&self.records.to_be_bytes()),
            Format::Ipfix => {
                let len = out.len() as u16;
                out[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        out
    }

    fn uptime_of(&self, unix_ms: u64) -> u64 {
        (unix_ms.saturating_sub(self.boot_ms())) & 0xFFFF_FFFF
    }

    fn push_value(&mut self, f: &FieldSpec, r: &FlowRecord) {
        let len = f.len as usize;
        if f.len == ie::VARIABLE_LENGTH {
            // An opaque 5-byte value (a string the decoder skips).
            self.buf.push(5);
            self.buf.extend_from_slice(b"nmsd!");
            return;
        }
        if f.enterprise != 0 {
            self.buf.extend(std::iter::repeat_n(0xEE, len));
            return;
        }
        let ntp = |ms: u64| ((ms / 1000 + 2_208_988_800) << 32) | (((ms % 1000) << 32) / 1000 + 1);
        let v: Option<u64> = match f.id {
            ie::OCTET_DELTA_COUNT | ie::OCTET_TOTAL_COUNT => Some(r.bytes),
            ie::PACKET_DELTA_COUNT | ie::PACKET_TOTAL_COUNT => Some(r.packets),
            ie::PROTOCOL_IDENTIFIER => Some(r.protocol as u64),
            ie::IP_CLASS_OF_SERVICE => Some(r.tos as u64),
            ie::IP_DIFF_SERV_CODE_POINT => Some((r.tos >> 2) as u64),
            ie::TCP_CONTROL_BITS => Some(r.tcp_flags as u64),
            ie::SOURCE_TRANSPORT_PORT => Some(r.src_port as u64),
            ie::DESTINATION_TRANSPORT_PORT => Some(r.dst_port as u64),
            ie::INGRESS_INTERFACE => Some(r.in_if as u64),
            ie::EGRESS_INTERFACE => Some(r.out_if as u64),
            ie::BGP_SOURCE_AS_NUMBER => Some(r.src_as as u64),
            ie::BGP_DESTINATION_AS_NUMBER => Some(r.dst_as as u64),
            ie::VLAN_ID | ie::DOT1Q_VLAN_ID => Some(r.vlan as u64),
            ie::IP_VERSION => Some(if r.is_ipv6() { 6 } else { 4 }),
            ie::FLOW_DIRECTION => Some(match r.direction {
                Direction::Ingress => 0,
                Direction::Egress => 1,
                Direction::Unknown => 0xFF,
            }),
            ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6 => Some(r.dst_port as u64),
            ie::ICMP_TYPE_IPV4 | ie::ICMP_TYPE_IPV6 => Some((r.dst_port >> 8) as u64),
            ie::ICMP_CODE_IPV4 | ie::ICMP_CODE_IPV6 => Some((r.dst_port & 0xFF) as u64),
            ie::FLOW_START_SYS_UP_TIME => Some(self.uptime_of(r.start_ms)),
            ie::FLOW_END_SYS_UP_TIME => Some(self.uptime_of(r.end_ms)),
            ie::FLOW_START_SECONDS => Some(r.start_ms / 1000),
            ie::FLOW_END_SECONDS => Some(r.end_ms / 1000),
            ie::FLOW_START_MILLISECONDS => Some(r.start_ms),
            ie::FLOW_END_MILLISECONDS => Some(r.end_ms),
            ie::FLOW_START_MICROSECONDS | ie::FLOW_START_NANOSECONDS => Some(ntp(r.start_ms)),
            ie::FLOW_END_MICROSECONDS | ie::FLOW_END_NANOSECONDS => Some(ntp(r.end_ms)),
            ie::FLOW_START_DELTA_MICROSECONDS => {
                Some(self.export_ms.saturating_sub(r.start_ms) * 1000)
            }
            ie::FLOW_END_DELTA_MICROSECONDS => Some(self.export_ms.saturating_sub(r.end_ms) * 1000),
            _ => None,
        };
        let addr = match f.id {
            ie::SOURCE_IPV4_ADDRESS | ie::SOURCE_IPV6_ADDRESS => Some(r.src_addr),
            ie::DESTINATION_IPV4_ADDRESS | ie::DESTINATION_IPV6_ADDRESS => Some(r.dst_addr),
            ie::IP_NEXT_HOP_IPV4_ADDRESS
            | ie::BGP_NEXT_HOP_IPV4_ADDRESS
            | ie::IP_NEXT_HOP_IPV6_ADDRESS
            | ie::BGP_NEXT_HOP_IPV6_ADDRESS => Some(r.next_hop),
            _ => None,
        };
        match (addr, v) {
            (Some(IpAddr::V4(a)), _) if len == 4 => self.buf.extend_from_slice(&a.octets()),
            (Some(IpAddr::V6(a)), _) if len == 16 => self.buf.extend_from_slice(&a.octets()),
            (Some(_), _) => self.buf.extend(std::iter::repeat_n(0, len)),
            (None, Some(v)) => push_uint(&mut self.buf, v, len),
            (None, None) => self.buf.extend(std::iter::repeat_n(0, len)),
        }
    }
}

/// Append `v` as a big-endian integer of `len` bytes (truncating high bytes).
fn push_uint(buf: &mut Vec<u8>, v: u64, len: usize) {
    for i in (0..len).rev() {
        buf.push(if i < 8 { (v >> (i * 8)) as u8 } else { 0 });
    }
}

/// NetFlow v5 header fields that the encoder takes as input.
#[derive(Clone, Copy, Debug, Default)]
pub struct V5Header {
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub unix_nsecs: u32,
    pub flow_sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    /// Raw header field: 2-bit mode, 14-bit interval.
    pub sampling: u16,
}

/// A NetFlow v5 datagram of up to 30 records (IPv4 only; other records are written as 0.0.0.0).
pub fn v5_datagram(h: &V5Header, records: &[FlowRecord]) -> Vec<u8> {
    let mut b = Vec::with_capacity(24 + 48 * records.len());
    b.extend_from_slice(&5u16.to_be_bytes());
    b.extend_from_slice(&(records.len() as u16).to_be_bytes());
    b.extend_from_slice(&h.sys_uptime_ms.to_be_bytes());
    b.extend_from_slice(&h.unix_secs.to_be_bytes());
    b.extend_from_slice(&h.unix_nsecs.to_be_bytes());
    b.extend_from_slice(&h.flow_sequence.to_be_bytes());
    b.push(h.engine_type);
    b.push(h.engine_id);
    b.extend_from_slice(&h.sampling.to_be_bytes());
    let export_ms = h.unix_secs as u64 * 1000 + h.unix_nsecs as u64 / 1_000_000;
    let boot = export_ms.saturating_sub(h.sys_uptime_ms as u64);
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    };
    for r in records {
        b.extend_from_slice(&v4(r.src_addr));
        b.extend_from_slice(&v4(r.dst_addr));
        b.extend_from_slice(&v4(r.next_hop));
        b.extend_from_slice(&(r.in_if as u16).to_be_bytes());
        b.extend_from_slice(&(r.out_if as u16).to_be_bytes());
        b.extend_from_slice(&(r.packets as u32).to_be_bytes());
        b.extend_from_slice(&(r.bytes as u32).to_be_bytes());
        b.extend_from_slice(&(r.start_ms.saturating_sub(boot) as u32).to_be_bytes());
        b.extend_from_slice(&(r.end_ms.saturating_sub(boot) as u32).to_be_bytes());
        b.extend_from_slice(&r.src_port.to_be_bytes());
        b.extend_from_slice(&r.dst_port.to_be_bytes());
        b.push(0);
        b.push(r.tcp_flags);
        b.push(r.protocol);
        b.push(r.tos);
        b.extend_from_slice(&(r.src_as as u16).to_be_bytes());
        b.extend_from_slice(&(r.dst_as as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
    }
    b
}

/// Deterministic sample records (no RNG dependency): varied addresses, ports and counters.
pub fn sample_records(n: usize, ipv6: bool, base_ms: u64) -> Vec<FlowRecord> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..n)
        .map(|i| {
            let r = next();
            let icmp = if ipv6 { 58 } else { 1 };
            let proto = [6u8, 17, 6, 17, icmp][i % 5];
            let (src, dst, nh) = if ipv6 {
                let mut s = [0u8; 16];
                s[..2].copy_from_slice(&[0x20, 0x01]);
                s[8..].copy_from_slice(&r.to_be_bytes());
                let mut d = s;
                d[15] ^= 0x55;
                let mut h = s;
                h[15] = 1;
                (IpAddr::from(s), IpAddr::from(d), IpAddr::from(h))
            } else {
                let b = r.to_be_bytes();
                (
                    IpAddr::from([10, b[0], b[1], b[2]]),
                    IpAddr::from([192, 168, b[3], b[4]]),
                    IpAddr::from([10, 0, 0, 1]),
                )
            };
            let start = base_ms + (r % 50_000);
            FlowRecord {
                start_ms: start,
                end_ms: start + (r >> 20) % 10_000,
                bytes: 40 + (r >> 8) % 1_000_000,
                packets: 1 + (r >> 16) % 1000,
                src_addr: src,
                dst_addr: dst,
                next_hop: nh,
                in_if: (r % 48) as u32 + 1,
                out_if: (r >> 3) as u32 % 48 + 1,
                src_port: if proto == icmp {
                    0
                } else {
                    (r >> 24) as u16 | 1024
                },
                dst_port: if proto == icmp {
                    0x0800
                } else {
                    [80u16, 443, 53, 22][i % 4]
                },
                protocol: proto,
                tcp_flags: if proto == 6 { 0x1B } else { 0 },
                tos: ((r >> 40) as u8) & 0xFC,
                ..FlowRecord::EMPTY
            }
        })
        .collect()
}
