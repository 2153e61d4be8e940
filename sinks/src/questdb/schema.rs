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
}

/// `CREATE TABLE` statements for the configured tables.
pub fn ddl(
    names: &TableNames,
    flows_partition: Partition,
    rollup_partition: Partition,
) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, start_ts TIMESTAMP, \
             exporter SYMBOL CAPACITY 4096 CACHE, version SYMBOL CAPACITY 4 CACHE, \
             observation_domain LONG, \
             src_ipv4 IPV4, dst_ipv4 IPV4, next_hop_ipv4 IPV4, \
             src_ipv6 VARCHAR, dst_ipv6 VARCHAR, next_hop_ipv6 VARCHAR, \
             src_port INT, dst_port INT, protocol SHORT, tcp_flags SHORT, tos SHORT, \
             in_if LONG, out_if LONG, src_as LONG, dst_as LONG, vlan INT, \
             direction SYMBOL CAPACITY 4 CACHE, \
             bytes LONG, packets LONG, sampling_interval LONG\
             ) TIMESTAMP(ts) PARTITION BY {} WAL",
            names.flows,
            flows_partition.sql()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             ts TIMESTAMP, exporter SYMBOL CAPACITY 4096 CACHE, \
             src_ipv4 IPV4, dst_ipv4 IPV4, src_ipv6 VARCHAR, dst_ipv6 VARCHAR, \
             protocol SHORT, dst_port INT, in_if LONG, out_if LONG, \
             bytes LONG, packets LONG, flows LONG\
             ) TIMESTAMP(ts) PARTITION BY {} WAL",
            names.rollup,
            rollup_partition.sql()
        ),
    ]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_uses_prefix_and_partitioning() {
        let names = TableNames {
            flows: "lab_flows".into(),
            rollup: "lab_flows_1m".into(),
        };
        let d = ddl(&names, Partition::Hour, Partition::Day);
        assert!(d[0].starts_with("CREATE TABLE IF NOT EXISTS lab_flows ("));
        assert!(d[0].ends_with("PARTITION BY HOUR WAL"));
        assert!(d[1].contains("lab_flows_1m"));
        assert!(d[1].ends_with("PARTITION BY DAY WAL"));
    }
}
