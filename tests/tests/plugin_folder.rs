//! What the host does with the files in its plugin folder: good plugins,
//! files that are not plugins, truncated copies, plugins built against other
//! interface versions, and a plugin that panics.

use posthandler_host::{chain::Chain, context::Context, loader::Loader, server_type::ServerType};
use posthandler_tests::{
    artifacts, interface_fixtures, plugin_dir, run_once, write_json, Host, Output,
};
use serde_json::json;
use std::path::Path;

fn list(dir: &Path) -> Output {
    Host::new(["plugins", "--plugins", dir.to_str().unwrap()]).run()
}

/// A line of `plugins` output about `file`.
fn line_for<'a>(output: &'a Output, file: &str) -> &'a str {
    output
        .stdout
        .lines()
        .find(|l| l.contains(file))
        .unwrap_or_else(|| panic!("no line for {file}:\n{}", output.stdout))
}

#[test]
fn broken_and_truncated_files_are_refused_by_name_and_the_good_plugin_still_runs() {
    let good = &artifacts().oauth_plugin;
    let dir = plugin_dir(&[good]);
    let data = std::fs::read(good).unwrap();
    std::fs::write(
        dir.path().join("libnotes.so"),
        "these are my notes, not a library",
    )
    .unwrap();
    std::fs::write(dir.path().join("libempty.so"), "").unwrap();
    std::fs::write(
        dir.path().join("README.txt"),
        "not a library name, not opened",
    )
    .unwrap();
    let cuts = [4096, 65536, 200_000, data.len() / 2, data.len() - 100];
    for cut in cuts {
        std::fs::write(dir.path().join(format!("libcut{cut}.so")), &data[..cut]).unwrap();
    }

    let output = list(dir.path());
    assert_eq!(
        output.code,
        Some(5),
        "refused files make the listing fail:\n{output:?}"
    );
    let good_name = good.file_name().unwrap().to_str().unwrap();
    assert!(line_for(&output, good_name).contains("active"));
    assert!(line_for(&output, "libnotes.so").contains("no ELF header"));
    assert!(line_for(&output, "libempty.so").contains("no ELF header"));
    for cut in cuts {
        let line = line_for(&output, &format!("libcut{cut}.so"));
        assert!(line.contains("refused"), "{line}");
        assert!(line.contains("truncated"), "{line}");
    }
    assert!(!output.stdout.contains("README.txt"));

    // The same folder still serves a run.
    let ctx = json!({"postProcessorPlugins": [{
        "plugin": "OAuth 2.0",
        "destinationSystems": [{
            "limitToServertype": "prod", "restUrl": "http://127.0.0.1:9/token",
            "restUser": "a", "restPassword": "b"
        }],
        "destinationFieldForToken": "/token"
    }]});
    let work = tempfile::tempdir().unwrap();
    let output = Host::new([
        "run",
        "--server-type",
        "dev",
        "--plugins",
        dir.path().to_str().unwrap(),
        "--context",
        write_json(work.path(), "c.json", &ctx).to_str().unwrap(),
        "--record",
        write_json(work.path(), "r.json", &json!({"id": 7}))
            .to_str()
            .unwrap(),
    ])
    .run();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.json(), json!({"id": 7}));
    for name in ["libnotes.so", "libcut4096.so"] {
        assert!(
            output.stderr.contains(name),
            "refusals are logged:\n{}",
            output.stderr
        );
    }
}

#[test]
fn interface_versions_are_served_or_refused_as_the_readme_promises() {
    let fixtures = interface_fixtures();
    let dir = plugin_dir(&[
        &fixtures.newer_minor,
        &fixtures.other_major,
        &fixtures.bad_layout,
    ]);
    let output = list(dir.path());

    let newer = line_for(
        &output,
        fixtures.newer_minor.file_name().unwrap().to_str().unwrap(),
    );
    assert!(
        newer.contains("Echo") && newer.contains("active"),
        "{newer}"
    );
    assert!(newer.contains("1.1.0"), "{newer}");

    let major = line_for(
        &output,
        fixtures.other_major.file_name().unwrap().to_str().unwrap(),
    );
    assert!(major.contains("refused"), "{major}");
    assert!(major.contains("incompatible interface"), "{major}");
    assert!(
        major.contains("2.0.0") && major.contains("1.0.0"),
        "both versions: {major}"
    );

    let layout = line_for(
        &output,
        fixtures.bad_layout.file_name().unwrap().to_str().unwrap(),
    );
    assert!(layout.contains("refused"), "{layout}");
    assert!(layout.contains("incompatible interface layout"), "{layout}");
}

#[test]
fn a_plugin_built_against_a_newer_minor_interface_runs_records() {
    let fixtures = interface_fixtures();
    let ctx = json!({"postProcessorPlugins": [{"plugin": "Echo"}]});
    let output = run_once(
        &[&fixtures.newer_minor],
        "test",
        &ctx,
        &json!({"id": 1}),
        &[],
    );
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.json()["echo"]["interface"], "1.1.0");
}

#[test]
fn a_host_whose_root_module_grew_refuses_plugins_built_before_it_grew() {
    // The other direction of the promise: the 1.1.0 interface appends a root
    // module field; a host built against it refuses the 1.0.0 OAuth plugin,
    // and serves a plugin built against 1.1.0.
    let fixtures = interface_fixtures();
    let run = |plugin: &Path| {
        let output = std::process::Command::new(&fixtures.host_1_1)
            .arg(plugin)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(
        run(&artifacts().oauth_plugin).trim(),
        "refused: too many fields"
    );
    assert_eq!(
        run(&fixtures.newer_minor).trim(),
        "loaded Echo grown=present (11)"
    );
}

#[test]
fn a_chain_naming_a_missing_plugin_fails_with_the_plugin_exit_code() {
    let ctx = json!({"postProcessorPlugins": [{"plugin": "OAuth 2.0"}]});
    let output = run_once(
        &[&artifacts().rest_plugin],
        "test",
        &ctx,
        &json!({"id": 1}),
        &[],
    );
    assert_eq!(output.code, Some(5), "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("postProcessorPlugins[0].plugin: no loaded plugin named 'OAuth 2.0'"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_panic_inside_a_plugin_comes_back_as_an_error_and_the_next_record_runs() {
    // Through the binary: exit code 5, one error line, no crash.
    let dir = plugin_dir(&[&artifacts().rest_plugin]);
    let work = tempfile::tempdir().unwrap();
    let ctx = json!({"postProcessorPlugins": [{"plugin": "REST", "destinationSystems": [{"headerValue": "v"}]}]});
    let ctx_path = write_json(work.path(), "c.json", &ctx);
    let output = Host::new([
        "run",
        "--server-type",
        "test",
        "--plugins",
        dir.path().to_str().unwrap(),
        "--context",
        ctx_path.to_str().unwrap(),
        "--record",
        write_json(work.path(), "r.json", &json!({"panic": true}))
            .to_str()
            .unwrap(),
    ])
    .run();
    assert_eq!(output.code, Some(5), "{}", output.stderr);
    assert!(
        output.stderr.contains("plugin panicked in process"),
        "{}",
        output.stderr
    );
    assert_eq!(output.stdout, "");

    // In one host process: the record after the panic is handled.
    let loader = Loader::new(work.path().join("state")).unwrap();
    let discovery = loader.load_folder(dir.path()).unwrap();
    let chain = Chain::configure(
        Context::load(&ctx_path).unwrap(),
        &discovery,
        ServerType::Test,
    )
    .unwrap();
    let err = chain.run(r#"{"panic": true}"#).unwrap_err();
    assert_eq!(err.exit_code() as i32, 5, "{err}");
    let ok = chain.run(r#"{"id": 2}"#).unwrap();
    assert_eq!(ok.record["rest"]["headerValue"], "v");
    assert_eq!(ok.handled_by, [("REST".to_owned(), "0.1.0".to_owned())]);
}
