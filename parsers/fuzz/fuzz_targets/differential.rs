//! nmsd's decoder against the `netflow_parser`-based oracle (`nmsd_testkit::oracle`) on the
//! same stream of datagrams (see the crate docs for the framing; the clock step is ignored).
//!
//! Agreement is what the oracle module's docs define: for every datagram the oracle reads
//! completely without error, nmsd must decode it without error and produce the same records
//! as a multiset (`compare_records`). nmsd runs with limits that never bind and a clock that
//! stands still, since the oracle models no caps or timeouts.
//!
//! Three refinements, each because the docs' per-datagram rule assumes both decoders hold the
//! same templates, which a stream of arbitrary datagrams does not guarantee:
//!
//! 1. Only versions 5, 9 and 10 are fed (to both decoders). netflow_parser also reads v7 and
//!    returns no records for it; nmsd does not decode v7 at all.
//! 2. Once the oracle refuses a v9 / IPFIX datagram, that scope (exporter, version, domain id)
//!    is no longer compared. nmsd may have learned templates or options data from the parts it
//!    could read, the oracle learned nothing, so their template caches differ from then on and
//!    the next data set would "disagree" about state, not about decoding.
//! 3. Likewise when the oracle accepts a datagram but nmsd refuses a template in it for a
//!    reason listed in [`excused`] (RFC rules or nmsd's documented bounds that netflow_parser
//!    does not enforce): the datagram is not compared and its scope is dropped from then on.
//! 4. Errors that leave both decoders with the same templates: a set with a reserved set id
//!    (RFC 3954 §5: 2-255 for v9; RFC 7011 §3.3.2: 4-255 for IPFIX), which both skip, nmsd
//!    counting an error and netflow_parser silently; and a template record that runs past the
//!    end of its set, after which both stop reading that set (netflow_parser without saying
//!    so); and a variable-length field that runs past the end of its data set (RFC 7011 §7),
//!    where both keep the records before it. A datagram whose only errors are of these kinds is
//!    compared as usual, just not required to decode without error.
//! 5. IPFIX set ids 0 and 1 are reserved too (RFC 7011 §3.3.2: "not used, for historical
//!    reasons"), but netflow_parser reads them as NetFlow v9 template sets and learns their
//!    templates, so a datagram that has one drops its scope as in 2.
//!
//! nmsd returns only the first error of a datagram; the kinds of the others come from its error
//! counters. When template refusals follow the first error their reasons are unknown, and the
//! scope is dropped. Any other error from nmsd on a datagram the oracle accepted is a failure.
#![no_main]

use std::collections::HashSet;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use nmsd_testkit::oracle::{Oracle, compare_records};
use nmsd_parsers::{DecodeError, FlowDecoder};
use nmsd_parsers_fuzz::{T0_MS, frames, unbounded_limits};

fuzz_target!(|data: &[u8]| {
    let mut nmsd = FlowDecoder::new(unbounded_limits());
    let mut oracle = Oracle::new();
    let mut dropped: HashSet<Scope> = HashSet::new();
    let mut ours = Vec::new();
    for (i, f) in frames(data).enumerate() {
        let d = f.payload;
        if !matches!(d, [0, 5 | 9 | 10, ..]) {
            continue;
        }
        let scope = scope_of(f.exporter, d);
        ours.clear();
        let before = nmsd.stats().errors;
        let result = nmsd.decode(f.exporter, d, T0_MS, &mut ours);
        let after = nmsd.stats().errors;
        // Kinds of every error in this datagram, not only the first one returned.
        let kinds: Vec<&str> = DecodeError::KINDS
            .iter()
            .zip(before.iter().zip(after))
            .filter(|(_, (b, a))| a > *b)
            .map(|(k, _)| *k)
            .collect();
        let theirs = oracle.decode(f.exporter, d);
        if scope.is_some_and(|s| dropped.contains(&s)) {
            continue;
        }
        let Ok(theirs) = theirs else {
            dropped.extend(scope);
            continue;
        };
        if d[1] == 10 && set_ids(d).iter().any(|&id| id < 2) {
            dropped.extend(scope);
            continue;
        }
        if let Err(e) = &result {
            let known = ["reserved_set_id", "bad_template", "bad_variable_length"];
            if !kinds.iter().all(|k| known.contains(k)) {
                panic!(
                    "datagram {i}: oracle accepted, nmsd refused: {e:?} (errors: {kinds:?})\n{}",
                    hex(d)
                );
            }
            let first_is_template = matches!(e, DecodeError::BadTemplate { .. });
            let bt = DecodeError::KINDS.iter().position(|k| *k == "bad_template");
            let bad_templates = bt.map_or(0, |bt| after[bt] - before[bt]);
            if bad_templates > u64::from(first_is_template) || excused(e) {
                dropped.extend(scope);
                continue;
            }
            let benign = match e {
                DecodeError::ReservedSetId(_) | DecodeError::BadVariableLength => true,
                DecodeError::BadTemplate { reason, .. } => {
                    *reason == "template record runs past its set"
                }
                _ => false,
            };
            assert!(
                benign,
                "datagram {i}: oracle accepted, nmsd refused: {e:?} (errors: {kinds:?})\n{}",
                hex(d)
            );
        }
        if let Err(m) = compare_records(&ours, &theirs) {
            panic!(
                "datagram {i}: {m}\nnmsd record: {:?}\noracle records: {theirs:?}\ndatagram: {}",
                ours.get(m.index),
                hex(d)
            );
        }
    }
});

/// Set ids of a v9 / IPFIX message, as far as its set lengths can be followed.
fn set_ids(d: &[u8]) -> Vec<u16> {
    let (mut pos, end) = match d {
        [0, 9, ..] => (20, d.len()),
        [0, 10, a, b, ..] => (16, usize::from(u16::from_be_bytes([*a, *b])).min(d.len())),
        _ => return vec![],
    };
    let mut ids = Vec::new();
    while pos + 4 <= end {
        let id = u16::from_be_bytes([d[pos], d[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([d[pos + 2], d[pos + 3]]));
        if len < 4 || len > end - pos {
            break;
        }
        ids.push(id);
        pos += len;
    }
    ids
}

/// Template refusals nmsd reports where the oracle accepts the datagram: netflow_parser either
/// keeps the template or drops it silently (its `is_valid` filter) and reads on. nmsd is right
/// to refuse each of these, so they are not disagreements about decoding.
fn excused(e: &DecodeError) -> bool {
    let DecodeError::BadTemplate { reason, .. } = e else {
        return false;
    };
    matches!(
        *reason,
        // RFC 3954 §5.2 and RFC 7011 §3.4.1: template ids 0-255 are reserved (for set ids);
        // netflow_parser keeps such templates.
        "template ids below 256 are reserved"
        // nmsd's bound (template::MAX_TEMPLATE_FIELDS); netflow_parser allows 10,000 fields.
        | "template has more than 512 fields"
        // A record that cannot fit in a set (at most 65,531 bytes of body) can never arrive;
        // netflow_parser sums field lengths with saturation and keeps such templates.
        | "records would exceed 65535 bytes"
        // A v9 template record with field count 0 means nothing (RFC 3954 has no withdrawal);
        // netflow_parser drops it silently.
        | "template has no fields"
        // Records of 0 bytes cannot be delimited in a data set; netflow_parser drops such
        // templates silently (total size 0).
        | "records would be zero bytes long"
        // RFC 3954 §5.2: v9 field lengths are fixed; 65535 is IPFIX's variable-length marker.
        // netflow_parser drops such v9 templates silently.
        | "NetFlow v9 has no variable-length fields"
        // RFC 3954 §6.1: scope and option lengths are in bytes of 4-byte field specifiers.
        // netflow_parser drops such options templates silently.
        | "options template lengths are not multiples of 4"
        // RFC 7011 §3.4.2.2: the scope field count MUST NOT be zero (and cannot exceed the
        // field count).
        | "options template scope count is 0 or exceeds field count"
    )
}

/// Template scope of a datagram: RFC 3954 / RFC 7011 source identity. `None` for v5 (no
/// templates) and for datagrams too short to have one (neither decoder reads their sets).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Scope {
    exporter: IpAddr,
    version: u8,
    domain: u32,
}

fn scope_of(exporter: IpAddr, d: &[u8]) -> Option<Scope> {
    let at = match d {
        [0, 9, ..] => 16,
        [0, 10, ..] => 12,
        _ => return None,
    };
    let domain = u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?);
    Some(Scope {
        exporter,
        version: d[1],
        domain,
    })
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
