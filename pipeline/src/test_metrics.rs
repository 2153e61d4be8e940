//! Reading metric values in unit tests: a Prometheus recorder local to the test.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

/// A recorder of its own, so parallel tests do not see each other's series.
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

/// Build something whose metric handles are registered in `recorder`.
pub fn within<T>(recorder: &PrometheusRecorder, f: impl FnOnce() -> T) -> T {
    metrics::with_local_recorder(recorder, f)
}

/// The value of the series rendered as `series` (e.g. `name{label="x"}`), if present.
pub fn value(recorder: &PrometheusRecorder, series: &str) -> Option<f64> {
    recorder.handle().render().lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok())?
    })
}
