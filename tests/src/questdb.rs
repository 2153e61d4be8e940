//! A real QuestDB server (the `org.questdb:questdb` jar from Maven Central) on loopback ports.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// QuestDB version the tests pin; `tests/install-deps.sh` fetches the same.
pub const VERSION: &str = "9.3.4";

/// Where the jar is: `$NMSD_QUESTDB_JAR`, else the local Maven repository.
pub fn jar() -> PathBuf {
    if let Some(p) = std::env::var_os("NMSD_QUESTDB_JAR") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let p = home.join(format!(
        ".m2/repository/org/questdb/questdb/{VERSION}/questdb-{VERSION}.jar"
    ));
    assert!(
        p.exists(),
        "QuestDB jar not found at {}: run tests/install-deps.sh",
        p.display()
    );
    p
}

/// A running QuestDB.
pub struct QuestDb {
    pub http_port: u16,
    pub dir: PathBuf,
    agent: ureq::Agent,
}

fn start_process(dir: &std::path::Path, http_port: u16) -> Child {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("questdb conf dir");
    // Only HTTP is used (ILP over HTTP, /exec): PostgreSQL wire and ILP over TCP are off, so
    // they bind nothing. A port picked free for them could be taken by a parallel test before
    // QuestDB bound it, and it then failed to start (CI, 2026-12-08: "could not bind socket"
    // for tcp-line-server).
    std::fs::write(
        conf.join("server.conf"),
        format!(
            "http.bind.to=127.0.0.1:{http_port}\n\
             pg.enabled=false\n\
             line.tcp.enabled=false\n\
             http.min.enabled=false\n\
             line.udp.enabled=false\n\
             telemetry.enabled=false\n\
             cairo.wal.apply.look.ahead.txn.count=20\n\
             cairo.writer.data.append.page.size=262144\n\
             cairo.o3.column.memory.size=262144\n"
        ),
    )
    .expect("server.conf");
    let log = std::fs::File::create(dir.join("questdb.log")).expect("questdb log");
    // QuestDB unpacks its native library into java.io.tmpdir on every start and never removes
    // it; keep that inside the server's own directory.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("questdb tmp dir");
    let mut cmd = Command::new("java");
    cmd.args(["-Xms256m", "-Xmx1g"])
        .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
        .arg("-cp")
        .arg(jar())
        .args(["io.questdb.ServerMain", "-d"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log fd")))
        .stderr(Stdio::from(log));
    // SAFETY: prctl in the child before exec; it only sets the parent-death signal so the
    // server cannot outlive the test process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .expect("java runs QuestDB (install a JDK: tests/install-deps.sh)")
}

impl QuestDb {
    /// One server shared by all tests of a test binary. It is started from a thread that lives
    /// as long as the process, because PR_SET_PDEATHSIG fires when the *thread* that forked
    /// the child exits.
    pub fn shared() -> &'static QuestDb {
        static SHARED: OnceLock<QuestDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = crate::scratch("questdb");
            let port = crate::free_tcp_port();
            let (tx, rx) = std::sync::mpsc::channel();
            let d = dir.clone();
            std::thread::spawn(move || {
                let mut child = start_process(&d, port);
                let _ = tx.send(());
                let _ = child.wait();
            });
            let _ = rx.recv();
            let q = QuestDb {
                http_port: port,
                dir,
                agent: ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .http_status_as_error(false)
                    .build()
                    .into(),
            };
            let up = crate::wait_for(Duration::from_secs(90), || q.try_query("select 1").ok());
            assert!(
                up.is_some(),
                "QuestDB did not start within 90 s; see {}",
                q.dir.join("questdb.log").display()
            );
            q
        })
    }

    /// A server of the test's own that it can stop and start again on the same data and
    /// port (outage tests). Started from the calling thread, which must outlive it.
    pub fn owned(name: &str) -> OwnedQuestDb {
        let dir = crate::scratch(name);
        let port = crate::free_tcp_port();
        let q = QuestDb {
            http_port: port,
            dir,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
        };
        let mut o = OwnedQuestDb { q, child: None };
        o.start();
        o
    }

    /// Whether the server answers a query now.
    pub fn answers(&self) -> bool {
        self.try_query("select 1").is_ok()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn try_query(&self, sql: &str) -> Result<Vec<Vec<Value>>, String> {
        let mut resp = self
            .agent
            .get(format!("{}/exec", self.url()))
            .query("query", sql)
            .call()
            .map_err(|e| e.to_string())?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("{err}"));
        }
        Ok(v.get("dataset")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Run SQL; panics with QuestDB's message on error.
    pub fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("query failed: {sql}: {e}"))
    }

    /// A single integer result (e.g. `select count() from t`), or None if the table is absent.
    pub fn scalar(&self, sql: &str) -> Option<i64> {
        self.try_query(sql).ok()?.first()?.first()?.as_i64()
    }

    /// Wait until WAL apply has caught up for `table` (writer txn = sequencer txn).
    pub fn wait_applied(&self, table: &str, timeout: Duration) {
        let sql =
            format!("select writerTxn, sequencerTxn from wal_tables() where name = '{table}'");
        let done = crate::wait_for(timeout, || {
            let rows = self.try_query(&sql).ok()?;
            let r = rows.first()?;
            (r.first()?.as_i64()? == r.get(1)?.as_i64()?).then_some(())
        });
        assert!(
            done.is_some(),
            "WAL apply for {table} did not catch up in {timeout:?}"
        );
    }
}

/// A QuestDB the test starts and stops (see [`QuestDb::owned`]).
pub struct OwnedQuestDb {
    pub q: QuestDb,
    child: Option<Child>,
}

impl OwnedQuestDb {
    /// Start the server (again) and wait until it answers queries.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(start_process(&self.q.dir, self.q.http_port));
        let up = crate::wait_for(Duration::from_secs(90), || self.q.answers().then_some(()));
        assert!(
            up.is_some(),
            "QuestDB did not start within 90 s; see {}",
            self.q.dir.join("questdb.log").display()
        );
    }

    /// Start the server without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(start_process(&self.q.dir, self.q.http_port));
    }

    /// Kill the server (an outage: no clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnedQuestDb {
    fn drop(&mut self) {
        self.stop();
    }
}
