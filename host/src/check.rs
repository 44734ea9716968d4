//! Checks an export context without touching the network, and reports
//! every problem at once, each with its place and a plain cause.
//!
//! [`check_file`] is what `posthandler-host check` prints, and what `run` and
//! `serve` apply first through [`settle`]. In order, it:
//!
//! 1. reads the file and [normalizes](crate::normalize) the suite's
//!    spellings into the documented keys;
//! 2. resolves [secret references](crate::secrets);
//! 3. checks each entry against the field descriptions its plugin reports:
//!    required fields, unknown keys (with the likely intended one), string
//!    and list shapes, choice values, absolute URLs, and destination fields
//!    as [`destination::resolve`] would take them;
//! 4. calls the plugin's own `configure` for each server type (`dev`,
//!    `test`, `prod`), which checks what only the plugin knows (plain http to
//!    a host other than loopback, two systems for one server type). Plugins
//!    must not send anything at `configure`; the OAuth 2.0 plugin only builds
//!    its HTTP client there.
//!
//! `configure` stops at the first problem. So that the plugin's problems are
//! reported all at once too, in a private copy each place already reported
//! is unset when its field is optional free text or a URL, or else given a
//! placeholder value of its field's type, and `configure` is called again, at
//! most [`MAX_PLUGIN_ROUNDS`] times per server type. Each place is reported
//! once: not again when the host's own checks already named it, nor a second
//! time by the plugin (that one would be about the placeholder).
//!
//! With a server type, a plugin instance that answers `stats.v1` with
//! `"passThrough": true` (no destination system for it) is a warning: the run
//! would pass records through unchanged.

use crate::context::{Context, CHAIN_KEY};
use crate::destination::{self, ChainFields, Target};
use crate::loader::{Discovery, Plugin};
use crate::normalize;
use crate::secrets;
use crate::server_type::ServerType;
use crate::Error;
use abi_stable::std_types::{RResult, RStr};
use posthandler_abi::fields::{FieldDescription, FieldType};
use posthandler_abi::{ConfigureRequest, ErrorKind, HostServices};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// How often `configure` is called again per server type after a problem.
pub const MAX_PLUGIN_ROUNDS: usize = 16;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The context is not sound; `run` would refuse it.
    Error,
    /// `run` would go on, but probably not as meant.
    Warning,
}

/// One problem in a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// How bad it is.
    pub severity: Severity,
    /// Where, such as `postProcessorPlugins[0].destinationSystems[1].restUrl`.
    pub place: String,
    /// What is wrong there, one line, never with a secret.
    pub cause: String,
}

impl Problem {
    /// An error at `place`.
    pub fn error(place: impl Into<String>, cause: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            place: place.into(),
            cause: cause.into(),
        }
    }

    /// A warning at `place`.
    pub fn warning(place: impl Into<String>, cause: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(place, cause)
        }
    }
}

impl fmt::Display for Problem {
    /// `error: <place>: <cause>` or `warning: <place>: <cause>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}: {}", self.place, self.cause)
    }
}

/// The outcome of [`check_file`].
#[derive(Debug)]
pub struct Report {
    /// The context, normalized and with its secrets resolved.
    pub context: Context,
    /// Every problem found: unusable references and spellings first, then
    /// the host's checks in the order of the context, then the plugins'.
    pub problems: Vec<Problem>,
    /// What stops `run` before anything else, in this order (also among
    /// `problems`): the context's shape (`name` not a string, the chain not a
    /// list, an entry not an object or without a plugin name), then chain
    /// entries whose plugin is not loaded.
    pub missing: Vec<Error>,
}

impl Report {
    /// The summary `check` prints after the problems: `sound (0 errors, 1
    /// warning)` or `not sound (1 error, 2 warnings)`, each count with its
    /// noun in the singular only for one.
    pub fn summary(&self) -> String {
        let errors = self
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = self.problems.len() - errors;
        let verdict = if errors == 0 { "sound" } else { "not sound" };
        let counted = |n: usize, noun: &str| match n {
            1 => format!("1 {noun}"),
            n => format!("{n} {noun}s"),
        };
        format!(
            "{verdict} ({}, {})",
            counted(errors, "error"),
            counted(warnings, "warning")
        )
    }

    /// Whether the context is sound: no problem of severity error.
    pub fn is_sound(&self) -> bool {
        self.problems
            .iter()
            .all(|p| p.severity == Severity::Warning)
    }
}

/// Reads, normalizes and checks the context file at `path` against the
/// plugins of `discovery`.
///
/// # Errors
///
/// The file cannot be read or is not JSON: nothing else can be checked
/// then. A context of the wrong shape is a report with its problems.
pub fn check_file(
    path: &Path,
    discovery: &Discovery,
    server_type: Option<ServerType>,
) -> Result<Report, Error> {
    let in_file = |err: Error| match err {
        Error::Context { place, cause } => Error::Context {
            place: format!("{}: {place}", path.display()),
            cause,
        },
        other => other,
    };
    let text = crate::context::read_file(path, "reading the context")?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut report = check_text(&text, base, discovery, server_type).map_err(in_file)?;
    report.missing = report.missing.into_iter().map(in_file).collect();
    Ok(report)
}

/// [`check_file`] on context text; `base` is the folder `file:` references
/// are relative to.
///
/// # Errors
///
/// As [`check_file`].
pub fn check_text(
    text: &str,
    base: &Path,
    discovery: &Discovery,
    server_type: Option<ServerType>,
) -> Result<Report, Error> {
    let mut problems = Vec::new();
    let mut value: Value = serde_json::from_str(text).map_err(|err| Error::Context {
        place: "context".into(),
        cause: format!("not valid JSON ({err})"),
    })?;
    for place in crate::context::duplicate_keys(text) {
        problems.push(Problem::error(
            place,
            "given twice in one object; JSON keeps only the last, so give it once",
        ));
    }
    normalize::normalize_top(&mut value, &mut problems);
    let (names, mut missing) = structure(&value);
    for err in &missing {
        let (place, cause) = split_message(&err.to_string());
        problems.push(Problem::error(place, cause));
    }
    if names.is_empty() && missing.is_empty() {
        problems.push(Problem::warning(
            CHAIN_KEY,
            "the chain is empty: every record passes through unchanged",
        ));
    }

    let mut plugins = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        // An entry without a usable plugin name is among the problems above.
        let plugin = discovery.active(name).cloned();
        if plugin.is_none() && !name.is_empty() {
            let err = Error::MissingPlugin {
                index,
                name: name.clone(),
                hint: format!(" ({})", discovery.summary()),
            };
            let (place, cause) = split_message(&err.to_string());
            problems.push(Problem::error(place, cause));
            missing.push(err);
        }
        plugins.push(plugin);
    }

    for (index, plugin) in plugins.iter().enumerate() {
        let Some(plugin) = plugin else { continue };
        let place = entry_place(index);
        let entry = &mut value[CHAIN_KEY][index];
        normalize::normalize_object(entry, &plugin.fields, &place, &mut problems);
        secrets::resolve_object(
            entry,
            &plugin.fields,
            &place,
            base,
            server_type,
            &mut problems,
        );
    }

    let view = View {
        context: &value,
        names: &names,
        discovery,
    };
    // Every entry's own destinations, for the checks across entries.
    let mut chain_targets: Vec<(usize, String, String, Target)> = Vec::new();
    for (index, plugin) in plugins.iter().enumerate() {
        let Some(plugin) = plugin else { continue };
        // A plugin that describes no field has made no promise to check.
        if plugin.fields.is_empty() {
            continue;
        }
        let entry = &value[CHAIN_KEY][index];
        let mut found = Vec::new();
        let at = entry_place(index);
        // The entry's own destination fields, all written on every record;
        // those of list items (one per server type, say) are not compared.
        let mut targets = Vec::new();
        check_object(
            entry,
            &plugin.fields,
            &at,
            true,
            &mut |field, place, text| match check_destination(field, text, index, &view)? {
                Ok(target) => {
                    if !place[at.len()..].contains('[') {
                        targets.push((place.to_owned(), text.to_owned(), target));
                    }
                    None
                }
                Err(cause) => Some(Problem::error(place, cause)),
            },
            &mut found,
        );
        problems.extend(found);
        problems.extend(colliding_destinations(&targets));
        chain_targets.extend(
            targets
                .into_iter()
                .map(|(place, text, target)| (index, place, text, target)),
        );
    }
    problems.extend(nested_across_entries(&chain_targets));

    // The context's text once, for every probe that needs no repair: made
    // anew per entry, a chain of n entries cost n times the whole text.
    let text = value.to_string();
    for (index, plugin) in plugins.iter().enumerate() {
        let Some(plugin) = plugin else { continue };
        let found = plugin_checks(&value, &text, index, plugin, server_type, &problems);
        problems.extend(found);
    }

    let json = value.to_string();
    let context = match Context::parse(&json) {
        Ok(context) => context,
        // Its shape is among the problems; the report still carries it.
        Err(_) => Context {
            name: value
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            value,
            json,
            plugins: names,
        },
    };
    Ok(Report {
        context,
        problems,
        missing,
    })
}

/// What `run` and `serve` do first: [`check_file`], warnings logged, and
/// any error refused.
///
/// # Errors
///
/// The first of [`Report::missing`]: the context's shape is wrong (an
/// [`Error::Context`], as [`Context::parse`] gives it) or a chain entry names
/// no loaded plugin ([`Error::MissingPlugin`]); or the context has problems: one [`Error::Context`] whose
/// text lists them all, `place: cause; place: cause`.
pub fn settle(
    path: &Path,
    discovery: &Discovery,
    server_type: ServerType,
) -> Result<Context, Error> {
    let report = check_file(path, discovery, Some(server_type))?;
    if let Some(missing) = report.missing.into_iter().next() {
        return Err(missing);
    }
    let mut errors = Vec::new();
    for problem in report.problems {
        match problem.severity {
            Severity::Warning => log::warn!("{}: {}", problem.place, problem.cause),
            Severity::Error => errors.push(problem),
        }
    }
    let Some(first) = errors.first() else {
        return Ok(report.context);
    };
    let mut cause = first.cause.clone();
    for more in &errors[1..] {
        cause.push_str(&format!("; {}: {}", more.place, more.cause));
    }
    Err(Error::Context {
        place: first.place.clone(),
        cause,
    })
}

/// Every problem of the context's own shape, as [`Context::parse`] would
/// name them (it stops at the first), and the plugin name of each chain
/// entry, empty where it has none.
fn structure(context: &Value) -> (Vec<String>, Vec<Error>) {
    let mut problems = Vec::new();
    let Value::Object(top) = context else {
        return (
            vec![],
            vec![Error::context("context", "must be a JSON object")],
        );
    };
    if top.get("name").is_some_and(|name| !name.is_string()) {
        problems.push(Error::context("name", "must be a string"));
    }
    let chain = match top.get(CHAIN_KEY) {
        Some(Value::Array(chain)) => chain.as_slice(),
        Some(_) => {
            problems.push(Error::context(CHAIN_KEY, "must be a list"));
            &[]
        }
        None => {
            problems.push(Error::context(CHAIN_KEY, "missing"));
            &[]
        }
    };
    let mut names = Vec::with_capacity(chain.len());
    for (index, entry) in chain.iter().enumerate() {
        let at = entry_place(index);
        let name = match entry.get("plugin") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            Some(_) => {
                problems.push(Error::context(
                    format!("{at}.plugin"),
                    "must be a plugin name",
                ));
                String::new()
            }
            None if !entry.is_object() => {
                problems.push(Error::context(at, "must be a JSON object"));
                String::new()
            }
            None => {
                problems.push(Error::context(format!("{at}.plugin"), "missing"));
                String::new()
            }
        };
        names.push(name);
    }
    (names, problems)
}

fn entry_place(index: usize) -> String {
    format!("{CHAIN_KEY}[{index}]")
}

/// `place: cause` split at the first `: `.
fn split_message(message: &str) -> (String, String) {
    match message.split_once(": ") {
        Some((place, cause)) => (place.to_owned(), cause.to_owned()),
        None => (String::new(), message.to_owned()),
    }
}

/// [`ChainFields`] over a context being checked.
struct View<'a> {
    context: &'a Value,
    names: &'a [String],
    discovery: &'a Discovery,
}

impl ChainFields for View<'_> {
    fn context(&self) -> &Value {
        self.context
    }
    fn plugin_names(&self) -> &[String] {
        self.names
    }
    fn fields_of(&self, name: &str) -> Option<&[FieldDescription]> {
        self.discovery.active(name).map(|p| p.fields.as_slice())
    }
}

/// Where `text` in a destination field points, or why it cannot be
/// written to; `None` for fields of other types.
fn check_destination(
    field: &FieldDescription,
    text: &str,
    writer: usize,
    chain: &dyn ChainFields,
) -> Option<Result<Target, String>> {
    (field.field_type == FieldType::DestinationField)
        .then(|| destination::resolve(text, writer, chain))
}

/// One error for each destination field of an entry that collides with an
/// earlier one: every run would lose a value or fail on every record.
fn colliding_destinations(targets: &[(String, String, Target)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (later, (place, text, target)) in targets.iter().enumerate() {
        let found = targets[..later]
            .iter()
            .find_map(|(other_place, other_text, other)| {
                destination::nesting(target, other).map(|nested| (other_place, other_text, nested))
            });
        let Some((other_place, other_text, nested)) = found else {
            continue;
        };
        let how = match nested {
            std::cmp::Ordering::Equal => "is the same field as",
            std::cmp::Ordering::Greater => "lies inside",
            std::cmp::Ordering::Less => "holds",
        };
        problems.push(Problem::error(
            place,
            format!(
                "'{}' {how} {other_place} ('{}'): one write would replace or break the \
                 other; give each value a field of its own",
                text.escape_debug(),
                other_text.escape_debug()
            ),
        ));
    }
    problems
}

/// A warning for each destination that lies inside one an earlier entry
/// writes: the earlier entry leaves a value there, so the later write finds
/// no object to write into (a token is text). The same field in two
/// entries is fine: the later one replaces the value for the rest of the
/// chain.
fn nested_across_entries(targets: &[(usize, String, String, Target)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (entry, place, text, target) in targets {
        let outer = targets.iter().find(|(earlier, _, _, other)| {
            earlier < entry
                && destination::nesting(target, other) == Some(std::cmp::Ordering::Greater)
        });
        if let Some((_, outer_place, outer_text, _)) = outer {
            problems.push(Problem::warning(
                place,
                format!(
                    "'{}' lies inside {outer_place} ('{}'), where that entry writes a value: \
                     this write will find no object to write into",
                    text.escape_debug(),
                    outer_text.escape_debug()
                ),
            ));
        }
    }
    problems
}

/// The checks that follow from the descriptions alone, on one object.
fn check_object(
    object: &Value,
    fields: &[FieldDescription],
    place: &str,
    is_entry: bool,
    destination: &mut dyn FnMut(&FieldDescription, &str, &str) -> Option<Problem>,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(map) = object else {
        problems.push(Problem::error(place, "must be a JSON object"));
        return;
    };
    for key in map.keys() {
        if (is_entry && key == "plugin") || fields.iter().any(|f| &f.key == key) {
            continue;
        }
        let shown: String = key.chars().take(60).collect::<String>();
        problems.push(Problem::error(
            format!("{place}.{}", shown.escape_debug()),
            unknown_key_cause(key, fields),
        ));
    }
    for field in fields {
        let at = format!("{place}.{}", field.key);
        let value = match map.get(&field.key) {
            None | Some(Value::Null) => {
                if field.required {
                    problems.push(Problem::error(at, "missing"));
                }
                continue;
            }
            Some(value) => value,
        };
        if field.field_type == FieldType::List {
            let Value::Array(items) = value else {
                problems.push(Problem::error(at, "must be a list"));
                continue;
            };
            if items.is_empty() && field.required {
                let item = field.item_label.as_deref().unwrap_or("item");
                problems.push(Problem::error(
                    &at,
                    format!("must not be empty (add at least one {item})"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let item_place = format!("{at}[{i}]");
                check_object(
                    item,
                    &field.item_fields,
                    &item_place,
                    false,
                    destination,
                    problems,
                );
            }
            continue;
        }
        let Value::String(text) = value else {
            problems.push(Problem::error(
                at,
                not_text(value, field.field_type == FieldType::Secret),
            ));
            continue;
        };
        if text.trim().is_empty() {
            if field.required {
                problems.push(Problem::error(at, "must not be empty"));
            } else if field.field_type == FieldType::DestinationField {
                // `run` does not take a blank destination for unset.
                problems.extend(destination(field, &at, text));
            }
            continue;
        }
        let problem = match field.field_type {
            FieldType::Choice => check_choice(field, text).map(|c| Problem::error(&at, c)),
            FieldType::Url if !is_absolute_url(text) => Some(Problem::error(
                &at,
                "not an absolute URL (it needs a scheme and a host, such as \
                 https://auth.example.com/token)",
            )),
            _ => destination(field, &at, text),
        };
        problems.extend(problem);
    }
}

fn check_choice(field: &FieldDescription, value: &str) -> Option<String> {
    if field.allowed_values.iter().any(|v| v == value) {
        return None;
    }
    let mut cause = format!(
        "'{}' is not one of {}",
        value.chars().take(60).collect::<String>().escape_debug(),
        field.allowed_values.join(", ")
    );
    if !field.value_labels.is_empty() {
        let labels: Vec<String> = field
            .value_labels
            .values()
            .map(|l| format!("'{l}'"))
            .collect();
        cause.push_str(&format!(" (or the suite's {})", labels.join(", ")));
    }
    Some(cause)
}

fn unknown_key_cause(key: &str, fields: &[FieldDescription]) -> String {
    let lower = key.to_lowercase();
    let lower = lower.as_str();
    let best = fields
        .iter()
        .flat_map(|f| {
            std::iter::once(f.key.as_str())
                .chain(std::iter::once(f.label.as_str()))
                .chain(f.aliases.iter().map(String::as_str))
                .map(move |spelling| (edit_distance(lower, &spelling.to_lowercase()), f))
        })
        .min_by_key(|(distance, _)| *distance);
    match best {
        Some((distance, field)) if distance <= (key.chars().count() / 3).max(2) => {
            format!("unknown key (did you mean '{}'?)", field.key)
        }
        _ => {
            let keys: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
            format!("unknown key (known keys: {})", keys.join(", "))
        }
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `scheme://host...` with an RFC 3986 scheme and a non-empty authority,
/// or a URN (`urn:<namespace>:<name>`, RFC 8141), which is an absolute URI
/// without a host: resource indicators (RFC 8707) may be either.
fn is_absolute_url(text: &str) -> bool {
    let text = text.trim();
    if is_urn(text) {
        return true;
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    scheme_ok && !host.is_empty() && !host.starts_with(':')
}

/// `urn:<namespace>:<name>`: a namespace of letters, digits and hyphens
/// (RFC 8141 section 2) and a name without spaces.
fn is_urn(text: &str) -> bool {
    let Some(rest) = text.get(..4).filter(|s| s.eq_ignore_ascii_case("urn:")) else {
        return false;
    };
    let Some((namespace, name)) = text[rest.len()..].split_once(':') else {
        return false;
    };
    namespace.len() >= 2
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.is_empty()
        && !name.chars().any(char::is_whitespace)
}

thread_local! {
    /// Set while the checks call a plugin's `configure`: what the plugin
    /// logs then is about a probe, not about the run, and goes to trace.
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// The host's services, with a log sink that demotes records to trace while
/// [`PROBING`] is set.
///
/// A plugin keeps the first services it is given as its log sink; the checks
/// run before the chain is configured, so these are the ones it keeps. Out of
/// a probe they log exactly as [`crate::plugin_log::services`] do.
fn probe_services() -> HostServices {
    HostServices {
        log: probe_log,
        ..crate::plugin_log::services()
    }
}

extern "C" fn probe_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    let level = if PROBING.with(Cell::get) { 5 } else { level };
    (crate::plugin_log::services().log)(level, target, message);
}

/// The plugin's own checks on entry `index`, by calling its `configure` for
/// every server type; `text` is `context` as JSON. The context is copied
/// only for an entry with placeholders to put in.
fn plugin_checks(
    context: &Value,
    text: &str,
    index: usize,
    plugin: &Plugin,
    server_type: Option<ServerType>,
    known: &[Problem],
) -> Vec<Problem> {
    let entry_prefix = entry_place(index);
    let known_places: HashSet<&str> = known.iter().map(|p| p.place.as_str()).collect();
    let mut work: Option<Value> = None;
    for problem in known {
        if let Some(path) = problem.place.strip_prefix(&entry_prefix) {
            let work = work.get_or_insert_with(|| context.clone());
            repair(&mut work[CHAIN_KEY][index], &plugin.fields, path);
        }
    }
    let work_text = work
        .as_ref()
        .map_or(Cow::Borrowed(text), |work| Cow::Owned(work.to_string()));

    let mut found: Vec<Problem> = Vec::new();
    for probe in ServerType::ALL {
        let mut repaired_context: Option<Value> = None;
        let mut repaired = HashSet::new();
        for _ in 0..MAX_PLUGIN_ROUNDS {
            let json = repaired_context
                .as_ref()
                .map_or(Cow::Borrowed(&*work_text), |c| Cow::Owned(c.to_string()));
            let request = ConfigureRequest {
                context_json: RStr::from_str(&json),
                plugin_index: index as u32,
                server_type: RStr::from_str(probe.as_str()),
            };
            PROBING.with(|p| p.set(true));
            let result = (plugin.module.configure())(probe_services(), request);
            PROBING.with(|p| p.set(false));
            let error = match result {
                RResult::ROk(instance) => {
                    if server_type == Some(probe) && passes_through(&instance) {
                        found.push(Problem::warning(
                            &entry_prefix,
                            format!(
                                "'{}' has nothing to do on server type '{}' (no destination \
                                 system is limited to it), so the run passes records through \
                                 unchanged",
                                plugin.name,
                                probe.as_str()
                            ),
                        ));
                    }
                    break;
                }
                RResult::RErr(error) => error,
            };
            let (place, cause) = match error.kind() {
                ErrorKind::Configuration => split_message(error.message.as_str()),
                _ => (
                    entry_prefix.clone(),
                    format!(
                        "'{}' failed at configure: {}",
                        plugin.name,
                        error.message.as_str()
                    ),
                ),
            };
            // One problem per place: a second one there would be about
            // the placeholder, not the context.
            if !known_places.contains(place.as_str()) && !found.iter().any(|p| p.place == place) {
                found.push(Problem::error(&place, cause));
            }
            let Some(path) = place.strip_prefix(&entry_prefix) else {
                break;
            };
            if !repaired.insert(place.clone()) {
                break;
            }
            let context = repaired_context
                .get_or_insert_with(|| work.clone().unwrap_or_else(|| context.clone()));
            if !repair(&mut context[CHAIN_KEY][index], &plugin.fields, path) {
                break;
            }
        }
    }
    found
}

/// Whether a configured instance says it passes every record through.
fn passes_through(instance: &posthandler_abi::PosthandlerBox) -> bool {
    let answer = instance.call(
        RStr::from_str(posthandler_abi::payload::STATS_V1),
        RStr::from_str("{}"),
    );
    answer
        .into_result()
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|stats| stats.get("passThrough").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// Gives the required field at `path` (such as
/// `.destinationSystems[1].restUrl`, below an entry) a placeholder of its
/// type, or removes an optional field or a key no field describes. Returns whether anything could be repaired.
fn repair(entry: &mut Value, fields: &[FieldDescription], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('.') else {
        return false;
    };
    let (segment, tail) = match rest.find(['.', '[']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Value::Object(map) = entry else {
        return false;
    };
    let Some(field) = fields.iter().find(|f| f.key == segment) else {
        return map.remove(segment).is_some();
    };
    if let Some(after) = tail.strip_prefix('[') {
        let Some((number, tail)) = after.split_once(']') else {
            return false;
        };
        let item = number
            .parse::<usize>()
            .ok()
            .and_then(|i| map.get_mut(&field.key)?.get_mut(i));
        return match item {
            Some(item) => repair(item, &field.item_fields, tail),
            None => false,
        };
    }
    if !tail.is_empty() {
        return false;
    }
    // Placeholder text or a URL could be wrong for what the plugin does
    // with it (a proxy scheme, a file to read): unset such a field when it
    // is optional. Choices and destinations have placeholders always valid.
    let free_form = matches!(
        field.field_type,
        FieldType::Text | FieldType::Secret | FieldType::Url
    );
    if free_form && !field.required {
        map.remove(&field.key);
        return true;
    }
    let placeholder = match field.field_type {
        FieldType::Text | FieldType::Secret => Value::from("placeholder"),
        FieldType::Url => Value::from("https://placeholder.invalid/"),
        FieldType::Choice => match field.allowed_values.first() {
            Some(value) => Value::from(value.as_str()),
            None => return false,
        },
        // A pointer into the record: always a usable destination.
        FieldType::DestinationField => Value::from("/placeholder"),
        FieldType::List => return false,
    };
    map.insert(field.key.clone(), placeholder);
    true
}

/// The problem with a setting that is JSON but not text. The suite keeps
/// every setting as text, so a number or a boolean is shown quoted; a
/// secret's value is never shown.
fn not_text(value: &Value, secret: bool) -> String {
    match value {
        Value::Number(_) | Value::Bool(_) if secret => {
            "must be a string: write it in quotes".to_owned()
        }
        Value::Number(_) | Value::Bool(_) => {
            format!("must be a string: write it in quotes, \"{value}\"")
        }
        _ => "must be a string".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn system_fields() -> Vec<FieldDescription> {
        vec![
            FieldDescription {
                key: "restUrl".into(),
                label: "Rest URL".into(),
                field_type: FieldType::Url,
                required: true,
                ..Default::default()
            },
            FieldDescription {
                key: "restPassword".into(),
                label: "Rest Password".into(),
                field_type: FieldType::Secret,
                required: true,
                ..Default::default()
            },
            FieldDescription {
                key: "clientAuthentication".into(),
                label: "Client Authentication".into(),
                field_type: FieldType::Choice,
                allowed_values: vec!["header".into(), "body".into()],
                ..Default::default()
            },
        ]
    }

    fn fields() -> Vec<FieldDescription> {
        vec![FieldDescription {
            key: "destinationSystems".into(),
            label: "Destination Systems".into(),
            field_type: FieldType::List,
            required: true,
            item_label: Some("Destination System".into()),
            item_fields: system_fields(),
            ..Default::default()
        }]
    }

    fn optional_fields() -> Vec<FieldDescription> {
        let optional = |key: &str, field_type| FieldDescription {
            key: key.into(),
            field_type,
            ..Default::default()
        };
        let mut fields = fields();
        fields[0].item_fields.extend([
            optional("proxy", FieldType::Url),
            optional("caFile", FieldType::Text),
        ]);
        fields
    }

    fn problems_of(entry: Value) -> Vec<String> {
        let mut problems = vec![];
        check_object(
            &entry,
            &fields(),
            "p[0]",
            true,
            &mut |_, _, _| None,
            &mut problems,
        );
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_number_for_a_secret_is_refused_without_showing_it() {
        let problems = problems_of(json!({
            "plugin": "OAuth 2.0",
            "destinationSystems": [{
                "restUrl": "https://auth.example.com/token",
                "restPassword": 271828182
            }]
        }));
        assert_eq!(
            problems,
            ["error: p[0].destinationSystems[0].restPassword: must be a string: write it in quotes"]
        );
    }

    #[test]
    fn every_problem_of_an_entry_is_reported_with_its_place() {
        let problems = problems_of(json!({
            "plugin": "OAuth 2.0",
            "destinationSystems": [
                {"restUrl": "/token", "restPasword": "x", "clientAuthentication": "both"},
                {"restUrl": 3, "restPassword": ""}
            ]
        }));
        assert_eq!(
            problems,
            [
                "error: p[0].destinationSystems[0].restPasword: unknown key (did you mean 'restPassword'?)",
                "error: p[0].destinationSystems[0].restUrl: not an absolute URL (it needs a scheme and a host, such as https://auth.example.com/token)",
                "error: p[0].destinationSystems[0].restPassword: missing",
                "error: p[0].destinationSystems[0].clientAuthentication: 'both' is not one of header, body",
                "error: p[0].destinationSystems[1].restUrl: must be a string: write it in quotes, \"3\"",
                "error: p[0].destinationSystems[1].restPassword: must not be empty",
            ]
        );
    }

    #[test]
    fn a_far_off_key_lists_the_known_ones() {
        let problems = problems_of(json!({"destinationSystems": [], "colour": 1}));
        assert_eq!(
            problems,
            [
                "error: p[0].colour: unknown key (known keys: destinationSystems)",
                "error: p[0].destinationSystems: must not be empty (add at least one Destination System)",
            ]
        );
    }

    #[test]
    fn absolute_urls_need_a_scheme_and_a_host() {
        for ok in [
            "https://a.example/t",
            "http://127.0.0.1:9/t",
            "https://u@h/",
            "urn:example:products-api",
            "URN:ietf:params:oauth:token-type:jwt",
        ] {
            assert!(is_absolute_url(ok), "{ok}");
        }
        for bad in [
            "/token",
            "a.example/t",
            "https:///t",
            "1http://a/",
            "http://:80/",
            "localhost:8080/token",
            "urn:",
            "urn:example",
            "urn:example:",
            "urn:x:y",
            "urn:ex ample:y",
            "urn:example:a b",
        ] {
            assert!(!is_absolute_url(bad), "{bad}");
        }
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("restpasword", "restpassword"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn repair_gives_required_fields_placeholders_and_drops_optional_and_unknown_keys() {
        let mut entry = json!({"destinationSystems": [{"restUrl": "x", "oops": 1}]});
        assert!(repair(
            &mut entry,
            &fields(),
            ".destinationSystems[0].restUrl"
        ));
        assert!(repair(&mut entry, &fields(), ".destinationSystems[0].oops"));
        assert!(repair(
            &mut entry,
            &fields(),
            ".destinationSystems[0].restPassword"
        ));
        let mut optional = json!({"destinationSystems": [{"proxy": "socks5://h:1", "caFile": "/x",
            "clientAuthentication": "both"}]});
        for key in ["proxy", "caFile", "clientAuthentication"] {
            let path = format!(".destinationSystems[0].{key}");
            assert!(repair(&mut optional, &optional_fields(), &path), "{key}");
        }
        assert_eq!(
            optional,
            json!({"destinationSystems": [{"clientAuthentication": "header"}]}),
            "optional text and URLs are unset, choices get a value they allow"
        );
        assert!(!repair(&mut entry, &fields(), ".destinationSystems"));
        assert!(!repair(
            &mut entry,
            &fields(),
            ".destinationSystems[5].restUrl"
        ));
        assert_eq!(
            entry,
            json!({"destinationSystems": [{"restUrl": "https://placeholder.invalid/", "restPassword": "placeholder"}]})
        );
    }

    #[test]
    fn the_summary_counts_errors_and_warnings_in_singular_or_plural() {
        let report = |problems| Report {
            context: Context::parse(r#"{"postProcessorPlugins":[]}"#).unwrap(),
            problems,
            missing: vec![],
        };
        let error = || Problem::error("p", "c");
        let warning = || Problem::warning("p", "c");
        assert_eq!(report(vec![]).summary(), "sound (0 errors, 0 warnings)");
        assert_eq!(
            report(vec![warning()]).summary(),
            "sound (0 errors, 1 warning)"
        );
        assert_eq!(
            report(vec![error()]).summary(),
            "not sound (1 error, 0 warnings)"
        );
        assert_eq!(
            report(vec![error(), error(), warning(), warning()]).summary(),
            "not sound (2 errors, 2 warnings)"
        );
    }

    #[test]
    fn problems_print_as_one_line_with_severity_place_and_cause() {
        assert_eq!(
            Problem::warning("p[0]", "nothing to do").to_string(),
            "warning: p[0]: nothing to do"
        );
    }
}
