//! `nmsd-e2e`: end-to-end ingest benchmark on loopback.
//!
//! For each target — `ceiling` (udp-sink, a bare recvmmsg counter), `nmsd` (sink disabled),
//! `questdb` (QuestDB sink, roll-ups only) and `questdb-raw` (QuestDB sink with raw flow rows) —
//! it starts the process, replays export traffic at increasing rates (in-process sendmmsg
//! sender, see `nmsd_benches::replay`), reads the target's /metrics before and after each step
//! and samples its CPU time and peak RSS from /proc. It prints a Markdown table per target and
//! the highest rate with < 0.01 % loss, and writes them under `--out`.
//!
//! Run it through `benches/e2e.sh`, which builds everything in release first.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nmsd_benches::replay::{ReplayConfig, ReplayReport, replay};
use nmsd_benches::stream::Stream;
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_benches::{parse_si, procfs, prom, si};

const USAGE: &str = "\
nmsd-e2e — end-to-end ingest benchmark of nmsd on loopback (use benches/e2e.sh)

USAGE:
    nmsd-e2e [options]

    --targets LIST        comma-separated: ceiling, nmsd, questdb, questdb-raw
                          (default ceiling,nmsd)
    --rates LIST          datagrams/s steps (default 25k,50k,100k,200k,300k)
    --duration SECS       seconds per step (default 10)
    --generate FORMAT     softflowd-like v9 (default), ipfix, or v5
    --pcap FILE           replay this capture's export datagrams instead
    --flows N             distinct flows generated (default 20000)
    --exporters N         independent exporters (sockets) sharing the rate (default 1)
    --burst N             datagrams per sendmmsg (default 32)
    --template-every N    template refresh period in datagrams (default 1000)
    --workers N           nmsd [pipeline] workers (default 0 = one per core)
    --ring-policy P       nmsd ring_full_policy: drop (default, as shipped) or block
    --stop-loss PCT       stop raising the rate once a step loses more than PCT % (default 1)
    --nmsd PATH           nmsd binary (default: next to this one)
    --udp-sink PATH       udp-sink binary (default: next to this one)
    --out DIR             results directory (default <workspace>/bench-results)
    --keep                keep the per-run scratch directories (configs, logs, QuestDB data)
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Ceiling,
    Nmsd,
    QuestDb,
    QuestDbRaw,
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        match s.trim() {
            "ceiling" => Some(Target::Ceiling),
            "nmsd" => Some(Target::Nmsd),
            "questdb" => Some(Target::QuestDb),
            "questdb-raw" => Some(Target::QuestDbRaw),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Ceiling => "ceiling",
            Target::Nmsd => "nmsd",
            Target::QuestDb => "questdb",
            Target::QuestDbRaw => "questdb-raw",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Target::Ceiling => "udp-sink: recvmmsg loop that only counts (the receive ceiling)",
            Target::Nmsd => "nmsd, rollup processor, sink disabled",
            Target::QuestDb => "nmsd, rollup processor, QuestDB sink (roll-up rows only)",
            Target::QuestDbRaw => "nmsd, rollup processor, QuestDB sink with raw flow rows",
        }
    }

    fn uses_questdb(self) -> bool {
        matches!(self, Target::QuestDb | Target::QuestDbRaw)
    }
}

struct Args {
    targets: Vec<Target>,
    rates: Vec<f64>,
    duration: Duration,
    format: Format,
    pcap: Option<PathBuf>,
    flows: usize,
    exporters: usize,
    burst: usize,
    template_every: u64,
    workers: usize,
    ring_policy: String,
    stop_loss_pct: f64,
    nmsd: PathBuf,
    udp_sink: PathBuf,
    out: PathBuf,
    keep: bool,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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
        rates: vec![25e3, 50e3, 100e3, 200e3, 300e3],
        duration: Duration::from_secs(10),
        format: Format::V9,
        pcap: None,
        flows: 20_000,
        exporters: 1,
        burst: 32,
        template_every: 1000,
        workers: 0,
        ring_policy: "drop".into(),
        stop_loss_pct: 1.0,
        nmsd: exe_dir.join("nmsd"),
        udp_sink: exe_dir.join("udp-sink"),
        out: workspace().join("bench-results"),
        keep: false,
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
            Long("duration") => a.duration = Duration::from_secs_f64(parse_si(&value(&mut p)?)?),
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
            Long("stop-loss") => a.stop_loss_pct = parse_si(&value(&mut p)?)?,
            Long("nmsd") => a.nmsd = value(&mut p)?.into(),
            Long("udp-sink") => a.udp_sink = value(&mut p)?.into(),
            Long("out") => a.out = value(&mut p)?.into(),
            Long("keep") => a.keep = true,
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
    Ok(a)
}

fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
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

fn http_get(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut r = agent.get(url).call().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().ok()?))
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "nmsd-e2e: {} did not stop in {grace:?}; killing it",
            self.name
        );
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
    }
}

/// A QuestDB for the sink targets.
struct QuestDb {
    http: u16,
    dir: PathBuf,
    script: Option<PathBuf>,
    proc: Option<Proc>,
}

impl QuestDb {
    fn start(dir: &Path) -> Result<QuestDb, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ports = || -> std::io::Result<(u16, u16, u16)> {
            Ok((free_tcp_port()?, free_tcp_port()?, free_tcp_port()?))
        };
        let (http, pg, ilp) = ports().map_err(|e| format!("free ports: {e}"))?;
        let script = workspace().join("tests/peers/questdb.sh");
        if script.is_file() {
            let st = Command::new("bash")
                .arg(&script)
                .args(["start"])
                .arg(dir)
                .args([http.to_string(), pg.to_string(), ilp.to_string()])
                .status()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !st.success() {
                return Err(format!("{} start failed ({st})", script.display()));
            }
            return Ok(QuestDb {
                http,
                dir: dir.to_path_buf(),
                script: Some(script),
                proc: None,
            });
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        let jar = std::env::var_os("NMSD_QUESTDB_JAR").map_or_else(
            || home.join(".m2/repository/org/questdb/questdb/9.3.4/questdb-9.3.4.jar"),
            PathBuf::from,
        );
        if !jar.is_file() {
            return Err(format!("QuestDB jar not found at {}", jar.display()));
        }
        let conf = dir.join("conf");
        fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
        fs::write(
            conf.join("server.conf"),
            format!(
                "http.net.bind.to=127.0.0.1:{http}\npg.net.bind.to=127.0.0.1:{pg}\n\
                 line.tcp.net.bind.to=127.0.0.1:{ilp}\nhttp.min.enabled=false\n\
                 line.udp.enabled=false\nmetrics.enabled=false\ntelemetry.enabled=false\n\
                 shared.worker.count=2\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.join("questdb.log")).map_err(|e| e.to_string())?;
        let child = Command::new("java")
            .args(["-Xms64m", "-Xmx1g", "-cp"])
            .arg(&jar)
            .args(["io.questdb.ServerMain", "-d"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("java: {e}"))?;
        let q = QuestDb {
            http,
            dir: dir.to_path_buf(),
            script: None,
            proc: Some(Proc {
                name: "questdb".into(),
                child: Some(child),
            }),
        };
        let agent = agent();
        let url = format!("http://127.0.0.1:{http}/exec?query=select%201");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&agent, &url).is_none_or(|(s, _)| s != 200) {
            if Instant::now() > deadline {
                return Err("QuestDB did not answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(q)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The server's pid, to sample its CPU time.
    fn pid(&self) -> Option<u32> {
        match &self.proc {
            Some(p) => Some(p.pid()),
            None => fs::read_to_string(self.dir.join("questdb.pid"))
                .ok()?
                .trim()
                .parse()
                .ok(),
        }
    }
}

impl Drop for QuestDb {
    fn drop(&mut self) {
        if let Some(script) = &self.script {
            let _ = Command::new("bash")
                .arg(script)
                .arg("stop")
                .arg(&self.dir)
                .status();
        }
        if let Some(p) = &mut self.proc {
            p.stop(Duration::from_secs(20));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Counters read from a target's /metrics (summed over label sets).
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    received: f64,
    kernel_drops: f64,
    ring_drops: f64,
    datagrams_decoded: f64,
    records: f64,
    malformed: f64,
    seq_lost_datagrams: f64,
    seq_lost_flows: f64,
    sink_rows: f64,
    sink_flow_rows: f64,
    sink_dropped: f64,
    sink_failed: f64,
}

impl Sample {
    fn from_text(t: &str, flows_table: &str) -> Sample {
        let g = |n: &str| prom::sum(t, n).unwrap_or(0.0);
        Sample {
            received: g("nmsd_flow_datagrams_received_total"),
            kernel_drops: g("nmsd_flow_socket_kernel_drops_total"),
            ring_drops: g("nmsd_ring_dropped_datagrams_total"),
            datagrams_decoded: g("nmsd_flow_datagrams_decoded_total"),
            records: g("nmsd_flow_records_decoded_total"),
            malformed: g("nmsd_flow_datagrams_malformed_total"),
            seq_lost_datagrams: g("nmsd_flow_sequence_lost_datagrams_total"),
            seq_lost_flows: g("nmsd_flow_sequence_lost_flows_total"),
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

    fn minus(&self, o: &Sample) -> Sample {
        Sample {
            received: self.received - o.received,
            kernel_drops: self.kernel_drops - o.kernel_drops,
            ring_drops: self.ring_drops - o.ring_drops,
            datagrams_decoded: self.datagrams_decoded - o.datagrams_decoded,
            records: self.records - o.records,
            malformed: self.malformed - o.malformed,
            seq_lost_datagrams: self.seq_lost_datagrams - o.seq_lost_datagrams,
            seq_lost_flows: self.seq_lost_flows - o.seq_lost_flows,
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
    target_rate: f64,
    sent: ReplayReport,
    delta: Sample,
    cpu: Duration,
    /// QuestDB's CPU time over the step, for the sink targets.
    questdb_cpu: Option<Duration>,
    peak_rss_kb: Option<u64>,
    drain: Duration,
}

impl Step {
    fn datagram_loss(&self) -> f64 {
        if self.sent.datagrams == 0 {
            return 0.0;
        }
        (1.0 - self.delta.received / self.sent.datagrams as f64).max(0.0)
    }

    fn flow_loss(&self, t: Target) -> Option<f64> {
        if t == Target::Ceiling || self.sent.flows == 0 {
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
        [
            Some(self.datagram_loss()),
            self.flow_loss(t),
            self.sink_loss(t),
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
    }

    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.sent.elapsed.as_secs_f64().max(1e-9)
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

fn table(t: Target, steps: &[Step]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### {} — {}\n", t.name(), t.describe());
    let nmsd = t != Target::Ceiling;
    let _ = write!(
        s,
        "| target dg/s | sent dg/s | sent flows/s | received | kernel drops | loss |"
    );
    if nmsd {
        let _ = write!(
            s,
            " ring drops | flows decoded | flow loss | seq. lost dg |"
        );
    }
    if t.uses_questdb() {
        let _ = write!(
            s,
            " flow rows | roll-up rows | sink dropped | QuestDB CPU |"
        );
    }
    let _ = writeln!(s, " CPU | peak RSS | sender CPU | drain |");
    let cols = 6 + if nmsd { 4 } else { 0 } + if t.uses_questdb() { 4 } else { 0 } + 4;
    let _ = writeln!(s, "|{}", "---:|".repeat(cols));
    for st in steps {
        let d = &st.delta;
        let _ = write!(
            s,
            "| {} | {}{} | {} | {:.0} | {:.0} | {} |",
            si(st.target_rate),
            si(st.sent.rate()),
            if st.sent.sender_limited() { " ⚠" } else { "" },
            si(st.sent.flow_rate()),
            d.received,
            d.kernel_drops,
            pct(st.datagram_loss()),
        );
        if nmsd {
            let _ = write!(
                s,
                " {:.0} | {:.0} | {} | {:.0} |",
                d.ring_drops,
                d.records,
                pct(st.flow_loss(t).unwrap_or(0.0)),
                d.seq_lost_datagrams
            );
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
            " {:.0} % | {} | {:.0} % | {:.1} s |",
            st.cpu_pct(),
            st.peak_rss_kb
                .map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0)),
            100.0 * st.sent.cpu.as_secs_f64() / st.sent.elapsed.as_secs_f64().max(1e-9),
            st.drain.as_secs_f64()
        );
    }
    s
}

/// Highest achieved rate (datagrams/s, flows/s) with loss under 0.01 %.
fn best(t: Target, steps: &[Step]) -> Option<(f64, f64)> {
    steps
        .iter()
        .filter(|s| s.loss(t) < LOSSLESS)
        .map(|s| (s.sent.rate(), s.sent.flow_rate()))
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            Some(a) if a.0 >= v.0 => Some(a),
            _ => Some(v),
        })
}

struct Run<'a> {
    args: &'a Args,
    stream: &'a Stream,
    dir: PathBuf,
    agent: ureq::Agent,
}

impl Run<'_> {
    fn start_target(
        &self,
        t: Target,
        qdb: Option<&QuestDb>,
    ) -> Result<(Proc, String, SocketAddr, String), String> {
        let dir = self.dir.join(t.name());
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
        let (mut cmd, ready_path) = if t == Target::Ceiling {
            let mut c = Command::new(&self.args.udp_sink);
            c.args(["--quiet", "--listen"])
                .arg(flow_addr.to_string())
                .arg("--metrics")
                .arg(format!("127.0.0.1:{cport}"))
                .args(["--sockets", &self.workers().to_string()]);
            (c, "/metrics")
        } else {
            let sink = match qdb {
                Some(q) => format!(
                    "[sinks.questdb]\nurl = \"{}\"\nraw_flows = {}\ntable_prefix = \"{prefix}\"\n",
                    q.url(),
                    t == Target::QuestDbRaw
                ),
                None => "[sinks.questdb]\nenabled = false\n".into(),
            };
            let config = format!(
                "# written by nmsd-e2e\n[general]\nstate_dir = \"{}\"\nlog_level = \"info\"\n\n\
                 [control]\nlisten = \"127.0.0.1:{cport}\"\n\n\
                 [pipeline]\nworkers = {}\n\n\
                 [[sources.netflow]]\nlisten = \"{flow_addr}\"\nring_full_policy = \"{}\"\n\n\
                 [[processors]]\ntype = \"rollup\"\n\n{sink}",
                dir.join("state").display(),
                self.args.workers,
                self.args.ring_policy
            );
            let cfg_path = dir.join("config.toml");
            fs::write(&cfg_path, config).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
            let mut c = Command::new(&self.args.nmsd);
            c.args(["run", "-c"]).arg(&cfg_path).env("NO_COLOR", "1");
            (c, "/readyz")
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("starting {}: {e}", t.name()))?;
        let mut p = Proc {
            name: t.name().into(),
            child: Some(child),
        };
        let base = format!("http://127.0.0.1:{cport}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&self.agent, &format!("{base}{ready_path}")).is_some_and(|(s, _)| s == 200)
            {
                break;
            }
            if !p.alive() || Instant::now() > deadline {
                let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err(format!("{} did not become ready; log:\n{log}", t.name()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((
            p,
            format!("{base}/metrics"),
            flow_addr,
            format!("{prefix}flows"),
        ))
    }

    fn workers(&self) -> usize {
        if self.args.workers > 0 {
            self.args.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    fn scrape(&self, url: &str, flows_table: &str) -> Result<Sample, String> {
        match http_get(&self.agent, url) {
            Some((200, body)) => Ok(Sample::from_text(&body, flows_table)),
            Some((s, _)) => Err(format!("{url}: HTTP {s}")),
            None => Err(format!("{url}: no answer")),
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

    fn run_target(&self, t: Target, qdb: Option<&QuestDb>) -> Result<Vec<Step>, String> {
        let (mut proc, url, dest, flows_table) = self.start_target(t, qdb)?;
        let pid = proc.pid();
        eprintln!("nmsd-e2e: {} (pid {pid}) ready; warming up", t.name());
        // Warm-up: templates learned, tables created, allocations made.
        replay(
            self.stream,
            &self.replay_cfg(dest, 5_000.0, Duration::from_secs(2)),
            &STOP,
        )
        .map_err(|e| format!("warm-up: {e}"))?;
        self.settle(&url, &flows_table, Duration::from_secs(10))?;

        let mut steps = Vec::new();
        for &rate in &self.args.rates {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            let rss_reset = procfs::reset_peak_rss(pid);
            let qpid = qdb.and_then(QuestDb::pid);
            let q0 = qpid.and_then(procfs::cpu_time);
            let cpu0 = procfs::cpu_time(pid).unwrap_or_default();
            let m0 = self.scrape(&url, &flows_table)?;
            let sent = replay(
                self.stream,
                &self.replay_cfg(dest, rate, self.args.duration),
                &STOP,
            )
            .map_err(|e| format!("replay: {e}"))?;
            let t_sent = Instant::now();
            let m1 = self.settle(&url, &flows_table, Duration::from_secs(30))?;
            let drain = t_sent.elapsed();
            let cpu1 = procfs::cpu_time(pid).unwrap_or_default();
            let q1 = qpid.and_then(procfs::cpu_time);
            let step = Step {
                questdb_cpu: q0.zip(q1).map(|(a, b)| b.saturating_sub(a)),
                target_rate: rate,
                sent,
                delta: m1.minus(&m0),
                cpu: cpu1.saturating_sub(cpu0),
                peak_rss_kb: procfs::status_kb(pid, "VmHWM").filter(|_| rss_reset),
                drain,
            };
            eprintln!(
                "nmsd-e2e: {} @ {}: sent {} dg ({}/s), received {:.0}, decoded {:.0} flows of \
                 {}, loss {}, CPU {:.0} %",
                t.name(),
                si(rate),
                step.sent.datagrams,
                si(step.sent.rate()),
                step.delta.received,
                step.delta.records,
                step.sent.flows,
                pct(step.loss(t)),
                step.cpu_pct()
            );
            let loss = step.loss(t);
            steps.push(step);
            if !proc.alive() {
                return Err(format!("{} exited during the run", t.name()));
            }
            if loss * 100.0 > self.args.stop_loss_pct {
                eprintln!(
                    "nmsd-e2e: {}: loss above {} %, not raising the rate further",
                    t.name(),
                    self.args.stop_loss_pct
                );
                break;
            }
        }
        proc.stop(Duration::from_secs(60));
        Ok(steps)
    }

    /// Wait until the counters stop moving (the target has drained what it received and the
    /// sink has written it), then return them.
    fn settle(&self, url: &str, flows_table: &str, max: Duration) -> Result<Sample, String> {
        let deadline = Instant::now() + max;
        let mut last = self.scrape(url, flows_table)?;
        let mut still = 0;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.scrape(url, flows_table)?;
            // The QuestDB sink flushes every second: a second of stillness means done.
            if now == last {
                still += 1;
                if still >= 5 {
                    return Ok(now);
                }
            } else {
                still = 0;
            }
            last = now;
        }
        Ok(last)
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
    for (what, p) in [("nmsd", &args.nmsd), ("udp-sink", &args.udp_sink)] {
        if !p.is_file() {
            return Err(format!(
                "{what} binary not found at {} (build with benches/e2e.sh)",
                p.display()
            ));
        }
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let (stream, source) = match &args.pcap {
        Some(p) => {
            let dgs = traffic::read_capture(p)?;
            let payloads: Vec<Vec<u8>> = dgs.into_iter().map(|d| d.payload).collect();
            (Stream::analyze(&payloads), format!("pcap {}", p.display()))
        }
        None => (
            Stream::analyze(&traffic::generate(&GenConfig {
                format: args.format,
                flows: args.flows,
                ..GenConfig::default()
            })),
            format!(
                "generated softflowd-like {} ({} distinct flows)",
                args.format.label(),
                args.flows
            ),
        ),
    };
    if stream.datagrams.is_empty() {
        return Err(format!("{source}: no export datagrams"));
    }
    let stamp = stamp();
    fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let dir = args.out.join(format!("e2e-{stamp}"));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let run = Run {
        args,
        stream: &stream,
        dir: dir.clone(),
        agent: agent(),
    };

    let qdb = if args.targets.iter().any(|t| t.uses_questdb()) {
        eprintln!("nmsd-e2e: starting QuestDB");
        Some(QuestDb::start(&dir.join("questdb-server"))?)
    } else {
        None
    };

    let mut report = String::new();
    let per_dg = stream.flows() as f64 / stream.datagrams.len() as f64;
    let _ = writeln!(report, "## nmsd end-to-end ingest, {stamp} UTC\n");
    let _ = writeln!(
        report,
        "- traffic: {source}, {} {} datagrams per pass, {:.1} flows per datagram; {} exporter(s), \
         sendmmsg bursts of {}, templates every {} datagrams, times moved to now",
        stream.datagrams.len(),
        stream.versions(),
        per_dg,
        args.exporters,
        args.burst,
        args.template_every
    );
    let _ = writeln!(
        report,
        "- {} s per step; nmsd workers {} ({}), ring_full_policy {}; machine: {} CPUs",
        args.duration.as_secs_f64(),
        args.workers,
        if args.workers == 0 {
            "one per core"
        } else {
            "fixed"
        },
        args.ring_policy,
        run.workers()
    );
    let _ = writeln!(
        report,
        "- loss = worst of 1 − received/sent datagrams, 1 − decoded/sent flows and (raw rows) \
         1 − rows written/decoded; CPU = target's utime+stime over the send time; peak RSS = \
         VmHWM during the step; ⚠ = sender below target rate\n"
    );

    let mut results: Vec<(Target, Vec<Step>)> = Vec::new();
    for &t in &args.targets {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let steps = run
            .run_target(t, if t.uses_questdb() { qdb.as_ref() } else { None })
            .map_err(|e| format!("{e}\n(configs and logs kept in {})", dir.display()))?;
        let tbl = table(t, &steps);
        println!("\n{tbl}");
        report.push_str(&tbl);
        report.push('\n');
        results.push((t, steps));
    }
    drop(qdb);

    let mut summary = String::from("### highest rate with < 0.01 % loss\n\n");
    let ceiling = results
        .iter()
        .find(|(t, _)| *t == Target::Ceiling)
        .and_then(|(t, s)| best(*t, s));
    for (t, steps) in &results {
        let line = match best(*t, steps) {
            Some((dg, fl)) => {
                let tested_all =
                    steps.len() == args.rates.len() && steps.iter().all(|s| s.loss(*t) < LOSSLESS);
                let of_ceiling = match (ceiling, *t) {
                    (Some((c, _)), t) if t != Target::Ceiling && c > 0.0 => {
                        format!(", {:.0} % of the ceiling", 100.0 * dg / c)
                    }
                    _ => String::new(),
                };
                format!(
                    "- {}: {} datagrams/s ({} flows/s){of_ceiling}{}",
                    t.name(),
                    si(dg),
                    si(fl),
                    if tested_all {
                        " — lossless at every rate tested: the limit is higher"
                    } else {
                        ""
                    }
                )
            }
            None => format!("- {}: none of the rates tested", t.name()),
        };
        let _ = writeln!(summary, "{line}");
    }
    println!("\n{summary}");
    report.push_str(&summary);

    let md = args.out.join(format!("e2e-{stamp}.md"));
    fs::write(&md, &report).map_err(|e| format!("{}: {e}", md.display()))?;
    eprintln!("nmsd-e2e: report written to {}", md.display());
    if args.keep {
        eprintln!("nmsd-e2e: scratch kept in {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(())
}
