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
    /// Where template caches are kept. Relative paths are relative to the config file.
    pub state_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub log_level: LogLevel,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            state_dir: PathBuf::from("/var/lib/nmsd"),
            log_level: LogLevel::Info,
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
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
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
    let mut in_table = header.is_empty();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = name == header;
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

    /// Checks that span several keys or need more than a type.
    fn validate(&self) -> Result<(), (String, String)> {
        let q = &self.sinks.questdb;
        if q.enabled {
            q.validate()
                .map_err(|m| ("sinks.questdb.url".to_string(), m))?;
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
        if self.pipeline.max_exporters == 0 || self.pipeline.max_templates_per_exporter == 0 {
            return Err((
                "pipeline.max_exporters".into(),
                "max_exporters and max_templates_per_exporter must be at least 1".into(),
            ));
        }
        if self.pipeline.max_domains_per_address == 0 {
            return Err((
                "pipeline.max_domains_per_address".into(),
                "must be at least 1".into(),
            ));
        }
        for o in &self.pipeline.sampling_override {
            if o.interval == 0 {
                return Err((
                    "pipeline.sampling_override.interval".into(),
                    "interval must be at least 1 (1 = unsampled)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Make relative paths relative to the config file's folder, not the working directory
    /// (which differs between a shell and systemd).
    fn resolve_paths(&mut self, config_path: &Path) {
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
    fn syntax_error_has_position() {
        let e = parse("[general\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
