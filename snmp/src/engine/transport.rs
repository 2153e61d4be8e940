//! The wire side: one UDP socket per address family for every device, request ids that tell
//! replies apart, the source check a reply must pass, and the encoding of each job's request
//! (v2c community messages, v3 messages with the agent's clock and this engine's keys).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{PduHeader, encode_community_message};
use nmsd_parsers::snmp::usm::LocalKeys;
use nmsd_parsers::snmp::v3::{self, V3Params};
use nmsd_parsers::snmp::{Oid, PduKind, Value, Version};
use tokio::net::UdpSocket;

use super::plan::{Credentials, CustomModule, DeviceSpec};
use super::poll::{Job, JobKind};
use super::walk;

/// Most varbinds asked per GETBULK response (net-snmp's cap is 100).
const MAX_VARBINDS: u32 = 100;

/// Request ids (v2c request-id, v3 msgID) are 1..=MAX_REQUEST_ID.
const MAX_REQUEST_ID: i32 = 0x3FFF_FFFF;

/// The polling sockets: one per address family, bound only when a device needs it.
#[derive(Debug)]
pub(super) struct Sockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl Sockets {
    pub(super) async fn bind(
        bind4: Option<SocketAddr>,
        bind6: Option<SocketAddr>,
    ) -> io::Result<Sockets> {
        let v4 = match bind4 {
            Some(a) => Some(UdpSocket::bind(a).await?),
            None => None,
        };
        let v6 = match bind6 {
            Some(a) => Some(UdpSocket::bind(a).await?),
            None => None,
        };
        Ok(Sockets { v4, v6 })
    }

    fn family(&self, v6: bool) -> Option<&UdpSocket> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    pub(super) fn local_addr4(&self) -> Option<SocketAddr> {
        self.v4.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Wait until the family's socket has something to read (forever if it is not bound).
    pub(super) async fn readable(&self, v6: bool) -> io::Result<()> {
        match self.family(v6) {
            Some(s) => s.readable().await,
            None => std::future::pending().await,
        }
    }

    /// One queued datagram, if there is one.
    pub(super) fn try_recv(&self, v6: bool, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        self.family(v6)?.try_recv_from(buf).ok()
    }

    /// Send without waiting; `None` when no socket of the address's family is bound.
    pub(super) fn try_send(&self, bytes: &[u8], to: SocketAddr) -> Option<io::Result<usize>> {
        self.family(to.is_ipv6()).map(|s| s.try_send_to(bytes, to))
    }
}

/// Where request ids start: anywhere in the range, so a restarted engine does not take late
/// replies to its predecessor's requests for its own.
pub(super) fn first_request_id(seed: u64) -> i32 {
    (seed as i32 & MAX_REQUEST_ID).max(1)
}

/// The id after `last`, wrapping within the range and skipping ids still out.
pub(super) fn next_request_id(last: i32, in_use: impl Fn(i32) -> bool) -> i32 {
    let mut id = last;
    loop {
        id = if id >= MAX_REQUEST_ID { 1 } else { id + 1 };
        if !in_use(id) {
            return id;
        }
    }
}

/// Whether a reply from `from` can be the device's at `expected`: the same address and port,
/// an IPv4 address also in its IPv4-mapped IPv6 form.
pub(super) fn from_device(expected: SocketAddr, from: SocketAddr) -> bool {
    expected == from
        || (expected.ip().to_canonical() == from.ip().to_canonical()
            && expected.port() == from.port())
}

/// What this engine knows of a v3 agent's engine, from discovery and authenticated replies.
#[derive(Debug)]
pub(super) struct V3State {
    pub engine_id: Vec<u8>,
    pub boots: u32,
    pub time: u32,
    /// When `time` was the agent's time.
    pub synced: Instant,
    pub keys: Option<LocalKeys>,
}

impl V3State {
    /// The agent's engine time at `now`, as its last report or reply implies.
    pub(super) fn time_at(&self, now: Instant) -> u32 {
        let since = now.saturating_duration_since(self.synced).as_secs();
        self.time.saturating_add(since.min(u32::MAX as u64) as u32)
    }

    /// Take the agent's boots and time from a reply received at `now`.
    pub(super) fn sync(&mut self, boots: u32, time: u32, now: Instant) {
        self.boots = boots;
        self.time = time;
        self.synced = now;
    }
}

/// Encodes requests into one reused buffer.
pub(super) struct Encoder {
    wbuf: BackWriter,
    scratch: Vec<u8>,
    /// The v3 privacy salt, advanced for every encrypted message.
    salt: u64,
}

impl Encoder {
    pub(super) fn new(salt: u64) -> Self {
        Encoder {
            wbuf: BackWriter::with_capacity(1500),
            scratch: Vec::with_capacity(1500),
            salt,
        }
    }

    /// The last request encoded.
    pub(super) fn bytes(&self) -> &[u8] {
        self.wbuf.as_bytes()
    }

    /// Encode `job`'s current request under `id`: discovery, a GET, or a walk's next page
    /// (a GETBULK with sysUpTime as the non-repeater, so every page carries the agent's clock).
    pub(super) fn encode(
        &mut self,
        spec: &DeviceSpec,
        v3s: Option<&V3State>,
        job: &Job,
        custom: &[CustomModule],
        id: i32,
        now: Instant,
    ) -> Result<(), String> {
        let uptime = walk::sys_uptime_oid();
        let sys: Vec<Oid> = [1u32, 2, 3, 4, 5, 6]
            .iter()
            .filter_map(|c| Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, *c, 0]).ok())
            .collect();
        let (header, oids): (PduHeader, Vec<Oid>) = match (job.kind, &job.walk) {
            (JobKind::Discover, _) => {
                v3::encode_discovery(&mut self.wbuf, id, id);
                return Ok(());
            }
            (JobKind::System, _) => (PduHeader::new(PduKind::Get, id), sys),
            (JobKind::CustomGet(mi), _) => (
                PduHeader::new(PduKind::Get, id),
                custom
                    .get(mi as usize)
                    .map(|m| m.scalars.iter().map(|c| c.oid.clone()).collect())
                    .unwrap_or_default(),
            ),
            (JobKind::LldpLocal, _) => (
                PduHeader::new(PduKind::Get, id),
                [2u32, 3]
                    .iter()
                    .filter_map(|c| Oid::from_arcs(&[1, 0, 8802, 1, 1, 2, 1, 3, *c, 0]).ok())
                    .collect(),
            ),
            (JobKind::Walk(_), Some(w)) => {
                let (cols, reps) = w.next_request(spec.max_repetitions, MAX_VARBINDS);
                let mut oids = vec![uptime];
                oids.extend(cols);
                (PduHeader::bulk(id, 1, reps as i64), oids)
            }
            (JobKind::Walk(_), None) => return Err("walk without state".into()),
        };
        let vbs: Vec<_> = oids.iter().map(|o| (o.as_ref(), Value::Null)).collect();
        match &spec.credentials {
            Credentials::V2c { community } => {
                encode_community_message(&mut self.wbuf, Version::V2c, community, &header, &vbs);
                Ok(())
            }
            Credentials::V3 { user, .. } => {
                let Some(v3s) = v3s else {
                    return Err("v3 request before discovery".into());
                };
                self.salt = self.salt.wrapping_add(1);
                let p = V3Params {
                    msg_id: id,
                    reportable: true,
                    engine_id: &v3s.engine_id,
                    engine_boots: v3s.boots,
                    engine_time: v3s.time_at(now),
                    user,
                    context_engine_id: &v3s.engine_id,
                    context_name: b"",
                };
                v3::encode_v3(
                    &mut self.wbuf,
                    &mut self.scratch,
                    &p,
                    v3s.keys.as_ref(),
                    self.salt,
                    &header,
                    &vbs,
                )
                .map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nmsd_parsers::snmp::pdu::{AnyPdu, Message};

    use super::*;
    use crate::engine::poll::jobs_for;
    use crate::engine::testutil::{COMMUNITY, v2c_device};

    #[test]
    fn request_ids_wrap_within_their_range_and_skip_ids_still_out() {
        assert_eq!(next_request_id(41, |_| false), 42);
        assert_eq!(next_request_id(MAX_REQUEST_ID, |_| false), 1);
        assert_eq!(
            next_request_id(MAX_REQUEST_ID - 1, |_| false),
            MAX_REQUEST_ID
        );
        assert_eq!(next_request_id(41, |id| id == 42 || id == 43), 44);
        assert_eq!(next_request_id(MAX_REQUEST_ID, |id| id == 1), 2);
        for seed in [0, 1, u64::MAX, 0x8000_0000, 0x1234_5678_9abc_def0] {
            let id = first_request_id(seed);
            assert!((1..=MAX_REQUEST_ID).contains(&id), "{seed:#x} → {id}");
        }
    }

    #[test]
    fn replies_must_come_from_the_device() {
        let dev: SocketAddr = "192.0.2.7:161".parse().expect("an address");
        let at = |s: &str| s.parse::<SocketAddr>().expect("an address");
        assert!(from_device(dev, dev));
        assert!(
            from_device(dev, at("[::ffff:192.0.2.7]:161")),
            "IPv4-mapped"
        );
        assert!(!from_device(dev, at("192.0.2.7:1161")), "another port");
        assert!(!from_device(dev, at("192.0.2.8:161")), "another host");
        let dev6 = at("[2001:db8::7]:161");
        assert!(from_device(dev6, dev6));
        assert!(!from_device(dev6, at("[2001:db8::8]:161")));
    }

    #[test]
    fn the_agent_clock_runs_on_from_the_last_sync() {
        let t0 = Instant::now();
        let mut s = V3State {
            engine_id: vec![0x80, 0, 0, 1],
            boots: 3,
            time: 1000,
            synced: t0,
            keys: None,
        };
        assert_eq!(s.time_at(t0), 1000);
        assert_eq!(s.time_at(t0 + Duration::from_millis(2500)), 1002);
        // A clock read before the sync (a reply raced the timer): no time going back.
        assert_eq!(
            s.time_at(t0.checked_sub(Duration::from_secs(5)).unwrap_or(t0)),
            1000
        );
        s.sync(4, 7, t0 + Duration::from_secs(10));
        assert_eq!((s.boots, s.time_at(t0 + Duration::from_secs(11))), (4, 8));
    }

    #[test]
    fn requests_are_gets_and_bulk_walk_pages() {
        let spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        let jobs = jobs_for(&spec, &[], false, false);
        let mut enc = Encoder::new(1);
        let now = Instant::now();
        // The system group: one GET of sysDescr … sysLocation.
        enc.encode(&spec, None, &jobs[0], &[], 77, now)
            .expect("encodes");
        let m = Message::decode(enc.bytes()).expect("decodes");
        assert_eq!(m.community, COMMUNITY);
        let AnyPdu::Standard(p) = m.pdu else {
            panic!("not a GET")
        };
        assert_eq!(
            (p.kind, p.request_id, p.varbinds().count()),
            (PduKind::Get, 77, 6)
        );
        // A walk page: GETBULK, sysUpTime as the one non-repeater, then the columns.
        enc.encode(&spec, None, &jobs[1], &[], 78, now)
            .expect("encodes");
        let m = Message::decode(enc.bytes()).expect("decodes");
        let AnyPdu::Standard(p) = m.pdu else {
            panic!("not a GETBULK")
        };
        assert_eq!(
            (p.kind, p.request_id, p.error_status),
            (PduKind::GetBulk, 78, 1)
        );
        let first = p
            .varbinds()
            .next()
            .and_then(Result::ok)
            .map(|(o, _)| o.to_string());
        assert_eq!(first.as_deref(), Some("1.3.6.1.2.1.1.3"));
    }

    #[test]
    fn a_v3_request_before_discovery_is_an_error() {
        let mut spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        spec.credentials = Credentials::V3 {
            user: std::sync::Arc::from(&b"ops"[..]),
            keys: None,
        };
        let jobs = jobs_for(&spec, &[], true, false);
        let mut enc = Encoder::new(1);
        let now = Instant::now();
        // Discovery needs nothing known of the agent.
        assert_eq!(enc.encode(&spec, None, &jobs[0], &[], 1, now), Ok(()));
        assert_eq!(
            enc.encode(&spec, None, &jobs[1], &[], 2, now),
            Err("v3 request before discovery".to_string())
        );
    }
}
