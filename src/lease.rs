//! The evaluation lease: at most one process evaluates windows, applies probe results and
//! announces events at a time, across generations of workers (reloads) and across the two
//! masters of a binary upgrade.
//!
//! The lease is a datagram socket bound to a name in Linux's abstract socket namespace: a bind
//! succeeds in one process only, needs no file or permission, and the kernel releases the name
//! when the holder closes it or dies, also by `kill -9`. No nginx types: unit-tested directly.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// The next evaluator's mailbox: a datagram socket bound next to the lease, on which the
/// releasing holder leaves its last state (see [`hand_over`]).
#[derive(Debug)]
pub struct Mailbox {
    socket: OwnedFd,
}

fn mailbox_name(lease: &[u8]) -> Vec<u8> {
    let mut n = lease.to_vec();
    n.extend_from_slice(b":next");
    n
}

impl Mailbox {
    /// Opens the mailbox of lease `name`; `Ok(None)` if another waiting process has it.
    pub fn open(name: &[u8]) -> io::Result<Option<Mailbox>> {
        let socket = bound_socket(&mailbox_name(name), libc::SOCK_NONBLOCK)?;
        Ok(socket.map(|socket| Mailbox { socket }))
    }

    /// Every message waiting, oldest first; never blocks.
    pub fn take_all(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return out;
            }
            out.push(buf[..n as usize].to_vec());
        }
    }
}

/// Largest hand-over message: the default socket buffer takes about 200 KiB.
pub const MAX_MESSAGE: usize = 192 * 1024;

/// Leaves `message` in the mailbox of lease `name`, if a process waits there; call it before
/// releasing the lease, so the next holder finds it. Returns whether it was delivered.
pub fn hand_over(name: &[u8], message: &[u8]) -> bool {
    if message.len() > MAX_MESSAGE {
        return false;
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = address(&mailbox_name(name));
    // SAFETY: valid buffer and address.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_DONTWAIT,
            core::ptr::addr_of!(addr).cast(),
            len,
        )
    };
    sent == message.len() as isize
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
        let name = name_for(&format!("/tmp/mailbox-test-{}.conf", std::process::id()));
        assert!(!hand_over(&name, b"nobody waits"), "no mailbox yet");
        let mailbox = Mailbox::open(&name).unwrap().expect("free");
        assert!(
            Mailbox::open(&name).unwrap().is_none(),
            "one waiting process"
        );
        assert!(hand_over(&name, b"first"));
        assert!(hand_over(&name, b"second"));
        assert_eq!(
            mailbox.take_all(),
            vec![b"first".to_vec(), b"second".to_vec()]
        );
        assert!(mailbox.take_all().is_empty());
        assert!(!hand_over(&name, &vec![b'x'; MAX_MESSAGE + 1]), "too large");
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
