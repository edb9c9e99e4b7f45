//! Probes on nginx's event loop: a non-blocking connect with `ngx_event_connect_peer`, TLS with
//! nginx's OpenSSL, and the HTTP exchange of `probe/http.rs`, all on nginx connections in the
//! evaluating process. No thread per target.
//!
//! Probes start on the evaluating process's tick ([`run_due`], every `helper::TICK_MS`), each
//! target on its own fixed schedule of `interval=` (a start is at most one tick late, and the
//! lateness never adds up). An idle target holds no timer: nginx's timer tree, which every
//! request's timers are inserted into, only grows while a probe is in flight. A probe is bounded
//! by one deadline timer of `timeout=` that covers every step (connect, handshake, request,
//! status line); what it finds is queued as a [`ProbeResult`] and taken by the worker on its next
//! tick, which applies it only while it holds the evaluation lease. The deadline is
//! `cancelable`, so a graceful shutdown never waits for a probe, and nothing starts once nginx is
//! exiting.
//!
//! A URL probe's host name is looked up with nginx's `resolver` before every probe when the
//! probe's level has one (`ngx_resolve_name` on this event loop, inside the probe's deadline);
//! otherwise addresses are resolved once, when the configuration is loaded (see [`prepare`]).
//!
//! Files: this one schedules the targets and runs a probe's connection (connect, TLS, request,
//! status line); `resolve` looks a host name up with nginx's resolver; `prepare` readies the
//! targets once the configuration is read.

mod prepare;
mod resolve;
// TLS on nginx's OpenSSL, which nginx has only when built with SSL (`NGX_SSL`); without it,
// `nginx -t` refuses https probes and no_tls.rs stands in.
#[cfg(ngx_feature = "ssl")]
mod tls;
#[cfg(not(ngx_feature = "ssl"))]
#[path = "net/no_tls.rs"]
mod tls;

use core::cell::{Cell, RefCell};
use core::ffi::c_int;
use core::ptr;
use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_create_pool, ngx_destroy_pool, ngx_event_t,
    ngx_int_t, ngx_log_t, ngx_msec_t, ngx_peer_connection_t, ngx_pool_t, ngx_resolver_ctx_t,
    ngx_str_t, NGX_AGAIN, NGX_DECLINED, NGX_OK,
};

use crate::conf::probe_spec::{ProbeSpec, Scheme};
use crate::conf::{ProbeConf, ProbeResolver};
use crate::probe::http::{self as probe_http, ResponseReader};
use crate::probe::ProbeResult;
use crate::vocab::reason::Reason;
pub use prepare::prepare;
use resolve::Lookup;

/// The first probe of each target starts within this much of process start (spread evenly).
const MAX_START_DELAY_MS: u64 = 1000;
/// Results kept for the worker's next tick; older ones are dropped beyond this.
const MAX_QUEUED_RESULTS: usize = 4096;
/// Bytes read per `recv`.
const READ_CHUNK: usize = 4096;

thread_local! {
    // nginx runs its event loop on one thread; probes live there.
    static PROBES: RefCell<Option<Probes>> = const { RefCell::new(None) };
    static RESULTS: RefCell<Vec<ProbeResult>> = const { RefCell::new(Vec::new()) };
    // The target inside `ngx_resolve_name` right now: nginx calls the handler from there when
    // it has the answer cached, and the handler must not make a second `&mut` of that target.
    static RESOLVING: Cell<*const Target> = const { Cell::new(ptr::null()) };
    // What the handler found for RESOLVING, taken when `ngx_resolve_name` returns.
    static RESOLVED_NOW: Cell<Option<Lookup>> = const { Cell::new(None) };
}

/// Every target of this process, and what they share.
struct Probes {
    /// Boxed: timers and connections point at their target.
    #[allow(clippy::vec_box)]
    targets: Vec<Box<Target>>,
    /// Time 0 of the targets' schedules.
    epoch: Instant,
    /// Keeps the TLS context alive (it lives as long as the process).
    _ssl: Option<Box<tls::Context>>,
    /// Keeps the probe connections' log alive.
    _log: Box<ngx_log_t>,
}

/// Where one probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Idle,
    Resolving,
    Connecting,
    // Without SSL no probe gets this far (no_tls.rs).
    #[cfg_attr(not(ngx_feature = "ssl"), allow(dead_code))]
    Handshake,
    Writing,
    Reading,
}

/// One target: its configuration, timers and the connection of the probe in flight.
struct Target {
    index: usize,
    spec: ProbeSpec,
    addrs: Vec<SocketAddr>,
    /// nginx's resolver, when the host name is looked up before every probe.
    resolver: Option<ProbeResolver>,
    /// The host name nginx's resolver reads (and lowercases in place) during a lookup.
    host: Vec<u8>,
    /// The lookup in flight (`Step::Resolving`), to be ended by `ngx_resolve_name_done`.
    rctx: *mut ngx_resolver_ctx_t,
    /// Index in `addrs` of the address being tried.
    addr_i: usize,
    sockaddr: libc::sockaddr_storage,
    socklen: libc::socklen_t,
    /// The address as text, for nginx's log lines (`pc.name` points at it).
    peer_name: Vec<u8>,
    peer_name_str: ngx_str_t,
    /// Host name for SNI and certificate checks (`None` for an IP address).
    #[cfg_attr(not(ngx_feature = "ssl"), allow(dead_code))]
    sni: Option<CString>,
    request: Vec<u8>,
    /// When the next probe is due, in ms since [`Probes::epoch`].
    due_ms: u64,
    deadline: Box<ngx_event_t>,
    pc: ngx_peer_connection_t,
    conn: *mut ngx_connection_t,
    pool: *mut ngx_pool_t,
    #[cfg_attr(not(ngx_feature = "ssl"), allow(dead_code))]
    ssl: *mut tls::Context,
    log: *mut ngx_log_t,
    step: Step,
    written: usize,
    reader: ResponseReader,
    /// The compiled `body_regex=` (`ngx_regex_t`, null: none), from the configuration.
    body_regex: *const core::ffi::c_void,
    /// The target's slot in the zone (its certificate cell).
    slot: *const crate::zone::ProbeSlot,
    started: Instant,
    /// For a slot of a `server ... resolve` pool, the probe without its address: the target is
    /// the address the slot holds ([`follow_slots`]), none while it holds none.
    template: Option<ProbeSpec>,
}

fn exiting() -> bool {
    // SAFETY: plain reads of nginx's process-wide flags, set by signal handlers.
    unsafe {
        nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_terminate != 0 || nginx_sys::ngx_quit != 0
    }
}

/// Sets up every target; from now on [`run_due`] starts their probes on this process's event
/// loop.
pub fn start(probes: &[ProbeConf], log: *mut ngx_log_t) {
    if probes.is_empty() {
        return;
    }
    // A copy of the cycle's log that leaves out nginx's own per-connection messages below
    // `alert` (`connect() failed`, `SSL_do_handshake() failed`): a failing target would fill
    // the error log every interval; its reasons are in the metrics and in the DOWN message.
    // SAFETY: log is the cycle's valid log; ngx_log_t is plain data.
    let mut plog: Box<ngx_log_t> = Box::new(unsafe { *log });
    plog.log_level = plog.log_level.min(nginx_sys::NGX_LOG_ALERT as _);
    plog.action = c"probing a status_alert target".as_ptr().cast_mut().cast();
    let log: *mut ngx_log_t = &mut *plog;

    let mut ssl = None;
    if probes.iter().any(|p| p.spec.target.scheme == Scheme::Https) {
        match tls::context(log) {
            Some(ctx) => ssl = Some(ctx),
            None => error!(
                log,
                "status_alert: cannot create the TLS context, https probes fail as \"tls\""
            ),
        }
    }
    let ssl_ptr = ssl
        .as_mut()
        .map_or(ptr::null_mut(), |s: &mut Box<tls::Context>| {
            &mut **s as *mut _
        });
    let count = probes.len() as u64;
    let mut targets = Vec::with_capacity(probes.len());
    for (index, p) in probes.iter().enumerate() {
        let mut t = Box::new(Target::new(index, p, ssl_ptr, log));
        let data: *mut Target = &mut *t;
        let ev = &mut t.deadline;
        ev.data = data.cast();
        ev.handler = Some(on_deadline);
        ev.log = log;
        // Never holds up a graceful shutdown.
        ev.set_cancelable(1);
        t.due_ms = MAX_START_DELAY_MS * index as u64 / count;
        targets.push(t);
    }
    PROBES.with(|p| {
        *p.borrow_mut() = Some(Probes {
            targets,
            epoch: Instant::now(),
            _ssl: ssl,
            _log: plog,
        })
    });
}

/// Stops every probe: timers deleted, connections closed. Results not yet taken are dropped.
pub fn stop() {
    let Some(mut probes) = PROBES.with(|p| p.borrow_mut().take()) else {
        return;
    };
    for t in &mut probes.targets {
        // Connection closed and deadline deleted: nothing in nginx points at the target after.
        t.end();
    }
    RESULTS.with(|r| r.borrow_mut().clear());
}

/// Starts the probes that are due (called on every tick of the evaluating process), unless
/// nginx is exiting.
pub fn run_due() {
    if exiting() {
        return;
    }
    // Collected first, so that nothing a start calls into (nginx's connect, and its resolver,
    // which may call back at once with a cached answer) runs under the PROBES borrow.
    let due: Vec<*mut Target> = PROBES.with(|p| {
        let mut p = p.borrow_mut();
        let Some(probes) = p.as_mut() else {
            return Vec::new();
        };
        let now = probes.epoch.elapsed().as_millis() as u64;
        probes
            .targets
            .iter_mut()
            // A probe still in flight (it has `timeout=` < `interval=` to end) starts again on
            // the first tick after it ended: never cut short by the next one.
            .filter(|t| t.due_ms <= now && t.step == Step::Idle)
            // A pool's slot that holds no address has nothing to probe.
            .filter(|t| t.template.is_none() || !t.addrs.is_empty())
            .map(|t| {
                t.due_ms = crate::probe::next_due_ms(t.due_ms, now, t.spec.interval_ms);
                &mut **t as *mut Target
            })
            .collect()
    });
    for t in due {
        with_target(t, Target::begin);
    }
}

/// Points the targets of `server ... resolve` pools at the addresses their slots hold now
/// (the evaluator gives them out as nginx re-resolves, see `probe::resolve_pool`). A target
/// whose address changed drops its probe in flight and its results not yet taken, which were
/// of the old address, and is probed at the new one on this tick.
pub fn follow_slots() {
    // Collected first, like in run_due: ending a probe calls into nginx.
    let changed: Vec<(*mut Target, Option<SocketAddr>, u64)> = PROBES.with(|p| {
        let mut p = p.borrow_mut();
        let Some(probes) = p.as_mut() else {
            return Vec::new();
        };
        let now = probes.epoch.elapsed().as_millis() as u64;
        probes
            .targets
            .iter_mut()
            .filter(|t| t.template.is_some())
            .filter_map(|t| {
                // SAFETY: slots point into the mapped zone.
                let held = unsafe { t.slot.as_ref() }.and_then(|s| s.address.get());
                (held != t.addrs.first().copied()).then_some((&mut **t as *mut Target, held, now))
            })
            .collect()
    });
    if changed.is_empty() {
        return;
    }
    let mut indexes = Vec::with_capacity(changed.len());
    for (t, addr, now) in changed {
        with_target(t, |t| {
            indexes.push(t.index);
            t.retarget(addr, now);
        });
    }
    RESULTS.with(|r| r.borrow_mut().retain(|x| !indexes.contains(&x.index)));
}

/// Results since the last call, oldest first.
pub fn take_results() -> Vec<ProbeResult> {
    RESULTS.with(|r| core::mem::take(&mut *r.borrow_mut()))
}

fn push_result(r: ProbeResult) {
    RESULTS.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() >= MAX_QUEUED_RESULTS {
            q.remove(0);
        }
        q.push(r);
    });
}

impl Target {
    fn new(index: usize, p: &ProbeConf, ssl: *mut tls::Context, log: *mut ngx_log_t) -> Target {
        let spec = p.spec.clone();
        let sni = match spec.target.host.parse::<IpAddr>() {
            Ok(_) => None,
            Err(_) => CString::new(spec.target.host.clone()).ok(),
        };
        let request = match spec.target.scheme {
            Scheme::Tcp => Vec::new(),
            _ => probe_http::request(&spec),
        };
        Target {
            index,
            addrs: p.addrs.clone(),
            resolver: p.resolver,
            host: spec.target.host.clone().into_bytes(),
            rctx: ptr::null_mut(),
            addr_i: 0,
            // SAFETY: all-zero is a valid sockaddr_storage; filled before each connect.
            sockaddr: unsafe { core::mem::zeroed() },
            socklen: 0,
            peer_name: Vec::new(),
            peer_name_str: ngx_str_t::default(),
            sni,
            request,
            due_ms: 0,
            // SAFETY: all-zero is an idle event; the fields nginx reads are set in start().
            deadline: Box::new(unsafe { core::mem::zeroed() }),
            // SAFETY: all-zero is an unused peer connection; set up before each connect.
            pc: unsafe { core::mem::zeroed() },
            conn: ptr::null_mut(),
            pool: ptr::null_mut(),
            ssl,
            log,
            step: Step::Idle,
            written: 0,
            reader: ResponseReader::new(&spec),
            body_regex: p.body_regex,
            slot: p.slot,
            started: Instant::now(),
            template: p.resolve.is_some().then(|| spec.clone()),
            spec,
        }
    }

    /// Points a pool's target at `addr` (`None`: at nothing, it is not probed), probed at
    /// once; the probe in flight, if any, is dropped first.
    fn retarget(&mut self, addr: Option<SocketAddr>, now_ms: u64) {
        self.end();
        let Some(template) = &self.template else {
            return;
        };
        self.addrs.clear();
        let Some(addr) = addr else {
            return;
        };
        self.spec = template.for_peer(addr);
        self.request = match self.spec.target.scheme {
            Scheme::Tcp => Vec::new(),
            _ => probe_http::request(&self.spec),
        };
        self.reader = ResponseReader::new(&self.spec);
        self.sni = None;
        self.addrs.push(addr);
        self.due_ms = now_ms;
    }

    /// Starts one probe.
    fn begin(&mut self) {
        if self.step != Step::Idle {
            // run_due() starts idle targets only; finish the old one rather than leak it.
            self.finish(Some(Reason::Timeout));
        }
        self.started = Instant::now();
        self.reader = ResponseReader::new(&self.spec);
        self.written = 0;
        self.addr_i = 0;
        if self.addrs.is_empty() && self.resolver.is_none() {
            self.report(Some(Reason::Dns), None);
            return;
        }
        // SAFETY: the event lives in this boxed target.
        unsafe {
            nginx_sys::ngx_add_timer(&mut *self.deadline, self.spec.timeout_ms as ngx_msec_t)
        };
        match self.resolver {
            Some(r) => self.resolve(r),
            None => self.connect(),
        }
    }

    /// Connects to `addrs[addr_i]`.
    fn connect(&mut self) {
        let addr = self.addrs[self.addr_i];
        self.socklen = fill_sockaddr(&mut self.sockaddr, addr);
        self.peer_name = addr.to_string().into_bytes();
        self.peer_name_str = ngx_str_t {
            len: self.peer_name.len(),
            data: self.peer_name.as_mut_ptr(),
        };
        // SAFETY: all-zero is an unused peer connection.
        self.pc = unsafe { core::mem::zeroed() };
        self.pc.sockaddr = ptr::addr_of_mut!(self.sockaddr).cast();
        self.pc.socklen = self.socklen;
        self.pc.name = &mut self.peer_name_str;
        self.pc.get = Some(nginx_sys::ngx_event_get_peer);
        self.pc.log = self.log;
        self.pc
            .set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_INFO as _);
        self.step = Step::Connecting;
        // SAFETY: pc is fully set up and points into this boxed target.
        let rc = unsafe { nginx_sys::ngx_event_connect_peer(&mut self.pc) };
        // Read before anything else can change it.
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if rc == NGX_DECLINED as ngx_int_t || self.pc.connection.is_null() {
            let reason = match rc {
                r if r == NGX_DECLINED as ngx_int_t => match probe_http::reason_for_errno(errno) {
                    Reason::Reset if errno != libc::ECONNRESET => Reason::Refused,
                    r => r,
                },
                _ => Reason::Reset,
            };
            self.connect_failed(reason);
            return;
        }
        if rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t {
            self.pc.connection = ptr::null_mut();
            self.finish(Some(Reason::Reset));
            return;
        }
        let c = self.pc.connection;
        self.conn = c;
        let me: *mut Target = self;
        // SAFETY: a connection nginx just made for us; its events are ours.
        unsafe {
            (*c).data = me.cast();
            (*(*c).read).handler = Some(on_conn_event);
            (*(*c).write).handler = Some(on_conn_event);
            (*(*c).read).set_cancelable(1);
            (*(*c).write).set_cancelable(1);
            self.pool = ngx_create_pool(1024, self.log);
            (*c).pool = self.pool;
        }
        if self.pool.is_null() {
            self.finish(Some(Reason::Reset));
            return;
        }
        if rc == NGX_OK as ngx_int_t {
            self.connected();
        }
        // NGX_AGAIN: the write event says when the connect is done.
    }

    /// A connect to one address failed: try the next one, else fail.
    fn connect_failed(&mut self, reason: Reason) {
        self.close();
        if self.addr_i + 1 < self.addrs.len() {
            self.addr_i += 1;
            self.connect();
        } else {
            self.finish(Some(reason));
        }
    }

    /// The TCP connection is up.
    fn connected(&mut self) {
        match self.spec.target.scheme {
            Scheme::Tcp => self.finish(None),
            Scheme::Http => {
                self.step = Step::Writing;
                self.write();
            }
            Scheme::Https => self.handshake(),
        }
    }

    /// Sends what is left of the request.
    fn write(&mut self) {
        let c = self.conn;
        while self.written < self.request.len() {
            let rest = &mut self.request[self.written..];
            // SAFETY: c is our live connection; send is set by nginx (plain or TLS).
            let n = unsafe {
                let send = (*c).send.expect("connection send");
                send(c, rest.as_mut_ptr(), rest.len())
            };
            if n > 0 {
                self.written += n as usize;
            } else if n == NGX_AGAIN as isize {
                // SAFETY: the write event of our live connection.
                if unsafe { nginx_sys::ngx_handle_write_event((*c).write, 0) }
                    != NGX_OK as ngx_int_t
                {
                    self.finish(Some(Reason::Reset));
                }
                return;
            } else {
                self.finish(Some(Reason::Reset));
                return;
            }
        }
        self.step = Step::Reading;
        self.read();
    }

    /// Reads the response: its status line and head, then the body as far as the checks need
    /// it (`probe::http::ResponseReader`).
    fn read(&mut self) {
        let c = self.conn;
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let want = self.reader.room().min(READ_CHUNK);
            // SAFETY: c is our live connection; recv is set by nginx (plain or TLS).
            let n = unsafe {
                let recv = (*c).recv.expect("connection recv");
                recv(c, buf.as_mut_ptr(), want)
            };
            if n > 0 {
                match self.reader.feed(&buf[..n as usize]) {
                    Err(reason) => return self.finish(Some(reason)),
                    Ok(_) if self.reader.done() => return self.finish_with_status(),
                    Ok(_) => continue,
                }
            }
            if n == NGX_AGAIN as isize {
                // SAFETY: the read event of our live connection.
                if unsafe { nginx_sys::ngx_handle_read_event((*c).read, 0) } != NGX_OK as ngx_int_t
                {
                    self.finish_with_status();
                }
                return;
            }
            // End of stream or an error: the answer is what arrived.
            return self.finish_with_status();
        }
    }

    /// Ends the probe on what the response said: its status and the answer's checks
    /// (`reset` when it said nothing).
    fn finish_with_status(&mut self) {
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let regex = self.body_regex;
        let failure = self
            .reader
            .verdict(&self.spec, elapsed_ms, &|body| regex_matches(regex, body));
        match self.reader.status() {
            Some(status) => self.finish_status(failure, status),
            None => self.finish(failure),
        }
    }

    fn finish_status(&mut self, failure: Option<Reason>, status: u16) {
        self.end();
        self.report(failure, Some(status));
    }

    /// Ends the probe with `failure` (`None`: success).
    fn finish(&mut self, failure: Option<Reason>) {
        self.end();
        self.report(failure, None);
    }

    fn end(&mut self) {
        self.cancel_lookup();
        self.close();
        if self.deadline.timer_set() != 0 {
            // SAFETY: armed by this process's event loop on our live event.
            unsafe { nginx_sys::ngx_del_timer(&mut *self.deadline) };
        }
        self.step = Step::Idle;
    }

    fn report(&mut self, failure: Option<Reason>, status: Option<u16>) {
        push_result(ProbeResult {
            index: self.index,
            failure,
            status,
            duration: self.started.elapsed(),
        });
    }

    /// Closes the connection of the probe in flight, if any.
    fn close(&mut self) {
        let c = core::mem::replace(&mut self.conn, ptr::null_mut());
        if !c.is_null() {
            // SAFETY: our live connection; TLS is dropped without a close_notify exchange
            // (nothing waits for it), then nginx closes the socket and frees the connection.
            unsafe {
                tls::drop_session(c);
                ngx_close_connection(c);
            }
        }
        let pool = core::mem::replace(&mut self.pool, ptr::null_mut());
        if !pool.is_null() {
            // SAFETY: the pool was created for the closed connection and nothing uses it now.
            unsafe { ngx_destroy_pool(pool) };
        }
    }

    /// A connect in progress ended: did it work?
    fn check_connect(&mut self) {
        let mut err: c_int = 0;
        let mut len = core::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: c is our live connection; getsockopt writes one int.
        let rc = unsafe {
            libc::getsockopt(
                (*self.conn).fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                ptr::addr_of_mut!(err).cast(),
                &mut len,
            )
        };
        if rc == -1 {
            err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        }
        if err != 0 {
            self.connect_failed(probe_http::reason_for_errno(err));
        } else {
            self.connected();
        }
    }

    /// A read or write event of the connection.
    fn on_event(&mut self, write: bool) {
        match self.step {
            Step::Connecting => self.check_connect(),
            Step::Writing if write => self.write(),
            Step::Reading if !write => self.read(),
            // Handshake events go to nginx's handler; others wait for their step.
            _ => {}
        }
    }
}

/// Writes `addr` as a C socket address; returns its length.
fn fill_sockaddr(out: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    // SAFETY: all-zero is a valid sockaddr_storage.
    *out = unsafe { core::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            core::mem::size_of::<libc::sockaddr_in>() as _
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            core::mem::size_of::<libc::sockaddr_in6>() as _
        }
    }
}

/// Runs `f` on the target an event belongs to, catching panics at the FFI boundary.
fn with_target(t: *mut Target, f: impl FnOnce(&mut Target)) {
    // SAFETY: event data points at a boxed Target, alive until stop() deletes its timers and
    // closes its connection (after which no event of it fires).
    let Some(t) = (unsafe { t.as_mut() }) else {
        return;
    };
    let log = t.log;
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(t))).is_err() {
        error!(log, "status_alert: a probe failed unexpectedly");
    }
}

/// Deadline timer: the probe took `timeout=`.
extern "C" fn on_deadline(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the event it fired.
    let t = unsafe { (*ev).data.cast::<Target>() };
    with_target(t, |t| {
        if t.step == Step::Idle {
            return;
        }
        if t.step == Step::Resolving {
            // The lookup is not done: a `dns` failure (end() cancels the lookup).
            t.finish(Some(Reason::Dns));
            return;
        }
        match t.reader.status() {
            // The answer came; only the discarded rest was slow.
            Some(_) => t.finish_with_status(),
            None => t.finish(Some(Reason::Timeout)),
        }
    });
}

/// True when the compiled `body_regex=` pattern `re` matches somewhere in `body`.
#[cfg(ngx_feature = "pcre")]
fn regex_matches(re: *const core::ffi::c_void, body: &[u8]) -> bool {
    if re.is_null() {
        return false;
    }
    let mut s = nginx_sys::ngx_str_t {
        len: body.len(),
        data: body.as_ptr().cast_mut(),
    };
    // SAFETY: re is an ngx_regex_t compiled for this cycle's configuration; PCRE only reads
    // the subject, and no captures are asked for. A negative result (no match, or a PCRE
    // error such as its match limit) is a failed check.
    unsafe { nginx_sys::ngx_regex_exec(re.cast_mut().cast(), &mut s, ptr::null_mut(), 0) >= 0 }
}

/// Without PCRE no pattern was compiled (`nginx -t` refuses `body_regex=`).
#[cfg(not(ngx_feature = "pcre"))]
fn regex_matches(_re: *const core::ffi::c_void, _body: &[u8]) -> bool {
    false
}

/// Read and write events of a probe connection.
extern "C" fn on_conn_event(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes an event of a probe connection; its data is the connection, whose
    // data is the target.
    let (t, write) = unsafe {
        let c = (*ev).data.cast::<ngx_connection_t>();
        ((*c).data.cast::<Target>(), (*ev).write() != 0)
    };
    with_target(t, |t| t.on_event(write));
}
