//! Log lines on stderr, shaped for where stderr goes: a terminal (colours), a file or a pipe
//! (plain text), or the systemd journal.
//!
//! Under systemd (`JOURNAL_STREAM` names stderr) each line starts with the sd-daemon priority
//! prefix `<N>` (journald strips it and files the line at that priority, so `journalctl -p
//! warning` works) and carries no timestamp of its own: the journal stamps every entry already.
//! `log_format = "json"` writes one JSON object per line for log shippers, with the same prefix
//! rule. Colours only when stderr is a terminal and `NO_COLOR` is unset or empty. Why stderr
//! and a prefix rather than the journal's native protocol: docs/decisions/0015.

use std::ffi::OsStr;
use std::fmt;

use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `[general] log_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-07T17:49:43.123456Z  INFO message key=value`.
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","message":"…","key":"value"}`.
    Json,
}

/// Where stderr goes, as far as log lines care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// stderr is the journal stream systemd connected (`JOURNAL_STREAM`).
    pub journal: bool,
    /// Colours are wanted: a terminal, and `NO_COLOR` unset or empty.
    pub ansi: bool,
}

impl Destination {
    /// Look at this process's stderr and environment.
    pub fn detect() -> Destination {
        let journal = std::env::var_os("JOURNAL_STREAM")
            .is_some_and(|v| journal_stream_is(&v, stderr_device_inode()));
        // SAFETY: isatty only reads the descriptor's state.
        let tty = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        Destination {
            journal,
            ansi: wants_ansi(tty, std::env::var_os("NO_COLOR").as_deref(), journal),
        }
    }
}

/// Colours for a terminal only, never into the journal, and not when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
pub fn wants_ansi(stderr_is_tty: bool, no_color: Option<&OsStr>, journal: bool) -> bool {
    stderr_is_tty && !journal && no_color.is_none_or(OsStr::is_empty)
}

/// The device and inode of stderr, or None when it cannot be examined.
fn stderr_device_inode() -> Option<(u64, u64)> {
    // SAFETY: fstat writes only into `st`, which is large enough for it.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(libc::STDERR_FILENO, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// `JOURNAL_STREAM` is "DEVICE:INODE" (decimal) of the stream systemd connected to stdout and
/// stderr. It is inherited by children and kept when a unit sends stderr elsewhere, so it
/// counts only when it names stderr itself (as sd_journal_stream_fd(3) advises).
pub fn journal_stream_is(value: &OsStr, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(d), Ok(i), Some(actual)) => (d, i) == actual,
        _ => false,
    }
}

/// The sd-daemon priority of a level (syslog's: 3 err, 4 warning, 6 info, 7 debug).
pub fn journal_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Formats each event as one line (or, for a message with line breaks, lines that each carry
/// the priority prefix, so journald files none of them at the default priority).
pub struct LineFormat {
    format: LogFormat,
    journal: bool,
    text: Format<Full, SystemTime>,
    text_untimed: Format<Full, ()>,
}

impl LineFormat {
    pub fn new(format: LogFormat, journal: bool) -> LineFormat {
        let text = Format::default().with_target(false);
        LineFormat {
            format,
            journal,
            text_untimed: text.clone().without_time(),
            text,
        }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Plain text to a terminal or file: tracing's own format, colours as the writer says.
        if self.format == LogFormat::Text && !self.journal {
            return self.text.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        match self.format {
            LogFormat::Text => {
                self.text_untimed
                    .format_event(ctx, Writer::new(&mut line), event)?;
            }
            LogFormat::Json => {
                let timestamp = if self.journal {
                    None
                } else {
                    let mut t = String::new();
                    SystemTime.format_time(&mut Writer::new(&mut t))?;
                    Some(t)
                };
                json_line(event, timestamp, &mut line);
                line.push('\n');
            }
        }
        if !self.journal {
            return writer.write_str(&line);
        }
        let priority = journal_priority(event.metadata().level());
        for l in line.lines() {
            writeln!(writer, "<{priority}>{}", l.trim_start())?;
        }
        Ok(())
    }
}

/// One event as a JSON object: timestamp (unless None), level and message first, then its
/// fields in the order the event has them.
pub fn json_line(event: &Event<'_>, timestamp: Option<String>, out: &mut String) {
    let mut fields = JsonFields(Vec::new());
    event.record(&mut fields);
    let message = fields
        .0
        .iter()
        .position(|(k, _)| k == "message")
        .map(|i| fields.0.remove(i).1)
        .unwrap_or_default();
    let mut object: Vec<(String, serde_json::Value)> = Vec::with_capacity(fields.0.len() + 3);
    if let Some(t) = timestamp {
        object.push(("timestamp".into(), t.into()));
    }
    object.push(("level".into(), event.metadata().level().as_str().into()));
    object.push(("message".into(), message));
    for (k, v) in fields.0 {
        // A field called like one of the keys above keeps its value under another name.
        let key = if object.iter().any(|(o, _)| *o == k) {
            format!("field_{k}")
        } else {
            k
        };
        object.push((key, v));
    }
    out.push('{');
    for (i, (k, v)) in object.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Serialising a string or a JSON value cannot fail.
        out.push_str(&serde_json::Value::from(k.as_str()).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
}

/// An event's fields in their order.
struct JsonFields(Vec<(String, serde_json::Value)>);

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        self.0.push((field.name().to_string(), value));
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers; they go as text.
        let v = serde_json::Number::from_f64(value)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| value.to_string().into());
        self.put(field, v);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

/// Set up logging to stderr. `RUST_LOG` overrides `level`.
pub fn init(level: &str, format: LogFormat) {
    let to = Destination::detect();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(to.ansi)
        .with_writer(std::io::stderr)
        .event_format(LineFormat::new(format, to.journal))
        .try_init();
}

/// The last words of a run that failed, on stderr: under the journal with the error priority,
/// so a failed start is not filed as information.
pub fn fatal(message: &str) {
    if Destination::detect().journal {
        for l in message.lines() {
            eprintln!("<3>{l}");
        }
    } else {
        eprintln!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A writer the tests read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes with this format, destination and colour setting.
    fn output(format: LogFormat, journal: bool, ansi: bool, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(ansi)
            .with_writer(move || sink.clone())
            .event_format(LineFormat::new(format, journal))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("log output is UTF-8")
    }

    fn starts_with_timestamp(line: &str) -> bool {
        let b = line.as_bytes();
        b.len() > 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && line.contains('Z')
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        let out = output(LogFormat::Text, true, false, || {
            tracing::error!(sink = "questdb", "sink down");
            tracing::warn!("SIGHUP ignored");
            tracing::info!(port = 2055, "listening");
            tracing::debug!("detail");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>ERROR sink down sink=\"questdb\"",
                "<4>WARN SIGHUP ignored",
                "<6>INFO listening port=2055",
                "<7>DEBUG detail",
            ],
            "{out}"
        );
    }

    #[test]
    fn every_line_of_a_multi_line_message_has_the_prefix() {
        let out = output(LogFormat::Text, true, false, || {
            tracing::warn!("first\nsecond");
        });
        assert_eq!(out, "<4>WARN first\n<4>second\n");
    }

    #[test]
    fn text_outside_the_journal_has_a_timestamp_and_no_colours() {
        let out = output(LogFormat::Text, false, false, || {
            tracing::warn!(device = "core1", "device down");
        });
        assert!(starts_with_timestamp(&out), "{out}");
        assert!(
            out.ends_with(" WARN device down device=\"core1\"\n"),
            "{out}"
        );
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(!out.starts_with('<'), "{out}");
    }

    #[test]
    fn colours_only_when_asked() {
        let out = output(LogFormat::Text, false, true, || tracing::warn!("x"));
        assert!(out.contains('\x1b'), "{out:?}");
        // Never into the journal, whatever the writer says.
        let out = output(LogFormat::Text, true, true, || tracing::warn!(k = 1, "x"));
        assert!(!out.contains('\x1b'), "{out:?}");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = output(LogFormat::Json, false, false, || {
            tracing::info!(
                config = %"/etc/nmsd/config.toml",
                workers = 2u64,
                drop = -1i64,
                ok = true,
                ratio = 0.5,
                "nmsd \"starting\""
            );
            tracing::warn!(level = "custom", "clash");
        });
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first = &lines[0];
        assert!(
            first["timestamp"]
                .as_str()
                .is_some_and(starts_with_timestamp),
            "{first}"
        );
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "nmsd \"starting\"");
        assert_eq!(first["config"], "/etc/nmsd/config.toml");
        assert_eq!(first["workers"], 2);
        assert_eq!(first["drop"], -1);
        assert_eq!(first["ok"], true);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["field_level"], "custom");
        // The fixed keys first, then the fields in the event's order.
        assert!(
            out.starts_with("{\"timestamp\":\"")
                && out.contains(
                    "\",\"level\":\"INFO\",\"message\":\"nmsd \\\"starting\\\"\",\"config\":"
                ),
            "{out}"
        );
    }

    #[test]
    fn json_in_the_journal_has_the_prefix_and_no_timestamp() {
        let out = output(LogFormat::Json, true, false, || tracing::error!("boom"));
        assert_eq!(out, "<3>{\"level\":\"ERROR\",\"message\":\"boom\"}\n");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        let me = Some((64769, 1234567));
        assert!(journal_stream_is(OsStr::new("64769:1234567"), me));
        assert!(!journal_stream_is(OsStr::new("64769:7654321"), me));
        assert!(!journal_stream_is(OsStr::new("64769:1234567"), None));
        for garbled in ["", ":", "x:1", "1:", "64769", "1:2:3", "-1:5"] {
            assert!(!journal_stream_is(OsStr::new(garbled), me), "{garbled}");
        }
    }

    #[test]
    fn no_color_and_terminals() {
        assert!(wants_ansi(true, None, false));
        assert!(wants_ansi(true, Some(OsStr::new("")), false));
        assert!(!wants_ansi(true, Some(OsStr::new("1")), false));
        assert!(!wants_ansi(false, None, false));
        assert!(!wants_ansi(true, None, true));
    }

    #[test]
    fn priorities_follow_syslog() {
        let got: Vec<u8> = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .iter()
        .map(journal_priority)
        .collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }

    #[test]
    fn log_format_parses_from_config_words() {
        #[derive(Deserialize)]
        struct T {
            f: LogFormat,
        }
        let t: T = toml::from_str("f = \"json\"").expect("json");
        assert_eq!(t.f, LogFormat::Json);
        let t: T = toml::from_str("f = \"text\"").expect("text");
        assert_eq!(t.f, LogFormat::Text);
        assert!(toml::from_str::<T>("f = \"xml\"").is_err());
    }
}
