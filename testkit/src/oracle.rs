//! A reference decoder for differential testing: the `netflow_parser` crate, mapped to nmsd's
//! [`FlowRecord`] semantics.
//!
//! `netflow_parser` does the wire work — header and set framing, template caching per exporter
//! and domain, record splitting, typed field values — independently of nmsd's code. This module
//! only turns its output into `FlowRecord`s with the meaning nmsd gives each field, so that a
//! difference between the two decoders points at a framing or extraction bug in one of them
//! rather than at a difference of convention. Compiled with the `oracle` feature only.
//!
//! # What "agree" means
//!
//! For one datagram from one exporter, in a stream of datagrams fed to both decoders:
//!
//! * When `netflow_parser` reports an error for the datagram, or stops reading its sets before
//!   the end of the message without saying so (it does for IPFIX templates with a zero-length
//!   field), or stops reading the records of an IPFIX data set while a whole record is left
//!   (it does at a variable-length field of length 0, which RFC 7011 §7 allows), and also when
//!   that happens in a buffered data set replayed with this datagram, or drops a well-formed
//!   template record without saying so (it does for IPFIX templates with a zero-length field,
//!   IPFIX options templates with nothing but scope fields, and v9 options templates without
//!   scope fields; no RFC rule refuses them), or brings a v9 template with a zero-length field
//!   (for some field types netflow_parser then reads no records with it, without an error),
//!   [`Oracle::decode`] returns `Err` and nothing is
//!   compared: the oracle has no opinion on input it did not read completely. Its templates
//!   for that exporter and domain may then differ from nmsd's, so a stream is only comparable
//!   up to the first `Err` of each domain.
//! * Otherwise nmsd must decode the datagram without error and produce the same records as a
//!   multiset ([`compare_records`]): order is not compared, because the two replay early data
//!   sets at different points of the datagram.
//! * Two records agree ([`compare_record`]) when these fields are equal: `version`, `exporter`,
//!   `observation_domain`, `src_addr`, `dst_addr`, `next_hop`, `src_port`, `dst_port`,
//!   `protocol`, `tcp_flags`, `tos`, `in_if`, `out_if`, `src_as`, `dst_as`, `vlan`, `direction`,
//!   `start_ms`, `end_ms`, and the counters as described next.
//! * Sampling: `netflow_parser` exposes the v5 header's sampling field, so for v5 the oracle
//!   applies it and `bytes`, `packets` and `sampling_interval` must all be equal. For v9 and
//!   IPFIX it only hands out options data raw, without saying which records it applies to; the
//!   oracle then reports raw counters with `sampling_interval == SAMPLING_UNKNOWN` (0), and
//!   agreement means `nmsd.bytes == oracle.bytes * nmsd.sampling_interval` (same for packets):
//!   the raw counts are checked, the interval itself is left to nmsd's own tests.
//!
//! # Field semantics the oracle reproduces
//!
//! Elements are identified by IANA number (v9 field types 1–127 share them); enterprise and
//! reverse elements are ignored, as are elements a template sends variable-length (length
//! 65535: nmsd maps a field when the template arrives, from its fixed width) and elements sent
//! with a width nmsd does not accept:
//! counters, interfaces and AS numbers 1–8 bytes; protocol, ToS, DSCP, direction and ICMP
//! type / code 1 byte; TCP flags 1 or 2 (low byte kept); ports, VLAN and ICMP type-code 2;
//! addresses 4 or 16; `*SysUpTime` and `*DeltaMicroseconds` 4; `*Seconds` 4;
//! `*Milliseconds`, `*Microseconds` and `*Nanoseconds` 8. Where a record carries two elements
//! for one slot the preferred one wins: `octetDeltaCount` over `octetTotalCount` (packets
//! alike), `ipNextHop*` over `bgpNextHop*`, `vlanId` over `dot1qVlanId`, `ipClassOfService`
//! over `ipDiffServCodePoint` (DSCP fills ToS only when ToS is absent or 0), otherwise the
//! first (an element repeated in a record included). An IPv4 and an IPv6 element for the same
//! address: the later one in the record wins.
//!
//! Times become Unix milliseconds, rounded down (and clamped at the epoch). Start and end each take the most precise
//! source the record has (NTP nanoseconds > NTP microseconds > milliseconds > seconds >
//! delta microseconds > uptime). Uptime (v5 and v9 `FIRST/LAST_SWITCHED`) is relative to the
//! header's `sysUptime` and `unix_secs` (+ `unix_nsecs` for v5), taken as a signed 32-bit
//! difference so it survives the counter's wrap; IPFIX `flow*SysUpTime` is relative to the
//! `systemInitTimeMilliseconds` last seen in options data of the same domain, and unknown
//! without it. Delta microseconds count back from the export time. A record with only a start
//! (or only an end) gets it for both; one with neither gets the export time.
//!
//! For ICMP and ICMPv6 (protocol 1, 58), `dst_port` is `type << 8 | code`, from
//! `icmpTypeCode*` or else from separate `icmpType*` / `icmpCode*` elements, or else the source
//! port when the destination port is 0 (fprobe's v5); the source port is then 0. Byte and
//! packet counts above 2^50 are clamped to it. VLAN is the low
//! 12 bits. `flowDirection` 0 / 1 is ingress / egress, anything else unknown.
//!
//! Data sets that arrive before their template are buffered by the oracle (without limit) and
//! decoded, with the header they came with, when a datagram brings the template; nmsd's
//! buffer caps and timeouts are not modelled, so inputs that exceed them are outside agreement.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use netflow_parser::NetflowPacket;
use netflow_parser::variable_versions::field_value::{DataNumber, DurationValue, FieldValue};
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{AutoScopedParser, NetflowParser};
use thiserror::Error;

use nmsd_parsers::ie;
use nmsd_parsers::{Direction, FlowRecord, FlowVersion};

/// `sampling_interval` of oracle records whose sampling the oracle cannot know (v9, IPFIX).
pub const SAMPLING_UNKNOWN: u32 = 0;

/// `netflow_parser` refused a datagram; the oracle has no opinion on it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("netflow_parser: {0}")]
pub struct OracleError(pub String);

/// Seconds between the NTP epoch (1900) and the Unix epoch.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Which template scope a datagram belongs to: RFC 3954 / RFC 7011 source identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Scope {
    exporter: IpAddr,
    version: u16,
    domain: u32,
}

/// Field lengths of the template each set of a message was read with (`None` but for IPFIX
/// data sets).
type SetLayouts = Vec<Option<Vec<u16>>>;

/// A data set whose template `netflow_parser` did not know, kept with its message header.
#[derive(Clone, Debug)]
struct PendingSet {
    scope: Scope,
    template_id: u16,
    header: Vec<u8>,
    body: Vec<u8>,
}

/// Stateful reference decoder: feed it every datagram of a stream, in order.
pub struct Oracle {
    parser: AutoScopedParser,
    /// IPFIX `systemInitTimeMilliseconds` by (exporter, observation domain).
    system_init: HashMap<(IpAddr, u32), u64>,
    pending: Vec<PendingSet>,
    /// Field lengths of the IPFIX templates netflow_parser accepted, to tell whether it read a
    /// data set to its end.
    ipfix_layouts: HashMap<(Scope, u16), Vec<u16>>,
}

impl fmt::Debug for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oracle")
            .field("sources", &self.parser.source_count())
            .field("pending_sets", &self.pending.len())
            .finish()
    }
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

impl Oracle {
    pub fn new() -> Self {
        // Pending flows stay off in netflow_parser: it would replay early data with the header
        // of the datagram that brought the template, while the data's own header is what dates
        // its records. The oracle buffers them itself instead, which needs the whole set body
        // in `NoTemplateInfo`, hence the large error sample size.
        let builder = NetflowParser::builder()
            .with_max_error_sample_size(usize::from(u16::MAX))
            // nmsd has no per-set record cap; a set of 1-byte records can hold ~65k.
            .with_max_records_per_flowset(usize::from(u16::MAX));
        // The settings are constant and valid today. Should a later netflow_parser refuse them,
        // its defaults still decode; early data then shows up as a disagreement, not a panic.
        let parser = AutoScopedParser::try_with_builder(builder).unwrap_or_default();
        Oracle {
            parser,
            system_init: HashMap::new(),
            pending: Vec::new(),
            ipfix_layouts: HashMap::new(),
        }
    }

    /// Records of one datagram, or the error `netflow_parser` found in it.
    ///
    /// Records of data sets buffered earlier whose template this datagram brings are included.
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
    ) -> Result<Vec<FlowRecord>, OracleError> {
        let mut out = self.decode_as_parsed(exporter, datagram)?;
        for r in &mut out {
            nmsd_normalization(r);
        }
        Ok(out)
    }

    fn decode_as_parsed(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
    ) -> Result<Vec<FlowRecord>, OracleError> {
        let (packet, layouts) = self.parse(exporter, datagram)?;
        let mut out = Vec::new();
        let learned = self.records_of(exporter, datagram, &packet, &layouts, &mut out);
        if learned.is_empty() {
            return Ok(out);
        }
        let scope = scope_of(exporter, datagram);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| Some(p.scope) == scope && learned.contains(&p.template_id));
        self.pending = waiting;
        let mut unread = None;
        for p in ready {
            let replay = replay_datagram(&p);
            // Records of a replayed set belong to this datagram's output: a set that
            // netflow_parser did not read completely leaves the oracle without an opinion on it.
            match self.parse(exporter, &replay) {
                Ok((packet, layouts)) => {
                    self.records_of(exporter, &replay, &packet, &layouts, &mut out);
                }
                Err(e) => {
                    unread.get_or_insert(OracleError(format!(
                        "replayed set {}: {}",
                        p.template_id, e.0
                    )));
                }
            }
        }
        match unread {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// First message of the datagram. Anything after it is ignored, as nmsd ignores it:
    /// netflow_parser would otherwise try to read trailing bytes as another message.
    ///
    /// With the message, the field lengths of the template each of its IPFIX data sets was
    /// read with (by set; `None` for other sets and other versions).
    fn parse(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
    ) -> Result<(NetflowPacket, SetLayouts), OracleError> {
        let source = SocketAddr::new(exporter, 0);
        let mut packets = self
            .parser
            .iter_packets_from_source(source, datagram)
            .map_err(|e| OracleError(e.to_string()))?;
        let packet = match packets.next() {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(OracleError(e.to_string())),
            None => return Err(OracleError("no message".into())),
        };
        drop(packets);
        // Learns the templates of the message too, so it comes before any early return.
        let (layouts, records_read) = match &packet {
            NetflowPacket::IPFix(p) => self.check_ipfix_records(scope_of(exporter, datagram), p),
            _ => (Vec::new(), Ok(())),
        };
        // netflow_parser stops at a set it cannot read (an IPFIX template with a zero-length
        // field, say) and returns the sets before it without an error. A message it did not
        // read to the end is one it has no full opinion on.
        let (read, end) = match &packet {
            NetflowPacket::V9(p) => (
                20 + p
                    .flowsets
                    .iter()
                    .map(|s| usize::from(s.header.length))
                    .sum::<usize>(),
                datagram.len(),
            ),
            NetflowPacket::IPFix(p) => (
                16 + p
                    .flowsets
                    .iter()
                    .map(|s| usize::from(s.header.length))
                    .sum::<usize>(),
                usize::from(p.header.length),
            ),
            _ => (0, 0),
        };
        // Fewer than 4 bytes left are padding, for nmsd too.
        if end.saturating_sub(read) >= 4 {
            return Err(OracleError(format!(
                "stopped reading sets at byte {read} of {end}"
            )));
        }
        records_read?;
        if let Some(id) = dropped_template(datagram, &packet) {
            return Err(OracleError(format!(
                "dropped template {id} without saying so"
            )));
        }
        if ipfix_withdraws_all(datagram) {
            return Err(OracleError(
                "withdraws all templates of a kind (RFC 7011 §8.1), which netflow_parser does \
                 not model"
                    .into(),
            ));
        }
        if let Some(id) = v9_template_with_empty_field(&packet) {
            return Err(OracleError(format!(
                "v9 template {id} has a zero-length field: netflow_parser may read no records \
                 with it"
            )));
        }
        Ok((packet, layouts))
    }

    /// Learn the layouts of the IPFIX templates in `p` and check that netflow_parser read each
    /// data set to its end, but for padding shorter than a record. Returns the layout each set
    /// was read with: a message may redefine a template after a data set that used it.
    ///
    /// netflow_parser stops at a record it cannot read and keeps the records before it, without
    /// an error; the bytes it read are what the template's field lengths (plus the length
    /// prefixes of variable-length fields) add up to for the records it returned.
    fn check_ipfix_records(
        &mut self,
        scope: Option<Scope>,
        p: &ipfix::IPFix,
    ) -> (SetLayouts, Result<(), OracleError>) {
        let mut layouts = vec![None; p.flowsets.len()];
        let Some(scope) = scope else {
            return (layouts, Ok(()));
        };
        let mut unread = Ok(());
        for (n, set) in p.flowsets.iter().enumerate() {
            let id = set.header.header_id;
            let mut learn = |id: u16, fields: &[ipfix::TemplateField]| {
                let lengths = fields.iter().map(|f| f.field_length).collect();
                self.ipfix_layouts.insert((scope, id), lengths);
            };
            let records = match &set.body {
                ipfix::FlowSetBody::Template(t) => {
                    learn(t.template_id, &t.fields);
                    continue;
                }
                ipfix::FlowSetBody::Templates(ts) => {
                    ts.iter().for_each(|t| learn(t.template_id, &t.fields));
                    continue;
                }
                ipfix::FlowSetBody::OptionsTemplate(t) => {
                    learn(t.template_id, &t.fields);
                    continue;
                }
                ipfix::FlowSetBody::OptionsTemplates(ts) => {
                    ts.iter().for_each(|t| learn(t.template_id, &t.fields));
                    continue;
                }
                ipfix::FlowSetBody::Data(d) => &d.fields,
                ipfix::FlowSetBody::OptionsData(d) => &d.fields,
                _ => continue,
            };
            let Some(lengths) = self.ipfix_layouts.get(&(scope, id)) else {
                unread = unread.and(Err(OracleError(format!(
                    "data set {id} of a template the oracle did not see"
                ))));
                continue;
            };
            layouts[n] = Some(lengths.clone());
            let fixed: usize = lengths
                .iter()
                .filter(|&&l| l != ie::VARIABLE_LENGTH)
                .map(|&l| usize::from(l))
                .sum();
            let variable = lengths
                .iter()
                .filter(|&&l| l == ie::VARIABLE_LENGTH)
                .count();
            let mut read = 0;
            for r in records {
                read += fixed;
                for ((_, v), &l) in r.iter().zip(lengths) {
                    if l == ie::VARIABLE_LENGTH {
                        let n = v.byte_len();
                        read += n + if n < 255 { 1 } else { 3 };
                    }
                }
            }
            let body = usize::from(set.header.length).saturating_sub(4);
            // nmsd reads records while one of the smallest possible size fits.
            if body.saturating_sub(read) >= (fixed + variable).max(1) {
                unread = unread.and(Err(OracleError(format!(
                    "stopped reading the records of set {id} at byte {read} of {body}"
                ))));
            }
        }
        (layouts, unread)
    }

    /// Append the flow records of one parsed message; return the template ids it defined.
    fn records_of(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
        packet: &NetflowPacket,
        layouts: &[Option<Vec<u16>>],
        out: &mut Vec<FlowRecord>,
    ) -> Vec<u16> {
        let mut learned = Vec::new();
        match packet {
            NetflowPacket::V5(p) => v5_records(exporter, p, out),
            NetflowPacket::V9(p) => {
                let h = &p.header;
                let clock = Clock {
                    export_ms: u64::from(h.unix_secs) * 1000,
                    sys_uptime_ms: Some(h.sys_up_time),
                    system_init_ms: None,
                };
                let base = base_record(exporter, h.source_id, FlowVersion::NetflowV9);
                for set in &p.flowsets {
                    match &set.body {
                        v9::FlowSetBody::Data(d) => {
                            for r in &d.fields {
                                let fields = r.iter().map(|(f, v)| (Some(u16::from(*f)), v));
                                out.push(build_record(base, fields, &clock));
                            }
                        }
                        v9::FlowSetBody::Template(t) => {
                            learned.extend(t.templates.iter().map(|t| t.template_id));
                        }
                        v9::FlowSetBody::OptionsTemplate(t) => {
                            learned.extend(t.templates.iter().map(|t| t.template_id));
                        }
                        v9::FlowSetBody::NoTemplate(info) => {
                            self.buffer(exporter, datagram, 20, info);
                        }
                        _ => {}
                    }
                }
            }
            NetflowPacket::IPFix(p) => {
                let h = &p.header;
                let domain = h.observation_domain_id;
                let base = base_record(exporter, domain, FlowVersion::Ipfix);
                for (n, set) in p.flowsets.iter().enumerate() {
                    // Which fields of the set's template are sent variable-length.
                    let layout = layouts.get(n).and_then(Option::as_ref);
                    let variable =
                        |i: usize| layout.and_then(|l| l.get(i)) == Some(&ie::VARIABLE_LENGTH);
                    // Options data earlier in the message applies to the sets after it.
                    let clock = Clock {
                        export_ms: u64::from(h.export_time) * 1000,
                        sys_uptime_ms: None,
                        system_init_ms: self.system_init.get(&(exporter, domain)).copied(),
                    };
                    match &set.body {
                        ipfix::FlowSetBody::Data(d) => {
                            for r in &d.fields {
                                let fields = r
                                    .iter()
                                    .enumerate()
                                    .map(|(i, (f, v))| (ipfix_id(f).filter(|_| !variable(i)), v));
                                out.push(build_record(base, fields, &clock));
                            }
                        }
                        ipfix::FlowSetBody::OptionsData(d) => {
                            for r in &d.fields {
                                for (i, (f, v)) in r.iter().enumerate() {
                                    if ipfix_id(f) == Some(ie::SYSTEM_INIT_TIME_MILLISECONDS)
                                        && !variable(i)
                                        && v.byte_len() == 8
                                        && let Some(ms) = uint(v)
                                    {
                                        self.system_init.insert((exporter, domain), ms);
                                    }
                                }
                            }
                        }
                        ipfix::FlowSetBody::Template(t) => learned.push(t.template_id),
                        ipfix::FlowSetBody::Templates(ts) => {
                            learned.extend(ts.iter().map(|t| t.template_id));
                        }
                        ipfix::FlowSetBody::OptionsTemplate(t) => learned.push(t.template_id),
                        ipfix::FlowSetBody::OptionsTemplates(ts) => {
                            learned.extend(ts.iter().map(|t| t.template_id));
                        }
                        ipfix::FlowSetBody::NoTemplate(info) => {
                            self.buffer(exporter, datagram, 16, info);
                        }
                        _ => {}
                    }
                }
            }
            // nmsd does not decode v7 (or whatever later versions netflow_parser learns).
            _ => {}
        }
        learned
    }

    fn buffer(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
        header_len: usize,
        info: &netflow_parser::NoTemplateInfo,
    ) {
        let (Some(scope), Some(header)) =
            (scope_of(exporter, datagram), datagram.get(..header_len))
        else {
            return;
        };
        if info.truncated {
            return;
        }
        self.pending.push(PendingSet {
            scope,
            template_id: info.template_id,
            header: header.to_vec(),
            body: info.raw_data.clone(),
        });
    }
}

/// What nmsd does to every record whatever the wire format said (see the module doc):
/// byte and packet counts clamped to [`nmsd_parsers::MAX_FLOW_COUNTER`]; ICMP type and code in the
/// destination port, source port 0, whichever port the exporter used.
fn nmsd_normalization(r: &mut FlowRecord) {
    r.bytes = r.bytes.min(nmsd_parsers::MAX_FLOW_COUNTER);
    r.packets = r.packets.min(nmsd_parsers::MAX_FLOW_COUNTER);
    if r.protocol == 1 || r.protocol == 58 {
        if r.dst_port == 0 {
            r.dst_port = r.src_port;
        }
        r.src_port = 0;
    }
}

/// Decode a stream of datagrams from one exporter with a fresh [`Oracle`]; datagrams that
/// `netflow_parser` refuses contribute no records.
pub fn oracle_decode(exporter: IpAddr, datagrams: &[&[u8]]) -> Vec<FlowRecord> {
    let mut oracle = Oracle::new();
    datagrams
        .iter()
        .filter_map(|d| oracle.decode(exporter, d).ok())
        .flatten()
        .collect()
}

fn scope_of(exporter: IpAddr, d: &[u8]) -> Option<Scope> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
    };
    let version = u16::from_be_bytes(d.get(..2)?.try_into().ok()?);
    let domain = match version {
        9 => be32(16)?,
        10 => be32(12)?,
        _ => return None,
    };
    Some(Scope {
        exporter,
        version,
        domain,
    })
}

/// A well-formed template record of a v9 / IPFIX message (one with fields, whose fields lie
/// within its set) that `netflow_parser` did not hand out, if there is one.
fn dropped_template(d: &[u8], packet: &NetflowPacket) -> Option<u16> {
    let mut kept = Vec::new();
    let (header, end, template_sets) = match packet {
        NetflowPacket::V9(p) => {
            for set in &p.flowsets {
                match &set.body {
                    v9::FlowSetBody::Template(t) => {
                        kept.extend(t.templates.iter().map(|t| t.template_id));
                    }
                    v9::FlowSetBody::OptionsTemplate(t) => {
                        kept.extend(t.templates.iter().map(|t| t.template_id));
                    }
                    _ => {}
                }
            }
            (20, d.len(), [0usize, 1])
        }
        NetflowPacket::IPFix(p) => {
            for set in &p.flowsets {
                match &set.body {
                    ipfix::FlowSetBody::Template(t) => kept.push(t.template_id),
                    ipfix::FlowSetBody::Templates(ts) => {
                        kept.extend(ts.iter().map(|t| t.template_id));
                    }
                    ipfix::FlowSetBody::OptionsTemplate(t) => kept.push(t.template_id),
                    ipfix::FlowSetBody::OptionsTemplates(ts) => {
                        kept.extend(ts.iter().map(|t| t.template_id));
                    }
                    _ => {}
                }
            }
            (16, usize::from(p.header.length).min(d.len()), [2usize, 3])
        }
        _ => return None,
    };
    let be16 = |b: &[u8], at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            b.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let mut pos = header;
    while end.saturating_sub(pos) >= 4 {
        let (set_id, len) = (be16(d, pos)?, be16(d, pos + 2)?);
        if len < 4 || len > end - pos {
            return None;
        }
        let body = &d[pos + 4..pos + len];
        pos += len;
        let options = set_id == template_sets[1];
        if set_id != template_sets[0] && !options {
            continue;
        }
        let ipfix = header == 16;
        let mut at = 0;
        while body.len() - at >= 4 {
            let id = u16::from_be_bytes([body[at], body[at + 1]]);
            // Field specifiers: count and where they start.
            let (count, fields_at) = match (ipfix, options) {
                (false, true) => {
                    let (scope, opts) = (be16(body, at + 2)?, be16(body, at + 4)?);
                    ((scope + opts) / 4, at + 6)
                }
                (true, true) => (be16(body, at + 2)?, at + 6),
                _ => (be16(body, at + 2)?, at + 4),
            };
            if count == 0 {
                // An IPFIX withdrawal (4 bytes); for v9, nothing more can be read.
                if !ipfix {
                    break;
                }
                at += 4;
                continue;
            }
            let mut f = fields_at;
            for _ in 0..count {
                let enterprise = ipfix && body.get(f).is_some_and(|b| b & 0x80 != 0);
                f += if enterprise { 8 } else { 4 };
            }
            if f > body.len() {
                break;
            }
            if !kept.contains(&id) {
                return Some(id);
            }
            at = f;
        }
    }
    None
}

/// A v9 data template of `packet` with a zero-length field of a type netflow_parser decodes
/// (applicationId, say): it keeps such a template but then returns no records for its data
/// sets and no error (differential fuzz finding, 2026-11-26), so the oracle has no opinion.
/// Zero-length fields of types it does not decode are read as nothing, as nmsd does.
fn v9_template_with_empty_field(packet: &NetflowPacket) -> Option<u16> {
    let NetflowPacket::V9(p) = packet else {
        return None;
    };
    p.flowsets.iter().find_map(|set| match &set.body {
        v9::FlowSetBody::Template(t) => t
            .templates
            .iter()
            .find(|t| {
                t.fields.iter().any(|f| {
                    f.field_length == 0
                        && !matches!(
                            f.field_type,
                            v9::lookup::V9Field::IanaAssigned(_) | v9::lookup::V9Field::Unknown(_)
                        )
                })
            })
            .map(|t| t.template_id),
        _ => None,
    })
}

/// Whether an IPFIX message holds an "all templates" withdrawal: a template record whose id is
/// its set's id (2 or 3) and whose field count is 0. nmsd forgets every template of that kind;
/// netflow_parser keeps them (differential fuzz finding, 2026-12-07), so the oracle has no
/// opinion on the message or on what its domain sends after it.
fn ipfix_withdraws_all(d: &[u8]) -> bool {
    let u16_at = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let end = match (d.get(..2), u16_at(2)) {
        (Some([0, 10]), Some(len)) => usize::from(len).min(d.len()),
        _ => return false,
    };
    let mut set = 16;
    while set + 4 <= end {
        let (Some(set_id), Some(set_len)) = (u16_at(set), u16_at(set + 2)) else {
            return false;
        };
        let set_end = set + usize::from(set_len);
        if set_len < 4 || set_end > end {
            return false;
        }
        if set_id == 2 || set_id == 3 {
            let mut rec = set + 4;
            while rec + 4 <= set_end {
                let (Some(id), Some(count)) = (u16_at(rec), u16_at(rec + 2)) else {
                    break;
                };
                if count == 0 {
                    if id == set_id {
                        return true;
                    }
                    rec += 4;
                    continue;
                }
                rec += if set_id == 3 { 6 } else { 4 };
                for _ in 0..count {
                    let Some(raw) = u16_at(rec) else { break };
                    rec += if raw & 0x8000 != 0 { 8 } else { 4 };
                }
            }
        }
        set = set_end;
    }
    false
}

/// A one-set message: the buffered set behind its original header.
fn replay_datagram(p: &PendingSet) -> Vec<u8> {
    let mut d = p.header.clone();
    d.extend_from_slice(&p.template_id.to_be_bytes());
    d.extend_from_slice(&((p.body.len() + 4) as u16).to_be_bytes());
    d.extend_from_slice(&p.body);
    if p.scope.version == 10 {
        let len = d.len() as u16;
        d[2..4].copy_from_slice(&len.to_be_bytes());
    } else {
        d[2..4].copy_from_slice(&1u16.to_be_bytes());
    }
    d
}

fn base_record(exporter: IpAddr, domain: u32, version: FlowVersion) -> FlowRecord {
    FlowRecord {
        exporter,
        observation_domain: domain,
        version,
        sampling_interval: SAMPLING_UNKNOWN,
        ..FlowRecord::EMPTY
    }
}

fn v5_records(
    exporter: IpAddr,
    p: &netflow_parser::static_versions::v5::V5,
    out: &mut Vec<FlowRecord>,
) {
    let h = &p.header;
    let export_ms = u64::from(h.unix_secs) * 1000 + u64::from(h.unix_nsecs) / 1_000_000;
    let clock = Clock {
        export_ms,
        sys_uptime_ms: Some(h.sys_up_time),
        system_init_ms: None,
    };
    // Top two bits: sampling mode; the rest: the interval.
    let interval = u32::from(h.sampling_interval & 0x3FFF).max(1);
    for f in &p.flowsets {
        let at = |uptime: u32| clock.at_uptime(uptime).unwrap_or(export_ms);
        out.push(FlowRecord {
            start_ms: at(f.first),
            end_ms: at(f.last),
            bytes: u64::from(f.d_octets) * u64::from(interval),
            packets: u64::from(f.d_pkts) * u64::from(interval),
            exporter,
            src_addr: f.src_addr.into(),
            dst_addr: f.dst_addr.into(),
            next_hop: f.next_hop.into(),
            observation_domain: u32::from(h.engine_type) << 8 | u32::from(h.engine_id),
            in_if: u32::from(f.input),
            out_if: u32::from(f.output),
            src_as: u32::from(f.src_as),
            dst_as: u32::from(f.dst_as),
            sampling_interval: interval,
            src_port: f.src_port,
            dst_port: f.dst_port,
            vlan: 0,
            protocol: f.protocol_number,
            tcp_flags: f.tcp_flags,
            tos: f.tos,
            direction: Direction::Unknown,
            version: FlowVersion::NetflowV5,
            source: 0,
            // NetFlow exporters do not count them.
            packet_counts: nmsd_parsers::PacketCounts::ZERO,
        });
    }
}

/// Time base of one message.
#[derive(Clone, Copy, Debug)]
struct Clock {
    export_ms: u64,
    /// v5 / v9 header uptime.
    sys_uptime_ms: Option<u32>,
    /// IPFIX systemInitTimeMilliseconds.
    system_init_ms: Option<u64>,
}

impl Clock {
    fn at_uptime(&self, uptime: u32) -> Option<u64> {
        match self.sys_uptime_ms {
            Some(now) => {
                // How long before the export the event happened; negative if the exporter
                // stamps flows slightly after its header.
                let age = i64::from(now.wrapping_sub(uptime) as i32);
                Some(u64::try_from(self.export_ms as i64 - age).unwrap_or(0))
            }
            None => self
                .system_init_ms
                .map(|init| init.saturating_add(u64::from(uptime))),
        }
    }
}

/// Time sources by precision; a record's start (end) uses its most precise one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimeKind {
    Uptime,
    DeltaMicros,
    Seconds,
    Millis,
    NtpMicros,
    NtpNanos,
}

/// The IANA number of an IPFIX element nmsd might use; `None` for enterprise elements.
fn ipfix_id(f: &IPFixField) -> Option<u16> {
    use IANAIPFixField as F;
    let IPFixField::IANA(f) = f else {
        return None;
    };
    Some(match f {
        F::OctetDeltaCount => ie::OCTET_DELTA_COUNT,
        F::PacketDeltaCount => ie::PACKET_DELTA_COUNT,
        F::ProtocolIdentifier => ie::PROTOCOL_IDENTIFIER,
        F::IpClassOfService => ie::IP_CLASS_OF_SERVICE,
        F::TcpControlBits => ie::TCP_CONTROL_BITS,
        F::SourceTransportPort => ie::SOURCE_TRANSPORT_PORT,
        F::SourceIpv4address => ie::SOURCE_IPV4_ADDRESS,
        F::IngressInterface => ie::INGRESS_INTERFACE,
        F::DestinationTransportPort => ie::DESTINATION_TRANSPORT_PORT,
        F::DestinationIpv4address => ie::DESTINATION_IPV4_ADDRESS,
        F::EgressInterface => ie::EGRESS_INTERFACE,
        F::IpNextHopIpv4address => ie::IP_NEXT_HOP_IPV4_ADDRESS,
        F::BgpSourceAsNumber => ie::BGP_SOURCE_AS_NUMBER,
        F::BgpDestinationAsNumber => ie::BGP_DESTINATION_AS_NUMBER,
        F::BgpNextHopIpv4address => ie::BGP_NEXT_HOP_IPV4_ADDRESS,
        F::FlowEndSysUpTime => ie::FLOW_END_SYS_UP_TIME,
        F::FlowStartSysUpTime => ie::FLOW_START_SYS_UP_TIME,
        F::SourceIpv6address => ie::SOURCE_IPV6_ADDRESS,
        F::DestinationIpv6address => ie::DESTINATION_IPV6_ADDRESS,
        F::IcmpTypeCodeIpv4 => ie::ICMP_TYPE_CODE_IPV4,
        F::VlanId => ie::VLAN_ID,
        F::FlowDirection => ie::FLOW_DIRECTION,
        F::IpNextHopIpv6address => ie::IP_NEXT_HOP_IPV6_ADDRESS,
        F::BgpNextHopIpv6address => ie::BGP_NEXT_HOP_IPV6_ADDRESS,
        F::OctetTotalCount => ie::OCTET_TOTAL_COUNT,
        F::PacketTotalCount => ie::PACKET_TOTAL_COUNT,
        F::IcmpTypeCodeIpv6 => ie::ICMP_TYPE_CODE_IPV6,
        F::FlowStartSeconds => ie::FLOW_START_SECONDS,
        F::FlowEndSeconds => ie::FLOW_END_SECONDS,
        F::FlowStartMilliseconds => ie::FLOW_START_MILLISECONDS,
        F::FlowEndMilliseconds => ie::FLOW_END_MILLISECONDS,
        F::FlowStartMicroseconds => ie::FLOW_START_MICROSECONDS,
        F::FlowEndMicroseconds => ie::FLOW_END_MICROSECONDS,
        F::FlowStartNanoseconds => ie::FLOW_START_NANOSECONDS,
        F::FlowEndNanoseconds => ie::FLOW_END_NANOSECONDS,
        F::FlowStartDeltaMicroseconds => ie::FLOW_START_DELTA_MICROSECONDS,
        F::FlowEndDeltaMicroseconds => ie::FLOW_END_DELTA_MICROSECONDS,
        F::SystemInitTimeMilliseconds => ie::SYSTEM_INIT_TIME_MILLISECONDS,
        F::IcmpTypeIpv4 => ie::ICMP_TYPE_IPV4,
        F::IcmpCodeIpv4 => ie::ICMP_CODE_IPV4,
        F::IcmpTypeIpv6 => ie::ICMP_TYPE_IPV6,
        F::IcmpCodeIpv6 => ie::ICMP_CODE_IPV6,
        F::IpDiffServCodePoint => ie::IP_DIFF_SERV_CODE_POINT,
        F::Dot1qVlanId => ie::DOT1Q_VLAN_ID,
        _ => return None,
    })
}

/// Big-endian unsigned value of 1 to 8 bytes.
fn be_bytes(b: &[u8]) -> Option<u64> {
    (1..=8)
        .contains(&b.len())
        .then(|| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
}

/// An unsigned integer value, whatever type netflow_parser chose for the element.
fn uint(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::DataNumber(DataNumber::Vec(b)) | FieldValue::Vec(b) => be_bytes(b),
        FieldValue::DataNumber(n) => n.as_u64(),
        FieldValue::ProtocolType(p) => Some(u64::from(u8::from(*p))),
        FieldValue::TcpControlBits(bits, _) => Some(u64::from(u16::from(*bits))),
        FieldValue::Duration(
            DurationValue::Millis { value, .. } | DurationValue::Seconds { value, .. },
        ) => Some(*value),
        _ => None,
    }
}

/// An NTP timestamp as Unix ms.
fn ntp_ms(v: &FieldValue) -> Option<u64> {
    let since_1900 = match v {
        FieldValue::Duration(
            d @ (DurationValue::MicrosNtp { .. } | DurationValue::NanosNtp { .. }),
        ) => d.as_duration(),
        // v9 has no NTP types: raw seconds and fraction.
        FieldValue::Vec(b) | FieldValue::DataNumber(DataNumber::Vec(b)) if b.len() == 8 => {
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let frac = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            std::time::Duration::from_secs(u64::from(secs))
                + std::time::Duration::from_nanos((u64::from(frac) * 1_000_000_000) >> 32)
        }
        FieldValue::DataNumber(DataNumber::U64(raw)) => {
            std::time::Duration::from_secs(raw >> 32)
                + std::time::Duration::from_nanos(((raw & 0xFFFF_FFFF) * 1_000_000_000) >> 32)
        }
        _ => return None,
    };
    let ms = u64::try_from(since_1900.as_millis()).ok()?;
    Some(ms.saturating_sub(NTP_UNIX_OFFSET_S * 1000))
}

fn addr(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        FieldValue::Vec(b) | FieldValue::DataNumber(DataNumber::Vec(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        FieldValue::DataNumber(DataNumber::U32(n)) => Some(IpAddr::from(n.to_be_bytes())),
        FieldValue::DataNumber(DataNumber::U128(n)) => Some(IpAddr::from(n.to_be_bytes())),
        _ => None,
    }
}

/// Slots where two elements compete; the higher rank wins, the first on a tie. Slots filled
/// by one element only still claim, so that a repeated element keeps its first occurrence.
#[derive(Clone, Copy)]
enum Slot {
    Bytes,
    Packets,
    NextHop4,
    NextHop6,
    Vlan,
    IcmpTypeCode,
    Tos,
    Dscp,
    Protocol,
    TcpFlags,
    SrcPort,
    DstPort,
    Src4,
    Src6,
    Dst4,
    Dst6,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    Direction,
    IcmpType,
    IcmpCode,
}

const SLOTS: usize = Slot::IcmpCode as usize + 1;

/// What a record's elements said, before the message context turns them into a FlowRecord.
struct Builder {
    rec: FlowRecord,
    ranks: [u8; SLOTS],
    start: Option<(TimeKind, Option<u64>)>,
    end: Option<(TimeKind, Option<u64>)>,
    dscp: Option<u8>,
    icmp_type_code: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

impl Builder {
    /// Whether an element of `rank` should fill `slot`.
    fn claim(&mut self, slot: Slot, rank: u8) -> bool {
        let r = &mut self.ranks[slot as usize];
        if rank > *r {
            *r = rank;
            true
        } else {
            false
        }
    }

    fn time(&mut self, is_start: bool, kind: TimeKind, ms: Option<u64>) {
        let t = if is_start {
            &mut self.start
        } else {
            &mut self.end
        };
        if t.is_none_or(|(k, _)| kind > k) {
            *t = Some((kind, ms));
        }
    }
}

/// One flow record from (IANA element, value) pairs.
fn build_record<'a>(
    base: FlowRecord,
    fields: impl Iterator<Item = (Option<u16>, &'a FieldValue)>,
    clock: &Clock,
) -> FlowRecord {
    let mut b = Builder {
        rec: base,
        ranks: [0; SLOTS],
        start: None,
        end: None,
        dscp: None,
        icmp_type_code: None,
        icmp_type: None,
        icmp_code: None,
    };
    for (id, v) in fields {
        let Some(id) = id else { continue };
        let len = v.byte_len();
        let int = (1..=8).contains(&len);
        let u = || uint(v);
        match id {
            ie::OCTET_DELTA_COUNT | ie::OCTET_TOTAL_COUNT if int => {
                let rank = if id == ie::OCTET_DELTA_COUNT { 2 } else { 1 };
                if b.claim(Slot::Bytes, rank) {
                    b.rec.bytes = u().unwrap_or(0);
                }
            }
            ie::PACKET_DELTA_COUNT | ie::PACKET_TOTAL_COUNT if int => {
                let rank = if id == ie::PACKET_DELTA_COUNT { 2 } else { 1 };
                if b.claim(Slot::Packets, rank) {
                    b.rec.packets = u().unwrap_or(0);
                }
            }
            ie::PROTOCOL_IDENTIFIER if len == 1 && b.claim(Slot::Protocol, 1) => {
                b.rec.protocol = u().unwrap_or(0) as u8;
            }
            ie::IP_CLASS_OF_SERVICE if len == 1 && b.claim(Slot::Tos, 1) => {
                b.rec.tos = u().unwrap_or(0) as u8;
            }
            ie::IP_DIFF_SERV_CODE_POINT if len == 1 && b.claim(Slot::Dscp, 1) => {
                b.dscp = u().map(|d| d as u8);
            }
            ie::TCP_CONTROL_BITS if (len == 1 || len == 2) && b.claim(Slot::TcpFlags, 1) => {
                // The low byte holds the classic flags; the high bits of a 2-byte value are
                // header flags nmsd does not keep.
                b.rec.tcp_flags = u().unwrap_or(0) as u8;
            }
            ie::SOURCE_TRANSPORT_PORT if len == 2 && b.claim(Slot::SrcPort, 1) => {
                b.rec.src_port = u().unwrap_or(0) as u16;
            }
            ie::DESTINATION_TRANSPORT_PORT if len == 2 && b.claim(Slot::DstPort, 1) => {
                b.rec.dst_port = u().unwrap_or(0) as u16;
            }
            ie::SOURCE_IPV4_ADDRESS if len == 4 && b.claim(Slot::Src4, 1) => {
                b.rec.src_addr = addr(v).unwrap_or(b.rec.src_addr)
            }
            ie::SOURCE_IPV6_ADDRESS if len == 16 && b.claim(Slot::Src6, 1) => {
                b.rec.src_addr = addr(v).unwrap_or(b.rec.src_addr)
            }
            ie::DESTINATION_IPV4_ADDRESS if len == 4 && b.claim(Slot::Dst4, 1) => {
                b.rec.dst_addr = addr(v).unwrap_or(b.rec.dst_addr);
            }
            ie::DESTINATION_IPV6_ADDRESS if len == 16 && b.claim(Slot::Dst6, 1) => {
                b.rec.dst_addr = addr(v).unwrap_or(b.rec.dst_addr);
            }
            ie::IP_NEXT_HOP_IPV4_ADDRESS | ie::BGP_NEXT_HOP_IPV4_ADDRESS if len == 4 => {
                let rank = if id == ie::IP_NEXT_HOP_IPV4_ADDRESS {
                    2
                } else {
                    1
                };
                if b.claim(Slot::NextHop4, rank) {
                    b.rec.next_hop = addr(v).unwrap_or(b.rec.next_hop);
                }
            }
            ie::IP_NEXT_HOP_IPV6_ADDRESS | ie::BGP_NEXT_HOP_IPV6_ADDRESS if len == 16 => {
                let rank = if id == ie::IP_NEXT_HOP_IPV6_ADDRESS {
                    2
                } else {
                    1
                };
                if b.claim(Slot::NextHop6, rank) {
                    b.rec.next_hop = addr(v).unwrap_or(b.rec.next_hop);
                }
            }
            ie::INGRESS_INTERFACE if int && b.claim(Slot::InIf, 1) => {
                b.rec.in_if = u().unwrap_or(0) as u32;
            }
            ie::EGRESS_INTERFACE if int && b.claim(Slot::OutIf, 1) => {
                b.rec.out_if = u().unwrap_or(0) as u32;
            }
            ie::BGP_SOURCE_AS_NUMBER if int && b.claim(Slot::SrcAs, 1) => {
                b.rec.src_as = u().unwrap_or(0) as u32;
            }
            ie::BGP_DESTINATION_AS_NUMBER if int && b.claim(Slot::DstAs, 1) => {
                b.rec.dst_as = u().unwrap_or(0) as u32;
            }
            ie::VLAN_ID | ie::DOT1Q_VLAN_ID if len == 2 => {
                let rank = if id == ie::VLAN_ID { 2 } else { 1 };
                if b.claim(Slot::Vlan, rank) {
                    b.rec.vlan = (u().unwrap_or(0) & 0x0FFF) as u16;
                }
            }
            ie::FLOW_DIRECTION if len == 1 && b.claim(Slot::Direction, 1) => {
                b.rec.direction = match u() {
                    Some(0) => Direction::Ingress,
                    Some(1) => Direction::Egress,
                    _ => Direction::Unknown,
                };
            }
            ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6
                if len == 2 && b.claim(Slot::IcmpTypeCode, 1) =>
            {
                b.icmp_type_code = u().map(|x| x as u16);
            }
            ie::ICMP_TYPE_IPV4 | ie::ICMP_TYPE_IPV6 if len == 1 && b.claim(Slot::IcmpType, 1) => {
                b.icmp_type = u().map(|x| x as u8);
            }
            ie::ICMP_CODE_IPV4 | ie::ICMP_CODE_IPV6 if len == 1 && b.claim(Slot::IcmpCode, 1) => {
                b.icmp_code = u().map(|x| x as u8);
            }
            ie::FLOW_START_SYS_UP_TIME | ie::FLOW_END_SYS_UP_TIME if len == 4 => {
                let ms = u().and_then(|t| clock.at_uptime(t as u32));
                b.time(id == ie::FLOW_START_SYS_UP_TIME, TimeKind::Uptime, ms);
            }
            ie::FLOW_START_DELTA_MICROSECONDS | ie::FLOW_END_DELTA_MICROSECONDS if len == 4 => {
                // Event time = export time - delta, in µs, then rounded down to ms.
                let ms = u().map(|d| (clock.export_ms * 1000).saturating_sub(d) / 1000);
                b.time(
                    id == ie::FLOW_START_DELTA_MICROSECONDS,
                    TimeKind::DeltaMicros,
                    ms,
                );
            }
            ie::FLOW_START_SECONDS | ie::FLOW_END_SECONDS if len == 4 => {
                let ms = u().map(|s| s * 1000);
                b.time(id == ie::FLOW_START_SECONDS, TimeKind::Seconds, ms);
            }
            ie::FLOW_START_MILLISECONDS | ie::FLOW_END_MILLISECONDS if len == 8 => {
                b.time(id == ie::FLOW_START_MILLISECONDS, TimeKind::Millis, u());
            }
            ie::FLOW_START_MICROSECONDS | ie::FLOW_END_MICROSECONDS if len == 8 => {
                b.time(
                    id == ie::FLOW_START_MICROSECONDS,
                    TimeKind::NtpMicros,
                    ntp_ms(v),
                );
            }
            ie::FLOW_START_NANOSECONDS | ie::FLOW_END_NANOSECONDS if len == 8 => {
                b.time(
                    id == ie::FLOW_START_NANOSECONDS,
                    TimeKind::NtpNanos,
                    ntp_ms(v),
                );
            }
            _ => {}
        }
    }
    let mut rec = b.rec;
    let start = b.start.and_then(|(_, ms)| ms);
    let end = b.end.and_then(|(_, ms)| ms);
    (rec.start_ms, rec.end_ms) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, s),
        (None, Some(e)) => (e, e),
        (None, None) => (clock.export_ms, clock.export_ms),
    };
    if rec.tos == 0
        && let Some(dscp) = b.dscp
    {
        rec.tos = dscp << 2;
    }
    if rec.protocol == 1 || rec.protocol == 58 {
        if let Some(tc) = b.icmp_type_code {
            rec.dst_port = tc;
        } else if b.icmp_type.is_some() || b.icmp_code.is_some() {
            rec.dst_port =
                u16::from(b.icmp_type.unwrap_or(0)) << 8 | u16::from(b.icmp_code.unwrap_or(0));
        }
    }
    rec
}

/// The first field on which two records disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Position of the record (after sorting, see [`compare_records`]).
    pub index: usize,
    pub field: &'static str,
    pub nmsd: String,
    pub oracle: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {}: {} differs: nmsd {} vs oracle {}",
            self.index, self.field, self.nmsd, self.oracle
        )
    }
}

/// Compare one nmsd record with one oracle record; see the module docs for which fields count.
pub fn compare_record(nmsd: &FlowRecord, oracle: &FlowRecord) -> Result<(), Mismatch> {
    fn check<T: PartialEq + fmt::Debug>(field: &'static str, a: T, b: T) -> Result<(), Mismatch> {
        if a == b {
            Ok(())
        } else {
            Err(Mismatch {
                index: 0,
                field,
                nmsd: format!("{a:?}"),
                oracle: format!("{b:?}"),
            })
        }
    }
    let (n, o) = (nmsd, oracle);
    check("version", n.version, o.version)?;
    check("exporter", n.exporter, o.exporter)?;
    check(
        "observation_domain",
        n.observation_domain,
        o.observation_domain,
    )?;
    check("src_addr", n.src_addr, o.src_addr)?;
    check("dst_addr", n.dst_addr, o.dst_addr)?;
    check("next_hop", n.next_hop, o.next_hop)?;
    check("src_port", n.src_port, o.src_port)?;
    check("dst_port", n.dst_port, o.dst_port)?;
    check("protocol", n.protocol, o.protocol)?;
    check("tcp_flags", n.tcp_flags, o.tcp_flags)?;
    check("tos", n.tos, o.tos)?;
    check("in_if", n.in_if, o.in_if)?;
    check("out_if", n.out_if, o.out_if)?;
    check("src_as", n.src_as, o.src_as)?;
    check("dst_as", n.dst_as, o.dst_as)?;
    check("vlan", n.vlan, o.vlan)?;
    check("direction", n.direction, o.direction)?;
    check("start_ms", n.start_ms, o.start_ms)?;
    check("end_ms", n.end_ms, o.end_ms)?;
    if o.sampling_interval == SAMPLING_UNKNOWN {
        // Scaled here, so capped here too (see `nmsd_normalization`).
        let scale = u64::from(n.sampling_interval.max(1));
        let scaled = |v: u64| v.saturating_mul(scale).min(nmsd_parsers::MAX_FLOW_COUNTER);
        check("bytes", n.bytes, scaled(o.bytes))?;
        check("packets", n.packets, scaled(o.packets))?;
    } else {
        check(
            "sampling_interval",
            n.sampling_interval,
            o.sampling_interval,
        )?;
        check("bytes", n.bytes, o.bytes)?;
        check("packets", n.packets, o.packets)?;
    }
    Ok(())
}

/// Compare the records two decoders produced for the same input, as multisets.
///
/// Each nmsd record is matched with an equal (per [`compare_record`]) oracle record not yet
/// matched. The first nmsd record without a match is reported against an unmatched oracle
/// record of the same flow (addresses, ports, protocol) if there is one, else the first
/// unmatched one; `index` is its position in `nmsd`.
pub fn compare_records(nmsd: &[FlowRecord], oracle: &[FlowRecord]) -> Result<(), Mismatch> {
    if nmsd.len() != oracle.len() {
        return Err(Mismatch {
            index: nmsd.len().min(oracle.len()),
            field: "record count",
            nmsd: nmsd.len().to_string(),
            oracle: oracle.len().to_string(),
        });
    }
    let flow = |r: &FlowRecord| (r.src_addr, r.dst_addr, r.src_port, r.dst_port, r.protocol);
    let mut used = vec![false; oracle.len()];
    for (i, n) in nmsd.iter().enumerate() {
        let unused = || (0..oracle.len()).filter(|&j| !used[j]);
        if let Some(j) = unused().find(|&j| compare_record(n, &oracle[j]).is_ok()) {
            used[j] = true;
            continue;
        }
        let j = unused()
            .find(|&j| flow(&oracle[j]) == flow(n))
            .or_else(|| unused().next());
        if let Some(Err(m)) = j.map(|j| compare_record(n, &oracle[j])) {
            return Err(Mismatch { index: i, ..m });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{self, field};
    use nmsd_parsers::{TemplateDef, TemplateKind};

    fn data_template(id: u16, fields: Vec<nmsd_parsers::FieldSpec>) -> TemplateDef {
        TemplateDef {
            id,
            kind: TemplateKind::Data,
            fields,
        }
    }

    fn exporter() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    #[test]
    fn v9_matches_encoded_records() {
        let tmpl = encode::ipv4_template(256);
        let records = encode::sample_records(5, false, 1_767_225_600_000);
        let mut msg = encode::MessageBuilder::v9(1_000_000, 1_767_225_660, 1, 7);
        msg.template(&tmpl).data(&tmpl, &records);
        let got = oracle_decode(exporter(), &[&msg.finish()]);
        assert_eq!(got.len(), 5);
        for (g, r) in got.iter().zip(&records) {
            assert_eq!(g.src_addr, r.src_addr);
            assert_eq!(g.bytes, r.bytes);
            assert_eq!(g.start_ms, r.start_ms);
            assert_eq!(g.end_ms, r.end_ms);
            assert_eq!(g.observation_domain, 7);
            assert_eq!(g.sampling_interval, SAMPLING_UNKNOWN);
        }
    }

    #[test]
    fn early_data_is_replayed_with_its_own_header() {
        let tmpl = encode::ipv4_template(300);
        let records = encode::sample_records(2, false, 1_767_225_600_000);
        let mut data = encode::MessageBuilder::v9(1_000_000, 1_767_225_660, 1, 0);
        data.data(&tmpl, &records);
        let mut t = encode::MessageBuilder::v9(1_005_000, 1_767_225_665, 2, 0);
        t.template(&tmpl);
        let mut oracle = Oracle::new();
        assert_eq!(oracle.decode(exporter(), &data.finish()), Ok(vec![]));
        let got = oracle.decode(exporter(), &t.finish()).expect("accepted");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].start_ms, records[0].start_ms);
    }

    #[test]
    fn compare_reports_the_first_differing_field() {
        let a = encode::sample_records(3, false, 1_000);
        let mut b = a.clone();
        assert_eq!(compare_records(&a, &b), Ok(()));
        b.reverse();
        assert_eq!(compare_records(&a, &b), Ok(()), "order does not matter");
        b[0].tos ^= 4;
        let m = compare_records(&a, &b).expect_err("tos differs");
        assert_eq!(m.field, "tos");
        let unknown = FlowRecord {
            sampling_interval: SAMPLING_UNKNOWN,
            ..a[0]
        };
        let sampled = FlowRecord {
            sampling_interval: 10,
            bytes: a[0].bytes * 10,
            packets: a[0].packets * 10,
            ..a[0]
        };
        assert_eq!(compare_record(&sampled, &unknown), Ok(()));
        assert_eq!(
            compare_record(&a[0], &a[1]).map_err(|m| m.field),
            Err("src_addr")
        );
        assert!(compare_records(&a, &b[..2]).is_err());
    }

    #[test]
    fn a_repeated_element_keeps_its_first_occurrence() {
        let t = data_template(
            256,
            vec![
                field(ie::INGRESS_INTERFACE, 4),
                field(ie::INGRESS_INTERFACE, 4),
            ],
        );
        let mut m = encode::MessageBuilder::ipfix(1_767_225_660, 0, 0);
        m.template(&t).raw_set(256, &[0, 0, 0, 7, 0, 0, 0, 9]);
        let got = oracle_decode(exporter(), &[&m.finish()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].in_if, 7);
    }

    #[test]
    fn elements_sent_variable_length_are_ignored() {
        let t = data_template(
            256,
            vec![
                field(ie::SOURCE_IPV4_ADDRESS, 4),
                field(ie::EGRESS_INTERFACE, ie::VARIABLE_LENGTH),
            ],
        );
        let mut m = encode::MessageBuilder::ipfix(1_767_225_660, 0, 0);
        m.template(&t).raw_set(256, &[10, 0, 0, 1, 2, 0, 9]);
        let got = oracle_decode(exporter(), &[&m.finish()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].out_if, 0);
    }

    #[test]
    fn no_opinion_on_what_netflow_parser_skips_silently() {
        // A zero-length variable-length field (RFC 7011 §7 sets no minimum): netflow_parser
        // stops reading the set there.
        let t = data_template(
            256,
            vec![
                field(ie::SOURCE_IPV4_ADDRESS, 4),
                field(82, ie::VARIABLE_LENGTH),
            ],
        );
        let mut m = encode::MessageBuilder::ipfix(1_767_225_660, 0, 0);
        m.template(&t)
            .raw_set(256, &[10, 0, 0, 1, 0, 10, 0, 0, 2, 1, b'x']);
        assert!(Oracle::new().decode(exporter(), &m.finish()).is_err());
        // A template with a zero-length field: netflow_parser drops it.
        let t = data_template(
            257,
            vec![
                field(ie::SOURCE_IPV4_ADDRESS, 4),
                field(ie::PACKET_DELTA_COUNT, 0),
            ],
        );
        let mut m = encode::MessageBuilder::ipfix(1_767_225_660, 0, 0);
        m.template(&t);
        assert!(Oracle::new().decode(exporter(), &m.finish()).is_err());
    }
}
