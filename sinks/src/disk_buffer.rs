//! A sink's disk buffer: batches from its in-memory queue are appended to a segment log
//! (`nmsd-buffer`) by a writer thread, and the sink reads them back through [`DiskInput`],
//! acknowledging each once its rows are written (decision 0017).
//!
//! ```text
//! queue ──▶ writer thread ──append──▶ SegmentLog (state_dir/buffer/<sink>/) ◀──read/ack── sink
//!                        └──recent batches (memory)──────────────────────────────▲
//! ```
//!
//! - **Not engaged** (the sink keeps up): every batch is appended, and the sink takes the same
//!   batch from memory (the `recent` cache) and steps the log's cursor over it, so nothing is
//!   read back or decoded; acknowledging deletes segments as they are passed.
//! - **Backlog** (after an outage, or records a previous run left): the log's cursor reads the
//!   oldest records from disk, and batches that arrived since are still delivered from memory,
//!   alternating by rows ([`REPLAY_SHARE`]): live data is never queued behind a long replay.
//!   The log is acknowledged only up to the first record not yet written, so a crash replays
//!   what was in flight; DEDUP keys and batch ids make that replay harmless.
//! - **Full**: `block` stops taking from the queue (whose priorities then shed raw flows
//!   first), `drop_newest` drops the batch, `drop_oldest` deletes the oldest segment; every
//!   dropped row is counted in `nmsd_buffer_dropped_rows_total{reason}`.
//! - **Damage** (torn tail, flipped byte, garbage) is counted, logged once with the segment and
//!   offset, and skipped; a record that does not decode likewise.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use metrics::{Counter, Gauge};
use nmsd_buffer::{
    Appended, BufferConfig, BufferError, FsyncPolicy, Position, SegmentLog, WhenFull, envelope,
};
use nmsd_pipeline::Batch;
use nmsd_pipeline::delivery::{
    BatchIds, BufferFsync, BufferWhenFull, Delivery, DeliveryToken, DiskBufferConfig, Held,
    SinkInput,
};
use nmsd_pipeline::queue::SinkQueueReceiver;
use nmsd_pipeline::sink_status::{BufferSnapshot, SinkStatus};

/// Share of rows taken from the backlog on disk while newer batches wait in memory: half, so
/// a replay drains at half the sink's speed and live data keeps the other half (measured in
/// the note of issue 12). Either side takes all of it when the other has nothing.
pub const REPLAY_SHARE_PERCENT: u64 = 50;
/// Batches kept in memory after they are appended, for the sink to take without reading the
/// disk, by their in-memory weight. Past this the oldest are left to the disk reader.
pub const RECENT_MAX_BYTES: u64 = 32 << 20;
/// How long a stopping sink waits for the writer to append what its queue still holds.
const WRITER_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Largest segment file; smaller buffers use a quarter of `max_size`.
const SEGMENT_MAX: u64 = 64 << 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A batch appended and still in memory.
struct Recent {
    at: Position,
    batch: Batch,
    batch_id: u64,
    appended_ms: i64,
    weight: u64,
}

/// A record handed to the sink and not yet acknowledged.
struct InFlight {
    rows: u64,
    appended_ms: i64,
    done: bool,
}

/// A record appended by this run and not handed out yet.
struct Unread {
    at: Position,
    rows: u64,
    appended_ms: i64,
}

struct State {
    log: SegmentLog,
    /// The writer has seen the queue close and appended everything.
    closed: bool,
    /// The sink has stopped reading: the writer stops waiting for room.
    sink_gone: bool,
    recent: VecDeque<Recent>,
    recent_bytes: u64,
    /// Appended this run, not handed out (rows of the records `drop_oldest` deletes).
    unread: VecDeque<Unread>,
    inflight: BTreeMap<Position, InFlight>,
    /// Rows taken from disk and from memory while both had some (for the share).
    share_disk: u64,
    share_memory: u64,
    /// Append time of the oldest record a previous run left, until it is read.
    previous_oldest_ms: Option<i64>,
    /// Where this run's records begin: before it is what a previous run left.
    run_start: Position,
    scratch: Vec<u8>,
}

/// The metric handles of one buffer.
struct BufferMetrics {
    bytes: Gauge,
    records: Gauge,
    oldest_age: Gauge,
    backlog_records: Gauge,
    replayed_rows: Counter,
    replayed_records: Counter,
    appended_rows: Counter,
    corrupt_records: Counter,
    corrupt_bytes: Counter,
    sink: String,
}

impl BufferMetrics {
    fn new(sink: &str, max: u64) -> Self {
        let s = sink.to_string();
        metrics::describe_gauge!(
            "nmsd_buffer_bytes",
            "Bytes of a sink's disk buffer segment files (bounded by buffer.max_size)."
        );
        metrics::describe_gauge!(
            "nmsd_buffer_records",
            "Batches in a sink's disk buffer not yet acknowledged by the sink."
        );
        metrics::describe_gauge!(
            "nmsd_buffer_oldest_record_age_seconds",
            "Age of the oldest batch a sink's disk buffer holds (0 when empty)."
        );
        metrics::describe_gauge!(
            "nmsd_buffer_backlog_records",
            "Batches in a sink's disk buffer not yet handed to the sink (replay progress)."
        );
        metrics::describe_counter!(
            "nmsd_buffer_replayed_rows_total",
            "Rows a sink read back from its disk buffer (after an outage or a restart)."
        );
        metrics::describe_counter!(
            "nmsd_buffer_dropped_rows_total",
            "Rows a disk buffer dropped: when_full drop_newest/drop_oldest, a write error, or \
             a record that no longer decodes."
        );
        metrics::describe_gauge!(
            "nmsd_buffer_max_bytes",
            "A sink's disk buffer bound (buffer.max_size)."
        );
        metrics::describe_counter!(
            "nmsd_buffer_replayed_records_total",
            "Batches a sink read back from its disk buffer."
        );
        metrics::describe_counter!(
            "nmsd_buffer_appended_rows_total",
            "Rows appended to a sink's disk buffer (acknowledged by nmsd: from here they survive \
             a crash of nmsd)."
        );
        metrics::describe_counter!(
            "nmsd_buffer_dropped_records_total",
            "Batches a disk buffer dropped, by reason (including batches a previous run left, \
             whose rows are not known until read)."
        );
        metrics::describe_counter!(
            "nmsd_buffer_corrupt_bytes_total",
            "Bytes skipped over damaged places in a disk buffer."
        );
        metrics::describe_counter!(
            "nmsd_buffer_corrupt_records_total",
            "Damaged places found in a disk buffer (torn tail, checksum mismatch, garbage), each \
             skipped and logged once."
        );
        metrics::gauge!("nmsd_buffer_max_bytes", "sink" => s.clone()).set(max as f64);
        BufferMetrics {
            bytes: metrics::gauge!("nmsd_buffer_bytes", "sink" => s.clone()),
            records: metrics::gauge!("nmsd_buffer_records", "sink" => s.clone()),
            oldest_age: metrics::gauge!("nmsd_buffer_oldest_record_age_seconds", "sink" => s.clone()),
            backlog_records: metrics::gauge!("nmsd_buffer_backlog_records", "sink" => s.clone()),
            replayed_rows: metrics::counter!("nmsd_buffer_replayed_rows_total", "sink" => s.clone()),
            replayed_records: metrics::counter!("nmsd_buffer_replayed_records_total", "sink" => s.clone()),
            appended_rows: metrics::counter!("nmsd_buffer_appended_rows_total", "sink" => s.clone()),
            corrupt_records: metrics::counter!("nmsd_buffer_corrupt_records_total", "sink" => s.clone()),
            corrupt_bytes: metrics::counter!("nmsd_buffer_corrupt_bytes_total", "sink" => s.clone()),
            sink: s,
        }
    }

    fn dropped(&self, reason: &'static str, rows: u64, records: u64) {
        metrics::counter!("nmsd_buffer_dropped_rows_total", "sink" => self.sink.clone(), "reason" => reason)
            .increment(rows);
        metrics::counter!("nmsd_buffer_dropped_records_total", "sink" => self.sink.clone(), "reason" => reason)
            .increment(records);
    }
}

struct Shared {
    state: Mutex<State>,
    /// Writer → sink: a record was appended, or the writer closed.
    readable: Condvar,
    /// Sink → writer: records were acknowledged (room), or the sink stopped.
    room: Condvar,
    metrics: BufferMetrics,
    status: Arc<SinkStatus>,
    sink: Arc<str>,
    max_size: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the log as consistent as its files are; go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log and count damage the log found (at open or while reading), once per place.
    fn report_damage(&self, st: &mut State) {
        for d in st.log.take_damage() {
            self.metrics.corrupt_records.increment(1);
            self.metrics.corrupt_bytes.increment(d.skipped_bytes);
            tracing::warn!(
                sink = %self.sink,
                segment = d.segment,
                offset = d.offset,
                skipped_bytes = d.skipped_bytes,
                "disk buffer: {d}; skipped, the records around it are replayed (counted in \
                 nmsd_buffer_corrupt_records_total)"
            );
        }
    }

    /// Gauges and the status snapshot.
    fn publish(&self, st: &State) {
        let bytes = st.log.size_bytes();
        let records = st.log.unacked_records();
        // Positions grow with append time, so the first of each set is its oldest.
        let oldest = st
            .inflight
            .first_key_value()
            .map(|(_, f)| f.appended_ms)
            .into_iter()
            .chain(st.unread.front().map(|u| u.appended_ms))
            .chain(st.previous_oldest_ms)
            .min();
        let age_s = oldest.map_or(0.0, |ms| ((now_ms() - ms).max(0) as f64) / 1000.0);
        // Every unacknowledged record is either handed out (in flight) or still to be read.
        let backlog = records.saturating_sub(st.inflight.len() as u64);
        self.metrics.bytes.set(bytes as f64);
        self.metrics.records.set(records as f64);
        self.metrics.oldest_age.set(age_s);
        self.metrics.backlog_records.set(backlog as f64);
        self.status.set_buffer(BufferSnapshot {
            bytes,
            max_bytes: self.max_size,
            records,
            backlog_records: backlog,
            oldest_age_s: age_s,
        });
    }
}

/// The sink's end of a disk buffer.
pub struct DiskInput {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    payload: Vec<u8>,
}

/// Open the buffer of sink `sink` in `dir` and start its writer thread, which takes from `rx`.
pub fn start(
    sink: &str,
    dir: PathBuf,
    cfg: &DiskBufferConfig,
    rx: SinkQueueReceiver,
    status: Arc<SinkStatus>,
) -> Result<DiskInput, BufferError> {
    let max_size = cfg.max_size.0;
    let log = SegmentLog::open(BufferConfig {
        dir: dir.clone(),
        max_size,
        segment_size: (max_size / 4).min(SEGMENT_MAX),
        when_full: match cfg.when_full {
            BufferWhenFull::Block => WhenFull::Block,
            BufferWhenFull::DropNewest => WhenFull::DropNewest,
            BufferWhenFull::DropOldest => WhenFull::DropOldest,
        },
        fsync: match cfg.fsync {
            BufferFsync::Never => FsyncPolicy::Never,
            BufferFsync::Always => FsyncPolicy::Always,
            BufferFsync::Every(d) => FsyncPolicy::Every(d),
        },
    })?;
    let mut st = State {
        run_start: log.tail(),
        log,
        closed: false,
        sink_gone: false,
        recent: VecDeque::new(),
        recent_bytes: 0,
        unread: VecDeque::new(),
        inflight: BTreeMap::new(),
        share_disk: 0,
        share_memory: 0,
        previous_oldest_ms: None,
        scratch: Vec::new(),
    };
    // What a previous run left: its oldest append time, and ids to start past.
    let left = st.log.unacked_records();
    let mut largest_id = 0;
    if left > 0 {
        let mut payload = Vec::new();
        if let Ok(Some(_)) = st.log.read_next(&mut payload)
            && let Ok((id, ms)) = envelope::header(&payload)
        {
            st.previous_oldest_ms = Some(ms);
            largest_id = id;
        }
        st.log.rewind();
        tracing::info!(
            sink,
            records = left,
            bytes = st.log.size_bytes(),
            dir = %dir.display(),
            "disk buffer holds batches from the previous run; replaying them next to live data"
        );
    }
    let metrics = BufferMetrics::new(sink, max_size);
    // The drop series that can happen under this policy exist from the start (at 0), so
    // dashboards and rate() see them before the first drop.
    metrics.dropped("write_error", 0, 0);
    match cfg.when_full {
        BufferWhenFull::Block => {}
        BufferWhenFull::DropNewest => metrics.dropped("drop_newest", 0, 0),
        BufferWhenFull::DropOldest => metrics.dropped("drop_oldest", 0, 0),
    }
    let shared = Arc::new(Shared {
        metrics,
        state: Mutex::new(st),
        readable: Condvar::new(),
        room: Condvar::new(),
        status,
        sink: Arc::from(sink),
        max_size,
    });
    {
        let mut st = shared.lock();
        shared.report_damage(&mut st);
        shared.publish(&st);
    }
    let tick = match cfg.fsync {
        BufferFsync::Every(d) => d.min(Duration::from_millis(100)),
        _ => Duration::from_millis(100),
    };
    let ids = BatchIds::after(largest_id);
    let w = shared.clone();
    let writer = std::thread::Builder::new()
        .name(format!("nmsd-buffer-{sink}"))
        .spawn(move || write_loop(&w, &rx, &ids, tick))
        .map_err(|source| BufferError::Io {
            dir,
            what: "starting the buffer's writer thread",
            source,
        })?;
    Ok(DiskInput {
        shared,
        writer: Some(writer),
        payload: Vec::new(),
    })
}

/// The writer thread: queue → log, until the queue closes (or the sink is gone).
fn write_loop(sh: &Shared, rx: &SinkQueueReceiver, ids: &BatchIds, tick: Duration) {
    let mut last_publish = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    let mut full_since: Option<Instant> = None;
    loop {
        match rx.recv_timeout(tick) {
            Ok(batch) => {
                append(sh, batch, ids.next(), &mut last_error_log, &mut full_since);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_publish.elapsed() >= tick {
            last_publish = Instant::now();
            let mut st = sh.lock();
            if let Err(e) = st.log.sync_if_due() {
                log_io_error(sh, &e, &mut last_error_log);
            }
            sh.publish(&st);
        }
    }
    let mut st = sh.lock();
    if let Err(e) = st.log.sync() {
        log_io_error(sh, &e, &mut last_error_log);
    }
    st.closed = true;
    sh.publish(&st);
    drop(st);
    sh.readable.notify_all();
}

fn log_io_error(sh: &Shared, e: &BufferError, last: &mut Option<Instant>) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
        *last = Some(Instant::now());
        tracing::error!(sink = %sh.sink, "disk buffer: {e}");
    }
}

fn append(
    sh: &Shared,
    batch: Batch,
    batch_id: u64,
    last_error_log: &mut Option<Instant>,
    full_since: &mut Option<Instant>,
) {
    let rows = batch.rows() as u64;
    let weight = batch.weight();
    let appended_ms = now_ms();
    let mut st = sh.lock();
    let mut scratch = std::mem::take(&mut st.scratch);
    if let Err(e) = envelope::encode(batch_id, appended_ms, &batch, &mut scratch) {
        // Only the flow view has no encoding, and the topology never routes it to a sink.
        drop(st);
        tracing::error!(sink = %sh.sink, rows, "disk buffer cannot store a batch: {e}");
        sh.metrics.dropped("unsupported", rows, 1);
        sh.status.add_dropped(rows);
        return;
    }
    loop {
        match st.log.append(&scratch) {
            Ok(Appended::Written { at, dropped_oldest }) => {
                if full_since.take().is_some() {
                    tracing::info!(sink = %sh.sink, "disk buffer has room again; taking from the queue");
                }
                if dropped_oldest > 0 {
                    forget_dropped(sh, &mut st, dropped_oldest);
                }
                sh.metrics.appended_rows.increment(rows);
                st.unread.push_back(Unread {
                    at,
                    rows,
                    appended_ms,
                });
                st.recent.push_back(Recent {
                    at,
                    batch,
                    batch_id,
                    appended_ms,
                    weight,
                });
                st.recent_bytes += weight;
                while st.recent_bytes > RECENT_MAX_BYTES && st.recent.len() > 1 {
                    if let Some(r) = st.recent.pop_front() {
                        st.recent_bytes -= r.weight;
                    }
                }
                break;
            }
            Ok(Appended::DroppedNewest) => {
                sh.metrics.dropped("drop_newest", rows, 1);
                sh.status.add_dropped(rows);
                break;
            }
            Err(BufferError::Full { size, max }) => {
                if st.sink_gone {
                    // Full, and nobody will ever make room: the batch is lost with the
                    // process.
                    sh.metrics.dropped("shutdown", rows, 1);
                    sh.status.add_dropped(rows);
                    break;
                }
                if full_since.is_none() {
                    *full_since = Some(Instant::now());
                    tracing::warn!(
                        sink = %sh.sink,
                        size,
                        max,
                        "disk buffer is full (when_full = \"block\"); no longer taking from the \
                         sink's queue, which sheds by priority (raw flows first) while the sink \
                         is behind"
                    );
                }
                sh.publish(&st);
                st = sh
                    .room
                    .wait_timeout(st, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            Err(e) => {
                // A write error (disk full, I/O error) or a batch larger than a segment: the
                // batch cannot be kept.
                log_io_error(sh, &e, last_error_log);
                sh.metrics.dropped("write_error", rows, 1);
                sh.status.add_dropped(rows);
                break;
            }
        }
    }
    st.scratch = scratch;
    drop(st);
    sh.readable.notify_one();
}

/// `drop_oldest` deleted segments: forget what they held, counting the rows nobody read.
fn forget_dropped(sh: &Shared, st: &mut State, records: u64) {
    let first = st.log.acked();
    let mut rows = 0;
    let mut known = 0;
    while st.unread.front().is_some_and(|u| u.at < first) {
        if let Some(u) = st.unread.pop_front() {
            rows += u.rows;
            known += 1;
        }
    }
    while st.recent.front().is_some_and(|r| r.at < first) {
        if let Some(r) = st.recent.pop_front() {
            st.recent_bytes -= r.weight;
        }
    }
    // Handed out and being written: they still arrive; their acks are moot.
    st.inflight.retain(|at, _| *at >= first);
    if st.run_start < first {
        st.previous_oldest_ms = None;
    }
    sh.metrics.dropped("drop_oldest", rows, records);
    // Records a previous run left have no known row count until read.
    sh.status.add_dropped(rows);
    if records > known {
        tracing::warn!(
            sink = %sh.sink,
            records = records - known,
            "disk buffer dropped batches a previous run left (when_full = \"drop_oldest\")"
        );
    }
}

impl DiskInput {
    /// The next batch, in memory or on disk, under the replay share; None if there is none.
    fn next(&mut self) -> Option<Delivery> {
        let sh = self.shared.clone();
        let mut st = sh.lock();
        loop {
            // Records already handed out from memory are stepped over.
            let next_on_disk = st.log.peek_next().map(|(at, _)| at);
            if let Some(at) = next_on_disk
                && st.inflight.contains_key(&at)
            {
                st.log.skip_next();
                // It may be done already (handed out from memory ahead of the cursor and
                // written): passing it is what lets the acknowledgement past it. Without
                // this, live batches written during a replay stayed unacknowledged until the
                // next `done`, which never came once traffic stopped (the full-buffer test
                // found 880 such records under `drop_newest`).
                self.ack(&mut st);
                continue;
            }
            // Drop memory entries that are behind the cursor (read from disk already).
            while let (Some(r), Some(at)) = (st.recent.front(), next_on_disk) {
                if r.at >= at {
                    break;
                }
                if let Some(r) = st.recent.pop_front() {
                    st.recent_bytes -= r.weight;
                }
            }
            if next_on_disk.is_none_or(|at| at >= st.run_start) {
                // What a previous run left is all read.
                st.previous_oldest_ms = None;
            }
            let at = next_on_disk?;
            let in_order = st.recent.front().is_some_and(|r| r.at == at);
            let memory_ahead = !in_order && !st.recent.is_empty();
            let take_memory = in_order
                || (memory_ahead
                    && st.share_disk * (100 - REPLAY_SHARE_PERCENT)
                        > st.share_memory * REPLAY_SHARE_PERCENT);
            if take_memory {
                let r = st.recent.pop_front()?;
                st.recent_bytes -= r.weight;
                if in_order {
                    st.log.skip_next();
                } else {
                    st.share_memory += r.batch.rows() as u64;
                }
                if let Some(p) = st.unread.iter().rposition(|u| u.at == r.at) {
                    st.unread.remove(p);
                }
                return Some(hand_out(&mut st, r.at, r.batch, r.batch_id, r.appended_ms));
            }
            // From disk.
            let read = st.log.read_next(&mut self.payload);
            sh.report_damage(&mut st);
            let info = match read {
                Ok(Some(info)) => info,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(sink = %sh.sink, "disk buffer: cannot read: {e}");
                    return None;
                }
            };
            if info.at >= st.run_start {
                if st.unread.front().is_some_and(|u| u.at == info.at) {
                    st.unread.pop_front();
                } else if let Some(p) = st.unread.iter().position(|u| u.at == info.at) {
                    st.unread.remove(p);
                }
                st.previous_oldest_ms = None;
            }
            match envelope::decode(&self.payload) {
                Ok(e) => {
                    let rows = e.batch.rows() as u64;
                    if memory_ahead {
                        st.share_disk += rows;
                    }
                    sh.metrics.replayed_rows.increment(rows);
                    sh.metrics.replayed_records.increment(1);
                    if info.at < st.run_start {
                        st.previous_oldest_ms = Some(e.appended_ms);
                    }
                    return Some(hand_out(
                        &mut st,
                        info.at,
                        e.batch,
                        e.batch_id,
                        e.appended_ms,
                    ));
                }
                Err(e) => {
                    // Intact on disk (the checksum held) but not a batch this build reads: a
                    // newer version's, or a bug. Counted, logged, acknowledged, skipped.
                    tracing::error!(
                        sink = %sh.sink,
                        segment = info.at.segment,
                        offset = info.at.offset,
                        "disk buffer: a batch does not decode and is skipped: {e}"
                    );
                    sh.metrics.dropped("undecodable", 0, 1);
                    st.inflight.insert(
                        info.at,
                        InFlight {
                            rows: 0,
                            appended_ms: now_ms(),
                            done: true,
                        },
                    );
                    self.ack(&mut st);
                }
            }
        }
    }

    /// Acknowledge the log up to the first record handed out and not done (never past the
    /// log's cursor, since nothing beyond it has been handed out in order).
    fn ack(&self, st: &mut State) {
        let read = st.log.read_position();
        let mut upto = None;
        for (at, f) in st.inflight.range(..read) {
            if !f.done {
                upto = Some(*at);
                break;
            }
        }
        let upto = upto.unwrap_or(read);
        if upto <= st.log.acked() {
            return;
        }
        if let Err(e) = st.log.ack(upto) {
            tracing::error!(sink = %self.shared.sink, "disk buffer: cannot acknowledge: {e}");
            return;
        }
        let keep = st.inflight.split_off(&upto);
        st.inflight = keep;
        self.shared.room.notify_all();
    }
}

fn hand_out(
    st: &mut State,
    at: Position,
    batch: Batch,
    batch_id: u64,
    appended_ms: i64,
) -> Delivery {
    st.inflight.insert(
        at,
        InFlight {
            rows: batch.rows() as u64,
            appended_ms,
            done: false,
        },
    );
    Delivery {
        batch,
        batch_id,
        token: DeliveryToken(at.segment, at.offset),
    }
}

impl SinkInput for DiskInput {
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.next() {
                return Ok(d);
            }
            let sh = self.shared.clone();
            let mut st = sh.lock();
            if st.closed && st.log.peek_next().is_none() {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            let _unused = sh
                .readable
                .wait_timeout(st, left.min(Duration::from_millis(50)));
        }
    }

    fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        if let Some(d) = self.next() {
            return Ok(d);
        }
        let st = self.shared.lock();
        if st.closed {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    fn done(&mut self, token: DeliveryToken) {
        let sh = self.shared.clone();
        let mut st = sh.lock();
        let at = Position {
            segment: token.0,
            offset: token.1,
        };
        if let Some(f) = st.inflight.get_mut(&at) {
            f.done = true;
        }
        self.ack(&mut st);
    }

    fn durable(&self) -> bool {
        true
    }

    fn held(&self) -> Held {
        let st = self.shared.lock();
        Held {
            bytes: st.log.size_bytes(),
            records: st.log.unacked_records(),
            rows: st.unread.iter().map(|u| u.rows).sum::<u64>()
                + st.inflight
                    .values()
                    .filter(|f| !f.done)
                    .map(|f| f.rows)
                    .sum::<u64>(),
        }
    }
}

impl Drop for DiskInput {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.sink_gone = true;
            if let Err(e) = st.log.persist_ack_now() {
                tracing::error!(sink = %self.shared.sink, "disk buffer: {e}");
            }
        }
        self.shared.room.notify_all();
        // The writer appends what the queue still holds and stops once every sender is gone
        // (the collector stops them before the sinks). Wait for that, but not forever: a
        // sender that never lets go must not hold the process.
        let deadline = Instant::now() + WRITER_CLOSE_WAIT;
        let mut st = self.shared.lock();
        while !st.closed && Instant::now() < deadline {
            st = self
                .shared
                .readable
                .wait_timeout(st, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let closed = st.closed;
        drop(st);
        if let Some(w) = self.writer.take()
            && closed
        {
            let _ = w.join();
        }
        let st = self.shared.lock();
        self.shared.publish(&st);
        let records = st.log.unacked_records();
        if records > 0 {
            tracing::info!(
                sink = %self.shared.sink,
                records,
                bytes = st.log.size_bytes(),
                "disk buffer keeps {records} unwritten batches for the next start"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_pipeline::FlowRecord;
    use nmsd_pipeline::queue::{QueueBounds, SinkQueue, sink_queue};
    use nmsd_pipeline::ring::FullPolicy;

    fn flows(first: u64, n: usize) -> Batch {
        Batch::flows(
            (0..n)
                .map(|i| FlowRecord {
                    bytes: first + i as u64,
                    ..FlowRecord::default()
                })
                .collect(),
        )
    }

    fn open(dir: &std::path::Path, cfg: &DiskBufferConfig) -> (SinkQueue, DiskInput) {
        let (q, rx) = sink_queue(
            "test",
            QueueBounds {
                capacity: 1024,
                max_bytes: 1 << 30,
                policy: FullPolicy::Block,
            },
        );
        let input = start(
            "test",
            dir.to_path_buf(),
            cfg,
            rx,
            Arc::new(SinkStatus::default()),
        )
        .expect("opens");
        (q, input)
    }

    fn first_bytes(d: &Delivery) -> u64 {
        match &d.batch {
            Batch::Flows(r) => r[0].bytes,
            _ => u64::MAX,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nmsd-disk-buffer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn what_is_not_done_is_replayed_after_a_restart_and_nothing_else() {
        let dir = tmp("restart");
        let cfg = DiskBufferConfig::default();
        let mut ids = Vec::new();
        {
            let (q, mut input) = open(&dir, &cfg);
            for i in 0..10 {
                assert!(q.send(flows(i * 100, 10)));
            }
            drop(q);
            let mut got = Vec::new();
            while let Ok(d) = input.recv_timeout(Duration::from_secs(5)) {
                got.push(d);
            }
            assert_eq!(got.len(), 10);
            // The first four and the sixth are written; the rest are not.
            for (i, d) in got.iter().enumerate() {
                ids.push(d.batch_id);
                if i < 4 || i == 5 {
                    input.done(d.token);
                }
            }
        }
        let (q, mut input) = open(&dir, &cfg);
        drop(q);
        let mut replayed = Vec::new();
        while let Ok(d) = input.recv_timeout(Duration::from_secs(5)) {
            replayed.push((first_bytes(&d), d.batch_id));
            input.done(d.token);
        }
        // From the first not done, in order: the sixth was written but lies behind the ack
        // point, so it comes again (with its id, which DEDUP collapses).
        let expect: Vec<(u64, u64)> = (4..10).map(|i| (i * 100, ids[i as usize])).collect();
        assert_eq!(replayed, expect);
        drop(input);
        let (q, mut input) = open(&dir, &cfg);
        drop(q);
        assert!(matches!(
            input.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        ));
        drop(input);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A buffer in `dir` that a previous run left the batches `previous` in, reopened, with
    /// the live batches `live` appended (each batch's first flow has the index as bytes).
    fn previous_then_live(
        dir: &std::path::Path,
        cfg: &DiskBufferConfig,
        previous: std::ops::Range<u64>,
        live: std::ops::Range<u64>,
    ) -> (SinkQueue, DiskInput) {
        {
            let (q, input) = open(dir, cfg);
            for i in previous {
                assert!(q.send(flows(i, 10)));
            }
            drop(q);
            drop(input);
        }
        let (q, input) = open(dir, cfg);
        for i in live {
            assert!(q.send(flows(i, 10)));
        }
        // Let the writer append them.
        std::thread::sleep(Duration::from_millis(300));
        (q, input)
    }

    #[test]
    fn a_backlog_shares_the_sink_with_live_batches() {
        let dir = tmp("share");
        let cfg = DiskBufferConfig::default();
        let (q, mut input) = previous_then_live(&dir, &cfg, 0..20, 1000..1020);
        let mut order = Vec::new();
        for _ in 0..20 {
            let d = input.recv_timeout(Duration::from_secs(5)).expect("a batch");
            order.push(first_bytes(&d) >= 1000);
            input.done(d.token);
        }
        let live = order.iter().filter(|l| **l).count();
        assert!(
            (9..=11).contains(&live),
            "half live, half replay: {order:?}"
        );
        drop(q);
        let mut rest = 0;
        while let Ok(d) = input.recv_timeout(Duration::from_secs(5)) {
            rest += 1;
            input.done(d.token);
        }
        assert_eq!(rest, 20, "every batch exactly once");
        drop(input);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Live batches handed out ahead of the replay and written before the replay reaches
    /// them are acknowledged when it does, with no later `done` to trigger it.
    #[test]
    fn batches_written_ahead_of_the_replay_are_acknowledged_when_it_passes_them() {
        let dir = tmp("ahead");
        let cfg = DiskBufferConfig::default();
        let (q, mut input) = previous_then_live(&dir, &cfg, 0..3, 1000..1002);
        // Disk, memory, disk, memory, disk (the replay share), each written as it arrives:
        // both live batches are handed out and written before the replay reaches them.
        let mut live = 0;
        for _ in 0..5 {
            let d = input.recv_timeout(Duration::from_secs(5)).expect("a batch");
            live += usize::from(first_bytes(&d) >= 1000);
            input.done(d.token);
        }
        assert_eq!(live, 2);
        // Nothing more to hand out; the replay's cursor passes the two live batches.
        assert!(input.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(input.held().records, 0, "every batch was written");
        drop(q);
        drop(input);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn drop_newest_counts_what_did_not_fit() {
        let dir = tmp("full");
        let cfg = DiskBufferConfig {
            max_size: nmsd_pipeline::units::ByteSize(16 << 20),
            when_full: BufferWhenFull::DropNewest,
            fsync: BufferFsync::Never,
        };
        let status = Arc::new(SinkStatus::default());
        let (q, rx) = sink_queue(
            "full",
            QueueBounds {
                capacity: 100_000,
                max_bytes: 64 << 30,
                policy: FullPolicy::Block,
            },
        );
        let mut input = start("full", dir.clone(), &cfg, rx, status.clone()).expect("opens");
        let mut sent = 0u64;
        for i in 0..400 {
            let b = flows(i, 1000);
            sent += b.rows() as u64;
            assert!(q.send(b));
        }
        drop(q);
        let mut kept = 0u64;
        // Nothing is done until the writer has closed: the buffer is full of unwritten rows.
        std::thread::sleep(Duration::from_millis(500));
        while let Ok(d) = input.recv_timeout(Duration::from_secs(5)) {
            kept += d.batch.rows() as u64;
            input.done(d.token);
        }
        assert!(status.rows_dropped() > 0, "16 MiB cannot hold 400k flows");
        assert_eq!(kept + status.rows_dropped(), sent);
        drop(input);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
