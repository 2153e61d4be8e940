//! From walked values to rows: interface rows with their rates against the previous poll
//! ([`crate::rates`] decides when a rate is sound), the interface directory that names flow
//! interfaces, and the rows of user-defined modules with their counter rates.

use std::collections::BTreeMap;
use std::sync::Arc;

use nmsd_parsers::snmp::{Value, hex};
use nmsd_pipeline::enrich::IfInfo;
use nmsd_pipeline::snmp::{CustomKind, CustomRow, CustomValue, DeviceRow, InterfaceRow, Tags};
use rustc_hash::FxHashMap;

use super::plan::{CustomModule, DeviceSpec};
use super::poll::Poll;
use super::transport::V3State;
use super::walk::IfRowBuild;
use crate::rates::{self, Counter, DeviceRates, IfSample, Raw};

/// True when a poll's interfaces have no HC counters at all: from then on the device's
/// ifTable walk asks for the 32-bit ones.
pub(super) fn lacks_hc(polled: &BTreeMap<u32, IfRowBuild>) -> bool {
    !polled.is_empty() && polled.values().all(|r| !r.has_hc())
}

/// The device a poll's rows are written for, and the poll's slot (every row's timestamp).
pub(super) struct RowKey<'a> {
    pub device: &'a Arc<str>,
    pub tags: &'a Tags,
    pub ts_ms: u64,
}

/// Interface rows of a poll whose IF-MIB walks both succeeded, rated against the previous
/// poll's (`rates` holds the baselines and takes this poll's). `sys_uptime` is the system
/// group's sysUpTime, `engine_boots` the v3 agent's: either going back means the agent
/// restarted and no rate spans it. Interfaces gone from the agent lose their baselines.
pub(super) fn interface_rows(
    rates: &mut DeviceRates,
    polled: &BTreeMap<u32, IfRowBuild>,
    sys_uptime: Option<u32>,
    engine_boots: Option<u32>,
    key: &RowKey<'_>,
) -> Vec<InterfaceRow> {
    // Without sysUpTime nothing says the agent did not restart: no rates this poll.
    let note = sys_uptime
        .map(|u| rates.begin_poll(u, engine_boots))
        .unwrap_or(Some(rates::RateNote::First));
    rates.retain(|i| polled.contains_key(&i));
    let mut out = Vec::with_capacity(polled.len());
    for (&if_index, r) in polled {
        let sample = if_sample(r, sys_uptime);
        let rr = rates.interface(note, if_index, &sample);
        if rr.dropped > 0
            && let Some(n) = rr.note
        {
            metrics::counter!("nmsd_snmp_rate_dropped_total", "reason" => n.label())
                .increment(rr.dropped as u64);
        }
        out.push(InterfaceRow {
            ts_ms: key.ts_ms,
            device: key.device.clone(),
            tags: key.tags.clone(),
            if_index,
            if_name: r.name.clone(),
            if_alias: r.alias.clone(),
            if_descr: r.descr.clone(),
            if_type: r.if_type,
            speed_mbps: rates::speed_bps(r.high_speed, r.speed).map(|b| b / 1_000_000),
            admin_status: r.admin,
            oper_status: r.oper,
            counter_bits: if r.has_hc() { 64 } else { 32 },
            counters: sample.counters.map(|c| c.map(Raw::value)),
            interval_s: rr.interval_s,
            in_bps: rr.in_bps,
            out_bps: rr.out_bps,
            in_util: rr.in_util,
            out_util: rr.out_util,
            per_second: rr.per_second,
            rate_note: rr.note.map(|n| n.label()),
        });
    }
    out
}

/// The device row of a finished poll: its health and system group.
pub(super) fn device_row(
    spec: &DeviceSpec,
    v3: Option<&V3State>,
    poll: Poll,
    poll_ms: u32,
    rtt_ms: Option<f64>,
    interfaces: usize,
) -> DeviceRow {
    let (error, error_detail) = match poll.error {
        Some((kind, message)) => (Some(kind), Some(message)),
        None => (None, None),
    };
    DeviceRow {
        ts_ms: poll.slot_ms,
        device: spec.name.clone(),
        tags: spec.tags.clone(),
        address: Some(spec.addr.ip()),
        up: error.is_none(),
        error,
        error_detail,
        sys_name: poll.sys.name,
        sys_descr: poll.sys.descr,
        sys_object_id: poll.sys.object_id,
        sys_location: poll.sys.location,
        sys_contact: poll.sys.contact,
        sys_uptime_ticks: poll.sys.uptime,
        engine_id: v3.map(|s| hex(&s.engine_id)),
        engine_boots: v3.map(|s| s.boots),
        poll_ms,
        rtt_ms,
        requests: poll.requests,
        timeouts: poll.timeouts,
        varbinds: poll.varbinds,
        interfaces: interfaces as u32,
    }
}

/// Counters of a polled row in rate-calculator form: HC counters when present, else ifTable's
/// 32-bit ones (NUcast standing in for multicast, broadcast unknown).
fn if_sample(r: &IfRowBuild, device_uptime: Option<u32>) -> IfSample {
    let mut c = [None; rates::COUNTERS];
    if r.has_hc() {
        c[Counter::InOctets as usize] = r.hc[0].map(Raw::C64);
        c[Counter::InUcastPkts as usize] = r.hc[1].map(Raw::C64);
        c[Counter::InMulticastPkts as usize] = r.hc[2].map(Raw::C64);
        c[Counter::InBroadcastPkts as usize] = r.hc[3].map(Raw::C64);
        c[Counter::OutOctets as usize] = r.hc[4].map(Raw::C64);
        c[Counter::OutUcastPkts as usize] = r.hc[5].map(Raw::C64);
        c[Counter::OutMulticastPkts as usize] = r.hc[6].map(Raw::C64);
        c[Counter::OutBroadcastPkts as usize] = r.hc[7].map(Raw::C64);
    } else {
        c[Counter::InOctets as usize] = r.in_octets32.map(Raw::C32);
        c[Counter::InUcastPkts as usize] = r.in_ucast32.map(Raw::C32);
        c[Counter::InMulticastPkts as usize] = r.in_nucast32.map(Raw::C32);
        c[Counter::OutOctets as usize] = r.out_octets32.map(Raw::C32);
        c[Counter::OutUcastPkts as usize] = r.out_ucast32.map(Raw::C32);
        c[Counter::OutMulticastPkts as usize] = r.out_nucast32.map(Raw::C32);
    }
    c[Counter::InErrors as usize] = r.in_errors.map(Raw::C32);
    c[Counter::OutErrors as usize] = r.out_errors.map(Raw::C32);
    c[Counter::InDiscards as usize] = r.in_discards.map(Raw::C32);
    c[Counter::OutDiscards as usize] = r.out_discards.map(Raw::C32);
    IfSample {
        uptime_ticks: r.counters_uptime.or(device_uptime).unwrap_or(0),
        discontinuity_ticks: r.discontinuity,
        identity: r
            .name
            .as_deref()
            .or(r.descr.as_deref())
            .unwrap_or_default()
            .to_string(),
        speed_bps: rates::speed_bps(r.high_speed, r.speed),
        counters: c,
    }
}

/// What flow enrichment knows of a device's interfaces: names (ifName, else ifDescr), aliases
/// and speeds by ifIndex.
pub(super) fn if_info(polled: &BTreeMap<u32, IfRowBuild>) -> BTreeMap<u32, IfInfo> {
    polled
        .iter()
        .map(|(i, r)| {
            (
                *i,
                IfInfo {
                    name: r.name.clone().or_else(|| r.descr.clone()),
                    alias: r.alias.clone().filter(|a| !a.is_empty()),
                    speed_mbps: rates::speed_bps(r.high_speed, r.speed).map(|b| b / 1_000_000),
                },
            )
        })
        .collect()
}

/// A polled user-defined value, before rates.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CustomCell {
    Num(f64),
    Raw(u64),
    Text(String),
}

/// A polled value as the column's kind reads it; `None` when it cannot be read so.
pub(super) fn custom_cell(kind: CustomKind, v: &Value<'_>) -> Option<CustomCell> {
    match kind {
        CustomKind::Label => match v {
            Value::ObjectId(o) => Some(CustomCell::Text(o.to_string())),
            Value::IpAddress(a) => Some(CustomCell::Text(format!(
                "{}.{}.{}.{}",
                a[0], a[1], a[2], a[3]
            ))),
            Value::Integer(i) => Some(CustomCell::Text(i.to_string())),
            other => other.as_text().map(|t| CustomCell::Text(t.into_owned())),
        },
        CustomKind::Counter => v.as_u64().map(CustomCell::Raw),
        CustomKind::Gauge => match v {
            Value::Integer(i) => Some(CustomCell::Num(*i as f64)),
            // Many MIBs put numbers in DisplayStrings ("12.5").
            Value::OctetString(b) => std::str::from_utf8(b)
                .ok()?
                .trim()
                .parse()
                .ok()
                .map(CustomCell::Num),
            other => other.as_u64().map(|x| CustomCell::Num(x as f64)),
        },
    }
}

/// Rows of one user-defined table: row index → cells in column order.
pub(super) type CustomTableRows = BTreeMap<Vec<u32>, Vec<Option<CustomCell>>>;

/// What one poll collected for the user-defined modules.
#[derive(Debug, Default)]
pub(super) struct CustomPolled {
    /// Scalars by module, in config order.
    pub scalars: BTreeMap<u16, Vec<Option<CustomCell>>>,
    /// Table rows by (module, table), then row index.
    pub tables: BTreeMap<(u16, u16), CustomTableRows>,
}

/// (module, table or u16::MAX for scalars, row index, column) of a user-defined counter.
type CustomKey = (u16, u16, Vec<u32>, u16);

/// Last raw value and agent time (sysUpTime) of each user-defined counter of a device.
#[derive(Debug, Default)]
pub(super) struct CustomBaselines {
    last: FxHashMap<CustomKey, (u64, u32)>,
}

impl CustomBaselines {
    /// Rows of the user-defined modules of a finished poll, with counter rates against the
    /// previous poll (agent time; none on the first poll, after a restart or a counter going
    /// back). Without sysUpTime no rate is computed and the baselines stay as they were.
    pub(super) fn rows(
        &mut self,
        modules: &[CustomModule],
        polled: &CustomPolled,
        sys_uptime: Option<u32>,
        device: &Arc<str>,
        ts_ms: u64,
    ) -> Vec<CustomRow> {
        let mut out = Vec::new();
        let mut convert = |key: CustomKey, cell: &CustomCell| -> CustomValue {
            match cell {
                CustomCell::Num(x) => CustomValue::Gauge(*x),
                CustomCell::Text(t) => CustomValue::Label(t.clone()),
                CustomCell::Raw(raw) => {
                    let rate = match (sys_uptime, self.last.get(&key)) {
                        (Some(now), Some(&(prev, then))) if now > then && *raw >= prev => {
                            Some((*raw - prev) as f64 / ((now - then) as f64 / 100.0))
                        }
                        _ => None,
                    };
                    if let Some(u) = sys_uptime {
                        self.last.insert(key, (*raw, u));
                    }
                    CustomValue::Counter { raw: *raw, rate }
                }
            }
        };
        for (&mi, cells) in &polled.scalars {
            let Some(m) = modules.get(mi as usize) else {
                continue;
            };
            let values = m
                .scalars
                .iter()
                .zip(cells)
                .enumerate()
                .filter_map(|(ci, (c, cell))| {
                    let v = convert((mi, u16::MAX, Vec::new(), ci as u16), cell.as_ref()?);
                    Some((c.name.clone(), v))
                })
                .collect();
            out.push(CustomRow {
                table: m.scalar_table.clone(),
                ts_ms,
                device: device.clone(),
                idx: None,
                values,
            });
        }
        for (&(mi, ti), rows) in &polled.tables {
            let Some(t) = modules
                .get(mi as usize)
                .and_then(|m| m.tables.get(ti as usize))
            else {
                continue;
            };
            for (idx, cells) in rows {
                let values = t
                    .columns
                    .iter()
                    .zip(cells)
                    .enumerate()
                    .filter_map(|(ci, (c, cell))| {
                        let v = convert((mi, ti, idx.clone(), ci as u16), cell.as_ref()?);
                        Some((c.name.clone(), v))
                    })
                    .collect();
                out.push(CustomRow {
                    table: t.table.clone(),
                    ts_ms,
                    device: device.clone(),
                    idx: Some(idx.iter().map(u32::to_string).collect::<Vec<_>>().join(".")),
                    values,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::{CustomOid, CustomTable};
    use nmsd_parsers::snmp::Oid;

    /// One poll of a device's interfaces: the rows it walked and its sysUpTime.
    struct Device {
        name: Arc<str>,
        tags: Tags,
        rates: DeviceRates,
    }

    impl Device {
        fn new() -> Self {
            Device {
                name: Arc::from("r1"),
                tags: Arc::from(vec![(Arc::from("tag_site"), Arc::from("lab"))]),
                rates: DeviceRates::new(),
            }
        }

        fn poll(&mut self, uptime: Option<u32>, rows: &[(u32, IfRowBuild)]) -> Vec<InterfaceRow> {
            self.poll_v3(uptime, None, rows)
        }

        fn poll_v3(
            &mut self,
            uptime: Option<u32>,
            boots: Option<u32>,
            rows: &[(u32, IfRowBuild)],
        ) -> Vec<InterfaceRow> {
            let polled: BTreeMap<u32, IfRowBuild> = rows.iter().cloned().collect();
            let key = RowKey {
                device: &self.name,
                tags: &self.tags,
                ts_ms: 60_000 * uptime.unwrap_or(0) as u64,
            };
            interface_rows(&mut self.rates, &polled, uptime, boots, &key)
        }
    }

    /// A 1 Gb/s interface with HC octet counters.
    fn hc(in_octets: u64, out_octets: u64) -> IfRowBuild {
        let mut r = IfRowBuild {
            name: Some(Arc::from("ge-0/0/0")),
            descr: Some(Arc::from("GigabitEthernet0/0/0")),
            alias: Some(Arc::from("uplink")),
            high_speed: Some(1000),
            speed: Some(u32::MAX as u64),
            admin: Some(1),
            oper: Some(1),
            in_errors: Some(0),
            discontinuity: Some(0),
            ..Default::default()
        };
        r.hc[0] = Some(in_octets);
        r.hc[4] = Some(out_octets);
        r
    }

    /// A 10 Mb/s interface with ifTable's 32-bit counters only.
    fn c32(in_octets: u32, out_octets: u32) -> IfRowBuild {
        IfRowBuild {
            name: Some(Arc::from("eth0")),
            speed: Some(10_000_000),
            in_octets32: Some(in_octets),
            out_octets32: Some(out_octets),
            in_nucast32: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn hc_counters_give_rates_and_utilisation_from_the_second_poll() {
        let mut dev = Device::new();
        let first = dev.poll(Some(1000), &[(1, hc(0, 0))]);
        assert_eq!(first.len(), 1);
        let r = &first[0];
        assert_eq!(r.rate_note, Some("first"));
        assert_eq!((r.in_bps, r.interval_s), (None, None));
        assert_eq!(r.counter_bits, 64);
        assert_eq!(
            r.speed_mbps,
            Some(1000),
            "ifHighSpeed wins over a saturated ifSpeed"
        );
        assert_eq!((&*r.device, r.tags.len(), r.ts_ms), ("r1", 1, 60_000_000));
        // 10 s of agent time later: 12.5 MB in (10 Mb/s, 1 %), 250 MB out (200 Mb/s, 20 %).
        let r = &dev.poll(Some(2000), &[(1, hc(12_500_000, 250_000_000))])[0];
        assert_eq!(r.rate_note, None);
        assert_eq!(r.interval_s, Some(10.0));
        assert_eq!((r.in_bps, r.out_bps), (Some(10e6), Some(200e6)));
        assert_eq!((r.in_util, r.out_util), (Some(1.0), Some(20.0)));
        assert_eq!(r.counters[Counter::InOctets as usize], Some(12_500_000));
        assert_eq!(r.per_second[Counter::InOctets as usize], Some(1_250_000.0));
        assert_eq!(r.per_second[Counter::InErrors as usize], Some(0.0));
        assert_eq!(
            (r.if_name.as_deref(), r.if_alias.as_deref(), r.oper_status),
            (Some("ge-0/0/0"), Some("uplink"), Some(1))
        );
    }

    #[test]
    fn counter32_wrap_is_one_wrap_and_nucast_stands_in_for_multicast() {
        let mut dev = Device::new();
        let first = dev.poll(Some(1000), &[(2, c32(u32::MAX - 999, 10))]);
        assert_eq!(first[0].counter_bits, 32);
        assert_eq!(
            first[0].counters[Counter::InMulticastPkts as usize],
            Some(7)
        );
        assert_eq!(first[0].counters[Counter::InBroadcastPkts as usize], None);
        // 10 s: in wrapped (1000 + 24_000 octets), out did not (12_500 octets).
        let r = &dev.poll(Some(2000), &[(2, c32(24_000, 12_510))])[0];
        assert_eq!(r.rate_note, None);
        assert_eq!(r.in_bps, Some(25_000.0 * 8.0 / 10.0));
        assert_eq!(r.out_bps, Some(10_000.0));
        assert_eq!(r.out_util, Some(0.1), "10 kb/s of 10 Mb/s");
        assert_eq!(r.speed_mbps, Some(10));
    }

    #[test]
    fn sys_uptime_going_back_is_a_restart_and_rates_resume_after_it() {
        let mut dev = Device::new();
        dev.poll(Some(500_000), &[(1, hc(1 << 40, 0))]);
        let r = &dev.poll(Some(300), &[(1, hc(1000, 0))])[0];
        assert_eq!((r.rate_note, r.in_bps), (Some("agent_restart"), None));
        let r = &dev.poll(Some(1300), &[(1, hc(2000, 0))])[0];
        assert_eq!((r.rate_note, r.in_bps), (None, Some(800.0)));
        // A v3 agent's engine boots changing is a restart too, whatever sysUpTime says.
        let mut dev = Device::new();
        dev.poll_v3(Some(1000), Some(4), &[(1, hc(0, 0))]);
        let r = &dev.poll_v3(Some(2000), Some(5), &[(1, hc(1000, 0))])[0];
        assert_eq!(r.rate_note, Some("agent_restart"));
    }

    #[test]
    fn a_discontinuity_or_a_reset_counter_gives_no_rate() {
        let mut dev = Device::new();
        dev.poll(Some(1000), &[(1, hc(5000, 0))]);
        let mut jumped = hc(6000, 100);
        jumped.discontinuity = Some(1500);
        let r = &dev.poll(Some(2000), &[(1, jumped)])[0];
        assert_eq!(
            (r.rate_note, r.in_bps, r.out_bps),
            (Some("discontinuity"), None, None)
        );
        let mut back = hc(10, 200);
        back.discontinuity = Some(1500);
        let r = &dev.poll(Some(3000), &[(1, back)])[0];
        // The HC counter that went back has no rate; the other one still has.
        assert_eq!(r.rate_note, Some("counter_reset"));
        assert_eq!((r.in_bps, r.out_bps), (None, Some(80.0)));
    }

    #[test]
    fn without_sys_uptime_no_rate_is_computed() {
        let mut dev = Device::new();
        dev.poll(Some(1000), &[(1, hc(0, 0))]);
        let r = &dev.poll(None, &[(1, hc(1000, 0))])[0];
        assert_eq!((r.rate_note, r.in_bps), (Some("first"), None));
    }

    #[test]
    fn the_hc_response_clock_rates_the_row() {
        // The walks' responses carry their own sysUpTime; the one that carried the octet
        // counters is the rate's clock, not the system group's.
        let mut dev = Device::new();
        let mut a = hc(0, 0);
        a.counters_uptime = Some(1000);
        dev.poll(Some(990), &[(1, a)]);
        let mut b = hc(1000, 0);
        b.counters_uptime = Some(1500);
        let r = &dev.poll(Some(2000), &[(1, b)])[0];
        assert_eq!(r.interval_s, Some(5.0));
        assert_eq!(r.in_bps, Some(1600.0));
    }

    #[test]
    fn missing_hc_counters_switch_the_device_to_counter32() {
        // An agent without ifXTable counters: the first walk asked for HC ones and got none.
        let no_counters = IfRowBuild {
            name: Some(Arc::from("eth0")),
            in_errors: Some(3),
            ..Default::default()
        };
        let polled: BTreeMap<u32, IfRowBuild> = [(1, no_counters.clone())].into();
        assert!(lacks_hc(&polled));
        assert!(!lacks_hc(&BTreeMap::new()), "no interfaces say nothing");
        let mixed: BTreeMap<u32, IfRowBuild> = [(1, no_counters.clone()), (2, hc(0, 0))].into();
        assert!(!lacks_hc(&mixed));
        let mut dev = Device::new();
        let r = &dev.poll(Some(1000), &[(1, no_counters)])[0];
        assert_eq!((r.counter_bits, r.counters[0]), (32, None));
        // The next poll has ifTable's counters: their first sample, the rest rates.
        let mut next = c32(1000, 0);
        next.in_errors = Some(13);
        let r = &dev.poll(Some(2000), &[(1, next)])[0];
        assert_eq!((r.in_bps, r.rate_note), (None, Some("first")));
        assert_eq!(r.per_second[Counter::InErrors as usize], Some(1.0));
    }

    #[test]
    fn gone_interfaces_lose_their_baseline_and_reindexing_is_caught() {
        let mut dev = Device::new();
        dev.poll(Some(1000), &[(1, hc(0, 0)), (2, c32(0, 0))]);
        let rows = dev.poll(Some(2000), &[(1, hc(1000, 0))]);
        assert_eq!(rows.len(), 1);
        let rows = dev.poll(Some(3000), &[(1, hc(2000, 0)), (2, c32(1000, 0))]);
        assert_eq!(
            rows[1].rate_note,
            Some("first"),
            "ifIndex 2 came back: a new baseline"
        );
        let mut other = hc(3000, 0);
        other.name = Some(Arc::from("ge-0/0/9"));
        let rows = dev.poll(Some(4000), &[(1, other)]);
        assert_eq!(rows[0].rate_note, Some("reindexed"));
    }

    #[test]
    fn a_rate_above_the_declared_speed_is_kept_without_utilisation() {
        let mut dev = Device::new();
        let mut lo = c32(0, 0);
        lo.speed = Some(10_000_000);
        dev.poll(Some(1000), &[(1, lo.clone())]);
        lo.in_octets32 = Some(25_000_000);
        let r = &dev.poll(Some(2000), &[(1, lo)])[0];
        assert_eq!(r.rate_note, Some("exceeds_speed"));
        assert_eq!((r.in_bps, r.in_util), (Some(20e6), None));
        assert_eq!(r.out_util, Some(0.0));
        // No speed at all: rates, no utilisation.
        let mut dev = Device::new();
        let mut tun = hc(0, 0);
        (tun.high_speed, tun.speed) = (Some(0), Some(0));
        dev.poll(Some(1000), &[(1, tun.clone())]);
        tun.hc[0] = Some(1250);
        let r = &dev.poll(Some(2000), &[(1, tun)])[0];
        assert_eq!(
            (r.speed_mbps, r.in_bps, r.in_util),
            (None, Some(1000.0), None)
        );
    }

    #[test]
    fn the_directory_names_interfaces_by_if_name_then_descr() {
        let mut by_descr = c32(0, 0);
        by_descr.name = None;
        by_descr.descr = Some(Arc::from("Ethernet1"));
        by_descr.alias = Some(Arc::from(""));
        let polled: BTreeMap<u32, IfRowBuild> = [(1, hc(0, 0)), (2, by_descr)].into();
        let info = if_info(&polled);
        let one = &info[&1];
        assert_eq!(
            (one.name.as_deref(), one.alias.as_deref(), one.speed_mbps),
            (Some("ge-0/0/0"), Some("uplink"), Some(1000))
        );
        let two = &info[&2];
        assert_eq!(
            (two.name.as_deref(), two.alias.as_deref(), two.speed_mbps),
            (Some("Ethernet1"), None, Some(10)),
            "an empty alias is no alias"
        );
    }

    fn column(name: &str, kind: CustomKind) -> CustomOid {
        CustomOid {
            name: Arc::from(name),
            oid: Oid::from_arcs(&[1, 3, 6, 1, 4, 1, 9999, 1]).expect("a valid OID"),
            kind,
        }
    }

    fn modules() -> Vec<CustomModule> {
        vec![CustomModule {
            name: Arc::from("ups"),
            scalar_table: Arc::from("snmp_ups"),
            scalars: vec![
                column("battery_pct", CustomKind::Gauge),
                column("output_wh", CustomKind::Counter),
            ],
            tables: vec![CustomTable {
                table: Arc::from("snmp_ups_lines"),
                columns: vec![
                    column("label", CustomKind::Label),
                    column("bytes", CustomKind::Counter),
                ],
            }],
        }]
    }

    fn polled(battery: f64, wh: u64, bytes: u64) -> CustomPolled {
        let mut p = CustomPolled::default();
        p.scalars.insert(
            0,
            vec![Some(CustomCell::Num(battery)), Some(CustomCell::Raw(wh))],
        );
        let line = vec![
            Some(CustomCell::Text("L1".into())),
            Some(CustomCell::Raw(bytes)),
        ];
        // A row whose label the agent did not give.
        let partial = vec![None, Some(CustomCell::Raw(bytes * 2))];
        p.tables
            .insert((0, 0), [(vec![1, 2], line), (vec![3], partial)].into());
        p
    }

    fn counter(row: &CustomRow, name: &str) -> Option<(u64, Option<f64>)> {
        row.values.iter().find_map(|(n, v)| match v {
            CustomValue::Counter { raw, rate } if &**n == name => Some((*raw, *rate)),
            _ => None,
        })
    }

    #[test]
    fn custom_rows_carry_gauges_labels_and_counter_rates() {
        let m = modules();
        let dev: Arc<str> = Arc::from("ups1");
        let mut base = CustomBaselines::default();
        let rows = base.rows(&m, &polled(97.5, 1000, 0), Some(1000), &dev, 7);
        assert_eq!(rows.len(), 3, "one scalar row, two table rows");
        let scalars = &rows[0];
        assert_eq!(
            (&*scalars.table, scalars.idx.as_deref(), scalars.ts_ms),
            ("snmp_ups", None, 7)
        );
        assert_eq!(
            scalars.values[0],
            (Arc::from("battery_pct"), CustomValue::Gauge(97.5))
        );
        assert_eq!(
            counter(scalars, "output_wh"),
            Some((1000, None)),
            "first poll: no rate"
        );
        assert_eq!(
            (&*rows[1].table, rows[1].idx.as_deref()),
            ("snmp_ups_lines", Some("1.2"))
        );
        assert_eq!(
            rows[1].values[0],
            (Arc::from("label"), CustomValue::Label("L1".into()))
        );
        assert_eq!(rows[2].idx.as_deref(), Some("3"));
        assert_eq!(rows[2].values.len(), 1, "a missing cell is left out");
        // 20 s of agent time later.
        let rows = base.rows(&m, &polled(97.0, 1400, 5000), Some(3000), &dev, 8);
        assert_eq!(counter(&rows[0], "output_wh"), Some((1400, Some(20.0))));
        assert_eq!(counter(&rows[1], "bytes"), Some((5000, Some(250.0))));
        assert_eq!(counter(&rows[2], "bytes"), Some((10_000, Some(500.0))));
    }

    #[test]
    fn custom_counters_going_back_or_without_agent_time_have_no_rate() {
        let m = modules();
        let dev: Arc<str> = Arc::from("ups1");
        let mut base = CustomBaselines::default();
        base.rows(&m, &polled(1.0, 1000, 0), Some(1000), &dev, 1);
        // The counter went back (agent restart): no rate, and it is the new baseline.
        let rows = base.rows(&m, &polled(1.0, 10, 0), Some(2000), &dev, 2);
        assert_eq!(counter(&rows[0], "output_wh"), Some((10, None)));
        let rows = base.rows(&m, &polled(1.0, 110, 0), Some(3000), &dev, 3);
        assert_eq!(counter(&rows[0], "output_wh"), Some((110, Some(10.0))));
        // sysUpTime going back (counters not): no rate either.
        let rows = base.rows(&m, &polled(1.0, 210, 0), Some(500), &dev, 4);
        assert_eq!(counter(&rows[0], "output_wh"), Some((210, None)));
        // No sysUpTime: no rate, and the baseline (210 at 500) stays.
        let rows = base.rows(&m, &polled(1.0, 9999, 0), None, &dev, 5);
        assert_eq!(counter(&rows[0], "output_wh"), Some((9999, None)));
        let rows = base.rows(&m, &polled(1.0, 310, 0), Some(1500), &dev, 6);
        assert_eq!(counter(&rows[0], "output_wh"), Some((310, Some(10.0))));
    }

    #[test]
    fn custom_cells_read_values_as_their_column_kind() {
        use CustomKind::{Counter as C, Gauge as G, Label as L};
        let oid = Oid::from_arcs(&[1, 3, 6, 1]).expect("a valid OID");
        let text = |s: &str| Some(CustomCell::Text(s.into()));
        assert_eq!(
            custom_cell(L, &Value::IpAddress([10, 0, 0, 1])),
            text("10.0.0.1")
        );
        assert_eq!(custom_cell(L, &Value::Integer(-3)), text("-3"));
        assert_eq!(
            custom_cell(L, &Value::ObjectId(oid.as_ref())),
            text("1.3.6.1")
        );
        assert_eq!(custom_cell(L, &Value::OctetString(b"up")), text("up"));
        assert_eq!(
            custom_cell(G, &Value::OctetString(b" 12.5 ")),
            Some(CustomCell::Num(12.5))
        );
        assert_eq!(custom_cell(G, &Value::OctetString(b"n/a")), None);
        assert_eq!(
            custom_cell(G, &Value::Gauge32(7)),
            Some(CustomCell::Num(7.0))
        );
        assert_eq!(
            custom_cell(G, &Value::Integer(-40)),
            Some(CustomCell::Num(-40.0))
        );
        assert_eq!(
            custom_cell(C, &Value::Counter64(1 << 40)),
            Some(CustomCell::Raw(1 << 40))
        );
        assert_eq!(
            custom_cell(C, &Value::Integer(-1)),
            None,
            "a counter is never negative"
        );
        assert_eq!(custom_cell(C, &Value::OctetString(b"5")), None);
    }
}
