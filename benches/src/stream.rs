//! An export stream analysed once for replay.
//!
//! Each datagram is walked with the templates of its stream (learned from the whole stream
//! first, so a capture that starts mid-stream still counts its records). The analysis gives, per
//! datagram, what a replayer needs to rewrite it cheaply on every send:
//!
//! - the flow records and options data records it holds, so that v5 (flows), v9 (datagrams) and
//!   IPFIX (data records, RFC 7011) sequence numbers can be rewritten to a gap-free sequence and
//!   the receiver's loss counted exactly;
//! - the byte offsets of absolute time fields (seconds, milliseconds, NTP, and IPFIX
//!   `systemInitTimeMilliseconds`), so that times can be shifted to "now" together with the
//!   header's export time: uptime-relative times follow the header by themselves.
//!
//! It also builds one *template refresh* datagram per exporter domain (all its templates and
//! options templates, plus the last options data of each options template) that the replayer
//! sends first and then every N datagrams, as a real exporter does.

use std::collections::HashMap;

/// How an absolute time field is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeKind {
    /// 32-bit Unix seconds (IE 150, 151).
    Secs32,
    /// 64-bit Unix milliseconds (IE 152, 153 and 160 `systemInitTimeMilliseconds`).
    Millis64,
    /// 64-bit NTP timestamp (IE 154–157).
    Ntp64,
}

/// A time field inside a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePatch {
    pub offset: u32,
    pub kind: TimeKind,
}

/// One export datagram and what the replayer needs to know about it.
#[derive(Clone, Debug)]
pub struct ExportDatagram {
    pub payload: Vec<u8>,
    /// 5, 9 or 10.
    pub version: u16,
    /// v9 source id, IPFIX observation domain, v5 `engine_type << 8 | engine_id`.
    pub domain: u32,
    /// Index into [`Stream::domains`].
    pub domain_index: usize,
    /// Header export time, Unix ms.
    pub export_ms: u64,
    /// Flow records (data records of non-options templates; v5 records).
    pub flows: u32,
    /// Options data records.
    pub options_records: u32,
    /// Template and options template records.
    pub template_records: u32,
    /// Data sets (flow and options data) with a known template.
    pub data_sets: u32,
    /// Data sets whose template the stream never defined.
    pub unknown_sets: u32,
    pub patches: Vec<TimePatch>,
}

/// A domain of the stream: (version, domain id).
pub type DomainId = (u16, u32);

/// An analysed export stream.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// The datagrams in stream order.
    pub datagrams: Vec<ExportDatagram>,
    /// Template refresh datagrams, one per domain that has templates.
    pub refresh: Vec<ExportDatagram>,
    /// Every (version, domain) of the stream; datagrams refer to it by index.
    pub domains: Vec<DomainId>,
    /// Payloads that were not NetFlow v5/v9 or IPFIX, or too short to be.
    pub skipped: usize,
}

#[derive(Clone, Debug)]
struct Field {
    id: u16,
    len: u16,
    enterprise: u32,
}

#[derive(Clone, Debug)]
struct Template {
    fields: Vec<Field>,
    options: bool,
    /// The template record as it was on the wire, for refresh datagrams.
    raw: Vec<u8>,
}

type TemplateKey = (u16, u32, u16);

#[derive(Default)]
struct Templates {
    map: HashMap<TemplateKey, Template>,
    /// Template ids per domain in first-seen order (deterministic refresh datagrams).
    order: HashMap<DomainId, Vec<u16>>,
    /// Last options data set (set header included) per options template.
    last_options_data: HashMap<TemplateKey, Vec<u8>>,
    /// Last header per domain (for the refresh datagram's times).
    last_header: HashMap<DomainId, Vec<u8>>,
}

const VARIABLE: u16 = 0xFFFF;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Header facts: (version, domain, export ms, header length, end of the message).
fn header(d: &[u8]) -> Option<(u16, u32, u64, usize, usize)> {
    match be16(d, 0)? {
        5 => {
            let secs = be32(d, 8)? as u64;
            let nsecs = be32(d, 12)? as u64;
            let domain = be16(d, 20)? as u32;
            Some((5, domain, secs * 1000 + nsecs / 1_000_000, 24, d.len()))
        }
        9 => Some((9, be32(d, 16)?, be32(d, 8)? as u64 * 1000, 20, d.len())),
        10 => {
            let len = (be16(d, 2)? as usize).min(d.len());
            if len < 16 {
                return None;
            }
            Some((10, be32(d, 12)?, be32(d, 4)? as u64 * 1000, 16, len))
        }
        _ => None,
    }
}

fn time_kind(f: &Field) -> Option<TimeKind> {
    if f.enterprise != 0 {
        return None;
    }
    match (f.id, f.len) {
        (150 | 151, 4) => Some(TimeKind::Secs32),
        (152 | 153 | 160, 8) => Some(TimeKind::Millis64),
        (154..=157, 8) => Some(TimeKind::Ntp64),
        _ => None,
    }
}

impl Templates {
    /// Read the template records of one template set.
    fn learn_set(&mut self, version: u16, domain: u32, set_id: u16, body: &[u8]) {
        let options = matches!((version, set_id), (9, 1) | (10, 3));
        let mut pos = 0;
        while body.len().saturating_sub(pos) >= 4 {
            let start = pos;
            let Some(tid) = be16(body, pos) else { return };
            if tid == 0 && version == 9 {
                // v9 sets may end in zero padding.
                return;
            }
            let Some(n) = be16(body, pos + 2) else { return };
            // v9 options templates give scope and option lengths in bytes; IPFIX ones a field
            // count and a scope count (which does not change the field list).
            let total = match (version, options) {
                (9, true) => {
                    let Some(opt_len) = be16(body, pos + 4) else {
                        return;
                    };
                    pos += 2;
                    (n / 4 + opt_len / 4) as usize
                }
                (_, true) => {
                    pos += 2;
                    n as usize
                }
                _ => n as usize,
            };
            pos += 4;
            let mut fields = Vec::with_capacity(total);
            for _ in 0..total {
                let (Some(raw_id), Some(len)) = (be16(body, pos), be16(body, pos + 2)) else {
                    return;
                };
                pos += 4;
                let mut enterprise = 0;
                let mut id = raw_id;
                if version == 10 && raw_id & 0x8000 != 0 {
                    let Some(e) = be32(body, pos) else { return };
                    enterprise = e;
                    id = raw_id & 0x7FFF;
                    pos += 4;
                }
                fields.push(Field {
                    id,
                    len,
                    enterprise,
                });
            }
            let key = (version, domain, tid);
            if fields.is_empty() {
                // An IPFIX withdrawal.
                self.map.remove(&key);
                continue;
            }
            let raw = body[start..pos].to_vec();
            let ids = self.order.entry((version, domain)).or_default();
            if !ids.contains(&tid) {
                ids.push(tid);
            }
            self.map.insert(
                key,
                Template {
                    fields,
                    options,
                    raw,
                },
            );
        }
    }

    /// Walk a datagram's sets: learn templates when `learn`, otherwise count and locate.
    fn walk(&mut self, d: &[u8], learn: bool) -> Option<ExportDatagram> {
        let (version, domain, export_ms, header_len, end) = header(d)?;
        let mut out = ExportDatagram {
            payload: d.to_vec(),
            version,
            domain,
            domain_index: 0,
            export_ms,
            flows: 0,
            options_records: 0,
            template_records: 0,
            data_sets: 0,
            unknown_sets: 0,
            patches: Vec::new(),
        };
        if version == 5 {
            let count = be16(d, 2)? as u32;
            if d.len() < 24 + 48 * count as usize {
                return None;
            }
            out.flows = count;
            return Some(out);
        }
        if learn {
            self.last_header
                .insert((version, domain), d[..header_len].to_vec());
        }
        let (tmpl_set, opt_set) = if version == 9 { (0, 1) } else { (2, 3) };
        let mut pos = header_len;
        while end.saturating_sub(pos) >= 4 {
            let set_id = be16(d, pos)?;
            let set_len = be16(d, pos + 2)? as usize;
            if set_len < 4 || pos + set_len > end {
                break;
            }
            let body = &d[pos + 4..pos + set_len];
            let body_at = pos + 4;
            if set_id == tmpl_set || set_id == opt_set {
                if learn {
                    self.learn_set(version, domain, set_id, body);
                } else {
                    out.template_records += count_template_records(version, set_id, body);
                }
            } else if set_id >= 256 {
                let key = (version, domain, set_id);
                match self.map.get(&key) {
                    Some(t) if !learn => {
                        let n = walk_records(t, body, body_at, &mut out.patches);
                        out.data_sets += 1;
                        if t.options {
                            out.options_records += n;
                        } else {
                            out.flows += n;
                        }
                    }
                    Some(t) if t.options => {
                        self.last_options_data
                            .insert(key, d[pos..pos + set_len].to_vec());
                    }
                    Some(_) => {}
                    None if !learn => out.unknown_sets += 1,
                    None => {}
                }
            }
            pos += set_len;
        }
        Some(out)
    }

    /// One datagram with every template and options template of the domain, and the last
    /// options data of each options template.
    fn refresh_payload(&self, dom: DomainId) -> Option<Vec<u8>> {
        let (version, domain) = dom;
        let ids = self.order.get(&dom)?;
        let header = self.last_header.get(&dom)?;
        let live: Vec<(u16, &Template)> = ids
            .iter()
            .filter_map(|id| self.map.get(&(version, domain, *id)).map(|t| (*id, t)))
            .collect();
        if live.is_empty() {
            return None;
        }
        let mut b = header.clone();
        let (tmpl_set, opt_set) = if version == 9 { (0u16, 1u16) } else { (2, 3) };
        let mut records: u16 = 0;
        for (set_id, options) in [(tmpl_set, false), (opt_set, true)] {
            let members: Vec<&Template> = live
                .iter()
                .filter(|(_, t)| t.options == options)
                .map(|(_, t)| *t)
                .collect();
            if members.is_empty() {
                continue;
            }
            let at = b.len();
            b.extend_from_slice(&set_id.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            for t in &members {
                b.extend_from_slice(&t.raw);
                records = records.saturating_add(1);
            }
            while version == 9 && !(b.len() - at).is_multiple_of(4) {
                b.push(0);
            }
            let len = u16::try_from(b.len() - at).ok()?;
            b[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        for (id, t) in &live {
            if !t.options {
                continue;
            }
            if let Some(set) = self.last_options_data.get(&(version, domain, *id)) {
                b.extend_from_slice(set);
                let rec_len: usize = t.fields.iter().map(|f| f.len as usize).sum();
                if rec_len > 0 && t.fields.iter().all(|f| f.len != VARIABLE) {
                    records = records.saturating_add(((set.len() - 4) / rec_len) as u16);
                }
            }
        }
        if b.len() > 65_000 {
            return None;
        }
        match version {
            9 => b[2..4].copy_from_slice(&records.to_be_bytes()),
            _ => {
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Some(b)
    }
}

fn count_template_records(version: u16, set_id: u16, body: &[u8]) -> u32 {
    let mut t = Templates::default();
    t.learn_set(version, 0, set_id, body);
    t.map.len() as u32
}

/// Count a data set's records and note where their absolute time fields are.
fn walk_records(t: &Template, body: &[u8], body_at: usize, patches: &mut Vec<TimePatch>) -> u32 {
    let min_len: usize = t
        .fields
        .iter()
        .map(|f| if f.len == VARIABLE { 1 } else { f.len as usize })
        .sum();
    if min_len == 0 {
        return 0;
    }
    let mut n = 0;
    let mut pos = 0;
    'records: while body.len() - pos >= min_len {
        let mut record_patches = 0;
        for f in &t.fields {
            let flen = if f.len == VARIABLE {
                let Some(&l) = body.get(pos) else {
                    break 'records;
                };
                pos += 1;
                if l < 255 {
                    l as usize
                } else {
                    let Some(l) = be16(body, pos) else {
                        break 'records;
                    };
                    pos += 2;
                    l as usize
                }
            } else {
                f.len as usize
            };
            if pos + flen > body.len() {
                patches.truncate(patches.len() - record_patches);
                break 'records;
            }
            if let Some(kind) = time_kind(f) {
                patches.push(TimePatch {
                    offset: (body_at + pos) as u32,
                    kind,
                });
                record_patches += 1;
            }
            pos += flen;
        }
        n += 1;
    }
    n
}

impl Stream {
    /// Analyse the payloads of an export stream, in order.
    pub fn analyze<P: AsRef<[u8]>>(payloads: &[P]) -> Stream {
        let mut t = Templates::default();
        for p in payloads {
            t.walk(p.as_ref(), true);
        }
        let mut s = Stream::default();
        let mut index: HashMap<DomainId, usize> = HashMap::new();
        let mut domain_index = |dom: DomainId, domains: &mut Vec<DomainId>| {
            *index.entry(dom).or_insert_with(|| {
                domains.push(dom);
                domains.len() - 1
            })
        };
        for p in payloads {
            match t.walk(p.as_ref(), false) {
                Some(mut d) => {
                    d.domain_index = domain_index((d.version, d.domain), &mut s.domains);
                    s.datagrams.push(d);
                }
                None => s.skipped += 1,
            }
        }
        let domains = s.domains.clone();
        for dom in domains {
            if let Some(p) = t.refresh_payload(dom)
                && let Some(mut d) = t.walk(&p, false)
            {
                d.domain_index = domain_index(dom, &mut s.domains);
                s.refresh.push(d);
            }
        }
        s
    }

    /// Flow records in one pass over the stream (refresh datagrams hold none).
    pub fn flows(&self) -> u64 {
        self.datagrams.iter().map(|d| d.flows as u64).sum()
    }

    /// Data sets with a known template in one pass.
    pub fn data_sets(&self) -> u64 {
        self.datagrams.iter().map(|d| d.data_sets as u64).sum()
    }

    /// Data sets whose template never appeared in the stream.
    pub fn unknown_sets(&self) -> u64 {
        self.datagrams.iter().map(|d| d.unknown_sets as u64).sum()
    }

    /// Versions present, for display ("v9", "ipfix", "v5+v9").
    pub fn versions(&self) -> String {
        let mut v: Vec<&str> = Vec::new();
        for (ver, _) in &self.domains {
            let name = match ver {
                5 => "v5",
                9 => "v9",
                _ => "ipfix",
            };
            if !v.contains(&name) {
                v.push(name);
            }
        }
        v.join("+")
    }
}

/// What a datagram's sequence number counts, per version: flows (v5), datagrams (v9), data
/// records including options data (IPFIX, RFC 7011 §3.1).
pub fn sequence_advance(d: &ExportDatagram) -> u32 {
    match d.version {
        5 => d.flows,
        9 => 1,
        _ => d.flows + d.options_records,
    }
}

/// The domain id exporter number `exporter` uses for `d`'s domain, so that several replay
/// sockets from one address are distinct exporters to the collector.
pub fn mapped_domain(d: &ExportDatagram, exporter: u32) -> u32 {
    match d.version {
        5 => (d.domain ^ ((exporter & 0xFF) << 8)) & 0xFFFF,
        _ => d.domain ^ (exporter << 16),
    }
}

/// Copy `d` into `buf` with a new sequence number and domain id, and, with `now_ms`, every
/// time moved by (now − export time).
pub fn write_rewritten(
    d: &ExportDatagram,
    buf: &mut Vec<u8>,
    sequence: u32,
    domain: u32,
    now_ms: Option<u64>,
) {
    buf.clear();
    buf.extend_from_slice(&d.payload);
    let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
        if let Some(s) = b.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    };
    match d.version {
        5 => {
            put32(buf, 16, sequence);
            if let Some(s) = buf.get_mut(20..22) {
                s.copy_from_slice(&(domain as u16).to_be_bytes());
            }
            if let Some(now) = now_ms {
                put32(buf, 8, (now / 1000) as u32);
                put32(buf, 12, ((now % 1000) * 1_000_000) as u32);
            }
        }
        9 => {
            put32(buf, 12, sequence);
            put32(buf, 16, domain);
            if let Some(now) = now_ms {
                put32(buf, 8, (now / 1000) as u32);
            }
        }
        _ => {
            put32(buf, 8, sequence);
            put32(buf, 12, domain);
            if let Some(now) = now_ms {
                put32(buf, 4, (now / 1000) as u32);
            }
        }
    }
    let Some(now) = now_ms else { return };
    if d.patches.is_empty() {
        return;
    }
    // The header's export time moved by whole seconds for v9/IPFIX; records move the same.
    let new_export = match d.version {
        5 => now,
        _ => now / 1000 * 1000,
    };
    let delta = new_export as i128 - d.export_ms as i128;
    for p in &d.patches {
        let at = p.offset as usize;
        match p.kind {
            TimeKind::Secs32 => {
                if let Some(v) = be32(buf, at) {
                    let nv = (v as i128 + delta / 1000).clamp(0, u32::MAX as i128) as u32;
                    put32(buf, at, nv);
                }
            }
            TimeKind::Millis64 => {
                if let Some(v) = be64(buf, at) {
                    let nv = (v as i128 + delta).clamp(0, u64::MAX as i128) as u64;
                    buf[at..at + 8].copy_from_slice(&nv.to_be_bytes());
                }
            }
            TimeKind::Ntp64 => {
                if let Some(v) = be64(buf, at) {
                    let shift = (delta << 32) / 1000;
                    let nv = (v as i128 + shift).clamp(0, u64::MAX as i128) as u64;
                    buf[at..at + 8].copy_from_slice(&nv.to_be_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_parsers::{FlowDecoder, TemplateDef, TemplateKind};
    use nmsd_testkit::encode::{self, MessageBuilder, field};

    fn ms_template() -> TemplateDef {
        TemplateDef {
            id: 400,
            kind: TemplateKind::Data,
            fields: vec![
                field(8, 4),
                field(12, 4),
                field(152, 8),
                field(153, 8),
                field(1, 8),
                field(2, 8),
            ],
        }
    }

    #[test]
    fn counts_records_and_rewrites_ipfix() {
        let t = ms_template();
        let base = 1_767_225_600_000;
        let recs = encode::sample_records(5, false, base);
        let mut m1 = MessageBuilder::ipfix(1_767_225_700, 0, 7);
        m1.template(&t);
        let mut m2 = MessageBuilder::ipfix(1_767_225_700, 0, 7);
        m2.data(&t, &recs);
        // Data first: the template is learned from the whole stream.
        let s = Stream::analyze(&[m2.finish(), m1.finish()]);
        assert_eq!(s.datagrams.len(), 2);
        assert_eq!(s.datagrams[0].flows, 5);
        assert_eq!(s.datagrams[0].patches.len(), 10);
        assert_eq!(s.datagrams[1].template_records, 1);
        assert_eq!(s.refresh.len(), 1);
        assert_eq!(s.refresh[0].template_records, 1);

        // Move everything one day on: records move with the header.
        let now = 1_767_225_700_000 + 86_400_000;
        let mut buf = Vec::new();
        let d = &s.datagrams[0];
        write_rewritten(d, &mut buf, 42, mapped_domain(d, 1), Some(now));
        let mut dec = FlowDecoder::default();
        let mut out = Vec::new();
        let exporter = "127.0.0.1".parse().expect("address");
        let mut refresh = Vec::new();
        let r = &s.refresh[0];
        write_rewritten(r, &mut refresh, 0, mapped_domain(r, 1), Some(now));
        dec.decode(exporter, &refresh, 0, &mut out)
            .expect("template");
        dec.decode(exporter, &buf, 0, &mut out).expect("data");
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].start_ms, recs[0].start_ms + 86_400_000);
        assert_eq!(out[0].observation_domain, 7 ^ (1 << 16));
        assert_eq!(be32(&buf, 8), Some(42));
    }

    #[test]
    fn v9_refresh_has_counts_and_padding() {
        let t = encode::ipv4_template(300);
        let opts = TemplateDef {
            id: 301,
            kind: TemplateKind::Options { scope_fields: 1 },
            fields: vec![field(1, 4), field(34, 4), field(35, 1)],
        };
        let mut m = MessageBuilder::v9(1000, 1_767_225_600, 0, 3);
        m.template(&t)
            .template(&opts)
            .options_data(&opts, &[&[1, 100, 2]]);
        let s = Stream::analyze(&[m.finish()]);
        assert_eq!(s.datagrams[0].options_records, 1);
        assert_eq!(s.datagrams[0].template_records, 2);
        let r = &s.refresh[0];
        assert_eq!(be16(&r.payload, 2), Some(3));
        assert_eq!(r.options_records, 1);
        assert_eq!(r.template_records, 2);
        assert_eq!(sequence_advance(r), 1);
    }
}
