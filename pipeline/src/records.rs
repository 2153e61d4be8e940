//! What travels through the pipeline.

use std::net::IpAddr;

pub use nmsd_parsers::{Direction, FlowRecord, FlowVersion};

/// A burst of export datagrams from one socket, as `recvmmsg` filled it.
///
/// The buffer is one allocation of `capacity × slot_size` bytes, made once and recycled between
/// the receive thread and its parse worker, so receiving allocates nothing.
#[derive(Debug)]
pub struct DatagramBatch {
    buf: Vec<u8>,
    slot_size: usize,
    lens: Vec<usize>,
    sources: Vec<IpAddr>,
    len: usize,
}

impl DatagramBatch {
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        DatagramBatch {
            buf: vec![0; capacity * slot_size],
            slot_size,
            lens: vec![0; capacity],
            sources: vec![IpAddr::from([0, 0, 0, 0]); capacity],
            len: 0,
        }
    }

    /// How many datagrams fit.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Raw slot memory, for the receiver to point `recvmmsg` iovecs at.
    pub fn slots_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Record what the kernel wrote: `lens[i]` bytes from `sources[i]` in slot `i`.
    pub fn set_received(&mut self, count: usize, mut meta: impl FnMut(usize) -> (usize, IpAddr)) {
        let count = count.min(self.capacity());
        for i in 0..count {
            let (len, src) = meta(i);
            self.lens[i] = len.min(self.slot_size);
            self.sources[i] = src;
        }
        self.len = count;
    }

    /// Append one datagram (used by file replay and tests); returns false when full or too big.
    pub fn push(&mut self, source: IpAddr, data: &[u8]) -> bool {
        if self.len == self.capacity() || data.len() > self.slot_size {
            return false;
        }
        let at = self.len * self.slot_size;
        self.buf[at..at + data.len()].copy_from_slice(data);
        self.lens[self.len] = data.len();
        self.sources[self.len] = source;
        self.len += 1;
        true
    }

    /// The datagrams held, with their source address.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &[u8])> {
        (0..self.len).map(move |i| {
            let at = i * self.slot_size;
            (self.sources[i], &self.buf[at..at + self.lens[i]])
        })
    }

    /// Total payload bytes held.
    pub fn payload_bytes(&self) -> usize {
        self.lens[..self.len].iter().sum()
    }
}

/// A one-minute (or configured window) aggregate, as the roll-up processor emits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollupRow {
    /// Window start, Unix ms.
    pub window_start_ms: u64,
    pub exporter: IpAddr,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub protocol: u8,
    pub dst_port: u16,
    pub in_if: u32,
    pub out_if: u32,
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

/// What parse workers hand to sinks.
#[derive(Debug)]
pub enum SinkMessage {
    /// Raw decoded flows.
    Flows(Vec<FlowRecord>),
    /// Closed roll-up windows.
    Rollups(Vec<RollupRow>),
}

impl SinkMessage {
    /// Rows this message will become.
    pub fn rows(&self) -> usize {
        match self {
            SinkMessage::Flows(f) => f.len(),
            SinkMessage::Rollups(r) => r.len(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SinkMessage::Flows(_) => "flows",
            SinkMessage::Rollups(_) => "rollups",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_push_and_iterate() {
        let mut b = DatagramBatch::new(2, 8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(b.push(a, b"hello"));
        assert!(!b.push(a, b"too long for slot"));
        assert!(b.push(a, b"x"));
        assert!(!b.push(a, b"y"));
        let got: Vec<_> = b.iter().map(|(_, d)| d.to_vec()).collect();
        assert_eq!(got, vec![b"hello".to_vec(), b"x".to_vec()]);
        assert_eq!(b.payload_bytes(), 6);
    }
}
