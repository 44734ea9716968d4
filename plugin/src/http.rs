//! The real [`Transport`]: one POST with ureq 3, as plain as possible.
//!
//! This file owns the HTTP client's settings (no redirects, time limits, body
//! cap, status codes returned rather than raised) and the translation of
//! ureq's errors into [`TransportError`]s that say refused, DNS or timeout.
//! What the request holds and what the response means is `token.rs`'s
//! business.
//!
//! ureq logs through the `log` crate under its own targets; the host bridge
//! (`posthandler_abi::logging`) forwards only `posthandler_oauth2` targets, so
//! ureq's records, which may show headers at trace level, never leave the
//! plugin.

use std::io;
use std::time::Duration;

use ureq::Agent;

use crate::token::HttpResponse;
use crate::token::TokenRequest;
use crate::token::Transport;
use crate::token::TransportError;

/// Time allowed to open the connection, TLS handshake included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for the whole exchange, from resolving the host to the last
/// byte of the body; a token endpoint that takes longer is treated as down.
pub const OVERALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The most body bytes read; a token response is a few hundred bytes, so
/// anything near this is not one.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Sends token requests with a ureq [`Agent`], reusing connections.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    agent: Agent,
}

impl UreqTransport {
    /// A transport with the plugin's settings.
    pub fn new() -> Self {
        let config = Agent::config_builder()
            // 4xx bodies carry the RFC 6749 section 5.2 error: read them.
            .http_status_as_error(false)
            // A redirect would carry the client secret to a place nobody
            // configured; 0 returns the 3xx response as it is.
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(OVERALL_TIMEOUT))
            .user_agent(concat!("posthandler-oauth2/", env!("CARGO_PKG_VERSION")))
            .build();
        UreqTransport {
            agent: config.new_agent(),
        }
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for UreqTransport {
    fn send(&self, request: &TokenRequest) -> Result<HttpResponse, TransportError> {
        let mut builder = self.agent.post(request.url.url().as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder
            .send(request.body.as_bytes())
            .map_err(transport_error)?;

        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(transport_error)?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Describes a ureq error without quoting the request: some variants hold a
/// header or the URL, which may carry credentials.
fn transport_error(error: ureq::Error) -> TransportError {
    match error {
        ureq::Error::HostNotFound => TransportError::HostNotFound,
        ureq::Error::Io(error) => io_error(&error),
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            TransportError::Timeout(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        }
        ureq::Error::Timeout(ureq::Timeout::Global) => TransportError::Timeout(format!(
            "no complete response within {} s",
            OVERALL_TIMEOUT.as_secs()
        )),
        ureq::Error::Timeout(which) => TransportError::Timeout(format!("{which}")),
        ureq::Error::BodyExceedsLimit(limit) => TransportError::BodyTooLarge(limit),
        ureq::Error::Tls(reason) => TransportError::Tls(reason.to_owned()),
        ureq::Error::Rustls(error) => TransportError::Tls(error.to_string()),
        ureq::Error::Pem(_) => TransportError::Tls("unreadable certificate".to_owned()),
        ureq::Error::ConnectionFailed => TransportError::Other("connection failed".to_owned()),
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            TransportError::Other("malformed HTTP response".to_owned())
        }
        ureq::Error::ConnectProxyFailed(_) | ureq::Error::InvalidProxyUrl => {
            TransportError::Other("the HTTP proxy refused or is misconfigured".to_owned())
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            TransportError::Other("the HTTP client could not build the request".to_owned())
        }
        _ => TransportError::Other("HTTP client error".to_owned()),
    }
}

fn io_error(error: &io::Error) -> TransportError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => TransportError::ConnectionRefused,
        io::ErrorKind::TimedOut => TransportError::Timeout("the network timed out".to_owned()),
        // io errors describe the socket (reset, unreachable), never the request.
        _ => TransportError::Other(error.to_string()),
    }
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
    fn serve_once(response: &'static str) -> (u16, thread::JoinHandle<String>) {
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
        let mut system = system("id", "secret", ClientAuthentication::Header);
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
