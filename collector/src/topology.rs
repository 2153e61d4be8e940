//! Wires sources, rings, parse workers, processors and sinks from the config's components and
//! their `inputs`, and takes them down again in the order that loses nothing: stop receiving,
//! drain rings, flush per-worker processors, flush the global stage, flush sinks, save
//! templates.
//!
//! Where things run: NetFlow listeners feed parse workers over rings (exporter affinity);
//! per-worker processors run in each worker, called directly (no queue hop); processors that
//! must see everything run once in the global stage, fed over one bounded queue; other sources
//! (SNMP polling, traps) run on their own threads. Every sink has its own bounded queue and
//! thread. See docs/decisions/0010-component-model.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use nmsd_pipeline::component::{
    ComponentCounters, ComponentStats, Placement, ProcessorContext, SinkContext, Upstream,
};
use nmsd_pipeline::delivery::{MemoryInput, SinkBufferConfig, SinkInput};
use nmsd_pipeline::enrich::{IfDirectory, InterfaceDirectories};
use nmsd_pipeline::event::EventLog;
use nmsd_pipeline::global::{GlobalSender, GlobalStage, global_queue};
use nmsd_pipeline::heartbeat::{Heartbeat, Liveness};
use nmsd_pipeline::published::Published;
use nmsd_pipeline::queue::{SinkQueue, sink_queue};
use nmsd_pipeline::ring::{RingReceiver, Waker, datagram_ring};
use nmsd_pipeline::route::{Graph, Node, Port, Slot, SourceOutput, Targets};
use nmsd_pipeline::stream::{StreamKind, StreamSet};
use nmsd_pipeline::view::FlowViewBuilder;
use nmsd_pipeline::worker::{ParseWorker, WorkerSetup};
use nmsd_sinks::{ShutdownSignal, SinkStatus};

use crate::config::Config;
use crate::lifecycle::{ShutdownReport, SinkLedger, join_until};
use crate::sources::{RunningSource, SourceContext, netflow};
use crate::state::TemplateStore;

/// Recent events kept for `/api/v1/events`.
const EVENT_LOG: usize = 1000;

/// One component as the control plane reports it.
#[derive(Debug)]
pub struct ComponentEntry {
    pub stats: Arc<ComponentStats>,
    /// A sink's health.
    pub sink: Option<Arc<SinkStatus>>,
    /// What a sink's queue holds now, in bytes.
    pub queued_bytes: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Where a processor runs.
    pub placement: Option<&'static str>,
    pub inputs: Vec<String>,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What the control plane reports about a running topology.
#[derive(Debug)]
pub struct RuntimeStatus {
    pub started: Instant,
    pub workers: usize,
    pub sources: Vec<SourceStatus>,
    /// Every source, processor and sink, in config order by kind.
    pub components: Vec<ComponentEntry>,
    /// SNMP device health, one board per polling source.
    pub snmp: Vec<nmsd_snmp::engine::StatusBoard>,
    /// The LLDP topology of each polling source.
    pub topology: Vec<Arc<std::sync::Mutex<nmsd_snmp::topology::TopologySnapshot>>>,
    /// Cap on per-interface series on /metrics.
    pub snmp_max_series: usize,
    /// The most recent events any component emitted.
    pub events: Arc<EventLog>,
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
    /// Sources that must be told to stop (the SNMP engine), with their threads.
    stoppable: Vec<(crate::sources::StopFn, JoinHandle<()>)>,
    sink_shutdown: Arc<ShutdownSignal>,
    /// How long stopping may take, from the sinks' `shutdown_timeout`.
    shutdown_timeout: std::time::Duration,
    ledgers: Vec<SinkLedger>,
    receivers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    global: Option<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
    pub status: Arc<RuntimeStatus>,
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .with_context(|| format!("cannot start thread {name}"))
}

/// The ports of `id`'s output outside the thread that produces it: sinks listing it, and the
/// global stage when a global processor takes from it.
struct Wiring<'a> {
    cfg: &'a Config,
    sinks: &'a HashMap<String, (SinkQueue, StreamSet)>,
    global: Option<&'a GlobalSender>,
    /// Node of each source and processor id in the global stage's graph.
    global_nodes: &'a HashMap<String, u16>,
}

impl Wiring<'_> {
    fn ports(&self, id: &str, for_flows_view: bool) -> Vec<(Port, StreamSet)> {
        let mut ports = Vec::new();
        for s in &self.cfg.sinks {
            if s.inputs.iter().any(|i| i == id)
                && let Some((q, accepts)) = self.sinks.get(&s.id)
            {
                ports.push((Port::Sink(q.clone()), *accepts));
            }
        }
        // Global processors that take from `id` directly (not through a keyed view).
        let mut wanted = StreamSet::EMPTY;
        for p in &self.cfg.processors {
            if p.spec.placement() == Placement::Global && p.inputs.iter().any(|i| i == id) {
                let mut a = p.spec.accepts();
                if p.spec.flow_view().is_some() && for_flows_view {
                    a = a.without(StreamSet::of(&[StreamKind::Flows]));
                }
                wanted = wanted.union(a);
            }
        }
        if !wanted.is_empty()
            && let (Some(g), Some(node)) = (self.global, self.global_nodes.get(id))
        {
            ports.push((Port::Global(g.clone(), *node), wanted));
        }
        ports
    }
}

impl Topology {
    pub fn start(cfg: &Config) -> anyhow::Result<Topology> {
        let workers = cfg.pipeline.worker_count();
        let stop_receivers = Arc::new(AtomicBool::new(false));
        let sink_shutdown = Arc::new(ShutdownSignal::default());
        nmsd_pipeline::component::describe_component_metrics();

        let liveness = Liveness::new();
        let store = TemplateStore::new(&cfg.general.state_dir);
        store.prepare()?;
        let restore = store.load_all();
        store.remove_beyond(workers);
        let events = EventLog::new(EVENT_LOG);

        let counters: HashMap<String, ComponentCounters> = cfg
            .components()
            .into_iter()
            .map(|(kind, id, ty)| {
                let c = ComponentCounters::new(&id, kind, &ty);
                (id, c)
            })
            .collect();

        // Interface names from every SNMP polling source (docs/snmp-design.md §10).
        let directories: HashMap<String, Arc<Published<IfDirectory>>> = cfg
            .sources
            .iter()
            .filter(|c| c.spec.publishes_interfaces())
            .map(|c| (c.id.clone(), Published::<IfDirectory>::new()))
            .collect();
        let interfaces = InterfaceDirectories {
            sources: directories.values().cloned().collect(),
        };
        // Listeners first (their index is their position among listeners), then the sources
        // that build flows from packets.
        let flow_source_names: Vec<String> = cfg
            .flow_sources()
            .map(|(id, _)| id.to_string())
            .chain(
                cfg.sources
                    .iter()
                    .filter(|c| c.spec.flow_source())
                    .map(|c| c.id.clone()),
            )
            .collect();

        // Sinks first, so everything else has somewhere to send.
        let mut sink_queues = HashMap::new();
        let mut sinks = Vec::new();
        let mut ledgers = Vec::new();
        let mut sink_statuses = HashMap::new();
        let mut queued = HashMap::new();
        for s in &cfg.sinks {
            let c = counters[&s.id].clone();
            let (queue, rx) = sink_queue(&s.id, s.spec.queue());
            let queue = queue.with_counters(c.clone());
            let status = Arc::new(SinkStatus::default());
            queued.insert(s.id.clone(), rx.queued_bytes());
            ledgers.push(SinkLedger {
                name: s.id.clone(),
                accepted_rows: rx.accepted_rows(),
                status: status.clone(),
            });
            let thread = format!("nmsd-sink-{}", s.id);
            let input: Box<dyn SinkInput> = match s.spec.buffer() {
                SinkBufferConfig::Memory => {
                    warn_of_a_left_disk_buffer(&cfg.general.state_dir, &s.id);
                    Box::new(MemoryInput::new(rx))
                }
                SinkBufferConfig::Disk(d) => {
                    let dir = cfg.general.state_dir.join("buffer").join(&s.id);
                    let input = nmsd_sinks::disk_buffer::start(&s.id, dir, &d, rx, status.clone())
                        .with_context(|| {
                            format!(
                                "sink \"{}\": cannot open its disk buffer (check that state_dir \
                                 is writable by nmsd and the disk has room)",
                                s.id
                            )
                        })?;
                    Box::new(input)
                }
            };
            let sink = s
                .spec
                .build(SinkContext {
                    id: Arc::from(s.id.as_str()),
                    input,
                    shutdown: sink_shutdown.clone(),
                    status: status.clone(),
                    heartbeat: liveness.heartbeat(thread.clone()),
                    counters: c,
                    upstream: Upstream {
                        // The user-defined tables of the polling sources it stores.
                        custom_tables: cfg
                            .sources
                            .iter()
                            .filter(|c| s.inputs.contains(&c.id))
                            .flat_map(|c| c.spec.custom_tables())
                            .collect(),
                        flow_source_names: flow_source_names.clone(),
                    },
                })
                .map_err(|e| anyhow::anyhow!("sink \"{}\": {e}", s.id))?;
            sinks.push(spawn(thread, move || sink.run())?);
            sink_queues.insert(s.id.clone(), (queue, s.spec.accepts()));
            sink_statuses.insert(s.id.clone(), status);
        }

        // The global stage's graph: a node per source and processor id, and one per keyed
        // view (its partials, from the workers).
        let global_procs: Vec<_> = cfg
            .processors
            .iter()
            .filter(|p| p.spec.placement() == Placement::Global)
            .collect();
        let mut global_nodes: HashMap<String, u16> = HashMap::new();
        for id in cfg
            .sources
            .iter()
            .map(|c| &c.id)
            .chain(cfg.processors.iter().map(|c| &c.id))
        {
            let n = u16::try_from(global_nodes.len()).context("too many components")?;
            global_nodes.insert(id.clone(), n);
        }
        let view_node = |id: &str| format!("{id}\u{0}view");
        for p in &global_procs {
            if p.spec.flow_view().is_some() {
                let n = u16::try_from(global_nodes.len()).context("too many components")?;
                global_nodes.insert(view_node(&p.id), n);
            }
        }
        let (global_tx, global_rx) = if global_procs.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = global_queue(
                cfg.pipeline.global_queue_capacity,
                cfg.pipeline.global_queue_max_bytes.0,
                cfg.pipeline.global_queue_full_policy,
            );
            (Some(tx), Some(rx))
        };
        let wiring = Wiring {
            cfg,
            sinks: &sink_queues,
            global: global_tx.as_ref(),
            global_nodes: &global_nodes,
        };

        let mut global = None;
        if let Some(rx) = global_rx {
            let mut nodes = vec![Node::default(); global_nodes.len()];
            for (id, n) in &global_nodes {
                nodes[*n as usize].id = Arc::from(id.split('\u{0}').next().unwrap_or(id));
            }
            let mut slots = Vec::new();
            for (k, p) in global_procs.iter().enumerate() {
                let node = global_nodes[&p.id] as usize;
                let view = p.spec.flow_view().is_some();
                for i in &p.inputs {
                    let mut accepts = p.spec.accepts();
                    if view {
                        accepts = accepts.without(StreamSet::of(&[StreamKind::Flows]));
                    }
                    nodes[global_nodes[i] as usize]
                        .targets
                        .local
                        .push((k, accepts));
                }
                if view {
                    nodes[global_nodes[&view_node(&p.id)] as usize]
                        .targets
                        .local
                        .push((k, StreamSet::of(&[StreamKind::FlowView])));
                }
                // What it emits goes to the sinks and later global processors listing it.
                let mut ports = wiring.ports(&p.id, false);
                ports.retain(|(port, _)| matches!(port, Port::Sink(_)));
                nodes[node].targets.ports = ports;
                nodes[node].sent = Some(counters[&p.id].clone());
                slots.push(Slot {
                    node,
                    processor: p.spec.build(&ProcessorContext {
                        id: Arc::from(p.id.as_str()),
                        worker: None,
                        interfaces: interfaces.clone(),
                    }),
                    counters: Some(counters[&p.id].clone()),
                });
            }
            let stage = GlobalStage {
                rx,
                graph: Arc::new(Graph {
                    nodes,
                    events: Some(events.clone()),
                }),
                slots,
                heartbeat: liveness.heartbeat("nmsd-global"),
            };
            global = Some(spawn("nmsd-global".into(), move || stage.run())?);
        }

        // The workers' graph: flow sources (listeners by position, then the sources that
        // build flows on their own thread), then per-worker processors, then the workers'
        // halves of keyed views. A packet or sFlow source runs its own instances of the
        // per-worker processors (a worker of its own), so it has a node here too.
        let flow_ids: Vec<&str> = flow_source_names.iter().map(String::as_str).collect();
        let worker_procs: Vec<_> = cfg
            .processors
            .iter()
            .filter(|p| p.spec.placement() == Placement::Worker)
            .collect();
        let views: Vec<_> = global_procs
            .iter()
            .filter_map(|p| Some((*p, p.spec.flow_view()?)))
            .collect();
        let mut worker_nodes: Vec<Node> = Vec::new();
        let mut node_of: HashMap<&str, usize> = HashMap::new();
        for id in flow_ids
            .iter()
            .copied()
            .chain(worker_procs.iter().map(|p| p.id.as_str()))
        {
            node_of.insert(id, worker_nodes.len());
            worker_nodes.push(Node {
                targets: Targets {
                    local: Vec::new(),
                    ports: wiring.ports(id, true),
                },
                sent: Some(counters[id].clone()),
                id: Arc::from(id),
            });
        }
        for (k, p) in worker_procs.iter().enumerate() {
            for i in &p.inputs {
                if let Some(&n) = node_of.get(i.as_str()) {
                    worker_nodes[n].targets.local.push((k, p.spec.accepts()));
                }
            }
        }
        for (v, (p, _)) in views.iter().enumerate() {
            let slot = worker_procs.len() + v;
            for i in &p.inputs {
                if let Some(&n) = node_of.get(i.as_str()) {
                    worker_nodes[n]
                        .targets
                        .local
                        .push((slot, StreamSet::of(&[StreamKind::Flows])));
                }
            }
            let port = global_tx.as_ref().map(|g| {
                (
                    Port::Global(g.clone(), global_nodes[&view_node(&p.id)]),
                    StreamSet::of(&[StreamKind::FlowView]),
                )
            });
            worker_nodes.push(Node {
                targets: Targets {
                    local: Vec::new(),
                    ports: port.into_iter().collect(),
                },
                sent: None,
                id: Arc::from(p.id.as_str()),
            });
        }
        let worker_graph = Arc::new(Graph {
            nodes: worker_nodes,
            events: Some(events.clone()),
        });
        let worker_slots = |w: usize| -> Vec<Slot> {
            let mut slots: Vec<Slot> = worker_procs
                .iter()
                .map(|p| Slot {
                    node: node_of[p.id.as_str()],
                    processor: p.spec.build(&ProcessorContext {
                        id: Arc::from(p.id.as_str()),
                        worker: Some(w),
                        interfaces: interfaces.clone(),
                    }),
                    counters: Some(counters[&p.id].clone()),
                })
                .collect();
            for (v, (_, (key_by, max_keys))) in views.iter().enumerate() {
                slots.push(Slot {
                    node: flow_ids.len() + worker_procs.len() + v,
                    processor: Box::new(FlowViewBuilder::new(*key_by, *max_keys, w)),
                    counters: None,
                });
            }
            slots
        };

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
        let overrides: Vec<_> = cfg
            .pipeline
            .sampling_override
            .iter()
            .map(|o| (o.exporter, o.interval))
            .collect();
        let exporter_labels = Arc::new(nmsd_pipeline::worker::ExporterLabels::default());
        // One parse worker's setup, whether it reads rings (its own thread) or runs on a
        // socket's thread (inline).
        let worker_setup =
            |id: usize, inputs: Vec<RingReceiver>, input_sources: Vec<u8>, waker: Arc<Waker>| {
                let store = store.clone();
                WorkerSetup {
                    id,
                    inputs,
                    input_sources,
                    waker,
                    limits: cfg.pipeline.decoder_limits(),
                    sampling_overrides: overrides.clone(),
                    restore: (!restore.is_empty()).then(|| restore.clone()),
                    graph: worker_graph.clone(),
                    slots: worker_slots(id),
                    snapshot_every: cfg.pipeline.template_save_interval.get(),
                    snapshot_hook: Some(Box::new(move |w, text| store.save(w, &text))),
                    exporter_labels: exporter_labels.clone(),
                }
            };
        let inline = cfg.pipeline.receive == crate::config::ReceiveMode::Inline;
        for (source_index, (name, src)) in cfg.flow_sources().enumerate() {
            let source_index = u8::try_from(source_index)
                .context("more than 256 netflow sources (check-config refuses this)")?;
            let count = if src.sockets == 0 {
                workers
            } else {
                src.sockets
            };
            let bound = netflow::bind_sockets(src, count)
                .with_context(|| format!("starting netflow source \"{name}\""))?;
            let buffers: Vec<usize> = bound.iter().map(|b| b.receive_buffer).collect();
            let wanted = src.receive_buffer.0 as usize;
            if buffers.iter().any(|&b| b < wanted) {
                tracing::warn!(
                    source = %name,
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
            let (monitor_name, stop) = (name.to_string(), stop_receivers.clone());
            receivers.push(spawn(format!("nmsd-drops-{name}"), move || {
                netflow::run_drop_monitor(&monitor_name, watched, stop)
            })?);
            for b in bound {
                let ring_name = format!("{name}-{}", b.index);
                let opts = netflow::ReceiveOptions {
                    max_datagram: src.max_datagram_size.0 as usize,
                    coalesce: src.receive_coalesce.0,
                };
                if inline {
                    // This socket's thread is its parse worker (one per socket).
                    let id = next_worker;
                    next_worker += 1;
                    let heart = liveness.heartbeat(format!("nmsd-rx-{ring_name}"));
                    let worker = ParseWorker::new(worker_setup(
                        id,
                        Vec::new(),
                        Vec::new(),
                        Waker::with_heartbeat(heart.clone()),
                    ));
                    let out = netflow::InlineWorker::new(
                        worker,
                        source_index,
                        src.batch_datagrams,
                        heart,
                    );
                    let (stop, rx_name) = (stop_receivers.clone(), name.to_string());
                    receivers.push(spawn(format!("nmsd-rx-{ring_name}"), move || {
                        netflow::run_receiver(&rx_name, b, opts, out, stop)
                            .worker
                            .finish();
                    })?);
                    continue;
                }
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
                let rx_name = name.to_string();
                receivers.push(spawn(format!("nmsd-rx-{ring_name}"), move || {
                    drop(netflow::run_receiver(&rx_name, b, opts, tx, stop));
                })?);
            }
            tracing::info!(
                source = %name,
                listen = %src.listen,
                sockets = count,
                receive_buffer = buffers.first().copied().unwrap_or(0),
                "receiving NetFlow v5/v9/IPFIX"
            );
            sources.push(SourceStatus {
                name: name.to_string(),
                kind: "netflow",
                listen: src.listen,
                sockets: count,
                receive_buffer_bytes: buffers,
            });
        }

        let mut worker_handles = Vec::new();
        for (id, (inputs, input_sources)) in inputs.into_iter().zip(input_sources).enumerate() {
            if inputs.is_empty() {
                continue;
            }
            let setup = worker_setup(id, inputs, input_sources, wakers[id].clone());
            liveness.register(worker_hearts[id].clone());
            let worker = ParseWorker::new(setup);
            worker_handles.push(spawn(format!("nmsd-parse-{id}"), move || worker.run())?);
        }

        // Other sources, on their own threads.
        let mut stoppable = Vec::new();
        let mut boards = Vec::new();
        let mut topologies = Vec::new();
        let mut max_series = 0;
        let mut extras: HashMap<String, serde_json::Map<String, serde_json::Value>> =
            HashMap::new();
        // Processor instances of the flow-building sources count as workers after the parse
        // workers (the index only tells instances apart).
        let mut next_instance = workers;
        for c in cfg
            .sources
            .iter()
            .filter(|c| c.spec.as_flow_listener().is_none())
        {
            let thread_outputs: Vec<SourceOutput> = match node_of.get(c.id.as_str()) {
                Some(&node) if c.spec.flow_source() => {
                    let runs_processors = !worker_graph.nodes[node].targets.local.is_empty();
                    (0..c.spec.threads().max(1))
                        .map(|_| {
                            let slots = if runs_processors {
                                next_instance += 1;
                                worker_slots(next_instance - 1)
                            } else {
                                Vec::new()
                            };
                            SourceOutput::with_processors(worker_graph.clone(), node, slots)
                        })
                        .collect()
                }
                _ => vec![SourceOutput::new(Node {
                    targets: Targets {
                        local: Vec::new(),
                        ports: wiring.ports(&c.id, false),
                    },
                    sent: Some(counters[&c.id].clone()),
                    id: Arc::from(c.id.as_str()),
                })],
            };
            let output = thread_outputs[0].clone();
            let running: RunningSource = c
                .spec
                .start(SourceContext {
                    id: Arc::from(c.id.as_str()),
                    output,
                    thread_outputs,
                    stop: stop_receivers.clone(),
                    state_dir: cfg.general.state_dir.clone(),
                    counters: counters[&c.id].clone(),
                    interfaces: directories.get(&c.id).cloned(),
                    flow_source_index: flow_source_names
                        .iter()
                        .position(|n| *n == c.id)
                        .and_then(|i| u8::try_from(i).ok())
                        .unwrap_or(0),
                })
                .with_context(|| format!("starting source \"{}\"", c.id))?;
            receivers.extend(running.threads);
            stoppable.extend(running.stoppable);
            boards.extend(running.devices);
            topologies.extend(running.topology);
            max_series = max_series.max(running.max_series);
            extras.insert(c.id.clone(), running.status);
        }
        // Workers, sources and the global stage hold the only queue senders now: when they
        // finish, the sinks see the end.
        drop(global_tx);
        drop(sink_queues);
        drop(worker_graph);
        liveness
            .spawn_sampler()
            .context("cannot start thread nmsd-liveness")?;

        let mut components = Vec::new();
        for c in &cfg.sources {
            components.push(ComponentEntry {
                stats: counters[&c.id].stats(),
                sink: None,
                queued_bytes: None,
                placement: None,
                inputs: Vec::new(),
                extra: extras.remove(&c.id).unwrap_or_default(),
            });
        }
        for c in &cfg.processors {
            components.push(ComponentEntry {
                stats: counters[&c.id].stats(),
                sink: None,
                queued_bytes: None,
                placement: Some(match c.spec.placement() {
                    Placement::Worker => "worker",
                    Placement::Global => "global",
                }),
                inputs: c.inputs.clone(),
                extra: Default::default(),
            });
        }
        for c in &cfg.sinks {
            components.push(ComponentEntry {
                stats: counters[&c.id].stats(),
                sink: sink_statuses.get(&c.id).cloned(),
                queued_bytes: queued.get(&c.id).cloned(),
                placement: None,
                inputs: c.inputs.clone(),
                extra: Default::default(),
            });
        }

        let processors: Vec<_> = cfg.processors.iter().map(|p| p.id.as_str()).collect();
        let sink_ids: Vec<_> = cfg.sinks.iter().map(|p| p.id.as_str()).collect();
        // Inline, each socket's thread is a worker (and there are no worker threads).
        let parse_workers = if inline {
            next_worker
        } else {
            worker_handles.len()
        };
        tracing::info!(
            workers = parse_workers,
            receive = if inline { "inline" } else { "ring" },
            processors = ?processors,
            sinks = ?sink_ids,
            state_dir = %cfg.general.state_dir.display(),
            "pipeline started"
        );
        Ok(Topology {
            stop_receivers,
            stoppable,
            sink_shutdown,
            shutdown_timeout: cfg.shutdown_timeout(),
            ledgers,
            receivers,
            workers: worker_handles,
            global,
            sinks,
            status: Arc::new(RuntimeStatus {
                started: Instant::now(),
                workers: parse_workers,
                sources,
                components,
                snmp: boards,
                topology: topologies,
                snmp_max_series: max_series,
                events,
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
        // The SNMP engine holds queue senders: stop it before the sinks are drained.
        for (stop, handle) in self.stoppable {
            stop();
            join_until(handle, deadline, &mut stuck);
        }
        tracing::info!("receiving stopped; draining rings and flushing processors");
        for h in self.workers {
            join_until(h, deadline, &mut stuck);
        }
        // Workers and sources were its only senders: it flushes and stops.
        if let Some(h) = self.global {
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

/// A sink switched from a disk buffer to memory leaves its segments behind: they are not
/// written, and the operator should know (switch back to write them, or delete the folder).
fn warn_of_a_left_disk_buffer(state_dir: &std::path::Path, sink: &str) {
    let dir = state_dir.join("buffer").join(sink);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let (files, bytes) = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| e.metadata().ok())
        .fold((0u64, 0u64), |(n, b), m| (n + 1, b + m.len()));
    // An empty segment is 8 bytes: only a header.
    if bytes > files * 8 {
        tracing::warn!(
            sink,
            dir = %dir.display(),
            bytes,
            "sink has buffer = {{ type = \"memory\" }} but a disk buffer from an earlier run is \
             still there, unwritten; set buffer type \"disk\" again to write it, or delete the folder"
        );
    }
}
