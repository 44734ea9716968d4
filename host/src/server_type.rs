//! The server type of the running installation.
//!
//! It comes from the command line (`--server-type`) or the environment
//! (`POSTHANDLER_SERVER_TYPE`), never from the export context: a context
//! copied from production to a staging tenant must not carry `prod` with it.
//! When both are given and differ, the host refuses to guess.

use crate::Error;
use std::fmt;

/// The environment variable that may name the server type.
pub const ENV_VAR: &str = "POSTHANDLER_SERVER_TYPE";

/// Which kind of installation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerType {
    /// Development.
    Dev,
    /// Test or staging.
    Test,
    /// Production.
    Prod,
}

impl ServerType {
    /// The name used in configurations: `dev`, `test` or `prod`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerType::Dev => "dev",
            ServerType::Test => "test",
            ServerType::Prod => "prod",
        }
    }

    /// Parses `dev`, `test` or `prod`; `what` names the source in the error.
    pub fn parse(value: &str, what: &str) -> Result<Self, Error> {
        match value {
            "dev" => Ok(ServerType::Dev),
            "test" => Ok(ServerType::Test),
            "prod" => Ok(ServerType::Prod),
            other => Err(Error::ServerType(format!(
                "{what}: unknown server type '{}' (expected dev, test or prod)",
                other.escape_debug()
            ))),
        }
    }

    /// Settles the server type from the flag and the environment variable's
    /// value.
    ///
    /// # Errors
    ///
    /// Neither given, an unknown value, or both given and different.
    pub fn resolve(flag: Option<&str>, env: Option<&str>) -> Result<Self, Error> {
        let flag = flag.map(|v| Self::parse(v, "--server-type")).transpose()?;
        let env = env
            .filter(|v| !v.is_empty())
            .map(|v| Self::parse(v, ENV_VAR))
            .transpose()?;
        match (flag, env) {
            (Some(a), Some(b)) if a != b => Err(Error::ServerType(format!(
                "--server-type is '{a}' but {ENV_VAR} is '{b}': refusing to guess which installation this is"
            ))),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Err(Error::ServerType(format!(
                "no server type: pass --server-type dev|test|prod or set {ENV_VAR}"
            ))),
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
    fn flag_or_environment_gives_the_server_type() {
        assert_eq!(
            ServerType::resolve(Some("prod"), None).unwrap(),
            ServerType::Prod
        );
        assert_eq!(
            ServerType::resolve(None, Some("test")).unwrap(),
            ServerType::Test
        );
        assert_eq!(
            ServerType::resolve(Some("dev"), Some("dev")).unwrap(),
            ServerType::Dev
        );
    }

    #[test]
    fn refuses_to_guess() {
        let missing = ServerType::resolve(None, None).unwrap_err().to_string();
        assert!(missing.starts_with("no server type"), "{missing}");
        let empty_env = ServerType::resolve(None, Some("")).unwrap_err().to_string();
        assert!(empty_env.starts_with("no server type"), "{empty_env}");
        let both = ServerType::resolve(Some("test"), Some("prod"))
            .unwrap_err()
            .to_string();
        assert!(both.contains("'test'") && both.contains("'prod'"), "{both}");
        let unknown = ServerType::resolve(Some("PROD"), None)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown server type 'PROD'"), "{unknown}");
    }
}
