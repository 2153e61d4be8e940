//! Device health as `/api/v1/devices` and `/metrics` show it, and how one finished poll moves a
//! device between states (new → up / failing → down → up), with one journal line per change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use nmsd_pipeline::snmp::InterfaceRow;

use super::plan::DeviceSpec;

/// What a tag's QuestDB column name starts with (`site` → `tag_site`).
pub const TAG_PREFIX: &str = "tag_";

/// Failed polls in a row after which a device is "down" rather than "failing".
const DOWN_AFTER_FAILURES: u32 = 3;

/// Health of one device, as `/api/v1/devices` shows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DeviceStatus {
    pub name: String,
    pub address: String,
    pub version: &'static str,
    /// Operator tags from config.
    pub tags: BTreeMap<String, String>,
    pub state: &'static str,
    pub last_success_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub last_error: Option<ErrorStatus>,
    pub rtt_ms_last: Option<f64>,
    pub rtt_ms_ewma: Option<f64>,
    pub poll_ms: Option<u32>,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub polls_overrun: u64,
    pub requests: u64,
    pub timeouts: u64,
    pub sys_name: Option<String>,
    pub sys_uptime_ticks: Option<u32>,
    pub engine_id: Option<String>,
    pub engine_boots: Option<u32>,
    pub interfaces: u32,
    /// Latest rates per interface, kept only for devices with `prometheus = true`.
    #[serde(skip)]
    pub gauges: Vec<IfGauges>,
}

/// One interface's latest values, for /metrics.
#[derive(Clone, Debug, Default)]
pub struct IfGauges {
    pub if_index: u32,
    pub if_name: Option<Arc<str>>,
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
    pub in_util: Option<f64>,
    pub out_util: Option<f64>,
    pub oper_up: Option<bool>,
}

impl IfGauges {
    fn of(r: &InterfaceRow) -> Self {
        IfGauges {
            if_index: r.if_index,
            if_name: r.if_name.clone(),
            in_bps: r.in_bps,
            out_bps: r.out_bps,
            in_util: r.in_util,
            out_util: r.out_util,
            oper_up: r.oper_status.map(|s| s == 1),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ErrorStatus {
    pub at_ms: u64,
    pub kind: &'static str,
    pub message: String,
}

/// Shared, read by the control plane; written once per finished poll.
pub type StatusBoard = Arc<Mutex<Vec<DeviceStatus>>>;

impl DeviceStatus {
    /// The status of a configured device that was never polled.
    pub(super) fn new_device(spec: &DeviceSpec) -> Self {
        DeviceStatus {
            name: spec.name.to_string(),
            address: spec.addr.to_string(),
            version: spec.credentials.version_label(),
            tags: spec
                .tags
                .iter()
                .map(|(k, v)| {
                    let k = k.strip_prefix(TAG_PREFIX).unwrap_or(k);
                    (k.to_string(), v.to_string())
                })
                .collect(),
            state: "new",
            ..DeviceStatus::default()
        }
    }

    /// Take in a finished poll: its state, counters, last error, round-trip times and what it
    /// learned about the agent. `gauges` is `Some` when the device's interface rates go to
    /// /metrics and the interface walks succeeded.
    pub(super) fn record_poll(&mut self, device: &str, poll: &PollSummary<'_>, now_ms: u64) {
        log_transition(device, self, poll.error);
        if let Some((kind, msg)) = poll.error {
            self.consecutive_failures += 1;
            self.polls_failed += 1;
            self.state = if self.consecutive_failures >= DOWN_AFTER_FAILURES {
                "down"
            } else {
                "failing"
            };
            self.last_error = Some(ErrorStatus {
                at_ms: now_ms,
                kind,
                message: msg.clone(),
            });
        } else {
            self.state = "up";
            self.last_success_ms = Some(now_ms);
            self.consecutive_failures = 0;
            self.polls_ok += 1;
        }
        self.poll_ms = Some(poll.poll_ms);
        if let Some(r) = poll.rtt_ms {
            self.rtt_ms_last = Some(r);
            self.rtt_ms_ewma = Some(self.rtt_ms_ewma.map_or(r, |e| 0.8 * e + 0.2 * r));
        }
        if poll.sys_name.is_some() {
            self.sys_name = poll.sys_name.map(str::to_string);
        }
        self.sys_uptime_ticks = poll.sys_uptime_ticks.or(self.sys_uptime_ticks);
        self.interfaces = poll.interfaces.len() as u32;
        if let Some(gauges) = poll.gauges {
            self.gauges = gauges.iter().map(IfGauges::of).collect();
        }
        if poll.engine_boots.is_some() {
            self.engine_boots = poll.engine_boots;
        }
    }
}

/// What a finished poll tells a device's status.
pub(super) struct PollSummary<'a> {
    /// The poll's first error (kind, message); `None` when it succeeded.
    pub error: Option<&'a (&'static str, String)>,
    pub poll_ms: u32,
    pub rtt_ms: Option<f64>,
    pub sys_name: Option<&'a str>,
    pub sys_uptime_ticks: Option<u32>,
    pub interfaces: &'a [InterfaceRow],
    /// The interface rows to keep for /metrics, if the device exports them.
    pub gauges: Option<&'a [InterfaceRow]>,
    pub engine_boots: Option<u32>,
}

/// Error kinds that mean the agent answered but refused nmsd's credentials: a configuration
/// problem to report at once, not after the device has failed for three polls.
const AUTH_ERRORS: &[&str] = &[
    "wrong_digest",
    "unknown_user",
    "unsupported_sec_level",
    "decryption_error",
];

/// The journal line a finished poll is worth (before `st` is updated with it), if any. One
/// line per change an operator acts on, never one per poll: the first answer, going down (the
/// third failed poll in a row), failing authentication (at once), the reason changing while
/// down, and coming back after either. A single failed poll between answers is not a change
/// (it shows in /api/v1/devices and the metrics), so a flaky link does not fill the journal;
/// a device can log at most one line per poll interval, which is at least 5 s.
fn transition(
    st: &DeviceStatus,
    error: Option<&(&'static str, String)>,
) -> Option<(tracing::Level, String)> {
    use tracing::Level;
    let failures = st.consecutive_failures;
    let last_kind = st.last_error.as_ref().map(|e| e.kind);
    let was_auth = failures > 0 && last_kind.is_some_and(|k| AUTH_ERRORS.contains(&k));
    let was_down = failures >= DOWN_AFTER_FAILURES;
    match error {
        None if st.state == "new" => Some((Level::INFO, "SNMP device answering".into())),
        None if was_down || was_auth => Some((
            Level::INFO,
            format!("SNMP device up again after {failures} failed polls"),
        )),
        None => None,
        Some((kind, message)) if AUTH_ERRORS.contains(kind) => {
            (last_kind != Some(*kind) || failures == 0).then(|| {
                (
                    Level::WARN,
                    format!("SNMP device failing authentication ({kind}): {message}"),
                )
            })
        }
        Some((kind, message)) => {
            if failures + 1 == DOWN_AFTER_FAILURES && !was_auth {
                Some((
                    Level::WARN,
                    format!(
                        "SNMP device down ({DOWN_AFTER_FAILURES} failed polls in a row; a device \
                         that does not answer is probed with one request per interval): \
                         {kind}: {message}"
                    ),
                ))
            } else if (was_down || was_auth) && last_kind != Some(*kind) {
                Some((
                    Level::WARN,
                    format!("SNMP device still down, now {kind}: {message}"),
                ))
            } else {
                None
            }
        }
    }
}

fn log_transition(device: &str, st: &DeviceStatus, error: Option<&(&'static str, String)>) {
    let kind = error.map(|e| e.0);
    match transition(st, error) {
        Some((tracing::Level::INFO, line)) => tracing::info!(device, "{line}"),
        Some((_, line)) => tracing::warn!(device, kind, "{line}"),
        None => tracing::debug!(device, kind, "SNMP poll finished without a state change"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary<'a>(error: Option<&'a (&'static str, String)>) -> PollSummary<'a> {
        PollSummary {
            error,
            poll_ms: 12,
            rtt_ms: Some(2.0),
            sys_name: None,
            sys_uptime_ticks: None,
            interfaces: &[],
            gauges: None,
            engine_boots: None,
        }
    }

    #[test]
    fn three_failures_in_a_row_are_down_and_one_answer_is_up() {
        let mut st = DeviceStatus {
            state: "new",
            ..Default::default()
        };
        let timeout = ("timeout", "no response".to_string());
        st.record_poll("r1", &summary(Some(&timeout)), 1_000);
        assert_eq!((st.state, st.consecutive_failures), ("failing", 1));
        st.record_poll("r1", &summary(Some(&timeout)), 2_000);
        assert_eq!(st.state, "failing");
        st.record_poll("r1", &summary(Some(&timeout)), 3_000);
        assert_eq!((st.state, st.consecutive_failures), ("down", 3));
        let err = st.last_error.as_ref().map(|e| (e.at_ms, e.kind));
        assert_eq!(err, Some((3_000, "timeout")));
        assert_eq!(st.last_success_ms, None);
        st.record_poll("r1", &summary(None), 4_000);
        assert_eq!((st.state, st.consecutive_failures), ("up", 0));
        assert_eq!((st.polls_ok, st.polls_failed), (1, 3));
        assert_eq!(st.last_success_ms, Some(4_000));
        assert!(
            st.last_error.is_some(),
            "the last error stays for the operator"
        );
    }

    /// The journal lines a sequence of polls gives (None: a successful poll).
    fn lines(polls: &[Option<&'static str>]) -> Vec<String> {
        let mut st = DeviceStatus {
            state: "new",
            ..Default::default()
        };
        let mut out = Vec::new();
        for (i, p) in polls.iter().enumerate() {
            let error = p.map(|k| (k, format!("{k} happened")));
            if let Some((_, line)) = transition(&st, error.as_ref()) {
                out.push(line);
            }
            st.record_poll("r1", &summary(error.as_ref()), i as u64);
        }
        out
    }

    #[test]
    fn each_change_is_one_line_and_a_single_failed_poll_is_none() {
        let t = Some("timeout");
        let auth = Some("wrong_digest");
        // First answer; one lost poll (no line); down at the third; still down (no line); back.
        let l = lines(&[None, t, None, t, t, t, t, t, None, None]);
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(l[0].contains("answering"), "{l:?}");
        assert!(
            l[1].contains("down") && l[1].contains("timeout happened"),
            "{l:?}"
        );
        assert!(l[2].contains("up again after 5 failed polls"), "{l:?}");
        // Wrong credentials: said at once, once, and not again as "down"; then fixed.
        let l = lines(&[auth, auth, auth, auth, None]);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(
            l[0].contains("failing authentication (wrong_digest)"),
            "{l:?}"
        );
        assert!(l[1].contains("up again"), "{l:?}");
        // Down, then the reason changes: one more line.
        let l = lines(&[
            None,
            t,
            t,
            t,
            Some("discovery_timeout"),
            Some("discovery_timeout"),
        ]);
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(l[2].contains("still down, now discovery_timeout"), "{l:?}");
    }

    #[test]
    fn round_trip_time_is_smoothed_and_known_facts_are_kept() {
        let mut st = DeviceStatus::default();
        let mut s = summary(None);
        s.sys_name = Some("core1");
        s.sys_uptime_ticks = Some(500);
        s.engine_boots = Some(7);
        st.record_poll("r1", &s, 1);
        assert_eq!((st.rtt_ms_last, st.rtt_ms_ewma), (Some(2.0), Some(2.0)));
        let mut s = summary(None);
        s.rtt_ms = Some(12.0);
        st.record_poll("r1", &s, 2);
        assert_eq!(st.rtt_ms_last, Some(12.0));
        assert_eq!(st.rtt_ms_ewma, Some(0.8 * 2.0 + 0.2 * 12.0));
        // A poll without the system group or a v3 engine does not forget them.
        assert_eq!(st.sys_name.as_deref(), Some("core1"));
        assert_eq!(st.sys_uptime_ticks, Some(500));
        assert_eq!(st.engine_boots, Some(7));
        // No answer at all: the round-trip times stay as they were.
        let mut s = summary(None);
        s.rtt_ms = None;
        st.record_poll("r1", &s, 3);
        assert_eq!(st.rtt_ms_last, Some(12.0));
    }
}
