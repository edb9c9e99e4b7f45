//! Runtime mutes (`POST ?mute=NAME&for=TIME[&reason=TEXT]`) as fixed-size records for
//! shared memory, and the few operations on a table of them.
//!
//! A [`MuteRecord`] is plain fields (key, end, reason bytes): the control handler writes one in
//! whichever worker the POST lands, and the evaluator reads them every round. Writes are rare
//! administrative requests, never the counting path, so the table (`mute_table`) sits behind
//! the zone's lock (the `ngx_shmtx_t` of the zone's slab pool, taken in `conf/mute_lock.rs`)
//! rather than in atomics: a reader
//! copies the records it needs under the lock, a writer changes one record under it.
//!
//! Mutes must survive reloads (the zone is kept) and binary upgrades (the new master has a
//! zone of its own): [`MuteRecord::to_json`] / [`MuteRecord::from_json`] carry them in the
//! hand-over state, which is read back distrusting every field.
//!
//! The key is the NAME, or `*` for every NAME. Depends on nothing else in the crate.

use serde_json::{json, Value};

/// Longest key (a NAME, see `conf::params::MAX_NAME_LEN`, or `*`).
pub const MUTE_KEY_MAX: usize = 64;
/// Longest reason, bytes of UTF-8.
pub const MUTE_REASON_MAX: usize = 128;
/// The key that mutes every NAME.
pub const MUTE_ALL: &[u8] = b"*";

/// One runtime mute in shared memory; all zero when free.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MuteRecord {
    /// End of the mute, ms since the epoch; 0 for a free record. An ended mute is free too.
    until_ms: u64,
    /// When the mute was set, ms since the epoch.
    set_ms: u64,
    /// Bytes of `key` in use.
    key_len: u16,
    /// Bytes of `reason` in use.
    reason_len: u16,
    /// Keeps the size a multiple of 8 without implicit padding.
    _reserved: u32,
    key: [u8; MUTE_KEY_MAX],
    reason: [u8; MUTE_REASON_MAX],
}

impl Default for MuteRecord {
    fn default() -> Self {
        MuteRecord {
            until_ms: 0,
            set_ms: 0,
            key_len: 0,
            reason_len: 0,
            _reserved: 0,
            key: [0; MUTE_KEY_MAX],
            reason: [0; MUTE_REASON_MAX],
        }
    }
}

impl MuteRecord {
    /// A mute of `key` (a NAME or `*`) from `set_ms` until `until_ms`; `None` when the key is
    /// empty or longer than [`MUTE_KEY_MAX`], the reason longer than [`MUTE_REASON_MAX`], or
    /// `until_ms` is 0.
    pub fn new(key: &[u8], set_ms: u64, until_ms: u64, reason: &str) -> Option<MuteRecord> {
        if key.is_empty()
            || key.len() > MUTE_KEY_MAX
            || reason.len() > MUTE_REASON_MAX
            || until_ms == 0
        {
            return None;
        }
        let mut r = MuteRecord {
            until_ms,
            set_ms,
            key_len: key.len() as u16,
            reason_len: reason.len() as u16,
            ..MuteRecord::default()
        };
        r.key[..key.len()].copy_from_slice(key);
        r.reason[..reason.len()].copy_from_slice(reason.as_bytes());
        Some(r)
    }

    /// The NAME (or `*`) muted.
    pub fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len).min(MUTE_KEY_MAX)]
    }

    /// Why, as given (may be empty); bytes that are not UTF-8 (a damaged record) are replaced.
    pub fn reason(&self) -> String {
        let len = usize::from(self.reason_len).min(MUTE_REASON_MAX);
        String::from_utf8_lossy(&self.reason[..len]).into_owned()
    }

    /// End of the mute, ms since the epoch.
    pub fn until_ms(&self) -> u64 {
        self.until_ms
    }

    /// When it was set, ms since the epoch.
    pub fn set_ms(&self) -> u64 {
        self.set_ms
    }

    /// True while the mute holds at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.key_len != 0 && self.until_ms > now_ms
    }

    /// The record for the hand-over state.
    pub fn to_json(&self) -> Value {
        json!({
            "key": String::from_utf8_lossy(self.key()),
            "set_ms": self.set_ms,
            "until_ms": self.until_ms,
            "reason": self.reason(),
        })
    }

    /// A record read back from the hand-over state; `None` for anything malformed.
    pub fn from_json(v: &Value) -> Option<MuteRecord> {
        let key = v.get("key")?.as_str()?;
        let set_ms = v.get("set_ms")?.as_u64()?;
        let until_ms = v.get("until_ms")?.as_u64()?;
        let reason = v.get("reason")?.as_str()?;
        MuteRecord::new(key.as_bytes(), set_ms, until_ms, reason)
    }
}

/// A mute could not be stored: every record holds an active mute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many mutes at once, at most {0}")]
pub struct MuteTableFull(pub usize);

/// Stores `record` at `now_ms`: over the mute of the same key if there is one (a new mute of a
/// NAME replaces its old one, also a longer one: the operator's latest word counts), else in
/// the first free or ended record.
pub fn set(
    records: &mut [MuteRecord],
    record: MuteRecord,
    now_ms: u64,
) -> Result<(), MuteTableFull> {
    let slot = records
        .iter()
        .position(|r| r.key_len != 0 && r.key() == record.key())
        .or_else(|| records.iter().position(|r| !r.is_active(now_ms)))
        .ok_or(MuteTableFull(records.len()))?;
    records[slot] = record;
    Ok(())
}

/// Ends the mute of `key`; false when there was none active at `now_ms`.
pub fn clear(records: &mut [MuteRecord], key: &[u8], now_ms: u64) -> bool {
    let mut was_active = false;
    for r in records
        .iter_mut()
        .filter(|r| r.key_len != 0 && r.key() == key)
    {
        was_active |= r.is_active(now_ms);
        *r = MuteRecord::default();
    }
    was_active
}

/// The mute holding `name` at `now_ms`, its own or the `*` one, whichever lasts longer.
pub fn mute_of<'a>(records: &'a [MuteRecord], name: &[u8], now_ms: u64) -> Option<&'a MuteRecord> {
    records
        .iter()
        .filter(|r| r.is_active(now_ms) && (r.key() == name || r.key() == MUTE_ALL))
        .max_by_key(|r| r.until_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn mute(key: &str, until: u64, reason: &str) -> MuteRecord {
        MuteRecord::new(key.as_bytes(), NOW, until, reason).unwrap()
    }

    #[test]
    fn records_keep_key_end_and_reason() {
        let r = mute("be/v2", NOW + 60_000, "deploy v2.1 – ü");
        assert_eq!(r.key(), b"be/v2");
        assert_eq!(r.reason(), "deploy v2.1 – ü");
        assert_eq!((r.set_ms(), r.until_ms()), (NOW, NOW + 60_000));
        assert!(r.is_active(NOW + 59_999) && !r.is_active(NOW + 60_000));
        assert!(!MuteRecord::default().is_active(0));
        let long = "x".repeat(MUTE_KEY_MAX + 1);
        assert!(MuteRecord::new(long.as_bytes(), NOW, NOW + 1, "").is_none());
        assert!(MuteRecord::new(b"", NOW, NOW + 1, "").is_none());
        assert!(MuteRecord::new(b"a", NOW, 0, "").is_none());
        let reason = "r".repeat(MUTE_REASON_MAX);
        assert!(MuteRecord::new(b"a", NOW, NOW + 1, &reason).is_some());
        assert!(MuteRecord::new(b"a", NOW, NOW + 1, &format!("{reason}r")).is_none());
        assert_eq!(
            core::mem::size_of::<MuteRecord>(),
            24 + MUTE_KEY_MAX + MUTE_REASON_MAX
        );
    }

    #[test]
    fn a_table_sets_replaces_clears_and_reuses_ended_records() {
        let mut t = [MuteRecord::default(); 2];
        set(&mut t, mute("api", NOW + 60_000, "a"), NOW).unwrap();
        set(&mut t, mute("be", NOW + 10_000, ""), NOW).unwrap();
        assert_eq!(
            set(&mut t, mute("db", NOW + 10_000, ""), NOW),
            Err(MuteTableFull(2))
        );
        assert_eq!(
            MuteTableFull(2).to_string(),
            "too many mutes at once, at most 2"
        );
        // The same key is replaced, also by a shorter mute.
        set(&mut t, mute("api", NOW + 5_000, "b"), NOW).unwrap();
        assert_eq!(mute_of(&t, b"api", NOW).unwrap().reason(), "b");
        // An ended mute frees its record.
        set(&mut t, mute("db", NOW + 90_000, ""), NOW + 20_000).unwrap();
        assert!(mute_of(&t, b"be", NOW + 20_000).is_none());
        assert!(mute_of(&t, b"db", NOW + 20_000).is_some());
        assert!(clear(&mut t, b"db", NOW + 20_000));
        assert!(!clear(&mut t, b"db", NOW + 20_000), "already cleared");
        assert!(!clear(&mut t, b"api", NOW + 20_000), "ended by itself");
        assert!(mute_of(&t, b"db", NOW + 20_000).is_none());
    }

    #[test]
    fn star_mutes_every_name_and_the_longer_mute_counts() {
        let mut t = [MuteRecord::default(); 4];
        set(&mut t, mute("*", NOW + 60_000, "deploy"), NOW).unwrap();
        set(&mut t, mute("api", NOW + 120_000, "db migration"), NOW).unwrap();
        assert_eq!(mute_of(&t, b"api", NOW).unwrap().reason(), "db migration");
        assert_eq!(mute_of(&t, b"be", NOW).unwrap().reason(), "deploy");
        assert_eq!(
            mute_of(&t, b"api", NOW + 70_000).unwrap().until_ms(),
            NOW + 120_000
        );
        assert!(mute_of(&t, b"be", NOW + 70_000).is_none());
        // "*" is a key like any other: unmute=* ends it, not the NAMEs' own mutes.
        assert!(clear(&mut t, MUTE_ALL, NOW));
        assert!(mute_of(&t, b"api", NOW).is_some() && mute_of(&t, b"be", NOW).is_none());
    }

    #[test]
    fn hand_over_round_trip_distrusts_input() {
        let r = mute("api", NOW + 60_000, "deploy \"v2\"");
        assert_eq!(MuteRecord::from_json(&r.to_json()), Some(r));
        let bad = [
            json!({}),
            json!({ "key": "api", "set_ms": 1, "until_ms": 2 }),
            json!({ "key": "", "set_ms": 1, "until_ms": 2, "reason": "" }),
            json!({ "key": "api", "set_ms": -1, "until_ms": 2, "reason": "" }),
            json!({ "key": "api", "set_ms": 1, "until_ms": 0, "reason": "" }),
            json!({ "key": "api", "set_ms": 1, "until_ms": 2, "reason": "r".repeat(200) }),
            json!({ "key": 7, "set_ms": 1, "until_ms": 2, "reason": "" }),
            json!("api"),
        ];
        for v in bad {
            assert_eq!(MuteRecord::from_json(&v), None, "{v}");
        }
        // A damaged record in memory still reads safely.
        let mut damaged = r;
        damaged.key_len = u16::MAX;
        damaged.reason_len = u16::MAX;
        damaged.reason[0] = 0xff;
        assert_eq!(damaged.key().len(), MUTE_KEY_MAX);
        assert!(damaged.reason().starts_with('\u{FFFD}'));
    }
}
