//! A test-only HTTP CONNECT proxy on 127.0.0.1.
//!
//! It is a real proxy in the sense that matters to the plugin: it reads a
//! `CONNECT host:port` request, answers `200`, and tunnels bytes both ways.
//! It records every target it was asked for. It never connects anywhere but
//! loopback: a target that is not a loopback address goes to the
//! `upstream` given at start (so tests can use names like
//! `auth.example.test` without any traffic leaving the machine), or is
//! refused with `502` when there is none. Stops when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The running proxy.
pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    /// A proxy that tunnels to loopback targets only.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A proxy that tunnels every target to `upstream` (a loopback address),
    /// whatever host the client named.
    pub fn start_to(upstream: SocketAddr) -> Self {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only reaches loopback"
        );
        Self::start_with(Some(upstream))
    }

    fn start_with(upstream: Option<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (targets, stop) = (targets.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let targets = targets.clone();
                    std::thread::spawn(move || tunnel(stream, upstream, &targets));
                }
            });
        }
        ConnectProxy {
            url: format!("http://{addr}"),
            addr,
            targets,
            stop,
        }
    }

    /// The `host:port` of every CONNECT request so far (and `GET ...` lines
    /// of any request that was not a CONNECT).
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn tunnel(client: TcpStream, upstream: Option<SocketAddr>, targets: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    // Skip the rest of the head (Host, Proxy-Authorization, ...).
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut client = client;
    if method != "CONNECT" {
        targets.lock().unwrap().push(format!("{method} {target}"));
        let _ = client.write_all(b"HTTP/1.1 405 Only CONNECT\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    targets.lock().unwrap().push(target.to_owned());
    let destination = upstream.or_else(|| {
        let addr: SocketAddr = target.parse().ok()?;
        let loopback = match addr.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback(),
        };
        loopback.then_some(addr)
    });
    let server = destination.and_then(|addr| TcpStream::connect(addr).ok());
    let Some(server) = server else {
        let _ = client.write_all(b"HTTP/1.1 502 Not Reachable From Test Proxy\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    // Bytes the reader took past the head belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let mut to_server = server.try_clone().unwrap();
    let _ = to_server.write_all(&buffered);
    let mut from_client = reader.into_inner();
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut from_server = server;
    let _ = std::io::copy(&mut from_server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
}
