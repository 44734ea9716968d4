//! In-process figures (criterion), against the real OAuth server on loopback:
//!
//! - `process/*`: one `process` call with a cached token and a 1 KB record,
//!   through the plugin file loaded by the host library (`loaded`), the same
//!   plugin code linked into this benchmark (`linked`), and the whole
//!   `Chain::run` the host does per record (`chain_run`).
//! - `token_fetch/*`: one client credentials request, on a new connection
//!   and on a warm one, by the plugin's client and by the `oauth2` crate's
//!   ureq client.
//!
//! Run through `bench/run.sh`, which builds the release artifacts first and
//! puts the medians into `BENCHMARKS.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RStr;
use criterion::{criterion_group, criterion_main, Criterion};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use posthandler_abi::{ConfigureRequest, Posthandler, PosthandlerBox};
use posthandler_bench::{context, record_1kb, release, Oidc, CLIENT_ID, CLIENT_SECRET, SCOPE};
use posthandler_host::chain::Chain;
use posthandler_host::context::Context;
use posthandler_host::loader::{Discovery, Loader};
use posthandler_oauth2::cache::TokenCache;
use posthandler_oauth2::clock::SystemClock;
use posthandler_oauth2::config::OAuthConfig;
use posthandler_oauth2::http::UreqTransport;
use posthandler_oauth2::token::{Grant, TokenClient};
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

fn token_fetch(c: &mut Criterion, oidc: &Oidc) {
    let context_json = context(&oidc.token_url()).to_string();
    let config = OAuthConfig::parse(&context_json, 0).expect("the context parses");
    let system = config.systems[0].clone();
    let plugin_client = || {
        TokenClient::new(
            "bench".into(),
            0,
            system.clone(),
            Box::new(UreqTransport::new()),
        )
    };

    let oauth2_client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(TokenUrl::new(oidc.token_url()).expect("a token URL"));
    let oauth2_fetch = |agent: &ureq2::Agent| {
        let token = oauth2_client
            .exchange_client_credentials()
            .add_scope(Scope::new(SCOPE.into()))
            .request(agent)
            .expect("oauth2 gets a token");
        black_box(token.access_token().secret().len())
    };

    let mut group = c.benchmark_group("token_fetch");
    group.bench_function("plugin_new_connection", |b| {
        b.iter(|| {
            let client = plugin_client();
            black_box(client.fetch(&Grant::ClientCredentials).is_ok())
        })
    });
    let warm = plugin_client();
    assert!(warm.fetch(&Grant::ClientCredentials).is_ok());
    group.bench_function("plugin_warm", |b| {
        b.iter(|| black_box(warm.fetch(&Grant::ClientCredentials).is_ok()))
    });
    group.bench_function("oauth2_new_connection", |b| {
        b.iter(|| oauth2_fetch(&ureq2::AgentBuilder::new().redirects(0).build()))
    });
    let agent = ureq2::AgentBuilder::new().redirects(0).build();
    oauth2_fetch(&agent);
    group.bench_function("oauth2_warm", |b| b.iter(|| oauth2_fetch(&agent)));
    group.finish();
}

fn figures(c: &mut Criterion) {
    let oidc = Oidc::start(Duration::from_secs(3600));
    process(c, &oidc);
    token_fetch(c, &oidc);
}

criterion_group! {
    name = benches;
    config = config();
    targets = figures
}
criterion_main!(benches);
