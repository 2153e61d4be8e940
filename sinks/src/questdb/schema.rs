//! Table DDL, run over QuestDB's HTTP `/exec` endpoint before the first row is written.
//!
//! Tables are created explicitly rather than left to ILP auto-creation, which would choose
//! `VARCHAR` for addresses, `LONG` for every integer, no partitioning choice and the column name
//! `timestamp`. `IF NOT EXISTS` makes this idempotent across restarts.

use std::time::Duration;

use super::Partition;

/// Table names, with the configured prefix applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub flows: String,
    pub rollup: String,
    pub snmp_interface: String,
    pub snmp_device: String,
    pub snmp_trap: String,
    pub topology_link: String,
    pub events: String,
}

impl TableNames {
    /// Every table, in the sink's buffer order.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.flows,
            &self.rollup,
            &self.snmp_interface,
            &self.snmp_device,
            &self.snmp_trap,
            &self.topology_link,
            &self.events,
        ]
    }
}

/// `CREATE TABLE` statements for the configured tables.
pub fn ddl(
    names: &TableNames,
    flows_partition: Partition,
    rollup_partition: Partition,
) -> Vec<String> {
    let mut v = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, start_ts TIMESTAMP, \
             exporter SYMBOL CAPACITY 4096 CACHE, source SYMBOL CAPACITY 256 CACHE, \
             version SYMBOL CAPACITY 4 CACHE, \
             observation_domain LONG, \
             src_ipv4 IPV4, dst_ipv4 IPV4, next_hop_ipv4 IPV4, \
             src_ipv6 VARCHAR, dst_ipv6 VARCHAR, next_hop_ipv6 VARCHAR, \
             src_port INT, dst_port INT, protocol SHORT, tcp_flags SHORT, tos SHORT, \
             in_if LONG, out_if LONG, src_as LONG, dst_as LONG, vlan INT, \
             direction SYMBOL CAPACITY 4 CACHE, \
             bytes LONG, packets LONG, sampling_interval LONG, \
             batch_id LONG, batch_row INT\
             ) TIMESTAMP(ts) PARTITION BY {} WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)",
            names.flows,
            flows_partition.sql()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, exporter SYMBOL CAPACITY 4096 CACHE, \
             source SYMBOL CAPACITY 256 CACHE, src_ipv4 IPV4, dst_ipv4 IPV4, src_ipv6 VARCHAR, dst_ipv6 VARCHAR, \
             protocol SHORT, dst_port INT, in_if LONG, out_if LONG, \
             bytes LONG, packets LONG, flows LONG, \
             in_if_name SYMBOL CAPACITY 262144 NOCACHE, out_if_name SYMBOL CAPACITY 262144 NOCACHE, \
             in_if_alias VARCHAR, out_if_alias VARCHAR, \
             in_if_speed_mbps LONG, out_if_speed_mbps LONG, \
             batch_id LONG, batch_row INT\
             ) TIMESTAMP(ts) PARTITION BY {} WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)",
            names.rollup,
            rollup_partition.sql()
        ),
        // The flow source's name, for tables created before it.
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS source SYMBOL CAPACITY 256 CACHE",
            names.flows
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS source SYMBOL CAPACITY 256 CACHE",
            names.rollup
        ),
        // Interface names from SNMP (docs/snmp-design.md §10), for tables created before them.
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS in_if_name SYMBOL CAPACITY 262144 NOCACHE",
            names.rollup
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS out_if_name SYMBOL CAPACITY 262144 NOCACHE",
            names.rollup
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS in_if_alias VARCHAR",
            names.rollup
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS out_if_alias VARCHAR",
            names.rollup
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS in_if_speed_mbps LONG",
            names.rollup
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS out_if_speed_mbps LONG",
            names.rollup
        ),
        // SNMP tables: one row per poll slot, so DEDUP makes a replay idempotent.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, device SYMBOL CAPACITY 16384 CACHE, if_index INT, \
             if_name SYMBOL CAPACITY 262144 NOCACHE, if_alias VARCHAR, if_descr VARCHAR, \
             if_type SHORT, speed_mbps LONG, admin_status BYTE, oper_status BYTE, \
             counter_bits BYTE, \
             in_octets LONG, out_octets LONG, in_ucast_pkts LONG, out_ucast_pkts LONG, \
             in_mcast_pkts LONG, out_mcast_pkts LONG, in_bcast_pkts LONG, out_bcast_pkts LONG, \
             in_errors LONG, out_errors LONG, in_discards LONG, out_discards LONG, \
             interval_s DOUBLE, in_bps DOUBLE, out_bps DOUBLE, in_util DOUBLE, out_util DOUBLE, \
             in_ucast_pps DOUBLE, out_ucast_pps DOUBLE, in_mcast_pps DOUBLE, \
             out_mcast_pps DOUBLE, in_bcast_pps DOUBLE, out_bcast_pps DOUBLE, \
             in_errors_ps DOUBLE, out_errors_ps DOUBLE, in_discards_ps DOUBLE, \
             out_discards_ps DOUBLE, rate_note SYMBOL CAPACITY 16 CACHE\
             ) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, device, if_index)",
            names.snmp_interface
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, device SYMBOL CAPACITY 16384 CACHE, address_ipv4 IPV4, \
             address_ipv6 VARCHAR, up BOOLEAN, error SYMBOL CAPACITY 32 CACHE, \
             error_detail VARCHAR, sys_name VARCHAR, sys_descr VARCHAR, sys_object_id VARCHAR, \
             sys_location VARCHAR, sys_contact VARCHAR, sys_uptime_ticks LONG, \
             engine_id VARCHAR, engine_boots LONG, poll_ms INT, rtt_ms DOUBLE, requests INT, \
             timeouts INT, varbinds INT, interfaces INT\
             ) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, device)",
            names.snmp_device
        ),
        // Traps have no natural key: the batch id makes a replay idempotent (inform
        // retransmissions are collapsed in memory before that).
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, source_ipv4 IPV4, source_ipv6 VARCHAR, source_port INT, \
             version SYMBOL CAPACITY 4 CACHE, pdu SYMBOL CAPACITY 4 CACHE, \
             trap_oid SYMBOL CAPACITY 4096 CACHE, uptime_ticks LONG, security_name SYMBOL, \
             engine_id VARCHAR, request_id LONG, enterprise VARCHAR, generic_trap INT, \
             specific_trap INT, varbinds VARCHAR, batch_id LONG, batch_row INT\
             ) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)",
            names.snmp_trap
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, protocol SYMBOL CAPACITY 4 CACHE, state SYMBOL CAPACITY 4 CACHE, \
             local_device SYMBOL, local_if_index INT, local_port SYMBOL, remote_device SYMBOL, \
             remote_known BOOLEAN, remote_port SYMBOL, remote_port_descr VARCHAR, \
             remote_chassis_id VARCHAR, remote_sys_name VARCHAR\
             ) TIMESTAMP(ts) PARTITION BY MONTH WAL \
             DEDUP UPSERT KEYS(ts, protocol, local_device, local_port)",
            names.topology_link
        ),
        // Events (alerts, incidents) of any kind: labels and fields as JSON objects, since
        // each kind has its own. No natural key: the batch id makes a replay idempotent.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, kind SYMBOL CAPACITY 1024 CACHE, severity SYMBOL CAPACITY 8 CACHE, \
             component SYMBOL CAPACITY 256 CACHE, subject VARCHAR, message VARCHAR, \
             labels VARCHAR, fields VARCHAR, batch_id LONG, batch_row INT\
             ) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)",
            names.events
        ),
    ];
    // Tables an earlier version created without batch ids get them, and DEDUP on them
    // (decision 0017). Their old rows have null ids, which no new row has.
    for t in [&names.flows, &names.rollup, &names.snmp_trap, &names.events] {
        v.push(format!(
            "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS batch_id LONG"
        ));
        v.push(format!(
            "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS batch_row INT"
        ));
        v.push(format!(
            "ALTER TABLE {t} DEDUP ENABLE UPSERT KEYS(ts, batch_id, batch_row)"
        ));
    }
    v
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("unreachable ({source}; is QuestDB running at {url}?)")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("QuestDB refused the query ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// A small client for `/exec`.
pub struct ExecClient {
    base: String,
    agent: ureq::Agent,
}

impl ExecClient {
    /// `base` is `http://host:port`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        ExecClient {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// Run one SQL statement; returns the JSON response body.
    pub fn exec(&self, sql: &str) -> Result<String, ExecError> {
        let url = format!("{}/exec", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .query("query", sql)
            .call()
            .map_err(|source| ExecError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| format!("<unreadable body: {e}>"));
        if status == 200 {
            Ok(body)
        } else {
            Err(ExecError::Refused { status, body })
        }
    }

    /// Whether the server answers `GET /ping` with 2xx (it is up and takes ILP writes).
    pub fn ping(&self) -> bool {
        self.agent
            .get(format!("{}/ping", self.base))
            .call()
            .is_ok_and(|r| r.status().is_success())
    }

    /// Apply `m` if its check query says it is still needed; true when it was applied.
    pub fn migrate(&self, m: &Migration) -> Result<bool, ExecError> {
        let needed = row_count(&self.exec(&m.needed_while_rows)?).unwrap_or(0) > 0;
        if needed {
            self.exec(&m.apply)?;
        }
        Ok(needed)
    }
}

/// A change to a table an earlier version created, applied only where it is still needed
/// (QuestDB refuses e.g. a type change to the type a column already has).
pub struct Migration {
    /// A query that returns rows while the change is needed.
    pub needed_while_rows: String,
    pub apply: String,
}

/// Changes to tables created by earlier versions of nmsd.
pub fn migrations(names: &TableNames) -> Vec<Migration> {
    vec![
        // generic_trap was SHORT, whose null is 0 in QuestDB: v2c/v3 traps (which have no
        // generic trap) read as coldStart. INT has a null.
        Migration {
            needed_while_rows: format!(
                "SELECT \"column\" FROM table_columns('{}') \
                 WHERE \"column\" = 'generic_trap' AND type = 'SHORT'",
                names.snmp_trap
            ),
            apply: format!(
                "ALTER TABLE {} ALTER COLUMN generic_trap TYPE INT",
                names.snmp_trap
            ),
        },
    ]
}

/// The `"count"` of an `/exec` answer (rows returned), if it has one.
fn row_count(body: &str) -> Option<u64> {
    let at = body.rfind("\"count\":")? + "\"count\":".len();
    let digits: String = body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// DDL of a user-defined SNMP table: one column per configured OID (a counter gets its raw
/// value and a `_rate` column), DEDUP on (ts, device[, idx]) so replays do not duplicate.
pub fn custom_ddl(
    prefix: &str,
    t: &nmsd_pipeline::snmp::CustomTableSchema,
    partition: Partition,
) -> String {
    use nmsd_pipeline::snmp::CustomKind;
    let mut cols = String::from("ts TIMESTAMP, device SYMBOL CAPACITY 16384 CACHE");
    if t.indexed {
        cols.push_str(", idx VARCHAR");
    }
    for (name, kind) in &t.columns {
        match kind {
            CustomKind::Gauge => cols.push_str(&format!(", {name} DOUBLE")),
            CustomKind::Counter => cols.push_str(&format!(", {name} LONG, {name}_rate DOUBLE")),
            CustomKind::Label => cols.push_str(&format!(", {name} VARCHAR")),
        }
    }
    let keys = if t.indexed {
        "ts, device, idx"
    } else {
        "ts, device"
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {prefix}{} ({cols}) TIMESTAMP(ts) PARTITION BY {} WAL DEDUP UPSERT KEYS({keys})",
        t.table,
        partition.sql()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_uses_prefix_and_partitioning() {
        let names = TableNames {
            flows: "lab_flows".into(),
            rollup: "lab_flows_1m".into(),
            snmp_interface: "lab_snmp_interface".into(),
            snmp_device: "lab_snmp_device".into(),
            snmp_trap: "lab_snmp_trap".into(),
            events: "lab_events".into(),
            topology_link: "lab_topology_link".into(),
        };
        let d = ddl(&names, Partition::Hour, Partition::Day);
        assert!(d[0].starts_with("CREATE TABLE IF NOT EXISTS lab_flows ("));
        assert!(d[0].ends_with("PARTITION BY HOUR WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)"));
        assert!(d[1].contains("lab_flows_1m"));
        assert!(d[1].ends_with("PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, batch_id, batch_row)"));
        assert!(d.iter().any(|s| {
            s.starts_with("ALTER TABLE lab_flows_1m ADD COLUMN IF NOT EXISTS in_if_name")
        }));
    }
}
