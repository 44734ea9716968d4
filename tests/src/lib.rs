//! Harness for the end-to-end tests in `tests/tests/`.
//!
//! It builds the real artifacts through cargo (the host binary, the OAuth
//! plugin library, the test plugins), starts the real OAuth server from
//! `tests/oidc` on 127.0.0.1, and runs the host as a user would, with bounded
//! time. Nothing here talks to any address but loopback.
//!
//! - [`artifacts`]: paths of the built files, built once per test binary.
//! - [`OidcServer`]: the `oidc-provider` server, stopped on drop.
//! - [`scripted`]: a small token endpoint that misbehaves on purpose.
//! - [`Host`]: one run of `posthandler-host` with captured output.
//! - [`assert_no_secret`]: the leak check every test applies to its output.

pub mod scripted;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest any child process of a test may run.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The files the tests drive.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `posthandler-host`.
    pub host: PathBuf,
    /// The OAuth 2.0 plugin library.
    pub oauth_plugin: PathBuf,
    /// The test stand-in for the suite's REST posthandler.
    pub rest_plugin: PathBuf,
}

/// Builds (once per test binary) and returns the artifacts.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let built = cargo_build(
            &[
                "-p",
                "posthandler-host",
                "-p",
                "posthandler-oauth2",
                "-p",
                "posthandler-test-rest",
            ],
            None,
        );
        Artifacts {
            host: built.find("posthandler-host", "bin"),
            oauth_plugin: built.find("posthandler_oauth2", "cdylib"),
            rest_plugin: built.find("posthandler_test_rest", "cdylib"),
        }
    })
}

/// Plugins built against other interface versions, from the separate
/// workspace in `tests/fixtures`.
#[derive(Debug, Clone)]
pub struct InterfaceFixtures {
    /// Built against interface 1.1.0 (a newer minor version).
    pub newer_minor: PathBuf,
    /// Built against interface 2.0.0 (another major version).
    pub other_major: PathBuf,
    /// A root module with the right name and version but another layout.
    pub bad_layout: PathBuf,
}

/// Builds (once per test binary) and returns the interface fixtures.
pub fn interface_fixtures() -> &'static InterfaceFixtures {
    static FIXTURES: OnceLock<InterfaceFixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let manifest = root().join("tests/fixtures/Cargo.toml");
        let target = root().join("target/fixtures");
        let built = cargo_build(
            &[
                "--manifest-path",
                manifest.to_str().unwrap(),
                "--target-dir",
                target.to_str().unwrap(),
                "--workspace",
            ],
            Some(&root().join("tests/fixtures")),
        );
        InterfaceFixtures {
            newer_minor: built.find("echo_abi_1_1", "cdylib"),
            other_major: built.find("echo_abi_2_0", "cdylib"),
            bad_layout: built.find("echo_bad_layout", "cdylib"),
        }
    })
}

/// What `cargo build --message-format=json` reported.
pub struct Built(Vec<Value>);

impl Built {
    /// The file of the target `name` of `kind` (`bin`, `cdylib`).
    pub fn find(&self, name: &str, kind: &str) -> PathBuf {
        for message in &self.0 {
            let target = &message["target"];
            if target["name"] != name
                || !target["kind"].as_array().unwrap().iter().any(|k| k == kind)
            {
                continue;
            }
            if kind == "bin" {
                return PathBuf::from(message["executable"].as_str().unwrap());
            }
            let suffix = std::env::consts::DLL_SUFFIX;
            for file in message["filenames"].as_array().unwrap() {
                let file = file.as_str().unwrap();
                if file.ends_with(suffix) {
                    return PathBuf::from(file);
                }
            }
        }
        panic!("cargo built no {kind} named {name}");
    }
}

/// Runs `cargo build` with `args` in the workspace (debug profile, as the
/// tests themselves) and collects its artifact messages.
pub fn cargo_build(args: &[&str], dir: Option<&Path>) -> Built {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(dir.unwrap_or(&root()))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo build {args:?} failed");
    let messages = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .collect();
    Built(messages)
}

/// A plugin folder with copies of `files`.
pub fn plugin_dir(files: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        std::fs::copy(file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    dir
}

/// The captured result of one host run.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Standard output parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// One run of `posthandler-host`.
pub struct Host {
    command: Command,
    stdin: Option<Vec<u8>>,
}

impl Host {
    /// `posthandler-host ARGS`, with no server type in the environment and
    /// the most verbose log level, so the leak checks see everything.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&artifacts().host);
        command
            .args(args)
            .env_remove("POSTHANDLER_SERVER_TYPE")
            .env("RUST_LOG", "trace")
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy");
        Host {
            command,
            stdin: None,
        }
    }

    /// Sets an environment variable for the run.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Feeds `data` on standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Runs to the end, within [`PROCESS_TIMEOUT`].
    pub fn run(mut self) -> Output {
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("the host starts");
        if let Some(data) = self.stdin.take() {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        wait_with_output(child, PROCESS_TIMEOUT)
    }
}

/// Waits for `child` and collects its output; kills it after `timeout`.
pub fn wait_with_output(mut child: Child, timeout: Duration) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process ran past {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Panics when `text` contains `secret`, its base64 form, its
/// form-urlencoded form, or the Basic credentials built from it.
pub fn assert_no_secret(text: &str, secret: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let urlencoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let forms = [
        secret.to_owned(),
        b64.encode(secret),
        urlencoded.clone(),
        b64.encode(format!(":{urlencoded}")),
    ];
    for form in forms {
        // Short fragments are too common to mean anything.
        if form.len() >= 6 {
            assert!(
                !text.contains(&form),
                "output contains a secret (or a form of it):\n{text}"
            );
        }
    }
}

/// The real OAuth server (`oidc-provider`, see `tests/oidc/README.md`).
pub struct OidcServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// Clients of `tests/oidc/clients.json`: id and secret.
pub mod clients {
    /// Authenticates with HTTP Basic.
    pub const HEADER: (&str, &str) = ("posthandler-header", "header-secret-1");
    /// Authenticates with form fields.
    pub const BODY: (&str, &str) = ("posthandler-body", "body-secret-1");
    /// Id and secret that need form-urlencoding in a Basic header.
    pub const ENCODED: (&str, &str) = ("shop export:1", "p%w+d: x&y=z");
    /// May introspect every token.
    pub const INTROSPECTOR: (&str, &str) = ("introspector", "introspector-secret");
}

fn npm_install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = root().join("tests/oidc");
        if dir.join("node_modules/oidc-provider").is_dir() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm runs (install Node.js and npm)");
        assert!(status.success(), "npm ci in tests/oidc failed");
    });
}

impl OidcServer {
    /// Starts a server with the default clients and `extra` arguments (such
    /// as `--access-token-ttl 5`), and waits until it listens.
    pub fn start(extra: &[&str]) -> Self {
        npm_install();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .args(extra)
            .current_dir(root().join("tests/oidc"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OAuth server starts within 30 s");
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line from the OAuth server: {line:?}"))
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        OidcServer { child, base }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// The token-endpoint requests the server has seen (test-only
    /// instrumentation of `tests/oidc/server.mjs`).
    pub fn requests(&self) -> Vec<Value> {
        let value: Value = agent()
            .get(&format!("{}/__test/requests", self.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap();
        value.as_array().unwrap().clone()
    }

    /// Asks the server whether `token` is active (RFC 7662).
    pub fn introspect(&self, token: &str) -> Value {
        use base64::Engine as _;
        let (id, secret) = clients::INTROSPECTOR;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        agent()
            .post(&format!("{}/token/introspection", self.base))
            .header("Authorization", &format!("Basic {basic}"))
            .send_form([("token", token)])
            .unwrap()
            .body_mut()
            .read_to_string()
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Writes `value` as a JSON file in `dir` and returns its path.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}
