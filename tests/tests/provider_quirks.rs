//! Issue 5: answers of real OAuth servers that must work, broken answers
//! that must fail clearly, retries, and extra request parameters.
//!
//! Every test runs the real host binary (`posthandler-host run`) with the
//! real plugin file against the scripted server (`ScriptedServer`), since a
//! real server will not send these answers on demand.

use posthandler_tests::scripted::{Reply, Request, ScriptedServer};
use posthandler_tests::{
    artifacts, assert_no_secret, failure_line, plugin_dir, run_once, write_json, Host, Output,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SECRET: &str = "quirk-secret-5b1e";
const TOKEN: &str = "quirk-token-9c2d4e6f";

fn system(url: &str) -> Value {
    json!({
        "limitToServertype": "test",
        "restUrl": url,
        "restUser": "shop-export",
        "restPassword": SECRET,
        "scope": "products.write",
        "clientAuthentication": "header"
    })
}

fn context(system: Value) -> Value {
    json!({
        "name": "Quirks",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [system],
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForExpires": "/auth/expires",
            "expiresFormat": "expiresIn"
        }]
    })
}

/// `run` with the plugin on `context`; checks the output for the secret
/// and, on stderr, for the token.
fn run(context: &Value) -> Output {
    let output = run_once(
        &[&artifacts().oauth_plugin],
        "test",
        context,
        &json!({"sku": "A-1"}),
        &[],
    );
    for text in [&output.stdout, &output.stderr] {
        assert_no_secret(text, SECRET);
    }
    assert_no_secret(&output.stderr, TOKEN);
    output
}

fn run_against(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (Output, usize) {
    let server = ScriptedServer::start(reply);
    let output = run(&context(system(&server.token_url())));
    (output, server.requests().len())
}

fn token_written(output: &Output) -> Value {
    assert_eq!(output.code, Some(0), "stderr:\n{}", output.stderr);
    let record = output.json();
    assert_eq!(record["auth"]["accessToken"], TOKEN, "{record}");
    record
}

fn body(extra: &str) -> String {
    format!(r#"{{"access_token":"{TOKEN}"{extra}}}"#)
}

#[test]
fn expires_in_as_a_string_is_read_and_missing_or_null_writes_no_expiry() {
    let (output, _) =
        run_against(|_| Reply::json(200, &body(r#","token_type":"Bearer","expires_in":"3599""#)));
    assert_eq!(token_written(&output)["auth"]["expires"], 3599);
    for extra in [
        r#","token_type":"Bearer""#,
        r#","token_type":"Bearer","expires_in":null"#,
    ] {
        let reply = body(extra);
        let (output, requests) = run_against(move |_| Reply::json(200, &reply));
        let record = token_written(&output);
        assert!(record["auth"].get("expires").is_none(), "{record}");
        assert_eq!(requests, 1);
    }
}

#[test]
fn a_missing_lifetime_does_not_cause_a_token_request_per_record() {
    let server = ScriptedServer::start(|_| Reply::json(200, &body(r#","token_type":"bearer""#)));
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let ctx = context(system(&server.token_url()));
    let records: String = (0..5).map(|i| format!("{{\"sku\":\"A-{i}\"}}\n")).collect();
    let output = Host::new([
        "serve",
        "--server-type",
        "test",
        "--workers",
        "1",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--context",
        write_json(dir.path(), "c.json", &ctx).to_str().unwrap(),
    ])
    .stdin(records)
    .run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let lines: Vec<Value> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(line["record"]["auth"]["accessToken"], TOKEN, "{line}");
    }
    assert_eq!(server.requests().len(), 1, "one token for all five records");
    assert_no_secret(&output.stderr, TOKEN);
    assert_no_secret(&output.stderr, SECRET);
}

#[test]
fn token_type_in_any_case_is_bearer_and_a_missing_one_is_warned_about() {
    for token_type in ["bearer", "BEARER", "Bearer"] {
        let reply = body(&format!(r#","token_type":"{token_type}""#));
        let (output, _) = run_against(move |_| Reply::json(200, &reply));
        token_written(&output);
        assert!(
            !output.stderr.contains("no token_type"),
            "{}",
            output.stderr
        );
    }
    let (output, _) = run_against(|_| Reply::json(200, &body("")));
    token_written(&output);
    let warning = output
        .stderr
        .lines()
        .find(|line| line.contains("no token_type"))
        .unwrap_or_else(|| panic!("a warning:\n{}", output.stderr));
    assert!(warning.to_ascii_lowercase().contains("warn"), "{warning}");
}

#[test]
fn other_token_types_are_refused_by_name_unless_allowed() {
    for token_type in ["mac", "pop"] {
        let reply = body(&format!(r#","token_type":"{token_type}""#));
        let server = ScriptedServer::start(move |_| Reply::json(200, &reply));
        let line = failure_line(&run(&context(system(&server.token_url()))), 4);
        assert!(
            line.contains(&format!("token type '{token_type}'")),
            "{line}"
        );
        assert!(line.contains("allowedTokenTypes"), "{line}");

        let mut allowing = system(&server.token_url());
        // The suite's form saves text: names separated by spaces.
        allowing["allowedTokenTypes"] = json!(format!("DPoP {}", token_type.to_uppercase()));
        token_written(&run(&context(allowing)));
    }
}

#[test]
fn any_2xx_status_with_a_usable_body_works() {
    for status in [200, 201, 202] {
        let (output, _) = run_against(move |_| Reply::json(status, &body("")));
        token_written(&output);
    }
}

#[test]
fn json_under_other_content_types_and_form_bodies_are_read() {
    for content_type in [
        Some("text/plain"),
        Some("text/javascript; charset=utf-8"),
        Some("application/json; charset=UTF-8"),
        None,
    ] {
        let (output, _) = run_against(move |_| {
            Reply::typed(200, content_type, &body(r#","token_type":"bearer""#))
        });
        token_written(&output);
    }
    // GitHub's answer to a client that does not ask for JSON.
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let form = format!("access_token={TOKEN}&scope=products.write&token_type=bearer");
        let (output, _) = run_against(move |_| Reply::typed(200, content_type, &form));
        token_written(&output);
    }
    let (output, _) = run_against(|_| {
        Reply::typed(
            200,
            Some("application/x-www-form-urlencoded"),
            "error=bad_verification_code&error_description=The+code+is+wrong",
        )
    });
    let line = failure_line(&output, 3);
    assert!(
        line.contains("bad_verification_code (The code is wrong)"),
        "{line}"
    );
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let (output, _) = run_against(|_| {
        Reply::json(
            200,
            &body(
                r#","token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,
                   "not-before-policy":0,"session_state":"x",
                   "nested":{"a":[1,2,{"b":null}]},"id_token":null"#,
            ),
        )
    });
    assert_eq!(token_written(&output)["auth"]["expires"], 3599);
}

#[test]
fn a_gzip_encoded_body_is_decoded() {
    let server = ScriptedServer::start(|_| {
        Reply::gzip_json(200, &body(r#","token_type":"Bearer","expires_in":60"#))
    });
    let output = run(&context(system(&server.token_url())));
    assert_eq!(token_written(&output)["auth"]["expires"], 60);
    let accept = server.requests()[0]
        .header("accept-encoding")
        .map(str::to_owned);
    assert!(accept.unwrap_or_default().contains("gzip"));
}

#[test]
fn a_200_with_an_error_member_or_an_empty_token_fails_writing_nothing() {
    let (output, _) = run_against(|_| {
        Reply::json(
            200,
            r#"{"error":"invalid_scope","error_description":"scope not allowed"}"#,
        )
    });
    let line = failure_line(&output, 3);
    assert!(
        line.contains("invalid_scope (scope not allowed), HTTP 200"),
        "{line}"
    );

    let (output, _) =
        run_against(|_| Reply::json(200, r#"{"access_token":"","token_type":"Bearer"}"#));
    let line = failure_line(&output, 4);
    assert!(line.contains("access_token is empty"), "{line}");
}

#[test]
fn a_non_json_body_is_described_with_the_token_masked() {
    let page =
        format!("<html><body>Please sign in <input name=\"t\" value=\"{TOKEN}\"></body></html>");
    let (output, _) = run_against(move |_| Reply::typed(200, Some("text/html"), &page));
    let line = failure_line(&output, 4);
    assert!(line.contains("HTTP 200"), "{line}");
    assert!(line.contains("content type text/html"), "{line}");
    assert!(
        line.contains("body starts with '<html><body>Please sign in"),
        "{line}"
    );
    assert!(line.contains("[redacted]"), "{line}");
    assert_no_secret(&output.stderr, TOKEN);

    // A proxy's error page, without a content type.
    let (output, _) = run_against(|_| Reply::typed(502, None, "Bad Gateway: upstream closed"));
    let line = failure_line(&output, 4);
    assert!(line.contains("HTTP 502, content type none"), "{line}");
    assert!(line.contains("'Bad Gateway: upstream closed'"), "{line}");
}

#[test]
fn a_truncated_body_fails_clearly() {
    let (output, requests) = run_against(|_| {
        Reply::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\
                 \r\n{{\"access_token\":\"{TOKEN}\","
            )
            .into_bytes(),
        )
    });
    let line = failure_line(&output, 4);
    assert!(line.contains("response ended early"), "{line}");
    assert_eq!(requests, 1);
}

#[test]
fn a_body_larger_than_the_cap_is_not_read_further() {
    let started = Instant::now();
    let (output, requests) = run_against(|_| {
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Content-Length: 4194304\r\n\r\n{\"access_token\":\""
            .to_vec();
        raw.resize(4 << 20, b'a');
        Reply::Raw(raw)
    });
    let line = failure_line(&output, 4);
    assert!(
        line.contains("larger than 1048576 bytes (not read further)"),
        "{line}"
    );
    assert_eq!(requests, 1);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_response_head_over_16_kib_fails_saying_so_and_one_under_is_read() {
    let head_with = |padding: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: lb={}\r\n\
             Content-Length: {}\r\n\r\n{}",
            "c".repeat(padding),
            body("").len(),
            body("")
        )
    };
    let (output, requests) = run_against(move |_| Reply::Raw(head_with(17 * 1024).into_bytes()));
    let line = failure_line(&output, 4);
    assert!(
        line.contains("the response head (status line and headers) is larger than 16 KiB"),
        "{line}"
    );
    assert_eq!(requests, 1);

    let (output, _) = run_against(move |_| Reply::Raw(head_with(15 * 1024).into_bytes()));
    token_written(&output);
}

#[test]
fn a_413_without_an_error_body_names_the_secret_in_the_body_as_the_likely_cause() {
    // A proxy in front of a token endpoint answers with an HTML page. The
    // bundled OAuth server's own 431 and 413 are in `run_command.rs`.
    let server = ScriptedServer::start(|_| Reply::Respond {
        status: 413,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: b"<html><h1>413 Request Entity Too Large</h1></html>".to_vec(),
    });
    let mut body_system = system(&server.token_url());
    body_system["clientAuthentication"] = json!("body");
    let line = failure_line(&run(&context(body_system)), 4);
    assert!(line.contains("HTTP 413"), "{line}");
    assert!(
        line.contains(
            "the server refused the request as too large; with clientAuthentication body"
        ),
        "{line}"
    );
    assert_eq!(server.requests().len(), 1, "not retried");
}

#[test]
fn a_401_with_www_authenticate_and_no_body_is_invalid_client() {
    let (output, requests) = run_against(|_| Reply::Respond {
        status: 401,
        headers: vec![("WWW-Authenticate".into(), "Basic realm=\"oauth\"".into())],
        body: vec![],
    });
    let line = failure_line(&output, 3);
    assert!(line.contains("refused: invalid_client"), "{line}");
    assert!(
        line.contains("WWW-Authenticate: Basic realm=\"oauth\""),
        "{line}"
    );
    assert!(line.contains("HTTP 401"), "{line}");
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    assert_eq!(requests, 1, "no second request");
}

#[test]
fn redirects_are_not_followed_and_the_error_names_the_target() {
    let elsewhere = Arc::new(ScriptedServer::start(|_| Reply::json(200, &body(""))));
    for status in [301, 302, 307, 308] {
        let target = format!("{}/oauth2/v2/token?tenant=x", elsewhere.base);
        let server = ScriptedServer::start(move |_| Reply::Respond {
            status,
            headers: vec![("Location".into(), target.clone())],
            body: vec![],
        });
        let line = failure_line(&run(&context(system(&server.token_url()))), 4);
        assert!(
            line.contains(&format!(
                "redirected to {}/oauth2/v2/token with HTTP {status}",
                elsewhere.base
            )),
            "{line}"
        );
        assert!(line.contains("set restUrl"), "{line}");
        assert_eq!(server.requests().len(), 1);
    }
    assert_eq!(elsewhere.requests().len(), 0, "never followed");
}

#[test]
fn refused_connections_unknown_hosts_and_silent_servers_fail_distinctly_and_in_time() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let line = failure_line(
        &run(&context(system(&format!("http://127.0.0.1:{port}/token")))),
        4,
    );
    assert!(line.ends_with("failed: connection refused"), "{line}");

    // A server that accepts and never answers, with a 1 s overall limit.
    let silent = ScriptedServer::start(|_| Reply::Silence);
    let mut quick = system(&silent.token_url());
    quick["timeoutSeconds"] = json!("1");
    quick["connectTimeoutSeconds"] = json!("1");
    let started = Instant::now();
    let line = failure_line(&run(&context(quick)), 4);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        line.contains("timed out: no complete response within 1 s (timeoutSeconds)"),
        "{line}"
    );

    // A DNS failure, in a network namespace of the test's own with no
    // network at all, so that the lookup leaves nothing on any wire.
    if !unshare_works() {
        eprintln!("skipped the DNS case: `unshare -n` is not available here");
        return;
    }
    let output = run_in_empty_netns(&context(system("https://token.example.invalid/token")));
    let line = failure_line(&output, 4);
    assert!(
        line.ends_with("failed: host not found (DNS lookup failed)"),
        "{line}"
    );
}

fn unshare_works() -> bool {
    std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|status| status.success())
}

fn run_in_empty_netns(context: &Value) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let child = std::process::Command::new("unshare")
        .arg("-n")
        .arg(&artifacts().host)
        .args([
            "run",
            "--server-type",
            "test",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "--context",
            write_json(dir.path(), "c.json", context).to_str().unwrap(),
            "--record",
            write_json(dir.path(), "r.json", &json!({}))
                .to_str()
                .unwrap(),
        ])
        .env("RUST_LOG", "trace")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = posthandler_tests::wait_with_output(child, Duration::from_secs(60));
    assert_no_secret(&output.stderr, SECRET);
    output
}

/// Answers with `first` for the first `times` requests, then with a token.
fn busy_then_ok(times: usize, first: impl Fn() -> Reply + Send + Sync + 'static) -> ScriptedServer {
    let count = AtomicUsize::new(0);
    ScriptedServer::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < times {
            first()
        } else {
            Reply::json(200, &body(r#","token_type":"Bearer""#))
        }
    })
}

#[test]
fn a_429_or_503_with_retry_after_is_retried_after_that_delay() {
    let server = busy_then_ok(1, || {
        Reply::json(429, r#"{"error":"slow_down"}"#).with_header("Retry-After", "1")
    });
    let started = Instant::now();
    token_written(&run(&context(system(&server.token_url()))));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as asked"
    );
    assert_eq!(server.requests().len(), 2);

    // Retry-After as an HTTP date, two seconds ahead (it has whole seconds).
    let server = busy_then_ok(1, || {
        let at = SystemTime::now() + Duration::from_secs(2);
        Reply::typed(503, Some("text/html"), "<h1>maintenance</h1>")
            .with_header("Retry-After", &httpdate(at))
    });
    let started = Instant::now();
    token_written(&run(&context(system(&server.token_url()))));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

/// An IMF-fixdate (RFC 9110 section 5.6.7) without a date crate.
fn httpdate(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn a_retry_after_beyond_the_bound_fails_at_once_saying_how_long() {
    let server = busy_then_ok(usize::MAX, || {
        Reply::json(429, r#"{"error":"rate_limited"}"#).with_header("Retry-After", "120")
    });
    let started = Instant::now();
    let line = failure_line(&run(&context(system(&server.token_url()))), 4);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        line.contains("server unavailable, HTTP 429 (rate_limited)"),
        "{line}"
    );
    assert!(line.contains("it asks to wait 120 s"), "{line}");
    assert_eq!(server.requests().len(), 1, "not retried");
}

#[test]
fn without_retry_after_the_backoff_is_short_and_bounded() {
    let server = busy_then_ok(usize::MAX, || Reply::typed(503, None, ""));
    let started = Instant::now();
    let line = failure_line(&run(&context(system(&server.token_url()))), 4);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(line.contains("server unavailable, HTTP 503"), "{line}");
    assert_eq!(server.requests().len(), 3, "the first try and two retries");

    let server = busy_then_ok(2, || Reply::typed(503, None, ""));
    token_written(&run(&context(system(&server.token_url()))));
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_400_or_401_is_never_retried_nor_sent_with_the_other_method() {
    for (status, reply) in [
        (400, r#"{"error":"invalid_request"}"#),
        (401, r#"{"error":"invalid_client"}"#),
    ] {
        let server = ScriptedServer::start(move |_| Reply::json(status, reply));
        failure_line(&run(&context(system(&server.token_url()))), 3);
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "HTTP {status}: one request");
        assert!(requests[0].basic_credentials().is_some());
        assert!(!requests[0]
            .form()
            .iter()
            .any(|(key, _)| key == "client_secret"));
    }
}

#[test]
fn audience_and_resource_are_sent_when_configured() {
    let server = ScriptedServer::start(|_| Reply::json(200, &body("")));
    let mut with = system(&server.token_url());
    with["audience"] = json!("https://api.example.test/");
    with["resource"] = json!("https://api.example.test/products?v=2");
    token_written(&run(&context(with)));
    let form = server.requests()[0].form();
    assert!(
        form.contains(&("audience".into(), "https://api.example.test/".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&(
            "resource".into(),
            "https://api.example.test/products?v=2".into()
        )),
        "{form:?}"
    );

    token_written(&run(&context(system(&server.token_url()))));
    let form = server.requests()[1].form();
    assert!(
        !form
            .iter()
            .any(|(key, _)| key == "audience" || key == "resource"),
        "{form:?}"
    );
}

#[test]
fn a_resource_that_is_not_an_absolute_uri_without_fragment_is_refused_at_configure() {
    let server = ScriptedServer::start(|_| Reply::json(200, &body("")));
    for (resource, problem) in [
        // The host's check of Url fields or the plugin's may say it first.
        ("api/products", "not an absolute UR"),
        (
            "https://api.example.test/#section",
            "must not have a fragment",
        ),
    ] {
        let mut with = system(&server.token_url());
        with["resource"] = json!(resource);
        let line = failure_line(&run(&context(with)), 2);
        assert!(line.contains("destinationSystems[0].resource"), "{line}");
        assert!(line.contains(problem), "{line}");
    }
    assert_eq!(server.requests().len(), 0);
}
