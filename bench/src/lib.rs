//! What the benchmarks share: the built release artifacts, the real OAuth
//! server on loopback, the context and the 1 KB record they use, and the
//! simulated-time count of token requests.
//!
//! The figures themselves are in `benches/figures.rs` (criterion, in
//! process), `src/bin/whole.rs` (whole processes: `serve`, `cat`, curl,
//! swaps, memory) and `src/bin/report.rs` (the table in `BENCHMARKS.md`).
//! `bench/run.sh` runs all three. None of this is a timed test.

#![deny(missing_docs)]

pub mod fetch;
pub mod process;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use posthandler_oauth2::cache::TokenCache;
use posthandler_oauth2::clock::{Clock, ManualClock};
use posthandler_oauth2::token::{HttpResponse, TokenRequest, Transport, TransportError};
use posthandler_oauth2::OAuthPosthandler;
use serde_json::json;

/// The OAuth server's client the benchmarks use (from `tests/oidc/clients.json`).
pub const CLIENT_ID: &str = "posthandler-header";

/// Its secret; a test fixture, not a real credential.
pub const CLIENT_SECRET: &str = "header-secret-1";

/// The scope it may ask for.
pub const SCOPE: &str = "products.write";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// The release artifacts the figures measure.
#[derive(Debug, Clone)]
pub struct Release {
    /// `posthandler-host`.
    pub host: PathBuf,
    /// The OAuth 2.0 plugin library.
    pub oauth_plugin: PathBuf,
    /// The `No-op` test plugin library.
    pub noop_plugin: PathBuf,
}

/// The release artifacts, which `bench/run.sh` builds first.
///
/// # Panics
///
/// When one is missing, with the command that builds them.
pub fn release() -> Release {
    let dir = root().join("target/release");
    let so = std::env::consts::DLL_SUFFIX;
    let release = Release {
        host: dir.join("posthandler-host"),
        oauth_plugin: dir.join(format!("libposthandler_oauth2{so}")),
        noop_plugin: dir.join(format!("libposthandler_test_noop{so}")),
    };
    for file in [&release.host, &release.oauth_plugin, &release.noop_plugin] {
        assert!(
            file.exists(),
            "{} is missing: run `cargo build --release -p posthandler-host -p posthandler-oauth2 \
             -p posthandler-test-noop` (bench/run.sh does)",
            file.display()
        );
    }
    release
}

/// The real OAuth server (`tests/oidc`, oidc-provider) on 127.0.0.1,
/// stopped on drop.
pub struct Oidc {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Oidc {
    /// Starts it with access tokens of `ttl` and waits for its address.
    ///
    /// # Panics
    ///
    /// When node or the server does not start.
    pub fn start(ttl: Duration) -> Oidc {
        let dir = root().join("tests/oidc");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .args(["--port", "0", "--access-token-ttl"])
            .arg(ttl.as_secs().to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts tests/oidc/server.mjs (npm ci in tests/oidc first)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("the server prints its address");
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_owned();
        Oidc { child, base }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An export context whose OAuth entry (and optionally a `No-op` after it)
/// asks `token_url` for tokens on the `test` server type.
pub fn context(token_url: &str) -> serde_json::Value {
    json!({
        "name": "Benchmark export",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [{
                "limitToServertype": "test",
                "restUrl": token_url,
                "restUser": CLIENT_ID,
                "restPassword": CLIENT_SECRET,
                "scope": SCOPE,
                "clientAuthentication": "header"
            }],
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForRefreshToken": "/auth/refreshToken",
            "destinationFieldForExpires": "/auth/expires"
        }]
    })
}

/// A context whose chain is the `No-op` plugin alone.
pub fn noop_context() -> serde_json::Value {
    json!({"name": "Benchmark export", "postProcessorPlugins": [{"plugin": "No-op"}]})
}

/// One export record of about 1 KB (1,000 to 1,030 bytes of JSON), the
/// `seq`-th of a stream.
pub fn record_1kb(seq: u64) -> String {
    let mut record = json!({
        "exportId": "products-to-shop-2026-12-03T17:00:00Z",
        "seq": seq,
        "product": {
            "sku": format!("CH-{seq:08}"),
            "name": "Oak chair, oiled, with armrests",
            "price": {"amount": "129.00", "currency": "EUR"},
            "tags": ["furniture", "oak", "chair", "indoor"],
        },
        "description": "",
    });
    let len = record.to_string().len();
    record["description"] = "x".repeat(1_000usize.saturating_sub(len)).into();
    record.to_string()
}

/// A [`Transport`] that answers every token request with one token of
/// `expires_in` seconds, counting the requests.
#[derive(Debug, Clone)]
pub struct CountingTransport {
    requests: Arc<AtomicU64>,
    expires_in: u64,
}

impl CountingTransport {
    /// Answers with tokens of `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        CountingTransport {
            requests: Arc::new(AtomicU64::new(0)),
            expires_in: lifetime.as_secs(),
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Transport for CountingTransport {
    fn send(&self, _request: &TokenRequest) -> Result<HttpResponse, TransportError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let body = json!({
            "access_token": format!("simulated-token-{n}"),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        });
        Ok(HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
}

/// The outcome of [`simulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulated {
    /// Token requests the plugin sent.
    pub requests: u64,
    /// The ideal: one at the start and one each time the token enters its
    /// refresh window before the last record.
    pub ideal: u64,
}

/// Runs `records` records, evenly spread over `span` of simulated time,
/// through the linked plugin with tokens of `lifetime` and a refresh window
/// of `window`, and counts its token requests.
///
/// # Panics
///
/// When the plugin refuses the context or a record gets no token.
pub fn simulate(records: u64, span: Duration, lifetime: Duration, window: Duration) -> Simulated {
    let mut context = context("http://127.0.0.1:9/token");
    context["postProcessorPlugins"][0]["tokenRefreshWindowSeconds"] = window.as_secs().into();
    let transport = CountingTransport::new(lifetime);
    let clock = Arc::new(ManualClock::new());
    let posthandler = OAuthPosthandler::configure_with(
        &context.to_string(),
        0,
        "test",
        Box::new(transport.clone()),
        Arc::new(TokenCache::new()),
        clock.clone(),
    )
    .expect("the benchmark context configures");
    let step = span / u32::try_from(records).expect("records fit in u32");
    let start = clock.now();
    for _ in 0..records {
        posthandler
            .process_record()
            .expect("every simulated record gets a token");
        clock.advance(step);
    }
    let last = clock.now().duration_since(start).unwrap_or_default() - step;
    // A token is renewed once the time left is within the window, which is
    // capped at half its lifetime: every `lifetime - window` from the start.
    let renew_every = lifetime - window.min(lifetime / 2);
    let ideal = 1 + (last.as_nanos() / renew_every.as_nanos()) as u64;
    Simulated {
        requests: transport.requests(),
        ideal,
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS`), if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs each of `subjects` `per_turn` times in a turn, one turn each per
/// round over `rounds` rounds, the order rotating from round to round, and
/// returns each subject's median time per run, in nanoseconds, in the
/// order given. Each turn starts with `lead_in` runs that are not timed.
///
/// Subjects measured one after the other meet the machine (and a server
/// they talk to) in different states; taking turns, every ratio of two of
/// them compares runs of the same moments. The lead-in keeps what one
/// subject leaves behind (a connection the server is still closing) out of
/// the next one's time: with the order rotating, every subject always
/// follows the same other one, so that cost would land on the same
/// neighbour in every round.
pub fn take_turns(
    subjects: &[&dyn Fn()],
    rounds: usize,
    lead_in: usize,
    per_turn: usize,
) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(rounds); subjects.len()];
    for round in 0..rounds {
        for turn in 0..subjects.len() {
            let which = (round + turn) % subjects.len();
            for _ in 0..lead_in {
                subjects[which]();
            }
            let started = std::time::Instant::now();
            for _ in 0..per_turn {
                subjects[which]();
            }
            times[which].push(started.elapsed().as_secs_f64() * 1e9 / per_turn as f64);
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}

/// The median of `values` (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Where the benchmark programs leave their results for the report.
pub fn results_dir() -> PathBuf {
    let dir = root().join("target/bench-results");
    std::fs::create_dir_all(&dir).expect("target/bench-results can be made");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn taking_turns_runs_each_subject_alike_in_rotating_order_after_its_lead_in() {
        let log = RefCell::new(Vec::new());
        let a = || log.borrow_mut().push('a');
        let b = || log.borrow_mut().push('b');
        let c = || log.borrow_mut().push('c');
        let medians = take_turns(&[&a, &b, &c], 3, 1, 2);
        assert_eq!(medians.len(), 3);
        assert!(medians.iter().all(|m| *m >= 0.0));
        let order: String = log.into_inner().into_iter().collect();
        assert_eq!(order, "aaabbbccc".to_owned() + "bbbcccaaa" + "cccaaabbb");
    }
}
