//! The status page's filters: `?name=REGEX` and `?state=firing|warning|critical|ok`, parsed
//! from the raw query string into a [`PageFilter`], or a [`FilterError`] answered with 400.
//!
//! - `name` is a regular expression (the `regex` crate's syntax, unanchored, case-sensitive)
//!   matched against each NAME; a probe target matches by the NAME it is configured under. The
//!   pattern comes from the URL, so it is bounded: at most [`MAX_PATTERN_BYTES`] bytes, and its
//!   compiled form at most [`MAX_COMPILED_BYTES`]; matching takes time linear in the NAME.
//! - `state`: `firing` is every NAME above OK (warning or critical, as Alertmanager calls both
//!   firing) and every probe target DOWN; `warning` and `critical` narrow it to one level (no
//!   probe target is a warning); `ok` is every NAME at OK and every target UP. Targets not
//!   probed yet match no state.
//! - Values are percent-decoded like the control parameters (`+` is a space); an empty value
//!   is no filter. Other parameters (`format`, `refresh`, ...) are left to the handler.
//!
//! Only the HTML page filters: Prometheus and JSON always carry every series, so a scraper can
//! never lose a NAME through a stray parameter.

use crate::vocab::event::Level;

use super::mute_control::{pairs, percent_decode};

/// Longest `?name=` pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Largest compiled `?name=` pattern (and its lazy DFA cache), in bytes.
pub const MAX_COMPILED_BYTES: usize = 1 << 20;

/// `?state=`: which NAMEs and probe targets the page lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Warning or critical; probe targets DOWN.
    Firing,
    /// Warning only.
    Warning,
    /// Critical only; probe targets DOWN.
    Critical,
    /// OK; probe targets UP.
    Ok,
}

impl StateFilter {
    /// The word as written in the URL.
    pub fn word(self) -> &'static str {
        match self {
            StateFilter::Firing => "firing",
            StateFilter::Warning => "warning",
            StateFilter::Critical => "critical",
            StateFilter::Ok => "ok",
        }
    }
}

/// Why a filter cannot be applied; the page answers 400 with this text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `name=` or `state=` given twice.
    #[error("duplicate parameter \"{0}\"")]
    Duplicate(&'static str),
    /// A value that does not percent-decode to UTF-8.
    #[error("invalid percent-encoding in \"{0}\"")]
    Encoding(&'static str),
    /// An unknown `state=` value.
    #[error("invalid state \"{0}\", expected firing, warning, critical or ok")]
    State(String),
    /// A `name=` pattern longer than [`MAX_PATTERN_BYTES`].
    #[error("name pattern too long: {0} bytes, at most {MAX_PATTERN_BYTES}")]
    TooLong(usize),
    /// A `name=` pattern that does not compile, or compiles too large.
    #[error("invalid name pattern \"{pattern}\": {why}")]
    Pattern {
        /// The pattern, as shown (control characters as `?`).
        pattern: String,
        /// The regex crate's reason, on one line.
        why: String,
    },
}

/// The page's filters; the default filters nothing.
#[derive(Clone, Debug, Default)]
pub struct PageFilter {
    /// `?name=`, compiled, with its text.
    pub name: Option<(regex::Regex, String)>,
    /// `?state=`.
    pub state: Option<StateFilter>,
}

impl PageFilter {
    /// True when any filter is set.
    pub fn is_active(&self) -> bool {
        self.name.is_some() || self.state.is_some()
    }

    fn name_matches(&self, name: &str) -> bool {
        self.name.as_ref().map_or(true, |(re, _)| re.is_match(name))
    }

    /// Whether a NAME at `level` is listed.
    pub fn matches_name(&self, name: &str, level: Level) -> bool {
        let state = match self.state {
            None => true,
            Some(StateFilter::Firing) => level != Level::Ok,
            Some(StateFilter::Warning) => level == Level::Warning,
            Some(StateFilter::Critical) => level == Level::Critical,
            Some(StateFilter::Ok) => level == Level::Ok,
        };
        state && self.name_matches(name)
    }

    /// Whether a probe target of NAME `name` (`up`: `None` when not probed yet) is listed.
    pub fn matches_probe(&self, name: &str, up: Option<bool>) -> bool {
        let state = match self.state {
            None => true,
            Some(StateFilter::Firing | StateFilter::Critical) => up == Some(false),
            Some(StateFilter::Warning) => false,
            Some(StateFilter::Ok) => up == Some(true),
        };
        state && self.name_matches(name)
    }
}

/// Input echoed in an error: at most 64 characters, control characters as `?`.
fn shown(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Compiles a `?name=` pattern within the size bounds.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, FilterError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(FilterError::TooLong(pattern.len()));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .nest_limit(32)
        .build()
        .map_err(|e| FilterError::Pattern {
            pattern: shown(pattern),
            // The crate's message spans lines with a caret under the error; one line here.
            why: e
                .to_string()
                .lines()
                .map(str::trim)
                .rev()
                .find(|l| {
                    !l.is_empty()
                        && !l.starts_with("regex parse error")
                        && !l.chars().all(|c| c == '^' || c == ' ')
                })
                .unwrap_or("invalid pattern")
                .trim_start_matches("error: ")
                .to_owned(),
        })
}

/// Parses the page's filters out of the raw query string `query`.
pub fn parse_page_filter(query: &str) -> Result<PageFilter, FilterError> {
    let mut filter = PageFilter::default();
    let (mut seen_name, mut seen_state) = (false, false);
    for (key, raw) in pairs(query) {
        let (seen, key) = match key {
            "name" => (&mut seen_name, "name"),
            "state" => (&mut seen_state, "state"),
            _ => continue,
        };
        if *seen {
            return Err(FilterError::Duplicate(key));
        }
        *seen = true;
        let value = percent_decode(raw.unwrap_or("")).ok_or(FilterError::Encoding(key))?;
        if value.is_empty() {
            continue;
        }
        if key == "name" {
            filter.name = Some((compile_pattern(&value)?, value));
        } else {
            filter.state = Some(match value.trim().to_ascii_lowercase().as_str() {
                "firing" => StateFilter::Firing,
                "warning" => StateFilter::Warning,
                "critical" => StateFilter::Critical,
                "ok" => StateFilter::Ok,
                _ => return Err(FilterError::State(shown(&value))),
            });
        }
    }
    Ok(filter)
}

/// The query that lists exactly NAME `name`: `name=` with the NAME as an anchored, escaped
/// pattern, percent-encoded for an `href`.
pub fn only_name_query(name: &str) -> String {
    // `-` is a literal outside a class: unescaped, the link stays short and readable.
    let pattern = format!("^{}$", regex::escape(name).replace("\\-", "-"));
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push_str("?name=");
    for b in pattern.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_filter() {
        let f = parse_page_filter("").unwrap();
        assert!(!f.is_active());
        assert!(f.matches_name("api", Level::Critical));
        assert!(f.matches_probe("api", None));
        // Other parameters are the handler's; empty values filter nothing.
        let f = parse_page_filter("format=html&refresh=5&name=&state=").unwrap();
        assert!(!f.is_active());
    }

    #[test]
    fn states() {
        let f = |q: &str| parse_page_filter(q).unwrap();
        let firing = f("state=firing");
        assert!(firing.matches_name("a", Level::Warning));
        assert!(firing.matches_name("a", Level::Critical));
        assert!(!firing.matches_name("a", Level::Ok));
        assert!(firing.matches_probe("a", Some(false)));
        assert!(!firing.matches_probe("a", Some(true)));
        assert!(!firing.matches_probe("a", None));
        let warning = f("state=Warning");
        assert!(warning.matches_name("a", Level::Warning));
        assert!(!warning.matches_name("a", Level::Critical));
        assert!(!warning.matches_probe("a", Some(false)));
        let critical = f("state=critical");
        assert!(!critical.matches_name("a", Level::Warning));
        assert!(critical.matches_probe("a", Some(false)));
        let ok = f("state=ok");
        assert!(ok.matches_name("a", Level::Ok));
        assert!(!ok.matches_name("a", Level::Warning));
        assert!(ok.matches_probe("a", Some(true)));
        assert!(!ok.matches_probe("a", None));
    }

    #[test]
    fn names() {
        let f = parse_page_filter("name=%5Eapi%7Cshop%24&state=firing").unwrap();
        assert_eq!(f.name.as_ref().unwrap().1, "^api|shop$");
        assert!(f.matches_name("api-v2", Level::Critical));
        assert!(f.matches_name("myshop", Level::Warning));
        assert!(!f.matches_name("myshop", Level::Ok), "both filters apply");
        assert!(!f.matches_name("web", Level::Critical));
        // Raw (not encoded) patterns work too, and + is a space.
        let f = parse_page_filter("name=^loc-1[0-9]$").unwrap();
        assert!(f.matches_name("loc-12", Level::Ok));
        assert!(!f.matches_name("loc-123", Level::Ok));
        let f = parse_page_filter("name=a+b").unwrap();
        assert!(f.matches_name("xa by", Level::Ok));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let err = |q: &str| parse_page_filter(q).unwrap_err().to_string();
        assert_eq!(
            err("name=api("),
            "invalid name pattern \"api(\": unclosed group"
        );
        assert_eq!(
            err("state=down"),
            "invalid state \"down\", expected firing, warning, critical or ok"
        );
        assert_eq!(err("name=a&name=b"), "duplicate parameter \"name\"");
        assert_eq!(err("state=ok&state=ok"), "duplicate parameter \"state\"");
        assert_eq!(err("name=%zz"), "invalid percent-encoding in \"name\"");
        assert_eq!(
            err(&format!("name={}", "a".repeat(300))),
            "name pattern too long: 300 bytes, at most 256"
        );
        // Patterns that compile too large are refused, not built.
        let e = err("name=(%5Cw%7B100%7D)%7B100%7D");
        assert!(e.starts_with("invalid name pattern"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err(&format!("name={}", "(".repeat(40) + &")".repeat(40)));
        assert!(e.starts_with("invalid name pattern"), "{e}");
    }

    #[test]
    fn the_only_name_link_lists_exactly_that_name() {
        for name in ["api", "shop.v2", "a+b (x)", "é/ü", "loc-1"] {
            let q = only_name_query(name);
            assert!(
                q[1..].bytes().all(|b| b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'=')),
                "{q}"
            );
            let f = parse_page_filter(&q[1..]).unwrap();
            assert!(f.matches_name(name, Level::Ok), "{name}: {q}");
            assert!(!f.matches_name(&format!("{name}x"), Level::Ok), "{q}");
            assert!(!f.matches_name(&format!("x{name}"), Level::Ok), "{q}");
        }
        assert_eq!(only_name_query("loc-1"), "?name=%5Eloc-1%24");
        assert_eq!(only_name_query("a.b"), "?name=%5Ea%5C.b%24");
    }
}
