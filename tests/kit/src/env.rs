//! Where things are and when they are ready: the nginx binary and the built module, whether a
//! test may skip (not under CI), loopback ports nobody else in this process was given, temp
//! dirs, and polling with a deadline that stretches under a slow launcher (valgrind, ASan).

use std::collections::HashSet;
use std::fs::{self, Permissions};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// File name of the module that `cargo build` produces next to the `deps` directory.
pub const MODULE_FILE_NAME: &str = "libngx_http_status_alert_module.so";

/// Locks `m`, ignoring poisoning: a test that panics while holding one of our locks must not
/// turn every later assertion in other threads into a confusing PoisonError; the protected data
/// is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A non-empty environment variable.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `<target>/<profile>`: the directory above the `deps` directory the running test executable
/// (an integration test of the module, or this kit's unit tests) lives in.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

/// The nginx binary, the first of:
/// - `STATUS_ALERT_NGINX_BINARY`, to test another nginx (e.g. `/usr/sbin/nginx` in
///   `ci/test-debian`);
/// - `STATUS_ALERT_BUILT_NGINX`, which the module's build script sets for cargo to pass to the
///   module's own test processes;
/// - the path in `<target>/<profile>/nginx-path`, which the same build script writes (how this
///   kit's own unit tests find it).
///
/// The path may not exist; see [`nginx_ready`].
pub fn nginx_binary() -> PathBuf {
    if let Some(p) =
        env_path("STATUS_ALERT_NGINX_BINARY").or_else(|| env_path("STATUS_ALERT_BUILT_NGINX"))
    {
        return p;
    }
    profile_dir()
        .and_then(|d| fs::read_to_string(d.join("nginx-path")).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        // A path that cannot exist, so `.exists()` answers "no nginx" instead of PATH lookup
        // silently picking up some unrelated system nginx.
        .unwrap_or_else(|| PathBuf::from("/nonexistent/STATUS_ALERT_NGINX_BINARY-is-not-set/nginx"))
}

/// The module to load: the env var `STATUS_ALERT_MODULE` if set (a module built elsewhere, e.g.
/// `/usr/lib/nginx/modules/ngx_http_status_alert_module.so` from the Debian package, to be run
/// with the matching `STATUS_ALERT_NGINX_BINARY`); else the module built by this cargo run:
/// `<target>/<profile>/deps/<module>.so`, next to the running test executable.
/// (`<target>/<profile>/<module>.so` is only refreshed by `cargo build`, so it may be stale.)
/// Falls back to that copy when the deps one is missing.
pub fn module_path() -> PathBuf {
    if let Some(p) = env_path("STATUS_ALERT_MODULE") {
        return p;
    }
    let profile = profile_dir().expect("the test executable is not in <target>/<profile>/deps");
    let fresh = profile.join("deps").join(MODULE_FILE_NAME);
    if fresh.exists() {
        return fresh;
    }
    profile.join(MODULE_FILE_NAME)
}

/// Ok when the nginx binary exists; else what is missing.
pub fn nginx_ready() -> Result<(), String> {
    let bin = nginx_binary();
    if bin.exists() {
        return Ok(());
    }
    Err(format!(
        "nginx binary {} not found (build the module, or set STATUS_ALERT_NGINX_BINARY)",
        bin.display()
    ))
}

/// Ok when nginx and the module both exist; else what is missing.
pub fn module_ready() -> Result<(), String> {
    nginx_ready()?;
    let module = module_path();
    if module.exists() {
        return Ok(());
    }
    Err(format!(
        "module {} not built (cargo build, or set STATUS_ALERT_MODULE)",
        module.display()
    ))
}

/// Ok when `program` is an executable file (an absolute path) or is found in the usual system
/// directories; else what is missing. Only those directories: a test that runs a program as
/// another user must not pick up a shim under the invoking user's home.
pub fn program_ready(program: &str) -> Result<(), String> {
    let found = if program.starts_with('/') {
        std::path::Path::new(program).is_file()
    } else {
        ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).is_file())
    };
    if found {
        Ok(())
    } else {
        Err(format!("{program} not found (ci/deps installs it)"))
    }
}

/// Whether this run is CI's: the environment variable `CI` is set, to anything but empty,
/// `0` or `false`. Under CI nothing a test needs may be missing.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// A test that cannot run because `missing` is missing: prints `SKIP <test>: <missing>` and
/// returns, so that the caller returns and the test passes; under CI ([`under_ci`]) it panics
/// instead, so the test fails. Use [`require!`](crate::require), which names the test.
#[track_caller]
pub fn skip(test: &str, missing: &str) {
    if under_ci() {
        panic!("{test}: {missing}; CI is set, so a missing prerequisite fails the test");
    }
    eprintln!("SKIP {test}: {missing}");
}

/// A test that does not apply to the nginx under test (`why`: an older version, no SSL): prints
/// `SKIP <test>: <why>` and returns, so that the caller returns and the test passes, under CI
/// too, as that is what the version offers, not something missing from the machine. The line
/// is written past the harness's output capture, so that a skip is seen even when the test
/// passes. Use [`require_nginx_with!`](crate::require_nginx_with), which names the test.
pub fn skip_for_version(test: &str, why: &str) {
    use std::io::Write as _;
    // io::stderr() directly, not eprintln!: the harness captures only the print macros.
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// The test's name from the type name of a fn item declared in its body
/// (`crate::module::test_fn::here`, with `::{{closure}}` parts when declared in a closure):
/// the path without the crate and the item, as the test harness prints it.
pub fn test_name_of(type_name: &'static str) -> &'static str {
    let mut path = type_name.strip_suffix("::here").unwrap_or(type_name);
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    path.split_once("::").map_or(path, |(_, rest)| rest)
}

/// The factor every deadline of the kit is multiplied by: `STATUS_ALERT_TIME_SCALE` (a number
/// of at least 1, default 1), for runs under a launcher that slows nginx down (`ci/memcheck`
/// runs nginx under valgrind, `ci/asan` with AddressSanitizer).
pub fn time_scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("STATUS_ALERT_TIME_SCALE")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f >= 1.0)
            .unwrap_or(1.0)
    })
}

/// `d` times [`time_scale`]: for a test's own deadlines and upper bounds on how long nginx
/// takes, which a slow launcher stretches.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_scale())
}

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that nothing listens on right now (bind 127.0.0.1:0, read it, close).
///
/// Never returns the same port twice within one test process, so parallel test threads can't
/// be handed the same number; other processes can still race us, which
/// [`Nginx::start`](crate::Nginx::start) handles by retrying on "Address already in use".
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 failed");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if lock(handed_out_ports()).insert(port) {
            return port;
        }
    }
    panic!("free_port: the OS kept returning ports this process already handed out");
}

/// `n` distinct ports from [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A loopback port with nothing listening on it: connections are refused.
pub fn closed_port() -> u16 {
    // Same as free_port(); the separate name documents intent at the call site and the
    // handed-out set keeps other threads of this process from binding it through free_port().
    free_port()
}

/// Polls `f` every 50ms until it returns true (-> true) or `timeout` (times [`time_scale`])
/// passes (-> false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + scaled(timeout);
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Polls `f` every 50ms until its value has stayed the same for `quiet`, and returns it: for
/// "exactly N" checks, which read a count only once nothing changes any more. Returns the last
/// value read if that never happens within `timeout` (times [`time_scale`]); the exact check
/// that follows then fails with it.
pub fn settle<T: PartialEq>(quiet: Duration, timeout: Duration, mut f: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + scaled(timeout);
    let mut value = f();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= quiet || Instant::now() >= deadline {
            return value;
        }
        thread::sleep(Duration::from_millis(50));
        let now = f();
        if now != value {
            value = now;
            since = Instant::now();
        }
    }
}

/// A fresh directory under the system temp dir, removed when the guard is dropped (unless it
/// is [`TempDir::keep`]-ed first). Named `status-alert-<tag>-<random>`; tempfile creates it
/// with a random name and retries on a clash, so it is ours alone.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("status-alert-{tag}-"))
        // Mode 0777 minus umask like `mkdir`, not tempfile's 0700: nginx started as root runs its
        // workers as `nobody`, and they must reach the temp paths and files in here.
        .permissions(Permissions::from_mode(0o777))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for {tag}: {e}"))
}

/// [`temp_dir`] that is never removed automatically: the caller owns the path.
pub fn unique_temp_dir(tag: &str) -> PathBuf {
    temp_dir(tag).keep()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpStream};

    #[test]
    fn ports_paths_and_polling() {
        let ports = free_ports(50);
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ports.len(),
            "free_port returned a duplicate: {ports:?}"
        );
        assert!(ports.iter().all(|&p| p != 0));

        let port = closed_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect_err("connected");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

        let module = module_path();
        match std::env::var_os("STATUS_ALERT_MODULE").filter(|m| !m.is_empty()) {
            // A module built elsewhere (ci/test-debian): taken as given.
            Some(m) => assert_eq!(module, PathBuf::from(m)),
            None => {
                assert!(module.ends_with(MODULE_FILE_NAME));
                let exe = std::env::current_exe().unwrap();
                let profile = exe.parent().unwrap().parent().unwrap();
                assert!(
                    module.starts_with(profile),
                    "{module:?} not under {profile:?}"
                );
            }
        }

        let start = Instant::now();
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(2), || {
            calls += 1;
            calls == 3
        }));
        assert!(start.elapsed() >= Duration::from_millis(100));
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(200), || false));
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn settle_waits_for_a_value_that_stops_changing() {
        let start = Instant::now();
        let mut n = 0;
        let mut changed = start;
        // Grows for ~300ms, then stays.
        let v = settle(Duration::from_millis(300), Duration::from_secs(5), || {
            if start.elapsed() < Duration::from_millis(300) {
                n += 1;
                changed = Instant::now();
            }
            n
        });
        assert!(v >= 3, "{v}");
        assert!(
            changed.elapsed() >= Duration::from_millis(300),
            "{:?}",
            changed.elapsed()
        );
        // Never stable: the last value once the deadline passes.
        let mut m = 0;
        let t = Instant::now();
        let last = settle(Duration::from_secs(1), Duration::from_millis(300), || {
            m += 1;
            m
        });
        assert_eq!(last, m);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn test_names_come_from_the_enclosing_fn() {
        assert_eq!(
            crate::test_name!(),
            "env::tests::test_names_come_from_the_enclosing_fn"
        );
        let in_closure = || crate::test_name!();
        assert_eq!(
            in_closure(),
            "env::tests::test_names_come_from_the_enclosing_fn"
        );
        assert_eq!(test_name_of("lifecycle::reload::here"), "reload");
    }

    #[test]
    fn program_ready_looks_in_system_directories_only() {
        assert_eq!(program_ready("sh"), Ok(()));
        assert_eq!(program_ready("/bin/sh"), Ok(()));
        let err = program_ready("no-such-program-status-alert").unwrap_err();
        assert!(
            err.contains("no-such-program-status-alert not found"),
            "{err}"
        );
    }
}
