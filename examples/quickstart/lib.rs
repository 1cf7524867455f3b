//! Empty: the package exists for its example, `quickstart.rs` (Cargo wants a library or a binary
//! in every package).
