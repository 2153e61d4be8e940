//! A real Prometheus server (Debian's `prometheus` package) on a loopback port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running Prometheus with its own storage under the scratch folder.
pub struct Prometheus {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Start Prometheus on `config` (prometheus.yml text) with `files` (name, text) written
    /// beside it (rule files), and wait until it is ready.
    pub fn start(name: &str, config: &str, files: &[(&str, String)]) -> Prometheus {
        let binary = crate::require("prometheus");
        let dir = crate::scratch(name);
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).expect("prometheus.yml");
        for (file, text) in files {
            std::fs::write(dir.join(file), text).expect("prometheus file");
        }
        let port = crate::free_tcp_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            port,
            dir,
            child: Some(child),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
        };
        let ready = crate::wait_for(Duration::from_secs(30), || {
            let r = p
                .agent
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .call()
                .ok()?;
            (r.status().as_u16() == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "Prometheus not ready in 30 s; log:\n{}",
            p.log()
        );
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path with query parameters: the `data` of a success, or the error.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = self
            .agent
            .get(format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| e.to_string())?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            return Err(format!(
                "{}: {}",
                v.get("errorType").and_then(Value::as_str).unwrap_or("?"),
                v.get("error").and_then(Value::as_str).unwrap_or(&body)
            ));
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Evaluate a PromQL expression now: its result vector (or matrix, scalar) as JSON.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        Ok(match data.get("result") {
            Some(Value::Array(a)) => a.clone(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
