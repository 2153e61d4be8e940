//! What the packet sources (`pcap_file`, `capture`) share: the defaults and checks of their
//! flow-table keys, and the table those keys configure. The keys stay flat in each source's
//! own table (serde cannot flatten a struct into one that denies unknown fields).

use std::net::IpAddr;

use nmsd_pipeline::flow_table::FlowTableConfig;
use nmsd_pipeline::units::HumanDuration;

pub(crate) fn default_max_flows() -> usize {
    65_536
}
pub(crate) fn default_active_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
pub(crate) fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(15)
}
pub(crate) fn default_tcp_close_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// A packet source's flow-table keys.
pub(crate) struct FlowTableKeys {
    pub max_flows: usize,
    pub active_timeout: HumanDuration,
    pub idle_timeout: HumanDuration,
    pub tcp_close_timeout: HumanDuration,
}

impl FlowTableKeys {
    /// `Err((key, message))`, as `SourceSpec::validate` returns.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=16 << 20).contains(&self.max_flows) {
            return Err(("max_flows".into(), "must be between 1 and 16777216".into()));
        }
        if self.idle_timeout.0.is_zero() || self.active_timeout.0.is_zero() {
            return Err((
                "idle_timeout".into(),
                "idle_timeout and active_timeout must be above 0".into(),
            ));
        }
        Ok(())
    }

    /// The table of flows seen at `exporter` on interface `in_if`, as source `source`.
    pub fn table_config(&self, exporter: IpAddr, in_if: u32, source: u8) -> FlowTableConfig {
        FlowTableConfig {
            max_flows: self.max_flows,
            active_timeout_ms: self.active_timeout.as_millis_u64(),
            idle_timeout_ms: self.idle_timeout.as_millis_u64(),
            tcp_close_timeout_ms: self.tcp_close_timeout.as_millis_u64(),
            exporter,
            in_if,
            source,
        }
    }
}
