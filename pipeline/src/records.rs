//! What travels through the pipeline.

use std::net::IpAddr;
use std::sync::Arc;

use crate::enrich::IfInfo;

pub use nmsd_parsers::{Direction, FlowRecord, FlowVersion, PacketCounts};

/// Buffer bytes per datagram of a batch's capacity: a full-MTU Ethernet payload, which is what
/// exporters send (they size datagrams to the path MTU).
pub const BYTES_PER_DATAGRAM: usize = 1500;

/// A burst of export datagrams from one socket, packed back to back.
///
/// The receive thread reads with `recvmmsg` into its own fixed slots and copies each datagram
/// here, so a batch costs what its datagrams weigh, not `capacity × max_datagram_size`. That is
/// what lets the rings hold thousands of datagrams cheaply. A batch is full at `capacity`
/// datagrams or when the next one would not fit its buffer of `capacity × 1500` bytes: the
/// buffer never grows, so a ring's memory is fixed whatever the exporters send. (It used to
/// grow: softflowd-style datagrams of ~1,550 bytes made every 96 KB buffer double to 192 KB,
/// 6.4 MB of a 32-batch ring under load.) Batches are recycled between the receive thread and
/// its worker, so receiving allocates nothing after warm-up.
#[derive(Debug)]
pub struct DatagramBatch {
    data: Vec<u8>,
    /// (offset into `data`, length, source address) per datagram.
    entries: Vec<(u32, u32, IpAddr)>,
    capacity: usize,
}

impl DatagramBatch {
    /// A batch for up to `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        DatagramBatch {
            data: Vec::with_capacity(capacity * BYTES_PER_DATAGRAM),
            entries: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// How many datagrams fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Room left, in datagrams.
    pub fn room(&self) -> usize {
        self.capacity - self.entries.len().min(self.capacity)
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    /// Append one datagram; returns false when the batch is full: `capacity` datagrams, or
    /// this one would not fit in the buffer. An empty batch takes any datagram (growing its
    /// buffer only if a single datagram is larger than all of it).
    pub fn push(&mut self, source: IpAddr, datagram: &[u8]) -> bool {
        let fits = self.data.len() + datagram.len() <= self.data.capacity();
        if self.is_full() || (!fits && !self.is_empty()) || datagram.len() > u32::MAX as usize {
            return false;
        }
        let at = self.data.len() as u32;
        self.data.extend_from_slice(datagram);
        self.entries.push((at, datagram.len() as u32, source));
        true
    }

    /// The datagrams held, with their source address.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &[u8])> {
        self.entries.iter().map(move |&(at, len, src)| {
            let (at, len) = (at as usize, len as usize);
            (src, &self.data[at..at + len])
        })
    }

    /// Total payload bytes held.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }
}

/// A one-minute (or configured window) aggregate, as the roll-up processor emits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupRow {
    /// Window start, Unix ms.
    pub window_start_ms: u64,
    pub exporter: IpAddr,
    /// The flow source (listener) the flows came in on; see [`FlowRecord::source`].
    pub source: u8,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub protocol: u8,
    pub dst_port: u16,
    pub in_if: u32,
    pub out_if: u32,
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
    /// What SNMP polling knows about `in_if` / `out_if` (set by the `interface_names`
    /// processor).
    pub in_if_info: Option<Arc<IfInfo>>,
    pub out_if_info: Option<Arc<IfInfo>>,
}

#[cfg(test)]
impl RollupRow {
    /// A one-flow TCP/80 row on loopback, for tests that only need some row.
    pub(crate) fn sample() -> Self {
        let lo = std::net::Ipv4Addr::LOCALHOST.into();
        RollupRow {
            window_start_ms: 0,
            exporter: lo,
            source: 0,
            src_addr: lo,
            dst_addr: lo,
            protocol: 6,
            dst_port: 80,
            in_if: 0,
            out_if: 0,
            bytes: 1,
            packets: 1,
            flows: 1,
            in_if_info: None,
            out_if_info: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_push_and_iterate() {
        let mut b = DatagramBatch::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(b.push(a, b"hello"));
        assert_eq!(b.room(), 1);
        assert!(b.push(a, b"x"));
        assert!(b.is_full());
        assert!(!b.push(a, b"y"));
        let got: Vec<_> = b.iter().map(|(_, d)| d.to_vec()).collect();
        assert_eq!(got, vec![b"hello".to_vec(), b"x".to_vec()]);
        assert_eq!(b.payload_bytes(), 6);
    }

    #[test]
    fn a_batch_is_full_when_the_next_datagram_would_outgrow_its_buffer() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut b = DatagramBatch::new(4);
        let budget = 4 * BYTES_PER_DATAGRAM;
        let big = vec![7u8; 1600];
        let mut n = 0;
        while b.push(a, &big) {
            n += 1;
        }
        // 1,600-byte datagrams: three fit in 6,000 bytes, the fourth would not.
        assert_eq!(n, budget / big.len());
        assert!(b.room() > 0);
        assert!(b.payload_bytes() <= budget);
        assert!(b.push(a, &[0u8; 100]), "a small one still fits");

        // An empty batch takes even a datagram larger than its whole buffer.
        let mut one = DatagramBatch::new(1);
        assert!(one.push(a, &vec![1u8; 9000]));
        assert_eq!(one.payload_bytes(), 9000);
    }
}
