//! nmsd itself, run as the operator would: the real binary with a config file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The `nmsd` binary, built once per test process if needed (`$NMSD_BIN` overrides).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NMSD_BIN") {
            return PathBuf::from(p);
        }
        let ws = crate::workspace();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "nmsd"])
            .current_dir(&ws)
            .status()
            .expect("cargo build -p nmsd");
        assert!(status.success(), "building nmsd failed");
        ws.join("target/debug/nmsd")
    })
    .clone()
}

/// A running nmsd.
pub struct Nmsd {
    pub dir: PathBuf,
    pub control_port: u16,
    pub flow_port: u16,
    child: Option<Child>,
    agent: ureq::Agent,
}

/// Settings for a test instance; everything else comes from defaults.
#[derive(Clone, Debug)]
pub struct NmsdOptions {
    /// QuestDB URL, or None for no sink.
    pub questdb: Option<String>,
    pub table_prefix: String,
    pub raw_flows: bool,
    /// The sink's `batch_interval` (short, so tests see rows soon).
    pub batch_interval: String,
    /// Extra lines for `[sinks.questdb]`.
    pub sink_extra: String,
    /// The sink's `retry_initial` and `retry_max` (short by default, so tests recover fast).
    pub retry: (String, String),
    /// Extra TOML appended verbatim.
    pub extra: String,
    /// Reuse a state dir (for restart tests).
    pub state_dir: Option<PathBuf>,
    /// Extra lines for `[control]`.
    pub control_extra: String,
    /// `receive_buffer` of the flow socket.
    pub receive_buffer: String,
    /// Extra lines for `[sources.netflow]`.
    pub netflow_extra: String,
    /// The flow port, or None for a free one.
    pub flow_port: Option<u16>,
    /// Open-files limit (`ulimit -n`) of the nmsd process, or None to inherit the test's.
    pub nofile_limit: Option<u64>,
    /// Extra environment variables of the nmsd process.
    pub env: Vec<(String, String)>,
    /// Inputs of the roll-up (quoted ids): the netflow source and any flow source in `extra`.
    pub rollup_inputs: Vec<String>,
    /// Inputs of the sink (quoted ids) instead of the names processor, `netflow` if
    /// `raw_flows`, and the sources in `extra`.
    pub sink_inputs: Option<Vec<String>>,
}

impl Default for NmsdOptions {
    fn default() -> Self {
        NmsdOptions {
            questdb: None,
            table_prefix: String::new(),
            raw_flows: true,
            batch_interval: "200ms".into(),
            sink_extra: String::new(),
            retry: ("100ms".into(), "1s".into()),
            extra: String::new(),
            state_dir: None,
            control_extra: String::new(),
            receive_buffer: "8MiB".into(),
            netflow_extra: String::new(),
            flow_port: None,
            nofile_limit: None,
            env: Vec::new(),
            rollup_inputs: vec!["\"netflow\"".into()],
            sink_inputs: None,
        }
    }
}

impl Nmsd {
    pub fn start(name: &str, opts: &NmsdOptions) -> Nmsd {
        let dir = crate::scratch(name);
        let control_port = crate::free_tcp_port();
        let flow_port = opts.flow_port.unwrap_or_else(crate::free_udp_port);
        let state = opts.state_dir.clone().unwrap_or_else(|| dir.join("state"));
        // Sources the test adds in `extra` feed the sink too (e.g. `[sources.snmp]`).
        let extra_sources: Vec<String> = opts
            .extra
            .lines()
            .filter_map(|l| l.trim().strip_prefix("[sources.")?.strip_suffix(']'))
            .filter(|id| !id.contains('.'))
            .map(|id| format!("\"{id}\""))
            .collect();
        let mut inputs = vec!["\"names\"".to_string()];
        if opts.raw_flows {
            inputs.push("\"netflow\"".into());
        }
        inputs.extend(extra_sources);
        if let Some(i) = &opts.sink_inputs {
            inputs.clone_from(i);
        }
        let sink = match &opts.questdb {
            Some(url) => format!(
                "[sinks.questdb]\ntype = \"questdb\"\ninputs = [{}]\nurl = \"{url}\"\n\
                 table_prefix = \"{}\"\nbatch_interval = \"{}\"\nretry_initial = \"{}\"\n\
                 retry_max = \"{}\"\n{}\n",
                inputs.join(", "),
                opts.table_prefix,
                opts.batch_interval,
                opts.retry.0,
                opts.retry.1,
                opts.sink_extra
            ),
            None => String::new(),
        };
        let config = format!(
            "[general]\nstate_dir = \"{}\"\nlog_level = \"debug\"\n\n\
             [control]\nlisten = \"127.0.0.1:{control_port}\"\n{}\n\
             [sources.netflow]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{flow_port}\"\n\
             sockets = 1\nreceive_buffer = \"{}\"\nring_full_policy = \"block\"\n{}\n\n\
             [processors.rollup]\ntype = \"rollup\"\ninputs = [{}]\nflush_delay = \"0s\"\n\n\
             [processors.names]\ntype = \"interface_names\"\ninputs = [\"rollup\"]\n\n\
             {sink}\n{}",
            state.display(),
            opts.control_extra,
            opts.receive_buffer,
            opts.netflow_extra,
            opts.rollup_inputs.join(", "),
            opts.extra
        );
        let cfg_path = dir.join("config.toml");
        std::fs::write(&cfg_path, config).expect("write config");
        Nmsd::launch(dir, &cfg_path, control_port, flow_port, opts)
    }

    /// `nmsd run -c cfg_path` with `opts`' environment and open-files limit, not yet started.
    pub fn command(cfg_path: &std::path::Path, opts: &NmsdOptions) -> Command {
        let mut cmd = match opts.nofile_limit {
            Some(n) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        cmd.args(["run", "-c"]).arg(cfg_path).env("NO_COLOR", "1");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run nmsd on a config file already written (its ports given) and wait until it is ready;
    /// its output goes to `dir/nmsd.log`.
    pub fn launch(
        dir: PathBuf,
        cfg_path: &std::path::Path,
        control_port: u16,
        flow_port: u16,
        opts: &NmsdOptions,
    ) -> Nmsd {
        let log = std::fs::File::create(dir.join("nmsd.log")).expect("nmsd log");
        let child = Nmsd::command(cfg_path, opts)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nmsd starts");
        let n = Nmsd {
            dir,
            control_port,
            flow_port,
            child: Some(child),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .build()
                .into(),
        };
        let ready = crate::wait_for(Duration::from_secs(30), || {
            (n.get("/readyz").map(|(s, _)| s) == Some(200)).then_some(())
        });
        assert!(ready.is_some(), "nmsd not ready in 30 s; log:\n{}", n.log());
        n
    }

    /// GET a control-plane path: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut r = self
            .agent
            .get(format!("http://127.0.0.1:{}{path}", self.control_port))
            .call()
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.body_mut().read_to_string().ok()?))
    }

    /// Every sample of /metrics as `name{labels}` → value.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let (_, body) = self.get("/metrics").expect("metrics endpoint answers");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// Sum of a metric over all label sets matching every `label="value"` fragment given.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.metrics()
            .iter()
            .filter(|(k, _)| {
                let base = k.split('{').next().unwrap_or(k);
                base == name && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Wait until `name` (summed over labels) reaches `at_least`.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[&str],
        at_least: f64,
        timeout: Duration,
    ) -> f64 {
        crate::wait_for(timeout, || {
            let v = self.metric(name, labels);
            (v >= at_least).then_some(v)
        })
        .unwrap_or_else(|| self.metric(name, labels))
    }

    /// The process id while it runs (to send it a signal).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nmsd.log")).unwrap_or_default()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (a crash: no shutdown, nothing flushed) and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`), if the process runs.
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("nmsd running");
        crate::terminate(&mut child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("nmsd did not stop within 60 s; log:\n{}", self.log()))
    }
}

impl Drop for Nmsd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
