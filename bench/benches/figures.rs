//! In-process figures (criterion), against the real OAuth server on loopback:
//!
//! - `process/*`: one `process` call with a cached token and a 1 KB record,
//!   through the plugin file loaded by the host library (`loaded`), the same
//!   plugin code linked into this benchmark (`linked`), and the whole
//!   `Chain::run` the host does per record (`chain_run`).
//!
//! The token fetch figure is not here: criterion measures one benchmark
//! after another, and the token server changes in between (see
//! `posthandler_bench::fetch`).
//!
//! Run through `bench/run.sh`, which builds the release artifacts first and
//! puts the medians into `BENCHMARKS.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RStr;
use criterion::{criterion_group, criterion_main, Criterion};
use posthandler_abi::{ConfigureRequest, Posthandler, PosthandlerBox};
use posthandler_bench::{context, record_1kb, release, Oidc};
use posthandler_host::chain::Chain;
use posthandler_host::context::Context;
use posthandler_host::loader::{Discovery, Loader};
use posthandler_oauth2::cache::TokenCache;
use posthandler_oauth2::clock::SystemClock;
use posthandler_oauth2::http::UreqTransport;
use posthandler_oauth2::OAuthPosthandler;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

fn process(c: &mut Criterion, oidc: &Oidc) {
    let context_json = context(&oidc.token_url()).to_string();
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
    assert!(
        linked.process_record().is_ok(),
        "the first call gets a token"
    );

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
    assert!(
        loaded
            .process(RStr::from_str(&record), RStr::from_str(&context_json))
            .is_ok(),
        "the first call gets a token"
    );

    let discovery = Discovery {
        plugins: vec![plugin.clone()],
        refused: Vec::new(),
        skipped: Vec::new(),
    };
    let chain = Chain::configure(
        Context::parse(&context_json).expect("the context parses"),
        &discovery,
        posthandler_host::server_type::parse("test", "bench").expect("a server type"),
    )
    .expect("the chain configures");
    assert!(chain.run(&record).is_ok(), "a record runs");

    let mut group = c.benchmark_group("process");
    group.bench_function("linked", |b| {
        b.iter(|| {
            black_box(Posthandler::process(
                &linked,
                RStr::from_str(black_box(&record)),
                RStr::from_str(&context_json),
            ))
        })
    });
    group.bench_function("loaded", |b| {
        b.iter(|| {
            black_box(loaded.process(
                RStr::from_str(black_box(&record)),
                RStr::from_str(&context_json),
            ))
        })
    });
    group.bench_function("chain_run", |b| {
        b.iter(|| black_box(chain.run(black_box(&record)).map(|o| o.record)))
    });
    group.finish();
}

fn figures(c: &mut Criterion) {
    let oidc = Oidc::start(Duration::from_secs(3600));
    process(c, &oidc);
}

criterion_group! {
    name = benches;
    config = config();
    targets = figures
}
criterion_main!(benches);
