//! The one source of time for token lifetimes, refresh and backoff.
//!
//! This file owns the [`Clock`] trait, the [`SystemClock`] used in
//! production and the [`ManualClock`] that tests move by hand, so that an
//! hour of token lifetime is tested without an hour of sleeping. Nothing else
//! in the plugin's token path reads the time by itself.

use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;

/// Tells the time.
///
/// Lifetimes are kept as wall-clock times because they cross a hot swap as
/// absolute values (`token-cache.export.v1`) and because they are written to
/// records as absolute expiries.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is told to move.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock that shows `start`.
    pub fn at(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// A clock that shows a fixed, arbitrary time in 2026.
    pub fn new() -> Self {
        Self::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poison| poison.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.now(), start + Duration::from_secs(3600));
    }

    #[test]
    fn system_clock_follows_the_system() {
        let before = SystemTime::now();
        let now = SystemClock.now();
        assert!(now >= before);
    }
}
