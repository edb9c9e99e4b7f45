//! Notifications: which destination gets which body (`routing`), the bodies in each format
//! (`discord`, `slack`, `json_event`, `alertmanager`; `describe` holds the sentences and
//! fields they share), and their delivery with queue and retry policy (`delivery`, run in the
//! helper process).

pub mod alertmanager;
pub mod delivery;
pub mod describe;
pub mod discord;
pub mod json_event;
pub mod mention;
pub mod route;
pub mod routing;
pub mod slack;
pub mod traffic_text;
