//! The HTTP control plane: health, readiness, metrics and a status API.
//!
//! It only reads shared snapshots; nothing here touches the data plane's hot path. Its
//! connections are bounded in number and time ([`GuardedListener`]), so idle or half-sent
//! connections cannot starve /healthz or the data plane's file descriptors.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::topology::RuntimeStatus;

#[derive(Clone)]
pub struct ControlState {
    pub prometheus: PrometheusHandle,
    pub status: Arc<RuntimeStatus>,
}

pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/topology", get(topology_json))
        .route("/api/v1/topology.dot", get(topology_dot))
        .with_state(state)
}

async fn readyz(State(s): State<ControlState>) -> Response {
    if s.status.is_ready() {
        // Ready, but say which sinks are down and what waits for them: an outage buffers (and
        // past the queue bounds sheds, counted); it is not a reason to restart nmsd.
        let down: Vec<String> = s
            .status
            .components
            .iter()
            .filter_map(|c| {
                let sink = c.sink.as_ref().filter(|q| !q.connected())?;
                let bytes = c
                    .queued_bytes
                    .as_ref()
                    .map_or(0, |b| b.load(std::sync::atomic::Ordering::Relaxed));
                let why = sink
                    .last_error()
                    .unwrap_or_else(|| "not connected yet".into());
                Some(match sink.buffer() {
                    Some(b) => format!(
                        "sink \"{}\" down ({why}), buffering on disk: {} of {} bytes, {} batches, \
                         oldest {:.0}s; {bytes} bytes queued",
                        c.stats.id, b.bytes, b.max_bytes, b.records, b.oldest_age_s
                    ),
                    None => format!("sink \"{}\" down ({why}), {bytes} bytes queued", c.stats.id),
                })
            })
            .collect();
        if down.is_empty() {
            (StatusCode::OK, "ready\n").into_response()
        } else {
            (
                StatusCode::OK,
                format!("ready, degraded: {}\n", down.join("; ")),
            )
                .into_response()
        }
    } else if !s.status.liveness.healthy() {
        let stalled = s.status.liveness.stalled().join(", ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: pipeline threads stalled: {stalled}\n"),
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<ControlState>) -> Response {
    let mut body = s.prometheus.render();
    // SNMP device and interface series come from the status snapshot (see nmsd_snmp::engine::prom).
    if !s.status.snmp.is_empty() {
        body.push('\n');
        nmsd_snmp::engine::prom::render(&all_devices(&s), s.status.snmp_max_series, &mut body);
    }
    body.push('\n');
    crate::process_metrics::render(&crate::process_metrics::sample(), &mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The devices of every SNMP polling source.
fn all_devices(s: &ControlState) -> Vec<nmsd_snmp::engine::DeviceStatus> {
    s.status
        .snmp
        .iter()
        .filter_map(|b| b.lock().ok().map(|g| g.clone()))
        .flatten()
        .collect()
}

async fn devices(State(s): State<ControlState>) -> Json<serde_json::Value> {
    Json(json!({ "devices": all_devices(&s) }))
}

/// The topology of every SNMP polling source, as one graph.
fn topology_snapshot(s: &ControlState) -> nmsd_snmp::topology::TopologySnapshot {
    let mut all = nmsd_snmp::topology::TopologySnapshot::default();
    for t in &s.status.topology {
        if let Ok(g) = t.lock() {
            all.nodes.extend(g.nodes.iter().cloned());
            all.links.extend(g.links.iter().cloned());
        }
    }
    all.nodes.sort();
    all.nodes.dedup_by(|a, b| a.id == b.id);
    all
}

async fn topology_json(
    State(s): State<ControlState>,
) -> Json<nmsd_snmp::topology::TopologySnapshot> {
    Json(topology_snapshot(&s))
}

async fn topology_dot(State(s): State<ControlState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
        topology_snapshot(&s).to_dot(),
    )
        .into_response()
}

async fn status(State(s): State<ControlState>) -> Json<serde_json::Value> {
    let st = &s.status;
    let sink_json = |q: &nmsd_sinks::SinkStatus| {
        json!({
            "connected": q.connected(),
            "rows_written": q.rows_written(),
            "last_error": q.last_error(),
            "rows_rejected": q.rows_rejected(),
            "rows_lost": q.rows_lost(),
            "last_discard": q.last_discard(),
            "rows_dropped_by_buffer": q.rows_dropped(),
            "rows_kept_in_buffer": q.rows_kept(),
            "buffer": q.buffer(),
        })
    };
    let mut sinks = serde_json::Map::new();
    let mut components = Vec::new();
    for c in &st.components {
        let stats = &c.stats;
        let mut v = json!({
            "id": &*stats.id,
            "kind": stats.kind.name(),
            "type": &*stats.type_name,
            "received": stats.received(),
            "sent": stats.sent(),
            "discarded": stats.discarded(),
            "errors": stats.errors(),
        });
        if let Some(o) = v.as_object_mut() {
            if !c.inputs.is_empty() {
                o.insert("inputs".into(), json!(c.inputs));
            }
            if let Some(p) = c.placement {
                o.insert("placement".into(), json!(p));
            }
            for (k, x) in &c.extra {
                o.insert(k.clone(), x.clone());
            }
            if let Some(b) = &c.queued_bytes {
                o.insert(
                    "queued_bytes".into(),
                    json!(b.load(std::sync::atomic::Ordering::Relaxed)),
                );
            }
            let state = match &c.sink {
                Some(q) => {
                    let j = sink_json(q);
                    sinks.insert(stats.id.to_string(), j.clone());
                    o.insert("sink".into(), j);
                    if q.connected() { "up" } else { "down" }
                }
                None if st.is_ready() => "running",
                None => "stopping",
            };
            o.insert("state".into(), json!(state));
        }
        components.push(v);
    }
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": st.started.elapsed().as_secs(),
        "ready": st.is_ready(),
        "pipeline": {
            "threads": st.liveness.threads(),
            "stalled": st.liveness.stalled(),
            "healthy": st.liveness.healthy(),
        },
        "workers": st.workers,
        "sources": st.sources,
        "components": components,
        "sinks": sinks,
    }))
}

/// The most recent events (alerts, incidents) any component emitted, newest last.
async fn events(State(s): State<ControlState>) -> Json<serde_json::Value> {
    let events: Vec<_> = s
        .status
        .events
        .recent()
        .into_iter()
        .map(|e| {
            json!({
                "ts_ms": e.ts_ms,
                "kind": &*e.kind,
                "severity": e.severity.name(),
                "subject": e.subject,
                "component": &*e.component,
                "message": e.message,
                "labels": e.labels_map(),
                "fields": e.fields_map(),
            })
        })
        .collect();
    Json(json!({ "events": events }))
}

/// Bounds on the control plane's connections (`[control]`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once; at the cap the one idle longest is closed for a new one.
    pub max_connections: usize,
    /// From a request's first byte to its last, and for a blocked response write.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The configured cap, lowered to half the open-files limit: idle HTTP connections must
    /// never take the descriptors that sockets, template saves and the sink need (at 1,100
    /// connections and a limit of 1,024, /healthz timed out and template saves failed).
    pub fn from_config(c: &crate::config::ControlConfig) -> Self {
        let mut max_connections = c.max_connections;
        if let Some(nofile) = open_files_limit() {
            let ceiling = usize::try_from(nofile / 2).unwrap_or(usize::MAX).max(1);
            if max_connections > ceiling {
                tracing::warn!(
                    max_connections,
                    open_files_limit = nofile,
                    "[control] max_connections lowered to {ceiling}, half the open-files limit; \
                     raise LimitNOFILE= (ulimit -n) to allow more"
                );
                max_connections = ceiling;
            }
        }
        ConnectionLimits {
            max_connections,
            request_timeout: c.request_timeout.get(),
            idle_timeout: c.idle_timeout.get(),
        }
    }
}

/// The soft RLIMIT_NOFILE, if the kernel says.
fn open_files_limit() -> Option<u64> {
    // SAFETY: all-zero is a valid rlimit; getrlimit writes only into it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur as u64)
}

fn describe_connection_metrics() {
    metrics::describe_gauge!(
        "nmsd_control_connections_open",
        "Control-plane (HTTP) connections open now."
    );
    metrics::describe_counter!(
        "nmsd_control_connections_closed_total",
        "Control-plane connections closed by nmsd, by reason: evicted (the connection cap was \
         reached and this one was idle longest), request_timeout (a request or response not \
         completed within request_timeout), idle_timeout (keep-alive with no request), \
         accept_error (the kernel refused to hand over a connection, e.g. no file descriptors)."
    );
}

/// What the listener and one connection's stream share.
struct ConnectionEntry {
    id: u64,
    /// Milliseconds since the listener started, at the last byte read or written.
    last_active_ms: AtomicU64,
    evicted: AtomicBool,
    /// The task polling this connection, woken when it is evicted.
    waker: Mutex<Option<Waker>>,
}

struct ConnectionTable {
    started: tokio::time::Instant,
    next_id: u64,
    open: Vec<Arc<ConnectionEntry>>,
}

impl ConnectionTable {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn remove(&mut self, id: u64) -> bool {
        let before = self.open.len();
        self.open.retain(|e| e.id != id);
        self.open.len() != before
    }
}

fn lock(table: &Mutex<ConnectionTable>) -> std::sync::MutexGuard<'_, ConnectionTable> {
    // The table stays consistent whatever panicked while holding it.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A TCP listener for `axum::serve` that enforces [`ConnectionLimits`]. axum 0.8's `serve`
/// sets no timeouts and no limit on connections, so every bound lives here, in the listener
/// and in the [`GuardedStream`] it hands out.
pub struct GuardedListener {
    inner: tokio::net::TcpListener,
    limits: ConnectionLimits,
    table: Arc<Mutex<ConnectionTable>>,
    open: metrics::Gauge,
    evicted: metrics::Counter,
    accept_errors: metrics::Counter,
}

impl GuardedListener {
    pub fn new(inner: tokio::net::TcpListener, limits: ConnectionLimits) -> Self {
        describe_connection_metrics();
        let closed = |reason: &'static str| metrics::counter!("nmsd_control_connections_closed_total", "reason" => reason);
        GuardedListener {
            inner,
            limits,
            table: Arc::new(Mutex::new(ConnectionTable {
                started: tokio::time::Instant::now(),
                next_id: 0,
                open: Vec::new(),
            })),
            open: metrics::gauge!("nmsd_control_connections_open"),
            evicted: closed("evicted"),
            accept_errors: closed("accept_error"),
        }
    }

    fn admit(&mut self, stream: tokio::net::TcpStream) -> GuardedStream {
        let mut table = lock(&self.table);
        // At the cap, make room rather than refuse: refusing would lock /healthz out for as
        // long as idle connections hold every slot.
        while table.open.len() >= self.limits.max_connections.max(1) {
            let Some(idlest) = table
                .open
                .iter()
                .min_by_key(|e| e.last_active_ms.load(Ordering::Relaxed))
                .cloned()
            else {
                break;
            };
            table.remove(idlest.id);
            idlest.evicted.store(true, Ordering::Relaxed);
            if let Some(w) = idlest
                .waker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                w.wake();
            }
            self.evicted.increment(1);
        }
        let entry = Arc::new(ConnectionEntry {
            id: table.next_id,
            last_active_ms: AtomicU64::new(table.now_ms()),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        table.next_id += 1;
        table.open.push(entry.clone());
        self.open.set(table.open.len() as f64);
        drop(table);
        GuardedStream {
            inner: stream,
            entry,
            table: self.table.clone(),
            limits: self.limits,
            // A new connection owes its first request within request_timeout.
            phase: Phase::Request,
            deadline: Box::pin(tokio::time::sleep(self.limits.request_timeout)),
            open: self.open.clone(),
            request_timeouts: metrics::counter!(
                "nmsd_control_connections_closed_total", "reason" => "request_timeout"
            ),
            idle_timeouts: metrics::counter!(
                "nmsd_control_connections_closed_total", "reason" => "idle_timeout"
            ),
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => return (self.admit(stream), addr),
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; try again soon
                    // (closing idle connections frees descriptors meanwhile).
                    self.accept_errors.increment(1);
                    tracing::debug!("control plane: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where a connection is, for its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (keep-alive): `idle_timeout`.
    Idle,
    /// A request has started arriving and no response has been written: `request_timeout`.
    Request,
    /// A response write is blocked on the client: `request_timeout`.
    Writing,
}

/// A control-plane connection with deadlines: a request (headers and body) must arrive within
/// `request_timeout` of its first byte, a blocked response write must progress within it, and
/// an idle keep-alive connection lasts `idle_timeout`. Past a deadline reads and writes fail
/// with `TimedOut` and hyper closes the connection. An evicted connection reads as closed.
pub struct GuardedStream {
    inner: tokio::net::TcpStream,
    entry: Arc<ConnectionEntry>,
    table: Arc<Mutex<ConnectionTable>>,
    limits: ConnectionLimits,
    phase: Phase,
    deadline: Pin<Box<tokio::time::Sleep>>,
    open: metrics::Gauge,
    request_timeouts: metrics::Counter,
    idle_timeouts: metrics::Counter,
}

impl GuardedStream {
    fn enter(&mut self, phase: Phase) {
        let timeout = match phase {
            Phase::Idle => self.limits.idle_timeout,
            Phase::Request | Phase::Writing => self.limits.request_timeout,
        };
        self.phase = phase;
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + timeout);
    }

    fn touch(&self) {
        let now = lock(&self.table).now_ms();
        self.entry.last_active_ms.store(now, Ordering::Relaxed);
    }

    fn remember_waker(&self, cx: &Context<'_>) {
        let mut w = self.entry.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }

    /// Ready(error) once the current phase's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let (counter, what) = match self.phase {
                    Phase::Idle => (&self.idle_timeouts, "idle"),
                    Phase::Request => (&self.request_timeouts, "request not completed"),
                    Phase::Writing => (&self.request_timeouts, "response not read"),
                };
                counter.increment(1);
                Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("control connection closed: {what} in time"),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.entry.evicted.load(Ordering::Relaxed) {
            // End of stream: hyper closes the connection.
            return Poll::Ready(Ok(()));
        }
        this.remember_waker(cx);
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                    if this.phase == Phase::Idle {
                        this.enter(Phase::Request);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.touch();
                // A response is going out: the request is complete.
                this.enter(Phase::Idle);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Writing {
                    this.enter(Phase::Writing);
                }
                this.poll_deadline(cx).map(Err)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.touch();
                this.enter(Phase::Idle);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Writing {
                    this.enter(Phase::Writing);
                }
                this.poll_deadline(cx).map(Err)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        table.remove(self.entry.id);
        self.open.set(table.open.len() as f64);
    }
}
