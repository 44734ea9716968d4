//! Issue 5, transport security: https with verification, plain http only
//! where allowed, a CA bundle per destination system, and proxies.
//!
//! TLS is real: a rustls server on 127.0.0.1 (the scripted server's logic
//! behind `rustls::ServerConfig`) with a CA and leaf certificates that each
//! test makes with rcgen. The proxy is the test-only CONNECT proxy of
//! `posthandler_tests::proxy`, which reaches loopback only.

use posthandler_tests::proxy::ConnectProxy;
use posthandler_tests::scripted::{Reply, ScriptedServer};
use posthandler_tests::tls::TestCa;
use posthandler_tests::{
    artifacts, assert_no_secret, failure_line, plugin_dir, write_json, Host, Output,
};
use serde_json::{json, Value};
use std::path::Path;

const SECRET: &str = "tls-secret-3e8a1f";
const TOKEN: &str = "tls-token-7d2c9b41";

fn token_server(tls: Option<&TestCa>, names: &[&str]) -> ScriptedServer {
    let reply = |_: &_| {
        Reply::json(
            200,
            &format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":60}}"#),
        )
    };
    match tls {
        Some(ca) => ScriptedServer::start_tls(ca.server_config(names), reply),
        None => ScriptedServer::start(reply),
    }
}

fn system(server_type: &str, url: &str) -> Value {
    json!({
        "limitToServertype": server_type,
        "restUrl": url,
        "restUser": "shop-export",
        "restPassword": SECRET,
        "clientAuthentication": "body"
    })
}

fn context(system: Value) -> Value {
    json!({
        "name": "Transport",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [system],
            "destinationFieldForToken": "/auth/accessToken"
        }]
    })
}

/// `run` on `context` for `server_type` with `env` set.
fn run(dir: &Path, server_type: &str, context: &Value, env: &[(&str, &str)]) -> Output {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let mut host = Host::new([
        "run",
        "--server-type",
        server_type,
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--context",
        write_json(dir, "c.json", context).to_str().unwrap(),
        "--record",
        write_json(dir, "r.json", &json!({})).to_str().unwrap(),
    ])
    .env("NO_PROXY", "")
    .env("ALL_PROXY", "");
    for (key, value) in env {
        host = host.env(key, value);
    }
    let output = host.run();
    assert_no_secret(&output.stdout, SECRET);
    assert_no_secret(&output.stderr, SECRET);
    assert_no_secret(&output.stderr, TOKEN);
    output
}

fn assert_token(output: &Output) {
    assert_eq!(output.code, Some(0), "stderr:\n{}", output.stderr);
    assert_eq!(output.json()["auth"]["accessToken"], TOKEN);
}

#[test]
fn a_server_certified_by_the_configured_ca_bundle_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Company CA");
    let server = token_server(Some(&ca), &["127.0.0.1", "localhost"]);
    let mut with_ca = system("test", &format!("{}/token", server.base));
    with_ca["caCertificateFile"] = json!(ca.write_pem(dir.path(), "company-ca.pem"));
    assert_token(&run(dir.path(), "test", &context(with_ca), &[]));
    assert_eq!(server.requests().len(), 1);
    let form = server.requests()[0].form();
    assert!(form.contains(&("client_secret".into(), SECRET.into())));
}

#[test]
fn an_unknown_ca_fails_saying_unknown_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Company CA");
    let server = token_server(Some(&ca), &["127.0.0.1"]);
    let url = format!("{}/token", server.base);

    // The built-in public CAs do not know the company CA.
    let line = failure_line(
        &run(dir.path(), "test", &context(system("test", &url)), &[]),
        4,
    );
    assert!(
        line.contains("certificate from an unknown issuer"),
        "{line}"
    );
    assert!(line.contains("set caCertificateFile"), "{line}");

    // Nor does another company's bundle.
    let other = TestCa::new("Other CA");
    let mut with_other = system("test", &url);
    with_other["caCertificateFile"] = json!(other.write_pem(dir.path(), "other.pem"));
    let line = failure_line(&run(dir.path(), "test", &context(with_other), &[]), 4);
    assert!(
        line.contains("certificate from an unknown issuer: not among the CAs of"),
        "{line}"
    );
    assert!(line.contains("other.pem"), "{line}");
    assert_eq!(server.requests().len(), 0, "no request left the handshake");
}

#[test]
fn a_certificate_for_another_host_name_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Company CA");
    let server = token_server(Some(&ca), &["auth.other.example.test"]);
    let mut with_ca = system("test", &format!("{}/token", server.base));
    with_ca["caCertificateFile"] = json!(ca.write_pem(dir.path(), "ca.pem"));
    let line = failure_line(&run(dir.path(), "test", &context(with_ca), &[]), 4);
    assert!(
        line.contains("certificate is not valid for the host name"),
        "{line}"
    );
    assert_eq!(server.requests().len(), 0);
}

#[test]
fn a_ca_file_that_is_missing_or_not_pem_fails_at_configure() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(None, &[]);
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (path, problem) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let mut with = system("test", &server.token_url());
        with["caCertificateFile"] = json!(path);
        let line = failure_line(&run(dir.path(), "test", &context(with), &[]), 2);
        assert!(
            line.contains("destinationSystems[0].caCertificateFile"),
            "{line}"
        );
        assert!(line.contains(problem), "{line}");
    }
    assert_eq!(server.requests().len(), 0);
}

#[test]
fn plain_http_is_refused_except_to_loopback_or_an_allowing_dev_system() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://auth.example.test/token";
    let line = failure_line(
        &run(dir.path(), "test", &context(system("test", url)), &[]),
        2,
    );
    assert!(line.contains("restUrl: https is required"), "{line}");

    let mut allowing = system("test", url);
    allowing["allowInsecureHttp"] = json!("true");
    let line = failure_line(&run(dir.path(), "test", &context(allowing), &[]), 2);
    assert!(
        line.contains("allowInsecureHttp: only a dev system"),
        "{line}"
    );

    // On dev it goes, with a warning. The name resolves nowhere: the test
    // proxy takes the CONNECT and tunnels to the loopback token server.
    let server = token_server(None, &[]);
    let proxy = ConnectProxy::start_to(server.addr());
    let mut allowing = system("dev", url);
    allowing["allowInsecureHttp"] = json!("true");
    let output = run(
        dir.path(),
        "dev",
        &context(allowing),
        &[("HTTP_PROXY", &proxy.url)],
    );
    assert_token(&output);
    assert!(
        output
            .stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains("plain http")),
        "{}",
        output.stderr
    );
    assert_eq!(proxy.targets(), ["auth.example.test:80"]);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn https_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Company CA");
    let server = token_server(Some(&ca), &["127.0.0.1"]);
    let proxy = ConnectProxy::start();
    let mut with_ca = system("test", &format!("{}/token", server.base));
    with_ca["caCertificateFile"] = json!(ca.write_pem(dir.path(), "ca.pem"));
    let ctx = context(with_ca);
    let target = server.base.trim_start_matches("https://").to_owned();

    assert_token(&run(
        dir.path(),
        "test",
        &ctx,
        &[("HTTPS_PROXY", &proxy.url)],
    ));
    assert_eq!(proxy.targets(), [target], "tunnelled, TLS inside");

    // HTTP_PROXY is for http URLs only.
    assert_token(&run(
        dir.path(),
        "test",
        &ctx,
        &[("HTTP_PROXY", &proxy.url)],
    ));
    assert_eq!(proxy.targets().len(), 1);

    for no_proxy in ["127.0.0.1", "localhost,127.0.0.1:9999", "*"] {
        let env = [("HTTPS_PROXY", proxy.url.as_str()), ("NO_PROXY", no_proxy)];
        assert_token(&run(dir.path(), "test", &ctx, &env));
    }
    assert_eq!(proxy.targets().len(), 1, "NO_PROXY bypassed the proxy");
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn http_proxy_from_the_environment_is_used_for_http_urls() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(None, &[]);
    let proxy = ConnectProxy::start();
    let ctx = context(system("test", &server.token_url()));
    assert_token(&run(
        dir.path(),
        "test",
        &ctx,
        &[("HTTP_PROXY", &proxy.url)],
    ));
    assert_eq!(proxy.targets(), [server.addr().to_string()]);
    assert_token(&run(
        dir.path(),
        "test",
        &ctx,
        &[("HTTPS_PROXY", &proxy.url)],
    ));
    assert_eq!(proxy.targets().len(), 1, "HTTPS_PROXY is for https URLs");
}

#[test]
fn a_proxy_set_on_the_destination_system_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Company CA");
    let server = token_server(Some(&ca), &["127.0.0.1"]);
    let proxy = ConnectProxy::start();
    let environment_proxy = ConnectProxy::start();
    let mut with_proxy = system("test", &format!("{}/token", server.base));
    with_proxy["caCertificateFile"] = json!(ca.write_pem(dir.path(), "ca.pem"));
    with_proxy["proxy"] = json!(proxy.url);
    let env = [("HTTPS_PROXY", environment_proxy.url.as_str())];
    assert_token(&run(dir.path(), "test", &context(with_proxy), &env));
    assert_eq!(proxy.targets().len(), 1);
    assert!(
        environment_proxy.targets().is_empty(),
        "the system's proxy wins"
    );

    // A proxy that refuses the tunnel is named as the cause.
    let mut refusing = system("test", "https://auth.example.test/token");
    refusing["proxy"] = json!(proxy.url);
    let line = failure_line(&run(dir.path(), "test", &context(refusing), &[]), 4);
    assert!(line.contains("proxy"), "{line}");
}
