//! `mark_down=on`: which peers of an upstream are kept out of rotation, from their probes'
//! states. Pure; `nginx_peers` (FFI) applies the answer to nginx's peers.
//!
//! A peer is kept out while one of its probes says DOWN, unless every peer of the upstream is
//! DOWN: then all are used again (fail open), since sending to a DOWN peer beats having none.

#[cfg(not(test))]
pub(crate) mod nginx_peers;

use crate::conf::probe_spec::ProbeSpec;
use crate::vocab::event::{AlertEvent, EventDetail};

/// The `mark_down=on` targets of one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGroup {
    /// `upstream NAME`.
    pub upstream: String,
    /// Each distinct peer (`ADDRESS:PORT`) with the indexes of the probes of it.
    pub peers: Vec<(String, Vec<usize>)>,
}

/// Groups the `mark_down=on` probes, given with their indexes, by upstream, in configuration
/// order. A `server ... resolve` slot comes in with the address it holds now, or not at all.
pub fn groups<'a>(probes: impl IntoIterator<Item = (usize, &'a ProbeSpec)>) -> Vec<PeerGroup> {
    let mut out: Vec<PeerGroup> = Vec::new();
    for (index, spec) in probes {
        let Some(u) = spec.upstream.as_ref().filter(|u| u.mark_down) else {
            continue;
        };
        let group = match out.iter_mut().position(|g| g.upstream == u.name) {
            Some(i) => &mut out[i],
            None => {
                out.push(PeerGroup {
                    upstream: u.name.clone(),
                    peers: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        match group.peers.iter_mut().find(|(p, _)| *p == u.peer) {
            Some((_, indexes)) => indexes.push(index),
            None => group.peers.push((u.peer.clone(), vec![index])),
        }
    }
    out
}

/// What `mark_down` does with one upstream's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Per peer of the group, in its order: kept out of rotation.
    pub keep_out: Vec<bool>,
    /// Every peer is DOWN, so none is kept out.
    pub fail_open: bool,
}

/// Decides from `up(probe index)`: `Some(true)` up, `Some(false)` DOWN, `None` not probed yet.
pub fn decide(group: &PeerGroup, up: impl Fn(usize) -> Option<bool>) -> Decision {
    let down: Vec<bool> = group
        .peers
        .iter()
        .map(|(_, probes)| probes.iter().any(|i| up(*i) == Some(false)))
        .collect();
    let fail_open = !down.is_empty() && down.iter().all(|d| *d);
    Decision {
        keep_out: if fail_open {
            vec![false; down.len()]
        } else {
            down
        },
        fail_open,
    }
}

/// An upstream whose every probed peer is DOWN, so `mark_down` uses them all (fail open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailOpen {
    /// `upstream NAME`.
    pub upstream: String,
    /// The probe targets of its peers, as shown in events.
    pub targets: Vec<String>,
}

/// Makes the DOWN messages of fail-open upstreams say so: their reason gets a note.
pub fn annotate(events: &mut [AlertEvent], fail_open: &[FailOpen]) {
    for e in events {
        let EventDetail::Probe(p) = &mut e.detail else {
            continue;
        };
        if p.up {
            continue;
        }
        let Some(f) = fail_open.iter().find(|f| f.targets.contains(&p.target)) else {
            continue;
        };
        let note = format!(
            "fail open, every peer of upstream {} is DOWN and stays in use",
            f.upstream
        );
        p.reason = Some(match p.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::probe_spec::parse;

    fn peer(args: &[&str], addr: &str) -> ProbeSpec {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, false).unwrap().for_peer(addr.parse().unwrap())
    }

    #[test]
    fn groups_by_upstream_and_peer() {
        let on = ["upstream=a", "mark_down=on"];
        let specs = [
            peer(&on, "127.0.0.1:1"),
            peer(&["upstream=a"], "127.0.0.1:9"),
            peer(&on, "127.0.0.1:2"),
            peer(&["upstream=b", "mark_down=on"], "127.0.0.1:1"),
            peer(&["upstream=a", "mark_down=on", "uri=/x"], "127.0.0.1:1"),
            parse(&["http://h/".to_string()], false).unwrap(),
        ];
        let g = groups(specs.iter().enumerate());
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].upstream, "a");
        assert_eq!(
            g[0].peers,
            vec![
                ("127.0.0.1:1".to_string(), vec![0, 4]),
                ("127.0.0.1:2".to_string(), vec![2])
            ]
        );
        assert_eq!(g[1].peers, vec![("127.0.0.1:1".to_string(), vec![3])]);
    }

    #[test]
    fn down_peers_are_kept_out_unless_all_are_down() {
        let g = PeerGroup {
            upstream: "a".into(),
            peers: vec![
                ("p0".into(), vec![0]),
                ("p1".into(), vec![1, 2]),
                ("p2".into(), vec![3]),
            ],
        };
        let states = |s: [Option<bool>; 4]| move |i: usize| s[i];
        let d = decide(&g, states([None, None, None, None]));
        assert_eq!((d.keep_out, d.fail_open), (vec![false; 3], false));
        let d = decide(&g, states([Some(true), Some(true), Some(false), None]));
        assert_eq!((d.keep_out, d.fail_open), (vec![false, true, false], false));
        let d = decide(&g, states([Some(false), Some(false), Some(true), None]));
        assert_eq!((d.keep_out, d.fail_open), (vec![true, true, false], false));
        // Every peer DOWN: fail open.
        let d = decide(
            &g,
            states([Some(false), Some(true), Some(false), Some(false)]),
        );
        assert_eq!((d.keep_out, d.fail_open), (vec![false; 3], true));
        let empty = PeerGroup {
            upstream: "a".into(),
            peers: vec![],
        };
        assert!(!decide(&empty, |_| None).fail_open);
    }

    #[test]
    fn fail_open_is_said_in_the_down_message() {
        use crate::vocab::event::ProbeEvent;
        let event = |target: &str, up: bool| AlertEvent {
            name: "be".into(),
            at_unix: 0,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(ProbeEvent {
                up,
                target: target.into(),
                reason: (!up).then(|| "connection refused".to_string()),
                status: None,
                duration_ms: 1,
                since_unix: 0,
            }),
        };
        let mut events = vec![
            event("http://127.0.0.1:1/", false),
            event("http://127.0.0.1:2/", true),
            event("http://127.0.0.1:3/", false),
        ];
        let f = [FailOpen {
            upstream: "backend".into(),
            targets: vec!["http://127.0.0.1:1/".into(), "http://127.0.0.1:2/".into()],
        }];
        annotate(&mut events, &f);
        let reasons: Vec<Option<String>> = events
            .iter()
            .map(|e| match &e.detail {
                EventDetail::Probe(p) => p.reason.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                Some(
                    "connection refused; fail open, every peer of upstream backend is DOWN and \
                     stays in use"
                        .into()
                ),
                None,
                Some("connection refused".into()),
            ]
        );
    }
}
