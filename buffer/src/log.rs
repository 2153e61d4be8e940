//! The segment log: append, replay in order, acknowledge, recover.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::crc32c;
use crate::segment::{
    self, Damage, DamageKind, MAX_RECORD_LEN, RECORD_OVERHEAD, SEGMENT_HEADER_LEN,
};

const ACK_FILE: &str = "ack";
const ACK_TMP_FILE: &str = "ack.tmp";
const ACK_MAGIC: [u8; 7] = *b"NMSDACK";
const ACK_VERSION: u8 = 1;
const ACK_LEN: usize = 28;
/// The largest sequence number a segment may have: names have 16 digits, and a sequence this
/// far from them leaves room for 9·10^15 more segments.
const MAX_SEQ: u64 = 999_999_999_999_999;
/// How often the acknowledged position is written when fsync is `never` (otherwise at the
/// fsync interval, or every time under `always`).
const ACK_PERSIST_INTERVAL: Duration = Duration::from_millis(100);

/// What to do with a record that would make the buffer larger than `max_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse it with [`BufferError::Full`]; the caller waits for acknowledgements and retries.
    Block,
    /// Drop it (counted).
    DropNewest,
    /// Delete the oldest segment, acknowledged or not (its unacknowledged records counted).
    DropOldest,
}

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Leave it to the kernel: survives `kill -9`, not power loss.
    Never,
    /// After every append (and acknowledgement).
    Always,
    /// At the first append or acknowledgement after this long since the last sync, and when
    /// the caller calls [`SegmentLog::sync_if_due`].
    Every(Duration),
}

/// How a buffer is laid out and bounded.
#[derive(Clone, Debug)]
pub struct BufferConfig {
    /// Directory of this buffer's segments (one per sink); created if missing.
    pub dir: PathBuf,
    /// Bound on the bytes of all segment files.
    pub max_size: u64,
    /// A segment is closed once it reaches this size. At most half of `max_size`, so that
    /// deleting acknowledged segments can always make room.
    pub segment_size: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
}

impl BufferConfig {
    /// 2 GiB in 32 MiB segments, blocking when full, synced every 100 ms.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BufferConfig {
            dir: dir.into(),
            max_size: 2 << 30,
            segment_size: 32 << 20,
            when_full: WhenFull::Block,
            fsync: FsyncPolicy::Every(Duration::from_millis(100)),
        }
    }

    /// The largest payload [`SegmentLog::append`] takes.
    pub fn max_record_len(&self) -> u64 {
        (self.segment_size - SEGMENT_HEADER_LEN - RECORD_OVERHEAD).min(MAX_RECORD_LEN as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer {dir}: {what}: {source}")]
    Io {
        dir: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("invalid buffer configuration: {0}")]
    Config(String),
    #[error("buffer full ({size} of {max} bytes)")]
    Full { size: u64, max: u64 },
    #[error("record of {len} bytes is larger than the {max} bytes a record may hold")]
    RecordTooLarge { len: usize, max: u64 },
    #[error("acknowledged {ack:?}, which was not read yet (read up to {read:?})")]
    AckAhead { ack: Position, read: Position },
}

/// Where a record starts, or where the records before it end: segment sequence number and
/// byte offset in that segment's file. Ordered as the log is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One record read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// Where the record starts.
    pub at: Position,
    /// Where it ends: pass this to [`SegmentLog::ack`] once the record is delivered.
    pub end: Position,
}

/// What [`SegmentLog::append`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Written at `at`; `dropped_oldest` unacknowledged records were deleted to make room.
    Written { at: Position, dropped_oldest: u64 },
    /// Dropped under [`WhenFull::DropNewest`].
    DroppedNewest,
}

/// Counters since open (the caller exports them as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub appended_records: u64,
    pub appended_bytes: u64,
    pub dropped_newest_records: u64,
    /// Unacknowledged records deleted with their segment under [`WhenFull::DropOldest`].
    pub dropped_oldest_records: u64,
    pub acked_records: u64,
    /// Damaged places found (each reported once through [`SegmentLog::take_damage`]).
    pub damaged: u64,
    /// Bytes skipped over damaged places.
    pub damaged_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    file_len: u64,
    /// (offset, payload length) of the intact records not acknowledged at open, in order.
    records: Vec<(u64, u32)>,
    /// Records at the front of `records` acknowledged since.
    acked: usize,
}

impl Segment {
    fn unacked(&self) -> usize {
        self.records.len() - self.acked
    }
}

/// A durable append-only log of records in segment files, replayed in order and deleted as
/// it is acknowledged. One owner: the caller serialises appends, reads and acknowledgements.
#[derive(Debug)]
pub struct SegmentLog {
    cfg: BufferConfig,
    /// Oldest first; the last one is the one written to.
    segments: VecDeque<Segment>,
    writer: File,
    /// The writer failed mid-record: the next append starts a fresh segment.
    writer_broken: bool,
    next_seq: u64,
    total_bytes: u64,
    /// Next record to read: segment sequence and index into its `records`.
    cursor: (u64, usize),
    /// End of the last record read (or the acknowledged position after a rewind).
    read_end: Position,
    reader: Option<(u64, File)>,
    ack: Position,
    /// What the ack file holds.
    ack_persisted: Position,
    last_ack_persist: Instant,
    stats: BufferStats,
    damage: Vec<Damage>,
    last_sync: Instant,
    unsynced: bool,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.seg"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_ack(p: Position) -> [u8; ACK_LEN] {
    let mut b = [0u8; ACK_LEN];
    b[..7].copy_from_slice(&ACK_MAGIC);
    b[7] = ACK_VERSION;
    b[8..16].copy_from_slice(&p.segment.to_le_bytes());
    b[16..24].copy_from_slice(&p.offset.to_le_bytes());
    let crc = crc32c::checksum(&b[..24]);
    b[24..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_ack(b: &[u8]) -> Option<Position> {
    if b.len() != ACK_LEN || b[..7] != ACK_MAGIC || b[7] != ACK_VERSION {
        return None;
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let p = Position {
        segment: u64_at(8),
        offset: u64_at(16),
    };
    (crc32c::checksum(&b[..24]) == crc && p.segment <= MAX_SEQ).then_some(p)
}

impl SegmentLog {
    /// Opens (or creates) the buffer in `cfg.dir`: deletes segments acknowledged before a
    /// crash, scans the rest for intact records and starts writing in a fresh segment. Damage
    /// found is skipped and handed out once by [`take_damage`](Self::take_damage).
    pub fn open(cfg: BufferConfig) -> Result<SegmentLog, BufferError> {
        if cfg.segment_size < SEGMENT_HEADER_LEN + RECORD_OVERHEAD + 1
            || cfg.segment_size > cfg.max_size / 2
        {
            return Err(BufferError::Config(format!(
                "segment_size {} must be at least {} bytes and at most half of max_size {}",
                cfg.segment_size,
                SEGMENT_HEADER_LEN + RECORD_OVERHEAD + 1,
                cfg.max_size
            )));
        }
        if let FsyncPolicy::Every(d) = cfg.fsync
            && d.is_zero()
        {
            return Err(BufferError::Config("fsync interval of 0".into()));
        }
        let dir = cfg.dir.clone();
        let io_err = |what| {
            let dir = dir.clone();
            move |source| BufferError::Io { dir, what, source }
        };
        fs::create_dir_all(&dir).map_err(io_err("creating the directory"))?;

        let mut damage = Vec::new();
        let ack = match fs::read(dir.join(ACK_FILE)) {
            Ok(b) => match decode_ack(&b) {
                Some(p) => Some(p),
                None => {
                    damage.push(Damage {
                        segment: 0,
                        offset: 0,
                        kind: DamageKind::AckFileCorrupt,
                        skipped_bytes: 0,
                    });
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("reading the ack file")(e)),
        };

        let mut seqs = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing segments"))? {
            let entry = entry.map_err(io_err("listing segments"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if let Some(seq) = parse_segment_name(name) {
                seqs.push(seq);
            } else if name
                .strip_suffix(".seg.tmp")
                .is_some_and(|n| parse_segment_name(&format!("{n}.seg")).is_some())
            {
                // A segment being created when the process died: it held no record yet.
                fs::remove_file(entry.path()).map_err(io_err("removing an unfinished segment"))?;
            }
        }
        seqs.sort_unstable();

        let mut segments = VecDeque::new();
        let mut total_bytes = 0;
        let mut max_seq = None;
        for seq in seqs {
            if seq > MAX_SEQ {
                // Not one of ours: this build never names a segment beyond MAX_SEQ.
                continue;
            }
            max_seq = Some(seq);
            let path = segment_path(&dir, seq);
            if ack.is_some_and(|a| seq < a.segment) {
                // Acknowledged; the crash came between writing the ack and deleting it.
                fs::remove_file(&path).map_err(io_err("deleting an acknowledged segment"))?;
                continue;
            }
            let data = fs::read(&path).map_err(io_err("reading a segment"))?;
            let start = match ack {
                Some(a) if a.segment == seq => a.offset,
                _ => 0,
            };
            let scan = segment::scan(seq, &data, start);
            let mut file_len = data.len() as u64;
            // Damage that runs to the end of the file (a torn tail, garbage appended) has no
            // intact record after it: cut it off, so it is reported by this start only.
            if let Some(tail) = scan.damage.last()
                && !scan.records.is_empty()
                && tail.offset >= SEGMENT_HEADER_LEN
                && tail.offset + tail.skipped_bytes == file_len
            {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("cutting a damaged tail"))?;
                f.set_len(tail.offset)
                    .map_err(io_err("cutting a damaged tail"))?;
                if cfg.fsync != FsyncPolicy::Never {
                    f.sync_all().map_err(io_err("cutting a damaged tail"))?;
                }
                file_len = tail.offset;
            }
            damage.extend(scan.damage);
            if scan.records.is_empty() {
                // Nothing left to replay in it (acknowledged, damaged beyond use, or a format
                // this build cannot read): reported above, and its space is needed.
                fs::remove_file(&path).map_err(io_err("deleting a spent segment"))?;
                continue;
            }
            total_bytes += file_len;
            segments.push_back(Segment {
                seq,
                file_len,
                records: scan.records,
                acked: 0,
            });
        }
        // A new segment must sort after the acknowledged position, or a restart would take
        // its first records for acknowledged ones.
        let next_seq = max_seq
            .map_or(0, |s| s + 1)
            .max(ack.map_or(0, |a| a.segment + 1));
        let ack = ack.unwrap_or_default();
        let now = Instant::now();
        let (writer, seg) = Self::create_segment(&cfg, next_seq)?;
        total_bytes += seg.file_len;
        segments.push_back(seg);
        let first = segments.front().map_or(next_seq, |s| s.seq);
        let stats = BufferStats {
            damaged: damage.len() as u64,
            damaged_bytes: damage.iter().map(|d| d.skipped_bytes).sum(),
            ..BufferStats::default()
        };
        Ok(SegmentLog {
            cursor: (first, 0),
            read_end: ack,
            reader: None,
            ack,
            ack_persisted: ack,
            last_ack_persist: now,
            stats,
            damage,
            writer,
            writer_broken: false,
            next_seq: next_seq + 1,
            total_bytes,
            segments,
            cfg,
            last_sync: now,
            unsynced: false,
        })
    }

    fn io_error(&self, what: &'static str) -> impl FnOnce(io::Error) -> BufferError {
        let dir = self.cfg.dir.clone();
        move |source| BufferError::Io { dir, what, source }
    }

    fn create_segment(cfg: &BufferConfig, seq: u64) -> Result<(File, Segment), BufferError> {
        let io_err = |what| {
            let dir = cfg.dir.clone();
            move |source| BufferError::Io { dir, what, source }
        };
        // Header first, under a temporary name, then renamed: a kill between creating the
        // file and writing its header leaves a `.tmp` file (removed at open), never a segment
        // without a header.
        let path = segment_path(&cfg.dir, seq);
        let tmp = path.with_extension("seg.tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err("creating a segment"))?;
        f.write_all(&segment::segment_header())
            .map_err(io_err("writing a segment header"))?;
        fs::rename(&tmp, &path).map_err(io_err("naming a new segment"))?;
        if cfg.fsync != FsyncPolicy::Never {
            // The new file's directory entry, so a crash does not lose the segment.
            File::open(&cfg.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing the directory"))?;
        }
        Ok((
            f,
            Segment {
                seq,
                file_len: SEGMENT_HEADER_LEN,
                records: Vec::new(),
                acked: 0,
            },
        ))
    }

    /// Closes the segment being written and starts the next.
    fn roll(&mut self) -> Result<(), BufferError> {
        if self.cfg.fsync != FsyncPolicy::Never && self.unsynced {
            self.writer
                .sync_data()
                .map_err(self.io_error("syncing a segment"))?;
        }
        let seq = self.next_seq;
        let (writer, seg) = Self::create_segment(&self.cfg, seq)?;
        self.next_seq += 1;
        self.writer = writer;
        self.writer_broken = false;
        self.unsynced = false;
        self.total_bytes += seg.file_len;
        self.segments.push_back(seg);
        Ok(())
    }

    fn active(&self) -> &Segment {
        // Never empty: open and drop_oldest keep the active segment.
        &self.segments[self.segments.len() - 1]
    }

    /// Deletes the oldest segment (never the active one); returns its unacknowledged records.
    fn drop_oldest_segment(&mut self) -> Result<u64, BufferError> {
        if self.segments.len() < 2 {
            return Ok(0);
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(0);
        };
        fs::remove_file(segment_path(&self.cfg.dir, seg.seq))
            .map_err(self.io_error("deleting the oldest segment"))?;
        self.total_bytes -= seg.file_len;
        if self.reader.as_ref().is_some_and(|r| r.0 == seg.seq) {
            self.reader = None;
        }
        let next = self.segments.front().map_or(self.next_seq, |s| s.seq);
        let restart = Position {
            segment: next,
            offset: 0,
        };
        if self.cursor.0 <= seg.seq {
            self.cursor = (next, 0);
        }
        self.read_end = self.read_end.max(restart);
        self.ack = self.ack.max(restart);
        Ok(seg.unacked() as u64)
    }

    /// Appends one record. Under [`WhenFull::Block`] a full buffer returns
    /// [`BufferError::Full`] and writes nothing.
    pub fn append(&mut self, payload: &[u8]) -> Result<Appended, BufferError> {
        let max = self.cfg.max_record_len();
        if payload.len() as u64 > max {
            return Err(BufferError::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let need = RECORD_OVERHEAD + payload.len() as u64;
        let active = self.active();
        if self.writer_broken
            || (active.file_len + need > self.cfg.segment_size && !active.records.is_empty())
        {
            self.roll()?;
        }
        let mut dropped_oldest = 0;
        while self.total_bytes + need > self.cfg.max_size {
            match self.cfg.when_full {
                WhenFull::Block => {
                    return Err(BufferError::Full {
                        size: self.total_bytes,
                        max: self.cfg.max_size,
                    });
                }
                WhenFull::DropNewest => {
                    self.stats.dropped_newest_records += 1;
                    return Ok(Appended::DroppedNewest);
                }
                WhenFull::DropOldest => {
                    if self.segments.len() < 2 {
                        // Only the segment being written is left: close it so it can go.
                        self.roll()?;
                    }
                    let n = self.drop_oldest_segment()?;
                    dropped_oldest += n;
                    self.stats.dropped_oldest_records += n;
                }
            }
        }

        let header = segment::record_header(payload);
        let at = Position {
            segment: self.active().seq,
            offset: self.active().file_len,
        };
        // One write per record when it is small; two otherwise (no copy of large payloads).
        let written = if payload.len() <= 4096 {
            let mut buf = [0u8; 4096 + RECORD_OVERHEAD as usize];
            buf[..12].copy_from_slice(&header);
            buf[12..12 + payload.len()].copy_from_slice(payload);
            self.writer.write_all(&buf[..12 + payload.len()])
        } else {
            self.writer
                .write_all(&header)
                .and_then(|()| self.writer.write_all(payload))
        };
        if let Err(e) = written {
            // Part of the record may be in the file: never write after it.
            self.writer_broken = true;
            return Err(self.io_error("appending a record")(e));
        }
        let last = self.segments.len() - 1;
        let seg = &mut self.segments[last];
        seg.records.push((at.offset, payload.len() as u32));
        seg.file_len += need;
        self.total_bytes += need;
        self.stats.appended_records += 1;
        self.stats.appended_bytes += payload.len() as u64;
        self.unsynced = true;
        match self.cfg.fsync {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Every(_) => self.sync_if_due()?,
            FsyncPolicy::Never => {}
        }
        Ok(Appended::Written { at, dropped_oldest })
    }

    /// Forces what was appended to disk.
    pub fn sync(&mut self) -> Result<(), BufferError> {
        if self.unsynced {
            self.writer
                .sync_data()
                .map_err(self.io_error("syncing a segment"))?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs appended records if the `Every` interval has passed since the last sync, and
    /// writes the acknowledged position if it is due. Call it on a timer (every interval or so)
    /// so the end of a burst does not wait for the next append or acknowledgement.
    pub fn sync_if_due(&mut self) -> Result<(), BufferError> {
        if let FsyncPolicy::Every(d) = self.cfg.fsync
            && self.unsynced
            && self.last_sync.elapsed() >= d
        {
            self.sync()?;
        }
        if self.ack_persist_due() {
            self.persist_ack()?;
        }
        Ok(())
    }

    fn ack_persist_due(&self) -> bool {
        self.ack != self.ack_persisted
            && match self.cfg.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Every(d) => self.last_ack_persist.elapsed() >= d,
                FsyncPolicy::Never => self.last_ack_persist.elapsed() >= ACK_PERSIST_INTERVAL,
            }
    }

    /// Writes the acknowledged position now if the ack file lags behind it (at shutdown).
    pub fn persist_ack_now(&mut self) -> Result<(), BufferError> {
        if self.ack != self.ack_persisted {
            self.persist_ack()?;
        }
        Ok(())
    }

    fn segment_index(&self, seq: u64) -> Option<usize> {
        // A handful of segments: a linear search is cheaper than keeping a map.
        self.segments.iter().position(|s| s.seq == seq)
    }

    /// Where the record [`read_next`](Self::read_next) would return next starts, and its
    /// payload length, without reading it. Moves the cursor over segments that are gone or
    /// read to their end.
    pub fn peek_next(&mut self) -> Option<(Position, u32)> {
        loop {
            let (seq, idx) = self.cursor;
            let Some(si) = self.segment_index(seq) else {
                // The cursor's segment is gone (dropped when full): go on with the first one
                // after it, never one before.
                let next = self.segments.iter().find(|s| s.seq > seq)?;
                self.cursor = (next.seq, 0);
                continue;
            };
            let seg = &self.segments[si];
            let Some(&(offset, len)) = seg.records.get(idx) else {
                if si + 1 == self.segments.len() {
                    return None;
                }
                self.cursor = (self.segments[si + 1].seq, 0);
                continue;
            };
            return Some((
                Position {
                    segment: seq,
                    offset,
                },
                len,
            ));
        }
    }

    /// Steps over the next record without reading it, for a record its caller already has
    /// (delivered from memory). Returns where it starts and ends, as `read_next` would.
    pub fn skip_next(&mut self) -> Option<RecordInfo> {
        let (at, len) = self.peek_next()?;
        self.cursor.1 += 1;
        let end = Position {
            segment: at.segment,
            offset: at.offset + RECORD_OVERHEAD + len as u64,
        };
        self.read_end = end;
        Some(RecordInfo { at, end })
    }

    /// End of the last record read or skipped (or the acknowledged position after a rewind):
    /// the furthest [`ack`](Self::ack) may go.
    pub fn read_position(&self) -> Position {
        self.read_end
    }

    /// Where the next appended record will start, if it fits the current segment.
    pub fn tail(&self) -> Position {
        let a = self.active();
        Position {
            segment: a.seq,
            offset: a.file_len,
        }
    }

    /// Reads the next record into `payload` (replacing its contents). `None` when every record
    /// appended so far has been read. Records damaged since open are skipped and reported.
    pub fn read_next(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordInfo>, BufferError> {
        loop {
            let Some((at, len)) = self.peek_next() else {
                return Ok(None);
            };
            let (seq, idx) = self.cursor;
            let offset = at.offset;
            if self.reader.as_ref().is_none_or(|r| r.0 != seq) {
                let f = File::open(segment_path(&self.cfg.dir, seq))
                    .map_err(self.io_error("opening a segment to read"))?;
                self.reader = Some((seq, f));
            }
            let Some((_, file)) = &self.reader else {
                continue;
            };
            let mut header = [0u8; RECORD_OVERHEAD as usize];
            payload.resize(len as usize, 0);
            let read = file
                .read_exact_at(&mut header, offset)
                .and_then(|()| file.read_exact_at(payload, offset + RECORD_OVERHEAD));
            self.cursor = (seq, idx + 1);
            let end = Position {
                segment: seq,
                offset: offset + RECORD_OVERHEAD + len as u64,
            };
            let verdict = match read {
                Ok(()) => segment::verify_record(&header, payload),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(DamageKind::TornTail),
                Err(e) => return Err(self.io_error("reading a record")(e)),
            };
            self.read_end = end;
            match verdict {
                Ok(()) => {
                    return Ok(Some(RecordInfo {
                        at: Position {
                            segment: seq,
                            offset,
                        },
                        end,
                    }));
                }
                Err(kind) => {
                    // Damaged after open (the scan checked it): skip it, report it once.
                    self.stats.damaged += 1;
                    self.stats.damaged_bytes += RECORD_OVERHEAD + len as u64;
                    self.damage.push(Damage {
                        segment: seq,
                        offset,
                        kind,
                        skipped_bytes: RECORD_OVERHEAD + len as u64,
                    });
                }
            }
        }
    }

    /// Reads again from the oldest unacknowledged record (after a failed delivery).
    pub fn rewind(&mut self) {
        self.read_end = self.ack;
        let found = self.segments.iter().find_map(|s| {
            if s.seq < self.ack.segment {
                return None;
            }
            let idx = if s.seq == self.ack.segment {
                s.records.partition_point(|r| r.0 < self.ack.offset)
            } else {
                0
            };
            Some((s.seq, idx))
        });
        self.cursor = found.unwrap_or((self.next_seq, 0));
    }

    /// Acknowledges every record before `upto` (a [`RecordInfo::end`]): fully acknowledged
    /// segments are deleted and the position is persisted, so a restart does not replay them.
    /// The ack file is written at most once per fsync interval (100 ms under `never`, every
    /// time under `always`; dropping the log writes it): a crash can replay what was
    /// acknowledged in the last interval, never lose what was not.
    /// Acknowledging a position already acknowledged (or dropped) does nothing.
    pub fn ack(&mut self, upto: Position) -> Result<(), BufferError> {
        if upto <= self.ack {
            return Ok(());
        }
        if upto > self.read_end {
            return Err(BufferError::AckAhead {
                ack: upto,
                read: self.read_end,
            });
        }
        self.ack = upto;
        let active_seq = self.active().seq;
        while let Some(front) = self.segments.front_mut() {
            // A closed segment goes once its last intact record is acknowledged, even if
            // damaged bytes follow that record.
            let whole = front.seq < upto.segment
                || (front.seq == upto.segment
                    && front.seq != active_seq
                    && front.records.iter().all(|r| r.0 < upto.offset));
            if !whole {
                if front.seq == upto.segment {
                    let acked = front.records.partition_point(|r| r.0 < upto.offset);
                    self.stats.acked_records += (acked - front.acked.min(acked)) as u64;
                    front.acked = front.acked.max(acked);
                }
                break;
            }
            let seq = front.seq;
            self.stats.acked_records += front.unacked() as u64;
            let file_len = front.file_len;
            self.segments.pop_front();
            if self.reader.as_ref().is_some_and(|r| r.0 == seq) {
                self.reader = None;
            }
            fs::remove_file(segment_path(&self.cfg.dir, seq))
                .map_err(self.io_error("deleting an acknowledged segment"))?;
            self.total_bytes -= file_len;
        }
        if self.ack_persist_due() {
            self.persist_ack()?;
        }
        Ok(())
    }

    fn persist_ack(&mut self) -> Result<(), BufferError> {
        let sync = self.cfg.fsync != FsyncPolicy::Never;
        let tmp = self.cfg.dir.join(ACK_TMP_FILE);
        let mut f = File::create(&tmp).map_err(self.io_error("writing the ack file"))?;
        f.write_all(&encode_ack(self.ack))
            .map_err(self.io_error("writing the ack file"))?;
        if sync {
            // Synced before the rename, so a crash leaves the old ack or the new one, never
            // an empty file.
            f.sync_data()
                .map_err(self.io_error("syncing the ack file"))?;
        }
        fs::rename(&tmp, self.cfg.dir.join(ACK_FILE))
            .map_err(self.io_error("replacing the ack file"))?;
        self.ack_persisted = self.ack;
        self.last_ack_persist = Instant::now();
        Ok(())
    }

    /// Damage found since the last call (at open, or while reading), each place once.
    pub fn take_damage(&mut self) -> Vec<Damage> {
        std::mem::take(&mut self.damage)
    }

    pub fn stats(&self) -> BufferStats {
        self.stats
    }

    /// Bytes of all segment files (what `max_size` bounds).
    pub fn size_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Records held and not acknowledged (read or not).
    pub fn unacked_records(&self) -> u64 {
        self.segments.iter().map(|s| s.unacked() as u64).sum()
    }

    /// The position everything before which is acknowledged.
    pub fn acked(&self) -> Position {
        self.ack
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn config(&self) -> &BufferConfig {
        &self.cfg
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        // Best effort: an ack file that lags only means records replayed twice.
        let _ = self.persist_ack_now();
        if self.cfg.fsync != FsyncPolicy::Never {
            let _ = self.sync();
        }
    }
}
