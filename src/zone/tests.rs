//! The zone on a heap buffer: layout, claiming across reloads, writers, hand-over.

use super::counters::BucketBounds;
use super::incidents::IncidentSummary;
use super::slots::PROBE_DOWN;
use super::*;
use crate::vocab::event::Level;

#[test]
fn alerting_is_stalled_after_three_intervals_without_evaluation() {
    let a = Alerting::default();
    assert_eq!(a.stalled_since(1_000_000), None, "never configured");
    a.interval_ms.store(10_000, Relaxed);
    a.configured_ms.store(100_000, Relaxed);
    assert_eq!(
        a.stalled_since(130_000),
        None,
        "three intervals are allowed"
    );
    assert_eq!(a.stalled_since(130_001), Some(100_000), "from the commit");
    a.evaluated(125_000, 42);
    assert_eq!(a.evaluations.load(Relaxed), 1);
    assert_eq!(a.stalled_since(155_000), None);
    assert_eq!(
        a.stalled_since(155_001),
        Some(125_000),
        "from the last round"
    );
    a.evaluated_elsewhere.store(1, Relaxed);
    assert_eq!(a.stalled_since(900_000), None, "another master evaluates");
}

#[test]
fn the_stall_is_logged_once_a_minute_by_one_caller() {
    let a = Alerting::default();
    assert!(a.should_log_stall(60_000));
    assert!(!a.should_log_stall(60_001));
    assert!(!a.should_log_stall(119_999));
    assert!(a.should_log_stall(120_000));
}
use std::alloc::{alloc_zeroed, dealloc, Layout};

struct Buf(*mut u8, Layout);
impl Buf {
    fn new(size: usize) -> Buf {
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: non-zero size.
        Buf(unsafe { alloc_zeroed(layout) }, layout)
    }
    fn zone(&self) -> Zone {
        // SAFETY: zeroed, aligned, lives as long as the test.
        unsafe { Zone::from_raw(self.0, self.1.size()) }.unwrap()
    }
}
impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.0, self.1) }
    }
}

fn keys<'a>(names: &[&'a str]) -> Vec<&'a [u8]> {
    names.iter().map(|s| s.as_bytes()).collect()
}

fn nobody(_: u32) -> bool {
    false
}

fn everybody(_: u32) -> bool {
    true
}

fn claim_names<'z>(z: &'z Zone, names: &[&str]) -> Vec<&'z NameSlot> {
    z.claim(&keys(names), &[], nobody).unwrap().names
}

#[test]
fn layout_is_cache_line_aligned() {
    assert_eq!(size_of::<ZoneHeader>() % 64, 0);
    assert_eq!(size_of::<NameSlot>() % 64, 0);
    assert_eq!(size_of::<ProbeSlot>() % 64, 0);
    assert_eq!(size_of::<ProbeSlot>(), 896);
    // Documented in the README (memory per NAME): at most 16 KiB including the histogram
    // window (6,664 bytes), the burn-rate ring (2,312) and the incident log (312).
    assert_eq!(size_of::<crate::zone::window::WindowRing>(), 6664);
    assert_eq!(size_of::<NameSlot>(), 14400);
    assert!(size_of::<NameSlot>() <= 16 * 1024);
    assert_eq!(auto_capacity(1), 16);
    assert_eq!(auto_capacity(100), 112);
    assert_eq!(auto_capacity(4_096), 4_608);
    assert_eq!(auto_capacity(10_000), 10_512);
    // Shared memory per configured NAME at 10,000, with the headroom and the slab's overhead.
    let shm = shm_size_for_payload(zone_size(auto_capacity(10_000), 0), 4096);
    assert!(shm / 10_000 <= 16 * 1024, "{} bytes per NAME", shm / 10_000);
}

#[test]
fn claim_keeps_existing_slots_across_generations() {
    let b = Buf::new(zone_size(4, 0));
    let z = b.zone();
    let first = claim_names(&z, &["a", "b"]);
    first[0].counters.record(200, 1);
    first[1].counters.record(500, 1);

    // Reload: "b" removed, "c" added, "a" kept.
    let second = claim_names(&z, &["c", "a"]);
    assert!(core::ptr::eq(second[1], first[0]), "a keeps its slot");
    assert!(
        !core::ptr::eq(second[0], first[1]),
        "c does not take b's slot"
    );
    assert_eq!(second[1].counters.snapshot().total(), 1);
    assert_eq!(second[0].counters.snapshot().total(), 0);
}

#[test]
fn removed_then_readded_name_keeps_counters() {
    let b = Buf::new(zone_size(4, 0));
    let z = b.zone();
    let a = claim_names(&z, &["a"])[0];
    a.counters.record(200, 1);
    claim_names(&z, &["x"]);
    let a2 = claim_names(&z, &["a"])[0];
    assert!(core::ptr::eq(a, a2));
    assert_eq!(a2.counters.snapshot().total(), 1);
}

#[test]
fn a_slot_is_reused_only_once_no_process_can_write_it() {
    let b = Buf::new(zone_size(2, 0));
    let z = b.zone();
    let first = z.claim(&keys(&["a", "b"]), &[], nobody).unwrap();
    // Worker 10 of that generation still runs (an old worker finishing its requests).
    z.register_writer(10, first.generation, everybody);
    first.names[0].counters.record(500, 1);
    // Renaming both while it lives: no slot is free and none may be reused.
    let full = z.check(&keys(&["c", "d"]), &[], everybody);
    assert_eq!(
        full,
        Err(ZoneError::Full {
            needed: 2 * size_of::<NameSlot>(),
            free: 0
        })
    );
    // Once it has exited, the retired slots are reused, reset.
    let renamed = z.claim(&keys(&["c", "d"]), &[], nobody).unwrap();
    for s in &renamed.names {
        assert_eq!(s.counters.snapshot().total(), 0, "reused slot is reset");
    }
}

#[test]
fn fresh_space_before_retired_slots_and_oldest_retired_first() {
    let b = Buf::new(zone_size(3, 0));
    let z = b.zone();
    let a = claim_names(&z, &["a"])[0];
    let bb = claim_names(&z, &["b"])[0];
    // "a" retired first, then "b": "c" takes the last fresh slot, "d" the oldest retired.
    let cd = claim_names(&z, &["c"]);
    let d = claim_names(&z, &["c", "d"]);
    assert!(!core::ptr::eq(cd[0], a) && !core::ptr::eq(cd[0], bb));
    assert!(
        core::ptr::eq(d[1], a),
        "the longest retired slot is reused first"
    );
}

#[test]
fn one_size_holds_any_mix_of_names_and_probes() {
    let b = Buf::new(zone_size(2, 4));
    let z = b.zone();
    let c = z
        .claim(&keys(&["a", "b"]), &keys(&["p1", "p2"]), nobody)
        .unwrap();
    c.probes[0].probe.state.store(2, Relaxed);
    let c2 = z
        .claim(&keys(&["a"]), &keys(&["p0", "p1", "p2", "p3"]), nobody)
        .unwrap();
    assert!(
        core::ptr::eq(c2.probes[1], c.probes[0]),
        "probe slots never move"
    );
    assert_eq!(c2.probes[1].probe.state.load(Relaxed), 2);
    assert_eq!(c2.probes.len(), 4);
    assert!(z.check(&keys(&["a", "b", "x"]), &[], nobody).is_err());
}

#[test]
fn writers_are_remembered_until_they_die() {
    let b = Buf::new(zone_size(1, 0));
    let z = b.zone();
    z.format();
    z.register_writer(7, 1, everybody);
    z.register_writer(8, 1, everybody);
    assert!(z.has_live_writers(|pid| pid == 8));
    assert!(!z.has_live_writers(|pid| pid == 9));
    // The same pid updates its entry; a dead writer's entry is reused.
    z.register_writer(8, 2, everybody);
    z.register_writer(9, 3, |pid| pid != 7);
    assert_eq!(z.live_writer_generations(&|_| true), vec![3, 2]);
}

#[test]
fn a_full_writer_table_never_forgets_a_live_writer() {
    let b = Buf::new(zone_size(2, 0));
    let z = b.zone();
    let first = z.claim(&keys(&["a", "b"]), &[], nobody).unwrap();
    let pids = 1..=MAX_WRITERS as u32 + 1;
    for pid in pids.clone() {
        z.register_writer(pid, first.generation, everybody);
    }
    // Whichever of them is the one still running, renaming both finds no slot to reuse.
    for survivor in pids {
        let full = z.check(&keys(&["c", "d"]), &[], |pid| pid == survivor);
        assert!(full.is_err(), "pid {survivor}'s slots would be reused");
    }
}

#[test]
fn an_unregistered_writer_keeps_later_retired_slots_for_good() {
    let b = Buf::new(zone_size(3, 0));
    let z = b.zone();
    claim_names(&z, &["a"]);
    let second = z.claim(&keys(&["b"]), &[], nobody).unwrap();
    for pid in 1..=MAX_WRITERS as u32 + 1 {
        z.register_writer(pid, second.generation, everybody);
    }
    // All of them have exited, as far as anyone can tell. "a" (retired before that
    // generation) can be reused; "b" (retired after it) cannot, in this zone.
    let third = claim_names(&z, &["c", "d"]);
    assert_eq!(third.len(), 2);
    assert!(!z.has_live_writers(nobody), "nothing keeps the zone mapped");
    assert!(z.check(&keys(&["e", "f"]), &[], nobody).is_err());
    assert!(z.check(&keys(&["c", "e"]), &[], nobody).is_err());
}

#[test]
fn counts_move_into_a_new_zone_and_state_is_copied() {
    let old_buf = Buf::new(zone_size(2, 1));
    let old = old_buf.zone();
    let c = old
        .claim(&keys(&["a", "b"]), &keys(&["be http://x/"]), nobody)
        .unwrap();
    for _ in 0..3 {
        c.names[1].counters.record(503, 1);
    }
    c.names[1].alert.level.store(2, Relaxed);
    c.probes[0].probe.state.store(2, Relaxed);
    old.header().notifications[0].store(7, Relaxed);

    let new_buf = Buf::new(zone_size(8, 2));
    let new = new_buf.zone();
    let n = new
        .claim(&keys(&["b", "c"]), &keys(&["be http://x/"]), nobody)
        .unwrap();
    new.import_state(&old);
    let pairs = new.name_pairs(&old);
    new.move_counts(&old, &pairs);
    assert_eq!(n.names[0].counters.snapshot().errors(), 3);
    assert_eq!(n.names[0].alert.level.load(Relaxed), 2);
    assert_eq!(n.names[1].counters.snapshot().total(), 0);
    assert_eq!(n.probes[0].probe.state.load(Relaxed), 2);
    assert_eq!(new.header().notifications[0].load(Relaxed), 7);
    // An old worker counts one more into the old zone: the next move brings it over.
    c.names[1].counters.record(503, 1);
    new.move_counts(&old, &pairs);
    assert_eq!(n.names[0].counters.snapshot().errors(), 4);
    assert_eq!(c.names[1].counters.snapshot().total(), 0);
}

#[test]
fn new_bucket_bounds_restart_the_histogram_only() {
    let b = Buf::new(zone_size(1, 0));
    let z = b.zone();
    let s = claim_names(&z, &["a"])[0];
    let default = BucketBounds::default();
    s.adopt_bucket_bounds(&default);
    s.counters.record(200, 3);
    s.adopt_bucket_bounds(&default);
    assert_eq!(
        s.counters.snapshot().buckets[0],
        1,
        "same bounds keep counts"
    );
    s.adopt_bucket_bounds(&BucketBounds::new(&[1, 2]).unwrap());
    let snap = s.counters.snapshot();
    assert_eq!((snap.buckets[0], snap.total()), (0, 1));
}

#[test]
fn incident_state_survives_a_resize_and_a_reset_slot_forgets_it() {
    let old_buf = Buf::new(zone_size(1, 0));
    let old = old_buf.zone();
    let o = claim_names(&old, &["a"])[0];
    o.incidents.open(
        crate::zone::incidents::IncidentKind::Latency,
        1_000,
        Level::Warning,
        0.7,
    );
    o.latency.state.level.store(1, Relaxed);
    o.latency.state.incident_since_ms.store(1_000, Relaxed);
    o.latency.set_estimate_ms(Some(700.0));
    o.slo.set_rates([1.0, 2.0, 3.0, 4.0]);
    let new_buf = Buf::new(zone_size(2, 0));
    let new = new_buf.zone();
    let n = claim_names(&new, &["a"])[0];
    new.import_state(&old);
    let summary = n.incident_summary(11_000);
    assert_eq!((summary.opened[1], summary.firing_seconds[1]), (1, 10));
    assert_eq!(n.latency.estimate_seconds(), Some(0.7));
    assert_eq!(n.slo.rates(), [1.0, 2.0, 3.0, 4.0]);
    n.reset();
    assert_eq!(n.incident_summary(11_000), IncidentSummary::default());
    assert_eq!(n.latency.estimate_seconds(), None);
}

#[test]
fn probe_down_time_counts_the_current_period() {
    let b = Buf::new(zone_size(0, 1));
    let z = b.zone();
    let p = &z
        .claim(&[], &keys(&["be http://x/"]), nobody)
        .unwrap()
        .probes[0]
        .probe;
    p.state.store(PROBE_DOWN, Relaxed);
    p.since_ms.store(10_000, Relaxed);
    assert_eq!(p.down_seconds(70_000), 60);
    p.book_down_time(10_000, 100_000);
    p.state.store(1, Relaxed);
    p.since_ms.store(100_000, Relaxed);
    assert_eq!(p.down_seconds(500_000), 90);
    p.reset();
    assert_eq!(p.down_seconds(500_000), 0);
}

#[test]
fn exported_state_is_taken_over_by_key_in_another_zone() {
    let a_buf = Buf::new(zone_size(2, 1));
    let a = a_buf.zone();
    let c = a
        .claim(&keys(&["api", "web"]), &keys(&["api tcp://x:1"]), nobody)
        .unwrap();
    c.names[0].alert.level.store(2, Relaxed);
    c.names[0].alert.incident_since_ms.store(1_000, Relaxed);
    c.probes[0].probe.state.store(2, Relaxed);
    c.probes[0].probe.since_ms.store(900, Relaxed);
    c.names[0].latency.state.level.store(1, Relaxed);
    c.names[0]
        .latency
        .state
        .incident_since_ms
        .store(2_000, Relaxed);
    c.names[0].slo.state.level.store(2, Relaxed);
    c.names[0].slo.state.last_post_ms.store(3_000, Relaxed);
    // An after= destination was told of the 5xx incident and of the probe's DOWN.
    let key = super::routes::route_key("discord", "https://a");
    let column = a.route_columns(&[key])[0].unwrap();
    c.names[0].routes[column][0].store(1_000 << 2 | 1);
    c.probes[0].probe.routes[column].store(900 << 2 | 1);
    let state = a.export_state();
    // Through text, as it travels between the masters of a binary upgrade.
    let state: serde_json::Value = serde_json::from_str(&state.to_string()).unwrap();

    let b_buf = Buf::new(zone_size(2, 1));
    let b = b_buf.zone();
    let n = b
        .claim(&keys(&["web", "api"]), &keys(&["api tcp://x:1"]), nobody)
        .unwrap();
    b.import_exported(&state, 5_000);
    assert_eq!(n.names[1].alert.level.load(Relaxed), 2);
    assert_eq!(n.names[1].latency.state.level.load(Relaxed), 1);
    assert_eq!(
        n.names[1].latency.state.incident_since_ms.load(Relaxed),
        2_000
    );
    assert_eq!(n.names[1].slo.state.level.load(Relaxed), 2);
    assert_eq!(n.names[1].slo.state.last_post_ms.load(Relaxed), 3_000);
    assert_eq!(n.names[1].alert.incident_since_ms.load(Relaxed), 1_000);
    assert_eq!(n.names[0].alert.level.load(Relaxed), 0);
    assert_eq!(n.probes[0].probe.state.load(Relaxed), 2);
    assert_eq!(n.probes[0].probe.since_ms.load(Relaxed), 900);
    let column = b.route_columns(&[key])[0].unwrap();
    assert_eq!(n.names[1].routes[column][0].load(), 1_000 << 2 | 1);
    assert_eq!(n.names[0].routes[column][0].load(), 0);
    assert_eq!(n.probes[0].probe.routes[column].load(), 900 << 2 | 1);
    // Garbage changes nothing.
    b.import_exported(
        &serde_json::json!({"version": 1, "names": {"api": ["x"]}}),
        6_000,
    );
    b.import_exported(
        &serde_json::json!({"version": 9, "names": {"api": [0, 0, 0]}}),
        6_000,
    );
    assert_eq!(n.names[1].alert.adopted_at_ms.load(Relaxed), 5_000);
    assert_eq!(n.names[1].alert.level.load(Relaxed), 2);
    // An older exporter's three values leave the latency and error-budget levels alone.
    b.import_exported(
        &serde_json::json!({"version": 1, "names": {"api": [1, 7_000, 0]}}),
        8_000,
    );
    assert_eq!(n.names[1].alert.level.load(Relaxed), 1);
    assert_eq!(n.names[1].latency.state.level.load(Relaxed), 1);
    assert_eq!(n.names[1].slo.state.level.load(Relaxed), 2);
    // 5xx ok but latency firing: still held; nothing firing: nothing to hold.
    let json = serde_json::json!({"version": 1, "names": {
        "web": [0, 0, 0, 2, 9_000, 0, 0, 0, 0],
        "api": [0, 0, 0, 0, 0, 0, 0, 0, 0],
    }});
    b.import_exported(&json, 9_000);
    assert_eq!(n.names[0].alert.adopted_at_ms.load(Relaxed), 9_000);
    assert_eq!(n.names[1].alert.adopted_at_ms.load(Relaxed), 0);
}

#[test]
fn a_reload_to_other_bucket_bounds_drops_the_histogram_only() {
    let old_buf = Buf::new(zone_size(1, 0));
    let old = old_buf.zone();
    let o = claim_names(&old, &["a"])[0];
    let custom = BucketBounds::new(&[100, 1000]).unwrap();
    o.adopt_bucket_bounds(&custom);
    o.counters.record_in(503, 50, custom.as_ms());
    let current = crate::zone::window::SampleCounts::from_snapshot(&o.counters.snapshot());
    let buckets = o.counters.snapshot().buckets;
    o.window
        .advance_with_histogram(1_000, &current, &buckets, 10_000, 1_000);

    let new_buf = Buf::new(zone_size(1, 0));
    let new = new_buf.zone();
    let n = claim_names(&new, &["a"])[0];
    n.adopt_bucket_bounds(&BucketBounds::default());
    new.import_state(&old);
    let pairs = new.name_pairs(&old);
    new.move_counts(&old, &pairs);
    let snap = n.counters.snapshot();
    assert_eq!((snap.total(), snap.errors()), (1, 1));
    assert!(snap.buckets.iter().all(|b| *b == 0));
    // The copied window kept its status figures but restarted its histogram: no bucket
    // count goes backwards (which would read as ~2^32 requests).
    let current = crate::zone::window::SampleCounts::from_snapshot(&snap);
    let (figures, histogram) =
        n.window
            .advance_with_histogram(12_000, &current, &snap.buckets, 10_000, 1_000);
    assert_eq!(figures.total(), 0);
    assert_eq!(histogram.total(), 0);
}

#[test]
fn window_figures_are_read_as_one_pair() {
    let b = Buf::new(zone_size(1, 0));
    let z = b.zone();
    let a = &claim_names(&z, &["a"])[0].alert;
    a.set_window(10, 3);
    assert_eq!(a.window(), (10, 3));
    // A writer killed between its two stores leaves the sequence odd: readers still get a
    // pair with no more 5xx than requests.
    a.window_seq.fetch_add(1, Relaxed);
    a.window_errors.store(50, Relaxed);
    assert_eq!(a.window(), (10, 10));
}

#[test]
fn size_plan_keeps_a_zone_with_room_and_grows_past_one_without() {
    let page = 4096;
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    let few: Vec<&[u8]> = names[..3].iter().map(|n| n.as_bytes()).collect();
    let many: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let plan = |names: &[&[u8]], old: &[(usize, Zone)], explicit| {
        SizePlan {
            explicit,
            names,
            probes: &[],
            old,
            pagesize: page,
        }
        .size(nobody)
    };
    let first = plan(&few, &[], None).unwrap();
    let buf = Buf::new(payload_for_shm_size(first, page));
    let z = buf.zone();
    z.claim(&few, &[], nobody).unwrap();
    let old = [(first, z)];
    assert_eq!(
        plan(&few, &old, None),
        Ok(first),
        "same configuration: same zone"
    );
    let grown = plan(&many, &old, None).unwrap();
    assert!(grown > first, "40 NAMEs do not fit the zone made for 3");
    // Explicit sizes: too small is an error naming the place; the old zone is checked.
    let err = plan(&many, &[], Some((64 * 1024, "nginx.conf:3")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("too small") && err.contains("nginx.conf:3"),
        "{err}"
    );
    let err = plan(&many, &old, Some((first, "nginx.conf:4")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot hold 40 names"), "{err}");
    assert!(
        err.contains(": it needs ") && err.ends_with(" in nginx.conf:4"),
        "{err}"
    );
}

#[test]
fn shm_size_round_trips() {
    for payload in [1usize, 4096, 150_000, 12_000_000] {
        let size = shm_size_for_payload(payload, 4096);
        assert!(payload_for_shm_size(size, 4096) >= payload, "{payload}");
        assert!(size >= 8 * 4096, "nginx needs at least 8 pages");
    }
}

#[test]
fn the_payload_is_trusted_only_inside_its_mapping() {
    let (page, map) = (4096, 0x7f00_0000_0000usize);
    let size = shm_size_for_payload(zone_size(8, 8), page);
    let len = payload_for_shm_size(size, page);
    // Where nginx's slab allocator puts it: a few pages in.
    assert_eq!(
        payload_in_mapping(map, size, map + 3 * page, page),
        Some((3 * page, len))
    );
    // The last place it fits.
    let last = size - len;
    let last = last - last % page;
    assert_eq!(
        payload_in_mapping(map, size, map + last, page),
        Some((last, len))
    );
    for (data, why) in [
        (0, "null"),
        (map - page, "before the mapping"),
        (map, "over the slab pool's header"),
        (map + 3 * page + 64, "not page aligned"),
        (map + last + page, "runs past the end"),
        (map + size, "at the end"),
        (usize::MAX - page + 1, "wraps around"),
    ] {
        assert_eq!(payload_in_mapping(map, size, data, page), None, "{why}");
    }
    assert_eq!(payload_in_mapping(map, size, map + page, 0), None);
    assert_eq!(payload_in_mapping(map + 8, size, map + page, page), None);
    // A mapping too small for a header has no payload.
    assert_eq!(payload_in_mapping(map, 4 * page, map + page, page), None);
}

#[test]
fn counts_in_the_header_are_checked_against_the_real_size() {
    let b = Buf::new(zone_size(2, 1));
    let z = b.zone();
    z.claim(&keys(&["a"]), &keys(&["p"]), nobody).unwrap();
    let h = z.header();
    for (names, probes) in [
        (3, 0),
        (0, 99),
        (u32::MAX, 0),
        (0, u32::MAX),
        (u32::MAX, u32::MAX),
    ] {
        h.name_count.store(names, Relaxed);
        h.probe_count.store(probes, Relaxed);
        assert!(!z.is_formatted(), "{names} names, {probes} probes");
        assert!(z.names().is_empty() && z.probes().is_empty());
        assert!(z.name_pairs(&z).is_empty());
    }
    // A header claiming another size is not read either.
    h.name_count.store(1, Relaxed);
    h.probe_count.store(1, Relaxed);
    assert_eq!(z.names().len(), 1);
    h.size.store(u64::MAX, Relaxed);
    assert!(z.names().is_empty() && z.probes().is_empty());
}

#[test]
fn slots_are_read_with_the_count_that_was_checked() {
    let b = Buf::new(zone_size(2, 2));
    let z = b.zone();
    z.claim(&keys(&["a", "b"]), &keys(&["p", "q"]), nobody)
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Stops the worker however the reader ends (a failed assertion too).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }
    std::thread::scope(|s| {
        // A worker flipping the counts between sane and absurd values.
        s.spawn(|| {
            let h = z.header();
            while !stop.load(Relaxed) {
                for n in [2, u32::MAX, 1, 1 << 20] {
                    h.name_count.store(n, Relaxed);
                    h.probe_count.store(n, Relaxed);
                }
            }
        });
        let _stop = Stop(&stop);
        for _ in 0..200_000 {
            assert!(z.names().len() <= 2 && z.probes().len() <= 2);
        }
    });
}

#[test]
fn a_worker_changing_the_counts_during_a_claim_cannot_move_it_out_of_the_zone() {
    let b = Buf::new(zone_size(3, 2));
    let z = b.zone();
    z.claim(&keys(&["a"]), &keys(&["p"]), nobody).unwrap();
    let h = z.header();
    // `alive` runs while the claim plans: a worker rewrites the counts right then.
    let racing = |_| {
        h.name_count.store(u32::MAX, Relaxed);
        h.probe_count.store(u32::MAX, Relaxed);
        false
    };
    z.register_writer(1, 1, everybody);
    let c = z
        .claim(&keys(&["a", "b"]), &keys(&["p", "q"]), racing)
        .unwrap();
    let end = b.0 as usize + b.1.size();
    for s in c.names.iter().map(|s| ptr_range(*s)) {
        assert!(s.0 >= b.0 as usize && s.1 <= end);
    }
    for s in c.probes.iter().map(|s| ptr_range(*s)) {
        assert!(s.0 >= b.0 as usize && s.1 <= end);
    }
    // The claim wrote the counts it planned with.
    assert_eq!((z.names().len(), z.probes().len()), (2, 2));
}

fn ptr_range<T>(t: &T) -> (usize, usize) {
    let start = core::ptr::from_ref(t) as usize;
    (start, start + size_of::<T>())
}

#[test]
fn fnv1a64_is_the_standard_one() {
    assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn long_keys_are_shortened_to_a_prefix_and_a_hash_of_the_whole() {
    let short = b"be http://h/".as_slice();
    assert!(matches!(slot_key(short, 512), std::borrow::Cow::Borrowed(k) if k == short));
    let exact = vec![b'x'; 512];
    assert_eq!(slot_key(&exact, 512).as_ref(), exact.as_slice());

    let long = [short, &[b'x'; 600]].concat();
    let k = slot_key(&long, PROBE_KEY_MAX);
    assert_eq!(k.len(), PROBE_KEY_MAX);
    assert_eq!(&k[..495], &long[..495]);
    // Pinned: a key must map to the same slot in every release.
    assert_eq!(&k[495..], b"#a03a5fdbd10d3581");
    assert_eq!(slot_key(&long, PROBE_KEY_MAX), k, "stable");
    // Keys alike in their first 512 bytes (and more) still differ.
    let mut other = long.clone();
    *other.last_mut().unwrap() = b'y';
    assert_ne!(slot_key(&other, PROBE_KEY_MAX), k);
    let longer = [long.as_slice(), b"x"].concat();
    assert_ne!(slot_key(&longer, PROBE_KEY_MAX), k);
    assert_eq!(slot_key(&long, NAME_KEY_MAX).len(), NAME_KEY_MAX);
}

#[test]
fn long_keys_get_slots_of_their_own_across_reloads() {
    let b = Buf::new(zone_size(0, 4));
    let z = b.zone();
    let base = format!("be http://h/{}", "x".repeat(600));
    let (one, two) = (format!("{base}1"), format!("{base}2"));
    let probes = keys(&[one.as_str(), two.as_str()]);
    let first = z.claim(&[], &probes, nobody).unwrap();
    assert!(!core::ptr::eq(first.probes[0], first.probes[1]));
    first.probes[1].probe.state.store(PROBE_DOWN, Relaxed);
    let reloaded = z
        .claim(&[], &keys(&[two.as_str(), one.as_str()]), nobody)
        .unwrap();
    assert!(core::ptr::eq(reloaded.probes[0], first.probes[1]));
    assert!(core::ptr::eq(reloaded.probes[1], first.probes[0]));
    assert_eq!(reloaded.probes[0].probe.state.load(Relaxed), PROBE_DOWN);
    assert_eq!(z.probes().len(), 2, "no slot was added");
}

#[test]
fn unformatted_zone_has_no_slots() {
    let b = Buf::new(zone_size(2, 0));
    let z = b.zone();
    assert!(!z.is_formatted());
    assert!(z.names().is_empty());
}

#[test]
fn routing_state_keeps_its_column_across_reorders_and_is_cleared_with_its_destination() {
    use super::routes::route_key;
    let b = Buf::new(zone_size(1, 0));
    let z = b.zone();
    let slot = claim_names(&z, &["api"])[0];
    let (discord, slack) = (
        route_key("discord", "https://a"),
        route_key("slack", "https://b"),
    );
    assert_ne!(discord, slack);
    let columns = z.route_columns(&[0, discord, slack]);
    let (d, s) = (columns[1].unwrap(), columns[2].unwrap());
    assert_eq!(
        columns[0], None,
        "a destination that gets everything keeps no state"
    );
    slot.routes[d][0].store(7);
    slot.routes[s][3].store(9);
    // Reordered by a reload: same columns, same state.
    assert_eq!(z.route_columns(&[slack, discord]), [Some(s), Some(d)]);
    assert_eq!((slot.routes[d][0].load(), slot.routes[s][3].load()), (7, 9));
    // Slack removed: its column is cleared and can go to a new destination.
    let json = route_key("json", "https://c");
    let columns = z.route_columns(&[discord, json]);
    assert_eq!(columns[0], Some(d));
    assert_eq!(slot.routes[d][0].load(), 7);
    assert_eq!(slot.routes[columns[1].unwrap()][3].load(), 0);
}

#[test]
fn fresh_slots_start_as_zeros_whatever_the_memory_held() {
    // Only the header is zeroed by the zone's creator; the rest holds junk (as nginx's slab
    // allocator leaves it in a build with debug malloc).
    let size = size_of::<ZoneHeader>() + 3 * size_of::<NameSlot>() + 2 * size_of::<ProbeSlot>();
    let buf = Buf::new(size);
    // SAFETY: the buffer is `size` bytes; the header is zeroed again right after.
    unsafe {
        core::ptr::write_bytes(buf.0, 0xA5, size);
        core::ptr::write_bytes(buf.0, 0, size_of::<ZoneHeader>());
    }
    let z = buf.zone();
    let claimed = z
        .claim(&keys(&["a", "b"]), &keys(&["p http://x/"]), nobody)
        .unwrap();
    for slot in &claimed.names {
        assert_eq!(slot.counters.snapshot().total(), 0);
        assert_eq!(slot.alert.window(), (0, 0));
        assert_eq!(slot.evaluated_since_ms.load(Relaxed), 0);
        assert_eq!(slot.key.retired_generation.load(Relaxed), 0);
    }
    let p = claimed.probes[0];
    assert_eq!(p.probe.since_ms.load(Relaxed), 0);
    assert_eq!(p.key.retired_generation.load(Relaxed), 0);
    // The space not carved yet is left alone (not written page by page).
    let third_name = size_of::<ZoneHeader>() + 2 * size_of::<NameSlot>() + 100;
    // SAFETY: inside the buffer, in no slot handed out.
    assert_eq!(unsafe { *buf.0.add(third_name) }, 0xA5);
}
