//! The HTTP control plane: health, readiness, metrics and a status API.
//!
//! It only reads shared snapshots; nothing here touches the data plane's hot path.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

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
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/topology", get(topology_json))
        .route("/api/v1/topology.dot", get(topology_dot))
        .with_state(state)
}

async fn readyz(State(s): State<ControlState>) -> Response {
    if s.status.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<ControlState>) -> Response {
    let mut body = s.prometheus.render();
    // SNMP device and interface series come from the status snapshot (see nmsd_snmp::engine::prom).
    if let Some(board) = &s.status.snmp
        && let Ok(devices) = board.lock()
    {
        body.push('\n');
        nmsd_snmp::engine::prom::render(&devices, s.status.snmp_max_series, &mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn devices(State(s): State<ControlState>) -> Json<serde_json::Value> {
    let devices = s
        .status
        .snmp
        .as_ref()
        .and_then(|b| b.lock().ok().map(|g| g.clone()))
        .unwrap_or_default();
    Json(json!({ "devices": devices }))
}

fn topology_snapshot(s: &ControlState) -> nmsd_snmp::topology::TopologySnapshot {
    s.status
        .topology
        .as_ref()
        .and_then(|t| t.lock().ok().map(|g| g.clone()))
        .unwrap_or_default()
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
    let questdb = st.questdb.as_ref().map(|q| {
        json!({
            "connected": q.connected(),
            "rows_written": q.rows_written(),
            "last_error": q.last_error(),
            "rows_failed": q.rows_failed(),
            "last_discard": q.last_discard(),
        })
    });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": st.started.elapsed().as_secs(),
        "ready": st.ready.load(Ordering::Relaxed),
        "workers": st.workers,
        "sources": st.sources,
        "sinks": { "questdb": questdb },
    }))
}
