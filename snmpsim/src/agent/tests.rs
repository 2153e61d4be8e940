//! The handler against hand-made requests: net-snmp's semantics as measured on snmpd 5.9.3
//! (docs/snmp-design.md § 1), USM reports, behaviours, and a fuzz-style robustness test.

use std::sync::Arc;
use std::time::Duration;

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{
    AnyPdu, Message, PduHeader, PduKind, Version, encode_community_message,
};
use nmsd_parsers::snmp::usm::{AuthProtocol, LocalKeys, PrivProtocol, UserKeys};
use nmsd_parsers::snmp::v3::{self, ReportKind, ScopedData, V3Message, V3Params};
use nmsd_parsers::snmp::{Oid, Value};

use super::*;
use crate::config::{Behaviour, DataSpec, Group, SimConfig};
use crate::data::Fixture;

const FIXTURE: &str = "\
1.3.6.1.2.1.1.3.0|67|123456789
1.3.6.1.2.1.1.5.0|4|core1.lab
1.3.6.1.2.1.2.2.1.2.1|4|lo
1.3.6.1.2.1.2.2.1.2.2|4|eth0
1.3.6.1.2.1.31.1.1.1.1.1|4|lo
1.3.6.1.2.1.31.1.1.1.1.2|4|eth0
1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551610
1.3.6.1.2.1.31.1.1.1.6.2|70|5
1.3.6.1.2.1.31.1.1.1.15.1|66|10
1.3.6.1.2.1.31.1.1.1.15.2|66|0
1.3.6.1.2.1.31.1.1.1.19.1|67|0
1.3.6.1.2.1.31.1.1.1.19.2|67|0
1.3.6.1.2.1.31.1.1.1.19.3|67|4242
1.3.6.1.2.1.31.1.1.1.19.128|67|0
1.3.6.1.2.1.31.1.1.1.19.16384|67|0
";

fn fixture_config() -> SimConfig {
    SimConfig {
        data: DataSpec {
            interfaces: None,
            lldp: false,
            fixture: Some(Fixture::parse(FIXTURE).unwrap()),
            subtrees: Vec::new(),
        },
        engine_seed: 7,
        ..SimConfig::default()
    }
}

fn agent(cfg: &SimConfig) -> Agent {
    let shared: Arc<[DeviceShared]> = (0..cfg.devices).map(|_| DeviceShared::default()).collect();
    Agent::new(cfg, shared, Arc::default()).unwrap()
}

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

/// A decoded response: kind, request-id, error-status, error-index, varbinds as text.
#[derive(Debug, PartialEq)]
struct Resp {
    kind: PduKind,
    request_id: i32,
    status: i64,
    index: i64,
    vbs: Vec<(String, String)>,
}

fn resp_of(pdu: &nmsd_parsers::snmp::Pdu<'_>) -> Resp {
    Resp {
        kind: pdu.kind,
        request_id: pdu.request_id,
        status: pdu.error_status,
        index: pdu.error_index,
        vbs: pdu
            .varbinds()
            .map(|vb| {
                let (o, v) = vb.unwrap();
                (o.to_string(), format!("{v:?}"))
            })
            .collect(),
    }
}

fn v2c_request(version: Version, community: &str, h: PduHeader, oids: &[&str]) -> Vec<u8> {
    let oids: Vec<Oid> = oids.iter().map(|s| oid(s)).collect();
    let vbs: Vec<_> = oids.iter().map(|o| (o.as_ref(), Value::Null)).collect();
    let mut w = BackWriter::default();
    encode_community_message(&mut w, version, community.as_bytes(), &h, &vbs);
    w.as_bytes().to_vec()
}

fn ask(a: &mut Agent, h: PduHeader, oids: &[&str]) -> Resp {
    ask_v(a, Version::V2c, h, oids).expect("an answer")
}

fn ask_v(a: &mut Agent, v: Version, h: PduHeader, oids: &[&str]) -> Option<Resp> {
    let req = v2c_request(v, "public", h, oids);
    match a.handle(0, Duration::from_secs(1), &req) {
        Verdict::Reply => {}
        _ => return None,
    }
    let m = Message::decode(a.reply()).unwrap();
    assert_eq!(m.version, v);
    let AnyPdu::Standard(p) = m.pdu else {
        panic!("standard PDU")
    };
    Some(resp_of(&p))
}

fn get(id: i32) -> PduHeader {
    PduHeader::new(PduKind::Get, id)
}

fn next(id: i32) -> PduHeader {
    PduHeader::new(PduKind::GetNext, id)
}

fn names(r: &Resp) -> Vec<&str> {
    r.vbs.iter().map(|(o, _)| o.as_str()).collect()
}

#[test]
fn get_gives_values_and_exceptions_like_snmpd() {
    let mut a = agent(&fixture_config());
    let r = ask(
        &mut a,
        get(42),
        &[
            "1.3.6.1.2.1.1.5.0",
            "1.3.6.1.2.1.2.2.1.2.99",
            "1.3.6.1.2.1.4.1.0",
            "1.3.6.1.2.1.1",
            "1.3.6.1.2.1",
            "1.3.6.1.2.1.31.1.1.1.6.1",
        ],
    );
    assert_eq!((r.kind, r.request_id, r.status), (PduKind::Response, 42, 0));
    let vals: Vec<&str> = r.vbs.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        vals,
        [
            "STRING: \"core1.lab\"",
            "No Such Instance",
            "No Such Object",
            "No Such Instance",
            "No Such Object",
            "Counter64: 18446744073709551610",
        ]
    );
    assert_eq!(
        r.vbs[1].0, "1.3.6.1.2.1.2.2.1.2.99",
        "missing OIDs are echoed"
    );
}

#[test]
fn getnext_walks_in_arc_order_and_ends_with_end_of_mib_view() {
    let mut a = agent(&fixture_config());
    let r = ask(
        &mut a,
        next(1),
        &[
            "0.0",
            "1.3.6.1.2.1.31.1.1.1.19.3",
            "1.3.6.1.2.1.31.1.1.1.19.128",
            "1.3.6.1.2.1.31.1.1.1.19.16384",
        ],
    );
    assert_eq!(
        names(&r),
        [
            "1.3.6.1.2.1.1.3.0",
            "1.3.6.1.2.1.31.1.1.1.19.128",
            "1.3.6.1.2.1.31.1.1.1.19.16384",
            "1.3.6.1.2.1.31.1.1.1.19.16384",
        ]
    );
    assert_eq!(r.vbs[3].1, "End of MIB");
}

#[test]
fn getbulk_caps_and_end_of_mib_view_rows_match_net_snmp() {
    let mut a = agent(&fixture_config());
    let bulk =
        |a: &mut Agent, n: i64, r: i64, oids: &[&str]| ask(a, PduHeader::bulk(5, n, r), oids);
    // snmpd: c1 one step before the end, c2 far from it → 2 rows (the row where c1 hits
    // endOfMibView ends the response even though c2 still has values).
    let r = bulk(
        &mut a,
        1,
        4,
        &[
            "1.3.6.1.2.1.1.3",
            "1.3.6.1.2.1.31.1.1.1.19.128",
            "1.3.6.1.2.1.31.1.1.1.15.1",
        ],
    );
    assert_eq!(
        names(&r),
        [
            "1.3.6.1.2.1.1.3.0",
            "1.3.6.1.2.1.31.1.1.1.19.16384",
            "1.3.6.1.2.1.31.1.1.1.15.2",
            "1.3.6.1.2.1.31.1.1.1.19.16384",
            "1.3.6.1.2.1.31.1.1.1.19.1",
        ]
    );
    assert_eq!(r.vbs[3].1, "End of MIB");
    // Swapped: only the last column ends, which net-snmp's check skips → all 4 rows.
    let r = bulk(
        &mut a,
        0,
        4,
        &["1.3.6.1.2.1.31.1.1.1.15.1", "1.3.6.1.2.1.31.1.1.1.19.128"],
    );
    assert_eq!(r.vbs.len(), 8);
    assert_eq!(r.vbs[7].1, "End of MIB");
    // Single column: ends at its first endOfMibView.
    let r = bulk(&mut a, 0, 5, &["1.3.6.1.2.1.31.1.1.1.19.128"]);
    assert_eq!(r.vbs.len(), 2);
    // Non-repeaters only (max-repetitions 0, or more than 100 repeaters).
    let r = bulk(&mut a, 1, 0, &["1.3.6.1.2.1.1.3", "1.3.6.1.2.1.1.1"]);
    assert_eq!(names(&r), ["1.3.6.1.2.1.1.3.0"]);
    let many: Vec<String> = (1..=101).map(|i| format!("1.3.6.1.2.1.1.{i}")).collect();
    let mut oids = vec!["1.3.6.1.2.1.1.3"];
    oids.extend(many.iter().map(String::as_str));
    assert_eq!(bulk(&mut a, 1, 3, &oids).vbs.len(), 1);
    assert_eq!(bulk(&mut a, 1, 3, &oids[..101]).vbs.len(), 101);
    // non-repeaters above the varbind count: all are non-repeaters.
    assert_eq!(bulk(&mut a, 9, 3, &oids[..3]).vbs.len(), 3);
}

#[test]
fn getbulk_holds_at_most_100_repeated_varbinds_in_whole_rows() {
    let cfg = SimConfig {
        data: DataSpec {
            interfaces: Some(48),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    };
    let mut a = agent(&cfg);
    let cols = [
        "1.3.6.1.2.1.1.3",
        "1.3.6.1.2.1.2.2.1.1",
        "1.3.6.1.2.1.2.2.1.2",
        "1.3.6.1.2.1.2.2.1.3",
        "1.3.6.1.2.1.2.2.1.4",
    ];
    let count = |a: &mut Agent, n: i64, r: i64, oids: &[&str]| {
        ask(a, PduHeader::bulk(9, n, r), oids).vbs.len()
    };
    assert_eq!(count(&mut a, 1, 50, &cols), 101, "1 + 4 × 25");
    assert_eq!(count(&mut a, 0, 50, &cols[..4]), 100);
    assert_eq!(count(&mut a, 1, 500, &cols[..4]), 100, "1 + 3 × 33");
    assert_eq!(count(&mut a, 0, 2000, &["1.3"]), 100);
    let r = ask(&mut a, PduHeader::bulk(9, 1, 3), &cols[..3]);
    assert_eq!(r.vbs[0].0, "1.3.6.1.2.1.1.3.0");
    assert_eq!(
        names(&r)[1..],
        [
            "1.3.6.1.2.1.2.2.1.1.1",
            "1.3.6.1.2.1.2.2.1.2.1",
            "1.3.6.1.2.1.2.2.1.1.2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "1.3.6.1.2.1.2.2.1.1.3",
            "1.3.6.1.2.1.2.2.1.2.3",
        ]
    );
}

#[test]
fn too_big_cuts_bulk_rows_and_refuses_single_requests() {
    let cfg = SimConfig {
        max_message_size: 484,
        data: DataSpec {
            interfaces: Some(48),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    };
    let mut a = agent(&cfg);
    let cols = [
        "1.3.6.1.2.1.1.3",
        "1.3.6.1.2.1.31.1.1.1.6",
        "1.3.6.1.2.1.31.1.1.1.10",
    ];
    let r = ask(&mut a, PduHeader::bulk(3, 1, 30), &cols);
    assert_eq!(r.status, 0);
    assert!(
        r.vbs.len() < 61 && (r.vbs.len() - 1).is_multiple_of(2),
        "{}",
        r.vbs.len()
    );
    assert!(a.reply().len() <= 484);
    let many: Vec<&str> = std::iter::repeat_n("1.3.6.1.2.1.2.2.1.2.1", 40).collect();
    let r = ask(&mut a, get(4), &many);
    assert_eq!(
        (r.status, r.index, r.vbs.len()),
        (1, 0, 0),
        "tooBig, no varbinds"
    );
}

#[test]
fn wrong_community_and_dead_devices_get_silence() {
    let mut a = agent(&fixture_config());
    let req = v2c_request(Version::V2c, "private", get(1), &["1.3.6.1.2.1.1.5.0"]);
    assert_eq!(a.handle(0, Duration::ZERO, &req), Verdict::Drop);
    let cfg = SimConfig {
        devices: 3,
        listen: "0.0.0.0:0".parse().unwrap(),
        groups: vec![
            Group {
                count: 1,
                behaviour: Behaviour {
                    dead: true,
                    ..Behaviour::default()
                },
            },
            Group {
                count: 1,
                behaviour: Behaviour {
                    wrong_community: true,
                    ..Behaviour::default()
                },
            },
        ],
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    let ok = v2c_request(Version::V2c, "public", get(1), &["1.3.6.1.2.1.1.5.0"]);
    assert_eq!(a.handle(0, Duration::ZERO, &ok), Verdict::Reply);
    assert_eq!(
        a.handle(1, Duration::ZERO, &ok),
        Verdict::Drop,
        "wrong community"
    );
    assert_eq!(a.handle(2, Duration::ZERO, &ok), Verdict::Drop, "dead");
    assert_eq!(
        a.handle(3, Duration::ZERO, &ok),
        Verdict::Drop,
        "no such device"
    );
    a.core.shared[0]
        .dead
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        a.handle(0, Duration::ZERO, &ok),
        Verdict::Drop,
        "killed at run time"
    );
}

#[test]
fn slow_and_flaky_devices() {
    let cfg = SimConfig {
        groups: vec![Group {
            count: 1,
            behaviour: Behaviour {
                slow: Some(Duration::from_millis(1500)),
                ..Behaviour::default()
            },
        }],
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    let ok = v2c_request(Version::V2c, "public", get(1), &["1.3.6.1.2.1.1.5.0"]);
    let got: Vec<Verdict> = (0..4).map(|_| a.handle(0, Duration::ZERO, &ok)).collect();
    let slow = Verdict::ReplyAfter(Duration::from_millis(1500));
    assert_eq!(got, [Verdict::Reply, slow, Verdict::Reply, slow]);

    let cfg = SimConfig {
        groups: vec![Group {
            count: 1,
            behaviour: Behaviour {
                flaky_pct: 30,
                ..Behaviour::default()
            },
        }],
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    let answered = (0..2000)
        .filter(|_| a.handle(0, Duration::ZERO, &ok) == Verdict::Reply)
        .count();
    assert!((1250..1550).contains(&answered), "{answered} of 2000");
}

#[test]
fn snmpv1_uses_no_such_name_and_skips_counter64() {
    let mut a = agent(&fixture_config());
    let r = ask_v(
        &mut a,
        Version::V1,
        get(3),
        &["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.9.0"],
    )
    .unwrap();
    assert_eq!((r.status, r.index), (2, 2));
    assert_eq!(r.vbs[1], ("1.3.6.1.2.1.1.9.0".into(), "NULL".into()));
    let r = ask_v(&mut a, Version::V1, next(3), &["1.3.6.1.2.1.31.1.1.1.1.2"]).unwrap();
    assert_eq!(names(&r), ["1.3.6.1.2.1.31.1.1.1.15.1"]);
    let r = ask_v(
        &mut a,
        Version::V1,
        next(3),
        &["1.3.6.1.2.1.31.1.1.1.19.16384"],
    )
    .unwrap();
    assert_eq!((r.status, r.index), (2, 1));
    let bulk = ask_v(&mut a, Version::V1, PduHeader::bulk(1, 0, 5), &["1.3"]);
    assert!(bulk.is_none(), "no GETBULK in v1");
    let set = ask(
        &mut a,
        PduHeader::new(PduKind::Set, 8),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert_eq!((set.status, set.index), (6, 1), "noAccess");
}

// ---- SNMPv3 ----

struct Client {
    keys: LocalKeys,
    user: &'static str,
    engine: Vec<u8>,
}

fn client(a: &Agent, dev: usize, sha256: bool) -> Client {
    let engine = a.engine_id(dev).to_vec();
    let (user, keys) = if sha256 {
        (
            "u_sha256_aes256",
            UserKeys::new(
                AuthProtocol::Sha256,
                b"authpass-sha256",
                Some((PrivProtocol::Aes256, b"privpass-aes256")),
            ),
        )
    } else {
        (
            "u_sha_aes",
            UserKeys::new(
                AuthProtocol::Sha1,
                b"authpass-sha1",
                Some((PrivProtocol::Aes128, b"privpass-aes128")),
            ),
        )
    };
    Client {
        keys: keys.unwrap().localize(&engine),
        user,
        engine,
    }
}

#[allow(clippy::too_many_arguments)]
fn v3_request(
    c: &Client,
    keys: Option<&LocalKeys>,
    boots: u32,
    time: u32,
    msg_id: i32,
    h: PduHeader,
    oids: &[&str],
) -> Vec<u8> {
    let oids: Vec<Oid> = oids.iter().map(|s| oid(s)).collect();
    let vbs: Vec<_> = oids.iter().map(|o| (o.as_ref(), Value::Null)).collect();
    let p = V3Params {
        msg_id,
        reportable: true,
        engine_id: &c.engine,
        engine_boots: boots,
        engine_time: time,
        user: c.user.as_bytes(),
        context_engine_id: &c.engine,
        context_name: b"",
    };
    let mut w = BackWriter::default();
    v3::encode_v3(&mut w, &mut Vec::new(), &p, keys, 99, &h, &vbs).unwrap();
    w.as_bytes().to_vec()
}

/// Decode a v3 reply: (flags, msgID, boots, time, PDU as text).
fn v3_reply(bytes: &[u8], keys: Option<&LocalKeys>) -> (u8, i32, u32, u32, Resp) {
    let m = V3Message::decode(bytes).unwrap();
    if m.is_authenticated() {
        let k = keys.expect("keys for an authenticated reply");
        assert!(k.verify(bytes, m.auth_offset), "reply MAC verifies");
    }
    let resp = match m.data {
        ScopedData::Plain(sp) => {
            let s = v3::decode_scoped(sp).unwrap();
            let AnyPdu::Standard(p) = s.pdu else {
                panic!("standard")
            };
            resp_of(&p)
        }
        ScopedData::Encrypted(ct) => {
            let mut plain = ct.to_vec();
            keys.unwrap()
                .decrypt(&mut plain, m.engine_boots, m.engine_time, m.priv_params)
                .unwrap();
            let s = v3::decode_decrypted(&plain).unwrap();
            let AnyPdu::Standard(p) = s.pdu else {
                panic!("standard")
            };
            resp_of(&p)
        }
    };
    (m.flags, m.msg_id, m.engine_boots, m.engine_time, resp)
}

fn report_kind(r: &Resp) -> ReportKind {
    assert_eq!(r.kind, PduKind::Report);
    let o = oid(&r.vbs[0].0);
    let mut w = BackWriter::default();
    nmsd_parsers::snmp::pdu::encode_pdu(
        &mut w,
        &PduHeader::new(PduKind::Report, 0),
        &[(o.as_ref(), Value::Counter32(1))],
    );
    let mut rd = nmsd_parsers::snmp::ber::Reader::new(w.as_bytes());
    let (tag, c) = rd.read_any().unwrap();
    let AnyPdu::Standard(p) = nmsd_parsers::snmp::pdu::decode_pdu(tag, c).unwrap() else {
        panic!("standard")
    };
    v3::classify_report(&p)
}

#[test]
fn v3_discovery_then_auth_priv_for_both_users() {
    let cfg = SimConfig {
        devices: 2,
        listen: "0.0.0.0:0".parse().unwrap(),
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    assert_ne!(a.engine_id(0), a.engine_id(1), "an engine per device");
    let t = Duration::from_secs(14);
    let mut w = BackWriter::default();
    v3::encode_discovery(&mut w, 0x4494_281A, 0x6B43_B532);
    assert_eq!(a.handle(1, t, w.as_bytes()), Verdict::Reply);
    let (flags, msg_id, boots, time, r) = v3_reply(a.reply(), None);
    assert_eq!((flags, msg_id, boots), (0, 0x4494_281A, 1));
    assert_eq!(time, (crate::data::initial_uptime_cs(1) / 100 + 14) as u32);
    assert_eq!(report_kind(&r), ReportKind::UnknownEngineId);
    assert_eq!(
        r.request_id, 0x6B43_B532,
        "the probe's request-id is echoed"
    );
    let m = V3Message::decode(a.reply()).unwrap();
    assert_eq!(m.engine_id, a.engine_id(1));

    for sha256 in [false, true] {
        let c = client(&a, 1, sha256);
        let req = v3_request(
            &c,
            Some(&c.keys),
            boots,
            time,
            77,
            PduHeader::bulk(1234, 1, 3),
            &["1.3.6.1.2.1.1.3", "1.3.6.1.2.1.31.1.1.1.15"],
        );
        assert_eq!(a.handle(1, t, &req), Verdict::Reply);
        let (flags, msg_id, _, _, r) = v3_reply(a.reply(), Some(&c.keys));
        assert_eq!((flags, msg_id), (0x03, 77));
        assert_eq!((r.kind, r.request_id), (PduKind::Response, 1234));
        assert_eq!(
            r.vbs[..3],
            [
                (
                    "1.3.6.1.2.1.1.3.0".to_string(),
                    "Timeticks: (123456789)".to_string()
                ),
                (
                    "1.3.6.1.2.1.31.1.1.1.15.1".to_string(),
                    "Gauge32: 10".to_string()
                ),
                (
                    "1.3.6.1.2.1.31.1.1.1.15.2".to_string(),
                    "Gauge32: 0".to_string()
                ),
            ]
        );
    }
}

#[test]
fn v3_reports_and_silences() {
    let mut a = agent(&fixture_config());
    let t = Duration::from_secs(100);
    let clock = Clock::at(&Behaviour::default(), 0, t);
    let (boots, time) = (clock.boots, clock.engine_time);
    let c = client(&a, 0, false);
    let oids = ["1.3.6.1.2.1.1.5.0"];

    // Stale time: authenticated (not encrypted) notInTimeWindow with our boots/time, id 0.
    let req = v3_request(&c, Some(&c.keys), boots, time + 400, 5, get(9), &oids);
    assert_eq!(a.handle(0, t, &req), Verdict::Reply);
    let (flags, msg_id, rb, rt, r) = v3_reply(a.reply(), Some(&c.keys));
    assert_eq!((flags, msg_id, rb, rt), (0x01, 5, boots, time));
    assert_eq!(report_kind(&r), ReportKind::NotInTimeWindow);
    assert_eq!(r.request_id, 0);
    let req = v3_request(&c, Some(&c.keys), boots + 1, time, 5, get(9), &oids);
    a.handle(0, t, &req);
    assert_eq!(
        report_kind(&v3_reply(a.reply(), Some(&c.keys)).4),
        ReportKind::NotInTimeWindow
    );

    // Wrong auth password: unauthenticated wrongDigest.
    let wrong = UserKeys::new(
        AuthProtocol::Sha1,
        b"authpass-wrong",
        Some((PrivProtocol::Aes128, b"privpass-aes128")),
    )
    .unwrap()
    .localize(&c.engine);
    let req = v3_request(&c, Some(&wrong), boots, time, 6, get(9), &oids);
    assert_eq!(a.handle(0, t, &req), Verdict::Reply);
    let (flags, _, _, _, r) = v3_reply(a.reply(), None);
    assert_eq!(flags, 0);
    assert_eq!(report_kind(&r), ReportKind::WrongDigest);

    // Unknown user.
    let stranger = Client {
        user: "nobody",
        keys: LocalKeys::from_localized(AuthProtocol::Sha1, &[1; 20], None),
        engine: c.engine.clone(),
    };
    let req = v3_request(
        &stranger,
        Some(&stranger.keys),
        boots,
        time,
        7,
        get(9),
        &oids,
    );
    assert_eq!(a.handle(0, t, &req), Verdict::Reply);
    assert_eq!(
        report_kind(&v3_reply(a.reply(), None).4),
        ReportKind::UnknownUserName
    );

    // Wrong privacy password: silence.
    let bad_priv = UserKeys::new(
        AuthProtocol::Sha1,
        b"authpass-sha1",
        Some((PrivProtocol::Aes128, b"privpass-wrong")),
    )
    .unwrap()
    .localize(&c.engine);
    let req = v3_request(&c, Some(&bad_priv), boots, time, 8, get(9), &oids);
    assert_eq!(a.handle(0, t, &req), Verdict::Drop);

    // authNoPriv from a priv-only user: an authenticated authorizationError.
    let auth_only = LocalKeys::from_localized(AuthProtocol::Sha1, c.keys.auth_key(), None);
    let req = v3_request(&c, Some(&auth_only), boots, time, 9, get(10), &oids);
    assert_eq!(a.handle(0, t, &req), Verdict::Reply);
    let (flags, _, _, _, r) = v3_reply(a.reply(), Some(&auth_only));
    assert_eq!(flags, 0x01);
    assert_eq!(
        (r.kind, r.request_id, r.status, r.index),
        (PduKind::Response, 10, 16, 0)
    );

    // A message for another engine: unknownEngineID again (rediscovery).
    let other = Client {
        engine: vec![0x80, 0, 0, 0, 1],
        ..client(&a, 0, false)
    };
    let req = v3_request(&other, Some(&other.keys), 1, 1, 11, get(9), &oids);
    assert_eq!(a.handle(0, t, &req), Verdict::Reply);
    assert_eq!(
        report_kind(&v3_reply(a.reply(), None).4),
        ReportKind::UnknownEngineId
    );
}

#[test]
fn v3_restart_bumps_boots() {
    let cfg = SimConfig {
        groups: vec![Group {
            count: 1,
            behaviour: Behaviour {
                restart_every: Some(Duration::from_secs(60)),
                ..Behaviour::default()
            },
        }],
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    let mut w = BackWriter::default();
    v3::encode_discovery(&mut w, 1, 2);
    a.handle(0, Duration::from_secs(30), w.as_bytes());
    assert_eq!(v3_reply(a.reply(), None).2, 1);
    a.handle(0, Duration::from_secs(70), w.as_bytes());
    let (_, _, boots, time, _) = v3_reply(a.reply(), None);
    assert_eq!((boots, time), (2, 10));
}

// ---- robustness ----

/// xorshift64* for the fuzz loop (deterministic, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The handler must never panic, whatever arrives: random bytes, and valid requests of every
/// kind truncated, extended, and with bytes flipped or overwritten (lengths and tags included).
#[test]
fn never_panics_on_hostile_input() {
    let cfg = SimConfig {
        devices: 2,
        listen: "0.0.0.0:0".parse().unwrap(),
        max_message_size: 600,
        data: DataSpec {
            interfaces: Some(8),
            lldp: true,
            fixture: Some(Fixture::parse(FIXTURE).unwrap()),
            subtrees: Vec::new(),
        },
        groups: vec![Group {
            count: 1,
            behaviour: Behaviour {
                c32_only: true,
                wrap: true,
                ..Behaviour::default()
            },
        }],
        ..fixture_config()
    };
    let mut a = agent(&cfg);
    let t = Duration::from_secs(5);
    let clock = Clock::at(&Behaviour::default(), 0, t);
    let c = client(&a, 0, false);
    let c256 = client(&a, 0, true);
    let oids = [
        "1.3.6.1.2.1.1.3",
        "1.3.6.1.2.1.31.1.1.1.6",
        "1.3.6.1.2.1.2.2.1.10",
    ];
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for h in [
        get(1),
        next(2),
        PduHeader::bulk(3, 1, 25),
        PduHeader::bulk(3, -5, i64::MAX),
        PduHeader::new(PduKind::Set, 4),
        PduHeader::new(PduKind::Inform, 4),
    ] {
        for v in [Version::V1, Version::V2c] {
            seeds.push(v2c_request(v, "public", h, &oids));
        }
        for cl in [&c, &c256] {
            seeds.push(v3_request(
                cl,
                Some(&cl.keys),
                clock.boots,
                clock.engine_time,
                9,
                h,
                &oids,
            ));
        }
    }
    let mut w = BackWriter::default();
    v3::encode_discovery(&mut w, 1, 2);
    seeds.push(w.as_bytes().to_vec());
    // Every seed is answered as is.
    for s in &seeds {
        let _ = a.handle(0, t, s);
    }
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut replies = 0usize;
    // More rounds for a longer run: SIM_FUZZ_ROUNDS=5000000 cargo test --release never_panics
    let rounds: usize = std::env::var("SIM_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    for round in 0..rounds {
        let dev = round % 3; // 2 is no device at all
        let input: Vec<u8> = match rng.below(5) {
            0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            1 => {
                let s = &seeds[rng.below(seeds.len())];
                s[..rng.below(s.len())].to_vec()
            }
            2 => {
                let mut s = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(s.len());
                    s[i] ^= 1 << rng.below(8);
                }
                s
            }
            3 => {
                let mut s = seeds[rng.below(seeds.len())].clone();
                let i = rng.below(s.len());
                s[i] = [0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF][rng.below(6)];
                s
            }
            _ => {
                let mut s = seeds[rng.below(seeds.len())].clone();
                let extra = rng.below(20);
                s.extend((0..extra).map(|_| rng.next() as u8));
                s
            }
        };
        if a.handle(dev, t, &input) != Verdict::Drop {
            replies += 1;
            assert!(!a.reply().is_empty());
        }
    }
    assert!(replies > 0, "some mutated requests are still valid");
}
