//! Harness for the end-to-end tests in `tests/tests/`.
//!
//! It builds the real artifacts through cargo (the host binary, the OAuth
//! plugin library, the test plugins), starts the real OAuth server from
//! `tests/oidc` on 127.0.0.1, and runs the host as a user would, with bounded
//! time. Nothing here talks to any address but loopback.
//!
//! - [`artifacts`]: paths of the built files, built once per test binary.
//! - [`OidcServer`]: the `oidc-provider` server, stopped on drop.
//! - [`scripted`]: a small token endpoint that misbehaves on purpose, over
//!   plain http or TLS.
//! - [`tls`]: test-only CA and leaf certificates.
//! - [`proxy`]: a test-only HTTP CONNECT proxy on loopback.
//! - [`Host`]: one run of `posthandler-host` with captured output.
//! - [`assert_no_secret`]: the leak check every test applies to its output.

pub mod proxy;
pub mod scripted;
pub mod tls;

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

/// The OAuth plugin built with the plugin version `version` (the build-time
/// `POSTHANDLER_PLUGIN_VERSION`), copied to a file of its own.
///
/// Builds go to a target folder of their own, so they never replace the
/// library the other tests use.
pub fn oauth_plugin_version(version: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(v, _)| v == version) {
        return path.clone();
    }
    let target = root().join("target/plugin-versions");
    let built_now = cargo_build_with(
        &[
            "-p",
            "posthandler-oauth2",
            "--target-dir",
            target.to_str().unwrap(),
        ],
        None,
        &[("POSTHANDLER_PLUGIN_VERSION", version)],
    );
    let library = built_now.find("posthandler_oauth2", "cdylib");
    let copy = target.join(format!(
        "libposthandler_oauth2_v{}{}",
        version.replace('.', "_"),
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::copy(&library, &copy).unwrap();
    built.push((version.to_owned(), copy.clone()));
    copy
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
    /// A minimal host built against the grown 1.1.0 interface
    /// (`tests/fixtures/host-1-1`).
    pub host_1_1: PathBuf,
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
            host_1_1: built.find("host-1-1", "bin"),
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
    cargo_build_with(args, dir, &[])
}

/// [`cargo_build`] with extra environment variables for the build.
pub fn cargo_build_with(args: &[&str], dir: Option<&Path>, env: &[(&str, &str)]) -> Built {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .args(args)
        .envs(env.iter().copied())
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

/// The `error: ` line of a run that failed, after checking that it exited
/// with `code` and wrote nothing to standard output.
pub fn failure_line(output: &Output, code: i32) -> String {
    assert_eq!(output.code, Some(code), "stderr:\n{}", output.stderr);
    assert_eq!(output.stdout, "", "nothing written");
    output
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line:\n{}", output.stderr))
        .to_owned()
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
    let mut stdout: Box<dyn Read + Send> = match child.stdout.take() {
        Some(pipe) => Box::new(pipe),
        None => Box::new(std::io::empty()),
    };
    let mut stderr: Box<dyn Read + Send> = match child.stderr.take() {
        Some(pipe) => Box::new(pipe),
        None => Box::new(std::io::empty()),
    };
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

/// A running `posthandler-host serve` whose input the test writes and whose
/// output lines it reads as they come.
pub struct ServeProcess {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `posthandler-host serve ARGS` (see [`Host::new`] for the
    /// environment).
    pub fn start<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(&artifacts().host)
            .arg("serve")
            .args(args)
            .env_remove("POSTHANDLER_SERVER_TYPE")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the host starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {line}"));
                    lines.lock().unwrap().push(value);
                }
            })
        };
        {
            let stderr_text = stderr.clone();
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr_text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        ServeProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            reader: Some(reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one record line.
    pub fn send(&mut self, record: &Value) {
        let stdin = self.stdin.as_mut().expect("input still open");
        writeln!(stdin, "{record}").expect("the host reads its input");
    }

    /// Takes the input pipe, for a writer thread of the test's own.
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.stdin.take().expect("input still open")
    }

    /// The output lines read so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// How many output lines were read so far.
    pub fn line_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `done(lines)` holds, at most `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let start = Instant::now();
        while !done(&self.lines.lock().unwrap()) {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the input and waits for the exit code, at most `timeout`.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<Value>, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("serve ran past {timeout:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        // Let the stderr thread drain.
        std::thread::sleep(Duration::from_millis(50));
        (status.code(), self.lines(), self.stderr())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident set size of process `pid` in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// One `posthandler-host run --server-type SERVER_TYPE` of `context` on
/// `record`, with a plugin folder holding copies of `plugins`, and `extra`
/// arguments after the usual ones.
pub fn run_once(
    plugins: &[&Path],
    server_type: &str,
    context: &Value,
    record: &Value,
    extra: &[&str],
) -> Output {
    let folder = plugin_dir(plugins);
    let work = tempfile::tempdir().unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--server-type".into(),
        server_type.into(),
        "--plugins".into(),
        folder.path().into(),
        "--context".into(),
        write_json(work.path(), "context.json", context).into(),
        "--record".into(),
        write_json(work.path(), "record.json", record).into(),
    ];
    args.extend(extra.iter().map(Into::into));
    Host::new(args).run()
}
