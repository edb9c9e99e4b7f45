//! The test kit of nginx-status-alert: a real nginx with the dynamic module on loopback ports,
//! HTTP clients, scriptable upstream and Discord-webhook servers, and the checkers the tests
//! trust (Discord's payload limits, the Prometheus text format).
//!
//! Integration tests `use status_alert_testkit::*;` and begin with [`require_module!`]. Test
//! threads run in parallel and several test binaries may run at once: every server binds
//! 127.0.0.1:0, every nginx gets its own temp dir and OS-chosen ports, and nothing here uses
//! fixed paths or ports. Its own unit tests: `cargo test -p status-alert-testkit`.
//!
//! | module       | what                                                                    |
//! |--------------|-------------------------------------------------------------------------|
//! | `env`        | nginx and module paths, skip or fail (CI), ports, temp dirs, polling    |
//! | `process`    | processes via /proc: alive, children, helpers, signals, run with timeout|
//! | `nginx`      | generated nginx.conf; start, `-t`, `-s`, reload, stop; the wrapper hook |
//! | `http`       | plain HTTP through ureq: one-shot, keep-alive, load                     |
//! | `raw`        | the raw-socket client for wire-level cases                              |
//! | `pinger`     | a client that times a request every millisecond (event-loop stalls)     |
//! | `wire`       | HTTP/1.1 framing shared by the raw client and the fake servers          |
//! | `servers`    | fake upstream and a listener that never answers                         |
//! | `webhook`    | fake Discord webhook receiver                                           |
//! | `dns`        | DNS server for nginx's `resolver`: A records to set, NXDOMAIN, silence  |
//! | `discord`    | Discord's documented payload limits, and the check against them         |
//! | `prometheus` | Prometheus text parser and checker, metric lookup, `promtool`           |

mod discord;
mod dns;
mod env;
mod http;
mod nginx;
mod pinger;
mod process;
mod prometheus;
mod raw;
mod servers;
mod webhook;
mod wire;

pub use crate::discord::*;
pub use crate::dns::*;
pub use crate::env::*;
pub use crate::http::*;
pub use crate::nginx::*;
pub use crate::pinger::*;
pub use crate::process::*;
pub use crate::prometheus::*;
pub use crate::raw::*;
pub use crate::servers::*;
pub use crate::webhook::*;
pub use crate::wire::Headers;

/// The name of the test this expands in, as the test harness prints it (without the crate):
/// taken from the type name of a fn item declared right here.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        $crate::test_name_of(::std::any::type_name_of_val(&here))
    }};
}

/// Returns from the test unless `$ready` (a `Result<(), String>` whose error says what is
/// missing) is Ok: prints `SKIP <test>: <what>` so the test passes, or, under CI
/// ([`under_ci`]), panics so that it fails. The test is named by [`test_name!`].
#[macro_export]
macro_rules! require {
    ($ready:expr) => {
        if let ::std::result::Result::Err(missing) = $ready {
            $crate::skip($crate::test_name!(), &missing);
            return;
        }
    };
}

/// [`require!`] the nginx binary and the built module: the first line of every test that runs
/// nginx with the module.
#[macro_export]
macro_rules! require_module {
    () => {
        $crate::require!($crate::module_ready())
    };
}

/// Returns from the test unless the nginx under test offers what it needs: `$ready` is a
/// `Result<(), String>` such as [`nginx_at_least`] or [`nginx_with_ssl`], whose error says
/// what this nginx lacks. Prints `SKIP <test>: <why>` visibly and passes, under CI too (see
/// [`skip_for_version`]); ci/test-versions counts those lines.
#[macro_export]
macro_rules! require_nginx_with {
    ($ready:expr) => {
        if let ::std::result::Result::Err(why) = $ready {
            $crate::skip_for_version($crate::test_name!(), &why);
            return;
        }
    };
}

/// [`require!`] the nginx binary, for tests of nginx without the module.
#[macro_export]
macro_rules! require_nginx {
    () => {
        $crate::require!($crate::nginx_ready())
    };
}
