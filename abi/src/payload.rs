//! Names of the versioned payloads that travel through the `call` functions.
//!
//! A payload kind is a string with a version suffix (`name.v1`); its body is
//! JSON. A side that does not know a kind answers
//! [`crate::ErrorKind::Unsupported`], and the caller goes on without it. New
//! capabilities arrive as new kinds, so the root module's layout never has to
//! change for them.

/// Host to plugin instance: counters of the instance as a JSON object
/// (token requests, cache hits, ...).
pub const STATS_V1: &str = "stats.v1";
