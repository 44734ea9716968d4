//! Secrets by reference: a field of type `secret` may name where its value
//! is instead of holding it, so that a context can be committed and copied
//! between tenants without the secret.
//!
//! - `env:NAME`: the value of the environment variable `NAME`;
//! - `file:PATH`: the contents of the file `PATH` (relative to the context
//!   file's folder), without trailing line breaks;
//! - `literal:TEXT`: the secret `TEXT` itself, for a secret that happens to
//!   begin with `env:`, `file:` or `literal:`.
//!
//! Any other value is the secret itself. The resolved value goes only into
//! the context handed to plugins; [`restore_references`] puts the references
//! back before a context is written out. Errors name the reference, never a
//! value.

use crate::check::Problem;
use crate::destination::ChainFields;
use crate::server_type::ServerType;
use crate::Error;
use posthandler_abi::fields::{FieldDescription, FieldType};
use serde_json::Value;
use std::path::Path;

/// Where a secret field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    /// `env:NAME`.
    Env(&'a str),
    /// `file:PATH`.
    File(&'a str),
    /// `literal:TEXT`: the secret is `TEXT`.
    Literal(&'a str),
}

impl<'a> Reference<'a> {
    /// The reference `value` holds, or `None` when it is the secret itself.
    pub fn parse(value: &'a str) -> Option<Self> {
        if let Some(name) = value.strip_prefix("env:") {
            Some(Reference::Env(name))
        } else if let Some(path) = value.strip_prefix("file:") {
            Some(Reference::File(path))
        } else {
            value.strip_prefix("literal:").map(Reference::Literal)
        }
    }

    /// Why the reference itself is unusable, wherever it is resolved: it
    /// names no variable or no file.
    pub fn malformed(self) -> Option<String> {
        match self {
            Reference::Env("") => Some("'env:' names no environment variable".into()),
            Reference::File("") => Some("'file:' names no file".into()),
            _ => None,
        }
    }

    /// The secret, reading the environment or a file relative to `base`.
    ///
    /// # Errors
    ///
    /// A cause naming the reference (the variable or the file), never a
    /// value.
    pub fn resolve(self, base: &Path) -> Result<String, String> {
        if let Some(cause) = self.malformed() {
            return Err(cause);
        }
        match self {
            Reference::Literal(text) => Ok(text.to_owned()),
            Reference::Env(name) => match std::env::var(name) {
                Ok(value) if value.is_empty() => Err(format!(
                    "environment variable '{}' (from 'env:{0}') is empty",
                    name.escape_debug()
                )),
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "environment variable '{}' (from 'env:{0}') is not set",
                    name.escape_debug()
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                    "environment variable '{}' (from 'env:{0}') is not valid UTF-8",
                    name.escape_debug()
                )),
            },
            Reference::File(path) => {
                let full = base.join(path);
                let unreadable = |err: std::io::Error| {
                    format!(
                        "file '{}' (from 'file:{}') cannot be read ({})",
                        full.display(),
                        path.escape_debug(),
                        io_cause(&err)
                    )
                };
                // Opening a FIFO waits for a writer, forever if none comes,
                // and references are read for every system, used or not.
                let kind = std::fs::metadata(&full).map_err(unreadable)?.file_type();
                if !kind.is_file() {
                    return Err(format!(
                        "file '{}' (from 'file:{}') is not a regular file but {}",
                        full.display(),
                        path.escape_debug(),
                        crate::context::file_kind(kind)
                    ));
                }
                // A secret is short; a huge file is a mistake.
                let text = crate::context::read_capped_bytes(&full, MAX_SECRET_FILE_BYTES)
                    .map_err(unreadable)?;
                let text = String::from_utf8(text).map_err(|_| {
                    format!(
                        "file '{}' (from 'file:{}') is not UTF-8 text",
                        full.display(),
                        path.escape_debug()
                    )
                })?;
                let secret = text.trim_end_matches(['\n', '\r']);
                if secret.is_empty() {
                    return Err(format!(
                        "file '{}' (from 'file:{}') is empty",
                        full.display(),
                        path.escape_debug()
                    ));
                }
                Ok(secret.to_owned())
            }
        }
    }
}

/// The OS error's own words, without the "(os error 2)" suffix.
fn io_cause(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// Calls `visit` with the place and value of every field of type `secret`
/// that `object` (with `fields`) holds, in lists too.
pub fn for_each_secret(
    object: &mut Value,
    fields: &[FieldDescription],
    place: &str,
    visit: &mut dyn FnMut(&str, &mut Value),
) {
    walk_secrets(object, fields, place, None, &mut |at, value, _| {
        visit(at, value)
    });
}

/// [`for_each_secret`], telling `visit` also the server type named by the
/// [selector](FieldDescription::server_type_selector) of the innermost list
/// item that holds the secret, if any.
fn walk_secrets(
    object: &mut Value,
    fields: &[FieldDescription],
    place: &str,
    selected: Option<&str>,
    visit: &mut dyn FnMut(&str, &mut Value, Option<&str>),
) {
    let Value::Object(map) = object else {
        return;
    };
    let selector = fields
        .iter()
        .find(|f| f.server_type_selector)
        .and_then(|f| map.get(&f.key)?.as_str().map(str::to_owned));
    let selected = selector.as_deref().or(selected);
    for field in fields {
        let Some(value) = map.get_mut(&field.key) else {
            continue;
        };
        let at = format!("{place}.{}", field.key);
        match (field.field_type, value) {
            (FieldType::Secret, value) => visit(&at, value, selected),
            (FieldType::List, Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_place = format!("{at}[{i}]");
                    walk_secrets(item, &field.item_fields, &item_place, selected, visit);
                }
            }
            _ => {}
        }
    }
}

/// Resolves every secret reference in `object` in place for a run on
/// `server_type`; a reference that cannot be resolved stays as it is and
/// becomes a problem.
///
/// A reference in a list item whose selector names another server type
/// (or any, when `server_type` is `None`) is never replaced: the run does
/// not use that item. It is still checked: a malformed reference is an
/// error, a variable or file that is missing here only a warning.
pub fn resolve_object(
    object: &mut Value,
    fields: &[FieldDescription],
    place: &str,
    base: &Path,
    server_type: Option<ServerType>,
    problems: &mut Vec<Problem>,
) {
    walk_secrets(object, fields, place, None, &mut |at, value, selected| {
        let Value::String(text) = value else { return };
        let Some(reference) = Reference::parse(text) else {
            return;
        };
        let elsewhere = selected.filter(|s| server_type.map(ServerType::as_str) != Some(*s));
        let Some(other) = elsewhere else {
            match reference.resolve(base) {
                Ok(secret) => *text = secret,
                Err(cause) => problems.push(Problem::error(at, cause)),
            }
            return;
        };
        if let Some(cause) = reference.malformed() {
            problems.push(Problem::error(at, cause));
        } else if let Err(cause) = reference.resolve(base) {
            let shown: String = other.chars().take(20).collect();
            problems.push(Problem::warning(
                at,
                format!(
                    "{cause} (needed only on server type '{}')",
                    shown.escape_debug()
                ),
            ));
        }
    });
}

/// The context `output` (as a run left it) with the secret references of
/// the context file put back, for writing it out.
///
/// `configured` is the context the chain was configured with (references
/// resolved) and `original` the file's context, normalized. A secret the run
/// left unchanged gets its reference back; one the run changed keeps the new
/// value, escaped with `literal:` when it looks like a reference.
pub fn restore_references(
    original: &Value,
    configured: &Value,
    output: &Value,
    fields_of: &dyn Fn(usize) -> Option<Vec<FieldDescription>>,
) -> Value {
    let mut out = output.clone();
    let Some(entries) = out
        .get_mut(crate::context::CHAIN_KEY)
        .and_then(Value::as_array_mut)
    else {
        return out;
    };
    for (index, entry) in entries.iter_mut().enumerate() {
        let Some(fields) = fields_of(index) else {
            continue;
        };
        let pointer_base = format!("/{}/{index}", crate::context::CHAIN_KEY);
        for_each_secret(entry, &fields, "", &mut |at, value| {
            let pointer = format!("{pointer_base}{}", place_to_pointer(at));
            let Value::String(text) = value else { return };
            let unchanged = configured.pointer(&pointer) == Some(&Value::String(text.clone()));
            match original.pointer(&pointer) {
                Some(Value::String(written)) if unchanged => *text = written.clone(),
                _ if Reference::parse(text).is_some() => *text = format!("literal:{text}"),
                _ => {}
            }
        });
    }
    out
}

/// `.a[0].b` (a place below an entry) as the JSON Pointer `/a/0/b`.
fn place_to_pointer(place: &str) -> String {
    place
        .split('.')
        .filter(|part| !part.is_empty())
        .flat_map(|part| part.split('[').map(|s| s.trim_end_matches(']')))
        .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The largest secret file read.
const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// The context to write out after a run of `chain` that left `output`:
/// [`restore_references`] with the references of the context file at
/// `path` (read again and normalized as when it was loaded).
///
/// # Errors
///
/// The file cannot be read or parsed any more.
pub fn context_out(path: &Path, chain: &dyn ChainFields, output: &Value) -> Result<Value, Error> {
    let text = crate::context::read_file(path, "reading the context again")?;
    let mut original: Value = serde_json::from_str(&text).map_err(|err| Error::Context {
        place: path.display().to_string(),
        cause: format!("not valid JSON ({err})"),
    })?;
    let mut ignored = Vec::new();
    crate::normalize::normalize_top(&mut original, &mut ignored);
    let names = chain.plugin_names();
    let fields_of = |index: usize| -> Option<Vec<FieldDescription>> {
        Some(chain.fields_of(names.get(index)?)?.to_vec())
    };
    if let Some(entries) = original
        .get_mut(crate::context::CHAIN_KEY)
        .and_then(Value::as_array_mut)
    {
        for (index, entry) in entries.iter_mut().enumerate() {
            if let Some(fields) = fields_of(index) {
                crate::normalize::normalize_object(entry, &fields, "", &mut ignored);
            }
        }
    }
    Ok(restore_references(
        &original,
        chain.context(),
        output,
        &fields_of,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Severity;
    use serde_json::json;

    fn secret_field() -> Vec<FieldDescription> {
        vec![FieldDescription {
            key: "restPassword".into(),
            label: "Rest Password".into(),
            field_type: FieldType::Secret,
            ..Default::default()
        }]
    }

    #[test]
    fn references_are_recognised_and_literal_escapes_them() {
        assert_eq!(Reference::parse("env:A"), Some(Reference::Env("A")));
        assert_eq!(
            Reference::parse("file:s.txt"),
            Some(Reference::File("s.txt"))
        );
        assert_eq!(
            Reference::parse("literal:env:abc"),
            Some(Reference::Literal("env:abc"))
        );
        assert_eq!(Reference::parse("Env:A"), None);
        assert_eq!(
            Reference::parse("literal:env:abc")
                .unwrap()
                .resolve(Path::new("."))
                .unwrap(),
            "env:abc"
        );
    }

    #[test]
    fn file_references_are_relative_to_the_context_and_lose_trailing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "canary-file-secret\r\n\n").unwrap();
        let secret = Reference::File("secret.txt").resolve(dir.path()).unwrap();
        assert_eq!(secret, "canary-file-secret");
    }

    #[test]
    fn a_secret_file_must_be_a_regular_file_and_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        std::fs::write(dir.path().join("real.txt"), "canary-linked-secret").unwrap();
        std::os::unix::fs::symlink("real.txt", dir.path().join("link.txt")).unwrap();

        let base = dir.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let results: Vec<_> = ["fifo", "folder", "/dev/null", "link.txt"]
                .into_iter()
                .map(|path| Reference::File(path).resolve(&base))
                .collect();
            let _ = tx.send(results);
        });
        // Before the fix, opening the FIFO waited for a writer forever.
        let results = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("no reference waits");
        let causes: Vec<_> = results[..3]
            .iter()
            .map(|r| r.clone().unwrap_err())
            .collect();
        assert!(causes[0].ends_with("(from 'file:fifo') is not a regular file but a FIFO"));
        assert!(causes[1].ends_with("(from 'file:folder') is not a regular file but a folder"));
        assert!(causes[2].ends_with("(from 'file:/dev/null') is not a regular file but a device"));
        assert_eq!(results[3].as_deref(), Ok("canary-linked-secret"));
    }

    #[test]
    fn missing_sources_name_the_reference_only() {
        let dir = tempfile::tempdir().unwrap();
        let cause = Reference::Env("POSTHANDLER_TEST_SURELY_UNSET")
            .resolve(dir.path())
            .unwrap_err();
        assert_eq!(
            cause,
            "environment variable 'POSTHANDLER_TEST_SURELY_UNSET' (from \
             'env:POSTHANDLER_TEST_SURELY_UNSET') is not set"
        );
        let cause = Reference::File("nope.txt").resolve(dir.path()).unwrap_err();
        assert!(
            cause.ends_with("(from 'file:nope.txt') cannot be read (not found)"),
            "{cause}"
        );
    }

    #[test]
    fn unresolvable_references_are_problems_at_their_place() {
        let mut entry = json!({"restPassword": "env:POSTHANDLER_TEST_SURELY_UNSET"});
        let mut problems = vec![];
        resolve_object(
            &mut entry,
            &secret_field(),
            "p[0]",
            Path::new("."),
            None,
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0]
            .to_string()
            .starts_with("error: p[0].restPassword: environment"));
        assert_eq!(entry["restPassword"], "env:POSTHANDLER_TEST_SURELY_UNSET");
    }

    fn systems_fields() -> Vec<FieldDescription> {
        let selector = FieldDescription {
            key: "limitToServertype".into(),
            label: "Limit to Servertype".into(),
            field_type: FieldType::Choice,
            server_type_selector: true,
            ..Default::default()
        };
        vec![FieldDescription {
            key: "destinationSystems".into(),
            label: "Destination Systems".into(),
            field_type: FieldType::List,
            item_fields: [vec![selector], secret_field()].concat(),
            ..Default::default()
        }]
    }

    fn two_systems() -> Value {
        json!({"destinationSystems": [
            {"limitToServertype": "test", "restPassword": "env:PATH"},
            {"limitToServertype": "prod", "restPassword": "env:POSTHANDLER_TEST_SURELY_UNSET"},
            {"limitToServertype": "dev", "restPassword": "env:"}
        ]})
    }

    #[test]
    fn only_the_systems_of_the_run_server_type_need_their_secrets() {
        let mut entry = two_systems();
        let mut problems = vec![];
        let test = Some(ServerType::Test);
        resolve_object(
            &mut entry,
            &systems_fields(),
            "p[0]",
            Path::new("."),
            test,
            &mut problems,
        );
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "warning: p[0].destinationSystems[1].restPassword: environment variable \
                 'POSTHANDLER_TEST_SURELY_UNSET' (from 'env:POSTHANDLER_TEST_SURELY_UNSET') is \
                 not set (needed only on server type 'prod')",
                "error: p[0].destinationSystems[2].restPassword: 'env:' names no environment variable",
            ]
        );
        let systems = &entry["destinationSystems"];
        assert_eq!(systems[0]["restPassword"], std::env::var("PATH").unwrap());
        assert_eq!(
            systems[1]["restPassword"],
            "env:POSTHANDLER_TEST_SURELY_UNSET"
        );
    }

    #[test]
    fn without_a_server_type_no_system_secret_is_resolved_and_missing_ones_warn() {
        let mut entry = two_systems();
        let mut problems = vec![];
        resolve_object(
            &mut entry,
            &systems_fields(),
            "p[0]",
            Path::new("."),
            None,
            &mut problems,
        );
        let severities: Vec<_> = problems
            .iter()
            .map(|p| (p.severity, p.place.clone()))
            .collect();
        assert_eq!(
            severities,
            [
                (
                    Severity::Warning,
                    "p[0].destinationSystems[1].restPassword".to_owned()
                ),
                (
                    Severity::Error,
                    "p[0].destinationSystems[2].restPassword".to_owned()
                ),
            ]
        );
        assert_eq!(entry, two_systems(), "references stay as written");
    }

    #[test]
    fn written_out_contexts_carry_references_not_values() {
        let original = json!({"postProcessorPlugins": [{"restPassword": "file:s.txt"}, {"restPassword": "env:X"}]});
        let configured = json!({"postProcessorPlugins": [{"restPassword": "canary-1"}, {"restPassword": "canary-2"}]});
        let output = json!({"postProcessorPlugins": [{"restPassword": "canary-1"}, {"restPassword": "env:new"}]});
        let restored =
            restore_references(&original, &configured, &output, &|_| Some(secret_field()));
        assert_eq!(
            restored,
            json!({"postProcessorPlugins": [{"restPassword": "file:s.txt"}, {"restPassword": "literal:env:new"}]})
        );
    }
}
