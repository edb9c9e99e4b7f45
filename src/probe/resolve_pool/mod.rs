//! `server ... resolve` peers of `upstream=` probes: each such server has a pool of
//! [`RESOLVE_POOL`](crate::conf::RESOLVE_POOL) probe slots, claimed with the configuration like
//! any probe slot, and the evaluator hands them to the addresses nginx resolves the name to
//! now, on every tick ([`assign`], pure). `nginx_pools` (FFI) reads those addresses from the
//! upstream's zone and writes the slots; `probe::net` probes each slot at the address it holds.
//!
//! An address keeps its slot for as long as nginx keeps the peer; a slot whose address is gone
//! is freed (reset: its series disappear), and a freed slot is reset again before it is given
//! to a new address. More addresses than slots: the rest are not probed, and the evaluator
//! logs which (nothing is allocated on the request path, nothing is claimed at run time).

#[cfg(not(test))]
pub(crate) mod nginx_pools;

use std::net::SocketAddr;

use crate::conf::probe_spec::ProbeSpec;
use crate::conf::ProbeConf;

/// The slots of one `server ... resolve` of one probe directive.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// `upstream NAME`.
    pub upstream: String,
    /// The `server` as written.
    pub server: String,
    /// The indexes of its slots' probes in the configuration, in pool order.
    pub members: Vec<usize>,
    /// The probe of its slots, without an address.
    pub template: ProbeSpec,
}

/// A target as its series show it: (NAME, target).
pub type Shown = (String, String);

impl Pool {
    /// How the slot given to `addr` would be shown.
    pub fn shows(&self, addr: SocketAddr) -> Shown {
        (
            self.template.name.clone(),
            self.template.for_peer(addr).target.display(),
        )
    }
}

/// The fixed targets as shown, which no pool's slot may show again (one series each).
pub fn fixed_targets(probes: &[ProbeConf]) -> Vec<Shown> {
    probes
        .iter()
        .filter(|p| p.resolve.is_none())
        .map(|p| (p.spec.name.clone(), p.spec.target.display()))
        .collect()
}

/// Of the addresses `resolved` for pool `at`, those no other target shows already under the
/// same NAME and target: not a fixed target (`fixed`), nor one another pool's slot holds
/// (`held[pool]`, as shown). A second `server` resolving to an address the first has, or a
/// name resolving to a fixed server's address, would otherwise make a second series of it.
pub fn not_shown_elsewhere(
    pools: &[Pool],
    at: usize,
    resolved: &[SocketAddr],
    fixed: &[Shown],
    held: &[Vec<Shown>],
) -> Vec<SocketAddr> {
    resolved
        .iter()
        .copied()
        .filter(|a| {
            let shown = pools[at].shows(*a);
            !fixed.contains(&shown)
                && !held
                    .iter()
                    .enumerate()
                    .any(|(other, h)| other != at && h.contains(&shown))
        })
        .collect()
}

/// The pools of a configuration's probes, in configuration order.
pub fn pools(probes: &[ProbeConf]) -> Vec<Pool> {
    let mut out: Vec<(usize, Pool)> = Vec::new();
    for (index, p) in probes.iter().enumerate() {
        let (Some(r), Some(u)) = (&p.resolve, &p.spec.upstream) else {
            continue;
        };
        match out.iter_mut().find(|(id, _)| *id == r.pool) {
            Some((_, pool)) => pool.members.push(index),
            None => out.push((
                r.pool,
                Pool {
                    upstream: u.name.clone(),
                    server: r.server.clone(),
                    members: vec![index],
                    template: p.spec.clone(),
                },
            )),
        }
    }
    out.into_iter().map(|(_, p)| p).collect()
}

/// Gives a pool's slots to the addresses `resolved` now, from what each slot `held`: a slot
/// keeps an address still resolved, a slot whose address is gone is freed, and new addresses
/// take free slots in order. Returns what each slot holds now, and the addresses left without
/// a slot.
pub fn assign(
    held: &[Option<SocketAddr>],
    resolved: &[SocketAddr],
) -> (Vec<Option<SocketAddr>>, Vec<SocketAddr>) {
    let mut now: Vec<Option<SocketAddr>> = Vec::with_capacity(held.len());
    for (i, h) in held.iter().enumerate() {
        // A slot keeps its address while it is resolved (and no earlier slot holds it too).
        let keep = h.filter(|a| resolved.contains(a) && !held[..i].contains(&Some(*a)));
        now.push(keep);
    }
    let mut left = Vec::new();
    for a in resolved {
        if now.contains(&Some(*a)) {
            continue;
        }
        match now.iter_mut().find(|s| s.is_none()) {
            Some(free) => *free = Some(*a),
            None => left.push(*a),
        }
    }
    (now, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_keep_their_slots_and_new_ones_take_free_slots() {
        let (x, y, z) = (a("10.0.0.1:80"), a("10.0.0.2:80"), a("10.0.0.3:80"));
        let (now, left) = assign(&[None, None, None], &[x, y]);
        assert_eq!((now, left), (vec![Some(x), Some(y), None], vec![]));
        // y goes, z comes: x stays where it was, z takes the first free slot (y's).
        let (now, left) = assign(&[Some(x), Some(y), None], &[z, x]);
        assert_eq!((now, left), (vec![Some(x), Some(z), None], vec![]));
        // Nothing resolved: every slot is freed.
        let (now, left) = assign(&[Some(x), Some(z), None], &[]);
        assert_eq!((now, left), (vec![None; 3], vec![]));
    }

    #[test]
    fn addresses_beyond_the_pool_are_left_out() {
        let addrs: Vec<SocketAddr> = (1..=4).map(|i| a(&format!("10.0.0.{i}:80"))).collect();
        let (now, left) = assign(&[Some(addrs[3]), None], &addrs);
        assert_eq!(now, vec![Some(addrs[3]), Some(addrs[0])]);
        assert_eq!(left, vec![addrs[1], addrs[2]]);
    }

    #[test]
    fn one_address_is_held_by_one_slot() {
        let x = a("10.0.0.1:80");
        let (now, left) = assign(&[Some(x), Some(x)], &[x]);
        assert_eq!((now, left), (vec![Some(x), None], vec![]));
    }

    #[test]
    fn pools_group_the_slots_of_each_server() {
        use crate::conf::probe_spec::parse;
        use crate::conf::ResolveMember;
        let spec = parse(&["upstream=u".to_string()], false).unwrap();
        let conf = |resolve: Option<ResolveMember>| ProbeConf {
            spec: spec.clone(),
            place: String::new(),
            slot: core::ptr::null(),
            addrs: Vec::new(),
            core_loc_conf: core::ptr::null(),
            resolver: None,
            body_regex: core::ptr::null(),
            loc_conf: core::ptr::null(),
            certificates: None,
            resolve,
        };
        let member = |pool, server: &str, member| {
            Some(ResolveMember {
                pool,
                server: server.into(),
                member,
            })
        };
        let probes = [
            conf(None),
            conf(member(0, "a:80", 0)),
            conf(member(0, "a:80", 1)),
            conf(member(1, "b:80", 0)),
        ];
        let p = pools(&probes);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].upstream.as_str(), p[0].server.as_str()),
            ("u", "a:80")
        );
        assert_eq!(p[0].members, vec![1, 2]);
        assert_eq!(p[1].members, vec![3]);
    }

    #[test]
    fn an_address_shown_elsewhere_is_not_taken_again() {
        use crate::conf::probe_spec::parse;
        let spec = parse(&["upstream=u".to_string(), "uri=/h".to_string()], false).unwrap();
        let pool = |server: &str| Pool {
            upstream: "u".into(),
            server: server.into(),
            members: vec![],
            template: spec.clone(),
        };
        let pools = [pool("a:80"), pool("b:80")];
        let (x, y, z) = (a("10.0.0.1:80"), a("10.0.0.2:80"), a("10.0.0.3:80"));
        let fixed = vec![pools[0].shows(z)];
        let held = vec![vec![], vec![pools[1].shows(y)]];
        // z is a fixed server's, y the other pool holds: only x is left to pool 0.
        assert_eq!(
            not_shown_elsewhere(&pools, 0, &[x, y, z], &fixed, &held),
            vec![x]
        );
        // Pool 1 keeps what it holds itself.
        assert_eq!(not_shown_elsewhere(&pools, 1, &[y], &fixed, &held), vec![y]);
    }
}
