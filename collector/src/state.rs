//! The state directory: template caches that survive restarts.

use std::path::{Path, PathBuf};

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
