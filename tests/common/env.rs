//! Where things are and when they are ready: the nginx binary and the built module, loopback
//! ports nobody else in this process was given, temp dirs, and polling with a deadline.

use std::collections::HashSet;
use std::fs::Permissions;
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
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The nginx binary: the runtime env var `STATUS_ALERT_NGINX_BINARY` if set (to test another
/// nginx, e.g. `/usr/sbin/nginx` in `ci/test-debian`), else the nginx the build script saw
/// (compile-time `STATUS_ALERT_BUILT_NGINX`: the vendored one, or `NGINX_BUILD_DIR/nginx`).
/// The path may not exist; see [`have_nginx`].
pub fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STATUS_ALERT_NGINX_BINARY") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    match option_env!("STATUS_ALERT_BUILT_NGINX") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        // A path that cannot exist, so `.exists()` answers "no nginx" instead of PATH lookup
        // silently picking up some unrelated system nginx.
        _ => PathBuf::from("/nonexistent/STATUS_ALERT_NGINX_BINARY-is-not-set/nginx"),
    }
}

/// The module to load: the env var `STATUS_ALERT_MODULE` if set (a module built elsewhere, e.g.
/// `/usr/lib/nginx/modules/ngx_http_status_alert_module.so` from the Debian package, to be run
/// with the matching `STATUS_ALERT_NGINX_BINARY`); else the module built by this `cargo test`
/// run: `<target>/<profile>/deps/<module>.so`, next to the running test executable.
/// (`<target>/<profile>/<module>.so` is only refreshed by `cargo build`, so it may be stale.)
/// Falls back to that copy when the deps one is missing.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STATUS_ALERT_MODULE") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("std::env::current_exe() failed");
    let deps = exe
        .parent()
        .expect("test executable has no parent directory");
    let fresh = deps.join(MODULE_FILE_NAME);
    if fresh.exists() {
        return fresh;
    }
    let profile = deps
        .parent()
        .expect("the deps directory has no parent directory");
    profile.join(MODULE_FILE_NAME)
}

/// True when the nginx binary exists; otherwise prints a skip note naming `test`.
pub fn have_nginx(test: &str) -> bool {
    let bin = nginx_binary();
    if bin.exists() {
        return true;
    }
    eprintln!(
        "SKIP {test}: nginx binary {} not found (set STATUS_ALERT_NGINX_BINARY)",
        bin.display()
    );
    false
}

/// True when nginx and the built module both exist; otherwise prints a skip note.
pub fn have_module(test: &str) -> bool {
    if !have_nginx(test) {
        return false;
    }
    let module = module_path();
    if module.exists() {
        return true;
    }
    eprintln!("SKIP {test}: module {} not built", module.display());
    false
}

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that nothing listens on right now (bind 127.0.0.1:0, read it, close).
///
/// Never returns the same port twice within one test process, so parallel test threads can't
/// be handed the same number; other processes can still race us, which [`Nginx::start`]
/// handles by retrying on "Address already in use".
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

/// Polls `f` every 50ms until it returns true (-> true) or `timeout` passes (-> false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
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
