//! Wires sources, rings, parse workers, processors and sinks from the config, and takes them
//! down again in the order that loses nothing: stop receiving, drain rings, flush processors,
//! flush sinks, save templates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use nmsd_pipeline::heartbeat::{Heartbeat, Liveness};
use nmsd_pipeline::queue::sink_queue;
use nmsd_pipeline::ring::{RingReceiver, Waker, datagram_ring};
use nmsd_pipeline::worker::{ParseWorker, SinkRoute, WorkerSetup};
use nmsd_sinks::questdb::QuestDbSink;
use nmsd_sinks::{ShutdownSignal, SinkStatus};

use crate::config::Config;
use crate::lifecycle::{ShutdownReport, SinkLedger, join_until};
use crate::sources::netflow;
use crate::state::TemplateStore;

/// What the control plane reports about a running topology.
#[derive(Debug)]
pub struct RuntimeStatus {
    pub started: Instant,
    pub workers: usize,
    pub sources: Vec<SourceStatus>,
    pub questdb: Option<Arc<SinkStatus>>,
    /// SNMP device health, if SNMP polling is configured.
    pub snmp: Option<nmsd_snmp::engine::StatusBoard>,
    /// The LLDP topology, if SNMP polling is configured.
    pub topology: Option<Arc<std::sync::Mutex<nmsd_snmp::topology::TopologySnapshot>>>,
    /// Cap on per-interface series on /metrics.
    pub snmp_max_series: usize,
    pub ready: AtomicBool,
    /// Progress of every receive thread, parse worker and sink: readiness and the systemd
    /// watchdog follow it.
    pub liveness: Arc<Liveness>,
}

impl RuntimeStatus {
    /// Started, not stopping, and no pipeline thread stuck.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.liveness.healthy()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: &'static str,
    pub listen: SocketAddr,
    pub sockets: usize,
    /// SO_RCVBUF the kernel granted per socket.
    pub receive_buffer_bytes: Vec<usize>,
}

/// Running threads.
pub struct Topology {
    stop_receivers: Arc<AtomicBool>,
    snmp: Option<(
        tokio::sync::mpsc::Sender<nmsd_snmp::engine::Command>,
        JoinHandle<()>,
    )>,
    sink_shutdown: Arc<ShutdownSignal>,
    /// How long stopping may take, from the sinks' `shutdown_timeout`.
    shutdown_timeout: std::time::Duration,
    ledgers: Vec<SinkLedger>,
    receivers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
    pub status: Arc<RuntimeStatus>,
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .with_context(|| format!("cannot start thread {name}"))
}

impl Topology {
    pub fn start(cfg: &Config) -> anyhow::Result<Topology> {
        let workers = cfg.pipeline.worker_count();
        let stop_receivers = Arc::new(AtomicBool::new(false));
        let sink_shutdown = Arc::new(ShutdownSignal::default());

        let liveness = Liveness::new();
        let store = TemplateStore::new(&cfg.general.state_dir);
        store.prepare()?;
        let restore = store.load_all();
        store.remove_beyond(workers);

        // Interface names from SNMP polling, for flow roll-ups (docs/snmp-design.md §10).
        let directory = cfg.sources.snmp.as_ref().map(|_| {
            nmsd_pipeline::published::Published::<nmsd_pipeline::enrich::IfDirectory>::new()
        });

        // Sinks first, so workers have somewhere to send.
        let mut routes = Vec::new();
        let mut sinks = Vec::new();
        let mut questdb = None;
        let mut ledgers = Vec::new();
        let q = &cfg.sinks.questdb;
        if q.enabled {
            let (queue, rx) = sink_queue("questdb", q.queue_capacity, q.queue_full_policy);
            let status = Arc::new(SinkStatus::default());
            let mut qc = q.clone();
            qc.custom_tables = cfg
                .sources
                .snmp
                .as_ref()
                .map(|s| s.custom_schemas())
                .unwrap_or_default();
            qc.source_names = cfg.sources.netflow.iter().map(|s| s.name.clone()).collect();
            ledgers.push(SinkLedger {
                name: "questdb",
                accepted_rows: rx.accepted_rows(),
                status: status.clone(),
            });
            let mut sink = QuestDbSink::new(qc, rx, sink_shutdown.clone(), status.clone())
                .with_heartbeat(liveness.heartbeat("nmsd-sink-questdb"));
            if let Some(d) = &directory {
                sink = sink.with_directory(d.reader());
            }
            sinks.push(spawn("nmsd-sink-questdb".into(), move || sink.run())?);
            routes.push(SinkRoute {
                queue,
                raw_flows: q.raw_flows,
            });
            questdb = Some(status);
        }

        // Sources: bind every socket before starting anything that could need undoing.
        let mut inputs: Vec<Vec<RingReceiver>> = (0..workers).map(|_| Vec::new()).collect();
        // The flow source of each input, so records (and exporter state) say which listener
        // they came in on.
        let mut input_sources: Vec<Vec<u8>> = (0..workers).map(|_| Vec::new()).collect();
        // Registered with `liveness` only for workers that get inputs (the others never run).
        let worker_hearts: Vec<_> = (0..workers)
            .map(|id| Heartbeat::new(format!("nmsd-parse-{id}")))
            .collect();
        let wakers: Vec<_> = worker_hearts
            .iter()
            .map(|h| Waker::with_heartbeat(h.clone()))
            .collect();
        let mut receivers = Vec::new();
        let mut sources = Vec::new();
        let mut next_worker = 0usize;
        for (source_index, src) in cfg.sources.netflow.iter().enumerate() {
            let source_index = u8::try_from(source_index)
                .context("more than 256 netflow sources (check-config refuses this)")?;
            let count = if src.sockets == 0 {
                workers
            } else {
                src.sockets
            };
            let bound = netflow::bind_sockets(src, count)
                .with_context(|| format!("starting netflow source \"{}\"", src.name))?;
            let buffers: Vec<usize> = bound.iter().map(|b| b.receive_buffer).collect();
            let wanted = src.receive_buffer.0 as usize;
            if buffers.iter().any(|&b| b < wanted) {
                tracing::warn!(
                    source = %src.name,
                    "receive buffer is {} bytes, less than the {} asked for: the kernel caps \
                     SO_RCVBUF at net.core.rmem_max unless nmsd runs as root (or with \
                     CAP_NET_ADMIN); raise it with `sysctl -w net.core.rmem_max={}`",
                    buffers.iter().min().copied().unwrap_or(0) / 2,
                    wanted,
                    wanted
                );
            }
            // The kernel's drop counts are read from clones of the sockets by a thread of
            // their own: a receive thread blocked on a full ring reads nothing.
            let watched = bound
                .iter()
                .map(|b| Ok((b.index, b.socket.try_clone()?)))
                .collect::<std::io::Result<Vec<_>>>()
                .context("cloning the flow sockets for the drop monitor")?;
            let (name, stop) = (src.name.clone(), stop_receivers.clone());
            receivers.push(spawn(format!("nmsd-drops-{}", src.name), move || {
                netflow::run_drop_monitor(&name, watched, stop)
            })?);
            for b in bound {
                let ring_name = format!("{}-{}", src.name, b.index);
                let (tx, rx) = datagram_ring(
                    &ring_name,
                    src.ring_capacity,
                    src.batch_datagrams,
                    src.ring_full_policy,
                );
                let w = next_worker % workers;
                let tx = tx
                    .with_waker(wakers[w].clone())
                    .with_heartbeat(liveness.heartbeat(format!("nmsd-rx-{ring_name}")));
                inputs[w].push(rx);
                input_sources[w].push(source_index);
                next_worker += 1;
                let stop = stop_receivers.clone();
                let name = src.name.clone();
                let opts = netflow::ReceiveOptions {
                    max_datagram: src.max_datagram_size.0 as usize,
                    coalesce: src.receive_coalesce.0,
                };
                receivers.push(spawn(format!("nmsd-rx-{ring_name}"), move || {
                    netflow::run_receiver(&name, b, opts, tx, stop)
                })?);
            }
            tracing::info!(
                source = %src.name,
                listen = %src.listen,
                sockets = count,
                receive_buffer = buffers.first().copied().unwrap_or(0),
                "receiving NetFlow v5/v9/IPFIX"
            );
            sources.push(SourceStatus {
                name: src.name.clone(),
                kind: "netflow",
                listen: src.listen,
                sockets: count,
                receive_buffer_bytes: buffers,
            });
        }

        // SNMP polling: one thread with its own current-thread runtime (docs/snmp-design.md §4).
        let mut snmp = None;
        let mut snmp_board = None;
        let mut snmp_topology = None;
        if let Some(sc) = &cfg.sources.snmp {
            let plan = sc
                .plan()
                .map_err(|(k, m)| anyhow::anyhow!("[sources.snmp] {k}: {m}"))?;
            let devices = plan.devices.len();
            let board: nmsd_snmp::engine::StatusBoard = Default::default();
            let queue = routes.first().map(|r| r.queue.clone());
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let (bind4, bind6) = (sc.bind, sc.bind6);
            let shared = nmsd_snmp::engine::EngineShared {
                board: board.clone(),
                directory: directory.clone(),
                topology: Default::default(),
            };
            snmp_topology = Some(shared.topology.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let handle = spawn("nmsd-snmp".into(), move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the SNMP runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let output = Box::new(move |o: nmsd_snmp::engine::PollOutput| {
                        if let Some(q) = &queue {
                            if !o.interfaces.is_empty() {
                                q.try_send(nmsd_pipeline::SinkMessage::SnmpInterfaces(
                                    o.interfaces,
                                ));
                            }
                            q.try_send(nmsd_pipeline::SinkMessage::SnmpDevices(vec![o.device]));
                            if !o.links.is_empty() {
                                q.try_send(nmsd_pipeline::SinkMessage::TopologyLinks(o.links));
                            }
                            if !o.custom.is_empty() {
                                q.try_send(nmsd_pipeline::SinkMessage::SnmpCustom(o.custom));
                            }
                        }
                    });
                    match nmsd_snmp::engine::Engine::new(plan, bind4, bind6, output, shared).await {
                        Ok(engine) => {
                            let _ = ready_tx.send(Ok(()));
                            engine.run(rx).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "cannot bind the SNMP polling socket ({bind4} / {bind6}): {e}"
                            )));
                        }
                    }
                });
            })?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("{e}"),
                Err(_) => anyhow::bail!("the SNMP thread stopped during start-up"),
            }
            tracing::info!(devices, "polling SNMP devices");
            snmp = Some((tx, handle));
            snmp_board = Some(board);

            // The trap receiver: a thread per listen address.
            let engine = crate::state::snmp_engine(
                &cfg.general.state_dir,
                sc.traps.as_ref().and_then(|t| t.engine_id.as_deref()),
            )?;
            if let Some(tc) = sc
                .trap_config(engine)
                .map_err(|(k, m)| anyhow::anyhow!("[sources.snmp] {k}: {m}"))?
            {
                let tc = Arc::new(tc);
                for addr in sc
                    .traps
                    .as_ref()
                    .map(|t| t.listen.clone())
                    .unwrap_or_default()
                {
                    let rcvbuf = sc.traps.as_ref().map_or(0, |t| t.receive_buffer_bytes());
                    let sock = nmsd_snmp::traps::TrapSocket::bind(addr, rcvbuf).with_context(|| {
                        format!("cannot listen for traps on {addr}; ports below 1024 need root or CAP_NET_BIND_SERVICE")
                    })?;
                    let receive_buffer = sock.receive_buffer();
                    let receiver = nmsd_snmp::traps::TrapReceiver::new(tc.clone());
                    let stop = stop_receivers.clone();
                    let queue = routes.first().map(|r| r.queue.clone());
                    receivers.push(spawn(format!("nmsd-traps-{}", addr.port()), move || {
                        // Batches, under the queue's full policy; refusals are counted there.
                        nmsd_snmp::traps::run(sock, receiver, stop, Default::default(), |rows| {
                            queue
                                .as_ref()
                                .is_none_or(|q| q.send(nmsd_pipeline::SinkMessage::SnmpTraps(rows)))
                        })
                    })?);
                    tracing::info!(%addr, receive_buffer, "receiving SNMP traps and informs");
                }
            }
        }

        let overrides: Vec<_> = cfg
            .pipeline
            .sampling_override
            .iter()
            .map(|o| (o.exporter, o.interval))
            .collect();
        let mut worker_handles = Vec::new();
        let exporter_labels = Arc::new(nmsd_pipeline::worker::ExporterLabels::default());
        for (id, (inputs, input_sources)) in inputs.into_iter().zip(input_sources).enumerate() {
            if inputs.is_empty() {
                continue;
            }
            let store = store.clone();
            let setup = WorkerSetup {
                id,
                inputs,
                input_sources,
                waker: wakers[id].clone(),
                limits: cfg.pipeline.decoder_limits(),
                sampling_overrides: overrides.clone(),
                restore: (!restore.is_empty()).then(|| restore.clone()),
                processors: cfg.processors.iter().map(|p| p.build()).collect(),
                sinks: routes.clone(),
                snapshot_every: cfg.pipeline.template_save_interval.get(),
                snapshot_hook: Some(Box::new(move |w, text| store.save(w, &text))),
                exporter_labels: exporter_labels.clone(),
            };
            liveness.register(worker_hearts[id].clone());
            let worker = ParseWorker::new(setup);
            worker_handles.push(spawn(format!("nmsd-parse-{id}"), move || worker.run())?);
        }
        // Workers hold the only queue senders now: when they finish, sinks see the end.
        drop(routes);
        liveness
            .spawn_sampler()
            .context("cannot start thread nmsd-liveness")?;

        let processors: Vec<_> = cfg.processors.iter().map(|p| p.name()).collect();
        tracing::info!(
            workers = worker_handles.len(),
            processors = ?processors,
            questdb = q.enabled,
            state_dir = %cfg.general.state_dir.display(),
            "pipeline started"
        );
        Ok(Topology {
            stop_receivers,
            snmp,
            sink_shutdown,
            shutdown_timeout: q.shutdown_timeout.get(),
            ledgers,
            receivers,
            workers: worker_handles,
            sinks,
            status: Arc::new(RuntimeStatus {
                started: Instant::now(),
                workers,
                sources,
                questdb,
                snmp: snmp_board,
                topology: snmp_topology,
                snmp_max_series: cfg
                    .sources
                    .snmp
                    .as_ref()
                    .map_or(0, |s| s.prometheus_max_series),
                ready: AtomicBool::new(true),
                liveness,
            }),
        })
    }

    /// Stop receiving, drain, flush, save, all within the sinks' `shutdown_timeout`: threads
    /// still running at the deadline are left behind (the process exits), and what they held
    /// is reported as lost.
    pub fn shutdown(self) -> ShutdownReport {
        self.status.ready.store(false, Ordering::Relaxed);
        // Finished threads stop beating; that is no stall.
        self.status.liveness.stop();
        let started = Instant::now();
        self.stop_receivers.store(true, Ordering::Relaxed);
        // One deadline for every stage, fixed now: an unreachable server cannot hold the
        // process longer.
        let deadline = self.sink_shutdown.begin(self.shutdown_timeout);
        let mut stuck = Vec::new();
        for h in self.receivers {
            join_until(h, deadline, &mut stuck);
        }
        // The SNMP engine holds a sink queue sender: stop it before the sinks are drained.
        if let Some((tx, handle)) = self.snmp {
            let _ = tx.try_send(nmsd_snmp::engine::Command::Stop);
            join_until(handle, deadline, &mut stuck);
        }
        tracing::info!("receiving stopped; draining rings and flushing processors");
        for h in self.workers {
            join_until(h, deadline, &mut stuck);
        }
        // A sink that gave up at the deadline still counts what it held: a moment for that.
        let sinks_deadline = deadline + crate::lifecycle::SINK_ACCOUNTING_GRACE;
        let mut sinks_stuck = Vec::new();
        for h in self.sinks {
            join_until(h, sinks_deadline, &mut sinks_stuck);
        }
        let report = ShutdownReport::new(
            &self.ledgers,
            [stuck, sinks_stuck].concat(),
            started.elapsed(),
        );
        report.log();
        report
    }
}
