//! The real [`Transport`]: a POST with ureq 3, retried only when the server
//! asks for it.
//!
//! This file owns the HTTP client's settings (no redirects, time limits, body
//! cap, gzip, status codes returned rather than raised, the trusted CAs and
//! the proxy of each destination system), the retries inside one token
//! request (429 and 503), and the translation of ureq's errors into
//! [`TransportError`]s that say refused, DNS, timeout, truncated or which
//! certificate problem. What the request holds and what the response means
//! is `token.rs`'s and `response.rs`'s business.
//!
//! Host names are resolved by [`LiteralFirstResolver`]: an address in the
//! token URL (`https://10.0.0.5/token`) is used as it is; any other host goes
//! to the system resolver as ureq would, under the connect timeout.
//!
//! ureq logs through the `log` crate under its own targets; the host bridge
//! (`posthandler_abi::logging`) forwards only `posthandler_oauth2` targets, so
//! ureq's records, which show raw requests at trace level, never leave the
//! plugin.
//!
//! # Proxies
//!
//! A system's `proxy` key wins. Otherwise the environment decides, as curl
//! does: `HTTPS_PROXY` (or `https_proxy`) for an https token URL,
//! `HTTP_PROXY` (or `http_proxy`) for an http one, `ALL_PROXY` for either,
//! and no proxy for a host that `NO_PROXY` names (`*`, a host, a domain and
//! its subdomains, `.domain`, or an IP address; ports are ignored). Only HTTP
//! CONNECT proxies are supported.

use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::PemItem;
use ureq::tls::RootCerts;
use ureq::tls::TlsConfig;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::resolver::ResolvedSocketAddrs;
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::DefaultConnector;
use ureq::unversioned::transport::NextTimeout;
use ureq::Agent;
use ureq::Proxy;
use url::Url;

use crate::config::TransportOptions;
use crate::token::HttpResponse;
use crate::token::TokenRequest;
use crate::token::Transport;
use crate::token::TransportError;

/// Default time allowed to open the connection, TLS handshake included
/// (a system's `connectTimeoutSeconds` overrides it).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time allowed for one exchange, from resolving the host to the
/// last byte of the body (a system's `timeoutSeconds` overrides it). The
/// waits between retries count against it too, so one token request never
/// takes much longer than this.
pub const OVERALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The most body bytes read, after gzip decoding; a token response is a few
/// hundred bytes, so anything near this is not one.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The longest response head (status line and headers) that is read; a
/// token endpoint's is well under 2 KiB.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 16 * 1024;

/// The least size of ureq's output buffer. ureq writes the request head
/// through it a line at a time, so it must hold the longest line (an
/// `Authorization` header grows with the secret); the body passes through
/// in pieces of any size.
const MIN_OUTPUT_BUFFER_BYTES: usize = 4 * 1024;

/// How many times one token request is sent at most: the first try and two
/// retries after 429 or 503.
pub const MAX_ATTEMPTS: u32 = 3;

/// The longest `Retry-After` that is waited for inside one token request; a
/// server asking for more gets an error at once that says how long it
/// asked for (a cache in front may honour it across requests).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The first wait after a 429 or 503 without `Retry-After`; it doubles for
/// each further retry.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Statuses that ask the client to come back later (RFC 6585 section 4,
/// RFC 9110 section 15.6.4); nothing else is retried.
fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// Sends token requests with a ureq [`Agent`] per destination system's
/// settings, reusing connections.
#[derive(Debug, Default)]
pub struct UreqTransport {
    /// Built on first use, one per distinct [`TransportOptions`] and token
    /// URL (a configured plugin has one), with the output buffer size it
    /// was built with.
    agents: Mutex<Vec<(TransportOptions, Url, usize, Agent)>>,
}

impl UreqTransport {
    /// A transport with the plugin's settings.
    pub fn new() -> Self {
        UreqTransport::default()
    }

    fn agent(&self, request: &TokenRequest) -> Result<Agent, TransportError> {
        let url = request.url.url();
        let output_buffer = output_buffer_size(request);
        let mut agents = self
            .agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, _, _, agent)) = agents.iter().find(|(options, for_url, size, _)| {
            *options == request.transport && for_url == url && *size >= output_buffer
        }) {
            return Ok(agent.clone());
        }
        let agent = build_agent(url, &request.transport, output_buffer)?;
        agents.push((
            request.transport.clone(),
            url.clone(),
            output_buffer,
            agent.clone(),
        ));
        Ok(agent)
    }
}

/// An output buffer that holds every line of `request`'s head, with room
/// for the lines ureq adds (`Host`, `User-Agent`, `Content-Length`,
/// `Accept-Encoding`).
///
/// ureq's default buffers are 128 KiB each way, zero-filled for every new
/// connection: on the benchmark machine that cost a token request that
/// opens one between 5 and 86 µs, with the allocator's state, where a
/// request and its answer need a few hundred bytes.
fn output_buffer_size(request: &TokenRequest) -> usize {
    let url = request.url.url();
    let request_line = url.path().len() + url.query().map_or(0, str::len) + 32;
    let headers: usize = request
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    MIN_OUTPUT_BUFFER_BYTES.max(request_line + url.as_str().len() + headers + 512)
}

/// An agent for token requests to `url` with `options`, whose request
/// heads fit in `output_buffer` bytes.
fn build_agent(
    url: &Url,
    options: &TransportOptions,
    output_buffer: usize,
) -> Result<Agent, TransportError> {
    let shown = crate::config::redacted_url(url);
    if options.insecure_http {
        log::warn!(
            "token requests to {shown} use plain http (allowInsecureHttp on a dev system): the \
             client secret and the token travel unencrypted"
        );
    }
    let mut tls = TlsConfig::builder();
    if let Some(bundle) = &options.ca_certificates {
        let certificates: Vec<_> = ureq::tls::parse_pem(&bundle.pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(certificate)) => Some(certificate),
                _ => None,
            })
            .collect();
        log::debug!(
            "token requests to {shown} trust only the {} CA certificate(s) of {}",
            certificates.len(),
            bundle.path.display()
        );
        tls = tls.root_certs(RootCerts::new_with_certs(&certificates));
    }
    let proxy = proxy_for(url, options)?;
    let config = Agent::config_builder()
        // 4xx bodies carry the RFC 6749 section 5.2 error: read them.
        .http_status_as_error(false)
        // A redirect would carry the client secret to a place nobody
        // configured; 0 returns the 3xx response as it is.
        .max_redirects(0)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_global(Some(options.timeout))
        .tls_config(tls.build())
        .proxy(proxy)
        .user_agent(concat!("posthandler-oauth2/", env!("CARGO_PKG_VERSION")))
        // The input buffer must be larger than the head limit, or a head
        // that fills it ends as "no progress" instead of as too large.
        .max_response_header_size(MAX_RESPONSE_HEAD_BYTES)
        .input_buffer_size(MAX_RESPONSE_HEAD_BYTES + 1024)
        .output_buffer_size(output_buffer)
        .build();
    Ok(Agent::with_parts(
        config,
        DefaultConnector::new(),
        LiteralFirstResolver::default(),
    ))
}

/// ureq's resolver without its thread for addresses.
///
/// With a timeout set, ureq's [`DefaultResolver`] resolves on a new thread
/// so that it can give up waiting, and it resolves before every request,
/// also one that goes out on a pooled connection: a thread per token
/// request. A host that is an IP address needs no lookup, so it is answered
/// at once; a name still goes to the default resolver, thread and timeout
/// included.
#[derive(Debug, Default)]
pub struct LiteralFirstResolver {
    system: DefaultResolver,
}

impl Resolver for LiteralFirstResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let literal = literal_address(uri).filter(|address| {
            config
                .ip_family()
                .keep_wanted(std::iter::once(*address))
                .next()
                .is_some()
        });
        match literal {
            Some(address) => {
                let mut addresses = self.empty();
                addresses.push(address);
                Ok(addresses)
            }
            None => self.system.resolve(uri, config, timeout),
        }
    }
}

/// The socket address of a URI whose host is an IPv4 or IPv6 address.
fn literal_address(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The proxy for `url`: the system's own, else the environment's unless
/// `NO_PROXY` names the host.
fn proxy_for(url: &Url, options: &TransportOptions) -> Result<Option<Proxy>, TransportError> {
    let shown = crate::config::redacted_url(url);
    let invalid = |from: &str| TransportError::Other(format!("the proxy in {from} is not a URL"));
    if let Some(proxy) = &options.proxy {
        log::debug!(
            "token requests to {shown} go through proxy {} (the system's proxy key)",
            proxy.redacted()
        );
        return Proxy::new(proxy.secret())
            .map(Some)
            .map_err(|_| invalid("the proxy key"));
    }
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    let names: &[&str] = if url.scheme() == "https" {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let Some((name, value)) = names
        .iter()
        .find_map(|name| env(name).map(|value| (*name, value)))
    else {
        return Ok(None);
    };
    let no_proxy = env("NO_PROXY")
        .or_else(|| env("no_proxy"))
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, host) {
        log::debug!("token requests to {shown} bypass the proxy of {name} (NO_PROXY)");
        return Ok(None);
    }
    let value = value.trim();
    // Like curl, a proxy given without a scheme is an http one.
    let value = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let proxy = crate::config::ProxyUrl::parse(&value).map_err(|_| invalid(name))?;
    log::debug!(
        "token requests to {shown} go through proxy {} (from {name})",
        proxy.redacted()
    );
    Proxy::new(proxy.secret())
        .map(Some)
        .map_err(|_| invalid(name))
}

/// Whether a `NO_PROXY` list names `host`.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('[');
        // An entry may carry a port (`host:8080`, `[::1]:8080`); ports are
        // ignored, but a bare IPv6 address keeps its colons.
        let entry = match entry.split_once(']') {
            Some((address, _)) => address,
            None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(""),
            None => entry,
        };
        let entry = entry
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
    })
}

impl Transport for UreqTransport {
    fn send(&self, request: &TokenRequest) -> Result<HttpResponse, TransportError> {
        let agent = self.agent(request)?;
        let deadline = request.transport.timeout;
        send_with_retries(
            || send_once(&agent, request),
            deadline,
            SystemTime::now,
            std::thread::sleep,
        )
    }
}

/// Sends with `send` until the answer is not 429 or 503, at most
/// [`MAX_ATTEMPTS`] times, waiting as `Retry-After` says (when it is at most
/// [`MAX_RETRY_AFTER`]) or with a doubling backoff from
/// [`INITIAL_BACKOFF`], and never past `budget` in all. The last answer is
/// returned as it came, so its `Retry-After` reaches the error.
pub fn send_with_retries(
    mut send: impl FnMut() -> Result<HttpResponse, TransportError>,
    budget: Duration,
    now: impl Fn() -> SystemTime,
    sleep: impl Fn(Duration),
) -> Result<HttpResponse, TransportError> {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let mut backoff = INITIAL_BACKOFF;
    for attempt in 1.. {
        let response = send()?;
        if !is_retryable(response.status) || attempt >= MAX_ATTEMPTS {
            return Ok(response);
        }
        let delay = match crate::token::retry_after(&response, now()) {
            Some(asked) if asked > MAX_RETRY_AFTER => return Ok(response),
            Some(asked) => asked,
            None => backoff,
        };
        backoff *= 2;
        // The time spent sending counts as well as the waits.
        let spent = started.elapsed().max(waited);
        if spent + delay > budget {
            return Ok(response);
        }
        log::debug!(
            "token endpoint answered HTTP {}; retry {attempt} of {} in {} ms",
            response.status,
            MAX_ATTEMPTS - 1,
            delay.as_millis()
        );
        sleep(delay);
        waited += delay;
    }
    unreachable!("the loop returns by the last attempt")
}

fn send_once(agent: &Agent, request: &TokenRequest) -> Result<HttpResponse, TransportError> {
    let mut builder = agent.post(request.url.url().as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let options = &request.transport;
    let mut response = builder
        .send(request.body.as_bytes())
        .map_err(|error| transport_error(error, options))?;

    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|error| transport_error(error, options))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Describes a ureq error without quoting the request: some variants hold a
/// header or the URL, which may carry credentials.
fn transport_error(error: ureq::Error, options: &TransportOptions) -> TransportError {
    match error {
        ureq::Error::HostNotFound => TransportError::HostNotFound,
        ureq::Error::Io(error) => io_error(&error, options),
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            TransportError::Timeout(format!(
                "no connection within {} (connectTimeoutSeconds)",
                seconds(options.connect_timeout)
            ))
        }
        ureq::Error::Timeout(ureq::Timeout::Global) => TransportError::Timeout(format!(
            "no complete response within {} (timeoutSeconds)",
            seconds(options.timeout)
        )),
        ureq::Error::Timeout(which) => TransportError::Timeout(format!("{which}")),
        ureq::Error::BodyExceedsLimit(limit) => TransportError::BodyTooLarge(limit),
        ureq::Error::Tls(reason) => TransportError::Tls(reason.to_owned()),
        ureq::Error::Rustls(error) => rustls_error(&error, options),
        ureq::Error::Pem(_) => TransportError::Tls("unreadable certificate".to_owned()),
        ureq::Error::ConnectionFailed => TransportError::Other("connection failed".to_owned()),
        ureq::Error::Decompress(..) => {
            TransportError::Other("the gzip-encoded body does not decode".to_owned())
        }
        ureq::Error::LargeResponseHeader(..) => TransportError::Other(format!(
            "the response head (status line and headers) is larger than {} KiB",
            MAX_RESPONSE_HEAD_BYTES / 1024
        )),
        ureq::Error::Protocol(_) => TransportError::Other("malformed HTTP response".to_owned()),
        ureq::Error::ConnectProxyFailed(_) => {
            TransportError::Other("the HTTP proxy refused the CONNECT request".to_owned())
        }
        ureq::Error::InvalidProxyUrl => {
            TransportError::Other("the HTTP proxy is misconfigured".to_owned())
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            TransportError::Other("the HTTP client could not build the request".to_owned())
        }
        _ => TransportError::Other("HTTP client error".to_owned()),
    }
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

fn io_error(error: &io::Error, options: &TransportOptions) -> TransportError {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return rustls_error(tls, options);
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => TransportError::ConnectionRefused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            TransportError::Timeout("the network timed out".to_owned())
        }
        io::ErrorKind::UnexpectedEof => TransportError::Truncated,
        // std reports a failed getaddrinfo as an uncategorised io error
        // with this text; ureq passes it on as it is.
        _ if error
            .to_string()
            .starts_with("failed to lookup address information") =>
        {
            TransportError::HostNotFound
        }
        // io errors describe the socket (reset, unreachable), never the request.
        _ => TransportError::Other(error.to_string()),
    }
}

/// Names the certificate problem, with the fix where there is one.
fn rustls_error(error: &rustls::Error, options: &TransportOptions) -> TransportError {
    use rustls::CertificateError as E;
    let trust = match &options.ca_certificates {
        Some(bundle) => format!("not among the CAs of {}", bundle.path.display()),
        None => "not a public CA (set caCertificateFile to the company CA's PEM file)".to_owned(),
    };
    let text = match error {
        rustls::Error::InvalidCertificate(E::UnknownIssuer) => {
            format!("certificate from an unknown issuer: {trust}")
        }
        rustls::Error::InvalidCertificate(E::NotValidForName)
        | rustls::Error::InvalidCertificate(E::NotValidForNameContext { .. }) => {
            "certificate is not valid for the host name of restUrl".to_owned()
        }
        rustls::Error::InvalidCertificate(E::Expired | E::ExpiredContext { .. }) => {
            "certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(other) => format!("invalid certificate: {other:?}"),
        other => other.to_string(),
    };
    TransportError::Tls(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read;
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;

    use crate::config::ClientAuthentication;
    use crate::token::client_credentials_request;
    use crate::token::tests::system;

    /// Serves one canned HTTP response on a loopback port; returns the port
    /// and a handle that yields the raw request it read.
    fn serve_once(response: impl Into<String>) -> (u16, thread::JoinHandle<String>) {
        let response = response.into();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            // Read until the end of the headers plus the (small) body.
            while !String::from_utf8_lossy(&request).contains("grant_type") {
                let read = stream.read(&mut buffer).unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            stream.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (port, handle)
    }

    fn request_to(port: u16) -> TokenRequest {
        request_with_secret(port, "secret")
    }

    fn request_with_secret(port: u16, secret: &str) -> TokenRequest {
        let mut system = system("id", secret, ClientAuthentication::Header);
        let context = serde_json::json!({"postProcessorPlugins": [{
            "destinationSystems": [{
                "limitToServertype": "test",
                "restUrl": format!("http://127.0.0.1:{port}/token"),
                "restUser": "u", "restPassword": "p"
            }],
            "destinationFieldForToken": "/t"
        }]});
        let config = crate::config::OAuthConfig::parse(&context.to_string(), 0).unwrap();
        system.token_url = config.systems[0].token_url.clone();
        client_credentials_request(&system)
    }

    #[test]
    fn reads_the_body_of_an_error_status() {
        let (port, server) = serve_once(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
             Content-Length: 26\r\nConnection: close\r\n\r\n{\"error\":\"invalid_client\"}",
        );
        let response = UreqTransport::new().send(&request_to(port)).unwrap();
        assert_eq!(response.status, 401);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body, br#"{"error":"invalid_client"}"#);

        let raw = server.join().unwrap();
        assert!(raw.starts_with("POST /token HTTP/1.1\r\n"), "{raw}");
        let lower = raw.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/x-www-form-urlencoded\r\n"));
        assert!(lower.contains("accept: application/json\r\n"));
        assert!(lower.contains("authorization: basic "));
        assert!(raw.ends_with("grant_type=client_credentials&scope=products.write"));
    }

    #[test]
    fn a_secret_longer_than_the_least_output_buffer_is_sent_whole() {
        let secret = "s".repeat(3 * MIN_OUTPUT_BUFFER_BYTES);
        let (port, server) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        let request = request_with_secret(port, &secret);
        let response = UreqTransport::new().send(&request).unwrap();
        assert_eq!(response.status, 200);
        let raw = server.join().unwrap();
        let sent = request.header("Authorization").unwrap();
        assert!(sent.len() > MIN_OUTPUT_BUFFER_BYTES);
        assert!(raw.contains(&format!("\r\nauthorization: {sent}\r\n")));
    }

    #[test]
    fn a_response_head_near_the_limit_is_read() {
        let padding = "x".repeat(MAX_RESPONSE_HEAD_BYTES - 1024);
        let (port, server) = serve_once(format!(
            "HTTP/1.1 200 OK\r\nX-Padding: {padding}\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n{{}}"
        ));
        let response = UreqTransport::new().send(&request_to(port)).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"{}"[..])
        );
        server.join().unwrap();
    }

    #[test]
    fn a_response_head_over_the_limit_is_named_as_such() {
        let padding = "x".repeat(MAX_RESPONSE_HEAD_BYTES + 1024);
        let (port, _server) = serve_once(format!(
            "HTTP/1.1 200 OK\r\nX-Padding: {padding}\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n{{}}"
        ));
        let error = UreqTransport::new().send(&request_to(port)).unwrap_err();
        assert_eq!(
            error,
            TransportError::Other(
                "the response head (status line and headers) is larger than 16 KiB".to_owned()
            )
        );
    }

    #[test]
    fn does_not_follow_a_redirect() {
        let (port, server) = serve_once(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://elsewhere.example/token\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let response = UreqTransport::new().send(&request_to(port)).unwrap();
        assert_eq!(response.status, 307);
        assert_eq!(
            response.header("location"),
            Some("https://elsewhere.example/token")
        );
        server.join().unwrap();
    }

    fn answer(status: u16, retry_after: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            headers: retry_after
                .map(|value| vec![("Retry-After".to_owned(), value.to_owned())])
                .unwrap_or_default(),
            body: vec![],
        }
    }

    /// Runs `send_with_retries` over `answers`; returns the final status,
    /// the number of sends and the waits asked for.
    fn retried(answers: Vec<HttpResponse>, budget: Duration) -> (u16, usize, Vec<Duration>) {
        let answers = std::cell::RefCell::new(answers.into_iter());
        let sent = std::cell::Cell::new(0);
        let waits = std::cell::RefCell::new(Vec::new());
        let response = send_with_retries(
            || {
                sent.set(sent.get() + 1);
                Ok(answers.borrow_mut().next().unwrap())
            },
            budget,
            SystemTime::now,
            |delay| waits.borrow_mut().push(delay),
        )
        .unwrap();
        (response.status, sent.get(), waits.into_inner())
    }

    #[test]
    fn retries_follow_retry_after_within_the_bound() {
        let (status, sent, waits) = retried(
            vec![
                answer(429, Some("2")),
                answer(503, Some("1")),
                answer(200, None),
            ],
            OVERALL_TIMEOUT,
        );
        assert_eq!((status, sent), (200, 3));
        assert_eq!(waits, [Duration::from_secs(2), Duration::from_secs(1)]);

        let (status, sent, waits) = retried(vec![answer(429, Some("11"))], OVERALL_TIMEOUT);
        assert_eq!((status, sent), (429, 1), "beyond MAX_RETRY_AFTER: no retry");
        assert!(waits.is_empty());
    }

    #[test]
    fn without_retry_after_the_backoff_doubles_and_stops() {
        let busy = || answer(503, None);
        let (status, sent, waits) = retried(vec![busy(), busy(), busy()], OVERALL_TIMEOUT);
        assert_eq!((status, sent), (503, MAX_ATTEMPTS as usize));
        assert_eq!(waits, [INITIAL_BACKOFF, INITIAL_BACKOFF * 2]);
        // Nothing but 429 and 503 is retried.
        for status in [400, 401, 500, 502] {
            assert_eq!(
                retried(vec![answer(status, Some("1"))], OVERALL_TIMEOUT).1,
                1
            );
        }
        // Waits never go past the request's time budget.
        let (_, sent, _) = retried(vec![answer(429, Some("5"))], Duration::from_secs(2));
        assert_eq!(sent, 1);
    }

    #[test]
    fn no_proxy_matches_hosts_domains_and_addresses() {
        assert!(no_proxy_matches("*", "anything.example"));
        assert!(no_proxy_matches("example.com", "example.com"));
        assert!(no_proxy_matches("example.com", "auth.EXAMPLE.com"));
        assert!(no_proxy_matches(".example.com", "auth.example.com"));
        assert!(no_proxy_matches("*.example.com", "auth.example.com"));
        assert!(no_proxy_matches("other, 127.0.0.1:8080", "127.0.0.1"));
        assert!(no_proxy_matches("[::1]:443", "::1"));
        assert!(no_proxy_matches("::1", "::1"));
        assert!(!no_proxy_matches("example.com", "notexample.com"));
        assert!(!no_proxy_matches("", "example.com"));
        assert!(!no_proxy_matches("127.0.0.1", "127.0.0.2"));
    }

    #[test]
    fn addresses_in_the_url_need_no_lookup_and_names_do() {
        let literal = |uri: &str| literal_address(&uri.parse().unwrap());
        assert_eq!(
            literal("http://127.0.0.1:8080/token"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            literal("https://[::1]/token"),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(
            literal("http://10.0.0.5/token"),
            Some("10.0.0.5:80".parse().unwrap())
        );
        assert_eq!(literal("https://localhost:8443/token"), None);
        assert_eq!(literal("https://auth.example.com/token"), None);
    }

    #[test]
    fn an_address_is_answered_without_the_timed_lookup() {
        // With no time left at all, a lookup on a thread (ureq's own
        // resolver) would give up; the address of the URL needs none.
        let none_left = NextTimeout {
            after: std::time::Duration::ZERO.into(),
            reason: ureq::Timeout::Resolve,
            ..NextTimeout::default()
        };
        let config = Agent::config_builder().build();
        let uri: Uri = "http://127.0.0.1:8080/token".parse().unwrap();
        let addresses = LiteralFirstResolver::default()
            .resolve(&uri, &config, none_left)
            .unwrap();
        assert_eq!(addresses.as_ref(), ["127.0.0.1:8080".parse().unwrap()]);
    }

    #[test]
    fn a_closed_port_is_connection_refused() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = UreqTransport::new().send(&request_to(port)).unwrap_err();
        assert_eq!(error, TransportError::ConnectionRefused);
    }
}
