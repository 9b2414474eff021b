//! Stamps the build with the git revision it was made from
//! (`TRACKING_REVISION`: `tracking --version`, the `tracking_build_info`
//! series). A source tree without `.git` (an image build) passes it in
//! the environment, or gets `unknown`. A tree with uncommitted changes is
//! marked `-dirty`, so a measurement never names a commit it did not run.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=TRACKING_REVISION");
    let revision = std::env::var("TRACKING_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{rev}-dirty") } else { rev })
        })
        .unwrap_or_else(|| "unknown".to_string());
    // A new commit (HEAD moves, or the branch it names does) restamps, and
    // so does any edit of the sources (the dirty mark).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=TRACKING_REVISION={revision}");
}
