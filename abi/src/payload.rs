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

/// Host to plugin module (the root module's `call`): the live entries of the
/// plugin's token cache, as JSON the same plugin family can import. The
/// answer holds tokens: the host passes it on and never logs it.
pub const TOKEN_CACHE_EXPORT_V1: &str = "token-cache.export.v1";

/// Host to plugin module: entries from [`TOKEN_CACHE_EXPORT_V1`] of another
/// version, to be merged into this version's cache. Answers `{}`.
pub const TOKEN_CACHE_IMPORT_V1: &str = "token-cache.import.v1";
