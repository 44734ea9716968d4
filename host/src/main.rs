//! `posthandler-host`: the command line over the host library.
//!
//! Each subcommand is one function; errors of every subcommand go through
//! [`report`], which prints one line on stderr and picks the exit code.

use anyhow::Context as _;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use posthandler_host::{
    chain::Chain,
    live::LiveChain,
    loader::Loader,
    serve::{ChainSource, ServeOptions},
    Error, ExitCode,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The longest `--record-timeout`: a year, far beyond any token request,
/// and far inside what a deadline can hold.
const MAX_RECORD_TIMEOUT_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The largest record `run` reads, and the largest `--max-record-bytes` of
/// `serve`: 1 GiB.
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// Runs export contexts' chains of posthandler plugins on export records.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log level: off, error, warn, info, debug or trace (overrides
    /// RUST_LOG).
    #[arg(long, global = true, value_name = "LEVEL", ignore_case = true,
          value_parser = clap::builder::PossibleValuesParser::new(
              ["off", "error", "warn", "info", "debug", "trace"],
          ).map(|level| level.parse::<log::LevelFilter>().expect("one of the listed levels")))]
    log_level: Option<log::LevelFilter>,

    /// Log line format on stderr: text, or json (one object per line with
    /// the keys ts, level, target, message).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: posthandler_host::logfmt::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a context's posthandlers on one export record and print the
    /// enriched record.
    #[command(
        after_help = "Example:\n  posthandler-host run --server-type test \\\n    --plugins ./plugins --context examples/context.json --record examples/record.json\n\nExit codes: 0 success (also when no destination system matched and the record\npassed through), 2 usage or configuration error, 3 authorization refused by the\nserver, 4 transport failure or invalid server response, 5 plugin failure,\n1 anything else."
    )]
    Run(RunArgs),
    /// Read export records as JSON lines on stdin and write one result line
    /// per record on stdout, in input order.
    #[command(
        after_help = "Each output line is a JSON object: \"record\" (the enriched record, or the\ninput unchanged when it failed), \"error\" (absent on success, else \"kind\" and\n\"message\") and \"handledBy\" (name and version of each plugin that ran).\n\nExample:\n  tail -f exports.jsonl | posthandler-host serve --server-type prod \\\n    --plugins ./plugins --context context.json > enriched.jsonl\n\nSIGTERM or Ctrl-C: no further record is read; those read get their lines.\nA second one ends at once (exit 1), without lines for the records running.\n\nExit codes: 0 every record read has its line (failed ones included), 2 usage or\nconfiguration error, 5 plugin failure at start, 1 anything else."
    )]
    Serve(ServeArgs),
    /// List the plugins a load of the folder finds, and why any file was
    /// refused.
    #[command(
        after_help = "Example:\n  posthandler-host plugins --plugins ./plugins\n\nExit codes: 0 every library in the folder loaded, 5 a file was refused,\n2 the folder could not be read."
    )]
    Plugins(PluginsArgs),
    /// List every field a destination field may name, as the suite's
    /// "Destination Field" choice lists them, with the text to configure.
    #[command(
        after_help = "Built from the field descriptions the chain's plugins report. Each line shows\nthe choice, the chain entries whose destination fields may name it, and the\nexact text (JSON-quoted) to put into such a field.\n\nExample:\n  posthandler-host fields --plugins ./plugins --context examples/context.json\n\nExit codes: 0 listed, 2 the context or the plugin folder cannot be read, 5 a\nchain entry names a plugin that is not loaded, 1 anything else."
    )]
    Fields(FieldsArgs),
    /// Check a context without touching the network and report every
    /// problem at once.
    #[command(
        after_help = "Prints one line per problem, `error: <place>: <cause>` or\n`warning: <place>: <cause>`, then a summary line. `run` and `serve` apply the\nsame checks first.\n\nExample:\n  posthandler-host check --plugins ./plugins --context examples/context.json \\\n    --server-type prod\n\nExit codes: 0 the context is sound (warnings allowed), 2 it has errors or it\nor the plugin folder cannot be read, 1 anything else."
    )]
    Check(CheckArgs),
    /// Print a JSON Schema of the context configuration for the plugins in
    /// the folder.
    #[command(
        after_help = "Generated from the field descriptions the plugins report;\nschema/context.schema.json is this output for the OAuth 2.0 plugin alone.\n\nExample:\n  posthandler-host schema --plugins ./plugins > schema/context.schema.json\n\nExit codes: 0 printed, 2 the folder cannot be read, 5 a file in the folder was\nrefused, 1 anything else."
    )]
    Schema(PluginsArgs),
}

#[derive(Args)]
struct FieldsArgs {
    #[command(flatten)]
    dir: PluginDirArgs,

    /// The export context (JSON).
    #[arg(long, value_name = "FILE")]
    context: PathBuf,

    /// Print the listing as a JSON array instead of text columns.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    dir: PluginDirArgs,

    /// The export context (JSON).
    #[arg(long, value_name = "FILE")]
    context: PathBuf,

    /// The server type the context is meant for: dev, test or prod
    /// [default: $POSTHANDLER_SERVER_TYPE, else none]. With it, a server
    /// type that no system covers is a warning.
    #[arg(long, value_name = "TYPE")]
    server_type: Option<String>,
}

#[derive(Args)]
struct PluginDirArgs {
    /// The plugin folder.
    #[arg(long, value_name = "DIR", default_value = "./plugins")]
    plugins: PathBuf,

    /// Where private copies of plugin files are kept: a new or empty
    /// folder, or one an earlier run used (it is emptied) [default: a folder
    /// of this process under the system's temporary folder, removed at the
    /// end].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Open only plugin files whose sha256 is listed in FILE (one hash per
    /// line, as `sha256sum` prints them; `#` starts a comment).
    #[arg(long, value_name = "FILE")]
    allow_sha256: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    dir: PluginDirArgs,

    /// The export context (JSON).
    #[arg(long, value_name = "FILE")]
    context: PathBuf,

    /// The export record (JSON), or - for standard input.
    #[arg(long, value_name = "FILE")]
    record: PathBuf,

    /// Also write the context as the chain left it to this file.
    #[arg(long, value_name = "FILE")]
    context_out: Option<PathBuf>,

    /// The server type of this installation: dev, test or prod
    /// [default: $POSTHANDLER_SERVER_TYPE].
    #[arg(long, value_name = "TYPE")]
    server_type: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    dir: PluginDirArgs,

    /// The export context (JSON).
    #[arg(long, value_name = "FILE")]
    context: PathBuf,

    /// The server type of this installation: dev, test or prod
    /// [default: $POSTHANDLER_SERVER_TYPE].
    #[arg(long, value_name = "TYPE")]
    server_type: Option<String>,

    /// Records handled at once, 1 to 1024 [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    /// How long one record may take before it fails with a timeout (1 s
    /// to 365 days).
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RECORD_TIMEOUT_SECONDS))]
    record_timeout: u64,

    /// The longest input line accepted; a longer one fails alone (1 byte
    /// to 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RECORD_BYTES))]
    max_record_bytes: u64,
}

#[derive(Args)]
struct PluginsArgs {
    #[command(flatten)]
    dir: PluginDirArgs,
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve(args),
        Command::Plugins(args) => plugins(args),
        Command::Fields(args) => fields(args),
        Command::Check(args) => check(args),
        Command::Schema(args) => schema(args),
    };
    std::process::exit(match result {
        Ok(code) => code as i32,
        Err(err) => report(&err) as i32,
    });
}

/// The log format chosen on the command line, for the lines [`say`] writes.
static LOG_FORMAT: std::sync::OnceLock<posthandler_host::logfmt::LogFormat> =
    std::sync::OnceLock::new();

fn init_logging(format: posthandler_host::logfmt::LogFormat, level: Option<log::LevelFilter>) {
    let _ = LOG_FORMAT.set(format);
    posthandler_host::logfmt::init(format, level);
}

/// Prints the error chain on one line and returns the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    let code = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map_or(ExitCode::Other, Error::exit_code);
    say(log::Level::Error, format_args!("error: {err:#}"));
    code
}

/// Writes one of the binary's own lines (the error that ends a run, the
/// summary of `serve`) on stderr, whatever the log level: as it is, or
/// with `--log-format json` as a log line of that format with `line` as
/// its message, so that stderr stays one JSON object per line. A closed
/// stderr loses the line but never the run: `eprintln!` would panic there
/// and exit with 101.
fn say(level: log::Level, line: std::fmt::Arguments<'_>) {
    use posthandler_host::logfmt::{json_line, rfc3339_millis, LogFormat};
    let _ = match LOG_FORMAT.get() {
        Some(LogFormat::Json) => {
            let ts = rfc3339_millis(std::time::SystemTime::now());
            let message = line.to_string();
            writeln!(
                std::io::stderr(),
                "{}",
                json_line(&ts, level, "posthandler_host", &message)
            )
        }
        _ => writeln!(std::io::stderr(), "{line}"),
    };
}

fn new_loader(args: &PluginDirArgs) -> anyhow::Result<Loader> {
    let loader = match &args.state_dir {
        Some(dir) => Loader::new(dir)?,
        None => Loader::in_process_state_dir()?,
    };
    Ok(match &args.allow_sha256 {
        Some(list) => loader.with_allow_list(posthandler_host::loader::read_allow_list(list)?),
        None => loader,
    })
}

fn load_plugins(
    args: &PluginDirArgs,
) -> anyhow::Result<(Loader, posthandler_host::loader::Discovery)> {
    let loader = new_loader(args)?;
    let discovery = loader.load_folder(&args.plugins)?;
    for refused in &discovery.refused {
        log::warn!("{refused}");
    }
    Ok((loader, discovery))
}

/// The steps `run` and `serve` share: settle the server type, read the
/// context, load the plugins and configure the chain.
fn prepare(
    dir: &PluginDirArgs,
    context: &Path,
    server_type: Option<&str>,
) -> anyhow::Result<(Loader, Chain)> {
    let env = std::env::var(posthandler_host::server_type::ENV_VAR).ok();
    let server_type = posthandler_host::server_type::resolve(server_type, env.as_deref())?;
    let (loader, discovery) = load_plugins(dir)?;
    let context = posthandler_host::check::settle(context, &discovery, server_type)?;
    let chain = Chain::configure(context, &discovery, server_type)?;
    Ok((loader, chain))
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Found out before a token is asked for, not after.
    let context_out = match &args.context_out {
        Some(path) => Some(check_context_out(
            path,
            &[("--context", &args.context), ("--record", &args.record)],
        )?),
        None => None,
    };
    let record = read_record(&args.record)?;
    let (loader, chain) = prepare(&args.dir, &args.context, args.server_type.as_deref())?;
    let output = chain.run(&record)?;

    if let Some(path) = &context_out {
        let out = posthandler_host::secrets::context_out(&args.context, &chain, &output.context)?;
        write_json(path, &out).context("writing --context-out")?;
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &output.record)?;
    writeln!(stdout)?;
    stdout.flush()?;
    loader.cleanup();
    Ok(ExitCode::Success)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env = std::env::var(posthandler_host::server_type::ENV_VAR).ok();
    let server_type =
        posthandler_host::server_type::resolve(args.server_type.as_deref(), env.as_deref())?;
    let (loader, discovery) = load_plugins(&args.dir)?;
    let context = posthandler_host::check::settle(&args.context, &discovery, server_type)?;
    let live = LiveChain::start(&args.dir.plugins, loader, discovery, context, server_type)?;
    let live = std::sync::Arc::new(live);
    // Raised by the first SIGTERM or Ctrl-C; a second one while it is up
    // ends the process at once (exit 1): the records still running get no
    // line. The conditional exit is registered first, so that the first
    // signal finds the flag down.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .context("installing signal handlers")?;
    }
    let watching_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = live.watch(watching_done.clone());
    let progress = posthandler_host::progress::Reporter::start({
        let live = live.clone();
        move || {
            let stats = live.stats();
            stats
                .get("tokenRequests")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        }
    });
    let options = ServeOptions {
        workers: args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
        deadline: std::time::Duration::from_secs(args.record_timeout),
        max_line_bytes: usize::try_from(args.max_record_bytes)
            .expect("at most 1 GiB, checked by clap"),
    };
    log::info!("serving with {} workers", options.workers);
    let source: std::sync::Arc<dyn ChainSource> = live.clone();
    let input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin());
    let summary =
        posthandler_host::serve::serve(source, input, std::io::stdout(), &options, stop.clone())
            .context("writing results to standard output")
            // The watcher still holds the loader: remove its copies here.
            .inspect_err(|_| live.loader().cleanup())?;
    drop(progress);
    watching_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    log::info!(
        "plugins at the end: {}; chain swaps: {}",
        live.resident_summary(),
        live.swaps()
    );
    let stats = live.stats();
    let count = |key: &str| {
        stats
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    say(
        log::Level::Info,
        format_args!(
            "summary: records={} failures={} timeouts={} tokenRequests={} cacheHits={}",
            summary.records,
            summary.failures,
            summary.timeouts,
            count("tokenRequests"),
            count("cacheHits")
        ),
    );
    live.loader().cleanup();
    Ok(ExitCode::Success)
}

fn plugins(args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let (loader, discovery) = load_plugins(&args.dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<10} {:<10} {:<8} FILE",
        "NAME", "VERSION", "INTERFACE", "STATUS"
    )?;
    for plugin in &discovery.plugins {
        let active = discovery
            .active(&plugin.name)
            .is_some_and(|a| std::sync::Arc::ptr_eq(a, plugin));
        writeln!(
            out,
            "{:<20} {:<10} {:<10} {:<8} {}",
            plugin.name,
            plugin.version.to_string(),
            plugin.interface_version,
            if active { "active" } else { "loaded" },
            plugin.file.display()
        )?;
    }
    for refused in &discovery.refused {
        writeln!(
            out,
            "{:<20} {:<10} {:<10} {:<8} {}: {}",
            "-",
            "-",
            "-",
            "refused",
            refused.file.display(),
            refused.error
        )?;
    }
    loader.cleanup();
    Ok(if discovery.refused.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Plugin
    })
}

fn fields(args: FieldsArgs) -> anyhow::Result<ExitCode> {
    let (loader, discovery) = load_plugins(&args.dir)?;
    let report = posthandler_host::check::check_file(&args.context, &discovery, None)?;
    if let Some(missing) = report.missing.into_iter().next() {
        return Err(missing.into());
    }
    let loaded = posthandler_host::fields::Loaded {
        context: &report.context,
        discovery: &discovery,
    };
    let choices = posthandler_host::fields::list(&report.context, &loaded);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &choices)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", posthandler_host::fields::render(&choices))?;
    }
    loader.cleanup();
    Ok(ExitCode::Success)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let env = std::env::var(posthandler_host::server_type::ENV_VAR)
        .ok()
        .filter(|v| !v.is_empty());
    let server_type = match (&args.server_type, &env) {
        (None, None) => None,
        (flag, env) => Some(posthandler_host::server_type::resolve(
            flag.as_deref(),
            env.as_deref(),
        )?),
    };
    let (loader, discovery) = load_plugins(&args.dir)?;
    let report = posthandler_host::check::check_file(&args.context, &discovery, server_type);
    loader.cleanup();
    let mut out = std::io::stdout().lock();
    let report = match report {
        Ok(report) => report,
        Err(err) => {
            writeln!(out, "error: {:#}", anyhow::Error::from(err))?;
            writeln!(
                out,
                "{}: not sound (1 error, 0 warnings)",
                args.context.display()
            )?;
            return Ok(ExitCode::Configuration);
        }
    };
    for problem in &report.problems {
        writeln!(out, "{problem}")?;
    }
    let errors = report
        .problems
        .iter()
        .filter(|p| p.severity == posthandler_host::check::Severity::Error)
        .count();
    writeln!(out, "{}: {}", args.context.display(), report.summary())?;
    Ok(if errors == 0 {
        ExitCode::Success
    } else {
        ExitCode::Configuration
    })
}

fn schema(args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let (loader, discovery) = load_plugins(&args.dir)?;
    let active: Vec<&posthandler_host::loader::Plugin> = discovery
        .plugins
        .iter()
        .filter(|p| {
            discovery
                .active(&p.name)
                .is_some_and(|a| std::sync::Arc::ptr_eq(a, p))
        })
        .map(|p| p.as_ref())
        .collect();
    let schema = posthandler_host::schema::context_schema(&active);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &schema)?;
    writeln!(out)?;
    loader.cleanup();
    Ok(if discovery.refused.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Plugin
    })
}

/// Reads `run`'s record, from a file or (`-`) standard input, at most
/// [`MAX_RECORD_BYTES`]: `/dev/zero` or a runaway pipe fails, saying so,
/// instead of filling the memory.
fn read_record(path: &Path) -> anyhow::Result<String> {
    let (shown, text) = if path == Path::new("-") {
        let read = posthandler_host::context::read_capped_from(std::io::stdin(), MAX_RECORD_BYTES);
        (PathBuf::from("standard input"), read)
    } else {
        let read = posthandler_host::context::read_capped_bytes(path, MAX_RECORD_BYTES);
        (path.to_path_buf(), read)
    };
    // As for a file: not UTF-8 is a bad record (exit 2), not a failure.
    let text = text.and_then(|data| {
        String::from_utf8(data)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
    });
    text.map(posthandler_host::context::without_bom)
        .map_err(|source| {
            Error::Io {
                path: shown,
                action: "reading the record",
                source,
            }
            .into()
        })
}

/// The file a `--context-out` writes (a link's target, so the link stays),
/// or why it may not: a missing folder, something other than a regular
/// file (a folder, a device, a FIFO: the rename would replace it), one of
/// the run's own input files, or a folder that does not let it create its
/// temporary file.
fn check_context_out(path: &Path, inputs: &[(&str, &Path)]) -> Result<PathBuf, Error> {
    let refuse =
        |cause: String| Error::context("--context-out", format!("{}: {cause}", path.display()));
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if folder.is_some_and(|f| !f.is_dir()) {
        return Err(refuse("the folder does not exist".into()));
    }
    let target = match std::fs::symlink_metadata(path) {
        Err(_) => path.to_path_buf(),
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|_| refuse("is a link to nothing; name the file to write".into()))?,
        Ok(_) => path.to_path_buf(),
    };
    if let Ok(meta) = std::fs::metadata(&target) {
        if !meta.is_file() {
            let kind = posthandler_host::context::file_kind(meta.file_type());
            return Err(refuse(format!("is {kind}; name a regular file to write")));
        }
        for (flag, input) in inputs {
            if same_file(&meta, input) {
                return Err(refuse(format!(
                    "is the file given as {flag}; write the changed context elsewhere"
                )));
            }
        }
    }
    let tmp = context_out_tmp(&target);
    std::fs::File::create(&tmp)
        .and_then(|_| std::fs::remove_file(&tmp))
        .map_err(|err| refuse(format!("cannot be written ({err})")))?;
    Ok(target)
}

fn same_file(meta: &std::fs::Metadata, other: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(other).is_ok_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
}

fn context_out_tmp(path: &Path) -> PathBuf {
    path.with_extension("tmp-posthandler")
}

/// Writes `value` to `path` through a temporary file and a rename, so a
/// reader never sees half a file. A context may hold literal secrets: a new
/// file is readable by its owner only, a replaced one keeps its mode.
fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = context_out_tmp(path);
    let mode = std::fs::metadata(path).map_or(0o600, |meta| meta.permissions().mode());
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(&serde_json::to_vec_pretty(value)?)
    };
    write().with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}
