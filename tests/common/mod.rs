//! Shared integration-test harness: a real nginx with our dynamic module on loopback ports,
//! a small HTTP/1.1 client, scriptable upstream and Discord-webhook servers, and a Prometheus
//! text-format parser.
//!
//! Every integration test binary includes this with `mod common;` and uses a subset of it, so
//! unused items are expected. Test threads run in parallel and several test binaries may run at
//! once: every server binds 127.0.0.1:0, every nginx gets its own temp dir and OS-chosen ports,
//! and nothing here uses fixed paths or ports.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Per-read timeout of the HTTP client helpers.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// File name of the module that `cargo build` produces next to the `deps` directory.
pub const MODULE_FILE_NAME: &str = "libngx_http_status_alert_module.so";

/// Path part of [`WebhookReceiver::url`]; id and token are fake but Discord-shaped.
pub const WEBHOOK_PATH: &str = "/api/webhooks/123456/secret-token-abc";

// A test that panics while holding one of our locks must not turn every later assertion in
// other threads into a confusing PoisonError; the protected data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Paths, ports, temp dirs, polling
// ---------------------------------------------------------------------------------------------

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

/// Creates a fresh directory under the system temp dir; the name has our pid, a per-process
/// counter and the time so parallel threads and concurrently running binaries never collide.
pub fn unique_temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("status-alert-{tag}-{}-{n}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        // create_dir (not create_dir_all) fails on an existing dir, which guarantees that the
        // directory is ours alone.
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes (via /proc and kill(1), so the harness needs no libc crate)
// ---------------------------------------------------------------------------------------------

/// (state, ppid) from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live (non-zombie) process.
///
/// The daemonized nginx master is reparented to PID 1, which in containers often never reaps,
/// so an exited master can linger as a zombie: that counts as gone.
pub fn process_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if is_live_state(state))
}

fn is_live_state(state: char) -> bool {
    state != 'Z' && state != 'X'
}

/// Live child processes of `ppid`, sorted.
pub fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((state, pp)) if pp == ppid && is_live_state(state))
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn is_nginx_process(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("nginx"))
        .unwrap_or(false)
}

/// Runs `kill -<sig> <pid>`; false if kill could not be run or reported failure.
pub fn send_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct CommandOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with stdout/stderr sent to files in `dir` rather than pipes: a daemonizing nginx
/// hands its descriptors to the background master, and reading a pipe to EOF would then block
/// for as long as that master lives.
fn run_with_timeout(
    cmd: &mut Command,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> Result<CommandOutput, String> {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let out = fs::File::create(&out_path).map_err(|e| format!("create {out_path:?}: {e}"))?;
    let err = fs::File::create(&err_path).map_err(|e| format!("create {err_path:?}: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not exit within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Ok(CommandOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

/// Main-context knobs of the generated nginx.conf.
#[derive(Clone, Debug)]
pub struct NginxOpts {
    /// `worker_processes N;` (default 2, so cross-worker bugs show up).
    pub worker_processes: u32,
    /// `master_process on|off;` (default on).
    pub master_process: bool,
    /// Emit `load_module <module_path()>;` (default true).
    pub load_module: bool,
    /// Extra top-level directives, placed after the fixed ones and before `events`.
    /// `{DIR}` and `{PORT}`-style placeholders are substituted here too.
    pub extra_main: String,
}

impl Default for NginxOpts {
    fn default() -> Self {
        NginxOpts {
            worker_processes: 2,
            master_process: true,
            load_module: true,
            extra_main: String::new(),
        }
    }
}

impl NginxOpts {
    /// Defaults without `load_module`: a vanilla nginx, for harness tests.
    pub fn plain() -> Self {
        NginxOpts {
            load_module: false,
            ..Default::default()
        }
    }
}

/// Number of OS-chosen ports every nginx gets: `{PORT}`, `{PORT2}`, `{PORT3}`, `{PORT4}`.
pub const NGINX_PORTS: usize = 4;

fn conf_quote(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Replaces `{DIR}`, `{PORT}`, `{PORT2}`..`{PORT4}` in `text`.
pub fn substitute(text: &str, dir: &Path, ports: &[u16]) -> String {
    let mut out = text.replace("{DIR}", &dir.display().to_string());
    for (i, port) in ports.iter().enumerate() {
        let key = if i == 0 {
            "{PORT}".to_string()
        } else {
            format!("{{PORT{}}}", i + 1)
        };
        out = out.replace(&key, &port.to_string());
    }
    out
}

/// Everything of nginx.conf up to and including the `http {` line and its fixed directives.
fn render_prelude(dir: &Path, opts: &NginxOpts, ports: &[u16]) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Generated by tests/common/mod.rs; error.log is next to this file."
    );
    if opts.load_module {
        let _ = writeln!(c, "load_module {};", conf_quote(&module_path()));
    }
    let _ = writeln!(c, "worker_processes {};", opts.worker_processes);
    let _ = writeln!(
        c,
        "master_process {};",
        if opts.master_process { "on" } else { "off" }
    );
    let _ = writeln!(c, "daemon on;");
    let _ = writeln!(c, "pid {};", conf_quote(&dir.join("nginx.pid")));
    let _ = writeln!(c, "error_log {} info;", conf_quote(&dir.join("error.log")));
    if !opts.extra_main.is_empty() {
        c.push_str(&substitute(&opts.extra_main, dir, ports));
        if !c.ends_with('\n') {
            c.push('\n');
        }
    }
    c.push_str("events {\n    worker_connections 1024;\n}\n");
    c.push_str("http {\n    access_log off;\n");
    let tmp = dir.join("tmp");
    for (directive, sub) in [
        ("client_body_temp_path", "body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        let _ = writeln!(c, "    {directive} {};", conf_quote(&tmp.join(sub)));
    }
    c
}

/// The complete nginx.conf text the harness writes for `http_block`.
pub fn render_config(dir: &Path, http_block: &str, opts: &NginxOpts, ports: &[u16]) -> String {
    let mut c = render_prelude(dir, opts, ports);
    c.push_str(&substitute(http_block, dir, ports));
    c.push_str("\n}\n");
    c
}

/// Line number in the generated nginx.conf of line `line_in_block` (1-based) of the http block
/// text, for asserting `nginx.conf:<line>` in error messages. Note that a block written as
/// `r#"` + newline starts with an empty line 1.
pub fn http_block_line(opts: &NginxOpts, line_in_block: usize) -> usize {
    // Placeholder substitution never adds newlines, so any dir and ports give the same count.
    render_prelude(Path::new("/x"), opts, &[0; NGINX_PORTS])
        .lines()
        .count()
        + line_in_block
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("{:4} | {l}\n", i + 1))
        .collect()
}

/// Creates the sub-directories an nginx prefix needs (logs and temp paths) under `dir`.
pub fn prepare_dir(dir: &Path) {
    // logs/ is where nginx opens its compiled-in default error log (relative to -p) before it
    // has read our config; without it every start prints a spurious "[alert] could not open".
    for sub in [
        "logs",
        "tmp/body",
        "tmp/proxy",
        "tmp/fastcgi",
        "tmp/uwsgi",
        "tmp/scgi",
    ] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    }
}

fn nginx_command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(nginx_binary());
    cmd.args(extra)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    cmd
}

struct StartFailure {
    message: String,
    addr_in_use: bool,
    dir: PathBuf,
}

/// A running nginx (daemonized master + workers) in its own temp dir; stopped on drop.
pub struct Nginx {
    /// The temp dir: nginx.conf, error.log, nginx.pid, tmp/.
    pub dir: PathBuf,
    /// The port substituted for `{PORT}`.
    pub port: u16,
    /// All substituted ports: `ports[0]` is `{PORT}`, `ports[1]` is `{PORT2}`, ...
    pub ports: Vec<u16>,
    pid: u32,
    opts: NginxOpts,
    stopped: bool,
    keep_dir: bool,
}

impl Nginx {
    /// Writes nginx.conf for `http_block` into a fresh temp dir, starts nginx and waits until
    /// it is serving. Panics with error.log and the numbered config if it does not come up.
    pub fn start(http_block: &str, opts: NginxOpts) -> Nginx {
        let bin = nginx_binary();
        assert!(
            bin.exists(),
            "nginx binary {} does not exist (set STATUS_ALERT_NGINX_BINARY)",
            bin.display()
        );
        if opts.load_module {
            let module = module_path();
            assert!(
                module.exists(),
                "module {} does not exist: build the crate before running its tests",
                module.display()
            );
        }
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start(http_block, &opts) {
                Ok(nginx) => return nginx,
                // Another process can take a port between free_port() and nginx's bind; that
                // race, and only that, is worth another try with fresh ports.
                Err(f) if f.addr_in_use && attempt < ATTEMPTS => {
                    eprintln!("nginx start attempt {attempt} lost a port race; retrying");
                    let _ = fs::remove_dir_all(&f.dir);
                }
                Err(f) => panic!("{}", f.message),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn try_start(http_block: &str, opts: &NginxOpts) -> Result<Nginx, StartFailure> {
        let dir = unique_temp_dir("nginx");
        prepare_dir(&dir);
        let ports = free_ports(NGINX_PORTS);
        let conf = render_config(&dir, http_block, opts, &ports);
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, &conf)
            .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
        let mut nginx = Nginx {
            dir: dir.clone(),
            port: ports[0],
            ports,
            pid: 0,
            opts: opts.clone(),
            stopped: false,
            keep_dir: false,
        };

        let run = run_with_timeout(
            &mut nginx_command(&dir, &[]),
            &dir,
            "start",
            Duration::from_secs(20),
        );
        let out = match run {
            Ok(out) => out,
            Err(e) => return Err(nginx.failure(&e, "")),
        };
        if !out.status.success() {
            let what = format!("nginx exited with {}", out.status);
            return Err(nginx.failure(&what, &format!("{}{}", out.stderr, out.stdout)));
        }

        // With `daemon on` the command returns once it has forked; the master writes the pid
        // file a moment later.
        let pid_file = dir.join("nginx.pid");
        let mut pid = None;
        wait_until(Duration::from_secs(5), || {
            pid = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            pid.is_some()
        });
        match pid {
            Some(pid) => nginx.pid = pid,
            None => return Err(nginx.failure("no pid file appeared within 5s", &out.stderr)),
        }

        let wanted = opts.worker_processes as usize;
        if opts.master_process {
            let pid = nginx.pid;
            wait_until(Duration::from_secs(10), || {
                !process_alive(pid) || children_of(pid).len() >= wanted
            });
            if !process_alive(pid) {
                return Err(nginx.failure("nginx master exited right after start", ""));
            }
            let workers = children_of(pid).len();
            if workers < wanted {
                let what = format!("only {workers} of {wanted} workers started within 10s");
                return Err(nginx.failure(&what, ""));
            }
        }

        // Only wait for the port when the config actually listens on it.
        if http_block.contains("{PORT}") {
            let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
            let pid = nginx.pid;
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    || !process_alive(pid)
            });
            if !up || !process_alive(pid) {
                let what = format!("nginx is not accepting on {addr} after 10s");
                return Err(nginx.failure(&what, ""));
            }
        }
        Ok(nginx)
    }

    /// Stops what started, keeps the dir and builds the panic message.
    fn failure(&mut self, what: &str, stderr: &str) -> StartFailure {
        self.stop();
        self.keep_dir = true;
        let log = self.error_log();
        let conf = fs::read_to_string(self.dir.join("nginx.conf")).unwrap_or_default();
        StartFailure {
            message: format!(
                "nginx failed to start: {what}\n  binary: {}\n  dir (kept): {}\n\
                 --- stderr ---\n{stderr}\n--- error.log ---\n{log}\n--- nginx.conf ---\n{}",
                nginx_binary().display(),
                self.dir.display(),
                numbered(&conf)
            ),
            addr_in_use: self.lost_port_race(&log) || self.lost_port_race(stderr),
            dir: self.dir.clone(),
        }
    }

    /// Whether `output` shows a bind() of one of *our* ports failing; a clash on a port the
    /// test hard-coded would fail the same way again, so it is not worth a retry.
    fn lost_port_race(&self, output: &str) -> bool {
        output.lines().any(|l| {
            l.contains("Address already in use")
                && self
                    .ports
                    .iter()
                    .any(|p| l.contains(&format!(":{p} failed")))
        })
    }

    /// Writes the config to a fresh temp dir and runs `nginx -t` on it; returns whether the
    /// check passed and nginx's output (stderr, then stdout if any). The dir is removed.
    pub fn test_config(http_block: &str, opts: NginxOpts) -> (bool, String) {
        let dir = unique_temp_dir("nginx-t");
        prepare_dir(&dir);
        let ports = free_ports(NGINX_PORTS);
        fs::write(
            dir.join("nginx.conf"),
            render_config(&dir, http_block, &opts, &ports),
        )
        .unwrap_or_else(|e| panic!("write nginx.conf in {}: {e}", dir.display()));
        let run = run_with_timeout(
            &mut nginx_command(&dir, &["-t"]),
            &dir,
            "test",
            Duration::from_secs(20),
        );
        let _ = fs::remove_dir_all(&dir);
        match run {
            Ok(out) => (out.status.success(), out.stderr + &out.stdout),
            Err(e) => panic!("nginx -t could not be run: {e}"),
        }
    }

    /// Pid of the master (of the single process with `master_process off`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the master process still exists.
    pub fn is_running(&self) -> bool {
        self.pid != 0 && process_alive(self.pid)
    }

    /// Current children of the master (workers, plus cache helpers if configured), sorted.
    pub fn worker_pids(&self) -> Vec<u32> {
        if self.pid == 0 {
            return Vec::new();
        }
        children_of(self.pid)
    }

    /// The whole error.log (level info).
    pub fn error_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("error.log")).unwrap_or_default())
            .into_owned()
    }

    /// The generated nginx.conf.
    pub fn conf(&self) -> String {
        fs::read_to_string(self.dir.join("nginx.conf")).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until error.log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.error_log().contains(needle))
    }

    /// Panics (showing the log) if error.log has [alert], [crit] or [emerg] lines, e.g. a
    /// worker that "exited on signal 11".
    pub fn assert_log_clean(&self) {
        let log = self.error_log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
            .collect();
        assert!(
            bad.is_empty(),
            "error.log in {} has serious entries:\n{}\n--- full error.log ---\n{log}",
            self.dir.display(),
            bad.join("\n")
        );
    }

    /// Rewrites nginx.conf with a new http block (same opts, dir and ports); follow with
    /// [`Nginx::reload`] to apply it.
    pub fn write_config(&self, http_block: &str) {
        let conf = render_config(&self.dir, http_block, &self.opts, &self.ports);
        fs::write(self.dir.join("nginx.conf"), conf)
            .unwrap_or_else(|e| panic!("rewrite nginx.conf in {}: {e}", self.dir.display()));
    }

    /// Sends `kill -<sig>` to the master.
    pub fn signal(&self, sig: &str) -> bool {
        self.pid != 0 && send_signal(self.pid, sig)
    }

    /// SIGHUP and wait (10s) until a full new set of workers runs and all old ones are gone.
    pub fn reload(&self) {
        if let Err(e) = self.try_reload(Duration::from_secs(10)) {
            panic!("{e}");
        }
    }

    /// Like [`Nginx::reload`] but returns the error, e.g. for configs nginx refuses to load
    /// (then the old workers stay and this times out).
    pub fn try_reload(&self, timeout: Duration) -> Result<(), String> {
        if !self.opts.master_process {
            return Err("reload needs master_process on".to_string());
        }
        let old = self.worker_pids();
        if !self.signal("HUP") {
            return Err(format!(
                "kill -HUP {} failed; error.log:\n{}",
                self.pid,
                self.error_log()
            ));
        }
        let wanted = self.opts.worker_processes as usize;
        let done = wait_until(timeout, || {
            let now = self.worker_pids();
            now.len() >= wanted
                && now.iter().all(|p| !old.contains(p))
                && old.iter().all(|&p| !process_alive(p))
        });
        if done {
            return Ok(());
        }
        Err(format!(
            "reload of nginx {} did not replace workers {old:?} within {timeout:?} (now {:?})\n\
             dir: {}\n--- error.log ---\n{}",
            self.pid,
            self.worker_pids(),
            self.dir.display(),
            self.error_log()
        ))
    }

    /// Graceful stop: SIGQUIT, up to 5s for the master to exit, then SIGKILL to the master and
    /// any of its former workers. Idempotent; never panics (it runs from Drop).
    pub fn stop(&mut self) {
        if self.stopped || self.pid == 0 {
            self.stopped = true;
            return;
        }
        self.stopped = true;
        let pid = self.pid;
        let workers = self.worker_pids();
        send_signal(pid, "QUIT");
        if !wait_until(Duration::from_secs(5), || !process_alive(pid)) {
            eprintln!("nginx {pid} still running 5s after SIGQUIT; sending SIGKILL");
            send_signal(pid, "KILL");
            wait_until(Duration::from_secs(2), || !process_alive(pid));
        }
        // Workers do not notice a killed master and would keep serving (and holding the port).
        // They are reparented by now, so check they are still nginx before killing a pid.
        for w in workers {
            if process_alive(w) && is_nginx_process(w) {
                send_signal(w, "KILL");
            }
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        if self.keep_dir {
            // A failed start: its panic message already names the dir and shows the log.
            return;
        }
        if thread::panicking() {
            let log = self.error_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "keeping nginx test dir {}\n--- last lines of error.log ---\n{}",
                self.dir.display(),
                tail.join("\n")
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 wire format (shared by the client and the test servers)
// ---------------------------------------------------------------------------------------------

/// Header fields in wire order, names as sent.
pub type Headers = Vec<(String, String)>;

const MAX_LINE: u64 = 64 * 1024;
const MAX_HEADERS: usize = 200;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', buf)?;
    if n as u64 == MAX_LINE && !buf.ends_with(b"\n") {
        return Err(invalid("HTTP line longer than 64 KiB"));
    }
    Ok(n)
}

/// Start line and headers; None on a clean EOF before the first byte of a message.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
    let mut line = Vec::new();
    let start = loop {
        if read_line(r, &mut line)? == 0 {
            return Ok(None);
        }
        // Stray CRLFs between messages are allowed and ignored (RFC 9112, section 2.2).
        let s = trim_crlf(&line);
        if !s.is_empty() {
            break String::from_utf8_lossy(s).into_owned();
        }
    };
    let mut headers = Vec::new();
    loop {
        if read_line(r, &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of the headers",
            ));
        }
        let s = trim_crlf(&line);
        if s.is_empty() {
            return Ok(Some((start, headers)));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("more than 200 header lines"));
        }
        let s = String::from_utf8_lossy(s);
        let (k, v) = s
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {s:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Chunked,
    Length(usize),
    UntilEof,
}

fn body_kind(headers: &[(String, String)], is_response: bool) -> io::Result<BodyKind> {
    if let Some(te) = find_header(headers, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return Ok(BodyKind::Chunked);
        }
        if is_response {
            return Ok(BodyKind::UntilEof);
        }
        return Err(invalid(format!(
            "unsupported request Transfer-Encoding {te:?}"
        )));
    }
    if let Some(cl) = find_header(headers, "content-length") {
        let n = cl
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
        return Ok(BodyKind::Length(n));
    }
    Ok(if is_response {
        BodyKind::UntilEof
    } else {
        BodyKind::Empty
    })
}

fn read_body<R: BufRead>(r: &mut R, kind: BodyKind) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        BodyKind::UntilEof => {
            r.read_to_end(&mut body)?;
        }
        BodyKind::Chunked => {
            let mut line = Vec::new();
            loop {
                if read_line(r, &mut line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    ));
                }
                let text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
                if size == 0 {
                    // Trailer fields, up to the empty line (or EOF from a sloppy peer).
                    while read_line(r, &mut line)? != 0 && !trim_crlf(&line).is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])?;
                read_line(r, &mut line)?;
                if !trim_crlf(&line).is_empty() {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
            }
        }
    }
    Ok(body)
}

fn connection_keeps_alive(version: &str, headers: &[(String, String)]) -> bool {
    let conn = find_header(headers, "connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    if conn.split(',').any(|t| t.trim() == "close") {
        return false;
    }
    if version.eq_ignore_ascii_case("HTTP/1.1") {
        return true;
    }
    conn.split(',').any(|t| t.trim() == "keep-alive")
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of this header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {:?}",
                self.status,
                self.text()
            )
        })
    }
}

fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[allow(clippy::too_many_arguments)]
fn write_request(
    w: &mut impl Write,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    keep_alive: bool,
) -> io::Result<()> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "Host: 127.0.0.1:{port}\r\n");
    }
    if !has("connection") {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(head, "Connection: {conn}\r\n");
    }
    if let Some(body) = body {
        if !has("content-length") && !has("transfer-encoding") {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
    }
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body.unwrap_or_default());
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one response (skipping 1xx interim ones); also says whether the connection may be
/// reused.
fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<(Response, bool)> {
    loop {
        let (start, headers) = read_head(r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response status line",
            )
        })?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/") {
            return Err(invalid(format!("bad status line {start:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let kind = if method.eq_ignore_ascii_case("HEAD")
            || status == 204
            || status == 304
            || (100..200).contains(&status)
        {
            BodyKind::Empty
        } else {
            body_kind(&headers, true)?
        };
        let keep = kind != BodyKind::UntilEof && connection_keeps_alive(&version, &headers);
        let body = read_body(r, kind)?;
        return Ok((
            Response {
                status,
                headers,
                body,
            },
            keep,
        ));
    }
}

/// GET `path` from 127.0.0.1:`port` on a new connection; panics on transport errors.
pub fn http_get(port: u16, path: &str) -> Response {
    http_request(port, "GET", path, &[], None)
}

/// One request on a new connection (`Connection: close`, Host and Content-Length added unless
/// given); panics on transport errors.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    try_http_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://127.0.0.1:{port}{path} failed: {e}"))
}

/// [`http_request`] returning transport errors (refused, timed out, reset) instead.
pub fn try_http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    try_http_request_timeout(port, method, path, headers, body, CLIENT_TIMEOUT)
}

/// [`try_http_request`] with a custom connect/read/write timeout (e.g. short, against a server
/// that is expected to hang).
pub fn try_http_request_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = connect(port, timeout)?;
    write_request(&mut stream, port, method, path, headers, body, false)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method).map(|(resp, _)| resp)
}

/// True for errors meaning "the peer closed a reused keep-alive connection".
fn is_stale_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reuses one connection for many requests, reconnecting when the server closes it.
pub struct KeepAliveClient {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    connects: usize,
}

impl KeepAliveClient {
    pub fn new(port: u16) -> Self {
        KeepAliveClient {
            port,
            conn: None,
            connects: 0,
        }
    }

    /// How many TCP connections this client has opened so far.
    pub fn connects(&self) -> usize {
        self.connects
    }

    /// GET; panics on transport errors.
    pub fn get(&mut self, path: &str) -> Response {
        let port = self.port;
        self.try_get(path)
            .unwrap_or_else(|e| panic!("keep-alive GET http://127.0.0.1:{port}{path}: {e}"))
    }

    pub fn try_get(&mut self, path: &str) -> io::Result<Response> {
        self.try_request("GET", path, &[], None)
    }

    /// Any request on the kept connection.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        if self.conn.is_some() {
            match self.once(method, path, headers, body) {
                Ok(resp) => return Ok(resp),
                // The server may have closed the idle connection (keepalive_timeout) before
                // our request reached it; nothing was processed, so resend once on a new one.
                Err(e) if is_stale_connection(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.once(method, path, headers, body)
    }

    fn once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(connect(self.port, CLIENT_TIMEOUT)?));
            self.connects += 1;
        }
        let reader = self.conn.as_mut().expect("connection was just opened");
        let port = self.port;
        let result = write_request(reader.get_mut(), port, method, path, headers, body, true)
            .and_then(|()| read_response(reader, method));
        match result {
            Ok((resp, keep)) => {
                if !keep {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Sends `total` GETs over `concurrency` threads, each on its own keep-alive connection
/// (reconnecting whenever the server closes it). Returns every status; 0 stands for a request
/// that failed at the transport level.
pub fn hammer(port: u16, path: &str, total: usize, concurrency: usize) -> Vec<u16> {
    let threads = concurrency.clamp(1, total.max(1));
    let handles: Vec<JoinHandle<Vec<u16>>> = (0..threads)
        .map(|i| {
            let n = total / threads + usize::from(i < total % threads);
            let path = path.to_string();
            thread::spawn(move || {
                let mut client = KeepAliveClient::new(port);
                (0..n)
                    .map(|_| client.try_get(&path).map(|r| r.status).unwrap_or(0))
                    .collect()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("hammer thread panicked"))
        .collect()
}

/// Wall-clock time of `n` sequential GETs on one keep-alive connection (the first includes the
/// TCP connect). Panics on transport errors.
pub fn latencies(port: u16, path: &str, n: usize) -> Vec<Duration> {
    let mut client = KeepAliveClient::new(port);
    (0..n)
        .map(|_| {
            let t = Instant::now();
            client.get(path);
            t.elapsed()
        })
        .collect()
}

/// Nearest-rank percentile; `p` is in 0..=100 (e.g. 99.0).
pub fn percentile(durations: &[Duration], p: f64) -> Duration {
    assert!(!durations.is_empty(), "percentile of no samples");
    assert!(
        (0.0..=100.0).contains(&p),
        "percentile {p} is not in 0..=100"
    );
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Test servers
// ---------------------------------------------------------------------------------------------

/// A request as received by [`Upstream`].
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub at: Instant,
    pub method: String,
    /// Request target as sent, including any query string.
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// Target without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

enum Reply {
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    },
    /// Never answer; hold the connection until the peer closes it or the server stops.
    Hang,
}

type Handler = Arc<dyn Fn(&ReceivedRequest) -> Reply + Send + Sync>;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn read_request<R: BufRead>(r: &mut R, w: &mut TcpStream) -> io::Result<Option<ReceivedRequest>> {
    let Some((start, headers)) = read_head(r)? else {
        return Ok(None);
    };
    let at = Instant::now();
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts
        .next()
        .ok_or_else(|| invalid(format!("bad request line {start:?}")))?;
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let expects_continue = find_header(&headers, "expect")
        .map(|v| v.eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false);
    if expects_continue {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(r, body_kind(&headers, false)?)?;
    Ok(Some(ReceivedRequest {
        at,
        method,
        target: target.to_string(),
        version,
        headers,
        body,
    }))
}

fn write_response(
    w: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        // Framing is ours to decide; a scripted header must not contradict it.
        let k_lower = k.to_ascii_lowercase();
        if k_lower != "content-length" && k_lower != "connection" && k_lower != "transfer-encoding"
        {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    let _ = write!(
        out,
        "Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut buf = out.into_bytes();
    if !bodiless && !head_only {
        buf.extend_from_slice(body);
    }
    w.write_all(&buf)?;
    w.flush()
}

/// Sleeps `d` in small steps; false if the server was stopped meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

fn hang(stream: &TcpStream, stop: &AtomicBool) {
    // Poll instead of blocking so the thread ends when the client gives up (EOF) or the
    // server stops, rather than piling up one stuck thread per timed-out request.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 1];
    while !stop.load(Ordering::SeqCst) {
        match stream.peek(&mut buf) {
            Ok(0) => return,
            // Data we deliberately never read; don't spin on it.
            Ok(_) => thread::sleep(Duration::from_millis(50)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

type ConnRegistry = Arc<Mutex<HashMap<u64, TcpStream>>>;

fn serve_connection(stream: TcpStream, handler: Handler, stop: Arc<AtomicBool>) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while !stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut reader, &mut writer) {
            Ok(Some(req)) => req,
            _ => break,
        };
        let keep = connection_keeps_alive(&req.version, &req.headers);
        match handler(&req) {
            Reply::Hang => {
                hang(&writer, &stop);
                break;
            }
            Reply::Send {
                status,
                headers,
                body,
                delay,
            } => {
                if !sleep_unless_stopped(delay, &stop) {
                    break;
                }
                let head_only = req.method.eq_ignore_ascii_case("HEAD");
                if write_response(&mut writer, status, &headers, &body, keep, head_only).is_err()
                    || !keep
                {
                    break;
                }
            }
        }
    }
    // The registry holds a clone of this socket, so dropping ours would not close it.
    let _ = writer.shutdown(Shutdown::Both);
}

/// Accept loop + one thread per connection; stops on drop.
struct ServerCore {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: ConnRegistry,
    accept_thread: Option<JoinHandle<()>>,
}

impl ServerCore {
    fn start(name: &str, handler: Handler) -> ServerCore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("test server: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("test server: local_addr")
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: ConnRegistry = Arc::new(Mutex::new(HashMap::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread_name = format!("{name}-{port}");
        let accept_thread = thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let mut next_id = 0u64;
                // Blocking accept keeps per-connection latency at zero (polling would add up
                // to a poll interval to every new connection nginx makes); Drop wakes it with
                // a connection to itself.
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let Ok(clone) = stream.try_clone() else {
                        continue;
                    };
                    next_id += 1;
                    let id = next_id;
                    lock(&conns2).insert(id, clone);
                    let (handler, stop3, conns3) = (handler.clone(), stop2.clone(), conns2.clone());
                    let spawned = thread::Builder::new()
                        .name(format!("{thread_name}-c{id}"))
                        .spawn(move || {
                            serve_connection(stream, handler, stop3);
                            lock(&conns3).remove(&id);
                        });
                    if spawned.is_err() {
                        lock(&conns2).remove(&id);
                    }
                }
            })
            .expect("spawn test server accept thread");
        ServerCore {
            port,
            stop,
            conns,
            accept_thread: Some(accept_thread),
        }
    }
}

fn wake_and_join(port: u16, stop: &AtomicBool, thread: Option<JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let woke = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
    if let Some(t) = thread {
        // If the wake-up connection failed the accept thread may block forever; detach it
        // rather than hang the test.
        if woke {
            let _ = t.join();
        }
    }
}

impl Drop for ServerCore {
    fn drop(&mut self) {
        wake_and_join(self.port, &self.stop, self.accept_thread.take());
        // Unblock connection threads sitting in read().
        for stream in lock(&self.conns).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Clone, Debug)]
struct Route {
    status: u16,
    body: String,
    delay: Duration,
    headers: Vec<(String, String)>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            status: 200,
            body: "ok".to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

#[derive(Default)]
struct UpstreamState {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
    requests: Vec<ReceivedRequest>,
}

/// A threaded HTTP/1.x backend on 127.0.0.1 whose per-path answers can be changed while it
/// runs. Unknown paths answer 200 "ok". Paths are matched without the query string. Supports
/// HTTP/1.1 keep-alive and HTTP/1.0 (close, or keep-alive when asked). Stops on drop.
pub struct Upstream {
    pub port: u16,
    state: Arc<Mutex<UpstreamState>>,
    _server: ServerCore,
}

impl Upstream {
    pub fn start() -> Upstream {
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: &ReceivedRequest| {
            let mut st = lock(&st);
            *st.hits.entry(req.path().to_string()).or_default() += 1;
            st.requests.push(req.clone());
            let route = st.routes.get(req.path()).cloned().unwrap_or_default();
            let mut headers = route.headers;
            if find_header(&headers, "content-type").is_none() {
                headers.push(("Content-Type".to_string(), "text/plain".to_string()));
            }
            Reply::Send {
                status: route.status,
                headers,
                body: route.body.into_bytes(),
                delay: route.delay,
            }
        });
        let server = ServerCore::start("upstream", handler);
        Upstream {
            port: server.port,
            state,
            _server: server,
        }
    }

    /// Answer `path` with `status` and `body` from now on (the delay is kept).
    pub fn set(&self, path: &str, status: u16, body: &str) {
        let mut st = lock(&self.state);
        let route = st.routes.entry(path.to_string()).or_default();
        route.status = status;
        route.body = body.to_string();
    }

    /// Wait `delay` before answering `path` (the request counts as a hit on arrival).
    pub fn set_delay(&self, path: &str, delay: Duration) {
        lock(&self.state)
            .routes
            .entry(path.to_string())
            .or_default()
            .delay = delay;
    }

    /// Extra response headers for `path` (framing headers are ignored).
    pub fn set_headers(&self, path: &str, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lock(&self.state)
            .routes
            .entry(path.to_string())
            .or_default()
            .headers = headers;
    }

    /// Requests received for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.state).hits.get(path).copied().unwrap_or(0)
    }

    /// Requests received for all paths.
    pub fn total_hits(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state).requests.clone()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Accepts TCP connections and never answers, keeping them open until dropped.
pub struct HangingListener {
    pub port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl HangingListener {
    /// How many connections were accepted (and are being held).
    pub fn accepted(&self) -> usize {
        lock(&self.held).len()
    }
}

impl Drop for HangingListener {
    fn drop(&mut self) {
        wake_and_join(self.port, &self.stop, self.thread.take());
        lock(&self.held).clear();
    }
}

/// A listener that accepts and then stays silent: `(port, handle)`; closes when dropped.
pub fn hanging_listener() -> (u16, HangingListener) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("hanging listener: bind");
    let port = listener
        .local_addr()
        .expect("hanging listener: local_addr")
        .port();
    let stop = Arc::new(AtomicBool::new(false));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (stop2, held2) = (stop.clone(), held.clone());
    let thread = thread::Builder::new()
        .name(format!("hanging-{port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    lock(&held2).push(stream);
                }
            }
        })
        .expect("spawn hanging listener thread");
    (
        port,
        HangingListener {
            port,
            stop,
            held,
            thread: Some(thread),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Discord webhook receiver
// ---------------------------------------------------------------------------------------------

/// A scripted answer: (status, headers, body).
pub type ScriptedResponse = (u16, Vec<(String, String)>, String);

/// One request as seen by [`WebhookReceiver`].
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub at: Instant,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What we answered; None while hanging.
    pub status: Option<u16>,
}

impl WebhookRequest {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct WebhookState {
    queue: VecDeque<ScriptedResponse>,
    hang: bool,
    messages: Vec<(Instant, Value)>,
    violations: Vec<String>,
    requests: Vec<WebhookRequest>,
}

/// A fake Discord webhook endpoint that checks every request the way Discord would, plus our
/// rule that nothing may ping anyone. Invalid requests get 400 with Discord's error shape and
/// are recorded in [`WebhookReceiver::violations`]; valid ones get the next scripted response
/// (default 204) and, when that response is 2xx, are recorded in
/// [`WebhookReceiver::messages`]. Stops on drop.
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<Mutex<WebhookState>>,
    _server: ServerCore,
}

fn validate_webhook_request(req: &ReceivedRequest) -> Result<Value, String> {
    if req.method != "POST" {
        return Err(format!(
            "method {} not allowed: webhooks take POST",
            req.method
        ));
    }
    if !req.path().starts_with("/api/webhooks/") {
        return Err(format!(
            "path {:?} does not start with /api/webhooks/",
            req.path()
        ));
    }
    let content_type = req.header("content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(format!(
            "Content-Type {content_type:?} is not application/json"
        ));
    }
    let value: Value = serde_json::from_slice(&req.body).map_err(|e| {
        format!(
            "body is not valid JSON ({e}): {:?}",
            String::from_utf8_lossy(&req.body)
        )
    })?;
    check_discord_payload(&value)?;
    Ok(value)
}

fn webhook_reply(state: &Mutex<WebhookState>, req: &ReceivedRequest) -> Reply {
    let mut st = lock(state);
    st.requests.push(WebhookRequest {
        at: req.at,
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        status: None,
    });
    if st.hang {
        return Reply::Hang;
    }
    let (status, headers, body) = match validate_webhook_request(req) {
        Err(violation) => {
            let body = json!({ "message": violation, "code": 50035 }).to_string();
            st.violations.push(violation);
            (
                400,
                vec![("Content-Type".to_string(), "application/json".to_string())],
                body,
            )
        }
        Ok(value) => {
            let answer = st
                .queue
                .pop_front()
                .unwrap_or((204, Vec::new(), String::new()));
            if (200..300).contains(&answer.0) {
                st.messages.push((req.at, value));
            }
            answer
        }
    };
    if let Some(last) = st.requests.last_mut() {
        last.status = Some(status);
    }
    Reply::Send {
        status,
        headers,
        body: body.into_bytes(),
        delay: Duration::ZERO,
    }
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let state = Arc::new(Mutex::new(WebhookState::default()));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: &ReceivedRequest| webhook_reply(&st, req));
        let server = ServerCore::start("webhook", handler);
        WebhookReceiver {
            port: server.port,
            state,
            _server: server,
        }
    }

    /// A Discord-shaped webhook URL pointing at this receiver.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{WEBHOOK_PATH}", self.port)
    }

    /// Queue answers for the next valid requests, in order; afterwards 204 again.
    pub fn respond_with(&self, responses: Vec<ScriptedResponse>) {
        lock(&self.state).queue.extend(responses);
    }

    /// While true, requests are read and recorded but never answered (the connection is held
    /// until the client gives up or the receiver is dropped).
    pub fn set_hang(&self, hang: bool) {
        lock(&self.state).hang = hang;
    }

    /// Valid payloads that were answered 2xx, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.state)
            .messages
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// [`WebhookReceiver::messages`] with their arrival times.
    pub fn messages_with_time(&self) -> Vec<(Instant, Value)> {
        lock(&self.state).messages.clone()
    }

    /// One description per rejected request.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Waits until at least `n` messages arrived (or `timeout`), then returns all of them.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_until(timeout, || lock(&self.state).messages.len() >= n);
        self.messages()
    }

    /// Waits until at least `n` requests of any kind arrived; returns the count.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        wait_until(timeout, || self.requests_count() >= n);
        self.requests_count()
    }

    /// All requests received (valid, invalid, scripted, hung).
    pub fn requests_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Every request received, with what was answered.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        lock(&self.state).requests.clone()
    }
}

fn chars_of(v: Option<&Value>, what: &str, max: usize, non_empty: bool) -> Result<usize, String> {
    let s = match v {
        None | Some(Value::Null) if !non_empty => return Ok(0),
        None | Some(Value::Null) => return Err(format!("{what} is required")),
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("{what} must be a string, got {other}")),
    };
    // Discord limits count characters (code points), not UTF-8 bytes.
    let n = s.chars().count();
    if n > max {
        return Err(format!("{what} is {n} characters long (max {max})"));
    }
    if non_empty && n == 0 {
        return Err(format!("{what} must not be empty"));
    }
    Ok(n)
}

fn two_digits(b: &[u8], at: usize, max: u32) -> Option<u32> {
    let (hi, lo) = (*b.get(at)?, *b.get(at + 1)?);
    if !hi.is_ascii_digit() || !lo.is_ascii_digit() {
        return None;
    }
    let n = u32::from(hi - b'0') * 10 + u32::from(lo - b'0');
    (n <= max).then_some(n)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
pub fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return false;
    }
    let fields_ok = matches!(two_digits(b, 5, 12), Some(m) if m >= 1)
        && matches!(two_digits(b, 8, 31), Some(d) if d >= 1)
        && two_digits(b, 11, 23).is_some()
        && two_digits(b, 14, 59).is_some()
        && two_digits(b, 17, 59).is_some();
    if !fields_ok {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest {
        b"Z" => true,
        [sign, ..] if (*sign == b'+' || *sign == b'-') && rest.len() == 6 && rest[3] == b':' => {
            two_digits(rest, 1, 23).is_some() && two_digits(rest, 4, 59).is_some()
        }
        _ => false,
    }
}

/// Checks one embed; returns its characters counted toward Discord's 6000 total.
fn check_embed(i: usize, embed: &Value) -> Result<usize, String> {
    let at = |key: &str| format!("embeds[{i}].{key}");
    let e = embed
        .as_object()
        .ok_or_else(|| format!("embeds[{i}] is not an object"))?;
    let mut total = chars_of(e.get("title"), &at("title"), 256, false)?;
    total += chars_of(e.get("description"), &at("description"), 4096, false)?;
    match e.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fields)) => {
            if fields.len() > 25 {
                return Err(format!(
                    "{} has {} entries (max 25)",
                    at("fields"),
                    fields.len()
                ));
            }
            for (j, field) in fields.iter().enumerate() {
                let f = field
                    .as_object()
                    .ok_or_else(|| format!("embeds[{i}].fields[{j}] is not an object"))?;
                total += chars_of(
                    f.get("name"),
                    &format!("embeds[{i}].fields[{j}].name"),
                    256,
                    true,
                )?;
                total += chars_of(
                    f.get("value"),
                    &format!("embeds[{i}].fields[{j}].value"),
                    1024,
                    true,
                )?;
                if let Some(inline) = f.get("inline") {
                    if !inline.is_boolean() && !inline.is_null() {
                        return Err(format!("embeds[{i}].fields[{j}].inline must be a boolean"));
                    }
                }
            }
        }
        Some(other) => return Err(format!("{} must be an array, got {other}", at("fields"))),
    }
    match e.get("footer") {
        None | Some(Value::Null) => {}
        Some(Value::Object(footer)) => {
            total += chars_of(footer.get("text"), &at("footer.text"), 2048, true)?;
        }
        Some(other) => return Err(format!("{} must be an object, got {other}", at("footer"))),
    }
    match e.get("author") {
        None | Some(Value::Null) => {}
        Some(Value::Object(author)) => {
            total += chars_of(author.get("name"), &at("author.name"), 256, true)?;
        }
        Some(other) => return Err(format!("{} must be an object, got {other}", at("author"))),
    }
    match e.get("color") {
        None | Some(Value::Null) => {}
        Some(c) if c.as_u64().is_some_and(|c| c <= 0xFF_FFFF) => {}
        Some(c) => {
            return Err(format!(
                "{} must be an integer in 0..=0xFFFFFF, got {c}",
                at("color")
            ))
        }
    }
    match e.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if is_iso8601(t) => {}
        Some(t) => {
            return Err(format!(
                "{} is not an ISO 8601 timestamp: {t}",
                at("timestamp")
            ))
        }
    }
    Ok(total)
}

/// Validates a webhook payload against Discord's limits and our "no pings" rule.
pub fn check_discord_payload(v: &Value) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("payload is not a JSON object: {v}"))?;
    let content = chars_of(obj.get("content"), "content", 2000, false)?;
    let embeds: &[Value] = match obj.get("embeds") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("embeds must be an array, got {other}")),
    };
    if content == 0 && embeds.is_empty() {
        return Err("neither content nor embeds present: cannot send an empty message".into());
    }
    if embeds.len() > 10 {
        return Err(format!("embeds has {} entries (max 10)", embeds.len()));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        total += check_embed(i, embed)?;
    }
    if total > 6000 {
        return Err(format!(
            "embeds total {total} characters (max 6000 across all embeds)"
        ));
    }
    if obj.contains_key("username") {
        chars_of(obj.get("username"), "username", 80, true)?;
    }
    match obj.get("allowed_mentions") {
        None => Err("allowed_mentions missing: must be {\"parse\": []} so nobody is pinged".into()),
        Some(am) if *am == json!({ "parse": [] }) => Ok(()),
        Some(am) => Err(format!(
            "allowed_mentions must be exactly {{\"parse\": []}}, got {am}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format 0.0.4
// ---------------------------------------------------------------------------------------------

/// (metric name, labels in order, value).
pub type Sample = (String, Vec<(String, String)>, f64);

struct Cursor {
    chars: Vec<char>,
    i: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, mut f: impl FnMut(usize, char) -> bool) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(self.i - start, c) {
                break;
            }
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!(
                "expected {want:?} at column {}, found {c:?}",
                self.i
            )),
            None => Err(format!("expected {want:?}, found end of line")),
        }
    }
}

fn parse_prom_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad sample value {s:?}")),
    }
}

fn parse_sample_line(line: &str) -> Result<Sample, String> {
    let mut c = Cursor {
        chars: line.chars().collect(),
        i: 0,
    };
    let name = c.take_while(|n, ch| {
        ch.is_ascii_alphabetic() || ch == '_' || ch == ':' || (n > 0 && ch.is_ascii_digit())
    });
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    c.skip_ws();
    let mut labels = Vec::new();
    if c.peek() == Some('{') {
        c.bump();
        loop {
            c.skip_ws();
            if c.peek() == Some('}') {
                c.bump();
                break;
            }
            let key = c.take_while(|n, ch| {
                ch.is_ascii_alphabetic() || ch == '_' || (n > 0 && ch.is_ascii_digit())
            });
            if key.is_empty() {
                return Err(format!("bad label name at column {}", c.i));
            }
            c.skip_ws();
            c.expect('=')?;
            c.skip_ws();
            c.expect('"')?;
            let mut value = String::new();
            loop {
                match c.bump() {
                    None => return Err(format!("unterminated value of label {key}")),
                    Some('"') => break,
                    Some('\\') => match c.bump() {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        other => return Err(format!("invalid escape \\{other:?} in label {key}")),
                    },
                    Some(ch) => value.push(ch),
                }
            }
            labels.push((key, value));
            c.skip_ws();
            match c.bump() {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("expected ',' or '}}' after label, found {other:?}")),
            }
        }
    }
    let rest: String = c.chars[c.i..].iter().collect();
    let mut tokens = rest.split_whitespace();
    let value = parse_prom_value(tokens.next().ok_or("missing sample value")?)?;
    if let Some(ts) = tokens.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected trailing {extra:?}"));
    }
    Ok((name, labels, value))
}

/// Parses the sample lines of a Prometheus text exposition (`#` lines and blank lines are
/// skipped); errors name the line.
pub fn try_parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_sample_line(line).map_err(|e| format!("line {}: {e}: {raw:?}", i + 1))?);
    }
    Ok(samples)
}

/// [`try_parse_prometheus`] that panics (showing the text) on malformed input.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    try_parse_prometheus(text)
        .unwrap_or_else(|e| panic!("invalid Prometheus text: {e}\n--- text ---\n{text}"))
}

/// Value of the first sample named `name` whose labels include all of `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether `promtool` is on PATH.
pub fn have_promtool() -> bool {
    find_on_path("promtool").is_some()
}

/// Runs `promtool check metrics` on `text` (stdin). Err with promtool's output when it finds
/// problems; Err("promtool not installed") when it is missing, unless
/// STATUS_ALERT_SKIP_PROMTOOL=1 (then Ok).
pub fn promtool_check(text: &str) -> Result<(), String> {
    let Some(promtool) = find_on_path("promtool") else {
        if std::env::var("STATUS_ALERT_SKIP_PROMTOOL").as_deref() == Ok("1") {
            return Ok(());
        }
        return Err("promtool not installed".to_string());
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", promtool.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    // Feed stdin from another thread so a chatty promtool can't deadlock us on full pipes.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
