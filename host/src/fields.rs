//! The listing of `posthandler-host fields`: every field a destination field
//! may name, the way the suite's "Destination Field" choice lists them.
//!
//! The list is built from the field descriptions the chain's plugins report,
//! never from a list kept here: `PostProcessorPlugins | PostProcessorPlugins`
//! (the chain itself), then for each chain entry `<plugin> | <label>` for
//! each of its fields, and `<plugin> <item label> - <n> | <label>` for each
//! field of each item its list fields hold in this context. For every
//! choice, the text to put into a destination field is checked with
//! [`destination::resolve`], so the listing says exactly what `run` takes.
//! A plugin that is in the chain more than once is listed under each of its
//! places, and its texts name the place (`postProcessorPlugins[2] | ...`),
//! since its name alone would not say which entry.

use crate::context::{Context, CHAIN_KEY};
use crate::destination::{self, ChainFields, CHAIN_LABEL};
use posthandler_abi::fields::FieldType;
use serde::Serialize;
use serde_json::Value;

/// One entry of the suite's choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    /// The entry as the suite lists it.
    pub choice: String,
    /// The chain entry that owns the field (`None` for the chain itself).
    pub owner: Option<usize>,
    /// The text to put into a destination field, or `None` when no
    /// posthandler of this chain may write there.
    pub text: Option<String>,
    /// The chain entries whose destination fields may name it.
    pub writable_by: Vec<usize>,
    /// Why no posthandler may write there, when `text` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub use crate::chain::Loaded;

/// The suite's choice for `context`, whose plugins' fields `chain` knows.
pub fn list(context: &Context, chain: &dyn ChainFields) -> Vec<Choice> {
    let mut choices = vec![Choice {
        choice: format!("{CHAIN_LABEL} | {CHAIN_LABEL}"),
        owner: None,
        text: None,
        writable_by: vec![],
        note: Some("the chain itself cannot be a destination".into()),
    }];
    for (index, name) in context.plugins.iter().enumerate() {
        let Some(fields) = chain.fields_of(name) else {
            continue;
        };
        let owner = match context.plugins.iter().filter(|n| *n == name).count() {
            1 => name.clone(),
            _ => format!("{CHAIN_KEY}[{index}]"),
        };
        let entry = context.entry(index);
        for field in fields {
            choices.push(choice(
                format!("{name} | {}", field.label),
                format!("{owner} | {}", field.label),
                index,
                chain,
            ));
            if field.field_type != FieldType::List {
                continue;
            }
            let items = entry
                .and_then(|e| e.get(&field.key))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let item_label = field.item_label.as_deref().unwrap_or(&field.label);
            for number in 1..=items {
                for item_field in &field.item_fields {
                    let item = |owner: &str| {
                        format!("{owner} {item_label} - {number} | {}", item_field.label)
                    };
                    choices.push(choice(item(name), item(&owner), index, chain));
                }
            }
        }
    }
    choices
}

/// The choice `shown` of entry `owner`, named by `text` in a destination
/// field, with the writers that may name it.
///
/// `text` names entry `owner` alone, so it resolves alike for every writer
/// before it; the last of them is asked.
fn choice(shown: String, text: String, owner: usize, chain: &dyn ChainFields) -> Choice {
    let resolved = match owner.checked_sub(1) {
        Some(writer) => destination::resolve(&text, writer, chain).map(|_| ()),
        None => Err(format!(
            "no posthandler comes before postProcessorPlugins[{owner}]"
        )),
    };
    let (writable_by, note) = match resolved {
        Ok(()) => ((0..owner).collect(), None),
        Err(cause) => (Vec::new(), Some(cause)),
    };
    Choice {
        text: (!writable_by.is_empty()).then_some(text),
        choice: shown,
        owner: Some(owner),
        writable_by,
        note,
    }
}

/// The listing as aligned text columns, one choice a line.
pub fn render(choices: &[Choice]) -> String {
    let width = choices
        .iter()
        .map(|c| c.choice.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<width$}  WRITABLE BY         TEXT FOR THE CONFIGURATION\n",
        "CHOICE"
    );
    for c in choices {
        let writers = match c.writable_by.as_slice() {
            [] => "-".to_owned(),
            list => list
                .iter()
                .map(|i| format!("[{i}]"))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let text = match (&c.text, &c.note) {
            (Some(text), _) => serde_json::to_string(text).unwrap_or_default(),
            (None, Some(note)) => format!("- ({note})"),
            (None, None) => "-".into(),
        };
        out.push_str(&format!("{:<width$}  {writers:<18}  {text}\n", c.choice));
    }
    out.push_str(
        "\nA destination field may also name a field of the export record by a JSON Pointer, \
         such as \"/auth/accessToken\".\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthandler_abi::fields::FieldDescription;

    struct Two(Context, Vec<FieldDescription>, Vec<FieldDescription>);

    impl ChainFields for Two {
        fn context(&self) -> &Value {
            &self.0.value
        }
        fn plugin_names(&self) -> &[String] {
            &self.0.plugins
        }
        fn fields_of(&self, name: &str) -> Option<&[FieldDescription]> {
            match name {
                "OAuth 2.0" => Some(&self.1),
                "REST" => Some(&self.2),
                _ => None,
            }
        }
    }

    fn text(key: &str, label: &str) -> FieldDescription {
        FieldDescription {
            key: key.into(),
            label: label.into(),
            ..Default::default()
        }
    }

    fn list_of(fields: Vec<FieldDescription>) -> FieldDescription {
        FieldDescription {
            field_type: FieldType::List,
            item_label: Some("Destination System".into()),
            item_fields: fields,
            ..text("destinationSystems", "Destination Systems")
        }
    }

    #[test]
    fn lists_the_chain_each_plugin_and_each_item_with_its_writers() {
        let context = Context::parse(
            r#"{"postProcessorPlugins":[
                {"plugin":"OAuth 2.0","destinationSystems":[{},{}]},
                {"plugin":"REST","destinationSystems":[{}]}]}"#,
        )
        .unwrap();
        let chain = Two(
            context.clone(),
            vec![list_of(vec![text("restUrl", "Rest URL")])],
            vec![
                text("baseUrl", "Base URL"),
                list_of(vec![text("headerValue", "Header Value")]),
            ],
        );
        let choices = list(&context, &chain);
        let shown: Vec<(&str, Option<&str>, &[usize])> = choices
            .iter()
            .map(|c| {
                (
                    c.choice.as_str(),
                    c.text.as_deref(),
                    c.writable_by.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("PostProcessorPlugins | PostProcessorPlugins", None, &[][..]),
                ("OAuth 2.0 | Destination Systems", None, &[]),
                ("OAuth 2.0 Destination System - 1 | Rest URL", None, &[]),
                ("OAuth 2.0 Destination System - 2 | Rest URL", None, &[]),
                ("REST | Base URL", Some("REST | Base URL"), &[0]),
                ("REST | Destination Systems", None, &[]),
                (
                    "REST Destination System - 1 | Header Value",
                    Some("REST Destination System - 1 | Header Value"),
                    &[0]
                ),
            ]
        );
        assert!(choices[5]
            .note
            .as_deref()
            .unwrap()
            .contains("list of settings"));
    }

    #[test]
    fn a_plugin_twice_in_the_chain_is_named_by_its_places() {
        let context = Context::parse(
            r#"{"postProcessorPlugins":[
                {"plugin":"OAuth 2.0","destinationSystems":[]},
                {"plugin":"REST","destinationSystems":[{}]},
                {"plugin":"REST","destinationSystems":[]}]}"#,
        )
        .unwrap();
        let chain = Two(
            context.clone(),
            vec![],
            vec![
                text("baseUrl", "Base URL"),
                list_of(vec![text("headerValue", "Header Value")]),
            ],
        );
        let choices = list(&context, &chain);
        let texts: Vec<(usize, &str)> = choices
            .iter()
            .filter_map(|c| Some((c.owner?, c.text.as_deref()?)))
            .collect();
        assert_eq!(
            texts,
            [
                (1, "postProcessorPlugins[1] | Base URL"),
                (
                    1,
                    "postProcessorPlugins[1] Destination System - 1 | Header Value"
                ),
                (2, "postProcessorPlugins[2] | Base URL"),
            ]
        );
        // Each text is one run takes, for the entry it was listed under.
        for (owner, text) in texts {
            assert_eq!(
                destination::resolve(text, 0, &chain).unwrap(),
                destination::Target::Context(format!(
                    "/postProcessorPlugins/{owner}/{}",
                    if text.contains("Header") {
                        "destinationSystems/0/headerValue"
                    } else {
                        "baseUrl"
                    }
                ))
            );
        }
    }
}
