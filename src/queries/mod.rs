//! Query functions: each takes the connection first, runs SQL and nothing else. They never validate
//! input and never open a transaction; the store does both.

pub(crate) mod catalog;
pub(crate) mod conversations;
pub(crate) mod messages;
