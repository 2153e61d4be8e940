//! BER as SNMP uses it: single-byte tags, definite lengths, minimal integers.

use super::SnmpError;

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OBJECT_IDENTIFIER: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const IP_ADDRESS: u8 = 0x40;
pub const COUNTER32: u8 = 0x41;
pub const GAUGE32: u8 = 0x42;
pub const TIMETICKS: u8 = 0x43;
pub const OPAQUE: u8 = 0x44;
pub const COUNTER64: u8 = 0x46;
pub const NO_SUCH_OBJECT: u8 = 0x80;
pub const NO_SUCH_INSTANCE: u8 = 0x81;
pub const END_OF_MIB_VIEW: u8 = 0x82;

/// Reads TLVs from a borrowed buffer; every length is checked against what is left.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Next tag without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Read one TLV: (tag, content).
    pub fn read_any(&mut self) -> Result<(u8, &'a [u8]), SnmpError> {
        let (&tag, rest) = self.buf.split_first().ok_or(SnmpError::Truncated("tag"))?;
        if tag & 0x1F == 0x1F {
            return Err(SnmpError::Unsupported("multi-byte tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(SnmpError::Truncated("length"))?;
        let len = if first < 0x80 {
            first as usize
        } else if first == 0x80 {
            return Err(SnmpError::Unsupported("indefinite length"));
        } else {
            let n = (first & 0x7F) as usize;
            if n > 4 {
                return Err(SnmpError::Unsupported("length of more than 4 octets"));
            }
            let (bytes, r) = rest
                .split_at_checked(n)
                .ok_or(SnmpError::Truncated("length"))?;
            rest = r;
            bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize)
        };
        let (content, rest) = rest
            .split_at_checked(len)
            .ok_or(SnmpError::Truncated("content"))?;
        self.buf = rest;
        Ok((tag, content))
    }

    /// Read a TLV that must have `tag`.
    pub fn read(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], SnmpError> {
        let (found, content) = self.read_any()?;
        if found != tag {
            return Err(SnmpError::UnexpectedTag {
                expected: tag,
                found,
                what,
            });
        }
        Ok(content)
    }

    pub fn read_integer(&mut self, what: &'static str) -> Result<i64, SnmpError> {
        integer(self.read(INTEGER, what)?)
    }
}

/// A signed INTEGER of 1 to 8 octets.
pub fn integer(c: &[u8]) -> Result<i64, SnmpError> {
    if c.is_empty() {
        return Err(SnmpError::Truncated("integer"));
    }
    if c.len() > 8 {
        return Err(SnmpError::OutOfRange("integer"));
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in c {
        v = (v << 8) | b as i64;
    }
    Ok(v)
}

/// An unsigned value of at most `max_bits` (32 or 64) bits. Encoders add a leading zero octet
/// when the top bit is set, so one octet more than the width is allowed if it is zero.
pub fn unsigned(c: &[u8], max_bits: u32, what: &'static str) -> Result<u64, SnmpError> {
    let width = (max_bits / 8) as usize;
    let c = match c {
        [] => return Err(SnmpError::Truncated(what)),
        [0, rest @ ..] if c.len() == width + 1 => rest,
        _ if c.len() > width => return Err(SnmpError::OutOfRange(what)),
        _ => c,
    };
    Ok(c.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
}

/// Writes BER back to front into one reused buffer: children are written before their
/// container, so every length is known when its header is written and always minimal.
#[derive(Debug, Default)]
pub struct BackWriter {
    /// Bytes live in `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
}

impl BackWriter {
    pub fn with_capacity(n: usize) -> Self {
        BackWriter {
            buf: vec![0; n.max(16)],
            start: n.max(16),
        }
    }

    pub fn clear(&mut self) {
        self.start = self.buf.len();
    }

    /// Bytes written so far; use as a mark before writing a container's children.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The encoding so far, mutable (e.g. to fill an authentication field in place).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    fn reserve_front(&mut self, n: usize) {
        if self.start >= n {
            return;
        }
        let len = self.len();
        let new_cap = (self.buf.len() * 2).max(len + n + 64);
        let mut nb = vec![0u8; new_cap];
        nb[new_cap - len..].copy_from_slice(&self.buf[self.start..]);
        self.buf = nb;
        self.start = new_cap - len;
    }

    /// Prepend raw bytes.
    pub fn prepend(&mut self, bytes: &[u8]) {
        self.reserve_front(bytes.len());
        self.start -= bytes.len();
        self.buf[self.start..self.start + bytes.len()].copy_from_slice(bytes);
    }

    fn prepend_byte(&mut self, b: u8) {
        self.reserve_front(1);
        self.start -= 1;
        self.buf[self.start] = b;
    }

    /// Prepend tag and length for the `len() - mark` bytes written since `mark`.
    pub fn wrap(&mut self, tag: u8, mark: usize) {
        let content = self.len() - mark;
        self.prepend_length(content);
        self.prepend_byte(tag);
    }

    fn prepend_length(&mut self, len: usize) {
        if len < 0x80 {
            self.prepend_byte(len as u8);
        } else {
            let bytes = (len as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            self.prepend(&bytes[skip..]);
            self.prepend_byte(0x80 | (4 - skip) as u8);
        }
    }

    /// A complete TLV with the given content.
    pub fn tlv(&mut self, tag: u8, content: &[u8]) {
        let mark = self.len();
        self.prepend(content);
        self.wrap(tag, mark);
    }

    /// A signed integer with tag `tag` (INTEGER, or an application type), minimal length.
    pub fn integer(&mut self, tag: u8, v: i64) {
        let bytes = v.to_be_bytes();
        let mut i = 0;
        while i < 7 {
            let (b, next) = (bytes[i], bytes[i + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
                i += 1;
            } else {
                break;
            }
        }
        self.tlv(tag, &bytes[i..]);
    }

    /// An unsigned integer (Counter32, Gauge32, TimeTicks, Counter64), with a leading zero
    /// octet when the top bit is set.
    pub fn unsigned(&mut self, tag: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
        let mark = self.len();
        self.prepend(&bytes[skip..]);
        if bytes[skip] & 0x80 != 0 {
            self.prepend_byte(0);
        }
        self.wrap(tag, mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_minimally() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut w = BackWriter::with_capacity(4);
            w.integer(INTEGER, v);
            let mut r = Reader::new(w.as_bytes());
            let c = r.read(INTEGER, "test").unwrap();
            assert_eq!(integer(c).unwrap(), v);
            // Minimal: no redundant leading 0x00/0xFF.
            if c.len() > 1 {
                assert!(!(c[0] == 0 && c[1] & 0x80 == 0), "{v}: {c:02x?}");
                assert!(!(c[0] == 0xFF && c[1] & 0x80 != 0), "{v}: {c:02x?}");
            }
        }
        assert_eq!(
            {
                let mut w = BackWriter::default();
                w.integer(INTEGER, 128);
                w.as_bytes().to_vec()
            },
            vec![0x02, 0x02, 0x00, 0x80]
        );
    }

    #[test]
    fn unsigned_accepts_leading_zero_only() {
        assert_eq!(
            unsigned(&[0, 0xFF, 0xFF, 0xFF, 0xFF], 32, "c"),
            Ok(u32::MAX as u64)
        );
        assert!(unsigned(&[1, 0xFF, 0xFF, 0xFF, 0xFF], 32, "c").is_err());
        assert_eq!(
            unsigned(
                &[0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFA],
                64,
                "c"
            ),
            Ok(18_446_744_073_709_551_610)
        );
        let mut w = BackWriter::default();
        w.unsigned(COUNTER64, u64::MAX - 5);
        assert_eq!(w.as_bytes()[1], 9);
    }

    #[test]
    fn long_lengths_and_growth() {
        let mut w = BackWriter::with_capacity(2);
        let mark = w.len();
        w.prepend(&[7u8; 300]);
        w.wrap(SEQUENCE, mark);
        assert_eq!(&w.as_bytes()[..4], &[0x30, 0x82, 0x01, 0x2C]);
        let mut r = Reader::new(w.as_bytes());
        assert_eq!(r.read(SEQUENCE, "s").unwrap().len(), 300);
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(Reader::new(&[0x30, 0x05, 1, 2]).read_any().is_err());
        assert!(Reader::new(&[0x30, 0x80, 0, 0]).read_any().is_err());
        assert!(
            Reader::new(&[0x30, 0x85, 0, 0, 0, 0, 1, 0])
                .read_any()
                .is_err()
        );
        assert!(Reader::new(&[0x1F, 0x01, 0]).read_any().is_err());
        assert!(Reader::new(&[0x30]).read_any().is_err());
    }
}
