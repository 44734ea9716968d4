//! Hot swap: new plugin versions dropped into the folder of a running
//! `serve`, against the real OAuth server. Every input record must get
//! exactly one result line, in order, and each line must name the version
//! the record ran on.

use posthandler_tests::{
    assert_no_secret, clients, oauth_plugin_version, rss_kib, write_json, OidcServer, ServeProcess,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OLD: &str = "1.0.0";
const NEW: &str = "1.1.0";
const WAIT: Duration = Duration::from_secs(30);

fn context(server: &OidcServer) -> Value {
    let (id, secret) = clients::HEADER;
    json!({
        "name": "Products to shop",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [{
                "limitToServertype": "test",
                "restUrl": server.token_url(),
                "restUser": id,
                "restPassword": secret,
                "clientAuthentication": "header"
            }],
            "destinationFieldForToken": "/auth/accessToken"
        }]
    })
}

/// What every swap test starts from: the OAuth server, both plugin
/// versions, an empty plugin folder and a work folder.
struct Stage {
    server: OidcServer,
    old: std::path::PathBuf,
    new: std::path::PathBuf,
    dir: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Stage {
    fn new() -> Self {
        Stage {
            server: OidcServer::start(&[]),
            old: oauth_plugin_version(OLD),
            new: oauth_plugin_version(NEW),
            dir: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }
}

fn start_serve(dir: &Path, work: &Path, server: &OidcServer) -> ServeProcess {
    let ctx = write_json(work, "context.json", &context(server));
    ServeProcess::start([
        "--server-type",
        "test",
        "--workers",
        "2",
        "--plugins",
        dir.to_str().unwrap(),
        "--state-dir",
        work.join("state").to_str().unwrap(),
        "--context",
        ctx.to_str().unwrap(),
    ])
}

/// Drops `file` into `dir` as `name` the way operators should: a copy under
/// a name the host ignores, then a rename.
fn drop_in(file: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::copy(file, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn version(line: &Value) -> &str {
    line["handledBy"][0]["version"].as_str().unwrap_or("none")
}

/// Writes records `{"seq": n}` as fast as the host takes them until `stop`.
fn feed(
    serve: &mut ServeProcess,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let mut stdin = std::io::BufWriter::new(serve.take_stdin());
    std::thread::spawn(move || {
        let filler = "x".repeat(900);
        let mut seq = 0u64;
        // Bounded: a broken host cannot make the test write forever.
        while !stop.load(Ordering::SeqCst) && seq < 2_000_000 {
            if writeln!(stdin, "{}", json!({"seq": seq, "filler": filler})).is_err() {
                break;
            }
            seq += 1;
            sent.store(seq, Ordering::SeqCst);
            if seq % 64 == 0 && stdin.flush().is_err() {
                break;
            }
        }
        let _ = stdin.flush();
    })
}

/// Every sent record has exactly one line, in input order.
fn assert_complete(lines: &[Value], sent: u64) {
    assert_eq!(lines.len() as u64, sent, "one line per record");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            line["record"]["seq"], i as u64,
            "line {i} is out of order: {line}"
        );
    }
}

#[test]
fn a_new_version_takes_over_mid_stream_with_no_record_lost_doubled_or_mixed() {
    let Stage {
        server,
        old,
        new,
        dir,
        work,
    } = Stage::new();
    drop_in(&old, dir.path(), "liboauth2_a.so");
    let mut serve = start_serve(dir.path(), work.path(), &server);
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let feeder = feed(&mut serve, stop.clone(), sent.clone());

    serve.wait_for(WAIT, "records on the old version", |l| l.len() >= 2_000);
    drop_in(&new, dir.path(), "liboauth2_b.so");
    serve.wait_for(WAIT, "records on the new version", |l| {
        l.iter().rev().take(1).any(|line| version(line) == NEW)
    });
    let seen = serve.line_count();
    serve.wait_for(WAIT, "more records after the swap", |l| {
        l.len() >= seen + 2_000
    });
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let (code, lines, stderr) = serve.finish(WAIT);

    assert_eq!(code, Some(0), "{stderr}");
    assert_complete(&lines, sent.load(Ordering::SeqCst));
    let switch = lines.iter().position(|l| version(l) == NEW).unwrap();
    assert!(switch > 0);
    assert!(
        lines[..switch].iter().all(|l| version(l) == OLD),
        "old before the switch"
    );
    assert!(
        lines[switch..].iter().all(|l| version(l) == NEW),
        "new after the switch"
    );
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    let token = lines[0]["record"]["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        lines
            .iter()
            .all(|l| l["record"]["auth"]["accessToken"] == token.as_str()),
        "the new version reuses the handed-over token"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "the swap cost the server no token request"
    );
    assert_eq!(server.introspect(&token)["active"], true);
    assert!(stderr.contains("swapped chain"), "{stderr}");
    assert_no_secret(&stderr, &token);
    assert_no_secret(&stderr, clients::HEADER.1);
}

#[test]
fn overwriting_and_deleting_the_dropped_file_never_crashes_the_host() {
    let Stage {
        server,
        old,
        new,
        dir,
        work,
    } = Stage::new();
    let file = dir.path().join("liboauth2.so");
    std::fs::copy(&old, &file).unwrap();
    let mut serve = start_serve(dir.path(), work.path(), &server);
    let mut sent = 0u64;
    let mut send_batch = |serve: &mut ServeProcess| {
        for _ in 0..50 {
            serve.send(&json!({"seq": sent}));
            sent += 1;
        }
    };

    send_batch(&mut serve);
    serve.wait_for(WAIT, "the first batch", |l| l.len() == 50);
    // Overwritten in place: the same inode, truncated and written again.
    // Loading from the file itself would crash the host here.
    std::fs::write(&file, std::fs::read(&new).unwrap()).unwrap();
    let mut batches = 1;
    loop {
        send_batch(&mut serve);
        batches += 1;
        serve.wait_for(WAIT, "a batch", |l| l.len() == 50 * batches);
        if serve.lines().last().is_some_and(|l| version(l) == NEW) {
            break;
        }
        assert!(batches < 200, "the overwritten file was never taken up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Deleted: no version left, so records fail, each with a clear cause.
    std::fs::remove_file(&file).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        send_batch(&mut serve);
        batches += 1;
        serve.wait_for(WAIT, "a batch", |l| l.len() == 50 * batches);
        if serve
            .lines()
            .last()
            .is_some_and(|l| l.get("error").is_some())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removal was never taken up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, lines, stderr) = serve.finish(WAIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_complete(&lines, sent);
    let last = lines.last().unwrap();
    assert_eq!(last["error"]["kind"], "plugin", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no loaded plugin named 'OAuth 2.0'"),
        "{last}"
    );
    assert_eq!(
        last["record"]["seq"],
        sent - 1,
        "a failed record comes back unchanged"
    );
}

#[test]
fn a_broken_file_is_reported_and_the_running_version_keeps_serving() {
    let Stage {
        server,
        old,
        new,
        dir,
        work,
    } = Stage::new();
    drop_in(&old, dir.path(), "liboauth2_a.so");
    let mut serve = start_serve(dir.path(), work.path(), &server);

    let data = std::fs::read(&new).unwrap();
    let broken = work.path().join("broken.so");
    std::fs::write(&broken, &data[..data.len() / 3]).unwrap();
    drop_in(&broken, dir.path(), "liboauth2_b.so");
    let start = std::time::Instant::now();
    while !serve.stderr().contains("liboauth2_b.so") {
        assert!(start.elapsed() < WAIT, "the broken file was never reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    for seq in 0..20 {
        serve.send(&json!({"seq": seq}));
    }
    serve.wait_for(WAIT, "records", |l| l.len() == 20);
    let (code, lines, stderr) = serve.finish(WAIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_complete(&lines, 20);
    assert!(lines
        .iter()
        .all(|l| version(l) == OLD && l.get("error").is_none()));
    let report = stderr
        .lines()
        .find(|l| l.contains("liboauth2_b.so"))
        .unwrap();
    assert!(report.contains("truncated"), "names the cause: {report}");
}

#[test]
fn a_library_name_that_is_no_file_is_reported_once_while_serving() {
    // Regression: a FIFO, a folder or a dangling link was skipped silently.
    let Stage {
        server,
        old,
        dir,
        work,
        ..
    } = Stage::new();
    drop_in(&old, dir.path(), "liboauth2_a.so");
    let mut serve = start_serve(dir.path(), work.path(), &server);
    let odd = ["liboauth2_fifo.so", "liboauth2_dir.so", "liboauth2_link.so"];
    assert!(std::process::Command::new("mkfifo")
        .arg(dir.path().join(odd[0]))
        .status()
        .unwrap()
        .success());
    std::fs::create_dir(dir.path().join(odd[1])).unwrap();
    std::os::unix::fs::symlink("nowhere.so", dir.path().join(odd[2])).unwrap();
    let start = std::time::Instant::now();
    while !odd.iter().all(|name| serve.stderr().contains(name)) {
        assert!(
            start.elapsed() < WAIT,
            "not all were reported:\n{}",
            serve.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Several more scans of the folder.
    std::thread::sleep(Duration::from_millis(600));
    serve.send(&json!({"seq": 0}));
    serve.wait_for(WAIT, "records", |l| l.len() == 1);
    let (code, lines, stderr) = serve.finish(WAIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(version(&lines[0]), OLD);
    let kinds = ["a FIFO", "a folder", "a link to nothing"];
    for (name, kind) in odd.into_iter().zip(kinds) {
        let reports: Vec<_> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(reports.len(), 1, "once each: {reports:?}");
        assert!(
            reports[0].contains(&format!("not a regular file but {kind}")),
            "{}",
            reports[0]
        );
    }
}

#[test]
fn removing_the_newer_file_swaps_back_to_the_older_version() {
    let Stage {
        server,
        old,
        new,
        dir,
        work,
    } = Stage::new();
    drop_in(&old, dir.path(), "liboauth2_a.so");
    drop_in(&new, dir.path(), "liboauth2_b.so");
    let mut serve = start_serve(dir.path(), work.path(), &server);
    serve.send(&json!({"seq": 0}));
    serve.wait_for(WAIT, "the first record", |l| l.len() == 1);
    assert_eq!(
        version(&serve.lines()[0]),
        NEW,
        "the highest version is active"
    );

    std::fs::remove_file(dir.path().join("liboauth2_b.so")).unwrap();
    let mut sent = 1;
    loop {
        serve.send(&json!({"seq": sent}));
        sent += 1;
        serve.wait_for(WAIT, "a record", |l| l.len() == sent as usize);
        if version(serve.lines().last().unwrap()) == OLD {
            break;
        }
        assert!(sent < 500, "never swapped back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, lines, stderr) = serve.finish(WAIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_complete(&lines, sent);
    assert_eq!(
        server.requests().len(),
        1,
        "the older version took the cache back"
    );
}

/// The README states the memory a swap costs; this checks it under load.
const MAX_GROWTH_PER_SWAP_KIB: u64 = 4 * 1024;

#[test]
fn fifty_swaps_under_load_lose_nothing_and_stay_within_the_stated_memory() {
    let Stage {
        server,
        old,
        new,
        dir,
        work,
    } = Stage::new();
    drop_in(&old, dir.path(), "liboauth2_a.so");
    let mut serve = start_serve(dir.path(), work.path(), &server);
    let pid = serve.pid();
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let feeder = feed(&mut serve, stop.clone(), sent.clone());
    serve.wait_for(WAIT, "the stream", |l| l.len() >= 1_000);

    let mut rss_after_first_cycle = 0;
    let swaps = 50;
    for swap in 0..swaps {
        let want = if swap % 2 == 0 { NEW } else { OLD };
        if want == NEW {
            drop_in(&new, dir.path(), "liboauth2_b.so");
        } else {
            std::fs::remove_file(dir.path().join("liboauth2_b.so")).unwrap();
        }
        serve.wait_for(WAIT, "the swap", |l| {
            l.last().is_some_and(|line| version(line) == want)
        });
        if swap == 1 {
            rss_after_first_cycle = rss_kib(pid);
        }
    }
    let rss_end = rss_kib(pid);
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let (code, lines, stderr) = serve.finish(WAIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_complete(&lines, sent.load(Ordering::SeqCst));
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    let growth = rss_end.saturating_sub(rss_after_first_cycle) / (swaps - 2);
    eprintln!("rss after the first cycle {rss_after_first_cycle} KiB, at the end {rss_end} KiB: {growth} KiB per swap");
    assert!(
        growth <= MAX_GROWTH_PER_SWAP_KIB,
        "{growth} KiB per swap, more than the {MAX_GROWTH_PER_SWAP_KIB} KiB the README states"
    );
    assert_eq!(server.requests().len(), 1, "no swap cost a token request");
}
