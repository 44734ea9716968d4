//! The error value a plugin returns across the boundary, and its kinds.
//!
//! The kind travels as a number rather than as a `#[repr(u8)]` enum so that
//! a later interface version can add kinds without changing the layout: a
//! host that does not know a code treats it as [`ErrorKind::Internal`].

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, as far as the host needs to know to pick an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The context configuration is wrong; nothing was sent anywhere.
    Configuration,
    /// The authorization server refused the request (RFC 6749 section 5.2).
    Authorization,
    /// The server could not be reached, or did not answer in time.
    Transport,
    /// The server answered with something that is not a usable response.
    InvalidResponse,
    /// A bug or panic inside the plugin.
    Internal,
    /// The plugin does not know the versioned payload it was sent.
    Unsupported,
}

impl ErrorKind {
    /// The number that stands for this kind on the boundary.
    pub const fn code(self) -> u8 {
        match self {
            ErrorKind::Configuration => 1,
            ErrorKind::Authorization => 2,
            ErrorKind::Transport => 3,
            ErrorKind::InvalidResponse => 4,
            ErrorKind::Internal => 5,
            ErrorKind::Unsupported => 6,
        }
    }

    /// The kind a code stands for; unknown codes are [`ErrorKind::Internal`].
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => ErrorKind::Configuration,
            2 => ErrorKind::Authorization,
            3 => ErrorKind::Transport,
            4 => ErrorKind::InvalidResponse,
            6 => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        }
    }

    /// The name used in logs and in `serve`'s output lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Configuration => "configuration",
            ErrorKind::Authorization => "authorization",
            ErrorKind::Transport => "transport",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Internal => "internal",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a plugin.
///
/// The message is one line, names the field or the cause, and never holds a
/// secret: plugins build it from their own text, not from server bodies
/// verbatim.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// [`ErrorKind::code`] of the kind.
    pub kind_code: u8,
    /// What went wrong, for the operator.
    pub message: RString,
}

impl PluginError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind_code: kind.code(),
            message: RString::from(message.into()),
        }
    }

    /// The answer to a versioned payload `kind` the receiver does not know
    /// ([`ErrorKind::Unsupported`]). The kind is quoted escaped and cut to
    /// 60 characters, so the message stays one short line.
    pub fn unsupported(kind: &str) -> Self {
        let shown: String = kind.chars().take(60).collect();
        PluginError::new(
            ErrorKind::Unsupported,
            format!("payload kind '{}' is not supported", shown.escape_debug()),
        )
    }

    /// The kind of the error.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.kind_code)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_code() {
        for kind in [
            ErrorKind::Configuration,
            ErrorKind::Authorization,
            ErrorKind::Transport,
            ErrorKind::InvalidResponse,
            ErrorKind::Internal,
            ErrorKind::Unsupported,
        ] {
            assert_eq!(ErrorKind::from_code(kind.code()), kind);
        }
    }

    #[test]
    fn unsupported_payloads_are_named_on_one_short_line() {
        let err = PluginError::unsupported("cache.v9");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert_eq!(
            err.message.as_str(),
            "payload kind 'cache.v9' is not supported"
        );
        let odd = PluginError::unsupported(&format!("a\nb{}", "x".repeat(100)));
        assert!(!odd.message.contains('\n'));
        assert!(odd.message.len() < 100, "{}", odd.message);
    }

    #[test]
    fn unknown_codes_are_internal() {
        assert_eq!(ErrorKind::from_code(0), ErrorKind::Internal);
        assert_eq!(ErrorKind::from_code(200), ErrorKind::Internal);
    }
}
