//! `serve` as a stream: lines leave as soon as they are ready, also when the
//! input trickles in (no OAuth server needed: the REST test plugin).

use posthandler_tests::{artifacts, plugin_dir, write_json, ServeProcess};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A plugin folder with the REST stand-in and a context whose chain is it
/// alone: no OAuth server needed.
struct RestChain {
    plugins: tempfile::TempDir,
    work: tempfile::TempDir,
    context: PathBuf,
}

impl RestChain {
    fn new() -> Self {
        let plugins = plugin_dir(&[&artifacts().rest_plugin]);
        let work = tempfile::tempdir().unwrap();
        let context = json!({"postProcessorPlugins": [{"plugin": "REST", "destinationSystems": [{"headerValue": "v"}]}]});
        let context = write_json(work.path(), "c.json", &context);
        RestChain {
            plugins,
            work,
            context,
        }
    }

    /// `serve`'s arguments after the subcommand.
    fn serve_args(&self) -> Vec<String> {
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        vec![
            "--server-type".into(),
            "test".into(),
            "--plugins".into(),
            path(self.plugins.path()),
            "--context".into(),
            path(&self.context),
        ]
    }
}

#[test]
fn a_slow_stream_gets_each_line_without_waiting_for_a_full_buffer() {
    // Regression: the writer flushed only after 50 ms without any result,
    // so at 50 records per second lines waited for 8 KiB of output.
    let rest = RestChain::new();
    let mut serve = ServeProcess::start(rest.serve_args());
    // Start-up (loading the plugin) is not part of the measure.
    serve.send(&json!({"seq": 0}));
    serve.wait_for(Duration::from_secs(30), "the first line", |l| l.len() == 1);
    let mut max_lag = 0;
    let start = Instant::now();
    for seq in 1..150u64 {
        serve.send(&json!({"seq": seq}));
        std::thread::sleep(Duration::from_millis(20));
        max_lag = max_lag.max(seq + 1 - serve.line_count() as u64);
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    let (code, lines, stderr) = serve.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 150);
    // 20 ms apart, a line is at most a few records behind its input.
    assert!(
        max_lag <= 10,
        "lines lagged {max_lag} records behind the input"
    );
}

#[test]
fn serve_ends_with_exit_1_when_its_output_is_closed() {
    // Regression: with more records than its queues held, serve blocked
    // forever once the reader of its output had gone (`| head -1`).
    let rest = RestChain::new();
    let mut child = std::process::Command::new(&artifacts().host)
        .arg("serve")
        .args(rest.serve_args())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for seq in 0..20_000 {
            if writeln!(stdin, "{}", json!({"seq": seq})).is_err() {
                break;
            }
        }
    });
    let output = posthandler_tests::wait_with_output(child, Duration::from_secs(60));
    feeder.join().unwrap();
    assert_eq!(output.code, Some(1), "{}", output.stderr);
    assert!(
        output.stderr.contains("writing results to standard output"),
        "{}",
        output.stderr
    );
}

/// The write end of a pipe whose reader has gone: writes to it fail with
/// EPIPE, as to a stderr piped into `head -1` that has finished.
fn pipe_without_reader() -> std::process::Stdio {
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    writer.into()
}

#[test]
fn a_closed_stderr_loses_its_lines_but_not_the_records_or_the_exit_code() {
    // Regression: the summary and error lines used `eprintln!`, which
    // panics when stderr is gone: exit 101 instead of 0 or the error's code.
    let rest = RestChain::new();
    let serve = |context: &str| {
        let mut args = rest.serve_args();
        *args.last_mut().unwrap() = context.to_owned();
        std::process::Command::new(&artifacts().host)
            .arg("serve")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(pipe_without_reader())
            .spawn()
            .unwrap()
    };
    let mut child = serve(rest.context.to_str().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for seq in 0..100 {
            writeln!(stdin, "{}", json!({"seq": seq})).unwrap();
        }
    });
    let output = posthandler_tests::wait_with_output(child, Duration::from_secs(60));
    feeder.join().unwrap();
    assert_eq!(output.code, Some(0));
    assert_eq!(output.stdout.lines().count(), 100);

    let missing = rest.work.path().join("no-such-context.json");
    let mut child = serve(missing.to_str().unwrap());
    drop(child.stdin.take());
    let output = posthandler_tests::wait_with_output(child, Duration::from_secs(60));
    assert_eq!(output.code, Some(2), "the exit code of a missing context");
}

#[test]
fn a_terminal_gets_the_progress_line_and_a_pipe_does_not() {
    // `script` (util-linux) runs the host with stderr on a pseudo-terminal;
    // stdin is a pipe that stays open 5 s, so two progress intervals pass.
    let rest = RestChain::new();
    let out = rest.work.path().join("out.jsonl");
    let quote = |path: &std::path::Path| format!("'{}'", path.display());
    let serve = format!(
        "{} serve --server-type test --plugins {} --context {}",
        quote(&artifacts().host),
        quote(rest.plugins.path()),
        quote(&rest.context),
    );
    let input = r#"(echo '{"seq":1}'; echo '{"seq":2}'; sleep 5)"#;
    let on_terminal = std::process::Command::new("timeout")
        .args(["60", "script", "-qefc"])
        .arg(format!("{input} | {serve} > {}", quote(&out)))
        .arg("/dev/null")
        .output()
        .expect("the test needs `script` from util-linux");
    let terminal = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{terminal}");
    assert!(
        terminal.contains("progress: records=2 "),
        "a progress line on the terminal: {terminal}"
    );
    assert!(terminal.contains("summary: records=2 "), "{terminal}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);

    let on_pipe = std::process::Command::new("timeout")
        .args(["60", "sh", "-c"])
        .arg(format!("{input} | {serve} > {}", quote(&out)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&on_pipe.stderr);
    assert!(on_pipe.status.success(), "{stderr}");
    assert!(
        !stderr.contains("progress:"),
        "no progress line in a pipe: {stderr}"
    );
    assert!(stderr.contains("summary: records=2 "), "{stderr}");
}

#[test]
fn a_record_whose_shape_blocks_a_write_fails_alone_as_invalid_record() {
    // The REST stand-in writes to /rest/headerValue; a record whose "rest"
    // is a number or a list has no room for it. The context is sound, so
    // the kind is the record's, not the configuration's.
    let rest = RestChain::new();
    let mut serve = ServeProcess::start(rest.serve_args());
    for record in [
        json!({"seq": 0, "rest": 5}),
        json!({"seq": 1, "rest": [1]}),
        json!({"seq": 2}),
    ] {
        serve.send(&record);
    }
    let (code, lines, stderr) = serve.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    for (line, cause) in lines.iter().zip([
        "'/rest' is not an object, so no field can be created in it",
        "'/rest' is a list without an item 'headerValue'",
    ]) {
        assert_eq!(line["error"]["kind"], "invalid_record", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains(cause), "{message}");
    }
    assert_eq!(
        lines[0]["record"],
        json!({"seq": 0, "rest": 5}),
        "the input, unchanged"
    );
    assert_eq!(
        lines[2]["record"]["rest"]["headerValue"], "v",
        "the next record runs"
    );
}

#[test]
fn out_of_range_flags_are_usage_errors_that_name_the_range() {
    // Regression: a --record-timeout near u64::MAX overflowed a deadline
    // and panicked (exit 101) after the first record.
    let rest = RestChain::new();
    for (flag, value, range) in [
        ("--record-timeout", "9223372036854775807", "1..=31536000"),
        ("--max-record-bytes", "0", "1..=1073741824"),
        (
            "--log-level",
            "loud",
            "[possible values: off, error, warn, info, debug, trace]",
        ),
    ] {
        let mut args = vec!["serve".to_owned()];
        args.extend(rest.serve_args());
        args.extend([flag.to_owned(), value.to_owned()]);
        let output = posthandler_tests::Host::new(args)
            .stdin("{\"seq\":0}\n")
            .run();
        assert_eq!(output.code, Some(2), "{flag} {value}: {}", output.stderr);
        assert!(output.stderr.contains(range), "{flag}: {}", output.stderr);
        assert!(output.stdout.is_empty());
    }
}
