//! Socket options nmsd's UDP receivers (flow sources, the trap receiver) share.
//!
//! Both receive bursts that must land in the socket buffer while their thread is busy, and
//! both must count what the kernel dropped when it did not fit, whether or not the thread is
//! reading at the time.

use std::mem::size_of;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// Ask for `bytes` of receive buffer: SO_RCVBUFFORCE first (as root or with CAP_NET_ADMIN,
/// past `net.core.rmem_max`), then plain SO_RCVBUF (capped at rmem_max). The kernel doubles
/// the value for its bookkeeping, so it is capped at half of `i32::MAX`. Read back what was
/// granted with `Socket::recv_buffer_size`.
pub fn set_receive_buffer(sock: &Socket, bytes: usize) {
    let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
    let forced = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = sock.set_recv_buffer_size(bytes);
    }
}

/// How many datagrams the kernel has dropped on this socket since it was created (`sk_drops`:
/// a full receive buffer, mostly), read with SO_MEMINFO; None where the kernel does not say.
/// It can be read at any time, also while no thread receives: a stalled pipeline is exactly
/// when the kernel drops.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64"
))]
pub fn kernel_drops(sock: &impl AsRawFd) -> Option<u32> {
    // The asm-generic option number; the libc crate does not export it for every target.
    const SO_MEMINFO: libc::c_int = 55;
    // SK_MEMINFO_VARS is 9 today; room for more, the kernel copies at most what it has.
    let mut info = [0u32; 16];
    let mut len = size_of::<[u32; 16]>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let at = libc::SK_MEMINFO_DROPS as usize;
    (r == 0 && len as usize >= (at + 1) * size_of::<u32>()).then(|| info[at])
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64"
)))]
pub fn kernel_drops(_sock: &impl AsRawFd) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_new_socket_has_dropped_nothing_and_gets_a_buffer() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("socket");
        set_receive_buffer(&s, 1 << 20);
        // At least what rmem_max allows; doubled by the kernel.
        assert!(s.recv_buffer_size().expect("SO_RCVBUF") >= 1 << 16);
        let u: UdpSocket = s.into();
        assert_eq!(kernel_drops(&u), Some(0));
    }
}
