//! The plugin's settings in one export context, parsed and checked once.
//!
//! This file owns the shape of the `postProcessorPlugins[i]` entry (the keys
//! are a contract with the suite), every check on it, and the choice of the
//! destination system for the installation's server type. It sends nothing
//! and logs nothing; `lib.rs` decides what to do with the result.
//!
//! Every problem is a [`ConfigError`] whose message starts with the place in
//! the context, such as
//! `postProcessorPlugins[0].destinationSystems[1].restUrl: not an absolute URL`.
//! Messages never quote `restPassword` nor the URL itself (it may carry a
//! key in its query).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use serde_json::Value;
use url::Host;
use url::Url;

use crate::secret::ClientId;
use crate::secret::ClientSecret;

/// The keys a destination system may have; any other key is an error, so
/// that a typo (`restPasword`) does not pass silently.
const SYSTEM_KEYS: [&str; 15] = [
    "limitToServertype",
    "restUrl",
    "restUser",
    "restPassword",
    "grantType",
    "scope",
    "clientAuthentication",
    "audience",
    "resource",
    "allowedTokenTypes",
    "caCertificateFile",
    "proxy",
    "allowInsecureHttp",
    "connectTimeoutSeconds",
    "timeoutSeconds",
];

/// The largest `connectTimeoutSeconds` and `timeoutSeconds` accepted: a
/// record waits this long at most for its token.
pub const MAX_TIMEOUT_SECONDS: u64 = 300;

/// The largest CA bundle read, in bytes; a PEM bundle of every public CA is
/// about 250 KB.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The destination keys of the entry, in the order of the suite's form.
const DESTINATION_KEYS: [&str; 3] = [
    "destinationFieldForToken",
    "destinationFieldForRefreshToken",
    "destinationFieldForExpires",
];

/// A problem in the plugin's entry of the export context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct ConfigError {
    /// Where the problem is, such as `postProcessorPlugins[0].restUrl`.
    pub place: String,
    /// What is wrong there, lowercase, one line, with no secret in it.
    pub problem: String,
}

impl ConfigError {
    fn new(place: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            place: place.into(),
            problem: problem.into(),
        }
    }
}

pub use posthandler_abi::ServerType;

/// Parses the server type the host passes, which must be known: a wrong
/// guess would send production data with test credentials or the reverse.
pub fn server_type_from_host(value: &str) -> Result<ServerType, ConfigError> {
    ServerType::parse(value).ok_or_else(|| {
        ConfigError::new(
            format!("server type '{}'", one_line(value, 40)),
            "not one of dev, test, prod (the host passes the installation's server type)",
        )
    })
}

/// How the client authenticates at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// HTTP Basic with the form-encoded id and secret (the default).
    Header,
    /// `client_id` and `client_secret` as form fields of the request body.
    Body,
}

/// How the expiry of the token is written to its destination field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresFormat {
    /// An absolute UTC time such as `2026-12-03T18:00:00Z` (the default).
    Rfc3339,
    /// An absolute time as seconds since the Unix epoch, a JSON number.
    EpochSeconds,
    /// The relative lifetime in seconds, as the server sent it.
    ExpiresIn,
}

/// The token endpoint URL (RFC 6749 section 3.2), checked to be absolute and
/// https (plain http only to a loopback host).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenUrl(Url);

impl TokenUrl {
    /// The URL to send the request to, query included.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL for messages and logs: scheme, host, port and path only, since
    /// a query may hold a key.
    pub fn redacted(&self) -> String {
        redacted_url(&self.0)
    }
}

impl fmt::Debug for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenUrl").field(&self.redacted()).finish()
    }
}

/// `url` as messages may show it: no userinfo, no query, no fragment.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Setting these cannot fail for the http(s) URLs we hold; for others the
    // URL is shown without its path details rather than with a credential.
    if shown.set_username("").is_err() || shown.set_password(None).is_err() {
        return format!("{}://[redacted]", url.scheme());
    }
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// One entry of `destinationSystems`.
#[derive(Clone)]
pub struct DestinationSystem {
    /// The server type this system is for.
    pub server_type: ServerType,
    /// The token endpoint.
    pub token_url: TokenUrl,
    /// The client identifier.
    pub client_id: ClientId,
    /// The client secret.
    pub client_secret: ClientSecret,
    /// The requested scope, space-separated, or `None` to ask for the
    /// server's default.
    pub scope: Option<String>,
    /// How id and secret travel.
    pub client_authentication: ClientAuthentication,
    /// The optional keys: extra request parameters, accepted token types and
    /// how the request travels.
    pub options: SystemOptions,
}

/// The optional settings of a destination system; [`Default`] is what a
/// system without them gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemOptions {
    /// `audience`: the API the token is for, a parameter Auth0 and others
    /// require for client credentials.
    pub audience: Option<String>,
    /// `resource` (RFC 8707): the absolute URI of the target service, without
    /// a fragment, as Azure AD v1 and others require.
    pub resource: Option<String>,
    /// `allowedTokenTypes`: the token types accepted besides none, compared
    /// case-insensitively (RFC 6749 section 7.1); only `Bearer` by default.
    pub allowed_token_types: Vec<String>,
    /// How the request travels.
    pub transport: TransportOptions,
}

impl Default for SystemOptions {
    fn default() -> Self {
        SystemOptions {
            audience: None,
            resource: None,
            allowed_token_types: vec!["Bearer".to_owned()],
            transport: TransportOptions::default(),
        }
    }
}

/// How a token request travels: the settings the HTTP client is built with.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// `caCertificateFile`: the CAs trusted instead of the built-in public
    /// ones, read at configure time.
    pub ca_certificates: Option<CaBundle>,
    /// `proxy`: the HTTP CONNECT proxy for this system; `None` means the
    /// environment decides (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    pub proxy: Option<ProxyUrl>,
    /// `connectTimeoutSeconds`: the time to open the connection, TLS
    /// included ([`crate::http::CONNECT_TIMEOUT`] by default).
    pub connect_timeout: Duration,
    /// `timeoutSeconds`: the time for one whole exchange
    /// ([`crate::http::OVERALL_TIMEOUT`] by default).
    pub timeout: Duration,
    /// `allowInsecureHttp` on a `dev` system: plain http to a host that is
    /// not loopback was allowed, and is warned about at first use.
    pub insecure_http: bool,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            ca_certificates: None,
            proxy: None,
            connect_timeout: crate::http::CONNECT_TIMEOUT,
            timeout: crate::http::OVERALL_TIMEOUT,
            insecure_http: false,
        }
    }
}

impl fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportOptions")
            .field("ca_certificates", &self.ca_certificates)
            .field("proxy", &self.proxy)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

/// A PEM file of CA certificates, with the bytes read at configure time.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// The file's bytes, checked to hold at least one certificate.
    pub pem: Arc<Vec<u8>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// A proxy URL, which may carry a user name and password: shown without
/// them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// Checks `value` as a proxy URL: `http://host:port`, user info allowed.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value.trim()).map_err(|_| "not an absolute URL".to_owned())?;
        if url.scheme() != "http" {
            return Err(format!(
                "scheme '{}' is not supported (use http://host:port of a CONNECT proxy)",
                one_line(url.scheme(), 20)
            ));
        }
        if url.host().is_none() {
            return Err("has no host".to_owned());
        }
        Ok(ProxyUrl(url))
    }

    /// The URL as given, user info included.
    ///
    /// # Security warning
    ///
    /// It may hold the proxy's password: pass it only to the HTTP client.
    pub fn secret(&self) -> &str {
        self.0.as_str()
    }

    /// The URL for messages: no user info, path, or query.
    pub fn redacted(&self) -> String {
        redacted_url(&self.0)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProxyUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Debug for DestinationSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationSystem")
            .field("server_type", &self.server_type)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("client_authentication", &self.client_authentication)
            .field("options", &self.options)
            .finish()
    }
}

/// Where the plugin writes its results; `None` means "not wanted".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    /// `destinationFieldForToken`.
    pub token: Option<String>,
    /// `destinationFieldForRefreshToken`.
    pub refresh_token: Option<String>,
    /// `destinationFieldForExpires`.
    pub expires: Option<String>,
}

/// The plugin's entry of one export context, checked.
#[derive(Clone)]
pub struct OAuthConfig {
    /// The context's `name`, for log lines.
    pub context_name: String,
    /// Which entry of `postProcessorPlugins` this is.
    pub plugin_index: usize,
    /// All systems, in the order of the context.
    pub systems: Vec<DestinationSystem>,
    /// Where the results go.
    pub destinations: Destinations,
    /// How the expiry is written.
    pub expires_format: ExpiresFormat,
    /// `tokenRefreshWindowSeconds`: how long before expiry a cached token
    /// is renewed (see `cache.rs`).
    pub token_refresh_window: std::time::Duration,
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("context_name", &self.context_name)
            .field("plugin_index", &self.plugin_index)
            .field("systems", &self.systems)
            .field("destinations", &self.destinations)
            .field("expires_format", &self.expires_format)
            .field("token_refresh_window", &self.token_refresh_window)
            .finish()
    }
}

impl OAuthConfig {
    /// Parses entry `plugin_index` of `postProcessorPlugins` in the export
    /// context `context_json`.
    pub fn parse(context_json: &str, plugin_index: usize) -> Result<Self, ConfigError> {
        let context: Value = serde_json::from_str(context_json).map_err(|e| {
            ConfigError::new(
                "export context",
                format!("not valid JSON (line {})", e.line()),
            )
        })?;
        let context_name = match context.get("name") {
            Some(Value::String(name)) if !name.is_empty() => one_line(name, 120),
            _ => "(unnamed)".to_owned(),
        };
        let place = format!("postProcessorPlugins[{plugin_index}]");
        let entry = context
            .get("postProcessorPlugins")
            .and_then(Value::as_array)
            .and_then(|entries| entries.get(plugin_index))
            .ok_or_else(|| ConfigError::new(&place, "missing"))?
            .as_object()
            .ok_or_else(|| ConfigError::new(&place, "not an object"))?;

        check_plugin_name(entry, &place)?;
        let systems = parse_systems(entry, &place)?;
        let destinations = parse_destinations(entry, &place)?;
        let expires_format = parse_expires_format(entry, &place)?;
        let token_refresh_window = token_cache::refresh_window(entry, &place)?;
        Ok(OAuthConfig {
            context_name,
            plugin_index,
            systems,
            destinations,
            expires_format,
            token_refresh_window,
        })
    }

    /// The one system for `server_type`, with its index, or `None` when no
    /// system is limited to it (the plugin then passes records through).
    ///
    /// Two or more matching systems are an error: picking one would be a guess.
    pub fn select(
        &self,
        server_type: ServerType,
    ) -> Result<Option<(usize, &DestinationSystem)>, ConfigError> {
        let mut matching = self
            .systems
            .iter()
            .enumerate()
            .filter(|(_, system)| system.server_type == server_type);
        let first = matching.next();
        if let (Some((a, _)), Some((b, _))) = (first, matching.next()) {
            return Err(ConfigError::new(
                format!(
                    "postProcessorPlugins[{}].destinationSystems",
                    self.plugin_index
                ),
                format!(
                    "systems {a} and {b} are both limited to server type '{server_type}' \
                     (keep one per server type)"
                ),
            ));
        }
        Ok(first)
    }
}

fn check_plugin_name(entry: &Map<String, Value>, place: &str) -> Result<(), ConfigError> {
    match entry.get("plugin") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(name)) if name == crate::PLUGIN_NAME => Ok(()),
        Some(Value::String(name)) => Err(ConfigError::new(
            format!("{place}.plugin"),
            format!("'{}' is not '{}'", one_line(name, 60), crate::PLUGIN_NAME),
        )),
        Some(_) => Err(ConfigError::new(format!("{place}.plugin"), "not a string")),
    }
}

fn parse_systems(
    entry: &Map<String, Value>,
    place: &str,
) -> Result<Vec<DestinationSystem>, ConfigError> {
    let place = format!("{place}.destinationSystems");
    let list = match entry.get("destinationSystems") {
        None | Some(Value::Null) => return Err(ConfigError::new(place, "missing")),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ConfigError::new(place, "not a list")),
    };
    if list.is_empty() {
        return Err(ConfigError::new(
            place,
            "empty (add at least one destination system)",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(index, system)| parse_system(system, &format!("{place}[{index}]")))
        .collect()
}

fn parse_system(system: &Value, place: &str) -> Result<DestinationSystem, ConfigError> {
    let system = system
        .as_object()
        .ok_or_else(|| ConfigError::new(place, "not an object"))?;
    if let Some(key) = system
        .keys()
        .find(|key| !SYSTEM_KEYS.contains(&key.as_str()))
    {
        return Err(ConfigError::new(
            format!("{place}.{}", one_line(key, 60)),
            "unknown key (check its spelling)",
        ));
    }
    let at = |key: &str| format!("{place}.{key}");

    let server_type = required_string(system, "limitToServertype", place)?;
    let server_type = ServerType::parse(server_type).ok_or_else(|| {
        ConfigError::new(
            at("limitToServertype"),
            format!(
                "'{}' is not one of dev, test, prod",
                one_line(server_type, 40)
            ),
        )
    })?;
    let insecure_http = parse_allow_insecure_http(system, server_type, place)?;
    let token_url = parse_token_url(
        required_string(system, "restUrl", place)?,
        &at("restUrl"),
        insecure_http,
    )?;
    let client_id = ClientId::new(required_string(system, "restUser", place)?);
    let client_secret = ClientSecret::new(required_string(system, "restPassword", place)?);

    match optional_string(system, "grantType", place)? {
        None | Some("client_credentials") => {}
        Some(other) => {
            return Err(ConfigError::new(
                at("grantType"),
                format!(
                    "'{}' is not supported (only client_credentials)",
                    one_line(other, 40)
                ),
            ))
        }
    }
    let scope = match optional_string(system, "scope", place)? {
        None => None,
        Some(scope) => parse_scope(scope, &at("scope"))?,
    };
    let client_authentication = match optional_string(system, "clientAuthentication", place)? {
        None | Some("header") => ClientAuthentication::Header,
        Some("body") => ClientAuthentication::Body,
        Some(other) => {
            return Err(ConfigError::new(
                at("clientAuthentication"),
                format!("'{}' is not one of header, body", one_line(other, 40)),
            ))
        }
    };

    // Remembered only where it matters, so that the warning is not given
    // for an https or loopback URL.
    let plain_http_elsewhere = token_url.url().scheme() == "http" && !is_loopback(token_url.url());
    let options = parse_options(system, place, insecure_http && plain_http_elsewhere)?;
    Ok(DestinationSystem {
        server_type,
        token_url,
        client_id,
        client_secret,
        scope,
        client_authentication,
        options,
    })
}

/// `allowInsecureHttp`: a JSON boolean or `"true"`/`"false"` (as a form
/// saves it); `true` is refused on a system that is not `dev`.
fn parse_allow_insecure_http(
    system: &Map<String, Value>,
    server_type: ServerType,
    place: &str,
) -> Result<bool, ConfigError> {
    let at = format!("{place}.allowInsecureHttp");
    let allowed = match system.get("allowInsecureHttp") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(allowed)) => *allowed,
        Some(Value::String(text)) if text.is_empty() || text == "false" => false,
        Some(Value::String(text)) if text == "true" => true,
        Some(_) => return Err(ConfigError::new(at, "not true or false")),
    };
    if allowed && server_type != ServerType::Dev {
        return Err(ConfigError::new(
            at,
            format!("only a dev system may allow plain http (this one is {server_type})"),
        ));
    }
    Ok(allowed)
}

fn parse_options(
    system: &Map<String, Value>,
    place: &str,
    insecure_http: bool,
) -> Result<SystemOptions, ConfigError> {
    let at = |key: &str| format!("{place}.{key}");
    let audience = match optional_string(system, "audience", place)? {
        None => None,
        Some(audience) if audience.trim().is_empty() => None,
        Some(audience) if audience.chars().any(char::is_control) => {
            return Err(ConfigError::new(
                at("audience"),
                "must not hold control characters",
            ))
        }
        Some(audience) => Some(audience.trim().to_owned()),
    };
    let resource = match optional_string(system, "resource", place)? {
        None => None,
        Some(resource) if resource.trim().is_empty() => None,
        Some(resource) => Some(parse_resource(resource, &at("resource"))?),
    };
    let allowed_token_types = parse_token_types(system, &at("allowedTokenTypes"))?;
    let ca_certificates = match optional_string(system, "caCertificateFile", place)? {
        None => None,
        Some(path) => Some(read_ca_bundle(path, &at("caCertificateFile"))?),
    };
    let proxy = match optional_string(system, "proxy", place)? {
        None => None,
        Some(proxy) if proxy.trim().is_empty() => None,
        // The value is never quoted: it may hold the proxy's password.
        Some(proxy) => {
            Some(ProxyUrl::parse(proxy).map_err(|problem| ConfigError::new(at("proxy"), problem))?)
        }
    };
    let defaults = TransportOptions::default();
    let connect_timeout =
        parse_seconds(system, "connectTimeoutSeconds", place)?.unwrap_or(defaults.connect_timeout);
    let timeout = parse_seconds(system, "timeoutSeconds", place)?.unwrap_or(defaults.timeout);
    Ok(SystemOptions {
        audience,
        resource,
        allowed_token_types,
        transport: TransportOptions {
            ca_certificates,
            proxy,
            connect_timeout,
            timeout,
            insecure_http,
        },
    })
}

/// A resource indicator (RFC 8707 section 2): an absolute URI without a
/// fragment. Quoted in no message, like every URL of the configuration.
fn parse_resource(value: &str, place: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value.trim())
        .map_err(|_| ConfigError::new(place, "not an absolute URI (RFC 8707 section 2)"))?;
    if url.fragment().is_some() {
        return Err(ConfigError::new(
            place,
            "must not have a fragment (#...) (RFC 8707 section 2)",
        ));
    }
    Ok(value.trim().to_owned())
}

/// `allowedTokenTypes`: a JSON list of names, or one string of names
/// separated by spaces or commas. Bearer is always allowed.
fn parse_token_types(system: &Map<String, Value>, place: &str) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = match system.get("allowedTokenTypes") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(text)) => text
            .split([' ', ','])
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|name| match name {
                Value::String(name) if !name.trim().is_empty() => Ok(name.trim().to_owned()),
                _ => Err(ConfigError::new(
                    place,
                    "every entry must be a token type name",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ConfigError::new(place, "not a list of token type names")),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if let Some(bad) = names.iter().find(|name| !name.chars().all(valid)) {
        return Err(ConfigError::new(
            place,
            format!("'{}' is not a token type name", one_line(bad, 40)),
        ));
    }
    if !names.iter().any(|name| name.eq_ignore_ascii_case("bearer")) {
        names.insert(0, "Bearer".to_owned());
    }
    Ok(names)
}

/// Reads a PEM CA bundle at configure time, so that a wrong path fails
/// before any record, and checks that it holds a certificate.
fn read_ca_bundle(path: &str, place: &str) -> Result<CaBundle, ConfigError> {
    use std::io::Read as _;
    let path = PathBuf::from(path);
    let shown = one_line(&path.display().to_string(), 200);
    let unreadable = |error| ConfigError::new(place, format!("cannot read '{shown}': {error}"));
    // Opening a FIFO would wait for a writer, forever if none comes.
    if !std::fs::metadata(&path).map_err(unreadable)?.is_file() {
        return Err(ConfigError::new(
            place,
            format!("'{shown}' is not a regular file"),
        ));
    }
    let mut pem = Vec::new();
    std::fs::File::open(&path)
        .and_then(|file| file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem))
        .map_err(unreadable)?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(ConfigError::new(
            place,
            format!("'{shown}' is larger than {MAX_CA_FILE_BYTES} bytes"),
        ));
    }
    let certificates = ureq::tls::parse_pem(&pem)
        .filter(|item| matches!(item, Ok(ureq::tls::PemItem::Certificate(_))))
        .count();
    if certificates == 0 {
        return Err(ConfigError::new(
            place,
            format!("'{shown}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(CaBundle {
        path,
        pem: Arc::new(pem),
    })
}

/// A number of seconds from 1 to [`MAX_TIMEOUT_SECONDS`] (fractions such
/// as `2.5` allowed), as a JSON number or a string; `None` when not set.
fn parse_seconds(
    system: &Map<String, Value>,
    key: &str,
    place: &str,
) -> Result<Option<Duration>, ConfigError> {
    let at = || format!("{place}.{key}");
    let seconds = match system.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        Some(Value::Number(number)) => number.as_f64(),
        Some(_) => None,
    };
    match seconds {
        Some(seconds) if (1.0..=MAX_TIMEOUT_SECONDS as f64).contains(&seconds) => {
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        _ => Err(ConfigError::new(
            at(),
            format!("not a number of seconds from 1 to {MAX_TIMEOUT_SECONDS}"),
        )),
    }
}

/// Checks the token endpoint URL. The value itself is never quoted in the
/// error: it may carry a key in its query or a password in its userinfo.
fn parse_token_url(value: &str, place: &str, insecure_http: bool) -> Result<TokenUrl, ConfigError> {
    let url =
        Url::parse(value.trim()).map_err(|_| ConfigError::new(place, "not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) || insecure_http => {}
        "http" => {
            return Err(ConfigError::new(
                place,
                "https is required (plain http only to a loopback host such as 127.0.0.1, or \
                 on a dev system with allowInsecureHttp)",
            ))
        }
        other => {
            return Err(ConfigError::new(
                place,
                format!("scheme '{other}' is not supported (use https)"),
            ))
        }
    }
    if url.host().is_none() {
        return Err(ConfigError::new(place, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            place,
            "must not carry a user name or password (use restUser and restPassword)",
        ));
    }
    // RFC 6749 section 3.2: the endpoint URI must not include a fragment.
    if url.fragment().is_some() {
        return Err(ConfigError::new(place, "must not have a fragment (#...)"));
    }
    Ok(TokenUrl(url))
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, ::1).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Checks a space-separated scope (RFC 6749 section 3.3) and joins its tokens
/// with single spaces; an empty scope means "the server's default".
fn parse_scope(value: &str, place: &str) -> Result<Option<String>, ConfigError> {
    let tokens: Vec<&str> = value.split(' ').filter(|token| !token.is_empty()).collect();
    // scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII but `"` and `\`.
    let valid = |c: char| matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    if let Some(bad) = tokens.iter().find(|token| !token.chars().all(valid)) {
        return Err(ConfigError::new(
            place,
            format!(
                "'{}' is not a valid scope token (printable ASCII without '\"' or '\\', \
                 separated by spaces)",
                one_line(bad, 60)
            ),
        ));
    }
    Ok((!tokens.is_empty()).then(|| tokens.join(" ")))
}

fn parse_destinations(
    entry: &Map<String, Value>,
    place: &str,
) -> Result<Destinations, ConfigError> {
    let [token, refresh_token, expires] = DESTINATION_KEYS;
    let destinations = Destinations {
        token: destination(entry, token, place)?,
        refresh_token: destination(entry, refresh_token, place)?,
        expires: destination(entry, expires, place)?,
    };
    if destinations == Destinations::default() {
        return Err(ConfigError::new(
            place,
            format!(
                "no destination field set (set at least one of {})",
                DESTINATION_KEYS.join(", ")
            ),
        ));
    }
    Ok(destinations)
}

/// A destination field; empty means "not set", as the suite's form saves it.
/// The host resolves the value (JSON Pointer or field label), not the plugin.
fn destination(
    entry: &Map<String, Value>,
    key: &str,
    place: &str,
) -> Result<Option<String>, ConfigError> {
    match optional_string(entry, key, place)? {
        None => Ok(None),
        Some(value) if value.trim().is_empty() => Ok(None),
        Some(value) => Ok(Some(value.to_owned())),
    }
}

fn parse_expires_format(
    entry: &Map<String, Value>,
    place: &str,
) -> Result<ExpiresFormat, ConfigError> {
    match optional_string(entry, "expiresFormat", place)? {
        None | Some("rfc3339") => Ok(ExpiresFormat::Rfc3339),
        Some("epochSeconds") => Ok(ExpiresFormat::EpochSeconds),
        Some("expiresIn") => Ok(ExpiresFormat::ExpiresIn),
        Some(other) => Err(ConfigError::new(
            format!("{place}.expiresFormat"),
            format!(
                "'{}' is not one of rfc3339, epochSeconds, expiresIn",
                one_line(other, 40)
            ),
        )),
    }
}

/// The token cache's keys of the entry (`cache.rs` uses them).
mod token_cache {
    use std::time::Duration;

    use serde_json::Map;
    use serde_json::Value;

    use super::ConfigError;

    /// The key of the refresh window.
    pub(super) const REFRESH_WINDOW_KEY: &str = "tokenRefreshWindowSeconds";

    /// The largest refresh window accepted: one day.
    const MAX_REFRESH_WINDOW_SECONDS: u64 = 86_400;

    /// `tokenRefreshWindowSeconds`: a whole number of seconds, as a JSON
    /// number or a string of digits (as a form saves it); unset or empty is
    /// [`crate::cache::DEFAULT_REFRESH_WINDOW`].
    pub(super) fn refresh_window(
        entry: &Map<String, Value>,
        place: &str,
    ) -> Result<Duration, ConfigError> {
        let seconds = match entry.get(REFRESH_WINDOW_KEY) {
            None | Some(Value::Null) => return Ok(crate::cache::DEFAULT_REFRESH_WINDOW),
            Some(Value::String(text)) if text.trim().is_empty() => {
                return Ok(crate::cache::DEFAULT_REFRESH_WINDOW)
            }
            Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
            Some(Value::Number(number)) => number.as_u64(),
            Some(_) => None,
        };
        match seconds {
            Some(seconds) if seconds <= MAX_REFRESH_WINDOW_SECONDS => {
                Ok(Duration::from_secs(seconds))
            }
            _ => Err(ConfigError::new(
                format!("{place}.{REFRESH_WINDOW_KEY}"),
                format!("not a whole number of seconds from 0 to {MAX_REFRESH_WINDOW_SECONDS}"),
            )),
        }
    }
}

/// A string value that must be set and not blank.
fn required_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    place: &str,
) -> Result<&'a str, ConfigError> {
    let at = || format!("{place}.{key}");
    match object.get(key) {
        None | Some(Value::Null) => Err(ConfigError::new(at(), "missing")),
        Some(Value::String(value)) if value.trim().is_empty() => {
            Err(ConfigError::new(at(), "must not be empty"))
        }
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(ConfigError::new(at(), "not a string")),
    }
}

/// A string value, or `None` when the key is missing, null or empty.
fn optional_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    place: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if value.is_empty() => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(ConfigError::new(format!("{place}.{key}"), "not a string")),
    }
}

/// `text` on one line, control characters replaced, at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn system() -> Value {
        json!({
            "limitToServertype": "test",
            "restUrl": "https://auth.example.com/oauth2/token",
            "restUser": "shop-export",
            "restPassword": "canary-secret",
            "grantType": "client_credentials",
            "scope": "products.write",
            "clientAuthentication": "header"
        })
    }

    fn context_with(systems: Vec<Value>) -> Value {
        json!({
            "name": "Products to shop",
            "postProcessorPlugins": [{
                "plugin": "OAuth 2.0",
                "destinationSystems": systems,
                "destinationFieldForToken": "/auth/accessToken",
                "destinationFieldForRefreshToken": "/auth/refreshToken",
                "destinationFieldForExpires": "/auth/expires"
            }]
        })
    }

    fn parse(context: &Value) -> Result<OAuthConfig, ConfigError> {
        OAuthConfig::parse(&context.to_string(), 0)
    }

    fn error_of(context: &Value) -> String {
        let message = parse(context).unwrap_err().to_string();
        assert!(!message.contains("canary"), "secret in message: {message}");
        assert!(!message.contains('\n'), "message has two lines: {message}");
        message
    }

    fn with_system_key(key: &str, value: Value) -> Value {
        let mut system = system();
        system[key] = value;
        context_with(vec![system])
    }

    fn without_system_key(key: &str) -> Value {
        let mut system = system();
        system.as_object_mut().unwrap().remove(key);
        context_with(vec![system])
    }

    #[test]
    fn parses_the_contract_example() {
        let config = parse(&context_with(vec![system()])).unwrap();
        assert_eq!(config.context_name, "Products to shop");
        assert_eq!(config.systems.len(), 1);
        let system = &config.systems[0];
        assert_eq!(system.server_type, ServerType::Test);
        assert_eq!(
            system.token_url.url().as_str(),
            "https://auth.example.com/oauth2/token"
        );
        assert_eq!(system.client_id.as_str(), "shop-export");
        assert_eq!(system.client_secret.secret(), "canary-secret");
        assert_eq!(system.scope.as_deref(), Some("products.write"));
        assert_eq!(system.client_authentication, ClientAuthentication::Header);
        assert_eq!(
            config.destinations.token.as_deref(),
            Some("/auth/accessToken")
        );
        assert_eq!(
            config.destinations.refresh_token.as_deref(),
            Some("/auth/refreshToken")
        );
        assert_eq!(
            config.destinations.expires.as_deref(),
            Some("/auth/expires")
        );
        assert_eq!(config.expires_format, ExpiresFormat::Rfc3339);
    }

    #[test]
    fn grant_type_and_client_authentication_have_defaults() {
        let mut system = system();
        let object = system.as_object_mut().unwrap();
        object.remove("grantType");
        object.remove("clientAuthentication");
        object.remove("scope");
        let config = parse(&context_with(vec![system])).unwrap();
        assert_eq!(
            config.systems[0].client_authentication,
            ClientAuthentication::Header
        );
        assert_eq!(config.systems[0].scope, None);
    }

    #[test]
    fn body_authentication_and_expires_formats_parse() {
        let mut context = with_system_key("clientAuthentication", json!("body"));
        let config = parse(&context).unwrap();
        assert_eq!(
            config.systems[0].client_authentication,
            ClientAuthentication::Body
        );
        for (name, format) in [
            ("rfc3339", ExpiresFormat::Rfc3339),
            ("epochSeconds", ExpiresFormat::EpochSeconds),
            ("expiresIn", ExpiresFormat::ExpiresIn),
        ] {
            context["postProcessorPlugins"][0]["expiresFormat"] = json!(name);
            assert_eq!(parse(&context).unwrap().expires_format, format);
        }
    }

    #[test]
    fn scope_tokens_are_joined_by_single_spaces() {
        let config = parse(&with_system_key("scope", json!("  a.read   b:write "))).unwrap();
        assert_eq!(config.systems[0].scope.as_deref(), Some("a.read b:write"));
        let config = parse(&with_system_key("scope", json!("   "))).unwrap();
        assert_eq!(config.systems[0].scope, None);
    }

    #[test]
    fn errors_name_the_place() {
        let cases = [
            (
                with_system_key("restUrl", json!("/oauth2/token")),
                "postProcessorPlugins[0].destinationSystems[0].restUrl: not an absolute URL",
            ),
            (
                with_system_key("restUrl", json!("http://auth.example.com/token")),
                "postProcessorPlugins[0].destinationSystems[0].restUrl: https is required \
                 (plain http only to a loopback host such as 127.0.0.1, or on a dev system \
                 with allowInsecureHttp)",
            ),
            (
                with_system_key("restUrl", json!("ftp://auth.example.com/token")),
                "postProcessorPlugins[0].destinationSystems[0].restUrl: scheme 'ftp' is not \
                 supported (use https)",
            ),
            (
                with_system_key(
                    "restUrl",
                    json!("https://u:canary-secret@auth.example.com/"),
                ),
                "postProcessorPlugins[0].destinationSystems[0].restUrl: must not carry a user \
                 name or password (use restUser and restPassword)",
            ),
            (
                without_system_key("restUser"),
                "postProcessorPlugins[0].destinationSystems[0].restUser: missing",
            ),
            (
                with_system_key("restPassword", json!("")),
                "postProcessorPlugins[0].destinationSystems[0].restPassword: must not be empty",
            ),
            (
                with_system_key("restPassword", json!(42)),
                "postProcessorPlugins[0].destinationSystems[0].restPassword: not a string",
            ),
            (
                without_system_key("limitToServertype"),
                "postProcessorPlugins[0].destinationSystems[0].limitToServertype: missing",
            ),
            (
                with_system_key("limitToServertype", json!("staging")),
                "postProcessorPlugins[0].destinationSystems[0].limitToServertype: 'staging' is \
                 not one of dev, test, prod",
            ),
            (
                with_system_key("grantType", json!("password")),
                "postProcessorPlugins[0].destinationSystems[0].grantType: 'password' is not \
                 supported (only client_credentials)",
            ),
            (
                with_system_key("clientAuthentication", json!("both")),
                "postProcessorPlugins[0].destinationSystems[0].clientAuthentication: 'both' is \
                 not one of header, body",
            ),
            (
                with_system_key("restPasword", json!("canary-secret")),
                "postProcessorPlugins[0].destinationSystems[0].restPasword: unknown key (check \
                 its spelling)",
            ),
            (
                with_system_key("scope", json!("a \"b\"")),
                "postProcessorPlugins[0].destinationSystems[0].scope: '\"b\"' is not a valid \
                 scope token (printable ASCII without '\"' or '\\', separated by spaces)",
            ),
            (
                context_with(vec![]),
                "postProcessorPlugins[0].destinationSystems: empty (add at \
                 least one destination system)",
            ),
            (json!({"name": "x"}), "postProcessorPlugins[0]: missing"),
        ];
        for (context, expected) in cases {
            assert_eq!(error_of(&context), expected);
        }
    }

    #[test]
    fn the_second_system_is_named_by_its_index() {
        let mut second = system();
        second["limitToServertype"] = json!("prod");
        second["restUrl"] = json!("not a url");
        assert_eq!(
            error_of(&context_with(vec![system(), second])),
            "postProcessorPlugins[0].destinationSystems[1].restUrl: not an absolute URL"
        );
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_hosts() {
        for url in [
            "http://127.0.0.1:4000/token",
            "http://127.8.9.10/token",
            "http://[::1]:4000/token",
            "http://localhost:4000/token",
            "http://LOCALHOST/token",
        ] {
            let config = parse(&with_system_key("restUrl", json!(url)));
            assert!(config.is_ok(), "{url}: {config:?}");
        }
    }

    #[test]
    fn at_least_one_destination_is_required() {
        let mut context = context_with(vec![system()]);
        let entry = context["postProcessorPlugins"][0].as_object_mut().unwrap();
        entry.remove("destinationFieldForToken");
        entry.remove("destinationFieldForRefreshToken");
        entry.insert("destinationFieldForExpires".into(), json!(""));
        assert_eq!(
            error_of(&context),
            "postProcessorPlugins[0]: no destination field set (set at least one of \
             destinationFieldForToken, destinationFieldForRefreshToken, \
             destinationFieldForExpires)"
        );
    }

    #[test]
    fn wrong_plugin_name_and_bad_json_are_errors() {
        let mut context = context_with(vec![system()]);
        context["postProcessorPlugins"][0]["plugin"] = json!("REST");
        assert_eq!(
            error_of(&context),
            "postProcessorPlugins[0].plugin: 'REST' is not 'OAuth 2.0'"
        );
        let error = OAuthConfig::parse("{", 0).unwrap_err();
        assert_eq!(error.to_string(), "export context: not valid JSON (line 1)");
    }

    fn systems_for(types: &[&str]) -> OAuthConfig {
        let systems = types
            .iter()
            .map(|server_type| {
                let mut system = system();
                system["limitToServertype"] = json!(server_type);
                system
            })
            .collect();
        parse(&context_with(systems)).unwrap()
    }

    #[test]
    fn selects_the_one_matching_system() {
        let config = systems_for(&["dev", "test", "prod"]);
        let (index, system) = config.select(ServerType::Prod).unwrap().unwrap();
        assert_eq!(index, 2);
        assert_eq!(system.server_type, ServerType::Prod);
    }

    #[test]
    fn no_matching_system_is_not_an_error() {
        let config = systems_for(&["dev", "test"]);
        assert!(config.select(ServerType::Prod).unwrap().is_none());
    }

    #[test]
    fn two_matching_systems_are_an_error_naming_both() {
        let config = systems_for(&["test", "dev", "test"]);
        assert_eq!(
            config.select(ServerType::Test).unwrap_err().to_string(),
            "postProcessorPlugins[0].destinationSystems: systems 0 and 2 are both limited to \
             server type 'test' (keep one per server type)"
        );
    }

    #[test]
    fn unknown_or_empty_host_server_type_is_an_error() {
        assert_eq!(server_type_from_host("prod").unwrap(), ServerType::Prod);
        assert_eq!(
            server_type_from_host("").unwrap_err().to_string(),
            "server type '': not one of dev, test, prod (the host passes the installation's \
             server type)"
        );
        assert!(server_type_from_host("Production").is_err());
        assert!(server_type_from_host("PROD").is_err());
    }

    #[test]
    fn optional_system_keys_parse_with_documented_defaults() {
        let config = parse(&context_with(vec![system()])).unwrap();
        assert_eq!(config.systems[0].options, SystemOptions::default());
        let defaults = &config.systems[0].options.transport;
        assert_eq!(defaults.connect_timeout, crate::http::CONNECT_TIMEOUT);
        assert_eq!(defaults.timeout, crate::http::OVERALL_TIMEOUT);

        let mut with = system();
        with["audience"] = json!(" https://api.example.com/ ");
        with["resource"] = json!("https://api.example.com/products");
        with["allowedTokenTypes"] = json!("DPoP, mac");
        with["proxy"] = json!("http://user:canary-proxy@127.0.0.1:3128");
        with["timeoutSeconds"] = json!("2.5");
        with["connectTimeoutSeconds"] = json!(1);
        let config = parse(&context_with(vec![with])).unwrap();
        let options = &config.systems[0].options;
        assert_eq!(
            options.audience.as_deref(),
            Some("https://api.example.com/")
        );
        assert_eq!(options.allowed_token_types, ["Bearer", "DPoP", "mac"]);
        assert_eq!(options.transport.timeout, Duration::from_millis(2500));
        assert_eq!(options.transport.connect_timeout, Duration::from_secs(1));
        let shown = format!("{config:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:3128/"), "{shown}");
    }

    #[test]
    fn optional_system_keys_are_checked() {
        let cases = [
            (
                "resource",
                json!("relative/path"),
                "resource: not an absolute URI",
            ),
            (
                "resource",
                json!("https://a.example/#x"),
                "resource: must not have a fragment",
            ),
            (
                "allowedTokenTypes",
                json!("mac;pop"),
                "'mac;pop' is not a token type name",
            ),
            (
                "proxy",
                json!("socks5://127.0.0.1:1080"),
                "proxy: scheme 'socks5'",
            ),
            (
                "timeoutSeconds",
                json!("0"),
                "timeoutSeconds: not a number of seconds",
            ),
            (
                "connectTimeoutSeconds",
                json!(301),
                "not a number of seconds from 1 to 300",
            ),
            (
                "timeoutSeconds",
                json!("0.001"),
                "timeoutSeconds: not a number of seconds from 1 to 300",
            ),
            (
                "allowInsecureHttp",
                json!("yes"),
                "allowInsecureHttp: not true or false",
            ),
            (
                "allowInsecureHttp",
                json!(true),
                "only a dev system may allow plain http",
            ),
            (
                "caCertificateFile",
                json!("/nonexistent/ca.pem"),
                "caCertificateFile: cannot read",
            ),
            (
                "caCertificateFile",
                json!("/dev/null"),
                "caCertificateFile: '/dev/null' is not a regular file",
            ),
        ];
        for (key, value, expected) in cases {
            let message = error_of(&with_system_key(key, value));
            assert!(message.contains(expected), "{key}: {message}");
        }
    }

    #[test]
    fn insecure_http_is_honoured_only_on_dev_and_remembered_only_where_used() {
        let mut dev = system();
        dev["limitToServertype"] = json!("dev");
        dev["restUrl"] = json!("http://auth.example.com/token");
        assert!(error_of(&context_with(vec![dev.clone()])).contains("https is required"));
        dev["allowInsecureHttp"] = json!("true");
        let config = parse(&context_with(vec![dev.clone()])).unwrap();
        assert!(config.systems[0].options.transport.insecure_http);
        dev["restUrl"] = json!("https://auth.example.com/token");
        let config = parse(&context_with(vec![dev])).unwrap();
        assert!(
            !config.systems[0].options.transport.insecure_http,
            "no warning for https"
        );
    }

    #[test]
    fn redacted_url_drops_query_and_userinfo() {
        let url = Url::parse("https://u:p@auth.example.com:8443/t?key=canary#f").unwrap();
        assert_eq!(redacted_url(&url), "https://auth.example.com:8443/t");
    }

    #[test]
    fn token_refresh_window_defaults_and_parses() {
        let mut context = context_with(vec![system()]);
        assert_eq!(
            parse(&context).unwrap().token_refresh_window,
            crate::cache::DEFAULT_REFRESH_WINDOW
        );
        for (value, seconds) in [(json!(30), 30), (json!("45"), 45), (json!(""), 60)] {
            context["postProcessorPlugins"][0]["tokenRefreshWindowSeconds"] = value;
            assert_eq!(
                parse(&context).unwrap().token_refresh_window,
                std::time::Duration::from_secs(seconds)
            );
        }
        for value in [
            json!(-1),
            json!(1.5),
            json!("soon"),
            json!(86_401),
            json!(true),
        ] {
            context["postProcessorPlugins"][0]["tokenRefreshWindowSeconds"] = value;
            assert_eq!(
                error_of(&context),
                "postProcessorPlugins[0].tokenRefreshWindowSeconds: not a whole number of \
                 seconds from 0 to 86400"
            );
        }
    }
}
