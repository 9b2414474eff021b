//! The HTTP front end, end to end, in-process on port 0: the API, its
//! contract (docs/openapi.json), the connections (token, internal
//! listener, keep-alive), a flood of idle connections, and bad requests on
//! raw sockets. One test binary for all
//! of them (each binary is a link step of its own).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod connections;
mod contract;
mod flood;
mod hardening;
mod schema;
