//! What carries over when a configuration takes over from the previous one: alert state
//! copied into a new zone, counts moved from zones old workers still write, and the evaluator's
//! state exported for the other master of a binary upgrade.

use core::sync::atomic::Ordering::Relaxed;

use super::claim::lossy;
use super::key::by_key;
use super::{NameSlot, ProbeSlot, Zone};
use crate::vocab::reason::Reason;

impl Zone {
    /// Copies the evaluator's state (windows, alert levels, probe health, delivery counts) of
    /// every live slot from `old`, matched by key. Counters are moved, not copied: see
    /// [`Zone::move_counts`].
    pub fn import_state(&self, old: &Zone) {
        if !old.is_formatted() {
            return;
        }
        for (slot, o) in self.name_pairs(old) {
            slot.window.copy_from(&o.window);
            if slot.counters.bounds_id.load(Relaxed) != o.counters.bounds_id.load(Relaxed) {
                // The buckets will not move (see `NameCounters::move_from`): the window's
                // bucket history restarts with them.
                slot.window.reset_histogram();
            }
            slot.alert.copy_from(&o.alert);
            slot.long_window.copy_from(&o.long_window);
            slot.latency.state.copy_from(&o.latency.state);
            slot.latency
                .estimate_us_plus_one
                .store(o.latency.estimate_us_plus_one.load(Relaxed), Relaxed);
            slot.slo.state.copy_from(&o.slo.state);
            slot.slo.set_rates(o.slo.rates());
            slot.incidents.copy_from(&o.incidents);
            slot.mute_gates.copy_from(&o.mute_gates);
            slot.evaluated_since_ms
                .store(o.evaluated_since_ms.load(Relaxed), Relaxed);
            slot.traffic.copy_from(&o.traffic);
            slot.copy_routes_from(o);
        }
        self.copy_route_directory(old);
        let by_key = by_key(old.probes(), |s: &ProbeSlot| &s.key);
        for slot in self.probes().iter().filter(|s| s.key.is_live()) {
            if let Some(o) = by_key.get(&slot.key.to_vec()) {
                slot.probe.copy_from(&o.probe);
                slot.certificate.copy_from(&o.certificate);
                // A snapshot: tries old workers count into `old` after this are not moved.
                slot.peer.copy_from(&o.peer);
                slot.address.copy_from(&o.address);
            }
        }
        let (h, oh) = (self.header(), old.header());
        h.eval_tick_ms
            .fetch_max(oh.eval_tick_ms.load(Relaxed), Relaxed);
        let (a, oa) = (&h.alerting, &oh.alerting);
        for (mine, theirs) in [
            (&a.evaluations, &oa.evaluations),
            (&a.last_evaluation_ms, &oa.last_evaluation_ms),
            (&a.helper_restarts, &oa.helper_restarts),
            (&a.stall_logged_ms, &oa.stall_logged_ms),
        ] {
            mine.fetch_max(theirs.load(Relaxed), Relaxed);
        }
    }

    /// The evaluator's state of every live slot, for the evaluator that comes next when it
    /// cannot read this zone (the other master of a binary upgrade): per NAME its alert level,
    /// incident start and last post, then the same three for `latency=`, for `slo=` and for
    /// `traffic=` (an importer that knows only the first three ignores the rest); per probe
    /// target its health. The traffic history stays behind: the other master counts into a
    /// zone of its own, so its history starts over (a percentage waits for 12 new windows).
    pub fn export_state(&self) -> serde_json::Value {
        let mut names = serde_json::Map::new();
        for s in self.names().iter().filter(|s| s.key.is_live()) {
            let a = &s.alert;
            let (l, o, t) = (&s.latency.state, &s.slo.state, &s.traffic.state);
            let v = [
                u64::from(a.level.load(Relaxed)),
                a.incident_since_ms.load(Relaxed),
                a.last_post_ms.load(Relaxed),
                u64::from(l.level.load(Relaxed)),
                l.incident_since_ms.load(Relaxed),
                l.last_post_ms.load(Relaxed),
                u64::from(o.level.load(Relaxed)),
                o.incident_since_ms.load(Relaxed),
                o.last_post_ms.load(Relaxed),
                u64::from(t.level.load(Relaxed)),
                t.incident_since_ms.load(Relaxed),
                t.last_post_ms.load(Relaxed),
            ];
            names.insert(lossy(&s.key), serde_json::json!(v));
        }
        let mut probes = serde_json::Map::new();
        for s in self.probes().iter().filter(|s| s.key.is_live()) {
            let p = &s.probe;
            let v = [
                u64::from(p.state.load(Relaxed)),
                p.since_ms.load(Relaxed),
                u64::from(p.consecutive_failures.load(Relaxed)),
                u64::from(p.consecutive_successes.load(Relaxed)),
                u64::from(p.last_reason.load(Relaxed)),
                u64::from(p.last_status.load(Relaxed)),
            ];
            probes.insert(lossy(&s.key), serde_json::json!(v));
        }
        serde_json::json!({
            "version": 1,
            "names": names,
            "probes": probes,
            "routes": self.export_routes(),
        })
    }

    /// The routing state (`zone/routes.rs`) by destination key (in hex, JSON numbers lose
    /// precision above 2^53): per NAME one word per alert kind, per probe target one word.
    fn export_routes(&self) -> serde_json::Value {
        let mut routes = serde_json::Map::new();
        for (column, entry) in self.header().routes.iter().enumerate() {
            let key = entry.load(Relaxed);
            if key == 0 {
                continue;
            }
            let mut names = serde_json::Map::new();
            for s in self.names().iter().filter(|s| s.key.is_live()) {
                let words: Vec<u64> = s.routes[column].iter().map(|c| c.load()).collect();
                if words.iter().any(|w| *w != 0) {
                    names.insert(lossy(&s.key), serde_json::json!(words));
                }
            }
            let mut probes = serde_json::Map::new();
            for s in self.probes().iter().filter(|s| s.key.is_live()) {
                let word = s.probe.routes[column].load();
                if word != 0 {
                    probes.insert(lossy(&s.key), serde_json::json!(word));
                }
            }
            routes.insert(
                format!("{key:016x}"),
                serde_json::json!({"names": names, "probes": probes}),
            );
        }
        serde_json::Value::Object(routes)
    }

    /// Takes over the routing state of [`Zone::export_routes`] for the keys and slots this
    /// zone has; a key gets a free column (the evaluator's `route_columns` then frees the
    /// columns of destinations it no longer has).
    fn import_routes(&self, routes: &serde_json::Value) {
        let Some(routes) = routes.as_object() else {
            return;
        };
        for (key, state) in routes {
            let Some(key) = u64::from_str_radix(key, 16).ok().filter(|k| *k != 0) else {
                continue;
            };
            let Some(column) = self.route_column_for(key) else {
                continue;
            };
            for s in self.names().iter().filter(|s| s.key.is_live()) {
                let Some(words) = state["names"][lossy(&s.key)].as_array() else {
                    continue;
                };
                for (cell, w) in s.routes[column].iter().zip(words) {
                    cell.store(w.as_u64().unwrap_or(0));
                }
            }
            for s in self.probes().iter().filter(|s| s.key.is_live()) {
                if let Some(w) = state["probes"][lossy(&s.key)].as_u64() {
                    s.probe.routes[column].store(w);
                }
            }
        }
    }

    /// Takes over state written by [`Zone::export_state`] at `now_ms` for the keys this zone
    /// has, routing state included; anything else in it (unknown keys, other versions, odd
    /// values) is ignored. A NAME
    /// exported without the `latency=`, `slo=` or `traffic=` levels (an older exporter) keeps its own.
    /// Every level taken over is held for one window (`adopted_at_ms`, see src/evaluate/mod.rs).
    pub fn import_exported(&self, state: &serde_json::Value, now_ms: u64) {
        if state["version"] != 1 {
            return;
        }
        self.import_routes(&state["routes"]);
        let field = |v: &serde_json::Value, i: usize| v.get(i).and_then(|x| x.as_u64());
        for s in self.names().iter().filter(|s| s.key.is_live()) {
            let v = &state["names"][lossy(&s.key)];
            if let (Some(level), Some(since), Some(post)) = (field(v, 0), field(v, 1), field(v, 2))
            {
                let a = &s.alert;
                a.level.store(level.min(2) as u32, Relaxed);
                a.incident_since_ms.store(since, Relaxed);
                a.last_post_ms.store(post, Relaxed);
                let mut firing = level != 0;
                let kinds = [
                    (3, &s.latency.state),
                    (6, &s.slo.state),
                    (9, &s.traffic.state),
                ];
                for (k, state) in kinds {
                    if let (Some(level), Some(since), Some(post)) =
                        (field(v, k), field(v, k + 1), field(v, k + 2))
                    {
                        state.level.store(level.min(2) as u32, Relaxed);
                        state.incident_since_ms.store(since, Relaxed);
                        state.last_post_ms.store(post, Relaxed);
                    }
                    firing |= state.level.load(Relaxed) != 0;
                }
                // Only a firing level (of any kind) needs holding until this zone has seen a
                // window.
                a.adopted_at_ms
                    .store(if firing { now_ms } else { 0 }, Relaxed);
            }
        }
        for s in self.probes().iter().filter(|s| s.key.is_live()) {
            let v = &state["probes"][lossy(&s.key)];
            let f: Vec<Option<u64>> = (0..6).map(|i| field(v, i)).collect();
            if let [Some(st), Some(since), Some(fails), Some(passes), Some(reason), Some(status)] =
                f[..]
            {
                let p = &s.probe;
                p.state.store(st.min(2) as u32, Relaxed);
                p.since_ms.store(since, Relaxed);
                p.consecutive_failures.store(fails as u32, Relaxed);
                p.consecutive_successes.store(passes as u32, Relaxed);
                p.last_reason
                    .store(reason.min(Reason::COUNT as u64) as u32, Relaxed);
                p.last_status.store(status.min(999) as u32, Relaxed);
            }
        }
    }

    /// Moves the counts of `old` into this zone: the request counters of every NAME in
    /// `pairs` (see [`Zone::name_pairs`]) and the delivery outcomes.
    pub fn move_counts(&self, old: &Zone, pairs: &[(&NameSlot, &NameSlot)]) {
        for (slot, o) in pairs {
            slot.counters.move_from(&o.counters);
        }
        let (h, oh) = (self.header(), old.header());
        let per_destination = h.destination_notifications.iter().flatten();
        let old_per_destination = oh.destination_notifications.iter().flatten();
        let all = h.notifications.iter().chain(per_destination);
        for (d, s) in all.zip(oh.notifications.iter().chain(old_per_destination)) {
            let n = s.swap(0, Relaxed);
            if n != 0 {
                d.fetch_add(n, Relaxed);
            }
        }
    }
}
