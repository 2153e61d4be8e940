//! Records what `nmsd_build_info` names: the compiler Cargo builds with (from the `RUSTC` Cargo
//! hands to build scripts) and the git commit built, both only known at build time.

use std::path::Path;
use std::process::Command;

/// The trimmed standard output of a command that succeeded.
fn output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&dir);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"], dir).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NMSD_RUSTC_VERSION={version}");

    // NMSD_GIT_COMMIT names the commit where there is no repository (a source tarball, a
    // package build); else git says. No "-dirty" mark: this script reruns when HEAD moves, not
    // when a file is edited, so the mark would go stale.
    let commit = std::env::var("NMSD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"], dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NMSD_GIT_COMMIT={commit}");

    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-env-changed=NMSD_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit moves HEAD or the branch it points at (loose, or packed by git gc).
    for git_path in ["HEAD", "packed-refs"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", git_path], dir) {
            println!("cargo:rerun-if-changed={}", dir.join(p).display());
        }
    }
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"], dir)
        && let Some(p) = output("git", &["rev-parse", "--git-path", &branch], dir)
    {
        println!("cargo:rerun-if-changed={}", dir.join(p).display());
    }
}
