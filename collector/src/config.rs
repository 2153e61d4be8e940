//! config.toml: structure, defaults, loading and errors that point at the line.
//!
//! Every table denies unknown keys, so a typo is an error, not a silently ignored setting. Each
//! component's own settings live beside the component (`QuestDbConfig` in `nmsd-sinks`,
//! `RollupConfig` in `nmsd-pipeline`); this file reads `[sources.<id>]`, `[processors.<id>]`
//! and `[sinks.<id>]` through the [`Registry`] by their `type`, and checks the wiring of their
//! `inputs` (no dangling id, no cycle, every stream routed somewhere that can take it).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use nmsd_parsers::{DecoderLimits, IpNet, TimeBounds, TimePolicy};
use nmsd_pipeline::component::{ComponentKind, Placement, ProcessorSpec, SinkSpec};
use nmsd_pipeline::stream::StreamSet;
use nmsd_pipeline::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::registry::Registry;
use crate::sources::SourceSpec;

/// One configured component: `[<kind>.<id>] type = "..." inputs = [...]`.
#[derive(Debug)]
pub struct Component<S: ?Sized> {
    pub id: String,
    pub type_name: String,
    /// Ids of the sources and processors whose output it takes (empty for sources).
    pub inputs: Vec<String>,
    pub spec: Arc<S>,
}

impl<S: ?Sized> Clone for Component<S> {
    fn clone(&self) -> Self {
        Component {
            id: self.id.clone(),
            type_name: self.type_name.clone(),
            inputs: self.inputs.clone(),
            spec: self.spec.clone(),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub general: GeneralConfig,
    pub control: ControlConfig,
    pub pipeline: PipelineConfig,
    /// In the file's id order (sorted).
    pub sources: Vec<Component<dyn SourceSpec>>,
    /// In topological order: a processor comes after every processor it takes input from.
    pub processors: Vec<Component<dyn ProcessorSpec>>,
    pub sinks: Vec<Component<dyn SinkSpec>>,
}

impl Config {
    /// The NetFlow/IPFIX listeners, in order: a flow record's `source` is the position here.
    pub fn flow_sources(
        &self,
    ) -> impl Iterator<Item = (&str, &crate::sources::netflow::NetflowSourceConfig)> {
        self.sources
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.spec.as_flow_listener()?)))
    }

    /// Every component's kind, id and type: sources, then processors, then sinks.
    pub fn components(&self) -> Vec<(ComponentKind, String, String)> {
        fn each<S: ?Sized>(
            k: ComponentKind,
            cs: &[Component<S>],
        ) -> impl Iterator<Item = (ComponentKind, String, String)> + '_ {
            cs.iter()
                .map(move |c| (k, c.id.clone(), c.type_name.clone()))
        }
        each(ComponentKind::Source, &self.sources)
            .chain(each(ComponentKind::Processor, &self.processors))
            .chain(each(ComponentKind::Sink, &self.sinks))
            .collect()
    }

    /// The longest `shutdown_timeout` of the sinks (10 s with none).
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        self.sinks
            .iter()
            .map(|s| s.spec.shutdown_timeout())
            .max()
            .unwrap_or(std::time::Duration::from_secs(10))
    }
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
    /// How NetFlow datagrams reach a parse worker: "ring" (a receive thread per socket hands
    /// batches to a worker thread) or "inline" (each socket's thread decodes and runs the
    /// processors itself).
    pub receive: ReceiveMode,
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
    /// Batches queued for the global stage (processors that see every worker and source).
    pub global_queue_capacity: usize,
    /// Bytes those batches may weigh; raw flows give way first (as in the sink queues).
    pub global_queue_max_bytes: nmsd_pipeline::units::ByteSize,
    /// What workers and sources do when that queue is full: "block" or "drop" (counted).
    pub global_queue_full_policy: nmsd_pipeline::FullPolicy,
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

/// `[pipeline] receive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiveMode {
    /// Receive threads hand batches over rings to parse worker threads.
    Ring,
    /// Each socket's thread is its parse worker (run to completion).
    Inline,
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
            receive: ReceiveMode::Ring,
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
            global_queue_capacity: 1024,
            global_queue_max_bytes: nmsd_pipeline::units::ByteSize(64 << 20),
            global_queue_full_policy: nmsd_pipeline::FullPolicy::Block,
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
        // crossbeam allocates the whole queue at start.
        check_range(
            "global_queue_capacity",
            self.global_queue_capacity,
            1,
            1_000_000,
            "",
        )?;
        check_range(
            "global_queue_max_bytes",
            self.global_queue_max_bytes.0,
            1 << 20,
            64 << 30,
            "",
        )?;
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
    // A key that is missing is located at its table's header, or at the table it would be.
    let mut header_line = None;
    let whole = format!("{header}.{last}");
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            if header_line.is_none() && (name == header || name == whole) {
                header_line = Some(i + 1);
            }
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
    // A key inside an inline table (`buffer = { max_size = ... }`) is on its parent's line.
    header_line.or_else(|| {
        key.rsplit_once('.')
            .and_then(|(parent, _)| locate_key(text, parent))
    })
}

/// A parse error before the whole file is read: key and where.
struct Located {
    key: String,
    message: String,
    line_col: Option<(usize, usize)>,
}

impl Located {
    fn new(text: &str, key: String, span: Option<std::ops::Range<usize>>, message: String) -> Self {
        Located {
            line_col: span.as_ref().map(|s| line_col(text, s.start)),
            key,
            message,
        }
    }

    fn into<E>(
        self,
        err: &impl Fn(Option<usize>, Option<usize>, Option<String>, String) -> E,
    ) -> E {
        let (l, c) = self.line_col.unzip();
        err(l, c, Some(self.key), self.message)
    }
}

/// `sinks.x.inputs` names nothing.
fn dangling(kind: &str, id: &str, input: &str, all: &[&str]) -> (String, String) {
    (
        format!("{kind}.{id}.inputs"),
        format!(
            "\"{input}\" is not the id of any source or processor (ids: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.join(", ")
            }
        ),
    )
}

/// Deserialize one plain section (`[general]`, ...) with its errors located.
fn section<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
    value: Spanned<DeValue<'_>>,
) -> Result<T, Located> {
    serde_path_to_error::deserialize(ValueDeserializer::from(value))
        .map_err(|e| located(text, name, e, None))
}

/// A table's parse error, keyed `<table>.<path inside it>` and placed at the bad value (or at
/// `fallback`, the table, when serde gives no span).
fn located(
    text: &str,
    table: &str,
    e: crate::registry::ParseError,
    fallback: Option<std::ops::Range<usize>>,
) -> Located {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let key = if path.is_empty() || path == "." {
        table.to_string()
    } else {
        format!("{table}.{path}")
    };
    Located::new(
        text,
        key,
        inner.span().or(fallback),
        inner.message().to_string(),
    )
}

/// Parse one component's table with the registry entry of its type.
fn component<T: ?Sized>(
    parsers: &std::collections::BTreeMap<&'static str, crate::registry::ParseFn<T>>,
    de: ValueDeserializer<'_>,
    (id, type_name, inputs): (String, String, Vec<String>),
    unknown: impl FnOnce() -> Located,
    located: impl FnOnce(crate::registry::ParseError) -> Located,
) -> Result<Component<T>, Located> {
    let parse = parsers.get(type_name.as_str()).ok_or_else(unknown)?;
    Ok(Component {
        spec: parse(de).map_err(located)?,
        id,
        type_name,
        inputs,
    })
}

/// How an old (before components by id) table is rewritten, for the error that refuses it.
fn old_shape_hint(kind: ComponentKind, id: Option<&str>) -> String {
    match (kind, id) {
        (ComponentKind::Processor, None) => {
            "`[[processors]]` is the old shape: each processor is now a table named by \
             its id, with its type and inputs, e.g. `[processors.rollup]` `type = \"rollup\"` \
             `inputs = [\"netflow\"]` (see the shipped config.toml)"
                .into()
        }
        (ComponentKind::Source, Some(t)) => format!(
            "`[[sources.{t}]]` is the old shape: each source is now a table named by its id \
             (the old `name`), with its type, e.g. `[sources.{t}]` `type = \"{t}\"` (see the \
             shipped config.toml)"
        ),
        (k, _) => format!(
            "[{}] holds one table per component, named by its id: `[{}.<id>]` with \
             `type = \"...\"`",
            k.table(),
            k.table()
        ),
    }
}

/// Read `[sources.<id>]`, `[processors.<id>]` or `[sinks.<id>]` tables into `cfg`.
fn read_components(
    text: &str,
    kind: ComponentKind,
    value: Spanned<DeValue<'_>>,
    registry: &Registry,
    cfg: &mut Config,
) -> Result<(), Located> {
    let table_name = kind.table();
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        return Err(Located::new(
            text,
            table_name.into(),
            Some(span),
            old_shape_hint(kind, None),
        ));
    };
    for (id, value) in table {
        let id = id.into_inner().to_string();
        let key = format!("{table_name}.{id}");
        let span = value.span();
        let DeValue::Table(fields) = value.into_inner() else {
            return Err(Located::new(
                text,
                key,
                Some(span),
                old_shape_hint(kind, Some(&id)),
            ));
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Located::new(
                text,
                key,
                Some(span),
                "an id is letters, digits, _ and - (it names the component in metrics and inputs)"
                    .into(),
            ));
        }
        let mut type_name = None;
        let mut inputs = None;
        let mut rest = DeTable::default();
        for (k, v) in fields {
            match k.get_ref().as_ref() {
                "type" => type_name = Some(v),
                "inputs" => inputs = Some(v),
                _ => {
                    rest.insert(k, v);
                }
            }
        }
        let names = registry.names(kind);
        let Some(type_value) = type_name else {
            let hint = match (kind, id.as_str()) {
                (ComponentKind::Sink, "questdb") => " (since components are named by id, a sink says its type and what it \
                     stores: add `type = \"questdb\"` and `inputs = [\"<source or processor id>\", ...]`; \
                     list the netflow source to store raw flows, as `raw_flows = true` did, and drop \
                     `enabled`/`raw_flows`)"
                    .to_string(),
                (ComponentKind::Source, "snmp") => {
                    " (add `type = \"snmp\"`: sources are now named by id)".to_string()
                }
                _ => String::new(),
            };
            return Err(Located::new(
                text,
                format!("{key}.type"),
                Some(span),
                format!("missing `type`: one of {}{hint}", names.join(", ")),
            ));
        };
        let type_span = type_value.span();
        let Some(type_str) = type_value.get_ref().as_str().map(str::to_string) else {
            return Err(Located::new(
                text,
                format!("{key}.type"),
                Some(type_span),
                "`type` must be a string".into(),
            ));
        };
        let unknown = || {
            Located::new(
                text,
                format!("{key}.type"),
                Some(type_span.clone()),
                format!(
                    "unknown {} type \"{type_str}\" (registered: {})",
                    kind.name(),
                    names.join(", ")
                ),
            )
        };
        let inputs: Vec<String> = match inputs {
            None => Vec::new(),
            Some(v) if kind == ComponentKind::Source => {
                return Err(Located::new(
                    text,
                    format!("{key}.inputs"),
                    Some(v.span()),
                    "a source takes no inputs".into(),
                ));
            }
            Some(v) => {
                let vspan = v.span();
                let bad = || {
                    Located::new(
                        text,
                        format!("{key}.inputs"),
                        Some(vspan.clone()),
                        "inputs must be a list of ids, e.g. [\"netflow\"]".into(),
                    )
                };
                let arr = v.get_ref().as_array().ok_or_else(bad)?;
                arr.iter()
                    .map(|e| e.get_ref().as_str().map(str::to_string).ok_or_else(bad))
                    .collect::<Result<_, _>>()?
            }
        };
        let de = ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(rest)));
        let located = |e| located(text, &key, e, Some(span.clone()));
        let what = (id, type_str.clone(), inputs);
        match kind {
            ComponentKind::Source => {
                cfg.sources
                    .push(component(&registry.sources, de, what, unknown, located)?)
            }
            ComponentKind::Processor => {
                cfg.processors
                    .push(component(&registry.processors, de, what, unknown, located)?)
            }
            ComponentKind::Sink => {
                cfg.sinks
                    .push(component(&registry.sinks, de, what, unknown, located)?)
            }
        }
    }
    Ok(())
}

impl Config {
    /// Read and check a config file with the built-in components.
    pub fn load(path: &Path) -> Result<Config, Box<ConfigError>> {
        Self::load_with(path, &Registry::builtin())
    }

    /// Read and check a config file with the components of `registry`.
    pub fn load_with(path: &Path, registry: &Registry) -> Result<Config, Box<ConfigError>> {
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
        let mut cfg = Self::parse_with(path, &text, registry)?;
        // Secrets and addresses are checked here, not in `parse`: they need the environment.
        for c in &cfg.sources {
            if let Err((key, message)) = c.spec.check_environment() {
                let key = format!("sources.{}.{key}", c.id);
                let line = locate_key(&text, &key);
                return Err(Box::new(ConfigError {
                    file: path.to_path_buf(),
                    line,
                    column: None,
                    source_line: line
                        .and_then(|l| text.lines().nth(l - 1))
                        .map(str::to_string),
                    key: Some(key),
                    message,
                }));
            }
        }
        cfg.resolve_paths(path);
        Ok(cfg)
    }

    /// Parse and check config text with the built-in components; `path` is only used in
    /// error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Box<ConfigError>> {
        Self::parse_with(path, text, &Registry::builtin())
    }

    pub fn parse_with(
        path: &Path,
        text: &str,
        registry: &Registry,
    ) -> Result<Config, Box<ConfigError>> {
        let err = |line: Option<usize>, column, key: Option<String>, message: String| {
            let source_line = line
                .and_then(|l| text.lines().nth(l - 1))
                .map(|s| s.to_string());
            Box::new(ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key,
                message,
                source_line,
            })
        };
        let at = |span: std::ops::Range<usize>, key: String, message: String| {
            let (l, c) = line_col(text, span.start);
            err(Some(l), Some(c), Some(key), message)
        };
        let root = DeTable::parse(text).map_err(|e| {
            let (l, c) = e.span().map(|s| line_col(text, s.start)).unzip();
            err(l, c, None, e.message().to_string())
        })?;
        let mut cfg = Config::default();
        for (name, value) in root.into_inner() {
            let name_span = name.span();
            let name = name.into_inner().to_string();
            match name.as_str() {
                "general" => cfg.general = section(text, &name, value).map_err(|e| e.into(&err))?,
                "control" => cfg.control = section(text, &name, value).map_err(|e| e.into(&err))?,
                "pipeline" => {
                    cfg.pipeline = section(text, &name, value).map_err(|e| e.into(&err))?
                }
                "sources" | "processors" | "sinks" => {
                    let kind = match name.as_str() {
                        "sources" => ComponentKind::Source,
                        "processors" => ComponentKind::Processor,
                        _ => ComponentKind::Sink,
                    };
                    read_components(text, kind, value, registry, &mut cfg)
                        .map_err(|e| e.into(&err))?;
                }
                other => {
                    return Err(at(
                        name_span,
                        other.to_string(),
                        format!(
                            "unknown section `{other}`, expected one of `general`, `control`, \
                             `pipeline`, `sources`, `processors`, `sinks`"
                        ),
                    ));
                }
            }
        }
        cfg.validate()
            .and_then(|()| cfg.wire())
            .map_err(|(key, message)| err(locate_key(text, &key), None, Some(key), message))?;
        Ok(cfg)
    }

    /// Checks that span several keys or need more than a type. Every numeric key has a range:
    /// a value `run` cannot use (a capacity it cannot allocate, a zero-length window) is refused
    /// here, with its key, rather than panicking or aborting at start.
    fn validate(&self) -> Result<(), (String, String)> {
        self.control
            .validate()
            .map_err(|(k, m)| (format!("control.{k}"), m))?;
        self.pipeline
            .validate()
            .map_err(|(k, m)| (format!("pipeline.{k}"), m))?;
        for c in &self.sources {
            c.spec
                .validate()
                .map_err(|(k, m)| (format!("sources.{}.{k}", c.id), m))?;
        }
        for c in &self.processors {
            c.spec
                .validate()
                .map_err(|(k, m)| (format!("processors.{}.{k}", c.id), m))?;
        }
        for c in &self.sinks {
            c.spec
                .validate()
                .map_err(|(k, m)| (format!("sinks.{}.{k}", c.id), m))?;
        }
        // Rows carry the device name: two polling sources must not name two devices alike.
        let mut devices: Vec<(&str, &str)> = Vec::new();
        for c in &self.sources {
            let any: &dyn std::any::Any = &*c.spec;
            let Some(snmp) = any.downcast_ref::<crate::sources::snmp::SnmpSourceConfig>() else {
                continue;
            };
            for (i, d) in snmp.devices.iter().enumerate() {
                if let Some((other, _)) = devices.iter().find(|(_, n)| *n == d.name) {
                    return Err((
                        format!("sources.{}.devices[{i}].name", c.id),
                        format!(
                            "device \"{}\" is also polled by source \"{other}\"; device names \
                             label rows and must be unique",
                            d.name
                        ),
                    ));
                }
                devices.push((&c.id, &d.name));
            }
        }
        for (table, comps) in [
            (
                "processors",
                self.processors
                    .iter()
                    .map(|c| (&c.id, &c.inputs))
                    .collect::<Vec<_>>(),
            ),
            (
                "sinks",
                self.sinks.iter().map(|c| (&c.id, &c.inputs)).collect(),
            ),
        ] {
            for (id, inputs) in comps {
                if let Some((k, i)) = inputs
                    .iter()
                    .enumerate()
                    .find(|(k, i)| inputs[..*k].contains(i))
                {
                    return Err((
                        format!("{table}.{id}.inputs"),
                        format!(
                            "\"{i}\" is listed twice (position {k}); each batch would be taken twice"
                        ),
                    ));
                }
            }
        }
        let flows: Vec<_> = self.flow_sources().collect();
        if flows.len() > 256 {
            return Err((
                "sources".into(),
                "at most 256 netflow sources (one listener can take any number of exporters)"
                    .into(),
            ));
        }
        for (i, (id, s)) in flows.iter().enumerate() {
            if let Some((other, _)) = flows[..i].iter().find(|(_, o)| o.listen == s.listen) {
                return Err((
                    format!("sources.{id}.listen"),
                    format!("{} is used by netflow source \"{other}\"", s.listen),
                ));
            }
        }
        Ok(())
    }

    /// Check how components are wired and put processors in topological order: every input
    /// names a source or processor, there is no cycle, every processor gets a stream it takes,
    /// every sink only streams it can store, and a per-worker processor only flows.
    fn wire(&mut self) -> Result<(), (String, String)> {
        let mut ids: Vec<(&str, String)> = Vec::new();
        for (kind, id, _) in self.components() {
            let kind = kind.table();
            if let Some((other, _)) = ids.iter().find(|(_, i)| *i == id) {
                return Err((
                    format!("{kind}.{id}"),
                    format!(
                        "the id \"{id}\" is also used in [{other}]; ids are what inputs refer to, \
                         so every component needs its own"
                    ),
                ));
            }
            ids.push((kind, id));
        }
        // What an input may name: sources and processors.
        let all: Vec<String> = ids
            .iter()
            .filter(|(k, _)| *k != "sinks")
            .map(|(_, i)| i.clone())
            .collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        // Streams each source or processor offers, and whether a per-worker processor may
        // take from it: listeners feed the parse workers, and a source that builds flows
        // itself runs its own instances of per-worker processors.
        let mut offers: std::collections::HashMap<String, (StreamSet, bool)> = self
            .sources
            .iter()
            .map(|c| {
                let per_worker = c.spec.as_flow_listener().is_some() || c.spec.flow_source();
                (c.id.clone(), (c.spec.outputs(), per_worker))
            })
            .collect();
        let mut pending: Vec<Component<dyn ProcessorSpec>> = std::mem::take(&mut self.processors);
        let mut ordered = Vec::new();
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|p| p.inputs.iter().all(|i| offers.contains_key(i)));
            let Some(ready) = ready else {
                // Either an input names nothing, or the rest wait on each other.
                for p in &pending {
                    for i in &p.inputs {
                        if !all.contains(&i.as_str()) {
                            return Err(dangling("processors", &p.id, i, &all));
                        }
                        if self.sinks.iter().any(|s| &s.id == i) {
                            return Err((
                                format!("processors.{}.inputs", p.id),
                                format!("\"{i}\" is a sink; inputs name sources and processors"),
                            ));
                        }
                    }
                }
                let cycle: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
                return Err((
                    format!("processors.{}.inputs", pending[0].id),
                    format!(
                        "processors {} take input from each other in a cycle; a batch would \
                         never leave it",
                        cycle.join(", ")
                    ),
                ));
            };
            let p = pending.remove(ready);
            let mut offered = StreamSet::EMPTY;
            let mut per_worker_inputs = true;
            for i in &p.inputs {
                let (s, w) = offers[i];
                offered = offered.union(s);
                per_worker_inputs &= w;
            }
            let accepts = p.spec.accepts();
            let key = format!("processors.{}.inputs", p.id);
            if p.inputs.is_empty() {
                return Err((
                    key,
                    "a processor needs inputs = [\"<source or processor id>\", ...]".into(),
                ));
            }
            if offered.intersection(accepts).is_empty() {
                return Err((
                    key,
                    format!(
                        "\"{}\" ({}) takes {}, but its inputs offer {}",
                        p.id,
                        p.type_name,
                        accepts.names(),
                        offered.names()
                    ),
                ));
            }
            let worker = p.spec.placement() == Placement::Worker;
            if worker && !per_worker_inputs {
                return Err((
                    key,
                    format!(
                        "\"{}\" ({}) runs next to the flow decoder, so it can only take flow \
                         sources (netflow, sflow, capture, pcap_file) and other per-worker \
                         processors as inputs",
                        p.id, p.type_name
                    ),
                ));
            }
            if p.spec.flow_view().is_some() && worker {
                return Err((
                    key,
                    format!("\"{}\" asks for a keyed view but runs per worker", p.id),
                ));
            }
            let out = p.spec.outputs(offered.intersection(accepts));
            offers.insert(p.id.clone(), (out, worker));
            ordered.push(p);
        }
        self.processors = ordered;
        for s in &self.sinks {
            let key = format!("sinks.{}.inputs", s.id);
            if s.inputs.is_empty() {
                return Err((
                    key,
                    "a sink needs inputs = [\"<source or processor id>\", ...]: what it stores"
                        .into(),
                ));
            }
            for i in &s.inputs {
                let Some((offered, _)) = offers.get(i) else {
                    if self.sinks.iter().any(|o| &o.id == i) {
                        return Err((
                            key,
                            format!("\"{i}\" is a sink; inputs name sources and processors"),
                        ));
                    }
                    return Err(dangling("sinks", &s.id, i, &all));
                };
                // A pass-through processor and its own input in one sink: the same rows twice
                // (e.g. `rollup` and `interface_names` after it).
                if let Some(p) = self.processors.iter().find(|p| &p.id == i) {
                    for pi in &p.inputs {
                        let twice = offers
                            .get(pi)
                            .map(|(o, _)| o.intersection(*offered))
                            .unwrap_or_default();
                        if s.inputs.contains(pi) && !twice.is_empty() {
                            return Err((
                                key,
                                format!(
                                    "\"{i}\" passes on {} from \"{pi}\", which this sink also \
                                     takes: every row would be stored twice; keep only \"{i}\"",
                                    twice.names()
                                ),
                            ));
                        }
                    }
                }
                let refused = offered.without(s.spec.accepts());
                if !refused.is_empty() {
                    return Err((
                        key,
                        format!(
                            "\"{i}\" emits {}, which sink \"{}\" ({}) cannot store (it takes {})",
                            refused.names(),
                            s.id,
                            s.type_name,
                            s.spec.accepts().names()
                        ),
                    ));
                }
            }
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

    const NETFLOW: &str = "[sources.nf]\ntype = \"netflow\"\nlisten = \"127.0.0.1:2055\"\n";

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.general, GeneralConfig::default());
        assert_eq!(c.pipeline, PipelineConfig::default());
        assert!(c.sources.is_empty() && c.processors.is_empty() && c.sinks.is_empty());
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
        let e = parse(&format!(
            "{NETFLOW}[processors.x]\ntype = \"nope\"\ninputs = [\"nf\"]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rollup"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("processors.x.type"), "{e}");
    }

    #[test]
    fn processor_unknown_key_is_refused() {
        let e = parse(&format!(
            "{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\nwindwo = \"1m\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("windwo"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn semantic_error_is_located() {
        let e = parse(&format!(
            "{NETFLOW}[sinks.q]\ntype = \"questdb\"\ninputs = [\"nf\"]\nurl = \"https://x\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.key.as_deref(), Some("sinks.q.url"));
    }

    #[test]
    fn a_bad_disk_buffer_is_located_on_its_line() {
        let sink = "[sinks.q]\ntype = \"questdb\"\ninputs = [\"nf\"]\n";
        let e = parse(&format!(
            "{NETFLOW}{sink}buffer = {{ type = \"disk\", max_size = \"1MiB\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sinks.q.buffer.max_size"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse(&format!(
            "{NETFLOW}{sink}buffer = {{ type = \"disk\", when_full = \"wait\" }}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("when_full"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse(&format!("{NETFLOW}{sink}buffer = {{ type = \"tape\" }}\n")).unwrap_err();
        assert!(e.to_string().contains("disk"), "says what is allowed: {e}");
    }

    #[test]
    fn bad_snmp_tag_is_located() {
        let base = "[sources.snmp]\ntype = \"snmp\"\n[[sources.snmp.profiles]]\nname = \"p\"\n\
                    version = \"2c\"\ncommunity = { env = \"C\" }\n[[sources.snmp.devices]]\n\
                    name = \"r1\"\naddress = \"127.0.0.1\"\nprofile = \"p\"\n";
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
        let e = parse(&format!(
            "{NETFLOW}\n[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\n\
             flush_delay = \"0s\"\nwindow = \"1x\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert_eq!(e.key.as_deref(), Some("processors.r.window"), "{e}");
        assert!(e.to_string().contains("window = \"1x\""), "{e}");
    }

    #[test]
    fn a_range_error_in_the_second_of_two_tables_points_at_that_table() {
        let e = parse(
            "[sources.a]\ntype = \"netflow\"\nlisten = \"127.0.0.1:2055\"\nring_capacity = 8\n\
             [sources.b]\ntype = \"netflow\"\nlisten = \"127.0.0.1:4739\"\nring_capacity = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sources.b.ring_capacity"));
        assert_eq!(e.line, Some(8), "{e}");
    }

    #[test]
    fn numeric_keys_out_of_range_are_refused_with_their_key() {
        let sink = |extra: &str| {
            format!("{NETFLOW}[sinks.q]\ntype = \"questdb\"\ninputs = [\"nf\"]\n{extra}\n")
        };
        for (text, key) in [
            (
                sink("queue_capacity = 9223372036854775807"),
                "sinks.q.queue_capacity",
            ),
            (
                format!("{NETFLOW}ring_capacity = 9223372036854775807\n"),
                "sources.nf.ring_capacity",
            ),
            (
                format!(
                    "{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\nwindow = \"0s\"\n"
                ),
                "processors.r.window",
            ),
            (sink("rollup_table = \"flows\""), "sinks.q.rollup_table"),
            (
                sink("table_prefix = \"x_\"\nflows_table = \"f\"\nrollup_table = \"F\""),
                "sinks.q.rollup_table",
            ),
            (sink("retry_max = \"1ms\""), "sinks.q.retry_max"),
            ("[pipeline]\nworkers = 100000\n".into(), "pipeline.workers"),
            (
                "[pipeline]\ntemplate_save_interval = \"0s\"\n".into(),
                "pipeline.template_save_interval",
            ),
            (
                "[control]\nmax_connections = 0\n".into(),
                "control.max_connections",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    #[test]
    fn wiring_errors_name_the_input_and_its_line() {
        let cases = [
            (
                format!("{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nope\"]\n"),
                "processors.r.inputs",
                "not the id of any source or processor",
            ),
            (
                format!(
                    "{NETFLOW}[processors.a]\ntype = \"interface_names\"\ninputs = [\"b\"]\n\
                     [processors.b]\ntype = \"interface_names\"\ninputs = [\"a\"]\n"
                ),
                "processors.a.inputs",
                "cycle",
            ),
            (
                format!("{NETFLOW}[sinks.q]\ntype = \"questdb\"\n"),
                "sinks.q.inputs",
                "needs inputs",
            ),
            (
                format!("{NETFLOW}[processors.nf]\ntype = \"rollup\"\ninputs = [\"nf\"]\n"),
                "processors.nf",
                "also used",
            ),
            (
                format!(
                    "{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\n\
                     [processors.r2]\ntype = \"rollup\"\ninputs = [\"r\"]\n"
                ),
                "processors.r2.inputs",
                "takes flows, but its inputs offer rollups",
            ),
            (
                "[sources.snmp]\ntype = \"snmp\"\n[processors.r]\ntype = \"interface_names\"\n\
                 inputs = [\"snmp\"]\n"
                    .to_string(),
                "processors.r.inputs",
                "takes flows, rollups, but its inputs offer",
            ),
        ];
        for (text, key, says) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    #[test]
    fn careless_wiring_is_refused() {
        let snmp = |id: &str| {
            format!(
                "[sources.{id}]\ntype = \"snmp\"\n[[sources.{id}.profiles]]\nname = \"p\"\n\
                 version = \"2c\"\ncommunity = {{ env = \"C\" }}\n[[sources.{id}.devices]]\n\
                 name = \"r1\"\naddress = \"127.0.0.1\"\nprofile = \"p\"\n"
            )
        };
        for (text, key, says) in [
            (
                format!("{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\", \"nf\"]\n"),
                "processors.r.inputs".to_string(),
                "listed twice",
            ),
            (
                format!("{}{}", snmp("a"), snmp("b")),
                "sources.b.devices[0].name".to_string(),
                "also polled by source \"a\"",
            ),
            (
                "[sources.t]\ntype = \"snmp_traps\"\nusers = [\"nobody\"]\n".to_string(),
                "sources.t.users[0]".to_string(),
                "no profile named",
            ),
            (
                format!("{NETFLOW}inputs = [\"x\"]\n"),
                "sources.nf.inputs".to_string(),
                "no inputs",
            ),
            (
                format!(
                    "{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\n\
                     [processors.n]\ntype = \"interface_names\"\ninputs = [\"r\"]\n\
                     [sinks.q]\ntype = \"questdb\"\ninputs = [\"nf\", \"r\", \"n\"]\n"
                ),
                "sinks.q.inputs".to_string(),
                "stored twice",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key.as_str()), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    /// A source that builds flows itself runs its own per-worker processors: a roll-up may
    /// take from it, alone or next to a listener (check-config refused this before).
    #[test]
    fn flow_building_sources_feed_per_worker_processors() {
        let text = format!(
            "{NETFLOW}[sources.file]\ntype = \"pcap_file\"\npath = \"/dev/null\"\n\
             [sources.sf]\ntype = \"sflow\"\nlisten = \"127.0.0.1:0\"\n\
             [sources.cap]\ntype = \"capture\"\ninterface = \"lo\"\n\
             [processors.r]\ntype = \"rollup\"\ninputs = [\"nf\", \"file\", \"sf\", \"cap\"]\n\
             [processors.n]\ntype = \"interface_names\"\ninputs = [\"r\"]\n\
             [sinks.q]\ntype = \"questdb\"\ninputs = [\"n\"]\n"
        );
        let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.processors.len(), 2);
    }

    /// A sink that stores only flows, to check that routing another stream to it is refused.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FlowsOnly {}

    impl SinkSpec for FlowsOnly {
        fn accepts(&self) -> StreamSet {
            StreamSet::of(&[nmsd_pipeline::StreamKind::Flows])
        }
        fn queue(&self) -> nmsd_pipeline::queue::QueueBounds {
            nmsd_pipeline::queue::QueueBounds {
                capacity: 1,
                max_bytes: 1 << 20,
                policy: nmsd_pipeline::FullPolicy::Drop,
            }
        }
        fn shutdown_timeout(&self) -> std::time::Duration {
            std::time::Duration::from_secs(1)
        }
        fn build(
            &self,
            _: nmsd_pipeline::component::SinkContext,
        ) -> Result<Box<dyn nmsd_pipeline::component::Sink>, String> {
            Err("not in this test".into())
        }
    }

    #[test]
    fn a_stream_a_sink_cannot_store_is_refused() {
        let reg = Registry::builtin().sink::<FlowsOnly>("flows_only");
        let text = format!(
            "{NETFLOW}[processors.r]\ntype = \"rollup\"\ninputs = [\"nf\"]\n\
             [sinks.f]\ntype = \"flows_only\"\ninputs = [\"nf\", \"r\"]\n"
        );
        let e = Config::parse_with(Path::new("t.toml"), &text, &reg).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sinks.f.inputs"), "{e}");
        assert!(e.to_string().contains("rollups"), "{e}");
        let ok = format!("{NETFLOW}[sinks.f]\ntype = \"flows_only\"\ninputs = [\"nf\"]\n");
        assert!(Config::parse_with(Path::new("t.toml"), &ok, &reg).is_ok());
    }

    #[test]
    fn an_old_config_is_told_how_to_rewrite_it() {
        for (text, says) in [
            (
                "[[sources.netflow]]\nlisten = \"0.0.0.0:2055\"\n",
                "`[sources.netflow]` `type = \"netflow\"`",
            ),
            ("[[processors]]\ntype = \"rollup\"\n", "[processors.rollup]"),
            (
                "[sinks.questdb]\nurl = \"http://127.0.0.1:9000\"\n",
                "add `type = \"questdb\"` and `inputs",
            ),
            ("[sources.snmp]\nbind = \"0.0.0.0:0\"\n", "type = \"snmp\""),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert_eq!(e.line, Some(1), "{e}");
        }
    }

    #[test]
    fn processors_are_put_in_topological_order() {
        let c = parse(&format!(
            "{NETFLOW}[processors.a_names]\ntype = \"interface_names\"\ninputs = [\"z_rollup\"]\n\
             [processors.z_rollup]\ntype = \"rollup\"\ninputs = [\"nf\"]\n"
        ))
        .unwrap();
        let order: Vec<_> = c.processors.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, ["z_rollup", "a_names"]);
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
        let debug = |c: &dyn std::fmt::Debug| format!("{c:?}");
        let sink = cfg.sinks.iter().find(|s| s.id == "questdb").unwrap();
        assert_eq!(
            debug(&sink.spec),
            debug(&nmsd_sinks::questdb::QuestDbConfig::default()),
            "[sinks.questdb]"
        );
        let minimal = parse(
            "[sources.netflow]\ntype = \"netflow\"\nlisten = \"0.0.0.0:2055\"\n\
             [processors.rollup]\ntype = \"rollup\"\ninputs = [\"netflow\"]\n",
        )
        .unwrap();
        assert_eq!(
            debug(&cfg.sources[0].spec),
            debug(&minimal.sources[0].spec),
            "[sources.netflow]"
        );
        assert_eq!(
            debug(&cfg.processors[0].spec),
            debug(&minimal.processors[0].spec),
            "[processors.rollup]"
        );

        // Every key is written out, as a setting or (for keys whose default is unset or
        // environment-dependent, and example tables) as a commented line.
        for header in [
            "[general]",
            "[control]",
            "[pipeline]",
            "[sources.netflow]",
            "[processors.rollup]",
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
