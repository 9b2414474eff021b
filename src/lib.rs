//! AlpesPartners Tracking: an actor-based stream processor that turns
//! interaction commands (click, view, like) into an immutable event journal
//! and live statistics.
//!
//! The map of the actors, their messages, and where events are persisted
//! and messages acknowledged is `actors.md` at the top of the repository.

pub mod actors;
pub mod app;
#[cfg(test)]
mod architecture;
pub mod check;
pub mod cli;
pub mod config;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod health;
pub mod http;
pub mod internal_events;
pub mod loadgen;
pub mod log;
pub mod probe;
pub mod process;
pub mod segfile;
pub mod store;
pub mod tls;
pub mod verify;
pub mod wire;

/// This build's version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision this build was made from (`build.rs`: `git rev-parse`,
/// or `TRACKING_REVISION` where the source has no `.git`, as in an image
/// build; `unknown` otherwise).
pub const REVISION: &str = env!("TRACKING_REVISION");
/// `--version`: the version and the revision.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TRACKING_REVISION"),
    ")"
);
