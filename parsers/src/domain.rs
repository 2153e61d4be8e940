//! State kept per exporter domain: templates, sampling, sequence numbers, early data.
//!
//! A domain is what RFC 7011 calls an observation domain and v9 a source id, scoped by the
//! exporter's address and the export version: templates with the same id from two routers, or
//! from two line cards of one router, are different templates.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::record::FlowVersion;
use crate::template::{ClockContext, CompiledTemplate, Scratch};

/// Identity of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainKey {
    pub exporter: IpAddr,
    pub domain: u32,
    pub version: FlowVersion,
}

/// Fx-style multiplicative hasher: the keys here are small integers and addresses, hashed per
/// datagram and per set, where SipHash's cost shows. Maps keyed by it are bounded by config caps.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

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
    /// The number went backwards or jumped by more than half the space: a restart or reorder.
    Reset,
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
    /// `allow_inclusive`: the exporter may count the current message.
    pub fn observe(
        &mut self,
        seq: u32,
        advance: Option<u32>,
        options: u32,
        allow_inclusive: bool,
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
                        Some(e) => gap(seq.wrapping_sub(e)),
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

fn gap(d: u32) -> SequenceOutcome {
    if d < 0x8000_0000 {
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
    pub templates: HashMap<u16, CompiledTemplate, FxBuild>,
    pub sampling: SamplingState,
    pub sequence: SequenceTracker,
    pub pending: VecDeque<PendingSet>,
    /// Unix ms of the last datagram.
    pub last_seen_ms: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counts_gaps_and_resets() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe(100, Some(10), 0, false), SequenceOutcome::Unknown);
        assert_eq!(t.observe(110, Some(10), 0, false), SequenceOutcome::InOrder);
        assert_eq!(t.observe(125, Some(10), 0, false), SequenceOutcome::Gap(5));
        assert_eq!(t.observe(3, Some(10), 0, false), SequenceOutcome::Reset);
        // Wraps around 2^32 without a gap.
        let mut w = SequenceTracker::default();
        w.observe(u32::MAX - 4, Some(10), 0, false);
        assert_eq!(w.observe(5, Some(3), 0, false), SequenceOutcome::InOrder);
    }

    #[test]
    fn sequence_learns_inclusive_counting() {
        // softflowd IPFIX: seq = records sent including this message.
        let mut t = SequenceTracker::default();
        t.observe(30, Some(30), 0, true);
        assert_eq!(t.observe(42, Some(12), 0, true), SequenceOutcome::InOrder);
        assert_eq!(t.observe(49, Some(7), 0, true), SequenceOutcome::InOrder);
        // 5 records lost before a 7-record message.
        assert_eq!(t.observe(61, Some(7), 0, true), SequenceOutcome::Gap(5));
    }

    #[test]
    fn sequence_learns_whether_options_records_count() {
        // softflowd IPFIX: inclusive, and the options record sent with each template refresh
        // is not counted (seen in a real capture: 436, then 454 for 18 flows + 1 options).
        let mut t = SequenceTracker::default();
        t.observe(408, Some(28), 0, true);
        assert_eq!(t.observe(436, Some(28), 0, true), SequenceOutcome::InOrder);
        assert_eq!(t.observe(454, Some(19), 1, true), SequenceOutcome::InOrder);
        assert_eq!(t.observe(482, Some(28), 0, true), SequenceOutcome::InOrder);
        assert_eq!(t.observe(500, Some(19), 1, true), SequenceOutcome::InOrder);
        // 2 lost before a message with options: counted in the learned terms.
        assert_eq!(t.observe(520, Some(19), 1, true), SequenceOutcome::Gap(2));
        // RFC 7011 exporters count the options record; that stays in order too.
        let mut r = SequenceTracker::default();
        r.observe(100, Some(11), 1, true);
        assert_eq!(r.observe(111, Some(5), 0, true), SequenceOutcome::InOrder);
        assert_eq!(r.observe(120, Some(5), 0, true), SequenceOutcome::Gap(4));
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
