//! What a valid control request does to the zone's mute table, and the answer it gets: one
//! line of text (or a JSON object with `format=json`). Pure: the caller holds the zone's lock
//! around [`apply`].

use serde_json::json;

use super::mute_control::MuteCommand;
use crate::vocab::text::iso8601;
use crate::zone::mutes::{self, MuteRecord, MuteTableFull};

/// What a control request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The target is muted until then (ms since the epoch), for this reason.
    Muted {
        /// `*` or the NAME.
        target: String,
        /// End of the mute, ms.
        until_ms: u64,
        /// Why (may be empty).
        reason: String,
    },
    /// The target's mute was ended; `was_muted` false when it had none.
    Unmuted {
        /// `*` or the NAME.
        target: String,
        /// It had an active mute.
        was_muted: bool,
    },
}

/// Carries out `cmd` at `now_ms` on `records`.
pub fn apply(
    cmd: &MuteCommand,
    records: &mut [MuteRecord],
    now_ms: u64,
) -> Result<Applied, MuteTableFull> {
    match cmd {
        MuteCommand::Mute {
            target,
            for_ms,
            reason,
        } => {
            let until_ms = now_ms.saturating_add(*for_ms);
            // The parser bounds the key and the reason, so a record always exists.
            if let Some(record) = MuteRecord::new(target.key(), now_ms, until_ms, reason) {
                mutes::set(records, record, now_ms)?;
            }
            Ok(Applied::Muted {
                target: target.to_string(),
                until_ms,
                reason: reason.clone(),
            })
        }
        MuteCommand::Unmute { target } => Ok(Applied::Unmuted {
            target: target.to_string(),
            was_muted: mutes::clear(records, target.key(), now_ms),
        }),
    }
}

impl Applied {
    /// The answer's text: one line.
    pub fn text(&self) -> String {
        match self {
            Applied::Muted {
                target,
                until_ms,
                reason,
            } if reason.is_empty() => {
                format!("muted {target} until {}\n", iso8601(until_ms / 1000))
            }
            Applied::Muted {
                target,
                until_ms,
                reason,
            } => format!(
                "muted {target} until {} ({reason})\n",
                iso8601(until_ms / 1000)
            ),
            Applied::Unmuted {
                target,
                was_muted: true,
            } => format!("unmuted {target}\n"),
            Applied::Unmuted {
                target,
                was_muted: false,
            } => format!("{target} was not muted\n"),
        }
    }

    /// The answer as JSON (`format=json`).
    pub fn json(&self) -> String {
        let v = match self {
            Applied::Muted {
                target,
                until_ms,
                reason,
            } => json!({
                "muted": target,
                "until": iso8601(until_ms / 1000),
                "until_unix": until_ms / 1000,
                "reason": reason,
            }),
            Applied::Unmuted { target, was_muted } => json!({
                "unmuted": target,
                "was_muted": was_muted,
            }),
        };
        format!("{v}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expose::mute_control::MuteTarget;

    const NOW: u64 = 1_795_342_530_000;

    #[test]
    fn mute_then_unmute() {
        let mut t = [MuteRecord::default(); 1];
        let mute = MuteCommand::Mute {
            target: MuteTarget::Name("api".into()),
            for_ms: 60_000,
            reason: "deploy \"v2\"".into(),
        };
        let a = apply(&mute, &mut t, NOW).unwrap();
        assert_eq!(
            a.text(),
            "muted api until 2026-11-22T10:16:30Z (deploy \"v2\")\n"
        );
        let v: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
        assert_eq!(v["reason"], "deploy \"v2\"");
        assert_eq!(v["until_unix"], NOW / 1000 + 60);
        assert!(mutes::mute_of(&t, b"api", NOW).is_some());
        let other = MuteCommand::Mute {
            target: MuteTarget::All,
            for_ms: 1000,
            reason: String::new(),
        };
        assert_eq!(apply(&other, &mut t, NOW), Err(MuteTableFull(1)));
        let unmute = MuteCommand::Unmute {
            target: MuteTarget::Name("api".into()),
        };
        assert_eq!(apply(&unmute, &mut t, NOW).unwrap().text(), "unmuted api\n");
        assert_eq!(
            apply(&unmute, &mut t, NOW).unwrap().text(),
            "api was not muted\n"
        );
        let a = apply(&other, &mut t, NOW).unwrap();
        assert_eq!(a.text(), "muted * until 2026-11-22T10:15:31Z\n");
    }
}
