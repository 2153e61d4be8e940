//! A process's CPU time and memory from /proc (Linux).

use std::time::Duration;

/// User + system CPU time of process `pid` so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// A `/proc/PID/status` value in kB (e.g. "VmHWM", "VmRSS").
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Reset the peak RSS (VmHWM) of `pid` to its current RSS, so the next read is the peak of
/// what follows. Needs Linux ≥ 4.0 and permission over the process; false if refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `/proc/PID/stat` fields after the command name: state is `[0]`, ppid `[1]`, utime `[11]`,
/// stime `[12]`, cutime `[13]`, cstime `[14]`.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // The state letter is not a number: keep its slot with a 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// `pid` and every live descendant (children, grandchildren…), found through the parent pids
/// in /proc. Threads are not listed: a process's stat already sums its threads.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).copied()) {
                parents.push((p, ppid as u32));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(p, pp)| *pp == parent && *p != parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// CPU time of `pid` and all its descendants: utime + stime of every live process of the tree
/// (all threads) plus cutime + cstime (children that exited and were waited for, such as
/// nfacctd's cache writers). `None` if `pid` is gone.
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let mut ticks = 0u64;
    let mut found = false;
    for p in process_tree(pid) {
        if let Some(f) = stat_fields(p) {
            found |= p == pid;
            ticks += f.get(11..15).map_or(0, |v| v.iter().sum());
        }
    }
    found.then(|| Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Reset the peak RSS of `pid` and its descendants. Returns the processes reset (empty if
/// refused), to pass to [`tree_peak_rss_kb`] at the end of the measurement.
pub fn reset_tree_peak_rss(pid: u32) -> Vec<u32> {
    let tree = process_tree(pid);
    // Every process, even after one refused.
    let results: Vec<bool> = tree.iter().map(|&p| reset_peak_rss(p)).collect();
    if results.into_iter().all(|ok| ok) {
        tree
    } else {
        Vec::new()
    }
}

/// Peak RSS (`VmHWM`, kB) since [`reset_tree_peak_rss`], summed over the processes of `pid`'s
/// tree that were reset then and are still there: the collector's long-lived processes.
/// Short-lived children (nfacctd's cache writers, forked copies of its plugin that share its
/// pages) are left out rather than counted twice. `None` if nothing was reset.
pub fn tree_peak_rss_kb(pid: u32, reset: &[u32]) -> Option<u64> {
    let mut total = None;
    for p in process_tree(pid).into_iter().filter(|p| reset.contains(p)) {
        if let Some(v) = status_kb(p, "VmHWM") {
            *total.get_or_insert(0) += v;
        }
    }
    total
}

/// State of the UDP sockets bound to a local port, from /proc/net/udp and /proc/net/udp6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpPort {
    /// Sockets found.
    pub sockets: u32,
    /// Bytes waiting in the receive queues (skb truesize, as the kernel accounts them).
    pub rx_queue: u64,
    /// Datagrams the kernel dropped because a receive buffer was full (or for other reasons),
    /// over the sockets' lifetime.
    pub drops: u64,
}

/// Sum over the UDP sockets bound to local `port` (any address).
pub fn udp_port(port: u16) -> UdpPort {
    let mut out = UdpPort::default();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let Some(local_port) = f
                .get(1)
                .and_then(|l| l.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if local_port != port {
                continue;
            }
            out.sockets += 1;
            if let Some(rx) = f
                .get(4)
                .and_then(|q| q.split(':').nth(1))
                .and_then(|rx| u64::from_str_radix(rx, 16).ok())
            {
                out.rx_queue += rx;
            }
            if let Some(d) = f.last().and_then(|d| d.parse::<u64>().ok()) {
                out.drops += d;
            }
        }
    }
    out
}

/// The receive buffer the kernel granted the socket(s) bound to local `port` (`ss -m`'s
/// `rb`, bytes; twice the SO_RCVBUF asked for, as Linux accounts overhead). `None` when `ss`
/// is missing or shows no socket.
pub fn udp_rcvbuf(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-Hulmn", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("rb")? + 2;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// CPU time the calling thread has used (user + system).
pub fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; RUSAGE_THREAD is Linux-specific and always accepted.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(status_kb(me, "VmHWM").is_some_and(|v| v > 0));
        let _ = thread_cpu_time();
        assert!(tree_cpu_time(me).is_some());
        let reset = reset_tree_peak_rss(me);
        assert!(tree_peak_rss_kb(me, &reset).is_none_or(|v| v > 0));
        assert_eq!(process_tree(me)[0], me);
    }

    #[test]
    fn finds_a_udp_socket_by_port() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = s.local_addr().expect("addr").port();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.send_to(&[0u8; 100], ("127.0.0.1", port)).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        let st = udp_port(port);
        assert_eq!(st.sockets, 1);
        assert!(st.rx_queue > 0);
        assert_eq!(st.drops, 0);
    }
}
