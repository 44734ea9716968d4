//! Issue 5, secrets: the whole set of token-endpoint scenarios with canary
//! secrets and tokens, at the most verbose level (`RUST_LOG=trace` and
//! `--log-level trace`), and every captured output checked for the canaries
//! and their base64 and form-urlencoded forms; plus every `--help`.

use posthandler_tests::scripted::{Reply, ScriptedServer};
use posthandler_tests::{artifacts, assert_no_secret, clients, run_once, Host, OidcServer, Output};
use serde_json::{json, Value};

/// A secret with characters that change under form-urlencoding and base64.
const SECRET: &str = "canary+Secret/51f0c3a9:d7 é";
const TOKEN: &str = "canary-access-2b7e151628aed2a6";
const REFRESH: &str = "canary-refresh-abf7158809cf4f3c";

fn system(url: &str, (id, secret): (&str, &str), auth: &str) -> Value {
    json!({
        "limitToServertype": "test",
        "restUrl": url,
        "restUser": id,
        "restPassword": secret,
        "clientAuthentication": auth,
        "timeoutSeconds": "1"
    })
}

fn context(system: Value) -> Value {
    json!({
        "name": "Canaries",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [system],
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForRefreshToken": "/auth/refreshToken"
        }]
    })
}

fn run(context: &Value) -> Output {
    run_once(
        &[&artifacts().oauth_plugin],
        "test",
        context,
        &json!({"sku": "A-1"}),
        &["--log-level", "trace"],
    )
}

/// Checks stderr (and stdout, unless the run succeeded and the token is
/// the record's) for every canary.
fn check(output: &Output, secrets: &[&str], tokens: &[&str]) {
    assert!(
        output.stderr.contains("TRACE") || output.stderr.contains("DEBUG"),
        "the most verbose level was on:\n{}",
        output.stderr
    );
    for secret in secrets {
        assert_no_secret(&output.stderr, secret);
        assert_no_secret(&output.stdout, secret);
    }
    for token in tokens {
        assert_no_secret(&output.stderr, token);
        if output.code != Some(0) {
            assert_no_secret(&output.stdout, token);
        }
    }
}

/// A scenario's name and the scripted server's answer.
type Scenario = (&'static str, Box<dyn Fn() -> Reply + Send + Sync>);

fn success() -> Reply {
    Reply::json(
        200,
        &format!(
            r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":60,
                "refresh_token":"{REFRESH}"}}"#
        ),
    )
}

#[test]
fn no_scenario_leaks_a_secret_or_token_at_trace_level() {
    let canaries = ("canary-client", SECRET);
    let scenarios: Vec<Scenario> = vec![
        ("success", Box::new(success)),
        (
            "gzip",
            Box::new(|| Reply::gzip_json(200, &format!(r#"{{"access_token":"{TOKEN}"}}"#))),
        ),
        (
            "form",
            Box::new(|| {
                Reply::typed(
                    200,
                    None,
                    &format!("access_token={TOKEN}&token_type=bearer"),
                )
            }),
        ),
        (
            "wrong secret",
            Box::new(|| {
                Reply::json(
                    401,
                    r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                )
            }),
        ),
        // A server that echoes the secret and the token back in an error.
        (
            "echo",
            Box::new(|| {
                Reply::json(
                    400,
                    &format!(
                        r#"{{"error":"invalid_request","error_description":"got {} and {TOKEN}"}}"#,
                        SECRET.replace(' ', "")
                    ),
                )
            }),
        ),
        (
            "html",
            Box::new(|| {
                Reply::typed(
                    200,
                    Some("text/html"),
                    &format!("<html>{TOKEN} {REFRESH}</html>"),
                )
            }),
        ),
        (
            "empty token",
            Box::new(|| {
                Reply::json(
                    200,
                    &format!(r#"{{"access_token":"","refresh_token":"{REFRESH}"}}"#),
                )
            }),
        ),
        (
            "bad expiry",
            Box::new(|| {
                Reply::json(
                    200,
                    &format!(r#"{{"access_token":"{TOKEN}","expires_in":"soon"}}"#),
                )
            }),
        ),
        (
            "mac",
            Box::new(|| {
                Reply::json(
                    200,
                    &format!(r#"{{"access_token":"{TOKEN}","token_type":"mac"}}"#),
                )
            }),
        ),
        (
            "redirect",
            Box::new(|| Reply::Respond {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    format!("https://other.example.test/t?access_token={TOKEN}"),
                )],
                body: vec![],
            }),
        ),
        (
            "429",
            Box::new(|| {
                Reply::json(429, r#"{"error":"slow_down"}"#).with_header("Retry-After", "600")
            }),
        ),
        (
            "truncated",
            Box::new(|| {
                Reply::Raw(
                    format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n{{\"access_token\":\"{TOKEN}\""
                )
                    .into_bytes(),
                )
            }),
        ),
        ("silence", Box::new(|| Reply::Silence)),
    ];
    for (name, reply) in scenarios {
        let server = ScriptedServer::start(move |_| reply());
        // Both client authentication methods where the secret's path
        // differs in what comes back; the header method elsewhere.
        let methods: &[&str] = match name {
            "success" | "wrong secret" | "echo" => &["header", "body"],
            _ => &["header"],
        };
        for auth in methods {
            let output = run(&context(system(&server.token_url(), canaries, auth)));
            check(&output, &[SECRET], &[TOKEN, REFRESH]);
            if name == "success" {
                assert_eq!(output.code, Some(0), "{name}: {}", output.stderr);
                assert_eq!(output.json()["auth"]["accessToken"], TOKEN);
            } else if !["gzip", "form"].contains(&name) {
                assert_ne!(output.code, Some(0), "{name} fails: {}", output.stderr);
            }
        }
    }
}

#[test]
fn the_real_server_flow_leaks_nothing_at_trace_level() {
    let server = OidcServer::start(&[]);
    for (client, auth) in [(clients::HEADER, "header"), (clients::BODY, "body")] {
        let output = run(&context(system(&server.token_url(), client, auth)));
        assert_eq!(output.code, Some(0), "{}", output.stderr);
        let token = output.json()["auth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        check(&output, &[client.1], &[&token]);
    }
    let wrong = (clients::HEADER.0, "wrong-canary-secret-8f1d");
    let output = run(&context(system(&server.token_url(), wrong, "header")));
    assert_eq!(output.code, Some(3), "{}", output.stderr);
    check(&output, &[wrong.1], &[]);
}

#[test]
fn help_output_holds_no_secret() {
    // Canaries in the environment too: clap shows the value of an `env`
    // argument in help, and a proxy URL may carry a password.
    let proxy = "http://proxy-user:canary-proxy-pass-77c1@127.0.0.1:9";
    let with_canaries = |host: Host| {
        host.env("POSTHANDLER_REST_PASSWORD", SECRET)
            .env("HTTPS_PROXY", proxy)
            .env("OAUTH_TOKEN", TOKEN)
    };
    let help = with_canaries(Host::new(["--help"])).run();
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    let subcommands: Vec<String> = help
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    assert!(subcommands.contains(&"run".to_owned()), "{}", help.stdout);
    let mut outputs = vec![help];
    for subcommand in &subcommands {
        let output = with_canaries(Host::new([subcommand.as_str(), "--help"])).run();
        assert_eq!(output.code, Some(0), "{subcommand}: {}", output.stderr);
        outputs.push(output);
    }
    for output in outputs {
        for text in [&output.stdout, &output.stderr] {
            for canary in [SECRET, TOKEN, "canary-proxy-pass-77c1"] {
                assert_no_secret(text, canary);
            }
        }
    }
}
