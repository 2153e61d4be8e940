//! `[sources.<id>] type = "capture"`: live packets from a network interface (a mirror/SPAN
//! port, or the host's own traffic) into flows.
//!
//! Own code over `libc`, not pnet (decision 0019). The source uses an AF_PACKET socket bound to
//! the interface and reads bursts of up to 64 frames with `recvmmsg`, each cut to the snap
//! length. Flows only need headers, so a short snap length keeps copies small, and an IP length
//! comes from the IP header, not from what was captured. Other settings:
//! - promiscuous mode is an interface membership, so it ends with the socket;
//! - an optional classic BPF program in `tcpdump -ddd` form is attached with
//!   SO_ATTACH_FILTER;
//! - a read timeout (SO_RCVTIMEO) keeps shutdown prompt;
//! - the kernel's drop count (PACKET_STATISTICS) is read every second.
//!
//! Frames are decoded with [`nmsd_parsers::packet`] and accounted in a
//! [`FlowTable`] on the same thread, on wall-clock time. The socket needs CAP_NET_RAW; without
//! it the source fails to start and says so.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::packet_flows::FlowTableKeys;
use super::receive_pacer::ReceivePacer;
use nmsd_parsers::packet::{self, LinkType, PacketError};
use nmsd_pipeline::Batch;
use nmsd_pipeline::flow_table::{FlowTable, FlowTableConfig, FlowTableStats};
use nmsd_pipeline::records::FlowRecord;
use nmsd_pipeline::route::SourceOutput;
use nmsd_pipeline::units::{ByteSize, HumanDuration};
use serde::Deserialize;

/// Live capture on one interface: `[sources.<id>] type = "capture"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSourceConfig {
    /// The interface to capture on (`eth1`, a SPAN port, a veth).
    pub interface: String,
    /// Receive frames not addressed to the interface (a mirror port needs this).
    #[serde(default = "default_true")]
    pub promiscuous: bool,
    /// Bytes kept of each frame: headers are enough for flows.
    #[serde(default = "default_snap_length")]
    pub snap_length: usize,
    /// A classic BPF program in `tcpdump -ddd EXPRESSION` form (the count, then one
    /// `code jt jf k` per instruction, separated by commas or newlines); frames it rejects
    /// never leave the kernel.
    #[serde(default)]
    pub bpf_filter: Option<String>,
    /// How long a read waits before the loop looks at the clock and the stop flag.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// SO_RCVBUF of the socket: what a burst can queue in the kernel.
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Capture threads, each with its own socket, flow table (`max_flows` shared out) and
    /// processor instances. With more than one, the kernel spreads frames over their sockets
    /// by flow hash (PACKET_FANOUT_HASH), so a flow is always built by the same thread.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Under steady traffic, let frames gather this long between reads instead of waking for
    /// each (decision 0005); zero wakes for every frame.
    #[serde(default = "default_receive_coalesce")]
    pub receive_coalesce: HumanDuration,
    /// The flows' exporter; by default the interface's first IPv4 address (0.0.0.0 if none).
    #[serde(default)]
    pub exporter: Option<IpAddr>,
    #[serde(default = "super::packet_flows::default_max_flows")]
    pub max_flows: usize,
    #[serde(default = "super::packet_flows::default_active_timeout")]
    pub active_timeout: HumanDuration,
    #[serde(default = "super::packet_flows::default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "super::packet_flows::default_tcp_close_timeout")]
    pub tcp_close_timeout: HumanDuration,
}

fn default_true() -> bool {
    true
}
fn default_snap_length() -> usize {
    256
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration::from_millis(100)
}
fn default_receive_buffer() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_threads() -> usize {
    1
}
fn default_receive_coalesce() -> HumanDuration {
    HumanDuration::from_millis(1)
}

/// A `tcpdump -ddd` program as `sock_filter` instructions.
pub fn parse_bpf(text: &str) -> Result<Vec<libc::sock_filter>, String> {
    let mut parts = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let count: usize = parts
        .next()
        .ok_or("empty program")?
        .parse()
        .map_err(|_| "the first number must be the instruction count")?;
    let mut prog = Vec::new();
    for (i, ins) in parts.enumerate() {
        let n: Vec<u32> = ins
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("instruction {i} is not four numbers: {ins:?}"))?;
        let [code, jt, jf, k] = n[..] else {
            return Err(format!("instruction {i} is not four numbers: {ins:?}"));
        };
        let (Ok(code), Ok(jt), Ok(jf)) = (u16::try_from(code), u8::try_from(jt), u8::try_from(jf))
        else {
            return Err(format!("instruction {i} is out of range: {ins:?}"));
        };
        prog.push(libc::sock_filter { code, jt, jf, k });
    }
    if prog.len() != count || count == 0 || count > 4096 {
        return Err(format!(
            "the program says {count} instructions and has {} (1 to 4096)",
            prog.len()
        ));
    }
    Ok(prog)
}

impl CaptureSourceConfig {
    fn table_keys(&self) -> FlowTableKeys {
        FlowTableKeys {
            max_flows: self.max_flows,
            active_timeout: self.active_timeout,
            idle_timeout: self.idle_timeout,
            tcp_close_timeout: self.tcp_close_timeout,
        }
    }

    fn table_config(&self, exporter: IpAddr, in_if: u32, source: u8) -> FlowTableConfig {
        self.table_keys().table_config(exporter, in_if, source)
    }
}

impl super::SourceSpec for CaptureSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        nmsd_pipeline::StreamSet::of(&[nmsd_pipeline::StreamKind::Flows])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let e = |k: &str, m: String| Err((k.to_string(), m));
        if self.interface.is_empty() || self.interface.len() >= libc::IFNAMSIZ {
            return e("interface", "an interface name of 1 to 15 bytes".into());
        }
        if !(64..=65_535).contains(&self.snap_length) {
            return e("snap_length", "must be between 64 and 65535".into());
        }
        if let Some(f) = &self.bpf_filter
            && let Err(m) = parse_bpf(f)
        {
            return e("bpf_filter", m);
        }
        if self.read_timeout.0.is_zero() || self.read_timeout.0 > Duration::from_secs(1) {
            return e("read_timeout", "must be above 0 and at most 1s".into());
        }
        if !(64 << 10..=(i32::MAX as u64)).contains(&self.receive_buffer.0) {
            return e("receive_buffer", "must be between 64KiB and 2GiB".into());
        }
        if !(1..=64).contains(&self.threads) {
            return e("threads", "must be between 1 and 64".into());
        }
        if self.receive_coalesce.0 > Duration::from_millis(20) {
            return e(
                "receive_coalesce",
                "must be at most 20ms (the socket buffer must hold what arrives meanwhile)".into(),
            );
        }
        self.table_keys().validate()
    }

    fn flow_source(&self) -> bool {
        true
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn start(&self, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        use anyhow::Context;
        let what = || format!("capturing on interface \"{}\"", self.interface);
        // Every socket is open (and in the fanout group) before any thread starts, so a
        // refusal stops the start with nothing running.
        let mut socks = vec![CaptureSocket::open(self).with_context(what)?];
        if ctx.thread_outputs.len() > 1 {
            let group = socks[0].start_fanout().with_context(what)?;
            for _ in 1..ctx.thread_outputs.len() {
                let s = CaptureSocket::open(self).with_context(what)?;
                s.join_fanout(group).with_context(what)?;
                socks.push(s);
            }
        }
        let exporter = self
            .exporter
            .or_else(|| first_ipv4(&self.interface).map(IpAddr::V4))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut table = self.table_config(exporter, socks[0].ifindex, ctx.flow_source_index);
        table.max_flows = table.max_flows.div_ceil(socks.len());
        let snap = self.snap_length;
        let coalesce = self.receive_coalesce.0;
        tracing::info!(
            source = %ctx.id,
            interface = %self.interface,
            ifindex = socks[0].ifindex,
            %exporter,
            promiscuous = self.promiscuous,
            threads = socks.len(),
            "capturing packets"
        );
        let mut running = super::RunningSource::default();
        for (i, (sock, output)) in socks.into_iter().zip(ctx.thread_outputs).enumerate() {
            let (id, stop) = (ctx.id.to_string(), ctx.stop.clone());
            let name = if i == 0 {
                format!("nmsd-cap-{id}")
            } else {
                format!("nmsd-cap-{id}-{i}")
            };
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || run(&id, sock, snap, coalesce, table, &output, &stop))?;
            running.threads.push(thread);
        }
        running
            .status
            .insert("interface".into(), self.interface.clone().into());
        Ok(running)
    }
}

/// An AF_PACKET socket bound to one interface.
struct CaptureSocket {
    fd: OwnedFd,
    ifindex: u32,
    link: LinkType,
}

/// How the interface's frames begin, from its ARPHRD type: Ethernet and loopback carry an
/// Ethernet header, tun-style devices (ARPHRD_NONE) bare IP.
fn link_type(interface: &str) -> anyhow::Result<LinkType> {
    let path = format!("/sys/class/net/{interface}/type");
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
    match text.trim() {
        "1" | "772" => Ok(LinkType::Ethernet),
        "65534" => Ok(LinkType::RawIp),
        other => anyhow::bail!(
            "link type {other} (ARPHRD) is not supported: Ethernet, loopback and tun-style \
             (raw IP) interfaces are"
        ),
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the size passed; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl CaptureSocket {
    fn open(cfg: &CaptureSourceConfig) -> anyhow::Result<Self> {
        let name = CString::new(cfg.interface.as_str())?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            anyhow::bail!("no such interface: {}", io::Error::last_os_error());
        }
        let link = link_type(&cfg.interface)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket receives nothing until it is bound to the interface below, so
        // no frame of another interface slips in between socket() and bind().
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EPERM) {
                anyhow::bail!(
                    "opening a packet socket needs CAP_NET_RAW: run as root, or give the \
                     service AmbientCapabilities=CAP_NET_RAW and RestrictAddressFamilies with \
                     AF_PACKET (README, \"Packet capture\")"
                );
            }
            return Err(err.into());
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        if let Some(f) = &cfg.bpf_filter {
            let prog = parse_bpf(f).map_err(|m| anyhow::anyhow!("bpf_filter: {m}"))?;
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            setsockopt(s, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
                .map_err(|e| anyhow::anyhow!("bpf_filter refused by the kernel: {e}"))?;
        }
        let bytes = libc::c_int::try_from(cfg.receive_buffer.0).unwrap_or(libc::c_int::MAX);
        // Past rmem_max only the FORCE variant (CAP_NET_ADMIN) gets it; fall back quietly.
        if setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes).is_err() {
            setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes)?;
        }
        let tv = libc::timeval {
            tv_sec: cfg.read_timeout.0.as_secs() as libc::time_t,
            tv_usec: cfg.read_timeout.0.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        // SAFETY: zeroed sockaddr_ll is valid; the fields set are the ones bind reads.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                s,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        if cfg.promiscuous {
            // SAFETY: zeroed packet_mreq is valid.
            let mut mreq: libc::packet_mreq = unsafe { zeroed() };
            mreq.mr_ifindex = ifindex as i32;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        Ok(CaptureSocket { fd, ifindex, link })
    }

    /// Make this socket the first of a fanout group that spreads frames by flow hash; returns
    /// the group's id, which the kernel picks unused (PACKET_FANOUT_FLAG_UNIQUEID), for the
    /// other sockets to join.
    fn start_fanout(&self) -> io::Result<u16> {
        let fd = self.fd.as_raw_fd();
        let arg: u32 = (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
        let mut got: u32 = 0;
        let mut len = size_of::<u32>() as libc::socklen_t;
        // SAFETY: `got` is a u32 and `len` says so; the kernel writes at most that.
        check(unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                (&mut got as *mut u32).cast(),
                &mut len,
            )
        })?;
        Ok((got & 0xFFFF) as u16)
    }

    /// Join the fanout group `group` (see [`start_fanout`](Self::start_fanout)).
    fn join_fanout(&self, group: u16) -> io::Result<()> {
        let arg: u32 = libc::PACKET_FANOUT_HASH << 16 | u32::from(group);
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            &arg,
        )
    }

    /// Frames the kernel dropped since the last call (reading resets the kernel's count).
    fn kernel_drops(&self) -> u64 {
        // SAFETY: zeroed tpacket_stats is valid; getsockopt writes at most `len` bytes.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc < 0 { 0 } else { u64::from(st.tp_drops) }
    }
}

/// The interface's first IPv4 address.
fn first_ipv4(interface: &str) -> Option<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned, which stays valid until freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name from the kernel; a sockaddr of the family it says.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if name.to_bytes() == interface.as_bytes() && i32::from(family) == libc::AF_INET {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// Frames read per recvmmsg.
const BURST: usize = 64;
const BATCH_FLOWS: usize = 1024;

fn run(
    id: &str,
    sock: CaptureSocket,
    snap: usize,
    coalesce: Duration,
    table: FlowTableConfig,
    output: &SourceOutput,
    stop: &AtomicBool,
) {
    let l = [("source", id.to_string())];
    let frames_total = metrics::counter!("nmsd_packet_frames_total", &l);
    let kernel_drops = metrics::counter!("nmsd_capture_kernel_drops_total", &l);
    let evicted = metrics::counter!("nmsd_flow_table_evicted_total", &l);
    let flows_total = metrics::counter!("nmsd_packet_flows_total", &l);
    let syn = metrics::counter!("nmsd_packet_tcp_syn_total", &l);
    let syn_ack = metrics::counter!("nmsd_packet_tcp_syn_ack_total", &l);
    let rst = metrics::counter!("nmsd_packet_tcp_rst_total", &l);
    let unreachable = metrics::counter!("nmsd_packet_icmp_unreachable_total", &l);
    let malformed: Vec<metrics::Counter> = PacketError::KINDS
        .iter()
        .map(|k| {
            metrics::counter!("nmsd_packet_frames_malformed_total",
                "source" => id.to_string(), "kind" => *k)
        })
        .collect();
    let mut table = FlowTable::new(table);
    let mut bufs = vec![0u8; BURST * snap];
    let mut out: Vec<FlowRecord> = Vec::with_capacity(BATCH_FLOWS);
    let mut last_second = Instant::now();
    let fd = sock.fd.as_raw_fd();
    let emit = |out: &mut Vec<FlowRecord>| {
        if out.is_empty() {
            return;
        }
        flows_total.increment(out.len() as u64);
        // Sized to what it holds: a batch weighs its capacity in the queues' byte bounds.
        output.send(Batch::flows(out.to_vec()));
        out.clear();
    };
    // The table's exact totals, published as they grow.
    let mut published = FlowTableStats::default();
    let mut publish = |now: FlowTableStats| {
        evicted.increment(now.evicted - published.evicted);
        syn.increment(now.syn - published.syn);
        syn_ack.increment(now.syn_ack - published.syn_ack);
        rst.increment(now.rst - published.rst);
        unreachable.increment(now.icmp_unreachable - published.icmp_unreachable);
        published = now;
    };
    let mut pacer = ReceivePacer::new(coalesce);
    while !stop.load(Ordering::Relaxed) {
        let flags = pacer.flags(false);
        // SAFETY: zeroed iovec/mmsghdr arrays are valid; each iovec points into `bufs`, which
        // outlives the call, and each msghdr into `iovs`.
        let mut iovs: [libc::iovec; BURST] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BURST] = unsafe { zeroed() };
        for (i, (iov, msg)) in iovs.iter_mut().zip(msgs.iter_mut()).enumerate() {
            iov.iov_base = bufs[i * snap..].as_mut_ptr().cast();
            iov.iov_len = snap;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // Wait for the first frame (up to the read timeout) or not (polling), take whatever
        // else is queued.
        // SAFETY: `msgs` holds BURST headers set up above; the kernel writes at most that many.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BURST as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            pacer.read(flags, n as usize, BURST);
        } else {
            pacer.nothing();
        }
        let now_ms = nmsd_pipeline::clock::unix_ms();
        if n > 0 {
            frames_total.increment(n as u64);
            for (i, msg) in msgs.iter().take(n as usize).enumerate() {
                let len = (msg.msg_len as usize).min(snap);
                let frame = &bufs[i * snap..i * snap + len];
                match packet::decode(sock.link, frame) {
                    Ok(p) => table.add(now_ms, &p, &mut out),
                    Err(e) => {
                        if let Some(k) = PacketError::KINDS.iter().position(|k| *k == e.kind()) {
                            malformed[k].increment(1);
                        }
                    }
                }
            }
        } else if n < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                tracing::warn!(source = %id, "capture read failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if last_second.elapsed() >= Duration::from_secs(1) {
            last_second = Instant::now();
            table.expire(now_ms, &mut out);
            kernel_drops.increment(sock.kernel_drops());
            publish(table.stats());
        }
        if out.len() >= BATCH_FLOWS || (!out.is_empty() && n <= 0) {
            emit(&mut out);
        }
        output.tick_if_due();
    }
    table.flush(&mut out);
    emit(&mut out);
    output.flush();
    publish(table.stats());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_programs_in_tcpdump_ddd_form() {
        // tcpdump -ddd udp (IPv4 only): ldh [12]; jeq #0x800; ldb [23]; jeq #17; ret; ret.
        let p = parse_bpf("6\n40 0 0 12\n21 0 3 2048\n48 0 0 23\n21 0 1 17\n6 0 0 262144\n6 0 0 0")
            .unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!((p[1].code, p[1].jt, p[1].jf, p[1].k), (21, 0, 3, 2048));
        assert!(parse_bpf("6,40 0 0 12,6 0 0 0").is_err(), "count mismatch");
        assert!(parse_bpf("1,6 0 0").is_err(), "three numbers");
        assert!(parse_bpf("1,70000 0 0 0").is_err(), "code out of range");
        assert!(parse_bpf("").is_err());
    }
}
