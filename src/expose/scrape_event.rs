//! FFI of a sliced scrape: runs [`Scrape::step`] for one time slice in the content handler
//! and, when the scrape is not done, on later turns of the event loop (a posted event), then
//! sends the body from the scrape's own memory (no copy) and finalizes the request.
//!
//! The scrape belongs to the request's pool (a cleanup frees it), so whatever ends the
//! request (the response sent, the client gone, the worker stopping) ends the scrape too; its
//! posted event is taken out of nginx's queue as it goes. While a scrape waits for its next
//! slice, the request is held (`r->main->count`) and so is a worker that is asked to quit
//! ([`HoldWorker`]): a reload lets the scrape finish.

use core::ffi::c_void;
use std::time::{Duration, Instant};

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_event_t, ngx_http_request_t, ngx_int_t,
    NGX_HTTP_INTERNAL_SERVER_ERROR,
};

use super::handler::{send_header, Coding};
use super::scrape::Scrape;
use crate::conf::MainConf;
use crate::event::loop_fd::{HoldWorker, PostedEvent};

/// The longest a slice of a scrape may run before it gives the loop back (a unit of work that
/// began in time adds a fraction of a millisecond): a request that arrives during a slice
/// waits about that long at most. With back-to-back scrapes of 10,000 NAMEs the p99 of another
/// client was 3.7 ms with 2 ms slices, 2.1 ms with 1 ms, 1.8 ms with 0.5 ms (10 NAMEs: 0.7-1.0
/// ms), `ci/bench --only scale`; what is left is sending and freeing the body.
const SLICE: Duration = Duration::from_micros(500);

/// A scrape and what it needs to go on.
struct Pending {
    scrape: Scrape,
    r: *mut ngx_http_request_t,
    /// The configuration the request is served by (the worker's, for its whole life).
    mcf: *const MainConf,
    content_type: &'static str,
    /// The next slice, once the first did not finish; with the worker held meanwhile.
    resume: Option<(PostedEvent, HoldWorker)>,
}

impl Pending {
    /// Runs one slice; `Ok(true)` once the body is ready.
    fn slice(&mut self) -> Result<bool, ngx_int_t> {
        let deadline = Instant::now() + SLICE;
        // SAFETY: the main configuration outlives every request of the worker.
        let mcf = unsafe { &*self.mcf };
        self.scrape
            .step(mcf, &mut || Instant::now() >= deadline)
            .map_err(|_| NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
    }
}

/// Begins `scrape` for `r`: answers at once when one slice does it all (a few hundred NAMEs),
/// else returns `NGX_DONE` and goes on from the event loop.
pub(super) fn start(
    r: &mut ngx_http_request_t,
    mcf: &MainConf,
    scrape: Scrape,
    content_type: &'static str,
) -> Result<ngx_int_t, ngx_int_t> {
    // SAFETY: a cleanup of the request's pool, allocated from it (or null).
    let cln = unsafe { nginx_sys::ngx_pool_cleanup_add(r.pool, 0) };
    if cln.is_null() {
        return Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
    }
    let p = Box::into_raw(Box::new(Pending {
        scrape,
        r,
        mcf,
        content_type,
        resume: None,
    }));
    // SAFETY: the cleanup frees the box when the pool goes, after the body (which points into
    // it) is sent; nothing else frees it.
    unsafe {
        (*cln).handler = Some(free_pending);
        (*cln).data = p.cast();
    }
    // SAFETY: `p` is alive until the pool goes, which is not before this handler returns.
    let pending = unsafe { &mut *p };
    if pending.slice()? {
        return send_body(r, pending);
    }
    // SAFETY: the connection's log lives as long as the request.
    let log = unsafe { (*r.connection).log };
    let mut event = PostedEvent::new(Some(on_slice), log);
    event.set_data(p.cast());
    event.post();
    pending.resume = Some((event, HoldWorker::new(log)));
    // Held until `on_slice` finalizes: NGX_DONE gives back the content phase's reference.
    // SAFETY: r.main is the main request, alive as long as `r`.
    unsafe { (*r.main).set_count((*r.main).count() + 1) };
    Ok(nginx_sys::NGX_DONE as ngx_int_t)
}

/// The next slice of a scrape, on a later turn of the loop.
extern "C" fn on_slice(ev: *mut ngx_event_t) {
    // SAFETY: the event's data is its Pending, alive until the request's pool goes, which
    // takes the event out of the queue first.
    let (r, rc) = unsafe {
        let p = (*ev).data.cast::<Pending>();
        let pending = &mut *p;
        let r = pending.r;
        let rc = match pending.slice() {
            Ok(false) => {
                if let Some((event, _)) = &mut pending.resume {
                    event.post();
                }
                return;
            }
            Ok(true) => send_body(&mut *r, pending).unwrap_or_else(|rc| rc),
            Err(rc) => rc,
        };
        (r, rc)
    };
    // SAFETY: the request is alive (held by the count taken in `start`). Finalizing may free
    // it and, with its pool, the Pending: nothing of either is used afterwards.
    unsafe {
        let c = (*r).connection;
        nginx_sys::ngx_http_finalize_request(r, rc);
        nginx_sys::ngx_http_run_posted_requests(c);
    }
}

/// Sends the scrape's body as it lies in memory: a chain of buffers pointing into its pieces.
fn send_body(r: &mut ngx_http_request_t, pending: &Pending) -> Result<ngx_int_t, ngx_int_t> {
    let s = &pending.scrape;
    let coding = if s.gzipped() {
        Coding::Gzip
    } else {
        Coding::Plain
    };
    if let Some(rc) = send_header(r, 200, pending.content_type, s.body_len(), coding) {
        return Ok(rc);
    }
    let pieces: Vec<&Vec<u8>> = s.body().iter().filter(|p| !p.is_empty()).collect();
    let mut out: *mut ngx_chain_t = core::ptr::null_mut();
    let mut last: *mut *mut ngx_chain_t = &mut out;
    // SAFETY: buffers and links come from the request pool; they point into the pieces,
    // which the pool's cleanup keeps until nginx is done with them (the pool outlives the
    // response).
    unsafe {
        for (i, piece) in pieces.iter().enumerate() {
            let b: *mut ngx_buf_t =
                nginx_sys::ngx_pcalloc(r.pool, core::mem::size_of::<ngx_buf_t>()).cast();
            let cl = nginx_sys::ngx_alloc_chain_link(r.pool);
            if b.is_null() || cl.is_null() {
                return Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            }
            (*b).pos = piece.as_ptr().cast_mut();
            (*b).last = (*b).pos.add(piece.len());
            (*b).start = (*b).pos;
            (*b).end = (*b).last;
            (*b).set_memory(1);
            if i + 1 == pieces.len() {
                (*b).set_last_buf(core::ptr::eq(r.main, r) as u32);
                (*b).set_last_in_chain(1);
            }
            (*cl).buf = b;
            (*cl).next = core::ptr::null_mut();
            *last = cl;
            last = &mut (*cl).next;
        }
        if out.is_null() {
            // An empty body: nothing but the end of it.
            let b: *mut ngx_buf_t =
                nginx_sys::ngx_pcalloc(r.pool, core::mem::size_of::<ngx_buf_t>()).cast();
            let cl = nginx_sys::ngx_alloc_chain_link(r.pool);
            if b.is_null() || cl.is_null() {
                return Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            }
            (*b).set_last_buf(core::ptr::eq(r.main, r) as u32);
            (*b).set_last_in_chain(1);
            (*cl).buf = b;
            (*cl).next = core::ptr::null_mut();
            out = cl;
        }
        Ok(nginx_sys::ngx_http_output_filter(r, out))
    }
}

/// The request's pool goes: so does its scrape (and its posted event, out of the queue).
extern "C" fn free_pending(data: *mut c_void) {
    // SAFETY: the pointer `start` leaked for this cleanup, freed here only.
    drop(unsafe { Box::from_raw(data.cast::<Pending>()) });
}
