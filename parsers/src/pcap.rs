//! The pcap and pcapng file formats, read incrementally from a byte buffer the caller fills.
//!
//! Classic pcap in either byte order with micro- or nanosecond timestamps, and pcapng (section
//! header, interface description and enhanced/simple packet blocks, in either byte order, with
//! each interface's `if_tsresol`). Other pcapng blocks are skipped. No I/O: the caller reads the
//! file and hands [`CaptureReader::next`] what it has; [`Step::NeedMore`] asks for more bytes
//! (docs/decisions/0018 says why this is own code and not a crate).

use thiserror::Error;

/// Why a buffer is not (or stops being) a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    NotACapture(u32),
    #[error("pcapng block at byte {offset} has a bad length {len}")]
    BadBlock { offset: u64, len: u64 },
    #[error("pcap record at byte {offset} is {len} bytes, more than the {max}-byte limit")]
    RecordTooLarge { offset: u64, len: u64, max: u32 },
    #[error("packet block at byte {offset} names interface {interface}, which was not described")]
    UnknownInterface { offset: u64, interface: u32 },
    #[error("capture ends inside a record at byte {0}")]
    TruncatedAtEnd(u64),
}

/// Largest record or block accepted: far above any real frame (256 KiB is tcpdump's maximum
/// snap length), small enough that a corrupt length cannot make the caller buffer gigabytes.
pub const MAX_RECORD: u32 = 1 << 20;

/// One captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedFrame<'a> {
    /// Capture time, Unix nanoseconds.
    pub ts_ns: u64,
    /// `LINKTYPE_*` of the frame's interface.
    pub linktype: u32,
    /// Length on the wire (the captured bytes may be fewer: the snap length).
    pub orig_len: u32,
    /// pcapng interface index (0 in classic pcap).
    pub interface: u32,
    pub data: &'a [u8],
}

/// What [`CaptureReader::next`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A frame, and how many bytes of the buffer it took.
    Frame(CapturedFrame<'a>, usize),
    /// A header or a block that is not a frame: drop this many bytes and call again.
    Skip(usize),
    /// The buffer holds less than the next record: give it at least this many bytes in all
    /// (or, at the end of the file, call [`CaptureReader::finish`]).
    NeedMore(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Not yet known: the next bytes are the file header.
    Unknown,
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
    },
}

/// An interface described by a pcapng IDB.
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    /// Nanoseconds per timestamp unit, or (when `ts_div` > 1) units per nanosecond divisor.
    ts_mul: u64,
    ts_div: u64,
}

/// Reads one capture file's records in order. Feed it the file's bytes from the start.
#[derive(Clone, Debug)]
pub struct CaptureReader {
    format: Format,
    interfaces: Vec<Interface>,
    /// File offset of the next byte it will be given (for error messages).
    offset: u64,
}

impl Default for CaptureReader {
    fn default() -> Self {
        Self::new()
    }
}

const PCAP_MICROS: u32 = 0xA1B2_C3D4;
const PCAP_NANOS: u32 = 0xA1B2_3C4D;
const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BYTE_ORDER: u32 = 0x1A2B_3C4D;

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big_endian {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

impl CaptureReader {
    pub fn new() -> Self {
        CaptureReader {
            format: Format::Unknown,
            interfaces: Vec::new(),
            offset: 0,
        }
    }

    /// Whether the file header has been read and said this is pcapng.
    pub fn is_pcapng(&self) -> bool {
        matches!(self.format, Format::PcapNg { .. })
    }

    /// The next record at the start of `buf`.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Result<Step<'a>, CaptureError> {
        let step = match self.format {
            Format::Unknown => self.file_header(buf)?,
            Format::Pcap {
                big_endian,
                nanos,
                linktype,
            } => self.pcap_record(buf, big_endian, nanos, linktype)?,
            Format::PcapNg { big_endian } => self.pcapng_block(buf, big_endian)?,
        };
        match &step {
            Step::Frame(_, n) | Step::Skip(n) => self.offset += *n as u64,
            Step::NeedMore(_) => {}
        }
        Ok(step)
    }

    /// At the end of the file, with `left` bytes that did not make a record: an error unless
    /// none are left.
    pub fn finish(&self, left: usize) -> Result<(), CaptureError> {
        if left == 0 {
            Ok(())
        } else {
            Err(CaptureError::TruncatedAtEnd(self.offset))
        }
    }

    fn file_header<'a>(&mut self, buf: &'a [u8]) -> Result<Step<'a>, CaptureError> {
        if buf.len() < 4 {
            return Ok(Step::NeedMore(4));
        }
        let magic_le = u32_at(buf, 0, false);
        let magic_be = u32_at(buf, 0, true);
        if magic_le == PCAPNG_SHB {
            // The section header block is parsed like any other block.
            if buf.len() < 12 {
                return Ok(Step::NeedMore(12));
            }
            let big_endian = u32_at(buf, 8, true) == PCAPNG_BYTE_ORDER;
            self.format = Format::PcapNg { big_endian };
            return self.pcapng_block(buf, big_endian);
        }
        let (big_endian, nanos) = match (magic_le, magic_be) {
            (PCAP_MICROS, _) => (false, false),
            (PCAP_NANOS, _) => (false, true),
            (_, PCAP_MICROS) => (true, false),
            (_, PCAP_NANOS) => (true, true),
            _ => return Err(CaptureError::NotACapture(magic_be)),
        };
        if buf.len() < 24 {
            return Ok(Step::NeedMore(24));
        }
        // The link type's upper bits carry the FCS length in newer writers.
        let linktype = u32_at(buf, 20, big_endian) & 0x0FFF_FFFF;
        self.format = Format::Pcap {
            big_endian,
            nanos,
            linktype,
        };
        Ok(Step::Skip(24))
    }

    fn pcap_record<'a>(
        &self,
        buf: &'a [u8],
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Step<'a>, CaptureError> {
        if buf.len() < 16 {
            return Ok(Step::NeedMore(16));
        }
        let secs = u64::from(u32_at(buf, 0, big_endian));
        let frac = u64::from(u32_at(buf, 4, big_endian));
        let caplen = u32_at(buf, 8, big_endian);
        let orig_len = u32_at(buf, 12, big_endian);
        if caplen > MAX_RECORD {
            return Err(CaptureError::RecordTooLarge {
                offset: self.offset,
                len: u64::from(caplen),
                max: MAX_RECORD,
            });
        }
        let total = 16 + caplen as usize;
        if buf.len() < total {
            return Ok(Step::NeedMore(total));
        }
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Step::Frame(
            CapturedFrame {
                ts_ns,
                linktype,
                orig_len,
                interface: 0,
                data: &buf[16..total],
            },
            total,
        ))
    }

    fn pcapng_block<'a>(
        &mut self,
        buf: &'a [u8],
        mut big_endian: bool,
    ) -> Result<Step<'a>, CaptureError> {
        if buf.len() < 12 {
            return Ok(Step::NeedMore(12));
        }
        let block_type = u32_at(buf, 0, big_endian);
        if block_type == PCAPNG_SHB {
            // A new section may change the byte order and starts a new interface list.
            big_endian = u32_at(buf, 8, true) == PCAPNG_BYTE_ORDER;
            if !big_endian && u32_at(buf, 8, false) != PCAPNG_BYTE_ORDER {
                return Err(CaptureError::NotACapture(u32_at(buf, 8, true)));
            }
            self.format = Format::PcapNg { big_endian };
            self.interfaces.clear();
        }
        let len = u32_at(buf, 4, big_endian);
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return Err(CaptureError::BadBlock {
                offset: self.offset,
                len: u64::from(len),
            });
        }
        let len = len as usize;
        if buf.len() < len {
            return Ok(Step::NeedMore(len));
        }
        let block = &buf[..len];
        let body = &block[8..len - 4];
        match block_type {
            // Interface description: link type, reserved, snap length, options.
            1 => {
                if body.len() < 8 {
                    return Err(self.bad_block(len));
                }
                let linktype = u32::from(u16_at(body, 0, big_endian));
                let (ts_mul, ts_div) = tsresol(&body[8..], big_endian);
                self.interfaces.push(Interface {
                    linktype,
                    ts_mul,
                    ts_div,
                });
                Ok(Step::Skip(len))
            }
            // Enhanced packet block.
            6 => {
                if body.len() < 20 {
                    return Err(self.bad_block(len));
                }
                let interface = u32_at(body, 0, big_endian);
                let Some(ifc) = self.interfaces.get(interface as usize).copied() else {
                    return Err(CaptureError::UnknownInterface {
                        offset: self.offset,
                        interface,
                    });
                };
                let ts = u64::from(u32_at(body, 4, big_endian)) << 32
                    | u64::from(u32_at(body, 8, big_endian));
                let caplen = u32_at(body, 12, big_endian) as usize;
                let orig_len = u32_at(body, 16, big_endian);
                if 20 + caplen > body.len() {
                    return Err(self.bad_block(len));
                }
                Ok(Step::Frame(
                    CapturedFrame {
                        ts_ns: scale(ts, ifc),
                        linktype: ifc.linktype,
                        orig_len,
                        interface,
                        data: &body[20..20 + caplen],
                    },
                    len,
                ))
            }
            // Simple packet block: interface 0, no timestamp, captured length implied.
            3 => {
                if body.len() < 4 {
                    return Err(self.bad_block(len));
                }
                let Some(ifc) = self.interfaces.first().copied() else {
                    return Err(CaptureError::UnknownInterface {
                        offset: self.offset,
                        interface: 0,
                    });
                };
                let orig_len = u32_at(body, 0, big_endian);
                let caplen = (orig_len as usize).min(body.len() - 4);
                Ok(Step::Frame(
                    CapturedFrame {
                        ts_ns: 0,
                        linktype: ifc.linktype,
                        orig_len,
                        interface: 0,
                        data: &body[4..4 + caplen],
                    },
                    len,
                ))
            }
            _ => Ok(Step::Skip(len)),
        }
    }

    fn bad_block(&self, len: usize) -> CaptureError {
        CaptureError::BadBlock {
            offset: self.offset,
            len: len as u64,
        }
    }
}

/// A timestamp in an interface's units, in nanoseconds (saturating: a corrupt one must not
/// overflow).
fn scale(ts: u64, ifc: Interface) -> u64 {
    if ifc.ts_div > 1 {
        ts / ifc.ts_div
    } else {
        ts.saturating_mul(ifc.ts_mul)
    }
}

/// `if_tsresol` (option 9) as (multiplier, divisor) to nanoseconds; microseconds by default.
fn tsresol(mut opts: &[u8], big_endian: bool) -> (u64, u64) {
    while opts.len() >= 4 {
        let code = u16_at(opts, 0, big_endian);
        let len = usize::from(u16_at(opts, 2, big_endian));
        let padded = 4 + len.div_ceil(4) * 4;
        if code == 0 || opts.len() < 4 + len {
            break;
        }
        if code == 9 && len >= 1 {
            let v = opts[4];
            let exp = u32::from(v & 0x7F);
            // Units per second: 10^exp or 2^exp. Nanoseconds per unit when that is >= 1,
            // else divide.
            let per_sec: Option<u64> = if v & 0x80 == 0 {
                10u64.checked_pow(exp)
            } else {
                1u64.checked_shl(exp)
            };
            return match per_sec {
                Some(p) if p <= 1_000_000_000 => (1_000_000_000 / p.max(1), 1),
                Some(p) => (1, p / 1_000_000_000),
                None => (1, u64::MAX),
            };
        }
        if opts.len() < padded {
            break;
        }
        opts = &opts[padded..];
    }
    (1000, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(file: &[u8]) -> Result<Vec<(u64, u32, Vec<u8>)>, CaptureError> {
        let mut r = CaptureReader::new();
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            match r.next(&file[at..])? {
                Step::Frame(f, n) => {
                    out.push((f.ts_ns, f.linktype, f.data.to_vec()));
                    at += n;
                }
                Step::Skip(n) => at += n,
                Step::NeedMore(_) => {
                    r.finish(file.len() - at)?;
                    return Ok(out);
                }
            }
        }
    }

    fn pcap(big_endian: bool, frames: &[&[u8]]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = w32(PCAP_MICROS).to_vec();
        f.extend_from_slice(&[0, 2, 0, 4]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w32(1));
        for (i, d) in frames.iter().enumerate() {
            f.extend_from_slice(&w32(1_700_000_000 + i as u32));
            f.extend_from_slice(&w32(250));
            f.extend_from_slice(&w32(d.len() as u32));
            f.extend_from_slice(&w32(d.len() as u32 + 4));
            f.extend_from_slice(d);
        }
        f
    }

    #[test]
    fn classic_pcap_both_byte_orders() {
        for be in [false, true] {
            let file = pcap(be, &[b"abc", b"defgh"]);
            let got = read_all(&file).unwrap();
            assert_eq!(
                got,
                vec![
                    (1_700_000_000_000_250_000, 1, b"abc".to_vec()),
                    (1_700_000_001_000_250_000, 1, b"defgh".to_vec()),
                ]
            );
            // Cut anywhere inside the last record: an error at the end, not a panic.
            assert_eq!(
                read_all(&file[..file.len() - 1]),
                Err(CaptureError::TruncatedAtEnd(24 + 16 + 3))
            );
        }
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len as usize - 4, 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn pcapng_with_nanosecond_interface() {
        let mut shb = PCAPNG_BYTE_ORDER.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut idb = vec![1, 0, 0, 0, 0, 0, 4, 0];
        // if_tsresol = 9 (nanoseconds), then opt_endofopt.
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        let ts: u64 = 1_700_000_000_123_456_789;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&5u32.to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(b"hello");
        let mut file = block(PCAPNG_SHB, &shb);
        file.extend(block(1, &idb));
        file.extend(block(5, &[0; 8])); // interface statistics: skipped
        file.extend(block(6, &epb));
        assert_eq!(read_all(&file).unwrap(), vec![(ts, 1, b"hello".to_vec())]);

        // A packet block for an interface that was never described.
        let mut epb_bad = epb.clone();
        epb_bad[0] = 3;
        let mut bad = block(PCAPNG_SHB, &shb);
        bad.extend(block(6, &epb_bad));
        assert!(matches!(
            read_all(&bad),
            Err(CaptureError::UnknownInterface { interface: 3, .. })
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            read_all(b"GIF89a......................."),
            Err(CaptureError::NotACapture(_))
        ));
        let mut huge = pcap(false, &[b"x"]);
        huge[24 + 8..24 + 12].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
        assert!(matches!(
            read_all(&huge),
            Err(CaptureError::RecordTooLarge { .. })
        ));
    }
}
