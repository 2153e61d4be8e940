//! SNMP polling load benchmark: the engine against the simulator, in one process on two threads
//! (docs/snmp-design.md §14). Reports varbinds/s received and the engine thread's own CPU, so
//! "varbinds per CPU-second" is the engine's capacity on one core, whatever the simulator costs.
//!
//! `nmsd-snmp-load [--devices N] [--interfaces N] [--interval SECS] [--seconds SECS] [--v3]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol, UserKeys};
use nmsd_snmp::engine::plan::{Credentials, DeviceSpec, Modules, Plan};
use nmsd_snmp::engine::{Command, Engine, EngineShared};
use nmsd_snmpsim::{DataSpec, SimConfig, Simulator};

/// CPU seconds (user + system) of one thread of this process.
fn thread_cpu(tid: i64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let devices = arg(&args, "--devices", 1000) as usize;
    let interfaces = arg(&args, "--interfaces", 48) as u32;
    let interval = Duration::from_secs(arg(&args, "--interval", 10));
    let seconds = arg(&args, "--seconds", 35);
    let v3 = args.iter().any(|a| a == "--v3");

    let sim = Simulator::spawn(SimConfig {
        listen: "0.0.0.0:0".parse().expect("address"),
        devices,
        data: DataSpec {
            interfaces: Some(interfaces),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator starts");
    let port = sim.addr.port();
    let credentials = if v3 {
        Credentials::V3 {
            user: Arc::from(&b"u_sha_aes"[..]),
            keys: Some(Arc::new(
                UserKeys::new(
                    AuthProtocol::Sha1,
                    b"authpass-sha1",
                    Some((PrivProtocol::Aes128, &b"privpass-aes128"[..])),
                )
                .expect("keys"),
            )),
        }
    } else {
        Credentials::V2c {
            community: Arc::new(b"public".to_vec().into()),
        }
    };
    let plan = Plan {
        devices: sim
            .device_addrs()
            .iter()
            .enumerate()
            .map(|(i, a)| DeviceSpec {
                name: Arc::from(format!("d{i:04}").as_str()),
                addr: std::net::SocketAddr::new(a.ip(), port),
                credentials: credentials.clone(),
                interval,
                timeout: Duration::from_secs(2),
                retries: 1,
                max_repetitions: 25,
                max_in_flight: 2,
                modules: Modules::default(),
                flow_exporters: Vec::new(),
                prometheus: false,
                custom: Vec::new(),
                tags: Default::default(),
            })
            .collect(),
        max_in_flight: 1024,
        custom: Vec::new(),
    };
    let rows = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let varbinds = Arc::new(AtomicU64::new(0));
    let tid = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (r, p, v, t) = (rows.clone(), polls.clone(), varbinds.clone(), tid.clone());
    let engine = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        t.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let output = Box::new(move |o: nmsd_snmp::engine::PollOutput| {
                r.fetch_add(o.interfaces.len() as u64, Ordering::Relaxed);
                p.fetch_add(u64::from(o.device.up), Ordering::Relaxed);
                v.fetch_add(o.device.varbinds as u64, Ordering::Relaxed);
            });
            let shared = EngineShared {
                board: Arc::new(Mutex::new(Vec::new())),
                ..Default::default()
            };
            let e = Engine::new(
                plan,
                "0.0.0.0:0".parse().expect("address"),
                "[::]:0".parse().expect("address"),
                output,
                shared,
            )
            .await
            .expect("engine");
            e.run(rx).await;
        });
    });
    // Skip the first interval: discovery and first walks are not the steady state.
    std::thread::sleep(interval + Duration::from_secs(1));
    let tid = tid.load(Ordering::Relaxed) as i64;
    let (v0, r0, p0) = (
        varbinds.load(Ordering::Relaxed),
        rows.load(Ordering::Relaxed),
        polls.load(Ordering::Relaxed),
    );
    let c0 = thread_cpu(tid).unwrap_or(0.0);
    let s0 = sim.cpu_time().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu(tid).unwrap_or(0.0) - c0;
    let sim_cpu = sim.cpu_time().map(|d| d.as_secs_f64()).unwrap_or(0.0) - s0;
    let vb = varbinds.load(Ordering::Relaxed) - v0;
    let if_rows = rows.load(Ordering::Relaxed) - r0;
    let ok = polls.load(Ordering::Relaxed) - p0;
    let _ = tx.blocking_send(Command::Stop);
    let _ = engine.join();
    let _ = sim.stop();
    println!(
        "{} devices × {interfaces} interfaces, {} every {}s, {wall:.1} s measured:",
        devices,
        if v3 { "v3 SHA/AES authPriv" } else { "v2c" },
        interval.as_secs()
    );
    println!("  varbinds received     {:>12.0} /s", vb as f64 / wall);
    println!("  successful polls      {:>12.0} /s", ok as f64 / wall);
    println!("  interface rows        {:>12.0} /s", if_rows as f64 / wall);
    println!(
        "  engine thread CPU     {:>11.1} % of a core",
        100.0 * cpu / wall
    );
    println!(
        "  simulator thread CPU  {:>11.1} % of a core",
        100.0 * sim_cpu / wall
    );
    if cpu > 0.0 {
        println!(
            "  varbinds per engine CPU-second     {:>12.0}",
            vb as f64 / cpu
        );
        println!(
            "  engine CPU per 1,000 interface polls {:>8.2} ms",
            1000.0 * cpu / (if_rows.max(1) as f64 / 1000.0)
        );
    }
}
