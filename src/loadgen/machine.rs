//! What a report must say to be compared with another: the build that
//! ran (version and git revision), when, on what machine, and the exact
//! arguments. Read from `/proc` and `/etc/os-release` on Linux; a field
//! that cannot be read is `None`, never a guess.

use serde::Serialize;
use std::path::Path;

/// The build: the package version and the git revision `build.rs` stamps
/// (`-dirty` for a tree with uncommitted changes), as `tracking --version`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Build {
    pub version: String,
    pub revision: String,
    /// `debug` or `release` (any optimized profile): a debug build's
    /// figures are far from the service's.
    pub profile: String,
}

impl Build {
    /// This binary's build.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: crate::REVISION.to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        }
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Machine {
    pub hostname: Option<String>,
    /// CPUs this process may run on (affinity and cgroup limits applied).
    pub cpus: usize,
    pub cpu_model: Option<String>,
    /// Kernel name and release (`uname -sr`).
    pub kernel: Option<String>,
    /// The distribution's name (`PRETTY_NAME` of os-release), else the
    /// target OS.
    pub os: String,
    pub arch: String,
    pub memory_total_mib: Option<u64>,
}

impl Machine {
    /// This machine, read from `/proc` (Linux).
    pub fn current() -> Self {
        Self::read(Path::new("/"))
    }

    /// The machine whose `/proc` and `/etc` are under `root`.
    fn read(root: &Path) -> Self {
        let text = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        let line = |p: &str| {
            text(p)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let kernel = match (
            line("proc/sys/kernel/ostype"),
            line("proc/sys/kernel/osrelease"),
        ) {
            (Some(os), Some(release)) => Some(format!("{os} {release}")),
            (None, Some(release)) => Some(release),
            _ => None,
        };
        Self {
            hostname: line("proc/sys/kernel/hostname"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: text("proc/cpuinfo").and_then(|t| field(&t, "model name", ':')),
            kernel,
            os: text("etc/os-release")
                .and_then(|t| field(&t, "PRETTY_NAME", '='))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| std::env::consts::OS.to_string()),
            arch: std::env::consts::ARCH.to_string(),
            memory_total_mib: text("proc/meminfo")
                .and_then(|t| field(&t, "MemTotal", ':'))
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib / 1024),
        }
    }
}

/// The value of the first `key<sep>value` line of `text`, trimmed.
fn field(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_read_from_proc_and_os_release() {
        // Given a root with the files a Linux machine has
        let root = tempfile::tempdir().unwrap();
        let put = |p: &str, s: &str| {
            let path = root.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, s).unwrap();
        };
        put("proc/sys/kernel/hostname", "bench-1\n");
        put("proc/sys/kernel/ostype", "Linux\n");
        put("proc/sys/kernel/osrelease", "6.12.8-amd64\n");
        put(
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n",
        );
        put(
            "proc/meminfo",
            "MemTotal:       24597464 kB\nMemFree:         1000 kB\n",
        );
        put(
            "etc/os-release",
            "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        // Then each field is its file's
        let m = Machine::read(root.path());
        assert_eq!(m.hostname.as_deref(), Some("bench-1"));
        assert_eq!(m.kernel.as_deref(), Some("Linux 6.12.8-amd64"));
        assert_eq!(m.cpu_model.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(m.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(m.memory_total_mib, Some(24_020));
        assert!(m.cpus >= 1);
        assert_eq!(m.arch, std::env::consts::ARCH);
    }

    #[test]
    fn a_machine_without_proc_has_no_guesses() {
        let root = tempfile::tempdir().unwrap();
        let m = Machine::read(root.path());
        assert_eq!(
            (m.hostname, m.kernel, m.cpu_model, m.memory_total_mib),
            (None, None, None, None)
        );
        assert_eq!(m.os, std::env::consts::OS);
    }

    #[test]
    fn the_build_is_this_binarys() {
        let b = Build::current();
        assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(b.revision, crate::REVISION);
        assert!(!b.revision.is_empty());
        assert_eq!(b.profile == "debug", cfg!(debug_assertions));
    }
}
