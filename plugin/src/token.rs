//! The client credentials grant (RFC 6749 section 4.4), without the wire.
//!
//! This file owns building the token request as a plain value
//! ([`TokenRequest`]), the errors of the exchange ([`TokenError`]) and the
//! one place that asks for a token and logs it ([`TokenClient`]). Reading
//! the answer is `response.rs`'s; moving bytes is left to a [`Transport`]:
//! the real one is in `http.rs`, tests use a fake.
//!
//! [`TokenSource`] is the seam between a posthandler and the token fetch;
//! the cache in `cache.rs` sits behind it and calls [`TokenClient::fetch`]
//! for the client credentials grant or the refresh token grant
//! (RFC 6749 section 6).

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use posthandler_abi::ErrorKind;

use crate::clock::Clock;
use crate::clock::SystemClock;
use crate::config::ClientAuthentication;
use crate::config::DestinationSystem;
use crate::config::TokenUrl;
use crate::config::TransportOptions;
use crate::response::check_token_type;
use crate::response::parse_response;
use crate::response::TokenResponse;
use crate::secret::ClientId;
use crate::secret::ClientSecret;
use crate::secret::RefreshToken;
use crate::secret::REDACTED;

/// The media type of the request body (RFC 6749 appendix B).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A token request, ready to be sent: always `POST`.
#[derive(Clone)]
pub struct TokenRequest {
    /// The token endpoint.
    pub url: TokenUrl,
    /// Header names and values, in order. `Authorization` holds the secret.
    pub headers: Vec<(String, String)>,
    /// The form-encoded body. With body authentication it holds the secret.
    pub body: String,
    /// How the request travels (CA, proxy, time limits): the destination
    /// system's settings, for the transport.
    pub transport: TransportOptions,
}

impl TokenRequest {
    /// The method of every token request (RFC 6749 section 3.2).
    pub const METHOD: &'static str = "POST";

    /// The value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

impl fmt::Debug for TokenRequest {
    // Header values and the body may hold the client secret: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("TokenRequest")
            .field("method", &Self::METHOD)
            .field("url", &self.url)
            .field("header_names", &names)
            .field(
                "body",
                &format_args!("{REDACTED} ({} bytes)", self.body.len()),
            )
            .finish()
    }
}

/// Builds the client credentials request for `system` (RFC 6749 section 4.4.2).
///
/// The secret travels either in the `Authorization` header or in the body,
/// never both: servers refuse a request that uses two methods.
pub fn client_credentials_request(system: &DestinationSystem) -> TokenRequest {
    let mut headers = vec![
        ("Content-Type".to_owned(), FORM_CONTENT_TYPE.to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = &system.scope {
        form.append_pair("scope", scope);
    }
    // Not in RFC 6749, but Auth0 and others require `audience` for this grant.
    if let Some(audience) = &system.options.audience {
        form.append_pair("audience", audience);
    }
    // RFC 8707 section 2.1: the resource the token is meant for.
    if let Some(resource) = &system.options.resource {
        form.append_pair("resource", resource);
    }
    match system.client_authentication {
        ClientAuthentication::Header => headers.push((
            "Authorization".to_owned(),
            basic_authorization(&system.client_id, &system.client_secret),
        )),
        ClientAuthentication::Body => {
            form.append_pair("client_id", system.client_id.as_str());
            form.append_pair("client_secret", system.client_secret.secret());
        }
    }
    TokenRequest {
        url: system.token_url.clone(),
        headers,
        body: form.finish(),
        transport: system.options.transport.clone(),
    }
}

/// The `Authorization` header value for HTTP Basic client authentication.
///
/// RFC 6749 section 2.3.1: id and secret are each encoded with
/// application/x-www-form-urlencoded first, so that `:`, `%`, `+`, spaces and
/// non-ASCII characters survive the `id:secret` join and the server's decoding.
pub fn basic_authorization(id: &ClientId, secret: &ClientSecret) -> String {
    let id = form_encode(id.as_str());
    let secret = form_encode(secret.secret());
    format!("Basic {}", BASE64.encode(format!("{id}:{secret}")))
}

fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// What a [`Transport`] got back: any status, redirects included.
#[derive(Clone, Default)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Header names and values; values that are not text are left out.
    pub headers: Vec<(String, String)>,
    /// The body, at most [`crate::http::MAX_BODY_BYTES`] from the real transport.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

impl fmt::Debug for HttpResponse {
    // The body of a success holds the tokens: its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("content_type", &self.header("content-type"))
            .field(
                "body",
                &format_args!("{REDACTED} ({} bytes)", self.body.len()),
            )
            .finish()
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Sends a [`TokenRequest`] and returns the response as it came, whatever
/// its status; it must not follow redirects.
pub trait Transport: Send + Sync {
    /// Sends `request` once.
    fn send(&self, request: &TokenRequest) -> Result<HttpResponse, TransportError>;
}

/// Why a [`Transport`] got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The host answered, but nothing listens on the port.
    #[error("connection refused")]
    ConnectionRefused,
    /// The host name did not resolve.
    #[error("host not found (DNS lookup failed)")]
    HostNotFound,
    /// A time limit passed; the text says which one.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The TLS handshake failed, such as for an untrusted certificate.
    #[error("tls: {0}")]
    Tls(String),
    /// The response body is larger than the limit, in bytes; the rest was
    /// not read.
    #[error("response body larger than {0} bytes (not read further)")]
    BodyTooLarge(u64),
    /// The connection closed before the body its headers announced.
    #[error("response ended early (body shorter than its Content-Length)")]
    Truncated,
    /// Anything else, described without request content.
    #[error("{0}")]
    Other(String),
}

/// A token together with the time it was asked for, from which its expiry
/// is counted (the conservative end of the exchange).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The server's response.
    pub response: TokenResponse,
    /// When the request was sent.
    pub requested_at: SystemTime,
}

/// Why no token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The server answered with an error (RFC 6749 section 5.2), or with
    /// 401/403 and no readable error.
    #[error(
        "token request to {url} refused: {}",
        refusal(error.as_deref(), description.as_deref(), *status)
    )]
    Refused {
        /// The token URL, without userinfo or query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's `error` code, sanitised.
        error: Option<String>,
        /// The server's `error_description`, sanitised and shortened.
        description: Option<String>,
    },
    /// The server answered with a redirect, which is not followed: a token
    /// request carries the client secret and must go only where configured.
    #[error(
        "token request to {url} was redirected to {location} with HTTP {status} (redirects are \
         not followed; set restUrl to the final URL)"
    )]
    Redirected {
        /// The token URL, without userinfo or query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Where the `Location` header pointed, without userinfo or query.
        location: String,
    },
    /// No response: the cause says why.
    #[error("token request to {url} failed")]
    Transport {
        /// The token URL, without userinfo or query.
        url: String,
        /// Refused, DNS, timeout, TLS, ...
        #[source]
        cause: TransportError,
    },
    /// The response is not a usable token or error response.
    #[error(
        "token request to {url}: unusable response (HTTP {status}, content type {content_type}): \
         {problem}; {body}"
    )]
    InvalidResponse {
        /// The token URL, without userinfo or query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header, or `none`.
        content_type: String,
        /// What is wrong with it.
        problem: String,
        /// The first bytes of the body with anything token-like masked, or
        /// `empty body`.
        body: String,
    },
    /// The server issued a token of a type the configuration does not allow.
    #[error(
        "token request to {url}: token type '{token_type}' is not supported (allowed: \
         {allowed}; see allowedTokenTypes)"
    )]
    UnsupportedTokenType {
        /// The token URL, without userinfo or query.
        url: String,
        /// The type the server named, sanitised.
        token_type: String,
        /// The allowed types, comma-separated.
        allowed: String,
    },
    /// The server answered 429 or 503 (after any retries): it asks to come
    /// back later, maybe saying when.
    #[error(
        "token request to {url}: server unavailable, HTTP {status}{}{}",
        error.as_deref().map(|code| format!(" ({code})")).unwrap_or_default(),
        wait(*retry_after)
    )]
    Unavailable {
        /// The token URL, without userinfo or query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's `error` code, sanitised, if it sent one.
        error: Option<String>,
        /// How long the server asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
}

fn wait(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(delay) if delay > crate::http::MAX_RETRY_AFTER => format!(
            "; it asks to wait {} s, longer than the {} s waited for in one request",
            delay.as_secs(),
            crate::http::MAX_RETRY_AFTER.as_secs()
        ),
        Some(delay) => format!("; it asks to wait {} s", delay.as_secs()),
        None => String::new(),
    }
}

fn refusal(error: Option<&str>, description: Option<&str>, status: u16) -> String {
    match (error, description) {
        (Some(error), Some(description)) => format!("{error} ({description}), HTTP {status}"),
        (Some(error), None) => format!("{error}, HTTP {status}"),
        (None, _) => format!("HTTP {status}"),
    }
}

impl TokenError {
    /// How long the server asked the client to wait before asking again
    /// (`Retry-After` of a final 429 or 503), for a cache to honour.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The kind the host sees.
    ///
    /// Refusals are [`ErrorKind::Authorization`], except a 5xx answer whose
    /// code is not about the client's credentials: that is the server being
    /// unwell, reported as [`ErrorKind::Transport`] like an unreachable one.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TokenError::Refused { status, error, .. } => {
                let about_credentials = matches!(
                    error.as_deref(),
                    Some(
                        "invalid_client"
                            | "unauthorized_client"
                            | "invalid_grant"
                            | "invalid_scope"
                            | "access_denied"
                    )
                ) || matches!(status, 401 | 403);
                if *status >= 500 && !about_credentials {
                    ErrorKind::Transport
                } else {
                    ErrorKind::Authorization
                }
            }
            TokenError::Transport {
                cause: TransportError::BodyTooLarge(_) | TransportError::Truncated,
                ..
            } => ErrorKind::InvalidResponse,
            TokenError::Transport { .. } | TokenError::Unavailable { .. } => ErrorKind::Transport,
            TokenError::Redirected { .. }
            | TokenError::InvalidResponse { .. }
            | TokenError::UnsupportedTokenType { .. } => ErrorKind::InvalidResponse,
        }
    }
}

/// Gives a posthandler its token: [`TokenClient`] asks every time, the
/// cache in `cache.rs` asks only when it has to.
pub trait TokenSource: Send + Sync {
    /// A token for the configured destination system.
    fn token(&self) -> Result<IssuedToken, TokenError>;
}

/// Which grant a token request uses.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Client credentials (RFC 6749 section 4.4).
    ClientCredentials,
    /// Refresh token (RFC 6749 section 6), with the token to refresh with.
    RefreshToken(RefreshToken),
}

impl Grant {
    /// The `grant_type` value.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
        }
    }
}

/// A failed token request: the error, and how long the server asked the
/// client to wait (`Retry-After` on 429 or 503, RFC 9110 section 10.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// What went wrong.
    pub error: TokenError,
    /// The server's `Retry-After`, when it sent one with 429 or 503.
    pub retry_after: Option<Duration>,
}

impl From<TokenError> for FetchFailure {
    fn from(error: TokenError) -> Self {
        FetchFailure {
            error,
            retry_after: None,
        }
    }
}

/// Builds the refresh token request for `system` (RFC 6749 section 6).
///
/// It is the client credentials request with its grant replaced, so client
/// authentication, scope and any other parameter stay the same.
pub fn refresh_token_request(system: &DestinationSystem, refresh: &RefreshToken) -> TokenRequest {
    let mut request = client_credentials_request(system);
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token");
    form.append_pair("refresh_token", refresh.secret());
    for (name, value) in form_urlencoded::parse(request.body.as_bytes()) {
        if name != "grant_type" {
            form.append_pair(&name, &value);
        }
    }
    request.body = form.finish();
    request
}

/// How long a 429 or 503 answer asks the client to wait: `Retry-After` as
/// delay-seconds or as an HTTP date (RFC 9110 section 10.2.3).
pub fn retry_after(response: &HttpResponse, now: SystemTime) -> Option<Duration> {
    if !matches!(response.status, 429 | 503) {
        return None;
    }
    let value = response.header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Asks the token endpoint of one destination system, once per call.
pub struct TokenClient {
    context_name: String,
    system_index: usize,
    system: DestinationSystem,
    /// The client credentials request, the same for every call: built once.
    credentials_request: TokenRequest,
    transport: Box<dyn Transport>,
    clock: Arc<dyn Clock>,
    sent: AtomicU64,
}

impl TokenClient {
    /// A client for `system`, which is entry `system_index` of the context
    /// named `context_name` (both for log lines), on the system clock.
    pub fn new(
        context_name: String,
        system_index: usize,
        system: DestinationSystem,
        transport: Box<dyn Transport>,
    ) -> Self {
        TokenClient {
            context_name,
            system_index,
            credentials_request: client_credentials_request(&system),
            system,
            transport,
            clock: Arc::new(SystemClock),
            sent: AtomicU64::new(0),
        }
    }

    /// The same client, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The destination system this client asks for.
    pub fn system(&self) -> &DestinationSystem {
        &self.system
    }

    /// The clock this client reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How many requests this client has handed to its transport.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Sends one token request with `grant`, logs its outcome, and returns
    /// the token or the failure.
    ///
    /// # Errors
    ///
    /// A [`FetchFailure`] with the [`TokenError`] and the server's
    /// `Retry-After`, if any.
    pub fn fetch(&self, grant: &Grant) -> Result<IssuedToken, FetchFailure> {
        let requested_at = self.clock.now();
        let started = Instant::now();
        let result = self.request_token(grant, requested_at);
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(failure) => format!("failed ({})", failure.error.kind()),
        };
        log::info!(
            "token request ({}) for context '{}', destination system {}, to {}: {outcome}, {} ms",
            grant.name(),
            self.context_name,
            self.system_index,
            self.system.token_url.redacted(),
            started.elapsed().as_millis(),
        );
        result.map(|response| IssuedToken {
            response,
            requested_at,
        })
    }

    fn request_token(
        &self,
        grant: &Grant,
        requested_at: SystemTime,
    ) -> Result<TokenResponse, FetchFailure> {
        let url = &self.system.token_url;
        let refresh_request;
        let request = match grant {
            Grant::ClientCredentials => &self.credentials_request,
            Grant::RefreshToken(refresh) => {
                refresh_request = refresh_token_request(&self.system, refresh);
                &refresh_request
            }
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        let response = self
            .transport
            .send(request)
            .map_err(|cause| TokenError::Transport {
                url: url.redacted(),
                cause,
            })?;
        parse_response(url, &response)
            .and_then(|token| {
                check_token_type(url, token, &self.system.options.allowed_token_types)
            })
            .map_err(|error| FetchFailure {
                error,
                retry_after: retry_after(&response, requested_at),
            })
    }
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("context_name", &self.context_name)
            .field("system_index", &self.system_index)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl TokenSource for TokenClient {
    fn token(&self) -> Result<IssuedToken, TokenError> {
        self.fetch(&Grant::ClientCredentials)
            .map_err(|failure| failure.error)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::Mutex;

    use proptest::prelude::*;

    use crate::config::ServerType;

    /// A transport that records every request and answers with a canned response.
    #[derive(Clone)]
    pub(crate) struct FakeTransport {
        pub(crate) requests: Arc<Mutex<Vec<TokenRequest>>>,
        answer: Result<HttpResponse, TransportError>,
    }

    impl FakeTransport {
        pub(crate) fn answering(status: u16, body: &str) -> Self {
            Self::with(Ok(HttpResponse {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.as_bytes().to_vec(),
            }))
        }

        pub(crate) fn with(answer: Result<HttpResponse, TransportError>) -> Self {
            FakeTransport {
                requests: Arc::default(),
                answer,
            }
        }
    }

    impl Transport for FakeTransport {
        fn send(&self, request: &TokenRequest) -> Result<HttpResponse, TransportError> {
            self.requests.lock().unwrap().push(request.clone());
            self.answer.clone()
        }
    }

    pub(crate) fn token_url(url: &str) -> TokenUrl {
        let context = serde_json::json!({"postProcessorPlugins": [{
            "destinationSystems": [{
                "limitToServertype": "test", "restUrl": url,
                "restUser": "u", "restPassword": "p"
            }],
            "destinationFieldForToken": "/t"
        }]});
        let config = crate::config::OAuthConfig::parse(&context.to_string(), 0).unwrap();
        config.systems[0].token_url.clone()
    }

    pub(crate) fn system(id: &str, secret: &str, auth: ClientAuthentication) -> DestinationSystem {
        DestinationSystem {
            server_type: ServerType::Test,
            token_url: token_url("http://127.0.0.1:4000/token"),
            client_id: ClientId::new(id),
            client_secret: ClientSecret::new(secret),
            scope: Some("products.write".into()),
            client_authentication: auth,
            options: crate::config::SystemOptions::default(),
        }
    }

    fn decode_basic(header: &str) -> (String, String) {
        let encoded = header.strip_prefix("Basic ").expect("Basic scheme");
        let joined = String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap();
        let (id, secret) = joined.split_once(':').expect("one unencoded colon");
        let decode = |part: &str| {
            form_urlencoded::parse(format!("x={part}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        (decode(id), decode(secret))
    }

    #[test]
    fn header_authentication_request_is_exact() {
        let request = client_credentials_request(&system(
            "shop-export",
            "the client secret",
            ClientAuthentication::Header,
        ));
        assert_eq!(TokenRequest::METHOD, "POST");
        assert_eq!(request.url.url().as_str(), "http://127.0.0.1:4000/token");
        assert_eq!(
            request.headers,
            vec![
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned()
                ),
                ("Accept".to_owned(), "application/json".to_owned()),
                (
                    "Authorization".to_owned(),
                    // base64("shop-export:the+client+secret")
                    "Basic c2hvcC1leHBvcnQ6dGhlK2NsaWVudCtzZWNyZXQ=".to_owned()
                ),
            ]
        );
        assert_eq!(
            request.body,
            "grant_type=client_credentials&scope=products.write"
        );
    }

    #[test]
    fn body_authentication_request_is_exact() {
        let request = client_credentials_request(&system(
            "shop export",
            "s:e%c+r é",
            ClientAuthentication::Body,
        ));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.header("content-type"), Some(FORM_CONTENT_TYPE));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert_eq!(
            request.body,
            "grant_type=client_credentials&scope=products.write\
             &client_id=shop+export&client_secret=s%3Ae%25c%2Br+%C3%A9"
        );
    }

    #[test]
    fn no_scope_means_no_scope_parameter() {
        let mut system = system("a", "b", ClientAuthentication::Header);
        system.scope = None;
        assert_eq!(
            client_credentials_request(&system).body,
            "grant_type=client_credentials"
        );
    }

    #[test]
    fn basic_header_form_encodes_both_parts() {
        for (id, secret) in [
            ("client:id", "se:cret"),
            ("100%", "a%20b"),
            ("a+b", "c+d"),
            ("with space", "and more spaces"),
            ("café", "é"),
        ] {
            let header = basic_authorization(&ClientId::new(id), &ClientSecret::new(secret));
            assert_eq!(decode_basic(&header), (id.to_owned(), secret.to_owned()));
        }
        let header = basic_authorization(&ClientId::new("a:b"), &ClientSecret::new("%+ é"));
        let joined = String::from_utf8(BASE64.decode(&header[6..]).unwrap()).unwrap();
        assert_eq!(joined, "a%3Ab:%25%2B+%C3%A9");
    }

    #[test]
    fn transport_errors_keep_their_cause_as_source() {
        let system = system("a", "b", ClientAuthentication::Header);
        let transport = FakeTransport::with(Err(TransportError::ConnectionRefused));
        let client = TokenClient::new("ctx".into(), 0, system, Box::new(transport.clone()));
        let error = client.token().unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token failed"
        );
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        assert_eq!(error.kind(), ErrorKind::Transport);
        assert_eq!(transport.requests.lock().unwrap().len(), 1);
    }

    #[test]
    fn client_sends_the_built_request() {
        let system = system("id", "secret", ClientAuthentication::Body);
        let transport = FakeTransport::answering(200, r#"{"access_token":"at","expires_in":60}"#);
        let client = TokenClient::new("ctx".into(), 1, system.clone(), Box::new(transport.clone()));
        let token = client.token().unwrap();
        assert_eq!(token.response.expires_in, Some(60));
        let requests = transport.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].body, client_credentials_request(&system).body);
    }

    #[test]
    fn request_and_response_debug_hide_secrets() {
        let request =
            client_credentials_request(&system("id", "canary-secret", ClientAuthentication::Body));
        let response = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"access_token":"canary-token"}"#.to_vec(),
        };
        let shown = format!("{request:?} {response:?}");
        assert!(!shown.contains("canary"), "{shown}");
        let header = client_credentials_request(&system(
            "id",
            "canary-secret",
            ClientAuthentication::Header,
        ));
        assert!(!format!("{header:?}").contains("Basic"));
    }

    proptest! {
        #[test]
        fn basic_header_round_trips_any_unicode(id in "\\PC*", secret in "\\PC*") {
            let header = basic_authorization(
                &ClientId::new(id.clone()),
                &ClientSecret::new(secret.clone()),
            );
            prop_assert_eq!(decode_basic(&header), (id, secret));
        }

        #[test]
        fn body_form_round_trips_any_unicode(id in "\\PC*", secret in "\\PC*") {
            let request = client_credentials_request(&system(&id, &secret, ClientAuthentication::Body));
            let form: Vec<(String, String)> =
                form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            prop_assert_eq!(field("client_id"), Some(id));
            prop_assert_eq!(field("client_secret"), Some(secret));
            prop_assert_eq!(field("grant_type"), Some("client_credentials".to_owned()));
            prop_assert!(request.header("authorization").is_none());
        }
    }
}
