//! Runs an export context's chain of posthandlers on export records.
//!
//! [`Chain::configure`] takes a context and the loaded plugins, checks every
//! destination field the plugins' descriptions mark, and configures each
//! posthandler once. [`Chain::run`] then takes one record through all of
//! them in order:
//!
//! - each posthandler sees the record and the context as the earlier ones of
//!   this run left them;
//! - values for destination fields are written by the host, into the record
//!   or into a later posthandler's settings (see [`crate::destination`]);
//! - context changes last for this run only: the next record starts from the
//!   configured context again;
//! - on the first error the run stops and its partial results are dropped,
//!   so no half-enriched record leaves the chain.

use crate::context::Context;
use crate::destination::{self, ChainFields, Prepared, Target};
use crate::loader::{Discovery, Plugin};
use crate::server_type::ServerType;
use crate::Error;
use abi_stable::std_types::{RResult, RStr};
use posthandler_abi::fields::{FieldDescription, FieldType};
use posthandler_abi::{ConfigureRequest, PosthandlerBox};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// One configured posthandler.
struct Step {
    index: usize,
    plugin: Arc<Plugin>,
    instance: PosthandlerBox,
    /// Its destination fields' values, resolved at configure; a write to
    /// any other destination is resolved when it comes.
    destinations: Vec<(String, Prepared)>,
}

/// A context's chain, configured and ready for records.
pub struct Chain {
    context: Context,
    steps: Vec<Step>,
    /// Name and version of each step's plugin, in order.
    handled_by: Vec<(String, String)>,
    /// [`Chain::handled_by_json`] of a run through every step.
    handled_by_all: String,
}

/// The outcome of one record's run.
#[derive(Debug)]
pub struct RunOutput {
    /// The enriched record.
    pub record: Value,
    /// The context as the chain left it.
    pub context: Value,
    /// Name and version of each plugin that ran, in order.
    pub handled_by: Vec<(String, String)>,
}

/// [`ChainFields`] over a loaded context and the plugins of a folder.
pub struct Loaded<'a> {
    /// The context, normalized.
    pub context: &'a Context,
    /// The plugins.
    pub discovery: &'a Discovery,
}

impl ChainFields for Loaded<'_> {
    fn context(&self) -> &Value {
        &self.context.value
    }
    fn plugin_names(&self) -> &[String] {
        &self.context.plugins
    }
    fn fields_of(&self, name: &str) -> Option<&[FieldDescription]> {
        self.discovery.active(name).map(|p| p.fields.as_slice())
    }
}

impl Chain {
    /// Configures every posthandler of `context` with the active plugin of
    /// its name.
    ///
    /// # Errors
    ///
    /// A chain entry names no loaded plugin, a destination field is not
    /// usable, or a plugin refuses its configuration. Nothing has been sent
    /// anywhere when this fails because of a destination field.
    pub fn configure(
        context: Context,
        discovery: &Discovery,
        server_type: ServerType,
    ) -> Result<Chain, Error> {
        let plugins = context
            .plugins
            .iter()
            .enumerate()
            .map(|(index, name)| {
                discovery
                    .active(name)
                    .cloned()
                    .ok_or_else(|| Error::MissingPlugin {
                        index,
                        name: name.clone(),
                        hint: format!(" ({})", discovery.summary()),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let fields = Loaded {
            context: &context,
            discovery,
        };
        let destinations = plugins
            .iter()
            .enumerate()
            .map(|(index, plugin)| check_destinations(&fields, index, plugin))
            .collect::<Result<Vec<_>, _>>()?;

        let mut steps = Vec::with_capacity(plugins.len());
        for ((index, plugin), destinations) in plugins.into_iter().enumerate().zip(destinations) {
            let request = ConfigureRequest {
                context_json: RStr::from_str(&context.json),
                plugin_index: index as u32,
                server_type: RStr::from_str(server_type.as_str()),
            };
            let instance = match (plugin.module.configure())(crate::plugin_log::services(), request)
            {
                RResult::ROk(instance) => instance,
                RResult::RErr(error) => {
                    return Err(Error::Posthandler {
                        plugin: plugin.name.clone(),
                        index,
                        error,
                    })
                }
            };
            log::debug!(
                "configured '{}' {} for postProcessorPlugins[{index}] of context '{}'",
                plugin.name,
                plugin.version,
                context.name
            );
            steps.push(Step {
                index,
                plugin,
                instance,
                destinations,
            });
        }
        let handled_by: Vec<_> = steps
            .iter()
            .map(|s| (s.plugin.name.clone(), s.plugin.version.to_string()))
            .collect();
        let handled_by_all = handled_json(&handled_by).to_string();
        Ok(Chain {
            context,
            steps,
            handled_by,
            handled_by_all,
        })
    }

    /// The plugin of each step, in chain order.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.steps.iter().map(|s| &s.plugin)
    }

    /// The context the chain was configured with.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Takes one record (JSON text) through the chain.
    ///
    /// # Errors
    ///
    /// The record is not a JSON object, a posthandler failed, or one of its
    /// writes could not be applied. Nothing of the run is kept.
    pub fn run(&self, record_json: &str) -> Result<RunOutput, Error> {
        let mut ran = 0;
        self.run_traced(record_json, &mut ran)
            .map(|(record, context)| RunOutput {
                record,
                context: context.into_owned(),
                handled_by: self.handled_by(ran).to_vec(),
            })
    }

    /// Name and version of the plugins of the first `ran` steps.
    pub fn handled_by(&self, ran: usize) -> &[(String, String)] {
        &self.handled_by[..ran.min(self.handled_by.len())]
    }

    /// The `handledBy` array of an output line after the first `ran` steps:
    /// `[{"name": ..., "version": ...}, ...]`.
    pub fn handled_by_json(&self, ran: usize) -> Cow<'_, str> {
        if ran >= self.steps.len() {
            Cow::Borrowed(&self.handled_by_all)
        } else {
            Cow::Owned(handled_json(self.handled_by(ran)).to_string())
        }
    }

    /// [`Chain::run`] without copying the context unless a posthandler
    /// changed it, counting in `ran` the steps that ran, also when the run
    /// fails (the failing one is the last counted).
    pub fn run_traced(
        &self,
        record_json: &str,
        ran: &mut usize,
    ) -> Result<(Value, Cow<'_, Value>), Error> {
        *ran = 0;
        let mut record: Value = serde_json::from_str(record_json)
            .map_err(|err| Error::Record(format!("not valid JSON ({err})")))?;
        if !record.is_object() {
            return Err(Error::Record("must be a JSON object".into()));
        }
        // Text of the record and context as the next posthandler sees them;
        // made again only after a change, and only when a posthandler is
        // left to see it (the last one's changes are never serialised here).
        let mut record_text = Cow::Borrowed(record_json);
        let mut context = Cow::Borrowed(&self.context.value);
        let mut context_text = Cow::Borrowed(self.context.json.as_str());
        let (mut record_stale, mut context_stale) = (false, false);

        for step in &self.steps {
            if std::mem::take(&mut record_stale) {
                record_text = Cow::Owned(record.to_string());
            }
            if std::mem::take(&mut context_stale) {
                context_text = Cow::Owned(context.to_string());
            }
            *ran += 1;
            let output = match step
                .instance
                .process(RStr::from_str(&record_text), RStr::from_str(&context_text))
            {
                RResult::ROk(output) => output,
                RResult::RErr(error) => {
                    return Err(Error::Posthandler {
                        plugin: step.plugin.name.clone(),
                        index: step.index,
                        error,
                    })
                }
            };

            let refuse = |cause: String| Error::Destination {
                plugin: step.plugin.name.clone(),
                index: step.index,
                cause,
            };
            let mut record_changed = false;
            let mut context_changed = false;
            if let Some(text) = output.record_json.into_option() {
                record = serde_json::from_str(&text)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| refuse("returned a record that is not a JSON object".into()))?;
                record_changed = true;
            }
            for write in output.writes {
                let value = match write.value_json.into_option() {
                    Some(text) => Some(serde_json::from_str(&text).map_err(|_| {
                        refuse(format!(
                            "returned a value for '{}' that is not JSON",
                            write.destination
                        ))
                    })?),
                    None => None,
                };
                let resolved;
                let prepared = match step
                    .destinations
                    .iter()
                    .find(|(configured, _)| configured == write.destination.as_str())
                {
                    Some((_, prepared)) => prepared,
                    None => {
                        resolved = destination::resolve(&write.destination, step.index, self)
                            .and_then(Prepared::new)
                            .map_err(&refuse)?;
                        &resolved
                    }
                };
                match prepared.target() {
                    Target::Record(_) => {
                        // The destination is sound (checked at configure);
                        // this record's shape is what stands in the way.
                        prepared.apply(&mut record, value).map_err(|cause| {
                            Error::Record(format!(
                                "posthandler '{}' (postProcessorPlugins[{}]) cannot write into \
                                 it: {cause}",
                                step.plugin.name, step.index
                            ))
                        })?;
                        record_changed = true;
                    }
                    Target::Context(_) => {
                        prepared.apply(context.to_mut(), value).map_err(&refuse)?;
                        context_changed = true;
                    }
                }
            }
            record_stale |= record_changed;
            context_stale |= context_changed;
        }
        Ok((record, context))
    }

    /// The sum of every posthandler's counters (the `stats.v1` payload);
    /// plugins that do not answer it count nothing.
    pub fn stats(&self) -> serde_json::Map<String, Value> {
        let mut total = serde_json::Map::new();
        for step in &self.steps {
            let answer = step.instance.call(
                RStr::from_str(posthandler_abi::payload::STATS_V1),
                RStr::from_str("{}"),
            );
            let Some(Value::Object(stats)) = answer
                .into_result()
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
            else {
                continue;
            };
            add_counts(&mut total, stats);
        }
        total
    }
}

impl ChainFields for Chain {
    fn context(&self) -> &Value {
        &self.context.value
    }
    fn plugin_names(&self) -> &[String] {
        &self.context.plugins
    }
    fn fields_of(&self, name: &str) -> Option<&[FieldDescription]> {
        self.steps
            .iter()
            .find(|s| s.plugin.name == name)
            .map(|s| s.plugin.fields.as_slice())
    }
}

/// Checks every destination field of the entry at `index` (the fields the
/// plugin describes as [`FieldType::DestinationField`]) and resolves each
/// value once.
fn check_destinations(
    chain: &dyn ChainFields,
    index: usize,
    plugin: &Plugin,
) -> Result<Vec<(String, Prepared)>, Error> {
    let mut prepared = Vec::new();
    let entry = chain
        .context()
        .get(crate::context::CHAIN_KEY)
        .and_then(|c| c.get(index));
    for field in plugin
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::DestinationField)
    {
        let place = format!("postProcessorPlugins[{index}].{}", field.key);
        match entry.and_then(|e| e.get(&field.key)) {
            None | Some(Value::Null) => {}
            Some(Value::String(dest)) => {
                let target = destination::resolve(dest, index, chain)
                    .and_then(Prepared::new)
                    .map_err(|cause| Error::context(&place, cause))?;
                prepared.push((dest.clone(), target));
            }
            Some(_) => return Err(Error::context(place, "must be a string")),
        }
    }
    Ok(prepared)
}

/// `[{"name": ..., "version": ...}, ...]` of `handled_by`.
pub(crate) fn handled_json(handled_by: &[(String, String)]) -> Value {
    handled_by
        .iter()
        .map(|(name, version)| serde_json::json!({"name": name, "version": version}))
        .collect()
}

/// Adds the numeric members of `counts` to those of `total`.
pub(crate) fn add_counts(
    total: &mut serde_json::Map<String, Value>,
    counts: serde_json::Map<String, Value>,
) {
    for (key, value) in counts {
        if let Some(n) = value.as_u64() {
            let sum = total.get(&key).and_then(Value::as_u64).unwrap_or(0) + n;
            total.insert(key, sum.into());
        }
    }
}
