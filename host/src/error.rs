//! The host's error type and the exit code each error ends a run with.

use posthandler_abi::ErrorKind;
use std::path::PathBuf;

/// The exit codes of `posthandler-host`; a contract for users' scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The run succeeded (a record passed through unchanged counts).
    Success = 0,
    /// Anything not covered below.
    Other = 1,
    /// A usage or configuration error.
    Configuration = 2,
    /// The authorization server refused a request.
    Authorization = 3,
    /// A transport failure or an invalid server response.
    Transport = 4,
    /// A plugin failed: it did not load, its interface is incompatible, or it
    /// panicked.
    Plugin = 5,
}

impl ExitCode {
    /// The exit code for an error a plugin returned.
    pub fn for_plugin_error(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Configuration => ExitCode::Configuration,
            ErrorKind::Authorization => ExitCode::Authorization,
            ErrorKind::Transport | ErrorKind::InvalidResponse => ExitCode::Transport,
            _ => ExitCode::Plugin,
        }
    }
}

/// Errors of the host library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server type could not be settled.
    #[error("{0}")]
    ServerType(String),

    /// A file could not be read or written.
    #[error("{path}: {action} failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done, such as `reading the context`.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The state folder for private plugin copies is not usable.
    #[error("state folder {path}: {cause}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        cause: String,
    },

    /// The context file is not usable; `place` names the field.
    #[error("{place}: {cause}")]
    Context {
        /// Where in the context, such as `postProcessorPlugins[0].plugin`.
        place: String,
        /// What is wrong there.
        cause: String,
    },

    /// The record is not usable.
    #[error("record: {0}")]
    Record(String),

    /// A chain entry names a plugin that is not loaded.
    #[error("postProcessorPlugins[{index}].plugin: no loaded plugin named '{name}'{hint}")]
    MissingPlugin {
        /// The chain entry.
        index: usize,
        /// The name it asks for.
        name: String,
        /// What was loaded, or why it was not, ready to print.
        hint: String,
    },

    /// A posthandler returned an error.
    #[error("posthandler '{plugin}' (postProcessorPlugins[{index}]): {error}")]
    Posthandler {
        /// The plugin's name.
        plugin: String,
        /// The chain entry.
        index: usize,
        /// What the plugin said.
        error: posthandler_abi::PluginError,
    },

    /// A posthandler wrote to a destination the host refuses.
    #[error("posthandler '{plugin}' (postProcessorPlugins[{index}]): {cause}")]
    Destination {
        /// The plugin's name.
        plugin: String,
        /// The chain entry.
        index: usize,
        /// What is wrong with the write.
        cause: String,
    },
}

impl Error {
    /// The exit code a run that ends with this error exits with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::ServerType(_) | Error::Context { .. } | Error::Record(_) => {
                ExitCode::Configuration
            }
            // Every file the library reads is one the user named.
            Error::Io { .. } | Error::StateDir { .. } => ExitCode::Configuration,
            Error::MissingPlugin { .. } => ExitCode::Plugin,
            Error::Posthandler { error, .. } => ExitCode::for_plugin_error(error.kind()),
            Error::Destination { .. } => ExitCode::Configuration,
        }
    }

    /// A context error at `place`.
    pub fn context(place: impl Into<String>, cause: impl Into<String>) -> Self {
        Error::Context {
            place: place.into(),
            cause: cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthandler_abi::PluginError;

    #[test]
    fn plugin_error_kinds_map_to_documented_exit_codes() {
        let code = |kind| {
            Error::Posthandler {
                plugin: "OAuth 2.0".into(),
                index: 0,
                error: PluginError::new(kind, "x"),
            }
            .exit_code() as i32
        };
        assert_eq!(code(ErrorKind::Configuration), 2);
        assert_eq!(code(ErrorKind::Authorization), 3);
        assert_eq!(code(ErrorKind::Transport), 4);
        assert_eq!(code(ErrorKind::InvalidResponse), 4);
        assert_eq!(code(ErrorKind::Internal), 5);
    }

    #[test]
    fn messages_name_the_place() {
        let err = Error::context("postProcessorPlugins[0].plugin", "missing");
        assert_eq!(err.to_string(), "postProcessorPlugins[0].plugin: missing");
        let err = Error::MissingPlugin {
            index: 1,
            name: "REST".into(),
            hint: " (loaded: OAuth 2.0 1.0.0)".into(),
        };
        assert_eq!(
            err.to_string(),
            "postProcessorPlugins[1].plugin: no loaded plugin named 'REST' (loaded: OAuth 2.0 1.0.0)"
        );
    }
}
