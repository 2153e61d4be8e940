//! Events: what alerts, incidents, reloads and audit records are made of.
//!
//! One generic shape rather than a type per producer, so a sink stores every kind in one table
//! and the control plane lists them without knowing who emitted them.

use std::collections::BTreeMap;
use std::sync::Arc;

/// How much an event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A value of an event field; serialized as the bare number or string.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Number(f64),
    Integer(i64),
    Text(String),
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When it happened, Unix ms.
    pub ts_ms: u64,
    /// What happened, e.g. `"port_scan"`, `"interface_utilization_high"`.
    pub kind: Arc<str>,
    pub severity: Severity,
    /// What it is about: an address, a device, `device/ifName`.
    pub subject: String,
    /// The id of the component that emitted it (set by the topology's emitter if left empty).
    pub component: Arc<str>,
    /// Low-cardinality dimensions (become symbols in QuestDB).
    pub labels: Vec<(Arc<str>, String)>,
    /// Measured values.
    pub fields: Vec<(Arc<str>, FieldValue)>,
    /// A sentence for people.
    pub message: String,
}

impl Event {
    pub fn new(ts_ms: u64, kind: impl Into<Arc<str>>, severity: Severity) -> Self {
        Event {
            ts_ms,
            kind: kind.into(),
            severity,
            subject: String::new(),
            component: Arc::from(""),
            labels: Vec::new(),
            fields: Vec::new(),
            message: String::new(),
        }
    }

    pub fn subject(mut self, s: impl Into<String>) -> Self {
        self.subject = s.into();
        self
    }

    pub fn label(mut self, k: impl Into<Arc<str>>, v: impl Into<String>) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }

    pub fn field(mut self, k: impl Into<Arc<str>>, v: FieldValue) -> Self {
        self.fields.push((k.into(), v));
        self
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }

    /// The labels as one object (a later duplicate key wins), for sinks and the API.
    pub fn labels_map(&self) -> BTreeMap<&str, &str> {
        self.labels
            .iter()
            .map(|(k, v)| (&**k, v.as_str()))
            .collect()
    }

    /// The fields as one object (a later duplicate key wins).
    pub fn fields_map(&self) -> BTreeMap<&str, &FieldValue> {
        self.fields.iter().map(|(k, v)| (&**k, v)).collect()
    }
}

/// The most recent events, for the control plane (`/api/v1/events`). Bounded: the oldest go.
#[derive(Debug)]
pub struct EventLog {
    capacity: usize,
    events: std::sync::Mutex<std::collections::VecDeque<Event>>,
}

impl EventLog {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventLog {
            capacity: capacity.max(1),
            events: Default::default(),
        })
    }

    /// Keep `events` (the oldest beyond capacity are forgotten). Locked once per batch;
    /// events are rare next to flows.
    pub fn record(&self, events: &[Event]) {
        if let Ok(mut q) = self.events.lock() {
            for e in events {
                if q.len() == self.capacity {
                    q.pop_front();
                }
                q.push_back(e.clone());
            }
        }
    }

    /// The events held, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest() {
        let log = EventLog::new(2);
        let e = |t| Event::new(t, "k", Severity::Info);
        log.record(&[e(1), e(2), e(3)]);
        let got: Vec<u64> = log.recent().iter().map(|e| e.ts_ms).collect();
        assert_eq!(got, [2, 3]);
    }
}
