//! `[sources.<id>] type = "netflow"`: NetFlow v5/v9 and IPFIX over UDP.
//!
//! N sockets bound to one address with SO_REUSEPORT; the kernel hashes each exporter (by its
//! address and port) to one socket, and each socket feeds one parse worker, which therefore owns
//! that exporter's templates without locks. A receive thread per socket reads bursts with
//! `recvmmsg` straight into a recycled [`DatagramBatch`] and pushes it onto its ring. The
//! kernel's own drop count of each socket is read every second by a separate thread
//! ([`run_drop_monitor`]), so drops are counted while a receive thread is blocked on a full
//! ring, when they happen most.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::receive_pacer::ReceivePacer;
use nmsd_pipeline::heartbeat::Heartbeat;
use nmsd_pipeline::records::DatagramBatch;
use nmsd_pipeline::ring::{FullPolicy, RingSender};
use nmsd_pipeline::units::{ByteSize, HumanDuration};
use nmsd_pipeline::worker::ParseWorker;
use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};

/// One NetFlow/IPFIX listener: `[sources.<id>] type = "netflow"`. The id names it in logs,
/// metric labels and the `source` column of flow tables.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowSourceConfig {
    /// Address and port to receive on; one port takes v5, v9 and IPFIX alike.
    pub listen: SocketAddr,
    /// Sockets (and receive threads) sharing the port; 0 means one per parse worker.
    #[serde(default)]
    pub sockets: usize,
    /// SO_RCVBUF per socket. Above `net.core.rmem_max` it needs root (SO_RCVBUFFORCE).
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Most datagrams per ring entry (batch).
    #[serde(default = "default_batch")]
    pub batch_datagrams: usize,
    /// Largest datagram accepted; longer ones are truncated and counted.
    #[serde(default = "default_max_datagram")]
    pub max_datagram_size: ByteSize,
    /// Ring entries (batches) between each socket and its worker.
    #[serde(default = "default_ring_capacity")]
    pub ring_capacity: usize,
    /// What the receive thread does when its ring is full: `drop` (count) or `block` (leave it
    /// to the kernel buffer, whose drops are counted too).
    #[serde(default = "default_ring_policy")]
    pub ring_full_policy: FullPolicy,
    /// Under steady traffic, how long the receive thread lets datagrams gather in the socket
    /// buffer between reads instead of waking for every arrival. 0 = wake on every arrival.
    #[serde(default = "default_receive_coalesce")]
    pub receive_coalesce: HumanDuration,
}

fn default_receive_buffer() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_batch() -> usize {
    64
}
fn default_max_datagram() -> ByteSize {
    ByteSize(9216)
}
/// 32 batches of 64 datagrams (~3 MB of 1.5 KB datagrams) with `block`: the socket buffer
/// behind the ring absorbs stalls, so a deep ring only adds memory (512 batches let the
/// process grow to ~50 MB per socket under load; see docs/decisions/0005).
fn default_ring_capacity() -> usize {
    32
}
fn default_ring_policy() -> FullPolicy {
    FullPolicy::Block
}
fn default_receive_coalesce() -> HumanDuration {
    HumanDuration::from_millis(1)
}

impl NetflowSourceConfig {
    /// Returns (key, message) on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let e = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if !(1..=1024).contains(&self.batch_datagrams) {
            return e("batch_datagrams", "must be between 1 and 1024");
        }
        if !(512..=65535).contains(&self.max_datagram_size.0) {
            return e("max_datagram_size", "must be between 512 and 65535 bytes");
        }
        // rtrb allocates the whole ring at start: an absurd capacity aborts the process.
        if !(1..=65_536).contains(&self.ring_capacity) {
            return e("ring_capacity", "must be between 1 and 65536");
        }
        // setsockopt takes an int; the kernel's floor is ~2 KiB.
        if !(4096..=(i32::MAX as u64)).contains(&self.receive_buffer.0) {
            return e("receive_buffer", "must be between 4KiB and 2GiB");
        }
        if self.sockets > 256 {
            return e("sockets", "must be at most 256");
        }
        if self.receive_coalesce.0 > Duration::from_millis(20) {
            return e(
                "receive_coalesce",
                "must be at most 20ms (the socket buffer must hold what arrives meanwhile)",
            );
        }
        Ok(())
    }
}

/// A bound socket and what the kernel actually granted.
pub struct BoundSocket {
    pub socket: UdpSocket,
    pub index: usize,
    /// SO_RCVBUF as the kernel reports it (it doubles the request for bookkeeping).
    pub receive_buffer: usize,
}

/// Fail if any socket already holds the source's address and port.
///
/// Our sockets share the port through SO_REUSEPORT, so binding them succeeds just as well when
/// a foreign socket with SO_REUSEPORT is already there, and the kernel then hashes part of the
/// exporters to it: their datagrams silently go elsewhere. A probe socket bound WITHOUT
/// SO_REUSEPORT (or SO_REUSEADDR) fails with EADDRINUSE if any socket holds a conflicting
/// address, whatever options that one was bound with; it is closed before ours are bound.
///
/// Accepted race: a socket bound between the probe's close and our first bind, or one that joins
/// our group later, is not seen. The kernel only lets sockets of the same effective user join a
/// reuseport group, so under the shipped unit (DynamicUser=) only a process running as nmsd's
/// own user could do either.
fn refuse_foreign_socket(cfg: &NetflowSourceConfig) -> io::Result<()> {
    if cfg.listen.port() == 0 {
        // An ephemeral port (tests): every bind gets a fresh port nobody holds.
        return Ok(());
    }
    let probe = Socket::new(
        Domain::for_address(cfg.listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if cfg.listen.is_ipv6() {
        // Conflict with IPv4 holders too, as our dual-stack sockets would.
        probe.set_only_v6(false)?;
    }
    match probe.bind(&cfg.listen.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!(
                "UDP {} is already held by a socket nmsd did not create (another collector, \
                 or a second nmsd): sharing the port would send part of the exporters' \
                 datagrams to it; stop it or change listen (see `ss -ulpn 'sport = :{}'`)",
                cfg.listen,
                cfg.listen.port()
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot bind {}: {e}", cfg.listen),
        )),
    }
}

/// Bind `count` SO_REUSEPORT sockets to the source's address, refusing a port another socket
/// already holds.
pub fn bind_sockets(cfg: &NetflowSourceConfig, count: usize) -> io::Result<Vec<BoundSocket>> {
    refuse_foreign_socket(cfg)?;
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let sock = Socket::new(
            Domain::for_address(cfg.listen),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        sock.set_reuse_port(true)?;
        if cfg.listen.is_ipv6() {
            // Accept IPv4 exporters on [::] too.
            sock.set_only_v6(false)?;
        }
        nmsd_sockets::set_receive_buffer(&sock, cfg.receive_buffer.0 as usize);
        // A short timeout lets the receive thread notice shutdown without a wake-up datagram.
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        sock.bind(&cfg.listen.into()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot bind {} (socket {index}): {e}; is another collector on that port?",
                    cfg.listen
                ),
            )
        })?;
        let receive_buffer = sock.recv_buffer_size().unwrap_or(0);
        out.push(BoundSocket {
            socket: sock.into(),
            index,
            receive_buffer,
        });
    }
    Ok(out)
}

/// How often [`run_drop_monitor`] reads the kernel's drop counts.
pub const DROP_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Count the kernel's drops on a source's sockets (clones of the receive threads' sockets) in
/// `nmsd_flow_socket_kernel_drops_total`, every [`DROP_POLL_INTERVAL`] until `stop`, and once
/// more then. Reading the count from the socket, rather than from SO_RXQ_OVFL ancillary data
/// on each receive, keeps counting while a receive thread reads nothing: blocked on a full
/// ring (`ring_full_policy = "block"`) behind a stalled pipeline, exactly when the kernel drops.
pub fn run_drop_monitor(source: &str, sockets: Vec<(usize, UdpSocket)>, stop: Arc<AtomicBool>) {
    let mut watched: Vec<(UdpSocket, metrics::Counter, u32)> = sockets
        .into_iter()
        .map(|(index, sock)| {
            let labels = [
                ("source", source.to_string()),
                ("socket", index.to_string()),
            ];
            let counter = metrics::counter!("nmsd_flow_socket_kernel_drops_total", &labels);
            (sock, counter, 0)
        })
        .collect();
    let step = Duration::from_millis(100);
    let mut since_read = DROP_POLL_INTERVAL;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if since_read >= DROP_POLL_INTERVAL || stopping {
            since_read = Duration::ZERO;
            for (sock, counter, last) in &mut watched {
                if let Some(now) = nmsd_sockets::kernel_drops(sock) {
                    // sk_drops is a 32-bit counter: count the difference, across a wrap too.
                    counter.increment(u64::from(now.wrapping_sub(*last)));
                    *last = now;
                }
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(step);
        since_read += step;
    }
}

/// Metric handles of one socket.
struct SocketMetrics {
    datagrams: metrics::Counter,
    bytes: metrics::Counter,
    oversize: metrics::Counter,
    receive_errors: metrics::Counter,
}

/// Datagrams read per `recvmmsg` call.
const RECV_SLOTS: usize = 64;

/// How a receive thread reads its socket.
#[derive(Clone, Copy, Debug)]
pub struct ReceiveOptions {
    /// Longest datagram; longer ones are truncated and counted.
    pub max_datagram: usize,
    /// Hold-off between reads under steady traffic (see [`ReceivePacer`]); zero disables it.
    pub coalesce: Duration,
}

/// Where a receive thread's batches go: over a ring to a parse worker on another thread, or
/// into a parse worker that runs on the receive thread itself (`[pipeline] receive`).
pub trait BatchOut {
    /// An empty batch to receive into.
    fn take_batch(&mut self) -> Box<DatagramBatch>;
    /// Hand over a filled batch.
    fn send(&mut self, batch: Box<DatagramBatch>, stop: &AtomicBool);
    /// Whether a partly filled batch should go now rather than wait to fill: the one that
    /// takes it has nothing else to do.
    fn idle(&self) -> bool;
    /// Called after every read, whether it brought data or not.
    fn after_read(&mut self) {}
}

impl BatchOut for RingSender {
    fn take_batch(&mut self) -> Box<DatagramBatch> {
        RingSender::take_batch(self)
    }
    fn send(&mut self, batch: Box<DatagramBatch>, stop: &AtomicBool) {
        RingSender::send(self, batch, stop);
    }
    fn idle(&self) -> bool {
        // An empty ring: the worker waits, so latency matters more than batch size.
        self.backlog() == 0
    }
}

/// A parse worker run to completion on its receive thread: `recvmmsg`, decode and processors
/// on one core, with no ring and no wake-up of another thread (issue 15). Exporter affinity
/// holds as with rings: SO_REUSEPORT sends an exporter's datagrams to one socket.
pub struct InlineWorker {
    pub worker: ParseWorker,
    /// The flow source (its position among listeners) of the socket.
    pub source: u8,
    /// The one batch it receives into, reused.
    spare: Option<Box<DatagramBatch>>,
    batch_capacity: usize,
    heartbeat: Arc<Heartbeat>,
}

impl InlineWorker {
    pub fn new(
        worker: ParseWorker,
        source: u8,
        batch_capacity: usize,
        heartbeat: Arc<Heartbeat>,
    ) -> Self {
        heartbeat.idle();
        InlineWorker {
            worker,
            source,
            spare: None,
            batch_capacity,
            heartbeat,
        }
    }
}

impl BatchOut for InlineWorker {
    fn take_batch(&mut self) -> Box<DatagramBatch> {
        match self.spare.take() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Box::new(DatagramBatch::new(self.batch_capacity)),
        }
    }
    fn send(&mut self, batch: Box<DatagramBatch>, _stop: &AtomicBool) {
        self.worker.process(self.source, &batch);
        self.spare = Some(batch);
        // Back to reading the socket: waiting for input is not a stall.
        self.heartbeat.idle();
    }
    fn idle(&self) -> bool {
        true
    }
    fn after_read(&mut self) {
        self.worker.tick_if_due();
    }
}

/// Receive until `stop` is set, then hand back `out` (dropping a ring sender tells its
/// worker; an inline worker is finished by the caller).
pub fn run_receiver<O: BatchOut>(
    source: &str,
    bound: BoundSocket,
    opts: ReceiveOptions,
    mut ring: O,
    stop: Arc<AtomicBool>,
) -> O {
    let labels = [
        ("source", source.to_string()),
        ("socket", bound.index.to_string()),
    ];
    let m = SocketMetrics {
        datagrams: metrics::counter!("nmsd_flow_datagrams_received_total", &labels),
        bytes: metrics::counter!("nmsd_flow_bytes_received_total", &labels),
        oversize: metrics::counter!("nmsd_flow_datagrams_oversize_total", &labels),
        receive_errors: metrics::counter!("nmsd_flow_receive_errors_total", &labels),
    };
    metrics::gauge!("nmsd_flow_socket_receive_buffer_bytes", &labels)
        .set(bound.receive_buffer as f64);

    let fd = bound.socket.as_raw_fd();
    let slot = opts.max_datagram.max(512);
    let n = RECV_SLOTS;
    // recvmmsg writes into these fixed slots; datagrams are then copied, packed, into the
    // batch. The copy (~1.5 KB per datagram) is what keeps batches, and so the rings, small.
    let mut slots = vec![0u8; n * slot];
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; n];
    let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; n];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; n];
    let base = slots.as_mut_ptr();
    for (i, iov) in iovs.iter_mut().enumerate() {
        *iov = libc::iovec {
            // SAFETY: slot i lies within `slots` (n * slot bytes), which outlives the loop.
            iov_base: unsafe { base.add(i * slot) }.cast(),
            iov_len: slot,
        };
    }

    let mut pacer = ReceivePacer::new(opts.coalesce);
    let mut batch = ring.take_batch();
    while !stop.load(Ordering::Relaxed) {
        let flags = pacer.flags(!batch.is_empty());
        let want = batch.room().min(n);
        for i in 0..want {
            let h = &mut hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdrs holds `want` initialised headers whose pointers (names, iovecs into
        // `slots`) stay valid and unaliased for the call's duration.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                want as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                _ if r == 0 => {}
                _ => {
                    m.receive_errors.increment(1);
                    tracing::warn!(source, socket = bound.index, "receive failed: {err}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            // Nothing more queued: hand over what we have.
            if !batch.is_empty() {
                ring.send(batch, &stop);
                batch = ring.take_batch();
            }
            pacer.nothing();
            ring.after_read();
            continue;
        }
        let got = r as usize;
        pacer.read(flags, got, want);
        let mut oversize = 0u64;
        let mut bytes = 0usize;
        for i in 0..got {
            let h = &hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                oversize += 1;
            }
            let len = (h.msg_len as usize).min(slot);
            bytes += len;
            let (src, datagram) = (sockaddr_ip(&addrs[i]), &slots[i * slot..i * slot + len]);
            if !batch.push(src, datagram) {
                // Its buffer is full before its datagram count (large datagrams): hand it
                // over; an empty batch takes any datagram.
                ring.send(batch, &stop);
                batch = ring.take_batch();
                batch.push(src, datagram);
            }
        }
        if oversize > 0 {
            m.oversize.increment(oversize);
        }
        m.datagrams.increment(got as u64);
        m.bytes.increment(bytes as u64);
        // Hand the batch over when it is full or when the worker is idle (empty ring: latency
        // matters more than batch size then). While the worker is busy, keep filling: the next
        // read does not wait, and an empty socket hands the batch over (above).
        if batch.is_full() || ring.idle() {
            ring.send(batch, &stop);
            batch = ring.take_batch();
        }
        ring.after_read();
    }
    if !batch.is_empty() {
        ring.send(batch, &stop);
    }
    ring
}

/// Source address of a datagram; IPv4-mapped IPv6 (from a dual-stack socket) becomes IPv4 so an
/// exporter has one identity whichever socket family received it.
fn sockaddr_ip(s: &libc::sockaddr_storage) -> IpAddr {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)).to_canonical()
        }
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

impl super::SourceSpec for NetflowSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        nmsd_pipeline::StreamSet::of(&[nmsd_pipeline::StreamKind::Flows])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        NetflowSourceConfig::validate(self)
    }

    fn as_flow_listener(&self) -> Option<&NetflowSourceConfig> {
        Some(self)
    }

    fn start(&self, _ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        anyhow::bail!("a netflow source is started by the topology, with the parse workers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_pipeline::ring::datagram_ring;

    /// A socket bound with SO_REUSEPORT, as a foreign collector would.
    fn reuseport_socket(addr: SocketAddr) -> Socket {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s
    }

    #[test]
    fn a_port_held_by_a_foreign_reuseport_socket_is_refused() {
        let foreign = reuseport_socket("127.0.0.1:0".parse().unwrap());
        let addr = foreign.local_addr().unwrap().as_socket().unwrap();
        let cfg = NetflowSourceConfig {
            listen: addr,
            sockets: 2,
            receive_buffer: ByteSize(1 << 20),
            batch_datagrams: 8,
            max_datagram_size: ByteSize(2048),
            ring_capacity: 4,
            ring_full_policy: FullPolicy::Block,
            receive_coalesce: HumanDuration::from_millis(1),
        };
        let e = bind_sockets(&cfg, 2).err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("nmsd did not create"), "{e}");
        // A wildcard listener conflicts with a foreign socket on one address of the port.
        let wildcard = NetflowSourceConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()),
            ..cfg.clone()
        };
        assert!(bind_sockets(&wildcard, 1).is_err());
        drop(foreign);
        // Free again: our own sockets share it.
        assert_eq!(bind_sockets(&cfg, 2).unwrap().len(), 2);
    }

    #[test]
    fn kernel_drops_are_read_from_the_socket_without_receiving() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s2 = Socket::from(sock.try_clone().unwrap());
        s2.set_recv_buffer_size(4096).unwrap();
        assert_eq!(nmsd_sockets::kernel_drops(&sock), Some(0));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            client
                .send_to(&[0; 512], sock.local_addr().unwrap())
                .unwrap();
        }
        // Nothing was read; the kernel kept a few datagrams and dropped the rest.
        let drops = nmsd_sockets::kernel_drops(&sock).unwrap();
        assert!((100..200).contains(&drops), "{drops}");
        // The monitor counts them once, however often it reads.
        let stop = Arc::new(AtomicBool::new(true));
        run_drop_monitor("t", vec![(0, sock.try_clone().unwrap())], stop.clone());
        run_drop_monitor("t", vec![(0, sock.try_clone().unwrap())], stop);
    }

    #[test]
    fn receives_bursts_with_source_addresses() {
        let cfg = NetflowSourceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            sockets: 1,
            receive_buffer: ByteSize(1 << 20),
            batch_datagrams: 8,
            max_datagram_size: ByteSize(2048),
            ring_capacity: 4,
            ring_full_policy: FullPolicy::Block,
            receive_coalesce: HumanDuration::from_millis(1),
        };
        let mut socks = bind_sockets(&cfg, 1).unwrap();
        let bound = socks.remove(0);
        let addr = bound.socket.local_addr().unwrap();
        assert!(bound.receive_buffer > 0);
        let (tx, mut rx) = datagram_ring("t", 4, 8, FullPolicy::Block);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            let opts = ReceiveOptions {
                max_datagram: 2048,
                coalesce: Duration::from_millis(1),
            };
            run_receiver("t", bound, opts, tx, s2)
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..20u8 {
            client.send_to(&[0, 9, i], addr).unwrap();
        }
        // Then datagrams over 1,500 bytes: batches fill by bytes before their count.
        for i in 0..20u8 {
            client.send_to(&[i; 1600], addr).unwrap();
        }
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < 40 && std::time::Instant::now() < deadline {
            if let Some(b) = rx.try_recv() {
                assert!(
                    b.payload_bytes() <= 8 * nmsd_pipeline::records::BYTES_PER_DATAGRAM,
                    "a batch outgrew its buffer"
                );
                for (src, d) in b.iter() {
                    assert_eq!(src, IpAddr::from([127, 0, 0, 1]));
                    got.push(d.to_vec());
                }
                rx.recycle(b);
            }
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert_eq!(got.len(), 40);
        assert_eq!(got[19], vec![0, 9, 19]);
        let large: Vec<u8> = got[20..].iter().map(|d| d[0]).collect();
        assert_eq!(large, (0..20).collect::<Vec<u8>>(), "all, in order");
        assert!(got[20..].iter().all(|d| d.len() == 1600));
        assert!(rx.is_finished());
    }
}
