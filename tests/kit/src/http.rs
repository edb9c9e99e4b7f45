//! Plain HTTP requests to nginx and the fakes, through ureq: one-shot requests on a fresh
//! connection, a keep-alive client, and a load helper. Wire-level cases (exact bytes, malformed
//! requests, connection reuse) use [`crate::RawConnection`] instead.
//!
//! Nothing here resends a request: a request that fails (refused, reset, closed before the
//! answer, timed out) is reported as failed, so a test sees every request nginx dropped.

use serde_json::Value;
use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::env::scaled;
use crate::wire::{find_header, Headers};

/// Connect and answer timeout of the HTTP helpers (times [`crate::time_scale`]).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in the order received (names in lower case).
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of this header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// An agent that reports every status as a response (not an error), follows no redirects,
/// sends any method, and keeps at most one idle connection when `keep_alive`.
fn agent(timeout: Duration, keep_alive: bool) -> ureq::Agent {
    let idle = usize::from(keep_alive);
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build()
        .new_agent()
}

/// ureq's error as the io::Error the tests match on: timeouts as `TimedOut`, socket errors
/// (refused, reset, EOF) as themselves.
fn io_error(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, format!("timeout: {t}")),
        e => e.into_io(),
    }
}

fn send(
    agent: &ureq::Agent,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> io::Result<Response> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if close
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req = req.header("Connection", "close");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let result = match body {
        Some(body) => req
            .body(body.to_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .and_then(|r| agent.run(r).map_err(io_error)),
        None => req
            .body(())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .and_then(|r| agent.run(r).map_err(io_error)),
    };
    let mut resp = result?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(io_error)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// GET `path` from 127.0.0.1:`port` on a new connection; panics on transport errors.
pub fn http_get(port: u16, path: &str) -> Response {
    http_request(port, "GET", path, &[], None)
}

/// One request on a new connection (`Connection: close` unless the headers say otherwise);
/// panics on transport errors.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    try_http_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://127.0.0.1:{port}{path} failed: {e}"))
}

/// [`http_request`] returning transport errors (refused, timed out, reset) instead.
pub fn try_http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    try_http_request_timeout(port, method, path, headers, body, CLIENT_TIMEOUT)
}

/// [`try_http_request`] with another connect and answer timeout (times
/// [`crate::time_scale`]), e.g. short, against a server that is expected to hang.
pub fn try_http_request_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let agent = agent(scaled(timeout), false);
    send(&agent, port, method, path, headers, body, true)
}

/// Sends requests on one kept-alive connection, opening a new one when the server closed it
/// (said `Connection: close`, or closed it while idle). A request that fails is an error,
/// never sent again.
pub struct KeepAliveClient {
    port: u16,
    agent: ureq::Agent,
}

impl KeepAliveClient {
    pub fn new(port: u16) -> Self {
        KeepAliveClient {
            port,
            agent: agent(scaled(CLIENT_TIMEOUT), true),
        }
    }

    /// GET; panics on transport errors.
    pub fn get(&mut self, path: &str) -> Response {
        let port = self.port;
        self.try_get(path)
            .unwrap_or_else(|e| panic!("keep-alive GET http://127.0.0.1:{port}{path}: {e}"))
    }

    pub fn try_get(&mut self, path: &str) -> io::Result<Response> {
        self.try_request("GET", path, &[], None)
    }

    /// Any request on the kept connection.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        send(&self.agent, self.port, method, path, headers, body, false)
    }
}

/// Sends `total` GETs over `concurrency` threads, each with its own [`KeepAliveClient`].
/// Returns every status; 0 stands for a request that failed at the transport level (it is not
/// sent again).
pub fn hammer(port: u16, path: &str, total: usize, concurrency: usize) -> Vec<u16> {
    let threads = concurrency.clamp(1, total.max(1));
    let handles: Vec<JoinHandle<Vec<u16>>> = (0..threads)
        .map(|i| {
            let n = total / threads + usize::from(i < total % threads);
            let path = path.to_string();
            thread::spawn(move || {
                let mut client = KeepAliveClient::new(port);
                (0..n)
                    .map(|_| client.try_get(&path).map(|r| r.status).unwrap_or(0))
                    .collect()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("hammer thread panicked"))
        .collect()
}

/// Wall-clock time of `n` sequential GETs on one keep-alive connection (the first includes the
/// TCP connect). Panics on transport errors.
pub fn latencies(port: u16, path: &str, n: usize) -> Vec<Duration> {
    let mut client = KeepAliveClient::new(port);
    (0..n)
        .map(|_| {
            let t = Instant::now();
            client.get(path);
            t.elapsed()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that answers each of `answers` on its own accepted connection, after reading
    /// the request head; returns the port and what it read.
    fn scripted(answers: Vec<&'static [u8]>) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(answer).unwrap();
            }
            seen
        });
        (port, t)
    }

    #[test]
    fn client_decodes_chunked_bodies_and_sends_connection_close() {
        let (port, server) = scripted(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
        ]);
        let resp = http_get(port, "/p?q=1");
        let seen = server.join().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "hello, world");
        assert_eq!(resp.header("x-a"), Some("1"));
        assert_eq!(resp.header_all("X-A"), vec!["1"]);
        let req = seen[0].to_ascii_lowercase();
        assert!(req.starts_with("get /p?q=1 http/1.1\r\n"), "{req}");
        assert!(req.contains("connection: close\r\n"), "{req}");
    }

    #[test]
    fn a_request_the_server_drops_fails_and_is_not_sent_again() {
        // The server reads the request and closes without a word.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let mut requests = 0;
            listener.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 4096];
                        if s.read(&mut buf).unwrap_or(0) > 0 {
                            requests += 1;
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            requests
        });
        let err = try_http_request(port, "GET", "/", &[], None).expect_err("no answer");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let mut client = KeepAliveClient::new(port);
        assert!(client.try_get("/").is_err());
        assert_eq!(
            server.join().unwrap(),
            2,
            "each request was sent exactly once"
        );
    }

    #[test]
    fn refused_and_timed_out_requests_say_so() {
        let port = crate::closed_port();
        let err = try_http_request(port, "GET", "/", &[], None).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");

        let (port, _listener) = crate::hanging_listener();
        let t = Instant::now();
        let err = try_http_request_timeout(port, "GET", "/", &[], None, Duration::from_millis(300))
            .expect_err("a hanging listener must not answer");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(t.elapsed() >= Duration::from_millis(300));
    }
}
