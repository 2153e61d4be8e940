//! The trap receiver: SNMPv1 traps, v2c TRAP/INFORM, v3 TRAP/INFORM (docs/snmp-design.md §9).
//!
//! A plain thread per listen address, so a trap storm never delays polling and polling never
//! delays an INFORM answer. For v3 TRAP the sender is the authoritative engine: its user's keys
//! are localized lazily per sender engine ID from the profile's password-derived keys (one hash),
//! so senders need no per-engine configuration. For v3 INFORM nmsd is authoritative: it answers
//! discovery probes with its own engine ID, boots and time, checks the time window, and answers
//! the INFORM encrypted like the request.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{self, AnyPdu, Message, Pdu, PduHeader, encode_community_message};
use nmsd_parsers::snmp::usm::{LocalKeys, UserKeys};
use nmsd_parsers::snmp::v3::{self, ScopedData, V3Message, V3Params};
use nmsd_parsers::snmp::{Oid, OidRef, PduKind, Value, Version};
use nmsd_pipeline::snmp::TrapRow;
use rustc_hash::FxHashMap;
use zeroize::Zeroizing;

/// A community accepted for v1/v2c, with the name stored instead of the community.
pub struct TrapCommunity {
    pub name: String,
    pub community: Zeroizing<Vec<u8>>,
}

/// A v3 user accepted for TRAP and INFORM.
pub struct TrapUser {
    pub name: Vec<u8>,
    /// `None` for noAuthNoPriv.
    pub keys: Option<Arc<UserKeys>>,
}

/// What the receiver accepts and who it is.
pub struct TrapConfig {
    pub communities: Vec<TrapCommunity>,
    pub users: Vec<TrapUser>,
    /// nmsd's own engine ID (authoritative for INFORM).
    pub engine_id: Vec<u8>,
    /// Incremented at every start (RFC 3414 snmpEngineBoots).
    pub engine_boots: u32,
}

/// Largest key cache: (engine ID, user) pairs localized so far.
const KEY_CACHE_MAX: usize = 4096;
/// INFORM retransmissions within this window are answered again but stored once.
const INFORM_DEDUP: Duration = Duration::from_secs(30);
/// RFC 3414 §3.2.7: messages more than 150 s off the authoritative clock are refused.
const TIME_WINDOW: i64 = 150;

const SNMP_TRAP_OID: &[u8] = &[0x2B, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const SYS_UPTIME_0: &[u8] = &[0x2B, 6, 1, 2, 1, 1, 3, 0];

/// Handles datagrams; owns per-receiver state (key cache, inform dedup).
pub struct TrapReceiver {
    cfg: Arc<TrapConfig>,
    started: Instant,
    keys: FxHashMap<(Vec<u8>, Vec<u8>), Arc<LocalKeys>>,
    informs: VecDeque<(SocketAddr, i32, Instant)>,
    unknown_engine_reports: u32,
    wbuf: BackWriter,
    scratch: Vec<u8>,
    salt: u64,
    received: [metrics::Counter; 3],
    dropped: fn(&'static str),
}

fn drop_counter(reason: &'static str) {
    metrics::counter!("nmsd_snmp_traps_dropped_total", "reason" => reason).increment(1);
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// JSON string literal (escaped).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Varbinds as JSON: `[{"oid":"…","type":"…","value":…}]`; octet strings as text when UTF-8,
/// else `{"hex":"…"}`.
pub fn varbinds_json<'a>(
    vbs: impl Iterator<Item = Result<(OidRef<'a>, Value<'a>), nmsd_parsers::snmp::SnmpError>>,
) -> String {
    let mut s = String::from("[");
    for (i, vb) in vbs.enumerate() {
        let Ok((oid, v)) = vb else {
            break;
        };
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"oid\":\"{oid}\",\"type\":");
        let (ty, val): (&str, String) = match v {
            Value::Integer(x) => ("Integer", x.to_string()),
            Value::OctetString(b) => match std::str::from_utf8(b) {
                Ok(t) => {
                    let mut q = String::new();
                    json_str(&mut q, t);
                    ("OctetString", q)
                }
                Err(_) => ("OctetString", format!("{{\"hex\":\"{}\"}}", hex(b))),
            },
            Value::Null => ("Null", "null".into()),
            Value::ObjectId(o) => ("ObjectId", format!("\"{o}\"")),
            Value::IpAddress(a) => (
                "IpAddress",
                format!("\"{}.{}.{}.{}\"", a[0], a[1], a[2], a[3]),
            ),
            Value::Counter32(x) => ("Counter32", x.to_string()),
            Value::Gauge32(x) => ("Gauge32", x.to_string()),
            Value::TimeTicks(x) => ("TimeTicks", x.to_string()),
            Value::Opaque(b) => ("Opaque", format!("{{\"hex\":\"{}\"}}", hex(b))),
            Value::Counter64(x) => ("Counter64", x.to_string()),
            Value::NoSuchObject => ("NoSuchObject", "null".into()),
            Value::NoSuchInstance => ("NoSuchInstance", "null".into()),
            Value::EndOfMibView => ("EndOfMibView", "null".into()),
        };
        let _ = write!(s, "\"{ty}\",\"value\":{val}}}");
    }
    s.push(']');
    s
}

/// (uptime, trap OID) of a v2/v3 notification from its first two varbinds.
fn v2_header(p: &Pdu<'_>) -> (Option<u32>, String) {
    let mut uptime = None;
    let mut oid = String::new();
    for (o, v) in p.varbinds().take(2).flatten() {
        match (o.as_bytes(), v) {
            (SYS_UPTIME_0, Value::TimeTicks(t)) => uptime = Some(t),
            (SNMP_TRAP_OID, Value::ObjectId(t)) => oid = t.to_string(),
            _ => {}
        }
    }
    (uptime, oid)
}

impl TrapReceiver {
    pub fn new(cfg: Arc<TrapConfig>) -> Self {
        let v = |ver: &'static str| metrics::counter!("nmsd_snmp_traps_received_total", "version" => ver);
        TrapReceiver {
            cfg,
            started: Instant::now(),
            keys: FxHashMap::default(),
            informs: VecDeque::new(),
            unknown_engine_reports: 0,
            wbuf: BackWriter::with_capacity(1500),
            scratch: Vec::new(),
            salt: unix_ms() ^ 0x5DEECE66D,
            received: [v("v1"), v("v2c"), v("v3")],
            dropped: drop_counter,
        }
    }

    fn engine_time(&self) -> u32 {
        self.started.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    /// Handle one datagram; `reply` sends an answer to its source. Returns the trap to store.
    pub fn handle(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Option<TrapRow> {
        match pdu::peek_version(data) {
            Ok(Version::V3) => self.handle_v3(data, from, reply),
            Ok(_) => self.handle_community(data, from, reply),
            Err(_) => {
                (self.dropped)("decode");
                None
            }
        }
    }

    fn inform_seen(&mut self, from: SocketAddr, id: i32) -> bool {
        let now = Instant::now();
        while self
            .informs
            .front()
            .is_some_and(|(_, _, t)| now.duration_since(*t) > INFORM_DEDUP)
        {
            self.informs.pop_front();
        }
        let seen = self.informs.iter().any(|(f, i, _)| *f == from && *i == id);
        if !seen {
            self.informs.push_back((from, id, now));
            if self.informs.len() > 10_000 {
                self.informs.pop_front();
            }
        }
        seen
    }

    fn handle_community(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Option<TrapRow> {
        let Ok(m) = Message::decode(data) else {
            (self.dropped)("decode");
            return None;
        };
        let Some(entry) = self
            .cfg
            .communities
            .iter()
            .find(|c| c.community.as_slice() == m.community)
        else {
            (self.dropped)("community");
            return None;
        };
        let name = entry.name.clone();
        let mut row = TrapRow {
            ts_ms: unix_ms(),
            source: Some(from),
            security_name: name,
            ..TrapRow::default()
        };
        match m.pdu {
            AnyPdu::TrapV1(t) => {
                self.received[0].increment(1);
                row.version = "v1";
                row.pdu = "trap";
                row.uptime_ticks = Some(t.timestamp);
                row.enterprise = Some(t.enterprise.to_string());
                row.generic_trap = Some(t.generic_trap);
                row.specific_trap = Some(t.specific_trap);
                // RFC 3584 §3.1: the v2 trap OID of a v1 trap.
                row.trap_oid = if (0..6).contains(&t.generic_trap) {
                    format!("1.3.6.1.6.3.1.1.5.{}", t.generic_trap + 1)
                } else {
                    format!("{}.0.{}", t.enterprise, t.specific_trap)
                };
                row.varbinds = varbinds_json(t.varbinds());
                Some(row)
            }
            AnyPdu::Standard(p) if matches!(p.kind, PduKind::TrapV2 | PduKind::Inform) => {
                self.received[1].increment(1);
                row.version = if m.version == Version::V1 {
                    "v1"
                } else {
                    "v2c"
                };
                row.request_id = Some(p.request_id);
                let (uptime, oid) = v2_header(&p);
                row.uptime_ticks = uptime;
                row.trap_oid = oid;
                row.varbinds = varbinds_json(p.varbinds());
                if p.kind == PduKind::Inform {
                    row.pdu = "inform";
                    // The answer is the same PDU re-tagged as a Response.
                    let vbs: Vec<_> = p.varbinds().flatten().collect();
                    encode_community_message(
                        &mut self.wbuf,
                        m.version,
                        m.community,
                        &PduHeader::new(PduKind::Response, p.request_id),
                        &vbs,
                    );
                    reply(self.wbuf.as_bytes());
                    metrics::counter!("nmsd_snmp_informs_answered_total").increment(1);
                    if self.inform_seen(from, p.request_id) {
                        return None;
                    }
                } else {
                    row.pdu = "trap";
                }
                Some(row)
            }
            AnyPdu::Standard(_) => {
                (self.dropped)("not_a_notification");
                None
            }
        }
    }

    fn local_keys(&mut self, engine: &[u8], user: &[u8]) -> Option<Option<Arc<LocalKeys>>> {
        let u = self.cfg.users.iter().find(|u| u.name == user)?;
        let Some(uk) = &u.keys else {
            return Some(None);
        };
        let key = (engine.to_vec(), user.to_vec());
        if let Some(k) = self.keys.get(&key) {
            return Some(Some(k.clone()));
        }
        if self.keys.len() >= KEY_CACHE_MAX {
            // Bounded: a flood of made-up engine IDs must not grow memory.
            self.keys.clear();
        }
        let k = Arc::new(uk.localize(engine));
        self.keys.insert(key, k.clone());
        Some(Some(k))
    }

    fn handle_v3(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Option<TrapRow> {
        let Ok(m) = V3Message::decode(data) else {
            (self.dropped)("decode");
            return None;
        };
        let ours = m.engine_id == self.cfg.engine_id.as_slice();
        // Discovery probe (INFORM senders): answer with our engine ID, boots and time.
        if m.engine_id.is_empty() && !m.is_authenticated() {
            if let ScopedData::Plain(sp) = m.data
                && let Ok(s) = v3::decode_scoped(sp)
                && let AnyPdu::Standard(p) = s.pdu
            {
                self.report(&m, p.request_id, REPORT_UNKNOWN_ENGINE, None, reply);
            }
            return None;
        }
        let Some(keys) = self.local_keys(m.engine_id, m.user) else {
            (self.dropped)("unknown_user");
            return None;
        };
        if m.is_authenticated() {
            match &keys {
                Some(k)
                    if m.auth_params.len() == k.auth.mac_len() && k.verify(data, m.auth_offset) => {
                }
                _ => {
                    (self.dropped)("authentication");
                    return None;
                }
            }
        }
        // We are authoritative for INFORMs: the sender must be in our time window.
        if ours {
            let drift = (m.engine_time as i64 - self.engine_time() as i64).abs();
            if m.engine_boots != self.cfg.engine_boots || drift > TIME_WINDOW {
                self.report(&m, 0, REPORT_NOT_IN_TIME_WINDOW, keys.as_deref(), reply);
                (self.dropped)("not_in_time_window");
                return None;
            }
        }
        let plain: Vec<u8>;
        let scoped = match m.data {
            ScopedData::Plain(sp) => v3::decode_scoped(sp),
            ScopedData::Encrypted(ct) => {
                let Some(k) = &keys else {
                    (self.dropped)("authentication");
                    return None;
                };
                let mut buf = ct.to_vec();
                if k.decrypt(&mut buf, m.engine_boots, m.engine_time, m.priv_params)
                    .is_err()
                {
                    (self.dropped)("decryption");
                    return None;
                }
                plain = buf;
                v3::decode_decrypted(&plain)
            }
        };
        let Ok(scoped) = scoped else {
            (self.dropped)("decode");
            return None;
        };
        let AnyPdu::Standard(p) = scoped.pdu else {
            (self.dropped)("not_a_notification");
            return None;
        };
        if !matches!(p.kind, PduKind::TrapV2 | PduKind::Inform) {
            (self.dropped)("not_a_notification");
            return None;
        }
        self.received[2].increment(1);
        let (uptime, oid) = v2_header(&p);
        let mut row = TrapRow {
            ts_ms: unix_ms(),
            source: Some(from),
            version: "v3",
            pdu: "trap",
            trap_oid: oid,
            uptime_ticks: uptime,
            security_name: String::from_utf8_lossy(m.user).into_owned(),
            engine_id: Some(hex(m.engine_id)),
            request_id: Some(p.request_id),
            varbinds: varbinds_json(p.varbinds()),
            ..TrapRow::default()
        };
        if p.kind == PduKind::Inform {
            row.pdu = "inform";
            if !ours {
                // An INFORM must name us as authoritative; answering would be meaningless.
                (self.dropped)("unknown_engine_id");
                return None;
            }
            let vbs: Vec<_> = p.varbinds().flatten().collect();
            let params = V3Params {
                msg_id: m.msg_id,
                reportable: false,
                engine_id: &self.cfg.engine_id,
                engine_boots: self.cfg.engine_boots,
                engine_time: self.engine_time(),
                user: m.user,
                context_engine_id: scoped.context_engine_id,
                context_name: scoped.context_name,
            };
            self.salt = self.salt.wrapping_add(1);
            let ok = v3::encode_v3(
                &mut self.wbuf,
                &mut self.scratch,
                &params,
                keys.as_deref(),
                self.salt,
                &PduHeader::new(PduKind::Response, p.request_id),
                &vbs,
            );
            if ok.is_ok() {
                reply(self.wbuf.as_bytes());
                metrics::counter!("nmsd_snmp_informs_answered_total").increment(1);
            }
            if self.inform_seen(from, p.request_id) {
                return None;
            }
        }
        Some(row)
    }

    /// Send a Report (unauthenticated for discovery, authenticated for time-window problems).
    fn report(
        &mut self,
        m: &V3Message<'_>,
        request_id: i32,
        which: &[u32],
        keys: Option<&LocalKeys>,
        reply: &mut dyn FnMut(&[u8]),
    ) {
        self.unknown_engine_reports = self.unknown_engine_reports.wrapping_add(1);
        let Ok(oid) = Oid::from_arcs(which) else {
            return;
        };
        let params = V3Params {
            msg_id: m.msg_id,
            reportable: false,
            engine_id: &self.cfg.engine_id,
            engine_boots: self.cfg.engine_boots,
            engine_time: self.engine_time(),
            user: m.user,
            context_engine_id: &self.cfg.engine_id,
            context_name: b"",
        };
        // Reports are never encrypted: authenticate only (authNoPriv) when keys are known.
        let auth_only = keys.map(|k| LocalKeys::from_localized(k.auth, k.auth_key(), None));
        self.salt = self.salt.wrapping_add(1);
        let r = v3::encode_v3(
            &mut self.wbuf,
            &mut self.scratch,
            &params,
            auth_only.as_ref(),
            self.salt,
            &PduHeader::new(PduKind::Report, request_id),
            &[(oid.as_ref(), Value::Counter32(self.unknown_engine_reports))],
        );
        if r.is_ok() {
            reply(self.wbuf.as_bytes());
        }
    }
}

/// usmStatsUnknownEngineIDs.0 and usmStatsNotInTimeWindows.0.
const REPORT_UNKNOWN_ENGINE: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0];
const REPORT_NOT_IN_TIME_WINDOW: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0];

/// Receive until `stop`; every trap goes to `output`.
pub fn run(
    sock: UdpSocket,
    mut receiver: TrapReceiver,
    stop: Arc<AtomicBool>,
    mut output: impl FnMut(TrapRow),
) {
    // Short timeout so shutdown is noticed without a wake-up datagram.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let mut reply = |bytes: &[u8]| {
            let _ = sock.send_to(bytes, from);
        };
        if let Some(row) = receiver.handle(&buf[..n], from, &mut reply) {
            output(row);
        }
    }
}

/// An RFC 3411 engine ID for nmsd: enterprise 8072 (net-snmp's, as its tools' IDs are; nmsd has
/// no IANA number), format 5 (octets), 8 random octets.
pub fn new_engine_id() -> Vec<u8> {
    let mut id = vec![0x80, 0x00, 0x1f, 0x88, 0x05];
    let mut x = unix_ms() ^ (std::process::id() as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push(x as u8);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol};

    fn receiver() -> TrapReceiver {
        TrapReceiver::new(Arc::new(TrapConfig {
            communities: vec![TrapCommunity {
                name: "lab".into(),
                community: Zeroizing::new(b"public".to_vec()),
            }],
            users: vec![TrapUser {
                name: b"u_sha_aes".to_vec(),
                keys: Some(Arc::new(
                    UserKeys::new(
                        AuthProtocol::Sha1,
                        b"authpass-sha1",
                        Some((PrivProtocol::Aes128, &b"privpass-aes128"[..])),
                    )
                    .unwrap(),
                )),
            }],
            engine_id: b"\x80\x00\x1f\x88\x05nmsdtest".to_vec(),
            engine_boots: 1,
        }))
    }

    fn v2c(kind: PduKind, community: &[u8]) -> Vec<u8> {
        let up: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
        let trap: Oid = "1.3.6.1.6.3.1.1.4.1.0".parse().unwrap();
        let link_down: Oid = "1.3.6.1.6.3.1.1.5.3".parse().unwrap();
        let mut w = BackWriter::default();
        encode_community_message(
            &mut w,
            Version::V2c,
            community,
            &PduHeader::new(kind, 42),
            &[
                (up.as_ref(), Value::TimeTicks(100)),
                (trap.as_ref(), Value::ObjectId(link_down.as_ref())),
                (up.as_ref(), Value::OctetString(b"eth\"0")),
            ],
        );
        w.as_bytes().to_vec()
    }

    #[test]
    fn v2c_trap_and_inform() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut replies = Vec::new();
        let row = r
            .handle(&v2c(PduKind::TrapV2, b"public"), from, &mut |b| {
                replies.push(b.to_vec())
            })
            .unwrap();
        assert_eq!((row.version, row.pdu), ("v2c", "trap"));
        assert_eq!(row.trap_oid, "1.3.6.1.6.3.1.1.5.3");
        assert_eq!(row.security_name, "lab");
        assert!(row.varbinds.contains("\"eth\\\"0\""), "{}", row.varbinds);
        assert!(replies.is_empty());
        // INFORM: answered each time, stored once.
        let inform = v2c(PduKind::Inform, b"public");
        assert!(
            r.handle(&inform, from, &mut |b| replies.push(b.to_vec()))
                .is_some()
        );
        assert!(
            r.handle(&inform, from, &mut |b| replies.push(b.to_vec()))
                .is_none()
        );
        assert_eq!(replies.len(), 2);
        let ans = Message::decode(&replies[0]).unwrap();
        let AnyPdu::Standard(p) = ans.pdu else {
            panic!()
        };
        assert_eq!((p.kind, p.request_id), (PduKind::Response, 42));
        // Wrong community: dropped, no answer.
        assert!(
            r.handle(&v2c(PduKind::Inform, b"nope"), from, &mut |b| replies
                .push(b.to_vec()))
                .is_none()
        );
        assert_eq!(replies.len(), 2);
    }

    #[test]
    fn v3_discovery_then_inform() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut w = BackWriter::default();
        v3::encode_discovery(&mut w, 7, 8);
        assert!(
            r.handle(w.as_bytes(), from, &mut |b| replies.push(b.to_vec()))
                .is_none()
        );
        let rep = V3Message::decode(&replies[0]).unwrap();
        assert_eq!(rep.engine_id, b"\x80\x00\x1f\x88\x05nmsdtest");
        assert_eq!(rep.msg_id, 7);
        // The sender now encrypts an INFORM for our engine.
        let keys = UserKeys::new(
            AuthProtocol::Sha1,
            b"authpass-sha1",
            Some((PrivProtocol::Aes128, &b"privpass-aes128"[..])),
        )
        .unwrap()
        .localize(rep.engine_id);
        let up: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
        let trap: Oid = "1.3.6.1.6.3.1.1.4.1.0".parse().unwrap();
        let cold: Oid = "1.3.6.1.6.3.1.1.5.1".parse().unwrap();
        let p = V3Params {
            msg_id: 9,
            reportable: true,
            engine_id: rep.engine_id,
            engine_boots: rep.engine_boots,
            engine_time: rep.engine_time,
            user: b"u_sha_aes",
            context_engine_id: rep.engine_id,
            context_name: b"",
        };
        let mut w = BackWriter::default();
        let mut scratch = Vec::new();
        v3::encode_v3(
            &mut w,
            &mut scratch,
            &p,
            Some(&keys),
            1,
            &PduHeader::new(PduKind::Inform, 99),
            &[
                (up.as_ref(), Value::TimeTicks(5)),
                (trap.as_ref(), Value::ObjectId(cold.as_ref())),
            ],
        )
        .unwrap();
        let row = r
            .handle(w.as_bytes(), from, &mut |b| replies.push(b.to_vec()))
            .unwrap();
        assert_eq!((row.version, row.pdu), ("v3", "inform"));
        assert_eq!(row.trap_oid, "1.3.6.1.6.3.1.1.5.1");
        assert_eq!(row.security_name, "u_sha_aes");
        let ans = V3Message::decode(&replies[1]).unwrap();
        assert!(keys.verify(&replies[1], ans.auth_offset));
        assert_eq!(ans.msg_id, 9);
    }
}
