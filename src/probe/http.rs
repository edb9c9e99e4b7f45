//! The HTTP side of a probe, without I/O: the request bytes, reading the status line out of
//! the response as it arrives, and how much of the rest is read and discarded.
//!
//! `net.rs` moves the bytes over nginx connections; everything here is plain Rust.

use crate::conf::probe_spec::ProbeSpec;
use crate::vocab::reason::Reason;

/// Most bytes of a response (status line, headers and body) a probe reads; the rest is left
/// unread when the connection closes.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Longest status line accepted (`HTTP/1.1 200 OK` plus a long reason phrase).
const MAX_STATUS_LINE: usize = 1024;

/// The `User-Agent` of every probe (as the thread-based probes sent it).
pub const USER_AGENT: &str = concat!("nginx-status-alert/", env!("CARGO_PKG_VERSION"));

/// The `GET` request of an HTTP(S) probe: `Host`, `User-Agent`, `Connection: close`, and basic
/// authentication when the URL carries `user:password@`.
pub fn request(spec: &ProbeSpec) -> Vec<u8> {
    let t = &spec.target;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n",
        t.path,
        t.authority()
    );
    if let Some(userinfo) = &t.userinfo {
        req.push_str("Authorization: Basic ");
        req.push_str(&base64(userinfo.as_bytes()));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// What a response has told so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The status line is not complete yet.
    NeedMore,
    /// The status line arrived; the rest is being discarded.
    Status(u16),
}

/// Reads a response fed in pieces: keeps bytes only until the status line is complete, then
/// watches for the end of the header section and counts (and drops) the rest up to
/// [`MAX_RESPONSE`].
#[derive(Debug, Default)]
pub struct ResponseReader {
    line: Vec<u8>,
    status: Option<u16>,
    seen: usize,
    /// The blank line that ends the headers has arrived.
    head_done: bool,
    /// The last bytes of the header section so far, to find its end across pieces.
    tail: Vec<u8>,
}

impl ResponseReader {
    /// Takes the next bytes received. A response that is not HTTP/1.x fails as `reset`, as a
    /// broken connection would; one whose headers do not end within [`MAX_RESPONSE`] never
    /// becomes an answer and fails as `timeout`, like one that never comes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, Reason> {
        self.seen = self.seen.saturating_add(data.len());
        if let Some(status) = self.status {
            self.watch_head(data);
            return self.checked(status);
        }
        self.line.extend_from_slice(data);
        match self.line.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let status = parse_status_line(&self.line[..end]).ok_or(Reason::Reset)?;
                self.status = Some(status);
                let rest = self.line.split_off(end + 1);
                self.line = Vec::new();
                // The status line's own newline may start the blank line of an empty head.
                self.tail = b"\n".to_vec();
                self.watch_head(&rest);
                self.checked(status)
            }
            None if self.line.len() > MAX_STATUS_LINE => Err(Reason::Reset),
            None if !plausible_prefix(&self.line) => Err(Reason::Reset),
            None => Ok(Progress::NeedMore),
        }
    }

    fn watch_head(&mut self, data: &[u8]) {
        if self.head_done {
            return;
        }
        let mut window = core::mem::take(&mut self.tail);
        window.extend_from_slice(data);
        self.head_done =
            window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n");
        let keep = window.len().saturating_sub(2);
        self.tail = window.split_off(keep);
    }

    fn checked(&self, status: u16) -> Result<Progress, Reason> {
        if !self.head_done && self.seen >= MAX_RESPONSE {
            return Err(Reason::Timeout);
        }
        Ok(Progress::Status(status))
    }

    /// The status, once its line is complete.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Enough has been read: the response may be abandoned.
    pub fn done(&self) -> bool {
        self.status.is_some() && self.seen >= MAX_RESPONSE
    }

    /// How many more bytes are worth reading.
    pub fn room(&self) -> usize {
        MAX_RESPONSE.saturating_sub(self.seen).max(1)
    }
}

/// `HTTP/1.x SSS[ reason]` (with or without the `\r`): the status code.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&status).then_some(status)
}

/// Whether the bytes so far can still become an HTTP/1.x status line.
fn plausible_prefix(bytes: &[u8]) -> bool {
    let n = bytes.len().min(5);
    bytes[..n] == b"HTTP/"[..n]
}

/// The failure a system error number means for a probe.
pub fn reason_for_errno(errno: i32) -> Reason {
    match errno {
        libc::ECONNREFUSED => Reason::Refused,
        libc::ETIMEDOUT => Reason::Timeout,
        _ => Reason::Reset,
    }
}

/// Standard base64 for basic authentication (RFC 4648 with padding).
pub fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::probe_spec::parse;

    fn spec(args: &[&str]) -> ProbeSpec {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, false).unwrap()
    }

    #[test]
    fn a_head_that_never_ends_within_the_limit_fails_as_timeout() {
        let mut r = ResponseReader::default();
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nX-Big: "),
            Ok(Progress::Status(200))
        );
        let mut result = Ok(Progress::NeedMore);
        for _ in 0..(MAX_RESPONSE / 1024 + 1) {
            result = r.feed(&[b'a'; 1024]);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Reason::Timeout));
        // A head that ends, split across pieces, then a long body: fine.
        let mut r = ResponseReader::default();
        r.feed(b"HTTP/1.1 204 No Content\r\nA: b\r").unwrap();
        r.feed(b"\n\r").unwrap();
        assert_eq!(r.feed(b"\n"), Ok(Progress::Status(204)));
        assert_eq!(r.feed(&vec![b'x'; MAX_RESPONSE]), Ok(Progress::Status(204)));
        assert!(r.done());
        // A head-only answer in one piece.
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.0 200 OK\n\n"), Ok(Progress::Status(200)));
    }

    #[test]
    fn request_bytes() {
        let r = request(&spec(&["http://127.0.0.1:8080/health?deep=1"]));
        assert_eq!(
            String::from_utf8(r).unwrap(),
            format!(
                "GET /health?deep=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
                 User-Agent: nginx-status-alert/{}\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let r = request(&spec(&["https://Aladdin:opensesame@h/"]));
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"), "{r}");
        assert!(
            r.contains("Authorization: Basic QWxhZGRpbjpvcGVuc2VzYW1l\r\n"),
            "{r}"
        );
        let peer = spec(&["upstream=b", "uri=/hc"]).for_peer("[::1]:81".parse().unwrap());
        let r = String::from_utf8(request(&peer)).unwrap();
        assert!(
            r.starts_with("GET /hc HTTP/1.1\r\nHost: [::1]:81\r\n"),
            "{r}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Some(204));
        for bad in [
            &b"HTTP/1.1 20 OK"[..],
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 abc",
            b"HTTP/2 200",
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 999 x",
            b"",
        ] {
            assert_eq!(parse_status_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reader_in_pieces() {
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HT"), Ok(Progress::NeedMore));
        assert_eq!(r.feed(b"TP/1.1 50"), Ok(Progress::NeedMore));
        assert_eq!(
            r.feed(b"3 Unavailable\r\nContent-"),
            Ok(Progress::Status(503))
        );
        assert_eq!(r.status(), Some(503));
        assert!(!r.done());
        assert_eq!(r.feed(b"Length: 99999\r\n\r\n"), Ok(Progress::Status(503)));
        let body = vec![b'x'; MAX_RESPONSE];
        assert_eq!(r.feed(&body), Ok(Progress::Status(503)));
        assert!(r.done());
    }

    #[test]
    fn reader_rejects_garbage_early() {
        assert_eq!(
            ResponseReader::default().feed(b"SSH-2.0\r\n"),
            Err(Reason::Reset)
        );
        assert_eq!(ResponseReader::default().feed(b"hello"), Err(Reason::Reset));
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.1 "), Ok(Progress::NeedMore));
        assert_eq!(r.feed(&[b'9'; 2000]), Err(Reason::Reset));
    }

    #[test]
    fn errnos() {
        assert_eq!(reason_for_errno(libc::ECONNREFUSED), Reason::Refused);
        assert_eq!(reason_for_errno(libc::ETIMEDOUT), Reason::Timeout);
        assert_eq!(reason_for_errno(libc::ECONNRESET), Reason::Reset);
        assert_eq!(reason_for_errno(libc::EPIPE), Reason::Reset);
    }

    #[test]
    fn base64_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
