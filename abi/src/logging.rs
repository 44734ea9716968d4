//! Carries a plugin's `log` records to the host.
//!
//! A `cdylib` has its own copy of the `log` crate, whose global logger is
//! unset: without this bridge every `log::debug!` inside a plugin goes
//! nowhere. A plugin calls [`install`] with the [`HostServices`] it was
//! given; from then on its records go through [`HostServices::log`].
//!
//! The bridge forwards only the plugin's own targets (those that start with
//! the prefix given to [`install`]). Records of the libraries a plugin links,
//! such as an HTTP client that logs raw requests at trace level, are dropped,
//! because they may hold credentials.

use crate::HostServices;
use abi_stable::std_types::RStr;
use std::sync::OnceLock;

/// The boundary code of a `log` level: 1 error, 2 warn, 3 info, 4 debug,
/// 5 trace.
pub const fn level_code(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 1,
        log::Level::Warn => 2,
        log::Level::Info => 3,
        log::Level::Debug => 4,
        log::Level::Trace => 5,
    }
}

/// The `log` level of a boundary code; unknown codes become trace, the least
/// visible level.
pub const fn level_from_code(code: u8) -> log::Level {
    match code {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

struct Bridge {
    host: HostServices,
    target_prefix: &'static str,
}

static BRIDGE: OnceLock<Bridge> = OnceLock::new();

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with(self.target_prefix)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        (self.host.log)(
            level_code(record.level()),
            RStr::from_str(record.target()),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}

/// Sends this plugin's log records with targets starting with
/// `target_prefix` (usually the plugin crate's name) to the host.
///
/// Safe to call more than once: the first call wins, later ones do nothing,
/// since all `configure` calls of one host pass the same services.
pub fn install(host: HostServices, target_prefix: &'static str) {
    if BRIDGE
        .set(Bridge {
            host,
            target_prefix,
        })
        .is_ok()
    {
        if let Some(bridge) = BRIDGE.get() {
            if log::set_logger(bridge).is_ok() {
                // The host filters by level; the plugin forwards all of its own.
                log::set_max_level(log::LevelFilter::Trace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_codes_round_trip() {
        for level in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ] {
            assert_eq!(level_from_code(level_code(level)), level);
        }
    }
}
