//! Routing batches between components, as wired by the topology from each component's
//! `inputs`.
//!
//! A thread that runs components (a parse worker, the global stage, a source's thread) holds a
//! [`Graph`]: for every component whose output it produces, the targets of that output in this
//! thread (processor instances it owns, in topological order) and beyond it (sink queues, the
//! global stage's queue). Dispatch is a direct call into the next processor, not a queue hop:
//! the hot path stays one thread per batch, and a batch fans out as shared `Arc`s.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::component::ComponentCounters;
use crate::event::EventLog;
use crate::global::GlobalSender;
use crate::processors::{Emitter, Processor};
use crate::queue::SinkQueue;
use crate::stream::{Batch, StreamSet};

/// Somewhere outside this thread a component's output goes.
#[derive(Clone)]
pub enum Port {
    /// A sink's queue.
    Sink(SinkQueue),
    /// The global stage, tagged with the global graph's node of the emitting component.
    Global(GlobalSender, u16),
}

impl Port {
    fn send(&self, b: Batch) {
        match self {
            Port::Sink(q) => {
                q.send(b);
            }
            Port::Global(g, node) => {
                g.send(*node, b);
            }
        }
    }
}

/// Where one component's output goes.
#[derive(Clone, Default)]
pub struct Targets {
    /// Processor slots of this thread (indices into its slot list, ascending), each with the
    /// streams it takes.
    pub local: Vec<(usize, StreamSet)>,
    /// Sinks and the global stage, each with the streams it takes.
    pub ports: Vec<(Port, StreamSet)>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.ports.is_empty()
    }

    /// Whether anything here takes a stream of `kinds`.
    pub fn wants(&self, kinds: StreamSet) -> bool {
        self.local
            .iter()
            .map(|(_, s)| s)
            .chain(self.ports.iter().map(|(_, s)| s))
            .any(|s| !s.intersection(kinds).is_empty())
    }
}

/// A component's output as one thread sees it.
#[derive(Clone, Default)]
pub struct Node {
    pub targets: Targets,
    /// Counts what the component sends; None where another thread already counted it (the
    /// global stage re-dispatching what a worker sent).
    pub sent: Option<ComponentCounters>,
    /// The component's id, stamped on events it emits without one.
    pub id: Arc<str>,
}

/// The routing table of one thread.
#[derive(Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Every event dispatched is also kept here, for the control plane.
    pub events: Option<Arc<EventLog>>,
}

/// A processor instance owned by a thread.
pub struct Slot {
    /// Its node in the thread's graph (where its output is routed from).
    pub node: usize,
    pub processor: Box<dyn Processor>,
    pub counters: Option<ComponentCounters>,
}

impl Graph {
    /// Route `batch`, emitted by node `from`, to its targets. `slots` are the thread's slots
    /// from index `base` on (a processor only ever feeds later ones).
    pub fn dispatch(&self, from: usize, batch: Batch, slots: &mut [Slot], base: usize) {
        let Some(node) = self.nodes.get(from) else {
            return;
        };
        let mut batch = batch;
        if let Batch::Events(ev) = &mut batch {
            if ev.iter().any(|e| e.component.is_empty()) {
                for e in Arc::make_mut(ev).iter_mut() {
                    if e.component.is_empty() {
                        e.component = node.id.clone();
                    }
                }
            }
            // Kept once, by the thread that counts the batch as sent: the global stage
            // re-dispatching a worker's events must not log them twice.
            if let (Some(log), Some(_)) = (&self.events, &node.sent) {
                log.record(ev);
            }
        }
        let rows = batch.rows() as u64;
        if let Some(c) = &node.sent {
            c.sent(rows);
        }
        let kind = batch.kind();
        for &(j, accepts) in &node.targets.local {
            if !accepts.contains(kind) || j < base {
                continue;
            }
            let Some((slot, later)) = slots[j - base..].split_first_mut() else {
                continue;
            };
            if let Some(c) = &slot.counters {
                c.received(rows);
            }
            let mut out = Emitter::routed(Dispatch {
                graph: self,
                from: slot.node,
                slots: later,
                base: j + 1,
            });
            slot.processor.process(batch.clone(), &mut out);
        }
        for (port, accepts) in &node.targets.ports {
            if accepts.contains(kind) {
                port.send(batch.clone());
            }
        }
    }

    /// Tick every slot, routing what it emits.
    pub fn tick(&self, now_ms: u64, slots: &mut [Slot]) {
        for i in 0..slots.len() {
            let (head, later) = slots[i..].split_at_mut(1);
            let slot = &mut head[0];
            let mut out = Emitter::routed(Dispatch {
                graph: self,
                from: slot.node,
                slots: later,
                base: i + 1,
            });
            slot.processor.tick(now_ms, &mut out);
        }
    }

    /// Flush every slot in order, so what an early processor flushes reaches later ones
    /// before they flush.
    pub fn flush(&self, slots: &mut [Slot]) {
        for i in 0..slots.len() {
            let (head, later) = slots[i..].split_at_mut(1);
            let slot = &mut head[0];
            let mut out = Emitter::routed(Dispatch {
                graph: self,
                from: slot.node,
                slots: later,
                base: i + 1,
            });
            slot.processor.flush(&mut out);
        }
    }
}

/// An emitter's way into the graph: the emitting node and the slots after it.
pub(crate) struct Dispatch<'a> {
    graph: &'a Graph,
    from: usize,
    slots: &'a mut [Slot],
    base: usize,
}

impl Dispatch<'_> {
    pub(crate) fn send(&mut self, b: Batch) {
        self.graph.dispatch(self.from, b, self.slots, self.base);
    }
}

/// The per-worker processors a source runs on its own thread, and when they last ticked.
struct SourceStage {
    slots: Vec<Slot>,
    last_tick: Instant,
}

/// The output of a source running on its own thread: sinks and the global stage, under their
/// queues' full policies, and, for a source that builds flows itself (from packets or sFlow),
/// its own instances of the per-worker processors that take from it. Such a source is a
/// parse worker of its own: its flows are rolled up and viewed on its thread, with no queue
/// hop, as a worker does for the exporters it owns.
#[derive(Clone)]
pub struct SourceOutput {
    graph: Arc<Graph>,
    /// The source's node in `graph`.
    node: usize,
    /// Its processor instances; None when it runs none (SNMP polling, traps). Behind a lock
    /// because the output is cloned into every task of a source; a flow source sends from
    /// one thread, so the lock is never contended.
    stage: Option<Arc<Mutex<SourceStage>>>,
}

impl SourceOutput {
    /// `graph` has one node, the source.
    pub fn new(node: Node) -> Self {
        SourceOutput {
            graph: Arc::new(Graph {
                nodes: vec![node],
                events: None,
            }),
            node: 0,
            stage: None,
        }
    }

    /// A source at `node` of `graph` (the parse workers' graph) running its own `slots`
    /// (laid out as a worker's; none if no processor of the graph takes from it).
    pub fn with_processors(graph: Arc<Graph>, node: usize, slots: Vec<Slot>) -> Self {
        let stage = (!slots.is_empty()).then(|| {
            Arc::new(Mutex::new(SourceStage {
                slots,
                last_tick: Instant::now(),
            }))
        });
        SourceOutput { graph, node, stage }
    }

    /// A source output that goes nowhere (for tests and tools).
    pub fn discard() -> Self {
        Self::new(Node::default())
    }

    /// Whether anything downstream takes a stream of `kinds` (skip building rows no one reads).
    pub fn wants(&self, kinds: StreamSet) -> bool {
        self.graph
            .nodes
            .get(self.node)
            .is_some_and(|n| n.targets.wants(kinds))
    }

    pub fn send(&self, b: Batch) {
        if b.is_empty() {
            return;
        }
        match &self.stage {
            None => self.graph.dispatch(self.node, b, &mut [], 0),
            Some(stage) => {
                let mut st = lock(stage);
                self.graph.dispatch(self.node, b, &mut st.slots, 0);
            }
        }
    }

    /// Tick the source's processors if a tick is due: call it from the source's loop, busy or
    /// idle, so windows close on time when traffic stops.
    pub fn tick_if_due(&self) {
        if let Some(stage) = &self.stage {
            let mut st = lock(stage);
            // As often as a parse worker's.
            if st.last_tick.elapsed() >= crate::worker::TICK {
                st.last_tick = Instant::now();
                self.graph.tick(crate::clock::unix_ms(), &mut st.slots);
            }
        }
    }

    /// Flush the source's processors: what they hold goes downstream. Call it once the source
    /// has sent its last batch, before its thread ends.
    pub fn flush(&self) {
        if let Some(stage) = &self.stage {
            let mut st = lock(stage);
            self.graph.flush(&mut st.slots);
        }
    }
}

fn lock(stage: &Mutex<SourceStage>) -> std::sync::MutexGuard<'_, SourceStage> {
    // A processor that panicked left its own state as it was; the rest of the stage is fine.
    stage.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::sink_queue;
    use crate::records::RollupRow;
    use crate::ring::FullPolicy;
    use crate::stream::StreamKind;

    /// Emits one roll-up row per flow it sees.
    struct Echo;
    impl Processor for Echo {
        fn process(&mut self, input: Batch, out: &mut Emitter) {
            if let Batch::Flows(f) = input {
                out.rollups(vec![RollupRow::sample(); f.len()]);
            }
        }
        fn tick(&mut self, _: u64, _: &mut Emitter) {}
        fn flush(&mut self, _: &mut Emitter) {}
    }

    #[test]
    fn a_batch_reaches_every_target_that_takes_its_stream_and_is_shared_not_copied() {
        let bounds = crate::queue::QueueBounds {
            capacity: 4,
            max_bytes: 1 << 20,
            policy: FullPolicy::Drop,
        };
        let (a, a_rx) = sink_queue("a", bounds);
        let (b, b_rx) = sink_queue("b", bounds);
        let flows = StreamSet::of(&[StreamKind::Flows]);
        let rollups = StreamSet::of(&[StreamKind::Rollups]);
        // Node 0: a flow source feeding the processor (slot 0) and sink a; node 1: the
        // processor, feeding sinks a and b.
        let graph = Graph {
            nodes: vec![
                Node {
                    targets: Targets {
                        local: vec![(0, flows)],
                        ports: vec![(Port::Sink(a.clone()), flows.union(rollups))],
                    },
                    ..Default::default()
                },
                Node {
                    targets: Targets {
                        local: vec![],
                        ports: vec![
                            (Port::Sink(a), flows.union(rollups)),
                            (Port::Sink(b), rollups),
                        ],
                    },
                    ..Default::default()
                },
            ],
            events: None,
        };
        let mut slots = vec![Slot {
            node: 1,
            processor: Box::new(Echo),
            counters: None,
        }];
        let f = nmsd_parsers::FlowRecord::default();
        let batch = Batch::flows(vec![f, f, f]);
        graph.dispatch(0, batch, &mut slots, 0);
        let got_a: Vec<(StreamKind, usize)> =
            a_rx.try_iter().map(|m| (m.kind(), m.rows())).collect();
        assert_eq!(got_a, [(StreamKind::Rollups, 3), (StreamKind::Flows, 3)]);
        let got_b: Vec<_> = b_rx.try_iter().collect();
        assert_eq!(got_b.len(), 1);
        // Both sinks hold the same roll-up rows, not copies.
        let Batch::Rollups(rb) = &got_b[0] else {
            panic!("roll-ups expected");
        };
        assert_eq!(Arc::strong_count(rb), 1, "sink a's copy was taken already");
    }
}
