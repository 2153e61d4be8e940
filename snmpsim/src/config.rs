//! What a simulator serves and how its devices misbehave.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use nmsd_parsers::snmp::Oid;
use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol};

use super::data::Fixture;

/// How devices get distinct addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// One socket; device *i* is the address 127.0.x.y it was asked on (`IP_PKTINFO`), and its
    /// replies leave from that address. Needs a listen address of 0.0.0.0 for more than one
    /// device (loopback answers every 127/8 address, so no setup is needed).
    Pktinfo,
    /// One socket per device on the listen address, ports PORT, PORT+1, … (or ephemeral ports
    /// when PORT is 0). For platforms without `IP_PKTINFO`.
    Ports,
}

/// Misbehaviours of one device. Several can be combined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Never answers (host down).
    pub dead: bool,
    /// Every other request is answered after this delay.
    pub slow: Option<Duration>,
    /// Drops this percentage of requests (0–100), at random.
    pub flaky_pct: u8,
    /// Reboots every period (from the simulator's start): sysUpTime, engine time and counters
    /// start again from zero and the v3 engine boots go up by one.
    pub restart_every: Option<Duration>,
    /// Resets its interface counters every period, setting ifCounterDiscontinuityTime to the
    /// sysUpTime of the reset; sysUpTime goes on.
    pub discontinuity_every: Option<Duration>,
    /// Uses another community than the configured one: v2c requests go unanswered, while v3
    /// still works (the agent is up).
    pub wrong_community: bool,
    /// Has no ifXTable HC columns (ifHCInOctets … ifHCOutBroadcastPkts): a Counter32-only agent.
    pub c32_only: bool,
    /// Counters start near 2^32, so every Counter32 wraps 30 s after the simulator starts.
    pub wrap: bool,
}

impl Behaviour {
    /// Short labels, for listings.
    pub fn labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dead {
            out.push("dead".to_string());
        }
        if let Some(d) = self.slow {
            out.push(format!("slow:{}ms", d.as_millis()));
        }
        if self.flaky_pct > 0 {
            out.push(format!("flaky:{}%", self.flaky_pct));
        }
        if let Some(d) = self.restart_every {
            out.push(format!("restart:{}s", d.as_secs_f64()));
        }
        if let Some(d) = self.discontinuity_every {
            out.push(format!("discontinuity:{}s", d.as_secs_f64()));
        }
        if self.wrong_community {
            out.push("wrong-community".to_string());
        }
        if self.c32_only {
            out.push("c32-only".to_string());
        }
        if self.wrap {
            out.push("wrap".to_string());
        }
        out
    }
}

/// `count` devices with the same behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub count: usize,
    pub behaviour: Behaviour,
}

/// Security level, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecLevel {
    NoAuthNoPriv,
    AuthNoPriv,
    AuthPriv,
}

/// An SNMPv3 user every device knows.
#[derive(Clone)]
pub struct UserSpec {
    pub name: String,
    pub auth: AuthProtocol,
    pub auth_password: String,
    pub privacy: Option<(PrivProtocol, String)>,
    /// Requests below this level get `authorizationError` (snmpd's `rouser NAME priv`).
    pub min_level: SecLevel,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Test passwords, but still: never print secrets.
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .field("min_level", &self.min_level)
            .finish_non_exhaustive()
    }
}

impl UserSpec {
    pub fn new(
        name: &str,
        auth: AuthProtocol,
        auth_password: &str,
        privacy: Option<(PrivProtocol, &str)>,
    ) -> Self {
        UserSpec {
            name: name.to_string(),
            auth,
            auth_password: auth_password.to_string(),
            privacy: privacy.map(|(p, pw)| (p, pw.to_string())),
            min_level: if privacy.is_some() {
                SecLevel::AuthPriv
            } else {
                SecLevel::AuthNoPriv
            },
        }
    }

    /// The users of the design's snmpd configs (docs/snmp-design.md § 13).
    pub fn test_users() -> Vec<UserSpec> {
        vec![
            UserSpec::new(
                "u_sha_aes",
                AuthProtocol::Sha1,
                "authpass-sha1",
                Some((PrivProtocol::Aes128, "privpass-aes128")),
            ),
            UserSpec::new(
                "u_sha256_aes256",
                AuthProtocol::Sha256,
                "authpass-sha256",
                Some((PrivProtocol::Aes256, "privpass-aes256")),
            ),
        ]
    }

    /// `NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS]`, protocols spelled as in nmsd's config
    /// (`sha`, `sha256`, …; `aes`, `aes256`, `aes256c`, …).
    pub fn parse(s: &str) -> Result<Self, String> {
        let f: Vec<&str> = s.split(':').collect();
        let bad = || {
            format!(
                "bad user {:?}: want NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS]",
                f[0]
            )
        };
        let (name, auth, apw, privacy) = match f.as_slice() {
            [n, a, ap] => (*n, *a, *ap, None),
            [n, a, ap, p, pp] => (*n, *a, *ap, Some((*p, *pp))),
            _ => return Err(bad()),
        };
        let auth = AuthProtocol::parse(auth).ok_or_else(bad)?;
        let privacy = match privacy {
            Some((p, pw)) => Some((PrivProtocol::parse(p).ok_or_else(bad)?, pw)),
            None => None,
        };
        if apw.len() < 8 || privacy.is_some_and(|(_, pw)| pw.len() < 8) {
            return Err(format!(
                "user {name}: passwords need at least 8 characters (as net-snmp)"
            ));
        }
        Ok(UserSpec::new(name, auth, apw, privacy))
    }
}

/// What the devices serve.
#[derive(Clone, Debug, Default)]
pub struct DataSpec {
    /// Generated system group, ifTable/ifXTable with this many interfaces, and LLDP (if
    /// `lldp`). None: nothing generated (fixture only).
    pub interfaces: Option<u32>,
    /// LLDP local data and a remote table from a ring topology: device *i*'s ifIndex 1 faces
    /// device *i+1*'s ifIndex 2.
    pub lldp: bool,
    /// A fixture served by every device; where it has the same OID as generated data, the
    /// fixture wins.
    pub fixture: Option<Fixture>,
    /// Extra registered subtrees: a GET of a missing OID under one gives noSuchInstance, else
    /// noSuchObject (as with snmpd's registrations).
    pub subtrees: Vec<Oid>,
}

/// A whole simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen. With [`Addressing::Pktinfo`], 0.0.0.0 lets every device have its own
    /// 127.0.x.y; a specific address serves one device on it.
    pub listen: SocketAddrV4,
    pub addressing: Addressing,
    /// Device 0's address (Pktinfo with listen 0.0.0.0); device *i* is
    /// `a.b.(c + i / per_subnet).(d + i % per_subnet)`.
    pub first_address: Ipv4Addr,
    pub per_subnet: u16,
    pub devices: usize,
    pub data: DataSpec,
    pub community: String,
    pub users: Vec<UserSpec>,
    /// Behaviour groups, given devices from the end of the list backwards, in this order and
    /// without overlap, so the first devices stay well-behaved.
    pub groups: Vec<Group>,
    /// Largest response (v2c; v3 also honours the request's msgMaxSize). Beyond it GET and
    /// GETNEXT answer tooBig, GETBULK is cut to whole rows.
    pub max_message_size: usize,
    /// GETBULK varbinds per response from repeaters (net-snmp's maxGetbulkResponses, 100).
    pub max_bulk_varbinds: usize,
    /// Seeds engine IDs, AES salts and the flaky devices' dice.
    pub engine_seed: u64,
    /// sysName of device *i* is `{name_prefix}-{i+1:04}`.
    pub name_prefix: String,
    /// With generated LLDP: also serve CISCO-CDP-MIB cdpCacheTable rows for the same ring
    /// neighbours (DeviceId `{name}.lab.example`, DevicePort the neighbour's ifDescr, Address its
    /// IPv4 address). Off by default; [`super::SimHandle::set_cdp`] turns it off per device.
    pub cdp: bool,
    /// With generated LLDP: neighbours advertise ports as Junos does by default, a locally
    /// assigned PortId (subtype 7, the ifIndex as a number) with the ifDescr as PortDesc,
    /// while their own lldpLocPortTable names the port (subtype 5).
    pub lldp_local_port_ids: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            addressing: Addressing::Pktinfo,
            first_address: Ipv4Addr::new(127, 0, 1, 1),
            per_subnet: 250,
            devices: 1,
            data: DataSpec {
                interfaces: Some(4),
                lldp: true,
                fixture: None,
                subtrees: Vec::new(),
            },
            community: "public".to_string(),
            users: UserSpec::test_users(),
            groups: Vec::new(),
            max_message_size: 65507,
            max_bulk_varbinds: 100,
            engine_seed: default_seed(),
            name_prefix: "sim".to_string(),
            cdp: false,
            lldp_local_port_ids: false,
        }
    }
}

/// Differs between runs, so a restarted simulator has new engine IDs (its boots restart at 1).
fn default_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

impl SimConfig {
    /// Check the configuration before binding anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.devices == 0 {
            return Err("at least one device is needed".into());
        }
        let assigned: usize = self.groups.iter().map(|g| g.count).sum();
        if assigned > self.devices {
            return Err(format!(
                "behaviours cover {assigned} devices but there are only {}",
                self.devices
            ));
        }
        if self.groups.iter().any(|g| g.behaviour.flaky_pct > 100) {
            return Err("flaky percentage above 100".into());
        }
        if self.data.interfaces.is_none() && self.data.fixture.is_none() {
            return Err("nothing to serve: give interfaces or a fixture".into());
        }
        if self.max_message_size < 484 {
            return Err("max message size below 484 (the SNMP minimum)".into());
        }
        if self.addressing == Addressing::Pktinfo {
            if !self.listen.ip().is_unspecified() {
                if self.devices > 1 {
                    return Err(format!(
                        "{} devices need listen address 0.0.0.0 (or --ports)",
                        self.devices
                    ));
                }
            } else {
                let per = self.per_subnet as usize;
                let [_, _, c, d] = self.first_address.octets();
                if per == 0 || d as usize + per - 1 > 255 {
                    return Err("per_subnet does not fit the first address' last octet".into());
                }
                if c as usize + (self.devices - 1) / per > 255 {
                    return Err("too many devices for the address range".into());
                }
            }
        } else if self.listen.port() != 0
            && self.listen.port() as usize + self.devices - 1 > u16::MAX as usize
        {
            return Err("too many devices for the port range".into());
        }
        Ok(())
    }

    /// The behaviour of device `i`.
    pub fn behaviour(&self, i: usize) -> Behaviour {
        let mut end = self.devices;
        for g in &self.groups {
            let start = end.saturating_sub(g.count);
            if i >= start && i < end {
                return g.behaviour.clone();
            }
            end = start;
        }
        Behaviour::default()
    }

    /// Device `i`'s IP address in Pktinfo mode (the listen address itself when that is not
    /// 0.0.0.0; in Ports mode, every device has the listen address).
    pub fn device_ip(&self, i: usize) -> Ipv4Addr {
        if self.addressing == Addressing::Ports || !self.listen.ip().is_unspecified() {
            return *self.listen.ip();
        }
        let per = self.per_subnet.max(1) as usize;
        let [a, b, c, d] = self.first_address.octets();
        Ipv4Addr::new(
            a,
            b,
            c.wrapping_add((i / per) as u8),
            d.wrapping_add((i % per) as u8),
        )
    }

    /// The device a request to `ip` is for (Pktinfo mode).
    pub fn device_of(&self, ip: Ipv4Addr) -> Option<usize> {
        if !self.listen.ip().is_unspecified() {
            return (ip == *self.listen.ip()).then_some(0);
        }
        let per = self.per_subnet.max(1) as usize;
        let [a, b, c, d] = self.first_address.octets();
        let [x, y, z, w] = ip.octets();
        if (x, y) != (a, b) || z < c || w < d || (w - d) as usize >= per {
            return None;
        }
        let i = (z - c) as usize * per + (w - d) as usize;
        (i < self.devices).then_some(i)
    }

    /// sysName of device `i`.
    pub fn device_name(&self, i: usize) -> String {
        format!("{}-{:04}", self.name_prefix, i + 1)
    }
}

/// A device's address once bound.
pub(crate) fn socket_addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// `N` or `N:ARG` as the behaviour flags take them.
pub fn parse_count_arg(s: &str) -> Result<(usize, Option<&str>), String> {
    let (n, arg) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let n = n.parse().map_err(|_| format!("bad count in {s:?}"))?;
    Ok((n, arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_both_ways() {
        let cfg = SimConfig {
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            devices: 1000,
            ..SimConfig::default()
        };
        cfg.validate().unwrap();
        assert_eq!(cfg.device_ip(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(cfg.device_ip(249), Ipv4Addr::new(127, 0, 1, 250));
        assert_eq!(cfg.device_ip(250), Ipv4Addr::new(127, 0, 2, 1));
        assert_eq!(cfg.device_ip(999), Ipv4Addr::new(127, 0, 4, 250));
        for i in [0, 1, 249, 250, 777, 999] {
            assert_eq!(cfg.device_of(cfg.device_ip(i)), Some(i));
        }
        assert_eq!(cfg.device_of(Ipv4Addr::new(127, 0, 1, 251)), None);
        assert_eq!(cfg.device_of(Ipv4Addr::new(127, 0, 5, 1)), None);
        assert_eq!(cfg.device_of(Ipv4Addr::new(127, 0, 0, 1)), None);
    }

    #[test]
    fn groups_take_devices_from_the_end() {
        let dead = Behaviour {
            dead: true,
            ..Behaviour::default()
        };
        let wrap = Behaviour {
            wrap: true,
            ..Behaviour::default()
        };
        let cfg = SimConfig {
            devices: 10,
            groups: vec![
                Group {
                    count: 2,
                    behaviour: dead.clone(),
                },
                Group {
                    count: 3,
                    behaviour: wrap.clone(),
                },
            ],
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            ..SimConfig::default()
        };
        cfg.validate().unwrap();
        let got: Vec<Behaviour> = (0..10).map(|i| cfg.behaviour(i)).collect();
        assert_eq!(got[..5], vec![Behaviour::default(); 5][..]);
        assert_eq!(got[5..8], vec![wrap; 3][..]);
        assert_eq!(got[8..], vec![dead; 2][..]);
        let too_many = SimConfig { devices: 4, ..cfg };
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn parses_flags() {
        assert_eq!(parse_count_arg("50:1500ms"), Ok((50, Some("1500ms"))));
        assert_eq!(parse_count_arg("7"), Ok((7, None)));
        let u = UserSpec::parse("u:sha256:authpass-x:aes256:privpass-y").unwrap();
        assert_eq!(u.auth, AuthProtocol::Sha256);
        assert_eq!(u.min_level, SecLevel::AuthPriv);
        assert!(!format!("{u:?}").contains("authpass"));
        assert!(UserSpec::parse("u:sha:short").is_err());
        assert!(UserSpec::parse("u:nope:authpass-x").is_err());
    }
}
