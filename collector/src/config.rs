//! config.toml: structure, defaults, loading and errors that point at the line.
//!
//! Every table denies unknown keys, so a typo is an error, not a silently ignored setting. Each
//! component's own settings live beside the component (`QuestDbConfig` in `nmsd-sinks`,
//! `RollupConfig` in `nmsd-pipeline`); this file assembles them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use nmsd_parsers::{DecoderLimits, IpNet, TimeBounds, TimePolicy};
use nmsd_pipeline::processors::ProcessorConfig;
use nmsd_pipeline::units::{ByteSize, HumanDuration};
use nmsd_sinks::questdb::QuestDbConfig;
use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: GeneralConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub processors: Vec<ProcessorConfig>,
    #[serde(default)]
    pub sinks: SinksConfig,
}

/// `[general]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Where template caches are kept. Relative paths are relative to the config file. Empty
    /// (not set) means [`default_state_dir`], resolved by [`Config::load`].
    pub state_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub log_level: LogLevel,
    /// `text` or `json` lines on stderr.
    pub log_format: crate::logging::LogFormat,
}

/// The state directory when `state_dir` is not set: `$STATE_DIRECTORY` (set by systemd's
/// `StateDirectory=`, the only writable place under the shipped unit's `ProtectSystem=strict`),
/// else `/var/lib/nmsd` for root, else `$XDG_STATE_HOME/nmsd` (`~/.local/state/nmsd`), so the
/// shipped config runs unchanged under the unit and from a checkout as any user.
pub fn default_state_dir() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    // systemd passes one path per StateDirectory= entry, separated by ':'.
    if let Some(dirs) = env("STATE_DIRECTORY")
        && let Some(first) = std::env::split_paths(&dirs).next()
    {
        return first;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/nmsd");
    }
    if let Some(xdg) = env("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("nmsd");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/nmsd"),
        None => PathBuf::from("/var/lib/nmsd"),
    }
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            state_dir: PathBuf::new(),
            log_level: LogLevel::Info,
            log_format: crate::logging::LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `[control]`: the HTTP control plane (health, readiness, metrics, API).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    /// Open connections served at once. At the cap, the connection idle longest is closed
    /// to make room; the effective cap is also kept below half the open-files limit, so the
    /// control plane can never take the descriptors the data plane needs.
    pub max_connections: usize,
    /// A request's headers and body must arrive within this, from its first byte, and a
    /// response must be taken by the client within this: a half-sent request cannot hold a
    /// connection.
    pub request_timeout: HumanDuration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: HumanDuration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_connections: 512,
            request_timeout: HumanDuration::from_secs(10),
            idle_timeout: HumanDuration::from_secs(60),
        }
    }
}

/// `[pipeline]`: parse workers and the decoder's bounds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Parse worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Template and domain state not refreshed for this long is forgotten.
    pub template_timeout: HumanDuration,
    /// Exporter domains (address + source id / observation domain) tracked per worker.
    pub max_exporters: usize,
    pub max_templates_per_exporter: usize,
    /// Data sets held per exporter domain while their template is unknown.
    pub pending_sets_per_exporter: usize,
    pub pending_timeout: HumanDuration,
    pub pending_bytes: ByteSize,
    /// How often template caches are written to the state directory.
    pub template_save_interval: HumanDuration,
    /// Force a sampling interval for an exporter, whatever it announces.
    pub sampling_override: Vec<SamplingOverride>,
    /// Domains one exporter address may hold; past it its least useful ones are evicted.
    pub max_domains_per_address: usize,
    /// A domain with no templates is forgotten after this long without a datagram.
    pub idle_exporter_timeout: HumanDuration,
    /// When set, only these addresses or ranges are decoded; others are refused and counted.
    pub allowed_exporters: Vec<AllowedExporter>,
    /// What to do with a flow whose times are implausible: clamp, drop, or accept.
    pub time_policy: FlowTimePolicy,
    /// A flow time later than receive time + this is implausible.
    pub max_time_ahead: HumanDuration,
    /// A flow time earlier than receive time - this is implausible.
    pub max_time_behind: HumanDuration,
}

/// One entry of `allowed_exporters`: an address or `ADDRESS/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AllowedExporter(pub IpNet);

impl TryFrom<String> for AllowedExporter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(AllowedExporter)
    }
}

/// `time_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowTimePolicy {
    /// Replace an implausible time with the receive time.
    Clamp,
    /// Drop the record.
    Drop,
    /// Store any time (QuestDB's sink still drops rows it cannot store, counted).
    Accept,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let l = DecoderLimits::default();
        PipelineConfig {
            workers: 0,
            template_timeout: HumanDuration::from_millis(l.template_timeout_ms),
            max_exporters: l.max_domains,
            max_templates_per_exporter: l.max_templates_per_domain,
            pending_sets_per_exporter: l.pending_sets_per_domain,
            pending_timeout: HumanDuration::from_millis(l.pending_timeout_ms),
            pending_bytes: ByteSize(l.pending_bytes_total as u64),
            template_save_interval: HumanDuration::from_secs(60),
            sampling_override: Vec::new(),
            max_domains_per_address: l.max_domains_per_exporter,
            idle_exporter_timeout: HumanDuration::from_millis(l.idle_domain_timeout_ms),
            allowed_exporters: Vec::new(),
            time_policy: FlowTimePolicy::Clamp,
            max_time_ahead: HumanDuration::from_secs(3600),
            // Ten years back still takes replays of old captures; a clock that says 1970
            // (an exporter that lost its time) is caught.
            max_time_behind: HumanDuration::from_secs(3650 * 86_400),
        }
    }
}

impl PipelineConfig {
    pub fn decoder_limits(&self) -> DecoderLimits {
        DecoderLimits {
            max_domains: self.max_exporters,
            max_templates_per_domain: self.max_templates_per_exporter,
            template_timeout_ms: self.template_timeout.as_millis_u64(),
            pending_sets_per_domain: self.pending_sets_per_exporter,
            pending_bytes_total: self.pending_bytes.0 as usize,
            pending_timeout_ms: self.pending_timeout.as_millis_u64(),
            max_domains_per_exporter: self.max_domains_per_address,
            idle_domain_timeout_ms: self.idle_exporter_timeout.as_millis_u64(),
            allowed_exporters: self.allowed_exporters.iter().map(|a| a.0).collect(),
            time_bounds: {
                let policy = match self.time_policy {
                    FlowTimePolicy::Clamp => Some(TimePolicy::Clamp),
                    FlowTimePolicy::Drop => Some(TimePolicy::Drop),
                    FlowTimePolicy::Accept => None,
                };
                policy.map(|policy| TimeBounds {
                    max_future_ms: self.max_time_ahead.as_millis_u64(),
                    max_past_ms: self.max_time_behind.as_millis_u64(),
                    policy,
                })
            },
        }
    }

    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// `Err((key, message))` unless `lo <= value <= hi`.
pub(crate) fn check_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<(), (String, String)> {
    if value < lo || value > hi {
        return Err((
            key.to_string(),
            format!("must be between {lo} and {hi}{unit} (is {value}{unit})"),
        ));
    }
    Ok(())
}

/// [`check_range`] for durations, in milliseconds.
fn check_duration(
    key: &str,
    value: HumanDuration,
    lo: HumanDuration,
    hi: HumanDuration,
) -> Result<(), (String, String)> {
    check_range(
        key,
        value.as_millis_u64(),
        lo.as_millis_u64(),
        hi.as_millis_u64(),
        " ms",
    )
}

impl ControlConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        check_range("max_connections", self.max_connections, 1, 65_536, "")?;
        check_duration(
            "request_timeout",
            self.request_timeout,
            HumanDuration::from_millis(100),
            HumanDuration::from_secs(300),
        )?;
        check_duration(
            "idle_timeout",
            self.idle_timeout,
            HumanDuration::from_millis(100),
            HumanDuration::from_secs(3600),
        )
    }
}

impl PipelineConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        const DAY: HumanDuration = HumanDuration::from_secs(86_400);
        check_range("workers", self.workers, 0, 1024, "")?;
        check_duration(
            "template_timeout",
            self.template_timeout,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(30 * 86_400),
        )?;
        check_range("max_exporters", self.max_exporters, 1, 1 << 20, "")?;
        check_range(
            "max_templates_per_exporter",
            self.max_templates_per_exporter,
            1,
            65_536,
            "",
        )?;
        check_range(
            "pending_sets_per_exporter",
            self.pending_sets_per_exporter,
            0,
            65_536,
            "",
        )?;
        check_duration(
            "pending_timeout",
            self.pending_timeout,
            HumanDuration::from_millis(0),
            DAY,
        )?;
        check_range("pending_bytes", self.pending_bytes.0, 0, 1 << 30, " bytes")?;
        check_duration(
            "template_save_interval",
            self.template_save_interval,
            HumanDuration::from_secs(1),
            DAY,
        )?;
        check_range(
            "max_domains_per_address",
            self.max_domains_per_address,
            1,
            1 << 20,
            "",
        )?;
        check_duration(
            "idle_exporter_timeout",
            self.idle_exporter_timeout,
            HumanDuration::from_secs(1),
            DAY,
        )?;
        check_duration(
            "max_time_ahead",
            self.max_time_ahead,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(366 * 86_400),
        )?;
        // Up to 100 years back: more would reach before the Unix epoch for no gain.
        check_duration(
            "max_time_behind",
            self.max_time_behind,
            HumanDuration::from_secs(60),
            HumanDuration::from_secs(36_500 * 86_400),
        )?;
        for (i, o) in self.sampling_override.iter().enumerate() {
            check_range(
                &format!("sampling_override[{i}].interval"),
                o.interval,
                1,
                1 << 24,
                " (1 = unsampled)",
            )?;
        }
        Ok(())
    }
}

/// `[[pipeline.sampling_override]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingOverride {
    pub exporter: IpAddr,
    pub interval: u32,
}

/// `[sources]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub netflow: Vec<crate::sources::netflow::NetflowSourceConfig>,
    pub snmp: Option<crate::sources::snmp::SnmpSourceConfig>,
}

/// `[sinks]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    #[serde(default)]
    pub questdb: QuestDbConfig,
}

/// A config.toml that cannot be used, with where and why.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `sources.netflow[0].listen`.
    pub key: Option<String>,
    pub message: String,
    /// The offending line, for context.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(l), Some(src)) = (self.line, &self.source_line) {
            write!(f, "\n  {l} | {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Best-effort line of a dotted key: the line where its last segment is assigned inside the
/// table named by the others. Used for checks that run after parsing (no span available).
fn locate_key(text: &str, key: &str) -> Option<usize> {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let (last, table) = segments.split_last()?;
    let header = table.join(".");
    // `sources.netflow[1].x`: the second `[[sources.netflow]]` table, not the first.
    let wanted = key
        .rsplit_once('.')
        .and_then(|(t, _)| t.strip_suffix(']'))
        .and_then(|t| t.rsplit_once('['))
        .and_then(|(_, n)| n.parse::<usize>().ok())
        .unwrap_or(0);
    let mut seen = 0usize;
    let mut in_table = header.is_empty();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = name == header && (!t.starts_with("[[") || seen == wanted);
            if name == header && t.starts_with("[[") {
                seen += 1;
            }
            continue;
        }
        if in_table
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == *last
        {
            return Some(i + 1);
        }
    }
    None
}

/// `N` of a key that is exactly `processors[N]` (an error inside the table with no deeper path).
fn processor_index(key: &str) -> Option<usize> {
    key.strip_prefix("processors[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Externally tagged twin of [`ProcessorConfig`]: serde reads it without buffering, so errors
/// keep the key and span. One line per registered processor (a unit test checks them all).
#[derive(Deserialize)]
#[allow(dead_code)] // only its errors are used
enum ProcessorProbe {
    #[serde(rename = "rollup")]
    Rollup(nmsd_pipeline::processors::rollup::RollupConfig),
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ProcessorProbeDoc {
    probe: ProcessorProbe,
}

struct LocatedError {
    line: usize,
    column: Option<usize>,
    /// Path within the processor table, e.g. `.window`.
    key: String,
    message: String,
}

/// Re-read the `index`-th `[[processors]]` table as `[probe.<type>]` in a copy of the file
/// where every other line is blanked, so line numbers stay those of the real file.
fn locate_processor_error(text: &str, index: usize) -> Option<LocatedError> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let kind = doc
        .get("processors")?
        .as_array()?
        .get(index)?
        .get("type")?
        .as_str()?
        .to_string();
    // An unknown type is reported, with the registered names, by the first pass.
    if !ProcessorConfig::NAMES.contains(&kind.as_str()) {
        return None;
    }
    let mut shadow = String::with_capacity(text.len());
    let mut seen = 0usize;
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = false;
            if t.trim_start_matches('[').trim_end_matches(']').trim() == "processors"
                && t.starts_with("[[")
            {
                inside = seen == index;
                seen += 1;
                if inside {
                    shadow.push_str(&format!("[probe.{kind}]\n"));
                    continue;
                }
            }
        }
        let is_type = t.split_once('=').is_some_and(|(k, _)| k.trim() == "type");
        if inside && !is_type {
            shadow.push_str(line);
        }
        shadow.push('\n');
    }
    let de = toml::Deserializer::parse(&shadow).ok()?;
    let e = serde_path_to_error::deserialize::<_, ProcessorProbeDoc>(de).err()?;
    let path = e.path().to_string();
    let inner = e.into_inner();
    let (line, column) = line_col(&shadow, inner.span()?.start);
    let key = path
        .strip_prefix(&format!("probe.{kind}"))
        .unwrap_or("")
        .to_string();
    Some(LocatedError {
        line,
        column: Some(column),
        key,
        message: inner.message().to_string(),
    })
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, Box<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot read the config file: {e}"),
                source_line: None,
            })
        })?;
        let mut cfg = Self::parse(path, &text)?;
        // Secrets and addresses are checked here, not in `parse`: they need the environment.
        if let Some(s) = &cfg.sources.snmp
            && let Err((key, message)) = s.plan().and_then(|_| s.check_trap_secrets())
        {
            return Err(Box::new(ConfigError {
                file: path.to_path_buf(),
                line: locate_key(&text, &key),
                column: None,
                source_line: locate_key(&text, &key)
                    .and_then(|l| text.lines().nth(l - 1))
                    .map(str::to_string),
                key: Some(key),
                message,
            }));
        }
        cfg.resolve_paths(path);
        Ok(cfg)
    }

    /// Parse and check config text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Box<ConfigError>> {
        let err = |line: Option<usize>, column, key: Option<String>, message: String| {
            let source_line = line
                .and_then(|l| text.lines().nth(l - 1))
                .map(|s| s.to_string());
            ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key,
                message,
                source_line,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let (l, c) = e.span().map(|s| line_col(text, s.start)).unzip();
            err(l, c, None, e.message().to_string())
        })?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != "." && !key.is_empty()).then_some(key);
            let inner = e.into_inner();
            let (mut l, mut c) = inner.span().map(|s| line_col(text, s.start)).unzip();
            if l.is_none()
                && let Some(k) = &key
            {
                l = locate_key(text, k);
                c = None;
            }
            let mut message = inner.message().to_string();
            // A `[[processors]]` table is read through an internally tagged enum, which
            // buffers it and loses the key and span of a bad value: read that table again
            // through its variant's own type to point at the line.
            let mut key = key;
            if let Some(index) = key.as_deref().and_then(processor_index)
                && let Some(found) = locate_processor_error(text, index)
            {
                (l, c, message) = (Some(found.line), found.column, found.message);
                key = Some(format!("processors[{index}]{}", found.key));
            }
            if message.contains("unknown variant")
                && key.as_deref().is_some_and(|k| k.starts_with("processors"))
            {
                message.push_str(&format!(
                    " (registered processors: {})",
                    ProcessorConfig::NAMES.join(", ")
                ));
            }
            err(l, c, key, message)
        })?;
        cfg.validate()
            .map_err(|(key, message)| err(locate_key(text, &key), None, Some(key), message))?;
        Ok(cfg)
    }

    /// Checks that span several keys or need more than a type. Every numeric key has a range:
    /// a value `run` cannot use (a capacity it cannot allocate, a zero-length window) is refused
    /// here, with its key, rather than panicking or aborting at start.
    fn validate(&self) -> Result<(), (String, String)> {
        let q = &self.sinks.questdb;
        if q.enabled {
            q.validate()
                .map_err(|m| ("sinks.questdb.url".to_string(), m))?;
            q.validate_ranges()
                .map_err(|(k, m)| (format!("sinks.questdb.{k}"), m))?;
        }
        self.control
            .validate()
            .map_err(|(k, m)| (format!("control.{k}"), m))?;
        self.pipeline
            .validate()
            .map_err(|(k, m)| (format!("pipeline.{k}"), m))?;
        for (i, p) in self.processors.iter().enumerate() {
            match p {
                ProcessorConfig::Rollup(r) => r
                    .validate()
                    .map_err(|(k, m)| (format!("processors[{i}].{k}"), m))?,
            }
        }
        if self.sources.netflow.len() > 256 {
            return Err((
                "sources.netflow".into(),
                "at most 256 netflow sources (one listener can take any number of exporters)"
                    .into(),
            ));
        }
        let mut names = Vec::new();
        let mut listens = Vec::new();
        for (i, s) in self.sources.netflow.iter().enumerate() {
            s.validate()
                .map_err(|(k, m)| (format!("sources.netflow[{i}].{k}"), m))?;
            if listens.contains(&s.listen) {
                return Err((
                    format!("sources.netflow[{i}].listen"),
                    format!("{} is used by another netflow source", s.listen),
                ));
            }
            listens.push(s.listen);
            // Rows carry the source's name: two sources of one name could not be told apart.
            if names.contains(&&s.name) {
                return Err((
                    format!("sources.netflow[{i}].name"),
                    format!(
                        "\"{}\" is the name of another netflow source; give each its own",
                        s.name
                    ),
                ));
            }
            names.push(&s.name);
        }
        if let Some(s) = &self.sources.snmp {
            s.validate()?;
        }
        Ok(())
    }

    /// Make relative paths relative to the config file's folder, not the working directory
    /// (which differs between a shell and systemd).
    fn resolve_paths(&mut self, config_path: &Path) {
        if self.general.state_dir.as_os_str().is_empty() {
            self.general.state_dir = default_state_dir();
        }
        if self.general.state_dir.is_relative() {
            let base = config_path.parent().unwrap_or(Path::new("."));
            self.general.state_dir = base.join(&self.general.state_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, Box<ConfigError>> {
        Config::parse(Path::new("test.toml"), t)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("[general]\nstate_dir = \"x\"\nlog_levle = \"info\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let s = e.to_string();
        assert!(s.contains("test.toml:3"), "{s}");
        assert!(s.contains("log_levle"), "{s}");
        assert!(s.contains("log_level"), "should list allowed keys: {s}");
    }

    #[test]
    fn bad_value_names_key_and_allowed_values() {
        let e = parse("[general]\nlog_level = \"loud\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("general.log_level"));
        assert!(e.to_string().contains("info"), "{e}");
    }

    #[test]
    fn bad_duration_explains_units() {
        let e = parse("[pipeline]\ntemplate_timeout = \"10\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("units"), "{e}");
    }

    #[test]
    fn unknown_processor_lists_registered_ones() {
        let e = parse("[[processors]]\ntype = \"nope\"\n").unwrap_err();
        assert!(e.to_string().contains("rollup"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn processor_unknown_key_is_refused() {
        let e = parse("[[processors]]\ntype = \"rollup\"\nwindwo = \"1m\"\n").unwrap_err();
        assert!(e.to_string().contains("windwo"), "{e}");
    }

    #[test]
    fn semantic_error_is_located() {
        let e = parse("[sinks.questdb]\nurl = \"https://x\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("sinks.questdb.url"));
    }

    #[test]
    fn bad_snmp_tag_is_located() {
        let base = "[sources.snmp]\n[[sources.snmp.profiles]]\nname = \"p\"\nversion = \"2c\"\n\
                    community = { env = \"C\" }\n[[sources.snmp.devices]]\nname = \"r1\"\n\
                    address = \"127.0.0.1\"\nprofile = \"p\"\n";
        assert!(
            parse(&format!(
                "{base}tags = {{ site = \"ams1\", rack_2 = \"b\" }}\n"
            ))
            .is_ok()
        );
        let e = parse(&format!("{base}tags = {{ Site = \"ams1\" }}\n")).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("sources.snmp.devices[0].tags.Site"),
            "{e}"
        );
        assert!(e.to_string().contains("lowercase"), "{e}");
        let e = parse(&format!("{base}tags = {{ site = \"\" }}\n")).unwrap_err();
        assert!(e.to_string().contains("1 to 256"), "{e}");
    }

    #[test]
    fn bad_processor_duration_points_at_its_line() {
        let e = parse(
            "[general]\nlog_level = \"info\"\n\n[[processors]]\ntype = \"rollup\"\n\
             flush_delay = \"0s\"\nwindow = \"1x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.key.as_deref(), Some("processors[0].window"), "{e}");
        assert!(e.to_string().contains("window = \"1x\""), "{e}");
        // The second table of two.
        let e = parse(
            "[[processors]]\ntype = \"rollup\"\n[[processors]]\ntype = \"rollup\"\n\
             max_keys = \"many\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("processors[1].max_keys"), "{e}");
    }

    #[test]
    fn a_range_error_in_the_second_of_two_tables_points_at_that_table() {
        let e = parse(
            "[[sources.netflow]]\nlisten = \"127.0.0.1:2055\"\nring_capacity = 8\n\
             [[sources.netflow]]\nlisten = \"127.0.0.1:4739\"\nring_capacity = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sources.netflow[1].ring_capacity"));
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn every_registered_processor_has_a_probe() {
        for name in ProcessorConfig::NAMES {
            let text = format!("[probe.{name}]\n");
            let r: Result<ProcessorProbeDoc, _> = toml::from_str(&text);
            assert!(r.is_ok(), "add {name} to ProcessorProbe");
        }
    }

    #[test]
    fn numeric_keys_out_of_range_are_refused_with_their_key() {
        for (text, key) in [
            (
                "[sinks.questdb]\nqueue_capacity = 9223372036854775807\n",
                "sinks.questdb.queue_capacity",
            ),
            (
                "[[sources.netflow]]\nlisten = \"127.0.0.1:2055\"\nring_capacity = 9223372036854775807\n",
                "sources.netflow[0].ring_capacity",
            ),
            (
                "[[processors]]\ntype = \"rollup\"\nwindow = \"0s\"\n",
                "processors[0].window",
            ),
            (
                "[sinks.questdb]\nrollup_table = \"flows\"\n",
                "sinks.questdb.rollup_table",
            ),
            (
                "[sinks.questdb]\ntable_prefix = \"x_\"\nflows_table = \"f\"\nrollup_table = \"F\"\n",
                "sinks.questdb.rollup_table",
            ),
            (
                "[sinks.questdb]\nretry_max = \"1ms\"\n",
                "sinks.questdb.retry_max",
            ),
            ("[pipeline]\nworkers = 100000\n", "pipeline.workers"),
            (
                "[pipeline]\ntemplate_save_interval = \"0s\"\n",
                "pipeline.template_save_interval",
            ),
            (
                "[control]\nmax_connections = 0\n",
                "control.max_connections",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    /// The keys serde allows in the table at `header` (from the unknown-field error, which lists
    /// them), by inserting a probe key under that header.
    fn allowed_keys(shipped: &str, header: &str) -> Vec<String> {
        let probed = shipped.replacen(
            &format!("{header}\n"),
            &format!("{header}\nzz_probe = 0\n"),
            1,
        );
        let e = parse(&probed).unwrap_err().to_string();
        let list = e
            .split_once("expected ")
            .map(|(_, l)| l)
            .unwrap_or_else(|| panic!("no key list for {header}: {e}"));
        // "`a`, `b` or `c`": every other backtick-separated piece is a key.
        list.lines()
            .next()
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn shipped_config_shows_every_key_with_its_default() {
        let shipped = include_str!("../../config.toml");
        let cfg = parse(shipped).unwrap();
        assert_eq!(cfg.general, GeneralConfig::default(), "[general]");
        assert_eq!(cfg.control, ControlConfig::default(), "[control]");
        assert_eq!(cfg.pipeline, PipelineConfig::default(), "[pipeline]");
        assert_eq!(
            cfg.sinks.questdb,
            QuestDbConfig::default(),
            "[sinks.questdb]"
        );
        let minimal = parse(
            "[[sources.netflow]]\nlisten = \"0.0.0.0:2055\"\n[[processors]]\ntype = \"rollup\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.sources.netflow, minimal.sources.netflow,
            "[[sources.netflow]]"
        );
        assert_eq!(cfg.processors, minimal.processors, "[[processors]]");

        // Every key is written out, as a setting or (for keys whose default is unset or
        // environment-dependent, and example tables) as a commented line.
        for header in [
            "[general]",
            "[control]",
            "[pipeline]",
            "[[sources.netflow]]",
            "[sinks.questdb]",
        ] {
            let keys = allowed_keys(shipped, header);
            assert!(keys.len() > 1, "{header}: {keys:?}");
            for k in keys {
                let shown = shipped.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.split_once('=').is_some_and(|(name, _)| name.trim() == k)
                        || l.starts_with(&format!("[[pipeline.{k}]]"))
                });
                assert!(shown, "{header} {k} is not in the shipped config.toml");
            }
        }
    }

    #[test]
    fn state_dir_defaults_to_systemds_state_directory() {
        // Only this test touches STATE_DIRECTORY in this process.
        // SAFETY: no other thread of this test binary reads or writes this variable.
        unsafe { std::env::set_var("STATE_DIRECTORY", "/var/lib/private/nmsd:/other") };
        assert_eq!(default_state_dir(), PathBuf::from("/var/lib/private/nmsd"));
        let dir = std::env::temp_dir().join(format!("nmsd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[general]\nlog_level = \"info\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.general.state_dir, PathBuf::from("/var/lib/private/nmsd"));
        // Set explicitly, relative: next to the config file, whatever the environment.
        std::fs::write(&path, "[general]\nstate_dir = \"st\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.general.state_dir, dir.join("st"));
        // SAFETY: as above.
        unsafe { std::env::remove_var("STATE_DIRECTORY") };
        assert!(default_state_dir().is_absolute());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("[general\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
