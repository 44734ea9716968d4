//! Writes the table of figures into `BENCHMARKS.md`, between the
//! `<!-- figures:start -->` and `<!-- figures:end -->` lines (the rest of
//! the file is kept as written), from `whole.json` (the figures measured
//! taking turns and the whole-process ones), with the machine, the versions
//! and the date. criterion's own reports stay in `target/criterion`.

use std::process::Command;

use posthandler_bench::{results_dir, root};
use serde_json::Value;

const START: &str = "<!-- figures:start -->";
const END: &str = "<!-- figures:end -->";

fn main() {
    let whole: Value = serde_json::from_str(
        &std::fs::read_to_string(results_dir().join("whole.json"))
            .expect("whole.json exists (run the whole binary first)"),
    )
    .expect("whole.json is JSON");
    let table = table(&whole);
    let path = root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = match (old.find(START), old.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{START}\n{table}{}", &old[..start], &old[end..])
        }
        _ => format!("# Benchmarks\n\n{START}\n{table}{END}\n{old}"),
    };
    std::fs::write(&path, new).expect("BENCHMARKS.md is written");
    println!("{table}");
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

fn table(whole: &Value) -> String {
    let linked = f(&whole["process"]["linked_ns"]) / 1e3;
    let loaded = f(&whole["process"]["loaded_ns"]) / 1e3;
    let chain = f(&whole["process"]["chain_ns"]) / 1e3;
    let fetch = &whole["fetch"];
    let plugin_new = f(&fetch["plugin_new_us"]);
    let plugin_warm = f(&fetch["plugin_warm_us"]);
    let oauth2_new = f(&fetch["oauth2_new_us"]);
    let oauth2_warm = f(&fetch["oauth2_warm_us"]);
    let curl_new = f(&whole["curl"]["new_us"]);
    let curl_warm = f(&whole["curl"]["warm_us"]);
    let t = &whole["throughput"];
    let rate = |key: &str| f(&t[key]);
    let load = &whole["load"];
    let swap = &whole["swap"];
    let sim = &whole["simulated"];

    let mut rows = Vec::new();
    let mut row = |figure: &str, measured: String, compared: String, target: &str, met: bool| {
        rows.push(format!(
            "| {figure} | {measured} | {compared} | {target} | {} |",
            verdict(met)
        ));
    };
    row(
        "`process`, cached token, 1 KB record, loaded plugin",
        format!("{loaded:.2} µs"),
        format!(
            "linked directly {linked:.2} µs: ratio {:.2}; whole `Chain::run` {chain:.2} µs",
            loaded / linked
        ),
        "within 1.3×",
        loaded / linked <= 1.3,
    );
    for (connection, plugin, oauth2, curl) in [
        ("new", plugin_new, oauth2_new, curl_new),
        ("warm", plugin_warm, oauth2_warm, curl_warm),
    ] {
        row(
            &format!("token fetch, {connection} connection"),
            format!("{plugin:.0} µs"),
            format!(
                "oauth2+ureq2 {oauth2:.0} µs (ratio {:.2}); curl `time_total` {curl:.0} µs \
                 (ratio {:.2})",
                plugin / oauth2,
                plugin / curl
            ),
            "≤ oauth2; within 1.2× of curl",
            plugin <= oauth2 && plugin <= 1.2 * curl,
        );
    }
    for workers in [1, 2, 4] {
        let oauth = rate(&format!("oauth_{workers}"));
        let noop = rate(&format!("noop_{workers}"));
        let target_met = noop / oauth <= 1.5 && (workers != 2 || oauth >= 100_000.0);
        row(
            &format!("`serve` records/s, cached token, 1 KB, {workers} worker(s)"),
            format!("{oauth:.0}/s"),
            format!(
                "`No-op` plugin {noop:.0}/s (ratio {:.2}); `cat` {:.0}/s",
                noop / oauth,
                rate("cat")
            ),
            if workers == 2 {
                "≥ 100,000/s; within 1.5× of No-op"
            } else {
                "within 1.5× of No-op"
            },
            target_met,
        );
    }
    row(
        "token requests, 100,000 records over 10 min, 5-min tokens, 60 s window",
        format!("{}", sim["requests"]),
        format!("ideal {}", sim["ideal"]),
        "equal",
        sim["requests"] == sim["ideal"],
    );
    let loader_ms = f(&load["loader_ms"]);
    row(
        "loading a plugin (discovery, checks, copy, load)",
        format!("{loader_ms:.2} ms"),
        format!("bare `dlopen` of a copy {:.2} ms", f(&load["dlopen_ms"])),
        "< 20 ms",
        loader_ms < 20.0,
    );
    let takeover = f(&swap["takeover_ms_max"]);
    let around = swap["per_second_around"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let worst_of = |windows: &[Value]| {
        windows
            .iter()
            .map(|s| f(&s["min_1s_window"]) / f(&s["before"]).max(1.0))
            .fold(f64::INFINITY, f64::min)
    };
    let worst = worst_of(&around);
    let worst_without_swap = worst_of(
        &swap["per_second_without_swap"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let shown: Vec<String> = around
        .iter()
        .map(|s| format!("{}/{}/{}", s["before"], s["during"], s["after"]))
        .collect();
    row(
        "swap: rename to first record on the new version",
        format!(
            "median {:.0} ms, max {takeover:.0} ms (50 drops)",
            f(&swap["takeover_ms_median"])
        ),
        "no swap".into(),
        "≤ 1 s",
        takeover <= 1000.0,
    );
    row(
        "swap: throughput dip (lines/s before/during/after, first 6 swaps, 2 workers)",
        shown.join(", "),
        format!(
            "fewest in any 1 s window: {:.0} % of the second before; the same windows \
             with no swap, in the same run: {}",
            worst * 100.0,
            if worst_without_swap.is_finite() {
                format!("{:.0} %", worst_without_swap * 100.0)
            } else {
                "not measured".to_owned()
            }
        ),
        "no second below half",
        worst >= 0.5,
    );
    let idle = f(&t["idle_rss_kib"]) / 1024.0;
    row(
        "memory: host resident, idle (chain configured)",
        format!("{idle:.1} MiB"),
        format!(
            "under load (2 workers) {:.1} MiB; after 2 swaps {:.1} MiB, after 100 {:.1} MiB",
            f(&t["load_rss_kib"]) / 1024.0,
            f(&swap["rss_after_2_swaps_kib"]) / 1024.0,
            f(&swap["rss_after_100_swaps_kib"]) / 1024.0
        ),
        "idle < 20 MB",
        idle * 1.048_576 < 20.0,
    );
    row(
        "memory: growth per swap (release)",
        format!("{:.0} KiB", f(&swap["growth_per_swap_kib"])),
        "from swap 2 to swap 100".into(),
        "stated",
        true,
    );

    let mut out = String::new();
    out.push_str(&format!("Measured {} on {}.\n\n", date(), machine()));
    out.push_str(&format!(
        "Versions: {}.\n\n",
        versions(&whole["curl"]["version"])
    ));
    out.push_str("| figure | measured (median) | compared with (same run) | target | |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

fn sh(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn date() -> String {
    sh("date -u '+%Y-%m-%d %H:%M UTC'")
}

fn machine() -> String {
    format!(
        "{} cores ({}), {} of memory, {}",
        sh("nproc"),
        sh("lscpu | sed -n 's/^Model name: *//p'"),
        sh("free -g | awk '/^Mem:/ {print $2 \" GiB\"}'"),
        sh("uname -sr")
    )
}

fn versions(curl: &Value) -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap_or_default();
    let crate_versions = |name: &str| {
        let mut found = Vec::new();
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line == format!("name = \"{name}\"") {
                if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                    found.push(v.trim_matches('"').to_owned());
                }
            }
        }
        format!("{name} {}", found.join(" and "))
    };
    let oidc =
        std::fs::read_to_string(root().join("tests/oidc/node_modules/oidc-provider/package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
    [
        sh("rustc --version"),
        format!("node {}", sh("node --version")),
        format!("oidc-provider {oidc}"),
        curl.as_str()
            .unwrap_or("curl ?")
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        crate_versions("ureq"),
        crate_versions("oauth2"),
        crate_versions("abi_stable"),
        crate_versions("criterion"),
    ]
    .join(", ")
}
