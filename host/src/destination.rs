//! Where a posthandler's values go.
//!
//! A destination field names either
//!
//! - a field of the export record, as a JSON Pointer (RFC 6901) such as
//!   `/auth/accessToken`; missing objects on the way are created; or
//! - a field of a *later* posthandler's configuration in the chain, by the
//!   suite's label form `<owner> | <field label>`, where the owner is a
//!   plugin name (`REST | Base URL`) or a numbered list item
//!   (`REST Destination System - 1 | Header Value`). The later posthandler
//!   then reads the value from its configuration in the same run. A plugin
//!   name means the one entry of that plugin after the writer; when the
//!   chain has several there, the entry is named by its place instead of
//!   its plugin name (`postProcessorPlugins[2] | Base URL`,
//!   `postProcessorPlugins[2] Destination System - 1 | Header Value`).
//!
//! A label that names the chain itself, or the settings of the writing
//! posthandler or of one before it, is refused: a posthandler may not
//! rewrite the configuration that already ran.

use crate::context::CHAIN_KEY;
use posthandler_abi::fields::{FieldDescription, FieldType};
use serde_json::Value;

/// The owner label of the chain itself.
pub const CHAIN_LABEL: &str = "PostProcessorPlugins";

/// A resolved destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A JSON Pointer into the export record.
    Record(String),
    /// A JSON Pointer into the export context.
    Context(String),
}

/// What [`resolve`] needs to know about the chain.
pub trait ChainFields {
    /// The context (for list lengths).
    fn context(&self) -> &Value;
    /// The plugin name of each chain entry.
    fn plugin_names(&self) -> &[String];
    /// The fields of the plugin named `name`, if it is loaded.
    fn fields_of(&self, name: &str) -> Option<&[FieldDescription]>;
}

/// Resolves `destination`, written by the posthandler at `writer`.
///
/// # Errors
///
/// A message saying why the destination is not usable, without the place
/// (the caller knows which field held it).
pub fn resolve(
    destination: &str,
    writer: usize,
    chain: &dyn ChainFields,
) -> Result<Target, String> {
    if destination.starts_with('/') {
        parse_pointer(destination)?;
        return Ok(Target::Record(destination.to_owned()));
    }
    let Some((owner, label)) = destination.split_once(" | ") else {
        return Err(format!(
            "'{}' is neither a JSON Pointer (starting with /) nor a field label ('<posthandler> | <field>')",
            destination.escape_debug()
        ));
    };
    let (owner, label) = (owner.trim(), label.trim());
    if owner == CHAIN_LABEL {
        return Err("the chain itself (PostProcessorPlugins) cannot be a destination".into());
    }
    let names = chain.plugin_names();
    let not_later = |index: usize, name: &str| {
        format!(
            "'{}' is a setting of postProcessorPlugins[{index}] ('{name}'), which is not later in the chain than the posthandler writing it",
            destination.escape_debug()
        )
    };
    if let Some(place) = entry_owner(owner) {
        let (index, place) = place?;
        let Some((name, fields)) = names
            .get(index)
            .and_then(|name| Some((name, chain.fields_of(name)?)))
        else {
            return Err(format!(
                "'{}': the chain has no loaded posthandler at postProcessorPlugins[{index}]",
                destination.escape_debug()
            ));
        };
        return match field_pointer(chain.context(), index, place, fields, owner, label)? {
            Some(_) if index <= writer => Err(not_later(index, name)),
            Some(pointer) => Ok(Target::Context(pointer)),
            None => Err(format!(
                "'{}' names no field of postProcessorPlugins[{index}] ('{name}')",
                destination.escape_debug()
            )),
        };
    }
    // Every entry of the plugin that owns such a field is a candidate, also
    // one where the field cannot take the value (too few items): which
    // entry is meant must not depend on how many items each has now.
    let mut earlier = None;
    let mut later: Vec<(usize, Result<String, String>)> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(fields) = chain.fields_of(name) else {
            continue;
        };
        let Some(found) =
            field_pointer(chain.context(), index, name, fields, owner, label).transpose()
        else {
            continue;
        };
        match index <= writer {
            true => earlier = earlier.or(Some((index, name))),
            false => later.push((index, found)),
        }
    }
    match (later.as_slice(), earlier) {
        ([(_, found)], _) => found.clone().map(Target::Context),
        ([], Some((index, name))) => Err(not_later(index, name)),
        ([], None) => Err(format!(
            "'{}' names no field of a posthandler in this chain",
            destination.escape_debug()
        )),
        ([(first, _), ..], _) => {
            let places: Vec<String> = later
                .iter()
                .map(|(index, _)| format!("postProcessorPlugins[{index}]"))
                .collect();
            // The owner matched the plugin name there, so that name is a
            // prefix of it: the rest is the list item, if any.
            let rest = owner.get(names[*first].len()..).unwrap_or("");
            Err(format!(
                "'{}' could be a field of {}: name the entry by its place, such as \
                 'postProcessorPlugins[{first}]{rest} | {label}'",
                destination.escape_debug(),
                places.join(" or ")
            ))
        }
    }
}

/// The entry an owner names by its place (`postProcessorPlugins[2]`,
/// `postProcessorPlugins[2] Destination System - 1`; the suite's
/// `PostProcessorPlugins` spelling too): its index, and the place as the
/// owner spells it, which stands for the plugin name there. `None` when
/// the owner does not start with a place; an error when it starts like one
/// but the number is not an index.
fn entry_owner(owner: &str) -> Option<Result<(usize, &str), String>> {
    let rest = owner
        .strip_prefix(CHAIN_KEY)
        .or_else(|| owner.strip_prefix(CHAIN_LABEL))?
        .strip_prefix('[')?;
    let Some((number, _)) = rest.split_once(']') else {
        return Some(Err(format!("'{owner}': the place lacks its closing ']'")));
    };
    let index = Some(number)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok());
    let Some(index) = index else {
        return Some(Err(format!(
            "'{owner}': '{number}' is not a place in the chain (0 for the first entry, 1 for \
             the second, ...)"
        )));
    };
    let place_len = owner.len() - rest.len() + number.len() + 1;
    Some(Ok((index, &owner[..place_len])))
}

/// The pointer to the field `owner | label` of the entry at `index`, if the
/// entry owns such a field.
fn field_pointer(
    context: &Value,
    index: usize,
    name: &str,
    fields: &[FieldDescription],
    owner: &str,
    label: &str,
) -> Result<Option<String>, String> {
    let entry = format!("/{CHAIN_KEY}/{index}");
    if owner == name {
        let Some(field) = fields.iter().find(|f| f.label == label) else {
            return Ok(None);
        };
        writable(field, owner, label)?;
        return Ok(Some(format!("{entry}/{}", escape(&field.key))));
    }
    let Some(item) = owner
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return Ok(None);
    };
    let Some((item_label, number)) = item.rsplit_once(" - ") else {
        return Ok(None);
    };
    let Some(list) = fields
        .iter()
        .find(|f| f.field_type == FieldType::List && f.item_label.as_deref() == Some(item_label))
    else {
        return Ok(None);
    };
    let Some(field) = list.item_fields.iter().find(|f| f.label == label) else {
        return Ok(None);
    };
    writable(field, owner, label)?;
    let number: usize = number
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("'{owner}': the item number is a whole number from 1"))?;
    let items = context
        .pointer(&format!("{entry}/{}", escape(&list.key)))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if number > items {
        return Err(format!(
            "'{owner} | {label}': postProcessorPlugins[{index}] has {items} {item_label} item(s)"
        ));
    }
    Ok(Some(format!(
        "{entry}/{}/{}/{}",
        escape(&list.key),
        number - 1,
        escape(&field.key)
    )))
}

/// Whether writing to `a` and to `b` would collide, and how: `Equal` for
/// the same field, `Greater` when `a` lies inside `b` (`/auth/expires` in
/// `/auth`), `Less` when `a` holds `b`; `None` when they are apart. A
/// write to one of two nested places replaces the other or finds a string
/// where it needs an object.
pub fn nesting(a: &Target, b: &Target) -> Option<std::cmp::Ordering> {
    let (a, b) = match (a, b) {
        (Target::Record(a), Target::Record(b)) | (Target::Context(a), Target::Context(b)) => (a, b),
        _ => return None,
    };
    let (Ok(a), Ok(b)) = (parse_pointer(a), parse_pointer(b)) else {
        return None;
    };
    (a.starts_with(&b) || b.starts_with(&a)).then(|| a.len().cmp(&b.len()))
}

/// Splits an RFC 6901 pointer into its unescaped tokens.
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "'{}' is not a JSON Pointer",
            pointer.escape_debug()
        ));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(format!(
                                "'{}': '~' must be followed by 0 or 1 (RFC 6901)",
                                pointer.escape_debug()
                            ))
                        }
                    },
                    (c, false) => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// Whether a value may be written into `field`: not a whole list, not a
/// choice among fixed values (a token is none of them, and a later
/// posthandler's server type limit is not a posthandler's to change), and
/// not another destination field (which would move where a later
/// posthandler writes).
fn writable(field: &FieldDescription, owner: &str, label: &str) -> Result<(), String> {
    let what = match field.field_type {
        FieldType::List => "a list of settings",
        FieldType::Choice => "a choice among fixed values",
        FieldType::DestinationField => "where that posthandler writes its own values",
        _ => return Ok(()),
    };
    Err(format!(
        "'{owner} | {label}' is {what}, not a field a value can be written to"
    ))
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Writes `value` at `pointer` in `doc`, creating missing objects on the
/// way; `None` removes the field.
///
/// # Errors
///
/// The pointer is malformed, or passes through a value that is not an
/// object or array. `doc` may then hold objects created on the way, so
/// callers apply writes to a copy they drop on error.
pub fn apply(doc: &mut Value, pointer: &str, value: Option<Value>) -> Result<(), String> {
    apply_tokens(doc, pointer, &parse_pointer(pointer)?, value)
}

/// A destination resolved once, its pointer already split into reference
/// tokens, for a chain that writes to it on every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    target: Target,
    tokens: Vec<String>,
}

impl Prepared {
    /// Prepares `target`.
    ///
    /// # Errors
    ///
    /// Its pointer is malformed.
    pub fn new(target: Target) -> Result<Prepared, String> {
        let tokens = parse_pointer(target.pointer())?;
        Ok(Prepared { target, tokens })
    }

    /// Where the values go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// [`apply`] at this destination's pointer in `doc`, which is the
    /// record or the context as [`Prepared::target`] says.
    ///
    /// # Errors
    ///
    /// As [`apply`].
    pub fn apply(&self, doc: &mut Value, value: Option<Value>) -> Result<(), String> {
        apply_tokens(doc, self.target.pointer(), &self.tokens, value)
    }
}

impl Target {
    /// The JSON Pointer, into the record or the context.
    pub fn pointer(&self) -> &str {
        match self {
            Target::Record(pointer) | Target::Context(pointer) => pointer,
        }
    }
}

/// [`apply`] with the pointer's reference tokens already parsed; `pointer`
/// is only for the messages.
fn apply_tokens(
    doc: &mut Value,
    pointer: &str,
    tokens: &[String],
    value: Option<Value>,
) -> Result<(), String> {
    let (last, parents) = tokens.split_last().expect("a pointer has a token");
    let mut here = doc;
    for (depth, token) in parents.iter().enumerate() {
        here = match here {
            Value::Object(map) => {
                if !map.contains_key(token) {
                    if value.is_none() {
                        return Ok(());
                    }
                    map.insert(token.clone(), Value::Object(Default::default()));
                }
                map.get_mut(token).expect("the key is there")
            }
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(item) => item,
                None if value.is_none() => return Ok(()),
                None => return Err(no_such_item(pointer, depth, token)),
            },
            _ => return Err(not_a_container(pointer, depth)),
        };
    }
    match (here, value) {
        (Value::Object(map), Some(value)) => match map.get_mut(last) {
            Some(slot) => *slot = value,
            None => {
                map.insert(last.clone(), value);
            }
        },
        (Value::Object(map), None) => {
            // Not `remove`, which moves the last field into the gap.
            map.shift_remove(last);
        }
        (Value::Array(items), Some(value)) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => items[i] = value,
            _ if last == "-" => items.push(value),
            _ => return Err(no_such_item(pointer, parents.len(), last)),
        },
        (Value::Array(items), None) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        (Value::Null, None) => {}
        _ => return Err(not_a_container(pointer, parents.len())),
    }
    Ok(())
}

fn prefix(pointer: &str, depth: usize) -> &str {
    let end = pointer
        .match_indices('/')
        .nth(depth)
        .map_or(pointer.len(), |(i, _)| i);
    &pointer[..end]
}

fn not_a_container(pointer: &str, depth: usize) -> String {
    format!(
        "'{}': '{}' is not an object, so no field can be created in it",
        pointer.escape_debug(),
        prefix(pointer, depth).escape_debug()
    )
}

fn no_such_item(pointer: &str, depth: usize, token: &str) -> String {
    format!(
        "'{}': '{}' is a list without an item '{}'",
        pointer.escape_debug(),
        prefix(pointer, depth).escape_debug(),
        token.escape_debug()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn destinations_nest_when_equal_or_one_holds_the_other() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let record = |p: &str| Target::Record(p.into());
        assert_eq!(nesting(&record("/auth"), &record("/auth")), Some(Equal));
        assert_eq!(
            nesting(&record("/auth"), &record("/auth/expires")),
            Some(Less)
        );
        assert_eq!(
            nesting(&record("/auth/expires"), &record("/auth")),
            Some(Greater)
        );
        // Tokens, not text: '/auth' does not hold '/authority'.
        assert_eq!(nesting(&record("/auth"), &record("/authority")), None);
        assert_eq!(nesting(&record("/a~1b"), &record("/a/b")), None);
        assert_eq!(
            nesting(&record("/auth/token"), &record("/auth/expires")),
            None
        );
        // A record field and a context field never collide.
        assert_eq!(
            nesting(&record("/auth"), &Target::Context("/auth".into())),
            None
        );
    }

    struct Chain {
        context: Value,
        names: Vec<String>,
        rest: Vec<FieldDescription>,
        oauth: Vec<FieldDescription>,
    }

    impl ChainFields for Chain {
        fn context(&self) -> &Value {
            &self.context
        }
        fn plugin_names(&self) -> &[String] {
            &self.names
        }
        fn fields_of(&self, name: &str) -> Option<&[FieldDescription]> {
            match name {
                "REST" => Some(&self.rest),
                "OAuth 2.0" => Some(&self.oauth),
                _ => None,
            }
        }
    }

    fn field(key: &str, label: &str, field_type: FieldType) -> FieldDescription {
        FieldDescription {
            key: key.into(),
            label: label.into(),
            field_type,
            required: false,
            allowed_values: vec![],
            item_label: None,
            item_fields: vec![],
            ..Default::default()
        }
    }

    fn list(key: &str, label: &str, item: &str, fields: Vec<FieldDescription>) -> FieldDescription {
        FieldDescription {
            item_label: Some(item.into()),
            item_fields: fields,
            ..field(key, label, FieldType::List)
        }
    }

    fn chain() -> Chain {
        Chain {
            context: json!({"postProcessorPlugins": [
                {"plugin": "OAuth 2.0", "destinationSystems": [{"restUrl": "x"}]},
                {"plugin": "REST", "destinationSystems": [{"baseUrl": "y"}]}
            ]}),
            names: vec!["OAuth 2.0".into(), "REST".into()],
            oauth: vec![list(
                "destinationSystems",
                "Destination Systems",
                "Destination System",
                vec![field("restUrl", "Rest URL", FieldType::Url)],
            )],
            rest: vec![
                field("timeout", "Timeout", FieldType::Text),
                list(
                    "destinationSystems",
                    "Destination Systems",
                    "Destination System",
                    vec![field("headerValue", "Header Value", FieldType::Text)],
                ),
            ],
        }
    }

    #[test]
    fn pointers_name_record_fields() {
        assert_eq!(
            resolve("/auth/accessToken", 0, &chain()).unwrap(),
            Target::Record("/auth/accessToken".into())
        );
        assert!(resolve("/a~2b", 0, &chain())
            .unwrap_err()
            .contains("RFC 6901"));
    }

    #[test]
    fn labels_name_later_posthandlers_fields() {
        let c = chain();
        assert_eq!(
            resolve("REST Destination System - 1 | Header Value", 0, &c).unwrap(),
            Target::Context("/postProcessorPlugins/1/destinationSystems/0/headerValue".into())
        );
        assert_eq!(
            resolve("REST | Timeout", 0, &c).unwrap(),
            Target::Context("/postProcessorPlugins/1/timeout".into())
        );
    }

    /// REST, OAuth 2.0, REST, REST: the plugin twice after the writer.
    fn chain_with_rest_three_times() -> Chain {
        let mut c = chain();
        let rest = json!({"plugin": "REST", "destinationSystems": [{"baseUrl": "y"}]});
        c.context = json!({"postProcessorPlugins": [
            rest.clone(),
            {"plugin": "OAuth 2.0", "destinationSystems": [{"restUrl": "x"}]},
            rest.clone(),
            rest
        ]});
        c.names = vec![
            "REST".into(),
            "OAuth 2.0".into(),
            "REST".into(),
            "REST".into(),
        ];
        c
    }

    #[test]
    fn a_plugin_name_means_its_one_entry_after_the_writer() {
        let c = chain_with_rest_three_times();
        // Regression: the entry before the writer was taken, and refused.
        assert_eq!(
            resolve("REST | Timeout", 2, &c).unwrap(),
            Target::Context("/postProcessorPlugins/3/timeout".into())
        );
        let ambiguous = resolve("REST Destination System - 1 | Header Value", 1, &c).unwrap_err();
        assert_eq!(
            ambiguous,
            "'REST Destination System - 1 | Header Value' could be a field of \
             postProcessorPlugins[2] or postProcessorPlugins[3]: name the entry by its place, \
             such as 'postProcessorPlugins[2] Destination System - 1 | Header Value'"
        );
        let before = resolve("REST | Timeout", 3, &c).unwrap_err();
        assert!(
            before.contains("postProcessorPlugins[0] ('REST'), which is not later"),
            "{before}"
        );
    }

    #[test]
    fn which_entry_is_meant_does_not_depend_on_item_counts() {
        // Regression: an entry with too few items, even the writer itself,
        // stopped the search with its own "has 1 item" error.
        let mut c = chain();
        c.context = json!({"postProcessorPlugins": [
            {"plugin": "OAuth 2.0", "destinationSystems": [{"restUrl": "x"}]},
            {"plugin": "OAuth 2.0", "destinationSystems": [{"restUrl": "x"}, {"restUrl": "y"}]}
        ]});
        c.names = vec!["OAuth 2.0".into(), "OAuth 2.0".into()];
        assert_eq!(
            resolve("OAuth 2.0 Destination System - 2 | Rest URL", 0, &c).unwrap(),
            Target::Context("/postProcessorPlugins/1/destinationSystems/1/restUrl".into())
        );
        // The one later entry with too few items says so itself.
        let few = resolve("OAuth 2.0 Destination System - 3 | Rest URL", 0, &c).unwrap_err();
        assert!(
            few.contains("postProcessorPlugins[1] has 2 Destination System item(s)"),
            "{few}"
        );

        // Two later entries are ambiguous whatever their item counts.
        c.context["postProcessorPlugins"]
            .as_array_mut()
            .unwrap()
            .push(json!({"plugin": "OAuth 2.0", "destinationSystems": [{"restUrl": "z"}]}));
        c.names.push("OAuth 2.0".into());
        let ambiguous = resolve("OAuth 2.0 Destination System - 2 | Rest URL", 0, &c).unwrap_err();
        assert!(
            ambiguous.contains("postProcessorPlugins[1] or postProcessorPlugins[2]"),
            "{ambiguous}"
        );
    }

    #[test]
    fn choices_and_destination_fields_are_not_destinations() {
        let mut c = chain();
        c.rest.push(FieldDescription {
            allowed_values: vec!["test".into(), "prod".into()],
            ..field(
                "limitToServertype",
                "Limit to Servertype",
                FieldType::Choice,
            )
        });
        c.rest.push(field(
            "destinationFieldForToken",
            "Destination Field for Token",
            FieldType::DestinationField,
        ));
        let choice = resolve("REST | Limit to Servertype", 0, &c).unwrap_err();
        assert!(
            choice.contains("is a choice among fixed values"),
            "{choice}"
        );
        let redirect = resolve("REST | Destination Field for Token", 0, &c).unwrap_err();
        assert!(
            redirect.contains("where that posthandler writes"),
            "{redirect}"
        );
    }

    #[test]
    fn a_place_that_is_not_an_index_says_so() {
        let c = chain();
        for place in ["99999999999999999999999", "-1", "one", ""] {
            let err =
                resolve(&format!("postProcessorPlugins[{place}] | Timeout"), 0, &c).unwrap_err();
            assert!(
                err.contains(&format!("'{place}' is not a place in the chain")),
                "{err}"
            );
        }
        let open = resolve("postProcessorPlugins[1 | Timeout", 0, &c).unwrap_err();
        assert!(open.contains("lacks its closing ']'"), "{open}");
        let item = resolve("REST Destination System - x | Header Value", 0, &c).unwrap_err();
        assert!(
            item.contains("the item number is a whole number from 1"),
            "{item}"
        );
    }

    #[test]
    fn an_entry_named_by_its_place() {
        let c = chain_with_rest_three_times();
        assert_eq!(
            resolve("postProcessorPlugins[3] | Timeout", 1, &c).unwrap(),
            Target::Context("/postProcessorPlugins/3/timeout".into())
        );
        assert_eq!(
            resolve(
                "PostProcessorPlugins[2] Destination System - 1 | Header Value",
                1,
                &c
            )
            .unwrap(),
            Target::Context("/postProcessorPlugins/2/destinationSystems/0/headerValue".into())
        );
        let earlier = resolve("postProcessorPlugins[0] | Timeout", 1, &c).unwrap_err();
        assert!(earlier.contains("not later"), "{earlier}");
        let none = resolve("postProcessorPlugins[9] | Timeout", 1, &c).unwrap_err();
        assert!(
            none.contains("no loaded posthandler at postProcessorPlugins[9]"),
            "{none}"
        );
        let unknown = resolve("postProcessorPlugins[2] | Colour", 1, &c).unwrap_err();
        assert_eq!(
            unknown,
            "'postProcessorPlugins[2] | Colour' names no field of postProcessorPlugins[2] ('REST')"
        );
        assert!(resolve("postProcessorPlugins[x] | Timeout", 1, &c).is_err());
    }

    #[test]
    fn refuses_own_settings_the_chain_and_unknown_fields() {
        let c = chain();
        let own = resolve("OAuth 2.0 Destination System - 1 | Rest URL", 0, &c).unwrap_err();
        assert!(own.contains("not later in the chain"), "{own}");
        let chain_itself =
            resolve("PostProcessorPlugins | PostProcessorPlugins", 0, &c).unwrap_err();
        assert!(chain_itself.contains("chain itself"), "{chain_itself}");
        let whole_list = resolve("REST | Destination Systems", 0, &c).unwrap_err();
        assert!(whole_list.contains("list of settings"), "{whole_list}");
        let missing_item =
            resolve("REST Destination System - 2 | Header Value", 0, &c).unwrap_err();
        assert!(
            missing_item.contains("has 1 Destination System item"),
            "{missing_item}"
        );
        let unknown = resolve("REST | Colour", 0, &c).unwrap_err();
        assert!(unknown.contains("names no field"), "{unknown}");
        let neither = resolve("auth.token", 0, &c).unwrap_err();
        assert!(neither.contains("neither a JSON Pointer"), "{neither}");
    }

    #[test]
    fn apply_creates_missing_objects_and_removes() {
        let mut doc = json!({"id": 1});
        apply(&mut doc, "/auth/accessToken", Some(json!("t"))).unwrap();
        apply(&mut doc, "/auth/refreshToken", Some(json!("r"))).unwrap();
        assert_eq!(
            doc,
            json!({"id": 1, "auth": {"accessToken": "t", "refreshToken": "r"}})
        );
        apply(&mut doc, "/auth/refreshToken", None).unwrap();
        apply(&mut doc, "/nothing/here", None).unwrap();
        assert_eq!(doc, json!({"id": 1, "auth": {"accessToken": "t"}}));
        apply(&mut doc, "/a~1b/c~0d", Some(json!(2))).unwrap();
        assert_eq!(doc["a/b"]["c~d"], json!(2));
    }

    #[test]
    fn removing_a_field_keeps_the_order_of_the_others() {
        let mut doc: Value =
            serde_json::from_str(r#"{"auth": {"a": 1, "refreshToken": "r", "b": 2, "c": 3}}"#)
                .unwrap();
        apply(&mut doc, "/auth/refreshToken", None).unwrap();
        assert_eq!(doc.to_string(), r#"{"auth":{"a":1,"b":2,"c":3}}"#);
    }

    #[test]
    fn a_prepared_destination_writes_as_apply_does() {
        let prepared = Prepared::new(Target::Record("/auth/a~1b".into())).unwrap();
        let (mut by_prepared, mut by_apply) = (json!({"id": 1}), json!({"id": 1}));
        for value in [Some(json!("t")), Some(json!("u")), None] {
            prepared.apply(&mut by_prepared, value.clone()).unwrap();
            apply(&mut by_apply, "/auth/a~1b", value).unwrap();
            assert_eq!(by_prepared, by_apply);
        }
        assert_eq!(by_prepared, json!({"id": 1, "auth": {}}));
        assert!(Prepared::new(Target::Record("/bad~2".into())).is_err());
    }

    #[test]
    fn apply_refuses_to_write_through_a_scalar() {
        let mut doc = json!({"id": 1, "list": [1]});
        let err = apply(&mut doc, "/id/token", Some(json!("t"))).unwrap_err();
        assert_eq!(
            err,
            "'/id/token': '/id' is not an object, so no field can be created in it"
        );
        let err = apply(&mut doc, "/list/5/x", Some(json!("t"))).unwrap_err();
        assert!(
            err.contains("'/list' is a list without an item '5'"),
            "{err}"
        );
    }
}
