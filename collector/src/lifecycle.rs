//! systemd integration: readiness, watchdog, stopping (and what stopping lost).
//!
//! sd_notify is a datagram to the socket named in $NOTIFY_SOCKET; a few lines replace a crate.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nmsd_sinks::SinkStatus;

/// Send a state line (e.g. `READY=1`) to systemd; a no-op outside systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    // Called on the control-plane runtime: a receiver that does not read (its queue holds
    // net.unix.max_dgram_qlen datagrams) must not block it.
    let _ = sock.set_nonblocking(true);
    let path = path.to_string_lossy().into_owned();
    let result = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::debug!("sd_notify {state}: {e}");
    }
}

/// Feed the systemd watchdog every `every` while the pipeline makes progress. A stuck receive
/// thread, parse worker or sink stops the feeding (the control-plane runtime answering proves
/// nothing about the data path), and systemd restarts nmsd after `WatchdogSec`.
pub async fn feed_watchdog(every: Duration, liveness: Arc<nmsd_pipeline::heartbeat::Liveness>) {
    let mut t = tokio::time::interval(every);
    loop {
        t.tick().await;
        if liveness.healthy() {
            notify("WATCHDOG=1");
        }
    }
}

/// Half the watchdog interval systemd asked for, if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// After the shutdown deadline, how long a sink that gave up gets to count what it held before
/// the process leaves it behind.
pub const SINK_ACCOUNTING_GRACE: Duration = Duration::from_millis(500);

/// Join `h` if it finishes by `deadline`; otherwise leave it running (the process is about to
/// exit) and note its name in `stuck`.
pub fn join_until(h: JoinHandle<()>, deadline: Instant, stuck: &mut Vec<String>) {
    while !h.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if h.is_finished() {
        let _ = h.join();
    } else {
        stuck.push(h.thread().name().unwrap_or("unnamed").to_string());
    }
}

/// What a sink was given and what became of it, for the shutdown report.
pub struct SinkLedger {
    pub name: String,
    /// Rows its queue accepted from workers and the SNMP engine.
    pub accepted_rows: Arc<AtomicU64>,
    pub status: Arc<SinkStatus>,
}

impl SinkLedger {
    fn thread_name(&self) -> String {
        format!("nmsd-sink-{}", self.name)
    }
}

/// How stopping went: rows accepted into the pipeline and then lost, threads left behind.
#[derive(Debug)]
pub struct ShutdownReport {
    /// Per sink: (name, rows written, rows lost at shutdown).
    pub sinks: Vec<(String, u64, u64)>,
    /// Threads still running at the deadline.
    pub stuck: Vec<String>,
    /// Of those, the ones whose losses the sinks' ledgers cannot tell (parse workers, receive
    /// threads): what they held is unknown, so it counts as lost.
    pub stuck_unaccounted: Vec<String>,
    pub elapsed: Duration,
}

impl ShutdownReport {
    pub fn new(ledgers: &[SinkLedger], stuck: Vec<String>, elapsed: Duration) -> Self {
        let sinks = ledgers
            .iter()
            .map(|l| {
                let s = &l.status;
                let mut lost = s.rows_lost();
                // A disk buffer keeps what a stuck sink holds (its writer thread goes on
                // appending the queue), so only a memory-only sink loses it.
                if stuck.contains(&l.thread_name()) && s.buffer().is_none() {
                    // Left behind mid-request or mid-retry: everything it was given and did
                    // not settle (written, rejected or counted lost) is lost with the process.
                    let accepted = l.accepted_rows.load(Ordering::Relaxed);
                    let held = accepted
                        .saturating_sub(s.rows_written())
                        .saturating_sub(s.rows_rejected())
                        .saturating_sub(s.rows_dropped())
                        .saturating_sub(s.rows_kept())
                        .saturating_sub(lost);
                    metrics::counter!("nmsd_sink_rows_failed_total", "sink" => l.name.clone(), "reason" => "shutdown")
                        .increment(held);
                    lost += held;
                }
                (l.name.clone(), s.rows_written(), lost)
            })
            .collect();
        let stuck_unaccounted = stuck
            .iter()
            .filter(|t| !ledgers.iter().any(|l| l.thread_name() == **t))
            .cloned()
            .collect();
        ShutdownReport {
            sinks,
            stuck,
            stuck_unaccounted,
            elapsed,
        }
    }

    /// Rows accepted and then lost.
    pub fn rows_lost(&self) -> u64 {
        self.sinks.iter().map(|s| s.2).sum()
    }

    pub fn log(&self) {
        let elapsed_ms = self.elapsed.as_millis() as u64;
        if !self.stuck.is_empty() {
            tracing::warn!(
                threads = ?self.stuck,
                "shutdown deadline reached; leaving threads that have not finished"
            );
        }
        for (sink, written, lost) in &self.sinks {
            if *lost > 0 {
                tracing::error!(
                    sink = %sink,
                    rows_written = written,
                    rows_lost = lost,
                    "shutdown: {lost} rows accepted by the {sink} sink were not written and are \
                     lost (nmsd_sink_rows_failed_total{{reason=\"shutdown\"}})"
                );
            }
        }
        if self.is_clean() {
            tracing::info!(elapsed_ms, "shutdown complete; nothing lost");
        } else {
            tracing::error!(
                elapsed_ms,
                rows_lost = self.rows_lost(),
                "shutdown complete with losses"
            );
        }
    }

    /// Nothing lost, and nothing left behind that could have held data uncounted.
    pub fn is_clean(&self) -> bool {
        self.rows_lost() == 0 && self.stuck_unaccounted.is_empty()
    }

    /// Ok when clean; otherwise an error, so the process exits non-zero.
    pub fn into_result(self) -> anyhow::Result<()> {
        if self.is_clean() {
            return Ok(());
        }
        let mut what = Vec::new();
        if self.rows_lost() > 0 {
            what.push(format!("{} rows lost at shutdown", self.rows_lost()));
        }
        if !self.stuck_unaccounted.is_empty() {
            what.push(format!(
                "threads still running at the deadline, with whatever they held: {}",
                self.stuck_unaccounted.join(", ")
            ));
        }
        anyhow::bail!("{}", what.join("; "))
    }
}
