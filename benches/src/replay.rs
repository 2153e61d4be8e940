//! A paced `sendmmsg` replayer of an export [`Stream`] to a loopback UDP address.
//!
//! Each exporter is its own connected UDP socket (its own source port) with its own position in
//! the stream, its own sequence counters and its own domain ids (see
//! [`crate::stream::mapped_domain`]), so a collector sees N independent exporters. Bursts of
//! `burst` datagrams leave when they are due at the target rate (deadline pacing: the schedule
//! does not drift when one sleep is long); a sender that cannot keep up sends back to back and
//! reports the rate it achieved.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmsd_pipeline::clock::unix_ms;

use crate::stream::{ExportDatagram, Stream, mapped_domain, sequence_advance, write_rewritten};

/// How close to a burst's due time the sender stops sleeping and spins.
const SPIN_US: u64 = 5;

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub dest: SocketAddr,
    /// Datagrams per second, all exporters together.
    pub rate: f64,
    pub duration: Duration,
    /// Stop after this many datagrams even if time is left.
    pub max_datagrams: Option<u64>,
    /// Datagrams per `sendmmsg` call (and pacing step).
    pub burst: usize,
    /// Independent exporters (sockets), sharing the rate.
    pub exporters: usize,
    /// Stream datagrams between template refreshes, per exporter; 0 = only at the start.
    pub template_every: u64,
    /// Move header and record times to the send time.
    pub retime: bool,
    /// SO_SNDBUF per socket.
    pub send_buffer: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            dest: SocketAddr::from(([127, 0, 0, 1], 2055)),
            rate: 10_000.0,
            duration: Duration::from_secs(10),
            max_datagrams: None,
            burst: 32,
            exporters: 1,
            template_every: 1000,
            retime: true,
            send_buffer: 4 << 20,
        }
    }
}

/// What was sent.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Datagrams sent (template refreshes included).
    pub datagrams: u64,
    /// Template refresh datagrams among them.
    pub template_datagrams: u64,
    /// Flow records in the datagrams sent.
    pub flows: u64,
    pub bytes: u64,
    /// Datagrams the kernel refused (not counted as sent; they leave a sequence gap).
    pub send_errors: u64,
    pub elapsed: Duration,
    /// CPU time of the sending thread.
    pub cpu: Duration,
    pub target_rate: f64,
}

impl ReplayReport {
    pub fn rate(&self) -> f64 {
        self.datagrams as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn flow_rate(&self) -> f64 {
        self.flows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// True when the sender fell more than 2 % short of the target rate.
    pub fn sender_limited(&self) -> bool {
        self.target_rate > 0.0 && self.rate() < self.target_rate * 0.98
    }

    pub fn summary(&self) -> String {
        format!(
            "sent {} datagrams ({} template refreshes), {} flows, {} bytes in {:.3} s: \
             {:.0} datagrams/s ({:.0} target), {:.0} flows/s; send errors {}; sender CPU {:.0} %{}",
            self.datagrams,
            self.template_datagrams,
            self.flows,
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.target_rate,
            self.flow_rate(),
            self.send_errors,
            100.0 * self.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9),
            if self.sender_limited() {
                " (SENDER-LIMITED: below target)"
            } else {
                ""
            }
        )
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"datagrams\":{},\"template_datagrams\":{},\"flows\":{},\"bytes\":{},\
             \"send_errors\":{},\"elapsed_s\":{:.6},\"rate\":{:.1},\"target_rate\":{:.1},\
             \"flow_rate\":{:.1},\"sender_cpu_s\":{:.3}}}",
            self.datagrams,
            self.template_datagrams,
            self.flows,
            self.bytes,
            self.send_errors,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.target_rate,
            self.flow_rate(),
            self.cpu.as_secs_f64()
        )
    }
}

/// Refuse anything but loopback: this tool floods its destination.
pub fn check_destination(dest: &SocketAddr) -> Result<(), String> {
    if dest.ip().is_loopback() && dest.port() != 0 {
        Ok(())
    } else {
        Err(format!(
            "refusing to send to {dest}: only loopback destinations (127.0.0.1, ::1) with a \
             port are allowed"
        ))
    }
}

struct Exporter {
    id: u32,
    socket: UdpSocket,
    pos: usize,
    since_refresh: u64,
    /// Refresh datagrams still to send before the next stream datagram.
    refresh_queue: Vec<usize>,
    /// Next sequence number per stream domain.
    seq: Vec<u32>,
}

impl Exporter {
    /// The next datagram to send and whether it is a template refresh.
    fn next<'s>(&mut self, stream: &'s Stream, template_every: u64) -> (&'s ExportDatagram, bool) {
        if let Some(i) = self.refresh_queue.pop() {
            return (&stream.refresh[i], true);
        }
        let d = &stream.datagrams[self.pos];
        self.pos = (self.pos + 1) % stream.datagrams.len();
        self.since_refresh += 1;
        if template_every > 0 && self.since_refresh >= template_every {
            self.since_refresh = 0;
            self.refresh_queue = (0..stream.refresh.len()).rev().collect();
        }
        (d, false)
    }
}

fn set_send_buffer(sock: &UdpSocket, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// Send `stream` to `cfg.dest` until the duration is over, `max_datagrams` are sent or `stop`
/// is set.
pub fn replay(stream: &Stream, cfg: &ReplayConfig, stop: &AtomicBool) -> io::Result<ReplayReport> {
    check_destination(&cfg.dest).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if stream.datagrams.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the stream holds no NetFlow/IPFIX datagrams",
        ));
    }
    if cfg.rate.is_nan() || cfg.rate <= 0.0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the rate must be above 0",
        ));
    }
    let burst = cfg.burst.clamp(1, 1024);
    let bind: SocketAddr = if cfg.dest.is_ipv6() {
        "[::1]:0".parse().map_err(io::Error::other)?
    } else {
        "127.0.0.1:0".parse().map_err(io::Error::other)?
    };
    let mut exporters = Vec::with_capacity(cfg.exporters.max(1));
    for id in 0..cfg.exporters.max(1) {
        let socket = UdpSocket::bind(bind)?;
        set_send_buffer(&socket, cfg.send_buffer);
        socket.connect(cfg.dest)?;
        exporters.push(Exporter {
            id: id as u32,
            socket,
            pos: 0,
            since_refresh: 0,
            refresh_queue: (0..stream.refresh.len()).rev().collect(),
            seq: vec![0; stream.domains.len()],
        });
    }
    // Tighter sleeps: the default 50 µs timer slack is half a burst period at 300k/s.
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer and only affects this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }

    let largest = stream
        .datagrams
        .iter()
        .chain(&stream.refresh)
        .map(|d| d.payload.len())
        .max()
        .unwrap_or(0);
    let mut slots: Vec<Vec<u8>> = (0..burst).map(|_| Vec::with_capacity(largest)).collect();
    let mut slot_flows = vec![0u64; burst];
    let mut slot_refresh = vec![false; burst];
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; burst];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; burst];

    let total = {
        let by_time = (cfg.rate * cfg.duration.as_secs_f64()).ceil() as u64;
        cfg.max_datagrams.map_or(by_time, |m| m.min(by_time))
    };
    let mut report = ReplayReport {
        target_rate: cfg.rate,
        ..ReplayReport::default()
    };
    let cpu0 = crate::procfs::thread_cpu_time();
    let start = Instant::now();
    let mut attempted: u64 = 0;
    let mut next_exporter = 0usize;
    while attempted < total && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let elapsed = now - start;
        if elapsed >= cfg.duration {
            break;
        }
        let due = ((elapsed.as_secs_f64() * cfg.rate) as u64).min(total);
        let want = (burst as u64).min(total - attempted);
        if due < attempted + want {
            // Sleep until this burst is due, spinning only for the last few µs. A sleep wakes
            // up to ~60 µs late here; deadline pacing sends what fell due meanwhile, so the
            // rate holds. Spinning through whole burst periods (as this did below 150 µs, i.e.
            // above ~210k datagrams/s) kept a core busy that a collector with a receive and a
            // parse thread needs on this 2-core machine, while a single-threaded peer did not.
            let at = start + Duration::from_secs_f64((attempted + want) as f64 / cfg.rate);
            let wait = at.saturating_duration_since(now);
            if wait > Duration::from_micros(SPIN_US) {
                std::thread::sleep(wait - Duration::from_micros(SPIN_US));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        let k = want.min(due - attempted) as usize;
        let exp = &mut exporters[next_exporter];
        next_exporter = (next_exporter + 1) % cfg.exporters.max(1);
        let now_ms = cfg.retime.then(unix_ms);
        for i in 0..k {
            let (d, refresh) = exp.next(stream, cfg.template_every);
            let seq = &mut exp.seq[d.domain_index];
            write_rewritten(d, &mut slots[i], *seq, mapped_domain(d, exp.id), now_ms);
            *seq = seq.wrapping_add(sequence_advance(d));
            slot_flows[i] = d.flows as u64;
            slot_refresh[i] = refresh;
            iovs[i] = libc::iovec {
                iov_base: slots[i].as_mut_ptr().cast(),
                iov_len: slots[i].len(),
            };
            let h = &mut hdrs[i];
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_len = 0;
        }
        let fd = exp.socket.as_raw_fd();
        let mut off = 0usize;
        let mut retries = 0;
        while off < k {
            // SAFETY: hdrs[off..k] are initialised headers pointing at iovecs over `slots`, which
            // stay alive and unmodified for the call; the socket is connected (no address).
            let r = unsafe { libc::sendmmsg(fd, hdrs[off..].as_mut_ptr(), (k - off) as _, 0) };
            if r > 0 {
                for i in off..off + r as usize {
                    report.datagrams += 1;
                    report.flows += slot_flows[i];
                    report.bytes += slots[i].len() as u64;
                    report.template_datagrams += slot_refresh[i] as u64;
                }
                off += r as usize;
                retries = 0;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::ENOBUFS) if retries < 100 => {
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(20));
                }
                _ => {
                    // ECONNREFUSED (nobody listening yet) and the like: skip this datagram.
                    report.send_errors += 1;
                    off += 1;
                }
            }
        }
        attempted += k as u64;
    }
    report.elapsed = start.elapsed();
    report.cpu = crate::procfs::thread_cpu_time().saturating_sub(cpu0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Format, GenConfig, generate};
    use nmsd_parsers::FlowDecoder;

    #[test]
    fn refuses_non_loopback() {
        assert!(check_destination(&"192.0.2.1:2055".parse().expect("addr")).is_err());
        assert!(check_destination(&"[::ffff:127.0.0.1]:2055".parse().expect("addr")).is_err());
        assert!(check_destination(&"127.0.0.1:0".parse().expect("addr")).is_err());
        assert!(check_destination(&"127.0.0.1:2055".parse().expect("addr")).is_ok());
        assert!(check_destination(&"[::1]:2055".parse().expect("addr")).is_ok());
    }

    #[test]
    fn replayed_stream_decodes_without_sequence_loss() {
        for format in [Format::V5, Format::V9, Format::Ipfix] {
            let dgs = generate(&GenConfig {
                format,
                flows: 300,
                ..GenConfig::default()
            });
            let stream = Stream::analyze(&dgs);
            let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
            rx.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let cfg = ReplayConfig {
                dest: rx.local_addr().expect("addr"),
                rate: 20_000.0,
                duration: Duration::from_secs(5),
                max_datagrams: Some(60),
                burst: 8,
                exporters: 2,
                template_every: 7,
                ..ReplayConfig::default()
            };
            let report = replay(&stream, &cfg, &AtomicBool::new(false)).expect("replay");
            assert_eq!(report.datagrams, 60);
            assert_eq!(report.send_errors, 0);
            let mut dec = FlowDecoder::default();
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            for _ in 0..60 {
                let (n, src) = rx.recv_from(&mut buf).expect("datagram");
                dec.decode(src.ip(), &buf[..n], unix_ms(), &mut out)
                    .expect("decodes");
            }
            assert_eq!(out.len() as u64, report.flows, "{format:?}");
            let st = dec.stats();
            assert_eq!(st.sequence_lost_flows, 0, "{format:?}");
            assert_eq!(st.sequence_lost_datagrams, 0, "{format:?}");
            assert_eq!(st.sequence_resets, 0, "{format:?}");
            assert_eq!(dec.domain_count(), 2);
            // Retimed: flows end within the last couple of minutes.
            let now = unix_ms();
            assert!(
                out.iter()
                    .all(|r| r.end_ms <= now && r.end_ms + 120_000 > now)
            );
        }
    }
}
