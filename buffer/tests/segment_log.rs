//! The segment log through its public API: order, acknowledgement across restarts, every
//! full policy's accounting, and recovery from each kind of damage.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nmsd_buffer::{
    Appended, BufferConfig, BufferError, DamageKind, FsyncPolicy, Position, SegmentLog, WhenFull,
};

/// A directory removed when dropped (std only; no tempfile crate for this).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "nmsd-buffer-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Path, segment_size: u64, max_size: u64, when_full: WhenFull) -> BufferConfig {
    BufferConfig {
        dir: dir.to_path_buf(),
        max_size,
        segment_size,
        when_full,
        fsync: FsyncPolicy::Never,
    }
}

/// Record `i`: its number and some filler, so records differ in length.
fn payload(i: u32) -> Vec<u8> {
    let mut v = i.to_le_bytes().to_vec();
    v.extend(std::iter::repeat_n((i % 251) as u8, (i % 37) as usize + 20));
    v
}

fn id(p: &[u8]) -> u32 {
    u32::from_le_bytes([p[0], p[1], p[2], p[3]])
}

/// Reads everything left, acknowledging nothing; (ids, end of the last).
fn read_all(log: &mut SegmentLog) -> (Vec<u32>, Option<Position>) {
    let mut buf = Vec::new();
    let mut ids = Vec::new();
    let mut last = None;
    while let Some(rec) = log.read_next(&mut buf).expect("read") {
        assert_eq!(buf, payload(id(&buf)), "payload of record {}", id(&buf));
        ids.push(id(&buf));
        last = Some(rec.end);
    }
    (ids, last)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn append_n(log: &mut SegmentLog, ids: std::ops::Range<u32>) -> Vec<Position> {
    ids.map(|i| match log.append(&payload(i)).expect("append") {
        Appended::Written { at, .. } => at,
        Appended::DroppedNewest => panic!("dropped {i}"),
    })
    .collect()
}

#[test]
fn records_come_back_in_order_across_segments() {
    let d = TempDir::new("order");
    let mut log = SegmentLog::open(cfg(&d.0, 512, 1 << 20, WhenFull::Block)).expect("open");
    append_n(&mut log, 0..200);
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());
    let (ids, _) = read_all(&mut log);
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    // Appends after the reader caught up are read next.
    append_n(&mut log, 200..210);
    assert_eq!(read_all(&mut log).0, (200..210).collect::<Vec<_>>());
    assert!(log.take_damage().is_empty());
    assert_eq!(log.unacked_records(), 210);
}

#[test]
fn a_restart_replays_exactly_what_was_not_acknowledged() {
    let d = TempDir::new("ack");
    let c = cfg(&d.0, 600, 1 << 20, WhenFull::Block);
    {
        let mut log = SegmentLog::open(c.clone()).expect("open");
        append_n(&mut log, 0..100);
        let mut buf = Vec::new();
        let mut end = None;
        for _ in 0..40 {
            end = log.read_next(&mut buf).expect("read").map(|r| r.end);
        }
        // Read ahead of the acknowledgement: ten more in flight, not delivered.
        for _ in 0..10 {
            log.read_next(&mut buf).expect("read");
        }
        log.ack(end.expect("40 records")).expect("ack");
        assert_eq!(log.stats().acked_records, 40);
        assert_eq!(log.unacked_records(), 60);
        // Acking the same place again, or an earlier one, does nothing.
        log.ack(end.expect("40 records")).expect("ack again");
        log.ack(Position::default()).expect("ack before");
    }
    let mut log = SegmentLog::open(c.clone()).expect("reopen");
    assert!(log.take_damage().is_empty());
    let (ids, end) = read_all(&mut log);
    assert_eq!(
        ids,
        (40..100).collect::<Vec<_>>(),
        "no duplicate, nothing lost"
    );
    append_n(&mut log, 100..120);
    let (more, end2) = read_all(&mut log);
    assert_eq!(more, (100..120).collect::<Vec<_>>());
    assert!(end2 > end);
    log.ack(end2.expect("records")).expect("ack all");
    assert_eq!(log.unacked_records(), 0);
    // Everything acknowledged: only the segment being written is left.
    assert_eq!(segment_files(&d.0).len(), 1);
    drop(log);
    let mut log = SegmentLog::open(c).expect("reopen");
    assert_eq!(read_all(&mut log).0, Vec::<u32>::new());
    assert!(log.size_bytes() <= 2 * 8, "{} bytes", log.size_bytes());
}

#[test]
fn rewind_reads_the_unacknowledged_records_again() {
    let d = TempDir::new("rewind");
    let mut log = SegmentLog::open(cfg(&d.0, 300, 1 << 20, WhenFull::Block)).expect("open");
    append_n(&mut log, 0..30);
    let mut buf = Vec::new();
    let mut end = None;
    for _ in 0..12 {
        end = log.read_next(&mut buf).expect("read").map(|r| r.end);
    }
    log.ack(end.expect("end")).expect("ack");
    read_all(&mut log);
    log.rewind();
    assert_eq!(read_all(&mut log).0, (12..30).collect::<Vec<_>>());
}

#[test]
fn acknowledging_what_was_not_read_is_refused() {
    let d = TempDir::new("ahead");
    let mut log = SegmentLog::open(cfg(&d.0, 300, 1 << 20, WhenFull::Block)).expect("open");
    let at = append_n(&mut log, 0..3);
    assert!(matches!(
        log.ack(Position {
            segment: at[2].segment,
            offset: at[2].offset + 1
        }),
        Err(BufferError::AckAhead { .. })
    ));
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let d = TempDir::new("cfg");
    for (seg, max) in [(1 << 20, 1 << 20), (10, 1 << 20)] {
        assert!(matches!(
            SegmentLog::open(cfg(&d.0, seg, max, WhenFull::Block)),
            Err(BufferError::Config(_))
        ));
    }
    let mut c = cfg(&d.0, 1024, 1 << 20, WhenFull::Block);
    c.fsync = FsyncPolicy::Every(std::time::Duration::ZERO);
    assert!(matches!(SegmentLog::open(c), Err(BufferError::Config(_))));
    let mut log = SegmentLog::open(cfg(&d.0, 1024, 1 << 20, WhenFull::Block)).expect("open");
    assert!(matches!(
        log.append(&[0u8; 2000]),
        Err(BufferError::RecordTooLarge { .. })
    ));
}

#[test]
fn every_fsync_policy_writes_the_same_log() {
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::Always,
        FsyncPolicy::Every(std::time::Duration::from_millis(1)),
    ] {
        let d = TempDir::new("fsync");
        let mut c = cfg(&d.0, 400, 1 << 20, WhenFull::Block);
        c.fsync = fsync;
        let mut log = SegmentLog::open(c.clone()).expect("open");
        append_n(&mut log, 0..20);
        log.sync_if_due().expect("sync");
        log.sync().expect("sync");
        let (ids, end) = read_all(&mut log);
        assert_eq!(ids.len(), 20);
        log.ack(end.expect("end")).expect("ack");
        drop(log);
        let mut log = SegmentLog::open(c).expect("reopen");
        assert!(read_all(&mut log).0.is_empty(), "{fsync:?}");
    }
}

// ---- when full: kept + dropped = appended ----

const SEG: u64 = 1024;
const MAX: u64 = 4096;

#[test]
fn block_refuses_until_acknowledgements_make_room() {
    let d = TempDir::new("block");
    let mut log = SegmentLog::open(cfg(&d.0, SEG, MAX, WhenFull::Block)).expect("open");
    let mut written = 0u32;
    let mut refused = 0;
    for i in 0..200u32 {
        match log.append(&payload(written)) {
            Ok(Appended::Written { dropped_oldest, .. }) => {
                assert_eq!(dropped_oldest, 0);
                written += 1;
            }
            Ok(Appended::DroppedNewest) => panic!("block dropped"),
            Err(BufferError::Full { size, max }) => {
                assert!(size <= max);
                refused += 1;
                // The caller waits for the sink: deliver half of what is held.
                let mut buf = Vec::new();
                let mut end = None;
                for _ in 0..(log.unacked_records() / 2).max(1) {
                    if let Some(r) = log.read_next(&mut buf).expect("read") {
                        end = Some(r.end);
                    }
                }
                if let Some(e) = end {
                    log.ack(e).expect("ack");
                }
            }
            Err(e) => panic!("append {i}: {e}"),
        }
        assert!(log.size_bytes() <= MAX, "{} > {MAX}", log.size_bytes());
    }
    assert!(refused > 0, "the buffer never filled");
    let s = log.stats();
    assert_eq!(s.appended_records, written as u64);
    assert_eq!(s.dropped_newest_records + s.dropped_oldest_records, 0);
    // Acknowledged plus what is left to read is everything written, in order.
    let acked = s.acked_records;
    log.rewind();
    let (rest, _) = read_all(&mut log);
    assert_eq!(acked + rest.len() as u64, written as u64);
    assert_eq!(rest, (acked as u32..written).collect::<Vec<_>>());
}

#[test]
fn drop_newest_keeps_the_oldest_and_counts_the_rest() {
    let d = TempDir::new("newest");
    let mut log = SegmentLog::open(cfg(&d.0, SEG, MAX, WhenFull::DropNewest)).expect("open");
    let total = 300u32;
    let mut dropped = 0u64;
    for i in 0..total {
        if log.append(&payload(i)).expect("append") == Appended::DroppedNewest {
            dropped += 1;
        }
        assert!(log.size_bytes() <= MAX);
    }
    let (kept, _) = read_all(&mut log);
    assert!(dropped > 0);
    assert_eq!(log.stats().dropped_newest_records, dropped);
    assert_eq!(kept.len() as u64 + dropped, total as u64);
    assert_eq!(
        kept,
        (0..kept.len() as u32).collect::<Vec<_>>(),
        "the oldest are kept"
    );
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_what_it_deleted() {
    let d = TempDir::new("oldest");
    let mut log = SegmentLog::open(cfg(&d.0, SEG, MAX, WhenFull::DropOldest)).expect("open");
    let total = 300u32;
    let mut buf = Vec::new();
    let mut delivered = Vec::new();
    let mut reported = 0;
    for i in 0..total {
        match log.append(&payload(i)).expect("append") {
            Appended::Written { dropped_oldest, .. } => reported += dropped_oldest,
            Appended::DroppedNewest => panic!("drop_oldest dropped the newest"),
        }
        assert!(log.size_bytes() <= MAX);
        // A slow sink: one record delivered every tenth append.
        if i % 10 == 0
            && let Some(r) = log.read_next(&mut buf).expect("read")
        {
            delivered.push(id(&buf));
            log.ack(r.end).expect("ack");
        }
    }
    let (rest, _) = read_all(&mut log);
    let s = log.stats();
    assert!(s.dropped_oldest_records > 0);
    assert_eq!(reported, s.dropped_oldest_records);
    assert_eq!(
        delivered.len() as u64 + rest.len() as u64 + s.dropped_oldest_records,
        total as u64
    );
    let mut all = delivered.clone();
    all.extend(&rest);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate"
    );
    assert_eq!(rest.last(), Some(&(total - 1)), "the newest are kept");
}

#[test]
fn drop_oldest_survives_a_restart_with_consistent_counts() {
    let d = TempDir::new("oldest-restart");
    let c = cfg(&d.0, SEG, MAX, WhenFull::DropOldest);
    {
        let mut log = SegmentLog::open(c.clone()).expect("open");
        append_n(&mut log, 0..300);
    }
    let mut log = SegmentLog::open(c).expect("reopen");
    assert!(log.take_damage().is_empty());
    let (ids, _) = read_all(&mut log);
    assert!(!ids.is_empty());
    assert_eq!(ids.last(), Some(&299));
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(log.size_bytes() <= MAX);
}

// ---- recovery ----

/// Writes records 0..n in 1 KiB segments and closes the log.
fn written_log(dir: &Path, n: u32) -> (BufferConfig, Vec<Position>) {
    let c = cfg(dir, SEG, 1 << 20, WhenFull::Block);
    let mut log = SegmentLog::open(c.clone()).expect("open");
    let at = append_n(&mut log, 0..n);
    (c, at)
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.seg"))
}

#[test]
fn a_torn_tail_is_reported_once_and_writing_goes_on_in_a_fresh_segment() {
    let d = TempDir::new("torn");
    let (c, at) = written_log(&d.0, 10);
    let last = at[9];
    let path = seg_path(&d.0, last.segment);
    let len = fs::metadata(&path).expect("meta").len();
    // kill -9 in the middle of the last record's payload.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(last.offset + 12 + 5).expect("truncate");
    assert!(last.offset + 17 < len);
    drop(f);

    let mut log = SegmentLog::open(c.clone()).expect("reopen");
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::TornTail);
    assert_eq!(
        (damage[0].segment, damage[0].offset),
        (last.segment, last.offset)
    );
    assert_eq!(damage[0].skipped_bytes, 17);
    assert!(damage[0].to_string().contains("offset"), "{}", damage[0]);
    assert!(log.take_damage().is_empty(), "reported once");
    assert_eq!(log.stats().damaged, 1);
    match log.append(&payload(10)).expect("append") {
        Appended::Written { at, .. } => assert!(at.segment > last.segment, "fresh segment"),
        Appended::DroppedNewest => panic!(),
    }
    let (ids, _) = read_all(&mut log);
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]);
    assert!(log.take_damage().is_empty());
    drop(log);
    // The torn bytes were cut off: the next start has nothing to report.
    assert_eq!(fs::metadata(&path).expect("meta").len(), last.offset);
    let mut log = SegmentLog::open(c).expect("reopen");
    assert!(log.take_damage().is_empty());
    assert_eq!(read_all(&mut log).0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]);
}

#[test]
fn a_flipped_byte_loses_only_its_record() {
    let d = TempDir::new("flip");
    let (c, at) = written_log(&d.0, 10);
    let hit = at[4];
    let path = seg_path(&d.0, hit.segment);
    let mut bytes = fs::read(&path).expect("read");
    bytes[hit.offset as usize + 14] ^= 0x10;
    fs::write(&path, &bytes).expect("write");

    let mut log = SegmentLog::open(c).expect("reopen");
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::ChecksumMismatch);
    assert_eq!(
        (damage[0].segment, damage[0].offset),
        (hit.segment, hit.offset)
    );
    let (ids, _) = read_all(&mut log);
    assert_eq!(ids, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    assert!(log.take_damage().is_empty());
    assert_eq!(
        fs::read(&path).expect("read"),
        bytes,
        "damage inside a segment stays"
    );
}

#[test]
fn garbage_appended_to_a_segment_is_skipped() {
    let d = TempDir::new("garbage");
    let (c, at) = written_log(&d.0, 10);
    let path = seg_path(&d.0, at[9].segment);
    let end = fs::metadata(&path).expect("meta").len();
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend_from_slice(b"this is not a record, it came from somewhere else");
    fs::write(&path, &bytes).expect("write");

    let mut log = SegmentLog::open(c).expect("reopen");
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::Garbage);
    assert_eq!(damage[0].offset, end);
    assert_eq!(read_all(&mut log).0, (0..10).collect::<Vec<_>>());
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        end,
        "garbage cut off"
    );
    // Acknowledging the segment's last record deletes it, garbage and all.
    log.rewind();
    let (_, last) = read_all(&mut log);
    log.ack(last.expect("end")).expect("ack");
    assert!(!path.exists());
}

#[test]
fn a_truncated_header_and_a_foreign_file_are_skipped_and_removed() {
    let d = TempDir::new("header");
    let (c, at) = written_log(&d.0, 10);
    let last_seq = at[9].segment;
    // A crash right after creating the next segment, and a file that is not ours at all.
    let torn = seg_path(&d.0, last_seq + 1);
    fs::write(&torn, b"NMS").expect("write");
    let foreign = seg_path(&d.0, last_seq + 2);
    fs::write(&foreign, b"#!/bin/sh\necho not a segment\n").expect("write");
    // A newer format this build cannot read.
    let newer = seg_path(&d.0, last_seq + 3);
    fs::write(&newer, b"NMSDSEG\x09rest").expect("write");

    let mut log = SegmentLog::open(c.clone()).expect("reopen");
    let mut kinds: Vec<_> = log
        .take_damage()
        .into_iter()
        .map(|d| (d.segment, d.kind))
        .collect();
    kinds.sort_by_key(|k| k.0);
    assert_eq!(
        kinds,
        [
            (last_seq + 1, DamageKind::TruncatedHeader),
            (last_seq + 2, DamageKind::BadHeader),
            (last_seq + 3, DamageKind::UnsupportedVersion(9)),
        ]
    );
    assert!(!torn.exists() && !foreign.exists() && !newer.exists());
    append_n(&mut log, 10..12);
    assert_eq!(read_all(&mut log).0, (0..12).collect::<Vec<_>>());
    drop(log);
    // Nothing new to report on the next start.
    let mut log = SegmentLog::open(c).expect("reopen");
    assert!(log.take_damage().is_empty());
}

#[test]
fn a_damaged_length_field_costs_one_record() {
    let d = TempDir::new("length");
    let (c, at) = written_log(&d.0, 10);
    let hit = at[2];
    let path = seg_path(&d.0, hit.segment);
    let mut bytes = fs::read(&path).expect("read");
    // A length far past the end of the file.
    bytes[hit.offset as usize + 7] = 0x01;
    fs::write(&path, &bytes).expect("write");
    let mut log = SegmentLog::open(c).expect("reopen");
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::BadLength);
    assert_eq!(read_all(&mut log).0.len(), 9);
}

#[test]
fn a_corrupt_ack_file_replays_everything_rather_than_lose_anything() {
    let d = TempDir::new("ackfile");
    let (c, _) = written_log(&d.0, 10);
    {
        let mut log = SegmentLog::open(c.clone()).expect("open");
        let mut buf = Vec::new();
        let r = log.read_next(&mut buf).expect("read").expect("a record");
        log.ack(r.end).expect("ack");
    }
    let ack = d.0.join("ack");
    let mut bytes = fs::read(&ack).expect("ack file");
    bytes[10] ^= 1;
    fs::write(&ack, &bytes).expect("write");
    let mut log = SegmentLog::open(c).expect("reopen");
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].kind, DamageKind::AckFileCorrupt);
    assert_eq!(read_all(&mut log).0, (0..10).collect::<Vec<_>>());
}

#[test]
fn damage_after_open_is_skipped_and_reported_once_while_reading() {
    let d = TempDir::new("late");
    let (c, at) = written_log(&d.0, 10);
    let mut log = SegmentLog::open(c).expect("open");
    assert!(log.take_damage().is_empty());
    let hit = at[6];
    let path = seg_path(&d.0, hit.segment);
    let mut bytes = fs::read(&path).expect("read");
    bytes[hit.offset as usize + 20] ^= 0xff;
    fs::write(&path, &bytes).expect("write");
    let (ids, _) = read_all(&mut log);
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 7, 8, 9]);
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].kind, DamageKind::ChecksumMismatch);
    assert_eq!(
        (damage[0].segment, damage[0].offset),
        (hit.segment, hit.offset)
    );
    assert!(log.take_damage().is_empty());
}

#[test]
fn any_truncation_of_any_segment_opens_without_panic() {
    let d = TempDir::new("fuzzcut");
    let (c, at) = written_log(&d.0, 6);
    let path = seg_path(&d.0, at[0].segment);
    let orig = fs::read(&path).expect("read");
    for cut in 0..orig.len() {
        // Leave only the first segment, cut short.
        for p in segment_files(&d.0) {
            fs::remove_file(p).expect("rm");
        }
        let _ = fs::remove_file(d.0.join("ack"));
        fs::write(&path, &orig[..cut]).expect("write");
        let mut log = SegmentLog::open(c.clone()).expect("open");
        let (ids, _) = read_all(&mut log);
        let intact = at
            .iter()
            .filter(|p| p.segment == at[0].segment)
            .zip(0u32..)
            .filter(|(p, i)| p.offset + 12 + payload(*i).len() as u64 <= cut as u64)
            .count();
        assert_eq!(ids.len(), intact, "cut at {cut}");
        let damage = log.take_damage();
        assert!(damage.len() <= 1, "cut at {cut}: {damage:?}");
    }
}

#[test]
fn a_crash_before_the_ack_file_is_written_replays_but_never_loses() {
    let d = TempDir::new("crash-ack");
    let mut c = cfg(&d.0, 400, 1 << 20, WhenFull::Block);
    c.fsync = FsyncPolicy::Every(std::time::Duration::from_millis(1));
    let mut log = SegmentLog::open(c.clone()).expect("open");
    append_n(&mut log, 0..30);
    let mut buf = Vec::new();
    let mut end = None;
    for _ in 0..10 {
        end = log.read_next(&mut buf).expect("read").map(|r| r.end);
    }
    log.ack(end.expect("end")).expect("ack");
    // The timer tick writes the ack file once the interval has passed.
    std::thread::sleep(std::time::Duration::from_millis(5));
    log.sync_if_due().expect("tick");
    for _ in 0..10 {
        end = log.read_next(&mut buf).expect("read").map(|r| r.end);
    }
    log.ack(end.expect("end")).expect("ack");
    // kill -9: no drop, so the second acknowledgement may not have reached the ack file.
    std::mem::forget(log);
    let mut log = SegmentLog::open(c).expect("reopen");
    let (ids, _) = read_all(&mut log);
    assert_eq!(ids.last(), Some(&29), "nothing lost");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {ids:?}"
    );
    let first = ids[0];
    assert!(
        (10..=20).contains(&first),
        "replay starts at {first}: after the persisted ack"
    );
}
