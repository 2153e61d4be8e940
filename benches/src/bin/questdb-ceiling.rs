//! `questdb-ceiling`: the QuestDB sink's ceiling. A bare questdb-rs sender loop writing the rows
//! nmsd's sink writes (the `flows` table of nmsd's DDL, the columns of
//! `sinks/src/questdb/rows.rs`, the flows of the softflowd-like generated traffic decoded by
//! nmsd's decoder), in batches of the sink's size, over ILP/HTTP like the sink, and nothing else.
//! nmsd-e2e's `questdb-ceiling` target runs the same loop within its runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nmsd_benches::qdb::{self, BareConfig, QuestDb};
use nmsd_benches::traffic::{self, Format, GenConfig};
use nmsd_benches::{parse_si, procfs, si};

const USAGE: &str = "\
questdb-ceiling — rows/s a bare questdb-rs sender reaches with nmsd's flow rows

USAGE:
    questdb-ceiling (--url http://HOST:PORT | --start DIR) [options]

    --url URL          QuestDB HTTP endpoint (ILP and /exec), e.g. http://127.0.0.1:9000
    --start DIR        start a private QuestDB in DIR (tests/peers/questdb.sh) and stop it after
    --rows N           rows to write (default 5M; k/M suffixes)
    --batch N          rows per flush (default 50000, the sink's batch_rows default)
    --batch-bytes B    ...or bytes of ILP per flush (default 1 MiB, the sink's batch_bytes
                       default; k/M suffixes are powers of 1000)
    --table-prefix P   tables P+flows / P+flows_1m, created with nmsd's DDL (default bench_)
    --generate FORMAT  traffic whose decoded flows are the rows: v9 (default), ipfix, v5
    --flows N          distinct flows (default 20000)
    --pcap FILE        take the flows of this capture instead
    --verify           afterwards, wait until SELECT count() shows every row (WAL applied)
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    url: Option<String>,
    start: Option<PathBuf>,
    rows: u64,
    batch: usize,
    batch_bytes: u64,
    prefix: String,
    format: Format,
    flows: usize,
    pcap: Option<PathBuf>,
    verify: bool,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut a = Args {
        url: None,
        start: None,
        rows: 5_000_000,
        batch: 50_000,
        batch_bytes: nmsd_sinks::questdb::DEFAULT_BATCH_BYTES,
        prefix: "bench_".into(),
        format: Format::V9,
        flows: 20_000,
        pcap: None,
        verify: false,
    };
    let mut p = lexopt::Parser::from_env();
    let val = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "argument is not UTF-8".to_string())
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("url") => a.url = Some(val(&mut p)?),
            Long("start") => a.start = Some(val(&mut p)?.into()),
            Long("rows") => a.rows = parse_si(&val(&mut p)?)? as u64,
            Long("batch") => a.batch = (parse_si(&val(&mut p)?)? as usize).max(1),
            Long("batch-bytes") => {
                a.batch_bytes =
                    (parse_si(&val(&mut p)?)? as u64).max(nmsd_sinks::questdb::MIN_BATCH_BYTES)
            }
            Long("table-prefix") => a.prefix = val(&mut p)?,
            Long("generate") => {
                let v = val(&mut p)?;
                a.format = Format::parse(&v).ok_or(format!("unknown format \"{v}\""))?;
            }
            Long("flows") => a.flows = parse_si(&val(&mut p)?)? as usize,
            Long("pcap") => a.pcap = Some(val(&mut p)?.into()),
            Long("verify") => a.verify = true,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.url.is_some() == a.start.is_some() {
        return Err("give either --url or --start".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("questdb-ceiling: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("questdb-ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let payloads: Vec<Vec<u8>> = match &args.pcap {
        Some(p) => traffic::read_capture(p)?
            .into_iter()
            .map(|d| d.payload)
            .collect(),
        None => traffic::generate(&GenConfig {
            format: args.format,
            flows: args.flows,
            ..GenConfig::default()
        }),
    };
    let records = qdb::decoded_records(&payloads);
    if records.is_empty() {
        return Err("no flows decoded from the traffic".into());
    }
    let server = match &args.start {
        Some(dir) => {
            eprintln!("questdb-ceiling: starting QuestDB in {}", dir.display());
            Some(QuestDb::start(dir)?)
        }
        None => None,
    };
    let url = match (&server, &args.url) {
        (Some(q), _) => q.url(),
        (None, Some(u)) => u.clone(),
        (None, None) => unreachable!("checked in parse_args"),
    };
    let qpid = server.as_ref().and_then(QuestDb::pid);
    let q0 = qpid.and_then(procfs::tree_cpu_time);
    let cfg = BareConfig {
        url: url.clone(),
        table_prefix: args.prefix.clone(),
        rows: args.rows,
        batch_rows: args.batch,
        batch_bytes: args.batch_bytes,
        request_timeout: Duration::from_secs(30),
    };
    eprintln!(
        "questdb-ceiling: writing {} rows ({} distinct flows) in batches of {} to {url}",
        args.rows,
        records.len(),
        args.batch
    );
    let rep = qdb::bare_write(&cfg, &records, &STOP)?;
    let q1 = qpid.and_then(procfs::tree_cpu_time);
    let secs = rep.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} rows into {} in {:.3} s: {} rows/s ({} batches; {:.0} % of the time waiting for \
         flushes; loop CPU {:.0} %{})",
        rep.rows,
        rep.table,
        secs,
        si(rep.rows_per_sec()),
        rep.batches,
        100.0 * rep.flush_time.as_secs_f64() / secs,
        100.0 * rep.cpu.as_secs_f64() / secs,
        q0.zip(q1)
            .map(|(a, b)| format!(
                ", QuestDB CPU {:.0} %",
                100.0 * b.saturating_sub(a).as_secs_f64() / secs
            ))
            .unwrap_or_default()
    );
    if args.verify {
        let n = qdb::count_rows(&url, &rep.table, rep.rows, Duration::from_secs(120))?;
        println!("SELECT count() FROM {}: {n}", rep.table);
        if n < rep.rows {
            return Err(format!("only {n} of {} rows visible after 120 s", rep.rows));
        }
    }
    Ok(())
}
