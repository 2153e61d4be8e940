//! `[sources.<id>] type = "sflow"`: sFlow v5 datagrams over UDP (default port 6343).
//!
//! One receive thread decodes each datagram ([`nmsd_parsers::sflow`]). Every flow sample
//! whose sampled packet decodes becomes one flow record, scaled by its sampling rate, with the
//! agent as exporter and the sub-agent id as observation domain. Records go out in batches at
//! most every 100 ms. The loss an agent reports is counted per agent and sub-agent:
//! - datagrams missing from the datagram sequence;
//! - the growth of each data source's `drops` counter (samples the agent could not send).
//!
//! Counter samples with generic interface counters become the same interface rows SNMP
//! polling produces (`snmp_interfaces` stream): the agent address is the device, rates are
//! computed against the previous sample of the interface with the SNMP engine's rate code, and
//! sFlow's uptime is the clock. Dashboards and alerts need not care which protocol fed them.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmsd_parsers::hash::SeededHashMap;
use nmsd_parsers::sflow::{self, IfCounters, Sample, SampledPacket};
use nmsd_pipeline::Batch;
use nmsd_pipeline::records::FlowRecord;
use nmsd_pipeline::route::SourceOutput;
use nmsd_pipeline::snmp::InterfaceRow;
use nmsd_pipeline::units::ByteSize;
use nmsd_snmp::rates::{COUNTERS, Counter, DeviceRates, IfSample, Raw};
use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};

/// An sFlow v5 collector: `[sources.<id>] type = "sflow"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowSourceConfig {
    /// Address and port to receive on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// SO_RCVBUF of the socket.
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Most agents (agent address, sub-agent) whose sequence and drop counters are tracked.
    #[serde(default = "default_max_agents")]
    pub max_agents: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 6343))
}
fn default_receive_buffer() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_max_agents() -> usize {
    4096
}

impl super::SourceSpec for SflowSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        nmsd_pipeline::StreamSet::of(&[
            nmsd_pipeline::StreamKind::Flows,
            nmsd_pipeline::StreamKind::SnmpInterfaces,
        ])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if !(4096..=(i32::MAX as u64)).contains(&self.receive_buffer.0) {
            return Err((
                "receive_buffer".into(),
                "must be between 4KiB and 2GiB".into(),
            ));
        }
        if !(1..=1 << 20).contains(&self.max_agents) {
            return Err(("max_agents".into(), "must be between 1 and 1048576".into()));
        }
        Ok(())
    }

    fn flow_source(&self) -> bool {
        true
    }

    fn start(&self, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        use anyhow::Context;
        let socket = bind(self).with_context(|| format!("cannot listen on {}", self.listen))?;
        let cfg = self.clone();
        let id = ctx.id.to_string();
        let index = ctx.flow_source_index;
        let (output, stop) = (ctx.output, ctx.stop);
        let thread = std::thread::Builder::new()
            .name(format!("nmsd-sflow-{id}"))
            .spawn(move || receive(&id, socket, &cfg, index, &output, &stop))?;
        let mut running = super::RunningSource::default();
        running.threads.push(thread);
        running
            .status
            .insert("listen".into(), self.listen.to_string().into());
        Ok(running)
    }
}

fn bind(cfg: &SflowSourceConfig) -> io::Result<UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(cfg.listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if cfg.listen.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.set_recv_buffer_size(usize::try_from(cfg.receive_buffer.0).unwrap_or(usize::MAX))?;
    sock.bind(&cfg.listen.into())?;
    let sock: UdpSocket = sock.into();
    // Shutdown is seen within this long.
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(sock)
}

/// Sequence and drop counters of one agent and sub-agent.
#[derive(Default)]
struct AgentState {
    sequence: Option<u32>,
    /// Last `drops` per data source (type << 24 | index).
    drops: SeededHashMap<u32, u32>,
    lost_datagrams: Option<metrics::Counter>,
    dropped_samples: Option<metrics::Counter>,
    /// Counter baselines of its interfaces, for rates.
    rates: DeviceRates,
    /// Its address as the interface rows' device.
    device: Option<Arc<str>>,
}

/// sFlow's "unknown" for a counter: all ones.
fn known32(v: u32) -> Option<Raw> {
    (v != u32::MAX).then_some(Raw::C32(v))
}

fn known64(v: u64) -> Option<Raw> {
    (v != u64::MAX).then_some(Raw::C64(v))
}

/// A counter sample's generic interface counters as an SNMP interface row, with rates against
/// the agent's previous sample of the interface.
pub fn interface_row(
    device: &Arc<str>,
    rates: &mut DeviceRates,
    uptime_ms: u32,
    c: &IfCounters,
    now_ms: u64,
) -> InterfaceRow {
    let uptime_ticks = uptime_ms / 10;
    let note = rates.begin_poll(uptime_ticks, None);
    let mut counters = [None; COUNTERS];
    counters[Counter::InOctets as usize] = known64(c.in_octets);
    counters[Counter::OutOctets as usize] = known64(c.out_octets);
    counters[Counter::InUcastPkts as usize] = known32(c.in_ucast_pkts);
    counters[Counter::OutUcastPkts as usize] = known32(c.out_ucast_pkts);
    counters[Counter::InMulticastPkts as usize] = known32(c.in_multicast_pkts);
    counters[Counter::OutMulticastPkts as usize] = known32(c.out_multicast_pkts);
    counters[Counter::InBroadcastPkts as usize] = known32(c.in_broadcast_pkts);
    counters[Counter::OutBroadcastPkts as usize] = known32(c.out_broadcast_pkts);
    counters[Counter::InErrors as usize] = known32(c.in_errors);
    counters[Counter::OutErrors as usize] = known32(c.out_errors);
    counters[Counter::InDiscards as usize] = known32(c.in_discards);
    counters[Counter::OutDiscards as usize] = known32(c.out_discards);
    let speed_bps = (c.if_speed != 0 && c.if_speed != u64::MAX).then_some(c.if_speed);
    let sample = IfSample {
        uptime_ticks,
        discontinuity_ticks: None,
        identity: String::new(),
        speed_bps,
        counters,
    };
    let r = rates.interface(note, c.if_index, &sample);
    // ifAdminStatus / ifOperStatus: 1 up, 2 down.
    let status = |bit: u32| Some(if c.if_status & bit != 0 { 1 } else { 2 });
    InterfaceRow {
        ts_ms: now_ms,
        device: device.clone(),
        tags: Arc::from(Vec::new()),
        if_index: c.if_index,
        if_type: Some(i64::from(c.if_type)),
        speed_mbps: speed_bps.map(|b| b / 1_000_000),
        admin_status: status(1),
        oper_status: status(2),
        // Octets are 64-bit in sFlow; packet counts are 32-bit.
        counter_bits: 64,
        counters: counters.map(|v| v.map(Raw::value)),
        interval_s: r.interval_s,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
        in_util: r.in_util,
        out_util: r.out_util,
        per_second: r.per_second,
        rate_note: r.note.map(|n| n.label()),
        ..InterfaceRow::default()
    }
}

/// Flush records at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const BATCH_FLOWS: usize = 1024;
/// Data sources whose `drops` counter is tracked per agent.
const MAX_SOURCES_PER_AGENT: usize = 4096;

fn receive(
    id: &str,
    socket: UdpSocket,
    cfg: &SflowSourceConfig,
    source_index: u8,
    output: &SourceOutput,
    stop: &AtomicBool,
) {
    let l = [("source", id.to_string())];
    let datagrams = metrics::counter!("nmsd_sflow_datagrams_total", &l);
    let flow_samples = metrics::counter!("nmsd_sflow_flow_samples_total", &l);
    let counter_samples = metrics::counter!("nmsd_sflow_interface_samples_total", &l);
    let undecoded = metrics::counter!("nmsd_sflow_flow_samples_undecoded_total", &l);
    let untracked = metrics::counter!("nmsd_sflow_agents_untracked_total", &l);
    let malformed: Vec<metrics::Counter> = sflow::SflowError::KINDS
        .iter()
        .map(|k| {
            metrics::counter!("nmsd_sflow_datagrams_malformed_total",
                "source" => id.to_string(), "kind" => *k)
        })
        .collect();
    // Keyed by what senders choose: a seeded hash (decision 0009), bounded by max_agents.
    let mut agents: SeededHashMap<(IpAddr, u32), AgentState> = SeededHashMap::default();
    let mut buf = vec![0u8; 65_536];
    let mut samples = Vec::new();
    let mut records: Vec<FlowRecord> = Vec::with_capacity(BATCH_FLOWS);
    let mut last_flush = Instant::now();
    let mut if_rows: Vec<InterfaceRow> = Vec::new();
    let want_interfaces = output.wants(nmsd_pipeline::StreamSet::of(&[
        nmsd_pipeline::StreamKind::SnmpInterfaces,
    ]));
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, _from)) => {
                datagrams.increment(1);
                samples.clear();
                let result = sflow::decode(&buf[..n], &mut samples);
                let header = match result {
                    Ok(h) => h,
                    Err(e) => {
                        if let Some(i) =
                            sflow::SflowError::KINDS.iter().position(|k| *k == e.kind())
                        {
                            malformed[i].increment(1);
                        }
                        continue;
                    }
                };
                let now = nmsd_pipeline::clock::unix_ms();
                let key = (header.agent, header.sub_agent_id);
                let agent = if agents.contains_key(&key) || agents.len() < cfg.max_agents {
                    Some(agents.entry(key).or_insert_with(|| {
                        let l = [
                            ("source", id.to_string()),
                            ("agent", header.agent.to_string()),
                            ("sub_agent", header.sub_agent_id.to_string()),
                        ];
                        AgentState {
                            lost_datagrams: Some(metrics::counter!(
                                "nmsd_sflow_datagrams_lost_total",
                                &l
                            )),
                            dropped_samples: Some(metrics::counter!(
                                "nmsd_sflow_samples_dropped_by_agent_total",
                                &l
                            )),
                            ..AgentState::default()
                        }
                    }))
                } else {
                    untracked.increment(1);
                    None
                };
                if let Some(a) = agent {
                    if let (Some(prev), Some(c)) = (a.sequence, &a.lost_datagrams) {
                        // A restart (sequence back to 1) is not loss.
                        let gap = header.sequence.wrapping_sub(prev);
                        if gap > 1 && gap < 1 << 31 {
                            c.increment(u64::from(gap - 1));
                        }
                    }
                    a.sequence = Some(header.sequence);
                    if want_interfaces {
                        let device = a
                            .device
                            .get_or_insert_with(|| Arc::from(header.agent.to_string()))
                            .clone();
                        for s in &samples {
                            if let Sample::Counters(c) = s
                                && let Some(g) = &c.generic
                            {
                                if_rows.push(interface_row(
                                    &device,
                                    &mut a.rates,
                                    header.uptime_ms,
                                    g,
                                    now,
                                ));
                            }
                        }
                    }
                    for s in &samples {
                        if let Sample::Flow(f) = s {
                            let source = f.source_id_type << 24 | (f.source_id_index & 0xFF_FFFF);
                            // Bounded: an agent names its data sources.
                            if a.drops.len() >= MAX_SOURCES_PER_AGENT
                                && !a.drops.contains_key(&source)
                            {
                                continue;
                            }
                            let prev = a.drops.insert(source, f.drops);
                            if let (Some(prev), Some(c)) = (prev, &a.dropped_samples)
                                && f.drops > prev
                            {
                                c.increment(u64::from(f.drops - prev));
                            }
                        }
                    }
                }
                for s in &samples {
                    match s {
                        Sample::Flow(f) => {
                            flow_samples.increment(1);
                            match f.to_record(&header, now, source_index) {
                                Some(r) => records.push(r),
                                None => {
                                    if !matches!(f.packet, SampledPacket::Decoded(_)) {
                                        undecoded.increment(1);
                                    }
                                }
                            }
                        }
                        Sample::Counters(_) => counter_samples.increment(1),
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!(source = %id, "sFlow receive failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if records.len() >= BATCH_FLOWS
            || (!records.is_empty() && last_flush.elapsed() >= FLUSH_EVERY)
        {
            output.send(Batch::flows(std::mem::take(&mut records)));
            records.reserve(BATCH_FLOWS);
            last_flush = Instant::now();
        }
        if !if_rows.is_empty() {
            output.send(Batch::SnmpInterfaces(Arc::new(std::mem::take(
                &mut if_rows,
            ))));
        }
        output.tick_if_due();
    }
    if !records.is_empty() {
        output.send(Batch::flows(records));
    }
    output.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(in_octets: u64, out_octets: u64, in_errors: u32) -> IfCounters {
        IfCounters {
            if_index: 3,
            if_type: 6,
            if_speed: 1_000_000_000,
            if_direction: 1,
            if_status: 3,
            in_octets,
            in_ucast_pkts: 100,
            in_errors,
            out_octets,
            out_discards: u32::MAX,
            ..IfCounters::default()
        }
    }

    #[test]
    fn counter_samples_become_interface_rows_with_rates() {
        let device: Arc<str> = Arc::from("192.0.2.77");
        let mut rates = DeviceRates::new();
        let first = interface_row(&device, &mut rates, 10_000, &counters(1_000, 0, 0), 1);
        assert_eq!((first.if_index, first.speed_mbps), (3, Some(1000)));
        assert_eq!((first.admin_status, first.oper_status), (Some(1), Some(1)));
        assert_eq!(first.rate_note, Some("first"));
        assert_eq!(first.counters[Counter::InOctets as usize], Some(1_000));
        assert_eq!(
            first.counters[Counter::OutDiscards as usize],
            None,
            "unknown"
        );
        // 20 s later: 25 MB in (10 Mbit/s), 5 errors.
        let next = interface_row(&device, &mut rates, 30_000, &counters(25_001_000, 0, 5), 2);
        assert_eq!(next.interval_s, Some(20.0));
        assert_eq!(next.in_bps, Some(10_000_000.0));
        assert_eq!(next.in_util, Some(1.0));
        assert_eq!(next.per_second[Counter::InErrors as usize], Some(0.25));
        assert_eq!(next.rate_note, None);
        // The agent restarted: no rate across it.
        let restarted = interface_row(&device, &mut rates, 5_000, &counters(10, 0, 0), 3);
        assert_eq!(restarted.rate_note, Some("agent_restart"));
        assert_eq!(restarted.in_bps, None);
    }
}
