//! FFI: the zone's lock around the mute table. The lock is nginx's own mutex of the zone's
//! slab pool (`ngx_shmtx_t`): nginx creates it with the zone and, when a worker dies, frees it
//! if that worker held it, so a crash in the middle of a mute never leaves the table locked.
//! Holders only copy records in or out; nothing under it allocates in the zone or blocks.

use core::ptr::addr_of_mut;

use nginx_sys::{ngx_shmtx_lock, ngx_shmtx_t, ngx_shmtx_unlock};

use crate::conf::MainConf;
use crate::zone::mutes::MuteRecord;

/// Unlocks on drop, also if the closure under the lock were to unwind.
struct Held(*mut ngx_shmtx_t);

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: locked by `with_mutes`, by this process.
        unsafe { ngx_shmtx_unlock(self.0) };
    }
}

/// Runs `f` over the primary zone's mute table under the zone's lock; `None` without a zone.
pub fn with_mutes<R>(mcf: &MainConf, f: impl FnOnce(&mut [MuteRecord]) -> R) -> Option<R> {
    let zone = mcf.zone?;
    let pool = mcf.zone_pool?;
    // SAFETY: the slab pool heads the zone's mapping, which stays mapped for this cycle, and
    // nginx created its mutex when it created the zone.
    let mutex = unsafe { addr_of_mut!((*pool.as_ptr()).mutex) };
    // SAFETY: as above; nginx's lock spins and sleeps, as its slab allocator's callers do.
    unsafe { ngx_shmtx_lock(mutex) };
    let held = Held(mutex);
    // SAFETY: the zone's lock is held until `held` drops, and nothing else here refers to
    // the table.
    let r = f(unsafe { zone.header().mutes.records() });
    drop(held);
    Some(r)
}

/// A copy of the mute table, taken under the lock (empty without a zone).
pub fn copy_mutes(mcf: &MainConf) -> Vec<MuteRecord> {
    with_mutes(mcf, |r| r.to_vec()).unwrap_or_default()
}

/// nginx's current offset from UTC in seconds, as its local time uses it (`tz=local`
/// maintenance windows).
pub fn local_offset_secs() -> i32 {
    // SAFETY: ngx_cached_time always points at a valid time slot of this process.
    let minutes = unsafe { (*nginx_sys::ngx_cached_time).gmtoff };
    i32::try_from(minutes.saturating_mul(60)).unwrap_or(0)
}
