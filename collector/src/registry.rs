//! The component registry: which `type = "..."` builds which component. Adding a source,
//! processor or sink is one file with its config struct and one line in [`Registry::builtin`].
//!
//! Components from outside this crate register the same way on a registry they extend
//! (`Registry::builtin().processor::<MyConfig>("my_type")`) and start a topology with it: the
//! model is open to code that is not in the binary.

use std::collections::BTreeMap;
use std::sync::Arc;

use nmsd_pipeline::component::{ProcessorSpec, SinkSpec};
use serde::de::DeserializeOwned;
use toml::de::ValueDeserializer;

use crate::sources::SourceSpec;

/// A config table's parse error: where (path inside the table) and the spanned TOML error.
pub type ParseError = serde_path_to_error::Error<toml::de::Error>;

pub(crate) type ParseFn<T> = fn(ValueDeserializer<'_>) -> Result<Arc<T>, ParseError>;

fn source<C: SourceSpec + DeserializeOwned>(
    de: ValueDeserializer<'_>,
) -> Result<Arc<dyn SourceSpec>, ParseError> {
    Ok(Arc::new(serde_path_to_error::deserialize::<_, C>(de)?))
}

fn processor<C: ProcessorSpec + DeserializeOwned>(
    de: ValueDeserializer<'_>,
) -> Result<Arc<dyn ProcessorSpec>, ParseError> {
    Ok(Arc::new(serde_path_to_error::deserialize::<_, C>(de)?))
}

fn sink<C: SinkSpec + DeserializeOwned>(
    de: ValueDeserializer<'_>,
) -> Result<Arc<dyn SinkSpec>, ParseError> {
    Ok(Arc::new(serde_path_to_error::deserialize::<_, C>(de)?))
}

/// Component types by kind and name.
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) sources: BTreeMap<&'static str, ParseFn<dyn SourceSpec>>,
    pub(crate) processors: BTreeMap<&'static str, ParseFn<dyn ProcessorSpec>>,
    pub(crate) sinks: BTreeMap<&'static str, ParseFn<dyn SinkSpec>>,
}

impl Registry {
    /// Every component nmsd ships.
    pub fn builtin() -> Self {
        use crate::sources::{capture, netflow, pcap_file, sflow, snmp, snmp_traps};
        use nmsd_pipeline::processors::{interface_names, rollup};
        Registry::default()
            .source::<netflow::NetflowSourceConfig>("netflow")
            .source::<capture::CaptureSourceConfig>("capture")
            .source::<pcap_file::PcapFileSourceConfig>("pcap_file")
            .source::<sflow::SflowSourceConfig>("sflow")
            .source::<snmp::SnmpSourceConfig>("snmp")
            .source::<snmp_traps::SnmpTrapsSourceConfig>("snmp_traps")
            .processor::<rollup::RollupConfig>("rollup")
            .processor::<interface_names::InterfaceNamesConfig>("interface_names")
            .sink::<nmsd_sinks::questdb::QuestDbConfig>("questdb")
    }

    pub fn source<C: SourceSpec + DeserializeOwned>(mut self, name: &'static str) -> Self {
        self.sources.insert(name, source::<C>);
        self
    }

    pub fn processor<C: ProcessorSpec + DeserializeOwned>(mut self, name: &'static str) -> Self {
        self.processors.insert(name, processor::<C>);
        self
    }

    pub fn sink<C: SinkSpec + DeserializeOwned>(mut self, name: &'static str) -> Self {
        self.sinks.insert(name, sink::<C>);
        self
    }

    /// Registered names of one kind, for error messages.
    pub fn names(&self, kind: nmsd_pipeline::component::ComponentKind) -> Vec<&'static str> {
        use nmsd_pipeline::component::ComponentKind as K;
        match kind {
            K::Source => self.sources.keys().copied().collect(),
            K::Processor => self.processors.keys().copied().collect(),
            K::Sink => self.sinks.keys().copied().collect(),
        }
    }
}
