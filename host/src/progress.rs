//! The progress line `serve` prints on stderr while it runs.
//!
//! [`PROGRESS`] counts the result lines `serve` has written (and how many of
//! them carry an error); [`Reporter::start`] prints, every [`INTERVAL`] and
//! only when stderr is a terminal, a line such as
//! `progress: records=1200 rate=240.0/s failures=0 tokenRequests=1`.
//! The final summary is printed by the caller in any case.

use std::io::IsTerminal;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the progress line is printed.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Counters of the records a `serve` run has finished.
#[derive(Debug, Default)]
pub struct Progress {
    records: AtomicU64,
    failures: AtomicU64,
}

/// The counters of this process's `serve` run.
pub static PROGRESS: Progress = Progress::new();

impl Progress {
    /// Counters at zero.
    pub const fn new() -> Self {
        Progress {
            records: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Counts one result line written.
    pub fn record_written(&self, failed: bool) {
        self.records.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records and failures so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// One progress line.
pub fn line(records: u64, failures: u64, token_requests: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        records as f64 / seconds
    } else {
        0.0
    };
    format!(
        "progress: records={records} rate={rate:.1}/s failures={failures} \
         tokenRequests={token_requests}"
    )
}

/// Prints progress lines until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// Starts printing [`PROGRESS`] every [`INTERVAL`] if stderr is a
    /// terminal; `token_requests` gives the chain's token request count
    /// (such as the `tokenRequests` of `Chain::stats`).
    pub fn start(token_requests: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut next = started + INTERVAL;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if Instant::now() < next {
                        continue;
                    }
                    next += INTERVAL;
                    let (records, failures) = PROGRESS.counts();
                    let text = line(records, failures, token_requests(), started.elapsed());
                    // Ignored when stderr is closed, as log lines are.
                    let _ = writeln!(std::io::stderr(), "{text}");
                }
            })
        });
        Reporter { stop, thread }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_and_failures() {
        let progress = Progress::new();
        progress.record_written(false);
        progress.record_written(true);
        assert_eq!(progress.counts(), (2, 1));
    }

    #[test]
    fn the_line_shows_records_rate_failures_and_token_requests() {
        assert_eq!(
            line(100, 3, 97, Duration::from_secs(4)),
            "progress: records=100 rate=25.0/s failures=3 tokenRequests=97"
        );
        assert_eq!(
            line(0, 0, 0, Duration::ZERO),
            "progress: records=0 rate=0.0/s failures=0 tokenRequests=0"
        );
    }
}
