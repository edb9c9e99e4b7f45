//! Text every destination and the error log share: cutting and flattening untrusted strings,
//! durations, windows, times and percentages. Pure: no I/O, no nginx, no panics.

/// Truncates `s` to at most `max` characters, ending a cut string with `…`.
pub fn truncate_chars(s: &str, max: usize) -> String {
    // Find the byte offset of the char that would be the (max+1)-th; none means it fits.
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            // Keep max-1 chars so that the ellipsis brings the total back to exactly `max`.
            let cut = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            let mut out = String::with_capacity(cut + '…'.len_utf8());
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
    }
}

/// Replaces control characters (including `\n`, `\r`, `\t`) and Unicode line/paragraph
/// separators with spaces, so that any input stays on one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Truncates and flattens untrusted input in one step (truncating first keeps the work small).
pub fn clip(s: &str, max: usize) -> String {
    one_line(&truncate_chars(s, max))
}

/// Treats an empty or whitespace-only optional string as absent.
pub fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.trim().is_empty())
}

/// Formats an elapsed time with its two most significant units, e.g. `7m 10s`, `2h 3m`, `1d 2h`.
pub fn format_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(i) = UNITS.iter().position(|&(u, _)| secs >= u) else {
        return "0s".to_owned();
    };
    let (unit, suffix) = UNITS[i];
    let mut out = format!("{}{}", secs / unit, suffix);
    // A zero second unit is noise ("2h 0m"); leave it out.
    if let Some(&(next, next_suffix)) = UNITS.get(i + 1) {
        let rest = secs % unit / next;
        if rest > 0 {
            out.push_str(&format!(" {rest}{next_suffix}"));
        }
    }
    out
}

/// Formats a window length compactly as in the configuration, e.g. `5m`, `10s`, `1h30m`.
pub fn format_window(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, s)| format!("{v}{s}"))
        .collect()
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Kept by hand: std has no calendar, and `time`/`chrono` are a lot of crate for one 12-line
/// function on the alert path.
///
/// Howard Hinnant's `civil_from_days`, in unsigned arithmetic because Unix time here is never
/// negative; eras are 400-year cycles starting on 0000-03-01 so leap days fall at year end.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // u64::MAX / 86400 + 719468 is far below u64::MAX, so nothing here can overflow.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Formats Unix seconds as ISO 8601 UTC, e.g. `2026-11-22T10:15:30Z`.
pub fn iso8601(unix: u64) -> String {
    let (y, mo, d) = civil_from_days(unix / 86_400);
    let rem = unix % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Last second of 9999-12-31: Discord only accepts four-digit years in `timestamp`.
pub const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// Formats a percentage without trailing zeros: `5`, `12.5`, `0.25`.
pub fn fmt_pct(v: f64) -> String {
    let s = format!("{v:.3}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        // NaN and infinities have no fraction to trim.
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(iso8601(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(iso8601(1_795_342_530), "2026-11-22T10:15:30Z");
        assert_eq!(iso8601(MAX_TIMESTAMP), "9999-12-31T23:59:59Z");
        // Absurd input must not panic.
        assert!(iso8601(u64::MAX).ends_with('Z'));
    }
    #[test]
    fn durations_windows_and_percentages() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(430), "7m 10s");
        assert_eq!(format_duration(7_380), "2h 3m");
        assert_eq!(format_duration(7_205), "2h");
        assert_eq!(format_duration(93_600), "1d 2h");
        assert_eq!(format_window(300), "5m");
        assert_eq!(format_window(10), "10s");
        assert_eq!(format_window(3_600), "1h");
        assert_eq!(format_window(5_400), "1h30m");
        assert_eq!(format_window(150), "2m30s");
        assert_eq!(fmt_pct(5.0), "5");
        assert_eq!(fmt_pct(12.5), "12.5");
        assert_eq!(fmt_pct(0.25), "0.25");
    }

    #[test]
    fn truncate_chars_never_splits_sequences() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("abcd", 0), "");
        assert_eq!(truncate_chars("😀😀😀😀", 2), "😀…");
        assert_eq!(truncate_chars("ééé", 1), "…");
        for max in 0..12 {
            let s = truncate_chars(&"a😀é".repeat(5), max);
            assert!(s.chars().count() <= max);
        }
    }
}
