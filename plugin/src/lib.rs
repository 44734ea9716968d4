//! The `OAuth 2.0` posthandler: gets an access token with the client
//! credentials grant (RFC 6749 section 4.4) and hands it to the host as
//! writes to destination fields.
//!
//! This file owns the glue to the host: the exported root module, the
//! [`OAuthPosthandler`] that one `configure` call returns, the plugin's
//! metadata and field list, and the translation of errors into
//! [`PluginError`]s. The protocol lives in [`token`] and [`response`], the wire in [`http`],
//! the settings in [`config`], the output values in [`writes`].
//!
//! # What it does with a record
//!
//! At `configure` the plugin parses its entry of the export context once and
//! picks the destination system whose `limitToServertype` is the
//! installation's server type. No matching system is not an error: every
//! record then passes through unchanged. Otherwise each `process` call gets
//! a token from the [`cache`] (which asks the token endpoint only when the
//! system's token is due, one request at a time) and returns one
//! [`FieldWrite`](posthandler_abi::FieldWrite) per configured destination
//! field. The record itself is never changed by the plugin; the host applies
//! the writes and resolves what each destination names.
//!
//! # Error messages
//!
//! One line each, lowercase, naming the place or the URL (never with
//! userinfo or query), never holding a secret or a token:
//!
//! - configuration: `postProcessorPlugins[0].destinationSystems[1].restUrl: not an absolute URL`
//! - refusal: `token request to https://auth.example.com/token refused: invalid_client
//!   (client authentication failed), HTTP 401`
//! - transport: `token request to https://auth.example.com/token failed: connection refused`
//! - unusable answer: `token request to ...: unusable response (HTTP 200, content type
//!   text/html): body is not a JSON object; body starts with '<html>...'`
//!
//! # Log levels
//!
//! Records go to the host through [`posthandler_abi::logging`], which passes
//! on only this crate's targets (ureq's own records stay behind).
//!
//! - info: one line per token request (grant, context, system index, token
//!   URL, outcome, elapsed milliseconds), the backoff after a failed one,
//!   and why a context passes records through. Records served from the
//!   cache are counted (`stats.v1`), not logged.
//! - warn: a token response without `token_type`, taken as Bearer; token
//!   requests held back after `invalid_client` or `unauthorized_client`.
//! - debug: which destination system a context uses.
//!
//! No level ever shows the `Authorization` header, the request body, the
//! response body of a success, or any token or secret.

#![deny(missing_docs)]
// abi_stable's #[export_root_module] and #[sabi_extern_fn] expand to no code
// that this lint counts (checked with rustc 1.95), so no exception is needed.
#![forbid(unsafe_code)]

pub mod cache;
pub mod clock;
pub mod config;
pub mod http;
pub mod response;
pub mod secret;
pub mod token;
pub mod writes;

use std::error::Error;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use abi_stable::std_types::ROption;
use abi_stable::std_types::RResult;
use abi_stable::std_types::RStr;
use abi_stable::std_types::RString;
use abi_stable::std_types::RVec;
use posthandler_abi::fields::FieldDescription;
use posthandler_abi::fields::FieldType;
use posthandler_abi::ErrorKind;
use posthandler_abi::PluginError;
use posthandler_abi::PluginMetadata;
use posthandler_abi::Posthandler;
use posthandler_abi::ProcessOutput;

use crate::cache::CachePolicy;
use crate::cache::CachedTokenSource;
use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::clock::SystemClock;
use crate::config::ConfigError;
use crate::config::ExpiresFormat;
use crate::config::OAuthConfig;
use crate::token::TokenClient;
use crate::token::TokenError;
use crate::token::TokenSource;
use crate::token::Transport;

/// The name chain entries give in their `plugin` key.
pub const PLUGIN_NAME: &str = "OAuth 2.0";

/// The plugin's version: `POSTHANDLER_PLUGIN_VERSION` at build time if set
/// (so tests can build two versions), else the package version.
pub const PLUGIN_VERSION: &str = match option_env!("POSTHANDLER_PLUGIN_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// The `log` target prefix the host bridge forwards.
const LOG_TARGET_PREFIX: &str = "posthandler_oauth2";

/// The plugin's metadata as the host sees it.
pub fn metadata() -> PluginMetadata {
    let fields_json = serde_json::to_string(&fields())
        .unwrap_or_else(|error| unreachable!("field descriptions always serialise: {error}"));
    PluginMetadata {
        name: PLUGIN_NAME.into(),
        version: PLUGIN_VERSION.into(),
        interface_version: posthandler_abi::INTERFACE_VERSION.into(),
        description: "Gets an OAuth 2.0 access token (client credentials grant) and writes it \
                      to destination fields"
            .into(),
        fields_json: fields_json.into(),
    }
}

/// The configuration fields, with the suite's labels (`Grand type` is the
/// suite's spelling; `Grant type` is accepted as an alias), the suite's
/// labels of choice values, and what each field means.
///
/// This list is the plugin's configuration contract: the host checks and
/// normalizes contexts from it, and `schema/context.schema.json` is generated
/// from it. A test ties it to the keys [`config`] accepts.
pub fn fields() -> Vec<FieldDescription> {
    let system = vec![
        FieldDescription {
            description: Some(
                "The server type this system is for; the one matching the installation is used"
                    .into(),
            ),
            server_type_selector: true,
            ..choice(
                "limitToServertype",
                "Limit to Servertype",
                true,
                &["dev", "test", "prod"],
            )
        },
        FieldDescription {
            description: Some(
                "The token endpoint: https, or plain http to a loopback host only".into(),
            ),
            ..field("restUrl", "Rest URL", FieldType::Url, true)
        },
        FieldDescription {
            description: Some("The OAuth client id".into()),
            ..field("restUser", "Rest User", FieldType::Text, true)
        },
        FieldDescription {
            description: Some(
                "The OAuth client secret, or a reference to it (env:NAME, file:PATH)".into(),
            ),
            ..field("restPassword", "Rest Password", FieldType::Secret, true)
        },
        FieldDescription {
            aliases: vec!["Grant type".into()],
            value_labels: [("client_credentials".into(), "Client Credentials".into())].into(),
            description: Some("The OAuth grant; only client credentials".into()),
            default: Some("client_credentials".into()),
            ..choice("grantType", "Grand type", false, &["client_credentials"])
        },
        FieldDescription {
            description: Some(
                "Scopes to ask for, separated by spaces; unset asks for the server's default"
                    .into(),
            ),
            ..field("scope", "Scope", FieldType::Text, false)
        },
        FieldDescription {
            value_labels: [
                ("header".into(), "Send client credentials in header".into()),
                ("body".into(), "Send client credentials in body".into()),
            ]
            .into(),
            description: Some(
                "How id and secret are sent: HTTP Basic header, or form fields of the body".into(),
            ),
            default: Some("header".into()),
            ..choice(
                "clientAuthentication",
                "Client Authentication",
                false,
                &["header", "body"],
            )
        },
    ];
    let system = [system, system_option_fields()].concat();
    let destination = |key: &str, label: &str, what: &str| FieldDescription {
        description: Some(format!(
            "Where the {what} goes: a JSON Pointer into the record, or a later posthandler's \
             field ('<posthandler> | <field>'); unset writes nothing"
        )),
        ..field(key, label, FieldType::DestinationField, false)
    };
    vec![
        FieldDescription {
            item_label: Some("Destination System".into()),
            item_fields: system,
            description: Some(
                "The token endpoints and clients, at most one per server type".into(),
            ),
            ..field(
                "destinationSystems",
                "Destination Systems",
                FieldType::List,
                true,
            )
        },
        destination(
            "destinationFieldForToken",
            "Destination Field for Token",
            "access token",
        ),
        destination(
            "destinationFieldForRefreshToken",
            "Destination Field for Refresh Token",
            "refresh token (removed when the server sends none)",
        ),
        destination(
            "destinationFieldForExpires",
            "Destination Field for Expires",
            "token's expiry",
        ),
        FieldDescription {
            description: Some(
                "How the expiry is written: RFC 3339 UTC time, seconds since the epoch, or the \
                 lifetime in seconds"
                    .into(),
            ),
            default: Some("rfc3339".into()),
            ..choice(
                "expiresFormat",
                "Expires Format",
                false,
                &["rfc3339", "epochSeconds", "expiresIn"],
            )
        },
        token_refresh_window_field(),
    ]
}

/// The optional keys of a destination system: extra request parameters,
/// token types and transport settings (see [`config::SystemOptions`]).
fn system_option_fields() -> Vec<FieldDescription> {
    let described = |description: String, field: FieldDescription| FieldDescription {
        description: Some(description),
        ..field
    };
    vec![
        described(
            "The audience parameter of the token request (Auth0 and others require it)".into(),
            field("audience", "Audience", FieldType::Text, false),
        ),
        described(
            "The resource parameter (RFC 8707): an absolute URI without a fragment".into(),
            field("resource", "Resource", FieldType::Url, false),
        ),
        described(
            "Token types accepted besides Bearer (RFC 6749 section 7.1), separated by spaces"
                .into(),
            field(
                "allowedTokenTypes",
                "Allowed Token Types",
                FieldType::Text,
                false,
            ),
        ),
        described(
            "A PEM file of the CAs to trust for this system instead of the public ones".into(),
            field(
                "caCertificateFile",
                "CA Certificate File (PEM)",
                FieldType::Text,
                false,
            ),
        ),
        described(
            "An HTTP CONNECT proxy (http://host:port) for this system; unset uses \
             HTTPS_PROXY, HTTP_PROXY and NO_PROXY"
                .into(),
            field("proxy", "Proxy", FieldType::Url, false),
        ),
        FieldDescription {
            default: Some("false".into()),
            ..described(
                "Allow plain http to a host that is not loopback; dev systems only, warned \
                 about"
                    .into(),
                choice(
                    "allowInsecureHttp",
                    "Allow Insecure HTTP (dev only)",
                    false,
                    &["false", "true"],
                ),
            )
        },
        FieldDescription {
            default: Some(http::CONNECT_TIMEOUT.as_secs().to_string()),
            ..described(
                format!(
                    "Seconds to open the connection, TLS included (default {}, 1 to {})",
                    http::CONNECT_TIMEOUT.as_secs(),
                    config::MAX_TIMEOUT_SECONDS
                ),
                field(
                    "connectTimeoutSeconds",
                    "Connect Timeout (seconds)",
                    FieldType::Text,
                    false,
                ),
            )
        },
        FieldDescription {
            default: Some(http::OVERALL_TIMEOUT.as_secs().to_string()),
            ..described(
                format!(
                    "Seconds for one token request, retries after 429 or 503 included (default \
                     {}, 1 to {})",
                    http::OVERALL_TIMEOUT.as_secs(),
                    config::MAX_TIMEOUT_SECONDS
                ),
                field(
                    "timeoutSeconds",
                    "Timeout (seconds)",
                    FieldType::Text,
                    false,
                ),
            )
        },
    ]
}

/// `tokenRefreshWindowSeconds`, with the token cache's fixed rules in its
/// description (see [`cache`]).
fn token_refresh_window_field() -> FieldDescription {
    FieldDescription {
        description: Some(format!(
            "Seconds before expiry at which the shared token is renewed (at most half its \
             lifetime; default {}). Fixed rules: a token without expires_in lives {} s; after a \
             failed request the next waits {} s doubling to {} s (±{} %, at least Retry-After); \
             after invalid_client or unauthorized_client requests stop for {} s",
            cache::DEFAULT_REFRESH_WINDOW.as_secs(),
            cache::DEFAULT_LIFETIME.as_secs(),
            cache::BACKOFF_INITIAL.as_secs(),
            cache::BACKOFF_MAX.as_secs(),
            (cache::BACKOFF_JITTER * 100.0).round(),
            cache::HOLD_BACK.as_secs(),
        )),
        default: Some(cache::DEFAULT_REFRESH_WINDOW.as_secs().to_string()),
        ..field(
            "tokenRefreshWindowSeconds",
            "Token Refresh Window (seconds)",
            FieldType::Text,
            false,
        )
    }
}

fn field(key: &str, label: &str, field_type: FieldType, required: bool) -> FieldDescription {
    FieldDescription {
        key: key.into(),
        label: label.into(),
        field_type,
        required,
        ..FieldDescription::default()
    }
}

fn choice(key: &str, label: &str, required: bool, values: &[&str]) -> FieldDescription {
    FieldDescription {
        allowed_values: values.iter().map(|value| (*value).to_owned()).collect(),
        ..field(key, label, FieldType::Choice, required)
    }
}

/// The plugin configured for one export context.
pub struct OAuthPosthandler {
    config: OAuthConfig,
    /// `None` when no destination system is for this server type.
    source: Option<CachedTokenSource>,
    /// The cache `source` uses, for the export and import payloads.
    cache: Arc<TokenCache>,
    clock: Arc<dyn Clock>,
    token_failures: AtomicU64,
}

impl OAuthPosthandler {
    /// Parses entry `plugin_index` of `context_json` and selects the system
    /// for `server_type`; token requests go through `transport`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for any problem in the entry, for an unknown server
    /// type, and for two systems limited to the same server type.
    pub fn configure(
        context_json: &str,
        plugin_index: usize,
        server_type: &str,
        transport: Box<dyn Transport>,
    ) -> Result<Self, ConfigError> {
        let cache = TokenCache::global().clone();
        let clock = Arc::new(SystemClock);
        Self::configure_with(
            context_json,
            plugin_index,
            server_type,
            transport,
            cache,
            clock,
        )
    }

    /// [`OAuthPosthandler::configure`] with its own token cache and clock
    /// (tests; the plugin shares [`TokenCache::global`] and the system clock).
    ///
    /// # Errors
    ///
    /// As [`OAuthPosthandler::configure`].
    pub fn configure_with(
        context_json: &str,
        plugin_index: usize,
        server_type: &str,
        transport: Box<dyn Transport>,
        cache: Arc<TokenCache>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let server_type = config::server_type_from_host(server_type)?;
        let config = OAuthConfig::parse(context_json, plugin_index)?;
        let source = match config.select(server_type)? {
            Some((index, system)) => {
                log::debug!(
                    "context '{}' uses destination system {index} for server type '{server_type}'",
                    config.context_name
                );
                let client = TokenClient::new(
                    config.context_name.clone(),
                    index,
                    system.clone(),
                    transport,
                )
                .with_clock(clock.clone());
                let policy = CachePolicy::with_refresh_window(config.token_refresh_window);
                Some(CachedTokenSource::new(client, &cache, policy))
            }
            None => {
                log::info!(
                    "no destination system for server type '{server_type}' in context '{}'",
                    config.context_name
                );
                None
            }
        };
        Ok(OAuthPosthandler {
            config,
            source,
            cache,
            clock,
            token_failures: AtomicU64::new(0),
        })
    }

    /// The writes for one record: nothing when no system matched, else one
    /// per configured destination field.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] when no token could be had; nothing is written then.
    pub fn process_record(&self) -> Result<ProcessOutput, TokenError> {
        let Some(source) = &self.source else {
            return Ok(ProcessOutput::default());
        };
        let token = source.token().inspect_err(|_| {
            self.token_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        let writes = writes::field_writes(
            &self.config.destinations,
            self.config.expires_format,
            &token,
        );
        Ok(ProcessOutput {
            record_json: ROption::RNone,
            writes: RVec::from(writes),
        })
    }

    /// The `stats.v1` payload: counters since `configure`.
    ///
    /// `tokenRequests` counts requests this context sent to the token
    /// endpoint (refresh grants included), `cacheHits` records served
    /// without a request of their own, `tokenFailures` records that got no
    /// token.
    pub fn stats_json(&self) -> String {
        let source = self.source.as_ref();
        serde_json::json!({
            "tokenRequests": source.map_or(0, CachedTokenSource::requests_sent),
            "cacheHits": source.map_or(0, CachedTokenSource::cache_hits),
            "tokenFailures": self.token_failures.load(Ordering::Relaxed),
            "passThrough": self.source.is_none(),
        })
        .to_string()
    }

    /// How the expiry is written, as configured.
    pub fn expires_format(&self) -> ExpiresFormat {
        self.config.expires_format
    }
}

impl fmt::Debug for OAuthPosthandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthPosthandler")
            .field("config", &self.config)
            .field("pass_through", &self.source.is_none())
            .finish_non_exhaustive()
    }
}

impl Posthandler for OAuthPosthandler {
    fn process(
        &self,
        _record_json: RStr<'_>,
        _context_json: RStr<'_>,
    ) -> RResult<ProcessOutput, PluginError> {
        posthandler_abi::catch_panic("process", || {
            self.process_record()
                .map_err(|error| plugin_error(error.kind(), &error))
                .into()
        })
    }

    fn call(&self, kind: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError> {
        posthandler_abi::catch_panic("call", || match kind.as_str() {
            posthandler_abi::payload::STATS_V1 => RResult::ROk(self.stats_json().into()),
            other => token_cache_call(&self.cache, self.clock.now(), other, payload.as_str())
                .unwrap_or_else(|| RResult::RErr(PluginError::unsupported(other))),
        })
    }
}

/// Answers the token cache's handover payloads (`token-cache.export.v1`,
/// `token-cache.import.v1`), or `None` for another kind.
fn token_cache_call(
    cache: &TokenCache,
    now: std::time::SystemTime,
    kind: &str,
    payload: &str,
) -> Option<RResult<RString, PluginError>> {
    use posthandler_abi::payload::TOKEN_CACHE_EXPORT_V1;
    use posthandler_abi::payload::TOKEN_CACHE_IMPORT_V1;
    let answer = match kind {
        TOKEN_CACHE_EXPORT_V1 => RResult::ROk(cache.export_json(now).into()),
        TOKEN_CACHE_IMPORT_V1 => match cache.import_json(payload, now, cache::DEFAULT_LIFETIME) {
            Ok(taken) => {
                log::info!("token cache import took {taken} live tokens");
                RResult::ROk("{}".into())
            }
            Err(error) => RResult::RErr(plugin_error(ErrorKind::Unsupported, &error)),
        },
        _ => return None,
    };
    Some(answer)
}

/// A [`PluginError`] whose message is `error` followed by its sources, each
/// after `: `, since only one line crosses the boundary.
pub fn plugin_error(kind: ErrorKind, error: &dyn Error) -> PluginError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    PluginError::new(kind, message)
}

/// The exported functions: the root module and the three functions in it.
///
/// Every body runs inside [`posthandler_abi::catch_panic`]: a panic that
/// reaches `#[sabi_extern_fn]` would end the host's process.
mod export {
    use abi_stable::export_root_module;
    use abi_stable::prefix_type::PrefixTypeTrait;
    use abi_stable::sabi_extern_fn;
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::RResult;
    use abi_stable::std_types::RStr;
    use abi_stable::std_types::RString;
    use posthandler_abi::ConfigureRequest;
    use posthandler_abi::ErrorKind;
    use posthandler_abi::HostServices;
    use posthandler_abi::PluginError;
    use posthandler_abi::PluginMetadata;
    use posthandler_abi::PostProcessorPlugin;
    use posthandler_abi::PostProcessorPluginRef;
    use posthandler_abi::PosthandlerBox;
    use posthandler_abi::Posthandler_TO;

    use crate::http::UreqTransport;
    use crate::OAuthPosthandler;

    #[export_root_module]
    fn root_module() -> PostProcessorPluginRef {
        PostProcessorPlugin {
            metadata,
            configure,
            call,
        }
        .leak_into_prefix()
    }

    #[sabi_extern_fn]
    fn metadata() -> PluginMetadata {
        match posthandler_abi::catch_panic("metadata", || RResult::ROk(crate::metadata())) {
            RResult::ROk(metadata) => metadata,
            // An empty name makes the host refuse the plugin, with the reason.
            RResult::RErr(error) => PluginMetadata {
                name: RString::new(),
                version: RString::new(),
                interface_version: posthandler_abi::INTERFACE_VERSION.into(),
                description: error.message,
                fields_json: "[]".into(),
            },
        }
    }

    #[sabi_extern_fn]
    fn configure(
        host: HostServices,
        request: ConfigureRequest<'_>,
    ) -> RResult<PosthandlerBox, PluginError> {
        posthandler_abi::catch_panic("configure", || {
            posthandler_abi::logging::install(host, crate::LOG_TARGET_PREFIX);
            let configured = OAuthPosthandler::configure(
                request.context_json.as_str(),
                request.plugin_index as usize,
                request.server_type.as_str(),
                Box::new(UreqTransport::new()),
            );
            match configured {
                Ok(posthandler) => RResult::ROk(Posthandler_TO::from_value(posthandler, TD_Opaque)),
                Err(error) => RResult::RErr(crate::plugin_error(ErrorKind::Configuration, &error)),
            }
        })
    }

    #[sabi_extern_fn]
    fn call(kind: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError> {
        posthandler_abi::catch_panic("call", || {
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            let cache = crate::cache::TokenCache::global();
            crate::token_cache_call(cache, now, kind.as_str(), payload.as_str())
                .unwrap_or_else(|| RResult::RErr(PluginError::unsupported(kind.as_str())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;
    use serde_json::Value;

    use crate::token::tests::FakeTransport;
    use crate::token::TransportError;

    fn context(server_types: &[&str]) -> String {
        let systems: Vec<_> = server_types
            .iter()
            .map(|server_type| {
                json!({
                    "limitToServertype": server_type,
                    "restUrl": "http://127.0.0.1:4000/token?key=canary-key",
                    "restUser": "shop-export",
                    "restPassword": "canary-secret",
                })
            })
            .collect();
        json!({
            "name": "Products to shop",
            "postProcessorPlugins": [{
                "plugin": "OAuth 2.0",
                "destinationSystems": systems,
                "destinationFieldForToken": "/auth/accessToken",
                "destinationFieldForRefreshToken": "/auth/refreshToken",
                "destinationFieldForExpires": "/auth/expires",
                "expiresFormat": "expiresIn"
            }]
        })
        .to_string()
    }

    /// Configured with a cache of its own, so that tests do not share tokens.
    fn configured(server_type: &str, transport: &FakeTransport) -> OAuthPosthandler {
        OAuthPosthandler::configure_with(
            &context(&["dev", "test"]),
            0,
            server_type,
            Box::new(transport.clone()),
            Arc::new(TokenCache::new()),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    fn call_process(posthandler: &OAuthPosthandler) -> RResult<ProcessOutput, PluginError> {
        Posthandler::process(posthandler, RStr::from("{}"), RStr::from("{}"))
    }

    #[test]
    fn process_writes_token_refresh_and_expiry() {
        let transport = FakeTransport::answering(
            200,
            r#"{"access_token":"canary-token","token_type":"Bearer","expires_in":3600}"#,
        );
        let posthandler = configured("test", &transport);
        let output = call_process(&posthandler).unwrap();
        assert!(output.record_json.is_none());
        let writes: Vec<_> = output
            .writes
            .iter()
            .map(|write| {
                (
                    write.destination.as_str(),
                    write.value_json.as_ref().map(|v| v.as_str()),
                )
            })
            .collect();
        assert_eq!(
            writes,
            vec![
                ("/auth/accessToken", ROption::RSome("\"canary-token\"")),
                ("/auth/refreshToken", ROption::RNone),
                ("/auth/expires", ROption::RSome("3600")),
            ]
        );
        assert_eq!(transport.requests.lock().unwrap().len(), 1);
        // Compared as JSON: key order depends on serde_json's features,
        // which the workspace unifies.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&posthandler.stats_json()).unwrap(),
            serde_json::json!({"cacheHits": 0, "passThrough": false, "tokenFailures": 0, "tokenRequests": 1})
        );
    }

    #[test]
    fn no_matching_system_passes_records_through() {
        let transport = FakeTransport::answering(200, r#"{"access_token":"x"}"#);
        let posthandler = configured("prod", &transport);
        let output = call_process(&posthandler).unwrap();
        assert!(output.record_json.is_none());
        assert!(output.writes.is_empty());
        assert!(transport.requests.lock().unwrap().is_empty());
    }

    #[test]
    fn two_matching_systems_fail_at_configure() {
        let transport = FakeTransport::answering(200, "{}");
        let error = OAuthPosthandler::configure(
            &context(&["test", "test"]),
            0,
            "test",
            Box::new(transport),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "postProcessorPlugins[0].destinationSystems: systems 0 and 1 are both limited to \
             server type 'test' (keep one per server type)"
        );
    }

    #[test]
    fn unknown_server_type_fails_at_configure() {
        let transport = FakeTransport::answering(200, "{}");
        let error =
            OAuthPosthandler::configure(&context(&["test"]), 0, "staging", Box::new(transport))
                .unwrap_err();
        assert!(
            error.to_string().starts_with("server type 'staging': "),
            "{error}"
        );
    }

    #[test]
    fn errors_cross_with_their_kind_and_cause() {
        let transport = FakeTransport::with(Err(TransportError::HostNotFound));
        let posthandler = configured("dev", &transport);
        let error = call_process(&posthandler).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Transport);
        assert_eq!(
            error.message.as_str(),
            "token request to http://127.0.0.1:4000/token failed: host not found (DNS lookup \
             failed)"
        );

        let transport = FakeTransport::answering(401, r#"{"error":"invalid_client"}"#);
        let error = call_process(&configured("dev", &transport)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Authorization);
        assert!(!error.message.contains("canary"));
    }

    #[test]
    fn unknown_payload_kinds_are_unsupported() {
        let transport = FakeTransport::answering(200, "{}");
        let posthandler = configured("dev", &transport);
        let error =
            Posthandler::call(&posthandler, RStr::from("cache.v9"), RStr::from("{}")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert_eq!(
            error.message.as_str(),
            "payload kind 'cache.v9' is not supported"
        );
        let stats = Posthandler::call(&posthandler, RStr::from("stats.v1"), RStr::from(""));
        assert!(stats.unwrap().as_str().contains("\"tokenRequests\":0"));
    }

    #[test]
    fn metadata_lists_fields_with_suite_labels() {
        let metadata = metadata();
        assert_eq!(metadata.name.as_str(), "OAuth 2.0");
        assert_eq!(
            metadata.interface_version.as_str(),
            posthandler_abi::INTERFACE_VERSION
        );
        let fields = posthandler_abi::fields::parse(&metadata.fields_json).unwrap();
        let labels: Vec<_> = fields.iter().map(|field| field.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Destination Systems",
                "Destination Field for Token",
                "Destination Field for Refresh Token",
                "Destination Field for Expires",
                "Expires Format",
                "Token Refresh Window (seconds)",
            ]
        );
        let system: Vec<_> = fields[0]
            .item_fields
            .iter()
            .map(|f| f.label.as_str())
            .collect();
        assert_eq!(
            system,
            [
                "Limit to Servertype",
                "Rest URL",
                "Rest User",
                "Rest Password",
                "Grand type",
                "Scope",
                "Client Authentication",
                "Audience",
                "Resource",
                "Allowed Token Types",
                "CA Certificate File (PEM)",
                "Proxy",
                "Allow Insecure HTTP (dev only)",
                "Connect Timeout (seconds)",
                "Timeout (seconds)",
            ]
        );
        assert_eq!(fields[0].item_label.as_deref(), Some("Destination System"));
    }

    #[test]
    fn secret_redaction() {
        let transport = FakeTransport::answering(
            200,
            r#"{"access_token":"canary-token","refresh_token":"canary-refresh"}"#,
        );
        let posthandler = configured("test", &transport);
        let config = OAuthConfig::parse(&context(&["test"]), 0).unwrap();
        let system = &config.systems[0];
        let request = token::client_credentials_request(system);
        let client = TokenClient::new("c".into(), 0, system.clone(), Box::new(transport.clone()));
        let issued = client.token().unwrap();
        let output = posthandler.process_record().unwrap();
        let shown = format!(
            "{config:?} {system:?} {request:?} {issued:?} {:?} {client:?} {posthandler:?} {:?}",
            issued.response, output.writes
        );
        assert!(!shown.contains("canary"), "{shown}");
        assert!(
            shown.contains("shop-export"),
            "the client id is not secret: {shown}"
        );
    }

    #[test]
    fn every_described_system_key_is_one_the_parser_accepts() {
        // The host refuses keys no description names, the parser refuses
        // keys it does not know: both lists must agree, or contexts that
        // pass `check` would fail at `configure`.
        let fields = fields();
        let base = json!({
            "limitToServertype": "test",
            "restUrl": "https://auth.example.com/token",
            "restUser": "shop-export",
            "restPassword": "canary-secret",
        });
        let parse_with = |key: &str, value: Value| {
            let mut system = base.clone();
            system[key] = value;
            let context = json!({"postProcessorPlugins": [{
                "plugin": "OAuth 2.0",
                "destinationSystems": [system],
                "destinationFieldForToken": "/auth/accessToken",
            }]});
            OAuthConfig::parse(&context.to_string(), 0)
        };
        for field in &fields[0].item_fields {
            let value = field
                .default
                .clone()
                .or_else(|| field.allowed_values.first().cloned())
                .unwrap_or_else(|| "x".into());
            if let Err(error) = parse_with(&field.key, json!(value)) {
                assert!(
                    !error.problem.contains("unknown key"),
                    "{}: {error}",
                    field.key
                );
            }
        }
        let error = parse_with("restPasword", json!("x")).unwrap_err();
        assert!(error.problem.contains("unknown key"), "{error}");
    }
}
