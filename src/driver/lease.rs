//! The evaluation lease and the hand-over state, in files of the module's private state
//! directory (`status_alert_state_path`).
//!
//! At most one process evaluates windows, applies probe results and announces events at a
//! time, across generations of workers (reloads) and across the two masters of a binary
//! upgrade. The lease is an exclusive `flock` on a file in the state directory: the kernel
//! releases it when the holder closes it or dies, also by `kill -9`. The directory is created
//! by the master like nginx's temp paths (mode 0700, owned by the worker user), so no other
//! local user can take the lease first or plant a file where the module looks; nothing lives
//! in `/dev/shm`, `/tmp` or the abstract socket namespace, which every local user shares.
//! Instances that do not share the directory (containers, `-p` prefixes) never share a lease;
//! the two masters of a binary upgrade share both the directory and the file name.
//!
//! Files are opened without following links and without blocking (a FIFO cannot hang the
//! event loop), checked to be regular files of this user, and read with a bound; anything else
//! at a name the module uses is removed and reported. No nginx types: unit-tested directly.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::conf::state_dir::StateDirError;

/// Largest hand-over state read back (the state of every NAME and probe, as JSON).
const MAX_STATE_BYTES: u64 = 64 << 20;

/// A held lease; dropping it releases it.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// The state directory, opened once by the evaluating process.
#[derive(Debug)]
pub struct StateDir {
    dir: OwnedFd,
    path: String,
    /// File names of this nginx instance's lease and hand-over state.
    lease_file: String,
    state_file: String,
}

/// What an attempt to take the lease found.
#[derive(Debug)]
pub enum Attempt {
    /// This process holds the lease now.
    Taken(Lease),
    /// Another process holds it (the other master of a binary upgrade, or the previous
    /// generation's evaluator until it exits).
    Held,
}

impl StateDir {
    /// Opens the state directory `path` for the nginx instance `instance` (its prefix and
    /// configuration file: see [`instance_name`]). The directory must belong to this user and
    /// not be writable by group or others.
    pub fn open(path: &str, instance: &str) -> Result<StateDir, StateDirError> {
        let open_err = |source| StateDirError::Open {
            path: path.to_string(),
            source,
        };
        let c = CString::new(path).map_err(|e| open_err(io::Error::other(e)))?;
        // SAFETY: a plain open of a NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let meta = File::from(dir.try_clone().map_err(open_err)?)
            .metadata()
            .map_err(open_err)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(StateDirError::Unsafe {
                path: path.to_string(),
                problem: format!(
                    "must belong to uid {me} and not be writable by group or others \
                     (uid {}, mode {:04o})",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            });
        }
        let hash = fnv1a(instance.as_bytes());
        Ok(StateDir {
            dir,
            path: path.to_string(),
            lease_file: format!("lease-{hash:016x}"),
            state_file: format!("state-{hash:016x}"),
        })
    }

    /// Takes the lease if nobody holds it. Planted files at its name are removed and
    /// reported through `report`.
    pub fn try_lease(&self, report: &mut dyn FnMut(String)) -> Result<Attempt, StateDirError> {
        let flags = libc::O_RDWR | libc::O_CREAT;
        let file = self.open_ours(&self.lease_file, flags, report)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Attempt::Taken(Lease { _file: file }));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(Attempt::Held),
            e => Err(self.file_error(&self.lease_file, e)),
        }
    }

    /// Leaves `state` for the next holder of the lease (replacing an earlier one), readable
    /// by this user only. Not synced to disk: it is for the next process on this running
    /// system, and too old to be taken after a restart anyway.
    pub fn leave(&self, state: &[u8], report: &mut dyn FnMut(String)) -> Result<(), StateDirError> {
        let tmp = format!("{}.{}.tmp", self.state_file, std::process::id());
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let mut f = match self.open_at(&tmp, flags) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.remove(&tmp, "a leftover", report);
                self.open_at(&tmp, flags)
                    .map_err(|e| self.file_error(&tmp, e))?
            }
            Err(e) => return Err(self.file_error(&tmp, e)),
        };
        let written = f.write_all(state);
        drop(f);
        let renamed = written.and_then(|()| self.rename(&tmp, &self.state_file));
        let renamed = match renamed {
            // A directory planted at the name: remove it, then try once more.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                self.remove(&self.state_file, "a directory", report);
                self.rename(&tmp, &self.state_file)
            }
            r => r,
        };
        renamed.map_err(|e| {
            self.unlink(&tmp, 0);
            self.file_error(&self.state_file, e)
        })
    }

    /// Takes the state left for us, if there is one of ours no older than `max_age` (an
    /// older one is from another run of nginx and is discarded). Never blocks; anything but
    /// a regular file of this user is removed and reported.
    pub fn take(&self, max_age: Duration, report: &mut dyn FnMut(String)) -> Option<Vec<u8>> {
        let f = match self.open_ours(&self.state_file, libc::O_RDONLY, report) {
            Ok(f) => f,
            Err(StateDirError::File { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return None
            }
            Err(e) => {
                report(e.to_string());
                return None;
            }
        };
        self.unlink(&self.state_file, 0);
        let meta = f.metadata().ok()?;
        let fresh = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age <= max_age);
        if !fresh || meta.mode() & 0o077 != 0 {
            return None;
        }
        let mut state = Vec::new();
        let read = (&f).take(MAX_STATE_BYTES + 1).read_to_end(&mut state);
        if read.is_err() || state.len() as u64 > MAX_STATE_BYTES {
            report(format!(
                "ignored \"{}\": unreadable or larger than {MAX_STATE_BYTES} bytes",
                self.show(&self.state_file)
            ));
            return None;
        }
        Some(state)
    }

    /// Opens `name` with `flags` (creating it 0600 with `O_CREAT`), never following a link
    /// or blocking on a FIFO; a file that is not a regular file of this user with one link is
    /// removed (reported through `report`) and the open tried once more.
    fn open_ours(
        &self,
        name: &str,
        flags: libc::c_int,
        report: &mut dyn FnMut(String),
    ) -> Result<File, StateDirError> {
        for attempt in 0..2 {
            let planted = match self.open_at(name, flags) {
                Ok(f) => match f.metadata() {
                    Ok(m) if is_ours(&m) => return Ok(f),
                    Ok(m) => describe(&m),
                    Err(e) => return Err(self.file_error(name, e)),
                },
                // O_NOFOLLOW on a symbolic link.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symbolic link".into(),
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => "a directory".into(),
                // Not ours and not writable by us: someone else's file.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    "a file of another user".into()
                }
                Err(e) => return Err(self.file_error(name, e)),
            };
            if attempt == 1 {
                break;
            }
            self.remove(name, &planted, report);
        }
        Err(self.file_error(
            name,
            io::Error::other("something keeps replacing it with a file that is not ours"),
        ))
    }

    /// Removes `name` (a directory too, if empty), reporting what it was.
    fn remove(&self, name: &str, what: &str, report: &mut dyn FnMut(String)) {
        if !self.unlink(name, 0) && !self.unlink(name, libc::AT_REMOVEDIR) {
            report(format!(
                "ignored \"{}\": {what} where the module keeps its state, and it cannot be \
                 removed ({})",
                self.show(name),
                io::Error::last_os_error()
            ));
            return;
        }
        report(format!(
            "removed \"{}\": {what} where the module keeps its state",
            self.show(name)
        ));
    }

    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c = CString::new(name).map_err(io::Error::other)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: openat relative to our directory descriptor with a NUL-terminated name.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), c.as_ptr(), flags, 0o600) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Reads and writes of a regular file never block anyway; a FIFO was only opened
        // non-blocking to be recognised and is never read.
        set_blocking(f.as_raw_fd());
        Ok(f)
    }

    fn unlink(&self, name: &str, flags: libc::c_int) -> bool {
        let Ok(c) = CString::new(name) else {
            return false;
        };
        // SAFETY: unlinkat relative to our directory descriptor with a NUL-terminated name.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), flags) == 0 }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (
            CString::new(from).map_err(io::Error::other)?,
            CString::new(to).map_err(io::Error::other)?,
        );
        let d = self.dir.as_raw_fd();
        // SAFETY: renameat within our directory with NUL-terminated names.
        if unsafe { libc::renameat(d, f.as_ptr(), d, t.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn show(&self, name: &str) -> String {
        format!("{}/{name}", self.path.trim_end_matches('/'))
    }

    fn file_error(&self, name: &str, source: io::Error) -> StateDirError {
        StateDirError::File {
            path: self.show(name),
            source,
        }
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A regular file of this user with a single link.
fn is_ours(m: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    m.file_type().is_file() && m.uid() == me && m.nlink() == 1
}

fn describe(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    let kind = if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if m.nlink() != 1 {
        "a file with several links"
    } else {
        "a file of another user"
    };
    kind.to_string()
}

fn set_blocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
}

/// FNV-1a, 64 bits: a short, stable file name for an instance name of any length.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The name of an nginx instance: its prefix and configuration file, shared by both masters
/// of a binary upgrade and different for `-p A` and `-p B` with one configuration file.
pub fn instance_name(prefix: &str, conf_file: &str) -> String {
    format!("{prefix}\0{conf_file}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::state_dir::check_dir;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn private_dir(tag: &str) -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix(&format!("lease-test-{tag}-"))
            .tempdir()
            .unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn open(d: &tempfile::TempDir, instance: &str) -> StateDir {
        StateDir::open(d.path().to_str().unwrap(), instance).unwrap()
    }

    fn no_reports() -> impl FnMut(String) {
        |m| panic!("unexpected report: {m}")
    }

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let d = private_dir("one");
        let a = open(&d, &instance_name("/p/", "/p/nginx.conf"));
        let b = open(&d, &instance_name("/p/", "/p/nginx.conf"));
        let first = a.try_lease(&mut no_reports()).unwrap();
        assert!(matches!(first, Attempt::Taken(_)));
        assert!(matches!(
            b.try_lease(&mut no_reports()).unwrap(),
            Attempt::Held
        ));
        let other = open(&d, &instance_name("/q/", "/p/nginx.conf"));
        assert!(
            matches!(
                other.try_lease(&mut no_reports()).unwrap(),
                Attempt::Taken(_)
            ),
            "another prefix is another instance"
        );
        drop(first);
        assert!(matches!(
            b.try_lease(&mut no_reports()).unwrap(),
            Attempt::Taken(_)
        ));
    }

    #[test]
    fn directories_do_not_share_leases() {
        let (d1, d2) = (private_dir("ns1"), private_dir("ns2"));
        let name = instance_name("/etc/nginx/", "/etc/nginx/nginx.conf");
        let a = open(&d1, &name).try_lease(&mut no_reports()).unwrap();
        let b = open(&d2, &name).try_lease(&mut no_reports()).unwrap();
        assert!(matches!((a, b), (Attempt::Taken(_), Attempt::Taken(_))));
    }

    #[test]
    fn the_holder_leaves_its_state_for_the_next_one() {
        let d = private_dir("state");
        let s = open(&d, "x");
        let minute = Duration::from_secs(60);
        assert_eq!(s.take(minute, &mut no_reports()), None, "nothing left yet");
        s.leave(b"first", &mut no_reports()).unwrap();
        s.leave(b"second", &mut no_reports()).unwrap();
        let mode = std::fs::metadata(d.path().join(&s.state_file))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            s.take(minute, &mut no_reports()).as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(s.take(minute, &mut no_reports()), None, "taken once");
        s.leave(b"old", &mut no_reports()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            s.take(Duration::from_millis(1), &mut no_reports()),
            None,
            "too old: another run's"
        );
    }

    #[test]
    fn planted_files_are_removed_reported_and_never_block() {
        let d = private_dir("planted");
        let s = open(&d, "y");
        let at = |n: &str| d.path().join(n);
        let mut reports = Vec::new();

        // A FIFO at the state name: opening it must not block, and it is removed.
        let fifo = CString::new(at(&s.state_file).to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            s.take(Duration::from_secs(60), &mut |m| reports.push(m)),
            None
        );
        assert!(reports.iter().any(|r| r.contains("a FIFO")), "{reports:?}");
        assert!(!at(&s.state_file).exists());

        // A symbolic link at the lease name pointing elsewhere: never followed.
        let victim = at("victim");
        std::fs::write(&victim, b"keep").unwrap();
        symlink(&victim, at(&s.lease_file)).unwrap();
        reports.clear();
        let lease = s.try_lease(&mut |m| reports.push(m)).unwrap();
        assert!(matches!(lease, Attempt::Taken(_)));
        assert!(reports.iter().any(|r| r.contains("symbolic link")));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        // A directory at the state name: leave() still works.
        std::fs::create_dir(at(&s.state_file)).unwrap();
        reports.clear();
        s.leave(b"state", &mut |m| reports.push(m)).unwrap();
        assert!(reports.iter().any(|r| r.contains("a directory")));
        assert_eq!(
            s.take(Duration::from_secs(60), &mut no_reports())
                .as_deref(),
            Some(&b"state"[..])
        );

        // A leftover temporary file of ours (same pid) is replaced.
        let tmp = at(&format!("{}.{}.tmp", s.state_file, std::process::id()));
        std::fs::write(&tmp, b"x").unwrap();
        reports.clear();
        s.leave(b"again", &mut |m| reports.push(m)).unwrap();
        assert!(!tmp.exists());
    }

    #[test]
    fn unsafe_directories_are_refused() {
        let d = private_dir("check");
        let path = d.path().to_str().unwrap().to_string();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert!(check_dir(&path, &[me]).is_ok());
        assert!(
            check_dir(&format!("{path}/missing"), &[me]).is_ok(),
            "nginx creates it"
        );
        let err = check_dir(&path, &[me + 1]).unwrap_err().to_string();
        assert!(err.contains("belongs to uid"), "{err}");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = check_dir(&path, &[me]).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        assert!(StateDir::open(&path, "z").is_err());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = format!("{path}/link");
        symlink(&path, &link).unwrap();
        assert!(check_dir(&link, &[me])
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(StateDir::open(&link, "z").is_err(), "never followed");
        let open_world = format!("{path}/world");
        std::fs::create_dir(&open_world).unwrap();
        std::fs::set_permissions(&open_world, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(format!("{open_world}/state")).unwrap();
        let err = check_dir(&format!("{open_world}/state"), &[me])
            .unwrap_err()
            .to_string();
        assert!(err.contains("every user can write to"), "{err}");
    }
}
