//! Turning an issued token into the values of the destination fields.
//!
//! This file owns the JSON each destination receives and the expiry formats.
//! Where a destination points (a JSON Pointer into the record or a later
//! posthandler's field label) is resolved by the host, not here.

use std::time::Duration;
use std::time::SystemTime;

use abi_stable::std_types::RString;
use posthandler_abi::FieldWrite;
use serde_json::Value;

use crate::config::Destinations;
use crate::config::ExpiresFormat;
use crate::token::IssuedToken;

/// One write per configured destination, in the order token, refresh token,
/// expires.
///
/// A value the server did not send (refresh token, `expires_in`) is written
/// as `None`, which removes the field, so that no stale value of an earlier
/// run survives.
pub fn field_writes(
    destinations: &Destinations,
    format: ExpiresFormat,
    token: &IssuedToken,
) -> Vec<FieldWrite> {
    let response = &token.response;
    let string = |text: &str| Some(Value::String(text.to_owned()));
    let mut writes = Vec::with_capacity(3);
    if let Some(destination) = &destinations.token {
        writes.push(write(destination, string(response.access_token.secret())));
    }
    if let Some(destination) = &destinations.refresh_token {
        let value = response
            .refresh_token
            .as_ref()
            .and_then(|token| string(token.secret()));
        writes.push(write(destination, value));
    }
    if let Some(destination) = &destinations.expires {
        let value = response
            .expires_in
            .map(|seconds| expires(format, token.requested_at, seconds));
        writes.push(write(destination, value));
    }
    writes
}

/// The expiry of a token asked for at `requested_at` that lives `seconds`.
///
/// `seconds` is at most [`crate::response::MAX_EXPIRES_IN`], so the sum stays
/// far inside what `SystemTime` and RFC 3339 can hold.
pub fn expires(format: ExpiresFormat, requested_at: SystemTime, seconds: u64) -> Value {
    let at = requested_at + Duration::from_secs(seconds);
    match format {
        ExpiresFormat::Rfc3339 => Value::String(humantime::format_rfc3339_seconds(at).to_string()),
        ExpiresFormat::EpochSeconds => {
            let since_epoch = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            Value::from(since_epoch.as_secs())
        }
        ExpiresFormat::ExpiresIn => Value::from(seconds),
    }
}

fn write(destination: &str, value: Option<Value>) -> FieldWrite {
    FieldWrite {
        destination: RString::from(destination),
        value_json: value.map(|value| RString::from(value.to_string())).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use abi_stable::std_types::ROption;

    use crate::response::TokenResponse;
    use crate::secret::AccessToken;
    use crate::secret::RefreshToken;

    fn shown(write: &FieldWrite) -> (String, Option<String>) {
        let value = match &write.value_json {
            ROption::RSome(value) => Some(value.to_string()),
            ROption::RNone => None,
        };
        (write.destination.to_string(), value)
    }

    /// 2026-12-03T17:00:00Z
    const REQUESTED_AT: u64 = 1_796_317_200;

    fn token(expires_in: Option<u64>, refresh: Option<&str>) -> IssuedToken {
        IssuedToken {
            response: TokenResponse {
                access_token: AccessToken::new("at-1"),
                token_type: "Bearer".into(),
                expires_in,
                refresh_token: refresh.map(RefreshToken::new),
            },
            requested_at: SystemTime::UNIX_EPOCH + Duration::from_secs(REQUESTED_AT),
        }
    }

    fn all_destinations() -> Destinations {
        Destinations {
            token: Some("/auth/accessToken".into()),
            refresh_token: Some("/auth/refreshToken".into()),
            expires: Some("/auth/expires".into()),
        }
    }

    fn writes(format: ExpiresFormat, token: &IssuedToken) -> Vec<(String, Option<String>)> {
        field_writes(&all_destinations(), format, token)
            .iter()
            .map(shown)
            .collect()
    }

    #[test]
    fn writes_every_destination_as_json() {
        assert_eq!(
            writes(ExpiresFormat::Rfc3339, &token(Some(3600), Some("rt-1"))),
            vec![
                ("/auth/accessToken".into(), Some("\"at-1\"".into())),
                ("/auth/refreshToken".into(), Some("\"rt-1\"".into())),
                (
                    "/auth/expires".into(),
                    Some("\"2026-12-03T18:00:00Z\"".into())
                ),
            ]
        );
    }

    #[test]
    fn missing_values_remove_their_fields() {
        assert_eq!(
            writes(ExpiresFormat::Rfc3339, &token(None, None)),
            vec![
                ("/auth/accessToken".into(), Some("\"at-1\"".into())),
                ("/auth/refreshToken".into(), None),
                ("/auth/expires".into(), None),
            ]
        );
    }

    #[test]
    fn expiry_formats() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(REQUESTED_AT);
        assert_eq!(
            expires(ExpiresFormat::EpochSeconds, at, 60),
            Value::from(REQUESTED_AT + 60)
        );
        assert_eq!(expires(ExpiresFormat::ExpiresIn, at, 60), Value::from(60));
        assert_eq!(
            expires(ExpiresFormat::Rfc3339, at, crate::response::MAX_EXPIRES_IN),
            Value::from("2163-01-09T23:28:15Z")
        );
    }

    #[test]
    fn only_configured_destinations_are_written() {
        let destinations = Destinations {
            token: Some("Header Value".into()),
            ..Default::default()
        };
        let writes = field_writes(
            &destinations,
            ExpiresFormat::Rfc3339,
            &token(Some(1), Some("r")),
        );
        assert_eq!(
            writes.iter().map(shown).collect::<Vec<_>>(),
            vec![("Header Value".into(), Some("\"at-1\"".into()))]
        );
    }
}
