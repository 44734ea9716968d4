//! The figures that need their subjects taking turns or whole processes:
//! the `process` call linked, loaded and in `Chain::run` (see
//! `posthandler_bench::process`), records per second through `serve`
//! (against `cat` and a `serve` with the `No-op` plugin), the token fetch of
//! the plugin's client against the `oauth2` crate's (taking turns, see
//! `posthandler_bench::fetch`) and curl's `time_total`, plugin loading
//! against a bare `dlopen`, the hot swap's takeover time and throughput dip,
//! resident memory, and the simulated-time token count. Writes
//! `target/bench-results/whole.json` for `report`.
//!
//! `posthandler-bench-whole <second plugin version file>`; `bench/run.sh`
//! builds that file (the OAuth plugin with another version) and runs this.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use posthandler_bench::{
    context, median, noop_context, record_1kb, release, results_dir, rss_kib, simulate, Oidc,
    Release, CLIENT_ID, CLIENT_SECRET, SCOPE,
};
use serde_json::{json, Value};

/// Records per throughput run.
const RECORDS: u64 = 200_000;
/// Runs per throughput figure (the median is quoted).
const RUNS: usize = 5;
/// Swaps for the memory figure.
const SWAPS: usize = 100;
/// Rounds of the token fetch figure (four requests each).
const FETCH_ROUNDS: usize = 2000;
/// Rounds of the `process` figure (three batches each).
const PROCESS_ROUNDS: usize = 300;

fn main() {
    let second_version = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: posthandler-bench-whole <oauth plugin file of a second version>"),
    );
    let release = release();
    let oidc = Oidc::start(Duration::from_secs(3600));
    let work = tempfile::tempdir().expect("a work folder");
    let mut results = serde_json::Map::new();

    eprintln!("simulated time: token requests");
    let simulated = simulate(
        100_000,
        Duration::from_secs(600),
        Duration::from_secs(300),
        Duration::from_secs(60),
    );
    assert_eq!(
        simulated.requests, simulated.ideal,
        "token requests equal the ideal"
    );
    results.insert(
        "simulated".into(),
        json!({"requests": simulated.requests, "ideal": simulated.ideal}),
    );

    eprintln!("process: linked, loaded and Chain::run, taking turns");
    let subjects = posthandler_bench::process::Subjects::new(&oidc.token_url());
    let process = posthandler_bench::process::interleaved(&subjects, PROCESS_ROUNDS);
    drop(subjects);
    results.insert(
        "process".into(),
        json!({
            "rounds": PROCESS_ROUNDS,
            "linked_ns": process.linked_ns,
            "loaded_ns": process.loaded_ns,
            "chain_ns": process.chain_ns,
        }),
    );

    eprintln!("token fetch: the plugin's client and oauth2's, taking turns");
    let fetch = posthandler_bench::fetch::token_fetch(FETCH_ROUNDS);
    results.insert(
        "fetch".into(),
        json!({
            "rounds": FETCH_ROUNDS,
            "plugin_new_us": fetch.plugin_new_us,
            "plugin_warm_us": fetch.plugin_warm_us,
            "oauth2_new_us": fetch.oauth2_new_us,
            "oauth2_warm_us": fetch.oauth2_warm_us,
        }),
    );

    eprintln!("curl time_total");
    results.insert("curl".into(), curl(&oidc));

    eprintln!("loading a plugin against a bare dlopen");
    results.insert("load".into(), load_times(&release, work.path()));

    eprintln!("serve throughput");
    let records = work.path().join("records.jsonl");
    write_records(&records, RECORDS);
    results.insert(
        "throughput".into(),
        throughput(&release, &oidc, &records, work.path()),
    );

    eprintln!("hot swaps and memory");
    results.insert(
        "swap".into(),
        swaps(&release, &second_version, &oidc, work.path()),
    );

    let out = results_dir().join("whole.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&Value::Object(results)).unwrap(),
    )
    .expect("whole.json is written");
    eprintln!("wrote {}", out.display());
}

/// curl's own `time_total` for the token request: the first URL of each
/// invocation opens a connection, the later ones reuse it.
fn curl(oidc: &Oidc) -> Value {
    let (mut new, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let url = oidc.token_url();
        let out = Command::new("curl")
            // Bodies go to stdout too; each time is on a line of its own.
            .args(["-s", "-w", "\\n%{time_total}\\n"])
            .args(["-u", &format!("{CLIENT_ID}:{CLIENT_SECRET}")])
            .args([
                "-d",
                &format!("grant_type=client_credentials&scope={SCOPE}"),
            ])
            .args([&url, &url, &url, &url, &url, &url])
            .output()
            .expect("curl runs");
        let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(|s| s * 1e6)
            .collect();
        assert_eq!(times.len(), 6, "curl printed six times");
        new.push(times[0]);
        warm.extend_from_slice(&times[1..]);
    }
    let version = Command::new("curl").arg("--version").output().ok();
    let version = version
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    json!({"new_us": median(&mut new), "warm_us": median(&mut warm), "version": version})
}

/// The loader's whole path (discovery, checks, copy, load) for one plugin
/// file, against `dlopen` alone of a fresh copy of the same file.
fn load_times(release: &Release, work: &Path) -> Value {
    let folder = work.join("load-folder");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&release.oauth_plugin, folder.join("liboauth2.so")).unwrap();
    let (mut loader_ms, mut dlopen_ms) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let state = work.join(format!("load-state-{i}"));
        let started = Instant::now();
        let loader = posthandler_host::loader::Loader::new(&state).expect("a loader");
        let discovery = loader.load_folder(&folder).expect("the folder loads");
        loader_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(discovery.plugins.len(), 1, "{:?}", discovery.refused);

        let copy = work.join(format!("bare-{i}.so"));
        std::fs::copy(&release.oauth_plugin, &copy).unwrap();
        let started = Instant::now();
        let library = abi_stable::library::RawLibrary::load_at(&copy).expect("dlopen");
        dlopen_ms.push(started.elapsed().as_secs_f64() * 1e3);
        // Never unloaded, like every plugin image.
        std::mem::forget(library);
    }
    json!({"loader_ms": median(&mut loader_ms), "dlopen_ms": median(&mut dlopen_ms)})
}

fn write_records(path: &Path, count: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for seq in 0..count {
        out.write_all(record_1kb(seq).as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

/// A plugin folder with `plugin` in it and a context file for `context`.
fn setup(work: &Path, name: &str, plugin: &Path, context: &Value) -> (PathBuf, PathBuf) {
    let folder = work.join(format!("plugins-{name}"));
    std::fs::create_dir_all(&folder).unwrap();
    let file = plugin.file_name().unwrap();
    std::fs::copy(plugin, folder.join(file)).unwrap();
    let context_file = work.join(format!("context-{name}.json"));
    std::fs::write(&context_file, context.to_string()).unwrap();
    (folder, context_file)
}

fn serve_command(release: &Release, folder: &Path, context: &Path, workers: usize) -> Command {
    let mut command = Command::new(&release.host);
    command
        .args([
            "--log-level",
            "warn",
            "serve",
            "--server-type",
            "test",
            "--plugins",
        ])
        .arg(folder)
        .arg("--context")
        .arg(context)
        .args(["--workers", &workers.to_string()])
        .stderr(Stdio::null());
    command
}

/// `cat records | <consumer> > counted`: seconds from start to the last
/// line, the lines seen, and the peak resident size of the consumer.
fn pipe_run(records: &Path, mut consumer: Command) -> (f64, u64, u64) {
    let started = Instant::now();
    let mut cat = Command::new("cat")
        .arg(records)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = consumer
        .stdin(cat.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let lines = count_lines(child.stdout.take().unwrap());
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let _ = child.wait();
    let _ = cat.wait();
    (elapsed, lines, peak.load(Ordering::SeqCst))
}

fn count_lines(mut out: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(n) => lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64,
        }
    }
}

fn throughput(release: &Release, oidc: &Oidc, records: &Path, work: &Path) -> Value {
    let (oauth_folder, oauth_context) = setup(
        work,
        "oauth",
        &release.oauth_plugin,
        &context(&oidc.token_url()),
    );
    let (noop_folder, noop_context) = setup(work, "noop", &release.noop_plugin, &noop_context());
    let mut result = serde_json::Map::new();

    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let mut cat = Command::new("cat");
        cat.stderr(Stdio::null());
        let (secs, lines, _) = pipe_run(records, cat);
        assert_eq!(lines, RECORDS);
        rates.push(lines as f64 / secs);
    }
    result.insert("cat".into(), json!(median(&mut rates)));

    // Idle: the host with its chain configured and no record yet.
    let mut idle = serve_command(release, &oauth_folder, &oauth_context, 2)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    result.insert("idle_rss_kib".into(), json!(rss_kib(idle.id())));
    drop(idle.stdin.take());
    let _ = idle.wait();

    // The two plugins take turns, first one then the other, so that both
    // meet the machine in the same state: these figures move by half with
    // whatever else the 2 cores run.
    let mut peak_rss = 0;
    let mut rates: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let plugins = [
        ("noop", &noop_folder, &noop_context),
        ("oauth", &oauth_folder, &oauth_context),
    ];
    for run in 0..RUNS {
        for workers in [1, 2, 4] {
            for turn in 0..plugins.len() {
                let (name, folder, context) = plugins[(run + turn) % plugins.len()];
                let (secs, lines, peak) =
                    pipe_run(records, serve_command(release, folder, context, workers));
                assert_eq!(
                    lines, RECORDS,
                    "{name} with {workers} workers: every record has a line"
                );
                rates
                    .entry(format!("{name}_{workers}"))
                    .or_default()
                    .push(lines as f64 / secs);
                if name == "oauth" {
                    peak_rss = peak_rss.max(peak);
                }
            }
        }
    }
    for (key, mut runs) in rates {
        let rate = median(&mut runs);
        eprintln!("  {key} workers: {rate:.0} records/s");
        result.insert(key, json!(rate));
    }
    result.insert("load_rss_kib".into(), json!(peak_rss));
    Value::Object(result)
}

/// The host serving a steady stream while versions are dropped in and taken
/// out: takeover time, throughput per second around a swap, memory per swap.
fn swaps(release: &Release, second: &Path, oidc: &Oidc, work: &Path) -> Value {
    let folder = work.join("plugins-swap");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&release.oauth_plugin, folder.join("liboauth2_a.so")).unwrap();
    let context_file = work.join("context-swap.json");
    std::fs::write(&context_file, context(&oidc.token_url()).to_string()).unwrap();
    let new_version = {
        let state = work.join("swap-probe");
        let loader = posthandler_host::loader::Loader::new(&state).unwrap();
        loader
            .load_file(second)
            .expect("the second version loads")
            .version
            .to_string()
    };
    let new_marker = format!("\"version\":\"{new_version}\"}}]}}");

    let mut host: Child = serve_command(release, &folder, &context_file, 2)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = host.id();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let mut stdin = host.stdin.take().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut block = String::new();
            for seq in 0..1000 {
                block.push_str(&record_1kb(seq));
                block.push('\n');
            }
            while !stop.load(Ordering::SeqCst) {
                if stdin.write_all(block.as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    // Every output line: when it arrived and whether the new version made it.
    let seen: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let stdout = host.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::with_capacity(1 << 16, stdout).lines() {
                let Ok(line) = line else { break };
                let is_new = line.ends_with(&new_marker);
                seen.lock().unwrap().push((Instant::now(), is_new));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));

    // The same windows with no swap: how far the throughput moves by itself
    // on this machine, to hold the dips against.
    let mut still = Vec::new();
    for _ in 0..6 {
        let at = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        still.push(per_second_around(&seen.lock().unwrap(), at));
    }

    let mut takeovers = Vec::new();
    let mut dips = Vec::new();
    let mut rss_after_first_cycle = 0;
    for swap in 0..SWAPS {
        let dropping = swap % 2 == 0;
        let start_len = seen.lock().unwrap().len();
        let at = Instant::now();
        if dropping {
            let tmp = folder.join("liboauth2_b.so.part");
            std::fs::copy(second, &tmp).unwrap();
            let at_rename = Instant::now();
            std::fs::rename(&tmp, folder.join("liboauth2_b.so")).unwrap();
            let first = wait_for(&seen, start_len, true);
            takeovers.push((first - at_rename).as_secs_f64() * 1e3);
        } else {
            std::fs::remove_file(folder.join("liboauth2_b.so")).unwrap();
            wait_for(&seen, start_len, false);
        }
        if swap < 6 {
            // The throughput in each second around the first swaps.
            std::thread::sleep(Duration::from_millis(1500));
            dips.push(per_second_around(&seen.lock().unwrap(), at));
        }
        if swap == 1 {
            rss_after_first_cycle = rss_kib(pid).unwrap_or(0);
        }
    }
    let rss_end = rss_kib(pid).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let steady = {
        let seen = seen.lock().unwrap();
        let now = Instant::now();
        let last_second = seen
            .iter()
            .rev()
            .take_while(|(at, _)| now - *at < Duration::from_secs(1))
            .count();
        last_second as f64
    };
    stop.store(true, Ordering::SeqCst);
    let _ = feeder.join();
    let _ = host.wait();
    let _ = reader.join();
    let growth = rss_end.saturating_sub(rss_after_first_cycle) as f64 / (SWAPS - 2) as f64;
    json!({
        "takeover_ms_median": median(&mut takeovers.clone()),
        "takeover_ms_max": takeovers.iter().cloned().fold(0.0, f64::max),
        "per_second_around": dips,
        "per_second_without_swap": still,
        "steady_per_second": steady,
        "rss_after_2_swaps_kib": rss_after_first_cycle,
        "rss_after_100_swaps_kib": rss_end,
        "growth_per_swap_kib": growth,
    })
}

/// Waits until a line after `from` is (or is not, for `new == false`) by the
/// new version, and returns when it arrived.
fn wait_for(seen: &Mutex<Vec<(Instant, bool)>>, from: usize, new: bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let seen = seen.lock().unwrap();
            if let Some((at, _)) = seen[from.min(seen.len())..].iter().find(|(_, n)| *n == new) {
                return *at;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no line from the expected version within 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines per second in [-1 s, 0), [0, 1 s) and [1 s, 1.5 s) (scaled) of `at`,
/// and the fewest lines of any 1 s window from -1 s to +1.5 s.
fn per_second_around(seen: &[(Instant, bool)], at: Instant) -> Value {
    let offsets: Vec<f64> = seen
        .iter()
        .map(|(t, _)| {
            if *t >= at {
                (*t - at).as_secs_f64()
            } else {
                -(at - *t).as_secs_f64()
            }
        })
        .filter(|o| (-1.0..1.5).contains(o))
        .collect();
    let count = |from: f64, to: f64| offsets.iter().filter(|o| (from..to).contains(*o)).count();
    let min_window = (0..=15)
        .map(|i| {
            let from = -1.0 + f64::from(i) * 0.1;
            count(from, from + 1.0)
        })
        .min()
        .unwrap_or(0);
    json!({
        "before": count(-1.0, 0.0),
        "during": count(0.0, 1.0),
        "after": count(1.0, 1.5) * 2,
        "min_1s_window": min_window,
    })
}
