//! The collectors nmsd is compared with, as the e2e harness runs them, and how each one's
//! received flows are counted. `benches/install-peers.sh` installs them.
//!
//! - **goflow2** (Go, pinned in `install-peers.sh`): `-listen netflow://127.0.0.1:PORT` (its
//!   defaults: one socket, two decode workers, a 1 000 000-datagram queue that drops when full,
//!   the OS default receive buffer — it has no option for SO_RCVBUF), output
//!   `-format bin -transport file -transport.file /dev/null` (length-prefixed protobuf, its
//!   cheapest encoding: every flow is still encoded and written, but no disk is involved).
//!   Counted with its own Prometheus counters on `-addr`:
//!   `goflow2_flow_process_nf_flowset_records_total{type="DataFlowSet"}` (flow records decoded),
//!   `goflow2_flow_traffic_packets_total` (datagrams taken off its queue and decoded),
//!   `goflow2_flow_dropped_packets_total` (datagrams dropped because its queue was full).
//! - **nfacctd** (pmacct, Debian): one `print` plugin aggregating by `proto` with the `flows`
//!   counter, CSV appended to a file every second (`print_refresh_time: 1`); flows counted =
//!   the sum of the FLOWS column, exact because every record adds one flow to its protocol's
//!   row. `nfacctd_pipe_size: 4194304` (4 MiB socket buffer, as nmsd's); the core→plugin pipe
//!   keeps pmacct's defaults (4 MB, unbuffered: a buffered pipe holds flows back across steps,
//!   so per-step counts stop being exact; it was also slower here). Its "Missing data detected"
//!   warnings (pipe full, flows dropped) are counted from its log. Stopped with SIGINT: its core
//!   process keeps SIGTERM blocked while it waits for data.
//! - **nfcapd** (nfdump, Debian): `-B 4194304 -t 3600`, a fresh process and directory per rate
//!   step; after the step it runs until its socket's receive queue is empty (/proc/net/udp),
//!   then stops (SIGTERM, it closes its file) and `nfdump -R DIR -I` gives the flows it stored.
//!
//! Kernel drops for all three come from the `drops` column of /proc/net/udp for their port.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::prom;

/// The goflow2 version `benches/install-peers.sh` installs (its `GOFLOW2_VERSION` line, the
/// one place it is written).
pub fn goflow2_pinned_version() -> &'static str {
    const SCRIPT: &str = include_str!("../install-peers.sh");
    SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix("GOFLOW2_VERSION=${GOFLOW2_VERSION:-"))
        .and_then(|rest| rest.split('}').next())
        .unwrap_or("unknown")
}

/// `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// goflow2 where `go install` puts it ($GOBIN, $GOPATH/bin, ~/go/bin), else on the PATH.
pub fn find_goflow2() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(b) = std::env::var_os("GOBIN") {
        dirs.push(PathBuf::from(b));
    }
    if let Some(g) = std::env::var_os("GOPATH") {
        dirs.extend(std::env::split_paths(&g).map(|p| p.join("bin")));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join("go/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("goflow2"))
        .find(|p| p.is_file())
        .or_else(|| which("goflow2"))
}

/// First line a binary prints for its version option (stdout or stderr).
pub fn version_line(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// goflow2's command line: NetFlow/IPFIX on `flow_port`, metrics and health on `http_port`,
/// flows encoded as `format` (`bin` or `json`) into /dev/null.
pub fn goflow2_command(bin: &Path, flow_port: u16, http_port: u16, format: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg("-listen")
        .arg(format!("netflow://127.0.0.1:{flow_port}"))
        .arg("-addr")
        .arg(format!("127.0.0.1:{http_port}"))
        .args(["-format", format])
        .args(["-transport", "file", "-transport.file", "/dev/null"])
        .args(["-loglevel", "warn"]);
    c
}

/// goflow2's counters from its /metrics text.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Goflow2Counts {
    /// Datagrams decoded (`goflow2_flow_traffic_packets_total`).
    pub datagrams: f64,
    /// Datagrams dropped, queue full (`goflow2_flow_dropped_packets_total`).
    pub dropped: f64,
    /// Flow records of data sets (`…flowset_records_total{type="DataFlowSet"}`).
    pub flows: f64,
    /// Decode errors (`goflow2_flow_decoder_error_total`).
    pub errors: f64,
}

pub fn goflow2_counts(text: &str) -> Goflow2Counts {
    Goflow2Counts {
        datagrams: prom::sum(text, "goflow2_flow_traffic_packets_total").unwrap_or(0.0),
        dropped: prom::sum(text, "goflow2_flow_dropped_packets_total").unwrap_or(0.0),
        flows: prom::sum_where(
            text,
            "goflow2_flow_process_nf_flowset_records_total",
            "type",
            "DataFlowSet",
        )
        .unwrap_or(0.0),
        errors: prom::sum(text, "goflow2_flow_decoder_error_total").unwrap_or(0.0),
    }
}

/// nfacctd's configuration: NetFlow/IPFIX on 127.0.0.1:`flow_port`, one print plugin counting
/// flows per protocol into `csv` (appended every second).
pub fn nfacctd_config(flow_port: u16, csv: &Path, log: &Path) -> String {
    format!(
        "! written by nmsd-e2e\n\
         daemonize: false\n\
         logfile: {log}\n\
         nfacctd_ip: 127.0.0.1\n\
         nfacctd_port: {flow_port}\n\
         nfacctd_pipe_size: 4194304\n\
         plugins: print[count]\n\
         aggregate[count]: proto, flows\n\
         print_output[count]: csv\n\
         print_output_file[count]: {csv}\n\
         print_output_file_append[count]: true\n\
         print_refresh_time[count]: 1\n",
        log = log.display(),
        csv = csv.display()
    )
}

/// Flows nfacctd has written to its CSV so far: the sum of the FLOWS column (0 before the
/// first write).
pub fn nfacctd_flows(csv: &Path) -> Result<f64, String> {
    let text = match std::fs::read_to_string(csv) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0.0),
        Err(e) => return Err(format!("{}: {e}", csv.display())),
    };
    let mut col = None;
    let mut total = 0.0;
    // Only complete lines: the plugin's writer may be half-way through one.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let line = line.trim_end();
        if line.contains("FLOWS") {
            col = line.split(',').position(|h| h.trim() == "FLOWS");
            continue;
        }
        let Some(i) = col else { continue };
        if let Some(v) = line
            .split(',')
            .nth(i)
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            total += v;
        }
    }
    Ok(total)
}

/// "Missing data detected" warnings in nfacctd's log so far: its core process found the pipe
/// to the plugin full and dropped flows (it does not say how many).
pub fn nfacctd_pipe_warnings(log: &Path) -> f64 {
    std::fs::read_to_string(log)
        .map(|t| t.matches("Missing data detected").count() as f64)
        .unwrap_or(0.0)
}

/// nfcapd's command line: binary files in `dir`, 4 MiB socket buffer.
pub fn nfcapd_command(bin: &Path, flow_port: u16, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["-b", "127.0.0.1", "-p", &flow_port.to_string(), "-w"])
        .arg(dir)
        .args(["-t", "3600", "-I", "e2e", "-B", "4194304"]);
    c
}

/// Flows stored under `dir`, from `nfdump -R DIR -I` (run only once nfcapd has stopped:
/// nfdump 1.7.1 crashes on a file still being written).
pub fn nfdump_flows(nfdump: &Path, dir: &Path) -> Result<f64, String> {
    let out = Command::new(nfdump)
        .arg("-R")
        .arg(dir)
        .arg("-I")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", nfdump.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Flows:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "nfdump -R {} -I gave no flow count ({}): {}{}",
                dir.display(),
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// Wait until a UDP socket is bound to 127.0.0.1:`port`, while `alive` says the process runs.
pub fn wait_udp_bound(
    port: u16,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if procfs::udp_port(port).sockets > 0 {
            return Ok(());
        }
        if !alive() {
            return Err("exited before binding its socket".into());
        }
        if Instant::now() > deadline {
            return Err(format!("no socket on UDP port {port} after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_version_is_read_from_the_install_script() {
        let v = goflow2_pinned_version();
        assert!(v.starts_with("v2."), "{v}");
    }

    #[test]
    fn goflow2_metrics() {
        let t = "goflow2_flow_process_nf_flowset_records_total{router=\"127.0.0.1\",type=\"DataFlowSet\",version=\"9\"} 21721\n\
                 goflow2_flow_process_nf_flowset_records_total{router=\"127.0.0.1\",type=\"OptionsDataFlowSet\",version=\"9\"} 3\n\
                 goflow2_flow_traffic_packets_total{local_ip=\"127.0.0.1\",local_port=\"1\",remote_ip=\"127.0.0.1\",type=\"netflow\"} 821\n";
        let c = goflow2_counts(t);
        assert_eq!(c.flows, 21721.0);
        assert_eq!(c.datagrams, 821.0);
        assert_eq!(c.dropped, 0.0);
    }

    #[test]
    fn nfacctd_csv_sum() {
        let dir = std::env::temp_dir().join(format!("nmsd-peers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let csv = dir.join("f.csv");
        assert_eq!(nfacctd_flows(&csv), Ok(0.0));
        std::fs::write(
            &csv,
            "PROTOCOL,PACKETS,FLOWS,BYTES\ntcp,10,20,30\nudp,1,2,3\nPROTOCOL,PACKETS,FLOWS,BYTES\nicmp,5,7,9\nicmp,5,8",
        )
        .expect("write");
        assert_eq!(nfacctd_flows(&csv), Ok(29.0)); // the unfinished last line is not counted
        let _ = std::fs::remove_dir_all(&dir);
    }
}
