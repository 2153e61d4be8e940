//! Regenerates the committed seed corpora under `corpus/<target>/`.
//!
//! ```text
//! cargo run --manifest-path parsers/fuzz/Cargo.toml --example seed -- [--out DIR] [PCAP...]
//! ```
//!
//! Seeds come from `nmsd_testkit::encode` (every version and the template features the decoder
//! has paths for) and from the first datagrams of real softflowd captures, read with
//! `nmsd_testkit::capture`. Without PCAP arguments the captures are looked for under
//! /tmp/exports (`*.pcap` and `*/export.pcap`); captures that are missing are skipped with a
//! note. Files are named after what they hold, so regenerating overwrites rather than adds.
//! Inputs use the framing described in the fuzz crate's docs (`nmsd_parsers_fuzz::frames`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nmsd_testkit::encode::{self, MessageBuilder, V5Header, field};
use nmsd_parsers::{DecoderLimits, persist};
use nmsd_parsers::{FieldSpec, FlowDecoder, FlowRecord, TemplateDef, TemplateKind, capture, ie};
use nmsd_parsers_fuzz::{EXPORTERS, MAX_FRAME, T0_MS, frames, push_frame};

/// Export time of generated messages: a minute after the records' base time.
const EXPORT_SECS: u32 = (T0_MS / 1000) as u32 + 60;
const BASE_MS: u64 = T0_MS - 30_000;

/// One seed: a sequence of (exporter, clock step, datagram).
#[derive(Default)]
struct Seq(Vec<(usize, usize, Vec<u8>)>);

impl Seq {
    fn one(d: Vec<u8>) -> Self {
        Seq(vec![(0, 0, d)])
    }
    fn then(mut self, exporter: usize, step: usize, d: Vec<u8>) -> Self {
        self.0.push((exporter, step, d));
        self
    }
    fn input(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (e, s, d) in &self.0 {
            push_frame(&mut b, *e, *s, d);
        }
        b
    }
}

fn v5_header(seq: u32, sampling: u16) -> V5Header {
    V5Header {
        sys_uptime_ms: 3_600_000,
        unix_secs: EXPORT_SECS,
        unix_nsecs: 250_000_000,
        flow_sequence: seq,
        engine_type: 1,
        engine_id: 2,
        sampling,
    }
}

fn v5_seeds() -> Vec<(&'static str, Seq)> {
    let r = encode::sample_records(30, false, BASE_MS);
    vec![
        (
            "v5-basic",
            Seq::one(encode::v5_datagram(&v5_header(0, 0), &r[..5])),
        ),
        (
            "v5-30-records",
            Seq::one(encode::v5_datagram(&v5_header(0, 0), &r)),
        ),
        (
            // Mode 1 (deterministic), interval 100.
            "v5-header-sampling",
            Seq::one(encode::v5_datagram(&v5_header(7, 0x4000 | 100), &r[..3])),
        ),
        (
            // In order, then a gap of 10 flows, then a reset; two exporters; clock steps.
            "v5-sequence-two-exporters",
            Seq::one(encode::v5_datagram(&v5_header(0, 0), &r[..2]))
                .then(0, 2, encode::v5_datagram(&v5_header(2, 0), &r[2..4]))
                .then(1, 3, encode::v5_datagram(&v5_header(100, 0), &r[4..5]))
                .then(0, 6, encode::v5_datagram(&v5_header(14, 0), &r[5..6]))
                .then(0, 7, encode::v5_datagram(&v5_header(1, 0), &r[6..7])),
        ),
    ]
}

fn v9(seq: u32, source_id: u32) -> MessageBuilder {
    MessageBuilder::v9(3_600_000, EXPORT_SECS, seq, source_id)
}

fn ipfix(seq: u32, domain: u32) -> MessageBuilder {
    MessageBuilder::ipfix(EXPORT_SECS, seq, domain)
}

fn with_fields(mut def: TemplateDef, extra: &[FieldSpec]) -> TemplateDef {
    def.fields.extend_from_slice(extra);
    def
}

fn options(id: u16, fields: Vec<FieldSpec>) -> TemplateDef {
    TemplateDef {
        id,
        kind: TemplateKind::Options { scope_fields: 1 },
        fields,
    }
}

fn ipv6_records(n: usize) -> Vec<FlowRecord> {
    encode::sample_records(n, true, BASE_MS)
        .into_iter()
        .map(|r| FlowRecord {
            vlan: 42,
            src_as: 64_500,
            dst_as: 65_001,
            direction: nmsd_parsers::Direction::Egress,
            ..r
        })
        .collect()
}

/// A data set whose records carry `ids` in their last `id_len` bytes (a sampler id field).
fn data_with_ids(
    m: &MessageBuilder,
    def: &TemplateDef,
    recs: &[FlowRecord],
    ids: &[u8],
) -> Vec<u8> {
    let mut m = m.clone();
    m.data(def, recs);
    let d = m.finish();
    // The data set is the last set the builder wrote: skip its 4-byte set header.
    let start = d.len() - (4 + recs.len() * record_len(def));
    let mut body = d[start + 4..].to_vec();
    let rl = record_len(def);
    for (i, id) in ids.iter().enumerate() {
        body[(i + 1) * rl - 1] = *id;
    }
    body
}

fn record_len(def: &TemplateDef) -> usize {
    def.fields.iter().map(|f| f.len as usize).sum()
}

fn v9_seeds() -> Vec<(&'static str, Seq)> {
    let t4 = encode::ipv4_template(256);
    let t6 = encode::ipv6_template(257);
    let r4 = encode::sample_records(6, false, BASE_MS);
    let r6 = ipv6_records(3);
    let one = |f: &dyn Fn(&mut MessageBuilder)| {
        let mut m = v9(1, 0);
        f(&mut m);
        m.finish()
    };
    let mut seeds = vec![
        (
            "v9-template-and-data",
            Seq::one(one(&|m| {
                m.template(&t4).data(&t4, &r4);
            })),
        ),
        (
            "v9-template-then-data",
            Seq::one(one(&|m| {
                m.template(&t4);
            }))
            .then(0, 1, {
                let mut m = v9(2, 0);
                m.data(&t4, &r4[..3]);
                m.finish()
            }),
        ),
        (
            // Early data: buffered, replayed when the template comes; a second set waits too
            // long (step 4 outlasts the small-limits wait) and is dropped.
            "v9-data-before-template",
            Seq::one({
                let mut m = v9(1, 0);
                m.data(&t4, &r4[..2]).data(&t6, &r6[..1]);
                m.finish()
            })
            .then(0, 1, {
                let mut m = v9(2, 0);
                m.template(&t4);
                m.finish()
            })
            .then(0, 4, {
                let mut m = v9(3, 0);
                m.template(&t6).data(&t6, &r6);
                m.finish()
            }),
        ),
        (
            "v9-ipv6",
            Seq::one(one(&|m| {
                m.template(&t6).data(&t6, &r6);
            })),
        ),
    ];
    // Options: sampling interval without a sampler id (scope System).
    let opts = options(
        258,
        vec![
            field(1, 4),
            field(ie::SAMPLING_INTERVAL, 4),
            field(ie::SAMPLING_ALGORITHM, 1),
        ],
    );
    seeds.push((
        "v9-options-sampling-interval",
        Seq::one(one(&|m| {
            m.template(&opts)
                .options_data(&opts, &[&[0, 100, 2]])
                .template(&t4)
                .data(&t4, &r4[..3]);
        })),
    ));
    // Cisco style per-sampler intervals, records carrying sampler ids.
    let sopts = options(
        259,
        vec![
            field(1, 4),
            field(ie::SAMPLER_ID, 1),
            field(49, 1),
            field(ie::SAMPLER_RANDOM_INTERVAL, 4),
        ],
    );
    let ts = with_fields(encode::ipv4_template(260), &[field(ie::SAMPLER_ID, 1)]);
    let m = v9(1, 0);
    let body = data_with_ids(&m, &ts, &r4[..3], &[5, 6, 9]);
    seeds.push((
        "v9-options-sampler-id",
        Seq::one({
            let mut m = m.clone();
            m.template(&sopts)
                .options_data(&sopts, &[&[0, 5, 2, 10], &[0, 6, 1, 1000]])
                .template(&ts)
                .raw_set(260, &body);
            m.finish()
        }),
    ));
    // A template redefined with another layout, then its old-layout data.
    seeds.push((
        "v9-template-redefinition",
        Seq::one(one(&|m| {
            m.template(&t4).data(&t4, &r4[..2]);
        }))
        .then(0, 1, {
            let t = TemplateDef {
                id: 256,
                ..t6.clone()
            };
            let mut m = v9(2, 0);
            m.template(&t).data(&t, &r6[..2]).data(&t4, &r4[..2]);
            m.finish()
        }),
    ));
    // More templates and source ids than the small limits allow.
    seeds.push(("v9-caps", {
        let mut s = Seq::default();
        let mut m = v9(1, 0);
        for id in 300..312 {
            m.template(&encode::ipv4_template(id));
        }
        s = s.then(0, 0, m.finish());
        for source in 1..7 {
            let mut m = v9(1, source);
            m.template(&t4).data(&t4, &r4[..1]);
            s = s.then(usize::from(source % 2 == 0), 1, m.finish());
        }
        s
    }));
    // A template outlives its timeout, then expire runs.
    seeds.push((
        "v9-template-expiry",
        Seq::one(one(&|m| {
            m.template(&t4);
        }))
        .then(0, 6, {
            let mut m = v9(2, 0);
            m.data(&t4, &r4[..1]);
            m.finish()
        })
        .then(0, 7, {
            let mut m = v9(3, 0);
            m.template(&t4).data(&t4, &r4[..1]);
            m.finish()
        }),
    ));
    // Competing elements and every time source v9 can carry.
    let wide = TemplateDef {
        id: 261,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::BGP_NEXT_HOP_IPV4_ADDRESS, 4),
            field(ie::IP_NEXT_HOP_IPV4_ADDRESS, 4),
            field(ie::OCTET_TOTAL_COUNT, 8),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::PACKET_TOTAL_COUNT, 4),
            field(ie::FLOW_START_SECONDS, 4),
            field(ie::FLOW_END_MILLISECONDS, 8),
            field(ie::DOT1Q_VLAN_ID, 2),
            field(ie::TCP_CONTROL_BITS, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::ICMP_TYPE_IPV4, 1),
            field(ie::ICMP_CODE_IPV4, 1),
            field(ie::IP_DIFF_SERV_CODE_POINT, 1),
            field(ie::BGP_SOURCE_AS_NUMBER, 2),
            field(ie::BGP_DESTINATION_AS_NUMBER, 4),
            field(ie::INGRESS_INTERFACE, 2),
            field(ie::FLOW_DIRECTION, 1),
        ],
    };
    seeds.push((
        "v9-competing-elements",
        Seq::one(one(&|m| {
            m.template(&wide).data(&wide, &r4);
        })),
    ));
    seeds
}

fn ipfix_seeds() -> Vec<(&'static str, Seq)> {
    let t4 = encode::ipv4_template(256);
    let t6 = encode::ipv6_template(257);
    let r4 = encode::sample_records(6, false, BASE_MS);
    let r6 = ipv6_records(3);
    let one = |f: &dyn Fn(&mut MessageBuilder)| {
        let mut m = ipfix(0, 0);
        f(&mut m);
        m.finish()
    };
    let init = options(
        258,
        vec![field(149, 4), field(ie::SYSTEM_INIT_TIME_MILLISECONDS, 8)],
    );
    let boot = ipfix(0, 0).boot_ms();
    let mut seeds = vec![
        (
            "ipfix-template-and-data",
            Seq::one(one(&|m| {
                m.template(&t6).data(&t6, &r6);
            })),
        ),
        (
            // flow*SysUpTime needs systemInitTimeMilliseconds from options data.
            "ipfix-system-init-time",
            Seq::one(one(&|m| {
                m.template(&init)
                    .template(&t4)
                    .options_data(&init, &[&[0, boot]])
                    .data(&t4, &r4[..3]);
            }))
            .then(0, 1, {
                let mut m = ipfix(3, 0);
                m.data(&t4, &r4[3..]);
                m.finish()
            }),
        ),
        (
            "ipfix-data-before-template",
            Seq::one({
                let mut m = ipfix(0, 7);
                m.data(&t6, &r6[..2]);
                m.finish()
            })
            .then(1, 0, {
                let mut m = ipfix(0, 7);
                m.data(&t6, &r6[..1]);
                m.finish()
            })
            .then(0, 1, {
                let mut m = ipfix(2, 7);
                m.template(&t6);
                m.finish()
            }),
        ),
    ];
    // Variable-length (short and long form) and enterprise fields.
    let var = TemplateDef {
        id: 259,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(82, ie::VARIABLE_LENGTH), // interfaceName
            FieldSpec {
                id: 1,
                len: 4,
                enterprise: 29_305,
            },
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::OCTET_DELTA_COUNT, 8),
            field(ie::PACKET_DELTA_COUNT, 8),
            field(ie::FLOW_START_MILLISECONDS, 8),
            field(ie::FLOW_END_MILLISECONDS, 8),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::SOURCE_TRANSPORT_PORT, 2),
            field(ie::DESTINATION_TRANSPORT_PORT, 2),
        ],
    };
    let long_form = {
        // One record whose interfaceName uses the 3-byte length form (255, len16).
        let mut m = ipfix(0, 0);
        m.data(&var, &r4[..1]);
        let d = m.finish();
        let body = &d[16 + 4..];
        let mut b = body[..4].to_vec();
        b.extend_from_slice(&[255, 0, 20]);
        b.extend_from_slice(&[b'x'; 20]);
        b.extend_from_slice(&body[4 + 6..]);
        b
    };
    seeds.push((
        "ipfix-variable-length-and-enterprise",
        Seq::one(one(&|m| {
            m.template(&var)
                .data(&var, &r4[..3])
                .raw_set(259, &long_form);
        })),
    ));
    // Withdrawal of one template, then of all data templates (set id as template id).
    seeds.push((
        "ipfix-withdrawals",
        Seq::one(one(&|m| {
            m.template(&t4).template(&t6).data(&t4, &r4[..1]);
        }))
        .then(0, 1, {
            let mut m = ipfix(1, 0);
            m.raw_set(2, &[1, 0, 0, 0])
                .data(&t4, &r4[..1])
                .data(&t6, &r6[..1]);
            m.finish()
        })
        .then(0, 1, {
            let mut m = ipfix(2, 0);
            m.raw_set(2, &[0, 2, 0, 0])
                .raw_set(3, &[0, 3, 0, 0])
                .data(&t6, &r6[..1]);
            m.finish()
        }),
    ));
    // RFC 5476 systematic sampling, selectorId as the options scope.
    let sel = options(
        260,
        vec![
            field(ie::SELECTOR_ID, 4),
            field(ie::SAMPLING_PACKET_INTERVAL, 4),
            field(ie::SAMPLING_PACKET_SPACE, 4),
        ],
    );
    let ts = with_fields(encode::ipv4_template(261), &[field(ie::SELECTOR_ID, 4)]);
    let m = ipfix(0, 0);
    let body = data_with_ids(&m, &ts, &r4[..3], &[5, 6, 7]);
    seeds.push((
        "ipfix-selector-packet-interval",
        Seq::one({
            let mut m = m.clone();
            m.template(&sel)
                .template(&init)
                .options_data(&init, &[&[0, boot]])
                .options_data(&sel, &[&[5, 1, 9], &[6, 2, 98]])
                .template(&ts)
                .raw_set(261, &body);
            m.finish()
        }),
    ));
    // NTP and delta-microsecond times.
    let times = TemplateDef {
        id: 262,
        kind: TemplateKind::Data,
        fields: vec![
            field(ie::SOURCE_IPV4_ADDRESS, 4),
            field(ie::DESTINATION_IPV4_ADDRESS, 4),
            field(ie::FLOW_START_MICROSECONDS, 8),
            field(ie::FLOW_END_NANOSECONDS, 8),
            field(ie::FLOW_START_DELTA_MICROSECONDS, 4),
            field(ie::FLOW_END_DELTA_MICROSECONDS, 4),
            field(ie::OCTET_DELTA_COUNT, 4),
            field(ie::PACKET_DELTA_COUNT, 4),
            field(ie::ICMP_TYPE_CODE_IPV4, 2),
            field(ie::PROTOCOL_IDENTIFIER, 1),
            field(ie::VLAN_ID, 2),
        ],
    };
    seeds.push((
        "ipfix-ntp-and-delta-times",
        Seq::one(one(&|m| {
            m.template(&times).data(&times, &r4);
        })),
    ));
    // Regressions (parsers/tests/decode.rs): 8-byte options values at the top of their range
    // once overflowed the sampling scale factor and the uptime-to-Unix conversion.
    let huge = options(
        263,
        vec![
            field(149, 4),
            field(ie::SAMPLING_PACKET_INTERVAL, 8),
            field(ie::SAMPLING_PACKET_SPACE, 8),
            field(ie::SYSTEM_INIT_TIME_MILLISECONDS, 8),
        ],
    );
    seeds.push((
        "ipfix-huge-options-values",
        Seq::one(one(&|m| {
            m.template(&huge)
                .template(&t4)
                .options_data(&huge, &[&[0, u64::MAX, 1, u64::MAX - 10]])
                .data(&t4, &r4[..2]);
        })),
    ));
    // Sequence numbers over several domains and both exporters, with expiry in between.
    seeds.push(("ipfix-domains-and-expiry", {
        let mut s = Seq::default();
        for (i, domain) in [0u32, 1, 2, 3, 4, 0].into_iter().enumerate() {
            let mut m = ipfix(i as u32 * 2, domain);
            m.template(&t4).data(&t4, &r4[..2]);
            s = s.then(i % 2, [0, 1, 3, 5, 6, 7][i], m.finish());
        }
        s
    }));
    seeds
}

/// The first datagram of a capture as a seed of its own, and the first `n` as one sequence
/// seed; datagrams too large for a frame are left out.
fn capture_seeds(path: &Path, n: usize) -> Vec<(String, u16, Seq)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("seed: skipping {}: {e}", path.display());
            return vec![];
        }
    };
    let cap = match capture::udp_datagrams(&bytes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("seed: skipping {}: {e}", path.display());
            return vec![];
        }
    };
    let stem = capture_name(path);
    let mut out = Vec::new();
    let mut seq = Seq::default();
    let mut version = 0;
    for (i, d) in cap
        .datagrams
        .iter()
        .filter(|d| d.payload.len() <= MAX_FRAME && d.payload.len() >= 2)
        .take(n)
        .enumerate()
    {
        version = u16::from_be_bytes([d.payload[0], d.payload[1]]);
        // Only the first stands alone: later ones need its templates.
        if i == 0 {
            out.push((format!("{stem}-0"), version, Seq::one(d.payload.to_vec())));
        }
        seq = seq.then(0, 0, d.payload.to_vec());
    }
    if !seq.0.is_empty() {
        out.push((format!("{stem}-first-{}", seq.0.len()), version, seq));
    }
    out
}

/// `softflowd_v9` for `/tmp/exports/softflowd_v9.pcap` or `/tmp/exports/v9/export.pcap`.
fn capture_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("capture");
    if stem == "export" {
        let dir = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str());
        format!("softflowd_{}", dir.unwrap_or("capture"))
    } else {
        stem.to_string()
    }
}

fn default_captures() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/tmp/exports") else {
        return found;
    };
    for e in dir.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pcap") {
            found.push(p);
        } else if p.join("export.pcap").is_file() {
            found.push(p.join("export.pcap"));
        }
    }
    found.sort();
    found
}

/// Records and errors a default decoder gets from a seed: a seed that decodes nothing is a
/// seed that tests nothing, so the generator says so.
fn check(input: &[u8]) -> (usize, u64, String) {
    let mut dec = FlowDecoder::new(DecoderLimits::default());
    let mut out = Vec::new();
    let mut now = T0_MS + 60_000;
    for f in frames(input) {
        now += nmsd_parsers_fuzz::STEPS_MS[f.step];
        let _ = dec.decode(f.exporter, f.payload, now, &mut out);
    }
    let errors = dec.stats().errors.iter().sum();
    (out.len(), errors, persist::snapshot(&dec))
}

/// SNMP messages: a v2c GET, a GETBULK response with every value type, a v1 trap, the v3
/// discovery probe and authPriv requests with the fuzz target's fixed keys.
fn snmp_seeds() -> Vec<(String, Vec<u8>)> {
    use nmsd_parsers::snmp::ber::BackWriter;
    use nmsd_parsers::snmp::pdu::{PduHeader, encode_community_message};
    use nmsd_parsers::snmp::usm::{AuthProtocol, LocalKeys, PrivProtocol};
    use nmsd_parsers::snmp::v3::{V3Params, encode_discovery, encode_v3};
    use nmsd_parsers::snmp::{Oid, PduKind, Value, Version};
    let oid = |s: &str| s.parse::<Oid>().expect("seed OID");
    let up = oid("1.3.6.1.2.1.1.3.0");
    let name = oid("1.3.6.1.2.1.31.1.1.1.1.2");
    let hc = oid("1.3.6.1.2.1.31.1.1.1.6.2");
    let mut seeds = Vec::new();
    let mut w = BackWriter::default();
    encode_community_message(
        &mut w,
        Version::V2c,
        b"public",
        &PduHeader::new(PduKind::Get, 7),
        &[(up.as_ref(), Value::Null)],
    );
    seeds.push(("v2c-get".to_string(), w.as_bytes().to_vec()));
    let obj = oid("1.3.6.1.4.1.8072.3.2.10");
    let values = [
        (up.as_ref(), Value::TimeTicks(12345)),
        (name.as_ref(), Value::OctetString(b"eth0")),
        (hc.as_ref(), Value::Counter64(u64::MAX - 5)),
        (name.as_ref(), Value::Counter32(u32::MAX)),
        (name.as_ref(), Value::Gauge32(10)),
        (name.as_ref(), Value::Integer(-1)),
        (name.as_ref(), Value::IpAddress([192, 0, 2, 1])),
        (name.as_ref(), Value::ObjectId(obj.as_ref())),
        (name.as_ref(), Value::NoSuchInstance),
        (name.as_ref(), Value::EndOfMibView),
    ];
    encode_community_message(
        &mut w,
        Version::V2c,
        b"public",
        &PduHeader::new(PduKind::Response, 8),
        &values,
    );
    seeds.push(("v2c-response-all-types".to_string(), w.as_bytes().to_vec()));
    let mut w = BackWriter::default();
    encode_discovery(&mut w, 1, 2);
    seeds.push(("v3-discovery".to_string(), w.as_bytes().to_vec()));
    let keys = [
        (
            "v3-sha-aes",
            LocalKeys::from_localized(
                AuthProtocol::Sha1,
                &[1; 20],
                Some((PrivProtocol::Aes128, &[2; 16])),
            ),
        ),
        (
            "v3-sha256-aes256",
            LocalKeys::from_localized(
                AuthProtocol::Sha256,
                &[3; 32],
                Some((PrivProtocol::Aes256, &[4; 32])),
            ),
        ),
        (
            "v3-md5-des",
            LocalKeys::from_localized(
                AuthProtocol::Md5,
                &[5; 16],
                Some((PrivProtocol::Des, &[6; 16])),
            ),
        ),
    ];
    for (label, k) in &keys {
        let p = V3Params {
            msg_id: 9,
            reportable: true,
            engine_id: b"\x80\x00\x1f\x88\x80seed",
            engine_boots: 1,
            engine_time: 100,
            user: b"u",
            context_engine_id: b"\x80\x00\x1f\x88\x80seed",
            context_name: b"",
        };
        let mut w = BackWriter::default();
        let mut scratch = Vec::new();
        encode_v3(
            &mut w,
            &mut scratch,
            &p,
            Some(k),
            42,
            &PduHeader::new(PduKind::Response, 9),
            &values,
        )
        .expect("seed encodes");
        seeds.push((label.to_string(), w.as_bytes().to_vec()));
    }
    seeds
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut pcaps = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out_dir = PathBuf::from(args.next().expect("--out DIR")),
            "-h" | "--help" => {
                println!("usage: seed [--out DIR] [PCAP...]");
                return;
            }
            _ => pcaps.push(PathBuf::from(a)),
        }
    }
    if pcaps.is_empty() {
        pcaps = default_captures();
    }

    // target -> (name, input)
    let mut corpus: BTreeMap<&str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut add = |target: &'static str, name: String, input: Vec<u8>| {
        let (records, errors, snap) = check(&input);
        println!(
            "{target:<14} {name:<40} {:>6} bytes {records:>4} records {errors:>2} errors",
            input.len()
        );
        if records == 0 {
            eprintln!("seed: warning: {name} decodes no records");
        }
        if !snap.lines().skip(1).collect::<Vec<_>>().is_empty() {
            snapshots.push((name.clone(), snap));
        }
        corpus
            .entry(target)
            .or_default()
            .push((name.clone(), input.clone()));
        corpus
            .entry("differential")
            .or_default()
            .push((name, input));
    };
    for (name, s) in v5_seeds() {
        add("decode_v5", name.into(), s.input());
    }
    for (name, s) in v9_seeds() {
        add("decode_v9", name.into(), s.input());
    }
    for (name, s) in ipfix_seeds() {
        add("decode_ipfix", name.into(), s.input());
    }
    for p in &pcaps {
        for (name, version, s) in capture_seeds(p, 3) {
            let target = match version {
                5 => "decode_v5",
                9 => "decode_v9",
                10 => "decode_ipfix",
                _ => continue,
            };
            add(target, name, s.input());
        }
    }

    // persist_restore: snapshots of decoders that ran the seeds, plus damaged ones.
    let mut persist_seeds: Vec<(String, Vec<u8>)> = snapshots
        .into_iter()
        .map(|(name, s)| (format!("snapshot-{name}"), s.into_bytes()))
        .collect();
    let damaged = "# nmsd template cache v1\n\
        T 9 192.0.2.1 0 1767225600000 256 d 8:4,12:4,1:4,2:4,22:4,21:4\n\
        T 10 2001:db8::1 7 1767225600000 300 o1 149:4,160:8\n\
        T 10 192.0.2.1 0 1767225600000 301 d 8:4,82:65535,1:4:29305,12:4\n\
        T 9 192.0.2.1 0 17 255 d 8:4\n\
        T 9 192.0.2.1 0 17 256 x 8:4\n\
        T 9 192.0.2.1 0 17 257 d 8:0\n\
        T 11 192.0.2.1 0 17 258 d 8:4\n\
        T 9 not-an-address 0 17 259 d 8:4\n\
        S 10 192.0.2.1 0 100 1767225000000 5:10,6:1000\n\
        S 5 192.0.2.1 258 16383 - -\n\
        S 9 192.0.2.1 0 0 - 1:0\n\
        X what is this\n";
    persist_seeds.push(("damaged-lines".into(), damaged.as_bytes().to_vec()));
    persist_seeds.push(("empty".into(), b"# nmsd template cache v1\n".to_vec()));
    corpus.insert("persist_restore", persist_seeds);
    corpus.insert("snmp_decode", snmp_seeds());

    let mut total = 0;
    for (target, seeds) in &corpus {
        let dir = out_dir.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (name, input) in seeds {
            std::fs::write(dir.join(name), input).expect("write seed");
            total += input.len();
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    println!("{total} bytes in all; exporters {EXPORTERS:?}");
}
