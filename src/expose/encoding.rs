//! Content coding of the `status_metrics` documents: whether the client takes gzip
//! (`Accept-Encoding`, with q-values), and the compression itself. Prometheus asks for gzip on
//! every scrape, and the text format shrinks about twentyfold, so the module compresses by
//! itself: nginx's gzip filter is off for `text/plain` unless configured.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::negotiate::q_value;

/// gzip level: 1, the fastest. The text is so repetitive that level 1 already gets most of
/// the gain, and the worker's time matters more than a few more percent.
const LEVEL: u32 = 1;

/// Whether a response may be gzip-coded for this `Accept-Encoding` value. No header means
/// identity (RFC 9110 allows any coding then, but a client that says nothing gets plain text);
/// `gzip` or `x-gzip` with a q-value above 0 means yes, `gzip;q=0` no, and without either the
/// `*` entry decides. An element whose q-value is not a number in 0..=1 is ignored.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for element in header.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let Some(q) = q_value(parts) else {
            continue;
        };
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(gzip.map_or(q, |g: f64| g.max(q)));
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// A gzip stream fed a body's pieces a slice at a time ([`GzipSlices::step`]), so that
/// compressing megabytes never holds the event loop long.
pub struct GzipSlices {
    encoder: GzEncoder<Vec<u8>>,
    /// The piece being compressed, and how much of it is.
    piece: usize,
    offset: usize,
}

impl GzipSlices {
    /// A stream for a body of about `plain_len` bytes.
    pub fn new(plain_len: usize) -> Self {
        GzipSlices {
            // The text shrinks about twentyfold; a start that rarely needs to grow.
            encoder: GzEncoder::new(
                Vec::with_capacity(plain_len / 8 + 64),
                Compression::new(LEVEL),
            ),
            piece: 0,
            offset: 0,
        }
    }

    /// Compresses up to `bytes` more of `pieces` (the same pieces every call), freeing each
    /// piece once it is in (megabytes freed at once take milliseconds); true once all are.
    pub fn step(&mut self, pieces: &mut [Vec<u8>], bytes: usize) -> std::io::Result<bool> {
        let mut left = bytes;
        while let Some(piece) = pieces.get_mut(self.piece) {
            let n = (piece.len() - self.offset).min(left);
            self.encoder
                .write_all(&piece[self.offset..self.offset + n])?;
            self.offset += n;
            left -= n;
            if self.offset == piece.len() {
                *piece = Vec::new();
                self.piece += 1;
                self.offset = 0;
            }
            if left == 0 {
                break;
            }
        }
        Ok(self.piece == pieces.len())
    }

    /// The compressed body.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        self.encoder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `body` gzip-compressed in one go.
    fn gzip(body: &[u8]) -> Option<Vec<u8>> {
        let mut g = GzipSlices::new(body.len());
        g.step(&mut [body.to_vec()], usize::MAX).ok()?;
        g.finish().ok()
    }

    #[test]
    fn gzip_only_when_asked_for() {
        for (header, gzip) in [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("GZip"), true),
            (Some("x-gzip"), true),
            (Some("gzip, deflate, br"), true),
            (Some("deflate, gzip;q=0.5"), true),
            (Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.000"), false),
            (Some("gzip;q=0, *"), false),
            (Some("*;q=0.5"), true),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("identity"), false),
            (Some("deflate, br"), false),
            (Some("br, *;q=0"), false),
            // A broken q-value does not count; another element may still say yes.
            (Some("gzip;q=abc"), false),
            (Some("gzip;q=2"), false),
            (Some("gzip;q=abc, *"), true),
            (Some("gzip;level=1;q=0.3"), true),
            (Some(" gzip ; q = 0.2 "), true),
            (Some("gzipx"), false),
        ] {
            assert_eq!(accepts_gzip(header), gzip, "{header:?}");
        }
    }

    #[test]
    fn round_trip() {
        let body =
            "nginx_location_requests_total{location=\"n-00001\",status=\"200\"} 12\n".repeat(1000);
        let packed = gzip(body.as_bytes()).unwrap();
        assert!(packed.len() * 20 < body.len(), "{} bytes", packed.len());
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
        let empty = gzip(b"").unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn slices_give_the_same_stream() {
        let pieces: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("piece {i} ").repeat(i * 37).into_bytes())
            .collect();
        let plain = pieces.concat();
        for bytes in [1, 100, 4096, 65536, usize::MAX] {
            let mut g = GzipSlices::new(plain.len());
            let mut given = pieces.clone();
            let mut steps = 0;
            while !g.step(&mut given, bytes).unwrap() {
                steps += 1;
            }
            assert!(given.iter().all(Vec::is_empty), "every piece freed");
            if bytes <= 4096 {
                assert!(steps >= plain.len() / bytes - 1, "{bytes}: {steps} steps");
            }
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&g.finish().unwrap()[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == plain, "{bytes} bytes a step");
        }
        // No pieces at all: an empty document, still a gzip stream.
        let mut g = GzipSlices::new(0);
        assert!(g.step(&mut [], 10).unwrap());
        assert!(!g.finish().unwrap().is_empty());
    }
}
