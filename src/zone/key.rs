//! Slot keys: a NAME, or a probe's NAME and target, kept in a slot of fixed size.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

use super::{SLOT_FREE, SLOT_LIVE};

/// FNV-1a, 64 bits, of `bytes`: a hash that is the same in every process, build and release.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Hex digits of the hash at the end of a shortened key.
const KEY_HASH_DIGITS: usize = 16;

/// The key a slot of `max` bytes holds for `key`: `key` itself when it fits, else its first
/// `max - 17` bytes, `#` and the [`fnv1a64`] of the whole key in hex. Keys that share a long
/// prefix still get slots of their own, and a key gets the same slot on every reload. (Only a
/// 64-bit hash collision, or a key of exactly `max` bytes ending in that very `#` and hash,
/// could share a slot with a long key.)
pub fn slot_key(key: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if key.len() <= max {
        return key.into();
    }
    let keep = max.saturating_sub(KEY_HASH_DIGITS + 1);
    let mut short = key[..keep].to_vec();
    short.push(b'#');
    short.extend_from_slice(format!("{:016x}", fnv1a64(key.iter().copied())).as_bytes());
    short.truncate(max);
    short.into()
}

/// The slot keys of a configuration's keys (see [`slot_key`]).
pub(super) fn slot_keys<'k>(keys: &[&'k [u8]], max: usize) -> Vec<std::borrow::Cow<'k, [u8]>> {
    keys.iter().map(|k| slot_key(k, max)).collect()
}

/// A fixed-capacity key stored in shared memory.
#[repr(C)]
pub struct SlotKey<const N: usize> {
    pub(super) state: AtomicU32,
    len: AtomicU32,
    pub(super) retired_generation: AtomicU64,
    bytes: [AtomicU8; N],
}

impl<const N: usize> SlotKey<N> {
    /// Stores `key`, at most `N` bytes (see [`slot_key`]).
    pub(super) fn set(&self, key: &[u8]) {
        debug_assert!(key.len() <= N, "keys go through slot_key");
        for (b, k) in self.bytes.iter().zip(key) {
            b.store(*k, Relaxed);
        }
        self.len.store(key.len().min(N) as u32, Relaxed);
    }

    /// The key as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let len = (self.len.load(Relaxed) as usize).min(N);
        self.bytes[..len].iter().map(|b| b.load(Relaxed)).collect()
    }

    pub(super) fn is_live(&self) -> bool {
        self.state.load(Relaxed) == SLOT_LIVE
    }

    pub(super) fn is_used(&self) -> bool {
        self.state.load(Relaxed) != SLOT_FREE
    }
}

/// The used slots of `slots` by their key, to pair them with the slots of another zone.
pub(super) fn by_key<S, const N: usize>(
    slots: &[S],
    key: impl Fn(&S) -> &SlotKey<N>,
) -> std::collections::HashMap<Vec<u8>, &S> {
    slots
        .iter()
        .filter(|s| key(s).is_used())
        .map(|s| (key(s).to_vec(), s))
        .collect()
}
