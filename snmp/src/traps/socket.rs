//! The trap socket and its receive loop.
//!
//! Traps come in storms (a line card fails, a hundred interfaces go down at once), so the
//! socket asks for a large receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF up to
//! `net.core.rmem_max`), and what the kernel still drops is counted: SO_RXQ_OVFL stamps the
//! socket's drop count on every datagram read, and SO_MEMINFO is read once a second for drops
//! after the last one. Datagrams are read in bursts with `recvmmsg`; rows go to the sink in
//! batches (per [`Batching::max_rows`] rows or [`Batching::max_delay`], whichever comes first),
//! never one queue message per trap. A batch the sink queue refuses is counted in
//! `nmsd_snmp_traps_dropped_total{reason="queue"}`; both losses are summarized in the log.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmsd_pipeline::snmp::TrapRow;
use socket2::{Domain, Protocol, Socket, Type};

use super::TrapReceiver;

/// A bound trap socket and the receive buffer the kernel granted.
pub struct TrapSocket {
    socket: UdpSocket,
    listen: SocketAddr,
    receive_buffer: usize,
}

impl TrapSocket {
    /// Bind `listen` with a receive buffer of `receive_buffer` bytes (the kernel doubles it for
    /// its bookkeeping and counts ~830 bytes per small datagram: 16 MiB holds ~40,000 traps).
    pub fn bind(listen: SocketAddr, receive_buffer: usize) -> io::Result<TrapSocket> {
        let sock = Socket::new(
            Domain::for_address(listen),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        nmsd_sockets::set_receive_buffer(&sock, receive_buffer);
        enable_drop_counter(&sock);
        sock.bind(&listen.into())?;
        let granted = sock.recv_buffer_size().unwrap_or(0);
        if granted / 2 < receive_buffer {
            tracing::warn!(
                %listen,
                requested = receive_buffer,
                granted = granted / 2,
                "the trap socket's receive buffer is capped by net.core.rmem_max \
                 (raise it, or run with CAP_NET_ADMIN): trap bursts may be lost"
            );
        }
        Ok(TrapSocket {
            socket: sock.into(),
            listen,
            receive_buffer: granted,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// SO_RCVBUF as the kernel reports it (twice the usable request).
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }
}

fn enable_drop_counter(sock: &Socket) {
    let one: libc::c_int = 1;
    // SAFETY: as above. Failure only loses the kernel drop metric.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The SO_RXQ_OVFL count in a received message's control data, if present.
fn rxq_ovfl(h: &libc::msghdr) -> Option<u32> {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// How rows are grouped into sink queue messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// A batch is handed over when it has this many rows...
    pub max_rows: usize,
    /// ...or when its first row is this old.
    pub max_delay: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_rows: 1000,
            max_delay: Duration::from_millis(100),
        }
    }
}

/// Longest sleep: how soon `stop` is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Datagrams read per `recvmmsg`.
const SLOTS: usize = 16;
/// A slot holds the largest UDP datagram (SNMP allows up to 65,507 bytes); only the bytes
/// written are ever touched, so unused slot space costs no memory.
const SLOT: usize = 65536;
/// Control-message space per datagram: one cmsghdr plus a u32, 8-byte aligned, with headroom.
const CMSG_SPACE: usize = 64;

/// The kernel's cumulative drop count of the socket, turned into a counter.
struct KernelDrops {
    last: u32,
    counter: metrics::Counter,
}

impl KernelDrops {
    /// Drops since the last call. Stamps from datagrams read late can be older than a
    /// SO_MEMINFO read: only a newer count advances.
    fn update(&mut self, total: u32) -> u64 {
        let d = total.wrapping_sub(self.last);
        if d == 0 || d > u32::MAX / 2 {
            return 0;
        }
        self.last = total;
        self.counter.increment(d as u64);
        d as u64
    }
}

/// Receive on `sock` until `stop`; `output` gets the rows in batches and returns false when
/// it could not queue them (they are then counted as dropped).
pub fn run(
    sock: TrapSocket,
    mut receiver: TrapReceiver,
    stop: Arc<AtomicBool>,
    batching: Batching,
    mut output: impl FnMut(Vec<TrapRow>) -> bool,
) {
    super::describe_metrics();
    let listen = sock.listen;
    receiver.set_listen(listen);
    let label = listen.to_string();
    let mut kernel = KernelDrops {
        last: 0,
        counter: metrics::counter!("nmsd_snmp_trap_socket_kernel_drops_total", "listen" => label.clone()),
    };
    metrics::gauge!("nmsd_snmp_trap_socket_receive_buffer_bytes", "listen" => label.clone())
        .set(sock.receive_buffer as f64);
    let queue_drops = metrics::counter!("nmsd_snmp_traps_dropped_total", "reason" => "queue");
    let oversize = metrics::counter!("nmsd_snmp_traps_dropped_total", "reason" => "oversize");
    let receive_errors =
        metrics::counter!("nmsd_snmp_trap_receive_errors_total", "listen" => label);
    let batches = metrics::counter!("nmsd_snmp_trap_batches_total");

    let fd = sock.socket.as_raw_fd();
    let mut slots = vec![0u8; SLOTS * SLOT];
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; SLOTS];
    let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; SLOTS];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; SLOTS];
    // u64 elements give cmsghdr the alignment it needs.
    let mut ctrl: Vec<[u64; CMSG_SPACE / 8]> = vec![[0; CMSG_SPACE / 8]; SLOTS];
    let base = slots.as_mut_ptr();
    for (i, iov) in iovs.iter_mut().enumerate() {
        *iov = libc::iovec {
            // SAFETY: slot i lies within `slots` (SLOTS * SLOT bytes), which outlives the loop.
            iov_base: unsafe { base.add(i * SLOT) }.cast(),
            iov_len: SLOT,
        };
    }

    let max_rows = batching.max_rows.max(1);
    let mut pending: Vec<TrapRow> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut last_tick = Instant::now();
    let mut flush = |pending: &mut Vec<TrapRow>, receiver: &mut TrapReceiver| {
        if pending.is_empty() {
            return;
        }
        let n = pending.len();
        let batch = std::mem::replace(pending, Vec::with_capacity(n.min(max_rows)));
        batches.increment(1);
        if !output(batch) {
            queue_drops.increment(n as u64);
            receiver.note_lost("queue", n as u64, || {
                format!("{n} traps: the sink queue is full or stopped")
            });
        }
    };
    let kernel_note = |d: u64, receiver: &mut TrapReceiver| {
        if d > 0 {
            receiver.note_lost("socket_buffer", d, || {
                format!(
                    "the receive buffer of {listen} overflowed ({d} traps lost in the kernel; \
                     raise receive_buffer)"
                )
            });
        }
    };

    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if oldest.is_some_and(|t| now.duration_since(t) >= batching.max_delay) {
            flush(&mut pending, &mut receiver);
            oldest = None;
        }
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            last_tick = now;
            if let Some(total) = nmsd_sockets::kernel_drops(&sock.socket) {
                let d = kernel.update(total);
                kernel_note(d, &mut receiver);
            }
            receiver.tick();
        }
        let wait = oldest
            .map_or(IDLE_WAIT, |t| {
                batching.max_delay.saturating_sub(now.duration_since(t))
            })
            .min(IDLE_WAIT);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready <= 0 {
            continue;
        }
        for i in 0..SLOTS {
            let h = &mut hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctrl[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdrs holds SLOTS initialised headers whose pointers (names, iovecs into
        // `slots`, control buffers) stay valid and unaliased for the call's duration.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            let err = io::Error::last_os_error();
            if r < 0
                && !matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            {
                receive_errors.increment(1);
                tracing::warn!(%listen, "trap receive failed: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        let got = r as usize;
        for i in 0..got {
            let h = &hdrs[i];
            let Some(from) = sockaddr(&addrs[i]) else {
                continue;
            };
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                oversize.increment(1);
                receiver.note_lost("oversize", 1, || {
                    format!("a datagram over {SLOT} bytes from {from}")
                });
                continue;
            }
            let len = (h.msg_len as usize).min(SLOT);
            let data = &slots[i * SLOT..i * SLOT + len];
            let socket = &sock.socket;
            let mut reply = |bytes: &[u8]| {
                let _ = socket.send_to(bytes, from);
            };
            if let Some(row) = receiver.handle(data, from, &mut reply) {
                if pending.is_empty() {
                    oldest = Some(Instant::now());
                }
                pending.push(row);
                if pending.len() >= max_rows {
                    flush(&mut pending, &mut receiver);
                    oldest = None;
                }
            }
        }
        if let Some(total) = rxq_ovfl(&hdrs[got - 1].msg_hdr) {
            let d = kernel.update(total);
            kernel_note(d, &mut receiver);
        }
    }
    flush(&mut pending, &mut receiver);
    receiver.tick();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two ways the kernel's drop count is read really see drops (else the burst test's
    /// "0 kernel drops" would hold vacuously).
    #[test]
    fn kernel_drops_are_seen_by_meminfo_and_on_receive() {
        // The smallest buffer the kernel allows: a few datagrams.
        let sock = TrapSocket::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = sock.local_addr().unwrap();
        let fd = sock.socket.as_raw_fd();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            client.send_to(&[0u8; 200], addr).unwrap();
        }
        let meminfo = nmsd_sockets::kernel_drops(&sock.socket);
        if cfg!(target_arch = "x86_64") || cfg!(target_arch = "aarch64") {
            assert!(
                meminfo.is_some_and(|d| d > 0),
                "SO_MEMINFO drops: {meminfo:?}"
            );
        }
        // Datagrams queued before the overflow carry no count; the first one queued after it
        // (once the queue was drained) carries the drops so far.
        let mut buf = [0u8; 512];
        let mut ctrl = [0u64; CMSG_SPACE / 8];
        let mut read = || {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: all-zero is a valid msghdr; its pointers are set to live buffers.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_iov = &mut iov;
            h.msg_iovlen = 1;
            h.msg_control = ctrl.as_mut_ptr().cast();
            h.msg_controllen = CMSG_SPACE as _;
            // SAFETY: h points at live buffers of the sizes it states.
            let n = unsafe { libc::recvmsg(fd, &mut h, libc::MSG_DONTWAIT) };
            (n > 0).then(|| rxq_ovfl(&h))
        };
        while read().is_some() {}
        client.send_to(&[1u8; 200], addr).unwrap();
        let stamped = read().flatten();
        assert!(stamped.is_some_and(|d| d > 0), "SO_RXQ_OVFL: {stamped:?}");
    }

    #[test]
    fn kernel_drop_counts_only_advance() {
        let mut k = KernelDrops {
            last: 0,
            counter: metrics::Counter::noop(),
        };
        assert_eq!(k.update(0), 0);
        assert_eq!(k.update(5), 5);
        assert_eq!(k.update(3), 0, "an older stamp");
        assert_eq!(k.update(9), 4);
        k.last = u32::MAX - 1;
        assert_eq!(k.update(2), 4, "wraps");
    }
}
