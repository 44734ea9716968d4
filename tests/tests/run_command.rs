//! `posthandler-host run` with the real OAuth plugin file against the real
//! OAuth server (oidc-provider) on 127.0.0.1, and against the scripted
//! misbehaving server where a real one cannot play the part.

use posthandler_tests::scripted::{Reply, ScriptedServer};
use posthandler_tests::{
    artifacts, assert_no_secret, clients, failure_line, plugin_dir, run_once, write_json, Host,
    OidcServer, Output,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn system(server_type: &str, url: &str, (id, secret): (&str, &str), auth: &str) -> Value {
    json!({
        "limitToServertype": server_type,
        "restUrl": url,
        "restUser": id,
        "restPassword": secret,
        "grantType": "client_credentials",
        "scope": "products.write",
        "clientAuthentication": auth
    })
}

fn context(systems: Vec<Value>) -> Value {
    json!({
        "name": "Products to shop",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": systems,
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForRefreshToken": "/auth/refreshToken",
            "destinationFieldForExpires": "/auth/expires"
        }]
    })
}

fn record() -> Value {
    json!({"exportId": "run-1", "products": [{"sku": "A-1", "name": "Chair"}], "auth": {"refreshToken": "stale"}})
}

/// Runs `run` with the OAuth plugin on `context` and `record()`.
fn run(context: &Value, server_type: &str) -> Output {
    run_once(
        &[&artifacts().oauth_plugin],
        server_type,
        context,
        &record(),
        &[],
    )
}

fn assert_enriched(output: &Output, server: &OidcServer) -> String {
    assert_eq!(output.code, Some(0), "stderr:\n{}", output.stderr);
    let record = output.json();
    assert_eq!(record["exportId"], "run-1");
    assert_eq!(record["products"], record_products());
    let token = record["auth"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_eq!(
        server.introspect(&token)["active"],
        true,
        "the server confirms the token"
    );
    // Client credentials gets no refresh token from this server: the stale
    // value of an earlier run must be gone.
    assert!(record["auth"].get("refreshToken").is_none(), "{record}");
    let expires = record["auth"]["expires"].as_str().expect("an expiry");
    assert!(
        expires.ends_with('Z') && expires.contains('T'),
        "RFC 3339 UTC: {expires}"
    );
    assert_no_secret(&output.stderr, &token);
    assert_no_secret(&output.stderr, "header-secret-1");
    assert_no_secret(&output.stderr, "body-secret-1");
    token
}

fn record_products() -> Value {
    record()["products"].clone()
}

#[test]
fn both_client_authentication_methods_get_a_token_the_server_confirms() {
    let server = OidcServer::start(&[]);
    for (client, auth) in [(clients::HEADER, "header"), (clients::BODY, "body")] {
        let ctx = context(vec![system("test", &server.token_url(), client, auth)]);
        let output = run(&ctx, "test");
        assert_enriched(&output, &server);
        let last = server.requests().pop().unwrap();
        assert_eq!(last["auth"], auth, "the server saw the configured method");
        assert_eq!(last["client_id"], client.0);
        assert_eq!(last["grant_type"], "client_credentials");
        assert_eq!(last["scope"], "products.write");
    }
    assert_eq!(server.requests().len(), 2, "one token request per run");
}

#[test]
fn credentials_that_need_form_urlencoding_work_with_header() {
    let server = OidcServer::start(&[]);
    let ctx = context(vec![system(
        "test",
        &server.token_url(),
        clients::ENCODED,
        "header",
    )]);
    let output = run(&ctx, "test");
    assert_enriched(&output, &server);
    assert_no_secret(&output.stderr, clients::ENCODED.1);
}

#[test]
fn non_ascii_credentials_are_encoded_as_rfc_6749_section_2_3_1_says() {
    let server = ScriptedServer::start(|_| {
        Reply::json(
            200,
            r#"{"access_token":"scripted-token-1","token_type":"Bearer","expires_in":60}"#,
        )
    });
    let (id, secret) = ("café client:1", "pä%ss +wörd:é");
    let ctx = context(vec![system(
        "test",
        &server.token_url(),
        (id, secret),
        "header",
    )]);
    let output = run(&ctx, "test");
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.json()["auth"]["accessToken"], "scripted-token-1");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.basic_credentials(),
        Some((id.to_owned(), secret.to_owned()))
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.header("accept"), Some("application/json"));
    let form = request.form();
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(
        !form.iter().any(|(k, _)| k == "client_secret"),
        "never both methods"
    );
    assert_no_secret(&output.stderr, secret);
    assert_no_secret(&output.stderr, "scripted-token-1");
}

#[test]
fn a_wrong_secret_fails_with_the_servers_error_and_no_record() {
    let server = OidcServer::start(&[]);
    let wrong = (clients::HEADER.0, "wrong-secret-canary-42");
    let ctx = context(vec![system("test", &server.token_url(), wrong, "header")]);
    let output = run(&ctx, "test");
    // 3: authorization refused.
    let error_line = failure_line(&output, 3);
    assert!(error_line.contains("invalid_client"), "{error_line}");
    assert!(error_line.contains("401"), "{error_line}");
    assert_no_secret(&output.stderr, wrong.1);
    assert_eq!(server.requests().len(), 1, "no second request");
}

#[test]
fn a_secret_too_long_for_the_servers_limits_is_named_as_the_cause() {
    // Node answers a request head over 16 KiB with 431 and no body; the
    // bundled server takes a body of at most 64 KiB and answers 413.
    let server = OidcServer::start(&[]);
    let cases = [
        (
            "header",
            20_000,
            431,
            "headers as too large; with clientAuthentication header",
        ),
        (
            "body",
            70_000,
            413,
            "request as too large; with clientAuthentication body",
        ),
    ];
    for (auth, length, status, cause) in cases {
        let long = format!("long-secret-canary-{}", "s".repeat(length));
        let ctx = context(vec![system(
            "test",
            &server.token_url(),
            (clients::HEADER.0, &long),
            auth,
        )]);
        let output = run(&ctx, "test");
        // 4: an unusable response.
        let error_line = failure_line(&output, 4);
        assert!(
            error_line.contains(&format!("HTTP {status}")),
            "{error_line}"
        );
        assert!(error_line.contains(cause), "{error_line}");
        assert_no_secret(&output.stderr, &long);
        assert_no_secret(&output.stderr, "long-secret-canary");
    }
}

#[test]
fn only_the_system_of_the_installations_server_type_is_contacted() {
    let test_server = OidcServer::start(&[]);
    let prod_server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![
        system("prod", &prod_server.token_url(), clients::HEADER, "header"),
        system("test", &test_server.token_url(), clients::HEADER, "header"),
    ]);

    let output = run(&ctx, "test");
    assert_enriched(&output, &test_server);
    assert_eq!(test_server.requests().len(), 1);
    assert_eq!(prod_server.requests().len(), 0, "prod never contacted");

    // The environment variable works as the flag does.
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let args = |extra: &[&str]| {
        let mut args = vec![
            "run".to_owned(),
            "--plugins".into(),
            plugins.path().display().to_string(),
            "--context".into(),
            write_json(dir.path(), "c.json", &ctx).display().to_string(),
            "--record".into(),
            write_json(dir.path(), "r.json", &record())
                .display()
                .to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let output = Host::new(args(&[]))
        .env("POSTHANDLER_SERVER_TYPE", "test")
        .run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(test_server.requests().len(), 2);

    // No server type: an error and no request anywhere.
    let output = Host::new(args(&[])).run();
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("no server type"),
        "{}",
        output.stderr
    );
    // Flag and environment disagree: refused.
    let output = Host::new(args(&["--server-type", "test"]))
        .env("POSTHANDLER_SERVER_TYPE", "prod")
        .run();
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("refusing to guess"),
        "{}",
        output.stderr
    );
    assert_eq!(test_server.requests().len(), 2);
    assert_eq!(prod_server.requests().len(), 0);
}

#[test]
fn a_record_passes_through_unchanged_when_no_system_matches() {
    let prod_server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    let ctx = context(vec![system(
        "prod",
        &prod_server.token_url(),
        clients::HEADER,
        "header",
    )]);
    let output = run(&ctx, "dev");
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.json(), record(), "equal as JSON");
    assert!(
        output.stderr.contains("no destination system"),
        "says why:\n{}",
        output.stderr
    );
    assert_eq!(prod_server.requests().len(), 0);
}

#[test]
fn two_systems_for_one_server_type_is_a_configuration_error_before_any_request() {
    let server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    let ctx = context(vec![
        system("test", &server.token_url(), clients::HEADER, "header"),
        system("test", &server.token_url(), clients::BODY, "body"),
    ]);
    let output = run(&ctx, "test");
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("destinationSystems"),
        "{}",
        output.stderr
    );
    assert_eq!(server.requests().len(), 0);
}

#[test]
fn a_token_written_to_a_later_posthandlers_field_reaches_it_in_the_same_run() {
    let server = OidcServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = json!({
        "name": "Products to shop",
        "postProcessorPlugins": [
            {
                "plugin": "OAuth 2.0",
                "destinationSystems": [system("test", &server.token_url(), clients::HEADER, "header")],
                "destinationFieldForToken": "REST Destination System - 1 | Header Value",
                "destinationFieldForExpires": "/auth/expires"
            },
            {
                "plugin": "REST",
                "baseUrl": "http://127.0.0.1:9/products",
                "destinationSystems": [{"headerName": "Authorization", "headerValue": "unset"}]
            }
        ]
    });
    let plugins = plugin_dir(&[&artifacts().oauth_plugin, &artifacts().rest_plugin]);
    let (output, context_after) = run_with_context_out(plugins.path(), dir.path(), &ctx);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let out = output.json();
    let token = out["rest"]["headerValue"]
        .as_str()
        .expect("REST saw the token");
    assert_eq!(server.introspect(token)["active"], true);
    assert!(
        out["auth"].get("accessToken").is_none(),
        "the token goes only where configured"
    );
    assert_eq!(
        context_after.unwrap()["postProcessorPlugins"][1]["destinationSystems"][0]["headerValue"],
        token
    );
    let mode = std::fs::metadata(dir.path().join("context-out.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "a context holding a token is its owner's only"
    );
}

/// `run --server-type test` with the plugins in `plugins` on the context
/// file `context` and the record `record` (a file, or `-` for standard
/// input), and `extra` arguments after them; ready for `stdin` and `env`.
fn run_host(plugins: &Path, context: &Path, record: &Path, extra: &[&str]) -> Host {
    let mut args = vec![
        "run".as_ref(),
        "--server-type".as_ref(),
        "test".as_ref(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
        "--context".as_ref(),
        context.as_os_str(),
        "--record".as_ref(),
        record.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    Host::new(args)
}

/// `run` of `record()` on `ctx` with `--context-out`: the output, and the
/// context written out, if it was.
fn run_with_context_out(plugins: &Path, dir: &Path, ctx: &Value) -> (Output, Option<Value>) {
    let context_out = dir.join("context-out.json");
    let _ = std::fs::remove_file(&context_out);
    let context = write_json(dir, "c.json", ctx);
    let output = run_host(
        plugins,
        &context,
        Path::new("-"),
        &["--context-out", context_out.to_str().unwrap()],
    )
    .stdin(record().to_string())
    .run();
    let after = std::fs::read(&context_out)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap());
    (output, after)
}

#[test]
fn a_destination_in_the_oauth_posthandlers_own_settings_is_refused() {
    let server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    for destination in [
        "OAuth 2.0 Destination System - 1 | Rest URL",
        "PostProcessorPlugins | PostProcessorPlugins",
        "REST Destination System - 1 | Header Value",
    ] {
        let mut ctx = context(vec![system(
            "test",
            &server.token_url(),
            clients::HEADER,
            "header",
        )]);
        ctx["postProcessorPlugins"][0]["destinationFieldForToken"] = json!(destination);
        let output = run(&ctx, "test");
        assert_eq!(output.code, Some(2), "{destination}: {}", output.stderr);
        assert!(
            output
                .stderr
                .contains("postProcessorPlugins[0].destinationFieldForToken"),
            "names the field: {}",
            output.stderr
        );
    }
    assert_eq!(server.requests().len(), 0);
}

#[test]
fn the_bundled_example_gets_a_token_the_server_confirms() {
    // The README's main job, as a user runs it: it starts and stops its own
    // server on 127.0.0.1:47811.
    let demo = std::process::Command::new("bash")
        .arg(posthandler_tests::root().join("examples/demo.sh"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = posthandler_tests::wait_with_output(demo, posthandler_tests::PROCESS_TIMEOUT);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let record = output.json();
    assert!(record["auth"]["accessToken"].is_string(), "{record}");
    assert_eq!(record["products"][0]["sku"], "CH-1001");
    assert_no_secret(&output.stderr, clients::HEADER.1);

    // The same example against a server that stays up, to ask it about the
    // token: the example context points at port 47811.
    let server = OidcServer::start(&["--port", "47811"]);
    let root = posthandler_tests::root();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let output = run_host(
        plugins.path(),
        &root.join("examples/context.json"),
        &root.join("examples/record.json"),
        &[],
    )
    .run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let token = output.json()["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.introspect(&token)["active"], true);
    assert_eq!(server.requests().len(), 1, "only the test system was asked");
    assert_no_secret(&output.stderr, &token);
}

#[test]
fn a_context_out_it_cannot_write_fails_before_any_token_request() {
    // Regression: the token was fetched first and the run failed after it,
    // for a missing folder and, later found, for a folder as the file.
    let server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    let ctx = context(vec![system(
        "test",
        &server.token_url(),
        clients::HEADER,
        "header",
    )]);
    let folder = tempfile::tempdir().unwrap();
    let fifo = folder.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let shown = |path: &Path| path.display().to_string();
    let cases = [
        (
            "/nonexistent-folder/context.json".to_owned(),
            "the folder does not exist",
        ),
        (
            shown(folder.path()),
            "is a folder; name a regular file to write",
        ),
        // The rename would have replaced the FIFO (or a device) with a file.
        (shown(&fifo), "is a FIFO; name a regular file to write"),
    ];
    for (out, cause) in cases {
        let output = run_once(
            &[&artifacts().oauth_plugin],
            "test",
            &ctx,
            &record(),
            &["--context-out", &out],
        );
        let line = failure_line(&output, 2);
        assert_eq!(line, format!("error: --context-out: {out}: {cause}"));
    }
    // The run's own context file is not overwritten.
    let context = write_json(folder.path(), "c.json", &ctx);
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let out = ["--context-out", context.to_str().unwrap()];
    let output = run_host(plugins.path(), &context, Path::new("-"), &out)
        .stdin(record().to_string())
        .run();
    let line = failure_line(&output, 2);
    assert!(
        line.ends_with("is the file given as --context; write the changed context elsewhere"),
        "{line}"
    );
    assert_eq!(server.requests().len(), 0);
    let mut left: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["c.json", "fifo"], "nothing left behind");
}

#[test]
fn a_context_out_through_a_link_writes_its_target_and_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("kept.json");
    std::fs::write(&target, "{}").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink("kept.json", &link).unwrap();
    // No system of server type dev: the record passes through, no request.
    let url = "http://127.0.0.1:9/token";
    let ctx = context(vec![system("test", url, clients::HEADER, "header")]);
    let output = run_once(
        &[&artifacts().oauth_plugin],
        "dev",
        &ctx,
        &record(),
        &["--context-out", link.to_str().unwrap()],
    );
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let written: Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(written["name"], ctx["name"]);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn a_plugin_twice_in_the_chain_gets_the_token_at_the_place_named() {
    let server = OidcServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let rest = |header: &str| {
        json!({
            "plugin": "REST",
            "baseUrl": "http://127.0.0.1:9/products",
            "destinationSystems": [{"headerName": "Authorization", "headerValue": header}]
        })
    };
    let mut ctx = json!({
        "name": "Products to two shops",
        "postProcessorPlugins": [
            {
                "plugin": "OAuth 2.0",
                "destinationSystems": [system("test", &server.token_url(), clients::HEADER, "header")],
                "destinationFieldForToken": "postProcessorPlugins[2] Destination System - 1 | Header Value"
            },
            rest("first-shop"),
            rest("second-shop")
        ]
    });
    let plugins = plugin_dir(&[&artifacts().oauth_plugin, &artifacts().rest_plugin]);
    let run = |ctx: &Value| run_with_context_out(plugins.path(), dir.path(), ctx);

    let (output, after) = run(&ctx);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let after = after.unwrap();
    let header = |index: usize| {
        after["postProcessorPlugins"][index]["destinationSystems"][0]["headerValue"].clone()
    };
    assert_eq!(header(1), "first-shop", "the first REST keeps its setting");
    let token = header(2);
    assert_eq!(server.introspect(token.as_str().unwrap())["active"], true);
    // The last REST mirrored what it was given into the record.
    assert_eq!(output.json()["rest"]["headerValue"], token);

    // By plugin name alone, the destination could be either entry.
    ctx["postProcessorPlugins"][0]["destinationFieldForToken"] =
        json!("REST Destination System - 1 | Header Value");
    let requests = server.requests().len();
    let (output, _) = run(&ctx);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains(
            "could be a field of postProcessorPlugins[1] or postProcessorPlugins[2]: name the \
             entry by its place, such as 'postProcessorPlugins[1] Destination System - 1 | \
             Header Value'"
        ),
        "{}",
        output.stderr
    );
    assert_eq!(server.requests().len(), requests, "nothing was sent");
}

#[test]
fn an_endless_record_is_refused_at_1_gib_not_read_until_memory_runs_out() {
    // Regression: `--record /dev/zero` grew until the kernel killed it.
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let ctx = context(vec![system(
        "test",
        "http://127.0.0.1:9/token",
        clients::HEADER,
        "header",
    )]);
    let context = write_json(dir.path(), "c.json", &ctx);
    let output = run_host(plugins.path(), &context, Path::new("/dev/zero"), &[]).run();
    assert_eq!(
        failure_line(&output, 2),
        "error: /dev/zero: reading the record failed: longer than 1073741824 bytes"
    );
}

#[test]
fn a_record_on_stdin_that_is_not_utf8_is_refused_like_one_in_a_file() {
    // Regression: from a file exit 2, from standard input exit 1.
    let server = ScriptedServer::start(|_| Reply::json(500, "{}"));
    let ctx = context(vec![system(
        "test",
        &server.token_url(),
        clients::HEADER,
        "header",
    )]);
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let context = write_json(dir.path(), "c.json", &ctx);
    let file = dir.path().join("r.json");
    std::fs::write(&file, b"\xff\xfe{}").unwrap();
    for (record, stdin) in [
        ("-", &b"\xff\xfe{}"[..]),
        (file.to_str().unwrap(), &b""[..]),
    ] {
        let output = run_host(plugins.path(), &context, Path::new(record), &[])
            .stdin(stdin)
            .run();
        assert_eq!(output.code, Some(2), "{record}: {}", output.stderr);
        assert!(
            output
                .stderr
                .contains("reading the record failed: not UTF-8"),
            "{}",
            output.stderr
        );
    }
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[test]
fn a_run_that_fails_leaves_no_private_plugin_copy_behind() {
    // Regression: an early error skipped the clean-up, leaving a copy of
    // the plugin (tens of MB) in the state folder until the next run.
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let url = "http://127.0.0.1:9/token";
    let context = write_json(
        dir.path(),
        "c.json",
        &context(vec![system("test", url, clients::HEADER, "header")]),
    );
    let tmp = tempfile::tempdir().unwrap();
    let given = dir.path().join("state");
    // A token request refused (exit 4), and a record that is no JSON (2).
    for (record, code) in [(&b"{}"[..], 4), (&b"{"[..], 2)] {
        for state in [None, Some(&given)] {
            let extra: Vec<&str> = match state {
                Some(state) => vec!["--state-dir", state.to_str().unwrap()],
                None => vec![],
            };
            let output = run_host(plugins.path(), &context, Path::new("-"), &extra)
                .env("TMPDIR", tmp.path().to_str().unwrap())
                .stdin(record)
                .run();
            assert_eq!(output.code, Some(code), "{}", output.stderr);
        }
        // The process's own folder is gone; the one given keeps its marker.
        let own: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flat_map(|parent| std::fs::read_dir(parent.unwrap().path()).unwrap())
            .collect();
        assert!(own.is_empty(), "{own:?}");
        let left: Vec<_> = std::fs::read_dir(&given)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [".posthandler-host-state"], "only the marker stays");
    }
}
