//! The `process` figure: one call with a cached token and a 1 KB record,
//! through the plugin file loaded by the host library (`loaded`, across the
//! abi_stable interface), the same plugin code linked in (`linked`), and
//! the host's whole per-record work (`Chain::run`).
//!
//! [`Subjects::new`] sets the three up; `benches/figures.rs` gives each to
//! criterion, and [`interleaved`] measures them taking turns, which is
//! where the table's figures and ratio come from. Measured one after the
//! other, as criterion runs benchmarks, the same two calls came out at
//! ratios between 0.56 and 1.55 from run to run on these 2 shared cores:
//! whichever ran while the machine was busier lost. Taking turns in
//! batches, both meet the same machine.

use std::hint::black_box;
use std::sync::Arc;

use abi_stable::std_types::RStr;
use posthandler_abi::{ConfigureRequest, Posthandler, PosthandlerBox};
use posthandler_host::chain::Chain;
use posthandler_host::context::Context;
use posthandler_host::loader::{Discovery, Loader};
use posthandler_oauth2::cache::TokenCache;
use posthandler_oauth2::clock::SystemClock;
use posthandler_oauth2::http::UreqTransport;
use posthandler_oauth2::OAuthPosthandler;

use crate::{context, record_1kb, release, take_turns};

/// The three ways of running one record, each with its token cached.
pub struct Subjects {
    /// The context, as JSON text.
    pub context_json: String,
    /// The 1 KB record.
    pub record: String,
    /// The plugin code linked into the benchmark.
    pub linked: OAuthPosthandler,
    /// The release plugin file, loaded and configured by the host library.
    pub loaded: PosthandlerBox,
    /// The host's chain over the loaded plugin.
    pub chain: Chain,
    _state: tempfile::TempDir,
}

impl Subjects {
    /// Sets them up against the token endpoint `token_url` and fetches each
    /// one's token.
    ///
    /// # Panics
    ///
    /// When one cannot be set up or gets no token.
    pub fn new(token_url: &str) -> Subjects {
        let context_json = context(token_url).to_string();
        let record = record_1kb(1);
        let linked = OAuthPosthandler::configure_with(
            &context_json,
            0,
            "test",
            Box::new(UreqTransport::new()),
            Arc::new(TokenCache::new()),
            Arc::new(SystemClock),
        )
        .expect("the linked plugin configures");

        let state = tempfile::tempdir().expect("a state folder");
        let loader = Loader::new(state.path()).expect("a loader");
        let plugin = Arc::new(
            loader
                .load_file(&release().oauth_plugin)
                .expect("the release plugin loads"),
        );
        let request = ConfigureRequest {
            context_json: RStr::from_str(&context_json),
            plugin_index: 0,
            server_type: RStr::from_str("test"),
        };
        let loaded: PosthandlerBox =
            (plugin.module.configure())(posthandler_host::plugin_log::services(), request)
                .into_result()
                .expect("the loaded plugin configures");
        let discovery = Discovery {
            plugins: vec![plugin],
            refused: Vec::new(),
            skipped: Vec::new(),
        };
        let chain = Chain::configure(
            Context::parse(&context_json).expect("the context parses"),
            &discovery,
            posthandler_host::server_type::parse("test", "bench").expect("a server type"),
        )
        .expect("the chain configures");

        let subjects = Subjects {
            context_json,
            record,
            linked,
            loaded,
            chain,
            _state: state,
        };
        assert!(subjects.linked_call(), "the linked plugin gets a token");
        assert!(subjects.loaded_call(), "the loaded plugin gets a token");
        assert!(subjects.chain_call(), "a record runs");
        subjects
    }

    /// One `process` call on the linked plugin; whether it succeeded.
    pub fn linked_call(&self) -> bool {
        Posthandler::process(
            &self.linked,
            RStr::from_str(black_box(&self.record)),
            RStr::from_str(&self.context_json),
        )
        .is_ok()
    }

    /// One `process` call across the interface; whether it succeeded.
    pub fn loaded_call(&self) -> bool {
        self.loaded
            .process(
                RStr::from_str(black_box(&self.record)),
                RStr::from_str(&self.context_json),
            )
            .is_ok()
    }

    /// One `Chain::run`; whether it succeeded.
    pub fn chain_call(&self) -> bool {
        self.chain
            .run(black_box(&self.record))
            .map(|output| black_box(output.record))
            .is_ok()
    }
}

/// Medians of one [`interleaved`] run, nanoseconds per call.
#[derive(Debug, Clone, Copy)]
pub struct ProcessTimes {
    /// [`Subjects::linked_call`].
    pub linked_ns: f64,
    /// [`Subjects::loaded_call`].
    pub loaded_ns: f64,
    /// [`Subjects::chain_call`].
    pub chain_ns: f64,
}

/// Calls per timed batch: long enough for the clock, short enough that a
/// round's batches see the same machine.
const BATCH: usize = 2_000;

/// `rounds` rounds of one batch of each call, the order rotating; each
/// figure is the median of its batches' time per call.
pub fn interleaved(subjects: &Subjects, rounds: usize) -> ProcessTimes {
    let ns = take_turns(
        &[
            &|| {
                black_box(subjects.linked_call());
            },
            &|| {
                black_box(subjects.loaded_call());
            },
            &|| {
                black_box(subjects.chain_call());
            },
        ],
        rounds,
        0,
        BATCH,
    );
    ProcessTimes {
        linked_ns: ns[0],
        loaded_ns: ns[1],
        chain_ns: ns[2],
    }
}
