//! Traffic drops (`traffic=WARN[:CRIT]` of `status_alert NAME`) in the crate's vocabulary: the
//! thresholds as configured and the event a drop announces. Parsing is `conf::traffic`, the
//! usual traffic and the level a drop calls for `evaluate::traffic`.

use core::fmt;

use crate::vocab::event::Level;
use crate::vocab::text::fmt_pct;

/// Completed windows the usual traffic is the median of.
pub const USUAL_WINDOWS: usize = 12;

/// One threshold of `traffic=`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrafficThreshold {
    /// Fewer requests than this in the window alert; applies from the first whole window.
    Requests(u64),
    /// Fewer requests than this percentage (in (0, 100)) of the usual traffic alert; applies
    /// once [`USUAL_WINDOWS`] windows are known.
    Percent(f64),
}

impl fmt::Display for TrafficThreshold {
    /// As written in the configuration: `100`, `50%`, `12.5%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficThreshold::Requests(n) => write!(f, "{n}"),
            TrafficThreshold::Percent(p) => write!(f, "{}%", fmt_pct(*p)),
        }
    }
}

/// `traffic=WARN[:CRIT]`: the thresholds of a traffic drop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrafficParams {
    /// WARNING below this.
    pub warn: TrafficThreshold,
    /// CRITICAL below this; `None` when only WARN is given.
    pub crit: Option<TrafficThreshold>,
}

impl TrafficParams {
    /// True when a threshold is a percentage (it waits for [`USUAL_WINDOWS`] windows of
    /// history).
    pub fn uses_percent(&self) -> bool {
        core::iter::once(self.warn)
            .chain(self.crit)
            .any(|t| matches!(t, TrafficThreshold::Percent(_)))
    }
}

/// A threshold in requests per window at this usual traffic: a count as is, a percentage of
/// the usual traffic; `None` for a percentage while the usual traffic is not known.
pub fn threshold_requests(t: TrafficThreshold, usual: Option<f64>) -> Option<f64> {
    match t {
        TrafficThreshold::Requests(n) => Some(n as f64),
        TrafficThreshold::Percent(pct) => usual.map(|u| u * pct / 100.0),
    }
}

/// A NAME's traffic alert: level change (or repeat) with the counts that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficEvent {
    /// Level now; `Level::Ok` means resolved.
    pub level: Level,
    /// Level before this event (equal to `level` for a repeat).
    pub previous: Level,
    /// True when this re-posts a level that is still firing (`repeat=`).
    pub repeat: bool,
    /// Requests in the window.
    pub requests: u64,
    /// The usual traffic (median of the last [`USUAL_WINDOWS`] windows), if known.
    pub usual: Option<f64>,
    /// The thresholds as configured.
    pub params: TrafficParams,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Start of the incident (first non-ok evaluation), Unix seconds.
    pub since_unix: u64,
}

impl TrafficEvent {
    /// The threshold behind the current level, in requests per window: CRIT's for a critical
    /// event, WARN's for a warning; `None` when resolved.
    pub fn crossed_requests(&self) -> Option<f64> {
        let t = match self.level {
            Level::Ok => return None,
            Level::Warning => self.params.warn,
            Level::Critical => self.params.crit.unwrap_or(self.params.warn),
        };
        threshold_requests(t, self.usual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrafficThreshold::{Percent, Requests};

    fn params(warn: TrafficThreshold, crit: Option<TrafficThreshold>) -> TrafficParams {
        TrafficParams { warn, crit }
    }

    #[test]
    fn thresholds_read_as_written() {
        assert_eq!(Percent(12.5).to_string(), "12.5%");
        assert_eq!(Requests(100).to_string(), "100");
        assert!(params(Percent(50.0), Some(Requests(5))).uses_percent());
        assert!(params(Requests(100), Some(Percent(5.0))).uses_percent());
        assert!(!params(Requests(100), Some(Requests(5))).uses_percent());
    }

    #[test]
    fn crossed_threshold_of_an_event() {
        let mut e = TrafficEvent {
            level: Level::Critical,
            previous: Level::Warning,
            repeat: false,
            requests: 3,
            usual: Some(412.0),
            params: params(Percent(50.0), Some(Percent(10.0))),
            window_secs: 300,
            since_unix: 1_700_000_000,
        };
        assert_eq!(e.crossed_requests(), Some(41.2));
        e.level = Level::Warning;
        assert_eq!(e.crossed_requests(), Some(206.0));
        e.level = Level::Ok;
        assert_eq!(e.crossed_requests(), None);
        e.level = Level::Critical;
        e.params = params(Requests(100), None);
        assert_eq!(e.crossed_requests(), Some(100.0));
    }
}
