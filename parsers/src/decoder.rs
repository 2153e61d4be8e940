//! The decoder: one datagram in, flow records out.
//!
//! One [`FlowDecoder`] owns the template cache of the exporters whose datagrams it sees. nmsd
//! gives each parse worker its own decoder and relies on SO_REUSEPORT sending an exporter's
//! datagrams to one socket, so no lock is taken on the hot path.

use std::net::IpAddr;

use crate::domain::{
    DomainKey, DomainState, DomainTable, Evicted, ExporterLoss, PendingSet, SequenceOutcome,
    plausible_gap,
};
use crate::error::DecodeError;
use crate::ie;
use crate::record::{FlowRecord, FlowVersion};
use crate::template::{
    ClockContext, CompiledTemplate, FieldSpec, Scratch, TemplateDef, TemplateKind, apply,
    fill_column, finish_record,
};

/// An address range, `192.0.2.0/24` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Whether `a` is inside; IPv4-mapped IPv6 addresses (a dual-stack socket's view of an
    /// IPv4 exporter) match IPv4 ranges.
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{s}\" is not an address or ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("\"{s}\": prefix must be 0..={max}")),
            }
        };
        Ok(IpNet {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

/// What happens to a record whose times are outside the plausible range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimePolicy {
    /// Replace the out-of-range time with the receive time (the record is kept).
    #[default]
    Clamp,
    /// Drop the record.
    Drop,
}

/// Plausible flow times, relative to the receive time. An exporter's clock (or a forged
/// record) can put a flow anywhere in 64 bits of milliseconds; storage cannot take all of it
/// (QuestDB's nanosecond timestamps end in 2262) and roll-up windows centuries away are noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBounds {
    /// A time later than receive time + this is out of range.
    pub max_future_ms: u64,
    /// A time earlier than receive time - this is out of range.
    pub max_past_ms: u64,
    pub policy: TimePolicy,
}

/// Most bytes or packets one flow record may claim (2^50, ~1.1 PB: a 100 Gb/s link for a
/// day is under 2^50 bytes). Larger values are garbage or forged; they are clamped (and
/// counted) so that sums over thousands of records still fit a signed 64-bit column.
pub const MAX_FLOW_COUNTER: u64 = 1 << 50;

/// Bounds on what the decoder keeps per worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Exporter domains tracked at once. When full, the least useful domains are evicted
    /// (template-less and quiet ones first), so a flood of forged headers cannot lock out a
    /// real exporter.
    pub max_domains: usize,
    /// Domains per exporter address; past it that address's least useful domains are evicted.
    pub max_domains_per_exporter: usize,
    /// A domain with no templates and no buffered data is forgotten after this long without a
    /// datagram (ms). Domains with templates live for `template_timeout_ms`.
    pub idle_domain_timeout_ms: u64,
    /// When not empty, datagrams from other addresses are refused (counted).
    pub allowed_exporters: Vec<IpNet>,
    /// Plausible flow times; `None` takes any time.
    pub time_bounds: Option<TimeBounds>,
    /// Templates (data and options) per domain.
    pub max_templates_per_domain: usize,
    /// A template not refreshed for this long is forgotten (ms).
    pub template_timeout_ms: u64,
    /// Data sets buffered per domain while their template is unknown.
    pub pending_sets_per_domain: usize,
    /// Bytes buffered for early data sets across all domains.
    pub pending_bytes_total: usize,
    /// Buffered data sets older than this are dropped (ms).
    pub pending_timeout_ms: u64,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_domains: 4096,
            max_domains_per_exporter: 256,
            idle_domain_timeout_ms: 120_000,
            allowed_exporters: Vec::new(),
            time_bounds: None,
            max_templates_per_domain: 512,
            template_timeout_ms: 6 * 3600 * 1000,
            pending_sets_per_domain: 32,
            pending_bytes_total: 4 << 20,
            pending_timeout_ms: 30_000,
        }
    }
}

/// Cumulative counters. The owner reads them periodically and exports deltas, which keeps metric
/// calls off the per-record path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Datagrams per version: v5, v9, IPFIX.
    pub datagrams: [u64; 3],
    /// Flow records produced per version: v5, v9, IPFIX.
    pub records: [u64; 3],
    /// Errors by [`DecodeError::KINDS`] index.
    pub errors: [u64; DecodeError::KINDS.len()],
    /// Options data records read (sampling, system init time).
    pub options_records: u64,
    /// Templates received that were new or changed.
    pub templates_learned: u64,
    /// Template refreshes identical to what was known.
    pub templates_refreshed: u64,
    /// Templates dropped by expiry or withdrawal.
    pub templates_removed: u64,
    /// Data sets held back because their template was not known yet.
    pub sets_buffered: u64,
    /// Buffered data sets decoded once their template arrived.
    pub sets_replayed: u64,
    /// Data sets dropped for want of a template (buffer full, timed out, or buffering off).
    pub sets_dropped_no_template: u64,
    /// Flow records missing according to v5/IPFIX sequence numbers.
    pub sequence_lost_flows: u64,
    /// Export datagrams missing according to v9 sequence numbers.
    pub sequence_lost_datagrams: u64,
    /// Sequence numbers that went backwards or jumped (exporter restart, reordering).
    pub sequence_resets: u64,
    /// Domains evicted to make room (table full, or the exporter at its domain cap).
    pub domains_evicted: u64,
    /// Datagrams refused because their source is not in `allowed_exporters`.
    pub datagrams_not_allowed: u64,
    /// Records with a time after receive time + `max_future` (clamped or dropped).
    pub times_future: u64,
    /// Records with a time before receive time - `max_past` (clamped or dropped).
    pub times_past: u64,
    /// Records dropped for their times (`TimePolicy::Drop`).
    pub records_dropped_time: u64,
    /// Records whose bytes or packets exceeded [`MAX_FLOW_COUNTER`] and were clamped.
    pub counters_clamped: u64,
}

impl DecoderStats {
    fn count_error(&mut self, e: &DecodeError) {
        if let Some(i) = DecodeError::KINDS.iter().position(|k| *k == e.kind()) {
            self.errors[i] += 1;
        }
    }
}

/// Version index into the per-version stat arrays.
fn vidx(v: FlowVersion) -> usize {
    match v {
        // The flow decoder never produces packet-built records; they have no stats here.
        FlowVersion::NetflowV5 | FlowVersion::Packets | FlowVersion::Sflow => 0,
        FlowVersion::NetflowV9 => 1,
        FlowVersion::Ipfix => 2,
    }
}

/// NetFlow v9 / IPFIX differences that matter to the shared set walker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Templated {
    V9,
    Ipfix,
}

impl Templated {
    fn version(self) -> FlowVersion {
        match self {
            Templated::V9 => FlowVersion::NetflowV9,
            Templated::Ipfix => FlowVersion::Ipfix,
        }
    }
    fn template_set(self) -> u16 {
        match self {
            Templated::V9 => 0,
            Templated::Ipfix => 2,
        }
    }
    fn options_set(self) -> u16 {
        match self {
            Templated::V9 => 1,
            Templated::Ipfix => 3,
        }
    }
}

/// NetFlow v5/v9/IPFIX decoder with its template cache.
#[derive(Debug)]
pub struct FlowDecoder {
    domains: DomainTable,
    cx: DecoderContext,
}

/// Everything but the domains, split off so a datagram can hold `&mut DomainState` (looked up
/// once per datagram) and this at the same time.
#[derive(Debug)]
struct DecoderContext {
    limits: DecoderLimits,
    overrides: Vec<(IpAddr, u32)>,
    /// The source of the datagram being decoded.
    source: u8,
    pending_bytes: usize,
    stats: DecoderStats,
    /// Reused while reading template records, so a refresh allocates nothing.
    field_scratch: Vec<FieldSpec>,
}

impl Default for FlowDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl FlowDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        FlowDecoder {
            domains: DomainTable::default(),
            cx: DecoderContext {
                limits,
                overrides: Vec::new(),
                source: 0,
                pending_bytes: 0,
                stats: DecoderStats::default(),
                field_scratch: Vec::with_capacity(64),
            },
        }
    }

    /// Force a sampling interval for an exporter, whatever it announces.
    pub fn set_sampling_override(&mut self, exporter: IpAddr, interval: u32) {
        self.cx.overrides.retain(|(a, _)| *a != exporter);
        self.cx.overrides.push((exporter, interval.max(1)));
    }

    pub fn stats(&self) -> &DecoderStats {
        &self.cx.stats
    }

    pub fn limits(&self) -> &DecoderLimits {
        &self.cx.limits
    }

    /// Templates currently known, over all domains.
    pub fn template_count(&self) -> usize {
        self.domains.iter().map(|(_, d)| d.templates.len()).sum()
    }

    /// Exporter domains currently tracked.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Decode one datagram from `exporter`, appending records to `out`.
    ///
    /// Returns the number of records appended. On error the records decoded before the bad part
    /// stay in `out`, and the error says what was wrong. Never panics on any input.
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<usize, DecodeError> {
        self.decode_from_source(0, exporter, datagram, now_ms, out)
    }

    /// [`FlowDecoder::decode`] for a datagram received by flow source `source` (its position
    /// in the config); records and exporter state are kept apart per source.
    pub fn decode_from_source(
        &mut self,
        source: u8,
        exporter: IpAddr,
        datagram: &[u8],
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<usize, DecodeError> {
        self.cx.source = source;
        if !self.cx.limits.allowed_exporters.is_empty()
            && !self
                .cx
                .limits
                .allowed_exporters
                .iter()
                .any(|n| n.contains(exporter))
        {
            self.cx.stats.datagrams_not_allowed += 1;
            return Ok(0);
        }
        let before = out.len();
        let result = match datagram {
            // Counts its errors per set, since one datagram may hold several bad sets.
            [0, 9, ..] => self.decode_templated(Templated::V9, exporter, datagram, now_ms, out),
            [0, 10, ..] => self.decode_templated(Templated::Ipfix, exporter, datagram, now_ms, out),
            _ => {
                let r = match datagram {
                    [0, 5, ..] => self.decode_v5(exporter, datagram, now_ms, out),
                    [a, b, ..] => Err(DecodeError::UnknownVersion(u16::from_be_bytes([*a, *b]))),
                    _ => Err(DecodeError::Truncated {
                        what: "version field",
                        need: 2,
                        have: datagram.len(),
                    }),
                };
                if let Err(e) = &r {
                    self.cx.stats.count_error(e);
                }
                r
            }
        };
        self.cx.check_records(now_ms, out, before);
        result.map(|_| out.len() - before)
    }

    fn domain(&mut self, key: DomainKey, now_ms: u64) -> &mut DomainState {
        self.cx.domain(&mut self.domains, key, now_ms)
    }

    fn decode_v5(
        &mut self,
        exporter: IpAddr,
        d: &[u8],
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        const HEADER: usize = 24;
        const RECORD: usize = 48;
        if d.len() < HEADER {
            return Err(DecodeError::Truncated {
                what: "NetFlow v5 header",
                need: HEADER,
                have: d.len(),
            });
        }
        let count = u16::from_be_bytes([d[2], d[3]]);
        if count == 0 || count > 30 {
            return Err(DecodeError::BadRecordCount {
                count,
                len: d.len(),
            });
        }
        let need = HEADER + RECORD * count as usize;
        if d.len() < need {
            return Err(DecodeError::Truncated {
                what: "NetFlow v5 records",
                need,
                have: d.len(),
            });
        }
        let uptime = be32(&d[4..8]);
        let secs = be32(&d[8..12]) as u64;
        let nsecs = be32(&d[12..16]) as u64;
        let seq = be32(&d[16..20]);
        let domain_id = (d[20] as u32) << 8 | d[21] as u32;
        let header_interval = (u16::from_be_bytes([d[22], d[23]]) & 0x3FFF) as u32;
        let clock = ClockContext {
            export_ms: secs * 1000 + nsecs / 1_000_000,
            sys_uptime_ms: Some(uptime),
            system_init_ms: None,
        };
        let sampling = self
            .cx
            .override_for(exporter)
            .unwrap_or(header_interval.max(1));
        let key = DomainKey {
            exporter,
            domain: domain_id,
            version: FlowVersion::NetflowV5,
            source: self.cx.source,
        };
        let dom = self.domain(key, now_ms);
        dom.sampling.default_interval = header_interval;
        dom.last_useful_ms = now_ms;
        let max_gap = plausible_gap(true, now_ms.saturating_sub(dom.prev_seen_ms));
        let seq_outcome = dom
            .sequence
            .observe(seq, Some(count as u32), 0, false, max_gap);
        dom.unreported_loss.add(seq_outcome, true);
        self.cx.count_sequence(seq_outcome, true);
        self.cx.stats.datagrams[0] += 1;

        let base = FlowRecord {
            exporter,
            observation_domain: domain_id,
            version: FlowVersion::NetflowV5,
            source: self.cx.source,
            ..FlowRecord::EMPTY
        };
        out.reserve(count as usize);
        for r in d[HEADER..need].chunks_exact(RECORD) {
            let mut rec = base;
            rec.src_addr = IpAddr::from([r[0], r[1], r[2], r[3]]);
            rec.dst_addr = IpAddr::from([r[4], r[5], r[6], r[7]]);
            rec.next_hop = IpAddr::from([r[8], r[9], r[10], r[11]]);
            rec.in_if = u16::from_be_bytes([r[12], r[13]]) as u32;
            rec.out_if = u16::from_be_bytes([r[14], r[15]]) as u32;
            rec.packets = be32(&r[16..20]) as u64;
            rec.bytes = be32(&r[20..24]) as u64;
            let first = be32(&r[24..28]);
            let last = be32(&r[28..32]);
            rec.src_port = u16::from_be_bytes([r[32], r[33]]);
            rec.dst_port = u16::from_be_bytes([r[34], r[35]]);
            rec.tcp_flags = r[37];
            rec.protocol = r[38];
            crate::template::normalize_icmp_ports(&mut rec);
            rec.tos = r[39];
            rec.src_as = u16::from_be_bytes([r[40], r[41]]) as u32;
            rec.dst_as = u16::from_be_bytes([r[42], r[43]]) as u32;
            rec.start_ms = uptime_to_unix(first, &clock);
            rec.end_ms = uptime_to_unix(last, &clock);
            if sampling > 1 {
                rec.sampling_interval = sampling;
                rec.bytes = rec.bytes.saturating_mul(sampling as u64);
                rec.packets = rec.packets.saturating_mul(sampling as u64);
            }
            out.push(rec);
        }
        self.cx.stats.records[0] += count as u64;
        Ok(())
    }

    /// Hand over, per exporter domain, the loss seen since the last call, and reset it.
    /// The owner exports it with an exporter label (loss visibility per exporter).
    pub fn take_exporter_loss(&mut self, mut f: impl FnMut(&DomainKey, ExporterLoss)) {
        for (key, dom) in self.domains.iter_mut() {
            if !dom.unreported_loss.is_zero() {
                f(key, std::mem::take(&mut dom.unreported_loss));
            }
        }
    }

    fn decode_templated(
        &mut self,
        kind: Templated,
        exporter: IpAddr,
        d: &[u8],
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        let Self { domains, cx } = self;
        let version = kind.version();
        let (header_len, seq, domain_id, mut clock, body_end) =
            match Self::templated_header(kind, d) {
                Ok(h) => h,
                Err(e) => {
                    cx.stats.count_error(&e);
                    return Err(e);
                }
            };
        // The domain is looked up once per datagram, not once per set.
        let key = DomainKey {
            exporter,
            domain: domain_id,
            version,
            source: cx.source,
        };
        let dom = cx.domain(domains, key, now_ms);
        let sampling_override = cx.override_for(exporter);
        let vi = vidx(version);
        cx.stats.datagrams[vi] += 1;

        let before = out.len();
        let useful_marker = cx.stats.templates_learned + cx.stats.templates_refreshed;
        let mut data_records: u32 = 0;
        let mut options_records: u32 = 0;
        let mut advance_known = true;
        let mut first_error = None;
        let mut pos = header_len;
        while body_end - pos >= 4 {
            let set_id = u16::from_be_bytes([d[pos], d[pos + 1]]);
            let set_len = u16::from_be_bytes([d[pos + 2], d[pos + 3]]) as usize;
            if set_len < 4 || set_len > body_end - pos {
                // The walk cannot go on past a bad length; count it like every other error.
                let e = DecodeError::BadSetLength {
                    set_id,
                    len: set_len,
                    remaining: body_end - pos,
                };
                cx.stats.count_error(&e);
                first_error.get_or_insert(e);
                break;
            }
            let body = &d[pos + 4..pos + set_len];
            pos += set_len;
            if set_id == kind.template_set() || set_id == kind.options_set() {
                let options = set_id == kind.options_set();
                let r = cx.read_template_set(kind, key, dom, options, body, now_ms, out);
                if let Err(e) = r {
                    cx.stats.count_error(&e);
                    first_error.get_or_insert(e);
                }
            } else if set_id >= 256 {
                let options_before = cx.stats.options_records;
                let r = cx.read_data_set(
                    key,
                    dom,
                    set_id,
                    body,
                    &mut clock,
                    sampling_override,
                    now_ms,
                    out,
                );
                match r {
                    Ok(Some(n)) => {
                        data_records += n;
                        // Options records are counted by read_data_set as they are learned.
                        options_records += (cx.stats.options_records - options_before) as u32;
                    }
                    Ok(None) => advance_known = false,
                    Err(e) => {
                        cx.stats.count_error(&e);
                        advance_known = false;
                        first_error.get_or_insert(e);
                    }
                }
            } else {
                let e = DecodeError::ReservedSetId(set_id);
                cx.stats.count_error(&e);
                first_error.get_or_insert(e);
            }
        }

        // The sequence number says how many records (IPFIX) or datagrams (v9) were lost.
        let (advance, flows) = match kind {
            Templated::V9 => (Some(1), false),
            Templated::Ipfix => (advance_known.then_some(data_records), true),
        };
        let ipfix = kind == Templated::Ipfix;
        if out.len() > before
            || cx.stats.templates_learned + cx.stats.templates_refreshed > useful_marker
        {
            dom.last_useful_ms = now_ms;
        }
        let max_gap = plausible_gap(flows, now_ms.saturating_sub(dom.prev_seen_ms));
        let outcome = dom
            .sequence
            .observe(seq, advance, options_records, ipfix, max_gap);
        dom.unreported_loss.add(outcome, flows);
        cx.count_sequence(outcome, flows);
        cx.stats.records[vi] += (out.len() - before) as u64;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Parse a v9 or IPFIX header: (header length, sequence, domain id, clock, end of message).
    fn templated_header(
        kind: Templated,
        d: &[u8],
    ) -> Result<(usize, u32, u32, ClockContext, usize), DecodeError> {
        Ok(match kind {
            Templated::V9 => {
                if d.len() < 20 {
                    return Err(DecodeError::Truncated {
                        what: "NetFlow v9 header",
                        need: 20,
                        have: d.len(),
                    });
                }
                let clock = ClockContext {
                    export_ms: be32(&d[8..12]) as u64 * 1000,
                    sys_uptime_ms: Some(be32(&d[4..8])),
                    system_init_ms: None,
                };
                (20, be32(&d[12..16]), be32(&d[16..20]), clock, d.len())
            }
            Templated::Ipfix => {
                if d.len() < 16 {
                    return Err(DecodeError::Truncated {
                        what: "IPFIX header",
                        need: 16,
                        have: d.len(),
                    });
                }
                let len = u16::from_be_bytes([d[2], d[3]]) as usize;
                if len < 16 || len > d.len() {
                    return Err(DecodeError::LengthMismatch {
                        header: len,
                        actual: d.len(),
                    });
                }
                let clock = ClockContext {
                    export_ms: be32(&d[4..8]) as u64 * 1000,
                    sys_uptime_ms: None,
                    system_init_ms: None,
                };
                (16, be32(&d[8..12]), be32(&d[12..16]), clock, len)
            }
        })
    }

    /// Forget templates not refreshed within the timeout, early data past its wait, and domains
    /// that have gone quiet. Call it every few seconds.
    pub fn expire(&mut self, now_ms: u64) {
        let limits = self.cx.limits.clone();
        let mut removed = 0u64;
        let mut dropped_sets = 0u64;
        let mut freed = 0usize;
        self.domains.retain(|_, dom| {
            let before = dom.templates.len();
            dom.templates
                .retain(|_, t| now_ms.saturating_sub(t.refreshed_ms) <= limits.template_timeout_ms);
            removed += (before - dom.templates.len()) as u64;
            dom.pending.retain(|p| {
                let keep = now_ms.saturating_sub(p.received_ms) <= limits.pending_timeout_ms;
                if !keep {
                    dropped_sets += 1;
                    freed += p.data.len();
                }
                keep
            });
            // A domain that holds nothing is cheap to make again: forget it soon, so that
            // headers with made-up source ids do not sit in the table for hours.
            let idle = now_ms.saturating_sub(dom.last_seen_ms);
            if dom.templates.is_empty() && dom.pending.is_empty() {
                idle <= limits
                    .idle_domain_timeout_ms
                    .min(limits.template_timeout_ms)
            } else {
                !dom.templates.is_empty() || idle <= limits.template_timeout_ms
            }
        });
        self.cx.stats.templates_removed += removed;
        self.cx.stats.sets_dropped_no_template += dropped_sets;
        self.cx.pending_bytes -= freed;
    }

    /// Templates and sampling state of every domain, for persistence.
    pub(crate) fn domains(&self) -> impl Iterator<Item = (&DomainKey, &DomainState)> {
        self.domains.iter()
    }

    /// Install a persisted template (no replay, no stats).
    pub(crate) fn restore_template(
        &mut self,
        key: DomainKey,
        def: TemplateDef,
        refreshed_ms: u64,
    ) -> Result<(), DecodeError> {
        let limit = self.cx.limits.max_templates_per_domain;
        let compiled = CompiledTemplate::compile(def, refreshed_ms)?;
        let dom = self.domain(key, refreshed_ms);
        dom.last_useful_ms = dom.last_useful_ms.max(refreshed_ms);
        if dom.templates.len() >= limit && !dom.templates.contains_key(&compiled.def.id) {
            return Err(DecodeError::TemplateLimit {
                template_id: compiled.def.id,
                limit,
            });
        }
        // Keep the newer one when several snapshots carry the same template.
        match dom.templates.get(&compiled.def.id) {
            Some(existing) if existing.refreshed_ms >= refreshed_ms => {}
            _ => {
                dom.templates.insert(compiled.def.id, compiled);
            }
        }
        Ok(())
    }

    pub(crate) fn restore_sampling(
        &mut self,
        key: DomainKey,
        sampling: crate::domain::SamplingState,
        now_ms: u64,
    ) -> Result<(), DecodeError> {
        let dom = self.domain(key, now_ms);
        dom.sampling = sampling;
        Ok(())
    }
}

impl DecoderContext {
    /// The domain for `key`, made room for if the table or its exporter is full.
    fn domain<'a>(
        &mut self,
        domains: &'a mut DomainTable,
        key: DomainKey,
        now_ms: u64,
    ) -> &'a mut DomainState {
        let (dom, evicted) = domains.get_or_insert(
            key,
            now_ms,
            self.limits.max_domains,
            self.limits.max_domains_per_exporter,
        );
        if evicted != Evicted::default() {
            self.stats.domains_evicted += evicted.domains;
            self.stats.sets_dropped_no_template += evicted.pending_sets;
            self.pending_bytes -= evicted.pending_bytes;
        }
        dom
    }

    /// One pass over the records a datagram produced, from `from` on: clamp counters no flow
    /// can reach (see [`MAX_FLOW_COUNTER`]) and apply the time policy, if any.
    fn check_records(&mut self, now_ms: u64, out: &mut Vec<FlowRecord>, from: usize) {
        let bounds = self.limits.time_bounds;
        let (earliest, latest) = bounds.map_or((0, u64::MAX), |b| {
            (
                now_ms.saturating_sub(b.max_past_ms),
                now_ms.saturating_add(b.max_future_ms),
            )
        });
        let in_range = |t: u64| (earliest..=latest).contains(&t);
        let mut kept = from;
        for i in from..out.len() {
            let r = &mut out[i];
            if r.bytes > MAX_FLOW_COUNTER || r.packets > MAX_FLOW_COUNTER {
                r.bytes = r.bytes.min(MAX_FLOW_COUNTER);
                r.packets = r.packets.min(MAX_FLOW_COUNTER);
                self.stats.counters_clamped += 1;
            }
            if let Some(b) = bounds
                && !(in_range(r.start_ms) && in_range(r.end_ms))
            {
                if r.start_ms > latest || r.end_ms > latest {
                    self.stats.times_future += 1;
                } else {
                    self.stats.times_past += 1;
                }
                match b.policy {
                    TimePolicy::Drop => {
                        self.stats.records_dropped_time += 1;
                        continue;
                    }
                    TimePolicy::Clamp => {
                        if !in_range(r.end_ms) {
                            r.end_ms = now_ms;
                        }
                        if !in_range(r.start_ms) || r.start_ms > r.end_ms {
                            r.start_ms = r.end_ms;
                        }
                    }
                }
            }
            // Records move down only once one was dropped.
            if kept != i {
                out[kept] = out[i];
            }
            kept += 1;
        }
        out.truncate(kept);
    }

    fn override_for(&self, exporter: IpAddr) -> Option<u32> {
        if self.overrides.is_empty() {
            return None;
        }
        self.overrides
            .iter()
            .find(|(a, _)| *a == exporter)
            .map(|(_, i)| *i)
    }

    fn count_sequence(&mut self, outcome: SequenceOutcome, flows: bool) {
        let mut l = ExporterLoss::default();
        l.add(outcome, flows);
        self.stats.sequence_lost_flows += l.lost_flows;
        self.stats.sequence_lost_datagrams += l.lost_datagrams;
        self.stats.sequence_resets += l.resets;
    }

    /// Read a template or options template set; replay buffered data for templates it brings.
    #[allow(clippy::too_many_arguments)]
    fn read_template_set(
        &mut self,
        kind: Templated,
        key: DomainKey,
        dom: &mut DomainState,
        options: bool,
        body: &[u8],
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        let mut pos = 0;
        // Records shorter than a template header are padding (RFC 7011 §3.3.1).
        while body.len() - pos >= 4 {
            let template_id = u16::from_be_bytes([body[pos], body[pos + 1]]);
            let (scope_fields, consumed) =
                match self.read_template_record(kind, options, &body[pos..])? {
                    Some(r) => r,
                    None => {
                        // IPFIX withdrawal (field count 0).
                        self.withdraw(dom, template_id, options);
                        pos += 4;
                        continue;
                    }
                };
            pos += consumed;
            let tkind = if options {
                TemplateKind::Options { scope_fields }
            } else {
                TemplateKind::Data
            };
            self.install_template(key, dom, template_id, tkind, now_ms, out)?;
        }
        Ok(())
    }

    /// Parse one template record into `self.field_scratch`. Returns the scope field count and
    /// bytes consumed, or `None` for an IPFIX withdrawal.
    fn read_template_record(
        &mut self,
        kind: Templated,
        options: bool,
        b: &[u8],
    ) -> Result<Option<(u16, usize)>, DecodeError> {
        let template_id = u16::from_be_bytes([b[0], b[1]]);
        let truncated = DecodeError::BadTemplate {
            template_id,
            reason: "template record runs past its set",
        };
        self.field_scratch.clear();
        let mut pos;
        let (total, scope) = match (kind, options) {
            (Templated::V9, false) | (Templated::Ipfix, false) => {
                let count = u16::from_be_bytes([b[2], b[3]]) as usize;
                pos = 4;
                (count, 0)
            }
            (Templated::V9, true) => {
                // v9 options template: scope and option lengths are in bytes, 4 per field.
                if b.len() < 6 {
                    return Err(truncated);
                }
                let scope_len = u16::from_be_bytes([b[2], b[3]]) as usize;
                let opt_len = u16::from_be_bytes([b[4], b[5]]) as usize;
                if !scope_len.is_multiple_of(4) || !opt_len.is_multiple_of(4) {
                    return Err(DecodeError::BadTemplate {
                        template_id,
                        reason: "options template lengths are not multiples of 4",
                    });
                }
                pos = 6;
                (scope_len / 4 + opt_len / 4, scope_len / 4)
            }
            (Templated::Ipfix, true) => {
                let count = u16::from_be_bytes([b[2], b[3]]) as usize;
                if count == 0 {
                    return Ok(None);
                }
                if b.len() < 6 {
                    return Err(truncated);
                }
                let scope = u16::from_be_bytes([b[4], b[5]]) as usize;
                if scope == 0 || scope > count {
                    return Err(DecodeError::BadTemplate {
                        template_id,
                        reason: "options template scope count is 0 or exceeds field count",
                    });
                }
                pos = 6;
                (count, scope)
            }
        };
        if total == 0 {
            return match kind {
                Templated::Ipfix => Ok(None),
                Templated::V9 => Err(DecodeError::BadTemplate {
                    template_id,
                    reason: "template has no fields",
                }),
            };
        }
        if total > crate::template::MAX_TEMPLATE_FIELDS {
            return Err(DecodeError::BadTemplate {
                template_id,
                reason: "template has more than 512 fields",
            });
        }
        for _ in 0..total {
            if b.len() < pos + 4 {
                return Err(truncated);
            }
            let raw_id = u16::from_be_bytes([b[pos], b[pos + 1]]);
            let len = u16::from_be_bytes([b[pos + 2], b[pos + 3]]);
            pos += 4;
            let mut enterprise = 0;
            let mut id = raw_id;
            if kind == Templated::Ipfix && raw_id & 0x8000 != 0 {
                if b.len() < pos + 4 {
                    return Err(truncated);
                }
                enterprise = be32(&b[pos..pos + 4]);
                // With the bit set a field is enterprise-specific whatever its number (RFC 7011
                // §3.2), and PEN 0 is IANA's reserved number, not IANA's elements: keeping the
                // bit in the id makes such a field match no IANA element (it was once read as
                // octetDeltaCount). Other PENs are told apart by `enterprise`.
                if enterprise != 0 {
                    id = raw_id & 0x7FFF;
                }
                pos += 4;
            }
            if kind == Templated::V9 && len == ie::VARIABLE_LENGTH {
                return Err(DecodeError::BadTemplate {
                    template_id,
                    reason: "NetFlow v9 has no variable-length fields",
                });
            }
            self.field_scratch.push(FieldSpec {
                id,
                len,
                enterprise,
            });
        }
        Ok(Some((scope as u16, pos)))
    }

    fn withdraw(&mut self, dom: &mut DomainState, template_id: u16, options: bool) {
        let before = dom.templates.len();
        // Withdrawing the set id itself (2 or 3) withdraws every template of that kind.
        if template_id == 2 || template_id == 3 {
            dom.templates.retain(|_, t| t.is_options() != options);
        } else {
            dom.templates.remove(&template_id);
        }
        self.stats.templates_removed += (before - dom.templates.len()) as u64;
    }

    fn install_template(
        &mut self,
        key: DomainKey,
        dom: &mut DomainState,
        template_id: u16,
        kind: TemplateKind,
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        let limit = self.limits.max_templates_per_domain;
        if let Some(existing) = dom.templates.get_mut(&template_id)
            && existing.def.kind == kind
            && existing.def.fields == self.field_scratch
        {
            existing.refreshed_ms = now_ms;
            self.stats.templates_refreshed += 1;
            return Ok(());
        }
        if !dom.templates.contains_key(&template_id) && dom.templates.len() >= limit {
            return Err(DecodeError::TemplateLimit { template_id, limit });
        }
        let def = TemplateDef {
            id: template_id,
            kind,
            fields: self.field_scratch.clone(),
        };
        let compiled = CompiledTemplate::compile(def, now_ms)?;
        dom.templates.insert(template_id, compiled);
        self.stats.templates_learned += 1;
        self.replay_pending(key, dom, template_id, now_ms, out);
        Ok(())
    }

    fn replay_pending(
        &mut self,
        key: DomainKey,
        dom: &mut DomainState,
        template_id: u16,
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        if !dom.pending.iter().any(|p| p.template_id == template_id) {
            return;
        }
        let sets: Vec<PendingSet> = {
            let (take, keep): (Vec<_>, Vec<_>) = dom
                .pending
                .drain(..)
                .partition(|p| p.template_id == template_id);
            dom.pending.extend(keep);
            take
        };
        let sampling_override = self.override_for(key.exporter);
        for mut p in sets {
            self.pending_bytes -= p.data.len();
            if now_ms.saturating_sub(p.received_ms) > self.limits.pending_timeout_ms {
                self.stats.sets_dropped_no_template += 1;
                continue;
            }
            self.stats.sets_replayed += 1;
            let result = self.read_data_set(
                key,
                dom,
                template_id,
                &p.data,
                &mut p.clock,
                sampling_override,
                now_ms,
                out,
            );
            if let Err(e) = result {
                self.stats.count_error(&e);
            }
        }
    }

    /// Decode a data set. `Ok(Some(n))`: n data records (options records included);
    /// `Ok(None)`: template unknown, the set was buffered or dropped.
    #[allow(clippy::too_many_arguments)]
    fn read_data_set(
        &mut self,
        key: DomainKey,
        dom: &mut DomainState,
        template_id: u16,
        body: &[u8],
        clock: &mut ClockContext,
        sampling_override: Option<u32>,
        now_ms: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<Option<u32>, DecodeError> {
        let timeout = self.limits.template_timeout_ms;
        let expired = dom
            .templates
            .get(&template_id)
            .is_some_and(|t| now_ms.saturating_sub(t.refreshed_ms) > timeout);
        if expired {
            dom.templates.remove(&template_id);
            self.stats.templates_removed += 1;
        }
        let Some(tmpl) = dom.templates.get(&template_id) else {
            self.buffer_pending(dom, template_id, body, clock, now_ms);
            return Ok(None);
        };
        let sampling = &mut dom.sampling;
        clock.system_init_ms = sampling.system_init_ms;
        if tmpl.is_options() {
            let n = decode_options(tmpl, body, sampling)?;
            self.stats.options_records += n as u64;
            return Ok(Some(n));
        }
        let base = FlowRecord {
            exporter: key.exporter,
            observation_domain: key.domain,
            version: key.version,
            source: key.source,
            ..FlowRecord::EMPTY
        };
        let n = decode_records(tmpl, body, &base, clock, sampling, sampling_override, out)?;
        Ok(Some(n))
    }

    fn buffer_pending(
        &mut self,
        dom: &mut DomainState,
        template_id: u16,
        body: &[u8],
        clock: &ClockContext,
        now_ms: u64,
    ) {
        let limits = &self.limits;
        // Drop what has waited too long first, so a stuck set does not block newer ones.
        while let Some(front) = dom.pending.front() {
            if now_ms.saturating_sub(front.received_ms) <= limits.pending_timeout_ms {
                break;
            }
            if let Some(p) = dom.pending.pop_front() {
                self.pending_bytes -= p.data.len();
                self.stats.sets_dropped_no_template += 1;
            }
        }
        if dom.pending.len() >= limits.pending_sets_per_domain
            || self.pending_bytes + body.len() > limits.pending_bytes_total
        {
            self.stats.sets_dropped_no_template += 1;
            return;
        }
        self.pending_bytes += body.len();
        self.stats.sets_buffered += 1;
        dom.pending.push_back(PendingSet {
            template_id,
            clock: *clock,
            received_ms: now_ms,
            data: body.to_vec(),
        });
    }
}

#[inline(always)]
fn be32(b: &[u8]) -> u32 {
    match *b {
        [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[inline]
fn uptime_to_unix(t: u32, clock: &ClockContext) -> u64 {
    crate::template::to_unix_ms(crate::template::TimeSource::Uptime, t as u64, clock)
        .unwrap_or(clock.export_ms)
}

/// Decode the flow records of one data set. This is the hot loop.
fn decode_records(
    tmpl: &CompiledTemplate,
    body: &[u8],
    base: &FlowRecord,
    clock: &ClockContext,
    sampling: &crate::domain::SamplingState,
    sampling_override: Option<u32>,
    out: &mut Vec<FlowRecord>,
) -> Result<u32, DecodeError> {
    if let Some(len) = tmpl.fixed_len {
        let n = body.len() / len;
        // Records are written in place: the base is copied into the output once and the
        // fields are set there, rather than built on the stack and copied again by push.
        let start = out.len();
        out.resize(start + n, *base);
        let recs = &mut out[start..];
        // Slot by slot over the whole set, then record by record for what needs the rest.
        let (fill, scratch) = tmpl.split_ops();
        for op in fill {
            fill_column(op, recs, body, len);
        }
        for (rec, r) in recs.iter_mut().zip(body.chunks_exact(len)) {
            let mut s = Scratch::default();
            for op in scratch {
                let at = op.offset as usize;
                if let Some(f) = r.get(at..at + op.len as usize) {
                    apply(op.target, f, rec, &mut s);
                }
            }
            let interval = sampling_override.unwrap_or_else(|| sampling.interval_for(s.sampler_id));
            finish_record(rec, &s, tmpl, clock, interval);
        }
        return Ok(n as u32);
    }
    let mut n = 0;
    walk_variable(tmpl, body, |rec_s| {
        let (mut rec, s) = rec_s;
        rec.exporter = base.exporter;
        rec.observation_domain = base.observation_domain;
        rec.version = base.version;
        rec.source = base.source;
        let interval = sampling_override.unwrap_or_else(|| sampling.interval_for(s.sampler_id));
        finish_record(&mut rec, &s, tmpl, clock, interval);
        out.push(rec);
        n += 1;
    })?;
    Ok(n)
}

/// Walk records of a template with variable-length fields.
fn walk_variable(
    tmpl: &CompiledTemplate,
    body: &[u8],
    mut each: impl FnMut((FlowRecord, Scratch)),
) -> Result<(), DecodeError> {
    let mut pos = 0;
    while body.len() - pos >= tmpl.min_len {
        let mut rec = FlowRecord::EMPTY;
        let mut s = Scratch::default();
        for &(len, target) in &tmpl.walk {
            let flen = if len == ie::VARIABLE_LENGTH {
                let Some(&l) = body.get(pos) else {
                    return Err(DecodeError::BadVariableLength);
                };
                pos += 1;
                if l < 255 {
                    l as usize
                } else {
                    let Some(b) = body.get(pos..pos + 2) else {
                        return Err(DecodeError::BadVariableLength);
                    };
                    pos += 2;
                    u16::from_be_bytes([b[0], b[1]]) as usize
                }
            } else {
                len as usize
            };
            let Some(f) = body.get(pos..pos + flen) else {
                return Err(DecodeError::BadVariableLength);
            };
            if let Some(t) = target {
                apply(t, f, &mut rec, &mut s);
            }
            pos += flen;
        }
        each((rec, s));
    }
    Ok(())
}

/// Read options data records and learn sampling / clock information from them.
fn decode_options(
    tmpl: &CompiledTemplate,
    body: &[u8],
    sampling: &mut crate::domain::SamplingState,
) -> Result<u32, DecodeError> {
    let mut n = 0;
    if let Some(len) = tmpl.fixed_len {
        for r in body.chunks_exact(len) {
            let mut rec = FlowRecord::EMPTY;
            let mut s = Scratch::default();
            for op in &tmpl.ops {
                let start = op.offset as usize;
                if let Some(f) = r.get(start..start + op.len as usize) {
                    apply(op.target, f, &mut rec, &mut s);
                }
            }
            sampling.learn(&s);
            n += 1;
        }
        return Ok(n);
    }
    walk_variable(tmpl, body, |(_, s)| {
        sampling.learn(&s);
        n += 1;
    })?;
    Ok(n)
}
