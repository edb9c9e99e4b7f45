//! HTTP/1.1 message framing on the wire, shared by the test servers ([`crate::Upstream`],
//! [`crate::WebhookReceiver`]) and the raw-socket client ([`crate::RawConnection`]): start line
//! and headers, body framing (Content-Length, chunked, until EOF), keep-alive.
//!
//! Our own framing rather than a server crate: the fakes need a reply that never comes (held
//! until the peer gives up), per-request delays, exact framing and every connection closed when
//! the server is dropped; and wire-level tests need the bytes as sent.

use std::io::{self, BufRead, Read};

/// Header fields in wire order, names as sent.
pub type Headers = Vec<(String, String)>;

const MAX_LINE: u64 = 64 * 1024;
const MAX_HEADERS: usize = 200;

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
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
pub(crate) fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
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
pub(crate) enum BodyKind {
    Empty,
    Chunked,
    Length(usize),
    UntilEof,
}

pub(crate) fn body_kind(headers: &[(String, String)], is_response: bool) -> io::Result<BodyKind> {
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

pub(crate) fn read_body<R: BufRead>(r: &mut R, kind: BodyKind) -> io::Result<Vec<u8>> {
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

pub(crate) fn connection_keeps_alive(version: &str, headers: &[(String, String)]) -> bool {
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
