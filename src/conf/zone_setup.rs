//! FFI glue for the shared-memory zones: registration, initialisation and the hand-over of
//! counters and state across reloads. The layout itself is in src/zone/mod.rs.
//!
//! It lives in `conf/`, not `zone/`: registering a zone means reading and filling the
//! configuration (`MainConf`), which already holds the zone's slots, so `conf` uses `zone`
//! and `zone` stays free of the configuration (and of nginx).
//!
//! Each configuration counts into one *primary* zone named `status_alert_<size>`. A reload that
//! keeps the size reuses it in place (nginx maps it again; slots are matched by key). A reload
//! that changes the size gets a new primary; the old one stays registered, as a *draining*
//! zone, for as long as a process that counts into it lives, and the new evaluator moves its
//! counts over every tick. Zone flags are never touched (`noreuse` stays 0), so nginx treats
//! every zone the same way in every cycle. Nothing is changed in a zone before the new
//! configuration commits (`init_module`): a reload that fails leaves the running one intact.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t,
};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleMainConf};

use crate::conf::{Draining, MainConf, OldZone, SetupError};
use crate::zone::{self, payload_for_shm_size, payload_in_mapping, process_alive, Zone};
use crate::HttpStatusAlertModule;

/// Prefix of the zones' names in nginx's list of shared memory zones.
const ZONE_PREFIX: &str = "status_alert_";

fn now_ms() -> u64 {
    let t = nginx_sys::ngx_timeofday();
    t.sec as u64 * 1000 + t.msec as u64
}

fn pagesize() -> usize {
    // SAFETY: set once by ngx_os_init before configuration parsing.
    unsafe { nginx_sys::ngx_pagesize }
}

fn tag() -> *mut c_void {
    ptr::from_ref(HttpStatusAlertModule::module())
        .cast_mut()
        .cast()
}

/// This module's zones in `cycle`, with their names and sizes.
///
/// # Safety
/// `cycle` must be null or a cycle whose shared memory is still mapped.
unsafe fn our_zones(cycle: *const ngx_cycle_t) -> Vec<(String, usize, Zone)> {
    let mut out = Vec::new();
    let Some(cycle) = cycle.as_ref() else {
        return out;
    };
    let mut part = ptr::addr_of!(cycle.shared_memory.part);
    while let Some(p) = part.as_ref() {
        let zones = p.elts as *const ngx_shm_zone_t;
        for i in 0..p.nelts {
            let z = &*zones.add(i);
            if z.tag != tag() {
                continue;
            }
            if let Some(zone) = zone_of(z).filter(Zone::is_formatted) {
                out.push((z.shm.name.to_string(), z.shm.size, zone));
            }
        }
        part = p.next;
    }
    out
}

/// The payload of zone `z`, located by what the master knows itself: the mapping's address
/// and size (in `z`, private memory). The one value taken from the shared mapping, the slab
/// pool's `data`, is read once and used only as checked by [`payload_in_mapping`]; `None` if
/// it fails the check (or the zone is not mapped).
///
/// # Safety
/// `z` is a zone of a cycle whose shared memory is still mapped.
unsafe fn zone_of(z: &ngx_shm_zone_t) -> Option<Zone> {
    let addr = z.shm.addr;
    if addr.is_null() {
        return None;
    }
    // Workers can write this field at any time: one volatile read.
    let data = ptr::addr_of!((*(addr as *const ngx_slab_pool_t)).data).read_volatile() as usize;
    let (offset, len) = payload_in_mapping(addr as usize, z.shm.size, data, pagesize())?;
    // SAFETY: offset + len <= shm.size: the payload is inside the mapping.
    Zone::from_raw(addr.add(offset), len)
}

/// The primary zone's size for this configuration.
fn plan_size(mcf: &MainConf, old: &[(String, usize, Zone)]) -> Result<usize, SetupError> {
    let (names, probes) = mcf.keys();
    let old: Vec<(usize, Zone)> = old.iter().map(|(_, size, z)| (*size, *z)).collect();
    let plan = zone::SizePlan {
        explicit: mcf
            .zone_size
            .as_ref()
            .map(|(size, place)| (*size, place.as_str())),
        names: &as_slices(&names),
        probes: &as_slices(&probes),
        old: &old,
        pagesize: pagesize(),
    };
    Ok(plan.size(process_alive)?)
}

fn as_slices(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(Vec::as_slice).collect()
}

/// Registers a zone named `name` of `size` bytes; the name is copied into the cycle's pool.
fn register(
    cf: &mut ngx_conf_t,
    name: &str,
    size: usize,
) -> Result<&'static mut ngx_shm_zone_t, SetupError> {
    // SAFETY: valid pool; nginx keeps a pointer to the name for the cycle's lifetime.
    let data = unsafe { nginx_sys::ngx_pnalloc(cf.pool, name.len()) } as *mut u8;
    if data.is_null() {
        return Err(SetupError::ZoneName);
    }
    // SAFETY: data has room for name.len() bytes.
    unsafe { ptr::copy_nonoverlapping(name.as_ptr(), data, name.len()) };
    let mut zone_name = ngx_str_t {
        len: name.len(),
        data,
    };
    // SAFETY: valid cf, name and tag.
    let z = unsafe { nginx_sys::ngx_shared_memory_add(cf, &mut zone_name, size, tag()) };
    // SAFETY: null or a zone owned by the cycle.
    unsafe { z.as_mut() }.ok_or_else(|| SetupError::ZoneAdd(name.to_string()))
}

/// Registers the zones; called from postconfiguration when anything needs them.
pub fn add_zone(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), SetupError> {
    // SAFETY: cf.cycle is the cycle being configured; its old cycle is still mapped.
    let old = unsafe { our_zones((*cf.cycle).old_cycle) };
    let size = plan_size(mcf, &old)?;
    let primary = format!("{ZONE_PREFIX}{size}");
    let z = register(cf, &primary, size)?;
    z.init = Some(zone_init);
    z.data = ptr::from_mut(mcf).cast();

    mcf.old_zones.clear();
    for (name, size, zone) in old {
        if name == primary {
            continue;
        }
        // Old workers may still count into it: keep it mapped until they have exited.
        let kept = zone.has_live_writers(process_alive);
        if kept {
            let z = register(cf, &name, size)?;
            z.init = Some(draining_init);
            z.data = ptr::from_mut(mcf).cast();
        }
        mcf.old_zones.push(OldZone { zone, kept });
    }
    Ok(())
}

/// The zone's payload: allocated (and zero-filled) in a fresh slab pool, or the one a reused
/// zone already has, found by [`zone_of`].
///
/// # Safety
/// `shm_zone` is a zone nginx is initialising; its memory is mapped.
unsafe fn payload(shm_zone: *mut ngx_shm_zone_t, reused: bool) -> Result<Zone, SetupError> {
    let shm = &(*shm_zone).shm;
    if !reused {
        // nginx has just created the slab pool, and no worker has seen it yet.
        let sp = shm.addr as *mut ngx_slab_pool_t;
        let size = payload_for_shm_size(shm.size, pagesize());
        // Large slab allocations are page-aligned.
        let base = ngx_slab_alloc(sp, size) as *mut u8;
        if base.is_null() {
            return Err(SetupError::ZoneAlloc(size));
        }
        // Only the header: slots are zeroed when first carved (Zone::claim), so that a zone
        // for 10,000 NAMEs is not written page by page at every `nginx -t` and start.
        ptr::write_bytes(base, 0, size.min(size_of::<crate::zone::ZoneHeader>()));
        (*sp).data = base.cast();
    }
    let zone = zone_of(&*shm_zone).ok_or_else(|| SetupError::ZoneDamaged(shm.name.to_string()))?;
    if !zone.is_formatted() {
        zone.format();
    }
    Ok(zone)
}

/// Initialises the primary zone (new or reused) and checks that the configuration fits.
/// Slots are claimed only once the configuration commits, in [`init_module`].
extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes the zone registered in add_zone; its data is the MainConf of the
    // cycle being configured, which outlives the zone's initialisation.
    let (mcf, log) = unsafe {
        (
            &mut *((*shm_zone).data as *mut MainConf),
            (*shm_zone).shm.log,
        )
    };
    // SAFETY: as above.
    let set_up = unsafe { payload(shm_zone, !data.is_null()) }.and_then(|zone| {
        // nginx has created the state directory by now (it creates paths before zones).
        crate::conf::state_path::check(mcf)?;
        let (names, probes) = mcf.keys();
        zone.check(&as_slices(&names), &as_slices(&probes), process_alive)
            .map_err(SetupError::ZoneFull)?;
        mcf.zone = Some(zone);
        // SAFETY: nginx passes a zone whose mapping begins with its slab pool.
        mcf.zone_pool = ptr::NonNull::new(unsafe { (*shm_zone).shm.addr }.cast());
        Ok(())
    });
    status(set_up, log)
}

/// Re-adopts a draining zone (always reused: it has the old zone's name and size).
extern "C" fn draining_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes a zone registered in add_zone.
    let log = unsafe { (*shm_zone).shm.log };
    // SAFETY: as above.
    status(unsafe { payload(shm_zone, !data.is_null()) }.map(drop), log)
}

/// What a zone's init callback returns to nginx; an error is logged at `emerg` first.
fn status(set_up: Result<(), SetupError>, log: *mut nginx_sys::ngx_log_t) -> ngx_int_t {
    let status = match set_up {
        Ok(()) => Status::NGX_OK,
        Err(e) => {
            emerg!(log, "{e}");
            Status::NGX_ERROR
        }
    };
    status.into()
}

/// `init_module`: the configuration has committed (nothing after this can make nginx go back
/// to the old one). Claims the slots, then takes over from the previous zones: state is
/// copied into a new primary, counts are moved, and old zones learn they are superseded.
pub extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the new cycle.
    let cycle = unsafe { &*cycle };
    let Some(mcf) = HttpStatusAlertModule::main_conf_mut(cycle) else {
        return Status::NGX_OK.into();
    };
    let Some(zone) = mcf.zone else {
        return Status::NGX_OK.into();
    };
    let (names, probes) = mcf.keys();
    let claimed = match zone.claim(&as_slices(&names), &as_slices(&probes), process_alive) {
        Ok(c) => c,
        Err(full) => {
            // zone_init checked the same plan; only slots freed since can differ, which helps.
            error!(
                cycle.log,
                "status_alert: the shared zone {full}; counting is off"
            );
            return Status::NGX_OK.into();
        }
    };
    let bounds = mcf.bucket_bounds();
    for (n, slot) in mcf.names.iter_mut().zip(&claimed.names) {
        n.slot = *slot;
        if slot.adopt_bucket_bounds(&bounds) {
            notice!(
                cycle.log,
                "status_alert: \"{}\" counts with new histogram buckets from now on; its \
                 latency histogram starts from zero",
                n.name
            );
        }
    }
    let (probe_slots, rest) = claimed
        .probes
        .split_at(mcf.probes.len().min(claimed.probes.len()));
    let (certificate_slots, mut peer_slots) = rest.split_at(mcf.certificates.len().min(rest.len()));
    for (p, slot) in mcf.probes.iter_mut().zip(probe_slots) {
        p.slot = *slot;
    }
    let groups = mcf
        .peer_groups
        .iter_mut()
        .chain(mcf.peer_catch_all.iter_mut());
    for g in groups {
        let (mine, others) = peer_slots.split_at(g.cells().min(peer_slots.len()));
        let fixed = g.cells() - g.resolved_slots().len();
        let (named, resolved) = mine.split_at(fixed.min(mine.len()));
        let cells: Vec<*const crate::zone::peers::PeerCounts> =
            named.iter().map(|s| ptr::from_ref(&s.peer)).collect();
        g.set_cells(&cells);
        let resolved: Vec<*const crate::zone::ProbeSlot> =
            resolved.iter().map(|s| ptr::from_ref(*s)).collect();
        g.set_resolved_slots(&resolved);
        peer_slots = others;
    }
    for (c, slot) in mcf.certificates.iter_mut().zip(certificate_slots) {
        c.slot = *slot;
        // The certificate nginx serves from now on (0: the file could not be read).
        slot.certificate
            .not_after_unix
            .store(c.served_not_after().unwrap_or(0), Relaxed);
    }
    mcf.generation = claimed.generation;
    zone.header().superseded.store(0, Relaxed);
    let alerting = &zone.header().alerting;
    alerting.interval_ms.store(mcf.interval_ms(), Relaxed);
    alerting.configured_ms.store(now_ms(), Relaxed);

    let old_zones = core::mem::take(&mut mcf.old_zones);
    let previous = old_zones
        .iter()
        .find(|o| o.zone.header().superseded.load(Relaxed) == 0);
    if let Some(p) = previous {
        zone.import_state(&p.zone);
        // Runtime mutes move with the state. The previous zone's workers may still write its
        // table (it has no lock of ours here): what is read is checked record by record.
        // SAFETY: see above; a torn record reads as a bounded one and is checked again.
        let theirs = unsafe { zone::mute_table::active(p.zone.header().mutes.records(), now_ms()) };
        crate::conf::mute_lock::with_mutes(mcf, |ours| {
            zone::mute_table::merge(ours, &theirs, now_ms())
        });
        mcf.predecessor = p.kept.then_some(p.zone);
    }
    for o in &old_zones {
        let pairs = zone.name_pairs(&o.zone);
        zone.move_counts(&o.zone, &pairs);
        o.zone.header().superseded.store(1, Relaxed);
        if o.kept {
            mcf.draining.push(Draining {
                zone: o.zone,
                pairs: pairs
                    .into_iter()
                    .map(|(a, b)| (ptr::from_ref(a), ptr::from_ref(b)))
                    .collect(),
            });
        }
    }
    Status::NGX_OK.into()
}
