//! `nmsd lab`: the daemon with a simulated network around it, so a newcomer sees flows,
//! interface counters and dashboards within seconds, without a router.
//!
//! Three routers at 127.0.0.11-13 export NetFlow v9 or IPFIX to the lab's netflow source and
//! answer SNMPv2c (community "public") on UDP 1161 at their own address; their interface counters are the sums of
//! the flows they export ([`flows`], [`agent`]). The lab writes a config file like any other
//! (in `<state dir>/lab/config.toml`, to read and copy) and the daemon runs it unchanged. Rows
//! go to the standard tables (flows, flows_1m, snmp_interface...), which the shipped Grafana
//! dashboards read: use a QuestDB of its own for the lab, not a production one.
//! Why this lives in the binary and not in the test crates: decision 0016.

pub mod agent;
pub mod flows;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

/// Where the lab's agents listen by default (not 161: no privilege needed).
pub const AGENT_PORT: u16 = 1161;

/// `nmsd lab` options.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub questdb: String,
    pub control: SocketAddr,
    pub flow_listen: SocketAddr,
    /// Flows per second over all routers.
    pub flows_per_second: u32,
    /// UDP port of the SNMP agents (each at its router's address).
    pub agent_port: u16,
    /// Where the config and state go (default: `<state dir>/lab`).
    pub dir: Option<PathBuf>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            questdb: "http://127.0.0.1:9000".into(),
            control: SocketAddr::from(([127, 0, 0, 1], 9464)),
            flow_listen: SocketAddr::from(([127, 0, 0, 1], 2055)),
            flows_per_second: 300,
            agent_port: AGENT_PORT,
            dir: None,
        }
    }
}

/// The lab's config text.
pub fn config_text(o: &LabOptions, dir: &std::path::Path) -> String {
    let routers = flows::network(o.flows_per_second);
    let mut devices = String::new();
    for r in &routers {
        let _ = write!(
            devices,
            "\n[[sources.snmp.devices]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\n\
             profile = \"lab\"\ntags = {{ site = \"lab\", role = \"{}\" }}\n",
            r.name,
            r.address,
            o.agent_port,
            if r.name.contains("branch") {
                "branch"
            } else {
                "edge"
            },
        );
    }
    format!(
        "# Written by `nmsd lab`: the daemon's config for the simulated network. Every key not\n\
         # set here has its default (see config.toml and docs/configuration.md).\n\n\
         [general]\nstate_dir = \"{state}\"\n\n\
         [control]\nlisten = \"{control}\"\n\n\
         [sources.netflow]\ntype = \"netflow\"\nlisten = \"{flows}\"\nsockets = 1\n\n\
         [sources.snmp]\ntype = \"snmp\"\n\n\
         [sources.snmp.defaults]\ninterval = \"10s\"\ntimeout = \"1s\"\nretries = 1\nprometheus = true\n\n\
         [[sources.snmp.profiles]]\nname = \"lab\"\nversion = \"2c\"\n\
         community = {{ file = \"{community}\" }}\n{devices}\n\
         [processors.rollup]\ntype = \"rollup\"\ninputs = [\"netflow\"]\nwindow = \"1m\"\nflush_delay = \"5s\"\n\n\
         [processors.interface_names]\ntype = \"interface_names\"\ninputs = [\"rollup\"]\n\n\
         [sinks.questdb]\ntype = \"questdb\"\ninputs = [\"netflow\", \"interface_names\", \"snmp\"]\n\
         url = \"{questdb}\"\n",
        state = dir.join("state").display(),
        control = o.control,
        flows = o.flow_listen,
        community = dir.join("community").display(),
        questdb = o.questdb,
    )
}

/// Write the lab's config and community file, start its routers (exporters and agents) on
/// threads that live as long as the process, and return the config's path for `run`.
pub fn prepare(o: &LabOptions) -> anyhow::Result<PathBuf> {
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| crate::config::default_state_dir().join("lab"));
    std::fs::create_dir_all(dir.join("state"))
        .with_context(|| format!("creating the lab directory {}", dir.display()))?;
    // The lab's community is no secret, but the config shape is the real one: never inline.
    std::fs::write(dir.join("community"), "public\n").context("writing the lab community")?;
    let path = dir.join("config.toml");
    std::fs::write(&path, config_text(o, &dir))
        .with_context(|| format!("writing {}", path.display()))?;
    let routers = flows::network(o.flows_per_second);
    for (i, r) in routers.into_iter().enumerate() {
        let agent_addr = SocketAddr::from((r.address, o.agent_port));
        // Bind here, so a port in use is an error at start rather than a silent thread.
        let probe = std::net::UdpSocket::bind(agent_addr)
            .with_context(|| format!("lab agent {} cannot listen on {agent_addr}", r.name))?;
        drop(probe);
        let agent_router = r.clone();
        std::thread::Builder::new()
            .name(format!("lab-agent-{i}"))
            .spawn(move || {
                if let Err(e) = agent::run_agent(agent_router, agent_addr, "public".into()) {
                    tracing::error!("lab agent on {agent_addr} stopped: {e}");
                }
            })
            .context("starting a lab agent")?;
        let collector = o.flow_listen;
        std::thread::Builder::new()
            .name(format!("lab-exporter-{i}"))
            .spawn(move || {
                if let Err(e) = flows::run_exporter(r, collector, 0x5eed + i as u64) {
                    tracing::error!("lab exporter stopped: {e}");
                }
            })
            .context("starting a lab exporter")?;
    }
    Ok(path)
}
