//! UDP with `IP_PKTINFO`: learn which local address a request was sent to, and send the reply
//! from that address, so one socket on 0.0.0.0 can be thousands of devices on 127.0.x.y.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

/// Control buffer for one `in_pktinfo` (8-byte aligned, as cmsg headers need).
type CmsgBuf = [u64; 8];

pub(crate) struct Sock {
    sock: UdpSocket,
    pktinfo: bool,
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from(*a.ip()).to_be(),
    };
    s
}

impl Sock {
    /// Bind a non-blocking socket with a 4 MiB receive buffer (bursts of requests from a
    /// poller with many in flight), and `IP_PKTINFO` if asked.
    pub(crate) fn bind(addr: SocketAddrV4, pktinfo: bool) -> io::Result<Sock> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        let fd = sock.as_raw_fd();
        // A smaller buffer than asked (rmem_max) is fine: best effort.
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        if pktinfo {
            set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
        Ok(Sock { sock, pktinfo })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.sock.local_addr()
    }

    /// One datagram: its length, source, and the local address it was sent to (with
    /// `IP_PKTINFO`). `WouldBlock` when none is waiting.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddrV4, Option<Ipv4Addr>)> {
        // SAFETY: all-zero is valid for these C structs.
        let mut src: libc::sockaddr_in = unsafe { mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cmsg: CmsgBuf = [0; 8];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut src as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if self.pktinfo {
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of::<CmsgBuf>() as _;
        }
        // SAFETY: every pointer in `msg` refers to a live local buffer of the stated size.
        let n = unsafe { libc::recvmsg(self.fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut dst = None;
        if self.pktinfo {
            // SAFETY: the kernel filled `msg.msg_control` with well-formed cmsgs within
            // `msg_controllen`; the CMSG_* helpers walk them; `in_pktinfo` is read unaligned.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                        let info: libc::in_pktinfo =
                            ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                        dst = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
        }
        let src = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(src.sin_addr.s_addr)),
            u16::from_be(src.sin_port),
        );
        Ok((n as usize, src, dst))
    }

    /// Send `buf` to `to`, from local address `from` when given (`IP_PKTINFO`). A full send
    /// buffer is waited on for up to 10 ms, then reported as `WouldBlock`.
    pub(crate) fn send(
        &self,
        buf: &[u8],
        to: SocketAddrV4,
        from: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let dst = sockaddr(to);
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut cmsg: CmsgBuf = [0; 8];
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&dst as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let (true, Some(from)) = (self.pktinfo, from) {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(from).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let size = mem::size_of::<libc::in_pktinfo>() as u32;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations; the buffer (64 bytes)
            // holds one cmsg header plus an in_pktinfo (12 bytes), and CMSG_FIRSTHDR points
            // into it because msg_controllen is set first.
            unsafe {
                msg.msg_controllen = libc::CMSG_SPACE(size) as _;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
            }
        }
        for attempt in 0..2 {
            // SAFETY: `msg` points at live locals and `buf`.
            let n = unsafe { libc::sendmsg(self.fd(), &msg, 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock || attempt == 1 {
                return Err(e);
            }
            let mut p = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe {
                libc::poll(&mut p, 1, 10);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Wait until one of `fds` is readable or `timeout_ms` passes; EINTR counts as a timeout.
pub(crate) fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<()> {
    // SAFETY: `fds` is a valid slice of pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// User + system CPU time of thread `tid` of this process (Linux).
pub(crate) fn thread_cpu(tid: i32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(std::time::Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / hz,
    ))
}

/// This thread's id (for [`thread_cpu`]).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}
