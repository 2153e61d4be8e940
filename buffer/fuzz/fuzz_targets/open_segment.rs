//! A segment file of arbitrary bytes (after a valid header, half the time) and an arbitrary ack
//! file: opening never fails or panics, every record read back is intact, appending after it
//! works and a second open reports nothing new in what the first one accepted.
#![no_main]

use std::fs;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use nmsd_buffer::{BufferConfig, FsyncPolicy, SegmentLog, WhenFull};

fn dir() -> PathBuf {
    // tmpfs when there is one: this target is about parsing, not the disk.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("nmsd-buffer-fuzz-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let d = dir();
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("dir");
    let mut seg = Vec::new();
    if mode & 1 == 0 {
        seg.extend_from_slice(b"NMSDSEG\x01");
    }
    let (ack, body) = if mode & 2 == 0 && rest.len() >= 28 {
        (Some(&rest[..28]), &rest[28..])
    } else {
        (None, rest)
    };
    seg.extend_from_slice(body);
    fs::write(d.join("0000000000000000.seg"), &seg).expect("segment");
    if let Some(a) = ack {
        fs::write(d.join("ack"), a).expect("ack");
    }
    let cfg = BufferConfig {
        dir: d.clone(),
        max_size: 1 << 20,
        segment_size: 64 << 10,
        when_full: WhenFull::DropOldest,
        fsync: FsyncPolicy::Never,
    };
    let mut log = SegmentLog::open(cfg.clone()).expect("open never fails on bad bytes");
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(r) = log.read_next(&mut buf).expect("read") {
        assert!(r.end > r.at);
        n += 1;
    }
    log.append(b"after").expect("append");
    assert!(log.read_next(&mut buf).expect("read").is_some());
    assert_eq!(buf, b"after");
    drop(log);
    let mut log = SegmentLog::open(cfg).expect("reopen");
    let mut m = 0;
    while log.read_next(&mut buf).expect("read").is_some() {
        m += 1;
    }
    assert!(m >= n, "the second open lost records: {m} < {n}");
    let _ = fs::remove_dir_all(&d);
});
