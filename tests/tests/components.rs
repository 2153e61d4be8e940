//! The component model against real peers: two QuestDB sinks fed by the same components store
//! the same rows, and a processor written here (registered on the registry, not in the binary)
//! takes SNMP interface rows and a keyed view of flows from three workers and emits events
//! that reach QuestDB.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nmsd::config::Config;
use nmsd::registry::Registry;
use nmsd::topology::Topology;
use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::questdb::QuestDb;
use nmsd_pipeline::component::{Placement, ProcessorContext, ProcessorSpec};
use nmsd_pipeline::event::{Event, FieldValue, Severity};
use nmsd_pipeline::processors::{Emitter, Processor};
use nmsd_pipeline::view::{KeyedView, ViewKey, ViewKeyBy};
use nmsd_pipeline::{Batch, StreamKind, StreamSet};
use nmsd_snmpsim::{DataSpec, SimConfig, SimHandle, Simulator};
use nmsd_testkit::encode::{self, MessageBuilder};

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

fn simulator() -> SimHandle {
    let port = nmsd_acceptance::free_udp_port();
    Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: 1,
        data: DataSpec {
            interfaces: Some(8),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator")
}

/// `[sources.snmp]` polling the simulator every 5 s (community in a file under `dir`).
fn snmp_source(sim: &SimHandle, dir: &Path, traps: Option<u16>) -> String {
    let community = dir.join("community");
    std::fs::write(&community, "public").expect("secret");
    let addr = sim.device_addr(0);
    let mut s = format!(
        "[sources.snmp]\ntype = \"snmp\"\n[sources.snmp.defaults]\ninterval = \"5s\"\n\
         timeout = \"1s\"\nport = {}\n\
         [[sources.snmp.profiles]]\nname = \"v2\"\nversion = \"2c\"\ncommunity = {{ file = \"{}\" }}\n\
         [[sources.snmp.devices]]\nname = \"router\"\naddress = \"{}\"\nprofile = \"v2\"\n\
         flow_exporters = [\"127.0.0.1\"]\n",
        addr.port(),
        community.display(),
        addr.ip()
    );
    if let Some(p) = traps {
        s.push_str(&format!(
            "[sources.traps]\ntype = \"snmp_traps\"\nlisten = [\"127.0.0.1:{p}\"]\n\
             communities = [{{ name = \"lab\", community = {{ file = \"{}\" }} }}]\n",
            community.display()
        ));
    }
    s
}

/// v9 datagrams of `n` records from `from`, all to `dst`; returns the bytes they carry.
fn send_flows(from: Ipv4Addr, port: u16, n: usize, dst: IpAddr) -> u64 {
    let now = now_s();
    let mut recs = encode::sample_records(n, false, (now as u64 - 20) * 1000);
    for r in &mut recs {
        r.dst_addr = dst;
    }
    let t = encode::ipv4_template(300);
    let sock = UdpSocket::bind((from, 0)).expect("socket");
    for (i, chunk) in recs.chunks(20).enumerate() {
        let mut m = MessageBuilder::v9(1_000_000, now, i as u32 + 1, 0);
        m.template(&t).data(&t, chunk);
        sock.send_to(&m.finish(), ("127.0.0.1", port))
            .expect("send");
    }
    recs.iter().map(|r| r.bytes).sum()
}

#[test]
fn two_questdb_sinks_store_the_same_rows() {
    let a = QuestDb::owned("two-sinks-a");
    let b = QuestDb::owned("two-sinks-b");
    let sim = simulator();
    let dir = nmsd_acceptance::scratch("two-sinks");
    let trap_port = nmsd_acceptance::free_udp_port();
    let extra = format!(
        "{}\n[sinks.second]\ntype = \"questdb\"\ninputs = [\"netflow\", \"names\", \"snmp\", \"traps\"]\n\
         url = \"{}\"\nbatch_interval = \"200ms\"\nretry_initial = \"100ms\"\nretry_max = \"1s\"\n",
        snmp_source(&sim, &dir, Some(trap_port)),
        b.q.url()
    );
    let mut nmsd = Nmsd::start(
        "two-sinks",
        &NmsdOptions {
            questdb: Some(a.q.url()),
            extra,
            ..NmsdOptions::default()
        },
    );
    let polled = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        (nmsd.metric("nmsd_snmp_polls_total", &["outcome=\"ok\""]) >= 2.0).then_some(())
    });
    assert!(
        polled.is_some(),
        "the device was polled; log:\n{}",
        nmsd.log()
    );
    send_flows(
        Ipv4Addr::LOCALHOST,
        nmsd.flow_port,
        200,
        "192.0.2.9".parse().expect("ip"),
    );
    let snmptrap = nmsd_acceptance::require("snmptrap");
    for i in 0..3 {
        let ok = std::process::Command::new(&snmptrap)
            .args(["-v", "2c", "-c", "public"])
            .arg(format!("127.0.0.1:{trap_port}"))
            .args(["", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.1", "i"])
            .arg(i.to_string())
            .status()
            .expect("snmptrap runs");
        assert!(ok.success());
    }
    nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        200.0,
        Duration::from_secs(10),
    );
    nmsd.wait_metric(
        "nmsd_snmp_traps_received_total",
        &[],
        3.0,
        Duration::from_secs(10),
    );

    // One metric convention for every component, described.
    let second = [
        "component_id=\"second\"",
        "component_kind=\"sink\"",
        "component_type=\"questdb\"",
    ];
    let sent = nmsd.wait_metric(
        "nmsd_component_sent_records_total",
        &second,
        203.0,
        Duration::from_secs(20),
    );
    assert!(
        sent >= 203.0,
        "the second sink wrote flows and traps: {sent}"
    );
    let flows_in = nmsd.metric(
        "nmsd_component_sent_records_total",
        &["component_id=\"netflow\"", "component_kind=\"source\""],
    );
    assert_eq!(flows_in, 200.0);
    let (_, body) = nmsd.get("/metrics").expect("metrics");
    for family in ["received", "sent", "errors"] {
        let help = format!("# HELP nmsd_component_{family}_");
        assert!(body.contains(&help), "{help} missing");
    }
    // Status lists every component by id, kind and type, with its counters.
    let (_, status) = nmsd.get("/api/v1/status").expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    let comps = v["components"].as_array().expect("components");
    let find = |id: &str| {
        comps
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {status}"))
    };
    for (id, kind, ty) in [
        ("netflow", "source", "netflow"),
        ("snmp", "source", "snmp"),
        ("traps", "source", "snmp_traps"),
        ("rollup", "processor", "rollup"),
        ("names", "processor", "interface_names"),
        ("questdb", "sink", "questdb"),
        ("second", "sink", "questdb"),
    ] {
        let c = find(id);
        assert_eq!(
            (c["kind"].as_str(), c["type"].as_str()),
            (Some(kind), Some(ty)),
            "{c}"
        );
        assert!(c["state"].is_string(), "{c}");
    }
    assert_eq!(find("second")["state"], "up");
    assert!(find("rollup")["received"].as_u64() >= Some(200));
    assert!(v["sinks"]["second"]["rows_written"].as_u64() > Some(0));
    assert!(nmsd.stop().success(), "log:\n{}", nmsd.log());

    let tables = [
        ("flows", "count()"),
        ("flows_1m", "sum(bytes)"),
        ("flows_1m", "count(in_if_name)"),
        ("snmp_interface", "count()"),
        ("snmp_device", "count()"),
        ("snmp_trap", "count()"),
    ];
    for (table, what) in tables {
        a.q.wait_applied(table, Duration::from_secs(30));
        b.q.wait_applied(table, Duration::from_secs(30));
        let sql = format!("select {what} from {table}");
        let (x, y) = (a.q.scalar(&sql), b.q.scalar(&sql));
        assert!(x.unwrap_or(0) > 0, "{sql}: no rows in the first server");
        assert_eq!(x, y, "{sql}: the two sinks differ");
    }
    assert_eq!(a.q.scalar("select count() from flows"), Some(200));
    assert_eq!(a.q.scalar("select count() from snmp_trap"), Some(3));
    let _ = sim.stop();
}

/// Watches destinations over all workers (a keyed view) and SNMP interface rows.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationWatchConfig {
    /// Emit a warning for a destination past this many bytes.
    threshold_bytes: u64,
}

impl ProcessorSpec for DestinationWatchConfig {
    fn accepts(&self) -> StreamSet {
        StreamSet::of(&[StreamKind::Flows, StreamKind::SnmpInterfaces])
    }
    fn outputs(&self, _inputs: StreamSet) -> StreamSet {
        StreamSet::of(&[StreamKind::Events])
    }
    fn placement(&self) -> Placement {
        Placement::Global
    }
    fn flow_view(&self) -> Option<(ViewKeyBy, usize)> {
        Some((ViewKeyBy::DstAddr, 10_000))
    }
    fn build(&self, _ctx: &ProcessorContext) -> Box<dyn Processor> {
        Box::new(DestinationWatch {
            threshold: self.threshold_bytes,
            view: KeyedView::default(),
            interface_rows: 0,
        })
    }
}

struct DestinationWatch {
    threshold: u64,
    view: KeyedView,
    interface_rows: usize,
}

impl Processor for DestinationWatch {
    fn process(&mut self, input: Batch, out: &mut Emitter) {
        match input {
            Batch::FlowView(p) => self.view.merge(&p),
            Batch::SnmpInterfaces(rows) => {
                if self.interface_rows == 0 && !rows.is_empty() {
                    out.events(vec![
                        Event::new(rows[0].ts_ms, "interfaces_polled", Severity::Info)
                            .subject(rows[0].device.to_string())
                            .field("interfaces", FieldValue::Integer(rows.len() as i64)),
                    ]);
                }
                self.interface_rows += rows.len();
            }
            _ => {}
        }
    }

    fn tick(&mut self, _now_ms: u64, _out: &mut Emitter) {}

    fn flush(&mut self, out: &mut Emitter) {
        let now = u64::from(now_s()) * 1000;
        let mut events = Vec::new();
        for (k, t) in &self.view.totals {
            let ViewKey::Addr(a) = k else { continue };
            let severity = if t.bytes > self.threshold {
                Severity::Warning
            } else {
                Severity::Info
            };
            events.push(
                Event::new(now, "destination_total", severity)
                    .subject(a.to_string())
                    .field("bytes", FieldValue::Integer(t.bytes as i64))
                    .field("flows", FieldValue::Integer(t.flows as i64)),
            );
        }
        out.events(events);
    }
}

#[test]
fn a_processor_from_outside_the_binary_sees_every_worker_and_snmp_and_emits_events() {
    let q = QuestDb::owned("outside-processor");
    let sim = simulator();
    let dir = nmsd_acceptance::scratch("outside-processor");
    let ports: Vec<u16> = (0..3).map(|_| nmsd_acceptance::free_udp_port()).collect();
    let mut text = format!(
        "[general]\nstate_dir = \"{}\"\n[pipeline]\nworkers = 3\n",
        dir.join("state").display()
    );
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[sources.edge{i}]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{p}\"\nsockets = 1\n"
        ));
    }
    text.push_str(&snmp_source(&sim, &dir, None));
    text.push_str(&format!(
        "[processors.watch]\ntype = \"destination_watch\"\n\
         inputs = [\"edge0\", \"edge1\", \"edge2\", \"snmp\"]\nthreshold_bytes = 1\n\
         [sinks.questdb]\ntype = \"questdb\"\ninputs = [\"watch\", \"edge0\", \"edge1\", \"edge2\"]\n\
         url = \"{}\"\nbatch_interval = \"200ms\"\n",
        q.q.url()
    ));
    let registry = Registry::builtin().processor::<DestinationWatchConfig>("destination_watch");
    let cfg = Config::parse_with(Path::new("test.toml"), &text, &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    // The binary's registry does not know it: the model is open, not built in.
    assert!(Config::parse(Path::new("test.toml"), &text).is_err());
    let topology = Topology::start(&cfg).expect("topology starts");
    let status = Arc::clone(&topology.status);

    let dst: IpAddr = "198.51.100.7".parse().expect("ip");
    let mut expected = 0u64;
    for (i, p) in ports.iter().enumerate() {
        expected += send_flows(Ipv4Addr::new(127, 0, 0, i as u8 + 1), *p, 100, dst);
    }
    // The event reaches the control plane's log as well as the sinks.
    let polled = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        status
            .events
            .recent()
            .iter()
            .any(|e| &*e.kind == "interfaces_polled")
            .then_some(())
    });
    assert!(polled.is_some(), "the processor saw SNMP interface rows");
    let seen = nmsd_acceptance::wait_for(Duration::from_secs(10), || {
        let decoded: u64 = status
            .components
            .iter()
            .filter(|c| c.stats.id.starts_with("edge"))
            .map(|c| c.stats.sent())
            .sum();
        (decoded >= 300).then_some(decoded)
    });
    assert_eq!(seen, Some(300), "every flow decoded");
    // Three sources, one per worker: each worker fed its own partials.
    let report = topology.shutdown();
    assert!(report.is_clean(), "{report:?}");

    q.q.wait_applied("events", Duration::from_secs(30));
    let rows =
        q.q.query("select kind, severity, subject, component, fields from events order by kind");
    let totals: Vec<_> = rows
        .iter()
        .filter(|r| r[0].as_str() == Some("destination_total"))
        .collect();
    assert_eq!(totals.len(), 1, "one destination: {rows:?}");
    let t = totals[0];
    assert_eq!(t[2].as_str(), Some("198.51.100.7"));
    assert_eq!(
        t[3].as_str(),
        Some("watch"),
        "stamped with the emitting component"
    );
    let fields: serde_json::Value =
        serde_json::from_str(t[4].as_str().unwrap_or("{}")).expect("fields are JSON");
    assert_eq!(
        fields["bytes"].as_u64(),
        Some(expected),
        "exact over three workers"
    );
    assert_eq!(fields["flows"].as_u64(), Some(300));
    assert!(
        rows.iter()
            .any(|r| r[0].as_str() == Some("interfaces_polled")),
        "an event from SNMP rows: {rows:?}"
    );
    let _ = sim.stop();
}

#[test]
fn two_snmp_pollers_with_their_own_credentials_and_intervals_run_side_by_side() {
    let q = QuestDb::shared();
    let port = nmsd_acceptance::free_udp_port();
    let sim = Simulator::spawn(SimConfig {
        listen: format!("0.0.0.0:{port}").parse().expect("address"),
        devices: 2,
        data: DataSpec {
            interfaces: Some(4),
            lldp: false,
            fixture: None,
            subtrees: Vec::new(),
        },
        ..SimConfig::default()
    })
    .expect("simulator");
    let dir = nmsd_acceptance::scratch("two-pollers");
    let mut extra = String::new();
    for (i, (id, interval)) in [("core", "5s"), ("edge", "7s")].into_iter().enumerate() {
        let community = dir.join(format!("{id}-community"));
        std::fs::write(&community, "public").expect("secret");
        let addr = sim.device_addr(i);
        extra.push_str(&format!(
            "[sources.{id}]\ntype = \"snmp\"\n[sources.{id}.defaults]\ninterval = \"{interval}\"\n\
             timeout = \"1s\"\nport = {}\n\
             [[sources.{id}.profiles]]\nname = \"{id}-v2\"\nversion = \"2c\"\n\
             community = {{ file = \"{}\" }}\n\
             [[sources.{id}.devices]]\nname = \"{id}-router\"\naddress = \"{}\"\nprofile = \"{id}-v2\"\n",
            addr.port(),
            community.display(),
            addr.ip()
        ));
    }
    let mut nmsd = Nmsd::start(
        "two-pollers",
        &NmsdOptions {
            questdb: Some(q.url()),
            table_prefix: "twopoll_".into(),
            extra,
            ..NmsdOptions::default()
        },
    );
    let both = nmsd_acceptance::wait_for(Duration::from_secs(30), || {
        let (_, body) = nmsd.get("/api/v1/devices")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let up: Vec<String> = v["devices"]
            .as_array()?
            .iter()
            .filter(|d| d["last_success_ms"].is_number() || d["state"] == "up")
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect();
        (up.len() == 2).then_some(up)
    });
    assert!(both.is_some(), "both devices polled; log:\n{}", nmsd.log());
    assert!(nmsd.stop().success());
    q.wait_applied("twopoll_snmp_device", Duration::from_secs(30));
    let rows = q.query("select device, count() from twopoll_snmp_device order by device");
    let names: Vec<_> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["core-router", "edge-router"], "{rows:?}");
    let _ = sim.stop();
}
