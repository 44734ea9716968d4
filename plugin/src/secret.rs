//! Newtypes for the credentials and tokens the plugin handles.
//!
//! This file owns only the wrappers: [`ClientId`] (not secret, printed as is)
//! and [`ClientSecret`], [`AccessToken`], [`RefreshToken`], whose `Debug`
//! prints `[redacted]` and which have no `Display`. Where the values come from
//! and where they go is the business of `config`, `token` and `writes`.

use std::fmt;

/// What every secret's `Debug` prints instead of the value.
pub const REDACTED: &str = "[redacted]";

/// The client identifier (RFC 6749 section 2.2), the suite's `Rest User`.
///
/// Not a secret: it appears in server logs and may appear in ours.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientId(String);

impl ClientId {
    /// Wraps a client identifier.
    pub fn new(id: impl Into<String>) -> Self {
        ClientId(id.into())
    }

    /// The identifier as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            /// The secret value itself.
            ///
            /// # Security warning
            ///
            /// The value grants access to the export's destination. Pass it
            /// only to the request or field write that needs it; never put it
            /// into a log record, an error message or a `format!` that may
            /// end up in one.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&format_args!("{REDACTED}")).finish()
            }
        }
    };
}

secret_type! {
    /// The client secret (RFC 6749 section 2.3.1), the suite's `Rest Password`.
    ClientSecret
}

secret_type! {
    /// An access token issued by the authorization server (RFC 6749 section 1.4).
    AccessToken
}

secret_type! {
    /// A refresh token issued by the authorization server (RFC 6749 section 1.5).
    RefreshToken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_debug_as_redacted() {
        let shown = format!(
            "{:?} {:?} {:?}",
            ClientSecret::new("canary-secret"),
            AccessToken::new("canary-access"),
            RefreshToken::new("canary-refresh"),
        );
        assert_eq!(
            shown,
            "ClientSecret([redacted]) AccessToken([redacted]) RefreshToken([redacted])"
        );
    }

    #[test]
    fn secret_gives_the_value_back() {
        assert_eq!(ClientSecret::new("s3cr3t").secret(), "s3cr3t");
        assert_eq!(AccessToken::new("tok").secret(), "tok");
        assert_eq!(RefreshToken::new("ref").secret(), "ref");
    }

    #[test]
    fn client_id_is_not_secret() {
        assert_eq!(
            format!("{:?}", ClientId::new("shop-export")),
            "ClientId(\"shop-export\")"
        );
    }
}
