//! Turning records into ILP rows.

use std::fmt::Write as _;
use std::net::IpAddr;

use nmsd_pipeline::event::Event;
use nmsd_pipeline::records::{Direction, FlowRecord, RollupRow};
use nmsd_pipeline::snmp::{CustomRow, CustomValue, DeviceRow, InterfaceRow, LinkRow, TrapRow};
use questdb::ingress::{Buffer, ColumnName, TableName, TimestampMicros};

use super::schema::TableNames;

/// A column name known to be valid: skips per-row validation.
#[inline]
fn c(name: &'static str) -> ColumnName<'static> {
    ColumnName::new_unchecked(name)
}

/// Which batch a row came in and where in it: written to the `batch_id` and `batch_row` columns of
/// the tables without a natural key, whose DEDUP keys (ts, batch_id, batch_row) make a row
/// replayed from the disk buffer, or resent after a timeout, land on its first copy
/// (decision 0017).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowKey {
    pub batch: u64,
    pub row: u32,
}

impl RowKey {
    fn write(self, buf: &mut Buffer) -> questdb::Result<&mut Buffer> {
        // Batch ids are microseconds since 1970 plus a counter: far below i64::MAX.
        buf.column_i64(c("batch_id"), self.batch.min(i64::MAX as u64) as i64)?
            .column_i64(c("batch_row"), i64::from(self.row))
    }
}

/// Writes rows into ILP buffers, reusing its scratch strings.
pub struct RowWriter {
    names: TableNames,
    /// Last exporter formatted: batches usually come from one exporter.
    exporter_cache: Option<(IpAddr, String)>,
    scratch: String,
    /// Flow source names by position; empty writes no `source` column.
    source_names: Vec<String>,
}

impl RowWriter {
    /// `names` must be valid QuestDB table names (checked by [`validate_names`]).
    pub fn new(names: TableNames) -> Self {
        RowWriter {
            names,
            exporter_cache: None,
            scratch: String::with_capacity(64),
            source_names: Vec::new(),
        }
    }

    /// Write each flow's source name (by its position) to a `source` column.
    pub fn with_source_names(mut self, names: Vec<String>) -> Self {
        self.source_names = names;
        self
    }

    fn exporter_str(cache: &mut Option<(IpAddr, String)>, a: IpAddr) -> &str {
        if cache.as_ref().is_none_or(|(c, _)| *c != a) {
            *cache = Some((a, a.to_string()));
        }
        cache.as_ref().map_or("", |(_, s)| s.as_str())
    }

    /// Append one `flows` row.
    pub fn flow(&mut self, buf: &mut Buffer, f: &FlowRecord, key: RowKey) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.flows);
        let exporter = Self::exporter_str(&mut self.exporter_cache, f.exporter);
        buf.table(table)?
            .symbol(c("exporter"), exporter)?
            .symbol(c("version"), f.version.label())?;
        if let Some(n) = self.source_names.get(f.source as usize) {
            buf.symbol(c("source"), n)?;
        }
        match f.direction {
            Direction::Ingress => buf.symbol(c("direction"), "ingress")?,
            Direction::Egress => buf.symbol(c("direction"), "egress")?,
            Direction::Unknown => buf,
        };
        buf.column_ts(c("start_ts"), TimestampMicros::new(micros(f.start_ms)))?
            .column_i64(c("observation_domain"), f.observation_domain as i64)?;
        self.addr(buf, c("src_ipv4"), c("src_ipv6"), f.src_addr)?;
        self.addr(buf, c("dst_ipv4"), c("dst_ipv6"), f.dst_addr)?;
        if !f.next_hop.is_unspecified() {
            self.addr(buf, c("next_hop_ipv4"), c("next_hop_ipv6"), f.next_hop)?;
        }
        buf.column_i64(c("src_port"), f.src_port as i64)?
            .column_i64(c("dst_port"), f.dst_port as i64)?
            .column_i64(c("protocol"), f.protocol as i64)?
            .column_i64(c("tcp_flags"), f.tcp_flags as i64)?
            .column_i64(c("tos"), f.tos as i64)?
            .column_i64(c("in_if"), f.in_if as i64)?
            .column_i64(c("out_if"), f.out_if as i64)?
            .column_i64(c("src_as"), f.src_as as i64)?
            .column_i64(c("dst_as"), f.dst_as as i64)?
            .column_i64(c("vlan"), f.vlan as i64)?
            .column_i64(c("bytes"), clamp(f.bytes))?
            .column_i64(c("packets"), clamp(f.packets))?
            .column_i64(c("sampling_interval"), f.sampling_interval as i64)?;
        key.write(buf)?.at(TimestampMicros::new(micros(f.end_ms)))
    }

    /// Append one roll-up row, with the interface names an `interface_names` processor
    /// upstream added.
    pub fn rollup(&mut self, buf: &mut Buffer, r: &RollupRow, key: RowKey) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.rollup);
        let exporter = Self::exporter_str(&mut self.exporter_cache, r.exporter);
        buf.table(table)?.symbol(c("exporter"), exporter)?;
        if let Some(n) = self.source_names.get(r.source as usize) {
            buf.symbol(c("source"), n)?;
        }
        let in_if = r.in_if_info.as_deref();
        let out_if = r.out_if_info.as_deref();
        // Symbols come before the other columns in ILP.
        if let Some(n) = in_if.and_then(|i| i.name.as_deref()) {
            buf.symbol(c("in_if_name"), n)?;
        }
        if let Some(n) = out_if.and_then(|i| i.name.as_deref()) {
            buf.symbol(c("out_if_name"), n)?;
        }
        for (col, info) in [("in_if_alias", in_if), ("out_if_alias", out_if)] {
            if let Some(a) = info.and_then(|i| i.alias.as_deref()) {
                buf.column_str(c(col), a)?;
            }
        }
        for (col, info) in [("in_if_speed_mbps", in_if), ("out_if_speed_mbps", out_if)] {
            if let Some(sp) = info.and_then(|i| i.speed_mbps) {
                buf.column_i64(c(col), clamp(sp))?;
            }
        }
        self.addr(buf, c("src_ipv4"), c("src_ipv6"), r.src_addr)?;
        self.addr(buf, c("dst_ipv4"), c("dst_ipv6"), r.dst_addr)?;
        buf.column_i64(c("protocol"), r.protocol as i64)?
            .column_i64(c("dst_port"), r.dst_port as i64)?
            .column_i64(c("in_if"), r.in_if as i64)?
            .column_i64(c("out_if"), r.out_if as i64)?
            .column_i64(c("bytes"), clamp(r.bytes))?
            .column_i64(c("packets"), clamp(r.packets))?
            .column_i64(c("flows"), clamp(r.flows))?;
        key.write(buf)?
            .at(TimestampMicros::new(micros(r.window_start_ms)))
    }

    /// IPv4 goes to the `IPV4` column (as its dotted string, which QuestDB parses), IPv6 to the
    /// text column; the other stays null.
    fn addr(
        &mut self,
        buf: &mut Buffer,
        v4: ColumnName<'static>,
        v6: ColumnName<'static>,
        a: IpAddr,
    ) -> questdb::Result<()> {
        self.scratch.clear();
        let _ = write!(self.scratch, "{a}");
        match a {
            IpAddr::V4(_) => buf.column_str(v4, self.scratch.as_str())?,
            IpAddr::V6(_) => buf.column_str(v6, self.scratch.as_str())?,
        };
        Ok(())
    }
}

/// Counter columns of `snmp_interface`, in `InterfaceRow::counters` order.
const IF_COUNTERS: [&str; 12] = [
    "in_octets",
    "out_octets",
    "in_ucast_pkts",
    "out_ucast_pkts",
    "in_mcast_pkts",
    "out_mcast_pkts",
    "in_bcast_pkts",
    "out_bcast_pkts",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
];

/// Per-second rate columns for the packet, error and discard counters (octets become bps).
const IF_RATES: [&str; 12] = [
    "",
    "",
    "in_ucast_pps",
    "out_ucast_pps",
    "in_mcast_pps",
    "out_mcast_pps",
    "in_bcast_pps",
    "out_bcast_pps",
    "in_errors_ps",
    "out_errors_ps",
    "in_discards_ps",
    "out_discards_ps",
];

impl RowWriter {
    /// Append one `snmp_interface` row. Null values are left out (QuestDB stores NULL).
    pub fn snmp_interface(&mut self, buf: &mut Buffer, r: &InterfaceRow) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.snmp_interface);
        buf.table(table)?.symbol(c("device"), &*r.device)?;
        tags(buf, &r.tags)?;
        if let Some(n) = &r.if_name {
            buf.symbol(c("if_name"), &**n)?;
        }
        if let Some(n) = r.rate_note {
            buf.symbol(c("rate_note"), n)?;
        }
        buf.column_i64(c("if_index"), r.if_index as i64)?;
        if let Some(a) = &r.if_alias {
            buf.column_str(c("if_alias"), &**a)?;
        }
        if let Some(d) = &r.if_descr {
            buf.column_str(c("if_descr"), &**d)?;
        }
        if let Some(t) = r.if_type {
            buf.column_i64(c("if_type"), t.clamp(0, i16::MAX as i64))?;
        }
        if let Some(sp) = r.speed_mbps {
            buf.column_i64(c("speed_mbps"), clamp(sp))?;
        }
        if let Some(a) = r.admin_status {
            buf.column_i64(c("admin_status"), a.clamp(0, 127))?;
        }
        if let Some(o) = r.oper_status {
            buf.column_i64(c("oper_status"), o.clamp(0, 127))?;
        }
        buf.column_i64(c("counter_bits"), r.counter_bits as i64)?;
        for (name, v) in IF_COUNTERS.iter().zip(r.counters) {
            // LONG's minimum is QuestDB's NULL: Counter64 values of 2^63 and more cannot be
            // stored and stay null (rates are computed in u64 and are unaffected).
            if let Some(v) = v.filter(|&v| v <= i64::MAX as u64) {
                buf.column_i64(c(name), v as i64)?;
            }
        }
        for (name, v) in [
            ("interval_s", r.interval_s),
            ("in_bps", r.in_bps),
            ("out_bps", r.out_bps),
            ("in_util", r.in_util),
            ("out_util", r.out_util),
        ] {
            if let Some(v) = v {
                buf.column_f64(c(name), v)?;
            }
        }
        for (name, v) in IF_RATES.iter().zip(r.per_second) {
            if let (false, Some(v)) = (name.is_empty(), v) {
                buf.column_f64(c(name), v)?;
            }
        }
        buf.at(TimestampMicros::new(micros(r.ts_ms)))
    }

    /// Append one `snmp_device` row.
    pub fn snmp_device(&mut self, buf: &mut Buffer, r: &DeviceRow) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.snmp_device);
        buf.table(table)?.symbol(c("device"), &*r.device)?;
        tags(buf, &r.tags)?;
        if let Some(e) = r.error {
            buf.symbol(c("error"), e)?;
        }
        if let Some(a) = r.address {
            self.addr(buf, c("address_ipv4"), c("address_ipv6"), a)?;
        }
        buf.column_bool(c("up"), r.up)?;
        for (name, v) in [
            ("error_detail", &r.error_detail),
            ("sys_name", &r.sys_name),
            ("sys_descr", &r.sys_descr),
            ("sys_object_id", &r.sys_object_id),
            ("sys_location", &r.sys_location),
            ("sys_contact", &r.sys_contact),
            ("engine_id", &r.engine_id),
        ] {
            if let Some(v) = v {
                buf.column_str(c(name), v.as_str())?;
            }
        }
        if let Some(t) = r.sys_uptime_ticks {
            buf.column_i64(c("sys_uptime_ticks"), t as i64)?;
        }
        if let Some(b) = r.engine_boots {
            buf.column_i64(c("engine_boots"), b as i64)?;
        }
        if let Some(rtt) = r.rtt_ms {
            buf.column_f64(c("rtt_ms"), rtt)?;
        }
        buf.column_i64(c("poll_ms"), r.poll_ms as i64)?
            .column_i64(c("requests"), r.requests as i64)?
            .column_i64(c("timeouts"), r.timeouts as i64)?
            .column_i64(c("varbinds"), r.varbinds as i64)?
            .column_i64(c("interfaces"), r.interfaces as i64)?
            .at(TimestampMicros::new(micros(r.ts_ms)))
    }

    /// Append one event; its labels and fields become JSON objects.
    pub fn event(&mut self, buf: &mut Buffer, e: &Event, key: RowKey) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.events);
        // Maps of strings and numbers: serializing them cannot fail.
        let labels = serde_json::to_string(&e.labels_map()).unwrap_or_default();
        let fields = serde_json::to_string(&e.fields_map()).unwrap_or_default();
        buf.table(table)?
            .symbol(c("kind"), &*e.kind)?
            .symbol(c("severity"), e.severity.name())?
            .symbol(c("component"), &*e.component)?
            .column_str(c("subject"), e.subject.as_str())?
            .column_str(c("message"), e.message.as_str())?
            .column_str(c("labels"), labels)?
            .column_str(c("fields"), fields)?;
        key.write(buf)?.at(TimestampMicros::new(micros(e.ts_ms)))
    }
}

impl RowWriter {
    /// Append one `snmp_trap` row.
    pub fn snmp_trap(&mut self, buf: &mut Buffer, r: &TrapRow, key: RowKey) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.snmp_trap);
        buf.table(table)?
            .symbol(c("version"), r.version)?
            .symbol(c("pdu"), r.pdu)?
            .symbol(c("trap_oid"), r.trap_oid.as_str())?
            .symbol(c("security_name"), r.security_name.as_str())?;
        if let Some(src) = r.source {
            self.addr(buf, c("source_ipv4"), c("source_ipv6"), src.ip())?;
            buf.column_i64(c("source_port"), src.port() as i64)?;
        }
        if let Some(u) = r.uptime_ticks {
            buf.column_i64(c("uptime_ticks"), u as i64)?;
        }
        if let Some(e) = &r.engine_id {
            buf.column_str(c("engine_id"), e.as_str())?;
        }
        if let Some(id) = r.request_id {
            buf.column_i64(c("request_id"), id as i64)?;
        }
        if let Some(e) = &r.enterprise {
            buf.column_str(c("enterprise"), e.as_str())?;
        }
        if let Some(g) = r.generic_trap {
            buf.column_i64(c("generic_trap"), g.clamp(0, i32::MAX as i64))?;
        }
        if let Some(sp) = r.specific_trap {
            buf.column_i64(c("specific_trap"), sp.clamp(0, i32::MAX as i64))?;
        }
        buf.column_str(c("varbinds"), r.varbinds.as_str())?;
        key.write(buf)?.at(TimestampMicros::new(micros(r.ts_ms)))
    }
}

impl RowWriter {
    /// Append one `topology_link` row.
    pub fn topology_link(&mut self, buf: &mut Buffer, r: &LinkRow) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.topology_link);
        buf.table(table)?
            .symbol(c("protocol"), r.protocol)?
            .symbol(c("state"), r.state)?
            .symbol(c("local_device"), r.local_device.as_str())?
            .symbol(c("local_port"), r.local_port.as_str())?
            .symbol(c("remote_device"), r.remote_device.as_str())?
            .symbol(c("remote_port"), r.remote_port.as_str())?;
        if let Some(i) = r.local_if_index {
            buf.column_i64(c("local_if_index"), i as i64)?;
        }
        buf.column_bool(c("remote_known"), r.remote_known)?
            .column_str(c("remote_port_descr"), r.remote_port_descr.as_str())?
            .column_str(c("remote_chassis_id"), r.remote_chassis_id.as_str())?
            .column_str(c("remote_sys_name"), r.remote_sys_name.as_str())?
            .at(TimestampMicros::new(micros(r.ts_ms)))
    }
}

impl RowWriter {
    /// Append one row of a user-defined SNMP table (names were validated with the config).
    pub fn snmp_custom(
        &mut self,
        buf: &mut Buffer,
        prefix: &str,
        r: &CustomRow,
    ) -> questdb::Result<()> {
        self.scratch.clear();
        self.scratch.push_str(prefix);
        self.scratch.push_str(&r.table);
        let table = TableName::new(self.scratch.as_str())?;
        buf.table(table)?.symbol(c("device"), &*r.device)?;
        if let Some(i) = &r.idx {
            buf.column_str(c("idx"), i.as_str())?;
        }
        for (name, v) in &r.values {
            let col = ColumnName::new(name)?;
            match v {
                CustomValue::Gauge(x) => {
                    buf.column_f64(col, *x)?;
                }
                CustomValue::Counter { raw, rate } => {
                    if *raw <= i64::MAX as u64 {
                        buf.column_i64(col, *raw as i64)?;
                    }
                    if let Some(rate) = rate {
                        let rate_col = format!("{name}_rate");
                        buf.column_f64(ColumnName::new(&rate_col)?, *rate)?;
                    }
                }
                CustomValue::Label(t) => {
                    buf.column_str(col, t.as_str())?;
                }
            }
        }
        buf.at(TimestampMicros::new(micros(r.ts_ms)))
    }
}

fn micros(ms: u64) -> i64 {
    (ms.min(i64::MAX as u64 / 1000) * 1000) as i64
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// Check table names once, so rows can use them unchecked.
pub fn validate_names(names: &TableNames) -> Result<(), String> {
    for n in names.all() {
        TableName::new(n)
            .map_err(|e| format!("table name \"{n}\" is not valid for QuestDB: {e}"))?;
    }
    Ok(())
}

/// A device's tags as SYMBOL columns (`tag_site`, …). Names were checked when the config was
/// loaded; QuestDB adds a column the first time a tag appears.
fn tags(buf: &mut Buffer, tags: &nmsd_pipeline::snmp::Tags) -> questdb::Result<()> {
    for (k, v) in tags.iter() {
        buf.symbol(ColumnName::new(k)?, &**v)?;
    }
    Ok(())
}
