//! A fast SNMP agent simulator (docs/snmp-design.md § 12): thousands of devices on one UDP
//! socket, each the 127.0.x.y address it is asked on, answering like net-snmp.
//!
//! Tests and benches start one on a thread and stop it:
//! ```no_run
//! use nmsd_snmpsim::{SimConfig, Simulator};
//! let sim = Simulator::spawn(SimConfig { devices: 100, listen: "0.0.0.0:0".parse().unwrap(),
//!                                        ..SimConfig::default() }).unwrap();
//! let device_7 = sim.device_addr(7); // 127.0.1.8:PORT
//! // … poll it …
//! sim.stop().unwrap();
//! ```
//! Values: [`data::if_rates`] gives the exact rate of every generated counter, so a poller's
//! rates can be checked; behaviours ([`Behaviour`]) make devices dead, slow, flaky, restart, and
//! so on. The `nmsd-snmpsim` binary wraps all of this in flags.

mod agent;
mod config;
pub mod data;
mod net;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use agent::{Stats, StatsSnapshot};
pub use config::{
    Addressing, Behaviour, DataSpec, Group, SecLevel, SimConfig, UserSpec, parse_count_arg,
};
pub use data::{Fixture, FixtureError, FixtureValue, IfRates, if_rates};

use agent::{Agent, DeviceShared, Verdict};
use net::Sock;

/// Why a simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A bound simulator, not yet serving. [`Simulator::run`] serves on the calling thread,
/// [`Simulator::spawn`] on a new one.
pub struct Simulator {
    cfg: SimConfig,
    socks: Vec<Sock>,
    agent: Agent,
    shared: Arc<[DeviceShared]>,
    stats: Arc<Stats>,
    devices: Vec<SocketAddr>,
    started: Instant,
}

/// A reply held back by a slow device.
struct Delayed {
    due: Instant,
    seq: u64,
    sock: usize,
    to: SocketAddrV4,
    from: Option<Ipv4Addr>,
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

/// Most datagrams read from one socket per wake-up, so delayed replies go out on time.
const BATCH: usize = 256;
/// Longest sleep; bounds how long a stop takes.
const TICK_MS: i32 = 50;

impl Simulator {
    /// Validate, derive keys, bind.
    pub fn bind(cfg: SimConfig) -> Result<Simulator, SimError> {
        cfg.validate().map_err(SimError::Config)?;
        let shared: Arc<[DeviceShared]> = (0..cfg.devices)
            .map(|_| DeviceShared::new(cfg.cdp))
            .collect();
        let stats = Arc::new(Stats::default());
        let agent =
            Agent::new(&cfg, Arc::clone(&shared), Arc::clone(&stats)).map_err(SimError::Config)?;
        let bind = |addr: SocketAddrV4, pktinfo: bool| {
            Sock::bind(addr, pktinfo).map_err(|source| SimError::Bind { addr, source })
        };
        let mut socks = Vec::new();
        let mut devices = Vec::with_capacity(cfg.devices);
        match cfg.addressing {
            Addressing::Pktinfo => {
                let s = bind(cfg.listen, true)?;
                let port = s.local_addr()?.port();
                devices
                    .extend((0..cfg.devices).map(|i| config::socket_addr(cfg.device_ip(i), port)));
                socks.push(s);
            }
            Addressing::Ports => {
                for i in 0..cfg.devices {
                    let port = match cfg.listen.port() {
                        0 => 0,
                        p => p + i as u16,
                    };
                    let s = bind(SocketAddrV4::new(*cfg.listen.ip(), port), false)?;
                    devices.push(s.local_addr()?);
                    socks.push(s);
                }
            }
        }
        Ok(Simulator {
            cfg,
            socks,
            agent,
            shared,
            stats,
            devices,
            started: Instant::now(),
        })
    }

    /// The (first) bound socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socks[0].local_addr()
    }

    /// Where each device answers.
    pub fn device_addrs(&self) -> &[SocketAddr] {
        &self.devices
    }

    /// Serve until `stop` is set (checked at least every 50 ms).
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        let mut fds: Vec<libc::pollfd> = self
            .socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut delayed: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
        let mut seq = 0u64;
        let ports = self.cfg.addressing == Addressing::Ports;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
                if let Some(Reverse(d)) = delayed.pop() {
                    self.send(d.sock, &d.bytes, d.to, d.from);
                }
            }
            let timeout = delayed.peek().map_or(TICK_MS, |Reverse(d)| {
                let ms = d
                    .due
                    .saturating_duration_since(now)
                    .as_micros()
                    .div_ceil(1000);
                (ms as i32).min(TICK_MS)
            });
            net::wait_readable(&mut fds, timeout)?;
            for k in 0..fds.len() {
                if fds[k].revents == 0 {
                    continue;
                }
                for _ in 0..BATCH {
                    let (len, src, dst) = match self.socks[k].recv(&mut buf) {
                        Ok(got) => got,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // WouldBlock: drained; anything else (ICMP errors surface here on
                        // UDP) ends this batch too.
                        Err(_) => break,
                    };
                    let dev = if ports {
                        Some(k)
                    } else {
                        dst.and_then(|ip| self.cfg.device_of(ip))
                    };
                    let Some(dev) = dev else {
                        self.stats
                            .unknown_destination
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let at = Instant::now();
                    let from = if ports { None } else { dst };
                    match self
                        .agent
                        .handle(dev, at.duration_since(self.started), &buf[..len])
                    {
                        Verdict::Drop => {}
                        Verdict::Reply => {
                            let Simulator {
                                socks,
                                agent,
                                stats,
                                ..
                            } = &self;
                            if socks[k].send(agent.reply(), src, from).is_err() {
                                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Verdict::ReplyAfter(d) => {
                            seq += 1;
                            delayed.push(Reverse(Delayed {
                                due: at + d,
                                seq,
                                sock: k,
                                to: src,
                                from,
                                bytes: self.agent.reply().to_vec(),
                            }));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&self, sock: usize, bytes: &[u8], to: SocketAddrV4, from: Option<Ipv4Addr>) {
        if self.socks[sock].send(bytes, to, from).is_err() {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bind and serve on a new thread named `nmsd-snmpsim`.
    pub fn spawn(cfg: SimConfig) -> Result<SimHandle, SimError> {
        let sim = Simulator::bind(cfg)?;
        let addr = sim.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicI32::new(0));
        let mut handle = SimHandle {
            addr,
            devices: sim.devices.clone(),
            engine_ids: (0..sim.cfg.devices)
                .map(|i| agent::engine_id(sim.cfg.engine_seed, i))
                .collect(),
            config: sim.cfg.clone(),
            shared: Arc::clone(&sim.shared),
            stats: Arc::clone(&sim.stats),
            stop: Arc::clone(&stop),
            tid: Arc::clone(&tid),
            started: sim.started,
            thread: None,
        };
        let thread = std::thread::Builder::new()
            .name("nmsd-snmpsim".into())
            .spawn(move || {
                tid.store(net::gettid(), Ordering::Relaxed);
                sim.run(&stop)
            })?;
        handle.thread = Some(thread);
        Ok(handle)
    }
}

/// A simulator running on its own thread; stopped on [`SimHandle::stop`] or drop.
pub struct SimHandle {
    /// The bound socket (Pktinfo: 0.0.0.0:PORT or the listen address; Ports: device 0's).
    pub addr: SocketAddr,
    devices: Vec<SocketAddr>,
    engine_ids: Vec<Vec<u8>>,
    config: SimConfig,
    shared: Arc<[DeviceShared]>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicI32>,
    started: Instant,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// Where device `i` answers.
    pub fn device_addr(&self, i: usize) -> SocketAddr {
        self.devices[i]
    }

    pub fn device_addrs(&self) -> &[SocketAddr] {
        &self.devices
    }

    /// Device `i`'s SNMPv3 engine ID.
    pub fn engine_id(&self, i: usize) -> &[u8] {
        &self.engine_ids[i]
    }

    /// The configuration it runs (behaviour per device: [`SimConfig::behaviour`]).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// When the simulated clocks started (sysUpTime = initial uptime + time since then).
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// User + system CPU time of the simulator thread so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        match self.tid.load(Ordering::Relaxed) {
            0 => None,
            tid => net::thread_cpu(tid),
        }
    }

    /// Make device `i` stop (or resume) answering, at run time.
    pub fn set_dead(&self, i: usize, dead: bool) {
        self.shared[i].dead.store(dead, Ordering::Relaxed);
    }

    /// Make device `i` serve (or stop serving) its CDP cache rows, at run time; only with
    /// [`SimConfig::cdp`]. Without them it answers like an agent without CISCO-CDP-MIB.
    pub fn set_cdp(&self, i: usize, on: bool) {
        if on {
            self.shared[i]
                .neighbours
                .fetch_or(data::NEIGHBOURS_CDP, Ordering::Relaxed);
        } else {
            self.shared[i]
                .neighbours
                .fetch_and(!data::NEIGHBOURS_CDP, Ordering::Relaxed);
        }
    }

    /// Remove (or restore) device `i`'s neighbour on local port `slot + 1` (0 or 1): its LLDP
    /// remote entry and, with CDP, its CDP cache entry (the cable is gone).
    pub fn set_neighbour(&self, i: usize, slot: u8, present: bool) {
        let bit = 1u8 << (slot & 1);
        if present {
            self.shared[i].neighbours.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.shared[i].neighbours.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Stop serving and wait for the thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("simulator thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests;
