//! `kill -9` of a process in the middle of appending: the next open replays every record that
//! was completely written, in order, and reports at most one torn tail.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nmsd_buffer::{BufferConfig, DamageKind, FsyncPolicy, SegmentLog, WhenFull};

const CHILD_ENV: &str = "NMSD_BUFFER_KILL_CHILD_DIR";

fn cfg(dir: PathBuf) -> BufferConfig {
    BufferConfig {
        dir,
        max_size: 1 << 30,
        segment_size: 1 << 20,
        when_full: WhenFull::Block,
        fsync: FsyncPolicy::Never,
    }
}

/// Record `i`: its number, then filler whose length crosses the one-write/two-write boundary.
fn payload(i: u32) -> Vec<u8> {
    let len = [10usize, 3000, 5000, 20_000][i as usize % 4];
    let mut v = i.to_le_bytes().to_vec();
    v.resize(len, (i % 251) as u8);
    v
}

/// The child: appends until killed.
#[test]
fn child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // only runs as the child of the test below
    };
    let mut log = SegmentLog::open(cfg(PathBuf::from(dir))).expect("child open");
    println!("ready");
    for i in 0.. {
        log.append(&payload(i)).expect("child append");
    }
}

#[test]
fn a_process_killed_mid_append_loses_nothing_it_had_written() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("nmsd-buffer-kill-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let _cleanup = Cleanup(dir.clone());
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_appends_until_killed", "--nocapture"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        // Kill it while it appends, not while it starts (which scans the earlier rounds).
        let out = child.stdout.take().expect("child stdout");
        let ready = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim() == "ready");
        assert!(ready, "the child never got ready");
        std::thread::sleep(Duration::from_millis(20 + 13 * round));
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().expect("reap");

        let mut log = SegmentLog::open(cfg(dir.clone())).expect("open after kill");
        let damage = log.take_damage();
        assert!(damage.len() <= 1, "round {round}: {damage:?}");
        let torn = damage.len();
        for d in damage {
            assert_eq!(d.kind, DamageKind::TornTail, "round {round}: {d}");
        }
        // Every round's child starts again at record 0, in a fresh segment.
        let mut buf = Vec::new();
        let mut expect_next = 0u32;
        let mut n = 0;
        while log.read_next(&mut buf).expect("read").is_some() {
            let id = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if id == 0 {
                expect_next = 0;
            }
            assert_eq!(id, expect_next, "round {round}: in order, nothing missing");
            assert_eq!(buf, payload(id), "round {round}: record {id} intact");
            expect_next += 1;
            n += 1;
        }
        assert!(n > 0, "round {round}: the child wrote nothing");
        eprintln!(
            "round {round}: {n} records, {} bytes, {torn} torn tail",
            log.size_bytes()
        );
    }
}
