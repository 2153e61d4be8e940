//! The trap receiver: SNMPv1 traps, v2c TRAP/INFORM, v3 TRAP/INFORM (docs/snmp-design.md §9).
//!
//! A plain thread per listen address ([`socket::run`]), so a trap storm never delays polling and
//! polling never delays an INFORM answer; rows reach the sink queue in batches.
//!
//! v3 messages are held to their user's profile: the message's security level must be the
//! profile's (a noAuthNoPriv or authNoPriv message naming an authPriv user is dropped, however
//! plausible its contents), the MAC must verify, and an authenticated message must be timely
//! and not a replay ([`freshness`]). For v3 TRAP the sender is the authoritative engine: its
//! user's keys are localized lazily per sender engine ID from the profile's password-derived
//! keys, so senders need no per-engine configuration. For v3 INFORM nmsd is authoritative: it
//! answers discovery probes with its own engine ID, boots and time, checks the time window, and
//! answers at the request's security level. INFORMs that cannot be accepted get the RFC 3414
//! Report their sender understands (unknown user, unsupported security level, wrong digest,
//! not in time window) instead of silence.
//!
//! Every drop is counted in `nmsd_snmp_traps_dropped_total{reason}` and summarized in the log
//! at most every 10 s.

pub mod freshness;
pub mod socket;

pub use socket::{Batching, TrapSocket, run};

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshness::{Authority, BOOTS_MAX, Freshness, TIME_WINDOW, Verdict};
use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::hex;
use nmsd_parsers::snmp::pdu::{self, AnyPdu, Message, Pdu, PduHeader, encode_community_message};
use nmsd_parsers::snmp::usm::{LocalKeys, UserKeys};
use nmsd_parsers::snmp::v3::{self, ScopedData, SecurityLevel, V3Message, V3Params};
use nmsd_parsers::snmp::{Oid, OidRef, PduKind, Value, Version};
use nmsd_pipeline::clock::unix_ms;
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

impl TrapUser {
    /// The security level its profile requires of every message: the level its keys serve.
    pub fn level(&self) -> SecurityLevel {
        self.keys
            .as_ref()
            .map_or(SecurityLevel::NoAuthNoPriv, |k| k.security_level())
    }
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
const INFORM_DEDUP_MAX: usize = 10_000;
/// Drop summaries in the log, at most one per this period per listen address.
const LOG_EVERY: Duration = Duration::from_secs(10);

const SNMP_TRAP_OID: &[u8] = &[0x2B, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const SYS_UPTIME_0: &[u8] = &[0x2B, 6, 1, 2, 1, 1, 3, 0];

/// The RFC 3414 Reports nmsd sends as the authoritative engine (usmStats N.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    UnsupportedSecLevel = 1,
    NotInTimeWindow = 2,
    UnknownUserName = 3,
    UnknownEngineId = 4,
    WrongDigest = 5,
}

impl Report {
    fn oid(self) -> Option<Oid> {
        Oid::from_arcs(&[1, 3, 6, 1, 6, 3, 15, 1, 1, self as u32, 0]).ok()
    }
}

/// Drops by reason since the last log line; a line at most every [`LOG_EVERY`].
#[derive(Default)]
struct DropLog {
    listen: Option<SocketAddr>,
    last: Option<Instant>,
    counts: Vec<(&'static str, u64)>,
    /// The first drop of the period, described.
    first: Option<String>,
}

impl DropLog {
    fn note(&mut self, reason: &'static str, n: u64, detail: impl FnOnce() -> String) {
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some(c) => c.1 += n,
            None => self.counts.push((reason, n)),
        }
        if self.first.is_none() {
            self.first = Some(detail());
        }
        self.flush(Instant::now());
    }

    fn flush(&mut self, now: Instant) {
        if self.counts.is_empty() || self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return;
        }
        let mut summary = String::new();
        for (i, (r, n)) in self.counts.iter().enumerate() {
            let _ = write!(summary, "{}{r}={n}", if i > 0 { ", " } else { "" });
        }
        let listen = self.listen.map_or_else(String::new, |a| a.to_string());
        tracing::warn!(
            listen,
            dropped = %summary,
            first = self.first.as_deref().unwrap_or(""),
            "SNMP traps dropped"
        );
        self.counts.clear();
        self.first = None;
        self.last = Some(now);
    }
}

/// Handles datagrams; owns per-receiver state (key cache, timeliness, inform dedup).
pub struct TrapReceiver {
    cfg: Arc<TrapConfig>,
    started: Instant,
    /// Localized keys by (keyed hash of the engine ID, user index).
    keys: FxHashMap<(u64, usize), Arc<LocalKeys>>,
    fresh: Freshness,
    informs: VecDeque<((SocketAddr, i32), Instant)>,
    /// Keyed by what senders choose: std's keyed hasher, not Fx.
    inform_set: HashSet<(SocketAddr, i32)>,
    /// usmStats counters of the Reports sent, by `Report as usize`.
    reports: [u32; 6],
    wbuf: BackWriter,
    scratch: Vec<u8>,
    salt: u64,
    received: [metrics::Counter; 3],
    log: DropLog,
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

/// HELP texts of the trap receiver's metrics (the recorder is installed before receivers start).
pub fn describe_metrics() {
    use metrics::{describe_counter as c, describe_gauge as g};
    c!(
        "nmsd_snmp_traps_received_total",
        "Traps and informs accepted, by SNMP version."
    );
    c!(
        "nmsd_snmp_traps_dropped_total",
        "Traps and informs not stored, by reason (community, unknown_user, security_level, \
         authentication, not_in_time_window, replay, decryption, decode, queue, oversize...)."
    );
    c!(
        "nmsd_snmp_informs_answered_total",
        "INFORMs answered with a Response (retransmissions included)."
    );
    c!(
        "nmsd_snmp_trap_reports_sent_total",
        "SNMPv3 Reports sent to INFORM senders, by usmStats kind."
    );
    c!(
        "nmsd_snmp_trap_socket_kernel_drops_total",
        "Trap datagrams the kernel dropped because the socket's receive buffer was full."
    );
    g!(
        "nmsd_snmp_trap_socket_receive_buffer_bytes",
        "SO_RCVBUF of the trap socket as the kernel reports it (twice the usable size)."
    );
    c!(
        "nmsd_snmp_trap_receive_errors_total",
        "Failed reads on the trap socket."
    );
    c!(
        "nmsd_snmp_trap_batches_total",
        "Batches of trap rows handed to the sink queue."
    );
}

/// A source address as stored: IPv4-mapped IPv6 (a dual-stack socket) as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn user_name(u: &[u8]) -> String {
    String::from_utf8_lossy(u).into_owned()
}

/// The request-id of an unencrypted v3 message, for Reports (0 when it cannot be read).
fn plain_request_id(m: &V3Message<'_>) -> i32 {
    if let ScopedData::Plain(sp) = m.data
        && let Ok(s) = v3::decode_scoped(sp)
        && let AnyPdu::Standard(p) = s.pdu
    {
        p.request_id
    } else {
        0
    }
}

impl TrapReceiver {
    pub fn new(cfg: Arc<TrapConfig>) -> Self {
        let v = |ver: &'static str| metrics::counter!("nmsd_snmp_traps_received_total", "version" => ver);
        TrapReceiver {
            cfg,
            started: Instant::now(),
            keys: FxHashMap::default(),
            fresh: Freshness::default(),
            informs: VecDeque::new(),
            inform_set: HashSet::new(),
            reports: [0; 6],
            wbuf: BackWriter::with_capacity(1500),
            scratch: Vec::new(),
            salt: unix_ms() ^ 0x5DEECE66D,
            received: [v("v1"), v("v2c"), v("v3")],
            log: DropLog::default(),
        }
    }

    fn engine_time(&self) -> u32 {
        self.started.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    /// Count a dropped message and note it for the log.
    fn reject(&mut self, reason: &'static str, detail: impl FnOnce() -> String) {
        metrics::counter!("nmsd_snmp_traps_dropped_total", "reason" => reason).increment(1);
        self.log.note(reason, 1, detail);
    }

    /// Traps lost outside the receiver (kernel buffer, sink queue), for the log; the caller
    /// counts them in their own metric.
    pub(crate) fn note_lost(
        &mut self,
        reason: &'static str,
        n: u64,
        detail: impl FnOnce() -> String,
    ) {
        self.log.note(reason, n, detail);
    }

    /// Log what was dropped since the last line, if that was long enough ago.
    pub(crate) fn tick(&mut self) {
        self.log.flush(Instant::now());
    }

    pub(crate) fn set_listen(&mut self, addr: SocketAddr) {
        self.log.listen = Some(addr);
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
                self.reject("decode", || format!("undecodable datagram from {from}"));
                None
            }
        }
    }

    fn inform_seen(&mut self, from: SocketAddr, id: i32) -> bool {
        let now = Instant::now();
        while let Some((k, t)) = self.informs.front()
            && (now.duration_since(*t) > INFORM_DEDUP || self.informs.len() > INFORM_DEDUP_MAX)
        {
            self.inform_set.remove(k);
            self.informs.pop_front();
        }
        let key = (from, id);
        if self.inform_set.contains(&key) {
            return true;
        }
        self.inform_set.insert(key);
        self.informs.push_back((key, now));
        false
    }

    fn handle_community(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Option<TrapRow> {
        let Ok(m) = Message::decode(data) else {
            self.reject("decode", || {
                format!("undecodable v1/v2c message from {from}")
            });
            return None;
        };
        let Some(entry) = self
            .cfg
            .communities
            .iter()
            .find(|c| c.community.as_slice() == m.community)
        else {
            self.reject("community", || format!("unknown community from {from}"));
            return None;
        };
        let name = entry.name.clone();
        let mut row = TrapRow {
            ts_ms: unix_ms(),
            source: Some(canonical(from)),
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
            AnyPdu::Standard(p) => {
                let kind = p.kind;
                self.reject("not_a_notification", || {
                    format!("{kind:?} PDU from {from} (not a trap or inform)")
                });
                None
            }
        }
    }

    /// Keys of user `ui` localized to `engine` (None for a noAuthNoPriv user).
    fn local_keys(&mut self, ui: usize, engine: &[u8]) -> Option<Arc<LocalKeys>> {
        let uk = self.cfg.users[ui].keys.clone()?;
        let key = (self.fresh.engine_key(engine), ui);
        if let Some(k) = self.keys.get(&key) {
            return Some(k.clone());
        }
        if self.keys.len() >= KEY_CACHE_MAX {
            // Bounded: a flood of made-up engine IDs must not grow memory.
            self.keys.clear();
        }
        let k = Arc::new(uk.localize(engine));
        self.keys.insert(key, k.clone());
        Some(k)
    }

    fn handle_v3(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Option<TrapRow> {
        let Ok(m) = V3Message::decode(data) else {
            self.reject("decode", || format!("undecodable v3 message from {from}"));
            return None;
        };
        // Discovery probe (INFORM senders): answer with our engine ID, boots and time.
        if m.engine_id.is_empty() && !m.is_authenticated() {
            if let ScopedData::Plain(sp) = m.data
                && let Ok(s) = v3::decode_scoped(sp)
                && let AnyPdu::Standard(p) = s.pdu
            {
                self.report(&m, p.request_id, Report::UnknownEngineId, None, reply);
            }
            return None;
        }
        let ours = m.engine_id == self.cfg.engine_id.as_slice();
        // Reports go only to senders that asked for one about a message for us (an INFORM; a
        // TRAP's sender is authoritative and expects nothing back). RFC 3414 §3.2: unknown
        // user, unsupported level and wrong digest are reported unauthenticated.
        let may_report = ours && m.is_reportable();
        let Some(ui) = self.cfg.users.iter().position(|u| u.name == m.user) else {
            if may_report {
                self.report(
                    &m,
                    plain_request_id(&m),
                    Report::UnknownUserName,
                    None,
                    reply,
                );
            }
            self.reject("unknown_user", || {
                format!("unknown v3 user {:?} from {from}", user_name(m.user))
            });
            return None;
        };
        // RFC 3414 §3.2 step 5 with the profile as the policy: a message naming a user must
        // carry that user's level. Lower would let anyone who knows the user name store
        // notifications under it; higher cannot be verified or decrypted with its keys.
        let need = self.cfg.users[ui].level();
        let got = m.security_level();
        if got != need {
            if may_report {
                self.report(
                    &m,
                    plain_request_id(&m),
                    Report::UnsupportedSecLevel,
                    None,
                    reply,
                );
            }
            self.reject("security_level", || {
                format!(
                    "v3 user {:?} from {from} sent {}; its profile requires {}",
                    user_name(m.user),
                    got.name(),
                    need.name()
                )
            });
            return None;
        }
        // Keys at the user's level, which is the message's: replies use them as they are.
        let keys = self.local_keys(ui, m.engine_id);
        let mut replay = false;
        if let Some(k) = &keys {
            if m.auth_params.len() != k.auth.mac_len() || !k.verify(data, m.auth_offset) {
                if may_report {
                    self.report(&m, 0, Report::WrongDigest, None, reply);
                }
                self.reject("authentication", || {
                    format!(
                        "wrong digest for v3 user {:?} from {from}",
                        user_name(m.user)
                    )
                });
                return None;
            }
            // Timeliness (RFC 3414 §3.2.7), for authenticated messages only.
            let authority = if ours {
                // We are authoritative for INFORMs: the sender must be in our time window.
                let now = self.engine_time();
                let drift = m.engine_time.abs_diff(now);
                if m.engine_boots != self.cfg.engine_boots
                    || m.engine_boots >= BOOTS_MAX
                    || drift > TIME_WINDOW
                {
                    self.report(&m, 0, Report::NotInTimeWindow, Some(k), reply);
                    let boots = self.cfg.engine_boots;
                    self.reject("not_in_time_window", || {
                        format!(
                            "v3 INFORM from {from} at boots {} time {}; ours are {boots} and {now}",
                            m.engine_boots, m.engine_time
                        )
                    });
                    return None;
                }
                Authority::Local { now }
            } else {
                Authority::Remote
            };
            let engine = self.fresh.engine_key(m.engine_id);
            match self.fresh.admit(
                engine,
                m.engine_boots,
                m.engine_time,
                m.auth_params,
                authority,
            ) {
                Verdict::Fresh => {}
                Verdict::Replay => replay = true,
                Verdict::Late => {
                    if may_report {
                        self.report(&m, 0, Report::NotInTimeWindow, Some(k), reply);
                    }
                    self.reject("not_in_time_window", || {
                        format!(
                            "v3 message from {from} (engine {}) at boots {} time {}: \
                             older than what this engine sent before",
                            hex(m.engine_id),
                            m.engine_boots,
                            m.engine_time
                        )
                    });
                    return None;
                }
            }
        }
        let plain: Vec<u8>;
        let scoped = match m.data {
            ScopedData::Plain(sp) => v3::decode_scoped(sp),
            ScopedData::Encrypted(ct) => {
                let Some(k) = &keys else {
                    // Unreachable: encrypted means authPriv, which has keys.
                    self.reject("security_level", || {
                        format!("encrypted message from {from}")
                    });
                    return None;
                };
                let mut buf = ct.to_vec();
                if k.decrypt(&mut buf, m.engine_boots, m.engine_time, m.priv_params)
                    .is_err()
                {
                    self.reject("decryption", || {
                        format!(
                            "cannot decrypt a message of {:?} from {from}",
                            user_name(m.user)
                        )
                    });
                    return None;
                }
                plain = buf;
                v3::decode_decrypted(&plain)
            }
        };
        let Ok(scoped) = scoped else {
            self.reject("decode", || format!("undecodable ScopedPDU from {from}"));
            return None;
        };
        let AnyPdu::Standard(p) = scoped.pdu else {
            self.reject("not_a_notification", || {
                format!("v1 Trap-PDU inside v3 from {from}")
            });
            return None;
        };
        if !matches!(p.kind, PduKind::TrapV2 | PduKind::Inform) {
            let kind = p.kind;
            self.reject("not_a_notification", || {
                format!("{kind:?} PDU from {from} (not a trap or inform)")
            });
            return None;
        }
        if replay && p.kind != PduKind::Inform {
            self.reject("replay", || {
                format!(
                    "replayed v3 TRAP of {:?} from {from} (engine {})",
                    user_name(m.user),
                    hex(m.engine_id)
                )
            });
            return None;
        }
        let (uptime, oid) = v2_header(&p);
        let mut row = TrapRow {
            ts_ms: unix_ms(),
            source: Some(canonical(from)),
            version: "v3",
            pdu: "trap",
            trap_oid: oid,
            uptime_ticks: uptime,
            security_name: user_name(m.user),
            engine_id: Some(hex(m.engine_id)),
            request_id: Some(p.request_id),
            varbinds: varbinds_json(p.varbinds()),
            ..TrapRow::default()
        };
        if p.kind == PduKind::Inform {
            row.pdu = "inform";
            if !ours {
                // An INFORM must name us as authoritative; answering would be meaningless.
                self.reject("unknown_engine_id", || {
                    format!(
                        "v3 INFORM from {from} names engine {}, not ours",
                        hex(m.engine_id)
                    )
                });
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
            // At the request's level (RFC 3412 §7.1.3): `keys` are the user's, whose level
            // the message was held to above.
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
            if replay {
                // Answered (the sender may have missed the first answer), stored once.
                self.reject("replay", || {
                    format!("repeated v3 INFORM of {:?} from {from}", user_name(m.user))
                });
                return None;
            }
            if self.inform_seen(from, p.request_id) {
                return None;
            }
        }
        self.received[2].increment(1);
        Some(row)
    }

    /// Send a Report: unauthenticated, or authenticated (never encrypted) with `keys` for
    /// time-window problems, as RFC 3414 §3.2 and net-snmp expect.
    fn report(
        &mut self,
        m: &V3Message<'_>,
        request_id: i32,
        which: Report,
        keys: Option<&LocalKeys>,
        reply: &mut dyn FnMut(&[u8]),
    ) {
        let n = &mut self.reports[which as usize];
        *n = n.wrapping_add(1);
        let count = *n;
        let Some(oid) = which.oid() else {
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
        let auth_only = keys.map(|k| LocalKeys::from_localized(k.auth, k.auth_key(), None));
        self.salt = self.salt.wrapping_add(1);
        let r = v3::encode_v3(
            &mut self.wbuf,
            &mut self.scratch,
            &params,
            auth_only.as_ref(),
            self.salt,
            &PduHeader::new(PduKind::Report, request_id),
            &[(oid.as_ref(), Value::Counter32(count))],
        );
        if r.is_ok() {
            reply(self.wbuf.as_bytes());
            let label = match which {
                Report::UnsupportedSecLevel => "unsupported_sec_level",
                Report::NotInTimeWindow => "not_in_time_window",
                Report::UnknownUserName => "unknown_user",
                Report::UnknownEngineId => "unknown_engine_id",
                Report::WrongDigest => "wrong_digest",
            };
            metrics::counter!("nmsd_snmp_trap_reports_sent_total", "report" => label).increment(1);
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
    use std::net::UdpSocket;

    fn receiver() -> TrapReceiver {
        TrapReceiver::new(Arc::new(TrapConfig {
            communities: vec![TrapCommunity {
                name: "lab".into(),
                community: Zeroizing::new(b"public".to_vec()),
            }],
            users: vec![
                TrapUser {
                    name: b"u_sha_aes".to_vec(),
                    keys: Some(Arc::new(sha_aes())),
                },
                TrapUser {
                    name: b"u_open".to_vec(),
                    keys: None,
                },
            ],
            engine_id: b"\x80\x00\x1f\x88\x05nmsdtest".to_vec(),
            engine_boots: 1,
        }))
    }

    fn sha_aes() -> UserKeys {
        UserKeys::new(
            AuthProtocol::Sha1,
            b"authpass-sha1",
            Some((PrivProtocol::Aes128, &b"privpass-aes128"[..])),
        )
        .unwrap()
    }

    const OURS: &[u8] = b"\x80\x00\x1f\x88\x05nmsdtest";
    const SENDER: &[u8] = b"\x80\x00\x1f\x88\x80sender";

    /// A v3 notification of `user` at `engine` (boots, time), secured with `keys` (None:
    /// noAuthNoPriv; auth-only keys: authNoPriv).
    fn v3(
        kind: PduKind,
        user: &[u8],
        engine: &[u8],
        boots_time: (u32, u32),
        keys: Option<&LocalKeys>,
    ) -> Vec<u8> {
        let up: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
        let trap: Oid = "1.3.6.1.6.3.1.1.4.1.0".parse().unwrap();
        let warm: Oid = "1.3.6.1.6.3.1.1.5.2".parse().unwrap();
        let p = V3Params {
            msg_id: 3,
            reportable: kind == PduKind::Inform,
            engine_id: engine,
            engine_boots: boots_time.0,
            engine_time: boots_time.1,
            user,
            context_engine_id: engine,
            context_name: b"",
        };
        let mut w = BackWriter::default();
        v3::encode_v3(
            &mut w,
            &mut Vec::new(),
            &p,
            keys,
            7,
            &PduHeader::new(kind, 11),
            &[
                (up.as_ref(), Value::TimeTicks(5)),
                (trap.as_ref(), Value::ObjectId(warm.as_ref())),
            ],
        )
        .unwrap();
        w.as_bytes().to_vec()
    }

    /// The usmStats counter a Report carries (plain Reports only).
    fn report_kind(reply: &[u8]) -> v3::ReportKind {
        let m = V3Message::decode(reply).unwrap();
        assert!(!m.is_authenticated(), "an unauthenticated Report");
        let ScopedData::Plain(sp) = m.data else {
            panic!("plain")
        };
        let AnyPdu::Standard(p) = v3::decode_scoped(sp).unwrap().pdu else {
            panic!("standard")
        };
        assert_eq!(p.kind, PduKind::Report);
        v3::classify_report(&p)
    }

    #[test]
    fn v3_below_the_profiles_level_is_dropped() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5002".parse().unwrap();
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let full = sha_aes().localize(SENDER);
        let auth_only = LocalKeys::from_localized(full.auth, full.auth_key(), None);
        // noAuthNoPriv and authNoPriv TRAPs naming the authPriv user: no row, no answer.
        for keys in [None, Some(&auth_only)] {
            let t = v3(PduKind::TrapV2, b"u_sha_aes", SENDER, (1, 10), keys);
            assert!(
                r.handle(&t, from, &mut |b| replies.push(b.to_vec()))
                    .is_none()
            );
        }
        assert!(replies.is_empty());
        // The same as INFORMs to us: an unsupportedSecLevel Report each.
        let ours = sha_aes().localize(OURS);
        let ours_auth = LocalKeys::from_localized(ours.auth, ours.auth_key(), None);
        for keys in [None, Some(&ours_auth)] {
            let i = v3(PduKind::Inform, b"u_sha_aes", OURS, (1, 0), keys);
            assert!(
                r.handle(&i, from, &mut |b| replies.push(b.to_vec()))
                    .is_none()
            );
        }
        assert_eq!(replies.len(), 2);
        for rep in &replies {
            assert_eq!(report_kind(rep), v3::ReportKind::UnsupportedSecLevel);
        }
        // An unknown user's INFORM: unknownUserName.
        let i = v3(PduKind::Inform, b"nobody", OURS, (1, 0), None);
        assert!(
            r.handle(&i, from, &mut |b| replies.push(b.to_vec()))
                .is_none()
        );
        assert_eq!(report_kind(&replies[2]), v3::ReportKind::UnknownUserName);
        // At the user's own level it is stored.
        let t = v3(PduKind::TrapV2, b"u_sha_aes", SENDER, (1, 10), Some(&full));
        let row = r.handle(&t, from, &mut |_| {}).unwrap();
        assert_eq!((row.pdu, row.security_name.as_str()), ("trap", "u_sha_aes"));
    }

    #[test]
    fn a_noauth_inform_is_answered_at_its_own_level() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5003".parse().unwrap();
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let i = v3(PduKind::Inform, b"u_open", OURS, (1, 0), None);
        let row = r
            .handle(&i, from, &mut |b| replies.push(b.to_vec()))
            .unwrap();
        assert_eq!((row.pdu, row.security_name.as_str()), ("inform", "u_open"));
        let m = V3Message::decode(&replies[0]).unwrap();
        assert_eq!(m.security_level(), SecurityLevel::NoAuthNoPriv);
        let ScopedData::Plain(sp) = m.data else {
            panic!("a plain Response")
        };
        let AnyPdu::Standard(p) = v3::decode_scoped(sp).unwrap().pdu else {
            panic!("standard")
        };
        assert_eq!((p.kind, p.request_id), (PduKind::Response, 11));
    }

    #[test]
    fn replayed_and_stale_v3_traps_are_dropped() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5004".parse().unwrap();
        let keys = sha_aes().localize(SENDER);
        let t = v3(
            PduKind::TrapV2,
            b"u_sha_aes",
            SENDER,
            (3, 1000),
            Some(&keys),
        );
        assert!(r.handle(&t, from, &mut |_| {}).is_some());
        for _ in 0..10 {
            assert!(r.handle(&t, from, &mut |_| {}).is_none(), "a replay");
        }
        let old = v3(PduKind::TrapV2, b"u_sha_aes", SENDER, (3, 849), Some(&keys));
        assert!(r.handle(&old, from, &mut |_| {}).is_none(), "151 s older");
        let reboot = v3(
            PduKind::TrapV2,
            b"u_sha_aes",
            SENDER,
            (2, 5000),
            Some(&keys),
        );
        assert!(
            r.handle(&reboot, from, &mut |_| {}).is_none(),
            "older boots"
        );
        let newer = v3(
            PduKind::TrapV2,
            b"u_sha_aes",
            SENDER,
            (3, 1001),
            Some(&keys),
        );
        assert!(r.handle(&newer, from, &mut |_| {}).is_some());
    }

    #[test]
    fn a_repeated_v3_inform_is_answered_again_but_stored_once() {
        let mut r = receiver();
        let from: SocketAddr = "127.0.0.1:5005".parse().unwrap();
        let keys = sha_aes().localize(OURS);
        let i = v3(PduKind::Inform, b"u_sha_aes", OURS, (1, 0), Some(&keys));
        let mut replies = 0;
        assert!(r.handle(&i, from, &mut |_| replies += 1).is_some());
        let other: SocketAddr = "127.0.0.1:5006".parse().unwrap();
        assert!(r.handle(&i, other, &mut |_| replies += 1).is_none());
        assert_eq!(replies, 2);
        // Out of our window: an authenticated notInTimeWindow Report, no row.
        let late = v3(PduKind::Inform, b"u_sha_aes", OURS, (0, 0), Some(&keys));
        let mut rep = Vec::new();
        assert!(r.handle(&late, from, &mut |b| rep = b.to_vec()).is_none());
        let m = V3Message::decode(&rep).unwrap();
        assert!(keys.verify(&rep, m.auth_offset));
    }

    #[test]
    fn batches_reach_the_output_by_count_and_by_age() {
        let sock = TrapSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(sock.receive_buffer() > 0);
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            let batching = Batching {
                max_rows: 50,
                max_delay: Duration::from_millis(300),
            };
            run(sock, receiver(), s2, batching, |rows| {
                tx.send(rows.len()).unwrap();
                true
            })
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let trap = v2c(PduKind::TrapV2, b"public");
        for _ in 0..120 {
            client.send_to(&trap, addr).unwrap();
        }
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 120 {
            sizes.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap();
        assert_eq!(
            sizes,
            [50, 50, 20],
            "two full batches, the rest after max_delay"
        );
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
