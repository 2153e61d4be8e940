//! QuestDB sink: ILP over HTTP with `questdb-rs`, on its own thread (the client is blocking).
//!
//! Rows are batched per table (one buffer each, so every HTTP flush is one transaction and a
//! retry cannot duplicate half a batch) and flushed when a buffer reaches `batch_rows` or
//! `batch_bytes`, or its oldest row is `batch_interval` old. Failures are retried with backoff
//! for as long as it takes; meanwhile the sink stops taking from its queue, so the queue's full
//! policy decides what happens upstream (drop and count, by default): the receive path never
//! blocks on QuestDB.
//! With `buffer = { type = "disk" }` the topology puts a disk buffer between the queue and
//! this loop; a batch is marked done (and may leave the buffer) only once QuestDB answered 2xx
//! for every row of it (decision 0017).

mod rows;
pub mod schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use metrics::{Counter, Histogram};
use nmsd_pipeline::Batch;
use nmsd_pipeline::component::{ComponentCounters, Sink, SinkContext, SinkSpec};
use nmsd_pipeline::delivery::{Delivery, DeliveryToken, SinkBufferConfig, SinkInput};
use nmsd_pipeline::heartbeat::Heartbeat;
use nmsd_pipeline::queue::QueueBounds;
use nmsd_pipeline::ring::FullPolicy;
use nmsd_pipeline::stream::StreamSet;
use nmsd_pipeline::units::{ByteSize, HumanDuration};
use questdb::ingress::{Buffer, ProtocolVersion, Sender};
use serde::Deserialize;

use crate::backoff::Backoff;
use nmsd_pipeline::shutdown::ShutdownSignal;
use nmsd_pipeline::sink_status::SinkStatus;
pub use rows::{RowKey, RowWriter};
pub use schema::TableNames;

/// QuestDB partitioning of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    Hour,
    Day,
    Week,
    Month,
}

impl Partition {
    pub fn sql(self) -> &'static str {
        match self {
            Partition::Hour => "HOUR",
            Partition::Day => "DAY",
            Partition::Week => "WEEK",
            Partition::Month => "MONTH",
        }
    }
}

/// `[sinks.<id>] type = "questdb"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuestDbConfig {
    /// `http://host:port` of QuestDB's HTTP server (ILP and `/exec`).
    pub url: String,
    /// Prefix for table names, e.g. `"lab_"` → `lab_flows`.
    pub table_prefix: String,
    pub flows_table: String,
    pub rollup_table: String,
    pub snmp_interface_table: String,
    pub snmp_device_table: String,
    pub snmp_trap_table: String,
    pub topology_link_table: String,
    pub events_table: String,
    pub flows_partition: Partition,
    pub rollup_partition: Partition,
    /// Flush a table's buffer at this many rows...
    pub batch_rows: usize,
    /// ...or at this many bytes of ILP text, which bounds the sink's memory (a buffer keeps
    /// its largest size) whatever the row width.
    pub batch_bytes: ByteSize,
    /// ...or when its oldest row is this old.
    pub batch_interval: HumanDuration,
    /// Messages (batches from workers) queued for this sink.
    pub queue_capacity: usize,
    /// Bytes those batches may weigh; raw flows are shed first (at half), then roll-ups, SNMP
    /// rows and traps (at nine tenths), events last.
    pub queue_max_bytes: ByteSize,
    /// What workers do when the queue is full: `drop` (count and continue) or `block`.
    pub queue_full_policy: FullPolicy,
    /// First retry delay; doubles up to `retry_max`.
    pub retry_initial: HumanDuration,
    pub retry_max: HumanDuration,
    /// Per-request timeout (added to the size-based allowance).
    pub request_timeout: HumanDuration,
    /// How long stopping may take, from the moment it begins (the collector holds every stage
    /// to it); rows still unwritten then are counted as lost.
    pub shutdown_timeout: HumanDuration,
    /// `{ type = "memory" }` (the queue alone) or `{ type = "disk", max_size, when_full,
    /// fsync }`: batches survive an outage longer than the queue and a restart.
    pub buffer: SinkBufferConfig,
}

/// Default `batch_bytes`. A buffer is checked after each message (up to 4,096 roll-up rows,
/// ~0.9 MB of ILP), so it peaks near this plus one message. Unbounded, a 20,000-key roll-up
/// window grew its buffer to 8.4 MB (heaptrack), the largest block of the process.
pub const DEFAULT_BATCH_BYTES: u64 = 1 << 20;
/// Default `queue_max_bytes`: 256 MB of flow records is ~2 M records, seconds of a busy
/// exporter fleet and minutes of roll-ups, while keeping an outage's memory bounded.
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 256 << 20;
/// Smallest `batch_bytes` accepted: below it every few rows would be a request.
pub const MIN_BATCH_BYTES: u64 = 64 << 10;

impl Default for QuestDbConfig {
    fn default() -> Self {
        QuestDbConfig {
            url: "http://127.0.0.1:9000".into(),
            table_prefix: String::new(),
            flows_table: "flows".into(),
            rollup_table: "flows_1m".into(),
            snmp_interface_table: "snmp_interface".into(),
            snmp_device_table: "snmp_device".into(),
            snmp_trap_table: "snmp_trap".into(),
            topology_link_table: "topology_link".into(),
            events_table: "events".into(),
            flows_partition: Partition::Hour,
            rollup_partition: Partition::Day,
            batch_rows: 50_000,
            batch_bytes: ByteSize(DEFAULT_BATCH_BYTES),
            batch_interval: HumanDuration::from_secs(1),
            queue_capacity: 1024,
            queue_max_bytes: ByteSize(DEFAULT_QUEUE_MAX_BYTES),
            queue_full_policy: FullPolicy::Drop,
            retry_initial: HumanDuration::from_millis(250),
            retry_max: HumanDuration::from_secs(30),
            request_timeout: HumanDuration::from_secs(10),
            shutdown_timeout: HumanDuration::from_secs(10),
            // Durable by default: an outage or a restart loses nothing acknowledged.
            buffer: SinkBufferConfig::Disk(Default::default()),
        }
    }
}

impl QuestDbConfig {
    pub fn table_names(&self) -> TableNames {
        let p = &self.table_prefix;
        TableNames {
            flows: format!("{p}{}", self.flows_table),
            rollup: format!("{p}{}", self.rollup_table),
            snmp_interface: format!("{p}{}", self.snmp_interface_table),
            snmp_device: format!("{p}{}", self.snmp_device_table),
            snmp_trap: format!("{p}{}", self.snmp_trap_table),
            topology_link: format!("{p}{}", self.topology_link_table),
            events: format!("{p}{}", self.events_table),
        }
    }

    /// `host:port` from the URL, or why it is not usable.
    pub fn host_port(&self) -> Result<String, String> {
        let rest = self.url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "url \"{}\" must start with http:// (QuestDB open source serves plain HTTP; \
                 put a TLS proxy on the same host if the link needs encryption)",
                self.url
            )
        })?;
        let hp = rest.trim_end_matches('/');
        if hp.is_empty() || hp.contains('/') {
            return Err(format!(
                "url \"{}\" must be http://HOST:PORT with no path",
                self.url
            ));
        }
        Ok(if hp.contains(':') && !hp.ends_with(']') {
            hp.to_string()
        } else {
            format!("{hp}:9000")
        })
    }

    /// Ranges of the numeric keys and distinct table names; `Err((key, message))`.
    pub fn validate_ranges(&self) -> Result<(), (&'static str, String)> {
        const HOUR_MS: u64 = 3_600_000;
        let ms = |d: HumanDuration| d.as_millis_u64();
        let checks: [(&'static str, bool, &str); 9] = [
            (
                "batch_rows",
                (1..=1_000_000).contains(&self.batch_rows),
                "between 1 and 1000000",
            ),
            ("batch_bytes", self.batch_bytes.0 <= 1 << 30, "at most 1GiB"),
            (
                "batch_interval",
                (1..=HOUR_MS).contains(&ms(self.batch_interval)),
                "between 1ms and 1h",
            ),
            // crossbeam allocates the whole queue at start: a huge capacity panics.
            (
                "queue_capacity",
                (1..=1_000_000).contains(&self.queue_capacity),
                "between 1 and 1000000",
            ),
            (
                "queue_max_bytes",
                (1 << 20..=64 << 30).contains(&self.queue_max_bytes.0),
                "between 1MiB and 64GiB",
            ),
            (
                "retry_initial",
                (1..=HOUR_MS).contains(&ms(self.retry_initial)),
                "between 1ms and 1h",
            ),
            (
                "retry_max",
                (ms(self.retry_initial)..=HOUR_MS).contains(&ms(self.retry_max)),
                "between retry_initial and 1h",
            ),
            (
                "request_timeout",
                (100..=HOUR_MS).contains(&ms(self.request_timeout)),
                "between 100ms and 1h",
            ),
            (
                "shutdown_timeout",
                ms(self.shutdown_timeout) <= HOUR_MS,
                "at most 1h",
            ),
        ];
        for (key, ok, range) in checks {
            if !ok {
                return Err((key, format!("must be {range}")));
            }
        }
        let names = self.table_names();
        let all = names.all();
        for (i, a) in all.iter().enumerate() {
            if all[..i].iter().any(|b| b.eq_ignore_ascii_case(a)) {
                let key = match i {
                    1 => "rollup_table",
                    2 => "snmp_interface_table",
                    3 => "snmp_device_table",
                    4 => "snmp_trap_table",
                    5 => "topology_link_table",
                    _ => "events_table",
                };
                return Err((
                    key,
                    format!(
                        "table \"{a}\" is already used by another kind of row; every table name must differ"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Everything that can be checked without a server.
    pub fn validate(&self) -> Result<(), String> {
        self.host_port()?;
        rows::validate_names(&self.table_names())?;
        if self.batch_rows == 0 {
            return Err("batch_rows must be at least 1".into());
        }
        if self.batch_bytes.0 < MIN_BATCH_BYTES {
            return Err(format!(
                "batch_bytes must be at least {}KiB",
                MIN_BATCH_BYTES >> 10
            ));
        }
        Ok(())
    }
}

/// What this sink stores: every stream there is a table for.
const STORES: StreamSet = StreamSet::STORABLE;

impl SinkSpec for QuestDbConfig {
    fn accepts(&self) -> StreamSet {
        STORES
    }

    fn queue(&self) -> QueueBounds {
        QueueBounds {
            capacity: self.queue_capacity,
            max_bytes: self.queue_max_bytes.0,
            policy: self.queue_full_policy,
        }
    }

    fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.get()
    }

    fn buffer(&self) -> SinkBufferConfig {
        self.buffer.clone()
    }

    fn validate(&self) -> Result<(), (String, String)> {
        QuestDbConfig::validate(self).map_err(|m| ("url".to_string(), m))?;
        self.validate_ranges()
            .map_err(|(k, m)| (k.to_string(), m))?;
        self.buffer.validate()
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, String> {
        Ok(Box::new(QuestDbSink::new(self.clone(), ctx)))
    }
}

impl Sink for QuestDbSink {
    fn run(self: Box<Self>) {
        QuestDbSink::run(*self);
    }
}

/// Metric handles.
struct SinkMetrics {
    /// Per table in `TableNames::all` order: its label and, for the flow tables, its
    /// `nmsd_sink_rows_written_total` (see [`TableBuffer::written`]).
    written: Vec<(String, Option<Counter>)>,
    failed_rejected: Counter,
    failed_encode: Counter,
    failed_shutdown: Counter,
    retries: Counter,
    flush_seconds: Histogram,
    up: metrics::Gauge,
}

impl SinkMetrics {
    fn new(names: &TableNames, id: &str) -> Self {
        let s = id.to_string();
        SinkMetrics {
            written: names
                .all()
                .iter()
                .map(|t| t.to_string())
                .chain(std::iter::once("snmp_custom".to_string()))
                .enumerate()
                .map(|(i, t)| {
                    let flows = i == Table::Flows as usize || i == Table::Rollups as usize;
                    let c = flows.then(|| metrics::counter!("nmsd_sink_rows_written_total", "sink" => s.clone(), "table" => t.clone()));
                    (t, c)
                })
                .collect(),
            failed_rejected: metrics::counter!("nmsd_sink_rows_failed_total", "sink" => s.clone(), "reason" => "rejected"),
            failed_encode: metrics::counter!("nmsd_sink_rows_failed_total", "sink" => s.clone(), "reason" => "encode"),
            failed_shutdown: metrics::counter!("nmsd_sink_rows_failed_total", "sink" => s.clone(), "reason" => "shutdown"),
            retries: metrics::counter!("nmsd_sink_retries_total", "sink" => s.clone()),
            flush_seconds: metrics::histogram!("nmsd_sink_flush_duration_seconds", "sink" => s.clone()),
            up: metrics::gauge!("nmsd_sink_up", "sink" => s),
        }
    }
}

/// The tables, in `TableNames::all` order.
#[derive(Clone, Copy)]
enum Table {
    Flows = 0,
    Rollups = 1,
    SnmpInterface = 2,
    SnmpDevice = 3,
    SnmpTrap = 4,
    TopologyLink = 5,
    Events = 6,
    /// All user-defined SNMP tables share one buffer, flushed non-transactionally (DEDUP keys
    /// make a retried flush idempotent).
    Custom = 7,
}

/// One table's pending rows.
struct TableBuffer {
    buf: Buffer,
    oldest: Option<Instant>,
    /// `nmsd_sink_rows_written_total` of this table. Flow tables have it from the start; SNMP
    /// tables from their first row, so /metrics lists no SNMP series when SNMP is not set up.
    written: Option<Counter>,
    table: String,
    /// The sink's id, the `sink` label.
    sink: Arc<str>,
    /// One table per buffer makes every flush one transaction; the shared buffer of the
    /// user-defined tables cannot be.
    transactional: bool,
    /// The deliveries whose rows are in `buf`: done once it is written.
    tokens: Vec<DeliveryToken>,
}

impl TableBuffer {
    fn rows(&self) -> usize {
        self.buf.row_count()
    }

    fn bytes(&self) -> usize {
        self.buf.len()
    }

    fn count_written(&mut self, rows: u64) {
        let table = &self.table;
        let sink = &self.sink;
        self.written
            .get_or_insert_with(|| {
                metrics::counter!("nmsd_sink_rows_written_total", "sink" => sink.to_string(), "table" => table.clone())
            })
            .increment(rows);
    }
}

/// The running sink. Build it with [`QuestDbSink::new`] and run it on its own thread.
pub struct QuestDbSink {
    cfg: QuestDbConfig,
    rx: Box<dyn SinkInput>,
    shutdown: Arc<ShutdownSignal>,
    status: Arc<SinkStatus>,
    writer: RowWriter,
    metrics: SinkMetrics,
    backoff: Backoff,
    /// Last time an outage was logged, to log it plainly but not on every retry.
    last_outage_log: Option<Instant>,
    /// Last time unencodable rows were logged, and how many were discarded since.
    last_encode_log: Option<Instant>,
    encode_discards_unlogged: u64,
    /// Messages taken off the queue while waiting for the server during shutdown.
    stash: Vec<Delivery>,
    /// When the current outage began (for the recovery line).
    down_since: Option<Instant>,
    id: Arc<str>,
    counters: ComponentCounters,
    /// User-defined SNMP tables of the polling sources upstream.
    custom_tables: Vec<nmsd_pipeline::snmp::CustomTableSchema>,
    /// Liveness: beats between requests and while backing off, idle while waiting for rows;
    /// a request that hangs stops the beats.
    heartbeat: Arc<Heartbeat>,
}

/// How a flush attempt ended.
enum FlushError {
    /// Worth retrying: unreachable, timeout, 5xx.
    Transient(String),
    /// The server rejected the data itself; retrying cannot help.
    Rejected(String),
}

impl QuestDbSink {
    /// Build the sink from its config and what the topology gives it (queue, shutdown
    /// signal, status, heartbeat, counters, upstream tables).
    pub fn new(cfg: QuestDbConfig, ctx: SinkContext) -> Self {
        let names = cfg.table_names();
        QuestDbSink {
            backoff: Backoff::new(cfg.retry_initial.get(), cfg.retry_max.get()),
            writer: RowWriter::new(names.clone())
                .with_source_names(ctx.upstream.flow_source_names.clone()),
            metrics: SinkMetrics::new(&names, &ctx.id),
            cfg,
            rx: ctx.input,
            shutdown: ctx.shutdown,
            status: ctx.status,
            last_outage_log: None,
            last_encode_log: None,
            encode_discards_unlogged: 0,
            stash: Vec::new(),
            down_since: None,
            id: ctx.id,
            counters: ctx.counters,
            custom_tables: ctx.upstream.custom_tables,
            heartbeat: ctx.heartbeat,
        }
    }

    fn sender(&self) -> Result<Sender, String> {
        let hp = self.cfg.host_port()?;
        // protocol_version is pinned: auto-detection asks the server at construction and fails
        // while it is down. retry_timeout=0: retries are ours (questdb-rs retries only timeouts
        // and 5xx, not connection refused), so one policy covers every failure.
        let conf = format!(
            "http::addr={hp};retry_timeout=0;request_timeout={};",
            self.cfg.request_timeout.as_millis_u64().max(1)
        );
        let sender = questdb::ingress::SenderBuilder::from_conf(&conf)
            .and_then(|b| b.protocol_version(ProtocolVersion::V1))
            .and_then(|b| b.build())
            .map_err(|e| format!("cannot configure the QuestDB client: {e}"))?;
        Ok(sender)
    }

    /// Run until the queue is closed and drained.
    pub fn run(mut self) {
        let mut sender = match self.sender() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("QuestDB sink disabled: {e}");
                self.status.set_error(e);
                // Keep draining so workers never block on a dead sink.
                self.heartbeat.idle();
                loop {
                    match self.rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(d) => {
                            self.counters.received(d.batch.rows() as u64);
                            self.rejected(d.batch.rows() as u64);
                            self.rx.done(d.token);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        };
        if !self.ensure_schema() {
            self.drain_after_failure();
            return;
        }
        let names = self.cfg.table_names();
        let mut tables: Vec<TableBuffer> = self
            .metrics
            .written
            .iter()
            .enumerate()
            .map(|(i, (table, c))| TableBuffer {
                buf: sender.new_buffer(),
                oldest: None,
                written: c.clone(),
                table: table.clone(),
                sink: self.id.clone(),
                transactional: i != Table::Custom as usize,
                tokens: Vec::new(),
            })
            .collect();
        for m in std::mem::take(&mut self.stash) {
            self.counters.received(m.batch.rows() as u64);
            self.append(m, &mut tables);
        }
        let interval = self.cfg.batch_interval.get();
        let mut gave_up = false;
        loop {
            let wait = tables
                .iter()
                .filter_map(|t| t.oldest)
                .map(|o| interval.saturating_sub(o.elapsed()))
                .min()
                .unwrap_or(interval);
            self.heartbeat.idle();
            let msg = self.rx.recv_timeout(wait);
            self.heartbeat.beat();
            let closed = matches!(msg, Err(RecvTimeoutError::Disconnected));
            if let Ok(m) = msg {
                self.counters.received(m.batch.rows() as u64);
                self.append(m, &mut tables);
            }
            for t in tables.iter_mut() {
                let due = t.rows() >= self.cfg.batch_rows
                    || t.bytes() as u64 >= self.cfg.batch_bytes.0
                    || t.oldest.is_some_and(|o| o.elapsed() >= interval)
                    || (closed && t.rows() > 0);
                if due && !self.flush(&mut sender, t) {
                    // Gave up during shutdown: nothing more can be written, in this table or
                    // the others.
                    gave_up = true;
                    break;
                }
            }
            if gave_up {
                for t in tables.iter_mut() {
                    let rows = t.rows() as u64;
                    self.given_up(rows);
                }
                self.drain_after_failure();
                return;
            }
            if closed {
                break;
            }
        }
        tracing::info!(
            rows = self.status.rows_written(),
            flows_table = %names.flows,
            rollup_table = %names.rollup,
            "QuestDB sink flushed and stopped"
        );
    }

    fn append(&mut self, d: Delivery, tables: &mut [TableBuffer]) {
        let w = &mut self.writer;
        let m = d.batch;
        let id = d.batch_id;
        let key = |i: usize| RowKey {
            batch: id,
            row: u32::try_from(i).unwrap_or(u32::MAX),
        };
        let kind = m.kind().name();
        let (i, discarded) = match &m {
            Batch::Flows(r) => (
                Table::Flows,
                write_rows(&mut tables[Table::Flows as usize].buf, r, |b, i, f| {
                    w.flow(b, f, key(i))
                }),
            ),
            Batch::Rollups(r) => (
                Table::Rollups,
                write_rows(&mut tables[Table::Rollups as usize].buf, r, |b, i, x| {
                    w.rollup(b, x, key(i))
                }),
            ),
            Batch::SnmpInterfaces(r) => (
                Table::SnmpInterface,
                write_rows(
                    &mut tables[Table::SnmpInterface as usize].buf,
                    r,
                    |b, _, x| w.snmp_interface(b, x),
                ),
            ),
            Batch::SnmpDevices(r) => (
                Table::SnmpDevice,
                write_rows(&mut tables[Table::SnmpDevice as usize].buf, r, |b, _, x| {
                    w.snmp_device(b, x)
                }),
            ),
            Batch::Traps(r) => (
                Table::SnmpTrap,
                write_rows(&mut tables[Table::SnmpTrap as usize].buf, r, |b, i, x| {
                    w.snmp_trap(b, x, key(i))
                }),
            ),
            Batch::TopologyLinks(r) => (
                Table::TopologyLink,
                write_rows(
                    &mut tables[Table::TopologyLink as usize].buf,
                    r,
                    |b, _, x| w.topology_link(b, x),
                ),
            ),
            Batch::Events(r) => (
                Table::Events,
                write_rows(&mut tables[Table::Events as usize].buf, r, |b, i, x| {
                    w.event(b, x, key(i))
                }),
            ),
            Batch::SnmpCustom(r) => {
                let prefix = &self.cfg.table_prefix;
                (
                    Table::Custom,
                    write_rows(&mut tables[Table::Custom as usize].buf, r, |b, _, x| {
                        w.snmp_custom(b, prefix, x)
                    }),
                )
            }
            // Internal to the global stage; the topology never routes it to a sink.
            Batch::FlowView(_) => {
                self.rx.done(d.token);
                return;
            }
        };
        if let Some((n, e)) = discarded {
            self.discard_unencodable(kind, n, &e);
        }
        let t = &mut tables[i as usize];
        t.tokens.push(d.token);
        if t.rows() == 0 {
            // Nothing of it to write (every row discarded): done now.
            for tok in t.tokens.drain(..) {
                self.rx.done(tok);
            }
        }
        if t.oldest.is_none() && t.rows() > 0 {
            t.oldest = Some(Instant::now());
        }
    }

    /// Count rows that could not be encoded; log the first and then at most every 30 s.
    fn discard_unencodable(&mut self, kind: &str, n: u64, e: &questdb::Error) {
        self.metrics.failed_encode.increment(n);
        self.counters.discarded("encode", n);
        // Counted as refused rows in the ledger, so shutdown does not report them as lost.
        self.status.add_rejected(n);
        let why = format!("{n} {kind} row(s) could not be encoded and were discarded: {e}");
        self.status.set_discard(why.clone());
        self.encode_discards_unlogged += n;
        if self
            .last_encode_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            tracing::warn!(
                discarded = self.encode_discards_unlogged,
                "QuestDB sink: {why}. The rest of the batch is kept; counted in \
                 nmsd_sink_rows_failed_total{{reason=\"encode\"}}"
            );
            self.last_encode_log = Some(Instant::now());
            self.encode_discards_unlogged = 0;
        }
    }

    /// Flush one table buffer, retrying transient failures. Returns false if it gave up
    /// (only during shutdown, at its deadline).
    fn flush(&mut self, sender: &mut Sender, t: &mut TableBuffer) -> bool {
        loop {
            let rows = t.rows() as u64;
            let started = Instant::now();
            let result = sender.flush_and_keep_with_flags(&t.buf, t.transactional);
            self.heartbeat.beat();
            self.metrics
                .flush_seconds
                .record(started.elapsed().as_secs_f64());
            match result.map_err(classify) {
                Ok(()) => {
                    t.buf.clear();
                    t.oldest = None;
                    for tok in t.tokens.drain(..) {
                        self.rx.done(tok);
                    }
                    t.count_written(rows);
                    self.status.add_rows(rows);
                    self.counters.sent(rows);
                    self.mark_up();
                    return true;
                }
                Err(FlushError::Rejected(e)) => {
                    tracing::error!(
                        rows,
                        "QuestDB rejected a batch; dropping it (counted in \
                         nmsd_sink_rows_failed_total{{reason=\"rejected\"}}): {e}"
                    );
                    self.rejected(rows);
                    self.status
                        .set_discard(format!("{rows} rows rejected by QuestDB: {e}"));
                    t.buf.clear();
                    t.oldest = None;
                    for tok in t.tokens.drain(..) {
                        self.rx.done(tok);
                    }
                    return true;
                }
                Err(FlushError::Transient(e)) => {
                    self.counters.error();
                    self.mark_down(&e);
                    if self.gave_up() {
                        self.given_up(rows);
                        t.buf.clear();
                        t.oldest = None;
                        // Not done: a disk buffer keeps them for the next start.
                        t.tokens.clear();
                        return false;
                    }
                    self.metrics.retries.increment(1);
                    self.pause();
                }
            }
        }
    }

    /// Wait before the next retry. Shutdown cuts the wait short, so an outage cannot hold the
    /// process past the shutdown deadline.
    ///
    /// While the server does not even accept connections, a TCP connect every
    /// [`PROBE_EVERY`] cuts the wait short as soon as it does: the backoff grows to
    /// `retry_max` (30 s) in a long outage, and writing used to resume up to that long after
    /// QuestDB came back. A server that accepts connections but fails requests gets the plain
    /// backoff, so a sick server is not hammered.
    fn pause(&mut self) {
        let until = Instant::now() + self.backoff.next_delay();
        let addrs = self.server_addrs();
        let probing = !addrs.is_empty() && !accepts_connections(&addrs);
        let mut last_probe = Instant::now();
        while !self.shutdown.requested() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
            // Waiting to retry is progress, not a hang.
            self.heartbeat.beat();
            if probing && last_probe.elapsed() >= PROBE_EVERY {
                last_probe = Instant::now();
                // Listening is not ready: a restarting QuestDB opens its port before it takes
                // writes, and a write that fails then cost a whole backoff (60 s in the
                // hostile-flows test under load). Retry once it answers HTTP.
                if accepts_connections(&addrs) && self.answers_ping() {
                    // Debug: the one line for coming back is mark_up's, once a write succeeds.
                    tracing::debug!(url = %self.cfg.url, "QuestDB accepts connections again; retrying now");
                    return;
                }
            }
        }
        // Stopping: retry every 250 ms, never past the deadline.
        let left = self.shutdown.remaining().unwrap_or_default();
        std::thread::sleep(left.min(Duration::from_millis(250)));
    }

    /// Whether the server answers `GET /ping` (ILP over HTTP's health check) with 2xx.
    fn answers_ping(&self) -> bool {
        schema::ExecClient::new(&self.cfg.url, Duration::from_secs(1)).ping()
    }

    /// The server's addresses, resolved now (empty if the name does not resolve).
    fn server_addrs(&self) -> Vec<std::net::SocketAddr> {
        use std::net::ToSocketAddrs;
        self.cfg
            .host_port()
            .ok()
            .and_then(|hp| hp.to_socket_addrs().ok())
            .map(|a| a.collect())
            .unwrap_or_default()
    }

    /// Create the tables; retry until it works or shutdown gives up.
    fn ensure_schema(&mut self) -> bool {
        let client = schema::ExecClient::new(&self.cfg.url, self.cfg.request_timeout.get());
        let mut ddl = schema::ddl(
            &self.cfg.table_names(),
            self.cfg.flows_partition,
            self.cfg.rollup_partition,
        );
        for t in &self.custom_tables {
            ddl.push(schema::custom_ddl(
                &self.cfg.table_prefix,
                t,
                Partition::Day,
            ));
        }
        loop {
            self.heartbeat.beat();
            let migrations = schema::migrations(&self.cfg.table_names());
            let ready = ddl
                .iter()
                .try_for_each(|sql| client.exec(sql).map(|_| ()))
                .and_then(|()| {
                    migrations
                        .iter()
                        .try_for_each(|m| client.migrate(m).map(|_| ()))
                });
            match ready {
                Ok(()) => {
                    tracing::info!(url = %self.cfg.url, "QuestDB sink connected; tables ready");
                    self.mark_up();
                    return true;
                }
                Err(e) => {
                    self.mark_down(&e.to_string());
                    if self.gave_up() || self.nothing_left_to_write() {
                        return false;
                    }
                    self.metrics.retries.increment(1);
                    self.pause();
                }
            }
        }
    }

    /// During shutdown, with the server still down: true once every worker has finished and
    /// queued nothing, so there is no reason to wait out the shutdown timeout.
    fn nothing_left_to_write(&mut self) -> bool {
        if !self.shutdown.requested() {
            return false;
        }
        loop {
            match self.rx.try_recv() {
                Ok(m) => self.stash.push(m),
                Err(crossbeam_channel::TryRecvError::Empty) => return false,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return self.stash.is_empty(),
            }
        }
    }

    fn mark_up(&mut self) {
        if !self.status.connected()
            && let Some(since) = self.down_since.take()
        {
            let held = self.rx.held();
            tracing::info!(
                url = %self.cfg.url,
                down_for_s = since.elapsed().as_secs(),
                buffered_bytes = held.bytes,
                buffered_batches = held.records,
                "QuestDB reachable again after {}s; writing resumes with {} bytes buffered",
                since.elapsed().as_secs(),
                held.bytes
            );
        }
        self.last_outage_log = None;
        self.backoff.reset();
        self.status.set_ok();
        self.metrics.up.set(1.0);
    }

    /// Log an outage once when it starts (a reminder every 10 minutes while it lasts, at debug
    /// level every 30 s), with what is buffered.
    fn mark_down(&mut self, e: &str) {
        self.metrics.up.set(0.0);
        self.status.set_error(e.to_string());
        let first = self.down_since.is_none();
        let since = *self.down_since.get_or_insert_with(Instant::now);
        let due = self
            .last_outage_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(if first { 0 } else { 600 }));
        let held = self.rx.held();
        if first || due {
            self.last_outage_log = Some(Instant::now());
            let what = if self.rx.durable() {
                "batches go to the disk buffer (bounded by buffer.max_size) and are written \
                 once it is back"
            } else {
                "rows wait in the sink queue, and what does not fit is dropped and counted in \
                 nmsd_sink_queue_dropped_rows_total (a disk buffer, buffer = { type = \"disk\" }, \
                 keeps them longer and across restarts)"
            };
            tracing::warn!(
                down_for_s = since.elapsed().as_secs(),
                buffered_bytes = held.bytes,
                "QuestDB sink cannot write to {}: {e}. Retrying with backoff (up to {:?}); {what}",
                self.cfg.url,
                self.cfg.retry_max.get()
            );
        } else {
            tracing::debug!(buffered_bytes = held.bytes, "QuestDB still down: {e}");
        }
    }

    /// True once the shutdown deadline (set by the collector, `shutdown_timeout` after it
    /// began stopping) has passed.
    fn gave_up(&mut self) -> bool {
        self.shutdown.expired()
    }

    /// Rows the server refused, or that could not be encoded.
    fn rejected(&self, rows: u64) {
        self.metrics.failed_rejected.increment(rows);
        self.counters.discarded("rejected", rows);
        self.status.add_rejected(rows);
    }

    /// Rows given up on at shutdown.
    fn lost(&self, rows: u64) {
        self.metrics.failed_shutdown.increment(rows);
        self.counters.discarded("shutdown", rows);
        self.status.add_lost(rows);
    }

    /// Rows pending when the sink gave up at shutdown: kept in a disk buffer for the next
    /// start, lost otherwise.
    fn given_up(&self, rows: u64) {
        if rows == 0 {
            return;
        }
        if self.rx.durable() {
            self.status.add_kept(rows);
        } else {
            tracing::error!(
                rows,
                "QuestDB still unreachable at shutdown; {rows} rows not written"
            );
            self.lost(rows);
        }
    }

    fn drain_after_failure(&mut self) {
        if self.rx.durable() {
            // Everything not written stays in the disk buffer (it logs what it keeps).
            let rows: u64 = self.stash.iter().map(|d| d.batch.rows() as u64).sum();
            self.counters.received(rows);
            self.status.add_kept(rows);
            return;
        }
        let mut rows = 0u64;
        let stash = std::mem::take(&mut self.stash);
        for m in stash {
            rows += m.batch.rows() as u64;
        }
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => rows += m.batch.rows() as u64,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.counters.received(rows);
        self.lost(rows);
        if rows > 0 {
            tracing::error!(
                rows,
                "QuestDB sink stopped without writing {rows} queued rows (counted in \
                 nmsd_sink_rows_failed_total{{reason=\"shutdown\"}})"
            );
        }
    }
}

/// How often an unreachable server is probed during a backoff pause.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Whether a TCP connection to any of `addrs` opens within a short timeout.
fn accepts_connections(addrs: &[std::net::SocketAddr]) -> bool {
    addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(250)).is_ok())
}

/// Append each row with a marker before it, so a row that fails half-way (a value the
/// client refuses, such as a timestamp past 2262) is rewound and discarded alone. Without the
/// rewind the buffer stayed inside the broken row and every later row failed with "Bad call to
/// `table`" until restart. Returns how many rows were discarded and the first error.
fn write_rows<T>(
    buf: &mut Buffer,
    rows: &[T],
    mut write: impl FnMut(&mut Buffer, usize, &T) -> questdb::Result<()>,
) -> Option<(u64, questdb::Error)> {
    let mut discarded: Option<(u64, questdb::Error)> = None;
    for (i, r) in rows.iter().enumerate() {
        let result = buf.set_marker().and_then(|()| write(buf, i, r));
        if let Err(e) = result {
            if buf.rewind_to_marker().is_err() {
                // No marker to go back to means set_marker itself failed: the buffer was not
                // at a row boundary, which only a bug can cause. Start clean rather than
                // poison every later row.
                buf.clear();
            }
            match &mut discarded {
                Some((n, _)) => *n += 1,
                None => discarded = Some((1, e)),
            }
        }
    }
    buf.clear_marker();
    discarded
}

fn classify(e: questdb::Error) -> FlushError {
    use questdb::ErrorCode;
    let msg = e.msg().to_string();
    match e.code() {
        // QuestDB answers 400 with code "invalid" for data it cannot take (type mismatch, bad
        // value): resending the same bytes fails the same way.
        ErrorCode::ServerFlushError if msg.contains("code: invalid") => FlushError::Rejected(msg),
        ErrorCode::InvalidApiCall | ErrorCode::InvalidName | ErrorCode::InvalidTimestamp => {
            FlushError::Rejected(msg)
        }
        _ => FlushError::Transient(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outside run's finding: one flow ending in the year 2500 made the client refuse its
    /// timestamp half-way through the row, and every later row failed. Only that row goes.
    #[test]
    fn a_row_the_client_refuses_is_discarded_alone() {
        use nmsd_pipeline::FlowRecord;
        let mut writer = RowWriter::new(QuestDbConfig::default().table_names());
        let mut buf = Buffer::new(ProtocolVersion::V1);
        let ok = FlowRecord {
            start_ms: 1_767_225_600_000,
            end_ms: 1_767_225_601_000,
            ..FlowRecord::EMPTY
        };
        let year_2500 = FlowRecord {
            end_ms: 16_725_225_600_000,
            ..ok
        };
        let max = FlowRecord {
            start_ms: i64::MAX as u64,
            end_ms: i64::MAX as u64,
            ..ok
        };
        let rows = [ok, year_2500, ok, max, ok];
        let key = |i: usize| RowKey {
            batch: 7,
            row: i as u32,
        };
        let discarded = write_rows(&mut buf, &rows, |b, i, f| writer.flow(b, f, key(i)));
        let (n, e) = discarded.expect("two rows refused");
        assert_eq!(n, 2);
        assert!(e.msg().contains("out of range"), "{e}");
        assert_eq!(buf.row_count(), 3);
        // The buffer is at a row boundary: the next row goes in.
        assert!(write_rows(&mut buf, &[ok], |b, i, f| writer.flow(b, f, key(i))).is_none());
        assert_eq!(buf.row_count(), 4);
    }

    #[test]
    fn url_parsing() {
        let mut c = QuestDbConfig::default();
        assert_eq!(c.host_port().as_deref(), Ok("127.0.0.1:9000"));
        c.url = "http://db.example:19000/".into();
        assert_eq!(c.host_port().as_deref(), Ok("db.example:19000"));
        c.url = "http://db.example".into();
        assert_eq!(c.host_port().as_deref(), Ok("db.example:9000"));
        c.url = "https://db.example".into();
        assert!(c.host_port().unwrap_err().contains("http://"));
        c.url = "http://db/x".into();
        assert!(c.validate().is_err());
    }
}
