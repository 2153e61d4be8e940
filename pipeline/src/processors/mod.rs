//! Processors: pluggable stages that look at every flow batch in a worker.
//!
//! A processor implements [`Processor`]; its configuration struct sits beside it in its own file
//! and implements [`BuildProcessor`]. Registering it is one line in [`processor_registry!`]
//! below; operators then enable it in config.toml with `[[processors]] type = "<name>"`, and
//! processors run in the order they are listed there.

use serde::Deserialize;

use crate::queue::SinkQueue;
use crate::records::{FlowRecord, RollupRow, SinkMessage};

pub mod rollup;

/// Where processors put what they produce.
///
/// A worker's emitter hands each message to the sinks' queues as it is emitted (under each
/// queue's full policy), so output emitted in pieces, like a roll-up window in chunks of rows,
/// is never held whole in memory. A default emitter has no sinks and keeps what it is given,
/// for tests and benches to [`drain`](Emitter::drain).
#[derive(Default)]
pub struct Emitter {
    /// None: keep messages for `drain`.
    sinks: Option<Vec<SinkQueue>>,
    kept: Vec<SinkMessage>,
}

impl Emitter {
    /// An emitter that sends to `sinks` (none: output is discarded, as with no sink enabled).
    pub fn to_sinks(sinks: Vec<SinkQueue>) -> Self {
        Emitter {
            sinks: Some(sinks),
            kept: Vec::new(),
        }
    }

    /// Whether this emitter sends to at least one sink.
    pub fn has_sinks(&self) -> bool {
        self.sinks.as_ref().is_some_and(|s| !s.is_empty())
    }

    pub fn rollups(&mut self, rows: Vec<RollupRow>) {
        if !rows.is_empty() {
            self.emit(SinkMessage::Rollups(rows));
        }
    }

    pub fn flows(&mut self, flows: Vec<FlowRecord>) {
        if !flows.is_empty() {
            self.emit(SinkMessage::Flows(flows));
        }
    }

    fn emit(&mut self, m: SinkMessage) {
        let Some(sinks) = &self.sinks else {
            self.kept.push(m);
            return;
        };
        if let Some((last, rest)) = sinks.split_last() {
            for s in rest {
                s.send(m.clone());
            }
            last.send(m);
        }
    }

    /// Take everything kept so far (default emitters only).
    pub fn drain(&mut self) -> std::vec::Drain<'_, SinkMessage> {
        self.kept.drain(..)
    }
}

/// A stage run on every batch of decoded flows, in each parse worker.
///
/// Each worker builds its own instance, so a processor needs no locks; it sees the flows of the
/// exporters its worker owns (see docs/design.md, exporter affinity).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::sink_queue;
    use crate::ring::FullPolicy;

    fn row() -> RollupRow {
        RollupRow {
            window_start_ms: 0,
            exporter: std::net::Ipv4Addr::LOCALHOST.into(),
            source: 0,
            src_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            dst_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            protocol: 6,
            dst_port: 80,
            in_if: 0,
            out_if: 0,
            bytes: 1,
            packets: 1,
            flows: 1,
        }
    }

    #[test]
    fn a_worker_emitter_sends_each_message_to_every_sink_at_once() {
        let (a, a_rx) = sink_queue("a", 4, FullPolicy::Drop);
        let (b, b_rx) = sink_queue("b", 4, FullPolicy::Drop);
        let mut e = Emitter::to_sinks(vec![a, b]);
        assert!(e.has_sinks());
        e.rollups(vec![row(), row()]);
        e.rollups(Vec::new());
        for rx in [a_rx, b_rx] {
            let got: Vec<usize> = rx.try_iter().map(|m| m.rows()).collect();
            assert_eq!(got, [2]);
        }
        assert_eq!(e.drain().count(), 0, "nothing kept once sent");
    }

    #[test]
    fn without_enabled_sinks_output_is_discarded_not_kept() {
        let mut e = Emitter::to_sinks(Vec::new());
        assert!(!e.has_sinks());
        e.rollups(vec![row()]);
        assert_eq!(e.drain().count(), 0);
        let mut kept = Emitter::default();
        kept.rollups(vec![row()]);
        assert_eq!(kept.drain().count(), 1);
    }
}
