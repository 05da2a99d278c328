//! Records the git commit scanwatch is built from, for the
//! `scanwatch_build_info` metric: `git rev-parse --short HEAD`, or "unknown"
//! outside a git checkout or without git.

use std::path::Path;
use std::process::Command;

fn main() {
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SCANWATCH_GIT_HASH={hash}");

    // Rebuild when HEAD moves: a checkout changes HEAD, a commit changes the
    // branch's ref. A path that does not exist would rebuild every time.
    println!("cargo:rerun-if-changed=build.rs");
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    for name in std::iter::once("HEAD".to_owned()).chain(branch) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
