//! The shipped Grafana dashboards (grafana/dashboards/*.json) against real data: nmsd receives
//! flows from softflowd and polls a real snmpd, writes to a real QuestDB and is scraped by a
//! real Prometheus loaded with the shipped prometheus.yml and rules. Then every SQL query of a
//! panel or variable, with its macros and variables expanded as Grafana and the QuestDB plugin
//! expand them, runs on QuestDB and returns rows, and every PromQL expression evaluates on
//! Prometheus and returns series.
//!
//! No Grafana server runs here: none can be installed from the package registries this project
//! reaches (see grafana/README.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use nmsd_acceptance::nmsd::{Nmsd, NmsdOptions};
use nmsd_acceptance::prometheus::Prometheus;
use nmsd_acceptance::questdb::QuestDb;
use nmsd_acceptance::snmpd::Snmpd;
use nmsd_acceptance::{pcap, softflowd_export, wait_for, workspace};

const QUESTDB_UID: &str = "nmsd-questdb";
const PROMETHEUS_UID: &str = "nmsd-prometheus";

/// The only config text of this file: SNMP polling of the snmpd on `snmpd_port` (with tags,
/// flow_exporters and Prometheus gauges) and a trap listener on `trap_port`.
fn snmp_config_text(snmpd_port: u16, community_file: &Path, trap_port: u16) -> String {
    format!(
        r#"
[sources.snmp]
type = "snmp"
[sources.snmp.defaults]
interval = "5s"
timeout = "1s"
retries = 1

[[sources.snmp.profiles]]
name = "v2"
version = "2c"
community = {{ file = "{c}" }}

[[sources.snmp.devices]]
name = "lab-router"
address = "127.0.0.1"
port = {snmpd_port}
profile = "v2"
prometheus = true
flow_exporters = ["127.0.0.1"]
tags = {{ site = "lab", role = "edge" }}

[sources.traps]
type = "snmp_traps"
listen = ["127.0.0.1:{trap_port}"]
communities = [{{ name = "lab", community = {{ file = "{c}" }} }}]
"#,
        c = community_file.display()
    )
}

/// Every dashboard shipped, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = workspace().join("grafana/dashboards");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("dashboard file");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        out.insert(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            v,
        );
    }
    out
}

/// One query of a dashboard: where it is, which data source, its text, the panel's minimum
/// interval.
#[derive(Debug)]
struct Query {
    place: String,
    datasource: String,
    text: String,
    min_interval_ms: Option<u64>,
}

fn datasource_uid(v: &Value) -> String {
    v.get("datasource")
        .and_then(|d| d.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// "1m", "30s", "500ms" → milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// Every panel target (rows' panels included) and variable query of a dashboard.
fn queries(file: &str, dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        let min_interval_ms = p["interval"].as_str().and_then(duration_ms);
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = match datasource_uid(t).as_str() {
                "" => datasource_uid(p),
                uid => uid.to_string(),
            };
            let text = t["rawSql"]
                .as_str()
                .or_else(|| t["expr"].as_str())
                .unwrap_or_default()
                .to_string();
            out.push(Query {
                place: format!("{file} panel \"{}\" {}", p["title"], t["refId"]),
                datasource: ds,
                text,
                min_interval_ms,
            });
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let text = v["query"]
            .as_str()
            .or_else(|| v["query"]["query"].as_str())
            .unwrap_or_default()
            .to_string();
        out.push(Query {
            place: format!("{file} variable {}", v["name"]),
            datasource: datasource_uid(v),
            text,
            min_interval_ms: None,
        });
    }
    out
}

/// Grafana's interval for a range (its `roundInterval` of range / max data points), at least
/// the panel's minimum interval.
fn grafana_interval_ms(range_ms: u64, min_interval_ms: Option<u64>) -> u64 {
    const MAX_DATA_POINTS: u64 = 1000;
    let raw = range_ms / MAX_DATA_POINTS;
    let steps: [(u64, u64); 30] = [
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (180_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
        (u64::MAX, 31_536_000_000),
    ];
    let rounded = steps
        .iter()
        .find(|(below, _)| raw <= *below)
        .map_or(31_536_000_000, |(_, step)| *step);
    rounded.max(min_interval_ms.unwrap_or(0))
}

/// The QuestDB plugin's `$__sampleByInterval`: whole days or hours, else seconds, else
/// milliseconds (QuestDB's `T` unit).
fn sample_by_interval(interval_ms: u64) -> String {
    let hours = interval_ms / 3_600_000;
    let seconds = interval_ms / 1000;
    if hours > 0 {
        if hours >= 24 && interval_ms.is_multiple_of(3_600_000) {
            format!("{}d", hours / 24)
        } else {
            format!("{hours}h")
        }
    } else if seconds > 0 {
        format!("{seconds}s")
    } else {
        format!("{}T", interval_ms.max(1))
    }
}

/// Expand Grafana's variables (`${name:singlequote}`, `$name`, `$__interval_ms`) and then the
/// QuestDB plugin's macros (`$__timeFilter(col)`, `$__fromTime`, `$__toTime`,
/// `$__sampleByInterval`) for the range [from_us, to_us].
fn expand_sql(
    sql: &str,
    variables: &BTreeMap<String, Vec<String>>,
    from_us: i64,
    to_us: i64,
    interval_ms: u64,
) -> String {
    let mut s = sql.replace("$__interval_ms", &interval_ms.to_string());
    for (name, values) in variables {
        let quoted = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(",");
        s = s.replace(&format!("${{{name}:singlequote}}"), &quoted);
        let raw = values.join(",");
        s = s.replace(&format!("${{{name}}}"), &raw);
        s = s.replace(&format!("${name}"), &raw);
    }
    // $__timeFilter(column)
    while let Some(start) = s.find("$__timeFilter(") {
        let open = start + "$__timeFilter(".len();
        let Some(close) = s[open..].find(')').map(|i| open + i) else {
            break;
        };
        let column = s[open..close].trim().to_string();
        s.replace_range(
            start..=close,
            &format!(
                "{column} >= cast({from_us} as timestamp) AND {column} <= cast({to_us} as timestamp)"
            ),
        );
    }
    s.replace("$__fromTime", &format!("cast({from_us} as timestamp)"))
        .replace("$__toTime", &format!("cast({to_us} as timestamp)"))
        .replace("$__sampleByInterval", &sample_by_interval(interval_ms))
}

/// Run SQL on QuestDB's /exec: the rows, or QuestDB's error.
fn run_sql(agent: &ureq::Agent, q: &QuestDb, sql: &str) -> Result<Vec<Value>, String> {
    let mut resp = agent
        .get(format!("{}/exec", q.url()))
        .query("query", sql)
        .call()
        .map_err(|e| e.to_string())?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("{err} at position {}", v["position"]));
    }
    Ok(v["dataset"].as_array().cloned().unwrap_or_default())
}

/// The designated timestamps' range of `table`, in microseconds.
fn time_range_us(agent: &ureq::Agent, q: &QuestDb, table: &str) -> (i64, i64) {
    let rows = run_sql(
        agent,
        q,
        &format!("select cast(min(ts) as long), cast(max(ts) as long) from {table}"),
    )
    .unwrap_or_else(|e| panic!("{table}: {e}"));
    let r = rows
        .first()
        .unwrap_or_else(|| panic!("no time range for {table}"));
    match (r[0].as_i64(), r[1].as_i64()) {
        (Some(from), Some(to)) => (from, to),
        _ => panic!("no rows in {table}: {r:?}"),
    }
}

/// Grafana's Prometheus variables and macros: `$job` and `$instance` as "All" (`.*`),
/// `$__rate_interval` as four of the test's 1 s scrapes and more.
fn expand_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[test]
fn every_dashboard_query_returns_data_nmsd_wrote() {
    let q = QuestDb::shared();
    let agent = Snmpd::start("grafana-snmpd");
    let secrets = nmsd_acceptance::scratch("grafana-secrets");
    let community = secrets.join("community");
    std::fs::write(&community, "public").expect("secret file");
    let trap_port = nmsd_acceptance::free_udp_port();
    let mut nmsd = Nmsd::start(
        "grafana",
        &NmsdOptions {
            questdb: Some(q.url()),
            extra: snmp_config_text(agent.port, &community, trap_port),
            ..NmsdOptions::default()
        },
    );

    // The shipped Prometheus config and rules, pointed at this nmsd and sped up.
    let shipped = std::fs::read_to_string(workspace().join("prometheus/prometheus.yml"))
        .expect("prometheus/prometheus.yml");
    for needle in [
        "127.0.0.1:9464",
        "scrape_interval: 15s",
        "evaluation_interval: 15s",
    ] {
        assert!(shipped.contains(needle), "prometheus.yml has {needle}");
    }
    let config = shipped
        .replace(
            "127.0.0.1:9464",
            &format!("127.0.0.1:{}", nmsd.control_port),
        )
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    let rules = std::fs::read_to_string(workspace().join("prometheus/nmsd.rules.yml"))
        .expect("prometheus/nmsd.rules.yml");
    let prom = Prometheus::start("grafana-prometheus", &config, &[("nmsd.rules.yml", rules)]);

    // Flows from a real exporter; SNMP polls of a real agent (rates need two polls).
    let traffic = pcap(14, 300);
    softflowd_export(&traffic.path, nmsd.flow_port, 9);
    let decoded = nmsd.wait_metric(
        "nmsd_flow_records_decoded_total",
        &[],
        1.0,
        Duration::from_secs(20),
    );
    assert!(decoded > 0.0, "flows decoded; log:\n{}", nmsd.log());
    let polls = nmsd.wait_metric(
        "nmsd_snmp_polls_total",
        &["outcome=\"ok\""],
        3.0,
        Duration::from_secs(40),
    );
    assert!(polls >= 3.0, "three polls; log:\n{}", nmsd.log());

    // Prometheus: enough scrapes for rate() over 15 s, and the rules evaluated.
    let scraped = wait_for(Duration::from_secs(60), || {
        let r = prom
            .query("count_over_time(up{job=\"nmsd\"}[1m]) >= 20")
            .ok()?;
        (!r.is_empty()).then_some(())
    });
    assert!(
        scraped.is_some(),
        "20 scrapes of nmsd; log:\n{}",
        prom.log()
    );
    let rule_groups = prom.api("/api/v1/rules", &[]).expect("rules API");
    let mut rule_count = 0;
    for g in rule_groups["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            rule_count += 1;
            assert_eq!(r["health"], "ok", "rule {} evaluates: {r}", r["name"]);
        }
    }
    assert!(
        rule_count >= 10,
        "the shipped rules are loaded: {rule_groups}"
    );
    let recorded = prom
        .query("instance_source:nmsd_flow_datagrams_received:rate5m")
        .expect("recorded series");
    assert!(!recorded.is_empty(), "a recording rule produced series");

    let boards = dashboards();
    assert!(boards.len() >= 3, "three dashboards: {:?}", boards.keys());
    let all: Vec<Query> = boards.iter().flat_map(|(f, d)| queries(f, d)).collect();
    let mut failures: Vec<String> = Vec::new();

    // PromQL, while nmsd still runs.
    let mut promql = 0;
    for query in all.iter().filter(|q| q.datasource == PROMETHEUS_UID) {
        promql += 1;
        let expr = expand_promql(&query.text);
        // Grafana's label_values(selector, label): the selector's series must carry the label.
        let result = if let Some(args) = expr
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (selector, label) = args.rsplit_once(',').unwrap_or((args, ""));
            prom.api("/api/v1/series", &[("match[]", selector.trim())])
                .map(|d| {
                    d.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|s| s.get(label.trim()).is_some())
                        .cloned()
                        .collect::<Vec<_>>()
                })
        } else {
            prom.query(&expr)
        };
        match result {
            Err(e) => failures.push(format!("{}: {expr}: {e}", query.place)),
            Ok(r) if r.is_empty() => failures.push(format!("{}: {expr}: no series", query.place)),
            Ok(_) => {}
        }
    }

    // SQL, on everything nmsd wrote before it stopped (stopping flushes the roll-up).
    assert!(nmsd.stop().success(), "clean stop; log:\n{}", nmsd.log());
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let tables = ["flows_1m", "snmp_interface", "snmp_device"];
    for t in tables {
        q.wait_applied(t, Duration::from_secs(60));
        let rows = wait_for(Duration::from_secs(30), || {
            q.scalar(&format!("select count() from {t}"))
                .filter(|n| *n > 0)
        });
        assert!(rows.is_some(), "nmsd wrote rows to {t}");
    }
    let ranges: BTreeMap<&str, (i64, i64)> = tables
        .iter()
        .map(|t| (*t, time_range_us(&http, q, t)))
        .collect();

    // Variables first: panels filter on their values ("All" selected).
    let mut variables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    variables.insert("top".into(), vec!["10".into()]);
    let mut sql = 0;
    for query in all
        .iter()
        .filter(|q| q.datasource == QUESTDB_UID && q.place.contains(" variable "))
    {
        sql += 1;
        let name = query
            .place
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        // A variable's query may use the ones before it.
        let text = expand_sql(&query.text, &variables, 0, now_us(), 60_000);
        match run_sql(&http, q, &text) {
            Ok(rows) if !rows.is_empty() => {
                let values = rows
                    .iter()
                    .filter_map(|r| r.get(0))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect();
                variables.insert(name, values);
            }
            Ok(_) => failures.push(format!("{}: {text}: no values", query.place)),
            Err(e) => failures.push(format!("{}: {text}: {e}", query.place)),
        }
    }
    for query in all
        .iter()
        .filter(|q| q.datasource == QUESTDB_UID && !q.place.contains(" variable "))
    {
        sql += 1;
        // The range a user looks at: the data of the tables the query reads, tight (short
        // intervals) and then wide (hours and days), and a month back from now.
        let (from, to) = tables
            .iter()
            .filter(|t| query.text.contains(*t))
            .filter_map(|t| ranges.get(t))
            .fold((i64::MAX, i64::MIN), |(f, t), (a, b)| {
                (f.min(*a), t.max(*b))
            });
        assert!(from < i64::MAX, "{}: reads none of {tables:?}", query.place);
        let minute = 60_000_000;
        for (from_us, to_us, must_have_rows) in [
            (from - minute, to + minute, true),
            (from - 1440 * minute, now_us(), true),
            (now_us() - 30 * 1440 * minute, now_us(), false),
        ] {
            let range_ms = ((to_us - from_us) / 1000).max(1) as u64;
            let interval = grafana_interval_ms(range_ms, query.min_interval_ms);
            let text = expand_sql(&query.text, &variables, from_us, to_us, interval);
            match run_sql(&http, q, &text) {
                Ok(rows) if rows.is_empty() && must_have_rows => {
                    failures.push(format!("{}: no rows for\n{text}", query.place));
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{}: {e}\n{text}", query.place)),
            }
        }
    }
    assert!(
        promql >= 20 && sql >= 15,
        "queries found: {promql} PromQL, {sql} SQL"
    );
    assert!(
        failures.is_empty(),
        "{} of {} queries failed:\n\n{}",
        failures.len(),
        promql + sql,
        failures.join("\n\n")
    );
}

#[test]
fn sample_by_interval_is_formatted_as_the_questdb_plugin_does() {
    assert_eq!(sample_by_interval(500), "500T");
    assert_eq!(sample_by_interval(0), "1T");
    assert_eq!(sample_by_interval(60_000), "60s");
    assert_eq!(sample_by_interval(5_400_000), "1h");
    assert_eq!(sample_by_interval(7_200_000), "2h");
    assert_eq!(sample_by_interval(86_400_000), "1d");
    // The plugin divides whole hours by 24 and drops the rest: 25 h samples by a day.
    assert_eq!(sample_by_interval(90_000_000), "1d");
    let sql = expand_sql(
        "SELECT * FROM t WHERE $__timeFilter(ts) AND d IN (${device:singlequote}) LIMIT $top \
         SAMPLE BY $__sampleByInterval",
        &BTreeMap::from([
            (
                "device".to_string(),
                vec!["a".to_string(), "b'c".to_string()],
            ),
            ("top".to_string(), vec!["10".to_string()]),
        ]),
        1,
        2,
        1000,
    );
    assert_eq!(
        sql,
        "SELECT * FROM t WHERE ts >= cast(1 as timestamp) AND ts <= cast(2 as timestamp) AND \
         d IN ('a','b\\'c') LIMIT 10 SAMPLE BY 1s"
    );
}

#[test]
fn dashboards_use_only_the_provisioned_data_sources() {
    let provisioning =
        std::fs::read_to_string(workspace().join("grafana/provisioning/datasources/nmsd.yml"))
            .expect("grafana/provisioning/datasources/nmsd.yml");
    let provisioned: Vec<&str> = provisioning
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid: "))
        .collect();
    assert_eq!(provisioned, [QUESTDB_UID, PROMETHEUS_UID]);
    let mut uids = Vec::new();
    for (file, d) in dashboards() {
        uids.push(d["uid"].as_str().unwrap_or_default().to_string());
        let mut ids = Vec::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            ids.push(p["id"].as_i64().unwrap_or_default());
            assert!(
                provisioned.contains(&datasource_uid(p).as_str()),
                "{file} panel {}: data source {}",
                p["title"],
                p["datasource"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(
                    datasource_uid(t),
                    datasource_uid(p),
                    "{file} {}",
                    p["title"]
                );
            }
        }
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "{file}: panel ids are unique");
    }
    let n = uids.len();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), n, "dashboard uids are unique");
}
