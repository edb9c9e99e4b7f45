//! nginx-status-alert: wiring of the nginx module.
pub mod event;
