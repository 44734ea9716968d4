//! The services the host hands to every plugin: a log sink, and the
//! versioned-payload entry point.
//!
//! A plugin's `log` records arrive here through [`HostServices::log`] and go
//! into the host's logger under the plugin's own target (its crate path), so
//! `RUST_LOG=posthandler_oauth2=debug` works as for host modules.

use abi_stable::std_types::{RResult, RStr, RString};
use posthandler_abi::{logging::level_from_code, HostServices, PluginError};

/// The services every plugin is configured with.
pub fn services() -> HostServices {
    HostServices {
        log: plugin_log,
        call: plugin_call,
    }
}

extern "C" fn plugin_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    // An unwind must not cross back into the plugin.
    let _ = std::panic::catch_unwind(|| {
        let level = level_from_code(level);
        let logger = log::logger();
        let metadata = log::Metadata::builder()
            .level(level)
            .target(target.as_str())
            .build();
        if logger.enabled(&metadata) {
            logger.log(
                &log::Record::builder()
                    .metadata(metadata)
                    .args(format_args!("{}", message.as_str()))
                    .build(),
            );
        }
    });
}

extern "C" fn plugin_call(kind: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
    RResult::RErr(PluginError::unsupported(kind.as_str()))
}
