//! FFI glue for the shared-memory zone: registration, initialisation and carrying state across
//! reloads. The layout itself is in `zone.rs`.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t,
    NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;
use ngx::ngx_string;

use crate::conf::MainConf;
use crate::zone::{self, payload_for_shm_size, shm_size_for_payload, Zone};

/// Name of the zone in nginx's list of shared memory zones.
const ZONE_NAME: ngx_str_t = ngx_string!("status_alert");

fn pagesize() -> usize {
    // SAFETY: set once by ngx_os_init before configuration parsing.
    unsafe { nginx_sys::ngx_pagesize }
}

/// Zone capacities and the shared memory size for the configuration.
pub fn plan(mcf: &MainConf) -> Result<(usize, usize, usize), String> {
    let probes = mcf.probes.len();
    let probe_cap = if probes == 0 {
        0
    } else {
        zone::auto_capacity(probes)
    };
    match mcf.zone_size {
        None => {
            let name_cap = zone::auto_capacity(mcf.names.len());
            let payload = zone::zone_size(name_cap, probe_cap);
            Ok((
                name_cap,
                probe_cap,
                shm_size_for_payload(payload, pagesize()),
            ))
        }
        Some((size, ref place)) => {
            let name_cap =
                zone::name_capacity_for(payload_for_shm_size(size, pagesize()), probe_cap);
            if name_cap < mcf.names.len() {
                let need =
                    shm_size_for_payload(zone::zone_size(mcf.names.len(), probe_cap), pagesize());
                return Err(format!(
                    "status_alert_zone: size {}k is too small for {} names and {} probes, \
                     at least {}k is needed in {place}",
                    size / 1024,
                    mcf.names.len(),
                    probes,
                    need.div_ceil(1024)
                ));
            }
            Ok((name_cap, probe_cap, size))
        }
    }
}

/// Finds this module's zone in a (previous) cycle and returns a view of its payload.
///
/// # Safety
/// `cycle` must be null or a cycle whose shared memory is still mapped.
unsafe fn find_zone(cycle: *const ngx_cycle_t) -> Option<(*mut ngx_shm_zone_t, Zone)> {
    let cycle = cycle.as_ref()?;
    let mut part = ptr::addr_of!(cycle.shared_memory.part);
    while let Some(p) = part.as_ref() {
        let zones = p.elts as *mut ngx_shm_zone_t;
        for i in 0..p.nelts {
            let z = zones.add(i);
            if (*z).shm.name.as_bytes() == ZONE_NAME.as_bytes() && !(*z).shm.addr.is_null() {
                let sp = (*z).shm.addr as *mut ngx_slab_pool_t;
                let base = (*sp).data as *mut u8;
                if base.is_null() {
                    return None;
                }
                let size = ((*sp).end as usize).saturating_sub(base as usize);
                return Zone::from_raw(base, size).map(|zone| (z, zone));
            }
        }
        part = p.next;
    }
    None
}

/// Registers the zone; called from postconfiguration when anything needs it.
pub fn add_zone(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let (name_cap, probe_cap, size) = plan(mcf)?;
    mcf.capacities = (name_cap, probe_cap);

    // SAFETY: cf.cycle is the cycle being configured; its old cycle is still mapped.
    mcf.old_zone = unsafe { find_zone((*cf.cycle).old_cycle) }.map(|(_, z)| z);

    let mut name = ZONE_NAME;
    let tag = ptr::from_ref(crate::HttpStatusAlertModule::module())
        .cast_mut()
        .cast();
    // SAFETY: valid cf, name and tag; nginx copies what it needs.
    let shm_zone = unsafe { nginx_sys::ngx_shared_memory_add(cf, &mut name, size, tag) };
    // SAFETY: null or a zone owned by the cycle.
    let Some(shm_zone) = (unsafe { shm_zone.as_mut() }) else {
        return Err("could not add the status_alert shared memory zone".into());
    };

    // A zone of the same size is reused in place by nginx. That only works while its layout
    // can hold the new configuration; otherwise ask for a fresh zone and import into it.
    if let Some(old) = mcf.old_zone {
        let fits = old.is_formatted()
            && old.names().len() >= mcf.names.len()
            && old.probes().len() >= mcf.probes.len();
        if !fits {
            shm_zone.noreuse = 1;
        }
    }
    shm_zone.init = Some(zone_init);
    shm_zone.data = ptr::from_mut(mcf).cast();
    Ok(())
}

/// Initialises a new zone or re-adopts a reused one, then assigns slots to the configuration.
extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes the zone registered in add_zone; its data is the MainConf of the
    // cycle being configured, which outlives the zone's initialisation.
    let (shm_zone, mcf) = unsafe {
        let z = &mut *shm_zone;
        (z as *mut ngx_shm_zone_t, &mut *(z.data as *mut MainConf))
    };
    // SAFETY: the zone's memory is mapped and starts with nginx's slab pool.
    let sp = unsafe { &mut *((*shm_zone).shm.addr as *mut ngx_slab_pool_t) };
    // SAFETY: see above.
    let log = unsafe { (*shm_zone).shm.log };

    let reused = !data.is_null() && !sp.data.is_null();
    if !reused {
        let payload = zone::zone_size(mcf.capacities.0, mcf.capacities.1);
        // SAFETY: a fresh slab pool; large allocations are page-aligned and zero-filled by
        // mmap (nginx maps zones anonymously).
        let base = unsafe { ngx_slab_alloc(sp, payload) } as *mut u8;
        if base.is_null() {
            emerg!(
                log,
                "status_alert: could not allocate {payload} bytes in the shared zone"
            );
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: the slab allocator returns memory that is not handed out again.
        unsafe { ptr::write_bytes(base, 0, payload) };
        sp.data = base.cast();
    }

    let base = sp.data as *mut u8;
    let size = (sp.end as usize).saturating_sub(base as usize);
    // SAFETY: base..end is the payload allocated above (or by the previous configuration).
    let Some(zone) = (unsafe { Zone::from_raw(base, size) }) else {
        emerg!(log, "status_alert: shared zone is misaligned");
        return NGX_ERROR as ngx_int_t;
    };
    if !zone.is_formatted() && !zone.format(mcf.capacities.0, mcf.capacities.1) {
        emerg!(log, "status_alert: shared zone is too small");
        return NGX_ERROR as ngx_int_t;
    }

    let generation = zone.begin_generation();
    let name_keys: Vec<&[u8]> = mcf.names.iter().map(|n| n.name.as_bytes()).collect();
    let probe_keys: Vec<Vec<u8>> = mcf.probes.iter().map(|p| p.key()).collect();
    let probe_keys: Vec<&[u8]> = probe_keys.iter().map(Vec::as_slice).collect();
    let claimed = zone
        .claim_names(&name_keys, generation)
        .and_then(|n| zone.claim_probes(&probe_keys, generation).map(|p| (n, p)));
    let (name_ids, probe_ids) = match claimed {
        Ok(ids) => ids,
        Err(full) => {
            emerg!(
                log,
                "status_alert: shared zone holds {} slots, {} needed; raise status_alert_zone",
                full.capacity,
                full.needed
            );
            return NGX_ERROR as ngx_int_t;
        }
    };

    if !reused {
        if let Some(old) = mcf.old_zone {
            zone.import(&old);
        }
    }

    for (n, id) in mcf.names.iter_mut().zip(name_ids) {
        n.slot = &zone.names()[id];
    }
    for (p, id) in mcf.probes.iter_mut().zip(probe_ids) {
        p.slot = &zone.probes()[id];
    }
    mcf.zone = Some(zone);
    NGX_OK as ngx_int_t
}
