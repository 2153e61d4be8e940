//! The simulated MIB: one sorted OID layout shared by every device, with per-device values.
//!
//! Every device serves the same OIDs (fixture and generated tables), so the layout is built once
//! and sorted by arcs; a cell is either a constant or a function of the device and the time
//! (sysUpTime, counters, names). Counters are exact functions of time — `rate · seconds` since
//! the counter's origin — so whoever polls knows the true rate ([`if_rates`]). Entries can be
//! conditional (HC columns are absent on Counter32-only devices; LLDP and CDP neighbours can be
//! removed at run time), which GET and GETNEXT treat as absent.

use std::cmp::Ordering;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use nmsd_parsers::snmp::Oid;
use nmsd_parsers::snmp::ber::{self, BackWriter};

use super::config::{Behaviour, DataSpec};

/// A value of a `.snmprec` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixtureValue {
    Integer(i64),
    OctetString(Vec<u8>),
    ObjectId(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Counter64(u64),
}

/// A parsed `.snmprec` file (snmpsim's `OID|TAG|VALUE` lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixture {
    pub entries: Vec<(Oid, FixtureValue)>,
}

/// A `.snmprec` line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for FixtureError {}

impl Fixture {
    /// Tags 2 (INTEGER), 4 (OCTET STRING as written, UTF-8 allowed), `4x` (hex octets),
    /// 6 (OID), 64 (IpAddress), 65 (Counter32), 66 (Gauge32), 67 (TimeTicks), 70 (Counter64).
    /// Empty lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, FixtureError> {
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| FixtureError {
                line: n + 1,
                message,
            };
            let mut parts = line.splitn(3, '|');
            let (Some(oid), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("want OID|TAG|VALUE".into()));
            };
            let oid: Oid = oid
                .trim()
                .parse()
                .map_err(|e| err(format!("OID {oid:?}: {e}")))?;
            let num = |what: &str| err(format!("{what} {value:?} out of range or not a number"));
            let v = match tag.trim() {
                "2" => FixtureValue::Integer(value.trim().parse().map_err(|_| num("integer"))?),
                "4" => FixtureValue::OctetString(value.as_bytes().to_vec()),
                "4x" => FixtureValue::OctetString(
                    nmsd_parsers::snmp::unhex(value.trim())
                        .ok_or_else(|| err(format!("bad hex {value:?}")))?,
                ),
                "6" => FixtureValue::ObjectId(
                    value
                        .trim()
                        .parse()
                        .map_err(|e| err(format!("OID value {value:?}: {e}")))?,
                ),
                "64" => FixtureValue::IpAddress(
                    value
                        .trim()
                        .parse::<std::net::Ipv4Addr>()
                        .map_err(|_| err(format!("bad IpAddress {value:?}")))?
                        .octets(),
                ),
                "65" => {
                    FixtureValue::Counter32(value.trim().parse().map_err(|_| num("Counter32"))?)
                }
                "66" => FixtureValue::Gauge32(value.trim().parse().map_err(|_| num("Gauge32"))?),
                "67" => {
                    FixtureValue::TimeTicks(value.trim().parse().map_err(|_| num("TimeTicks"))?)
                }
                "70" => {
                    FixtureValue::Counter64(value.trim().parse().map_err(|_| num("Counter64"))?)
                }
                other => return Err(err(format!("unsupported tag {other:?}"))),
            };
            entries.push((oid, v));
        }
        Ok(Fixture { entries })
    }

    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|e| FixtureError {
            line: 0,
            message: format!("{}: {e}", path.display()),
        })?;
        Fixture::parse(&text)
    }
}

/// BER content octets of an OID given by arcs (the first arc 0–2). Infallible, for the
/// constants of the generated tables.
fn oid(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 4);
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => return out,
    };
    push_sub(&mut out, first);
    for &a in rest {
        push_sub(&mut out, a);
    }
    out
}

fn push_sub(out: &mut Vec<u8>, v: u32) {
    let mut tmp = [0u8; 5];
    let mut i = 5;
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = (v & 0x7F) as u8 | if i == 4 { 0 } else { 0x80 };
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn with(base: &[u8], arcs: &[u32]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &a in arcs {
        push_sub(&mut v, a);
    }
    v
}

/// Compare two minimally encoded OIDs by arcs. Sub-identifiers are self-delimiting, and of two
/// minimal encodings the longer is the larger number; equal lengths compare byte-wise.
pub(crate) fn cmp_oid(a: &[u8], b: &[u8]) -> Ordering {
    fn sub_end(x: &[u8], mut k: usize) -> usize {
        while k < x.len() && x[k] & 0x80 != 0 {
            k += 1;
        }
        (k + 1).min(x.len())
    }
    let (mut i, mut j) = (0, 0);
    loop {
        match (i < a.len(), j < b.len()) {
            (false, false) => return Ordering::Equal,
            (false, true) => return Ordering::Less,
            (true, false) => return Ordering::Greater,
            (true, true) => {}
        }
        let (ea, eb) = (sub_end(a, i), sub_end(b, j));
        let (sa, sb) = (&a[i..ea], &b[j..eb]);
        let o = sa.len().cmp(&sb.len()).then_with(|| sa.cmp(sb));
        if o != Ordering::Equal {
            return o;
        }
        i = ea;
        j = eb;
    }
}

/// Per-second rates of one generated interface; counters grow by exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfRates {
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_ucast: u64,
    pub out_ucast: u64,
    pub in_mcast: u64,
    pub out_mcast: u64,
    pub in_bcast: u64,
    pub out_bcast: u64,
    pub in_errors: u64,
    pub out_errors: u64,
    pub in_discards: u64,
    pub out_discards: u64,
}

/// ifHighSpeed of generated interface `if_index` (every fourth is 10G).
pub fn if_speed_mbps(if_index: u32) -> u32 {
    if if_index.is_multiple_of(4) {
        10_000
    } else {
        1_000
    }
}

/// ifName of generated interface `if_index`.
pub fn if_name(if_index: u32) -> String {
    if if_speed_mbps(if_index) == 10_000 {
        format!("Te0/{if_index}")
    } else {
        format!("Gi0/{if_index}")
    }
}

/// ifDescr of generated interface `if_index`.
pub fn if_descr(if_index: u32) -> String {
    if if_speed_mbps(if_index) == 10_000 {
        format!("TenGigabitEthernet0/{if_index}")
    } else {
        format!("GigabitEthernet0/{if_index}")
    }
}

/// The exact rates of generated interface `if_index` of device `device`: 1–51 % utilisation
/// in, likewise out, 600-byte packets, 2 % multicast and 1 % broadcast, a few errors and
/// discards on some ports.
pub fn if_rates(device: usize, if_index: u32) -> IfRates {
    let d = device as u64;
    let i = if_index as u64;
    let bytes_per_s = if_speed_mbps(if_index) as u64 * 1_000_000 / 8;
    let util_in = 10 + (d * 37 + i * 11) % 500; // per mille
    let util_out = 10 + (d * 53 + i * 7) % 500;
    let in_octets = bytes_per_s * util_in / 1000;
    let out_octets = bytes_per_s * util_out / 1000;
    let (in_pkts, out_pkts) = (in_octets / 600, out_octets / 600);
    IfRates {
        in_octets,
        out_octets,
        in_ucast: in_pkts * 97 / 100,
        out_ucast: out_pkts * 97 / 100,
        in_mcast: in_pkts * 2 / 100,
        out_mcast: out_pkts * 2 / 100,
        in_bcast: in_pkts / 100,
        out_bcast: out_pkts / 100,
        in_errors: if i.is_multiple_of(7) { 1 + d % 3 } else { 0 },
        out_errors: 0,
        in_discards: if i.is_multiple_of(5) { 2 } else { 0 },
        out_discards: if i.is_multiple_of(5) { 1 } else { 0 },
    }
}

/// Which counter a cell shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctr {
    InOctets,
    InUcast,
    InNUcast,
    InMcast,
    InBcast,
    InDiscards,
    InErrors,
    OutOctets,
    OutUcast,
    OutNUcast,
    OutMcast,
    OutBcast,
    OutDiscards,
    OutErrors,
}

/// A value computed per device and request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dyn {
    SysUpTime,
    SysName,
    IfPhysAddress(u32),
    IfAlias(u32),
    Counter {
        if_index: u32,
        ctr: Ctr,
        c64: bool,
    },
    IfDiscontinuityTime,
    LocChassisId,
    LocSysName,
    RemChassisId(u8),
    RemSysName(u8),
    /// cdpCacheAddress of ring neighbour slot 0 or 1: its IPv4 address.
    CdpAddress(u8),
    /// cdpCacheDeviceId of ring neighbour slot 0 or 1: `{sysName}.lab.example`.
    CdpDeviceId(u8),
}

/// Bytes in the layout's string arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Integer(i64),
    OctetString(Span),
    ObjectId(Span),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Counter64(u64),
    Dyn(Dyn),
}

/// When an entry exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Always,
    /// HC counter: absent on Counter32-only devices.
    Hc,
    /// LLDP remote entry of ring neighbour slot 0 (local port 1) or 1 (local port 2).
    Neighbour(u8),
    /// CDP cache entry of ring neighbour slot 0 or 1 (the neighbour there and CDP on).
    CdpNeighbour(u8),
}

/// Bit of [`DevView::neighbours`]: the device serves its CDP cache entries.
pub(crate) const NEIGHBOURS_CDP: u8 = 0b100;

#[derive(Clone, Copy, Debug)]
struct Entry {
    oid_start: u32,
    oid_len: u32,
    cond: Cond,
    cell: Cell,
}

/// Time as one device sees it at one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clock {
    /// Since the agent's boot (before the 2^32 wrap of TimeTicks).
    pub uptime_cs: u64,
    /// Since the counters' origin (boot or last discontinuity).
    pub counter_cs: u64,
    /// ifCounterDiscontinuityTime: sysUpTime at the last discontinuity, 0 if none since boot.
    pub discontinuity_cs: u64,
    pub boots: u32,
    pub engine_time: u32,
}

/// sysUpTime of device `dev` when the simulator starts: devices look like they booted at
/// different times, 1,000 s to about 2 h before.
pub fn initial_uptime_cs(dev: usize) -> u64 {
    (1000 + (dev as u64 * 13) % 6000) * 100
}

impl Clock {
    /// Device `dev`'s clock `since_start` after the simulator started.
    pub(crate) fn at(b: &Behaviour, dev: usize, since_start: Duration) -> Clock {
        let t = (since_start.as_millis() / 10) as u64;
        let cs = |d: Duration| ((d.as_millis() / 10) as u64).max(1);
        let (epoch, boot_at) = match b.restart_every {
            Some(p) => (t / cs(p), t / cs(p) * cs(p)),
            None => (0, 0),
        };
        let uptime_cs = t - boot_at
            + if epoch == 0 {
                initial_uptime_cs(dev)
            } else {
                0
            };
        let (counter_cs, discontinuity_cs) = match b.discontinuity_every {
            Some(p) if t / cs(p) * cs(p) > boot_at => {
                let at = t / cs(p) * cs(p);
                let up_at = uptime_cs - (t - at);
                (uptime_cs - up_at, up_at)
            }
            _ => (uptime_cs, 0),
        };
        Clock {
            uptime_cs,
            counter_cs,
            discontinuity_cs,
            boots: 1 + epoch as u32,
            engine_time: (uptime_cs / 100).min(i32::MAX as u64) as u32,
        }
    }
}

/// What a request needs to know about the device it is for.
pub(crate) struct DevView<'a> {
    pub index: usize,
    pub devices: usize,
    pub prefix: &'a str,
    pub clock: Clock,
    pub c32_only: bool,
    pub wrap: bool,
    /// Ring neighbour slots switched on (bit 0: local port 1, bit 1: local port 2), and CDP
    /// ([`NEIGHBOURS_CDP`]).
    pub neighbours: u8,
    /// Every device's IPv4 address, by index.
    pub ips: &'a [[u8; 4]],
    /// SNMPv1 has no Counter64: such entries are skipped.
    pub v1: bool,
}

impl DevView<'_> {
    /// The ring neighbour in `slot` and its port facing us.
    fn neighbour(&self, slot: u8) -> Option<(usize, u32)> {
        if self.devices < 2 || self.neighbours & (1 << slot) == 0 {
            return None;
        }
        Some(match slot {
            0 => ((self.index + 1) % self.devices, 2),
            _ => ((self.index + self.devices - 1) % self.devices, 1),
        })
    }
}

/// MAC address of device `dev`'s interface `if_index` (0: the chassis), locally administered.
pub fn mac(dev: usize, if_index: u32) -> [u8; 6] {
    let d = (dev as u32 + 1).to_be_bytes();
    let i = (if_index as u16).to_be_bytes();
    [0x02, d[1], d[2], d[3], i[0], i[1]]
}

/// The counter value `base + rate · t` (t in centiseconds).
fn grow(rate: u64, cs: u64, base: u64) -> u64 {
    base.wrapping_add((rate as u128 * cs as u128 / 100) as u64)
}

/// For `--wrap` devices: the start value that makes a counter of this rate pass 2^32 thirty
/// seconds after the simulator started.
fn wrap_base(rate: u64, dev: usize) -> u64 {
    let at = grow(rate, initial_uptime_cs(dev) + 3000, 0) % (1 << 32);
    ((1u64 << 32) - at) % (1 << 32)
}

fn counter_value(v: &DevView<'_>, if_index: u32, ctr: Ctr) -> u64 {
    let r = if_rates(v.index, if_index);
    let one = |rate: u64| {
        let base = if v.wrap { wrap_base(rate, v.index) } else { 0 };
        grow(rate, v.clock.counter_cs, base)
    };
    match ctr {
        Ctr::InOctets => one(r.in_octets),
        Ctr::InUcast => one(r.in_ucast),
        Ctr::InNUcast => one(r.in_mcast).wrapping_add(one(r.in_bcast)),
        Ctr::InMcast => one(r.in_mcast),
        Ctr::InBcast => one(r.in_bcast),
        Ctr::InDiscards => one(r.in_discards),
        Ctr::InErrors => one(r.in_errors),
        Ctr::OutOctets => one(r.out_octets),
        Ctr::OutUcast => one(r.out_ucast),
        Ctr::OutNUcast => one(r.out_mcast).wrapping_add(one(r.out_bcast)),
        Ctr::OutMcast => one(r.out_mcast),
        Ctr::OutBcast => one(r.out_bcast),
        Ctr::OutDiscards => one(r.out_discards),
        Ctr::OutErrors => one(r.out_errors),
    }
}

/// A small formatting buffer for computed strings (no allocation per varbind).
struct Text {
    buf: [u8; 128],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text {
            buf: [0; 128],
            len: 0,
        }
    }

    fn format(args: fmt::Arguments<'_>) -> Self {
        let mut t = Text::new();
        let mut cur = &mut t.buf[..];
        // Too long for the buffer: the text is cut, which is fine for simulated names.
        let _ = cur.write_fmt(args);
        t.len = 128 - cur.len();
        t
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Well-known MIB module roots: a missing OID under one is noSuchInstance (snmpd registers
/// these subtrees), elsewhere noSuchObject.
const KNOWN_ROOTS: &[&[u32]] = &[
    &[1, 3, 6, 1, 2, 1, 1],
    &[1, 3, 6, 1, 2, 1, 2],
    &[1, 3, 6, 1, 2, 1, 3],
    &[1, 3, 6, 1, 2, 1, 4],
    &[1, 3, 6, 1, 2, 1, 5],
    &[1, 3, 6, 1, 2, 1, 6],
    &[1, 3, 6, 1, 2, 1, 7],
    &[1, 3, 6, 1, 2, 1, 11],
    &[1, 3, 6, 1, 2, 1, 17],
    &[1, 3, 6, 1, 2, 1, 25],
    &[1, 3, 6, 1, 2, 1, 31],
    &[1, 3, 6, 1, 2, 1, 47],
    &[1, 0, 8802, 1, 1, 2],
    &[1, 3, 6, 1, 4, 1, 9, 9, 23],
];

const SYS_DESCR: &str = "nmsd-snmpsim simulated router (Linux 6.1 x86_64)";

/// The sorted OIDs every device serves.
pub(crate) struct Layout {
    oids: Vec<u8>,
    entries: Vec<Entry>,
    strings: Vec<u8>,
    roots: Vec<Vec<u8>>,
}

struct Builder {
    items: Vec<(Vec<u8>, Cond, Cell)>,
    strings: Vec<u8>,
}

impl Builder {
    fn span(&mut self, bytes: &[u8]) -> Span {
        let start = self.strings.len() as u32;
        self.strings.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn add(&mut self, oid: Vec<u8>, cond: Cond, cell: Cell) {
        self.items.push((oid, cond, cell));
    }

    fn text(&mut self, oid: Vec<u8>, cond: Cond, s: &str) {
        let span = self.span(s.as_bytes());
        self.add(oid, cond, Cell::OctetString(span));
    }

    fn generate(&mut self, interfaces: u32, lldp: bool, cdp: bool, local_port_ids: bool) {
        use Cond::Always;
        let sys = oid(&[1, 3, 6, 1, 2, 1, 1]);
        self.text(with(&sys, &[1, 0]), Always, SYS_DESCR);
        let obj = self.span(&oid(&[1, 3, 6, 1, 4, 1, 8072, 3, 2, 10]));
        self.add(with(&sys, &[2, 0]), Always, Cell::ObjectId(obj));
        self.add(with(&sys, &[3, 0]), Always, Cell::Dyn(Dyn::SysUpTime));
        self.text(with(&sys, &[4, 0]), Always, "noc@example.net");
        self.add(with(&sys, &[5, 0]), Always, Cell::Dyn(Dyn::SysName));
        self.text(with(&sys, &[6, 0]), Always, "nmsd simulator lab");
        self.add(with(&sys, &[7, 0]), Always, Cell::Integer(72));

        let ift = oid(&[1, 3, 6, 1, 2, 1, 2]);
        self.add(
            with(&ift, &[1, 0]),
            Always,
            Cell::Integer(interfaces as i64),
        );
        let null_oid = self.span(&oid(&[0, 0]));
        let ifx = oid(&[1, 3, 6, 1, 2, 1, 31, 1, 1, 1]);
        for i in 1..=interfaces {
            let col = |c: u32| with(&ift, &[2, 1, c, i]);
            let xcol = |c: u32| with(&ifx, &[c, i]);
            let speed = if_speed_mbps(i);
            let ctr = |ctr: Ctr, c64: bool| {
                Cell::Dyn(Dyn::Counter {
                    if_index: i,
                    ctr,
                    c64,
                })
            };
            self.add(col(1), Always, Cell::Integer(i as i64));
            self.text(col(2), Always, &if_descr(i));
            self.add(col(3), Always, Cell::Integer(6));
            let mtu = if speed == 10_000 { 9216 } else { 1500 };
            self.add(col(4), Always, Cell::Integer(mtu));
            let if_speed = (speed as u64 * 1_000_000).min(u32::MAX as u64) as u32;
            self.add(col(5), Always, Cell::Gauge32(if_speed));
            self.add(col(6), Always, Cell::Dyn(Dyn::IfPhysAddress(i)));
            self.add(col(7), Always, Cell::Integer(1));
            self.add(col(8), Always, Cell::Integer(1));
            self.add(col(9), Always, Cell::TimeTicks(0));
            for (c, k) in [
                (10, Ctr::InOctets),
                (11, Ctr::InUcast),
                (12, Ctr::InNUcast),
                (13, Ctr::InDiscards),
                (14, Ctr::InErrors),
                (16, Ctr::OutOctets),
                (17, Ctr::OutUcast),
                (18, Ctr::OutNUcast),
                (19, Ctr::OutDiscards),
                (20, Ctr::OutErrors),
            ] {
                self.add(col(c), Always, ctr(k, false));
            }
            self.add(col(15), Always, Cell::Counter32(0));
            self.add(col(21), Always, Cell::Gauge32(0));
            self.add(col(22), Always, Cell::ObjectId(null_oid));

            self.text(xcol(1), Always, &if_name(i));
            for (c, k) in [
                (2, Ctr::InMcast),
                (3, Ctr::InBcast),
                (4, Ctr::OutMcast),
                (5, Ctr::OutBcast),
            ] {
                self.add(xcol(c), Always, ctr(k, false));
            }
            for (c, k) in [
                (6, Ctr::InOctets),
                (7, Ctr::InUcast),
                (8, Ctr::InMcast),
                (9, Ctr::InBcast),
                (10, Ctr::OutOctets),
                (11, Ctr::OutUcast),
                (12, Ctr::OutMcast),
                (13, Ctr::OutBcast),
            ] {
                self.add(xcol(c), Cond::Hc, ctr(k, true));
            }
            // Column 14 (ifLinkUpDownTrapEnable) is left out, as net-snmp on Linux does.
            self.add(xcol(15), Always, Cell::Gauge32(speed));
            self.add(xcol(16), Always, Cell::Integer(2));
            self.add(xcol(17), Always, Cell::Integer(1));
            self.add(xcol(18), Always, Cell::Dyn(Dyn::IfAlias(i)));
            self.add(xcol(19), Always, Cell::Dyn(Dyn::IfDiscontinuityTime));
        }
        if !lldp {
            return;
        }
        let loc = oid(&[1, 0, 8802, 1, 1, 2, 1, 3]);
        self.add(with(&loc, &[1, 0]), Always, Cell::Integer(4)); // macAddress
        self.add(with(&loc, &[2, 0]), Always, Cell::Dyn(Dyn::LocChassisId));
        self.add(with(&loc, &[3, 0]), Always, Cell::Dyn(Dyn::LocSysName));
        self.text(with(&loc, &[4, 0]), Always, SYS_DESCR);
        for p in 1..=interfaces {
            // lldpLocPortTable: PortId = ifName (subtype interfaceName), so ports map to ifIndex.
            self.add(with(&loc, &[7, 1, 2, p]), Always, Cell::Integer(5));
            self.text(with(&loc, &[7, 1, 3, p]), Always, &if_name(p));
            self.text(with(&loc, &[7, 1, 4, p]), Always, &if_descr(p));
        }
        let rem = oid(&[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1]);
        for slot in 0..2u8 {
            let port = slot as u32 + 1;
            if port > interfaces {
                break;
            }
            // The neighbour faces us with its other ring port.
            let their = if slot == 0 { 2 } else { 1 };
            let cond = Cond::Neighbour(slot);
            let c = |col: u32| with(&rem, &[col, 0, port, 1]);
            self.add(c(4), cond, Cell::Integer(4));
            self.add(c(5), cond, Cell::Dyn(Dyn::RemChassisId(slot)));
            if local_port_ids {
                self.add(c(6), cond, Cell::Integer(7));
                self.text(c(7), cond, &their.to_string());
            } else {
                self.add(c(6), cond, Cell::Integer(5));
                self.text(c(7), cond, &if_name(their));
            }
            self.text(c(8), cond, &if_descr(their));
            self.add(c(9), cond, Cell::Dyn(Dyn::RemSysName(slot)));
            self.text(c(10), cond, SYS_DESCR);
            // Capabilities bridge(2) and router(4).
            let caps = self.span(&[0x28, 0x00]);
            self.add(c(11), cond, Cell::OctetString(caps));
            self.add(c(12), cond, Cell::OctetString(caps));
        }
        if !cdp {
            return;
        }
        // CISCO-CDP-MIB cdpCacheTable, index cdpCacheIfIndex.cdpCacheDeviceIndex: the same
        // neighbours as LLDP, ports named by ifDescr as Cisco's CDP does.
        let cache = oid(&[1, 3, 6, 1, 4, 1, 9, 9, 23, 1, 2, 1, 1]);
        for slot in 0..2u8 {
            let port = slot as u32 + 1;
            if port > interfaces {
                break;
            }
            let their = if slot == 0 { 2 } else { 1 };
            let cond = Cond::CdpNeighbour(slot);
            let c = |col: u32| with(&cache, &[col, port, 1]);
            self.add(c(3), cond, Cell::Integer(1)); // ip
            self.add(c(4), cond, Cell::Dyn(Dyn::CdpAddress(slot)));
            self.text(c(5), cond, SYS_DESCR);
            self.add(c(6), cond, Cell::Dyn(Dyn::CdpDeviceId(slot)));
            self.text(c(7), cond, &if_descr(their));
            self.text(c(8), cond, "nmsd-snmpsim");
            // Router, switch, IGMP.
            let caps = self.span(&[0, 0, 0, 0x29]);
            self.add(c(9), cond, Cell::OctetString(caps));
        }
    }

    fn fixture(&mut self, f: &Fixture) {
        for (o, v) in &f.entries {
            let cell = match v {
                FixtureValue::Integer(x) => Cell::Integer(*x),
                FixtureValue::OctetString(s) => Cell::OctetString(self.span(s)),
                FixtureValue::ObjectId(x) => Cell::ObjectId(self.span(x.as_bytes())),
                FixtureValue::IpAddress(a) => Cell::IpAddress(*a),
                FixtureValue::Counter32(x) => Cell::Counter32(*x),
                FixtureValue::Gauge32(x) => Cell::Gauge32(*x),
                FixtureValue::TimeTicks(x) => Cell::TimeTicks(*x),
                FixtureValue::Counter64(x) => Cell::Counter64(*x),
            };
            self.add(o.as_bytes().to_vec(), Cond::Always, cell);
        }
    }
}

impl Layout {
    #[cfg(test)]
    pub(crate) fn build(spec: &DataSpec) -> Layout {
        Layout::build_with(spec, false, false)
    }

    /// The layout of `spec`, with CDP cache entries when `cdp` (and LLDP) is on, and
    /// Junos-style remote port IDs with `local_port_ids` (see `SimConfig::lldp_local_port_ids`).
    pub(crate) fn build_with(spec: &DataSpec, cdp: bool, local_port_ids: bool) -> Layout {
        let cdp = cdp && spec.lldp;
        let mut b = Builder {
            items: Vec::new(),
            strings: Vec::new(),
        };
        let mut roots: Vec<Vec<u8>> = Vec::new();
        if let Some(n) = spec.interfaces {
            b.generate(n, spec.lldp, cdp, local_port_ids);
            for r in [
                &[1, 3, 6, 1, 2, 1, 1][..],
                &[1, 3, 6, 1, 2, 1, 2],
                &[1, 3, 6, 1, 2, 1, 31],
            ] {
                roots.push(oid(r));
            }
            if spec.lldp {
                roots.push(oid(&[1, 0, 8802, 1, 1, 2]));
            }
            if cdp {
                roots.push(oid(&[1, 3, 6, 1, 4, 1, 9, 9, 23]));
            }
        }
        if let Some(f) = &spec.fixture {
            b.fixture(f);
            for (o, _) in &f.entries {
                let bytes = o.as_bytes();
                let known = KNOWN_ROOTS
                    .iter()
                    .map(|r| oid(r))
                    .find(|r| bytes.starts_with(r));
                // Outside a known module, the object is the OID less its last arc.
                let root = known.unwrap_or_else(|| parent(bytes).to_vec());
                roots.push(root);
            }
        }
        roots.extend(spec.subtrees.iter().map(|o| o.as_bytes().to_vec()));
        roots.sort();
        roots.dedup();
        // Stable sort: of equal OIDs the later (fixture) one is kept.
        b.items.sort_by(|x, y| cmp_oid(&x.0, &y.0));
        let mut items: Vec<(Vec<u8>, Cond, Cell)> = Vec::with_capacity(b.items.len());
        for it in b.items {
            match items.last_mut() {
                Some(last) if last.0 == it.0 => *last = it,
                _ => items.push(it),
            }
        }
        let mut oids = Vec::new();
        let entries = items
            .into_iter()
            .map(|(o, cond, cell)| {
                let e = Entry {
                    oid_start: oids.len() as u32,
                    oid_len: o.len() as u32,
                    cond,
                    cell,
                };
                oids.extend_from_slice(&o);
                e
            })
            .collect();
        Layout {
            oids,
            entries,
            strings: b.strings,
            roots,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn oid(&self, i: usize) -> &[u8] {
        let e = &self.entries[i];
        &self.oids[e.oid_start as usize..(e.oid_start + e.oid_len) as usize]
    }

    fn span(&self, s: Span) -> &[u8] {
        &self.strings[s.start as usize..(s.start + s.len) as usize]
    }

    /// Whether entry `i` exists for this device.
    pub(crate) fn present(&self, i: usize, v: &DevView<'_>) -> bool {
        let e = &self.entries[i];
        let cond_ok = match e.cond {
            Cond::Always => true,
            Cond::Hc => !v.c32_only,
            Cond::Neighbour(slot) => v.neighbour(slot).is_some(),
            Cond::CdpNeighbour(slot) => {
                v.neighbours & NEIGHBOURS_CDP != 0 && v.neighbour(slot).is_some()
            }
        };
        cond_ok && !(v.v1 && self.is_counter64(i))
    }

    fn is_counter64(&self, i: usize) -> bool {
        matches!(
            self.entries[i].cell,
            Cell::Counter64(_) | Cell::Dyn(Dyn::Counter { c64: true, .. })
        )
    }

    /// The entry with exactly this OID, if the device has it.
    pub(crate) fn get(&self, oid: &[u8], v: &DevView<'_>) -> Option<usize> {
        let i = self.lower_bound(oid);
        (i < self.len() && self.oid(i) == oid && self.present(i, v)).then_some(i)
    }

    /// First index whose OID is ≥ `oid`.
    fn lower_bound(&self, oid: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cmp_oid(self.oid(mid), oid) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// First index whose OID is > `oid`.
    pub(crate) fn upper_bound(&self, oid: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cmp_oid(self.oid(mid), oid) != Ordering::Greater {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The first entry at or after index `from` that the device has.
    pub(crate) fn present_from(&self, mut from: usize, v: &DevView<'_>) -> Option<usize> {
        while from < self.len() {
            if self.present(from, v) {
                return Some(from);
            }
            from += 1;
        }
        None
    }

    /// Whether `oid` is under a registered subtree (a missing instance there is noSuchInstance).
    pub(crate) fn registered(&self, oid: &[u8]) -> bool {
        // Sub-identifiers are self-delimiting, so a byte prefix is an arc prefix.
        self.roots.iter().any(|r| oid.starts_with(r))
    }

    /// Prepend entry `i`'s value for this device.
    pub(crate) fn encode_value(&self, w: &mut BackWriter, i: usize, v: &DevView<'_>) {
        match self.entries[i].cell {
            Cell::Integer(x) => w.integer(ber::INTEGER, x),
            Cell::OctetString(s) => w.tlv(ber::OCTET_STRING, self.span(s)),
            Cell::ObjectId(s) => w.tlv(ber::OBJECT_IDENTIFIER, self.span(s)),
            Cell::IpAddress(a) => w.tlv(ber::IP_ADDRESS, &a),
            Cell::Counter32(x) => w.unsigned(ber::COUNTER32, x as u64),
            Cell::Gauge32(x) => w.unsigned(ber::GAUGE32, x as u64),
            Cell::TimeTicks(x) => w.unsigned(ber::TIMETICKS, x as u64),
            Cell::Counter64(x) => w.unsigned(ber::COUNTER64, x),
            Cell::Dyn(d) => encode_dyn(w, d, v),
        }
    }
}

fn parent(o: &[u8]) -> &[u8] {
    // Drop the last sub-identifier: back up over its final octet and its continuation octets.
    let mut k = o.len().saturating_sub(1);
    while k > 0 && o[k - 1] & 0x80 != 0 {
        k -= 1;
    }
    &o[..k]
}

fn ticks(cs: u64) -> u64 {
    cs % (1 << 32)
}

fn encode_dyn(w: &mut BackWriter, d: Dyn, v: &DevView<'_>) {
    let name = |dev: usize| Text::format(format_args!("{}-{:04}", v.prefix, dev + 1));
    match d {
        Dyn::SysUpTime => w.unsigned(ber::TIMETICKS, ticks(v.clock.uptime_cs)),
        Dyn::SysName | Dyn::LocSysName => w.tlv(ber::OCTET_STRING, name(v.index).as_bytes()),
        Dyn::IfPhysAddress(i) => w.tlv(ber::OCTET_STRING, &mac(v.index, i)),
        Dyn::LocChassisId => w.tlv(ber::OCTET_STRING, &mac(v.index, 0)),
        Dyn::IfAlias(i) => {
            let t = match v
                .neighbour(0)
                .filter(|_| i == 1)
                .or(v.neighbour(1).filter(|_| i == 2))
            {
                Some((n, port)) => Text::format(format_args!(
                    "to {}-{:04} {}",
                    v.prefix,
                    n + 1,
                    if_name(port)
                )),
                // Every third port has no alias: empty strings must work too.
                None if i.is_multiple_of(3) => Text::new(),
                None => Text::format(format_args!("access port {i}")),
            };
            w.tlv(ber::OCTET_STRING, t.as_bytes());
        }
        Dyn::Counter { if_index, ctr, c64 } => {
            let x = counter_value(v, if_index, ctr);
            if c64 {
                w.unsigned(ber::COUNTER64, x);
            } else {
                w.unsigned(ber::COUNTER32, x % (1 << 32));
            }
        }
        Dyn::IfDiscontinuityTime => w.unsigned(ber::TIMETICKS, ticks(v.clock.discontinuity_cs)),
        Dyn::RemChassisId(slot) => match v.neighbour(slot) {
            Some((n, _)) => w.tlv(ber::OCTET_STRING, &mac(n, 0)),
            None => w.tlv(ber::OCTET_STRING, &[]),
        },
        Dyn::RemSysName(slot) => match v.neighbour(slot) {
            Some((n, _)) => w.tlv(ber::OCTET_STRING, name(n).as_bytes()),
            None => w.tlv(ber::OCTET_STRING, &[]),
        },
        Dyn::CdpAddress(slot) => {
            let ip = v
                .neighbour(slot)
                .and_then(|(n, _)| v.ips.get(n))
                .copied()
                .unwrap_or_default();
            w.tlv(ber::OCTET_STRING, &ip);
        }
        Dyn::CdpDeviceId(slot) => match v.neighbour(slot) {
            Some((n, _)) => {
                let id = Text::format(format_args!("{}-{:04}.lab.example", v.prefix, n + 1));
                w.tlv(ber::OCTET_STRING, id.as_bytes());
            }
            None => w.tlv(ber::OCTET_STRING, &[]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_parsers::snmp::Value;
    use nmsd_parsers::snmp::ber::Reader;

    fn view(index: usize, devices: usize, clock: Clock) -> DevView<'static> {
        DevView {
            index,
            devices,
            prefix: "sim",
            clock,
            c32_only: false,
            wrap: false,
            neighbours: 0b11,
            ips: &[[127, 0, 1, 1], [127, 0, 1, 2], [127, 0, 1, 3]],
            v1: false,
        }
    }

    fn value_of(layout: &Layout, i: usize, v: &DevView<'_>) -> (u8, Vec<u8>) {
        let mut w = BackWriter::default();
        layout.encode_value(&mut w, i, v);
        let (tag, c) = Reader::new(w.as_bytes()).read_any().unwrap();
        (tag, c.to_vec())
    }

    fn find(layout: &Layout, s: &str, v: &DevView<'_>) -> Option<usize> {
        let o: Oid = s.parse().unwrap();
        layout.get(o.as_bytes(), v)
    }

    #[test]
    fn parses_every_tag() {
        let f = Fixture::parse(
            "# comment\n\n1.3.6.1.2.1.1.1.0|4|Zürich|pipe\r\n.1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.8072\n\
             1.3.6.1.2.1.2.2.1.6.1|4x|00ff10\n1.3.6.1.2.1.4.20.1.1.10.0.0.1|64|10.0.0.1\n\
             1.3.6.1.2.1.2.2.1.10.1|65|4294967295\n1.3.6.1.2.1.2.2.1.5.1|66|7\n\
             1.3.6.1.2.1.1.3.0|67|42\n1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551610\n\
             1.3.6.1.2.1.1.7.0|2|-5\n1.3.6.1.2.1.1.4.0|4|\n",
        )
        .unwrap();
        let vals: Vec<&FixtureValue> = f.entries.iter().map(|(_, v)| v).collect();
        assert_eq!(
            vals,
            vec![
                &FixtureValue::OctetString("Zürich|pipe".as_bytes().to_vec()),
                &FixtureValue::ObjectId("1.3.6.1.4.1.8072".parse().unwrap()),
                &FixtureValue::OctetString(vec![0, 0xff, 0x10]),
                &FixtureValue::IpAddress([10, 0, 0, 1]),
                &FixtureValue::Counter32(u32::MAX),
                &FixtureValue::Gauge32(7),
                &FixtureValue::TimeTicks(42),
                &FixtureValue::Counter64(18_446_744_073_709_551_610),
                &FixtureValue::Integer(-5),
                &FixtureValue::OctetString(Vec::new()),
            ]
        );
        for bad in [
            "1.3.6|2",
            "1.3.6.1|65|4294967296",
            "1.3.6.1|4x|0g",
            "1.3.6.1|4x|0",
            "x.y|2|1",
            "1.3.6.1|99|1",
            "1.3.6.1|64|1.2.3",
        ] {
            let e = Fixture::parse(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
        }
    }

    #[test]
    fn compares_by_arcs() {
        let ords = [
            "0.0",
            "1.0.8802.1.1.2",
            "1.3.6.1.2.1.2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "1.3.6.1.2.1.2.2.1.2.128",
            "1.3.6.1.2.1.2.2.1.2.16383",
            "1.3.6.1.2.1.2.2.1.2.16384",
            "1.3.6.1.2.1.2.2.1.2.16384.0",
            "1.3.6.1.2.1.2.2.1.3",
            "2.999.1",
        ];
        let oids: Vec<Oid> = ords.iter().map(|s| s.parse().unwrap()).collect();
        for (i, a) in oids.iter().enumerate() {
            for (j, b) in oids.iter().enumerate() {
                assert_eq!(cmp_oid(a.as_bytes(), b.as_bytes()), i.cmp(&j), "{a} vs {b}");
                assert_eq!(a.cmp(b), i.cmp(&j), "codec order agrees");
            }
        }
        let o: Oid = "1.3.6.1.4.1.16384.7".parse().unwrap();
        assert_eq!(
            parent(o.as_bytes()),
            with(&oid(&[1, 3, 6, 1, 4, 1]), &[16384])
        );
    }

    #[test]
    fn layout_is_sorted_and_fixture_wins() {
        let fixture =
            Fixture::parse("1.3.6.1.2.1.1.5.0|4|fixed-name\n1.3.6.1.4.1.99.1.16384|2|1\n").unwrap();
        let layout = Layout::build(&DataSpec {
            interfaces: Some(6),
            lldp: true,
            fixture: Some(fixture),
            subtrees: Vec::new(),
        });
        for i in 1..layout.len() {
            assert_eq!(
                cmp_oid(layout.oid(i - 1), layout.oid(i)),
                Ordering::Less,
                "entry {i}"
            );
        }
        let v = view(0, 3, Clock::at(&Behaviour::default(), 0, Duration::ZERO));
        let name = find(&layout, "1.3.6.1.2.1.1.5.0", &v).unwrap();
        assert_eq!(value_of(&layout, name, &v).1, b"fixed-name");
        // Registered: the known module roots, and for other OIDs the parent object.
        for (s, reg) in [
            ("1.3.6.1.2.1.2.2.1.2.99", true),
            ("1.3.6.1.2.1.4.1.0", false),
            ("1.3.6.1.4.1.99.1.5", true),
            ("1.3.6.1.4.1.99.2", false),
        ] {
            let o: Oid = s.parse().unwrap();
            assert_eq!(layout.registered(o.as_bytes()), reg, "{s}");
        }
    }

    #[test]
    fn counters_follow_rates_exactly() {
        let layout = Layout::build(&DataSpec {
            interfaces: Some(4),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        });
        let b = Behaviour::default();
        let at = |secs: u64, c32: bool| {
            let mut v = view(5, 10, Clock::at(&b, 5, Duration::from_secs(secs)));
            v.c32_only = c32;
            v
        };
        let hc_in = find(&layout, "1.3.6.1.2.1.31.1.1.1.6.3", &at(0, false)).unwrap();
        let c32_in = find(&layout, "1.3.6.1.2.1.2.2.1.10.3", &at(0, false)).unwrap();
        let up = find(&layout, "1.3.6.1.2.1.1.3.0", &at(0, false)).unwrap();
        let read = |i: usize, v: &DevView<'_>| {
            let (tag, c) = value_of(&layout, i, v);
            Value::decode(tag, &c).unwrap().as_u64().unwrap()
        };
        let (v0, v1) = (at(100, false), at(160, false));
        let dt = (read(up, &v1) - read(up, &v0)) as f64 / 100.0;
        assert_eq!(dt, 60.0);
        let rate = (read(hc_in, &v1) - read(hc_in, &v0)) as f64 / dt;
        assert_eq!(rate as u64, if_rates(5, 3).in_octets);
        assert_eq!(read(c32_in, &v1), read(hc_in, &v1) % (1 << 32));
        // Counter32-only devices have no HC columns.
        assert!(find(&layout, "1.3.6.1.2.1.31.1.1.1.6.3", &at(0, true)).is_none());
        assert!(find(&layout, "1.3.6.1.2.1.31.1.1.1.15.3", &at(0, true)).is_some());
    }

    #[test]
    fn restarts_discontinuities_and_wraps() {
        let restart = Behaviour {
            restart_every: Some(Duration::from_secs(60)),
            ..Behaviour::default()
        };
        let c = Clock::at(&restart, 2, Duration::from_secs(59));
        assert_eq!((c.boots, c.uptime_cs), (1, initial_uptime_cs(2) + 5900));
        let c = Clock::at(&restart, 2, Duration::from_secs(61));
        assert_eq!((c.boots, c.uptime_cs, c.counter_cs), (2, 100, 100));
        assert_eq!(c.engine_time, 1);

        let disc = Behaviour {
            discontinuity_every: Some(Duration::from_secs(30)),
            ..Behaviour::default()
        };
        let c = Clock::at(&disc, 0, Duration::from_secs(29));
        assert_eq!(c.discontinuity_cs, 0);
        let c = Clock::at(&disc, 0, Duration::from_secs(45));
        assert_eq!(c.boots, 1);
        assert_eq!(c.counter_cs, 1500);
        assert_eq!(c.discontinuity_cs, initial_uptime_cs(0) + 3000);
        assert_eq!(c.uptime_cs, initial_uptime_cs(0) + 4500);

        let mut v = view(3, 4, Clock::at(&Behaviour::default(), 3, Duration::ZERO));
        v.wrap = true;
        let rate = if_rates(3, 1).in_octets;
        let before = {
            v.clock = Clock::at(&Behaviour::default(), 3, Duration::from_secs(29));
            counter_value(&v, 1, Ctr::InOctets) % (1 << 32)
        };
        let after = {
            v.clock = Clock::at(&Behaviour::default(), 3, Duration::from_secs(31));
            counter_value(&v, 1, Ctr::InOctets) % (1 << 32)
        };
        assert!(before > (1 << 32) - 2 * rate, "near the top before 30 s");
        assert!(after < 2 * rate, "wrapped after 30 s");
    }

    #[test]
    fn lldp_ring_names_the_neighbours() {
        let layout = Layout::build(&DataSpec {
            interfaces: Some(4),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        });
        let clock = Clock::at(&Behaviour::default(), 0, Duration::ZERO);
        let v = view(0, 5, clock);
        let sys = find(&layout, "1.0.8802.1.1.2.1.4.1.1.9.0.1.1", &v).unwrap();
        assert_eq!(value_of(&layout, sys, &v).1, b"sim-0002");
        let sys = find(&layout, "1.0.8802.1.1.2.1.4.1.1.9.0.2.1", &v).unwrap();
        assert_eq!(value_of(&layout, sys, &v).1, b"sim-0005");
        let port = find(&layout, "1.0.8802.1.1.2.1.4.1.1.7.0.1.1", &v).unwrap();
        assert_eq!(value_of(&layout, port, &v).1, b"Gi0/2");
        let alias = find(&layout, "1.3.6.1.2.1.31.1.1.1.18.1", &v).unwrap();
        assert_eq!(value_of(&layout, alias, &v).1, b"to sim-0002 Gi0/2");
        // A removed neighbour and a lone device have no remote entries.
        let mut gone = view(0, 5, clock);
        gone.neighbours = 0b10;
        assert!(find(&layout, "1.0.8802.1.1.2.1.4.1.1.9.0.1.1", &gone).is_none());
        assert!(find(&layout, "1.0.8802.1.1.2.1.4.1.1.9.0.2.1", &gone).is_some());
        let alone = view(0, 1, clock);
        assert!(find(&layout, "1.0.8802.1.1.2.1.4.1.1.9.0.2.1", &alone).is_none());
    }

    #[test]
    fn cdp_cache_follows_the_ring_when_on() {
        let spec = DataSpec {
            interfaces: Some(4),
            lldp: true,
            fixture: None,
            subtrees: Vec::new(),
        };
        let clock = Clock::at(&Behaviour::default(), 0, Duration::ZERO);
        let mut v = view(0, 3, clock);
        v.neighbours |= NEIGHBOURS_CDP;
        // Off in the layout: nothing under CISCO-CDP-MIB, not even registered.
        let plain = Layout::build(&spec);
        assert!(find(&plain, "1.3.6.1.4.1.9.9.23.1.2.1.1.6.1.1", &v).is_none());
        let o: Oid = "1.3.6.1.4.1.9.9.23.1.2.1.1.6.1.1".parse().unwrap();
        assert!(!plain.registered(o.as_bytes()));

        let layout = Layout::build_with(&spec, true, false);
        assert!(layout.registered(o.as_bytes()));
        let get = |s: &str, v: &DevView<'_>| find(&layout, s, v).map(|i| value_of(&layout, i, v));
        // Local ifIndex 1 faces device 1's port 2; ifIndex 2 faces device 2's port 1.
        let id = get("1.3.6.1.4.1.9.9.23.1.2.1.1.6.1.1", &v).unwrap();
        assert_eq!(id.1, b"sim-0002.lab.example");
        let port = get("1.3.6.1.4.1.9.9.23.1.2.1.1.7.1.1", &v).unwrap();
        assert_eq!(port.1, b"GigabitEthernet0/2");
        let addr = get("1.3.6.1.4.1.9.9.23.1.2.1.1.4.1.1", &v).unwrap();
        assert_eq!(addr, (ber::OCTET_STRING, vec![127, 0, 1, 2]));
        let addr = get("1.3.6.1.4.1.9.9.23.1.2.1.1.4.2.1", &v).unwrap();
        assert_eq!(addr.1, vec![127, 0, 1, 3]);
        let kind = get("1.3.6.1.4.1.9.9.23.1.2.1.1.3.2.1", &v).unwrap();
        assert_eq!(Value::decode(kind.0, &kind.1).unwrap(), Value::Integer(1));
        // CDP off for the device, or the cable gone: no entry.
        let mut off = view(0, 3, clock);
        off.neighbours = 0b11;
        assert!(get("1.3.6.1.4.1.9.9.23.1.2.1.1.6.1.1", &off).is_none());
        let mut cut = view(0, 3, clock);
        cut.neighbours = 0b10 | NEIGHBOURS_CDP;
        assert!(get("1.3.6.1.4.1.9.9.23.1.2.1.1.6.1.1", &cut).is_none());
        assert!(get("1.3.6.1.4.1.9.9.23.1.2.1.1.6.2.1", &cut).is_some());
    }
}
