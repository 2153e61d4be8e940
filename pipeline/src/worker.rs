//! The parse stage: a worker thread that decodes datagram batches, runs the processor chain
//! and hands results to the sinks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::unix_ms;

use metrics::{Counter, Gauge};
use nmsd_parsers::{DecodeError, DecoderLimits, DecoderStats, FlowDecoder};

use crate::records::{DatagramBatch, FlowRecord};
use crate::ring::{RingReceiver, Waker};
use crate::route::{Graph, Slot};
use crate::stream::Batch;

/// Called with (worker id, template cache snapshot) to persist it; the collector writes files.
pub type SnapshotHook = Box<dyn FnMut(usize, String) + Send>;

/// Everything a worker needs, built by the collector's topology.
pub struct WorkerSetup {
    pub id: usize,
    pub inputs: Vec<RingReceiver>,
    /// The flow source (position among flow sources, which is also its node in `graph`) each
    /// input belongs to, in `inputs` order.
    pub input_sources: Vec<u8>,
    /// The waker the inputs' senders were given (see [`Waker`]).
    pub waker: Arc<Waker>,
    pub limits: DecoderLimits,
    pub sampling_overrides: Vec<(IpAddr, u32)>,
    /// Template cache text to restore before the first datagram.
    pub restore: Option<String>,
    /// Where flows of each source and output of each processor go (shared by the workers).
    pub graph: Arc<Graph>,
    /// This worker's instances of the per-worker processors, in topological order.
    pub slots: Vec<Slot>,
    pub snapshot_every: Duration,
    pub snapshot_hook: Option<SnapshotHook>,
    /// Shared by the workers of a process (see [`ExporterLabels`]).
    pub exporter_labels: Arc<ExporterLabels>,
}

/// How often timers (processor ticks, expiry, metrics) run.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// Template/domain expiry sweep period.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// Metric handles, resolved once: the registry lookup is too slow for per-batch use.
struct WorkerMetrics {
    datagrams: [Counter; 3],
    records: [Counter; 3],
    errors: Vec<Counter>,
    malformed: Counter,
    payload_bytes: Counter,
    options_records: Counter,
    templates_learned: Counter,
    templates_removed: Counter,
    sets_buffered: Counter,
    sets_replayed: Counter,
    sets_dropped: Counter,
    lost_flows: Counter,
    lost_datagrams: Counter,
    resets: Counter,
    domains_evicted: Counter,
    not_allowed: Counter,
    times_future: Counter,
    times_past: Counter,
    dropped_time: Counter,
    counters_clamped: Counter,
    templates: Gauge,
    domains: Gauge,
    batch_records: metrics::Histogram,
}

impl WorkerMetrics {
    fn new(id: usize) -> Self {
        let v = |name: &'static str| {
            ["v5", "v9", "ipfix"].map(|ver| metrics::counter!(name, "version" => ver))
        };
        let w = id.to_string();
        describe_hostile_input_metrics();
        WorkerMetrics {
            datagrams: v("nmsd_flow_datagrams_decoded_total"),
            records: v("nmsd_flow_records_decoded_total"),
            errors: DecodeError::KINDS
                .iter()
                .map(|k| metrics::counter!("nmsd_flow_decode_errors_total", "kind" => *k))
                .collect(),
            malformed: metrics::counter!("nmsd_flow_datagrams_malformed_total"),
            payload_bytes: metrics::counter!("nmsd_flow_payload_bytes_decoded_total"),
            options_records: metrics::counter!("nmsd_flow_options_records_total"),
            templates_learned: metrics::counter!("nmsd_flow_templates_learned_total"),
            templates_removed: metrics::counter!("nmsd_flow_templates_removed_total"),
            sets_buffered: metrics::counter!("nmsd_flow_sets_without_template_total", "outcome" => "buffered"),
            sets_replayed: metrics::counter!("nmsd_flow_sets_without_template_total", "outcome" => "replayed"),
            sets_dropped: metrics::counter!("nmsd_flow_sets_without_template_total", "outcome" => "dropped"),
            lost_flows: metrics::counter!("nmsd_flow_sequence_lost_flows_total"),
            lost_datagrams: metrics::counter!("nmsd_flow_sequence_lost_datagrams_total"),
            resets: metrics::counter!("nmsd_flow_sequence_resets_total"),
            domains_evicted: metrics::counter!("nmsd_flow_exporter_domains_evicted_total"),
            not_allowed: metrics::counter!("nmsd_flow_datagrams_refused_total", "reason" => "exporter_not_allowed"),
            times_future: metrics::counter!("nmsd_flow_record_times_out_of_range_total", "reason" => "future"),
            times_past: metrics::counter!("nmsd_flow_record_times_out_of_range_total", "reason" => "past"),
            dropped_time: metrics::counter!("nmsd_flow_records_dropped_total", "reason" => "time_out_of_range"),
            counters_clamped: metrics::counter!("nmsd_flow_record_counters_clamped_total"),
            templates: metrics::gauge!("nmsd_flow_templates", "worker" => w.clone()),
            domains: metrics::gauge!("nmsd_flow_exporter_domains", "worker" => w),
            batch_records: metrics::histogram!("nmsd_flow_batch_records"),
        }
    }

    /// Export what changed since `last`.
    fn export(&self, now: &DecoderStats, last: &DecoderStats) {
        for i in 0..3 {
            self.datagrams[i].increment(now.datagrams[i] - last.datagrams[i]);
            self.records[i].increment(now.records[i] - last.records[i]);
        }
        for (c, (n, l)) in self.errors.iter().zip(now.errors.iter().zip(&last.errors)) {
            c.increment(n - l);
        }
        self.options_records
            .increment(now.options_records - last.options_records);
        self.templates_learned
            .increment(now.templates_learned - last.templates_learned);
        self.templates_removed
            .increment(now.templates_removed - last.templates_removed);
        self.sets_buffered
            .increment(now.sets_buffered - last.sets_buffered);
        self.sets_replayed
            .increment(now.sets_replayed - last.sets_replayed);
        self.sets_dropped
            .increment(now.sets_dropped_no_template - last.sets_dropped_no_template);
        self.lost_flows
            .increment(now.sequence_lost_flows - last.sequence_lost_flows);
        self.lost_datagrams
            .increment(now.sequence_lost_datagrams - last.sequence_lost_datagrams);
        self.resets
            .increment(now.sequence_resets - last.sequence_resets);
        self.domains_evicted
            .increment(now.domains_evicted - last.domains_evicted);
        self.not_allowed
            .increment(now.datagrams_not_allowed - last.datagrams_not_allowed);
        self.times_future
            .increment(now.times_future - last.times_future);
        self.times_past.increment(now.times_past - last.times_past);
        self.dropped_time
            .increment(now.records_dropped_time - last.records_dropped_time);
        self.counters_clamped
            .increment(now.counters_clamped - last.counters_clamped);
    }
}

/// HELP texts of the metrics this module adds for hostile input; described where they are
/// registered so that a new counter cannot be added without its text.
fn describe_hostile_input_metrics() {
    use metrics::describe_counter as c;
    c!(
        "nmsd_flow_exporter_domains_evicted_total",
        "Exporter domains evicted to make room (table full, or an address at its domain cap)."
    );
    c!(
        "nmsd_flow_datagrams_refused_total",
        "Datagrams refused before decoding, by reason (exporter_not_allowed: outside allowed_exporters)."
    );
    c!(
        "nmsd_flow_record_times_out_of_range_total",
        "Flow records with a time outside the plausible range (future, past), clamped or dropped per time_policy."
    );
    c!(
        "nmsd_flow_records_dropped_total",
        "Decoded flow records dropped, by reason."
    );
    c!(
        "nmsd_flow_record_counters_clamped_total",
        "Flow records whose bytes or packets exceeded 2^50 and were clamped."
    );
}

/// Most distinct `exporter` label values on the per-exporter loss counters, over the whole
/// process: loss past it is counted under `exporter="other"`, so a flood of forged exporter
/// addresses cannot grow /metrics without bound.
pub const MAX_EXPORTER_LABELS: usize = 1000;

/// Most exporters whose first datagram is logged, over the whole process; past it one line
/// says that further new exporters are not logged (a flood of forged addresses cannot flood
/// the journal).
pub const MAX_EXPORTERS_ANNOUNCED: usize = 1000;

/// The exporter label values handed out so far (shared by all workers; touched once per tick
/// per exporter that reported loss, never per datagram), and the exporters already announced
/// in the journal (touched once per exporter per worker).
#[derive(Default)]
pub struct ExporterLabels {
    seen: std::sync::Mutex<std::collections::HashSet<IpAddr>>,
    announced: std::sync::Mutex<std::collections::HashSet<IpAddr>>,
}

impl ExporterLabels {
    /// Log `a`'s first decoded datagram, once per process, for the first
    /// [`MAX_EXPORTERS_ANNOUNCED`] exporters. Returns false once the cap is reached, so the
    /// caller can stop asking.
    fn announce(&self, a: IpAddr, source: &str) -> bool {
        let Ok(mut announced) = self.announced.lock() else {
            return false;
        };
        if announced.len() >= MAX_EXPORTERS_ANNOUNCED {
            return false;
        }
        if announced.insert(a) {
            tracing::info!(
                exporter = %a.to_canonical(),
                source,
                "new exporter: first flow datagram decoded"
            );
            if announced.len() == MAX_EXPORTERS_ANNOUNCED {
                tracing::warn!(
                    "{MAX_EXPORTERS_ANNOUNCED} exporters seen: further new exporters are not \
                     logged (nmsd_flow_exporter_domains counts them)"
                );
            }
        }
        true
    }

    /// The label for `a`: its address while under the cap, else "other".
    fn label(&self, a: IpAddr) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return "other".into();
        };
        if seen.contains(&a) || seen.len() < MAX_EXPORTER_LABELS {
            seen.insert(a);
            a.to_canonical().to_string()
        } else {
            "other".into()
        }
    }
}

/// When a worker's timers last ran.
struct WorkerTimers {
    last_tick: Instant,
    last_expire: Instant,
    last_snapshot: Instant,
}

impl WorkerTimers {
    fn new() -> Self {
        let now = Instant::now();
        WorkerTimers {
            last_tick: now,
            last_expire: now,
            last_snapshot: now,
        }
    }
}

/// A parse worker. Run it on its own thread with [`ParseWorker::run`], or drive it from a
/// receive thread with [`ParseWorker::process`], [`ParseWorker::tick_if_due`] and
/// [`ParseWorker::finish`].
pub struct ParseWorker {
    id: usize,
    inputs: Vec<RingReceiver>,
    input_sources: Vec<u8>,
    waker: Arc<Waker>,
    decoder: FlowDecoder,
    graph: Arc<Graph>,
    slots: Vec<Slot>,
    flows: Vec<FlowRecord>,
    metrics: WorkerMetrics,
    last_stats: DecoderStats,
    snapshot_every: Duration,
    snapshot_hook: Option<SnapshotHook>,
    exporter_labels: Arc<ExporterLabels>,
    /// Exporters this worker has already had announced (a lock-free check per datagram);
    /// `None` once the process-wide cap is reached.
    known_exporters: Option<std::collections::HashSet<IpAddr>>,
    /// The last datagram's exporter: most batches come from one exporter.
    last_exporter: Option<IpAddr>,
    timers: WorkerTimers,
    /// `allowed_exporters`: a refused exporter is counted, not announced.
    allowed_exporters: Vec<nmsd_parsers::IpNet>,
}

impl ParseWorker {
    pub fn new(setup: WorkerSetup) -> Self {
        let allowed_exporters = setup.limits.allowed_exporters.clone();
        let mut decoder = FlowDecoder::new(setup.limits);
        for (addr, interval) in &setup.sampling_overrides {
            decoder.set_sampling_override(*addr, *interval);
        }
        if let Some(text) = &setup.restore {
            let summary = nmsd_parsers::persist::restore(&mut decoder, text);
            if setup.id == 0 {
                tracing::info!(
                    templates = summary.templates,
                    sampling_states = summary.sampling_states,
                    skipped = summary.skipped,
                    "restored template cache"
                );
                if let Some(p) = summary.first_problem {
                    tracing::warn!("template cache: skipped damaged entries, first: {p}");
                }
            }
        }
        ParseWorker {
            id: setup.id,
            inputs: setup.inputs,
            input_sources: setup.input_sources,
            waker: setup.waker,
            decoder,
            graph: setup.graph,
            slots: setup.slots,
            flows: Vec::with_capacity(FLOWS_CAPACITY),
            metrics: WorkerMetrics::new(setup.id),
            last_stats: DecoderStats::default(),
            snapshot_every: setup.snapshot_every,
            snapshot_hook: setup.snapshot_hook,
            exporter_labels: setup.exporter_labels,
            known_exporters: Some(Default::default()),
            allowed_exporters,
            last_exporter: None,
            timers: WorkerTimers::new(),
        }
    }

    /// Process until every input ring is finished (its receive thread stopped and the ring is
    /// drained), then flush processors, export final stats and save the template cache.
    pub fn run(mut self) {
        let mut idle: u32 = 0;
        loop {
            // Liveness (crate::heartbeat): progress each round; parking marks the worker idle.
            self.waker.beat();
            let mut worked = false;
            for i in 0..self.inputs.len() {
                if let Some(batch) = self.inputs[i].try_recv() {
                    let source = self.input_sources.get(i).copied().unwrap_or(0);
                    self.process_batch(source, &batch);
                    self.inputs[i].recycle(batch);
                    worked = true;
                }
            }
            if worked {
                idle = 0;
            } else {
                if self.inputs.iter().all(RingReceiver::is_finished) {
                    break;
                }
                if idle < SPIN_BEFORE_PARK {
                    std::hint::spin_loop();
                } else {
                    let inputs = &self.inputs;
                    let until_tick = TICK.saturating_sub(self.timers.last_tick.elapsed());
                    self.waker.park(until_tick.max(MIN_PARK), || {
                        inputs.iter().any(|r| r.has_batch() || r.is_finished())
                    });
                }
                idle = idle.saturating_add(1);
            }
            self.tick_if_due();
        }
        self.finish();
    }

    /// Decode one batch of `source`'s datagrams and run the processors on its flows, on the
    /// calling thread: a receive thread that runs to completion (`[pipeline] receive =
    /// "inline"`) calls this instead of handing the batch over a ring.
    pub fn process(&mut self, source: u8, batch: &DatagramBatch) {
        self.waker.beat();
        self.process_batch(source, batch);
    }

    /// Run the timers that are due: processor ticks, template expiry, metrics, snapshots.
    /// Call it often (every read, data or not); it does nothing between ticks.
    pub fn tick_if_due(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.timers.last_tick) < TICK {
            return;
        }
        self.timers.last_tick = now;
        let now_ms = unix_ms();
        self.graph.tick(now_ms, &mut self.slots);
        if now.duration_since(self.timers.last_expire) >= EXPIRE_EVERY {
            self.timers.last_expire = now;
            self.decoder.expire(now_ms);
        }
        self.export_stats();
        if now.duration_since(self.timers.last_snapshot) >= self.snapshot_every {
            self.timers.last_snapshot = now;
            self.snapshot();
        }
    }

    /// Flush the processors, export final stats and save the template cache.
    pub fn finish(mut self) {
        self.graph.flush(&mut self.slots);
        self.export_stats();
        self.snapshot();
        tracing::debug!(worker = self.id, "parse worker stopped");
    }

    fn process_batch(&mut self, source: u8, batch: &DatagramBatch) {
        let now_ms = unix_ms();
        self.flows.clear();
        let mut malformed = 0u64;
        for (src, data) in batch.iter() {
            if self
                .decoder
                .decode_from_source(source, src, data, now_ms, &mut self.flows)
                .is_err()
            {
                malformed += 1;
            } else if self.last_exporter != Some(src) {
                self.last_exporter = Some(src);
                self.note_exporter(source, src);
            }
        }
        self.metrics.malformed.increment(malformed);
        if malformed > 0
            && let Some(c) = self
                .graph
                .nodes
                .get(source as usize)
                .and_then(|n| n.sent.as_ref())
        {
            // The source's component errors: datagrams it received that did not decode.
            c.errors(malformed);
        }
        self.metrics
            .payload_bytes
            .increment(batch.payload_bytes() as u64);
        self.metrics.batch_records.record(self.flows.len() as f64);
        if self.flows.is_empty() {
            return;
        }
        // The batch is shared with every processor and sink that takes this source's flows;
        // when none kept it (no sink stores raw flows), the buffer comes back for the next one.
        let rows = self.flows.len();
        let flows = Arc::new(std::mem::take(&mut self.flows));
        self.graph.dispatch(
            source as usize,
            Batch::Flows(flows.clone()),
            &mut self.slots,
            0,
        );
        self.flows = Arc::try_unwrap(flows)
            .map(|mut v| {
                v.clear();
                v
            })
            // Kept by a sink's queue: allocate the next one for about this batch's rows, not
            // for the largest batch there can be. A queue holds the whole allocation (it is
            // bounded by it), so a 4,096-record buffer holding 1,280 records tripled what a
            // queue of raw flows took. A larger batch grows it.
            .unwrap_or_else(|_| Vec::with_capacity(next_capacity(rows)));
    }

    /// Announce an exporter the first time any worker decodes a datagram of it.
    fn note_exporter(&mut self, source: u8, exporter: IpAddr) {
        let Some(known) = &mut self.known_exporters else {
            return;
        };
        if !self.allowed_exporters.is_empty()
            && !self.allowed_exporters.iter().any(|n| n.contains(exporter))
        {
            return;
        }
        if !known.insert(exporter) {
            return;
        }
        let source_id = self.graph.nodes.get(source as usize).map_or("", |n| &*n.id);
        if !self.exporter_labels.announce(exporter, source_id) {
            self.known_exporters = None;
        }
    }

    fn export_stats(&mut self) {
        let now = self.decoder.stats().clone();
        self.metrics.export(&now, &self.last_stats);
        self.last_stats = now;
        self.metrics
            .templates
            .set(self.decoder.template_count() as f64);
        self.metrics.domains.set(self.decoder.domain_count() as f64);
        let labels = &self.exporter_labels;
        self.decoder.take_exporter_loss(|key, loss| {
            let exporter = labels.label(key.exporter);
            let l = [("exporter", exporter)];
            if loss.lost_flows > 0 {
                metrics::counter!("nmsd_flow_exporter_lost_flows_total", &l)
                    .increment(loss.lost_flows);
            }
            if loss.lost_datagrams > 0 {
                metrics::counter!("nmsd_flow_exporter_lost_datagrams_total", &l)
                    .increment(loss.lost_datagrams);
            }
            if loss.resets > 0 {
                metrics::counter!("nmsd_flow_exporter_sequence_resets_total", &l)
                    .increment(loss.resets);
            }
        });
    }

    fn snapshot(&mut self) {
        if let Some(hook) = &mut self.snapshot_hook {
            hook(self.id, nmsd_parsers::persist::snapshot(&self.decoder));
        }
    }
}

/// Records a worker's flow buffer is allocated for (a full batch of large datagrams).
const FLOWS_CAPACITY: usize = 4096;

/// Capacity of the next flow buffer after one of `rows` records was kept downstream: an eighth
/// more, rounded to 64 records, within [256, FLOWS_CAPACITY].
fn next_capacity(rows: usize) -> usize {
    (rows + rows / 8)
        .next_multiple_of(64)
        .clamp(256, FLOWS_CAPACITY)
}

/// Empty polls before an idle worker parks: a burst is often mid-flight.
const SPIN_BEFORE_PARK: u32 = 128;
/// An idle worker parks until its next tick: receive threads wake it when a batch arrives or
/// their ring finishes, so it has no reason to poll (it did every 5 ms, ~200 wake-ups/s per
/// idle worker). Profiling showed polling with `sched_yield` cost ~18 % of a worker in context
/// switches; parking costs nothing while busy and one futex wake per idle→busy transition.
const MIN_PARK: Duration = Duration::from_millis(1);
