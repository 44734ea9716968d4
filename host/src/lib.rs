//! The posthandler host: finds, checks and loads posthandler plugins, and runs
//! an export context's chain of posthandlers on export records.
//!
//! The binary `posthandler-host` is a thin command line over this library.
//!
//! # Parts
//!
//! - [`server_type`]: which installation this is (`dev`, `test`, `prod`),
//!   from the command line or the environment, never from a context.
//! - [`preflight`]: checks a file is a complete shared library for this
//!   machine before it is opened.
//! - [`loader`]: the plugin folder, private copies, abi_stable's checks and
//!   the plugins' metadata.
//! - [`context`]: the export context file and its chain entries.
//! - [`destination`]: where a posthandler's values go (JSON Pointers into the
//!   record, labels of later posthandlers' fields).
//! - [`live`]: the plugin folder while `serve` runs: watching, loading new
//!   versions, swapping the chain new records start on.
//! - [`normalize`]: the suite's spellings of keys and values, turned into
//!   the documented ones when a context is loaded.
//! - [`secrets`]: `env:` and `file:` references in secret fields.
//! - [`check`]: every problem of a context at once, without the network.
//! - [`fields`]: the suite's "Destination Field" choice for a chain.
//! - [`schema`]: a JSON Schema of contexts, from the same descriptions.
//! - [`logfmt`]: the binary's text and JSON log lines.
//! - [`progress`]: the counters and progress line of `serve`.
//! - [`chain`]: configures each posthandler once per context and runs
//!   records through the chain.
//! - [`plugin_log`]: the log sink plugins write to.
//! - [`serve`]: the JSON-lines stream of records, with workers, deadlines
//!   and ordered output.
//!
//! # Log levels
//!
//! Decisions (a plugin skipped, a system not selected) are logged at debug,
//! what an operator should see once per run at info, and configuration
//! mistakes at warn. Nothing here logs a record's contents, a context's
//! secret fields or a value written to a destination field.

#![deny(missing_docs)]

pub mod chain;
pub mod check;
pub mod context;
pub mod destination;
pub mod error;
pub mod fields;
pub mod live;
pub mod loader;
pub mod logfmt;
pub mod normalize;
pub mod plugin_log;
pub mod preflight;
pub mod progress;
pub mod schema;
pub mod secrets;
pub mod serve;
pub mod server_type;

pub use error::{Error, ExitCode};
