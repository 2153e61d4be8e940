//! State kept per exporter domain: templates, sampling, sequence numbers, early data.
//!
//! A domain is what RFC 7011 calls an observation domain and v9 a source id, scoped by the
//! exporter's address and the export version: templates with the same id from two routers, or
//! from two line cards of one router, are different templates.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::hash::SeededHashMap;

use crate::record::FlowVersion;
use crate::template::{ClockContext, CompiledTemplate, Scratch};

/// Identity of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainKey {
    pub exporter: IpAddr,
    pub domain: u32,
    pub version: FlowVersion,
    /// The flow source (listener) it arrived on: an exporter's templates on one listener are
    /// not another exporter's on a second listener, even from the same host.
    pub source: u8,
}

/// Most samplers a domain may announce; more are ignored.
const MAX_SAMPLERS: usize = 256;

/// Sampling announced by the exporter (v5 header or options data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SamplingState {
    /// Interval that applies to records without a sampler id; 0 or 1 means unsampled.
    pub default_interval: u32,
    /// Intervals by sampler / selector id.
    pub samplers: Vec<(u64, u32)>,
    /// IPFIX `systemInitTimeMilliseconds`, the base of flow*SysUpTime fields.
    pub system_init_ms: Option<u64>,
}

impl SamplingState {
    #[inline]
    pub fn interval_for(&self, sampler: Option<u64>) -> u32 {
        if let Some(id) = sampler
            && let Some((_, i)) = self.samplers.iter().find(|(s, _)| *s == id)
        {
            return *i;
        }
        self.default_interval.max(1)
    }

    /// Take what an options data record says about sampling.
    pub fn learn(&mut self, s: &Scratch) {
        if let Some(init) = s.system_init_ms {
            self.system_init_ms = Some(init);
        }
        let interval = match (s.packet_interval, s.packet_space, s.sampling_interval) {
            // Systematic count-based sampling (RFC 5476): select `interval` packets, skip
            // `space`; the scale factor is (interval + space) / interval. Both are up to 8 bytes
            // on the wire, so the sum saturates rather than overflow.
            (Some(pi), Some(ps), _) if pi > 0 => pi.saturating_add(ps) / pi,
            (_, _, Some(i)) => i,
            _ => return,
        };
        let interval = interval.clamp(1, u32::MAX as u64) as u32;
        match s.sampler_id {
            Some(id) => {
                if let Some(slot) = self.samplers.iter_mut().find(|(s, _)| *s == id) {
                    slot.1 = interval;
                } else if self.samplers.len() < MAX_SAMPLERS {
                    self.samplers.push((id, interval));
                }
            }
            None => self.default_interval = interval,
        }
    }
}

/// What the sequence number of a message says about loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceOutcome {
    /// First message, or the previous one left the next value unknown.
    Unknown,
    InOrder,
    /// This many flows (v5, IPFIX) or export packets (v9) went missing.
    Gap(u32),
    /// The number went backwards, or jumped further than the exporter could have sent in the
    /// time since its previous message (see [`plausible_gap`]): a restart, a reorder, or a
    /// corrupt or forged header. Never counted as loss.
    Reset,
}

/// Most flow records an exporter is taken to send per millisecond (2 M flows/s), and most
/// export datagrams (v9 counts those: 100k/s). A gap larger than this rate allows over the time
/// since the previous message, plus a burst allowance, cannot be loss.
const MAX_FLOWS_PER_MS: u64 = 2_000;
const MAX_DATAGRAMS_PER_MS: u64 = 100;
/// Loss allowed whatever the elapsed time: a burst, or two messages in the same millisecond.
const BURST_FLOWS: u64 = 100_000;
const BURST_DATAGRAMS: u64 = 5_000;

/// Largest gap that can be real loss after `elapsed_ms` of silence, in flows (`flows`) or
/// datagrams. A bit flipped high in a 32-bit sequence number once made one header count as
/// 40.9 billion lost flows; bounding the gap by what the exporter could have sent turns that
/// into a reset. Never more than half the sequence space, where "ahead" and "behind" meet.
pub(crate) fn plausible_gap(flows: bool, elapsed_ms: u64) -> u32 {
    let (rate, burst) = if flows {
        (MAX_FLOWS_PER_MS, BURST_FLOWS)
    } else {
        (MAX_DATAGRAMS_PER_MS, BURST_DATAGRAMS)
    };
    rate.saturating_mul(elapsed_ms)
        .saturating_add(burst)
        .min(0x8000_0000) as u32
}

/// Tracks a domain's sequence numbers.
///
/// v5 and IPFIX count flow records sent before the message, v9 counts export packets. Some
/// exporters (softflowd 1.1.0 in IPFIX mode) include the current message's records in the count;
/// the tracker accepts either convention, learning which one the exporter uses. IPFIX counts
/// options data records too (RFC 7011 §3.1: all Data Records), but softflowd leaves them out,
/// so whether they count is learned the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SequenceTracker {
    /// Sequence number, advance (records or 1) and options records of the previous message.
    last: Option<(u32, Option<u32>, u32)>,
    counts_current: bool,
    skips_options: bool,
}

impl SequenceTracker {
    /// `advance`: how much this message moves the counter (None when unknown, e.g. data sets
    /// whose template is missing), `options` of them options data records.
    /// `allow_inclusive`: the exporter may count the current message. `max_gap`: the largest
    /// jump taken as loss ([`plausible_gap`]); a larger one is a reset.
    pub fn observe(
        &mut self,
        seq: u32,
        advance: Option<u32>,
        options: u32,
        allow_inclusive: bool,
        max_gap: u32,
    ) -> SequenceOutcome {
        let outcome = match self.last {
            Some((last_seq, Some(last_adv), last_opts)) => {
                // What `seq` should be under a convention: (counts this message, skips options).
                let expect = |inclusive: bool, skips: bool| -> Option<u32> {
                    let (adv, opts) = if inclusive {
                        (advance?, options)
                    } else {
                        (last_adv, last_opts)
                    };
                    let adv = if skips { adv.saturating_sub(opts) } else { adv };
                    Some(last_seq.wrapping_add(adv))
                };
                // The convention learned so far is tried first, so an ambiguous match keeps it.
                let learned = (allow_inclusive && self.counts_current, self.skips_options);
                let found = [
                    learned,
                    (false, false),
                    (false, true),
                    (true, false),
                    (true, true),
                ]
                .into_iter()
                .filter(|&(inclusive, _)| allow_inclusive || !inclusive)
                .find(|&(inclusive, skips)| expect(inclusive, skips) == Some(seq));
                match found {
                    Some((inclusive, skips)) => {
                        self.counts_current = inclusive;
                        // Only a message with options records tells the two counts apart.
                        if expect(inclusive, !skips) != Some(seq) {
                            self.skips_options = skips;
                        }
                        SequenceOutcome::InOrder
                    }
                    None => match expect(learned.0, learned.1) {
                        Some(e) => gap(seq.wrapping_sub(e), max_gap),
                        None => SequenceOutcome::Unknown,
                    },
                }
            }
            _ => SequenceOutcome::Unknown,
        };
        self.last = Some((seq, advance, options));
        outcome
    }
}

fn gap(d: u32, max_gap: u32) -> SequenceOutcome {
    if d <= max_gap.min(0x7FFF_FFFF) {
        SequenceOutcome::Gap(d)
    } else {
        SequenceOutcome::Reset
    }
}

/// A data set that arrived before its template, kept until the template comes or it expires.
#[derive(Clone, Debug)]
pub(crate) struct PendingSet {
    pub template_id: u16,
    pub clock: ClockContext,
    pub received_ms: u64,
    pub data: Vec<u8>,
}

/// Everything known about one domain.
#[derive(Clone, Debug, Default)]
pub(crate) struct DomainState {
    pub templates: SeededHashMap<u16, CompiledTemplate>,
    pub sampling: SamplingState,
    pub sequence: SequenceTracker,
    pub pending: VecDeque<PendingSet>,
    /// Unix ms of the last datagram.
    pub last_seen_ms: u64,
    /// Unix ms of the datagram before that, which bounds how much loss a gap can mean.
    pub prev_seen_ms: u64,
    /// Unix ms of the last datagram that brought records or templates: what eviction ranks by,
    /// so a flood of empty headers cannot push out an exporter that is sending data.
    pub last_useful_ms: u64,
    /// Loss seen since the owner last asked (see `FlowDecoder::take_exporter_loss`).
    pub unreported_loss: ExporterLoss,
}

/// Loss an exporter domain's sequence numbers revealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExporterLoss {
    /// Flow records missing (v5, IPFIX).
    pub lost_flows: u64,
    /// Export datagrams missing (v9).
    pub lost_datagrams: u64,
    /// Sequence numbers that went backwards or jumped.
    pub resets: u64,
}

impl ExporterLoss {
    pub fn is_zero(&self) -> bool {
        *self == ExporterLoss::default()
    }

    /// Add what a sequence number said; `flows` tells whether gaps count flows or datagrams.
    pub(crate) fn add(&mut self, outcome: SequenceOutcome, flows: bool) {
        match outcome {
            SequenceOutcome::Gap(n) if flows => self.lost_flows += n as u64,
            SequenceOutcome::Gap(n) => self.lost_datagrams += n as u64,
            SequenceOutcome::Reset => self.resets += 1,
            SequenceOutcome::Unknown | SequenceOutcome::InOrder => {}
        }
    }
}

/// What making room in a [`DomainTable`] threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub domains: u64,
    /// Buffered data sets of the evicted domains, and their bytes.
    pub pending_sets: u64,
    pub pending_bytes: usize,
}

impl Evicted {
    fn add(&mut self, d: &DomainState) {
        self.domains += 1;
        self.pending_sets += d.pending.len() as u64;
        self.pending_bytes += d.pending.iter().map(|p| p.data.len()).sum::<usize>();
    }
}

/// The domains a decoder knows, with a count per exporter address for the per-address cap.
///
/// Both maps are keyed by what the sender chooses (its address, its source id), so they use
/// the seeded hasher.
#[derive(Clone, Debug, Default)]
pub(crate) struct DomainTable {
    map: SeededHashMap<DomainKey, DomainState>,
    per_exporter: SeededHashMap<IpAddr, u32>,
}

impl DomainTable {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&DomainKey, &DomainState)> {
        self.map.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&DomainKey, &mut DomainState)> {
        self.map.iter_mut()
    }

    /// Keep the domains `keep` says to keep, and the per-address counts in step.
    pub fn retain(&mut self, mut keep: impl FnMut(&DomainKey, &mut DomainState) -> bool) {
        let per_exporter = &mut self.per_exporter;
        self.map.retain(|k, d| {
            let kept = keep(k, d);
            if !kept {
                forget_one(per_exporter, k.exporter);
            }
            kept
        });
    }

    /// The domain for `key`, created if new. A new domain that would take its exporter past
    /// `max_per_exporter`, or the table past `max_total`, first evicts the least useful
    /// domains (of that exporter, or of all): those without templates or buffered data before
    /// those with, then the longest without useful data. Eviction takes a batch (1/8 of the
    /// exporter's cap, 1/16 of the table) so that a flood of new ids pays for one scan per
    /// batch rather than one per datagram.
    pub fn get_or_insert(
        &mut self,
        key: DomainKey,
        now_ms: u64,
        max_total: usize,
        max_per_exporter: usize,
    ) -> (&mut DomainState, Evicted) {
        let mut evicted = Evicted::default();
        if !self.map.contains_key(&key) {
            let of_exporter = self.per_exporter.get(&key.exporter).copied().unwrap_or(0);
            if of_exporter as usize >= max_per_exporter.max(1) {
                let batch = (max_per_exporter / 8).max(1);
                self.evict(batch, Some(key.exporter), &mut evicted);
            }
            if self.map.len() >= max_total.max(1) {
                let batch = (max_total / 16).max(1);
                self.evict(batch, None, &mut evicted);
            }
            *self.per_exporter.entry(key.exporter).or_insert(0) += 1;
        }
        let d = self.map.entry(key).or_insert_with(|| DomainState {
            last_seen_ms: now_ms,
            prev_seen_ms: now_ms,
            last_useful_ms: 0,
            ..DomainState::default()
        });
        d.prev_seen_ms = d.last_seen_ms;
        d.last_seen_ms = now_ms;
        (d, evicted)
    }

    /// Evict up to `n` of the least useful domains, of `exporter` only when given.
    fn evict(&mut self, n: usize, exporter: Option<IpAddr>, out: &mut Evicted) {
        let mut ranked: Vec<((bool, u64, u64), DomainKey)> = self
            .map
            .iter()
            .filter(|(k, _)| exporter.is_none_or(|a| k.exporter == a))
            .map(|(k, d)| {
                let holds_state = !d.templates.is_empty() || !d.pending.is_empty();
                ((holds_state, d.last_useful_ms, d.last_seen_ms), *k)
            })
            .collect();
        let n = n.min(ranked.len());
        if n == 0 {
            return;
        }
        if n < ranked.len() {
            ranked.select_nth_unstable_by_key(n - 1, |(rank, _)| *rank);
        }
        for (_, k) in &ranked[..n] {
            if let Some(d) = self.map.remove(k) {
                out.add(&d);
                forget_one(&mut self.per_exporter, k.exporter);
            }
        }
    }
}

fn forget_one(per_exporter: &mut SeededHashMap<IpAddr, u32>, a: IpAddr) {
    if let Some(c) = per_exporter.get_mut(&a) {
        *c -= 1;
        if *c == 0 {
            per_exporter.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 0x7FFF_FFFF;

    fn key(a: [u8; 4], domain: u32) -> DomainKey {
        DomainKey {
            exporter: IpAddr::from(a),
            domain,
            version: FlowVersion::NetflowV9,
            source: 0,
        }
    }

    #[test]
    fn a_full_table_evicts_empty_domains_before_useful_ones() {
        let mut t = DomainTable::default();
        // A useful exporter, then a flood of empty headers from another address.
        let (d, _) = t.get_or_insert(key([192, 0, 2, 1], 1), 10, 64, 64);
        d.last_useful_ms = 10;
        d.templates.insert(
            256,
            crate::template::CompiledTemplate::compile(
                crate::template::TemplateDef {
                    id: 256,
                    kind: crate::template::TemplateKind::Data,
                    fields: vec![crate::template::FieldSpec {
                        id: 1,
                        len: 4,
                        enterprise: 0,
                    }],
                },
                10,
            )
            .expect("compiles"),
        );
        let mut evicted = 0;
        for id in 0..1000 {
            evicted += t
                .get_or_insert(key([203, 0, 113, 9], id), 20 + id as u64, 64, 1000)
                .1
                .domains;
        }
        assert!(t.len() <= 64);
        assert_eq!(evicted as usize, 1001 - t.len());
        assert!(t.iter().any(|(k, _)| *k == key([192, 0, 2, 1], 1)));
        // A new real exporter still gets in.
        t.get_or_insert(key([192, 0, 2, 2], 7), 5000, 64, 64);
        assert!(t.iter().any(|(k, _)| *k == key([192, 0, 2, 2], 7)));
    }

    #[test]
    fn one_address_cannot_take_more_than_its_cap() {
        let mut t = DomainTable::default();
        for id in 0..500 {
            t.get_or_insert(key([203, 0, 113, 9], id), id as u64, 4096, 16);
        }
        assert!(t.len() <= 16, "{} domains", t.len());
        assert_eq!(
            t.per_exporter.get(&IpAddr::from([203, 0, 113, 9])).copied(),
            Some(t.len() as u32)
        );
        t.retain(|_, _| false);
        assert!(t.per_exporter.is_empty());
    }

    #[test]
    fn implausible_jumps_are_resets() {
        // 10 s of silence allows 20 M flows + the burst; a flipped bit 30 is a reset, not
        // a billion lost flows.
        let max = plausible_gap(true, 10_000);
        assert_eq!(max, 20_100_000);
        let mut t = SequenceTracker::default();
        t.observe(1000, Some(10), 0, false, max);
        assert_eq!(
            t.observe(1010 | 1 << 30, Some(10), 0, false, max),
            SequenceOutcome::Reset
        );
        // Back to the real sequence: a reset again, still no loss.
        assert_eq!(
            t.observe(1020, Some(10), 0, false, max),
            SequenceOutcome::Reset
        );
        assert_eq!(
            t.observe(1030, Some(10), 0, false, max),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(1045, Some(10), 0, false, max),
            SequenceOutcome::Gap(5)
        );
        // v9 counts datagrams: a quick succession allows only the burst.
        assert_eq!(plausible_gap(false, 0), 5_000);
        assert_eq!(plausible_gap(true, u64::MAX), 0x8000_0000);
    }

    #[test]
    fn sequence_counts_gaps_and_resets() {
        let mut t = SequenceTracker::default();
        assert_eq!(
            t.observe(100, Some(10), 0, false, MAX),
            SequenceOutcome::Unknown
        );
        assert_eq!(
            t.observe(110, Some(10), 0, false, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(125, Some(10), 0, false, MAX),
            SequenceOutcome::Gap(5)
        );
        assert_eq!(
            t.observe(3, Some(10), 0, false, MAX),
            SequenceOutcome::Reset
        );
        // Wraps around 2^32 without a gap.
        let mut w = SequenceTracker::default();
        w.observe(u32::MAX - 4, Some(10), 0, false, MAX);
        assert_eq!(
            w.observe(5, Some(3), 0, false, MAX),
            SequenceOutcome::InOrder
        );
    }

    #[test]
    fn sequence_learns_inclusive_counting() {
        // softflowd IPFIX: seq = records sent including this message.
        let mut t = SequenceTracker::default();
        t.observe(30, Some(30), 0, true, MAX);
        assert_eq!(
            t.observe(42, Some(12), 0, true, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(49, Some(7), 0, true, MAX),
            SequenceOutcome::InOrder
        );
        // 5 records lost before a 7-record message.
        assert_eq!(
            t.observe(61, Some(7), 0, true, MAX),
            SequenceOutcome::Gap(5)
        );
    }

    #[test]
    fn sequence_learns_whether_options_records_count() {
        // softflowd IPFIX: inclusive, and the options record sent with each template refresh
        // is not counted (seen in a real capture: 436, then 454 for 18 flows + 1 options).
        let mut t = SequenceTracker::default();
        t.observe(408, Some(28), 0, true, MAX);
        assert_eq!(
            t.observe(436, Some(28), 0, true, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(454, Some(19), 1, true, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(482, Some(28), 0, true, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            t.observe(500, Some(19), 1, true, MAX),
            SequenceOutcome::InOrder
        );
        // 2 lost before a message with options: counted in the learned terms.
        assert_eq!(
            t.observe(520, Some(19), 1, true, MAX),
            SequenceOutcome::Gap(2)
        );
        // RFC 7011 exporters count the options record; that stays in order too.
        let mut r = SequenceTracker::default();
        r.observe(100, Some(11), 1, true, MAX);
        assert_eq!(
            r.observe(111, Some(5), 0, true, MAX),
            SequenceOutcome::InOrder
        );
        assert_eq!(
            r.observe(120, Some(5), 0, true, MAX),
            SequenceOutcome::Gap(4)
        );
    }

    #[test]
    fn sampling_prefers_sampler_then_default() {
        let mut s = SamplingState::default();
        assert_eq!(s.interval_for(None), 1);
        s.learn(&Scratch {
            sampling_interval: Some(100),
            sampler_id: Some(7),
            ..Scratch::default()
        });
        s.learn(&Scratch {
            packet_interval: Some(1),
            packet_space: Some(9),
            ..Scratch::default()
        });
        assert_eq!(s.interval_for(Some(7)), 100);
        assert_eq!(s.interval_for(Some(8)), 10);
        assert_eq!(s.interval_for(None), 10);
    }
}
