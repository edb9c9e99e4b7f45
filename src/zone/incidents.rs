//! Incident history of one NAME: the last [`INCIDENT_HISTORY`] incidents and per-kind totals.
//!
//! An incident is one ok -> warning/critical -> ok episode of one alert kind (5xx share,
//! latency, error budget, traffic drop). The log lives in shared memory next to the alert states; only the
//! evaluator that won the state's compare-and-swap writes it, so each incident is booked once.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::vocab::event::Level;

/// Incidents kept per NAME.
pub const INCIDENT_HISTORY: usize = 8;

/// What an incident is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IncidentKind {
    /// The 5xx share (`warn=`/`crit=`).
    Errors = 0,
    /// The request-time percentile (`latency=`).
    Latency = 1,
    /// The error-budget burn rate (`slo=`).
    Slo = 2,
    /// A traffic drop (`traffic=`).
    Traffic = 3,
}

/// Alert kinds, the length of the per-kind arrays.
pub const KINDS: usize = 4;

impl IncidentKind {
    /// Every kind, in the order of the per-kind arrays.
    pub const ALL: [IncidentKind; KINDS] = [
        IncidentKind::Errors,
        IncidentKind::Latency,
        IncidentKind::Slo,
        IncidentKind::Traffic,
    ];

    /// The metric's `kind` label: `errors`, `latency`, `slo`, `traffic`.
    pub fn label(self) -> &'static str {
        match self {
            IncidentKind::Errors => "errors",
            IncidentKind::Latency => "latency",
            IncidentKind::Slo => "slo",
            IncidentKind::Traffic => "traffic",
        }
    }

    /// True for the kind whose worst value is the lowest: a traffic drop's requests per
    /// window (the others' peak is their highest share, time or burn rate).
    pub fn lower_is_worse(self) -> bool {
        self == IncidentKind::Traffic
    }

    fn from_index(i: u32) -> Option<IncidentKind> {
        IncidentKind::ALL.get(i as usize).copied()
    }
}

/// One incident as read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Incident {
    /// What it is about.
    pub kind: IncidentKind,
    /// First firing evaluation, ms since the epoch.
    pub start_ms: u64,
    /// Resolution, ms since the epoch; `None` while ongoing.
    pub end_ms: Option<u64>,
    /// Highest level reached.
    pub peak_level: Level,
    /// Worst value seen while firing: the highest 5xx share in percent, percentile in seconds
    /// or burn rate, or the fewest requests in a window (traffic), by kind.
    pub peak_value: f64,
    /// Part of it fell in a mute (maintenance window or runtime mute): what happened then was
    /// not sent.
    pub muted: bool,
}

/// The tag bit of an incident that fell (partly) in a mute.
const MUTED_BIT: u32 = 1 << 16;

/// One incident in shared memory.
#[repr(C)]
pub struct IncidentRecord {
    /// 0 for an empty record, else `kind + 1 | peak_level << 8 | muted << 16`.
    tag: AtomicU32,
    start_ms: AtomicU64,
    /// 0 while ongoing.
    end_ms: AtomicU64,
    /// `f64::to_bits` of the peak value.
    peak_value: AtomicU64,
}

impl IncidentRecord {
    fn load(&self) -> Option<Incident> {
        let tag = self.tag.load(Relaxed);
        let kind = IncidentKind::from_index((tag & 0xff).checked_sub(1)?)?;
        let end = self.end_ms.load(Relaxed);
        Some(Incident {
            kind,
            start_ms: self.start_ms.load(Relaxed),
            end_ms: (end != 0).then_some(end),
            peak_level: Level::from_u8((tag >> 8) as u8),
            peak_value: f64::from_bits(self.peak_value.load(Relaxed)),
            muted: tag & MUTED_BIT != 0,
        })
    }

    fn store(&self, i: &Incident) {
        self.start_ms.store(i.start_ms, Relaxed);
        self.end_ms.store(i.end_ms.unwrap_or(0), Relaxed);
        self.peak_value.store(i.peak_value.to_bits(), Relaxed);
        let muted = if i.muted { MUTED_BIT } else { 0 };
        let tag = (i.kind as u32 + 1) | (i.peak_level as u32) << 8 | muted;
        self.tag.store(tag, Relaxed);
    }
}

/// Per-kind totals of one NAME, for `nginx_location_incidents_total` and
/// `nginx_location_incident_seconds_total`, and its recent incidents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentSummary {
    /// Incidents opened, by [`IncidentKind`] index.
    pub opened: [u64; KINDS],
    /// Seconds spent firing (ongoing incidents included), by kind.
    pub firing_seconds: [u64; KINDS],
    /// The most recent incidents, newest first.
    pub recent: Vec<Incident>,
}

/// Incident history of one NAME in shared memory.
#[repr(C)]
pub struct IncidentLog {
    /// Record the next incident is written to.
    next: AtomicU32,
    records: [IncidentRecord; INCIDENT_HISTORY],
    /// Incidents opened, by kind.
    opened: [AtomicU64; KINDS],
    /// Milliseconds spent firing in resolved incidents, by kind.
    closed_ms: [AtomicU64; KINDS],
}

impl IncidentLog {
    /// Books a new incident (ok -> `level`), overwriting the oldest record.
    pub fn open(&self, kind: IncidentKind, start_ms: u64, level: Level, value: f64) {
        let i = self.next.load(Relaxed) as usize % INCIDENT_HISTORY;
        self.records[i].store(&Incident {
            kind,
            start_ms,
            end_ms: None,
            peak_level: level,
            peak_value: value,
            muted: false,
        });
        self.next
            .store(((i + 1) % INCIDENT_HISTORY) as u32, Relaxed);
        self.opened[kind as usize].fetch_add(1, Relaxed);
    }

    /// The ongoing record of `kind` that started at `start_ms`, if still kept.
    fn ongoing(&self, kind: IncidentKind, start_ms: u64) -> Option<(&IncidentRecord, Incident)> {
        self.records.iter().find_map(|r| {
            let i = r.load()?;
            (i.kind == kind && i.start_ms == start_ms && i.end_ms.is_none()).then_some((r, i))
        })
    }

    /// Raises the peak level and value of the ongoing incident of `kind` started at `start_ms`
    /// (for a traffic drop the worst value is the lowest).
    pub fn raise_peak(&self, kind: IncidentKind, start_ms: u64, level: Level, value: f64) {
        if let Some((r, mut i)) = self.ongoing(kind, start_ms) {
            let worse = if kind.lower_is_worse() {
                value < i.peak_value
            } else {
                value > i.peak_value
            };
            if level > i.peak_level || worse {
                i.peak_level = i.peak_level.max(level);
                if worse {
                    i.peak_value = value;
                }
                r.store(&i);
            }
        }
    }

    /// Marks the incident of `kind` started at `start_ms` as muted, if its record is still kept.
    /// Starts are compared to the second, as events carry them.
    pub fn mark_muted(&self, kind: IncidentKind, start_ms: u64) {
        let found = self.records.iter().find_map(|r| {
            let i = r.load()?;
            let same = i.kind == kind && i.start_ms / 1000 == start_ms / 1000;
            (same && !i.muted).then_some((r, i))
        });
        if let Some((r, mut i)) = found {
            i.muted = true;
            r.store(&i);
        }
    }

    /// Resolves the incident of `kind` started at `start_ms`; its time counts even when the
    /// record itself was overwritten by newer incidents.
    pub fn close(&self, kind: IncidentKind, start_ms: u64, end_ms: u64) {
        self.closed_ms[kind as usize].fetch_add(end_ms.saturating_sub(start_ms), Relaxed);
        if let Some((r, mut i)) = self.ongoing(kind, start_ms) {
            i.end_ms = Some(end_ms.max(start_ms).max(1));
            r.store(&i);
        }
    }

    /// Totals and recent incidents at `now_ms`; `ongoing_since_ms` holds each kind's current
    /// incident start (from its alert state), so that firing time grows while it lasts.
    pub fn summary(&self, now_ms: u64, ongoing_since_ms: [Option<u64>; KINDS]) -> IncidentSummary {
        let mut s = IncidentSummary::default();
        for (k, since) in ongoing_since_ms.iter().enumerate() {
            s.opened[k] = self.opened[k].load(Relaxed);
            let ongoing = since.map_or(0, |since| now_ms.saturating_sub(since));
            s.firing_seconds[k] = (self.closed_ms[k].load(Relaxed) + ongoing) / 1000;
        }
        let next = self.next.load(Relaxed) as usize;
        s.recent = (1..=INCIDENT_HISTORY)
            .filter_map(|k| self.records[(next + INCIDENT_HISTORY - k) % INCIDENT_HISTORY].load())
            .collect();
        s
    }

    /// Copies the log from another zone (reload into a resized zone).
    pub fn copy_from(&self, other: &IncidentLog) {
        self.next.store(other.next.load(Relaxed), Relaxed);
        for (d, s) in self.records.iter().zip(other.records.iter()) {
            match s.load() {
                Some(i) => d.store(&i),
                None => d.tag.store(0, Relaxed),
            }
        }
        for (d, s) in self.opened.iter().zip(other.opened.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        for (d, s) in self.closed_ms.iter().zip(other.closed_ms.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
    }

    /// Forgets every incident and total.
    pub fn reset(&self) {
        self.next.store(0, Relaxed);
        self.records.iter().for_each(|r| r.tag.store(0, Relaxed));
        self.opened.iter().for_each(|c| c.store(0, Relaxed));
        self.closed_ms.iter().for_each(|c| c.store(0, Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IncidentKind::*;

    fn log() -> Box<IncidentLog> {
        // SAFETY: all-zero bytes are a valid, empty log.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn open_escalate_close() {
        let l = log();
        l.open(Errors, 10_000, Level::Warning, 6.0);
        l.raise_peak(Errors, 10_000, Level::Critical, 12.5);
        l.raise_peak(Errors, 10_000, Level::Warning, 7.0);
        let s = l.summary(70_000, [Some(10_000), None, None, None]);
        assert_eq!(s.opened, [1, 0, 0, 0]);
        assert_eq!(s.firing_seconds, [60, 0, 0, 0], "ongoing time counts");
        let expect = Incident {
            kind: Errors,
            start_ms: 10_000,
            end_ms: None,
            peak_level: Level::Critical,
            peak_value: 12.5,
            muted: false,
        };
        assert_eq!(s.recent, vec![expect]);
        l.close(Errors, 10_000, 190_000);
        let s = l.summary(500_000, [None; KINDS]);
        assert_eq!(s.firing_seconds, [180, 0, 0, 0]);
        assert_eq!(s.recent[0].end_ms, Some(190_000));
        assert!(!s.recent[0].muted);
        l.mark_muted(Errors, 10_999);
        let s = l.summary(500_000, [None; KINDS]);
        assert!(s.recent[0].muted, "marked, and kept by a later store");
        assert_eq!(s.recent[0].end_ms, Some(190_000));
        l.mark_muted(Errors, 1);
    }

    #[test]
    fn kinds_are_counted_apart_and_history_keeps_the_last_eight() {
        let l = log();
        l.open(Latency, 1_000, Level::Warning, 0.6);
        for n in 0..10u64 {
            let start = 10_000 + n * 10_000;
            l.open(Errors, start, Level::Critical, 50.0);
            l.close(Errors, start, start + 5_000);
        }
        // The latency incident's record is gone, but its time is still booked.
        l.close(Latency, 1_000, 201_000);
        let s = l.summary(300_000, [None, None, Some(250_000), None]);
        assert_eq!(s.opened, [10, 1, 0, 0]);
        assert_eq!(s.firing_seconds, [50, 200, 50, 0]);
        assert_eq!(s.recent.len(), INCIDENT_HISTORY);
        let starts: Vec<u64> = s.recent.iter().map(|i| i.start_ms).collect();
        assert_eq!(starts[0], 100_000, "newest first");
        assert_eq!(starts[7], 30_000);
        assert!(s.recent.iter().all(|i| i.kind == Errors));
    }

    #[test]
    fn copy_and_reset() {
        let a = log();
        let b = log();
        a.open(Slo, 5_000, Level::Critical, 15.2);
        b.copy_from(&a);
        assert_eq!(
            b.summary(6_000, [None; KINDS]),
            a.summary(6_000, [None; KINDS])
        );
        b.reset();
        assert_eq!(b.summary(6_000, [None; KINDS]), IncidentSummary::default());
        assert_eq!(
            IncidentKind::ALL.map(IncidentKind::label),
            ["errors", "latency", "slo", "traffic"]
        );
    }

    #[test]
    fn a_traffic_drop_keeps_its_lowest_count() {
        let l = log();
        l.open(Traffic, 1_000, Level::Warning, 40.0);
        l.raise_peak(Traffic, 1_000, Level::Critical, 3.0);
        l.raise_peak(Traffic, 1_000, Level::Warning, 20.0);
        let i = l.summary(2_000, [None; KINDS]).recent[0];
        assert_eq!((i.peak_level, i.peak_value), (Level::Critical, 3.0));
    }
}
