//! Failures a test asks for through the record.
//!
//! Two top-level keys of a record turn this plugin into a misbehaving one:
//!
//! - `"panic": true` makes `process` panic (inside `catch_panic`, so the host
//!   gets an [`ErrorKind::Internal`] error and keeps running);
//! - `"fail": "<kind>"`, with a kind of `configuration`, `authorization`,
//!   `transport`, `invalid_response` or `internal`, makes `process` return a
//!   [`PluginError`] of that kind.
//!
//! Any other value of `fail` is refused as a configuration error, so that a
//! typo in a test does not pass silently.

use posthandler_abi::{ErrorKind, PluginError};
use serde_json::Value;

/// The message of every requested failure.
pub const MESSAGE: &str = "test failure requested by the record";

/// The kinds a record may ask for, by the name `ErrorKind::as_str` gives.
const KINDS: [ErrorKind; 5] = [
    ErrorKind::Configuration,
    ErrorKind::Authorization,
    ErrorKind::Transport,
    ErrorKind::InvalidResponse,
    ErrorKind::Internal,
];

/// Panics or returns the error `record` asks for; `Ok` when it asks for none.
pub fn requested(record: &Value) -> Result<(), PluginError> {
    if record.get("panic") == Some(&Value::Bool(true)) {
        panic!("panic requested by the record");
    }
    let Some(asked) = record.get("fail") else {
        return Ok(());
    };
    let kind = KINDS
        .into_iter()
        .find(|kind| asked.as_str() == Some(kind.as_str()))
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::Configuration,
                format!("record key 'fail' is {asked}, not one of the failure kinds"),
            )
        })?;
    Err(PluginError::new(kind, MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_record_asks_for_nothing() {
        assert!(requested(&json!({"id": 1, "panic": false})).is_ok());
    }

    #[test]
    fn every_kind_can_be_asked_for() {
        for kind in KINDS {
            let err = requested(&json!({"fail": kind.as_str()})).unwrap_err();
            assert_eq!(err.kind(), kind);
            assert_eq!(err.message.as_str(), MESSAGE);
        }
    }

    #[test]
    fn an_unknown_kind_is_a_configuration_error() {
        let err = requested(&json!({"fail": "sometimes"})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert!(err.message.contains("\"sometimes\""), "{}", err.message);
    }

    #[test]
    #[should_panic(expected = "panic requested by the record")]
    fn panic_true_panics() {
        let _ = requested(&json!({"panic": true}));
    }
}
