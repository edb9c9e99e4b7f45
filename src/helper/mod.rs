//! The helper process that runs webhook delivery outside nginx's workers.
//!
//! A thread anywhere in a process makes glibc leave its single-threaded fast paths (locked
//! malloc, cancellable syscalls): `ci/bench` measured +150 to +450 instructions per request in
//! the worker that hosted the delivery threads. So worker 0 forks one child at start, while it
//! is still single-threaded, and the delivery threads (one per destination) live there. They
//! talk over two non-blocking pipes in JSON lines: alert payloads go down, delivery outcomes and
//! the queue depth come back, plus a tick every [`TICK_MS`] that tells worker 0 the helper still
//! makes progress (worker 0 paces itself with its own timer: see `driver/process.rs`). The
//! helper never calls nginx (but for the `in_child` hook its parent passes, which sets the
//! process title).
//!
//! Lifecycle: the helper is double-forked, so it is no nginx process's child (nginx never
//! reaps it, logs it as unknown or has a pid to signal). It lives while its input pipe is open.
//! When worker 0 exits or dies, the pipe closes; the helper then delivers what it has queued
//! within [`SHUTDOWN_GRACE`] (an alarm bounds it hard), counts those outcomes in the zone and
//! logs them as nginx-style lines on stderr (nginx's error log), and exits. Worker 0 never waits
//! for it. When the helper dies, worker 0 counts what it took with it and starts another.

pub mod certificates;
pub mod outbox;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::notify::delivery::{DeliveryConfig, DeliveryThread, Outcome, OutcomeReport};
use crate::zone::{Zone, MAX_DESTINATIONS};
pub use outbox::Outbox;

/// Bytes of payloads waiting for the pipe before the oldest are dropped.
pub const MAX_PENDING: usize = 1 << 20;
/// How often the child checks for work when idle.
const CHILD_POLL_MS: i32 = 50;
/// How long queued alerts may still be delivered once worker 0 exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the helper says it makes progress, and how often worker 0's timer ticks.
pub const TICK_MS: u64 = 250;

/// A report from the helper process.
#[derive(Clone, Debug)]
pub enum Report {
    /// A delivery outcome with its log line.
    Outcome(OutcomeReport),
    /// The helper has taken every payload up to this id (see [`Outbox`]).
    Accepted(u64),
    /// Messages waiting in the delivery threads' queues.
    QueueDepth(u64),
    /// The helper is alive and making progress (sent every [`TICK_MS`]).
    Tick,
}

/// One report as a JSON line.
pub fn encode(report: &Report) -> String {
    let v = match report {
        Report::Outcome(o) => json!({"outcome": {
            "result": o.outcome.label(), "message": o.message, "is_error": o.is_error,
            "destination": o.destination}}),
        Report::Accepted(id) => json!({ "accepted": id }),
        Report::QueueDepth(n) => json!({ "queue_depth": n }),
        Report::Tick => json!({ "tick": true }),
    };
    let mut line = v.to_string();
    line.push('\n');
    line
}

/// The tick line, recognised without parsing: worker 0 reads four per second.
const TICK_LINE: &str = "{\"tick\":true}";

/// Parses a line written by [`encode`]; `None` for anything else.
pub fn decode(line: &str) -> Option<Report> {
    if line.trim_end() == TICK_LINE {
        return Some(Report::Tick);
    }
    let v: Value = serde_json::from_str(line).ok()?;
    if let Some(o) = v.get("outcome") {
        let label = o.get("result")?.as_str()?;
        let outcome = Outcome::ALL.into_iter().find(|r| r.label() == label)?;
        return Some(Report::Outcome(OutcomeReport {
            outcome,
            message: o.get("message")?.as_str()?.to_string(),
            is_error: o.get("is_error")?.as_bool()?,
            destination: o.get("destination")?.as_u64()? as usize,
        }));
    }
    if let Some(id) = v.get("accepted") {
        return id.as_u64().map(Report::Accepted);
    }
    if v.get("tick").is_some() {
        return Some(Report::Tick);
    }
    v.get("queue_depth")?.as_u64().map(Report::QueueDepth)
}

/// Splits complete lines off the front of `buf` and decodes them.
fn drain_lines(buf: &mut Vec<u8>) -> Vec<Report> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let line = &buf[start..start + nl];
        if let Some(r) = std::str::from_utf8(line).ok().and_then(decode) {
            out.push(r);
        }
        start += nl + 1;
    }
    buf.drain(..start);
    out
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Worker 0's handle on one helper process. The payloads themselves wait in worker 0's
/// [`Outbox`], which outlives helpers.
pub struct Helper {
    pid: libc::pid_t,
    to_child: File,
    from_child: File,
    inbox: Vec<u8>,
    /// Read buffer, allocated once: zeroing a fresh one per tick showed up in ci/bench.
    scratch: Vec<u8>,
    /// Payloads the helper took (acknowledged), per destination.
    accepted: [u64; MAX_DESTINATIONS],
    /// Delivery outcomes that settled a payload (sent, failed or dropped), per destination.
    settled: [u64; MAX_DESTINATIONS],
}

/// What the helper needs besides its work: where to count and log once worker 0 is gone.
pub struct HelperContext {
    /// Runs first thing in the helper (worker 0 passes one that sets the process title).
    pub in_child: fn(),
    /// The zone whose delivery counters the helper updates once worker 0 has gone.
    pub zone: Option<Zone>,
    /// The generation the helper registers under as a writer of that zone.
    pub generation: u64,
    /// nginx's error log level (NGX_LOG_*): what the helper logs itself once worker 0 is gone.
    pub log_level: usize,
    /// The certificate files nginx serves, re-read by a thread of the helper.
    pub certificates: Vec<certificates::WatchedFile>,
}

/// Blocks SIGCHLD until dropped, so that the short-lived middle process of the double fork is
/// reaped here and nginx's own SIGCHLD handler never sees an unknown child.
struct ChildSignalsBlocked {
    set: libc::sigset_t,
    old: libc::sigset_t,
}

impl ChildSignalsBlocked {
    fn new() -> ChildSignalsBlocked {
        // SAFETY: plain signal-mask calls on zero-initialised sets.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            let mut old: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
            ChildSignalsBlocked { set, old }
        }
    }

    /// Reaps `pid` and swallows the SIGCHLD its exit raised; returns its exit status.
    fn reap(&self, pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child; a zero timeout only polls for the pending signal.
        unsafe {
            while libc::waitpid(pid, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&self.set, core::ptr::null_mut(), &zero);
        }
        status
    }
}

impl Drop for ChildSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old, core::ptr::null_mut()) };
    }
}

impl Helper {
    /// Starts the helper process. Call only while the calling process has a single thread.
    ///
    /// The helper is double-forked: its parent exits at once and is reaped here, so the helper
    /// is nobody's child in nginx (no `unknown process` in the error log); the middle process
    /// passes the helper's pid back first, so that a helper that stops responding can be
    /// killed. It lives until its input pipe closes (worker 0 exits or dies), then delivers
    /// what is queued within [`SHUTDOWN_GRACE`], logging and counting those outcomes itself,
    /// and exits.
    pub fn start(destinations: Vec<DeliveryConfig>, ctx: HelperContext) -> io::Result<Helper> {
        let (down_r, down_w) = pipe()?;
        let (up_r, up_w) = pipe()?;
        let (pid_r, pid_w) = pipe()?;
        let blocked = ChildSignalsBlocked::new();
        // SAFETY: the caller guarantees a single-threaded process, so the children may run
        // arbitrary code (allocation included) after fork.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // The middle process: fork the helper, tell its pid, and leave.
                // SAFETY: as above; _exit skips the parent's exit handlers.
                unsafe {
                    match libc::fork() {
                        0 => {}
                        -1 => libc::_exit(1),
                        helper => {
                            let bytes = helper.to_ne_bytes();
                            let n = libc::write(pid_w.as_raw_fd(), bytes.as_ptr().cast(), 4);
                            libc::_exit(if n == 4 { 0 } else { 1 })
                        }
                    }
                }
                drop((down_w, up_r, pid_r, pid_w));
                // A panic must never unwind back into the copy of nginx's event loop.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    child_main(File::from(down_r), File::from(up_w), destinations, ctx)
                }));
                // SAFETY: leave without running the inherited process's exit handlers.
                unsafe { libc::_exit(70) }
            }
            middle => {
                let status = blocked.reap(middle);
                drop(blocked);
                drop((down_r, up_w, pid_w));
                if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    return Err(io::Error::other("the helper process could not be forked"));
                }
                // The middle process wrote before it exited: this read does not wait.
                let mut bytes = [0u8; 4];
                File::from(pid_r).read_exact(&mut bytes)?;
                set_nonblocking(down_w.as_raw_fd())?;
                set_nonblocking(up_r.as_raw_fd())?;
                Ok(Helper {
                    pid: libc::pid_t::from_ne_bytes(bytes),
                    to_child: File::from(down_w),
                    from_child: File::from(up_r),
                    inbox: Vec::new(),
                    scratch: vec![0; 16 * 1024],
                    accepted: [0; MAX_DESTINATIONS],
                    settled: [0; MAX_DESTINATIONS],
                })
            }
        }
    }

    /// The helper's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Writes as much of the waiting payloads as the pipe takes, without blocking.
    pub fn flush(&mut self, outbox: &mut Outbox) {
        outbox.write_to(&mut self.to_child);
    }

    /// Descriptor worker 0 watches for reports (registered with nginx's event loop).
    pub fn read_fd(&self) -> RawFd {
        self.from_child.as_raw_fd()
    }

    /// Reports received so far, whether anything was received, and whether the child has
    /// gone (end of file); never blocks. Acknowledged payloads leave `outbox`.
    pub fn poll(&mut self, outbox: &mut Outbox) -> (Vec<Report>, bool, bool) {
        let mut eof = false;
        let mut heard = false;
        loop {
            match self.from_child.read(&mut self.scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    heard = true;
                    self.inbox.extend_from_slice(&self.scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let reports = drain_lines(&mut self.inbox);
        for r in &reports {
            match r {
                Report::Outcome(o) if o.outcome != Outcome::Retried => {
                    self.settled[o.destination.min(MAX_DESTINATIONS - 1)] += 1;
                }
                Report::Accepted(id) => {
                    for d in outbox.acknowledge(*id) {
                        self.accepted[d.min(MAX_DESTINATIONS - 1)] += 1;
                    }
                }
                _ => {}
            }
        }
        self.flush(outbox);
        (reports, heard, eof)
    }

    /// Lets the helper go: it delivers what it has within its grace period, logging and
    /// counting the outcomes itself, and exits. Never waits. Returns the destinations of the
    /// payloads that never reached the helper whole, for the caller to count as dropped.
    pub fn close(mut self, outbox: &mut Outbox) -> Vec<usize> {
        self.flush(outbox);
        outbox.take_unwritten()
    }

    /// Retires a helper that lives on (its error log was reopened): it delivers, counts and
    /// logs what it took or has whole in its pipe, then exits; the rest stays in `outbox` for
    /// the next helper. Never waits.
    pub fn retire(mut self, outbox: &mut Outbox) {
        self.flush(outbox);
        outbox.hand_off_written();
    }

    /// Gives up on a helper that has died or that is being killed: returns the destinations
    /// of the payloads it had taken but not settled (one entry each), which are lost with it.
    /// What it had not taken stays in `outbox` for the next helper.
    pub fn abandon(self, outbox: &mut Outbox) -> Vec<usize> {
        outbox.rewind();
        (0..MAX_DESTINATIONS)
            .flat_map(|d| {
                let n = self.accepted[d].saturating_sub(self.settled[d]);
                std::iter::repeat(d).take(n as usize)
            })
            .collect()
    }

    /// Kills a helper that stopped responding (stopped, hung). Its pid cannot have been reused:
    /// its report pipe is still open, so it has not exited.
    pub fn kill(&self) {
        // SAFETY: kill of our own helper process by pid.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

/// Prepares the forked helper: default signal handling, no inherited descriptors but its pipes
/// and stderr (nginx points it at the error log; listening sockets stay with nginx), a
/// recognisable name.
fn child_setup(keep: [RawFd; 2]) {
    // SAFETY: plain syscalls on the child's own state.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"status-alert".as_ptr());
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGCHLD,
            libc::SIGALRM,
            libc::SIGIO,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, core::ptr::null_mut());
    }
    close_inherited(keep);
    // A terminal's Ctrl-C, Ctrl-\ or hang-up reaches nginx's whole foreground process group
    // (`daemon off`): nginx stops, and the helper must then finish and count its messages
    // like after any other stop, not die with them. It stays in nginx's session, so that
    // `ps` and the tests can tell whose helper it is.
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
        // SAFETY: setting a signal to be ignored has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// Closes every descriptor above stderr but `keep`: close_range(2) where the kernel has it
/// (5.9+), else what /proc/self/fd lists, else every number up to the descriptor limit.
fn close_inherited(mut keep: [RawFd; 2]) {
    keep.sort_unstable();
    let ranges = [
        (3, keep[0] - 1),
        (keep[0] + 1, keep[1] - 1),
        (keep[1] + 1, RawFd::MAX),
    ];
    for (first, last) in ranges.into_iter().filter(|(f, l)| f <= l) {
        // SAFETY: closes descriptors inherited from nginx, which the child never uses.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0) };
        if rc == 0 {
            continue;
        }
        let listed: Option<Vec<RawFd>> = std::fs::read_dir("/proc/self/fd").ok().map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        });
        // SAFETY: getdtablesize has no preconditions.
        let limit = unsafe { libc::getdtablesize() }.max(keep[1] + 1);
        let all = listed.unwrap_or_else(|| (0..limit).collect());
        for fd in all.into_iter().filter(|fd| (first..=last).contains(fd)) {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
}

fn child_main(
    mut down: File,
    mut up: File,
    destinations: Vec<DeliveryConfig>,
    ctx: HelperContext,
) -> ! {
    (ctx.in_child)();
    child_setup([down.as_raw_fd(), up.as_raw_fd()]);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    if let Some(zone) = &ctx.zone {
        // Keeps the zone mapped across reloads while this process may still count into it.
        zone.register_writer(pid, ctx.generation, crate::zone::process_alive);
    }
    let mut send = |r: &Report| up.write_all(encode(r).as_bytes()).is_ok();
    certificates::start(ctx.certificates);

    // One delivery thread per destination: each has its own queue and retry state.
    let threads: Vec<Option<DeliveryThread>> = destinations
        .into_iter()
        .enumerate()
        .map(|(i, cfg)| match DeliveryThread::start(cfg) {
            Ok(n) => Some(n),
            Err(e) => {
                send(&Report::Outcome(OutcomeReport {
                    outcome: Outcome::Failed,
                    message: format!("cannot start the delivery thread: {e}"),
                    is_error: true,
                    destination: i,
                }));
                None
            }
        })
        .collect();

    let tick = Duration::from_millis(TICK_MS);
    let mut next_tick = Instant::now();
    let mut inbox = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut last_depth = 0usize;
    loop {
        let mut pfd = libc::pollfd {
            fd: down.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, CHILD_POLL_MS) };
        let mut closed = false;
        if ready > 0 {
            match down.read(&mut chunk) {
                Ok(0) => closed = true,
                Ok(n) => inbox.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => closed = true,
            }
        }
        let mut alive = true;
        let mut taken = None;
        while let Some(nl) = inbox.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = inbox.drain(..=nl).collect();
            let Some((destination, id, body)) = outbox::parse_line(&line) else {
                continue;
            };
            taken = Some(id);
            let thread = threads.get(destination).and_then(Option::as_ref);
            match (thread, std::str::from_utf8(body)) {
                (Some(n), Ok(body)) => n.submit(body.to_string()),
                // Settled here, so that the payload is counted once like every other.
                _ => {
                    alive &= send(&Report::Outcome(OutcomeReport {
                        outcome: Outcome::Failed,
                        message: "alert dropped: its destination has no delivery thread".into(),
                        is_error: true,
                        destination,
                    }))
                }
            }
        }
        if let Some(id) = taken {
            alive &= send(&Report::Accepted(id));
        }
        if Instant::now() >= next_tick {
            next_tick += tick;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick;
            }
            alive &= send(&Report::Tick);
        }
        let mut depth = 0;
        for (i, n) in threads.iter().enumerate() {
            let Some(n) = n else { continue };
            for mut o in n.outcomes() {
                o.destination = i;
                alive &= send(&Report::Outcome(o));
            }
            depth += n.queue_depth();
        }
        if depth != last_depth {
            alive &= send(&Report::QueueDepth(depth as u64));
            last_depth = depth;
        }
        if closed || !alive {
            break;
        }
    }
    // Worker 0 has gone (exit, reload or crash): finish alone, bounded by the grace period
    // (and by an alarm, should a thread refuse to let go).
    // SAFETY: alarm has no preconditions; SIGALRM is at its default action (terminate).
    unsafe { libc::alarm(SHUTDOWN_GRACE.as_secs() as u32 + 3) };
    let orphan = Orphan {
        zone: ctx.zone,
        log_level: ctx.log_level,
        pid,
    };
    // Each thread gets the whole grace period, in parallel: shut them down together.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let stopping: Vec<_> = threads
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n)))
        .map(|(i, n)| {
            std::thread::spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                (i, n.shutdown(left))
            })
        })
        .collect();
    for handle in stopping {
        if let Ok((i, outcomes)) = handle.join() {
            for mut o in outcomes {
                o.destination = i;
                orphan.record(&o);
            }
        }
    }
    // SAFETY: leave without running the inherited process's exit handlers.
    unsafe { libc::_exit(0) }
}

/// Counts and logs delivery outcomes once worker 0 has gone: in the zone, and as nginx-style
/// lines on stderr, which nginx points at the error log.
struct Orphan {
    zone: Option<Zone>,
    log_level: usize,
    pid: u32,
}

impl Orphan {
    fn record(&self, o: &OutcomeReport) {
        if let Some(zone) = &self.zone {
            let i = Outcome::ALL
                .iter()
                .position(|r| *r == o.outcome)
                .unwrap_or(0);
            zone.count_delivery(o.destination, i);
        }
        // nginx's levels: 4 error, 5 warn, 6 notice (ngx_log.h).
        let (level, name) = match o.outcome {
            Outcome::Sent => (6, "notice"),
            _ if o.is_error => (4, "error"),
            _ => (5, "warn"),
        };
        if level > self.log_level {
            return;
        }
        let line = format!(
            "{} [{name}] {}#{}: status_alert: {} (helper process, after worker 0 exited)\n",
            log_time(),
            self.pid,
            self.pid,
            o.message
        );
        // SAFETY: writing a buffer to stderr; O_APPEND keeps lines whole in the log.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    }
}

/// Local time as nginx's error log writes it: `2026/11/30 05:10:10`.
fn log_time() -> String {
    // SAFETY: time and localtime_r write only into the given values.
    unsafe {
        let now = libc::time(core::ptr::null_mut());
        let mut tm: libc::tm = core::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let reports = [
            Report::Outcome(OutcomeReport {
                outcome: Outcome::Retried,
                message: "webhook answered 429,\nretrying \"soon\"".into(),
                is_error: false,
                destination: 3,
            }),
            Report::Accepted(17),
            Report::QueueDepth(7),
            Report::Tick,
        ];
        let mut buf: Vec<u8> = reports
            .iter()
            .flat_map(|r| encode(r).into_bytes())
            .collect();
        buf.extend_from_slice(b"{\"accepted\": 1");
        let back = drain_lines(&mut buf);
        assert_eq!(back.len(), 4);
        assert_eq!(
            buf, b"{\"accepted\": 1",
            "a partial line waits for the rest"
        );
        match &back[0] {
            Report::Outcome(o) => {
                assert_eq!(o.outcome, Outcome::Retried);
                assert_eq!(o.message, "webhook answered 429,\nretrying \"soon\"");
                assert_eq!(o.destination, 3);
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(back[1], Report::Accepted(17)));
        assert!(matches!(back[2], Report::QueueDepth(7)));
        assert!(matches!(back[3], Report::Tick));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let mut buf = b"not json\n{\"other\": 1}\n{\"queue_depth\": 2}\n".to_vec();
        let back = drain_lines(&mut buf);
        assert_eq!(back.len(), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn inherited_descriptors_are_closed_but_the_kept_ones() {
        // In a forked child, so the test process keeps its own descriptors.
        let (a, b) = pipe().unwrap();
        let (c, d) = pipe().unwrap();
        // SAFETY: the child only makes syscalls and exits.
        match unsafe { libc::fork() } {
            0 => {
                close_inherited([b.as_raw_fd(), c.as_raw_fd()]);
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                let open = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
                let ok = open(b.as_raw_fd())
                    && open(c.as_raw_fd())
                    && !open(a.as_raw_fd())
                    && !open(d.as_raw_fd())
                    && open(2);
                // SAFETY: leave the forked test child at once.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
