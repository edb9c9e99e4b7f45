//! How large a zone is: the bytes a configuration needs, automatic sizing with headroom, the
//! slab allocator's overhead, and the errors of a zone too small.

use core::mem::size_of;
use core::sync::atomic::Ordering::Relaxed;

use thiserror::Error;

use super::{NameSlot, ProbeSlot, Zone, ZoneHeader};

/// A zone that cannot hold what the configuration asks for.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ZoneError {
    /// The slots the configuration needs do not fit in what is left.
    #[error("needs {needed} more bytes, {free} are free")]
    Full {
        /// Bytes the new slots need.
        needed: usize,
        /// Bytes left in the zone.
        free: usize,
    },
    /// `status_alert_zone SIZE` names a running zone that the configuration does not fit in.
    #[error(
        "status_alert_zone {size_k}k cannot hold {names} names and {probes} probes: it needs \
         {needed} more bytes, {free} are free (slots of removed names are reused once the \
         workers that count into them have exited) in {place}"
    )]
    SizeCannotHold {
        /// The size, KiB.
        size_k: usize,
        /// NAMEs configured.
        names: usize,
        /// Probe targets configured.
        probes: usize,
        /// Bytes the new slots need.
        needed: usize,
        /// Bytes left in the zone.
        free: usize,
        /// `file:line` of `status_alert_zone`.
        place: String,
    },
    /// `status_alert_zone SIZE` is too small for the configuration.
    #[error(
        "status_alert_zone: size {size_k}k is too small for {names} names and {probes} probes, \
         at least {need_k}k is needed in {place}"
    )]
    SizeTooSmall {
        /// The size, KiB.
        size_k: usize,
        /// NAMEs configured.
        names: usize,
        /// Probe targets configured.
        probes: usize,
        /// The least size that would do, KiB.
        need_k: usize,
        /// `file:line` of `status_alert_zone`.
        place: String,
    },
}

/// Bytes needed for a zone holding the given numbers of slots.
pub fn zone_size(names: usize, probes: usize) -> usize {
    size_of::<ZoneHeader>() + names * size_of::<NameSlot>() + probes * size_of::<ProbeSlot>()
}

/// Slots an automatically sized zone is made for: headroom (an eighth, at least 8 and at most
/// 512) so that reloads adding a few names (or renaming some while old workers still count into
/// the old ones) keep the zone. Past the headroom a reload moves the counts into a larger zone.
/// The cap keeps shared memory under 16 KiB per configured NAME at any count (an eighth more of
/// 10,000 NAMEs was 18 MB of spare slots, 16.1 KiB per NAME).
pub fn auto_capacity(count: usize) -> usize {
    (count + (count / 8).clamp(8, 512)).next_multiple_of(8)
}

/// The slab allocator needs about one page header per page plus a few pages of its own.
pub fn shm_size_for_payload(payload: usize, pagesize: usize) -> usize {
    let pages = payload.div_ceil(pagesize) + 4;
    // nginx refuses zones below 8 pages.
    (pages * (pagesize + 64) + 2 * pagesize).max(16 * pagesize)
}

/// Inverse of [`shm_size_for_payload`]: usable bytes in a zone of `size`.
pub fn payload_for_shm_size(size: usize, pagesize: usize) -> usize {
    (size.saturating_sub(2 * pagesize) / (pagesize + 64)).saturating_sub(4) * pagesize
}

/// Where a zone's payload lies in its shared memory: `(offset, length)` within the mapping of
/// `map_size` bytes at `map_addr`, given `data`, the address the slab pool's `data` field holds.
///
/// Worker processes can write that field (it is in the mapping), so the master takes from it
/// only an offset, and only one that is page aligned and past the slab pool's first page (its
/// header and page table, which a payload must never overlap). The length comes from the
/// mapping's size alone ([`payload_for_shm_size`], what the master allocated) and must fit behind
/// the offset. `None` for anything else: the zone is damaged and is not read.
pub fn payload_in_mapping(
    map_addr: usize,
    map_size: usize,
    data: usize,
    pagesize: usize,
) -> Option<(usize, usize)> {
    if !pagesize.is_power_of_two() || map_addr % pagesize != 0 {
        return None;
    }
    let offset = data.checked_sub(map_addr)?;
    let len = payload_for_shm_size(map_size, pagesize);
    let fits = offset.checked_add(len).is_some_and(|end| end <= map_size);
    (fits && offset % pagesize == 0 && offset >= pagesize && len >= size_of::<ZoneHeader>())
        .then_some((offset, len))
}

/// What decides the primary zone's size: `status_alert_zone` (size and where it was set) or
/// automatic sizing, the configuration's keys, and the previous configuration's zones.
pub struct SizePlan<'a> {
    /// `status_alert_zone SIZE` and its `file:line`.
    pub explicit: Option<(usize, &'a str)>,
    /// Keys of the NAMEs.
    pub names: &'a [&'a [u8]],
    /// Keys of the probe targets.
    pub probes: &'a [&'a [u8]],
    /// The previous configuration's zones, with their sizes.
    pub old: &'a [(usize, Zone)],
    /// The system page size.
    pub pagesize: usize,
}

impl SizePlan<'_> {
    /// The size: an explicit one if the configuration fits (in the zone of that size that will
    /// be reused, or in a fresh one); automatically, the running primary's while it has room,
    /// else a fresh size with headroom that no old zone unable to hold us has.
    pub fn size(&self, alive: impl Fn(u32) -> bool + Copy) -> Result<usize, ZoneError> {
        let (names, probes) = (self.names, self.probes);
        let fits_old = |size: usize| {
            self.old
                .iter()
                .find(|(s, _)| *s == size)
                .map(|(_, z)| z.check(names, probes, alive))
        };
        if let Some((size, place)) = self.explicit {
            let need = zone_size(names.len(), probes.len());
            return match fits_old(size) {
                Some(Err(ZoneError::Full { needed, free })) => Err(ZoneError::SizeCannotHold {
                    size_k: size / 1024,
                    names: names.len(),
                    probes: probes.len(),
                    needed,
                    free,
                    place: place.to_string(),
                }),
                Some(Err(e)) => Err(e),
                Some(Ok(())) => Ok(size),
                None if payload_for_shm_size(size, self.pagesize) >= need => Ok(size),
                None => Err(ZoneError::SizeTooSmall {
                    size_k: size / 1024,
                    names: names.len(),
                    probes: probes.len(),
                    need_k: shm_size_for_payload(need, self.pagesize).div_ceil(1024),
                    place: place.to_string(),
                }),
            };
        }
        let primary = self
            .old
            .iter()
            .find(|(_, z)| z.header().superseded.load(Relaxed) == 0);
        if let Some((size, _)) = primary {
            if fits_old(*size) == Some(Ok(())) {
                return Ok(*size);
            }
        }
        let probe_capacity = if probes.is_empty() {
            0
        } else {
            auto_capacity(probes.len())
        };
        let payload = zone_size(auto_capacity(names.len()), probe_capacity);
        let mut size = shm_size_for_payload(payload, self.pagesize);
        // Never land on an old zone's size that cannot hold us (it would be reused).
        while fits_old(size).is_some_and(|r| r.is_err()) {
            size += self.pagesize;
        }
        Ok(size)
    }
}
