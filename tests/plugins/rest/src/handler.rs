//! The configured stand-in: reads its own chain entry and mirrors two of its
//! settings into the record.
//!
//! It reads the entry from the context it is handed on each record, not from
//! the one it was configured with: values that earlier posthandlers of the
//! run wrote into its settings exist only there.

use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use posthandler_abi::{
    catch_panic, ErrorKind, FieldWrite, PluginError, Posthandler, ProcessOutput,
};
use serde_json::Value;

use crate::failure;

/// Record field that receives `destinationSystems[0].headerValue`.
pub const HEADER_VALUE_DESTINATION: &str = "/rest/headerValue";

/// Record field that receives `baseUrl`.
pub const BASE_URL_DESTINATION: &str = "/rest/baseUrl";

/// The stand-in, configured for one chain entry.
#[derive(Debug)]
pub struct Rest {
    index: usize,
}

impl Rest {
    /// Checks that `context_json` has an entry at `plugin_index`.
    pub fn configure(context_json: &str, plugin_index: u32) -> Result<Rest, PluginError> {
        let rest = Rest {
            index: plugin_index as usize,
        };
        let context = parse(context_json, "context")?;
        rest.entry(&context)?;
        Ok(rest)
    }

    /// The writes for one record, given the context as the chain left it.
    pub fn writes(
        &self,
        record_json: &str,
        context_json: &str,
    ) -> Result<RVec<FieldWrite>, PluginError> {
        let record = parse(record_json, "record")?;
        failure::requested(&record)?;

        let context = parse(context_json, "context")?;
        let entry = self.entry(&context)?;
        let header_value = entry.pointer("/destinationSystems/0/headerValue");
        let base_url = entry.get("baseUrl");
        // Presence only: the header value is usually an access token.
        log::debug!(
            "postProcessorPlugins[{}]: headerValue {}, baseUrl {}",
            self.index,
            presence(header_value),
            presence(base_url)
        );

        Ok(RVec::from(vec![
            write(HEADER_VALUE_DESTINATION, header_value),
            write(BASE_URL_DESTINATION, base_url),
        ]))
    }

    fn entry<'c>(&self, context: &'c Value) -> Result<&'c Value, PluginError> {
        context
            .get("postProcessorPlugins")
            .and_then(|chain| chain.get(self.index))
            .filter(|entry| entry.is_object())
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::Configuration,
                    format!(
                        "postProcessorPlugins[{}]: missing from the context",
                        self.index
                    ),
                )
            })
    }
}

impl Posthandler for Rest {
    fn process(
        &self,
        record_json: RStr<'_>,
        context_json: RStr<'_>,
    ) -> RResult<ProcessOutput, PluginError> {
        catch_panic("process", || {
            self.writes(record_json.as_str(), context_json.as_str())
                .map(|writes| ProcessOutput {
                    record_json: ROption::RNone,
                    writes,
                })
                .into()
        })
    }

    fn call(&self, kind: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
        catch_panic("call", || {
            RResult::RErr(PluginError::unsupported(kind.as_str()))
        })
    }
}

fn parse(text: &str, what: &str) -> Result<Value, PluginError> {
    serde_json::from_str(text).map_err(|err| {
        PluginError::new(
            ErrorKind::Internal,
            format!("the {what} the host sent is not valid JSON ({err})"),
        )
    })
}

/// A write of `value`, or a removal when the setting is absent.
fn write(destination: &str, value: Option<&Value>) -> FieldWrite {
    FieldWrite {
        destination: destination.into(),
        value_json: value.map(|v| RString::from(v.to_string())).into(),
    }
}

fn presence(value: Option<&Value>) -> &'static str {
    if value.is_some() {
        "present"
    } else {
        "absent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(entry: Value) -> String {
        json!({"postProcessorPlugins": [{"plugin": "OAuth 2.0"}, entry]}).to_string()
    }

    fn values(writes: &RVec<FieldWrite>) -> Vec<(String, Option<String>)> {
        writes
            .iter()
            .map(|w| {
                let value = w.value_json.clone().into_option().map(RString::into_string);
                (w.destination.to_string(), value)
            })
            .collect()
    }

    #[test]
    fn mirrors_the_settings_of_its_own_entry() {
        let ctx = context(json!({
            "plugin": "REST",
            "baseUrl": "https://rest.example/api",
            "destinationSystems": [{"headerName": "Authorization", "headerValue": "Bearer x"}],
        }));
        let rest = Rest::configure(&ctx, 1).unwrap();
        let writes = rest.writes("{}", &ctx).unwrap();
        assert_eq!(
            values(&writes),
            [
                ("/rest/headerValue".into(), Some("\"Bearer x\"".into())),
                (
                    "/rest/baseUrl".into(),
                    Some("\"https://rest.example/api\"".into())
                ),
            ]
        );
    }

    #[test]
    fn absent_settings_remove_the_fields() {
        let ctx = context(json!({"plugin": "REST", "destinationSystems": []}));
        let writes = Rest::configure(&ctx, 1)
            .unwrap()
            .writes("{}", &ctx)
            .unwrap();
        assert!(writes.iter().all(|w| w.value_json.is_none()));
    }

    #[test]
    fn reads_the_context_of_the_run_not_of_configure() {
        let configured = context(json!({"plugin": "REST"}));
        let run = context(json!({"plugin": "REST", "destinationSystems": [{"headerValue": 7}]}));
        let rest = Rest::configure(&configured, 1).unwrap();
        let writes = rest.writes("{}", &run).unwrap();
        assert_eq!(values(&writes)[0].1.as_deref(), Some("7"));
    }

    #[test]
    fn a_missing_entry_is_a_configuration_error() {
        let err = Rest::configure(&context(json!({"plugin": "REST"})), 5).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert_eq!(
            err.message.as_str(),
            "postProcessorPlugins[5]: missing from the context"
        );
    }

    #[test]
    fn a_panic_comes_back_as_an_internal_error() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ctx = context(json!({"plugin": "REST"}));
        let rest = Rest::configure(&ctx, 1).unwrap();
        let result = rest.process(RStr::from_str(r#"{"panic":true}"#), RStr::from_str(&ctx));
        std::panic::set_hook(prev);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.message.as_str(), "plugin panicked in process");
    }
}
