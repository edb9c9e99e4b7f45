//! Shared integration-test harness: a real nginx with our dynamic module on loopback ports,
//! a small HTTP/1.1 client, scriptable upstream and Discord-webhook servers, and a Prometheus
//! text-format parser.
//!
//! Every integration test binary includes this with `mod common;` and `use common::*;`, and
//! uses a subset of it, so unused items are expected. Test threads run in parallel and several
//! test binaries may run at once: every server binds 127.0.0.1:0, every nginx gets its own temp
//! dir and OS-chosen ports, and nothing here uses fixed paths or ports.
//!
//! | file               | what                                                            |
//! |--------------------|-----------------------------------------------------------------|
//! | `env.rs`           | nginx binary and module paths, free ports, temp dirs, polling   |
//! | `process.rs`       | processes via /proc: alive, children, signals, run with timeout |
//! | `nginx.rs`         | generated nginx.conf; start, `-t`, reload, stop; error.log      |
//! | `http.rs`          | HTTP/1.1 client and the wire format the servers share           |
//! | `servers.rs`       | fake upstream and a listener that never answers                 |
//! | `webhook.rs`       | fake Discord webhook receiver                                   |
//! | `discord_rules.rs` | Discord's documented payload limits, and the check against them |
//! | `prometheus.rs`    | Prometheus text parser, metric lookup, `promtool check metrics` |
#![allow(dead_code)]

mod discord_rules;
mod env;
mod http;
mod nginx;
mod process;
mod prometheus;
mod servers;
mod webhook;

// One flat namespace for `use common::*;`; each test binary uses a different part of it.
#[allow(unused_imports)]
pub use self::{
    discord_rules::*, env::*, http::*, nginx::*, process::*, prometheus::*, servers::*, webhook::*,
};
