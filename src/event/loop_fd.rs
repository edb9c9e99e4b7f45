//! Descriptors on nginx's event loop (FFI): the helper's report pipe and the timerfd that paces
//! worker 0, registered the way nginx registers its own master/worker channel (read events
//! flagged `channel`, so they never hold up a worker's exit), but keeping the connection, so
//! that the descriptor can be closed at any time, also when it never became readable.

use core::ptr;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_event_handler_pt, ngx_event_t, ngx_int_t,
    ngx_log_t, NGX_USE_EPOLL_EVENT,
};

/// nginx's `NGX_READ_EVENT` with the epoll event method.
const NGX_READ_EVENT: ngx_int_t = (libc::EPOLLIN | libc::EPOLLRDHUP) as ngx_int_t;

/// A descriptor watched for reads; closed (and unregistered) on drop.
pub struct LoopFd {
    c: *mut ngx_connection_t,
}

impl LoopFd {
    /// Watches `fd` (taking ownership) for reads, calling `handler` with the read event.
    pub fn new(
        fd: OwnedFd,
        handler: ngx_event_handler_pt,
        log: *mut ngx_log_t,
    ) -> io::Result<Self> {
        let fd = fd.into_raw_fd();
        // SAFETY: called on the worker's event loop; the connection comes from nginx's free
        // list and is set up as ngx_add_channel_event does.
        unsafe {
            let c = nginx_sys::ngx_get_connection(fd, log);
            if c.is_null() {
                drop(OwnedFd::from_raw_fd(fd));
                return Err(io::Error::other("no free connection"));
            }
            (*c).pool = (*nginx_sys::ngx_cycle).pool;
            let (rev, wev) = ((*c).read, (*c).write);
            (*rev).log = log;
            (*wev).log = log;
            (*rev).set_channel(1);
            (*wev).set_channel(1);
            (*rev).handler = handler;
            let actions = &*ptr::addr_of!(nginx_sys::ngx_event_actions);
            let rc = if nginx_sys::ngx_event_flags & NGX_USE_EPOLL_EVENT as usize == 0 {
                actions.add_conn.map_or(-1, |add| add(c))
            } else {
                actions.add.map_or(-1, |add| add(rev, NGX_READ_EVENT, 0))
            };
            if rc != nginx_sys::NGX_OK as ngx_int_t {
                ngx_close_connection(c);
                return Err(io::Error::other("cannot add the read event"));
            }
            Ok(LoopFd { c })
        }
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        // SAFETY: the connection is ours until drop.
        unsafe { (*self.c).fd }
    }
}

impl Drop for LoopFd {
    fn drop(&mut self) {
        // SAFETY: our connection, closed once; this removes its event and closes the fd.
        unsafe { ngx_close_connection(self.c) };
    }
}

/// A periodic timer as a descriptor (`timerfd`), readable every `period_ms`: worker 0's pace,
/// independent of the helper and outside nginx's timer tree (which every request's keep-alive
/// timer walks).
pub fn periodic_timer(period_ms: u64) -> io::Result<OwnedFd> {
    // SAFETY: plain timerfd creation.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let period = libc::timespec {
        tv_sec: (period_ms / 1000) as libc::time_t,
        tv_nsec: ((period_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: period,
        it_value: period,
    };
    // SAFETY: a valid timerfd and itimerspec.
    if unsafe { libc::timerfd_settime(fd, 0, &spec, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// Reads a timerfd's expiry count, so that the level-triggered event stops firing.
pub fn consume_timer(fd: RawFd) {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a u64 from a non-blocking timerfd.
    unsafe { libc::read(fd, ptr::addr_of_mut!(n).cast(), 8) };
}

/// An event posted to nginx's `ngx_posted_next_events`: its handler runs once on the next turn
/// of the event loop, after the I/O that turn found, and the loop does not sleep meanwhile
/// (how worker 0 spreads long work across turns, so requests of the same worker are served
/// between the slices). `ngx_posted_events` would not do: nginx runs that queue until it is
/// empty, so a handler posting itself there again would run again in the same turn.
pub struct PostedEvent {
    // Boxed: nginx links the event into its queue by address.
    ev: Box<ngx_event_t>,
}

impl PostedEvent {
    /// An event that calls `handler` when it runs.
    pub fn new(handler: ngx_event_handler_pt, log: *mut ngx_log_t) -> Self {
        // SAFETY: ngx_event_t is a C struct for which all-zero is nginx's own initial state
        // (ngx_pcalloc'ed events); the handler and log are set below.
        let mut ev: Box<ngx_event_t> = Box::new(unsafe { core::mem::zeroed() });
        ev.handler = handler;
        ev.log = log;
        PostedEvent { ev }
    }

    /// Sets the event's `data`, which its handler reads.
    pub fn set_data(&mut self, data: *mut core::ffi::c_void) {
        self.ev.data = data;
    }

    /// Runs the handler on the next turn of the loop (once, however often this is called).
    pub fn post(&mut self) {
        // SAFETY: on the worker's event loop; the event outlives its place in the queue
        // (Drop takes it out).
        unsafe {
            nginx_sys::ngx_post_event(
                &mut *self.ev,
                ptr::addr_of_mut!(nginx_sys::ngx_posted_next_events),
            )
        };
    }
}

impl Drop for PostedEvent {
    fn drop(&mut self) {
        if self.ev.posted() != 0 {
            // SAFETY: the event is linked into a posted queue (the next turn's, or the current
            // turn's once nginx moved it); unlinking it before the memory goes keeps the queue
            // valid.
            unsafe { nginx_sys::ngx_delete_posted_event(&mut *self.ev) };
        }
    }
}

/// Keeps a worker that is shutting down gracefully (`nginx -s quit`, a reload) from exiting
/// while it lives: such a worker exits once no timer is left but cancelable ones, whatever
/// work is posted, so work spread across turns of the loop (a sliced scrape) holds a
/// non-cancelable timer that never fires in practice (it re-arms if it does).
pub struct HoldWorker {
    // Boxed: nginx links the event into its timer tree by address.
    ev: Box<ngx_event_t>,
}

/// How long [`HoldWorker`]'s timer runs before it re-arms.
const HOLD_MS: nginx_sys::ngx_msec_t = 3_600_000;

impl HoldWorker {
    /// Holds the worker until dropped.
    pub fn new(log: *mut ngx_log_t) -> Self {
        // SAFETY: all-zero is nginx's initial state of an event (and `cancelable` 0).
        let mut ev: Box<ngx_event_t> = Box::new(unsafe { core::mem::zeroed() });
        ev.handler = Some(rearm);
        ev.log = log;
        // SAFETY: on the worker's event loop; Drop takes the event out of the tree.
        unsafe { nginx_sys::ngx_add_timer(&mut *ev, HOLD_MS) };
        HoldWorker { ev }
    }
}

/// [`HoldWorker`]'s timer fired: hold on.
extern "C" fn rearm(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the live event, out of the tree now.
    unsafe { nginx_sys::ngx_add_timer(ev, HOLD_MS) };
}

impl Drop for HoldWorker {
    fn drop(&mut self) {
        if self.ev.timer_set() != 0 {
            // SAFETY: armed on this process's loop, in the tree until now.
            unsafe { nginx_sys::ngx_del_timer(&mut *self.ev) };
        }
    }
}
