//! Notifications: alert events turned into webhook payloads (Discord, Slack, JSON,
//! Alertmanager; `payload` picks by the webhook's format) and their delivery with queue, retry
//! policy and redaction (`delivery`, run in the helper process).

pub mod alertmanager;
pub mod delivery;
pub mod discord;
pub mod json_event;
pub mod mention;
pub mod payload;
pub mod route;
pub mod slack;
pub mod traffic_text;
