//! `nmsd-e2e`: end-to-end ingest benchmark on loopback, nmsd side by side with its peers.
//!
//! Targets: `ceiling` (udp-sink, a bare recvmmsg counter), `nmsd` (sink disabled), `questdb`
//! (QuestDB sink, roll-ups only), `questdb-raw` (QuestDB sink with raw flow rows), the peers
//! `goflow2`, `nfacctd` and `nfcapd` (see `nmsd_benches::peers`), and the QuestDB sink bench
//! `questdb-sink` (nmsd's sink fed faster than QuestDB takes rows) with `questdb-ceiling` (a
//! bare questdb-rs loop writing the same rows: the sink's ceiling).
//!
//! Each rate target receives the same replayed stream (in-process sendmmsg sender, see
//! `nmsd_benches::replay`) at increasing rates; before and after each step the harness reads
//! the target's own counters, its process tree's CPU time and peak RSS from /proc and its
//! socket's kernel drops from /proc/net/udp. `--runs N` repeats the whole sweep; the report
//! gives medians with min–max, and nmsd / best-peer ratios computed within each run. It writes
//! a Markdown report, a CSV of every step and (with matplotlib) a PNG plot under `--out`.
//!
//! Run it through `benches/e2e.sh`, which builds everything in release first.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nmsd_benches::child::Proc;
use nmsd_benches::qdb::{self, BareConfig, QuestDb};
use nmsd_benches::replay::{ReplayConfig, ReplayReport, replay};
use nmsd_benches::stats::Spread;
use nmsd_benches::stream::Stream;
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_benches::{
    free_tcp_port, free_udp_port, http_agent, http_get, parse_si, peers, procfs, prom, si,
    workspace_dir,
};

const USAGE: &str = "\
nmsd-e2e — end-to-end ingest benchmark of nmsd and its peers on loopback (use benches/e2e.sh)

USAGE:
    nmsd-e2e [options]

TARGETS AND RATES:
    --targets LIST        comma-separated, run in this order (default ceiling,nmsd):
                            ceiling      udp-sink, a bare recvmmsg counter
                            nmsd         nmsd, rollup processor, sink disabled
                            nmsd-inline  the same, run to completion ([pipeline] receive =
                                         \"inline\": each socket's thread decodes)
                            nmsd-decode  nmsd, no processors, sink disabled (receive + decode)
                            questdb      nmsd + QuestDB sink, roll-up rows only
                            questdb-raw  nmsd + QuestDB sink with raw flow rows
                            goflow2      goflow2 (bin format to /dev/null)
                            nfacctd      pmacct nfacctd, print plugin counting flows per protocol
                            nfcapd       nfdump nfcapd, -B 4194304, binary files
                            questdb-sink     nmsd's QuestDB sink fed faster than QuestDB takes
                            questdb-ceiling  bare questdb-rs loop writing the same rows
    --rates LIST          datagrams/s steps (default 5k,10k,25k,50k,60k,70k,80k,100k,150k,
                          200k,300k)
    --runs N              repeat the whole sweep N times (default 5); medians and min–max
    --duration SECS       seconds per step (default 10)
    --grace SECS          counting stops this long after the send ends (default 2): flows a
                          collector has not counted by then are lost (it is falling behind)
    --stop-loss PCT       stop raising the rate after two steps in a row lose more than PCT %
                          (default 1)

TRAFFIC:
    --generate FORMAT     softflowd-like v9 (default), ipfix, or v5
    --pcap FILE           replay this capture's export datagrams instead
    --flows N             distinct flows generated (default 20000)
    --exporters N         independent exporters (sockets) sharing the rate (default 1)
    --burst N             datagrams per sendmmsg (default 32)
    --template-every N    template refresh period in datagrams (default 1000)

NMSD:
    --workers N           nmsd [pipeline] workers (default 0 = one per core)
    --ring-policy P       nmsd ring_full_policy: block (default, as shipped) or drop

QUESTDB SINK BENCH (questdb-sink, questdb-ceiling):
    --sink-rate R         datagrams/s fed to nmsd for questdb-sink (default 15k: ~400k flows/s,
                          above what QuestDB takes here, without starving it of CPU)
    --sink-rows N         rows the bare loop writes per run (default 3M)
    --sink-batch N        rows per flush, both (default 50000, nmsd's batch_rows default)
    --sink-batch-bytes B  ...or ILP bytes per flush, both (default 1 MiB, nmsd's batch_bytes
                          default; k/M suffixes are powers of 1000)
    --sink-buffer B       the QuestDB sink's buffer: disk (default, as shipped) or memory

PEERS:
    --goflow2-format F    goflow2 output encoding: bin (default) or json
    --goflow2 PATH        goflow2 binary (default: $GOBIN, $GOPATH/bin, ~/go/bin, PATH)

PATHS:
    --nmsd PATH           nmsd binary (default: next to this one)
    --udp-sink PATH       udp-sink binary (default: next to this one)
    --out DIR             results directory (default <workspace>/bench-results)
    --keep                keep the scratch directory (configs, logs, QuestDB data; nfcapd's flow
                          files are always removed)
    --no-plot             do not draw the PNG
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Ceiling,
    Nmsd,
    NmsdInline,
    NmsdDecode,
    QuestDb,
    QuestDbRaw,
    Goflow2,
    Nfacctd,
    Nfcapd,
    QuestDbSink,
    QuestDbCeiling,
}

const ALL_TARGETS: [Target; 11] = [
    Target::Ceiling,
    Target::Nmsd,
    Target::NmsdInline,
    Target::NmsdDecode,
    Target::QuestDb,
    Target::QuestDbRaw,
    Target::Goflow2,
    Target::Nfacctd,
    Target::Nfcapd,
    Target::QuestDbSink,
    Target::QuestDbCeiling,
];

impl Target {
    fn parse(s: &str) -> Option<Target> {
        ALL_TARGETS.into_iter().find(|t| t.name() == s.trim())
    }

    fn name(self) -> &'static str {
        match self {
            Target::Ceiling => "ceiling",
            Target::Nmsd => "nmsd",
            Target::NmsdInline => "nmsd-inline",
            Target::NmsdDecode => "nmsd-decode",
            Target::QuestDb => "questdb",
            Target::QuestDbRaw => "questdb-raw",
            Target::Goflow2 => "goflow2",
            Target::Nfacctd => "nfacctd",
            Target::Nfcapd => "nfcapd",
            Target::QuestDbSink => "questdb-sink",
            Target::QuestDbCeiling => "questdb-ceiling",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Target::Ceiling => "udp-sink: recvmmsg loop that only counts (the receive ceiling)",
            Target::Nmsd => "nmsd, rollup processor, sink disabled",
            Target::NmsdInline => {
                "nmsd run to completion ([pipeline] receive = \"inline\"), rollup, sink disabled"
            }
            Target::NmsdDecode => "nmsd, no processors, sink disabled (receive and decode only)",
            Target::QuestDb => "nmsd, rollup processor, QuestDB sink (roll-up rows only)",
            Target::QuestDbRaw => "nmsd, rollup processor, QuestDB sink with raw flow rows",
            Target::Goflow2 => "goflow2, NetFlow pipe (1 socket, 2 workers, 1M-datagram queue)",
            Target::Nfacctd => "pmacct nfacctd, print plugin aggregating flows per protocol",
            Target::Nfcapd => "nfdump nfcapd, binary flow files, fresh process per step",
            Target::QuestDbSink => "nmsd's QuestDB sink (raw rows) fed faster than it can write",
            Target::QuestDbCeiling => "bare questdb-rs sender loop writing the same rows",
        }
    }

    fn uses_questdb(self) -> bool {
        matches!(
            self,
            Target::QuestDb | Target::QuestDbRaw | Target::QuestDbSink | Target::QuestDbCeiling
        )
    }

    fn is_peer(self) -> bool {
        matches!(self, Target::Goflow2 | Target::Nfacctd | Target::Nfcapd)
    }

    /// nmsd with its rate sweep (the ones compared with the peers).
    fn is_nmsd(self) -> bool {
        matches!(
            self,
            Target::Nmsd
                | Target::NmsdInline
                | Target::NmsdDecode
                | Target::QuestDb
                | Target::QuestDbRaw
        )
    }

    /// Targets swept over the rates (the others are the QuestDB sink bench).
    fn is_sweep(self) -> bool {
        !matches!(self, Target::QuestDbSink | Target::QuestDbCeiling)
    }

    /// The target exposes how many datagrams it received.
    fn counts_datagrams(self) -> bool {
        matches!(
            self,
            Target::Ceiling
                | Target::Nmsd
                | Target::NmsdInline
                | Target::NmsdDecode
                | Target::QuestDb
                | Target::QuestDbRaw
                | Target::Goflow2
        )
    }

    /// The target decodes and counts flows.
    fn counts_flows(self) -> bool {
        self.is_sweep() && self != Target::Ceiling
    }
}

struct Args {
    targets: Vec<Target>,
    rates: Vec<f64>,
    runs: usize,
    duration: Duration,
    grace: Duration,
    format: Format,
    pcap: Option<PathBuf>,
    flows: usize,
    exporters: usize,
    burst: usize,
    template_every: u64,
    workers: usize,
    ring_policy: String,
    sink_buffer: String,
    stop_loss_pct: f64,
    sink_rate: f64,
    sink_rows: u64,
    sink_batch: usize,
    sink_batch_bytes: u64,
    goflow2_format: String,
    goflow2: Option<PathBuf>,
    nmsd: PathBuf,
    udp_sink: PathBuf,
    out: PathBuf,
    keep: bool,
    plot: bool,
}

fn value(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "argument is not UTF-8".to_string())
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut a = Args {
        targets: vec![Target::Ceiling, Target::Nmsd],
        rates: vec![
            5e3, 10e3, 25e3, 50e3, 60e3, 70e3, 80e3, 100e3, 150e3, 200e3, 300e3,
        ],
        runs: 5,
        duration: Duration::from_secs(10),
        grace: Duration::from_secs(2),
        format: Format::V9,
        pcap: None,
        flows: 20_000,
        exporters: 1,
        burst: 32,
        template_every: 1000,
        workers: 0,
        ring_policy: "block".into(),
        sink_buffer: "disk".into(),
        stop_loss_pct: 1.0,
        sink_rate: 15e3,
        sink_rows: 3_000_000,
        sink_batch: 50_000,
        sink_batch_bytes: nmsd_sinks::questdb::DEFAULT_BATCH_BYTES,
        goflow2_format: "bin".into(),
        goflow2: None,
        nmsd: exe_dir.join("nmsd"),
        udp_sink: exe_dir.join("udp-sink"),
        out: workspace_dir().join("bench-results"),
        keep: false,
        plot: true,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("targets") => {
                a.targets = value(&mut p)?
                    .split(',')
                    .map(|t| Target::parse(t).ok_or(format!("unknown target \"{t}\"")))
                    .collect::<Result<_, _>>()?;
            }
            Long("rates") => {
                a.rates = value(&mut p)?
                    .split(',')
                    .map(parse_si)
                    .collect::<Result<_, _>>()?;
            }
            Long("runs") => a.runs = (parse_si(&value(&mut p)?)? as usize).max(1),
            Long("duration") => a.duration = Duration::from_secs_f64(parse_si(&value(&mut p)?)?),
            Long("grace") => a.grace = Duration::from_secs_f64(parse_si(&value(&mut p)?)?),
            Long("generate") => {
                let v = value(&mut p)?;
                a.format = Format::parse(&v).ok_or(format!("unknown format \"{v}\""))?;
            }
            Long("pcap") => a.pcap = Some(value(&mut p)?.into()),
            Long("flows") => a.flows = parse_si(&value(&mut p)?)? as usize,
            Long("exporters") => a.exporters = (parse_si(&value(&mut p)?)? as usize).max(1),
            Long("burst") => a.burst = parse_si(&value(&mut p)?)? as usize,
            Long("template-every") => a.template_every = parse_si(&value(&mut p)?)? as u64,
            Long("workers") => a.workers = parse_si(&value(&mut p)?)? as usize,
            Long("ring-policy") => {
                a.ring_policy = value(&mut p)?;
                if a.ring_policy != "drop" && a.ring_policy != "block" {
                    return Err("--ring-policy is drop or block".into());
                }
            }
            Long("sink-buffer") => {
                a.sink_buffer = value(&mut p)?;
                if a.sink_buffer != "disk" && a.sink_buffer != "memory" {
                    return Err("--sink-buffer is disk or memory".into());
                }
            }
            Long("stop-loss") => a.stop_loss_pct = parse_si(&value(&mut p)?)?,
            Long("sink-rate") => a.sink_rate = parse_si(&value(&mut p)?)?,
            Long("sink-rows") => a.sink_rows = parse_si(&value(&mut p)?)? as u64,
            Long("sink-batch") => a.sink_batch = (parse_si(&value(&mut p)?)? as usize).max(1),
            Long("sink-batch-bytes") => {
                a.sink_batch_bytes =
                    (parse_si(&value(&mut p)?)? as u64).max(nmsd_sinks::questdb::MIN_BATCH_BYTES)
            }
            Long("goflow2-format") => {
                a.goflow2_format = value(&mut p)?;
                if a.goflow2_format != "bin" && a.goflow2_format != "json" {
                    return Err("--goflow2-format is bin or json".into());
                }
            }
            Long("goflow2") => a.goflow2 = Some(value(&mut p)?.into()),
            Long("nmsd") => a.nmsd = value(&mut p)?.into(),
            Long("udp-sink") => a.udp_sink = value(&mut p)?.into(),
            Long("out") => a.out = value(&mut p)?.into(),
            Long("keep") => a.keep = true,
            Long("no-plot") => a.plot = false,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.rates.is_empty() || a.rates.iter().any(|r| *r <= 0.0) {
        return Err("--rates needs positive rates".into());
    }
    if a.sink_rate <= 0.0 {
        return Err("--sink-rate must be above 0".into());
    }
    Ok(a)
}

/// UTC "YYYYMMDD-HHMMSS" for file names.
fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The peers' binaries, found once.
struct Tools {
    goflow2: Option<PathBuf>,
    nfacctd: Option<PathBuf>,
    nfcapd: Option<PathBuf>,
    nfdump: Option<PathBuf>,
}

impl Tools {
    fn find(args: &Args) -> Tools {
        Tools {
            goflow2: args.goflow2.clone().or_else(peers::find_goflow2),
            nfacctd: peers::which("nfacctd"),
            nfcapd: peers::which("nfcapd"),
            nfdump: peers::which("nfdump"),
        }
    }

    fn check(&self, targets: &[Target]) -> Result<(), String> {
        let need = |t: Target, what: &str, p: &Option<PathBuf>| -> Result<(), String> {
            if targets.contains(&t) && p.is_none() {
                Err(format!(
                    "{what} not found (target {}): run benches/install-peers.sh",
                    t.name()
                ))
            } else {
                Ok(())
            }
        };
        need(Target::Goflow2, "goflow2", &self.goflow2)?;
        need(Target::Nfacctd, "nfacctd", &self.nfacctd)?;
        need(Target::Nfcapd, "nfcapd", &self.nfcapd)?;
        need(Target::Nfcapd, "nfdump", &self.nfdump)
    }

    /// "name: version" lines of the peers in use, for the report.
    fn versions(&self, targets: &[Target]) -> Vec<String> {
        let mut v = Vec::new();
        if let (true, Some(g)) = (targets.contains(&Target::Goflow2), &self.goflow2) {
            let line = peers::version_line(g, "-v");
            let pinned = peers::goflow2_pinned_version();
            let warn = if line.contains(pinned) {
                String::new()
            } else {
                format!(" (⚠ install-peers.sh pins {pinned})")
            };
            v.push(format!("goflow2: {line}{warn} ({})", g.display()));
        }
        if let (true, Some(n)) = (targets.contains(&Target::Nfacctd), &self.nfacctd) {
            v.push(format!("nfacctd: {}", peers::version_line(n, "-V")));
        }
        if let (true, Some(n)) = (targets.contains(&Target::Nfcapd), &self.nfcapd) {
            v.push(format!("nfcapd: {}", peers::version_line(n, "-V")));
        }
        v
    }
}

/// Cumulative counters of a target (summed over label sets). A target fills what it exposes.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    /// Datagrams the application received (nmsd, udp-sink) or decoded (goflow2).
    received: f64,
    /// Socket buffer overflows: nmsd's SO_RXQ_OVFL counter, /proc/net/udp for the peers.
    kernel_drops: f64,
    /// Datagrams received and then dropped inside the application (nmsd's ring, goflow2's
    /// queue).
    app_drops: f64,
    /// Flow records decoded (nmsd, goflow2) or counted in the output (nfacctd, nfcapd).
    records: f64,
    malformed: f64,
    seq_lost_datagrams: f64,
    sink_rows: f64,
    sink_flow_rows: f64,
    sink_dropped: f64,
    sink_failed: f64,
}

impl Sample {
    fn from_nmsd(t: &str, flows_table: &str) -> Sample {
        let g = |n: &str| prom::sum(t, n).unwrap_or(0.0);
        Sample {
            received: g("nmsd_flow_datagrams_received_total"),
            kernel_drops: g("nmsd_flow_socket_kernel_drops_total"),
            app_drops: g("nmsd_ring_dropped_datagrams_total"),
            records: g("nmsd_flow_records_decoded_total"),
            malformed: g("nmsd_flow_datagrams_malformed_total"),
            seq_lost_datagrams: g("nmsd_flow_sequence_lost_datagrams_total"),
            sink_rows: g("nmsd_sink_rows_written_total"),
            sink_flow_rows: prom::sum_where(
                t,
                "nmsd_sink_rows_written_total",
                "table",
                flows_table,
            )
            .unwrap_or(0.0),
            sink_dropped: g("nmsd_sink_queue_dropped_rows_total"),
            sink_failed: g("nmsd_sink_rows_failed_total"),
        }
    }

    fn from_goflow2(t: &str, kernel_drops: f64) -> Sample {
        let c = peers::goflow2_counts(t);
        Sample {
            received: c.datagrams,
            kernel_drops,
            app_drops: c.dropped,
            records: c.flows,
            malformed: c.errors,
            ..Sample::default()
        }
    }

    fn minus(&self, o: &Sample) -> Sample {
        Sample {
            received: self.received - o.received,
            kernel_drops: self.kernel_drops - o.kernel_drops,
            app_drops: self.app_drops - o.app_drops,
            records: self.records - o.records,
            malformed: self.malformed - o.malformed,
            seq_lost_datagrams: self.seq_lost_datagrams - o.seq_lost_datagrams,
            sink_rows: self.sink_rows - o.sink_rows,
            sink_flow_rows: self.sink_flow_rows - o.sink_flow_rows,
            sink_dropped: self.sink_dropped - o.sink_dropped,
            sink_failed: self.sink_failed - o.sink_failed,
        }
    }
}

/// One rate step's result.
#[derive(Clone, Debug)]
struct Step {
    run: usize,
    target_rate: f64,
    sent: ReplayReport,
    delta: Sample,
    /// CPU time of the target's process tree over the step (send + drain).
    cpu: Duration,
    /// QuestDB's CPU time over the step, for the sink targets.
    questdb_cpu: Option<Duration>,
    peak_rss_kb: Option<u64>,
    /// Time after the send until the counters stopped moving; `None`: still moving when the
    /// grace period ended.
    drain: Option<Duration>,
}

impl Step {
    fn datagram_loss(&self, t: Target) -> Option<f64> {
        if !t.counts_datagrams() || self.sent.datagrams == 0 {
            return None;
        }
        Some((1.0 - self.delta.received / self.sent.datagrams as f64).max(0.0))
    }

    fn flow_loss(&self, t: Target) -> Option<f64> {
        if !t.counts_flows() || self.sent.flows == 0 {
            return None;
        }
        Some((1.0 - self.delta.records / self.sent.flows as f64).max(0.0))
    }

    /// Raw rows that did not reach QuestDB, as a share of decoded flows.
    fn sink_loss(&self, t: Target) -> Option<f64> {
        match t {
            Target::QuestDbRaw if self.delta.records > 0.0 => {
                Some((1.0 - self.delta.sink_flow_rows / self.delta.records).max(0.0))
            }
            Target::QuestDb if self.delta.sink_dropped + self.delta.sink_failed > 0.0 => Some(1.0),
            _ => None,
        }
    }

    /// The worst of datagram, flow and sink loss.
    fn loss(&self, t: Target) -> f64 {
        [self.datagram_loss(t), self.flow_loss(t), self.sink_loss(t)]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max)
    }

    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.sent.elapsed.as_secs_f64().max(1e-9)
    }

    /// Flows the target handled: counted ones, or for the ceiling (which does not decode) the
    /// received share of the flows sent.
    fn flows_handled(&self, t: Target) -> f64 {
        if t.counts_flows() {
            self.delta.records
        } else if self.sent.datagrams > 0 {
            self.sent.flows as f64 * self.delta.received / self.sent.datagrams as f64
        } else {
            0.0
        }
    }

    /// CPU seconds per million flows handled.
    fn cpu_per_mflow(&self, t: Target) -> Option<f64> {
        let f = self.flows_handled(t);
        (f > 0.0).then(|| self.cpu.as_secs_f64() / (f / 1e6))
    }

    fn questdb_cpu_pct(&self) -> Option<f64> {
        self.questdb_cpu
            .map(|c| 100.0 * c.as_secs_f64() / self.sent.elapsed.as_secs_f64().max(1e-9))
    }
}

const LOSSLESS: f64 = 0.0001;

fn pct(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 0.0001 {
        format!("{:.4} %", v * 100.0)
    } else {
        format!("{:.2} %", v * 100.0)
    }
}

fn mib(kb: f64) -> String {
    format!("{:.0} MiB", kb / 1024.0)
}

fn drain_str(d: Option<Duration>, grace: Duration) -> String {
    match d {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!("> {:.0} s", grace.as_secs_f64()),
    }
}

/// One run's table for one target, every column the target has.
fn run_table(t: Target, run: usize, steps: &[Step], grace: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#### run {} — {} — {}\n",
        run + 1,
        t.name(),
        t.describe()
    );
    let _ = write!(
        s,
        "| target dg/s | sent dg/s | sent flows/s | received dg | kernel drops | app drops | flows counted | loss |"
    );
    let nmsd = t.is_nmsd();
    if nmsd {
        let _ = write!(s, " seq. lost dg |");
    }
    if t.uses_questdb() {
        let _ = write!(
            s,
            " flow rows | roll-up rows | sink dropped | QuestDB CPU |"
        );
    }
    let _ = writeln!(s, " CPU | CPU s/M flows | peak RSS | sender CPU | drain |");
    let cols = 8 + usize::from(nmsd) + if t.uses_questdb() { 4 } else { 0 } + 5;
    let _ = writeln!(s, "|{}", "---:|".repeat(cols));
    for st in steps {
        let d = &st.delta;
        let _ = write!(
            s,
            "| {} | {}{} | {} | {} | {:.0} | {} | {} | {} |",
            si(st.target_rate),
            si(st.sent.rate()),
            if st.sent.sender_limited() { " ⚠" } else { "" },
            si(st.sent.flow_rate()),
            if t.counts_datagrams() {
                format!("{:.0}", d.received)
            } else {
                "—".into()
            },
            d.kernel_drops,
            match t {
                Target::Nfcapd | Target::Ceiling => "—".into(),
                Target::Nfacctd => format!("{:.0} pipe warnings", d.app_drops),
                _ => format!("{:.0}", d.app_drops),
            },
            if t.counts_flows() {
                format!("{:.0}", d.records)
            } else {
                "—".into()
            },
            pct(st.loss(t)),
        );
        if nmsd {
            let _ = write!(s, " {:.0} |", d.seq_lost_datagrams);
        }
        if t.uses_questdb() {
            let _ = write!(
                s,
                " {:.0} | {:.0} | {:.0} | {} |",
                d.sink_flow_rows,
                d.sink_rows - d.sink_flow_rows,
                d.sink_dropped + d.sink_failed,
                st.questdb_cpu_pct()
                    .map_or("?".into(), |c| format!("{c:.0} %"))
            );
        }
        let _ = writeln!(
            s,
            " {:.0} % | {} | {} | {:.0} % | {} |",
            st.cpu_pct(),
            st.cpu_per_mflow(t)
                .map_or("—".into(), |c| format!("{c:.3}")),
            st.peak_rss_kb.map_or("?".into(), |k| mib(k as f64)),
            100.0 * st.sent.cpu.as_secs_f64() / st.sent.elapsed.as_secs_f64().max(1e-9),
            drain_str(st.drain, grace)
        );
    }
    s
}

/// The step with the highest achieved rate whose loss is under 0.01 %.
fn best(t: Target, steps: &[Step]) -> Option<&Step> {
    steps
        .iter()
        .filter(|s| s.loss(t) < LOSSLESS)
        .max_by(|a, b| a.sent.rate().total_cmp(&b.sent.rate()))
}

/// Lossless at every rate of the list: the limit is above the highest rate tried.
fn lossless_everywhere(t: Target, steps: &[Step], rates: usize) -> bool {
    steps.len() == rates && steps.iter().all(|s| s.loss(t) < LOSSLESS)
}

/// One measurement of the QuestDB sink bench.
#[derive(Clone, Debug, Default)]
struct SinkMeasure {
    run: usize,
    /// Rows acknowledged by QuestDB per second over the measured window.
    rows_per_sec: f64,
    rows: f64,
    window: Duration,
    /// questdb-sink: flows decoded per second over the window (what the sink was fed).
    fed_per_sec: f64,
    /// questdb-sink: rows the sink queue dropped over the whole step.
    dropped: f64,
    /// CPU of the writer (nmsd's process tree, or the bare loop's thread) over the window.
    cpu_pct: f64,
    questdb_cpu_pct: Option<f64>,
}

/// A child collector under test, running.
struct Running {
    t: Target,
    proc: Proc,
    flow_port: u16,
    /// Prometheus text: nmsd's and udp-sink's names, or goflow2's.
    metrics_url: Option<String>,
    flows_table: String,
    /// nfacctd's CSV.
    csv: Option<PathBuf>,
    /// Kernel receive buffer of its socket(s) as `ss` shows it (`rb`).
    rcvbuf: Option<u64>,
}

struct Harness<'a> {
    args: &'a Args,
    stream: &'a Stream,
    /// Rows for the bare QuestDB loop (the stream's flows, decoded).
    records: &'a [nmsd_parsers::FlowRecord],
    tools: &'a Tools,
    qdb: Option<&'a QuestDb>,
    dir: PathBuf,
    agent: ureq::Agent,
}

/// How a settle ended.
struct Settled {
    sample: Sample,
    /// Time from the start of the wait to the last change seen.
    last_change: Duration,
    /// Still moving when the wait ended (changed in its last half second).
    moving: bool,
}

impl Harness<'_> {
    fn workers(&self) -> usize {
        if self.args.workers > 0 {
            self.args.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    fn replay_cfg(&self, dest: SocketAddr, rate: f64, duration: Duration) -> ReplayConfig {
        ReplayConfig {
            dest,
            rate,
            duration,
            max_datagrams: None,
            burst: self.args.burst,
            exporters: self.args.exporters,
            template_every: self.args.template_every,
            retime: true,
            send_buffer: 4 << 20,
        }
    }

    fn send(&self, port: u16, rate: f64, duration: Duration) -> Result<ReplayReport, String> {
        let dest = SocketAddr::from(([127, 0, 0, 1], port));
        replay(self.stream, &self.replay_cfg(dest, rate, duration), &STOP)
            .map_err(|e| format!("replay: {e}"))
    }

    /// Start target `t` for run `run`; `step_dir` is nfcapd's flow directory.
    fn start_target(
        &self,
        t: Target,
        run: usize,
        step_dir: Option<&Path>,
    ) -> Result<Running, String> {
        let dir = match step_dir {
            Some(d) => d.to_path_buf(),
            None => self.dir.join(format!("run{}", run + 1)).join(t.name()),
        };
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port_err = |e: std::io::Error| format!("free port: {e}");
        let cport = free_tcp_port().map_err(port_err)?;
        let fport = free_udp_port().map_err(port_err)?;
        let flow_addr = SocketAddr::from(([127, 0, 0, 1], fport));
        let log_path = dir.join("log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let prefix = format!("e2e_{}_", t.name().replace('-', "_"));
        let base = format!("http://127.0.0.1:{cport}");
        let missing = |what: &str| format!("{what} not found: run benches/install-peers.sh");
        // (command, stop signal, readiness URL or None for "socket bound", metrics URL)
        let (mut cmd, stop_sig, ready, metrics, csv) = match t {
            Target::Ceiling => {
                let mut c = Command::new(&self.args.udp_sink);
                c.args(["--quiet", "--listen"])
                    .arg(flow_addr.to_string())
                    .arg("--metrics")
                    .arg(format!("127.0.0.1:{cport}"))
                    .args(["--sockets", &self.workers().to_string()]);
                let m = format!("{base}/metrics");
                (c, libc::SIGTERM, Some(m.clone()), Some(m), None)
            }
            Target::Nmsd
            | Target::NmsdInline
            | Target::NmsdDecode
            | Target::QuestDb
            | Target::QuestDbRaw
            | Target::QuestDbSink => {
                let sink = match (self.qdb, t) {
                    (Some(q), Target::QuestDbSink) => format!(
                        "[sinks.questdb]\ntype = \"questdb\"\ninputs = [\"netflow\", \"rollup\"]\n\
                         url = \"{}\"\ntable_prefix = \"{prefix}\"\n\
                         batch_rows = {}\nbatch_bytes = {}\nbuffer = {{ type = \"{}\" }}\n",
                        q.url(),
                        self.args.sink_batch,
                        self.args.sink_batch_bytes,
                        self.args.sink_buffer
                    ),
                    (Some(q), Target::QuestDb | Target::QuestDbRaw) => format!(
                        "[sinks.questdb]\ntype = \"questdb\"\ninputs = [{}\"rollup\"]\n\
                         url = \"{}\"\ntable_prefix = \"{prefix}\"\nbuffer = {{ type = \"{}\" }}\n",
                        if t == Target::QuestDbRaw {
                            "\"netflow\", "
                        } else {
                            ""
                        },
                        q.url(),
                        self.args.sink_buffer
                    ),
                    _ => String::new(),
                };
                let processors = match t {
                    Target::NmsdDecode => "",
                    _ => "[processors.rollup]\ntype = \"rollup\"\ninputs = [\"netflow\"]\n\n",
                };
                let config = format!(
                    "# written by nmsd-e2e\n[general]\nstate_dir = \"{}\"\nlog_level = \"info\"\n\n\
                     [control]\nlisten = \"127.0.0.1:{cport}\"\n\n\
                     [pipeline]\nworkers = {}\nreceive = \"{}\"\n\n\
                     [sources.netflow]\ntype = \"netflow\"\nlisten = \"{flow_addr}\"\n\
                     ring_full_policy = \"{}\"\n\n\
                     {processors}{sink}",
                    dir.join("state").display(),
                    self.args.workers,
                    if t == Target::NmsdInline {
                        "inline"
                    } else {
                        "ring"
                    },
                    self.args.ring_policy
                );
                let cfg_path = dir.join("config.toml");
                fs::write(&cfg_path, config).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
                let mut c = Command::new(&self.args.nmsd);
                c.args(["run", "-c"]).arg(&cfg_path).env("NO_COLOR", "1");
                (
                    c,
                    libc::SIGTERM,
                    Some(format!("{base}/readyz")),
                    Some(format!("{base}/metrics")),
                    None,
                )
            }
            Target::Goflow2 => {
                let bin = self
                    .tools
                    .goflow2
                    .as_ref()
                    .ok_or_else(|| missing("goflow2"))?;
                let c = peers::goflow2_command(bin, fport, cport, &self.args.goflow2_format);
                (
                    c,
                    libc::SIGTERM,
                    Some(format!("{base}/__health")),
                    Some(format!("{base}/metrics")),
                    None,
                )
            }
            Target::Nfacctd => {
                let bin = self
                    .tools
                    .nfacctd
                    .as_ref()
                    .ok_or_else(|| missing("nfacctd"))?;
                let csv = dir.join("flows.csv");
                let conf = dir.join("nfacctd.conf");
                fs::write(
                    &conf,
                    peers::nfacctd_config(fport, &csv, &dir.join("nfacctd.log")),
                )
                .map_err(|e| format!("{}: {e}", conf.display()))?;
                let mut c = Command::new(bin);
                c.arg("-f").arg(&conf);
                (c, libc::SIGINT, None, None, Some(csv))
            }
            Target::Nfcapd => {
                let bin = self
                    .tools
                    .nfcapd
                    .as_ref()
                    .ok_or_else(|| missing("nfcapd"))?;
                let flows = dir.join("flows");
                fs::create_dir_all(&flows).map_err(|e| format!("{}: {e}", flows.display()))?;
                (
                    peers::nfcapd_command(bin, fport, &flows),
                    libc::SIGTERM,
                    None,
                    None,
                    None,
                )
            }
            Target::QuestDbCeiling => return Err("questdb-ceiling runs in-process".into()),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let mut proc = Proc::spawn(t.name(), &mut cmd, stop_sig)
            .map_err(|e| format!("starting {}: {e}", t.name()))?;
        let fail = |what: String| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            format!("{} did not become ready: {what}; log:\n{log}", t.name())
        };
        match &ready {
            Some(url) => {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if http_get(&self.agent, url).is_some_and(|(s, _)| s == 200) {
                        break;
                    }
                    if !proc.alive() {
                        return Err(fail("exited".into()));
                    }
                    if Instant::now() > deadline {
                        return Err(fail(format!("{url} not 200 after 30 s")));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            None => {
                peers::wait_udp_bound(fport, Duration::from_secs(30), || proc.alive())
                    .map_err(fail)?;
                // nfacctd's plugin process starts after the core binds its socket.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        if t.is_peer() || t == Target::Ceiling {
            // The socket must be there before the sender starts (it is, for ready targets).
            peers::wait_udp_bound(fport, Duration::from_secs(10), || proc.alive()).map_err(fail)?;
        }
        Ok(Running {
            t,
            proc,
            flow_port: fport,
            metrics_url: metrics,
            flows_table: format!("{prefix}flows"),
            csv,
            rcvbuf: procfs::udp_rcvbuf(fport),
        })
    }

    fn sample(&self, r: &Running) -> Result<Sample, String> {
        let kernel_drops = || procfs::udp_port(r.flow_port).drops as f64;
        match r.t {
            Target::Nfacctd => {
                let csv = r.csv.as_deref().unwrap_or(Path::new(""));
                Ok(Sample {
                    records: peers::nfacctd_flows(csv)?,
                    kernel_drops: kernel_drops(),
                    app_drops: peers::nfacctd_pipe_warnings(&csv.with_file_name("nfacctd.log")),
                    ..Sample::default()
                })
            }
            Target::Nfcapd => Ok(Sample {
                kernel_drops: kernel_drops(),
                ..Sample::default()
            }),
            _ => {
                let url = r.metrics_url.as_deref().unwrap_or("");
                let body = match http_get(&self.agent, url) {
                    Some((200, body)) => body,
                    Some((s, _)) => return Err(format!("{url}: HTTP {s}")),
                    None => return Err(format!("{url}: no answer")),
                };
                Ok(if r.t == Target::Goflow2 {
                    Sample::from_goflow2(&body, kernel_drops())
                } else {
                    Sample::from_nmsd(&body, &r.flows_table)
                })
            }
        }
    }

    /// Sample every 250 ms until the counters (and the socket's receive queue, empty) have not
    /// moved for `still` consecutive samples, or `max` has passed.
    fn settle(&self, r: &Running, max: Duration, still: u32) -> Result<Settled, String> {
        let start = Instant::now();
        let mut last = self.sample(r)?;
        let mut last_change = Duration::ZERO;
        let mut quiet = 0;
        loop {
            let queued = procfs::udp_port(r.flow_port).rx_queue;
            if queued == 0 && quiet >= still {
                return Ok(Settled {
                    sample: last,
                    last_change,
                    moving: false,
                });
            }
            if start.elapsed() >= max {
                return Ok(Settled {
                    moving: queued > 0
                        || start.elapsed() - last_change < Duration::from_millis(500),
                    sample: last,
                    last_change,
                });
            }
            let left = max.saturating_sub(start.elapsed());
            std::thread::sleep(left.min(Duration::from_millis(250)));
            let now = self.sample(r)?;
            if now == last && queued == 0 {
                quiet += 1;
            } else {
                quiet = 0;
                last_change = start.elapsed();
            }
            last = now;
        }
    }

    /// Warm-up: templates learned, tables created, allocations made; and a check that the
    /// target counts what it receives.
    fn warm_up(&self, r: &Running) -> Result<(), String> {
        let before = self.sample(r)?;
        self.send(r.flow_port, 5_000.0, Duration::from_secs(2))
            .map_err(|e| format!("warm-up: {e}"))?;
        let after = self.settle(r, Duration::from_secs(15), 5)?.sample;
        let d = after.minus(&before);
        let counted = if r.t.counts_flows() {
            d.records
        } else {
            d.received
        };
        if counted <= 0.0 {
            return Err(format!(
                "{} counted nothing during the warm-up (see its log under {})",
                r.t.name(),
                self.dir.display()
            ));
        }
        Ok(())
    }

    fn qdb_cpu(&self) -> Option<Duration> {
        self.qdb
            .and_then(QuestDb::pid)
            .and_then(procfs::tree_cpu_time)
    }

    /// After a QuestDB target: wait (up to 30 s) until the server is idle (below 5 % of a core
    /// over a second), so its WAL work does not take CPU from the next target.
    fn wait_questdb_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.qdb_cpu();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.qdb_cpu();
            match (last, now) {
                (Some(a), Some(b)) if b.saturating_sub(a) < Duration::from_millis(50) => return,
                (None, _) | (_, None) => return,
                _ => {}
            }
            last = now;
        }
    }

    /// Stop raising the rate after two consecutive steps losing more than `--stop-loss` %: one
    /// such step can be a hiccup of the shared machine (a descheduled collector), and the
    /// collector's limit may still be higher.
    fn should_stop(&self, t: Target, steps: &[Step]) -> bool {
        let over = |s: &Step| s.loss(t) * 100.0 > self.args.stop_loss_pct;
        let stop = steps.len() >= 2 && steps[steps.len() - 2..].iter().all(over);
        if stop {
            eprintln!(
                "nmsd-e2e: {}: two steps in a row lost more than {} %, not raising the rate further",
                t.name(),
                self.args.stop_loss_pct
            );
        }
        stop
    }

    fn report_step(&self, t: Target, step: &Step) {
        eprintln!(
            "nmsd-e2e: run {} {} @ {}: sent {} dg ({}/s), {} flows; counted {}; loss {}; CPU {:.0} % ({} s/M flows); peak RSS {}",
            step.run + 1,
            t.name(),
            si(step.target_rate),
            step.sent.datagrams,
            si(step.sent.rate()),
            step.sent.flows,
            if t.counts_flows() {
                format!("{:.0} flows", step.delta.records)
            } else {
                format!("{:.0} dg", step.delta.received)
            },
            pct(step.loss(t)),
            step.cpu_pct(),
            step.cpu_per_mflow(t)
                .map_or("—".into(), |c| format!("{c:.3}")),
            step.peak_rss_kb.map_or("?".into(), |k| mib(k as f64)),
        );
    }

    /// The rate sweep of a long-running target.
    fn sweep(
        &self,
        t: Target,
        run: usize,
        rcvbufs: &mut Vec<(Target, u64)>,
    ) -> Result<Vec<Step>, String> {
        if t == Target::Nfcapd {
            return self.sweep_nfcapd(run, rcvbufs);
        }
        let mut r = self.start_target(t, run, None)?;
        if let Some(rb) = r.rcvbuf {
            rcvbufs.push((t, rb));
        }
        let pid = r.proc.pid();
        eprintln!(
            "nmsd-e2e: run {} {} (pid {pid}) ready; warming up",
            run + 1,
            t.name()
        );
        self.warm_up(&r)?;
        let mut steps = Vec::new();
        for &rate in &self.args.rates {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            // Idle first: a backlog of the last step must not count in this one.
            let m0 = self.settle(&r, Duration::from_secs(60), 5)?.sample;
            let rss_reset = procfs::reset_tree_peak_rss(pid);
            let q0 = self.qdb_cpu();
            let cpu0 = procfs::tree_cpu_time(pid).unwrap_or_default();
            let sent = self.send(r.flow_port, rate, self.args.duration)?;
            let end = self.settle(&r, self.args.grace, 5)?;
            let cpu1 = procfs::tree_cpu_time(pid).unwrap_or_default();
            let q1 = self.qdb_cpu();
            let step = Step {
                run,
                target_rate: rate,
                sent,
                delta: end.sample.minus(&m0),
                cpu: cpu1.saturating_sub(cpu0),
                questdb_cpu: q0.zip(q1).map(|(a, b)| b.saturating_sub(a)),
                peak_rss_kb: procfs::tree_peak_rss_kb(pid, &rss_reset),
                drain: (!end.moving).then_some(end.last_change),
            };
            self.report_step(t, &step);
            steps.push(step);
            if !r.proc.alive() {
                return Err(format!("{} exited during the run", t.name()));
            }
            if self.should_stop(t, &steps) {
                break;
            }
        }
        r.proc.stop(Duration::from_secs(60));
        Ok(steps)
    }

    /// nfcapd: a fresh process and directory per step; it runs until its socket's receive
    /// queue is empty, stops (closing its file) and nfdump counts what it stored.
    fn sweep_nfcapd(
        &self,
        run: usize,
        rcvbufs: &mut Vec<(Target, u64)>,
    ) -> Result<Vec<Step>, String> {
        let t = Target::Nfcapd;
        let nfdump = self
            .tools
            .nfdump
            .as_ref()
            .ok_or("nfdump not found: run benches/install-peers.sh")?;
        let mut steps = Vec::new();
        for (i, &rate) in self.args.rates.iter().enumerate() {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            let dir = self
                .dir
                .join(format!("run{}", run + 1))
                .join(format!("nfcapd-step{}", i + 1));
            let mut r = self.start_target(t, run, Some(&dir))?;
            if i == 0
                && let Some(rb) = r.rcvbuf
            {
                rcvbufs.push((t, rb));
            }
            let pid = r.proc.pid();
            let rss_reset = procfs::reset_tree_peak_rss(pid);
            let cpu0 = procfs::tree_cpu_time(pid).unwrap_or_default();
            let sent = self.send(r.flow_port, rate, self.args.duration)?;
            let end = self.settle(&r, self.args.grace, 0)?;
            let cpu1 = procfs::tree_cpu_time(pid).unwrap_or_default();
            let peak = procfs::tree_peak_rss_kb(pid, &rss_reset);
            let alive = r.proc.alive();
            r.proc.stop(Duration::from_secs(60));
            if !alive {
                return Err(format!(
                    "nfcapd exited during the step (log in {})",
                    dir.display()
                ));
            }
            let flows_dir = dir.join("flows");
            let counted = peers::nfdump_flows(nfdump, &flows_dir);
            // Flow files are big (~110 bytes a flow): never kept.
            let _ = fs::remove_dir_all(&flows_dir);
            let mut delta = end.sample;
            delta.records = counted?;
            let step = Step {
                run,
                target_rate: rate,
                sent,
                delta,
                cpu: cpu1.saturating_sub(cpu0),
                questdb_cpu: None,
                peak_rss_kb: peak,
                drain: (!end.moving).then_some(end.last_change),
            };
            self.report_step(t, &step);
            steps.push(step);
            if self.should_stop(t, &steps) {
                break;
            }
        }
        Ok(steps)
    }

    /// nmsd's QuestDB sink (raw rows) fed at `--sink-rate`: rows written per second over the
    /// send, after a 2 s ramp (the sink queue fills and the sink runs flat out).
    fn sink_nmsd(&self, run: usize) -> Result<SinkMeasure, String> {
        let t = Target::QuestDbSink;
        let mut r = self.start_target(t, run, None)?;
        let pid = r.proc.pid();
        eprintln!(
            "nmsd-e2e: run {} {} (pid {pid}) ready; warming up",
            run + 1,
            t.name()
        );
        self.warm_up(&r)?;
        let m0 = self.settle(&r, Duration::from_secs(60), 5)?.sample;
        let ramp = Duration::from_secs(2).min(self.args.duration / 2);
        let (window_start, sent) = std::thread::scope(|s| {
            let h = s.spawn(|| self.send(r.flow_port, self.args.sink_rate, self.args.duration));
            std::thread::sleep(ramp);
            let a = (
                Instant::now(),
                self.sample(&r),
                procfs::tree_cpu_time(pid),
                self.qdb_cpu(),
            );
            let sent = h.join().unwrap_or_else(|_| Err("sender panicked".into()));
            (a, sent)
        });
        let (ta, ma, ca, qa) = window_start;
        let mb = self.sample(&r)?;
        let tb = Instant::now();
        let cb = procfs::tree_cpu_time(pid);
        let qb = self.qdb_cpu();
        let sent = sent?;
        let ma = ma?;
        let window = tb - ta;
        let secs = window.as_secs_f64().max(1e-9);
        let pct_of = |a: Option<Duration>, b: Option<Duration>| {
            a.zip(b)
                .map(|(a, b)| 100.0 * b.saturating_sub(a).as_secs_f64() / secs)
        };
        let m = SinkMeasure {
            run,
            rows: mb.sink_flow_rows - ma.sink_flow_rows,
            rows_per_sec: (mb.sink_flow_rows - ma.sink_flow_rows) / secs,
            window,
            fed_per_sec: (mb.records - ma.records) / secs,
            dropped: mb.sink_dropped - m0.sink_dropped,
            cpu_pct: pct_of(ca, cb).unwrap_or(f64::NAN),
            questdb_cpu_pct: pct_of(qa, qb),
        };
        eprintln!(
            "nmsd-e2e: run {} questdb-sink: fed {}/s ({} flows/s sent), sink wrote {} rows/s, dropped {:.0} rows; nmsd CPU {:.0} %, QuestDB CPU {}",
            run + 1,
            si(m.fed_per_sec),
            si(sent.flow_rate()),
            si(m.rows_per_sec),
            m.dropped,
            m.cpu_pct,
            m.questdb_cpu_pct
                .map_or("?".into(), |c| format!("{c:.0} %"))
        );
        r.proc.stop(Duration::from_secs(60));
        Ok(m)
    }

    /// The bare questdb-rs loop writing `--sink-rows` rows into the same QuestDB.
    fn sink_bare(&self, run: usize) -> Result<SinkMeasure, String> {
        let q = self.qdb.ok_or("no QuestDB")?;
        let cfg = BareConfig {
            url: q.url(),
            table_prefix: "e2e_bare_".into(),
            rows: self.args.sink_rows,
            batch_rows: self.args.sink_batch,
            batch_bytes: self.args.sink_batch_bytes,
            request_timeout: Duration::from_secs(30),
        };
        let q0 = self.qdb_cpu();
        let rep = qdb::bare_write(&cfg, self.records, &STOP)?;
        let q1 = self.qdb_cpu();
        let secs = rep.elapsed.as_secs_f64().max(1e-9);
        let m = SinkMeasure {
            run,
            rows: rep.rows as f64,
            rows_per_sec: rep.rows_per_sec(),
            window: rep.elapsed,
            fed_per_sec: f64::NAN,
            dropped: 0.0,
            cpu_pct: 100.0 * rep.cpu.as_secs_f64() / secs,
            questdb_cpu_pct: q0
                .zip(q1)
                .map(|(a, b)| 100.0 * b.saturating_sub(a).as_secs_f64() / secs),
        };
        eprintln!(
            "nmsd-e2e: run {} questdb-ceiling: {} rows in {:.2} s = {} rows/s ({} batches, {:.0} % of the time in flushes), loop CPU {:.0} %, QuestDB CPU {}",
            run + 1,
            rep.rows,
            secs,
            si(m.rows_per_sec),
            rep.batches,
            100.0 * rep.flush_time.as_secs_f64() / secs,
            m.cpu_pct,
            m.questdb_cpu_pct
                .map_or("?".into(), |c| format!("{c:.0} %"))
        );
        Ok(m)
    }
}

/// Everything measured, over all runs.
#[derive(Default)]
struct Results {
    runs_done: usize,
    sweeps: Vec<(Target, Vec<Step>)>,
    errors: Vec<(usize, Target, String)>,
    sink: Vec<(Target, SinkMeasure)>,
    rcvbufs: Vec<(Target, u64)>,
}

impl Results {
    fn steps(&self, t: Target, run: usize) -> Option<&[Step]> {
        self.sweeps
            .iter()
            .find(|(tt, s)| *tt == t && s.first().is_some_and(|x| x.run == run))
            .map(|(_, s)| s.as_slice())
    }

    fn all_steps(&self, t: Target) -> impl Iterator<Item = &Step> {
        self.sweeps
            .iter()
            .filter(move |(tt, _)| *tt == t)
            .flat_map(|(_, s)| s)
    }
}

fn si_or_dash(v: f64) -> String {
    if v > 0.0 { si(v) } else { "none".into() }
}

/// Highest zero-loss rate, and CPU and RSS there, per collector.
fn summary_table(args: &Args, res: &Results, sweep: &[Target]) -> String {
    let mut s = String::from(
        "### Highest rate with < 0.01 % loss (median [min–max] over runs)\n\n\
         | collector | zero-loss dg/s | zero-loss flows/s | CPU s/M flows there | peak RSS there | runs | note |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    for &t in sweep {
        let mut rates = Vec::new();
        let mut flows = Vec::new();
        let mut cpu = Vec::new();
        let mut rss = Vec::new();
        let mut everywhere = 0;
        let mut runs = 0;
        for run in 0..res.runs_done {
            let Some(steps) = res.steps(t, run) else {
                continue;
            };
            runs += 1;
            everywhere += usize::from(lossless_everywhere(t, steps, args.rates.len()));
            match best(t, steps) {
                Some(b) => {
                    rates.push(b.sent.rate());
                    flows.push(b.sent.flow_rate());
                    cpu.extend(b.cpu_per_mflow(t));
                    rss.extend(b.peak_rss_kb.map(|k| k as f64));
                }
                None => {
                    rates.push(0.0);
                    flows.push(0.0);
                }
            }
        }
        if runs == 0 {
            continue;
        }
        let show = |v: &[f64], f: &dyn Fn(f64) -> String| {
            Spread::of(v.iter().copied()).map_or("—".into(), |sp| sp.show(f))
        };
        let note = match everywhere {
            0 => String::new(),
            n if n == runs => "lossless at every rate tested: the limit is higher".into(),
            n => format!("lossless at every rate tested in {n} of {runs} runs"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {runs} | {note} |",
            t.name(),
            show(&rates, &si_or_dash),
            show(&flows, &si_or_dash),
            show(&cpu, &|v| format!("{v:.3}")),
            show(&rss, &mib),
        );
    }
    s
}

/// One ratio of one run: nmsd ÷ the best peer, with which peer that was and a note (the rate
/// compared at, or "≥" for a lower bound).
struct RatioCell {
    value: f64,
    peer: &'static str,
    note: String,
}

/// A per-run comparison of an nmsd target with the best peer.
struct RunRatio {
    rate: Option<RatioCell>,
    cpu: Option<RatioCell>,
    rss: Option<RatioCell>,
}

fn run_ratio(
    res: &Results,
    n: Target,
    peers: &[Target],
    run: usize,
    rates: usize,
) -> Option<RunRatio> {
    let ns = res.steps(n, run)?;
    let nbest = best(n, ns).map_or(0.0, |b| b.sent.rate());
    let pbest = peers
        .iter()
        .filter_map(|&p| Some((p, best(p, res.steps(p, run)?)?.sent.rate())))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let rate = pbest.map(|(p, r)| {
        let n_all = lossless_everywhere(n, ns, rates);
        let p_all = res
            .steps(p, run)
            .is_some_and(|ps| lossless_everywhere(p, ps, rates));
        RatioCell {
            value: nbest / r,
            peer: p.name(),
            note: match (n_all, p_all) {
                (true, true) => ", both lossless at every rate: undetermined".into(),
                (true, false) => ", ≥".into(),
                (false, true) => ", ≤".into(),
                (false, false) => String::new(),
            },
        }
    });
    // The highest rate at which nmsd and at least one peer lost nothing.
    let lossless_at = |t: Target, rate: f64| -> Option<&Step> {
        res.steps(t, run)?
            .iter()
            .find(|s| s.target_rate == rate && s.loss(t) < LOSSLESS)
    };
    let common = ns.iter().rev().find(|s| {
        s.loss(n) < LOSSLESS
            && peers
                .iter()
                .any(|&p| lossless_at(p, s.target_rate).is_some())
    });
    let (mut cpu, mut rss) = (None, None);
    if let Some(ns) = common {
        let at: Vec<(Target, &Step)> = peers
            .iter()
            .filter_map(|&p| Some((p, lossless_at(p, ns.target_rate)?)))
            .collect();
        let lowest = |f: &dyn Fn(Target, &Step) -> Option<f64>| {
            at.iter()
                .filter_map(|(p, s)| Some((*p, f(*p, s)?)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let cell = |nv: f64, (p, pv): (Target, f64)| RatioCell {
            value: nv / pv,
            peer: p.name(),
            note: format!(", at {}", si(ns.target_rate)),
        };
        cpu = ns
            .cpu_per_mflow(n)
            .zip(lowest(&|p, s| s.cpu_per_mflow(p)))
            .map(|(nv, pv)| cell(nv, pv));
        rss = ns
            .peak_rss_kb
            .map(|k| k as f64)
            .zip(lowest(&|_, s| s.peak_rss_kb.map(|k| k as f64)))
            .map(|(nv, pv)| cell(nv, pv));
    }
    Some(RunRatio { rate, cpu, rss })
}

fn ratio_section(args: &Args, res: &Results, sweep: &[Target]) -> String {
    let peers: Vec<Target> = sweep.iter().copied().filter(|t| t.is_peer()).collect();
    let nmsds: Vec<Target> = sweep.iter().copied().filter(|t| t.is_nmsd()).collect();
    if peers.is_empty() || nmsds.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### nmsd / best peer (ratio within each run, then the median over runs)\n\n\
         - zero-loss rate: nmsd's highest rate with < 0.01 % loss ÷ the best peer's (higher is \
         better for nmsd; ≥: nmsd lost nothing at any rate tested, so its limit is higher; ≤: \
         the peer lost nothing at any rate).\n\
         - CPU s/M flows and peak RSS: at the highest rate where nmsd and at least one peer both \
         lost nothing, nmsd ÷ the lowest value among the peers that were lossless there (lower \
         is better for nmsd).\n\n\
         | nmsd target | measure | median [min–max] | per run: ratio (best peer, rate) |\n\
         |---|---|---:|---|\n",
    );
    type Pick = fn(&RunRatio) -> Option<&RatioCell>;
    let measures: [(&str, Pick); 3] = [
        ("zero-loss rate", |rr| rr.rate.as_ref()),
        ("CPU s/M flows", |rr| rr.cpu.as_ref()),
        ("peak RSS", |rr| rr.rss.as_ref()),
    ];
    for &n in &nmsds {
        let per_run: Vec<(usize, RunRatio)> = (0..res.runs_done)
            .filter_map(|r| Some((r, run_ratio(res, n, &peers, r, args.rates.len())?)))
            .collect();
        for (name, pick) in measures {
            let cells: Vec<(usize, &RatioCell)> = per_run
                .iter()
                .filter_map(|(r, rr)| Some((*r, pick(rr)?)))
                .collect();
            let spread = Spread::of(cells.iter().map(|(_, c)| c.value))
                .map_or("—".into(), |sp| sp.show(|v| format!("{v:.2}")));
            let runs: Vec<String> = cells
                .iter()
                .map(|(r, c)| format!("run {}: {:.2} ({}{})", r + 1, c.value, c.peer, c.note))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {name} | {spread} | {} |",
                n.name(),
                if runs.is_empty() {
                    "no peer was lossless at any rate".into()
                } else {
                    runs.join("; ")
                }
            );
        }
    }
    s
}

/// Every collector and rate, medians and ranges over runs.
fn cells_table(args: &Args, res: &Results, sweep: &[Target]) -> String {
    let mut s = String::from(
        "### Per collector and rate (median [min–max] over the runs that reached the rate)\n\n\
         | collector | target dg/s | runs | sent dg/s | sent flows/s | received dg | flows counted | loss | CPU | CPU s/M flows | peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &t in sweep {
        for &rate in &args.rates {
            let steps: Vec<&Step> = res.all_steps(t).filter(|s| s.target_rate == rate).collect();
            if steps.is_empty() {
                continue;
            }
            let sp = |f: &dyn Fn(&Step) -> Option<f64>, show: &dyn Fn(f64) -> String| {
                Spread::of(steps.iter().filter_map(|s| f(s))).map_or("—".into(), |x| x.show(show))
            };
            let limited = steps.iter().any(|s| s.sent.sender_limited());
            let median = |f: &dyn Fn(&Step) -> f64| {
                Spread::of(steps.iter().map(|s| f(s))).map_or(0.0, |x| x.median)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
                t.name(),
                si(rate),
                steps.len(),
                si(median(&|s| s.sent.rate())),
                if limited { " ⚠" } else { "" },
                si(median(&|s| s.sent.flow_rate())),
                if t.counts_datagrams() {
                    sp(&|s| Some(s.delta.received), &si)
                } else {
                    "—".into()
                },
                if t.counts_flows() {
                    sp(&|s| Some(s.delta.records), &si)
                } else {
                    "—".into()
                },
                sp(&|s| Some(s.loss(t)), &pct),
                sp(&|s| Some(s.cpu_pct()), &|v| format!("{v:.0} %")),
                sp(&|s| s.cpu_per_mflow(t), &|v| format!("{v:.3}")),
                sp(&|s| s.peak_rss_kb.map(|k| k as f64), &mib),
            );
        }
    }
    s
}

fn sink_section(args: &Args, res: &Results) -> String {
    if res.sink.is_empty() {
        return String::new();
    }
    let get = |t: Target, run: usize| {
        res.sink
            .iter()
            .find(|(tt, m)| *tt == t && m.run == run)
            .map(|(_, m)| m)
    };
    let mut s = format!(
        "### QuestDB sink vs a bare questdb-rs sender (the sink's ceiling)\n\n\
         - questdb-sink: nmsd with raw flow rows, fed {} datagrams/s for {:.0} s; rows/s = Δ \
         `nmsd_sink_rows_written_total` of the flows table over the send after a 2 s ramp \
         (the sink queue full, dropping: the sink writes flat out). Its CPU is nmsd's whole \
         process (receive, decode, roll-up, sink); the sender and QuestDB share the 2 cores.\n\
         - questdb-ceiling: one thread encoding the same rows (same table DDL and columns) and \
         flushing them in batches of {} rows or {} bytes over ILP/HTTP like the sink, {} rows into the same \
         server, alone on the machine.\n\n\
         | run | sink rows/s | sink rows (window) | fed flows/s | sink dropped rows | nmsd CPU | QuestDB CPU | bare rows/s | bare rows (time) | bare loop CPU | QuestDB CPU | sink / bare |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        si(args.sink_rate),
        args.duration.as_secs_f64(),
        args.sink_batch,
        args.sink_batch_bytes,
        si(args.sink_rows as f64),
    );
    let opt_pct = |v: Option<f64>| v.map_or("?".into(), |c| format!("{c:.0} %"));
    let rows_in = |m: &SinkMeasure| format!("{} in {:.1} s", si(m.rows), m.window.as_secs_f64());
    let mut ratios = Vec::new();
    for run in 0..res.runs_done {
        let (a, b) = (
            get(Target::QuestDbSink, run),
            get(Target::QuestDbCeiling, run),
        );
        if a.is_none() && b.is_none() {
            continue;
        }
        let ratio = a.zip(b).map(|(a, b)| a.rows_per_sec / b.rows_per_sec);
        ratios.extend(ratio);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run + 1,
            a.map_or("—".into(), |m| si(m.rows_per_sec)),
            a.map_or("—".into(), rows_in),
            a.map_or("—".into(), |m| si(m.fed_per_sec)),
            a.map_or("—".into(), |m| format!("{:.0}", m.dropped)),
            a.map_or("—".into(), |m| format!("{:.0} %", m.cpu_pct)),
            a.map_or("—".into(), |m| opt_pct(m.questdb_cpu_pct)),
            b.map_or("—".into(), |m| si(m.rows_per_sec)),
            b.map_or("—".into(), rows_in),
            b.map_or("—".into(), |m| format!("{:.0} %", m.cpu_pct)),
            b.map_or("—".into(), |m| opt_pct(m.questdb_cpu_pct)),
            ratio.map_or("—".into(), |r| format!("{r:.2}")),
        );
    }
    let med = |t: Target| {
        Spread::of(
            res.sink
                .iter()
                .filter(|(tt, _)| *tt == t)
                .map(|(_, m)| m.rows_per_sec),
        )
        .map_or("—".into(), |sp| sp.show(si))
    };
    let _ = writeln!(
        s,
        "\nMedian [min–max]: nmsd sink {} rows/s, bare sender {} rows/s, sink / bare {}.",
        med(Target::QuestDbSink),
        med(Target::QuestDbCeiling),
        Spread::of(ratios).map_or("—".into(), |sp| sp.show(|v| format!("{v:.2}")))
    );
    s
}

fn csv(res: &Results) -> String {
    let mut s = String::from(
        "run,target,target_rate,sent_datagrams,sent_flows,elapsed_s,sent_dg_per_s,sent_flows_per_s,\
         sender_limited,received_dg,kernel_drops,app_drops,flows_counted,loss,cpu_s,cpu_pct,\
         cpu_s_per_mflow,peak_rss_kb,drain_s\n",
    );
    for (t, steps) in &res.sweeps {
        for st in steps {
            let t = *t;
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.3},{:.1},{:.1},{},{},{},{},{},{},{:.3},{:.1},{},{},{}",
                st.run + 1,
                t.name(),
                st.target_rate,
                st.sent.datagrams,
                st.sent.flows,
                st.sent.elapsed.as_secs_f64(),
                st.sent.rate(),
                st.sent.flow_rate(),
                st.sent.sender_limited(),
                opt(t.counts_datagrams().then_some(st.delta.received)),
                st.delta.kernel_drops,
                opt((!matches!(t, Target::Nfcapd | Target::Ceiling)).then_some(st.delta.app_drops)),
                opt(t.counts_flows().then_some(st.delta.records)),
                st.loss(t),
                st.cpu.as_secs_f64(),
                st.cpu_pct(),
                opt(st.cpu_per_mflow(t)),
                st.peak_rss_kb.map_or(String::new(), |k| k.to_string()),
                st.drain
                    .map_or(String::new(), |d| format!("{:.2}", d.as_secs_f64())),
            );
        }
    }
    s
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The whole report.
#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    res: &Results,
    stamp: &str,
    source: &str,
    stream: &Stream,
    versions: &[String],
    load_start: &str,
    png: Option<&str>,
) -> String {
    let sweep: Vec<Target> = args
        .targets
        .iter()
        .copied()
        .filter(|t| t.is_sweep())
        .collect();
    let mut r = String::new();
    let per_dg = stream.flows() as f64 / stream.datagrams.len().max(1) as f64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        r,
        "## nmsd and peers: end-to-end ingest on loopback, {stamp} UTC\n"
    );
    let _ = writeln!(
        r,
        "- traffic: {source}, {} {} datagrams per pass, {:.1} flows per datagram; {} exporter(s), \
         sendmmsg bursts of {}, templates every {} datagrams, times moved to now",
        stream.datagrams.len(),
        stream.versions(),
        per_dg,
        args.exporters,
        args.burst,
        args.template_every
    );
    let sweep_line = if sweep.is_empty() {
        String::new()
    } else {
        format!(
            "; rates {} datagrams/s, {:.0} s per step, stop raising the rate after two steps in a \
             row losing > {} %; counting stops {:.0} s after the send (a collector that has not counted a \
             flow by then lost it)",
            args.rates
                .iter()
                .map(|r| si(*r))
                .collect::<Vec<_>>()
                .join(", "),
            args.duration.as_secs_f64(),
            args.stop_loss_pct,
            args.grace.as_secs_f64(),
        )
    };
    let _ = writeln!(
        r,
        "- {} of {} run(s){sweep_line}; machine: {cpus} CPUs, load average at start \
         {load_start}, at end {}",
        res.runs_done,
        args.runs,
        loadavg()
    );
    let _ = writeln!(
        r,
        "- nmsd: workers {} ({}), ring_full_policy {}, 4 MiB socket buffers, QuestDB sink \
         buffer {}",
        args.workers,
        if args.workers == 0 {
            "one per core"
        } else {
            "fixed"
        },
        args.ring_policy,
        args.sink_buffer
    );
    for v in versions {
        let _ = writeln!(r, "- {v}");
    }
    if sweep.contains(&Target::Goflow2) {
        let _ = writeln!(
            r,
            "- goflow2: `-listen netflow://127.0.0.1:PORT -format {} -transport file \
             -transport.file /dev/null` (defaults otherwise: 1 socket, 2 workers, 1M-datagram \
             queue; no receive-buffer option, so the OS default); counted with its own counters: \
             flows = `goflow2_flow_process_nf_flowset_records_total{{type=\"DataFlowSet\"}}`, \
             received dg = `goflow2_flow_traffic_packets_total`, app drops = \
             `goflow2_flow_dropped_packets_total`",
            args.goflow2_format
        );
    }
    if sweep.contains(&Target::Nfacctd) {
        let _ = writeln!(
            r,
            "- nfacctd: `nfacctd_pipe_size: 4194304`, `plugins: print`, `aggregate: proto, flows`, \
             CSV appended every second, pmacct's default core→plugin pipe; flows = sum of the \
             FLOWS column (it exposes no datagram count); app drops = its \"Missing data \
             detected\" warnings (pipe to the plugin full, flows dropped; it does not say how \
             many)"
        );
    }
    if sweep.contains(&Target::Nfcapd) {
        let _ = writeln!(
            r,
            "- nfcapd: `-B 4194304 -t 3600`, a fresh process and directory per step, stopped once \
             its socket's receive queue is empty; flows = `nfdump -R DIR -I` (no datagram count)"
        );
    }
    if !res.rcvbufs.is_empty() {
        let mut seen: Vec<Target> = Vec::new();
        let list: Vec<String> = res
            .rcvbufs
            .iter()
            .filter(|(t, _)| {
                let new = !seen.contains(t);
                seen.push(*t);
                new
            })
            .map(|(t, rb)| format!("{} {} KiB", t.name(), rb / 1024))
            .collect();
        let _ = writeln!(
            r,
            "- socket receive buffers granted (`ss -m` rb, the kernel's doubled SO_RCVBUF): {}",
            list.join(", ")
        );
    }
    let _ = writeln!(
        r,
        "- loss = worst of 1 − received/sent datagrams (where counted), 1 − flows counted/sent \
         flows and (questdb-raw) 1 − rows written/decoded; CPU = utime+stime of the collector's \
         process tree (all threads and child processes) over the step (send and drain), shown as a \
         share of the send time (100 % = one core); CPU s/M flows = that CPU \
         ÷ flows counted (ceiling: flows in the datagrams received); peak RSS = VmHWM during the \
         step, summed over the collector's long-lived processes; ⚠ = sender below the target rate\n"
    );
    if let Some(png) = png {
        let _ = writeln!(r, "![loss and CPU per million flows vs rate]({png})\n");
    }
    if !sweep.is_empty() {
        r.push_str(&summary_table(args, res, &sweep));
        r.push('\n');
        r.push_str(&ratio_section(args, res, &sweep));
        r.push('\n');
        r.push_str(&cells_table(args, res, &sweep));
        r.push('\n');
    }
    r.push_str(&sink_section(args, res));
    if !res.errors.is_empty() {
        r.push_str("\n### Errors\n\n");
        for (run, t, e) in &res.errors {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(r, "- run {} {}: {first}", run + 1, t.name());
        }
    }
    if !res.sweeps.is_empty() {
        r.push_str("\n### Per-run detail\n\n");
        for run in 0..res.runs_done {
            for &t in &sweep {
                if let Some(steps) = res.steps(t, run) {
                    r.push_str(&run_table(t, run, steps, args.grace));
                    r.push('\n');
                }
            }
        }
    }
    r
}

/// Draw the PNG with benches/plot_e2e.py (matplotlib). Returns the file name on success.
fn plot(csv: &Path, png: &Path) -> Option<String> {
    let script = workspace_dir().join("benches/plot_e2e.py");
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .arg(&script)
        .arg(csv)
        .arg(png)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => png.file_name().map(|n| n.to_string_lossy().into_owned()),
        Ok(o) => {
            eprintln!(
                "nmsd-e2e: no plot ({}): {} (benches/install-peers.sh installs matplotlib)",
                script.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("nmsd-e2e: no plot: {python}: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nmsd-e2e: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nmsd-e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let needs_nmsd = args
        .targets
        .iter()
        .any(|t| t.is_nmsd() || *t == Target::QuestDbSink);
    if needs_nmsd && !args.nmsd.is_file() {
        return Err(format!(
            "nmsd binary not found at {} (build with benches/e2e.sh)",
            args.nmsd.display()
        ));
    }
    if args.targets.contains(&Target::Ceiling) && !args.udp_sink.is_file() {
        return Err(format!(
            "udp-sink binary not found at {} (build with benches/e2e.sh)",
            args.udp_sink.display()
        ));
    }
    let tools = Tools::find(args);
    tools.check(&args.targets)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let (payloads, source) = match &args.pcap {
        Some(p) => {
            let dgs = traffic::read_capture(p)?;
            let payloads: Vec<Vec<u8>> = dgs.into_iter().map(|d| d.payload).collect();
            (payloads, format!("pcap {}", p.display()))
        }
        None => (
            traffic::generate(&GenConfig {
                format: args.format,
                flows: args.flows,
                ..GenConfig::default()
            }),
            format!(
                "generated softflowd-like {} ({} distinct flows)",
                args.format.label(),
                args.flows
            ),
        ),
    };
    let stream = Stream::analyze(&payloads);
    if stream.datagrams.is_empty() {
        return Err(format!("{source}: no export datagrams"));
    }
    let records = if args.targets.contains(&Target::QuestDbCeiling) {
        qdb::decoded_records(&payloads)
    } else {
        Vec::new()
    };
    let stamp = stamp();
    fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let dir = args.out.join(format!("e2e-{stamp}"));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let load_start = loadavg();
    let versions = tools.versions(&args.targets);

    let qdb = if args.targets.iter().any(|t| t.uses_questdb()) {
        eprintln!("nmsd-e2e: starting QuestDB");
        Some(QuestDb::start(&dir.join("questdb-server"))?)
    } else {
        None
    };
    let h = Harness {
        args,
        stream: &stream,
        records: &records,
        tools: &tools,
        qdb: qdb.as_ref(),
        dir: dir.clone(),
        agent: http_agent(),
    };
    let md = args.out.join(format!("e2e-{stamp}.md"));
    let csv_path = args.out.join(format!("e2e-{stamp}.csv"));
    let png_path = args.out.join(format!("e2e-{stamp}.png"));
    let mut res = Results::default();
    for run in 0..args.runs {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        eprintln!(
            "nmsd-e2e: === run {} of {} (load average {}) ===",
            run + 1,
            args.runs,
            loadavg()
        );
        for &t in &args.targets {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            let outcome = match t {
                Target::QuestDbSink => h.sink_nmsd(run).map(|m| res.sink.push((t, m))),
                Target::QuestDbCeiling => h.sink_bare(run).map(|m| res.sink.push((t, m))),
                _ => h.sweep(t, run, &mut res.rcvbufs).map(|steps| {
                    if !steps.is_empty() {
                        res.sweeps.push((t, steps));
                    }
                }),
            };
            if let Err(e) = outcome {
                eprintln!("nmsd-e2e: run {} {}: {e}", run + 1, t.name());
                res.errors.push((run, t, e));
            }
            if t.uses_questdb() {
                h.wait_questdb_idle();
            }
        }
        res.runs_done = run + 1;
        // The report so far, so an interrupted session keeps what it measured.
        let text = report(
            args,
            &res,
            &stamp,
            &source,
            &stream,
            &versions,
            &load_start,
            None,
        );
        fs::write(&md, &text).map_err(|e| format!("{}: {e}", md.display()))?;
        fs::write(&csv_path, csv(&res)).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    }
    drop(qdb);
    let png = if args.plot && !res.sweeps.is_empty() {
        plot(&csv_path, &png_path)
    } else {
        None
    };
    let text = report(
        args,
        &res,
        &stamp,
        &source,
        &stream,
        &versions,
        &load_start,
        png.as_deref(),
    );
    println!("\n{text}");
    fs::write(&md, &text).map_err(|e| format!("{}: {e}", md.display()))?;
    eprintln!(
        "nmsd-e2e: report written to {}, steps to {}{}",
        md.display(),
        csv_path.display(),
        png.map(|_| format!(", plot to {}", png_path.display()))
            .unwrap_or_default()
    );
    if args.keep {
        eprintln!("nmsd-e2e: scratch kept in {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(&dir);
    }
    if res.errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} target run(s) failed (see the report)",
            res.errors.len()
        ))
    }
}
