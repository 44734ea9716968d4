//! The server type of the running installation.
//!
//! It comes from the command line (`--server-type`) or the environment
//! (`POSTHANDLER_SERVER_TYPE`), never from the export context: a context
//! copied from production to a staging tenant must not carry `prod` with it.
//! When both are given and differ, the host refuses to guess.

use crate::Error;

/// The environment variable that may name the server type.
pub const ENV_VAR: &str = "POSTHANDLER_SERVER_TYPE";

pub use posthandler_abi::ServerType;

/// Parses `dev`, `test` or `prod`; `what` names the source in the error.
pub fn parse(value: &str, what: &str) -> Result<ServerType, Error> {
    ServerType::parse(value).ok_or_else(|| {
        Error::ServerType(format!(
            "{what}: unknown server type '{}' (expected dev, test or prod)",
            value.escape_debug()
        ))
    })
}

/// Settles the server type from the flag and the environment variable's
/// value.
///
/// # Errors
///
/// Neither given, an unknown value, or both given and different.
pub fn resolve(flag: Option<&str>, env: Option<&str>) -> Result<ServerType, Error> {
    let flag = flag.map(|v| parse(v, "--server-type")).transpose()?;
    let env = env
        .filter(|v| !v.is_empty())
        .map(|v| parse(v, ENV_VAR))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_or_environment_gives_the_server_type() {
        assert_eq!(resolve(Some("prod"), None).unwrap(), ServerType::Prod);
        assert_eq!(resolve(None, Some("test")).unwrap(), ServerType::Test);
        assert_eq!(resolve(Some("dev"), Some("dev")).unwrap(), ServerType::Dev);
    }

    #[test]
    fn refuses_to_guess() {
        let missing = resolve(None, None).unwrap_err().to_string();
        assert!(missing.starts_with("no server type"), "{missing}");
        let empty_env = resolve(None, Some("")).unwrap_err().to_string();
        assert!(empty_env.starts_with("no server type"), "{empty_env}");
        let both = resolve(Some("test"), Some("prod")).unwrap_err().to_string();
        assert!(both.contains("'test'") && both.contains("'prod'"), "{both}");
        let unknown = resolve(Some("PROD"), None).unwrap_err().to_string();
        assert!(unknown.contains("unknown server type 'PROD'"), "{unknown}");
    }
}
