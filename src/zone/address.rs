//! The address a probe slot of a `server ... resolve` peer probes now: written by the
//! evaluator as nginx re-resolves the name, read by every worker that shows the slot (its
//! `target` label comes from it). A slot of a fixed target never holds one.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{fence, AtomicU32, AtomicU64};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// [`HeldAddress::family`] values.
const NONE: u32 = 0;
const V4: u32 = 4;
const V6: u32 = 6;

/// An IPv4 or IPv6 address with its port, or none, under a seqlock (one writer: the
/// evaluator).
#[repr(C)]
#[derive(Default)]
pub struct HeldAddress {
    /// Odd while the evaluator writes.
    seq: AtomicU32,
    /// 0 none, 4 IPv4, 6 IPv6.
    family: AtomicU32,
    /// The port.
    port: AtomicU32,
    /// IPv6 scope id.
    scope: AtomicU32,
    /// The address's 16 bytes (an IPv4 one as its IPv6-mapped form), big-endian halves.
    ip: [AtomicU64; 2],
}

impl HeldAddress {
    /// Publishes `addr` (`None`: the slot holds no address).
    pub fn set(&self, addr: Option<SocketAddr>) {
        let (family, octets, port, scope) = match addr {
            None => (NONE, [0u8; 16], 0, 0),
            Some(SocketAddr::V4(a)) => (V4, a.ip().to_ipv6_mapped().octets(), a.port(), 0),
            Some(SocketAddr::V6(a)) => (V6, a.ip().octets(), a.port(), a.scope_id()),
        };
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.family.store(family, Relaxed);
        self.port.store(u32::from(port), Relaxed);
        self.scope.store(scope, Relaxed);
        let (hi, lo) = octets.split_at(8);
        self.ip[0].store(u64::from_be_bytes(hi.try_into().expect("8 bytes")), Relaxed);
        self.ip[1].store(u64::from_be_bytes(lo.try_into().expect("8 bytes")), Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    /// The address held now; `None` when none is, or while a writer is stuck mid-update.
    pub fn get(&self) -> Option<SocketAddr> {
        for _ in 0..16 {
            let before = self.seq.load(Acquire);
            let family = self.family.load(Relaxed);
            let port = self.port.load(Relaxed) as u16;
            let scope = self.scope.load(Relaxed);
            let (hi, lo) = (self.ip[0].load(Relaxed), self.ip[1].load(Relaxed));
            fence(Acquire);
            if before % 2 != 0 || self.seq.load(Relaxed) != before {
                core::hint::spin_loop();
                continue;
            }
            let mut octets = [0u8; 16];
            octets[..8].copy_from_slice(&hi.to_be_bytes());
            octets[8..].copy_from_slice(&lo.to_be_bytes());
            let v6 = Ipv6Addr::from(octets);
            return match family {
                V4 => v6
                    .to_ipv4_mapped()
                    .map(|v4: Ipv4Addr| SocketAddr::new(IpAddr::V4(v4), port)),
                V6 => Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    v6, port, 0, scope,
                ))),
                _ => None,
            };
        }
        None
    }

    pub(super) fn copy_from(&self, o: &HeldAddress) {
        self.set(o.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_v4_v6_and_none() {
        let h = HeldAddress::default();
        assert_eq!(h.get(), None);
        for a in ["127.0.0.2:8080", "[::1]:81", "0.0.0.0:1"] {
            let a: SocketAddr = a.parse().unwrap();
            h.set(Some(a));
            assert_eq!(h.get(), Some(a));
        }
        h.set(None);
        assert_eq!(h.get(), None);
        let o = HeldAddress::default();
        h.set(Some("10.0.0.1:1".parse().unwrap()));
        o.copy_from(&h);
        assert_eq!(o.get(), h.get());
    }

    #[test]
    fn a_writer_stuck_mid_update_reads_as_none() {
        let h = HeldAddress::default();
        h.set(Some("10.0.0.1:1".parse().unwrap()));
        h.seq.fetch_add(1, Relaxed);
        assert_eq!(h.get(), None);
    }
}
