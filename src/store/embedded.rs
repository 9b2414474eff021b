//! The embedded event store.
