//! Replies and their absence: a datagram is matched to the request it answers (request id or
//! msgID, source address, community or USM keys), v3 reports are acted on (discovery, clock
//! resynchronisation, credential errors), and a request that times out is retried or fails its
//! job, failing the rest of the poll when the device is plainly not answering.

use std::net::SocketAddr;

use nmsd_parsers::snmp::hex;
use nmsd_parsers::snmp::pdu::{self, AnyPdu, Message, Pdu, error_status};
use nmsd_parsers::snmp::v3::{
    ReportKind, ScopedData, V3Message, classify_report, decode_decrypted, decode_scoped,
};
use nmsd_parsers::snmp::{PduKind, Version};

use super::plan::Credentials;
use super::poll::{Absorbed, JobKind, JobState, Poll};
use super::transport::{self, V3State};
use super::{Engine, Outstanding, schedule};

impl Engine {
    pub(super) fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        match pdu::peek_version(data) {
            Ok(Version::V3) => self.on_v3(data, from),
            Ok(_) => self.on_community(data, from),
            Err(_) => self.metrics.dropped_decode.increment(1),
        }
    }

    /// Find and check the request a reply answers.
    fn claim(&mut self, id: i32, from: SocketAddr) -> Option<Outstanding> {
        let Some(o) = self.outstanding.get(&id).copied() else {
            self.metrics.dropped_late.increment(1);
            return None;
        };
        let expected = self.devices[o.device].spec.addr;
        if !transport::from_device(expected, from) {
            self.metrics.dropped_source.increment(1);
            return None;
        }
        Some(o)
    }

    fn on_community(&mut self, data: &[u8], from: SocketAddr) {
        let Ok(m) = Message::decode(data) else {
            self.metrics.dropped_decode.increment(1);
            return;
        };
        let AnyPdu::Standard(p) = m.pdu else {
            self.metrics.dropped_decode.increment(1);
            return;
        };
        let Some(o) = self.claim(p.request_id, from) else {
            return;
        };
        if let Credentials::V2c { community } = &self.devices[o.device].spec.credentials
            && community.as_slice() != m.community
        {
            self.metrics.dropped_source.increment(1);
            return;
        }
        self.outstanding.remove(&p.request_id);
        self.on_response(o, &p);
    }

    fn on_v3(&mut self, data: &[u8], from: SocketAddr) {
        let Ok(m) = V3Message::decode(data) else {
            self.metrics.dropped_decode.increment(1);
            return;
        };
        let Some(o) = self.claim(m.msg_id, from) else {
            return;
        };
        let d = o.device;
        // Authenticated messages must verify with this device's keys.
        let keys = self.devices[d].v3.as_ref().and_then(|s| s.keys.as_ref());
        if m.is_authenticated() {
            match keys {
                Some(k)
                    if m.auth_params.len() == k.auth.mac_len() && k.verify(data, m.auth_offset) => {
                }
                _ => {
                    self.metrics.dropped_auth.increment(1);
                    return;
                }
            }
        }
        // Track the agent's clock from authenticated messages and discovery reports.
        let boots_changed = self.devices[d]
            .v3
            .as_ref()
            .is_some_and(|s| s.boots != m.engine_boots);
        let plain: Vec<u8>;
        let scoped = match m.data {
            ScopedData::Plain(sp) => decode_scoped(sp),
            ScopedData::Encrypted(ct) => {
                let Some(k) = keys else {
                    self.metrics.dropped_auth.increment(1);
                    return;
                };
                let mut buf = ct.to_vec();
                if k.decrypt(&mut buf, m.engine_boots, m.engine_time, m.priv_params)
                    .is_err()
                {
                    self.metrics.dropped_decode.increment(1);
                    return;
                }
                plain = buf;
                decode_decrypted(&plain)
            }
        };
        let Ok(scoped) = scoped else {
            self.metrics.dropped_decode.increment(1);
            return;
        };
        let AnyPdu::Standard(p) = scoped.pdu else {
            self.metrics.dropped_decode.increment(1);
            return;
        };
        self.outstanding.remove(&m.msg_id);
        if p.kind == PduKind::Report {
            let kind = classify_report(&p);
            metrics::counter!("nmsd_snmp_usm_reports_total", "report" => kind.label()).increment(1);
            self.on_report(o, kind, &m);
            return;
        }
        if m.is_authenticated() {
            let dev = &mut self.devices[d];
            if boots_changed {
                // Agent restart: rates must not span it.
                dev.rates.reset();
            }
            if let Some(s) = dev.v3.as_mut() {
                s.sync(m.engine_boots, m.engine_time, self.clock.now());
            }
        }
        self.on_response(o, &p);
    }

    fn on_report(&mut self, o: Outstanding, kind: ReportKind, m: &V3Message<'_>) {
        let d = o.device;
        let is_discovery = self.devices[d]
            .poll
            .as_ref()
            .and_then(|p| p.jobs.get(o.job))
            .is_some_and(|j| j.kind == JobKind::Discover);
        match kind {
            ReportKind::UnknownEngineId if is_discovery => {
                let keys = match &self.devices[d].spec.credentials {
                    Credentials::V3 { keys, .. } => keys.as_ref().map(|k| k.localize(m.engine_id)),
                    Credentials::V2c { .. } => None,
                };
                self.devices[d].v3 = Some(V3State {
                    engine_id: m.engine_id.to_vec(),
                    boots: m.engine_boots,
                    time: m.engine_time,
                    synced: self.clock.now(),
                    keys,
                });
                self.devices[d].status.engine_id = Some(hex(m.engine_id));
                self.devices[d].status.engine_boots = Some(m.engine_boots);
                self.complete_job(d, o.job);
            }
            ReportKind::NotInTimeWindow | ReportKind::UnknownEngineId => {
                // Resynchronise from the report and resend once; a second one is an error.
                let resynced = self.devices[d]
                    .poll
                    .as_ref()
                    .and_then(|p| p.jobs.get(o.job))
                    .is_some_and(|j| j.resynced);
                if let Some(s) = self.devices[d].v3.as_mut()
                    && m.is_authenticated()
                {
                    s.sync(m.engine_boots, m.engine_time, self.clock.now());
                }
                if !resynced {
                    if let Some(p) = self.devices[d].poll.as_mut() {
                        p.jobs[o.job].resynced = true;
                    }
                    let id = self.alloc_id();
                    self.send(d, o.job, id, 0);
                    return;
                }
                self.fail_job(
                    d,
                    o.job,
                    kind.label(),
                    "the agent keeps reporting a time-window problem".into(),
                );
                self.release(d);
            }
            _ => {
                let msg = report_message(kind, &self.devices[d].spec.credentials);
                self.fail_job(d, o.job, kind.label(), msg);
                self.release(d);
            }
        }
    }

    fn on_response(&mut self, o: Outstanding, p: &Pdu<'_>) {
        let d = o.device;
        self.metrics.responses.increment(1);
        let rtt = self.clock.now().saturating_duration_since(o.sent_at);
        let Some(poll) = self.devices[d].poll.as_mut() else {
            return;
        };
        if poll.generation != o.generation {
            return;
        }
        poll.rtt_sum += rtt;
        poll.rtt_n += 1;
        let n = p.varbinds().count() as u32;
        poll.varbinds += n;
        self.metrics.varbinds.increment(n as u64);
        let absorbed = if p.error_status != error_status::NO_ERROR {
            poll.agent_error(o.job, p)
        } else {
            poll.absorb(o.job, p, &self.custom)
        };
        match absorbed {
            Absorbed::Done => self.complete_job(d, o.job),
            Absorbed::NextPage => {
                // Next page of the same walk, under a fresh id.
                let id = self.alloc_id();
                self.send(d, o.job, id, 0);
            }
            Absorbed::Failed(kind, message) => {
                self.fail_job(d, o.job, kind, message);
                self.release(d);
            }
            Absorbed::Ignored => {}
        }
    }

    fn complete_job(&mut self, d: usize, job: usize) {
        if let Some(p) = self.devices[d].poll.as_mut() {
            if let Some(j) = p.jobs.get_mut(job) {
                j.state = JobState::Done;
            }
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        self.pump(d);
        self.release(d);
    }

    pub(super) fn on_deadline(&mut self, id: i32, attempt: u32) {
        let Some(o) = self.outstanding.get(&id).copied() else {
            return;
        };
        if o.attempt != attempt {
            return;
        }
        let d = o.device;
        self.metrics.timeouts.increment(1);
        self.devices[d].status.timeouts += 1;
        // A probe is one request: the device already failed a whole poll.
        let probing = self.devices[d].poll.as_ref().is_some_and(Poll::probing);
        let retries = schedule::retries_for(probing, self.devices[d].spec.retries);
        if let Some(p) = self.devices[d].poll.as_mut() {
            p.timeouts += 1;
        }
        if attempt < retries
            && self.devices[d]
                .poll
                .as_ref()
                .is_some_and(|p| p.generation == o.generation)
        {
            self.metrics.retries.increment(1);
            self.outstanding.remove(&id);
            // v2c resends the same id, so a late answer to any attempt completes the request;
            // v3 re-encodes (fresh time and salt) under the same msgID.
            self.send(d, o.job, id, attempt + 1);
            return;
        }
        self.outstanding.remove(&id);
        self.metrics.in_flight.set(self.outstanding.len() as f64);
        let discovery = self.devices[d].poll.as_ref().is_some_and(|p| {
            p.jobs
                .get(o.job)
                .is_some_and(|j| j.kind == JobKind::Discover)
        });
        let spec = &self.devices[d].spec;
        let (kind, message) = timeout_error(&spec.credentials, spec.addr, discovery, attempt + 1);
        self.fail_job(d, o.job, kind, message);
        self.release(d);
    }

    pub(super) fn on_poll_deadline(&mut self, d: usize, generation: u64) {
        if self.devices[d]
            .poll
            .as_ref()
            .is_none_or(|p| p.generation != generation)
        {
            return;
        }
        // Cancel what is still out for this device.
        self.outstanding.retain(|_, o| o.device != d);
        if let Some(p) = self.devices[d].poll.as_mut() {
            for j in &mut p.jobs {
                if matches!(j.state, JobState::Pending | JobState::Running) {
                    j.state = JobState::Failed;
                }
            }
            p.in_flight = 0;
            p.error.get_or_insert((
                "poll_timeout",
                "the poll did not finish within its interval".into(),
            ));
        }
        self.maybe_finish(d);
        self.release(d);
    }

    fn fail_job(&mut self, d: usize, job: usize, kind: &'static str, message: String) {
        if let Some(p) = self.devices[d].poll.as_mut() {
            if let Some(j) = p.jobs.get_mut(job) {
                j.state = JobState::Failed;
            }
            p.in_flight = p.in_flight.saturating_sub(1);
            p.error.get_or_insert((kind, message));
            if fails_the_poll(kind, p.answered()) {
                for j in &mut p.jobs {
                    if j.state == JobState::Pending {
                        j.state = JobState::Failed;
                    }
                }
            }
        }
        self.pump(d);
    }
}

/// The error of a request that got no answer after `attempts` attempts, with a hint at the
/// likely causes: what silence means depends on the version and on how far the poll got.
fn timeout_error(
    credentials: &Credentials,
    addr: SocketAddr,
    discovery: bool,
    attempts: u32,
) -> (&'static str, String) {
    let kind = if discovery {
        "discovery_timeout"
    } else {
        "timeout"
    };
    let hint = match credentials {
        Credentials::V2c { .. } => {
            " (host down, ACL, or wrong community: agents do not answer a wrong community)"
        }
        Credentials::V3 { .. } if kind == "timeout" => {
            " (discovery worked, so the agent is up: check the privacy password and protocol)"
        }
        Credentials::V3 { .. } => " (host down or ACL)",
    };
    (
        kind,
        format!("no response from {addr} after {attempts} attempts{hint}"),
    )
}

/// Whether a job failing with `kind` fails the jobs still pending. A failed discovery or a
/// credential problem does; so does a timeout before anything in this poll was answered (the
/// device is not answering: each pending job would only wait out its own retries).
fn fails_the_poll(kind: &str, answered: bool) -> bool {
    matches!(
        kind,
        "discovery_timeout"
            | "wrong_digest"
            | "unknown_user"
            | "unsupported_sec_level"
            | "decryption_error"
    ) || (kind == "timeout" && !answered)
}

/// What a USM error report means, for the operator.
fn report_message(kind: ReportKind, credentials: &Credentials) -> String {
    let user = match credentials {
        Credentials::V3 { user, .. } => String::from_utf8_lossy(user).into_owned(),
        Credentials::V2c { .. } => String::new(),
    };
    match kind {
        ReportKind::WrongDigest => {
            format!("wrong authentication password or protocol for user {user}")
        }
        ReportKind::UnknownUserName => format!("the agent has no user {user}"),
        ReportKind::UnsupportedSecLevel => {
            format!("security level not allowed for user {user}")
        }
        ReportKind::DecryptionError => format!(
            "the agent could not decrypt: privacy password or protocol wrong for user {user}"
        ),
        other => format!("agent reported {}", other.label()),
    }
}
