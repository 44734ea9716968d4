//! The token lifecycle through `posthandler-host serve`: the real host
//! binary, the real plugin file, the real OAuth server (oidc-provider) on
//! 127.0.0.1, and the scripted server only for what a real one will not do
//! on demand (an outage that ends, refresh tokens for client credentials).

use posthandler_tests::scripted::{Reply, Request, ScriptedServer};
use posthandler_tests::{artifacts, assert_no_secret, clients, plugin_dir, write_json, OidcServer};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Attempts per token request inside the plugin's transport on 429 and 503
/// (`MAX_ATTEMPTS` in plugin/src/http.rs).
const TRANSPORT_ATTEMPTS: usize = 3;

/// The shortest backoff delays of the cache: 1 s doubling, less 20 % jitter
/// (plugin/src/cache.rs).
fn shortest_backoff(failures: u32) -> f64 {
    0.8 * 2f64.powi(failures as i32 - 1).min(60.0)
}

fn context(url: &str, (id, secret): (&str, &str)) -> Value {
    json!({
        "name": "Delta export",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [{
                "limitToServertype": "test",
                "restUrl": url,
                "restUser": id,
                "restPassword": secret,
                "scope": "products.write",
                "clientAuthentication": "header"
            }],
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForRefreshToken": "/auth/refreshToken",
            "destinationFieldForExpires": "/auth/expires",
            "expiresFormat": "epochSeconds"
        }]
    })
}

fn record(seq: usize) -> String {
    json!({"seq": seq, "products": [{"sku": format!("A-{seq}")}], "auth": {}}).to_string()
}

/// One output line and when the test read it.
struct Line {
    at: SystemTime,
    value: Value,
}

impl Line {
    fn seq(&self) -> u64 {
        self.value["record"]["seq"].as_u64().expect("a seq")
    }
    fn token(&self) -> Option<&str> {
        self.value["record"]["auth"]["accessToken"].as_str()
    }
    fn refresh_token(&self) -> Option<&str> {
        self.value["record"]["auth"]["refreshToken"].as_str()
    }
    fn expires(&self) -> u64 {
        self.value["record"]["auth"]["expires"]
            .as_u64()
            .expect("an expiry")
    }
    fn error(&self) -> Option<&Value> {
        self.value.get("error")
    }
    /// The token was unexpired when its line came out.
    fn assert_unexpired(&self) {
        let read = self.at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert!(
            read.as_secs_f64() < self.expires() as f64,
            "line {} carries a token that expired at {} (read at {:.3})",
            self.seq(),
            self.expires(),
            read.as_secs_f64()
        );
    }
}

/// A running `posthandler-host serve`.
struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<Line>>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Serve {
    fn start(context: &Value, workers: usize) -> Self {
        let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
        let dir = tempfile::tempdir().unwrap();
        let context = write_json(dir.path(), "context.json", context);
        let mut child = Command::new(&artifacts().host)
            .arg("serve")
            .arg("--plugins")
            .arg(plugins.path())
            .arg("--context")
            .arg(&context)
            .args(["--server-type", "test", "--workers", &workers.to_string()])
            .env("RUST_LOG", "trace")
            .env_remove("POSTHANDLER_SERVER_TYPE")
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the host starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let stdout = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(out).lines() {
                    let Ok(text) = text else { break };
                    let value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                    let at = SystemTime::now();
                    lines.lock().unwrap().push(Line { at, value });
                }
            })
        };
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Serve {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
            _dirs: (plugins, dir),
        }
    }

    fn send(&mut self, seq: usize) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", record(seq)).unwrap();
        stdin.flush().unwrap();
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Sends one record every `every` until `done` says so (at most 40 s),
    /// calling `done` with the lines so far after every record; returns how
    /// many were sent.
    fn pace(&mut self, every: Duration, mut done: impl FnMut(&[Line]) -> bool) -> usize {
        let started = Instant::now();
        let mut seq = 0;
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "stream too slow"
            );
            self.send(seq);
            seq += 1;
            if done(&self.lines.lock().unwrap()) {
                return seq;
            }
            std::thread::sleep(every);
        }
    }

    /// How long ago the first line came out, zero before it did.
    fn since_first(lines: &[Line]) -> Duration {
        lines
            .first()
            .map_or(Duration::ZERO, |line| line.at.elapsed().unwrap_or_default())
    }

    /// Ends the input and waits (bounded) for the host to exit.
    fn finish(mut self) -> Finished {
        self.stdin = None;
        self.wait()
    }

    fn wait(mut self) -> Finished {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("serve ran past 60 s after its input ended");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        Finished {
            code: status.code(),
            lines,
            stderr,
        }
    }
}

struct Finished {
    code: Option<i32>,
    lines: Vec<Line>,
    stderr: String,
}

impl Finished {
    /// The counts of the `summary:` line on stderr.
    fn summary(&self) -> HashMap<String, u64> {
        let line = self
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("summary: "))
            .unwrap_or_else(|| panic!("no summary line:\n{}", self.stderr));
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.parse().unwrap()))
            .collect()
    }

    /// The plugin's log lines about token requests, for failure messages.
    fn token_log(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.contains("token request") || line.starts_with("summary"))
            .take(40)
            .collect();
        lines.join("\n")
    }

    fn assert_in_order(&self, count: usize) {
        assert_eq!(self.lines.len(), count, "one line per record");
        for (index, line) in self.lines.iter().enumerate() {
            assert_eq!(line.seq(), index as u64, "in input order, none twice");
        }
    }

    fn tokens(&self) -> BTreeSet<String> {
        self.lines
            .iter()
            .filter_map(|line| line.token().map(str::to_owned))
            .collect()
    }

    fn assert_no_leak(&self, secret: &str) {
        assert_no_secret(&self.stderr, secret);
        for token in self.tokens() {
            assert_no_secret(&self.stderr, &token);
        }
        for line in &self.lines {
            assert_no_secret(&line.value.to_string(), secret);
        }
    }
}

/// The server's log entries of requests to its token endpoint.
fn token_request_log(server: &OidcServer) -> Vec<Value> {
    server
        .requests()
        .into_iter()
        .filter(|request| request["path"] == "/token")
        .collect()
}

fn token_requests(server: &OidcServer) -> usize {
    token_request_log(server).len()
}

#[test]
fn ten_thousand_records_on_eight_workers_cost_one_token_request() {
    let server = OidcServer::start(&[]);
    let mut serve = Serve::start(&context(&server.token_url(), clients::HEADER), 8);
    let mut stdin = serve.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for seq in 0..10_000 {
            writeln!(stdin, "{}", record(seq)).unwrap();
        }
    });
    writer.join().unwrap();
    let done = serve.finish();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.assert_in_order(10_000);
    assert!(done.lines.iter().all(|line| line.error().is_none()));
    let tokens = done.tokens();
    assert_eq!(tokens.len(), 1, "every record carries the one token");
    for token in &tokens {
        assert_eq!(server.introspect(token)["active"], true);
    }
    assert_eq!(token_requests(&server), 1, "counted at the server");
    let summary = done.summary();
    assert_eq!(summary["tokenRequests"], 1);
    assert_eq!(summary["cacheHits"], 9_999);
    done.assert_no_leak(clients::HEADER.1);
}

#[test]
fn a_short_lived_token_is_renewed_before_it_expires() {
    let server = OidcServer::start(&["--access-token-ttl", "5"]);
    let mut serve = Serve::start(&context(&server.token_url(), clients::HEADER), 4);
    let mut introspected = BTreeSet::new();
    let mut checked = 0;
    let sent = serve.pace(Duration::from_millis(5), |lines| {
        // Each new token is asked about while it is young.
        for line in &lines[checked..] {
            if let Some(token) = line.token() {
                if introspected.insert(token.to_owned()) {
                    assert_eq!(server.introspect(token)["active"], true);
                }
            }
        }
        checked = lines.len();
        Serve::since_first(lines) > Duration::from_secs(12)
    });
    let done = serve.finish();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.assert_in_order(sent);
    for line in &done.lines {
        assert!(line.error().is_none(), "{}", line.value);
        line.assert_unexpired();
    }
    // A 5 s token with the default 60 s window is renewed at half its
    // lifetime: about 12 / 2.5 requests, not one per record.
    let requests = token_requests(&server);
    assert!((3..=8).contains(&requests), "{requests} token requests");
    let tokens = done.tokens();
    assert_eq!(tokens.len(), requests, "each request's token was used");
    assert_eq!(introspected, tokens);
    // Renewals come every 2.5 s, within the server's 5 s keep-alive: all
    // of them go over the stream's one connection.
    let ports: BTreeSet<u64> = token_request_log(&server)
        .iter()
        .map(|request| request["remote_port"].as_u64().expect("a client port"))
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "one connection for all token requests: {ports:?}"
    );

    // The next token appears before the last line of the one before expires.
    let mut order: Vec<&str> = Vec::new();
    for line in &done.lines {
        let token = line.token().unwrap();
        if !order.contains(&token) {
            order.push(token);
        }
    }
    for pair in order.windows(2) {
        let old_expires = done
            .lines
            .iter()
            .filter(|line| line.token() == Some(pair[0]))
            .map(Line::expires)
            .max()
            .unwrap();
        let new_first = done
            .lines
            .iter()
            .find(|line| line.token() == Some(pair[1]))
            .unwrap();
        let first_at = new_first.at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert!(
            first_at.as_secs_f64() < old_expires as f64,
            "a gap between tokens"
        );
    }
    done.assert_no_leak(clients::HEADER.1);
}

#[test]
fn an_outage_fails_records_clearly_with_bounded_requests_and_then_recovers() {
    // Scripted: a real server cannot be told to be down for 3 s.
    const OUTAGE: Duration = Duration::from_secs(3);
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let issued = Arc::new(AtomicUsize::new(0));
    let server = {
        let (first, issued) = (first.clone(), issued.clone());
        ScriptedServer::start(move |_| {
            let started = *first.lock().unwrap().get_or_insert_with(Instant::now);
            if started.elapsed() < OUTAGE {
                return Reply::json(503, r#"{"error":"temporarily_unavailable"}"#);
            }
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"scripted-access-{n}-x9","token_type":"Bearer","expires_in":3600}}"#
                ),
            )
        })
    };
    let secret = ("outage-client", "outage-secret-1");
    let mut serve = Serve::start(&context(&server.token_url(), secret), 4);
    // The stream runs until 7 s after the first token request.
    let sent = serve.pace(Duration::from_millis(10), |_| {
        first
            .lock()
            .unwrap()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(7))
    });
    let done = serve.finish();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.assert_in_order(sent);
    let first_ok = done
        .lines
        .iter()
        .position(|line| line.error().is_none())
        .unwrap_or_else(|| panic!("records succeed after the outage:\n{}", done.token_log()));
    assert!(first_ok > 0, "records during the outage fail");
    for line in &done.lines[..first_ok] {
        let error = line.error().unwrap();
        assert_eq!(error["kind"], "transport", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("HTTP 503"), "a clear cause: {message}");
    }
    for line in &done.lines[first_ok..] {
        assert!(
            line.error().is_none(),
            "no failure after recovery: {}",
            line.value
        );
        assert_eq!(line.token(), Some("scripted-access-0-x9"));
    }

    // Requests while the server was down: the token requests the backoff
    // allows within the outage, each tried by the transport at most
    // TRANSPORT_ATTEMPTS times.
    let outage_start = first.lock().unwrap().unwrap();
    let mut allowed_fetches = 1;
    let mut elapsed = 0.0;
    for failures in 1.. {
        elapsed += shortest_backoff(failures);
        if elapsed > OUTAGE.as_secs_f64() {
            break;
        }
        allowed_fetches += 1;
    }
    let requests = server.requests();
    let during = requests.len() - issued.load(Ordering::SeqCst);
    assert!(
        during <= allowed_fetches * TRANSPORT_ATTEMPTS,
        "{during} requests during the outage, more than {allowed_fetches} x {TRANSPORT_ATTEMPTS}"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 1, "one token after it");
    assert!(outage_start.elapsed() > OUTAGE);
    done.assert_no_leak(secret.1);
}

#[test]
fn wrong_credentials_fail_every_record_with_invalid_client_and_few_requests() {
    let server = OidcServer::start(&[]);
    let wrong = (clients::HEADER.0, "wrong-secret-1");
    let started = Instant::now();
    let mut serve = Serve::start(&context(&server.token_url(), wrong), 8);
    for seq in 0..1_000 {
        serve.send(seq);
    }
    let done = serve.finish();
    let elapsed = started.elapsed();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.assert_in_order(1_000);
    for line in &done.lines {
        let error = line.error().expect("every record fails");
        assert_eq!(error["kind"], "authorization");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("invalid_client"),
            "{error}"
        );
    }
    // One request per 60 s hold-back period the run lasted.
    let allowed = 1 + (elapsed.as_secs() / 60) as usize;
    let requests = token_requests(&server);
    assert!(
        requests >= 1 && requests <= allowed,
        "{requests} requests in {elapsed:?}"
    );
    assert_eq!(done.summary()["tokenRequests"] as usize, requests);
    done.assert_no_leak(wrong.1);
}

#[test]
fn renewal_uses_the_refresh_token_and_falls_back_when_it_is_refused() {
    // Scripted: oidc-provider issues no refresh token for client credentials.
    let issued = Arc::new(AtomicUsize::new(0));
    let server = {
        let issued = issued.clone();
        ScriptedServer::start(move |request: &Request| {
            let form: HashMap<String, String> = request.form().into_iter().collect();
            if form.get("refresh_token").map(String::as_str) == Some("scripted-refresh-2-r7") {
                return Reply::json(400, r#"{"error":"invalid_grant"}"#);
            }
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"scripted-access-{n}-a7","token_type":"Bearer",
                        "expires_in":4,"refresh_token":"scripted-refresh-{n}-r7"}}"#
                ),
            )
        })
    };
    let secret = ("refresh-client", "refresh-secret-1");
    let mut serve = Serve::start(&context(&server.token_url(), secret), 2);
    // 4 s tokens are renewed 2 s before expiry: at about 2, 4 and 6 s.
    let sent = serve.pace(Duration::from_millis(5), |lines| {
        Serve::since_first(lines) > Duration::from_millis(6500)
    });
    let done = serve.finish();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.assert_in_order(sent);
    for line in &done.lines {
        assert!(line.error().is_none(), "{}", line.value);
        line.assert_unexpired();
    }
    let grants: Vec<String> = server
        .requests()
        .iter()
        .map(|request| {
            let form: HashMap<String, String> = request.form().into_iter().collect();
            match form.get("refresh_token") {
                Some(refresh) => format!("refresh_token {refresh}"),
                None => form["grant_type"].clone(),
            }
        })
        .collect();
    assert!(
        grants.len() >= 4,
        "{grants:?}\n{}",
        done.stderr
            .lines()
            .filter(|l| l.contains("token"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        grants[..4],
        [
            "client_credentials",
            "refresh_token scripted-refresh-1-r7",
            "refresh_token scripted-refresh-2-r7",
            "client_credentials",
        ],
        "refresh first; refused, then client credentials"
    );
    for request in server.requests() {
        let (id, _) = request.basic_credentials().expect("client authentication");
        assert_eq!(id, secret.0);
    }
    assert!(done
        .lines
        .iter()
        .any(|line| line.refresh_token() == Some("scripted-refresh-2-r7")));
    for n in 1..=issued.load(Ordering::SeqCst) {
        assert_no_secret(&done.stderr, &format!("scripted-refresh-{n}-r7"));
    }
    done.assert_no_leak(secret.1);
}

#[test]
fn sigterm_mid_stream_leaves_one_line_for_every_record_read() {
    let server = OidcServer::start(&[]);
    let mut serve = Serve::start(&context(&server.token_url(), clients::HEADER), 4);
    let mut stdin = serve.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut written = 0usize;
        while written < 200_000 && writeln!(stdin, "{}", record(written)).is_ok() {
            written += 1;
        }
        written
    });
    let started = Instant::now();
    while serve.count() < 2_000 {
        assert!(started.elapsed() < Duration::from_secs(30), "too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let done = serve.wait();
    let written = writer.join().unwrap();

    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("stopping: no more records are read; finishing the "),
        "the signal is acknowledged:\n{}",
        done.stderr
    );
    let read = done.summary()["records"] as usize;
    assert!(read >= 2_000 && read < written, "read {read} of {written}");
    done.assert_in_order(read);
    assert!(done.lines.iter().all(|line| line.error().is_none()));
    assert_eq!(done.tokens().len(), 1);
    done.assert_no_leak(clients::HEADER.1);
}

#[test]
fn a_second_sigterm_ends_serve_at_once() {
    // Scripted: the token endpoint holds its answer for 10 s, so the first
    // record is still running when the signals come.
    let server = ScriptedServer::start(|_| {
        Reply::Delayed(
            Duration::from_secs(10),
            Box::new(Reply::json(
                200,
                r#"{"access_token":"slow-access-x9","token_type":"Bearer","expires_in":3600}"#,
            )),
        )
    });
    let secret = ("slow-client", "slow-secret-1");
    let mut serve = Serve::start(&context(&server.token_url(), secret), 2);
    serve.send(0);
    let started = Instant::now();
    while server.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no token request"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = |child: &Child| {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    term(&serve.child);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the record that is running"
    );
    let signalled = Instant::now();
    term(&serve.child);
    let done = serve.wait();

    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "the second SIGTERM ends serve at once, not after the token request"
    );
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(done.lines.is_empty(), "the running record gets no line");
    done.assert_no_leak(secret.1);
}
