//! In-process figures (criterion), against the real OAuth server on loopback:
//!
//! - `process/*`: one `process` call with a cached token and a 1 KB record,
//!   through the plugin file loaded by the host library (`loaded`), the same
//!   plugin code linked into this benchmark (`linked`), and the whole
//!   `Chain::run` the host does per record (`chain_run`); see
//!   `posthandler_bench::process`.
//!
//! These give each call's distribution in criterion's report
//! (`target/criterion`). The table in `BENCHMARKS.md` quotes the same calls
//! measured taking turns (`posthandler_bench::process::interleaved`, run by
//! the `whole` binary): measured one after the other, as here, their ratio
//! moves with the machine's load between benchmarks. The token fetch is
//! measured taking turns only (`posthandler_bench::fetch`).
//!
//! Run through `bench/run.sh`, which builds the release artifacts first.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use posthandler_bench::process::Subjects;
use posthandler_bench::Oidc;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

fn process(c: &mut Criterion, oidc: &Oidc) {
    let subjects = Subjects::new(&oidc.token_url());
    let mut group = c.benchmark_group("process");
    group.bench_function("linked", |b| b.iter(|| subjects.linked_call()));
    group.bench_function("loaded", |b| b.iter(|| subjects.loaded_call()));
    group.bench_function("chain_run", |b| b.iter(|| subjects.chain_call()));
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
