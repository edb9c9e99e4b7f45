//! HTTP/1.1 on the wire: a small client (one-shot, keep-alive, load helpers) and the message
//! framing that the test servers share with it.
//!
//! Our own client rather than a crate such as ureq: tests need the exact bytes on the wire
//! (their own Host, Connection and framing headers, any method, HEAD and 1xx handling, counted
//! reconnects), which general-purpose clients normalise or hide.

use serde_json::Value;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Per-read timeout of the HTTP client helpers.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Wire format, shared by the client and the test servers
// ---------------------------------------------------------------------------------------------

/// Header fields in wire order, names as sent.
pub type Headers = Vec<(String, String)>;

const MAX_LINE: u64 = 64 * 1024;
const MAX_HEADERS: usize = 200;

pub(super) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', buf)?;
    if n as u64 == MAX_LINE && !buf.ends_with(b"\n") {
        return Err(invalid("HTTP line longer than 64 KiB"));
    }
    Ok(n)
}

/// Start line and headers; None on a clean EOF before the first byte of a message.
pub(super) fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
    let mut line = Vec::new();
    let start = loop {
        if read_line(r, &mut line)? == 0 {
            return Ok(None);
        }
        // Stray CRLFs between messages are allowed and ignored (RFC 9112, section 2.2).
        let s = trim_crlf(&line);
        if !s.is_empty() {
            break String::from_utf8_lossy(s).into_owned();
        }
    };
    let mut headers = Vec::new();
    loop {
        if read_line(r, &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of the headers",
            ));
        }
        let s = trim_crlf(&line);
        if s.is_empty() {
            return Ok(Some((start, headers)));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("more than 200 header lines"));
        }
        let s = String::from_utf8_lossy(s);
        let (k, v) = s
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {s:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Empty,
    Chunked,
    Length(usize),
    UntilEof,
}

pub(super) fn body_kind(headers: &[(String, String)], is_response: bool) -> io::Result<BodyKind> {
    if let Some(te) = find_header(headers, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return Ok(BodyKind::Chunked);
        }
        if is_response {
            return Ok(BodyKind::UntilEof);
        }
        return Err(invalid(format!(
            "unsupported request Transfer-Encoding {te:?}"
        )));
    }
    if let Some(cl) = find_header(headers, "content-length") {
        let n = cl
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
        return Ok(BodyKind::Length(n));
    }
    Ok(if is_response {
        BodyKind::UntilEof
    } else {
        BodyKind::Empty
    })
}

pub(super) fn read_body<R: BufRead>(r: &mut R, kind: BodyKind) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        BodyKind::UntilEof => {
            r.read_to_end(&mut body)?;
        }
        BodyKind::Chunked => {
            let mut line = Vec::new();
            loop {
                if read_line(r, &mut line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    ));
                }
                let text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
                if size == 0 {
                    // Trailer fields, up to the empty line (or EOF from a sloppy peer).
                    while read_line(r, &mut line)? != 0 && !trim_crlf(&line).is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])?;
                read_line(r, &mut line)?;
                if !trim_crlf(&line).is_empty() {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
            }
        }
    }
    Ok(body)
}

pub(super) fn connection_keeps_alive(version: &str, headers: &[(String, String)]) -> bool {
    let conn = find_header(headers, "connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    if conn.split(',').any(|t| t.trim() == "close") {
        return false;
    }
    if version.eq_ignore_ascii_case("HTTP/1.1") {
        return true;
    }
    conn.split(',').any(|t| t.trim() == "keep-alive")
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
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

fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[allow(clippy::too_many_arguments)]
fn write_request(
    w: &mut impl Write,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    keep_alive: bool,
) -> io::Result<()> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "Host: 127.0.0.1:{port}\r\n");
    }
    if !has("connection") {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(head, "Connection: {conn}\r\n");
    }
    if let Some(body) = body {
        if !has("content-length") && !has("transfer-encoding") {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
    }
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body.unwrap_or_default());
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one response (skipping 1xx interim ones); also says whether the connection may be
/// reused.
fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<(Response, bool)> {
    loop {
        let (start, headers) = read_head(r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response status line",
            )
        })?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/") {
            return Err(invalid(format!("bad status line {start:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let kind = if method.eq_ignore_ascii_case("HEAD")
            || status == 204
            || status == 304
            || (100..200).contains(&status)
        {
            BodyKind::Empty
        } else {
            body_kind(&headers, true)?
        };
        let keep = kind != BodyKind::UntilEof && connection_keeps_alive(&version, &headers);
        let body = read_body(r, kind)?;
        return Ok((
            Response {
                status,
                headers,
                body,
            },
            keep,
        ));
    }
}

/// GET `path` from 127.0.0.1:`port` on a new connection; panics on transport errors.
pub fn http_get(port: u16, path: &str) -> Response {
    http_request(port, "GET", path, &[], None)
}

/// One request on a new connection (`Connection: close`, Host and Content-Length added unless
/// given); panics on transport errors.
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

/// [`try_http_request`] with a custom connect/read/write timeout (e.g. short, against a server
/// that is expected to hang).
pub fn try_http_request_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = connect(port, timeout)?;
    write_request(&mut stream, port, method, path, headers, body, false)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method).map(|(resp, _)| resp)
}

/// True for errors meaning "the peer closed a reused keep-alive connection".
fn is_stale_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reuses one connection for many requests, reconnecting when the server closes it.
pub struct KeepAliveClient {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    connects: usize,
}

impl KeepAliveClient {
    pub fn new(port: u16) -> Self {
        KeepAliveClient {
            port,
            conn: None,
            connects: 0,
        }
    }

    /// How many TCP connections this client has opened so far.
    pub fn connects(&self) -> usize {
        self.connects
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
        if self.conn.is_some() {
            match self.once(method, path, headers, body) {
                Ok(resp) => return Ok(resp),
                // The server may have closed the idle connection (keepalive_timeout) before
                // our request reached it; nothing was processed, so resend once on a new one.
                Err(e) if is_stale_connection(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.once(method, path, headers, body)
    }

    fn once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(connect(self.port, CLIENT_TIMEOUT)?));
            self.connects += 1;
        }
        let reader = self.conn.as_mut().expect("connection was just opened");
        let port = self.port;
        let result = write_request(reader.get_mut(), port, method, path, headers, body, true)
            .and_then(|()| read_response(reader, method));
        match result {
            Ok((resp, keep)) => {
                if !keep {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Sends `total` GETs over `concurrency` threads, each on its own keep-alive connection
/// (reconnecting whenever the server closes it). Returns every status; 0 stands for a request
/// that failed at the transport level.
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

/// Nearest-rank percentile; `p` is in 0..=100 (e.g. 99.0).
pub fn percentile(durations: &[Duration], p: f64) -> Duration {
    assert!(!durations.is_empty(), "percentile of no samples");
    assert!(
        (0.0..=100.0).contains(&p),
        "percentile {p} is not in 0..=100"
    );
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
