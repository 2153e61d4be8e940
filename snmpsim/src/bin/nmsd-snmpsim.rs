//! nmsd-snmpsim: many simulated SNMP agents on one UDP socket (docs/snmp-design.md § 12).

use std::io::Write as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmsd_parsers::snmp::Oid;
use nmsd_pipeline::units::parse_duration;
use nmsd_snmpsim::{
    Addressing, Behaviour, Fixture, Group, SimConfig, Simulator, UserSpec, parse_count_arg,
};

const HELP: &str = "\
nmsd-snmpsim: simulated SNMP agents (v1, v2c, v3 USM) answering like net-snmp

USAGE: nmsd-snmpsim [OPTIONS]

Addresses
  --listen ADDR:PORT       where to listen [default: 0.0.0.0:1161]
  --devices N              number of devices [default: 1]
  --first-address IP       device 0's address; device i is a.b.(c + i/per).(d + i%per)
                           [default: 127.0.1.1; the listen address if it is not 0.0.0.0]
  --per-subnet N           devices per /24 [default: 250]
  --ports                  one socket per device on the listen address, ports PORT, PORT+1, …
                           (for systems without IP_PKTINFO)
Data
  --interfaces N           generate system, ifTable/ifXTable with N interfaces and LLDP
                           [default: 24, or none with --snmprec]
  --no-lldp                do not generate LLDP
  --cdp                    also serve CISCO-CDP-MIB cdpCacheTable rows for the LLDP neighbours
  --lldp-local-port-ids    neighbours advertise ports as Junos does: a locally assigned
                           number (PortId subtype 7) with the ifDescr as PortDesc
  --snmprec FILE           serve this snmpsim-format fixture (OID|TAG|VALUE); with
                           --interfaces both are served, the file winning on equal OIDs
  --subtree OID            also register OID: a missing OID under it is noSuchInstance
  --name-prefix S          sysName of device i is S-{i+1:04} [default: sim]
Access
  --community S            v1/v2c community [default: public]
  --user NAME:AUTH:PASS[:PRIV:PASS]
                           SNMPv3 user (repeatable; replaces the defaults u_sha_aes and
                           u_sha256_aes256 of the test snmpd configs). AUTH: md5 sha sha224
                           sha256 sha384 sha512; PRIV: des aes aes192 aes256 aes192c aes256c
  --engine-seed N          seeds engine IDs and salts [default: random]
  --max-size BYTES         largest response [default: 65507]
Behaviours (each takes N devices from the end of the list, in this order, without overlap)
  --dead N                 never answer
  --slow N:DELAY           answer every other request after DELAY (e.g. 3s, 1500ms)
  --flaky N:PCT            drop PCT % of requests
  --restart N:AFTER        reboot every AFTER (uptime and counters to zero, boots + 1)
  --discontinuity N:AFTER  reset counters every AFTER, setting ifCounterDiscontinuityTime
  --wrong-community N      use another community (v2c unanswered, v3 works)
  --c32-only N             no ifXTable HC counters
  --wrap N                 Counter32s wrap 30 s after start
Output
  --manifest FILE          write the devices (address, name, engine ID, behaviours) as JSON
  --stats EVERY            print counters every EVERY: seconds (5) or with a unit (500ms)
  -h, --help
";

/// `--stats` takes plain seconds (as it always has) or a duration with a unit.
fn stats_period(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(s),
    }
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    cfg: SimConfig,
    manifest: Option<PathBuf>,
    stats_every: Option<Duration>,
}

fn val(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "argument is not UTF-8".to_string())
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut cfg = SimConfig {
        listen: "0.0.0.0:1161".parse().map_err(|_| "default listen")?,
        ..SimConfig::default()
    };
    let mut interfaces: Option<u32> = None;
    let mut snmprec: Option<PathBuf> = None;
    let mut first_address = None;
    let mut users: Vec<UserSpec> = Vec::new();
    let mut manifest = None;
    let mut stats_every = None;
    // Behaviour groups in the documented order, whatever the order of the flags.
    let mut groups: [Option<Group>; 8] = Default::default();
    let mut p = lexopt::Parser::from_env();
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(e)? {
        let num = |s: String, what: &str| -> Result<usize, String> {
            s.parse().map_err(|_| format!("bad {what} {s:?}"))
        };
        let group =
            |s: &str, needs_arg: bool, f: &dyn Fn(&mut Behaviour, &str) -> Result<(), String>| {
                let (count, arg) = parse_count_arg(s)?;
                let mut b = Behaviour::default();
                match (arg, needs_arg) {
                    (Some(a), true) => f(&mut b, a)?,
                    (None, false) => f(&mut b, "")?,
                    _ => return Err(format!("bad behaviour argument {s:?}")),
                }
                Ok::<_, String>(Some(Group {
                    count,
                    behaviour: b,
                }))
            };
        match arg {
            Long("listen") => {
                cfg.listen = val(&mut p)?
                    .parse::<SocketAddrV4>()
                    .map_err(|_| "bad --listen (want IPv4:PORT)")?
            }
            Long("devices") => cfg.devices = num(val(&mut p)?, "device count")?,
            Long("first-address") => {
                first_address = Some(val(&mut p)?.parse().map_err(|_| "bad --first-address")?)
            }
            Long("per-subnet") => {
                cfg.per_subnet = val(&mut p)?.parse().map_err(|_| "bad --per-subnet")?
            }
            Long("ports") => cfg.addressing = Addressing::Ports,
            Long("interfaces") => interfaces = Some(num(val(&mut p)?, "interface count")? as u32),
            Long("no-lldp") => cfg.data.lldp = false,
            Long("cdp") => cfg.cdp = true,
            Long("lldp-local-port-ids") => cfg.lldp_local_port_ids = true,
            Long("snmprec") => snmprec = Some(PathBuf::from(val(&mut p)?)),
            Long("subtree") => {
                let s = val(&mut p)?;
                let o: Oid = s.parse().map_err(|_| format!("bad OID {s:?}"))?;
                cfg.data.subtrees.push(o);
            }
            Long("name-prefix") => cfg.name_prefix = val(&mut p)?,
            Long("community") => cfg.community = val(&mut p)?,
            Long("user") => users.push(UserSpec::parse(&val(&mut p)?)?),
            Long("engine-seed") => {
                cfg.engine_seed = val(&mut p)?.parse().map_err(|_| "bad --engine-seed")?
            }
            Long("max-size") => cfg.max_message_size = num(val(&mut p)?, "--max-size")?,
            Long("dead") => {
                groups[0] = group(&val(&mut p)?, false, &|b, _| {
                    b.dead = true;
                    Ok(())
                })?
            }
            Long("slow") => {
                groups[1] = group(&val(&mut p)?, true, &|b, a| {
                    b.slow = Some(parse_duration(a)?);
                    Ok(())
                })?
            }
            Long("flaky") => {
                groups[2] = group(&val(&mut p)?, true, &|b, a| {
                    b.flaky_pct = a
                        .trim_end_matches('%')
                        .parse()
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("bad percentage {a:?}"))?;
                    Ok(())
                })?
            }
            Long("wrong-community") => {
                groups[3] = group(&val(&mut p)?, false, &|b, _| {
                    b.wrong_community = true;
                    Ok(())
                })?
            }
            Long("restart") => {
                groups[4] = group(&val(&mut p)?, true, &|b, a| {
                    b.restart_every = Some(parse_duration(a)?).filter(|d| !d.is_zero());
                    b.restart_every
                        .map(|_| ())
                        .ok_or_else(|| "restart period 0".to_string())
                })?
            }
            Long("discontinuity") => {
                groups[5] = group(&val(&mut p)?, true, &|b, a| {
                    b.discontinuity_every = Some(parse_duration(a)?).filter(|d| !d.is_zero());
                    b.discontinuity_every
                        .map(|_| ())
                        .ok_or_else(|| "discontinuity period 0".to_string())
                })?
            }
            Long("c32-only") => {
                groups[6] = group(&val(&mut p)?, false, &|b, _| {
                    b.c32_only = true;
                    Ok(())
                })?
            }
            Long("wrap") => {
                groups[7] = group(&val(&mut p)?, false, &|b, _| {
                    b.wrap = true;
                    Ok(())
                })?
            }
            Long("manifest") => manifest = Some(PathBuf::from(val(&mut p)?)),
            Long("stats") => stats_every = Some(stats_period(&val(&mut p)?)?),
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if let Some(path) = &snmprec {
        cfg.data.fixture =
            Some(Fixture::load(path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    cfg.data.interfaces = match (interfaces, &snmprec) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(24),
    };
    if let Some(a) = first_address {
        cfg.first_address = a;
    }
    if !users.is_empty() {
        cfg.users = users;
    }
    cfg.groups = groups.into_iter().flatten().collect();
    Ok(Args {
        cfg,
        manifest,
        stats_every,
    })
}

/// The devices as JSON (names and behaviours are plain ASCII, so no escaping is needed
/// beyond what `{:?}` gives for strings).
fn write_manifest(
    path: &PathBuf,
    cfg: &SimConfig,
    sim: &nmsd_snmpsim::SimHandle,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{{\"devices\": [")?;
    for i in 0..cfg.devices {
        let labels: Vec<String> = cfg
            .behaviour(i)
            .labels()
            .iter()
            .map(|l| format!("{l:?}"))
            .collect();
        writeln!(
            out,
            "  {{\"index\": {i}, \"address\": \"{}\", \"name\": {:?}, \"engine_id\": \"{}\", \"behaviours\": [{}]}}{}",
            sim.device_addr(i),
            cfg.device_name(i),
            nmsd_parsers::snmp::hex(sim.engine_id(i)),
            labels.join(", "),
            if i + 1 < cfg.devices { "," } else { "" }
        )?;
    }
    writeln!(out, "]}}")?;
    out.flush()
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nmsd-snmpsim: {e}\n(try --help)");
            std::process::exit(2);
        }
    };
    let cfg = args.cfg;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let sim = match Simulator::spawn(cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nmsd-snmpsim: {e}");
            std::process::exit(1);
        }
    };
    if let Some(path) = &args.manifest
        && let Err(e) = write_manifest(path, &cfg, &sim)
    {
        eprintln!("nmsd-snmpsim: manifest {}: {e}", path.display());
        std::process::exit(1);
    }
    let odd: usize = cfg.groups.iter().map(|g| g.count).sum();
    println!(
        "nmsd-snmpsim: {} devices ({} misbehaving) on {} … {} ({:?})",
        cfg.devices,
        odd,
        sim.device_addr(0),
        sim.device_addr(cfg.devices - 1),
        cfg.addressing
    );
    let _ = std::io::stdout().flush();
    let mut last = Instant::now();
    let mut prev = sim.stats();
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(every) = args.stats_every
            && last.elapsed() >= every
        {
            let s = sim.stats();
            let secs = last.elapsed().as_secs_f64();
            println!(
                "requests {}/s, varbinds {}/s, cpu {:?}; {s:?}",
                ((s.requests - prev.requests) as f64 / secs) as u64,
                ((s.varbinds - prev.varbinds) as f64 / secs) as u64,
                sim.cpu_time().unwrap_or_default(),
            );
            let _ = std::io::stdout().flush();
            prev = s;
            last = Instant::now();
        }
    }
    if let Err(e) = sim.stop() {
        eprintln!("nmsd-snmpsim: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_stats_also_plain_seconds() {
        assert_eq!(stats_period("5"), Ok(Duration::from_secs(5)));
        assert_eq!(stats_period("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(stats_period("2m"), Ok(Duration::from_secs(120)));
        assert!(stats_period("-1").is_err() && stats_period("x").is_err());
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(
            parse_duration("3").is_err(),
            "the behaviour flags need a unit"
        );
    }
}
