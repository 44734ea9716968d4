//! Turns the suite's spellings in an export context into the documented keys
//! and values, once, when the context is loaded.
//!
//! The suite shows fields by their labels (`Rest URL`, `Limit to Servertype`)
//! and choice values by theirs (`Send client credentials in header`). A key
//! equal to a field's `label` or one of its `aliases` becomes the field's
//! `key`; a choice value equal to one of its `value_labels` becomes that
//! value. Everything comes from the [`FieldDescription`]s the plugins report,
//! so plugins only ever see documented keys, and a context in either spelling
//! behaves byte for byte the same. Key order is kept.

use crate::check::Problem;
use crate::context::CHAIN_KEY;
use crate::destination::CHAIN_LABEL;
use posthandler_abi::fields::{FieldDescription, FieldType};
use serde_json::{Map, Value};

/// Renames the suite's label of the chain (`PostProcessorPlugins`) to
/// [`CHAIN_KEY`] in the top-level object.
pub fn normalize_top(context: &mut Value, problems: &mut Vec<Problem>) {
    let Value::Object(top) = context else {
        return;
    };
    if !top.contains_key(CHAIN_LABEL) {
        return;
    }
    if top.contains_key(CHAIN_KEY) {
        problems.push(Problem::error(
            CHAIN_KEY,
            format!("given twice, as '{CHAIN_KEY}' and as '{CHAIN_LABEL}' (keep one)"),
        ));
        return;
    }
    *top = std::mem::take(top)
        .into_iter()
        .map(|(key, value)| match key == CHAIN_LABEL {
            true => (CHAIN_KEY.to_owned(), value),
            false => (key, value),
        })
        .collect();
}

/// Normalizes one object (a chain entry, or an item of a list field) whose
/// fields are `fields`; `place` names it in problems, such as
/// `postProcessorPlugins[0]`.
///
/// A key given in two spellings is a problem; the first spelling wins.
pub fn normalize_object(
    object: &mut Value,
    fields: &[FieldDescription],
    place: &str,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(map) = object else {
        return;
    };
    let mut out = Map::with_capacity(map.len());
    for (key, mut value) in std::mem::take(map) {
        let Some(field) = field_named(fields, &key) else {
            out.insert(key, value);
            continue;
        };
        let at = format!("{place}.{}", field.key);
        if out.contains_key(&field.key) {
            problems.push(Problem::error(
                &at,
                format!("given twice (also as '{}'; keep one)", key.escape_debug()),
            ));
            continue;
        }
        normalize_value(&mut value, field, &at, problems);
        out.insert(field.key.clone(), value);
    }
    *map = out;
}

/// The field whose key, label or alias is `name`.
pub fn field_named<'a>(fields: &'a [FieldDescription], name: &str) -> Option<&'a FieldDescription> {
    fields.iter().find(|f| f.key == name).or_else(|| {
        fields
            .iter()
            .find(|f| f.label == name || f.aliases.iter().any(|a| a == name))
    })
}

fn normalize_value(
    value: &mut Value,
    field: &FieldDescription,
    place: &str,
    problems: &mut Vec<Problem>,
) {
    match (field.field_type, value) {
        (FieldType::Choice, Value::String(text)) => {
            if let Some((choice, _)) = field.value_labels.iter().find(|(_, label)| *label == text) {
                *text = choice.clone();
            }
        }
        (FieldType::List, Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                normalize_object(item, &field.item_fields, &format!("{place}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> Vec<FieldDescription> {
        let system = vec![
            FieldDescription {
                key: "restUrl".into(),
                label: "Rest URL".into(),
                field_type: FieldType::Url,
                ..Default::default()
            },
            FieldDescription {
                key: "grantType".into(),
                label: "Grand type".into(),
                field_type: FieldType::Choice,
                allowed_values: vec!["client_credentials".into()],
                aliases: vec!["Grant type".into()],
                value_labels: [("client_credentials".into(), "Client Credentials".into())].into(),
                ..Default::default()
            },
        ];
        vec![FieldDescription {
            key: "destinationSystems".into(),
            label: "Destination Systems".into(),
            field_type: FieldType::List,
            item_fields: system,
            ..Default::default()
        }]
    }

    #[test]
    fn labels_aliases_and_value_labels_become_documented_spellings() {
        let mut entry = json!({
            "plugin": "OAuth 2.0",
            "Destination Systems": [
                {"Rest URL": "https://a.example/t", "Grand type": "Client Credentials"},
                {"restUrl": "https://b.example/t", "Grant type": "client_credentials"}
            ]
        });
        let mut problems = vec![];
        normalize_object(
            &mut entry,
            &fields(),
            "postProcessorPlugins[0]",
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            entry.to_string(),
            json!({
                "plugin": "OAuth 2.0",
                "destinationSystems": [
                    {"restUrl": "https://a.example/t", "grantType": "client_credentials"},
                    {"restUrl": "https://b.example/t", "grantType": "client_credentials"}
                ]
            })
            .to_string()
        );
    }

    #[test]
    fn a_key_in_two_spellings_is_a_problem() {
        let mut entry = json!({"destinationSystems": [{"restUrl": "a", "Rest URL": "b"}]});
        let mut problems = vec![];
        normalize_object(&mut entry, &fields(), "p[0]", &mut problems);
        assert_eq!(
            problems[0].to_string(),
            "error: p[0].destinationSystems[0].restUrl: given twice (also as 'Rest URL'; keep one)"
        );
        assert_eq!(entry["destinationSystems"][0]["restUrl"], "a");
    }

    #[test]
    fn the_chain_label_becomes_the_chain_key() {
        let mut context = json!({"name": "x", "PostProcessorPlugins": []});
        let mut problems = vec![];
        normalize_top(&mut context, &mut problems);
        assert_eq!(
            context.to_string(),
            r#"{"name":"x","postProcessorPlugins":[]}"#
        );
    }
}
