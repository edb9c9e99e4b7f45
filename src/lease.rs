//! The evaluation lease: at most one process evaluates windows, applies probe results and
//! announces events at a time, across generations of workers (reloads) and across the two
//! masters of a binary upgrade.
//!
//! The lease is a datagram socket bound to a name in Linux's abstract socket namespace: a bind
//! succeeds in one process only, needs no file or permission, and the kernel releases the name
//! when the holder closes it or dies, also by `kill -9`. No nginx types: unit-tested directly.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A held lease; dropping it releases the name.
#[derive(Debug)]
pub struct Lease {
    _socket: OwnedFd,
}

/// The abstract socket address for `name` (its tail, if it is longer than fits).
fn address(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] stays 0: the abstract namespace.
    let room = addr.sun_path.len() - 1;
    let name = &name[name.len().saturating_sub(room)..];
    for (d, s) in addr.sun_path[1..].iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (addr, len as libc::socklen_t)
}

impl Lease {
    /// Takes the lease `name` if nobody holds it: `Ok(None)` while another process does.
    pub fn try_acquire(name: &[u8]) -> io::Result<Option<Lease>> {
        Ok(bound_socket(name, 0)?.map(|socket| Lease { _socket: socket }))
    }
}

/// The state the last holder left for the next one, in a file of its own (`/dev/shm`, else the
/// temporary directory), so that it survives until the next holder starts: with a binary
/// upgrade's rollback that may be after the last holder has exited.
#[derive(Clone, Debug)]
pub struct HandOver {
    path: PathBuf,
}

impl HandOver {
    /// The hand-over file of lease `name`.
    pub fn for_lease(name: &[u8]) -> HandOver {
        // FNV-1a: a short, stable file name; the lease name itself may be long.
        let hash = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        HandOver {
            path: dir.join(format!("nginx-status-alert.{hash:016x}.state")),
        }
    }

    /// Leaves `state` (replacing an earlier one), readable by this user only.
    pub fn leave(&self, state: &[u8]) -> io::Result<()> {
        let tmp = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f.write_all(state).and_then(|()| f.sync_data());
        drop(f);
        match written.and_then(|()| std::fs::rename(&tmp, &self.path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Takes the state left for us, if there is one written by this user, no older than
    /// `max_age` (an older one is from another run of nginx and is discarded).
    pub fn take(&self, max_age: Duration) -> Option<Vec<u8>> {
        let f = std::fs::File::open(&self.path).ok()?;
        let meta = f.metadata().ok()?;
        // SAFETY: geteuid has no preconditions.
        let ours = meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o077 == 0;
        let fresh = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age <= max_age);
        let _ = std::fs::remove_file(&self.path);
        if !(ours && fresh) {
            return None;
        }
        let mut state = Vec::new();
        (&f).read_to_end(&mut state).ok()?;
        Some(state)
    }
}

/// A datagram socket bound to `name`, or `None` if the name is taken.
fn bound_socket(name: &[u8], flags: libc::c_int) -> io::Result<Option<OwnedFd>> {
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | flags,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = address(name);
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let rc = unsafe { libc::bind(fd, core::ptr::addr_of!(addr).cast(), len) };
    if rc == 0 {
        return Ok(Some(socket));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(None),
        e => Err(e),
    }
}

/// The lease name of an nginx instance: its configuration file, shared by both masters of a
/// binary upgrade and different for every nginx on the machine.
pub fn name_for(conf_file: &str) -> Vec<u8> {
    format!("nginx-status-alert:{conf_file}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let name = name_for(&format!("/tmp/lease-test-{}.conf", std::process::id()));
        let first = Lease::try_acquire(&name).unwrap();
        assert!(first.is_some());
        assert!(Lease::try_acquire(&name).unwrap().is_none(), "held");
        let other = name_for("/another/nginx.conf");
        assert!(
            Lease::try_acquire(&other).unwrap().is_some(),
            "names are independent"
        );
        drop(first);
        assert!(Lease::try_acquire(&name).unwrap().is_some(), "released");
    }

    #[test]
    fn the_holder_leaves_its_state_for_the_next_one() {
        let name = name_for(&format!("/tmp/handover-test-{}.conf", std::process::id()));
        let h = HandOver::for_lease(&name);
        assert_eq!(h.take(Duration::from_secs(60)), None, "nothing left yet");
        h.leave(b"first").unwrap();
        h.leave(b"second").unwrap();
        assert_eq!(
            h.take(Duration::from_secs(60)).as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(h.take(Duration::from_secs(60)), None, "taken once");
        h.leave(b"old").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            h.take(Duration::from_millis(1)),
            None,
            "too old: another run's"
        );
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o777);
        h.leave(b"x").unwrap();
        assert_eq!(mode(&h.path).unwrap(), 0o600);
        assert!(h.take(Duration::from_secs(60)).is_some());
        assert!(HandOver::for_lease(b"a").path != HandOver::for_lease(b"b").path);
    }

    #[test]
    fn long_names_keep_their_tail() {
        let long = name_for(&format!("/{}/{}.conf", "x".repeat(300), std::process::id()));
        let (_, len) = address(&long);
        assert!(len as usize <= core::mem::size_of::<libc::sockaddr_un>());
        let held = Lease::try_acquire(&long).unwrap();
        assert!(held.is_some());
        assert!(Lease::try_acquire(&long).unwrap().is_none());
    }
}
