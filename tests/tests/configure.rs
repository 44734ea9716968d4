//! Configuring the host as a suite user would (issue 6): `fields`, `check`,
//! the suite's spellings, the JSON Schema, secrets by reference and JSON
//! logs, with the real host binary, the real OAuth plugin file, the REST
//! test plugin and, where a token is needed, the real OAuth server on
//! 127.0.0.1.

use posthandler_tests::{
    artifacts, assert_no_secret, clients, plugin_dir, root, write_json, Host, OidcServer, Output,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Every secret any test here puts into a context or the environment.
const SECRETS: [&str; 3] = [clients::HEADER.1, clients::BODY.1, "canary-context-secret"];

/// Runs the host and checks all its output for every test secret and for
/// each of `tokens`.
fn host(args: &[&str], env: &[(&str, &str)], tokens: &[&str]) -> Output {
    let mut host = Host::new(args);
    for (key, value) in env {
        host = host.env(key, value);
    }
    let output = host.run();
    no_leak(&output, tokens);
    output
}

/// Secrets may appear nowhere; tokens only where a record carries them
/// (standard output of `run`), never in the logs.
fn no_leak(output: &Output, tokens: &[&str]) {
    for secret in SECRETS {
        assert_no_secret(&output.stdout, secret);
        assert_no_secret(&output.stderr, secret);
    }
    for token in tokens {
        assert_no_secret(&output.stderr, token);
    }
}

fn both_plugins() -> tempfile::TempDir {
    plugin_dir(&[&artifacts().oauth_plugin, &artifacts().rest_plugin])
}

fn check(plugins: &Path, context: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "check",
        "--plugins",
        plugins.to_str().unwrap(),
        "--context",
        context.to_str().unwrap(),
    ];
    args.extend(extra);
    host(&args, &[], &[])
}

fn error_lines(output: &Output) -> Vec<&str> {
    output
        .stdout
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect()
}

#[test]
fn check_reports_every_problem_of_each_broken_context_at_once() {
    let at = "postProcessorPlugins[0]";
    let system = |i: usize, key: &str| format!("{at}.destinationSystems[{i}].{key}");
    let https_required = "https is required (plain http only to a loopback host";
    let not_absolute = "not an absolute URL (it needs a scheme and a host";
    let cases: Vec<(&str, Vec<(String, &str)>)> = vec![
        (
            "missing-fields.json",
            vec![
                (system(0, "restUser"), "missing"),
                (system(0, "restPassword"), "missing"),
            ],
        ),
        (
            "misspelt-keys.json",
            vec![
                (
                    format!("{at}.destinationFieldForTokn"),
                    "unknown key (did you mean 'destinationFieldForToken'?)",
                ),
                (
                    system(0, "restPasword"),
                    "unknown key (did you mean 'restPassword'?)",
                ),
                (system(0, "restPassword"), "missing"),
            ],
        ),
        (
            "empty-destination.json",
            vec![
                (
                    format!("{at}.destinationFieldForToken"),
                    "'' is neither a JSON Pointer (starting with /) nor a field label",
                ),
                (
                    format!("{at}.destinationFieldForExpires"),
                    "' ' is neither a JSON Pointer (starting with /) nor a field label",
                ),
            ],
        ),
        (
            "bad-transport-settings.json",
            vec![
                (system(0, "proxy"), "scheme 'socks5' is not supported"),
                (system(0, "caCertificateFile"), "cannot read '/nonexistent.pem'"),
            ],
        ),
        (
            "wrong-shapes.json",
            vec![
                ("name".into(), "must be a string"),
                (format!("{at}.plugin"), "must be a plugin name"),
                (
                    "postProcessorPlugins[1].destinationSystems".into(),
                    "must be a list",
                ),
            ],
        ),
        (
            "entries-not-objects.json",
            (0..4)
                .map(|i| (format!("postProcessorPlugins[{i}]"), "must be a JSON object"))
                .collect(),
        ),
        ("relative-url.json", vec![(system(0, "restUrl"), not_absolute)]),
        ("http-to-remote-host.json", vec![(system(0, "restUrl"), https_required)]),
        (
            "two-systems-one-server-type.json",
            vec![(
                format!("{at}.destinationSystems"),
                "systems 0 and 1 are both limited to server type 'test'",
            )],
        ),
        (
            "unknown-choice-value.json",
            vec![
                (
                    system(0, "grantType"),
                    "'password' is not one of client_credentials (or the suite's 'Client Credentials')",
                ),
                (system(0, "clientAuthentication"), "'both' is not one of header, body"),
            ],
        ),
        (
            "destination-names-no-field.json",
            vec![(
                format!("{at}.destinationFieldForToken"),
                "'REST | Header Colour' names no field of a posthandler in this chain",
            )],
        ),
        (
            "destination-run-refuses.json",
            vec![
                (
                    format!("{at}.destinationFieldForToken"),
                    "'OAuth 2.0 Destination System - 1 | Rest URL' is a setting of postProcessorPlugins[0]",
                ),
                (
                    format!("{at}.destinationFieldForExpires"),
                    "the chain itself (PostProcessorPlugins) cannot be a destination",
                ),
            ],
        ),
        (
            "overlapping-destinations.json",
            vec![
                (
                    format!("{at}.destinationFieldForRefreshToken"),
                    "'/auth/refreshToken' lies inside postProcessorPlugins[0].destinationFieldForToken ('/auth')",
                ),
                (
                    format!("{at}.destinationFieldForExpires"),
                    "'/auth' is the same field as postProcessorPlugins[0].destinationFieldForToken ('/auth')",
                ),
            ],
        ),
        (
            "missing-secret-reference.json",
            vec![
                // Malformed wherever the system is used: errors even for
                // systems of other server types.
                (system(0, "restPassword"), "'env:' names no environment variable"),
                (system(1, "restPassword"), "'file:' names no file"),
            ],
        ),
        (
            "unknown-plugin.json",
            vec![(format!("{at}.plugin"), "no loaded plugin named 'SOAP 1.1'")],
        ),
        (
            "many-problems.json",
            vec![
                (
                    format!("{at}.destinationFieldForTokn"),
                    "unknown key (did you mean 'destinationFieldForToken'?)",
                ),
                (system(0, "restUser"), "missing"),
                (system(1, "clientAuthentication"), "'both' is not one of header, body"),
                (system(2, "restUrl"), not_absolute),
                // Found by the plugin's own checks, behind the problems above.
                (system(1, "restUrl"), https_required),
                (
                    format!("{at}.destinationSystems"),
                    "systems 1 and 2 are both limited to server type 'prod'",
                ),
            ],
        ),
    ];
    let plugins = both_plugins();
    let dir = root().join("tests/contexts");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut covered: Vec<&str> = cases.iter().map(|(file, _)| *file).collect();
    covered.sort();
    assert_eq!(files, covered, "every broken context has its expectations");

    for (file, expected) in &cases {
        let output = check(plugins.path(), &dir.join(file), &[]);
        assert_eq!(output.code, Some(2), "{file}: {}", output.stdout);
        let errors = error_lines(&output);
        for (place, cause) in expected {
            let start = format!("error: {place}: ");
            assert!(
                errors
                    .iter()
                    .any(|line| line.starts_with(&start) && line.contains(cause)),
                "{file}: no line {start:?} with {cause:?} in\n{}",
                output.stdout
            );
        }
        assert_eq!(
            errors.len(),
            expected.len(),
            "{file}: each problem once, no other:\n{}",
            output.stdout
        );
        let counted = match expected.len() {
            1 => "1 error".to_owned(),
            n => format!("{n} errors"),
        };
        assert!(output
            .stdout
            .ends_with(&format!("{file}: not sound ({counted}, 0 warnings)\n")));
    }
}

#[test]
fn run_refuses_a_blank_destination_with_the_cause_check_gives() {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let context = root().join("tests/contexts/empty-destination.json");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let output = Host::new(run_args(plugins.path(), &context, &out))
        .stdin("{}")
        .run();
    no_leak(&output, &[]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains(
            "postProcessorPlugins[0].destinationFieldForToken: '' is neither a JSON Pointer"
        ),
        "{}",
        output.stderr
    );
}

#[test]
fn run_still_refuses_a_context_of_the_wrong_shape_at_its_first_problem() {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let context = root().join("tests/contexts/wrong-shapes.json");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let output = Host::new(run_args(plugins.path(), &context, &out))
        .stdin("{}")
        .run();
    no_leak(&output, &[]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("wrong-shapes.json: name: must be a string"),
        "{}",
        output.stderr
    );
}

/// The example contexts (files of `examples/` with a chain).
fn example_contexts() -> Vec<(PathBuf, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if value.get("postProcessorPlugins").is_some() {
                found.push((path, value));
            }
        }
    }
    assert!(!found.is_empty(), "examples/ holds contexts");
    found
}

#[test]
fn every_example_context_passes_check() {
    let plugins = both_plugins();
    for (path, _) in example_contexts() {
        for extra in [&[][..], &["--server-type", "test"][..]] {
            let output = check(plugins.path(), &path, extra);
            assert_eq!(
                output.code,
                Some(0),
                "{}: {}",
                path.display(),
                output.stdout
            );
            assert!(error_lines(&output).is_empty());
        }
    }
}

#[test]
fn a_server_type_no_system_covers_is_a_warning_only_with_server_type() {
    let plugins = both_plugins();
    let dir = tempfile::tempdir().unwrap();
    let context = write_json(
        dir.path(),
        "c.json",
        &json!({"name": "Only test", "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [{"limitToServertype": "test", "restUrl": "https://a.example/t",
                "restUser": "u", "restPassword": "canary-context-secret"}],
            "destinationFieldForToken": "/auth/accessToken"
        }]}),
    );
    let output = check(plugins.path(), &context, &["--server-type", "prod"]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(
        output.stdout.starts_with(
            "warning: postProcessorPlugins[0]: 'OAuth 2.0' has nothing to do on server type 'prod'"
        ),
        "{}",
        output.stdout
    );
    let output = check(plugins.path(), &context, &[]);
    assert_eq!(output.code, Some(0));
    assert!(
        !output.stdout.lines().any(|l| l.starts_with("warning: ")),
        "{}",
        output.stdout
    );
    assert!(output.stdout.ends_with("sound (0 errors, 0 warnings)\n"));
}

fn schema_for(plugins: &Path) -> String {
    let output = host(
        &["schema", "--plugins", plugins.to_str().unwrap()],
        &[],
        &[],
    );
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    output.stdout
}

#[test]
fn the_committed_schema_is_what_the_plugins_descriptions_give() {
    let oauth_only = plugin_dir(&[&artifacts().oauth_plugin]);
    let generated = schema_for(oauth_only.path());
    let committed = std::fs::read_to_string(root().join("schema/context.schema.json")).unwrap();
    assert!(
        generated == committed,
        "schema/context.schema.json is stale; regenerate it with\n  \
         posthandler-host schema --plugins <folder with the OAuth 2.0 plugin only> > \
         schema/context.schema.json"
    );
}

#[test]
fn the_examples_and_both_spellings_validate_against_the_schema() {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(root().join("schema/context.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid JSON Schema");
    for (path, context) in example_contexts() {
        let errors: Vec<String> = validator
            .iter_errors(&context)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    let url = "https://auth.example.com/token";
    assert!(validator.is_valid(&documented_context(url)));
    assert!(validator.is_valid(&suite_context(url)));
    // The schema refuses what check refuses: unknown keys, unknown values.
    for broken in [
        "misspelt-keys.json",
        "unknown-choice-value.json",
        "missing-fields.json",
    ] {
        let path = root().join("tests/contexts").join(broken);
        let context: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(!validator.is_valid(&context), "{broken} validates");
    }
}

fn documented_context(url: &str) -> Value {
    json!({
        "name": "Products to shop",
        "postProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "destinationSystems": [{
                "limitToServertype": "test",
                "restUrl": url,
                "restUser": clients::HEADER.0,
                "restPassword": clients::HEADER.1,
                "grantType": "client_credentials",
                "scope": "products.write",
                "clientAuthentication": "header"
            }],
            "destinationFieldForToken": "/auth/accessToken",
            "destinationFieldForExpires": "/auth/expires"
        }]
    })
}

/// [`documented_context`] as the suite spells it.
fn suite_context(url: &str) -> Value {
    json!({
        "name": "Products to shop",
        "PostProcessorPlugins": [{
            "plugin": "OAuth 2.0",
            "Destination Systems": [{
                "Limit to Servertype": "test",
                "Rest URL": url,
                "Rest User": clients::HEADER.0,
                "Rest Password": clients::HEADER.1,
                "Grant type": "Client Credentials",
                "Scope": "products.write",
                "Client Authentication": "Send client credentials in header"
            }],
            "Destination Field for Token": "/auth/accessToken",
            "Destination Field for Expires": "/auth/expires"
        }]
    })
}

fn run_args<'a>(plugins: &'a Path, context: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        "--server-type",
        "test",
        "--plugins",
        plugins.to_str().unwrap(),
        "--context",
        context.to_str().unwrap(),
        "--record",
        "-",
        "--context-out",
        out.to_str().unwrap(),
    ]
}

fn run_record(args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
    let mut runner = Host::new(args).stdin(r#"{"exportId":"run-1"}"#);
    for (key, value) in env {
        runner = runner.env(key, value);
    }
    let output = runner.run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let record = output.json();
    let token = record["auth"]["accessToken"].as_str().unwrap().to_owned();
    no_leak(&output, &[&token]);
    (output, record)
}

#[test]
fn the_suite_spelling_and_the_documented_keys_behave_the_same() {
    let server = OidcServer::start(&[]);
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, context) in [
        ("documented", documented_context(&server.token_url())),
        ("suite", suite_context(&server.token_url())),
    ] {
        let path = write_json(dir.path(), &format!("{name}.json"), &context);
        let out = dir.path().join(format!("{name}-out.json"));
        let (_, mut record) = run_record(&run_args(plugins.path(), &path, &out), &[]);
        let token = record["auth"]["accessToken"].take();
        assert_eq!(server.introspect(token.as_str().unwrap())["active"], true);
        record["auth"]["expires"].take();
        let context_out = std::fs::read(&out).unwrap();
        results.push((record, context_out));
    }
    assert_eq!(results[0].0, results[1].0, "the same record");
    assert_eq!(
        String::from_utf8_lossy(&results[0].1),
        String::from_utf8_lossy(&results[1].1),
        "the same context, in documented keys"
    );
    let seen: Vec<Value> = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["auth"], seen[1]["auth"]);
    assert_eq!(seen[0]["scope"], seen[1]["scope"]);

    // And the same problems, at the same places, when broken.
    let mut broken_outputs = Vec::new();
    for (name, mut context) in [
        ("documented", documented_context("/token")),
        ("suite", suite_context("/token")),
    ] {
        let chain = context
            .as_object_mut()
            .unwrap()
            .values_mut()
            .find(|v| v.is_array())
            .unwrap();
        chain[0]
            .as_object_mut()
            .unwrap()
            .insert("Expires Formatt".into(), json!("rfc3339"));
        let path = write_json(dir.path(), "broken.json", &context);
        let output = check(plugins.path(), &path, &[]);
        assert_eq!(output.code, Some(2), "{name}: {}", output.stdout);
        broken_outputs.push(output.stdout);
    }
    assert_eq!(broken_outputs[0], broken_outputs[1]);
    assert_eq!(
        error_lines_of(&broken_outputs[0]).len(),
        2,
        "{}",
        broken_outputs[0]
    );
}

fn error_lines_of(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("error: ")).collect()
}

#[test]
fn every_text_fields_lists_passes_check_and_is_written_by_run() {
    let server = OidcServer::start(&[]);
    let plugins = both_plugins();
    let dir = tempfile::tempdir().unwrap();
    let mut context = documented_context(&server.token_url());
    context["postProcessorPlugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "plugin": "REST",
            "baseUrl": "https://shop.example.com/api",
            "destinationSystems": [{"headerName": "Authorization", "headerValue": "unset"}]
        }));
    let path = write_json(dir.path(), "c.json", &context);
    let listing = host(
        &[
            "fields",
            "--json",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "--context",
            path.to_str().unwrap(),
        ],
        &[],
        &[],
    );
    assert_eq!(listing.code, Some(0), "{}", listing.stderr);
    let choices = listing.json();
    let choices = choices.as_array().unwrap();
    let names: Vec<&str> = choices
        .iter()
        .map(|c| c["choice"].as_str().unwrap())
        .collect();
    for expected in [
        "PostProcessorPlugins | PostProcessorPlugins",
        "OAuth 2.0 | Destination Systems",
        "OAuth 2.0 Destination System - 1 | Rest URL",
        "OAuth 2.0 | Destination Field for Token",
        "REST | Base URL",
        "REST | Destination Systems",
        "REST Destination System - 1 | Header Name",
        "REST Destination System - 1 | Header Value",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let mut written = 0;
    for choice in choices {
        let label = choice["choice"].as_str().unwrap();
        let mut ctx = context.clone();
        let text = match choice["text"].as_str() {
            Some(text) => text,
            // Listed as not writable: check must refuse it too.
            None => label,
        };
        ctx["postProcessorPlugins"][0]["destinationFieldForToken"] = json!(text);
        let path = write_json(dir.path(), "one.json", &ctx);
        let checked = check(plugins.path(), &path, &[]);
        if choice["text"].is_null() {
            assert_eq!(checked.code, Some(2), "{label} listed as not writable");
            continue;
        }
        assert_eq!(choice["writableBy"], json!([0]), "{label}");
        assert_eq!(checked.code, Some(0), "{label}: {}", checked.stdout);

        let out = dir.path().join("out.json");
        let output = Host::new(run_args(plugins.path(), &path, &out))
            .stdin(r#"{"exportId":"run-1"}"#)
            .run();
        no_leak(&output, &[]);
        assert_eq!(output.code, Some(0), "{label}: {}", output.stderr);
        let after: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let rest = &after["postProcessorPlugins"][1];
        let token = match text {
            "REST | Base URL" => &rest["baseUrl"],
            "REST Destination System - 1 | Header Name" => {
                &rest["destinationSystems"][0]["headerName"]
            }
            "REST Destination System - 1 | Header Value" => {
                &rest["destinationSystems"][0]["headerValue"]
            }
            other => panic!("a writable choice this test does not know: {other}"),
        };
        let token = token.as_str().expect("the token was written there");
        assert_eq!(server.introspect(token)["active"], true, "{label}");
        written += 1;
    }
    assert_eq!(written, 3, "each REST field took a token");
}

#[test]
fn a_run_needs_only_the_secrets_of_its_own_server_type() {
    let server = OidcServer::start(&[]);
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let mut context = documented_context(&server.token_url());
    let systems = &mut context["postProcessorPlugins"][0]["destinationSystems"];
    systems[0]["restPassword"] = json!("env:POSTHANDLER_TEST_TEST_SECRET");
    let mut prod = systems[0].clone();
    prod["limitToServertype"] = json!("prod");
    prod["restPassword"] = json!("env:POSTHANDLER_TEST_PROD_SECRET");
    systems.as_array_mut().unwrap().push(prod);
    let path = write_json(dir.path(), "c.json", &context);
    let env = [("POSTHANDLER_TEST_TEST_SECRET", clients::HEADER.1)];
    let prod_missing = "postProcessorPlugins[0].destinationSystems[1].restPassword: \
        environment variable 'POSTHANDLER_TEST_PROD_SECRET' (from \
        'env:POSTHANDLER_TEST_PROD_SECRET') is not set (needed only on server type 'prod')";

    // The staging run gets its token without the production secret.
    let out = dir.path().join("out.json");
    let (output, record) = run_record(&run_args(plugins.path(), &path, &out), &env);
    let token = record["auth"]["accessToken"].as_str().unwrap();
    assert_eq!(server.introspect(token)["active"], true);
    assert!(output.stderr.contains(prod_missing), "{}", output.stderr);
    let after: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        after["postProcessorPlugins"][0]["destinationSystems"][1]["restPassword"],
        "env:POSTHANDLER_TEST_PROD_SECRET"
    );

    // `check` for test warns about the prod secret; for prod, it is an error.
    let check_as = |extra: &[&str]| {
        let mut args = vec!["check", "--plugins", plugins.path().to_str().unwrap()];
        args.extend(["--context", path.to_str().unwrap()]);
        args.extend(extra);
        host(&args, &env, &[])
    };
    let output = check_as(&["--server-type", "test"]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(
        output
            .stdout
            .contains(&format!("warning: {prod_missing}\n")),
        "{}",
        output.stdout
    );
    let output = check_as(&["--server-type", "prod"]);
    assert_eq!(output.code, Some(2), "{}", output.stdout);
    assert_eq!(
        error_lines(&output),
        [
            "error: postProcessorPlugins[0].destinationSystems[1].restPassword: environment \
          variable 'POSTHANDLER_TEST_PROD_SECRET' (from 'env:POSTHANDLER_TEST_PROD_SECRET') \
          is not set"
        ],
        "{}",
        output.stdout
    );
    // Without a server type, every system's missing secret is a warning.
    let output = check_as(&[]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(output.stdout.contains(prod_missing), "{}", output.stdout);
    assert!(error_lines(&output).is_empty(), "{}", output.stdout);
}

#[test]
fn env_and_file_secrets_work_and_only_references_are_written_or_logged() {
    let server = OidcServer::start(&[]);
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/header.txt"),
        format!("{}\n", clients::HEADER.1),
    )
    .unwrap();
    let env = [("POSTHANDLER_TEST_HEADER_SECRET", clients::HEADER.1)];
    for reference in [
        "env:POSTHANDLER_TEST_HEADER_SECRET",
        "file:secrets/header.txt",
    ] {
        let mut context = documented_context(&server.token_url());
        context["postProcessorPlugins"][0]["destinationSystems"][0]["restPassword"] =
            json!(reference);
        let path = write_json(dir.path(), "c.json", &context);
        let out = dir.path().join("out.json");
        let mut args = run_args(plugins.path(), &path, &out);
        args.extend(["--log-format", "json"]);
        let (output, record) = run_record(&args, &env);
        let token = record["auth"]["accessToken"].as_str().unwrap();
        assert_eq!(server.introspect(token)["active"], true, "{reference}");

        let after = std::fs::read_to_string(&out).unwrap();
        assert_no_secret(&after, clients::HEADER.1);
        assert_no_secret(&after, token);
        let after: Value = serde_json::from_str(&after).unwrap();
        assert_eq!(
            after["postProcessorPlugins"][0]["destinationSystems"][0]["restPassword"],
            reference
        );

        let lines: Vec<Value> = output
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        for line in &lines {
            let keys: Vec<&str> = line
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["ts", "level", "target", "message"], "{line}");
        }
        let token_line = lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().starts_with("token request"))
            .expect("a token request line");
        let message = token_line["message"].as_str().unwrap();
        assert!(message.contains("'Products to shop'"), "{message}");
        assert!(message.contains("destination system 0"), "{message}");
        assert!(message.contains(" ms"), "{message}");
        assert_eq!(token_line["target"], "posthandler_oauth2::token");
    }

    // A reference to nothing fails before any request, naming the reference.
    let mut context = documented_context(&server.token_url());
    context["postProcessorPlugins"][0]["destinationSystems"][0]["restPassword"] =
        json!("file:secrets/missing.txt");
    let path = write_json(dir.path(), "c.json", &context);
    let requests = server.requests().len();
    let output = Host::new(run_args(plugins.path(), &path, &dir.path().join("x.json")))
        .stdin("{}")
        .run();
    no_leak(&output, &[]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("restPassword: file '")
            && output
                .stderr
                .contains("(from 'file:secrets/missing.txt') cannot be read (not found)"),
        "{}",
        output.stderr
    );
    assert_eq!(server.requests().len(), requests, "nothing was sent");
}

#[test]
fn a_literal_secret_reaches_the_server_as_written_and_stays_escaped() {
    // Scripted: the secret that reaches the server is what is checked, and
    // a real server has no client whose secret begins with `env:`.
    const SECRET: &str = "env:NOT_A_VARIABLE";
    let server = posthandler_tests::scripted::ScriptedServer::start(|request| {
        use posthandler_tests::scripted::Reply;
        match request.basic_credentials() {
            Some((_, secret)) if secret == SECRET => Reply::json(
                200,
                r#"{"access_token":"literal-access-x9","token_type":"Bearer","expires_in":60}"#,
            ),
            _ => Reply::json(401, r#"{"error":"invalid_client"}"#),
        }
    });
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let mut context = documented_context(&server.token_url());
    let reference = format!("literal:{SECRET}");
    context["postProcessorPlugins"][0]["destinationSystems"][0]["restPassword"] = json!(reference);
    let path = write_json(dir.path(), "c.json", &context);
    let out = dir.path().join("out.json");
    let (output, record) = run_record(&run_args(plugins.path(), &path, &out), &[]);
    assert_eq!(record["auth"]["accessToken"], "literal-access-x9");
    assert_no_secret(&output.stderr, SECRET);
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        after["postProcessorPlugins"][0]["destinationSystems"][0]["restPassword"],
        reference.as_str(),
        "written back escaped, so that the next run reads the same secret"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_key_given_twice_is_refused_by_check_and_run_before_any_request() {
    // Regression: JSON keeps the last of two equal keys without a word, so
    // the order of two restUrls decided where the secret went.
    let server = OidcServer::start(&[]);
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let text = documented_context(&server.token_url())
        .to_string()
        .replacen(
            "\"restUrl\":",
            "\"restUrl\":\"https://elsewhere.example/token\",\"restUrl\":",
            1,
        );
    let path = dir.path().join("twice.json");
    std::fs::write(&path, &text).unwrap();

    let output = check(plugins.path(), &path, &[]);
    assert_eq!(output.code, Some(2), "{}", output.stdout);
    let place = "postProcessorPlugins[0].destinationSystems[0].restUrl";
    assert!(
        error_lines(&output)
            .iter()
            .any(|line| line.contains(place) && line.contains("given twice")),
        "{}",
        output.stdout
    );

    let output = Host::new(run_args(
        plugins.path(),
        &path,
        &dir.path().join("out.json"),
    ))
    .stdin("{}")
    .run();
    no_leak(&output, &[]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(output.stderr.contains("given twice"), "{}", output.stderr);
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[test]
fn an_empty_chain_is_sound_with_a_warning() {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_json(
        dir.path(),
        "empty.json",
        &json!({"name": "Nothing yet", "postProcessorPlugins": []}),
    );
    let output = check(plugins.path(), &path, &[]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(
        output.stdout.contains(
            "warning: postProcessorPlugins: the chain is empty: every record passes through \
             unchanged"
        ),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("sound (0 errors, 1 warning)"),
        "{}",
        output.stdout
    );
}

#[test]
fn json_logs_carry_the_error_that_ends_a_run_and_the_serve_summary_too() {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    // A server type no system covers: `serve` passes records through, and
    // `run` with a port nobody listens on fails after the plugin's log line.
    let context = documented_context("http://127.0.0.1:9/token");
    let path = write_json(dir.path(), "c.json", &context);
    let path = path.to_str().unwrap();
    let at = plugins.path().to_str().unwrap();
    let json_lines = |output: &Output| -> Vec<Value> {
        output
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };

    let output = Host::new([
        "--log-format",
        "json",
        "run",
        "--server-type",
        "test",
        "--plugins",
        at,
        "--context",
        path,
        "--record",
        "-",
    ])
    .stdin("{}")
    .run();
    no_leak(&output, &[]);
    assert_eq!(output.code, Some(4), "{}", output.stderr);
    let last = json_lines(&output).pop().expect("a line");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["target"], "posthandler_host", "{last}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with("error: posthandler 'OAuth 2.0'"),
        "{message}"
    );

    let output = Host::new([
        "--log-format",
        "json",
        "serve",
        "--server-type",
        "dev",
        "--plugins",
        at,
        "--context",
        path,
    ])
    .stdin("{\"sku\":\"A-1\"}\n")
    .run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let last = json_lines(&output).pop().expect("a line");
    assert_eq!(last["level"], "INFO", "{last}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with("summary: records=1 failures=0"),
        "{message}"
    );
}

#[test]
fn a_destination_inside_an_earlier_entrys_is_warned_about_and_the_same_one_is_not() {
    let plugins = plugin_dir(&[&artifacts().oauth_plugin]);
    let dir = tempfile::tempdir().unwrap();
    let url = "https://auth.example.com/token";
    let entry = |token: &str| {
        let mut entry = documented_context(url)["postProcessorPlugins"][0].clone();
        let entry_map = entry.as_object_mut().unwrap();
        entry_map.retain(|key, _| !key.starts_with("destinationField"));
        entry_map.insert("destinationFieldForToken".into(), json!(token));
        entry
    };
    let chain = |first: &str, second: &str| {
        json!({
            "name": "Two tokens",
            "postProcessorPlugins": [entry(first), entry(second)]
        })
    };
    // Regression: check said sound, and every record failed in run.
    let path = write_json(
        dir.path(),
        "nested.json",
        &chain("/auth", "/auth/accessToken"),
    );
    let output = check(plugins.path(), &path, &["--server-type", "test"]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(
        output.stdout.contains(
            "warning: postProcessorPlugins[1].destinationFieldForToken: '/auth/accessToken' lies \
             inside postProcessorPlugins[0].destinationFieldForToken ('/auth')"
        ),
        "{}",
        output.stdout
    );
    // A later entry replacing an earlier one's value is a chain's right.
    let path = write_json(
        dir.path(),
        "same.json",
        &chain("/auth/token", "/auth/token"),
    );
    let output = check(plugins.path(), &path, &["--server-type", "test"]);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    assert!(
        output.stdout.ends_with("sound (0 errors, 0 warnings)\n"),
        "{}",
        output.stdout
    );
}
