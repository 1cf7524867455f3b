//! The hardening suite: retries, optimistic concurrency, a model of the store checked against random
//! operations, crashes, concurrent processes, lost connections and hostile input. Each behaviour runs
//! on every backend where it means something. `CHATSTORE_SLOW=1` makes the random and crash runs
//! long; without it they run a short version fit for every CI run.

mod retries;

