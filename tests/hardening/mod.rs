//! The hardening suite: retries, optimistic concurrency, a model of the store checked against random
//! operations, crashes, concurrent processes, lost connections and hostile input. Each behaviour runs
//! on every backend where it means something. `CHATSTORE_SLOW=1` makes the random and crash runs
//! long; without it they run a short version fit for every CI run.

mod model;
mod retries;

/// Whether the long versions of the random and crash runs were asked for (`CHATSTORE_SLOW=1`).
pub fn slow() -> bool {
    std::env::var("CHATSTORE_SLOW").is_ok_and(|v| v == "1")
}
