//! Object identifiers, kept BER-encoded.
//!
//! A poller mostly asks "is this OID under that column?" and "what is the row index?". Both
//! work on the encoded bytes: sub-identifiers are self-delimiting (the last octet of each has the
//! top bit clear), so an encoded prefix is a byte prefix. Ordering is by arcs, not bytes
//! (16383 encodes as `FF 7F`, 16384 as `81 80 00`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::SnmpError;

/// Longest OID accepted, in encoded bytes (RFC 2578 allows 128 sub-identifiers).
pub const MAX_OID_BYTES: usize = 640;

/// A borrowed, BER-encoded OID (the content octets of an OBJECT IDENTIFIER).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OidRef<'a>(&'a [u8]);

/// An owned, BER-encoded OID.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Oid(Vec<u8>);

/// Check that `bytes` are complete sub-identifiers.
fn validate(bytes: &[u8]) -> Result<(), SnmpError> {
    if bytes.is_empty() {
        return Err(SnmpError::BadOid("empty"));
    }
    if bytes.len() > MAX_OID_BYTES {
        return Err(SnmpError::BadOid("too long"));
    }
    if bytes[bytes.len() - 1] & 0x80 != 0 {
        return Err(SnmpError::BadOid("last sub-identifier unterminated"));
    }
    let mut run = 0;
    let mut first = true;
    let mut lead = 0u8;
    for &b in bytes {
        if first && b == 0x80 {
            return Err(SnmpError::BadOid("sub-identifier with leading 0x80"));
        }
        if first {
            lead = b;
        }
        run += 1;
        // Five octets carry 35 bits: only 0x8F and below as the first leave 32.
        if run > 5 || (run == 5 && lead > 0x8F) {
            return Err(SnmpError::BadOid("sub-identifier over 32 bits"));
        }
        first = b & 0x80 == 0;
        if first {
            run = 0;
        }
    }
    Ok(())
}

/// Iterate the arcs of encoded bytes (first two arcs split from the first sub-identifier).
fn arcs(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut subs = Subs { bytes };
    let mut pending: Option<u32> = None;
    let mut started = false;
    std::iter::from_fn(move || {
        if let Some(p) = pending.take() {
            return Some(p);
        }
        let v = subs.next()?;
        if !started {
            started = true;
            let (a, b) = match v {
                0..=39 => (0, v),
                40..=79 => (1, v - 40),
                _ => (2, v - 80),
            };
            pending = Some(b);
            return Some(a);
        }
        Some(v)
    })
}

struct Subs<'a> {
    bytes: &'a [u8],
}

impl Iterator for Subs<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let mut v: u32 = 0;
        for (i, &b) in self.bytes.iter().enumerate() {
            v = (v << 7) | (b & 0x7F) as u32;
            if b & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Some(v);
            }
        }
        None
    }
}

fn push_sub(out: &mut Vec<u8>, v: u32) {
    let mut tmp = [0u8; 5];
    let mut i = 5;
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = (v & 0x7F) as u8 | if i == 4 { 0 } else { 0x80 };
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

impl<'a> OidRef<'a> {
    /// Wrap encoded content octets, checking they are well formed.
    pub fn from_ber(bytes: &'a [u8]) -> Result<Self, SnmpError> {
        validate(bytes)?;
        Ok(OidRef(bytes))
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn to_owned(&self) -> Oid {
        Oid(self.0.to_vec())
    }

    pub fn arcs(&self) -> impl Iterator<Item = u32> + 'a {
        arcs(self.0)
    }

    /// True if `prefix` is this OID or an ancestor of it.
    pub fn starts_with(&self, prefix: OidRef<'_>) -> bool {
        self.0.starts_with(prefix.0)
    }

    /// Arcs after `prefix` (the row index of a column), or None if not under it. The first
    /// two arcs share one sub-identifier, so `prefix` must have at least two arcs.
    pub fn suffix_arcs(&self, prefix: OidRef<'_>) -> Option<impl Iterator<Item = u32> + 'a> {
        self.starts_with(prefix).then(|| Subs {
            bytes: &self.0[prefix.0.len()..],
        })
    }
}

impl Oid {
    /// Build from arcs; at least two, the first 0–2 (and the second < 40 unless the first is 2).
    pub fn from_arcs(a: &[u32]) -> Result<Self, SnmpError> {
        if a.len() < 2 {
            return Err(SnmpError::BadOid("fewer than two arcs"));
        }
        if a[0] > 2 || (a[0] < 2 && a[1] >= 40) {
            return Err(SnmpError::BadOid("first arcs out of range"));
        }
        let first = a[0]
            .checked_mul(40)
            .and_then(|x| x.checked_add(a[1]))
            .ok_or(SnmpError::BadOid("first arcs out of range"))?;
        let mut out = Vec::with_capacity(a.len() + 4);
        push_sub(&mut out, first);
        for &v in &a[2..] {
            push_sub(&mut out, v);
        }
        validate(&out)?;
        Ok(Oid(out))
    }

    pub fn as_ref(&self) -> OidRef<'_> {
        OidRef(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// This OID with `arcs` appended (e.g. a column plus a row index).
    pub fn child(&self, more: &[u32]) -> Oid {
        let mut out = self.0.clone();
        for &v in more {
            push_sub(&mut out, v);
        }
        Oid(out)
    }
}

impl Ord for OidRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal prefixes of whole sub-identifiers compare equal byte-wise; compare arcs only
        // from the first differing sub-identifier.
        let (mut a, mut b) = (Subs { bytes: self.0 }, Subs { bytes: other.0 });
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) if x != y => return x.cmp(&y),
                _ => {}
            }
        }
    }
}

impl PartialOrd for OidRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Oid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_ref().cmp(&other.as_ref())
    }
}

impl PartialOrd for Oid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for OidRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.arcs().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OidRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl FromStr for Oid {
    type Err = SnmpError;
    /// Dotted numbers, with or without a leading dot: `1.3.6.1.2.1.1.3.0`.
    fn from_str(s: &str) -> Result<Self, SnmpError> {
        let s = s.strip_prefix('.').unwrap_or(s);
        let arcs: Result<Vec<u32>, _> = s.split('.').map(str::parse).collect();
        let arcs = arcs.map_err(|_| SnmpError::BadOid("not dotted decimal numbers"))?;
        Oid::from_arcs(&arcs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_prints() {
        let o: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
        assert_eq!(o.as_bytes(), &[0x2B, 6, 1, 2, 1, 1, 3, 0]);
        assert_eq!(o.to_string(), "1.3.6.1.2.1.1.3.0");
        let big: Oid = "1.3.6.1.4.1.16384.4294967295".parse().unwrap();
        assert_eq!(big.to_string(), "1.3.6.1.4.1.16384.4294967295");
        assert_eq!(&big.as_bytes()[5..8], &[0x81, 0x80, 0x00]);
        assert!("1".parse::<Oid>().is_err());
        assert!("1.40".parse::<Oid>().is_err());
        assert!("1.3.x".parse::<Oid>().is_err());
        assert!(OidRef::from_ber(&[0x2B, 0x86]).is_err());
        assert!(OidRef::from_ber(&[0x2B, 0x80, 1]).is_err());
    }

    #[test]
    fn rejects_sub_identifiers_over_32_bits() {
        // 2^32 − 1 takes five octets led by 0x8F; 0x90 and above would need 33+ bits and used
        // to be accepted, then silently truncated by `arcs()` and the ordering.
        let max: Oid = "1.3.4294967295".parse().unwrap();
        assert_eq!(&max.as_bytes()[1..], &[0x8F, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(OidRef::from_ber(max.as_bytes()).is_ok());
        assert!(OidRef::from_ber(&[0x2B, 0x90, 0x80, 0x80, 0x80, 0x00]).is_err());
        assert!(OidRef::from_ber(&[0x2B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err());
        assert!("1.3.4294967296".parse::<Oid>().is_err());
    }

    #[test]
    fn orders_by_arcs_not_bytes() {
        let a: Oid = "1.3.6.1.16383".parse().unwrap();
        let b: Oid = "1.3.6.1.16384".parse().unwrap();
        let c: Oid = "1.3.6.1.16384.1".parse().unwrap();
        assert!(a < b && b < c);
        assert!(a.as_bytes() > b.as_bytes(), "byte order differs here");
    }

    #[test]
    fn prefix_and_row_index() {
        let col: Oid = "1.3.6.1.2.1.31.1.1.1.6".parse().unwrap();
        let cell = col.child(&[1000, 7]);
        assert!(cell.as_ref().starts_with(col.as_ref()));
        let idx: Vec<u32> = cell.as_ref().suffix_arcs(col.as_ref()).unwrap().collect();
        assert_eq!(idx, vec![1000, 7]);
        let other: Oid = "1.3.6.1.2.1.31.1.1.1.60".parse().unwrap();
        assert!(!other.as_ref().starts_with(col.as_ref()));
        // 6 vs 60: the byte prefix test must not confuse them.
        let sixty = other.child(&[1]);
        assert!(sixty.as_ref().suffix_arcs(col.as_ref()).is_none());
    }
}
