//! The server type of an installation: `dev`, `test` or `prod`.
//!
//! Host and plugins both speak of it: the host tells each plugin the server
//! type of the running installation (as [`ServerType::as_str`] in
//! [`crate::ConfigureRequest::server_type`]), and a plugin picks the
//! settings limited to it. Where it comes from is the host's business.

use std::fmt;

/// Which kind of installation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerType {
    /// Development.
    Dev,
    /// Test or staging.
    Test,
    /// Production.
    Prod,
}

impl ServerType {
    /// Every server type, in the order the suite lists them.
    pub const ALL: [ServerType; 3] = [ServerType::Dev, ServerType::Test, ServerType::Prod];

    /// The server type a string names: exactly `dev`, `test` or `prod`.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// The name in configurations: `dev`, `test` or `prod`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerType::Dev => "dev",
            ServerType::Test => "test",
            ServerType::Prod => "prod",
        }
    }
}

impl fmt::Display for ServerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for t in ServerType::ALL {
            assert_eq!(ServerType::parse(t.as_str()), Some(t));
        }
        for other in ["", "PROD", "Prod", "production", " test"] {
            assert_eq!(ServerType::parse(other), None, "{other:?}");
        }
    }
}
