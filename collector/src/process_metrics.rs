//! The standard `process_*` series of Prometheus client libraries (CPU time, memory, open
//! files and their limit, threads, start time), read from `/proc/self` at each scrape.
//!
//! Read here in a few lines rather than with the `metrics-process` crate, which brings `procfs`,
//! `rustix` and `linux-raw-sys` (six crates, ~570,000 lines of Rust) for these eight numbers:
//! docs/decisions/0014-process-metrics-from-proc.md. They are rendered as text next to the
//! recorder's output, like the SNMP series, because `process_cpu_seconds_total` is fractional
//! and the recorder's counters are integers.

use std::fmt::Write as _;

/// What one scrape reports; `None` where the kernel did not say.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` used here, in clock ticks and pages as the kernel gives them.
#[derive(Debug, PartialEq)]
pub struct Stat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub threads: u64,
    pub start_ticks_after_boot: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest starts with field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        threads: field(20)?,
        start_ticks_after_boot: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Boot time in Unix seconds, from the `btime` line of `/proc/stat`.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Read the process's own numbers now.
pub fn sample() -> ProcessSample {
    // SAFETY: sysconf and getrlimit have no preconditions; getrlimit writes only into `limit`.
    let (ticks_per_second, page_size, max_fds) = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        let max_fds = (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0)
            .then_some(limit.rlim_cur as f64);
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
            max_fds,
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t));
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_boot_time(&t));
    let open_fds = std::fs::read_dir("/proc/self/fd")
        // The directory's own descriptor, open while it is read, is not counted.
        .map(|d| d.count().saturating_sub(1) as f64)
        .ok();
    let ticks = (ticks_per_second > 0).then_some(ticks_per_second as f64);
    let page = (page_size > 0).then_some(page_size as f64);
    ProcessSample {
        cpu_seconds: stat
            .as_ref()
            .zip(ticks)
            .map(|(s, t)| (s.utime_ticks + s.stime_ticks) as f64 / t),
        resident_memory_bytes: stat.as_ref().zip(page).map(|(s, p)| s.rss_pages as f64 * p),
        virtual_memory_bytes: stat.as_ref().map(|s| s.vsize_bytes as f64),
        start_time_seconds: stat
            .as_ref()
            .zip(ticks)
            .zip(boot_time)
            .map(|((s, t), b)| b as f64 + s.start_ticks_after_boot as f64 / t),
        threads: stat.as_ref().map(|s| s.threads as f64),
        open_fds,
        max_fds,
    }
}

/// Append the `process_*` families of `s` to a Prometheus text exposition.
pub fn render(s: &ProcessSample, out: &mut String) {
    let families: [(&str, &str, &str, Option<f64>); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.virtual_memory_bytes,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            s.threads,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            s.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            s.max_fds,
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line of /proc/<pid>/stat, with a command name holding a space and a ')'.
    const STAT: &str = "4242 (nm sd) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        250 130 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                utime_ticks: 250,
                stime_ticks: 130,
                threads: 7,
                start_ticks_after_boot: 123456,
                vsize_bytes: 104_857_600,
                rss_pages: 2560,
            })
        );
    }

    #[test]
    fn truncated_or_garbled_stat_is_none_not_a_panic() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("4242 (nmsd) S 1 2"), None);
        assert_eq!(parse_stat(&STAT.replace("250", "x")), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3\nintr 5\nbtime 1765000000\nprocesses 9\n";
        assert_eq!(parse_boot_time(text), Some(1_765_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn own_process_is_read_and_rendered() {
        let s = sample();
        assert!(s.cpu_seconds.is_some_and(|v| v >= 0.0), "{s:?}");
        assert!(s.resident_memory_bytes.is_some_and(|v| v > 0.0), "{s:?}");
        assert!(s.threads.is_some_and(|v| v >= 1.0), "{s:?}");
        assert!(s.open_fds.is_some_and(|v| v >= 3.0), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            s.start_time_seconds
                .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0 * 365.0),
            "{s:?}"
        );
        let mut out = String::new();
        render(&s, &mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.contains("\nprocess_max_fds "), "{out}");
    }

    #[test]
    fn unknown_values_are_left_out() {
        let mut out = String::new();
        render(
            &ProcessSample {
                threads: Some(3.0),
                ..ProcessSample::default()
            },
            &mut out,
        );
        assert_eq!(
            out,
            "# HELP process_threads Number of OS threads in the process.\n\
             # TYPE process_threads gauge\nprocess_threads 3\n\n"
        );
    }
}
