//! `interface_names`: adds the names, aliases and speeds SNMP polling learned to the interfaces
//! of roll-up rows (`in_if`/`out_if` of the exporter), so every sink downstream gets them.
//!
//! Rows pass through: what comes in goes out, enriched. Flow records stay fixed-size `Copy`
//! structs (the hot path allocates nothing per record), so raw flows pass unchanged; their
//! interfaces are named in the roll-ups.

use serde::Deserialize;

use super::{Emitter, Processor};
use crate::component::{Placement, ProcessorContext, ProcessorSpec};
use crate::enrich::IfDirectory;
use crate::published::PublishedReader;
use crate::stream::{Batch, StreamKind, StreamSet};

/// `[processors.<id>] type = "interface_names"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceNamesConfig {}

const TAKES: StreamSet = StreamSet::of(&[StreamKind::Rollups, StreamKind::Flows]);

impl ProcessorSpec for InterfaceNamesConfig {
    fn accepts(&self) -> StreamSet {
        TAKES
    }

    fn outputs(&self, inputs: StreamSet) -> StreamSet {
        inputs.intersection(TAKES)
    }

    fn placement(&self) -> Placement {
        Placement::Worker
    }

    fn build(&self, ctx: &ProcessorContext) -> Box<dyn Processor> {
        Box::new(InterfaceNames {
            readers: ctx.interfaces.readers(),
        })
    }
}

/// The running processor.
pub struct InterfaceNames {
    readers: Vec<PublishedReader<IfDirectory>>,
}

impl Processor for InterfaceNames {
    fn process(&mut self, input: Batch, out: &mut Emitter) {
        let Batch::Rollups(rows) = input else {
            out.emit(input);
            return;
        };
        // One atomic load per directory and batch; names change at most once per SNMP poll.
        let dirs: Vec<&IfDirectory> = self.readers.iter_mut().filter_map(|r| r.get()).collect();
        if dirs.iter().all(|d| d.is_empty()) {
            out.emit(Batch::Rollups(rows));
            return;
        }
        let mut rows = std::sync::Arc::unwrap_or_clone(rows);
        let find = |e, i| dirs.iter().find_map(|d| d.get(e, i)).cloned();
        for r in rows.iter_mut() {
            r.in_if_info = find(r.exporter, r.in_if);
            r.out_if_info = find(r.exporter, r.out_if);
        }
        out.rollups(rows);
    }

    fn tick(&mut self, _now_ms: u64, _out: &mut Emitter) {}

    fn flush(&mut self, _out: &mut Emitter) {}
}
