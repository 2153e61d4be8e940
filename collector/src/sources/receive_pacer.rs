//! When a receive loop sleeps in `recvmmsg` and when it lets arrivals gather (decision 0005),
//! shared by the NetFlow listeners and live capture.

use std::time::{Duration, Instant};

/// How the next read waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadMode {
    /// Sleep in `recvmmsg` until something arrives. Right for sparse traffic, but under a
    /// steady stream every arrival wakes the thread: at 150k datagrams/s profiles showed ~21k
    /// context switches/s and the scheduler as the largest cost of the receive thread, and a
    /// capture thread woken per frame spent 3 µs per frame (benches/capture-veth.sh).
    Wait,
    /// Read what is queued without waiting, until the socket is empty.
    Drain,
    /// Sleep for the coalescing period, then drain what gathered in the socket buffer: one
    /// wake per period, however many arrived. Left for `Wait` after a period in which nothing
    /// arrived.
    Poll,
}

/// The read mode of one socket's loop. Call [`flags`](Self::flags) before each `recvmmsg`, then
/// [`nothing`](Self::nothing) or [`read`](Self::read) with what it returned.
#[derive(Debug)]
pub struct ReceivePacer {
    coalesce: Duration,
    mode: ReadMode,
    /// When the last waiting read woke up: two wakes within two periods mean steady traffic.
    last_wake: Option<Instant>,
    /// Read since the last poll sleep.
    polled: usize,
}

impl ReceivePacer {
    /// `coalesce` is the hold-off under steady traffic; zero always waits.
    pub fn new(coalesce: Duration) -> Self {
        ReceivePacer {
            coalesce,
            mode: ReadMode::Wait,
            last_wake: None,
            polled: 0,
        }
    }

    /// The `recvmmsg` flags for the next read, after sleeping one period if a poll period
    /// begins. `holding`: the caller has read something it has not handed on yet, so it must
    /// not sleep in the read (it hands it on when the socket is empty).
    pub fn flags(&mut self, holding: bool) -> libc::c_int {
        if self.mode == ReadMode::Poll && self.polled == 0 {
            std::thread::sleep(self.coalesce);
        }
        if self.mode == ReadMode::Wait && !holding {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        }
    }

    /// The read returned nothing (empty socket, timeout or error).
    pub fn nothing(&mut self) {
        // A poll period that brought something: keep polling; an empty one: traffic stopped
        // or thinned out, wait for it again.
        if !(self.mode == ReadMode::Poll && self.polled > 0) {
            self.mode = ReadMode::Wait;
        }
        self.polled = 0;
    }

    /// The read with `flags` returned `got` of the `want` it asked for.
    pub fn read(&mut self, flags: libc::c_int, got: usize, want: usize) {
        self.read_at(Instant::now(), flags, got, want);
    }

    fn read_at(&mut self, now: Instant, flags: libc::c_int, got: usize, want: usize) {
        if flags == libc::MSG_WAITFORONE {
            let steady = !self.coalesce.is_zero()
                && self
                    .last_wake
                    .is_some_and(|t| now.duration_since(t) < 2 * self.coalesce);
            self.last_wake = Some(now);
            // A full read means more is queued; otherwise the socket is drained, and under
            // steady traffic it is cheaper to let the next arrivals gather.
            self.mode = if got == want {
                ReadMode::Drain
            } else if steady {
                ReadMode::Poll
            } else {
                ReadMode::Wait
            };
        }
        self.polled += got;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: libc::c_int = libc::MSG_WAITFORONE;
    const D: libc::c_int = libc::MSG_DONTWAIT;

    #[test]
    fn sparse_arrivals_are_waited_for_and_a_steady_stream_is_polled() {
        let ms = Duration::from_millis;
        let mut p = ReceivePacer::new(ms(1));
        let t0 = Instant::now();
        // Two wakes 10 ms apart: sparse, keep waiting.
        assert_eq!(p.flags(false), W);
        p.read_at(t0, W, 1, 64);
        assert_eq!(p.flags(false), W);
        p.read_at(t0 + ms(10), W, 1, 64);
        assert_eq!(p.mode, ReadMode::Wait);
        // A wake within two periods of the last: steady, poll.
        assert_eq!(p.flags(false), W);
        p.read_at(t0 + ms(11), W, 2, 64);
        assert_eq!(p.mode, ReadMode::Poll);
        assert_eq!(p.flags(false), D, "a poll read does not wait");
        p.read(D, 3, 64);
        p.nothing();
        assert_eq!(
            p.mode,
            ReadMode::Poll,
            "the period brought some: keep polling"
        );
        p.nothing();
        assert_eq!(p.mode, ReadMode::Wait, "an empty period: wait again");
    }

    #[test]
    fn a_full_read_drains_and_a_holding_caller_never_waits() {
        let mut p = ReceivePacer::new(Duration::from_millis(1));
        p.read_at(Instant::now(), W, 64, 64);
        assert_eq!(p.mode, ReadMode::Drain);
        assert_eq!(p.flags(false), D);
        p.nothing();
        assert_eq!(p.flags(true), D, "holding a partial batch");
        assert_eq!(p.flags(false), W);
    }

    #[test]
    fn zero_coalescing_always_waits() {
        let mut p = ReceivePacer::new(Duration::ZERO);
        let t0 = Instant::now();
        p.read_at(t0, W, 1, 64);
        p.read_at(t0, W, 1, 64);
        assert_eq!(p.mode, ReadMode::Wait);
    }
}
