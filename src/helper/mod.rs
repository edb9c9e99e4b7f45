//! The helper process that runs webhook delivery outside nginx's workers, and paces worker 0's
//! evaluation.
//!
//! A thread anywhere in a process makes glibc leave its single-threaded fast paths (locked
//! malloc, cancellable syscalls): `ci/bench` measured +150 to +450 instructions per request in
//! the worker that hosted the delivery threads. So worker 0 forks one child at start, while it
//! is still single-threaded, and the delivery threads (one per destination) live there. They
//! talk over two non-blocking pipes in JSON lines: alert payloads go down, delivery outcomes and
//! the queue depth come back, plus a tick every [`TICK_MS`] that wakes worker 0 through nginx's
//! event loop for evaluation. (Probes run on worker 0's event loop itself: see `probe::net`.) The helper never calls nginx (but for the `in_child`
//! hook its parent passes, which sets the process title).
//!
//! Lifecycle: the helper is double-forked, so it is no nginx process's child (nginx never
//! reaps it, logs it as unknown or has a pid to signal). It lives while its input pipe is open.
//! When worker 0 exits or dies, the pipe closes; the helper then delivers what it has queued
//! within [`SHUTDOWN_GRACE`] (an alarm bounds it hard), counts those outcomes in the zone and
//! logs them as nginx-style lines on stderr (nginx's error log), and exits. Worker 0 never waits
//! for it. When the helper dies, worker 0 counts what it took with it and starts another.

#[cfg(not(test))]
pub(crate) mod evaluator;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::notify::delivery::{DeliveryResult, Notifier, NotifierConfig, Outcome};
use crate::probe::{ProbeResult, Reason};
use crate::zone::{Zone, MAX_DESTINATIONS};

/// Bytes of payloads waiting for the pipe before the oldest are dropped.
const MAX_PENDING: usize = 1 << 20;
/// How often the child checks for work when idle.
const CHILD_POLL_MS: i32 = 50;
/// How long queued alerts may still be delivered once worker 0 exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the child wakes worker 0 to evaluate and collect reports.
pub const TICK_MS: u64 = 250;

/// A report from the helper process.
#[derive(Clone, Debug)]
pub enum Report {
    /// A delivery outcome.
    Outcome(Outcome),
    /// A probe result.
    Probe(ProbeResult),
    /// Messages waiting in the notifier's queue.
    QueueDepth(u64),
    /// Time for worker 0 to evaluate (sent every [`TICK_MS`]).
    Tick,
}

/// One report as a JSON line.
pub fn encode(report: &Report) -> String {
    let v = match report {
        Report::Outcome(o) => json!({"outcome": {
            "result": o.result.label(), "message": o.message, "is_error": o.is_error,
            "destination": o.destination}}),
        Report::Probe(p) => json!({"probe": {
            "index": p.index,
            "failure": p.failure.map(|r| r as u8),
            "status": p.status,
            "duration_us": p.duration.as_micros() as u64}}),
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
        let result = DeliveryResult::ALL
            .into_iter()
            .find(|r| r.label() == label)?;
        return Some(Report::Outcome(Outcome {
            result,
            message: o.get("message")?.as_str()?.to_string(),
            is_error: o.get("is_error")?.as_bool()?,
            destination: o.get("destination")?.as_u64()? as usize,
        }));
    }
    if let Some(p) = v.get("probe") {
        let failure = match p.get("failure")? {
            Value::Null => None,
            f => Some(Reason::from_index(u32::try_from(f.as_u64()?).ok()?)?),
        };
        return Some(Report::Probe(ProbeResult {
            index: p.get("index")?.as_u64()? as usize,
            failure,
            status: p.get("status")?.as_u64().map(|s| s as u16),
            duration: Duration::from_micros(p.get("duration_us")?.as_u64()?),
        }));
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

/// Worker 0's handle on the helper process.
pub struct Helper {
    to_child: Option<File>,
    from_child: File,
    pending: Outbox,
    inbox: Vec<u8>,
    /// Read buffer, allocated once: zeroing a fresh one per tick showed up in ci/bench.
    scratch: Vec<u8>,
    /// Payloads written whole into the pipe, per destination.
    handed_over: [u64; MAX_DESTINATIONS],
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
    /// is nobody's child in nginx (no `unknown process` in the error log, no pid to signal).
    /// It lives until its input pipe closes (worker 0 exits or dies), then delivers what is
    /// queued within [`SHUTDOWN_GRACE`], logging and counting those outcomes itself, and exits.
    pub fn start(destinations: Vec<NotifierConfig>, ctx: HelperContext) -> io::Result<Helper> {
        let (down_r, down_w) = pipe()?;
        let (up_r, up_w) = pipe()?;
        let blocked = ChildSignalsBlocked::new();
        // SAFETY: the caller guarantees a single-threaded process, so the children may run
        // arbitrary code (allocation included) after fork.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // The middle process: fork the helper and leave.
                // SAFETY: as above; _exit skips the parent's exit handlers.
                unsafe {
                    match libc::fork() {
                        0 => {}
                        -1 => libc::_exit(1),
                        _ => libc::_exit(0),
                    }
                }
                drop(down_w);
                drop(up_r);
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
                drop(down_r);
                drop(up_w);
                if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    return Err(io::Error::other("the helper process could not be forked"));
                }
                set_nonblocking(down_w.as_raw_fd())?;
                set_nonblocking(up_r.as_raw_fd())?;
                Ok(Helper {
                    to_child: Some(File::from(down_w)),
                    from_child: File::from(up_r),
                    pending: Outbox::default(),
                    inbox: Vec::new(),
                    scratch: vec![0; 16 * 1024],
                    handed_over: [0; MAX_DESTINATIONS],
                    settled: [0; MAX_DESTINATIONS],
                })
            }
        }
    }

    /// Takes over what a helper that died had not yet been handed: payloads still waiting in
    /// its outbox go to this one (one it had partly received is lost, and counted by the
    /// caller through [`Helper::abandon`]).
    pub fn adopt(&mut self, mut pending: Outbox) {
        pending.drop_partial_head();
        self.pending = pending;
        self.flush();
    }

    /// Queues a payload for destination `destination`; returns the destinations of the
    /// payloads dropped to make room for it (the oldest waiting ones; or this one, which
    /// happens only if it alone is over the limit).
    pub fn submit(&mut self, destination: usize, body: &str) -> Vec<usize> {
        let dropped = self
            .pending
            .push(&format!("{destination}\t{body}"), MAX_PENDING);
        self.flush();
        dropped
    }

    /// Writes as much of the pending payloads as the pipe takes, without blocking.
    fn flush(&mut self) {
        let Some(pipe) = self.to_child.as_mut() else {
            return;
        };
        while !self.pending.is_empty() {
            match pipe.write(self.pending.bytes()) {
                Ok(0) => break,
                Ok(n) => {
                    for d in self.pending.written(n) {
                        self.handed_over[d.min(MAX_DESTINATIONS - 1)] += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// Descriptor worker 0 watches for reports (registered with nginx's event loop).
    pub fn read_fd(&self) -> RawFd {
        self.from_child.as_raw_fd()
    }

    /// Reports received so far, and whether the child has gone (end of file); never blocks.
    pub fn poll(&mut self) -> (Vec<Report>, bool) {
        self.flush();
        let mut eof = false;
        loop {
            match self.from_child.read(&mut self.scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.inbox.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let reports = drain_lines(&mut self.inbox);
        for r in &reports {
            if let Report::Outcome(o) = r {
                if o.result != DeliveryResult::Retried {
                    self.settled[o.destination.min(MAX_DESTINATIONS - 1)] += 1;
                }
            }
        }
        (reports, eof)
    }

    /// Lets the helper go: it delivers what it has within its grace period, logging and
    /// counting the outcomes itself, and exits. Never waits. Returns the report descriptor
    /// for the caller to close (nginx's event loop may own it) and how many payloads never
    /// reached the helper (the pipe was full), for the caller to count as dropped.
    pub fn close(mut self) -> (RawFd, Vec<usize>) {
        self.flush();
        let unsent = self.pending.destinations();
        (self.from_child.into_raw_fd(), unsent)
    }

    /// Gives up on a helper that has died: returns the report descriptor for the caller to
    /// close (nginx's event loop owns it), the payloads it was never handed, and the
    /// destinations of those it had been handed but took with it unsettled (one entry each).
    pub fn abandon(self) -> (RawFd, Outbox, Vec<usize>) {
        let mut lost: Vec<usize> = (0..MAX_DESTINATIONS)
            .flat_map(|d| {
                let n = self.handed_over[d].saturating_sub(self.settled[d]);
                std::iter::repeat(d).take(n as usize)
            })
            .collect();
        if self.pending.head_started {
            lost.push(self.pending.head_destination);
        }
        (self.from_child.into_raw_fd(), self.pending, lost)
    }
}

/// Payloads waiting for the pipe to the helper, one JSON line each. Only the first may have
/// been partly written, and it is never dropped: that would corrupt the stream.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    head_started: bool,
    /// Destination of the partly written first payload.
    head_destination: usize,
}

/// The destination a payload line starts with (`3\t{...}`); 0 for a line without one.
fn line_destination(line: &[u8]) -> usize {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    match line.get(digits) {
        Some(b'\t') => std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

impl Outbox {
    /// Appends a payload, dropping the oldest whole ones while over `limit` bytes; returns the
    /// destinations of those dropped (the new one counts if it cannot fit even then).
    fn push(&mut self, body: &str, limit: usize) -> Vec<usize> {
        // A partly written first payload is never dropped.
        let keep = if self.head_started {
            self.buf
                .iter()
                .position(|b| *b == b'\n')
                .map_or(self.buf.len(), |i| i + 1)
        } else {
            0
        };
        if keep + body.len() + 1 > limit {
            return vec![line_destination(body.as_bytes())];
        }
        let mut dropped = Vec::new();
        while self.buf.len() + body.len() + 1 > limit {
            // Every payload ends with a newline, and the check above leaves one to drop.
            let Some(end) = self.buf[keep..].iter().position(|b| *b == b'\n') else {
                break;
            };
            dropped.push(line_destination(&self.buf[keep..]));
            self.buf.drain(keep..=keep + end);
        }
        self.buf.extend_from_slice(body.as_bytes());
        self.buf.push(b'\n');
        dropped
    }

    /// The first `n` bytes went into the pipe; returns the destinations of the payloads that
    /// are now complete.
    fn written(&mut self, n: usize) -> Vec<usize> {
        let mut done = Vec::new();
        let mut start = 0;
        for (i, b) in self.buf[..n].iter().enumerate() {
            if *b == b'\n' {
                done.push(if start == 0 && self.head_started {
                    self.head_destination
                } else {
                    line_destination(&self.buf[start..])
                });
                start = i + 1;
            }
        }
        let partial = self.buf[n - 1] != b'\n';
        if partial && !(start == 0 && self.head_started) {
            self.head_destination = line_destination(&self.buf[start..]);
        }
        self.head_started = partial;
        self.buf.drain(..n);
        done
    }

    /// Destinations of the payloads not completely written, one entry each.
    fn destinations(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, b) in self.buf.iter().enumerate() {
            if *b == b'\n' {
                out.push(if start == 0 && self.head_started {
                    self.head_destination
                } else {
                    line_destination(&self.buf[start..])
                });
                start = i + 1;
            }
        }
        out
    }

    /// Appends the payloads of `other` (its partly written head, if any, is dropped).
    pub fn append(&mut self, mut other: Outbox) {
        other.drop_partial_head();
        self.buf.extend_from_slice(&other.buf);
    }

    /// Forgets a partly written first payload (its pipe is gone).
    fn drop_partial_head(&mut self) {
        if self.head_started {
            let end = self
                .buf
                .iter()
                .position(|b| *b == b'\n')
                .map_or(self.buf.len(), |i| i + 1);
            self.buf.drain(..end);
            self.head_started = false;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Payloads not completely written.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buf.iter().filter(|b| **b == b'\n').count()
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
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2 && !keep.contains(fd))
            .collect();
        for fd in fds {
            // SAFETY: closing descriptors inherited from nginx, which the child never uses.
            unsafe { libc::close(fd) };
        }
    }
}

fn child_main(
    mut down: File,
    mut up: File,
    destinations: Vec<NotifierConfig>,
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

    // One delivery thread per destination: each has its own queue and retry state.
    let notifiers: Vec<Option<Notifier>> = destinations
        .into_iter()
        .enumerate()
        .map(|(i, cfg)| match Notifier::start(cfg) {
            Ok(n) => Some(n),
            Err(e) => {
                send(&Report::Outcome(Outcome {
                    result: DeliveryResult::Failed,
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
        while let Some(nl) = inbox.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = inbox.drain(..=nl).collect();
            let destination = line_destination(&line);
            let body = line.splitn(2, |b| *b == b'\t').nth(1).unwrap_or_default();
            let notifier = notifiers.get(destination).and_then(Option::as_ref);
            if let (Some(n), Ok(body)) = (notifier, std::str::from_utf8(body)) {
                n.submit(body.trim_end().to_string());
            }
        }
        let mut alive = true;
        if Instant::now() >= next_tick {
            next_tick += tick;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick;
            }
            alive &= send(&Report::Tick);
        }
        let mut depth = 0;
        for (i, n) in notifiers.iter().enumerate() {
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
    let stopping: Vec<_> = notifiers
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
    fn record(&self, o: &Outcome) {
        if let Some(zone) = &self.zone {
            let i = DeliveryResult::ALL
                .iter()
                .position(|r| *r == o.result)
                .unwrap_or(0);
            zone.count_delivery(o.destination, i);
        }
        // nginx's levels: 4 error, 5 warn, 6 notice (ngx_log.h).
        let (level, name) = match o.result {
            DeliveryResult::Sent => (6, "notice"),
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
    fn outbox_drops_the_oldest_whole_payloads_and_never_a_partly_written_one() {
        let mut o = Outbox::default();
        assert_eq!(o.push("aaaa", 16).len(), 0);
        assert_eq!(o.push("bbbb", 16).len(), 0);
        assert_eq!(o.push("cccc", 16).len(), 0);
        assert_eq!(o.len(), 3);
        // 15 bytes waiting: a fourth needs room, so "aaaa" goes.
        assert_eq!(o.push("dddd", 16).len(), 1);
        assert_eq!(o.bytes(), b"bbbb\ncccc\ndddd\n");
        // "bb" went into the pipe: "bbbb" must stay whole, so "cccc" goes instead.
        o.written(2);
        assert_eq!(o.push("eeee", 16).len(), 1);
        assert_eq!(o.bytes(), b"bb\ndddd\neeee\n");
        // The rest of "bbbb" out: nothing is partly written any more.
        o.written(3);
        assert_eq!(o.push("ffff", 16).len(), 0);
        assert_eq!(o.push("gggg", 16).len(), 1);
        assert_eq!(o.bytes(), b"eeee\nffff\ngggg\n");
        // Too big even alone: dropped itself, nothing else lost.
        assert_eq!(o.push(&"x".repeat(16), 16).len(), 1);
        assert_eq!(o.bytes(), b"eeee\nffff\ngggg\n");
        // Partly written "ffff": a payload that cannot fit next to it is dropped, nothing else.
        o.written(7);
        assert_eq!(o.push("0123456789abc", 16).len(), 1);
        assert_eq!(o.bytes(), b"ff\ngggg\n");
        // One that fits once "gggg" is gone.
        assert_eq!(o.push("0123456789a", 16).len(), 1);
        assert_eq!(o.bytes(), b"ff\n0123456789a\n");
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn outbox_knows_each_payloads_destination() {
        let mut o = Outbox::default();
        o.push("2\t{\"a\":1}", 64);
        o.push("0\t{}", 64);
        o.push("5\t{\"b\":2}", 64);
        assert_eq!(o.destinations(), vec![2, 0, 5]);
        // The first and half of the second went out.
        assert_eq!(o.written(10), vec![2]);
        assert_eq!(o.destinations(), vec![0, 5]);
        assert_eq!(o.written(2), Vec::<usize>::new(), "partly written");
        assert_eq!(o.destinations(), vec![0, 5]);
        assert_eq!(o.written(3), vec![0]);
        assert_eq!(o.push(&format!("7\t{}", "x".repeat(60)), 64), vec![5]);
        assert_eq!(o.destinations(), vec![7]);
    }

    #[test]
    fn reports_round_trip() {
        let reports = [
            Report::Outcome(Outcome {
                result: DeliveryResult::Retried,
                message: "webhook answered 429,\nretrying \"soon\"".into(),
                is_error: false,
                destination: 3,
            }),
            Report::Probe(ProbeResult {
                index: 3,
                failure: Some(Reason::Dns),
                status: None,
                duration: Duration::from_micros(1234),
            }),
            Report::Probe(ProbeResult {
                index: 0,
                failure: None,
                status: Some(204),
                duration: Duration::from_micros(5),
            }),
            Report::QueueDepth(7),
            Report::Tick,
        ];
        let mut buf: Vec<u8> = reports
            .iter()
            .flat_map(|r| encode(r).into_bytes())
            .collect();
        buf.extend_from_slice(b"{\"probe\": {\"index\"");
        let back = drain_lines(&mut buf);
        assert_eq!(back.len(), 5);
        assert_eq!(
            buf, b"{\"probe\": {\"index\"",
            "a partial line waits for the rest"
        );
        match &back[0] {
            Report::Outcome(o) => {
                assert_eq!(o.result, DeliveryResult::Retried);
                assert_eq!(o.message, "webhook answered 429,\nretrying \"soon\"");
            }
            r => panic!("{r:?}"),
        }
        match (&back[1], &back[2]) {
            (Report::Probe(a), Report::Probe(b)) => {
                assert_eq!((a.index, a.failure, a.status), (3, Some(Reason::Dns), None));
                assert_eq!(a.duration, Duration::from_micros(1234));
                assert_eq!((b.failure, b.status), (None, Some(204)));
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(back[3], Report::QueueDepth(7)));
        assert!(matches!(back[4], Report::Tick));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let mut buf = b"not json\n{\"other\": 1}\n{\"queue_depth\": 2}\n".to_vec();
        let back = drain_lines(&mut buf);
        assert_eq!(back.len(), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn reason_values_follow_their_order() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
            assert_eq!(Reason::from_index(i as u32), Some(*reason));
        }
    }
}
