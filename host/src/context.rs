//! The export context file: its name and its chain of posthandlers.
//!
//! The host reads only what it needs to run the chain (`name` and each
//! entry's `plugin`); every other key belongs to the plugin that handles the
//! entry and is checked there.

use crate::Error;
use serde_json::Value;
use std::path::Path;

/// The largest context file read; a larger one (or an endless one such as
/// a device) is an error, not a host that eats its memory.
pub const MAX_CONTEXT_BYTES: u64 = 16 << 20;

/// Reads a file of at most `limit` bytes.
///
/// # Errors
///
/// The file cannot be read, or is longer than `limit` (`InvalidData`,
/// saying so); an endless file (a device) is read no further than that.
pub fn read_capped_bytes(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // A regular file says its length: one too long is refused unread.
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > limit {
        return Err(too_long(limit));
    }
    read_capped_from(file, limit)
}

fn too_long(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("longer than {limit} bytes"),
    )
}

/// [`read_capped_bytes`] from any reader, such as standard input.
///
/// # Errors
///
/// As [`read_capped_bytes`].
pub fn read_capped_from(reader: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    reader.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_long(limit));
    }
    Ok(data)
}

/// What a path that is not a regular file is, for an error message.
pub fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "neither a file nor a folder"
    }
}

/// [`read_capped_bytes`] for a text file, without a leading byte order
/// mark (see [`without_bom`]).
///
/// # Errors
///
/// As [`read_capped_bytes`], and `InvalidData` when the file is not UTF-8.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped_bytes(path, limit)?)
        .map(without_bom)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// `text` without the UTF-8 byte order mark that some Windows editors put
/// at the start of a file; JSON does not allow it (RFC 8259 section 8.1),
/// and an exported file saved that way is still meant as JSON.
pub fn without_bom(text: String) -> String {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

/// The places (`postProcessorPlugins[0].destinationSystems[0].restUrl`)
/// of every key that an object of the JSON `text` gives more than once,
/// in the order they come; empty also when `text` is not JSON.
///
/// serde_json keeps the last value of such a key without a word, so a
/// context with `restUrl` twice would send the secret to whichever came
/// last: such a context is refused instead.
pub fn duplicate_keys(text: &str) -> Vec<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    use std::collections::HashSet;

    struct Walk<'a> {
        place: String,
        found: &'a RefCell<Vec<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let place = match self.place.is_empty() {
                    true => key.clone(),
                    false => format!("{}.{key}", self.place),
                };
                if !seen.insert(key) {
                    self.found.borrow_mut().push(place.clone());
                }
                map.next_value_seed(Walk {
                    place,
                    found: self.found,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut index = 0;
            while seq
                .next_element_seed(Walk {
                    place: format!("{}[{index}]", self.place),
                    found: self.found,
                })?
                .is_some()
            {
                index += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let walk = Walk {
        place: String::new(),
        found: &found,
    };
    match walk.deserialize(&mut serde_json::Deserializer::from_str(text)) {
        Ok(()) => found.into_inner(),
        Err(_) => Vec::new(),
    }
}

/// The text of the context file at `path` ([`read_capped`] to
/// [`MAX_CONTEXT_BYTES`]); `action` names the read in the error, such as
/// `reading the context`.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read, is too long or not UTF-8.
pub fn read_file(path: &Path, action: &'static str) -> Result<String, Error> {
    read_capped(path, MAX_CONTEXT_BYTES).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    })
}

/// The key of the chain in a context.
pub const CHAIN_KEY: &str = "postProcessorPlugins";

/// A parsed export context.
#[derive(Debug, Clone)]
pub struct Context {
    /// The context's `name`, for logs (empty when it has none).
    pub name: String,
    /// The whole context.
    pub value: Value,
    /// `value` as JSON text, made once.
    pub json: String,
    /// The plugin name of each chain entry, in order.
    pub plugins: Vec<String>,
}

impl Context {
    /// Reads and parses a context file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = read_file(path, "reading the context")?;
        Self::parse(&text).map_err(|err| match err {
            Error::Context { place, cause } => Error::Context {
                place: format!("{}: {place}", path.display()),
                cause,
            },
            other => other,
        })
    }

    /// Parses context JSON text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| Error::context("context", format!("not valid JSON ({err})")))?;
        let Value::Object(top) = &value else {
            return Err(Error::context("context", "must be a JSON object"));
        };
        let name = match top.get("name") {
            None => String::new(),
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(Error::context("name", "must be a string")),
        };
        let chain = match top.get(CHAIN_KEY) {
            Some(Value::Array(chain)) => chain,
            Some(_) => return Err(Error::context(CHAIN_KEY, "must be a list")),
            None => return Err(Error::context(CHAIN_KEY, "missing")),
        };
        let plugins = chain
            .iter()
            .enumerate()
            .map(|(i, entry)| match entry.get("plugin") {
                Some(Value::String(p)) if !p.trim().is_empty() => Ok(p.clone()),
                Some(_) => Err(Error::context(
                    format!("{CHAIN_KEY}[{i}].plugin"),
                    "must be a plugin name",
                )),
                None if !entry.is_object() => Err(Error::context(
                    format!("{CHAIN_KEY}[{i}]"),
                    "must be a JSON object",
                )),
                None => Err(Error::context(
                    format!("{CHAIN_KEY}[{i}].plugin"),
                    "missing",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let json = value.to_string();
        Ok(Context {
            name,
            value,
            json,
            plugins,
        })
    }

    /// The chain entry at `index`.
    pub fn entry(&self, index: usize) -> Option<&Value> {
        self.value.get(CHAIN_KEY)?.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_and_chain() {
        let ctx = Context::parse(
            r#"{"name":"Products","postProcessorPlugins":[{"plugin":"OAuth 2.0"},{"plugin":"REST"}]}"#,
        )
        .unwrap();
        assert_eq!(ctx.name, "Products");
        assert_eq!(ctx.plugins, ["OAuth 2.0", "REST"]);
    }

    #[test]
    fn an_endless_or_huge_context_file_is_refused_without_reading_it_all() {
        let err = Context::load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.to_string(), "/dev/zero: reading the context failed");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(cause, "longer than 16777216 bytes");
    }

    #[test]
    fn a_context_file_saved_with_a_byte_order_mark_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.json");
        std::fs::write(
            &path,
            "\u{feff}{\"name\":\"Products\",\"postProcessorPlugins\":[]}",
        )
        .unwrap();
        assert_eq!(Context::load(&path).unwrap().name, "Products");
        assert_eq!(without_bom("\u{feff}\u{feff}x".into()), "\u{feff}x");
        assert_eq!(without_bom("x\u{feff}".into()), "x\u{feff}");
    }

    #[test]
    fn keys_given_twice_are_found_with_their_places() {
        let text = r#"{"name": "a", "postProcessorPlugins": [{"plugin": "OAuth 2.0",
            "destinationSystems": [{"restUrl": "https://a/t"}, {"restUrl": "https://b/t",
            "scope": "s", "restUrl": "http://127.0.0.1/t"}]}], "name": "b"}"#;
        assert_eq!(
            duplicate_keys(text),
            [
                "postProcessorPlugins[0].destinationSystems[1].restUrl",
                "name"
            ]
        );
        assert!(duplicate_keys(r#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
        assert!(duplicate_keys("not json").is_empty());
    }

    #[test]
    fn errors_name_the_place() {
        let err = |text| Context::parse(text).unwrap_err().to_string();
        assert_eq!(err("[]"), "context: must be a JSON object");
        assert_eq!(err("{}"), "postProcessorPlugins: missing");
        assert_eq!(
            err(r#"{"postProcessorPlugins":[{"plugin":"A"},{}]}"#),
            "postProcessorPlugins[1].plugin: missing"
        );
        assert_eq!(
            err(r#"{"postProcessorPlugins":[{"plugin":3}]}"#),
            "postProcessorPlugins[0].plugin: must be a plugin name"
        );
        assert!(err("{").starts_with("context: not valid JSON"));
    }
}
