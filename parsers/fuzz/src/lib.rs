//! Shared pieces of the nmsd-parsers fuzz targets and their seed generator.
//!
//! # Input format
//!
//! A fuzz input is a sequence of datagrams, so one input can carry template state from one
//! datagram to the next (template in one, data in the next, options data setting the sampling
//! of later records, a withdrawal, ...). Each datagram is framed by a 2-byte big-endian header:
//!
//! ```text
//! bit  15      exporter: 0 = 192.0.2.1, 1 = 2001:db8::1
//! bits 14..12  clock step before this datagram, an index into STEPS_MS (7 also calls expire)
//! bits 11..0   payload length (0..=4095); a short final frame takes what is left
//! ```
//!
//! With both control fields 0 the header is a plain length prefix. Decode targets overwrite the
//! version field (payload bytes 0..2) with their own version, so mutations are not wasted on
//! datagrams the decoder would refuse at the first two bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nmsd_parsers::{
    DecoderLimits, FlowDecoder, FlowRecord, FlowVersion, MAX_FLOW_COUNTER, TimeBounds, TimePolicy,
    persist,
};

/// Where the decode targets' clock starts: 2026-01-01T00:00:00Z.
pub const T0_MS: u64 = 1_767_225_600_000;

/// Clock steps a frame can ask for. With [`small_limits`]: 10 s outlasts the early-data wait,
/// 600 s outlasts a template, and step 7 also runs `expire`.
pub const STEPS_MS: [u64; 8] = [0, 1, 500, 2_000, 10_000, 60_000, 600_000, 3_600_000];

/// Largest payload a frame header can describe.
pub const MAX_FRAME: usize = 0x0FFF;

pub const EXPORTERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// One framed datagram of a fuzz input.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub exporter: IpAddr,
    /// Index into [`STEPS_MS`].
    pub step: usize,
    pub payload: &'a [u8],
}

/// Split a fuzz input into frames. A trailing single byte is ignored.
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    std::iter::from_fn(move || {
        let [hi, lo, rest @ ..] = data else {
            return None;
        };
        let header = u16::from_be_bytes([*hi, *lo]);
        let len = usize::from(header & 0x0FFF).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        data = tail;
        Some(Frame {
            exporter: EXPORTERS[usize::from(header >> 15)],
            step: usize::from((header >> 12) & 0x7),
            payload,
        })
    })
}

/// Append one frame to a fuzz input (for the seed generator). Panics on payloads over 4095
/// bytes, which the format cannot carry.
pub fn push_frame(input: &mut Vec<u8>, exporter: usize, step: usize, payload: &[u8]) {
    assert!(
        payload.len() <= MAX_FRAME,
        "payload of {} bytes",
        payload.len()
    );
    assert!(exporter < 2 && step < 8);
    let header = (exporter as u16) << 15 | (step as u16) << 12 | payload.len() as u16;
    input.extend_from_slice(&header.to_be_bytes());
    input.extend_from_slice(payload);
}

/// Limits small enough that a fuzz input of a few kilobytes reaches every cap: domains,
/// templates per domain, early-data sets and bytes, and both timeouts (see [`STEPS_MS`]).
pub fn small_limits() -> DecoderLimits {
    DecoderLimits {
        max_domains: 4,
        max_templates_per_domain: 8,
        template_timeout_ms: 120_000,
        pending_sets_per_domain: 4,
        pending_bytes_total: 2048,
        pending_timeout_ms: 5_000,
        max_domains_per_exporter: 3,
        idle_domain_timeout_ms: 60_000,
        allowed_exporters: Vec::new(),
        // Clamp, so that the records still reach check_record; the bounds are tight enough
        // for fuzzed times to cross them.
        time_bounds: Some(TimeBounds {
            max_future_ms: 3_600_000,
            max_past_ms: 86_400_000,
            policy: TimePolicy::Clamp,
        }),
    }
}

/// Limits that never bind on a fuzz input: the oracle models neither caps nor timeouts.
pub fn unbounded_limits() -> DecoderLimits {
    DecoderLimits {
        max_domains: usize::MAX,
        max_templates_per_domain: usize::MAX,
        template_timeout_ms: u64::MAX,
        pending_sets_per_domain: usize::MAX,
        pending_bytes_total: usize::MAX / 2,
        pending_timeout_ms: u64::MAX,
        max_domains_per_exporter: usize::MAX,
        idle_domain_timeout_ms: u64::MAX,
        allowed_exporters: Vec::new(),
        time_bounds: None,
    }
}

/// Run one decode target: feed every frame, with its version forced to `version`, to a
/// small-limits decoder and check what must hold for any input.
pub fn run_decode_target(data: &[u8], version: u16) {
    let limits = small_limits();
    let mut decoder = FlowDecoder::new(limits.clone());
    let mut now = T0_MS;
    let mut buf = Vec::with_capacity(MAX_FRAME);
    let mut out = Vec::new();
    let mut total = 0u64;
    let expected_version = match version {
        5 => FlowVersion::NetflowV5,
        9 => FlowVersion::NetflowV9,
        _ => FlowVersion::Ipfix,
    };
    for f in frames(data) {
        now += STEPS_MS[f.step];
        if f.step == 7 {
            decoder.expire(now);
        }
        buf.clear();
        buf.extend_from_slice(f.payload);
        if buf.len() >= 2 {
            buf[..2].copy_from_slice(&version.to_be_bytes());
        }
        out.clear();
        let result = decoder.decode(f.exporter, &buf, now, &mut out);
        if let Ok(n) = result {
            assert_eq!(n, out.len(), "Ok(n) must count the records appended");
        }
        if version == 5 {
            assert!(out.len() <= 30, "a v5 datagram holds at most 30 records");
            assert!(
                result.is_err() || !out.is_empty(),
                "an accepted v5 datagram has records"
            );
        }
        for r in &out {
            check_record(r, f.exporter, expected_version);
            if let Some(b) = limits.time_bounds {
                let range = now.saturating_sub(b.max_past_ms)..=now.saturating_add(b.max_future_ms);
                assert!(
                    range.contains(&r.start_ms) && range.contains(&r.end_ms),
                    "time outside the bounds after clamping: {r:?}"
                );
            }
        }
        total += out.len() as u64;
        assert!(decoder.domain_count() <= limits.max_domains);
        assert!(
            decoder.template_count() <= decoder.domain_count() * limits.max_templates_per_domain
        );
    }
    assert_eq!(
        decoder.stats().records.iter().sum::<u64>(),
        total,
        "stats.records counts every record handed out"
    );
    check_persist_round_trip(&decoder);
    decoder.expire(now + STEPS_MS[7]);
    check_persist_round_trip(&decoder);
    // Everything was last seen or refreshed at or before `now`, so all of it is stale now.
    decoder.expire(now + limits.template_timeout_ms + limits.pending_timeout_ms + 1);
    assert_eq!(decoder.template_count(), 0, "expire left templates behind");
    assert_eq!(decoder.domain_count(), 0, "expire left domains behind");
}

/// What holds for every record, whatever the input.
pub fn check_record(r: &FlowRecord, exporter: IpAddr, version: FlowVersion) {
    assert!(r.sampling_interval >= 1, "sampling_interval 0: {r:?}");
    assert!(
        r.bytes <= MAX_FLOW_COUNTER && r.packets <= MAX_FLOW_COUNTER,
        "counter over the cap: {r:?}"
    );
    assert_eq!(r.exporter, exporter, "record of another exporter: {r:?}");
    assert_eq!(r.version, version, "record of another version: {r:?}");
}

/// `restore(snapshot(d))` into a fresh decoder with the same limits brings back every template
/// and sampling state: same template count, nothing skipped, the same snapshot text.
pub fn check_persist_round_trip(decoder: &FlowDecoder) {
    let text = persist::snapshot(decoder);
    let mut restored = FlowDecoder::new(decoder.limits().clone());
    let summary = persist::restore(&mut restored, &text);
    assert_eq!(
        summary.skipped, 0,
        "snapshot line refused: {summary:?}\n{text}"
    );
    assert_eq!(
        summary.templates,
        decoder.template_count(),
        "{summary:?}\n{text}"
    );
    assert_eq!(
        restored.template_count(),
        decoder.template_count(),
        "\n{text}"
    );
    assert_eq!(
        persist::snapshot(&restored),
        text,
        "snapshot of the restored decoder differs"
    );
}
