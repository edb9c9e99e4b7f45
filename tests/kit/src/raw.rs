//! The one raw-socket client, for wire-level cases that a client crate normalises away:
//! malformed requests, several requests on one connection (keep-alive reuse), and the bytes of
//! a response exactly as received (chunked framing included).

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::env::scaled;
use crate::http::{Response, CLIENT_TIMEOUT};
use crate::wire::{body_kind, connection_keeps_alive, invalid, read_body, read_head, BodyKind};

/// A response read by [`RawConnection::read_response`]: parsed, and as it came off the wire.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status, headers and the decoded body.
    pub response: Response,
    /// Every byte of this response (interim 1xx responses, head and body as framed).
    pub bytes: Vec<u8>,
    /// Whether the server lets the connection be used for another request.
    pub keep_alive: bool,
}

/// One TCP connection to 127.0.0.1:`port`. Sends what it is given, reads what comes; never
/// reconnects and never resends.
pub struct RawConnection {
    port: u16,
    reader: BufReader<TcpStream>,
}

/// A [`BufRead`] that keeps a copy of every byte consumed through it.
struct Recording<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: BufRead> Read for Recording<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Recording<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.seen.extend_from_slice(&buf[..n]);
        }
        self.inner.consume(amt);
    }
}

impl RawConnection {
    /// Connects, with [`CLIENT_TIMEOUT`] (times [`crate::time_scale`]) for the connect and
    /// every read and write.
    pub fn open(port: u16) -> io::Result<RawConnection> {
        let timeout = scaled(CLIENT_TIMEOUT);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            port,
            reader: BufReader::new(stream),
        })
    }

    /// The socket, e.g. to change its timeouts or shut down one direction.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Writes a well-formed HTTP/1.1 request: Host and (with a body) Content-Length are added
    /// unless given; no Connection header unless given (HTTP/1.1 keeps the connection).
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<()> {
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            let _ = write!(head, "Host: 127.0.0.1:{}\r\n", self.port);
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
        self.send(&buf)
    }

    /// Reads one response to a request with `method` (skipping interim 1xx ones).
    pub fn read_response(&mut self, method: &str) -> io::Result<RawResponse> {
        let mut r = Recording {
            inner: &mut self.reader,
            seen: Vec::new(),
        };
        loop {
            let (start, headers) = read_head(&mut r)?.ok_or_else(|| {
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
            let keep_alive =
                kind != BodyKind::UntilEof && connection_keeps_alive(&version, &headers);
            let body = read_body(&mut r, kind)?;
            return Ok(RawResponse {
                response: Response {
                    status,
                    headers,
                    body,
                },
                bytes: r.seen,
                keep_alive,
            });
        }
    }

    /// [`RawConnection::send_request`], then [`RawConnection::read_response`].
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<RawResponse> {
        self.send_request(method, path, headers, body)?;
        self.read_response(method)
    }

    /// Everything the server sends until it closes the connection.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader.read_to_end(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn raw_responses_keep_their_bytes_and_chunked_framing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let wire: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            s.write_all(wire).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let mut conn = RawConnection::open(port).unwrap();
        let raw = conn.request("GET", "/x", &[("X-B", "2")], None).unwrap();
        let request = server.join().unwrap();
        assert_eq!(
            request,
            format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-B: 2\r\n\r\n")
        );
        assert_eq!(raw.response.status, 200);
        assert_eq!(raw.response.text(), "hello, world");
        assert_eq!(raw.response.header("x-a"), Some("1"));
        assert_eq!(raw.bytes, wire, "{:?}", String::from_utf8_lossy(&raw.bytes));
        assert!(raw.keep_alive);
    }

    #[test]
    fn malformed_bytes_go_out_as_they_are() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nno").unwrap();
            buf[..n].to_vec()
        });
        let mut conn = RawConnection::open(port).unwrap();
        conn.send(b"BAD REQUEST LINE\r\n\r\n").unwrap();
        let raw = conn.read_response("GET").unwrap();
        assert_eq!(server.join().unwrap(), b"BAD REQUEST LINE\r\n\r\n");
        assert_eq!(
            (raw.response.status, raw.response.text().as_str()),
            (400, "no")
        );
        assert!(!raw.keep_alive, "an HTTP/1.0 answer read to EOF");
    }
}
