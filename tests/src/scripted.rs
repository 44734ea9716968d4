//! A scripted token endpoint that misbehaves on purpose.
//!
//! This is not an OAuth server: it answers every request with whatever the
//! test's script returns, and records what it was sent. The tests use it for
//! what a real server will not do on demand (non-ASCII credentials decoded
//! per RFC 6749 section 2.3.1, broken bodies, redirects, silence). It listens
//! on 127.0.0.1 only and stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path with query.
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The client id and secret of an `Authorization: Basic` header,
    /// decoded as RFC 6749 section 2.3.1 says: base64, split at the first
    /// `:`, then each part form-urldecoded.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        let value = self.header("authorization")?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| -> String {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some((unescape(id), unescape(secret)))
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A full HTTP response.
    Respond {
        /// Status code.
        status: u16,
        /// Headers besides `Content-Length` and `Connection`.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Read the request and never answer (until the server is dropped).
    Silence,
    /// Write these bytes as they are, then close the connection: for
    /// truncated bodies, wrong `Content-Length`s and broken heads.
    Raw(Vec<u8>),
    /// Wait, then give the inner reply (bounded by the caller's choice).
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A response with `content_type` (none when `None`) and `body`.
    pub fn typed(status: u16, content_type: Option<&str>, body: &str) -> Self {
        Reply::Respond {
            status,
            headers: content_type
                .map(|value| vec![("Content-Type".to_owned(), value.to_owned())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// A JSON response compressed with gzip, with `Content-Encoding: gzip`.
    pub fn gzip_json(status: u16, body: &str) -> Self {
        use flate2::write::GzEncoder;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body.as_bytes()).unwrap();
        Reply::Respond {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Encoding".into(), "gzip".into()),
            ],
            body: encoder.finish().unwrap(),
        }
    }

    /// This reply with one more header.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self {
            Reply::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.to_owned(), value.to_owned()));
                Reply::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

/// The running scripted server.
pub struct ScriptedServer {
    /// `http://127.0.0.1:PORT` (`https://` for [`ScriptedServer::start_tls`]).
    pub base: String,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedServer {
    /// Starts a server that answers each request with `script(request)`.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(None, script)
    }

    /// The same server behind TLS with `tls` (a real rustls handshake; see
    /// [`crate::tls`] for certificates).
    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(Some(tls), script)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{addr}");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let (requests, stop, script) = (requests.clone(), stop.clone(), script.clone());
                    let tls = tls.clone();
                    std::thread::spawn(move || match tls {
                        None => serve(stream, &requests, &stop, &*script),
                        Some(config) => {
                            let Ok(connection) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let stream = rustls::StreamOwned::new(connection, stream);
                            serve(stream, &requests, &stop, &*script)
                        }
                    });
                }
            });
        }
        ScriptedServer {
            base,
            addr,
            requests,
            stop,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint URL (any path works; this one reads well).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(
    stream: S,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
    script: &Script,
) {
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        requests.lock().unwrap().push(request.clone());
        let mut reply = script(&request);
        while let Reply::Delayed(delay, inner) = reply {
            std::thread::sleep(delay);
            reply = *inner;
        }
        match reply {
            Reply::Delayed(..) => unreachable!("delays are unwrapped above"),
            Reply::Raw(bytes) => {
                let stream = reader.get_mut();
                let _ = stream.write_all(&bytes);
                let _ = stream.flush();
                return;
            }
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} Scripted\r\n");
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let stream = reader.get_mut();
                if stream.write_all(head.as_bytes()).is_err()
                    || stream.write_all(&body).is_err()
                    || stream.flush().is_err()
                {
                    return;
                }
            }
            Reply::Silence => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

fn read_request<S: Read>(reader: &mut BufReader<S>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}
