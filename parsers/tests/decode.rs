//! Integration tests of the decoder through its public API.
//!
//! Packets are built with `nmsd_testkit::encode`, or byte by byte where the encoder could share
//! a mistake with the decoder. Expected records are spelled out in full: `FlowRecord` equality
//! catches a field filled that should not be as well as one left empty.

use std::net::{IpAddr, Ipv6Addr};

use nmsd_parsers::{
    DecodeError, DecoderLimits, Direction, FieldSpec, FlowDecoder, FlowRecord, FlowVersion,
    TemplateDef, TemplateKind, ie, persist,
};
use nmsd_testkit::encode::{self, MessageBuilder, V5Header, field};

/// 2026-01-01T00:00:00Z, the base of sample flows.
const T0: u64 = 1_767_225_600_000;
/// Export time of most messages: 100 s after T0, so every sample flow has ended by then.
const EXPORT_SECS: u32 = 1_767_225_700;
const EXPORT_MS: u64 = EXPORT_SECS as u64 * 1000;

fn exporter() -> IpAddr {
    IpAddr::from([192, 0, 2, 1])
}

fn other_exporter() -> IpAddr {
    IpAddr::from([192, 0, 2, 2])
}

/// Decode one datagram from [`exporter`] at the export time.
fn decode(dec: &mut FlowDecoder, d: &[u8]) -> (Result<usize, DecodeError>, Vec<FlowRecord>) {
    decode_from(dec, exporter(), d, EXPORT_MS)
}

fn decode_from(
    dec: &mut FlowDecoder,
    from: IpAddr,
    d: &[u8],
    now_ms: u64,
) -> (Result<usize, DecodeError>, Vec<FlowRecord>) {
    let mut out = Vec::new();
    let r = dec.decode(from, d, now_ms, &mut out);
    if let Ok(n) = r {
        assert_eq!(n, out.len(), "returned count matches records appended");
    }
    (r, out)
}

/// Decode a datagram that must be accepted; its records.
fn accept(dec: &mut FlowDecoder, d: &[u8]) -> Vec<FlowRecord> {
    accept_from(dec, exporter(), d, EXPORT_MS)
}

fn accept_from(dec: &mut FlowDecoder, from: IpAddr, d: &[u8], now_ms: u64) -> Vec<FlowRecord> {
    let (r, out) = decode_from(dec, from, d, now_ms);
    assert_eq!(r, Ok(out.len()));
    out
}

/// Errors counted so far of one kind.
fn errors(dec: &FlowDecoder, kind: &str) -> u64 {
    let i = DecodeError::KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("known kind");
    dec.stats().errors[i]
}

fn total_errors(dec: &FlowDecoder) -> u64 {
    dec.stats().errors.iter().sum()
}

/// Options template 258: observationDomainId, systemInitTimeMilliseconds, the first
/// `scope_fields` of them scope fields.
fn system_init_options(scope_fields: u16) -> TemplateDef {
    TemplateDef {
        id: 258,
        kind: TemplateKind::Options { scope_fields },
        fields: vec![field(149, 4), field(ie::SYSTEM_INIT_TIME_MILLISECONDS, 8)],
    }
}

/// What a record encoded with `encode::ipv4_template` decodes to.
fn ipv4_expected(r: &FlowRecord, domain: u32, version: FlowVersion) -> FlowRecord {
    FlowRecord {
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        bytes: r.bytes,
        packets: r.packets,
        exporter: exporter(),
        src_addr: r.src_addr,
        dst_addr: r.dst_addr,
        observation_domain: domain,
        in_if: r.in_if,
        out_if: r.out_if,
        src_port: r.src_port,
        dst_port: r.dst_port,
        protocol: r.protocol,
        tcp_flags: r.tcp_flags,
        tos: r.tos,
        version,
        ..FlowRecord::EMPTY
    }
}

/// What a record encoded with `encode::ipv6_template` decodes to: everything but sampling.
fn ipv6_expected(r: &FlowRecord, domain: u32, version: FlowVersion) -> FlowRecord {
    FlowRecord {
        exporter: exporter(),
        observation_domain: domain,
        version,
        sampling_interval: 1,
        ..*r
    }
}

/// IPv6 sample records with the optional fields filled, so the template's every field counts.
fn ipv6_records(n: usize) -> Vec<FlowRecord> {
    encode::sample_records(n, true, T0)
        .into_iter()
        .enumerate()
        .map(|(i, r)| FlowRecord {
            vlan: 100 + i as u16,
            src_as: 64_500 + i as u32,
            dst_as: 4_200_000_000 + i as u32,
            direction: if i % 2 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            ..r
        })
        .collect()
}

/// The body of a data set holding `records` (no set header), for tests that patch bytes.
/// `m` must be a builder with the clock of the message the body will go in: uptime fields are
/// written relative to it.
fn data_body(mut m: MessageBuilder, def: &TemplateDef, records: &[FlowRecord]) -> Vec<u8> {
    let start = m.finish().len() + 4;
    m.data(def, records);
    m.finish()[start..].to_vec()
}

fn template_len(def: &TemplateDef) -> usize {
    def.fields.iter().map(|f| f.len as usize).sum()
}

fn with_fields(mut def: TemplateDef, extra: &[FieldSpec]) -> TemplateDef {
    def.fields.extend_from_slice(extra);
    def
}

// ---------------------------------------------------------------------------------------------
// NetFlow v5
// ---------------------------------------------------------------------------------------------

fn v5_header() -> V5Header {
    V5Header {
        sys_uptime_ms: 1_000_000,
        unix_secs: EXPORT_SECS,
        unix_nsecs: 500_000_000,
        flow_sequence: 0,
        engine_type: 0,
        engine_id: 0,
        sampling: 0,
    }
}

fn v5_expected(r: &FlowRecord, domain: u32) -> FlowRecord {
    FlowRecord {
        exporter: exporter(),
        observation_domain: domain,
        version: FlowVersion::NetflowV5,
        ..*r
    }
}

#[test]
fn v5_fields_and_times_from_uptime_and_unix_secs() {
    let records = encode::sample_records(5, false, T0);
    let d = encode::v5_datagram(&v5_header(), &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &d);
    assert_eq!(r, Ok(5));
    let want: Vec<_> = records.iter().map(|r| v5_expected(r, 0)).collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().datagrams, [1, 0, 0]);
    assert_eq!(dec.stats().records, [5, 0, 0]);
}

#[test]
fn v5_hand_built_record() {
    // One record, every byte spelled out, so an encoder/decoder pair sharing a mistake shows.
    let mut d = vec![0, 5, 0, 1];
    d.extend_from_slice(&100_000u32.to_be_bytes()); // sysUptime
    d.extend_from_slice(&1_767_225_600u32.to_be_bytes()); // unix_secs
    d.extend_from_slice(&250_000_000u32.to_be_bytes()); // unix_nsecs: +250 ms
    d.extend_from_slice(&42u32.to_be_bytes()); // flow_sequence
    d.extend_from_slice(&[1, 2]); // engine type 1, id 2
    d.extend_from_slice(&[0, 0]); // unsampled
    d.extend_from_slice(&[10, 1, 2, 3]); // src
    d.extend_from_slice(&[10, 4, 5, 6]); // dst
    d.extend_from_slice(&[10, 0, 0, 254]); // next hop
    d.extend_from_slice(&3u16.to_be_bytes()); // input
    d.extend_from_slice(&4u16.to_be_bytes()); // output
    d.extend_from_slice(&7u32.to_be_bytes()); // dPkts
    d.extend_from_slice(&1_500u32.to_be_bytes()); // dOctets
    d.extend_from_slice(&90_000u32.to_be_bytes()); // first: 10 s before export
    d.extend_from_slice(&99_000u32.to_be_bytes()); // last: 1 s before export
    d.extend_from_slice(&51_000u16.to_be_bytes()); // src port
    d.extend_from_slice(&443u16.to_be_bytes()); // dst port
    d.extend_from_slice(&[0, 0x1B, 6, 0xB8]); // pad, flags, proto, tos
    d.extend_from_slice(&64_512u16.to_be_bytes()); // src AS
    d.extend_from_slice(&15_169u16.to_be_bytes()); // dst AS
    d.extend_from_slice(&[24, 16, 0, 0]); // masks, pad
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &d);
    assert_eq!(r, Ok(1));
    let export = 1_767_225_600_250;
    assert_eq!(
        out[0],
        FlowRecord {
            start_ms: export - 10_000,
            end_ms: export - 1_000,
            bytes: 1_500,
            packets: 7,
            exporter: exporter(),
            src_addr: IpAddr::from([10, 1, 2, 3]),
            dst_addr: IpAddr::from([10, 4, 5, 6]),
            next_hop: IpAddr::from([10, 0, 0, 254]),
            observation_domain: 0x0102,
            in_if: 3,
            out_if: 4,
            src_as: 64_512,
            dst_as: 15_169,
            sampling_interval: 1,
            src_port: 51_000,
            dst_port: 443,
            vlan: 0,
            protocol: 6,
            tcp_flags: 0x1B,
            tos: 0xB8,
            direction: Direction::Unknown,
            version: FlowVersion::NetflowV5,
            source: 0,
            packet_counts: nmsd_parsers::PacketCounts::ZERO,
        }
    );
}

#[test]
fn v5_uptime_wraps_around_2_pow_32() {
    let records = encode::sample_records(1, false, T0);
    let h = V5Header {
        sys_uptime_ms: 5_000,
        ..v5_header()
    };
    let mut d = encode::v5_datagram(&h, &records);
    // The flow started 6 s before export, before the uptime counter wrapped, and ended 1 s
    // after the wrap.
    d[24 + 24..24 + 28].copy_from_slice(&(u32::MAX - 999).to_be_bytes());
    d[24 + 28..24 + 32].copy_from_slice(&1_000u32.to_be_bytes());
    let mut dec = FlowDecoder::default();
    let (_, out) = decode(&mut dec, &d);
    let export = EXPORT_MS + 500;
    assert_eq!(
        (out[0].start_ms, out[0].end_ms),
        (export - 6_000, export - 4_000)
    );
}

#[test]
fn v5_header_sampling_is_applied() {
    let records = encode::sample_records(3, false, T0);
    let h = V5Header {
        // Mode 1 (deterministic) in the top two bits, interval 100.
        sampling: 1 << 14 | 100,
        ..v5_header()
    };
    let mut dec = FlowDecoder::default();
    let (_, out) = decode(&mut dec, &encode::v5_datagram(&h, &records));
    let want: Vec<_> = records
        .iter()
        .map(|r| FlowRecord {
            bytes: r.bytes * 100,
            packets: r.packets * 100,
            sampling_interval: 100,
            ..v5_expected(r, 0)
        })
        .collect();
    assert_eq!(out, want);
}

#[test]
fn v5_engine_is_the_domain() {
    let records = encode::sample_records(2, false, T0);
    let mut dec = FlowDecoder::default();
    for (engine_type, engine_id) in [(3, 7), (3, 8), (3, 7)] {
        let h = V5Header {
            engine_type,
            engine_id,
            ..v5_header()
        };
        let (_, out) = decode(&mut dec, &encode::v5_datagram(&h, &records));
        assert!(
            out.iter()
                .all(|r| r.observation_domain == (engine_type as u32) << 8 | engine_id as u32)
        );
    }
    assert_eq!(dec.domain_count(), 2);
}

#[test]
fn v5_sequence_gaps_count_lost_flows() {
    let records = encode::sample_records(3, false, T0);
    let mut dec = FlowDecoder::default();
    let mut send = |seq: u32, n: usize, engine_id: u8| {
        let h = V5Header {
            flow_sequence: seq,
            engine_id,
            ..v5_header()
        };
        accept(&mut dec, &encode::v5_datagram(&h, &records[..n]));
    };
    send(1_000, 3, 0);
    send(1_003, 3, 0); // in order
    send(1_010, 2, 0); // 4 flows missing (1006..1009)
    send(1_012, 1, 0); // in order
    send(7, 1, 1); // another engine: its own sequence space, first message
    send(8, 1, 1);
    send(1_016, 1, 0); // 3 more missing
    assert_eq!(dec.stats().sequence_lost_flows, 7);
    assert_eq!(dec.stats().sequence_resets, 0);
    let h = V5Header {
        flow_sequence: 5,
        ..v5_header()
    };
    accept(&mut dec, &encode::v5_datagram(&h, &records[..1]));
    assert_eq!(dec.stats().sequence_resets, 1, "a restart is not a loss");
    assert_eq!(dec.stats().sequence_lost_flows, 7);
    assert_eq!(dec.stats().sequence_lost_datagrams, 0);
}

#[test]
fn v5_bad_counts_and_lengths() {
    let records = encode::sample_records(2, false, T0);
    let good = encode::v5_datagram(&v5_header(), &records);
    let mut dec = FlowDecoder::default();
    for count in [0u16, 31, 0xFFFF] {
        let mut d = good.clone();
        d[2..4].copy_from_slice(&count.to_be_bytes());
        let (r, out) = decode(&mut dec, &d);
        assert!(
            matches!(r, Err(DecodeError::BadRecordCount { count: c, .. }) if c == count),
            "{r:?}"
        );
        assert!(out.is_empty());
    }
    let mut d = good.clone();
    d[2..4].copy_from_slice(&3u16.to_be_bytes());
    let (r, _) = decode(&mut dec, &d);
    assert_eq!(
        r,
        Err(DecodeError::Truncated {
            what: "NetFlow v5 records",
            need: 24 + 3 * 48,
            have: 24 + 2 * 48
        })
    );
    // Trailing bytes after the announced records are ignored.
    let mut d = good.clone();
    d.extend_from_slice(&[0xAB; 7]);
    assert_eq!(decode(&mut dec, &d).0, Ok(2));
    assert_eq!(errors(&dec, "bad_record_count"), 3);
    assert_eq!(errors(&dec, "truncated"), 1);
}

// ---------------------------------------------------------------------------------------------
// NetFlow v9
// ---------------------------------------------------------------------------------------------

#[test]
fn v9_template_and_data_in_one_datagram() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(10, false, T0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 77);
    m.template(&tmpl).data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(10));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv4_expected(r, 77, FlowVersion::NetflowV9))
        .collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().templates_learned, 1);
    assert_eq!(dec.stats().records, [0, 10, 0]);
    assert_eq!(dec.template_count(), 1);
}

#[test]
fn v9_template_and_data_in_separate_datagrams() {
    let tmpl = encode::ipv4_template(300);
    let records = encode::sample_records(4, false, T0);
    let mut dec = FlowDecoder::default();
    let mut t = MessageBuilder::v9(3_600_000, EXPORT_SECS - 30, 1, 0);
    t.template(&tmpl);
    assert_eq!(decode(&mut dec, &t.finish()), (Ok(0), vec![]));
    // A later message with another uptime: times follow its own header.
    let mut m = MessageBuilder::v9(3_630_000, EXPORT_SECS, 2, 0);
    m.data(&tmpl, &records);
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(4));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv4_expected(r, 0, FlowVersion::NetflowV9))
        .collect();
    assert_eq!(out, want);
    // Refreshing an identical template is not learning a new one.
    accept(&mut dec, &t.finish());
    assert_eq!(dec.stats().templates_learned, 1);
    assert_eq!(dec.stats().templates_refreshed, 1);
}

#[test]
fn v9_hand_built_datagram() {
    let mut d = vec![0, 9, 0, 2];
    d.extend_from_slice(&2_000_000u32.to_be_bytes()); // sysUptime
    d.extend_from_slice(&1_767_225_600u32.to_be_bytes()); // unix_secs
    d.extend_from_slice(&9u32.to_be_bytes()); // sequence
    d.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // source id
    // Template set: id 260, 9 fields.
    let fields: [(u16, u16); 9] = [
        (8, 4),
        (12, 4),
        (1, 4),
        (2, 4),
        (4, 1),
        (7, 2),
        (11, 2),
        (22, 4),
        (21, 4),
    ];
    d.extend_from_slice(&0u16.to_be_bytes());
    d.extend_from_slice(&(4 + 4 + 4 * fields.len() as u16).to_be_bytes());
    d.extend_from_slice(&260u16.to_be_bytes());
    d.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        d.extend_from_slice(&id.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
    }
    // Data set: one 29-byte record plus 3 bytes of padding.
    d.extend_from_slice(&260u16.to_be_bytes());
    d.extend_from_slice(&(4u16 + 29 + 3).to_be_bytes());
    d.extend_from_slice(&[198, 51, 100, 7]);
    d.extend_from_slice(&[203, 0, 113, 9]);
    d.extend_from_slice(&123_456u32.to_be_bytes());
    d.extend_from_slice(&99u32.to_be_bytes());
    d.push(17);
    d.extend_from_slice(&5353u16.to_be_bytes());
    d.extend_from_slice(&53u16.to_be_bytes());
    d.extend_from_slice(&1_940_000u32.to_be_bytes()); // start: 60 s before export
    d.extend_from_slice(&1_999_999u32.to_be_bytes()); // end: 1 ms before export
    d.extend_from_slice(&[0, 0, 0]);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &d);
    assert_eq!(r, Ok(1));
    let export = 1_767_225_600_000;
    assert_eq!(
        out,
        vec![FlowRecord {
            start_ms: export - 60_000,
            end_ms: export - 1,
            bytes: 123_456,
            packets: 99,
            exporter: exporter(),
            src_addr: IpAddr::from([198, 51, 100, 7]),
            dst_addr: IpAddr::from([203, 0, 113, 9]),
            observation_domain: 0x0102_0304,
            src_port: 5353,
            dst_port: 53,
            protocol: 17,
            version: FlowVersion::NetflowV9,
            ..FlowRecord::EMPTY
        }]
    );
}

#[test]
fn v9_ipv6_records() {
    let tmpl = encode::ipv6_template(1024);
    let records = ipv6_records(6);
    let mut m = MessageBuilder::v9(1_000, EXPORT_SECS, 1, 3);
    m.template(&tmpl).data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(6));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv6_expected(r, 3, FlowVersion::NetflowV9))
        .collect();
    assert_eq!(out, want);
    assert!(out.iter().all(FlowRecord::is_ipv6));
    // ICMPv6 (every fifth record) keeps the type/code the exporter put in the port field.
    assert_eq!((out[4].protocol, out[4].dst_port), (58, 0x0800));
}

/// Options template: scope System, then the given option fields.
fn v9_options(id: u16, option_fields: &[FieldSpec]) -> TemplateDef {
    let mut fields = vec![field(1, 4)];
    fields.extend_from_slice(option_fields);
    TemplateDef {
        id,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields,
    }
}

#[test]
fn v9_options_sampling_interval_without_sampler_id() {
    let opts = v9_options(257, &[field(ie::SAMPLING_INTERVAL, 4), field(35, 1)]);
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(3, false, T0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.template(&opts)
        .options_data(&opts, &[&[0, 100, 2]])
        .template(&tmpl)
        .data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(3), "options records are not flow records");
    let want: Vec<_> = records
        .iter()
        .map(|r| FlowRecord {
            bytes: r.bytes * 100,
            packets: r.packets * 100,
            sampling_interval: 100,
            ..ipv4_expected(r, 0, FlowVersion::NetflowV9)
        })
        .collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().options_records, 1);
}

#[test]
fn v9_options_sampling_per_sampler_id() {
    // Cisco style: FLOW_SAMPLER_ID, FLOW_SAMPLER_MODE, FLOW_SAMPLER_RANDOM_INTERVAL, plus a
    // sampler with a SAMPLING_INTERVAL instead.
    let opts = v9_options(
        257,
        &[
            field(ie::SAMPLER_ID, 1),
            field(49, 1),
            field(ie::SAMPLER_RANDOM_INTERVAL, 4),
        ],
    );
    let opts2 = v9_options(
        258,
        &[field(ie::SAMPLER_ID, 2), field(ie::SAMPLING_INTERVAL, 4)],
    );
    let tmpl = with_fields(encode::ipv4_template(256), &[field(ie::SAMPLER_ID, 1)]);
    let records = encode::sample_records(3, false, T0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    let mut body = data_body(m.clone(), &tmpl, &records);
    let rec_len = template_len(&tmpl);
    // Records carry sampler 5, 6 and 9 (unknown: falls back to the default, unsampled).
    for (i, sampler) in [5u8, 6, 9].into_iter().enumerate() {
        body[(i + 1) * rec_len - 1] = sampler;
    }
    m.template(&opts)
        .template(&opts2)
        .options_data(&opts, &[&[0, 5, 2, 10]])
        .options_data(&opts2, &[&[0, 6, 1000]])
        .template(&tmpl)
        .raw_set(256, &body);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(3));
    let want: Vec<_> = records
        .iter()
        .zip([10u32, 1000, 1])
        .map(|(r, k)| FlowRecord {
            bytes: r.bytes * k as u64,
            packets: r.packets * k as u64,
            sampling_interval: k,
            ..ipv4_expected(r, 0, FlowVersion::NetflowV9)
        })
        .collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().options_records, 2);
}

#[test]
fn v9_template_redefinition_changes_layout() {
    let a = encode::ipv4_template(256);
    // Same id, other layout: 8-byte counters, fields reordered, ToS gone.
    let b = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::PACKET_DELTA_COUNT, 8),
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::FLOW_START_SYS_UP_TIME, 4),
            field(ie::FLOW_END_SYS_UP_TIME, 4),
        ],
    };
    let records = encode::sample_records(3, false, T0);
    let mut dec = FlowDecoder::default();
    let mut m1 = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m1.template(&a).data(&a, &records);
    let (_, out) = decode(&mut dec, &m1.finish());
    assert_eq!(
        out[0],
        ipv4_expected(&records[0], 0, FlowVersion::NetflowV9)
    );
    let mut m2 = MessageBuilder::v9(3_600_000, EXPORT_SECS, 2, 0);
    m2.template(&b).data(&b, &records);
    let (r, out) = decode(&mut dec, &m2.finish());
    assert_eq!(r, Ok(3));
    let want: Vec<_> = records
        .iter()
        .map(|r| FlowRecord {
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            bytes: r.bytes,
            packets: r.packets,
            exporter: exporter(),
            src_addr: r.src_addr,
            dst_addr: r.dst_addr,
            protocol: r.protocol,
            version: FlowVersion::NetflowV9,
            ..FlowRecord::EMPTY
        })
        .collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().templates_learned, 2);
    assert_eq!(dec.template_count(), 1);
}

#[test]
fn v9_data_before_template_is_buffered_then_decoded() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(4, false, T0);
    let mut dec = FlowDecoder::default();
    // Data first, with its own clock ...
    let mut data = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    data.data(&tmpl, &records[..2]);
    assert_eq!(decode(&mut dec, &data.finish()), (Ok(0), vec![]));
    assert_eq!(dec.stats().sets_buffered, 1);
    // ... then the template (with more data) 20 s later, from an exporter whose uptime says
    // it rebooted in between: each set's uptimes must be read against its own header.
    let mut t = MessageBuilder::v9(900_000, EXPORT_SECS + 20, 2, 0);
    t.template(&tmpl).data(&tmpl, &records[2..]);
    let (r, out) = decode_from(&mut dec, exporter(), &t.finish(), EXPORT_MS + 20_000);
    assert_eq!(r, Ok(4), "replayed records count as this datagram's");
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv4_expected(r, 0, FlowVersion::NetflowV9))
        .collect();
    assert_eq!(
        out, want,
        "buffered records keep the times of their own header"
    );
    assert_eq!(dec.stats().sets_replayed, 1);
    assert_eq!(dec.stats().sets_dropped_no_template, 0);
}

#[test]
fn v9_early_data_past_the_cap_or_too_old_is_dropped_and_counted() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(1, false, T0);
    let limits = DecoderLimits {
        pending_sets_per_domain: 2,
        pending_timeout_ms: 10_000,
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let mut data = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    data.data(&tmpl, &records);
    let data = data.finish();
    for _ in 0..3 {
        accept(&mut dec, &data);
    }
    assert_eq!(dec.stats().sets_buffered, 2);
    assert_eq!(dec.stats().sets_dropped_no_template, 1);
    let mut t = MessageBuilder::v9(3_600_000, EXPORT_SECS, 2, 0);
    t.template(&tmpl);
    let (r, out) = decode(&mut dec, &t.finish());
    assert_eq!((r, out.len()), (Ok(2), 2));

    // Too old when the template comes: dropped at replay.
    let mut dec = FlowDecoder::new(DecoderLimits {
        pending_timeout_ms: 10_000,
        ..DecoderLimits::default()
    });
    accept_from(&mut dec, exporter(), &data, 1_000_000);
    let (r, out) = decode_from(&mut dec, exporter(), &t.finish(), 1_010_001);
    assert_eq!((r, out.len()), (Ok(0), 0));
    assert_eq!(dec.stats().sets_dropped_no_template, 1);
    assert_eq!(dec.stats().sets_replayed, 0);

    // Too old when more early data comes: the old set makes room.
    let mut dec = FlowDecoder::new(DecoderLimits {
        pending_sets_per_domain: 1,
        pending_timeout_ms: 10_000,
        ..DecoderLimits::default()
    });
    accept_from(&mut dec, exporter(), &data, 1_000_000);
    accept_from(&mut dec, exporter(), &data, 1_020_000);
    assert_eq!(dec.stats().sets_buffered, 2);
    assert_eq!(dec.stats().sets_dropped_no_template, 1);

    // Or at expiry.
    dec.expire(1_040_000);
    assert_eq!(dec.stats().sets_dropped_no_template, 2);
    let (_, out) = decode_from(&mut dec, exporter(), &t.finish(), 1_040_000);
    assert!(out.is_empty());
}

#[test]
fn v9_early_data_total_byte_cap() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(10, false, T0);
    let mut data = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    data.data(&tmpl, &records);
    let data = data.finish();
    let set_body = data.len() - 24;
    let mut dec = FlowDecoder::new(DecoderLimits {
        pending_bytes_total: 2 * set_body,
        ..DecoderLimits::default()
    });
    for from in [exporter(), other_exporter(), IpAddr::from([192, 0, 2, 3])] {
        accept_from(&mut dec, from, &data, EXPORT_MS);
    }
    assert_eq!(dec.stats().sets_buffered, 2);
    assert_eq!(dec.stats().sets_dropped_no_template, 1);
}

#[test]
fn v9_sequence_gaps_count_lost_datagrams() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(5, false, T0);
    let mut dec = FlowDecoder::default();
    for seq in [10u32, 11, 12, 15, 16, 20] {
        let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, seq, 0);
        // Record counts do not matter to v9 sequence numbers.
        m.template(&tmpl)
            .data(&tmpl, &records[..(seq as usize % 5)]);
        accept(&mut dec, &m.finish());
    }
    assert_eq!(dec.stats().sequence_lost_datagrams, 2 + 3);
    assert_eq!(dec.stats().sequence_lost_flows, 0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.template(&tmpl);
    accept(&mut dec, &m.finish());
    assert_eq!(dec.stats().sequence_resets, 1);
}

#[test]
fn v9_source_ids_are_separate_domains() {
    let a = encode::ipv4_template(256);
    let b = encode::ipv6_template(256);
    let v4 = encode::sample_records(2, false, T0);
    let v6 = ipv6_records(2);
    let mut dec = FlowDecoder::default();
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 1);
    m.template(&a);
    accept(&mut dec, &m.finish());
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 2);
    m.template(&b);
    accept(&mut dec, &m.finish());
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 2, 1);
    m.data(&a, &v4);
    let (_, out) = decode(&mut dec, &m.finish());
    assert_eq!(out[1], ipv4_expected(&v4[1], 1, FlowVersion::NetflowV9));
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 2, 2);
    m.data(&b, &v6);
    let (_, out) = decode(&mut dec, &m.finish());
    assert_eq!(out[1], ipv6_expected(&v6[1], 2, FlowVersion::NetflowV9));
    assert_eq!(dec.domain_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// IPFIX
// ---------------------------------------------------------------------------------------------

#[test]
fn ipfix_absolute_millisecond_times() {
    let tmpl = encode::ipv6_template(400);
    let records = ipv6_records(8);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 12);
    m.template(&tmpl).data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(8));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv6_expected(r, 12, FlowVersion::Ipfix))
        .collect();
    assert_eq!(out, want);
    assert_eq!(dec.stats().records, [0, 0, 8]);
}

/// An IPv4 template whose times are the given start / end elements.
fn ipv4_with_times(id: u16, start: FieldSpec, end: FieldSpec) -> TemplateDef {
    let mut t = encode::ipv4_template(id);
    t.fields
        .retain(|f| f.id != ie::FLOW_START_SYS_UP_TIME && f.id != ie::FLOW_END_SYS_UP_TIME);
    t.fields.push(start);
    t.fields.push(end);
    t
}

#[test]
fn ipfix_ntp_seconds_and_delta_times() {
    let records = encode::sample_records(5, false, T0);
    let cases = [
        (ie::FLOW_START_MICROSECONDS, ie::FLOW_END_MICROSECONDS, 8, 1),
        (ie::FLOW_START_NANOSECONDS, ie::FLOW_END_NANOSECONDS, 8, 1),
        (ie::FLOW_START_MILLISECONDS, ie::FLOW_END_MILLISECONDS, 8, 1),
        (
            ie::FLOW_START_DELTA_MICROSECONDS,
            ie::FLOW_END_DELTA_MICROSECONDS,
            4,
            1,
        ),
        (ie::FLOW_START_SECONDS, ie::FLOW_END_SECONDS, 4, 1000),
    ];
    for (start, end, len, precision) in cases {
        let tmpl = ipv4_with_times(256, field(start, len), field(end, len));
        let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
        m.template(&tmpl).data(&tmpl, &records);
        let mut dec = FlowDecoder::default();
        let (r, out) = decode(&mut dec, &m.finish());
        assert_eq!(r, Ok(5), "elements {start}/{end}");
        let want: Vec<_> = records
            .iter()
            .map(|r| FlowRecord {
                start_ms: r.start_ms / precision * precision,
                end_ms: r.end_ms / precision * precision,
                ..ipv4_expected(r, 0, FlowVersion::Ipfix)
            })
            .collect();
        assert_eq!(out, want, "elements {start}/{end}");
    }
}

#[test]
fn ipfix_sub_millisecond_times_round_down() {
    // The flow started 1.5 ms and ended 0.2 ms before export (delta µs); and at .9999 s past
    // a second in NTP microseconds. Both are reported in the millisecond that contains them.
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::FLOW_START_DELTA_MICROSECONDS, 4),
            field(ie::FLOW_END_DELTA_MICROSECONDS, 4),
        ],
    };
    let ntp = TemplateDef {
        id: 257,
        kind: TemplateKind::Data,
        fields: vec![field(ie::FLOW_START_MICROSECONDS, 8)],
    };
    let mut body = 1_500u32.to_be_bytes().to_vec();
    body.extend_from_slice(&200u32.to_be_bytes());
    let ntp_secs = (T0 / 1000 + 2_208_988_800) as u32;
    let mut ntp_body = ntp_secs.to_be_bytes().to_vec();
    ntp_body.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl)
        .template(&ntp)
        .raw_set(256, &body)
        .raw_set(257, &ntp_body);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(2));
    assert_eq!(
        (out[0].start_ms, out[0].end_ms),
        (EXPORT_MS - 2, EXPORT_MS - 1)
    );
    assert_eq!((out[1].start_ms, out[1].end_ms), (T0 + 999, T0 + 999));
}

#[test]
fn ipfix_sys_uptime_needs_system_init_time_from_options() {
    let tmpl = encode::ipv4_template(256); // flowStart/EndSysUpTime
    let init = system_init_options(1);
    let records = encode::sample_records(3, false, T0);
    let mut dec = FlowDecoder::default();
    // Without the init time the uptimes mean nothing: the export time stands in.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 5);
    m.template(&tmpl).template(&init).data(&tmpl, &records);
    let (_, out) = decode(&mut dec, &m.finish());
    assert!(
        out.iter()
            .all(|r| r.start_ms == EXPORT_MS && r.end_ms == EXPORT_MS)
    );
    // Options data first, then data in the same message.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 3, 5);
    let boot = m.boot_ms();
    m.options_data(&init, &[&[5, boot]]).data(&tmpl, &records);
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(3));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv4_expected(r, 5, FlowVersion::Ipfix))
        .collect();
    assert_eq!(out, want);
    // And it sticks for later messages.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 6, 5);
    m.data(&tmpl, &records);
    let (_, out2) = decode(&mut dec, &m.finish());
    assert_eq!(out2[2].start_ms, records[2].start_ms);
}

/// Fuzz finding (differential, 2026-11-26): an options template whose scope fields include
/// systemInitTimeMilliseconds. netflow_parser learned the init time from it, nmsd skipped every
/// scope field but sampler ids and dated the records with the export time.
#[test]
fn ipfix_system_init_time_counts_as_a_scope_field_too() {
    let tmpl = encode::ipv4_template(256); // flowStart/EndSysUpTime
    let init = system_init_options(2);
    let records = encode::sample_records(3, false, T0);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 5);
    let boot = m.boot_ms();
    m.template(&tmpl)
        .template(&init)
        .options_data(&init, &[&[5, boot]])
        .data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(3));
    let want: Vec<_> = records
        .iter()
        .map(|r| ipv4_expected(r, 5, FlowVersion::Ipfix))
        .collect();
    assert_eq!(out, want);
}

#[test]
fn ipfix_packet_interval_and_space() {
    let opts = TemplateDef {
        id: 259,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: vec![
            field(149, 4),
            field(ie::SAMPLING_PACKET_INTERVAL, 4),
            field(ie::SAMPLING_PACKET_SPACE, 4),
        ],
    };
    let tmpl = encode::ipv6_template(256);
    let records = ipv6_records(2);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    // Select 2 packets, skip 98: one in 50.
    m.template(&opts)
        .options_data(&opts, &[&[0, 2, 98]])
        .template(&tmpl)
        .data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (_, out) = decode(&mut dec, &m.finish());
    let want: Vec<_> = records
        .iter()
        .map(|r| FlowRecord {
            bytes: r.bytes * 50,
            packets: r.packets * 50,
            sampling_interval: 50,
            ..ipv6_expected(r, 0, FlowVersion::Ipfix)
        })
        .collect();
    assert_eq!(out, want);
}

/// Fuzz finding (decode_ipfix): 8-byte samplingPacketInterval and samplingPacketSpace whose
/// sum overflows u64 panicked with overflow checks on ("attempt to add with overflow").
#[test]
fn ipfix_huge_packet_interval_and_space_do_not_overflow() {
    let opts = TemplateDef {
        id: 259,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: vec![
            field(149, 4),
            field(ie::SAMPLING_PACKET_INTERVAL, 8),
            field(ie::SAMPLING_PACKET_SPACE, 8),
        ],
    };
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(1, false, T0);
    for (interval, space, scale) in [
        (u64::MAX, 1, 1),
        (u64::MAX, u64::MAX, 1),
        (1, u64::MAX, u32::MAX),
        (2, u64::MAX - 1, u32::MAX),
    ] {
        let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
        m.template(&opts)
            .options_data(&opts, &[&[0, interval, space]])
            .template(&tmpl)
            .data(&tmpl, &records);
        let mut dec = FlowDecoder::default();
        let out = accept(&mut dec, &m.finish());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sampling_interval, scale, "{interval} + {space}");
    }
}

/// Same class as the fuzz finding above, found while triaging it: systemInitTimeMilliseconds
/// near u64::MAX plus a flow*SysUpTime panicked with overflow checks on. Times saturate.
#[test]
fn ipfix_huge_system_init_time_does_not_overflow() {
    let tmpl = encode::ipv4_template(256); // flowStart/EndSysUpTime
    let init = system_init_options(1);
    let records = encode::sample_records(1, false, T0);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&init)
        .template(&tmpl)
        .options_data(&init, &[&[0, u64::MAX - 10]])
        .data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let out = accept(&mut dec, &m.finish());
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ms, out[0].end_ms), (u64::MAX, u64::MAX));
}

#[test]
fn ipfix_selector_id_as_options_scope() {
    // RFC 5476 §6.5.2: a Selector Report Interpretation has selectorId as its scope.
    let opts = TemplateDef {
        id: 259,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: vec![
            field(ie::SELECTOR_ID, 4),
            field(ie::SAMPLING_PACKET_INTERVAL, 4),
            field(ie::SAMPLING_PACKET_SPACE, 4),
        ],
    };
    let tmpl = with_fields(encode::ipv4_template(256), &[field(ie::SELECTOR_ID, 4)]);
    let records = encode::sample_records(2, false, T0);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    let mut body = data_body(m.clone(), &tmpl, &records);
    let rec_len = template_len(&tmpl);
    body[rec_len - 1] = 5;
    body[2 * rec_len - 1] = 6;
    let boot = m.boot_ms();
    let init = system_init_options(1);
    m.template(&opts)
        .template(&init)
        .options_data(&init, &[&[0, boot]])
        .options_data(&opts, &[&[5, 1, 9], &[6, 1, 99]])
        .template(&tmpl)
        .raw_set(256, &body);
    let mut dec = FlowDecoder::default();
    let (_, out) = decode(&mut dec, &m.finish());
    let want: Vec<_> = records
        .iter()
        .zip([10u32, 100])
        .map(|(r, k)| FlowRecord {
            bytes: r.bytes * k as u64,
            packets: r.packets * k as u64,
            sampling_interval: k,
            ..ipv4_expected(r, 0, FlowVersion::Ipfix)
        })
        .collect();
    assert_eq!(out, want);
}

#[test]
fn ipfix_variable_length_and_enterprise_fields_are_skipped() {
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(82, ie::VARIABLE_LENGTH), // interfaceName
            FieldSpec {
                id: 1, // would be octetDeltaCount without the enterprise bit
                len: 4,
                enterprise: 9,
            },
            FieldSpec {
                id: 12, // would be the destination address
                len: ie::VARIABLE_LENGTH,
                enterprise: 29_305,
            },
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::PACKET_DELTA_COUNT, 8),
            field(ie::FLOW_START_MILLISECONDS, 8),
            field(ie::FLOW_END_MILLISECONDS, 8),
            field(ie::SOURCE_TRANSPORT_PORT, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
        ],
    };
    let records = encode::sample_records(4, false, T0);
    let body = data_body(MessageBuilder::ipfix(EXPORT_SECS, 0, 0), &tmpl, &records);
    // Re-encode the second record's interfaceName with the 3-byte length form (RFC 7011
    // §7): 255, then a 16-bit length, here 300 bytes.
    let short = body.len() / 4;
    let mut long = body[..short].to_vec();
    let rec = &body[short..2 * short];
    long.extend_from_slice(&rec[..4]);
    long.extend_from_slice(&[255, 1, 44]);
    long.extend_from_slice(&[b'x'; 300]);
    long.extend_from_slice(&rec[4 + 6..]);
    long.extend_from_slice(&body[2 * short..]);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl).raw_set(256, &long);
    let mut dec = FlowDecoder::default();
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(4));
    let want: Vec<_> = records
        .iter()
        .map(|r| FlowRecord {
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            bytes: r.bytes,
            packets: r.packets,
            exporter: exporter(),
            src_addr: r.src_addr,
            dst_addr: r.dst_addr,
            src_port: r.src_port,
            dst_port: r.dst_port,
            protocol: r.protocol,
            version: FlowVersion::Ipfix,
            ..FlowRecord::EMPTY
        })
        .collect();
    assert_eq!(out, want);

    // A variable-length field that overruns its set: the records before it survive.
    let mut bad = body[..2 * short].to_vec();
    let third = &body[2 * short..3 * short];
    bad.extend_from_slice(&third[..4]);
    bad.push(250);
    bad.extend_from_slice(&third[5..]);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 1, 0);
    m.raw_set(256, &bad);
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Err(DecodeError::BadVariableLength));
    assert_eq!(out, want[..2]);
    assert_eq!(errors(&dec, "bad_variable_length"), 1);
}

#[test]
fn ipfix_template_withdrawal() {
    let a = encode::ipv4_template(256);
    let b = encode::ipv6_template(257);
    let records = encode::sample_records(1, false, T0);
    let mut dec = FlowDecoder::default();
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&a).template(&b);
    accept(&mut dec, &m.finish());
    assert_eq!(dec.template_count(), 2);
    // Withdraw 256: a template record with field count 0.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.raw_set(2, &[1, 0, 0, 0]);
    assert_eq!(decode(&mut dec, &m.finish()).0, Ok(0));
    assert_eq!(dec.template_count(), 1);
    assert_eq!(dec.stats().templates_removed, 1);
    // Its data is now early data again.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.data(&a, &records);
    assert_eq!(decode(&mut dec, &m.finish()), (Ok(0), vec![]));
    assert_eq!(dec.stats().sets_buffered, 1);
    // Withdrawing template id 2 withdraws every data template.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.raw_set(2, &[0, 2, 0, 0]);
    accept(&mut dec, &m.finish());
    assert_eq!(dec.template_count(), 0);
    assert_eq!(dec.stats().templates_removed, 2);
}

#[test]
fn ipfix_sequence_gaps_count_lost_flows() {
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(5, false, T0);
    let mut dec = FlowDecoder::default();
    let send = |dec: &mut FlowDecoder, seq: u32, n: usize| {
        let mut m = MessageBuilder::ipfix(EXPORT_SECS, seq, 0);
        m.template(&tmpl).data(&tmpl, &records[..n]);
        accept(dec, &m.finish());
    };
    send(&mut dec, 100, 3);
    send(&mut dec, 103, 2); // RFC 7011: records sent before this message
    send(&mut dec, 110, 1); // 5 lost
    send(&mut dec, 111, 4);
    assert_eq!(dec.stats().sequence_lost_flows, 5);
    assert_eq!(dec.stats().sequence_lost_datagrams, 0);

    // softflowd counts the current message's records too ("inclusive"); the tracker learns it
    // from the second message and then counts gaps in its terms.
    let mut dec = FlowDecoder::default();
    send(&mut dec, 3, 3);
    send(&mut dec, 5, 2);
    send(&mut dec, 9, 4);
    assert_eq!(dec.stats().sequence_lost_flows, 0);
    send(&mut dec, 12, 1); // 2 lost before this 1-record message
    assert_eq!(dec.stats().sequence_lost_flows, 2);
    assert_eq!(dec.stats().sequence_resets, 0);
}

// ---------------------------------------------------------------------------------------------
// Exporters, overrides, limits, expiry, persistence
// ---------------------------------------------------------------------------------------------

#[test]
fn sampling_override_wins_per_exporter() {
    let records = encode::sample_records(2, false, T0);
    let h = V5Header {
        sampling: 100,
        ..v5_header()
    };
    let v5 = encode::v5_datagram(&h, &records);
    let opts = v9_options(257, &[field(ie::SAMPLING_INTERVAL, 4)]);
    let tmpl = encode::ipv4_template(256);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.template(&opts)
        .options_data(&opts, &[&[0, 100]])
        .template(&tmpl)
        .data(&tmpl, &records);
    let v9 = m.finish();
    let mut dec = FlowDecoder::default();
    dec.set_sampling_override(exporter(), 7);
    dec.set_sampling_override(exporter(), 50); // the last setting counts
    for d in [&v5, &v9] {
        let (_, out) = decode(&mut dec, d);
        for (o, r) in out.iter().zip(&records) {
            assert_eq!(
                (o.sampling_interval, o.bytes, o.packets),
                (50, r.bytes * 50, r.packets * 50)
            );
        }
        let (_, out) = decode_from(&mut dec, other_exporter(), d, EXPORT_MS);
        assert_eq!(out[0].sampling_interval, 100, "other exporters keep theirs");
    }
    // An override of 1 turns announced sampling off.
    dec.set_sampling_override(other_exporter(), 1);
    let (_, out) = decode_from(&mut dec, other_exporter(), &v5, EXPORT_MS);
    assert_eq!(
        (out[0].sampling_interval, out[0].bytes),
        (1, records[0].bytes)
    );
}

#[test]
fn same_template_id_from_two_exporters_stays_separate() {
    let a = ipv4_with_times(
        256,
        field(ie::FLOW_START_MILLISECONDS, 8),
        field(ie::FLOW_END_MILLISECONDS, 8),
    );
    let b = encode::ipv6_template(256);
    let v4 = encode::sample_records(3, false, T0);
    let v6 = ipv6_records(3);
    let mut dec = FlowDecoder::default();
    for (from, t) in [(exporter(), &a), (other_exporter(), &b)] {
        let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 1);
        m.template(t);
        accept_from(&mut dec, from, &m.finish(), EXPORT_MS);
    }
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 1);
    m.data(&b, &v6);
    let (_, out) = decode_from(&mut dec, other_exporter(), &m.finish(), EXPORT_MS);
    let want: Vec<_> = v6
        .iter()
        .map(|r| FlowRecord {
            exporter: other_exporter(),
            ..ipv6_expected(r, 1, FlowVersion::Ipfix)
        })
        .collect();
    assert_eq!(out, want);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 1);
    m.data(&a, &v4);
    let (_, out) = decode(&mut dec, &m.finish());
    assert_eq!(out[2], ipv4_expected(&v4[2], 1, FlowVersion::Ipfix));
    // v9 and IPFIX from one exporter with one domain id are separate too.
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 1);
    m.data(&a, &v4);
    assert_eq!(decode(&mut dec, &m.finish()), (Ok(0), vec![]));
    assert_eq!(dec.domain_count(), 3);
}

#[test]
fn domain_and_template_limits() {
    let limits = DecoderLimits {
        max_domains: 2,
        max_templates_per_domain: 2,
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let records = encode::sample_records(1, false, T0);
    let v5 = encode::v5_datagram(&v5_header(), &records);
    assert_eq!(decode(&mut dec, &v5).0, Ok(1));
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&encode::ipv4_template(256))
        .template(&encode::ipv4_template(257))
        .template(&encode::ipv4_template(258))
        .template(&encode::ipv4_template(259));
    let (r, _) = decode(&mut dec, &m.finish());
    assert_eq!(
        r,
        Err(DecodeError::TemplateLimit {
            template_id: 258,
            limit: 2
        })
    );
    assert_eq!(dec.template_count(), 2);
    // Each template came in its own set, so both refusals are counted.
    assert_eq!(errors(&dec, "template_limit"), 2);
    // A refresh of a known template is fine at the limit.
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.template(&encode::ipv4_template(257));
    assert_eq!(decode(&mut dec, &m.finish()).0, Ok(0));
    // Third domain: the table is full, so the least useful domain makes room: the v5 one,
    // which holds no templates, not the v9 one with its two.
    let h = V5Header {
        engine_id: 1,
        ..v5_header()
    };
    let (r, out) = decode(&mut dec, &encode::v5_datagram(&h, &records));
    assert_eq!(r, Ok(1));
    assert_eq!(out.len(), 1);
    let m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    let (r, _) = decode_from(&mut dec, other_exporter(), &m.finish(), EXPORT_MS);
    assert_eq!(r, Ok(0));
    assert_eq!(dec.stats().domains_evicted, 2);
    assert_eq!(dec.template_count(), 2);
    assert_eq!(dec.domain_count(), 2);
}

#[test]
fn expire_forgets_templates_and_quiet_domains() {
    let limits = DecoderLimits {
        template_timeout_ms: 60_000,
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(1, false, T0);
    let mut t = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    t.template(&tmpl);
    accept_from(&mut dec, exporter(), &t.finish(), 1_000_000);
    dec.expire(1_060_000);
    assert_eq!(dec.template_count(), 1, "not yet");
    dec.expire(1_060_001);
    assert_eq!(dec.template_count(), 0);
    assert_eq!(dec.stats().templates_removed, 1);
    assert_eq!(
        dec.domain_count(),
        0,
        "a quiet domain with nothing left goes too"
    );

    // A template past its timeout is not used even before expire() runs.
    accept_from(&mut dec, exporter(), &t.finish(), 2_000_000);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.data(&tmpl, &records);
    let (r, out) = decode_from(&mut dec, exporter(), &m.finish(), 2_060_001);
    assert_eq!((r, out.len()), (Ok(0), 0));
    assert_eq!(dec.stats().templates_removed, 2);
    assert_eq!(dec.stats().sets_buffered, 1);
}

#[test]
fn persist_round_trip() {
    // v9 from one exporter: a data template carrying a sampler id, and sampler options.
    let tmpl9 = with_fields(encode::ipv4_template(256), &[field(ie::SAMPLER_ID, 1)]);
    let opts9 = v9_options(
        257,
        &[field(ie::SAMPLER_ID, 1), field(ie::SAMPLING_INTERVAL, 4)],
    );
    // IPFIX from another: uptime times (needing the persisted init time) and an enterprise
    // variable-length field.
    let tmplx = TemplateDef {
        id: 300,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV6_ADDRESS, 16),
            FieldSpec {
                id: 7,
                len: ie::VARIABLE_LENGTH,
                enterprise: 12_345,
            },
            field(ie::DESTINATION_IPV6_ADDRESS, 16),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::FLOW_START_SYS_UP_TIME, 4),
            field(ie::FLOW_END_SYS_UP_TIME, 4),
        ],
    };
    let init = system_init_options(1);
    let v4 = encode::sample_records(3, false, T0);
    let v6 = ipv6_records(3);

    let mut a = FlowDecoder::default();
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 4);
    m.template(&opts9)
        .options_data(&opts9, &[&[0, 3, 20]])
        .template(&tmpl9);
    assert_eq!(decode(&mut a, &m.finish()).0, Ok(0));
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 9);
    let boot = m.boot_ms();
    m.template(&init)
        .options_data(&init, &[&[9, boot]])
        .template(&tmplx);
    assert_eq!(
        decode_from(&mut a, other_exporter(), &m.finish(), EXPORT_MS).0,
        Ok(0)
    );
    let text = persist::snapshot(&a);
    assert!(text.starts_with("# nmsd template cache v1\n"), "{text}");

    // Data-only datagrams; the v9 records name sampler 3.
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 4);
    let mut body = data_body(m.clone(), &tmpl9, &v4);
    let rec_len = template_len(&tmpl9);
    for i in 1..=v4.len() {
        body[i * rec_len - 1] = 3;
    }
    m.raw_set(256, &body);
    let data9 = m.finish();
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 1, 9);
    m.data(&tmplx, &v6);
    let datax = m.finish();

    let mut b = FlowDecoder::default();
    let summary = persist::restore(&mut b, &text);
    assert_eq!(summary.templates, 4, "{text}");
    assert_eq!(summary.sampling_states, 2, "{text}");
    assert_eq!((summary.skipped, summary.first_problem), (0, None));
    assert_eq!(b.template_count(), 4);
    // The text round-trips exactly.
    assert_eq!(persist::snapshot(&b), text);

    for (from, d) in [(exporter(), &data9), (other_exporter(), &datax)] {
        let (ra, out_a) = decode_from(&mut a, from, d, EXPORT_MS);
        let (rb, out_b) = decode_from(&mut b, from, d, EXPORT_MS);
        assert_eq!(ra, Ok(3));
        assert_eq!((rb, out_b), (ra, out_a));
    }
    let (_, out) = decode(&mut b, &data9);
    let want: Vec<_> = v4
        .iter()
        .map(|r| FlowRecord {
            bytes: r.bytes * 20,
            packets: r.packets * 20,
            sampling_interval: 20,
            ..ipv4_expected(r, 4, FlowVersion::NetflowV9)
        })
        .collect();
    assert_eq!(out, want, "sampler intervals persisted");
    let (_, out) = decode_from(&mut b, other_exporter(), &datax, EXPORT_MS);
    let want: Vec<_> = v6
        .iter()
        .map(|r| FlowRecord {
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            bytes: r.bytes,
            exporter: other_exporter(),
            src_addr: r.src_addr,
            dst_addr: r.dst_addr,
            observation_domain: 9,
            version: FlowVersion::Ipfix,
            ..FlowRecord::EMPTY
        })
        .collect();
    assert_eq!(out, want, "system init time persisted");
}

#[test]
fn persist_skips_damaged_lines() {
    let mut a = FlowDecoder::default();
    let tmpl = encode::ipv4_template(256);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&tmpl).template(&encode::ipv6_template(257));
    accept(&mut a, &m.finish());
    let text = persist::snapshot(&a);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{text}");
    // Damage the second template line: cut in the middle of its field list.
    let cut = lines[2].len() - 7;
    lines[2].truncate(cut);
    lines.push("T 9 not-an-address 0 0 256 d 8:4".into());
    lines.push("X what is this".into());
    lines.push("T 9 192.0.2.1 0 0 5 d 8:4".into()); // reserved template id
    lines.push(String::new());
    let damaged = lines.join("\n");

    let mut b = FlowDecoder::default();
    let summary = persist::restore(&mut b, &damaged);
    assert_eq!(summary.templates, 1);
    assert_eq!(summary.skipped, 4);
    assert!(
        summary
            .first_problem
            .is_some_and(|p| p.starts_with("line 3"))
    );
    let records = encode::sample_records(2, false, T0);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 1, 0);
    m.data(&tmpl, &records);
    let (r, out) = decode(&mut b, &m.finish());
    assert_eq!(r, Ok(2));
    assert_eq!(
        out[1],
        ipv4_expected(&records[1], 0, FlowVersion::NetflowV9)
    );
    assert_eq!(persist::restore(&mut b, "").templates, 0);
}

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

fn valid_v5() -> Vec<u8> {
    encode::v5_datagram(&v5_header(), &encode::sample_records(3, false, T0))
}

fn valid_v9() -> Vec<u8> {
    let tmpl = encode::ipv4_template(256);
    let opts = v9_options(
        257,
        &[field(ie::SAMPLER_ID, 1), field(ie::SAMPLING_INTERVAL, 4)],
    );
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&tmpl)
        .template(&opts)
        .options_data(&opts, &[&[0, 1, 10]])
        .data(&tmpl, &encode::sample_records(3, false, T0));
    m.finish()
}

fn valid_ipfix() -> Vec<u8> {
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV6_ADDRESS, 16),
            field(82, ie::VARIABLE_LENGTH),
            FieldSpec {
                id: 5,
                len: 2,
                enterprise: 9,
            },
            field(ie::DESTINATION_IPV6_ADDRESS, 16),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::FLOW_START_MILLISECONDS, 8),
            field(ie::FLOW_END_MILLISECONDS, 8),
        ],
    };
    let init = system_init_options(1);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl)
        .template(&init)
        .options_data(&init, &[&[0, T0]])
        .data(&tmpl, &ipv6_records(3));
    m.finish()
}

/// Whether a message cut at `cut` ends between sets: at a set boundary of the full message
/// `d` (header 20 for v9, 16 for IPFIX), or less than a set header (4 bytes, which the
/// decoder reads as padding) after one.
fn cut_between_sets(d: &[u8], header: usize, cut: usize) -> bool {
    let mut pos = header;
    loop {
        if cut >= pos && cut - pos < 4 {
            return true;
        }
        if pos + 4 > d.len() {
            return false;
        }
        pos += u16::from_be_bytes([d[pos + 2], d[pos + 3]]) as usize;
    }
}

#[test]
fn truncated_at_every_offset() {
    let v5 = valid_v5();
    for cut in 0..v5.len() {
        let mut dec = FlowDecoder::default();
        let (r, out) = decode(&mut dec, &v5[..cut]);
        let kind = r.as_ref().map_err(DecodeError::kind);
        assert_eq!(kind, Err("truncated"), "v5 cut at {cut}");
        assert!(out.is_empty());
        assert_eq!(errors(&dec, "truncated"), 1);
    }

    let v9 = valid_v9();
    for cut in 0..v9.len() {
        let mut dec = FlowDecoder::default();
        let (r, out) = decode(&mut dec, &v9[..cut]);
        match r {
            Err(DecodeError::Truncated { .. }) => assert!(cut < 20, "v9 cut at {cut}"),
            Ok(n) => {
                // v9 has no message length: a cut between sets is a shorter message.
                assert!(cut_between_sets(&v9, 20, cut), "v9 cut at {cut} accepted");
                assert!(n < 3);
            }
            Err(DecodeError::BadSetLength { .. }) => {
                assert!(
                    cut > 20 && !cut_between_sets(&v9, 20, cut),
                    "v9 cut at {cut}"
                );
            }
            Err(e) => panic!("v9 cut at {cut}: unexpected {e:?}"),
        }
        assert!(out.len() <= 3);
        assert_eq!(total_errors(&dec), r.is_err() as u64, "v9 cut at {cut}");
    }

    let ipfix = valid_ipfix();
    for cut in 0..ipfix.len() {
        let mut dec = FlowDecoder::default();
        let (r, out) = decode(&mut dec, &ipfix[..cut]);
        let want = if cut < 16 {
            "truncated"
        } else {
            "length_mismatch"
        };
        assert_eq!(r.map_err(|e| e.kind()), Err(want), "IPFIX cut at {cut}");
        assert!(out.is_empty());
        assert_eq!(total_errors(&dec), 1);
    }

    // An IPFIX message whose header length is honest about the cut: the sets are then wrong.
    for cut in 16..ipfix.len() {
        let mut d = ipfix[..cut].to_vec();
        d[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
        let mut dec = FlowDecoder::default();
        let (r, _) = decode(&mut dec, &d);
        if cut_between_sets(&ipfix, 16, cut) {
            assert!(r.is_ok(), "IPFIX cut at {cut}: {r:?}");
        } else {
            assert!(
                matches!(
                    r,
                    Err(DecodeError::BadSetLength { .. } | DecodeError::BadVariableLength)
                ),
                "IPFIX cut at {cut}: {r:?}"
            );
        }
    }
}

#[test]
fn wrong_header_and_set_lengths() {
    let ipfix = valid_ipfix();
    let mut dec = FlowDecoder::default();
    for header_len in [0u16, 15, ipfix.len() as u16 + 1, u16::MAX] {
        let mut d = ipfix.clone();
        d[2..4].copy_from_slice(&header_len.to_be_bytes());
        assert_eq!(
            decode(&mut dec, &d).0,
            Err(DecodeError::LengthMismatch {
                header: header_len as usize,
                actual: ipfix.len()
            })
        );
    }
    // Bytes after the message are not part of it.
    let mut d = ipfix.clone();
    d.extend_from_slice(&[0xFF; 9]);
    assert_eq!(decode(&mut dec, &d).0, Ok(3));

    // A set that claims more than the message holds, or less than its own header.
    let v9 = valid_v9();
    for set_len in [0u16, 1, 3, v9.len() as u16 - 20 + 1, u16::MAX] {
        let mut d = v9.clone();
        d[22..24].copy_from_slice(&set_len.to_be_bytes());
        let (r, out) = decode(&mut dec, &d);
        assert_eq!(
            r,
            Err(DecodeError::BadSetLength {
                set_id: 0,
                len: set_len as usize,
                remaining: v9.len() - 20
            })
        );
        assert!(out.is_empty());
    }
    // Zero-length set later in the message: what came before survives.
    let tmpl = encode::ipv4_template(256);
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.template(&tmpl)
        .data(&tmpl, &encode::sample_records(2, false, T0));
    let mut d = m.finish();
    d.extend_from_slice(&[1, 0, 0, 0, 9, 9, 9, 9]);
    let (r, out) = decode(&mut dec, &d);
    assert_eq!(
        r,
        Err(DecodeError::BadSetLength {
            set_id: 256,
            len: 0,
            remaining: 8
        })
    );
    assert_eq!(out.len(), 2);
    // A 4-byte set (header only) is merely empty; fewer than 4 trailing bytes are padding.
    let mut m = MessageBuilder::v9(3_600_000, EXPORT_SECS, 0, 0);
    m.raw_set(256, &[]).raw_set(0, &[]);
    let mut d = m.finish();
    d.extend_from_slice(&[0, 0, 0]);
    assert_eq!(decode(&mut dec, &d).0, Ok(0));
    assert_eq!(errors(&dec, "length_mismatch"), 4);
    assert_eq!(errors(&dec, "bad_set_length"), 6);
}

#[test]
fn zero_length_records_are_refused() {
    // The "template loop": a template whose records take no bytes would make a data set
    // yield records forever. It must be refused, and its data must not spin.
    let mut dec = FlowDecoder::default();
    for fields in [
        vec![field(1, 0)],
        vec![field(1, 0), field(2, 0), field(8, 0)],
    ] {
        for ipfix in [false, true] {
            let tmpl = TemplateDef {
                id: 256,
                kind: TemplateKind::Data,
                fields: fields.clone(),
            };
            let mut m = if ipfix {
                MessageBuilder::ipfix(EXPORT_SECS, 0, 0)
            } else {
                MessageBuilder::v9(0, EXPORT_SECS, 0, 0)
            };
            m.template(&tmpl).raw_set(256, &[0; 64]);
            let (r, out) = decode(&mut dec, &m.finish());
            assert!(
                matches!(
                    r,
                    Err(DecodeError::BadTemplate {
                        template_id: 256,
                        ..
                    })
                ),
                "{r:?}"
            );
            assert!(out.is_empty());
        }
    }
    assert_eq!(dec.template_count(), 0);
    // Zero-length fields beside real ones are fine.
    let tmpl = TemplateDef {
        id: 260,
        kind: TemplateKind::Data,
        fields: vec![field(1, 0), field(ie::OCTET_DELTA_COUNT, 4), field(2, 0)],
    };
    let mut m = MessageBuilder::v9(0, EXPORT_SECS, 0, 0);
    m.template(&tmpl).raw_set(260, &[0, 0, 0, 9, 0, 0, 0, 10]);
    let (r, out) = decode(&mut dec, &m.finish());
    assert_eq!(r, Ok(2));
    assert_eq!((out[0].bytes, out[1].bytes), (9, 10));
}

#[test]
fn v9_field_length_65535_is_refused() {
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![field(8, 4), field(82, ie::VARIABLE_LENGTH)],
    };
    let mut m = MessageBuilder::v9(0, EXPORT_SECS, 0, 0);
    m.template(&tmpl);
    let mut dec = FlowDecoder::default();
    let (r, _) = decode(&mut dec, &m.finish());
    assert!(matches!(
        r,
        Err(DecodeError::BadTemplate {
            template_id: 256,
            ..
        })
    ));
    assert_eq!(dec.template_count(), 0);
    // A fixed length that large is refused too: records cannot exceed a datagram.
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![field(8, 4), field(82, 65_534)],
    };
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl);
    let (r, _) = decode(&mut dec, &m.finish());
    assert!(matches!(
        r,
        Err(DecodeError::BadTemplate {
            template_id: 256,
            ..
        })
    ));
}

#[test]
fn field_counts_that_overrun_the_set() {
    let mut dec = FlowDecoder::default();
    for (version, set_id) in [(9, 0u16), (10, 2)] {
        // Template 256 says 10 fields, carries 2.
        let body = [1, 0, 0, 10, 0, 8, 0, 4, 0, 12, 0, 4];
        let mut m = if version == 9 {
            MessageBuilder::v9(0, EXPORT_SECS, 0, 0)
        } else {
            MessageBuilder::ipfix(EXPORT_SECS, 0, 0)
        };
        m.raw_set(set_id, &body);
        let (r, _) = decode(&mut dec, &m.finish());
        assert!(
            matches!(
                r,
                Err(DecodeError::BadTemplate {
                    template_id: 256,
                    ..
                })
            ),
            "v{version}: {r:?}"
        );
    }
    // Options templates: scope count above the field count, and v9 lengths not in 4s.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.raw_set(3, &[1, 0, 0, 1, 0, 2, 0, 149, 0, 4]);
    assert!(matches!(
        decode(&mut dec, &m.finish()).0,
        Err(DecodeError::BadTemplate { .. })
    ));
    let mut m = MessageBuilder::v9(0, EXPORT_SECS, 0, 0);
    m.raw_set(1, &[1, 0, 0, 4, 0, 6, 0, 1, 0, 4, 0, 34, 0, 4, 0, 0]);
    assert!(matches!(
        decode(&mut dec, &m.finish()).0,
        Err(DecodeError::BadTemplate { .. })
    ));
    // An IPFIX enterprise field whose enterprise number is cut off.
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.raw_set(2, &[1, 0, 0, 1, 0x80, 1, 0, 4, 0, 0]);
    assert!(matches!(
        decode(&mut dec, &m.finish()).0,
        Err(DecodeError::BadTemplate { .. })
    ));
    assert_eq!(errors(&dec, "bad_template"), 5);
    assert_eq!(dec.template_count(), 0);
}

#[test]
fn reserved_set_ids() {
    let mut dec = FlowDecoder::default();
    for (ipfix, set_id) in [(false, 2u16), (false, 255), (true, 0), (true, 1), (true, 4)] {
        let mut m = if ipfix {
            MessageBuilder::ipfix(EXPORT_SECS, 0, 0)
        } else {
            MessageBuilder::v9(0, EXPORT_SECS, 0, 0)
        };
        let tmpl = encode::ipv4_template(256);
        // The reserved set is skipped; sets after it still count.
        m.raw_set(set_id, &[1, 2, 3, 4])
            .template(&tmpl)
            .data(&tmpl, &encode::sample_records(1, false, T0));
        let (r, out) = decode(&mut dec, &m.finish());
        assert_eq!(r, Err(DecodeError::ReservedSetId(set_id)));
        assert_eq!(out.len(), 1, "set {set_id}");
    }
    assert_eq!(errors(&dec, "reserved_set_id"), 5);
}

#[test]
fn unknown_versions_and_tiny_datagrams() {
    let mut dec = FlowDecoder::default();
    let cases: [(&[u8], DecodeError); 6] = [
        (
            &[],
            DecodeError::Truncated {
                what: "version field",
                need: 2,
                have: 0,
            },
        ),
        (
            &[0],
            DecodeError::Truncated {
                what: "version field",
                need: 2,
                have: 1,
            },
        ),
        (&[0, 1, 0, 0], DecodeError::UnknownVersion(1)),
        (&[0, 7, 0, 1, 2, 3], DecodeError::UnknownVersion(7)),
        (&[1, 5], DecodeError::UnknownVersion(0x0105)),
        (&[0xFF; 100], DecodeError::UnknownVersion(0xFFFF)),
    ];
    for (d, want) in cases {
        assert_eq!(decode(&mut dec, d), (Err(want), vec![]));
    }
    for (d, what, need) in [
        (&[0u8, 5][..], "NetFlow v5 header", 24),
        (&[0, 9, 0, 0], "NetFlow v9 header", 20),
        (&[0, 10, 0, 16, 0], "IPFIX header", 16),
    ] {
        assert_eq!(
            decode(&mut dec, d).0,
            Err(DecodeError::Truncated {
                what,
                need,
                have: d.len()
            })
        );
    }
    // An empty but valid message of each templated version.
    let v9 = MessageBuilder::v9(0, EXPORT_SECS, 0, 0).finish();
    let ipfix = MessageBuilder::ipfix(EXPORT_SECS, 0, 0).finish();
    assert_eq!(decode(&mut dec, &v9), (Ok(0), vec![]));
    assert_eq!(decode(&mut dec, &ipfix), (Ok(0), vec![]));
    assert_eq!(errors(&dec, "truncated"), 5);
    assert_eq!(errors(&dec, "unknown_version"), 4);
}

#[test]
fn errors_are_counted_by_kind() {
    let mut dec = FlowDecoder::new(DecoderLimits {
        max_domains: 1,
        ..DecoderLimits::default()
    });
    let mut ipfix_bad_len = valid_ipfix();
    ipfix_bad_len[2..4].copy_from_slice(&1u16.to_be_bytes());
    let mut v5_bad_count = valid_v5();
    v5_bad_count[3] = 0;
    let mut reserved = MessageBuilder::v9(0, EXPORT_SECS, 0, 0);
    // Two bad sets in one datagram count twice.
    reserved.raw_set(7, &[]).raw_set(8, &[]);
    let mut bad_var = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    let var = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![field(82, ie::VARIABLE_LENGTH)],
    };
    bad_var.template(&var).raw_set(256, &[200, 1]);
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0, 3],
        ipfix_bad_len,
        v5_bad_count,
        reserved.finish(),
        valid_v5(), // a second domain: evicts the first (limit 1)
        bad_var.finish(),
    ];
    for d in &inputs {
        let _ = decode(&mut dec, d);
    }
    let mut want = [0u64; DecodeError::KINDS.len()];
    for (kind, n) in [
        ("truncated", 1),
        ("unknown_version", 1),
        ("length_mismatch", 1),
        ("bad_record_count", 1),
        ("reserved_set_id", 2),
        ("bad_variable_length", 1),
    ] {
        want[DecodeError::KINDS
            .iter()
            .position(|k| *k == kind)
            .expect("kind")] = n;
    }
    // The v9 datagram created the one allowed domain; the v5 and IPFIX ones evicted a domain
    // each rather than being refused.
    assert_eq!(dec.stats().errors, want);
    assert_eq!(dec.stats().domains_evicted, 2);
}

/// xorshift64: a fixed-seed PRNG, so failures reproduce without a rand dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_bit_flipped_input_never_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        valid_v5(),
        valid_v9(),
        valid_ipfix(),
        {
            let tmpl = encode::ipv6_template(300);
            let mut m = MessageBuilder::v9(0, EXPORT_SECS, 0, 0);
            m.template(&tmpl).data(&tmpl, &ipv6_records(2));
            m.finish()
        },
        {
            let tmpl = encode::ipv4_template(256);
            let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
            m.data(&tmpl, &encode::sample_records(4, false, T0))
                .template(&tmpl);
            m.finish()
        },
    ];
    let limits = DecoderLimits {
        max_domains: 64,
        max_templates_per_domain: 16,
        pending_sets_per_domain: 4,
        pending_bytes_total: 64 << 10,
        ..DecoderLimits::default()
    };
    let mut dec = FlowDecoder::new(limits.clone());
    let mut rng = XorShift(0x05EE_D0FF_10A7);
    let mut out = Vec::new();
    let mut now = EXPORT_MS;
    let (mut oks, mut errs) = (0u32, 0u32);
    for i in 0..100_000u32 {
        let mut d = match rng.below(4) {
            // Random bytes behind a plausible version.
            0 => {
                let len = rng.below(300);
                let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 2 && rng.below(4) != 0 {
                    d[0] = 0;
                    d[1] = [5, 9, 10][rng.below(3)];
                }
                if len >= 4 && d[1] == 10 && rng.below(2) == 0 {
                    d[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                }
                d
            }
            // A valid datagram with a few bits flipped.
            1 => {
                let mut d = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(8) {
                    let bit = rng.below(d.len() * 8);
                    d[bit / 8] ^= 1 << (bit % 8);
                }
                d
            }
            // A valid datagram with a 16-bit field (a length or count, often) set to an edge.
            2 => {
                let mut d = seeds[rng.below(seeds.len())].clone();
                let at = rng.below(d.len() - 1);
                let v: u16 = [0, 1, 3, 4, 5, 255, 256, 0x7FFF, 0x8000, 0xFFFF][rng.below(10)];
                d[at..at + 2].copy_from_slice(&v.to_be_bytes());
                d
            }
            // Cut short, then flipped.
            _ => {
                let seed = &seeds[rng.below(seeds.len())];
                let mut d = seed[..rng.below(seed.len())].to_vec();
                if !d.is_empty() {
                    let at = rng.below(d.len());
                    d[at] ^= rng.next() as u8 | 1;
                }
                d
            }
        };
        if rng.below(16) == 0 {
            d.extend((0..rng.below(20)).map(|_| rng.next() as u8));
        }
        let from = IpAddr::from([10, 0, 0, rng.below(80) as u8]);
        let before_out = out.len();
        let before = dec.stats().errors;
        match dec.decode(from, &d, now, &mut out) {
            Ok(n) => {
                assert_eq!(n, out.len() - before_out, "input {i}");
                oks += 1;
            }
            Err(e) => {
                let k = DecodeError::KINDS
                    .iter()
                    .position(|k| *k == e.kind())
                    .expect("known kind");
                assert!(
                    dec.stats().errors[k] > before[k],
                    "input {i}: {e:?} not counted"
                );
                errs += 1;
            }
        }
        assert!(dec.domain_count() <= limits.max_domains);
        assert!(dec.template_count() <= limits.max_domains * limits.max_templates_per_domain);
        if out.len() > 100_000 {
            out.clear();
        }
        if i % 1000 == 999 {
            now += 7_000;
            dec.expire(now);
        }
        // Now and then a fresh decoder, so early-life paths are hit as often as full caches.
        if i % 10_000 == 9_999 {
            dec = FlowDecoder::new(limits.clone());
        }
    }
    assert!(oks > 1_000 && errs > 10_000, "ok {oks}, err {errs}");
}

#[test]
fn ipv6_exporter_addresses_work() {
    let from: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().expect("valid").into();
    let tmpl = encode::ipv4_template(256);
    let records = encode::sample_records(1, false, T0);
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl).data(&tmpl, &records);
    let mut dec = FlowDecoder::default();
    let (_, out) = decode_from(&mut dec, from, &m.finish(), EXPORT_MS);
    assert_eq!(out[0].exporter, from);
    assert_eq!(
        out[0].start_ms, EXPORT_MS,
        "uptime times without system init"
    );
}

#[test]
fn ipfix_softflowd_sequence_with_options_records() {
    // softflowd 1.1.0 in IPFIX mode numbers messages by flow records sent *including* the
    // current message, and leaves out the options record that comes with every template
    // refresh. A loss-free stream must show neither losses nor resets.
    let tmpl = encode::ipv4_template(1024);
    let opts = TemplateDef {
        id: 256,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields: vec![field(149, 4), field(ie::SAMPLING_INTERVAL, 4)],
    };
    let records = encode::sample_records(30, false, T0);
    let mut dec = FlowDecoder::default();
    let mut seq = 0u32;
    for (i, n) in [22usize, 26, 28, 24, 18, 28, 24, 30, 20, 19]
        .into_iter()
        .enumerate()
    {
        seq += n as u32;
        let mut m = MessageBuilder::ipfix(EXPORT_SECS, seq, 0);
        if i % 4 == 0 {
            m.template(&tmpl)
                .template(&opts)
                .options_data(&opts, &[&[0, 1]]);
        }
        m.data(&tmpl, &records[..n]);
        assert_eq!(accept(&mut dec, &m.finish()).len(), n);
    }
    assert_eq!(dec.stats().options_records, 3);
    assert_eq!(dec.stats().sequence_resets, 0);
    assert_eq!(dec.stats().sequence_lost_flows, 0);
    // Then 5 flows go missing before a message with the options record.
    seq += 5 + 17;
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, seq, 0);
    m.template(&opts)
        .options_data(&opts, &[&[0, 1]])
        .data(&tmpl, &records[..17]);
    accept(&mut dec, &m.finish());
    assert_eq!(dec.stats().sequence_lost_flows, 5);
    assert_eq!(dec.stats().sequence_resets, 0);
}

#[test]
fn competing_elements_preferred_one_wins() {
    // Two elements for one slot, with different values: the preferred one is used wherever
    // it sits in the record.
    let tmpl = TemplateDef {
        id: 256,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::OCTET_TOTAL_COUNT, 4),
            field(ie::OCTET_DELTA_COUNT, 4),
            field(ie::DOT1Q_VLAN_ID, 2),
            field(ie::VLAN_ID, 2),
            field(ie::BGP_NEXT_HOP_IPV4_ADDRESS, 4),
            field(ie::IP_NEXT_HOP_IPV4_ADDRESS, 4),
            field(ie::IP_DIFF_SERV_CODE_POINT, 1),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::ICMP_TYPE_IPV4, 1),
            field(ie::ICMP_CODE_IPV4, 1),
            field(ie::ICMP_TYPE_CODE_IPV4, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
        ],
    };
    let body = [
        0, 0, 0, 111, // octetTotalCount
        0, 0, 0, 222, // octetDeltaCount: wins
        0x0F, 0xA0, // dot1qVlanId 4000
        0x10, 0x64, // vlanId 100 (priority bits above the 12-bit id): wins
        10, 0, 0, 1, // bgpNextHop
        10, 0, 0, 2,  // ipNextHop: wins
        46, // DSCP EF: fills ToS, which is absent
        1,  // ICMP
        3, 1, // type 3, code 1
        8, 0, // type-code 8/0: wins over the parts
        0, 99, // transport port: ICMP's type-code takes its place
    ];
    let mut m = MessageBuilder::ipfix(EXPORT_SECS, 0, 0);
    m.template(&tmpl).raw_set(256, &body);
    let mut dec = FlowDecoder::default();
    let out = accept(&mut dec, &m.finish());
    assert_eq!(
        out,
        vec![FlowRecord {
            start_ms: EXPORT_MS,
            end_ms: EXPORT_MS,
            bytes: 222,
            exporter: exporter(),
            next_hop: IpAddr::from([10, 0, 0, 2]),
            dst_port: 0x0800,
            vlan: 100,
            protocol: 1,
            tos: 46 << 2,
            version: FlowVersion::Ipfix,
            ..FlowRecord::EMPTY
        }]
    );
}
