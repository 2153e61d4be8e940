//! `udp-sink`: the receive ceiling. A bare `recvmmsg` loop that only counts datagrams, set up
//! like nmsd's NetFlow source (SO_REUSEPORT sockets, one thread each, same receive buffer and
//! batch size, SO_RXQ_OVFL drop counter), so nmsd's ingest can be stated as a share of what the
//! machine can receive at all.
//!
//! It serves its counters under nmsd's metric names on `--metrics ADDR` (any GET path), so
//! the e2e harness measures both the same way:
//! `nmsd_flow_datagrams_received_total`, `nmsd_flow_bytes_received_total`,
//! `nmsd_flow_socket_kernel_drops_total`.

use std::io::{self, Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

const USAGE: &str = "\
udp-sink — count UDP datagrams as fast as recvmmsg allows (the receive ceiling)

USAGE:
    udp-sink --listen ADDR [--sockets N] [--batch N] [--rcvbuf BYTES] [--metrics ADDR] [--quiet]

    --listen ADDR     UDP address to receive on (e.g. 127.0.0.1:9995)
    --sockets N       SO_REUSEPORT sockets, one receive thread each (default 1)
    --batch N         datagrams per recvmmsg call (default 32, as nmsd)
    --rcvbuf BYTES    SO_RCVBUF per socket (default 4194304, as nmsd; SO_RCVBUFFORCE as root)
    --metrics ADDR    serve Prometheus text on this TCP address
    --quiet           no per-second lines
Stops on SIGINT/SIGTERM and prints the totals.";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Default)]
struct Counters {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    drops: AtomicU64,
}

struct Args {
    listen: SocketAddr,
    sockets: usize,
    batch: usize,
    rcvbuf: usize,
    metrics: Option<SocketAddr>,
    quiet: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut listen = None;
    let mut a = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        sockets: 1,
        batch: 32,
        rcvbuf: 4 << 20,
        metrics: None,
        quiet: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("listen") => listen = Some(p.value()?.parse()?),
            Long("sockets") => a.sockets = p.value()?.parse()?,
            Long("batch") => a.batch = p.value()?.parse()?,
            Long("rcvbuf") => a.rcvbuf = p.value()?.parse()?,
            Long("metrics") => a.metrics = Some(p.value()?.parse()?),
            Long("quiet") => a.quiet = true,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected()),
        }
    }
    a.listen = listen.ok_or("--listen is required")?;
    if !(1..=256).contains(&a.sockets) || !(1..=1024).contains(&a.batch) {
        return Err("--sockets must be 1–256 and --batch 1–1024".into());
    }
    Ok(a)
}

fn setsockopt_int(fd: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// A bound SO_REUSEPORT UDP socket, like nmsd's: big buffer, drop counter, 200 ms timeout.
/// Returns it with the SO_RCVBUF the kernel granted.
fn bind(addr: SocketAddr, rcvbuf: usize) -> io::Result<(UdpSocket, usize)> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_port(true)?;
    let buf = rcvbuf.min(i32::MAX as usize) as libc::c_int;
    if !setsockopt_int(sock.as_raw_fd(), libc::SO_RCVBUFFORCE, buf) {
        sock.set_recv_buffer_size(rcvbuf)?;
    }
    setsockopt_int(sock.as_raw_fd(), libc::SO_RXQ_OVFL, 1);
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    sock.bind(&addr.into())?;
    let granted = sock.recv_buffer_size()?;
    Ok((sock.into(), granted))
}

const SLOT: usize = 9216;
const CMSG_SPACE: usize = 64;

fn receive(sock: UdpSocket, batch: usize, c: Arc<Counters>) {
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; batch * SLOT];
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; batch];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; batch];
    let mut ctrl: Vec<[u64; CMSG_SPACE / 8]> = vec![[0; CMSG_SPACE / 8]; batch];
    while !STOP.load(Ordering::Relaxed) {
        for i in 0..batch {
            iovs[i] = libc::iovec {
                // SAFETY: slot i lies within `buf` (batch * SLOT bytes).
                iov_base: unsafe { buf.as_mut_ptr().add(i * SLOT) }.cast(),
                iov_len: SLOT,
            };
            let h = &mut hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctrl[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: `batch` initialised headers whose iovecs and control buffers stay valid.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            continue;
        }
        let got = r as usize;
        let bytes: u64 = hdrs[..got].iter().map(|h| h.msg_len as u64).sum();
        c.datagrams.fetch_add(got as u64, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(d) = kernel_drops(&hdrs[got - 1].msg_hdr) {
            c.drops.store(d as u64, Ordering::Relaxed);
        }
    }
}

fn kernel_drops(h: &libc::msghdr) -> Option<u32> {
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

fn render(all: &[Arc<Counters>]) -> String {
    let mut s = String::new();
    for (name, pick) in [
        (
            "nmsd_flow_datagrams_received_total",
            (|c: &Counters| &c.datagrams) as fn(&Counters) -> &AtomicU64,
        ),
        ("nmsd_flow_bytes_received_total", |c: &Counters| &c.bytes),
        ("nmsd_flow_socket_kernel_drops_total", |c: &Counters| {
            &c.drops
        }),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n"));
        for (i, c) in all.iter().enumerate() {
            s.push_str(&format!(
                "{name}{{source=\"udp-sink\",socket=\"{i}\"}} {}\n",
                pick(c).load(Ordering::Relaxed)
            ));
        }
    }
    s
}

fn serve_metrics(listener: TcpListener, all: Vec<Arc<Counters>>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = [0u8; 1024];
        let _ = conn.read(&mut req);
        let body = render(&all);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp-sink: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for i in 0..args.sockets {
        let (sock, granted) = match bind(args.listen, args.rcvbuf) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("udp-sink: cannot bind {} (socket {i}): {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        if i == 0 {
            eprintln!(
                "udp-sink: {} sockets on {}, SO_RCVBUF {granted} bytes (kernel-doubled), batch {}",
                args.sockets, args.listen, args.batch
            );
        }
        let c = Arc::new(Counters::default());
        counters.push(c.clone());
        let batch = args.batch;
        threads.push(std::thread::spawn(move || receive(sock, batch, c)));
    }
    if let Some(m) = args.metrics {
        match TcpListener::bind(m) {
            Ok(l) => {
                let all = counters.clone();
                std::thread::spawn(move || serve_metrics(l, all));
            }
            Err(e) => {
                eprintln!("udp-sink: cannot serve metrics on {m}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let total = |f: fn(&Counters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let start = Instant::now();
    let mut last = 0u64;
    let mut last_t = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if !args.quiet && last_t.elapsed() >= Duration::from_secs(1) {
            let now = total(|c| c.datagrams.load(Ordering::Relaxed));
            let rate = (now - last) as f64 / last_t.elapsed().as_secs_f64();
            println!(
                "{:>6.1} s  {rate:>10.0} datagrams/s  total {now}  kernel drops {}",
                start.elapsed().as_secs_f64(),
                total(|c| c.drops.load(Ordering::Relaxed))
            );
            last = now;
            last_t = Instant::now();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    println!(
        "udp-sink: received {} datagrams, {} bytes; kernel drops {}",
        total(|c| c.datagrams.load(Ordering::Relaxed)),
        total(|c| c.bytes.load(Ordering::Relaxed)),
        total(|c| c.drops.load(Ordering::Relaxed))
    );
    ExitCode::SUCCESS
}
