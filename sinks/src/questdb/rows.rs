//! Turning records into ILP rows.

use std::fmt::Write as _;
use std::net::IpAddr;

use nmsd_pipeline::records::{Direction, FlowRecord, RollupRow};
use questdb::ingress::{Buffer, ColumnName, TableName, TimestampMicros};

use super::schema::TableNames;

/// A column name known to be valid: skips per-row validation.
#[inline]
fn c(name: &'static str) -> ColumnName<'static> {
    ColumnName::new_unchecked(name)
}

/// Writes rows into ILP buffers, reusing its scratch strings.
pub struct RowWriter {
    names: TableNames,
    /// Last exporter formatted: batches usually come from one exporter.
    exporter_cache: Option<(IpAddr, String)>,
    scratch: String,
}

impl RowWriter {
    /// `names` must be valid QuestDB table names (checked by [`validate_names`]).
    pub fn new(names: TableNames) -> Self {
        RowWriter {
            names,
            exporter_cache: None,
            scratch: String::with_capacity(64),
        }
    }

    fn exporter_str(cache: &mut Option<(IpAddr, String)>, a: IpAddr) -> &str {
        if cache.as_ref().is_none_or(|(c, _)| *c != a) {
            *cache = Some((a, a.to_string()));
        }
        cache.as_ref().map_or("", |(_, s)| s.as_str())
    }

    /// Append one `flows` row.
    pub fn flow(&mut self, buf: &mut Buffer, f: &FlowRecord) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.flows);
        let exporter = Self::exporter_str(&mut self.exporter_cache, f.exporter);
        buf.table(table)?
            .symbol(c("exporter"), exporter)?
            .symbol(c("version"), f.version.label())?;
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
            .column_i64(c("sampling_interval"), f.sampling_interval as i64)?
            .at(TimestampMicros::new(micros(f.end_ms)))
    }

    /// Append one roll-up row.
    pub fn rollup(&mut self, buf: &mut Buffer, r: &RollupRow) -> questdb::Result<()> {
        let table = TableName::new_unchecked(&self.names.rollup);
        let exporter = Self::exporter_str(&mut self.exporter_cache, r.exporter);
        buf.table(table)?.symbol(c("exporter"), exporter)?;
        self.addr(buf, c("src_ipv4"), c("src_ipv6"), r.src_addr)?;
        self.addr(buf, c("dst_ipv4"), c("dst_ipv6"), r.dst_addr)?;
        buf.column_i64(c("protocol"), r.protocol as i64)?
            .column_i64(c("dst_port"), r.dst_port as i64)?
            .column_i64(c("in_if"), r.in_if as i64)?
            .column_i64(c("out_if"), r.out_if as i64)?
            .column_i64(c("bytes"), clamp(r.bytes))?
            .column_i64(c("packets"), clamp(r.packets))?
            .column_i64(c("flows"), clamp(r.flows))?
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

fn micros(ms: u64) -> i64 {
    (ms.min(i64::MAX as u64 / 1000) * 1000) as i64
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// Check table names once, so rows can use them unchecked.
pub fn validate_names(names: &TableNames) -> Result<(), String> {
    for n in [&names.flows, &names.rollup] {
        TableName::new(n)
            .map_err(|e| format!("table name \"{n}\" is not valid for QuestDB: {e}"))?;
    }
    Ok(())
}
