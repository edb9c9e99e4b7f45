//! One scrape of `status_metrics`, made in slices: for Prometheus text and JSON, a few NAMEs'
//! values copied from the zone ([`Collector`]), written ([`PrometheusSlices`], [`JsonSlices`])
//! and forgotten at a time; for the status page (which sorts every NAME by level, and is
//! bounded in size) every NAME copied a few at a time, the page written at once, the copy freed
//! a few at a time; then gzip fed a slice at a time ([`GzipSlices`]). The content handler runs [`Scrape::step`] until the
//! body is ready, giving the event loop back whenever its time slice is used up (FFI in
//! `scrape_event`), so a scrape of 10,000 NAMEs never holds a worker more than a few
//! milliseconds at a time. Plain Rust: the steps are tested without nginx.

use core::fmt;

use super::encoding::GzipSlices;
use super::html::{render_html, HtmlOptions};
use super::metrics::{JsonSlices, Metrics, PrometheusSlices};
use super::Collector;
use crate::conf::MainConf;

/// NAMEs copied or written between two looks at the clock: about 0.1-0.5 ms of work on the
/// release build.
const NAMES_PER_UNIT: usize = 64;

/// Bytes compressed between two looks at the clock: about 0.3 ms at gzip level 1.
const GZIP_BYTES_PER_UNIT: usize = 64 * 1024;

/// The document asked for.
pub enum Document {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// JSON.
    Json,
    /// The status page, with its options.
    Html(HtmlOptions),
}

/// Where a scrape is. One per scrape under way, moved a few times per slice: its size (the
/// collector's values inline) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// The JSON document lists NAMEs in key order: they are sorted before any is copied.
    JsonBegin(Collector),
    /// Prometheus text and JSON: a batch of NAMEs copied, written, then forgotten.
    Prometheus(Collector, PrometheusSlices),
    Json(Collector, JsonSlices),
    /// The status page sorts every NAME by level: all are copied first.
    PageCollect(Collector, HtmlOptions),
    Html(Metrics, HtmlOptions),
    /// The page is written: the copied values are freed a few NAMEs at a time (freeing
    /// 10,000 NAMEs' values at once took 10 ms).
    Release(Metrics),
    Compress(GzipSlices),
    Done,
}

impl Stage {
    /// A unit of work of a few milliseconds at 10,000 NAMEs that does not cut into smaller
    /// ones: begun only at the start of a slice.
    fn is_long(&self) -> bool {
        matches!(self, Stage::JsonBegin(_) | Stage::Html(..))
    }
}

/// A scrape under way, and its body once done: pieces in order, plain or gzip-coded.
pub struct Scrape {
    stage: Stage,
    /// Whether to gzip the document.
    gzip: bool,
    /// The body so far: the plain document while compressing, then what goes out.
    pieces: Vec<Vec<u8>>,
    /// Whether `pieces` is gzip-coded.
    gzipped: bool,
}

impl Scrape {
    /// A scrape of `mcf`'s values at `now_ms` as `document`, gzip-coded if `gzip`. Copies
    /// what is not per NAME (probes, certificates, peers, deliveries) at once.
    pub fn new(mcf: &MainConf, now_ms: u64, document: Document, gzip: bool) -> Self {
        Self::of(mcf, Collector::new(mcf, now_ms), document, gzip)
    }

    /// A scrape whose values come from `c`.
    fn of(mcf: &MainConf, mut c: Collector, document: Document, gzip: bool) -> Self {
        let stage = match document {
            Document::Prometheus => {
                let p = PrometheusSlices::new(c.metrics());
                Stage::Prometheus(c, p)
            }
            Document::Json => Stage::JsonBegin(c),
            Document::Html(opts) => {
                c.reserve_all(mcf);
                Stage::PageCollect(c, opts)
            }
        };
        Scrape {
            stage,
            gzip,
            pieces: Vec::new(),
            gzipped: false,
        }
    }

    /// Works on the scrape, one unit of work after another, until the body is ready (true) or
    /// `out_of_time` says to stop (false: call again later). `mcf` is the configuration the
    /// scrape began with. Fails only if writing or compressing the document fails, which
    /// writing into memory does not.
    pub fn step(
        &mut self,
        mcf: &MainConf,
        out_of_time: &mut dyn FnMut() -> bool,
    ) -> Result<bool, fmt::Error> {
        let mut first = true;
        loop {
            if !first && self.stage.is_long() {
                return Ok(false);
            }
            first = false;
            match core::mem::replace(&mut self.stage, Stage::Done) {
                Stage::JsonBegin(mut c) => {
                    c.in_key_order(mcf);
                    let j = JsonSlices::new(c.metrics());
                    self.stage = Stage::Json(c, j);
                }
                Stage::Prometheus(mut c, mut p) => {
                    let all = c.names(mcf, NAMES_PER_UNIT);
                    p.add(c.metrics())?;
                    c.forget_names();
                    if all {
                        let pieces = p.finish(c.metrics())?;
                        self.written(pieces);
                    } else {
                        self.stage = Stage::Prometheus(c, p);
                    }
                }
                Stage::Json(mut c, mut j) => {
                    let all = c.names(mcf, NAMES_PER_UNIT);
                    j.add(c.metrics());
                    c.forget_names();
                    if all {
                        let pieces = j.finish(c.metrics());
                        self.written(pieces);
                    } else {
                        self.stage = Stage::Json(c, j);
                    }
                }
                Stage::PageCollect(mut c, opts) => {
                    if c.names(mcf, NAMES_PER_UNIT) {
                        self.stage = Stage::Html(c.finish(), opts);
                    } else {
                        self.stage = Stage::PageCollect(c, opts);
                    }
                }
                Stage::Html(m, opts) => {
                    // At most a few hundred KB at any scale (the page's byte budgets).
                    let page = render_html(&m, &opts).into_bytes();
                    self.pieces = vec![page];
                    self.stage = Stage::Release(m);
                }
                Stage::Release(mut m) => {
                    if m.shed(NAMES_PER_UNIT) {
                        let page = core::mem::take(&mut self.pieces);
                        self.written(page);
                    } else {
                        self.stage = Stage::Release(m);
                    }
                }
                Stage::Compress(mut g) => {
                    // Compressing into memory does not fail; if it did, the plain pieces are
                    // partly freed already: the scrape fails.
                    if g.step(&mut self.pieces, GZIP_BYTES_PER_UNIT)
                        .map_err(|_| fmt::Error)?
                    {
                        self.pieces = vec![g.finish().map_err(|_| fmt::Error)?];
                        self.gzipped = true;
                    } else {
                        self.stage = Stage::Compress(g);
                    }
                }
                Stage::Done => return Ok(true),
            }
            if matches!(self.stage, Stage::Done) {
                return Ok(true);
            }
            if out_of_time() {
                return Ok(false);
            }
        }
    }

    /// The document is written: compress it, or it is the body.
    fn written(&mut self, pieces: Vec<Vec<u8>>) {
        let len = pieces.iter().map(Vec::len).sum();
        self.pieces = pieces;
        if self.gzip {
            self.stage = Stage::Compress(GzipSlices::new(len));
        }
    }

    /// The body (once [`Self::step`] said it is ready): pieces in order.
    pub fn body(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        self.pieces.iter().map(Vec::len).sum()
    }

    /// Whether the body is gzip-coded.
    pub fn gzipped(&self) -> bool {
        self.gzipped
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::expose::metrics::tests_scale::collected;
    use crate::expose::metrics::{render_json, render_prometheus};
    use crate::expose::Collector;

    /// A scrape of `m`'s values.
    fn of_metrics(m: Metrics, document: Document, gzip: bool) -> Scrape {
        Scrape::of(
            &MainConf::default(),
            Collector::replaying(m),
            document,
            gzip,
        )
    }

    /// Runs `s` a unit of work at a time; the body and how many steps it took.
    fn run(mut s: Scrape) -> (Vec<u8>, bool, usize) {
        let mcf = MainConf::default();
        let mut steps = 1;
        while !s.step(&mcf, &mut || true).unwrap() {
            steps += 1;
        }
        (s.body().concat(), s.gzipped(), steps)
    }

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_unit_at_a_time_gives_the_whole_document() {
        let m = collected(300, false);
        let mut prometheus = String::new();
        render_prometheus(&m, &mut prometheus).unwrap();
        let json = render_json(&m);
        for (document, whole) in [
            (Document::Prometheus, prometheus.as_bytes()),
            (Document::Json, json.as_bytes()),
        ] {
            let kind = matches!(document, Document::Json);
            let (body, gzipped, steps) = run(of_metrics(m.clone(), document, false));
            assert!(!gzipped);
            assert!(body == whole, "json {kind}");
            // 300 NAMEs at 64 a unit: 5 units of writing, and one to finish.
            assert!(steps >= 5, "{steps} steps");

            let document = if kind {
                Document::Json
            } else {
                Document::Prometheus
            };
            let (body, gzipped, steps) = run(of_metrics(m.clone(), document, true));
            assert!(gzipped);
            assert!(gunzip(&body) == whole, "json {kind}");
            // And more units to compress the hundreds of KB.
            assert!(
                steps >= 5 + whole.len() / GZIP_BYTES_PER_UNIT,
                "{steps} steps"
            );
        }
    }

    #[test]
    fn the_page_in_one_unit() {
        let m = collected(50, false);
        let opts = HtmlOptions::default();
        let page = render_html(&m, &opts).into_bytes();
        let (body, _, steps) = run(of_metrics(m.clone(), Document::Html(opts), false));
        assert_eq!(body, page);
        // Copy, the page, free the values.
        assert_eq!(steps, 3);
        let opts = HtmlOptions::default();
        let (body, gzipped, _) = run(of_metrics(m, Document::Html(opts), true));
        assert!(gzipped);
        assert_eq!(gunzip(&body), page);
    }

    #[test]
    fn nothing_to_collect() {
        // A configuration without NAMEs: the collector is done at once, the document too.
        let mcf = MainConf::default();
        let mut s = Scrape::new(&mcf, 1_000, Document::Json, false);
        // Sort (nothing), then copy and write (nothing).
        let mut steps = 1;
        while !s.step(&mcf, &mut || true).unwrap() {
            steps += 1;
        }
        assert_eq!(steps, 2);
        let v: serde_json::Value = serde_json::from_slice(&s.body().concat()).unwrap();
        assert!(v["locations"].as_object().unwrap().is_empty());
    }
}
