//! The stable interface between the posthandler host and its plugins.
//!
//! This crate owns every type that crosses the boundary between the host
//! (`posthandler-host`) and a posthandler plugin library, and nothing else:
//! no HTTP, no OAuth, no loading code.
//!
//! # Glossary
//!
//! - **interface**: this crate. Host and plugin each compile their own copy;
//!   abi_stable compares the two copies when the plugin is loaded.
//! - **implementation** (plugin): a `cdylib` that exports a
//!   [`PostProcessorPluginRef`] root module, such as the `OAuth 2.0` plugin.
//! - **user** (host): the program that loads plugins and runs chains.
//! - **export context**: the JSON configuration of one export, with its chain
//!   of posthandlers under `postProcessorPlugins`.
//! - **export record**: the JSON document one export run produced; the chain
//!   enriches it.
//! - **posthandler**: one entry of the chain, handled by the plugin whose
//!   metadata name equals the entry's `plugin` key.
//! - **server type**: `dev`, `test` or `prod`, a property of the running
//!   installation that the host hands to every plugin.
//!
//! # Loading sequence
//!
//! The host refuses a plugin at the first step that fails:
//!
//! 1. The file is checked as a well-formed shared library before it is opened
//!    (host side; a truncated file can crash the loader itself).
//! 2. The library is opened and its abi_stable header symbol is looked up.
//! 3. abi_stable checks that the library and the host use compatible
//!    abi_stable versions.
//! 4. The interface version the plugin was built against (this crate's
//!    package version, see [`INTERFACE_VERSION`]) must have the host's major
//!    version and a minor version at least the host's.
//! 5. abi_stable compares the layout of [`PostProcessorPlugin`] in the plugin
//!    with the host's.
//! 6. The root module initialiser runs.
//! 7. The host calls [`PostProcessorPlugin::metadata`]; a plugin that panics or
//!    reports nonsense there is refused.
//!
//! # Growing the interface
//!
//! [`PostProcessorPlugin`] and [`Posthandler`] are prefix types. New
//! capabilities are added, in this order of preference, as:
//!
//! 1. a new `kind` of versioned payload for the `call` functions, which both
//!    sides may ignore when they do not know it;
//! 2. new fields after the last one, in a new minor version of this crate.
//!
//! Renaming, removing or reordering a field is a new major version.

#![deny(missing_docs)]
// abi_stable's accessor for a field after the last prefix field expands to
// unsafe code; only the test-only grown interface has such a field.
#![cfg_attr(not(feature = "grown-interface-test"), deny(unsafe_code))]

pub mod error;
pub mod fields;
pub mod logging;
pub mod payload;
mod posthandler;
mod server_type;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

pub use error::{ErrorKind, PluginError};
pub use posthandler::{Posthandler, PosthandlerBox, Posthandler_TO};
pub use server_type::ServerType;

/// The interface version this copy of the crate implements.
///
/// It is the package version; abi_stable stores it in every plugin and
/// compares it with the host's at load time.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The root module every posthandler plugin exports.
///
/// A plugin builds it once with `leak_into_prefix` inside its
/// `#[export_root_module]` function.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PostProcessorPluginRef)))]
// Fields added after `call` in later minor versions are absent from plugins
// built before them: their accessors return `Option`.
#[sabi(missing_field(option))]
pub struct PostProcessorPlugin {
    /// Name, version and configuration fields of the plugin.
    ///
    /// Called once right after loading, and whenever the host lists plugins.
    pub metadata: extern "C" fn() -> PluginMetadata,

    /// Parses and checks the plugin's settings in one export context.
    ///
    /// Called once per context (not once per record). The returned
    /// [`Posthandler`] then processes that context's records, possibly from
    /// several threads at once.
    pub configure: extern "C" fn(
        host: HostServices,
        request: ConfigureRequest<'_>,
    ) -> RResult<PosthandlerBox, PluginError>,

    /// Versioned payloads at module level: the host sends `kind` and a JSON
    /// `payload`, the plugin answers with JSON, or with an error of kind
    /// [`ErrorKind::Unsupported`] for a kind it does not know.
    ///
    /// This is the last field of the first release, so that plugins built
    /// against 1.0 keep loading in hosts that append fields after it.
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(kind: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>,

    /// Test-only: a field appended after the first release's last field, as
    /// a later minor version would add one. The `grown-interface-test`
    /// feature exists so the tests can prove which direction abi_stable
    /// accepts when the root module grows; no release enables it.
    #[cfg(feature = "grown-interface-test")]
    pub grown: extern "C" fn() -> u32,
}

impl RootModule for PostProcessorPluginRef {
    declare_root_module_statics! {PostProcessorPluginRef}
    const BASE_NAME: &'static str = "posthandler_plugin";
    const NAME: &'static str = "posthandler_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginMetadata {
    /// The name the suite shows and that chain entries name in their
    /// `plugin` key, such as `OAuth 2.0`.
    pub name: RString,
    /// The plugin's semantic version, such as `1.2.0`.
    pub version: RString,
    /// The interface version the plugin was built against
    /// ([`INTERFACE_VERSION`] of its copy of this crate).
    pub interface_version: RString,
    /// One line for listings.
    pub description: RString,
    /// The plugin's configuration fields as JSON: an array of
    /// [`fields::FieldDescription`].
    pub fields_json: RString,
}

/// Services the host offers to a plugin.
///
/// The plugin may copy this value and keep it for as long as it is loaded.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct HostServices {
    /// Sends one log record to the host's log. `level` is a
    /// [`logging::level_code`]; `target` names the plugin module.
    pub log: extern "C" fn(level: u8, target: RStr<'_>, message: RStr<'_>),
    /// Versioned payloads from plugin to host, like
    /// [`PostProcessorPlugin::call`] in the other direction.
    pub call: extern "C" fn(kind: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>,
}

/// The arguments of [`PostProcessorPlugin::configure`].
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct ConfigureRequest<'a> {
    /// The whole export context as JSON, as the configuration file has it.
    pub context_json: RStr<'a>,
    /// Which entry of `postProcessorPlugins` this plugin handles.
    pub plugin_index: u32,
    /// The server type of the running installation: `dev`, `test` or `prod`.
    pub server_type: RStr<'a>,
}

/// The result of [`Posthandler::process`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct ProcessOutput {
    /// The new record as JSON, or `None` when the plugin left it unchanged.
    pub record_json: ROption<RString>,
    /// Values for destination fields, applied by the host in order after
    /// `record_json`.
    pub writes: RVec<FieldWrite>,
}

/// One value for a destination field.
///
/// The host resolves `destination`: a JSON Pointer (RFC 6901, starting with
/// `/`) names a field of the export record; a label such as
/// `REST Destination System - 1 | Header Value` names a field of a later
/// posthandler's configuration in this run.
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct FieldWrite {
    /// Where the value goes, as the configuration names it.
    pub destination: RString,
    /// The value as JSON text, or `None` to remove the field, so that no
    /// stale value of an earlier run survives.
    pub value_json: ROption<RString>,
}

impl std::fmt::Debug for FieldWrite {
    // Values are often secrets (tokens); only the destination is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldWrite")
            .field("destination", &self.destination)
            .field(
                "value_json",
                &self.value_json.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Runs `body`, turning a panic into an [`ErrorKind::Internal`] error.
///
/// Every function a plugin exports, and every [`Posthandler`] method it
/// implements, must run its body inside this guard: abi_stable aborts the
/// whole process when a panic reaches the boundary.
pub fn catch_panic<T>(
    what: &str,
    body: impl FnOnce() -> RResult<T, PluginError>,
) -> RResult<T, PluginError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(_) => RResult::RErr(PluginError::new(
            ErrorKind::Internal,
            format!("plugin panicked in {what}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn boundary_types_are_send_and_sync() {
        assert_send_sync::<PluginError>();
        assert_send_sync::<ProcessOutput>();
        assert_send_sync::<PosthandlerBox>();
        assert_send_sync::<HostServices>();
    }

    #[test]
    fn catch_panic_turns_a_panic_into_an_internal_error() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result: RResult<(), PluginError> = catch_panic("process", || panic!("boom"));
        std::panic::set_hook(prev);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.message.as_str(), "plugin panicked in process");
    }

    #[test]
    fn field_write_debug_hides_the_value() {
        let write = FieldWrite {
            destination: "/auth/accessToken".into(),
            value_json: ROption::RSome("\"canary-token\"".into()),
        };
        let shown = format!("{write:?}");
        assert!(shown.contains("/auth/accessToken"));
        assert!(!shown.contains("canary"));
    }
}
