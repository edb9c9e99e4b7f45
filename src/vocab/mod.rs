//! The crate's vocabulary, used by every other folder and using none: alert events and levels
//! (`event`; a traffic drop's thresholds and event in `traffic`), the probe failure reasons
//! (`reason`), the shared text (`text`: cutting untrusted strings, durations, times; `title`: an
//! event's title and error-log line) and URL redaction (`redact`). Pure Rust, no nginx.

pub mod certificate;
pub mod event;
pub mod reason;
pub mod redact;
pub mod text;
pub mod title;
pub mod traffic;
