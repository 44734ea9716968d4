//! Descriptions of a plugin's configuration fields.
//!
//! A plugin reports its fields as JSON ([`crate::PluginMetadata::fields_json`])
//! in the shape of [`FieldDescription`]. The host builds the suite's
//! "Destination Field" choices and its checks from them; it keeps no list of
//! fields of its own.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kind of value a field holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    /// Free text.
    #[default]
    Text,
    /// A secret (a password): never shown, never logged.
    Secret,
    /// An absolute URL.
    Url,
    /// One of [`FieldDescription::allowed_values`].
    Choice,
    /// A list of items, each with [`FieldDescription::item_fields`].
    List,
    /// The name of a destination field: a JSON Pointer into the export
    /// record, or the label of a later posthandler's field.
    DestinationField,
}

/// One configuration field of a plugin.
///
/// The fields after `item_fields` came later; each is optional in the JSON,
/// so the descriptions of plugins built before them still parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescription {
    /// The JSON key in the context, such as `restUrl`.
    pub key: String,
    /// The label as the suite shows it, such as `Rest URL`.
    pub label: String,
    /// The kind of value.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether the field must be set.
    #[serde(default)]
    pub required: bool,
    /// For [`FieldType::Choice`], the values the field accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// For [`FieldType::List`], the label of one item, such as
    /// `Destination System`; the suite numbers items from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_label: Option<String>,
    /// For [`FieldType::List`], the fields of one item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item_fields: Vec<FieldDescription>,
    /// Other spellings of the key that the suite uses, besides `label`,
    /// such as `Grant type` for a field labelled `Grand type`. The host
    /// turns each of them into `key` when it loads a context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// For [`FieldType::Choice`], the suite's label of an allowed value,
    /// such as `Client Credentials` for `client_credentials`. The host turns
    /// a label into its value when it loads a context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_labels: BTreeMap<String, String>,
    /// What the field means, one sentence, for references and schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value the plugin uses when the field is not set, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// For a field of a list item: this field names the server type
    /// (`dev`, `test`, `prod`) the item is for. The host resolves the secret
    /// references of an item only when it names the run's server type, so
    /// that an installation needs only its own secrets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub server_type_selector: bool,
}

/// Parses [`crate::PluginMetadata::fields_json`].
pub fn parse(fields_json: &str) -> Result<Vec<FieldDescription>, serde_json::Error> {
    serde_json::from_str(fields_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_fields_round_trip_through_json() {
        let fields = vec![FieldDescription {
            key: "destinationSystems".into(),
            label: "Destination Systems".into(),
            field_type: FieldType::List,
            required: true,
            allowed_values: vec![],
            item_label: Some("Destination System".into()),
            item_fields: vec![FieldDescription {
                key: "limitToServertype".into(),
                label: "Limit to Servertype".into(),
                field_type: FieldType::Choice,
                required: true,
                allowed_values: vec!["dev".into(), "test".into(), "prod".into()],
                item_label: None,
                item_fields: vec![],
                value_labels: [("dev".into(), "Development".into())].into(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let json = serde_json::to_string(&fields).unwrap();
        assert!(json.contains("\"type\":\"list\""));
        assert_eq!(parse(&json).unwrap(), fields);
    }

    #[test]
    fn a_server_type_selector_is_written_only_when_set() {
        let selector = FieldDescription {
            key: "limitToServertype".into(),
            server_type_selector: true,
            ..Default::default()
        };
        let json = serde_json::to_string(std::slice::from_ref(&selector)).unwrap();
        assert!(json.contains("\"serverTypeSelector\":true"), "{json}");
        assert_eq!(parse(&json).unwrap(), [selector]);
        let plain = serde_json::to_string(&[FieldDescription::default()]).unwrap();
        assert!(!plain.contains("serverTypeSelector"), "{plain}");
    }

    #[test]
    fn descriptions_without_the_later_fields_still_parse() {
        let old = r#"[{"key":"scope","label":"Scope","type":"text"}]"#;
        let fields = parse(old).unwrap();
        assert!(fields[0].aliases.is_empty() && fields[0].value_labels.is_empty());
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            old.replace("}]", r#","required":false}]"#)
        );
    }
}
