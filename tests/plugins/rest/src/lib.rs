//! A stand-in for the suite's REST posthandler, built for tests only.
//!
//! This crate exists so that end-to-end tests have a posthandler that runs
//! *after* the OAuth 2.0 plugin and shows what reached it. It sends nothing
//! anywhere. For each record it copies two of its own settings, as the chain
//! left them in the context, into the record:
//!
//! - `destinationSystems[0].headerValue` of its entry to `/rest/headerValue`
//!   (this is where the OAuth plugin's token arrives when its destination
//!   field is `REST Destination System - 1 | Header Value`);
//! - `baseUrl` of its entry to `/rest/baseUrl`.
//!
//! A setting that is absent removes the record field, so a test sees
//! exactly what this run's context held.
//!
//! It is also the suite's misbehaving plugin, on request of the record (see
//! [`failure`]): `"panic": true` makes `process` panic, and
//! `"fail": "<kind>"` makes it return an error of that kind.
//!
//! This file owns the root module and the metadata; [`handler`] owns the
//! configured posthandler.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod failure;
pub mod handler;

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_extern_fn,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString},
};
use posthandler_abi::{
    catch_panic,
    fields::{FieldDescription, FieldType},
    logging, ConfigureRequest, HostServices, PluginError, PluginMetadata, PostProcessorPlugin,
    PostProcessorPluginRef, PosthandlerBox, Posthandler_TO, INTERFACE_VERSION,
};

/// The name chain entries use for this plugin.
pub const NAME: &str = "REST";

/// The plugin's own version.
pub const VERSION: &str = "0.1.0";

/// The target prefix of this plugin's log records; the bridge forwards only
/// these.
const LOG_TARGET: &str = "posthandler_test_rest";

// abi_stable wraps this function in its own unwind guard and reports a panic
// as a root module error, so it needs no catch_panic of its own.
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
    // metadata cannot return an error; after a panic the empty name makes the
    // host refuse the plugin with a clear cause.
    catch_panic("metadata", || RResult::ROk(describe())).unwrap_or_else(|_| PluginMetadata {
        name: RString::new(),
        version: VERSION.into(),
        interface_version: INTERFACE_VERSION.into(),
        description: RString::new(),
        fields_json: "[]".into(),
    })
}

#[sabi_extern_fn]
fn configure(
    host: HostServices,
    request: ConfigureRequest<'_>,
) -> RResult<PosthandlerBox, PluginError> {
    catch_panic("configure", || {
        logging::install(host, LOG_TARGET);
        handler::Rest::configure(request.context_json.as_str(), request.plugin_index)
            .map(|rest| Posthandler_TO::from_value(rest, TD_Opaque))
            .into()
    })
}

#[sabi_extern_fn]
fn call(kind: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
    catch_panic("call", || {
        RResult::RErr(PluginError::unsupported(kind.as_str()))
    })
}

fn describe() -> PluginMetadata {
    PluginMetadata {
        name: NAME.into(),
        version: VERSION.into(),
        interface_version: INTERFACE_VERSION.into(),
        description: "test stand-in for the REST posthandler: copies its settings into the record"
            .into(),
        fields_json: fields_json().into(),
    }
}

/// The field descriptions as JSON, in the suite's labels, so that the host
/// resolves `REST Destination System - 1 | Header Value` to this plugin.
fn fields_json() -> String {
    let text = |key: &str, label: &str| field(key, label, FieldType::Text);
    let destination_systems = FieldDescription {
        item_label: Some("Destination System".into()),
        item_fields: vec![
            text("headerName", "Header Name"),
            text("headerValue", "Header Value"),
        ],
        ..field("destinationSystems", "Destination Systems", FieldType::List)
    };
    let fields = [
        field("baseUrl", "Base URL", FieldType::Url),
        destination_systems,
    ];
    serde_json::to_string(&fields).expect("field descriptions always serialize")
}

fn field(key: &str, label: &str, field_type: FieldType) -> FieldDescription {
    FieldDescription {
        key: key.into(),
        label: label.into(),
        field_type,
        required: false,
        allowed_values: Vec::new(),
        item_label: None,
        item_fields: Vec::new(),
        ..FieldDescription::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthandler_abi::fields;

    #[test]
    fn fields_carry_the_suite_labels() {
        let fields = fields::parse(&fields_json()).unwrap();
        assert_eq!(fields[0].label, "Base URL");
        assert_eq!(fields[0].field_type, FieldType::Url);
        let systems = &fields[1];
        assert_eq!(systems.key, "destinationSystems");
        assert_eq!(systems.field_type, FieldType::List);
        assert_eq!(systems.item_label.as_deref(), Some("Destination System"));
        let labels: Vec<&str> = systems
            .item_fields
            .iter()
            .map(|f| f.label.as_str())
            .collect();
        assert_eq!(labels, ["Header Name", "Header Value"]);
    }

    #[test]
    fn metadata_names_the_plugin() {
        let meta = describe();
        assert_eq!(meta.name.as_str(), "REST");
        assert_eq!(meta.version.as_str(), "0.1.0");
        assert_eq!(meta.interface_version.as_str(), INTERFACE_VERSION);
    }
}
