//! `status_alert_maintenance NAME|* DAYS HH:MM-HH:MM [tz=...]`: weekly windows in
//! which a NAME (or every NAME, `*`) is muted, and the question "is NAME muted now, and until
//! when?". Pure: parsing and calendar arithmetic, no clock of its own.
//!
//! - DAYS: `*`, a day (`mon` .. `sun`), a range (`mon-fri`, also across the week's end:
//!   `fri-mon`), or a comma list of those (`sat,sun`, `mon,wed-fri`).
//! - HH:MM-HH:MM: from 00:00 to 24:00, minute precision. A window whose end is not after its
//!   start crosses midnight: `sat 23:00-01:00` runs from Saturday 23:00 to Sunday 01:00 (the
//!   days name the day a window starts on). Equal times are refused; `00:00-24:00` is a whole
//!   day.
//! - tz: `UTC` (the default), a fixed offset (`+02:00`, `-05:30`, up to 14 hours), or `local`:
//!   the offset nginx itself uses for local time (`$time_local`) at that moment, which follows
//!   the host's daylight saving rules. Zone names (`Europe/Berlin`) are not supported: that
//!   needs a time zone database, which the module does not carry (a copy is about a megabyte
//!   and goes stale) and should not read from the host at run time (workers may run chrooted,
//!   and a configuration that checks fine must behave the same everywhere). `local` covers the
//!   common "maintenance at night in our time" case through nginx's own clock; a fixed offset
//!   does not change with daylight saving time.
//!
//! Several windows may cover one NAME; adjacent or overlapping windows make one mute, and
//! [`Maintenance::muted_until`] gives its end, so that the page says "muted until T" and an
//! incident still firing then is announced (see `evaluate::muting`).
//!
//! Depends on [`ParamError`] and [`validate_name`] of `conf::params`. Wiring: the directive
//! (http context, repeatable) parses with [`parse_maintenance`], `MainConf::validate` refuses a
//! NAME that no `status_alert` defines (naming file and line), and `evaluate::muted` asks
//! [`Maintenance::muted_until`] every evaluation round (and for every `status_metrics`
//! request) with nginx's current offset for `tz=local`.

use crate::conf::params::{validate_name, ParamError};

/// Seconds in a day and in a week.
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// Largest fixed offset accepted (UTC+14:00 is the largest in use).
const MAX_OFFSET_SECS: i32 = 14 * 3600;
/// Day names, Monday first (bit 0 of [`MaintenanceWindow::days`]).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Which NAMEs a window mutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaintenanceTarget {
    /// `*`: every NAME.
    All,
    /// One NAME.
    Name(String),
}

impl MaintenanceTarget {
    /// True when this target covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            MaintenanceTarget::All => true,
            MaintenanceTarget::Name(n) => n == name,
        }
    }
}

/// The clock a window is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeZone {
    /// UTC (the default).
    Utc,
    /// A fixed offset east of UTC, seconds.
    Fixed(i32),
    /// nginx's local time: the caller passes the current offset.
    Local,
}

/// One weekly window of `status_alert_maintenance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Which NAMEs it mutes.
    pub target: MaintenanceTarget,
    /// Days a window starts on, bit 0 Monday .. bit 6 Sunday.
    pub days: u8,
    /// Start, seconds after midnight.
    pub start_secs: u32,
    /// End, seconds after midnight (up to 86400); not after `start_secs`: the next day.
    pub end_secs: u32,
    /// The clock the times are in.
    pub tz: TimeZone,
}

impl MaintenanceWindow {
    /// The end (Unix seconds) of this window's occurrence covering `now` for a clock
    /// `offset_secs` east of UTC, if one does.
    fn covering_end(&self, now: i64, offset_secs: i64) -> Option<i64> {
        let local = now + offset_secs;
        let midnight = local.div_euclid(DAY) * DAY;
        let t = local - midnight;
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let today = (local.div_euclid(DAY) + 3).rem_euclid(7);
        let on = |day: i64| self.days & (1 << day.rem_euclid(7)) != 0;
        let (start, end) = (i64::from(self.start_secs), i64::from(self.end_secs));
        let end_local = if start < end {
            (on(today) && start <= t && t < end).then_some(midnight + end)
        } else if on(today) && t >= start {
            Some(midnight + DAY + end) // began today, ends tomorrow
        } else if on(today - 1) && t < end {
            Some(midnight + end) // began yesterday
        } else {
            None
        };
        end_local.map(|e| e - offset_secs)
    }
}

/// Every `status_alert_maintenance` window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// In configuration order.
    pub windows: Vec<MaintenanceWindow>,
}

impl Maintenance {
    /// When the maintenance muting `name` at `now` (Unix seconds) ends, Unix seconds: the end of
    /// the covering window, extended through adjacent and overlapping ones; `None` when no
    /// window covers `now`. `local_offset_secs` is nginx's current offset from UTC for
    /// `tz=local` windows.
    pub fn muted_until(&self, name: &str, now: u64, local_offset_secs: i32) -> Option<u64> {
        let windows: Vec<&MaintenanceWindow> = self
            .windows
            .iter()
            .filter(|w| w.target.covers(name))
            .collect();
        let mut until: Option<i64> = None;
        let mut t = i64::try_from(now).ok()?;
        // Each step moves to a later end; a chain of windows covering the whole week never
        // ends, and is reported as muted for a week.
        let limit = t + WEEK;
        loop {
            let end = windows
                .iter()
                .filter_map(|w| {
                    let offset = match w.tz {
                        TimeZone::Utc => 0,
                        TimeZone::Fixed(s) => i64::from(s),
                        TimeZone::Local => i64::from(local_offset_secs),
                    };
                    w.covering_end(t, offset)
                })
                .max();
            match end {
                Some(e) if e > t && t < limit => {
                    until = Some(e);
                    t = e;
                }
                _ => break,
            }
        }
        until.map(|u| u.min(limit) as u64)
    }

    /// True when a window mutes `name` at `now` (Unix seconds); see [`Self::muted_until`].
    pub fn is_muted(&self, name: &str, now: u64, local_offset_secs: i32) -> bool {
        self.muted_until(name, now, local_offset_secs).is_some()
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> ParamError {
    ParamError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

const EXPECTED_DAYS: &str = "\"*\", a day such as \"mon\", a range such as \"mon-fri\" or a \
                             list such as \"sat,sun\"";
const EXPECTED_HOURS: &str =
    "HH:MM-HH:MM between 00:00 and 24:00, e.g. \"22:00-02:00\" or \"00:00-24:00\"";
const EXPECTED_TZ: &str = "UTC, local or a fixed offset such as \"+02:00\" (time zone names \
                           need a time zone database, which the module does not use)";

/// Parses the arguments of `status_alert_maintenance NAME|* DAYS HH:MM-HH:MM [tz=...]`.
pub fn parse_maintenance(args: &[&str]) -> Result<MaintenanceWindow, ParamError> {
    let (target, days, hours, rest) = match args {
        [target, days, hours, rest @ ..] => (*target, *days, *hours, rest),
        _ => {
            return Err(ParamError::Conflict(
                "expects NAME or \"*\", DAYS and HH:MM-HH:MM, e.g. \"api mon-fri 22:00-23:00\""
                    .into(),
            ))
        }
    };
    let target = if target == "*" {
        MaintenanceTarget::All
    } else {
        validate_name(target)?;
        MaintenanceTarget::Name(target.to_string())
    };
    let days = parse_days(days).ok_or_else(|| invalid("days", days, EXPECTED_DAYS))?;
    let (start_secs, end_secs) =
        parse_hours(hours).ok_or_else(|| invalid("hours", hours, EXPECTED_HOURS))?;
    if start_secs == end_secs {
        return Err(ParamError::Conflict(format!(
            "the window \"{hours}\" is empty; \"00:00-24:00\" is a whole day"
        )));
    }
    let mut tz = None;
    for arg in rest {
        let Some(value) = arg.strip_prefix("tz=") else {
            return Err(ParamError::UnknownParameter(arg.to_string()));
        };
        if tz.is_some() {
            return Err(ParamError::Duplicate("tz".into()));
        }
        tz = Some(parse_tz(value).ok_or_else(|| invalid("tz", value, EXPECTED_TZ))?);
    }
    Ok(MaintenanceWindow {
        target,
        days,
        start_secs,
        end_secs,
        tz: tz.unwrap_or(TimeZone::Utc),
    })
}

/// `*`, `mon`, `mon-fri`, `fri-mon`, `sat,sun`, `mon,wed-fri` -> a bit per day, Monday first.
fn parse_days(value: &str) -> Option<u8> {
    if value == "*" {
        return Some(0x7f);
    }
    let day = |d: &str| DAY_NAMES.iter().position(|n| *n == d);
    let mut mask = 0u8;
    for part in value.split(',') {
        match part.split_once('-') {
            None => mask |= 1 << day(part)?,
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                if from == to {
                    return None; // "mon-mon": a typo more likely than a day
                }
                let mut d = from;
                loop {
                    mask |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
    }
    Some(mask)
}

/// `HH:MM` -> seconds after midnight, 00:00 to 24:00.
fn parse_clock(value: &str) -> Option<u32> {
    let (h, m) = value.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 3600 + m * 60)
}

/// `HH:MM-HH:MM` -> (start, end) in seconds after midnight; only the end may be 24:00.
fn parse_hours(value: &str) -> Option<(u32, u32)> {
    let (start, end) = value.split_once('-')?;
    let (start, end) = (parse_clock(start)?, parse_clock(end)?);
    (start < DAY as u32).then_some((start, end))
}

/// `UTC`, `local`, `+02:00`, `-05:30` (at most 14:00 either way).
fn parse_tz(value: &str) -> Option<TimeZone> {
    match value {
        "UTC" => return Some(TimeZone::Utc),
        "local" => return Some(TimeZone::Local),
        _ => {}
    }
    let (sign, clock) = match value.as_bytes().first()? {
        b'+' => (1, &value[1..]),
        b'-' => (-1, &value[1..]),
        _ => return None,
    };
    let secs = parse_clock(clock).filter(|s| *s as i32 <= MAX_OFFSET_SECS)?;
    Some(TimeZone::Fixed(sign * secs as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const MONDAY: u64 = 1_704_067_200;

    fn at(day: u64, hh: u64, mm: u64) -> u64 {
        MONDAY + day * 86_400 + hh * 3600 + mm * 60
    }

    fn schedule(lines: &[&str]) -> Maintenance {
        Maintenance {
            windows: lines
                .iter()
                .map(|l| {
                    let args: Vec<&str> = l.split(' ').collect();
                    parse_maintenance(&args).unwrap()
                })
                .collect(),
        }
    }

    #[test]
    fn parses_days_hours_and_zones() {
        let w = parse_maintenance(&["api", "mon-fri", "22:00-23:30"]).unwrap();
        assert_eq!(w.target, MaintenanceTarget::Name("api".into()));
        assert_eq!(
            (w.days, w.start_secs, w.end_secs),
            (0b0011111, 79_200, 84_600)
        );
        assert_eq!(w.tz, TimeZone::Utc);
        let w = parse_maintenance(&["*", "sat,sun", "00:00-24:00", "tz=+02:00"]).unwrap();
        assert_eq!(
            (w.target, w.days, w.end_secs),
            (MaintenanceTarget::All, 0b1100000, 86_400)
        );
        assert_eq!(w.tz, TimeZone::Fixed(7200));
        let days = |d: &str| parse_maintenance(&["a", d, "01:00-02:00"]).unwrap().days;
        assert_eq!(days("*"), 0x7f);
        assert_eq!(days("fri-mon"), 0b1110001);
        assert_eq!(days("mon,wed-fri"), 0b0011101);
        assert_eq!(days("sun"), 0b1000000);
        let tz = |t: &str| parse_maintenance(&["a", "*", "01:00-02:00", t]).unwrap().tz;
        assert_eq!(tz("tz=UTC"), TimeZone::Utc);
        assert_eq!(tz("tz=local"), TimeZone::Local);
        assert_eq!(tz("tz=-05:30"), TimeZone::Fixed(-19_800));
        assert_eq!(tz("tz=+14:00"), TimeZone::Fixed(50_400));
        let w = parse_maintenance(&["be/v2", "sat", "23:00-01:00"]).unwrap();
        assert_eq!(
            (w.start_secs, w.end_secs),
            (82_800, 3600),
            "crosses midnight"
        );
    }

    #[test]
    fn malformed_windows_are_refused_clearly() {
        let cases: [(&[&str], &str); 21] = [
            (
                &["api", "mon-fri"],
                "expects NAME or \"*\", DAYS and HH:MM-HH:MM",
            ),
            (&[], "expects NAME or \"*\""),
            (&["a b", "*", "01:00-02:00"], "invalid name \"a b\""),
            (
                &["api", "weekdays", "01:00-02:00"],
                "invalid days value \"weekdays\", expected \"*\", a day such as \"mon\", a \
                 range such as \"mon-fri\" or a list such as \"sat,sun\"",
            ),
            (&["api", "Mon", "01:00-02:00"], "invalid days value \"Mon\""),
            (
                &["api", "mon-mon", "01:00-02:00"],
                "invalid days value \"mon-mon\"",
            ),
            (
                &["api", "mon,", "01:00-02:00"],
                "invalid days value \"mon,\"",
            ),
            (
                &["api", "mon-", "01:00-02:00"],
                "invalid days value \"mon-\"",
            ),
            (
                &["api", "*", "9:00-17:00"],
                "invalid hours value \"9:00-17:00\", expected HH:MM-HH:MM between 00:00 and \
                 24:00",
            ),
            (
                &["api", "*", "24:00-01:00"],
                "invalid hours value \"24:00-01:00\"",
            ),
            (
                &["api", "*", "23:60-01:00"],
                "invalid hours value \"23:60-01:00\"",
            ),
            (
                &["api", "*", "01:00-24:01"],
                "invalid hours value \"01:00-24:01\"",
            ),
            (&["api", "*", "01:00"], "invalid hours value \"01:00\""),
            (&["api", "*", "01:00-02:00-03:00"], "invalid hours value"),
            (
                &["api", "*", "10:00-10:00"],
                "the window \"10:00-10:00\" is empty; \"00:00-24:00\" is a whole day",
            ),
            (
                &["api", "*", "01:00-02:00", "tz=Europe/Berlin"],
                "invalid tz value \"Europe/Berlin\", expected UTC, local or a fixed offset \
                 such as \"+02:00\" (time zone names need a time zone database",
            ),
            (
                &["api", "*", "01:00-02:00", "tz=+2"],
                "invalid tz value \"+2\"",
            ),
            (
                &["api", "*", "01:00-02:00", "tz=+15:00"],
                "invalid tz value \"+15:00\"",
            ),
            (
                &["api", "*", "01:00-02:00", "tz=utc"],
                "invalid tz value \"utc\"",
            ),
            (
                &["api", "*", "01:00-02:00", "tz=UTC", "tz=UTC"],
                "duplicate parameter \"tz\"",
            ),
            (
                &["api", "*", "01:00-02:00", "quiet"],
                "invalid parameter \"quiet\"",
            ),
        ];
        for (args, msg) in cases {
            let err = parse_maintenance(args).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
    }

    #[test]
    fn weekday_windows() {
        let m = schedule(&["api mon-fri 22:00-23:00"]);
        assert_eq!(m.muted_until("api", at(0, 22, 0), 0), Some(at(0, 23, 0)));
        assert_eq!(m.muted_until("api", at(4, 22, 59), 0), Some(at(4, 23, 0)));
        assert!(!m.is_muted("api", at(0, 21, 59), 0));
        assert!(
            !m.is_muted("api", at(0, 23, 0), 0),
            "the end is not in the window"
        );
        assert!(!m.is_muted("api", at(5, 22, 30), 0), "saturday");
        assert!(!m.is_muted("other", at(0, 22, 30), 0));
    }

    #[test]
    fn windows_across_midnight_and_the_week_end() {
        let m = schedule(&["api sun 23:00-01:00"]);
        assert_eq!(m.muted_until("api", at(6, 23, 30), 0), Some(at(7, 1, 0)));
        // Monday 00:30 belongs to Sunday's window; the next week's Monday too.
        assert_eq!(m.muted_until("api", at(7, 0, 30), 0), Some(at(7, 1, 0)));
        assert_eq!(m.muted_until("api", at(0, 0, 30), 0), Some(at(0, 1, 0)));
        assert!(!m.is_muted("api", at(0, 23, 30), 0), "monday evening");
        assert!(
            !m.is_muted("api", at(6, 0, 30), 0),
            "sunday early: saturday is not listed"
        );
    }

    #[test]
    fn adjacent_and_overlapping_windows_are_one_mute() {
        let m = schedule(&[
            "api sat 00:00-24:00",
            "* sun 00:00-06:00",
            "api sun 05:00-07:00",
            "api sun 08:00-09:00",
        ]);
        assert_eq!(m.muted_until("api", at(5, 12, 0), 0), Some(at(6, 7, 0)));
        assert_eq!(m.muted_until("be", at(5, 12, 0), 0), None);
        assert_eq!(m.muted_until("be", at(6, 1, 0), 0), Some(at(6, 6, 0)));
        // Every day, all day: muted for at most a week at a time.
        let m = schedule(&["* * 00:00-24:00"]);
        assert_eq!(m.muted_until("api", at(2, 3, 0), 0), Some(at(9, 3, 0)));
        assert_eq!(
            Maintenance::default().muted_until("api", at(0, 0, 0), 0),
            None
        );
    }

    #[test]
    fn offsets_fixed_and_local() {
        // 02:00-03:00 at UTC+02:00 is 00:00-01:00 UTC.
        let m = schedule(&["api mon 02:00-03:00 tz=+02:00"]);
        assert_eq!(m.muted_until("api", at(0, 0, 30), 0), Some(at(0, 1, 0)));
        assert!(!m.is_muted("api", at(0, 2, 30), 0));
        // A negative offset moves a Monday-evening window into Tuesday UTC.
        let m = schedule(&["api mon 22:00-23:00 tz=-05:00"]);
        assert_eq!(m.muted_until("api", at(1, 3, 30), 0), Some(at(1, 4, 0)));
        // tz=local follows the offset the caller passes (nginx's, daylight saving included).
        let m = schedule(&["api mon 02:00-03:00 tz=local"]);
        assert!(m.is_muted("api", at(0, 0, 30), 7200));
        assert!(m.is_muted("api", at(0, 1, 30), 3600));
        assert!(!m.is_muted("api", at(0, 1, 30), 7200));
        assert!(m.is_muted("api", at(0, 2, 30), 0));
        // Before the epoch in local time: no panic, no window.
        let m = schedule(&["api wed 23:00-24:00 tz=-14:00"]);
        assert!(!m.is_muted("api", 0, 0));
        let late = 13 * 3600 + 1800; // 1969-12-31 23:30 at -14:00, a Wednesday
        assert_eq!(m.muted_until("api", late, 0), Some(14 * 3600));
    }
}
