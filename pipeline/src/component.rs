//! The component model: sources, processors and sinks, each a config struct that says what it
//! takes and emits and builds the running thing.
//!
//! Processor and sink specs are defined here so that their crates (`nmsd-pipeline` for
//! processors, `nmsd-sinks` for sinks, or any crate outside the workspace) implement them
//! without knowing about config files; the collector's registry maps a `type = "..."` to a
//! spec with one line per component and wires instances by id from their `inputs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Counter;

use crate::delivery::{SinkBufferConfig, SinkInput};
use crate::enrich::InterfaceDirectories;
use crate::heartbeat::Heartbeat;
use crate::processors::Processor;
use crate::queue::QueueBounds;
use crate::shutdown::ShutdownSignal;
use crate::sink_status::SinkStatus;
use crate::snmp::CustomTableSchema;
use crate::stream::StreamSet;
use crate::view::ViewKeyBy;

/// Source, processor or sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Source,
    Processor,
    Sink,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Processor => "processor",
            ComponentKind::Sink => "sink",
        }
    }

    /// The config table of this kind: `sources`, `processors`, `sinks`.
    pub fn table(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Processor => "processors",
            ComponentKind::Sink => "sinks",
        }
    }
}

/// What every component reports (the status API reads these; /metrics gets the same counts
/// as `nmsd_component_*_total{component_id, component_kind, component_type}`).
#[derive(Debug)]
pub struct ComponentStats {
    pub id: Arc<str>,
    pub kind: ComponentKind,
    pub type_name: Arc<str>,
    received: AtomicU64,
    sent: AtomicU64,
    discarded: AtomicU64,
    errors: AtomicU64,
}

impl ComponentStats {
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Handles that count for one component; cheap to clone (one per worker instance).
#[derive(Clone, Debug)]
pub struct ComponentCounters {
    stats: Arc<ComponentStats>,
    received: Counter,
    sent: Counter,
    errors: Counter,
}

/// HELP texts of the component metric families.
pub fn describe_component_metrics() {
    use metrics::describe_counter as c;
    c!(
        "nmsd_component_received_records_total",
        "Records (flows, rows, events) a component took in, by component id, kind and type."
    );
    c!(
        "nmsd_component_sent_records_total",
        "Records a component handed on (sources and processors) or wrote (sinks)."
    );
    c!(
        "nmsd_component_discarded_records_total",
        "Records a component dropped, by reason (queue_full, rejected, encode, shutdown, ...)."
    );
    c!(
        "nmsd_component_errors_total",
        "Errors a component met (a failed write, a malformed input), by component."
    );
}

impl ComponentCounters {
    pub fn new(id: &str, kind: ComponentKind, type_name: &str) -> Self {
        let labels = [
            ("component_id", id.to_string()),
            ("component_kind", kind.name().to_string()),
            ("component_type", type_name.to_string()),
        ];
        ComponentCounters {
            stats: Arc::new(ComponentStats {
                id: Arc::from(id),
                kind,
                type_name: Arc::from(type_name),
                received: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
            received: metrics::counter!("nmsd_component_received_records_total", &labels),
            sent: metrics::counter!("nmsd_component_sent_records_total", &labels),
            errors: metrics::counter!("nmsd_component_errors_total", &labels),
        }
    }

    pub fn stats(&self) -> Arc<ComponentStats> {
        self.stats.clone()
    }

    pub fn id(&self) -> &Arc<str> {
        &self.stats.id
    }

    pub fn received(&self, n: u64) {
        self.stats.received.fetch_add(n, Ordering::Relaxed);
        self.received.increment(n);
    }

    pub fn sent(&self, n: u64) {
        self.stats.sent.fetch_add(n, Ordering::Relaxed);
        self.sent.increment(n);
    }

    pub fn error(&self) {
        self.errors(1);
    }

    pub fn errors(&self, n: u64) {
        self.stats.errors.fetch_add(n, Ordering::Relaxed);
        self.errors.increment(n);
    }

    /// Count `n` records dropped for `reason`. Drops are the exception: the labelled counter
    /// is looked up per call.
    pub fn discarded(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.stats.discarded.fetch_add(n, Ordering::Relaxed);
        let s = &self.stats;
        metrics::counter!(
            "nmsd_component_discarded_records_total",
            "component_id" => s.id.to_string(),
            "component_kind" => s.kind.name(),
            "component_type" => s.type_name.to_string(),
            "reason" => reason
        )
        .increment(n);
    }
}

/// Where a processor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One instance per parse worker, next to the decoder: sees the flows of the worker's
    /// exporters (exporter affinity), with no locks and no queue hop. Only flows and what other
    /// per-worker processors emit can reach it.
    Worker,
    /// One instance in the global stage thread: sees every batch of its inputs from every
    /// worker and source (SNMP rows, traps, events), and the merged keyed view it asks for.
    Global,
}

/// What a processor instance is built with.
#[derive(Clone)]
pub struct ProcessorContext {
    pub id: Arc<str>,
    /// The parse worker this instance runs in (None in the global stage).
    pub worker: Option<usize>,
    /// Interface names and speeds learned by every SNMP polling source.
    pub interfaces: InterfaceDirectories,
}

/// Implemented by each processor's config struct.
pub trait ProcessorSpec: fmt::Debug + Send + Sync + 'static {
    /// Streams it takes; an input that offers none of them is refused at check time.
    fn accepts(&self) -> StreamSet;

    /// Streams it emits, given the streams its inputs offer.
    fn outputs(&self, inputs: StreamSet) -> StreamSet;

    fn placement(&self) -> Placement {
        Placement::Worker
    }

    /// A keyed view of all flows this processor wants (global processors only), and the most
    /// keys each worker holds per tick: its flows then arrive as merged-per-tick
    /// [`Batch::FlowView`](crate::stream::Batch::FlowView) partials instead of raw flows.
    fn flow_view(&self) -> Option<(ViewKeyBy, usize)> {
        None
    }

    /// Checks of values; `Err((key, message))`, key relative to the component's table.
    fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    fn build(&self, ctx: &ProcessorContext) -> Box<dyn Processor>;
}

/// What the topology tells a sink about the components upstream of it.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    /// User-defined SNMP tables of the polling sources feeding it.
    pub custom_tables: Vec<CustomTableSchema>,
    /// Flow source names by the index flow records carry in `source`.
    pub flow_source_names: Vec<String>,
}

/// What a sink is built with.
pub struct SinkContext {
    pub id: Arc<str>,
    /// Its queue, or the disk buffer in front of it ([`SinkSpec::buffer`]).
    pub input: Box<dyn SinkInput>,
    /// Begun by the collector when it starts stopping; the sink drains and gives up at its
    /// deadline.
    pub shutdown: Arc<ShutdownSignal>,
    pub status: Arc<SinkStatus>,
    pub heartbeat: Arc<Heartbeat>,
    pub counters: ComponentCounters,
    pub upstream: Upstream,
}

/// A running sink: call [`Sink::run`] on its own thread; it returns once its queue is closed
/// and drained (or it gave up at the shutdown deadline).
pub trait Sink: Send {
    fn run(self: Box<Self>);
}

/// Implemented by each sink's config struct.
pub trait SinkSpec: fmt::Debug + Send + Sync + 'static {
    /// Streams it can store; routing any other stream to it is refused at check time.
    fn accepts(&self) -> StreamSet;

    /// How its queue is bounded (batches and bytes), and what senders do when it is full.
    fn queue(&self) -> QueueBounds;

    /// How long stopping may take (the longest of all sinks' applies to the process).
    fn shutdown_timeout(&self) -> Duration;

    /// Whether a disk buffer sits between its queue and the sink (the topology builds it).
    fn buffer(&self) -> SinkBufferConfig {
        SinkBufferConfig::Memory
    }

    /// Checks that need no I/O; `Err((key, message))`.
    fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, String>;
}
