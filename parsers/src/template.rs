//! Templates and their compiled form.
//!
//! A NetFlow v9 / IPFIX template lists (element, length) pairs. Decoding a record by walking that
//! list and looking up each element would cost a table lookup per field per record. Instead a
//! template is *compiled* once, when it arrives, into a short list of field ops: the offset of
//! each field nmsd uses, its length and the [`FlowRecord`] slot it fills. Fields nmsd does not
//! use produce no op at all, and where an exporter sends two elements for one slot (say
//! `octetDeltaCount` and `octetTotalCount`) only the preferred one is kept. A set of
//! fixed-length records is then decoded op by op over all its records (`fill_column`), so each
//! op is dispatched once per set rather than once per record (decision 0006).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::DecodeError;
use crate::ie;
use crate::record::FlowRecord;

/// One field of a template as it came over the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Information element id, enterprise bit stripped.
    pub id: u16,
    /// Length in bytes; [`ie::VARIABLE_LENGTH`] for variable-length IPFIX fields.
    pub len: u16,
    /// Private enterprise number; 0 for IANA elements.
    pub enterprise: u32,
}

/// Data template or options template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    Data,
    /// The first `scope_fields` fields are scope fields.
    Options {
        scope_fields: u16,
    },
}

/// A template as received: what is persisted across restarts and recompiled on load.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateDef {
    pub id: u16,
    pub kind: TemplateKind,
    pub fields: Vec<FieldSpec>,
}

/// Upper bound on fields per template. Real exporters send well under 100; the bound keeps a
/// hostile template from making every record decode walk thousands of entries.
pub const MAX_TEMPLATE_FIELDS: usize = 512;

/// Where a field's value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Bytes,
    Packets,
    Protocol,
    Tos,
    Dscp,
    TcpFlags,
    SrcPort,
    DstPort,
    Src4,
    Dst4,
    Src6,
    Dst6,
    NextHop4,
    NextHop6,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    Vlan,
    Direction,
    IcmpTypeCode,
    IcmpType,
    IcmpCode,
    SamplerId,
    Start,
    End,
    // Options data.
    SamplingInterval,
    PacketInterval,
    PacketSpace,
    SystemInit,
}

impl Target {
    /// Whether the field is final as read and goes straight into its [`FlowRecord`] slot;
    /// the others need the header, the domain or other fields first (see [`Scratch`]).
    pub(crate) fn fills_record(self) -> bool {
        use Target::*;
        !matches!(
            self,
            Dscp | IcmpTypeCode
                | IcmpType
                | IcmpCode
                | SamplerId
                | Start
                | End
                | SamplingInterval
                | PacketInterval
                | PacketSpace
                | SystemInit
        )
    }
}

/// How a template encodes flow start/end times. Chosen once per template, best source first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum TimeSource {
    /// No time field: the record gets the export time.
    #[default]
    None,
    /// Milliseconds of exporter uptime (v9 FIRST/LAST_SWITCHED, IPFIX flow*SysUpTime).
    Uptime,
    /// Microseconds before the export time (IPFIX flow*DeltaMicroseconds).
    DeltaMicros,
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Millis,
    /// NTP 64-bit timestamp, microsecond precision.
    NtpMicros,
    /// NTP 64-bit timestamp, nanosecond precision.
    NtpNanos,
}

/// Map an IANA element to the slot it fills, a preference rank (higher wins when a template has
/// several elements for one slot) and the lengths it may have.
fn classify(id: u16, len: u16, options: bool) -> Option<(Target, u8)> {
    use Target::*;
    let int = (1..=8).contains(&len);
    let t = match id {
        ie::OCTET_DELTA_COUNT if int => (Bytes, 2),
        ie::OCTET_TOTAL_COUNT if int => (Bytes, 1),
        ie::PACKET_DELTA_COUNT if int => (Packets, 2),
        ie::PACKET_TOTAL_COUNT if int => (Packets, 1),
        ie::PROTOCOL_IDENTIFIER if len == 1 => (Protocol, 1),
        ie::IP_CLASS_OF_SERVICE if len == 1 => (Tos, 2),
        ie::IP_DIFF_SERV_CODE_POINT if len == 1 => (Dscp, 1),
        ie::TCP_CONTROL_BITS if len == 1 || len == 2 => (TcpFlags, 1),
        ie::SOURCE_TRANSPORT_PORT if len == 2 => (SrcPort, 1),
        ie::DESTINATION_TRANSPORT_PORT if len == 2 => (DstPort, 1),
        ie::SOURCE_IPV4_ADDRESS if len == 4 => (Src4, 1),
        ie::DESTINATION_IPV4_ADDRESS if len == 4 => (Dst4, 1),
        ie::SOURCE_IPV6_ADDRESS if len == 16 => (Src6, 1),
        ie::DESTINATION_IPV6_ADDRESS if len == 16 => (Dst6, 1),
        ie::IP_NEXT_HOP_IPV4_ADDRESS if len == 4 => (NextHop4, 2),
        ie::BGP_NEXT_HOP_IPV4_ADDRESS if len == 4 => (NextHop4, 1),
        ie::IP_NEXT_HOP_IPV6_ADDRESS if len == 16 => (NextHop6, 2),
        ie::BGP_NEXT_HOP_IPV6_ADDRESS if len == 16 => (NextHop6, 1),
        ie::INGRESS_INTERFACE if int => (InIf, 1),
        ie::EGRESS_INTERFACE if int => (OutIf, 1),
        ie::BGP_SOURCE_AS_NUMBER if int => (SrcAs, 1),
        ie::BGP_DESTINATION_AS_NUMBER if int => (DstAs, 1),
        ie::VLAN_ID if len == 2 => (Vlan, 2),
        ie::DOT1Q_VLAN_ID if len == 2 => (Vlan, 1),
        ie::FLOW_DIRECTION if len == 1 => (Direction, 1),
        ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6 if len == 2 => (IcmpTypeCode, 1),
        ie::ICMP_TYPE_IPV4 | ie::ICMP_TYPE_IPV6 if len == 1 => (IcmpType, 1),
        ie::ICMP_CODE_IPV4 | ie::ICMP_CODE_IPV6 if len == 1 => (IcmpCode, 1),
        ie::SAMPLER_ID | ie::SELECTOR_ID if int => (SamplerId, 1),
        ie::SAMPLING_INTERVAL if int && options => (SamplingInterval, 2),
        ie::SAMPLER_RANDOM_INTERVAL if int && options => (SamplingInterval, 1),
        ie::SAMPLING_PACKET_INTERVAL if int && options => (PacketInterval, 1),
        ie::SAMPLING_PACKET_SPACE if int && options => (PacketSpace, 1),
        ie::SYSTEM_INIT_TIME_MILLISECONDS if len == 8 && options => (SystemInit, 1),
        _ => return None,
    };
    Some(t)
}

/// Time elements: (is_start, source).
fn classify_time(id: u16, len: u16) -> Option<(bool, TimeSource)> {
    let t = match (id, len) {
        (ie::FLOW_START_SYS_UP_TIME, 4) => (true, TimeSource::Uptime),
        (ie::FLOW_END_SYS_UP_TIME, 4) => (false, TimeSource::Uptime),
        (ie::FLOW_START_DELTA_MICROSECONDS, 4) => (true, TimeSource::DeltaMicros),
        (ie::FLOW_END_DELTA_MICROSECONDS, 4) => (false, TimeSource::DeltaMicros),
        (ie::FLOW_START_SECONDS, 4) => (true, TimeSource::Seconds),
        (ie::FLOW_END_SECONDS, 4) => (false, TimeSource::Seconds),
        (ie::FLOW_START_MILLISECONDS, 8) => (true, TimeSource::Millis),
        (ie::FLOW_END_MILLISECONDS, 8) => (false, TimeSource::Millis),
        (ie::FLOW_START_MICROSECONDS, 8) => (true, TimeSource::NtpMicros),
        (ie::FLOW_END_MICROSECONDS, 8) => (false, TimeSource::NtpMicros),
        (ie::FLOW_START_NANOSECONDS, 8) => (true, TimeSource::NtpNanos),
        (ie::FLOW_END_NANOSECONDS, 8) => (false, TimeSource::NtpNanos),
        _ => return None,
    };
    Some(t)
}

/// One field to copy out of a fixed-layout record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FieldOp {
    pub offset: u16,
    pub len: u16,
    pub target: Target,
}

/// A template ready to decode records.
#[derive(Clone, Debug)]
pub(crate) struct CompiledTemplate {
    pub def: TemplateDef,
    /// For fixed-length templates: the ops, by offset, those that fill a record slot directly
    /// first, then those that go through [`Scratch`] (see [`CompiledTemplate::split_ops`]).
    /// Empty for variable-length templates.
    pub ops: Vec<FieldOp>,
    /// For variable-length templates: every field in order, `None` where nmsd skips it.
    pub walk: Vec<(u16, Option<Target>)>,
    /// `Some(len)` when every field has a fixed length.
    pub fixed_len: Option<usize>,
    /// Smallest possible record: fixed fields plus one length byte per variable field.
    pub min_len: usize,
    pub start_source: TimeSource,
    pub end_source: TimeSource,
    /// Unix ms when this template was last received (for expiry).
    pub refreshed_ms: u64,
}

impl CompiledTemplate {
    pub fn compile(def: TemplateDef, now_ms: u64) -> Result<Self, DecodeError> {
        let bad = |reason| DecodeError::BadTemplate {
            template_id: def.id,
            reason,
        };
        if def.id < 256 {
            return Err(bad("template ids below 256 are reserved"));
        }
        if def.fields.is_empty() {
            return Err(bad("template has no fields"));
        }
        if def.fields.len() > MAX_TEMPLATE_FIELDS {
            return Err(bad("template has more than 512 fields"));
        }
        let options = matches!(def.kind, TemplateKind::Options { .. });
        let scope_fields = match def.kind {
            TemplateKind::Options { scope_fields } => scope_fields as usize,
            TemplateKind::Data => 0,
        };

        // First pass: pick the best element for each slot and the best time sources.
        let mut best: [Option<(u8, usize, Target)>; 32] = [None; 32];
        let (mut start_source, mut end_source) = (TimeSource::None, TimeSource::None);
        let mut start_idx = None;
        let mut end_idx = None;
        for (i, f) in def.fields.iter().enumerate() {
            // Scope fields say what an options record is about. v9 scope types (System,
            // Interface, ...) are not information elements, so scope fields are skipped, but for
            // a sampler / selector id: RFC 5476 makes selectorId the scope of a Selector Report
            // Interpretation, and neither 48 nor 302 is a v9 scope type. systemInitTimeMilliseconds
            // is kept too: it dates the exporting process whatever role the template gives it
            // (netflow_parser reads it from scope fields as well), and 160 is no v9 scope type.
            let usable_scope = matches!(
                f.id,
                ie::SAMPLER_ID | ie::SELECTOR_ID | ie::SYSTEM_INIT_TIME_MILLISECONDS
            );
            if f.enterprise != 0
                || f.len == ie::VARIABLE_LENGTH
                || (i < scope_fields && !usable_scope)
            {
                continue;
            }
            if let Some((is_start, src)) = classify_time(f.id, f.len) {
                if !options {
                    if is_start && src > start_source {
                        start_source = src;
                        start_idx = Some(i);
                    } else if !is_start && src > end_source {
                        end_source = src;
                        end_idx = Some(i);
                    }
                }
                continue;
            }
            if let Some((target, rank)) = classify(f.id, f.len, options) {
                let slot = &mut best[target as usize];
                if slot.is_none_or(|(r, _, _)| rank > r) {
                    *slot = Some((rank, i, target));
                }
            }
        }
        let mut chosen: Vec<Option<Target>> = vec![None; def.fields.len()];
        for (_, i, target) in best.iter().flatten() {
            chosen[*i] = Some(*target);
        }
        if let Some(i) = start_idx {
            chosen[i] = Some(Target::Start);
        }
        if let Some(i) = end_idx {
            chosen[i] = Some(Target::End);
        }

        let mut ops = Vec::new();
        let mut walk = Vec::new();
        let mut offset = 0usize;
        let mut min_len = 0usize;
        let mut variable = false;
        for (f, target) in def.fields.iter().zip(&chosen) {
            if f.len == ie::VARIABLE_LENGTH {
                variable = true;
                min_len += 1;
            } else {
                min_len += f.len as usize;
                if let Some(target) = target {
                    ops.push(FieldOp {
                        offset: offset as u16,
                        len: f.len,
                        target: *target,
                    });
                }
                offset += f.len as usize;
            }
            walk.push((f.len, *target));
        }
        if min_len == 0 {
            return Err(bad("records would be zero bytes long"));
        }
        if min_len > u16::MAX as usize {
            return Err(bad("records would exceed 65535 bytes"));
        }
        let fixed_len = if variable {
            ops.clear();
            None
        } else {
            walk.clear();
            Some(min_len)
        };
        // Stable: each group stays in offset order.
        ops.sort_by_key(|op| !op.target.fills_record());
        Ok(CompiledTemplate {
            def,
            ops,
            walk,
            fixed_len,
            min_len,
            start_source,
            end_source,
            refreshed_ms: now_ms,
        })
    }

    /// The ops that fill a record slot directly, and those that go through [`Scratch`].
    pub fn split_ops(&self) -> (&[FieldOp], &[FieldOp]) {
        let n = self.ops.partition_point(|op| op.target.fills_record());
        self.ops.split_at(n)
    }

    pub fn is_options(&self) -> bool {
        matches!(self.def.kind, TemplateKind::Options { .. })
    }
}

/// Values of a record that need the header or domain state before they become final.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scratch {
    pub start: u64,
    pub end: u64,
    pub sampler_id: Option<u64>,
    pub icmp_type_code: Option<u16>,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub has_icmp_parts: bool,
    pub dscp: Option<u8>,
    // Options data.
    pub sampling_interval: Option<u64>,
    pub packet_interval: Option<u64>,
    pub packet_space: Option<u64>,
    pub system_init_ms: Option<u64>,
}

/// Big-endian unsigned integer of 1 to 8 bytes (RFC 7011 reduced-size encoding included).
#[inline(always)]
pub(crate) fn be_uint(f: &[u8]) -> u64 {
    match *f {
        [a] => a as u64,
        [a, b] => u16::from_be_bytes([a, b]) as u64,
        [a, b, c, d] => u32::from_be_bytes([a, b, c, d]) as u64,
        [a, b, c, d, e, g, h, i] => u64::from_be_bytes([a, b, c, d, e, g, h, i]),
        _ => f.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64),
    }
}

#[inline(always)]
fn v4(f: &[u8]) -> IpAddr {
    match *f {
        [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

#[inline(always)]
fn v6(f: &[u8]) -> IpAddr {
    match <[u8; 16]>::try_from(f) {
        Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
        Err(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Copy one field into the record or scratch. Lengths were checked at compile time.
#[inline(always)]
pub(crate) fn apply(target: Target, f: &[u8], rec: &mut FlowRecord, s: &mut Scratch) {
    use Target::*;
    match target {
        Bytes => rec.bytes = be_uint(f),
        Packets => rec.packets = be_uint(f),
        Protocol => rec.protocol = f.first().copied().unwrap_or(0),
        Tos => rec.tos = f.first().copied().unwrap_or(0),
        Dscp => s.dscp = f.first().copied(),
        // Two-byte tcpControlBits carry header flags in the high bits; the classic flags are
        // the low byte.
        TcpFlags => rec.tcp_flags = be_uint(f) as u8,
        SrcPort => rec.src_port = be_uint(f) as u16,
        DstPort => rec.dst_port = be_uint(f) as u16,
        Src4 => rec.src_addr = v4(f),
        Dst4 => rec.dst_addr = v4(f),
        Src6 => rec.src_addr = v6(f),
        Dst6 => rec.dst_addr = v6(f),
        NextHop4 => rec.next_hop = v4(f),
        NextHop6 => rec.next_hop = v6(f),
        InIf => rec.in_if = be_uint(f) as u32,
        OutIf => rec.out_if = be_uint(f) as u32,
        SrcAs => rec.src_as = be_uint(f) as u32,
        DstAs => rec.dst_as = be_uint(f) as u32,
        Vlan => rec.vlan = be_uint(f) as u16 & 0x0FFF,
        Direction => {
            rec.direction = match f.first() {
                Some(0) => crate::record::Direction::Ingress,
                Some(1) => crate::record::Direction::Egress,
                _ => crate::record::Direction::Unknown,
            }
        }
        IcmpTypeCode => s.icmp_type_code = Some(be_uint(f) as u16),
        IcmpType => {
            s.icmp_type = f.first().copied().unwrap_or(0);
            s.has_icmp_parts = true;
        }
        IcmpCode => {
            s.icmp_code = f.first().copied().unwrap_or(0);
            s.has_icmp_parts = true;
        }
        SamplerId => s.sampler_id = Some(be_uint(f)),
        Start => s.start = be_uint(f),
        End => s.end = be_uint(f),
        SamplingInterval => s.sampling_interval = Some(be_uint(f)),
        PacketInterval => s.packet_interval = Some(be_uint(f)),
        PacketSpace => s.packet_space = Some(be_uint(f)),
        SystemInit => s.system_init_ms = Some(be_uint(f)),
    }
}

/// Fill one record slot (`op.target.fills_record()`) in every record of a fixed-length set.
///
/// The op is dispatched once per set, and the loop over the records is straight-line code for
/// the common (slot, width) pairs. Dispatching per field per record ([`apply`]) was the
/// decoder's largest cost: an indirect jump and a width match for each of ~13 fields.
pub(crate) fn fill_column(op: &FieldOp, recs: &mut [FlowRecord], body: &[u8], len: usize) {
    use Target::*;
    let at = op.offset as usize;
    match (op.target, op.len) {
        (Bytes, 4) => each::<4>(recs, body, len, at, |r, f| {
            r.bytes = u32::from_be_bytes(f) as u64;
        }),
        (Bytes, 8) => each::<8>(recs, body, len, at, |r, f| r.bytes = u64::from_be_bytes(f)),
        (Packets, 4) => each::<4>(recs, body, len, at, |r, f| {
            r.packets = u32::from_be_bytes(f) as u64;
        }),
        (Packets, 8) => each::<8>(recs, body, len, at, |r, f| {
            r.packets = u64::from_be_bytes(f);
        }),
        (Protocol, 1) => each::<1>(recs, body, len, at, |r, [b]| r.protocol = b),
        (Tos, 1) => each::<1>(recs, body, len, at, |r, [b]| r.tos = b),
        (TcpFlags, 1) => each::<1>(recs, body, len, at, |r, [b]| r.tcp_flags = b),
        (TcpFlags, 2) => each::<2>(recs, body, len, at, |r, [_, b]| r.tcp_flags = b),
        (SrcPort, 2) => each::<2>(recs, body, len, at, |r, f| {
            r.src_port = u16::from_be_bytes(f);
        }),
        (DstPort, 2) => each::<2>(recs, body, len, at, |r, f| {
            r.dst_port = u16::from_be_bytes(f);
        }),
        (Src4, 4) => each::<4>(recs, body, len, at, |r, f| {
            r.src_addr = Ipv4Addr::from(f).into()
        }),
        (Dst4, 4) => each::<4>(recs, body, len, at, |r, f| {
            r.dst_addr = Ipv4Addr::from(f).into()
        }),
        (Src6, 16) => each::<16>(recs, body, len, at, |r, f| {
            r.src_addr = Ipv6Addr::from(f).into();
        }),
        (Dst6, 16) => each::<16>(recs, body, len, at, |r, f| {
            r.dst_addr = Ipv6Addr::from(f).into();
        }),
        (InIf, 2) => each::<2>(recs, body, len, at, |r, f| {
            r.in_if = u16::from_be_bytes(f) as u32;
        }),
        (InIf, 4) => each::<4>(recs, body, len, at, |r, f| r.in_if = u32::from_be_bytes(f)),
        (OutIf, 2) => each::<2>(recs, body, len, at, |r, f| {
            r.out_if = u16::from_be_bytes(f) as u32;
        }),
        (OutIf, 4) => each::<4>(recs, body, len, at, |r, f| r.out_if = u32::from_be_bytes(f)),
        // Rarer slots and widths: the general per-field copy.
        (target, width) => {
            let mut unused = Scratch::default();
            for (rec, r) in recs.iter_mut().zip(body.chunks_exact(len)) {
                if let Some(f) = r.get(at..at + width as usize) {
                    apply(target, f, rec, &mut unused);
                }
            }
        }
    }
}

/// Run `set` on the `W` bytes at `at` of each `len`-byte record of `body`.
#[inline(always)]
fn each<const W: usize>(
    recs: &mut [FlowRecord],
    body: &[u8],
    len: usize,
    at: usize,
    set: impl Fn(&mut FlowRecord, [u8; W]),
) {
    for (rec, r) in recs.iter_mut().zip(body.chunks_exact(len)) {
        if let Some(f) = r.get(at..at + W).and_then(|f| <[u8; W]>::try_from(f).ok()) {
            set(rec, f);
        }
    }
}

/// Seconds between the NTP epoch (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Clock context of one export message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClockContext {
    /// Export time of the message, Unix ms.
    pub export_ms: u64,
    /// Exporter uptime at export, ms (v9 header); `None` for IPFIX.
    pub sys_uptime_ms: Option<u32>,
    /// IPFIX `systemInitTimeMilliseconds` learned from options data, if any.
    pub system_init_ms: Option<u64>,
}

/// Turn a raw time field into Unix ms.
#[inline]
pub(crate) fn to_unix_ms(source: TimeSource, raw: u64, clock: &ClockContext) -> Option<u64> {
    match source {
        TimeSource::None => None,
        TimeSource::Uptime => {
            let raw = raw as u32;
            if let Some(uptime) = clock.sys_uptime_ms {
                // Both are 32-bit ms counters that wrap every ~49.7 days; the signed difference
                // is right across a wrap.
                let delta = raw.wrapping_sub(uptime) as i32 as i64;
                Some((clock.export_ms as i64 + delta).max(0) as u64)
            } else {
                // The init time is an 8-byte field of options data: saturate, do not overflow.
                clock
                    .system_init_ms
                    .map(|init| init.saturating_add(raw as u64))
            }
        }
        // Round the event time down, as for every other source: export - ceil(delta).
        TimeSource::DeltaMicros => Some(clock.export_ms.saturating_sub(raw.div_ceil(1000))),
        TimeSource::Seconds => Some(raw * 1000),
        TimeSource::Millis => Some(raw),
        TimeSource::NtpMicros | TimeSource::NtpNanos => {
            let secs = raw >> 32;
            let frac = raw & 0xFFFF_FFFF;
            let ms = (frac * 1000) >> 32;
            // Clamp the whole time, not only the seconds, at the Unix epoch: a time before
            // 1970 is nonsense either way, but should not come out as 0.1 s past the epoch.
            Some((secs * 1000 + ms).saturating_sub(NTP_UNIX_OFFSET * 1000))
        }
    }
}

/// ICMP type and code as `type << 8 | code` in the destination port, source port 0, whichever
/// port the exporter used: softflowd writes them to the destination port, fprobe (NetFlow v5)
/// to the source port. nfdump shows both the same way, and roll-ups keyed by destination port
/// must group the same echo request together whatever the exporter.
#[inline]
pub(crate) fn normalize_icmp_ports(rec: &mut FlowRecord) {
    if rec.protocol == 1 || rec.protocol == 58 {
        if rec.dst_port == 0 {
            rec.dst_port = rec.src_port;
        }
        rec.src_port = 0;
    }
}

/// Fill the values that depend on the message, not only the record.
#[inline]
pub(crate) fn finish_record(
    rec: &mut FlowRecord,
    s: &Scratch,
    tmpl: &CompiledTemplate,
    clock: &ClockContext,
    sampling: u32,
) {
    let start = to_unix_ms(tmpl.start_source, s.start, clock);
    let end = to_unix_ms(tmpl.end_source, s.end, clock);
    let (start, end) = match (start, end) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, a),
        (None, Some(b)) => (b, b),
        (None, None) => (clock.export_ms, clock.export_ms),
    };
    rec.start_ms = start;
    rec.end_ms = end;
    if let Some(dscp) = s.dscp
        && rec.tos == 0
    {
        rec.tos = dscp << 2;
    }
    if rec.protocol == 1 || rec.protocol == 58 {
        if let Some(tc) = s.icmp_type_code {
            rec.dst_port = tc;
        } else if s.has_icmp_parts {
            rec.dst_port = (s.icmp_type as u16) << 8 | s.icmp_code as u16;
        }
        normalize_icmp_ports(rec);
    }
    if sampling > 1 {
        rec.sampling_interval = sampling;
        rec.bytes = rec.bytes.saturating_mul(sampling as u64);
        rec.packets = rec.packets.saturating_mul(sampling as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u16, len: u16) -> FieldSpec {
        FieldSpec {
            id,
            len,
            enterprise: 0,
        }
    }

    #[test]
    fn compiles_offsets_and_skips_unknown_fields() {
        let def = TemplateDef {
            id: 300,
            kind: TemplateKind::Data,
            fields: vec![f(8, 4), f(999, 3), f(12, 4), f(1, 4), f(85, 8)],
        };
        let t = CompiledTemplate::compile(def, 0).expect("compiles");
        assert_eq!(t.fixed_len, Some(23));
        let targets: Vec<_> = t.ops.iter().map(|o| (o.offset, o.target)).collect();
        // octetTotalCount loses to octetDeltaCount; the unknown field is skipped.
        assert_eq!(
            targets,
            vec![(0, Target::Src4), (7, Target::Dst4), (11, Target::Bytes)]
        );
        assert_eq!(t.split_ops().0.len(), 3);
    }

    #[test]
    fn record_ops_come_before_scratch_ops() {
        let def = TemplateDef {
            id: 300,
            kind: TemplateKind::Data,
            // LAST_SWITCHED, IPV4_SRC_ADDR, FIRST_SWITCHED, L4_DST_PORT
            fields: vec![f(21, 4), f(8, 4), f(22, 4), f(11, 2)],
        };
        let t = CompiledTemplate::compile(def, 0).expect("compiles");
        let targets: Vec<_> = t.ops.iter().map(|o| (o.offset, o.target)).collect();
        assert_eq!(
            targets,
            vec![
                (4, Target::Src4),
                (12, Target::DstPort),
                (0, Target::End),
                (8, Target::Start)
            ]
        );
        assert_eq!(t.split_ops().0.len(), 2);
    }

    #[test]
    fn refuses_empty_and_reserved_templates() {
        let empty = TemplateDef {
            id: 300,
            kind: TemplateKind::Data,
            fields: vec![f(1, 0)],
        };
        assert!(CompiledTemplate::compile(empty, 0).is_err());
        let reserved = TemplateDef {
            id: 3,
            kind: TemplateKind::Data,
            fields: vec![f(1, 4)],
        };
        assert!(CompiledTemplate::compile(reserved, 0).is_err());
    }

    #[test]
    fn ntp_time_converts() {
        let clock = ClockContext::default();
        // 2026-01-01T00:00:00.5Z
        let secs = 1_767_225_600u64 + NTP_UNIX_OFFSET;
        let raw = (secs << 32) | (1u64 << 31);
        assert_eq!(
            to_unix_ms(TimeSource::NtpMicros, raw, &clock),
            Some(1_767_225_600_500)
        );
    }

    #[test]
    fn ntp_time_before_the_unix_epoch_clamps_to_it() {
        let clock = ClockContext::default();
        let raw = (1u64 << 32) | (1u64 << 31); // 1900-01-01T00:00:01.5Z
        assert_eq!(to_unix_ms(TimeSource::NtpNanos, raw, &clock), Some(0));
    }

    #[test]
    fn uptime_wraps() {
        let clock = ClockContext {
            export_ms: 1_000_000,
            sys_uptime_ms: Some(5),
            system_init_ms: None,
        };
        // Flow started 10 ms before the uptime counter wrapped.
        let raw = u32::MAX as u64 - 4;
        assert_eq!(to_unix_ms(TimeSource::Uptime, raw, &clock), Some(999_990));
    }
}
