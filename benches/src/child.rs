//! Child processes the harness starts and must stop: collectors under test and their helpers.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process in its own process group, stopped (the whole group: forked helpers such as
/// nfacctd's plugins too) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    /// Signal that asks it to stop cleanly. nfacctd keeps SIGTERM blocked while it waits for
    /// data, so it gets SIGINT.
    stop_signal: libc::c_int,
}

impl Proc {
    /// Spawn `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, cmd: &mut Command, stop_signal: libc::c_int) -> io::Result<Proc> {
        let child = cmd.process_group(0).spawn()?;
        Ok(Proc {
            name: name.into(),
            child: Some(child),
            stop_signal,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn signal_group(pid: u32, sig: libc::c_int) {
        // SAFETY: kill(2) on the process group we created (its leader is our unreaped child, so
        // the group id cannot have been reused).
        unsafe {
            libc::kill(-(pid as libc::pid_t), sig);
        }
    }

    /// Ask it to stop, wait up to `grace`, then kill the group. Returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id();
        if let Ok(Some(st)) = c.try_wait() {
            Self::signal_group(pid, libc::SIGKILL); // leftovers of the group, if any
            return Some(st);
        }
        Self::signal_group(pid, self.stop_signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                // Helpers that outlive their leader (a plugin still flushing) go too.
                std::thread::sleep(Duration::from_millis(100));
                Self::signal_group(pid, libc::SIGKILL);
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "nmsd-e2e: {} did not stop in {grace:?}; killing it",
            self.name
        );
        Self::signal_group(pid, libc::SIGKILL);
        c.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
    }
}
