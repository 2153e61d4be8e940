//! The polling engine: many devices, few sockets, many requests in flight.
//!
//! One thread runs a tokio current-thread runtime and owns all polling state, so nothing is
//! behind a lock. Requests to every device go out of one socket per address family and are told
//! apart by request id (v2c) or msgID (v3); a global cap bounds what is in flight, a per-device
//! cap keeps one agent from being flooded, and every request has its own deadline, so a slow or
//! dead device only ever costs its own timeouts. Polls start on a per-device phase (a stable
//! hash of the name) so a fleet does not poll in one burst. See docs/snmp-design.md §4.
//!
//! This file is the orchestration: the engine's state, its run loop, starting polls, pacing
//! requests under the caps, and finishing polls. The parts:
//! - `schedule`: poll slots and phases, timers, the poll time limit, probing silent devices;
//!   everything as functions of the time, which the engine reads through a `Clock`.
//! - `transport`: sockets, request ids, the reply source check, request encoding, the v3
//!   agent clock.
//! - `responses`: matching replies to requests, v3 reports, timeouts and retries.
//! - `poll`: a poll's jobs and what their responses collect.
//! - `rows`: interface, device and user-defined rows from a finished poll, with rates.
//! - `lldp`, `cdp`, `links`: neighbours and what they tell the topology.
//! - `status`: device health and its transitions.

pub mod cdp;
mod links;
mod lldp;
pub mod plan;
mod poll;
pub mod prom;
mod responses;
mod rows;
mod schedule;
mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod transport;
pub mod walk;

pub use status::{DeviceStatus, ErrorStatus, IfGauges, StatusBoard, TAG_PREFIX};

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nmsd_pipeline::clock::unix_ms;
use nmsd_pipeline::enrich::{IfDirectory, IfInfo};
use nmsd_pipeline::published::Published;
use nmsd_pipeline::snmp::{DeviceRow, InterfaceRow};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::rates::DeviceRates;
use plan::{Credentials, DeviceSpec, Plan};
use poll::{JobKind, JobState, Poll};
use rows::CustomBaselines;
use schedule::{Clock, SystemClock, Timer, Timers};
use status::PollSummary;
use transport::{Encoder, Sockets, V3State};

/// What a finished poll produced.
#[derive(Clone, Debug)]
pub struct PollOutput {
    pub device: DeviceRow,
    pub interfaces: Vec<InterfaceRow>,
    /// Topology changes this poll revealed.
    pub links: Vec<nmsd_pipeline::snmp::LinkRow>,
    /// Rows of user-defined modules.
    pub custom: Vec<nmsd_pipeline::snmp::CustomRow>,
}

/// What the engine shares with the rest of nmsd: device health, the interface directory for
/// flow enrichment and the topology, each read without touching the engine's thread.
#[derive(Clone, Default)]
pub struct EngineShared {
    pub board: StatusBoard,
    pub directory: Option<Arc<Published<IfDirectory>>>,
    pub topology: Arc<Mutex<crate::topology::TopologySnapshot>>,
}

/// Commands to a running engine.
#[derive(Debug)]
pub enum Command {
    Stop,
}

struct Device {
    spec: DeviceSpec,
    phase: Duration,
    v3: Option<V3State>,
    poll: Option<Poll>,
    rates: DeviceRates,
    c32: bool,
    status: DeviceStatus,
    poll_generation: u64,
    /// Wall-clock time (Unix ms) of the next scheduled poll; 0 before the first.
    next_slot_ms: u64,
    /// Interface names, aliases and speeds from the last interfaces poll, for flow enrichment.
    if_info: BTreeMap<u32, IfInfo>,
    /// Last raw value and agent time of each user-defined counter, for rates.
    custom_last: CustomBaselines,
    /// Queued for a global in-flight slot.
    waiting: bool,
    /// Its last poll got no answer at all: the next one starts with a single probe.
    unreachable: bool,
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    device: usize,
    job: usize,
    attempt: u32,
    sent_at: Instant,
    generation: u64,
}

/// Metric handles.
struct EngineMetrics {
    requests: metrics::Counter,
    responses: metrics::Counter,
    timeouts: metrics::Counter,
    retries: metrics::Counter,
    varbinds: metrics::Counter,
    dropped_late: metrics::Counter,
    dropped_source: metrics::Counter,
    dropped_decode: metrics::Counter,
    dropped_auth: metrics::Counter,
    in_flight: metrics::Gauge,
    polls_ok: metrics::Counter,
    polls_failed: metrics::Counter,
    polls_overrun: metrics::Counter,
    poll_seconds: metrics::Histogram,
}

impl EngineMetrics {
    fn new() -> Self {
        let drop =
            |r: &'static str| metrics::counter!("nmsd_snmp_replies_dropped_total", "reason" => r);
        let polls = |o: &'static str| metrics::counter!("nmsd_snmp_polls_total", "outcome" => o);
        EngineMetrics {
            requests: metrics::counter!("nmsd_snmp_requests_total"),
            responses: metrics::counter!("nmsd_snmp_responses_total"),
            timeouts: metrics::counter!("nmsd_snmp_timeouts_total"),
            retries: metrics::counter!("nmsd_snmp_retries_total"),
            varbinds: metrics::counter!("nmsd_snmp_varbinds_total"),
            dropped_late: drop("late"),
            dropped_source: drop("unexpected_source"),
            dropped_decode: drop("decode"),
            dropped_auth: drop("authentication"),
            in_flight: metrics::gauge!("nmsd_snmp_requests_in_flight"),
            polls_ok: polls("ok"),
            polls_failed: polls("failed"),
            polls_overrun: polls("overrun"),
            poll_seconds: metrics::histogram!("nmsd_snmp_poll_duration_seconds"),
        }
    }
}

/// The engine. Build with [`Engine::new`], run with [`Engine::run`] on its own thread.
pub struct Engine {
    devices: Vec<Device>,
    max_in_flight: usize,
    sockets: Sockets,
    outstanding: FxHashMap<i32, Outstanding>,
    next_id: i32,
    timers: Timers,
    waiting: VecDeque<usize>,
    encoder: Encoder,
    output: Box<dyn FnMut(PollOutput) + Send>,
    board: StatusBoard,
    metrics: EngineMetrics,
    directory: Option<Arc<Published<IfDirectory>>>,
    directory_dirty: bool,
    topology: crate::topology::Topology,
    topology_board: Arc<Mutex<crate::topology::TopologySnapshot>>,
    custom: Arc<Vec<plan::CustomModule>>,
    clock: Box<dyn Clock>,
}

impl Engine {
    /// Bind the polling sockets (`bind4`/`bind6`, port 0 for ephemeral) and prepare the plan.
    /// Must be called inside the runtime that will run it.
    pub async fn new(
        plan: Plan,
        bind4: SocketAddr,
        bind6: SocketAddr,
        output: Box<dyn FnMut(PollOutput) + Send>,
        shared: EngineShared,
    ) -> std::io::Result<Engine> {
        let EngineShared {
            board,
            directory,
            topology,
        } = shared;
        let custom = Arc::new(plan.custom);
        let need4 = plan.devices.iter().any(|d| d.addr.is_ipv4());
        let need6 = plan.devices.iter().any(|d| d.addr.is_ipv6());
        let sockets = Sockets::bind(need4.then_some(bind4), need6.then_some(bind6)).await?;
        let devices: Vec<Device> = plan
            .devices
            .into_iter()
            .map(|spec| Device {
                phase: schedule::phase_of(&spec.name, spec.interval),
                status: DeviceStatus::new_device(&spec),
                spec,
                v3: None,
                poll: None,
                rates: DeviceRates::new(),
                c32: false,
                poll_generation: 0,
                next_slot_ms: 0,
                if_info: BTreeMap::new(),
                custom_last: CustomBaselines::default(),
                waiting: false,
                unreachable: false,
            })
            .collect();
        if let Ok(mut b) = board.lock() {
            *b = devices.iter().map(|d| d.status.clone()).collect();
        }
        let mut topo = crate::topology::Topology::default();
        for d in &devices {
            // Neighbours resolve to configured devices by address (CDP) or name.
            topo.register(&d.spec.name, d.spec.addr.ip());
        }
        let seed = unix_ms() ^ (std::process::id() as u64) << 32;
        Ok(Engine {
            devices,
            max_in_flight: plan.max_in_flight.max(1),
            sockets,
            outstanding: FxHashMap::default(),
            next_id: transport::first_request_id(seed),
            timers: Timers::default(),
            waiting: VecDeque::new(),
            encoder: Encoder::new(seed),
            output,
            board,
            metrics: EngineMetrics::new(),
            directory,
            directory_dirty: false,
            topology: topo,
            topology_board: topology,
            custom,
            clock: Box::new(SystemClock),
        })
    }

    /// The local address of the IPv4 polling socket (tests use it).
    pub fn local_addr4(&self) -> Option<SocketAddr> {
        self.sockets.local_addr4()
    }

    /// Schedule every device's first poll.
    fn start(&mut self) {
        let now = self.clock.now();
        for i in 0..self.devices.len() {
            self.schedule_next(i, now);
        }
    }

    /// Poll until told to stop.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.start();
        let mut rbuf = vec![0u8; 65536];
        loop {
            let next = self
                .timers
                .next_at()
                .unwrap_or_else(|| self.clock.now() + Duration::from_secs(3600));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                },
                r = self.sockets.readable(false) => {
                    if r.is_ok() {
                        self.drain(false, &mut rbuf);
                    }
                }
                r = self.sockets.readable(true) => {
                    if r.is_ok() {
                        self.drain(true, &mut rbuf);
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => self.fire_timers(),
            }
        }
    }

    /// Receive everything queued (bounded, so timers still run under a flood).
    fn drain(&mut self, v6: bool, rbuf: &mut [u8]) {
        for _ in 0..256 {
            let Some((n, from)) = self.sockets.try_recv(v6, rbuf) else {
                return;
            };
            let data = rbuf[..n].to_vec();
            self.on_datagram(&data, from);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::PollDue(d) => self.on_poll_due(d, now),
                Timer::Deadline { id, attempt } => self.on_deadline(id, attempt),
                Timer::PollDeadline { device, generation } => {
                    self.on_poll_deadline(device, generation)
                }
                Timer::PublishDirectory => self.publish_directory(),
            }
        }
    }

    /// Schedule a device's next poll (see [`schedule::next_slot_ms`]).
    fn schedule_next(&mut self, d: usize, now: Instant) {
        let dev = &mut self.devices[d];
        let wall = self.clock.unix_ms();
        dev.next_slot_ms =
            schedule::next_slot_ms(dev.next_slot_ms, dev.spec.interval, dev.phase, wall);
        let at = now + Duration::from_millis(dev.next_slot_ms.saturating_sub(wall));
        self.timers.push(at, Timer::PollDue(d));
    }

    fn on_poll_due(&mut self, d: usize, now: Instant) {
        let slot_ms = self.devices[d].next_slot_ms;
        self.schedule_next(d, now);
        if self.devices[d].poll.is_some() {
            // Never two polls of one device at once.
            self.devices[d].status.polls_overrun += 1;
            self.metrics.polls_overrun.increment(1);
            return;
        }
        let dev = &mut self.devices[d];
        dev.poll_generation += 1;
        let discover = matches!(dev.spec.credentials, Credentials::V3 { .. }) && dev.v3.is_none();
        let jobs = poll::jobs_for(&dev.spec, &self.custom, discover, dev.c32);
        dev.poll = Some(Poll::new(
            slot_ms,
            now,
            jobs,
            dev.poll_generation,
            dev.unreachable,
        ));
        let limit = schedule::poll_time_limit(dev.spec.interval);
        let generation = dev.poll_generation;
        self.timers.push(
            now + limit,
            Timer::PollDeadline {
                device: d,
                generation,
            },
        );
        self.pump(d);
    }

    /// Start as many of a device's pending jobs as its and the global caps allow.
    fn pump(&mut self, d: usize) {
        loop {
            let Some(poll) = self.devices[d].poll.as_ref() else {
                return;
            };
            // Discovery must finish before anything else is sent.
            let discovering = poll
                .jobs
                .iter()
                .any(|j| j.kind == JobKind::Discover && j.state != JobState::Done);
            let next = poll.jobs.iter().position(|j| {
                j.state == JobState::Pending && (!discovering || j.kind == JobKind::Discover)
            });
            let Some(job) = next else {
                break;
            };
            // Probing a device that did not answer: one request until it does.
            if poll.probing() && poll.in_flight > 0 {
                break;
            }
            if poll.in_flight >= self.devices[d].spec.max_in_flight.max(1) {
                break;
            }
            if self.outstanding.len() >= self.max_in_flight {
                if !self.devices[d].waiting {
                    self.devices[d].waiting = true;
                    self.waiting.push_back(d);
                }
                break;
            }
            if let Some(p) = self.devices[d].poll.as_mut() {
                p.jobs[job].state = JobState::Running;
                p.in_flight += 1;
            }
            let id = self.alloc_id();
            self.send(d, job, id, 0);
        }
        self.maybe_finish(d);
    }

    fn alloc_id(&mut self) -> i32 {
        self.next_id =
            transport::next_request_id(self.next_id, |id| self.outstanding.contains_key(&id));
        self.next_id
    }

    /// Encode and send the current request of a job under `id`.
    fn send(&mut self, d: usize, job: usize, id: i32, attempt: u32) {
        let now = self.clock.now();
        let dev = &mut self.devices[d];
        let encoded = match dev.poll.as_ref().and_then(|p| p.jobs.get(job)) {
            Some(j) => self
                .encoder
                .encode(&dev.spec, dev.v3.as_ref(), j, &self.custom, id, now),
            None => Err("no poll".into()),
        };
        let Some(poll) = dev.poll.as_mut() else {
            return;
        };
        let generation = poll.generation;
        if let Err(e) = encoded {
            poll.jobs[job].state = JobState::Failed;
            poll.in_flight = poll.in_flight.saturating_sub(1);
            poll.error.get_or_insert(("encode", e));
            return;
        }
        poll.requests += 1;
        dev.status.requests += 1;
        let addr = dev.spec.addr;
        let timeout = dev.spec.timeout;
        let sent = self.sockets.try_send(self.encoder.bytes(), addr);
        if let Some(Err(e)) = &sent {
            // Not fatal: the deadline will retry; note why.
            if let Some(p) = self.devices[d].poll.as_mut() {
                p.error.get_or_insert(("send", e.to_string()));
            }
        }
        self.metrics.requests.increment(1);
        self.outstanding.insert(
            id,
            Outstanding {
                device: d,
                job,
                attempt,
                sent_at: now,
                generation,
            },
        );
        self.metrics.in_flight.set(self.outstanding.len() as f64);
        self.timers
            .push(now + timeout, Timer::Deadline { id, attempt });
    }

    /// A request finished: give waiting devices a chance at the freed global slot.
    fn release(&mut self, _d: usize) {
        self.metrics.in_flight.set(self.outstanding.len() as f64);
        while self.outstanding.len() < self.max_in_flight {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            self.devices[w].waiting = false;
            self.pump(w);
        }
    }

    /// Finish the poll once no job is pending or running.
    fn maybe_finish(&mut self, d: usize) {
        let done = self.devices[d].poll.as_ref().is_some_and(Poll::is_over);
        if !done {
            return;
        }
        let Some(poll) = self.devices[d].poll.take() else {
            return;
        };
        let out = self.finish(d, poll);
        (self.output)(out);
        if let Ok(mut b) = self.board.lock()
            && let Some(slot) = b.get_mut(d)
        {
            *slot = self.devices[d].status.clone();
        }
    }

    fn publish_directory(&mut self) {
        self.directory_dirty = false;
        let Some(p) = &self.directory else {
            return;
        };
        let mut dir = IfDirectory::default();
        for dev in &self.devices {
            for addr in &dev.spec.flow_exporters {
                for (i, info) in &dev.if_info {
                    dir.insert(*addr, *i, info.clone());
                }
            }
        }
        p.publish(dir);
    }

    fn finish(&mut self, d: usize, poll: Poll) -> PollOutput {
        let dev = &mut self.devices[d];
        let now_ms = self.clock.unix_ms();
        let took = self.clock.now().saturating_duration_since(poll.started);
        let poll_ms = took.as_millis().min(u32::MAX as u128) as u32;
        let rtt_ms =
            (poll.rtt_n > 0).then(|| poll.rtt_sum.as_secs_f64() * 1000.0 / poll.rtt_n as f64);
        // The interface rows need both IF-MIB walks; topology and user-defined walks have their
        // own checks below.
        let walks_ok = poll.if_walks_ok();
        let mut interfaces = Vec::new();
        if walks_ok && dev.spec.modules.interfaces {
            if rows::lacks_hc(&poll.rows) {
                // No HC counters: poll ifTable's 32-bit ones from now on.
                dev.c32 = true;
            }
            interfaces = rows::interface_rows(
                &mut dev.rates,
                &poll.rows,
                poll.sys.uptime,
                dev.v3.as_ref().map(|s| s.boots),
                &rows::RowKey {
                    device: &dev.spec.name,
                    tags: &dev.spec.tags,
                    ts_ms: poll.slot_ms,
                },
            );
        }
        let custom_rows = dev.custom_last.rows(
            &self.custom,
            &poll.custom,
            poll.sys.uptime,
            &dev.spec.name,
            poll.slot_ms,
        );
        let links = self.observe_topology(d, &poll, walks_ok, now_ms);
        let dev = &mut self.devices[d];
        if walks_ok && dev.spec.modules.interfaces && !dev.spec.flow_exporters.is_empty() {
            let info = rows::if_info(&poll.rows);
            if info != dev.if_info {
                dev.if_info = info;
                if self.directory.is_some() && !self.directory_dirty {
                    self.directory_dirty = true;
                    self.timers.push(
                        self.clock.now() + Duration::from_secs(1),
                        Timer::PublishDirectory,
                    );
                }
            }
        }
        let ok = poll.error.is_none();
        dev.unreachable = schedule::unreachable_after(poll.error.as_ref(), poll.answered());
        dev.status.record_poll(
            &dev.spec.name,
            &PollSummary {
                error: poll.error.as_ref(),
                poll_ms,
                rtt_ms,
                sys_name: poll.sys.name.as_deref(),
                sys_uptime_ticks: poll.sys.uptime,
                interfaces: &interfaces,
                gauges: (dev.spec.prometheus && walks_ok).then_some(interfaces.as_slice()),
                engine_boots: dev.v3.as_ref().map(|s| s.boots),
            },
            now_ms,
        );
        if ok {
            self.metrics.polls_ok.increment(1);
        } else {
            self.metrics.polls_failed.increment(1);
            if let Some((kind, _)) = &poll.error {
                metrics::counter!("nmsd_snmp_device_errors_total", "kind" => *kind).increment(1);
            }
        }
        self.metrics.poll_seconds.record(took.as_secs_f64());
        let device = rows::device_row(
            &dev.spec,
            dev.v3.as_ref(),
            poll,
            poll_ms,
            rtt_ms,
            interfaces.len(),
        );
        PollOutput {
            device,
            interfaces,
            links,
            custom: custom_rows,
        }
    }
}
