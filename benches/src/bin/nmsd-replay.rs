//! `nmsd-replay`: send NetFlow/IPFIX export datagrams to a loopback collector at a fixed rate.
//!
//! The datagrams come from a pcap (every NetFlow v5/v9/IPFIX UDP payload in it, in order, looped)
//! or are generated (softflowd-like v9/IPFIX, or v5, with N distinct flows). Each datagram is sent
//! with its header sequence number rewritten to a gap-free sequence per exporter, so a collector's
//! sequence-loss counters are exact, and (by default) with its times moved to the send time.
//! Templates are re-sent every `--template-every` datagrams, as real exporters do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nmsd_benches::replay::{ReplayConfig, check_destination, replay};
use nmsd_benches::stream::Stream;
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_benches::{parse_si, si};

const USAGE: &str = "\
nmsd-replay — replay NetFlow/IPFIX exports to a loopback collector with sendmmsg

USAGE:
    nmsd-replay --to ADDR (--pcap FILE | --generate v9|ipfix|v5) [options]

SOURCE:
    --pcap FILE           NetFlow v5/v9/IPFIX UDP payloads of a pcap/pcapng, looped
    --generate FORMAT     softflowd-like v9 or ipfix (templates 1024/1025/2048/2049), or v5
    --flows N             distinct flows generated (default 20000; k/M suffixes)

SENDING:
    --to ADDR             destination; loopback only (127.0.0.1:PORT, [::1]:PORT)
    --rate R              datagrams per second, all exporters together (default 10k)
    --duration SECS       how long to send (default 10)
    --count N|pass        stop after N datagrams, or after one pass over the source
    --burst N             datagrams per sendmmsg call / pacing step (default 32)
    --exporters N         independent exporters: own socket, sequence, domain id (default 1)
    --template-every N    re-send templates every N datagrams per exporter (default 1000; 0 = at
                          start only)
    --no-retime           keep the source's header and record times (default: move to now)
    --json                also print the result as one JSON line
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

enum Source {
    Pcap(PathBuf),
    Generate(Format),
}

struct Args {
    source: Source,
    flows: usize,
    cfg: ReplayConfig,
    count_pass: bool,
    json: bool,
}

fn value(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "argument is not UTF-8".to_string())
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut source = None;
    let mut to: Option<SocketAddr> = None;
    let mut a = Args {
        source: Source::Generate(Format::V9),
        flows: 20_000,
        cfg: ReplayConfig::default(),
        count_pass: false,
        json: false,
    };
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(e)? {
        match arg {
            Long("pcap") => source = Some(Source::Pcap(value(&mut p)?.into())),
            Long("generate") => {
                let v = value(&mut p)?;
                let f = Format::parse(&v).ok_or(format!("unknown format \"{v}\""))?;
                source = Some(Source::Generate(f));
            }
            Long("flows") => a.flows = parse_si(&value(&mut p)?)? as usize,
            Long("to") => {
                let v = value(&mut p)?;
                to = Some(v.parse().map_err(|_| format!("bad address \"{v}\""))?);
            }
            Long("rate") => a.cfg.rate = parse_si(&value(&mut p)?)?,
            Long("duration") => {
                a.cfg.duration = Duration::from_secs_f64(parse_si(&value(&mut p)?)?)
            }
            Long("count") => {
                let v = value(&mut p)?;
                if v == "pass" {
                    a.count_pass = true;
                } else {
                    a.cfg.max_datagrams = Some(parse_si(&v)? as u64);
                }
            }
            Long("burst") => a.cfg.burst = parse_si(&value(&mut p)?)? as usize,
            Long("exporters") => a.cfg.exporters = (parse_si(&value(&mut p)?)? as usize).max(1),
            Long("template-every") => a.cfg.template_every = parse_si(&value(&mut p)?)? as u64,
            Long("no-retime") => a.cfg.retime = false,
            Long("json") => a.json = true,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    a.source = source.ok_or("give --pcap FILE or --generate FORMAT")?;
    a.cfg.dest = to.ok_or("--to ADDR is required")?;
    check_destination(&a.cfg.dest)?;
    if a.flows == 0 {
        return Err("--flows must be at least 1".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let mut args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nmsd-replay: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (stream, what) = match &args.source {
        Source::Pcap(path) => match traffic::read_capture(path) {
            Ok(dgs) => {
                let payloads: Vec<Vec<u8>> = dgs.into_iter().map(|d| d.payload).collect();
                (Stream::analyze(&payloads), path.display().to_string())
            }
            Err(e) => {
                eprintln!("nmsd-replay: {e}");
                return ExitCode::FAILURE;
            }
        },
        Source::Generate(f) => {
            let dgs = traffic::generate(&GenConfig {
                format: *f,
                flows: args.flows,
                ..GenConfig::default()
            });
            (
                Stream::analyze(&dgs),
                format!("generated {} ({} flows)", f.label(), args.flows),
            )
        }
    };
    if stream.datagrams.is_empty() {
        eprintln!("nmsd-replay: {what}: no NetFlow v5/v9 or IPFIX datagrams");
        return ExitCode::FAILURE;
    }
    let per_pass = stream.datagrams.len();
    let flows = stream.flows();
    eprintln!(
        "nmsd-replay: {what}: {} {} datagrams per pass, {} flows ({:.1} per datagram, \
         {:.1} data sets per datagram), {} template refresh datagram(s){}",
        per_pass,
        stream.versions(),
        flows,
        flows as f64 / per_pass as f64,
        stream.data_sets() as f64 / per_pass as f64,
        stream.refresh.len(),
        match (stream.skipped, stream.unknown_sets()) {
            (0, 0) => String::new(),
            (s, u) => format!("; {s} unreadable datagrams skipped, {u} sets without template"),
        }
    );
    if args.count_pass {
        // One pass of the stream plus the template refresh sent before it.
        args.cfg.max_datagrams = Some((per_pass + stream.refresh.len()) as u64);
        if args.cfg.duration < Duration::from_secs(3600) {
            args.cfg.duration = Duration::from_secs(3600);
        }
    }
    eprintln!(
        "nmsd-replay: sending to {} at {} datagrams/s for {:.1} s, {} exporter(s), bursts of {}",
        args.cfg.dest,
        si(args.cfg.rate),
        args.cfg.duration.as_secs_f64(),
        args.cfg.exporters,
        args.cfg.burst
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    match replay(&stream, &args.cfg, &STOP) {
        Ok(r) => {
            println!("{}", r.summary());
            if args.json {
                println!("{}", r.json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nmsd-replay: {e}");
            ExitCode::FAILURE
        }
    }
}
