//! Which encoding `status_metrics` serves: `?format=` first, then the `Accept` header.
//!
//! Pure string handling so that the content handler only has to fetch the two values.

/// An encoding of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4 (the default).
    Prometheus,
    /// JSON with the same data.
    Json,
    /// The HTML status page.
    Html,
}

impl Format {
    /// `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The format named by a `?format=` value (case-insensitive), if it is one.
    pub fn from_arg(value: &str) -> Option<Format> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if v.eq_ignore_ascii_case("html") {
            Some(Format::Html)
        } else if ["prometheus", "text", "txt"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
        {
            Some(Format::Prometheus)
        } else {
            None
        }
    }
}

/// Media types each format answers, most specific first.
fn serves(format: Format, media_type: &str, subtype: &str) -> bool {
    let is =
        |t: &str, s: &str| media_type.eq_ignore_ascii_case(t) && subtype.eq_ignore_ascii_case(s);
    match format {
        Format::Html => is("text", "html") || is("application", "xhtml+xml"),
        Format::Json => is("application", "json"),
        // Prometheus asks for OpenMetrics first and falls back to text 0.0.4, which we serve.
        Format::Prometheus => is("text", "plain") || is("application", "openmetrics-text"),
    }
}

/// How well `range` (`type/subtype`, `type/*` or `*/*`) matches `format`: 3 exact, 2 type
/// wildcard, 1 full wildcard, 0 no match.
fn specificity(format: Format, media_type: &str, subtype: &str) -> u8 {
    if media_type == "*" && subtype == "*" {
        1
    } else if subtype == "*" {
        // text/* covers text/html and text/plain; application/* json, xhtml and openmetrics.
        let types: &[&str] = match format {
            Format::Html | Format::Prometheus => &["text", "application"],
            Format::Json => &["application"],
        };
        if types.iter().any(|t| media_type.eq_ignore_ascii_case(t)) {
            2
        } else {
            0
        }
    } else if serves(format, media_type, subtype) {
        3
    } else {
        0
    }
}

/// One media range of an `Accept` header: (type, subtype, q), or `None` when malformed.
fn parse_range(range: &str) -> Option<(&str, &str, f64)> {
    let mut parts = range.split(';');
    let (media_type, subtype) = parts.next()?.trim().split_once('/')?;
    let (media_type, subtype) = (media_type.trim(), subtype.trim());
    if media_type.is_empty() || subtype.is_empty() || (media_type == "*" && subtype != "*") {
        return None;
    }
    Some((media_type, subtype, q_value(parts)?))
}

/// The q-value among the parameters of one element of an `Accept` or `Accept-Encoding`
/// header: 1 without one, the last one if several; `None` when one is not a number in 0..=1.
pub(super) fn q_value<'a>(params: impl Iterator<Item = &'a str>) -> Option<f64> {
    let mut q = 1.0;
    for param in params {
        if let Some((k, v)) = param.split_once('=') {
            if k.trim().eq_ignore_ascii_case("q") {
                q = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?;
            }
        }
    }
    Some(q)
}

/// Chooses the response format: a known `?format=` value wins; otherwise the `Accept` format
/// with the highest q-value (the most specific matching range decides a format's q, as in
/// RFC 9110), ties going to the more specific match, then to the earlier range, then to
/// Prometheus. No header, `*/*`, or nothing acceptable: Prometheus.
///
/// A browser (`text/html,...,*/*;q=0.8`) gets HTML, `Accept: application/json` JSON, curl
/// (`*/*`) and Prometheus (OpenMetrics, then `text/plain`) the text format.
pub fn choose_format(format_arg: Option<&str>, accept: Option<&str>) -> Format {
    if let Some(f) = format_arg.and_then(Format::from_arg) {
        return f;
    }
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let ranges: Vec<(&str, &str, f64)> = accept.split(',').filter_map(parse_range).collect();
    // (q, specificity, position) per format; position counts from the front, lower is better.
    let score = |format: Format| -> Option<(f64, u8, usize)> {
        let mut best: Option<(f64, u8, usize)> = None;
        for (pos, (t, s, q)) in ranges.iter().enumerate() {
            let spec = specificity(format, t, s);
            if spec == 0 {
                continue;
            }
            // The most specific range sets the q-value; among equals, the first one.
            if best.map_or(true, |(_, b, _)| spec > b) {
                best = Some((*q, spec, pos));
            }
        }
        best.filter(|(q, _, _)| *q > 0.0)
    };
    let mut chosen = Format::Prometheus;
    let mut chosen_score: Option<(f64, u8, usize)> = None;
    for format in [Format::Prometheus, Format::Json, Format::Html] {
        let Some(s) = score(format) else { continue };
        let better = match chosen_score {
            None => true,
            Some(c) => s.0 > c.0 || (s.0 == c.0 && (s.1 > c.1 || (s.1 == c.1 && s.2 < c.2))),
        };
        if better {
            chosen = format;
            chosen_score = Some(s);
        }
    }
    chosen
}

/// `?refresh=N` of the status page: whole seconds, 1..=3600 (larger values are clamped);
/// anything else means no auto-refresh.
pub fn parse_refresh(value: Option<&str>) -> Option<u32> {
    let v = value?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = v.parse::<u64>().unwrap_or(u64::MAX);
    (n > 0).then(|| n.min(u64::from(crate::expose::html::MAX_REFRESH_SECS)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::*;

    const FIREFOX: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    const CHROME: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                          image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
    const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,\
                              application/openmetrics-text;version=0.0.1;q=0.75,\
                              text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn format_argument_wins() {
        assert_eq!(choose_format(Some("json"), Some(FIREFOX)), Json);
        assert_eq!(choose_format(Some("HTML"), None), Html);
        assert_eq!(
            choose_format(Some("prometheus"), Some("application/json")),
            Prometheus
        );
        // An unknown value is ignored and the header decides.
        assert_eq!(choose_format(Some("xml"), Some("application/json")), Json);
        assert_eq!(choose_format(Some(""), None), Prometheus);
    }

    #[test]
    fn real_clients() {
        assert_eq!(choose_format(None, Some(FIREFOX)), Html);
        assert_eq!(choose_format(None, Some(CHROME)), Html);
        assert_eq!(choose_format(None, Some(PROMETHEUS)), Prometheus);
        assert_eq!(choose_format(None, Some("*/*")), Prometheus, "curl");
        assert_eq!(choose_format(None, None), Prometheus);
        assert_eq!(choose_format(None, Some("")), Prometheus);
        assert_eq!(choose_format(None, Some("application/json")), Json);
        assert_eq!(
            choose_format(None, Some("application/json, text/plain, */*")),
            Json,
            "axios"
        );
    }

    #[test]
    fn q_values() {
        assert_eq!(
            choose_format(None, Some("text/html;q=0.5, application/json")),
            Json
        );
        assert_eq!(
            choose_format(None, Some("application/json;q=0.2, text/html;q=0.3")),
            Html
        );
        assert_eq!(choose_format(None, Some("TEXT/HTML; Q=1")), Html);
        // q=0 means "not acceptable", also when a wildcard would otherwise allow it.
        assert_eq!(choose_format(None, Some("text/html;q=0, */*")), Prometheus);
        assert_eq!(
            choose_format(None, Some("text/plain;q=0, application/json;q=0.1")),
            Json
        );
        // Malformed ranges are skipped.
        assert_eq!(
            choose_format(None, Some("text/html;q=abc, application/json")),
            Json
        );
        assert_eq!(choose_format(None, Some("html, */json")), Prometheus);
        assert_eq!(
            choose_format(None, Some("image/png")),
            Prometheus,
            "nothing acceptable"
        );
    }

    #[test]
    fn ties() {
        // Equal q: the more specific match, then the earlier range.
        assert_eq!(choose_format(None, Some("text/*, application/json")), Json);
        assert_eq!(
            choose_format(None, Some("text/html, application/json")),
            Html
        );
        assert_eq!(
            choose_format(None, Some("application/json, text/html")),
            Json
        );
        assert_eq!(choose_format(None, Some("text/*")), Prometheus);
    }

    #[test]
    fn content_types() {
        assert_eq!(Html.content_type(), "text/html; charset=utf-8");
        assert_eq!(Json.content_type(), "application/json");
        assert!(Prometheus
            .content_type()
            .starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn refresh_values() {
        assert_eq!(parse_refresh(Some("30")), Some(30));
        assert_eq!(parse_refresh(Some("99999999999999999999")), Some(3600));
        for bad in ["0", "", "-5", "1.5", "10s", " "] {
            assert_eq!(parse_refresh(Some(bad)), None, "{bad}");
        }
        assert_eq!(parse_refresh(None), None);
    }
}
