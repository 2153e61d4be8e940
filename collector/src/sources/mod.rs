//! Sources: where telemetry enters nmsd. One file per source type, its config struct beside it
//! implementing [`SourceSpec`]; registered with one line in [`crate::registry`].

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use nmsd_pipeline::component::ComponentCounters;
use nmsd_pipeline::enrich::IfDirectory;
use nmsd_pipeline::published::Published;
use nmsd_pipeline::route::SourceOutput;
use nmsd_pipeline::snmp::CustomTableSchema;
use nmsd_pipeline::stream::StreamSet;

pub mod capture;
pub mod netflow;
mod packet_flows;
pub mod pcap_file;
mod receive_pacer;
pub mod sflow;
pub mod snmp;
pub mod snmp_traps;

/// What a source is started with.
pub struct SourceContext {
    pub id: Arc<str>,
    /// Where its batches go: the sinks and the global stage, wired from their `inputs`.
    pub output: SourceOutput,
    /// One output per thread of a source that runs several ([`SourceSpec::threads`]), each
    /// with its own processor instances; the first is `output`.
    pub thread_outputs: Vec<SourceOutput>,
    /// Set when nmsd starts stopping: stop receiving.
    pub stop: Arc<AtomicBool>,
    pub state_dir: PathBuf,
    pub counters: ComponentCounters,
    /// The interface directory this source publishes, if it learns interfaces
    /// ([`SourceSpec::publishes_interfaces`]).
    pub interfaces: Option<Arc<Published<IfDirectory>>>,
    /// Its position among the sources that produce flow records (listeners first, then
    /// [`SourceSpec::flow_source`]s): what its records carry in [`FlowRecord::source`] so a
    /// sink can name it. 0 for sources that produce no flows.
    ///
    /// [`FlowRecord::source`]: nmsd_pipeline::records::FlowRecord::source
    pub flow_source_index: u8,
}

/// Tells a source thread to stop.
pub type StopFn = Box<dyn FnOnce() + Send>;

/// A started source.
#[derive(Default)]
pub struct RunningSource {
    /// Receive threads: joined after `stop` is set.
    pub threads: Vec<JoinHandle<()>>,
    /// Threads that need telling to stop (an async engine), with the way to tell them.
    pub stoppable: Vec<(StopFn, JoinHandle<()>)>,
    /// SNMP device health and topology, for the control plane.
    pub devices: Option<nmsd_snmp::engine::StatusBoard>,
    pub topology: Option<Arc<std::sync::Mutex<nmsd_snmp::topology::TopologySnapshot>>>,
    pub max_series: usize,
    /// Free-form status for `/api/v1/status`.
    pub status: serde_json::Map<String, serde_json::Value>,
}

/// Implemented by each source's config struct.
pub trait SourceSpec: std::fmt::Debug + Send + Sync + Any {
    /// The streams it produces.
    fn outputs(&self) -> StreamSet;

    /// Checks that need no I/O; `Err((key, message))`, key relative to the source's table.
    fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    /// Checks that need the environment (secrets, name resolution), run by `check-config`
    /// and at start.
    fn check_environment(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    /// A NetFlow/IPFIX listener: its datagrams are decoded by the parse workers (exporter
    /// affinity), so the topology starts it, not [`SourceSpec::start`].
    fn as_flow_listener(&self) -> Option<&netflow::NetflowSourceConfig> {
        None
    }

    /// Whether it builds flow records itself (from packets) on its own thread: it then gets a
    /// flow source index after the listeners', and sinks name its records by its id.
    fn flow_source(&self) -> bool {
        false
    }

    /// How many threads build flows (each gets its own output and processor instances in
    /// [`SourceContext::thread_outputs`]).
    fn threads(&self) -> usize {
        1
    }

    /// Whether it learns interface names and speeds (for the `interface_names` processor).
    fn publishes_interfaces(&self) -> bool {
        false
    }

    /// User-defined tables it fills (sinks create them).
    fn custom_tables(&self) -> Vec<CustomTableSchema> {
        Vec::new()
    }

    /// Start receiving. Called after every sink and processor is running.
    fn start(&self, ctx: SourceContext) -> anyhow::Result<RunningSource>;
}
