//! The on-disk format of a segment and the scan that recovers its records.
//!
//! ```text
//! segment file  <dir>/<16-digit sequence>.seg
//!   header      7 bytes magic "NMSDSEG", 1 byte format version (1)
//!   record*     4 bytes magic C5 7E 9A 3D
//!               u32 LE payload length
//!               u32 LE CRC-32C over the 4 length bytes and the payload
//!               payload
//! ```
//!
//! The per-record magic is what lets a scan find the next record after a damaged one without
//! computing a checksum at every byte offset: only offsets that start with the magic are tried.

use std::fmt;

use crate::crc32c;

pub(crate) const SEGMENT_MAGIC: [u8; 7] = *b"NMSDSEG";
/// The segment format this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
pub(crate) const SEGMENT_HEADER_LEN: u64 = 8;
pub(crate) const RECORD_MAGIC: [u8; 4] = [0xC5, 0x7E, 0x9A, 0x3D];
/// Bytes a record takes besides its payload.
pub const RECORD_OVERHEAD: u64 = 12;
/// The largest payload a record may hold. A length field above it is damage, not a record.
pub const MAX_RECORD_LEN: u32 = 64 << 20;

/// The segment header this build writes.
pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..7].copy_from_slice(&SEGMENT_MAGIC);
    h[7] = SEGMENT_FORMAT_VERSION;
    h
}

/// Record header for `payload`.
pub(crate) fn record_header(payload: &[u8]) -> [u8; RECORD_OVERHEAD as usize] {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::update(crc32c::checksum(&len), payload);
    let mut h = [0u8; RECORD_OVERHEAD as usize];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..8].copy_from_slice(&len);
    h[8..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a record header against its payload; `Ok(())` when the record is intact.
pub(crate) fn verify_record(header: &[u8; 12], payload: &[u8]) -> Result<(), DamageKind> {
    if header[..4] != RECORD_MAGIC {
        return Err(DamageKind::Garbage);
    }
    let len = &header[4..8];
    if u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize != payload.len() {
        return Err(DamageKind::BadLength);
    }
    let want = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if crc32c::update(crc32c::checksum(len), payload) != want {
        return Err(DamageKind::ChecksumMismatch);
    }
    Ok(())
}

/// What was wrong at a damaged place of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamageKind {
    /// The file is shorter than a segment header (created, then killed before the header).
    TruncatedHeader,
    /// The file does not start with the segment magic.
    BadHeader,
    /// A segment format this build does not read; the segment is left alone.
    UnsupportedVersion(u8),
    /// The last record runs past the end of the file (`kill -9` or power loss mid-write).
    TornTail,
    /// A record whose checksum does not match (a flipped bit in its length or payload).
    ChecksumMismatch,
    /// A record length larger than any record may be, or not the length the index holds.
    BadLength,
    /// Bytes that are not a record (e.g. appended by something else).
    Garbage,
    /// The acknowledgement file could not be read; everything held is replayed.
    AckFileCorrupt,
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::TruncatedHeader => f.write_str("truncated segment header"),
            DamageKind::BadHeader => f.write_str("not a segment (bad magic)"),
            DamageKind::UnsupportedVersion(v) => write!(f, "unsupported segment format {v}"),
            DamageKind::TornTail => f.write_str("torn last record"),
            DamageKind::ChecksumMismatch => f.write_str("record checksum mismatch"),
            DamageKind::BadLength => f.write_str("implausible record length"),
            DamageKind::Garbage => f.write_str("bytes that are not a record"),
            DamageKind::AckFileCorrupt => f.write_str("unreadable acknowledgement file"),
        }
    }
}

/// One damaged place found in the buffer, reported once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Sequence number of the segment (its file name).
    pub segment: u64,
    /// Byte offset in the segment file where the damage starts.
    pub offset: u64,
    pub kind: DamageKind,
    /// Bytes skipped because of it (up to the next intact record or the end of the file).
    pub skipped_bytes: u64,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {:016}.seg offset {}: {}, {} bytes skipped",
            self.segment, self.offset, self.kind, self.skipped_bytes
        )
    }
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// (offset, payload length) of every intact record from the start offset on.
    pub records: Vec<(u64, u32)>,
    pub damage: Vec<Damage>,
    /// The segment's records cannot be read by this build at all.
    pub unreadable: bool,
}

/// Parses the record starting at `pos`; its payload length when intact.
fn parse_at(data: &[u8], pos: usize) -> Result<u32, DamageKind> {
    let rest = &data[pos..];
    if rest.len() < RECORD_OVERHEAD as usize {
        let n = rest.len().min(RECORD_MAGIC.len());
        return Err(if rest[..n] == RECORD_MAGIC[..n] {
            DamageKind::TornTail
        } else {
            DamageKind::Garbage
        });
    }
    let mut header = [0u8; 12];
    header.copy_from_slice(&rest[..12]);
    if header[..4] != RECORD_MAGIC {
        return Err(DamageKind::Garbage);
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_LEN {
        return Err(DamageKind::BadLength);
    }
    let Some(payload) = rest.get(12..12 + len as usize) else {
        return Err(DamageKind::TornTail);
    };
    verify_record(&header, payload).map(|()| len)
}

/// The first offset after `from` where an intact record starts, or the end of `data`.
fn resync(data: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + RECORD_MAGIC.len() <= data.len() {
        if data[i..i + 4] == RECORD_MAGIC && parse_at(data, i).is_ok() {
            return i;
        }
        i += 1;
    }
    data.len()
}

/// Scans a whole segment file's bytes for intact records at or after `start`.
pub(crate) fn scan(segment: u64, data: &[u8], start: u64) -> Scan {
    let mut out = Scan::default();
    let header_len = SEGMENT_HEADER_LEN as usize;
    let damage = |offset: usize, kind, skipped: usize| Damage {
        segment,
        offset: offset as u64,
        kind,
        skipped_bytes: skipped as u64,
    };
    if data.len() < header_len {
        out.unreadable = true;
        out.damage
            .push(damage(0, DamageKind::TruncatedHeader, data.len()));
        return out;
    }
    if data[..7] != SEGMENT_MAGIC {
        out.unreadable = true;
        out.damage
            .push(damage(0, DamageKind::BadHeader, data.len()));
        return out;
    }
    if data[7] != SEGMENT_FORMAT_VERSION {
        out.unreadable = true;
        out.damage.push(damage(
            0,
            DamageKind::UnsupportedVersion(data[7]),
            data.len(),
        ));
        return out;
    }
    let mut pos = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .clamp(header_len, data.len());
    while pos < data.len() {
        match parse_at(data, pos) {
            Ok(len) => {
                out.records.push((pos as u64, len));
                pos += RECORD_OVERHEAD as usize + len as usize;
            }
            Err(mut kind) => {
                let next = resync(data, pos + 1);
                // A record that seemed to run past the end but is followed by intact ones had
                // its length damaged: it is not a torn tail.
                if kind == DamageKind::TornTail && next < data.len() {
                    kind = DamageKind::BadLength;
                }
                out.damage.push(damage(pos, kind, next - pos));
                pos = next;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_of(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut v = segment_header().to_vec();
        let mut offsets = Vec::new();
        for p in payloads {
            offsets.push(v.len() as u64);
            v.extend_from_slice(&record_header(p));
            v.extend_from_slice(p);
        }
        (v, offsets)
    }

    #[test]
    fn an_intact_segment_scans_clean() {
        let (seg, offsets) = segment_of(&[b"one", b"", b"three"]);
        let s = scan(1, &seg, 0);
        assert!(s.damage.is_empty());
        let got: Vec<u64> = s.records.iter().map(|r| r.0).collect();
        assert_eq!(got, offsets);
        // From a later record on.
        assert_eq!(scan(1, &seg, offsets[1]).records.len(), 2);
    }

    #[test]
    fn every_torn_length_is_a_torn_tail_and_nothing_else() {
        let (seg, offsets) = segment_of(&[b"first record", b"second record"]);
        for cut in offsets[1] + 1..seg.len() as u64 {
            let s = scan(7, &seg[..cut as usize], 0);
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(
                s.damage,
                vec![Damage {
                    segment: 7,
                    offset: offsets[1],
                    kind: DamageKind::TornTail,
                    skipped_bytes: cut - offsets[1],
                }],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_loses_at_most_the_record_it_hit() {
        let (seg, _) = segment_of(&[b"alpha", b"bravo", b"charlie"]);
        for at in SEGMENT_HEADER_LEN as usize..seg.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = seg.clone();
                bad[at] ^= bit;
                let s = scan(1, &bad, 0);
                assert_eq!(s.records.len(), 2, "flip {bit:#x} at {at}");
                assert_eq!(s.damage.len(), 1, "flip {bit:#x} at {at}");
            }
        }
    }
}
