//! Per-peer counts of upstream tries (`nginx_upstream_peer_responses_total`): what the zone
//! keeps for one (upstream, peer), and the class a try is counted in.
//!
//! A peer's cells live in a probe-table slot keyed `peer:UPSTREAM PEER` (see
//! `conf::peers`), so they are claimed, kept across reloads and reclaimed like probe slots.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Classes a try is counted in, in the order of [`PeerCounts::classes`].
pub const PEER_CLASS_LABELS: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];
/// The class a try is counted in, as an index into [`PEER_CLASS_LABELS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum PeerClass {
    /// A 2xx answer.
    S2xx = 0,
    /// A 3xx answer.
    S3xx = 1,
    /// A 4xx answer.
    S4xx = 2,
    /// A 5xx answer.
    S5xx = 3,
    /// No answer: connect failure, timeout or reset before the header, no live peer.
    Error = 4,
}

/// The class of a try from what nginx recorded of it: `status`
/// (`ngx_http_upstream_state_t.status`) and whether a response header arrived (`header_time`
/// is not `(ngx_msec_t) -1`). A try without a header is an `error` whatever status nginx gave
/// it (502 on a refused connection, 504 on a timeout); `None` for a response outside
/// 200..=599 (a 101 upgrade, say), which no class counts. Comparisons, not a division: most
/// tries are 2xx and take the first.
#[inline(always)]
pub fn try_class(status: usize, got_header: bool) -> Option<PeerClass> {
    if !got_header {
        return Some(PeerClass::Error);
    }
    let above_200 = status.wrapping_sub(200);
    if above_200 < 100 {
        Some(PeerClass::S2xx)
    } else if above_200 < 200 {
        Some(PeerClass::S3xx)
    } else if above_200 < 300 {
        Some(PeerClass::S4xx)
    } else if above_200 < 400 {
        Some(PeerClass::S5xx)
    } else {
        None
    }
}

/// Tries counted for one (upstream, peer), by class.
#[repr(C)]
#[derive(Default)]
pub struct PeerCounts {
    /// By class, in the order of [`PEER_CLASS_LABELS`].
    pub classes: [AtomicU64; 5],
}

impl PeerCounts {
    /// All zero.
    pub const fn new() -> PeerCounts {
        PeerCounts {
            classes: [const { AtomicU64::new(0) }; 5],
        }
    }

    /// Counts one try of class `class`; the request path's one write: a relaxed add.
    #[inline(always)]
    pub fn record(&self, class: PeerClass) {
        self.classes[class as usize].fetch_add(1, Relaxed);
    }

    /// The counts, by class.
    pub fn snapshot(&self) -> [u64; 5] {
        core::array::from_fn(|i| self.classes[i].load(Relaxed))
    }

    pub(super) fn copy_from(&self, o: &PeerCounts) {
        for (d, s) in self.classes.iter().zip(o.classes.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
    }

    pub(super) fn reset(&self) {
        self.classes.iter().for_each(|c| c.store(0, Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_try_without_a_response_is_an_error_whatever_its_status() {
        // Refused connection: nginx records 502 and no header time.
        assert_eq!(try_class(502, false), Some(PeerClass::Error));
        // Timeout before the header: 504.
        assert_eq!(try_class(504, false), Some(PeerClass::Error));
        // A try still open when the client went away has no status.
        assert_eq!(try_class(0, false), Some(PeerClass::Error));
    }

    #[test]
    fn a_response_counts_by_its_status_class() {
        assert_eq!(try_class(200, true), Some(PeerClass::S2xx));
        assert_eq!(try_class(299, true), Some(PeerClass::S2xx));
        assert_eq!(try_class(304, true), Some(PeerClass::S3xx));
        assert_eq!(try_class(404, true), Some(PeerClass::S4xx));
        // A 502 the upstream sent itself is its answer, not a failed try.
        assert_eq!(try_class(502, true), Some(PeerClass::S5xx));
        assert_eq!(try_class(599, true), Some(PeerClass::S5xx));
        for outside in [0, 101, 199, 600, 999] {
            assert_eq!(try_class(outside, true), None, "{outside}");
        }
        let labels: Vec<&str> = [0, 200, 300, 400, 500]
            .map(|s| try_class(s, s != 0).unwrap() as usize)
            .map(|i| PEER_CLASS_LABELS[i])
            .to_vec();
        assert_eq!(labels, ["error", "2xx", "3xx", "4xx", "5xx"]);
    }

    #[test]
    fn counts_record_copy_and_reset() {
        let a = PeerCounts::default();
        a.record(PeerClass::S2xx);
        a.record(PeerClass::S5xx);
        a.record(PeerClass::S5xx);
        a.record(PeerClass::Error);
        assert_eq!(a.snapshot(), [1, 0, 0, 2, 1]);
        let b = PeerCounts::default();
        b.copy_from(&a);
        assert_eq!(b.snapshot(), [1, 0, 0, 2, 1]);
        b.reset();
        assert_eq!(b.snapshot(), [0; 5]);
    }
}
