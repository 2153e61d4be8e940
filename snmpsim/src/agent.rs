//! The request handler: one datagram in, at most one datagram out, as net-snmp would answer.
//!
//! No I/O and no clock here (the caller passes the time since start), so it is unit-testable
//! and fuzzable. Responses are written straight into one reused back-writer: varbinds are
//! chosen first as small `Pick`s (indices into the layout or into the request), then encoded
//! last to first, then framed (community, or v3 with encryption and HMAC).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use nmsd_parsers::snmp::ber::{self, BackWriter};
use nmsd_parsers::snmp::pdu::{
    AnyPdu, Message, PduHeader, PduKind, Version, encode_pdu, error_status, peek_version,
};
use nmsd_parsers::snmp::usm::{LocalKeys, UserKeys};
use nmsd_parsers::snmp::v3::{
    self, FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE, ScopedData, V3Message, V3Params,
};
use nmsd_parsers::snmp::{OidRef, Pdu, SnmpError};

use super::config::{Behaviour, SecLevel, SimConfig};
use super::data::{Clock, DevView, Layout};

/// noAccess: what snmpd answers a SET with a read-only community or user.
const NO_ACCESS: i64 = 6;
/// RFC 3412: msgMaxSize is at least 484.
const MIN_MAX_SIZE: i64 = 484;
/// RFC 3414 § 3.2.7: the time window.
const TIME_WINDOW: u32 = 150;

/// Counters of what the simulator did, readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    /// Varbinds in responses (reports excluded).
    pub varbinds: AtomicU64,
    pub reports: AtomicU64,
    pub too_big: AtomicU64,
    pub delayed: AtomicU64,
    pub dropped_dead: AtomicU64,
    pub dropped_flaky: AtomicU64,
    pub dropped_community: AtomicU64,
    pub dropped_decode: AtomicU64,
    pub dropped_undecryptable: AtomicU64,
    pub dropped_other: AtomicU64,
    pub unknown_destination: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub responses: u64,
    pub varbinds: u64,
    pub reports: u64,
    pub too_big: u64,
    pub delayed: u64,
    pub dropped_dead: u64,
    pub dropped_flaky: u64,
    pub dropped_community: u64,
    pub dropped_decode: u64,
    pub dropped_undecryptable: u64,
    pub dropped_other: u64,
    pub unknown_destination: u64,
    pub send_errors: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: g(&self.requests),
            responses: g(&self.responses),
            varbinds: g(&self.varbinds),
            reports: g(&self.reports),
            too_big: g(&self.too_big),
            delayed: g(&self.delayed),
            dropped_dead: g(&self.dropped_dead),
            dropped_flaky: g(&self.dropped_flaky),
            dropped_community: g(&self.dropped_community),
            dropped_decode: g(&self.dropped_decode),
            dropped_undecryptable: g(&self.dropped_undecryptable),
            dropped_other: g(&self.dropped_other),
            unknown_destination: g(&self.unknown_destination),
            send_errors: g(&self.send_errors),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Run-time switches of one device, shared with the [`super::SimHandle`].
#[derive(Debug)]
pub(crate) struct DeviceShared {
    pub dead: AtomicBool,
    /// Ring neighbour slots present (bit 0: local port 1, bit 1: local port 2) and whether the
    /// device serves CDP (bit 2, [`super::data::NEIGHBOURS_CDP`]).
    pub neighbours: AtomicU8,
}

impl Default for DeviceShared {
    fn default() -> Self {
        DeviceShared {
            dead: AtomicBool::new(false),
            neighbours: AtomicU8::new(0b11),
        }
    }
}

impl DeviceShared {
    /// Both ring neighbours, and CDP if the simulator serves it.
    pub(crate) fn new(cdp: bool) -> Self {
        let s = DeviceShared::default();
        if cdp {
            s.neighbours
                .fetch_or(super::data::NEIGHBOURS_CDP, Ordering::Relaxed);
        }
        s
    }
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Drop,
    /// Send [`Agent::reply`] now.
    Reply,
    /// Send [`Agent::reply`] after this delay.
    ReplyAfter(Duration),
}

/// usmStats reports (1.3.6.1.6.3.15.1.1.N.0) and two others a command responder sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReportStat {
    UnsupportedSecLevel = 1,
    NotInTimeWindow = 2,
    UnknownUserName = 3,
    UnknownEngineId = 4,
    WrongDigest = 5,
    /// snmpUnknownPDUHandlers.0 (1.3.6.1.6.3.11.2.1.3.0): unknown contextEngineID.
    UnknownPduHandler = 6,
    /// snmpUnknownContexts.0 (1.3.6.1.6.3.12.1.5.0): a context name we do not serve.
    UnknownContext = 7,
}

impl ReportStat {
    fn oid(self) -> &'static [u8] {
        match self {
            ReportStat::UnknownPduHandler => &[0x2B, 6, 1, 6, 3, 11, 2, 1, 3, 0],
            ReportStat::UnknownContext => &[0x2B, 6, 1, 6, 3, 12, 1, 5, 0],
            ReportStat::UnsupportedSecLevel => &[0x2B, 6, 1, 6, 3, 15, 1, 1, 1, 0],
            ReportStat::NotInTimeWindow => &[0x2B, 6, 1, 6, 3, 15, 1, 1, 2, 0],
            ReportStat::UnknownUserName => &[0x2B, 6, 1, 6, 3, 15, 1, 1, 3, 0],
            ReportStat::UnknownEngineId => &[0x2B, 6, 1, 6, 3, 15, 1, 1, 4, 0],
            ReportStat::WrongDigest => &[0x2B, 6, 1, 6, 3, 15, 1, 1, 5, 0],
        }
    }
}

/// A response varbind's name: a layout entry's OID or one from the request (by offset into the
/// buffer the request's varbinds live in).
#[derive(Clone, Copy, Debug)]
enum Name {
    Entry(u32),
    Req { off: u32, len: u32 },
}

#[derive(Clone, Copy, Debug)]
enum Val {
    Entry(u32),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

#[derive(Clone, Copy, Debug)]
struct Pick {
    name: Name,
    val: Val,
}

/// A GETBULK column being walked.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// Name of the last varbind (for endOfMibView, which repeats it).
    name: Name,
    next: Option<usize>,
}

/// How a GETBULK response may be cut: `n` non-repeaters, then rows of `r`.
#[derive(Clone, Copy, Debug)]
struct BulkShape {
    n: usize,
    r: usize,
}

enum Outcome {
    Drop,
    /// Varbinds chosen in `Bufs::picks`.
    Picks {
        status: i64,
        index: i64,
        bulk: Option<BulkShape>,
    },
    /// Error response echoing the request's varbinds.
    Echo {
        status: i64,
        index: i64,
    },
}

/// How to wrap a PDU into a message.
enum Frame<'a> {
    Community {
        version: Version,
        community: &'a [u8],
    },
    V3 {
        params: V3Params<'a>,
        keys: Option<&'a LocalKeys>,
        salt: u64,
    },
}

/// Reused buffers.
#[derive(Default)]
struct Bufs {
    w: BackWriter,
    scratch: Vec<u8>,
    picks: Vec<Pick>,
    cursors: Vec<Cursor>,
    /// While encoding picks last to first: bytes of picks `len-1-j ..` after step `j`.
    sizes: Vec<u32>,
}

struct User {
    name: Vec<u8>,
    has_priv: bool,
    min_level: SecLevel,
}

/// A user's keys at one device's engine: full (auth + privacy) and auth only (for
/// authNoPriv answers and notInTimeWindow reports, which are authenticated but not encrypted).
struct DevKeys {
    full: LocalKeys,
    auth_only: LocalKeys,
}

struct Device {
    behaviour: Behaviour,
    community: Vec<u8>,
    engine_id: Vec<u8>,
    keys: Vec<DevKeys>,
}

/// What does not change while serving.
struct Core {
    layout: Layout,
    devices: Vec<Device>,
    users: Vec<User>,
    prefix: String,
    /// Each device's IPv4 address (CDP neighbours' cdpCacheAddress).
    ips: Vec<[u8; 4]>,
    max_message_size: usize,
    max_bulk: usize,
    shared: Arc<[DeviceShared]>,
    stats: Arc<Stats>,
}

pub(crate) struct Agent {
    core: Core,
    bufs: Bufs,
    /// Decrypted ScopedPDU of the current request.
    plain: Vec<u8>,
    /// Requests per device so far (slow devices delay every other one).
    requests: Vec<u64>,
    rng: u64,
    salt: u64,
    report_counts: [u32; 8],
}

/// SplitMix64: spreads a seed into well-mixed bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Device `dev`'s engine ID: net-snmp's enterprise and "random" format (`80001f8880…`,
/// 17 bytes like snmpd's), 8 bytes from the seed and the device index.
pub(crate) fn engine_id(seed: u64, dev: usize) -> Vec<u8> {
    let mut id = vec![0x80, 0x00, 0x1F, 0x88, 0x80];
    id.extend_from_slice(&mix(seed).to_be_bytes());
    id.extend_from_slice(&(dev as u32).to_be_bytes());
    id
}

impl Agent {
    /// Derive every user's keys (1 MiB of hashing per password) and localize them per device.
    pub(crate) fn new(
        cfg: &SimConfig,
        shared: Arc<[DeviceShared]>,
        stats: Arc<Stats>,
    ) -> Result<Agent, String> {
        let layout = Layout::build_with(&cfg.data, cfg.cdp, cfg.lldp_local_port_ids);
        let mut user_keys = Vec::new();
        for u in &cfg.users {
            let k = UserKeys::new(
                u.auth,
                u.auth_password.as_bytes(),
                u.privacy.as_ref().map(|(p, pw)| (*p, pw.as_bytes())),
            )
            .map_err(|e| format!("user {}: {e}", u.name))?;
            user_keys.push(k);
        }
        let devices = (0..cfg.devices)
            .map(|i| {
                let behaviour = cfg.behaviour(i);
                let community = if behaviour.wrong_community {
                    format!("{}-not", cfg.community).into_bytes()
                } else {
                    cfg.community.clone().into_bytes()
                };
                let engine_id = engine_id(cfg.engine_seed, i);
                let keys = user_keys
                    .iter()
                    .map(|k| {
                        let full = k.localize(&engine_id);
                        let auth_only = LocalKeys::from_localized(full.auth, full.auth_key(), None);
                        DevKeys { full, auth_only }
                    })
                    .collect();
                Device {
                    behaviour,
                    community,
                    engine_id,
                    keys,
                }
            })
            .collect();
        let users = cfg
            .users
            .iter()
            .map(|u| User {
                name: u.name.clone().into_bytes(),
                has_priv: u.privacy.is_some(),
                min_level: u.min_level,
            })
            .collect();
        Ok(Agent {
            core: Core {
                layout,
                devices,
                users,
                prefix: cfg.name_prefix.clone(),
                ips: (0..cfg.devices)
                    .map(|i| cfg.device_ip(i).octets())
                    .collect(),
                max_message_size: cfg.max_message_size,
                max_bulk: cfg.max_bulk_varbinds,
                shared,
                stats,
            },
            bufs: Bufs {
                w: BackWriter::with_capacity(4096),
                ..Bufs::default()
            },
            plain: Vec::with_capacity(2048),
            requests: vec![0; cfg.devices],
            rng: mix(cfg.engine_seed ^ 0x5EED),
            salt: mix(cfg.engine_seed ^ 0x5A17),
            report_counts: [0; 8],
        })
    }

    /// The datagram to send after [`Verdict::Reply`] / [`Verdict::ReplyAfter`].
    pub(crate) fn reply(&self) -> &[u8] {
        self.bufs.w.as_bytes()
    }

    #[cfg(test)]
    pub(crate) fn engine_id(&self, dev: usize) -> &[u8] {
        &self.core.devices[dev].engine_id
    }

    fn roll(&mut self) -> u64 {
        // xorshift64*: cheap dice for flaky devices.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Handle one request to device `dev`, `since_start` after the simulator started.
    pub(crate) fn handle(&mut self, dev: usize, since_start: Duration, req: &[u8]) -> Verdict {
        let stats = Arc::clone(&self.core.stats);
        bump(&stats.requests);
        let Some(device) = self.core.devices.get(dev) else {
            bump(&stats.unknown_destination);
            return Verdict::Drop;
        };
        let b = &device.behaviour;
        if b.dead || self.core.shared[dev].dead.load(Ordering::Relaxed) {
            bump(&stats.dropped_dead);
            return Verdict::Drop;
        }
        let (flaky, slow) = (b.flaky_pct, b.slow);
        if flaky > 0 && self.roll() % 100 < flaky as u64 {
            bump(&stats.dropped_flaky);
            return Verdict::Drop;
        }
        self.requests[dev] += 1;
        let delay = slow.filter(|_| self.requests[dev].is_multiple_of(2));
        let verdict = match peek_version(req) {
            Ok(Version::V3) => self.v3(dev, since_start, req),
            Ok(_) => self.community(dev, since_start, req),
            Err(_) => {
                bump(&stats.dropped_decode);
                Verdict::Drop
            }
        };
        match (verdict, delay) {
            (Verdict::Reply, Some(d)) => {
                bump(&stats.delayed);
                Verdict::ReplyAfter(d)
            }
            (v, _) => v,
        }
    }

    fn view(core: &Core, dev: usize, since_start: Duration, v1: bool) -> DevView<'_> {
        let d = &core.devices[dev];
        DevView {
            index: dev,
            devices: core.devices.len(),
            prefix: &core.prefix,
            clock: Clock::at(&d.behaviour, dev, since_start),
            c32_only: d.behaviour.c32_only,
            wrap: d.behaviour.wrap,
            neighbours: core.shared[dev].neighbours.load(Ordering::Relaxed),
            ips: &core.ips,
            v1,
        }
    }

    /// SNMPv1 and v2c.
    fn community(&mut self, dev: usize, since_start: Duration, req: &[u8]) -> Verdict {
        let Agent { core, bufs, .. } = self;
        let Ok(msg) = Message::decode(req) else {
            bump(&core.stats.dropped_decode);
            return Verdict::Drop;
        };
        if msg.community != core.devices[dev].community.as_slice() {
            // As net-snmp: no answer at all, so a wrong community looks like a dead host.
            bump(&core.stats.dropped_community);
            return Verdict::Drop;
        }
        let AnyPdu::Standard(pdu) = msg.pdu else {
            bump(&core.stats.dropped_other);
            return Verdict::Drop;
        };
        let v1 = msg.version == Version::V1;
        let view = Agent::view(core, dev, since_start, v1);
        let outcome = process(core, bufs, &view, &pdu, req);
        let frame = Frame::Community {
            version: msg.version,
            community: msg.community,
        };
        respond(
            core,
            bufs,
            &view,
            &pdu,
            req,
            outcome,
            &frame,
            core.max_message_size,
        )
    }

    fn next_salt(&mut self) -> u64 {
        self.salt = self.salt.wrapping_add(1);
        self.salt
    }

    /// SNMPv3 with USM, as the authoritative engine (RFC 3414 § 3.2 in net-snmp's order).
    fn v3(&mut self, dev: usize, since_start: Duration, req: &[u8]) -> Verdict {
        let salt = self.next_salt();
        let Agent {
            core,
            bufs,
            plain,
            report_counts,
            ..
        } = self;
        let stats = &core.stats;
        let Ok(m) = V3Message::decode(req) else {
            bump(&stats.dropped_decode);
            return Verdict::Drop;
        };
        if m.max_size < MIN_MAX_SIZE {
            bump(&stats.dropped_decode);
            return Verdict::Drop;
        }
        let d = &core.devices[dev];
        let clock = Clock::at(&d.behaviour, dev, since_start);
        let reportable = m.flags & FLAG_REPORTABLE != 0;
        let level = match (m.flags & FLAG_AUTH != 0, m.flags & FLAG_PRIV != 0) {
            (false, _) => SecLevel::NoAuthNoPriv,
            (true, false) => SecLevel::AuthNoPriv,
            (true, true) => SecLevel::AuthPriv,
        };
        // A plaintext request's request-id is echoed in reports (as net-snmp does for the
        // discovery probe); an encrypted one cannot be read before the checks, so it is 0.
        let plain_request_id = match m.data {
            ScopedData::Plain(sp) => match v3::decode_scoped(sp).map(|s| s.pdu) {
                Ok(AnyPdu::Standard(p)) => p.request_id,
                _ => 0,
            },
            ScopedData::Encrypted(_) => 0,
        };
        let params = V3Params {
            msg_id: m.msg_id,
            reportable: false,
            engine_id: &d.engine_id,
            engine_boots: clock.boots,
            engine_time: clock.engine_time,
            user: m.user,
            context_engine_id: &d.engine_id,
            context_name: &[],
        };
        let mut report = |stat: ReportStat, keys: Option<&LocalKeys>, request_id: i32| {
            if !reportable {
                bump(&stats.dropped_other);
                return Verdict::Drop;
            }
            let n = &mut report_counts[stat as usize];
            *n = n.wrapping_add(1);
            bump(&stats.reports);
            let frame = Frame::V3 { params, keys, salt };
            write_report(bufs, stat, *n, request_id, &frame)
        };
        if m.engine_id != d.engine_id.as_slice() {
            // Discovery (empty engine ID) or a stale one: tell our ID, boots and time.
            return report(ReportStat::UnknownEngineId, None, plain_request_id);
        }
        let Some(u) = core.users.iter().position(|u| u.name == m.user) else {
            return report(ReportStat::UnknownUserName, None, plain_request_id);
        };
        let (user, keys) = (&core.users[u], &d.keys[u]);
        if level == SecLevel::AuthPriv && !user.has_priv {
            return report(ReportStat::UnsupportedSecLevel, None, plain_request_id);
        }
        if level >= SecLevel::AuthNoPriv {
            // `verify` reads mac_len bytes at the field's offset, so the field's own length
            // is checked here (RFC 3414 § 3.2.6: a wrong length is an authentication failure).
            if m.auth_params.len() != keys.full.auth.mac_len()
                || !keys.full.verify(req, m.auth_offset)
            {
                return report(ReportStat::WrongDigest, None, 0);
            }
            if m.engine_boots != clock.boots
                || m.engine_time.abs_diff(clock.engine_time) > TIME_WINDOW
            {
                // Checked before decryption, so the request-id is unknown: 0, as snmpd.
                return report(ReportStat::NotInTimeWindow, Some(&keys.auth_only), 0);
            }
        }
        let answer_keys = match level {
            SecLevel::NoAuthNoPriv => None,
            SecLevel::AuthNoPriv => Some(&keys.auth_only),
            SecLevel::AuthPriv => Some(&keys.full),
        };
        let scoped = match m.data {
            ScopedData::Plain(sp) => v3::decode_scoped(sp),
            ScopedData::Encrypted(ct) => {
                plain.clear();
                plain.extend_from_slice(ct);
                match keys
                    .full
                    .decrypt(plain, m.engine_boots, m.engine_time, m.priv_params)
                {
                    Ok(()) => v3::decode_decrypted(plain),
                    Err(e) => Err(e),
                }
            }
        };
        let Ok(scoped) = scoped else {
            // A wrong privacy key decrypts to garbage: snmpd stays silent, so do we.
            bump(&stats.dropped_undecryptable);
            return Verdict::Drop;
        };
        if !scoped.context_engine_id.is_empty() && scoped.context_engine_id != d.engine_id {
            return report(ReportStat::UnknownPduHandler, answer_keys, 0);
        }
        if !scoped.context_name.is_empty() {
            return report(ReportStat::UnknownContext, answer_keys, 0);
        }
        let AnyPdu::Standard(pdu) = scoped.pdu else {
            bump(&stats.dropped_other);
            return Verdict::Drop;
        };
        let base: &[u8] = match m.data {
            ScopedData::Plain(_) => req,
            ScopedData::Encrypted(_) => plain,
        };
        let view = Agent::view(core, dev, since_start, false);
        let outcome = if level < user.min_level
            && matches!(
                pdu.kind,
                PduKind::Get | PduKind::GetNext | PduKind::GetBulk | PduKind::Set
            ) {
            // snmpd's `rouser NAME priv` at a lower level: access denied, but answered.
            Outcome::Echo {
                status: error_status::AUTHORIZATION_ERROR,
                index: 0,
            }
        } else {
            process(core, bufs, &view, &pdu, base)
        };
        let frame = Frame::V3 {
            params,
            keys: answer_keys,
            salt,
        };
        let limit = core.max_message_size.min(m.max_size as usize);
        respond(core, bufs, &view, &pdu, base, outcome, &frame, limit)
    }
}

/// Where `sub` starts inside `base` (both borrow the same buffer).
fn offset_in(base: &[u8], sub: &[u8]) -> Option<u32> {
    let off = (sub.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    (off + sub.len() <= base.len()).then_some(off as u32)
}

fn req_name(base: &[u8], oid: OidRef<'_>) -> Option<Name> {
    let bytes = oid.as_bytes();
    Some(Name::Req {
        off: offset_in(base, bytes)?,
        len: bytes.len() as u32,
    })
}

/// Choose the response varbinds of a GET, GETNEXT or GETBULK.
fn process(core: &Core, b: &mut Bufs, view: &DevView<'_>, pdu: &Pdu<'_>, base: &[u8]) -> Outcome {
    let layout = &core.layout;
    b.picks.clear();
    let entry = |i: usize| Pick {
        name: Name::Entry(i as u32),
        val: Val::Entry(i as u32),
    };
    match pdu.kind {
        PduKind::Get => {
            for (n, vb) in pdu.varbinds().enumerate() {
                let Ok((oid, _)) = vb else {
                    return Outcome::Drop;
                };
                match layout.get(oid.as_bytes(), view) {
                    Some(i) => b.picks.push(entry(i)),
                    None if view.v1 => {
                        return Outcome::Echo {
                            status: error_status::NO_SUCH_NAME,
                            index: n as i64 + 1,
                        };
                    }
                    None => {
                        let Some(name) = req_name(base, oid) else {
                            return Outcome::Drop;
                        };
                        let val = if layout.registered(oid.as_bytes()) {
                            Val::NoSuchInstance
                        } else {
                            Val::NoSuchObject
                        };
                        b.picks.push(Pick { name, val });
                    }
                }
            }
            Outcome::Picks {
                status: 0,
                index: 0,
                bulk: None,
            }
        }
        PduKind::GetNext => {
            for (n, vb) in pdu.varbinds().enumerate() {
                let Ok((oid, _)) = vb else {
                    return Outcome::Drop;
                };
                let next = layout.present_from(layout.upper_bound(oid.as_bytes()), view);
                match next {
                    Some(i) => b.picks.push(entry(i)),
                    None if view.v1 => {
                        return Outcome::Echo {
                            status: error_status::NO_SUCH_NAME,
                            index: n as i64 + 1,
                        };
                    }
                    None => {
                        let Some(name) = req_name(base, oid) else {
                            return Outcome::Drop;
                        };
                        b.picks.push(Pick {
                            name,
                            val: Val::EndOfMibView,
                        });
                    }
                }
            }
            Outcome::Picks {
                status: 0,
                index: 0,
                bulk: None,
            }
        }
        PduKind::GetBulk if !view.v1 => bulk(core, b, view, pdu, base),
        PduKind::Set => Outcome::Echo {
            status: if view.v1 {
                error_status::NO_SUCH_NAME
            } else {
                NO_ACCESS
            },
            index: if pdu.varbinds().next().is_some() {
                1
            } else {
                0
            },
        },
        _ => Outcome::Drop,
    }
}

/// GETBULK as net-snmp 5.9.3 answers it: at most `max_bulk` varbinds from the repeaters
/// (max-repetitions is cut to `max_bulk / repeaters`, non-repeaters come on top), and the
/// response ends after the first repetition in which every repeater but the last is
/// endOfMibView (snmpd's check of a "full row of endOfMibView" skips the last column; we
/// copy that so walks print the same).
fn bulk(core: &Core, b: &mut Bufs, view: &DevView<'_>, pdu: &Pdu<'_>, base: &[u8]) -> Outcome {
    let layout = &core.layout;
    let mut count = 0usize;
    for vb in pdu.varbinds() {
        if vb.is_err() {
            return Outcome::Drop;
        }
        count += 1;
    }
    let n = pdu.error_status.clamp(0, count as i64) as usize;
    let r = count - n;
    b.cursors.clear();
    for (k, vb) in pdu.varbinds().enumerate() {
        let Ok((oid, _)) = vb else {
            return Outcome::Drop;
        };
        let Some(req) = req_name(base, oid) else {
            return Outcome::Drop;
        };
        let next = layout.present_from(layout.upper_bound(oid.as_bytes()), view);
        if k < n {
            b.picks.push(match next {
                Some(i) => Pick {
                    name: Name::Entry(i as u32),
                    val: Val::Entry(i as u32),
                },
                None => Pick {
                    name: req,
                    val: Val::EndOfMibView,
                },
            });
        } else {
            b.cursors.push(Cursor { name: req, next });
        }
    }
    // No repeaters: no repetitions.
    let reps = core
        .max_bulk
        .checked_div(r)
        .map_or(0, |cap| (pdu.error_index.max(0) as usize).min(cap));
    // Columns that must all be endOfMibView to end the response (see above).
    let check = if r == 1 { 1 } else { r.saturating_sub(1) };
    for _ in 0..reps {
        let mut ended = true;
        for (c, cur) in b.cursors.iter_mut().enumerate() {
            match cur.next {
                Some(i) => {
                    b.picks.push(Pick {
                        name: Name::Entry(i as u32),
                        val: Val::Entry(i as u32),
                    });
                    cur.name = Name::Entry(i as u32);
                    cur.next = layout.present_from(i + 1, view);
                    if c < check {
                        ended = false;
                    }
                }
                None => b.picks.push(Pick {
                    name: cur.name,
                    val: Val::EndOfMibView,
                }),
            }
        }
        if ended {
            break;
        }
    }
    Outcome::Picks {
        status: 0,
        index: 0,
        bulk: Some(BulkShape { n, r }),
    }
}

/// Encode `picks[..count]` as a Response PDU into the cleared writer.
#[allow(clippy::too_many_arguments)]
fn write_picks(
    layout: &Layout,
    b: &mut Bufs,
    view: &DevView<'_>,
    base: &[u8],
    count: usize,
    request_id: i32,
    status: i64,
    index: i64,
) {
    let w = &mut b.w;
    w.clear();
    b.sizes.clear();
    let list_mark = w.len();
    for p in b.picks[..count].iter().rev() {
        let mark = w.len();
        match p.val {
            Val::Entry(i) => layout.encode_value(w, i as usize, view),
            Val::NoSuchObject => w.tlv(ber::NO_SUCH_OBJECT, &[]),
            Val::NoSuchInstance => w.tlv(ber::NO_SUCH_INSTANCE, &[]),
            Val::EndOfMibView => w.tlv(ber::END_OF_MIB_VIEW, &[]),
        }
        let name = match p.name {
            Name::Entry(i) => layout.oid(i as usize),
            // Offsets were taken from this very buffer; `get` keeps a bad one harmless.
            Name::Req { off, len } => base
                .get(off as usize..(off + len) as usize)
                .unwrap_or_default(),
        };
        w.tlv(ber::OBJECT_IDENTIFIER, name);
        w.wrap(ber::SEQUENCE, mark);
        b.sizes.push((w.len() - list_mark) as u32);
    }
    w.wrap(ber::SEQUENCE, list_mark);
    w.integer(ber::INTEGER, index);
    w.integer(ber::INTEGER, status);
    w.integer(ber::INTEGER, request_id as i64);
    w.wrap(PduKind::Response as u8, 0);
}

/// Wrap the PDU in the writer into a message.
fn frame(b: &mut Bufs, f: &Frame<'_>) -> Result<(), SnmpError> {
    match f {
        Frame::Community { version, community } => {
            b.w.tlv(ber::OCTET_STRING, community);
            b.w.integer(ber::INTEGER, version.wire());
            b.w.wrap(ber::SEQUENCE, 0);
            Ok(())
        }
        Frame::V3 { params, keys, salt } => {
            v3::frame_pdu(&mut b.w, &mut b.scratch, params, *keys, *salt)
        }
    }
}

fn write_report(
    b: &mut Bufs,
    stat: ReportStat,
    count: u32,
    request_id: i32,
    f: &Frame<'_>,
) -> Verdict {
    let w = &mut b.w;
    w.clear();
    let vb = w.len();
    w.unsigned(ber::COUNTER32, count as u64);
    w.tlv(ber::OBJECT_IDENTIFIER, stat.oid());
    w.wrap(ber::SEQUENCE, vb);
    w.wrap(ber::SEQUENCE, vb);
    w.integer(ber::INTEGER, 0);
    w.integer(ber::INTEGER, 0);
    w.integer(ber::INTEGER, request_id as i64);
    w.wrap(PduKind::Report as u8, 0);
    match frame(b, f) {
        Ok(()) => Verdict::Reply,
        Err(_) => Verdict::Drop,
    }
}

/// Encode the outcome and enforce the size limit: GETBULK loses whole rows, anything else
/// becomes tooBig with no varbinds (RFC 3416 § 4.2.1); silence if even that does not fit.
#[allow(clippy::too_many_arguments)]
fn respond(
    core: &Core,
    b: &mut Bufs,
    view: &DevView<'_>,
    pdu: &Pdu<'_>,
    base: &[u8],
    outcome: Outcome,
    f: &Frame<'_>,
    limit: usize,
) -> Verdict {
    let stats = &core.stats;
    let (status, index, bulk) = match outcome {
        Outcome::Drop => {
            bump(&stats.dropped_other);
            return Verdict::Drop;
        }
        Outcome::Echo { status, index } => {
            let vbs: Result<Vec<_>, _> = pdu.varbinds().collect();
            let Ok(vbs) = vbs else {
                bump(&stats.dropped_decode);
                return Verdict::Drop;
            };
            b.w.clear();
            let h = PduHeader {
                kind: PduKind::Response,
                request_id: pdu.request_id,
                a: status,
                b: index,
            };
            encode_pdu(&mut b.w, &h, &vbs);
            if frame(b, f).is_err() {
                return Verdict::Drop;
            }
            if b.w.len() <= limit {
                bump(&stats.responses);
                return Verdict::Reply;
            }
            return too_big(b, pdu, f, limit, stats);
        }
        Outcome::Picks {
            status,
            index,
            bulk,
        } => (status, index, bulk),
    };
    let mut count = b.picks.len();
    write_picks(
        &core.layout,
        b,
        view,
        base,
        count,
        pdu.request_id,
        status,
        index,
    );
    let vb_total = b.sizes.last().copied().unwrap_or(0) as usize;
    if frame(b, f).is_err() {
        return Verdict::Drop;
    }
    if b.w.len() > limit {
        let Some(BulkShape { n, r }) = bulk.filter(|s| s.r > 0) else {
            return too_big(b, pdu, f, limit, stats);
        };
        // Bytes of the first `m` picks, from the sizes recorded while encoding backwards.
        let sizes = std::mem::take(&mut b.sizes);
        let first = |m: usize| {
            vb_total
                - if m < count {
                    sizes[count - 1 - m] as usize
                } else {
                    0
                }
        };
        let overhead = b.w.len() - vb_total;
        let mut rows = (count - n) / r;
        // Lengths only shrink as varbinds go, so the first estimate is close; DES padding can
        // still push it over, hence the loop.
        while rows > 0 && overhead + first(n + rows * r) > limit {
            rows -= 1;
        }
        b.sizes = sizes;
        loop {
            if rows == 0 {
                return too_big(b, pdu, f, limit, stats);
            }
            count = n + rows * r;
            write_picks(
                &core.layout,
                b,
                view,
                base,
                count,
                pdu.request_id,
                status,
                index,
            );
            if frame(b, f).is_err() {
                return Verdict::Drop;
            }
            if b.w.len() <= limit {
                break;
            }
            rows -= 1;
        }
    }
    bump(&stats.responses);
    stats.varbinds.fetch_add(count as u64, Ordering::Relaxed);
    Verdict::Reply
}

fn too_big(b: &mut Bufs, pdu: &Pdu<'_>, f: &Frame<'_>, limit: usize, stats: &Stats) -> Verdict {
    bump(&stats.too_big);
    b.w.clear();
    let h = PduHeader {
        kind: PduKind::Response,
        request_id: pdu.request_id,
        a: error_status::TOO_BIG,
        b: 0,
    };
    encode_pdu(&mut b.w, &h, &[]);
    if frame(b, f).is_err() || b.w.len() > limit {
        return Verdict::Drop;
    }
    bump(&stats.responses);
    Verdict::Reply
}

#[cfg(test)]
mod tests;
