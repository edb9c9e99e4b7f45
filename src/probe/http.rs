//! The HTTP side of a probe, without I/O: the request bytes, reading the response as it
//! arrives (status line, headers, the body when a check needs it), and what the answer means
//! for the probe (its status, `header=`, `body=`, `max_time=`).
//!
//! `net.rs` moves the bytes over nginx connections; everything here is plain Rust.

use crate::conf::probe_spec::{ProbeSpec, MAX_BODY};
use crate::vocab::reason::Reason;

/// Most bytes of a response (status line, headers and body) a probe reads; the rest is left
/// unread when the connection closes.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Longest status line accepted (`HTTP/1.1 200 OK` plus a long reason phrase).
const MAX_STATUS_LINE: usize = 1024;

/// The `User-Agent` of every probe (as the thread-based probes sent it).
pub const USER_AGENT: &str = concat!("nginx-status-alert/", env!("CARGO_PKG_VERSION"));

/// The `GET` request of an HTTP(S) probe: `Host`, `User-Agent`, `Accept-Encoding: identity` (a
/// `body=` check reads the body as sent, never decompressed), `Connection: close`, and basic
/// authentication when the URL carries `user:password@`.
pub fn request(spec: &ProbeSpec) -> Vec<u8> {
    let t = &spec.target;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n",
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
    /// The status line arrived; the rest is being read.
    Status(u16),
}

/// Reads a response fed in pieces: the status line, the header section (kept, up to
/// [`MAX_RESPONSE`]: a head that does not end within it never becomes an answer), then the body:
/// kept up to [`MAX_BODY`] bytes as sent when a `body=` check needs it, otherwise counted and
/// dropped up to [`MAX_RESPONSE`] bytes in all.
#[derive(Debug, Default)]
pub struct ResponseReader {
    /// Keep the body for a `body=` check.
    keep_body: bool,
    line: Vec<u8>,
    status: Option<u16>,
    /// The header section after the status line, while it arrives, then complete.
    head: Vec<u8>,
    /// The blank line that ends the headers has arrived.
    head_done: bool,
    /// The body as sent (chunked framing included), when kept.
    body: Vec<u8>,
    /// Body bytes received, kept or not.
    body_seen: usize,
    seen: usize,
}

impl ResponseReader {
    /// A reader for the checks of `spec`: the body is kept only when a check reads it.
    pub fn new(spec: &ProbeSpec) -> ResponseReader {
        ResponseReader {
            keep_body: spec.checks.need_body(),
            ..ResponseReader::default()
        }
    }

    /// Takes the next bytes received. A response that is not HTTP/1.x fails as `reset`, as a
    /// broken connection would; one whose headers do not end within [`MAX_RESPONSE`] never
    /// becomes an answer and fails as `timeout`, like one that never comes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, Reason> {
        self.seen = self.seen.saturating_add(data.len());
        if let Some(status) = self.status {
            self.take(data);
            return self.checked(status);
        }
        self.line.extend_from_slice(data);
        match self.line.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let status = parse_status_line(&self.line[..end]).ok_or(Reason::Reset)?;
                self.status = Some(status);
                let rest = self.line.split_off(end + 1);
                self.line = Vec::new();
                self.take(&rest);
                self.checked(status)
            }
            None if self.line.len() > MAX_STATUS_LINE => Err(Reason::Reset),
            None if !plausible_prefix(&self.line) => Err(Reason::Reset),
            None => Ok(Progress::NeedMore),
        }
    }

    /// Bytes after the status line: the head until its blank line, then the body.
    fn take(&mut self, data: &[u8]) {
        let mut data = data;
        if !self.head_done {
            // Search from a little before the new bytes: the blank line may straddle pieces.
            let from = self.head.len().saturating_sub(2);
            self.head.extend_from_slice(data);
            // A head of no headers: the status line's newline starts the blank line.
            let end = if self.head.starts_with(b"\r\n") {
                Some(2)
            } else if self.head.starts_with(b"\n") {
                Some(1)
            } else {
                head_end(&self.head[from..]).map(|e| from + e)
            };
            let Some(end) = end else { return };
            self.head_done = true;
            let body = self.head.split_off(end);
            self.count_body(&body);
            return;
        }
        if self.keep_body {
            let room = MAX_BODY.saturating_sub(self.body.len());
            data = &data[..data.len().min(room)];
            self.body.extend_from_slice(data);
        }
        self.body_seen = self.body_seen.saturating_add(data.len());
    }

    fn count_body(&mut self, body: &[u8]) {
        if self.keep_body {
            self.body
                .extend_from_slice(&body[..body.len().min(MAX_BODY)]);
        }
        self.body_seen = body.len();
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

    /// Enough has been read: the response may be abandoned. A kept body is complete at its
    /// `Content-Length`, its last chunk or [`MAX_BODY`] bytes (otherwise at the end of the
    /// stream); without a body check, at [`MAX_RESPONSE`] bytes in all.
    pub fn done(&self) -> bool {
        if self.status.is_none() {
            return false;
        }
        if !self.keep_body {
            return self.seen >= MAX_RESPONSE;
        }
        self.head_done && (self.body.len() >= MAX_BODY || self.body_complete())
    }

    fn body_complete(&self) -> bool {
        if let Some(n) = self
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
        {
            return self.body_seen >= n;
        }
        self.chunked() && dechunk(&self.body).1
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// How many more bytes are worth reading.
    pub fn room(&self) -> usize {
        let left = if self.keep_body && self.head_done {
            MAX_BODY.saturating_sub(self.body.len())
        } else {
            MAX_RESPONSE.saturating_sub(self.seen)
        };
        left.max(1)
    }

    /// The value of the first header called `name` (ASCII case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .split(|b| *b == b'\n')
            .filter_map(|line| core::str::from_utf8(line).ok())
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// What the answer means for the probe, read so far (at the end of the stream, at the
    /// deadline or when [`ResponseReader::done`]): `None` is success. In order: no status is
    /// `reset`, an unexpected one `status`; then `header=`, `body=` (a body in a
    /// `Content-Encoding` other than `identity` cannot be read and fails it), `body_regex=`
    /// (`regex_matches` runs the compiled pattern on the body) and `max_time=` against
    /// `elapsed`.
    pub fn verdict(
        &self,
        spec: &ProbeSpec,
        elapsed_ms: u64,
        regex_matches: &dyn Fn(&[u8]) -> bool,
    ) -> Option<Reason> {
        let Some(status) = self.status else {
            return Some(Reason::Reset);
        };
        if !spec.expects(status) {
            return Some(Reason::Status);
        }
        let checks = &spec.checks;
        if let Some((name, text)) = &checks.header {
            if !self.header(name).is_some_and(|v| v.contains(text.as_str())) {
                return Some(Reason::Header);
            }
        }
        if checks.need_body() {
            let encoded = self
                .header("content-encoding")
                .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
            let body = if self.chunked() {
                dechunk(&self.body).0
            } else {
                self.body.clone()
            };
            let text_ok = checks
                .body
                .as_ref()
                .map_or(true, |text| contains(&body, text.as_bytes()));
            let regex_ok = checks.body_regex.is_none() || regex_matches(&body);
            if encoded || !text_ok || !regex_ok {
                return Some(Reason::Body);
            }
        }
        if checks.max_time_ms.is_some_and(|max| elapsed_ms > max) {
            return Some(Reason::Slow);
        }
        None
    }
}

/// Where the blank line ending a header section is, counted past it.
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\n\r\n") {
            Some(i + 3)
        } else if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The data of a chunked body as far as it arrived, and whether its last chunk came.
/// Chunk extensions and trailers are skipped; a malformed size ends the data there.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.iter().position(|b| *b == b'\n') else {
            return (out, false);
        };
        let line = core::str::from_utf8(&raw[..eol]).unwrap_or("");
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return (out, false);
        };
        raw = &raw[eol + 1..];
        if size == 0 {
            return (out, true);
        }
        let n = size.min(raw.len());
        out.extend_from_slice(&raw[..n]);
        if n < size {
            return (out, false);
        }
        raw = &raw[n..];
        raw = raw.strip_prefix(b"\r").unwrap_or(raw);
        raw = raw.strip_prefix(b"\n").unwrap_or(raw);
    }
}

/// True when `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
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
                 User-Agent: nginx-status-alert/{}\r\nAccept-Encoding: identity\r\n\
                 Connection: close\r\n\r\n",
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

    /// Feeds `pieces` to a reader made for `spec` and returns its verdict after `ms`.
    fn answer(spec: &ProbeSpec, pieces: &[&[u8]], ms: u64) -> (ResponseReader, Option<Reason>) {
        let mut r = ResponseReader::new(spec);
        for p in pieces {
            r.feed(p).unwrap();
        }
        let v = r.verdict(spec, ms, &|b| contains(b, b"rx"));
        (r, v)
    }

    #[test]
    fn answer_checks_in_order() {
        let s = spec(&[
            "http://h/",
            "body=\"ok\": true",
            "header=Content-Type:json",
            "max_time=200ms",
        ]);
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n";
        let (r, v) = answer(&s, &[head, b"{\"ok\": true}"], 50);
        assert_eq!(v, None);
        assert!(r.done(), "complete at Content-Length");
        // Each check fails with its own reason; the status comes first, then header, body, time.
        let (_, v) = answer(&s, &[b"HTTP/1.1 500 x\r\n\r\n"], 50);
        assert_eq!(v, Some(Reason::Status));
        let (_, v) = answer(&s, &[b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n{\"ok\": true}"], 50);
        assert_eq!(v, Some(Reason::Header));
        let (_, v) = answer(&s, &[head, b"{\"ok\": fals"], 50);
        assert_eq!(v, Some(Reason::Body));
        let (_, v) = answer(&s, &[head, b"{\"ok\": true}"], 201);
        assert_eq!(v, Some(Reason::Slow));
        // No status at all: reset.
        let (_, v) = answer(&s, &[b"HTTP/1.1 2"], 1);
        assert_eq!(v, Some(Reason::Reset));
        // body_regex=: the compiled pattern decides (here a stand-in matching "rx").
        let s = spec(&["http://h/", "body_regex=r.", "body=a"]);
        let (_, v) = answer(&s, &[b"HTTP/1.1 200 OK\r\n\r\na rx"], 1);
        assert_eq!(v, None);
        let (_, v) = answer(&s, &[b"HTTP/1.1 200 OK\r\n\r\na r"], 1);
        assert_eq!(v, Some(Reason::Body));
        // header=NAME: checks presence only, any case.
        let s = spec(&["http://h/", "header=X-Ready:"]);
        let (_, v) = answer(&s, &[b"HTTP/1.1 200 OK\r\nx-ready: \r\n\r\n"], 1);
        assert_eq!(v, None);
    }

    #[test]
    fn chunked_bodies_are_reassembled_across_pieces() {
        let s = spec(&["http://h/", "body=hello world"]);
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut r = ResponseReader::new(&s);
        r.feed(head).unwrap();
        r.feed(b"6;ext=1\r\nhello \r\n").unwrap();
        assert!(!r.done());
        r.feed(b"5\r\nwor").unwrap();
        r.feed(b"ld\r\n0\r\n\r\n").unwrap();
        assert!(r.done(), "complete at the last chunk");
        assert_eq!(r.verdict(&s, 1, &|_| false), None);
        // The framing is not part of the text: "hello \r\n5\r\nworld" would not match.
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            (b"abcde".to_vec(), true)
        );
        assert_eq!(dechunk(b"3\r\nab"), (b"ab".to_vec(), false));
        assert_eq!(dechunk(b"zz\r\n"), (Vec::new(), false));
    }

    #[test]
    fn encoded_and_oversized_bodies() {
        let s = spec(&["http://h/", "body=needle"]);
        // A compressed body is not read: body fails, whatever the bytes.
        let (_, v) = answer(
            &s,
            &[b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nneedle"],
            1,
        );
        assert_eq!(v, Some(Reason::Body));
        let (_, v) = answer(
            &s,
            &[b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\n\r\nneedle"],
            1,
        );
        assert_eq!(v, None);
        // Text within the first 64 KiB is found; beyond it is not read.
        let mut r = ResponseReader::new(&s);
        r.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        r.feed(&vec![b'x'; MAX_BODY - 6]).unwrap();
        r.feed(b"needle").unwrap();
        assert!(r.done(), "64 KiB of body read");
        assert_eq!(r.verdict(&s, 1, &|_| false), None);
        let mut r = ResponseReader::new(&s);
        r.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        r.feed(&vec![b'x'; MAX_BODY]).unwrap();
        r.feed(b"needle").unwrap();
        assert_eq!(r.verdict(&s, 1, &|_| false), Some(Reason::Body));
        // Without a body check nothing of the body is kept.
        let plain = spec(&["http://h/"]);
        let mut r = ResponseReader::new(&plain);
        r.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        r.feed(&vec![b'x'; 1000]).unwrap();
        assert!(r.body.is_empty());
        assert_eq!(r.verdict(&plain, 1, &|_| false), None);
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
