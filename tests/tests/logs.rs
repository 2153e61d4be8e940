//! nmsd's log lines as an operator's tools see them: under systemd (`JOURNAL_STREAM` naming
//! stderr) every line starts with its journal priority and has no timestamp of its own;
//! `log_format = "json"` writes one JSON object per line; no colour codes in a file.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};

/// The only config text of this file: flows on `flow_port`, the control plane on
/// `control_port`, no sink, and `[general]` with `general` added.
fn config_text(state_dir: &Path, control_port: u16, flow_port: u16, general: &str) -> String {
    format!(
        "[general]\nstate_dir = \"{}\"\nlog_level = \"debug\"\n{general}\n\n\
         [control]\nlisten = \"127.0.0.1:{control_port}\"\n\n\
         [sources.netflow]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{flow_port}\"\nsockets = 1\n\n\
         [processors.rollup]\ntype = \"rollup\"\ninputs = [\"netflow\"]\n",
        state_dir.display()
    )
}

/// Start nmsd with `general` in `[general]`. With `journal`, `JOURNAL_STREAM` names the log
/// file nmsd's stderr goes to, as systemd names the journal's socket; with `Some(wrong)` it
/// names another file (an inherited variable), which must not count.
fn start(name: &str, general: &str, journal: Option<bool>) -> Nmsd {
    let dir = nmsd_acceptance::scratch(name);
    let control_port = nmsd_acceptance::free_tcp_port();
    let flow_port = nmsd_acceptance::free_udp_port();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        config_text(&dir.join("state"), control_port, flow_port, general),
    )
    .expect("write config");
    // Nmsd::launch opens this file again without replacing it: the inode stays.
    let log = dir.join("nmsd.log");
    std::fs::write(&log, "").expect("create log file");
    let other = dir.join("other.log");
    std::fs::write(&other, "").expect("create other file");
    let mut opts = NmsdOptions::default();
    if let Some(right) = journal {
        let named = std::fs::metadata(if right { &log } else { &other }).expect("stat");
        opts.env.push((
            "JOURNAL_STREAM".into(),
            format!("{}:{}", named.dev(), named.ino()),
        ));
    }
    Nmsd::launch(dir, &cfg, control_port, flow_port, &opts)
}

/// SIGHUP (nmsd warns that reload is not implemented), wait for that warning, then stop.
fn warn_and_stop(nmsd: &mut Nmsd) -> String {
    let pid = nmsd.pid().expect("nmsd runs") as libc::pid_t;
    // SAFETY: kill(2) on the child we started.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    let warned = nmsd_acceptance::wait_for(Duration::from_secs(10), || {
        nmsd.log().contains("SIGHUP").then_some(())
    });
    assert!(warned.is_some(), "no SIGHUP warning; log:\n{}", nmsd.log());
    let status = nmsd.stop();
    assert!(status.success(), "exit {status:?}; log:\n{}", nmsd.log());
    nmsd.log()
}

/// An ISO 8601 date-time such as tracing writes ("2026-12-07T17:49:43").
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(19).any(|w| {
        w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b'T'
            && w[13] == b':'
            && w[16] == b':'
            && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
                .iter()
                .all(|&i| w[i].is_ascii_digit())
    })
}

#[test]
fn under_the_journal_lines_have_priorities_and_no_timestamp() {
    let mut nmsd = start("logs-journal", "", Some(true));
    let log = warn_and_stop(&mut nmsd);
    assert!(!log.is_empty());
    for line in log.lines() {
        let priority = line
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "no journal priority prefix: {line:?}\n{log}"
        );
        assert!(!has_timestamp(line), "a second timestamp: {line:?}");
        assert!(!line.contains('\x1b'), "colour codes: {line:?}");
    }
    assert!(
        log.lines().any(|l| l.starts_with("<6>INFO nmsd starting")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4>WARN SIGHUP: config reload is not implemented yet")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.starts_with("<7>DEBUG ")), "{log}");
}

#[test]
fn an_inherited_journal_stream_naming_another_file_is_ignored() {
    let mut nmsd = start("logs-inherited", "", Some(false));
    let log = warn_and_stop(&mut nmsd);
    for line in log.lines() {
        assert!(!line.starts_with('<'), "journal prefix on a file: {line:?}");
        assert!(has_timestamp(line), "no timestamp: {line:?}");
        assert!(!line.contains('\x1b'), "colour codes in a file: {line:?}");
    }
}

#[test]
fn json_format_writes_one_object_per_line() {
    let mut nmsd = start("logs-json", "log_format = \"json\"", None);
    let log = warn_and_stop(&mut nmsd);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}")))
        .collect();
    for l in &lines {
        assert!(l["timestamp"].as_str().is_some_and(has_timestamp), "{l}");
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
    }
    let starting = lines
        .iter()
        .find(|l| l["message"] == "nmsd starting")
        .unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert_eq!(starting["level"], "INFO");
    assert!(
        starting["config"]
            .as_str()
            .is_some_and(|c| c.ends_with("config.toml")),
        "{starting}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP"))),
        "{log}"
    );
}

#[test]
fn json_under_the_journal_has_the_prefix_and_no_timestamp() {
    let mut nmsd = start("logs-json-journal", "log_format = \"json\"", Some(true));
    let log = warn_and_stop(&mut nmsd);
    for line in log.lines() {
        let (prefix, object) = line.split_at(3.min(line.len()));
        assert!(
            matches!(prefix, "<3>" | "<4>" | "<6>" | "<7>"),
            "no journal priority prefix: {line:?}"
        );
        let v: serde_json::Value =
            serde_json::from_str(object).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v.get("timestamp").is_none(), "{line}");
        let level = v["level"].as_str().unwrap_or_default();
        let expected = match level {
            "ERROR" => "<3>",
            "WARN" => "<4>",
            "INFO" => "<6>",
            _ => "<7>",
        };
        assert_eq!(prefix, expected, "{line}");
    }
}
