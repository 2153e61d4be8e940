//! Processors: pluggable stages that look at every flow batch in a worker.
//!
//! A processor implements [`Processor`]; its configuration struct sits beside it in its own file
//! and implements [`BuildProcessor`]. Registering it is one line in [`processor_registry!`]
//! below; operators then enable it in config.toml with `[[processors]] type = "<name>"`, and
//! processors run in the order they are listed there.

use serde::Deserialize;

use crate::records::{FlowRecord, RollupRow, SinkMessage};

pub mod rollup;

/// Where processors put what they produce; the worker forwards it to the sinks.
#[derive(Debug, Default)]
pub struct Emitter {
    pub(crate) messages: Vec<SinkMessage>,
}

impl Emitter {
    pub fn rollups(&mut self, rows: Vec<RollupRow>) {
        if !rows.is_empty() {
            self.messages.push(SinkMessage::Rollups(rows));
        }
    }

    /// Take everything emitted so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, SinkMessage> {
        self.messages.drain(..)
    }
}

/// A stage run on every batch of decoded flows, in each parse worker.
///
/// Each worker builds its own instance, so a processor needs no locks; it sees the flows of the
/// exporters its worker owns (see DESIGN.md, exporter affinity).
pub trait Processor: Send {
    /// The registry name, used in logs and metrics.
    fn name(&self) -> &'static str;

    /// Look at, enrich or filter a batch of flows.
    fn process(&mut self, flows: &mut Vec<FlowRecord>, out: &mut Emitter);

    /// Called about once a second with the wall clock (Unix ms): close windows, expire state.
    fn tick(&mut self, now_ms: u64, out: &mut Emitter);

    /// Called once at shutdown: emit everything still held.
    fn flush(&mut self, out: &mut Emitter);
}

/// Implemented by each processor's config struct.
pub trait BuildProcessor {
    fn build(&self) -> Box<dyn Processor>;
}

/// The registry: `"name" => Variant(ConfigType)`. One line per processor.
macro_rules! processor_registry {
    ($($name:literal => $variant:ident($config:ty),)*) => {
        /// One `[[processors]]` entry of config.toml, chosen by its `type` key.
        #[derive(Clone, Debug, PartialEq, Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
        pub enum ProcessorConfig {
            $(#[serde(rename = $name)] $variant($config),)*
        }

        impl ProcessorConfig {
            /// Names of every registered processor, for error messages and docs.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            pub fn name(&self) -> &'static str {
                match self { $(ProcessorConfig::$variant(_) => $name,)* }
            }

            pub fn build(&self) -> Box<dyn Processor> {
                match self { $(ProcessorConfig::$variant(c) => c.build(),)* }
            }
        }
    };
}

processor_registry! {
    "rollup" => Rollup(rollup::RollupConfig),
}
