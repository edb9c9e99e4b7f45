//! The alerter never goes silent unnoticed (README, "Alerting watches itself"), tried as
//! another local user, a neighbour in another container and an unlucky operator would:
//!
//! - another user (uid 4242: neither root nor the workers' `nobody`) squats the evaluation lease
//!   or plants a FIFO, symlinks and directories where the hand-over file used to live;
//! - two nginx with the same configuration path, each in its own mount namespace, share one
//!   network namespace;
//! - the helper process is stopped, cannot be started, or is killed again and again.
//!
//! In each case nginx keeps serving and evaluating, and every alert is delivered or counted.
//!
//! Needs root (to act as uid 4242 with `setpriv`, to `unshare -m` and bind-mount, to `prlimit`
//! the workers), `/usr/bin/python3` for the squatter; prints SKIP and passes without them, or
//! fails under CI.
//! nginx started as root runs its workers as `nobody`. Every wait is a poll with a deadline;
//! every process a test starts is stopped by its pid.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// The other local user: neither root nor the workers' user.
const OTHER: &str = "4242";
/// Python for the squatter, by absolute path: uid 4242 cannot reach a pyenv shim under /root.
const PYTHON: &str = "/usr/bin/python3";
/// How long the titles a receiver got must stay the same before "exactly N" is read: two
/// evaluation intervals and a delivery.
const QUIET: Duration = Duration::from_secs(3);
/// No request to nginx may take longer than this: a hung worker shows as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Preconditions, configuration, requests, metrics
// ---------------------------------------------------------------------------------------------

/// Ok when running as root with every program in `tools`; else what is missing (for
/// [`require!`]).
fn can_run(tools: &[&str]) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (setpriv, unshare, prlimit act for other users)".to_string());
    }
    tools.iter().try_for_each(|tool| program_ready(tool))
}

/// Webhook, 1 s interval, `/ok` (200, not counted), one location `/<name>` answering 500 per
/// NAME (`warn=5% crit=10%`, a 5 minute window so nothing resolves during a test, at least 10
/// requests, no repeats), and metrics at `/status_metrics`.
fn block(webhook: &str, names: &[&str]) -> String {
    let locations: String = names
        .iter()
        .map(|n| {
            format!(
                "        location = /{n} {{ status_alert {n} warn=5% crit=10% window=5m \
                 min_requests=10 repeat=off; return 500; }}\n"
            )
        })
        .collect();
    format!(
        r#"
    status_alert_webhook {webhook};
    status_alert_interval 1s;
    server {{
        listen 127.0.0.1:{{PORT}};
        location = /ok {{ status_alert off; return 200 "ok"; }}
{locations}        location = /status_metrics {{ status_alert off; status_metrics; }}
    }}
"#
    )
}

/// GET `path`, answered within [`REQUEST_TIMEOUT`]: the status, or what went wrong.
fn get_within(port: u16, path: &str) -> Result<u16, String> {
    let started = Instant::now();
    try_http_request_timeout(port, "GET", path, &[], None, REQUEST_TIMEOUT)
        .map(|r| r.status)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("GET {path}: no answer within {REQUEST_TIMEOUT:?} (nginx hangs)")
            }
            _ => format!("GET {path} failed after {:?}: {e}", started.elapsed()),
        })
}

/// `pid (state, wchan)` of each of `pids`: where a hung process waits (e.g. `fifo_open`).
fn where_they_wait(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| {
            let read = |f: &str| fs::read_to_string(format!("/proc/{p}/{f}")).unwrap_or_default();
            let state = read("status")
                .lines()
                .find(|l| l.starts_with("State:"))
                .map(|l| l.trim_start_matches("State:").trim().to_string())
                .unwrap_or_default();
            format!("{p} ({state}, wchan {})", read("wchan").trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `n` requests to `/<name>` (a 500 each); each must be answered in time.
fn incident(port: u16, name: &str, n: usize, log: impl Fn() -> String) {
    for i in 0..n {
        match get_within(port, &format!("/{name}")) {
            Ok(500) => {}
            other => panic!(
                "request {i} of the {name} incident: {other:?}\n--- error.log tail ---\n{}",
                tail(&log(), 40)
            ),
        }
    }
}

/// `/status_metrics` parsed; None if nginx does not answer in time.
fn samples(port: u16) -> Option<Vec<Sample>> {
    let r = try_http_request_timeout(port, "GET", "/status_metrics", &[], None, REQUEST_TIMEOUT)
        .ok()?;
    (r.status == 200).then(|| parse_prometheus(&r.text()))
}

/// `nginx_location_alert_state{location=name}`.
fn alert_state(port: u16, name: &str) -> Option<f64> {
    metric(
        &samples(port)?,
        "nginx_location_alert_state",
        &[("location", name)],
    )
}

/// Waits (up to `timeout`) for `nginx_location_alert_state{location=name}` 2; the last value.
fn wait_critical_state(port: u16, name: &str, timeout: Duration) -> (bool, Option<f64>) {
    let mut last = None;
    let ok = wait_until(timeout, || {
        last = alert_state(port, name);
        last == Some(2.0)
    });
    (ok, last)
}

/// `nginx_alert_notifications_total` summed over destinations for `result`.
fn notifications(samples: &[Sample], result: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == "nginx_alert_notifications_total"
                && labels.iter().any(|(k, v)| k == "result" && v == result)
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Messages sent + dropped + failed: every payload that was settled one way or another.
fn settled(samples: &[Sample]) -> f64 {
    ["sent", "dropped", "failed"]
        .iter()
        .map(|r| notifications(samples, r))
        .sum()
}

/// `nginx_status_alert_helper_restarts_total`.
fn helper_restarts(port: u16) -> Option<f64> {
    metric(
        &samples(port)?,
        "nginx_status_alert_helper_restarts_total",
        &[],
    )
}

/// How many embeds received so far have a title starting with `prefix`.
/// Titles starting with `prefix` among everything the receiver got (accepted or not).
fn count_titles(hook: &WebhookReceiver, prefix: &str) -> usize {
    hook.all_titles()
        .iter()
        .filter(|t| t.starts_with(prefix))
        .count()
}

/// Waits (up to `timeout`) for an embed whose title starts with `prefix`.
fn wait_title(hook: &WebhookReceiver, prefix: &str, timeout: Duration) -> bool {
    wait_until(timeout, || count_titles(hook, prefix) >= 1)
}

/// Alert events in an error log: lines whose `status_alert: ` is followed by an event title
/// (`CRITICAL be: ...`, `DOWN be: ...`), whether queued for delivery or not.
fn event_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.split_once("status_alert: ").is_some_and(|(_, rest)| {
                ["CRITICAL ", "WARNING ", "RESOLVED ", "DOWN ", "UP "]
                    .iter()
                    .any(|p| rest.starts_with(p))
            })
        })
        .collect()
}

/// `[alert]`, `[crit]` and `[emerg]` lines.
fn serious_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
        .collect()
}

/// The pid nginx logged a line with (`... [notice] 1234#1234: ...`).
fn logged_pid(line: &str) -> Option<u32> {
    let (_, rest) = line.split_once("] ")?;
    rest.split('#').next()?.trim().parse().ok()
}

/// Worker 0 of `nginx`: the current worker that logged "status_alert: evaluating ... in this
/// process" last; else the oldest current worker (nginx starts worker 0 first).
fn worker_zero(nginx: &Nginx) -> u32 {
    let workers = nginx.worker_pids();
    let log = nginx.error_log();
    log.lines()
        .rev()
        .filter(|l| l.contains("status_alert: evaluating ") && l.contains("in this process"))
        .filter_map(logged_pid)
        .find(|p| workers.contains(p))
        .or_else(|| workers.first().copied())
        .unwrap_or_else(|| panic!("nginx has no workers\n{}", tail(&log, 40)))
}

/// uid of `user` from /etc/passwd.
fn uid_of(user: &str) -> u32 {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"))
}

/// The private state directory (default: `status_alert` beside the client body temp
/// path, `{DIR}/tmp/body` in the harness) exists, mode 0700, owned by the workers' user.
fn assert_private_state_dir(prefix: &Path) {
    let dir = prefix.join("tmp/status_alert");
    let meta = fs::symlink_metadata(&dir)
        .unwrap_or_else(|e| panic!("no private state directory {}: {e}", dir.display()));
    assert!(meta.is_dir(), "{} is not a directory", dir.display());
    assert_eq!(
        meta.mode() & 0o777,
        0o700,
        "mode of {} is {:o}",
        dir.display(),
        meta.mode() & 0o777
    );
    assert_eq!(
        meta.uid(),
        uid_of("nobody"),
        "{} is not owned by the workers' user nobody",
        dir.display()
    );
}

/// `setpriv` running `program` as uid/gid 4242 without supplementary groups.
fn as_other_user(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={OTHER}"),
        &format!("--regid={OTHER}"),
        "--clear-groups",
        program,
    ]);
    cmd
}

/// Runs the shell `script` as uid 4242; panics with its output if it fails.
fn run_as_other_user(script: &str) {
    let out = as_other_user("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "as uid {OTHER}: {script:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Field `n` (0-based, after the name) of `key:` in /proc/PID/status, e.g. the real uid.
fn proc_status_field(pid: u32, key: &str, n: usize) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(n + 1).map(str::to_string)
}

/// Sets the soft `RLIMIT_NPROC` of `pid` to `soft`, or back to its hard limit with None. Only
/// the soft limit: raising a hard limit needs CAP_SYS_RESOURCE, which containers often lack.
/// For a process of another user (a worker, `nobody`), prlimit runs as that user: without
/// CAP_SYS_RESOURCE only the process's own user may change its limits.
fn set_nproc_soft(pid: u32, soft: Option<u64>) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max processes"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("no process limit of {pid}:\n{limits}"))
        .to_string();
    let soft = soft.map_or(hard, |n| n.to_string());
    let uid = proc_status_field(pid, "Uid:", 0).expect("uid of the process");
    let gid = proc_status_field(pid, "Gid:", 0).expect("gid of the process");
    let mut cmd = if uid == "0" {
        Command::new("prlimit")
    } else {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "prlimit",
        ]);
        c
    };
    let out = cmd
        .args(["--pid", &pid.to_string(), &format!("--nproc={soft}:")])
        .output()
        .expect("run prlimit");
    assert!(
        out.status.success(),
        "prlimit --pid {pid} --nproc={soft}: (as uid {uid}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `pid` is a live helper process (`comm` "status-alert"): checked before signalling a
/// pid that may have been reused.
fn is_helper(pid: u32) -> bool {
    process_alive(pid)
        && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "status-alert")
}

// ---------------------------------------------------------------------------------------------
// Where today's code keeps its lease and hand-over (src/driver/lease.rs), for the squatter and
// the planted files
// ---------------------------------------------------------------------------------------------

/// The abstract socket name of the old lease of the nginx reading `conf`.
fn old_lease_name(conf: &Path) -> String {
    format!("nginx-status-alert:{}", conf.display())
}

/// The old hand-over file's stem in /dev/shm: `nginx-status-alert.<fnv1a64 of the name>`.
fn old_hand_over_stem(conf: &Path) -> String {
    let hash = old_lease_name(conf)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("/dev/shm/nginx-status-alert.{hash:016x}")
}

/// The old hand-over file (`.state`).
fn old_state_path(conf: &Path) -> PathBuf {
    PathBuf::from(format!("{}.state", old_hand_over_stem(conf)))
}

/// The old hand-over file's temporary name, written by the process `pid` (`.<pid>.tmp`).
fn old_tmp_path(conf: &Path, pid: u32) -> PathBuf {
    PathBuf::from(format!("{}.{pid}.tmp", old_hand_over_stem(conf)))
}

/// A process of uid 4242 holding the abstract socket name of the old lease; killed (by its pid)
/// when dropped.
struct Squatter {
    child: Child,
    out: PathBuf,
}

impl Squatter {
    /// Binds `\0<name>` as uid 4242 and sleeps. With `spin` it retries every millisecond until
    /// the name is free (to take it in the gap of a reload); else it must get it at once.
    fn start(name: &str, dir: &Path, spin: bool) -> Squatter {
        const CODE: &str = r#"
import socket, sys, time
name = b"\0" + sys.argv[1].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
while True:
    try:
        s.bind(name)
        break
    except OSError as e:
        if sys.argv[2] != "spin":
            print("bind failed:", e, flush=True)
            sys.exit(1)
        time.sleep(0.001)
print("bound", flush=True)
time.sleep(3600)
"#;
        assert!(name.len() <= 107, "{name} does not fit an abstract address");
        let out = dir.join(format!(
            "squatter-{}.out",
            if spin { "spin" } else { "once" }
        ));
        let file = fs::File::create(&out).expect("create squatter output");
        let err = file.try_clone().expect("clone squatter output");
        let child = as_other_user(PYTHON)
            .args(["-c", CODE, name, if spin { "spin" } else { "once" }])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start the squatter");
        Squatter { child, out }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_bound(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.output().contains("bound\n"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this pid only (setpriv exec'd python in place).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What uid 4242 plants at a path.
#[derive(Clone, Copy)]
enum Plant<'a> {
    Fifo,
    Symlink(&'a Path),
    Dir,
}

impl Plant<'_> {
    fn describe(&self) -> String {
        match self {
            Plant::Fifo => "a FIFO".into(),
            Plant::Symlink(to) => format!("a symlink to {}", to.display()),
            Plant::Dir => "a directory".into(),
        }
    }
}

/// Objects planted by uid 4242. On drop (and [`Planted::clear`]) any reader blocked opening a
/// planted FIFO is released, then everything is removed: a worker hung by today's code can then
/// exit when nginx is stopped.
#[derive(Default)]
struct Planted {
    paths: Vec<PathBuf>,
}

impl Planted {
    fn plant(&mut self, path: &Path, what: Plant) {
        remove_planted(path);
        let p = path.display();
        let script = match what {
            Plant::Fifo => format!("mkfifo -m 0666 '{p}'"),
            Plant::Symlink(to) => format!("ln -s '{}' '{p}'", to.display()),
            Plant::Dir => format!("mkdir -m 0777 '{p}'"),
        };
        run_as_other_user(&script);
        self.paths.push(path.to_path_buf());
    }

    fn clear(&mut self) {
        for p in self.paths.drain(..) {
            remove_planted(&p);
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Releases a reader blocked opening the FIFO at `path` (if it is one), then removes `path`.
fn remove_planted(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_fifo() {
        // A non-blocking writer open succeeds only if a reader waits, and wakes it.
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
    }
    let _ = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
}

// ---------------------------------------------------------------------------------------------
// 1. The lease cannot be squatted
// ---------------------------------------------------------------------------------------------

/// The lease used to be the abstract socket `nginx-status-alert:<conf path>`, which any user
/// can bind first; then alert_state stayed 0 and nothing was posted.
#[test]
fn a_lease_squatter_of_another_user_does_not_silence_alerting() {
    require_module!();
    require!(can_run(&["setpriv", PYTHON]));
    let hook = WebhookReceiver::start();
    // Prepared, not started: the lease name derives from the configuration's path.
    let mut nginx = Nginx::prepare(&block(&hook.url(), &["api", "api2"]), NginxOpts::default());
    let name = old_lease_name(&nginx.conf_path());

    // Before nginx starts.
    let squatter = Squatter::start(&name, &nginx.dir, false);
    assert!(
        squatter.wait_bound(Duration::from_secs(5)),
        "the squatter could not bind {name:?}: {}",
        squatter.output()
    );
    nginx.start_prepared();
    incident(nginx.port, "api", 20, || nginx.error_log());
    let (critical, state) = wait_critical_state(nginx.port, "api", Duration::from_secs(5));
    assert!(
        critical,
        "alert_state of api is {state:?}, not 2, 5s into a 100% 5xx incident while uid {OTHER} \
         (pid {}) holds the abstract name {name:?}\n--- error.log tail ---\n{}",
        squatter.pid(),
        tail(&nginx.error_log(), 30)
    );
    assert!(
        wait_title(&hook, "CRITICAL api:", Duration::from_secs(10)),
        "no CRITICAL for api while the lease name is squatted; received {:?}\n{}",
        hook.titles(),
        tail(&nginx.error_log(), 30)
    );
    assert!(
        process_alive(squatter.pid()),
        "the squatter exited early: {}",
        squatter.output()
    );
    drop(squatter);

    // In the gap of a reload: a squatter spinning on the name takes it as soon as it is free.
    let spinner = Squatter::start(&name, &nginx.dir, true);
    nginx.reload();
    assert!(
        spinner.wait_bound(Duration::from_secs(10)),
        "the spinning squatter never got the name: {}",
        spinner.output()
    );
    incident(nginx.port, "api2", 20, || nginx.error_log());
    let (critical, state) = wait_critical_state(nginx.port, "api2", Duration::from_secs(5));
    assert!(
        critical,
        "after a reload with uid {OTHER} squatting {name:?}: alert_state of api2 is {state:?}\n\
         --- error.log tail ---\n{}",
        tail(&nginx.error_log(), 30)
    );
    assert!(
        wait_title(&hook, "CRITICAL api2:", Duration::from_secs(10)),
        "no CRITICAL for api2 after the reload; received {:?}\n{}",
        hook.titles(),
        tail(&nginx.error_log(), 30)
    );
    assert_eq!(
        count_titles(&hook, "CRITICAL api:"),
        1,
        "{:?}",
        hook.titles()
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    let log = nginx.error_log();
    let serious = serious_lines(&log);
    assert!(serious.is_empty(), "{}", serious.join("\n"));
    drop(spinner);
}

// ---------------------------------------------------------------------------------------------
// 2. Files planted where the hand-over used to live
// ---------------------------------------------------------------------------------------------

/// The hand-over file used to be `/dev/shm/nginx-status-alert.<hash>.state`, written through
/// `.<pid>.tmp`. uid 4242 plants a FIFO, symlinks and directories there; one worker, so a hung
/// worker 0 shows in every request. Three reloads, each with other objects planted, each followed
/// by an incident of its own. The failure this guards against: after the first reload (FIFO at
/// `.state`, symlink at the leaving worker's `.tmp`, so the old worker cannot replace the FIFO) the
/// new worker 0 blocks in open(2) of the FIFO and requests time out.
#[test]
fn planted_files_at_the_old_hand_over_paths_change_nothing() {
    require_module!();
    require!(can_run(&["setpriv", "mkfifo"]));
    let hook = WebhookReceiver::start();
    let rounds = ["r1", "r2", "r3"];
    let mut names = vec!["r0"];
    names.extend(rounds);
    let nginx = Nginx::start(&block(&hook.url(), &names), NginxOpts::workers(1));
    let conf = nginx.dir.join("nginx.conf");
    let state = old_state_path(&conf);
    // A file of uid 4242 that symlinks point at: nginx must neither read nor write it.
    let victim = PathBuf::from(format!("{}.victim", old_hand_over_stem(&conf)));
    let mut planted = Planted::default();
    run_as_other_user(&format!("umask 022; echo victim > '{}'", victim.display()));
    planted.paths.push(victim.clone());

    incident(nginx.port, "r0", 20, || nginx.error_log());
    assert!(
        wait_title(&hook, "CRITICAL r0:", Duration::from_secs(10)),
        "no CRITICAL before anything was planted: {:?}\n{}",
        hook.titles(),
        tail(&nginx.error_log(), 30)
    );

    let plans = [
        (Plant::Fifo, Plant::Symlink(&victim)),
        (Plant::Symlink(&victim), Plant::Dir),
        (Plant::Dir, Plant::Fifo),
    ];
    for (round, (at_state, at_tmp)) in rounds.iter().zip(plans) {
        let what = format!(
            "{} at {}, {} at the .tmp names of workers {:?}",
            at_state.describe(),
            state.display(),
            at_tmp.describe(),
            nginx.worker_pids()
        );
        for w in nginx.worker_pids() {
            let tmp = old_tmp_path(&conf, w);
            planted.plant(&tmp, at_tmp);
        }
        planted.plant(&state, at_state);
        nginx.reload();
        // The new worker 0 starts evaluating within a tick or two: requests over 2 s, each
        // answered in time.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Err(e) = get_within(nginx.port, "/ok") {
                panic!(
                    "{round}, with {what}: {e}; workers: {}\n--- error.log tail ---\n{}",
                    where_they_wait(&nginx.worker_pids()),
                    tail(&nginx.error_log(), 30)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        incident(nginx.port, round, 20, || nginx.error_log());
        let (critical, state_now) = wait_critical_state(nginx.port, round, Duration::from_secs(5));
        assert!(
            critical,
            "{round}, with {what}: alert_state is {state_now:?}\n{}",
            tail(&nginx.error_log(), 30)
        );
        assert!(
            wait_title(
                &hook,
                &format!("CRITICAL {round}:"),
                Duration::from_secs(10)
            ),
            "{round}, with {what}: no CRITICAL; received {:?}\n{}",
            hook.titles(),
            tail(&nginx.error_log(), 30)
        );
    }

    // Exactly as without them: one CRITICAL per incident, nothing else.
    let all = settle(QUIET, Duration::from_secs(15), || hook.all_titles());
    for name in &names {
        assert_eq!(
            count_titles(&hook, &format!("CRITICAL {name}:")),
            1,
            "{:?}",
            hook.titles()
        );
    }
    assert_eq!(all.len(), names.len(), "{all:?}");
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    nginx.assert_log_clean();
    assert_eq!(
        fs::read_to_string(&victim).unwrap_or_default(),
        "victim\n",
        "the file behind the symlinks was changed"
    );
    // Where the state lives now, nobody else can write.
    assert_private_state_dir(&nginx.dir);
    drop(planted);
}

/// Planted files during a binary upgrade: a FIFO at the old hand-over path, and a symlink at the
/// old worker 0's `.tmp` name so that it cannot replace the FIFO when it leaves. The failure this
/// guards against: the new master's worker 0 blocks in open(2) of the FIFO once it takes the lease,
/// and requests time out.
#[test]
fn binary_upgrade_with_a_fifo_at_the_old_hand_over_path_does_not_hang() {
    require_module!();
    require!(can_run(&["setpriv", "mkfifo"]));
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&block(&hook.url(), &["r0", "r1"]), NginxOpts::workers(1));
    let conf = nginx.dir.join("nginx.conf");
    incident(nginx.port, "r0", 20, || nginx.error_log());
    assert!(
        wait_title(&hook, "CRITICAL r0:", Duration::from_secs(10)),
        "no CRITICAL before the upgrade: {:?}\n{}",
        hook.titles(),
        tail(&nginx.error_log(), 30)
    );
    let old_worker_zero = nginx.worker_pids();

    let new = MasterGuard(nginx.start_upgrade());
    // Planted after USR2 (the new master has not taken the lease yet) and before the old
    // workers leave; dropped before the new master, so that a hung worker is released first.
    let mut planted = Planted::default();
    planted.plant(&old_state_path(&conf), Plant::Fifo);
    for w in &old_worker_zero {
        planted.plant(
            &old_tmp_path(&conf, *w),
            Plant::Symlink(Path::new("/dev/null")),
        );
    }
    assert!(nginx.signal("WINCH"));
    assert!(
        wait_until(Duration::from_secs(10), || nginx
            .old_workers(new.0)
            .is_empty()),
        "the old workers did not leave\n{}",
        tail(&nginx.error_log(), 30)
    );
    // Only the new master's worker serves now; it takes the lease within a tick or two.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        if let Err(e) = get_within(nginx.port, "/ok") {
            panic!(
                "after the upgrade, with a FIFO at {}: {e}; the new master's workers: {}\n\
                 --- error.log tail ---\n{}",
                old_state_path(&conf).display(),
                where_they_wait(&children_of(new.0)),
                tail(&nginx.error_log(), 30)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(nginx.signal("QUIT"));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        nginx.pid()
    )));
    incident(nginx.port, "r1", 20, || nginx.error_log());
    assert!(
        wait_title(&hook, "CRITICAL r1:", Duration::from_secs(10)),
        "the new master does not alert: {:?}\n{}",
        hook.titles(),
        tail(&nginx.error_log(), 30)
    );
    // The incident of the old master was handed over, not announced again.
    settle(QUIET, Duration::from_secs(15), || hook.all_titles());
    assert_eq!(
        count_titles(&hook, "CRITICAL r0:"),
        1,
        "{:?}",
        hook.titles()
    );
    nginx.assert_log_clean();
    drop(planted);
    drop(new);
}

// ---------------------------------------------------------------------------------------------
// 3. Neighbours in other mount namespaces
// ---------------------------------------------------------------------------------------------

/// Removes the common mount point (an empty directory on the host) when dropped.
struct MountPoint(PathBuf);

impl Drop for MountPoint {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Two nginx, each in its own mount namespace with its own directory mounted at one common path
/// (same `-p`, same `-c`), one network namespace. The failure this guards against: the second never
/// alerts (its worker 0 never gets the abstract lease name, which the first holds).
#[test]
fn two_instances_in_separate_mount_namespaces_each_alert() {
    require_module!();
    require!(can_run(&["unshare", "mount"]));
    // Under the temp dir (TMPDIR), like every nginx dir of the kit: a launcher that runs nginx
    // in another root (ci/test-versions: chroot) sees the temp dir at the same path.
    let common = std::env::temp_dir().join(format!("sa-ns-test-{}/prefix", std::process::id()));
    fs::create_dir_all(&common).expect("create the common mount point");
    for d in [common.as_path(), common.parent().expect("parent")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // Declared first: removed after both nginx have stopped.
    let _mount_point = MountPoint(common.clone());
    let hooks = [WebhookReceiver::start(), WebhookReceiver::start()];
    let opts = NginxOpts {
        mount_at: Some(common.clone()),
        ..NginxOpts::default()
    };
    let mut instances: Vec<Nginx> = hooks
        .iter()
        .map(|h| Nginx::prepare(&block(&h.url(), &["api"]), opts.clone()))
        .collect();
    for n in &mut instances {
        n.start_prepared();
    }
    assert_eq!(instances[0].conf_path(), instances[1].conf_path());
    for (i, (n, hook)) in instances.iter().zip(&hooks).enumerate() {
        incident(n.port, "api", 20, || n.error_log());
        let (critical, state) = wait_critical_state(n.port, "api", Duration::from_secs(5));
        assert!(
            critical,
            "instance {i} (port {}): alert_state of api is {state:?}, not 2, in a 100% 5xx \
             incident\n--- its error.log tail ---\n{}",
            n.port,
            tail(&n.error_log(), 30)
        );
        assert!(
            wait_title(hook, "CRITICAL api:", Duration::from_secs(10)),
            "instance {i} (port {}): no CRITICAL at its receiver; received {:?}\n{}",
            n.port,
            hook.titles(),
            tail(&n.error_log(), 30)
        );
    }
    for (i, hook) in hooks.iter().enumerate() {
        let all = settle(QUIET, Duration::from_secs(15), || hook.all_titles());
        assert_eq!(all.len(), 1, "receiver {i}: {all:?}");
    }
    for n in &instances {
        let log = n.error_log();
        let serious = serious_lines(&log);
        assert!(serious.is_empty(), "{}", serious.join("\n"));
    }
    drop(instances);
}

// ---------------------------------------------------------------------------------------------
// 4-6. The helper stalls, cannot start, dies
// ---------------------------------------------------------------------------------------------

/// A helper this test stopped: SIGCONT and SIGKILL on drop if it is still there.
struct StoppedHelper(u32);

impl Drop for StoppedHelper {
    fn drop(&mut self) {
        if is_helper(self.0) {
            send_signal(self.0, "CONT");
            send_signal(self.0, "KILL");
        }
    }
}

/// With the helper stopped, worker 0 still evaluates; the stalled helper is
/// killed and replaced within max(2 intervals, 5 s), and the replacement delivers. Today's
/// failure: alert_state stays 0 (worker 0 evaluates only on the helper's ticks).
#[test]
fn a_stopped_helper_is_replaced_and_evaluation_goes_on() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&block(&hook.url(), &["api"]), NginxOpts::default());
    let master = nginx.pid();
    assert!(
        wait_until(Duration::from_secs(5), || helper_processes(master).len()
            == 1),
        "no helper: {:?}",
        helper_processes(master)
    );
    let stopped = StoppedHelper(helper_processes(master)[0]);
    assert!(send_signal(stopped.0, "STOP"));
    let stopped_at = Instant::now();

    incident(nginx.port, "api", 20, || nginx.error_log());
    let incident_at = Instant::now();
    let (critical, state) = wait_critical_state(nginx.port, "api", Duration::from_secs(3));
    assert!(
        critical,
        "alert_state of api is {state:?}, not 2, 3s into a 100% 5xx incident with the helper \
         {} stopped\n--- error.log tail ---\n{}",
        stopped.0,
        tail(&nginx.error_log(), 30)
    );
    let delivered = wait_until(
        Duration::from_secs(10).saturating_sub(incident_at.elapsed()),
        || count_titles(&hook, "CRITICAL api:") >= 1,
    );
    assert!(
        delivered,
        "no CRITICAL within 10s with helper {} stopped; received {:?}, helpers {:?}\n{}",
        stopped.0,
        hook.titles(),
        helper_processes(master),
        tail(&nginx.error_log(), 30)
    );
    let replacements: Vec<u32> = helper_processes(master)
        .into_iter()
        .filter(|p| *p != stopped.0)
        .collect();
    assert!(
        !replacements.is_empty(),
        "the CRITICAL came, but no replacement helper runs (the stopped one is {})",
        stopped.0
    );
    let mut restarts = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            restarts = helper_restarts(nginx.port);
            restarts >= Some(1.0)
        }),
        "nginx_status_alert_helper_restarts_total is {restarts:?}"
    );
    assert!(
        wait_until(
            Duration::from_secs(10).saturating_sub(stopped_at.elapsed()),
            || !process_alive(stopped.0)
        ),
        "the stopped helper {} is still there {:?} after SIGSTOP",
        stopped.0,
        stopped_at.elapsed()
    );
    assert_eq!(
        count_titles(&hook, "CRITICAL api:"),
        1,
        "{:?}",
        hook.titles()
    );
}

/// A helper that cannot be started (`RLIMIT_NPROC` of worker 0's user) is retried with backoff (1 s
/// doubling up to 60 s); meanwhile worker 0 evaluates; once a helper starts, what was evaluated is
/// delivered; every event is delivered or counted.
///
/// First at worker start (the limit set on the master, inherited by the workers of a reload), then
/// after the helper died (the limit set on worker 0, the helper killed). The failure this guards
/// against: no helper at worker start, never retried: alert_state stays 0 and nothing is delivered.
#[test]
fn a_helper_that_cannot_start_is_retried_and_loses_no_event() {
    require_module!();
    require!(can_run(&["prlimit", "setpriv"]));
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&block(&hook.url(), &["api1", "api2"]), NginxOpts::default());
    let master = nginx.pid();
    let helpers = || helper_processes(master);
    let log_tail = || tail(&nginx.error_log(), 30);
    let cannot_start = || {
        nginx
            .error_log()
            .to_lowercase()
            .matches("cannot start the helper")
            .count()
    };
    assert!(wait_until(Duration::from_secs(5), || helpers().len() == 1));

    // At worker start: the workers (nobody) of a reload inherit RLIMIT_NPROC 1 from the master
    // (root, exempt), so worker 0 cannot fork its helper.
    set_nproc_soft(master, Some(1));
    nginx.reload();
    set_nproc_soft(master, None);
    let w0 = worker_zero(&nginx);
    assert!(
        wait_until(Duration::from_secs(10), || helpers().is_empty()),
        "a helper runs although worker 0 ({w0}) cannot fork: {:?}\n{}",
        helpers(),
        log_tail()
    );
    assert!(
        wait_until(Duration::from_secs(5), || cannot_start() >= 1),
        "the error log does not say that the helper cannot start\n{}",
        log_tail()
    );
    incident(nginx.port, "api1", 20, || nginx.error_log());
    let (critical, state) = wait_critical_state(nginx.port, "api1", Duration::from_secs(3));
    assert!(
        critical,
        "alert_state of api1 is {state:?}, not 2, 3s into a 100% 5xx incident while worker 0 \
         ({w0}) cannot start its helper\n{}",
        log_tail()
    );
    assert!(
        !wait_until(Duration::from_secs(3), || !helpers().is_empty()),
        "a helper started while worker 0 cannot fork: {:?}",
        helpers()
    );
    set_nproc_soft(w0, None);
    let freed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(75), || !helpers().is_empty()),
        "no helper 75s after worker 0 ({w0}) could fork again: not retried\n{}",
        log_tail()
    );
    eprintln!(
        "a helper started {:?} after the limit was lifted",
        freed.elapsed()
    );
    assert!(
        wait_title(&hook, "CRITICAL api1:", Duration::from_secs(10)),
        "the CRITICAL evaluated while no helper ran was not delivered: {:?}\n{}",
        hook.titles(),
        log_tail()
    );

    // After a death: worker 0 cannot fork again, its helper is killed.
    let failures_before = cannot_start();
    set_nproc_soft(w0, Some(1));
    let dead = helpers();
    for h in &dead {
        assert!(send_signal(*h, "KILL"));
    }
    assert!(wait_until(Duration::from_secs(5), || dead
        .iter()
        .all(|h| !process_alive(*h))));
    incident(nginx.port, "api2", 20, || nginx.error_log());
    let (critical, state) = wait_critical_state(nginx.port, "api2", Duration::from_secs(3));
    assert!(
        critical,
        "alert_state of api2 is {state:?}, not 2, 3s into a 100% 5xx incident after the helper \
         was killed and cannot be restarted\n{}",
        log_tail()
    );
    assert!(
        wait_until(Duration::from_secs(10), || cannot_start() > failures_before),
        "no failed restart logged while worker 0 ({w0}) cannot fork\n{}",
        log_tail()
    );
    assert!(
        helpers().is_empty(),
        "a helper started while worker 0 cannot fork: {:?}",
        helpers()
    );
    set_nproc_soft(w0, None);
    let freed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(75), || !helpers().is_empty()),
        "no helper 75s after worker 0 ({w0}) could fork again\n{}",
        log_tail()
    );
    eprintln!(
        "a helper started {:?} after the limit was lifted",
        freed.elapsed()
    );
    assert!(
        wait_title(&hook, "CRITICAL api2:", Duration::from_secs(10)),
        "the CRITICAL evaluated while the helper was down was not delivered: {:?}\n{}",
        hook.titles(),
        log_tail()
    );

    // Every event the log shows was delivered or counted (one event per message here: each
    // incident is announced in a round of its own).
    let mut seen = (0, 0.0, 0);
    let balanced = wait_until(Duration::from_secs(15), || {
        let Some(m) = samples(nginx.port) else {
            return false;
        };
        seen = (
            event_lines(&nginx.error_log()).len(),
            settled(&m),
            hook.titles().len(),
        );
        seen.0 as f64 == seen.1 && seen.2 == seen.0
    });
    assert!(
        balanced,
        "events logged {}, messages sent+dropped+failed {}, embeds received {:?}\n\
         --- events ---\n{}",
        seen.0,
        seen.1,
        hook.titles(),
        event_lines(&nginx.error_log()).join("\n")
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
}

/// A probe target that flaps at every probe (fails=1 passes=1, interval=1s) while the helper is
/// SIGKILLed every 1.5 s for 15 s. Worker 0 must go on probing and evaluating (else the count below
/// is vacuous), and once things settle every DOWN/UP event the error log shows is received or
/// counted `dropped` or `failed`. The failure this guards against: probes and evaluation stop while
/// the helper is down (they run on its ticks), so hardly any event happens.
#[test]
fn helper_killed_in_a_loop_during_a_flapping_probe_loses_no_event() {
    require_module!();
    let hook = WebhookReceiver::start();
    let upstream = Arc::new(Upstream::start());
    upstream.set("/health", 200, "ok");
    let http = format!(
        r#"
    status_alert_webhook {};
    status_alert_interval 1s;
    server {{
        listen 127.0.0.1:{{PORT}};
        location / {{
            status_alert be;
            status_alert_probe {} interval=1s timeout=500ms fails=1 passes=1;
            return 200 "ok";
        }}
        location = /status_metrics {{ status_alert off; status_metrics; }}
    }}
"#,
        hook.url(),
        upstream.url("/health")
    );
    let nginx = Nginx::start(&http, NginxOpts::default());
    let master = nginx.pid();
    let target = upstream.url("/health");
    assert!(
        wait_until(Duration::from_secs(10), || probe_up(&nginx, "be", &target)
            == Some(1.0)),
        "the probe never reported the target up\n{}",
        tail(&nginx.error_log(), 30)
    );

    // Flapping: the target answers the opposite of its last answer at every probe.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (stop, upstream) = (stop.clone(), upstream.clone());
        thread::spawn(move || {
            let mut last = upstream.hits("/health");
            let mut healthy = true;
            let mut flips = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let hits = upstream.hits("/health");
                if hits > last {
                    last = hits;
                    healthy = !healthy;
                    upstream.set("/health", if healthy { 200 } else { 503 }, "flap");
                    flips += 1;
                }
                thread::sleep(Duration::from_millis(10));
            }
            upstream.set("/health", 200, "ok");
            flips
        })
    };

    let events_before = event_lines(&nginx.error_log()).len();
    let mut kills: Vec<Instant> = Vec::new();
    let loop_started = Instant::now();
    while loop_started.elapsed() < Duration::from_secs(15) {
        for h in helper_processes(master) {
            if send_signal(h, "KILL") {
                kills.push(Instant::now());
            }
        }
        thread::sleep(Duration::from_millis(1500));
    }
    let events_during = event_lines(&nginx.error_log()).len() - events_before;
    stop.store(true, Ordering::Relaxed);
    let probes = flapper.join().expect("flapper thread");
    eprintln!(
        "{} kills, {probes} probes of the flapping target, {events_during} events in 15s",
        kills.len()
    );
    assert!(
        events_during >= 6,
        "only {events_during} DOWN/UP events were evaluated in 15 s of a target flapping at every \
         1 s probe ({probes} probes answered) while the helper was killed {} times: worker 0 \
         stops probing or evaluating without a helper\n{}",
        kills.len(),
        tail(&nginx.error_log(), 40)
    );

    // Settle: the target stays up; wait until the counts stop changing.
    let snapshot = || {
        let m = samples(nginx.port)?;
        let titles = hook.titles();
        let received = titles
            .iter()
            .filter(|t| t.starts_with("DOWN be:") || t.starts_with("UP be:"))
            .count();
        Some((
            event_lines(&nginx.error_log()).len(),
            received,
            notifications(&m, "dropped"),
            notifications(&m, "failed"),
            !helper_processes(master).is_empty(),
        ))
    };
    let mut last = snapshot();
    let mut stable_since = Instant::now();
    let settle_deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < settle_deadline {
        thread::sleep(Duration::from_millis(500));
        let now = snapshot();
        if now != last {
            last = now;
            stable_since = Instant::now();
            continue;
        }
        let helper_up = last.is_some_and(|s| s.4);
        if helper_up && stable_since.elapsed() >= Duration::from_secs(5) {
            break;
        }
    }
    let (logged, received, dropped, failed, _) =
        last.unwrap_or_else(|| panic!("no metrics\n{}", tail(&nginx.error_log(), 40)));
    let accounted = received as f64 + dropped + failed;
    // A helper killed between the receiver's answer and its report counts a delivered message
    // as dropped too: allow one per kill that came right after a delivery.
    let deliveries: Vec<Instant> = hook.requests().iter().map(|r| r.at).collect();
    let double_counted = kills
        .iter()
        .filter(|k| {
            deliveries
                .iter()
                .any(|d| *d <= **k && k.duration_since(*d) < Duration::from_millis(200))
        })
        .count() as f64;
    let report = format!(
        "events logged {logged}, received {received}, dropped {dropped}, failed {failed} \
         ({} kills, {double_counted} right after a delivery)\n--- events ---\n{}\n\
         --- received ---\n{:?}\n--- error.log tail ---\n{}",
        kills.len(),
        event_lines(&nginx.error_log()).join("\n"),
        hook.titles(),
        tail(&nginx.error_log(), 40)
    );
    assert!(received <= logged, "more received than evaluated: {report}");
    assert!(
        accounted >= logged as f64,
        "events lost uncounted: {report}"
    );
    assert!(
        accounted - logged as f64 <= double_counted,
        "events counted twice: {report}"
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
}

// ---------------------------------------------------------------------------------------------
// 7. nginx -t and the state directory
// ---------------------------------------------------------------------------------------------

/// `nginx -t` refuses a `status_alert_state_path` that group or others can write, and says which; a
/// private one is accepted. The failure this guards against: the directive does not exist.
#[test]
fn nginx_t_refuses_a_state_directory_others_can_write() {
    require_module!();
    let base = temp_dir("watchman-state");
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let http = |state: &Path| {
        format!(
            "status_alert_state_path {};\nserver {{\n listen 127.0.0.1:{{PORT}};\n \
             location / {{ status_alert api; return 200; }}\n}}\n",
            state.display()
        )
    };
    let private = base.path().join("private");
    let (ok, out) = Nginx::test_config(&http(&private), NginxOpts::default());
    assert!(ok, "nginx -t refused a new private state directory:\n{out}");
    for mode in [0o777, 0o770, 0o703] {
        let dir = base.path().join(format!("open-{mode:o}"));
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        let (ok, out) = Nginx::test_config(&http(&dir), NginxOpts::default());
        assert!(
            !ok && out.contains(&dir.display().to_string()),
            "nginx -t with a state directory of mode {mode:o} must fail naming {}:\n{out}",
            dir.display()
        );
    }
}
