//! The behavioural suite: every behaviour is written once and run on every enabled backend (a SQLite
//! file, in-memory SQLite and, with their features, a PostgreSQL and a MySQL database of its own),
//! by the backend matrix of `tests/support`. One module per behaviour group.
//!
//! This binary's global allocator is `allocation_counter`'s (linked by the memory test of
//! `messages`): it counts, per thread, what goes through Rust's allocator.

mod support;

mod admin;
mod branches;
#[cfg(feature = "citus")]
mod citus;
mod coexistence;
mod concurrency;
mod connections;
mod context;
mod conversations;
mod fork;
mod hardening;
mod messages;
mod organise;
mod round_trips;
mod schema;
mod search;
#[cfg(feature = "serde")]
mod serialization;
#[cfg(feature = "tracing")]
mod spans;
mod tokens;
mod undo;
mod validation;
