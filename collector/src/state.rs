//! The state directory: template caches that survive restarts.

use std::path::{Path, PathBuf};

/// Whether `run` will be able to create and write `state_dir`, without creating anything: the
/// folder, or else its nearest existing ancestor, must be a writable directory.
pub fn check_writable(state_dir: &Path) -> anyhow::Result<()> {
    let existing = state_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow::anyhow!("state_dir {} contains a NUL byte", state_dir.display()))?;
    // SAFETY: access() reads a valid NUL-terminated path and has no other effect.
    let writable =
        existing.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if !writable {
        anyhow::bail!(
            "the state directory {} cannot be created or written ({} is not a writable \
             folder); set [general] state_dir to a writable folder",
            state_dir.display(),
            existing.display()
        );
    }
    Ok(())
}

/// Template caches live in `<state_dir>/templates/worker-<n>.txt`, one per parse worker.
#[derive(Clone, Debug)]
pub struct TemplateStore {
    dir: PathBuf,
}

impl TemplateStore {
    pub fn new(state_dir: &Path) -> Self {
        TemplateStore {
            dir: state_dir.join("templates"),
        }
    }

    /// Create the folder, with an error that says what to do.
    pub fn prepare(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the state directory {}: {e}; set [general] state_dir to a \
                 writable folder",
                self.dir.display()
            )
        })
    }

    /// Everything saved by any worker of any earlier run, concatenated. Exporters may land on a
    /// different worker after a restart, so every worker loads all of it.
    pub fn load_all(&self) -> String {
        let mut text = String::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return text;
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        paths.sort();
        for p in paths {
            match std::fs::read_to_string(&p) {
                Ok(t) => {
                    text.push_str(&t);
                    text.push('\n');
                }
                Err(e) => tracing::warn!("cannot read template cache {}: {e}", p.display()),
            }
        }
        text
    }

    /// Replace a worker's file atomically (write to a temporary file, then rename).
    pub fn save(&self, worker: usize, text: &str) {
        let path = self.dir.join(format!("worker-{worker}.txt"));
        let tmp = self.dir.join(format!(".worker-{worker}.txt.tmp"));
        let result = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!("cannot save template cache {}: {e}", path.display());
        }
    }

    /// Remove files of workers that no longer exist (after lowering `workers`); their content
    /// was loaded by every current worker and will be saved again by them.
    pub fn remove_beyond(&self, workers: usize) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let n = name
                .strip_prefix("worker-")
                .and_then(|s| s.strip_suffix(".txt"))
                .and_then(|s| s.parse::<usize>().ok());
            if n.is_some_and(|n| n >= workers) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The SNMP engine identity (RFC 3414) of the trap source `source`: an engine ID kept across
/// restarts and a boots counter incremented at every start, in `<state_dir>/snmp/engine-<source>`.
/// The file of the single receiver nmsd had before sources had ids (`snmp/engine`) is taken
/// over by the first source that starts, so senders configured with that engine ID keep working.
pub fn snmp_engine(
    state_dir: &Path,
    source: &str,
    configured: Option<&str>,
) -> anyhow::Result<(Vec<u8>, u32)> {
    let dir = state_dir.join("snmp");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("engine-{source}"));
    let old = dir.join("engine");
    if !path.exists() && old.exists() {
        let _ = std::fs::rename(&old, &path);
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines = text.lines();
    let stored_id = lines
        .next()
        .and_then(|h| nmsd_parsers::snmp::unhex(h.trim()).filter(|b| !b.is_empty()));
    let boots: u32 = lines
        .next()
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0);
    let id = match configured {
        Some(h) => nmsd_parsers::snmp::unhex(h)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| anyhow::anyhow!("engine_id is not hex"))?,
        None => stored_id
            .clone()
            .unwrap_or_else(nmsd_snmp::traps::new_engine_id),
    };
    // A new identity starts its boots afresh.
    let boots = if stored_id.as_deref() == Some(id.as_slice()) {
        boots.saturating_add(1)
    } else {
        1
    };
    let hex = nmsd_parsers::snmp::hex(&id);
    std::fs::write(&path, format!("{hex}\n{boots}\n"))
        .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", path.display()))?;
    Ok((id, boots))
}
