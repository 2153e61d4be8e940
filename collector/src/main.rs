//! `nmsd`: the collector daemon. A thin binary over the `nmsd-*` crates: command line, config,
//! sources, control plane, lifecycle.

use nmsd::{config, control, lab, lifecycle, logging, state, telemetry, topology};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

const USAGE: &str = "\
nmsd — network telemetry collector (NetFlow v5/v9, IPFIX → QuestDB + Prometheus)

USAGE:
    nmsd run [-c PATH]          run the collector (default config: /etc/nmsd/config.toml)
    nmsd check-config [PATH]    check a config file and exit: 0 valid, 1 invalid
    nmsd lab [OPTIONS]          run the collector with a simulated network: three routers
                                exporting NetFlow v9/IPFIX and answering SNMP (counters follow
                                the flows). Options: --questdb URL (http://127.0.0.1:9000),
                                --control ADDR (127.0.0.1:9464), --flows ADDR (127.0.0.1:2055),
                                --rate FLOWS_PER_SECOND (300), --agent-port PORT (1161),
                                --dir PATH (<state dir>/lab)
    nmsd replay FILE [OPTIONS]  build flows from a pcap/pcapng file as the pcap_file source
                                does and print them, one tab-separated line each (a header
                                line first), with totals on stderr. Options: --speed
                                file|recorded (file), --exporter ADDR (0.0.0.0),
                                --active-timeout DUR (60s), --idle-timeout DUR (15s),
                                --tcp-close-timeout DUR (5s), --max-flows N (65536)
    nmsd version                print the version
    nmsd help                   print this help

Exit status: 0 success, 1 invalid config or failure to start, 2 usage error.
Every config key is documented in the shipped config.toml.";

const DEFAULT_CONFIG: &str = "/etc/nmsd/config.toml";

enum Command {
    Run(PathBuf),
    Lab(lab::LabOptions),
    CheckConfig(PathBuf),
    Replay(Box<nmsd::sources::pcap_file::PcapFileSourceConfig>),
    Version,
    Help,
    /// No command at all: a usage error (exit 2), not a request for help.
    Missing,
}

fn parse_args() -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let sub = match parser.next()? {
        None => return Ok(Command::Missing),
        Some(Value(v)) => v.string()?,
        Some(Long("help") | Short('h')) => return Ok(Command::Help),
        Some(Long("version") | Short('V')) => return Ok(Command::Version),
        Some(other) => return Err(other.unexpected()),
    };
    match sub.as_str() {
        "run" => {
            let mut path = PathBuf::from(DEFAULT_CONFIG);
            while let Some(arg) = parser.next()? {
                match arg {
                    Short('c') | Long("config") => path = parser.value()?.into(),
                    other => return Err(other.unexpected()),
                }
            }
            Ok(Command::Run(path))
        }
        "check-config" => {
            let mut path = PathBuf::from(DEFAULT_CONFIG);
            while let Some(arg) = parser.next()? {
                match arg {
                    Value(v) => path = v.into(),
                    Short('c') | Long("config") => path = parser.value()?.into(),
                    other => return Err(other.unexpected()),
                }
            }
            Ok(Command::CheckConfig(path))
        }
        "lab" => {
            let mut o = lab::LabOptions::default();
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("questdb") => o.questdb = parser.value()?.string()?,
                    Long("control") => o.control = parser.value()?.parse()?,
                    Long("flows") => o.flow_listen = parser.value()?.parse()?,
                    Long("rate") => o.flows_per_second = parser.value()?.parse()?,
                    Long("dir") => o.dir = Some(parser.value()?.into()),
                    Long("agent-port") => o.agent_port = parser.value()?.parse()?,
                    other => return Err(other.unexpected()),
                }
            }
            Ok(Command::Lab(o))
        }
        "replay" => {
            use nmsd::sources::pcap_file::{PcapFileSourceConfig, ReplaySpeed};
            use nmsd_pipeline::units::{HumanDuration, parse_duration};
            let mut path = None;
            let mut c: PcapFileSourceConfig =
                toml::from_str("path = \"\"").map_err(|e| lexopt::Error::from(e.to_string()))?;
            let duration = |p: &mut lexopt::Parser| -> Result<HumanDuration, lexopt::Error> {
                let v = p.value()?.string()?;
                parse_duration(&v)
                    .map(HumanDuration)
                    .map_err(lexopt::Error::from)
            };
            while let Some(arg) = parser.next()? {
                match arg {
                    Value(v) if path.is_none() => path = Some(PathBuf::from(v)),
                    Long("speed") => {
                        c.speed = match parser.value()?.string()?.as_str() {
                            "file" => ReplaySpeed::File,
                            "recorded" => ReplaySpeed::Recorded,
                            other => {
                                return Err(
                                    format!("--speed {other}: expected file or recorded").into()
                                );
                            }
                        }
                    }
                    Long("exporter") => c.exporter = parser.value()?.parse()?,
                    Long("active-timeout") => c.active_timeout = duration(&mut parser)?,
                    Long("idle-timeout") => c.idle_timeout = duration(&mut parser)?,
                    Long("tcp-close-timeout") => c.tcp_close_timeout = duration(&mut parser)?,
                    Long("max-flows") => c.max_flows = parser.value()?.parse()?,
                    other => return Err(other.unexpected()),
                }
            }
            c.path = path.ok_or("replay: which file? (nmsd replay FILE)")?;
            Ok(Command::Replay(Box::new(c)))
        }
        "version" => Ok(Command::Version),
        "help" => Ok(Command::Help),
        other => Err(lexopt::Error::from(format!(
            "unknown command \"{other}\"; expected run, check-config, lab, replay, version or help"
        ))),
    }
}

fn main() -> ExitCode {
    let cmd = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nmsd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Missing => {
            eprintln!("nmsd: no command given\n\n{USAGE}");
            ExitCode::from(2)
        }
        Command::Version => {
            println!(
                "nmsd {} (commit {}, {})",
                env!("CARGO_PKG_VERSION"),
                env!("NMSD_GIT_COMMIT"),
                env!("NMSD_RUSTC_VERSION")
            );
            ExitCode::SUCCESS
        }
        Command::CheckConfig(path) => match config::Config::load(&path) {
            Ok(cfg) => match check_buildable(&cfg) {
                Ok(()) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("nmsd: {}: {e:#}", path.display());
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("nmsd: invalid config: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Lab(o) => match lab::prepare(&o) {
            Ok(path) => {
                eprintln!(
                    "nmsd lab: config in {}; flows and SNMP of three simulated routers go to \
                     QuestDB at {} (standard tables: use a QuestDB for the lab only); see http://{}/api/v1/status and /metrics",
                    path.display(),
                    o.questdb,
                    o.control
                );
                match run(&path) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        logging::fatal(&format!("nmsd: {e:#}"));
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("nmsd lab: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Replay(c) => match replay(&c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nmsd replay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run(path) => match run(&path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                logging::fatal(&format!("nmsd: {e:#}"));
                ExitCode::FAILURE
            }
        },
    }
}

/// `nmsd replay`: the pcap_file source's reading and flow building, printed.
fn replay(c: &nmsd::sources::pcap_file::PcapFileSourceConfig) -> anyhow::Result<()> {
    use nmsd::sources::SourceSpec;
    use std::io::Write;
    c.validate()
        .map_err(|(k, m)| anyhow::anyhow!("{}: {m}", k.replace('_', "-")))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(
        out,
        "start_ms\tend_ms\tprotocol\tsrc_addr\tsrc_port\tdst_addr\tdst_port\tvlan\tpackets\tbytes\ttcp_flags\tsyn\tsyn_ack\trst\ticmp_unreachable"
    )?;
    let mut failed = None;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stats = nmsd::sources::pcap_file::replay_file(
        &c.path,
        c.table_config(0),
        c.speed,
        &stop,
        |flows| {
            for r in flows {
                let k = r.packet_counts;
                let line = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.start_ms,
                    r.end_ms,
                    r.protocol,
                    r.src_addr,
                    r.src_port,
                    r.dst_addr,
                    r.dst_port,
                    r.vlan,
                    r.packets,
                    r.bytes,
                    r.tcp_flags,
                    k.syn,
                    k.syn_ack,
                    k.rst,
                    k.icmp_unreachable
                );
                if let Err(e) = line {
                    // A closed pipe (| head): stop reading the file.
                    failed.get_or_insert(e);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        },
    )
    .with_context(|| c.path.display().to_string())?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    eprintln!(
        "nmsd replay: {} frames, {} malformed, {} of unknown link type, {} flows ({} evicted from a full table)",
        stats.frames, stats.malformed, stats.unknown_link_type, stats.flows, stats.table.evicted
    );
    Ok(())
}

/// What `check-config` adds to parsing: build every ring, queue and processor `run` would
/// build (short of binding sockets and starting threads), so a config that passes cannot fail
/// `run` on them, and check that the state directory can be written.
fn check_buildable(cfg: &config::Config) -> anyhow::Result<()> {
    let workers = cfg.pipeline.worker_count();
    for (name, src) in cfg.flow_sources() {
        let sockets = if src.sockets == 0 {
            workers
        } else {
            src.sockets
        };
        for _ in 0..sockets {
            drop(nmsd_pipeline::ring::datagram_ring(
                name,
                src.ring_capacity,
                src.batch_datagrams,
                src.ring_full_policy,
            ));
        }
    }
    for s in &cfg.sinks {
        drop(nmsd_pipeline::queue::sink_queue(&s.id, s.spec.queue()));
    }
    let ctx = |id: &str| nmsd_pipeline::component::ProcessorContext {
        id: std::sync::Arc::from(id),
        worker: None,
        interfaces: Default::default(),
    };
    for _ in 0..workers {
        drop(
            cfg.processors
                .iter()
                .map(|p| p.spec.build(&ctx(&p.id)))
                .collect::<Vec<_>>(),
        );
    }
    state::check_writable(&cfg.general.state_dir)
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = config::Config::load(path).map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    logging::init(cfg.general.log_level.as_str(), cfg.general.log_format);
    let prometheus = telemetry::install_recorder()?;
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "nmsd starting");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the control-plane runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.control.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for the control plane; change [control] listen",
                    cfg.control.listen
                )
            })?;
        let topology = topology::Topology::start(&cfg)?;
        let state = control::ControlState {
            prometheus: prometheus.clone(),
            status: topology.status.clone(),
        };
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = control::GuardedListener::new(
            listener,
            control::ConnectionLimits::from_config(&cfg.control),
        );
        let server = tokio::spawn(async move {
            let app = control::router(state);
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("control plane stopped: {e}");
            }
        });
        tokio::spawn(telemetry::upkeep(prometheus));
        if let Some(every) = lifecycle::watchdog_interval() {
            let liveness = topology.status.liveness.clone();
            tokio::spawn(lifecycle::feed_watchdog(every, liveness));
        }
        tracing::info!(control = %cfg.control.listen, "ready: /healthz /readyz /metrics /api/v1/status");
        lifecycle::notify("READY=1");

        wait_for_stop_signal().await?;
        lifecycle::notify("STOPPING=1");
        tracing::info!("stopping: no new datagrams are read; draining and flushing");
        let report = tokio::task::spawn_blocking(move || topology.shutdown())
            .await
            .context("shutdown task")?;
        let _ = stop_http.send(());
        let _ = server.await;
        // Rows lost at shutdown make the exit code non-zero.
        report.into_result()
    })
}

/// Wait for SIGINT or SIGTERM. SIGHUP is logged: config reload is not implemented yet.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => tracing::warn!(
                "SIGHUP: config reload is not implemented yet; restart nmsd to apply changes"
            ),
        }
    }
}
