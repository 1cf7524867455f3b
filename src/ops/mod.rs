//! Operations: what one facade call does when it is more than one query — an append that
//! recognises its own retries, a branch's writes and reads, an import, a fork, a truncation, a context window read page by
//! page, a search. Each takes the connection (and input the facade has validated) and calls query
//! functions; the facade owns the connection and the transaction around it — but for an append,
//! which is one statement where the query layer can write it so and begins its transaction itself
//! elsewhere (`append.rs`). Calls of a single query need no operation: the facade calls the query
//! function itself.

pub(crate) mod append;
pub(crate) mod branch;
pub(crate) mod context;
pub(crate) mod fork;
pub(crate) mod import;
pub(crate) mod search;
pub(crate) mod truncate;
