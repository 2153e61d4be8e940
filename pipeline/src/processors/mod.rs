//! Processors: components that look at streams and emit rows and events.
//!
//! A processor implements [`Processor`]; its config struct sits beside it in its own file and
//! implements [`ProcessorSpec`](crate::component::ProcessorSpec), which says what it takes,
//! what it emits and where it runs. Registering it is one line in the collector's component
//! registry; operators enable it with `[processors.<id>] type = "<name>"` and wire it with
//! `inputs = [...]`. A processor outside this crate is registered the same way (see the
//! README's "Adding a component").

use crate::event::Event;
use crate::records::{FlowRecord, RollupRow};
use crate::route::Dispatch;
use crate::stream::Batch;

pub mod interface_names;
pub mod rollup;

/// Where a processor puts what it produces.
///
/// In the pipeline an emitter hands each batch on at once, to the processors and sinks whose
/// `inputs` name the emitting component, so output emitted in pieces (a roll-up window in
/// chunks of rows) is never held whole in memory. A default emitter keeps what it is given, for
/// tests and benches to [`drain`](Emitter::drain).
#[derive(Default)]
pub struct Emitter<'a> {
    route: Option<Dispatch<'a>>,
    kept: Vec<Batch>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn routed(d: Dispatch<'a>) -> Self {
        Emitter {
            route: Some(d),
            kept: Vec::new(),
        }
    }

    /// Hand a batch on (empty batches are dropped here).
    pub fn emit(&mut self, b: Batch) {
        if b.is_empty() {
            return;
        }
        match &mut self.route {
            Some(d) => d.send(b),
            None => self.kept.push(b),
        }
    }

    pub fn rollups(&mut self, rows: Vec<RollupRow>) {
        if !rows.is_empty() {
            self.emit(Batch::rollups(rows));
        }
    }

    pub fn flows(&mut self, flows: Vec<FlowRecord>) {
        if !flows.is_empty() {
            self.emit(Batch::flows(flows));
        }
    }

    pub fn events(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.emit(Batch::events(events));
        }
    }

    /// Take everything kept so far (default emitters only).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Batch> {
        self.kept.drain(..)
    }
}

/// A running processor instance.
///
/// Processors placed per worker get one instance per parse worker and see the flows of the
/// exporters that worker owns (docs/design.md, exporter affinity): no locks. Processors placed
/// in the global stage get one instance that sees every batch of the streams they subscribe to,
/// from every worker and source, and the merged keyed view they asked for.
pub trait Processor: Send {
    /// Look at a batch of one of the streams this processor accepts.
    fn process(&mut self, input: Batch, out: &mut Emitter);

    /// Called about every 250 ms with the wall clock (Unix ms): close windows, expire state.
    fn tick(&mut self, now_ms: u64, out: &mut Emitter);

    /// Called once at shutdown: emit everything still held.
    fn flush(&mut self, out: &mut Emitter);
}
