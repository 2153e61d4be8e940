//! One poll of one device: the requests it is made of (jobs), their states, and what their
//! responses collect (system group, interface rows, LLDP, CDP, user-defined values) until the
//! poll finishes and [`super::rows`] turns it into rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nmsd_parsers::snmp::pdu::{Pdu, error_status};
use nmsd_parsers::snmp::{Oid, OidRef, Value};

use super::cdp::CdpCache;
use super::lldp::LldpBuild;
use super::plan::{CustomModule, DeviceSpec};
use super::rows::{CustomPolled, custom_cell};
use super::walk::{IfRowBuild, IfTable, Walk, WalkError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobKind {
    /// SNMPv3 engine discovery (the agent's engine ID, boots and time).
    Discover,
    /// GET of the system group.
    System,
    Walk(IfTable),
    /// GET of lldpLocChassisId.0 and lldpLocSysName.0.
    LldpLocal,
    /// GET of a user-defined module's scalars.
    CustomGet(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

/// One request of a poll (a walk: one request after another, page by page).
#[derive(Debug)]
pub(super) struct Job {
    pub kind: JobKind,
    pub state: JobState,
    pub walk: Option<Walk>,
    /// A notInTimeWindow resend already happened for the current request.
    pub resynced: bool,
}

impl Job {
    fn new(kind: JobKind, walk: Option<Walk>) -> Self {
        Job {
            kind,
            state: JobState::Pending,
            walk,
            resynced: false,
        }
    }

    fn walk(table: IfTable, c32: bool) -> Self {
        Job::new(JobKind::Walk(table), Some(Walk::new(table, c32)))
    }
}

/// The jobs of a device's poll, in the order they start: v3 discovery first (when the
/// agent's engine is not known yet; nothing else goes out before it finishes), then the
/// system group, user-defined modules, LLDP, CDP and the IF-MIB walks. `c32`: the agent has
/// no HC counters, so the ifTable walk asks for the 32-bit ones.
pub(super) fn jobs_for(
    spec: &DeviceSpec,
    custom: &[CustomModule],
    discover: bool,
    c32: bool,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    if discover {
        jobs.push(Job::new(JobKind::Discover, None));
    }
    if spec.modules.system {
        jobs.push(Job::new(JobKind::System, None));
    }
    for &mi in &spec.custom {
        let Some(m) = custom.get(mi) else {
            continue;
        };
        if !m.scalars.is_empty() {
            jobs.push(Job::new(JobKind::CustomGet(mi as u16), None));
        }
        for (ti, t) in m.tables.iter().enumerate() {
            let table = IfTable::Custom(mi as u16, ti as u16);
            let bases: Vec<Oid> = t.columns.iter().map(|c| c.oid.clone()).collect();
            jobs.push(Job::new(
                JobKind::Walk(table),
                Some(Walk::columns(table, &bases)),
            ));
        }
    }
    if spec.modules.lldp {
        jobs.push(Job::new(JobKind::LldpLocal, None));
        jobs.push(Job::walk(IfTable::LldpLocPort, false));
        jobs.push(Job::walk(IfTable::LldpRem, false));
    }
    if spec.modules.cdp {
        // Agents without CISCO-CDP-MIB end this walk at once, silently.
        jobs.push(Job::walk(IfTable::CdpCache, false));
    }
    if spec.modules.interfaces {
        jobs.push(Job::walk(IfTable::If, c32));
        jobs.push(Job::walk(IfTable::IfX, false));
    }
    jobs
}

/// The system group (1.3.6.1.2.1.1).
#[derive(Debug, Default)]
pub(super) struct SysInfo {
    pub descr: Option<String>,
    pub object_id: Option<String>,
    pub uptime: Option<u32>,
    pub contact: Option<String>,
    pub name: Option<String>,
    pub location: Option<String>,
}

impl SysInfo {
    /// A varbind of the system group's GET; anything else is ignored.
    fn take(&mut self, oid: OidRef<'_>, v: Value<'_>) {
        let arcs: Vec<u32> = oid.arcs().collect();
        match arcs.as_slice() {
            [1, 3, 6, 1, 2, 1, 1, 1, 0] => self.descr = v.as_text().map(|t| t.into_owned()),
            [1, 3, 6, 1, 2, 1, 1, 2, 0] => {
                self.object_id = match v {
                    Value::ObjectId(o) => Some(o.to_string()),
                    _ => None,
                }
            }
            [1, 3, 6, 1, 2, 1, 1, 3, 0] => {
                self.uptime = match v {
                    Value::TimeTicks(t) => Some(t),
                    _ => None,
                }
            }
            [1, 3, 6, 1, 2, 1, 1, 4, 0] => self.contact = v.as_text().map(|t| t.into_owned()),
            [1, 3, 6, 1, 2, 1, 1, 5, 0] => self.name = v.as_text().map(|t| t.into_owned()),
            [1, 3, 6, 1, 2, 1, 1, 6, 0] => self.location = v.as_text().map(|t| t.into_owned()),
            _ => {}
        }
    }
}

/// What a job's response did to the job.
#[derive(Debug, PartialEq)]
pub(super) enum Absorbed {
    /// The job is done.
    Done,
    /// A walk goes on: send its next page.
    NextPage,
    /// The job failed: (error kind, message).
    Failed(&'static str, String),
    /// Nothing to do (a walk job without a walk).
    Ignored,
}

#[derive(Debug)]
pub(super) struct Poll {
    /// The wall-clock slot (Unix ms) this poll was started for: every row's timestamp.
    pub slot_ms: u64,
    pub started: Instant,
    pub jobs: Vec<Job>,
    pub in_flight: u32,
    pub sys: SysInfo,
    pub rows: BTreeMap<u32, IfRowBuild>,
    pub requests: u32,
    pub timeouts: u32,
    pub varbinds: u32,
    pub rtt_sum: Duration,
    pub rtt_n: u32,
    /// The first error of the poll: (kind, message).
    pub error: Option<(&'static str, String)>,
    pub generation: u64,
    /// The device did not answer its last poll: send one request, without retries, until
    /// something answers (then the poll goes on as usual).
    pub probe: bool,
    pub lldp: LldpBuild,
    /// CISCO-CDP-MIB cdpCacheTable rows.
    pub cdp: CdpCache,
    /// What the user-defined modules' requests collected.
    pub custom: CustomPolled,
}

impl Poll {
    pub(super) fn new(
        slot_ms: u64,
        started: Instant,
        jobs: Vec<Job>,
        generation: u64,
        probe: bool,
    ) -> Self {
        Poll {
            slot_ms,
            started,
            jobs,
            in_flight: 0,
            sys: SysInfo::default(),
            rows: BTreeMap::new(),
            requests: 0,
            timeouts: 0,
            varbinds: 0,
            rtt_sum: Duration::ZERO,
            rtt_n: 0,
            error: None,
            generation,
            probe,
            lldp: LldpBuild::default(),
            cdp: CdpCache::default(),
            custom: CustomPolled::default(),
        }
    }

    /// Anything in this poll was answered.
    pub(super) fn answered(&self) -> bool {
        self.rtt_n > 0 || self.jobs.iter().any(|j| j.state == JobState::Done)
    }

    /// Still probing: nothing answered yet in a poll of a device that did not answer.
    pub(super) fn probing(&self) -> bool {
        self.probe && !self.answered()
    }

    /// Every job is done or failed.
    pub(super) fn is_over(&self) -> bool {
        self.jobs
            .iter()
            .all(|j| matches!(j.state, JobState::Done | JobState::Failed))
    }

    /// Every job of these kinds succeeded (true when there is none).
    fn all_done(&self, mut kinds: impl FnMut(JobKind) -> bool) -> bool {
        self.jobs
            .iter()
            .filter(|j| kinds(j.kind))
            .all(|j| j.state == JobState::Done)
    }

    /// Both IF-MIB walks succeeded: the interface rows are whole.
    pub(super) fn if_walks_ok(&self) -> bool {
        self.all_done(|k| matches!(k, JobKind::Walk(IfTable::If | IfTable::IfX)))
    }

    /// Every LLDP-MIB request succeeded.
    pub(super) fn lldp_ok(&self) -> bool {
        self.all_done(|k| {
            matches!(
                k,
                JobKind::LldpLocal
                    | JobKind::Walk(IfTable::LldpLocPort)
                    | JobKind::Walk(IfTable::LldpRem)
            )
        })
    }

    /// The CDP walk succeeded.
    pub(super) fn cdp_ok(&self) -> bool {
        self.all_done(|k| k == JobKind::Walk(IfTable::CdpCache))
    }

    /// The agent answered `job` with an error status.
    pub(super) fn agent_error(&mut self, job: usize, p: &Pdu<'_>) -> Absorbed {
        let walk = self.jobs.get_mut(job).and_then(|j| j.walk.as_mut());
        match (walk, p.error_status) {
            // tooBig at the smallest request, or noSuchName (v1 semantics): end the walk.
            (Some(w), error_status::TOO_BIG | error_status::NO_SUCH_NAME) => {
                w.abandon();
                Absorbed::Done
            }
            _ => Absorbed::Failed(
                "agent_error",
                format!(
                    "agent returned {} ({}) for varbind {}",
                    error_status::name(p.error_status),
                    p.error_status,
                    p.error_index
                ),
            ),
        }
    }

    /// Take an error-free response to `job` into the poll.
    pub(super) fn absorb(&mut self, job: usize, p: &Pdu<'_>, custom: &[CustomModule]) -> Absorbed {
        let Some(kind) = self.jobs.get(job).map(|j| j.kind) else {
            return Absorbed::Ignored;
        };
        match kind {
            JobKind::Discover => {}
            JobKind::System => {
                for (oid, v) in p.varbinds().flatten() {
                    self.sys.take(oid, v);
                }
            }
            JobKind::CustomGet(mi) => {
                if let Some(m) = custom.get(mi as usize) {
                    let mut cells = vec![None; m.scalars.len()];
                    for (oid, v) in p.varbinds().flatten() {
                        if let Some(i) = m.scalars.iter().position(|c| c.oid.as_ref() == oid) {
                            cells[i] = custom_cell(m.scalars[i].kind, &v);
                        }
                    }
                    self.custom.scalars.insert(mi, cells);
                }
            }
            JobKind::LldpLocal => {
                for (oid, v) in p.varbinds().flatten() {
                    self.lldp.local(oid, &v);
                }
            }
            JobKind::Walk(table) => return self.absorb_page(job, table, p, custom),
        }
        Absorbed::Done
    }

    /// A page of a walk: its cells into the poll, and whether the walk goes on.
    fn absorb_page(
        &mut self,
        job: usize,
        table: IfTable,
        p: &Pdu<'_>,
        custom: &[CustomModule],
    ) -> Absorbed {
        let Poll {
            jobs,
            rows,
            sys,
            lldp,
            cdp,
            custom: custom_polled,
            ..
        } = self;
        let Some(w) = jobs.get_mut(job).and_then(|j| j.walk.as_mut()) else {
            return Absorbed::Ignored;
        };
        let absorbed = match table {
            IfTable::If | IfTable::IfX => w.absorb(p.varbinds(), rows),
            IfTable::LldpLocPort => w.absorb_cells(p.varbinds(), |col, idx, v, _| {
                lldp.local_port_cell(col, idx, v)
            }),
            IfTable::Custom(mi, ti) => {
                let cols = custom
                    .get(mi as usize)
                    .and_then(|m| m.tables.get(ti as usize))
                    .map(|t| t.columns.iter().map(|c| c.kind).collect::<Vec<_>>())
                    .unwrap_or_default();
                let table = custom_polled.tables.entry((mi, ti)).or_default();
                w.absorb_cells(p.varbinds(), |col, idx, v, _| {
                    let Some(kind) = cols.get(col as usize) else {
                        return;
                    };
                    let row = table
                        .entry(idx.to_vec())
                        .or_insert_with(|| vec![None; cols.len()]);
                    row[col as usize] = custom_cell(*kind, v);
                })
            }
            IfTable::CdpCache => {
                w.absorb_cells(p.varbinds(), |col, idx, v, _| cdp.cell(col, idx, v))
            }
            IfTable::LldpRem => {
                w.absorb_cells(p.varbinds(), |col, idx, v, _| lldp.remote_cell(col, idx, v))
            }
        };
        match absorbed {
            Ok(uptime) => {
                if sys.uptime.is_none() {
                    sys.uptime = uptime;
                }
                if w.is_done() {
                    Absorbed::Done
                } else {
                    Absorbed::NextPage
                }
            }
            Err(WalkError::TooManyRows) => {
                Absorbed::Failed("walk", "table longer than 100,000 rows".into())
            }
            Err(WalkError::Decode(e)) => {
                Absorbed::Failed("decode", format!("undecodable response: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nmsd_parsers::snmp::pdu::{AnyPdu, Message};
    use nmsd_pipeline::snmp::CustomKind;

    use super::*;
    use crate::engine::plan::{Credentials, CustomOid, CustomTable};
    use crate::engine::testutil::{COMMUNITY, oid, response, v2c_device};

    /// Decode `bytes` and hand its PDU to `f`.
    fn with_pdu<T>(bytes: &[u8], f: impl FnOnce(&Pdu<'_>) -> T) -> T {
        let m = Message::decode(bytes).expect("a valid message");
        let AnyPdu::Standard(p) = m.pdu else {
            panic!("not a response PDU")
        };
        f(&p)
    }

    fn kinds(jobs: &[Job]) -> Vec<JobKind> {
        jobs.iter().map(|j| j.kind).collect()
    }

    fn module() -> CustomModule {
        let col = |n: &str| CustomOid {
            name: Arc::from(n),
            oid: oid(&[1, 3, 6, 1, 4, 1, 9999, 1, 1]),
            kind: CustomKind::Gauge,
        };
        CustomModule {
            name: Arc::from("ups"),
            scalar_table: Arc::from("snmp_ups"),
            scalars: vec![col("a")],
            tables: vec![CustomTable {
                table: Arc::from("snmp_lines"),
                columns: vec![col("b")],
            }],
        }
    }

    #[test]
    fn discovery_goes_first_and_interfaces_last() {
        let mut spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        assert_eq!(
            kinds(&jobs_for(&spec, &[], false, false)),
            [
                JobKind::System,
                JobKind::Walk(IfTable::If),
                JobKind::Walk(IfTable::IfX)
            ]
        );
        spec.modules.lldp = true;
        spec.modules.cdp = true;
        // Module 7 is not in the plan: skipped.
        spec.custom = vec![0, 7];
        let jobs = jobs_for(&spec, &[module()], true, false);
        assert_eq!(
            kinds(&jobs),
            [
                JobKind::Discover,
                JobKind::System,
                JobKind::CustomGet(0),
                JobKind::Walk(IfTable::Custom(0, 0)),
                JobKind::LldpLocal,
                JobKind::Walk(IfTable::LldpLocPort),
                JobKind::Walk(IfTable::LldpRem),
                JobKind::Walk(IfTable::CdpCache),
                JobKind::Walk(IfTable::If),
                JobKind::Walk(IfTable::IfX),
            ]
        );
        assert!(jobs.iter().all(|j| j.state == JobState::Pending));
        assert!(
            jobs.iter()
                .all(|j| matches!(j.kind, JobKind::Walk(_)) == j.walk.is_some())
        );
        assert!(matches!(spec.credentials, Credentials::V2c { .. }));
    }

    fn poll_of(jobs: Vec<Job>, probe: bool) -> Poll {
        Poll::new(1_000, Instant::now(), jobs, 1, probe)
    }

    #[test]
    fn a_system_response_fills_the_system_group() {
        let spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        let mut poll = poll_of(jobs_for(&spec, &[], false, false), false);
        let sys = |c: u32| oid(&[1, 3, 6, 1, 2, 1, 1, c, 0]);
        let object_id = oid(&[1, 3, 6, 1, 4, 1, 8072, 3, 2, 10]);
        let bytes = response(
            COMMUNITY,
            5,
            0,
            0,
            &[
                (sys(1), Value::OctetString(b"Linux r1")),
                (sys(2), Value::ObjectId(object_id.as_ref())),
                (sys(3), Value::TimeTicks(123_456)),
                (sys(4), Value::OctetString(b"noc@example.net")),
                (sys(5), Value::OctetString(b"r1.lab")),
                (sys(6), Value::NoSuchObject),
                (oid(&[1, 3, 6, 1, 2, 1, 1, 9, 0]), Value::Integer(1)),
            ],
        );
        assert_eq!(with_pdu(&bytes, |p| poll.absorb(0, p, &[])), Absorbed::Done);
        let s = &poll.sys;
        assert_eq!(s.descr.as_deref(), Some("Linux r1"));
        assert_eq!(s.object_id.as_deref(), Some("1.3.6.1.4.1.8072.3.2.10"));
        assert_eq!(s.uptime, Some(123_456));
        assert_eq!(s.contact.as_deref(), Some("noc@example.net"));
        assert_eq!(s.name.as_deref(), Some("r1.lab"));
        assert_eq!(s.location, None, "noSuchObject is no location");
    }

    #[test]
    fn walk_pages_go_on_until_the_table_ends_and_carry_the_agent_clock() {
        let spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        let mut poll = poll_of(jobs_for(&spec, &[], false, false), false);
        let uptime = oid(&[1, 3, 6, 1, 2, 1, 1, 3, 0]);
        let if_col = |c: u32, i: u32| oid(&[1, 3, 6, 1, 2, 1, 2, 2, 1, c, i]);
        // The ifTable walk (job 1) asks for its columns; answer one row of each.
        let (cols, _) = poll.jobs[1]
            .walk
            .as_ref()
            .expect("a walk")
            .next_request(1, 100);
        let mut vbs = vec![(uptime.clone(), Value::TimeTicks(4200))];
        for c in &cols {
            let c = c.as_ref().arcs().last().expect("a column");
            vbs.push((if_col(c, 1), Value::Integer(6)));
        }
        let bytes = response(COMMUNITY, 6, 0, 0, &vbs);
        assert_eq!(
            with_pdu(&bytes, |p| poll.absorb(1, p, &[])),
            Absorbed::NextPage
        );
        assert_eq!(
            poll.sys.uptime,
            Some(4200),
            "no system group yet: the walk's"
        );
        assert_eq!(poll.rows[&1].if_type, Some(6));
        // endOfMibView everywhere: the walk is done.
        let mut vbs = vec![(uptime, Value::TimeTicks(4300))];
        vbs.extend(cols.iter().map(|c| (c.clone(), Value::EndOfMibView)));
        let bytes = response(COMMUNITY, 7, 0, 0, &vbs);
        assert_eq!(with_pdu(&bytes, |p| poll.absorb(1, p, &[])), Absorbed::Done);
        assert_eq!(poll.sys.uptime, Some(4200), "the first clock is kept");
        // A job without a walk, or a job that does not exist, is ignored.
        poll.jobs[2].walk = None;
        assert_eq!(
            with_pdu(&bytes, |p| poll.absorb(2, p, &[])),
            Absorbed::Ignored
        );
        assert_eq!(
            with_pdu(&bytes, |p| poll.absorb(9, p, &[])),
            Absorbed::Ignored
        );
    }

    #[test]
    fn agent_errors_end_walks_or_fail_the_job() {
        let spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        let mut poll = poll_of(jobs_for(&spec, &[], false, false), false);
        let too_big = response(COMMUNITY, 1, 1, 0, &[]);
        assert_eq!(
            with_pdu(&too_big, |p| poll.agent_error(1, p)),
            Absorbed::Done
        );
        assert!(poll.jobs[1].walk.as_ref().is_some_and(Walk::is_done));
        let no_such_name = response(COMMUNITY, 1, 2, 1, &[]);
        assert_eq!(
            with_pdu(&no_such_name, |p| poll.agent_error(2, p)),
            Absorbed::Done
        );
        // tooBig to a GET, genErr to a walk: the job fails.
        assert_eq!(
            with_pdu(&too_big, |p| poll.agent_error(0, p)),
            Absorbed::Failed(
                "agent_error",
                "agent returned tooBig (1) for varbind 0".into()
            )
        );
        let gen_err = response(COMMUNITY, 1, 5, 2, &[]);
        assert_eq!(
            with_pdu(&gen_err, |p| poll.agent_error(2, p)),
            Absorbed::Failed(
                "agent_error",
                "agent returned genErr (5) for varbind 2".into()
            )
        );
    }

    #[test]
    fn a_poll_is_over_when_every_job_is_and_probing_stops_at_the_first_answer() {
        let mut spec = v2c_device("r1", "127.0.0.1:161".parse().expect("an address"));
        spec.modules.lldp = true;
        let mut poll = poll_of(jobs_for(&spec, &[], false, false), true);
        assert!(poll.probing() && !poll.answered() && !poll.is_over());
        poll.jobs[0].state = JobState::Done;
        assert!(poll.answered() && !poll.probing());
        for j in &mut poll.jobs {
            if matches!(j.kind, JobKind::Walk(IfTable::If | IfTable::IfX)) {
                j.state = JobState::Done;
            } else if j.state == JobState::Pending {
                j.state = JobState::Failed;
            }
        }
        assert!(poll.is_over());
        assert!(poll.if_walks_ok());
        assert!(!poll.lldp_ok());
        assert!(poll.cdp_ok(), "no CDP job: nothing failed");
        // A round trip counts as an answer even before a job is done.
        let mut poll = poll_of(jobs_for(&spec, &[], false, false), true);
        poll.rtt_n = 1;
        assert!(poll.answered() && !poll.probing());
    }
}
