//! What a hostile or broken exporter can send, and what the decoder does with it (issue 11:
//! findings of an outside run). Each test fails on the decoder as it was before the fix.

use std::net::IpAddr;

use nmsd_parsers::{
    DecoderLimits, FlowDecoder, FlowRecord, IpNet, MAX_FLOW_COUNTER, TimeBounds, TimePolicy, ie,
};
use nmsd_testkit::encode::{self, MessageBuilder, V5Header, field};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const EXPORT_SECS: u32 = 1_767_225_700;
const NOW_MS: u64 = EXPORT_SECS as u64 * 1000;

fn exporter() -> IpAddr {
    IpAddr::from([192, 0, 2, 1])
}

fn bounds(policy: TimePolicy) -> DecoderLimits {
    DecoderLimits {
        time_bounds: Some(TimeBounds {
            max_future_ms: 3_600_000,
            max_past_ms: 365 * 86_400_000,
            policy,
        }),
        ..DecoderLimits::default()
    }
}

/// IPFIX with absolute millisecond times: record 0 ends in the year 2500, record 1 at
/// 2^63 - 1 ms, record 2 starts in 1970, record 3 is fine.
fn ipfix_with_far_times() -> (Vec<u8>, Vec<FlowRecord>) {
    let mut tmpl = encode::ipv4_template(256);
    tmpl.fields
        .retain(|f| f.id != ie::FLOW_START_SYS_UP_TIME && f.id != ie::FLOW_END_SYS_UP_TIME);
    tmpl.fields.push(field(ie::FLOW_START_MILLISECONDS, 8));
    tmpl.fields.push(field(ie::FLOW_END_MILLISECONDS, 8));
    let mut records = encode::sample_records(4, false, T0);
    let year_2500 = 16_725_225_600_000;
    records[0].end_ms = year_2500;
    records[1].end_ms = i64::MAX as u64;
    records[2].start_ms = 1_000;
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl).data(&tmpl, &records);
    (m.finish(), records)
}

#[test]
fn times_out_of_range_are_clamped_to_receive_time_and_counted() {
    let (d, records) = ipfix_with_far_times();
    let mut dec = FlowDecoder::new(bounds(TimePolicy::Clamp));
    let mut out = Vec::new();
    assert_eq!(dec.decode(exporter(), &d, NOW_MS, &mut out), Ok(4));
    // The end is replaced by the receive time; a start that would then follow it moves too.
    assert_eq!(out[0].end_ms, NOW_MS);
    assert_eq!(out[0].start_ms, records[0].start_ms);
    assert_eq!(out[1].end_ms, NOW_MS);
    assert_eq!(out[2].start_ms, out[2].end_ms);
    assert_eq!(out[2].end_ms, records[2].end_ms);
    assert_eq!(
        (out[3].start_ms, out[3].end_ms),
        (records[3].start_ms, records[3].end_ms)
    );
    let s = dec.stats();
    assert_eq!(
        (s.times_future, s.times_past, s.records_dropped_time),
        (2, 1, 0)
    );
}

#[test]
fn times_out_of_range_are_dropped_under_the_drop_policy() {
    let (d, records) = ipfix_with_far_times();
    let mut dec = FlowDecoder::new(bounds(TimePolicy::Drop));
    let mut out = Vec::new();
    assert_eq!(dec.decode(exporter(), &d, NOW_MS, &mut out), Ok(1));
    assert_eq!(out[0].end_ms, records[3].end_ms);
    assert_eq!(dec.stats().records_dropped_time, 3);
}

#[test]
fn counters_no_flow_can_reach_are_clamped_and_counted() {
    let mut tmpl = encode::ipv4_template(256);
    for f in &mut tmpl.fields {
        if f.id == ie::OCTET_DELTA_COUNT || f.id == ie::PACKET_DELTA_COUNT {
            f.len = 8;
        }
    }
    let mut records = encode::sample_records(3, false, T0);
    records[0].bytes = u64::MAX;
    records[1].packets = 1 << 62;
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&tmpl).data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    assert_eq!(dec.decode(exporter(), &m.finish(), NOW_MS, &mut out), Ok(3));
    assert_eq!(out[0].bytes, MAX_FLOW_COUNTER);
    assert_eq!(out[1].packets, MAX_FLOW_COUNTER);
    assert_eq!(out[2].bytes, records[2].bytes);
    assert_eq!(dec.stats().counters_clamped, 2);
    // Thousands of clamped records still sum inside a signed 64-bit column.
    assert!(
        MAX_FLOW_COUNTER
            .checked_mul(4096)
            .is_some_and(|s| s <= i64::MAX as u64)
    );
}

/// A softflowd-like v9 export (template and data in one datagram).
fn real_exporter_datagram(seq: u32) -> Vec<u8> {
    let tmpl = encode::ipv4_template(1024);
    let records = encode::sample_records(10, false, T0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, seq, 0);
    m.template(&tmpl).data(&tmpl, &records);
    m.finish()
}

#[test]
fn a_flood_of_empty_headers_does_not_lock_out_a_new_exporter() {
    // The outside run: 4,200 twenty-byte v9 headers with distinct source ids filled the
    // 4,096-entry table, and a real exporter then decoded 0 records for hours.
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    for (i, id) in (0..4_200u32).enumerate() {
        // From a handful of addresses, so the per-address cap alone is not what saves us.
        let from = IpAddr::from([203, 0, 113, (i % 32) as u8]);
        let header = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, id).finish();
        assert_eq!(header.len(), 20);
        assert_eq!(
            dec.decode(from, &header, NOW_MS + i as u64, &mut out),
            Ok(0)
        );
    }
    assert!(dec.domain_count() <= 4096);
    let real = IpAddr::from([192, 0, 2, 77]);
    let n = dec.decode(real, &real_exporter_datagram(0), NOW_MS + 5_000, &mut out);
    assert_eq!(n, Ok(10));
    assert!(dec.stats().domains_evicted > 0);
}

#[test]
fn one_address_is_capped_and_evicts_its_own_domains_first() {
    let limits = DecoderLimits {
        max_domains_per_exporter: 16,
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let mut out = Vec::new();
    // A real exporter with templates, then 1,000 made-up source ids from one address.
    assert_eq!(
        dec.decode(exporter(), &real_exporter_datagram(0), NOW_MS, &mut out),
        Ok(10)
    );
    let attacker = IpAddr::from([203, 0, 113, 9]);
    for id in 0..1_000u32 {
        let header = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, id).finish();
        let _ = dec.decode(attacker, &header, NOW_MS + 1, &mut out);
    }
    assert!(dec.domain_count() <= 17, "{} domains", dec.domain_count());
    // The real exporter's templates survived: its next data decodes.
    out.clear();
    let tmpl = encode::ipv4_template(1024);
    let mut m = MessageBuilder::v9(3_700_000, EXPORT_SECS + 100, 1, 0);
    m.data(&tmpl, &encode::sample_records(4, false, T0));
    assert_eq!(
        dec.decode(exporter(), &m.finish(), NOW_MS + 2, &mut out),
        Ok(4)
    );
}

#[test]
fn template_less_domains_expire_quickly() {
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    for id in 0..100u32 {
        let header = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, id).finish();
        let _ = dec.decode(IpAddr::from([203, 0, 113, 9]), &header, NOW_MS, &mut out);
    }
    dec.decode(exporter(), &real_exporter_datagram(0), NOW_MS, &mut out)
        .expect("decodes");
    assert_eq!(dec.domain_count(), 101);
    // Two minutes later the empty ones are gone; the one with a template stays (6 h).
    dec.expire(NOW_MS + 120_001);
    assert_eq!(dec.domain_count(), 1);
}

#[test]
fn exporters_outside_the_allow_list_are_refused_and_counted() {
    let limits = DecoderLimits {
        allowed_exporters: vec!["192.0.2.0/24".parse().expect("cidr")],
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let mut out = Vec::new();
    let d = real_exporter_datagram(0);
    assert_eq!(
        dec.decode(IpAddr::from([198, 51, 100, 1]), &d, NOW_MS, &mut out),
        Ok(0)
    );
    assert_eq!(dec.domain_count(), 0);
    assert_eq!(dec.stats().datagrams_not_allowed, 1);
    // A dual-stack socket sees IPv4 exporters as IPv4-mapped IPv6 addresses.
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("addr");
    assert_eq!(dec.decode(mapped, &d, NOW_MS, &mut out), Ok(10));
    assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    assert!("2001:db8::/32".parse::<IpNet>().is_ok());
}

#[test]
fn a_flipped_sequence_bit_is_a_reset_not_billions_of_lost_flows() {
    // v5 counts flows: 30 per datagram, one datagram per 10 ms.
    let records = encode::sample_records(30, false, T0);
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    let mut seq = 1_000u32;
    for i in 0..10u32 {
        let flipped = if i == 5 { seq ^ 1 << 30 } else { seq };
        let h = V5Header {
            sys_uptime_ms: 3_600_000,
            unix_secs: EXPORT_SECS,
            flow_sequence: flipped,
            ..V5Header::default()
        };
        dec.decode(
            exporter(),
            &encode::v5_datagram(&h, &records),
            NOW_MS + 10 * i as u64,
            &mut out,
        )
        .expect("decodes");
        seq += 30;
    }
    let s = dec.stats();
    assert_eq!(s.sequence_lost_flows, 0, "a bit flip is not loss");
    assert_eq!(s.sequence_resets, 2);
    // Real loss is still seen: 60 flows missing.
    let h = V5Header {
        sys_uptime_ms: 3_600_000,
        unix_secs: EXPORT_SECS,
        flow_sequence: seq + 60,
        ..V5Header::default()
    };
    dec.decode(
        exporter(),
        &encode::v5_datagram(&h, &records),
        NOW_MS + 200,
        &mut out,
    )
    .expect("decodes");
    assert_eq!(dec.stats().sequence_lost_flows, 60);
    // And reaches the exporter's own loss counters.
    let mut per_exporter = Vec::new();
    dec.take_exporter_loss(|k, l| per_exporter.push((k.exporter, l.lost_flows, l.resets)));
    assert_eq!(per_exporter, vec![(exporter(), 60, 2)]);
}

#[test]
fn icmp_type_and_code_land_in_the_destination_port_whatever_the_exporter() {
    // fprobe (v5) puts type/code in the source port, softflowd in the destination port.
    let mut records = encode::sample_records(2, false, T0);
    for r in &mut records {
        r.protocol = 1;
    }
    records[0].src_port = 0x0800; // echo request, fprobe style
    records[0].dst_port = 0;
    records[1].src_port = 0;
    records[1].dst_port = 0x0800; // softflowd style
    let h = V5Header {
        sys_uptime_ms: 3_600_000,
        unix_secs: EXPORT_SECS,
        ..V5Header::default()
    };
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    dec.decode(
        exporter(),
        &encode::v5_datagram(&h, &records),
        NOW_MS,
        &mut out,
    )
    .expect("decodes");
    for r in &out {
        assert_eq!((r.src_port, r.dst_port), (0, 0x0800));
    }
    // The same through v9.
    let tmpl = encode::ipv4_template(256);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&tmpl).data(&tmpl, &records);
    out.clear();
    dec.decode(exporter(), &m.finish(), NOW_MS, &mut out)
        .expect("decodes");
    for r in &out {
        assert_eq!((r.src_port, r.dst_port), (0, 0x0800));
    }
}

#[test]
fn two_listeners_keep_one_hosts_exporters_apart() {
    // Two exporters on one host, each sending to its own listener, both with source id 0 and
    // template 256, but different templates: neither may decode with the other's.
    let v4 = encode::ipv4_template(256);
    let mut other = encode::ipv4_template(256);
    other.fields.reverse();
    let records = encode::sample_records(3, false, T0);
    let mut a = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    a.template(&v4).data(&v4, &records);
    let mut b = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    b.template(&other).data(&other, &records);
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    assert_eq!(
        dec.decode_from_source(0, exporter(), &a.finish(), NOW_MS, &mut out),
        Ok(3)
    );
    assert_eq!(
        dec.decode_from_source(1, exporter(), &b.finish(), NOW_MS, &mut out),
        Ok(3)
    );
    // Data alone, after both templates are known: each source uses its own.
    let mut a_data = MessageBuilder::v9(3_600_100, EXPORT_SECS, 1, 0);
    a_data.data(&v4, &records);
    out.clear();
    dec.decode_from_source(0, exporter(), &a_data.finish(), NOW_MS, &mut out)
        .expect("decodes");
    assert_eq!(out.len(), 3);
    assert!(
        out.iter()
            .zip(&records)
            .all(|(o, r)| o.bytes == r.bytes && o.source == 0)
    );
    let mut b_data = MessageBuilder::v9(3_600_100, EXPORT_SECS, 1, 0);
    b_data.data(&other, &records);
    out.clear();
    dec.decode_from_source(1, exporter(), &b_data.finish(), NOW_MS, &mut out)
        .expect("decodes");
    assert!(
        out.iter()
            .zip(&records)
            .all(|(o, r)| o.bytes == r.bytes && o.source == 1)
    );
    // The template cache keeps them apart across a restart, and reads files without sources.
    let text = nmsd_parsers::persist::snapshot(&dec);
    assert!(
        text.lines().any(|l| l.starts_with("T 9@1 192.0.2.1 0 ")),
        "{text}"
    );
    let mut restored = FlowDecoder::default();
    let summary = nmsd_parsers::persist::restore(&mut restored, &text);
    assert_eq!((summary.templates, summary.skipped), (2, 0));
    out.clear();
    restored
        .decode_from_source(1, exporter(), &b_data.finish(), NOW_MS, &mut out)
        .expect("decodes");
    assert!(out.iter().zip(&records).all(|(o, r)| o.bytes == r.bytes));
}

/// Found by the differential fuzzer: an IPFIX template field with the enterprise bit set and
/// enterprise number 0 (IANA's "reserved" PEN) was read as the IANA element of the same number,
/// so an enterprise-specific field 1 became the flow's byte count. With the bit set a field is
/// enterprise-specific by definition (RFC 7011 §3.2), whatever the number; netflow_parser
/// ignores it, and so must nmsd.
#[test]
fn an_enterprise_field_with_enterprise_number_zero_is_not_the_iana_element() {
    let now_s: u32 = 1_767_225_600;
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&60u16.to_be_bytes());
    m.extend_from_slice(&now_s.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes()); // sequence
    m.extend_from_slice(&0u32.to_be_bytes()); // observation domain
    // Template set: template 256 with (enterprise bit | 1, 4 bytes, PEN 0), octetDeltaCount
    // (8 bytes), sourceIPv4Address.
    m.extend_from_slice(&2u16.to_be_bytes());
    m.extend_from_slice(&24u16.to_be_bytes());
    m.extend_from_slice(&256u16.to_be_bytes());
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(&0x8001u16.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&8u16.to_be_bytes());
    m.extend_from_slice(&8u16.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    // Data set: one record.
    m.extend_from_slice(&256u16.to_be_bytes());
    m.extend_from_slice(&20u16.to_be_bytes());
    m.extend_from_slice(&0xEEEE_EEEEu32.to_be_bytes());
    m.extend_from_slice(&1234u64.to_be_bytes());
    m.extend_from_slice(&[10, 0, 0, 1]);
    assert_eq!(m.len(), 60);
    let mut d = FlowDecoder::new(DecoderLimits::default());
    let mut out = Vec::new();
    d.decode(exporter(), &m, u64::from(now_s) * 1000, &mut out)
        .expect("decodes");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].bytes, 1234, "{:?}", out[0]);
    assert_eq!(out[0].src_addr, IpAddr::from([10, 0, 0, 1]));
}
