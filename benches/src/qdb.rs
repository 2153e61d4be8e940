//! QuestDB for the sink benchmarks: a private server, and the bare questdb-rs sender loop.
//!
//! The bare loop is the QuestDB sink's ceiling: one thread that encodes the same rows as
//! nmsd's sink (the `flows` table of `nmsd_sinks::questdb::schema`, every column written the
//! written by the sink's own `RowWriter`), in batches of the same size, flushed the same
//! way (ILP over HTTP, protocol v1, one transactional request per batch), with nothing else:
//! no receive path, no decode, no queue. nmsd's sink cannot write faster than this loop on the
//! same server; the ratio of the two is what the sink's own overhead costs.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmsd_pipeline::clock::unix_ms;

use nmsd_parsers::{FlowDecoder, FlowRecord};
use nmsd_sinks::questdb::schema::{self, ExecClient, TableNames};
use nmsd_sinks::questdb::{QuestDbConfig, RowKey, RowWriter};
use questdb::ingress::{Buffer, ProtocolVersion, Sender, TableName};

use crate::child::Proc;
use crate::{free_tcp_port, http_agent, http_get, workspace_dir};

/// A private QuestDB bound to 127.0.0.1 on free ports: started with `tests/peers/questdb.sh`
/// when the workspace has it, otherwise with `java -cp JAR io.questdb.ServerMain`
/// (`$NMSD_QUESTDB_JAR`, default the Maven-local 9.3.4 jar). Stopped when dropped.
pub struct QuestDb {
    pub http: u16,
    dir: PathBuf,
    script: Option<PathBuf>,
    proc: Option<Proc>,
}

impl QuestDb {
    pub fn start(dir: &Path) -> Result<QuestDb, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ports = || -> std::io::Result<(u16, u16, u16)> {
            Ok((free_tcp_port()?, free_tcp_port()?, free_tcp_port()?))
        };
        let (http, pg, ilp) = ports().map_err(|e| format!("free ports: {e}"))?;
        let script = workspace_dir().join("tests/peers/questdb.sh");
        if script.is_file() {
            let st = Command::new("bash")
                .arg(&script)
                .args(["start"])
                .arg(dir)
                .args([http.to_string(), pg.to_string(), ilp.to_string()])
                .status()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !st.success() {
                return Err(format!("{} start failed ({st})", script.display()));
            }
            return Ok(QuestDb {
                http,
                dir: dir.to_path_buf(),
                script: Some(script),
                proc: None,
            });
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        let jar = std::env::var_os("NMSD_QUESTDB_JAR").map_or_else(
            || home.join(".m2/repository/org/questdb/questdb/9.3.4/questdb-9.3.4.jar"),
            PathBuf::from,
        );
        if !jar.is_file() {
            return Err(format!("QuestDB jar not found at {}", jar.display()));
        }
        let conf = dir.join("conf");
        fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
        fs::write(
            conf.join("server.conf"),
            format!(
                "http.net.bind.to=127.0.0.1:{http}\npg.net.bind.to=127.0.0.1:{pg}\n\
                 line.tcp.net.bind.to=127.0.0.1:{ilp}\nhttp.min.enabled=false\n\
                 line.udp.enabled=false\nmetrics.enabled=false\ntelemetry.enabled=false\n\
                 shared.worker.count=2\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.join("questdb.log")).map_err(|e| e.to_string())?;
        let proc = Proc::spawn(
            "questdb",
            Command::new("java")
                .args(["-Xms64m", "-Xmx1g", "-cp"])
                .arg(&jar)
                .args(["io.questdb.ServerMain", "-d"])
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
                .stderr(Stdio::from(log)),
            libc::SIGTERM,
        )
        .map_err(|e| format!("java: {e}"))?;
        let q = QuestDb {
            http,
            dir: dir.to_path_buf(),
            script: None,
            proc: Some(proc),
        };
        let agent = http_agent();
        let url = format!("http://127.0.0.1:{http}/exec?query=select%201");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&agent, &url).is_none_or(|(s, _)| s != 200) {
            if Instant::now() > deadline {
                return Err("QuestDB did not answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(q)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The server's pid, to sample its CPU time.
    pub fn pid(&self) -> Option<u32> {
        match &self.proc {
            Some(p) => Some(p.pid()),
            None => fs::read_to_string(self.dir.join("questdb.pid"))
                .ok()?
                .trim()
                .parse()
                .ok(),
        }
    }
}

impl Drop for QuestDb {
    fn drop(&mut self) {
        if let Some(script) = &self.script {
            let _ = Command::new("bash")
                .arg(script)
                .arg("stop")
                .arg(&self.dir)
                .status();
        }
        if let Some(p) = &mut self.proc {
            p.stop(Duration::from_secs(20));
        }
    }
}

/// Flow records as nmsd decodes them from `datagrams` (exporter 127.0.0.1, as the replayer
/// sends them): the rows the bare loop writes.
pub fn decoded_records(datagrams: &[Vec<u8>]) -> Vec<FlowRecord> {
    let mut dec = FlowDecoder::default();
    let mut out = Vec::new();
    let exporter = IpAddr::from([127, 0, 0, 1]);
    for d in datagrams {
        let _ = dec.decode(exporter, d, unix_ms(), &mut out);
    }
    out
}

/// What the bare loop does.
#[derive(Clone, Debug)]
pub struct BareConfig {
    /// `http://host:port` of QuestDB.
    pub url: String,
    /// Table name prefix; the loop writes the sink's flows table with this prefix (`{prefix}flows`
    /// by default), created with the sink's DDL.
    pub table_prefix: String,
    /// Rows to write.
    pub rows: u64,
    /// Rows per flush (nmsd's `batch_rows`, default 50 000)...
    pub batch_rows: usize,
    /// ...or bytes of ILP per flush (nmsd's `batch_bytes`), whichever comes first.
    pub batch_bytes: u64,
    pub request_timeout: Duration,
}

/// What it did.
#[derive(Clone, Debug, Default)]
pub struct BareReport {
    pub rows: u64,
    pub batches: u64,
    /// From the first row encoded to the last flush acknowledged.
    pub elapsed: Duration,
    /// Time spent in flushes (HTTP request until QuestDB's answer).
    pub flush_time: Duration,
    /// CPU of the writing thread.
    pub cpu: Duration,
    pub table: String,
}

impl BareReport {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Create the tables with nmsd's DDL and the sink's default partitioning.
fn create_tables(cfg: &QuestDbConfig, names: &TableNames) -> Result<(), String> {
    let client = ExecClient::new(&cfg.url, Duration::from_secs(30));
    for sql in schema::ddl(names, cfg.flows_partition, cfg.rollup_partition) {
        client.exec(&sql).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A sender configured like nmsd's sink (ILP/HTTP, protocol v1 pinned, its own retries off).
pub fn sender(url: &str, request_timeout: Duration) -> Result<Sender, String> {
    let cfg = QuestDbConfig {
        url: url.to_string(),
        ..QuestDbConfig::default()
    };
    let hp = cfg.host_port()?;
    let conf = format!(
        "http::addr={hp};retry_timeout=0;request_timeout={};",
        request_timeout.as_millis().max(1)
    );
    questdb::ingress::SenderBuilder::from_conf(&conf)
        .and_then(|b| b.protocol_version(ProtocolVersion::V1))
        .and_then(|b| b.build())
        .map_err(|e| format!("questdb client: {e}"))
}

/// Write `cfg.rows` rows cycling over `records`, times moved so each pass ends now.
pub fn bare_write(
    cfg: &BareConfig,
    records: &[FlowRecord],
    stop: &AtomicBool,
) -> Result<BareReport, String> {
    if records.is_empty() {
        return Err("no records to write".into());
    }
    // The sink's own table names and DDL, with this prefix.
    let sink_cfg = QuestDbConfig {
        url: cfg.url.clone(),
        table_prefix: cfg.table_prefix.clone(),
        ..QuestDbConfig::default()
    };
    let names = sink_cfg.table_names();
    TableName::new(&names.flows).map_err(|e| format!("table name {}: {e}", names.flows))?;
    create_tables(&sink_cfg, &names)?;
    let mut sender = sender(&cfg.url, cfg.request_timeout)?;
    let mut buf = sender.new_buffer();
    let mut w = RowWriter::new(names.clone());
    let last_end = records.iter().map(|r| r.end_ms).max().unwrap_or(0);
    let batch = cfg.batch_rows.max(1);
    let mut report = BareReport {
        table: names.flows.clone(),
        ..BareReport::default()
    };
    let cpu0 = crate::procfs::thread_cpu_time();
    let start = Instant::now();
    let mut written = 0u64;
    let batch_ids = unix_ms() * 1000;
    'outer: while written < cfg.rows {
        let shift = unix_ms().saturating_sub(last_end);
        for r in records {
            if written + buf.row_count() as u64 >= cfg.rows || stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            // Times moved to now, the rest as decoded.
            let moved = FlowRecord {
                start_ms: r.start_ms + shift,
                end_ms: r.end_ms + shift,
                ..*r
            };
            // Batch ids as the sink writes them (the DEDUP keys of the flows table).
            let key = RowKey {
                batch: batch_ids + written,
                row: buf.row_count() as u32,
            };
            w.flow(&mut buf, &moved, key)
                .map_err(|e| format!("encoding a row: {e}"))?;
            if buf.row_count() >= batch || buf.len() as u64 >= cfg.batch_bytes {
                written += flush(&mut sender, &mut buf, &mut report)?;
            }
        }
    }
    if buf.row_count() > 0 {
        written += flush(&mut sender, &mut buf, &mut report)?;
    }
    report.elapsed = start.elapsed();
    report.cpu = crate::procfs::thread_cpu_time().saturating_sub(cpu0);
    report.rows = written;
    Ok(report)
}

fn flush(sender: &mut Sender, buf: &mut Buffer, report: &mut BareReport) -> Result<u64, String> {
    let rows = buf.row_count() as u64;
    let t = Instant::now();
    sender
        .flush_and_keep_with_flags(buf, true)
        .map_err(|e| format!("flush: {e}"))?;
    report.flush_time += t.elapsed();
    report.batches += 1;
    buf.clear();
    Ok(rows)
}

/// Rows of `SELECT count() FROM table` once QuestDB has applied its WAL, waiting up to
/// `wait` for the count to reach `expect`.
pub fn count_rows(url: &str, table: &str, expect: u64, wait: Duration) -> Result<u64, String> {
    let client = ExecClient::new(url, Duration::from_secs(30));
    let deadline = Instant::now() + wait;
    loop {
        let body = client
            .exec(&format!("SELECT count() FROM {table}"))
            .map_err(|e| e.to_string())?;
        // {"query":...,"columns":[...],"timestamp":-1,"dataset":[[N]],"count":1}
        let n = body
            .split("\"dataset\":[[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("unexpected answer: {body}"))?;
        if n >= expect || Instant::now() > deadline {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{GenConfig, generate};

    #[test]
    fn rows_encode_like_the_sink() {
        let recs = decoded_records(&generate(&GenConfig {
            flows: 100,
            ..GenConfig::default()
        }));
        assert_eq!(recs.len(), 100);
        let mut buf = Buffer::new(ProtocolVersion::V1);
        let names = QuestDbConfig {
            table_prefix: "t_".into(),
            ..QuestDbConfig::default()
        }
        .table_names();
        let mut w = RowWriter::new(names);
        for (i, r) in recs.iter().enumerate() {
            let key = RowKey {
                batch: 1,
                row: i as u32,
            };
            w.flow(&mut buf, r, key).expect("row");
        }
        assert_eq!(buf.row_count(), 100);
        let text = String::from_utf8_lossy(buf.as_bytes());
        let first = text.lines().next().expect("a row");
        assert!(first.starts_with("t_flows,exporter=127.0.0.1,version=v9"));
        for col in [
            "start_ts=",
            "observation_domain=",
            "src_port=",
            "sampling_interval=",
        ] {
            assert!(first.contains(col), "{col} missing in {first}");
        }
    }
}
