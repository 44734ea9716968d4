//! `No-op`: a posthandler that writes nothing, for tests and benchmarks.
//!
//! Every `process` call returns [`ProcessOutput::default()`]: no record
//! change and no write. A `serve` run with this plugin measures what the
//! host itself costs per record (reading, dispatching, the trip across the
//! interface, writing in order), which is the floor any real plugin adds
//! its own work to. It has no settings and reads neither the record nor the
//! context.

#![deny(missing_docs)]
#![deny(unsafe_code)]

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_extern_fn,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString},
};
use posthandler_abi::{
    catch_panic, ConfigureRequest, HostServices, PluginError, PluginMetadata, PostProcessorPlugin,
    PostProcessorPluginRef, Posthandler, PosthandlerBox, Posthandler_TO, ProcessOutput,
    INTERFACE_VERSION,
};

/// The name chain entries use for this plugin.
pub const NAME: &str = "No-op";

/// The plugin's own version.
pub const VERSION: &str = "0.1.0";

// abi_stable wraps this function in its own unwind guard.
#[export_root_module]
fn root_module() -> PostProcessorPluginRef {
    PostProcessorPlugin {
        metadata,
        configure,
        call,
    }
    .leak_into_prefix()
}

#[sabi_extern_fn]
fn metadata() -> PluginMetadata {
    PluginMetadata {
        name: NAME.into(),
        version: VERSION.into(),
        interface_version: INTERFACE_VERSION.into(),
        description: "writes nothing: the host's own cost per record".into(),
        fields_json: "[]".into(),
    }
}

#[sabi_extern_fn]
fn configure(
    _host: HostServices,
    _request: ConfigureRequest<'_>,
) -> RResult<PosthandlerBox, PluginError> {
    RResult::ROk(Posthandler_TO::from_value(Noop, TD_Opaque))
}

#[sabi_extern_fn]
fn call(kind: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
    RResult::RErr(PluginError::unsupported(kind.as_str()))
}

/// The configured posthandler: holds nothing.
#[derive(Debug)]
pub struct Noop;

impl Posthandler for Noop {
    fn process(
        &self,
        _record_json: RStr<'_>,
        _context_json: RStr<'_>,
    ) -> RResult<ProcessOutput, PluginError> {
        // Nothing here can panic, but the interface's rule is kept.
        catch_panic("process", || RResult::ROk(ProcessOutput::default()))
    }

    fn call(&self, kind: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::unsupported(kind.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthandler_abi::ErrorKind;

    #[test]
    fn process_writes_nothing() {
        let output = Noop.process(RStr::from("{}"), RStr::from("{}")).unwrap();
        assert!(output.record_json.is_none());
        assert!(output.writes.is_empty());
    }

    #[test]
    fn metadata_names_the_plugin_and_no_fields() {
        let meta = metadata();
        assert_eq!(meta.name.as_str(), "No-op");
        assert_eq!(meta.interface_version.as_str(), INTERFACE_VERSION);
        assert_eq!(meta.fields_json.as_str(), "[]");
    }

    #[test]
    fn payloads_are_unsupported() {
        let error = Noop
            .call(RStr::from("stats.v1"), RStr::from("{}"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
    }
}
